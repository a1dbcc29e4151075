//! The `sse-progress` binary: serves the app (the default), or, as `watch` / `run`, follows a
//! job in the terminal. Serving reads its configuration, opens the job store
//! (`SSE_PROGRESS_STORE`) and picks up the jobs a previous run left there, listens where
//! `LEPTOS_SITE_ADDR` says, and shuts down gracefully on Ctrl-C or SIGTERM.

use std::ffi::OsString;
use std::process::ExitCode;

use clap::{CommandFactory, Parser};
use leptos::config::get_configuration;
use sse_progress::cli::{self, Cli, Command};
use sse_progress::jobs::{kinds, store, JobEngine};
use sse_progress::server::config::{self, ServeSettings};
use sse_progress::server::{self, AppState};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

async fn serve(settings: ServeSettings) -> Result<(), Box<dyn std::error::Error>> {
    let limits = settings.limits_config();
    let store = store::open(settings.store.as_deref())?;
    let (engine, _recovered) = JobEngine::open(settings.engine_config(), kinds::builtin(), store)?;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,tower_http=warn"));
    tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_filter(filter))
        .with(engine.log_layer())
        .init();
    tracing::info!(store = %engine.store_description(), "jobs are kept in the store");
    // Only now, so that what resumed jobs log reaches their viewers through the layer above.
    engine.start_recovered();

    let mut leptos_options = get_configuration(None)?.leptos_options;
    leptos_options.hash_files = server::config::hash_files(&leptos_options);
    let addr = leptos_options.site_addr;
    tracing::info!(?limits, "what one client may do at once");
    let state = AppState::new(leptos_options, engine, limits);

    let listener = server::listen(addr)?;
    tracing::info!("listening on http://{}", listener.local_addr()?);
    server::serve(listener, state, server::shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(())
}

/// The command, from the command line and (for `serve`) the environment; or, when either
/// holds something not allowed, a message that says what and exit code 2.
fn command() -> Command {
    let args: Vec<OsString> = std::env::args_os().collect();
    let parsed = Cli::try_parse_from(&args).and_then(|cli| match cli.command {
        Some(command) => Ok(command),
        None => ServeSettings::from_env().map(Command::Serve),
    });
    parsed.unwrap_or_else(|error| match config::explain(&error, &Cli::command(), &args) {
        Some(message) => {
            eprintln!("sse-progress: {message}");
            std::process::exit(2)
        }
        None => error.exit(),
    })
}

#[tokio::main]
async fn main() -> ExitCode {
    match command() {
        Command::Serve(settings) => match serve(settings).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("sse-progress: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Watch { target, server, token } => match cli::events_url(&target, &server) {
            Ok(url) => cli::watch(url, token).await.exit_code(),
            Err(e) => {
                eprintln!("sse-progress watch: {e}");
                ExitCode::from(2)
            }
        },
        Command::Run { kind, params, server } => cli::run(&server, &kind, params).await.exit_code(),
    }
}
