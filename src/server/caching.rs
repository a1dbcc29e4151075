//! How long browsers keep what the server sends. The release build names the wasm, JS and CSS
//! after their content (`/pkg/sse-progress.<hash>.wasm`), so a name never changes meaning: those
//! are cached for a year and never revalidated. Everything else a browser caches (pages, other
//! static files) must be revalidated on each use, so a new release shows at once. Answers that
//! set their own `Cache-Control` (the API's, the streams') keep it.

use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::Response;

/// For content-named files.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// For everything else: keep it, but ask the server first (a 304 when it did not change).
const REVALIDATE: &str = "no-cache";

/// Whether `path` names a file after its content: `/pkg/NAME.HASH.EXT`, with a hash of at least
/// 8 letters, digits, `-` or `_`.
pub fn content_named(path: &str) -> bool {
    let Some(file) = path.strip_prefix("/pkg/").filter(|f| !f.contains('/')) else { return false };
    let parts: Vec<&str> = file.split('.').collect();
    parts.len() >= 3
        && parts[parts.len() - 2].len() >= 8
        && parts[parts.len() - 2].bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Sets `Cache-Control` on successful answers that have none.
pub async fn cache_control(request: Request, next: Next) -> Response {
    let immutable = content_named(request.uri().path());
    let mut response = next.run(request).await;
    if response.status() != StatusCode::OK && response.status() != StatusCode::NOT_MODIFIED {
        return response;
    }
    let value = if immutable { IMMUTABLE } else { REVALIDATE };
    response.headers_mut().entry(header::CACHE_CONTROL).or_insert(HeaderValue::from_static(value));
    response
}

#[cfg(test)]
mod tests {
    use super::content_named;

    #[test]
    fn only_files_named_after_their_content_are_immutable() {
        assert!(content_named("/pkg/sse-progress.Hk3xQ9_a-b2Zc.wasm"));
        assert!(content_named("/pkg/sse-progress.0a1b2c3d4e5f.css"));
        assert!(!content_named("/pkg/sse-progress.wasm"), "no hash");
        assert!(!content_named("/pkg/sse-progress.short.js"), "too short to be a hash");
        assert!(!content_named("/pkg/snippets/x/inline0.js"), "below /pkg/");
        assert!(!content_named("/favicon.ico"));
        assert!(!content_named("/jobs/sse-progress.0a1b2c3d4e5f.css"), "not a static file");
    }
}
