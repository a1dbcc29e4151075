//! `/jobs`: the person's jobs, newest first, each with its live bar, status, step and age,
//! and Cancel / Open. It follows all of them, and jobs started in other tabs, over the tab's
//! one shared stream.

use std::collections::BTreeMap;
use std::time::Duration;

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::{lazy_route, LazyRoute};

use crate::components::{CancelButton, ProgressBar, StartJobForm, StatusBadge};
use crate::hooks::{use_event_hub, HubEvent, StepInfo};
use crate::model::{JobId, JobStatus, Snapshot};
use crate::server_fns::my_jobs;

/// "just now", "42 s ago", "3 min ago", "2 h ago".
pub fn age(now_ms: u64, created_ms: u64) -> String {
    let s = now_ms.saturating_sub(created_ms) / 1000;
    match s {
        0..=4 => "just now".into(),
        5..=59 => format!("{s} s ago"),
        60..=3599 => format!("{} min ago", s / 60),
        _ => format!("{} h ago", s / 3600),
    }
}

/// The dashboard page.
#[component]
pub fn DashboardPage() -> impl IntoView {
    let initial = Resource::new_blocking(|| (), |()| my_jobs());
    view! {
        <Title text="My jobs"/>
        <section class="mx-auto max-w-3xl space-y-6">
            <div class="space-y-2">
                <h1 class="text-3xl font-bold tracking-tight">"My jobs"</h1>
                <p class="text-slate-600 dark:text-slate-400">
                    "Every job you started, live, also those started in your other tabs, over one connection."
                </p>
            </div>
            <div class="rounded-2xl border border-slate-200 bg-white p-6 shadow-sm dark:border-slate-800 dark:bg-slate-900">
                <StartJobForm busy=false preselect="ticker" then="dashboard"/>
            </div>
            <Suspense fallback=|| view! { <p class="text-slate-500">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match initial.await {
                        Ok(jobs) => view! { <JobList initial=jobs/> }.into_any(),
                        Err(e) => view! { <p role="alert">{e.to_string()}</p> }.into_any(),
                    }
                })}
            </Suspense>
        </section>
    }
}

/// The list, kept current by the tab's shared stream.
#[component]
fn JobList(initial: Vec<Snapshot>) -> impl IntoView {
    let jobs = RwSignal::new(initial.into_iter().map(|s| (s.id, s)).collect::<BTreeMap<JobId, Snapshot>>());
    if let Some(hub) = use_event_hub() {
        let key = hub.subscribe(None, 0, move |id, event| {
            if let HubEvent::State(state) = event {
                jobs.update(|all| {
                    if all.get(&id).is_none_or(|known| known.seq < state.seq) {
                        all.insert(id, state);
                    }
                });
            }
        });
        on_cleanup(move || hub.unsubscribe(key));
    }
    let now = RwSignal::new(crate::model::now_ms());
    #[cfg(not(feature = "ssr"))]
    if let Ok(ticker) = set_interval_with_handle(move || now.set(crate::model::now_ms()), Duration::from_secs(1)) {
        on_cleanup(move || ticker.clear());
    }
    #[cfg(feature = "ssr")]
    let _ = Duration::ZERO;
    let ordered = move || {
        let mut list: Vec<Snapshot> = jobs.with(|all| all.values().cloned().collect());
        list.sort_by(|a, b| b.created.cmp(&a.created).then(b.id.cmp(&a.id)));
        list
    };
    view! {
        <Show
            when=move || jobs.with(|j| !j.is_empty())
            fallback=|| view! { <p data-testid="no-jobs" class="text-slate-500 dark:text-slate-400">"No jobs yet. Start one above."</p> }
        >
            <ul data-testid="job-list" class="space-y-3">
                <For each=ordered key=|s| s.id let(job)>
                    <JobRow id=job.id jobs=jobs now=now/>
                </For>
            </ul>
        </Show>
    }
}

/// One job of the list.
#[component]
fn JobRow(id: JobId, jobs: RwSignal<BTreeMap<JobId, Snapshot>>, now: RwSignal<u64>) -> impl IntoView {
    let state = Memo::new(move |_| jobs.with(|all| all.get(&id).cloned()));
    let status = Signal::derive(move || state.get().map(|s| s.status));
    let progress = Signal::derive(move || state.get().map_or(0.0, |s| s.progress));
    let measuring = Signal::derive(move || state.get().is_some_and(|s| s.measuring()));
    let step = Signal::derive(move || {
        state.get().filter(|s| s.step_index > 0).map(|s| StepInfo {
            name: s.step,
            index: s.step_index,
            count: s.step_count,
        })
    });
    let active = Signal::derive(move || !status.get().is_some_and(|s| s.is_terminal()));
    let kind = move || state.get().map(|s| s.kind).unwrap_or_default();
    let label = move || step.get().map(|s| s.label());
    // The latest message, or why the job failed or was interrupted; shown as text, never as HTML.
    let detail = move || {
        state.get().map(|s| match s.error {
            Some(error) if s.status == JobStatus::Interrupted => ("block text-amber-800 dark:text-amber-300", error),
            Some(error) => ("block text-rose-700 dark:text-rose-300", error),
            None => ("block truncate text-slate-500 dark:text-slate-400", s.message),
        })
    };
    let when = move || state.get().map(|s| age(now.get(), s.created)).unwrap_or_default();
    view! {
        <li data-testid="job-row" data-job=id.to_string() class="space-y-3 rounded-2xl border border-slate-200 bg-white p-4 shadow-sm dark:border-slate-800 dark:bg-slate-900">
            <div class="flex flex-wrap items-center justify-between gap-2">
                <div class="min-w-0">
                    <p class="font-semibold capitalize">{kind}</p>
                    <p class="truncate font-mono text-xs text-slate-500 dark:text-slate-400">{id.to_string()} " · " {when}</p>
                </div>
                <div class="flex items-center gap-2">
                    <StatusBadge status=status/>
                    <CancelButton id=id active=active/>
                    <a href=format!("/jobs/{id}") class="rounded-lg border border-slate-300 px-4 py-2 text-sm font-medium hover:border-indigo-400 hover:text-indigo-700 dark:border-slate-700 dark:hover:text-indigo-300">"Open"</a>
                </div>
            </div>
            <ProgressBar progress=progress status=status step=step indeterminate=measuring/>
            <p class="text-sm">
                <span class="text-slate-700 dark:text-slate-300">{label}</span>
                {move || detail().filter(|(_, text)| !text.is_empty()).map(|(class, text)| {
                    view! { <span data-testid="job-detail" class=class>{text}</span> }
                })}
            </p>
        </li>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_naturally() {
        assert_eq!(age(10_000, 9_000), "just now");
        assert_eq!(age(60_000, 18_000), "42 s ago");
        assert_eq!(age(400_000, 200_000), "3 min ago");
        assert_eq!(age(8_000_000, 0), "2 h ago");
    }
}

/// `/jobs` as a lazy route: built with `cargo leptos --split` (scripts/build), its code is a file
/// of its own, fetched when a person first opens it, and stays out of the other pages' first load.
pub struct DashboardRoute;

#[lazy_route]
impl LazyRoute for DashboardRoute {
    fn data() -> Self {
        Self
    }

    fn view(this: Self) -> AnyView {
        let DashboardRoute = this;
        view! { <DashboardPage/> }.into_any()
    }
}
