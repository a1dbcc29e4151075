//! Engine load benchmark, per store side by side: how many durable events a second the engine
//! appends, how long an appended event takes to reach a subscriber (p50/p99) at a steady
//! rate, how long a start takes to show its first event, and what it all costs in memory.
//! Prints figures; asserts nothing about time.
//!
//! `cargo bench --features ssr --bench engine -- [memory|sqlite|redis|cross|all] [jobs] [events]`
//! (defaults: all, 2000 jobs x 50 events for throughput; the latency phases are fixed:
//! 100 jobs x 100 events a second each = 10,000 events/s for 5 s, and 300 starts).
//!
//! `cross` runs two instances (two engines, each with its own connections and listener) on one
//! Redis: events/s appended by each while both run jobs flat out, then the latency from
//! publishing on A to receiving on B with 1,000 subscribers on B (100 jobs on A x 10
//! subscribers each, 50 events/s per job, 5 s), beside the same load followed on A itself.

#![allow(clippy::print_stdout)] // printing the figures is the point

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::json;
use sse_progress::jobs::store::memory::MemoryStore;
use sse_progress::jobs::store::redis::RedisStore;
use sse_progress::jobs::store::sqlite::SqliteStore;
use sse_progress::jobs::store::JobStore;
use sse_progress::jobs::{kinds, Delivery, EngineConfig, JobEngine, JobError, JobParams, ProgressReporter};

/// The instant every `stamp` job measures from.
static BASE: OnceLock<Instant> = OnceLock::new();

fn micros_since_base() -> u64 {
    u64::try_from(BASE.get_or_init(Instant::now).elapsed().as_micros()).unwrap_or(u64::MAX)
}

/// Params of `stamp`: `events` messages, one every `interval_us`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(default)]
struct StampParams {
    events: u32,
    interval_us: u64,
}
impl JobParams for StampParams {}

/// Reports `events` messages, each carrying the moment it was reported (µs since `BASE`).
async fn stamp(p: StampParams, r: ProgressReporter) -> Result<u32, JobError> {
    let mut next = tokio::time::Instant::now();
    for _ in 0..p.events {
        if p.interval_us > 0 {
            next += Duration::from_micros(p.interval_us);
            tokio::select! {
                () = tokio::time::sleep_until(next) => {}
                () = r.cancellation().cancelled() => return Err(JobError::Cancelled),
            }
        } else {
            tokio::task::yield_now().await;
        }
        r.message(micros_since_base().to_string());
    }
    Ok(p.events)
}

/// Resident and peak resident memory of this process, in KiB (Linux).
fn memory_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let at = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[at] as f64 / 1000.0
}

struct Figures {
    store: &'static str,
    events_per_sec: f64,
    visible_p50_ms: f64,
    visible_p99_ms: f64,
    first_p50_ms: f64,
    first_p99_ms: f64,
    rss_kib: u64,
}

#[path = "../tests/it/common/redis.rs"]
mod redis_process;
use redis_process::RedisProcess;

async fn redis_store(url: &str) -> Arc<dyn JobStore> {
    loop {
        match RedisStore::open(url) {
            Ok(store) => return Arc::new(store),
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// Runs `jobs` `stamp` jobs of `events` flat out on `engine`; events appended a second.
async fn flat_out(engine: &JobEngine, jobs: usize, events: u32) -> f64 {
    let started = Instant::now();
    let params = json!({"events": events, "interval_us": 0});
    let ids = futures::future::join_all((0..jobs).map(|_| engine.start("stamp", params.clone()))).await;
    let mut followers = Vec::new();
    for id in ids {
        let (engine, id) = (engine.clone(), id.expect("starts"));
        followers.push(tokio::spawn(async move { follow(&engine, id).await.0 }));
    }
    let mut seen = 0;
    for f in followers {
        seen += f.await.expect("follower");
    }
    engine.flush().await;
    assert!(seen >= jobs * events as usize / 2, "followers saw the events");
    // Each job also appends `pending`, `running` and `completed`.
    jobs as f64 * (f64::from(events) + 3.0) / started.elapsed().as_secs_f64()
}

/// 100 `stamp` jobs of `params` on `publisher`, each followed by `per_job` subscribers on
/// `reader`; the latencies (µs) the subscribers saw, sorted.
async fn fan_out(publisher: &JobEngine, reader: &JobEngine, per_job: usize, params: serde_json::Value) -> Vec<u64> {
    let mut followers = Vec::new();
    for _ in 0..100 {
        let id = publisher.start("stamp", params.clone()).await.expect("starts");
        for _ in 0..per_job {
            let reader = reader.clone();
            followers.push(tokio::spawn(async move { follow(&reader, id).await.1 }));
        }
    }
    let mut latencies = Vec::new();
    for f in followers {
        latencies.extend(f.await.expect("follower"));
    }
    latencies.sort_unstable();
    latencies
}

async fn measure_cross(url: &str, jobs: usize, events: u32) {
    let a = engine_on(redis_store(url).await, jobs);
    let b = engine_on(redis_store(url).await, jobs);
    let (on_a, on_b) = tokio::join!(flat_out(&a, jobs / 2, events), flat_out(&b, jobs / 2, events));
    let load = json!({"events": 250, "interval_us": 20_000}); // 50 events/s for 5 s
    let local = fan_out(&a, &a, 10, load.clone()).await;
    let cross = fan_out(&a, &b, 10, load).await;
    println!("cross-instance on one Redis: {} jobs x {events} events on each of A and B at once", jobs / 2);
    println!("  appended per instance: A {on_a:.0} events/s, B {on_b:.0} events/s (together {:.0})", on_a + on_b);
    println!("  1,000 subscribers x 50 events/s (100 jobs on A, 10 subscribers each):");
    println!(
        "    followed on A itself: p50 {:.2} ms, p99 {:.2} ms ({} deliveries)",
        percentile(&local, 0.5),
        percentile(&local, 0.99),
        local.len()
    );
    println!(
        "    followed on B:        p50 {:.2} ms, p99 {:.2} ms ({} deliveries)",
        percentile(&cross, 0.5),
        percentile(&cross, 0.99),
        cross.len()
    );
    println!(
        "    added by crossing:    p50 {:.2} ms, p99 {:.2} ms",
        percentile(&cross, 0.5) - percentile(&local, 0.5),
        percentile(&cross, 0.99) - percentile(&local, 0.99)
    );
    let cancels = cancel_across(&a, &b).await;
    println!(
        "  cancel through B of a job running on A, until B shows it cancelled: p50 {:.2} ms, p99 {:.2} ms ({} jobs)",
        percentile(&cancels, 0.5),
        percentile(&cancels, 0.99),
        cancels.len()
    );
    a.shutdown(Duration::from_secs(5)).await;
    b.shutdown(Duration::from_secs(5)).await;
}

/// 100 jobs running on `a`, each cancelled through `b`: how long (µs) until `b` shows each one
/// `cancelled`.
async fn cancel_across(a: &JobEngine, b: &JobEngine) -> Vec<u64> {
    let mut took = Vec::new();
    for _ in 0..100 {
        let id = a.start("stamp", json!({"events": 1_000_000, "interval_us": 10_000})).await.expect("starts");
        let mut sub = b.subscribe(id, None).await.expect("the store answers").expect("kept");
        loop {
            let delivery = sub.next().await.expect("the job runs before it ends");
            if delivery.state().is_some_and(|s| s.status == sse_progress::model::JobStatus::Running) {
                break;
            }
        }
        let asked = Instant::now();
        b.cancel(id).await.expect("the store answers").expect("known");
        while let Some(delivery) = sub.next().await {
            if delivery.state().is_some_and(|s| s.status.is_terminal()) {
                break;
            }
        }
        took.push(u64::try_from(asked.elapsed().as_micros()).unwrap_or(u64::MAX));
    }
    took.sort_unstable();
    took
}

fn engine_on(store: Arc<dyn JobStore>, jobs: usize) -> JobEngine {
    let mut kinds = kinds::builtin();
    kinds.register("stamp", "Reports timestamps", stamp);
    let config =
        EngineConfig { max_jobs: jobs * 4 + 1000, max_running: jobs + 1000, max_queued: jobs, ..Default::default() };
    let engine = JobEngine::open(config, kinds, store).expect("the store opens").0;
    engine.start_recovered();
    engine
}

/// Follows a job to its end: how many `stamp` messages it saw, and the latencies (µs) of those
/// it saw live (those reported before it subscribed are replayed history, not a delay).
async fn follow(engine: &JobEngine, id: sse_progress::model::JobId) -> (usize, Vec<u64>) {
    let mut sub = engine.subscribe(id, None).await.expect("the store answers").expect("kept");
    let subscribed = micros_since_base();
    let (mut seen, mut latencies) = (0, Vec::new());
    while let Some(delivery) = sub.next().await {
        let now = micros_since_base();
        if let Delivery::Event(s, _) = delivery {
            if let Ok(sent) = s.message.parse::<u64>() {
                seen += 1;
                if sent >= subscribed {
                    latencies.push(now.saturating_sub(sent));
                }
            }
        }
    }
    (seen, latencies)
}

async fn measure(name: &'static str, store: Arc<dyn JobStore>, jobs: usize, events: u32) -> Figures {
    let (rss_before, _) = memory_kib();
    let engine = engine_on(store, jobs);

    // 1. Throughput: every job at once, as fast as they can report.
    let events_per_sec = flat_out(&engine, jobs, events).await;

    // 2. Append-to-visible latency at a steady 10,000 events/s: 100 jobs x 100/s for 5 s.
    let latencies = fan_out(&engine, &engine, 1, json!({"events": 500, "interval_us": 10_000})).await;

    // 3. Start to first event: one start at a time, then its first event seen.
    let mut firsts = Vec::new();
    for _ in 0..300 {
        let t = Instant::now();
        let id = engine.start("stamp", json!({"events": 1, "interval_us": 0})).await.expect("starts");
        let mut sub = engine.subscribe(id, None).await.expect("the store answers").expect("kept");
        sub.next().await.expect("a first event");
        firsts.push(u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX));
    }
    firsts.sort_unstable();
    engine.shutdown(Duration::from_secs(5)).await;
    let (rss_after, _) = memory_kib();

    Figures {
        store: name,
        events_per_sec,
        visible_p50_ms: percentile(&latencies, 0.5),
        visible_p99_ms: percentile(&latencies, 0.99),
        first_p50_ms: percentile(&firsts, 0.5),
        first_p99_ms: percentile(&firsts, 0.99),
        rss_kib: rss_after.saturating_sub(rss_before),
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let which = args
        .iter()
        .find(|a| ["memory", "sqlite", "redis", "cross", "all"].contains(&a.as_str()))
        .cloned()
        .unwrap_or_else(|| "all".into());
    let wanted = |store: &str| which == "all" || which == store;
    let numbers: Vec<u64> = args.iter().filter_map(|a| a.parse().ok()).collect();
    let jobs = numbers.first().copied().unwrap_or(2000) as usize;
    let events = u32::try_from(numbers.get(1).copied().unwrap_or(50)).unwrap_or(50);
    BASE.get_or_init(Instant::now);

    let dir = tempfile::tempdir().expect("a temporary folder");
    let mut figures = Vec::new();
    if wanted("memory") {
        figures.push(measure("memory", Arc::new(MemoryStore::new()), jobs, events).await);
    }
    if wanted("sqlite") {
        let store = SqliteStore::open(dir.path().join("bench.db")).expect("opens");
        figures.push(measure("sqlite", Arc::new(store), jobs, events).await);
        let mib = |name: &str| std::fs::metadata(dir.path().join(name)).map_or(0, |m| m.len()) / (1024 * 1024);
        println!("sqlite file {} MiB, its WAL {} MiB", mib("bench.db"), mib("bench.db-wal"));
    }
    if wanted("redis") {
        let server = RedisProcess::start();
        figures.push(measure("redis", redis_store(&server.url).await, jobs, events).await);
    }
    if wanted("cross") {
        let server = RedisProcess::start();
        measure_cross(&server.url, jobs, events).await;
    }

    println!(
        "throughput: {jobs} jobs x {events} events at once; latency: 100 jobs x 100 events/s (10,000/s); 300 starts"
    );
    println!(
        "{:<8} {:>14} {:>16} {:>16} {:>18} {:>18} {:>12}",
        "store", "events/s", "visible p50 ms", "visible p99 ms", "first event p50", "first event p99", "RSS +MiB"
    );
    for f in figures {
        println!(
            "{:<8} {:>14.0} {:>16.2} {:>16.2} {:>15.2} ms {:>15.2} ms {:>12.1}",
            f.store,
            f.events_per_sec,
            f.visible_p50_ms,
            f.visible_p99_ms,
            f.first_p50_ms,
            f.first_p99_ms,
            f.rss_kib as f64 / 1024.0
        );
    }
}
