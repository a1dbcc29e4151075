//! The second half of the seam, for a store that several server instances share (Redis):
//! global admission and queue, leases on running jobs with fencing tokens, look-ups of jobs
//! another instance runs, and the notices that keep every instance's view of them live.
//!
//! # The promises a shared store keeps
//! - Admission is atomic across instances: the per-owner limit, the running bound, the queue
//!   bound and `max_jobs` hold however many instances start jobs at once.
//! - A running job is held by at most one instance at a time, through a lease that its holder
//!   renews ([`SharedStore::heartbeat`]). Every holder gets a new, larger fencing token; the
//!   store refuses (reports as fenced, see [`JobStore::write`](super::JobStore::write)) any
//!   write that carries an older one, so a holder that stalled past its lease can never write
//!   into a job another instance took over.
//! - Sequence numbers stay gap-free across holders: the store checks that every appended event
//!   follows the newest kept one.
//! - Times of leases are the store's own clock, so instances need not agree on theirs.
//!
//! Calls block, like the rest of the seam; [`SharedStore::listen`] blocks for as long as its
//! connection lives and is given a thread of its own.

use std::time::Duration;

use super::{JobRow, LoadedJob, StoreError};
use crate::jobs::event::JobEvent;
use crate::model::{JobId, JobStatus, Snapshot};

/// A fencing token: each new holder of a job gets a larger one; 0 is "no lease".
pub type Token = u64;

/// The global bounds that admission and claims enforce.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// Jobs running at once, across all instances.
    pub max_running: usize,
    /// Jobs waiting, across all instances.
    pub max_queued: usize,
    /// Jobs pending or running per owner, across all instances.
    pub max_active_per_owner: usize,
    /// Jobs kept, ended ones included; the oldest ended job is forgotten to make room.
    pub max_jobs: usize,
    /// How long a lease lasts without renewal.
    pub lease: Duration,
}

/// What admitting a new job decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admitted {
    /// A slot was free: the job is this instance's to run, with this token.
    Run(Token),
    /// It waits in the global queue; some instance claims it when a slot frees up.
    Queued,
}

/// Why a new job was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Its owner has `max_active_per_owner` jobs pending or running.
    OwnerLimit,
    /// The running bound is reached and the queue is full.
    QueueFull,
    /// `max_jobs` are kept and none of them has ended.
    Full,
}

/// The outcome of an admission: the decision, and the ended jobs forgotten to make room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admission {
    /// Admitted or refused.
    pub decision: Result<Admitted, Refused>,
    /// Jobs forgotten (rows and events) to make room.
    pub evicted: Vec<JobId>,
}

/// A job this instance now holds, as the store keeps it.
#[derive(Debug, Clone)]
pub struct Claimed {
    /// The lease's fencing token.
    pub token: Token,
    /// The job and its kept events.
    pub job: LoadedJob,
}

/// What renewing leases found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Beat {
    /// Jobs whose lease another instance holds now: stop them, write nothing more.
    pub lost: Vec<JobId>,
    /// Jobs still held that someone asked to stop.
    pub cancelled: Vec<JobId>,
}

/// What asking a job to stop through the store did.
#[derive(Debug, Clone)]
pub enum CancelReply {
    /// No such job.
    Unknown,
    /// It had ended already, with this status.
    Ended(JobStatus),
    /// Another instance runs it; it was told (and finds the request at its next heartbeat if
    /// the notice is lost).
    Requested,
    /// It was waiting: it is this instance's now, to end as cancelled.
    Claimed(Claimed),
}

/// What instances tell each other through the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// Events were appended: each job with its newest sequence number.
    Appended(Vec<(JobId, u64)>),
    /// A job was created, for this owner.
    Created {
        /// The job.
        id: JobId,
        /// Its owner's key, if any.
        owner: Option<String>,
    },
    /// Someone asked this job to stop.
    CancelRequested(JobId),
    /// The queue moved or a slot freed up: instances with room may claim.
    QueueMoved,
}

/// Counts for metrics and the queue's length.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Jobs kept.
    pub jobs: u64,
    /// Jobs waiting.
    pub queued: u64,
    /// Jobs running (leases held).
    pub running: u64,
}

/// What a listener is given: a notice, or `None` when nothing came for a while (or the
/// connection was just made): the moment to check for anything a lost notice would have said.
/// It returns whether to go on listening.
pub type Listener<'a> = dyn FnMut(Option<Notice>) -> bool + 'a;

/// A store several instances share.
/// A job's kept events after a reader's point, and its newest state (for a reader whose
/// point was trimmed away).
pub type EventsAfter = (Vec<JobEvent>, Snapshot);

pub trait SharedStore: Send + Sync + 'static {
    /// Creates the job of `row` (its first event is `row.state`) if the bounds allow: running
    /// under a lease of `instance`'s, or queued.
    fn admit(&self, instance: &str, row: &JobRow, bounds: &Bounds) -> Result<Admission, StoreError>;
    /// Takes up to `most` waiting jobs, oldest first, while the running bound allows.
    fn claim(&self, instance: &str, bounds: &Bounds, most: usize) -> Result<Vec<Claimed>, StoreError>;
    /// Takes over running jobs whose lease expired (their holder died or stalled), except
    /// those in `held` (the caller's own, renewed by its heartbeat).
    fn reap(&self, instance: &str, bounds: &Bounds, held: &[JobId]) -> Result<Vec<Claimed>, StoreError>;
    /// Renews the leases `instance` holds.
    fn heartbeat(&self, instance: &str, leases: &[(JobId, Token)], lease: Duration) -> Result<Beat, StoreError>;
    /// Gives leases back at once (a graceful stop), so another instance takes the jobs over
    /// without waiting for them to expire.
    fn release(&self, leases: &[(JobId, Token)]) -> Result<(), StoreError>;
    /// Asks a job to stop wherever it runs (see [`CancelReply`]).
    fn request_cancel(&self, instance: &str, id: JobId, bounds: &Bounds) -> Result<CancelReply, StoreError>;
    /// One job with its kept events, `None` if not kept.
    fn job(&self, id: JobId) -> Result<Option<LoadedJob>, StoreError>;
    /// For each `(job, after)`: its kept events after `after`, and its newest state (for a
    /// reader whose point was trimmed away). `None` for a job no longer kept.
    fn events_after(&self, cursors: &[(JobId, u64)]) -> Result<Vec<Option<EventsAfter>>, StoreError>;
    /// An owner's jobs, newest first.
    fn owner_jobs(&self, owner: &str) -> Result<Vec<JobId>, StoreError>;
    /// A waiting job's place in the global queue (1 is next).
    fn queue_position(&self, id: JobId) -> Result<Option<u32>, StoreError>;
    /// Jobs kept, waiting and running.
    fn counts(&self) -> Result<Counts, StoreError>;
    /// Forgets jobs that ended at or before `ended_by` (ms). Returns how many.
    fn expire_ended(&self, ended_by: u64) -> Result<usize, StoreError>;
    /// Listens for notices until `listener` says stop (`Ok`) or the connection fails (`Err`:
    /// call again, and treat anything followed as possibly missed).
    fn listen(&self, listener: &mut Listener<'_>) -> Result<(), StoreError>;
}
