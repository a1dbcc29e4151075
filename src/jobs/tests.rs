//! Engine behaviour as its users see it, against every store (one suite, each test run once
//! per backend): sequencing, replay from N, the replay bound, failure, cancellation, late and
//! slow subscribers, retention, restarts graceful and not, owners. Timed jobs run on paused
//! time (the store's writes run on the blocking pool, which holds paused time still).

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use super::kinds::builtin;
use super::store::memory::MemoryStore;
use super::store::redis::RedisStore;
use super::store::sqlite::SqliteStore;
use super::store::JobStore;
use super::*;
use crate::model::{JobId, JobStatus, Snapshot};

/// A store to run the suite against, and the folder that holds its file, if any.
pub(super) struct Backend {
    pub(super) store: Arc<dyn JobStore>,
    _dir: Option<tempfile::TempDir>,
    _redis: Option<RedisProcess>,
}

pub(super) fn memory() -> Backend {
    Backend { store: Arc::new(MemoryStore::new()), _dir: None, _redis: None }
}

pub(super) fn sqlite() -> Backend {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let store = SqliteStore::open(dir.path().join("jobs.db")).expect("a fresh store opens");
    Backend { store: Arc::new(store), _dir: Some(dir), _redis: None }
}

#[path = "../../tests/it/common/redis.rs"]
mod redis_process;
pub(super) use redis_process::RedisProcess;

pub(super) fn redis() -> Backend {
    let process = RedisProcess::start();
    let store = RedisStore::open(&process.url).expect("a redis-server that answers PING opens as a store");
    Backend { store: Arc::new(store), _dir: None, _redis: Some(process) }
}

/// An engine on the backend's store, running what it read back.
pub(super) fn engine_on(b: &Backend, config: EngineConfig, kinds: KindRegistry) -> JobEngine {
    let (engine, _) = JobEngine::open(config, kinds, b.store.clone()).expect("the store opens");
    engine.start_recovered();
    engine
}

fn engine_with(b: &Backend, config: EngineConfig) -> JobEngine {
    engine_on(b, config, builtin())
}

fn engine(b: &Backend) -> JobEngine {
    engine_with(b, EngineConfig::default())
}

pub(super) async fn collect(mut sub: Subscription) -> Vec<Delivery> {
    let mut out = Vec::new();
    while let Some(d) = sub.next().await {
        out.push(d);
    }
    out
}

pub(super) fn events(deliveries: &[Delivery]) -> Vec<Arc<Snapshot>> {
    deliveries
        .iter()
        .filter_map(|d| match d {
            Delivery::Event(s, _) => Some(s.clone()),
            Delivery::Log(..) => None,
            Delivery::Reset(s, _) => panic!("unexpected reset at seq {}", s.seq),
        })
        .collect()
}

pub(super) fn seqs(deliveries: &[Delivery]) -> Vec<u64> {
    deliveries.iter().map(Delivery::seq).collect()
}

async fn run_to_end(engine: &JobEngine, kind: &str, params: serde_json::Value) -> (JobId, Vec<Delivery>) {
    let id = engine.start(kind, params).await.expect("job starts");
    let sub = engine.subscribe(id, None).await.expect("the store answers").expect("job exists");
    (id, collect(sub).await)
}

async fn every_event_has_the_next_sequence_number_from_pending_to_completed(b: Backend) {
    let engine = engine(&b);
    let (_, all) = run_to_end(&engine, "ticker", json!({"steps": 3, "interval_ms": 100})).await;
    let all = events(&all);
    let seqs: Vec<u64> = all.iter().map(|s| s.seq).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
    assert_eq!(all[0].status, JobStatus::Pending);
    assert_eq!(all[1].status, JobStatus::Running);
    let last = all.last().expect("events");
    assert_eq!(last.status, JobStatus::Completed);
    assert_eq!(last.progress, 100.0);
    assert_eq!(last.data, Some(json!({"ticks": 3})));
    assert_eq!((last.step_index, last.step_count, last.step.as_str()), (3, 3, "Tick 3"));
    // Progress never goes backwards for a job that only moves forward.
    assert!(all.windows(2).all(|w| w[0].progress <= w[1].progress));
}

async fn subscribing_after_n_yields_exactly_the_events_after_n(b: Backend) {
    let engine = engine(&b);
    let (id, all) = run_to_end(&engine, "ticker", json!({"steps": 4, "interval_ms": 50})).await;
    let newest = all.last().expect("events").seq();
    for after in [0, 1, 3, newest - 1] {
        let tail =
            collect(engine.subscribe(id, Some(after)).await.expect("the store answers").expect("job exists")).await;
        assert_eq!(seqs(&tail), ((after + 1)..=newest).collect::<Vec<_>>(), "after {after}");
        assert_eq!(events(&tail), events(&all)[after as usize..]);
    }
    let nothing =
        collect(engine.subscribe(id, Some(newest)).await.expect("the store answers").expect("job exists")).await;
    assert!(nothing.is_empty(), "a subscriber that saw the end gets nothing more");
}

async fn a_subscriber_older_than_the_replay_log_is_told_with_a_reset(b: Backend) {
    let engine = engine_with(&b, EngineConfig { replay_capacity: 4, ..Default::default() });
    let (id, _) = run_to_end(&engine, "ticker", json!({"steps": 10, "interval_ms": 10})).await;
    let newest = engine.snapshot(id).await.expect("the store answers").expect("kept").seq;
    // From the start: one reset carrying the final state, then the end.
    let from_start = collect(engine.subscribe(id, None).await.expect("the store answers").expect("job exists")).await;
    assert_eq!(from_start.len(), 1);
    let Delivery::Reset(state, _) = &from_start[0] else { panic!("expected a reset") };
    assert_eq!((state.seq, state.status), (newest, JobStatus::Completed));
    // Within the log: plain events, no reset.
    let tail =
        collect(engine.subscribe(id, Some(newest - 4)).await.expect("the store answers").expect("job exists")).await;
    assert_eq!(seqs(&tail), ((newest - 3)..=newest).collect::<Vec<_>>());
    events(&tail);
}

async fn a_slow_subscriber_never_holds_the_job_back(b: Backend) {
    let engine = engine_with(&b, EngineConfig { replay_capacity: 8, ..Default::default() });
    let id = engine.start("ticker", json!({"steps": 50, "interval_ms": 10})).await.expect("starts");
    let mut slow = engine.subscribe(id, None).await.expect("the store answers").expect("job exists");
    let first = slow.next().await.expect("pending event");
    assert_eq!(first.seq(), 1);
    // The slow subscriber reads nothing more while the whole job runs.
    let fast = collect(engine.subscribe(id, Some(1)).await.expect("the store answers").expect("job exists")).await;
    assert_eq!(fast.last().expect("events").state().expect("a state").status, JobStatus::Completed);
    // Then it gets what it had already read from the log (if anything) and is told it fell
    // behind, with the final state: no silent skip.
    let rest = collect(slow).await;
    let (last, before) = rest.split_last().expect("deliveries");
    assert!(matches!(last, Delivery::Reset(s, _) if s.status == JobStatus::Completed), "{last:?}");
    assert_eq!(seqs(before), (2..2 + before.len() as u64).collect::<Vec<_>>(), "in order up to the reset");
}

async fn a_late_subscriber_gets_the_rest_of_a_running_job_live(b: Backend) {
    let engine = engine(&b);
    let id = engine.start("ticker", json!({"steps": 6, "interval_ms": 100})).await.expect("starts");
    tokio::time::sleep(Duration::from_millis(350)).await;
    let seen = engine.snapshot(id).await.expect("the store answers").expect("kept");
    assert_eq!(seen.status, JobStatus::Running);
    let rest = events(
        &collect(engine.subscribe(id, Some(seen.seq)).await.expect("the store answers").expect("job exists")).await,
    );
    assert_eq!(rest[0].seq, seen.seq + 1);
    assert_eq!(rest.last().expect("events").status, JobStatus::Completed);
}

async fn a_failing_job_ends_failed_with_its_error_at_the_chosen_step(b: Backend) {
    let engine = engine(&b);
    let (_, all) = run_to_end(&engine, "failing", json!({"steps": 4, "fail_at_step": 2, "step_ms": 100})).await;
    let last = events(&all).pop().expect("events");
    assert_eq!(last.status, JobStatus::Failed);
    assert_eq!((last.step_index, last.step.as_str()), (2, "Parsing records"));
    let error = last.error.as_deref().expect("an error message");
    assert!(error.starts_with("Parsing records failed at record"), "{error}");
    assert!(last.progress < 50.0, "progress stops where the job failed: {}", last.progress);
    assert_eq!(last.data, None);

    // A step past the last is the last: any params the schema allows make a job that fails.
    let (_, all) = run_to_end(&engine, "failing", json!({"steps": 2, "fail_at_step": 5, "step_ms": 10})).await;
    let last = events(&all).pop().expect("events");
    assert_eq!((last.status, last.step_index), (JobStatus::Failed, 2));
}

async fn cancelling_is_seen_by_the_job_and_ends_it_cancelled(b: Backend) {
    let engine = engine(&b);
    let id = engine.start("ticker", json!({"steps": 100, "interval_ms": 1000})).await.expect("starts");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(engine.cancel(id).await.expect("the store answers"), Some(CancelOutcome::Requested));
    let rest = collect(
        engine
            .subscribe(id, Some(engine.snapshot(id).await.expect("the store answers").expect("kept").seq - 1))
            .await
            .expect("the store answers")
            .expect("job exists"),
    )
    .await;
    let last = rest.last().expect("events").state().expect("a state").clone();
    assert_eq!(last.status, JobStatus::Cancelled);
    assert_eq!(last.step_index, 2, "the job stopped where it was");
    assert_eq!(
        engine.cancel(id).await.expect("the store answers"),
        Some(CancelOutcome::AlreadyEnded(JobStatus::Cancelled))
    );
    assert_eq!(engine.cancel(JobId::new_random()).await.expect("the store answers"), None);
}

async fn ended_jobs_are_forgotten_after_their_retention(b: Backend) {
    let engine = engine_with(
        &b,
        EngineConfig {
            retention: Duration::from_secs(60),
            sweep_interval: Duration::from_secs(5),
            ..Default::default()
        },
    );
    let (id, _) = run_to_end(&engine, "ticker", json!({"steps": 1, "interval_ms": 0})).await;
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert!(engine.snapshot(id).await.expect("the store answers").is_some(), "kept during its retention");
    tokio::time::sleep(Duration::from_secs(40)).await;
    assert!(engine.snapshot(id).await.expect("the store answers").is_none(), "forgotten after it");
    assert!(engine.subscribe(id, None).await.expect("the store answers").is_none());
}

async fn a_full_engine_forgets_the_oldest_ended_job_and_refuses_when_all_run(b: Backend) {
    let engine = engine_with(&b, EngineConfig { max_jobs: 2, ..Default::default() });
    let (first, _) = run_to_end(&engine, "ticker", json!({"steps": 1, "interval_ms": 0})).await;
    let _running = engine.start("ticker", json!({"steps": 5, "interval_ms": 1000})).await.expect("room");
    let _also_running = engine.start("ticker", json!({"steps": 5, "interval_ms": 1000})).await.expect("evicts");
    assert!(engine.snapshot(first).await.expect("the store answers").is_none(), "the ended job made room");
    let refused = engine.start("ticker", json!({})).await.expect_err("all running");
    assert_eq!(refused, StartError::AtCapacity { limit: 2 });
    assert_eq!(engine.job_count(), 2);
}

async fn bad_kinds_and_params_are_refused_with_what_is_allowed(b: Backend) {
    let engine = engine(&b);
    let err = engine.start("nope", json!({})).await.expect_err("unknown kind");
    assert_eq!(err.to_string(), "unknown job kind \"nope\"; the known kinds are: checksum, discover, failing, ticker");
    let err = engine.start("ticker", json!({"steps": 0})).await.expect_err("out of range");
    assert_eq!(err.to_string(), "invalid params for job kind \"ticker\": steps must be between 1 and 100000, got 0");
    let err = engine.start("ticker", json!({"stepz": 3})).await.expect_err("unknown field");
    assert!(err.to_string().contains("unknown field `stepz`"), "{err}");
    let err = engine.start("ticker", json!({"steps": "ten"})).await.expect_err("wrong type");
    assert!(err.to_string().contains("invalid type: string \"ten\""), "{err}");
    let err = engine.start("ticker", json!({"steps": 2.5})).await.expect_err("not whole");
    assert!(err.to_string().contains("invalid type: floating point `2.5`"), "{err}");
    assert_eq!(engine.job_count(), 0, "nothing was started");
    // JSON does not tell 3.0 from 3 (nor does JSON Schema's `integer`): both are three steps.
    let id = engine.start("ticker", json!({"steps": 3.0, "interval_ms": 1})).await.expect("3.0 is 3");
    assert_eq!(engine.snapshot(id).await.expect("the store answers").expect("kept").kind, "ticker");
}

async fn the_checksum_job_does_real_work_and_returns_a_verified_digest(b: Backend) {
    let engine = engine(&b);
    let params = json!({"size_mib": 2, "chunk_kib": 256, "chunk_delay_ms": 0, "seed": 7});
    let (_, all) = run_to_end(&engine, "checksum", params.clone()).await;
    let all = events(&all);
    let last = all.last().expect("events");
    assert_eq!(last.status, JobStatus::Completed, "{:?}", last.error);
    let data = last.data.as_ref().expect("a result");
    assert_eq!(data["bytes"], 2 * 1024 * 1024);
    assert_eq!(data["chunks"], 8);
    assert_eq!(data["verified"], true);
    let names: Vec<&str> = all.iter().map(|s| s.step.as_str()).collect();
    for step in ["Preparing", "Hashing", "Verifying", "Summarizing"] {
        assert!(names.contains(&step), "step {step} reported");
    }
    // Same seed, same data, same digest.
    let (_, again) = run_to_end(&engine, "checksum", params).await;
    let again = again.last().expect("events").state().expect("a state").clone();
    assert_eq!(again.data.as_ref().expect("a result")["sha256"], data["sha256"]);
}

async fn a_panicking_job_fails_without_taking_the_engine_down(b: Backend) {
    #[derive(serde::Deserialize, serde::Serialize, Default, schemars::JsonSchema)]
    struct NoParams {}
    impl JobParams for NoParams {}
    let mut kinds = builtin();
    kinds.register("boom", "panics", |_: NoParams, _r: ProgressReporter| async move {
        if true {
            panic!("boom");
        }
        Ok(())
    });
    let engine = engine_on(&b, EngineConfig::default(), kinds);
    let (_, all) = run_to_end(&engine, "boom", json!(null)).await;
    let last = all.last().expect("events").state().expect("a state").clone();
    assert_eq!(last.status, JobStatus::Failed);
    assert!(last.error.as_deref().unwrap_or_default().contains("internal error"));
    let (_, ok) = run_to_end(&engine, "ticker", json!({"steps": 1, "interval_ms": 0})).await;
    assert_eq!(ok.last().expect("events").state().expect("a state").status, JobStatus::Completed);
}

async fn shutdown_stops_running_jobs_and_refuses_new_ones(b: Backend) {
    let engine = engine(&b);
    let id = engine.start("failing", json!({"steps": 4, "fail_at_step": 4, "step_ms": 60000})).await.expect("starts");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(engine.shutdown(Duration::from_secs(5)).await, "jobs stopped in time");
    let last = engine.snapshot(id).await.expect("the store answers").expect("kept");
    assert_eq!(last.status, JobStatus::Interrupted, "a job that cannot resume ends visibly");
    assert_eq!(last.error.as_deref(), Some(runner::STOPPED));
    assert_eq!(engine.start("ticker", json!({})).await, Err(StartError::ShuttingDown));
}

async fn past_max_running_jobs_wait_in_order_and_a_cancelled_waiter_never_runs(b: Backend) {
    let engine = engine_with(&b, EngineConfig { max_running: 1, max_queued: 2, ..Default::default() });
    let slow = json!({"steps": 2, "interval_ms": 100});
    let first = engine.start("ticker", slow.clone()).await.expect("runs");
    let second = engine.start("ticker", slow.clone()).await.expect("queued");
    let third = engine.start("ticker", slow.clone()).await.expect("queued");
    let full = engine.start("ticker", slow.clone()).await.expect_err("queue full");
    assert_eq!(full, StartError::QueueFull { running: 1, queued: 2 });
    let waiting = |id| {
        let engine = engine.clone();
        async move { engine.snapshot(id).await.expect("the store answers").expect("kept") }
    };
    assert_eq!((waiting(second).await.status, waiting(second).await.queue_position), (JobStatus::Pending, Some(1)));
    assert_eq!(waiting(third).await.queue_position, Some(2));

    assert_eq!(engine.cancel(second).await.expect("the store answers"), Some(CancelOutcome::Withdrawn));
    assert_eq!(waiting(second).await.status, JobStatus::Cancelled, "a waiting job ends at once, and says so");
    assert_eq!(waiting(third).await.queue_position, Some(1), "the one behind moves up");

    let first_done = collect(engine.subscribe(first, None).await.expect("the store answers").expect("kept")).await;
    let third_done = collect(engine.subscribe(third, None).await.expect("the store answers").expect("kept")).await;
    assert_eq!(first_done.last().expect("events").state().expect("a state").status, JobStatus::Completed);
    let third_done = events(&third_done);
    assert_eq!(third_done.last().expect("events").status, JobStatus::Completed);
    assert!(third_done.iter().any(|s| s.status == JobStatus::Running && s.queue_position.is_none()));
    // The cancelled waiter's code never ran: it never left `pending`.
    let second_all =
        events(&collect(engine.subscribe(second, None).await.expect("the store answers").expect("kept")).await);
    assert!(second_all.iter().all(|s| s.status != JobStatus::Running));
}

/// Events a subscription delivers from the start, as (seq, status, message) for comparing.
fn trail(deliveries: &[Delivery]) -> Vec<(u64, Option<JobStatus>)> {
    deliveries.iter().map(|d| (d.seq(), d.state().map(|s| s.status))).collect()
}

async fn a_graceful_restart_resumes_resumable_jobs_and_keeps_waiting_ones(b: Backend) {
    let config = EngineConfig { max_running: 1, ..Default::default() };
    let first = engine_with(&b, config.clone());
    let ticking = first.start("ticker", json!({"steps": 6, "interval_ms": 100})).await.expect("runs");
    let waiting = first.start("ticker", json!({"steps": 2, "interval_ms": 10})).await.expect("queued");
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert!(first.shutdown(Duration::from_secs(5)).await);
    let paused = first.snapshot(ticking).await.expect("the store answers").expect("kept");
    if !b.store.outlives_process() {
        // Nothing survives this store: both end visibly instead of waiting forever.
        assert_eq!(paused.status, JobStatus::Interrupted);
        assert_eq!(
            first.snapshot(waiting).await.expect("the store answers").expect("kept").status,
            JobStatus::Interrupted
        );
        return;
    }
    assert_eq!(paused.status, JobStatus::Running, "left at its checkpoint");
    assert!(paused.step_index >= 2, "it got somewhere: {paused:?}");
    drop(first);

    let second = engine_with(&b, config);
    let all = collect(second.subscribe(ticking, None).await.expect("the store answers").expect("read back")).await;
    assert_eq!(seqs(&all), (1..=all.len() as u64).collect::<Vec<_>>(), "no gap, no repeat");
    let states = events(&all);
    let last = states.last().expect("events");
    assert_eq!((last.status, last.data.clone()), (JobStatus::Completed, Some(json!({"ticks": 6}))));
    let resumed_at =
        states.iter().position(|s| s.message == "Resumed after a server restart").expect("says it resumed");
    assert_eq!(states[resumed_at].seq, paused.seq + 1, "goes on at the next number");
    let mut ticks: Vec<u32> = states.iter().filter(|s| s.message.starts_with("Tick ")).map(|s| s.step_index).collect();
    assert!(ticks.windows(2).all(|w| w[0] < w[1]), "every tick once, in order: {ticks:?}");
    // The tick the restart came in the middle of may be told by "Resumed ..." instead.
    ticks.push(states[resumed_at].step_index);
    ticks.sort_unstable();
    ticks.dedup();
    assert_eq!(ticks, (1..=6).collect::<Vec<u32>>(), "every tick, none skipped");
    let queued =
        events(&collect(second.subscribe(waiting, None).await.expect("the store answers").expect("read back")).await);
    assert_eq!(queued.last().expect("events").status, JobStatus::Completed, "the waiting job ran after the restart");
}

async fn jobs_cut_short_by_a_crash_resume_or_end_visibly(b: Backend) {
    // What a killed process leaves: the store as it was at one instant, mid-job.
    let scratch = memory();
    let config = EngineConfig { max_running: 2, ..Default::default() };
    let before = engine_with(&scratch, config.clone());
    let ticking = before.start("ticker", json!({"steps": 5, "interval_ms": 100})).await.expect("runs");
    let failing = before.start("failing", json!({"step_ms": 60000})).await.expect("runs");
    let waiting = before.start("ticker", json!({"steps": 1, "interval_ms": 0})).await.expect("queued");
    tokio::time::sleep(Duration::from_millis(250)).await;
    before.flush().await;
    let at_crash = scratch.store.load().expect("loads");
    before.shutdown(Duration::from_secs(1)).await;
    let batch = store::Batch {
        created: at_crash.iter().map(|(row, _)| row.clone()).collect(),
        writes: at_crash
            .iter()
            .map(|(row, events)| store::JobWrite {
                events: events.clone(),
                state: Some(row.state.clone()),
                checkpoint: row.checkpoint.clone(),
                ..store::JobWrite::new(row.id)
            })
            .collect(),
        removed: Vec::new(),
    };
    b.store.write(&batch).expect("the crashed state is written");
    let seq_at_crash = |id| at_crash.iter().find(|(r, _)| r.id == id).map(|(r, _)| r.state.seq).expect("kept");

    let (after, found) = JobEngine::open(config, builtin(), b.store.clone()).expect("opens");
    assert_eq!(found, Recovered { jobs: 3, queued: 1, resumed: 1, interrupted: 1 });
    after.start_recovered();
    let cut = events(
        &collect(
            after.subscribe(failing, Some(seq_at_crash(failing))).await.expect("the store answers").expect("read back"),
        )
        .await,
    );
    assert_eq!(cut.len(), 1, "one more event: the end");
    assert_eq!((cut[0].seq, cut[0].status), (seq_at_crash(failing) + 1, JobStatus::Interrupted));
    assert_eq!(cut[0].error.as_deref(), Some(runner::RESTARTED));
    let resumed = collect(after.subscribe(ticking, None).await.expect("the store answers").expect("read back")).await;
    assert_eq!(seqs(&resumed), (1..=resumed.len() as u64).collect::<Vec<_>>(), "no gap, no repeat");
    assert_eq!(events(&resumed).last().expect("events").data, Some(json!({"ticks": 5})));
    let ran =
        events(&collect(after.subscribe(waiting, None).await.expect("the store answers").expect("read back")).await);
    assert_eq!(ran.last().expect("events").status, JobStatus::Completed);
}

async fn the_owner_limit_holds_exactly_under_concurrent_starts(b: Backend) {
    let engine = engine_with(&b, EngineConfig { max_active_per_owner: 5, ..Default::default() });
    let long = json!({"steps": 100, "interval_ms": 1000});
    let starts = (0..20).map(|_| engine.start_for(Some("owner-a"), "ticker", long.clone()));
    let results = futures::future::join_all(starts).await;
    let accepted = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(accepted, 5);
    assert!(results.iter().all(|r| r.is_ok() || *r == Err(StartError::OwnerLimit { limit: 5 })));
    assert_eq!(engine.jobs_of("owner-a").await.expect("the store answers").len(), 5);
    engine.start_for(Some("owner-b"), "ticker", long).await.expect("another owner is not limited by a");
}

async fn an_owner_is_told_of_its_own_new_jobs_only(b: Backend) {
    let engine = engine(&b);
    let mut feed = engine.watch_owner("owner-a");
    feed.mark_seen();
    engine.start_for(Some("owner-b"), "ticker", json!({"steps": 1, "interval_ms": 0})).await.expect("starts");
    assert!(!feed.has_changed(), "another owner's job does not wake a's feeds");
    let mine =
        engine.start_for(Some("owner-a"), "ticker", json!({"steps": 1, "interval_ms": 0})).await.expect("starts");
    assert!(feed.has_changed());
    let listed: Vec<JobId> = engine.jobs_of("owner-a").await.expect("the store answers").iter().map(|s| s.id).collect();
    assert_eq!(listed, vec![mine]);
}

async fn the_store_keeps_exactly_what_subscribers_were_shown(b: Backend) {
    let engine = engine(&b);
    let (id, shown) =
        run_to_end(&engine, "checksum", json!({"size_mib": 1, "chunk_kib": 256, "chunk_delay_ms": 0})).await;
    engine.flush().await;
    let kept = b.store.load().expect("loads");
    let (row, stored) = kept.iter().find(|(r, _)| r.id == id).expect("the job is kept");
    let stored: Vec<Delivery> = stored
        .iter()
        .map(|e| match e {
            JobEvent::State(s, json) => Delivery::Event(s.clone(), json.clone()),
            JobEvent::Log(l, json) => Delivery::Log(l.clone(), json.clone()),
        })
        .collect();
    assert_eq!(stored, shown, "same numbers, same data");
    assert_eq!(trail(&stored).last(), Some(&(row.state.seq, Some(JobStatus::Completed))));
    assert_eq!(row.kind, "checksum");
    assert_eq!(row.params["size_mib"], 1);
}

async fn swept_jobs_leave_the_store_too(b: Backend) {
    let engine = engine_with(
        &b,
        EngineConfig {
            retention: Duration::from_secs(60),
            sweep_interval: Duration::from_secs(5),
            ..Default::default()
        },
    );
    let (id, _) = run_to_end(&engine, "ticker", json!({"steps": 1, "interval_ms": 0})).await;
    engine.flush().await;
    assert!(b.store.load().expect("loads").iter().any(|(r, _)| r.id == id), "the ended job is in the store");
    tokio::time::sleep(Duration::from_secs(70)).await;
    engine.flush().await;
    assert!(engine.snapshot(id).await.expect("the store answers").is_none());
    assert!(b.store.load().expect("loads").iter().all(|(r, _)| r.id != id), "its rows are gone");
}

/// A new job's row, as the engine would create it.
fn new_row() -> super::store::JobRow {
    let id = JobId::new_random();
    super::store::JobRow {
        id,
        kind: "ticker".into(),
        params: json!({}),
        owner: None,
        state: Arc::new(Snapshot::pending(id, "ticker", 1)),
        checkpoint: None,
        cancel_requested: false,
        started_ms: None,
        ended_ms: None,
    }
}

/// A write of `row`'s state events numbered `seqs`, forgetting events up to `forget_through`.
fn write_of(
    row: &super::store::JobRow,
    seqs: std::ops::RangeInclusive<u64>,
    forget_through: u64,
) -> super::store::JobWrite {
    let events: Vec<JobEvent> = seqs
        .map(|seq| {
            let mut state = Snapshot::clone(&row.state);
            state.seq = seq;
            JobEvent::state(Arc::new(state))
        })
        .collect();
    let state = match events.last() {
        Some(JobEvent::State(state, _)) => Some(state.clone()),
        _ => None,
    };
    super::store::JobWrite { events, state, forget_through, ..super::store::JobWrite::new(row.id) }
}

fn kept_seqs(store: &dyn JobStore, id: JobId) -> Vec<u64> {
    let loaded = store.load().expect("loads");
    let (_, events) = loaded.iter().find(|(row, _)| row.id == id).expect("the job is kept");
    events.iter().map(JobEvent::seq).collect()
}

async fn a_write_that_does_not_fit_is_refused_alone_and_the_rest_is_written(b: Backend) {
    use super::store::Batch;
    let store = &*b.store;
    let rows: Vec<_> = (0..3).map(|_| new_row()).collect();
    let created = Batch {
        created: rows.clone(),
        writes: rows.iter().map(|row| write_of(row, 1..=1, 0)).collect(),
        ..Batch::default()
    };
    assert_eq!(store.write(&created).expect("written"), Vec::<JobId>::new());

    let stranger = new_row();
    let batch = Batch {
        writes: vec![write_of(&rows[0], 3..=3, 0), write_of(&rows[1], 2..=2, 0), write_of(&stranger, 2..=2, 0)],
        ..Batch::default()
    };
    let mut refused = store.write(&batch).expect("the batch is written, less what does not fit");
    refused.sort();
    let mut expected = vec![rows[0].id, stranger.id];
    expected.sort();
    assert_eq!(refused, expected, "a gap and a job not kept are refused");
    assert_eq!(kept_seqs(store, rows[0].id), [1], "nothing of the refused write is kept");
    assert_eq!(kept_seqs(store, rows[1].id), [1, 2], "the write that fits is kept");

    // A write that waited out an outage keeps only what would be kept: it may leave out
    // exactly the events it forgets.
    let coalesced = Batch { writes: vec![write_of(&rows[2], 10..=12, 9)], ..Batch::default() };
    assert_eq!(store.write(&coalesced).expect("written"), Vec::<JobId>::new());
    assert_eq!(kept_seqs(store, rows[2].id), [10, 11, 12]);
    let past = Batch { writes: vec![write_of(&rows[2], 14..=14, 12)], ..Batch::default() };
    assert_eq!(store.write(&past).expect("written"), vec![rows[2].id], "13 is neither kept nor forgotten");
}

/// The file under a SQLite backend, for a test that changes it behind the engine's back.
fn sqlite_file(b: &Backend) -> rusqlite::Connection {
    let path = b._dir.as_ref().expect("a SQLite backend").path().join("jobs.db");
    let conn = rusqlite::Connection::open(path).expect("the file opens");
    conn.busy_timeout(Duration::from_secs(10)).expect("a busy timeout");
    conn
}

#[tokio::test]
async fn a_job_whose_writes_the_store_refuses_holds_no_other_job_up() {
    let b = sqlite();
    let engine = engine(&b);
    let doomed = engine.start("ticker", json!({"steps": 400, "interval_ms": 10})).await.expect("starts");
    // An event far ahead of the doomed job's, as a buggy or foreign writer would leave: none of
    // the job's next events follow the kept ones any more.
    sqlite_file(&b)
        .execute("INSERT INTO events (job, seq, log, data) VALUES (?1, 1000000, 0, '{}')", [doomed.to_string()])
        .expect("written");
    let other = engine.start("ticker", json!({"steps": 20, "interval_ms": 10})).await.expect("starts");
    let seen = tokio::time::timeout(
        Duration::from_secs(30),
        collect(engine.subscribe(other, None).await.expect("the store answers").expect("kept")),
    )
    .await
    .expect("the other job is not held up");
    assert_eq!(events(&seen).last().map(|s| s.status), Some(JobStatus::Completed));
    assert!(engine.ready().await.is_ok(), "the store takes every other write: {:?}", engine.ready().await);
    // The doomed job ended where the store refused it: its code was told to stop, its
    // followers' streams end, and it holds no place in any bound.
    let followed = engine.subscribe(doomed, None).await.expect("the store answers").expect("kept");
    tokio::time::timeout(Duration::from_secs(10), collect(followed)).await.expect("its stream ends");
    assert!(matches!(engine.cancel(doomed).await.expect("the store answers"), Some(CancelOutcome::AlreadyEnded(_))));
}

/// Runs each named behaviour test against every store: `memory_store::name`,
/// `sqlite_store::name` and `redis_store::name` (on a `redis-server` of its own).
macro_rules! store_suite {
    ($($(#[$attr:meta])* $name:ident),* $(,)?) => {
        mod memory_store {
            $( $(#[$attr])* async fn $name() { super::$name(super::memory()).await } )*
        }
        mod sqlite_store {
            $( $(#[$attr])* async fn $name() { super::$name(super::sqlite()).await } )*
        }
        mod redis_store {
            $( $(#[$attr])* async fn $name() { super::$name(super::redis()).await } )*
        }
    };
}

store_suite! {
    #[tokio::test(start_paused = true)] a_graceful_restart_resumes_resumable_jobs_and_keeps_waiting_ones,
    #[tokio::test(start_paused = true)] jobs_cut_short_by_a_crash_resume_or_end_visibly,
    #[tokio::test(start_paused = true)] the_owner_limit_holds_exactly_under_concurrent_starts,
    #[tokio::test(start_paused = true)] an_owner_is_told_of_its_own_new_jobs_only,
    #[tokio::test] the_store_keeps_exactly_what_subscribers_were_shown,
    #[tokio::test] a_write_that_does_not_fit_is_refused_alone_and_the_rest_is_written,
    #[tokio::test(start_paused = true)] swept_jobs_leave_the_store_too,
    #[tokio::test(start_paused = true)] every_event_has_the_next_sequence_number_from_pending_to_completed,
    #[tokio::test(start_paused = true)] subscribing_after_n_yields_exactly_the_events_after_n,
    #[tokio::test(start_paused = true)] a_subscriber_older_than_the_replay_log_is_told_with_a_reset,
    #[tokio::test(start_paused = true)] a_slow_subscriber_never_holds_the_job_back,
    #[tokio::test(start_paused = true)] a_late_subscriber_gets_the_rest_of_a_running_job_live,
    #[tokio::test(start_paused = true)] a_failing_job_ends_failed_with_its_error_at_the_chosen_step,
    #[tokio::test(start_paused = true)] cancelling_is_seen_by_the_job_and_ends_it_cancelled,
    #[tokio::test(start_paused = true)] ended_jobs_are_forgotten_after_their_retention,
    #[tokio::test(start_paused = true)] a_full_engine_forgets_the_oldest_ended_job_and_refuses_when_all_run,
    #[tokio::test] bad_kinds_and_params_are_refused_with_what_is_allowed,
    #[tokio::test] the_checksum_job_does_real_work_and_returns_a_verified_digest,
    #[tokio::test] a_panicking_job_fails_without_taking_the_engine_down,
    #[tokio::test(start_paused = true)] shutdown_stops_running_jobs_and_refuses_new_ones,
    #[tokio::test(start_paused = true)] past_max_running_jobs_wait_in_order_and_a_cancelled_waiter_never_runs,
}

/// `GET /api/job-kinds` promises each param's range through its schema; validation must agree
/// at both ends, or clients built from the schema get refused (or let through) by surprise.
#[test]
fn every_kinds_schema_states_the_ranges_its_validation_enforces() {
    let kinds = builtin();
    for kind in kinds.descriptions() {
        let properties = kind.params_schema["properties"].as_object().cloned().unwrap_or_default();
        let ranged: Vec<(String, i64, i64)> = properties
            .iter()
            .filter_map(|(field, schema)| {
                Some((field.clone(), schema["minimum"].as_i64()?, schema["maximum"].as_i64()?))
            })
            .collect();
        assert!(!ranged.is_empty(), "{}: no ranges in its schema", kind.name);
        let accepts = |params: Value| matches!(kinds.prepare(&kind.name, params), Some(Ok(_)));
        let all = |pick: fn(i64, i64) -> i64| {
            Value::Object(ranged.iter().map(|(f, lo, hi)| (f.clone(), json!(pick(*lo, *hi)))).collect())
        };
        assert!(accepts(all(|lo, _| lo)), "{}: every param at its minimum is refused", kind.name);
        assert!(accepts(all(|_, hi| hi)), "{}: every param at its maximum is refused", kind.name);
        for (field, lo, hi) in &ranged {
            for outside in [lo - 1, hi + 1] {
                let mut params = kind.defaults.clone();
                params[field.as_str()] = json!(outside);
                let refused = kinds.prepare(&kind.name, params).map(|r| r.err());
                let reason = refused.flatten().unwrap_or_else(|| {
                    panic!("{}: {field} = {outside} is outside {lo}..={hi} but accepted", kind.name)
                });
                assert!(reason.contains(field.as_str()), "{}: {reason:?} does not name {field}", kind.name);
            }
        }
    }
}
