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
mod browser {
    use std::collections::{HashMap, HashSet, VecDeque};
    use std::rc::Rc;
    use std::time::Duration;

    use leptos::leptos_dom::helpers::TimeoutHandle;
    use leptos::prelude::*;
    use serde::Deserialize;
    use serde_json::json;

    use super::{EventHub, HubEvent, SubscriptionKey};
    use crate::hooks::connection::ConnectionState;
    use crate::hooks::event_source::{Connection, Handlers};
    use crate::hooks::tabs::{Cursor, Message, Relayed, Tabs};
    use crate::model::{JobId, LogLine, Snapshot};
    use crate::retry::backoff;

    /// Where the browser's stream is.
    const URL: &str = "/api/events";
    /// Log lines kept per job for components that subscribe late (and for other tabs).
    const KEPT_LOG_LINES: usize = 500;
    const MAX_RETRIES: u32 = 6;
    const FIRST_RETRY: Duration = Duration::from_millis(500);
    const MAX_RETRY: Duration = Duration::from_secs(5);
    /// How long the stream stays open with nobody listening (page changes resubscribe).
    const LINGER: Duration = Duration::from_secs(2);

    type Listener = Rc<dyn Fn(JobId, HubEvent)>;

    /// How this tab reaches the stream.
    #[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
    enum Role {
        /// Nothing has subscribed yet.
        #[default]
        Unjoined,
        /// A stream of its own: this browser cannot share one between tabs.
        Alone,
        /// Another tab holds the stream and relays its events here.
        Follower,
        /// This tab holds the browser's stream and relays it to the others.
        Leader,
    }

    #[derive(Default)]
    pub(crate) struct Hub {
        role: Role,
        tabs: Option<Rc<Tabs>>,
        source: Option<Connection>,
        listeners: Vec<(u64, Option<JobId>, Listener)>,
        next_key: u64,
        /// The last sequence number seen of each job.
        cursors: HashMap<JobId, u64>,
        /// Of each job, the sequence number after which `logs` holds every line up to its
        /// cursor: from where this tab can replay the job exactly.
        complete: HashMap<JobId, u64>,
        logs: HashMap<JobId, VecDeque<LogLine>>,
        ended: HashSet<JobId>,
        attempt: u32,
        timer: Option<TimeoutHandle>,
        linger: Option<TimeoutHandle>,
        /// Leader: jobs the next connection resumes from an earlier point than this tab's
        /// cursor, because a follower missed lines this tab no longer keeps.
        rewind: HashMap<JobId, u64>,
        /// Leader: the other tabs where something listens.
        followers: HashSet<u64>,
        /// Follower: the need the leader has not answered yet; relayed events wait in `held`.
        need: Option<u64>,
        needs_sent: u64,
        held: Vec<Relayed>,
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
        /// Forgets what this tab holds of `job` after `seen`: its events come again from there.
        fn rewind_to(&mut self, job: JobId, seen: u64) {
            self.cursors.insert(job, seen);
            self.complete.insert(job, seen);
            if let Some(lines) = self.logs.get_mut(&job) {
                lines.retain(|l| l.seq <= seen);
            }
        }

        /// Records that `seq` of `job` arrived; false when it is not news. `gap`: lines before
        /// it may be missing (a reset, or the first event heard of the job).
        fn advance(&mut self, job: JobId, seq: u64, gap: bool) -> bool {
            let cursor = self.cursors.get(&job).copied();
            if cursor.is_some_and(|c| seq <= c) {
                return false;
            }
            if cursor.is_none() || gap {
                let from = if gap { seq } else { seq.saturating_sub(1) };
                let complete = self.complete.entry(job).or_insert(from);
                *complete = (*complete).max(from);
            }
            self.cursors.insert(job, seq);
            true
        }

        /// The kept log lines of `job` after sequence `seen`, oldest first.
        fn lines_after(&self, job: JobId, seen: u64) -> Vec<LogLine> {
            self.logs.get(&job).map(|l| l.iter().filter(|l| l.seq > seen).cloned().collect()).unwrap_or_default()
        }

        fn idle(&self) -> bool {
            self.source.is_none() && self.timer.is_none()
        }
    }

    impl EventHub {
        fn with<R>(&self, f: impl FnOnce(&mut Hub) -> R) -> Option<R> {
            self.inner.try_update_value(f)
        }

        fn role(&self) -> Role {
            self.with(|hub| hub.role).unwrap_or(Role::Alone)
        }

        /// Tells the other tabs, if this tab has joined them.
        fn post(&self, message: &Message) {
            if let Some(tabs) = self.with(|hub| hub.tabs.clone()).flatten() {
                tabs.post(message);
            }
        }

        fn set_connection(&self, state: ConnectionState) {
            self.connection.try_set(state);
            if self.role() == Role::Leader {
                self.post(&Message::Connection { state });
            }
        }

        /// The newest state of `job` and all its log lines, when this tab has every event of it
        /// from the first (a job started since the stream opened); read without tracking.
        pub fn whole(&self, job: JobId) -> Option<(Snapshot, Vec<LogLine>)> {
            let lines =
                self.with(|hub| (hub.complete.get(&job) == Some(&0)).then(|| hub.lines_after(job, 0))).flatten()?;
            let state = self.jobs.with_untracked(|j| j.get(&job).cloned())?;
            let lines: Vec<LogLine> = lines.into_iter().filter(|l| l.seq <= state.seq).collect();
            Some((state, lines))
        }

        /// Calls `on` for every event of `job` (of every job for `None`) after sequence `seen`,
        /// starting with what the tab already has. Opens the stream (or joins the browser's)
        /// when needed.
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
                let covered = self.with(|hub| hub.complete.get(&job).is_none_or(|from| *from <= seen)).unwrap_or(true);
                if covered {
                    self.replay(job, seen, &on);
                    self.with(|hub| {
                        let cursor = hub.cursors.entry(job).or_insert(seen);
                        if seen > *cursor {
                            // The listener has lines this tab never kept.
                            *cursor = seen;
                            hub.complete.insert(job, seen);
                        }
                        hub.complete.entry(job).or_insert(seen);
                    });
                } else {
                    // This tab no longer has all of it: the stream (or the leader) sends it again.
                    self.with(|hub| hub.rewind_to(job, seen));
                    rewound = true;
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

        /// Replays to `on` what the tab holds of `job` after `seen`.
        fn replay(&self, job: JobId, seen: u64, on: &Listener) {
            let state = self.jobs.with_untracked(|j| j.get(&job).cloned());
            let lines = self.with(|hub| hub.lines_after(job, seen)).unwrap_or_default();
            for line in lines {
                on(job, HubEvent::Log(line));
            }
            if let Some(state) = state.filter(|s| s.seq > seen) {
                on(job, HubEvent::State(state));
            }
            if self.with(|hub| hub.ended.contains(&job)).unwrap_or(false) {
                on(job, HubEvent::End);
            }
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
                            hub_copy.go_idle();
                        }
                    },
                    LINGER,
                )
                .ok();
                self.with(|hub| hub.linger = handle);
            }
        }

        /// Nothing in this tab listens any more.
        fn go_idle(&self) {
            match self.role() {
                Role::Alone => {
                    self.drop_source();
                    self.set_connection(ConnectionState::Closed);
                }
                Role::Leader => self.settle(),
                Role::Follower => {
                    if let Some(tab) = self.with(|hub| hub.tabs.as_ref().map(|t| t.id)).flatten() {
                        self.post(&Message::Idle { tab });
                    }
                }
                Role::Unjoined => {}
            }
        }

        /// Leader: closes the stream once no tab listens.
        fn settle(&self) {
            let unused = self.with(|hub| hub.listeners.is_empty() && hub.followers.is_empty()).unwrap_or(false);
            if unused {
                self.drop_source();
                self.set_connection(ConnectionState::Closed);
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

        /// Joins the browser's other tabs (asking for the lead), or opens a stream of its own
        /// where they cannot share one.
        fn join(&self) {
            let hub = *self;
            match Tabs::join(move |message| hub.on_message(message)) {
                Some(tabs) => {
                    let tabs = Rc::new(tabs);
                    self.with(|h| {
                        h.role = Role::Follower;
                        h.tabs = Some(tabs.clone());
                    });
                    self.send_need();
                    tabs.request_lead(move || hub.lead());
                }
                None => {
                    self.with(|h| h.role = Role::Alone);
                    self.connect();
                }
            }
        }

        /// This tab now holds the browser's stream: the previous leader closed (or there was none).
        fn lead(&self) {
            let active = self
                .with(|hub| {
                    hub.role = Role::Leader;
                    // What was held back resumes from this tab's cursors on the new stream.
                    hub.need = None;
                    hub.held.clear();
                    !hub.listeners.is_empty()
                })
                .unwrap_or(false);
            self.post(&Message::Hello);
            if active {
                self.connect();
            }
        }

        /// Follower: tells the leader what this tab follows; relayed events wait for its answer.
        fn send_need(&self) {
            let message = self
                .with(|hub| {
                    let tab = hub.tabs.as_ref()?.id;
                    hub.needs_sent += 1;
                    hub.need = Some(hub.needs_sent);
                    let cursors: Vec<Cursor> =
                        hub.cursors.iter().map(|(j, s)| (*j, *s, hub.ended.contains(j))).collect();
                    Some(Message::Need { tab, id: hub.needs_sent, cursors, active: !hub.listeners.is_empty() })
                })
                .flatten();
            if let Some(message) = message {
                self.post(&message);
            }
        }

        fn on_message(&self, message: Message) {
            match (self.role(), message) {
                (Role::Follower, Message::Event(event)) => {
                    let held = self
                        .with(|hub| {
                            let held = hub.need.is_some();
                            if held {
                                hub.held.push(event.clone());
                            }
                            held
                        })
                        .unwrap_or(true);
                    if !held {
                        self.receive(&event.name, &event.data);
                    }
                }
                (Role::Follower, Message::Connection { state }) => {
                    self.connection.try_set(state);
                }
                (Role::Follower, Message::Hello) => self.send_need(),
                (Role::Follower, Message::Caught { to, id, events, resync, state }) => {
                    let held = self
                        .with(|hub| {
                            let mine = hub.tabs.as_ref().is_some_and(|t| t.id == to) && hub.need == Some(id);
                            mine.then(|| {
                                hub.need = None;
                                std::mem::take(&mut hub.held)
                            })
                        })
                        .flatten();
                    let Some(held) = held else { return };
                    self.connection.try_set(state);
                    for event in events {
                        self.receive(&event.name, &event.data);
                    }
                    // The stream sends the resynced jobs again from this tab's cursor.
                    for event in held.into_iter().filter(|e| !resync.contains(&e.job)) {
                        self.receive(&event.name, &event.data);
                    }
                }
                (Role::Leader, Message::Need { tab, id, cursors, active }) => self.answer(tab, id, cursors, active),
                (Role::Leader, Message::Reconnect) => self.reconnect(),
                (Role::Leader, Message::Idle { tab }) => {
                    self.with(|hub| hub.followers.remove(&tab));
                    self.settle();
                }
                _ => {}
            }
        }

        /// Leader: what follower `tab` missed of the jobs it follows, from what this tab keeps;
        /// a job it keeps too little of is resent by the stream from the follower's cursor.
        fn answer(&self, tab: u64, id: u64, cursors: Vec<Cursor>, active: bool) {
            let mut events = Vec::new();
            let mut resync = Vec::new();
            for (job, seen, saw_end) in cursors {
                let known = self
                    .with(|hub| {
                        let cursor = *hub.cursors.get(&job)?;
                        let complete = hub.complete.get(&job).copied().unwrap_or(cursor);
                        let lines =
                            if cursor > seen && complete <= seen { hub.lines_after(job, seen) } else { Vec::new() };
                        Some((cursor, complete, hub.ended.contains(&job), lines))
                    })
                    .flatten();
                // Not heard of here yet: its events are still to come, to every tab.
                let Some((cursor, complete, ended, lines)) = known else { continue };
                if cursor > seen && complete > seen {
                    resync.push(job);
                    self.with(|hub| {
                        let point = hub.rewind.entry(job).or_insert(seen);
                        *point = (*point).min(seen);
                    });
                    continue;
                }
                for line in lines {
                    let mut data = serde_json::to_value(&line).unwrap_or_default();
                    if let Some(map) = data.as_object_mut() {
                        map.insert("job".into(), json!(job));
                    }
                    events.push(Relayed { job, name: "log".into(), data: data.to_string(), seq: line.seq });
                }
                if let Some(state) = self.jobs.with_untracked(|j| j.get(&job).cloned()).filter(|s| s.seq > seen) {
                    let data = serde_json::to_string(&state).unwrap_or_default();
                    events.push(Relayed { job, name: state.event_name().into(), data, seq: state.seq });
                }
                if ended && !saw_end {
                    events.push(Relayed {
                        job,
                        name: "end".into(),
                        data: json!({"job": job, "seq": cursor}).to_string(),
                        seq: cursor,
                    });
                }
            }
            // In order, so each job's lines reach the follower's listeners as they happened.
            events.sort_by_key(|e| e.seq);
            let idle = self
                .with(|hub| {
                    if active {
                        hub.followers.insert(tab);
                    } else {
                        hub.followers.remove(&tab);
                    }
                    hub.idle()
                })
                .unwrap_or(false);
            let state = self.connection.get_untracked();
            let resyncing = !resync.is_empty();
            self.post(&Message::Caught { to: tab, id, events, resync, state });
            if resyncing || (active && idle) {
                self.connect();
            }
        }

        /// An event of the stream (this tab's own or relayed): its job and sequence number,
        /// whether or not it was news here.
        fn receive(&self, name: &str, data: &str) -> Option<(JobId, u64)> {
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
                self.post(&Message::Event(Relayed { job, name: name.into(), data, seq }));
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
            let newer = self
                .with(|hub| {
                    hub.attempt = 0;
                    hub.advance(job, seq, reset)
                })
                .unwrap_or(false);
            let known_newer = self.jobs.with_untracked(|j| j.get(&job).is_none_or(|s| s.seq < seq));
            if known_newer {
                self.jobs.update(|j| {
                    j.insert(job, state.clone());
                });
            }
            if newer || known_newer {
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
            let newer = self
                .with(|hub| {
                    if !hub.advance(job, seq, false) {
                        return false;
                    }
                    let kept = hub.logs.entry(job).or_default();
                    kept.push_back(line.clone());
                    if kept.len() > KEPT_LOG_LINES {
                        if let Some(gone) = kept.pop_front() {
                            let complete = hub.complete.entry(job).or_insert(gone.seq);
                            *complete = (*complete).max(gone.seq);
                        }
                    }
                    true
                })
                .unwrap_or(false);
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
            self.with(|hub| hub.ended.insert(job));
            self.dispatch(job, HubEvent::End);
            Some((job, seq))
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

        /// Opens the stream, resuming each job after its cursor (or a follower's earlier one).
        fn connect(&self) {
            self.drop_source();
            let after: Vec<String> = self
                .with(|hub| {
                    let mut points = hub.cursors.clone();
                    for (job, seq) in &hub.rewind {
                        let point = points.entry(*job).or_insert(*seq);
                        *point = (*point).min(*seq);
                    }
                    points.iter().filter(|(_, s)| **s > 0).map(|(j, s)| format!("{j}:{s}")).collect()
                })
                .unwrap_or_default();
            let url = if after.is_empty() { URL.to_string() } else { format!("{URL}?after={}", after.join(",")) };
            if self.connection.get_untracked() != ConnectionState::Reconnecting {
                self.set_connection(ConnectionState::Connecting);
            }
            let hub = *self;
            let handlers = Handlers {
                on_open: Box::new(move || {
                    hub.with(|h| h.rewind.clear());
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
