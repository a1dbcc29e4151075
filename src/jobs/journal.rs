//! The journal: the one writer between the engine and its store.
//!
//! Records hand it every event, checkpoint and cancel request as it happens; a task of its
//! own takes everything waiting at once, writes it to the store as ONE batch (one
//! transaction, on the blocking pool), and only then publishes the events to their records'
//! subscribers. So writes are batched under load (one transaction for many events, one
//! writer), a client is never shown an event that is not yet stored, and the async runtime
//! never waits on the disk.
//!
//! When the store refuses a batch (a full disk, a store that went away), the journal keeps it,
//! says so through [`Journal::healthy`], and retries with a growing pause: nothing accepted
//! is dropped, and events are published as soon as they are stored.
//!
//! With a shared store every write carries its record's lease; the writes of a job that
//! another instance took over meanwhile are refused (fenced) and never published, and the
//! record turns into a mirror of what the new holder writes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use super::record::{JobEvent, JobRecord};
use super::stats::Counters;
use super::store::{Batch, JobRow, JobStore, JobWrite, StoreError};
use crate::model::{JobId, JobStatus, Snapshot};

/// Most entries written in one batch.
const MAX_BATCH: usize = 8_192;
/// The first and the longest pause between attempts at a batch the store refused.
const RETRY_FIRST: Duration = Duration::from_millis(50);
const RETRY_MAX: Duration = Duration::from_secs(2);

/// What the journal is told, in order. Each change carries the lease its record held when it
/// was made (0 without a shared store), so a change made under a lease since lost is never
/// written under the next one.
enum Entry {
    Create { record: Arc<JobRecord>, row: JobRow, first: JobEvent },
    Event { record: Arc<JobRecord>, lease: u64, event: JobEvent, state: Arc<Snapshot> },
    Checkpoint { record: Arc<JobRecord>, lease: u64, value: Value },
    CancelRequested { record: Arc<JobRecord>, lease: u64 },
    Remove(Vec<JobId>),
    Flush(oneshot::Sender<()>),
}

/// Whether the last write worked, and if not why.
#[derive(Default)]
struct Health {
    failing: AtomicBool,
    last_error: Mutex<Option<String>>,
}

/// The handle records and the engine write through. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Journal {
    tx: mpsc::UnboundedSender<Entry>,
    health: Arc<Health>,
    counters: Arc<Counters>,
}

impl Journal {
    /// Starts the writer task for `store`. It ends when every handle is gone. Must be called
    /// inside a Tokio runtime.
    pub(crate) fn start(store: Arc<dyn JobStore>) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let health = Arc::new(Health::default());
        let counters = Arc::new(Counters::default());
        tokio::spawn(run(store, rx, health.clone(), counters.clone()));
        Self { tx, health, counters }
    }

    /// The engine's counts (the journal counts what it writes; subscriptions count the rest).
    pub(crate) fn counters(&self) -> &Arc<Counters> {
        &self.counters
    }

    fn send(&self, entry: Entry) {
        // The writer thread only ends when every sender is gone, and we are one.
        let _ = self.tx.send(entry);
    }

    pub(crate) fn create(&self, record: Arc<JobRecord>) {
        let (row, first) = record.first_event();
        self.send(Entry::Create { record, row, first });
    }

    // The three below are called under the record's lock, so its lease is the one the change
    // was made under.
    pub(crate) fn event(&self, record: Arc<JobRecord>, event: JobEvent, state: Arc<Snapshot>) {
        let lease = record.lease();
        self.send(Entry::Event { record, lease, event, state });
    }

    pub(crate) fn checkpoint(&self, record: Arc<JobRecord>, value: Value) {
        let lease = record.lease();
        self.send(Entry::Checkpoint { record, lease, value });
    }

    pub(crate) fn cancel_requested(&self, record: Arc<JobRecord>) {
        let lease = record.lease();
        self.send(Entry::CancelRequested { record, lease });
    }

    pub(crate) fn remove(&self, ids: Vec<JobId>) {
        if !ids.is_empty() {
            self.send(Entry::Remove(ids));
        }
    }

    /// Waits until everything handed over before this call is written and published.
    pub(crate) async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        self.send(Entry::Flush(tx));
        let _ = rx.await;
    }

    /// `Ok` while the store takes what is written; the store's last error otherwise.
    pub(crate) fn healthy(&self) -> Result<(), String> {
        if !self.health.failing.load(Ordering::Relaxed) {
            return Ok(());
        }
        let error = self.health.last_error.lock().unwrap_or_else(PoisonError::into_inner).clone();
        Err(error.unwrap_or_else(|| "the job store refused a write".into()))
    }
}

/// One batch being assembled: the store's part, and what to publish once it is written.
#[derive(Default)]
struct Assembly {
    batch: Batch,
    by_job: HashMap<JobId, usize>,
    publish: Vec<(Arc<JobRecord>, Option<Arc<Snapshot>>)>,
    flushes: Vec<oneshot::Sender<()>>,
}

impl Assembly {
    /// The place of `record`'s write under `lease` in the batch, made on first use; `None`
    /// for a change made under an earlier lease than one already in the batch (it is stale).
    /// Changes of an earlier lease already in the batch give way to those of a later one.
    fn index(&mut self, record: &Arc<JobRecord>, lease: u64) -> Option<usize> {
        if let Some(&at) = self.by_job.get(&record.id) {
            let held = self.batch.writes[at].lease;
            if lease < held {
                return None;
            }
            if lease > held {
                self.batch.writes[at] = JobWrite { lease, ..JobWrite::new(record.id) };
                self.publish[at].1 = None;
            }
            return Some(at);
        }
        self.batch.writes.push(JobWrite { lease, ..JobWrite::new(record.id) });
        self.publish.push((record.clone(), None));
        self.by_job.insert(record.id, self.batch.writes.len() - 1);
        Some(self.batch.writes.len() - 1)
    }

    fn write_for(&mut self, record: &Arc<JobRecord>, lease: u64) -> Option<&mut JobWrite> {
        let at = self.index(record, lease)?;
        Some(&mut self.batch.writes[at])
    }

    fn add_event(&mut self, record: &Arc<JobRecord>, lease: u64, event: JobEvent, state: Arc<Snapshot>) {
        let Some(at) = self.index(record, lease) else { return };
        let write = &mut self.batch.writes[at];
        if let JobEvent::State(s, _) = &event {
            if s.status == JobStatus::Running && write.started_ms.is_none() {
                write.started_ms = Some(s.ts);
            }
        }
        write.forget_through = state.seq.saturating_sub(record.replay_capacity());
        write.events.push(event);
        write.state = Some(state.clone());
        self.publish[at].1 = Some(state);
    }

    fn add(&mut self, entry: Entry) {
        match entry {
            Entry::Create { record, row, first } => {
                let state = row.state.clone();
                self.batch.created.push(row);
                self.add_event(&record, 0, first, state);
            }
            Entry::Event { record, lease, event, state } => {
                self.add_event(&record, lease, event, state);
            }
            Entry::Checkpoint { record, lease, value } => {
                if let Some(write) = self.write_for(&record, lease) {
                    write.checkpoint = Some(value);
                }
            }
            Entry::CancelRequested { record, lease } => {
                if let Some(write) = self.write_for(&record, lease) {
                    write.cancel_requested = true;
                }
            }
            Entry::Remove(ids) => self.batch.removed.extend(ids),
            Entry::Flush(done) => self.flushes.push(done),
        }
    }
}

async fn run(
    store: Arc<dyn JobStore>,
    mut rx: mpsc::UnboundedReceiver<Entry>,
    health: Arc<Health>,
    counters: Arc<Counters>,
) {
    let mut entries = Vec::new();
    while rx.recv_many(&mut entries, MAX_BATCH).await > 0 {
        let mut assembly = Assembly::default();
        for entry in entries.drain(..) {
            assembly.add(entry);
        }
        let Assembly { batch, publish, flushes, .. } = assembly;
        let fenced = write_until_stored(&store, batch, &health, &counters).await;
        for (record, state) in publish {
            if fenced.contains(&record.id) {
                if record.lose() {
                    counters.leases_lost.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(id = %record.id, "another instance took this job over; this one stops it and follows");
                }
            } else if let Some(state) = state {
                record.publish(state);
            }
        }
        for done in flushes {
            let _ = done.send(());
        }
        if store.housekeeping_due() {
            let keeper = store.clone();
            let done = tokio::task::spawn_blocking(move || keeper.housekeeping()).await;
            if let Ok(Err(error)) = done {
                tracing::warn!(store = %store.describe(), %error, "store upkeep failed; trying again later");
            }
        }
    }
}

/// Writes `batch` on the blocking pool, retrying with a growing pause for as long as the store
/// refuses it. Returns the jobs whose writes were fenced.
async fn write_until_stored(
    store: &Arc<dyn JobStore>,
    batch: Batch,
    health: &Health,
    counters: &Counters,
) -> Vec<JobId> {
    if batch.is_empty() {
        return Vec::new();
    }
    let events = batch.writes.iter().map(|w| w.events.len()).sum();
    let batch = Arc::new(batch);
    let mut pause = RETRY_FIRST;
    loop {
        let (writer, todo) = (store.clone(), batch.clone());
        let began = std::time::Instant::now();
        let written = tokio::task::spawn_blocking(move || writer.write(&todo))
            .await
            .unwrap_or_else(|e| Err(StoreError::Backend(format!("the write stopped: {e}"))));
        match written {
            Ok(fenced) => {
                counters.written(events, began.elapsed());
                if health.failing.swap(false, Ordering::Relaxed) {
                    tracing::info!(store = %store.describe(), "the job store takes writes again");
                }
                return fenced;
            }
            Err(error) => {
                if !health.failing.swap(true, Ordering::Relaxed) {
                    tracing::error!(store = %store.describe(), %error, "the job store refused a write; retrying, nothing is dropped");
                }
                *health.last_error.lock().unwrap_or_else(PoisonError::into_inner) = Some(error.to_string());
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(RETRY_MAX);
            }
        }
    }
}
