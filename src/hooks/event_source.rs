//! The browser's `EventSource` for one job stream, with its listeners kept alive exactly as
//! long as the connection. Browser only.

use wasm_bindgen::closure::Closure;
use wasm_bindgen::JsCast;
use web_sys::{Event, EventSource, MessageEvent};

/// Every event name of a job stream: the states (`data:` is a `Snapshot`), `log` (a
/// `LogLine`) and `end`.
const EVENTS: [&str; 9] =
    ["pending", "progress", "completed", "failed", "cancelled", "interrupted", "reset", "log", "end"];

/// A DOM event listener, kept alive as long as its connection.
type Listener = Closure<dyn FnMut(Event)>;

/// What the connection reports to its owner.
pub(crate) struct Handlers {
    /// The stream is open.
    pub on_open: Box<dyn Fn()>,
    /// A job event arrived: its name (a state event, `log` or `end`) and its `data:`.
    pub on_event: Box<dyn Fn(&'static str, String)>,
    /// The connection failed or dropped. The browser's own retry is stopped: the owner
    /// decides when to reconnect.
    pub on_error: Box<dyn Fn()>,
}

/// An open `EventSource` and its listeners. Closing or dropping it stops everything.
pub(crate) struct Connection {
    source: EventSource,
    _listeners: Vec<Listener>,
}

fn describe(e: &wasm_bindgen::JsValue) -> String {
    e.as_string().unwrap_or_else(|| format!("{e:?}"))
}

impl Connection {
    /// Opens `url` and routes its events to `handlers`.
    pub(crate) fn open(url: &str, handlers: Handlers) -> Result<Self, String> {
        let source = EventSource::new(url).map_err(|e| describe(&e))?;
        let Handlers { on_open, on_event, on_error } = handlers;
        let on_event = std::rc::Rc::new(on_event);
        let mut listeners: Vec<(&str, Listener)> = Vec::new();
        listeners.push(("open", Closure::new(move |_: Event| on_open())));
        for name in EVENTS {
            let on_event = on_event.clone();
            listeners.push((
                name,
                Closure::new(move |e: Event| {
                    let data = e.dyn_ref::<MessageEvent>().and_then(|m| m.data().as_string()).unwrap_or_default();
                    on_event(name, data);
                }),
            ));
        }
        {
            let source = source.clone();
            listeners.push((
                "error",
                Closure::new(move |_: Event| {
                    source.close();
                    on_error();
                }),
            ));
        }
        for (name, listener) in &listeners {
            source
                .add_event_listener_with_callback(name, listener.as_ref().unchecked_ref())
                .map_err(|e| describe(&e))?;
        }
        Ok(Self { source, _listeners: listeners.into_iter().map(|(_, l)| l).collect() })
    }

    /// Closes the stream; no listener runs after this.
    pub(crate) fn close(&self) {
        self.source.close();
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.source.close();
    }
}
