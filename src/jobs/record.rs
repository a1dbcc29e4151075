//! One job's memory: its current snapshot, its bounded replay log, and the signal that wakes
//! its subscribers.
//!
//! Every change is one event with the job's next sequence number; the event's body is the
//! whole state after the change. Subscribers are never sent anything directly: they keep a
//! cursor and read the log when the watch channel says something new is there, so a slow
//! subscriber costs the job nothing and can never block it or the others.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::model::{JobId, Snapshot};

/// What a subscriber at some cursor should get next.
#[derive(Debug)]
pub(crate) enum CatchUp {
    /// The events after the cursor, oldest first.
    Events(Vec<Arc<Snapshot>>),
    /// The cursor is not in the log any more (or never was): here is the whole state.
    Reset(Arc<Snapshot>),
    /// Nothing new; `ended` says whether anything ever will be.
    UpToDate { ended: bool },
}

/// A job's shared record, held by the engine, the job's reporter and its subscribers.
pub(crate) struct JobRecord {
    pub(crate) id: JobId,
    /// Told to the job's code when someone asks it to stop.
    pub(crate) cancel: CancellationToken,
    state: Mutex<RecordState>,
    /// Carries the newest sequence number; subscribers wait on it.
    seq_tx: watch::Sender<u64>,
    capacity: usize,
}

struct RecordState {
    /// The newest event; `log.back()` when the log is not empty.
    current: Arc<Snapshot>,
    /// The newest events, at most `capacity` of them, oldest first.
    log: VecDeque<Arc<Snapshot>>,
    /// When the job started running.
    started_at: Option<Instant>,
    /// When the job reached a terminal state.
    ended_at: Option<Instant>,
}

/// Milliseconds since the Unix epoch, the `ts` of every event.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl JobRecord {
    /// A new job in the `pending` state; that state is its event number 1.
    pub(crate) fn new(id: JobId, kind: &str, capacity: usize, cancel: CancellationToken) -> Self {
        let capacity = capacity.max(1);
        let first = Arc::new(Snapshot::pending(id, kind, now_ms()));
        let mut log = VecDeque::with_capacity(capacity.min(64));
        log.push_back(first.clone());
        let (seq_tx, _) = watch::channel(first.seq);
        Self {
            id,
            cancel,
            state: Mutex::new(RecordState {
                current: first,
                log,
                started_at: None,
                ended_at: None,
            }),
            seq_tx,
            capacity,
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
            if state.ended_at.is_some() {
                return None;
            }
            let mut next = Snapshot::clone(&state.current);
            change(&mut next);
            next.seq = state.current.seq;
            next.ts = state.current.ts;
            if next == *state.current {
                return None;
            }
            next.seq = state.current.seq + 1;
            next.ts = now_ms();
            let ended = next.status.is_terminal();
            let next = Arc::new(next);
            if state.log.len() == self.capacity {
                state.log.pop_front();
            }
            state.log.push_back(next.clone());
            state.current = next;
            if ended {
                state.ended_at = Some(Instant::now());
            }
            if state.started_at.is_none() && state.current.status == crate::model::JobStatus::Running {
                state.started_at = Some(Instant::now());
            }
            state.current.seq
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
        let oldest = state.log.front().map_or(newest, |e| e.seq);
        if cursor > newest || cursor + 1 < oldest {
            return CatchUp::Reset(state.current.clone());
        }
        let skip = usize::try_from(cursor + 1 - oldest).unwrap_or(usize::MAX);
        CatchUp::Events(state.log.iter().skip(skip).cloned().collect())
    }

    /// A receiver that wakes when a new event is in the log.
    pub(crate) fn watch(&self) -> watch::Receiver<u64> {
        self.seq_tx.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::JobStatus;

    fn record(capacity: usize) -> JobRecord {
        JobRecord::new(JobId::new_random(), "test", capacity, CancellationToken::new())
    }

    fn seqs(catch_up: CatchUp) -> Vec<u64> {
        match catch_up {
            CatchUp::Events(events) => events.iter().map(|e| e.seq).collect(),
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
}
