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
use axum_extra::extract::CookieJar;
use axum_extra::headers::authorization::Bearer;
use axum_extra::headers::{Authorization, HeaderMapExt};
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

/// The owner a request's headers name: its bearer token (refused when it is not of the shape
/// this server gives), else its owner cookie (ignored when malformed), else a new owner.
pub fn owner_of(headers: &axum::http::HeaderMap) -> Result<Owner, AppError> {
    match headers.typed_get::<Authorization<Bearer>>() {
        Some(bearer) if well_formed(bearer.token()) => Ok(Owner::with_token(bearer.token().to_string(), false)),
        Some(_) => Err(AppError::BadToken),
        None => Ok(match CookieJar::from_headers(headers).get(COOKIE).map(|c| c.value()).filter(|t| well_formed(t)) {
            Some(token) => Owner::with_token(token.to_string(), false),
            None => Owner::fresh(),
        }),
    }
}

/// Finds (or makes) the request's owner, puts it in the request's extensions for handlers and
/// server functions, and gives a new browser its cookie.
pub async fn identify(mut request: Request, next: Next) -> Response {
    // Probes of load balancers and orchestrators own nothing and get no cookie.
    if matches!(request.uri().path(), "/healthz" | "/readyz" | "/metrics") {
        return next.run(request).await;
    }
    let owner = match owner_of(request.headers()) {
        Ok(owner) => owner,
        Err(refused) => return refused.into_response(),
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

/// `Ok` when `owner` may see job `id`; the same 404 as for a job that does not exist otherwise,
/// and a 503 when the store cannot tell. Jobs started without an owner (by the engine's own
/// callers) are visible to all.
pub async fn authorize(engine: &JobEngine, owner: &Owner, id: JobId) -> Result<(), AppError> {
    match engine.owner_of(id).await? {
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
    fn the_owner_is_the_bearer_token_else_the_cookie_else_new() {
        let token = "0123456789abcdef".repeat(4);
        let headers = |pairs: &[(header::HeaderName, String)]| {
            let mut headers = axum::http::HeaderMap::new();
            for (name, value) in pairs {
                headers.append(name, HeaderValue::from_str(value).expect("header"));
            }
            headers
        };
        let cookie = (header::COOKIE, format!("a=1; {COOKIE}={token}; b=2"));
        let from_cookie = owner_of(&headers(std::slice::from_ref(&cookie))).expect("an owner");
        assert_eq!((&*from_cookie.token, from_cookie.is_new), (token.as_str(), false));
        let other = "f".repeat(64);
        let bearer = (header::AUTHORIZATION, format!("Bearer {other}"));
        assert_eq!(&*owner_of(&headers(&[cookie.clone(), bearer])).expect("an owner").token, other, "bearer wins");
        let bad = (header::AUTHORIZATION, "Bearer let-me-in".to_string());
        assert!(matches!(owner_of(&headers(&[bad])), Err(AppError::BadToken)));
        let malformed_cookie = (header::COOKIE, format!("{COOKIE}=ABC"));
        assert!(owner_of(&headers(&[malformed_cookie])).expect("an owner").is_new);
        assert!(owner_of(&headers(&[])).expect("an owner").is_new);
    }
}
