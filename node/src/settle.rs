//! Settlement on a node: verifiers seal each epoch after its grace period (and re-seal while
//! their view still changes and no quorum has formed); every node computes settlements from
//! its own ledger on demand (`GET /rewards/{epoch}`, `ifx rewards`), and appends stake,
//! proposal and vote entries for its operator (`POST /stake`, `/gov/proposals`, `/gov/votes`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ed25519_dalek::SigningKey;
use ifx_protocols::NetworkConfig;
use ifx_protocols::ledger::{Entry, EntryKind, JobPayment};
use ifx_protocols::settle::{self, EpochSeal, Proposal, Settlements, StakeOp, Status, Vote};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::ledger::LedgerHandle;
use crate::network::NetHandle;

/// Re-seal checks per epoch after the first seal.
const RESEAL_CHECKS: u64 = 6;

/// The settlement service of one node.
#[derive(Clone)]
pub struct Settle {
    pub ledger: LedgerHandle,
    pub key: SigningKey,
    pub network: NetworkConfig,
    pub net: NetHandle,
}

/// Why a stake, proposal or vote was not appended.
#[derive(Debug, thiserror::Error)]
pub enum SettleError {
    /// The body does not decode as the protocol requires (a zero amount, a long note).
    #[error(transparent)]
    Body(#[from] ifx_protocols::codec::DecodeError),
    /// An unknown parameter or a value out of its range.
    #[error(transparent)]
    Param(#[from] ifx_protocols::InvalidValue),
    #[error(
        "from_epoch {from_epoch} is too soon: the earliest is {earliest} (current epoch {now} + gov_min_delay_epochs {delay})"
    )]
    TooSoon { from_epoch: u64, earliest: u64, now: u64, delay: u64 },
    /// The ledger store refused the write.
    #[error(transparent)]
    Storage(#[from] ifx_storage::StorageError),
}

fn now_ms() -> u64 {
    crate::unix_time_us() / 1000
}

/// What `me` may spend now, and the parameters in force: its liquid balance as settled, less
/// its own job payments in epochs not settled yet (they burn when their epoch settles).
pub fn spendable(ledger: &LedgerHandle, network: &NetworkConfig, me: &[u8; 32]) -> (u64, settle::EconParams) {
    let (entries, mine): (Vec<Arc<Entry>>, Vec<Arc<Entry>>) =
        ledger.with(|l| (l.ledger().iter_sorted().collect(), l.ledger().chain(me)));
    let s = settle::settle(network, entries, network.epoch_at(now_ms()));
    let settled = s.sealed().map(|e| e.epoch).max();
    let pending: u64 = mine
        .iter()
        .filter(|e| e.kind == EntryKind::JobPayment && settled.is_none_or(|done| e.epoch > done))
        .filter_map(|e| JobPayment::decode(&e.body).ok())
        .fold(0, |sum, p| sum.saturating_add(p.amount));
    let liquid = s.accounts.get(me).map_or(0, |a| a.liquid);
    (liquid.saturating_sub(pending), s.params)
}

impl Settle {
    /// Settlements from this node's ledger as of now.
    pub fn compute(&self) -> Settlements {
        let entries: Vec<Arc<Entry>> = self.ledger.with(|l| l.ledger().iter_sorted().collect());
        let now = self.network.epoch_at(now_ms());
        settle::settle(&self.network, entries, now)
    }

    async fn append(&self, kind: EntryKind, body: Vec<u8>) -> Result<String, SettleError> {
        let e = self.ledger.append_and_gossip(&self.net, &self.key, &self.network, kind, body).await?;
        Ok(hex::encode(e.id()))
    }

    /// Appends a stake operation of this node's key.
    pub async fn stake(&self, op: StakeOp) -> Result<String, SettleError> {
        StakeOp::decode(&op.encode())?;
        self.append(EntryKind::Stake, op.encode()).await
    }

    /// Appends a proposal; checks the name, value and epoch against the parameters now.
    pub async fn propose(&self, p: Proposal) -> Result<String, SettleError> {
        let s = self.compute();
        s.params.with(&p.param, p.value)?;
        let now = self.network.epoch_at(now_ms());
        if p.from_epoch < now + s.params.gov_min_delay_epochs {
            return Err(SettleError::TooSoon {
                from_epoch: p.from_epoch,
                earliest: now + s.params.gov_min_delay_epochs,
                now,
                delay: s.params.gov_min_delay_epochs,
            });
        }
        Proposal::decode(&p.encode())?;
        self.append(EntryKind::Proposal, p.encode()).await
    }

    /// Appends a vote of this node's key.
    pub async fn vote(&self, v: Vote) -> Result<String, SettleError> {
        self.append(EntryKind::Vote, v.encode()).await
    }

    /// This node's latest seal of `epoch` in its ledger, if any.
    fn my_seal(&self, epoch: u64) -> Option<EpochSeal> {
        let me = self.key.verifying_key().to_bytes();
        self.ledger.with(|l| {
            l.ledger()
                .chain(&me)
                .into_iter()
                .rev()
                .filter(|e| e.kind == EntryKind::Seal && e.epoch == epoch + 1)
                .find_map(|e| EpochSeal::decode(&e.body).ok().filter(|s| s.epoch == epoch))
        })
    }

    /// Seals `epoch` from this node's view unless its latest seal already says the same;
    /// `accounts` from this node's settlement now.
    async fn seal_once(&self, epoch: u64, accounts: &std::collections::BTreeMap<[u8; 32], settle::Account>) {
        // Only entries of authors with an account (an allocation, a stake, a balance): nothing
        // an author without one writes can move money, and a flood of fresh keys (issue #16)
        // made two verifiers seal different sets (entries still arriving) or more authors than
        // a seal holds, so no epoch sealed at all.
        let funded = |a: &[u8; 32]| {
            accounts.get(a).is_some_and(|acc| {
                acc.role.is_some()
                    || acc.bonded > 0
                    || acc.liquid > 0
                    || !acc.vesting.is_empty()
                    || !acc.unbonding.is_empty()
            })
        };
        let view = self.ledger.with(|l| {
            let entries: Vec<Arc<Entry>> =
                l.ledger().iter_sorted().filter(|e| e.epoch == epoch && funded(&e.author)).collect();
            settle::seal_view(epoch, entries.iter().map(|e| e.as_ref()))
        });
        let view = match view {
            Ok(v) => v,
            Err(e) => {
                warn!(epoch, error = %e, "cannot seal");
                return;
            }
        };
        if self.my_seal(epoch).is_some_and(|s| s == view) {
            return;
        }
        match self.append(EntryKind::Seal, view.encode()).await {
            Ok(_) => info!(epoch, entries = view.entries, root = hex::encode(view.root), "epoch sealed"),
            Err(e) => warn!(epoch, error = %e, "cannot append the seal"),
        }
    }

    /// Verifiers: seal each epoch `seal_grace_secs` after it ends, then re-check a few times
    /// during the next epoch; stops at `shutdown`.
    /// `attested` is the last epoch this verifier's attester is done with: an attestation
    /// written after the seal would carry the next epoch's label (a chain's labels never go
    /// back) and drop out of the epoch it attests.
    pub async fn run_sealer(self, attested: Arc<AtomicU64>, shutdown: CancellationToken) {
        let n = &self.network;
        let epoch_ms = n.epoch_secs * 1000;
        let grace_ms = n.seal_grace_ms();
        let step_ms = (epoch_ms.saturating_sub(grace_ms) / (RESEAL_CHECKS + 2)).max(200);
        // The epoch before the current one may still be sealed (a restart inside its window).
        let mut next = n.epoch_at(now_ms()).saturating_sub(1);
        loop {
            let end = n.genesis_unix_secs * 1000 + (next + 1) * epoch_ms;
            for check in 0..=RESEAL_CHECKS {
                let due = end + grace_ms + check * step_ms;
                let wait = Duration::from_millis(due.saturating_sub(now_ms()));
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(wait) => {}
                }
                // A seal counts only while the next epoch runs.
                if n.epoch_at(now_ms()) != next + 1 {
                    break;
                }
                // One settlement per check: whether the epoch is settled, and who has an account.
                let settled = self.compute();
                if check > 0 && settled.epoch(next).is_some_and(|s| s.status != Status::Pending) {
                    break;
                }
                if attested.load(Ordering::Acquire) < next {
                    debug!(epoch = next, check, "not sealing before this verifier's attestations of the epoch");
                    continue;
                }
                self.seal_once(next, &settled.accounts).await;
            }
            next = (next + 1).max(n.epoch_at(now_ms()).saturating_sub(1));
        }
    }
}
