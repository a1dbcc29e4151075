//! The jobs this process holds, by id and by owner: what the engine and the log layer both
//! look jobs up in (so neither needs the other).
//!
//! Each owner has an index of its jobs (no look-up scans every job) and an announcement
//! channel that wakes only that owner's feeds when one of its jobs is started. An owner's
//! entry lives while the owner has jobs here or a feed watches it, no longer: a client that
//! opens feeds without ever starting a job leaves nothing behind.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use tokio::sync::watch;

use super::record::JobRecord;
use crate::model::JobId;

/// Why a job could not be added.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The table holds `max_jobs` and none of them has ended.
    Full,
    /// The owner has `max_active_per_owner` jobs that have not ended.
    OwnerLimit,
}

#[derive(Default)]
struct OwnerEntry {
    /// The owner's jobs, oldest first.
    jobs: VecDeque<JobId>,
    /// Counts the owner's announced jobs; feeds wait on it.
    started: Option<watch::Sender<u64>>,
}

#[derive(Default)]
struct Tables {
    jobs: HashMap<JobId, Arc<JobRecord>>,
    owners: HashMap<Arc<str>, OwnerEntry>,
}

/// Jobs by id, and by owner.
#[derive(Default)]
pub(crate) struct JobTable {
    tables: Mutex<Tables>,
}

impl Tables {
    fn remove(&mut self, id: JobId) -> Option<Arc<JobRecord>> {
        let record = self.jobs.remove(&id)?;
        if let Some(owner) = &record.owner {
            if let Some(entry) = self.owners.get_mut(owner) {
                entry.jobs.retain(|j| *j != id);
            }
            self.prune(owner);
        }
        Some(record)
    }

    /// Drops `owner`'s entry when it has no job here and no feed watches it.
    fn prune(&mut self, owner: &str) {
        let unused = self.owners.get(owner).is_some_and(|entry| {
            entry.jobs.is_empty() && entry.started.as_ref().is_none_or(|tx| tx.receiver_count() == 0)
        });
        if unused {
            self.owners.remove(owner);
        }
    }

    /// Forgets the ended job that ended first, to make room. Whether there was one.
    fn evict_oldest_ended(&mut self) -> Option<JobId> {
        let oldest = self.jobs.values().filter_map(|r| r.ended_ms().map(|t| (t, r.id))).min().map(|(_, id)| id)?;
        self.remove(oldest);
        Some(oldest)
    }
}

impl JobTable {
    fn lock(&self) -> MutexGuard<'_, Tables> {
        // Inserts, removals and look-ups only, never left half-done: never inconsistent.
        self.tables.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The job `id`, if held.
    pub(crate) fn get(&self, id: JobId) -> Option<Arc<JobRecord>> {
        self.lock().jobs.get(&id).cloned()
    }

    /// Adds a new job, checking (atomically with the insert, so concurrent starts cannot both
    /// pass) that its owner has fewer than `owner_limit` jobs not ended, and making room by
    /// forgetting the oldest ended job when `max_jobs` are held. Returns the ids forgotten.
    pub(crate) fn insert_checked(
        &self,
        record: Arc<JobRecord>,
        max_jobs: usize,
        owner_limit: usize,
    ) -> Result<Option<JobId>, Refusal> {
        let mut tables = self.lock();
        if let Some(owner) = &record.owner {
            let active = tables.owners.get(owner).map_or(0, |entry| {
                entry.jobs.iter().filter(|id| tables.jobs.get(id).is_some_and(|r| !r.has_ended())).count()
            });
            if active >= owner_limit {
                return Err(Refusal::OwnerLimit);
            }
        }
        let mut evicted = None;
        if tables.jobs.len() >= max_jobs {
            evicted = Some(tables.evict_oldest_ended().ok_or(Refusal::Full)?);
        }
        Self::insert_locked(&mut tables, record);
        Ok(evicted)
    }

    /// Adds a job read back from the store.
    pub(crate) fn insert(&self, record: Arc<JobRecord>) {
        Self::insert_locked(&mut self.lock(), record);
    }

    fn insert_locked(tables: &mut Tables, record: Arc<JobRecord>) {
        if let Some(owner) = &record.owner {
            tables.owners.entry(owner.clone()).or_default().jobs.push_back(record.id);
        }
        tables.jobs.insert(record.id, record);
    }

    /// Adds a job unless one with its id is held already; returns the one held.
    pub(crate) fn insert_or_get(&self, record: Arc<JobRecord>) -> Arc<JobRecord> {
        let mut tables = self.lock();
        if let Some(held) = tables.jobs.get(&record.id) {
            return held.clone();
        }
        Self::insert_locked(&mut tables, record.clone());
        record
    }

    /// Every job held.
    pub(crate) fn all(&self) -> Vec<Arc<JobRecord>> {
        self.lock().jobs.values().cloned().collect()
    }

    /// Forgets a job.
    pub(crate) fn remove(&self, id: JobId) -> Option<Arc<JobRecord>> {
        self.lock().remove(id)
    }

    /// Tells `owner`'s feeds that one of its jobs was started.
    pub(crate) fn announce(&self, owner: &str) {
        let tables = self.lock();
        if let Some(tx) = tables.owners.get(owner).and_then(|e| e.started.as_ref()) {
            tx.send_modify(|n| *n += 1);
        }
    }

    /// A watch that wakes when one of `owner`'s jobs is started; the owner's entry is kept
    /// while it lives (see [`OwnerWatch`]).
    pub(crate) fn watch_owner(self: &Arc<Self>, owner: &str) -> OwnerWatch {
        let owner: Arc<str> = Arc::from(owner);
        let mut tables = self.lock();
        let entry = tables.owners.entry(owner.clone()).or_default();
        let rx = entry.started.get_or_insert_with(|| watch::channel(0).0).subscribe();
        OwnerWatch { rx: Some(rx), owner, table: Arc::downgrade(self) }
    }

    /// How many owners have an entry.
    pub(crate) fn owner_count(&self) -> usize {
        self.lock().owners.len()
    }

    /// `owner`'s jobs, oldest first.
    pub(crate) fn of_owner(&self, owner: &str) -> Vec<Arc<JobRecord>> {
        let tables = self.lock();
        tables
            .owners
            .get(owner)
            .map(|e| e.jobs.iter().filter_map(|id| tables.jobs.get(id).cloned()).collect())
            .unwrap_or_default()
    }

    /// Forgets every ended job that ended at or before `ended_by` (ms). Returns their ids.
    pub(crate) fn sweep(&self, ended_by: u64) -> Vec<JobId> {
        let mut tables = self.lock();
        let expired: Vec<JobId> =
            tables.jobs.values().filter(|r| r.ended_ms().is_some_and(|t| t <= ended_by)).map(|r| r.id).collect();
        for id in &expired {
            tables.remove(*id);
        }
        expired
    }

    /// How many jobs are held.
    pub(crate) fn len(&self) -> usize {
        self.lock().jobs.len()
    }
}

/// Wakes when one of an owner's jobs is started (see [`JobEngine::watch_owner`]). While it
/// lives the owner's entry is kept; when the last watch of an owner with no job here goes,
/// the entry goes too.
///
/// [`JobEngine::watch_owner`]: super::JobEngine::watch_owner
pub struct OwnerWatch {
    rx: Option<watch::Receiver<u64>>,
    owner: Arc<str>,
    table: Weak<JobTable>,
}

impl OwnerWatch {
    /// Waits until one of the owner's jobs is started after the last call (or after the
    /// watch was made). `Err` only if the engine is gone.
    pub async fn changed(&mut self) -> Result<(), watch::error::RecvError> {
        match &mut self.rx {
            Some(rx) => rx.changed().await,
            None => std::future::pending().await,
        }
    }

    /// Whether a job of the owner's was started since the last look.
    pub fn has_changed(&self) -> bool {
        self.rx.as_ref().is_some_and(|rx| rx.has_changed().unwrap_or(false))
    }

    /// Marks every start so far as seen.
    pub fn mark_seen(&mut self) {
        if let Some(rx) = &mut self.rx {
            rx.borrow_and_update();
        }
    }
}

impl Drop for OwnerWatch {
    fn drop(&mut self) {
        drop(self.rx.take());
        if let Some(table) = self.table.upgrade() {
            table.lock().prune(&self.owner);
        }
    }
}
