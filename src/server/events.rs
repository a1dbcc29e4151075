//! `GET /api/jobs/{id}/events`: one job's events as Server-Sent Events.
//!
//! Wire format, one SSE event per job event:
//! - `id:` the job's sequence number, so the browser's `Last-Event-ID` resumes exactly;
//! - `event:` `pending`, `progress`, `completed`, `failed`, `cancelled`, or `reset` (the
//!   client's resume point is no longer in the replay log: here is the whole state), with the
//!   job's [`Snapshot`](crate::model::Snapshot) as `data:`; or `log`, a line the job's code
//!   logged, with a [`LogLine`](crate::model::LogLine) as `data:`.
//!
//! The stream opens with a `retry:` hint, sends a keep-alive comment every
//! [`KEEP_ALIVE`](super::sse::KEEP_ALIVE) while idle, and after the terminal event sends
//! `event: end` and closes. It resumes after the `Last-Event-ID` header or, for a new `EventSource` that cannot set headers, the
//! `last_event_id` query parameter (the header wins when both are given). A resume point at or
//! past the terminal event of a job that ended is answered `204 No Content`: the client has
//! everything, and a browser's `EventSource`, which reconnects after `end` by itself, stops.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::stream::BoxStream;
use futures::StreamExt;
use serde::Deserialize;
use serde_json::json;

use super::extract::{parse_seq, ApiQuery, JobPath};
use super::owner::{authorize, Owner};
use super::sse::{self, frame};
use super::AppError;
use crate::jobs::{Delivery, JobEngine, Subscription};
use crate::model::JobId;

/// The query parameters of the events route.
#[derive(Debug, Default, Deserialize)]
pub struct EventsQuery {
    /// Resume after this sequence number (the header `Last-Event-ID` takes precedence).
    pub last_event_id: Option<String>,
}

/// Reads the resume point: the `Last-Event-ID` header, else the `last_event_id` parameter.
/// Empty values count as absent; anything else must be a sequence number (see
/// [`parse_seq`]).
pub fn resume_point(headers: &HeaderMap, query: &EventsQuery) -> Result<Option<u64>, AppError> {
    let header = headers
        .get("last-event-id")
        .map(|v| v.to_str().map(str::to_owned).unwrap_or_else(|_| String::from_utf8_lossy(v.as_bytes()).into_owned()));
    let read = |source_name, value: Option<String>| match value.filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(value) => parse_seq(&value)
            .map(Some)
            .ok_or_else(|| AppError::BadResumePoint { source_name, value: value.chars().take(64).collect() }),
    };
    // Both are checked, so a bad one is never silently ignored; the header wins.
    let from_query = read("the last_event_id query parameter", query.last_event_id.clone())?;
    Ok(read("the Last-Event-ID header", header)?.or(from_query))
}

/// Follows a job's events as Server-Sent Events, resuming after `Last-Event-ID` (or
/// `last_event_id`), and closes after the terminal event and `event: end`.
#[utoipa::path(get, path = "/api/jobs/{id}/events", tag = "jobs",
    params(
        ("id" = String, Path, description = "The job id"),
        ("last_event_id" = Option<String>, Query, pattern = "^([0-9]{1,19})?$",
            description = "Resume after this sequence number (for clients that cannot set headers); empty is the same as none"),
        ("Last-Event-ID" = Option<String>, Header, pattern = "^([0-9]{1,19})?$",
            description = "Resume after this sequence number; wins over the query parameter; empty is the same as none"),
    ),
    responses(
        (status = 200, description = "The event stream; each `data:` is a Snapshot", content_type = "text/event-stream", body = String),
        (status = 204, description = "The job ended and the resume point is at or past its terminal event: nothing more will come (an EventSource stops reconnecting)"),
        (status = 400, description = "A resume point that is not a sequence number", body = super::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such job", body = super::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "The job store is not answering (a shared store); see Retry-After", body = super::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn job_events(
    State(engine): State<JobEngine>,
    owner: Owner,
    JobPath(id): JobPath,
    ApiQuery(query): ApiQuery<EventsQuery>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let job: JobId = id.parse().map_err(|_| AppError::JobNotFound(id.clone()))?;
    authorize(&engine, &owner, job).await?;
    let after = resume_point(&headers, &query)?;
    let subscription = engine.subscribe(job, after).await?.ok_or(AppError::JobNotFound(id))?;
    let seen_the_end = subscription
        .current()
        .zip(after)
        .is_some_and(|(state, after)| state.status.is_terminal() && after >= state.seq);
    if seen_the_end {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    Ok(sse_response(&engine, subscription))
}

/// The SSE response for a subscription: see [`sse_of`].
pub fn sse_response(engine: &JobEngine, subscription: Subscription) -> Response {
    sse_of(engine, event_stream(subscription))
}

/// An SSE response of `frames` (see [`sse::response`]) that ends early when the server shuts
/// down (clients then reconnect elsewhere or later).
pub fn sse_of(engine: &JobEngine, frames: BoxStream<'static, Bytes>) -> Response {
    sse::response(frames, &engine.shutdown_token())
}

/// The SSE events for one subscription, framed: every delivery, then `end`.
pub fn event_stream(subscription: Subscription) -> BoxStream<'static, Bytes> {
    futures::stream::unfold(Some(subscription), |sub| async move {
        let mut sub = sub?;
        match sub.next().await {
            Some(delivery) => Some((delivery_frame(&delivery), Some(sub))),
            None => {
                let last = sub.current()?;
                let end = json!({"status": last.status, "seq": last.seq});
                Some((frame(None, "end", &end.to_string()), None))
            }
        }
    })
    .boxed()
}

/// The SSE event of a delivery. Its data is the JSON the engine encoded once for every
/// subscriber, not encoded again here.
fn delivery_frame(delivery: &Delivery) -> Bytes {
    frame(Some(itoa::Buffer::new().format(delivery.seq())), delivery.event_name(), delivery.json())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("last-event-id", HeaderValue::from_str(value).expect("header"));
        h
    }

    fn query(value: &str) -> EventsQuery {
        EventsQuery { last_event_id: Some(value.into()) }
    }

    #[test]
    fn the_header_wins_over_the_query_parameter() {
        let got = resume_point(&headers("7"), &query("3")).expect("valid");
        assert_eq!(got, Some(7));
        assert_eq!(resume_point(&HeaderMap::new(), &query("3")).expect("valid"), Some(3));
        assert_eq!(resume_point(&headers(""), &query("3")).expect("valid"), Some(3));
        assert_eq!(resume_point(&HeaderMap::new(), &EventsQuery::default()).expect("valid"), None);
    }

    #[test]
    fn a_malformed_resume_point_says_what_is_allowed() {
        let err = resume_point(&headers("abc"), &EventsQuery::default()).expect_err("invalid");
        assert_eq!(
            err.to_string(),
            "the Last-Event-ID header must be the sequence number of the last event received \
             (a whole number, 0 or more), got \"abc\""
        );
        assert!(resume_point(&headers("7"), &query("x")).is_err(), "a bad parameter is refused beside a good header");
        for bad in ["-1", "+1", " 1", "1 ", "null", "99999999999999999999"] {
            assert!(resume_point(&HeaderMap::new(), &query(bad)).is_err(), "{bad:?}");
        }
        assert_eq!(
            resume_point(&HeaderMap::new(), &query("9999999999999999999")).expect("19 digits"),
            Some(9_999_999_999_999_999_999)
        );
    }
}
