//! The OpenAPI 3.1 document of the API, generated from the handlers' and types' own
//! annotations so that it cannot drift from the code. Served at `/api/openapi.json`.

use axum::Json;
use utoipa::OpenApi;

use super::{api, error, events, health, metrics, owner_events};
use crate::model::{JobStatus, KindDescription, LogLevel, LogLine, Snapshot};

/// The API's description.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "sse-progress",
        description = "Start long-running jobs, follow their progress (poll with Retry-After, or \
                       stream Server-Sent Events), fetch their results, cancel them."
    ),
    paths(
        api::list_kinds,
        api::start_job,
        api::get_job,
        api::get_result,
        api::get_logs,
        api::cancel_job,
        events::job_events,
        owner_events::owner_events,
        health::healthz,
        health::readyz,
        metrics::metrics
    ),
    components(schemas(
        Snapshot,
        JobStatus,
        KindDescription,
        error::Problem,
        api::StartRequest,
        api::JobResource,
        api::Link,
        api::KindList,
        api::JobResult,
        api::CancelResponse,
        api::JobLogs,
        api::Accepted,
        LogLine,
        LogLevel
    )),
    tags((name = "jobs", description = "Jobs and their progress"))
)]
pub struct ApiDoc;

/// `GET /api/openapi.json`.
pub async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
