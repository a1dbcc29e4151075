//! The disk fills up while jobs run: the server stays up, `/readyz` says it is not ready and
//! why, nothing already accepted is lost, and everything carries on by itself once there is
//! room again. A real (tiny) file system, a real server process.

use crate::common;

use std::time::Duration;

use common::disk::SmallDisk;
use common::process::{sqlite_store, ServerProcess};
use eventsource_stream::Eventsource;
use futures::StreamExt;
use serde_json::{json, Value};

/// Waits (at most `secs`) until `/readyz` answers `status`; returns its body.
async fn wait_ready(server: &ServerProcess, status: u16, secs: u64) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let response = reqwest::get(server.url("/readyz")).await.expect("request");
        if response.status() == status {
            return response.json().await.expect("json");
        }
        assert!(tokio::time::Instant::now() < deadline, "/readyz never answered {status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_full_disk_makes_the_server_not_ready_and_loses_nothing() {
    let Some(disk) = SmallDisk::mount("4m", "a_full_disk_makes_the_server_not_ready_and_loses_nothing") else {
        return;
    };
    let server = ServerProcess::start(&sqlite_store(disk.path()), 0).await;
    wait_ready(&server, 200, 10).await;
    let client = reqwest::Client::new();
    let started: Value = client
        .post(server.url("/api/jobs"))
        .json(&json!({"kind": "ticker", "params": {"steps": 1000, "interval_ms": 10}}))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    let (id, token) = (started["id"].as_str().expect("id"), started["owner_token"].as_str().expect("token"));

    // Fill the disk to the last byte.
    let filler = disk.fill();
    let not_ready = wait_ready(&server, 503, 30).await;
    assert!(not_ready["reason"].as_str().expect("a reason").contains("full"), "{not_ready}");
    let health = reqwest::get(server.url("/healthz")).await.expect("request");
    assert_eq!(health.status(), 200, "still alive");

    // Room again: it catches up by itself, and the job's events have no gap.
    std::fs::remove_file(&filler).expect("removed");
    wait_ready(&server, 200, 30).await;
    let stream =
        client.get(server.url(&format!("/api/jobs/{id}/events"))).bearer_auth(token).send().await.expect("request");
    let mut events = stream.bytes_stream().eventsource();
    let mut seqs = Vec::new();
    let mut last = String::new();
    while let Ok(Some(Ok(event))) = tokio::time::timeout(Duration::from_secs(60), events.next()).await {
        if event.event == "end" {
            break;
        }
        if !event.event.is_empty() {
            seqs.push(event.id.parse::<u64>().expect("a number"));
            last = event.event;
        }
    }
    assert_eq!(last, "completed");
    let first = *seqs.first().expect("events");
    assert_eq!(seqs, (first..first + seqs.len() as u64).collect::<Vec<_>>(), "no gap, no repeat");
    server.terminate().await;
}
