//! "Step 2 of 4: Processing", announced politely to screen readers as it changes.

use leptos::prelude::*;

use crate::hooks::StepInfo;
use crate::model::JobStatus;

/// The current step in an `aria-live="polite"` region.
#[component]
pub fn StepLabel(
    /// The current step; `None` before the first.
    #[prop(into)]
    step: Signal<Option<StepInfo>>,
    /// The job's status, for the text before the first step.
    #[prop(into)]
    status: Signal<Option<JobStatus>>,
) -> impl IntoView {
    let text = move || match step.get() {
        Some(step) => step.label(),
        None if status.get() == Some(JobStatus::Pending) => "Waiting to start".into(),
        None => "Starting".into(),
    };
    view! {
        <p data-testid="step-label" aria-live="polite" class="font-medium">{text}</p>
    }
}
