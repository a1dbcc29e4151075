//! The job-kind picker and the **Start Processing** button.
//!
//! A real `<form>` posting to the `start_job` server function: before hydration (or without
//! JavaScript) the server answers with a redirect to the new job's page; after hydration the
//! router follows the same redirect on the client.

use leptos::form::ActionForm;
use leptos::prelude::*;

use crate::server_fns::{job_kinds, StartJob};

/// Picks a job kind and starts it.
#[component]
pub fn StartJobForm(
    /// Disables the button, e.g. while this page's job is still running.
    #[prop(into)]
    busy: Signal<bool>,
    /// The kind picked at first, e.g. the kind of the job on screen so that starting again
    /// repeats it. Default: the first kind the server lists.
    #[prop(optional, into)]
    preselect: Option<String>,
    /// Holds the picked kind, for a page that sets it after the form is made (e.g. the job
    /// page, to the kind of the job it shows). Default: the form's own, from `preselect`.
    #[prop(optional)]
    selected: Option<RwSignal<Option<String>>>,
    /// Where to go once the job started: `"showcase"` for the showcase, `"dashboard"` to stay
    /// on the dashboard, else the job's page.
    #[prop(optional)]
    then: Option<&'static str>,
) -> impl IntoView {
    let action = ServerAction::<StartJob>::new();
    let kinds = OnceResource::new_blocking(job_kinds());
    let selected = selected.unwrap_or_else(|| RwSignal::new(preselect));
    let pending = action.pending();
    let failure = move || {
        action.value().get().and_then(Result::err).map(|e| match e {
            ServerFnError::ServerError(message) => message,
            other => other.to_string(),
        })
    };

    view! {
        <ActionForm action=action>
            {then.map(|then| view! { <input type="hidden" name="then" value=then/> })}
            <div class="flex flex-col gap-4 sm:flex-row sm:items-end">
                <div class="flex-1 space-y-1">
                    <label for="job-kind" class="block text-sm font-medium">"Job kind"</label>
                    <Suspense fallback=|| view! { <select id="job-kind" name="kind" disabled class="w-full rounded-lg border border-slate-300 px-3 py-2"></select> }>
                        {move || Suspend::new(async move {
                            let kinds = kinds.await.unwrap_or_default();
                            let first = kinds.first().map(|k| k.name.clone());
                            let options = kinds
                                .iter()
                                .map(|k| {
                                    let is_selected = selected.get_untracked().as_ref() == Some(&k.name);
                                    view! { <option value=k.name.clone() selected=is_selected>{k.name.clone()}</option> }
                                })
                                .collect_view();
                            let chosen = move || selected.get().or_else(|| first.clone());
                            let description = {
                                let chosen = chosen.clone();
                                move || {
                                    let chosen = chosen();
                                    kinds
                                        .iter()
                                        .find(|k| Some(&k.name) == chosen.as_ref())
                                        .map(|k| k.description.clone())
                                        .unwrap_or_default()
                                }
                            };
                            view! {
                                <select
                                    id="job-kind"
                                    name="kind"
                                    aria-describedby="job-kind-help"
                                    class="w-full rounded-lg border border-slate-300 bg-white px-3 py-2 capitalize shadow-sm focus:border-indigo-500 focus:outline-none focus:ring-2 focus:ring-indigo-500/30 dark:border-slate-700 dark:bg-slate-950"
                                    prop:value=move || chosen().unwrap_or_default()
                                    on:change=move |ev| selected.set(Some(event_target_value(&ev)))
                                >
                                    {options}
                                </select>
                                <p id="job-kind-help" class="text-sm text-slate-500 dark:text-slate-400">{description}</p>
                            }
                        })}
                    </Suspense>
                </div>
                <button
                    type="submit"
                    disabled=move || busy.get() || pending.get()
                    class="rounded-lg bg-indigo-600 px-5 py-2.5 font-semibold text-white shadow-sm transition hover:bg-indigo-700 focus-visible:outline-2 focus-visible:outline-offset-2 focus-visible:outline-indigo-600 disabled:cursor-not-allowed disabled:bg-slate-400 dark:disabled:bg-slate-700 dark:disabled:text-slate-400 sm:self-start sm:mt-6"
                >
                    "Start Processing"
                </button>
            </div>
        </ActionForm>
        {move || failure().map(|message| view! {
            <p role="alert" class="mt-3 text-sm text-rose-700 dark:text-rose-300">{message}</p>
        })}
    }
}
