//! The Redis store: jobs kept in a Redis server that the process does not own, so they outlive
//! it (and, with the leases still to come, any one instance).
//!
//! Layout, under the key prefix `sse-progress:`:
//! - `job:{id}`: a hash: `kind`, `params`, `owner`, `state` (the newest state, JSON), `status`,
//!   `checkpoint`, `cancel`, `started_ms`, `ended_ms`;
//! - `events:{id}`: a stream whose entry ids are the job's sequence numbers (`{seq}-0`), each
//!   with `k` (`s` a state, `l` a log line) and `d` (its JSON);
//! - `jobs`: the set of kept job ids.
//!
//! A batch is one Lua script, so it is applied whole or not at all: the script first checks
//! every job's first new event follows the stream's newest entry (a duplicate or a gap is
//! refused before anything is written), then writes.
//!
//! For now one server process uses one Redis database at a time; several instances sharing one
//! need the leases and fencing of the multi-instance work.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use redis::{Commands, Connection, Script};
use serde_json::{json, Value};

use super::{Batch, JobRow, JobStore, LoadedJob, StoreError};
use crate::jobs::JobEvent;
use crate::model::{JobId, Snapshot};

/// Every key starts with this.
const PREFIX: &str = "sse-progress:";
/// How long connecting, and any one command, may take before the store says it is unreachable.
const TIMEOUT: Duration = Duration::from_secs(5);

/// Applies one batch (ARGV[2], JSON) under the prefix ARGV[1]: checks, then writes.
const WRITE_BATCH: &str = r"
local p = ARGV[1]
local b = cjson.decode(ARGV[2])
local created = {}
for _, c in ipairs(b.created) do
  if redis.call('EXISTS', p .. 'job:' .. c.id) == 1 then
    return redis.error_reply('job ' .. c.id .. ' exists already')
  end
  created[c.id] = true
end
for _, w in ipairs(b.writes) do
  if #w.events > 0 then
    local kept = 0
    if not created[w.id] then
      if redis.call('EXISTS', p .. 'job:' .. w.id) == 0 then
        return redis.error_reply('job ' .. w.id .. ' is not kept')
      end
      local last = redis.call('XREVRANGE', p .. 'events:' .. w.id, '+', '-', 'COUNT', 1)
      if #last > 0 then kept = tonumber(string.match(last[1][1], '^(%d+)')) end
    end
    if tonumber(w.events[1][1]) ~= kept + 1 then
      return redis.error_reply('job ' .. w.id .. ': event ' .. w.events[1][1] .. ' does not follow event ' .. kept)
    end
  end
end
for _, c in ipairs(b.created) do
  local k = p .. 'job:' .. c.id
  redis.call('HSET', k, 'kind', c.kind, 'params', c.params, 'state', c.state, 'status', c.status,
    'created_ms', c.created_ms, 'cancel', '0')
  if c.owner ~= cjson.null then redis.call('HSET', k, 'owner', c.owner) end
  redis.call('SADD', p .. 'jobs', c.id)
end
for _, w in ipairs(b.writes) do
  local ek = p .. 'events:' .. w.id
  local jk = p .. 'job:' .. w.id
  for _, e in ipairs(w.events) do
    redis.call('XADD', ek, e[1] .. '-0', 'k', e[2], 'd', e[3])
  end
  if w.forget_through ~= '0' then
    redis.call('XTRIM', ek, 'MINID', (tonumber(w.forget_through) + 1) .. '-0')
  end
  if w.state ~= cjson.null then
    redis.call('HSET', jk, 'state', w.state.json, 'status', w.state.status)
    if w.state.ended_ms ~= cjson.null then redis.call('HSET', jk, 'ended_ms', w.state.ended_ms) end
  end
  if w.started_ms ~= cjson.null then redis.call('HSETNX', jk, 'started_ms', w.started_ms) end
  if w.checkpoint ~= cjson.null then redis.call('HSET', jk, 'checkpoint', w.checkpoint) end
  if w.cancel then redis.call('HSET', jk, 'cancel', '1') end
end
for _, id in ipairs(b.removed) do
  redis.call('DEL', p .. 'job:' .. id, p .. 'events:' .. id)
  redis.call('SREM', p .. 'jobs', id)
end
return 'OK'
";

/// Jobs kept in Redis.
pub struct RedisStore {
    /// The address as given, without any password, for messages.
    shown: String,
    client: redis::Client,
    /// The connection in use; dropped after an I/O error and made again on the next call.
    conn: Mutex<Option<Connection>>,
    script: Script,
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
        let store = Self { shown, client, conn: Mutex::new(None), script: Script::new(WRITE_BATCH) };
        store.ping()?;
        Ok(store)
    }

    fn unreachable(&self, error: &redis::RedisError) -> StoreError {
        StoreError::Unreachable { url: self.shown.clone(), reason: error.to_string() }
    }

    /// Runs `f` on the connection, connecting first when there is none; an I/O error drops the
    /// connection so the next call makes a new one.
    fn with<T>(&self, f: impl FnOnce(&mut Connection) -> redis::RedisResult<T>) -> Result<T, StoreError> {
        let mut slot: MutexGuard<'_, Option<Connection>> = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        if slot.is_none() {
            let conn = self.client.get_connection_with_timeout(TIMEOUT).map_err(|e| self.unreachable(&e))?;
            conn.set_read_timeout(Some(TIMEOUT)).map_err(|e| self.unreachable(&e))?;
            conn.set_write_timeout(Some(TIMEOUT)).map_err(|e| self.unreachable(&e))?;
            *slot = Some(conn);
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

/// The batch as the script reads it: numbers as strings, so Lua never rounds or reformats them.
fn batch_json(batch: &Batch) -> Result<String, StoreError> {
    let created = batch
        .created
        .iter()
        .map(|row| {
            Ok(json!({
                "id": row.id.to_string(),
                "kind": row.kind,
                "params": row.params.to_string(),
                "owner": row.owner.as_deref(),
                "state": to_json(&*row.state)?,
                "status": row.state.status.as_str(),
                "created_ms": row.state.created.to_string(),
            }))
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    let writes = batch
        .writes
        .iter()
        .map(|w| {
            let events = w
                .events
                .iter()
                .map(|e| {
                    Ok(match e {
                        JobEvent::State(s) => json!([s.seq.to_string(), "s", to_json(&**s)?]),
                        JobEvent::Log(l) => json!([l.seq.to_string(), "l", to_json(&**l)?]),
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

/// One job read back from its hash and its stream.
fn read_job(id: JobId, hash: &HashMap<String, String>, entries: &Entries) -> Result<LoadedJob, StoreError> {
    let what = format!("job {id}");
    let field = |name: &str| hash.get(name).map(String::as_str);
    let state: Snapshot = serde_json::from_str(field("state").unwrap_or_default()).map_err(|e| damaged(&what, e))?;
    let number = |name: &str| field(name).and_then(|v| v.parse::<u64>().ok());
    let mut events = Vec::with_capacity(entries.len());
    for (entry, fields) in entries {
        let data = fields.get("d").map(String::as_str).unwrap_or_default();
        let event = match fields.get("k").map(String::as_str) {
            Some("l") => JobEvent::Log(Arc::new(serde_json::from_str(data).map_err(|e| damaged(&format!("{what}, event {entry}"), e))?)),
            _ => JobEvent::State(Arc::new(serde_json::from_str(data).map_err(|e| damaged(&format!("{what}, event {entry}"), e))?)),
        };
        events.push(event);
    }
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

    fn write(&self, batch: &Batch) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let encoded = batch_json(batch)?;
        self.with(|conn| self.script.arg(PREFIX).arg(&encoded).invoke::<()>(conn))
    }

    fn load(&self) -> Result<Vec<LoadedJob>, StoreError> {
        let ids: Vec<String> = self.with(|conn| conn.smembers(format!("{PREFIX}jobs")))?;
        let mut jobs = Vec::with_capacity(ids.len());
        for text in ids {
            let id: JobId = text.parse().map_err(|e| damaged(&format!("job id {text:?}"), e))?;
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
                continue;
            }
            jobs.push(read_job(id, &hash, &entries)?);
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
