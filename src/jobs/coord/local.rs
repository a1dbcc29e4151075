//! Coordination when one process owns its store (memory, SQLite): the bound on running jobs
//! and the queue are this process's ([`Scheduler`]), admission checks the owner limit and
//! `max_jobs` against the table, and every job kept is in the table, so nothing is looked up
//! anywhere else.

use std::sync::{Arc, Mutex, PoisonError, Weak};

use futures::future::{self, BoxFuture, FutureExt};

use super::scheduler::{Admission, Scheduler};
use super::{Admitted, Call, CoordStats, Coordinator, Host};
use crate::jobs::journal::Journal;
use crate::jobs::record::JobRecord;
use crate::jobs::store::shared::{CancelReply, Token};
use crate::jobs::store::LoadedJob;
use crate::jobs::table::{JobTable, Refusal};
use crate::jobs::{EngineConfig, StartError};
use crate::model::JobId;

/// This process's bounds and queue.
pub(crate) struct Local {
    scheduler: Scheduler,
    table: Arc<JobTable>,
    journal: Journal,
    max_jobs: usize,
    max_active_per_owner: usize,
    /// Jobs read back from the store that are to run, (id, resumed), until [`Coordinator::begin`].
    recovered: Mutex<Vec<(JobId, bool)>>,
}

impl Local {
    /// Coordination for `config`'s bounds; `recovered` are the jobs a previous process left
    /// to run (resumed ones first, then waiting ones in their old order).
    pub(crate) fn new(
        config: &EngineConfig,
        table: Arc<JobTable>,
        journal: Journal,
        recovered: Vec<(JobId, bool)>,
    ) -> Self {
        Self {
            scheduler: Scheduler::new(config.max_running, config.max_queued),
            table,
            journal,
            max_jobs: config.max_jobs,
            max_active_per_owner: config.max_active_per_owner,
            recovered: Mutex::new(recovered),
        }
    }
}

impl Coordinator for Local {
    fn admit(&self, record: Arc<JobRecord>) -> BoxFuture<'static, Result<Admitted, StartError>> {
        let id = record.id;
        let admitted = match self.table.insert_checked(record.clone(), self.max_jobs, self.max_active_per_owner) {
            Ok(evicted) => {
                self.journal.remove(evicted.into_iter().collect());
                match self.scheduler.admit(id, false) {
                    Some(admission) => {
                        // Written before anything the job does: the journal keeps the order it is told things.
                        record.create();
                        Ok(match admission {
                            Admission::Run => Admitted::Run(0),
                            Admission::Queued => Admitted::Queued,
                        })
                    }
                    None => {
                        self.table.remove(id);
                        let (running, queued) = self.scheduler.bounds();
                        Err(StartError::QueueFull { running, queued })
                    }
                }
            }
            Err(Refusal::OwnerLimit) => Err(StartError::OwnerLimit { limit: self.max_active_per_owner }),
            Err(Refusal::Full) => Err(StartError::AtCapacity { limit: self.max_jobs }),
        };
        future::ready(admitted).boxed()
    }

    fn lookup(&self, _id: JobId) -> Call<Option<LoadedJob>> {
        // Every job this process keeps is in its table.
        future::ready(Ok(None)).boxed()
    }

    fn refresh(&self, _behind: Vec<(Arc<JobRecord>, u64)>) -> BoxFuture<'static, ()> {
        future::ready(()).boxed()
    }

    fn owner_jobs(&self, owner: &str) -> Call<Vec<JobId>> {
        let ids = self.table.of_owner(owner).iter().map(|r| r.id).collect();
        future::ready(Ok(ids)).boxed()
    }

    fn queue_position(&self, id: JobId) -> Call<Option<u32>> {
        future::ready(Ok(self.scheduler.position(id))).boxed()
    }

    fn withdraw(&self, id: JobId) -> bool {
        self.scheduler.withdraw(id)
    }

    fn cancel_elsewhere(&self, _id: JobId) -> Call<CancelReply> {
        // Nothing runs elsewhere: every job kept is held here.
        future::ready(Ok(CancelReply::Unknown)).boxed()
    }

    fn hold(&self, _id: JobId, _token: Token) {}

    fn run_over(&self, _id: JobId, _lease: Token, _give_back: bool) -> Option<JobId> {
        self.scheduler.release()
    }

    fn expire(&self, _ended_by: u64, swept: Vec<JobId>) -> Call<usize> {
        let count = swept.len();
        self.journal.remove(swept);
        future::ready(Ok(count)).boxed()
    }

    fn stats(&self) -> BoxFuture<'static, CoordStats> {
        future::ready(CoordStats { queued: self.scheduler.queued() as u64, shared: None }).boxed()
    }

    fn begin(&self, host: Weak<dyn Host>) -> usize {
        let jobs = std::mem::take(&mut *self.recovered.lock().unwrap_or_else(PoisonError::into_inner));
        let Some(host) = host.upgrade() else { return 0 };
        let count = jobs.len();
        let (resumed, waiting): (Vec<_>, Vec<_>) = jobs.into_iter().partition(|(_, resumed)| *resumed);
        for (id, _) in resumed {
            // Accepted once already: it runs, past the bound if need be.
            self.scheduler.occupy();
            host.launch(id, true);
        }
        for (id, _) in waiting {
            if self.scheduler.admit(id, true) == Some(Admission::Run) {
                host.launch(id, false);
            }
        }
        count
    }

    fn drain(&self) -> Vec<JobId> {
        self.scheduler.drain()
    }

    fn release_all(&self) -> BoxFuture<'static, ()> {
        future::ready(()).boxed()
    }
}
