//! Render jobs this node owns.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use ifx_protocols::api::{JobAccepted, JobStatus};

use super::{accepted, refused};
use crate::render::{JobSpec, Jobs};

pub fn routes(jobs: Jobs) -> Router {
    Router::new().route("/jobs", get(list).post(submit)).route("/jobs/{id}", get(one)).with_state(jobs)
}

async fn submit(State(jobs): State<Jobs>, Json(spec): Json<JobSpec>) -> Response {
    match jobs.submit(spec) {
        Ok(job_id) => accepted(JobAccepted { job_id }),
        Err(e) => refused(StatusCode::BAD_REQUEST, e),
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
