//! The SQLite store, the zero-setup default: one file (plus SQLite's `-wal` and `-shm` files
//! beside it), created on first start.
//!
//! Written in WAL mode with `synchronous=NORMAL`: a committed batch survives the process being
//! killed (`kill -9`, an out-of-memory kill); only a power cut may lose the last batches.
//! One process owns the file at a time: it holds an advisory lock on `PATH.lock` (with its pid
//! in it) for as long as it runs, and a second process is refused at start-up. Readers such as
//! the `sqlite3` shell (`.backup`) are not blocked.
//!
//! Over 450 lines on purpose: the schema, the writer and its classified errors, loading, and the
//! tests that pin the prepared-once statements belong to one file a backend author reads whole.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rusqlite::{params, Connection, ErrorCode, OptionalExtension};
use serde_json::Value;

use super::{Batch, JobRow, JobStore, LoadedJob, StoreError};
use crate::jobs::event::JobEvent;
use crate::model::{JobId, Snapshot};

/// Marks the file as ours (`PRAGMA application_id`): "sspr".
const APPLICATION_ID: i64 = 0x7373_7072;
/// The schema's version (`PRAGMA user_version`).
const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE jobs (
    id               TEXT PRIMARY KEY NOT NULL,
    kind             TEXT NOT NULL,
    params           TEXT NOT NULL,
    owner            TEXT,
    status           TEXT NOT NULL,
    seq              INTEGER NOT NULL,
    state            TEXT NOT NULL,
    checkpoint       TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    created_ms       INTEGER NOT NULL,
    started_ms       INTEGER,
    ended_ms         INTEGER
);
CREATE INDEX jobs_by_owner ON jobs(owner, created_ms);
CREATE TABLE events (
    job  TEXT NOT NULL,
    seq  INTEGER NOT NULL,
    log  INTEGER NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (job, seq)
) WITHOUT ROWID;
CREATE TABLE meta (
    key   TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);
";

/// How often the background checkpointer moves the WAL into the database file: often, so each
/// checkpoint (and its sync) is small.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(50);
/// WAL pages (4 KiB each, so 128 MiB) past which the writer itself checkpoints between two batches, after
/// publishing, so that the WAL starts over from its beginning: under constant writes the
/// background checkpoint never catches up with the writer, and the file would only grow.
const WAL_RESTART_PAGES: i64 = 32_768;

/// How often, at most, a running job's row is rewritten with its newest state when its status
/// did not change; between rewrites the newest state is read back from its events.
const ROW_REWRITE_EVERY_MS: u64 = 1_000;

/// What a job's row holds: the status and time (ms) of its state.
type RowStamp = (crate::model::JobStatus, u64);

/// The writer's connection, and when each running job's row was last rewritten.
struct Writer {
    conn: Connection,
    /// Job -> what its row holds; only running jobs (an ended job's row is final).
    rows: HashMap<JobId, RowStamp>,
}

/// Jobs kept in one SQLite file.
pub struct SqliteStore {
    path: PathBuf,
    conn: Mutex<Writer>,
    /// WAL pages the last background checkpoint saw, for the writer's own checkpoint.
    wal_pages: Arc<std::sync::atomic::AtomicI64>,
    /// Held for the store's life: the advisory lock that keeps other processes out.
    _lock: File,
    /// Dropped with the store, which stops the checkpointer thread.
    _checkpointer: std::sync::mpsc::Sender<()>,
}

fn unusable(path: &Path, reason: impl std::fmt::Display) -> StoreError {
    StoreError::Unusable { path: path.to_path_buf(), reason: reason.to_string() }
}

/// Turns SQLite's errors into ones that say what to do.
fn classify(path: &Path, error: &rusqlite::Error) -> StoreError {
    match error.sqlite_error_code() {
        Some(ErrorCode::NotADatabase) => StoreError::NotAStore {
            path: path.to_path_buf(),
            reason: "the file is not a SQLite database, or it is damaged".into(),
        },
        Some(ErrorCode::DatabaseCorrupt) => {
            StoreError::NotAStore { path: path.to_path_buf(), reason: format!("the database is damaged: {error}") }
        }
        Some(ErrorCode::DiskFull) => StoreError::DiskFull { path: path.to_path_buf() },
        Some(ErrorCode::CannotOpen | ErrorCode::PermissionDenied | ErrorCode::ReadOnly) => {
            unusable(path, format!("{error}; check that the file and its folder are writable"))
        }
        Some(ErrorCode::SystemIoFailure) if io_error_is_full(error) => {
            StoreError::DiskFull { path: path.to_path_buf() }
        }
        _ => StoreError::Backend(format!("{}: {error}", path.display())),
    }
}

/// SQLite reports some out-of-space conditions (a full WAL file) as I/O errors.
fn io_error_is_full(error: &rusqlite::Error) -> bool {
    let text = error.to_string().to_lowercase();
    text.contains("full") || text.contains("no space")
}

/// Takes the advisory lock on `PATH.lock`, writing this process's id into it.
fn lock_beside(path: &Path) -> Result<File, StoreError> {
    let mut lock_path = path.as_os_str().to_owned();
    lock_path.push(".lock");
    let lock_path = PathBuf::from(lock_path);
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&lock_path)
        .map_err(|e| unusable(&lock_path, e))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            return Err(StoreError::Locked { path: path.to_path_buf(), lock: lock_path });
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(unusable(&lock_path, e)),
    }
    // The pid is only a hint for people; a failure to write it changes nothing.
    let _ = file.set_len(0).and_then(|()| writeln!(file, "{}", std::process::id()));
    Ok(file)
}

impl SqliteStore {
    /// Opens (creating it and its folder when missing) the store at `path`. Refuses a file that
    /// another process holds, a file that is not a job store, and a disk that is full.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        if path.is_dir() {
            return Err(unusable(&path, "it is a folder; give the path of a file inside it"));
        }
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| {
                let why = match e.kind() {
                    std::io::ErrorKind::AlreadyExists | std::io::ErrorKind::NotADirectory => {
                        "a part of its path is a file, not a folder".to_string()
                    }
                    _ => e.to_string(),
                };
                unusable(&path, format!("cannot create its folder: {why}"))
            })?;
        }
        let lock = lock_beside(&path)?;
        let conn = Connection::open(&path).map_err(|e| classify(&path, &e))?;
        let (stop, stopped) = std::sync::mpsc::channel();
        let store = Self {
            path,
            conn: Mutex::new(Writer { conn, rows: HashMap::new() }),
            wal_pages: Arc::default(),
            _lock: lock,
            _checkpointer: stop,
        };
        store.prepare()?;
        store.start_checkpointer(stopped)?;
        Ok(store)
    }

    /// Checkpoints from a connection of its own, off the writer's path: a checkpoint copies
    /// the WAL into the database file and syncs it (milliseconds, tens on a busy disk), which
    /// would otherwise stall the commit that happened to trigger it, and every event waiting
    /// behind that commit. Measured here at 10,000 events/s: p99 append-to-visible 11 ms with
    /// SQLite's own checkpoints in the writer, under 3 ms with this.
    fn start_checkpointer(&self, stopped: std::sync::mpsc::Receiver<()>) -> Result<(), StoreError> {
        let conn = Connection::open(&self.path).map_err(|e| self.err(&e))?;
        // Never wait for the writer: a checkpoint that finds it busy is tried again next time.
        conn.busy_timeout(Duration::ZERO).map_err(|e| self.err(&e))?;
        let path = self.path.clone();
        let wal_pages = self.wal_pages.clone();
        std::thread::Builder::new()
            .name("sse-progress-checkpoint".into())
            .spawn(move || {
                let checkpoint = |mode: &str| -> rusqlite::Result<i64> {
                    conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| r.get::<_, i64>(1))
                };
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(CHECKPOINT_EVERY) {
                    match checkpoint("PASSIVE") {
                        Ok(pages) => wal_pages.store(pages, std::sync::atomic::Ordering::Relaxed),
                        Err(error) => {
                            tracing::warn!(path = %path.display(), %error, "WAL checkpoint failed; trying again shortly");
                        }
                    }
                }
            })
            .map_err(|e| StoreError::Backend(format!("cannot start the checkpoint thread: {e}")))?;
        Ok(())
    }

    fn lock(&self) -> MutexGuard<'_, Writer> {
        // A connection has no state of ours that a panic could leave half-changed.
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn err(&self, error: &rusqlite::Error) -> StoreError {
        classify(&self.path, error)
    }

    /// Checks the file is ours (or empty), creates the schema, and proves it can be written.
    fn prepare(&self) -> Result<(), StoreError> {
        let writer = self.lock();
        let conn = &writer.conn;
        let app_id: i64 = conn.query_row("PRAGMA application_id", [], |r| r.get(0)).map_err(|e| self.err(&e))?;
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(|e| self.err(&e))?;
        let tables: i64 =
            conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0)).map_err(|e| self.err(&e))?;
        let not_ours = |reason: String| StoreError::NotAStore { path: self.path.clone(), reason };
        if app_id == 0 && tables > 0 {
            return Err(not_ours("it holds another program's tables".into()));
        }
        if app_id != 0 && app_id != APPLICATION_ID {
            return Err(not_ours(format!("it belongs to another program (application id {app_id:#x})")));
        }
        if version > SCHEMA_VERSION {
            return Err(not_ours(format!(
                "it was written by a newer sse-progress (schema {version}, this one knows {SCHEMA_VERSION})"
            )));
        }
        conn.busy_timeout(Duration::from_secs(5)).map_err(|e| self.err(&e))?;
        let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0)).map_err(|e| self.err(&e))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(unusable(&self.path, format!("SQLite could not use WAL mode here (it said {mode})")));
        }
        // The background checkpointer (see `start_checkpointer`) does all the checkpoints.
        // The writer's page cache may grow to 16 MiB (SQLite's default is 2): with a thousand
        // jobs appending at once, each to pages of its own, the default cache could not hold
        // them, and reading them back was a tenth of the server's CPU (perf, 1,000 jobs of 50
        // events: pread 10.5 -> 2.7 % of samples, CPU per event -12 %, lag p50 115 -> 89 ms).
        conn.execute_batch("PRAGMA synchronous=NORMAL; PRAGMA wal_autocheckpoint=0; PRAGMA cache_size=-16384;")
            .map_err(|e| self.err(&e))?;
        if tables == 0 {
            conn.execute_batch(&format!(
                "BEGIN IMMEDIATE; {SCHEMA} PRAGMA application_id={APPLICATION_ID}; PRAGMA user_version={SCHEMA_VERSION}; COMMIT;"
            ))
            .map_err(|e| self.err(&e))?;
        }
        // A write now, so that a read-only or full disk is told at start-up, not at the first job.
        conn.execute(
            "INSERT INTO meta(key, value) VALUES ('opened_ms', ?1) ON CONFLICT(key) DO UPDATE SET value = ?1",
            params![crate::model::now_ms().to_string()],
        )
        .map_err(|e| self.err(&e))?;
        Ok(())
    }
}

/// Whether an event is a log line, and its JSON (encoded once, when it was made).
fn event_json(event: &JobEvent) -> (bool, &str) {
    (matches!(event, JobEvent::Log(..)), event.json())
}

/// Whether a job's row should be rewritten with `state` now: on every change of status, and
/// at most every [`ROW_REWRITE_EVERY_MS`] otherwise (the events hold the states in between).
fn row_due(rows: &HashMap<JobId, RowStamp>, id: JobId, state: &Snapshot) -> bool {
    rows.get(&id)
        .is_none_or(|(status, at)| *status != state.status || state.ts.saturating_sub(*at) >= ROW_REWRITE_EVERY_MS)
}

/// The newest kept event's number. Written `job = +?1`, not `job = ?1`: the bundled SQLite
/// (built with STAT4) prepares `max(seq) ... WHERE job = ?1` again each time a new job id is
/// bound, a parse and plan per job per batch (1.2 % of the server's samples with 1,000 jobs
/// running); the `+` leaves the plan (a primary-key search) as it was.
const LAST_KEPT_SEQ: &str = "SELECT max(seq) FROM events WHERE job = +?1";

/// What a batch did: the row stamps it changed (`None`: forget the job's stamp), for the
/// caller to apply once the transaction has committed, and the jobs whose writes it refused.
type Written = (Vec<(JobId, Option<RowStamp>)>, Vec<JobId>);

/// Writes `batch` (see [`Written`]).
fn write_batch(
    tx: &rusqlite::Transaction<'_>,
    batch: &Batch,
    rows: &HashMap<JobId, RowStamp>,
) -> Result<Written, rusqlite::Error> {
    let mut stamps = Vec::new();
    for row in &batch.created {
        tx.prepare_cached(
            "INSERT INTO jobs (id, kind, params, owner, status, seq, state, checkpoint, cancel_requested, created_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )?
        .execute(params![
            row.id.to_string(),
            row.kind,
            row.params.to_string(),
            row.owner.as_deref(),
            row.state.status.as_str(),
            row.state.seq,
            encode(&row.state)?,
            row.checkpoint.as_ref().map(Value::to_string),
            row.cancel_requested,
            row.state.created,
        ])?;
    }
    let mut refused = Vec::new();
    for write in &batch.writes {
        let id = write.id.to_string();
        if let Some(first) = write.events.first() {
            let created = batch.created.iter().any(|r| r.id == write.id);
            let kept: Option<u64> = if created {
                Some(0)
            } else {
                tx.prepare_cached(LAST_KEPT_SEQ)?.query_row([&id], |r| r.get::<_, Option<u64>>(0)).optional()?.flatten()
            };
            // A job not kept (no events), or events that do not follow the kept ones: this
            // job's writes are refused, the rest of the batch is written.
            if !kept.is_some_and(|kept| super::follows(kept, first.seq(), write.forget_through)) {
                refused.push(write.id);
                continue;
            }
        }
        let mut insert = tx.prepare_cached("INSERT INTO events (job, seq, log, data) VALUES (?1, ?2, ?3, ?4)")?;
        for event in &write.events {
            let (log, data) = event_json(event);
            insert.execute(params![id, event.seq(), log, data])?;
        }
        if write.forget_through > 0 {
            tx.prepare_cached("DELETE FROM events WHERE job = ?1 AND seq <= ?2")?
                .execute(params![id, write.forget_through])?;
        }
        if let Some(state) = write.state.as_ref().filter(|s| row_due(rows, write.id, s)) {
            let ended = state.status.is_terminal().then_some(state.ts);
            stamps.push((write.id, ended.is_none().then_some((state.status, state.ts))));
            tx.prepare_cached("UPDATE jobs SET status = ?2, seq = ?3, state = ?4, ended_ms = ?5 WHERE id = ?1")?
                .execute(params![id, state.status.as_str(), state.seq, encode(state)?, ended])?;
        }
        if let Some(started) = write.started_ms {
            tx.prepare_cached("UPDATE jobs SET started_ms = COALESCE(started_ms, ?2) WHERE id = ?1")?
                .execute(params![id, started])?;
        }
        if let Some(checkpoint) = &write.checkpoint {
            tx.prepare_cached("UPDATE jobs SET checkpoint = ?2 WHERE id = ?1")?
                .execute(params![id, checkpoint.to_string()])?;
        }
        if write.cancel_requested {
            tx.prepare_cached("UPDATE jobs SET cancel_requested = 1 WHERE id = ?1")?.execute([&id])?;
        }
    }
    for id in &batch.removed {
        stamps.push((*id, None));
        let id = id.to_string();
        tx.prepare_cached("DELETE FROM events WHERE job = ?1")?.execute([&id])?;
        tx.prepare_cached("DELETE FROM jobs WHERE id = ?1")?.execute([&id])?;
    }
    Ok((stamps, refused))
}

/// A row's state brought up to date from the job's kept events: a running job's row is only
/// rewritten now and then, so its newest state is the newest state event, and its sequence
/// number the newest event's (a log line moves it on too).
fn newest_state(mut row: JobRow, events: &[JobEvent]) -> JobRow {
    let newest_event = events.last().map_or(0, JobEvent::seq);
    let newest_state = events.iter().rev().find_map(|e| match e {
        JobEvent::State(s, _) => Some(s),
        JobEvent::Log(..) => None,
    });
    if let Some(state) = newest_state.filter(|s| s.seq > row.state.seq) {
        row.state = state.clone();
    }
    if newest_event > row.state.seq {
        let mut state = Snapshot::clone(&row.state);
        state.seq = newest_event;
        row.state = Arc::new(state);
    }
    row
}

fn encode(state: &Snapshot) -> Result<String, rusqlite::Error> {
    serde_json::to_string(state).map_err(|e| rusqlite::Error::ToSqlConversionFailure(e.into()))
}

fn decode<T: serde::de::DeserializeOwned>(what: &str, text: &str) -> Result<T, String> {
    serde_json::from_str(text).map_err(|e| format!("{what} cannot be read: {e}"))
}

impl JobStore for SqliteStore {
    fn describe(&self) -> String {
        format!("sqlite:{}", self.path.display())
    }

    fn outlives_process(&self) -> bool {
        true
    }

    fn write(&self, batch: &Batch) -> Result<Vec<JobId>, StoreError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let mut writer = self.lock();
        let Writer { conn, rows } = &mut *writer;
        let tx = conn.transaction().map_err(|e| self.err(&e))?;
        let (stamps, refused) = write_batch(&tx, batch, rows).map_err(|e| self.err(&e))?;
        tx.commit().map_err(|e| self.err(&e))?;
        for (id, stamp) in stamps {
            match stamp {
                Some(stamp) => rows.insert(id, stamp),
                None => rows.remove(&id),
            };
        }
        Ok(refused)
    }

    fn load(&self) -> Result<Vec<LoadedJob>, StoreError> {
        let writer = self.lock();
        let conn = &writer.conn;
        let damaged = |reason: String| StoreError::NotAStore { path: self.path.clone(), reason };
        let mut events: HashMap<String, Vec<JobEvent>> = HashMap::new();
        let mut query =
            conn.prepare("SELECT job, seq, log, data FROM events ORDER BY job, seq").map_err(|e| self.err(&e))?;
        let mut rows = query.query([]).map_err(|e| self.err(&e))?;
        while let Some(row) = rows.next().map_err(|e| self.err(&e))? {
            let job: String = row.get(0).map_err(|e| self.err(&e))?;
            let seq: u64 = row.get(1).map_err(|e| self.err(&e))?;
            let log: bool = row.get(2).map_err(|e| self.err(&e))?;
            let data: String = row.get(3).map_err(|e| self.err(&e))?;
            let what = format!("event {seq} of job {job}");
            let event = if log {
                JobEvent::log(Arc::new(decode(&what, &data).map_err(damaged)?))
            } else {
                JobEvent::state(Arc::new(decode(&what, &data).map_err(damaged)?))
            };
            events.entry(job).or_default().push(event);
        }
        drop(rows);
        let mut query = conn
            .prepare(
                "SELECT id, kind, params, owner, state, checkpoint, cancel_requested, started_ms, ended_ms
                 FROM jobs ORDER BY created_ms, id",
            )
            .map_err(|e| self.err(&e))?;
        let mut rows = query.query([]).map_err(|e| self.err(&e))?;
        let mut jobs = Vec::new();
        while let Some(row) = rows.next().map_err(|e| self.err(&e))? {
            let id_text: String = row.get(0).map_err(|e| self.err(&e))?;
            let id: JobId = id_text.parse().map_err(|e| damaged(format!("job row {id_text:?}: {e}")))?;
            let text = |i: usize| -> Result<Option<String>, StoreError> { row.get(i).map_err(|e| self.err(&e)) };
            let what = format!("job {id}");
            let params = decode(&what, &text(2)?.unwrap_or_default()).map_err(damaged)?;
            let state: Snapshot = decode(&what, &text(4)?.unwrap_or_default()).map_err(damaged)?;
            let checkpoint = match text(5)? {
                Some(c) => Some(decode(&what, &c).map_err(damaged)?),
                None => None,
            };
            let job = JobRow {
                id,
                kind: text(1)?.unwrap_or_default(),
                params,
                owner: text(3)?.map(Arc::from),
                state: Arc::new(state),
                checkpoint,
                cancel_requested: row.get(6).map_err(|e| self.err(&e))?,
                started_ms: row.get(7).map_err(|e| self.err(&e))?,
                ended_ms: row.get(8).map_err(|e| self.err(&e))?,
            };
            let kept = events.remove(&id_text).unwrap_or_default();
            jobs.push((newest_state(job, &kept), kept));
        }
        Ok(jobs)
    }

    fn housekeeping_due(&self) -> bool {
        self.wal_pages.load(std::sync::atomic::Ordering::Relaxed) > WAL_RESTART_PAGES
    }

    fn housekeeping(&self) -> Result<(), StoreError> {
        let writer = self.lock();
        // The writer is idle here, so this backfills the whole WAL and the next write starts
        // it over from the beginning.
        writer.conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())).map_err(|e| self.err(&e))?;
        self.wal_pages.store(0, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    fn ping(&self) -> Result<(), StoreError> {
        self.lock().conn.query_row("SELECT 1", [], |r| r.get::<_, i64>(0)).map(|_| ()).map_err(|e| self.err(&e))
    }
}

#[cfg(test)]
mod tests {
    use rusqlite::{Connection, StatementStatus};

    use super::{LAST_KEPT_SEQ, SCHEMA};

    #[test]
    fn the_newest_kept_event_is_found_by_key_and_its_statement_is_prepared_once() {
        let conn = Connection::open_in_memory().expect("a database");
        conn.execute_batch(SCHEMA).expect("the schema");
        let plan: String =
            conn.query_row(&format!("EXPLAIN QUERY PLAN {LAST_KEPT_SEQ}"), ["a"], |r| r.get(3)).expect("a plan");
        assert_eq!(plan, "SEARCH events USING PRIMARY KEY (job=?)");
        conn.execute("INSERT INTO events (job, seq, log, data) VALUES ('b', 7, 0, '{}')", []).expect("an event");
        for (job, newest) in [("a", None), ("b", Some(7)), ("c", None), ("b", Some(7))] {
            let mut statement = conn.prepare_cached(LAST_KEPT_SEQ).expect("prepared");
            assert_eq!(statement.query_row([job], |r| r.get::<_, Option<u64>>(0)).expect("a row"), newest);
            assert_eq!(statement.get_status(StatementStatus::RePrepare), 0, "prepared again for job {job}");
        }
    }
}
