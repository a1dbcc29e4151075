//! Extractors whose rejections are problem documents that say what was wrong, and the
//! middleware that does the same for a wrong method and a slow body.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use super::AppError;

/// How a sequence number is written where a client sends one (`Last-Event-ID`, `after`):
/// 1 to 19 ASCII digits, so it always fits the 64 bits it is kept in. The OpenAPI document
/// says the same with this pattern.
pub const SEQ_PATTERN: &str = "[0-9]{1,19}";

/// A sequence number written as [`SEQ_PATTERN`] says; nothing else (no sign, no spaces).
pub fn parse_seq(text: &str) -> Option<u64> {
    let fits = (1..=19).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_digit());
    fits.then(|| text.parse().ok()).flatten()
}

/// Largest request body the API reads.
pub const BODY_LIMIT: usize = 64 * 1024;

/// How long a request's whole body may take to arrive.
pub const BODY_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Reads a request's body, whole, before anything else sees it: at most [`BODY_LIMIT`] bytes
/// (`413` past that) within [`BODY_WAIT`] (`408` after it), so a client that sends its body a
/// byte at a time, or never, holds a connection for seconds, not for ever. Every route's body
/// passes here, the server functions' as well; requests without a body pass untouched.
pub async fn read_body_in_time(request: Request, next: axum::middleware::Next) -> axum::response::Response {
    use axum::response::IntoResponse;
    let has_body = request.headers().contains_key(axum::http::header::TRANSFER_ENCODING)
        || request.headers().get(axum::http::header::CONTENT_LENGTH).is_some_and(|v| v.as_bytes() != b"0");
    if !has_body {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    match tokio::time::timeout(BODY_WAIT, axum::body::to_bytes(body, BODY_LIMIT)).await {
        Err(_) => AppError::BodyTimeout { seconds: BODY_WAIT.as_secs() }.into_response(),
        Ok(Err(e)) if is_too_large(&e) => AppError::PayloadTooLarge { limit: BODY_LIMIT }.into_response(),
        // The client broke off (or the connection did): say so, though it may not be listening.
        Ok(Err(_)) => AppError::MalformedJson("the request body broke off before its end".into()).into_response(),
        Ok(Ok(bytes)) => next.run(Request::from_parts(parts, axum::body::Body::from(bytes))).await,
    }
}

/// Whether reading a body failed because it was over the limit.
fn is_too_large(error: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if e.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = e.source();
    }
    false
}

/// `Json<T>` whose failures are [`AppError`]s: 400 malformed, 422 wrong shape, 413 too large,
/// 415 not JSON.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(match rejection {
                JsonRejection::JsonDataError(e) => AppError::InvalidBody(
                    e.body_text().replace("Failed to deserialize the JSON body into the target type: ", ""),
                ),
                JsonRejection::JsonSyntaxError(e) => {
                    AppError::MalformedJson(e.body_text().replace("Failed to parse the request body as JSON: ", ""))
                }
                JsonRejection::MissingJsonContentType(_) => AppError::UnsupportedMediaType,
                other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                    AppError::PayloadTooLarge { limit: BODY_LIMIT }
                }
                other => AppError::MalformedJson(other.body_text()),
            }),
        }
    }
}

/// The `{id}` of a job's route, as sent. A segment that is not even UTF-8 once decoded cannot
/// name a job: it gets the `404` of a job that does not exist, as a problem document (axum's
/// own rejection is plain text).
pub struct JobPath(pub String);

impl<S: Send + Sync> FromRequestParts<S> for JobPath {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<String>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(id)) => Ok(Self(id)),
            Err(_) => {
                let segment = parts.uri.path().trim_start_matches("/api/jobs/");
                let segment = segment.split('/').next().unwrap_or_default();
                Err(AppError::JobNotFound(segment.chars().take(64).collect()))
            }
        }
    }
}

/// `Query<T>` whose failures are [`AppError`]s (400, saying which parameter).
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state).await.map(|q| Self(q.0)).map_err(
            |e: QueryRejection| {
                AppError::InvalidQuery(e.body_text().replace("Failed to deserialize query string: ", ""))
            },
        )
    }
}

/// Turns axum's bare `405` for a route that does not take the request's method into a problem
/// document naming the methods it does take (from the `Allow` header axum computed from the
/// route itself, so no list is kept by hand).
pub async fn explain_wrong_method(request: Request, next: axum::middleware::Next) -> axum::response::Response {
    use axum::response::IntoResponse;
    // Every request passes here: the method is kept as it is (no allocation), and spelled out
    // only for a 405.
    let method = request.method().clone();
    let response = next.run(request).await;
    if response.status() != StatusCode::METHOD_NOT_ALLOWED {
        return response;
    }
    let method = method.to_string();
    let allowed = response
        .headers()
        .get(axum::http::header::ALLOW)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(',').map(str::trim).filter(|m| !m.is_empty()).collect::<Vec<_>>().join(", "))
        .unwrap_or_default();
    AppError::MethodNotAllowed { method, allowed }.into_response()
}
