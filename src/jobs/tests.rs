//! Engine behaviour as its users see it: sequencing, replay from N, the replay bound, failure,
//! cancellation, late and slow subscribers, retention. Timed jobs run on paused time.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use super::kinds::builtin;
use super::*;
use crate::model::{JobId, JobStatus, Snapshot};

fn engine_with(config: EngineConfig) -> JobEngine {
    JobEngine::new(config, builtin())
}

fn engine() -> JobEngine {
    engine_with(EngineConfig::default())
}

async fn collect(mut sub: Subscription) -> Vec<Delivery> {
    let mut out = Vec::new();
    while let Some(d) = sub.next().await {
        out.push(d);
    }
    out
}

fn events(deliveries: &[Delivery]) -> Vec<Arc<Snapshot>> {
    deliveries
        .iter()
        .filter_map(|d| match d {
            Delivery::Event(s) => Some(s.clone()),
            Delivery::Log(_) => None,
            Delivery::Reset(s) => panic!("unexpected reset at seq {}", s.seq),
        })
        .collect()
}

fn seqs(deliveries: &[Delivery]) -> Vec<u64> {
    deliveries.iter().map(Delivery::seq).collect()
}

async fn run_to_end(engine: &JobEngine, kind: &str, params: serde_json::Value) -> (JobId, Vec<Delivery>) {
    let id = engine.start(kind, params).expect("job starts");
    let sub = engine.subscribe(id, None).expect("job exists");
    (id, collect(sub).await)
}

#[tokio::test(start_paused = true)]
async fn every_event_has_the_next_sequence_number_from_pending_to_completed() {
    let engine = engine();
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

#[tokio::test(start_paused = true)]
async fn subscribing_after_n_yields_exactly_the_events_after_n() {
    let engine = engine();
    let (id, all) = run_to_end(&engine, "ticker", json!({"steps": 4, "interval_ms": 50})).await;
    let newest = all.last().expect("events").seq();
    for after in [0, 1, 3, newest - 1] {
        let tail = collect(engine.subscribe(id, Some(after)).expect("job exists")).await;
        assert_eq!(seqs(&tail), ((after + 1)..=newest).collect::<Vec<_>>(), "after {after}");
        assert_eq!(events(&tail), events(&all)[after as usize..]);
    }
    let nothing = collect(engine.subscribe(id, Some(newest)).expect("job exists")).await;
    assert!(nothing.is_empty(), "a subscriber that saw the end gets nothing more");
}

#[tokio::test(start_paused = true)]
async fn a_subscriber_older_than_the_replay_log_is_told_with_a_reset() {
    let engine = engine_with(EngineConfig { replay_capacity: 4, ..Default::default() });
    let (id, _) = run_to_end(&engine, "ticker", json!({"steps": 10, "interval_ms": 10})).await;
    let newest = engine.snapshot(id).expect("kept").seq;
    // From the start: one reset carrying the final state, then the end.
    let from_start = collect(engine.subscribe(id, None).expect("job exists")).await;
    assert_eq!(from_start.len(), 1);
    let Delivery::Reset(state) = &from_start[0] else { panic!("expected a reset") };
    assert_eq!((state.seq, state.status), (newest, JobStatus::Completed));
    // Within the log: plain events, no reset.
    let tail = collect(engine.subscribe(id, Some(newest - 4)).expect("job exists")).await;
    assert_eq!(seqs(&tail), ((newest - 3)..=newest).collect::<Vec<_>>());
    events(&tail);
}

#[tokio::test(start_paused = true)]
async fn a_slow_subscriber_never_holds_the_job_back() {
    let engine = engine_with(EngineConfig { replay_capacity: 8, ..Default::default() });
    let id = engine.start("ticker", json!({"steps": 50, "interval_ms": 10})).expect("starts");
    let mut slow = engine.subscribe(id, None).expect("job exists");
    let first = slow.next().await.expect("pending event");
    assert_eq!(first.seq(), 1);
    // The slow subscriber reads nothing more while the whole job runs.
    let fast = collect(engine.subscribe(id, Some(1)).expect("job exists")).await;
    assert_eq!(fast.last().expect("events").state().expect("a state").status, JobStatus::Completed);
    // Then it is told it fell behind, with the final state: no silent skip.
    let rest = collect(slow).await;
    assert!(matches!(&rest[..], [Delivery::Reset(s)] if s.status == JobStatus::Completed));
}

#[tokio::test(start_paused = true)]
async fn a_late_subscriber_gets_the_rest_of_a_running_job_live() {
    let engine = engine();
    let id = engine.start("ticker", json!({"steps": 6, "interval_ms": 100})).expect("starts");
    tokio::time::sleep(Duration::from_millis(350)).await;
    let seen = engine.snapshot(id).expect("kept");
    assert_eq!(seen.status, JobStatus::Running);
    let rest = events(&collect(engine.subscribe(id, Some(seen.seq)).expect("job exists")).await);
    assert_eq!(rest[0].seq, seen.seq + 1);
    assert_eq!(rest.last().expect("events").status, JobStatus::Completed);
}

#[tokio::test(start_paused = true)]
async fn a_failing_job_ends_failed_with_its_error_at_the_chosen_step() {
    let engine = engine();
    let (_, all) = run_to_end(&engine, "failing", json!({"steps": 4, "fail_at_step": 2, "step_ms": 100})).await;
    let last = events(&all).pop().expect("events");
    assert_eq!(last.status, JobStatus::Failed);
    assert_eq!((last.step_index, last.step.as_str()), (2, "Parsing records"));
    let error = last.error.as_deref().expect("an error message");
    assert!(error.starts_with("Parsing records failed at record"), "{error}");
    assert!(last.progress < 50.0, "progress stops where the job failed: {}", last.progress);
    assert_eq!(last.data, None);
}

#[tokio::test(start_paused = true)]
async fn cancelling_is_seen_by_the_job_and_ends_it_cancelled() {
    let engine = engine();
    let id = engine.start("ticker", json!({"steps": 100, "interval_ms": 1000})).expect("starts");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(engine.cancel(id), Some(CancelOutcome::Requested));
    let rest = collect(engine.subscribe(id, Some(engine.snapshot(id).expect("kept").seq - 1)).expect("job exists")).await;
    let last = rest.last().expect("events").state().expect("a state").clone();
    assert_eq!(last.status, JobStatus::Cancelled);
    assert_eq!(last.step_index, 2, "the job stopped where it was");
    assert_eq!(engine.cancel(id), Some(CancelOutcome::AlreadyEnded(JobStatus::Cancelled)));
    assert_eq!(engine.cancel(JobId::new_random()), None);
}

#[tokio::test(start_paused = true)]
async fn ended_jobs_are_forgotten_after_their_retention() {
    let engine = engine_with(EngineConfig {
        retention: Duration::from_secs(60),
        sweep_interval: Duration::from_secs(5),
        ..Default::default()
    });
    let (id, _) = run_to_end(&engine, "ticker", json!({"steps": 1, "interval_ms": 0})).await;
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert!(engine.snapshot(id).is_some(), "kept during its retention");
    tokio::time::sleep(Duration::from_secs(40)).await;
    assert!(engine.snapshot(id).is_none(), "forgotten after it");
    assert!(engine.subscribe(id, None).is_none());
}

#[tokio::test(start_paused = true)]
async fn a_full_engine_forgets_the_oldest_ended_job_and_refuses_when_all_run() {
    let engine = engine_with(EngineConfig { max_jobs: 2, ..Default::default() });
    let (first, _) = run_to_end(&engine, "ticker", json!({"steps": 1, "interval_ms": 0})).await;
    let _running = engine.start("ticker", json!({"steps": 5, "interval_ms": 1000})).expect("room");
    let _also_running = engine.start("ticker", json!({"steps": 5, "interval_ms": 1000})).expect("evicts");
    assert!(engine.snapshot(first).is_none(), "the ended job made room");
    let refused = engine.start("ticker", json!({})).expect_err("all running");
    assert_eq!(refused, StartError::AtCapacity { limit: 2 });
    assert_eq!(engine.job_count(), 2);
}

#[tokio::test]
async fn bad_kinds_and_params_are_refused_with_what_is_allowed() {
    let engine = engine();
    let err = engine.start("nope", json!({})).expect_err("unknown kind");
    assert_eq!(
        err.to_string(),
        "unknown job kind \"nope\"; the known kinds are: checksum, discover, failing, ticker"
    );
    let err = engine.start("ticker", json!({"steps": 0})).expect_err("out of range");
    assert_eq!(
        err.to_string(),
        "invalid params for job kind \"ticker\": steps must be between 1 and 100000, got 0"
    );
    let err = engine.start("ticker", json!({"stepz": 3})).expect_err("unknown field");
    assert!(err.to_string().contains("unknown field `stepz`"), "{err}");
    let err = engine.start("ticker", json!({"steps": "ten"})).expect_err("wrong type");
    assert!(err.to_string().contains("invalid type: string \"ten\""), "{err}");
    assert_eq!(engine.job_count(), 0, "nothing was started");
}

#[tokio::test]
async fn the_checksum_job_does_real_work_and_returns_a_verified_digest() {
    let engine = engine();
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

#[tokio::test]
async fn a_panicking_job_fails_without_taking_the_engine_down() {
    #[derive(serde::Deserialize, serde::Serialize, Default, utoipa::ToSchema)]
    struct NoParams {}
    impl JobParams for NoParams {}
    let mut kinds = builtin();
    kinds.register("boom", "panics", |_: NoParams, _r: ProgressReporter| async move {
        if true {
            panic!("boom");
        }
        Ok(())
    });
    let engine = JobEngine::new(EngineConfig::default(), kinds);
    let (_, all) = run_to_end(&engine, "boom", json!(null)).await;
    let last = all.last().expect("events").state().expect("a state").clone();
    assert_eq!(last.status, JobStatus::Failed);
    assert!(last.error.as_deref().unwrap_or_default().contains("internal error"));
    let (_, ok) = run_to_end(&engine, "ticker", json!({"steps": 1, "interval_ms": 0})).await;
    assert_eq!(ok.last().expect("events").state().expect("a state").status, JobStatus::Completed);
}

#[tokio::test(start_paused = true)]
async fn shutdown_stops_running_jobs_and_refuses_new_ones() {
    let engine = engine();
    let id = engine.start("ticker", json!({"steps": 100, "interval_ms": 1000})).expect("starts");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(engine.shutdown(Duration::from_secs(5)).await, "jobs stopped in time");
    assert_eq!(engine.snapshot(id).expect("kept").status, JobStatus::Cancelled);
    assert_eq!(engine.start("ticker", json!({})), Err(StartError::ShuttingDown));
}

#[tokio::test(start_paused = true)]
async fn past_max_running_jobs_wait_in_order_and_a_cancelled_waiter_never_runs() {
    let engine = engine_with(EngineConfig { max_running: 1, max_queued: 2, ..Default::default() });
    let slow = json!({"steps": 2, "interval_ms": 100});
    let first = engine.start("ticker", slow.clone()).expect("runs");
    let second = engine.start("ticker", slow.clone()).expect("queued");
    let third = engine.start("ticker", slow.clone()).expect("queued");
    let full = engine.start("ticker", slow.clone()).expect_err("queue full");
    assert_eq!(full, StartError::QueueFull { running: 1, queued: 2 });
    let waiting = |id| engine.snapshot(id).expect("kept");
    assert_eq!((waiting(second).status, waiting(second).queue_position), (JobStatus::Pending, Some(1)));
    assert_eq!(waiting(third).queue_position, Some(2));

    assert_eq!(engine.cancel(second), Some(CancelOutcome::Requested));
    assert_eq!(waiting(second).status, JobStatus::Cancelled, "a waiting job ends at once");
    assert_eq!(waiting(third).queue_position, Some(1), "the one behind moves up");

    let first_done = collect(engine.subscribe(first, None).expect("kept")).await;
    let third_done = collect(engine.subscribe(third, None).expect("kept")).await;
    assert_eq!(first_done.last().expect("events").state().expect("a state").status, JobStatus::Completed);
    let third_done = events(&third_done);
    assert_eq!(third_done.last().expect("events").status, JobStatus::Completed);
    assert!(third_done.iter().any(|s| s.status == JobStatus::Running && s.queue_position.is_none()));
    // The cancelled waiter's code never ran: it never left `pending`.
    let second_all = events(&collect(engine.subscribe(second, None).expect("kept")).await);
    assert!(second_all.iter().all(|s| s.status != JobStatus::Running));
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
