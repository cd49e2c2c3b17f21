//! Proof of Rendering: a verifier's challenge results, the standings the ledger gives, and the
//! outcomes announced on the `por` topic.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use ifx_protocols::api::{PorStats, PorWorker, Standings};
use ifx_protocols::ledger::{EntryKind, PorVerdicts};

use crate::ledger::LedgerHandle;
use crate::network::author_peer_id;
use crate::por::{AnnouncementView, Announcements};

/// What the PoR routes read.
#[derive(Clone)]
pub struct PorApi {
    /// This node's challenge results (empty unless it is a verifier).
    pub stats: crate::por::PorStats,
    pub verifier: bool,
    pub announcements: Announcements,
    pub ledger: LedgerHandle,
}

pub fn routes(state: PorApi) -> Router {
    Router::new()
        .route("/por/stats", get(stats))
        .route("/por/standings", get(standings))
        .route("/por/announcements", get(announcements))
        .with_state(state)
}

/// `GET /por/stats`: a verifier's challenge results by worker.
async fn stats(State(s): State<PorApi>) -> Json<PorStats> {
    let workers: BTreeMap<String, PorWorker> = s.stats.snapshot().iter().map(|(k, w)| (k.clone(), w.view())).collect();
    let (v, r): (u64, u64) = workers
        .values()
        .fold((0, 0), |(v, r), w| (v.saturating_add(w.verify_us), r.saturating_add(w.worker_render_us)));
    Json(PorStats {
        verifier: s.verifier,
        challenges: workers.values().map(|w| w.challenges + w.timeouts).sum(),
        verify_cost_ratio: (r > 0).then(|| v as f64 / r as f64),
        workers,
    })
}

/// `GET /por/standings`: every worker's standing from the PoR verdicts in this node's ledger
/// (decided verifiers, how many failed it, caught by a strict majority).
async fn standings(State(s): State<PorApi>) -> Json<Standings> {
    let verdicts: Vec<([u8; 32], PorVerdicts)> = s.ledger.with(|l| {
        l.ledger()
            .iter_sorted()
            .filter(|e| e.kind == EntryKind::PorVerdicts)
            .filter_map(|e| PorVerdicts::decode(&e.body).ok().map(|v| (e.author, v)))
            .collect()
    });
    let st = ifx_protocols::por::quorum::standings(verdicts.iter().map(|(a, v)| (*a, v)));
    Json(
        st.into_iter()
            .map(|(k, v)| (author_peer_id(&k).map(|p| p.to_string()).unwrap_or_else(|| hex::encode(k)), v))
            .collect(),
    )
}

/// `GET /por/announcements`: recent challenge outcomes announced on the `por` topic.
async fn announcements(State(s): State<PorApi>) -> Json<Vec<AnnouncementView>> {
    Json(s.announcements.snapshot())
}
