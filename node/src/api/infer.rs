//! Inference: publishing models and the jobs this node owns.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use ifx_protocols::api::{InferJobRequest, InferList, TaskAccepted};
use ifx_protocols::infer::Arch;
use serde::Deserialize;

use super::{accepted, refused};
use crate::infer::{Infer, InferError};
use crate::settle::PayError;

pub fn routes(infer: Infer) -> Router {
    Router::new()
        .route("/infer/models", post(publish))
        .route("/infer", get(list).post(submit))
        .route("/infer/{job}", get(one))
        .with_state(infer)
}

#[derive(Deserialize)]
struct ArchQuery {
    arch: Arch,
}

/// `POST /infer/models?arch=mlp|cnn` with the safetensors weights as the body: the model spec.
async fn publish(State(infer): State<Infer>, Query(q): Query<ArchQuery>, body: Bytes) -> Response {
    match infer.publish(q.arch, &body) {
        Ok(m) => Json(m).into_response(),
        Err(e) => refused(StatusCode::BAD_REQUEST, e),
    }
}

async fn submit(State(infer): State<Infer>, Json(req): Json<InferJobRequest>) -> Response {
    match infer.submit(req).await {
        // The job id in the field every job answer uses.
        Ok(task_id) => accepted(TaskAccepted { task_id }),
        Err(e @ InferError::Pay(PayError::Unfunded { .. })) => refused(StatusCode::PAYMENT_REQUIRED, e),
        Err(e @ InferError::Pay(_)) => refused(StatusCode::SERVICE_UNAVAILABLE, e),
        Err(e) => refused(StatusCode::BAD_REQUEST, e),
    }
}

async fn one(State(infer): State<Infer>, Path(id): Path<String>) -> Response {
    match infer.get(&id) {
        Some(j) => Json(j).into_response(),
        None => refused(StatusCode::NOT_FOUND, "no such job"),
    }
}

async fn list(State(infer): State<Infer>) -> Json<InferList> {
    Json(InferList { jobs: infer.list() })
}
