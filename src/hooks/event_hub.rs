//! One event stream per browser tab for every job the tab shows (`GET /api/events`), so ten
//! running jobs do not hit the browser's six-connections-per-host limit. `use_sse_progress`
//! and the dashboard subscribe to it; it reconnects with back-off and resumes each job exactly
//! (`after=JOB:SEQ,...`).
//!
//! Provided once by `<App/>` ([`provide_event_hub`]); on the server it holds signals only.

use std::collections::BTreeMap;

use leptos::prelude::*;

use super::connection::ConnectionState;
use crate::model::{JobId, LogLine, Snapshot};

/// Something that happened to one job on the tab's stream.
#[derive(Debug, Clone, PartialEq)]
pub enum HubEvent {
    /// Its new state.
    State(Snapshot),
    /// A line its code logged.
    Log(LogLine),
    /// It ended; nothing more will come.
    End,
}

/// The tab's shared stream. Cheap to copy.
#[derive(Clone, Copy)]
pub struct EventHub {
    /// The stream's connection state.
    pub connection: RwSignal<ConnectionState>,
    /// The newest state of every job the stream has shown, by id.
    pub jobs: RwSignal<BTreeMap<JobId, Snapshot>>,
    #[cfg(not(feature = "ssr"))]
    inner: StoredValue<browser::Hub, LocalStorage>,
}

/// Makes the tab's hub and provides it to every component below.
pub fn provide_event_hub() -> EventHub {
    let hub = EventHub {
        connection: RwSignal::new(ConnectionState::Closed),
        jobs: RwSignal::new(BTreeMap::new()),
        #[cfg(not(feature = "ssr"))]
        inner: StoredValue::new_local(browser::Hub::default()),
    };
    provide_context(hub);
    hub
}

/// The tab's hub, if `<App/>` provided one.
pub fn use_event_hub() -> Option<EventHub> {
    use_context::<EventHub>()
}

/// A subscription's handle; pass it to [`EventHub::unsubscribe`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubscriptionKey(u64);

#[cfg(feature = "ssr")]
impl EventHub {
    /// On the server: nothing to follow.
    pub fn subscribe(&self, _job: Option<JobId>, _seen: u64, _on: impl Fn(JobId, HubEvent) + 'static) -> SubscriptionKey {
        SubscriptionKey(0)
    }
    /// On the server: nothing to stop.
    pub fn unsubscribe(&self, _key: SubscriptionKey) {}
    /// On the server: nothing to reconnect.
    pub fn reconnect(&self) {}
}

#[cfg(not(feature = "ssr"))]
mod browser {
    use std::collections::{HashMap, VecDeque};
    use std::rc::Rc;
    use std::time::Duration;

    use leptos::leptos_dom::helpers::TimeoutHandle;
    use leptos::prelude::*;
    use serde::Deserialize;

    use super::{EventHub, HubEvent, SubscriptionKey};
    use crate::hooks::event_source::{Connection, Handlers};
    use crate::hooks::connection::ConnectionState;
    use crate::retry::backoff;
    use crate::model::{JobId, LogLine, Snapshot};

    /// Where the tab's stream is.
    const URL: &str = "/api/events";
    /// Log lines kept per job for components that subscribe late.
    const KEPT_LOG_LINES: usize = 500;
    const MAX_RETRIES: u32 = 6;
    const FIRST_RETRY: Duration = Duration::from_millis(500);
    const MAX_RETRY: Duration = Duration::from_secs(5);
    /// How long the stream stays open with nobody listening (page changes resubscribe).
    const LINGER: Duration = Duration::from_secs(2);

    type Listener = Rc<dyn Fn(JobId, HubEvent)>;

    #[derive(Default)]
    pub(crate) struct Hub {
        source: Option<Connection>,
        listeners: Vec<(u64, Option<JobId>, Listener)>,
        next_key: u64,
        cursors: HashMap<JobId, u64>,
        logs: HashMap<JobId, VecDeque<LogLine>>,
        ended: HashMap<JobId, bool>,
        attempt: u32,
        timer: Option<TimeoutHandle>,
        linger: Option<TimeoutHandle>,
    }

    #[derive(Deserialize)]
    struct Tagged {
        job: JobId,
    }

    #[derive(Deserialize)]
    struct TaggedLog {
        job: JobId,
        #[serde(flatten)]
        line: LogLine,
    }

    impl EventHub {
        fn with<R>(&self, f: impl FnOnce(&mut Hub) -> R) -> Option<R> {
            self.inner.try_update_value(f)
        }

        /// Calls `on` for every event of `job` (of every job for `None`) after sequence `seen`,
        /// starting with what the tab already has. Opens the stream when needed.
        pub fn subscribe(&self, job: Option<JobId>, seen: u64, on: impl Fn(JobId, HubEvent) + 'static) -> SubscriptionKey {
            let on: Listener = Rc::new(on);
            let key = self
                .with(|hub| {
                    hub.next_key += 1;
                    if let Some(linger) = hub.linger.take() {
                        linger.clear();
                    }
                    hub.listeners.push((hub.next_key, job, on.clone()));
                    hub.next_key
                })
                .unwrap_or(0);
            // Replay what the tab already knows of this job.
            if let Some(job) = job {
                let state = self.jobs.with_untracked(|j| j.get(&job).cloned());
                let lines: Vec<LogLine> = self
                    .with(|hub| hub.logs.get(&job).map(|l| l.iter().filter(|l| l.seq > seen).cloned().collect()).unwrap_or_default())
                    .unwrap_or_default();
                for line in lines {
                    on(job, HubEvent::Log(line));
                }
                if let Some(state) = state.filter(|s| s.seq > seen) {
                    on(job, HubEvent::State(state));
                }
                if self.with(|hub| hub.ended.get(&job).copied().unwrap_or(false)).unwrap_or(false) {
                    on(job, HubEvent::End);
                }
                self.with(|hub| {
                    let cursor = hub.cursors.entry(job).or_insert(seen);
                    *cursor = (*cursor).max(seen);
                });
            }
            if self.with(|hub| hub.source.is_none() && hub.timer.is_none()).unwrap_or(false) {
                self.connect();
            }
            SubscriptionKey(key)
        }

        /// Stops a subscription; the stream closes shortly after its last one stops.
        pub fn unsubscribe(&self, key: SubscriptionKey) {
            let hub_copy = *self;
            let idle = self
                .with(|hub| {
                    hub.listeners.retain(|(k, _, _)| *k != key.0);
                    hub.listeners.is_empty()
                })
                .unwrap_or(false);
            if idle {
                let handle = set_timeout_with_handle(
                    move || {
                        if hub_copy.with(|hub| hub.listeners.is_empty()).unwrap_or(false) {
                            hub_copy.drop_source();
                            hub_copy.connection.try_set(ConnectionState::Closed);
                        }
                    },
                    LINGER,
                )
                .ok();
                self.with(|hub| hub.linger = handle);
            }
        }

        /// Opens the stream again now (after `Lost`), resuming every job.
        pub fn reconnect(&self) {
            self.with(|hub| hub.attempt = 0);
            self.connect();
        }

        fn dispatch(&self, job: JobId, event: HubEvent) {
            let listeners: Vec<Listener> = self
                .with(|hub| {
                    hub.listeners
                        .iter()
                        .filter(|(_, j, _)| j.is_none_or(|j| j == job))
                        .map(|(_, _, l)| l.clone())
                        .collect()
                })
                .unwrap_or_default();
            for listener in listeners {
                listener(job, event.clone());
            }
        }

        fn on_state(&self, data: &str) {
            let Ok(state) = serde_json::from_str::<Snapshot>(data) else { return };
            let job = state.id;
            let newer = self
                .with(|hub| {
                    hub.attempt = 0;
                    let cursor = hub.cursors.entry(job).or_insert(0);
                    let newer = state.seq > *cursor;
                    *cursor = (*cursor).max(state.seq);
                    newer
                })
                .unwrap_or(false);
            let known_newer = self.jobs.with_untracked(|j| j.get(&job).is_none_or(|s| s.seq < state.seq));
            if known_newer {
                self.jobs.update(|j| {
                    j.insert(job, state.clone());
                });
            }
            if newer || known_newer {
                self.dispatch(job, HubEvent::State(state));
            }
        }

        fn on_log(&self, data: &str) {
            let Ok(TaggedLog { job, line }) = serde_json::from_str::<TaggedLog>(data) else { return };
            let newer = self
                .with(|hub| {
                    let cursor = hub.cursors.entry(job).or_insert(0);
                    if line.seq <= *cursor {
                        return false;
                    }
                    *cursor = line.seq;
                    let kept = hub.logs.entry(job).or_default();
                    kept.push_back(line.clone());
                    if kept.len() > KEPT_LOG_LINES {
                        kept.pop_front();
                    }
                    true
                })
                .unwrap_or(false);
            if newer {
                self.dispatch(job, HubEvent::Log(line));
            }
        }

        fn on_end(&self, data: &str) {
            let Ok(Tagged { job }) = serde_json::from_str::<Tagged>(data) else { return };
            self.with(|hub| hub.ended.insert(job, true));
            self.dispatch(job, HubEvent::End);
        }

        fn drop_source(&self) {
            if let Some(old) = self.with(|hub| hub.source.take()).flatten() {
                old.close();
                set_timeout(move || drop(old), Duration::ZERO);
            }
            if let Some(timer) = self.with(|hub| hub.timer.take()).flatten() {
                timer.clear();
            }
        }

        fn connect(&self) {
            self.drop_source();
            let after: Vec<String> = self
                .with(|hub| hub.cursors.iter().filter(|(_, s)| **s > 0).map(|(j, s)| format!("{j}:{s}")).collect())
                .unwrap_or_default();
            let url = if after.is_empty() { URL.to_string() } else { format!("{URL}?after={}", after.join(",")) };
            if self.connection.get_untracked() != ConnectionState::Reconnecting {
                self.connection.set(ConnectionState::Connecting);
            }
            let hub = *self;
            let handlers = Handlers {
                on_open: Box::new(move || hub.connection.set(ConnectionState::Open)),
                on_state: Box::new(move |data: String| hub.on_state(&data)),
                on_log: Box::new(move |data: String| hub.on_log(&data)),
                on_end: Box::new(move |data: String| hub.on_end(&data)),
                on_error: Box::new(move || hub.retry()),
            };
            match Connection::open(&url, handlers) {
                Ok(conn) => {
                    self.with(|hub| hub.source = Some(conn));
                }
                Err(e) => {
                    leptos::logging::warn!("cannot open the event stream {url}: {e}");
                    self.retry();
                }
            }
        }

        fn retry(&self) {
            self.drop_source();
            let attempt = self.with(|hub| {
                hub.attempt += 1;
                hub.attempt
            });
            let Some(attempt) = attempt else { return };
            if attempt > MAX_RETRIES {
                self.connection.set(ConnectionState::Lost);
                return;
            }
            self.connection.set(ConnectionState::Reconnecting);
            let hub = *self;
            let delay = backoff(FIRST_RETRY, MAX_RETRY, attempt, js_sys::Math::random());
            let handle = set_timeout_with_handle(move || hub.connect(), delay).ok();
            self.with(|h| h.timer = handle);
        }
    }
}
