//! The web layer (server build only): the axum router that serves the Leptos app, its server
//! functions and the job event streams, and the graceful shutdown that ends them.
//!
//! It only translates between HTTP and the job engine (`crate::jobs`); no job logic lives here.

pub mod api;
pub mod caching;
pub mod config;
pub mod connections;
pub mod error;
pub mod events;
pub mod extract;
#[doc(hidden)]
pub mod fuzzing;
pub mod health;
pub mod limits;
pub mod metrics;
pub mod openapi;
pub mod owner;
pub mod owner_events;
pub mod security;
pub mod sse;
pub mod state;

use std::future::Future;
use std::sync::LazyLock;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::Uri;
use axum::routing::{any, get, post};
use axum::{middleware, Router};
use leptos::prelude::provide_context;
use leptos_axum::{generate_route_list, AxumRouteListing, LeptosRoutes};
use tokio::net::TcpListener;
use tower::Layer;
use tower_http::compression::CompressionLayer;
use tower_http::trace::TraceLayer;

pub use error::AppError;
pub use state::AppState;

use crate::app::{shell, App};

/// How long shutdown waits for running jobs to stop after telling them to.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// The JSON and SSE API, with problem documents for every error.
fn api_router() -> Router<AppState> {
    Router::new()
        .route("/api/job-kinds", get(api::list_kinds))
        .route("/api/jobs", post(api::start_job))
        .route("/api/jobs/{id}", get(api::get_job).delete(api::cancel_job))
        .route("/api/jobs/{id}/result", get(api::get_result))
        .route("/api/jobs/{id}/logs", get(api::get_logs))
        .route("/api/jobs/{id}/events", get(events::job_events))
        .route("/api/events", get(owner_events::owner_events))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(metrics::metrics))
        .route("/api/openapi.json", get(openapi::openapi_json))
        .route("/api/{*rest}", any(route_not_found))
        .route("/api/", any(route_not_found))
        .route("/api", any(route_not_found))
        .layer(DefaultBodyLimit::max(extract::BODY_LIMIT))
}

/// Any other path under `/api`: a problem document, not the app's HTML 404 page.
async fn route_not_found(uri: Uri) -> AppError {
    AppError::RouteNotFound(uri.path().to_string())
}

/// The app's page routes, found once per process by rendering the app with its resources held
/// back. Leptos holds them back with one flag for the whole process (leptos_server's
/// `SuppressResourceLoad`, leptos issue #4773): a page rendered on another thread while routes
/// are being found has its resource wait for ever. Finding them once, before any router exists,
/// means no page can be rendering then, however many servers a process builds (the tests build
/// one per test, in parallel; a page render stalled in about 3 % of such runs).
static PAGE_ROUTES: LazyLock<Vec<AxumRouteListing>> = LazyLock::new(|| generate_route_list(App));

/// The whole application: pages, server functions, and the API routes.
pub fn router(state: AppState) -> Router {
    let routes = PAGE_ROUTES.clone();
    let engine = state.engine.clone();
    let options = state.leptos_options.clone();
    let app = Router::new()
        .merge(api_router())
        .leptos_routes_with_context(
            &state,
            routes,
            move || {
                provide_context(engine.clone());
                security::page_policy();
            },
            move || shell(options.clone()),
        )
        .fallback(leptos_axum::file_and_error_handler_with_context::<AppState, _>(security::page_policy, shell))
        .layer(middleware::from_fn(extract::read_body_in_time))
        .layer(middleware::from_fn_with_state(state.limits.clone(), limits::limit))
        .layer(middleware::from_fn(owner::identify))
        .layer(middleware::from_fn(security::refuse_cross_site));
    security::static_headers(app)
        .layer(middleware::from_fn(caching::cache_control))
        // Brotli or gzip, as the client accepts, for pages, the wasm, JS, CSS and JSON. Its
        // default predicate never touches `text/event-stream` (a stream must not wait in an
        // encoder's buffer), nor images or answers under 32 bytes.
        .layer(CompressionLayer::new())
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// The longest queue of connections waiting to be accepted that is asked for; the kernel caps
/// it at `net.core.somaxconn` (4096 on current Linux). Tokio's `TcpListener::bind` asks for
/// 1024, and a burst of a thousand clients connecting at once then overflowed it: the dropped
/// SYNs were sent again a second later (first-event p99 of such a burst: 1.27 s).
const LISTEN_BACKLOG: u32 = 65_535;

/// Listens on `addr` with a long accept queue (see [`LISTEN_BACKLOG`]).
pub fn listen(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    // As std's and tokio's bind do: a restarted server can listen again at once.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Serves the application on `listener` until `signal` completes, then shuts down gracefully:
/// open event streams end at once (their clients reconnect elsewhere or later), running jobs
/// are told to stop, and the server returns once in-flight requests are done.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    signal: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let engine = state.engine.clone();
    // Every route made ready once, here, and shared by every connection. (Served as a plain
    // `Router`, axum::serve did this again for each connection, `Router::with_state(())` per
    // accepted stream: a copy of the whole route table, about 25 KB that every open event
    // stream kept for its whole life; heaptrack, 2,000 idle streams.)
    // Outside the router, so that it sees the `Allow` header axum puts on a 405.
    let app = middleware::from_fn(extract::explain_wrong_method).layer(router(state).with_state(()));
    let shutdown = async move {
        signal.await;
        tracing::info!("shutting down: ending streams and stopping jobs");
        if !engine.shutdown(SHUTDOWN_GRACE).await {
            tracing::warn!(grace = ?SHUTDOWN_GRACE, "some jobs were still running at shutdown");
        }
    };
    connections::serve(listener, app, shutdown).await
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
