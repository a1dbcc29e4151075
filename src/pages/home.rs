//! `/`: what this is, and the form that starts a job.

use leptos::prelude::*;
use leptos_meta::Title;

use crate::components::StartJobForm;

/// The home page.
#[component]
pub fn HomePage() -> impl IntoView {
    view! {
        <Title text="Start a job"/>
        <section class="mx-auto max-w-3xl space-y-6">
            <div class="space-y-2">
                <h1 class="text-3xl font-bold tracking-tight">"Run a job, watch it live"</h1>
                <p class="text-slate-600 dark:text-slate-400">
                    "The job runs on the server. Its progress streams to this page over Server-Sent Events; "
                    "reload the page or lose the connection and it carries on where it was."
                </p>
            </div>
            <div class="rounded-2xl border border-slate-200 bg-white p-6 shadow-sm dark:border-slate-800 dark:bg-slate-900">
                <StartJobForm busy=false/>
            </div>
        </section>
    }
}
