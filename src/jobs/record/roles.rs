//! A record's role in a store several instances share, and how it changes in place: *held*
//! (this instance runs the job under a lease) or a *mirror* of a job held elsewhere or waiting
//! in the shared queue. Every change of holder changes the run number, so a superseded run
//! writes nothing more.

use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};

use tokio_util::sync::CancellationToken;

use super::replay::RecordState;
use super::JobRecord;
use crate::jobs::event::JobEvent;
use crate::jobs::journal::Written;
use crate::jobs::store::LoadedJob;
use crate::model::{JobId, Snapshot};

impl JobRecord {
    /// A shared store admitted this new job (its first event is stored): show it. With a
    /// `lease` this instance runs it; with none (0) it waits in the shared queue and the
    /// record mirrors it until some instance claims it.
    pub(crate) fn admitted(&self, lease: u64) {
        self.lease.store(lease, Ordering::Relaxed);
        self.publish(self.current());
        if lease == 0 {
            self.mirror.store(true, Ordering::Relaxed);
        }
    }

    /// This instance now holds the job, under `token`, as the store keeps it (`job`): the
    /// record takes that state (anything newer a mirror had cannot exist: the store is where
    /// it came from) and a fresh stop signal, and writes from now on. Subscribers stay.
    pub(crate) fn adopt(&self, job: LoadedJob, token: u64, cancel: CancellationToken) {
        let (row, events) = job;
        let seq = {
            let mut state = self.lock();
            *state = RecordState::of(&row, events, true, self.ctx.limits);
            // A run of an earlier lease, if one is still going, stops for good and writes nothing more.
            self.run.fetch_add(1, Ordering::Relaxed);
            std::mem::replace(&mut *self.cancel.lock().unwrap_or_else(PoisonError::into_inner), cancel).cancel();
            self.cancel_requested.store(row.cancel_requested, Ordering::Relaxed);
            self.lease.store(token, Ordering::Relaxed);
            self.mirror.store(false, Ordering::Relaxed);
            state.published_seq()
        };
        self.seq_tx.send_replace(seq);
    }

    /// Another instance holds the job now: stop its code, forget what was not written (no one
    /// was shown it), and follow the store from here on. Whether it was held until now (once
    /// only, however many parts of the engine find out).
    pub(crate) fn lose(&self) -> bool {
        {
            let mut state = self.lock();
            if self.mirror.swap(true, Ordering::Relaxed) {
                return false;
            }
            self.run.fetch_add(1, Ordering::Relaxed);
            self.lease.store(0, Ordering::Relaxed);
            state.rewind_to_published();
        }
        self.cancel_token().cancel();
        true
    }

    /// The store will take nothing more of this job and no one else holds it: its code stops,
    /// it counts as ended (it holds no place in any bound), and its subscribers end where they
    /// are. Whether it was going on until now.
    fn give_up(&self) -> bool {
        {
            let mut state = self.lock();
            if state.forgotten {
                return false;
            }
            self.run.fetch_add(1, Ordering::Relaxed);
            state.rewind_to_published();
            state.forgotten = true;
            state.ended_ms.get_or_insert_with(|| self.ctx.clock.now_ms());
        }
        self.cancel_token().cancel();
        self.seq_tx.send_modify(|_| {});
        true
    }

    /// For a mirror: `events` were appended in the store (its newest `state` for when they do
    /// not follow on what the record has, because the store trimmed the ones between). Shows
    /// them; subscribers whose point fell out of the log get a reset.
    pub(crate) fn absorb(&self, events: Vec<JobEvent>, state: Snapshot) {
        let seq = {
            let mut s = self.lock();
            if !self.is_mirror() {
                return;
            }
            s.absorb(events, state, self.ctx.limits);
            s.published_seq()
        };
        self.seq_tx.send_if_modified(|old| {
            let moved = *old != seq;
            *old = seq;
            moved
        });
    }

    /// For a mirror: the store forgot the job; its subscribers end where they are.
    pub(crate) fn forgotten(&self) {
        self.lock().forgotten = true;
        self.seq_tx.send_modify(|_| {});
    }

    /// Someone asked, through the shared store, to stop the job this instance runs: the
    /// request is stored already; wake the job's code.
    pub(crate) fn cancel_from_store(&self) {
        self.cancel_requested.store(true, Ordering::Relaxed);
        self.cancel_token().cancel();
    }
}

impl Written for JobRecord {
    fn job(&self) -> JobId {
        self.id
    }

    fn replay_capacity(&self) -> u64 {
        u64::try_from(self.ctx.limits.replay_capacity).unwrap_or(u64::MAX)
    }

    fn stored(&self, state: Arc<Snapshot>) {
        self.publish(state);
    }

    fn refused(&self, lease: u64) -> bool {
        // Only the lease the refused writes were made under is lost: a record that was taken
        // back since (a newer lease) keeps it.
        if lease != self.lease() {
            return false;
        }
        if lease == 0 {
            // A store one process owns refused it (it does not keep the job as this record
            // thinks): nobody else will write it either. It ends where it was shown.
            return self.give_up();
        }
        self.lose()
    }
}
