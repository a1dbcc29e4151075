//! Extractors whose rejections are problem documents that say what was wrong, and the
//! middleware that turns axum's bare 405s into the same.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;

use super::AppError;

/// Largest request body the API reads.
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
                JsonRejection::JsonDataError(e) => AppError::InvalidBody(e.body_text().replace(
                    "Failed to deserialize the JSON body into the target type: ",
                    "",
                )),
                JsonRejection::JsonSyntaxError(e) => AppError::MalformedJson(
                    e.body_text().replace("Failed to parse the request body as JSON: ", ""),
                ),
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
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Self(q.0))
            .map_err(|e: QueryRejection| {
                AppError::InvalidQuery(e.body_text().replace("Failed to deserialize query string: ", ""))
            })
    }
}

/// Turns axum's empty 405 answers into problem documents that name the allowed methods.
pub async fn explain_method_not_allowed(request: Request, next: Next) -> Response {
    let method = request.method().to_string();
    let response = next.run(request).await;
    if response.status() != StatusCode::METHOD_NOT_ALLOWED
        || response.headers().get(header::CONTENT_TYPE).is_some()
    {
        return response;
    }
    let allowed = response
        .headers()
        .get(header::ALLOW)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    AppError::MethodNotAllowed { method, allowed }.into_response()
}
