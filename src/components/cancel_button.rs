//! **Cancel**: asks the server to stop the job, through the same `DELETE /api/jobs/{id}` that
//! API clients use. The job's own stream then shows it ending as cancelled.

use leptos::prelude::*;

use crate::model::JobId;

/// Sends the cancellation; `Err` carries what the server said was wrong.
#[cfg(feature = "hydrate")]
async fn request_cancel(id: JobId) -> Result<(), String> {
    let response = gloo_net::http::Request::delete(&format!("/api/jobs/{id}"))
        .send()
        .await
        .map_err(|e| format!("the server could not be reached: {e}"))?;
    if response.ok() {
        return Ok(());
    }
    let detail = response.json::<serde_json::Value>().await.ok().and_then(|p| p["detail"].as_str().map(str::to_owned));
    Err(detail.unwrap_or_else(|| format!("the server answered {}", response.status())))
}

/// Cancelling happens in the browser only; the server never renders a click.
#[cfg(not(feature = "hydrate"))]
async fn request_cancel(_id: JobId) -> Result<(), String> {
    Err("cancelling needs the browser".into())
}

/// A Cancel button, shown while `active`.
#[component]
pub fn CancelButton(
    /// The job to cancel.
    id: JobId,
    /// Whether the job can still be cancelled (it has not ended).
    #[prop(into)]
    active: Signal<bool>,
) -> impl IntoView {
    let cancel = Action::new_local(move |(): &()| request_cancel(id));
    let pending = cancel.pending();
    let failure = move || cancel.value().get().and_then(Result::err);
    view! {
        <Show when=move || active.get()>
            <button
                type="button"
                on:click=move |_| {
                    cancel.dispatch(());
                }
                disabled=move || pending.get()
                class="rounded-lg border border-slate-300 px-4 py-2 text-sm font-medium text-slate-700 transition hover:border-rose-400 hover:text-rose-700 focus-visible:outline-2 focus-visible:outline-offset-2 focus-visible:outline-rose-600 disabled:cursor-wait disabled:opacity-60 dark:border-slate-700 dark:text-slate-200 dark:hover:border-rose-500 dark:hover:text-rose-300"
            >
                {move || if pending.get() { "Cancelling..." } else { "Cancel" }}
            </button>
        </Show>
        {move || failure().map(|message| view! {
            <p role="alert" class="text-sm text-rose-700 dark:text-rose-300">{message}</p>
        })}
    }
}
