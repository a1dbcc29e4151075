//! One event in a job's life, with its JSON encoded once: what the journal writes, the store
//! keeps, the replay log holds and every subscriber sends.

use std::sync::Arc;

use crate::model::{LogLine, Snapshot};

/// An event's JSON, encoded once when the event is made: the store writes it and every
/// subscriber sends it, however many there are.
pub type Json = Arc<str>;

/// One event in a job's replay log, with its JSON.
#[derive(Debug, Clone, PartialEq)]
pub enum JobEvent {
    /// The job's state changed; this is the whole state after the change.
    State(Arc<Snapshot>, Json),
    /// The job's code logged a line.
    Log(Arc<LogLine>, Json),
}

impl JobEvent {
    /// A change of state, encoded.
    pub fn state(state: Arc<Snapshot>) -> Self {
        let json = encode(&*state, state.seq);
        Self::State(state, json)
    }

    /// A log line, encoded.
    pub fn log(line: Arc<LogLine>) -> Self {
        let json = encode(&*line, line.seq);
        Self::Log(line, json)
    }

    /// The event's sequence number.
    pub fn seq(&self) -> u64 {
        match self {
            Self::State(s, _) => s.seq,
            Self::Log(l, _) => l.seq,
        }
    }

    /// The event's JSON.
    pub fn json(&self) -> &Json {
        match self {
            Self::State(_, json) | Self::Log(_, json) => json,
        }
    }

    /// The bytes it holds in a replay log, about.
    pub(crate) fn size(&self) -> usize {
        let value = match self {
            Self::State(s, _) => std::mem::size_of::<Snapshot>() + s.kind.len() + s.step.len() + s.message.len(),
            Self::Log(l, _) => std::mem::size_of::<LogLine>() + l.target.len() + line_size(l),
        };
        value + self.json().len()
    }
}

/// `value` as JSON. A job's states and log lines always encode (their maps have string keys);
/// should one not, its sequence number still goes out, and the error is logged.
pub fn encode<T: serde::Serialize>(value: &T, seq: u64) -> Json {
    serde_json::to_string(value)
        .unwrap_or_else(|e| {
            tracing::error!(error = %e, seq, "could not encode an event");
            format!("{{\"seq\":{seq}}}")
        })
        .into()
}

/// Bytes a log line counts against its job's bound.
pub(crate) fn line_size(line: &LogLine) -> usize {
    line.message.len() + line.fields.iter().map(|(k, v)| k.len() + v.to_string().len()).sum::<usize>()
}
