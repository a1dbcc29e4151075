//! The coordination seam: how the engine admits jobs, bounds how many run, queues the rest,
//! finds jobs it does not hold, and hands jobs over. One interface, [`Coordinator`], with two
//! implementations, so the engine has one code path whether one instance runs or many
//! (Centrifuge's shape: a single node is the in-memory implementation of the same broker
//! interface a cluster uses):
//! - [`local`]: one process owns its store (memory, SQLite): the bounds and the queue are
//!   this process's, and every job it keeps is in its table;
//! - [`shared`]: several instances share a store (Redis): admission, the queue and leases are
//!   the store's, and this instance mirrors the jobs others run.
//!
//! A coordinator calls back into the engine through [`Host`] (to run a job it was handed, to
//! find a record it holds), so it never depends on the engine itself.

pub(crate) mod local;
pub(crate) mod scheduler;
pub(crate) mod shared;

use std::sync::{Arc, Weak};

use futures::future::BoxFuture;

use super::record::JobRecord;
use super::stats::SharedStats;
use super::store::shared::{CancelReply, Claimed, Token};
use super::store::{LoadedJob, StoreError};
use super::StartError;
use crate::model::JobId;

/// A call that may wait on the store.
pub(crate) type Call<T> = BoxFuture<'static, Result<T, StoreError>>;

/// What admitting a new job decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admitted {
    /// It runs here, now, under this lease (0 without a shared store).
    Run(Token),
    /// It waits in the queue.
    Queued,
}

/// What became of a job the engine was handed to hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TakeOutcome {
    /// It waited; it runs now.
    Started,
    /// It ran under a lease that expired (or before a restart); it goes on from its checkpoint.
    Resumed,
    /// It ran and cannot resume: it ended `interrupted`.
    Interrupted,
    /// Someone had asked it to stop: it ended `cancelled`.
    Cancelled,
}

/// The coordinator's numbers, for `/metrics`.
#[derive(Debug, Clone, Default)]
pub(crate) struct CoordStats {
    /// Jobs waiting for a slot (this process's queue, or the shared one).
    pub(crate) queued: u64,
    /// With a shared store: the global counts and this instance's part.
    pub(crate) shared: Option<SharedStats>,
}

/// What a coordinator asks of the engine.
pub(crate) trait Host: Send + Sync + 'static {
    /// Holds `claimed` from now on (a waiting job claimed, an expired lease taken over, a
    /// waiting job withdrawn to be cancelled): it starts, resumes, or ends as it must.
    fn take(&self, claimed: Claimed) -> TakeOutcome;
    /// Runs job `id`, which holds a slot already; `resumed` when it continues from its checkpoint.
    fn launch(&self, id: JobId, resumed: bool);
    /// The record held for `id`, if any.
    fn record(&self, id: JobId) -> Option<Arc<JobRecord>>;
    /// Wakes the feeds of `owner`: one of its jobs was started.
    fn announce(&self, owner: &str);
    /// Whether the engine is stopping.
    fn stopping(&self) -> bool;
    /// Counts a job another instance took over from this one.
    fn lease_lost(&self);
}

/// How the engine coordinates its jobs (see the module's documentation).
pub(crate) trait Coordinator: Send + Sync + 'static {
    /// Admits a new job, whose record is made but not stored: refused, running here, or
    /// queued. Once admitted the job is in the table; it is shown once stored.
    fn admit(&self, record: Arc<JobRecord>) -> BoxFuture<'static, Result<Admitted, StartError>>;
    /// A job the table does not hold, as the store keeps it; `None` when no one keeps it.
    fn lookup(&self, id: JobId) -> Call<Option<LoadedJob>>;
    /// Brings records that follow the store (mirrors) up to date from the cursor given with
    /// each; nothing to do without a shared store.
    fn refresh(&self, behind: Vec<(Arc<JobRecord>, u64)>) -> BoxFuture<'static, ()>;
    /// The ids of `owner`'s jobs.
    fn owner_jobs(&self, owner: &str) -> Call<Vec<JobId>>;
    /// A waiting job's place in the queue (1 is next), `None` when it is not waiting.
    fn queue_position(&self, id: JobId) -> Call<Option<u32>>;
    /// Takes a job that waits in this process's queue out of it (it is being cancelled before
    /// it ran). Whether it was waiting here.
    fn withdraw(&self, id: JobId) -> bool;
    /// Asks a job this instance does not hold to stop, wherever it is.
    fn cancel_elsewhere(&self, id: JobId) -> Call<CancelReply>;
    /// This instance runs `id` under `token` from now on.
    fn hold(&self, id: JobId, token: Token);
    /// A run of `id` under `lease` is over (with a lease, once everything it wrote is stored):
    /// its slot goes, and with `give_back` its lease too, unless the job is held under another
    /// lease by now (it ended, or another instance took it over; a run a stop paused at its
    /// checkpoint keeps its lease until [`release_all`](Self::release_all)). Returns the next
    /// waiting job to run here.
    fn run_over(&self, id: JobId, lease: Token, give_back: bool) -> Option<JobId>;
    /// Forgets ended jobs whose retention passed: those that ended by `ended_by` (ms); `swept`
    /// are the ones this process held. Returns how many were forgotten.
    fn expire(&self, ended_by: u64, swept: Vec<JobId>) -> Call<usize>;
    /// The numbers operators watch.
    fn stats(&self) -> BoxFuture<'static, CoordStats>;
    /// Starts work: runs what a previous process left, and (shared) the loops that claim,
    /// renew and listen. Returns how many jobs were handed on.
    fn begin(&self, host: Weak<dyn Host>) -> usize;
    /// The engine stops: the jobs that waited in this process's queue, which will not run.
    fn drain(&self) -> Vec<JobId>;
    /// After the last writes of a stop: gives every lease back, so others take over at once.
    fn release_all(&self) -> BoxFuture<'static, ()>;
}

/// Runs a blocking store call on the blocking pool.
pub(crate) async fn blocking<T: Send + 'static>(
    call: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(call)
        .await
        .unwrap_or_else(|e| Err(StoreError::Backend(format!("the store call stopped: {e}"))))
}
