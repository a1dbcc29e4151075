//! One job's memory: its current snapshot, its bounded replay log, and the signal that wakes
//! its subscribers.
//!
//! Every change is one event with the job's next sequence number: a state change carries the
//! whole state after it, a log line carries the line. Subscribers are never sent anything
//! directly: they keep a cursor and read the log when the watch channel says something new is
//! there, so a slow subscriber costs the job nothing and can never block it or the others.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::model::{now_ms, JobId, JobStatus, LogLine, Snapshot};

/// How often, at most, a job that is dropping log lines says so while it runs.
const DROP_REPORT_EVERY: Duration = Duration::from_secs(1);

/// One event in a job's replay log.
#[derive(Debug, Clone, PartialEq)]
pub enum JobEvent {
    /// The job's state changed; this is the whole state after the change.
    State(Arc<Snapshot>),
    /// The job's code logged a line.
    Log(Arc<LogLine>),
}

impl JobEvent {
    /// The event's sequence number.
    pub fn seq(&self) -> u64 {
        match self {
            Self::State(s) => s.seq,
            Self::Log(l) => l.seq,
        }
    }
}

/// What a subscriber at some cursor should get next.
#[derive(Debug)]
pub(crate) enum CatchUp {
    /// The events after the cursor, oldest first.
    Events(Vec<JobEvent>),
    /// The cursor is not in the log any more (or never was): here is the whole state, whose
    /// `seq` is the newest event's.
    Reset(Arc<Snapshot>),
    /// Nothing new; `ended` says whether anything ever will be.
    UpToDate { ended: bool },
}

/// The bounds of one job's memory.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RecordLimits {
    /// Events kept for replay.
    pub(crate) replay_capacity: usize,
    /// Log lines accepted over the job's life.
    pub(crate) max_log_lines: usize,
    /// Bytes of log messages and fields accepted over the job's life.
    pub(crate) max_log_bytes: usize,
}

/// A job's shared record, held by the engine, the job's reporter and its subscribers.
pub(crate) struct JobRecord {
    pub(crate) id: JobId,
    /// Whose job it is (an opaque tag the web layer gives), if anyone's.
    pub(crate) owner: Option<Arc<str>>,
    /// Told to the job's code when someone asks it to stop.
    pub(crate) cancel: CancellationToken,
    state: Mutex<RecordState>,
    /// Carries the newest sequence number; subscribers wait on it.
    seq_tx: watch::Sender<u64>,
    limits: RecordLimits,
}

struct RecordState {
    /// The job's state; its `seq` is the newest event's (a log line moves it on too).
    current: Arc<Snapshot>,
    /// The newest events, at most `replay_capacity` of them, oldest first.
    log: VecDeque<JobEvent>,
    /// Log lines and bytes accepted so far.
    log_lines: usize,
    log_bytes: usize,
    /// Log lines refused for the bounds, and when that was last told.
    logs_dropped: u64,
    drop_told_at: Option<Instant>,
    /// When the job started running.
    started_at: Option<Instant>,
    /// When the job reached a terminal state.
    ended_at: Option<Instant>,
}

impl RecordState {
    fn push(&mut self, event: JobEvent, capacity: usize) {
        if self.log.len() == capacity {
            self.log.pop_front();
        }
        self.log.push_back(event);
    }
}

impl JobRecord {
    /// A new job in the `pending` state; that state is its event number 1.
    pub(crate) fn new(id: JobId, kind: &str, limits: RecordLimits, cancel: CancellationToken) -> Self {
        let limits = RecordLimits {
            replay_capacity: limits.replay_capacity.max(1),
            ..limits
        };
        let first = Arc::new(Snapshot::pending(id, kind, now_ms()));
        let mut log = VecDeque::with_capacity(limits.replay_capacity.min(64));
        log.push_back(JobEvent::State(first.clone()));
        let (seq_tx, _) = watch::channel(first.seq);
        Self {
            id,
            owner: None,
            cancel,
            state: Mutex::new(RecordState {
                current: first,
                log,
                log_lines: 0,
                log_bytes: 0,
                logs_dropped: 0,
                drop_told_at: None,
                started_at: None,
                ended_at: None,
            }),
            seq_tx,
            limits,
        }
    }

    fn lock(&self) -> MutexGuard<'_, RecordState> {
        // The lock is only held for plain field updates that cannot panic half-way, so a
        // poisoned lock still guards consistent data.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The current state.
    pub(crate) fn snapshot(&self) -> Arc<Snapshot> {
        self.lock().current.clone()
    }

    /// When the job started running, if it has.
    pub(crate) fn started_at(&self) -> Option<Instant> {
        self.lock().started_at
    }

    /// When the job ended, if it has.
    pub(crate) fn ended_at(&self) -> Option<Instant> {
        self.lock().ended_at
    }

    /// Applies one change as one event. Returns the event's sequence number, or `None` when
    /// the change changed nothing or the job had already ended (an ended job is final).
    pub(crate) fn apply(&self, change: impl FnOnce(&mut Snapshot)) -> Option<u64> {
        let seq = {
            let mut state = self.lock();
            self.apply_locked(&mut state, change)?
        };
        self.seq_tx.send_replace(seq);
        Some(seq)
    }

    fn apply_locked(&self, state: &mut RecordState, change: impl FnOnce(&mut Snapshot)) -> Option<u64> {
        if state.ended_at.is_some() {
            return None;
        }
        let mut next = Snapshot::clone(&state.current);
        change(&mut next);
        next.seq = state.current.seq;
        next.ts = state.current.ts;
        next.logs_dropped = state.logs_dropped;
        if next == *state.current {
            return None;
        }
        next.seq = state.current.seq + 1;
        next.ts = now_ms();
        let now = Instant::now();
        if next.status.is_terminal() {
            state.ended_at = Some(now);
        }
        if state.started_at.is_none() && next.status == JobStatus::Running {
            state.started_at = Some(now);
        }
        let next = Arc::new(next);
        state.push(JobEvent::State(next.clone()), self.limits.replay_capacity);
        state.current = next;
        Some(state.current.seq)
    }

    /// Adds a log line (its `seq` is set here) as one event, unless the job has ended or the
    /// line would pass the job's log bounds: then it is counted as dropped, and the count is
    /// told in the job's state (at once for the first, then at most once a second, and at the end).
    pub(crate) fn log(&self, mut line: LogLine) -> Option<u64> {
        let seq = {
            let mut state = self.lock();
            if state.ended_at.is_some() {
                return None;
            }
            let size = line.message.len() + line.fields.iter().map(|(k, v)| k.len() + v.to_string().len()).sum::<usize>();
            if state.log_lines >= self.limits.max_log_lines || state.log_bytes + size > self.limits.max_log_bytes {
                state.logs_dropped += 1;
                let now = Instant::now();
                let tell = state.drop_told_at.is_none_or(|t| now.duration_since(t) >= DROP_REPORT_EVERY);
                if !tell {
                    return None;
                }
                state.drop_told_at = Some(now);
                self.apply_locked(&mut state, |_| {})?
            } else {
                state.log_lines += 1;
                state.log_bytes += size;
                line.seq = state.current.seq + 1;
                let line = Arc::new(line);
                state.push(JobEvent::Log(line.clone()), self.limits.replay_capacity);
                let mut current = Snapshot::clone(&state.current);
                current.seq = line.seq;
                state.current = Arc::new(current);
                line.seq
            }
        };
        self.seq_tx.send_replace(seq);
        Some(seq)
    }

    /// What a subscriber that has seen everything up to `cursor` gets next.
    pub(crate) fn catch_up(&self, cursor: u64) -> CatchUp {
        let state = self.lock();
        let newest = state.current.seq;
        if cursor == newest {
            return CatchUp::UpToDate {
                ended: state.ended_at.is_some(),
            };
        }
        let oldest = state.log.front().map_or(newest, JobEvent::seq);
        if cursor > newest || cursor + 1 < oldest {
            return CatchUp::Reset(state.current.clone());
        }
        let skip = usize::try_from(cursor + 1 - oldest).unwrap_or(usize::MAX);
        CatchUp::Events(state.log.iter().skip(skip).cloned().collect())
    }

    /// The log lines still in the replay log after sequence `after`, and how many were dropped.
    pub(crate) fn log_lines_after(&self, after: u64) -> (Vec<Arc<LogLine>>, u64) {
        let state = self.lock();
        let lines = state
            .log
            .iter()
            .filter_map(|e| match e {
                JobEvent::Log(l) if l.seq > after => Some(l.clone()),
                _ => None,
            })
            .collect();
        (lines, state.logs_dropped)
    }

    /// A receiver that wakes when a new event is in the log.
    pub(crate) fn watch(&self) -> watch::Receiver<u64> {
        self.seq_tx.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::LogLevel;

    const LIMITS: RecordLimits = RecordLimits {
        replay_capacity: 16,
        max_log_lines: 1000,
        max_log_bytes: 1 << 20,
    };

    fn record(replay_capacity: usize) -> JobRecord {
        JobRecord::new(
            JobId::new_random(),
            "test",
            RecordLimits { replay_capacity, ..LIMITS },
            CancellationToken::new(),
        )
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

    #[test]
    fn every_change_gets_the_next_sequence_number() {
        let r = record(16);
        assert_eq!(r.snapshot().seq, 1);
        assert_eq!(r.apply(|s| s.progress = 10.0), Some(2));
        assert_eq!(r.apply(|s| s.message = "hello".into()), Some(3));
        let s = r.snapshot();
        assert_eq!((s.seq, s.progress, s.message.as_str()), (3, 10.0, "hello"));
    }

    #[test]
    fn log_lines_share_the_sequence_and_move_the_state_on() {
        let r = record(16);
        assert_eq!(r.log(line("one")), Some(2));
        assert_eq!(r.apply(|s| s.progress = 5.0), Some(3));
        assert_eq!(r.log(line("two")), Some(4));
        assert_eq!(r.snapshot().seq, 4, "the state's seq is the newest event's");
        let (lines, dropped) = r.log_lines_after(2);
        assert_eq!(lines.iter().map(|l| l.message.as_str()).collect::<Vec<_>>(), ["two"]);
        assert_eq!(dropped, 0);
    }

    #[test]
    fn a_change_that_changes_nothing_is_not_an_event() {
        let r = record(16);
        r.apply(|s| s.progress = 10.0);
        assert_eq!(r.apply(|s| s.progress = 10.0), None);
        assert_eq!(r.snapshot().seq, 2);
    }

    #[test]
    fn an_ended_job_is_final() {
        let r = record(16);
        r.apply(|s| s.status = JobStatus::Completed);
        assert!(r.ended_at().is_some());
        assert_eq!(r.apply(|s| s.progress = 50.0), None);
        assert_eq!(r.log(line("late")), None);
        assert_eq!(r.snapshot().status, JobStatus::Completed);
    }

    #[test]
    fn catch_up_replays_exactly_the_events_after_the_cursor() {
        let r = record(16);
        for p in 1..=5 {
            r.apply(|s| s.progress = f64::from(p));
        }
        assert_eq!(seqs(r.catch_up(0)), vec![1, 2, 3, 4, 5, 6]);
        assert_eq!(seqs(r.catch_up(3)), vec![4, 5, 6]);
        assert!(matches!(r.catch_up(6), CatchUp::UpToDate { ended: false }));
    }

    #[test]
    fn the_log_is_bounded_and_a_cursor_before_it_gets_a_reset() {
        let r = record(4);
        for p in 1..=10 {
            r.apply(|s| s.progress = f64::from(p));
        }
        // Events 8..=11 are kept; a cursor at 7 still catches up without a gap.
        assert_eq!(seqs(r.catch_up(7)), vec![8, 9, 10, 11]);
        match r.catch_up(6) {
            CatchUp::Reset(s) => assert_eq!(s.seq, 11),
            other => panic!("expected a reset, got {other:?}"),
        }
    }

    #[test]
    fn a_cursor_from_the_future_gets_a_reset() {
        let r = record(4);
        assert!(matches!(r.catch_up(99), CatchUp::Reset(s) if s.seq == 1));
    }

    #[tokio::test(start_paused = true)]
    async fn log_lines_past_the_bounds_are_dropped_and_counted() {
        let r = JobRecord::new(
            JobId::new_random(),
            "test",
            RecordLimits { max_log_lines: 3, ..LIMITS },
            CancellationToken::new(),
        );
        for i in 0..10 {
            r.log(line(&format!("line {i}")));
        }
        let s = r.snapshot();
        assert_eq!(s.logs_dropped, 1, "the first drop is told at once");
        tokio::time::sleep(DROP_REPORT_EVERY).await;
        r.log(line("one more"));
        assert_eq!(r.snapshot().logs_dropped, 8);
        r.apply(|s| s.status = JobStatus::Completed);
        let (lines, dropped) = r.log_lines_after(0);
        assert_eq!(lines.len(), 3);
        assert_eq!(dropped, 8);

        let bytes = JobRecord::new(
            JobId::new_random(),
            "test",
            RecordLimits { max_log_bytes: 10, ..LIMITS },
            CancellationToken::new(),
        );
        assert!(bytes.log(line("12345")).is_some());
        assert!(bytes.log(line("123456")).is_some(), "the drop is told");
        assert_eq!(bytes.log_lines_after(0).0.len(), 1);
    }
}
