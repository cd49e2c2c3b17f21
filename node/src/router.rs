//! Application validation of gossip: every inbound message is opened as a [`SignedEnvelope`]
//! for this network (its author's signature is the only authentication gossip carries: the
//! swarm runs gossipsub anonymously), checked against replays, decoded by kind
//! and handed to the state that kind feeds. The verdict goes back to gossipsub: accepted
//! messages are forwarded, provably bad ones are rejected (the relaying peer's score drops),
//! late or repeated ones are ignored without blame. The router never touches the swarm.

use std::sync::{Arc, Mutex};

use ifx_protocols::gossip::GossipBody;
use ifx_protocols::{Kind, NetworkConfig, Observed, PeerTable, ReplayGuard, SignedEnvelope};
use libp2p::gossipsub::MessageAcceptance;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::ledger::LedgerHandle;
use crate::metrics::NodeMetrics;
use crate::network::{InboundMessage, NetHandle};
use ifx_protocols::ledger::Entry;

/// Epochs back an envelope may come from and still be accepted.
const MAX_AGE_EPOCHS: u64 = 1;
/// Envelope ids remembered for replay detection.
const REPLAY_MEMORY: usize = 65_536;
/// Gossiped ledger entries waiting for their durable write.
const ENTRY_QUEUE: usize = 1024;
/// Most gossiped entries written in one durable batch.
const ENTRY_BATCH: usize = 256;

/// What to tell gossipsub about a message, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Accept,
    Reject(&'static str),
    Ignore(&'static str),
}

impl Verdict {
    fn acceptance(self) -> MessageAcceptance {
        match self {
            Verdict::Accept => MessageAcceptance::Accept,
            Verdict::Reject(_) => MessageAcceptance::Reject,
            Verdict::Ignore(_) => MessageAcceptance::Ignore,
        }
    }

    fn labels(self) -> (&'static str, &'static str) {
        match self {
            Verdict::Accept => ("accepted", "ok"),
            Verdict::Reject(r) => ("rejected", r),
            Verdict::Ignore(r) => ("ignored", r),
        }
    }
}

/// The outcome of the checks that need no storage.
#[derive(Debug)]
pub enum Judged {
    Done(Verdict),
    /// A well-formed ledger entry by the publisher, for the ledger to verify and merge.
    Ledger(Entry),
}

/// Validation state: the replay memory and the state each kind feeds.
pub struct Router {
    net: NetworkConfig,
    replay: ReplayGuard,
    heartbeats: Arc<Mutex<PeerTable>>,
    ledger: LedgerHandle,
    metrics: NodeMetrics,
    announcements: crate::por::Announcements,
    fl: Option<crate::fl::Fl>,
    /// Share of inbound gossip dropped on arrival, in percent (`faults.drop_gossip_pct`).
    drop_pct: u32,
}

impl Router {
    /// A router for `net` feeding the heartbeat table.
    pub fn new(
        net: NetworkConfig,
        heartbeats: Arc<Mutex<PeerTable>>,
        ledger: LedgerHandle,
        metrics: NodeMetrics,
        announcements: crate::por::Announcements,
    ) -> Self {
        Self {
            net,
            replay: ReplayGuard::new(MAX_AGE_EPOCHS, REPLAY_MEMORY),
            heartbeats,
            ledger,
            metrics,
            announcements,
            fl: None,
            drop_pct: 0,
        }
    }

    /// Drops `pct` percent of inbound gossip on arrival (message loss, for tests).
    pub fn with_loss(mut self, pct: u32) -> Self {
        self.drop_pct = pct.min(100);
        self
    }

    /// Hands `fl` gossip to this service.
    pub fn with_fl(mut self, fl: crate::fl::Fl) -> Self {
        self.fl = Some(fl);
        self
    }

    /// Judges one message received at `now_us` (Unix µs) and applies it if it needs no
    /// storage; a ledger entry comes back for [`judge_entries`].
    pub fn judge(&mut self, msg: &InboundMessage, now_us: u64) -> Judged {
        use Judged::Done;
        if self.drop_pct > 0 && rand::random::<u32>() % 100 < self.drop_pct {
            return Done(Verdict::Ignore("dropped_by_fault"));
        }
        let Some(kind) = msg.kind else { return Done(Verdict::Ignore("unknown_topic")) };
        let env = match SignedEnvelope::open(&msg.data, &self.net.id) {
            Ok(env) => env,
            Err(e) if e.is_misbehaviour() => return Done(Verdict::Reject(e.label())),
            Err(e) => return Done(Verdict::Ignore(e.label())),
        };
        if env.kind != kind {
            return Done(Verdict::Reject("kind_topic_mismatch"));
        }
        if let Err(e) = self.replay.admit(&env, self.net.epoch_at(now_us / 1000)) {
            return Done(Verdict::Ignore(e.label()));
        }
        let body = match GossipBody::decode(&env, &self.net.id) {
            Ok(b) => b,
            Err(label) => return Done(Verdict::Reject(label)),
        };
        Done(match body {
            GossipBody::PorAnnouncement(a) => {
                self.announcements.push(env.author, a);
                Verdict::Accept
            }
            GossipBody::Fl(g) => {
                if let Some(fl) = &self.fl {
                    fl.on_gossip(env.author, g);
                }
                Verdict::Accept
            }
            GossipBody::LedgerEntry(entry) => {
                // Gossip carries each author's own entries; others' arrive by sync.
                if entry.author != env.author {
                    return Done(Verdict::Reject("entry_author_mismatch"));
                }
                return Judged::Ledger(entry);
            }
            GossipBody::Heartbeat(hb) => {
                let mut table = self.heartbeats.lock().unwrap_or_else(|e| e.into_inner());
                let seen = table.observe(env.author, &hb, now_us);
                self.metrics.heartbeat_peers.set(table.len() as i64);
                match seen {
                    Observed::Fresh | Observed::OutOfOrder => Verdict::Accept,
                    Observed::Duplicate => Verdict::Ignore("duplicate"),
                    Observed::Stale => Verdict::Ignore("stale_heartbeat"),
                }
            }
        })
    }

    /// Judges messages until the channel closes or `shutdown` is cancelled. Ledger entries
    /// are verified and written on a task of their own, in order, so that a durable write never
    /// holds up the heartbeats and announcements queued behind it.
    pub async fn run(
        mut self,
        mut inbound: mpsc::Receiver<InboundMessage>,
        net: NetHandle,
        shutdown: CancellationToken,
    ) {
        let (entries_tx, mut entries_rx) = mpsc::channel::<(InboundMessage, Entry, u64)>(ENTRY_QUEUE);
        let ingester = {
            let (ledger, network, metrics, net) =
                (self.ledger.clone(), self.net.clone(), self.metrics.clone(), net.clone());
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                let mut batch = Vec::with_capacity(ENTRY_BATCH);
                loop {
                    // Group commit: whatever queued up while the last write was syncing goes
                    // into the next one (a burst of 100 votes is one fsync, not 100 in a row).
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        n = entries_rx.recv_many(&mut batch, ENTRY_BATCH) => if n == 0 { return },
                    };
                    let now = batch.iter().map(|(_, _, t)| *t).max().unwrap_or_default();
                    let (msgs, entries): (Vec<InboundMessage>, Vec<Entry>) =
                        batch.drain(..).map(|(m, e, _)| (m, e)).unzip();
                    let verdicts = judge_entries(&ledger, &network, entries, now).await;
                    for (msg, verdict) in msgs.into_iter().zip(verdicts) {
                        finish(&metrics, &net, msg, verdict).await;
                    }
                }
            })
        };
        loop {
            let msg = tokio::select! {
                _ = shutdown.cancelled() => break,
                m = inbound.recv() => match m { Some(m) => m, None => break },
            };
            let now = crate::unix_time_us();
            match self.judge(&msg, now) {
                Judged::Done(verdict) => finish(&self.metrics, &net, msg, verdict).await,
                Judged::Ledger(entry) => {
                    if entries_tx.send((msg, entry, now)).await.is_err() {
                        break;
                    }
                }
            }
        }
        drop(entries_tx);
        let _ = ingester.await;
    }
}

/// Verifies and merges gossiped entries in one durable write (when any is new); one verdict
/// per entry, in order. Keys without an account write nothing this node keeps or relays
/// (ignored, not rejected: the relayer's view of the accounts may differ for a moment).
pub async fn judge_entries(
    ledger: &LedgerHandle,
    net: &NetworkConfig,
    entries: Vec<Entry>,
    now_us: u64,
) -> Vec<Verdict> {
    let admitted: Vec<bool> = entries.iter().map(|e| ledger.admits(&e.author)).collect();
    let kept: Vec<Entry> = entries.into_iter().zip(&admitted).filter(|(_, a)| **a).map(|(e, _)| e).collect();
    let mut verdicts = judge_admitted(ledger, net, kept, now_us).await.into_iter();
    admitted
        .iter()
        .map(|a| match a {
            true => verdicts.next().unwrap_or(Verdict::Ignore("lost")),
            false => Verdict::Ignore("author_without_account"),
        })
        .collect()
}

/// [`judge_entries`] of entries whose authors this node admits.
async fn judge_admitted(ledger: &LedgerHandle, net: &NetworkConfig, entries: Vec<Entry>, now_us: u64) -> Vec<Verdict> {
    if entries.is_empty() {
        return Vec::new();
    }
    let ids: Vec<_> = entries.iter().map(Entry::id).collect();
    let known: Vec<bool> = ledger.with(|l| ids.iter().map(|id| l.ledger().contains(id)).collect());
    match ledger.ingest(entries, Some(net.epoch_at(now_us / 1000))).await {
        Ok(out) => {
            let accepted: std::collections::BTreeSet<_> = out.accepted.iter().map(|e| e.id()).collect();
            let rejected: std::collections::BTreeMap<usize, _> = out.rejected.iter().map(|(i, e)| (*i, e)).collect();
            (0..ids.len())
                .map(|i| match rejected.get(&i) {
                    Some(e @ ifx_protocols::ledger::EntryError::FromFuture { .. }) => Verdict::Ignore(e.label()),
                    Some(e) => Verdict::Reject(e.label()),
                    None if accepted.contains(&ids[i]) => Verdict::Accept,
                    None if known[i] => Verdict::Ignore("duplicate"),
                    // Neither in the set before nor now: waiting for a predecessor (forwarded,
                    // like an accepted one), or dropped from a full pending pool.
                    None if out.dropped > 0 => Verdict::Ignore("pending_full"),
                    None => Verdict::Accept,
                })
                .collect()
        }
        Err(e) => {
            tracing::error!(error = %e, "ledger write failed");
            vec![Verdict::Ignore("storage_error"); ids.len()]
        }
    }
}

/// Counts the verdict on `msg` and hands it to gossipsub.
async fn finish(metrics: &NodeMetrics, net: &NetHandle, msg: InboundMessage, verdict: Verdict) {
    let (v, reason) = verdict.labels();
    let kind = msg.kind.map(Kind::name).unwrap_or("unknown");
    metrics.envelope(kind, v, reason);
    if !matches!(verdict, Verdict::Accept) {
        debug!(from = %msg.from, kind, verdict = v, reason, "gossip message not accepted");
    }
    net.validated(msg.id, msg.from, verdict.acceptance()).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use ifx_protocols::ledger::{EntryKind, Ledger};

    /// A default network's ledger store in `dir`.
    fn store(dir: &std::path::Path) -> (NetworkConfig, LedgerHandle) {
        let net = NetworkConfig::default();
        let db = ifx_storage::Db::open(dir).unwrap();
        let ledger = LedgerHandle::new(ifx_storage::LedgerStore::open(db, &net.id).unwrap(), NodeMetrics::default());
        (net, ledger)
    }

    #[tokio::test]
    async fn a_group_commit_gives_each_entry_its_own_verdict() {
        let dir = tempfile::tempdir().unwrap();
        let (net, ledger) = store(dir.path());
        let now_us = crate::unix_time_us();
        let epoch = net.epoch_at(now_us / 1000);
        // One author's chain of four, made elsewhere.
        let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
        let mut scratch = Ledger::new(&net.id);
        let chain: Vec<Entry> = (0..4u8)
            .map(|i| {
                let e = scratch.next_entry(&key, epoch, EntryKind::Liveness, vec![i; 16]).unwrap();
                assert!(scratch.ingest(vec![e.clone()], None).rejected.is_empty());
                e
            })
            .collect();
        let mut forged = chain[2].clone();
        forged.body = vec![0xff; 16];
        let forged = Entry::decode(&forged.encode(), &net.id).unwrap();
        let future = Ledger::new(&net.id)
            .next_entry(&ed25519_dalek::SigningKey::from_bytes(&[8; 32]), epoch + 5, EntryKind::Liveness, vec![1])
            .unwrap();

        // Out of order, a forgery and a clock in the future, in one batch.
        let v = judge_entries(&ledger, &net, vec![chain[1].clone(), chain[0].clone(), forged, future], now_us).await;
        assert_eq!(
            v,
            vec![Verdict::Accept, Verdict::Accept, Verdict::Reject("bad_signature"), Verdict::Ignore("future")]
        );
        assert_eq!(ledger.with(|l| l.ledger().len()), 2);
        // A repeat is a duplicate; an entry whose predecessor is missing waits (and is forwarded).
        let v = judge_entries(&ledger, &net, vec![chain[0].clone(), chain[3].clone()], now_us).await;
        assert_eq!(v, vec![Verdict::Ignore("duplicate"), Verdict::Accept]);
        assert_eq!(ledger.with(|l| l.ledger().len()), 2);
        // The missing link completes the chain.
        let v = judge_entries(&ledger, &net, vec![chain[2].clone()], now_us).await;
        assert_eq!(v, vec![Verdict::Accept]);
        assert_eq!(ledger.with(|l| l.ledger().len()), 4);
    }

    /// Issue #21: a key without an account writes nothing anyone keeps. Once the settlement
    /// names the keys with accounts, others' gossiped entries are ignored (not relayed, not
    /// stored, so never served), in the same batch as admitted ones.
    #[tokio::test]
    async fn entries_of_keys_without_an_account_are_neither_kept_nor_relayed() {
        let dir = tempfile::tempdir().unwrap();
        let (net, ledger) = store(dir.path());
        let now_us = crate::unix_time_us();
        let epoch = net.epoch_at(now_us / 1000);
        let (funded, fresh) =
            (ed25519_dalek::SigningKey::from_bytes(&[7; 32]), ed25519_dalek::SigningKey::from_bytes(&[9; 32]));
        let entry = |k: &ed25519_dalek::SigningKey| {
            Ledger::new(&net.id).next_entry(k, epoch, EntryKind::Stake, vec![1; 8]).unwrap()
        };
        ledger.set_funded([funded.verifying_key().to_bytes()].into());
        let v = judge_entries(&ledger, &net, vec![entry(&fresh), entry(&funded)], now_us).await;
        assert_eq!(v, vec![Verdict::Ignore("author_without_account"), Verdict::Accept]);
        assert_eq!(ledger.with(|l| l.ledger().len()), 1);
        // A network without accounts (no settlement names any) keeps every key's.
        ledger.set_funded(Default::default());
        let v = judge_entries(&ledger, &net, vec![entry(&fresh)], now_us).await;
        assert_eq!(v, vec![Verdict::Accept]);
    }
}
