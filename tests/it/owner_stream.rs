//! `GET /api/events` over a real socket: one stream carries every job of its owner (and only
//! theirs), jobs started later in another tab appear on it, and resuming with `after` is exact
//! for every job.

use crate::common;

use std::time::Duration;

use common::{data, TestApp};
use eventsource_stream::{Event, Eventsource};
use futures::StreamExt;
use serde_json::{json, Value};

async fn start(app: &TestApp, client: &reqwest::Client, steps: u32) -> String {
    let response = client
        .post(app.url("/api/jobs"))
        .json(&json!({"kind": "ticker", "params": {"steps": steps, "interval_ms": 40}}))
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), 202);
    response.json::<Value>().await.expect("json")["id"].as_str().expect("id").to_string()
}

/// Opens the owner stream. Once its head has arrived the server follows the owner's jobs: one
/// started from now on is on it from its first event.
async fn open(client: &reqwest::Client, url: String) -> reqwest::Response {
    let response = client.get(url).send().await.expect("get");
    assert_eq!(response.status(), 200);
    response
}

/// Opens the owner stream and reads events until `done` says so (the stream itself never ends).
async fn read_until(client: &reqwest::Client, url: String, done: impl Fn(&[Event]) -> bool) -> Vec<Event> {
    read_from(open(client, url).await, done).await
}

/// Reads events from an open stream until `done` says so.
async fn read_from(response: reqwest::Response, done: impl Fn(&[Event]) -> bool) -> Vec<Event> {
    let mut stream = response.bytes_stream().eventsource();
    let mut events = Vec::new();
    while !done(&events) {
        let next = tokio::time::timeout(Duration::from_secs(20), stream.next()).await.expect("an event within 20 s");
        let event = next.expect("the stream stays open").expect("valid SSE");
        if !event.data.is_empty() {
            events.push(event);
        }
    }
    events
}

fn job_of(event: &Event) -> String {
    let d = data(event);
    d.get("job").or_else(|| d.get("id")).and_then(Value::as_str).expect("a job").to_string()
}

fn ended(events: &[Event], job: &str) -> bool {
    events.iter().any(|e| e.event == "end" && job_of(e) == job)
}

/// The sequence numbers of one job's events, in the order they arrived.
fn seqs_of(events: &[Event], job: &str) -> Vec<u64> {
    events
        .iter()
        .filter(|e| e.event != "end")
        .filter_map(|e| e.id.split_once(':'))
        .filter(|(j, _)| *j == job)
        .map(|(_, seq)| seq.parse().expect("seq"))
        .collect()
}

#[tokio::test]
async fn one_stream_carries_every_job_of_its_owner_and_only_theirs() {
    let app = TestApp::spawn().await;
    let first = start(&app, &app.client, 4).await;
    let second = start(&app, &app.client, 6).await;
    let stranger = reqwest::Client::builder().cookie_store(true).build().expect("client");
    let theirs = start(&app, &stranger, 4).await;

    let stream = open(&app.client, app.url("/api/events")).await;
    let (a, b) = (first.clone(), second.clone());
    let reader = tokio::spawn(async move {
        read_from(stream, |events| {
            ended(events, &a) && ended(events, &b) && events.iter().filter(|e| e.event == "end").count() >= 3
        })
        .await
    });
    // Started after the stream opened (as from another tab): it arrives from its first event.
    let later = start(&app, &app.client, 3).await;
    let events = reader.await.expect("reader");

    let jobs: Vec<String> = events.iter().map(job_of).collect();
    assert!(!jobs.contains(&theirs), "another owner's job never is on it");
    for job in [&first, &second, &later] {
        assert!(ended(&events, job), "job {job} is followed to its end");
        let seqs = seqs_of(&events, job);
        assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "job {job}: consecutive {seqs:?}");
    }
    assert_eq!(seqs_of(&events, &later)[0], 1, "a job started later arrives from its first event");
    let first_event = events.iter().find(|e| job_of(e) == first).expect("events");
    assert_eq!(first_event.event, "reset", "a job already running starts with its current state");
    let all_completed = events.iter().filter(|e| e.event == "end").all(|e| data(e)["status"] == "completed");
    assert!(all_completed, "each end says how its job ended");
}

#[tokio::test]
async fn resuming_with_after_is_exact_for_every_job() {
    let app = TestApp::spawn().await;
    let stream = open(&app.client, app.url("/api/events")).await;
    let reader = tokio::spawn(read_from(stream, |events| events.len() >= 5));
    let id = start(&app, &app.client, 8).await;
    let first = reader.await.expect("reader"); // then the connection is dropped
    assert_eq!(first[0].id, format!("{id}:1"));
    let seen = *seqs_of(&first, &id).last().expect("seqs");

    let job = id.clone();
    let rest =
        read_until(&app.client, app.url(&format!("/api/events?after={id}:{seen}")), move |events| ended(events, &job))
            .await;
    let mut seqs = seqs_of(&first, &id);
    seqs.extend(seqs_of(&rest, &id));
    let newest = *seqs.last().expect("seqs");
    assert_eq!(seqs, (1..=newest).collect::<Vec<_>>(), "no gap, no duplicate");

    let bad = app.client.get(app.url("/api/events?after=nope")).send().await.expect("get");
    assert_eq!(bad.status(), 400);
}

#[tokio::test]
async fn feeds_of_clients_that_never_start_a_job_leave_nothing_behind() {
    let app = TestApp::spawn().await;
    // Without a cookie every request is a new owner, as a loop of `curl /api/events` is.
    let client = reqwest::Client::builder().pool_max_idle_per_host(0).build().expect("a client");
    for _ in 0..40 {
        let opened = (0..50).map(|_| open(&client, app.url("/api/events")));
        drop(futures::future::join_all(opened).await);
    }
    // A feed that is open keeps its owner; once every client has gone, none is left.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let stats = app.engine.stats().await;
        if stats.owners == 0 && stats.subscriptions_open == 0 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "2,000 closed feeds left {} owners behind", stats.owners);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // An owner with a job keeps its entry while the job is kept; its feed comes and goes.
    let owner = reqwest::Client::builder().cookie_store(true).build().expect("a client");
    start(&app, &owner, 1).await;
    drop(open(&owner, app.url("/api/events")).await);
    assert_eq!(app.engine.stats().await.owners, 1);
}
