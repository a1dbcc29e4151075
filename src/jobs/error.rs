//! The engine's errors: why a job could not start, and how a job's own code ends badly.

use std::fmt;

/// Why [`JobEngine::start`](super::JobEngine::start) refused a job. Every message says what
/// was wrong and what is allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StartError {
    /// No kind of that name is registered.
    #[error("unknown job kind {kind:?}; the known kinds are: {}", known.join(", "))]
    UnknownKind {
        /// The name asked for.
        kind: String,
        /// The names that exist.
        known: Vec<String>,
    },
    /// The params do not fit the kind.
    #[error("invalid params for job kind {kind:?}: {reason}")]
    InvalidParams {
        /// The kind they were meant for.
        kind: String,
        /// Which field and why.
        reason: String,
    },
    /// The engine keeps as many jobs as it may and all of them are still running.
    #[error("the server is running its maximum of {limit} jobs; try again when one has ended")]
    AtCapacity {
        /// The configured maximum.
        limit: usize,
    },
    /// As many jobs as allowed are running and the queue for more is full.
    #[error(
        "too many jobs: {running} are running and the queue of {queued} waiting jobs is full; \
         try again later"
    )]
    QueueFull {
        /// Jobs running (the configured maximum).
        running: usize,
        /// Jobs waiting (the configured maximum).
        queued: usize,
    },
    /// The owner already has as many unfinished jobs as one owner may.
    #[error(
        "you already have {limit} jobs pending or running, the most one person may; \
         wait for one to end or cancel one"
    )]
    OwnerLimit {
        /// The configured maximum.
        limit: usize,
    },
    /// The store did not keep the job in time (a full disk, a store that went away); nothing
    /// was started.
    #[error("the job store is not keeping new jobs right now ({reason}); nothing was started, try again shortly")]
    StoreUnavailable {
        /// What the store said.
        reason: String,
    },
    /// The server is shutting down and starts nothing new.
    #[error("the server is shutting down and starts no new jobs")]
    ShuttingDown,
}

/// How a job's code ends without a result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobError {
    /// The job failed; the message is shown to its viewers as the job's error.
    Failed(String),
    /// The job noticed it was asked to stop and stopped.
    Cancelled,
}

impl JobError {
    /// A failure with a message meant for the person watching the job.
    pub fn msg(message: impl fmt::Display) -> Self {
        Self::Failed(message.to_string())
    }
}

impl fmt::Display for JobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Failed(message) => f.write_str(message),
            Self::Cancelled => f.write_str("cancelled"),
        }
    }
}

impl std::error::Error for JobError {}
