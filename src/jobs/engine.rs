//! The engine: starts jobs, keeps their records for their retention period, hands out
//! snapshots and subscriptions, and stops everything at shutdown.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;
use tracing::instrument::{Instrument, WithSubscriber};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::logs::{JobLogLayer, JOB_SPAN};
use super::record::{JobRecord, RecordLimits};
use super::registry::{JobFuture, KindDescription, KindRegistry};
use super::scheduler::{Admission, Admitted, Scheduler};
use super::{EngineConfig, JobError, ProgressReporter, StartError, Subscription};
use crate::model::{JobId, JobStatus, KindInfo, LogLine, Snapshot};

/// Runs jobs and remembers them. Cheap to clone: an `Arc` inside.
#[derive(Clone)]
pub struct JobEngine {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    config: EngineConfig,
    kinds: KindRegistry,
    jobs: Mutex<HashMap<JobId, Arc<JobRecord>>>,
    scheduler: Scheduler,
    /// Tells who follows many jobs (an owner's feed) that a job was started, and whose it is.
    started: tokio::sync::broadcast::Sender<(JobId, Option<Arc<str>>)>,
    /// Cancelled at shutdown: every job and every open stream watches it.
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

/// What asking a job to stop did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelOutcome {
    /// The job was running (or waiting) and has been told to stop.
    Requested,
    /// The job had already ended, with this status; nothing changed.
    AlreadyEnded(JobStatus),
}

impl JobEngine {
    /// An engine that runs the given kinds within the given limits. Must be called inside a
    /// Tokio runtime: it starts the task that forgets ended jobs after their retention.
    pub fn new(config: EngineConfig, kinds: KindRegistry) -> Self {
        let engine = Self {
            inner: Arc::new(Inner {
                scheduler: Scheduler::new(config.max_running, config.max_queued),
                started: tokio::sync::broadcast::channel(1024).0,
                config,
                kinds,
                jobs: Mutex::new(HashMap::new()),
                shutdown: CancellationToken::new(),
                tasks: TaskTracker::new(),
            }),
        };
        engine.spawn_sweeper();
        engine
    }

    fn jobs(&self) -> MutexGuard<'_, HashMap<JobId, Arc<JobRecord>>> {
        // Only inserts, removals and look-ups happen under this lock: never inconsistent.
        self.inner.jobs.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A `tracing` layer that sends what each job's code logs to that job's viewers. Add it to
    /// the process's subscriber (it filters itself: INFO and above, inside job spans only).
    pub fn log_layer<S>(&self) -> impl tracing_subscriber::Layer<S> + Send + Sync + 'static
    where
        S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    {
        JobLogLayer::new(Arc::downgrade(&self.inner)).with_filter()
    }

    /// The log lines of a job still kept after sequence `after`, and how many it dropped.
    /// `None` for an unknown job.
    pub fn log_lines(&self, id: JobId, after: u64) -> Option<(Vec<Arc<LogLine>>, u64)> {
        self.record(id).map(|r| r.log_lines_after(after))
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

    /// Starts a job of `kind` with `params` (JSON; `null` means all defaults) and returns its
    /// id at once. The job's first event (`pending`, sequence 1) exists before this returns.
    /// The job has no owner: see [`start_for`](Self::start_for).
    pub fn start(&self, kind: &str, params: Value) -> Result<JobId, StartError> {
        self.start_for(None, kind, params)
    }

    /// Like [`start`](Self::start), for `owner`: an opaque tag the web layer checks before it
    /// shows the job to anyone (see [`owner_of`](Self::owner_of)). An owner may have at most
    /// `max_active_per_owner` jobs pending or running.
    pub fn start_for(&self, owner: Option<&str>, kind: &str, params: Value) -> Result<JobId, StartError> {
        if self.inner.shutdown.is_cancelled() {
            return Err(StartError::ShuttingDown);
        }
        let kinds = &self.inner.kinds;
        let (Some(name), Some(prepared)) = (kinds.canonical_name(kind), kinds.prepare(kind, params))
        else {
            return Err(StartError::UnknownKind {
                kind: kind.chars().take(64).collect(),
                known: kinds.names(),
            });
        };
        let prepared = prepared.map_err(|reason| StartError::InvalidParams {
            kind: name.to_string(),
            reason,
        })?;

        if !self.inner.scheduler.has_room() {
            let (running, queued) = self.inner.scheduler.bounds();
            return Err(StartError::QueueFull { running, queued });
        }
        if let Some(owner) = owner {
            let limit = self.inner.config.max_active_per_owner;
            let active = self
                .jobs()
                .values()
                .filter(|r| r.owner.as_deref() == Some(owner) && r.ended_at().is_none())
                .count();
            if active >= limit {
                return Err(StartError::OwnerLimit { limit });
            }
        }

        let id = JobId::new_random();
        let config = &self.inner.config;
        let limits = RecordLimits {
            replay_capacity: config.replay_capacity,
            max_log_lines: config.max_log_lines,
            max_log_bytes: config.max_log_bytes,
        };
        let mut record = JobRecord::new(id, name, limits, self.inner.shutdown.child_token());
        record.owner = owner.map(Arc::from);
        let record = Arc::new(record);
        {
            let mut jobs = self.jobs();
            if jobs.len() >= self.inner.config.max_jobs && !evict_oldest_ended(&mut jobs) {
                return Err(StartError::AtCapacity {
                    limit: self.inner.config.max_jobs,
                });
            }
            jobs.insert(id, record.clone());
        }
        let reporter = ProgressReporter::new(record.clone());
        // Everything the job's code logs inside this span reaches the job's viewers
        // (see `JobLogLayer`), with the subscriber of whoever started it.
        let span = tracing::info_span!(JOB_SPAN, job_id = %id, kind = name);
        let job: JobFuture = Box::pin(prepared(reporter.clone()).instrument(span).with_current_subscriber());
        let _ = self.inner.started.send((id, record.owner.clone()));
        let admitted = Admitted { record, reporter, job };
        match self.inner.scheduler.admit(admitted) {
            Ok(Admission::Run(job)) => Inner::launch(&self.inner, job),
            Ok(Admission::Queued) => tracing::info!(%id, kind = name, "job queued"),
            Err(_) => {
                // The queue filled up since the check above: forget the job, refuse it.
                self.jobs().remove(&id);
                let (running, queued) = self.inner.scheduler.bounds();
                return Err(StartError::QueueFull { running, queued });
            }
        }
        Ok(id)
    }

    /// The jobs `owner` has (started with [`start_for`](Self::start_for) and still kept), newest
    /// first.
    pub fn jobs_of(&self, owner: &str) -> Vec<Arc<Snapshot>> {
        let mut jobs: Vec<Arc<Snapshot>> = self
            .jobs()
            .values()
            .filter(|r| r.owner.as_deref() == Some(owner))
            .map(|r| r.snapshot())
            .collect();
        jobs.sort_by(|a, b| b.created.cmp(&a.created).then(b.id.cmp(&a.id)));
        jobs
    }

    /// Announces every job started from now on, with its owner. A receiver that falls more
    /// than 1 024 announcements behind is told it lagged and should look at
    /// [`jobs_of`](Self::jobs_of) again.
    pub fn started_jobs(&self) -> tokio::sync::broadcast::Receiver<(JobId, Option<Arc<str>>)> {
        self.inner.started.subscribe()
    }

    /// Who owns a job: `None` for an unknown job, `Some(None)` for a job without an owner.
    pub fn owner_of(&self, id: JobId) -> Option<Option<Arc<str>>> {
        self.record(id).map(|r| r.owner.clone())
    }

    /// The job's current state, or `None` for an unknown (or forgotten) job.
    pub fn snapshot(&self, id: JobId) -> Option<Arc<Snapshot>> {
        self.record(id).map(|r| r.snapshot())
    }

    /// Follows a job: the events after sequence `after` (all of them for `None`), then the
    /// live tail, ending after the terminal event. `None` for an unknown job.
    pub fn subscribe(&self, id: JobId, after: Option<u64>) -> Option<Subscription> {
        self.record(id)
            .map(|r| Subscription::new(r, after.unwrap_or(0)))
    }

    /// Asks a job to stop. Its code sees the cancellation; it ends as `cancelled`.
    /// `None` for an unknown job.
    pub fn cancel(&self, id: JobId) -> Option<CancelOutcome> {
        let record = self.record(id)?;
        let status = record.snapshot().status;
        if status.is_terminal() {
            return Some(CancelOutcome::AlreadyEnded(status));
        }
        record.cancel.cancel();
        if let Some(waiting) = self.inner.scheduler.withdraw(id) {
            finish(&waiting.record, Err(JobError::Cancelled), Duration::ZERO);
        }
        Some(CancelOutcome::Requested)
    }

    /// How long a poller should wait before asking about a job again: about a fifth of the
    /// job's expected remaining time, from 1 to 10 seconds. `None` once the job has ended
    /// (or for an unknown job): there is nothing more to wait for.
    pub fn poll_after(&self, id: JobId) -> Option<Duration> {
        let record = self.record(id)?;
        let state = record.snapshot();
        if state.status.is_terminal() {
            return None;
        }
        let estimate = match record.started_at() {
            Some(started) if state.progress > 0.0 => {
                let elapsed = started.elapsed().as_secs_f64();
                Duration::from_secs_f64(elapsed * (100.0 - state.progress) / state.progress / 5.0)
            }
            _ => Duration::from_secs(2),
        };
        Some(estimate.clamp(Duration::from_secs(1), Duration::from_secs(10)))
    }

    /// How many jobs are kept, running and ended.
    pub fn job_count(&self) -> usize {
        self.jobs().len()
    }

    /// Cancelled when the engine shuts down: long-lived streams end on it.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.inner.shutdown.clone()
    }

    /// Tells every job to stop, refuses new ones, and waits up to `timeout` for the jobs to
    /// finish. Returns whether they all did.
    pub async fn shutdown(&self, timeout: Duration) -> bool {
        self.inner.shutdown.cancel();
        for waiting in self.inner.scheduler.drain() {
            finish(&waiting.record, Err(JobError::Cancelled), Duration::ZERO);
        }
        self.inner.tasks.close();
        tokio::time::timeout(timeout, self.inner.tasks.wait())
            .await
            .is_ok()
    }

    fn record(&self, id: JobId) -> Option<Arc<JobRecord>> {
        self.jobs().get(&id).cloned()
    }

    pub(crate) fn from_inner(inner: Arc<Inner>) -> Self {
        Self { inner }
    }

    pub(crate) fn record_of(&self, id: JobId) -> Option<Arc<JobRecord>> {
        self.record(id)
    }

    /// Forgets ended jobs whose retention has passed. Returns how many it forgot.
    pub fn sweep(&self) -> usize {
        let retention = self.inner.config.retention;
        let now = Instant::now();
        let mut jobs = self.jobs();
        let before = jobs.len();
        jobs.retain(|_, r| r.ended_at().is_none_or(|t| now.duration_since(t) < retention));
        before - jobs.len()
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
                let forgotten = JobEngine::from_inner(inner).sweep();
                if forgotten > 0 {
                    tracing::debug!(forgotten, "forgot ended jobs past their retention");
                }
            }
        });
    }
}

impl Inner {
    /// Runs an admitted job; when it ends, its slot goes to the next waiting job.
    fn launch(inner: &Arc<Self>, job: Admitted) {
        let id = job.record.id;
        tracing::info!(%id, kind = %job.record.snapshot().kind, "job started");
        let engine = Arc::clone(inner);
        let grace = inner.config.cancel_grace;
        inner.tasks.spawn(async move {
            run_job(job.record, job.reporter, job.job, grace).await;
            if let Some(next) = engine.scheduler.release() {
                Inner::launch(&engine, next);
            }
        });
    }
}

/// Makes room by forgetting the job that ended first. Returns whether there was one.
fn evict_oldest_ended(jobs: &mut HashMap<JobId, Arc<JobRecord>>) -> bool {
    let oldest = jobs
        .iter()
        .filter_map(|(id, r)| r.ended_at().map(|t| (t, *id)))
        .min();
    match oldest {
        Some((_, id)) => jobs.remove(&id).is_some(),
        None => false,
    }
}

/// Runs one job's code to its end and records how it ended.
async fn run_job(record: Arc<JobRecord>, reporter: ProgressReporter, job: JobFuture, grace: Duration) {
    let id = record.id;
    let cancel = record.cancel.clone();
    if cancel.is_cancelled() {
        finish(&record, Err(JobError::Cancelled), Duration::ZERO);
        return;
    }
    reporter.mark_running();
    let started = Instant::now();
    // The job runs in its own task so that a panic in its code ends this job, not the engine.
    let mut handle = tokio::spawn(job);
    let outcome = tokio::select! {
        joined = &mut handle => joined,
        () = cancel.cancelled() => {
            match tokio::time::timeout(grace, &mut handle).await {
                Ok(joined) => joined,
                Err(_) => {
                    tracing::warn!(%id, ?grace, "job ignored cancellation; aborting it");
                    handle.abort();
                    Ok(Err(JobError::Cancelled))
                }
            }
        }
    };
    let result = match outcome {
        Ok(result) => result,
        Err(join_error) => {
            tracing::error!(%id, error = %join_error, "job's code panicked");
            Err(JobError::msg("the job stopped unexpectedly (an internal error); see the server log"))
        }
    };
    // A job that gave up because it was asked to stop ended as cancelled, whatever it said.
    let result = match result {
        Err(_) if cancel.is_cancelled() => Err(JobError::Cancelled),
        other => other,
    };
    finish(&record, result, started.elapsed());
}

fn finish(record: &JobRecord, result: Result<Value, JobError>, took: Duration) {
    let id = record.id;
    match result {
        Ok(value) => {
            tracing::info!(%id, "job completed");
            record.apply(|s| {
                s.status = JobStatus::Completed;
                s.progress = 100.0;
                s.message = format!("Completed in {:.1} s", took.as_secs_f64());
                s.data = Some(value);
            });
        }
        Err(JobError::Failed(error)) => {
            tracing::info!(%id, %error, "job failed");
            record.apply(|s| {
                s.status = JobStatus::Failed;
                s.message.clone_from(&error);
                s.error = Some(error);
            });
        }
        Err(JobError::Cancelled) => {
            tracing::info!(%id, "job cancelled");
            record.apply(|s| {
                s.status = JobStatus::Cancelled;
                s.message = "Cancelled".into();
            });
        }
    }
}
