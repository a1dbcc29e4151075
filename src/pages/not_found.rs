//! Pages for what does not exist: an unknown address, or a job that never existed or expired.

use leptos::prelude::*;
use leptos_meta::Title;

/// Sets the HTTP status of the server-rendered response to 404 (nothing in the browser).
pub fn set_not_found_status() {
    #[cfg(feature = "ssr")]
    if let Some(response) = use_context::<leptos_axum::ResponseOptions>() {
        response.set_status(axum::http::StatusCode::NOT_FOUND);
    }
}

/// Shown for an address the app does not have.
#[component]
pub fn NotFoundPage() -> impl IntoView {
    set_not_found_status();
    view! {
        <Title text="Not found"/>
        <section class="space-y-3 text-center">
            <h1 class="text-2xl font-bold">"Page not found"</h1>
            <p class="text-slate-600 dark:text-slate-400">"There is nothing at this address."</p>
            <a href="/" class="inline-block font-medium text-indigo-600 hover:underline dark:text-indigo-400">
                "Start a job"
            </a>
        </section>
    }
}
