//! **Copy**: puts a text on the clipboard (a job's result, say) and says whether it worked.
//! Enabled once the page is interactive; where the browser offers no clipboard (an insecure
//! origin), it says to select the text instead.

use std::time::Duration;

use leptos::prelude::*;

/// How long "Copied" shows before the button reads "Copy" again.
const CONFIRM: Duration = Duration::from_secs(2);

/// What the last click did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Copied {
    Not,
    Done,
    Failed,
}

/// Writes `text` to the clipboard.
#[cfg(feature = "hydrate")]
async fn write(text: String) -> Result<(), String> {
    use wasm_bindgen::JsCast;
    let navigator = web_sys::window().ok_or("no window")?.navigator();
    let clipboard = js_sys::Reflect::get(&navigator, &"clipboard".into()).map_err(|_| "no clipboard")?;
    let write_text = js_sys::Reflect::get(&clipboard, &"writeText".into())
        .ok()
        .and_then(|f| f.dyn_into::<js_sys::Function>().ok())
        .ok_or("this page has no clipboard (it needs https)")?;
    let promise = write_text
        .call1(&clipboard, &text.into())
        .map_err(|e| format!("{e:?}"))?
        .dyn_into::<js_sys::Promise>()
        .map_err(|_| "the clipboard gave no answer")?;
    wasm_bindgen_futures::JsFuture::from(promise).await.map(|_| ()).map_err(|e| format!("{e:?}"))
}

/// The server never renders a click.
#[cfg(not(feature = "hydrate"))]
async fn write(_text: String) -> Result<(), String> {
    Err("copying needs the browser".into())
}

/// A small "Copy" button for `text`.
#[component]
pub fn CopyButton(
    /// What to copy.
    #[prop(into)]
    text: Signal<String>,
    /// What is copied, for screen readers: "the result" makes "Copy the result".
    #[prop(into)]
    what: String,
) -> impl IntoView {
    let copied = RwSignal::new(Copied::Not);
    let ready = RwSignal::new(false);
    Effect::new(move |_| ready.set(true));
    let copy = move |_| {
        let text = text.get_untracked();
        leptos::task::spawn_local(async move {
            let outcome = write(text).await;
            if let Err(e) = &outcome {
                leptos::logging::warn!("could not copy: {e}");
            }
            copied.try_set(if outcome.is_ok() { Copied::Done } else { Copied::Failed });
            set_timeout(move || copied.set(Copied::Not), CONFIRM);
        });
    };
    view! {
        <button
            type="button"
            on:click=copy
            disabled=move || !ready.get()
            data-testid="copy-button"
            class="shrink-0 rounded-md border border-slate-300 bg-white px-2.5 py-1 text-xs font-medium text-slate-700 hover:bg-slate-50 focus-visible:outline-2 focus-visible:outline-offset-2 focus-visible:outline-indigo-500 disabled:opacity-50 dark:border-slate-700 dark:bg-slate-900 dark:text-slate-200 dark:hover:bg-slate-800"
        >
            <span aria-live="polite">
                {move || match copied.get() {
                    Copied::Not => "Copy",
                    Copied::Done => "Copied",
                    Copied::Failed => "Select the text to copy",
                }}
            </span>
            <span class="sr-only">" " {what}</span>
        </button>
    }
}
