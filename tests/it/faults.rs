//! Progress is never lost, under faults: forty clients follow forty jobs of every kind through
//! a fault-injecting proxy (resets, streams cut mid-event, added latency, blackholed
//! connections that stay open and silent), while the server itself is killed (SIGKILL) and
//! started again on its SQLite store, twice. Each client resumes with `Last-Event-ID` as an
//! `EventSource` does. Every client must receive every event of its job exactly once, in order,
//! to the job's end; the run reports faults injected, events checked, lost, duplicated and
//! reordered.

use crate::common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::faults::FaultProxy;
use common::process::{sqlite_store, ServerProcess};
use eventsource_stream::Eventsource;
use futures::StreamExt;
use serde_json::{json, Value};

/// What one client saw of its job.
#[derive(Debug, Default)]
struct Followed {
    /// Sequence numbers in the order they arrived.
    seqs: Vec<u64>,
    /// The `seq` the `end` event named, once it came (or, after a `204`, the last received).
    end: Option<u64>,
    /// `reset` events (the client fell out of the replay window): none are expected.
    resets: usize,
    connections: usize,
}

/// Follows `id` through `base` as an `EventSource` would, reconnecting with `Last-Event-ID`
/// after every failure, until `end` (or a 204: nothing more will come).
async fn follow(base: String, id: String, token: String) -> Followed {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(120)).build().expect("client");
    let mut seen = Followed::default();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(150);
    while seen.end.is_none() && tokio::time::Instant::now() < deadline {
        seen.connections += 1;
        let mut request = client.get(format!("{base}/api/jobs/{id}/events")).bearer_auth(&token);
        if let Some(last) = seen.seqs.last() {
            request = request.header("Last-Event-ID", last.to_string());
        }
        // A head that does not come within 2 s is as dead as a silent stream.
        let response = match tokio::time::timeout(Duration::from_secs(2), request.send()).await {
            Ok(Ok(r)) if r.status() == 200 => r,
            // The job ended and the client has its terminal event (the cut came before `end`).
            Ok(Ok(r)) if r.status() == 204 => {
                seen.end = seen.seqs.last().copied();
                break;
            }
            // The server is down, or the connection broke before the head: try again shortly.
            _ => {
                tokio::time::sleep(Duration::from_millis(50 + fastrand::u64(0..100))).await;
                continue;
            }
        };
        let mut events = response.bytes_stream().eventsource();
        // A running job sends an event every few tens of ms: two silent seconds mean the
        // connection is dead (a blackhole), as a keep-alive timeout would tell a browser.
        while let Ok(Some(Ok(event))) = tokio::time::timeout(Duration::from_secs(2), events.next()).await {
            if event.data.is_empty() {
                continue;
            }
            let data: Value = serde_json::from_str(&event.data).expect("every event's data is whole JSON");
            if event.event == "end" {
                seen.end = Some(data["seq"].as_u64().expect("end names its seq"));
                break;
            }
            if event.event == "reset" {
                seen.resets += 1;
            }
            seen.seqs.push(event.id.parse().expect("a numeric id"));
        }
    }
    seen
}

/// A job of each kind in turn, short enough to end within the run, long enough to cross the
/// server's restarts.
fn job(n: usize) -> Value {
    match n % 4 {
        0 => json!({"kind": "ticker", "params": {"steps": 150, "interval_ms": 20}}),
        1 => json!({"kind": "checksum", "params": {"size_mib": 4, "chunk_kib": 64, "chunk_delay_ms": 25, "seed": n}}),
        2 => json!({"kind": "discover", "params": {"files": 80, "dir_ms": 30, "file_ms": 30, "avg_kib": 8, "seed": n}}),
        _ => json!({"kind": "failing", "params": {"steps": 6, "fail_at_step": 6, "step_ms": 700}}),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_client_gets_every_event_once_and_in_order_through_faults_and_restarts() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = sqlite_store(dir.path());
    let server = ServerProcess::start(&store, 0).await;
    let port = server.port;
    let proxy = FaultProxy::start(format!("127.0.0.1:{port}").parse().expect("address")).await;

    // Forty owners, one job each, started straight at the server.
    let direct = reqwest::Client::new();
    let mut jobs = Vec::new();
    for n in 0..40 {
        let token = format!("{n:064x}");
        let started =
            direct.post(server.url("/api/jobs")).bearer_auth(&token).json(&job(n)).send().await.expect("post");
        assert_eq!(started.status(), 202, "{}", started.text().await.unwrap_or_default());
        let id = started.json::<Value>().await.expect("json")["id"].as_str().expect("id").to_string();
        jobs.push((id, token));
    }
    let clients: Vec<_> =
        jobs.iter().map(|(id, token)| tokio::spawn(follow(proxy.url(""), id.clone(), token.clone()))).collect();

    // The server dies twice mid-run and comes back on the same store and port.
    let mut server = server;
    for pause in [Duration::from_millis(1500), Duration::from_millis(2500)] {
        tokio::time::sleep(pause).await;
        server.kill().await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        server = ServerProcess::start(&store, port).await;
    }

    let (mut checked, mut lost, mut duplicated, mut reordered, mut resets, mut connections) = (0, 0, 0, 0, 0, 0);
    let mut problems = Vec::new();
    for ((id, token), client) in jobs.iter().zip(clients) {
        let seen = client.await.expect("client");
        connections += seen.connections;
        resets += seen.resets;
        let Some(end) = seen.end else {
            problems.push(format!("{id}: no end after {} connections ({} events)", seen.connections, seen.seqs.len()));
            continue;
        };
        checked += seen.seqs.len();
        let mut unique = seen.seqs.clone();
        unique.sort_unstable();
        unique.dedup();
        duplicated += seen.seqs.len() - unique.len();
        reordered += seen.seqs.windows(2).filter(|w| w[1] < w[0]).count();
        lost += (1..=end).filter(|s| unique.binary_search(s).is_err()).count();
        // The end the client saw is the job's own end, as the server keeps it.
        let state: Value = direct
            .get(server.url(&format!("/api/jobs/{id}")))
            .bearer_auth(token)
            .send()
            .await
            .expect("get")
            .json()
            .await
            .expect("json");
        if state["seq"].as_u64() != Some(end)
            || !matches!(state["status"].as_str(), Some("completed" | "failed" | "interrupted"))
        {
            problems.push(format!("{id}: the client's end is {end}, the server says {state}"));
        }
    }
    let counts = &proxy.counts;
    eprintln!(
        "faults injected: {} (resets {}, cuts {}, latency {}, blackholes {}), connections refused while the server was \
         down: {}, server kills: 2; client connections: {connections}; events checked: {checked}; lost: {lost}, \
         duplicated: {duplicated}, reordered: {reordered}, resets: {resets}",
        counts.injected(),
        counts.resets.load(Ordering::Relaxed),
        counts.cuts.load(Ordering::Relaxed),
        counts.latencies.load(Ordering::Relaxed),
        counts.blackholes.load(Ordering::Relaxed),
        counts.refused.load(Ordering::Relaxed),
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert_eq!((lost, duplicated, reordered, resets), (0, 0, 0, 0));
    assert!(counts.injected() >= 1_000, "only {} faults injected", counts.injected());
    server.kill().await;
}
