//! Seals: the view a verifier signs for an epoch (root over the ids, entry count, each
//! author's last seq, in parts under one commitment), the quorum rule (verifiers holding at
//! least 2/3 of verifier stake signed the same view), and the exact sealed set a quorum seal
//! names.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::ledger::Entry;
use crate::ledger::body::settle::{MAX_SEAL_PARTS, SealView};
use crate::ledger::body::{EpochSeal, MAX_FRONTIER};
use crate::ledger::root::SetHash;

/// Why a verifier cannot seal an epoch.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{authors} authors in epoch {epoch} exceed the seal's {} ({MAX_SEAL_PARTS} parts of {MAX_FRONTIER})", MAX_SEAL_PARTS as usize * MAX_FRONTIER)]
pub struct SealTooLarge {
    pub epoch: u64,
    pub authors: usize,
}

/// The seal a verifier signs for `epoch` from the entries it holds (any order), in parts.
pub fn seal_view<'a>(epoch: u64, entries: impl IntoIterator<Item = &'a Entry>) -> Result<Vec<EpochSeal>, SealTooLarge> {
    let mut frontier: BTreeMap<[u8; 32], u64> = BTreeMap::new();
    let mut root = SetHash::default();
    let mut count = 0;
    for e in entries.into_iter().filter(|e| e.epoch == epoch) {
        let f = frontier.entry(e.author).or_default();
        *f = (*f).max(e.seq);
        root.add(&e.id());
        count += 1;
    }
    let authors = frontier.len();
    let frontier: Vec<([u8; 32], u64)> = frontier.into_iter().collect();
    EpochSeal::split(epoch, root.digest(), count, &frontier).ok_or(SealTooLarge { epoch, authors })
}

/// A seal the quorum agreed on.
pub(super) struct QuorumSeal {
    pub root: [u8; 32],
    /// The whole frontier, from the first signer whose parts are all here; `None` while no
    /// signer's are (the epoch is then incomplete here).
    pub frontier: Option<Vec<([u8; 32], u64)>>,
    pub entries: u64,
    /// The staked verifiers that signed it, sorted.
    pub signers: BTreeSet<[u8; 32]>,
}

/// The first view (in view order) signed by verifiers holding at least 2/3 of `stakes`; seals
/// by unstaked authors do not count.
pub(super) fn quorum<'a>(
    seals: impl IntoIterator<Item = &'a ([u8; 32], EpochSeal)>,
    stakes: &BTreeMap<[u8; 32], u64>,
    total: u64,
) -> Option<QuorumSeal> {
    let mut votes: BTreeMap<SealView, BTreeMap<[u8; 32], Vec<&EpochSeal>>> = BTreeMap::new();
    for (author, seal) in seals {
        if stakes.contains_key(author) {
            votes.entry(seal.view()).or_default().entry(*author).or_default().push(seal);
        }
    }
    let (view, by_signer) = votes.into_iter().find(|(_, signers)| {
        let signed: u128 = signers.keys().map(|k| stakes[k] as u128).sum();
        total > 0 && signed * 3 >= total as u128 * 2
    })?;
    let frontier = by_signer.values().find_map(|parts| EpochSeal::assemble(parts.iter().copied()));
    Some(QuorumSeal { root: view.0, frontier, entries: view.2, signers: by_signer.into_keys().collect() })
}

/// Exactly the entries `q` sealed among those labelled with its epoch, or `None` when this
/// node does not hold all of them (the root or the count differ).
pub(super) fn sealed_set<'e>(q: &QuorumSeal, labelled: &'e [Arc<Entry>]) -> Option<Vec<&'e Arc<Entry>>> {
    let limit: BTreeMap<[u8; 32], u64> = q.frontier.as_ref()?.iter().copied().collect();
    let set: Vec<&Arc<Entry>> =
        labelled.iter().filter(|e| limit.get(&e.author).is_some_and(|last| e.seq <= *last)).collect();
    let mut h = SetHash::default();
    for e in &set {
        h.add(&e.id());
    }
    (h.digest() == q.root && set.len() as u64 == q.entries).then_some(set)
}
