//! Coordination through a store several instances share (Redis): admission, the queue and
//! the bounds are the store's, this instance holds the jobs it runs under leases that it
//! renews, claims waiting jobs as slots free up, takes over jobs whose holder died, and keeps
//! its mirrors of other instances' jobs live from the store's notices.
//!
//! Three loops run from [`Coordinator::begin`] until the engine is gone:
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
//!
//! Over 450 lines on purpose: the seam's shared half and its three loops read best together.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::time::{Duration, Instant};

use futures::future::{BoxFuture, FutureExt};
use tokio::sync::Notify;

use super::{blocking, Admitted, Call, CoordStats, Coordinator, Host};
use crate::jobs::record::JobRecord;
use crate::jobs::stats::SharedStats;
use crate::jobs::store::shared::{self as store, Bounds, CancelReply, Claimed, Notice, Refused, SharedStore, Token};
use crate::jobs::store::LoadedJob;
use crate::jobs::table::JobTable;
use crate::jobs::StartError;
use crate::model::JobId;

/// How often the claimer looks for waiting jobs without being woken.
const CLAIM_EVERY: Duration = Duration::from_secs(1);
/// How often the listener re-reads every live mirror, whatever the notices said.
const RECHECK_EVERY: Duration = Duration::from_secs(3);
/// Most waiting jobs claimed in one call.
const CLAIM_AT_ONCE: usize = 16;
/// How long a start waits for the store to admit the new job before it gives up.
const ADMIT_TIMEOUT: Duration = Duration::from_secs(10);

/// This instance in a shared store. Cheap to share: the loops hold its state.
pub(crate) struct Shared {
    state: Arc<State>,
}

struct State {
    /// This instance's name in leases and logs.
    instance: String,
    store: Arc<dyn SharedStore>,
    bounds: Bounds,
    /// The records this process holds (a cache of the store's jobs).
    table: Arc<JobTable>,
    /// The leases this instance holds.
    held: Mutex<HashMap<JobId, Token>>,
    /// Set once the leases were given back at a stop: heartbeats end there, not before, so
    /// jobs finishing their last writes during the stop keep their leases.
    released: AtomicBool,
    /// Wakes the claimer.
    wake: Notify,
    /// Jobs taken over from an instance whose lease expired.
    lease_expiries: AtomicU64,
    /// Store calls that failed (and were retried).
    store_errors: AtomicU64,
    /// When a store call last failed: until a lease (and a heartbeat) after that, this
    /// instance takes no expired lease over. After an outage every lease looks expired, and
    /// their holders deserve a heartbeat's chance to renew them first.
    blind_at: Mutex<Option<Instant>>,
    /// Jobs whose lease had expired, taken when the engine opened, until [`Coordinator::begin`].
    reaped: Mutex<Vec<Claimed>>,
    /// The engine, from [`Coordinator::begin`] on.
    host: OnceLock<Weak<dyn Host>>,
}

impl Shared {
    /// This instance, named `instance`, in `store`; `reaped` are the jobs it took over when
    /// the engine opened.
    pub(crate) fn new(
        store: Arc<dyn SharedStore>,
        bounds: Bounds,
        instance: String,
        table: Arc<JobTable>,
        reaped: Vec<Claimed>,
    ) -> Self {
        Self {
            state: Arc::new(State {
                instance,
                store,
                bounds,
                table,
                held: Mutex::default(),
                released: AtomicBool::new(false),
                wake: Notify::new(),
                lease_expiries: AtomicU64::new(0),
                store_errors: AtomicU64::new(0),
                blind_at: Mutex::new(None),
                reaped: Mutex::new(reaped),
                host: OnceLock::new(),
            }),
        }
    }
}

impl State {
    /// A store call failed.
    fn failed(&self) {
        self.store_errors.fetch_add(1, Ordering::Relaxed);
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

    fn unhold(&self, id: JobId) {
        self.held().remove(&id);
        self.wake.notify_one();
    }

    /// The leases held, to renew or give back.
    fn leases(&self) -> Vec<(JobId, Token)> {
        self.held().iter().map(|(id, token)| (*id, *token)).collect()
    }

    /// Reads what the store has after each mirror's cursor, and shows it.
    fn catch_up(&self, behind: Vec<(Arc<JobRecord>, u64)>) {
        if behind.is_empty() {
            return;
        }
        let cursors: Vec<(JobId, u64)> = behind.iter().map(|(r, known)| (r.id, *known)).collect();
        match self.store.events_after(&cursors) {
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
                self.failed();
                tracing::warn!(%error, "could not read other instances' events; trying again shortly");
            }
        }
    }

    /// Reads every live mirror's new events (a notice may have been lost).
    fn recheck(&self) {
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
        self.catch_up(live);
        self.wake.notify_one();
    }

    /// One notice from the store (on the listener thread).
    fn on_notice(&self, host: &dyn Host, notice: Notice) {
        match notice {
            Notice::Appended(moved) => {
                let behind: Vec<(Arc<JobRecord>, u64)> = moved
                    .into_iter()
                    .filter_map(|(id, seq)| {
                        let record = host.record(id)?;
                        let known = record.snapshot().map_or(0, |s| s.seq);
                        (record.is_mirror() && known < seq).then_some((record, known))
                    })
                    .collect();
                self.catch_up(behind);
            }
            Notice::Created { owner: Some(owner), .. } => host.announce(&owner),
            Notice::Created { owner: None, .. } => {}
            Notice::CancelRequested(id) => {
                if let Some(record) = host.record(id).filter(|r| !r.is_mirror()) {
                    record.cancel_from_store();
                }
            }
            Notice::QueueMoved => self.wake.notify_one(),
        }
    }
}

impl Coordinator for Shared {
    fn admit(&self, record: Arc<JobRecord>) -> BoxFuture<'static, Result<Admitted, StartError>> {
        let state = self.state.clone();
        async move {
            let id = record.id;
            let (row, _) = record.first_event();
            let (store, instance, bounds) = (state.store.clone(), state.instance.clone(), state.bounds);
            let mut call = tokio::task::spawn_blocking(move || store.admit(&instance, &row, &bounds));
            let admission = match tokio::time::timeout(ADMIT_TIMEOUT, &mut call).await {
                Ok(Ok(Ok(admission))) => admission,
                Ok(Ok(Err(error))) => return Err(StartError::StoreUnavailable { reason: error.to_string() }),
                Ok(Err(error)) => {
                    return Err(StartError::StoreUnavailable { reason: format!("the store call stopped: {error}") })
                }
                Err(_) => {
                    // It may be admitted after all: it must not run behind the client's back.
                    let late = state.clone();
                    tokio::spawn(async move {
                        if let Ok(Ok(admission)) = call.await {
                            if let Ok(admitted) = admission.decision {
                                late.withdraw_late(id, admitted).await;
                            }
                        }
                    });
                    return Err(StartError::StoreUnavailable { reason: "it did not answer in time".into() });
                }
            };
            for evicted in admission.evicted {
                state.table.remove(evicted);
            }
            let token = match admission.decision {
                Err(Refused::OwnerLimit) => {
                    return Err(StartError::OwnerLimit { limit: state.bounds.max_active_per_owner })
                }
                Err(Refused::QueueFull) => {
                    return Err(StartError::QueueFull {
                        running: state.bounds.max_running,
                        queued: state.bounds.max_queued,
                    })
                }
                Err(Refused::Full) => return Err(StartError::AtCapacity { limit: state.bounds.max_jobs }),
                Ok(store::Admitted::Run(token)) => token,
                Ok(store::Admitted::Queued) => 0,
            };
            record.admitted(token);
            state.table.insert_or_get(record);
            if token == 0 {
                return Ok(Admitted::Queued);
            }
            state.held().insert(id, token);
            Ok(Admitted::Run(token))
        }
        .boxed()
    }

    fn lookup(&self, id: JobId) -> Call<Option<LoadedJob>> {
        let state = self.state.clone();
        async move {
            let store = state.store.clone();
            let found = blocking(move || store.job(id)).await;
            if found.is_err() {
                state.failed();
            }
            found
        }
        .boxed()
    }

    fn refresh(&self, behind: Vec<(Arc<JobRecord>, u64)>) -> BoxFuture<'static, ()> {
        let state = self.state.clone();
        async move {
            let _ = tokio::task::spawn_blocking(move || state.catch_up(behind)).await;
        }
        .boxed()
    }

    fn owner_jobs(&self, owner: &str) -> Call<Vec<JobId>> {
        let (state, key) = (self.state.clone(), owner.to_string());
        async move {
            let store = state.store.clone();
            let listed = blocking(move || store.owner_jobs(&key)).await;
            if listed.is_err() {
                state.failed();
            }
            listed
        }
        .boxed()
    }

    fn queue_position(&self, id: JobId) -> Call<Option<u32>> {
        let store = self.state.store.clone();
        blocking(move || store.queue_position(id)).boxed()
    }

    fn withdraw(&self, _id: JobId) -> bool {
        // A job waiting in the shared queue is a mirror here: see `cancel_elsewhere`.
        false
    }

    fn cancel_elsewhere(&self, id: JobId) -> Call<CancelReply> {
        let state = self.state.clone();
        async move {
            let (store, instance, bounds) = (state.store.clone(), state.instance.clone(), state.bounds);
            let reply = blocking(move || store.request_cancel(&instance, id, &bounds)).await;
            if reply.is_err() {
                state.failed();
            }
            reply
        }
        .boxed()
    }

    fn hold(&self, id: JobId, token: Token) {
        self.state.held().insert(id, token);
    }

    fn run_over(&self, id: JobId, lease: Token, give_back: bool) -> Option<JobId> {
        if give_back {
            // Only this run's lease: the job may be held again under a newer one by now.
            let mut held = self.state.held();
            if held.get(&id) == Some(&lease) {
                held.remove(&id);
            }
            drop(held);
            self.state.wake.notify_one();
        }
        // Waiting jobs are claimed by the claimer, which the freed lease woke.
        None
    }

    fn expire(&self, ended_by: u64, _swept: Vec<JobId>) -> Call<usize> {
        // Whichever instance sweeps first forgets them for all; the table is a cache.
        let store = self.state.store.clone();
        blocking(move || store.expire_ended(ended_by)).boxed()
    }

    fn stats(&self) -> BoxFuture<'static, CoordStats> {
        let state = self.state.clone();
        async move {
            let store = state.store.clone();
            let counts = blocking(move || store.counts()).await.unwrap_or_default();
            CoordStats {
                queued: counts.queued,
                shared: Some(SharedStats {
                    instance: state.instance.clone(),
                    jobs: counts.jobs,
                    queued: counts.queued,
                    running: counts.running,
                    held: state.held().len() as u64,
                    lease_expiries: state.lease_expiries.load(Ordering::Relaxed),
                    leases_lost: 0,
                    store_errors: state.store_errors.load(Ordering::Relaxed),
                }),
            }
        }
        .boxed()
    }

    fn begin(&self, host: Weak<dyn Host>) -> usize {
        let _ = self.state.host.set(host.clone());
        let reaped = std::mem::take(&mut *self.state.reaped.lock().unwrap_or_else(PoisonError::into_inner));
        let count = reaped.len();
        if let Some(engine) = host.upgrade() {
            for claimed in reaped {
                engine.take(claimed);
            }
        }
        let (state, listener) = (self.state.clone(), host.clone());
        let spawned =
            std::thread::Builder::new().name("sse-progress-listener".into()).spawn(move || listen(&state, &listener));
        if let Err(error) = spawned {
            tracing::error!(%error, "could not start the store listener; other instances' jobs update every few seconds only");
        }
        tokio::spawn(heartbeats(self.state.clone(), host.clone()));
        tokio::spawn(claims(self.state.clone(), host));
        count
    }

    fn drain(&self) -> Vec<JobId> {
        // The queue is the store's: waiting jobs stay there for any instance.
        Vec::new()
    }

    fn release_all(&self) -> BoxFuture<'static, ()> {
        let state = self.state.clone();
        async move {
            state.released.store(true, Ordering::Relaxed);
            let leases: Vec<(JobId, Token)> = state.held().drain().collect();
            let store = state.store.clone();
            if let Err(error) = blocking(move || store.release(&leases)).await {
                tracing::warn!(%error, "could not give the leases back; they expire by themselves");
            }
        }
        .boxed()
    }
}

impl State {
    /// A start that gave up waiting for the store was admitted after all: the client was told
    /// it failed, so the job must not run. It is cancelled through the store, and a lease it
    /// got is given back at once, so whoever takes it over ends it cancelled.
    async fn withdraw_late(self: Arc<Self>, id: JobId, admitted: store::Admitted) {
        let (store, instance, bounds) = (self.store.clone(), self.instance.clone(), self.bounds);
        let mut give_back = Vec::new();
        match blocking(move || store.request_cancel(&instance, id, &bounds)).await {
            // It waited: this instance holds it now, to end it cancelled (and give it back).
            Ok(CancelReply::Claimed(claimed)) => match self.host.get().and_then(Weak::upgrade) {
                Some(engine) => {
                    engine.take(claimed);
                }
                None => give_back.push((id, claimed.token)),
            },
            Ok(_) => {}
            Err(error) => tracing::warn!(%id, %error, "could not cancel a job admitted after its start gave up"),
        }
        if let store::Admitted::Run(token) = admitted {
            give_back.push((id, token));
        }
        if !give_back.is_empty() {
            let store = self.store.clone();
            let _ = blocking(move || store.release(&give_back)).await;
        }
        self.wake.notify_one();
    }
}

/// The listener thread: notices until the engine is gone, reconnecting with a growing pause.
fn listen(state: &Arc<State>, host: &Weak<dyn Host>) {
    let mut pause = Duration::from_millis(50);
    loop {
        // Due at once: whatever came while not subscribed is read on the first callback.
        let mut last_check: Option<Instant> = None;
        let mut handler = |notice: Option<Notice>| {
            let Some(engine) = host.upgrade() else { return false };
            if engine.stopping() {
                return false;
            }
            pause = Duration::from_millis(50);
            if let Some(notice) = notice {
                state.on_notice(&*engine, notice);
            }
            if last_check.is_none_or(|at| at.elapsed() >= RECHECK_EVERY) {
                state.recheck();
                last_check = Some(Instant::now());
            }
            true
        };
        match state.store.listen(&mut handler) {
            Ok(()) => return,
            Err(error) => {
                if host.upgrade().is_none_or(|engine| engine.stopping()) {
                    return;
                }
                state.failed();
                tracing::warn!(%error, ?pause, "lost the store's notices; listening again");
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_secs(2));
            }
        }
    }
}

/// Renews this instance's leases until the engine is gone.
async fn heartbeats(state: Arc<State>, host: Weak<dyn Host>) {
    let mut ticker = tokio::time::interval(state.bounds.lease / 5);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let Some(engine) = host.upgrade() else { return };
        if state.released.load(Ordering::Relaxed) {
            return;
        }
        let leases = state.leases();
        if leases.is_empty() {
            continue;
        }
        let (store, instance, lease) = (state.store.clone(), state.instance.clone(), state.bounds.lease);
        match blocking(move || store.heartbeat(&instance, &leases, lease)).await {
            Ok(beat) => {
                let mut lost = Vec::new();
                for id in beat.lost {
                    state.unhold(id);
                    let Some(record) = engine.record(id) else { continue };
                    if record.lose() {
                        engine.lease_lost();
                        tracing::warn!(%id, "another instance took this job over (this one stalled past its lease); stopping it here");
                        let seq = record.snapshot().map_or(0, |s| s.seq);
                        lost.push((record, seq));
                    }
                }
                if !lost.is_empty() {
                    // Show at once what the new holder wrote meanwhile.
                    let reader = state.clone();
                    let _ = tokio::task::spawn_blocking(move || reader.catch_up(lost)).await;
                }
                for id in beat.cancelled {
                    if let Some(record) = engine.record(id) {
                        record.cancel_from_store();
                    }
                }
            }
            Err(error) => {
                state.failed();
                tracing::warn!(%error, "could not renew this instance's leases; retrying");
            }
        }
    }
}

/// Claims waiting jobs and takes over expired ones until the engine is gone.
async fn claims(state: Arc<State>, host: Weak<dyn Host>) {
    loop {
        let Some(engine) = host.upgrade() else { return };
        if engine.stopping() {
            return;
        }
        let (store, instance, bounds) = (state.store.clone(), state.instance.clone(), state.bounds);
        let held: Vec<JobId> = state.leases().into_iter().map(|(id, _)| id).collect();
        let reaped = if state.may_reap() {
            blocking(move || store.reap(&instance, &bounds, &held)).await
        } else {
            Ok(Vec::new())
        };
        match reaped {
            Ok(expired) => {
                for claimed in expired {
                    state.lease_expiries.fetch_add(1, Ordering::Relaxed);
                    let id = claimed.job.0.id;
                    let taken = engine.take(claimed);
                    tracing::warn!(%id, ?taken, "took over a job whose instance stopped renewing its lease");
                }
            }
            Err(error) => {
                state.failed();
                tracing::warn!(%error, "could not look for expired leases; retrying");
            }
        }
        let room = bounds.max_running.saturating_sub(state.held().len()).min(CLAIM_AT_ONCE);
        if room > 0 && !engine.stopping() {
            let (store, instance) = (state.store.clone(), state.instance.clone());
            match blocking(move || store.claim(&instance, &bounds, room)).await {
                Ok(claimed) => {
                    for claimed in claimed {
                        engine.take(claimed);
                    }
                }
                Err(error) => {
                    state.failed();
                    tracing::warn!(%error, "could not claim waiting jobs; retrying");
                }
            }
        }
        drop(engine);
        tokio::select! {
            () = state.wake.notified() => {}
            () = tokio::time::sleep(CLAIM_EVERY) => {}
        }
    }
}
