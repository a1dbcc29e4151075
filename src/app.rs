//! The HTML shell, the root `<App/>` and its routes.

use leptos::prelude::*;
use leptos_meta::{provide_meta_context, HashedStylesheet, Link, Meta, MetaTags, Title};
use leptos_router::components::{ParentRoute, Route, Router, Routes};
use leptos_router::{Lazy, ParamSegment, StaticSegment};

use crate::hooks::provide_event_hub;
use crate::pages::{DashboardRoute, HomePage, JobPage, NotFoundPage, ShowcaseRoute, StartLayout};

/// The document around the app, rendered on the server (which also gives it its
/// Content-Security-Policy, with the nonce Leptos puts on the scripts below).
pub fn shell(options: LeptosOptions) -> impl IntoView {
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8"/>
                <meta name="viewport" content="width=device-width, initial-scale=1"/>
                <meta name="color-scheme" content="light dark"/>
                <AutoReload options=options.clone()/>
                <HashedStylesheet id="leptos" options=options.clone()/>
                <HydrationScripts options/>
                <MetaTags/>
            </head>
            <body class="bg-slate-50 text-slate-900 antialiased dark:bg-slate-950 dark:text-slate-100">
                <App/>
            </body>
        </html>
    }
}

/// The application: a header and the routed page.
///
/// `data-hydrated` on the root turns `true` once the browser has hydrated the page, so tests
/// (and curious people) can tell when the buttons are live.
#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    // One event stream per browser, shared by every job view of every tab. It opens with the
    // app (after hydration): a job started here streams from its first event while its page
    // loads, and the header counts the jobs not finished yet, live.
    let hub = provide_event_hub();
    let hydrated = RwSignal::new(false);
    Effect::new(move |_| {
        hydrated.set(true);
        hub.subscribe(None, 0, |_, _| {});
        #[cfg(not(feature = "ssr"))]
        leptos::prelude::request_idle_callback(crate::pages::warm_up_job_view);
    });
    let unfinished = move || hub.jobs.with(|jobs| jobs.values().filter(|s| !s.status.is_terminal()).count());

    view! {
        <Link rel="icon" href="/favicon.ico"/>
        <Meta name="description" content="Long-running jobs with live progress over Server-Sent Events"/>
        <Title formatter=|text| format!("{text} · sse-progress")/>
        <Router>
            <div class="min-h-screen" data-hydrated=move || hydrated.get().to_string()>
                <header class="border-b border-slate-200 bg-white/80 backdrop-blur dark:border-slate-800 dark:bg-slate-900/80">
                    <nav class="mx-auto flex max-w-5xl items-center justify-between px-4 py-3">
                        <a href="/" class="flex items-center gap-2 font-semibold tracking-tight">
                            <span aria-hidden="true" class="inline-block h-3 w-3 rounded-full bg-indigo-500"></span>
                            "sse-progress"
                        </a>
                        <div class="flex items-center gap-4 text-sm">
                            <a href="/" class="text-slate-600 hover:text-indigo-600 dark:text-slate-300 dark:hover:text-indigo-400">"Start"</a>
                            <a href="/jobs" class="inline-flex items-center gap-1 text-slate-600 hover:text-indigo-600 dark:text-slate-300 dark:hover:text-indigo-400">
                                "My jobs"
                                {move || match unfinished() {
                                    0 => None,
                                    n => Some(view! {
                                        <span
                                            data-testid="unfinished-count"
                                            title=format!("{n} not finished")
                                            class="rounded-full bg-indigo-100 px-1.5 text-xs font-semibold tabular-nums text-indigo-700 dark:bg-indigo-900 dark:text-indigo-200"
                                        >
                                            {n}
                                            <span class="sr-only">" not finished"</span>
                                        </span>
                                    }),
                                }}
                            </a>
                            <a href="/showcase" class="text-slate-600 hover:text-indigo-600 dark:text-slate-300 dark:hover:text-indigo-400">"Showcase"</a>
                        </div>
                    </nav>
                </header>
                <main class="mx-auto max-w-5xl px-4 py-8 sm:py-12">
                    <Routes fallback=|| view! { <NotFoundPage/> }>
                        // Home and a job's page share the start form: moving from the one to
                        // the other after Start Processing only adds the job's view.
                        <ParentRoute path=StaticSegment("") view=StartLayout>
                            <Route path=StaticSegment("") view=HomePage/>
                            <Route path=(StaticSegment("jobs"), ParamSegment("id")) view=JobPage/>
                        </ParentRoute>
                        <Route path=StaticSegment("jobs") view={Lazy::<DashboardRoute>::new()}/>
                        <Route path=StaticSegment("showcase") view={Lazy::<ShowcaseRoute>::new()}/>
                    </Routes>
                </main>
            </div>
        </Router>
    }
}
