//! A progress bar with full ARIA semantics and an animated width; while the job cannot say
//! how far along it is, an indeterminate band with no value.

use leptos::prelude::*;

use crate::hooks::StepInfo;
use crate::model::{percent, unknown_value_text, value_text, JobStatus};

fn fill_colour(status: Option<JobStatus>) -> &'static str {
    match status {
        Some(JobStatus::Completed) => "bg-emerald-500",
        Some(JobStatus::Failed) => "bg-rose-500",
        Some(JobStatus::Cancelled) => "bg-slate-400",
        Some(JobStatus::Interrupted) => "bg-amber-500",
        _ => "bg-indigo-500",
    }
}

/// `role="progressbar"` with `aria-valuenow` 0-100 and an `aria-valuetext` such as
/// "45%, step 2 of 4: Processing". The fill animates its width unless the person prefers
/// reduced motion. While `indeterminate` (the hook's signal of that name) is true the bar has
/// no value, says "total not known yet" and shows a sliding band (still under reduced motion).
#[component]
pub fn ProgressBar(
    /// Percent done, 0-100.
    #[prop(into)]
    progress: Signal<f64>,
    /// The job's status: picks the colour and the spoken outcome.
    #[prop(into)]
    status: Signal<Option<JobStatus>>,
    /// The current step, spoken with the value.
    #[prop(into)]
    step: Signal<Option<StepInfo>>,
    /// Whether the total is not known yet. Default: never.
    #[prop(into, optional)]
    indeterminate: Signal<bool>,
) -> impl IntoView {
    let now = move || percent(progress.get());
    let label = move || step.get().map(|s| s.label());
    let text = move || {
        if indeterminate.get() {
            unknown_value_text(label().as_deref())
        } else {
            value_text(progress.get(), status.get(), label().as_deref())
        }
    };
    let shown = move || if indeterminate.get() { "total not known yet".to_string() } else { format!("{}%", now()) };
    let width = move || format!("{:.1}%", progress.get().clamp(0.0, 100.0));
    view! {
        <div class="space-y-1">
            <div class="flex justify-between text-sm font-medium">
                <span>"Progress"</span>
                <span data-testid="progress-percent" class="tabular-nums">{shown}</span>
            </div>
            <div
                role="progressbar"
                aria-label="Job progress"
                aria-valuemin="0"
                aria-valuemax="100"
                aria-valuenow=move || (!indeterminate.get()).then(now)
                aria-valuetext=text
                aria-busy=move || indeterminate.get().then_some("true")
                data-mode=move || if indeterminate.get() { "indeterminate" } else { "determinate" }
                class="relative h-3 w-full overflow-hidden rounded-full bg-slate-200 dark:bg-slate-800"
            >
                <Show
                    when=move || indeterminate.get()
                    fallback=move || view! {
                        <div
                            class=move || {
                                format!(
                                    "h-full rounded-full transition-[width,background-color] duration-500 ease-out motion-reduce:transition-none {}",
                                    fill_colour(status.get()),
                                )
                            }
                            style:width=width
                        ></div>
                    }
                >
                    <div class="sse-indeterminate absolute inset-y-0 w-1/3 rounded-full bg-indigo-400"></div>
                </Show>
            </div>
        </div>
    }
}
