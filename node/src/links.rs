//! Workers' links as the bonded verifiers attest them in the ledger (`LinkReport` entries, see
//! `por::links` for the measuring): per worker the median over verifiers of each one's latest
//! measurement ([`ifx_protocols::ledger::body::link::attested`]). Read by `GET /peers` and by
//! a job owner's tile queue, which gives a worker with a slow link fewer tiles at a time.
//! Beside the links, the IB the same verifiers' `PorVerdicts` attest ([`read_ib`]): the tile
//! queue's guess at a worker's speed before it has answered a tile.
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
use ifx_protocols::ledger::{Entry, EntryKind, PorVerdicts};
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

/// The attested links of workers, and their attested IB, by worker key.
#[derive(Clone, Default)]
pub struct AttestedLinks(Arc<RwLock<Attested>>);

#[derive(Default)]
struct Attested {
    links: BTreeMap<[u8; 32], AttestedLink>,
    ib_milli: BTreeMap<[u8; 32], u32>,
}

/// Workers' IB x 1000 as the verifiers' `PorVerdicts` in `entries` (chains of the authors that
/// count) attest it from epoch `since` on: per verifier its newest verdict with a benchmark,
/// then the median over verifiers (a job owner's first guess at a worker's speed, issue #18).
pub fn read_ib(entries: &[Arc<Entry>], skip: &BTreeSet<[u8; 32]>, since: u64) -> BTreeMap<[u8; 32], u32> {
    // worker -> verifier -> (epoch, ib) of the newest.
    type Newest = BTreeMap<[u8; 32], (u64, u32)>;
    let mut newest: BTreeMap<[u8; 32], Newest> = BTreeMap::new();
    for e in entries.iter().filter(|e| e.kind == EntryKind::PorVerdicts && e.epoch >= since) {
        if skip.contains(&e.author) {
            continue;
        }
        let Ok(v) = PorVerdicts::decode(&e.body) else { continue };
        if v.epoch != e.epoch {
            continue;
        }
        for w in v.workers.iter().filter(|w| w.ib_milli > 0) {
            let slot = newest.entry(w.worker).or_default().entry(e.author).or_insert((v.epoch, w.ib_milli));
            if v.epoch > slot.0 {
                *slot = (v.epoch, w.ib_milli);
            }
        }
    }
    newest
        .into_iter()
        .filter_map(|(w, by)| {
            Some((w, ifx_protocols::stats::lower_median(by.into_values().map(|(_, ib)| ib).collect())?))
        })
        .collect()
}

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
        self.0.read().unwrap_or_else(|e| e.into_inner()).links.get(worker).cloned()
    }

    /// Every attested link.
    pub fn all(&self) -> BTreeMap<[u8; 32], AttestedLink> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).links.clone()
    }

    /// The IB x 1000 the verifiers attest to `worker` lately, if any benchmarked it.
    pub fn ib_milli(&self, worker: &[u8; 32]) -> Option<u32> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).ib_milli.get(worker).copied()
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
                None => l
                    .iter_sorted()
                    .filter(|e| matches!(e.kind, EntryKind::LinkReport | EntryKind::PorVerdicts))
                    .collect(),
            };
            (entries, l.equivocators().copied().collect::<BTreeSet<_>>())
        });
        let since = now.saturating_sub(keep);
        let view = Attested { links: read(&entries, &skip, since), ib_milli: read_ib(&entries, &skip, since) };
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = view;
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

    fn verdict(key: &ed25519_dalek::SigningKey, seq: u64, label: u64, epoch: u64, ib_milli: u32) -> Arc<Entry> {
        let w = ifx_protocols::ledger::WorkerVerdict {
            worker: [7; 32],
            passed: 1,
            failed: 0,
            timeouts: 0,
            mean_latency_ms: 5,
            benches: (ib_milli > 0) as u32,
            ib_milli,
            last_failure: String::new(),
            proof: None,
        };
        let body = PorVerdicts { epoch, workers: vec![w] }.encode();
        Arc::new(Entry::sign(key, "t", seq, [seq as u8; 32], label, EntryKind::PorVerdicts, body).unwrap())
    }

    /// Issue #18: a worker's attested IB is the median over verifiers of each one's newest
    /// benchmark; a verdict without a benchmark, one dated ahead, one out of the window and an
    /// equivocator's do not count.
    #[test]
    fn the_attested_ib_is_the_median_of_each_verifiers_newest_benchmark() {
        let keys: Vec<ed25519_dalek::SigningKey> =
            (1..=4).map(|i| ed25519_dalek::SigningKey::from_bytes(&[i; 32])).collect();
        let entries = vec![
            verdict(&keys[0], 0, 2, 2, 9_000),   // too old
            verdict(&keys[0], 1, 10, 10, 1_000), // a's newest with a benchmark
            verdict(&keys[0], 2, 11, 11, 0),     // no benchmark: a stays at 1,000
            verdict(&keys[1], 0, 10, 10, 3_000), // b's older
            verdict(&keys[1], 1, 12, 12, 4_000), // b's newest
            verdict(&keys[1], 2, 12, 99, 1),     // dated ahead: not read
            verdict(&keys[2], 0, 12, 12, 5_000), // c
            verdict(&keys[3], 0, 12, 12, 1),     // an equivocator's
        ];
        let skip = [keys[3].verifying_key().to_bytes()].into();
        // a 1,000, b 4,000, c 5,000: the median.
        assert_eq!(read_ib(&entries, &skip, 5)[&[7; 32]], 4_000);
        // Epoch 12 on: b and c only, the lower middle.
        assert_eq!(read_ib(&entries, &skip, 12)[&[7; 32]], 4_000);
        assert!(read_ib(&entries, &skip, 13).is_empty());
    }
}
