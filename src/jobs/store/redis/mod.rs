//! The Redis store: jobs kept in a Redis server that the process does not own, so they outlive
//! it and any one instance: several instances share one database (see [`SharedStore`]).
//!
//! The key layout and every atomic step are in `scripts`; [`shared`] implements the shared
//! half of the seam. A batch is one Lua script, so it is applied whole or not at all: the
//! script first checks every job's lease and that its first new event follows the stream's
//! newest entry (a duplicate or a gap is refused before anything is written), then writes and
//! tells the other instances which jobs moved on.
//!
//! The client is redis-rs's synchronous one, on four connections of its own (`Lane`s): the
//! journal's writes, leases (heartbeats, claims, take-overs), the engine's look-ups, and the
//! listener's reads, so a slow read never delays a write or a heartbeat; the listener's
//! subscription has a fifth.
//! Each is made again after a failure. Why not the async connection manager: the seam is
//! called from blocking threads already, the pub/sub listener needs its own connection
//! anyway (a subscribed connection can send nothing else), and blocking reads with a
//! socket timeout avoid the manager's response timeout cutting long waits short.

mod scripts;
mod shared;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use redis::{Commands, Connection};
use serde_json::{json, Value};

use self::scripts::Scripts;
use super::shared::SharedStore;
use super::{Batch, JobRow, JobStore, LoadedJob, StoreError};
use crate::jobs::event::JobEvent;
use crate::model::{JobId, Snapshot};

/// Every key starts with this.
const PREFIX: &str = "sse-progress:";
/// How long connecting, and any one command, may take before the store says it is unreachable.
const TIMEOUT: Duration = Duration::from_secs(5);

/// One connection, made on first use and again after a failure.
#[derive(Default)]
struct Lane(Mutex<Option<Connection>>);

/// Jobs kept in Redis.
pub struct RedisStore {
    /// The address as given, without any password, for messages.
    shown: String,
    client: redis::Client,
    /// The journal's writes.
    writes: Lane,
    /// Everything else the engine asks.
    control: Lane,
    /// Leases: heartbeats, claims and take-overs, never queued behind a slow look-up.
    leases: Lane,
    /// The listener's reads of what other instances appended.
    reads: Lane,
    scripts: Scripts,
}

/// `redis://user:secret@host/0` -> `redis://user:***@host/0`.
fn hide_password(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

impl RedisStore {
    /// Connects to the Redis at `url` (`redis://HOST:PORT/DB`, `rediss://` for TLS is not
    /// built in) and checks that it answers.
    pub fn open(url: &str) -> Result<Self, StoreError> {
        let shown = hide_password(url);
        let client = redis::Client::open(url).map_err(|e| StoreError::Unusable {
            path: shown.clone().into(),
            reason: format!("{e}; use redis://HOST:PORT/DB"),
        })?;
        let store = Self {
            shown,
            client,
            writes: Lane::default(),
            control: Lane::default(),
            leases: Lane::default(),
            reads: Lane::default(),
            scripts: Scripts::new(),
        };
        store.ping()?;
        Ok(store)
    }

    fn unreachable(&self, error: &redis::RedisError) -> StoreError {
        StoreError::Unreachable { url: self.shown.clone(), reason: error.to_string() }
    }

    /// One job with its kept events (its hash and stream in one pipeline), `None` if not kept.
    fn read_one(&self, id: JobId) -> Result<Option<LoadedJob>, StoreError> {
        let (hash, entries): (HashMap<String, String>, Entries) = self.with(|conn| {
            redis::pipe()
                .hgetall(format!("{PREFIX}job:{id}"))
                .cmd("XRANGE")
                .arg(format!("{PREFIX}events:{id}"))
                .arg("-")
                .arg("+")
                .query(conn)
        })?;
        if hash.is_empty() {
            return Ok(None);
        }
        read_job(id, &hash, &entries).map(Some)
    }

    /// A new connection with the store's timeouts.
    fn connect(&self) -> Result<Connection, StoreError> {
        let conn = self.client.get_connection_with_timeout(TIMEOUT).map_err(|e| self.unreachable(&e))?;
        conn.set_read_timeout(Some(TIMEOUT)).map_err(|e| self.unreachable(&e))?;
        conn.set_write_timeout(Some(TIMEOUT)).map_err(|e| self.unreachable(&e))?;
        Ok(conn)
    }

    /// Runs `f` on the control lane's connection.
    fn with<T>(&self, f: impl FnOnce(&mut Connection) -> redis::RedisResult<T>) -> Result<T, StoreError> {
        self.on(&self.control, f)
    }

    /// Runs `f` on `lane`'s connection, connecting first when there is none; an I/O error
    /// drops the connection so the next call makes a new one.
    fn on<T>(&self, lane: &Lane, f: impl FnOnce(&mut Connection) -> redis::RedisResult<T>) -> Result<T, StoreError> {
        let mut slot: MutexGuard<'_, Option<Connection>> = lane.0.lock().unwrap_or_else(PoisonError::into_inner);
        if slot.is_none() {
            *slot = Some(self.connect()?);
        }
        let Some(conn) = slot.as_mut() else { return Err(StoreError::Backend("no connection".into())) };
        f(conn).map_err(|e| {
            if e.is_io_error() || e.is_connection_dropped() || e.is_timeout() {
                *slot = None;
                self.unreachable(&e)
            } else {
                StoreError::Backend(format!("{}: {e}", self.shown))
            }
        })
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Backend(format!("cannot encode: {e}")))
}

/// A new job as the scripts read it.
fn row_json(row: &JobRow) -> Result<Value, StoreError> {
    Ok(json!({
        "id": row.id.to_string(),
        "kind": row.kind,
        "params": row.params.to_string(),
        "owner": row.owner.as_deref(),
        "state": to_json(&*row.state)?,
        "status": row.state.status.as_str(),
        "created_ms": row.state.created.to_string(),
    }))
}

/// The batch as the script reads it: numbers as strings, so Lua never rounds or reformats them.
fn batch_json(batch: &Batch) -> Result<String, StoreError> {
    let created = batch.created.iter().map(row_json).collect::<Result<Vec<_>, StoreError>>()?;
    let writes = batch
        .writes
        .iter()
        .map(|w| {
            let events = w
                .events
                .iter()
                .map(|e| {
                    Ok(match e {
                        JobEvent::State(s, data) => json!([s.seq.to_string(), "s", &**data]),
                        JobEvent::Log(l, data) => json!([l.seq.to_string(), "l", &**data]),
                    })
                })
                .collect::<Result<Vec<_>, StoreError>>()?;
            let state = match &w.state {
                Some(s) => json!({
                    "json": to_json(&**s)?,
                    "status": s.status.as_str(),
                    "ended_ms": s.status.is_terminal().then(|| s.ts.to_string()),
                }),
                None => Value::Null,
            };
            Ok(json!({
                "id": w.id.to_string(),
                "events": events,
                "state": state,
                "started_ms": w.started_ms.map(|t| t.to_string()),
                "checkpoint": w.checkpoint.as_ref().map(Value::to_string),
                "cancel": w.cancel_requested,
                "forget_through": w.forget_through.to_string(),
                "lease": w.lease.to_string(),
            }))
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    let removed: Vec<String> = batch.removed.iter().map(ToString::to_string).collect();
    to_json(&json!({"created": created, "writes": writes, "removed": removed}))
}

fn damaged(what: &str, reason: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("{what} cannot be read: {reason}"))
}

/// A stream's entries as read back: (entry id, fields).
type Entries = Vec<(String, HashMap<String, String>)>;

fn parse_id(text: &str) -> Result<JobId, StoreError> {
    text.parse().map_err(|e| damaged(&format!("job id {text:?}"), e))
}

/// One event from its stream entry.
fn read_event(what: &str, entry: &str, fields: &HashMap<String, String>) -> Result<JobEvent, StoreError> {
    let data = fields.get("d").map(String::as_str).unwrap_or_default();
    let bad = |e: serde_json::Error| damaged(&format!("{what}, event {entry}"), e);
    Ok(match fields.get("k").map(String::as_str) {
        Some("l") => JobEvent::log(Arc::new(serde_json::from_str(data).map_err(bad)?)),
        _ => JobEvent::state(Arc::new(serde_json::from_str(data).map_err(bad)?)),
    })
}

/// One job read back from its hash and its stream.
fn read_job(id: JobId, hash: &HashMap<String, String>, entries: &Entries) -> Result<LoadedJob, StoreError> {
    let what = format!("job {id}");
    let field = |name: &str| hash.get(name).map(String::as_str);
    let state: Snapshot = serde_json::from_str(field("state").unwrap_or_default()).map_err(|e| damaged(&what, e))?;
    let number = |name: &str| field(name).and_then(|v| v.parse::<u64>().ok());
    let events =
        entries.iter().map(|(entry, fields)| read_event(&what, entry, fields)).collect::<Result<Vec<_>, _>>()?;
    let row = JobRow {
        id,
        kind: field("kind").unwrap_or_default().to_string(),
        params: serde_json::from_str(field("params").unwrap_or("{}")).map_err(|e| damaged(&what, e))?,
        owner: field("owner").map(Arc::from),
        state: Arc::new(state),
        checkpoint: match field("checkpoint") {
            Some(c) => Some(serde_json::from_str(c).map_err(|e| damaged(&what, e))?),
            None => None,
        },
        cancel_requested: field("cancel") == Some("1"),
        started_ms: number("started_ms"),
        ended_ms: number("ended_ms"),
    };
    Ok((row, events))
}

impl JobStore for RedisStore {
    fn describe(&self) -> String {
        self.shown.clone()
    }

    fn outlives_process(&self) -> bool {
        true
    }

    fn write(&self, batch: &Batch) -> Result<Vec<JobId>, StoreError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let encoded = batch_json(batch)?;
        let fenced: Vec<String> =
            self.on(&self.writes, |conn| self.scripts.write_batch.arg(PREFIX).arg(&encoded).invoke(conn))?;
        fenced.iter().map(|id| id.parse().map_err(|e| damaged(&format!("job id {id:?}"), e))).collect()
    }

    fn shared(self: Arc<Self>) -> Option<Arc<dyn SharedStore>> {
        Some(self)
    }

    fn load(&self) -> Result<Vec<LoadedJob>, StoreError> {
        let ids: Vec<String> = self.with(|conn| conn.smembers(format!("{PREFIX}jobs")))?;
        let mut jobs = Vec::with_capacity(ids.len());
        for text in ids {
            jobs.extend(self.read_one(parse_id(&text)?)?);
        }
        jobs.sort_by_key(|(row, _)| (row.state.created, row.id));
        Ok(jobs)
    }

    fn ping(&self) -> Result<(), StoreError> {
        self.with(|conn| redis::cmd("PING").query::<String>(conn)).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::hide_password;

    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(hide_password("redis://:s3cret@10.0.0.1:6379/0"), "redis://:***@10.0.0.1:6379/0");
        assert_eq!(hide_password("redis://app:s3cret@host/2"), "redis://app:***@host/2");
        assert_eq!(hide_password("redis://127.0.0.1:6379/0"), "redis://127.0.0.1:6379/0");
    }
}
