//! The REST API for clients without a browser: the asynchronous request-reply pattern (start
//! with `202 Accepted` and a `Location`, poll the status resource as `Retry-After` says, fetch
//! the result) with the event stream as the no-polling alternative, and a synchronous
//! streaming start (`POST /api/jobs?stream=true`) for `curl -N`.
//!
//! Every job is shown in one schema, [`Snapshot`], the same as the SSE `data:`.

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::events::sse_response;
use super::extract::{ApiJson, ApiQuery, JobPath};
use super::owner::{authorize, Owner};
use super::AppError;
use crate::jobs::{CancelOutcome, JobEngine};
use crate::model::{JobId, JobStatus, KindDescription, LogLine, Snapshot};

/// What `POST /api/jobs` takes.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartRequest {
    /// The kind of job, one of `GET /api/job-kinds`.
    pub kind: String,
    /// The kind's params; fields left out take their defaults.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub params: Value,
}

/// The query of `POST /api/jobs`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StartQuery {
    /// `true`: answer with the job's event stream instead of `202` (synchronous streaming).
    #[serde(default)]
    pub stream: bool,
}

/// A link to something a client can do with a job.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Link {
    /// What it is: `self`, `events`, `result`, `cancel`.
    pub rel: &'static str,
    /// Where.
    pub href: String,
    /// How: an HTTP method, or `EventSource` for the event stream.
    pub action: &'static str,
}

/// A job as the REST API shows it: its state plus what can be done with it.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobResource {
    /// The job's state, the same object the event stream sends.
    #[serde(flatten)]
    pub job: Snapshot,
    /// Where to follow, fetch or cancel it.
    pub links: Vec<Link>,
}

/// The kinds a client may start.
#[derive(Debug, Serialize, ToSchema)]
pub struct KindList {
    /// Sorted by name.
    pub kinds: Vec<KindDescription>,
}

/// The answer to `POST /api/jobs`: the job, and for a client that sent no credentials the
/// owner token it must send (`Authorization: Bearer`) to see the job again.
#[derive(Debug, Serialize, ToSchema)]
pub struct Accepted {
    /// The job.
    #[serde(flatten)]
    pub job: JobResource,
    /// Present when the request carried neither a bearer token nor the owner cookie.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner_token: Option<String>,
}

/// A finished job's result.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobResult {
    /// The job.
    pub id: JobId,
    /// Its kind.
    pub kind: String,
    /// What it returned.
    #[schema(value_type = Object)]
    pub result: Value,
}

/// The answer to a cancellation.
#[derive(Debug, Serialize, ToSchema)]
pub struct CancelResponse {
    /// What happened, for a person.
    pub message: String,
    /// The job's state now; it reaches `cancelled` once its code has stopped.
    pub job: JobResource,
}

/// The header that carries a new owner token on a synchronous stream (a body cannot).
pub const OWNER_TOKEN_HEADER: &str = "x-owner-token";

fn status_url(id: JobId) -> String {
    format!("/api/jobs/{id}")
}

fn links(id: JobId) -> Vec<Link> {
    let base = status_url(id);
    vec![
        Link { rel: "self", href: base.clone(), action: "GET" },
        Link { rel: "events", href: format!("{base}/events"), action: "EventSource" },
        Link { rel: "result", href: format!("{base}/result"), action: "GET" },
        Link { rel: "cancel", href: base, action: "DELETE" },
    ]
}

fn resource(snapshot: &Snapshot) -> JobResource {
    JobResource { job: snapshot.clone(), links: links(snapshot.id) }
}

fn parse_id(id: &str) -> Result<JobId, AppError> {
    id.parse().map_err(|_| AppError::JobNotFound(id.chars().take(64).collect()))
}

/// The job `id` names, if `owner` may see it, and its current state.
async fn current(engine: &JobEngine, owner: &Owner, id: &str) -> Result<(JobId, Snapshot), AppError> {
    let job = parse_id(id)?;
    authorize(engine, owner, job).await?;
    let snapshot = engine.snapshot(job).await?.ok_or_else(|| AppError::JobNotFound(id.to_string()))?;
    Ok((job, Snapshot::clone(&snapshot)))
}

/// Lists the job kinds with the JSON Schema and defaults of their params.
#[utoipa::path(get, path = "/api/job-kinds", tag = "jobs",
    responses((status = 200, description = "The kinds", body = KindList)))]
pub async fn list_kinds(State(engine): State<JobEngine>) -> Json<KindList> {
    Json(KindList { kinds: engine.kind_descriptions() })
}

/// Starts a job: `202 Accepted` with its status resource in `Location`, or with
/// `?stream=true` its event stream in this very response.
#[utoipa::path(post, path = "/api/jobs", tag = "jobs", params(StartQuery), request_body = StartRequest,
    responses(
        (status = 202, description = "Accepted; poll `Location` or follow `links.events`", body = Accepted,
            headers(("Location" = String, description = "The job's status resource"))),
        (status = 200, description = "With `?stream=true`: the job's events", content_type = "text/event-stream", body = String),
        (status = 400, description = "Malformed JSON or query", body = super::error::Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = super::error::Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body not sent as JSON", body = super::error::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Unknown kind or params that do not fit", body = super::error::Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many jobs; see Retry-After", body = super::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn start_job(
    State(engine): State<JobEngine>,
    owner: Owner,
    ApiQuery(query): ApiQuery<StartQuery>,
    ApiJson(request): ApiJson<StartRequest>,
) -> Result<Response, AppError> {
    let id = engine.start_for(Some(&owner.key), &request.kind, request.params).await?;
    let location = HeaderValue::from_str(&status_url(id))
        .map_err(|e| AppError::Internal(format!("the Location of job {id} is not a header value: {e}")))?;
    if query.stream {
        // The stream's first event is the job's `pending` state, whose `id` field names the job:
        // a client that loses this connection re-attaches to `links.events` with Last-Event-ID.
        let subscription = engine
            .subscribe(id, None)
            .await?
            .ok_or_else(|| AppError::Internal(format!("job {id} was started but cannot be followed")))?;
        let mut response = sse_response(&engine, subscription);
        response.headers_mut().insert(header::LOCATION, location);
        if owner.is_new {
            if let Ok(token) = HeaderValue::from_str(&owner.token) {
                response.headers_mut().insert(OWNER_TOKEN_HEADER, token);
            }
        }
        return Ok(response);
    }
    let snapshot = engine
        .snapshot(id)
        .await?
        .ok_or_else(|| AppError::Internal(format!("job {id} was started but cannot be read")))?;
    let accepted = Accepted { job: resource(&snapshot), owner_token: owner.is_new.then(|| owner.token.to_string()) };
    Ok((StatusCode::ACCEPTED, [(header::LOCATION, location)], Json(accepted)).into_response())
}

/// The job's current state. While it is pending or running, `Retry-After` says when to ask again.
#[utoipa::path(get, path = "/api/jobs/{id}", tag = "jobs", params(("id" = String, Path, description = "The job id")),
    responses(
        (status = 200, description = "The job's state", body = JobResource,
            headers(("Retry-After" = u64, description = "Seconds until it is worth asking again; only while the job has not ended"))),
        (status = 404, description = "No such job", body = super::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "The job store is not answering (a shared store); see Retry-After", body = super::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_job(
    State(engine): State<JobEngine>,
    owner: Owner,
    JobPath(id): JobPath,
) -> Result<Response, AppError> {
    let (job, snapshot) = current(&engine, &owner, &id).await?;
    let mut headers = HeaderMap::new();
    if let Some(wait) = engine.poll_after(job).await? {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(wait.as_secs().max(1)));
    }
    Ok((headers, Json(resource(&snapshot))).into_response())
}

/// The job's result once it completed; `409` with `Retry-After` while it runs, `409` naming the
/// outcome when it failed or was cancelled.
#[utoipa::path(get, path = "/api/jobs/{id}/result", tag = "jobs", params(("id" = String, Path, description = "The job id")),
    responses(
        (status = 200, description = "The result", body = JobResult),
        (status = 404, description = "No such job", body = super::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "The job store is not answering (a shared store); see Retry-After", body = super::error::Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not ready yet (see Retry-After), or the job failed or was cancelled", body = super::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_result(
    State(engine): State<JobEngine>,
    owner: Owner,
    JobPath(id): JobPath,
) -> Result<Json<JobResult>, AppError> {
    let (job, snapshot) = current(&engine, &owner, &id).await?;
    match snapshot.status {
        JobStatus::Completed => {
            Ok(Json(JobResult { id: job, kind: snapshot.kind, result: snapshot.data.unwrap_or(Value::Null) }))
        }
        JobStatus::Pending | JobStatus::Running => Err(AppError::ResultNotReady {
            status: snapshot.status,
            progress: snapshot.progress,
            retry_after: engine.poll_after(job).await?.unwrap_or(std::time::Duration::from_secs(1)),
        }),
        JobStatus::Failed | JobStatus::Cancelled | JobStatus::Interrupted => {
            Err(AppError::NoResult { status: snapshot.status, error: snapshot.error })
        }
    }
}

/// The query of `GET /api/jobs/{id}/logs`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LogsQuery {
    /// Only lines after this sequence number (0, the default, for all that are kept).
    #[serde(default)]
    pub after: u64,
}

/// A job's recent log lines.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobLogs {
    /// The job.
    pub id: JobId,
    /// The lines kept after `after`, oldest first (the newest ones the replay log holds).
    pub lines: Vec<LogLine>,
    /// Lines the job wrote past its log bounds, which nobody will see.
    pub dropped: u64,
    /// Ask again with this as `after` for only newer lines.
    pub next_after: u64,
}

/// The job's recent log lines after sequence `after`.
#[utoipa::path(get, path = "/api/jobs/{id}/logs", tag = "jobs",
    params(("id" = String, Path, description = "The job id"), LogsQuery),
    responses(
        (status = 200, description = "The lines", body = JobLogs),
        (status = 400, description = "`after` is not a whole number", body = super::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such job", body = super::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "The job store is not answering (a shared store); see Retry-After", body = super::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_logs(
    State(engine): State<JobEngine>,
    owner: Owner,
    JobPath(id): JobPath,
    ApiQuery(query): ApiQuery<LogsQuery>,
) -> Result<Json<JobLogs>, AppError> {
    if i64::try_from(query.after).is_err() {
        // Sequence numbers are kept as 64-bit signed integers (SQLite's): none is larger.
        return Err(AppError::InvalidQuery(format!("after: must be at most {}, got {}", i64::MAX, query.after)));
    }
    let job = parse_id(&id)?;
    authorize(&engine, &owner, job).await?;
    let (lines, dropped) = engine.log_lines(job, query.after).await?.ok_or(AppError::JobNotFound(id))?;
    let next_after = lines.last().map_or(query.after, |l| l.seq);
    Ok(Json(JobLogs { id: job, lines: lines.iter().map(|l| LogLine::clone(l)).collect(), dropped, next_after }))
}

/// Asks the job to stop. `202` while a running job stops; `200` when the job has ended: it was
/// still waiting and is now cancelled, or it had already ended (nothing changes).
#[utoipa::path(delete, path = "/api/jobs/{id}", tag = "jobs", params(("id" = String, Path, description = "The job id")),
    responses(
        (status = 202, description = "The running job was told to stop", body = CancelResponse),
        (status = 200, description = "The job has ended: it was waiting and is now cancelled, or it had already ended and nothing changed", body = CancelResponse),
        (status = 404, description = "No such job", body = super::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "The job store is not answering (a shared store); see Retry-After", body = super::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn cancel_job(
    State(engine): State<JobEngine>,
    owner: Owner,
    JobPath(id): JobPath,
) -> Result<Response, AppError> {
    let job = parse_id(&id)?;
    authorize(&engine, &owner, job).await?;
    let outcome = engine.cancel(job).await?.ok_or_else(|| AppError::JobNotFound(id.clone()))?;
    let snapshot = engine.snapshot(job).await?.ok_or(AppError::JobNotFound(id))?;
    let (status, message) = match outcome {
        CancelOutcome::Requested => (StatusCode::ACCEPTED, "the job was told to stop".to_string()),
        CancelOutcome::Withdrawn => {
            (StatusCode::OK, "the job had not started; it is cancelled and will not run".to_string())
        }
        CancelOutcome::AlreadyEnded(status) => {
            (StatusCode::OK, format!("the job had already ended ({status}); nothing changed"))
        }
    };
    Ok((status, Json(CancelResponse { message, job: resource(&snapshot) })).into_response())
}
