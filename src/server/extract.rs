//! Extractors whose rejections are problem documents that say what was wrong, and the 405
//! fallback that does the same for a wrong method.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode};
use serde::de::DeserializeOwned;

use super::AppError;

/// Largest request body the API reads.
/// How a sequence number is written where a client sends one (`Last-Event-ID`, `after`):
/// 1 to 19 ASCII digits, so it always fits the 64 bits it is kept in. The OpenAPI document
/// says the same with this pattern.
pub const SEQ_PATTERN: &str = "[0-9]{1,19}";

/// A sequence number written as [`SEQ_PATTERN`] says; nothing else (no sign, no spaces).
pub fn parse_seq(text: &str) -> Option<u64> {
    let fits = (1..=19).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_digit());
    fits.then(|| text.parse().ok()).flatten()
}

pub const BODY_LIMIT: usize = 64 * 1024;

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

/// A fallback for a route's other methods: `405` with a problem document naming the methods
/// the route takes (`allowed`, e.g. `"GET, HEAD"`), also in the `Allow` header.
pub fn only(allowed: &'static str) -> impl Fn(Method) -> std::future::Ready<AppError> + Clone + Send + Sync + 'static {
    move |method: Method| {
        std::future::ready(AppError::MethodNotAllowed { method: method.to_string(), allowed: allowed.to_string() })
    }
}
