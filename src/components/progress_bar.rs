//! A determinate progress bar with full ARIA semantics and an animated width.

use leptos::prelude::*;

use crate::hooks::StepInfo;
use crate::model::{percent, value_text, JobStatus};

fn fill_colour(status: Option<JobStatus>) -> &'static str {
    match status {
        Some(JobStatus::Completed) => "bg-emerald-500",
        Some(JobStatus::Failed) => "bg-rose-500",
        Some(JobStatus::Cancelled) => "bg-slate-400",
        _ => "bg-indigo-500",
    }
}

/// `role="progressbar"` with `aria-valuenow` 0-100 and an `aria-valuetext` such as
/// "45%, step 2 of 4: Processing". The fill animates its width unless the person prefers
/// reduced motion.
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
) -> impl IntoView {
    let now = move || percent(progress.get());
    let text = move || value_text(progress.get(), status.get(), step.get().map(|s| s.label()).as_deref());
    let width = move || format!("{:.1}%", progress.get().clamp(0.0, 100.0));
    view! {
        <div class="space-y-1">
            <div class="flex justify-between text-sm font-medium">
                <span>"Progress"</span>
                <span data-testid="progress-percent" class="tabular-nums">{move || format!("{}%", now())}</span>
            </div>
            <div
                role="progressbar"
                aria-label="Job progress"
                aria-valuemin="0"
                aria-valuemax="100"
                aria-valuenow=now
                aria-valuetext=text
                class="h-3 w-full overflow-hidden rounded-full bg-slate-200 dark:bg-slate-800"
            >
                <div
                    class=move || {
                        format!(
                            "h-full rounded-full transition-[width,background-color] duration-500 ease-out motion-reduce:transition-none {}",
                            fill_colour(status.get()),
                        )
                    }
                    style:width=width
                ></div>
            </div>
        </div>
    }
}
