//! Per-peer request rates, sans I/O (issue #16): a token bucket per (protocol, peer) in
//! integer milli-tokens. A request over its peer's rate is dropped before it reaches a
//! service queue; the peer's request fails (it costs the sender a failed request, not the node
//! a queue slot). The in-flight caps, queues and `Busy` answers of each service are the second
//! line: this one keeps a single peer from filling the shared queue of 64 for everyone.

use std::collections::HashMap;
use std::time::Instant;

use libp2p::PeerId;

use super::Proto;

/// Burst and refill per second for one peer on one protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    pub burst: u32,
    /// Refill in thousandths of a request per second.
    pub milli_per_sec: u32,
}

/// The rates, with why: a honest peer's heaviest use, several times over.
pub fn rate_of(proto: Proto) -> Rate {
    match proto {
        // One pull per anti-entropy round, each up to 256 chunk requests back to back.
        Proto::LedgerSync => Rate { burst: 64, milli_per_sec: 16_000 },
        // A job owner keeps 2 tiles in flight at a worker; a tile takes at least tens of ms.
        Proto::Render => Rate { burst: 16, milli_per_sec: 8_000 },
        // A verifier's challenge is a render, an open and now and then a benchmark, every
        // challenge interval (500 ms at the fastest).
        Proto::Por => Rate { burst: 32, milli_per_sec: 16_000 },
        // Joins, train requests, and weight and update fetches in chunks: an auditor fetches
        // every update of every round, and 128 then 64/s failed half the audits of the FL
        // test. This only stops a pure flooder; FL's own checks (owner only, one training, 16
        // audits waiting) do the rest.
        Proto::Fl => Rate { burst: 2048, milli_per_sec: 1_024_000 },
        // An inference owner keeps 2 batches in flight at a worker, and a full batch of the
        // small MLP is served in about 0.3 ms: an honest owner sends up to ~6,000 a second
        // (1,000 a second failed the benchmark's loop). What this bounds is decoding (17 KiB a
        // batch); the worker's own queue (`infer::QUEUE`) bounds the compute and answers the
        // rest as busy.
        Proto::Infer => Rate { burst: 512, milli_per_sec: 8_000_000 },
        // A measurement is four requests (a round trip, an upload, a round trip, a download of
        // up to 2 MiB); a verifier measures each worker about once an epoch, and a burst of 8
        // lets a reading spoiled by other traffic be taken again at once. One request per 5 s
        // after it bounds what a stranger can make a node send: 2 MiB per 5 s (3.4 Mbit/s).
        Proto::Link => Rate { burst: 8, milli_per_sec: 200 },
        // A worker fetching a job's assets asks for one 512 KiB chunk after another: 64 a
        // second is 32 MiB/s from one peer, more than a home uplink serves, and the burst
        // covers a whole 32 MiB mesh. Each answer is one read of the blob store.
        Proto::Blob => Rate { burst: 64, milli_per_sec: 64_000 },
    }
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
    /// Milli-tokens.
    milli: u64,
    at: Instant,
}

/// Every connected peer's buckets.
#[derive(Debug, Default)]
pub struct RateLimits {
    buckets: HashMap<(Proto, PeerId), Bucket>,
    /// Requests dropped, in all.
    pub dropped: u64,
}

impl RateLimits {
    /// Whether a request of `peer` on `proto` at `now` is within its rate (it takes a token).
    pub fn allow(&mut self, proto: Proto, peer: PeerId, now: Instant) -> bool {
        let r = rate_of(proto);
        let full = r.burst as u64 * 1000;
        let b = self.buckets.entry((proto, peer)).or_insert(Bucket { milli: full, at: now });
        let elapsed_ms = now.saturating_duration_since(b.at).as_millis().min(u64::MAX as u128) as u64;
        b.milli = b.milli.saturating_add(elapsed_ms.saturating_mul(r.milli_per_sec as u64) / 1000).min(full);
        // Only the whole milliseconds counted move the clock on: requests closer together than
        // a millisecond used to reset it every time, so their bucket never refilled.
        b.at += std::time::Duration::from_millis(elapsed_ms);
        if b.milli >= 1000 {
            b.milli -= 1000;
            true
        } else {
            self.dropped += 1;
            false
        }
    }

    /// A peer disconnected: its buckets go (a reconnect starts full, which a handshake pays for).
    pub fn forget(&mut self, peer: &PeerId) {
        self.buckets.retain(|(_, p), _| p != peer);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_burst_then_the_refill_rate_and_peers_apart() {
        let t0 = Instant::now();
        let mut r = RateLimits::default();
        let (a, b) = (PeerId::random(), PeerId::random());
        let allowed = (0..100).filter(|_| r.allow(Proto::LedgerSync, a, t0)).count();
        assert_eq!(allowed, 64, "the burst");
        assert!(r.allow(Proto::LedgerSync, b, t0), "another peer has its own bucket");
        assert!(r.allow(Proto::Render, a, t0), "and another protocol");
        // 16 per second: after 250 ms, four more.
        let later = t0 + Duration::from_millis(250);
        assert_eq!((0..10).filter(|_| r.allow(Proto::LedgerSync, a, later)).count(), 4);
        // A second of 50 requests: 16 pass.
        let mut passed = 0;
        for i in 0..50u64 {
            passed += r.allow(Proto::LedgerSync, a, later + Duration::from_millis(20 * (i + 1))) as u32;
        }
        assert_eq!(passed, 16);
        assert_eq!(r.dropped, 36 + 6 + 34);
        // Never more than the burst, however long the pause.
        let much_later = t0 + Duration::from_secs(1_000_000);
        assert_eq!((0..100).filter(|_| r.allow(Proto::LedgerSync, a, much_later)).count(), 64);
        r.forget(&a);
        assert!(!r.buckets.keys().any(|(_, p)| *p == a));
    }

    /// Requests closer together than a millisecond still see the refill: 8,000 a second, one
    /// every 0.4 ms for 2 s, all pass after the burst (they all failed past it before).
    #[test]
    fn sub_millisecond_requests_refill() {
        let t0 = Instant::now();
        let mut r = RateLimits::default();
        let a = PeerId::random();
        let n = 5_000u64;
        let passed = (0..n).filter(|i| r.allow(Proto::Infer, a, t0 + Duration::from_micros(400 * i))).count();
        assert_eq!(passed as u64, n);
    }
}
