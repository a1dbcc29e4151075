//! The engine's part in a store several instances share: this instance's leases and their
//! heartbeats, claiming waiting jobs as slots free up, taking over jobs whose holder died,
//! and keeping the mirrors of other instances' jobs live from the store's notices.
//!
//! Three loops run while the engine lives:
//! - the *listener* (a thread: its store connection blocks) takes the store's notices: events
//!   appended to a mirrored job are read and shown, a cancel request reaches the job here,
//!   a new job wakes its owner's feeds, a freed slot wakes the claimer. When the connection
//!   comes back after a failure, and every few seconds anyway, it re-reads every live mirror,
//!   so a lost notice delays an event by seconds at most, never forever;
//! - the *heartbeat* renews this instance's leases well before they expire, and learns of
//!   jobs taken over meanwhile (they stop and become mirrors) and of cancel requests whose
//!   notice was lost;
//! - the *claimer* takes waiting jobs while this instance has room (woken by notices, and once
//!   a second regardless), and takes over jobs whose lease expired.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::engine::Inner;
use super::record::JobRecord;
use super::runner::{interrupt, Outcome, RESTARTED};
use super::store::shared::{Bounds, Claimed, Notice, SharedStore, Token};
use crate::model::{JobId, JobStatus};

/// How often the claimer looks for waiting jobs without being woken.
const CLAIM_EVERY: Duration = Duration::from_secs(1);
/// How often the listener re-reads every live mirror, whatever the notices said.
const RECHECK_EVERY: Duration = Duration::from_secs(3);
/// Most waiting jobs claimed in one call.
const CLAIM_AT_ONCE: usize = 16;

/// Counts an operator watches (see `/metrics`).
#[derive(Default)]
pub(crate) struct ClusterCounters {
    /// Jobs taken over from an instance whose lease expired.
    pub(crate) lease_expiries: AtomicU64,
    /// Store calls that failed (and were retried).
    pub(crate) store_errors: AtomicU64,
}

/// This instance in a shared store.
pub(crate) struct Cluster {
    /// This instance's name in leases and logs.
    pub(crate) instance: String,
    pub(crate) shared: Arc<dyn SharedStore>,
    pub(crate) bounds: Bounds,
    /// The leases this instance holds.
    held: Mutex<HashMap<JobId, Token>>,
    /// Set once the leases were given back at a stop: heartbeats end there, not before, so
    /// jobs finishing their last writes during the stop keep their leases.
    released: std::sync::atomic::AtomicBool,
    /// Wakes the claimer.
    wake: Notify,
    pub(crate) counters: ClusterCounters,
    /// When a store call last failed: until a lease (and a heartbeat) after that, this
    /// instance takes no expired lease over. After an outage every lease looks expired, and
    /// their holders deserve a heartbeat's chance to renew them first.
    blind_at: Mutex<Option<Instant>>,
}

impl Cluster {
    pub(crate) fn new(shared: Arc<dyn SharedStore>, bounds: Bounds, instance: String) -> Self {
        Self {
            instance,
            shared,
            bounds,
            held: Mutex::default(),
            wake: Notify::new(),
            counters: ClusterCounters::default(),
            blind_at: Mutex::new(None),
            released: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// A store call failed.
    fn failed(&self) {
        self.counters.store_errors.fetch_add(1, Ordering::Relaxed);
        *self.blind_at.lock().unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
    }

    /// Whether this instance has seen the store long enough to judge leases expired.
    fn may_reap(&self) -> bool {
        let wait = self.bounds.lease + self.bounds.lease / 5;
        self.blind_at.lock().unwrap_or_else(PoisonError::into_inner).is_none_or(|at| at.elapsed() >= wait)
    }

    fn held(&self) -> MutexGuard<'_, HashMap<JobId, Token>> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn hold(&self, id: JobId, token: Token) {
        self.held().insert(id, token);
    }

    pub(crate) fn unhold(&self, id: JobId) {
        self.held().remove(&id);
        self.wake.notify_one();
    }

    /// How many jobs this instance runs.
    pub(crate) fn holding(&self) -> usize {
        self.held().len()
    }

    /// The leases held, to renew or give back.
    fn leases(&self) -> Vec<(JobId, Token)> {
        self.held().iter().map(|(id, token)| (*id, *token)).collect()
    }

    /// Gives every lease back (a graceful stop): others take the jobs over at once.
    pub(crate) fn release_all(&self) {
        self.released.store(true, Ordering::Relaxed);
        let leases: Vec<(JobId, Token)> = self.held().drain().collect();
        if let Err(error) = self.shared.release(&leases) {
            tracing::warn!(%error, "could not give the leases back; they expire by themselves");
        }
    }

    fn wake_claimer(&self) {
        self.wake.notify_one();
    }
}

/// Runs a blocking store call on the blocking pool.
pub(crate) async fn blocking<T: Send + 'static>(
    call: impl FnOnce() -> Result<T, super::store::StoreError> + Send + 'static,
) -> Result<T, super::store::StoreError> {
    tokio::task::spawn_blocking(call)
        .await
        .unwrap_or_else(|e| Err(super::store::StoreError::Backend(format!("the store call stopped: {e}"))))
}

/// What became of a job this instance took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Taken {
    /// It waited; it runs now.
    Started,
    /// It ran under a lease that expired; it goes on from its checkpoint.
    Resumed,
    /// It ran and cannot resume: it ended `interrupted`.
    Interrupted,
    /// Someone had asked it to stop: it ended `cancelled`.
    Cancelled,
}

impl Inner {
    fn cluster(&self) -> Option<&Arc<Cluster>> {
        self.cluster.as_ref()
    }

    /// Makes `claimed` this instance's: the record (a mirror until now, or a new one) takes
    /// the stored state and the lease, then the job starts, resumes, or ends as it must.
    pub(crate) fn take(self: &Arc<Self>, claimed: Claimed) -> Taken {
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
                let fresh = JobRecord::restore(row.clone(), events.clone(), self.record_context(), cancel.clone());
                fresh.set_lease(token);
                let kept = self.table.insert_or_get(fresh.clone());
                if !Arc::ptr_eq(&kept, &fresh) {
                    // A look-up made a mirror of it meanwhile: that is the record to hold.
                    kept.adopt((row, events), token, cancel);
                }
                kept
            }
        };
        if let Some(cluster) = self.cluster() {
            cluster.hold(id, token);
        }
        let taken = match status {
            _ if cancel_requested => {
                self.finish(&record, Outcome::Cancelled, Duration::ZERO);
                Taken::Cancelled
            }
            JobStatus::Running if !resumable => {
                interrupt(&record, RESTARTED);
                Taken::Interrupted
            }
            JobStatus::Running => Taken::Resumed,
            _ => Taken::Started,
        };
        match taken {
            Taken::Started | Taken::Resumed => {
                self.scheduler.occupy();
                self.launch(id, taken == Taken::Resumed);
            }
            Taken::Cancelled | Taken::Interrupted => {
                if let Some(cluster) = self.cluster() {
                    cluster.unhold(id);
                }
            }
        }
        taken
    }

    /// The job `id`: from the table, or (with a shared store) read from the store and kept
    /// as a mirror. `None` for a job no one keeps.
    pub(crate) async fn find(self: &Arc<Self>, id: JobId) -> Option<Arc<JobRecord>> {
        if let Some(record) = self.table.get(id) {
            return Some(record);
        }
        let cluster = self.cluster()?;
        let shared = cluster.shared.clone();
        match blocking(move || shared.job(id)).await {
            Ok(Some((row, events))) => {
                let record = JobRecord::mirror(row, events, self.record_context(), self.shutdown.child_token());
                let kept = self.table.insert_or_get(record.clone());
                if Arc::ptr_eq(&kept, &record) && !record.has_ended() {
                    // A notice that came between the read and the insert found no mirror to
                    // move on: read once more now that notices reach it.
                    let (inner, seq) = (self.clone(), record.snapshot().map_or(0, |s| s.seq));
                    let _ = tokio::task::spawn_blocking(move || inner.catch_up_mirrors(vec![(record, seq)])).await;
                }
                Some(kept)
            }
            Ok(None) => None,
            Err(error) => {
                cluster.failed();
                tracing::warn!(%id, %error, "could not look the job up in the store");
                None
            }
        }
    }

    /// Starts the loops (see the module's documentation). They end with the engine.
    pub(crate) fn start_cluster_loops(self: &Arc<Self>) {
        let Some(cluster) = self.cluster().cloned() else { return };
        let weak = Arc::downgrade(self);
        let listener = weak.clone();
        let spawned = std::thread::Builder::new()
            .name("sse-progress-listener".into())
            .spawn(move || listen(&listener, &cluster.shared));
        if let Err(error) = spawned {
            tracing::error!(%error, "could not start the store listener; other instances' jobs update every few seconds only");
        }
        tokio::spawn(heartbeats(weak.clone()));
        tokio::spawn(claims(weak));
    }
}

/// The listener thread: notices until the engine is gone, reconnecting with a growing pause.
fn listen(engine: &Weak<Inner>, shared: &Arc<dyn SharedStore>) {
    let mut pause = Duration::from_millis(50);
    loop {
        // Due at once: whatever came while not subscribed is read on the first callback.
        let mut last_check: Option<Instant> = None;
        let mut handler = |notice: Option<Notice>| {
            let Some(inner) = engine.upgrade() else { return false };
            if inner.shutdown.is_cancelled() {
                return false;
            }
            pause = Duration::from_millis(50);
            if let Some(notice) = notice {
                inner.on_notice(notice);
            }
            if last_check.is_none_or(|at| at.elapsed() >= RECHECK_EVERY) {
                inner.recheck_mirrors();
                last_check = Some(Instant::now());
            }
            true
        };
        match shared.listen(&mut handler) {
            Ok(()) => return,
            Err(error) => {
                let Some(inner) = engine.upgrade() else { return };
                if inner.shutdown.is_cancelled() {
                    return;
                }
                if let Some(cluster) = inner.cluster() {
                    cluster.failed();
                }
                drop(inner);
                tracing::warn!(%error, ?pause, "lost the store's notices; listening again");
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_secs(2));
            }
        }
    }
}

impl Inner {
    /// One notice from the store (on the listener thread).
    fn on_notice(self: &Arc<Self>, notice: Notice) {
        match notice {
            Notice::Appended(moved) => {
                let behind: Vec<(Arc<JobRecord>, u64)> = moved
                    .into_iter()
                    .filter_map(|(id, seq)| {
                        let record = self.table.get(id)?;
                        let known = record.snapshot().map_or(0, |s| s.seq);
                        (record.is_mirror() && known < seq).then_some((record, known))
                    })
                    .collect();
                self.catch_up_mirrors(behind);
            }
            Notice::Created { owner: Some(owner), .. } => self.table.announce(&owner),
            Notice::Created { owner: None, .. } => {}
            Notice::CancelRequested(id) => {
                if let Some(record) = self.table.get(id).filter(|r| !r.is_mirror()) {
                    record.cancel_from_store();
                }
            }
            Notice::QueueMoved => {
                if let Some(cluster) = self.cluster() {
                    cluster.wake_claimer();
                }
            }
        }
    }

    /// Reads every live mirror's new events (a notice may have been lost).
    fn recheck_mirrors(self: &Arc<Self>) {
        let live: Vec<(Arc<JobRecord>, u64)> = self
            .table
            .all()
            .into_iter()
            .filter(|r| r.is_mirror() && !r.has_ended())
            .map(|r| {
                let known = r.snapshot().map_or(0, |s| s.seq);
                (r, known)
            })
            .collect();
        self.catch_up_mirrors(live);
        if let Some(cluster) = self.cluster() {
            cluster.wake_claimer();
        }
    }

    /// Reads what the store has after each mirror's newest event, and shows it.
    fn catch_up_mirrors(&self, behind: Vec<(Arc<JobRecord>, u64)>) {
        let Some(cluster) = self.cluster() else { return };
        if behind.is_empty() {
            return;
        }
        let cursors: Vec<(JobId, u64)> = behind.iter().map(|(r, known)| (r.id, *known)).collect();
        match cluster.shared.events_after(&cursors) {
            Ok(found) => {
                for ((record, _), found) in behind.into_iter().zip(found) {
                    match found {
                        Some((events, state)) => record.absorb(events, state),
                        None if record.is_mirror() => {
                            record.forgotten();
                            self.table.remove(record.id);
                        }
                        None => {}
                    }
                }
            }
            Err(error) => {
                cluster.failed();
                tracing::warn!(%error, "could not read other instances' events; trying again shortly");
            }
        }
    }
}

/// Renews this instance's leases until the engine is gone.
async fn heartbeats(engine: Weak<Inner>) {
    let Some(every) = engine.upgrade().and_then(|i| i.cluster().map(|c| c.bounds.lease / 5)) else { return };
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let Some(inner) = engine.upgrade() else { return };
        let Some(cluster) = inner.cluster().cloned() else { return };
        if cluster.released.load(Ordering::Relaxed) {
            return;
        }
        let leases = cluster.leases();
        if leases.is_empty() {
            continue;
        }
        let (shared, instance, lease) = (cluster.shared.clone(), cluster.instance.clone(), cluster.bounds.lease);
        match blocking(move || shared.heartbeat(&instance, &leases, lease)).await {
            Ok(beat) => {
                let mut lost = Vec::new();
                for id in beat.lost {
                    cluster.unhold(id);
                    let Some(record) = inner.table.get(id) else { continue };
                    if record.lose() {
                        inner.journal.counters().leases_lost.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(%id, "another instance took this job over (this one stalled past its lease); stopping it here");
                        let seq = record.snapshot().map_or(0, |s| s.seq);
                        lost.push((record, seq));
                    }
                }
                if !lost.is_empty() {
                    // Show at once what the new holder wrote meanwhile.
                    let reader = inner.clone();
                    let _ = tokio::task::spawn_blocking(move || reader.catch_up_mirrors(lost)).await;
                }
                for id in beat.cancelled {
                    if let Some(record) = inner.table.get(id) {
                        record.cancel_from_store();
                    }
                }
            }
            Err(error) => {
                cluster.failed();
                tracing::warn!(%error, "could not renew this instance's leases; retrying");
            }
        }
    }
}

/// Claims waiting jobs and takes over expired ones until the engine is gone.
async fn claims(engine: Weak<Inner>) {
    loop {
        let Some(inner) = engine.upgrade() else { return };
        let Some(cluster) = inner.cluster().cloned() else { return };
        if inner.shutdown.is_cancelled() {
            return;
        }
        let (shared, instance, bounds) = (cluster.shared.clone(), cluster.instance.clone(), cluster.bounds);
        let held: Vec<JobId> = cluster.leases().into_iter().map(|(id, _)| id).collect();
        let reaped = if cluster.may_reap() {
            blocking(move || shared.reap(&instance, &bounds, &held)).await
        } else {
            Ok(Vec::new())
        };
        match reaped {
            Ok(expired) => {
                for claimed in expired {
                    cluster.counters.lease_expiries.fetch_add(1, Ordering::Relaxed);
                    let id = claimed.job.0.id;
                    let taken = inner.take(claimed);
                    tracing::warn!(%id, ?taken, "took over a job whose instance stopped renewing its lease");
                }
            }
            Err(error) => {
                cluster.failed();
                tracing::warn!(%error, "could not look for expired leases; retrying");
            }
        }
        let room = bounds.max_running.saturating_sub(cluster.holding()).min(CLAIM_AT_ONCE);
        if room > 0 && !inner.shutdown.is_cancelled() {
            let (shared, instance) = (cluster.shared.clone(), cluster.instance.clone());
            match blocking(move || shared.claim(&instance, &bounds, room)).await {
                Ok(claimed) => {
                    for claimed in claimed {
                        inner.take(claimed);
                    }
                }
                Err(error) => {
                    cluster.failed();
                    tracing::warn!(%error, "could not claim waiting jobs; retrying");
                }
            }
        }
        let shutdown = inner.shutdown.clone();
        drop(inner);
        tokio::select! {
            () = cluster.wake.notified() => {}
            () = tokio::time::sleep(CLAIM_EVERY) => {}
            () = shutdown.cancelled() => return,
        }
    }
}
