//! The engine: starts jobs, keeps them in its store for their retention period, hands out
//! snapshots and subscriptions, picks up what a previous process left, and stops everything
//! at shutdown. With a store several instances share, admission, the queue and leases are the
//! store's (see `cluster`), and any instance serves any job.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::clock::Clock;
use super::cluster::{blocking, Cluster, Taken};
use super::journal::Journal;
use super::logs::JobLogLayer;
use super::record::{JobRecord, RecordContext, RecordLimits};
use super::registry::KindRegistry;
use super::runner::{interrupt, Outcome, RESTARTED};
use super::scheduler::{Admission, Scheduler};
use super::stats::{EngineStats, SharedStats};
use super::store::shared::{Admitted, Bounds, CancelReply, Claimed, Refused};
use super::store::{memory::MemoryStore, JobStore, StoreError};
use super::table::{JobTable, Refusal};
use super::{EngineConfig, StartError, Subscription};
use crate::model::{JobId, JobStatus, KindDescription, KindInfo, LogLine, Snapshot};

/// How long a start waits for the store to keep the new job before it gives up.
const START_WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a cancel of a waiting job waits for the store to keep its end before it answers
/// anyway (a store that does not answer must not hang the caller; the end is kept later).
const CANCEL_WRITE_WAIT: Duration = Duration::from_secs(2);

/// Runs jobs and remembers them. Cheap to clone: an `Arc` inside.
#[derive(Clone)]
pub struct JobEngine {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) config: EngineConfig,
    pub(crate) kinds: KindRegistry,
    pub(crate) table: Arc<JobTable>,
    pub(crate) scheduler: Scheduler,
    pub(crate) store: Arc<dyn JobStore>,
    pub(crate) journal: Journal,
    pub(crate) clock: Clock,
    /// Cancelled at shutdown: every job and every open stream watches it.
    pub(crate) shutdown: CancellationToken,
    pub(crate) tasks: TaskTracker,
    /// Jobs read back from the store that are to run: (id, resumed), until
    /// [`JobEngine::start_recovered`].
    recovered: std::sync::Mutex<Vec<(JobId, bool)>>,
    /// With a shared store: this instance's part in it.
    pub(crate) cluster: Option<Arc<Cluster>>,
    /// With a shared store: jobs whose lease had expired, taken at start-up, until
    /// [`JobEngine::start_recovered`].
    reaped: std::sync::Mutex<Vec<Claimed>>,
}

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

impl JobEngine {
    /// An engine that keeps its jobs in memory only. Must be called inside a Tokio runtime.
    pub fn new(config: EngineConfig, kinds: KindRegistry) -> Self {
        let store: Arc<dyn JobStore> = Arc::new(MemoryStore::new());
        let journal = Journal::start(store.clone());
        Self::assemble(config, kinds, store, journal, None)
    }

    fn assemble(
        config: EngineConfig,
        kinds: KindRegistry,
        store: Arc<dyn JobStore>,
        journal: Journal,
        cluster: Option<Arc<Cluster>>,
    ) -> Self {
        let engine = Self {
            inner: Arc::new(Inner {
                scheduler: Scheduler::new(config.max_running, config.max_queued),
                config,
                kinds,
                table: Arc::new(JobTable::default()),
                store,
                journal,
                clock: Clock::start(),
                shutdown: CancellationToken::new(),
                tasks: TaskTracker::new(),
                recovered: std::sync::Mutex::new(Vec::new()),
                cluster,
                reaped: std::sync::Mutex::new(Vec::new()),
            }),
        };
        engine.spawn_sweeper();
        engine
    }

    /// An engine on `store`, with the jobs a previous process left there: ended jobs are kept
    /// for the rest of their retention, running jobs that cannot resume end `interrupted` at
    /// their next sequence number, and those that can (and waiting jobs) are ready to go on
    /// with [`start_recovered`](Self::start_recovered): call it once the process's `tracing`
    /// subscriber (with [`log_layer`](Self::log_layer)) is installed, so their log lines
    /// reach their viewers. Must be called inside a Tokio runtime; reads the store (blocking,
    /// start-up only).
    ///
    /// With a store several instances share, nothing is read up front: jobs are looked up when
    /// asked for, waiting ones are claimed as slots free up, and running ones whose lease
    /// expired (their instance died) are taken over now and, from
    /// [`start_recovered`](Self::start_recovered) on, whenever that happens.
    pub fn open(
        config: EngineConfig,
        kinds: KindRegistry,
        store: Arc<dyn JobStore>,
    ) -> Result<(Self, Recovered), StoreError> {
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
            let cluster = Arc::new(Cluster::new(shared, bounds, instance));
            let journal = Journal::start(store.clone());
            let engine = Self::assemble(config, kinds, store, journal, Some(cluster.clone()));
            let mut found = Recovered {
                jobs: usize::try_from(counts.jobs).unwrap_or(usize::MAX),
                queued: usize::try_from(counts.queued).unwrap_or(usize::MAX),
                ..Recovered::default()
            };
            for claimed in &reaped {
                match claimed.job.0.state.status {
                    JobStatus::Running if claimed.job.0.cancel_requested => {}
                    JobStatus::Running if engine.inner.kinds.is_resumable(&claimed.job.0.kind) => found.resumed += 1,
                    JobStatus::Running => found.interrupted += 1,
                    _ => found.queued += 1,
                }
            }
            *engine.inner.reaped.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = reaped;
            tracing::info!(store = %engine.inner.store.describe(), instance = %cluster.instance, jobs = found.jobs,
                queued = found.queued, resumed = found.resumed, interrupted = found.interrupted, "joined the shared store");
            return Ok((engine, found));
        }
        let loaded = store.load()?;
        let journal = Journal::start(store.clone());
        let engine = Self::assemble(config, kinds, store, journal, None);
        let recovered = engine.recover(loaded);
        Ok((engine, recovered))
    }

    fn record_context(&self) -> RecordContext {
        self.inner.record_context()
    }
}

/// `host-pid-xxxx`: unique per process, and says where to look.
fn default_instance_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_default();
    let host = if host.is_empty() { "instance".to_string() } else { host };
    let suffix = &JobId::new_random().to_string()[..4];
    format!("{host}-{}-{suffix}", std::process::id())
}

impl Inner {
    pub(crate) fn record_context(&self) -> RecordContext {
        let config = &self.config;
        RecordContext {
            limits: RecordLimits {
                replay_capacity: config.replay_capacity,
                replay_bytes: config.replay_bytes,
                max_log_lines: config.max_log_lines,
                max_log_bytes: config.max_log_bytes,
            },
            journal: self.journal.clone(),
            clock: self.clock,
        }
    }
}

impl JobEngine {
    /// Takes in what the store held and decides what becomes of each job.
    fn recover(&self, loaded: Vec<super::store::LoadedJob>) -> Recovered {
        let inner = &self.inner;
        let mut found = Recovered { jobs: loaded.len(), ..Recovered::default() };
        let mut to_run = Vec::new();
        for (row, events) in loaded {
            let (id, status, cancel_requested) = (row.id, row.state.status, row.cancel_requested);
            let resumable = inner.kinds.is_resumable(&row.kind);
            let record = JobRecord::restore(row, events, self.record_context(), inner.shutdown.child_token());
            inner.table.insert(record.clone());
            match status {
                JobStatus::Pending | JobStatus::Running if cancel_requested => {
                    inner.finish(&record, Outcome::Cancelled, Duration::ZERO);
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
                    interrupt(&record, RESTARTED);
                }
                _ => {}
            }
        }
        *inner.recovered.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = to_run;
        if found.jobs > 0 {
            tracing::info!(store = %inner.store.describe(), jobs = found.jobs, queued = found.queued,
                resumed = found.resumed, interrupted = found.interrupted, "jobs read back from the store");
        }
        found
    }

    /// Runs the jobs [`open`](Self::open) read back: resumed ones at once, waiting ones in
    /// their old order as slots free up. Returns how many were handed on.
    pub fn start_recovered(&self) -> usize {
        let inner = &self.inner;
        if inner.cluster.is_some() {
            let reaped = std::mem::take(&mut *inner.reaped.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
            let count = reaped.len();
            for claimed in reaped {
                inner.take(claimed);
            }
            inner.start_cluster_loops();
            return count;
        }
        let jobs = std::mem::take(&mut *inner.recovered.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        let count = jobs.len();
        let (resumed, waiting): (Vec<_>, Vec<_>) = jobs.into_iter().partition(|(_, resumed)| *resumed);
        for (id, _) in resumed {
            inner.scheduler.occupy();
            inner.launch(id, true);
        }
        for (id, _) in waiting {
            if inner.scheduler.admit(id, true) == Some(Admission::Run) {
                inner.launch(id, false);
            }
        }
        count
    }

    /// A `tracing` layer that sends what each job's code logs to that job's viewers. Add it to
    /// the process's subscriber (it filters itself: INFO and above, inside job spans only).
    pub fn log_layer<S>(&self) -> impl tracing_subscriber::Layer<S> + Send + Sync + 'static
    where
        S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    {
        JobLogLayer::new(Arc::downgrade(&self.inner.table)).with_filter()
    }

    /// The log lines of a job still kept after sequence `after`, and how many it dropped.
    /// `None` for an unknown job.
    pub async fn log_lines(&self, id: JobId, after: u64) -> Option<(Vec<Arc<LogLine>>, u64)> {
        self.inner.find(id).await.map(|r| r.log_lines_after(after))
    }

    /// The kinds this engine can run.
    pub fn kinds(&self) -> Vec<KindInfo> {
        self.inner.kinds.infos()
    }

    /// The kinds with their params' JSON Schema and defaults.
    pub fn kind_descriptions(&self) -> Vec<KindDescription> {
        self.inner.kinds.descriptions()
    }

    /// The engine's limits.
    pub fn config(&self) -> &EngineConfig {
        &self.inner.config
    }

    /// Where the engine keeps its jobs, e.g. `sqlite:data/sse-progress.db`.
    pub fn store_description(&self) -> String {
        self.inner.store.describe()
    }

    /// Starts a job of `kind` with `params` (JSON; `null` means all defaults) and returns its
    /// id once the job is in the store (its first event, `pending`, sequence 1, is then
    /// visible). The job has no owner: see [`start_for`](Self::start_for).
    pub async fn start(&self, kind: &str, params: Value) -> Result<JobId, StartError> {
        self.start_for(None, kind, params).await
    }

    /// Like [`start`](Self::start), for `owner`: an opaque key the web layer checks before it
    /// shows the job to anyone (see [`owner_of`](Self::owner_of)); it is stored as given, so
    /// give a hash, never a secret. An owner may have at most `max_active_per_owner` jobs
    /// pending or running, exactly, however many starts race.
    pub async fn start_for(&self, owner: Option<&str>, kind: &str, params: Value) -> Result<JobId, StartError> {
        let inner = &self.inner;
        if inner.shutdown.is_cancelled() {
            return Err(StartError::ShuttingDown);
        }
        let kinds = &inner.kinds;
        let (Some(name), Some(prepared)) = (kinds.canonical_name(kind), kinds.prepare(kind, params.clone())) else {
            return Err(StartError::UnknownKind { kind: kind.chars().take(64).collect(), known: kinds.names() });
        };
        if let Err(reason) = prepared {
            return Err(StartError::InvalidParams { kind: name.to_string(), reason });
        }
        let params = if params.is_null() { Value::Object(serde_json::Map::new()) } else { params };

        let id = JobId::new_random();
        let record =
            JobRecord::new(id, name, params, owner.map(Arc::from), self.record_context(), inner.shutdown.child_token());
        if let Some(cluster) = &inner.cluster {
            return self.start_shared(cluster.clone(), record).await;
        }
        let config = &inner.config;
        match inner.table.insert_checked(record.clone(), config.max_jobs, config.max_active_per_owner) {
            Ok(evicted) => inner.journal.remove(evicted.into_iter().collect()),
            Err(Refusal::OwnerLimit) => return Err(StartError::OwnerLimit { limit: config.max_active_per_owner }),
            Err(Refusal::Full) => return Err(StartError::AtCapacity { limit: config.max_jobs }),
        }
        let Some(admission) = inner.scheduler.admit(id, false) else {
            inner.table.remove(id);
            let (running, queued) = inner.scheduler.bounds();
            return Err(StartError::QueueFull { running, queued });
        };
        // Written before anything the job does: the journal keeps the order it is told things.
        inner.journal.create(record.clone());
        match admission {
            Admission::Run => inner.launch(id, false),
            Admission::Queued => tracing::info!(%id, kind = name, "job queued"),
        }
        let mut published = record.watch();
        let stored =
            matches!(tokio::time::timeout(START_WRITE_TIMEOUT, published.wait_for(|seq| *seq >= 1)).await, Ok(Ok(_)));
        if !stored {
            // Not kept in time: it must not run later behind the client's back.
            self.cancel(id).await;
            let why = inner.journal.healthy().err().unwrap_or_else(|| "it did not answer in time".into());
            return Err(StartError::StoreUnavailable { reason: why });
        }
        if let Some(owner) = owner {
            inner.table.announce(owner);
        }
        Ok(id)
    }

    /// Admits a new job through the shared store: it runs here, or waits in the shared queue.
    async fn start_shared(&self, cluster: Arc<Cluster>, record: Arc<JobRecord>) -> Result<JobId, StartError> {
        let inner = &self.inner;
        let id = record.id;
        let (row, _) = record.first_event();
        let (shared, instance, bounds) = (cluster.shared.clone(), cluster.instance.clone(), cluster.bounds);
        let mut call = tokio::task::spawn_blocking(move || shared.admit(&instance, &row, &bounds));
        let admission = match tokio::time::timeout(START_WRITE_TIMEOUT, &mut call).await {
            Ok(Ok(Ok(admission))) => admission,
            Ok(Ok(Err(error))) => return Err(StartError::StoreUnavailable { reason: error.to_string() }),
            Ok(Err(error)) => {
                return Err(StartError::StoreUnavailable { reason: format!("the store call stopped: {error}") })
            }
            Err(_) => {
                // It may be admitted after all: it must not run behind the client's back.
                let engine = self.clone();
                tokio::spawn(async move {
                    if let Ok(Ok(admission)) = call.await {
                        if admission.decision.is_ok() {
                            engine.cancel(id).await;
                        }
                    }
                });
                return Err(StartError::StoreUnavailable { reason: "it did not answer in time".into() });
            }
        };
        for evicted in admission.evicted {
            inner.table.remove(evicted);
        }
        let config = &inner.config;
        let token = match admission.decision {
            Err(Refused::OwnerLimit) => return Err(StartError::OwnerLimit { limit: config.max_active_per_owner }),
            Err(Refused::QueueFull) => {
                return Err(StartError::QueueFull { running: bounds.max_running, queued: bounds.max_queued })
            }
            Err(Refused::Full) => return Err(StartError::AtCapacity { limit: config.max_jobs }),
            Ok(Admitted::Run(token)) => token,
            Ok(Admitted::Queued) => 0,
        };
        record.admitted(token);
        inner.table.insert_or_get(record.clone());
        if token == 0 {
            tracing::info!(%id, kind = %record.kind, "job queued");
        } else {
            cluster.hold(id, token);
            inner.scheduler.occupy();
            inner.launch(id, false);
        }
        if let Some(owner) = &record.owner {
            inner.table.announce(owner);
        }
        Ok(id)
    }

    /// The jobs `owner` has (started with [`start_for`](Self::start_for) and still kept), newest
    /// first.
    pub async fn jobs_of(&self, owner: &str) -> Vec<Arc<Snapshot>> {
        let inner = &self.inner;
        let records = match &inner.cluster {
            None => inner.table.of_owner(owner),
            Some(cluster) => {
                let (shared, key) = (cluster.shared.clone(), owner.to_string());
                match blocking(move || shared.owner_jobs(&key)).await {
                    Ok(ids) => {
                        let mut records = Vec::with_capacity(ids.len());
                        for id in ids {
                            if let Some(record) = inner.find(id).await {
                                records.push(record);
                            }
                        }
                        records
                    }
                    Err(error) => {
                        tracing::warn!(%error, "could not list an owner's jobs in the store; showing those known here");
                        inner.table.of_owner(owner)
                    }
                }
            }
        };
        let mut jobs = Vec::with_capacity(records.len());
        for record in &records {
            if let Some(state) = self.visible(record).await {
                jobs.push(state);
            }
        }
        jobs.sort_by(|a, b| b.created.cmp(&a.created).then(b.id.cmp(&a.id)));
        jobs
    }

    /// Wakes (its value changes) whenever one of `owner`'s jobs is started, so that a feed of
    /// that owner's jobs can look at [`jobs_of`](Self::jobs_of) again. Other owners' starts
    /// never wake it.
    pub fn watch_owner(&self, owner: &str) -> tokio::sync::watch::Receiver<u64> {
        self.inner.table.watch_owner(owner)
    }

    /// Who owns a job: `None` for an unknown job, `Some(None)` for a job without an owner.
    pub async fn owner_of(&self, id: JobId) -> Option<Option<Arc<str>>> {
        self.inner.find(id).await.map(|r| r.owner.clone())
    }

    /// A job's state as shown: the newest stored, with its place in the queue while it waits.
    async fn visible(&self, record: &JobRecord) -> Option<Arc<Snapshot>> {
        let state = record.snapshot()?;
        if state.status != JobStatus::Pending {
            return Some(state);
        }
        let position = match &self.inner.cluster {
            None => self.inner.scheduler.position(record.id),
            Some(cluster) => {
                let (shared, id) = (cluster.shared.clone(), record.id);
                blocking(move || shared.queue_position(id)).await.unwrap_or(None)
            }
        };
        if position.is_none() {
            return Some(state);
        }
        let mut waiting = Snapshot::clone(&state);
        waiting.queue_position = position;
        if let Some(place) = position {
            waiting.message = format!("Queued: {} ahead", place - 1);
        }
        Some(Arc::new(waiting))
    }

    /// The job's current state, or `None` for an unknown (or forgotten) job.
    pub async fn snapshot(&self, id: JobId) -> Option<Arc<Snapshot>> {
        let record = self.inner.find(id).await?;
        self.visible(&record).await
    }

    /// Follows a job: the events after sequence `after` (all of them for `None`), then the
    /// live tail, ending after the terminal event. `None` for an unknown job.
    pub async fn subscribe(&self, id: JobId, after: Option<u64>) -> Option<Subscription> {
        let counters = self.inner.journal.counters().clone();
        self.inner.find(id).await.map(|r| Subscription::new(r, after.unwrap_or(0), counters))
    }

    /// Asks a job to stop: the request is stored (so it holds across a restart) and the job's
    /// code is woken; it ends as `cancelled`. `None` for an unknown job.
    /// With a shared store the request reaches the job wherever it runs.
    pub async fn cancel(&self, id: JobId) -> Option<CancelOutcome> {
        let inner = &self.inner;
        let record = inner.find(id).await?;
        if record.has_ended() {
            let status = record.snapshot().map_or(record.current().status, |s| s.status);
            return Some(CancelOutcome::AlreadyEnded(status));
        }
        if let (Some(cluster), true) = (&inner.cluster, record.is_mirror()) {
            let (shared, instance, bounds) = (cluster.shared.clone(), cluster.instance.clone(), cluster.bounds);
            return match blocking(move || shared.request_cancel(&instance, id, &bounds)).await {
                Ok(CancelReply::Unknown) => None,
                Ok(CancelReply::Ended(status)) => Some(CancelOutcome::AlreadyEnded(status)),
                Ok(CancelReply::Requested) => Some(CancelOutcome::Requested),
                Ok(CancelReply::Claimed(claimed)) => {
                    let taken = inner.take(claimed);
                    debug_assert_eq!(taken, Taken::Cancelled, "a claimed cancel ends the job");
                    let _ = tokio::time::timeout(CANCEL_WRITE_WAIT, inner.journal.flush()).await;
                    Some(CancelOutcome::Withdrawn)
                }
                Err(error) => {
                    tracing::warn!(%id, %error, "could not pass a cancel request to the store");
                    None
                }
            };
        }
        record.request_cancel();
        if inner.scheduler.withdraw(id) {
            inner.finish(&record, Outcome::Cancelled, Duration::ZERO);
            // A state is shown once the store has it: wait for that (one batch), so that the
            // answer, and whatever the caller reads next, already says `cancelled`.
            let _ = tokio::time::timeout(CANCEL_WRITE_WAIT, inner.journal.flush()).await;
            return Some(CancelOutcome::Withdrawn);
        }
        Some(CancelOutcome::Requested)
    }

    /// How long a poller should wait before asking about a job again: about a fifth of the
    /// job's expected remaining time, from 1 to 10 seconds. `None` once the job has ended
    /// (or for an unknown job): there is nothing more to wait for.
    pub async fn poll_after(&self, id: JobId) -> Option<Duration> {
        let record = self.inner.find(id).await?;
        let state = record.snapshot()?;
        if state.status.is_terminal() {
            return None;
        }
        let estimate = match record.started_ms() {
            Some(started) if state.progress > 0.0 => {
                let elapsed = Duration::from_millis(self.inner.clock.now_ms().saturating_sub(started)).as_secs_f64();
                Duration::from_secs_f64(elapsed * (100.0 - state.progress) / state.progress / 5.0)
            }
            _ => Duration::from_secs(2),
        };
        Some(estimate.clamp(Duration::from_secs(1), Duration::from_secs(10)))
    }

    /// The engine's numbers, for operators (`/metrics`): with a shared store this asks it for
    /// the global counts too.
    pub async fn stats(&self) -> EngineStats {
        let inner = &self.inner;
        let counters = inner.journal.counters();
        let mut by_status: std::collections::BTreeMap<&'static str, (JobStatus, u64)> =
            std::collections::BTreeMap::new();
        for record in inner.table.all() {
            if let Some(state) = record.snapshot() {
                by_status.entry(state.status.as_str()).or_insert((state.status, 0)).1 += 1;
            }
        }
        let shared = match &inner.cluster {
            None => None,
            Some(cluster) => {
                let store = cluster.shared.clone();
                let counts = blocking(move || store.counts()).await.unwrap_or_default();
                let c = &cluster.counters;
                Some(SharedStats {
                    instance: cluster.instance.clone(),
                    jobs: counts.jobs,
                    queued: counts.queued,
                    running: counts.running,
                    held: cluster.holding() as u64,
                    lease_expiries: c.lease_expiries.load(Ordering::Relaxed),
                    leases_lost: counters.leases_lost.load(Ordering::Relaxed),
                    store_errors: c.store_errors.load(Ordering::Relaxed),
                })
            }
        };
        let opened = counters.subscriptions_opened.load(Ordering::Relaxed);
        let closed = counters.subscriptions_closed.load(Ordering::Relaxed);
        EngineStats {
            jobs_by_status: by_status.into_values().collect(),
            queued: inner.scheduler.queued() as u64,
            events_appended: counters.events_appended.load(Ordering::Relaxed),
            events_delivered: counters.events_delivered.load(Ordering::Relaxed),
            subscriptions_open: opened.saturating_sub(closed),
            store_writes: counters.write_histogram(),
            shared,
        }
    }

    /// How many jobs this process holds in memory, running and ended (with a shared store:
    /// those it runs and those it has looked up; the store's counts are in [`stats`](Self::stats)).
    pub fn job_count(&self) -> usize {
        self.inner.table.len()
    }

    /// How many jobs wait for a slot in this process's queue (with a shared store the queue is
    /// the store's: see [`stats`](Self::stats)).
    pub fn queued_count(&self) -> usize {
        self.inner.scheduler.queued()
    }

    /// `Ok` when the store answers and takes writes; what is wrong otherwise.
    pub async fn ready(&self) -> Result<(), String> {
        self.inner.journal.healthy()?;
        let store = self.inner.store.clone();
        tokio::task::spawn_blocking(move || store.ping())
            .await
            .map_err(|e| format!("the store check did not finish: {e}"))?
            .map_err(|e| e.to_string())
    }

    /// Cancelled when the engine shuts down: long-lived streams end on it.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.inner.shutdown.clone()
    }

    /// Stops for a restart: refuses new jobs, tells running ones to stop, and waits up to
    /// `timeout` for them; then makes sure everything is in the store. With a store that
    /// outlives the process, waiting jobs stay queued and resumable running jobs stay at their
    /// checkpoint, both to go on at the next start; other running jobs end `interrupted`.
    /// Returns whether every job stopped in time.
    pub async fn shutdown(&self, timeout: Duration) -> bool {
        let inner = &self.inner;
        inner.shutdown.cancel();
        for id in inner.scheduler.drain() {
            if !inner.store.outlives_process() {
                if let Some(record) = inner.table.get(id) {
                    inner.finish(&record, Outcome::Stopped, Duration::ZERO);
                }
            }
        }
        inner.tasks.close();
        let stopped = tokio::time::timeout(timeout, inner.tasks.wait()).await.is_ok();
        // Bounded: a store that refuses every write (a full disk) must not hang the stop. What
        // it did not take is lost with the process, and was never shown to anyone.
        if tokio::time::timeout(timeout.max(Duration::from_secs(1)), inner.journal.flush()).await.is_err() {
            tracing::error!(store = %inner.store.describe(), "the job store did not take the last writes before the stop");
        }
        if let Some(cluster) = inner.cluster.clone() {
            // Written up to here: other instances may take the paused jobs over at once.
            let _ = tokio::task::spawn_blocking(move || cluster.release_all()).await;
        }
        stopped
    }

    /// Waits until everything the engine has been told so far is in the store and visible.
    pub async fn flush(&self) {
        self.inner.journal.flush().await;
    }

    /// Forgets ended jobs whose retention has passed, rows included. Returns how many.
    pub async fn sweep(&self) -> usize {
        let inner = &self.inner;
        let retention = u64::try_from(inner.config.retention.as_millis()).unwrap_or(u64::MAX);
        let ended_by = inner.clock.now_ms().saturating_sub(retention);
        let expired = inner.table.sweep(ended_by);
        let Some(cluster) = &inner.cluster else {
            let count = expired.len();
            inner.journal.remove(expired);
            return count;
        };
        // Shared: whichever instance sweeps first forgets them for all; the table is a cache.
        let shared = cluster.shared.clone();
        blocking(move || shared.expire_ended(ended_by)).await.unwrap_or_else(|error| {
            tracing::warn!(%error, "could not forget expired jobs in the store; trying again at the next sweep");
            0
        })
    }

    fn spawn_sweeper(&self) {
        let engine = Arc::downgrade(&self.inner);
        let every = self.inner.config.sweep_interval;
        let shutdown = self.inner.shutdown.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(every);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = ticker.tick() => {}
                    () = shutdown.cancelled() => return,
                }
                let Some(inner) = engine.upgrade() else { return };
                let forgotten = JobEngine { inner }.sweep().await;
                if forgotten > 0 {
                    tracing::debug!(forgotten, "forgot ended jobs past their retention");
                }
            }
        });
    }
}
