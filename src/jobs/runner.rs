//! Running one job: build it from its kind and params, run its code in a task of its own,
//! and record how it ended; then hand its slot to the next waiting job.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tracing::instrument::{Instrument, WithSubscriber};

use super::engine::Inner;
use super::logs::JOB_SPAN;
use super::record::JobRecord;
use super::{JobError, ProgressReporter};
use crate::model::{JobStatus, LogLevel, LogLine};

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

impl Inner {
    /// Runs job `id` in a slot it already holds; `resumed` when it continues from its
    /// checkpoint after a restart. When it ends, its slot goes to the next waiting job.
    pub(crate) fn launch(self: &Arc<Self>, id: crate::model::JobId, resumed: bool) {
        let Some(record) = self.table.get(id) else {
            self.slot_freed();
            return;
        };
        if self.shutdown.is_cancelled() {
            // Stopping: the job stays pending in the store and runs at the next start.
            return;
        }
        let prepared = match self.kinds.prepare(&record.kind, record.params.clone()) {
            Some(Ok(prepared)) => prepared,
            Some(Err(reason)) => {
                self.finish(
                    &record,
                    Outcome::Failed(format!("its params are no longer accepted: {reason}")),
                    Duration::ZERO,
                );
                self.run_over(&record);
                return;
            }
            None => {
                let error = format!("this server no longer knows the job kind {:?}", record.kind);
                self.finish(&record, Outcome::Failed(error), Duration::ZERO);
                self.run_over(&record);
                return;
            }
        };
        let resume_point = if resumed { record.checkpoint() } else { None };
        let reporter = ProgressReporter::new(record.clone(), resume_point);
        tracing::info!(%id, kind = %record.kind, resumed, "job started");
        // Everything the job's code logs inside this span reaches the job's viewers (see
        // `JobLogLayer`), with the subscriber of whoever started it.
        let span = tracing::info_span!(JOB_SPAN, job_id = %id, kind = %record.kind);
        let job = prepared(reporter.clone()).instrument(span).with_current_subscriber();
        let inner = Arc::clone(self);
        self.tasks.spawn(async move {
            let started = inner.clock.now_ms();
            if resumed {
                record.apply(|s| s.message = "Resumed after a server restart".into());
                record.log(LogLine {
                    seq: 0,
                    ts: inner.clock.now_ms(),
                    level: LogLevel::Info,
                    target: module_path!().into(),
                    message: "resumed after a server restart, from its last checkpoint".into(),
                    fields: serde_json::Map::new(),
                });
            } else if !reporter.is_cancelled() {
                reporter.mark_running();
            }
            let outcome = if reporter.is_cancelled() {
                inner.stop_reason(&record)
            } else {
                inner.run_to_end(&record, Box::pin(job)).await
            };
            let took = Duration::from_millis(inner.clock.now_ms().saturating_sub(started));
            inner.finish(&record, outcome, took);
            inner.run_over(&record);
        });
    }

    /// A run is over: its slot goes to the next job, and with a shared store its lease is
    /// dropped, unless the stop paused it at its checkpoint (its lease is given back once its
    /// last writes are in, see `shutdown`).
    fn run_over(self: &Arc<Self>, record: &JobRecord) {
        if let Some(cluster) = &self.cluster {
            if record.has_ended() || record.is_mirror() {
                cluster.unhold(record.id);
            }
        }
        self.slot_freed();
    }

    /// A running job gave its slot back: the next waiting job takes it.
    pub(crate) fn slot_freed(self: &Arc<Self>) {
        if let Some(next) = self.scheduler.release() {
            self.launch(next, false);
        }
    }

    /// Why a job whose cancellation token fired stopped.
    fn stop_reason(&self, record: &JobRecord) -> Outcome {
        if record.cancel_requested() || !self.shutdown.is_cancelled() {
            Outcome::Cancelled
        } else {
            Outcome::Stopped
        }
    }

    async fn run_to_end(&self, record: &Arc<JobRecord>, job: super::registry::JobFuture) -> Outcome {
        let id = record.id;
        let cancel = record.cancel_token();
        let grace = self.config.cancel_grace;
        // The job runs in its own task so that a panic in its code ends this job, not the engine.
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
            Ok(Err(_)) if cancel.is_cancelled() => self.stop_reason(record),
            Ok(Err(JobError::Failed(message))) => Outcome::Failed(message),
            Ok(Err(JobError::Cancelled)) => Outcome::Cancelled,
            Err(join_error) => {
                tracing::error!(%id, error = %join_error, "job's code panicked");
                Outcome::Failed("the job stopped unexpectedly (an internal error); see the server log".into())
            }
        }
    }

    /// Records how a job ended. A job stopped by the server's stop is left running in a store
    /// that outlives the process when its kind can resume (it continues at the next start from
    /// its checkpoint), and ends `interrupted` otherwise.
    pub(crate) fn finish(&self, record: &Arc<JobRecord>, outcome: Outcome, took: Duration) {
        let id = record.id;
        match outcome {
            Outcome::Completed(value) => {
                tracing::info!(%id, "job completed");
                record.apply(|s| {
                    s.status = JobStatus::Completed;
                    s.progress = 100.0;
                    s.indeterminate = false;
                    s.message = format!("Completed in {:.1} s", took.as_secs_f64());
                    s.data = Some(value);
                });
            }
            Outcome::Failed(error) => {
                tracing::info!(%id, %error, "job failed");
                record.apply(|s| {
                    s.status = JobStatus::Failed;
                    s.message.clone_from(&error);
                    s.error = Some(error);
                });
            }
            Outcome::Cancelled => {
                tracing::info!(%id, "job cancelled");
                record.apply(|s| {
                    s.status = JobStatus::Cancelled;
                    s.message = "Cancelled".into();
                });
            }
            Outcome::Stopped if self.store.outlives_process() && self.kinds.is_resumable(&record.kind) => {
                tracing::info!(%id, "job paused at its checkpoint; it continues at the next start");
            }
            Outcome::Stopped => interrupt(record, STOPPED),
        }
    }
}

/// Ends a job that the server's stop (or crash) cut short, visibly, at its next number.
pub(crate) fn interrupt(record: &Arc<JobRecord>, why: &str) {
    tracing::info!(id = %record.id, "job interrupted");
    record.apply(|s| {
        s.status = JobStatus::Interrupted;
        s.message = why.to_string();
        s.error = Some(why.to_string());
    });
}
