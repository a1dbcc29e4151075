//! `/jobs/{id}`: one job, rendered on the server from its snapshot (no flash of 0 %), then
//! followed live in the browser. It sits in the start frame (`home.rs`) above the start form.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_params_map;

use super::home::StartFrame;
use super::set_not_found_status;
use crate::components::{CancelButton, ConnectionNotice, JobOutcome, LogConsole, ProgressBar, StatusBadge, StepLabel};
use crate::hooks::{use_event_hub, use_sse_progress_with_options, UseSseProgressOptions, UseSseProgressReturn};
use crate::model::{JobId, JobStatus, LogLine, Snapshot};
use crate::server_fns::job_snapshot;

/// The job page.
#[component]
pub fn JobPage() -> impl IntoView {
    let params = use_params_map();
    let id = move || params.read().get("id").unwrap_or_default();
    let hub = use_event_hub();

    move || {
        let id = id();
        // Moving here within the app (after Start Processing), the browser's stream may carry
        // the job from its first event already: show it at once, with no round trip. On the
        // server, and while hydrating, the hub holds nothing and the page loads as below.
        let known = hub.and_then(|hub| hub.whole(id.parse().ok()?));
        if let Some((state, logs)) = known {
            return view! { <JobView initial=state logs=logs/> }.into_any();
        }
        // Blocking: the server waits for the snapshot so the first HTML already shows the state.
        let snapshot = Resource::new_blocking(move || id.clone(), job_snapshot);
        view! {
            <Suspense fallback=|| view! { <p class="text-slate-500">"Loading job…"</p> }>
                {move || Suspend::new(async move {
                    match snapshot.await {
                        Ok(Some(job)) => view! { <JobView initial=job.state logs=job.logs/> }.into_any(),
                        Ok(None) => view! { <NoSuchJob/> }.into_any(),
                        Err(e) => view! { <LoadFailed message=e.to_string()/> }.into_any(),
                    }
                })}
            </Suspense>
        }
        .into_any()
    }
}

/// A job that exists: its live progress.
#[component]
fn JobView(initial: Snapshot, logs: Vec<LogLine>) -> impl IntoView {
    let id = initial.id;
    let kind = initial.kind.clone();
    let job = use_sse_progress_with_options(
        Signal::stored(Some(id)),
        UseSseProgressOptions::default().initial(initial).initial_logs(logs),
    );
    let busy = Signal::derive(move || !job.status.get().is_some_and(|s| s.is_terminal()));
    StartFrame::show_job(id, kind.clone(), busy);

    view! {
        <Title text=format!("Job {kind}")/>
        <JobArticle id kind job busy/>
    }
}

/// What a job's page shows of it, drawn from the hook's signals.
#[component]
fn JobArticle(id: JobId, kind: String, job: UseSseProgressReturn, busy: Signal<bool>) -> impl IntoView {
    view! {
        <article
            class="space-y-5 rounded-2xl border border-slate-200 bg-white p-6 shadow-sm dark:border-slate-800 dark:bg-slate-900"
            aria-labelledby="job-heading"
        >
            <header class="flex flex-wrap items-center justify-between gap-3">
                <div>
                    <h1 id="job-heading" class="text-xl font-semibold capitalize">{kind.clone()} " job"</h1>
                    <p class="font-mono text-xs text-slate-500 dark:text-slate-400">{id.to_string()}</p>
                </div>
                <StatusBadge status=job.status/>
            </header>
            <ProgressBar progress=job.progress status=job.status step=job.step indeterminate=job.indeterminate/>
            <div class="flex flex-wrap items-start justify-between gap-3">
              <div class="min-w-0 flex-1 space-y-1">
                <StepLabel step=job.step status=job.status/>
                // A failure's (or interruption's) message is its error, shown in the outcome below.
                <p data-testid="job-message" class="min-h-5 text-sm text-slate-600 dark:text-slate-400">
                    {move || {
                        let ended_badly = matches!(job.status.get(), Some(JobStatus::Failed | JobStatus::Interrupted));
                        (!ended_badly).then(|| job.message.get())
                    }}
                </p>
              </div>
              <CancelButton id=id active=busy/>
            </div>
            <ConnectionNotice connection=job.connection reconnect=job.reconnect/>
            <JobOutcome status=job.status result=job.result error=job.error kind=kind.clone()/>
            <LogConsole lines=job.logs dropped=job.logs_dropped/>
        </article>
    }
}

/// Draws a job's view once where nobody sees it, so that the browser has compiled its code
/// before the first Start Processing. Browsers compile wasm functions at their first call: in a
/// fresh tab the first job page took about 55 ms longer to show its progress than the next one
/// (click to progress painted, median 94 against 38 ms).
#[cfg(not(feature = "ssr"))]
pub fn warm_up() {
    use crate::model::LogLevel;
    use leptos::wasm_bindgen::JsCast;

    let Ok(id) = "00000000-0000-0000-0000-000000000000".parse::<JobId>() else { return };
    let state = Snapshot {
        status: JobStatus::Running,
        progress: 50.0,
        step: "Warming up".into(),
        step_index: 1,
        step_count: 2,
        message: "Halfway".into(),
        ..Snapshot::pending(id, "checksum", 0)
    };
    let line = LogLine {
        seq: 2,
        ts: 0,
        level: LogLevel::Info,
        target: "warm_up".into(),
        message: "a line".into(),
        fields: Default::default(),
    };
    let Ok(parent) = document().create_element("div") else { return };
    let view = leptos::mount::mount_to(parent.unchecked_into(), move || {
        // No job id: the hook shows `state` and opens nothing.
        let options = UseSseProgressOptions::default().initial(state).initial_logs(vec![line]);
        let job = use_sse_progress_with_options(Signal::stored(None), options);
        view! { <JobArticle id kind="checksum".to_string() job busy=Signal::stored(true)/> }
    });
    // Its effects run once it is mounted; then it goes.
    set_timeout(move || drop(view), std::time::Duration::ZERO);
}

/// No job has this id (or it expired).
#[component]
fn NoSuchJob() -> impl IntoView {
    set_not_found_status();
    view! {
        <Title text="No such job"/>
        <section class="mx-auto max-w-3xl space-y-3 rounded-2xl border border-slate-200 bg-white p-8 text-center shadow-sm dark:border-slate-800 dark:bg-slate-900">
            <h1 class="text-2xl font-bold">"No such job"</h1>
            <p class="text-slate-600 dark:text-slate-400">
                "There is no job with this id. It may never have existed, or it ended long enough ago to be forgotten."
            </p>
            <a href="/" class="inline-block font-medium text-indigo-600 hover:underline dark:text-indigo-400">
                "Start a new job"
            </a>
        </section>
    }
}

/// The job could not be loaded (the server did not answer as expected).
#[component]
fn LoadFailed(message: String) -> impl IntoView {
    view! {
        <section role="alert" class="rounded-2xl border border-rose-300 bg-rose-50 p-6 text-rose-900 dark:border-rose-800 dark:bg-rose-950 dark:text-rose-100">
            <h1 class="font-semibold">"The job could not be loaded"</h1>
            <p class="text-sm">{message}</p>
        </section>
    }
}
