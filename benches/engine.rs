//! Engine load benchmark: thousands of `ticker` jobs at once, each followed by a subscriber.
//! Prints throughput and memory figures; asserts nothing about time.
//!
//! `cargo bench --bench engine -- [jobs] [steps] [interval_ms]` (defaults 10000 20 10).

#![allow(clippy::print_stdout)] // printing the figures is the point

use std::time::{Duration, Instant};

use serde_json::json;
use sse_progress::jobs::{kinds, EngineConfig, JobEngine};

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

#[tokio::main]
async fn main() {
    let args: Vec<u64> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let jobs = args.first().copied().unwrap_or(10_000) as usize;
    let steps = args.get(1).copied().unwrap_or(20);
    let interval_ms = args.get(2).copied().unwrap_or(10);

    // Every job runs at once: this measures the engine, not the queue.
    let config = EngineConfig { max_jobs: jobs + 1, max_running: jobs, max_queued: jobs, ..Default::default() };
    let engine = JobEngine::new(config, kinds::builtin());
    let (rss_before, _) = memory_kib();
    let started = Instant::now();
    let mut readers = Vec::with_capacity(jobs);
    for _ in 0..jobs {
        let id = engine
            .start("ticker", json!({"steps": steps, "interval_ms": interval_ms}))
            .expect("job starts");
        let mut sub = engine.subscribe(id, None).expect("job exists");
        readers.push(tokio::spawn(async move {
            let mut n = 0u64;
            while sub.next().await.is_some() {
                n += 1;
            }
            n
        }));
    }
    let start_elapsed = started.elapsed();
    let mut delivered = 0;
    for r in readers {
        delivered += r.await.expect("reader");
    }
    let elapsed = started.elapsed();
    let (rss_after, peak) = memory_kib();
    let ideal = Duration::from_millis(steps * interval_ms);

    println!("jobs                 {jobs} x {steps} steps every {interval_ms} ms (ideal run {ideal:?})");
    println!("start {jobs} jobs       {start_elapsed:?} ({:.1} µs per job)", start_elapsed.as_secs_f64() * 1e6 / jobs as f64);
    println!("all ended after      {elapsed:?}");
    println!("events delivered     {delivered} ({:.0} per second)", delivered as f64 / elapsed.as_secs_f64());
    println!("memory               {rss_before} KiB before, {rss_after} KiB after, {peak} KiB peak");
    println!(
        "kept per ended job   {:.1} KiB ({} jobs kept for their retention)",
        rss_after.saturating_sub(rss_before) as f64 / jobs as f64,
        engine.job_count()
    );
}
