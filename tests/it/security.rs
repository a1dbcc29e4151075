//! Security over a real socket: pages carry a Content-Security-Policy whose nonce is the one on
//! their scripts, every response carries the basic security headers, and requests from other
//! sites cannot start or cancel jobs.

use crate::common;

use common::TestApp;
use serde_json::{json, Value};

fn header(response: &reqwest::Response, name: &str) -> String {
    response.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string()
}

#[tokio::test]
async fn pages_carry_a_csp_whose_nonce_is_on_their_scripts_and_every_response_the_basic_headers() {
    let app = TestApp::spawn().await;
    let page = app.client.get(app.url("/")).send().await.expect("page");
    let csp = header(&page, "content-security-policy");
    assert_eq!(header(&page, "x-content-type-options"), "nosniff");
    assert_eq!(header(&page, "referrer-policy"), "same-origin");
    let html = page.text().await.expect("html");
    let nonce = csp.split("'nonce-").nth(1).and_then(|rest| rest.split('\'').next()).expect("a nonce in the policy");
    assert!(nonce.len() >= 16, "a real nonce: {nonce}");
    assert!(html.contains(&format!("<script type=\"module\" nonce=\"{nonce}\">")), "the hydration script carries it");
    assert!(csp.contains("default-src 'self'") && csp.contains("frame-ancestors 'none'"), "{csp}");
    let scripts = csp.split(';').map(str::trim).find(|d| d.starts_with("script-src")).expect("a script-src");
    assert!(!scripts.contains("'unsafe-inline'"), "no inline scripts without the nonce: {scripts}");
    assert!(scripts.contains(&format!("'nonce-{nonce}'")), "{scripts}");

    let again = app.client.get(app.url("/")).send().await.expect("page");
    let again = header(&again, "content-security-policy");
    let second = again.split("'nonce-").nth(1).and_then(|rest| rest.split('\'').next()).expect("a nonce again");
    assert_ne!(second, nonce, "a new nonce per response");

    // A page that does not exist is rendered by the same app, with its own nonce.
    let missing = app.client.get(app.url("/no/such/page")).send().await.expect("page");
    assert_eq!(missing.status(), 404);
    let csp = header(&missing, "content-security-policy");
    let html = missing.text().await.expect("html");
    let nonce = csp.split("'nonce-").nth(1).and_then(|rest| rest.split('\'').next()).expect("a nonce in the policy");
    assert!(html.contains(&format!("nonce=\"{nonce}\"")), "the 404 page's scripts carry it");

    let api = app.client.get(app.url("/api/job-kinds")).send().await.expect("api");
    assert_eq!(header(&api, "x-content-type-options"), "nosniff");
    assert_eq!(header(&api, "referrer-policy"), "same-origin");
}

#[tokio::test]
async fn other_sites_cannot_start_or_cancel_jobs() {
    let app = TestApp::spawn().await;
    let body = json!({"kind": "ticker", "params": {"steps": 50, "interval_ms": 100}});
    let host = app.addr.to_string();

    let cross = app
        .client
        .post(app.url("/api/jobs"))
        .header("sec-fetch-site", "cross-site")
        .json(&body)
        .send()
        .await
        .expect("post");
    assert_eq!(cross.status(), 403);
    assert_eq!(header(&cross, "content-type"), "application/problem+json");
    let problem: Value = cross.json().await.expect("json");
    assert_eq!(problem["code"], "cross_site_request");
    assert!(problem["detail"].as_str().expect("text").contains("Sec-Fetch-Site: cross-site"));

    let foreign = app
        .client
        .post(app.url("/api/jobs"))
        .header("origin", "https://evil.example")
        .json(&body)
        .send()
        .await
        .expect("post");
    assert_eq!(foreign.status(), 403);
    let form = app
        .client
        .post(app.url("/api/start_job"))
        .header("origin", "https://evil.example")
        .form(&[("kind", "ticker")])
        .send()
        .await
        .expect("post");
    assert_eq!(form.status(), 403, "the server function refuses too");
    assert_eq!(app.engine.job_count(), 0, "nothing was started");

    // The site's own pages may.
    let own = app
        .client
        .post(app.url("/api/jobs"))
        .header("origin", format!("http://{host}"))
        .header("sec-fetch-site", "same-origin")
        .json(&body)
        .send()
        .await
        .expect("post");
    assert_eq!(own.status(), 202);
    let id = own.json::<Value>().await.expect("json")["id"].as_str().expect("id").to_string();

    let cancel = app
        .client
        .delete(app.url(&format!("/api/jobs/{id}")))
        .header("sec-fetch-site", "cross-site")
        .send()
        .await
        .expect("delete");
    assert_eq!(cancel.status(), 403);
    let state = app.engine.snapshot(id.parse().expect("id")).await.expect("the store answers").expect("kept");
    assert!(!state.status.is_terminal(), "the job goes on");
    // Reading is not changing: a cross-site GET is answered (CORS keeps its body from other pages).
    let read = app
        .client
        .get(app.url(&format!("/api/jobs/{id}")))
        .header("sec-fetch-site", "cross-site")
        .send()
        .await
        .expect("get");
    assert_eq!(read.status(), 200);
}
