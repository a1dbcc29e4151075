//! The tabs of one browser (one origin) sharing ONE event stream. A `BroadcastChannel` carries
//! messages between them and a Web Lock elects the tab that holds the stream: the browser grants
//! the lock to one tab at a time and, when that tab closes or is discarded, to the next one
//! waiting. Where either API is missing, [`Tabs::join`] says so and the tab keeps a stream of
//! its own. Browser only.
//!
//! The conversation (the hub in `event_hub/relay.rs` holds both sides):
//! - the leader relays every event its stream delivers ([`Message::Event`]) and every change of
//!   its connection ([`Message::Connection`]);
//! - a follower says what it follows, each job with its last sequence number ([`Message::Need`]),
//!   when it starts following and whenever a new leader says [`Message::Hello`]; it holds the
//!   relayed events back until the leader's [`Message::Caught`] has filled what it missed, so
//!   every tab sees each event once and in order.

use serde::{Deserialize, Serialize};
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use web_sys::{BroadcastChannel, MessageEvent};

use super::connection::ConnectionState;
use crate::model::JobId;

/// The channel every tab of the origin listens on.
const CHANNEL: &str = "sse-progress/events";
/// The lock the leading tab holds for as long as it lives.
const LOCK: &str = "sse-progress/events-leader";

/// One event of a job stream, as the leader received it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Relayed {
    pub job: JobId,
    /// The SSE event name: a state (`progress`, `reset`, ...), `log` or `end`.
    pub name: String,
    /// Its `data:`.
    pub data: String,
    /// Its sequence number (the job's state or log line; `end` carries the last one).
    pub seq: u64,
}

/// What a follower follows of one job: its last sequence number and whether it saw the end.
pub(crate) type Cursor = (JobId, u64, bool);

/// A message between the tabs.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub(crate) enum Message {
    /// The leader's stream delivered this.
    Event(Relayed),
    /// The leader's connection is now in this state.
    Connection { state: ConnectionState },
    /// A tab took the lead: every other tab says what it follows.
    Hello,
    /// What tab `tab` follows (`active`: something on it listens); answered by `Caught`.
    Need { tab: u64, id: u64, cursors: Vec<Cursor>, active: bool },
    /// The leader's answer to need `id` of tab `to`: the events it had missed, the jobs whose
    /// events the stream delivers again from the tab's cursor (`resync`), the connection state.
    Caught { to: u64, id: u64, events: Vec<Relayed>, resync: Vec<JobId>, state: ConnectionState },
    /// A tab asks the leader to reconnect now (its person pressed "Try again").
    Reconnect,
    /// Tab `tab` no longer follows anything (nothing listens, or it is closing).
    Idle { tab: u64 },
}

/// This tab's place among the browser's tabs.
pub(crate) struct Tabs {
    channel: BroadcastChannel,
    /// This tab's id (random; tabs share no counter).
    pub id: u64,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    _on_hide: Option<Closure<dyn FnMut(web_sys::Event)>>,
}

impl Tabs {
    /// Joins the browser's tabs: `on_message` gets every message of the others. `None` where
    /// the browser lacks `BroadcastChannel` or Web Locks.
    pub(crate) fn join(on_message: impl Fn(Message) + 'static) -> Option<Self> {
        locks()?;
        let channel = BroadcastChannel::new(CHANNEL).ok()?;
        let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |e: MessageEvent| {
            let Some(text) = e.data().as_string() else { return };
            match serde_json::from_str::<Message>(&text) {
                Ok(message) => on_message(message),
                Err(e) => leptos::logging::warn!("ignoring a message from another tab: {e}"),
            }
        });
        channel.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        let id = (js_sys::Math::random() * 9_007_199_254_740_991.0) as u64;
        // A closing follower says so, so the leader can close a stream nobody needs.
        let on_hide = web_sys::window().map(|window| {
            let channel = channel.clone();
            let bye = serde_json::to_string(&Message::Idle { tab: id }).unwrap_or_default();
            let hide = Closure::<dyn FnMut(web_sys::Event)>::new(move |_| {
                let _ = channel.post_message(&JsValue::from_str(&bye));
            });
            let _ = window.add_event_listener_with_callback("pagehide", hide.as_ref().unchecked_ref());
            hide
        });
        Some(Self { channel, id, _on_message: on_message, _on_hide: on_hide })
    }

    /// Tells the other tabs.
    pub(crate) fn post(&self, message: &Message) {
        match serde_json::to_string(message) {
            Ok(text) => {
                if let Err(e) = self.channel.post_message(&JsValue::from_str(&text)) {
                    leptos::logging::warn!("could not tell the other tabs: {e:?}");
                }
            }
            Err(e) => leptos::logging::warn!("could not encode a message for the other tabs: {e}"),
        }
    }

    /// Asks for the lead: `on_lead` runs once this tab holds it, which it then keeps until it
    /// closes (the browser hands it to the next waiting tab).
    pub(crate) fn request_lead(&self, on_lead: impl FnOnce() + 'static) {
        let Some(locks) = locks() else { return };
        let granted = Closure::once_into_js(move |_lock: JsValue| -> JsValue {
            on_lead();
            // Never settles: the lock is held for the tab's life.
            js_sys::Promise::new(&mut |_, _| {}).into()
        });
        let request = js_sys::Reflect::get(&locks, &JsValue::from_str("request"))
            .ok()
            .and_then(|f| f.dyn_into::<js_sys::Function>().ok());
        if let Some(request) = request {
            if let Err(e) = request.call2(&locks, &JsValue::from_str(LOCK), &granted) {
                leptos::logging::warn!("could not ask for the stream's lock: {e:?}");
            }
        }
    }
}

/// `navigator.locks`, where the browser has Web Locks.
fn locks() -> Option<JsValue> {
    let navigator = web_sys::window()?.navigator();
    let locks = js_sys::Reflect::get(&navigator, &JsValue::from_str("locks")).ok()?;
    (locks.is_object()).then_some(locks)
}
