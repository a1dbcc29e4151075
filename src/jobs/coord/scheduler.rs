//! The bound on running jobs: up to `max_running` run at once, up to `max_queued` more wait in
//! order, and anything past that is refused.
//!
//! The queue holds job ids, not futures: a job is built from its stored kind and params when
//! it gets a slot, so a restarted engine queues the jobs it reads back exactly like new ones.
//! A waiting job's place is worked out when someone asks ([`Scheduler::position`]), never
//! written into every waiting job when the queue moves.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::model::JobId;

/// What [`Scheduler::admit`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    /// A slot was free and is now the job's: run it.
    Run,
    /// It waits in the queue.
    Queued,
}

pub(crate) struct Scheduler {
    max_running: usize,
    max_queued: usize,
    state: Mutex<State>,
}

struct State {
    running: usize,
    queue: VecDeque<JobId>,
}

impl Scheduler {
    pub(crate) fn new(max_running: usize, max_queued: usize) -> Self {
        Self {
            max_running: max_running.max(1),
            max_queued,
            state: Mutex::new(State { running: 0, queue: VecDeque::new() }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A counter and a queue, updated without panicking in between: never inconsistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The configured bounds, for error messages.
    pub(crate) fn bounds(&self) -> (usize, usize) {
        (self.max_running, self.max_queued)
    }

    /// Gives the job a slot when one is free, else a place in the queue; `None` when the queue
    /// is full too. With `force` the job is queued even past the bound (jobs read back from
    /// the store were accepted once and are never refused).
    pub(crate) fn admit(&self, id: JobId, force: bool) -> Option<Admission> {
        let mut state = self.lock();
        if state.running < self.max_running {
            state.running += 1;
            return Some(Admission::Run);
        }
        if state.queue.len() >= self.max_queued && !force {
            return None;
        }
        state.queue.push_back(id);
        Some(Admission::Queued)
    }

    /// Takes a slot for a job that must run now (one resumed after a restart), past the bound
    /// if need be.
    pub(crate) fn occupy(&self) {
        self.lock().running += 1;
    }

    /// A running job ended: its slot goes to the first waiting job, returned to be run.
    pub(crate) fn release(&self) -> Option<JobId> {
        let mut state = self.lock();
        let next = state.queue.pop_front();
        if next.is_none() {
            state.running = state.running.saturating_sub(1);
        }
        next
    }

    /// Takes a waiting job out of the queue (it was cancelled before it started). Whether it
    /// was waiting.
    pub(crate) fn withdraw(&self, id: JobId) -> bool {
        let mut state = self.lock();
        let Some(at) = state.queue.iter().position(|w| *w == id) else { return false };
        state.queue.remove(at);
        true
    }

    /// The job's place in the queue, 1 being next to start; `None` when it is not waiting.
    pub(crate) fn position(&self, id: JobId) -> Option<u32> {
        let state = self.lock();
        let at = state.queue.iter().position(|w| *w == id)?;
        Some(u32::try_from(at + 1).unwrap_or(u32::MAX))
    }

    /// How many jobs wait.
    pub(crate) fn queued(&self) -> usize {
        self.lock().queue.len()
    }

    /// Empties the queue (shutdown), returning the jobs that were waiting.
    pub(crate) fn drain(&self) -> Vec<JobId> {
        self.lock().queue.drain(..).collect()
    }
}
