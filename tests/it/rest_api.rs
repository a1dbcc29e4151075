//! The REST API over a real socket: each endpoint, every error, a polling client that follows
//! 202/Location/Retry-After to the result, the synchronous stream (read by a real SSE parser,
//! dropped and re-attached with no gap), cancellation seen by the job's code, the queue and 429.

use crate::common;

use std::time::Duration;

use common::{data, ids, names, read_events, TestApp};
use reqwest::StatusCode;
use serde_json::{json, Value};
use sse_progress::jobs::EngineConfig;

async fn problem(response: reqwest::Response, status: StatusCode) -> Value {
    assert_eq!(response.status(), status);
    assert_eq!(
        response.headers()["content-type"].to_str().expect("text"),
        "application/problem+json",
        "every error is a problem document"
    );
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["status"], status.as_u16());
    assert_eq!(body["type"], "about:blank");
    body
}

async fn post_job(app: &TestApp, body: Value) -> reqwest::Response {
    app.client.post(app.url("/api/jobs")).json(&body).send().await.expect("post")
}

#[tokio::test]
async fn job_kinds_list_each_kind_with_its_params_schema_and_defaults() {
    let app = TestApp::spawn().await;
    let body: Value = app.client.get(app.url("/api/job-kinds")).send().await.expect("get").json().await.expect("json");
    let kinds = body["kinds"].as_array().expect("a list");
    let names: Vec<&str> = kinds.iter().map(|k| k["name"].as_str().expect("name")).collect();
    assert_eq!(names, ["checksum", "discover", "failing", "ticker"]);
    let ticker = &kinds[3];
    assert!(ticker["description"].as_str().expect("text").contains("steps"));
    assert_eq!(ticker["defaults"], json!({"steps": 10, "interval_ms": 500, "log": false}));
    let properties = &ticker["params_schema"]["properties"];
    assert_eq!(properties["steps"]["type"], "integer");
    assert!(properties["interval_ms"].is_object());
}

#[tokio::test]
async fn a_polling_client_follows_202_location_and_retry_after_to_the_result() {
    let app = TestApp::spawn().await;
    let response = post_job(&app, json!({"kind": "ticker", "params": {"steps": 4, "interval_ms": 150}})).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let location = response.headers()["location"].to_str().expect("text").to_string();
    let accepted: Value = response.json().await.expect("json");
    let id = accepted["id"].as_str().expect("id").to_string();
    assert_eq!(location, format!("/api/jobs/{id}"));
    assert!(matches!(accepted["status"].as_str(), Some("pending" | "running")));
    let links = accepted["links"].as_array().expect("links");
    let link = |rel: &str| links.iter().find(|l| l["rel"] == rel).cloned().unwrap_or_else(|| panic!("no {rel} link"));
    assert_eq!(link("self"), json!({"rel": "self", "href": location, "action": "GET"}));
    assert_eq!(link("events"), json!({"rel": "events", "href": format!("{location}/events"), "action": "EventSource"}));
    assert_eq!(link("result")["action"], "GET");
    assert_eq!(link("cancel"), json!({"rel": "cancel", "href": location, "action": "DELETE"}));

    // Poll the way a well-behaved client does: as often as Retry-After says, never faster.
    let mut polls = 0;
    let last = loop {
        polls += 1;
        assert!(polls < 20, "the job ended in time");
        let response = app.client.get(app.url(&location)).send().await.expect("poll");
        assert_eq!(response.status(), StatusCode::OK);
        let retry_after =
            response.headers().get("retry-after").map(|v| v.to_str().expect("text").parse::<u64>().expect("seconds"));
        let state: Value = response.json().await.expect("json");
        if state["status"] == "completed" {
            assert_eq!(retry_after, None, "no Retry-After once the job has ended");
            break state;
        }
        let wait = retry_after.expect("Retry-After while the job runs");
        assert!((1..=10).contains(&wait), "a sensible wait: {wait}");
        // Still running: the result says when to come back.
        let early = app.client.get(app.url(&format!("{location}/result"))).send().await.expect("result");
        assert!(early.headers().contains_key("retry-after"));
        let early = problem(early, StatusCode::CONFLICT).await;
        assert_eq!(early["code"], "result_not_ready");
        tokio::time::sleep(Duration::from_secs(wait)).await;
    };
    assert!(polls >= 2, "the job was seen running, and its Retry-After followed, before it ended");
    assert_eq!(last["progress"], 100.0);
    assert_eq!(last["links"][2]["href"], format!("{location}/result"));
    let result: Value = app
        .client
        .get(app.url(&format!("{location}/result")))
        .send()
        .await
        .expect("result")
        .json()
        .await
        .expect("json");
    assert_eq!(result, json!({"id": id, "kind": "ticker", "result": {"ticks": 4}}));
}

#[tokio::test]
async fn the_status_resource_is_the_same_schema_as_the_stream() {
    let app = TestApp::spawn().await;
    let id = app.start("ticker", json!({"steps": 2, "interval_ms": 10})).await;
    let (events, _) = read_events(app.events(&id, None, "").await, usize::MAX).await;
    let streamed = data(&events[events.len() - 2]);
    let mut polled: Value =
        app.client.get(app.url(&format!("/api/jobs/{id}"))).send().await.expect("get").json().await.expect("json");
    polled.as_object_mut().expect("object").remove("links");
    assert_eq!(polled, streamed);
}

#[tokio::test]
async fn the_synchronous_stream_starts_the_job_and_streams_it_to_the_end() {
    let app = TestApp::spawn().await;
    let response = app
        .client
        .post(app.url("/api/jobs?stream=true"))
        .json(&json!({"kind": "ticker", "params": {"steps": 3, "interval_ms": 20}}))
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let location = response.headers()["location"].to_str().expect("text").to_string();
    let (events, _) = read_events(response, usize::MAX).await;
    let first = data(&events[0]);
    assert_eq!(events[0].event, "pending");
    assert_eq!(format!("/api/jobs/{}", first["id"].as_str().expect("id")), location, "the first event names the job");
    assert_eq!(names(&events).last(), Some(&"end"));
    assert_eq!(data(&events[events.len() - 2])["data"], json!({"ticks": 3}));
    let newest = ids(&events).len() as u64;
    assert_eq!(ids(&events), (1..=newest).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_dropped_synchronous_stream_reattaches_with_no_gap_and_the_job_goes_on() {
    let app = TestApp::spawn().await;
    let response = app
        .client
        .post(app.url("/api/jobs?stream=true"))
        .json(&json!({"kind": "ticker", "params": {"steps": 6, "interval_ms": 60}}))
        .send()
        .await
        .expect("post");
    let (first, _) = read_events(response, 3).await; // then the connection is dropped
    let id = data(&first[0])["id"].as_str().expect("id").to_string();
    let seen = first.last().expect("events").id.clone();
    // Once the server has noticed the client left:
    app.wait_for_streams(0).await;
    let job = app.engine.snapshot(id.parse().expect("id")).await.expect("the store answers").expect("kept");
    assert_eq!(job.status.as_str(), "running", "disconnecting did not cancel the job");

    let (rest, _) = read_events(app.events(&id, Some(&seen), "").await, usize::MAX).await;
    let mut all = ids(&first);
    all.extend(ids(&rest));
    let newest = *all.last().expect("events");
    assert_eq!(all, (1..=newest).collect::<Vec<_>>(), "no gap, no duplicate");
    assert_eq!(data(&rest[rest.len() - 2])["status"], "completed");
}

#[tokio::test]
async fn cancelling_is_seen_by_the_job_code_and_every_view_shows_cancelled() {
    let app = TestApp::spawn().await;
    let id = app.start("checksum", json!({"size_mib": 512, "chunk_kib": 1024, "chunk_delay_ms": 50})).await;
    let stream = tokio::spawn(read_events(app.events(&id, None, "").await, usize::MAX));
    // Cancel once the job's code is at work.
    let job_id = id.parse().expect("id");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while app.engine.snapshot(job_id).await.expect("the store answers").expect("kept").progress <= 0.0 {
        assert!(tokio::time::Instant::now() < deadline, "the job made no progress in 20 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let response = app.client.delete(app.url(&format!("/api/jobs/{id}"))).send().await.expect("delete");
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["message"], "the job was told to stop");

    let (events, _) =
        tokio::time::timeout(Duration::from_secs(10), stream).await.expect("the job stopped").expect("reader");
    let last = data(&events[events.len() - 2]);
    assert_eq!(events[events.len() - 2].event, "cancelled");
    assert_eq!(last["status"], "cancelled");
    assert!(last["progress"].as_f64().expect("number") < 50.0, "it stopped part-way: {last}");
    let status: Value =
        app.client.get(app.url(&format!("/api/jobs/{id}"))).send().await.expect("get").json().await.expect("json");
    assert_eq!(status["status"], "cancelled");
    let result = app.client.get(app.url(&format!("/api/jobs/{id}/result"))).send().await.expect("result");
    let result = problem(result, StatusCode::CONFLICT).await;
    assert_eq!((result["code"].as_str(), result["job_status"].as_str()), (Some("no_result"), Some("cancelled")));

    // Cancelling again is a clear no-op.
    let again = app.client.delete(app.url(&format!("/api/jobs/{id}"))).send().await.expect("delete");
    assert_eq!(again.status(), StatusCode::OK);
    let again: Value = again.json().await.expect("json");
    assert_eq!(again["message"], "the job had already ended (cancelled); nothing changed");
}

#[tokio::test]
async fn a_failed_job_has_no_result_and_says_why() {
    let app = TestApp::spawn().await;
    let id = app.start("failing", json!({"steps": 2, "fail_at_step": 1, "step_ms": 20})).await;
    read_events(app.events(&id, None, "").await, usize::MAX).await;
    let response = app.client.get(app.url(&format!("/api/jobs/{id}/result"))).send().await.expect("result");
    let body = problem(response, StatusCode::CONFLICT).await;
    assert_eq!(body["job_status"], "failed");
    assert!(body["detail"]
        .as_str()
        .expect("text")
        .starts_with("the job failed and has no result: Loading input failed"));
}

#[tokio::test]
async fn past_the_running_bound_jobs_queue_with_their_position_and_past_the_queue_429() {
    let app = TestApp::spawn_with(EngineConfig { max_running: 1, max_queued: 2, ..Default::default() }).await;
    let slow = json!({"kind": "ticker", "params": {"steps": 3, "interval_ms": 200}});
    let mut ids = Vec::new();
    for _ in 0..3 {
        let response = post_job(&app, slow.clone()).await;
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        let body: Value = response.json().await.expect("json");
        ids.push(body["id"].as_str().expect("id").to_string());
    }
    let state = |id: &str| {
        let url = app.url(&format!("/api/jobs/{id}"));
        let client = app.client.clone();
        async move {
            let response = client.get(url).send().await.expect("get");
            assert_eq!(response.status(), StatusCode::OK, "the job is there");
            response.json::<Value>().await.expect("json")
        }
    };
    let second = state(&ids[1]).await;
    assert_eq!((second["status"].as_str(), second["queue_position"].as_u64()), (Some("pending"), Some(1)));
    assert_eq!(state(&ids[2]).await["queue_position"], 2);

    let refused = post_job(&app, slow.clone()).await;
    assert_eq!(refused.headers()["retry-after"], "5");
    let refused = problem(refused, StatusCode::TOO_MANY_REQUESTS).await;
    assert_eq!(refused["code"], "queue_full");
    assert!(refused["detail"]
        .as_str()
        .expect("text")
        .contains("1 are running and the queue of 2 waiting jobs is full"));

    // Cancelling a waiting job moves the one behind it up; then all run in turn.
    // It never ran: the answer says it has ended, cancelled, and so does every read after it.
    let cancelled = app.client.delete(app.url(&format!("/api/jobs/{}", ids[1]))).send().await.expect("delete");
    assert_eq!(cancelled.status(), StatusCode::OK);
    let cancelled: Value = cancelled.json().await.expect("json");
    assert_eq!(cancelled["message"], "the job had not started; it is cancelled and will not run");
    assert_eq!(cancelled["job"]["status"], "cancelled", "{cancelled}");
    assert_eq!(state(&ids[1]).await["status"], "cancelled");
    assert_eq!(state(&ids[2]).await["queue_position"], 1);
    let (events, _) = read_events(app.events(&ids[2], None, "").await, usize::MAX).await;
    assert_eq!(data(&events[events.len() - 2])["status"], "completed");
    let done = state(&ids[2]).await;
    assert_eq!(done["status"], "completed");
    assert!(done.get("queue_position").is_none(), "{done}");
}

#[tokio::test]
async fn bad_requests_get_problem_documents_that_say_what_is_allowed() {
    let app = TestApp::spawn().await;

    let body = problem(post_job(&app, json!({"kind": "nope"})).await, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(body["code"], "unknown_kind");
    assert_eq!(body["known_kinds"], json!(["checksum", "discover", "failing", "ticker"]));
    assert!(body["detail"]
        .as_str()
        .expect("text")
        .contains("the known kinds are: checksum, discover, failing, ticker"));

    let body = problem(
        post_job(&app, json!({"kind": "ticker", "params": {"steps": "ten"}})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(body["code"], "invalid_params");
    assert!(body["detail"].as_str().expect("text").contains("field `steps`: invalid type: string \"ten\""), "{body}");
    let body = problem(
        post_job(&app, json!({"kind": "ticker", "params": {"steps": 0}})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert!(body["detail"].as_str().expect("text").ends_with("steps must be between 1 and 100000, got 0"));
    let body = problem(
        post_job(&app, json!({"kind": "ticker", "params": {"speed": 3}})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert!(
        body["detail"]
            .as_str()
            .expect("text")
            .contains("unknown field `speed`, expected one of `steps`, `interval_ms`, `log`"),
        "{body}"
    );
    let body = problem(post_job(&app, json!({"params": {}})).await, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert!(body["detail"].as_str().expect("text").contains("missing field `kind`"), "{body}");

    let malformed = app
        .client
        .post(app.url("/api/jobs"))
        .header("content-type", "application/json")
        .body("{\"kind\": ")
        .send()
        .await
        .expect("post");
    assert_eq!(problem(malformed, StatusCode::BAD_REQUEST).await["code"], "malformed_json");
    let not_json = app.client.post(app.url("/api/jobs")).body("kind=ticker").send().await.expect("post");
    assert_eq!(problem(not_json, StatusCode::UNSUPPORTED_MEDIA_TYPE).await["code"], "unsupported_media_type");
    let huge = json!({"kind": "ticker", "params": {"pad": "x".repeat(100_000)}});
    let body = problem(post_job(&app, huge).await, StatusCode::PAYLOAD_TOO_LARGE).await;
    assert_eq!(body["detail"], "the request body is larger than the 65536 bytes allowed");
    let bad_query =
        app.client.post(app.url("/api/jobs?stream=maybe")).json(&json!({"kind": "ticker"})).send().await.expect("post");
    assert_eq!(problem(bad_query, StatusCode::BAD_REQUEST).await["code"], "invalid_query");

    let wrong_method = app.client.put(app.url("/api/jobs")).send().await.expect("put");
    assert_eq!(wrong_method.headers()["allow"], "POST");
    let body = problem(wrong_method, StatusCode::METHOD_NOT_ALLOWED).await;
    assert_eq!(body["detail"], "method PUT is not allowed here; allowed: POST");
    let wrong_method =
        app.client.post(app.url("/api/jobs/00000000-0000-4000-8000-000000000000")).send().await.expect("post");
    assert_eq!(wrong_method.headers()["allow"], "GET, HEAD, DELETE");
    problem(wrong_method, StatusCode::METHOD_NOT_ALLOWED).await;

    for path in ["/api/jobs/00000000-0000-4000-8000-000000000000", "/api/jobs/nope/result"] {
        let body = problem(app.client.get(app.url(path)).send().await.expect("get"), StatusCode::NOT_FOUND).await;
        assert_eq!(body["code"], "job_not_found");
    }
    let gone =
        app.client.delete(app.url("/api/jobs/00000000-0000-4000-8000-000000000000")).send().await.expect("delete");
    problem(gone, StatusCode::NOT_FOUND).await;
    let body =
        problem(app.client.get(app.url("/api/nothing/here")).send().await.expect("get"), StatusCode::NOT_FOUND).await;
    assert_eq!(body["code"], "route_not_found");
    assert_eq!(app.engine.job_count(), 0, "nothing bad was started");
}

#[tokio::test]
async fn the_openapi_document_describes_every_route_and_validates() {
    let app = TestApp::spawn().await;
    let doc: Value =
        app.client.get(app.url("/api/openapi.json")).send().await.expect("get").json().await.expect("json");
    assert_eq!(doc["openapi"], "3.2.0");
    for (path, method) in [
        ("/api/job-kinds", "get"),
        ("/api/jobs", "post"),
        ("/api/jobs/{id}", "get"),
        ("/api/jobs/{id}", "delete"),
        ("/api/jobs/{id}/result", "get"),
        ("/api/jobs/{id}/events", "get"),
    ] {
        assert!(doc["paths"][path][method].is_object(), "{method} {path} is described");
    }
    assert!(doc["components"]["schemas"]["Snapshot"]["properties"]["progress"].is_object());
    // The start request names the kinds this server has, each with its params' schema.
    let kinds = doc["components"]["schemas"]["StartRequest"]["oneOf"].as_array().expect("one per kind");
    let names: Vec<&str> = kinds.iter().filter_map(|k| k["properties"]["kind"]["const"].as_str()).collect();
    assert_eq!(names, ["checksum", "discover", "failing", "ticker"]);
    assert_eq!(kinds[3]["properties"]["params"]["oneOf"][0]["properties"]["steps"]["maximum"], 100_000);
    // Each event of a stream is described, its data as JSON of its schema.
    let events = &doc["paths"]["/api/jobs/{id}/events"]["get"]["responses"]["200"]["content"]["text/event-stream"];
    let first = &events["itemSchema"]["oneOf"][0];
    assert_eq!(first["properties"]["event"]["enum"][1], "progress");
    assert_eq!(first["properties"]["data"]["contentSchema"]["$ref"], "#/components/schemas/Snapshot");
    let owner = &doc["paths"]["/api/events"]["get"]["responses"]["200"]["content"]["text/event-stream"];
    assert!(owner["itemSchema"]["oneOf"][1]["properties"]["data"]["contentSchema"]["allOf"].is_array());
    // A started job links to what can be done with it.
    let links = &doc["paths"]["/api/jobs"]["post"]["responses"]["202"]["links"];
    for (name, operation) in [
        ("status", "get_job"),
        ("events", "job_events"),
        ("logs", "get_logs"),
        ("result", "get_result"),
        ("cancel", "cancel_job"),
    ] {
        assert_eq!(links[name]["operationId"], operation);
        assert_eq!(links[name]["parameters"]["id"], "$response.body#/id");
        let (path, method) = doc["paths"]
            .as_object()
            .expect("paths")
            .iter()
            .flat_map(|(p, ops)| ops.as_object().into_iter().flatten().map(move |(m, op)| (p, m, op)))
            .find(|(_, _, op)| op["operationId"] == operation)
            .map(|(p, m, _)| (p.clone(), m.clone()))
            .expect("the linked operation exists");
        assert!(path.contains("{id}"), "{method} {path}");
    }

    // Validate against the OpenAPI 3.2 specification with an independent validator.
    let file = std::env::temp_dir().join(format!("sse-progress-openapi-{}.json", std::process::id()));
    std::fs::write(&file, doc.to_string()).expect("write");
    let output = std::process::Command::new("python3")
        .args(["-m", "openapi_spec_validator"])
        .arg(&file)
        .output()
        .expect("python3 runs (scripts/setup installs openapi-spec-validator)");
    let _ = std::fs::remove_file(&file);
    assert!(
        output.status.success(),
        "the document is valid OpenAPI 3.2:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
