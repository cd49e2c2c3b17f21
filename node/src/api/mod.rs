//! The local HTTP JSON API (loopback only). Each service brings its own routes with the state
//! it owns, and [`serve`] merges them:
//! - `node`: `GET /status`, `/peers`, `/heartbeats/latency`, `/metrics` (Prometheus text,
//!   libp2p's metrics included), `POST /net/block`, `/net/unblock`;
//! - `ledger`: `GET /ledger/root`, `/ledger/stats`;
//! - `jobs`: render jobs (`GET`/`POST /jobs`, `GET /jobs/{id}`, `POST /jobs/{id}/cancel`, `POST /assets`);
//! - `por`: Proof of Rendering (`GET /por/stats`, `/por/standings`, `/por/announcements`);
//! - `fl`: federated learning (`POST /fl`, `GET /fl`, `GET /fl/{task}`);
//! - `infer`: inference (`POST /infer/models?arch=`, `POST /infer`, `GET /infer`,
//!   `GET /infer/{job}`);
//! - `settle`: settlement (`GET /rewards`, `GET /rewards/{epoch}`, `GET /account`) and the
//!   operator's stake and governance entries (`POST /stake`, `GET /gov`, `POST /gov/proposals`,
//!   `POST /gov/votes`);
//! - `dashboard`: the operator's page (`GET /`, its script and style sheet), which reads the
//!   routes above.
//!
//! Every request passes [`guard`] first: `Host` and `Origin` must be the loopback, writes carry
//! the token the node wrote to `<data-dir>/api.token`.
//!
//! The answers are the protocol's API types (`ifx_protocols::api`), which the CLI and the
//! testnet read back.

mod dashboard;
mod fl;
pub mod guard;
mod infer;
mod jobs;
mod ledger;
mod node;
mod por;
mod settle;

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use ifx_protocols::api::ApiError;
use tokio_util::sync::CancellationToken;

pub use self::dashboard::routes as dashboard_routes;
pub use self::fl::routes as fl_routes;
pub use self::infer::routes as infer_routes;
pub use self::jobs::routes as jobs_routes;
pub use self::ledger::{LedgerApi, routes as ledger_routes};
pub use self::node::{NodeApi, routes as node_routes};
pub use self::por::{PorApi, routes as por_routes};
pub use self::settle::routes as settle_routes;

/// Serves `app` on `listener` until `shutdown` is cancelled, behind the [`guard`] (loopback
/// `Host` and `Origin`, the token on writes, capped bodies).
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    token: guard::Token,
    shutdown: CancellationToken,
) {
    let app = app
        .layer(axum::middleware::from_fn_with_state(token, guard::check))
        .layer(axum::extract::DefaultBodyLimit::max(guard::MAX_BODY));
    let server = axum::serve(listener, app).with_graceful_shutdown(shutdown.cancelled_owned());
    if let Err(e) = server.await {
        tracing::warn!(error = %e, "API server stopped");
    }
}

/// A refusal: `code`, with why in the body.
fn refused(code: StatusCode, why: impl ToString) -> Response {
    (code, Json(ApiError { error: why.to_string() })).into_response()
}

fn unavailable() -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, "the node is shutting down").into_response()
}

/// 202 with what was accepted.
fn accepted(body: impl serde::Serialize) -> Response {
    (StatusCode::ACCEPTED, Json(body)).into_response()
}
