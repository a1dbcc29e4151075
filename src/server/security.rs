//! Defences every response and every state-changing request goes through: security headers,
//! a Content-Security-Policy for pages (with the per-response nonce Leptos puts on its
//! scripts), and the refusal of cross-site requests that would start or cancel jobs.

use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppError;

/// The page's Content-Security-Policy: only this origin's scripts (and the inline ones that
/// carry `nonce`), wasm allowed to compile, styles from this origin plus `style="..."`
/// attributes (the progress bars' widths), connections only back to this origin.
pub fn content_security_policy(nonce: &str) -> String {
    format!(
        "default-src 'self'; script-src 'self' 'nonce-{nonce}' 'wasm-unsafe-eval'; \
         style-src 'self'; style-src-attr 'unsafe-inline'; img-src 'self' data:; \
         connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
         frame-ancestors 'none'"
    )
}

/// Gives the page being rendered its Content-Security-Policy, with the nonce Leptos made for
/// this response (and puts on its inline scripts). Runs in every page render's context.
pub fn page_policy() {
    use leptos::prelude::use_context;
    let (Some(nonce), Some(response)) = (leptos::nonce::use_nonce(), use_context::<leptos_axum::ResponseOptions>())
    else {
        return;
    };
    if let Ok(policy) = HeaderValue::from_str(&content_security_policy(&nonce)) {
        response.insert_header(header::CONTENT_SECURITY_POLICY, policy);
    }
}

/// The headers every response carries, unless it set them itself: no MIME sniffing, no
/// cross-origin referrers.
pub fn static_headers<S>(router: axum::Router<S>) -> axum::Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    use tower_http::set_header::SetResponseHeaderLayer;
    router
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(header::REFERRER_POLICY, HeaderValue::from_static("same-origin")))
}

/// Why a request counts as cross-site, or `None` when it may go on.
///
/// Browsers say where a request comes from in `Sec-Fetch-Site` (all current ones) and `Origin`
/// (on every POST and DELETE). A request with neither is not from a browser page (`curl`, a
/// script) and carries no ambient browser credentials, so it may go on.
pub fn cross_site_reason(headers: &HeaderMap) -> Option<String> {
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        return match site {
            "same-origin" | "none" => None,
            other => Some(format!("it came from another site (Sec-Fetch-Site: {other})")),
        };
    }
    let origin = headers.get(header::ORIGIN)?.to_str().unwrap_or_default();
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let origin_host = origin.split_once("://").map_or("", |(_, rest)| rest);
    if !host.is_empty() && origin_host.eq_ignore_ascii_case(host) {
        None
    } else {
        Some(format!("its Origin ({origin}) is not this site (http://{host})"))
    }
}

/// Refuses state-changing requests (POST, PUT, PATCH, DELETE) that come from another site,
/// so no other page can start or cancel jobs in a visitor's name.
pub async fn refuse_cross_site(request: Request, next: Next) -> Response {
    let changes_state = !matches!(*request.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if changes_state {
        if let Some(reason) = cross_site_reason(request.headers()) {
            tracing::warn!(method = %request.method(), path = %request.uri().path(), %reason, "cross-site request refused");
            return AppError::CrossSite(reason).into_response();
        }
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs.iter().map(|(k, v)| (header::HeaderName::from_static(k), HeaderValue::from_static(v))).collect()
    }

    #[test]
    fn same_origin_and_non_browser_requests_pass_cross_site_ones_do_not() {
        assert_eq!(cross_site_reason(&headers(&[("sec-fetch-site", "same-origin")])), None);
        assert_eq!(cross_site_reason(&headers(&[])), None, "curl sends neither header");
        assert_eq!(
            cross_site_reason(&headers(&[("origin", "http://127.0.0.1:3000"), ("host", "127.0.0.1:3000")])),
            None
        );
        assert!(cross_site_reason(&headers(&[("sec-fetch-site", "cross-site")])).is_some());
        assert!(cross_site_reason(&headers(&[("sec-fetch-site", "same-site")])).is_some());
        let reason = cross_site_reason(&headers(&[("origin", "https://evil.example"), ("host", "127.0.0.1:3000")]));
        assert_eq!(
            reason.as_deref(),
            Some("its Origin (https://evil.example) is not this site (http://127.0.0.1:3000)")
        );
        assert!(cross_site_reason(&headers(&[("origin", "null"), ("host", "a")])).is_some());
    }
}
