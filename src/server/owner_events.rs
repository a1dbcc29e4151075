//! `GET /api/events`: every job of the request's owner on ONE event stream, so a browser tab
//! needs a single connection however many jobs it shows (browsers allow six per host over
//! HTTP/1.1).
//!
//! The events are those of the per-job streams, tagged with their job: state events carry the
//! job's `Snapshot` (whose `id` names the job), `log` events a `LogLine` plus `job`, and `end`
//! (`{"job", "status", "seq"}`) says one job is over while the stream goes on. The SSE `id:` is
//! `JOB:SEQ`. A client resumes exactly with `?after=JOB:SEQ,JOB:SEQ,...` (its last sequence for
//! each job it follows); any other job of the owner starts with a `reset` carrying its current
//! state, and jobs the owner starts later (in any tab) arrive from their first event on.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::response::Response;
use futures::stream::{BoxStream, SelectAll};
use futures::StreamExt;
use serde::Deserialize;
use serde_json::json;
use utoipa::IntoParams;

use super::events::sse_of;
use super::extract::{parse_seq, ApiQuery};
use super::owner::Owner;
use super::sse::frame;
use super::AppError;
use crate::jobs::{Delivery, JobEngine, OwnerWatch, Subscription};
use crate::model::JobId;

/// The query of `GET /api/events`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OwnerEventsQuery {
    /// Resume points, `JOB:SEQ` separated by commas: the last event seen of each job.
    #[param(
        pattern = "^([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}:[0-9]{1,19}(,[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}:[0-9]{1,19})*)?$"
    )]
    pub after: Option<String>,
}

/// Reads `JOB:SEQ,JOB:SEQ`; the error says which part is wrong.
pub fn parse_cursors(text: Option<&str>) -> Result<HashMap<JobId, u64>, AppError> {
    let mut cursors = HashMap::new();
    let text = text.unwrap_or_default();
    if text.is_empty() {
        return Ok(cursors);
    }
    for part in text.split(',') {
        // A job id in its 36-character form, a colon, a sequence number; nothing else.
        let parsed = part
            .split_once(':')
            .filter(|(job, _)| job.len() == 36)
            .and_then(|(job, seq)| Some((job.parse::<JobId>().ok()?, parse_seq(seq)?)));
        let Some((job, seq)) = parsed else {
            return Err(AppError::InvalidQuery(format!(
                "after: {:?} is not JOB:SEQ (a job id, a colon, a sequence number; several separated by commas)",
                part.chars().take(80).collect::<String>()
            )));
        };
        cursors.insert(job, seq);
    }
    Ok(cursors)
}

fn job_events(job: JobId, subscription: Subscription) -> BoxStream<'static, Bytes> {
    futures::stream::unfold(Some(subscription), move |sub| async move {
        let mut sub = sub?;
        match sub.next().await {
            Some(delivery) => Some((tagged(job, &delivery), Some(sub))),
            None => {
                let last = sub.current()?;
                let end = json!({"job": job, "status": last.status, "seq": last.seq});
                Some((frame(None, "end", &end.to_string()), None))
            }
        }
    })
    .boxed()
}

/// The SSE event of a delivery, tagged with its job. A state names its job already (its
/// `id`); a log line gets a `job` field, put in front of the JSON the engine encoded once
/// rather than encoding the line again.
fn tagged(job: JobId, delivery: &Delivery) -> Bytes {
    let id = format!("{job}:{}", delivery.seq());
    let id = Some(id.as_str());
    let name = delivery.event_name();
    match delivery {
        Delivery::Event(_, json) | Delivery::Reset(_, json) => frame(id, name, json),
        Delivery::Log(_, json) => {
            let fields = json.strip_prefix('{').filter(|rest| rest.len() > 1).unwrap_or("}");
            let comma = if fields == "}" { "" } else { "," };
            frame(id, name, &format!("{{\"job\":\"{job}\"{comma}{fields}"))
        }
    }
}

struct Feed {
    engine: JobEngine,
    owner: Arc<str>,
    streams: SelectAll<BoxStream<'static, Bytes>>,
    /// Wakes when one of the owner's jobs is started (never for other owners' jobs); keeps
    /// the owner's entry in the engine while the feed lives, and not after.
    started: OwnerWatch,
    /// The jobs followed (or followed to their end), among those the owner still has: jobs
    /// forgotten after their retention leave it, so it never outgrows the owner's jobs.
    known: HashSet<JobId>,
}

impl Feed {
    /// Follows `job` after `after`, unless already followed. A job the store could not be
    /// asked about now is tried again at the owner's next start.
    async fn follow(&mut self, job: JobId, after: u64) {
        if self.known.contains(&job) {
            return;
        }
        match self.engine.subscribe(job, Some(after)).await {
            Ok(Some(sub)) => {
                self.known.insert(job);
                self.streams.push(job_events(job, sub));
            }
            Ok(None) => {}
            Err(error) => {
                tracing::warn!(%job, %error, "could not follow a job of the owner's feed; trying again later")
            }
        }
    }

    /// Follows every job of the owner not followed yet from its first event: they were
    /// started after the feed opened.
    async fn follow_new(&mut self) {
        let jobs = match self.engine.jobs_of(&self.owner).await {
            Ok(jobs) => jobs,
            Err(error) => {
                // Tried again at the owner's next start; what is followed goes on meanwhile.
                tracing::warn!(%error, "could not list the owner's jobs for its feed");
                return;
            }
        };
        let kept: HashSet<JobId> = jobs.iter().map(|state| state.id).collect();
        self.known.retain(|job| kept.contains(job));
        for state in jobs {
            self.follow(state.id, 0).await;
        }
    }

    async fn next(&mut self) -> Option<Bytes> {
        loop {
            tokio::select! {
                Some(event) = self.streams.next(), if !self.streams.is_empty() => return Some(event),
                changed = self.started.changed() => match changed {
                    Ok(()) => self.follow_new().await,
                    Err(_) => return None,
                },
            }
        }
    }
}

/// Follows all the owner's jobs on one stream.
#[utoipa::path(get, path = "/api/events", tag = "jobs", params(OwnerEventsQuery),
    responses(
        (status = 200, description = "The events of all the owner's jobs; each `data:` names its job", content_type = "text/event-stream", body = String),
        (status = 400, description = "`after` is not a list of JOB:SEQ", body = super::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "The job store is not answering (a shared store); see Retry-After", body = super::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn owner_events(
    State(engine): State<JobEngine>,
    owner: Owner,
    ApiQuery(query): ApiQuery<OwnerEventsQuery>,
) -> Result<Response, AppError> {
    let cursors = parse_cursors(query.after.as_deref())?;
    // Listen for new jobs before looking at the existing ones, so none falls in between.
    let mut started = engine.watch_owner(&owner.key);
    started.mark_seen();
    let mut feed = Feed {
        engine: engine.clone(),
        owner: owner.key.clone(),
        streams: SelectAll::new(),
        started,
        known: HashSet::new(),
    };
    for state in engine.jobs_of(&owner.key).await? {
        feed.follow(state.id, cursors.get(&state.id).copied().unwrap_or(u64::MAX)).await;
    }
    let events = futures::stream::unfold(feed, |mut feed| async move { Some((feed.next().await?, feed)) });
    Ok(sse_of(&engine, events.boxed()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_parse_and_bad_ones_are_named() {
        let id = "67e55044-10b1-426f-9247-bb680e5fe0c8";
        let other = "00000000-0000-4000-8000-000000000001";
        let parsed = parse_cursors(Some(&format!("{id}:7,{other}:0"))).expect("valid");
        assert_eq!(parsed.get(&id.parse().expect("id")), Some(&7));
        assert_eq!(parsed.len(), 2);
        assert!(parse_cursors(None).expect("none").is_empty());
        assert!(parse_cursors(Some("")).expect("empty").is_empty());
        let err = parse_cursors(Some("nope:3")).expect_err("invalid");
        assert!(err.to_string().contains("\"nope:3\" is not JOB:SEQ"), "{err}");
        // What the documented pattern does not allow is refused too.
        let simple = id.replace('-', "");
        for bad in [
            format!("{id}:7,"),
            format!("{id}: 7"),
            format!("{id}:+7"),
            format!("{simple}:7"),
            format!("{id}:7,,{other}:1"),
        ] {
            assert!(parse_cursors(Some(&bad)).is_err(), "{bad}");
        }
    }
}
