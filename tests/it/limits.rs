//! What one client may do at once, over a real socket: starts per minute per address, open
//! streams per address and per owner, each refused with a `429`, `Retry-After` and a problem
//! document that names the bound; the address behind a trusted proxy; loopback exempt by default.

use crate::common;

use std::num::NonZeroU32;
use std::time::Duration;

use common::TestApp;
use serde_json::{json, Value};
use sse_progress::jobs::{kinds, EngineConfig};
use sse_progress::server::limits::{parse_networks, LimitsConfig};

/// A server that limits loopback clients (these tests' own) like any other.
async fn limited(limits: LimitsConfig) -> TestApp {
    let limits = LimitsConfig { exempt: Vec::new(), ..limits };
    TestApp::spawn_limited("127.0.0.1:0", EngineConfig::default(), kinds::builtin(), limits).await
}

fn n(v: u32) -> NonZeroU32 {
    NonZeroU32::new(v).expect("not zero")
}

const SLOW: &str = r#"{"kind": "ticker", "params": {"steps": 100, "interval_ms": 100}}"#;

async fn start(app: &TestApp, client: &reqwest::Client, forwarded_for: Option<&str>) -> reqwest::Response {
    let mut request =
        client.post(app.url("/api/jobs")).header("content-type", "application/json").body(SLOW.to_string());
    if let Some(address) = forwarded_for {
        request = request.header("x-forwarded-for", address);
    }
    request.send().await.expect("post")
}

async fn problem(response: reqwest::Response) -> Value {
    assert_eq!(response.headers()["content-type"], "application/problem+json");
    response.json().await.expect("json")
}

#[tokio::test]
async fn starts_past_the_burst_are_refused_until_the_bucket_refills() {
    let app = limited(LimitsConfig { starts_per_minute: n(60), start_burst: n(3), ..LimitsConfig::default() }).await;
    for _ in 0..2 {
        assert_eq!(start(&app, &app.client, None).await.status(), 202);
    }
    // The browser's way in counts too: the `start_job` server function.
    let form =
        app.client.post(app.url("/api/start_job")).form(&[("kind", "ticker")]).send().await.expect("post the form");
    assert!(form.status().is_success() || form.status().is_redirection(), "{}", form.status());

    let refused = start(&app, &app.client, None).await;
    assert_eq!(refused.status(), 429);
    let wait: u64 = refused.headers()["retry-after"].to_str().expect("text").parse().expect("seconds");
    assert_eq!(wait, 1, "one start a second refills");
    let body = problem(refused).await;
    assert_eq!(body["code"], "too_many_starts");
    assert_eq!(body["retry_after"], 1);
    assert_eq!(
        body["detail"],
        "this client address has started too many jobs: 60 a minute are allowed, 3 at once after a pause; try again in 1 s"
    );
    let jobs: u64 = app.engine.stats().await.jobs_by_status.iter().map(|(_, n)| n).sum();
    assert_eq!(jobs, 3, "the refused start started nothing");

    // Waiting as told is enough.
    tokio::time::sleep(Duration::from_secs(wait)).await;
    assert_eq!(start(&app, &app.client, None).await.status(), 202);
}

#[tokio::test]
async fn behind_a_trusted_proxy_each_forwarded_client_has_its_own_bucket() {
    let app = limited(LimitsConfig {
        start_burst: n(1),
        trusted_proxies: parse_networks("127.0.0.1").expect("parses"),
        ..LimitsConfig::default()
    })
    .await;
    let client = reqwest::Client::new();
    assert_eq!(start(&app, &client, Some("203.0.113.1")).await.status(), 202);
    assert_eq!(start(&app, &client, Some("203.0.113.1")).await.status(), 429);
    assert_eq!(start(&app, &client, Some("203.0.113.2")).await.status(), 202, "another client behind the proxy");
    // What a client writes itself in front of the proxy's entry does not make it someone else.
    assert_eq!(start(&app, &client, Some("198.51.100.9, 203.0.113.1")).await.status(), 429);
}

#[tokio::test]
async fn loopback_clients_are_not_limited_by_default() {
    let app = TestApp::spawn_limited(
        "127.0.0.1:0",
        EngineConfig::default(),
        kinds::builtin(),
        LimitsConfig { start_burst: n(1), streams_per_owner: 1, ..LimitsConfig::default() },
    )
    .await;
    let quick = json!({"kind": "ticker", "params": {"steps": 1, "interval_ms": 10}});
    for _ in 0..3 {
        let response = app.client.post(app.url("/api/jobs")).json(&quick).send().await.expect("post");
        assert_eq!(response.status(), 202);
    }
}

#[tokio::test]
async fn open_streams_are_bounded_per_owner_and_per_address_and_freed_when_closed() {
    let app = limited(LimitsConfig { streams_per_owner: 2, streams_per_address: 3, ..LimitsConfig::default() }).await;
    let started = start(&app, &app.client, None).await;
    let id = started.json::<Value>().await.expect("json")["id"].as_str().expect("id").to_string();

    let first = app.events(&id, None, "").await;
    assert_eq!(first.status(), 200);
    let second = app.events(&id, None, "").await;
    assert_eq!(second.status(), 200);
    app.wait_for_streams(2).await;
    let refused = app.events(&id, None, "").await;
    assert_eq!(refused.status(), 429);
    assert_eq!(refused.headers()["retry-after"], "5");
    let body = problem(refused).await;
    assert_eq!(body["code"], "too_many_streams");
    assert_eq!(
        body["detail"],
        "this owner already has 2 event streams open, the most allowed at once; close one (or follow many jobs on the \
         one stream GET /api/events) and try again"
    );
    // The owner's stream of all its jobs counts as well.
    assert_eq!(app.client.get(app.url("/api/events")).send().await.expect("get").status(), 429);

    // Another owner on the same address gets the address's last stream.
    let other = reqwest::Client::builder().cookie_store(true).build().expect("client");
    other.get(app.url("/")).send().await.expect("a cookie of its own");
    let third = other.get(app.url("/api/events")).send().await.expect("get");
    assert_eq!(third.status(), 200);
    let by_address = other.get(app.url("/api/events")).send().await.expect("get");
    assert_eq!(by_address.status(), 429);
    assert!(problem(by_address).await["detail"]
        .as_str()
        .expect("text")
        .starts_with("this client address already has 3"));

    // Closing one frees its place as soon as the server notices.
    drop(first);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let again = app.events(&id, None, "").await;
        if again.status() == 200 {
            break;
        }
        assert_eq!(again.status(), 429);
        assert!(tokio::time::Instant::now() < deadline, "the closed stream's place was not freed in 20 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop((second, third));
}

/// A stream that is the first request of a new connection is written straight to its socket,
/// past the layers' bodies: it still holds its place while its events flow, and gives it back
/// when its client leaves.
#[tokio::test]
async fn a_stream_written_straight_to_its_socket_holds_its_place_until_its_client_leaves() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let app = limited(LimitsConfig { streams_per_address: 1, ..LimitsConfig::default() }).await;
    let id = app.start("ticker", json!({"steps": 1000, "interval_ms": 20})).await;
    let head = format!("GET /api/jobs/{id}/events HTTP/1.1\r\nHost: test\r\n\r\n");
    let open = || async {
        let mut tcp = tokio::net::TcpStream::connect(app.addr).await.expect("connect");
        tcp.write_all(head.as_bytes()).await.expect("send");
        tcp
    };
    // Reads until `want` has arrived; what arrived.
    async fn read_until(tcp: &mut tokio::net::TcpStream, want: &str) -> String {
        let mut seen = Vec::new();
        let mut buffer = [0u8; 4096];
        while !String::from_utf8_lossy(&seen).contains(want) {
            let n = tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut buffer))
                .await
                .expect("bytes within 10 s")
                .expect("read");
            assert!(n > 0, "closed before {want:?}: {}", String::from_utf8_lossy(&seen));
            seen.extend_from_slice(&buffer[..n]);
        }
        String::from_utf8_lossy(&seen).into_owned()
    }

    let mut first = open().await;
    assert!(read_until(&mut first, "\r\n\r\n").await.starts_with("HTTP/1.1 200 OK"));
    // Several events later, the stream still holds the address's one place.
    read_until(&mut first, "\nid: 8\n").await;
    let mut second = open().await;
    let refused = read_until(&mut second, "too_many_streams").await;
    assert!(refused.starts_with("HTTP/1.1 429"), "{refused}");

    drop(first);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let mut again = open().await;
        let answer = read_until(&mut again, "\r\n\r\n").await;
        if answer.starts_with("HTTP/1.1 200 OK") {
            break;
        }
        assert!(answer.starts_with("HTTP/1.1 429"), "{answer}");
        assert!(tokio::time::Instant::now() < deadline, "the place of the stream that was left was not freed in 5 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
