//! A job's own log lines: what its code logs with `tracing` (in functions it calls too, across
//! `.await`, and in blocking work started through its reporter) becomes `log` events on that
//! job's stream, and nowhere else.
//!
//! The engine runs every job inside a span named [`JOB_SPAN`] carrying its id. The layer
//! looks the job up when that span opens and keeps its record in the span; an event inside
//! the span (or any span below it) is then added to that record, within the job's log bounds.

use std::sync::{Arc, Weak};

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::{filter_fn, Filtered};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

use super::record::JobRecord;
use super::table::JobTable;
use crate::model::{now_ms, JobId, LogLevel, LogLine};

/// The name of the span every job runs in.
pub const JOB_SPAN: &str = "job";
/// Longest message kept, in characters; longer ones are cut.
pub const MAX_LINE_CHARS: usize = 2_000;

/// Routes log events inside job spans to their jobs. Made by
/// [`JobEngine::log_layer`](super::JobEngine::log_layer).
pub struct JobLogLayer {
    jobs: Weak<JobTable>,
}

/// The job a span belongs to and the run it was opened for, kept in the span's extensions:
/// lines of a run that was superseded are refused.
struct JobSink(Arc<JobRecord>, u64);

impl JobLogLayer {
    pub(crate) fn new(jobs: Weak<JobTable>) -> Self {
        Self { jobs }
    }

    /// The layer with its own filter: the job spans (to see which job an event is in), and
    /// events at INFO and above. Other layers' filters do not affect it.
    ///
    /// Only the job spans: a span some layer enables is made and entered at every poll of
    /// what it wraps, and when this layer enabled every span, each event stream's request span
    /// (tower-http's, at DEBUG) cost about 6 % of the server's CPU in a fan-out to 1,000
    /// streams, though nothing ever printed it.
    pub(crate) fn with_filter<S>(self) -> Filtered<Self, impl tracing_subscriber::layer::Filter<S>, S>
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        Layer::with_filter(
            self,
            filter_fn(|meta| if meta.is_span() { meta.name() == JOB_SPAN } else { *meta.level() <= Level::INFO }),
        )
    }
}

/// Reads the `job_id` field of a job span.
struct JobIdVisitor(Option<JobId>);

impl Visit for JobIdVisitor {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "job_id" {
            self.0 = format!("{value:?}").parse().ok();
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "job_id" {
            self.0 = value.parse().ok();
        }
    }
}

/// Turns an event's fields into a message and a JSON map of the rest.
#[derive(Default)]
struct LineVisitor {
    message: String,
    fields: Map<String, Value>,
}

impl LineVisitor {
    fn put(&mut self, field: &Field, value: Value) {
        if field.name() == "message" {
            self.message = match value {
                Value::String(s) => s,
                other => other.to_string(),
            };
        } else if !field.name().starts_with("log.") {
            self.fields.insert(field.name().to_string(), value);
        }
    }
}

impl Visit for LineVisitor {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.put(field, Value::String(format!("{value:?}")));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, Value::String(value.to_string()));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, Value::from(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, Value::from(value));
    }
}

fn level(level: &Level) -> LogLevel {
    match *level {
        Level::ERROR => LogLevel::Error,
        Level::WARN => LogLevel::Warn,
        Level::INFO => LogLevel::Info,
        Level::DEBUG => LogLevel::Debug,
        Level::TRACE => LogLevel::Trace,
    }
}

impl<S> Layer<S> for JobLogLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if attrs.metadata().name() != JOB_SPAN {
            return;
        }
        let mut visitor = JobIdVisitor(None);
        attrs.record(&mut visitor);
        let (Some(job), Some(jobs)) = (visitor.0, self.jobs.upgrade()) else {
            return;
        };
        if let (Some(record), Some(span)) = (jobs.get(job), ctx.span(id)) {
            let run = record.run();
            span.extensions_mut().insert(JobSink(record, run));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let Some(scope) = ctx.event_scope(event) else { return };
        let Some((record, run)) =
            scope.into_iter().find_map(|span| span.extensions().get::<JobSink>().map(|sink| (sink.0.clone(), sink.1)))
        else {
            return;
        };
        let mut visitor = LineVisitor::default();
        event.record(&mut visitor);
        let mut message = visitor.message;
        if let Some((at, _)) = message.char_indices().nth(MAX_LINE_CHARS) {
            message.truncate(at);
            message.push('…');
        }
        record.log_as(
            run,
            LogLine {
                seq: 0,
                ts: now_ms(),
                level: level(event.metadata().level()),
                target: event.metadata().target().to_string(),
                message,
                fields: visitor.fields,
            },
        );
    }
}
