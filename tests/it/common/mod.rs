//! A real server on a real socket (127.0.0.1:0) and an SSE client to read it with.

#![allow(dead_code)] // each test file uses a different part

pub mod client;
pub mod disk;
pub mod faults;
pub mod process;
pub mod redis;

use std::net::SocketAddr;
use std::time::Duration;

use eventsource_stream::{Event, Eventsource};
use futures::StreamExt;
use leptos::config::LeptosOptions;
use sse_progress::jobs::{kinds, EngineConfig, JobEngine, KindRegistry};
use sse_progress::server::limits::LimitsConfig;
use sse_progress::server::{self, AppState};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A running server.
pub struct TestApp {
    pub addr: SocketAddr,
    pub engine: JobEngine,
    pub client: reqwest::Client,
    shutdown: Option<oneshot::Sender<()>>,
    pub handle: JoinHandle<std::io::Result<()>>,
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(EngineConfig::default()).await
    }

    pub async fn spawn_with(config: EngineConfig) -> Self {
        Self::spawn_with_kinds(config, kinds::builtin()).await
    }

    pub async fn spawn_with_kinds(config: EngineConfig, kinds: KindRegistry) -> Self {
        Self::spawn_at("127.0.0.1:0", config, kinds).await
    }

    /// A server listening on `bind` (an address and port, 0 for any free one).
    pub async fn spawn_at(bind: &str, config: EngineConfig, kinds: KindRegistry) -> Self {
        Self::spawn_limited(bind, config, kinds, LimitsConfig::default()).await
    }

    /// A server listening on `bind` that limits its clients so.
    pub async fn spawn_limited(bind: &str, config: EngineConfig, kinds: KindRegistry, limits: LimitsConfig) -> Self {
        let engine = JobEngine::new(config, kinds);
        let leptos_options = LeptosOptions::builder().output_name("sse-progress").build();
        let state = AppState::new(leptos_options, engine.clone(), limits);
        let listener = TcpListener::bind(bind).await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let (tx, rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(server::serve(listener, state, async {
            let _ = rx.await;
        }));
        // Keeps the owner cookie the server gives, like a browser: one client, one owner.
        let client = reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client");
        Self { addr, engine, client, shutdown: Some(tx), handle }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Starts a job straight through the engine.
    pub async fn start(&self, kind: &str, params: serde_json::Value) -> String {
        self.engine.start(kind, params).await.expect("job starts").to_string()
    }

    /// Opens a job's event stream with an optional `Last-Event-ID` header and query.
    pub async fn events(&self, id: &str, last_event_id: Option<&str>, query: &str) -> reqwest::Response {
        let mut request = self.client.get(self.url(&format!("/api/jobs/{id}/events{query}")));
        if let Some(v) = last_event_id {
            request = request.header("Last-Event-ID", v);
        }
        request.send().await.expect("request")
    }

    /// Waits (at most 20 s) until exactly `n` event subscriptions are open on the engine: a
    /// stream has been opened, or a client that left has been noticed.
    pub async fn wait_for_streams(&self, n: u64) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let open = self.engine.stats().await.subscriptions_open;
            if open == n {
                return;
            }
            assert!(tokio::time::Instant::now() < deadline, "{open} streams open after 20 s, not {n}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Signals shutdown (Ctrl-C / SIGTERM in the real binary).
    pub fn shut_down(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Reads SSE events until the stream ends (or `limit` events, or 20 s of silence).
/// Bare `retry:` blocks are left out; their hint is returned separately.
pub async fn read_events(response: reqwest::Response, limit: usize) -> (Vec<Event>, Option<Duration>) {
    let mut stream = response.bytes_stream().eventsource();
    let mut events = Vec::new();
    let mut retry = None;
    while events.len() < limit {
        let next = tokio::time::timeout(Duration::from_secs(20), stream.next()).await.expect("an event within 20 s");
        match next {
            None => break,
            Some(Err(e)) => panic!("not a valid event stream: {e}"),
            Some(Ok(event)) => {
                if event.retry.is_some() {
                    retry = event.retry;
                }
                if !event.event.is_empty() || !event.data.is_empty() {
                    events.push(event);
                }
            }
        }
    }
    (events, retry)
}

pub fn ids(events: &[Event]) -> Vec<u64> {
    events.iter().filter(|e| e.event != "end").map(|e| e.id.parse().expect("numeric id")).collect()
}

pub fn names(events: &[Event]) -> Vec<&str> {
    events.iter().map(|e| e.event.as_str()).collect()
}

pub fn data(event: &Event) -> serde_json::Value {
    serde_json::from_str(&event.data).expect("data is JSON")
}

/// Runs the `sse-progress` binary with `args` and waits for it.
pub async fn cli(args: &[&str]) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_sse-progress"))
        .args(args)
        .env_remove("SSE_PROGRESS_SERVER")
        .env_remove("SSE_PROGRESS_TOKEN")
        .output()
        .await
        .expect("the binary runs")
}
