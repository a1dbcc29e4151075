//! The `sse-progress` server: reads its configuration, starts the job engine, serves the app
//! where `LEPTOS_SITE_ADDR` says, and shuts down gracefully on Ctrl-C or SIGTERM.

use leptos::config::get_configuration;
use sse_progress::jobs::{kinds, JobEngine};
use sse_progress::server::{self, config::engine_config_from_env, AppState};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new("info,tower_http=warn")),
        )
        .init();

    let conf = get_configuration(None)?;
    let addr = conf.leptos_options.site_addr;
    let engine = JobEngine::new(engine_config_from_env()?, kinds::builtin());
    let state = AppState {
        leptos_options: conf.leptos_options,
        engine,
    };

    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!("listening on http://{}", listener.local_addr()?);
    server::serve(listener, state, server::shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(())
}
