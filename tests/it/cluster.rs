//! Several instances of the real binary on one real `redis-server`: any instance serves any
//! job, a job started on one is followed live from the others, cancel reaches a job wherever
//! it runs, and killing or stalling instances loses nothing anyone was shown.

use crate::common;

use std::time::{Duration, Instant};

use common::client::{assert_contiguous, drain, seq_of, Client};
use common::process::{RedisProcess, ServerProcess};
use eventsource_stream::{Event, Eventsource};
use futures::StreamExt;
use serde_json::{json, Value};

/// Redis and `n` instances on it, with `env` for each.
async fn cluster(n: usize, env: &[(&str, &str)]) -> (RedisProcess, Vec<ServerProcess>) {
    let redis = RedisProcess::start();
    let mut instances = Vec::new();
    for _ in 0..n {
        instances.push(ServerProcess::start_with(&redis.url, 0, env).await);
    }
    (redis, instances)
}

/// What a viewer compares: each event's id and data.
fn trail(events: &[Event]) -> Vec<(String, String)> {
    events.iter().map(|e| (e.id.clone(), e.data.clone())).collect()
}

fn state(event: &Event) -> Value {
    serde_json::from_str(&event.data).expect("json data")
}

/// The last state event of a stream.
fn last_state(events: &[Event]) -> Value {
    events.iter().rev().find(|e| e.event != "log" && e.event != "end").map(state).expect("a state event")
}

#[tokio::test]
async fn three_instances_serve_any_job_as_one() {
    let (_redis, servers) = cluster(3, &[]).await;
    let (a, b, c) = (&servers[0], &servers[1], &servers[2]);
    let mut client = Client::new();
    client.start(a, "ticker", json!({"steps": 1, "interval_ms": 0})).await; // the owner's token

    // The owner's feed on B, open before the job is started on A.
    let feed = client.auth(client.http.get(b.url("/api/events"))).send().await.expect("feed");
    assert_eq!(feed.status(), 200);
    let mut feed = feed.bytes_stream().eventsource();

    let id = client.start(a, "ticker", json!({"steps": 20, "interval_ms": 50})).await;
    let (on_b, on_c) = tokio::join!(drain(client.events(b, &id, None).await), drain(client.events(c, &id, None).await));
    assert_contiguous(&on_b, 1);
    assert_eq!(trail(&on_b), trail(&on_c), "B and C saw the same events");
    assert_eq!(last_state(&on_b)["status"], "completed");
    assert_eq!(last_state(&on_b)["data"], json!({"ticks": 20}));

    let late = drain(client.events(c, &id, None).await).await;
    assert_eq!(trail(&late), trail(&on_b), "a late subscriber on C misses nothing");
    let resumed = drain(client.events(b, &id, Some(7)).await).await;
    assert_eq!(trail(&resumed), trail(&on_b)[7..].to_vec(), "Last-Event-ID works on any instance");
    for server in [a, b, c] {
        let (code, job) = client.job(server, &id).await;
        assert_eq!((code, job["status"].as_str()), (200, Some("completed")), "every instance serves the job");
    }

    // B's feed showed the job A ran, to its end.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let event = tokio::time::timeout_at(deadline, feed.next())
            .await
            .expect("the feed tells of A's job")
            .expect("open")
            .expect("event");
        if event.event == "end" && state(&event)["job"] == id.as_str() {
            assert_eq!(state(&event)["status"], "completed");
            break;
        }
    }
}

#[tokio::test]
async fn cancel_through_any_instance_stops_the_job_where_it_runs() {
    // One job runs at a time across the three: the queue is global.
    let (_redis, servers) = cluster(3, &[("SSE_PROGRESS_MAX_RUNNING", "1")]).await;
    let (a, b, c) = (&servers[0], &servers[1], &servers[2]);
    let mut client = Client::new();
    for runs_on in [a, b] {
        let id = client.start(runs_on, "ticker", json!({"steps": 1000, "interval_ms": 100})).await;
        client.wait_for(c, &id, "running").await;
        let asked = Instant::now();
        let response = client.auth(client.http.delete(c.url(&format!("/api/jobs/{id}")))).send().await.expect("cancel");
        assert_eq!(response.status(), 202, "{}", response.text().await.unwrap_or_default());
        let ended = client.wait_for(runs_on, &id, "cancelled").await;
        eprintln!("cancel through C reached the job on {}: {:?}", runs_on.port, asked.elapsed());
        assert!(ended["step_index"].as_u64().unwrap_or(1000) < 1000, "it stopped where it was: {ended}");
    }
    // A waiting job is cancelled through any instance too, and never runs.
    let running = client.start(a, "ticker", json!({"steps": 1000, "interval_ms": 100})).await;
    client.wait_for(c, &running, "running").await;
    let waiting = client.start(b, "ticker", json!({"steps": 2, "interval_ms": 10})).await;
    let (_, queued) = client.job(c, &waiting).await;
    assert_eq!((queued["status"].as_str(), queued["queue_position"].as_u64()), (Some("pending"), Some(1)), "{queued}");
    let response =
        client.auth(client.http.delete(c.url(&format!("/api/jobs/{waiting}")))).send().await.expect("cancel");
    assert_eq!(response.status(), 200, "it never ran, so it has ended");
    let answer: Value = response.json().await.expect("json");
    assert_eq!(answer["job"]["status"], "cancelled", "{answer}");
    let events = drain(client.events(a, &waiting, None).await).await;
    assert_eq!(last_state(&events)["status"], "cancelled");
    assert!(events.iter().all(|e| !e.data.contains("\"status\":\"running\"")), "it never ran");
    let (_, still) = client.job(b, &running).await;
    assert_eq!(still["status"], "running", "the running job was not touched");
}

#[tokio::test]
async fn killed_instances_lose_nothing_and_their_jobs_end_or_go_on_elsewhere() {
    let (_redis, mut servers) = cluster(3, &[("SSE_PROGRESS_LEASE_MS", "3000")]).await;
    let survivor = servers.pop().expect("C");
    let mut client = Client::new();
    let mut jobs = Vec::new();
    for server in &servers {
        jobs.push((client.start(server, "ticker", json!({"steps": 40, "interval_ms": 100})).await, "completed"));
        jobs.push((
            client.start(server, "failing", json!({"steps": 4, "fail_at_step": 4, "step_ms": 60000})).await,
            "interrupted",
        ));
    }
    for (id, _) in &jobs {
        client.wait_for(&survivor, id, "running").await;
    }
    // A viewer of A's first job, connected to A itself.
    let on_a = client.events(&servers[0], &jobs[0].0, None).await;
    let mut on_a = on_a.bytes_stream().eventsource();
    let mut seen = Vec::new();
    while seen.len() < 5 {
        let event = on_a.next().await.expect("open").expect("event");
        if !event.event.is_empty() {
            seen.push(event);
        }
    }
    let mut followers = Vec::new();
    for (id, _) in &jobs {
        followers.push(client.events(&survivor, id, None).await);
    }
    let killed = Instant::now();
    for server in servers.drain(..) {
        server.kill().await;
    }
    drop(on_a);
    let followed = futures::future::join_all(followers.into_iter().map(drain)).await;
    eprintln!("every job ended or went on within {:?} of the kills", killed.elapsed());
    for ((id, ending), events) in jobs.iter().zip(&followed) {
        assert_contiguous(events, 1);
        let last = last_state(events);
        assert_eq!(last["status"], *ending, "job {id}: {last}");
    }
    // The viewer of A reconnects (through the balancer) to C and resumes where it was.
    let last_seen = seq_of(seen.last().expect("events"));
    let rest = drain(client.events(&survivor, &jobs[0].0, Some(last_seen)).await).await;
    assert_contiguous(&rest, last_seen + 1);
    let mut whole = seen.clone();
    whole.extend(rest);
    assert_eq!(trail(&whole), trail(&followed[0]), "what A showed is what the store kept");
}

#[tokio::test]
async fn a_stalled_instance_never_writes_into_a_job_taken_over() {
    let (_redis, servers) = cluster(2, &[("SSE_PROGRESS_LEASE_MS", "2000")]).await;
    let (a, b) = (&servers[0], &servers[1]);
    let mut client = Client::new();
    let id = client.start(a, "ticker", json!({"steps": 60, "interval_ms": 100})).await;
    client.wait_for(b, &id, "running").await;
    let following = client.events(b, &id, None).await;
    a.signal("STOP");
    let (_, at_stop) = client.job(b, &id).await;
    let stalled_at = at_stop["seq"].as_u64().expect("a seq");
    // B takes the job over once A's lease expires (A writes nothing while stopped); then A
    // wakes up, still thinking it runs the job.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (_, job) = client.job(b, &id).await;
        if job["seq"].as_u64().is_some_and(|seq| seq > stalled_at + 3) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "B never took the job over: {job}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    a.signal("CONT");
    let events = drain(following).await;
    assert_contiguous(&events, 1);
    let last = last_state(&events);
    assert_eq!((last["status"].as_str(), last["data"].clone()), (Some("completed"), json!({"ticks": 60})));
    let states: Vec<Value> = events.iter().filter(|e| e.event != "log" && e.event != "end").map(state).collect();
    let step = |s: &Value| s["step_index"].as_u64().expect("a step");
    let mut ticks: Vec<u64> =
        states.iter().filter(|s| s["message"].as_str().is_some_and(|m| m.starts_with("Tick "))).map(step).collect();
    assert!(ticks.windows(2).all(|w| w[0] < w[1]), "every tick once, in order: {ticks:?}");
    // B says it took the job over; the tick A was in the middle of (if A had begun one) may be
    // told by that instead.
    let resumed = states
        .iter()
        .find(|s| s["message"] == "Resumed after a server restart")
        .expect("B says it goes on from the last checkpoint");
    ticks.extend(Some(step(resumed)).filter(|&tick| tick > 0));
    ticks.sort_unstable();
    ticks.dedup();
    assert_eq!(ticks, (1..=60).collect::<Vec<u64>>(), "every tick, none skipped");
    // A still serves the job, as the store has it (once it has read what it missed), and says
    // it lost it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (code, on_a) = client.job(a, &id).await;
        assert_eq!(code, 200);
        if on_a["seq"] == last["seq"] {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "A never caught up: {on_a}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let metrics = client.http.get(a.url("/metrics")).send().await.expect("metrics").text().await.expect("text");
    let lost = metrics.lines().find(|l| l.starts_with("sse_progress_leases_lost_total")).expect("the metric");
    assert!(lost.ends_with(" 1"), "A noticed it lost the job: {lost}");
}

#[tokio::test]
async fn a_redis_restart_under_load_loses_nothing_and_everything_recovers_by_itself() {
    let dir = tempfile::tempdir().expect("a folder");
    let redis = RedisProcess::start_durable(dir.path(), 0);
    let (url, port) = (redis.url.clone(), redis.port());
    let a = ServerProcess::start(&url, 0).await;
    let b = ServerProcess::start(&url, 0).await;
    let mut client = Client::new();
    let mut jobs = Vec::new();
    for server in [&a, &b, &a] {
        jobs.push(client.start(server, "ticker", json!({"steps": 40, "interval_ms": 100})).await);
    }
    let mut followers = Vec::new();
    for id in &jobs {
        client.wait_for(&b, id, "running").await;
        followers.push(client.events(&b, id, None).await);
    }
    drop(redis); // killed mid-load
    for server in [&a, &b] {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            let response = client.http.get(server.url("/readyz")).send().await.expect("the instance stays up");
            if response.status() == 503 {
                let body: Value = response.json().await.expect("json");
                assert!(body["reason"].as_str().is_some_and(|r| !r.is_empty()), "{body}");
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "/readyz never said not ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let _redis = RedisProcess::start_durable(dir.path(), port);
    for server in [&a, &b] {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while client.http.get(server.url("/readyz")).send().await.expect("up").status() != 200 {
            assert!(tokio::time::Instant::now() < deadline, "/readyz never recovered");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let followed = futures::future::join_all(followers.into_iter().map(drain)).await;
    for (id, events) in jobs.iter().zip(&followed) {
        assert_contiguous(events, 1);
        let last = last_state(events);
        assert_eq!(
            (last["status"].as_str(), last["data"].clone()),
            (Some("completed"), json!({"ticks": 40})),
            "job {id}"
        );
    }
}

#[tokio::test]
async fn metrics_tell_an_operator_what_each_instance_does() {
    let (_redis, servers) = cluster(2, &[]).await;
    let mut client = Client::new();
    let id = client.start(&servers[0], "ticker", json!({"steps": 3, "interval_ms": 10})).await;
    drain(client.events(&servers[1], &id, None).await).await;
    let text = client.http.get(servers[0].url("/metrics")).send().await.expect("metrics");
    assert_eq!(text.status(), 200);
    assert!(text.headers()["content-type"].to_str().unwrap_or_default().starts_with("text/plain; version=0.0.4"));
    let text = text.text().await.expect("text");
    let value = |name: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(name) && !l.starts_with('#'))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} in {text}"))
    };
    assert!(value("sse_progress_events_appended_total") >= 5.0, "{text}");
    assert!(value("sse_progress_store_write_seconds_count") >= 1.0);
    assert_eq!(value("sse_progress_queue_length"), 0.0);
    assert!(text.contains("sse_progress_lease_expiries_total{instance="));
    let on_b = client.http.get(servers[1].url("/metrics")).send().await.expect("metrics").text().await.expect("text");
    let delivered = on_b.lines().find(|l| l.starts_with("sse_progress_events_delivered_total")).expect("delivered");
    assert!(!delivered.ends_with(" 0"), "B delivered A's events: {delivered}");
}

/// Every view of a job, as `(what, status code, Retry-After)`, asked of `server` at once.
async fn every_view(client: &Client, server: &ServerProcess, id: &str) -> Vec<(String, u16, Option<String>)> {
    let views = [
        ("GET", format!("/api/jobs/{id}")),
        ("GET", format!("/api/jobs/{id}/events")),
        ("GET", format!("/api/jobs/{id}/result")),
        ("GET", format!("/api/jobs/{id}/logs")),
        ("GET", format!("/jobs/{id}")),
        ("DELETE", format!("/api/jobs/{id}")),
    ];
    let asked = views.iter().map(|(method, path)| async move {
        let request = match *method {
            "GET" => client.http.get(server.url(path)),
            _ => client.http.delete(server.url(path)),
        };
        let response = client.auth(request).send().await.expect("an answer");
        let retry = response.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_string);
        let code = response.status().as_u16();
        let body = response.text().await.unwrap_or_default();
        (format!("{method} {path}: {body}"), code, retry)
    });
    futures::future::join_all(asked).await
}

#[tokio::test]
async fn a_store_that_does_not_answer_makes_every_view_say_so_not_that_the_job_is_gone() {
    let (redis, servers) = cluster(2, &[]).await;
    let (a, b) = (&servers[0], &servers[1]);
    let mut client = Client::new();
    let id = client.start(a, "ticker", json!({"steps": 1, "interval_ms": 0})).await;
    client.wait_for(a, &id, "completed").await;

    // Redis hangs without closing a connection. B has never looked the job up, so it must ask.
    redis.signal("STOP");
    for (what, code, retry) in every_view(&client, b, &id).await {
        let short: String = what.chars().take(300).collect();
        assert_eq!(code, 503, "{short}");
        if what.contains(" /api/") {
            assert!(what.contains("store_unavailable"), "{short}");
            assert_eq!(retry.as_deref(), Some("2"), "{short}");
        } else {
            assert!(what.contains("job store is not answering"), "the page says why: {short}");
        }
    }

    redis.signal("CONT");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let answers = every_view(&client, b, &id).await;
        if answers.iter().all(|(_, code, _)| *code == 200) {
            break;
        }
        assert!(Instant::now() < deadline, "the views did not come back after SIGCONT: {answers:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
