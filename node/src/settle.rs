//! Settlement on a node: verifiers seal each epoch after its grace period (and re-seal while
//! their view still changes and no quorum has formed); every node computes settlements from
//! its own ledger on demand (`GET /rewards/{epoch}`, `ifx rewards`), and appends stake,
//! proposal and vote entries for its operator (`POST /stake`, `/gov/proposals`, `/gov/votes`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ed25519_dalek::SigningKey;
use ifx_protocols::NetworkConfig;
use ifx_protocols::ledger::{Entry, EntryKind, JobPayment, PaidWork};
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
    /// The last settlement, by the ledger's root and the epoch it was computed in: the same
    /// entries in the same epoch settle to the same bytes, so the dashboard's polls (three
    /// settling routes every 2 s) and a local caller's loop cost one settlement per change.
    pub cache: SettleCache,
}

/// The last settlement computed, and of what.
pub type SettleCache = Arc<std::sync::Mutex<Option<([u8; 32], u64, Arc<Settlements>)>>>;

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

/// Why a job or task could not be paid for.
#[derive(Debug, thiserror::Error)]
pub enum PayError {
    /// The key cannot pay (HTTP 402).
    #[error(
        "it costs {amount} units ({units} work units at job_price_per_minute {price} per {per_minute} units) \
         and this node's key can spend {spendable}: fund the key, or submit it unpaid (then its receipts earn nobody anything)"
    )]
    Unfunded { amount: u64, units: u64, price: u64, per_minute: u64, spendable: u64 },
    /// The payment could not be written.
    #[error("cannot write the payment: {0}")]
    Storage(#[from] ifx_storage::StorageError),
    /// The balance check did not finish (the node is stopping).
    #[error("the balance check did not finish: {0}")]
    Stopped(String),
}

/// Burns the price of `units` work units of `work` (a [`JobPayment`] for `job`) from this
/// node's key if it can spend it; the units burned and the entry id.
pub async fn pay_for(
    ledger: &LedgerHandle,
    net: &NetHandle,
    key: &SigningKey,
    network: &NetworkConfig,
    job: [u8; 16],
    work: PaidWork,
    units: u64,
) -> Result<(u64, String), PayError> {
    let _one = ledger.one_payment().await;
    let me = key.verifying_key().to_bytes();
    let (l, n) = (ledger.clone(), network.clone());
    let (spendable, p) = tokio::task::spawn_blocking(move || spendable(&l, &n, &me))
        .await
        .map_err(|e| PayError::Stopped(e.to_string()))?;
    let per_minute = p.units_per_minute(&work);
    let amount = p.price_of(units, per_minute).max(1);
    if spendable < amount {
        return Err(PayError::Unfunded { amount, units, price: p.job_price_per_minute, per_minute, spendable });
    }
    let body = JobPayment { job, work, amount }.encode();
    let e = ledger.append_and_gossip(net, key, network, EntryKind::JobPayment, body).await?;
    info!(job = hex::encode(job), amount, units, "paid for the job");
    Ok((amount, hex::encode(e.id())))
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
    pub fn compute(&self) -> Arc<Settlements> {
        let now = self.network.epoch_at(now_ms());
        let root = self.ledger.with(|l| l.ledger().root());
        let lock = || self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((r, e, s)) = &*lock()
            && (*r, *e) == (root, now)
        {
            return s.clone();
        }
        // The root and the entries read together, so the cache names what was settled.
        let (root, entries) = self.ledger.with(|l| (l.ledger().root(), l.ledger().iter_sorted().collect::<Vec<_>>()));
        let s = Arc::new(settle::settle(&self.network, entries, now));
        *lock() = Some((root, now, s.clone()));
        s
    }

    /// This node's ledger entries, sorted.
    pub fn entries(&self) -> Vec<Arc<Entry>> {
        self.ledger.with(|l| l.ledger().iter_sorted().collect())
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

    /// The view of this node's latest seal of `epoch` in its ledger, if any.
    fn my_seal(&self, epoch: u64) -> Option<ifx_protocols::ledger::body::settle::SealView> {
        let me = self.key.verifying_key().to_bytes();
        self.ledger.with(|l| {
            l.ledger()
                .chain(&me)
                .into_iter()
                .rev()
                .filter(|e| e.kind == EntryKind::Seal && e.epoch == epoch + 1)
                .find_map(|e| EpochSeal::decode(&e.body).ok().filter(|s| s.epoch == epoch))
                .map(|s| s.view())
        })
    }

    /// Seals `epoch` from this node's view unless its latest seal already says the same;
    /// `accounts` from this node's settlement now.
    async fn seal_once(&self, epoch: u64, accounts: &std::collections::BTreeMap<[u8; 32], settle::Account>) {
        // Only entries of authors with an account (an allocation, a stake, a balance): nothing
        // an author without one writes can move money, and a flood of fresh keys (issue #16)
        // made two verifiers seal different sets (entries still arriving) or more authors than
        // a seal holds, so no epoch sealed at all.
        let funded = |a: &[u8; 32]| accounts.get(a).is_some_and(settle::Account::is_funded);
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
        let Some(first) = view.first() else { return };
        if self.my_seal(epoch).is_some_and(|s| s == first.view()) {
            return;
        }
        // Every part, in order; the view counts once all of them are in.
        for part in &view {
            if let Err(e) = self.append(EntryKind::Seal, part.encode()).await {
                warn!(epoch, part = part.part, error = %e, "cannot append the seal");
                return;
            }
        }
        info!(
            epoch,
            entries = first.entries,
            authors = first.authors,
            parts = first.parts,
            root = hex::encode(first.root),
            "epoch sealed"
        );
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
