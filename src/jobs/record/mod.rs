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

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use serde_json::Value;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use replay::RecordState;
pub(crate) use replay::{CatchUp, RecordLimits};

use super::clock::Clock;
use super::event::{line_size, JobEvent};
use super::journal::{Journal, Written};
use super::store::{JobRow, LoadedJob};
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

    /// A shared store admitted this new job (its first event is stored): show it. With a
    /// `lease` this instance runs it; with none (0) it waits in the shared queue and the
    /// record mirrors it until some instance claims it.
    pub(crate) fn admitted(&self, lease: u64) {
        self.lease.store(lease, Ordering::Relaxed);
        self.publish(self.current());
        if lease == 0 {
            self.mirror.store(true, Ordering::Relaxed);
        }
    }

    /// This instance now holds the job, under `token`, as the store keeps it (`job`): the
    /// record takes that state (anything newer a mirror had cannot exist: the store is where
    /// it came from) and a fresh stop signal, and writes from now on. Subscribers stay.
    pub(crate) fn adopt(&self, job: LoadedJob, token: u64, cancel: CancellationToken) {
        let (row, events) = job;
        let seq = {
            let mut state = self.lock();
            *state = RecordState::of(&row, events, true, self.ctx.limits);
            // A run of an earlier lease, if one is still going, stops for good and writes nothing more.
            self.run.fetch_add(1, Ordering::Relaxed);
            std::mem::replace(&mut *self.cancel.lock().unwrap_or_else(PoisonError::into_inner), cancel).cancel();
            self.cancel_requested.store(row.cancel_requested, Ordering::Relaxed);
            self.lease.store(token, Ordering::Relaxed);
            self.mirror.store(false, Ordering::Relaxed);
            state.published_seq()
        };
        self.seq_tx.send_replace(seq);
    }

    /// Another instance holds the job now: stop its code, forget what was not written (no one
    /// was shown it), and follow the store from here on. Whether it was held until now (once
    /// only, however many parts of the engine find out).
    pub(crate) fn lose(&self) -> bool {
        {
            let mut state = self.lock();
            if self.mirror.swap(true, Ordering::Relaxed) {
                return false;
            }
            self.run.fetch_add(1, Ordering::Relaxed);
            self.lease.store(0, Ordering::Relaxed);
            state.rewind_to_published();
        }
        self.cancel_token().cancel();
        true
    }

    /// The store will take nothing more of this job and no one else holds it: its code stops,
    /// it counts as ended (it holds no place in any bound), and its subscribers end where they
    /// are. Whether it was going on until now.
    fn give_up(&self) -> bool {
        {
            let mut state = self.lock();
            if state.forgotten {
                return false;
            }
            self.run.fetch_add(1, Ordering::Relaxed);
            state.rewind_to_published();
            state.forgotten = true;
            state.ended_ms.get_or_insert_with(|| self.ctx.clock.now_ms());
        }
        self.cancel_token().cancel();
        self.seq_tx.send_modify(|_| {});
        true
    }

    /// For a mirror: `events` were appended in the store (its newest `state` for when they do
    /// not follow on what the record has, because the store trimmed the ones between). Shows
    /// them; subscribers whose point fell out of the log get a reset.
    pub(crate) fn absorb(&self, events: Vec<JobEvent>, state: Snapshot) {
        let seq = {
            let mut s = self.lock();
            if !self.is_mirror() {
                return;
            }
            s.absorb(events, state, self.ctx.limits);
            s.published_seq()
        };
        self.seq_tx.send_if_modified(|old| {
            let moved = *old != seq;
            *old = seq;
            moved
        });
    }

    /// For a mirror: the store forgot the job; its subscribers end where they are.
    pub(crate) fn forgotten(&self) {
        self.lock().forgotten = true;
        self.seq_tx.send_modify(|_| {});
    }

    /// Someone asked, through the shared store, to stop the job this instance runs: the
    /// request is stored already; wake the job's code.
    pub(crate) fn cancel_from_store(&self) {
        self.cancel_requested.store(true, Ordering::Relaxed);
        self.cancel_token().cancel();
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

impl Written for JobRecord {
    fn job(&self) -> JobId {
        self.id
    }

    fn replay_capacity(&self) -> u64 {
        u64::try_from(self.ctx.limits.replay_capacity).unwrap_or(u64::MAX)
    }

    fn stored(&self, state: Arc<Snapshot>) {
        self.publish(state);
    }

    fn refused(&self, lease: u64) -> bool {
        // Only the lease the refused writes were made under is lost: a record that was taken
        // back since (a newer lease) keeps it.
        if lease != self.lease() {
            return false;
        }
        if lease == 0 {
            // A store one process owns refused it (it does not keep the job as this record
            // thinks): nobody else will write it either. It ends where it was shown.
            return self.give_up();
        }
        self.lose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
}
