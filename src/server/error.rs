//! The web layer's errors and how each is answered: RFC 9457 `application/problem+json`
//! bodies that say what was wrong and what is allowed, with a machine-readable `code`; internal
//! detail only in the log. Never a 500 for bad input.

use std::time::Duration;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::jobs::store::StoreError;
use crate::jobs::StartError;
use crate::model::JobStatus;

/// How long a client refused for a full queue should wait before trying again.
pub const QUEUE_FULL_RETRY: Duration = Duration::from_secs(5);
/// How long a client refused for too many open streams is asked to wait.
pub const STREAMS_RETRY: Duration = Duration::from_secs(5);
/// How long a client should wait before asking again while the job store does not answer.
pub const STORE_RETRY: Duration = Duration::from_secs(2);

/// A wait in whole seconds, rounded up and at least 1: a client that waits as told is let in.
fn whole_seconds(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

/// Everything a request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// No job with that id exists (never did, was forgotten after its retention, or the id is
    /// not a job id at all).
    #[error("no job with id {0:?}: it never existed or has expired")]
    JobNotFound(String),
    /// No API route at that path.
    #[error("there is no API route at {0}; see /api/openapi.json for the routes")]
    RouteNotFound(String),
    /// The route exists but not for this method.
    #[error("method {method} is not allowed here; allowed: {allowed}")]
    MethodNotAllowed {
        /// The method used.
        method: String,
        /// The methods the route takes (also in the `Allow` header).
        allowed: String,
    },
    /// A resume point (`Last-Event-ID` header or `last_event_id` query parameter) that is not a
    /// sequence number.
    #[error(
        "{source_name} must be the sequence number of the last event received \
         (a whole number, 0 or more), got {value:?}"
    )]
    BadResumePoint {
        /// Which header or parameter it came from.
        source_name: &'static str,
        /// What it said (cut to 64 characters).
        value: String,
    },
    /// A request body that is not JSON at all.
    #[error("the request body is not valid JSON: {0}")]
    MalformedJson(String),
    /// JSON of the wrong shape, e.g. a missing `kind`.
    #[error("the request body does not fit: {0}")]
    InvalidBody(String),
    /// A body without `Content-Type: application/json`.
    #[error("send the request body as JSON, with the header Content-Type: application/json")]
    UnsupportedMediaType,
    /// A body over the size limit.
    #[error("the request body is larger than the {limit} bytes allowed")]
    PayloadTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// A request body that did not arrive in time.
    #[error("the request body did not arrive within {seconds} s; send it whole, at once")]
    BodyTimeout {
        /// How long the server waits for it.
        seconds: u64,
    },
    /// A query string that does not parse.
    #[error("the query string does not fit: {0}")]
    InvalidQuery(String),
    /// An `Authorization: Bearer` token of a shape this server never gives.
    #[error("the bearer token is not one this server gives: tokens are the 64 lower-case hex characters of `owner_token` from POST /api/jobs")]
    BadToken,
    /// A state-changing request from another site.
    #[error("this request was refused because {0}; jobs can only be started and cancelled from this site's own pages or from clients that are not browsers")]
    CrossSite(String),
    /// A client address started more jobs than its share (see `server::limits`).
    #[error(
        "this client address has started too many jobs: {per_minute} a minute are allowed, {burst} at once after a \
         pause; try again in {} s", whole_seconds(*retry_after)
    )]
    TooManyStarts {
        /// Starts allowed per minute.
        per_minute: u32,
        /// Starts allowed at once.
        burst: u32,
        /// When the next start is allowed.
        retry_after: Duration,
    },
    /// A client address or an owner holds as many event streams open as allowed.
    #[error(
        "this {per} already has {limit} event streams open, the most allowed at once; close one (or follow \
         many jobs on the one stream GET /api/events) and try again"
    )]
    TooManyStreams {
        /// `client address` or `owner`.
        per: &'static str,
        /// Streams allowed at once.
        limit: usize,
    },
    /// The engine refused to start a job.
    #[error(transparent)]
    Start(#[from] StartError),
    /// The job store could not be asked (a shared store that does not answer): whether the
    /// job exists cannot be told now. The detail is logged, not sent.
    #[error("the job store is not answering right now, so this job cannot be looked up; try again in {} s", STORE_RETRY.as_secs())]
    StoreUnavailable(#[source] StoreError),
    /// A failure inside the server. The detail is logged, not sent.
    #[error("something went wrong inside the server; it has been logged, try again later")]
    Internal(String),
    /// The result was asked for before the job ended.
    #[error("the job is still {status} ({progress:.0}% done); ask again in {} s", retry_after.as_secs())]
    ResultNotReady {
        /// Pending or running.
        status: JobStatus,
        /// Percent done.
        progress: f64,
        /// When to ask again.
        retry_after: Duration,
    },
    /// The job ended without a result.
    #[error("the job {status} and has no result{}", error.as_ref().map(|e| format!(": {e}")).unwrap_or_default())]
    NoResult {
        /// Failed or cancelled.
        status: JobStatus,
        /// The job's error, when it failed.
        error: Option<String>,
    },
}

/// An RFC 9457 problem document, as every error of the API is answered.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// `about:blank`: the status code and `code` say what kind of problem it is.
    pub r#type: String,
    /// The status code's reason phrase.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What was wrong and what is allowed, for a person.
    pub detail: String,
    /// A stable identifier of the problem, for a program.
    pub code: String,
    /// For `unknown_kind`: the kinds that exist.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub known_kinds: Option<Vec<String>>,
    /// For `result_not_ready`, `queue_full`, `too_many_starts` and `too_many_streams`: seconds
    /// to wait (also in `Retry-After`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
    /// For `result_not_ready` and `no_result`: the job's status.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job_status: Option<JobStatus>,
}

impl AppError {
    /// The HTTP status this error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::JobNotFound(_) | Self::RouteNotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::CrossSite(_) => StatusCode::FORBIDDEN,
            Self::BadToken => StatusCode::UNAUTHORIZED,
            Self::BadResumePoint { .. } | Self::MalformedJson(_) | Self::InvalidQuery(_) => StatusCode::BAD_REQUEST,
            Self::InvalidBody(_) | Self::Start(StartError::UnknownKind { .. } | StartError::InvalidParams { .. }) => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BodyTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            Self::Start(StartError::QueueFull { .. } | StartError::OwnerLimit { .. })
            | Self::TooManyStarts { .. }
            | Self::TooManyStreams { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Start(
                StartError::AtCapacity { .. } | StartError::ShuttingDown | StartError::StoreUnavailable { .. },
            ) => StatusCode::SERVICE_UNAVAILABLE,
            Self::ResultNotReady { .. } | Self::NoResult { .. } => StatusCode::CONFLICT,
            Self::StoreUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::JobNotFound(_) => "job_not_found",
            Self::RouteNotFound(_) => "route_not_found",
            Self::MethodNotAllowed { .. } => "method_not_allowed",
            Self::CrossSite(_) => "cross_site_request",
            Self::BadToken => "bad_token",
            Self::BadResumePoint { .. } => "bad_resume_point",
            Self::MalformedJson(_) => "malformed_json",
            Self::InvalidBody(_) => "invalid_body",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::PayloadTooLarge { .. } => "payload_too_large",
            Self::BodyTimeout { .. } => "body_timeout",
            Self::InvalidQuery(_) => "invalid_query",
            Self::TooManyStarts { .. } => "too_many_starts",
            Self::TooManyStreams { .. } => "too_many_streams",
            Self::Start(StartError::UnknownKind { .. }) => "unknown_kind",
            Self::Start(StartError::InvalidParams { .. }) => "invalid_params",
            Self::Start(StartError::QueueFull { .. }) => "queue_full",
            Self::Start(StartError::OwnerLimit { .. }) => "owner_limit",
            Self::Start(StartError::AtCapacity { .. }) => "at_capacity",
            Self::Start(StartError::ShuttingDown) => "shutting_down",
            Self::Start(StartError::StoreUnavailable { .. }) => "store_unavailable",
            Self::ResultNotReady { .. } => "result_not_ready",
            Self::NoResult { .. } => "no_result",
            Self::StoreUnavailable(_) => "store_unavailable",
            Self::Internal(_) => "internal",
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::ResultNotReady { retry_after, .. } | Self::TooManyStarts { retry_after, .. } => Some(*retry_after),
            Self::TooManyStreams { .. } => Some(STREAMS_RETRY),
            Self::StoreUnavailable(_) => Some(STORE_RETRY),
            Self::Start(
                StartError::QueueFull { .. }
                | StartError::AtCapacity { .. }
                | StartError::OwnerLimit { .. }
                | StartError::StoreUnavailable { .. },
            ) => Some(QUEUE_FULL_RETRY),
            _ => None,
        }
    }

    /// The problem document for this error.
    pub fn problem(&self) -> Problem {
        let status = self.status();
        Problem {
            r#type: "about:blank".into(),
            title: status.canonical_reason().unwrap_or("Error").into(),
            status: status.as_u16(),
            detail: self.to_string(),
            code: self.code().into(),
            known_kinds: match self {
                Self::Start(StartError::UnknownKind { known, .. }) => Some(known.clone()),
                _ => None,
            },
            retry_after: self.retry_after().map(whole_seconds),
            job_status: match self {
                Self::ResultNotReady { status, .. } | Self::NoResult { status, .. } => Some(*status),
                _ => None,
            },
        }
    }
}

impl From<StoreError> for AppError {
    fn from(error: StoreError) -> Self {
        Self::StoreUnavailable(error)
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        match &self {
            Self::StoreUnavailable(error) => tracing::warn!(%error, "a request could not ask the job store"),
            Self::Internal(detail) => tracing::error!(%detail, "a request failed inside the server"),
            _ => {}
        }
        let problem = self.problem();
        let mut response = (self.status(), axum::Json(&problem)).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        if let Some(seconds) = problem.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if let Self::MethodNotAllowed { allowed, .. } = &self {
            if let Ok(allow) = HeaderValue::from_str(allowed) {
                headers.insert(header::ALLOW, allow);
            }
        }
        response
    }
}
