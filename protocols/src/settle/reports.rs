//! Step one of settling a sealed set: what the set says about its epoch. Authors that signed
//! two entries at one seq, and staked verifiers' liveness attestations and PoR verdicts about
//! this epoch. (Receipts count in `delivery`, against paid credit.)

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::ledger::body::{EntryBody, LivenessAttestation, PorVerdicts};
use crate::ledger::{Entry, EntryKind};

/// The reports and receipts of one sealed set.
#[derive(Debug, Default)]
pub(super) struct Reports {
    /// Authors with two entries at one seq inside the set.
    pub equivocators: BTreeSet<[u8; 32]>,
    /// Each staked verifier's attestation of the epoch, its parts merged (a part written twice:
    /// the last in set order).
    pub liveness: BTreeMap<[u8; 32], LivenessAttestation>,
    /// Staked verifiers' PoR verdicts about the epoch, in set order.
    pub verdicts: Vec<([u8; 32], PorVerdicts)>,
}

impl Reports {
    /// Reads `set` (sorted by author, seq, id) for `epoch`; `stakes` are the staked verifiers.
    pub fn of(set: &[&Arc<Entry>], epoch: u64, stakes: &BTreeMap<[u8; 32], u64>) -> Self {
        let mut at: BTreeMap<([u8; 32], u64), u32> = BTreeMap::new();
        for e in set {
            *at.entry((e.author, e.seq)).or_default() += 1;
        }
        let mut r = Reports {
            equivocators: at.iter().filter(|(_, n)| **n > 1).map(|((a, _), _)| *a).collect(),
            ..Default::default()
        };
        let mut parts: BTreeMap<[u8; 32], Vec<LivenessAttestation>> = BTreeMap::new();
        for e in set {
            let verifier = stakes.contains_key(&e.author) && !r.equivocators.contains(&e.author);
            let read = match e.kind {
                EntryKind::Liveness | EntryKind::PorVerdicts => verifier,
                _ => false,
            };
            if !read {
                continue;
            }
            match EntryBody::of(e) {
                Ok(EntryBody::Liveness(l)) if l.epoch == epoch && l.expected > 0 => {
                    parts.entry(e.author).or_default().push(l);
                }
                Ok(EntryBody::PorVerdicts(v)) if v.epoch == epoch => r.verdicts.push((e.author, v)),
                _ => {}
            }
        }
        r.liveness =
            parts.into_iter().filter_map(|(v, written)| LivenessAttestation::merge(&written).map(|m| (v, m))).collect();
        r
    }
}
