//! The contribution ledger: its root and size.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use ifx_protocols::api::LedgerRoot;

use crate::ledger::{LedgerHandle, LedgerStats};

/// The ledger, and whose entries are this node's own.
#[derive(Clone)]
pub struct LedgerApi {
    pub ledger: LedgerHandle,
    pub me: [u8; 32],
}

pub fn routes(state: LedgerApi) -> Router {
    Router::new().route("/ledger/root", get(root)).route("/ledger/stats", get(stats)).with_state(state)
}

async fn root(State(s): State<LedgerApi>) -> Json<LedgerRoot> {
    let (root, entries, own_entries) =
        s.ledger.with(|l| (hex::encode(l.ledger().root()), l.ledger().len(), l.ledger().chain(&s.me).len()));
    Json(LedgerRoot { root, entries, own_entries, last_append_unix_ms: s.ledger.last_append_unix_ms() })
}

async fn stats(State(s): State<LedgerApi>) -> Json<LedgerStats> {
    Json(s.ledger.with(|l| LedgerStats::of(l.ledger())))
}
