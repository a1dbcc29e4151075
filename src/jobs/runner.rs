//! Running one job's code to its end, and recording how it ended. Free functions over a
//! record and its run number: the engine decides when a job runs, these decide nothing else.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::record::JobRecord;
use super::registry::JobFuture;
use super::JobError;
use crate::model::JobStatus;

/// The error of a job that was running when the server stopped.
pub(crate) const STOPPED: &str = "The server stopped while this job ran; start it again";
/// The error of a job that was running when the server was killed, told at the next start.
pub(crate) const RESTARTED: &str = "The server restarted while this job ran; start it again";

/// How a run ended.
pub(crate) enum Outcome {
    /// The job's code returned this result.
    Completed(Value),
    /// It failed with this message.
    Failed(String),
    /// It stopped because someone asked it to.
    Cancelled,
    /// It stopped because the server is stopping.
    Stopped,
}

/// Why a job whose stop signal fired stopped: asked to, or the server is stopping.
pub(crate) fn stop_reason(record: &JobRecord, stopping: bool) -> Outcome {
    if record.cancel_requested() || !stopping {
        Outcome::Cancelled
    } else {
        Outcome::Stopped
    }
}

/// Runs `job` in a task of its own (a panic in its code ends this job, not the engine) until
/// it returns, or until it is told to stop and has had `grace` to do so.
pub(crate) async fn run_to_end(
    record: &Arc<JobRecord>,
    job: JobFuture,
    grace: Duration,
    stopping: impl Fn() -> bool,
) -> Outcome {
    let id = record.id;
    let cancel = record.cancel_token();
    let mut handle = tokio::spawn(job);
    let joined = tokio::select! {
        joined = &mut handle => joined,
        () = cancel.cancelled() => {
            match tokio::time::timeout(grace, &mut handle).await {
                Ok(joined) => joined,
                Err(_) => {
                    tracing::warn!(%id, ?grace, "job ignored cancellation; aborting it");
                    handle.abort();
                    Ok(Err(JobError::Cancelled))
                }
            }
        }
    };
    match joined {
        Ok(Ok(value)) => Outcome::Completed(value),
        // A job that gave up because it was told to stop ended for that reason, whatever it said.
        Ok(Err(_)) if cancel.is_cancelled() => stop_reason(record, stopping()),
        Ok(Err(JobError::Failed(message))) => Outcome::Failed(message),
        Ok(Err(JobError::Cancelled)) => Outcome::Cancelled,
        Err(join_error) => {
            tracing::error!(%id, error = %join_error, "job's code panicked");
            Outcome::Failed("the job stopped unexpectedly (an internal error); see the server log".into())
        }
    }
}

/// Records how run `run` of a job ended (nothing, if that run is no longer the job's). A job
/// stopped by the server's stop is left running when `pause` (its kind resumes and the store
/// outlives the process: it continues at the next start from its checkpoint), and ends
/// `interrupted` otherwise.
pub(crate) fn record_end(record: &Arc<JobRecord>, run: u64, outcome: Outcome, took: Duration, pause: bool) {
    let id = record.id;
    match outcome {
        Outcome::Completed(value) => {
            tracing::info!(%id, "job completed");
            record.apply_as(run, |s| {
                s.status = JobStatus::Completed;
                s.progress = 100.0;
                s.indeterminate = false;
                s.message = format!("Completed in {:.1} s", took.as_secs_f64());
                s.data = Some(value);
            });
        }
        Outcome::Failed(error) => {
            tracing::info!(%id, %error, "job failed");
            record.apply_as(run, |s| {
                s.status = JobStatus::Failed;
                s.message.clone_from(&error);
                s.error = Some(error);
            });
        }
        Outcome::Cancelled => {
            tracing::info!(%id, "job cancelled");
            record.apply_as(run, |s| {
                s.status = JobStatus::Cancelled;
                s.message = "Cancelled".into();
            });
        }
        Outcome::Stopped if pause => {
            tracing::info!(%id, "job paused at its checkpoint; it continues at the next start");
        }
        Outcome::Stopped => interrupt(record, run, STOPPED),
    }
}

/// Ends a job that the server's stop (or crash) cut short, visibly, at its next number.
pub(crate) fn interrupt(record: &Arc<JobRecord>, run: u64, why: &str) {
    tracing::info!(id = %record.id, "job interrupted");
    record.apply_as(run, |s| {
        s.status = JobStatus::Interrupted;
        s.message = why.to_string();
        s.error = Some(why.to_string());
    });
}
