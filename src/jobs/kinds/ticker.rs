//! `ticker`: only reports, N steps at a given interval, doing no other work. For pace demos
//! and for load benchmarks that run thousands of jobs at once.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use schemars::JsonSchema;

use super::check_range;
use crate::jobs::{JobError, JobParams, ProgressReporter, Report};

/// The kind's name.
pub const NAME: &str = "ticker";
/// What it does, for pickers and listings.
pub const DESCRIPTION: &str = "Reports N steps at a steady interval and does nothing else";

/// Params of `ticker`; every field is optional.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct TickerParams {
    /// How many steps (1-100000). Default 10.
    #[schemars(range(min = 1, max = 100000))]
    pub steps: u32,
    /// Time between steps, in milliseconds (0-600000). Default 500.
    #[schemars(range(min = 0, max = 600000))]
    pub interval_ms: u64,
    /// Also log a line per tick, for demos and tests of the job's log. Default false.
    pub log: bool,
}

impl Default for TickerParams {
    fn default() -> Self {
        Self { steps: 10, interval_ms: 500, log: false }
    }
}

impl JobParams for TickerParams {
    fn validate(&self) -> Result<(), String> {
        check_range("steps", self.steps, 1, 100_000)?;
        check_range("interval_ms", self.interval_ms, 0, 600_000)
    }
}

/// What a finished `ticker` job returns.
#[derive(Debug, Clone, Serialize)]
pub struct TickerResult {
    /// Steps reported.
    pub ticks: u32,
}

/// Runs a `ticker` job. Resumable: it saves the last tick it reported, and after a restart
/// goes on with the next one.
pub async fn run(p: TickerParams, r: ProgressReporter) -> Result<TickerResult, JobError> {
    let interval = Duration::from_millis(p.interval_ms);
    let done: u32 = r.resume_point().unwrap_or(0);
    for i in done.saturating_add(1)..=p.steps {
        r.sleep(interval).await?;
        r.report(
            Report::new()
                .step(i, p.steps, format!("Tick {i}"))
                .percent(100.0 * f64::from(i) / f64::from(p.steps))
                .message(format!("Tick {i} of {}", p.steps)),
        );
        if p.log {
            tracing::info!(tick = i, of = p.steps, "tick");
        }
        r.checkpoint(&i);
    }
    Ok(TickerResult { ticks: p.steps })
}
