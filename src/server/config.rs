//! Server settings read from the environment, with clear errors for values that do not parse.

use std::time::Duration;

use std::num::NonZeroU32;

use super::limits::{parse_networks, LimitsConfig};
use crate::jobs::EngineConfig;

/// A setting that is present but not usable.
#[derive(Debug, thiserror::Error)]
#[error("environment variable {name}={value:?} is not valid: {expected}")]
pub struct ConfigError {
    name: &'static str,
    value: String,
    expected: String,
}

/// Reads `name` as a whole number from `min` to `max`, if it is set.
fn read(name: &'static str, min: u64, max: u64) -> Result<Option<u64>, ConfigError> {
    match std::env::var(name) {
        Err(_) => Ok(None),
        Ok(value) => match value.trim().parse::<u64>() {
            Ok(v) if (min..=max).contains(&v) => Ok(Some(v)),
            _ => Err(ConfigError { name, value, expected: format!("a whole number from {min} to {max}") }),
        },
    }
}

/// Sets `target` from `name` when it is set and valid.
fn set(target: &mut usize, name: &'static str, min: u64, max: u64) -> Result<(), ConfigError> {
    if let Some(v) = read(name, min, max)? {
        *target = usize::try_from(v).unwrap_or(usize::MAX);
    }
    Ok(())
}

/// The engine's limits: [`EngineConfig::default`] with these overrides from the environment:
/// - `SSE_PROGRESS_REPLAY_CAPACITY`: events kept per job for replay (1-100000).
/// - `SSE_PROGRESS_REPLAY_BYTES`: bytes those events may hold, about (4096-1073741824).
/// - `SSE_PROGRESS_RETENTION_SECS`: how long ended jobs are kept, in seconds (1-604800).
/// - `SSE_PROGRESS_MAX_JOBS`: most jobs kept at once (1-10000000).
/// - `SSE_PROGRESS_MAX_RUNNING`: most jobs running at once (1-100000).
/// - `SSE_PROGRESS_MAX_QUEUED`: most jobs waiting for a slot (0-1000000).
/// - `SSE_PROGRESS_MAX_ACTIVE_PER_OWNER`: most unfinished jobs per owner (1-100000).
/// - `SSE_PROGRESS_MAX_LOG_LINES`: log lines a job may write (0-1000000).
/// - `SSE_PROGRESS_MAX_LOG_BYTES`: bytes of log lines a job may write (0-1073741824).
/// - `SSE_PROGRESS_LEASE_MS`: with a shared store, how long a running job's lease lasts
///   without renewal, in ms (1000-600000).
/// - `SSE_PROGRESS_INSTANCE`: with a shared store, this instance's name (1-100 characters
///   from `A-Z a-z 0-9 . _ -`).
pub fn engine_config_from_env() -> Result<EngineConfig, ConfigError> {
    let mut c = EngineConfig::default();
    set(&mut c.replay_capacity, "SSE_PROGRESS_REPLAY_CAPACITY", 1, 100_000)?;
    set(&mut c.replay_bytes, "SSE_PROGRESS_REPLAY_BYTES", 4096, 1 << 30)?;
    if let Some(secs) = read("SSE_PROGRESS_RETENTION_SECS", 1, 604_800)? {
        c.retention = Duration::from_secs(secs);
    }
    set(&mut c.max_jobs, "SSE_PROGRESS_MAX_JOBS", 1, 10_000_000)?;
    set(&mut c.max_running, "SSE_PROGRESS_MAX_RUNNING", 1, 100_000)?;
    set(&mut c.max_queued, "SSE_PROGRESS_MAX_QUEUED", 0, 1_000_000)?;
    set(&mut c.max_active_per_owner, "SSE_PROGRESS_MAX_ACTIVE_PER_OWNER", 1, 100_000)?;
    set(&mut c.max_log_lines, "SSE_PROGRESS_MAX_LOG_LINES", 0, 1_000_000)?;
    set(&mut c.max_log_bytes, "SSE_PROGRESS_MAX_LOG_BYTES", 0, 1 << 30)?;
    if let Some(ms) = read("SSE_PROGRESS_LEASE_MS", 1_000, 600_000)? {
        c.lease = Duration::from_millis(ms);
    }
    if let Ok(value) = std::env::var("SSE_PROGRESS_INSTANCE") {
        c.instance = Some(instance_name(value)?);
    }
    Ok(c)
}

/// What one client may do at once: [`LimitsConfig::default`] with these overrides from the
/// environment (see `server::limits`):
/// - `SSE_PROGRESS_STARTS_PER_MINUTE`: jobs one client address may start per minute (1-1000000).
/// - `SSE_PROGRESS_START_BURST`: of those, how many at once after a pause (1-1000000).
/// - `SSE_PROGRESS_STREAMS_PER_ADDRESS`: event streams one client address may hold open
///   (1-1000000).
/// - `SSE_PROGRESS_STREAMS_PER_OWNER`: event streams one owner may hold open (1-1000000).
/// - `SSE_PROGRESS_TRUSTED_PROXIES`: comma-separated addresses or networks of reverse proxies
///   whose `X-Forwarded-For` names the client (none by default).
/// - `SSE_PROGRESS_LIMIT_EXEMPT`: comma-separated addresses or networks that are not limited
///   (`127.0.0.0/8, ::1` by default; empty to limit every client).
pub fn limits_config_from_env() -> Result<LimitsConfig, ConfigError> {
    let mut c = LimitsConfig::default();
    let positive = |name, target: &mut NonZeroU32| -> Result<(), ConfigError> {
        if let Some(v) = read(name, 1, 1_000_000)? {
            *target = NonZeroU32::new(u32::try_from(v).unwrap_or(u32::MAX)).unwrap_or(NonZeroU32::MIN);
        }
        Ok(())
    };
    positive("SSE_PROGRESS_STARTS_PER_MINUTE", &mut c.starts_per_minute)?;
    positive("SSE_PROGRESS_START_BURST", &mut c.start_burst)?;
    set(&mut c.streams_per_address, "SSE_PROGRESS_STREAMS_PER_ADDRESS", 1, 1_000_000)?;
    set(&mut c.streams_per_owner, "SSE_PROGRESS_STREAMS_PER_OWNER", 1, 1_000_000)?;
    for (name, target) in
        [("SSE_PROGRESS_TRUSTED_PROXIES", &mut c.trusted_proxies), ("SSE_PROGRESS_LIMIT_EXEMPT", &mut c.exempt)]
    {
        if let Ok(value) = std::env::var(name) {
            *target = parse_networks(&value).map_err(|expected| ConfigError { name, value, expected })?;
        }
    }
    Ok(c)
}

/// An instance's name as given, if it is 1-100 characters from `A-Z a-z 0-9 . _ -` (it is
/// written into Redis and `/metrics` labels).
fn instance_name(value: String) -> Result<String, ConfigError> {
    let fits = (1..=100).contains(&value.len())
        && value.chars().all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '.' | '_' | '-'));
    if fits {
        return Ok(value);
    }
    let expected = "1 to 100 characters from A-Z a-z 0-9 . _ -".to_string();
    Err(ConfigError { name: "SSE_PROGRESS_INSTANCE", value, expected })
}

/// Whether pages name the wasm, JS and CSS after their content (`sse-progress.<hash>.wasm`).
/// `LEPTOS_HASH_FILES` says so when set (cargo-leptos sets it); otherwise yes when the build left
/// its list of names beside the binary (`hash.txt`, written by a build with `hash-files`), so
/// the release binary run by hand serves the files its build made.
pub fn hash_files(options: &leptos::config::LeptosOptions) -> bool {
    if std::env::var_os("LEPTOS_HASH_FILES").is_some() {
        return options.hash_files;
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join(options.hash_file.as_ref())))
        .is_some_and(|list| list.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_instance_name_that_cannot_label_metrics_is_refused_with_what_is_allowed() {
        assert_eq!(instance_name("web-1.eu_west".into()).expect("fits"), "web-1.eu_west");
        let err = instance_name("web 1\"}".into()).expect_err("a space and a quote");
        assert_eq!(
            err.to_string(),
            "environment variable SSE_PROGRESS_INSTANCE=\"web 1\\\"}\" is not valid: 1 to 100 characters from A-Z a-z 0-9 . _ -"
        );
        assert!(instance_name(String::new()).is_err());
        assert!(instance_name("x".repeat(101)).is_err());
    }
}
