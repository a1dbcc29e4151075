//! Tells the person about the stream's connection only when it matters: "Reconnecting..."
//! while retrying (not a failure), "Connection lost" with a way to try again once retries ran out.

use leptos::prelude::*;

use crate::hooks::ConnectionState;

/// Nothing while connected; a notice while reconnecting or after the connection was lost.
#[component]
pub fn ConnectionNotice(
    /// The hook's connection state.
    #[prop(into)]
    connection: Signal<ConnectionState>,
    /// What "Try again" does (the hook's `reconnect`).
    reconnect: Callback<()>,
) -> impl IntoView {
    view! {
        <div data-testid="connection-notice">
            {move || match connection.get() {
                ConnectionState::Reconnecting => view! {
                    <p role="status" class="flex items-center gap-2 rounded-lg bg-amber-50 px-3 py-2 text-sm text-amber-900 dark:bg-amber-950 dark:text-amber-100">
                        <span aria-hidden="true" class="h-3 w-3 rounded-full border-2 border-current border-t-transparent motion-safe:animate-spin"></span>
                        "Reconnecting..."
                    </p>
                }.into_any(),
                ConnectionState::Lost => view! {
                    <div role="alert" class="flex flex-wrap items-center justify-between gap-2 rounded-lg bg-rose-50 px-3 py-2 text-sm text-rose-900 dark:bg-rose-950 dark:text-rose-100">
                        <span>"Connection lost. The job may still be running on the server."</span>
                        <button
                            type="button"
                            class="rounded-md bg-rose-600 px-3 py-1 font-medium text-white hover:bg-rose-700 focus-visible:outline-2 focus-visible:outline-offset-2 focus-visible:outline-rose-600"
                            on:click=move |_| reconnect.run(())
                        >
                            "Try again"
                        </button>
                    </div>
                }.into_any(),
                _ => ().into_any(),
            }}
        </div>
    }
}
