//! `GET /healthz` and `GET /readyz`, for load balancers and orchestrators: cheap, open to
//! anyone, and never about a particular job.
//!
//! - `/healthz`: the process is alive and serving (200 whenever it can answer at all).
//! - `/readyz`: the job store answers and takes writes (200), or it does not (503, with what
//!   is wrong), so a balancer stops sending new work until it recovers. While shutting down
//!   it answers 503 too.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::jobs::JobEngine;

/// The process is alive.
#[utoipa::path(get, path = "/healthz", tag = "health",
    responses((status = 200, description = "Alive", body = Object)))]
pub async fn healthz() -> Response {
    ([(header::CACHE_CONTROL, "no-store")], Json(json!({"status": "ok"}))).into_response()
}

/// Whether this instance can take work: its job store answers and takes writes.
#[utoipa::path(get, path = "/readyz", tag = "health",
    responses(
        (status = 200, description = "Ready", body = Object),
        (status = 503, description = "Not ready; `reason` says why", body = Object),
    ))]
pub async fn readyz(State(engine): State<JobEngine>) -> Response {
    let store = engine.store_description();
    let verdict = if engine.shutdown_token().is_cancelled() {
        Err("the server is shutting down".to_string())
    } else {
        engine.ready().await
    };
    let (status, body) = match verdict {
        Ok(()) => (StatusCode::OK, json!({"status": "ready", "store": store})),
        Err(reason) => {
            (StatusCode::SERVICE_UNAVAILABLE, json!({"status": "not ready", "store": store, "reason": reason}))
        }
    };
    (status, [(header::CACHE_CONTROL, "no-store")], Json(body)).into_response()
}
