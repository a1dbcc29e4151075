//! sse-progress: long-running jobs on the server, their progress live in the browser over
//! Server-Sent Events, with one crate built twice: `ssr` (the server) and `hydrate` (the
//! browser's wasm).
//!
//! # Layout
//! - [`model`]: the serde types both sides share (`JobId`, `JobStatus`, `Snapshot`).
//! - [`jobs`] (server): the job engine; imports neither axum nor Leptos.
//! - [`server`] (server): axum router, the REST API, the SSE route, OpenAPI, errors, config.
//! - [`cli`] (server): the terminal client, `sse-progress watch` and `sse-progress run`.
//! - [`server_fns`]: the Leptos server functions (`start_job`, `job_snapshot`, `job_kinds`).
//! - [`app`]: the HTML shell, `<App/>` and its routes.
//! - [`pages`]: one module per route.
//! - [`components`]: progress bar, step label, status panel ... one component per module.
//! - [`hooks`]: `use_sse_progress`, the reactive view of one job's stream, and the tab's event
//!   hub it shares (the hub never imports the hook).
//! - [`retry`]: back-off for reconnecting, shared by the browser and the terminal client.

// Leptos views are deeply nested types; the release build (without type erasure) needs room.
#![recursion_limit = "256"]

pub mod app;
#[cfg(feature = "ssr")]
pub mod cli;
pub mod components;
pub mod hooks;
#[cfg(feature = "ssr")]
pub mod jobs;
pub mod model;
pub mod pages;
pub mod retry;
#[cfg(feature = "ssr")]
pub mod server;
pub mod server_fns;

/// The browser's entry point: hydrates the server-rendered page (asynchronously, so a page
/// behind a lazy route first fetches its code).
#[cfg(feature = "hydrate")]
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    leptos::mount::hydrate_lazy(app::App);
}
