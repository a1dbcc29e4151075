//! A job's own log lines as a console: level colours, timestamps, follows new lines unless
//! the person scrolled up (then a button tells how many new lines wait below and jumps to
//! them), and readable by screen readers (`role="log"`).
//!
//! Usage: `<LogConsole lines=job.logs dropped=job.logs_dropped/>` with the signals of
//! `use_sse_progress`. Lines are always shown as text, never as HTML.

use leptos::html::Div;
use leptos::prelude::*;

use crate::model::{clock, LogLevel, LogLine};

/// How close to the bottom (in pixels) still counts as "following".
const FOLLOW_SLACK: i32 = 24;

fn level_class(level: LogLevel) -> &'static str {
    match level {
        LogLevel::Error => "text-rose-400",
        LogLevel::Warn => "text-amber-300",
        LogLevel::Info => "text-sky-300",
        LogLevel::Debug | LogLevel::Trace => "text-slate-400",
    }
}

fn fields_text(line: &LogLine) -> String {
    line.fields
        .iter()
        .map(|(k, v)| match v {
            serde_json::Value::String(s) => format!("{k}={s}"),
            other => format!("{k}={other}"),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The console.
#[component]
pub fn LogConsole(
    /// The lines, oldest first.
    #[prop(into)]
    lines: Signal<Vec<LogLine>>,
    /// Lines the job wrote past its bounds.
    #[prop(into, optional)]
    dropped: Signal<u64>,
) -> impl IntoView {
    let scroller = NodeRef::<Div>::new();
    let following = RwSignal::new(true);
    // The newest line the person had on screen when they scrolled up (by sequence number).
    let read_up_to = RwSignal::new(0u64);
    let newest = move || lines.with(|l| l.last().map_or(0, |line| line.seq));
    let unseen = move || {
        let mark = read_up_to.get();
        lines.with(|l| l.iter().rev().take_while(|line| line.seq > mark).count())
    };
    // Where the console was last seen scrolled to: a smaller value means the person moved up.
    let last_top = StoredValue::new(0);
    let to_bottom = move || {
        request_animation_frame(move || {
            // Checked again now: the person may have started scrolling up since it was asked,
            // or left the page (then the console's signals are gone).
            if following.try_get_untracked() != Some(true) {
                return;
            }
            if let Some(el) = scroller.try_get_untracked().flatten() {
                el.set_scroll_top(el.scroll_height());
                last_top.try_set_value(el.scroll_top());
            }
        });
    };
    let stop_following = move || {
        if following.get_untracked() {
            read_up_to.set(newest());
            following.set(false);
        }
    };
    // After new lines are laid out, stay at the bottom if the person was there.
    Effect::new(move |_| {
        lines.track();
        if following.get_untracked() {
            to_bottom();
        }
    });
    // A wheel turned up is the earliest sign the person wants to read back: stop following
    // before the next line arrives, or following would undo their scroll.
    let on_wheel = move |e: leptos::ev::WheelEvent| {
        let can_go_up = scroller.get_untracked().is_some_and(|el| el.scroll_top() > 0);
        if e.delta_y() < 0.0 && can_go_up {
            stop_following();
        }
    };
    let on_scroll = move |_| {
        if let Some(el) = scroller.get_untracked() {
            let top = el.scroll_top();
            let at_bottom = el.scroll_height() - top - el.client_height() <= FOLLOW_SLACK;
            if top < last_top.get_value() {
                // Moved up (wheel, keyboard, scrollbar or touch), even if only a little so far.
                stop_following();
            } else if at_bottom {
                // Came back down to the newest line.
                following.set(true);
            }
            last_top.set_value(top);
        }
    };
    let jump = move |_| {
        following.set(true);
        to_bottom();
    };
    view! {
        <section aria-labelledby="log-heading" class="space-y-2">
            <div class="flex items-baseline justify-between">
                <h2 id="log-heading" class="text-sm font-semibold">"Log"</h2>
                <span class="text-xs text-slate-500 dark:text-slate-400">
                    {move || {
                        let n = lines.with(Vec::len);
                        let d = dropped.get();
                        let mut text = format!("{n} line{}", if n == 1 { "" } else { "s" });
                        if d > 0 {
                            text.push_str(&format!(", {d} dropped (over the job's log limit)"));
                        }
                        text
                    }}
                </span>
            </div>
            <div
                node_ref=scroller
                on:scroll=on_scroll
                on:wheel=on_wheel
                role="log"
                aria-live="polite"
                aria-label="Job log"
                tabindex="0"
                data-testid="log-console"
                class="h-48 overflow-y-auto rounded-lg bg-slate-950 p-3 font-mono text-xs leading-relaxed text-slate-200 ring-1 ring-slate-800 focus-visible:outline-2 focus-visible:outline-indigo-500"
            >
                <Show
                    when=move || lines.with(|l| !l.is_empty())
                    fallback=|| view! { <p class="text-slate-500">"No log lines yet."</p> }
                >
                    <For each=move || lines.get() key=|line| line.seq let(line)>
                        <p data-level=line.level.as_str() data-seq=line.seq class="whitespace-pre-wrap break-words">
                            <time class="text-slate-500">{clock(line.ts)}</time>
                            " "
                            <span class=format!("font-semibold uppercase {}", level_class(line.level))>
                                {line.level.as_str()}
                            </span>
                            " "
                            <span>{line.message.clone()}</span>
                            {(!line.fields.is_empty()).then(|| view! {
                                " " <span class="text-slate-400">{fields_text(&line)}</span>
                            })}
                        </p>
                    </For>
                </Show>
            </div>
            <Show when=move || !following.get() && unseen() != 0>
                <button
                    type="button"
                    on:click=jump
                    data-testid="log-jump"
                    class="rounded-md bg-slate-800 px-3 py-1 text-xs font-medium text-slate-100 hover:bg-slate-700 focus-visible:outline-2 focus-visible:outline-indigo-500 dark:bg-slate-700 dark:hover:bg-slate-600"
                >
                    {move || {
                        let n = unseen();
                        format!("Jump to the newest line ({n} new line{})", if n == 1 { "" } else { "s" })
                    }}
                </button>
            </Show>
        </section>
    }
}
