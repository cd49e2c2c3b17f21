//! When to (re)dial each bootnode: at once, then after 1, 2, 4, ... seconds, capped at a minute,
//! and never while connected. Pure state; the event loop passes the time in.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use libp2p::{Multiaddr, PeerId};

/// First retry delay.
pub const INITIAL: Duration = Duration::from_secs(1);
/// Longest delay between two attempts.
pub const MAX: Duration = Duration::from_secs(60);

#[derive(Debug)]
struct Target {
    addr: Multiaddr,
    failures: u32,
    next_attempt: Option<Instant>,
    connected: bool,
    dialing: bool,
}

/// Dial schedule of the bootnodes.
#[derive(Debug, Default)]
pub struct Bootnodes {
    targets: BTreeMap<PeerId, Target>,
}

impl Bootnodes {
    /// Bootnodes to dial, each due at `now`.
    pub fn new(addrs: impl IntoIterator<Item = (PeerId, Multiaddr)>, now: Instant) -> Self {
        let targets = addrs
            .into_iter()
            .map(|(peer, addr)| {
                let t = Target { addr, failures: 0, next_attempt: Some(now), connected: false, dialing: false };
                (peer, t)
            })
            .collect();
        Self { targets }
    }

    /// Whether `peer` is a bootnode.
    pub fn contains(&self, peer: &PeerId) -> bool {
        self.targets.contains_key(peer)
    }

    /// The bootnodes to dial now; each is marked as being dialled.
    pub fn due(&mut self, now: Instant) -> Vec<(PeerId, Multiaddr)> {
        let mut out = Vec::new();
        for (peer, t) in &mut self.targets {
            if !t.connected && !t.dialing && t.next_attempt.is_some_and(|at| at <= now) {
                t.dialing = true;
                t.next_attempt = None;
                out.push((*peer, t.addr.clone()));
            }
        }
        out
    }

    /// The earliest moment a bootnode becomes due, if any is waiting.
    pub fn next_due(&self) -> Option<Instant> {
        self.targets.values().filter(|t| !t.connected && !t.dialing).filter_map(|t| t.next_attempt).min()
    }

    /// A connection to `peer` was established.
    pub fn connected(&mut self, peer: &PeerId) {
        if let Some(t) = self.targets.get_mut(peer) {
            t.connected = true;
            t.dialing = false;
            t.failures = 0;
            t.next_attempt = None;
        }
    }

    /// The last connection to `peer` closed: dial again after the initial delay.
    pub fn disconnected(&mut self, peer: &PeerId, now: Instant) {
        if let Some(t) = self.targets.get_mut(peer) {
            t.connected = false;
            t.dialing = false;
            t.next_attempt = Some(now + INITIAL);
        }
    }

    /// Stops dialling `peer` for good (it turned out not to be on our network); true if it was
    /// a bootnode.
    pub fn remove(&mut self, peer: &PeerId) -> bool {
        self.targets.remove(peer).is_some()
    }

    /// Makes `peer` due at `now` with its backoff reset (it was unblocked).
    pub fn retry_now(&mut self, peer: &PeerId, now: Instant) {
        if let Some(t) = self.targets.get_mut(peer)
            && !t.connected
        {
            t.failures = 0;
            t.next_attempt = Some(now);
        }
    }

    /// A dial to `peer` failed; returns the delay before the next attempt (or `None` if `peer`
    /// is not a bootnode or is connected anyway).
    pub fn failed(&mut self, peer: &PeerId, now: Instant) -> Option<Duration> {
        let t = self.targets.get_mut(peer)?;
        if t.connected {
            return None;
        }
        let delay = INITIAL.saturating_mul(1u32 << t.failures.min(16)).min(MAX);
        t.failures = t.failures.saturating_add(1);
        t.dialing = false;
        t.next_attempt = Some(now + delay);
        Some(delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one() -> (Bootnodes, PeerId, Instant) {
        let p = PeerId::random();
        let now = Instant::now();
        (Bootnodes::new([(p, "/ip4/127.0.0.1/tcp/9".parse().unwrap())], now), p, now)
    }

    #[test]
    fn retries_back_off_exponentially_up_to_a_minute() {
        let (mut b, p, mut now) = one();
        assert_eq!(b.due(now).len(), 1);
        assert!(b.due(now).is_empty(), "not dialled twice while a dial is in flight");
        let mut delays = Vec::new();
        for _ in 0..9 {
            let d = b.failed(&p, now).unwrap();
            delays.push(d.as_secs());
            assert!(b.due(now + d - Duration::from_millis(1)).is_empty());
            now += d;
            assert_eq!(b.next_due(), Some(now));
            assert_eq!(b.due(now).len(), 1);
        }
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
    }

    #[test]
    fn a_connection_resets_the_backoff_and_a_loss_redials() {
        let (mut b, p, now) = one();
        b.due(now);
        b.failed(&p, now);
        b.failed(&p, now);
        b.connected(&p);
        assert_eq!(b.next_due(), None);
        assert!(b.due(now + MAX).is_empty(), "never dialled while connected");
        b.disconnected(&p, now);
        assert_eq!(b.due(now + INITIAL).len(), 1);
        assert_eq!(b.failed(&p, now), Some(INITIAL), "failures were reset by the connection");
        assert_eq!(b.failed(&PeerId::random(), now), None);
    }
}
