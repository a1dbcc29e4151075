//! One event stream per browser tab for every job the tab shows (`GET /api/events`), so ten
//! running jobs do not hit the browser's six-connections-per-host limit. `use_sse_progress`
//! and the dashboard subscribe to it; it reconnects with back-off and resumes exactly each job
//! that may still send events (`after=JOB:SEQ,...`, a bounded list however many jobs the tab
//! has seen).
//!
//! Provided once by `<App/>` ([`provide_event_hub`]); on the server it holds signals only.
//! What the hub keeps of each job, and for how long, is `hub_state.rs`; the tabs of one
//! browser share one stream through `event_hub/relay.rs`; this file holds the connection and
//! the listeners.

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
    /// The newest state of the jobs the stream has shown that the tab keeps, by id: every job
    /// not ended, and the most recently ended ones (see `hub_state.rs` for how many).
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
    /// On the server: the hub holds no job.
    pub fn whole(&self, _job: JobId) -> Option<(Snapshot, Vec<LogLine>)> {
        None
    }
    /// On the server: nothing to follow.
    pub fn subscribe(
        &self,
        _job: Option<JobId>,
        _seen: u64,
        _on: impl Fn(JobId, HubEvent) + 'static,
    ) -> SubscriptionKey {
        SubscriptionKey(0)
    }
    /// On the server: nothing to stop.
    pub fn unsubscribe(&self, _key: SubscriptionKey) {}
    /// On the server: nothing to reconnect.
    pub fn reconnect(&self) {}
}

#[cfg(not(feature = "ssr"))]
mod relay;

#[cfg(not(feature = "ssr"))]
mod browser {
    use std::rc::Rc;
    use std::time::Duration;

    use leptos::leptos_dom::helpers::TimeoutHandle;
    use leptos::prelude::*;
    use serde::Deserialize;

    use super::relay::{Relay, Role};
    use super::{EventHub, HubEvent, SubscriptionKey};
    use crate::hooks::connection::ConnectionState;
    use crate::hooks::event_source::{Connection, Handlers};
    use crate::hooks::hub_state::{HubState, Replay};
    use crate::hooks::tabs::Message;
    use crate::model::{JobId, LogLine, Snapshot};
    use crate::retry::backoff;

    /// Where the browser's stream is.
    const URL: &str = "/api/events";
    const MAX_RETRIES: u32 = 6;
    const FIRST_RETRY: Duration = Duration::from_millis(500);
    const MAX_RETRY: Duration = Duration::from_secs(5);
    /// How long the stream stays open with nobody listening (page changes resubscribe).
    const LINGER: Duration = Duration::from_secs(2);

    type Listener = Rc<dyn Fn(JobId, HubEvent)>;

    #[derive(Default)]
    pub(super) struct Hub {
        /// This tab's place among the browser's tabs.
        pub(super) relay: Relay,
        /// What the tab keeps of each job: cursors, recent lines, ends.
        pub(super) kept: HubState,
        source: Option<Connection>,
        /// The subscriptions: key, job (`None`: every job), listener.
        listeners: Vec<(u64, Option<JobId>, Listener)>,
        next_key: u64,
        attempt: u32,
        timer: Option<TimeoutHandle>,
        linger: Option<TimeoutHandle>,
    }

    #[derive(Deserialize)]
    struct Tagged {
        job: JobId,
        #[serde(default)]
        seq: u64,
    }

    #[derive(Deserialize)]
    struct TaggedLog {
        job: JobId,
        #[serde(flatten)]
        line: LogLine,
    }

    impl Hub {
        /// Whether something in this tab listens.
        pub(super) fn listening(&self) -> bool {
            !self.listeners.is_empty()
        }

        /// No stream open and none about to be.
        pub(super) fn idle(&self) -> bool {
            self.source.is_none() && self.timer.is_none()
        }
    }

    impl EventHub {
        pub(super) fn with<R>(&self, f: impl FnOnce(&mut Hub) -> R) -> Option<R> {
            self.inner.try_update_value(f)
        }

        pub(super) fn set_connection(&self, state: ConnectionState) {
            self.connection.try_set(state);
            if self.role() == Role::Leader {
                self.post(&Message::Connection { state });
            }
        }

        /// Removes from [`EventHub::jobs`] the jobs the tab has just forgotten.
        fn drop_forgotten(&self) {
            let gone = self.with(|hub| hub.kept.take_forgotten()).unwrap_or_default();
            if !gone.is_empty() {
                self.jobs.try_update(|jobs| {
                    for job in gone {
                        jobs.remove(&job);
                    }
                });
            }
        }

        /// The newest state of `job` and all its log lines, when this tab has every event of it
        /// from the first (a job started since the stream opened, not forgotten yet); read
        /// without tracking.
        pub fn whole(&self, job: JobId) -> Option<(Snapshot, Vec<LogLine>)> {
            self.with(|hub| hub.kept.whole(job)).flatten()
        }

        /// Calls `on` for every event of `job` (of every job for `None`) after sequence `seen`,
        /// starting with what the tab already has. Opens the stream (or joins the browser's)
        /// when needed. The tab keeps a job it follows until [`unsubscribe`](Self::unsubscribe).
        pub fn subscribe(
            &self,
            job: Option<JobId>,
            seen: u64,
            on: impl Fn(JobId, HubEvent) + 'static,
        ) -> SubscriptionKey {
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
            let mut rewound = false;
            if let Some(job) = job {
                match self.with(|hub| hub.kept.subscribe(job, seen)) {
                    Some(Some(replay)) => self.replay(job, replay, &on),
                    // This tab no longer has all of it: the stream (or the leader) sends it again.
                    Some(None) => rewound = true,
                    None => {}
                }
            }
            match self.role() {
                Role::Unjoined => self.join(),
                Role::Alone | Role::Leader => {
                    if rewound || self.with(|hub| hub.idle()).unwrap_or(false) {
                        self.connect();
                    }
                }
                Role::Follower => self.send_need(),
            }
            SubscriptionKey(key)
        }

        /// Hands a new subscription what the tab holds of its job.
        fn replay(&self, job: JobId, replay: Replay, on: &Listener) {
            for line in replay.lines {
                on(job, HubEvent::Log(line));
            }
            if let Some(state) = replay.state {
                on(job, HubEvent::State(state));
            }
            if replay.ended {
                on(job, HubEvent::End);
            }
        }

        /// Stops a subscription; the stream closes shortly after its last one stops.
        pub fn unsubscribe(&self, key: SubscriptionKey) {
            let hub_copy = *self;
            let idle = self
                .with(|hub| {
                    let job = hub.listeners.iter().find(|(k, _, _)| *k == key.0).and_then(|(_, job, _)| *job);
                    hub.listeners.retain(|(k, _, _)| *k != key.0);
                    if let Some(job) = job {
                        hub.kept.unsubscribe(job);
                    }
                    hub.listeners.is_empty()
                })
                .unwrap_or(false);
            self.drop_forgotten();
            if idle {
                let handle = set_timeout_with_handle(
                    move || {
                        if hub_copy.with(|hub| hub.listeners.is_empty()).unwrap_or(false) {
                            hub_copy.go_idle();
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
            if self.role() == Role::Follower {
                self.connection.set(ConnectionState::Connecting);
                self.post(&Message::Reconnect);
                return;
            }
            self.with(|hub| hub.attempt = 0);
            self.connect();
        }

        /// An event of the stream (this tab's own or relayed): its job and sequence number,
        /// whether or not it was news here.
        pub(super) fn receive(&self, name: &str, data: &str) -> Option<(JobId, u64)> {
            match name {
                "log" => self.on_log(data),
                "end" => self.on_end(data),
                _ => self.on_state(name == "reset", data),
            }
        }

        /// Leader or alone: an event of this tab's stream; the leader relays it to the others.
        fn on_stream_event(&self, name: &'static str, data: String) {
            let meta = self.receive(name, &data);
            if let (Some((job, seq)), Role::Leader) = (meta, self.role()) {
                self.relay_event(job, name, data, seq);
            }
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

        fn on_state(&self, reset: bool, data: &str) -> Option<(JobId, u64)> {
            let state = match serde_json::from_str::<Snapshot>(data) {
                Ok(state) => state,
                Err(e) => {
                    leptos::logging::warn!("ignoring an event that is not a job state: {e}");
                    return None;
                }
            };
            let (job, seq) = (state.id, state.seq);
            let heard = self.with(|hub| {
                hub.attempt = 0;
                hub.kept.on_state(&state, reset)
            })?;
            if heard.newest {
                self.jobs.update(|j| {
                    j.insert(job, state.clone());
                });
            }
            self.drop_forgotten();
            if heard.news {
                self.dispatch(job, HubEvent::State(state));
            }
            Some((job, seq))
        }

        fn on_log(&self, data: &str) -> Option<(JobId, u64)> {
            let TaggedLog { job, line } = match serde_json::from_str::<TaggedLog>(data) {
                Ok(tagged) => tagged,
                Err(e) => {
                    leptos::logging::warn!("ignoring a log event that does not parse: {e}");
                    return None;
                }
            };
            let seq = line.seq;
            let newer = self.with(|hub| hub.kept.on_log(job, &line)).unwrap_or(false);
            self.drop_forgotten();
            if newer {
                self.dispatch(job, HubEvent::Log(line));
            }
            Some((job, seq))
        }

        fn on_end(&self, data: &str) -> Option<(JobId, u64)> {
            let Ok(Tagged { job, seq }) = serde_json::from_str::<Tagged>(data) else {
                leptos::logging::warn!("ignoring an end event that does not name its job");
                return None;
            };
            self.with(|hub| hub.kept.on_end(job, seq));
            self.drop_forgotten();
            self.dispatch(job, HubEvent::End);
            Some((job, seq))
        }

        pub(super) fn drop_source(&self) {
            if let Some(old) = self.with(|hub| hub.source.take()).flatten() {
                old.close();
                set_timeout(move || drop(old), Duration::ZERO);
            }
            if let Some(timer) = self.with(|hub| hub.timer.take()).flatten() {
                timer.clear();
            }
        }

        /// Opens the stream, resuming each job that may still send events after its cursor (or
        /// a follower's earlier one); a bounded list, whatever the tab has seen.
        pub(super) fn connect(&self) {
            self.drop_source();
            let after = self.with(|hub| hub.kept.resume_query()).unwrap_or_default();
            let url = if after.is_empty() { URL.to_string() } else { format!("{URL}?after={after}") };
            if self.connection.get_untracked() != ConnectionState::Reconnecting {
                self.set_connection(ConnectionState::Connecting);
            }
            let hub = *self;
            let handlers = Handlers {
                on_open: Box::new(move || {
                    hub.with(|h| h.kept.opened());
                    hub.set_connection(ConnectionState::Open);
                }),
                on_event: Box::new(move |name, data| hub.on_stream_event(name, data)),
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
                self.set_connection(ConnectionState::Lost);
                return;
            }
            self.set_connection(ConnectionState::Reconnecting);
            let hub = *self;
            let delay = backoff(FIRST_RETRY, MAX_RETRY, attempt, js_sys::Math::random());
            let handle = set_timeout_with_handle(move || hub.connect(), delay).ok();
            self.with(|h| h.timer = handle);
        }
    }
}
