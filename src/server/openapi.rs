//! The OpenAPI 3.2 document of the API, generated from the handlers' and types' own
//! annotations so that it cannot drift from the code, and completed with what those cannot
//! say (see [`document`]). Served at `/api/openapi.json`.

use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};
use utoipa::OpenApi;

use super::{api, error, events, health, metrics, owner_events};
use crate::jobs::JobEngine;
use crate::model::{JobStatus, KindDescription, LogLevel, LogLine, Snapshot};

/// The API's description.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "sse-progress",
        description = "Start long-running jobs, follow their progress (poll with Retry-After, or \
                       stream Server-Sent Events), fetch their results, cancel them."
    ),
    paths(
        api::list_kinds,
        api::start_job,
        api::get_job,
        api::get_result,
        api::get_logs,
        api::cancel_job,
        events::job_events,
        owner_events::owner_events,
        health::healthz,
        health::readyz,
        metrics::metrics
    ),
    components(schemas(
        Snapshot,
        JobStatus,
        KindDescription,
        error::Problem,
        api::StartRequest,
        api::JobResource,
        api::Link,
        api::KindList,
        api::JobResult,
        api::CancelResponse,
        api::JobLogs,
        api::Accepted,
        LogLine,
        LogLevel
    )),
    tags((name = "jobs", description = "Jobs and their progress"))
)]
pub struct ApiDoc;

/// `GET /api/openapi.json`.
pub async fn openapi_json(State(engine): State<JobEngine>) -> Json<Value> {
    Json(document(&engine.kind_descriptions()))
}

/// The whole document for a server with these kinds: the annotations' document (OpenAPI 3.1,
/// as utoipa writes it) made 3.2 and completed with what annotations cannot say:
/// - each event stream's events (OpenAPI 3.2 `itemSchema`: an event's `event`, `id` and JSON
///   `data`, which until 3.2 could only be typed as one string);
/// - the start request's `kind` as one of the kinds this server has, each with its own params
///   schema (the kinds are registered at run time);
/// - links from a started job to its status, events, logs, result and cancellation, so that a
///   client (or a stateful tester) can follow them with the id it was given.
pub fn document(kinds: &[KindDescription]) -> Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_else(|_| json!({}));
    doc["openapi"] = json!("3.2.0");
    // An absent header is absent, not `null`: utoipa types an optional header `["string",
    // "null"]`, and a tester then sends the text `null`.
    if let Some(paths) = doc["paths"].as_object_mut() {
        let parameters = paths.values_mut().filter_map(Value::as_object_mut).flat_map(|ops| ops.values_mut());
        for parameter in parameters.filter_map(|op| op.get_mut("parameters")?.as_array_mut()).flatten() {
            if parameter["in"] == "header" && parameter["schema"]["type"].is_array() {
                parameter["schema"]["type"] = json!("string");
            }
        }
    }
    for (path, method) in [("/api/jobs/{id}/events", "get"), ("/api/jobs", "post")] {
        doc["paths"][path][method]["responses"]["200"]["content"]["text/event-stream"] = job_stream();
    }
    doc["paths"]["/api/events"]["get"]["responses"]["200"]["content"]["text/event-stream"] = owner_stream();
    doc["components"]["schemas"]["StartRequest"] = start_request(kinds);
    let id = json!({"id": "$response.body#/id"});
    let link = |operation: &str, description: &str| json!({"operationId": operation, "parameters": id, "description": description});
    doc["paths"]["/api/jobs"]["post"]["responses"]["202"]["links"] = json!({
        "status": link("get_job", "The job's state (also in `Location`)"),
        "events": link("job_events", "The job's events as they happen"),
        "logs": link("get_logs", "The job's log lines"),
        "result": link("get_result", "The job's result once it completed"),
        "cancel": link("cancel_job", "Asks the job to stop"),
    });
    doc
}

/// The `data:` of an event: JSON of `schema`.
fn json_data(schema: Value) -> Value {
    json!({"type": "string", "contentMediaType": "application/json", "contentSchema": schema})
}

/// One event of a stream: its name is one of `names`, its `id` fits `id`, its data `data`.
fn event(names: &[&str], id: &Value, data: Value) -> Value {
    json!({
        "type": "object",
        "required": ["event", "data"],
        "properties": {"event": {"enum": names}, "id": id, "data": json_data(data)},
    })
}

/// The names of the events that carry a job's state.
const STATE_EVENTS: [&str; 7] = ["pending", "progress", "completed", "failed", "cancelled", "interrupted", "reset"];

fn snapshot() -> Value {
    json!({"$ref": "#/components/schemas/Snapshot"})
}

fn log_line() -> Value {
    json!({"$ref": "#/components/schemas/LogLine"})
}

/// `GET /api/jobs/{id}/events` (and a synchronous start's stream): `id:` is the event's
/// sequence number; the stream ends with `end`, which carries no `id:` of its own.
fn job_stream() -> Value {
    let seq = json!({"type": "string", "pattern": "^[0-9]+$", "description": "The sequence number, for Last-Event-ID"});
    let end = json!({
        "type": "object",
        "required": ["status", "seq"],
        "properties": {"status": {"$ref": "#/components/schemas/JobStatus"}, "seq": {"type": "integer", "minimum": 0}},
    });
    json!({
        "itemSchema": {"oneOf": [event(&STATE_EVENTS, &seq, snapshot()), event(&["log"], &seq, log_line()), event(&["end"], &seq, end)]},
    })
}

/// `GET /api/events`: every event names its job, `id:` is `JOB:SEQ`.
fn owner_stream() -> Value {
    let cursor = json!({
        "type": "string",
        "pattern": "^[0-9a-f-]{36}:[0-9]+$",
        "description": "JOB:SEQ, for Last-Event-ID or `after`",
    });
    let job = json!({"type": "string", "format": "uuid"});
    let line = json!({"allOf": [log_line(), {"type": "object", "required": ["job"], "properties": {"job": job}}]});
    let end = json!({
        "type": "object",
        "required": ["job", "status", "seq"],
        "properties": {
            "job": job,
            "status": {"$ref": "#/components/schemas/JobStatus"},
            "seq": {"type": "integer", "minimum": 0},
        },
    });
    json!({
        "itemSchema": {"oneOf": [event(&STATE_EVENTS, &cursor, snapshot()), event(&["log"], &cursor, line), event(&["end"], &cursor, end)]},
    })
}

/// `POST /api/jobs`'s body: one of this server's kinds, with that kind's params.
fn start_request(kinds: &[KindDescription]) -> Value {
    let one_of = kinds
        .iter()
        .map(|kind| {
            json!({
                "type": "object",
                "title": kind.name,
                "description": kind.description,
                "required": ["kind"],
                "additionalProperties": false,
                "properties": {
                    "kind": {"const": kind.name},
                    // `null` is the same as leaving it out.
                    "params": {"oneOf": [kind.params_schema, {"type": "null"}]},
                },
            })
        })
        .collect::<Vec<_>>();
    json!({
        "description": "The kind of job to start (one of `GET /api/job-kinds`) and its params; fields left out of `params` take their defaults.",
        "oneOf": one_of,
    })
}
