//! Event streams written straight to the socket (`server::connections`): what a client sees
//! when its stream request is the first on a new connection, over raw TCP so that nothing
//! between hides the wire.

use crate::common;

use std::time::Duration;

use common::{ids, names, TestApp};
use eventsource_stream::Eventsource;
use futures::StreamExt;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends `head` on a new connection.
async fn open(app: &TestApp, head: &str) -> TcpStream {
    let mut tcp = TcpStream::connect(app.addr).await.expect("connect");
    tcp.write_all(head.as_bytes()).await.expect("send");
    tcp
}

/// Everything the server sends until it closes: the head and the body.
async fn read_all(mut tcp: TcpStream) -> (String, String) {
    let mut bytes = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), tcp.read_to_end(&mut bytes))
        .await
        .expect("the server closes the connection")
        .expect("read");
    let text = String::from_utf8(bytes).expect("text");
    let (head, body) = text.split_once("\r\n\r\n").expect("a head");
    (head.to_string(), body.to_string())
}

fn get(path: &str, extra: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: test\r\nAccept: text/event-stream\r\n{extra}\r\n")
}

async fn events_of(body: String) -> Vec<eventsource_stream::Event> {
    let mut parsed = futures::stream::iter([Ok::<_, std::io::Error>(body.into_bytes())]).eventsource();
    let mut events = Vec::new();
    while let Some(event) = parsed.next().await {
        let event = event.expect("valid SSE");
        if !event.data.is_empty() {
            events.push(event);
        }
    }
    events
}

#[tokio::test]
async fn a_stream_on_a_new_connection_carries_every_event_in_order_then_closes() {
    let app = TestApp::spawn().await;
    let id = app.start("ticker", json!({"steps": 3, "interval_ms": 20})).await;
    let (head, body) = read_all(open(&app, &get(&format!("/api/jobs/{id}/events"), "")).await).await;

    let head = head.to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200 ok\r\n"), "{head}");
    assert!(head.contains("\r\ncontent-type: text/event-stream"), "{head}");
    assert!(head.contains("\r\ncache-control: no-cache"), "{head}");
    assert!(head.contains("\r\nconnection: close"), "{head}");
    assert!(!head.contains("transfer-encoding"), "close-delimited, not chunked: {head}");
    assert!(body.starts_with("retry: 2000\n"), "{body:.80}");
    let events = events_of(body).await;
    let n = events.len();
    assert_eq!(names(&events)[0], "pending");
    assert_eq!(&names(&events)[n - 2..], ["completed", "end"]);
    assert_eq!(ids(&events), (1..=(n as u64 - 1)).collect::<Vec<_>>(), "every event once, in order");
}

#[tokio::test]
async fn its_errors_are_problem_documents_and_a_stream_resumed_at_the_end_gets_204() {
    let app = TestApp::spawn().await;
    let (head, body) =
        read_all(open(&app, &get("/api/jobs/00000000-0000-4000-8000-000000000000/events", "")).await).await;
    assert!(head.starts_with("HTTP/1.1 404 Not Found\r\n"), "{head}");
    assert!(head.to_ascii_lowercase().contains("content-type: application/problem+json"), "{head}");
    assert!(head.contains(&format!("content-length: {}\r\n", body.len())), "{head}");
    let problem: Value = serde_json::from_str(&body).expect("a problem document");
    assert_eq!(problem["status"], 404);

    let id = app.start("ticker", json!({"steps": 2, "interval_ms": 5})).await;
    let (head, _) =
        read_all(open(&app, &get(&format!("/api/jobs/{id}/events"), "Last-Event-ID: nope\r\n")).await).await;
    assert!(head.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{head}");

    let (_, body) = read_all(open(&app, &get(&format!("/api/jobs/{id}/events"), "")).await).await;
    let last = events_of(body).await.iter().rev().find(|e| !e.id.is_empty()).map(|e| e.id.clone()).expect("an id");
    let (head, body) =
        read_all(open(&app, &get(&format!("/api/jobs/{id}/events"), &format!("Last-Event-ID: {last}\r\n"))).await)
            .await;
    assert!(head.starts_with("HTTP/1.1 204 No Content\r\n"), "{head}");
    assert!(!head.contains("content-length"), "{head}");
    assert_eq!(body, "");
}

#[tokio::test]
async fn a_head_that_arrives_in_pieces_is_served_all_the_same() {
    let app = TestApp::spawn().await;
    let id = app.start("ticker", json!({"steps": 2, "interval_ms": 5})).await;
    let head = get(&format!("/api/jobs/{id}/events"), "");
    let (first, second) = head.split_at(20);
    let mut tcp = open(&app, first).await;
    // The rest comes later, as from a slow network.
    tokio::time::sleep(Duration::from_millis(30)).await;
    tcp.write_all(second.as_bytes()).await.expect("send");
    let (head, body) = read_all(tcp).await;
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert_eq!(names(&events_of(body).await).last(), Some(&"end"));
}

#[tokio::test]
async fn a_client_that_leaves_gives_its_stream_back_at_once() {
    let app = TestApp::spawn().await;
    let id = app.start("ticker", json!({"steps": 1000, "interval_ms": 1000})).await;
    let mut tcp = open(&app, &get(&format!("/api/jobs/{id}/events"), "")).await;
    let mut first = [0u8; 256];
    let n =
        tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut first)).await.expect("an answer").expect("read");
    assert!(first[..n].starts_with(b"HTTP/1.1 200 OK"), "{}", String::from_utf8_lossy(&first[..n]));
    let open_streams = || async { app.engine.stats().await.subscriptions_open };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while open_streams().await != 1 {
        assert!(tokio::time::Instant::now() < deadline, "the stream never subscribed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(tcp);
    // Noticed from the closed socket, not at the next event or keep-alive (1 s and 10 s away).
    let deadline = tokio::time::Instant::now() + Duration::from_millis(900);
    while open_streams().await != 0 {
        assert!(tokio::time::Instant::now() < deadline, "the stream was not released when its client left");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
