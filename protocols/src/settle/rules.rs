//! Who may write what: the rule per entry kind that decides whether settlement reads an entry,
//! the same on every node, and each author's quota of entries per epoch. An entry outside them
//! stays in the ledger (the set is grow-only) but never counts.
//!
//! | kind | who may author it |
//! |---|---|
//! | liveness, PoR verdicts, seal | a verifier bonded at least `min_verifier_stake` |
//! | proposal, vote | an account with bonded stake |
//! | stake | an account with liquid units (bond) or bonded stake (unbond) |
//! | job payment | an account with liquid units (it burns them) |
//! | delivery fault (evidence of a bad tile) | an account that paid: it counts only about a job its author paid for |
//! | fault rulings | a verifier bonded at least `min_verifier_stake` |
//! | render and FL receipts | anyone: they count only against the author's own paid credit |
//! | a kind this build does not know | nobody (kept, never read) |
//!
//! The quota: `entry_quota_base + bonded / entry_quota_stake` distinct seqs per author and
//! epoch (both entries at an equivocated seq stay together, so equivocation is still seen);
//! receipts are outside it, since each one that counts spends credit a payment bought.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::account::Account;
use super::params::{EconParams, StakeRole};
use crate::ledger::{Entry, EntryKind};

/// Why an author may not write an entry of a kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NotAllowed {
    #[error("only a verifier bonded at least min_verifier_stake writes this")]
    NotAVerifier,
    #[error("only bonded stake proposes and votes")]
    NotBonded,
    #[error("the author holds no units to spend")]
    NoBalance,
    #[error("a kind this build does not read")]
    UnknownKind,
}

/// Whether `account` (the author's as the epoch starts; `None` for a key without one) may write
/// an entry of `kind` that counts.
pub fn may_author(kind: EntryKind, account: Option<&Account>, p: &EconParams) -> Result<(), NotAllowed> {
    let a = account.cloned().unwrap_or_default();
    match kind {
        EntryKind::Liveness
        | EntryKind::PorVerdicts
        | EntryKind::Seal
        | EntryKind::FaultRulings
        | EntryKind::LinkReport => {
            let ok = a.role == Some(StakeRole::Verifier) && a.bonded > 0 && a.bonded >= p.min_verifier_stake;
            if ok { Ok(()) } else { Err(NotAllowed::NotAVerifier) }
        }
        EntryKind::Proposal | EntryKind::Vote => {
            if a.bonded > 0 {
                Ok(())
            } else {
                Err(NotAllowed::NotBonded)
            }
        }
        EntryKind::Stake => {
            if a.liquid > 0 || a.bonded > 0 {
                Ok(())
            } else {
                Err(NotAllowed::NoBalance)
            }
        }
        EntryKind::JobPayment => {
            if a.liquid > 0 {
                Ok(())
            } else {
                Err(NotAllowed::NoBalance)
            }
        }
        EntryKind::DeliveryFault | EntryKind::InferFault => {
            if a.burned > 0 || a.liquid > 0 {
                Ok(())
            } else {
                Err(NotAllowed::NoBalance)
            }
        }
        EntryKind::RenderReceipt | EntryKind::FlReceipt | EntryKind::InferReceipt => Ok(()),
        EntryKind::Unknown(_) => Err(NotAllowed::UnknownKind),
    }
}

/// Whether `kind` is outside the quota (receipts: bounded by the credit they spend).
fn outside_quota(kind: EntryKind) -> bool {
    matches!(kind, EntryKind::RenderReceipt | EntryKind::FlReceipt | EntryKind::InferReceipt)
}

/// The entries of `set` (sorted by author, seq) settlement reads: each by the rule of its
/// kind, each author within its quota. Counts what was left out in `refused`, by
/// `"<kind>: <reason>"`.
pub(super) fn admit<'e>(
    set: &[&'e Arc<Entry>],
    accounts: &BTreeMap<[u8; 32], Account>,
    p: &EconParams,
    refused: &mut BTreeMap<String, u64>,
) -> Vec<&'e Arc<Entry>> {
    let mut out = Vec::with_capacity(set.len());
    let mut author: Option<([u8; 32], u64)> = None;
    let (mut used, mut last_seq) = (0u64, None);
    for e in set {
        if author.map(|(a, _)| a) != Some(e.author) {
            let bonded = accounts.get(&e.author).map_or(0, |a| a.bonded);
            author = Some((e.author, p.entry_quota(bonded)));
            (used, last_seq) = (0, None);
        }
        let quota = author.map_or(0, |(_, q)| q);
        let account = accounts.get(&e.author);
        if let Err(why) = may_author(e.kind, account, p) {
            *refused.entry(format!("{}: {why}", e.kind.name())).or_default() += 1;
            continue;
        }
        if !outside_quota(e.kind) {
            if last_seq != Some(e.seq) {
                used += 1;
                last_seq = Some(e.seq);
            }
            if used > quota {
                *refused
                    .entry(format!("{}: over the author's quota of {quota} entries", e.kind.name()))
                    .or_default() += 1;
                continue;
            }
        }
        out.push(*e);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_has_its_authors() {
        let p = EconParams::default();
        let verifier = Account { role: Some(StakeRole::Verifier), bonded: p.min_verifier_stake, ..Default::default() };
        let small = Account { role: Some(StakeRole::Verifier), bonded: 1, ..Default::default() };
        let worker = Account { role: Some(StakeRole::Worker), bonded: 5, ..Default::default() };
        let artist = Account { liquid: 9, ..Default::default() };
        assert!(may_author(EntryKind::Seal, Some(&verifier), &p).is_ok());
        assert_eq!(may_author(EntryKind::Seal, Some(&small), &p), Err(NotAllowed::NotAVerifier));
        assert_eq!(may_author(EntryKind::Liveness, Some(&worker), &p), Err(NotAllowed::NotAVerifier));
        assert!(may_author(EntryKind::Vote, Some(&worker), &p).is_ok());
        assert_eq!(may_author(EntryKind::Proposal, Some(&artist), &p), Err(NotAllowed::NotBonded));
        assert!(may_author(EntryKind::JobPayment, Some(&artist), &p).is_ok());
        assert_eq!(may_author(EntryKind::JobPayment, Some(&worker), &p), Err(NotAllowed::NoBalance));
        assert_eq!(may_author(EntryKind::Stake, None, &p), Err(NotAllowed::NoBalance));
        assert!(may_author(EntryKind::RenderReceipt, None, &p).is_ok());
        assert!(may_author(EntryKind::DeliveryFault, Some(&artist), &p).is_ok());
        assert_eq!(may_author(EntryKind::DeliveryFault, None, &p), Err(NotAllowed::NoBalance));
        assert!(may_author(EntryKind::FaultRulings, Some(&verifier), &p).is_ok());
        assert_eq!(may_author(EntryKind::FaultRulings, Some(&artist), &p), Err(NotAllowed::NotAVerifier));
        assert!(may_author(EntryKind::LinkReport, Some(&verifier), &p).is_ok());
        assert_eq!(may_author(EntryKind::LinkReport, Some(&artist), &p), Err(NotAllowed::NotAVerifier));
        assert_eq!(may_author(EntryKind::Unknown(77), Some(&verifier), &p), Err(NotAllowed::UnknownKind));
    }

    #[test]
    fn the_quota_grows_with_stake_and_spares_receipts_and_equivocations() {
        let p = EconParams { entry_quota_base: 2, entry_quota_stake: 10, ..Default::default() };
        let k = ed25519_dalek::SigningKey::from_bytes(&[5; 32]);
        let me = k.verifying_key().to_bytes();
        let stake = crate::ledger::StakeOp::Unbond { amount: 1 }.encode();
        let receipt =
            crate::ledger::RenderReceipt { job: [0; 16], tile: 0, worker: [1; 32], work_units: 0, signed: None }
                .encode();
        let mut entries = Vec::new();
        for seq in 0..6u64 {
            let (kind, body) = if seq % 2 == 0 {
                (EntryKind::Stake, stake.clone())
            } else {
                (EntryKind::RenderReceipt, receipt.clone())
            };
            entries.push(Arc::new(Entry::sign(&k, "q", seq, [seq as u8; 32], 0, kind, body).unwrap()));
        }
        // A second entry at seq 4: equivocation keeps both.
        entries.push(Arc::new(Entry::sign(&k, "q", 4, [99; 32], 0, EntryKind::Stake, stake.clone()).unwrap()));
        entries.sort_by_key(|e| (e.author, e.seq, e.id()));
        let set: Vec<&Arc<Entry>> = entries.iter().collect();
        let mut refused = BTreeMap::new();
        // 5 bonded units: quota 2. Stakes at seq 0 and 2 count, both at seq 4 do not; receipts
        // all pass.
        let acct = |bonded| [(me, Account { bonded, ..Default::default() })].into_iter().collect();
        let kept = admit(&set, &acct(5), &p, &mut refused);
        assert_eq!(kept.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![0, 1, 2, 3, 5]);
        assert_eq!(refused.values().sum::<u64>(), 2);
        // 10 more bonded: quota 3, and both siblings at seq 4 stay together.
        let kept = admit(&set, &acct(15), &p, &mut BTreeMap::new());
        assert_eq!(kept.len(), 7);
    }
}
