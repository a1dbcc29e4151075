//! Server settings read from the environment, with clear errors for values that do not parse.

use std::time::Duration;

use crate::jobs::EngineConfig;

/// A setting that is present but not usable.
#[derive(Debug, thiserror::Error)]
#[error("environment variable {name}={value:?} is not valid: {expected}")]
pub struct ConfigError {
    name: &'static str,
    value: String,
    expected: &'static str,
}

fn read<T: std::str::FromStr>(
    name: &'static str,
    expected: &'static str,
    valid: impl Fn(&T) -> bool,
) -> Result<Option<T>, ConfigError> {
    match std::env::var(name) {
        Err(_) => Ok(None),
        Ok(value) => match value.trim().parse::<T>() {
            Ok(v) if valid(&v) => Ok(Some(v)),
            _ => Err(ConfigError { name, value, expected }),
        },
    }
}

/// The engine's limits: [`EngineConfig::default`] with these overrides from the environment:
/// - `SSE_PROGRESS_REPLAY_CAPACITY`: events kept per job for replay (1-100000).
/// - `SSE_PROGRESS_RETENTION_SECS`: how long ended jobs are kept, in seconds (1-604800).
/// - `SSE_PROGRESS_MAX_JOBS`: most jobs kept at once (1-10000000).
/// - `SSE_PROGRESS_MAX_RUNNING`: most jobs running at once (1-100000).
/// - `SSE_PROGRESS_MAX_QUEUED`: most jobs waiting for a slot (0-1000000).
/// - `SSE_PROGRESS_MAX_ACTIVE_PER_OWNER`: most unfinished jobs per owner (1-100000).
/// - `SSE_PROGRESS_MAX_LOG_LINES`: log lines a job may write (0-1000000).
/// - `SSE_PROGRESS_MAX_LOG_BYTES`: bytes of log lines a job may write (0-1 GiB).
pub fn engine_config_from_env() -> Result<EngineConfig, ConfigError> {
    let mut config = EngineConfig::default();
    if let Some(n) = read::<usize>(
        "SSE_PROGRESS_REPLAY_CAPACITY",
        "a whole number from 1 to 100000",
        |n| (1..=100_000).contains(n),
    )? {
        config.replay_capacity = n;
    }
    if let Some(secs) = read::<u64>(
        "SSE_PROGRESS_RETENTION_SECS",
        "a whole number of seconds from 1 to 604800",
        |n| (1..=604_800).contains(n),
    )? {
        config.retention = Duration::from_secs(secs);
    }
    if let Some(n) = read::<usize>(
        "SSE_PROGRESS_MAX_JOBS",
        "a whole number from 1 to 10000000",
        |n| (1..=10_000_000).contains(n),
    )? {
        config.max_jobs = n;
    }
    if let Some(n) = read::<usize>(
        "SSE_PROGRESS_MAX_RUNNING",
        "a whole number from 1 to 100000",
        |n| (1..=100_000).contains(n),
    )? {
        config.max_running = n;
    }
    if let Some(n) = read::<usize>(
        "SSE_PROGRESS_MAX_QUEUED",
        "a whole number from 0 to 1000000",
        |n| *n <= 1_000_000,
    )? {
        config.max_queued = n;
    }
    if let Some(n) = read::<usize>(
        "SSE_PROGRESS_MAX_ACTIVE_PER_OWNER",
        "a whole number from 1 to 100000",
        |n| (1..=100_000).contains(n),
    )? {
        config.max_active_per_owner = n;
    }
    if let Some(n) = read::<usize>(
        "SSE_PROGRESS_MAX_LOG_LINES",
        "a whole number from 0 to 1000000",
        |n| *n <= 1_000_000,
    )? {
        config.max_log_lines = n;
    }
    if let Some(n) = read::<usize>(
        "SSE_PROGRESS_MAX_LOG_BYTES",
        "a whole number of bytes from 0 to 1073741824",
        |n| *n <= 1 << 30,
    )? {
        config.max_log_bytes = n;
    }
    Ok(config)
}
