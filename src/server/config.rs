//! The server's settings: flags of `sse-progress serve`, each also read from an environment
//! variable, checked by clap against the range it allows. A value that is not allowed stops
//! the server at start-up with a message that names the variable (or flag) that was set, the
//! value, and what is allowed.

use std::ffi::OsString;
use std::num::NonZeroU32;
use std::time::Duration;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{Args, CommandFactory, FromArgMatches};
use ipnet::IpNet;

use super::limits::{parse_networks, LimitsConfig, DEFAULT_EXEMPT};
use crate::jobs::EngineConfig;

/// How `serve` is set up. A setting left out has the default of [`EngineConfig`] or
/// [`LimitsConfig`].
#[derive(Debug, Clone, Args)]
pub struct ServeSettings {
    /// Where jobs are kept: sqlite:PATH, redis://HOST:PORT/DB or memory [default: sqlite:data/sse-progress.db]
    #[arg(long, env = "SSE_PROGRESS_STORE", value_name = "STORE", hide_env_values = true)]
    pub store: Option<String>,
    /// Events (state changes and log lines) kept per job for replay (1-100000).
    #[arg(long, env = "SSE_PROGRESS_REPLAY_CAPACITY", value_name = "N", value_parser = whole::<1, 100_000>, default_value_t = EngineConfig::default().replay_capacity as u64)]
    pub replay_capacity: u64,
    /// Bytes a job's replay events may hold, about (4096-1073741824).
    #[arg(long, env = "SSE_PROGRESS_REPLAY_BYTES", value_name = "BYTES", value_parser = whole::<4096, { 1 << 30 }>, default_value_t = EngineConfig::default().replay_bytes as u64)]
    pub replay_bytes: u64,
    /// How long an ended job is kept, in seconds (1-604800).
    #[arg(long, env = "SSE_PROGRESS_RETENTION_SECS", value_name = "SECS", value_parser = whole::<1, 604_800>, default_value_t = EngineConfig::default().retention.as_secs())]
    pub retention_secs: u64,
    /// Most jobs kept at once (1-10000000).
    #[arg(long, env = "SSE_PROGRESS_MAX_JOBS", value_name = "N", value_parser = whole::<1, 10_000_000>, default_value_t = EngineConfig::default().max_jobs as u64)]
    pub max_jobs: u64,
    /// Most jobs running at once (1-100000).
    #[arg(long, env = "SSE_PROGRESS_MAX_RUNNING", value_name = "N", value_parser = whole::<1, 100_000>, default_value_t = EngineConfig::default().max_running as u64)]
    pub max_running: u64,
    /// Most jobs waiting for a slot (0-1000000).
    #[arg(long, env = "SSE_PROGRESS_MAX_QUEUED", value_name = "N", value_parser = whole::<0, 1_000_000>, default_value_t = EngineConfig::default().max_queued as u64)]
    pub max_queued: u64,
    /// Most jobs one owner may have pending or running (1-100000).
    #[arg(long, env = "SSE_PROGRESS_MAX_ACTIVE_PER_OWNER", value_name = "N", value_parser = whole::<1, 100_000>, default_value_t = EngineConfig::default().max_active_per_owner as u64)]
    pub max_active_per_owner: u64,
    /// Log lines one job may write (0-1000000).
    #[arg(long, env = "SSE_PROGRESS_MAX_LOG_LINES", value_name = "N", value_parser = whole::<0, 1_000_000>, default_value_t = EngineConfig::default().max_log_lines as u64)]
    pub max_log_lines: u64,
    /// Bytes of log lines one job may write (0-1073741824).
    #[arg(long, env = "SSE_PROGRESS_MAX_LOG_BYTES", value_name = "BYTES", value_parser = whole::<0, { 1 << 30 }>, default_value_t = EngineConfig::default().max_log_bytes as u64)]
    pub max_log_bytes: u64,
    /// With a shared store, how long a running job's lease lasts without renewal, in ms (1000-600000).
    #[arg(long, env = "SSE_PROGRESS_LEASE_MS", value_name = "MS", value_parser = whole::<1_000, 600_000>, default_value_t = EngineConfig::default().lease.as_millis() as u64)]
    pub lease_ms: u64,
    /// With a shared store, this instance's name (1-100 characters from A-Z a-z 0-9 . _ -).
    #[arg(long, env = "SSE_PROGRESS_INSTANCE", value_name = "NAME", value_parser = instance_name)]
    pub instance: Option<String>,
    /// Jobs one client address may start per minute, on average (1-1000000).
    #[arg(long, env = "SSE_PROGRESS_STARTS_PER_MINUTE", value_name = "N", value_parser = whole::<1, 1_000_000>, default_value_t = u64::from(LimitsConfig::default().starts_per_minute.get()))]
    pub starts_per_minute: u64,
    /// Of those, how many at once after a pause (1-1000000).
    #[arg(long, env = "SSE_PROGRESS_START_BURST", value_name = "N", value_parser = whole::<1, 1_000_000>, default_value_t = u64::from(LimitsConfig::default().start_burst.get()))]
    pub start_burst: u64,
    /// Event streams one client address may hold open (1-1000000).
    #[arg(long, env = "SSE_PROGRESS_STREAMS_PER_ADDRESS", value_name = "N", value_parser = whole::<1, 1_000_000>, default_value_t = LimitsConfig::default().streams_per_address as u64)]
    pub streams_per_address: u64,
    /// Event streams one owner may hold open (1-1000000).
    #[arg(long, env = "SSE_PROGRESS_STREAMS_PER_OWNER", value_name = "N", value_parser = whole::<1, 1_000_000>, default_value_t = LimitsConfig::default().streams_per_owner as u64)]
    pub streams_per_owner: u64,
    /// Comma-separated addresses or networks of reverse proxies whose X-Forwarded-For names the client [default: none]
    #[arg(long, env = "SSE_PROGRESS_TRUSTED_PROXIES", value_name = "NETWORKS", value_parser = networks)]
    pub trusted_proxies: Option<Networks>,
    /// Comma-separated addresses or networks that are not limited; empty for none.
    #[arg(long, env = "SSE_PROGRESS_LIMIT_EXEMPT", value_name = "NETWORKS", value_parser = networks, default_value = DEFAULT_EXEMPT)]
    pub limit_exempt: Networks,
}

/// A list of addresses and networks, as one setting (clap would take a `Vec` for a list of
/// occurrences).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Networks(pub Vec<IpNet>);

/// A whole number from `MIN` to `MAX`. (clap's own ranged parser says "0 is not in
/// 1..=10000000"; this says it in words, and is the same for every setting.)
fn whole<const MIN: u64, const MAX: u64>(value: &str) -> Result<u64, String> {
    match value.trim().parse::<u64>() {
        Ok(v) if (MIN..=MAX).contains(&v) => Ok(v),
        _ => Err(format!("a whole number from {MIN} to {MAX}")),
    }
}

fn networks(value: &str) -> Result<Networks, String> {
    parse_networks(value).map(Networks)
}

/// An instance's name as given, if it is 1-100 characters from `A-Z a-z 0-9 . _ -` (it is
/// written into Redis and `/metrics` labels).
fn instance_name(value: &str) -> Result<String, String> {
    let fits = (1..=100).contains(&value.len())
        && value.chars().all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '.' | '_' | '-'));
    if fits {
        Ok(value.to_string())
    } else {
        Err("1 to 100 characters from A-Z a-z 0-9 . _ -".to_string())
    }
}

/// `u64` to `usize`, saturating (a 32-bit target cannot hold more anyway).
fn size(v: u64) -> usize {
    usize::try_from(v).unwrap_or(usize::MAX)
}

fn positive(v: u64) -> NonZeroU32 {
    NonZeroU32::new(u32::try_from(v).unwrap_or(u32::MAX)).unwrap_or(NonZeroU32::MIN)
}

/// The settings when no flag is given: from the environment alone.
#[derive(Debug, clap::Parser)]
#[command(name = "sse-progress")]
struct FromEnvironment {
    #[command(flatten)]
    settings: ServeSettings,
}

impl ServeSettings {
    /// The settings the environment gives (what `sse-progress` without `serve` runs with).
    pub fn from_env() -> Result<Self, clap::Error> {
        let matches = FromEnvironment::command().try_get_matches_from(["sse-progress"])?;
        Ok(FromEnvironment::from_arg_matches(&matches)?.settings)
    }

    /// The engine's limits as set.
    pub fn engine_config(&self) -> EngineConfig {
        EngineConfig {
            replay_capacity: size(self.replay_capacity),
            replay_bytes: size(self.replay_bytes),
            retention: Duration::from_secs(self.retention_secs),
            max_jobs: size(self.max_jobs),
            max_running: size(self.max_running),
            max_queued: size(self.max_queued),
            max_active_per_owner: size(self.max_active_per_owner),
            max_log_lines: size(self.max_log_lines),
            max_log_bytes: size(self.max_log_bytes),
            lease: Duration::from_millis(self.lease_ms),
            instance: self.instance.clone(),
            ..EngineConfig::default()
        }
    }

    /// What one client may do at once, as set (see `server::limits`).
    pub fn limits_config(&self) -> LimitsConfig {
        LimitsConfig {
            starts_per_minute: positive(self.starts_per_minute),
            start_burst: positive(self.start_burst),
            streams_per_address: size(self.streams_per_address),
            streams_per_owner: size(self.streams_per_owner),
            trusted_proxies: self.trusted_proxies.clone().map(|n| n.0).unwrap_or_default(),
            exempt: self.limit_exempt.0.clone(),
        }
    }
}

/// clap's message for a value it refused, unless the value came from the environment: clap
/// names the flag (`--max-jobs <N>`) even then, and a person who set `SSE_PROGRESS_MAX_JOBS`
/// and never typed a flag would not know what to change. Then this names the variable:
/// `environment variable SSE_PROGRESS_MAX_JOBS="0" is not valid: a whole number from 1 to
/// 10000000`. clap has no hook for this, so it is done from the error's context.
pub fn explain(error: &clap::Error, command: &clap::Command, args: &[OsString]) -> Option<String> {
    if error.kind() != ErrorKind::ValueValidation {
        return None;
    }
    let text = |kind| match error.get(kind) {
        Some(ContextValue::String(s)) => Some(s.as_str()),
        _ => None,
    };
    let (flag, value) = (text(ContextKind::InvalidArg)?, text(ContextKind::InvalidValue)?);
    let arg = std::iter::once(command)
        .chain(command.get_subcommands())
        .flat_map(clap::Command::get_arguments)
        .find(|a| a.get_long().is_some_and(|long| flag.split(' ').next() == Some(&format!("--{long}"))))?;
    let long = format!("--{}", arg.get_long()?);
    let typed = args.iter().filter_map(|a| a.to_str()).any(|a| a == long || a.starts_with(&format!("{long}=")));
    let name = arg.get_env()?.to_str()?;
    if typed || std::env::var_os(name).is_none() {
        return None;
    }
    let expected = std::error::Error::source(error).map(ToString::to_string).unwrap_or_default();
    Some(format!("environment variable {name}={value:?} is not valid: {expected}"))
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
        assert_eq!(instance_name("web-1.eu_west").expect("fits"), "web-1.eu_west");
        assert_eq!(
            instance_name("web 1\"}").expect_err("a space and a quote"),
            "1 to 100 characters from A-Z a-z 0-9 . _ -"
        );
        assert!(instance_name("").is_err());
        assert!(instance_name(&"x".repeat(101)).is_err());
    }

    #[test]
    fn numbers_are_whole_and_in_range() {
        assert_eq!(whole::<1, 10>(" 10 "), Ok(10));
        for bad in ["0", "11", "-1", "1.5", "", "ten"] {
            assert_eq!(whole::<1, 10>(bad), Err("a whole number from 1 to 10".to_string()), "{bad:?}");
        }
    }

    #[test]
    fn flags_reach_the_engine_and_the_limits() {
        let matches = FromEnvironment::command()
            .try_get_matches_from(["sse-progress", "--max-running", "3", "--limit-exempt", "", "--lease-ms", "2000"])
            .expect("valid flags");
        let settings = FromEnvironment::from_arg_matches(&matches).expect("settings").settings;
        assert_eq!(settings.engine_config().max_running, 3);
        assert_eq!(settings.engine_config().lease, Duration::from_millis(2000));
        assert_eq!(settings.engine_config().max_jobs, EngineConfig::default().max_jobs, "the rest keep their defaults");
        assert!(settings.limits_config().exempt.is_empty(), "an empty list limits every client");
        assert_eq!(settings.limits_config().streams_per_owner, LimitsConfig::default().streams_per_owner);
    }

    #[test]
    fn a_bad_flag_is_left_to_clap_which_names_the_flag() {
        let command = FromEnvironment::command();
        let args: Vec<OsString> = ["sse-progress", "--max-jobs", "0"].map(OsString::from).into();
        let error = command.clone().try_get_matches_from(&args).expect_err("out of range");
        assert_eq!(explain(&error, &command, &args), None);
        let message = error.to_string();
        assert!(
            message.contains("--max-jobs <N>") && message.contains("a whole number from 1 to 10000000"),
            "{message}"
        );
    }
}
