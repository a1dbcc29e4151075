//! The pages as a server renders them, over a real socket: the job page shows the job's
//! current state in its first HTML, unknown jobs get a 404 page, and the start form works as a
//! plain HTML form too.

use crate::common;

use std::time::Duration;

use common::TestApp;
use serde_json::json;

fn attribute(html: &str, name: &str) -> Option<String> {
    let start = html.find(&format!("{name}=\""))? + name.len() + 2;
    let end = html[start..].find('"')? + start;
    Some(html[start..end].to_string())
}

#[tokio::test]
async fn a_job_page_loaded_mid_job_renders_the_current_state_in_its_first_html() {
    let app = TestApp::spawn().await;
    let id = app.start("ticker", json!({"steps": 10, "interval_ms": 100})).await;
    let job_id = id.parse().expect("id");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while app.engine.snapshot(job_id).await.expect("the store answers").expect("kept").progress < 30.0 {
        assert!(tokio::time::Instant::now() < deadline, "the job never reached 30 % in 20 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let response = app.client.get(app.url(&format!("/jobs/{id}"))).send().await.expect("page");
    assert_eq!(response.status(), 200);
    let html = response.text().await.expect("html");
    let now: u32 = attribute(&html, "aria-valuenow").expect("a progress bar").parse().expect("a number");
    assert!(now >= 30, "the bar starts where the job is, not at 0: {now}");
    let text = attribute(&html, "aria-valuetext").expect("value text");
    assert!(text.starts_with(&format!("{now}%, step ")), "{text}");
    assert!(html.contains("Step ") && html.contains(" of 10: Tick "), "the step label is rendered");
    assert!(html.contains(">Running<"), "the status is rendered");
}

#[tokio::test]
async fn an_unknown_job_gets_a_no_such_job_page_with_status_404() {
    let app = TestApp::spawn().await;
    for path in ["/jobs/00000000-0000-4000-8000-000000000000", "/jobs/nonsense"] {
        let response = app.client.get(app.url(path)).send().await.expect("page");
        assert_eq!(response.status(), 404, "{path}");
        assert!(response.text().await.expect("html").contains("No such job"));
    }
}

#[tokio::test]
async fn the_start_form_works_as_a_plain_html_form() {
    let app = TestApp::spawn().await;
    let response = app
        .client
        .post(app.url("/api/start_job"))
        .header("accept", "text/html")
        .header("referer", app.url("/"))
        .form(&[("kind", "ticker")])
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), 302);
    let location = response.headers()["location"].to_str().expect("text").to_string();
    let id = location.strip_prefix("/jobs/").expect("a job page");
    let state =
        app.engine.snapshot(id.parse().expect("an id")).await.expect("the store answers").expect("the job exists");
    assert_eq!(state.kind, "ticker");

    let page = app.client.get(app.url(&location)).send().await.expect("page");
    assert_eq!(page.status(), 200);
}

#[tokio::test]
async fn starting_an_unknown_kind_says_which_kinds_exist() {
    let app = TestApp::spawn().await;
    let response = app.client.post(app.url("/api/start_job")).form(&[("kind", "nope")]).send().await.expect("post");
    assert_eq!(response.status(), 422, "bad input is never a 500");
    let body = response.text().await.expect("body");
    assert!(body.contains("unknown job kind \\\"nope\\\"") || body.contains("unknown job kind \"nope\""), "{body}");
    assert!(body.contains("checksum, discover, failing, ticker"), "{body}");
    assert_eq!(app.engine.job_count(), 0);
}

#[tokio::test]
async fn answers_are_compressed_for_clients_that_accept_it_but_event_streams_never() {
    let app = TestApp::spawn().await;
    let kinds =
        app.client.get(app.url("/api/job-kinds")).header("accept-encoding", "br, gzip").send().await.expect("request");
    assert_eq!(kinds.status(), 200);
    assert_eq!(kinds.headers().get("content-encoding").and_then(|v| v.to_str().ok()), Some("br"));
    let id = app.start("ticker", serde_json::json!({"steps": 2, "interval_ms": 10})).await;
    let stream = app
        .client
        .get(app.url(&format!("/api/jobs/{id}/events")))
        .header("accept-encoding", "br, gzip")
        .send()
        .await
        .expect("request");
    assert_eq!(stream.headers().get("content-type").and_then(|v| v.to_str().ok()), Some("text/event-stream"));
    assert!(stream.headers().get("content-encoding").is_none(), "a stream must never wait in an encoder");
}
