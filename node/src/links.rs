//! Workers' links as the bonded verifiers attest them in the ledger (`LinkReport` entries, see
//! `por::links` for the measuring): per worker the median over verifiers of each one's latest
//! measurement ([`ifx_protocols::ledger::body::link::attested`]). Read by `GET /peers` and by
//! a job owner's tile queue, which gives a worker with a slow link fewer tiles at a time.
//!
//! Only bonded verifiers' reports count (the same view that decides who may challenge this
//! node; a network without bonded verifiers is open, as it is for challenges), and not those
//! of an author caught equivocating. A report counts for [`KEEP_EPOCHS`] epochs or
//! [`KEEP_SECS`], whichever is longer: links change, and the ledger's whole history need not
//! be read again every few seconds.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use ifx_protocols::ledger::body::link::{AttestedLink, LinkReport, attested};
use ifx_protocols::ledger::{Entry, EntryKind};
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::ledger::LedgerHandle;
use crate::por::verifiers::BondedVerifiers;

/// Epochs a report counts for, at least.
pub const KEEP_EPOCHS: u64 = 24;
/// Seconds a report counts for, at least (short test epochs).
pub const KEEP_SECS: u64 = 120;
/// How often the view is read again (when the ledger changed).
pub const REFRESH: Duration = Duration::from_secs(5);

/// The attested links of workers, by worker key.
#[derive(Clone, Default)]
pub struct AttestedLinks(Arc<RwLock<BTreeMap<[u8; 32], AttestedLink>>>);

/// The attested links in `entries` (chains of the authors that count, any order) from reports of
/// epoch `since` on: each author's parts of one epoch merged, then the median over authors.
pub fn read(entries: &[Arc<Entry>], skip: &BTreeSet<[u8; 32]>, since: u64) -> BTreeMap<[u8; 32], AttestedLink> {
    let mut parts: BTreeMap<([u8; 32], u64), Vec<LinkReport>> = BTreeMap::new();
    for e in entries.iter().filter(|e| e.kind == EntryKind::LinkReport && e.epoch >= since) {
        if skip.contains(&e.author) {
            continue;
        }
        // A report labelled with another epoch than its entry's is not read (a verifier cannot
        // make one measurement its newest for ever by dating it ahead).
        match LinkReport::decode(&e.body) {
            Ok(r) if r.epoch == e.epoch => parts.entry((e.author, e.epoch)).or_default().push(r),
            _ => {}
        }
    }
    let merged: Vec<([u8; 32], LinkReport)> = parts
        .into_iter()
        .filter_map(|((author, _), written)| LinkReport::merge(&written).map(|r| (author, r)))
        .collect();
    attested(merged.iter().map(|(a, r)| (*a, r)))
}

impl AttestedLinks {
    /// The attested link of `worker`, if any verifier measured it lately.
    pub fn get(&self, worker: &[u8; 32]) -> Option<AttestedLink> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).get(worker).cloned()
    }

    /// Every attested link.
    pub fn all(&self) -> BTreeMap<[u8; 32], AttestedLink> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Reads the view from `ledger` now, with the reports of `verifiers` (every author's while
    /// the network is open).
    pub fn update(&self, ledger: &LedgerHandle, network: &ifx_protocols::NetworkConfig, verifiers: &BondedVerifiers) {
        let now = network.epoch_at(crate::unix_time_us() / 1000);
        let keep = KEEP_EPOCHS.max(KEEP_SECS.div_ceil(network.epoch_secs.max(1)));
        let keys = verifiers.keys();
        let (entries, skip) = ledger.with(|l| {
            let l = l.ledger();
            let entries: Vec<Arc<Entry>> = match &keys {
                Some(keys) => keys.iter().flat_map(|k| l.chain(k)).collect(),
                None => l.iter_sorted().filter(|e| e.kind == EntryKind::LinkReport).collect(),
            };
            (entries, l.equivocators().copied().collect::<BTreeSet<_>>())
        });
        let links = read(&entries, &skip, now.saturating_sub(keep));
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = links;
    }

    /// Reads the view every [`REFRESH`] while the ledger changes, until `shutdown`.
    pub async fn refresh(
        self,
        ledger: LedgerHandle,
        network: ifx_protocols::NetworkConfig,
        verifiers: BondedVerifiers,
        shutdown: CancellationToken,
    ) {
        let mut read_at = None;
        loop {
            let root = ledger.with(|l| l.ledger().root());
            if read_at != Some(root) {
                read_at = Some(root);
                let (me, l, n, v) = (self.clone(), ledger.clone(), network.clone(), verifiers.clone());
                if let Err(e) = tokio::task::spawn_blocking(move || me.update(&l, &n, &v)).await {
                    debug!(error = %e, "reading the attested links failed");
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(REFRESH) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ifx_protocols::api::LinkPath;
    use ifx_protocols::ledger::WorkerLink;

    fn report(key: &ed25519_dalek::SigningKey, seq: u64, label: u64, epoch: u64, kbit: u32) -> Arc<Entry> {
        let r = LinkReport::split(
            epoch,
            [WorkerLink {
                worker: [7; 32],
                path: LinkPath::Direct,
                rtt_us: 100,
                to_worker_kbit: kbit,
                from_worker_kbit: kbit,
            }],
        );
        Arc::new(Entry::sign(key, "t", seq, [seq as u8; 32], label, EntryKind::LinkReport, r[0].encode()).unwrap())
    }

    /// Reports out of the window, dated ahead of their entry, or by an equivocator do not count.
    #[test]
    fn only_reports_in_the_window_dated_honestly_by_honest_authors_count() {
        let (a, b, c) = (
            ed25519_dalek::SigningKey::from_bytes(&[1; 32]),
            ed25519_dalek::SigningKey::from_bytes(&[2; 32]),
            ed25519_dalek::SigningKey::from_bytes(&[3; 32]),
        );
        let entries = vec![
            report(&a, 0, 2, 2, 1),        // too old
            report(&a, 1, 10, 10, 30_000), // counts
            report(&b, 0, 10, 99, 1),      // dated ahead: not read
            report(&b, 1, 11, 11, 20_000), // counts
            report(&c, 0, 11, 11, 5),      // an equivocator's
        ];
        let c_key = c.verifying_key().to_bytes();
        let got = read(&entries, &[c_key].into(), 5);
        let l = &got[&[7; 32]];
        assert_eq!((l.verifiers, l.epoch, l.to_worker_kbit), (2, 11, 20_000));
        assert!(read(&entries, &BTreeSet::new(), 12).is_empty());
    }
}
