//! The record's unit tests: sequencing, the replay log and its bounds, and the role changes
//! of a shared store (adopt, lose, absorb) with the run number that fences a superseded run.
use super::*;
use crate::jobs::journal::Written;
use crate::jobs::store::memory::MemoryStore;
use crate::model::LogLevel;

const LIMITS: RecordLimits =
    RecordLimits { replay_capacity: 16, replay_bytes: 1 << 20, max_log_lines: 1000, max_log_bytes: 1 << 20 };

fn record_with(limits: RecordLimits) -> (Arc<JobRecord>, Journal) {
    let journal = Journal::start(Arc::new(MemoryStore::new()));
    let ctx = RecordContext { limits, journal: journal.clone(), clock: Clock::start() };
    let r = JobRecord::new(JobId::new_random(), "test", Value::Null, None, ctx, CancellationToken::new());
    r.create();
    (r, journal)
}

fn record(replay_capacity: usize) -> (Arc<JobRecord>, Journal) {
    record_with(RecordLimits { replay_capacity, ..LIMITS })
}

/// A record whose progress changed `changes` times, all published.
async fn progressed(replay_capacity: usize, changes: u32) -> (Arc<JobRecord>, Journal) {
    let (r, journal) = record(replay_capacity);
    for p in 1..=changes {
        r.apply_as(r.run(), |s| s.progress = f64::from(p));
    }
    journal.flush().await;
    (r, journal)
}

fn line(message: &str) -> LogLine {
    LogLine {
        seq: 0,
        ts: 0,
        level: LogLevel::Info,
        target: "test".into(),
        message: message.into(),
        fields: Default::default(),
    }
}

fn seqs(catch_up: CatchUp) -> Vec<u64> {
    match catch_up {
        CatchUp::Events(events) => events.iter().map(JobEvent::seq).collect(),
        other => panic!("expected events, got {other:?}"),
    }
}

#[tokio::test]
async fn every_change_gets_the_next_sequence_number() {
    let (r, journal) = record(16);
    assert_eq!(r.current().seq, 1);
    assert_eq!(r.apply_as(r.run(), |s| s.progress = 10.0), Some(2));
    assert_eq!(r.apply_as(r.run(), |s| s.message = "hello".into()), Some(3));
    journal.flush().await;
    let s = r.snapshot().expect("published");
    assert_eq!((s.seq, s.progress, s.message.as_str()), (3, 10.0, "hello"));
}

#[tokio::test]
async fn log_lines_share_the_sequence_and_move_the_state_on() {
    let (r, journal) = record(16);
    assert_eq!(r.log_as(r.run(), line("one")), Some(2));
    assert_eq!(r.apply_as(r.run(), |s| s.progress = 5.0), Some(3));
    assert_eq!(r.log_as(r.run(), line("two")), Some(4));
    journal.flush().await;
    assert_eq!(r.snapshot().expect("published").seq, 4, "the state's seq is the newest event's");
    let (lines, dropped) = r.log_lines_after(2);
    assert_eq!(lines.iter().map(|l| l.message.as_str()).collect::<Vec<_>>(), ["two"]);
    assert_eq!(dropped, 0);
}

#[tokio::test]
async fn a_change_that_changes_nothing_is_not_an_event() {
    let (r, _journal) = record(16);
    r.apply_as(r.run(), |s| s.progress = 10.0);
    assert_eq!(r.apply_as(r.run(), |s| s.progress = 10.0), None);
    assert_eq!(r.current().seq, 2);
}

#[tokio::test]
async fn an_ended_job_is_final() {
    let (r, journal) = record(16);
    r.apply_as(r.run(), |s| s.status = JobStatus::Completed);
    assert!(r.has_ended());
    assert_eq!(r.apply_as(r.run(), |s| s.progress = 50.0), None);
    assert_eq!(r.log_as(r.run(), line("late")), None);
    journal.flush().await;
    assert!(r.ended_ms().is_some());
    assert_eq!(r.snapshot().expect("published").status, JobStatus::Completed);
}

#[tokio::test]
async fn catch_up_replays_exactly_the_events_after_the_cursor() {
    let (r, _journal) = progressed(16, 5).await;
    assert_eq!(seqs(r.catch_up(0)), vec![1, 2, 3, 4, 5, 6]);
    assert_eq!(seqs(r.catch_up(3)), vec![4, 5, 6]);
    assert!(matches!(r.catch_up(6), CatchUp::UpToDate { ended: false }));
}

#[tokio::test]
async fn the_log_is_bounded_by_bytes_too_and_each_event_carries_its_json() {
    let size = JobEvent::log(Arc::new(line(&"x".repeat(100)))).size();
    let (r, journal) = record_with(RecordLimits { replay_bytes: 3 * size + size / 2, ..LIMITS });
    for _ in 0..10 {
        r.log_as(r.run(), line(&"x".repeat(100)));
    }
    journal.flush().await;
    // Only the newest three lines fit: a cursor just before them catches up, an older one
    // gets the whole state instead of a gap.
    assert_eq!(seqs(r.catch_up(8)), vec![9, 10, 11]);
    assert!(matches!(r.catch_up(7), CatchUp::Reset(s) if s.seq == 11));
    let CatchUp::Events(events) = r.catch_up(10) else { panic!("expected events") };
    let JobEvent::Log(kept, json) = &events[0] else { panic!("expected a log line") };
    assert_eq!(serde_json::from_str::<LogLine>(json).expect("its JSON"), **kept);
    // One event larger than the bound is still kept: the newest always is.
    let (one, journal) = record_with(RecordLimits { replay_bytes: 1, ..LIMITS });
    one.apply_as(one.run(), |s| s.progress = 1.0);
    journal.flush().await;
    assert_eq!(seqs(one.catch_up(1)), vec![2]);
}

#[tokio::test]
async fn the_log_is_bounded_and_a_cursor_before_it_gets_a_reset() {
    let (r, _journal) = progressed(4, 10).await;
    // Events 8..=11 are kept; a cursor at 7 still catches up without a gap.
    assert_eq!(seqs(r.catch_up(7)), vec![8, 9, 10, 11]);
    match r.catch_up(6) {
        CatchUp::Reset(s) => assert_eq!(s.seq, 11),
        other => panic!("expected a reset, got {other:?}"),
    }
}

#[tokio::test]
async fn a_cursor_behind_a_job_read_back_without_events_gets_a_reset() {
    let (r, journal) = progressed(4, 4).await;
    let row = JobRow {
        id: r.id,
        kind: "test".into(),
        params: Value::Null,
        owner: None,
        state: r.current(),
        checkpoint: None,
        cancel_requested: false,
        started_ms: None,
        ended_ms: None,
    };
    let ctx = RecordContext { limits: LIMITS, journal: journal.clone(), clock: Clock::start() };
    let restored = JobRecord::restore(row, Vec::new(), ctx, CancellationToken::new());
    // Not an empty list of events (a follower would wait for ever for the ones between).
    for cursor in [3, 4] {
        assert!(matches!(restored.catch_up(cursor), CatchUp::Reset(s) if s.seq == 5), "cursor {cursor}");
    }
    assert!(matches!(restored.catch_up(5), CatchUp::UpToDate { ended: false }));
}

#[tokio::test]
async fn a_cursor_from_the_future_gets_a_reset() {
    let (r, journal) = record(4);
    journal.flush().await;
    assert!(matches!(r.catch_up(99), CatchUp::Reset(s) if s.seq == 1));
}

#[tokio::test(start_paused = true)]
async fn log_lines_past_the_bounds_are_dropped_and_counted() {
    let (r, journal) = record_with(RecordLimits { max_log_lines: 3, ..LIMITS });
    for i in 0..10 {
        r.log_as(r.run(), line(&format!("line {i}")));
    }
    assert_eq!(r.current().logs_dropped, 1, "the first drop is told at once");
    tokio::time::sleep(std::time::Duration::from_millis(DROP_REPORT_EVERY_MS)).await;
    r.log_as(r.run(), line("one more"));
    assert_eq!(r.current().logs_dropped, 8);
    r.apply_as(r.run(), |s| s.status = JobStatus::Completed);
    journal.flush().await;
    let (lines, dropped) = r.log_lines_after(0);
    assert_eq!(lines.len(), 3);
    assert_eq!(dropped, 8);

    let (bytes, journal) = record_with(RecordLimits { max_log_bytes: 10, ..LIMITS });
    assert!(bytes.log_as(bytes.run(), line("12345")).is_some());
    assert!(bytes.log_as(bytes.run(), line("123456")).is_some(), "the drop is told");
    journal.flush().await;
    assert_eq!(bytes.log_lines_after(0).0.len(), 1);
}

/// A record this instance held under lease 5, lost, and took back under lease 7 while the
/// first run was still inside its cancel grace.
async fn taken_back() -> (Arc<JobRecord>, Journal, u64, u64) {
    let (r, journal) = record(16);
    journal.flush().await;
    r.admitted(5);
    let first_run = r.begin_run();
    assert_eq!(r.apply_as(first_run, |s| s.progress = 10.0), Some(2));
    journal.flush().await;
    assert!(r.lose(), "held until now");
    assert!(!r.lose(), "lost once only");
    let CatchUp::Events(kept) = r.catch_up(0) else { panic!("events") };
    let mut row = r.first_event().0;
    row.state = r.snapshot().expect("published");
    let stored = (row, kept);
    r.adopt(stored, 7, CancellationToken::new());
    let second_run = r.begin_run();
    (r, journal, first_run, second_run)
}

#[tokio::test]
async fn a_superseded_run_writes_nothing_not_even_its_end() {
    let (r, journal, old, new) = taken_back().await;
    assert_eq!(r.apply_as(old, |s| s.progress = 99.0), None, "the old run's report");
    assert_eq!(r.log_as(old, line("old")), None, "the old run's log line");
    r.save_checkpoint(old, serde_json::json!({"old": true}));
    crate::jobs::runner::record_end(&r, old, crate::jobs::runner::Outcome::Cancelled, Default::default(), false);
    assert!(!r.has_ended(), "the old run's end did not end the new run");
    assert_eq!(r.checkpoint(), None);
    assert_eq!(r.apply_as(new, |s| s.progress = 20.0), Some(3), "the new run goes on from the stored state");
    journal.flush().await;
    let state = r.snapshot().expect("published");
    assert_eq!((state.seq, state.progress, state.status), (3, 20.0, JobStatus::Pending));
}

#[tokio::test]
async fn a_refusal_of_an_old_lease_leaves_the_new_holder_alone() {
    let (r, _journal, _old, new) = taken_back().await;
    assert!(!Written::refused(&*r, 5), "writes under lease 5 were refused: lease 7 is not lost");
    assert!(!r.is_mirror());
    assert!(r.apply_as(new, |s| s.progress = 30.0).is_some());
    assert!(Written::refused(&*r, 7), "the current lease's writes refused: it is lost");
    assert!(r.is_mirror());
    assert_eq!(r.apply_as(new, |s| s.progress = 40.0), None, "a mirror writes nothing");
}

#[tokio::test]
async fn a_mirror_takes_in_what_the_store_appended_and_resets_over_a_trimmed_gap() {
    let (held, journal) = progressed(16, 6).await;
    let CatchUp::Events(all) = held.catch_up(0) else { panic!("events") };
    let ctx = RecordContext { limits: LIMITS, journal: journal.clone(), clock: Clock::start() };
    let mut first = held.first_event().0;
    let JobEvent::State(pending, _) = &all[0] else { panic!("a state") };
    first.state = pending.clone();
    let mirror = JobRecord::mirror(first, all[..1].to_vec(), ctx, CancellationToken::new());
    let newest = held.snapshot().expect("published");
    mirror.absorb(all[1..4].to_vec(), Snapshot::clone(&newest));
    assert_eq!(seqs(mirror.catch_up(0)), [1, 2, 3, 4], "what follows is taken in, in order");
    // The store trimmed 5 and 6 away: the mirror starts over from the store's state.
    mirror.absorb(Vec::new(), Snapshot::clone(&newest));
    assert!(matches!(mirror.catch_up(4), CatchUp::Reset(s) if s.seq == 7));
    assert_eq!(mirror.apply_as(mirror.run(), |s| s.progress = 1.0), None, "a mirror writes nothing");
}
