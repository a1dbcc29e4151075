//! A bar for work of unknown length: indeterminate (a sliding band, no value) while the job
//! cannot say how far along it is, determinate as soon as it can.
//!
//! Usage: `<PhaseProgress snapshot=job.snapshot/>`.

use leptos::prelude::*;

use crate::model::{percent, Snapshot};

/// The bar.
#[component]
pub fn PhaseProgress(
    /// The job's state (the hook's `snapshot`).
    #[prop(into)]
    snapshot: Signal<Option<Snapshot>>,
) -> impl IntoView {
    let unknown = move || snapshot.with(|s| s.as_ref().is_some_and(|s| s.indeterminate));
    let progress = move || snapshot.with(|s| s.as_ref().map_or(0.0, |s| s.progress));
    let caption = move || {
        snapshot.with(|s| match s {
            Some(s) if s.indeterminate => match &s.work {
                Some(w) => format!("Working out how much there is: {} {} so far", w.done, w.unit),
                None => "Working out how much there is".to_string(),
            },
            Some(s) => format!("{}% of the known total", percent(s.progress)),
            None => String::new(),
        })
    };
    view! {
        <div class="space-y-2">
            <div
                role="progressbar"
                aria-label="Job progress (phases)"
                aria-valuemin="0"
                aria-valuemax="100"
                aria-valuenow=move || (!unknown()).then(|| percent(progress()))
                aria-busy=move || unknown().to_string()
                data-testid="phase-progress"
                data-mode=move || if unknown() { "indeterminate" } else { "determinate" }
                class="relative h-3 w-full overflow-hidden rounded-full bg-slate-200 dark:bg-slate-800"
            >
                <Show
                    when=unknown
                    fallback=move || view! {
                        <div
                            class=move || format!(
                                "h-full rounded-full transition-[width] duration-500 ease-out motion-reduce:transition-none {}",
                                if snapshot.with(|s| s.as_ref().is_some_and(|s| s.status == crate::model::JobStatus::Completed)) { "bg-emerald-500" } else { "bg-indigo-500" },
                            )
                            style:width=move || format!("{:.1}%", progress().clamp(0.0, 100.0))
                        ></div>
                    }
                >
                    <div class="sse-indeterminate absolute inset-y-0 w-1/3 rounded-full bg-indigo-400"></div>
                </Show>
            </div>
            <p class="text-sm text-slate-600 dark:text-slate-400">{caption}</p>
        </div>
    }
}
