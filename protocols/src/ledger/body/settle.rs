//! Bodies of the settlement entry kinds: stake operations, epoch seals, governance proposals
//! and votes. Each decodes with the ledger's body limit and checks its own invariants.

use bincode::{Decode, Encode};
use serde::{Deserialize, Serialize};

use crate::codec::DecodeError;
use crate::ledger::entry::MAX_ENTRY_BODY;

/// What a genesis allocation's stake is bonded as.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, bincode::Encode, bincode::Decode,
)]
#[serde(rename_all = "lowercase")]
pub enum StakeRole {
    Worker,
    Verifier,
}

/// Authors a seal's frontier may list (each 40 bytes; the body limit is 32 KiB).
pub const MAX_FRONTIER: usize = 800;
/// Longest parameter name and proposal note.
pub const MAX_PARAM_NAME: usize = 64;
pub const MAX_NOTE: usize = 280;

/// A stake operation ([`crate::ledger::EntryKind::Stake`]), applied when its epoch settles.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "op", deny_unknown_fields)]
pub enum StakeOp {
    /// Moves `amount` from liquid to bonded stake, in `role` (a bonded account keeps its role).
    Bond { amount: u64, role: StakeRole },
    /// Starts unbonding `amount`; it becomes liquid after the unbonding delay.
    Unbond { amount: u64 },
}

impl StakeOp {
    pub fn encode(&self) -> Vec<u8> {
        crate::codec::encode(self)
    }

    pub fn decode(body: &[u8]) -> Result<Self, DecodeError> {
        let v: Self = crate::codec::decode::<_, MAX_ENTRY_BODY>(body)?;
        match v {
            StakeOp::Bond { amount: 0, .. } | StakeOp::Unbond { amount: 0 } => {
                Err(DecodeError::invalid("amount is zero"))
            }
            v => Ok(v),
        }
    }
}

/// A verifier's seal of one epoch ([`crate::ledger::EntryKind::Seal`]): the entries labelled
/// with that epoch that it holds, named by each author's last seq, and their set root.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode, Serialize)]
pub struct EpochSeal {
    pub epoch: u64,
    #[serde(with = "hex::serde")]
    pub root: [u8; 32],
    /// Entries in the sealed set.
    pub entries: u64,
    /// `(author, last seq labelled with the epoch)`, sorted by author, distinct.
    #[serde(skip)]
    pub frontier: Vec<([u8; 32], u64)>,
}

impl EpochSeal {
    pub fn encode(&self) -> Vec<u8> {
        crate::codec::encode(self)
    }

    pub fn decode(body: &[u8]) -> Result<Self, DecodeError> {
        let v: Self = crate::codec::decode::<_, MAX_ENTRY_BODY>(body)?;
        if v.frontier.len() > MAX_FRONTIER {
            return Err(DecodeError::invalid(format!(
                "frontier of {} authors exceeds {MAX_FRONTIER}",
                v.frontier.len()
            )));
        }
        if !v.frontier.windows(2).all(|w| w[0].0 < w[1].0) {
            return Err(DecodeError::invalid("frontier is not sorted and distinct"));
        }
        Ok(v)
    }
}

/// A proposal to set parameter `param` to `value` from epoch `from_epoch` on
/// ([`crate::ledger::EntryKind::Proposal`]); its id is the entry id.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Proposal {
    pub param: String,
    pub value: u64,
    pub from_epoch: u64,
    #[serde(default)]
    pub note: String,
}

impl Proposal {
    pub fn encode(&self) -> Vec<u8> {
        crate::codec::encode(self)
    }

    pub fn decode(body: &[u8]) -> Result<Self, DecodeError> {
        let v: Self = crate::codec::decode::<_, MAX_ENTRY_BODY>(body)?;
        if v.param.len() > MAX_PARAM_NAME || v.note.len() > MAX_NOTE {
            return Err(DecodeError::invalid("parameter name or note too long"));
        }
        Ok(v)
    }
}

/// A stake-weighted vote on a proposal ([`crate::ledger::EntryKind::Vote`]); a voter's last
/// vote on a proposal counts.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Vote {
    #[serde(with = "hex::serde")]
    pub proposal: [u8; 32],
    pub yes: bool,
}

impl Vote {
    pub fn encode(&self) -> Vec<u8> {
        crate::codec::encode(self)
    }

    pub fn decode(body: &[u8]) -> Result<Self, DecodeError> {
        crate::codec::decode::<_, MAX_ENTRY_BODY>(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_round_trip_and_bad_ones_are_refused() {
        let b = StakeOp::Bond { amount: 5, role: StakeRole::Verifier };
        assert_eq!(StakeOp::decode(&b.encode()).unwrap(), b);
        assert!(StakeOp::decode(&StakeOp::Unbond { amount: 0 }.encode()).is_err());
        let s = EpochSeal { epoch: 3, root: [1; 32], entries: 2, frontier: vec![([1; 32], 4), ([2; 32], 0)] };
        assert_eq!(EpochSeal::decode(&s.encode()).unwrap(), s);
        let unsorted = EpochSeal { frontier: vec![([2; 32], 0), ([1; 32], 4)], ..s.clone() };
        assert!(EpochSeal::decode(&unsorted.encode()).is_err());
        let mut bytes = s.encode();
        bytes.push(0);
        assert!(EpochSeal::decode(&bytes).is_err());
        let p = Proposal { param: "workers_bps".into(), value: 7_000, from_epoch: 9, note: String::new() };
        assert_eq!(Proposal::decode(&p.encode()).unwrap(), p);
        let long = Proposal { param: "x".repeat(65), ..p };
        assert!(Proposal::decode(&long.encode()).is_err());
        for n in 0..16 {
            // Truncations never panic.
            let _ = EpochSeal::decode(&s.encode()[..n]);
        }
    }
}
