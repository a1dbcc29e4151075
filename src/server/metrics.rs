//! `GET /metrics`: this instance's numbers in the Prometheus text format (version 0.0.4), for
//! an operator of one or several instances. Open to anyone like the health probes: it names no
//! job and no owner.
//!
//! - `sse_progress_jobs{status}`: jobs this instance has in memory, by status;
//! - `sse_progress_events_appended_total`, `sse_progress_events_delivered_total`: events this
//!   instance wrote to the store, and handed to its streams;
//! - `sse_progress_subscriptions_open`: streams (and feed entries) following a job now;
//! - `sse_progress_store_write_seconds`: how long each batch write to the store took;
//! - `sse_progress_queue_length`: jobs waiting (the shared queue with a shared store);
//! - `sse_progress_store_backlog_events`: events taken in and not yet in the store (while the
//!   store refuses writes; bounded by each running job's replay bound);
//! - `sse_progress_owners`: owners this instance keeps an entry for (jobs here, or a feed open);
//! - with a shared store: `sse_progress_store_jobs`, `sse_progress_store_running`,
//!   `sse_progress_jobs_held`, `sse_progress_lease_expiries_total`,
//!   `sse_progress_leases_lost_total`, `sse_progress_store_errors_total`, each labelled with
//!   the `instance`.

use std::fmt::Write;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::jobs::stats::EngineStats;
use crate::jobs::JobEngine;

/// This instance's metrics.
#[utoipa::path(get, path = "/metrics", tag = "health",
    responses((status = 200, description = "Prometheus text format 0.0.4", content_type = "text/plain", body = String)))]
pub async fn metrics(State(engine): State<JobEngine>) -> Response {
    let text = render(&engine.stats().await);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8"), (header::CACHE_CONTROL, "no-store")], text)
        .into_response()
}

/// One metric's HELP and TYPE lines.
fn head(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// The text of `stats` (writing to a `String` cannot fail).
pub fn render(stats: &EngineStats) -> String {
    let mut out = String::new();
    let labels = stats
        .shared
        .as_ref()
        .map(|s| format!("instance=\"{}\"", s.instance.replace(['"', '\\', '\n'], "_")))
        .unwrap_or_default();
    let with = |extra: &str| match (labels.is_empty(), extra.is_empty()) {
        (true, true) => String::new(),
        (true, false) => format!("{{{extra}}}"),
        (false, true) => format!("{{{labels}}}"),
        (false, false) => format!("{{{labels},{extra}}}"),
    };
    head(&mut out, "sse_progress_jobs", "gauge", "Jobs this instance has in memory, by status.");
    for (status, count) in &stats.jobs_by_status {
        let _ = writeln!(out, "sse_progress_jobs{} {count}", with(&format!("status=\"{}\"", status.as_str())));
    }
    let counters = [
        (
            "sse_progress_events_appended_total",
            "counter",
            "Events this instance wrote to the store.",
            stats.events_appended,
        ),
        (
            "sse_progress_events_delivered_total",
            "counter",
            "Events this instance handed to its streams.",
            stats.events_delivered,
        ),
        ("sse_progress_subscriptions_open", "gauge", "Streams following a job now.", stats.subscriptions_open),
        (
            "sse_progress_queue_length",
            "gauge",
            "Jobs waiting for a slot (all instances, with a shared store).",
            stats.shared.as_ref().map_or(stats.queued, |s| s.queued),
        ),
        (
            "sse_progress_store_backlog_events",
            "gauge",
            "Events taken in and not yet in the store (while it refuses writes).",
            stats.store_backlog,
        ),
        ("sse_progress_owners", "gauge", "Owners this instance keeps an entry for.", stats.owners),
    ];
    for (name, kind, help, value) in counters {
        head(&mut out, name, kind, help);
        let _ = writeln!(out, "{name}{} {value}", with(""));
    }
    let writes = &stats.store_writes;
    head(&mut out, "sse_progress_store_write_seconds", "histogram", "How long each batch write to the store took.");
    for (le, count) in &writes.buckets {
        let _ = writeln!(out, "sse_progress_store_write_seconds_bucket{} {count}", with(&format!("le=\"{le}\"")));
    }
    let _ = writeln!(out, "sse_progress_store_write_seconds_bucket{} {}", with("le=\"+Inf\""), writes.count);
    let _ = writeln!(out, "sse_progress_store_write_seconds_sum{} {}", with(""), writes.sum_seconds);
    let _ = writeln!(out, "sse_progress_store_write_seconds_count{} {}", with(""), writes.count);
    if let Some(shared) = &stats.shared {
        let shared_metrics = [
            ("sse_progress_store_jobs", "gauge", "Jobs kept in the shared store.", shared.jobs),
            ("sse_progress_store_running", "gauge", "Jobs running under a lease, all instances.", shared.running),
            ("sse_progress_jobs_held", "gauge", "Jobs this instance runs.", shared.held),
            (
                "sse_progress_lease_expiries_total",
                "counter",
                "Jobs this instance took over after their lease expired.",
                shared.lease_expiries,
            ),
            (
                "sse_progress_leases_lost_total",
                "counter",
                "Jobs another instance took over from this one.",
                shared.leases_lost,
            ),
            (
                "sse_progress_store_errors_total",
                "counter",
                "Store calls that failed and were retried.",
                shared.store_errors,
            ),
        ];
        for (name, kind, help, value) in shared_metrics {
            head(&mut out, name, kind, help);
            let _ = writeln!(out, "{name}{} {value}", with(""));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::stats::{Histogram, SharedStats};
    use crate::model::JobStatus;

    #[test]
    fn the_text_format_is_what_prometheus_reads() {
        let stats = EngineStats {
            jobs_by_status: vec![(JobStatus::Running, 2)],
            events_appended: 10,
            store_writes: Histogram { buckets: vec![(0.001, 3), (0.005, 4)], count: 4, sum_seconds: 0.006 },
            shared: Some(SharedStats { instance: "a-1".into(), queued: 5, ..SharedStats::default() }),
            ..EngineStats::default()
        };
        let text = render(&stats);
        assert!(
            text.contains("# TYPE sse_progress_jobs gauge\nsse_progress_jobs{instance=\"a-1\",status=\"running\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("sse_progress_events_appended_total{instance=\"a-1\"} 10\n"));
        assert!(text.contains("sse_progress_queue_length{instance=\"a-1\"} 5\n"), "the shared queue");
        assert!(text.contains("sse_progress_store_write_seconds_bucket{instance=\"a-1\",le=\"0.005\"} 4\n"));
        assert!(text.contains("sse_progress_store_write_seconds_bucket{instance=\"a-1\",le=\"+Inf\"} 4\n"));
        assert!(text.contains("sse_progress_lease_expiries_total{instance=\"a-1\"} 0\n"));
        let local = render(&EngineStats { events_delivered: 3, ..EngineStats::default() });
        assert!(local.contains("sse_progress_events_delivered_total 3\n"), "{local}");
        assert!(!local.contains("lease"), "no shared-store metrics without one");
    }
}
