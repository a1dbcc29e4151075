//! The handle a job's code reports through: its step, its percent done, its message, and
//! whether it has been asked to stop.

use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::record::JobRecord;
use super::JobError;
use crate::model::{JobId, JobStatus, WorkCount};

/// Longest step name kept, in characters; longer names are cut.
pub const MAX_STEP_CHARS: usize = 120;
/// Longest message kept, in characters; longer messages are cut.
pub const MAX_MESSAGE_CHARS: usize = 1_000;

/// Several changes to a job's state that belong together, sent as one event by
/// [`ProgressReporter::report`]: `Report::new().step(2, 4, "Hashing").percent(30.0)`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    step: Option<(u32, u32, String)>,
    percent: Option<f64>,
    indeterminate: bool,
    work: Option<WorkCount>,
    message: Option<String>,
}

impl Report {
    /// A report that changes nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Enters step `index` (1-based) of `count` (0 when not known yet), named `name` (cut to
    /// [`MAX_STEP_CHARS`]).
    pub fn step(mut self, index: u32, count: u32, name: impl Into<String>) -> Self {
        self.step = Some((index, count, cut(name, MAX_STEP_CHARS)));
        self
    }

    /// Sets the percent done, clamped to 0-100; NaN leaves it as it was.
    pub fn percent(mut self, percent: f64) -> Self {
        self.percent = clamp_percent(percent);
        self
    }

    /// Says the job cannot yet tell how far along it is (its total is not known yet). The
    /// next report with a percent ends that.
    pub fn indeterminate(mut self) -> Self {
        self.indeterminate = true;
        self
    }

    /// Sets the units of work done, of how many (`None` while not known), and their name.
    pub fn work(mut self, done: u64, total: Option<u64>, unit: &str) -> Self {
        self.work = Some(WorkCount { done, total, unit: unit.to_string() });
        self
    }

    /// Sets the message (cut to [`MAX_MESSAGE_CHARS`]).
    pub fn message(mut self, message: impl Into<String>) -> Self {
        self.message = Some(cut(message, MAX_MESSAGE_CHARS));
        self
    }
}

/// Reports one job's progress. Cheap to clone; every call that changes something is one event
/// with the job's next sequence number, and a call that changes nothing sends nothing.
#[derive(Clone)]
pub struct ProgressReporter {
    record: Arc<JobRecord>,
    /// This run's number: what it reports is refused once another run took the job over.
    run: u64,
    /// This run's stop signal.
    cancel: CancellationToken,
    /// The checkpoint this run continues from (after a restart), if any.
    resume_point: Option<Arc<Value>>,
}

fn cut(text: impl Into<String>, max_chars: usize) -> String {
    let mut text = text.into();
    if let Some((at, _)) = text.char_indices().nth(max_chars) {
        text.truncate(at);
        text.push('…');
    }
    text
}

fn clamp_percent(percent: f64) -> Option<f64> {
    (!percent.is_nan()).then(|| percent.clamp(0.0, 100.0))
}

impl ProgressReporter {
    pub(crate) fn new(record: Arc<JobRecord>, run: u64, resume_point: Option<Value>) -> Self {
        Self { cancel: record.cancel_token(), record, run, resume_point: resume_point.map(Arc::new) }
    }

    /// Saves how far the job got, so that a kind registered with
    /// [`register_resumable`](super::KindRegistry::register_resumable) continues from here
    /// after a restart (its next run gets it from [`resume_point`](Self::resume_point)). It is
    /// stored with the events reported before it; save one after each unit of work that would
    /// be a pity to redo. A value that does not encode as JSON is not saved (and logged).
    pub fn checkpoint<T: Serialize>(&self, value: &T) {
        match serde_json::to_value(value) {
            Ok(value) => self.record.save_checkpoint(self.run, value),
            Err(error) => tracing::warn!(%error, "a checkpoint could not be encoded as JSON; not saved"),
        }
    }

    /// The checkpoint this run continues from: `None` for a fresh start (or when the saved one
    /// no longer reads as a `T`, which is logged: the job then starts over).
    pub fn resume_point<T: DeserializeOwned>(&self) -> Option<T> {
        let value = self.resume_point.as_deref()?;
        match serde_json::from_value(value.clone()) {
            Ok(point) => Some(point),
            Err(error) => {
                tracing::warn!(%error, "the saved checkpoint does not fit this kind any more; starting over");
                None
            }
        }
    }

    /// The job this reporter belongs to.
    pub fn job_id(&self) -> JobId {
        self.record.id
    }

    /// Applies several changes as one event (see [`Report`]).
    pub fn report(&self, report: Report) {
        let Report { step, percent, indeterminate, work, message } = report;
        self.record.apply_as(self.run, |s| {
            if let Some((index, count, name)) = step {
                s.step_index = index;
                s.step_count = count;
                s.step = name;
            }
            if let Some(p) = percent {
                s.progress = p;
                s.indeterminate = false;
            }
            if indeterminate {
                s.indeterminate = true;
            }
            if work.is_some() {
                s.work = work;
            }
            if let Some(m) = message {
                s.message = m;
            }
        });
    }

    /// Announces the names of all the job's steps, in order (for steppers).
    pub fn plan<S: AsRef<str>>(&self, steps: &[S]) {
        let plan: Vec<String> = steps.iter().map(|s| cut(s.as_ref(), MAX_STEP_CHARS)).collect();
        self.record.apply_as(self.run, |s| s.plan = plan);
    }

    /// Enters step `index` (1-based) of `count` (0 when not known yet), named `name`.
    pub fn step(&self, index: u32, count: u32, name: impl Into<String>) {
        self.report(Report::new().step(index, count, name));
    }

    /// Sets the percent done (clamped to 0-100; NaN is ignored) and the message together.
    pub fn progress(&self, percent: f64, message: impl Into<String>) {
        self.report(Report::new().percent(percent).message(message));
    }

    /// Sets only the percent done (clamped to 0-100; NaN is ignored).
    pub fn set_percent(&self, percent: f64) {
        self.report(Report::new().percent(percent));
    }

    /// Sets only the message.
    pub fn message(&self, message: impl Into<String>) {
        self.report(Report::new().message(message));
    }

    /// The token that is cancelled when the job is asked to stop (by a person, or because
    /// the server is shutting down). Use it in `select!` around long awaits.
    pub fn cancellation(&self) -> &CancellationToken {
        &self.cancel
    }

    /// Whether the job has been asked to stop.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// `Err(JobError::Cancelled)` once the job has been asked to stop, for `?` between chunks.
    pub fn check_cancelled(&self) -> Result<(), JobError> {
        if self.is_cancelled() {
            Err(JobError::Cancelled)
        } else {
            Ok(())
        }
    }

    /// Sleeps, or returns `Err(JobError::Cancelled)` as soon as the job is asked to stop.
    pub async fn sleep(&self, duration: std::time::Duration) -> Result<(), JobError> {
        tokio::select! {
            () = tokio::time::sleep(duration) => Ok(()),
            () = self.cancel.cancelled() => Err(JobError::Cancelled),
        }
    }

    /// Runs CPU-heavy or blocking work on Tokio's blocking pool, inside the job's span, so
    /// that what it logs still reaches the job's viewers. Await the handle for its value.
    pub fn spawn_blocking<F, R>(&self, work: F) -> tokio::task::JoinHandle<R>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        let span = tracing::Span::current();
        let dispatch = tracing::dispatcher::get_default(Clone::clone);
        tokio::task::spawn_blocking(move || tracing::dispatcher::with_default(&dispatch, || span.in_scope(work)))
    }

    /// Marks the job running (the engine does this before the job's code starts).
    pub(crate) fn mark_running(&self) {
        self.record.apply_as(self.run, |s| {
            s.status = JobStatus::Running;
            s.message = "Started".into();
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_text_is_cut_on_a_character_boundary() {
        let long = "é".repeat(MAX_STEP_CHARS + 5);
        let cut_text = cut(long, MAX_STEP_CHARS);
        assert_eq!(cut_text.chars().count(), MAX_STEP_CHARS + 1);
        assert!(cut_text.ends_with('…'));
        assert_eq!(cut("short", 10), "short");
    }
}
