//! The Leptos server functions: thin calls into the job engine, available to the browser.
//! Each has a fixed address under `/api/` (e.g. `POST /api/start_job`), so plain HTML forms
//! and scripts can call them too.

use leptos::prelude::*;

use crate::model::{JobId, KindInfo, Snapshot};

#[cfg(feature = "ssr")]
fn engine() -> Result<crate::jobs::JobEngine, ServerFnError> {
    use_context::<crate::jobs::JobEngine>()
        .ok_or_else(|| ServerFnError::new("the job engine is not available to this request"))
}

/// Starts a job of `kind` with its default params and sends the browser to its page.
///
/// Without JavaScript (a plain form post) the answer is a `302` to `/jobs/{id}`; with it, the
/// router follows the same redirect on the client side.
#[server(endpoint = "start_job")]
pub async fn start_job(kind: String) -> Result<JobId, ServerFnError> {
    let id = engine()?.start(&kind, serde_json::Value::Null).map_err(|e| {
        // Bad input is the client's error, never a 500.
        if let Some(response) = use_context::<leptos_axum::ResponseOptions>() {
            response.set_status(axum::http::StatusCode::UNPROCESSABLE_ENTITY);
        }
        ServerFnError::new(e.to_string())
    })?;
    leptos_axum::redirect(&format!("/jobs/{id}"));
    Ok(id)
}

/// The current state of a job, or `None` when there is no such job (or the id is not one).
#[server(endpoint = "job_snapshot")]
pub async fn job_snapshot(id: String) -> Result<Option<Snapshot>, ServerFnError> {
    let Ok(id) = id.parse::<JobId>() else {
        return Ok(None);
    };
    Ok(engine()?.snapshot(id).map(|s| Snapshot::clone(&s)))
}

/// The kinds a person may start.
#[server(endpoint = "job_kinds")]
pub async fn job_kinds() -> Result<Vec<KindInfo>, ServerFnError> {
    Ok(engine()?.kinds())
}
