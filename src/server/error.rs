//! The web layer's errors and how each is answered: RFC 9457 `application/problem+json`
//! bodies that say what was wrong and what is allowed; internal detail only in the log.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::jobs::StartError;

/// Everything a request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// No job with that id exists (never did, was forgotten after its retention, or the id is
    /// not a job id at all).
    #[error("no job with id {0:?}: it never existed or has expired")]
    JobNotFound(String),
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
    /// The engine refused to start a job.
    #[error(transparent)]
    Start(#[from] StartError),
}

#[derive(Serialize)]
struct Problem<'a> {
    r#type: &'a str,
    title: &'a str,
    status: u16,
    detail: String,
}

impl AppError {
    fn status(&self) -> StatusCode {
        match self {
            Self::JobNotFound(_) => StatusCode::NOT_FOUND,
            Self::BadResumePoint { .. } => StatusCode::BAD_REQUEST,
            Self::Start(StartError::UnknownKind { .. } | StartError::InvalidParams { .. }) => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            Self::Start(StartError::AtCapacity { .. } | StartError::ShuttingDown) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = self.status();
        let problem = Problem {
            r#type: "about:blank",
            title: status.canonical_reason().unwrap_or("Error"),
            status: status.as_u16(),
            detail: self.to_string(),
        };
        let mut response = (status, axum::Json(problem)).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        response
    }
}
