//! A stepper: every step of the job, marked done, current or to come.
//!
//! Usage: `<Stepper snapshot=job.snapshot/>`. Step names come from the job's announced plan
//! (`ProgressReporter::plan`); without one, steps are numbered.

use leptos::prelude::*;

use crate::model::{JobStatus, Snapshot};

/// Where one step stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepState {
    /// Finished.
    Done,
    /// Under way.
    Current,
    /// Where the job failed or was stopped.
    Stopped,
    /// Not reached yet.
    Upcoming,
}

/// The steps of a job and where each stands.
pub fn steps(s: &Snapshot) -> Vec<(String, StepState)> {
    let count = usize::try_from(s.step_count).unwrap_or(0).max(s.plan.len());
    let current = usize::try_from(s.step_index).unwrap_or(0);
    (1..=count)
        .map(|i| {
            let name = s.plan.get(i - 1).cloned().unwrap_or_else(|| format!("Step {i}"));
            let state = match s.status {
                JobStatus::Completed => StepState::Done,
                _ if i < current => StepState::Done,
                JobStatus::Failed | JobStatus::Cancelled | JobStatus::Interrupted if i == current => StepState::Stopped,
                JobStatus::Running if i == current => StepState::Current,
                _ => StepState::Upcoming,
            };
            (name, state)
        })
        .collect()
}

/// The stepper.
#[component]
pub fn Stepper(
    /// The job's state (the hook's `snapshot`).
    #[prop(into)]
    snapshot: Signal<Option<Snapshot>>,
) -> impl IntoView {
    let items = move || snapshot.with(|s| s.as_ref().map(steps).unwrap_or_default());
    view! {
        <ol data-testid="stepper" aria-label="Steps" class="space-y-3">
            {move || {
                items()
                    .into_iter()
                    .enumerate()
                    .map(|(i, (name, state))| {
                        let (badge, text, mark, spoken) = match state {
                            StepState::Done => ("bg-emerald-500 text-white", "text-slate-900 dark:text-slate-100", "✓".to_string(), "done"),
                            StepState::Current => ("bg-indigo-600 text-white ring-4 ring-indigo-200 dark:ring-indigo-900 motion-safe:animate-pulse", "font-semibold", (i + 1).to_string(), "current"),
                            StepState::Stopped => ("bg-rose-500 text-white", "font-semibold text-rose-700 dark:text-rose-300", "!".to_string(), "stopped here"),
                            StepState::Upcoming => ("bg-slate-200 text-slate-600 dark:bg-slate-800 dark:text-slate-400", "text-slate-500 dark:text-slate-400", (i + 1).to_string(), "to come"),
                        };
                        view! {
                            <li
                                class="flex items-center gap-3"
                                data-state=format!("{state:?}").to_lowercase()
                                aria-current=(state == StepState::Current).then_some("step")
                            >
                                <span aria-hidden="true" class=format!("flex h-7 w-7 shrink-0 items-center justify-center rounded-full text-xs font-bold {badge}")>{mark}</span>
                                <span class=text>{name}<span class="sr-only">{format!(" ({spoken})")}</span></span>
                            </li>
                        }
                    })
                    .collect_view()
            }}
        </ol>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_before_the_current_one_are_done_and_after_it_to_come() {
        let id = "67e55044-10b1-426f-9247-bb680e5fe0c8".parse().expect("id");
        let mut s = Snapshot::pending(id, "discover", 0);
        s.plan = vec!["A".into(), "B".into(), "C".into()];
        s.status = JobStatus::Running;
        s.step_index = 2;
        s.step_count = 3;
        let states: Vec<StepState> = steps(&s).into_iter().map(|(_, st)| st).collect();
        assert_eq!(states, [StepState::Done, StepState::Current, StepState::Upcoming]);
        s.status = JobStatus::Failed;
        assert_eq!(steps(&s)[1].1, StepState::Stopped);
        s.status = JobStatus::Completed;
        assert!(steps(&s).iter().all(|(_, st)| *st == StepState::Done));
        s.plan.clear();
        assert_eq!(steps(&s)[0].0, "Step 1");
    }
}
