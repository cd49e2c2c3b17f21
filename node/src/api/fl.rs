//! Federated learning: tasks this node owns, and its audits of other owners' rounds.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use ifx_protocols::api::{FlList, TaskAccepted};
use ifx_protocols::fl::wire::TaskSpec;

use super::{accepted, refused};
use crate::fl::{Fl, TaskError};
use crate::settle::PayError;

pub fn routes(fl: Fl) -> Router {
    Router::new().route("/fl", get(list).post(start)).route("/fl/{task}", get(one)).with_state(fl)
}

async fn start(State(fl): State<Fl>, Json(spec): Json<TaskSpec>) -> Response {
    match fl.start(spec).await {
        Ok(task_id) => accepted(TaskAccepted { task_id }),
        Err(e @ TaskError::Pay(PayError::Unfunded { .. })) => refused(StatusCode::PAYMENT_REQUIRED, e),
        Err(e @ TaskError::Pay(_)) => refused(StatusCode::SERVICE_UNAVAILABLE, e),
        Err(e) => refused(StatusCode::BAD_REQUEST, e),
    }
}

async fn one(State(fl): State<Fl>, Path(id): Path<String>) -> Response {
    match fl.get(&id) {
        Some(t) => Json(t).into_response(),
        None => refused(StatusCode::NOT_FOUND, "no such task"),
    }
}

/// `GET /fl`: owned tasks and this node's audits of other owners' rounds.
async fn list(State(fl): State<Fl>) -> Json<FlList> {
    Json(FlList { tasks: fl.list(), audits: fl.audits() })
}
