//! Who is asking: every request has an owner, and a job is shown only to the owner who
//! started it (anyone else gets the same 404 as for a job that never existed, so ids cannot
//! be probed).
//!
//! Browsers are told their owner token once, in an `HttpOnly`, `SameSite=Lax` cookie (also
//! `Secure` when a TLS-terminating proxy says the browser came over HTTPS), on their first
//! request; no login is needed. Other clients send it as `Authorization: Bearer TOKEN`;
//! a client that sends neither gets a fresh token in the answer to `POST /api/jobs`
//! (`owner_token`). A token is 256 bits from the system's random source (two UUID v4s, 244
//! random bits) and never travels in a URL.

use std::sync::Arc;

use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use super::AppError;
use crate::jobs::JobEngine;
use crate::model::JobId;

/// The cookie that carries a browser's owner token.
pub const COOKIE: &str = "sse_progress_owner";
/// How long a browser keeps its owner cookie: a year.
const COOKIE_MAX_AGE_SECS: u32 = 365 * 24 * 3600;

/// The owner of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    /// The owner's token: the secret the client holds.
    pub token: Arc<str>,
    /// The owner's identity as the job engine knows it and the store keeps it: the SHA-256 of
    /// the token, so that a leaked database lets nobody act as an owner.
    pub key: Arc<str>,
    /// Whether the token was made for this request (the client sent none).
    pub is_new: bool,
}

impl Owner {
    fn with_token(token: String, is_new: bool) -> Self {
        let key = crate::jobs::kinds::hex(&Sha256::digest(token.as_bytes()));
        Self { token: token.into(), key: key.into(), is_new }
    }

    fn fresh() -> Self {
        Self::with_token(format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple()), true)
    }
}

/// Whether `text` has the shape of a token this server gives.
fn well_formed(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

fn from_cookie(parts_headers: &axum::http::HeaderMap) -> Option<String> {
    parts_headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_string())
}

/// Finds (or makes) the request's owner, puts it in the request's extensions for handlers and
/// server functions, and gives a new browser its cookie.
pub async fn identify(mut request: Request, next: Next) -> Response {
    // Probes of load balancers and orchestrators own nothing and get no cookie.
    if matches!(request.uri().path(), "/healthz" | "/readyz" | "/metrics") {
        return next.run(request).await;
    }
    let bearer = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| t.trim().to_string());
    let owner = match bearer {
        Some(token) if well_formed(&token) => Owner::with_token(token, false),
        Some(_) => {
            return AppError::BadToken.into_response();
        }
        None => match from_cookie(request.headers()).filter(|t| well_formed(t)) {
            Some(token) => Owner::with_token(token, false),
            None => Owner::fresh(),
        },
    };
    request.extensions_mut().insert(owner.clone());
    let secure = over_https(request.headers());
    let mut response = next.run(request).await;
    if owner.is_new {
        let cookie = format!(
            "{COOKIE}={}; Path=/; Max-Age={COOKIE_MAX_AGE_SECS}; HttpOnly; SameSite=Lax{}",
            owner.token,
            if secure { "; Secure" } else { "" }
        );
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
    response
}

/// Whether the browser reached us over HTTPS through a proxy that terminates TLS and says so
/// (`X-Forwarded-Proto: https` or `Forwarded: proto=https`). The cookie is then `Secure`, so it
/// never travels over plain HTTP. The server itself speaks plain HTTP; a forged header can only
/// make the forger's own cookie stricter.
fn over_https(headers: &axum::http::HeaderMap) -> bool {
    let said = |name: &str| headers.get_all(name).iter().filter_map(|v| v.to_str().ok()).collect::<Vec<_>>();
    let forwarded_proto = said("x-forwarded-proto")
        .into_iter()
        .flat_map(|v| v.split(','))
        .next()
        .is_some_and(|first| first.trim().eq_ignore_ascii_case("https"));
    // RFC 7239: the first element is the hop nearest the browser.
    let forwarded = said("forwarded").into_iter().flat_map(|v| v.split(',')).next().is_some_and(|hop| {
        hop.split(';').any(|pair| {
            pair.split_once('=').is_some_and(|(k, v)| {
                k.trim().eq_ignore_ascii_case("proto") && v.trim().trim_matches('"').eq_ignore_ascii_case("https")
            })
        })
    });
    forwarded_proto || forwarded
}

impl<S: Send + Sync> FromRequestParts<S> for Owner {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        // `identify` runs on every route; a request that skipped it owns nothing.
        Ok(parts.extensions.get::<Owner>().cloned().unwrap_or_else(Owner::fresh))
    }
}

/// `Ok` when `owner` may see job `id`; the same 404 as for a job that does not exist otherwise.
/// Jobs started without an owner (by the engine's own callers) are visible to all.
pub async fn authorize(engine: &JobEngine, owner: &Owner, id: JobId) -> Result<(), AppError> {
    match engine.owner_of(id).await {
        Some(None) => Ok(()),
        Some(Some(o)) if *o == *owner.key => Ok(()),
        _ => Err(AppError::JobNotFound(id.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_long_random_lower_hex() {
        let a = Owner::fresh();
        let b = Owner::fresh();
        assert!(well_formed(&a.token), "{}", a.token);
        assert_ne!(a.token, b.token);
        assert_ne!(a.key, a.token, "the engine never sees the token itself");
        assert_eq!(Owner::with_token(a.token.to_string(), false).key, a.key, "the same token is the same owner");
        assert!(!well_formed("abc"));
        assert!(!well_formed(&a.token.to_uppercase()));
    }

    #[test]
    fn https_is_recognised_from_either_proxy_header() {
        let with = |name: &'static str, value: &'static str| {
            let mut headers = axum::http::HeaderMap::new();
            headers.insert(name, HeaderValue::from_static(value));
            over_https(&headers)
        };
        assert!(with("x-forwarded-proto", "https"));
        assert!(with("x-forwarded-proto", "HTTPS, http"));
        assert!(!with("x-forwarded-proto", "http"));
        assert!(with("forwarded", "for=192.0.2.60;proto=https;by=203.0.113.43"));
        assert!(with("forwarded", "proto=\"https\", proto=http"));
        assert!(!with("forwarded", "for=192.0.2.60;proto=http"));
        assert!(!over_https(&axum::http::HeaderMap::new()));
    }

    #[test]
    fn the_owner_cookie_is_found_among_others() {
        let mut headers = axum::http::HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_static("a=1; sse_progress_owner=xyz; b=2"));
        assert_eq!(from_cookie(&headers).as_deref(), Some("xyz"));
    }
}
