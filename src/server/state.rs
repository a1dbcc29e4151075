//! The server's one shared state, handed to axum handlers and (through context) to Leptos.

use std::sync::Arc;

use axum::extract::FromRef;
use leptos::config::LeptosOptions;

use super::limits::{ClientLimits, LimitsConfig};
use crate::jobs::JobEngine;

/// Everything a request handler may need. Cheap to clone.
#[derive(Clone, FromRef)]
pub struct AppState {
    /// Where the site's files are and how the app is rendered.
    pub leptos_options: LeptosOptions,
    /// The job engine every route talks to.
    pub engine: JobEngine,
    /// What one client may do at once.
    pub limits: Arc<ClientLimits>,
}

impl AppState {
    /// The state of a server with these options, engine and client limits.
    pub fn new(leptos_options: LeptosOptions, engine: JobEngine, limits: LimitsConfig) -> Self {
        Self { leptos_options, engine, limits: Arc::new(ClientLimits::new(limits)) }
    }
}
