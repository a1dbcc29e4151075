//! `scripts/cluster` as people run it: Redis, three instances of the real binary and nginx in
//! front. Events come through nginx one by one (not buffered to the end), requests spread over
//! the instances and go on when one is killed, and stopping the script leaves nothing behind.

use crate::common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::client::{assert_contiguous, Client, Port};
use eventsource_stream::Eventsource;
use futures::StreamExt;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port()
}

fn listening(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

#[tokio::test]
async fn the_cluster_script_serves_streams_unbuffered_survives_a_kill_and_stops_clean() {
    let dir = tempfile::tempdir().expect("a folder");
    let (port, redis_port) = (free_port(), free_port());
    let instance_ports = [free_port(), free_port(), free_port()];
    let ports_text = instance_ports.map(|p| p.to_string()).join(" ");
    let mut script = tokio::process::Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/cluster"))
        .env("SSE_PROGRESS_BIN", env!("CARGO_BIN_EXE_sse-progress"))
        .env("CLUSTER_PORT", port.to_string())
        .env("CLUSTER_REDIS_PORT", redis_port.to_string())
        .env("CLUSTER_INSTANCE_PORTS", &ports_text)
        .env("CLUSTER_DIR", dir.path())
        .env("SSE_PROGRESS_LEASE_MS", "3000")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("scripts/cluster runs");
    let mut lines = BufReader::new(script.stdout.take().expect("stdout")).lines();
    let mut pids = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let line =
            tokio::time::timeout_at(deadline, lines.next_line()).await.expect("it starts within 60 s").expect("read");
        let line = line.expect("it runs until told to stop");
        if line.trim_start().starts_with("instance-") {
            let pid = line
                .split("pid")
                .nth(1)
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|p| p.parse::<u32>().ok());
            pids.extend(pid);
        }
        if line.starts_with("Failover:") {
            break;
        }
    }
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    assert_eq!(pids.len(), 3, "three instances");
    let front = Port(port);

    // A job followed through nginx: its events arrive as they happen, not all at the end.
    let mut client = Client::new();
    let id = client.start(&front, "ticker", json!({"steps": 8, "interval_ms": 250})).await;
    let response = client.events(&front, &id, None).await;
    let mut stream = response.bytes_stream().eventsource();
    let (mut events, mut arrivals) = (Vec::new(), Vec::new());
    let opened = Instant::now();
    while let Ok(Some(Ok(event))) = tokio::time::timeout(Duration::from_secs(30), stream.next()).await {
        if !event.event.is_empty() {
            arrivals.push(opened.elapsed());
            events.push(event);
        }
    }
    assert_contiguous(&events, 1);
    let last: Value =
        serde_json::from_str(&events.iter().rev().find(|e| e.event != "end").expect("events").data).expect("json");
    assert_eq!(last["status"], "completed");
    let spread = arrivals.last().copied().unwrap_or_default() - arrivals.first().copied().unwrap_or_default();
    assert!(spread >= Duration::from_millis(1000), "events came over {spread:?}: buffered by the proxy?");

    // Requests spread over the instances (the access log names each one) ...
    for _ in 0..6 {
        assert_eq!(client.job(&front, &id).await.0, 200);
    }
    let log = std::fs::read_to_string(dir.path().join("nginx-access.log")).expect("the access log");
    for p in instance_ports {
        assert!(log.contains(&format!("upstream=127.0.0.1:{p}")), "instance {p} served requests: {log}");
    }
    // ... and go on when one of them is killed.
    let killed = std::process::Command::new("kill").args(["-9", &pids[0].to_string()]).status().expect("kill");
    assert!(killed.success(), "kill -9 {} failed: the instance was not running", pids[0]);
    for _ in 0..9 {
        let (code, job) = client.job(&front, &id).await;
        assert_eq!((code, job["status"].as_str()), (200, Some("completed")));
    }

    // Stopping the script stops everything it started.
    let pid = script.id().expect("running").to_string();
    std::process::Command::new("kill").args(["-TERM", &pid]).status().expect("kill");
    let status =
        tokio::time::timeout(Duration::from_secs(45), script.wait()).await.expect("stops within 45 s").expect("waited");
    assert_eq!(status.code(), Some(143), "stopped by its TERM trap: {status:?}");
    for p in instance_ports.into_iter().chain([port, redis_port]) {
        assert!(!listening(p), "port {p} is still served after the stop");
    }
}
