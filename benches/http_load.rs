//! HTTP load on the real server: the three scenarios `../shared/bench/compare.sh` runs (its
//! "ours" column), against the binary in a process of its own, figures printed, nothing
//! asserted on time. Each client also checks what it got: every event once, in order, to the
//! end (`lost`, `dup`, `reordered` count the clients that saw otherwise).
//!
//! ```text
//! cargo bench --features ssr --bench http_load -- [jobs] [idle] [fanout]    (default: all)
//! ```
//! - `jobs`: 1,000 clients, each starts its own 50-step `ticker` @20 ms and streams it to the end;
//! - `idle`: `IDLE_N` (default 10,000) streams held 5 s on one long job: RSS per stream;
//! - `fanout`: 1,000 clients connect at once to ONE job of 250 steps @20 ms.
//! - `slow`: 200 clients follow one job of 500 steps @10 ms with a replay window of 64 events,
//!   alone, then beside `SLOW_READERS` (default 50) slow readers (4 KB/s each, 4 KiB receive
//!   buffers), the pair `SLOW_ROUNDS` times (default 5) so that the machine's drift falls on both alike. It prints
//!   the others' lag p99 each time and the median of the rounds' ratios, the server's RSS
//!   growth with the slow readers, and how many slow readers were told `reset` when they fell
//!   out of the window.
//!
//! The server keeps its jobs in a new SQLite file (the default store); `SSE_PROGRESS_STORE`
//! picks another (e.g. `redis://127.0.0.1:6379/0`). CPU and RSS are read from `/proc`, so this
//! runs on Linux. The open-file limit (`ulimit -n`) bounds `IDLE_N`.

#![allow(clippy::print_stdout)] // a benchmark prints its figures

use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{json, Value};
use tokio::process::{Child, Command};

/// What every client adds up.
#[derive(Default)]
struct Tally {
    connected: AtomicU64,
    ended: AtomicU64,
    failed: AtomicU64,
    events: AtomicU64,
    /// Clients that missed a sequence number, saw one twice, or saw one go backwards.
    lost: AtomicU64,
    dup: AtomicU64,
    reordered: AtomicU64,
    first_us: Mutex<Vec<u64>>,
    lag_us: Mutex<Vec<u64>>,
}

struct Scenario {
    name: &'static str,
    clients: usize,
    /// Connections opened per second (0: all at once).
    ramp: u64,
    steps: u32,
    interval_ms: u64,
    /// One job for everyone (else one each).
    shared: bool,
    /// Hold the streams this long once all are open, then report (idle).
    hold: Option<Duration>,
    /// Lag is sampled only after this many events of each client (skips replayed history).
    lag_skip: u64,
    /// Readers of the shared job that read 4 KB a second.
    slow_readers: usize,
    /// Events each job keeps for replay (the server's default when `None`).
    replay_capacity: Option<u32>,
}

/// The server's CPU seconds and RSS in KiB.
/// The server's CPU seconds in user space and in the kernel, and its RSS in KiB.
fn cpu_rss(pid: u32) -> (f64, f64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or_default().split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    (ticks(11) / 100.0, ticks(12) / 100.0, rss)
}

fn now_us() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

fn percentile(values: &mut [u64], p: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_unstable();
    values[((values.len() - 1) as f64 * p).round() as usize] as f64 / 1000.0
}

async fn start_server(store: &str, replay_capacity: Option<u32>) -> (Child, u16) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
    let mut command = Command::new(env!("CARGO_BIN_EXE_sse-progress"));
    if let Some(capacity) = replay_capacity {
        command.env("SSE_PROGRESS_REPLAY_CAPACITY", capacity.to_string());
    }
    let child = command
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("LEPTOS_SITE_ADDR", format!("127.0.0.1:{port}"))
        .env("LEPTOS_ENV", "PROD")
        .env("RUST_LOG", "warn")
        .env("SSE_PROGRESS_STORE", store)
        .env("SSE_PROGRESS_MAX_RUNNING", "5000")
        .env("SSE_PROGRESS_MAX_QUEUED", "5000")
        .env("SSE_PROGRESS_MAX_JOBS", "20000")
        .kill_on_drop(true)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the server binary runs");
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while client.get(format!("http://127.0.0.1:{port}/healthz")).send().await.is_err() {
        assert!(Instant::now() < deadline, "the server did not listen within 30 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (child, port)
}

/// Starts a `ticker` job; its id and the owner's token.
async fn start_job(
    client: &reqwest::Client,
    base: &str,
    steps: u32,
    interval_ms: u64,
) -> Result<(String, String), String> {
    let body = json!({"kind": "ticker", "params": {"steps": steps, "interval_ms": interval_ms}});
    let response = client.post(format!("{base}/api/jobs")).json(&body).send().await.map_err(|e| e.to_string())?;
    let status = response.status();
    let value: Value = response.json().await.map_err(|e| e.to_string())?;
    let field = |name: &str| value.get(name).and_then(Value::as_str).map(str::to_owned);
    match (field("id"), field("owner_token")) {
        (Some(id), Some(token)) if status.is_success() => Ok((id, token)),
        _ => Err(format!("start: {status}: {value}")),
    }
}

/// Follows one job's stream to its end (or for ever, when held), checking the sequence.
async fn follow(
    client: reqwest::Client,
    base: String,
    job: Option<(String, String)>,
    scenario: Arc<Scenario>,
    tally: Arc<Tally>,
) -> Result<(), String> {
    let begin = Instant::now();
    let (id, token) = match job {
        Some(job) => job,
        None => start_job(&client, &base, scenario.steps, scenario.interval_ms).await?,
    };
    let response = client
        .get(format!("{base}/api/jobs/{id}/events"))
        .bearer_auth(token)
        .header("accept", "text/event-stream")
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if !response.status().is_success() {
        return Err(format!("events: {}", response.status()));
    }
    tally.connected.fetch_add(1, Relaxed);
    let mut body = response.bytes_stream();
    let (mut buffer, mut seen, mut last_seq) = (Vec::<u8>::new(), 0u64, 0u64);
    let (mut lost, mut dup, mut reordered) = (false, false, false);
    while let Some(chunk) = body.next().await {
        buffer.extend_from_slice(&chunk.map_err(|e| e.to_string())?);
        while let Some(end) = buffer.windows(2).position(|w| w == b"\n\n") {
            let block: Vec<u8> = buffer.drain(..end + 2).collect();
            let text = String::from_utf8_lossy(&block);
            let field = |name: &str| text.lines().find_map(|l| l.strip_prefix(name)).map(str::trim);
            let Some(data) = field("data:") else { continue };
            if field("event:") == Some("end") {
                continue;
            }
            tally.events.fetch_add(1, Relaxed);
            seen += 1;
            if seen == 1 {
                tally.first_us.lock().expect("tally").push(begin.elapsed().as_micros() as u64);
            }
            let event: Value = serde_json::from_str(data).unwrap_or_default();
            if let Some(seq) = field("id:").and_then(|s| s.parse::<u64>().ok()) {
                // The first event may be a replay or a reset; after it, each is the next.
                if seen > 1 && field("event:") != Some("reset") {
                    lost |= seq > last_seq + 1;
                    dup |= seq == last_seq;
                    reordered |= seq < last_seq;
                }
                last_seq = seq;
            }
            if seen > scenario.lag_skip {
                if let Some(ts) = event.get("ts").and_then(Value::as_u64) {
                    tally.lag_us.lock().expect("tally").push(now_us().saturating_sub(ts * 1000));
                }
            }
        }
    }
    for (flag, counter) in [(lost, &tally.lost), (dup, &tally.dup), (reordered, &tally.reordered)] {
        if flag {
            counter.fetch_add(1, Relaxed);
        }
    }
    tally.ended.fetch_add(1, Relaxed);
    Ok(())
}

async fn run(scenario: Scenario, store: &str) -> Value {
    let (mut child, port) = start_server(store, scenario.replay_capacity).await;
    let pid = child.id().expect("a pid");
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::builder().pool_max_idle_per_host(0).build().expect("a client");
    let scenario = Arc::new(scenario);
    let tally = Arc::new(Tally::default());
    let shared = if scenario.shared {
        Some(start_job(&client, &base, scenario.steps, scenario.interval_ms).await.expect("the shared job starts"))
    } else {
        None
    };
    let (user_before, sys_before, rss_before) = cpu_rss(pid);
    let slow_resets = Arc::new(AtomicU64::new(0));
    let hurry = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let slow: Vec<_> = (0..scenario.slow_readers)
        .map(|_| {
            let job = shared.clone().expect("slow readers follow the shared job");
            tokio::spawn(read_slowly(port, job, slow_resets.clone(), hurry.clone()))
        })
        .collect();
    let t0 = Instant::now();
    let mut clients = Vec::with_capacity(scenario.clients);
    for n in 0..scenario.clients {
        if scenario.ramp > 0 && n > 0 && (n as u64).is_multiple_of((scenario.ramp / 100).max(1)) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let (client, base, job, scenario, tally) =
            (client.clone(), base.clone(), shared.clone(), scenario.clone(), tally.clone());
        clients.push(tokio::spawn(async move {
            if let Err(e) = follow(client, base, job, scenario, tally.clone()).await {
                if tally.failed.fetch_add(1, Relaxed) < 3 {
                    eprintln!("a client failed: {e}");
                }
            }
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    if let Some(hold) = scenario.hold {
        while tally.connected.load(Relaxed) + tally.failed.load(Relaxed) < scenario.clients as u64
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(hold).await;
    } else {
        let all = futures::future::join_all(clients.iter_mut());
        if tokio::time::timeout_at(deadline.into(), all).await.is_err() {
            eprintln!("{}: gave up after 120 s", scenario.name);
        }
    }
    let elapsed = t0.elapsed().as_secs_f64();
    let (user_after, sys_after, rss_after) = cpu_rss(pid);
    // The slow readers, if any, now read what they can as fast as they can: each finds either
    // every event or the `reset` that says it fell behind.
    hurry.store(true, Relaxed);
    let _ = tokio::time::timeout(Duration::from_secs(30), futures::future::join_all(slow)).await;
    for client in clients {
        client.abort();
    }
    let _ = child.kill().await;
    let events = tally.events.load(Relaxed);
    let connected = tally.connected.load(Relaxed);
    let (user, sys) = (user_after - user_before, sys_after - sys_before);
    let cpu = user + sys;
    let mut first = tally.first_us.lock().expect("tally").clone();
    let mut lag = tally.lag_us.lock().expect("tally").clone();
    json!({
        "scenario": scenario.name,
        "clients": scenario.clients,
        "connected": connected,
        "ended": tally.ended.load(Relaxed),
        "failed": tally.failed.load(Relaxed),
        "events": events,
        "lost": tally.lost.load(Relaxed),
        "dup": tally.dup.load(Relaxed),
        "reordered": tally.reordered.load(Relaxed),
        "seconds": (elapsed * 1000.0).round() / 1000.0,
        "server_cpu_us_per_event": if events > 0 { (cpu * 1e6 / events as f64 * 100.0).round() / 100.0 } else { f64::NAN },
        // The kernel's part: on loopback the sender also pays for the receiving side of TCP.
        "server_cpu_kernel_share": if cpu > 0.0 { (sys / cpu * 100.0).round() / 100.0 } else { f64::NAN },
        "server_rss_kb_per_stream": if connected > 0 { (rss_after.saturating_sub(rss_before) as f64 / connected as f64 * 100.0).round() / 100.0 } else { f64::NAN },
        "lag_ms_p50": percentile(&mut lag, 0.5),
        "lag_ms_p99": percentile(&mut lag, 0.99),
        "first_event_ms_p99": percentile(&mut first, 0.99),
        "server_rss_kb_growth": rss_after.saturating_sub(rss_before),
        "slow_readers": scenario.slow_readers,
        "slow_readers_reset": slow_resets.load(Relaxed),
    })
}

/// Reads the shared job's stream at about 4 KB a second through a 4 KiB receive buffer, as a
/// client on a bad mobile link would, and counts `reset` events (one per reader at most).
async fn read_slowly(
    port: u16,
    (id, token): (String, String),
    resets: Arc<AtomicU64>,
    hurry: Arc<std::sync::atomic::AtomicBool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
    let _ = socket.set_recv_buffer_size(4096);
    let Ok(mut tcp) = socket.connect(([127, 0, 0, 1], port).into()).await else { return };
    let head = format!(
        "GET /api/jobs/{id}/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    );
    if tcp.write_all(head.as_bytes()).await.is_err() {
        return;
    }
    let (mut buffer, mut tail) = ([0u8; 512], Vec::new());
    while let Ok(n @ 1..) = tcp.read(&mut buffer).await {
        tail.extend_from_slice(&buffer[..n]);
        if tail.windows(12).any(|w| w == b"event: reset") {
            resets.fetch_add(1, Relaxed);
            return;
        }
        tail.drain(..tail.len().saturating_sub(12));
        if !hurry.load(Relaxed) {
            tokio::time::sleep(Duration::from_millis(125)).await;
        }
    }
}

/// 200 clients of one job of 500 steps @10 ms, with a replay window of 64 events, beside
/// `slow_readers` slow readers.
fn slow(name: &'static str, slow_readers: usize) -> Scenario {
    Scenario {
        name,
        clients: 200,
        ramp: 0,
        steps: 500,
        interval_ms: 10,
        shared: true,
        hold: None,
        lag_skip: 50,
        slow_readers,
        replay_capacity: Some(64),
    }
}

#[tokio::main]
async fn main() {
    let picked: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let wants = |name: &str| picked.is_empty() || picked.iter().any(|p| p == name);
    let dir = tempfile::tempdir().expect("a temporary folder");
    let chosen = std::env::var("SSE_PROGRESS_STORE").ok();
    let idle_n = std::env::var("IDLE_N").ok().and_then(|n| n.parse().ok()).unwrap_or(10_000);
    let slow_rounds: usize = std::env::var("SLOW_ROUNDS").ok().and_then(|n| n.parse().ok()).unwrap_or(5);
    let slow_readers: usize = std::env::var("SLOW_READERS").ok().and_then(|n| n.parse().ok()).unwrap_or(50);
    let scenarios = [
        Scenario {
            name: "jobs",
            clients: 1000,
            ramp: 2000,
            steps: 50,
            interval_ms: 20,
            shared: false,
            hold: None,
            lag_skip: 0,
            slow_readers: 0,
            replay_capacity: None,
        },
        Scenario {
            name: "idle",
            clients: idle_n,
            ramp: 4000,
            steps: 1000,
            interval_ms: 600_000,
            shared: true,
            hold: Some(Duration::from_secs(5)),
            lag_skip: 0,
            slow_readers: 0,
            replay_capacity: None,
        },
        Scenario {
            name: "fanout",
            clients: 1000,
            ramp: 0,
            steps: 250,
            interval_ms: 20,
            shared: true,
            hold: None,
            lag_skip: 50,
            slow_readers: 0,
            replay_capacity: None,
        },
    ];
    println!("store: {}", chosen.as_deref().unwrap_or("a new SQLite file for each scenario"));
    let mut rows = Vec::new();
    for scenario in scenarios.into_iter().filter(|s| wants(s.name)) {
        let store = chosen.clone().unwrap_or_else(|| format!("sqlite:{}/{}.db", dir.path().display(), scenario.name));
        let result = run(scenario, &store).await;
        println!("{result}");
        rows.push(result);
    }
    // Alone, then with slow readers, in turns.
    let mut pairs = Vec::new();
    for round in 0..if wants("slow") { slow_rounds } else { 0 } {
        let mut pair = Vec::new();
        for scenario in [slow("slow-base", 0), slow("slow", slow_readers)] {
            let store = chosen.clone().unwrap_or_else(|| format!("sqlite:{}/slow-{round}.db", dir.path().display()));
            let result = run(scenario, &store).await;
            println!("{result}");
            rows.push(result.clone());
            pair.push(result);
        }
        pairs.push(pair);
    }
    println!(
        "\n{:<9} {:>8} {:>7} {:>5} {:>4} {:>5} {:>10} {:>7} {:>11} {:>8} {:>8} {:>10}",
        "scen",
        "events",
        "failed",
        "lost",
        "dup",
        "reord",
        "cpu_us/ev",
        "kernel",
        "rss_kb/str",
        "lag_p50",
        "lag_p99",
        "first_p99"
    );
    for r in &rows {
        let n = |k: &str| r[k].as_f64().unwrap_or(f64::NAN);
        println!(
            "{:<9} {:>8} {:>7} {:>5} {:>4} {:>5} {:>10.2} {:>6.0}% {:>11.2} {:>8.2} {:>8.2} {:>10.1}",
            r["scenario"].as_str().unwrap_or_default(),
            n("events"),
            n("failed"),
            n("lost"),
            n("dup"),
            n("reordered"),
            n("server_cpu_us_per_event"),
            n("server_cpu_kernel_share") * 100.0,
            n("server_rss_kb_per_stream"),
            n("lag_ms_p50"),
            n("lag_ms_p99"),
            n("first_event_ms_p99")
        );
    }
    if !pairs.is_empty() {
        let n = |r: &Value, k: &str| r[k].as_f64().unwrap_or(f64::NAN);
        println!("\nslow readers, round by round (the others' lag p99 alone / beside them; slow readers told reset):");
        let mut ratios = Vec::new();
        for (i, pair) in pairs.iter().enumerate() {
            let (base, slow) = (&pair[0], &pair[1]);
            let ratio = n(slow, "lag_ms_p99") / n(base, "lag_ms_p99");
            ratios.push(ratio);
            println!(
                "  {}: {:.2} / {:.2} ms ({:+.1} %); {} of {} reset; server RSS growth {} KiB alone, {} KiB with them",
                i + 1,
                n(base, "lag_ms_p99"),
                n(slow, "lag_ms_p99"),
                (ratio - 1.0) * 100.0,
                slow["slow_readers_reset"],
                slow["slow_readers"],
                base["server_rss_kb_growth"],
                slow["server_rss_kb_growth"],
            );
        }
        ratios.sort_by(f64::total_cmp);
        println!(
            "median change of the others' lag p99 with slow readers: {:+.1} % (of {} rounds)",
            (ratios[ratios.len() / 2] - 1.0) * 100.0,
            ratios.len()
        );
    }
}
