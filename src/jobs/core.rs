//! The engine's mechanics, behind the [`JobEngine`](super::JobEngine) handle: admitting a job
//! through the coordinator, finding a record (held here, or read from a shared store and
//! mirrored), running a job's code and recording its end, taking over what a coordinator hands
//! over, cancelling, sweeping, stopping. One code path whether one instance runs or many: what
//! differs lives behind [`Coordinator`].
//!
//! Over 450 lines on purpose: it is every mechanism the engine has, and `Inner`'s fields are
//! this file's alone; cutting it would spread `Inner` over several files again.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::instrument::{Instrument, WithSubscriber};

use super::clock::Clock;
use super::coord::{local::Local, shared::Shared, Admitted, CoordStats, Coordinator, Host, TakeOutcome};
use super::journal::Journal;
use super::logs::JOB_SPAN;
use super::record::{JobRecord, RecordContext, RecordLimits};
use super::registry::KindRegistry;
use super::runner::{interrupt, record_end, run_to_end, stop_reason, Outcome, RESTARTED};
use super::store::shared::{Bounds, CancelReply, Claimed};
use super::store::{memory::MemoryStore, JobStore, LoadedJob, StoreError};
use super::table::JobTable;
use super::{EngineConfig, ProgressReporter, StartError};
use crate::model::{JobId, JobStatus, LogLevel, LogLine, Snapshot};

/// How long a start waits for the store to keep the new job before it gives up.
const START_WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a cancel of a waiting job waits for the store to keep its end before it answers
/// anyway (a store that does not answer must not hang the caller; the end is kept later).
const CANCEL_WRITE_WAIT: Duration = Duration::from_secs(2);

/// What asking a job to stop did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelOutcome {
    /// The job was running and has been told to stop.
    Requested,
    /// The job was still waiting for a slot: it never ran, and is now cancelled (in the store
    /// already, so whatever is read next says so).
    Withdrawn,
    /// The job had already ended, with this status; nothing changed.
    AlreadyEnded(JobStatus),
}

/// What an engine found in its store when it opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Recovered {
    /// Jobs read back, ended ones included.
    pub jobs: usize,
    /// Waiting jobs queued again.
    pub queued: usize,
    /// Running jobs of resumable kinds that continue from their checkpoint.
    pub resumed: usize,
    /// Running jobs that could not continue and ended `interrupted`.
    pub interrupted: usize,
}

/// The engine's state. Its fields are this file's alone.
pub(crate) struct Inner {
    config: EngineConfig,
    kinds: KindRegistry,
    /// The records this process holds: every job it keeps (one process) or those it runs and
    /// has looked up (shared store).
    table: Arc<JobTable>,
    coord: Box<dyn Coordinator>,
    store: Arc<dyn JobStore>,
    journal: Journal,
    clock: Clock,
    /// Cancelled at shutdown: every job and every open stream watches it.
    shutdown: CancellationToken,
    tasks: TaskTracker,
    me: Weak<Inner>,
}

impl Inner {
    /// An engine that keeps its jobs in memory only.
    pub(crate) fn in_memory(config: EngineConfig, kinds: KindRegistry) -> Arc<Self> {
        let store: Arc<dyn JobStore> = Arc::new(MemoryStore::new());
        let (table, journal) = (Arc::new(JobTable::default()), Journal::start(store.clone()));
        let coord = Box::new(Local::new(&config, table.clone(), journal.clone(), Vec::new()));
        let parts = Parts { store, journal, table, coord, clock: Clock::start(), shutdown: CancellationToken::new() };
        Self::assemble(config, kinds, parts)
    }

    /// An engine on `store` with what a previous process left there (see
    /// [`JobEngine::open`](super::JobEngine::open)).
    pub(crate) fn open(
        config: EngineConfig,
        kinds: KindRegistry,
        store: Arc<dyn JobStore>,
    ) -> Result<(Arc<Self>, Recovered), StoreError> {
        let (table, journal) = (Arc::new(JobTable::default()), Journal::start(store.clone()));
        if let Some(shared) = store.clone().shared() {
            let bounds = Bounds {
                max_running: config.max_running.max(1),
                max_queued: config.max_queued,
                max_active_per_owner: config.max_active_per_owner,
                max_jobs: config.max_jobs.max(1),
                lease: config.lease,
            };
            let instance = config.instance.clone().unwrap_or_else(default_instance_name);
            let counts = shared.counts()?;
            let reaped = shared.reap(&instance, &bounds, &[])?;
            let mut found = Recovered {
                jobs: usize::try_from(counts.jobs).unwrap_or(usize::MAX),
                queued: usize::try_from(counts.queued).unwrap_or(usize::MAX),
                ..Recovered::default()
            };
            for claimed in &reaped {
                match claimed.job.0.state.status {
                    JobStatus::Running if claimed.job.0.cancel_requested => {}
                    JobStatus::Running if kinds.is_resumable(&claimed.job.0.kind) => found.resumed += 1,
                    JobStatus::Running => found.interrupted += 1,
                    _ => found.queued += 1,
                }
            }
            tracing::info!(store = %store.describe(), %instance, jobs = found.jobs, queued = found.queued,
                resumed = found.resumed, interrupted = found.interrupted, "joined the shared store");
            let coord = Box::new(Shared::new(shared, bounds, instance, table.clone(), reaped));
            let parts =
                Parts { store, journal, table, coord, clock: Clock::start(), shutdown: CancellationToken::new() };
            return Ok((Self::assemble(config, kinds, parts), found));
        }
        // One process owns the store: every kept job is read back now, and the table holds them all.
        let loaded = store.load()?;
        let (clock, shutdown) = (Clock::start(), CancellationToken::new());
        let ctx = record_context(&config, &journal, clock);
        let mut to_run = Vec::new();
        let recovered = recover(&kinds, &table, loaded, &ctx, &shutdown, &mut to_run);
        if recovered.jobs > 0 {
            tracing::info!(store = %store.describe(), jobs = recovered.jobs, queued = recovered.queued,
                resumed = recovered.resumed, interrupted = recovered.interrupted, "jobs read back from the store");
        }
        let coord = Box::new(Local::new(&config, table.clone(), journal.clone(), to_run));
        let parts = Parts { store, journal, table, coord, clock, shutdown };
        Ok((Self::assemble(config, kinds, parts), recovered))
    }

    fn assemble(config: EngineConfig, kinds: KindRegistry, parts: Parts) -> Arc<Self> {
        let Parts { store, journal, table, coord, clock, shutdown } = parts;
        Arc::new_cyclic(|me| Self {
            config,
            kinds,
            table,
            coord,
            store,
            journal,
            clock,
            shutdown,
            tasks: TaskTracker::new(),
            me: me.clone(),
        })
    }

    fn record_context(&self) -> RecordContext {
        record_context(&self.config, &self.journal, self.clock)
    }

    /// Ends a job that is not running (it never ran, or cannot go on) with `outcome`.
    fn end_now(&self, record: &Arc<JobRecord>, outcome: Outcome) {
        record_end(record, record.run(), outcome, Duration::ZERO, false);
    }

    pub(crate) fn config(&self) -> &EngineConfig {
        &self.config
    }

    pub(crate) fn kinds(&self) -> &KindRegistry {
        &self.kinds
    }

    pub(crate) fn table(&self) -> &Arc<JobTable> {
        &self.table
    }

    pub(crate) fn journal(&self) -> &Journal {
        &self.journal
    }

    pub(crate) fn store(&self) -> &Arc<dyn JobStore> {
        &self.store
    }

    pub(crate) fn clock(&self) -> Clock {
        self.clock
    }

    pub(crate) fn shutdown_token(&self) -> &CancellationToken {
        &self.shutdown
    }

    fn arc(&self) -> Option<Arc<Self>> {
        self.me.upgrade()
    }
}

/// What an engine is put together from, besides its config and kinds.
struct Parts {
    store: Arc<dyn JobStore>,
    journal: Journal,
    table: Arc<JobTable>,
    coord: Box<dyn Coordinator>,
    clock: Clock,
    shutdown: CancellationToken,
}

/// The bounds and sinks every record of an engine gets.
fn record_context(config: &EngineConfig, journal: &Journal, clock: Clock) -> RecordContext {
    RecordContext {
        limits: RecordLimits {
            replay_capacity: config.replay_capacity,
            replay_bytes: config.replay_bytes,
            max_log_lines: config.max_log_lines,
            max_log_bytes: config.max_log_bytes,
        },
        journal: journal.clone(),
        clock,
    }
}

/// Takes in what a store one process owns held, and decides what becomes of each job: those
/// asked to stop end cancelled, running ones that cannot resume end interrupted, and the ones
/// to run go to `to_run` as (id, resumed).
fn recover(
    kinds: &KindRegistry,
    table: &JobTable,
    loaded: Vec<LoadedJob>,
    ctx: &RecordContext,
    shutdown: &CancellationToken,
    to_run: &mut Vec<(JobId, bool)>,
) -> Recovered {
    let mut found = Recovered { jobs: loaded.len(), ..Recovered::default() };
    for (row, events) in loaded {
        let (id, status, cancel_requested) = (row.id, row.state.status, row.cancel_requested);
        let resumable = kinds.is_resumable(&row.kind);
        let record = JobRecord::restore(row, events, ctx.clone(), shutdown.child_token());
        table.insert(record.clone());
        match status {
            JobStatus::Pending | JobStatus::Running if cancel_requested => {
                record_end(&record, record.run(), Outcome::Cancelled, Duration::ZERO, false);
            }
            JobStatus::Pending => {
                found.queued += 1;
                to_run.push((id, false));
            }
            JobStatus::Running if resumable => {
                found.resumed += 1;
                to_run.push((id, true));
            }
            JobStatus::Running => {
                found.interrupted += 1;
                interrupt(&record, record.run(), RESTARTED);
            }
            _ => {}
        }
    }
    found
}

/// `host-pid-xxxx`: unique per process, and says where to look.
fn default_instance_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_default();
    let host = if host.is_empty() { "instance".to_string() } else { host };
    let suffix = &JobId::new_random().to_string()[..4];
    format!("{host}-{}-{suffix}", std::process::id())
}

impl Inner {
    /// Starts the work the coordinator has from the start (see [`Coordinator::begin`]).
    pub(crate) fn begin(self: &Arc<Self>) -> usize {
        let host: Weak<dyn Host> = Arc::downgrade(self) as Weak<dyn Host>;
        self.coord.begin(host)
    }

    /// Admits and starts a new job; returns once it is in the store (and so visible).
    pub(crate) async fn start(
        self: &Arc<Self>,
        owner: Option<&str>,
        kind: &str,
        params: Value,
    ) -> Result<JobId, StartError> {
        if self.shutdown.is_cancelled() {
            return Err(StartError::ShuttingDown);
        }
        let kinds = &self.kinds;
        let (Some(name), Some(prepared)) = (kinds.canonical_name(kind), kinds.prepare(kind, params.clone())) else {
            return Err(StartError::UnknownKind { kind: kind.chars().take(64).collect(), known: kinds.names() });
        };
        if let Err(reason) = prepared {
            return Err(StartError::InvalidParams { kind: name.to_string(), reason });
        }
        let params = if params.is_null() { Value::Object(serde_json::Map::new()) } else { params };
        let id = JobId::new_random();
        let record =
            JobRecord::new(id, name, params, owner.map(Arc::from), self.record_context(), self.shutdown.child_token());
        match self.coord.admit(record.clone()).await? {
            Admitted::Run(_) => self.launch_record(&record, false),
            Admitted::Queued => tracing::info!(%id, kind = name, "job queued"),
        }
        let mut published = record.watch();
        let stored =
            matches!(tokio::time::timeout(START_WRITE_TIMEOUT, published.wait_for(|seq| *seq >= 1)).await, Ok(Ok(_)));
        if !stored {
            // Not kept in time: it must not run later behind the client's back.
            let _ = self.cancel(id).await;
            let why = self.journal.healthy().err().unwrap_or_else(|| "it did not answer in time".into());
            return Err(StartError::StoreUnavailable { reason: why });
        }
        if let Some(owner) = owner {
            self.table.announce(owner);
        }
        Ok(id)
    }

    /// The job `id`: from the table, or (with a shared store) read from the store and kept as
    /// a mirror. `Ok(None)` for a job no one keeps; `Err` when the store could not be asked.
    pub(crate) async fn find(&self, id: JobId) -> Result<Option<Arc<JobRecord>>, StoreError> {
        if let Some(record) = self.table.get(id) {
            return Ok(Some(record));
        }
        let Some((row, events)) = self.coord.lookup(id).await? else { return Ok(None) };
        let record = JobRecord::mirror(row, events, self.record_context(), self.shutdown.child_token());
        let kept = self.table.insert_or_get(record.clone());
        if Arc::ptr_eq(&kept, &record) && !record.has_ended() {
            // A notice that came between the read and the insert found no mirror to move on:
            // read once more now that notices reach it.
            let seq = record.snapshot().map_or(0, |s| s.seq);
            self.coord.refresh(vec![(record, seq)]).await;
        }
        Ok(Some(kept))
    }

    /// A job's state as shown: the newest stored, with its place in the queue while it waits.
    pub(crate) async fn visible(&self, record: &JobRecord) -> Option<Arc<Snapshot>> {
        let state = record.snapshot()?;
        if state.status != JobStatus::Pending {
            return Some(state);
        }
        // The place is a nicety: a store that cannot tell it now does not hide the job.
        let Ok(Some(place)) = self.coord.queue_position(record.id).await else { return Some(state) };
        let mut waiting = Snapshot::clone(&state);
        waiting.queue_position = Some(place);
        waiting.message = format!("Queued: {} ahead", place - 1);
        Some(Arc::new(waiting))
    }

    /// The jobs `owner` has, newest first; `Err` when the store cannot list them (a partial
    /// list would read as jobs gone).
    pub(crate) async fn jobs_of(&self, owner: &str) -> Result<Vec<Arc<Snapshot>>, StoreError> {
        let ids = self.coord.owner_jobs(owner).await?;
        let mut jobs = Vec::with_capacity(ids.len());
        for id in ids {
            match self.find(id).await {
                Ok(Some(record)) => jobs.extend(self.visible(&record).await),
                Ok(None) => {}
                Err(error) => tracing::warn!(%id, %error, "could not look one of an owner's jobs up; leaving it out"),
            }
        }
        jobs.sort_by(|a, b| b.created.cmp(&a.created).then(b.id.cmp(&a.id)));
        Ok(jobs)
    }

    /// Asks a job to stop (see [`JobEngine::cancel`](super::JobEngine::cancel)).
    pub(crate) async fn cancel(&self, id: JobId) -> Result<Option<CancelOutcome>, StoreError> {
        let Some(record) = self.find(id).await? else { return Ok(None) };
        if record.has_ended() {
            let status = record.snapshot().map_or(record.current().status, |s| s.status);
            return Ok(Some(CancelOutcome::AlreadyEnded(status)));
        }
        if record.is_mirror() {
            return Ok(match self.coord.cancel_elsewhere(id).await? {
                CancelReply::Unknown => None,
                CancelReply::Ended(status) => Some(CancelOutcome::AlreadyEnded(status)),
                CancelReply::Requested => Some(CancelOutcome::Requested),
                CancelReply::Claimed(claimed) => {
                    let taken = self.take(claimed);
                    debug_assert_eq!(taken, TakeOutcome::Cancelled, "a claimed cancel ends the job");
                    let _ = tokio::time::timeout(CANCEL_WRITE_WAIT, self.journal.flush()).await;
                    Some(CancelOutcome::Withdrawn)
                }
            });
        }
        record.request_cancel();
        if self.coord.withdraw(id) {
            self.end_now(&record, Outcome::Cancelled);
            // A state is shown once the store has it: wait for that (one batch), so that the
            // answer, and whatever the caller reads next, already says `cancelled`.
            let _ = tokio::time::timeout(CANCEL_WRITE_WAIT, self.journal.flush()).await;
            return Ok(Some(CancelOutcome::Withdrawn));
        }
        Ok(Some(CancelOutcome::Requested))
    }

    /// The coordinator's numbers, and the count of leases lost.
    pub(crate) async fn coord_stats(&self) -> CoordStats {
        let mut stats = self.coord.stats().await;
        if let Some(shared) = &mut stats.shared {
            shared.leases_lost = self.journal.counters().leases_lost.load(Ordering::Relaxed);
        }
        stats
    }

    /// Stops for a restart (see [`JobEngine::shutdown`](super::JobEngine::shutdown)).
    pub(crate) async fn shutdown(&self, timeout: Duration) -> bool {
        self.shutdown.cancel();
        for id in self.coord.drain() {
            if !self.store.outlives_process() {
                if let Some(record) = self.table.get(id) {
                    record_end(&record, record.run(), Outcome::Stopped, Duration::ZERO, false);
                }
            }
        }
        self.tasks.close();
        let stopped = tokio::time::timeout(timeout, self.tasks.wait()).await.is_ok();
        // Bounded: a store that refuses every write (a full disk) must not hang the stop. What
        // it did not take is lost with the process, and was never shown to anyone.
        if tokio::time::timeout(timeout.max(Duration::from_secs(1)), self.journal.flush()).await.is_err() {
            tracing::error!(store = %self.store.describe(), "the job store did not take the last writes before the stop");
        }
        // Written up to here: other instances may take the paused jobs over at once.
        self.coord.release_all().await;
        stopped
    }

    /// Forgets ended jobs whose retention has passed. Returns how many.
    pub(crate) async fn sweep(&self) -> usize {
        let retention = u64::try_from(self.config.retention.as_millis()).unwrap_or(u64::MAX);
        let ended_by = self.clock.now_ms().saturating_sub(retention);
        let swept = self.table.sweep(ended_by);
        self.coord.expire(ended_by, swept).await.unwrap_or_else(|error| {
            tracing::warn!(%error, "could not forget expired jobs in the store; trying again at the next sweep");
            0
        })
    }

    /// Runs `record`'s job in a slot it already holds; `resumed` when it continues from its
    /// checkpoint. When the run is over and its end is stored, its slot (and lease) go, and the
    /// next waiting job takes the slot.
    fn launch_record(&self, record: &Arc<JobRecord>, resumed: bool) {
        if self.shutdown.is_cancelled() {
            // Stopping: the job stays waiting in the store and runs at the next start.
            return;
        }
        let Some(inner) = self.arc() else { return };
        let (run, lease) = (record.begin_run(), record.lease());
        let record = record.clone();
        let prepared = match self.kinds.prepare(&record.kind, record.params.clone()) {
            Some(Ok(prepared)) => prepared,
            Some(Err(reason)) => {
                let outcome = Outcome::Failed(format!("its params are no longer accepted: {reason}"));
                self.tasks.spawn(async move { inner.run_ended(&record, (run, lease), outcome, Duration::ZERO).await });
                return;
            }
            None => {
                let outcome = Outcome::Failed(format!("this server no longer knows the job kind {:?}", record.kind));
                self.tasks.spawn(async move { inner.run_ended(&record, (run, lease), outcome, Duration::ZERO).await });
                return;
            }
        };
        let resume_point = if resumed { record.checkpoint() } else { None };
        let reporter = ProgressReporter::new(record.clone(), run, resume_point);
        let id = record.id;
        tracing::info!(%id, kind = %record.kind, resumed, "job started");
        // Everything the job's code logs inside this span reaches the job's viewers (see
        // `JobLogLayer`), with the subscriber of whoever started it.
        let span = tracing::info_span!(JOB_SPAN, job_id = %id, kind = %record.kind);
        let job = prepared(reporter.clone()).instrument(span).with_current_subscriber();
        self.tasks.spawn(async move {
            let started = inner.clock.now_ms();
            if resumed {
                record.apply_as(run, |s| s.message = "Resumed after a server restart".into());
                record.log_as(
                    run,
                    LogLine {
                        seq: 0,
                        ts: inner.clock.now_ms(),
                        level: LogLevel::Info,
                        target: module_path!().into(),
                        message: "resumed after a server restart, from its last checkpoint".into(),
                        fields: serde_json::Map::new(),
                    },
                );
            } else if !reporter.is_cancelled() {
                reporter.mark_running();
            }
            let outcome = if reporter.is_cancelled() {
                stop_reason(&record, inner.shutdown.is_cancelled())
            } else {
                let stopping = inner.shutdown.clone();
                run_to_end(&record, Box::pin(job), inner.config.cancel_grace, move || stopping.is_cancelled()).await
            };
            let took = Duration::from_millis(inner.clock.now_ms().saturating_sub(started));
            inner.run_ended(&record, (run, lease), outcome, took).await;
        });
    }

    /// Run `run` of a job, under `lease`, ended with `outcome`: records it and frees the slot
    /// for the next waiting job. With a lease, only once the store has the end: the lease is
    /// held until then, so no other instance runs a finished job again.
    async fn run_ended(
        self: Arc<Self>,
        record: &Arc<JobRecord>,
        (run, lease): (u64, u64),
        outcome: Outcome,
        took: Duration,
    ) {
        let pause = self.store.outlives_process() && self.kinds.is_resumable(&record.kind);
        record_end(record, run, outcome, took, pause);
        if lease != 0 {
            self.journal.flush().await;
        }
        let give_back = record.has_ended() || record.is_mirror();
        if let Some(next) = self.coord.run_over(record.id, lease, give_back) {
            self.launch(next, false);
        }
    }
}

impl Host for Inner {
    fn take(&self, claimed: Claimed) -> TakeOutcome {
        let Claimed { token, job } = claimed;
        let (row, events) = job;
        let (id, status, cancel_requested) = (row.id, row.state.status, row.cancel_requested);
        let resumable = self.kinds.is_resumable(&row.kind);
        let cancel = self.shutdown.child_token();
        let record = match self.table.get(id) {
            Some(record) => {
                record.adopt((row, events), token, cancel);
                record
            }
            None => {
                // Its stop signal is set by `adopt` (which cancels the one it replaces).
                let fresh =
                    JobRecord::restore(row.clone(), events.clone(), self.record_context(), CancellationToken::new());
                let kept = self.table.insert_or_get(fresh);
                // Made a mirror meanwhile by a look-up, or just made: the record holds it now.
                kept.adopt((row, events), token, cancel);
                kept
            }
        };
        self.coord.hold(id, token);
        let taken = match status {
            _ if cancel_requested => {
                self.end_now(&record, Outcome::Cancelled);
                TakeOutcome::Cancelled
            }
            JobStatus::Running if !resumable => {
                interrupt(&record, record.run(), RESTARTED);
                TakeOutcome::Interrupted
            }
            JobStatus::Running => TakeOutcome::Resumed,
            _ => TakeOutcome::Started,
        };
        match taken {
            TakeOutcome::Started | TakeOutcome::Resumed => self.launch_record(&record, taken == TakeOutcome::Resumed),
            TakeOutcome::Cancelled | TakeOutcome::Interrupted => {
                // Its lease goes once its end is stored.
                if let Some(inner) = self.arc() {
                    self.tasks.spawn(async move {
                        inner.journal.flush().await;
                        inner.coord.run_over(id, token, true);
                    });
                }
            }
        }
        taken
    }

    fn launch(&self, id: JobId, resumed: bool) {
        match self.table.get(id) {
            Some(record) => self.launch_record(&record, resumed),
            None => {
                if let Some(next) = self.coord.run_over(id, 0, true) {
                    self.launch(next, false);
                }
            }
        }
    }

    fn record(&self, id: JobId) -> Option<Arc<JobRecord>> {
        self.table.get(id)
    }

    fn announce(&self, owner: &str) {
        self.table.announce(owner);
    }

    fn stopping(&self) -> bool {
        self.shutdown.is_cancelled()
    }

    fn lease_lost(&self) {
        self.journal.counters().leases_lost.fetch_add(1, Ordering::Relaxed);
    }
}
