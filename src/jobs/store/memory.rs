//! The in-memory store: the same promises as the others, kept in this process only. For tests,
//! and for people who want nothing on disk (`SSE_PROGRESS_STORE=memory`): a restart forgets
//! every job.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::{Batch, JobRow, JobStore, LoadedJob, StoreError};
use crate::jobs::event::JobEvent;
use crate::model::JobId;

/// Jobs kept in memory. One handle may be given to engine after engine (a test's "restart").
#[derive(Default)]
pub struct MemoryStore {
    data: Mutex<Data>,
}

#[derive(Default)]
struct Data {
    jobs: HashMap<JobId, JobRow>,
    events: HashMap<JobId, BTreeMap<u64, JobEvent>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Data> {
        // Every change below is checked before anything is modified: never half-done.
        self.data.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Checks a batch against what is kept before anything changes, so a refused batch changes
/// nothing (a transaction). Returns the jobs whose writes are refused (see [`super::follows`]).
fn check(data: &Data, batch: &Batch) -> Result<Vec<JobId>, StoreError> {
    for row in &batch.created {
        if data.jobs.contains_key(&row.id) {
            return Err(StoreError::Backend(format!("job {} exists already", row.id)));
        }
    }
    let mut refused = Vec::new();
    for write in &batch.writes {
        let created = batch.created.iter().any(|r| r.id == write.id);
        if !created && !data.jobs.contains_key(&write.id) {
            refused.push(write.id);
            continue;
        }
        let kept = data.events.get(&write.id).and_then(|e| e.keys().next_back().copied()).unwrap_or(0);
        let in_order = write.events.windows(2).all(|pair| pair[1].seq() == pair[0].seq() + 1);
        let follows = write.events.first().is_none_or(|first| super::follows(kept, first.seq(), write.forget_through));
        if !(in_order && follows) {
            refused.push(write.id);
        }
    }
    Ok(refused)
}

impl JobStore for MemoryStore {
    fn describe(&self) -> String {
        "memory".into()
    }

    fn outlives_process(&self) -> bool {
        false
    }

    fn write(&self, batch: &Batch) -> Result<Vec<JobId>, StoreError> {
        let mut data = self.lock();
        let refused = check(&data, batch)?;
        for row in &batch.created {
            data.jobs.insert(row.id, row.clone());
        }
        for write in batch.writes.iter().filter(|w| !refused.contains(&w.id)) {
            let events = data.events.entry(write.id).or_default();
            for event in &write.events {
                events.insert(event.seq(), event.clone());
            }
            let keep_from = write.forget_through + 1;
            if events.keys().next().is_some_and(|first| *first < keep_from) {
                *events = events.split_off(&keep_from);
            }
            let Some(row) = data.jobs.get_mut(&write.id) else { continue };
            if let Some(state) = &write.state {
                row.state = state.clone();
                if state.status.is_terminal() {
                    row.ended_ms = Some(state.ts);
                }
            }
            if row.started_ms.is_none() {
                row.started_ms = write.started_ms;
            }
            if let Some(checkpoint) = &write.checkpoint {
                row.checkpoint = Some(checkpoint.clone());
            }
            row.cancel_requested |= write.cancel_requested;
        }
        for id in &batch.removed {
            data.jobs.remove(id);
            data.events.remove(id);
        }
        Ok(refused)
    }

    fn load(&self) -> Result<Vec<LoadedJob>, StoreError> {
        let data = self.lock();
        let mut jobs: Vec<LoadedJob> = data
            .jobs
            .values()
            .map(|row| {
                let events = data.events.get(&row.id).map(|e| e.values().cloned().collect()).unwrap_or_default();
                (row.clone(), events)
            })
            .collect();
        jobs.sort_by_key(|(row, _)| (row.state.created, row.id));
        Ok(jobs)
    }

    fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
