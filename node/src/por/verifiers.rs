//! Who may challenge this worker: the verifiers bonded in the ledger's settlement (and, from
//! the same settlement, whose entries the node keeps: keys with an account). A network
//! with no bonded verifier at all (a dev network without genesis stake) is open to any
//! verifier; once one is bonded, only bonded verifiers' render and benchmark challenges are
//! worked on. Anyone else is answered `Busy` (not `Refused`): an honest verifier whose bond this
//! worker has not seen yet loses a QoS point, never a verdict.

use std::collections::BTreeSet;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use ifx_protocols::settle::StakeRole;
use libp2p::PeerId;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

/// How often the view is recomputed from the ledger (a settlement over every epoch).
pub const REFRESH: Duration = Duration::from_secs(10);

/// The bonded verifiers' keys; `None` until the first settlement, and while none is bonded.
#[derive(Clone, Default)]
pub struct BondedVerifiers(Arc<RwLock<Option<BTreeSet<[u8; 32]>>>>);

impl BondedVerifiers {
    /// Whether `peer` may ask for heavy work.
    pub fn allows(&self, peer: &PeerId) -> bool {
        match &*self.0.read().unwrap_or_else(|e| e.into_inner()) {
            None => true,
            Some(keys) => crate::fl::peer_key(peer).is_some_and(|k| keys.contains(&k)),
        }
    }

    /// The bonded verifiers' keys; `None` while the network is open to any verifier.
    pub fn keys(&self) -> Option<BTreeSet<[u8; 32]>> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Sets the bonded verifiers (an empty set opens the network to any verifier).
    pub fn set(&self, keys: BTreeSet<[u8; 32]>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = (!keys.is_empty()).then_some(keys);
    }

    /// Recomputes the view from `settle` every [`REFRESH`] until `shutdown`, when the ledger or
    /// the epoch changed since the last time (a settlement replays every epoch; nothing else
    /// moves the bonded set).
    pub async fn refresh(self, settle: crate::settle::Settle, shutdown: CancellationToken) {
        let mut known = None;
        let mut computed_at: Option<([u8; 32], u64)> = None;
        loop {
            let now =
                (settle.ledger.with(|l| l.ledger().root()), settle.network.epoch_at(crate::unix_time_us() / 1000));
            if computed_at == Some(now) {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(REFRESH) => continue,
                }
            }
            computed_at = Some(now);
            let s = settle.clone();
            let computed = tokio::task::spawn_blocking(move || {
                let st = s.compute();
                let accounts = &st.accounts;
                let verifiers = accounts
                    .iter()
                    .filter(|(_, a)| a.role == Some(StakeRole::Verifier) && a.bonded > 0)
                    .map(|(k, _)| *k)
                    .collect::<BTreeSet<[u8; 32]>>();
                // The same settlement says whose entries this node keeps (its own always).
                let mut funded: BTreeSet<[u8; 32]> =
                    accounts.iter().filter(|(_, a)| a.is_funded()).map(|(k, _)| *k).collect();
                if !funded.is_empty() {
                    funded.insert(s.key.verifying_key().to_bytes());
                }
                (verifiers, funded)
            })
            .await;
            match computed {
                Ok((keys, funded)) => {
                    settle.ledger.set_funded(funded);
                    if known.as_ref() != Some(&keys) {
                        info!(verifiers = keys.len(), "bonded verifiers (who may challenge this worker)");
                        known = Some(keys.clone());
                    }
                    self.set(keys);
                }
                Err(e) => debug!(error = %e, "settlement for the verifier view failed"),
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

    #[test]
    fn open_until_a_verifier_is_bonded_then_only_bonded_ones() {
        let v = BondedVerifiers::default();
        let key = libp2p::identity::Keypair::generate_ed25519();
        let (bonded, stranger) = (PeerId::from(key.public()), PeerId::random());
        assert!(v.allows(&stranger), "no settlement yet: open");
        v.set(BTreeSet::new());
        assert!(v.allows(&stranger), "no bonded verifier: open");
        let pk: [u8; 32] = key.public().try_into_ed25519().unwrap().to_bytes();
        v.set([pk].into());
        assert!(v.allows(&bonded));
        assert!(!v.allows(&stranger));
    }
}
