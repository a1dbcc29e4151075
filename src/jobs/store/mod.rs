//! The engine's storage seam: where jobs, their events and their checkpoints are kept so that
//! they outlive the process.
//!
//! The engine owns this interface; each backend lives in its own module and the rest of the
//! engine only ever holds an `Arc<dyn JobStore>`:
//! - [`memory`]: kept in this process (tests, and people who want nothing on disk);
//! - [`sqlite`]: one file, the zero-setup default;
//! - [`redis`]: a Redis server that several instances share (it also implements
//!   [`shared::SharedStore`], the half of the seam for admission, leases and notices across
//!   instances).
//!
//! # The promises every backend keeps
//! - One [`Batch`] is one transaction: all of it is kept, or none of it.
//! - Sequence numbers are the engine's proposal and the store's to keep: a job's events are
//!   appended in order, never renumbered, never twice. A write's first event follows the newest
//!   kept one, or leaves out only events the same write forgets (`forget_through`): see
//!   [`follows`].
//! - A write that does not fit (a job not kept, events that do not follow, in a shared store a
//!   lease that is not the job's) is refused alone: the store writes the rest of the batch and
//!   names the refused jobs, so one job at fault never holds the others up.
//! - The engine publishes an event only after the batch holding it was written (see
//!   `journal`), so whatever a client was shown is in the store.
//! - Times are wall-clock milliseconds since the Unix epoch.
//! - Owners are stored as the web layer gives them (a hash of the token, never the token).

pub mod memory;
pub mod redis;
pub mod shared;
pub mod sqlite;

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::Value;

use super::event::JobEvent;
use crate::model::{JobId, Snapshot};

/// A job as the store keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRow {
    /// The job.
    pub id: JobId,
    /// Its kind's name.
    pub kind: String,
    /// Its params as accepted (JSON), from which it is rebuilt after a restart.
    pub params: Value,
    /// Whose it is: the opaque key the web layer gives (a hash of the owner's token).
    pub owner: Option<Arc<str>>,
    /// Its newest state; `state.seq` is its newest event's number.
    pub state: Arc<Snapshot>,
    /// The newest checkpoint its code saved (resumable kinds only).
    pub checkpoint: Option<Value>,
    /// Whether someone asked it to stop.
    pub cancel_requested: bool,
    /// When it first started running.
    pub started_ms: Option<u64>,
    /// When it ended.
    pub ended_ms: Option<u64>,
}

/// What one batch does to one job, in order.
#[derive(Debug, Clone, PartialEq)]
pub struct JobWrite {
    /// The job.
    pub id: JobId,
    /// Its new events, oldest first, with consecutive numbers after the kept ones.
    pub events: Vec<JobEvent>,
    /// Its state after them (absent when only a checkpoint or a cancel request changed).
    pub state: Option<Arc<Snapshot>>,
    /// When it started running, if one of these events says so (kept only the first time).
    pub started_ms: Option<u64>,
    /// A new checkpoint.
    pub checkpoint: Option<Value>,
    /// Someone asked it to stop.
    pub cancel_requested: bool,
    /// Events numbered up to this may be forgotten (the replay bound).
    pub forget_through: u64,
    /// The writer's lease on the job in a shared store (0: none, a store one process owns).
    /// A shared store refuses the write when another instance holds a newer lease.
    pub lease: shared::Token,
}

impl JobWrite {
    /// A write that changes nothing yet.
    pub fn new(id: JobId) -> Self {
        Self {
            id,
            events: Vec::new(),
            state: None,
            started_ms: None,
            checkpoint: None,
            cancel_requested: false,
            forget_through: 0,
            lease: 0,
        }
    }
}

/// Everything the engine writes at once: one transaction.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Batch {
    /// New jobs (their first event comes in `writes`).
    pub created: Vec<JobRow>,
    /// Changes to jobs, at most one entry per job.
    pub writes: Vec<JobWrite>,
    /// Jobs to forget, rows and events.
    pub removed: Vec<JobId>,
}

impl Batch {
    /// Whether the batch writes nothing.
    pub fn is_empty(&self) -> bool {
        self.created.is_empty() && self.writes.is_empty() && self.removed.is_empty()
    }
}

/// A kept job and its kept events, oldest first.
pub type LoadedJob = (JobRow, Vec<JobEvent>);

/// Why the store could not be opened, read or written. Every message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// `SSE_PROGRESS_STORE` names no known backend.
    #[error(
        "SSE_PROGRESS_STORE={0:?} is not a store this server knows; use sqlite:PATH (the default \
         is sqlite:{default}), redis://HOST:PORT/DB or memory",
        default = DEFAULT_SQLITE_PATH
    )]
    UnknownScheme(String),
    /// The file or its folder cannot be created, opened or read.
    #[error("cannot use {path} as the job store: {reason}")]
    Unusable {
        /// The file.
        path: PathBuf,
        /// What the system said, and what to do.
        reason: String,
    },
    /// Another process holds the file.
    #[error(
        "{path} is in use by another sse-progress process (pid in {lock}); stop it, or give this \
         one its own file with SSE_PROGRESS_STORE=sqlite:OTHER_PATH"
    )]
    Locked {
        /// The database file.
        path: PathBuf,
        /// The lock file beside it.
        lock: PathBuf,
    },
    /// The file is not a job store (corrupt, or another program's).
    #[error("{path} is not an sse-progress job store ({reason}); move it away or choose another path")]
    NotAStore {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A store server cannot be reached.
    #[error(
        "cannot reach the job store at {url}: {reason}; check that it runs and that SSE_PROGRESS_STORE points at it"
    )]
    Unreachable {
        /// Where it was looked for (without any password).
        url: String,
        /// What the connection said.
        reason: String,
    },
    /// The disk is full.
    #[error("the disk holding {path} is full; free some space")]
    DiskFull {
        /// The file.
        path: PathBuf,
    },
    /// Something else went wrong inside the backend.
    #[error("job store error: {0}")]
    Backend(String),
}

/// Whether a write whose first event is `first` may follow the newest kept event `kept` (0:
/// none yet) when it forgets everything up to `forget_through`: the next number, or a later one
/// when all those in between are forgotten by the same write anyway (a batch that waited out
/// a store outage keeps only what would be kept).
pub fn follows(kept: u64, first: u64, forget_through: u64) -> bool {
    first > kept && first <= kept.max(forget_through) + 1
}

/// Where the default SQLite file lives, relative to the working directory.
pub const DEFAULT_SQLITE_PATH: &str = "data/sse-progress.db";

/// A place jobs are kept. Calls block (a file, a socket): the engine makes them from its
/// writer thread, at start-up, and from `spawn_blocking`, never on the async runtime.
pub trait JobStore: Send + Sync + 'static {
    /// What it is, for logs and `/readyz`: `sqlite:data/sse-progress.db`, `memory`.
    fn describe(&self) -> String;
    /// Whether what it keeps outlives this process (then a graceful stop leaves resumable
    /// jobs to continue at the next start instead of ending them).
    fn outlives_process(&self) -> bool;
    /// Writes a batch in one transaction. Returns the jobs whose writes it refused (nothing of
    /// theirs was written, the rest of the batch was): a job it does not keep, events that do
    /// not follow the kept ones, and in a shared store a lease another instance took over.
    fn write(&self, batch: &Batch) -> Result<Vec<JobId>, StoreError>;
    /// Every kept job with its kept events (at start-up).
    fn load(&self) -> Result<Vec<LoadedJob>, StoreError>;
    /// The store's shared half, when several instances may use it at once.
    fn shared(self: Arc<Self>) -> Option<Arc<dyn shared::SharedStore>> {
        None
    }
    /// Whether the store answers (for `/readyz`).
    fn ping(&self) -> Result<(), StoreError>;
    /// Whether [`housekeeping`](Self::housekeeping) has work to do (cheap: asked after every
    /// batch).
    fn housekeeping_due(&self) -> bool {
        false
    }
    /// Upkeep the writer does between two batches, after publishing, so it delays no event
    /// already written (SQLite: let its WAL start over).
    fn housekeeping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// Opens the store `spec` names (the value of `SSE_PROGRESS_STORE`; `None` for the default):
/// `sqlite:PATH`, `sqlite://PATH`, `redis://HOST:PORT/DB` or `memory`.
pub fn open(spec: Option<&str>) -> Result<Arc<dyn JobStore>, StoreError> {
    let spec = spec.map(str::trim).filter(|s| !s.is_empty());
    match spec {
        None => Ok(Arc::new(sqlite::SqliteStore::open(DEFAULT_SQLITE_PATH)?)),
        Some("memory") => Ok(Arc::new(memory::MemoryStore::new())),
        Some(s) if s.starts_with("redis://") || s.starts_with("redis+unix://") => {
            Ok(Arc::new(redis::RedisStore::open(s)?))
        }
        Some(s) => match s.strip_prefix("sqlite:") {
            Some(path) => {
                let path = path.strip_prefix("//").unwrap_or(path);
                if path.is_empty() {
                    return Err(StoreError::UnknownScheme(s.to_string()));
                }
                Ok(Arc::new(sqlite::SqliteStore::open(path)?))
            }
            None => Err(StoreError::UnknownScheme(s.chars().take(200).collect())),
        },
    }
}
