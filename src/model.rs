//! Types shared by the server and the browser: what a job is called, what state it is in, and
//! the one JSON schema of that state that every view (SSE `data:`, page render, server
//! functions) uses.
//!
//! Nothing here depends on a feature flag: the same structs are serialised on the server and
//! deserialised in the browser, so the two sides cannot drift apart.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A job's identity: a random UUID v4 (122 random bits), so ids cannot be guessed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(transparent)]
pub struct JobId(uuid::Uuid);

impl JobId {
    /// A fresh random id (server only: the browser never makes ids).
    #[cfg(feature = "ssr")]
    pub fn new_random() -> Self {
        Self(uuid::Uuid::new_v4())
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

/// Why a string is not a job id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a job id: a job id is a UUID such as 67e55044-10b1-426f-9247-bb680e5fe0c8")]
pub struct InvalidJobId(pub String);

impl FromStr for JobId {
    type Err = InvalidJobId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        uuid::Uuid::try_parse(s).map(Self).map_err(|_| InvalidJobId(s.chars().take(64).collect()))
    }
}

/// Where a job is in its life. `Completed`, `Failed`, `Cancelled` and `Interrupted` are terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    /// Accepted, not started yet.
    Pending,
    /// Its code is running.
    Running,
    /// Ended with a result (in [`Snapshot::data`]).
    Completed,
    /// Ended with an error (in [`Snapshot::error`]).
    Failed,
    /// Stopped on request before it ended by itself.
    Cancelled,
    /// Cut short because the server stopped (or died) while it ran and its kind cannot
    /// continue from a checkpoint; [`Snapshot::error`] says so. Start it again to redo it.
    Interrupted,
}

impl JobStatus {
    /// Whether nothing more will happen to the job.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Cancelled | Self::Interrupted)
    }

    /// The lower-case name used on the wire and in the UI.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
            Self::Interrupted => "interrupted",
        }
    }
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A job's whole visible state after its event number `seq`.
///
/// Every event on a job's stream carries one of these as its `data:`, so a client that sees
/// any single event knows everything; `seq` tells it which events it has already applied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct Snapshot {
    /// The job this is the state of.
    pub id: JobId,
    /// The job kind's name, e.g. `"checksum"`.
    pub kind: String,
    /// The job's own sequence number of the event that produced this state (1, 2, 3 ...).
    pub seq: u64,
    /// Where the job is in its life.
    pub status: JobStatus,
    /// Percent done, 0 to 100.
    pub progress: f64,
    /// The current step's name, empty before the first step.
    pub step: String,
    /// The current step's 1-based number, 0 before the first step.
    pub step_index: u32,
    /// How many steps the job has, 0 when not known yet.
    pub step_count: u32,
    /// The latest human-readable message.
    pub message: String,
    /// Server time this state was produced, in milliseconds since the Unix epoch.
    pub ts: u64,
    /// Server time the job was accepted, in milliseconds since the Unix epoch.
    #[serde(default)]
    pub created: u64,
    /// The names of all the job's steps, when it announced them (for steppers).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub plan: Vec<String>,
    /// Whether the job cannot yet say how far along it is (its total is not known yet);
    /// `progress` means nothing while this is true.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub indeterminate: bool,
    /// Units of work done so far and in all, when the job counts them (for rates and ETAs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub work: Option<WorkCount>,
    /// Log lines the job's code wrote past its log bounds, which nobody will see.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub logs_dropped: u64,
    /// While the job waits in the queue: its place in it, 1 being next to start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_position: Option<u32>,
    /// The job's result once it completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "ssr", schema(value_type = Option<Object>))]
    pub data: Option<Value>,
    /// The job's error message once it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Snapshot {
    /// The state of a job that was just accepted.
    pub fn pending(id: JobId, kind: impl Into<String>, ts: u64) -> Self {
        Self {
            id,
            kind: kind.into(),
            seq: 1,
            status: JobStatus::Pending,
            progress: 0.0,
            step: String::new(),
            step_index: 0,
            step_count: 0,
            message: "Waiting to start".into(),
            ts,
            created: ts,
            plan: Vec::new(),
            indeterminate: false,
            work: None,
            logs_dropped: 0,
            queue_position: None,
            data: None,
            error: None,
        }
    }

    /// The SSE event name for the event that produced this state.
    ///
    /// Never `error`: a browser cannot tell that apart from the `EventSource`'s own
    /// connection error event.
    pub fn event_name(&self) -> &'static str {
        match self.status {
            JobStatus::Pending => "pending",
            JobStatus::Running => "progress",
            JobStatus::Completed => "completed",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
            JobStatus::Interrupted => "interrupted",
        }
    }

    /// "Step 2 of 4: Processing"; `None` before the first step.
    pub fn step_label(&self) -> Option<String> {
        step_label(self.step_index, self.step_count, &self.step)
    }

    /// Whether the job is running without knowing how far along it is (its total is not known
    /// yet): bars show an indeterminate band and no value then.
    pub fn measuring(&self) -> bool {
        self.indeterminate && self.status == JobStatus::Running
    }

    /// Progress rounded to a whole percent, clamped to 0-100, for `aria-valuenow`.
    pub fn percent(&self) -> u8 {
        percent(self.progress)
    }
}

/// Units of work a job has done, of how many.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct WorkCount {
    /// Done so far.
    pub done: u64,
    /// In all; `None` while not known.
    pub total: Option<u64>,
    /// What is counted: `"bytes"`, `"files"` ...
    pub unit: String,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// How serious a log line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// Something went wrong.
    Error,
    /// Something may be wrong.
    Warn,
    /// What the job is doing.
    Info,
    /// Detail for developers.
    Debug,
    /// Finer detail.
    Trace,
}

impl LogLevel {
    /// The lower-case name used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Error => "error",
            Self::Warn => "warn",
            Self::Info => "info",
            Self::Debug => "debug",
            Self::Trace => "trace",
        }
    }
}

/// A line the job's own code logged (with `tracing`), as its viewers see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct LogLine {
    /// The job's sequence number of this event.
    pub seq: u64,
    /// When it was logged, in milliseconds since the Unix epoch.
    pub ts: u64,
    /// How serious it is.
    pub level: LogLevel,
    /// Where in the code it came from (the module path).
    pub target: String,
    /// The message.
    pub message: String,
    /// The other fields of the event, by name.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    #[cfg_attr(feature = "ssr", schema(value_type = Object))]
    pub fields: serde_json::Map<String, Value>,
}

/// "Step 2 of 4: Processing", "Step 2: Processing" when the count is unknown, or `None`
/// before the first step.
pub fn step_label(index: u32, count: u32, name: &str) -> Option<String> {
    if index == 0 {
        return None;
    }
    let mut label = if count > 0 { format!("Step {index} of {count}") } else { format!("Step {index}") };
    if !name.is_empty() {
        label.push_str(": ");
        label.push_str(name);
    }
    Some(label)
}

/// A progress figure rounded to a whole percent and clamped to 0-100.
pub fn percent(progress: f64) -> u8 {
    if progress.is_nan() {
        return 0;
    }
    // In range after the clamp, so the cast cannot truncate.
    progress.clamp(0.0, 100.0).round() as u8
}

/// The spoken form of a progress bar's value (`aria-valuetext`): "45%, step 2 of 4: Processing",
/// "100%, completed", "60%, failed at step 3 of 4: Validating".
pub fn value_text(progress: f64, status: Option<JobStatus>, step: Option<&str>) -> String {
    let mut text = format!("{}%", percent(progress));
    let step = step.map(lower_first);
    match (status, step) {
        (Some(JobStatus::Completed), _) => text.push_str(", completed"),
        (Some(JobStatus::Cancelled), _) => text.push_str(", cancelled"),
        (Some(JobStatus::Interrupted), _) => text.push_str(", interrupted by a server restart"),
        (Some(JobStatus::Failed), Some(step)) => {
            text.push_str(", failed at ");
            text.push_str(&step);
        }
        (Some(JobStatus::Failed), None) => text.push_str(", failed"),
        (Some(JobStatus::Pending), _) => text.push_str(", waiting to start"),
        (_, Some(step)) => {
            text.push_str(", ");
            text.push_str(&step);
        }
        (_, None) => {}
    }
    text
}

/// What a screen reader says of a bar whose total is not known yet:
/// "total not known yet, step 1 of 3: Discovering".
pub fn unknown_value_text(step: Option<&str>) -> String {
    match step {
        Some(label) => format!("total not known yet, {}", lower_first(label)),
        None => "total not known yet".to_string(),
    }
}

/// "Step 2 of 4" -> "step 2 of 4", to follow a comma.
fn lower_first(label: &str) -> String {
    let mut chars = label.chars();
    chars.next().map_or_else(String::new, |first| first.to_lowercase().chain(chars).collect())
}

/// "14:03:07.215" (UTC) from milliseconds since the epoch: when a log line was written, as the
/// log console and the terminal client show it.
pub fn clock(ts: u64) -> String {
    let ms = ts % 1000;
    let secs = ts / 1000;
    format!("{:02}:{:02}:{:02}.{ms:03}", (secs / 3600) % 24, (secs / 60) % 60, secs % 60)
}

/// Milliseconds since the Unix epoch, now: the `ts` of every event on the server, the
/// browser's clock in the browser.
pub fn now_ms() -> u64 {
    #[cfg(not(feature = "ssr"))]
    {
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // a positive time in ms
        return js_sys::Date::now() as u64;
    }
    #[cfg(feature = "ssr")]
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// A kind as API clients are told about it: what it does, and its params.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct KindDescription {
    /// The name to start it by.
    pub name: String,
    /// What it does.
    pub description: String,
    /// The JSON Schema of its params object.
    #[cfg_attr(feature = "ssr", schema(value_type = Object))]
    pub params_schema: Value,
    /// The params used for every field left out.
    #[cfg_attr(feature = "ssr", schema(value_type = Object))]
    pub defaults: Value,
}

/// A job kind a person may start from the browser, with a label for the picker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KindInfo {
    /// The name `start_job` takes, e.g. `"checksum"`.
    pub name: String,
    /// One line that says what the kind does.
    pub description: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_shows_utc_time_of_day_with_milliseconds() {
        assert_eq!(clock(1_795_573_262_362), "02:21:02.362");
        assert_eq!(clock(0), "00:00:00.000");
    }

    #[test]
    fn job_ids_round_trip_and_reject_garbage_clearly() {
        let id: JobId = "67e55044-10b1-426f-9247-bb680e5fe0c8".parse().expect("valid id");
        assert_eq!(id.to_string(), "67e55044-10b1-426f-9247-bb680e5fe0c8");
        let err = "nope".parse::<JobId>().expect_err("not an id");
        assert!(err.to_string().contains("\"nope\" is not a job id"), "{err}");
    }

    #[test]
    fn step_labels_read_like_a_sentence() {
        assert_eq!(step_label(2, 4, "Processing").as_deref(), Some("Step 2 of 4: Processing"));
        assert_eq!(step_label(3, 0, "Scanning").as_deref(), Some("Step 3: Scanning"));
        assert_eq!(step_label(0, 4, ""), None);
    }

    #[test]
    fn value_text_speaks_percent_step_and_outcome() {
        let running = Some(JobStatus::Running);
        assert_eq!(value_text(44.6, running, Some("Step 2 of 4: Processing")), "45%, step 2 of 4: Processing");
        assert_eq!(value_text(0.0, running, None), "0%");
        assert_eq!(
            unknown_value_text(Some("Step 1 of 3: Discovering")),
            "total not known yet, step 1 of 3: Discovering"
        );
        assert_eq!(value_text(100.0, Some(JobStatus::Completed), Some("Step 4 of 4: Done")), "100%, completed");
        assert_eq!(
            value_text(60.0, Some(JobStatus::Failed), Some("Step 3 of 4: Validating")),
            "60%, failed at step 3 of 4: Validating"
        );
    }

    #[test]
    fn percent_is_clamped_and_rounded() {
        assert_eq!(percent(44.6), 45);
        assert_eq!(percent(-3.0), 0);
        assert_eq!(percent(250.0), 100);
        assert_eq!(percent(f64::NAN), 0);
    }

    #[test]
    fn wire_names_are_lower_case_and_never_error() {
        let mut s = Snapshot::pending(JobId(uuid::Uuid::nil()), "checksum", 0);
        let json = serde_json::to_value(&s).expect("serialises");
        assert_eq!(json["status"], "pending");
        assert!(json.get("data").is_none());
        for status in [
            JobStatus::Pending,
            JobStatus::Running,
            JobStatus::Completed,
            JobStatus::Failed,
            JobStatus::Cancelled,
            JobStatus::Interrupted,
        ] {
            s.status = status;
            assert_ne!(s.event_name(), "error");
        }
    }
}
