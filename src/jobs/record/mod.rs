//! One job's record: who it is, its memory ([`replay`]), and the signal that wakes its
//! subscribers.
//!
//! Every change is one event with the job's next sequence number: a state change carries the
//! whole state after it, a log line carries the line. Each event goes to the engine's journal
//! at once, and is *published* (shown to anyone: subscribers, snapshots, pages) only after the
//! journal has written it to the store, so no client ever sees a number a restart could
//! forget. Subscribers are never sent anything directly: they keep a cursor and read the log
//! when the watch channel says something new was published, so a slow subscriber costs the
//! job nothing and can never block it or the others.
//!
//! Each run of the job's code has a *run number*, and everything a run writes carries it: a
//! run that was superseded (its lease lost, the job taken over, even by this same instance
//! again within the old run's cancel grace) can write nothing more, not even its end.
//!
//! With a store several instances share, a record is either *held* (this instance runs the job
//! under a lease whose token goes with every write) or a *mirror* of a job another instance
//! runs or that waits in the shared queue: a mirror writes nothing, and takes in what the
//! store says was appended ([`JobRecord::absorb`]). A record changes role in place
//! ([`JobRecord::adopt`], [`JobRecord::lose`]), so its subscribers never notice the hand-over.

mod replay;
mod roles;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use serde_json::Value;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use replay::RecordState;
pub(crate) use replay::{CatchUp, RecordLimits};

use super::clock::Clock;
use super::event::{line_size, JobEvent};
use super::journal::Journal;
use super::store::JobRow;
use crate::model::{JobId, JobStatus, LogLine, Snapshot};

/// How often, at most, a job that is dropping log lines says so while it runs, in ms.
const DROP_REPORT_EVERY_MS: u64 = 1_000;

/// Where a record's events go and what it reads the time from.
#[derive(Clone)]
pub(crate) struct RecordContext {
    pub(crate) limits: RecordLimits,
    pub(crate) journal: Journal,
    pub(crate) clock: Clock,
}

/// A job's shared record, held by the engine's table, the job's reporter and its subscribers.
pub(crate) struct JobRecord {
    pub(crate) id: JobId,
    /// The kind's name.
    pub(crate) kind: Arc<str>,
    /// The params as accepted, from which the job is (re)built.
    pub(crate) params: Value,
    /// Whose job it is (an opaque key the web layer gives), if anyone's.
    pub(crate) owner: Option<Arc<str>>,
    /// Told to the job's code when it must stop (asked to, the server is stopping, or another
    /// instance took it over); a new one for each hand-over.
    cancel: Mutex<CancellationToken>,
    /// Whether someone asked it to stop (as opposed to the server stopping).
    cancel_requested: AtomicBool,
    /// The lease this instance holds on the job in a shared store (0: none).
    lease: AtomicU64,
    /// Whether this is a mirror of a job this instance does not hold (it writes nothing).
    mirror: AtomicBool,
    /// The current run's number: only writes made with it are taken. Changed (under the state
    /// lock) by every new run and every hand-over.
    run: AtomicU64,
    state: Mutex<RecordState>,
    /// Carries the newest published sequence number; subscribers wait on it.
    seq_tx: watch::Sender<u64>,
    ctx: RecordContext,
}

impl JobRecord {
    /// A new job in the `pending` state, its event number 1 (not yet written: see
    /// [`create`](Self::create)).
    pub(crate) fn new(
        id: JobId,
        kind: &str,
        params: Value,
        owner: Option<Arc<str>>,
        ctx: RecordContext,
        cancel: CancellationToken,
    ) -> Arc<Self> {
        let first = Arc::new(Snapshot::pending(id, kind, ctx.clock.now_ms()));
        let row = JobRow {
            id,
            kind: kind.to_string(),
            params,
            owner,
            state: first.clone(),
            checkpoint: None,
            cancel_requested: false,
            started_ms: None,
            ended_ms: None,
        };
        Self::from_row(row, vec![JobEvent::state(first)], false, ctx, cancel)
    }

    /// A job read back from the store, as it was written.
    pub(crate) fn restore(
        row: JobRow,
        events: Vec<JobEvent>,
        ctx: RecordContext,
        cancel: CancellationToken,
    ) -> Arc<Self> {
        Self::from_row(row, events, true, ctx, cancel)
    }

    /// A job another instance runs (or that waits in a shared queue), as the store keeps it:
    /// it follows what the store says through [`absorb`](Self::absorb).
    pub(crate) fn mirror(
        row: JobRow,
        events: Vec<JobEvent>,
        ctx: RecordContext,
        cancel: CancellationToken,
    ) -> Arc<Self> {
        let record = Self::from_row(row, events, true, ctx, cancel);
        record.mirror.store(true, Ordering::Relaxed);
        record
    }

    /// A record of `row` and its newest `events`; `stored` says whether they are in the store
    /// already (then they are shown at once).
    fn from_row(
        row: JobRow,
        events: Vec<JobEvent>,
        stored: bool,
        ctx: RecordContext,
        cancel: CancellationToken,
    ) -> Arc<Self> {
        let ctx = RecordContext {
            limits: RecordLimits { replay_capacity: ctx.limits.replay_capacity.max(1), ..ctx.limits },
            ..ctx
        };
        let state = RecordState::of(&row, events, stored, ctx.limits);
        let (seq_tx, _) = watch::channel(state.published_seq());
        Arc::new(Self {
            id: row.id,
            kind: Arc::from(row.kind),
            params: row.params,
            owner: row.owner,
            cancel: Mutex::new(cancel),
            cancel_requested: AtomicBool::new(row.cancel_requested),
            lease: AtomicU64::new(0),
            mirror: AtomicBool::new(false),
            run: AtomicU64::new(0),
            state: Mutex::new(state),
            seq_tx,
            ctx,
        })
    }

    fn lock(&self) -> MutexGuard<'_, RecordState> {
        // The lock is only held for plain field updates that cannot panic half-way, so a
        // poisoned lock still guards consistent data.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// What the job's code is told to stop by (the current run's).
    pub(crate) fn cancel_token(&self) -> CancellationToken {
        self.cancel.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// The lease this instance holds on the job (0: none).
    pub(crate) fn lease(&self) -> u64 {
        self.lease.load(Ordering::Relaxed)
    }

    /// Whether this record only mirrors a job this instance does not hold.
    pub(crate) fn is_mirror(&self) -> bool {
        self.mirror.load(Ordering::Relaxed)
    }

    /// The current run's number.
    pub(crate) fn run(&self) -> u64 {
        self.run.load(Ordering::Relaxed)
    }

    /// A new run of the job's code begins: its number, which everything it writes carries.
    /// Whatever an earlier run still writes is refused from now on.
    pub(crate) fn begin_run(&self) -> u64 {
        let _state = self.lock();
        self.run.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Hands the new job's row and first event to the journal (before anything the job does:
    /// the journal keeps the order it is told things).
    pub(crate) fn create(self: &Arc<Self>) {
        let (row, first) = self.first_event();
        self.ctx.journal.create(self.clone(), row, first);
    }

    /// The row the store keeps for this (new) job, and its first event.
    pub(crate) fn first_event(&self) -> (JobRow, JobEvent) {
        let state = self.lock();
        let row = JobRow {
            id: self.id,
            kind: self.kind.to_string(),
            params: self.params.clone(),
            owner: self.owner.clone(),
            state: state.current.clone(),
            checkpoint: None,
            cancel_requested: false,
            started_ms: None,
            ended_ms: None,
        };
        (row, JobEvent::state(state.current.clone()))
    }

    /// The current state as everyone is shown it: the newest written to the store. `None`
    /// until the job's first event is written.
    pub(crate) fn snapshot(&self) -> Option<Arc<Snapshot>> {
        self.lock().published.clone()
    }

    /// The newest state, written or not (for the engine's own decisions).
    pub(crate) fn current(&self) -> Arc<Snapshot> {
        self.lock().current.clone()
    }

    /// When the job started running (ms since the epoch), if it has.
    pub(crate) fn started_ms(&self) -> Option<u64> {
        self.lock().started_ms
    }

    /// When the job ended (ms since the epoch), if it has and that was written.
    pub(crate) fn ended_ms(&self) -> Option<u64> {
        let state = self.lock();
        state.published.as_ref().filter(|s| s.status.is_terminal()).and(state.ended_ms)
    }

    /// Whether the job has reached a terminal state (written or not).
    pub(crate) fn has_ended(&self) -> bool {
        self.lock().ended_ms.is_some()
    }

    /// The newest checkpoint the job's code saved.
    pub(crate) fn checkpoint(&self) -> Option<Value> {
        self.lock().checkpoint.clone()
    }

    /// Whether someone asked the job to stop.
    pub(crate) fn cancel_requested(&self) -> bool {
        self.cancel_requested.load(Ordering::Relaxed)
    }

    /// Records that someone asked the job to stop (stored, then the job is woken).
    pub(crate) fn request_cancel(self: &Arc<Self>) {
        if !self.cancel_requested.swap(true, Ordering::Relaxed) {
            let _state = self.lock(); // keeps the request in order with the job's events
            self.ctx.journal.cancel_requested(self.clone(), self.lease());
        }
        self.cancel_token().cancel();
    }

    /// Saves a checkpoint for run `run`: written with (or after) the events before it.
    pub(crate) fn save_checkpoint(self: &Arc<Self>, run: u64, value: Value) {
        let mut state = self.lock();
        if state.ended_ms.is_some() || !self.writes_as(run) {
            return;
        }
        state.checkpoint = Some(value.clone());
        self.ctx.journal.checkpoint(self.clone(), self.lease(), value);
    }

    /// Whether run `run` may write (under the state lock): it is the current run, of a job
    /// this instance holds.
    fn writes_as(&self, run: u64) -> bool {
        run == self.run() && !self.is_mirror()
    }

    /// Applies one change made by run `run` as one event. Returns the event's sequence number,
    /// or `None` when the change changed nothing, the job had already ended (an ended job is
    /// final), or `run` is no longer the job's current run.
    pub(crate) fn apply_as(self: &Arc<Self>, run: u64, change: impl FnOnce(&mut Snapshot)) -> Option<u64> {
        let mut state = self.lock();
        self.apply_locked(&mut state, run, change)
    }

    fn apply_locked(
        self: &Arc<Self>,
        state: &mut RecordState,
        run: u64,
        change: impl FnOnce(&mut Snapshot),
    ) -> Option<u64> {
        if state.ended_ms.is_some() || !self.writes_as(run) {
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
        let now = self.ctx.clock.now_ms();
        next.seq = state.current.seq + 1;
        next.ts = now;
        if next.status.is_terminal() {
            state.ended_ms = Some(now);
        }
        if state.started_ms.is_none() && next.status == JobStatus::Running {
            state.started_ms = Some(now);
        }
        let next = Arc::new(next);
        let event = JobEvent::state(next.clone());
        state.push(event.clone(), self.ctx.limits);
        state.current = next.clone();
        self.ctx.journal.event(self.clone(), self.lease(), event, next.clone());
        Some(next.seq)
    }

    /// Adds a log line of run `run` (its `seq` is set here) as one event, unless the job has
    /// ended, the run is no longer current, or the line would pass the job's log bounds: then
    /// it is counted as dropped, and the count is told in the job's state (at once for the
    /// first, then at most once a second, and at the end).
    pub(crate) fn log_as(self: &Arc<Self>, run: u64, mut line: LogLine) -> Option<u64> {
        let mut state = self.lock();
        if state.ended_ms.is_some() || !self.writes_as(run) {
            return None;
        }
        let size = line_size(&line);
        let limits = self.ctx.limits;
        if state.log_lines >= limits.max_log_lines || state.log_bytes + size > limits.max_log_bytes {
            state.logs_dropped += 1;
            let now = self.ctx.clock.now_ms();
            if state.drop_told_at.is_some_and(|t| now.saturating_sub(t) < DROP_REPORT_EVERY_MS) {
                return None;
            }
            state.drop_told_at = Some(now);
            return self.apply_locked(&mut state, run, |_| {});
        }
        state.log_lines += 1;
        state.log_bytes += size;
        line.seq = state.current.seq + 1;
        let line = Arc::new(line);
        let event = JobEvent::log(line.clone());
        state.push(event.clone(), limits);
        let mut current = Snapshot::clone(&state.current);
        current.seq = line.seq;
        let current = Arc::new(current);
        state.current = current.clone();
        self.ctx.journal.event(self.clone(), self.lease(), event, current);
        Some(line.seq)
    }

    /// The journal wrote events up to `state.seq`: show them.
    fn publish(&self, state: Arc<Snapshot>) {
        let seq = state.seq;
        {
            let mut s = self.lock();
            // A mirror shows what it reads from the store (a record that lost its lease may
            // have dropped these events already; the store has them if they were kept).
            if s.published_seq() >= seq || self.is_mirror() {
                return;
            }
            s.published = Some(state);
        }
        self.seq_tx.send_replace(seq);
    }

    /// What a subscriber that has seen everything up to `cursor` gets next.
    pub(crate) fn catch_up(&self, cursor: u64) -> CatchUp {
        self.lock().catch_up(cursor)
    }

    /// The published log lines still in the replay log after sequence `after`, and how many
    /// were dropped.
    pub(crate) fn log_lines_after(&self, after: u64) -> (Vec<Arc<LogLine>>, u64) {
        self.lock().log_lines_after(after)
    }

    /// A receiver that wakes when a new event is published.
    pub(crate) fn watch(&self) -> watch::Receiver<u64> {
        self.seq_tx.subscribe()
    }
}

#[cfg(test)]
mod tests;
