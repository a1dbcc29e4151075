//! The state of a stream connection, shared by the tab's event hub and `use_sse_progress`
//! (below both, so neither imports the other for it).

/// The connection to the job's stream, as a person would describe it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionState {
    /// Opening the stream for the first time.
    Connecting,
    /// Events are flowing.
    Open,
    /// The stream dropped; retrying with back-off. Not a failure (yet).
    Reconnecting,
    /// Not connected and not trying: the job ended, `close()` was called, or there is no job.
    Closed,
    /// Every retry failed; `reconnect()` tries again.
    Lost,
}
