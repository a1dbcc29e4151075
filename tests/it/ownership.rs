//! Ownership over a real socket: a job is shown only to the owner who started it (cookie for
//! browsers, bearer token for other clients); anyone else gets the 404 of a job that does not
//! exist, on every endpoint; one owner cannot take all the server's slots.

use crate::common;

use common::TestApp;
use serde_json::{json, Value};
use sse_progress::jobs::EngineConfig;

fn browser() -> reqwest::Client {
    reqwest::Client::builder().cookie_store(true).build().expect("client")
}

#[tokio::test]
async fn another_owner_gets_404_on_every_view_of_a_job() {
    let app = TestApp::spawn().await;
    // The owner: a browser-like client with its cookie.
    let started = app
        .client
        .post(app.url("/api/jobs"))
        .json(&json!({"kind": "ticker", "params": {"steps": 50, "interval_ms": 100}}))
        .send()
        .await
        .expect("post");
    assert_eq!(started.status(), 202);
    let cookie = started.headers()["set-cookie"].to_str().expect("text").to_string();
    assert!(cookie.starts_with("sse_progress_owner="), "{cookie}");
    for attribute in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(cookie.contains(attribute), "{attribute} in {cookie}");
    }
    assert!(!cookie.contains("Secure"), "plain HTTP cannot carry a Secure cookie back: {cookie}");
    let id = started.json::<Value>().await.expect("json")["id"].as_str().expect("id").to_string();
    assert_eq!(app.client.get(app.url(&format!("/api/jobs/{id}"))).send().await.expect("get").status(), 200);

    // Someone else, with a cookie of their own.
    let other = browser();
    other.get(app.url("/")).send().await.expect("first visit gives a cookie");
    for path in [
        format!("/api/jobs/{id}"),
        format!("/api/jobs/{id}/result"),
        format!("/api/jobs/{id}/logs"),
        format!("/api/jobs/{id}/events"),
    ] {
        let response = other.get(app.url(&path)).send().await.expect("get");
        assert_eq!(response.status(), 404, "{path}");
        let body: Value = response.json().await.expect("json");
        assert_eq!(body["code"], "job_not_found", "the same answer as for no job at all");
    }
    let cancel = other.delete(app.url(&format!("/api/jobs/{id}"))).send().await.expect("delete");
    assert_eq!(cancel.status(), 404);
    let page = other.get(app.url(&format!("/jobs/{id}"))).send().await.expect("page");
    assert_eq!(page.status(), 404);
    assert!(page.text().await.expect("html").contains("No such job"));
    let state = app.engine.snapshot(id.parse().expect("id")).await.expect("the store answers").expect("kept");
    assert!(!state.status.is_terminal(), "the other owner could not cancel it");
}

#[tokio::test]
async fn api_clients_use_the_bearer_token_they_are_given() {
    let app = TestApp::spawn().await;
    let plain = reqwest::Client::new();
    let started = plain
        .post(app.url("/api/jobs"))
        .json(&json!({"kind": "ticker", "params": {"steps": 2, "interval_ms": 10}}))
        .send()
        .await
        .expect("post");
    let location = started.headers()["location"].to_str().expect("text").to_string();
    let body: Value = started.json().await.expect("json");
    let token = body["owner_token"].as_str().expect("a token for a client without credentials").to_string();
    assert_eq!(token.len(), 64);
    assert!(!location.contains(&token), "no secret in a URL");

    let with = plain.get(app.url(&location)).bearer_auth(&token).send().await.expect("get");
    assert_eq!(with.status(), 200);
    let without = plain.get(app.url(&location)).send().await.expect("get");
    assert_eq!(without.status(), 404);
    let other_token = "0".repeat(64);
    let wrong = plain.get(app.url(&location)).bearer_auth(&other_token).send().await.expect("get");
    assert_eq!(wrong.status(), 404);
    let malformed = plain.get(app.url(&location)).bearer_auth("let-me-in").send().await.expect("get");
    assert_eq!(malformed.status(), 401);
    let problem: Value = malformed.json().await.expect("json");
    assert_eq!(problem["code"], "bad_token");

    // A client that already has a token is not given another.
    let again = plain
        .post(app.url("/api/jobs"))
        .bearer_auth(&token)
        .json(&json!({"kind": "ticker"}))
        .send()
        .await
        .expect("post");
    assert_eq!(again.status(), 202);
    assert!(again.json::<Value>().await.expect("json").get("owner_token").is_none());
}

#[tokio::test]
async fn one_owner_cannot_take_every_slot() {
    let app = TestApp::spawn_with(EngineConfig { max_active_per_owner: 2, ..Default::default() }).await;
    let slow = json!({"kind": "ticker", "params": {"steps": 50, "interval_ms": 100}});
    for _ in 0..2 {
        let ok = app.client.post(app.url("/api/jobs")).json(&slow).send().await.expect("post");
        assert_eq!(ok.status(), 202);
    }
    let refused = app.client.post(app.url("/api/jobs")).json(&slow).send().await.expect("post");
    assert_eq!(refused.status(), 429);
    assert_eq!(refused.headers()["retry-after"], "5");
    let problem: Value = refused.json().await.expect("json");
    assert_eq!(problem["code"], "owner_limit");
    assert_eq!(
        problem["detail"],
        "you already have 2 jobs pending or running, the most one person may; wait for one to end or cancel one"
    );
    let someone_else = browser().post(app.url("/api/jobs")).json(&slow).send().await.expect("post");
    assert_eq!(someone_else.status(), 202, "the limit is per owner");
}

#[tokio::test]
async fn behind_a_tls_proxy_the_owner_cookie_is_secure() {
    let app = TestApp::spawn().await;
    let page =
        reqwest::Client::new().get(app.url("/")).header("X-Forwarded-Proto", "https").send().await.expect("page");
    assert_eq!(page.status(), 200);
    let cookie = page.headers()["set-cookie"].to_str().expect("text").to_string();
    for attribute in ["HttpOnly", "SameSite=Lax", "Secure"] {
        assert!(cookie.contains(attribute), "{attribute} in {cookie}");
    }
}

#[tokio::test]
async fn a_stranger_learns_nothing_of_a_job_from_cursors_metrics_errors_or_server_functions() {
    let app = TestApp::spawn().await;
    let slow = json!({"kind": "ticker", "params": {"steps": 6, "interval_ms": 40}});
    let started = app.client.post(app.url("/api/jobs")).json(&slow).send().await.expect("post");
    let cookie = started.headers()["set-cookie"].to_str().expect("text").to_string();
    let token = cookie.split(';').next().and_then(|c| c.split_once('=')).expect("name=value").1.to_string();
    let id = started.json::<Value>().await.expect("json")["id"].as_str().expect("id").to_string();

    // The stranger names the owner's job as a resume point on their own stream of all jobs:
    // it is not followed. Their own job, started once the stream is open, is.
    let stranger = browser();
    stranger.get(app.url("/")).send().await.expect("a cookie of their own");
    let stream = stranger.get(app.url(&format!("/api/events?after={id}:0"))).send().await.expect("get");
    assert_eq!(stream.status(), 200);
    let theirs = stranger.post(app.url("/api/jobs")).json(&slow).send().await.expect("post");
    let theirs = theirs.json::<Value>().await.expect("json")["id"].as_str().expect("id").to_string();
    let mut events = eventsource_stream::Eventsource::eventsource(stream.bytes_stream());
    let mut seen = Vec::new();
    while !seen.iter().any(|e: &eventsource_stream::Event| e.event == "end") {
        let next = tokio::time::timeout(std::time::Duration::from_secs(20), futures::StreamExt::next(&mut events));
        let event = next.await.expect("an event within 20 s").expect("open").expect("valid SSE");
        if !event.data.is_empty() {
            seen.push(event);
        }
    }
    assert!(seen.iter().all(|e| e.id.starts_with(&theirs) && !e.data.contains(&id)), "only their own job: {seen:?}");

    // Every error is the one for a job that never existed, word for word.
    let nobody = "00000000-0000-4000-8000-000000000000";
    for (method, path) in [
        ("GET", "/api/jobs/ID"),
        ("GET", "/api/jobs/ID/result"),
        ("GET", "/api/jobs/ID/logs"),
        ("GET", "/api/jobs/ID/events"),
        ("DELETE", "/api/jobs/ID"),
    ] {
        let ask = |job: &str| {
            let url = app.url(&path.replace("ID", job));
            let request = if method == "GET" { stranger.get(url) } else { stranger.delete(url) };
            async move {
                let response = request.send().await.expect("send");
                (response.status(), response.text().await.expect("text"))
            }
        };
        let (theirs_status, theirs_body) = ask(&id).await;
        let (none_status, none_body) = ask(nobody).await;
        assert_eq!(theirs_status, none_status, "{method} {path}");
        assert_eq!(theirs_body.replace(&id, nobody), none_body, "{method} {path}");
    }
    // The page's server function says there is no such job.
    let snapshot = stranger.post(app.url("/api/job_snapshot")).form(&[("id", id.as_str())]).send().await.expect("post");
    assert_eq!(snapshot.status(), 200);
    assert_eq!(snapshot.text().await.expect("text"), "null");

    // /metrics, open to anyone, names no job and no owner.
    let metrics = stranger.get(app.url("/metrics")).send().await.expect("get").text().await.expect("text");
    assert!(metrics.contains("sse_progress_jobs"), "{metrics}");
    let digest = <sha2::Sha256 as sha2::Digest>::digest(token.as_bytes());
    let key: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    for secret in [&id, &theirs, &token, &key] {
        assert!(!metrics.contains(secret.as_str()), "/metrics shows {secret}");
    }
}
