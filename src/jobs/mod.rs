//! The job engine: runs long jobs, numbers every change they make, keeps each job's snapshot
//! and a bounded replay log, and lets any number of subscribers follow a job from any point.
//!
//! It knows nothing of HTTP or Leptos: the web layer (`crate::server`) only translates.
//!
//! # Layout
//! - [`engine`]: [`JobEngine`], the cheap-to-clone handle: start, snapshot, subscribe, cancel,
//!   shutdown, the sweep that forgets ended jobs after their retention, and picking up what a
//!   previous process left in the store.
//! - [`store`]: the storage seam, [`store::JobStore`] (and [`store::shared::SharedStore`] for a
//!   store several instances share), and its backends (`memory`, `sqlite`, `redis`).
//! - `journal` (private): the one writer: batches events into the store, then publishes them.
//! - `table` (private): the jobs this process holds, by id and by owner; the engine and the
//!   log layer both look jobs up there.
//! - `record` (private): one job's state, replay log and wake-up signal.
//! - `runner` (private): runs one job's code and records how it ended.
//! - `cluster` (private): this instance's part in a store several instances share: leases,
//!   heartbeats, claims, take-overs, and mirrors of other instances' jobs kept live.
//! - [`stats`]: the numbers operators watch (`/metrics`).
//! - `clock` (private): wall-clock milliseconds that follow Tokio's (pausable) time.
//! - [`logs`]: [`logs::JobLogLayer`], the `tracing` layer that turns what a job's code logs into
//!   `log` events on that job's stream.
//! - [`subscription`]: [`Subscription`], replay after sequence N then the live tail.
//! - [`reporter`]: [`ProgressReporter`], what a job's code reports through.
//! - [`registry`]: [`KindRegistry`], job kinds by name with typed params.
//! - [`kinds`]: the built-in kinds (`checksum`, `discover`, `failing`, `ticker`).
//! - `scheduler` (private): the bound on running jobs and the queue behind it.
//! - [`config`]: [`EngineConfig`], the limits that bound memory and concurrency.
//!
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
mod cluster;
pub mod config;
pub mod engine;
pub mod error;
mod journal;
pub mod kinds;
pub mod logs;
mod record;
pub mod registry;
pub mod reporter;
mod runner;
mod scheduler;
pub mod stats;
pub mod store;
pub mod subscription;
mod table;

#[cfg(test)]
mod tests;

pub use config::EngineConfig;
pub use engine::{CancelOutcome, JobEngine, Recovered};
pub use error::{JobError, StartError};
pub use record::{JobEvent, Json};
pub use registry::{JobParams, KindRegistry};
pub use reporter::{ProgressReporter, Report};
pub use subscription::{Delivery, Subscription};
