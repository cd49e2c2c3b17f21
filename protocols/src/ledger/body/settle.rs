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

/// Authors one seal part's frontier may list (each at most 42 bytes; the body limit is 32 KiB).
pub const MAX_FRONTIER: usize = 700;
/// Parts one seal may have: 100,000 authors in an epoch at most. A verifier writes every part
/// again when it re-seals, so this bounds its seal entries per epoch (143 parts x 7 checks).
pub const MAX_SEAL_PARTS: u32 = 143;
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
/// with that epoch that it holds, named by each author's last seq, and their set root. The
/// frontier travels in `parts` entries of at most [`MAX_FRONTIER`] authors each (authors
/// ascending across parts); every part carries the whole view (root, count, the frontier's
/// commitment), which is what verifiers agree on, so 100,000 authors in one epoch seal.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode, Serialize)]
pub struct EpochSeal {
    pub epoch: u64,
    #[serde(with = "hex::serde")]
    pub root: [u8; 32],
    /// Entries in the sealed set.
    pub entries: u64,
    /// BLAKE3 commitment to the whole frontier ([`EpochSeal::commit`]).
    #[serde(with = "hex::serde")]
    pub frontier_root: [u8; 32],
    /// Authors in the whole frontier.
    pub authors: u64,
    /// This part's index, below `parts`.
    pub part: u32,
    pub parts: u32,
    /// This part's `(author, last seq labelled with the epoch)`, sorted by author, distinct.
    #[serde(skip)]
    pub frontier: Vec<([u8; 32], u64)>,
}

/// The part of a seal verifiers agree on: every part of one verifier's seal has the same.
pub type SealView = ([u8; 32], [u8; 32], u64, u64, u32);

impl EpochSeal {
    pub fn encode(&self) -> Vec<u8> {
        crate::codec::encode(self)
    }

    pub fn decode(body: &[u8]) -> Result<Self, DecodeError> {
        let v: Self = crate::codec::decode::<_, MAX_ENTRY_BODY>(body)?;
        if v.frontier.len() > MAX_FRONTIER {
            return Err(DecodeError::invalid(format!(
                "frontier part of {} authors exceeds {MAX_FRONTIER}",
                v.frontier.len()
            )));
        }
        if v.parts == 0 || v.parts > MAX_SEAL_PARTS || v.part >= v.parts {
            return Err(DecodeError::invalid(format!("part {} of {} (at most {MAX_SEAL_PARTS})", v.part, v.parts)));
        }
        if !v.frontier.windows(2).all(|w| w[0].0 < w[1].0) {
            return Err(DecodeError::invalid("frontier is not sorted and distinct"));
        }
        Ok(v)
    }

    /// The commitment to a whole frontier (sorted by author).
    pub fn commit(frontier: &[([u8; 32], u64)]) -> [u8; 32] {
        let mut h = blake3::Hasher::new();
        h.update(b"ifx/seal/frontier/v1");
        h.update(&(frontier.len() as u64).to_le_bytes());
        for (author, seq) in frontier {
            h.update(author).update(&seq.to_le_bytes());
        }
        *h.finalize().as_bytes()
    }

    /// The seal of `frontier` (sorted, distinct) in parts; `None` past [`MAX_SEAL_PARTS`].
    pub fn split(epoch: u64, root: [u8; 32], entries: u64, frontier: &[([u8; 32], u64)]) -> Option<Vec<Self>> {
        let chunks: Vec<&[([u8; 32], u64)]> =
            if frontier.is_empty() { vec![&[][..]] } else { frontier.chunks(MAX_FRONTIER).collect() };
        let parts = u32::try_from(chunks.len()).ok().filter(|n| *n <= MAX_SEAL_PARTS)?;
        let frontier_root = Self::commit(frontier);
        Some(
            chunks
                .into_iter()
                .enumerate()
                .map(|(i, c)| Self {
                    epoch,
                    root,
                    entries,
                    frontier_root,
                    authors: frontier.len() as u64,
                    part: i as u32,
                    parts,
                    frontier: c.to_vec(),
                })
                .collect(),
        )
    }

    /// What verifiers agree on: `(root, frontier_root, entries, authors, parts)`.
    pub fn view(&self) -> SealView {
        (self.root, self.frontier_root, self.entries, self.authors, self.parts)
    }

    /// The whole frontier from one verifier's parts of one view (any order, a part written
    /// again replacing the earlier): `None` unless every part is there, the authors ascend
    /// across parts, and the whole matches the commitment.
    pub fn assemble<'a>(parts: impl IntoIterator<Item = &'a Self>) -> Option<Vec<([u8; 32], u64)>> {
        let mut by_part: std::collections::BTreeMap<u32, &Self> = Default::default();
        let mut first = None;
        for p in parts {
            first.get_or_insert(p);
            by_part.insert(p.part, p);
        }
        let first = first?;
        if by_part.len() as u64 != first.parts as u64 || by_part.values().any(|p| p.view() != first.view()) {
            return None;
        }
        let whole: Vec<([u8; 32], u64)> = by_part.values().flat_map(|p| p.frontier.iter().copied()).collect();
        let ok = whole.len() as u64 == first.authors
            && whole.windows(2).all(|w| w[0].0 < w[1].0)
            && Self::commit(&whole) == first.frontier_root;
        ok.then_some(whole)
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
        let front = vec![([1; 32], 4), ([2; 32], 0)];
        let s = EpochSeal::split(3, [1; 32], 2, &front).unwrap().remove(0);
        assert_eq!(EpochSeal::decode(&s.encode()).unwrap(), s);
        let unsorted = EpochSeal { frontier: vec![([2; 32], 0), ([1; 32], 4)], ..s.clone() };
        assert!(EpochSeal::decode(&unsorted.encode()).is_err());
        assert!(EpochSeal::decode(&EpochSeal { part: 1, ..s.clone() }.encode()).is_err());
        assert!(EpochSeal::decode(&EpochSeal { parts: MAX_SEAL_PARTS + 1, ..s.clone() }.encode()).is_err());
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

    /// Issue #21: a seal held at most 800 authors, so 801 fresh keys writing one entry each in
    /// an epoch stopped minting. Now 10,000 authors seal in 15 parts, each under the body limit.
    #[test]
    fn ten_thousand_authors_seal_in_parts_and_only_a_whole_matching_set_assembles() {
        let front: Vec<([u8; 32], u64)> = (0..10_000u32)
            .map(|i| {
                let mut k = [0u8; 32];
                k[..4].copy_from_slice(&i.to_be_bytes());
                (k, u64::MAX - i as u64)
            })
            .collect();
        let parts = EpochSeal::split(9, [7; 32], 10_000, &front).unwrap();
        assert_eq!(parts.len(), 15);
        for p in &parts {
            let b = p.encode();
            assert!(b.len() <= MAX_ENTRY_BODY, "{} bytes", b.len());
            assert_eq!(&EpochSeal::decode(&b).unwrap(), p);
        }
        // In any order, a part written twice: the whole comes back.
        let mut shuffled: Vec<&EpochSeal> = parts.iter().rev().collect();
        shuffled.push(&parts[3]);
        assert_eq!(EpochSeal::assemble(shuffled).unwrap(), front);
        // A part missing, a part of another view, a part with one seq changed: nothing.
        assert!(EpochSeal::assemble(parts.iter().skip(1)).is_none());
        let mut other = parts.clone();
        other[2].frontier[0].1 -= 1;
        assert!(EpochSeal::assemble(&other).is_none());
        let mut swapped = parts.clone();
        swapped[5].root = [8; 32];
        assert!(EpochSeal::assemble(&swapped).is_none());
        assert!(EpochSeal::split(9, [7; 32], 0, &vec![([0; 32], 0); MAX_FRONTIER * 144]).is_none());
    }
}
