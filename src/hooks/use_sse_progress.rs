//! `use_sse_progress`: one job's live state as Leptos signals, fed by its event stream.
//!
//! Over 450 lines on purpose: the hook, its options and its return are one public surface
//! (leptos-use keeps a hook in one file), and most of it is their documentation.

use std::time::Duration;

use leptos::prelude::*;
use serde_json::Value;

use crate::model::{JobId, JobStatus, LogLine, Snapshot};

pub use super::connection::ConnectionState;

/// How a hook reaches its job's events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Transport {
    /// The tab's one shared stream of all the owner's jobs (`/api/events`, through the
    /// `EventHub` that `<App/>` provides), so any number of hooks use one connection. Falls
    /// back to `Dedicated` where no hub is provided.
    #[default]
    Shared,
    /// An `EventSource` of its own on the job's stream (`/api/jobs/{id}/events`).
    Dedicated,
}

/// The current step of a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepInfo {
    /// The step's name, e.g. "Processing".
    pub name: String,
    /// Its 1-based number.
    pub index: u32,
    /// How many steps there are; 0 when not known yet.
    pub count: u32,
}

impl StepInfo {
    /// "Step 2 of 4: Processing".
    pub fn label(&self) -> String {
        crate::model::step_label(self.index, self.count, &self.name).unwrap_or_default()
    }
}

/// Options of [`use_sse_progress_with_options`].
#[derive(Debug, Clone)]
pub struct UseSseProgressOptions {
    /// A state to start from, e.g. the snapshot the server rendered the page with, so the
    /// first paint is the job's real state and the stream resumes after its `seq`.
    /// Default: `None` (start empty, replay the job's events from the beginning).
    pub initial: Option<Snapshot>,
    /// Log lines to start from, e.g. the recent lines the server rendered the page with.
    /// Default: none.
    pub initial_logs: Vec<LogLine>,
    /// The newest log lines kept in [`UseSseProgressReturn::logs`]. Default: 500.
    pub max_log_lines: usize,
    /// How the hook reaches the job's events. Default: [`Transport::Shared`].
    pub transport: Transport,
    /// For [`Transport::Dedicated`]: the path the job's events are under; the hook opens
    /// `{events_base}/{id}/events`. Default: `"/api/jobs"`.
    pub events_base: String,
    /// Reconnection attempts after the stream drops, before the state becomes `Lost`.
    /// Default: 6.
    pub max_retries: u32,
    /// Wait before the first reconnection attempt; each further attempt doubles it, with
    /// ±20 % jitter. Default: 500 ms.
    pub retry_delay: Duration,
    /// The longest wait between attempts. Default: 5 s.
    pub max_retry_delay: Duration,
}

impl Default for UseSseProgressOptions {
    fn default() -> Self {
        Self {
            initial: None,
            initial_logs: Vec::new(),
            max_log_lines: 500,
            transport: Transport::Shared,
            events_base: "/api/jobs".into(),
            max_retries: 6,
            retry_delay: Duration::from_millis(500),
            max_retry_delay: Duration::from_secs(5),
        }
    }
}

impl UseSseProgressOptions {
    /// Starts from `snapshot` (see [`initial`](Self::initial)).
    pub fn initial(mut self, snapshot: Snapshot) -> Self {
        self.initial = Some(snapshot);
        self
    }

    /// Starts with these log lines (see [`initial_logs`](Self::initial_logs)).
    pub fn initial_logs(mut self, lines: Vec<LogLine>) -> Self {
        self.initial_logs = lines;
        self
    }

    /// Sets [`events_base`](Self::events_base) and uses a dedicated stream.
    pub fn events_base(mut self, base: impl Into<String>) -> Self {
        self.events_base = base.into();
        self.transport = Transport::Dedicated;
        self
    }

    /// Sets [`transport`](Self::transport).
    pub fn transport(mut self, transport: Transport) -> Self {
        self.transport = transport;
        self
    }

    /// Sets [`max_retries`](Self::max_retries).
    pub fn max_retries(mut self, retries: u32) -> Self {
        self.max_retries = retries;
        self
    }

    /// Sets [`retry_delay`](Self::retry_delay) and [`max_retry_delay`](Self::max_retry_delay).
    pub fn retry_delays(mut self, first: Duration, max: Duration) -> Self {
        self.retry_delay = first;
        self.max_retry_delay = max;
        self
    }
}

/// What [`use_sse_progress`] returns: the job's state as signals, and the connection's controls.
#[derive(Clone, Copy)]
pub struct UseSseProgressReturn {
    /// The whole latest state; `None` until the first event (or `initial`).
    pub snapshot: Signal<Option<Snapshot>>,
    /// The job's status.
    pub status: Signal<Option<JobStatus>>,
    /// Percent done, 0-100.
    pub progress: Signal<f64>,
    /// Whether the job runs without knowing its total yet (`progress` means nothing then).
    pub indeterminate: Signal<bool>,
    /// The current step; `None` before the first.
    pub step: Signal<Option<StepInfo>>,
    /// The latest message.
    pub message: Signal<String>,
    /// The result, once the job completed.
    pub result: Signal<Option<Value>>,
    /// The job's error message, once it failed.
    pub error: Signal<Option<String>>,
    /// The job's newest log lines, oldest first (at most `max_log_lines`).
    pub logs: Signal<Vec<LogLine>>,
    /// How many log lines the job wrote past its bounds (nobody sees those).
    pub logs_dropped: Signal<u64>,
    /// The stream's connection state.
    pub connection: Signal<ConnectionState>,
    /// Closes the stream and stops retrying. The signals keep their last values.
    pub close: Callback<()>,
    /// Opens the stream again (after `Lost` or `close()`), resuming after the last event seen.
    pub reconnect: Callback<()>,
}

/// Whether `incoming` is news to a viewer that has `current`: only a later sequence number is.
/// Replayed or duplicated events are dropped, so the view never goes backwards.
pub fn is_newer(current: Option<&Snapshot>, incoming: &Snapshot) -> bool {
    current.is_none_or(|c| c.id != incoming.id || incoming.seq > c.seq)
}

/// Follows the job `job_id` names (none while it is `None`) with default options.
///
/// ## Usage
/// ```ignore
/// let job = use_sse_progress(Signal::derive(move || Some(id)));
/// view! { <progress max="100" value=move || job.progress.get()/> }
/// ```
///
/// ## Server-Side Rendering
/// On the server the hook opens nothing: its signals hold `initial` (or nothing) so the page
/// renders the job's current state; the browser connects after hydration.
pub fn use_sse_progress(job_id: impl Into<Signal<Option<JobId>>>) -> UseSseProgressReturn {
    use_sse_progress_with_options(job_id, UseSseProgressOptions::default())
}

/// [`use_sse_progress`] with options.
pub fn use_sse_progress_with_options(
    job_id: impl Into<Signal<Option<JobId>>>,
    options: UseSseProgressOptions,
) -> UseSseProgressReturn {
    let job_id = job_id.into();
    let initial_connection = match &options.initial {
        Some(s) if s.status.is_terminal() => ConnectionState::Closed,
        _ => ConnectionState::Connecting,
    };
    let state = RwSignal::new(options.initial.clone());
    let logs = RwSignal::new(options.initial_logs.clone());
    let connection = RwSignal::new(initial_connection);

    let (close, reconnect) = transport::start(job_id, state, logs, connection, options);

    UseSseProgressReturn {
        snapshot: state.into(),
        // A memo: views that depend on the status alone redraw when it changes, not at every
        // new state of the job (a redraw would swallow a click on what it redraws).
        status: Memo::new(move |_| state.with(|s| s.as_ref().map(|s| s.status))).into(),
        progress: Signal::derive(move || state.with(|s| s.as_ref().map_or(0.0, |s| s.progress))),
        indeterminate: Signal::derive(move || state.with(|s| s.as_ref().is_some_and(Snapshot::measuring))),
        step: Signal::derive(move || {
            state.with(|s| {
                s.as_ref().filter(|s| s.step_index > 0).map(|s| StepInfo {
                    name: s.step.clone(),
                    index: s.step_index,
                    count: s.step_count,
                })
            })
        }),
        message: Signal::derive(move || state.with(|s| s.as_ref().map(|s| s.message.clone()).unwrap_or_default())),
        result: Signal::derive(move || state.with(|s| s.as_ref().and_then(|s| s.data.clone()))),
        error: Signal::derive(move || state.with(|s| s.as_ref().and_then(|s| s.error.clone()))),
        logs: logs.into(),
        logs_dropped: Signal::derive(move || state.with(|s| s.as_ref().map_or(0, |s| s.logs_dropped))),
        connection: connection.into(),
        close,
        reconnect,
    }
}

/// On the server: nothing to connect; the controls do nothing.
#[cfg(feature = "ssr")]
mod transport {
    use super::*;

    pub(super) fn start(
        _job_id: Signal<Option<JobId>>,
        _state: RwSignal<Option<Snapshot>>,
        _logs: RwSignal<Vec<LogLine>>,
        _connection: RwSignal<ConnectionState>,
        _options: UseSseProgressOptions,
    ) -> (Callback<()>, Callback<()>) {
        (Callback::new(|()| {}), Callback::new(|()| {}))
    }
}

/// In the browser: one `EventSource` per job, reopened with back-off when it drops.
#[cfg(not(feature = "ssr"))]
mod transport {
    use super::*;
    use crate::hooks::event_hub::{use_event_hub, EventHub, HubEvent, SubscriptionKey};
    use crate::hooks::event_source::{Connection, Handlers};
    use crate::retry::backoff;
    use leptos::leptos_dom::helpers::TimeoutHandle;

    /// Everything the connection's callbacks share. All fields are `Copy` handles.
    #[derive(Clone, Copy)]
    struct Link {
        job_id: Signal<Option<JobId>>,
        state: RwSignal<Option<Snapshot>>,
        logs: RwSignal<Vec<LogLine>>,
        connection: RwSignal<ConnectionState>,
        source: StoredValue<Option<Connection>, LocalStorage>,
        timer: StoredValue<Option<TimeoutHandle>, LocalStorage>,
        attempt: StoredValue<u32>,
        options: StoredValue<UseSseProgressOptions>,
        /// The tab's shared stream, when the hook uses it.
        hub: Option<EventHub>,
        /// The subscription on the hub while subscribed.
        key: StoredValue<Option<SubscriptionKey>>,
    }

    impl Link {
        /// Drops the current connection (after the callback that may be running returns).
        fn drop_source(self) {
            if let (Some(hub), Some(key)) = (self.hub, self.key.try_update_value(Option::take).flatten()) {
                hub.unsubscribe(key);
            }
            if let Some(old) = self.source.try_update_value(Option::take).flatten() {
                old.close();
                set_timeout(move || drop(old), Duration::ZERO);
            }
            if let Some(timer) = self.timer.try_update_value(Option::take).flatten() {
                timer.clear();
            }
        }

        fn close(self) {
            self.drop_source();
            self.connection.try_set(ConnectionState::Closed);
        }

        fn apply(self, incoming: Snapshot) {
            let Some(current_id) = self.job_id.get_untracked() else { return };
            if incoming.id != current_id {
                return;
            }
            let newer = self.state.with_untracked(|s| is_newer(s.as_ref(), &incoming));
            if newer {
                let ended = incoming.status.is_terminal();
                self.state.set(Some(incoming));
                if ended {
                    self.close();
                }
            }
        }

        /// The newest event this view has: where a new stream resumes.
        fn cursor(self) -> u64 {
            let state = self.state.with_untracked(|s| s.as_ref().map_or(0, |s| s.seq));
            let log = self.logs.with_untracked(|l| l.last().map_or(0, |l| l.seq));
            state.max(log)
        }

        fn add_log(self, line: LogLine) {
            if line.seq <= self.cursor() {
                return;
            }
            let max = self.options.with_value(|o| o.max_log_lines.max(1));
            self.logs.update(|lines| {
                lines.push(line);
                if lines.len() > max {
                    let extra = lines.len() - max;
                    lines.drain(..extra);
                }
            });
        }

        fn connect(self) {
            self.drop_source();
            let Some(id) = self.job_id.get_untracked() else {
                self.connection.set(ConnectionState::Closed);
                return;
            };
            let cursor = self.cursor();
            let seen = self
                .state
                .with_untracked(|s| s.as_ref().filter(|s| s.id == id).map(|s| (cursor, s.status.is_terminal())));
            if let Some((_, true)) = seen {
                self.connection.set(ConnectionState::Closed);
                return;
            }
            if let Some(hub) = self.hub {
                let key = hub.subscribe(Some(id), cursor, move |_, event| match event {
                    HubEvent::State(state) => self.apply(state),
                    HubEvent::Log(line) => self.add_log(line),
                    HubEvent::End => self.close(),
                });
                self.key.set_value(Some(key));
                self.connection.set(hub.connection.get_untracked());
                return;
            }
            let base = self.options.with_value(|o| o.events_base.clone());
            let url = match seen {
                Some((seq, _)) => format!("{base}/{id}/events?last_event_id={seq}"),
                None => format!("{base}/{id}/events"),
            };
            let handlers = Handlers {
                on_open: Box::new(move || {
                    self.connection.set(ConnectionState::Open);
                }),
                on_event: Box::new(move |name, data: String| match name {
                    "log" => match serde_json::from_str::<LogLine>(&data) {
                        Ok(line) => self.add_log(line),
                        Err(e) => leptos::logging::warn!("ignoring a log event that does not parse: {e}"),
                    },
                    "end" => self.close(),
                    _ => match serde_json::from_str::<Snapshot>(&data) {
                        Ok(snapshot) => {
                            self.attempt.set_value(0);
                            self.apply(snapshot);
                        }
                        Err(e) => leptos::logging::warn!("ignoring an event that is not a job state: {e}"),
                    },
                }),
                on_error: Box::new(move || self.retry()),
            };
            match Connection::open(&url, handlers) {
                Ok(conn) => self.source.set_value(Some(conn)),
                Err(e) => {
                    leptos::logging::warn!("cannot open the event stream {url}: {e}");
                    self.retry();
                }
            }
        }

        fn retry(self) {
            self.drop_source();
            if self.state.with_untracked(|s| s.as_ref().is_some_and(|s| s.status.is_terminal())) {
                self.connection.set(ConnectionState::Closed);
                return;
            }
            let attempt = self.attempt.get_value() + 1;
            let (max, first, cap) = self.options.with_value(|o| (o.max_retries, o.retry_delay, o.max_retry_delay));
            if attempt > max {
                self.connection.set(ConnectionState::Lost);
                return;
            }
            self.attempt.set_value(attempt);
            self.connection.set(ConnectionState::Reconnecting);
            let delay = backoff(first, cap, attempt, js_sys::Math::random());
            let handle = set_timeout_with_handle(move || self.connect(), delay).ok();
            self.timer.set_value(handle);
        }
    }

    pub(super) fn start(
        job_id: Signal<Option<JobId>>,
        state: RwSignal<Option<Snapshot>>,
        logs: RwSignal<Vec<LogLine>>,
        connection: RwSignal<ConnectionState>,
        options: UseSseProgressOptions,
    ) -> (Callback<()>, Callback<()>) {
        let hub = match options.transport {
            Transport::Shared => use_event_hub(),
            Transport::Dedicated => None,
        };
        let link = Link {
            job_id,
            state,
            logs,
            connection,
            source: StoredValue::new_local(None),
            timer: StoredValue::new_local(None),
            attempt: StoredValue::new(0),
            options: StoredValue::new(options),
            hub,
            key: StoredValue::new(None),
        };
        // On the shared stream, the hook's connection is the tab's, while it follows its job.
        if let Some(hub) = hub {
            Effect::new(move |_| {
                let tab = hub.connection.get();
                if link.key.with_value(Option::is_some) {
                    connection.set(tab);
                }
            });
        }
        // Runs after hydration, and again whenever the job id changes.
        Effect::new(move |_| {
            let id = job_id.get();
            let stale = state.with_untracked(|s| s.as_ref().is_some_and(|s| Some(s.id) != id));
            if stale {
                state.set(None);
                logs.set(Vec::new());
            }
            link.attempt.set_value(0);
            link.connect();
        });
        on_cleanup(move || link.drop_source());
        (
            Callback::new(move |()| link.close()),
            Callback::new(move |()| {
                link.attempt.set_value(0);
                link.connection.set(ConnectionState::Connecting);
                if let Some(hub) = link.hub {
                    hub.reconnect();
                }
                link.connect();
            }),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(seq: u64) -> Snapshot {
        let id: JobId = "67e55044-10b1-426f-9247-bb680e5fe0c8".parse().expect("id");
        Snapshot { seq, ..Snapshot::pending(id, "ticker", 0) }
    }

    #[test]
    fn only_later_events_are_news() {
        assert!(is_newer(None, &snap(1)));
        assert!(is_newer(Some(&snap(3)), &snap(4)));
        assert!(!is_newer(Some(&snap(3)), &snap(3)), "a duplicate is dropped");
        assert!(!is_newer(Some(&snap(3)), &snap(2)), "a replayed event is dropped");
    }
}
