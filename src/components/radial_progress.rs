//! A circular progress indicator, with the same ARIA semantics as the bar.
//!
//! Usage: `<RadialProgress progress=job.progress status=job.status indeterminate=ind/>`.

use leptos::prelude::*;

use crate::model::{percent, JobStatus};

const RADIUS: f64 = 42.0;

/// A ring that fills clockwise; a spinning arc while the total is not known.
#[component]
pub fn RadialProgress(
    /// Percent done, 0-100.
    #[prop(into)]
    progress: Signal<f64>,
    /// The job's status (for the colour).
    #[prop(into)]
    status: Signal<Option<JobStatus>>,
    /// Whether the job cannot yet tell how far along it is.
    #[prop(into, optional)]
    indeterminate: Signal<bool>,
) -> impl IntoView {
    let circumference = 2.0 * std::f64::consts::PI * RADIUS;
    let offset = move || {
        let p = if indeterminate.get() { 25.0 } else { progress.get().clamp(0.0, 100.0) };
        format!("{:.2}", circumference * (1.0 - p / 100.0))
    };
    let colour = move || match status.get() {
        Some(JobStatus::Completed) => "text-emerald-500",
        Some(JobStatus::Failed) => "text-rose-500",
        Some(JobStatus::Cancelled) => "text-slate-400",
        Some(JobStatus::Interrupted) => "text-amber-500",
        _ => "text-indigo-500",
    };
    view! {
        <div
            role="progressbar"
            aria-label="Job progress (ring)"
            aria-valuemin="0"
            aria-valuemax="100"
            aria-valuenow=move || (!indeterminate.get()).then(|| percent(progress.get()))
            aria-valuetext=move || if indeterminate.get() { "working, total not known yet".to_string() } else { format!("{}%", percent(progress.get())) }
            data-testid="radial-progress"
            class="relative mx-auto h-32 w-32"
        >
            <svg viewBox="0 0 100 100" class=move || format!("h-full w-full -rotate-90 {}", if indeterminate.get() { "motion-safe:animate-spin" } else { "" })>
                <circle cx="50" cy="50" r=RADIUS fill="none" stroke-width="8" class="stroke-slate-200 dark:stroke-slate-800"></circle>
                <circle
                    cx="50"
                    cy="50"
                    r=RADIUS
                    fill="none"
                    stroke-width="8"
                    stroke-linecap="round"
                    stroke="currentColor"
                    stroke-dasharray=format!("{circumference:.2}")
                    stroke-dashoffset=offset
                    class=move || format!("transition-[stroke-dashoffset] duration-500 ease-out motion-reduce:transition-none {}", colour())
                ></circle>
            </svg>
            <span class="absolute inset-0 flex items-center justify-center text-xl font-semibold tabular-nums">
                {move || if indeterminate.get() { "…".to_string() } else { format!("{}%", percent(progress.get())) }}
            </span>
        </div>
    }
}
