//! Crash stress: the real server on one SQLite file is killed with SIGKILL and started again,
//! over and over, while clients follow jobs and reconnect with `Last-Event-ID` after each
//! crash. Reports, per run, events lost (a gap in what a client saw), duplicated and
//! reordered, which must all be 0, and whether every job still completed. Not part of the
//! test run: it takes a minute or more.
//!
//! `cargo bench --features ssr --bench restart_stress -- [cycles] [jobs]` (defaults 10 8).

#![allow(clippy::print_stdout)] // printing the findings is the point

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use eventsource_stream::Eventsource;
use futures::StreamExt;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::Mutex;

/// Starts the server on `store` and `port` (0: any) and returns it with its port.
async fn start(store: &str, port: u16) -> (Child, u16) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sse-progress"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("LEPTOS_SITE_ADDR", format!("127.0.0.1:{port}"))
        .env("SSE_PROGRESS_STORE", store)
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "warn,sse_progress=info")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("the server runs");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if let Some(addr) = line.split("listening on http://127.0.0.1:").nth(1) {
            let port = addr.chars().take_while(char::is_ascii_digit).collect::<String>().parse().expect("a port");
            tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
            return (child, port);
        }
    }
    panic!("the server did not start");
}

/// What one follower saw of its job.
#[derive(Default)]
struct Seen {
    seqs: Vec<u64>,
    ended: Option<Value>,
    reconnects: u32,
}

/// Follows job `id` to its end, re-attaching with `Last-Event-ID` whenever the stream breaks.
async fn follow(port: u16, token: String, id: String, seen: Arc<Mutex<Seen>>) {
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/api/jobs/{id}/events");
    loop {
        let last = seen.lock().await.seqs.last().copied();
        let mut request = client.get(&url).bearer_auth(&token);
        if let Some(last) = last {
            request = request.header("Last-Event-ID", last.to_string());
        }
        if let Ok(response) = request.send().await {
            let mut events = response.bytes_stream().eventsource();
            while let Some(Ok(event)) = events.next().await {
                let mut seen = seen.lock().await;
                match event.event.as_str() {
                    "end" => return,
                    "" => {}
                    name => {
                        if let Ok(seq) = event.id.parse() {
                            seen.seqs.push(seq);
                        }
                        if name == "completed" {
                            seen.ended = serde_json::from_str(&event.data).ok();
                        }
                    }
                }
            }
        }
        seen.lock().await.reconnects += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<u32> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let cycles = args.first().copied().unwrap_or(10);
    let jobs = args.get(1).copied().unwrap_or(8);
    let dir = tempfile::tempdir().expect("a folder");
    let store = format!("sqlite:{}", dir.path().join("jobs.db").display());

    let (mut server, port) = start(&store, 0).await;
    let client = reqwest::Client::new();
    let mut token: Option<String> = None;
    let mut followers = Vec::new();
    let mut tallies = Vec::new();
    for i in 0..jobs {
        // Long enough to be running through every cycle (about a second each).
        let (kind, params) = if i % 2 == 0 {
            ("ticker", json!({"steps": 60 * cycles, "interval_ms": 20}))
        } else {
            ("checksum", json!({"size_mib": 24 * cycles, "chunk_kib": 512, "chunk_delay_ms": 5}))
        };
        let mut request =
            client.post(format!("http://127.0.0.1:{port}/api/jobs")).json(&json!({"kind": kind, "params": params}));
        if let Some(token) = &token {
            request = request.bearer_auth(token);
        }
        let body: Value = request.send().await.expect("starts").json().await.expect("json");
        if let Some(t) = body["owner_token"].as_str() {
            token = Some(t.to_string());
        }
        let id = body["id"].as_str().expect("an id").to_string();
        let seen = Arc::new(Mutex::new(Seen::default()));
        tallies.push((id.clone(), kind, seen.clone()));
        followers.push(tokio::spawn(follow(port, token.clone().expect("a token"), id, seen)));
    }

    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    for cycle in 1..=cycles {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let run_for = Duration::from_millis(300 + seed % 1200);
        tokio::time::sleep(run_for).await;
        server.kill().await.expect("killed");
        println!("cycle {cycle}: killed after {run_for:?}");
        (server, _) = start(&store, port).await;
    }
    let finished = tokio::time::timeout(Duration::from_secs(180), futures::future::join_all(followers)).await;
    let _ = server.kill().await;

    let (mut lost, mut duplicated, mut reordered, mut incomplete) = (0, 0, 0, 0);
    println!(
        "{:<38} {:<9} {:>7} {:>6} {:>5} {:>10} {:>10} {:>10}",
        "job", "kind", "events", "lost", "dup", "reordered", "reconnects", "completed"
    );
    for (id, kind, seen) in &tallies {
        let seen = seen.lock().await;
        let mut job_lost = 0;
        let mut job_dup = 0;
        let mut job_reordered = 0;
        for pair in seen.seqs.windows(2) {
            match pair[1].cmp(&pair[0]) {
                std::cmp::Ordering::Greater => job_lost += pair[1] - pair[0] - 1,
                std::cmp::Ordering::Equal => job_dup += 1,
                std::cmp::Ordering::Less => job_reordered += 1,
            }
        }
        if seen.seqs.first() != Some(&1) {
            job_lost += seen.seqs.first().copied().unwrap_or(1).saturating_sub(1);
        }
        let completed = seen.ended.as_ref().is_some_and(|s| s["status"] == "completed");
        lost += job_lost;
        duplicated += job_dup;
        reordered += job_reordered;
        incomplete += u32::from(!completed);
        println!(
            "{id:<38} {kind:<9} {:>7} {job_lost:>6} {job_dup:>5} {job_reordered:>10} {:>10} {:>10}",
            seen.seqs.len(),
            seen.reconnects,
            completed
        );
    }
    println!(
        "{cycles} kill -9 cycles, {jobs} jobs: lost {lost}, duplicated {duplicated}, reordered {reordered}, not completed {incomplete}{}",
        if finished.is_err() { " (followers timed out)" } else { "" }
    );
    if lost + duplicated + reordered > 0 || incomplete > 0 || finished.is_err() {
        std::process::exit(1);
    }
}
