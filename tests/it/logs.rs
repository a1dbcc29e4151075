//! What a job's code logs with `tracing` reaches that job's viewers, over a real socket: from
//! nested functions, across `.await`, from blocking work, in order, with sequence numbers,
//! never another job's; within the per-job bounds; and again after a reconnect.
//!
//! Each test installs the engine's log layer as its thread's subscriber before any job starts;
//! `#[tokio::test]` runs the server and the jobs on that thread, and blocking work carries the
//! subscriber along. (They live apart from tests without a subscriber: `tracing` caches a
//! callsite's interest process-wide, and a callsite first hit on a thread without one can stay
//! disabled for the others.)

use crate::common;

use std::time::Duration;

use common::{cli, data, names, read_events, TestApp};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sse_progress::jobs::{kinds, EngineConfig, JobError, JobParams, ProgressReporter};
use tracing_subscriber::layer::SubscriberExt;

#[derive(Debug, Default, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(default)]
struct Chatty {
    lines: u32,
    tag: String,
}
impl JobParams for Chatty {}

async fn nested(tag: &str) {
    tokio::time::sleep(Duration::from_millis(5)).await;
    tracing::info!(tag, "from a nested function after an await");
}

async fn chatty(p: Chatty, r: ProgressReporter) -> Result<(), JobError> {
    tracing::info!(tag = %p.tag, "starting");
    nested(&p.tag).await;
    let tag = p.tag.clone();
    r.spawn_blocking(move || tracing::warn!(tag = %tag, "from the blocking pool"))
        .await
        .map_err(|e| JobError::msg(e.to_string()))?;
    for i in 0..p.lines {
        tracing::info!(i, tag = %p.tag, "line");
        tracing::debug!(i, "below INFO: never routed");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    tracing::error!(tag = %p.tag, "an error-level line");
    Ok(())
}

async fn app_with(config: EngineConfig) -> TestApp {
    let mut registry = kinds::builtin();
    registry.register("chatty", "logs a lot", chatty);
    TestApp::spawn_with_kinds(config, registry).await
}

fn log_lines(events: &[eventsource_stream::Event]) -> Vec<Value> {
    events.iter().filter(|e| e.event == "log").map(data).collect()
}

#[tokio::test]
async fn lines_from_nested_code_and_blocking_work_reach_only_their_own_job_in_order() {
    let app = app_with(EngineConfig::default()).await;
    let _subscriber = tracing::subscriber::set_default(tracing_subscriber::registry().with(app.engine.log_layer()));
    let a = app.start("chatty", json!({"lines": 3, "tag": "A"})).await;
    let b = app.start("chatty", json!({"lines": 3, "tag": "B"})).await;
    let (events_a, events_b) =
        tokio::join!(async { read_events(app.events(&a, None, "").await, usize::MAX).await.0 }, async {
            read_events(app.events(&b, None, "").await, usize::MAX).await.0
        },);
    for (events, tag) in [(&events_a, "A"), (&events_b, "B")] {
        let lines = log_lines(events);
        let messages: Vec<&str> = lines.iter().map(|l| l["message"].as_str().expect("message")).collect();
        assert_eq!(
            messages,
            [
                "starting",
                "from a nested function after an await",
                "from the blocking pool",
                "line",
                "line",
                "line",
                "an error-level line"
            ],
            "job {tag}"
        );
        assert!(lines.iter().all(|l| l["fields"]["tag"] == tag), "no other job's lines in {tag}: {lines:?}");
        let levels: Vec<&str> = lines.iter().map(|l| l["level"].as_str().expect("level")).collect();
        assert_eq!((levels[2], levels[6]), ("warn", "error"));
        assert_eq!(lines[3]["fields"]["i"], 0);
        assert!(lines.iter().all(|l| l["ts"].as_u64().expect("ts") > 0 && l["target"] == module_path!()));
        // Log lines and state changes share one sequence: 1, 2, 3 ... with no gap.
        let ids: Vec<u64> = events.iter().filter(|e| e.event != "end").map(|e| e.id.parse().expect("id")).collect();
        assert_eq!(ids, (1..=ids.len() as u64).collect::<Vec<_>>());
        for (event, line) in events.iter().filter(|e| e.event == "log").zip(&lines) {
            assert_eq!(line["seq"].to_string(), event.id);
        }
    }
    // What the engine itself logs (outside the job's span) is not a job's line.
    let all: Vec<Value> = log_lines(&events_a).into_iter().chain(log_lines(&events_b)).collect();
    assert!(all.iter().all(|l| l["message"] != "job started" && l["message"] != "job completed"));
}

#[tokio::test]
async fn a_chatty_job_is_bounded_and_its_viewers_are_told_how_many_lines_were_dropped() {
    let app = app_with(EngineConfig { max_log_lines: 5, ..Default::default() }).await;
    let _subscriber = tracing::subscriber::set_default(tracing_subscriber::registry().with(app.engine.log_layer()));
    let id = app.start("chatty", json!({"lines": 50, "tag": "X"})).await;
    let (events, _) = read_events(app.events(&id, None, "").await, usize::MAX).await;
    assert_eq!(log_lines(&events).len(), 5, "only the first five lines are kept");
    let last = data(&events[events.len() - 2]);
    assert_eq!(last["status"], "completed");
    assert_eq!(last["logs_dropped"], 54 - 5, "viewers are told how many were dropped");
    assert!(
        events.iter().filter(|e| e.event == "progress").any(|e| data(e)["logs_dropped"].as_u64() > Some(0)),
        "the first drop is told while the job runs"
    );

    let logs: Value =
        app.client.get(app.url(&format!("/api/jobs/{id}/logs"))).send().await.expect("get").json().await.expect("json");
    assert_eq!(logs["dropped"], 49);
    assert_eq!(logs["lines"].as_array().expect("lines").len(), 5);
}

#[tokio::test]
async fn a_reconnecting_viewer_gets_the_lines_it_missed_and_the_rest_api_offers_them_too() {
    let app = app_with(EngineConfig::default()).await;
    let _subscriber = tracing::subscriber::set_default(tracing_subscriber::registry().with(app.engine.log_layer()));
    let id = app.start("chatty", json!({"lines": 20, "tag": "R"})).await;
    let (first, _) = read_events(app.events(&id, None, "").await, 6).await;
    let seen = first.last().expect("events").id.clone();
    tokio::time::sleep(Duration::from_millis(80)).await; // lines are logged while nobody listens
    let (rest, _) = read_events(app.events(&id, Some(&seen), "").await, usize::MAX).await;
    assert_eq!(names(&rest).last(), Some(&"end"));
    let mut all = first.clone();
    all.extend(rest);
    let lines = log_lines(&all);
    assert_eq!(lines.len(), 24, "every line once: {}", lines.len());
    let ids: Vec<u64> = all.iter().filter(|e| e.event != "end").map(|e| e.id.parse().expect("id")).collect();
    assert_eq!(ids, (1..=ids.len() as u64).collect::<Vec<_>>(), "no gap, no duplicate");

    let third: u64 = lines[2]["seq"].as_u64().expect("seq");
    let logs: Value = app
        .client
        .get(app.url(&format!("/api/jobs/{id}/logs?after={third}")))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    let rest_lines = logs["lines"].as_array().expect("lines");
    assert_eq!(rest_lines.len(), 21);
    assert_eq!(rest_lines[0], lines[3]);
    assert_eq!(logs["next_after"], lines[23]["seq"]);
    let bad = app.client.get(app.url(&format!("/api/jobs/{id}/logs?after=soon"))).send().await.expect("get");
    assert_eq!(bad.status(), 400);
}

#[tokio::test]
async fn the_terminal_client_prints_the_jobs_own_log_lines() {
    let app = TestApp::spawn().await;
    let _subscriber = tracing::subscriber::set_default(tracing_subscriber::registry().with(app.engine.log_layer()));
    let server = app.url("");
    let out = cli(&[
        "run",
        "discover",
        "-p",
        "files=12",
        "-p",
        "dir_ms=10",
        "-p",
        "file_ms=5",
        "-p",
        "avg_kib=16",
        "--server",
        &server,
    ])
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    let walk = stdout
        .lines()
        .find(|l| l.contains("walk finished: the total is known"))
        .unwrap_or_else(|| panic!("the job's line is printed: {stdout}"));
    assert!(walk.contains(" INFO "), "{walk}");
    assert!(walk.contains("files=12"), "its fields too: {walk}");
    let listed = stdout.find("listed a directory").expect("an earlier line");
    assert!(listed < stdout.find("walk finished").expect("line"), "in order");
}
