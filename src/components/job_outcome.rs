//! How the job ended: its result, its error, that it was cancelled, or that a server restart
//! cut it short (with a button that starts it again).

use leptos::form::ActionForm;
use leptos::prelude::*;
use serde_json::Value;

use super::CopyButton;
use crate::model::JobStatus;
use crate::server_fns::StartJob;

/// Nothing while the job runs; then a "Completed" panel with the result, a "Failed" alert with
/// the job's error, or a "Cancelled" note.
#[component]
pub fn JobOutcome(
    /// The job's status.
    #[prop(into)]
    status: Signal<Option<JobStatus>>,
    /// The result, once completed.
    #[prop(into)]
    result: Signal<Option<Value>>,
    /// The error message, once failed (or interrupted).
    #[prop(into)]
    error: Signal<Option<String>>,
    /// The job's kind: an interrupted job offers to start one of it again.
    #[prop(optional, into)]
    kind: Option<String>,
) -> impl IntoView {
    let again = ServerAction::<StartJob>::new();
    let pretty = move || {
        result.get().map(|v| serde_json::to_string_pretty(&v).unwrap_or_else(|_| v.to_string())).unwrap_or_default()
    };
    view! {
        <div data-testid="job-outcome">
            {move || match status.get() {
                Some(JobStatus::Completed) => view! {
                    <section role="status" class="space-y-2 rounded-xl border border-emerald-200 bg-emerald-50 p-4 dark:border-emerald-900 dark:bg-emerald-950">
                        <div class="flex items-center justify-between gap-2">
                            <h2 class="font-semibold text-emerald-900 dark:text-emerald-100">"Completed"</h2>
                            <CopyButton text=Signal::derive(pretty) what="the result"/>
                        </div>
                        <pre data-testid="job-result" class="whitespace-pre-wrap wrap-anywhere rounded-lg bg-white/70 p-3 text-xs text-slate-800 dark:bg-slate-900/70 dark:text-slate-200">{pretty}</pre>
                    </section>
                }.into_any(),
                Some(JobStatus::Failed) => view! {
                    <section role="alert" class="space-y-1 rounded-xl border border-rose-200 bg-rose-50 p-4 dark:border-rose-900 dark:bg-rose-950">
                        <h2 class="font-semibold text-rose-900 dark:text-rose-100">"Failed"</h2>
                        <p data-testid="job-error" class="text-sm text-rose-900 dark:text-rose-100">{move || error.get().unwrap_or_default()}</p>
                        <p class="text-sm text-rose-800/80 dark:text-rose-200/80">"Start Processing again above to run a new job."</p>
                    </section>
                }.into_any(),
                Some(JobStatus::Cancelled) => view! {
                    <section role="status" class="rounded-xl border border-slate-200 bg-slate-50 p-4 dark:border-slate-800 dark:bg-slate-900">
                        <h2 class="font-semibold">"Cancelled"</h2>
                        <p class="text-sm text-slate-600 dark:text-slate-400">"The job was stopped before it finished."</p>
                    </section>
                }.into_any(),
                Some(JobStatus::Interrupted) => view! {
                    <section role="alert" data-testid="job-interrupted" class="space-y-3 rounded-xl border border-amber-300 bg-amber-50 p-4 dark:border-amber-800 dark:bg-amber-950">
                        <h2 class="font-semibold text-amber-950 dark:text-amber-100">"Interrupted"</h2>
                        <p data-testid="job-error" class="text-sm text-amber-950 dark:text-amber-100">
                            {move || error.get().unwrap_or_else(|| "The server restarted while this job ran".into())}
                        </p>
                        {kind.clone().map(|kind| view! {
                            <ActionForm action=again>
                                <input type="hidden" name="kind" value=kind/>
                                <button
                                    type="submit"
                                    disabled=move || again.pending().get()
                                    class="rounded-lg bg-amber-600 px-4 py-2 text-sm font-semibold text-white shadow-sm hover:bg-amber-700 focus-visible:outline-2 focus-visible:outline-offset-2 focus-visible:outline-amber-600 disabled:bg-slate-400"
                                >
                                    "Start it again"
                                </button>
                            </ActionForm>
                        })}
                    </section>
                }.into_any(),
                _ => ().into_any(),
            }}
        </div>
    }
}
