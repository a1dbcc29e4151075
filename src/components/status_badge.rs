//! A coloured pill naming the job's status.

use leptos::prelude::*;

use crate::model::JobStatus;

/// "Running", "Completed", "Failed" ... as a pill.
#[component]
pub fn StatusBadge(
    /// The status to show; `None` shows "Unknown".
    #[prop(into)]
    status: Signal<Option<JobStatus>>,
) -> impl IntoView {
    let text = move || match status.get() {
        Some(JobStatus::Pending) => "Pending",
        Some(JobStatus::Running) => "Running",
        Some(JobStatus::Completed) => "Completed",
        Some(JobStatus::Failed) => "Failed",
        Some(JobStatus::Cancelled) => "Cancelled",
        Some(JobStatus::Interrupted) => "Interrupted",
        None => "Unknown",
    };
    let colours = move || match status.get() {
        Some(JobStatus::Running) => "bg-indigo-100 text-indigo-800 dark:bg-indigo-950 dark:text-indigo-200",
        Some(JobStatus::Completed) => "bg-emerald-100 text-emerald-800 dark:bg-emerald-950 dark:text-emerald-200",
        Some(JobStatus::Failed) => "bg-rose-100 text-rose-800 dark:bg-rose-950 dark:text-rose-200",
        Some(JobStatus::Interrupted) => "bg-amber-100 text-amber-900 dark:bg-amber-950 dark:text-amber-200",
        _ => "bg-slate-100 text-slate-700 dark:bg-slate-800 dark:text-slate-200",
    };
    view! {
        <span
            data-testid="job-status"
            class=move || format!("inline-flex items-center gap-1.5 rounded-full px-3 py-1 text-sm font-medium {}", colours())
        >
            <span
                aria-hidden="true"
                class=move || {
                    if status.get() == Some(JobStatus::Running) {
                        "h-2 w-2 rounded-full bg-current motion-safe:animate-pulse"
                    } else {
                        "h-2 w-2 rounded-full bg-current"
                    }
                }
            ></span>
            {text}
        </span>
    }
}
