//! `/showcase`: one running job shown by every progress component side by side, for people
//! who demo progress UIs and want to copy one. `?job=ID` names the job, so the page reloads.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;
use leptos_router::{lazy_route, LazyRoute};

use crate::components::{
    EtaRate, LogConsole, PhaseProgress, ProgressBar, RadialProgress, StartJobForm, StepLabel, Stepper,
};
use crate::hooks::{use_sse_progress_with_options, UseSseProgressOptions};
use crate::server_fns::{job_snapshot, JobPageData};

/// The showcase page.
#[component]
pub fn ShowcasePage() -> impl IntoView {
    let query = use_query_map();
    let job = move || query.read().get("job").unwrap_or_default();
    let data = Resource::new_blocking(job, |id| async move {
        if id.is_empty() {
            Ok(None)
        } else {
            job_snapshot(id).await
        }
    });
    view! {
        <Title text="Showcase"/>
        <section class="space-y-6">
            <div class="space-y-2">
                <h1 class="text-3xl font-bold tracking-tight">"Progress UI showcase"</h1>
                <p class="text-slate-600 dark:text-slate-400">
                    "One job, six ways to show it. Each is a Leptos component driven by "
                    <code class="rounded bg-slate-200 px-1 dark:bg-slate-800">"use_sse_progress"</code>
                    "; the "<strong>"discover"</strong>" job starts without knowing how much work it has."
                </p>
            </div>
            <Suspense fallback=|| view! { <p class="text-slate-500">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match data.await {
                        Ok(Some(job)) => view! { <Showcase job=job/> }.into_any(),
                        Ok(None) => view! {
                            <div class="rounded-2xl border border-slate-200 bg-white p-6 shadow-sm dark:border-slate-800 dark:bg-slate-900">
                                <StartJobForm busy=false preselect="discover" then="showcase"/>
                            </div>
                            <p class="text-slate-500 dark:text-slate-400">"Start a job to see every component follow it."</p>
                        }.into_any(),
                        Err(e) => view! { <p role="alert">{e.to_string()}</p> }.into_any(),
                    }
                })}
            </Suspense>
        </section>
    }
}

/// One card of the showcase: a title, the component, and how to use it.
#[component]
fn Card(title: &'static str, usage: &'static str, children: Children) -> impl IntoView {
    view! {
        <article class="flex flex-col gap-4 rounded-2xl border border-slate-200 bg-white p-5 shadow-sm dark:border-slate-800 dark:bg-slate-900">
            <h2 class="text-sm font-semibold uppercase tracking-wide text-slate-500 dark:text-slate-400">{title}</h2>
            <div class="flex-1">{children()}</div>
            <code class="block overflow-x-auto rounded-lg bg-slate-100 px-3 py-2 text-xs text-slate-700 dark:bg-slate-950 dark:text-slate-300">{usage}</code>
        </article>
    }
}

/// Every component, following one job.
#[component]
fn Showcase(job: JobPageData) -> impl IntoView {
    let id = job.state.id;
    let kind = job.state.kind.clone();
    let p = use_sse_progress_with_options(
        Signal::stored(Some(id)),
        UseSseProgressOptions::default().initial(job.state).initial_logs(job.logs),
    );
    let busy = Signal::derive(move || !p.status.get().is_some_and(|s| s.is_terminal()));
    let indeterminate = Signal::derive(move || p.snapshot.with(|s| s.as_ref().is_some_and(|s| s.indeterminate)));
    view! {
        <div class="rounded-2xl border border-slate-200 bg-white p-6 shadow-sm dark:border-slate-800 dark:bg-slate-900">
            <StartJobForm busy=busy preselect=kind then="showcase"/>
        </div>
        <div class="grid gap-4 md:grid-cols-2">
            <Card title="1 · Bar and step label" usage="<ProgressBar progress=p.progress status=p.status step=p.step/>">
                <div class="space-y-2">
                    <ProgressBar progress=p.progress status=p.status step=p.step/>
                    <StepLabel step=p.step status=p.status/>
                </div>
            </Card>
            <Card title="2 · Stepper" usage="<Stepper snapshot=p.snapshot/>">
                <Stepper snapshot=p.snapshot/>
            </Card>
            <Card title="3 · Ring" usage="<RadialProgress progress=p.progress status=p.status indeterminate=ind/>">
                <RadialProgress progress=p.progress status=p.status indeterminate=indeterminate/>
            </Card>
            <Card title="4 · Unknown, then known" usage="<PhaseProgress snapshot=p.snapshot/>">
                <PhaseProgress snapshot=p.snapshot/>
            </Card>
            <Card title="5 · Log console" usage="<LogConsole lines=p.logs dropped=p.logs_dropped/>">
                <LogConsole lines=p.logs dropped=p.logs_dropped/>
            </Card>
            <Card title="6 · ETA and rate" usage="<EtaRate snapshot=p.snapshot/>">
                <EtaRate snapshot=p.snapshot/>
            </Card>
        </div>
    }
}

/// `/showcase` as a lazy route: built with `cargo leptos --split` (scripts/build), its code is a file
/// of its own, fetched when a person first opens it, and stays out of the other pages' first load.
pub struct ShowcaseRoute;

#[lazy_route]
impl LazyRoute for ShowcaseRoute {
    fn data() -> Self {
        Self
    }

    fn view(this: Self) -> AnyView {
        let ShowcaseRoute = this;
        view! { <ShowcasePage/> }.into_any()
    }
}
