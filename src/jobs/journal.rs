//! The journal: the one writer between the engine and its store.
//!
//! Records hand it every event, checkpoint and cancel request as it happens; a task of its
//! own takes everything waiting at once, writes it to the store as ONE batch (one
//! transaction, on the blocking pool), and only then tells the records their events are
//! stored, so they publish them. So writes are batched under load (one transaction for many
//! events, one writer), a client is never shown an event that is not yet stored, and the async
//! runtime never waits on the disk.
//!
//! When the store refuses a batch (a full disk, a store that went away), the journal keeps it,
//! says so through [`Journal::healthy`], and retries with a growing pause; what arrives
//! meanwhile joins the batch. Nothing accepted is dropped, and memory stays bounded however
//! long the outage: per job the batch holds at most its replay bound of events (older ones
//! would be forgotten by the store as soon as they were written, so they are forgotten here).
//!
//! The store refuses one job's writes without refusing the batch: writes under a lease that is
//! no longer the job's (another instance took it over), of a job it does not keep, or whose
//! events do not follow the kept ones. Those are never published; the job's record is told
//! ([`Written::refused`]) and the other jobs go on.
//!
//! The journal knows records only through [`Written`], so it sits below them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use super::event::JobEvent;
use super::stats::Counters;
use super::store::{Batch, JobRow, JobStore, JobWrite, StoreError};
use crate::model::{JobId, JobStatus, Snapshot};

/// Most entries taken from the channel at once.
const MAX_BATCH: usize = 8_192;
/// The first and the longest pause between attempts at a batch the store refused.
const RETRY_FIRST: Duration = Duration::from_millis(50);
const RETRY_MAX: Duration = Duration::from_secs(2);

/// What the journal needs of a job's record.
pub(crate) trait Written: Send + Sync + 'static {
    /// The job.
    fn job(&self) -> JobId;
    /// How many of its newest events the store keeps (older ones are forgotten).
    fn replay_capacity(&self) -> u64;
    /// Its events up to `state.seq` are stored: show them.
    fn stored(&self, state: Arc<Snapshot>);
    /// The store refused its writes made under `lease` (another holder has it, or the store
    /// does not keep it as this record thinks): stop writing. Whether this changed anything.
    fn refused(&self, lease: u64) -> bool;
}

/// What the journal is told, in order. Each change carries the lease its record held when it
/// was made (0 without a shared store), so a change made under a lease since lost is never
/// written under the next one.
enum Entry {
    Create { record: Arc<dyn Written>, row: JobRow, first: JobEvent },
    Event { record: Arc<dyn Written>, lease: u64, event: JobEvent, state: Arc<Snapshot> },
    Checkpoint { record: Arc<dyn Written>, lease: u64, value: Value },
    CancelRequested { record: Arc<dyn Written>, lease: u64 },
    Remove(Vec<JobId>),
    Flush(oneshot::Sender<()>),
}

/// Whether the last write worked, and if not why; and how many events wait to be written.
#[derive(Default)]
struct Health {
    failing: AtomicBool,
    last_error: Mutex<Option<String>>,
    backlog: AtomicU64,
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
        // The writer task only ends when every sender is gone, and we are one.
        let _ = self.tx.send(entry);
    }

    /// A new job: its row and its first event.
    pub(crate) fn create(&self, record: Arc<dyn Written>, row: JobRow, first: JobEvent) {
        self.send(Entry::Create { record, row, first });
    }

    /// An event of `record`'s, made under `lease`; `state` is the job's state after it.
    pub(crate) fn event(&self, record: Arc<dyn Written>, lease: u64, event: JobEvent, state: Arc<Snapshot>) {
        self.send(Entry::Event { record, lease, event, state });
    }

    /// A checkpoint of `record`'s, saved under `lease`.
    pub(crate) fn checkpoint(&self, record: Arc<dyn Written>, lease: u64, value: Value) {
        self.send(Entry::Checkpoint { record, lease, value });
    }

    /// Someone asked `record`'s job to stop.
    pub(crate) fn cancel_requested(&self, record: Arc<dyn Written>, lease: u64) {
        self.send(Entry::CancelRequested { record, lease });
    }

    /// Forgets jobs, rows and events.
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

    /// Events taken in but not yet written (while the store refuses writes, at most each
    /// running job's replay bound).
    pub(crate) fn backlog(&self) -> u64 {
        self.health.backlog.load(Ordering::Relaxed)
    }
}

/// A write's record, and the state to publish once the write is stored.
type ToPublish = (Arc<dyn Written>, Option<Arc<Snapshot>>);

/// One batch being assembled: the store's part, and whom to tell once it is written.
#[derive(Default)]
struct Assembly {
    batch: Batch,
    by_job: HashMap<JobId, usize>,
    /// Per write, at the write's index.
    publish: Vec<ToPublish>,
    flushes: Vec<oneshot::Sender<()>>,
}

impl Assembly {
    /// The place of `record`'s write under `lease` in the batch, made on first use; `None`
    /// for a change made under an earlier lease than one already in the batch (it is stale).
    /// Changes of an earlier lease already in the batch give way to those of a later one.
    fn index(&mut self, record: &Arc<dyn Written>, lease: u64) -> Option<usize> {
        let id = record.job();
        if let Some(&at) = self.by_job.get(&id) {
            let held = self.batch.writes[at].lease;
            if lease < held {
                return None;
            }
            if lease > held {
                self.batch.writes[at] = JobWrite { lease, ..JobWrite::new(id) };
                self.publish[at] = (record.clone(), None);
            }
            return Some(at);
        }
        self.batch.writes.push(JobWrite { lease, ..JobWrite::new(id) });
        self.publish.push((record.clone(), None));
        self.by_job.insert(id, self.batch.writes.len() - 1);
        Some(self.batch.writes.len() - 1)
    }

    fn write_for(&mut self, record: &Arc<dyn Written>, lease: u64) -> Option<&mut JobWrite> {
        let at = self.index(record, lease)?;
        Some(&mut self.batch.writes[at])
    }

    fn add_event(&mut self, record: &Arc<dyn Written>, lease: u64, event: JobEvent, state: Arc<Snapshot>) {
        let Some(at) = self.index(record, lease) else { return };
        let write = &mut self.batch.writes[at];
        if let JobEvent::State(s, _) = &event {
            if s.status == JobStatus::Running && write.started_ms.is_none() {
                write.started_ms = Some(s.ts);
            }
        }
        write.forget_through = state.seq.saturating_sub(record.replay_capacity());
        write.events.push(event);
        // What the store would forget as soon as it is written is not kept waiting for it.
        let stale = write.events.iter().take_while(|e| e.seq() <= write.forget_through).count();
        write.events.drain(..stale);
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
            Entry::Event { record, lease, event, state } => self.add_event(&record, lease, event, state),
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

    fn events(&self) -> u64 {
        self.batch.writes.iter().map(|w| w.events.len() as u64).sum()
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
        let refused = write_until_stored(&store, &mut assembly, &mut rx, &health, &counters).await;
        let Assembly { batch, publish, flushes, .. } = assembly;
        for ((record, state), write) in publish.into_iter().zip(&batch.writes) {
            if refused.contains(&write.id) {
                if record.refused(write.lease) {
                    counters.leases_lost.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(id = %write.id, "the store refused this job's writes (another instance holds it now, or it is not kept as this one thought); it stops here");
                }
            } else if let Some(state) = state {
                record.stored(state);
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

/// Writes the assembled batch on the blocking pool, retrying with a growing pause for as long
/// as the store refuses it; what arrives meanwhile joins the batch. Returns the jobs whose
/// writes the store refused.
async fn write_until_stored(
    store: &Arc<dyn JobStore>,
    assembly: &mut Assembly,
    rx: &mut mpsc::UnboundedReceiver<Entry>,
    health: &Health,
    counters: &Counters,
) -> Vec<JobId> {
    let mut pause = RETRY_FIRST;
    loop {
        if assembly.batch.is_empty() {
            health.backlog.store(0, Ordering::Relaxed);
            return Vec::new();
        }
        let events = assembly.events();
        health.backlog.store(events, Ordering::Relaxed);
        // Shared with the write so that the batch is still here, whole, if the write panics.
        let batch = Arc::new(std::mem::take(&mut assembly.batch));
        let (writer, todo) = (store.clone(), batch.clone());
        let began = std::time::Instant::now();
        let written = tokio::task::spawn_blocking(move || writer.write(&todo))
            .await
            .unwrap_or_else(|e| Err(StoreError::Backend(format!("the write stopped: {e}"))));
        assembly.batch = Arc::try_unwrap(batch).unwrap_or_else(|shared| Batch::clone(&shared));
        match written {
            Ok(refused) => {
                counters.written(events as usize, began.elapsed());
                health.backlog.store(0, Ordering::Relaxed);
                if health.failing.swap(false, Ordering::Relaxed) {
                    tracing::info!(store = %store.describe(), "the job store takes writes again");
                }
                return refused;
            }
            Err(error) => {
                if !health.failing.swap(true, Ordering::Relaxed) {
                    tracing::error!(store = %store.describe(), %error, "the job store refused a write; retrying, nothing is dropped");
                }
                *health.last_error.lock().unwrap_or_else(PoisonError::into_inner) = Some(error.to_string());
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(RETRY_MAX);
                // Everything that came meanwhile joins the batch, coalesced per job (see
                // `add_event`): the channel never holds more than one pause's worth.
                while let Ok(entry) = rx.try_recv() {
                    assembly.add(entry);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;

    use super::*;
    use crate::jobs::store::memory::MemoryStore;
    use crate::jobs::store::LoadedJob;

    /// A memory store that refuses every write while `down` (a disk that filled up, a store
    /// that went away).
    #[derive(Default)]
    struct Flaky {
        kept: MemoryStore,
        down: AtomicBool,
    }

    impl JobStore for Flaky {
        fn describe(&self) -> String {
            "flaky".into()
        }
        fn outlives_process(&self) -> bool {
            false
        }
        fn write(&self, batch: &Batch) -> Result<Vec<JobId>, StoreError> {
            if self.down.load(Ordering::Relaxed) {
                return Err(StoreError::Backend("down".into()));
            }
            self.kept.write(batch)
        }
        fn load(&self) -> Result<Vec<LoadedJob>, StoreError> {
            self.kept.load()
        }
        fn ping(&self) -> Result<(), StoreError> {
            Ok(())
        }
    }

    /// A job as the journal sees it: what it was told was stored.
    struct Job {
        id: JobId,
        stored: Mutex<u64>,
    }

    impl Written for Job {
        fn job(&self) -> JobId {
            self.id
        }
        fn replay_capacity(&self) -> u64 {
            16
        }
        fn stored(&self, state: Arc<Snapshot>) {
            *self.stored.lock().expect("lock") = state.seq;
        }
        fn refused(&self, _lease: u64) -> bool {
            true
        }
    }

    fn state(id: JobId, seq: u64) -> Arc<Snapshot> {
        let mut state = Snapshot::pending(id, "ticker", 1);
        state.seq = seq;
        state.progress = seq as f64 / 100.0;
        Arc::new(state)
    }

    #[tokio::test(start_paused = true)]
    async fn an_outage_keeps_only_each_jobs_replay_bound_waiting_and_then_writes_it() {
        let store = Arc::new(Flaky::default());
        store.down.store(true, Ordering::Relaxed);
        let journal = Journal::start(store.clone());
        let id = JobId::new_random();
        let written = Arc::new(Job { id, stored: Mutex::new(0) });
        let job: Arc<dyn Written> = written.clone();
        let first = state(id, 1);
        let row = JobRow {
            id,
            kind: "ticker".into(),
            params: Value::Null,
            owner: None,
            state: first.clone(),
            checkpoint: None,
            cancel_requested: false,
            started_ms: None,
            ended_ms: None,
        };
        journal.create(job.clone(), row, JobEvent::state(first));
        for seq in 2..=10_000 {
            let next = state(id, seq);
            journal.event(job.clone(), 0, JobEvent::state(next.clone()), next);
            if seq % 1_000 == 0 {
                // Retries happen meanwhile, each taking in what came.
                tokio::time::sleep(Duration::from_secs(3)).await;
                assert!(journal.backlog() <= 16, "{} events wait after {seq}", journal.backlog());
            }
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(journal.healthy().is_err(), "the outage is told");
        assert!(journal.backlog() <= 16, "{} events wait", journal.backlog());

        store.down.store(false, Ordering::Relaxed);
        journal.flush().await;
        assert!(journal.healthy().is_ok());
        assert_eq!(journal.backlog(), 0);
        let loaded = store.load().expect("loads");
        let seqs: Vec<u64> = loaded[0].1.iter().map(JobEvent::seq).collect();
        assert_eq!(seqs, (9_985..=10_000).collect::<Vec<_>>(), "the newest events, as the replay bound keeps them");
        assert_eq!(loaded[0].0.state.seq, 10_000);
        assert_eq!(*written.stored.lock().expect("lock"), 10_000, "and then it is shown");
    }
}
