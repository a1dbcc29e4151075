//! Jobs outlive the process: the real binary on a real SQLite file, killed with SIGKILL
//! mid-job or stopped with SIGTERM, then started again on the same file and port.

use crate::common;

use common::client::{assert_contiguous, drain, seq_of, Client};
use common::process::{sqlite_store, RedisProcess, ServerProcess};
use eventsource_stream::Eventsource;
use futures::StreamExt;
use serde_json::json;
use serde_json::Value;

#[tokio::test]
async fn a_killed_server_loses_nothing_it_showed_and_picks_up_where_it_was() {
    let dir = tempfile::tempdir().expect("a folder");
    killed_and_started_again(&sqlite_store(dir.path())).await;
}

#[tokio::test]
async fn on_redis_too_a_killed_server_loses_nothing_and_picks_up_where_it_was() {
    let redis = RedisProcess::start();
    killed_and_started_again(&redis.url).await;
}

async fn killed_and_started_again(store: &str) {
    let store = store.to_string();
    let server = ServerProcess::start(&store, 0).await;
    let port = server.port;
    let mut api = Client::new();

    // An ended job, a resumable one mid-way, one that cannot resume, and a browser's job.
    let done = api.start(&server, "ticker", json!({"steps": 3, "interval_ms": 10})).await;
    api.wait_for(&server, &done, "completed").await;
    let before: Vec<(String, String, String)> =
        drain(api.events(&server, &done, None).await).await.into_iter().map(|e| (e.id, e.event, e.data)).collect();
    let ticking = api.start(&server, "ticker", json!({"steps": 30, "interval_ms": 100})).await;
    let failing = api.start(&server, "failing", json!({"step_ms": 60000})).await;
    let browser = reqwest::Client::builder().cookie_store(true).build().expect("client");
    let page = browser.get(server.url("/jobs")).send().await.expect("a page");
    assert_eq!(page.status(), 200);
    let started = browser
        .post(server.url("/api/jobs"))
        .json(&json!({"kind": "ticker", "params": {"steps": 1, "interval_ms": 0}}))
        .send()
        .await
        .expect("request");
    let browser_job = started.json::<Value>().await.expect("json")["id"].as_str().expect("id").to_string();

    // A viewer follows the resumable job up to its fifth event, then the server dies.
    let mut live = api.events(&server, &ticking, None).await.bytes_stream().eventsource();
    let mut seen = Vec::new();
    while seen.last().map_or(0, seq_of) < 5 {
        let event = live.next().await.expect("an event").expect("valid");
        if !event.event.is_empty() {
            seen.push(event);
        }
    }
    server.kill().await;
    while let Some(Ok(event)) = live.next().await {
        if !event.event.is_empty() {
            seen.push(event);
        }
    }
    let last_seen = seq_of(seen.last().expect("events"));

    let server = ServerProcess::start(&store, port).await;
    // The ended job replays the identical events.
    let after: Vec<(String, String, String)> =
        drain(api.events(&server, &done, None).await).await.into_iter().map(|e| (e.id, e.event, e.data)).collect();
    assert_eq!(after, before, "same ids, same data");
    // The viewer reconnects with Last-Event-ID and misses nothing to the end.
    let rest = drain(api.events(&server, &ticking, Some(last_seen)).await).await;
    assert_contiguous(&rest, last_seen + 1);
    let last = rest.iter().rev().find(|e| e.event != "end").expect("events");
    assert_eq!(last.event, "completed");
    let state: Value = serde_json::from_str(&last.data).expect("json");
    assert_eq!(state["data"], json!({"ticks": 30}));
    assert!(rest.iter().any(|e| e.data.contains("Resumed after a server restart")), "it says it resumed");
    // The job that could not resume ended visibly, at its next number.
    let ended = api.wait_for(&server, &failing, "interrupted").await;
    assert!(ended["error"].as_str().expect("an error").contains("restarted"), "{ended}");
    // The API token and the browser's cookie still mean the same owner.
    assert_eq!(api.job(&server, &done).await.0, 200);
    let again = browser.get(server.url(&format!("/api/jobs/{browser_job}"))).send().await.expect("request");
    assert_eq!(again.status(), 200, "the cookie still owns its job");
    let stranger = reqwest::get(server.url(&format!("/api/jobs/{done}"))).await.expect("request");
    assert_eq!(stranger.status(), 404, "and nobody else does");
    let ready = reqwest::get(server.url("/readyz")).await.expect("request");
    assert_eq!(ready.status(), 200);
    server.terminate().await;
}

#[tokio::test]
async fn sigterm_is_a_deploy_resumable_jobs_continue_and_others_end_visibly() {
    let dir = tempfile::tempdir().expect("a folder");
    let store = sqlite_store(dir.path());
    let server = ServerProcess::start(&store, 0).await;
    let port = server.port;
    let mut api = Client::new();
    let checksum =
        api.start(&server, "checksum", json!({"size_mib": 64, "chunk_kib": 1024, "chunk_delay_ms": 30})).await;
    let failing = api.start(&server, "failing", json!({"step_ms": 60000})).await;
    let mut live = api.events(&server, &checksum, None).await.bytes_stream().eventsource();
    let mut seen = Vec::new();
    loop {
        let event = live.next().await.expect("an event").expect("valid");
        let mid_pass = event.data.contains("Hashed chunk 5 of");
        if !event.event.is_empty() {
            seen.push(event);
        }
        if mid_pass {
            break;
        }
    }
    assert_eq!(server.terminate().await, Some(0), "a clean exit");
    // The open stream was closed by the stop (the client reconnects elsewhere or later).
    while let Some(Ok(event)) = live.next().await {
        if !event.event.is_empty() {
            seen.push(event);
        }
    }
    assert!(seen.iter().all(|e| e.event != "end"), "the job did not end: it waits for the next start");
    let last_seen = seq_of(seen.last().expect("events"));

    let server = ServerProcess::start(&store, port).await;
    let rest = drain(api.events(&server, &checksum, Some(last_seen)).await).await;
    assert_contiguous(&rest, last_seen + 1);
    let last = rest.iter().rev().find(|e| e.event != "end").expect("events");
    assert_eq!(last.event, "completed", "{}", last.data);
    let result: Value = serde_json::from_str(&last.data).expect("json");
    assert_eq!(result["data"]["verified"], true);
    // Same data, same digest as a run that was never stopped.
    let whole = api.start(&server, "checksum", json!({"size_mib": 64, "chunk_kib": 1024, "chunk_delay_ms": 0})).await;
    let whole = api.wait_for(&server, &whole, "completed").await;
    assert_eq!(result["data"]["sha256"], whole["data"]["sha256"]);
    let ended = api.wait_for(&server, &failing, "interrupted").await;
    assert!(ended["error"].as_str().expect("an error").contains("stopped"), "{ended}");
    server.terminate().await;
}
