//! Settlement (rewards per epoch, balances, parameters) and the operator's stake and governance
//! entries.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use ifx_protocols::api::{AccountEpoch, AccountView, EntryAccepted, PorRecord, Rewards, RewardsEpoch};
use ifx_protocols::settle::{EconParams, GovOutcome, OpenProposal, Proposal, StakeOp, Status, Vote};
use serde::Serialize;

use super::{accepted, refused};
use crate::settle::{Settle, SettleError};

pub fn routes(settle: Settle) -> Router {
    Router::new()
        .route("/rewards", get(list))
        .route("/rewards/{epoch}", get(one))
        .route("/account", get(account))
        .route("/estimate", get(estimate))
        .route("/stake", post(stake))
        .route("/gov", get(gov))
        .route("/gov/proposals", post(propose))
        .route("/gov/votes", post(vote))
        .with_state(settle)
}

/// `GET /rewards`: every epoch settlement reached, balances, parameters in force.
async fn list(State(s): State<Settle>) -> Json<Rewards> {
    let st = s.compute();
    let epochs: Vec<RewardsEpoch> = st
        .epochs
        .iter()
        .map(|e| RewardsEpoch {
            epoch: e.epoch,
            status: e.status,
            root: hex::encode(e.root),
            seal_root: e.seal_root.map(hex::encode),
            minted: e.minted,
            paid: e.payouts.len(),
            slashed: e.slashed.iter().map(|x| hex::encode(x.key)).collect(),
            workers_bps: e.params.workers_bps,
            paid_workers: e.payouts.iter().map(|p| p.workers).sum(),
            paid_artists: e.payouts.iter().map(|p| p.artists).sum(),
            burned: e.burned,
            net_supply: e.net_supply,
            delivered: e.jobs.iter().map(|j| j.delivered).sum(),
            refused: e.refused.values().sum(),
        })
        .collect();
    Json(Rewards {
        current_epoch: s.network.epoch_at(crate::unix_time_us() / 1000),
        epochs,
        accounts: st.accounts.iter().map(|(k, a)| (hex::encode(k), a.clone())).collect(),
        params: st.params.clone(),
    })
}

/// `GET /rewards/{epoch}`: one epoch's settlement (payouts, vesting, slashes, root).
async fn one(State(s): State<Settle>, Path(epoch): Path<u64>) -> Response {
    let st = s.compute();
    match st.epoch(epoch) {
        Some(e) => Json(e).into_response(),
        None => {
            let why = match st.epochs.last() {
                Some(l) if l.epoch < epoch && matches!(l.status, Status::Pending | Status::Incomplete) => {
                    format!("settlement stops at epoch {} ({:?})", l.epoch, l.status)
                }
                _ => format!("epoch {epoch} has no entries and no seal, or has not ended"),
            };
            refused(StatusCode::NOT_FOUND, why)
        }
    }
}

fn appended(r: Result<String, SettleError>) -> Response {
    match r {
        Ok(entry) => accepted(EntryAccepted { entry }),
        Err(e) => refused(StatusCode::BAD_REQUEST, e),
    }
}

async fn stake(State(s): State<Settle>, Json(op): Json<StakeOp>) -> Response {
    appended(s.stake(op).await)
}

async fn propose(State(s): State<Settle>, Json(p): Json<Proposal>) -> Response {
    appended(s.propose(p).await)
}

async fn vote(State(s): State<Settle>, Json(v): Json<Vote>) -> Response {
    appended(s.vote(v).await)
}

/// `GET /gov`.
#[derive(Serialize)]
struct Gov<'a> {
    params: &'a EconParams,
    open: &'a [OpenProposal],
    decided: Vec<&'a GovOutcome>,
}

/// `GET /gov`: parameters in force, open proposals with their votes, decided ones.
async fn gov(State(s): State<Settle>) -> Response {
    let st = s.compute();
    let decided: Vec<&GovOutcome> = st.epochs.iter().flat_map(|e| &e.governance).collect();
    Json(Gov { params: &st.params, open: &st.open_proposals, decided }).into_response()
}

/// Failures' reasons `GET /account` lists.
const LAST_FAILURES: usize = 5;

/// `GET /account`: this node's key as settlement sees it, epoch by epoch, and the bonded
/// verifiers' PoR verdicts about it.
async fn account(State(s): State<Settle>) -> Response {
    match tokio::task::spawn_blocking(move || account_view(&s)).await {
        Ok(v) => Json(v).into_response(),
        Err(_) => super::unavailable(),
    }
}

fn account_view(s: &Settle) -> AccountView {
    use ifx_protocols::ledger::{EntryKind, PorVerdicts, StakeRole};
    let me = s.key.verifying_key().to_bytes();
    let st = s.compute();
    let entries = s.entries();
    let epochs = st
        .epochs
        .iter()
        .map(|e| {
            let paid = e.payouts.iter().find(|p| p.key == me);
            let slash = e.slashed.iter().find(|x| x.key == me);
            AccountEpoch {
                epoch: e.epoch,
                status: Some(e.status),
                total: paid.map_or(0, |p| p.total),
                liquid: paid.map_or(0, |p| p.liquid),
                vesting: paid.map_or(0, |p| p.vesting),
                slashed: slash.map_or(0, |x| x.amount),
                slash_reason: slash.map(|x| x.reason.clone()),
                worker: e.workers.iter().find(|w| w.key == me).cloned(),
            }
        })
        .collect();
    // The verdicts of keys settlement knows as verifiers, oldest first.
    let is_verifier = |k: &[u8; 32]| st.accounts.get(k).is_some_and(|a| a.role == Some(StakeRole::Verifier));
    let mut por = PorRecord::default();
    let mut failures = Vec::new();
    for e in entries.iter().filter(|e| e.kind == EntryKind::PorVerdicts && is_verifier(&e.author)) {
        let Ok(v) = PorVerdicts::decode(&e.body) else { continue };
        for w in v.workers.iter().filter(|w| w.worker == me) {
            por.passed += w.passed as u64;
            por.failed += w.failed as u64;
            por.timeouts += w.timeouts as u64;
            por.benches += w.benches as u64;
            if w.failed > 0 && !w.last_failure.is_empty() {
                let by = crate::network::author_peer_id(&e.author).map(|p| p.to_string()).unwrap_or_default();
                failures.push((v.epoch, by, w.last_failure.clone()));
            }
        }
    }
    failures.sort_by_key(|f| std::cmp::Reverse(f.0));
    failures.truncate(LAST_FAILURES);
    por.last_failures = failures;
    AccountView {
        key: hex::encode(me),
        peer_id: crate::network::author_peer_id(&me).map(|p| p.to_string()).unwrap_or_default(),
        current_epoch: s.network.epoch_at(crate::unix_time_us() / 1000),
        account: st.accounts.get(&me).cloned().unwrap_or_default(),
        epochs,
        por,
    }
}

/// `GET /estimate`'s overrides of what the node measured.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EstimateQuery {
    /// IB in milli-units (default: the verifiers' median benchmark in the last sealed epoch).
    ib_milli: Option<u64>,
    /// Uptime, percent of the epoch (default: as the verifiers attested it last).
    uptime_pct: Option<u64>,
    /// Paid delivery per epoch, milli-minutes (default: as in the last sealed epoch).
    delivery_milli_minutes: Option<u64>,
}

/// Most IB an estimate takes: 10^6 (a thousand times the reference machine), so weights stay
/// far inside their integers; a larger figure is refused, not clamped.
const MAX_ESTIMATE_IB_MILLI: u64 = 1_000_000_000;

/// `GET /estimate`: what the next epochs would pay this key as a worker, by settlement's own
/// rules, on its measured IB, uptime and delivery (or the query's), beside the other workers of
/// the last sealed epoch, with the parameters and stake in force now.
async fn estimate(State(s): State<Settle>, Query(q): Query<EstimateQuery>) -> Response {
    if q.uptime_pct.is_some_and(|u| u > 100) {
        return refused(StatusCode::BAD_REQUEST, "uptime_pct: at most 100");
    }
    if q.ib_milli.is_some_and(|i| i == 0 || i > MAX_ESTIMATE_IB_MILLI) {
        return refused(StatusCode::BAD_REQUEST, format!("ib_milli: between 1 and {MAX_ESTIMATE_IB_MILLI}"));
    }
    if q.delivery_milli_minutes.is_some_and(|d| d > u32::MAX as u64) {
        return refused(StatusCode::BAD_REQUEST, format!("delivery_milli_minutes: at most {}", u32::MAX));
    }
    match tokio::task::spawn_blocking(move || estimate_view(&s, &q)).await {
        Ok(v) => Json(v).into_response(),
        Err(_) => super::unavailable(),
    }
}

/// The estimate on the node's measured inputs, the query's overrides applied; each input's
/// source joins the assumptions.
pub fn estimate_view(s: &Settle, q: &EstimateQuery) -> ifx_protocols::settle::Estimate {
    use ifx_protocols::ledger::{EntryKind, PorVerdicts};
    use ifx_protocols::settle::estimate::{Assumed, estimate, last_line};
    let me = s.key.verifying_key().to_bytes();
    let entries = s.entries();
    // Whether any verifier ever measured it (else settlement used the network's default IB).
    let benchmarked = entries.iter().filter(|e| e.kind == EntryKind::PorVerdicts).any(|e| {
        PorVerdicts::decode(&e.body).is_ok_and(|v| v.workers.iter().any(|w| w.worker == me && w.ib_milli > 0))
    });
    let st = s.compute();
    let secs = s.network.epoch_secs;
    let now = s.network.epoch_at(crate::unix_time_us() / 1000);
    let last = last_line(&st, &me);
    let epoch_mm = (secs as u128 * 1000 / 60).max(1);
    let mut notes = Vec::new();
    let ib_milli = match (q.ib_milli, last) {
        (Some(v), _) => {
            notes.push(format!("IB {v} milli (given)"));
            v
        }
        (None, Some((e, l))) if benchmarked => {
            notes.push(format!("IB {} milli, the verifiers' median benchmark as of epoch {e}", l.ib_milli));
            l.ib_milli
        }
        (None, _) => {
            let v = st.params.default_ib_milli;
            notes.push(format!("IB {v} milli, the network's default: no verifier has benchmarked this node yet"));
            v
        }
    };
    let uptime_bps = match (q.uptime_pct, last) {
        (Some(v), _) => {
            notes.push(format!("up {v}% of each epoch (given)"));
            v * 100
        }
        (None, Some((e, l))) => {
            let bps = (l.uptime_milli_minutes as u128 * 10_000 / epoch_mm).min(10_000) as u64;
            notes.push(format!(
                "up {}.{:02}% of each epoch, as the verifiers attested epoch {e}",
                bps / 100,
                bps % 100
            ));
            bps
        }
        (None, None) => {
            notes.push("up 100% of each epoch (not attested yet)".into());
            10_000
        }
    };
    let delivery_milli_minutes = match (q.delivery_milli_minutes, last) {
        (Some(v), _) => {
            notes.push(format!("{v} milli-minutes of paid delivery per epoch (given)"));
            v
        }
        (None, Some((e, l))) => {
            notes.push(format!(
                "{} milli-minutes of paid delivery per epoch, as in epoch {e}",
                l.delivery_milli_minutes
            ));
            l.delivery_milli_minutes
        }
        (None, None) => {
            notes.push("no paid delivery (none yet)".into());
            0
        }
    };
    let qos_bps = last.map_or(10_000, |(_, l)| l.qos_bps);
    let assumed = Assumed { ib_milli, uptime_bps, delivery_milli_minutes, qos_bps };
    let mut est = estimate(&st, secs, now, me, assumed);
    notes.append(&mut est.assumptions);
    est.assumptions = notes;
    est
}
