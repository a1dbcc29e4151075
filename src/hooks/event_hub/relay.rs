//! The tabs of one browser sharing the hub's stream (the messages are in `tabs.rs`): the
//! leader holds the stream and relays its events; a follower says what it follows and holds
//! relayed events back until the leader has caught it up. Browser only.

use std::collections::HashSet;
use std::rc::Rc;

use leptos::prelude::*;
use serde_json::json;

use super::EventHub;
use crate::hooks::connection::ConnectionState;
use crate::hooks::hub_state::CatchUp;
use crate::hooks::tabs::{Cursor, Message, Relayed, Tabs};
use crate::model::JobId;

/// How this tab reaches the stream.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) enum Role {
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

/// This tab's side of the conversation between tabs.
#[derive(Default)]
pub(super) struct Relay {
    role: Role,
    tabs: Option<Rc<Tabs>>,
    /// Leader: the other tabs where something listens.
    followers: HashSet<u64>,
    /// Follower: the need the leader has not answered yet; relayed events wait in `held`.
    need: Option<u64>,
    needs_sent: u64,
    held: Vec<Relayed>,
}

impl EventHub {
    pub(super) fn role(&self) -> Role {
        self.with(|hub| hub.relay.role).unwrap_or(Role::Alone)
    }

    /// Tells the other tabs, if this tab has joined them.
    pub(super) fn post(&self, message: &Message) {
        if let Some(tabs) = self.with(|hub| hub.relay.tabs.clone()).flatten() {
            tabs.post(message);
        }
    }

    /// Leader: passes an event of its stream on to the other tabs.
    pub(super) fn relay_event(&self, job: JobId, name: &str, data: String, seq: u64) {
        self.post(&Message::Event(Relayed { job, name: name.into(), data, seq }));
    }

    /// Joins the browser's other tabs (asking for the lead), or opens a stream of its own
    /// where they cannot share one.
    pub(super) fn join(&self) {
        let hub = *self;
        match Tabs::join(move |message| hub.on_message(message)) {
            Some(tabs) => {
                let tabs = Rc::new(tabs);
                self.with(|h| {
                    h.relay.role = Role::Follower;
                    h.relay.tabs = Some(tabs.clone());
                });
                self.send_need();
                tabs.request_lead(move || hub.lead());
            }
            None => {
                self.with(|h| h.relay.role = Role::Alone);
                self.connect();
            }
        }
    }

    /// Nothing in this tab listens any more.
    pub(super) fn go_idle(&self) {
        match self.role() {
            Role::Alone => {
                self.drop_source();
                self.set_connection(ConnectionState::Closed);
            }
            Role::Leader => self.settle(),
            Role::Follower => {
                if let Some(tab) = self.with(|hub| hub.relay.tabs.as_ref().map(|t| t.id)).flatten() {
                    self.post(&Message::Idle { tab });
                }
            }
            Role::Unjoined => {}
        }
    }

    /// Leader: closes the stream once no tab listens.
    fn settle(&self) {
        let unused = self.with(|hub| !hub.listening() && hub.relay.followers.is_empty()).unwrap_or(false);
        if unused {
            self.drop_source();
            self.set_connection(ConnectionState::Closed);
        }
    }

    /// This tab now holds the browser's stream: the previous leader closed (or there was none).
    fn lead(&self) {
        let active = self
            .with(|hub| {
                hub.relay.role = Role::Leader;
                // What was held back resumes from this tab's cursors on the new stream.
                hub.relay.need = None;
                hub.relay.held.clear();
                hub.listening()
            })
            .unwrap_or(false);
        self.post(&Message::Hello);
        if active {
            self.connect();
        }
    }

    /// Follower: tells the leader what this tab follows; relayed events wait for its answer.
    pub(super) fn send_need(&self) {
        let message = self
            .with(|hub| {
                let tab = hub.relay.tabs.as_ref()?.id;
                hub.relay.needs_sent += 1;
                hub.relay.need = Some(hub.relay.needs_sent);
                let cursors: Vec<Cursor> = hub.kept.cursors();
                Some(Message::Need { tab, id: hub.relay.needs_sent, cursors, active: hub.listening() })
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
                        let held = hub.relay.need.is_some();
                        if held {
                            hub.relay.held.push(event.clone());
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
                        let relay = &mut hub.relay;
                        let mine = relay.tabs.as_ref().is_some_and(|t| t.id == to) && relay.need == Some(id);
                        mine.then(|| {
                            relay.need = None;
                            std::mem::take(&mut relay.held)
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
                self.with(|hub| hub.relay.followers.remove(&tab));
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
            match self.with(|hub| hub.kept.catch_up(job, seen, saw_end)) {
                // Not heard of here yet (or a moment ago): its events are still to come, to every tab.
                None | Some(CatchUp::Unknown) => {}
                Some(CatchUp::Resync) => resync.push(job),
                Some(CatchUp::Missed { lines, state, end }) => {
                    for line in lines {
                        let mut data = serde_json::to_value(&line).unwrap_or_default();
                        if let Some(map) = data.as_object_mut() {
                            map.insert("job".into(), json!(job));
                        }
                        events.push(Relayed { job, name: "log".into(), data: data.to_string(), seq: line.seq });
                    }
                    if let Some(state) = state {
                        let data = serde_json::to_string(&state).unwrap_or_default();
                        events.push(Relayed { job, name: state.event_name().into(), data, seq: state.seq });
                    }
                    if let Some(seq) = end {
                        let data = json!({"job": job, "seq": seq}).to_string();
                        events.push(Relayed { job, name: "end".into(), data, seq });
                    }
                }
            }
        }
        // In order, so each job's lines reach the follower's listeners as they happened.
        events.sort_by_key(|e| e.seq);
        let idle = self
            .with(|hub| {
                if active {
                    hub.relay.followers.insert(tab);
                } else {
                    hub.relay.followers.remove(&tab);
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
}
