//! The bound on running jobs: up to `max_running` run at once, up to `max_queued` more wait in
//! order (`pending`, with their position), and anything past that is refused.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::record::JobRecord;
use super::registry::JobFuture;
use super::ProgressReporter;
use crate::model::JobId;

/// A job that has been accepted and waits for a slot (or is about to take one).
pub(crate) struct Admitted {
    pub(crate) record: Arc<JobRecord>,
    pub(crate) reporter: ProgressReporter,
    pub(crate) job: JobFuture,
}

/// What [`Scheduler::admit`] decided.
pub(crate) enum Admission {
    /// A slot was free: run it now.
    Run(Admitted),
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
    queue: VecDeque<Admitted>,
}

/// Tells every waiting job its (new) place in the queue.
fn renumber(queue: &VecDeque<Admitted>) {
    for (i, waiting) in queue.iter().enumerate() {
        let position = u32::try_from(i + 1).unwrap_or(u32::MAX);
        waiting.record.apply(|s| {
            s.queue_position = Some(position);
            s.message = format!("Queued: {} ahead", position - 1);
        });
    }
}

impl Scheduler {
    pub(crate) fn new(max_running: usize, max_queued: usize) -> Self {
        Self {
            max_running: max_running.max(1),
            max_queued,
            state: Mutex::new(State {
                running: 0,
                queue: VecDeque::new(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Counters and a queue, updated without panicking in between: never inconsistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether a new job would be accepted now (it runs or finds a place in the queue).
    pub(crate) fn has_room(&self) -> bool {
        let state = self.lock();
        state.running < self.max_running || state.queue.len() < self.max_queued
    }

    /// The configured bounds, for error messages.
    pub(crate) fn bounds(&self) -> (usize, usize) {
        (self.max_running, self.max_queued)
    }

    /// Runs the job at once when a slot is free, else queues it. `Err` gives the job back when
    /// the queue is full too.
    pub(crate) fn admit(&self, job: Admitted) -> Result<Admission, Admitted> {
        let mut state = self.lock();
        if state.running < self.max_running {
            state.running += 1;
            return Ok(Admission::Run(job));
        }
        if state.queue.len() >= self.max_queued {
            return Err(job);
        }
        state.queue.push_back(job);
        renumber(&state.queue);
        Ok(Admission::Queued)
    }

    /// A running job ended: its slot goes to the first waiting job, returned to be run.
    pub(crate) fn release(&self) -> Option<Admitted> {
        let mut state = self.lock();
        match state.queue.pop_front() {
            Some(next) => {
                next.record.apply(|s| s.queue_position = None);
                renumber(&state.queue);
                Some(next)
            }
            None => {
                state.running = state.running.saturating_sub(1);
                None
            }
        }
    }

    /// Takes a waiting job out of the queue (it was cancelled before it started).
    pub(crate) fn withdraw(&self, id: JobId) -> Option<Admitted> {
        let mut state = self.lock();
        let at = state.queue.iter().position(|w| w.record.id == id)?;
        let job = state.queue.remove(at);
        renumber(&state.queue);
        job
    }

    /// Empties the queue (shutdown).
    pub(crate) fn drain(&self) -> Vec<Admitted> {
        self.lock().queue.drain(..).collect()
    }
}
