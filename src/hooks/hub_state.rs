//! What the tab's event hub keeps of each job it has heard of: the last sequence number seen
//! (where a new stream resumes), the newest state, the recent log lines, whether it ended, and
//! how many of the tab's views follow it. Pure bookkeeping with no browser API, so it is tested
//! natively; `event_hub` drives it and owns the connection and the other tabs.
//!
//! # Bounds
//! A tab may stay open for days and see thousands of jobs; what it keeps does not grow with them:
//! - a job that ended and that no view of the tab follows stays whole for a while, so a page
//!   opened on it next shows it at once; past [`KEPT_ENDED_JOBS`] such jobs the one that ended
//!   first (by the server's time) is forgotten;
//! - past [`KEPT_LIVE_JOBS`] jobs not ended and not followed, the one heard of least recently
//!   is forgotten (a job the server dropped while the tab was offline never says it ended);
//! - a job keeps at most [`KEPT_LOG_LINES`] lines;
//! - the resume query lists only jobs that may still send events, at most
//!   [`MAX_RESUME_POINTS`] of them (about 3.6 KiB at most, far below the server's 16 KiB
//!   head). The server starts any job left out with a `reset` carrying its current state.
//!
//! A job a view follows is never forgotten, ended or not.

use std::cmp::Reverse;
use std::collections::{HashMap, HashSet, VecDeque};

use crate::model::{JobId, LogLine, Snapshot};

/// Log lines kept per job for views that subscribe late (and for other tabs).
pub(crate) const KEPT_LOG_LINES: usize = 500;
/// Ended jobs no view follows, kept whole (state and lines) for pages opened on them next.
pub(crate) const KEPT_ENDED_JOBS: usize = 32;
/// Jobs not ended that no view follows; far more than the server lets one owner run (16).
pub(crate) const KEPT_LIVE_JOBS: usize = 256;
/// Most `JOB:SEQ` points in a resume query: 64 × 57 bytes at most.
pub(crate) const MAX_RESUME_POINTS: usize = 64;
/// Ended jobs remembered by id after they were forgotten, so that a tab that missed such a
/// job's end can still be told it (see [`CatchUp::Resync`]).
const REMEMBERED_FORGOTTEN: usize = 1024;

/// When a job ended, to forget the earliest first: its last state's server time, then the
/// order its end arrived in.
type EndOrder = (u64, u64);

/// What the tab keeps of one job.
#[derive(Debug)]
struct Kept {
    /// The last sequence number seen.
    cursor: u64,
    /// The sequence number after which `logs` holds every line up to `cursor`: from where this
    /// tab can replay the job exactly (0: from its first event).
    complete: u64,
    /// Its newest lines, oldest first, at most [`KEPT_LOG_LINES`].
    logs: VecDeque<LogLine>,
    /// Its newest state; `None` before its first.
    state: Option<Snapshot>,
    /// Set once its `end` arrived.
    ended: Option<EndOrder>,
    /// Subscriptions of this tab to this job alone.
    watchers: usize,
    /// When it last had news (the hub's own clock), to keep the busiest first.
    heard: u64,
}

impl Kept {
    fn new(cursor: u64, complete: u64, heard: u64) -> Self {
        Self { cursor, complete, logs: VecDeque::new(), state: None, ended: None, watchers: 0, heard }
    }

    fn lines_after(&self, seen: u64) -> Vec<LogLine> {
        self.logs.iter().filter(|l| l.seq > seen).cloned().collect()
    }
}

/// What a new subscription to a job gets from what the tab holds.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Replay {
    /// The lines after its point, oldest first.
    pub lines: Vec<LogLine>,
    /// The newest state, when newer than its point.
    pub state: Option<Snapshot>,
    /// Whether the job ended.
    pub ended: bool,
}

/// What a state event was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Heard {
    /// Listeners get it: it is after the job's cursor, or newer than the kept state.
    pub news: bool,
    /// It is now the job's newest state (the hub's `jobs` signal shows it).
    pub newest: bool,
}

/// The leader's answer about one job another tab follows.
#[derive(Debug, PartialEq)]
pub(crate) enum CatchUp {
    /// Not heard of here: its events are still to come, to every tab.
    Unknown,
    /// This tab keeps too little of it: the next stream resends it from the other tab's point.
    Resync,
    /// What the other tab missed, from what this tab keeps.
    Missed {
        /// Its lines after the other tab's point.
        lines: Vec<LogLine>,
        /// Its newest state, if newer than the other tab's point (boxed: the other variants
        /// are small).
        state: Option<Box<Snapshot>>,
        /// Its last sequence number, if it ended and the other tab did not see the end.
        end: Option<u64>,
    },
}

/// Everything the tab's hub keeps of the jobs it has heard of. Empty by default.
#[derive(Debug, Default)]
pub(crate) struct HubState {
    jobs: HashMap<JobId, Kept>,
    /// Leader: jobs the next stream resumes from an earlier point than this tab's cursor,
    /// because another tab missed events this tab no longer keeps.
    rewind: HashMap<JobId, u64>,
    /// Ended jobs forgotten lately, oldest first (at most [`REMEMBERED_FORGOTTEN`]).
    forgotten: VecDeque<JobId>,
    forgotten_set: HashSet<JobId>,
    /// Jobs forgotten since [`take_forgotten`](Self::take_forgotten) was last called.
    dropped: Vec<JobId>,
    /// Counts events and ends, to order them.
    clock: u64,
}

impl HubState {
    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    /// Records that `seq` of `job` arrived; false when it is not news. `gap`: events before
    /// it may be missing (a reset).
    fn advance(&mut self, job: JobId, seq: u64, gap: bool) -> bool {
        let heard = self.tick();
        match self.jobs.get_mut(&job) {
            Some(kept) if seq <= kept.cursor => return false,
            Some(kept) => {
                if gap {
                    kept.complete = kept.complete.max(seq);
                }
                kept.cursor = seq;
                kept.heard = heard;
            }
            None => {
                // The first event heard of a job: from its start unless it is a reset.
                let from = if gap { seq } else { seq.saturating_sub(1) };
                self.jobs.insert(job, Kept::new(seq, from, heard));
                self.trim();
            }
        }
        true
    }

    /// A state event of the stream (`reset`: the events before it may be missing).
    pub(crate) fn on_state(&mut self, state: &Snapshot, reset: bool) -> Heard {
        let news = self.advance(state.id, state.seq, reset);
        let Some(kept) = self.jobs.get_mut(&state.id) else { return Heard { news, newest: false } };
        let newest = kept.state.as_ref().is_none_or(|s| s.seq < state.seq);
        if newest {
            kept.state = Some(state.clone());
        }
        Heard { news: news || newest, newest }
    }

    /// A log line of `job`; true when it is news.
    pub(crate) fn on_log(&mut self, job: JobId, line: &LogLine) -> bool {
        if !self.advance(job, line.seq, false) {
            return false;
        }
        if let Some(kept) = self.jobs.get_mut(&job) {
            kept.logs.push_back(line.clone());
            if kept.logs.len() > KEPT_LOG_LINES {
                if let Some(gone) = kept.logs.pop_front() {
                    kept.complete = kept.complete.max(gone.seq);
                }
            }
        }
        true
    }

    /// `job` ended at `seq`: nothing more comes. Forgets the earliest ended jobs no view follows.
    pub(crate) fn on_end(&mut self, job: JobId, seq: u64) {
        let order = self.tick();
        let kept = self.jobs.entry(job).or_insert_with(|| Kept::new(seq, seq, order));
        let ts = kept.state.as_ref().map_or(0, |s| s.ts);
        kept.ended.get_or_insert((ts, order));
        self.trim();
    }

    /// A view of this tab subscribes to `job` after its sequence `seen`: what the tab holds
    /// for it, or `None` when the tab no longer has all of it (the job is rewound to `seen`, so
    /// the stream, or the leader, sends it again).
    pub(crate) fn subscribe(&mut self, job: JobId, seen: u64) -> Option<Replay> {
        let heard = self.tick();
        let covered = self.jobs.get(&job).is_none_or(|k| k.complete <= seen);
        let kept = self.jobs.entry(job).or_insert_with(|| Kept::new(seen, seen, heard));
        kept.watchers += 1;
        if !covered {
            self.rewind_to(job, seen);
            return None;
        }
        let replay = Replay {
            lines: kept.lines_after(seen),
            state: kept.state.clone().filter(|s| s.seq > seen),
            ended: kept.ended.is_some(),
        };
        if seen > kept.cursor {
            // The view has events this tab never kept.
            kept.cursor = seen;
            kept.complete = seen;
        }
        Some(replay)
    }

    /// A view of this tab stops following `job`; an ended job may then be forgotten.
    pub(crate) fn unsubscribe(&mut self, job: JobId) {
        if let Some(kept) = self.jobs.get_mut(&job) {
            kept.watchers = kept.watchers.saturating_sub(1);
            if kept.watchers == 0 && kept.ended.is_some() {
                self.trim();
            }
        }
    }

    /// Forgets what this tab holds of `job` after `seen`: its events (its end included) come
    /// again from there.
    fn rewind_to(&mut self, job: JobId, seen: u64) {
        if let Some(kept) = self.jobs.get_mut(&job) {
            kept.cursor = seen;
            kept.complete = seen;
            kept.ended = None;
            kept.logs.retain(|l| l.seq <= seen);
        }
    }

    /// The newest state of `job` and all its lines, when this tab has every event of it from
    /// the first.
    pub(crate) fn whole(&self, job: JobId) -> Option<(Snapshot, Vec<LogLine>)> {
        let kept = self.jobs.get(&job).filter(|k| k.complete == 0)?;
        let state = kept.state.clone()?;
        let lines = kept.logs.iter().filter(|l| l.seq > 0 && l.seq <= state.seq).cloned().collect();
        Some((state, lines))
    }

    /// Every job kept, with its cursor and whether it ended: what a follower tells the leader.
    pub(crate) fn cursors(&self) -> Vec<(JobId, u64, bool)> {
        self.jobs.iter().map(|(job, k)| (*job, k.cursor, k.ended.is_some())).collect()
    }

    /// Leader: what another tab that has `job` up to `seen` (and its end, if `saw_end`) missed.
    pub(crate) fn catch_up(&mut self, job: JobId, seen: u64, saw_end: bool) -> CatchUp {
        let Some(kept) = self.jobs.get(&job) else {
            // Forgotten after it ended, but that tab never saw the end: the stream tells it. Once
            // only: a job the server no longer has would never answer.
            if !saw_end && self.forgotten_set.remove(&job) {
                self.forgotten.retain(|j| *j != job);
                self.rewind_from(job, seen);
                return CatchUp::Resync;
            }
            return CatchUp::Unknown;
        };
        if kept.cursor > seen && kept.complete > seen {
            self.rewind_from(job, seen);
            return CatchUp::Resync;
        }
        let lines = if kept.cursor > seen { kept.lines_after(seen) } else { Vec::new() };
        let state = kept.state.clone().filter(|s| s.seq > seen).map(Box::new);
        let end = (kept.ended.is_some() && !saw_end).then_some(kept.cursor);
        CatchUp::Missed { lines, state, end }
    }

    fn rewind_from(&mut self, job: JobId, seen: u64) {
        let point = self.rewind.entry(job).or_insert(seen);
        *point = (*point).min(seen);
    }

    /// Where the next stream resumes: `JOB:SEQ` of the jobs that may still send events, and of
    /// those another tab needs again; at most [`MAX_RESUME_POINTS`], the rewound ones first,
    /// then those a view follows, then the most recently heard of.
    pub(crate) fn resume_points(&self) -> Vec<(JobId, u64)> {
        // (rank, recency, job, point): lower ranks first.
        let mut points: HashMap<JobId, (u8, Reverse<u64>, u64)> = self
            .jobs
            .iter()
            .filter(|(_, k)| k.ended.is_none())
            .map(|(job, k)| (*job, (if k.watchers > 0 { 1 } else { 2 }, Reverse(k.heard), k.cursor)))
            .collect();
        for (job, seq) in &self.rewind {
            let heard = self.jobs.get(job).map_or(0, |k| k.heard);
            let point = points.entry(*job).or_insert((0, Reverse(heard), *seq));
            point.0 = 0;
            point.2 = point.2.min(*seq);
        }
        let mut points: Vec<_> = points.into_iter().filter(|(_, p)| p.2 > 0).collect();
        points.sort_unstable_by_key(|(job, (rank, heard, _))| (*rank, *heard, *job));
        points.into_iter().take(MAX_RESUME_POINTS).map(|(job, (_, _, seq))| (job, seq)).collect()
    }

    /// [`resume_points`](Self::resume_points) as the value of `after=` (empty for none).
    pub(crate) fn resume_query(&self) -> String {
        let points: Vec<String> = self.resume_points().iter().map(|(job, seq)| format!("{job}:{seq}")).collect();
        points.join(",")
    }

    /// A new stream opened from [`resume_points`](Self::resume_points): the rewinds are served.
    pub(crate) fn opened(&mut self) {
        self.rewind.clear();
    }

    /// The jobs forgotten since the last call, for views that mirror what is kept.
    pub(crate) fn take_forgotten(&mut self) -> Vec<JobId> {
        std::mem::take(&mut self.dropped)
    }

    /// Forgets the ended jobs past [`KEPT_ENDED_JOBS`] and the live ones past
    /// [`KEPT_LIVE_JOBS`] that no view follows.
    fn trim(&mut self) {
        let mut ended = Vec::new();
        let mut live = Vec::new();
        for (job, kept) in self.jobs.iter().filter(|(_, k)| k.watchers == 0) {
            match kept.ended {
                Some(order) => ended.push((order, *job)),
                None => live.push(((kept.heard, 0), *job)),
            }
        }
        for (mut unfollowed, limit) in [(ended, KEPT_ENDED_JOBS), (live, KEPT_LIVE_JOBS)] {
            if unfollowed.len() > limit {
                unfollowed.sort_unstable();
                let extra = unfollowed.len() - limit;
                for (_, job) in unfollowed.into_iter().take(extra) {
                    self.forget(job);
                }
            }
        }
    }

    fn forget(&mut self, job: JobId) {
        let Some(kept) = self.jobs.remove(&job) else { return };
        self.dropped.push(job);
        if kept.ended.is_some() && self.forgotten_set.insert(job) {
            self.forgotten.push_back(job);
            if self.forgotten.len() > REMEMBERED_FORGOTTEN {
                if let Some(old) = self.forgotten.pop_front() {
                    self.forgotten_set.remove(&old);
                }
            }
        }
    }

    /// How many jobs are kept.
    #[cfg(test)]
    fn kept_jobs(&self) -> usize {
        self.jobs.len()
    }

    /// How many log lines are kept, over all jobs.
    #[cfg(test)]
    fn kept_lines(&self) -> usize {
        self.jobs.values().map(|k| k.logs.len()).sum()
    }
}

#[cfg(test)]
mod tests;
