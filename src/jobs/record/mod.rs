//! One job's memory: its state, its bounded replay log, and the signal that wakes its
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
//! With a store several instances share, a record is either *held* (this instance runs the job
//! under a lease whose token goes with every write) or a *mirror* of a job another instance
//! runs or that waits in the shared queue: a mirror writes nothing, and takes in what the
//! store says was appended ([`JobRecord::absorb`]). A record changes role in place
//! ([`JobRecord::adopt`], [`JobRecord::lose`]), so its subscribers never notice the hand-over.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use serde_json::Value;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::clock::Clock;
use super::journal::Journal;
use super::store::{JobRow, LoadedJob};
use crate::model::{JobId, JobStatus, LogLine, Snapshot};

/// How often, at most, a job that is dropping log lines says so while it runs, in ms.
const DROP_REPORT_EVERY_MS: u64 = 1_000;

/// An event's JSON, encoded once when the event is made: the store writes it and every
/// subscriber sends it, however many there are.
pub type Json = Arc<str>;

/// One event in a job's replay log, with its JSON.
#[derive(Debug, Clone, PartialEq)]
pub enum JobEvent {
    /// The job's state changed; this is the whole state after the change.
    State(Arc<Snapshot>, Json),
    /// The job's code logged a line.
    Log(Arc<LogLine>, Json),
}

impl JobEvent {
    /// A change of state, encoded.
    pub fn state(state: Arc<Snapshot>) -> Self {
        let json = encode(&*state, state.seq);
        Self::State(state, json)
    }

    /// A log line, encoded.
    pub fn log(line: Arc<LogLine>) -> Self {
        let json = encode(&*line, line.seq);
        Self::Log(line, json)
    }

    /// The event's sequence number.
    pub fn seq(&self) -> u64 {
        match self {
            Self::State(s, _) => s.seq,
            Self::Log(l, _) => l.seq,
        }
    }

    /// The event's JSON.
    pub fn json(&self) -> &Json {
        match self {
            Self::State(_, json) | Self::Log(_, json) => json,
        }
    }

    /// The bytes it holds in a replay log, about.
    fn size(&self) -> usize {
        let value = match self {
            Self::State(s, _) => std::mem::size_of::<Snapshot>() + s.kind.len() + s.step.len() + s.message.len(),
            Self::Log(l, _) => std::mem::size_of::<LogLine>() + l.target.len() + line_size(l),
        };
        value + self.json().len()
    }
}

/// `value` as JSON. A job's states and log lines always encode (their maps have string keys);
/// should one not, its sequence number still goes out, and the error is logged.
pub fn encode<T: serde::Serialize>(value: &T, seq: u64) -> Json {
    serde_json::to_string(value)
        .unwrap_or_else(|e| {
            tracing::error!(error = %e, seq, "could not encode an event");
            format!("{{\"seq\":{seq}}}")
        })
        .into()
}

/// What a subscriber at some cursor should get next.
#[derive(Debug)]
pub(crate) enum CatchUp {
    /// The published events after the cursor, oldest first.
    Events(Vec<JobEvent>),
    /// The cursor is not in the log any more (or never was): here is the whole state, whose
    /// `seq` is the newest published event's.
    Reset(Arc<Snapshot>),
    /// Nothing new; `ended` says whether anything ever will be.
    UpToDate { ended: bool },
}

/// The bounds of one job's memory.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RecordLimits {
    /// Events kept for replay.
    pub(crate) replay_capacity: usize,
    /// Bytes the events kept for replay may hold, about (at least the newest is kept).
    pub(crate) replay_bytes: usize,
    /// Log lines accepted over the job's life.
    pub(crate) max_log_lines: usize,
    /// Bytes of log messages and fields accepted over the job's life.
    pub(crate) max_log_bytes: usize,
}

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
    /// instance took it over); a new one for each run.
    cancel: Mutex<CancellationToken>,
    /// Whether someone asked it to stop (as opposed to the server stopping).
    cancel_requested: AtomicBool,
    /// The lease this instance holds on the job in a shared store (0: none).
    lease: AtomicU64,
    /// Whether this is a mirror of a job this instance does not hold (it writes nothing).
    mirror: AtomicBool,
    state: Mutex<RecordState>,
    /// Carries the newest published sequence number; subscribers wait on it.
    seq_tx: watch::Sender<u64>,
    ctx: RecordContext,
}

struct RecordState {
    /// The job's newest state, perhaps not written yet; its `seq` is the newest event's.
    current: Arc<Snapshot>,
    /// The newest state written to the store: what everyone is shown. `None` until the job's
    /// first event is written.
    published: Option<Arc<Snapshot>>,
    /// The newest events, at most `replay_capacity` of them, oldest first (the newest may not
    /// be published yet).
    log: VecDeque<JobEvent>,
    /// What the events in `log` hold, in bytes (about).
    log_size: usize,
    /// Log lines and bytes accepted so far.
    log_lines: usize,
    log_bytes: usize,
    /// Log lines refused for the bounds, and when that was last told (ms).
    logs_dropped: u64,
    drop_told_at: Option<u64>,
    /// When the job started running and when it ended (ms since the epoch).
    started_ms: Option<u64>,
    ended_ms: Option<u64>,
    /// The newest checkpoint the job's code saved.
    checkpoint: Option<Value>,
    /// For a mirror: the store no longer keeps the job (its retention passed elsewhere), so
    /// nothing more will come.
    forgotten: bool,
}

impl RecordState {
    /// The state of a job as `row` and its `events` say, the newest events kept as `limits`
    /// allow.
    fn of(row: &JobRow, mut events: Vec<JobEvent>, stored: bool, limits: RecordLimits) -> Self {
        // Read apart, the events may reach past the row's state: those come again later.
        events.retain(|e| e.seq() <= row.state.seq);
        let skip = events.len().saturating_sub(limits.replay_capacity);
        let kept: Vec<JobEvent> = events.into_iter().skip(skip).collect();
        let lines = kept.iter().filter_map(|e| match e {
            JobEvent::Log(l, _) => Some(line_size(l)),
            JobEvent::State(..) => None,
        });
        let (log_lines, log_bytes) = lines.fold((0, 0), |(n, b), size| (n + 1, b + size));
        let mut state = Self {
            current: row.state.clone(),
            published: stored.then(|| row.state.clone()),
            log: VecDeque::with_capacity(kept.len()),
            log_size: 0,
            log_lines,
            log_bytes,
            logs_dropped: row.state.logs_dropped,
            drop_told_at: None,
            started_ms: row.started_ms,
            ended_ms: row.state.status.is_terminal().then(|| row.ended_ms.unwrap_or(row.state.ts)),
            checkpoint: row.checkpoint.clone(),
            forgotten: false,
        };
        for event in kept {
            state.push(event, limits);
        }
        state
    }

    /// A mirror's newest state, as written by whoever holds the job.
    fn set_mirrored(&mut self, state: Arc<Snapshot>) {
        if self.started_ms.is_none() && state.status == JobStatus::Running {
            self.started_ms = Some(state.ts);
        }
        if state.status.is_terminal() {
            self.ended_ms = Some(state.ts);
        }
        self.logs_dropped = state.logs_dropped;
        self.current = state.clone();
        self.published = Some(state);
    }

    /// Adds the newest event, forgetting the oldest ones past the count or the bytes the
    /// limits allow (the newest is always kept).
    fn push(&mut self, event: JobEvent, limits: RecordLimits) {
        let size = event.size();
        while !self.log.is_empty()
            && (self.log.len() >= limits.replay_capacity || self.log_size + size > limits.replay_bytes)
        {
            if let Some(oldest) = self.log.pop_front() {
                self.log_size -= oldest.size();
            }
        }
        self.log_size += size;
        self.log.push_back(event);
    }

    fn published_seq(&self) -> u64 {
        self.published.as_ref().map_or(0, |s| s.seq)
    }
}

/// Bytes a log line counts against its job's bound.
fn line_size(line: &LogLine) -> usize {
    line.message.len() + line.fields.iter().map(|(k, v)| k.len() + v.to_string().len()).sum::<usize>()
}

impl JobRecord {
    /// A new job in the `pending` state, its event number 1 (not yet written: the engine hands
    /// it to the journal with the job's row, see [`first_event`](Self::first_event)).
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
            state: Mutex::new(state),
            seq_tx,
            ctx,
        })
    }

    /// What the job's code is told to stop by (the current run's).
    pub(crate) fn cancel_token(&self) -> CancellationToken {
        self.cancel.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// The lease this instance holds on the job (0: none).
    pub(crate) fn lease(&self) -> u64 {
        self.lease.load(Ordering::Relaxed)
    }

    /// Holds the job under `token` from now on.
    pub(crate) fn set_lease(&self, token: u64) {
        self.lease.store(token, Ordering::Relaxed);
    }

    /// A shared store admitted this new job (its first event is stored): show it. With a
    /// `lease` this instance runs it; with none (0) it waits in the shared queue and the
    /// record mirrors it until some instance claims it.
    pub(crate) fn admitted(&self, lease: u64) {
        self.set_lease(lease);
        self.publish(self.current());
        if lease == 0 {
            self.mirror.store(true, Ordering::Relaxed);
        }
    }

    /// Whether this record only mirrors a job this instance does not hold.
    pub(crate) fn is_mirror(&self) -> bool {
        self.mirror.load(Ordering::Relaxed)
    }

    /// This instance now holds the job, under `token`, as the store keeps it (`job`): the
    /// record takes that state (anything newer a mirror had cannot exist: the store is where
    /// it came from) and a fresh stop signal, and writes from now on. Subscribers stay.
    pub(crate) fn adopt(&self, job: LoadedJob, token: u64, cancel: CancellationToken) {
        let (row, events) = job;
        {
            let mut state = self.lock();
            *state = RecordState::of(&row, events, true, self.ctx.limits);
            // A run of an earlier lease, if one is still going, stops for good.
            std::mem::replace(&mut *self.cancel.lock().unwrap_or_else(PoisonError::into_inner), cancel).cancel();
            self.cancel_requested.store(row.cancel_requested, Ordering::Relaxed);
            self.lease.store(token, Ordering::Relaxed);
            self.mirror.store(false, Ordering::Relaxed);
        }
        let seq = self.lock().published_seq();
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
            self.lease.store(0, Ordering::Relaxed);
            if let Some(published) = state.published.clone() {
                let seq = published.seq;
                state.log.retain(|e| e.seq() <= seq);
                state.ended_ms = published.status.is_terminal().then_some(published.ts);
                state.current = published;
            }
        }
        self.cancel_token().cancel();
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
            let known = s.published_seq();
            let fresh: Vec<JobEvent> = events.into_iter().filter(|e| e.seq() > known).collect();
            let follows = fresh.first().is_some_and(|e| e.seq() == known + 1);
            if !follows && state.seq > known {
                // The events in between were trimmed: start over from the store's state.
                s.log.clear();
                s.set_mirrored(Arc::new(state));
            }
            let limits = self.ctx.limits;
            for event in fresh {
                let newest_kept = s.log.back().map_or(0, JobEvent::seq);
                if event.seq() <= s.published_seq() || event.seq() <= newest_kept {
                    continue;
                }
                if event.seq() != s.published_seq() + 1 {
                    break; // never a hole in the log; the next look fills it
                }
                let next = match &event {
                    JobEvent::State(state, _) => state.clone(),
                    JobEvent::Log(line, _) => {
                        let mut next = Snapshot::clone(&s.current);
                        next.seq = line.seq;
                        Arc::new(next)
                    }
                };
                s.push(event, limits);
                s.set_mirrored(next);
            }
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

    fn lock(&self) -> MutexGuard<'_, RecordState> {
        // The lock is only held for plain field updates that cannot panic half-way, so a
        // poisoned lock still guards consistent data.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
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

    /// How many events are kept for replay.
    pub(crate) fn replay_capacity(&self) -> u64 {
        u64::try_from(self.ctx.limits.replay_capacity).unwrap_or(u64::MAX)
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
            self.ctx.journal.cancel_requested(self.clone());
        }
        self.cancel_token().cancel();
    }

    /// Saves a checkpoint: written with (or after) the events before it.
    pub(crate) fn save_checkpoint(self: &Arc<Self>, value: Value) {
        let mut state = self.lock();
        if state.ended_ms.is_some() || self.is_mirror() {
            return;
        }
        state.checkpoint = Some(value.clone());
        self.ctx.journal.checkpoint(self.clone(), value);
    }

    /// Applies one change as one event. Returns the event's sequence number, or `None` when
    /// the change changed nothing or the job had already ended (an ended job is final).
    pub(crate) fn apply(self: &Arc<Self>, change: impl FnOnce(&mut Snapshot)) -> Option<u64> {
        let mut state = self.lock();
        self.apply_locked(&mut state, change)
    }

    fn apply_locked(self: &Arc<Self>, state: &mut RecordState, change: impl FnOnce(&mut Snapshot)) -> Option<u64> {
        if state.ended_ms.is_some() || self.is_mirror() {
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
        self.ctx.journal.event(self.clone(), event, next.clone());
        Some(next.seq)
    }

    /// Adds a log line (its `seq` is set here) as one event, unless the job has ended or the
    /// line would pass the job's log bounds: then it is counted as dropped, and the count is
    /// told in the job's state (at once for the first, then at most once a second, and at the end).
    pub(crate) fn log(self: &Arc<Self>, mut line: LogLine) -> Option<u64> {
        let mut state = self.lock();
        if state.ended_ms.is_some() || self.is_mirror() {
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
            return self.apply_locked(&mut state, |_| {});
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
        self.ctx.journal.event(self.clone(), event, current);
        Some(line.seq)
    }

    /// The journal wrote events up to `state.seq`: show them.
    pub(crate) fn publish(&self, state: Arc<Snapshot>) {
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
        let state = self.lock();
        let Some(published) = &state.published else {
            return CatchUp::UpToDate { ended: false };
        };
        let newest = published.seq;
        if cursor == newest {
            return CatchUp::UpToDate { ended: published.status.is_terminal() || state.forgotten };
        }
        // An empty log (a job read back without its events) holds nothing to replay.
        let oldest = state.log.front().map_or(newest + 1, JobEvent::seq);
        if cursor > newest || cursor + 1 < oldest {
            return CatchUp::Reset(published.clone());
        }
        let skip = usize::try_from(cursor + 1 - oldest).unwrap_or(usize::MAX);
        CatchUp::Events(state.log.iter().skip(skip).take_while(|e| e.seq() <= newest).cloned().collect())
    }

    /// The published log lines still in the replay log after sequence `after`, and how many
    /// were dropped.
    pub(crate) fn log_lines_after(&self, after: u64) -> (Vec<Arc<LogLine>>, u64) {
        let state = self.lock();
        let newest = state.published_seq();
        let lines = state
            .log
            .iter()
            .filter_map(|e| match e {
                JobEvent::Log(l, _) if l.seq > after && l.seq <= newest => Some(l.clone()),
                _ => None,
            })
            .collect();
        (lines, state.published.as_ref().map_or(0, |s| s.logs_dropped))
    }

    /// A receiver that wakes when a new event is published.
    pub(crate) fn watch(&self) -> watch::Receiver<u64> {
        self.seq_tx.subscribe()
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
        journal.create(r.clone());
        (r, journal)
    }

    fn record(replay_capacity: usize) -> (Arc<JobRecord>, Journal) {
        record_with(RecordLimits { replay_capacity, ..LIMITS })
    }

    /// A record whose progress changed `changes` times, all published.
    async fn progressed(replay_capacity: usize, changes: u32) -> (Arc<JobRecord>, Journal) {
        let (r, journal) = record(replay_capacity);
        for p in 1..=changes {
            r.apply(|s| s.progress = f64::from(p));
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
        assert_eq!(r.apply(|s| s.progress = 10.0), Some(2));
        assert_eq!(r.apply(|s| s.message = "hello".into()), Some(3));
        journal.flush().await;
        let s = r.snapshot().expect("published");
        assert_eq!((s.seq, s.progress, s.message.as_str()), (3, 10.0, "hello"));
    }

    #[tokio::test]
    async fn log_lines_share_the_sequence_and_move_the_state_on() {
        let (r, journal) = record(16);
        assert_eq!(r.log(line("one")), Some(2));
        assert_eq!(r.apply(|s| s.progress = 5.0), Some(3));
        assert_eq!(r.log(line("two")), Some(4));
        journal.flush().await;
        assert_eq!(r.snapshot().expect("published").seq, 4, "the state's seq is the newest event's");
        let (lines, dropped) = r.log_lines_after(2);
        assert_eq!(lines.iter().map(|l| l.message.as_str()).collect::<Vec<_>>(), ["two"]);
        assert_eq!(dropped, 0);
    }

    #[tokio::test]
    async fn a_change_that_changes_nothing_is_not_an_event() {
        let (r, _journal) = record(16);
        r.apply(|s| s.progress = 10.0);
        assert_eq!(r.apply(|s| s.progress = 10.0), None);
        assert_eq!(r.current().seq, 2);
    }

    #[tokio::test]
    async fn an_ended_job_is_final() {
        let (r, journal) = record(16);
        r.apply(|s| s.status = JobStatus::Completed);
        assert!(r.has_ended());
        assert_eq!(r.apply(|s| s.progress = 50.0), None);
        assert_eq!(r.log(line("late")), None);
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
            r.log(line(&"x".repeat(100)));
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
        one.apply(|s| s.progress = 1.0);
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
            r.log(line(&format!("line {i}")));
        }
        assert_eq!(r.current().logs_dropped, 1, "the first drop is told at once");
        tokio::time::sleep(std::time::Duration::from_millis(DROP_REPORT_EVERY_MS)).await;
        r.log(line("one more"));
        assert_eq!(r.current().logs_dropped, 8);
        r.apply(|s| s.status = JobStatus::Completed);
        journal.flush().await;
        let (lines, dropped) = r.log_lines_after(0);
        assert_eq!(lines.len(), 3);
        assert_eq!(dropped, 8);

        let (bytes, journal) = record_with(RecordLimits { max_log_bytes: 10, ..LIMITS });
        assert!(bytes.log(line("12345")).is_some());
        assert!(bytes.log(line("123456")).is_some(), "the drop is told");
        journal.flush().await;
        assert_eq!(bytes.log_lines_after(0).0.len(), 1);
    }
}
