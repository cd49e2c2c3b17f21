//! A verifier's link measurements (issue #17, item 4): it measures the workers it is connected
//! to over the link protocol (a round trip, then [`PROBE_BYTES`] each way) on the path the
//! connection takes, and the attester (`crate::ledger::Attester`) writes what it measured in
//! an epoch as that epoch's `LinkReport`. Job owners schedule by the median over verifiers
//! (`crate::links`), and `GET /peers` shows it.
//!
//! Bounds, each for a reason: at most [`PER_EPOCH`] workers an epoch (a verifier's traffic
//! stays near 128 MiB an epoch however big the network); one worker at most once an epoch and
//! not again within [`MIN_GAP`] (a measurement is three link requests, and a worker answers a
//! peer one link request per 5 s after a burst of 4: `network::rate`; and each one shares the
//! worker's link with everything else it carries); one measurement at a
//! time, [`PAUSE`] apart.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ifx_protocols::api::LinkMeasurement;
use ifx_protocols::ledger::WorkerLink;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use crate::network::NetHandle;
use ifx_protocols::PeerTable;

/// Bytes moved each way in one measurement: the most a link request moves (2 MiB, 0.8 s at
/// 20 Mbit/s). Traffic shapers let a burst pass at line rate (home ISPs a few hundred KB; the
/// testnet's `tc tbf` 4 KB per Mbit/s), so a short transfer measures the burst, not the rate:
/// with 256 KiB the home-nat testnet's 50 Mbit/s link was attested at 93-215 Mbit/s.
pub const PROBE_BYTES: u32 = ifx_protocols::link::MAX_LINK_BYTES;
/// Workers measured per epoch, at most.
pub const PER_EPOCH: usize = 32;
/// The least time between two measurements of one worker by this verifier: 3 link requests
/// at one per 5 s need 15 s, and every measurement shares the worker's link with whatever else
/// it carries (other verifiers' measurements among it), so each one should be rare.
pub const MIN_GAP: Duration = Duration::from_secs(30);
/// Between two measurements.
pub const PAUSE: Duration = Duration::from_secs(1);
/// How long one measurement may take (a dial, three requests; 2 MiB each way at 1 Mbit/s
/// is 34 s).
const MEASURE_WAIT: Duration = Duration::from_secs(60);

/// Measurements by epoch, then by worker key.
type ByEpoch = BTreeMap<u64, BTreeMap<[u8; 32], WorkerLink>>;

/// What this verifier measured, by epoch, for its attester.
#[derive(Clone, Default)]
pub struct LinkSamples(Arc<Mutex<ByEpoch>>);

impl LinkSamples {
    /// Records a measurement of `worker` taken in `epoch` (a later one of the epoch replaces it).
    pub fn record(&self, epoch: u64, worker: [u8; 32], m: &LinkMeasurement) {
        let clamp = |v: u64| v.min(u32::MAX as u64) as u32;
        let link = WorkerLink {
            worker,
            path: m.path.unwrap_or_default(),
            rtt_us: clamp(m.rtt_us),
            to_worker_kbit: clamp(m.up_kbit),
            from_worker_kbit: clamp(m.down_kbit),
        };
        self.0.lock().unwrap_or_else(|e| e.into_inner()).entry(epoch).or_default().insert(worker, link);
    }

    /// Takes the measurements of `epoch` (dropping older epochs' left-overs).
    pub fn take(&self, epoch: u64) -> Vec<WorkerLink> {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let taken = m.remove(&epoch).map(|w| w.into_values().collect()).unwrap_or_default();
        m.retain(|e, _| *e > epoch);
        taken
    }

    /// How many workers were measured in `epoch`.
    fn count(&self, epoch: u64) -> usize {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).get(&epoch).map_or(0, BTreeMap::len)
    }
}

/// The worker to measure next (sans I/O): among `connected` workers (keys), one not measured in
/// this epoch nor within [`MIN_GAP`] of `now_ms`, the least recently measured first (never
/// measured before all others, then by key); `None` once [`PER_EPOCH`] were measured this epoch.
pub fn next(
    connected: &[[u8; 32]],
    last_ms: &BTreeMap<[u8; 32], (u64, u64)>,
    epoch: u64,
    measured_this_epoch: usize,
    now_ms: u64,
) -> Option<[u8; 32]> {
    if measured_this_epoch >= PER_EPOCH {
        return None;
    }
    let gap = MIN_GAP.as_millis() as u64;
    connected
        .iter()
        .filter(|k| match last_ms.get(*k) {
            None => true,
            Some((e, at)) => *e < epoch && now_ms.saturating_sub(*at) >= gap,
        })
        .min_by_key(|k| (last_ms.get(*k).map(|(_, at)| *at), **k))
        .copied()
}

/// The verifier's measuring loop.
pub struct LinkProber {
    pub net: NetHandle,
    pub heartbeats: Arc<Mutex<PeerTable>>,
    pub network: ifx_protocols::NetworkConfig,
    pub samples: LinkSamples,
}

impl LinkProber {
    /// Measures workers until `shutdown` (see the module's bounds).
    pub async fn run(self, shutdown: CancellationToken) {
        let mut last: BTreeMap<[u8; 32], (u64, u64)> = BTreeMap::new();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(PAUSE) => {}
            }
            let Ok(snap) = self.net.snapshot().await else { return };
            let workers = crate::heartbeat::connected_workers(
                &self.heartbeats.lock().unwrap_or_else(|e| e.into_inner()),
                &snap.connected,
            );
            let now_ms = crate::unix_time_us() / 1000;
            let epoch = self.network.epoch_at(now_ms);
            let keys: Vec<[u8; 32]> = workers.iter().map(|(_, k)| *k).collect();
            let Some(worker) = next(&keys, &last, epoch, self.samples.count(epoch), now_ms) else { continue };
            let Some(peer) = workers.iter().find(|(_, k)| *k == worker).map(|(p, _)| *p) else { continue };
            last.insert(worker, (epoch, now_ms));
            // An entry older than this epoch and the gap orders like no entry (least recent).
            let gap = MIN_GAP.as_millis() as u64;
            last.retain(|_, (e, at)| *e >= epoch || now_ms.saturating_sub(*at) < gap);
            let measured = tokio::select! {
                _ = shutdown.cancelled() => return,
                m = tokio::time::timeout(MEASURE_WAIT, self.net.measure_link(peer, PROBE_BYTES, MEASURE_WAIT)) => m,
            };
            match measured {
                Err(_) => debug!(%peer, "link measurement took too long"),
                Ok(Err(_)) => return,
                Ok(Ok(Err(e))) => debug!(%peer, error = e, "link measurement failed"),
                Ok(Ok(Ok(m))) => {
                    // Labelled with the epoch it ended in: a 2 MiB transfer can outlast the
                    // epoch it started in, whose attestation may be written by then (the
                    // home-nat testnet's 20 Mbit/s worker was never attested that way).
                    let epoch = self.network.epoch_at(crate::unix_time_us() / 1000);
                    info!(
                        %peer,
                        path = m.path.map(|p| p.name()).unwrap_or("gone"),
                        rtt_us = m.rtt_us,
                        to_worker_kbit = m.up_kbit,
                        from_worker_kbit = m.down_kbit,
                        "link measured"
                    );
                    self.samples.record(epoch, worker, &m);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_worker_once_an_epoch_least_recent_first_and_no_more_than_the_cap() {
        let (a, b, c) = ([1; 32], [2; 32], [3; 32]);
        let mut last = BTreeMap::new();
        // Never measured first, by key.
        assert_eq!(next(&[c, a, b], &last, 5, 0, 100_000), Some(a));
        last.insert(a, (5, 100_000));
        last.insert(b, (4, 95_000));
        // c was never measured: before b.
        assert_eq!(next(&[a, b, c], &last, 5, 2, 100_000), Some(c));
        last.insert(c, (5, 100_000));
        // b was measured last epoch but only 5 s ago: not yet; 30 s after, yes; a not this epoch.
        assert_eq!(next(&[a, b, c], &last, 5, 3, 100_000), None);
        assert_eq!(next(&[a, b, c], &last, 5, 3, 124_999), None);
        assert_eq!(next(&[a, b, c], &last, 5, 3, 125_000), Some(b));
        // The next epoch, everyone is due again, least recent first; the cap stops it.
        assert_eq!(next(&[a, b, c], &last, 6, 0, 130_000), Some(b));
        assert_eq!(next(&[a, b, c], &last, 6, PER_EPOCH, 130_000), None);
    }

    #[test]
    fn samples_are_taken_once_per_epoch_and_clamped() {
        let s = LinkSamples::default();
        let m = |kbit| LinkMeasurement {
            peer: String::new(),
            path: Some(ifx_protocols::api::LinkPath::Relayed),
            rtt_us: u64::MAX,
            bytes: PROBE_BYTES as u64,
            up_kbit: kbit,
            down_kbit: 7,
        };
        s.record(3, [9; 32], &m(5));
        s.record(4, [9; 32], &m(6));
        s.record(4, [9; 32], &m(8));
        let four = s.take(4);
        assert_eq!(four.len(), 1);
        assert_eq!((four[0].rtt_us, four[0].to_worker_kbit, four[0].from_worker_kbit), (u32::MAX, 8, 7));
        assert!(s.take(4).is_empty());
        // Epoch 3's sample was dropped when 4 was taken (its attestation is long written).
        assert!(s.take(3).is_empty());
    }
}
