//! Reactive hooks, in the shape of leptos-use: `use_x(arg)` is `use_x_with_options(arg,
//! UseXOptions::default())` and returns a `UseXReturn` of signals and callbacks.

mod connection;
pub mod event_hub;
#[cfg(not(feature = "ssr"))]
mod event_source;
// Pure and tested natively; on the server only its tests use it.
#[cfg_attr(feature = "ssr", allow(dead_code))]
mod hub_state;
#[cfg(not(feature = "ssr"))]
mod tabs;
pub mod use_sse_progress;

pub use connection::ConnectionState;
pub use event_hub::{provide_event_hub, use_event_hub, EventHub, HubEvent};
pub use use_sse_progress::{
    use_sse_progress, use_sse_progress_with_options, StepInfo, Transport, UseSseProgressOptions, UseSseProgressReturn,
};
