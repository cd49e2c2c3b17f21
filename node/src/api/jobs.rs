//! Render jobs this node owns.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use ifx_protocols::api::{JobAccepted, JobStatus};

use super::{accepted, refused};
use crate::render::{CancelError, JobSpec, Jobs, Schedule, SubmitError};
use crate::settle::PayError;

pub fn routes(jobs: Jobs) -> Router {
    Router::new()
        .route("/jobs", get(list).post(submit))
        .route("/jobs/{id}", get(one))
        .route("/jobs/{id}/cancel", post(cancel))
        // An asset is up to 256 MiB, far over the API's usual body cap.
        .route(
            "/assets",
            post(put_asset)
                .layer(axum::extract::DefaultBodyLimit::max(ifx_protocols::render::assets::MAX_ASSET_BYTES as usize)),
        )
        .with_state(jobs)
}

/// `POST /jobs?schedule=capacity|fifo` (default capacity).
#[derive(serde::Deserialize)]
struct SubmitQuery {
    #[serde(default)]
    schedule: Schedule,
}

async fn submit(State(jobs): State<Jobs>, Query(q): Query<SubmitQuery>, Json(spec): Json<JobSpec>) -> Response {
    match jobs.submit(spec, q.schedule).await {
        Ok(job_id) => accepted(JobAccepted { job_id }),
        Err(e @ SubmitError::Render(_)) => refused(StatusCode::BAD_REQUEST, e),
        Err(e @ SubmitError::Pay(PayError::Unfunded { .. })) => refused(StatusCode::PAYMENT_REQUIRED, e),
        Err(e @ SubmitError::Pay(_)) => refused(StatusCode::SERVICE_UNAVAILABLE, e),
        Err(e @ SubmitError::Busy(_)) => refused(StatusCode::TOO_MANY_REQUESTS, e),
        Err(e @ SubmitError::Store(_)) => refused(StatusCode::INSUFFICIENT_STORAGE, e),
    }
}

/// `POST /assets` (raw bytes): keeps a file of a scene for a job to come (`ifx render submit`
/// uploads each, then names them in the job's spec); 202 with its hash.
async fn put_asset(State(jobs): State<Jobs>, body: axum::body::Bytes) -> Response {
    let len = body.len() as u64;
    match jobs.put_asset(body.to_vec()).await {
        Ok(hash) => accepted(ifx_protocols::api::AssetKept { hash: hex::encode(hash), len }),
        Err(e @ ifx_storage::StorageError::TooLarge { .. }) => refused(StatusCode::PAYLOAD_TOO_LARGE, e),
        Err(e) => refused(StatusCode::INSUFFICIENT_STORAGE, e),
    }
}

/// `POST /jobs/{id}/cancel`: stops a running job (202 with its status as it was; 404, 409 when
/// it has ended).
async fn cancel(State(jobs): State<Jobs>, Path(id): Path<String>) -> Response {
    match jobs.cancel(&id) {
        Ok(st) => (StatusCode::ACCEPTED, Json(st)).into_response(),
        Err(e @ CancelError::NotFound) => refused(StatusCode::NOT_FOUND, e),
        Err(e @ CancelError::Ended(_)) => refused(StatusCode::CONFLICT, e),
    }
}

async fn one(State(jobs): State<Jobs>, Path(id): Path<String>) -> Response {
    match jobs.get(&id) {
        Some(j) => Json(j).into_response(),
        None => refused(StatusCode::NOT_FOUND, "no such job"),
    }
}

async fn list(State(jobs): State<Jobs>) -> Json<Vec<JobStatus>> {
    Json(jobs.list())
}
