//! `/` and the frame it shares with `/jobs/{id}`: the start form, kept mounted while the app
//! moves from the one to the other, so a click on Start Processing only adds the job's view.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::components::Outlet;

use crate::components::StartJobForm;
use crate::model::JobId;

/// What the page inside the frame tells its start form: the job on screen (whose kind the form
/// repeats and whose run keeps the button disabled), if any.
#[derive(Clone, Copy)]
pub(super) struct StartFrame {
    job: RwSignal<Option<(JobId, Signal<bool>)>>,
    kind: RwSignal<Option<String>>,
}

impl StartFrame {
    /// Shows job `id` of `kind` in the frame while the caller's view lives: the form picks its
    /// kind and stays disabled while `busy`.
    pub(super) fn show_job(id: JobId, kind: String, busy: Signal<bool>) {
        let Some(frame) = use_context::<StartFrame>() else { return };
        frame.kind.set(Some(kind));
        frame.job.set(Some((id, busy)));
        // Moving to another job mounts its view before this one is dropped: forget only our own.
        on_cleanup(move || {
            if frame.job.try_with_untracked(|job| job.is_some_and(|(shown, _)| shown == id)) == Some(true) {
                frame.job.try_set(None);
            }
        });
    }
}

/// The frame of `/` and `/jobs/{id}`: the routed page above, the start form below.
#[component]
pub fn StartLayout() -> impl IntoView {
    let frame = StartFrame { job: RwSignal::new(None), kind: RwSignal::new(None) };
    provide_context(frame);
    let busy = Signal::derive(move || frame.job.get().is_some_and(|(_, busy)| busy.get()));

    view! {
        <section class="mx-auto max-w-3xl space-y-6">
            <Outlet/>
            <div class="rounded-2xl border border-slate-200 bg-white p-6 shadow-sm dark:border-slate-800 dark:bg-slate-900">
                <StartJobForm busy=busy selected=frame.kind/>
            </div>
        </section>
    }
}

/// The home page: what this is (the form is the frame's).
#[component]
pub fn HomePage() -> impl IntoView {
    view! {
        <Title text="Start a job"/>
        <div class="space-y-2">
            <h1 class="text-3xl font-bold tracking-tight">"Run a job, watch it live"</h1>
            <p class="text-slate-600 dark:text-slate-400">
                "The job runs on the server. Its progress streams to this page over Server-Sent Events; "
                "reload the page or lose the connection and it carries on where it was."
            </p>
        </div>
    }
}
