//! The ledger service: the shared store handle, anti-entropy (periodic pulls from a random
//! peer, answers to peers' pulls), and, on verifiers, one liveness attestation per finished
//! epoch, appended durably and then gossiped.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ed25519_dalek::SigningKey;
use ifx_protocols::ledger::sync::DEFAULT_CHUNK_BYTES;
use ifx_protocols::ledger::{
    Entry, EntryKind, IngestOutcome, Ledger, LivenessAttestation, PeerLiveness, Pull, SyncRequest, SyncResponse,
};
use ifx_protocols::{Kind, NetworkConfig, PeerTable, SignedEnvelope};
use ifx_storage::{LedgerStore, StorageError};
use rand::seq::SliceRandom;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::metrics::NodeMetrics;
use crate::network::{InboundRequest, NetHandle, Proto};

/// Why a pull from a peer stopped.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error(transparent)]
    Stopped(#[from] crate::network::NetworkStopped),
    #[error("request failed: {0}")]
    Request(#[from] crate::network::RequestFailed),
    #[error(transparent)]
    Sync(#[from] ifx_protocols::ledger::sync::SyncError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("the pull took longer than {0:?} (what arrived by then is kept)")]
    Deadline(Duration),
}

/// Most request/response rounds of one pull.
const MAX_ROUNDS: usize = 256;
/// Longest one pull may take: a peer that answers each request just before its timeout must not
/// hold anti-entropy for 256 rounds (42 minutes). 60 s moves 15 full 4 MiB chunks on a 10 Mbit/s
/// home uplink; the next pull goes on from there.
pub const PULL_DEADLINE: Duration = Duration::from_secs(60);

/// Shared access to the node's ledger store.
#[derive(Clone)]
pub struct LedgerHandle {
    store: Arc<Mutex<LedgerStore>>,
    last_append_unix_ms: Arc<AtomicU64>,
    metrics: NodeMetrics,
    /// Cancelled when a write fails (see [`LedgerHandle::watch_durability`]).
    broken: tokio_util::sync::CancellationToken,
    /// Whether this node may sign: false while its own chain may exist on peers but not here.
    own_chain_known: Arc<tokio::sync::watch::Sender<bool>>,
    /// The keys with an account in this node's settlement (`None`: none computed yet, or a
    /// network without accounts, which is open): entries of other keys are neither relayed nor
    /// stored, so never served (issue #21: a key without a balance writes nothing anyone keeps).
    funded: Arc<std::sync::RwLock<Option<std::collections::BTreeSet<[u8; 32]>>>>,
    /// Held while this node pays for a job: two payments at once could both pass the balance
    /// check and the second would be void in settlement.
    paying: Arc<tokio::sync::Mutex<()>>,
}

/// How long an append waits for the node's own chain to be fetched before it fails with
/// [`StorageError::OwnChainUnknown`].
pub const OWN_CHAIN_WAIT: Duration = Duration::from_secs(20);
/// A node without bootnodes that has seen no peer for this long is the first of its network:
/// nobody holds a history of its key, so it signs.
pub const ALONE_AFTER: Duration = Duration::from_secs(5);
/// Pulls the start-up fetch of the own chain runs at once, at most (a pull is a few requests
/// of at most a chunk each; eight at once cost a fresh node little).
const OWN_CHAIN_PEERS: usize = 8;
/// A peer whose pull failed is asked again after this long (its connection may have been new).
const OWN_CHAIN_RETRY: Duration = Duration::from_secs(5);
/// After the first answer, how long the fetch waits for the other connected peers' pulls to
/// end (a peer that stalls its answers holds signing this long, not a whole pull deadline).
const OWN_CHAIN_SETTLE: Duration = Duration::from_secs(5);
/// How long the fetch waits to hear a bootnode before any answering peer will do (a bootnode
/// may be gone for good; the append that waits gives up after [`OWN_CHAIN_WAIT`]).
const OWN_CHAIN_BOOT_WAIT: Duration = Duration::from_secs(15);

/// What the start-up fetch of the own chain knows of each peer it asked.
#[derive(Default)]
struct OwnChainAsks {
    in_flight: std::collections::BTreeSet<libp2p::PeerId>,
    answered: std::collections::BTreeSet<libp2p::PeerId>,
    /// When each peer's last pull failed.
    failed: std::collections::BTreeMap<libp2p::PeerId, tokio::time::Instant>,
}

impl OwnChainAsks {
    /// Whether `peer`'s pull has ended, answered or failed.
    fn ended(&self, peer: &libp2p::PeerId) -> bool {
        self.answered.contains(peer) || self.failed.contains_key(peer)
    }

    /// Up to `n` of the `connected` peers to ask now, in random order: not answered, not in
    /// flight, and not failed within [`OWN_CHAIN_RETRY`].
    fn to_ask(&self, connected: &[libp2p::PeerId], n: usize) -> Vec<libp2p::PeerId> {
        let mut fresh: Vec<libp2p::PeerId> = connected
            .iter()
            .copied()
            .filter(|p| !self.answered.contains(p) && !self.in_flight.contains(p))
            .filter(|p| self.failed.get(p).is_none_or(|at| at.elapsed() >= OWN_CHAIN_RETRY))
            .collect();
        fresh.shuffle(&mut rand::thread_rng());
        fresh.truncate(n);
        fresh
    }
}

/// Counts and roots, for the API and `ifx ledger stats`.
#[derive(Debug, Serialize)]
pub struct LedgerStats {
    pub network: String,
    pub root: String,
    pub entries: usize,
    pub authors: usize,
    pub pending: usize,
    pub equivocators: Vec<String>,
    pub epochs: Vec<EpochStats>,
}

/// One epoch's part of the ledger.
#[derive(Debug, Serialize)]
pub struct EpochStats {
    pub epoch: u64,
    pub entries: u64,
    pub root: String,
}

impl LedgerStats {
    /// Reads the numbers off a ledger.
    pub fn of(l: &Ledger) -> Self {
        Self {
            network: l.net_id().to_owned(),
            root: hex::encode(l.root()),
            entries: l.len(),
            authors: l.author_count(),
            pending: l.pending_len(),
            equivocators: l.equivocators().map(hex::encode).collect(),
            epochs: l
                .epochs()
                .iter()
                .map(|(e, p)| EpochStats { epoch: *e, entries: p.entries, root: hex::encode(p.root()) })
                .collect(),
        }
    }
}

impl LedgerHandle {
    /// Wraps an opened store.
    pub fn new(store: LedgerStore, metrics: NodeMetrics) -> Self {
        metrics.ledger_entries.set(store.ledger().len() as i64);
        Self {
            store: Arc::new(Mutex::new(store)),
            last_append_unix_ms: Arc::new(AtomicU64::new(0)),
            metrics,
            broken: tokio_util::sync::CancellationToken::new(),
            own_chain_known: Arc::new(tokio::sync::watch::channel(true).0),
            funded: Default::default(),
            paying: Default::default(),
        }
    }

    /// Waits for this node's other payment, if one is under way; the next is this caller's
    /// while the guard lives.
    pub async fn one_payment(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.paying.lock().await
    }

    /// Sets the keys whose entries this node keeps (an empty set keeps every key's: a network
    /// without accounts).
    pub fn set_funded(&self, keys: std::collections::BTreeSet<[u8; 32]>) {
        *self.funded.write().unwrap_or_else(|e| e.into_inner()) = (!keys.is_empty()).then_some(keys);
    }

    /// Whether entries of `author` are kept (relayed, stored, served).
    pub fn admits(&self, author: &[u8; 32]) -> bool {
        match &*self.funded.read().unwrap_or_else(|e| e.into_inner()) {
            None => true,
            Some(keys) => keys.contains(author),
        }
    }

    /// Holds this node's appends until its own chain is fetched from peers, if the store holds
    /// none of `me`'s entries (a fresh node, or a wiped `db/` with the key kept: signing at
    /// seq 0 again would equivocate against its own history, and it would be slashed). The
    /// anti-entropy service fetches it first thing ([`LedgerHandle::anti_entropy`]).
    pub fn hold_appends_until_own_chain_fetched(&self, me: &[u8; 32]) {
        if self.with(|s| s.ledger().author_summary(me).is_none()) {
            self.own_chain_known.send_replace(false);
        }
    }

    /// Whether this node may sign (its own chain is here, or was looked for on peers).
    pub fn own_chain_known(&self) -> bool {
        *self.own_chain_known.borrow()
    }

    async fn wait_own_chain(&self) -> Result<(), StorageError> {
        let mut rx = self.own_chain_known.subscribe();
        match tokio::time::timeout(OWN_CHAIN_WAIT, rx.wait_for(|known| *known)).await {
            Ok(Ok(_)) => Ok(()),
            _ => Err(StorageError::OwnChainUnknown),
        }
    }

    /// The start-up fetch: until the own chain is known, pulls from connected peers, at most
    /// [`OWN_CHAIN_PEERS`] at once, in random order, a failed one again after
    /// [`OWN_CHAIN_RETRY`]. Known once some pull completed (the chain came, or the peer had none
    /// of it), every connected peer's pull has ended or [`OWN_CHAIN_SETTLE`] has passed since
    /// the first answer, and one of them was a bootnode (`bootnodes`: their peer ids; after
    /// [`OWN_CHAIN_BOOT_WAIT`] any peer will do). Without bootnodes, a node that saw no peer
    /// for [`ALONE_AFTER`] is the first of its network and signs.
    ///
    /// Hostile peers are why. They may not speak the sync protocol, stall their answers, or
    /// answer "nothing" at once. Asked in the order of their ids, three that sorted first held a
    /// node's signing for 22 s in a testnet under attack. Believing the first quick "nothing"
    /// would let a stranger make a node with a wiped store sign seq 0 again and be slashed for
    /// equivocating: the bootnodes the operator chose are heard first.
    async fn fetch_own_chain(
        &self,
        net: &NetHandle,
        me: &[u8; 32],
        bootnodes: &[libp2p::PeerId],
        shutdown: &CancellationToken,
    ) {
        if self.own_chain_known() {
            return;
        }
        let started = tokio::time::Instant::now();
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        let mut asks = OwnChainAsks::default();
        let mut first_answer: Option<tokio::time::Instant> = None;
        let mut pulls = futures::stream::FuturesUnordered::new();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
                Some((peer, r)) = futures::StreamExt::next(&mut pulls), if !pulls.is_empty() => {
                    asks.in_flight.remove(&peer);
                    match r {
                        Ok(_) => {
                            asks.answered.insert(peer);
                            first_answer.get_or_insert_with(tokio::time::Instant::now);
                        }
                        Err(e) => {
                            debug!(%peer, error = %e, "fetching the own chain failed");
                            asks.failed.insert(peer, tokio::time::Instant::now());
                        }
                    }
                }
            }
            let Ok(snap) = net.snapshot().await else { return };
            let connected: Vec<libp2p::PeerId> = snap.connected.iter().filter_map(|p| p.peer_id.parse().ok()).collect();
            match first_answer {
                None if connected.is_empty() && bootnodes.is_empty() && started.elapsed() >= ALONE_AFTER => {
                    info!("no peers and no bootnodes: the first node of its network signs from seq 0");
                    break;
                }
                None => {}
                Some(first) => {
                    let settled = first.elapsed() >= OWN_CHAIN_SETTLE || connected.iter().all(|p| asks.ended(p));
                    let heard_boot = bootnodes.is_empty()
                        || bootnodes.iter().any(|b| asks.answered.contains(b))
                        || started.elapsed() >= OWN_CHAIN_BOOT_WAIT;
                    if settled && heard_boot {
                        let held = self.with(|s| s.ledger().author_summary(me).map_or(0, |a| a.len));
                        info!(
                            own_entries = held,
                            peers = asks.answered.len(),
                            "own chain fetched from peers before signing"
                        );
                        break;
                    }
                }
            }
            for peer in asks.to_ask(&connected, OWN_CHAIN_PEERS.saturating_sub(pulls.len())) {
                asks.in_flight.insert(peer);
                pulls.push(async move { (peer, self.pull(net, peer).await) });
            }
        }
        self.own_chain_known.send_replace(true);
    }

    /// Durable or nothing: returns (ending the node's `storage` service, which stops the node
    /// with a non-zero exit) as soon as a write fails; otherwise at `shutdown`. A node
    /// whose store refused a write must not go on serving or signing from memory.
    pub async fn watch_durability(self, shutdown: CancellationToken) {
        tokio::select! {
            _ = self.broken.cancelled() => {
                tracing::error!("a ledger write failed: the store is no longer durable; stopping the node");
            }
            // A requested stop: the supervisor is already stopping everyone.
            _ = shutdown.cancelled() => {}
        }
    }

    /// Whether a write has failed.
    pub fn is_broken(&self) -> bool {
        self.broken.is_cancelled()
    }

    fn check<T>(&self, r: Result<T, StorageError>) -> Result<T, StorageError> {
        if r.is_err() && self.with(LedgerStore::is_poisoned) {
            self.broken.cancel();
        }
        r
    }

    /// Runs `f` on the store (keep it short: ingests wait for it).
    pub fn with<R>(&self, f: impl FnOnce(&LedgerStore) -> R) -> R {
        f(&self.store.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Verifies, merges and durably stores `entries` (on a blocking thread).
    pub async fn ingest(&self, entries: Vec<Entry>, current_epoch: Option<u64>) -> Result<IngestOutcome, StorageError> {
        let store = self.store.clone();
        let now_ms = crate::unix_time_us() / 1000;
        let out = tokio::task::spawn_blocking(move || {
            let mut store = store.lock().unwrap_or_else(|e| e.into_inner());
            store.expire_pending(now_ms);
            store.ingest(entries, current_epoch)
        })
        .await
        .expect("ledger ingest task panicked");
        let out = self.check(out)?;
        self.record(&out);
        Ok(out)
    }

    /// Signs, durably stores and returns this node's next entry.
    pub async fn append(
        &self,
        key: SigningKey,
        epoch: u64,
        kind: EntryKind,
        body: Vec<u8>,
    ) -> Result<Arc<Entry>, StorageError> {
        self.wait_own_chain().await?;
        let store = self.store.clone();
        let e = tokio::task::spawn_blocking(move || {
            store.lock().unwrap_or_else(|e| e.into_inner()).append(&key, epoch, kind, body)
        })
        .await
        .expect("ledger append task panicked");
        let e = self.check(e)?;
        self.last_append_unix_ms.store(crate::unix_time_us() / 1000, Ordering::Relaxed);
        self.metrics.ledger_entries.set(self.with(|s| s.ledger().len()) as i64);
        Ok(e)
    }

    /// Appends an entry of this node's at the current epoch and gossips it (anti-entropy
    /// delivers it later if nobody is subscribed yet).
    pub async fn append_and_gossip(
        &self,
        net: &NetHandle,
        key: &SigningKey,
        network: &ifx_protocols::NetworkConfig,
        kind: EntryKind,
        body: Vec<u8>,
    ) -> Result<Arc<Entry>, StorageError> {
        let epoch = network.epoch_at(crate::unix_time_us() / 1000);
        self.append_at_and_gossip(net, key, network, epoch, kind, body).await
    }

    /// Appends an entry labelled with `epoch` (raised to the label of this node's previous
    /// entry if that is later) and gossips it.
    pub async fn append_at_and_gossip(
        &self,
        net: &NetHandle,
        key: &SigningKey,
        network: &ifx_protocols::NetworkConfig,
        epoch: u64,
        kind: EntryKind,
        body: Vec<u8>,
    ) -> Result<Arc<Entry>, StorageError> {
        let entry = self.append(key.clone(), epoch, kind, body).await?;
        let epoch = entry.epoch;
        match SignedEnvelope::sign(key, &network.id, Kind::LedgerEntry, epoch, entry.encode()) {
            Ok(env) => {
                if let Ok(Err(e)) = net.publish(Kind::LedgerEntry, env.encode()).await {
                    debug!(kind = kind.name(), error = %e, "entry not gossiped; anti-entropy will carry it");
                }
            }
            Err(e) => warn!(error = %e, "cannot wrap an entry in an envelope"),
        }
        Ok(entry)
    }

    /// When this node last appended an entry of its own (Unix ms; 0 = never).
    pub fn last_append_unix_ms(&self) -> u64 {
        self.last_append_unix_ms.load(Ordering::Relaxed)
    }

    fn record(&self, out: &IngestOutcome) {
        self.metrics.ledger_entries.set(self.with(|s| s.ledger().len()) as i64);
        for (_, e) in &out.rejected {
            self.metrics.ledger_rejected.get_or_create(&vec![("reason".to_string(), e.label().to_string())]).inc();
        }
        for author in &out.new_equivocators {
            warn!(
                author = hex::encode(author),
                "equivocation: two entries at one seq; kept as evidence, nothing past it"
            );
        }
    }

    /// Pulls what `peer` has and this node lacks, in chunks; returns the entries gained.
    pub async fn pull(&self, net: &NetHandle, peer: libp2p::PeerId) -> Result<usize, PullError> {
        tokio::time::timeout(PULL_DEADLINE, self.pull_rounds(net, peer))
            .await
            .unwrap_or(Err(PullError::Deadline(PULL_DEADLINE)))
    }

    async fn pull_rounds(&self, net: &NetHandle, peer: libp2p::PeerId) -> Result<usize, PullError> {
        let mut gained = 0;
        let mut pull = Pull::new();
        let net_id = self.with(|s| s.ledger().net_id().to_owned());
        for _ in 0..MAX_ROUNDS {
            let Some(req) = self.with(|s| pull.request(s.ledger(), DEFAULT_CHUNK_BYTES).map(SyncRequest::encode))
            else {
                break;
            };
            let bytes = net.request(Proto::LedgerSync, peer, req).await??;
            self.metrics.ledger_sync_bytes.inc_by(bytes.len() as u64);
            let resp = SyncResponse::decode(&bytes)?;
            let entries: Vec<Entry> = resp
                .entries
                .iter()
                .filter_map(|b| Entry::decode(b, &net_id).ok())
                .filter(|e| self.admits(&e.author))
                .collect();
            if !entries.is_empty() {
                gained += self.ingest(entries, None).await?.accepted.len();
            }
            pull.advance(resp.next)?;
        }
        Ok(gained)
    }

    /// Answers peers' sync requests until `shutdown`.
    pub async fn serve(self, mut inbound: mpsc::Receiver<InboundRequest>, net: NetHandle, shutdown: CancellationToken) {
        loop {
            let req = tokio::select! {
                _ = shutdown.cancelled() => return,
                r = inbound.recv() => match r { Some(r) => r, None => return },
            };
            if self.is_broken() {
                // Nothing is served that is not on disk; the node is stopping.
                continue;
            }
            match SyncRequest::decode(&req.data) {
                Ok(r) => {
                    // The plan under the lock (Arc clones), the bytes after it.
                    let plan = self.with(|s| s.ledger().missing_for(&r));
                    let Ok(resp) = tokio::task::spawn_blocking(move || plan.encode()).await else { continue };
                    net.respond(Proto::LedgerSync, req.channel, resp).await;
                }
                // Dropping the channel fails the peer's request.
                Err(e) => debug!(peer = %req.peer, error = %e, "malformed sync request"),
            }
        }
    }

    /// First fetches the own chain if appends are held (see
    /// [`LedgerHandle::hold_appends_until_own_chain_fetched`]; `me`, and the peer ids of the
    /// configured `bootnodes`), then every `every` pulls from one random connected peer.
    pub async fn anti_entropy(
        self,
        net: NetHandle,
        every: Duration,
        me: [u8; 32],
        bootnodes: Vec<libp2p::PeerId>,
        shutdown: CancellationToken,
    ) {
        self.fetch_own_chain(&net, &me, &bootnodes, &shutdown).await;
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let Ok(snap) = net.snapshot().await else { return };
            let Some(peer) = snap.connected.choose(&mut rand::thread_rng()) else { continue };
            let Ok(peer) = peer.peer_id.parse() else { continue };
            match self.pull(&net, peer).await {
                Ok(0) => {}
                Ok(n) => info!(%peer, entries = n, "anti-entropy brought entries gossip had missed"),
                Err(e) => debug!(%peer, error = %e, "anti-entropy pull failed"),
            }
        }
    }
}

/// Workers per `PorVerdicts` entry: 64 x ~420 bytes stays under the 32 KiB body limit (one
/// entry of every worker challenged in a 72-hour epoch would not).
const VERDICTS_PER_ENTRY: usize = 64;

/// A verifier's attestation writer.
pub struct Attester {
    pub ledger: LedgerHandle,
    pub key: SigningKey,
    pub net: NetworkConfig,
    pub heartbeats: Arc<Mutex<PeerTable>>,
    /// This verifier's challenge results (cumulative; each epoch attests the difference).
    pub por: crate::por::PorStats,
    /// The last epoch done with (attested, or never to be): the sealer waits for it.
    pub attested: Arc<AtomicU64>,
    /// This verifier's link measurements, by the epoch they were taken in.
    pub links: crate::por::links::LinkSamples,
}

impl Attester {
    /// The attestation of `epoch` from the heartbeat table, in parts (peers heard in it only).
    pub fn attestation(&self, epoch: u64) -> Vec<LivenessAttestation> {
        let table = self.heartbeats.lock().unwrap_or_else(|e| e.into_inner());
        let peers = table
            .iter()
            .map(|(peer, rec)| PeerLiveness { peer: *peer, seen: rec.by_epoch.get(&epoch).copied().unwrap_or(0) });
        LivenessAttestation::split(epoch, self.net.heartbeats_per_epoch(), peers)
    }

    /// The PoR verdicts since `before` (a previous snapshot of the cumulative results).
    pub fn verdicts(
        &self,
        epoch: u64,
        before: &std::collections::BTreeMap<String, crate::por::WorkerStats>,
        now: &std::collections::BTreeMap<String, crate::por::WorkerStats>,
    ) -> ifx_protocols::ledger::PorVerdicts {
        let keys: std::collections::BTreeMap<String, [u8; 32]> = {
            let t = self.heartbeats.lock().unwrap_or_else(|e| e.into_inner());
            t.iter().filter_map(|(k, _)| crate::network::author_peer_id(k).map(|p| (p.to_string(), *k))).collect()
        };
        let mut workers: Vec<ifx_protocols::ledger::WorkerVerdict> = now
            .iter()
            .filter_map(|(peer, w)| {
                let b = before.get(peer).cloned().unwrap_or_default();
                let (passed, failed, timeouts) = (w.passed - b.passed, w.failed - b.failed, w.timeouts - b.timeouts);
                (passed + failed + timeouts > 0).then(|| ifx_protocols::ledger::WorkerVerdict {
                    worker: keys.get(peer).copied().unwrap_or([0; 32]),
                    passed: passed as u32,
                    failed: failed as u32,
                    timeouts: timeouts as u32,
                    mean_latency_ms: w.mean_latency_ms as u32,
                    benches: (w.benches - b.benches) as u32,
                    ib_milli: if w.benches > b.benches { w.ib_milli.min(u32::MAX as u64) as u32 } else { 0 },
                    last_failure: w.last_failure.clone().unwrap_or_default().chars().take(160).collect(),
                    proof: w.proofs.get(&epoch).cloned(),
                })
            })
            .filter(|v| v.worker != [0; 32])
            .collect();
        workers.sort_by_key(|w| w.worker);
        workers.dedup_by(|a, b| a.worker == b.worker);
        ifx_protocols::ledger::PorVerdicts { epoch, workers }
    }

    /// After each epoch this node saw whole (it started before the epoch did), appends its
    /// attestation and gossips it; stops at `shutdown`.
    pub async fn run(self, net: NetHandle, shutdown: CancellationToken) {
        let epoch_ms = self.net.epoch_secs * 1000;
        // Late heartbeats of the finished epoch still count for a moment.
        let grace_ms = (epoch_ms / 10).min(1000);
        let now_ms = || crate::unix_time_us() / 1000;
        let mut next = self.net.epoch_at(now_ms()) + 1;
        self.attested.fetch_max(next - 1, Ordering::AcqRel);
        let mut por_before = self.por.snapshot();
        loop {
            // Attest `next` once epoch next+1 is `grace_ms` old.
            let due = self.net.genesis_unix_secs * 1000 + (next + 1) * epoch_ms + grace_ms;
            let wait = Duration::from_millis(due.saturating_sub(now_ms()));
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
            let current = self.net.epoch_at(now_ms());
            let por_now = self.por.snapshot();
            let verdicts = self.verdicts(next, &por_before, &por_now);
            por_before = por_now;
            let mut bodies: Vec<_> =
                self.attestation(next).into_iter().map(|a| (EntryKind::Liveness, a.encode())).collect();
            // In entries of at most 64 workers (a verdict with its proof is about 420 bytes;
            // settlement sums a verifier's entries of an epoch).
            for part in verdicts.workers.chunks(VERDICTS_PER_ENTRY) {
                let v = ifx_protocols::ledger::PorVerdicts { epoch: verdicts.epoch, workers: part.to_vec() };
                bodies.push((EntryKind::PorVerdicts, v.encode()));
            }
            // Link measurements only when there were some (most epochs of a big network).
            let links = self.links.take(next);
            if !links.is_empty() {
                let parts = ifx_protocols::ledger::LinkReport::split(next, links);
                bodies.extend(parts.into_iter().map(|r| (EntryKind::LinkReport, r.encode())));
            }
            for (kind, body) in bodies {
                // Labelled with the attested epoch: it is written in that epoch's grace period,
                // before the epoch's seal, so it belongs to the epoch's sealed set.
                match self.ledger.append_at_and_gossip(&net, &self.key, &self.net, next, kind, body).await {
                    Ok(entry) => info!(epoch = next, seq = entry.seq, kind = kind.name(), "attestation appended"),
                    Err(e) => warn!(error = %e, epoch = next, "cannot append the attestation"),
                }
            }
            // Epochs skipped by a late wake-up are never attested either.
            self.attested.fetch_max(current.max(next + 1) - 1, Ordering::AcqRel);
            next = current.max(next + 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue #16: a failed write poisoned the store but the node went on serving and signing
    /// from memory. Now the handle breaks, and the node's `storage` service ends (which stops
    /// the node, see `supervisor`).
    #[tokio::test]
    async fn a_failed_write_ends_the_storage_service() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("db");
        let key = SigningKey::from_bytes(&[3; 32]);
        {
            let mut s = LedgerStore::open(ifx_storage::Db::open(&path).unwrap(), "t").unwrap();
            s.append(&key, 0, EntryKind::Liveness, vec![]).unwrap();
        }
        let store = LedgerStore::open(ifx_storage::Db::open_read_only(&path).unwrap(), "t").unwrap();
        let handle = LedgerHandle::new(store, NodeMetrics::default());
        let shutdown = CancellationToken::new();
        let watch = tokio::spawn(handle.clone().watch_durability(shutdown.clone()));
        assert!(!handle.is_broken());
        assert!(handle.append(key, 1, EntryKind::Liveness, vec![]).await.is_err());
        assert!(handle.is_broken());
        tokio::time::timeout(std::time::Duration::from_secs(5), watch)
            .await
            .expect("the storage service ended on its own")
            .unwrap();
        assert!(!shutdown.is_cancelled(), "it ended because of the write, not a stop");
    }
}
