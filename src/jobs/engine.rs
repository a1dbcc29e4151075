//! [`JobEngine`], the handle everything else holds: start, look up, follow, cancel, sweep and
//! stop jobs. Cheap to clone (an `Arc` inside); its mechanics are in `core`, and what differs
//! between one instance and many is behind the coordination seam (`coord`).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::core::Inner;
pub use super::core::{CancelOutcome, Recovered};
use super::logs::JobLogLayer;
use super::registry::KindRegistry;
use super::stats::EngineStats;
use super::store::{JobStore, StoreError};
use super::{EngineConfig, StartError, Subscription};
use crate::model::{JobId, JobStatus, KindDescription, KindInfo, LogLine, Snapshot};

/// Runs jobs and remembers them. Cheap to clone: an `Arc` inside.
#[derive(Clone)]
pub struct JobEngine {
    inner: Arc<Inner>,
}

impl JobEngine {
    /// An engine that keeps its jobs in memory only. Must be called inside a Tokio runtime.
    pub fn new(config: EngineConfig, kinds: KindRegistry) -> Self {
        Self::from_inner(Inner::in_memory(config, kinds))
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
        let (inner, recovered) = Inner::open(config, kinds, store)?;
        Ok((Self::from_inner(inner), recovered))
    }

    fn from_inner(inner: Arc<Inner>) -> Self {
        let engine = Self { inner };
        engine.spawn_sweeper();
        engine
    }

    /// Runs the jobs [`open`](Self::open) read back: resumed ones at once, waiting ones in
    /// their old order as slots free up; with a shared store, also starts claiming waiting
    /// jobs and renewing leases. Returns how many were handed on.
    pub fn start_recovered(&self) -> usize {
        self.inner.begin()
    }

    /// A `tracing` layer that sends what each job's code logs to that job's viewers. Add it to
    /// the process's subscriber (it filters itself: INFO and above, inside job spans only).
    pub fn log_layer<S>(&self) -> impl tracing_subscriber::Layer<S> + Send + Sync + 'static
    where
        S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    {
        JobLogLayer::new(Arc::downgrade(self.inner.table())).with_filter()
    }

    /// The log lines of a job still kept after sequence `after`, and how many it dropped.
    /// `Ok(None)` for an unknown job; `Err` when the store could not be asked.
    pub async fn log_lines(&self, id: JobId, after: u64) -> Result<Option<(Vec<Arc<LogLine>>, u64)>, StoreError> {
        Ok(self.inner.find(id).await?.map(|r| r.log_lines_after(after)))
    }

    /// The kinds this engine can run.
    pub fn kinds(&self) -> Vec<KindInfo> {
        self.inner.kinds().infos()
    }

    /// The kinds with their params' JSON Schema and defaults.
    pub fn kind_descriptions(&self) -> Vec<KindDescription> {
        self.inner.kinds().descriptions()
    }

    /// The engine's limits.
    pub fn config(&self) -> &EngineConfig {
        self.inner.config()
    }

    /// Where the engine keeps its jobs, e.g. `sqlite:data/sse-progress.db`.
    pub fn store_description(&self) -> String {
        self.inner.store().describe()
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
        self.inner.start(owner, kind, params).await
    }

    /// The jobs `owner` has (started with [`start_for`](Self::start_for) and still kept), newest
    /// first; `Err` when the store cannot list them now.
    pub async fn jobs_of(&self, owner: &str) -> Result<Vec<Arc<Snapshot>>, StoreError> {
        self.inner.jobs_of(owner).await
    }

    /// Follows the starts of `owner`'s jobs: the watch wakes whenever one is started, so that a
    /// feed of that owner's jobs can look at [`jobs_of`](Self::jobs_of) again. Other owners'
    /// starts never wake it. The owner's entry in this process is kept while the watch lives
    /// (or while the owner has jobs here), no longer.
    pub fn watch_owner(&self, owner: &str) -> super::OwnerWatch {
        self.inner.table().watch_owner(owner)
    }

    /// Who owns a job: `Ok(None)` for an unknown job, `Ok(Some(None))` for a job without an
    /// owner; `Err` when the store could not be asked.
    pub async fn owner_of(&self, id: JobId) -> Result<Option<Option<Arc<str>>>, StoreError> {
        Ok(self.inner.find(id).await?.map(|r| r.owner.clone()))
    }

    /// The job's current state: `Ok(None)` for an unknown (or forgotten) job, `Err` when the
    /// store could not be asked (a shared store that does not answer).
    pub async fn snapshot(&self, id: JobId) -> Result<Option<Arc<Snapshot>>, StoreError> {
        let Some(record) = self.inner.find(id).await? else { return Ok(None) };
        Ok(self.inner.visible(&record).await)
    }

    /// Follows a job: the events after sequence `after` (all of them for `None`), then the
    /// live tail, ending after the terminal event. `Ok(None)` for an unknown job.
    pub async fn subscribe(&self, id: JobId, after: Option<u64>) -> Result<Option<Subscription>, StoreError> {
        let counters = self.inner.journal().counters().clone();
        Ok(self.inner.find(id).await?.map(|r| Subscription::new(r, after.unwrap_or(0), counters)))
    }

    /// Asks a job to stop: the request is stored (so it holds across a restart) and the job's
    /// code is woken; it ends as `cancelled`. `Ok(None)` for an unknown job. With a shared
    /// store the request reaches the job wherever it runs.
    pub async fn cancel(&self, id: JobId) -> Result<Option<CancelOutcome>, StoreError> {
        self.inner.cancel(id).await
    }

    /// How long a poller should wait before asking about a job again: about a fifth of the
    /// job's expected remaining time, from 1 to 10 seconds. `Ok(None)` once the job has ended
    /// (or for an unknown job): there is nothing more to wait for.
    pub async fn poll_after(&self, id: JobId) -> Result<Option<Duration>, StoreError> {
        let Some(record) = self.inner.find(id).await? else { return Ok(None) };
        let Some(state) = record.snapshot() else { return Ok(None) };
        if state.status.is_terminal() {
            return Ok(None);
        }
        let elapsed = record.started_ms().map(|started| self.inner.clock().now_ms().saturating_sub(started));
        Ok(Some(poll_wait(state.progress, elapsed)))
    }

    /// The engine's numbers, for operators (`/metrics`): with a shared store this asks it for
    /// the global counts too.
    pub async fn stats(&self) -> EngineStats {
        let inner = &self.inner;
        let counters = inner.journal().counters();
        let mut by_status: std::collections::BTreeMap<&'static str, (JobStatus, u64)> =
            std::collections::BTreeMap::new();
        for record in inner.table().all() {
            if let Some(state) = record.snapshot() {
                by_status.entry(state.status.as_str()).or_insert((state.status, 0)).1 += 1;
            }
        }
        let coord = inner.coord_stats().await;
        let opened = counters.subscriptions_opened.load(Ordering::Relaxed);
        let closed = counters.subscriptions_closed.load(Ordering::Relaxed);
        EngineStats {
            jobs_by_status: by_status.into_values().collect(),
            queued: coord.queued,
            events_appended: counters.events_appended.load(Ordering::Relaxed),
            events_delivered: counters.events_delivered.load(Ordering::Relaxed),
            subscriptions_open: opened.saturating_sub(closed),
            store_backlog: inner.journal().backlog(),
            owners: inner.table().owner_count() as u64,
            store_writes: counters.write_histogram(),
            shared: coord.shared,
        }
    }

    /// How many jobs this process holds in memory, running and ended (with a shared store:
    /// those it runs and those it has looked up; the store's counts are in [`stats`](Self::stats)).
    pub fn job_count(&self) -> usize {
        self.inner.table().len()
    }

    /// `Ok` when the store answers and takes writes; what is wrong otherwise.
    pub async fn ready(&self) -> Result<(), String> {
        self.inner.journal().healthy()?;
        let store = self.inner.store().clone();
        tokio::task::spawn_blocking(move || store.ping())
            .await
            .map_err(|e| format!("the store check did not finish: {e}"))?
            .map_err(|e| e.to_string())
    }

    /// Cancelled when the engine shuts down: long-lived streams end on it.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.inner.shutdown_token().clone()
    }

    /// Stops for a restart: refuses new jobs, tells running ones to stop, and waits up to
    /// `timeout` for them; then makes sure everything is in the store. With a store that
    /// outlives the process, waiting jobs stay queued and resumable running jobs stay at their
    /// checkpoint, both to go on at the next start; other running jobs end `interrupted`.
    /// Returns whether every job stopped in time.
    pub async fn shutdown(&self, timeout: Duration) -> bool {
        self.inner.shutdown(timeout).await
    }

    /// Waits until everything the engine has been told so far is in the store and visible.
    pub async fn flush(&self) {
        self.inner.journal().flush().await;
    }

    /// Forgets ended jobs whose retention has passed, rows included. Returns how many.
    pub async fn sweep(&self) -> usize {
        self.inner.sweep().await
    }

    fn spawn_sweeper(&self) {
        let engine = Arc::downgrade(&self.inner);
        let every = self.inner.config().sweep_interval;
        let shutdown = self.inner.shutdown_token().clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(every);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = ticker.tick() => {}
                    () = shutdown.cancelled() => return,
                }
                let Some(inner) = engine.upgrade() else { return };
                let forgotten = inner.sweep().await;
                if forgotten > 0 {
                    tracing::debug!(forgotten, "forgot ended jobs past their retention");
                }
            }
        });
    }
}

/// About a fifth of the expected remaining time of a job `progress` percent done after
/// `elapsed_ms` running, from 1 to 10 seconds (2 s when it cannot be told). Never panics,
/// however small or large the numbers.
fn poll_wait(progress: f64, elapsed_ms: Option<u64>) -> Duration {
    let (min, max) = (Duration::from_secs(1), Duration::from_secs(10));
    let estimate = match elapsed_ms {
        Some(elapsed) if progress > 0.0 => {
            let secs = Duration::from_millis(elapsed).as_secs_f64() * (100.0 - progress) / progress / 5.0;
            Duration::try_from_secs_f64(secs).unwrap_or(max)
        }
        _ => Duration::from_secs(2),
    };
    estimate.clamp(min, max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_poll_wait_is_bounded_for_any_progress() {
        // A tiny positive percent after a long run: the estimate overflows a Duration.
        assert_eq!(poll_wait(1e-18, Some(10_000)), Duration::from_secs(10));
        assert_eq!(poll_wait(f64::MIN_POSITIVE, Some(u64::MAX)), Duration::from_secs(10));
        assert_eq!(poll_wait(50.0, Some(10_000)), Duration::from_secs(2), "a fifth of 10 s to go");
        assert_eq!(poll_wait(99.9, Some(1_000)), Duration::from_secs(1));
        assert_eq!(poll_wait(0.0, Some(10_000)), Duration::from_secs(2), "nothing to tell from");
        assert_eq!(poll_wait(10.0, None), Duration::from_secs(2));
    }
}
