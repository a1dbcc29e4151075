//! The Leptos server functions: thin calls into the job engine, available to the browser.
//! Each has a fixed address under `/api/` (e.g. `POST /api/start_job`), so plain HTML forms
//! and scripts can call them too.

use leptos::prelude::*;

use serde::{Deserialize, Serialize};

use crate::model::{JobId, KindInfo, LogLine, Snapshot};

/// The owner of the request being served (see `server::owner`).
#[cfg(feature = "ssr")]
fn owner() -> Result<crate::server::owner::Owner, ServerFnError> {
    use_context::<axum::http::request::Parts>()
        .and_then(|parts| parts.extensions.get::<crate::server::owner::Owner>().cloned())
        .ok_or_else(|| ServerFnError::new("this request has no owner"))
}

#[cfg(feature = "ssr")]
fn engine() -> Result<crate::jobs::JobEngine, ServerFnError> {
    use_context::<crate::jobs::JobEngine>()
        .ok_or_else(|| ServerFnError::new("the job engine is not available to this request"))
}

/// Starts a job of `kind` with its default params and sends the browser to its page, or with
/// `then = "showcase"` to the showcase following it, or with `then = "dashboard"` back to the
/// dashboard.
///
/// Without JavaScript (a plain form post) the answer is a `302` to `/jobs/{id}`; with it, the
/// router follows the same redirect on the client side.
#[server(endpoint = "start_job")]
pub async fn start_job(kind: String, then: Option<String>) -> Result<JobId, ServerFnError> {
    let owner = owner()?;
    let id = engine()?.start_for(Some(&owner.key), &kind, serde_json::Value::Null).await.map_err(|e| {
        // The same status the REST API answers for the same refusal: bad input is the
        // client's (422), a full queue or owner limit says wait (429), a store that does not
        // answer or a stopping server says try again (503).
        let error = crate::server::error::AppError::Start(e);
        if let Some(response) = use_context::<leptos_axum::ResponseOptions>() {
            response.set_status(error.status());
        }
        ServerFnError::new(error.to_string())
    })?;
    match then.as_deref() {
        Some("showcase") => leptos_axum::redirect(&format!("/showcase?job={id}")),
        Some("dashboard") => leptos_axum::redirect("/jobs"),
        _ => leptos_axum::redirect(&format!("/jobs/{id}")),
    }
    Ok(id)
}

/// A job as its page first shows it: its state and its recent log lines.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobPageData {
    /// The job's current state.
    pub state: Snapshot,
    /// Its newest log lines still kept, oldest first.
    pub logs: Vec<LogLine>,
}

/// Log lines a job page is rendered with, at most.
pub const PAGE_LOG_LINES: usize = 200;

/// The current state of a job and its recent log lines, or `None` when there is no such job
/// (or the id is not one).
#[server(endpoint = "job_snapshot")]
pub async fn job_snapshot(id: String) -> Result<Option<JobPageData>, ServerFnError> {
    let Ok(id) = id.parse::<JobId>() else {
        return Ok(None);
    };
    let engine = engine()?;
    let unavailable = |error: crate::jobs::store::StoreError| {
        let error = crate::server::error::AppError::from(error);
        if let Some(response) = use_context::<leptos_axum::ResponseOptions>() {
            response.set_status(error.status());
        }
        ServerFnError::new(error.to_string())
    };
    match crate::server::owner::authorize(&engine, &owner()?, id).await {
        Ok(()) => {}
        Err(crate::server::error::AppError::StoreUnavailable(error)) => return Err(unavailable(error)),
        Err(_) => return Ok(None),
    }
    // The lines first: the state read after them is at least as new, so resuming after the
    // state's `seq` misses nothing.
    let Some((lines, _)) = engine.log_lines(id, 0).await.map_err(unavailable)? else {
        return Ok(None);
    };
    let Some(state) = engine.snapshot(id).await.map_err(unavailable)? else {
        return Ok(None);
    };
    let skip = lines.len().saturating_sub(PAGE_LOG_LINES);
    Ok(Some(JobPageData {
        state: Snapshot::clone(&state),
        logs: lines.iter().skip(skip).map(|l| LogLine::clone(l)).collect(),
    }))
}

/// The jobs of the person asking, newest first.
#[server(endpoint = "my_jobs")]
pub async fn my_jobs() -> Result<Vec<Snapshot>, ServerFnError> {
    let owner = owner()?;
    let jobs = engine()?.jobs_of(&owner.key).await.map_err(|error| {
        let error = crate::server::error::AppError::from(error);
        if let Some(response) = use_context::<leptos_axum::ResponseOptions>() {
            response.set_status(error.status());
        }
        ServerFnError::new(error.to_string())
    })?;
    Ok(jobs.iter().map(|s| Snapshot::clone(s)).collect())
}

/// The kinds a person may start.
#[server(endpoint = "job_kinds")]
pub async fn job_kinds() -> Result<Vec<KindInfo>, ServerFnError> {
    Ok(engine()?.kinds())
}
