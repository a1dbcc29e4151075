//! How much the engine remembers and for how long: the knobs that bound its memory.

use std::time::Duration;

/// Limits of a [`JobEngine`](super::JobEngine). Every field has a documented default.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Events kept per job for replay to late or reconnecting subscribers. A subscriber that
    /// asks for events older than this gets one `reset` snapshot instead. Default: 1 024.
    pub replay_capacity: usize,
    /// Bytes the events kept per job for replay may hold, about (what the engine has of them
    /// and their JSON); the oldest go first past it, and the newest is always kept. Default:
    /// 512 KiB.
    pub replay_bytes: usize,
    /// How long a job is kept after it ended, for pages, reconnects and late viewers.
    /// Default: 10 minutes.
    pub retention: Duration,
    /// Most jobs kept at once, running and ended. When full, the oldest ended job is
    /// forgotten early; when every kept job is still running, new jobs are refused.
    /// Default: 10 000.
    pub max_jobs: usize,
    /// How often ended jobs past their retention are swept away. Default: 30 seconds.
    pub sweep_interval: Duration,
    /// Log lines a job may write over its life; later lines are dropped and counted (the
    /// count is in the job's state as `logs_dropped`). Default: 1 000.
    pub max_log_lines: usize,
    /// Bytes of log messages and fields a job may write over its life; past it, as above.
    /// Default: 256 KiB.
    pub max_log_bytes: usize,
    /// Most jobs one owner may have pending or running at once. Default: 16.
    pub max_active_per_owner: usize,
    /// Most jobs running at once. Further jobs wait in a queue, `pending`, with their position.
    /// Default: 64.
    pub max_running: usize,
    /// Most jobs waiting in the queue. Past it, new jobs are refused until a place frees up.
    /// Default: 1 000.
    pub max_queued: usize,
    /// How long a job may keep running after it was told to stop before it is aborted.
    /// Default: 5 seconds.
    pub cancel_grace: Duration,
    /// With a store several instances share: how long a running job's lease lasts without
    /// renewal (renewed five times as often). An instance that dies is noticed this long after
    /// its last renewal, and its jobs are taken over. Default: 10 seconds.
    pub lease: Duration,
    /// With a store several instances share: this instance's name in leases and logs. Default:
    /// the host name, the process id and a random suffix (unique per process).
    pub instance: Option<String>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            replay_capacity: 1024,
            replay_bytes: 512 * 1024,
            retention: Duration::from_secs(600),
            max_jobs: 10_000,
            sweep_interval: Duration::from_secs(30),
            max_log_lines: 1_000,
            max_log_bytes: 256 * 1024,
            max_active_per_owner: 16,
            max_running: 64,
            max_queued: 1_000,
            cancel_grace: Duration::from_secs(5),
            lease: Duration::from_secs(10),
            instance: None,
        }
    }
}
