//! Heartbeats: what a node announces about itself every interval, and the peer table a receiver
//! builds from them. Pure state: the caller passes in the time.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bincode::{Decode, Encode};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::envelope::Kind;

/// Longest string field (adapter name, backend, version) a heartbeat may carry.
pub const MAX_TEXT_LEN: usize = 128;
/// Sequence numbers remembered per peer to tell a late heartbeat from a repeated one (a bitmap
/// of this many bits per peer, as IPsec's anti-replay window).
const SEQ_WINDOW: u64 = 256;
/// Peers a table holds. Past it, the peer heard from longest ago is forgotten: 100,000 peers
/// at about 400 bytes each is 40 MB, and a flood of fresh keys cannot grow the table further.
pub const MAX_PEERS: usize = 100_000;
/// Epochs of per-epoch liveness counts kept per peer.
const EPOCHS_KEPT: usize = 4;

/// What a node does in the network.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Encode, Decode, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Renders tiles and trains models.
    Worker,
    /// Issues challenges, attests liveness and quality, seals epochs.
    Verifier,
}

impl Role {
    /// Lower-case name as used on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Worker => "worker",
            Role::Verifier => "verifier",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "worker" => Ok(Role::Worker),
            "verifier" => Ok(Role::Verifier),
            other => Err(format!("unknown role {other:?} (expected worker or verifier)")),
        }
    }
}

/// The compute a node offers.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct Capacity {
    /// Graphics backend of the adapter (`vulkan`, `metal`, `gl`, ...) or `cpu`.
    pub backend: String,
    /// Adapter name as the driver reports it, or `cpu`.
    pub adapter: String,
    /// Adapter class: `discrete`, `integrated`, `virtual`, `cpu` or `other`.
    pub device_type: String,
    /// CPU cores available to the node.
    pub cores: u32,
    /// Physical memory in MiB.
    pub memory_mb: u64,
}

/// The body of a [`Kind::Heartbeat`] envelope.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode, Serialize, Deserialize)]
pub struct Heartbeat {
    /// When the sending process started (Unix ms): a restart begins a new sequence.
    pub boot_unix_ms: u64,
    /// Sequence number within this boot, starting at 0.
    pub seq: u64,
    /// Send time (Unix µs), for publish-to-receipt latency.
    pub sent_unix_us: u64,
    /// The sender's role.
    pub role: Role,
    /// The sender's compute.
    pub capacity: Capacity,
    /// Seconds since the sender started.
    pub uptime_secs: u64,
    /// Sender's software version.
    pub version: String,
    /// Whether its operator paused its work (issue #19): it takes no tiles, challenges or
    /// training, and its heartbeats fill no liveness slot (settlement pays worked slots only;
    /// verifiers do not challenge it, so a pause is no QoS failure either).
    pub paused: bool,
}

/// A heartbeat body that is not acceptable.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum HeartbeatError {
    #[error("malformed heartbeat: {0}")]
    Malformed(#[source] crate::codec::DecodeError),
    #[error("heartbeat field {0} is longer than {MAX_TEXT_LEN} bytes")]
    FieldTooLong(&'static str),
}

impl Heartbeat {
    /// Body bytes for an envelope.
    pub fn encode(&self) -> Vec<u8> {
        crate::codec::encode(self)
    }

    /// Decodes a body with size limits; never panics.
    pub fn decode(body: &[u8]) -> Result<Self, HeartbeatError> {
        const MAX: usize = 1024;
        debug_assert_eq!(MAX, Kind::Heartbeat.max_body_bytes());
        let hb: Heartbeat = crate::codec::decode::<_, MAX>(body).map_err(HeartbeatError::Malformed)?;
        hb.check()?;
        Ok(hb)
    }

    fn check(&self) -> Result<(), HeartbeatError> {
        for (name, v) in [
            ("capacity.backend", &self.capacity.backend),
            ("capacity.adapter", &self.capacity.adapter),
            ("capacity.device_type", &self.capacity.device_type),
            ("version", &self.version),
        ] {
            if v.len() > MAX_TEXT_LEN {
                return Err(HeartbeatError::FieldTooLong(name));
            }
        }
        Ok(())
    }
}

/// How a received heartbeat relates to what the table knew.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Observed {
    /// Newer than anything seen from this peer: the table now shows it.
    Fresh,
    /// New, but older than the latest one seen (reordered in transit): counted, not shown.
    OutOfOrder,
    /// Seen before: ignored.
    Duplicate,
    /// From an earlier boot, too far behind, or too old in time: ignored.
    Stale,
}

/// What the table knows about one peer.
#[derive(Clone, Debug, Serialize)]
pub struct PeerRecord {
    /// Latest role announced.
    pub role: Role,
    /// Latest capacity announced.
    pub capacity: Capacity,
    /// Latest software version announced.
    pub version: String,
    /// Boot time of the sequence being tracked.
    pub boot_unix_ms: u64,
    /// Highest sequence number seen in that boot.
    pub last_seq: u64,
    /// Local time the latest fresh heartbeat arrived (Unix ms).
    pub last_seen_unix_ms: u64,
    /// Local time the first heartbeat arrived (Unix ms).
    pub first_seen_unix_ms: u64,
    /// Uptime the peer reported in its latest heartbeat.
    pub uptime_secs: u64,
    /// Distinct heartbeats received (fresh and out-of-order).
    pub received: u64,
    /// Repeated heartbeats ignored.
    pub duplicates: u64,
    /// Heartbeats that arrived after a newer one.
    pub out_of_order: u64,
    /// Publish-to-receipt delay of the latest fresh heartbeat, µs.
    pub last_delay_us: u64,
    /// Liveness slots of this node's clock in which a heartbeat of the peer arrived, per epoch
    /// (the last few epochs), for liveness attestations ([`SlotClock`]); a paused peer's
    /// heartbeats fill none.
    pub by_epoch: BTreeMap<u64, u64>,
    /// Whether its latest fresh heartbeat said it is paused.
    pub paused: bool,
    #[serde(skip)]
    window: SeqWindow,
    /// The last slots counted, newest first (a heartbeat may fill a neighbour of its slot).
    #[serde(skip)]
    recent_slots: [Option<u64>; 3],
}

/// Which of the last [`SEQ_WINDOW`] sequence numbers up to the highest one were seen: bit `i`
/// of the 256-bit map (word `i / 64`) is `highest - i`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct SeqWindow {
    highest: u64,
    bits: [u64; 4],
}

impl SeqWindow {
    fn starting_at(seq: u64) -> Self {
        SeqWindow { highest: seq, bits: [1, 0, 0, 0] }
    }

    /// Marks `seq` seen; how it relates to what was seen before. No arithmetic here can
    /// overflow, whatever the peer sends (`u64::MAX` included).
    fn mark(&mut self, seq: u64) -> Observed {
        if seq > self.highest {
            self.shift(seq - self.highest);
            self.highest = seq;
            self.bits[0] |= 1;
            return Observed::Fresh;
        }
        let back = self.highest - seq;
        if back >= SEQ_WINDOW {
            return Observed::Stale;
        }
        let (word, bit) = ((back / 64) as usize, back % 64);
        if self.bits[word] & (1 << bit) != 0 {
            return Observed::Duplicate;
        }
        self.bits[word] |= 1 << bit;
        Observed::OutOfOrder
    }

    /// Moves every mark `n` places older (those past the window fall off).
    fn shift(&mut self, n: u64) {
        if n >= SEQ_WINDOW {
            self.bits = [0; 4];
            return;
        }
        let (words, bits) = ((n / 64) as usize, (n % 64) as u32);
        let old = self.bits;
        for i in 0..4 {
            let from = |j: usize| if i >= j { old[i - j] } else { 0 };
            let carry = if bits > 0 { from(words + 1) >> (64 - bits) } else { 0 };
            self.bits[i] = (from(words) << bits) | carry;
        }
    }
}

/// Peers known from their heartbeats, keyed by ed25519 public key (sorted, so iteration is
/// deterministic).
#[derive(Debug)]
pub struct PeerTable {
    peers: BTreeMap<[u8; 32], PeerRecord>,
    /// `(last_seen_unix_ms, key)` of every peer: who was heard from longest ago.
    by_seen: BTreeSet<(u64, [u8; 32])>,
    /// Heartbeats older than this (by their send time) are stale.
    max_age_ms: u64,
    /// Most peers held.
    cap: usize,
    latency: LatencySamples,
    /// The receiver's own clock, in liveness slots.
    slots: SlotClock,
    /// Each peer's clock against this node's: (its heartbeat's send time - the receipt time
    /// here) in ms, and when it was taken; stale heartbeats too (a clock far off makes them so).
    clocks: BTreeMap<[u8; 32], (i64, u64)>,
}

/// Peers' clock readings kept (`PeerTable::clock_offset`): beyond it the oldest reading goes.
/// A median over this many is one no minority of peers moves far.
pub const CLOCK_PEERS: usize = 256;

/// Liveness slots on the receiver's clock (issue #21: uptime was the count of distinct
/// heartbeat seqs in the epoch the sender labelled, so a minute online and a burst of
/// heartbeats filled an epoch). A peer is counted once per slot of one heartbeat interval in
/// which a heartbeat of it arrived here, in the epoch of this node's clock; a heartbeat within
/// a quarter interval of a slot edge may fill the empty slot across that edge (send jitter), so
/// a burst at one instant fills at most two slots.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotClock {
    pub genesis_ms: u64,
    pub epoch_ms: u64,
    pub slot_ms: u64,
}

impl SlotClock {
    /// Slots of `slot_ms` in epochs of `epoch_ms` from `genesis_ms`.
    pub fn new(genesis_ms: u64, epoch_ms: u64, slot_ms: u64) -> Self {
        Self { genesis_ms, epoch_ms: epoch_ms.max(1), slot_ms: slot_ms.max(1) }
    }

    /// The slots a heartbeat arriving at `now_ms` may fill, the one it arrived in first.
    fn candidates(&self, now_ms: u64) -> [Option<u64>; 2] {
        let t = now_ms.saturating_sub(self.genesis_ms);
        let (slot, into) = (t / self.slot_ms, t % self.slot_ms);
        let edge = self.slot_ms / 4;
        let other = if into < edge {
            slot.checked_sub(1)
        } else if self.slot_ms - into <= edge {
            slot.checked_add(1)
        } else {
            None
        };
        [Some(slot), other]
    }

    /// The epoch a slot begins in.
    fn epoch_of(&self, slot: u64) -> u64 {
        (slot as u128 * self.slot_ms as u128 / self.epoch_ms as u128).min(u64::MAX as u128) as u64
    }
}

impl Default for SlotClock {
    /// One-second slots in one-minute epochs from the Unix epoch (tests).
    fn default() -> Self {
        Self::new(0, 60_000, 1_000)
    }
}

impl PeerTable {
    /// A table that treats heartbeats older than `max_age_ms` as stale and keeps the last
    /// `latency_samples` delays.
    pub fn new(max_age_ms: u64, latency_samples: usize) -> Self {
        Self::with_cap(max_age_ms, latency_samples, MAX_PEERS)
    }

    /// The same, holding at most `cap` peers.
    pub fn with_cap(max_age_ms: u64, latency_samples: usize, cap: usize) -> Self {
        Self {
            peers: BTreeMap::new(),
            by_seen: BTreeSet::new(),
            max_age_ms,
            cap: cap.max(1),
            latency: LatencySamples::new(latency_samples),
            slots: SlotClock::default(),
            clocks: BTreeMap::new(),
        }
    }

    /// The same table counting liveness in `slots` of this node's clock.
    pub fn with_slots(mut self, slots: SlotClock) -> Self {
        self.slots = slots;
        self
    }

    /// Forgets peers not heard from for two stale periods (their liveness counts are then
    /// older than any epoch still attested), and past the cap the one heard from longest ago.
    fn make_room(&mut self, now_ms: u64) {
        let forget_before = now_ms.saturating_sub(self.max_age_ms.saturating_mul(2));
        while let Some(&(seen, key)) = self.by_seen.first() {
            if seen >= forget_before && self.peers.len() < self.cap {
                break;
            }
            self.by_seen.pop_first();
            self.peers.remove(&key);
        }
    }

    /// Records a validated heartbeat from `author` received at `now_unix_us` (this node's
    /// clock, which alone decides the liveness slot and epoch it counts in).
    pub fn observe(&mut self, author: [u8; 32], hb: &Heartbeat, now_unix_us: u64) -> Observed {
        let now_ms = now_unix_us / 1000;
        self.read_clock(author, hb.sent_unix_us, now_unix_us);
        let delay_us = now_unix_us.saturating_sub(hb.sent_unix_us);
        if delay_us / 1000 > self.max_age_ms {
            return Observed::Stale;
        }
        let rec = match self.peers.get_mut(&author) {
            None => {
                self.make_room(now_ms);
                self.peers.insert(author, PeerRecord::first(hb, &self.slots, now_ms, delay_us));
                self.by_seen.insert((now_ms, author));
                self.latency.push(delay_us);
                return Observed::Fresh;
            }
            Some(rec) => rec,
        };
        let outcome = if hb.boot_unix_ms > rec.boot_unix_ms {
            // The peer restarted: its sequence begins anew.
            rec.window = SeqWindow::starting_at(hb.seq);
            rec.boot_unix_ms = hb.boot_unix_ms;
            rec.last_seq = hb.seq;
            Observed::Fresh
        } else if hb.boot_unix_ms < rec.boot_unix_ms {
            Observed::Stale
        } else {
            let o = rec.window.mark(hb.seq);
            rec.last_seq = rec.window.highest;
            o
        };
        match outcome {
            Observed::Fresh => {
                self.by_seen.remove(&(rec.last_seen_unix_ms, author));
                self.by_seen.insert((now_ms, author));
                rec.role = hb.role;
                rec.capacity = hb.capacity.clone();
                rec.version = hb.version.clone();
                rec.uptime_secs = hb.uptime_secs;
                rec.last_seen_unix_ms = now_ms;
                rec.last_delay_us = delay_us;
                rec.paused = hb.paused;
                rec.count(&self.slots, now_ms, hb.paused);
                self.latency.push(delay_us);
            }
            Observed::OutOfOrder => {
                rec.out_of_order = rec.out_of_order.saturating_add(1);
                rec.count(&self.slots, now_ms, hb.paused);
                self.latency.push(delay_us);
            }
            Observed::Duplicate => rec.duplicates = rec.duplicates.saturating_add(1),
            Observed::Stale => {}
        }
        outcome
    }

    /// Notes `author`'s clock reading: its send time against the receipt time here.
    fn read_clock(&mut self, author: [u8; 32], sent_us: u64, now_us: u64) {
        let offset_ms = ((sent_us as i128 - now_us as i128) / 1000).clamp(i64::MIN as i128, i64::MAX as i128) as i64;
        let now_ms = now_us / 1000;
        if self.clocks.len() >= CLOCK_PEERS
            && !self.clocks.contains_key(&author)
            && let Some(oldest) = self.clocks.iter().min_by_key(|(_, (_, at))| *at).map(|(k, _)| *k)
        {
            self.clocks.remove(&oldest);
        }
        self.clocks.insert(author, (offset_ms, now_ms));
    }

    /// How far peers' clocks are from this node's, in ms (positive: theirs are ahead, so this
    /// one is behind), as the lower median of each peer's latest heartbeat's send time against
    /// its arrival here (transit time included, milliseconds on a LAN), and over how many peers;
    /// `None` before any heartbeat.
    pub fn clock_offset(&self) -> Option<(i64, usize)> {
        let mut v: Vec<i64> = self.clocks.values().map(|(o, _)| *o).collect();
        v.sort_unstable();
        Some((*v.get((v.len().checked_sub(1)?) / 2)?, v.len()))
    }

    /// The record of one peer.
    pub fn get(&self, author: &[u8; 32]) -> Option<&PeerRecord> {
        self.peers.get(author)
    }

    /// All peers, sorted by public key.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8; 32], &PeerRecord)> {
        self.peers.iter()
    }

    /// Number of peers known.
    pub fn len(&self) -> usize {
        self.peers.len()
    }

    /// True when no peer has been heard from.
    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }

    /// Total distinct heartbeats received from all peers.
    pub fn total_received(&self) -> u64 {
        self.peers.values().fold(0u64, |n, r| n.saturating_add(r.received))
    }

    /// Recent publish-to-receipt delays.
    pub fn latency(&self) -> &LatencySamples {
        &self.latency
    }
}

impl PeerRecord {
    fn first(hb: &Heartbeat, slots: &SlotClock, now_ms: u64, delay_us: u64) -> Self {
        let mut rec = PeerRecord {
            role: hb.role,
            capacity: hb.capacity.clone(),
            version: hb.version.clone(),
            boot_unix_ms: hb.boot_unix_ms,
            last_seq: hb.seq,
            last_seen_unix_ms: now_ms,
            first_seen_unix_ms: now_ms,
            uptime_secs: hb.uptime_secs,
            received: 0,
            duplicates: 0,
            out_of_order: 0,
            last_delay_us: delay_us,
            by_epoch: BTreeMap::new(),
            paused: hb.paused,
            window: SeqWindow::starting_at(hb.seq),
            recent_slots: [None; 3],
        };
        rec.count(slots, now_ms, hb.paused);
        rec
    }

    /// Counts a distinct heartbeat received at `now_ms`: in the first of its candidate slots
    /// not counted yet, if any, unless the peer is `paused`.
    fn count(&mut self, slots: &SlotClock, now_ms: u64, paused: bool) {
        self.received = self.received.saturating_add(1);
        if paused {
            return;
        }
        let Some(slot) =
            slots.candidates(now_ms).into_iter().flatten().find(|s| !self.recent_slots.contains(&Some(*s)))
        else {
            return;
        };
        self.recent_slots = [Some(slot), self.recent_slots[0], self.recent_slots[1]];
        let n = self.by_epoch.entry(slots.epoch_of(slot)).or_default();
        *n = n.saturating_add(1);
        while self.by_epoch.len() > EPOCHS_KEPT {
            self.by_epoch.pop_first();
        }
    }
}

/// A bounded ring of latency samples (µs) with exact percentiles over what it holds.
#[derive(Clone, Debug)]
pub struct LatencySamples {
    cap: usize,
    samples: VecDeque<u64>,
}

impl LatencySamples {
    /// Keeps the most recent `cap` samples.
    pub fn new(cap: usize) -> Self {
        Self { cap: cap.max(1), samples: VecDeque::new() }
    }

    /// Adds one sample, dropping the oldest past the cap.
    pub fn push(&mut self, us: u64) {
        if self.samples.len() == self.cap {
            self.samples.pop_front();
        }
        self.samples.push_back(us);
    }

    /// The samples held, oldest first.
    pub fn to_vec(&self) -> Vec<u64> {
        self.samples.iter().copied().collect()
    }
}

/// Nearest-rank percentile (`p` in 0..=100) of `values`; None when empty.
pub fn percentile(values: &[u64], p: u32) -> Option<u64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_unstable();
    let rank = (u64::from(p.min(100)) * v.len() as u64).div_ceil(100).max(1) as usize;
    Some(v[rank - 1])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hb(boot: u64, seq: u64, sent_us: u64) -> Heartbeat {
        Heartbeat {
            boot_unix_ms: boot,
            seq,
            sent_unix_us: sent_us,
            role: Role::Worker,
            capacity: Capacity {
                backend: "vulkan".into(),
                adapter: "llvmpipe".into(),
                device_type: "cpu".into(),
                cores: 2,
                memory_mb: 1024,
            },
            uptime_secs: seq,
            version: "0.1.0".into(),
            paused: false,
        }
    }

    const A: [u8; 32] = [1; 32];
    const T0: u64 = 1_000_000_000;

    #[test]
    fn body_roundtrip_and_limits() {
        let h = hb(1, 2, 3);
        assert_eq!(Heartbeat::decode(&h.encode()).unwrap(), h);
        let mut long = h.clone();
        long.version = "x".repeat(MAX_TEXT_LEN + 1);
        assert_eq!(Heartbeat::decode(&long.encode()), Err(HeartbeatError::FieldTooLong("version")));
        let mut trailing = h.encode();
        trailing.push(1);
        assert!(Heartbeat::decode(&trailing).is_err());
    }

    #[test]
    fn fresh_duplicate_out_of_order() {
        let mut t = PeerTable::new(60_000, 16);
        assert_eq!(t.observe(A, &hb(5, 0, T0), T0 + 1000), Observed::Fresh);
        assert_eq!(t.observe(A, &hb(5, 2, T0), T0 + 1000), Observed::Fresh);
        assert_eq!(t.observe(A, &hb(5, 2, T0), T0 + 1000), Observed::Duplicate);
        assert_eq!(t.observe(A, &hb(5, 1, T0), T0 + 1000), Observed::OutOfOrder);
        assert_eq!(t.observe(A, &hb(5, 1, T0), T0 + 1000), Observed::Duplicate);
        let r = t.get(&A).unwrap();
        assert_eq!((r.last_seq, r.received, r.duplicates, r.out_of_order), (2, 3, 2, 1));
        // The table shows the newest heartbeat, not the late one.
        assert_eq!(r.uptime_secs, 2);
        // Three heartbeats at one instant, 1 ms into a slot: that slot and the one before.
        assert_eq!(r.by_epoch, [(16, 2)].into_iter().collect());
    }

    /// Issue #19 (`ifx doctor`): peers' clocks against this one, a stale heartbeat's too (a
    /// clock minutes off makes every heartbeat stale), by lower median, so a minority of peers
    /// lying about the time moves nothing; the readings kept are bounded.
    #[test]
    fn clock_offset_is_the_median_over_peers_and_bounded() {
        let mut t = PeerTable::new(60_000, 16);
        assert_eq!(t.clock_offset(), None);
        let now = T0 + 200_000_000;
        // Three peers 120 s behind this node (their heartbeats arrive stale), one liar far ahead.
        for (i, sent) in [now - 120_000_000, now - 120_001_000, now - 119_999_000, u64::MAX].iter().enumerate() {
            t.observe([i as u8 + 1; 32], &hb(1, 0, *sent), now);
        }
        assert_eq!(t.clock_offset(), Some((-120_000, 4)));
        // A peer's latest reading replaces its earlier one.
        t.observe([1; 32], &hb(1, 1, now - 120_000_000 + 5_000_000), now + 5_000_000);
        assert_eq!(t.clock_offset(), Some((-120_000, 4)));
        for i in 0..(CLOCK_PEERS as u32 + 10) {
            let mut k = [0u8; 32];
            k[..4].copy_from_slice(&i.to_be_bytes());
            k[31] = 9;
            t.observe(k, &hb(1, 0, now), now + i as u64);
        }
        assert_eq!(t.clock_offset().map(|c| c.1), Some(CLOCK_PEERS));
        // The newest readings stayed: peers in step with this clock.
        assert!(t.clock_offset().unwrap().0.abs() < 1_000);
    }

    /// Issue #21: uptime was the count of distinct seqs in the epoch the sender labelled, so a
    /// burst of heartbeats filled an epoch. Now slots of the receiver's clock count.
    #[test]
    fn liveness_counts_slots_of_the_receivers_clock() {
        // 1 s slots, 60 s epochs from genesis at 1,000 s.
        let clock = SlotClock::new(1_000_000, 60_000, 1_000);
        let mut t = PeerTable::new(600_000, 16).with_slots(clock);
        let at = |ms: u64| 1_000_000_000 + ms * 1000;
        // A burst of 1,000 distinct heartbeats in one instant fills at most two slots.
        for seq in 0..1_000 {
            t.observe(A, &hb(5, seq, at(500)), at(500));
        }
        assert_eq!(t.get(&A).unwrap().by_epoch, [(0, 1)].into_iter().collect());
        for seq in 1_000..2_000 {
            t.observe(A, &hb(5, seq, at(10_990)), at(10_990));
        }
        assert_eq!(t.get(&A).unwrap().by_epoch, [(0, 3)].into_iter().collect());
        // A regular sender with up to a fifth of an interval of jitter fills every slot of the
        // next epoch (60 of 60), whatever its phase against the slot edges.
        for phase in [0u64, 130, 499, 800, 999] {
            let mut t = PeerTable::new(600_000, 16).with_slots(clock);
            for i in 0..60u64 {
                let jitter = (i * 7_919) % 200;
                let ms = 60_000 + i * 1_000 + phase + jitter;
                t.observe(A, &hb(5, i, at(ms)), at(ms));
            }
            let by = &t.get(&A).unwrap().by_epoch;
            assert!(by.get(&1).copied().unwrap_or(0) + by.get(&2).copied().unwrap_or(0) >= 59, "phase {phase}: {by:?}");
            assert!(by.values().sum::<u64>() <= 60);
        }
        // The sender's epoch label plays no part: heartbeats count where they arrive.
        assert_eq!(clock.epoch_of(119), 1);
    }

    /// Issue #19: a paused worker's heartbeats keep it known (and say it is paused) but fill no
    /// liveness slot, so settlement pays only the slots it worked; resumed, it counts again.
    #[test]
    fn paused_heartbeats_fill_no_slot() {
        let clock = SlotClock::new(1_000_000, 60_000, 1_000);
        let mut t = PeerTable::new(600_000, 16).with_slots(clock);
        let at = |ms: u64| 1_000_000_000 + ms * 1000;
        for i in 0..30u64 {
            let paused = (10..20).contains(&i);
            let h = Heartbeat { paused, ..hb(5, i, at(500 + i * 1_000)) };
            t.observe(A, &h, at(500 + i * 1_000));
            assert_eq!(t.get(&A).unwrap().paused, paused);
        }
        let r = t.get(&A).unwrap();
        assert_eq!((r.received, r.by_epoch.get(&0).copied()), (30, Some(20)));
        assert!(Heartbeat::decode(&Heartbeat { paused: true, ..hb(1, 2, 3) }.encode()).unwrap().paused);
    }

    #[test]
    fn restart_begins_new_sequence_and_old_boot_is_stale() {
        let mut t = PeerTable::new(60_000, 16);
        t.observe(A, &hb(5, 100, T0), T0);
        assert_eq!(t.observe(A, &hb(6, 0, T0), T0), Observed::Fresh);
        assert_eq!(t.get(&A).unwrap().last_seq, 0);
        assert_eq!(t.observe(A, &hb(5, 101, T0), T0), Observed::Stale);
    }

    #[test]
    fn old_heartbeats_are_stale() {
        let mut t = PeerTable::new(10_000, 16);
        assert_eq!(t.observe(A, &hb(5, 0, T0), T0 + 11_000_000), Observed::Stale);
        assert!(t.is_empty());
        t.observe(A, &hb(5, 1000, T0), T0);
        assert_eq!(t.observe(A, &hb(5, 1000 - SEQ_WINDOW, T0), T0), Observed::Stale);
    }

    #[test]
    fn percentiles() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50), Some(50));
        assert_eq!(percentile(&v, 99), Some(99));
        assert_eq!(percentile(&v, 100), Some(100));
        assert_eq!(percentile(&v, 0), Some(1));
        assert_eq!(percentile(&[], 50), None);
        let mut s = LatencySamples::new(3);
        for i in 0..5 {
            s.push(i);
        }
        assert_eq!(s.to_vec(), vec![2, 3, 4]);
    }

    /// Issue #16: `u64::MAX` then `u64::MAX - 1` overflowed `seq + SEQ_WINDOW` and panicked the
    /// router task.
    #[test]
    fn extreme_sequence_numbers_do_not_panic() {
        let mut t = PeerTable::new(60_000, 16);
        assert_eq!(t.observe(A, &hb(5, u64::MAX, T0), T0), Observed::Fresh);
        assert_eq!(t.observe(A, &hb(5, u64::MAX - 1, T0), T0), Observed::OutOfOrder);
        assert_eq!(t.observe(A, &hb(5, u64::MAX, T0), T0), Observed::Duplicate);
        assert_eq!(t.observe(A, &hb(5, 0, T0), T0), Observed::Stale);
        // Extreme boots and times too.
        assert_eq!(t.observe(A, &hb(u64::MAX, 0, u64::MAX), T0), Observed::Fresh);
        assert_eq!(t.observe(A, &hb(u64::MAX, u64::MAX, 0), u64::MAX), Observed::Stale);
        assert_eq!(t.get(&A).unwrap().last_seq, 0);
    }

    #[test]
    fn the_table_forgets_silent_peers_and_holds_at_most_its_cap() {
        let mut t = PeerTable::with_cap(10_000, 16, 3);
        for (i, at) in [(1u8, 0u64), (2, 1_000), (3, 2_000)] {
            t.observe([i; 32], &hb(5, 0, T0 + at * 1000), T0 + at * 1000);
        }
        // Peer 1 speaks again; a fourth peer pushes out the one heard from longest ago (2).
        t.observe([1; 32], &hb(5, 1, T0 + 3_000_000), T0 + 3_000_000);
        t.observe([4; 32], &hb(5, 0, T0 + 4_000_000), T0 + 4_000_000);
        let keys: Vec<u8> = t.iter().map(|(k, _)| k[0]).collect();
        assert_eq!(keys, [1, 3, 4]);
        // Two stale periods later, a newcomer finds only the peers heard from since.
        t.observe([4; 32], &hb(5, 1, T0 + 23_000_000), T0 + 23_000_000);
        t.observe([5; 32], &hb(5, 0, T0 + 24_500_000), T0 + 24_500_000);
        let keys: Vec<u8> = t.iter().map(|(k, _)| k[0]).collect();
        assert_eq!(keys, [4, 5]);
        // A flood of fresh keys never grows it past the cap.
        for i in 0..=255u8 {
            t.observe([i; 32], &hb(5, 0, T0 + 25_000_000), T0 + 25_000_000);
        }
        assert_eq!(t.len(), 3);
    }

    proptest! {
        /// The bitmap window judges every sequence number as a plain set of the seen ones
        /// would, for any values (extremes included).
        #[test]
        fn the_window_agrees_with_a_plain_set(
            base in prop_oneof![Just(0u64), Just(u64::MAX - 600), any::<u64>()],
            steps in proptest::collection::vec(0u64..600, 1..300),
        ) {
            let mut w = SeqWindow::starting_at(base);
            let mut seen: BTreeSet<u64> = [base].into();
            let mut highest = base;
            for d in steps {
                let seq = base.saturating_add(d);
                let expect = if seq > highest {
                    Observed::Fresh
                } else if highest - seq >= SEQ_WINDOW {
                    Observed::Stale
                } else if seen.contains(&seq) {
                    Observed::Duplicate
                } else {
                    Observed::OutOfOrder
                };
                if expect != Observed::Stale {
                    seen.insert(seq);
                    highest = highest.max(seq);
                }
                prop_assert_eq!(w.mark(seq), expect, "seq {}", seq);
                prop_assert_eq!(w.highest, highest);
            }
        }

        /// Any delivery order with any duplication counts each distinct heartbeat exactly once
        /// and ends showing the highest sequence number.
        #[test]
        fn any_order_counts_each_once(
            seqs in proptest::collection::vec(0u64..64, 1..200)
        ) {
            let mut t = PeerTable::new(60_000, 16);
            for s in &seqs {
                t.observe(A, &hb(5, *s, T0), T0);
            }
            let distinct: BTreeSet<u64> = seqs.iter().copied().collect();
            let r = t.get(&A).unwrap();
            prop_assert_eq!(r.received, distinct.len() as u64);
            prop_assert_eq!(r.last_seq, *distinct.last().unwrap());
            prop_assert_eq!(r.received + r.duplicates, seqs.len() as u64);
        }

        #[test]
        fn random_bodies_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1100)) {
            let _ = Heartbeat::decode(&bytes);
        }
    }
}
