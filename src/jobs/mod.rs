//! The job engine: runs long jobs, numbers every change they make, keeps each job's snapshot
//! and a bounded replay log, and lets any number of subscribers follow a job from any point.
//!
//! It knows nothing of HTTP or Leptos: the web layer (`crate::server`) only translates.
//!
//! # Layout
//! - [`engine`]: [`JobEngine`], the cheap-to-clone handle: start, snapshot, subscribe, cancel,
//!   shutdown, sweep. Its mechanics are in `core` (private): admitting a job, finding a record,
//!   running a job's code, taking over what the coordinator hands over, one code path for
//!   one instance and many.
//! - `coord` (private): the coordination seam, `Coordinator`: admission, the bound on running
//!   jobs and the queue, look-ups of jobs held elsewhere, leases. `coord::local` for a store one
//!   process owns, `coord::shared` for a store several instances share (leases, heartbeats,
//!   claims, take-overs, mirrors kept live from the store's notices).
//! - [`store`]: the storage seam, [`store::JobStore`] (and [`store::shared::SharedStore`] for a
//!   store several instances share), and its backends (`memory`, `sqlite`, `redis`).
//! - [`event`]: [`JobEvent`], one event with its JSON encoded once.
//! - `journal` (private): the one writer: batches events into the store, then tells their
//!   records, which publish them. It knows records only through its `Written` trait.
//! - `record` (private): one job's record (its run number, its role: held or mirror) and, in
//!   `record::replay`, its memory as plain data: state and bounded replay log.
//! - `table` (private): the jobs this process holds, by id and by owner; the engine and the
//!   log layer both look jobs up there.
//! - `runner` (private): runs one job's code to its end and records how it ended.
//! - [`stats`]: the numbers operators watch (`/metrics`).
//! - `clock` (private): wall-clock milliseconds that follow Tokio's (pausable) time.
//! - [`logs`]: [`logs::JobLogLayer`], the `tracing` layer that turns what a job's code logs into
//!   `log` events on that job's stream.
//! - [`subscription`]: [`Subscription`], replay after sequence N then the live tail.
//! - [`reporter`]: [`ProgressReporter`], what a job's code reports through.
//! - [`registry`]: [`KindRegistry`], job kinds by name with typed params.
//! - [`kinds`]: the built-in kinds (`checksum`, `discover`, `failing`, `ticker`).
//! - [`config`]: [`EngineConfig`], the limits that bound memory and concurrency.
//! - [`error`]: [`JobError`] (what a job's code fails with) and [`StartError`].

//! # Adding a job kind
//! ```no_run
//! use serde::Deserialize;
//! use sse_progress::jobs::{JobError, JobParams, KindRegistry, ProgressReporter};
//!
//! #[derive(Deserialize, serde::Serialize, schemars::JsonSchema)]
//! #[serde(deny_unknown_fields, default)]
//! struct Greet { times: u32 }
//! impl Default for Greet { fn default() -> Self { Self { times: 3 } } }
//! impl JobParams for Greet {}
//!
//! async fn greet(p: Greet, r: ProgressReporter) -> Result<String, JobError> {
//!     for i in 1..=p.times {
//!         r.step(i, p.times, "Greeting");
//!         r.sleep(std::time::Duration::from_millis(200)).await?;
//!     }
//!     Ok("hello".into())
//! }
//!
//! let mut kinds = KindRegistry::new();
//! kinds.register("greet", "Says hello a few times", greet);
//! ```

mod clock;
pub mod config;
mod coord;
mod core;
pub mod engine;
pub mod error;
pub mod event;
mod journal;
pub mod kinds;
pub mod logs;
mod record;
pub mod registry;
pub mod reporter;
mod runner;
pub mod stats;
pub mod store;
pub mod subscription;
mod table;

#[cfg(test)]
mod tests;

pub use config::EngineConfig;
pub use engine::{CancelOutcome, JobEngine, Recovered};
pub use error::{JobError, StartError};
pub use event::{JobEvent, Json};
pub use registry::{JobParams, KindRegistry};
pub use reporter::{ProgressReporter, Report};
pub use subscription::{Delivery, Subscription};
pub use table::OwnerWatch;
