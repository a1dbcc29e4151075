//! The server's one shared state, handed to axum handlers and (through context) to Leptos.

use axum::extract::FromRef;
use leptos::config::LeptosOptions;

use crate::jobs::JobEngine;

/// Everything a request handler may need. Cheap to clone.
#[derive(Clone, FromRef)]
pub struct AppState {
    /// Where the site's files are and how the app is rendered.
    pub leptos_options: LeptosOptions,
    /// The job engine every route talks to.
    pub engine: JobEngine,
}
