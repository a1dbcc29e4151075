//! `GET /api/jobs/{id}/events` over a real socket: the wire format, exact resumption, ended
//! jobs, bad input, and graceful shutdown.

use crate::common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{data, ids, names, read_events, TestApp};
use serde_json::json;
use sse_progress::jobs::EngineConfig;

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_millis() as u64
}

#[tokio::test]
async fn the_stream_speaks_the_documented_wire_format() {
    let app = TestApp::spawn().await;
    let id = app.start("ticker", json!({"steps": 3, "interval_ms": 30})).await;
    let response = app.events(&id, None, "").await;

    assert_eq!(response.status(), 200);
    let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    assert_eq!(header("content-type").as_deref(), Some("text/event-stream"));
    assert_eq!(header("cache-control").as_deref(), Some("no-cache"));
    assert_eq!(header("x-accel-buffering").as_deref(), Some("no"));

    // The whole body, as it went over the wire: the stream closes by itself after `end`.
    let body = tokio::time::timeout(Duration::from_secs(20), response.text())
        .await
        .expect("the stream closes after the job ends")
        .expect("body");
    assert!(body.starts_with("retry: 2000\n"), "a retry hint first: {body:.80}");
    assert!(body.contains("\nevent: end\n"), "{body}");
    assert!(!body.contains("event: error"), "never an `error` event name");

    let mut stream = futures::stream::iter([Ok::<_, std::io::Error>(body.into_bytes())]);
    let events = {
        use eventsource_stream::Eventsource;
        use futures::StreamExt;
        let mut out = Vec::new();
        let mut parsed = (&mut stream).eventsource();
        while let Some(e) = parsed.next().await {
            let e = e.expect("valid SSE");
            if !e.data.is_empty() {
                out.push(e);
            }
        }
        out
    };
    let n = events.len();
    assert_eq!(names(&events)[0], "pending");
    assert!(names(&events)[1..n - 2].iter().all(|&name| name == "progress"), "{:?}", names(&events));
    assert_eq!(&names(&events)[n - 2..], ["completed", "end"]);
    assert_eq!(ids(&events), (1..=(n as u64 - 1)).collect::<Vec<_>>(), "ids are 1, 2, 3 ... with no gap");

    for event in &events[..n - 1] {
        let d = data(event);
        for field in ["status", "progress", "step", "message", "step_index", "step_count", "ts", "seq"] {
            assert!(d.get(field).is_some(), "`{field}` in {d}");
        }
        assert_eq!(d["seq"].to_string(), event.id, "data.seq matches the event id");
        assert_eq!(d["id"], id.as_str());
        let ts = d["ts"].as_u64().expect("ts is a number");
        assert!(now_ms() - ts < 60_000, "ts is ms since the epoch");
    }
    let running = data(&events[2]);
    assert_eq!(running["status"], "running");
    assert_eq!((running["step_index"].as_u64(), running["step_count"].as_u64()), (Some(1), Some(3)));
    assert_eq!(running["step"], "Tick 1");
    let completed = data(&events[n - 2]);
    assert_eq!(completed["status"], "completed");
    assert_eq!(completed["progress"], 100.0);
    assert_eq!(completed["data"], json!({"ticks": 3}));
    assert_eq!(data(&events[n - 1]), json!({"status": "completed", "seq": n - 1}));
}

#[tokio::test]
async fn last_event_id_resumes_with_no_gap_and_no_duplicate() {
    let app = TestApp::spawn().await;
    let id = app.start("ticker", json!({"steps": 8, "interval_ms": 40})).await;

    // Read the first four events, then drop the connection mid-job.
    let mut raw = app.events(&id, None, "").await;
    let opening = raw.chunk().await.expect("a body").expect("a first chunk");
    assert!(opening.starts_with(b"retry: 2000\n\n"), "the stream opens with its reconnection hint: {opening:?}");
    drop(raw);
    let (first, _) = read_events(app.events(&id, None, "").await, 4).await;
    assert_eq!(ids(&first), [1, 2, 3, 4]);

    // Reconnect the way a browser does, with the header.
    let (rest, _) = read_events(app.events(&id, Some("4"), "").await, usize::MAX).await;
    assert_eq!(rest.last().map(|e| e.event.as_str()), Some("end"));
    let mut all = ids(&first);
    all.extend(ids(&rest));
    let newest = *all.last().expect("events");
    assert_eq!(all, (1..=newest).collect::<Vec<_>>(), "every event exactly once");

    // A new EventSource cannot set headers: the query parameter does the same.
    let (by_query, _) = read_events(app.events(&id, None, "?last_event_id=6").await, usize::MAX).await;
    assert_eq!(ids(&by_query), (7..=newest).collect::<Vec<_>>());
    // When both are given, the header (the browser's own, newer resume point) wins.
    let (both, _) = read_events(app.events(&id, Some("9"), "?last_event_id=2").await, usize::MAX).await;
    assert_eq!(ids(&both), (10..=newest).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_job_that_already_ended_replays_and_ends_the_same_way() {
    let app = TestApp::spawn().await;
    let id = app.start("failing", json!({"steps": 3, "fail_at_step": 2, "step_ms": 50})).await;
    let (live, _) = read_events(app.events(&id, None, "").await, usize::MAX).await;
    let failed = &live[live.len() - 2];
    assert_eq!(failed.event, "failed");
    let failed_data = data(failed);
    assert_eq!(failed_data["status"], "failed");
    assert!(failed_data["error"].as_str().expect("error").starts_with("Parsing records failed at record"));

    // From the start: the same events again, then `end`.
    let (again, _) = read_events(app.events(&id, None, "").await, usize::MAX).await;
    assert_eq!(ids(&again), ids(&live));
    assert_eq!(names(&again), names(&live));
    // From the last event, or past it: 204 No Content, nothing to read, so that a browser's
    // EventSource (which reconnects after `end` by itself) stops instead of replaying forever.
    let last = failed.id.clone();
    for resume in [last.as_str(), "999"] {
        let response = app.events(&id, Some(resume), "").await;
        assert_eq!(response.status(), 204, "resuming after {resume}");
        assert_eq!(response.text().await.expect("body"), "");
    }
    let by_query = app.events(&id, None, &format!("?last_event_id={last}")).await;
    assert_eq!(by_query.status(), 204);
    // From the event before it: the terminal event, then `end`.
    let before: u64 = last.parse::<u64>().expect("a sequence number") - 1;
    let (rest, _) = read_events(app.events(&id, Some(&before.to_string()), "").await, usize::MAX).await;
    assert_eq!(names(&rest), ["failed", "end"]);
}

#[tokio::test]
async fn a_resume_point_older_than_the_replay_log_gets_a_reset_event() {
    let app = TestApp::spawn_with(EngineConfig { replay_capacity: 4, ..Default::default() }).await;
    let id = app.start("ticker", json!({"steps": 10, "interval_ms": 5})).await;
    // Wait for the end through a stream resumed near the newest events.
    let (_, _) = read_events(app.events(&id, None, "").await, usize::MAX).await;
    let (events, _) = read_events(app.events(&id, Some("2"), "").await, usize::MAX).await;
    assert_eq!(names(&events), ["reset", "end"]);
    let state = data(&events[0]);
    assert_eq!(state["status"], "completed");
    assert_eq!(state["seq"].to_string(), events[0].id);
}

#[tokio::test]
async fn unknown_jobs_and_bad_resume_points_get_clear_json_errors() {
    let app = TestApp::spawn().await;
    for id in ["00000000-0000-4000-8000-000000000000", "not-a-job-id"] {
        let response = app.events(id, None, "").await;
        assert_eq!(response.status(), 404, "{id}");
        assert_eq!(response.headers()["content-type"].to_str().expect("text"), "application/problem+json");
        let body: serde_json::Value = response.json().await.expect("JSON body");
        assert_eq!(body["status"], 404);
        assert!(body["detail"].as_str().expect("detail").contains("no job with id"), "{body}");
    }

    let id = app.start("ticker", json!({"steps": 2, "interval_ms": 10})).await;
    let response = app.events(&id, Some("abc"), "").await;
    assert_eq!(response.status(), 400);
    let body: serde_json::Value = response.json().await.expect("JSON body");
    assert_eq!(
        body["detail"],
        "the Last-Event-ID header must be the sequence number of the last event received \
         (a whole number, 0 or more), got \"abc\""
    );
    let response = app.events(&id, None, "?last_event_id=-3").await;
    assert_eq!(response.status(), 400);
    let body: serde_json::Value = response.json().await.expect("JSON body");
    assert!(body["detail"].as_str().expect("detail").starts_with("the last_event_id query parameter"));
}

#[tokio::test]
async fn shutdown_ends_open_streams_promptly_and_stops_running_jobs() {
    let mut app = TestApp::spawn().await;
    let id = app.start("ticker", json!({"steps": 1000, "interval_ms": 1000})).await;
    let response = app.events(&id, None, "").await;
    let reader = tokio::spawn(read_events(response, usize::MAX));
    app.wait_for_streams(1).await;

    let started = std::time::Instant::now();
    app.shut_down();
    let (events, _) = tokio::time::timeout(Duration::from_secs(5), reader)
        .await
        .expect("the open stream ended promptly")
        .expect("reader");
    assert!(!names(&events).contains(&"end"), "cut off, not ended: the client will reconnect");
    tokio::time::timeout(Duration::from_secs(5), &mut app.handle)
        .await
        .expect("the server stopped within seconds")
        .expect("server task")
        .expect("server ran cleanly");
    assert!(started.elapsed() < Duration::from_secs(5));
    let state = app.engine.snapshot(id.parse().expect("id")).await.expect("the store answers").expect("kept");
    assert_eq!(state.status.as_str(), "interrupted", "the running job was told to stop, and says why it ended");
}
