//! `failing`: walks through named steps and fails at a chosen one with a meaningful error,
//! so error states can be demoed and tested.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use schemars::JsonSchema;

use super::check_range;
use crate::jobs::{JobError, JobParams, ProgressReporter};

/// The kind's name.
pub const NAME: &str = "failing";
/// What it does, for pickers and listings.
pub const DESCRIPTION: &str = "Imports records and fails validation at a chosen step";

const STEP_NAMES: [&str; 6] =
    ["Loading input", "Parsing records", "Validating", "Writing output", "Indexing", "Publishing"];
const TICKS_PER_STEP: u32 = 5;

/// Params of `failing`; every field is optional.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct FailingParams {
    /// How many steps the job has (1-6). Default 4.
    #[schemars(range(min = 1, max = 6))]
    pub steps: u32,
    /// The step it fails in (1-6; past `steps`, the last step). Default 3.
    #[schemars(range(min = 1, max = 6))]
    pub fail_at_step: u32,
    /// How long each step takes, in milliseconds (0-60000). Default 800.
    #[schemars(range(min = 0, max = 60000))]
    pub step_ms: u64,
}

impl Default for FailingParams {
    fn default() -> Self {
        Self { steps: 4, fail_at_step: 3, step_ms: 800 }
    }
}

impl JobParams for FailingParams {
    fn validate(&self) -> Result<(), String> {
        let max_steps = u32::try_from(STEP_NAMES.len()).unwrap_or(u32::MAX);
        check_range("steps", self.steps, 1, max_steps)?;
        check_range("fail_at_step", self.fail_at_step, 1, max_steps)?;
        check_range("step_ms", self.step_ms, 0, 60_000)
    }
}

/// Runs a `failing` job; it always ends in an error at `fail_at_step` (or its last step).
pub async fn run(p: FailingParams, r: ProgressReporter) -> Result<(), JobError> {
    let fail_at = p.fail_at_step.min(p.steps);
    let tick = Duration::from_millis(p.step_ms / u64::from(TICKS_PER_STEP));
    let records = 2_400u32;
    for (index, name) in (1..=p.steps).zip(STEP_NAMES) {
        r.step(index, p.steps, name);
        tracing::info!(step = index, "{name} started");
        for t in 1..=TICKS_PER_STEP {
            let done = f64::from(index - 1) + f64::from(t) / f64::from(TICKS_PER_STEP);
            let record = records * t / TICKS_PER_STEP;
            if index == fail_at && t == TICKS_PER_STEP / 2 {
                tracing::warn!(record, "amount looks unusual");
            }
            if index == fail_at && t == TICKS_PER_STEP / 2 + 1 {
                tracing::error!(record, field = "amount", value = -12.5, "record rejected");
                return Err(JobError::msg(format!(
                    "{name} failed at record {record} of {records}: field \"amount\" is -12.50, \
                     but amounts must be zero or more"
                )));
            }
            r.progress(100.0 * done / f64::from(p.steps), format!("{name}: record {record} of {records}"));
            r.sleep(tick).await?;
        }
    }
    Err(JobError::msg("the job ended without reaching its failing step"))
}
