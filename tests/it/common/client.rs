//! A client of the real server over HTTP, as scripts use it: one owner (its bearer token from
//! its first start), jobs started, looked at and followed over SSE.

use std::time::Duration;

use eventsource_stream::{Event, Eventsource};
use futures::StreamExt;
use serde_json::{json, Value};

use super::process::ServerProcess;

/// Anything that serves the API at an address: a server process, or a proxy in front of some.
pub trait Server {
    fn url(&self, path: &str) -> String;
}

impl Server for ServerProcess {
    fn url(&self, path: &str) -> String {
        ServerProcess::url(self, path)
    }
}

/// A server on a local port that this test did not start itself (e.g. nginx).
pub struct Port(pub u16);

impl Server for Port {
    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.0, path)
    }
}

/// A client of one owner: its bearer token from the first start.
pub struct Client {
    pub http: reqwest::Client,
    pub token: Option<String>,
}

impl Client {
    pub fn new() -> Self {
        Self { http: reqwest::Client::new(), token: None }
    }

    pub fn auth(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    pub async fn start(&mut self, server: &impl Server, kind: &str, params: Value) -> String {
        let response = self
            .auth(self.http.post(server.url("/api/jobs")))
            .json(&json!({"kind": kind, "params": params}))
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 202, "{kind} starts");
        let body: Value = response.json().await.expect("json");
        if let Some(token) = body["owner_token"].as_str() {
            self.token = Some(token.to_string());
        }
        body["id"].as_str().expect("an id").to_string()
    }

    pub async fn job(&self, server: &impl Server, id: &str) -> (u16, Value) {
        let response = self.auth(self.http.get(server.url(&format!("/api/jobs/{id}")))).send().await.expect("request");
        (response.status().as_u16(), response.json().await.unwrap_or(Value::Null))
    }

    pub async fn events(&self, server: &impl Server, id: &str, after: Option<u64>) -> reqwest::Response {
        let mut request = self.auth(self.http.get(server.url(&format!("/api/jobs/{id}/events"))));
        if let Some(after) = after {
            request = request.header("Last-Event-ID", after.to_string());
        }
        let response = request.send().await.expect("request");
        assert_eq!(response.status(), 200);
        response
    }

    /// Waits (at most 30 s) until the job's status is `status`.
    pub async fn wait_for(&self, server: &impl Server, id: &str, status: &str) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let (code, job) = self.job(server, id).await;
            assert_eq!(code, 200, "{job}");
            if job["status"] == status {
                return job;
            }
            assert!(tokio::time::Instant::now() < deadline, "job {id} never became {status}: {job}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Every event of a stream until it ends (or breaks), without the `retry:` hint.
pub async fn drain(response: reqwest::Response) -> Vec<Event> {
    let mut stream = response.bytes_stream().eventsource();
    let mut events = Vec::new();
    while let Ok(Some(Ok(event))) = tokio::time::timeout(Duration::from_secs(30), stream.next()).await {
        if !event.event.is_empty() {
            events.push(event);
        }
    }
    events
}

pub fn seq_of(event: &Event) -> u64 {
    event.id.parse().expect("a numeric id")
}

pub fn assert_contiguous(events: &[Event], from: u64) {
    let seqs: Vec<u64> = events.iter().filter(|e| e.event != "end").map(seq_of).collect();
    let expected: Vec<u64> = (from..from + seqs.len() as u64).collect();
    assert_eq!(seqs, expected, "no gap, no duplicate, in order");
}
