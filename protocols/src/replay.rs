//! Replay protection for gossiped envelopes: a freshness window in epochs plus a bounded memory
//! of the envelope ids seen inside it.
//!
//! Gossipsub already drops duplicates it saw within its own short cache; this guard catches a
//! valid envelope re-injected later. Memory is bounded: past `capacity` ids the oldest are
//! forgotten, and what a forgotten replay could still achieve is bounded by the per-kind state
//! (heartbeat sequence numbers, ledger hash chains) that each protocol keeps.

use std::collections::{HashSet, VecDeque};

use crate::envelope::{EnvelopeError, SignedEnvelope};

/// Remembers recently accepted envelopes and refuses stale, future and repeated ones.
#[derive(Debug)]
pub struct ReplayGuard {
    /// Envelopes more than this many epochs old are stale.
    max_age_epochs: u64,
    capacity: usize,
    order: VecDeque<[u8; 32]>,
    seen: HashSet<[u8; 32]>,
}

impl ReplayGuard {
    /// A guard that accepts envelopes from `max_age_epochs` back up to one epoch ahead (clock
    /// skew at an epoch boundary), remembering at most `capacity` ids.
    pub fn new(max_age_epochs: u64, capacity: usize) -> Self {
        Self { max_age_epochs, capacity: capacity.max(1), order: VecDeque::new(), seen: HashSet::new() }
    }

    /// Admits `env` once: errors if it is outside the epoch window or was admitted before.
    pub fn admit(&mut self, env: &SignedEnvelope, current_epoch: u64) -> Result<(), EnvelopeError> {
        if env.epoch.saturating_add(self.max_age_epochs) < current_epoch {
            return Err(EnvelopeError::Stale { epoch: env.epoch, current: current_epoch });
        }
        if env.epoch > current_epoch.saturating_add(1) {
            return Err(EnvelopeError::FromFuture { epoch: env.epoch, current: current_epoch });
        }
        let id = env.id();
        if !self.seen.insert(id) {
            return Err(EnvelopeError::Replay);
        }
        self.order.push_back(id);
        while self.order.len() > self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.seen.remove(&old);
            }
        }
        Ok(())
    }

    /// Number of ids currently remembered.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// True when nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::Kind;
    use ed25519_dalek::SigningKey;

    fn env(epoch: u64, body: &[u8]) -> SignedEnvelope {
        let k = SigningKey::from_bytes(&[3; 32]);
        SignedEnvelope::sign(&k, "n", Kind::Heartbeat, epoch, body.to_vec()).unwrap()
    }

    #[test]
    fn replay_is_rejected() {
        let mut g = ReplayGuard::new(1, 16);
        let e = env(10, b"a");
        g.admit(&e, 10).unwrap();
        assert_eq!(g.admit(&e, 10), Err(EnvelopeError::Replay));
        // A decoded copy of the same bytes is the same envelope.
        let copy = SignedEnvelope::decode(&e.encode()).unwrap();
        assert_eq!(g.admit(&copy, 10), Err(EnvelopeError::Replay));
        g.admit(&env(10, b"b"), 10).unwrap();
    }

    #[test]
    fn stale_and_future_epochs_are_rejected() {
        let mut g = ReplayGuard::new(1, 16);
        assert!(g.admit(&env(9, b"a"), 10).is_ok());
        assert_eq!(g.admit(&env(8, b"a"), 10), Err(EnvelopeError::Stale { epoch: 8, current: 10 }));
        assert!(g.admit(&env(11, b"a"), 10).is_ok());
        assert_eq!(g.admit(&env(12, b"a"), 10), Err(EnvelopeError::FromFuture { epoch: 12, current: 10 }));
        assert!(!EnvelopeError::Replay.is_misbehaviour());
    }

    #[test]
    fn memory_is_bounded() {
        let mut g = ReplayGuard::new(1, 4);
        for i in 0..10u8 {
            g.admit(&env(5, &[i]), 5).unwrap();
        }
        assert_eq!(g.len(), 4);
        // The newest are still remembered.
        assert_eq!(g.admit(&env(5, &[9]), 5), Err(EnvelopeError::Replay));
    }
}
