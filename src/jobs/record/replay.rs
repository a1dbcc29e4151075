//! One job's memory, as plain data: its newest and its published state, and the bounded
//! replay log of its newest events. No locks, no channels: [`JobRecord`](super::JobRecord)
//! holds it under its lock, and the tests below drive it directly.

use std::collections::VecDeque;
use std::sync::Arc;

use serde_json::Value;

use crate::jobs::event::{line_size, JobEvent};
use crate::jobs::store::JobRow;
use crate::model::{JobStatus, LogLine, Snapshot};

/// What a subscriber at some cursor should get next.
#[derive(Debug)]
pub(crate) enum CatchUp {
    /// The published events after the cursor, oldest first.
    Events(Vec<JobEvent>),
    /// The last events there will be: the job is forgotten (or given up) without a terminal
    /// event, so nothing follows these.
    Last(Vec<JobEvent>),
    /// The cursor is not in the log any more (or never was): here is the whole state, whose
    /// `seq` is the newest published event's.
    Reset(Arc<Snapshot>),
    /// Nothing new; `ended` says whether anything ever will be.
    UpToDate { ended: bool },
}

/// The bounds of one job's memory.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RecordLimits {
    /// Events kept for replay.
    pub(crate) replay_capacity: usize,
    /// Bytes the events kept for replay may hold, about (at least the newest is kept).
    pub(crate) replay_bytes: usize,
    /// Log lines accepted over the job's life.
    pub(crate) max_log_lines: usize,
    /// Bytes of log messages and fields accepted over the job's life.
    pub(crate) max_log_bytes: usize,
}

pub(super) struct RecordState {
    /// The job's newest state, perhaps not written yet; its `seq` is the newest event's.
    pub(super) current: Arc<Snapshot>,
    /// The newest state written to the store: what everyone is shown. `None` until the job's
    /// first event is written.
    pub(super) published: Option<Arc<Snapshot>>,
    /// The newest events, at most `replay_capacity` of them, oldest first (the newest may not
    /// be published yet).
    pub(super) log: VecDeque<JobEvent>,
    /// What the events in `log` hold, in bytes (about).
    pub(super) log_size: usize,
    /// Log lines and bytes accepted so far.
    pub(super) log_lines: usize,
    pub(super) log_bytes: usize,
    /// Log lines refused for the bounds, and when that was last told (ms).
    pub(super) logs_dropped: u64,
    pub(super) drop_told_at: Option<u64>,
    /// When the job started running and when it ended (ms since the epoch).
    pub(super) started_ms: Option<u64>,
    pub(super) ended_ms: Option<u64>,
    /// The newest checkpoint the job's code saved.
    pub(super) checkpoint: Option<Value>,
    /// For a mirror: the store no longer keeps the job (its retention passed elsewhere), so
    /// nothing more will come.
    pub(super) forgotten: bool,
}

impl RecordState {
    /// The state of a job as `row` and its `events` say, the newest events kept as `limits`
    /// allow.
    pub(super) fn of(row: &JobRow, mut events: Vec<JobEvent>, stored: bool, limits: RecordLimits) -> Self {
        // Read apart, the events may reach past the row's state: those come again later.
        events.retain(|e| e.seq() <= row.state.seq);
        let skip = events.len().saturating_sub(limits.replay_capacity);
        let kept: Vec<JobEvent> = events.into_iter().skip(skip).collect();
        let lines = kept.iter().filter_map(|e| match e {
            JobEvent::Log(l, _) => Some(line_size(l)),
            JobEvent::State(..) => None,
        });
        let (log_lines, log_bytes) = lines.fold((0, 0), |(n, b), size| (n + 1, b + size));
        let mut state = Self {
            current: row.state.clone(),
            published: stored.then(|| row.state.clone()),
            log: VecDeque::with_capacity(kept.len()),
            log_size: 0,
            log_lines,
            log_bytes,
            logs_dropped: row.state.logs_dropped,
            drop_told_at: None,
            started_ms: row.started_ms,
            ended_ms: row.state.status.is_terminal().then(|| row.ended_ms.unwrap_or(row.state.ts)),
            checkpoint: row.checkpoint.clone(),
            forgotten: false,
        };
        for event in kept {
            state.push(event, limits);
        }
        state
    }

    /// A mirror's newest state, as written by whoever holds the job.
    pub(super) fn set_mirrored(&mut self, state: Arc<Snapshot>) {
        if self.started_ms.is_none() && state.status == JobStatus::Running {
            self.started_ms = Some(state.ts);
        }
        if state.status.is_terminal() {
            self.ended_ms = Some(state.ts);
        }
        self.logs_dropped = state.logs_dropped;
        self.current = state.clone();
        self.published = Some(state);
    }

    /// Adds the newest event, forgetting the oldest ones past the count or the bytes the
    /// limits allow (the newest is always kept).
    pub(super) fn push(&mut self, event: JobEvent, limits: RecordLimits) {
        let size = event.size();
        while !self.log.is_empty()
            && (self.log.len() >= limits.replay_capacity || self.log_size + size > limits.replay_bytes)
        {
            if let Some(oldest) = self.log.pop_front() {
                self.log_size -= oldest.size();
            }
        }
        self.log_size += size;
        self.log.push_back(event);
    }

    pub(super) fn published_seq(&self) -> u64 {
        self.published.as_ref().map_or(0, |s| s.seq)
    }

    /// What a subscriber that has seen everything up to `cursor` gets next.
    pub(super) fn catch_up(&self, cursor: u64) -> CatchUp {
        let Some(published) = &self.published else {
            return CatchUp::UpToDate { ended: false };
        };
        let newest = published.seq;
        if cursor == newest {
            return CatchUp::UpToDate { ended: published.status.is_terminal() || self.forgotten };
        }
        // An empty log (a job read back without its events) holds nothing to replay.
        let oldest = self.log.front().map_or(newest + 1, JobEvent::seq);
        if cursor > newest || cursor + 1 < oldest {
            return CatchUp::Reset(published.clone());
        }
        let skip = usize::try_from(cursor + 1 - oldest).unwrap_or(usize::MAX);
        let events = self.log.iter().skip(skip).take_while(|e| e.seq() <= newest).cloned().collect();
        if self.forgotten {
            return CatchUp::Last(events);
        }
        CatchUp::Events(events)
    }

    /// The published log lines still kept after sequence `after`, and how many were dropped.
    pub(super) fn log_lines_after(&self, after: u64) -> (Vec<Arc<LogLine>>, u64) {
        let newest = self.published_seq();
        let lines = self
            .log
            .iter()
            .filter_map(|e| match e {
                JobEvent::Log(l, _) if l.seq > after && l.seq <= newest => Some(l.clone()),
                _ => None,
            })
            .collect();
        (lines, self.published.as_ref().map_or(0, |s| s.logs_dropped))
    }

    /// Forgets what was never written (no one was shown it): the state goes back to the
    /// newest published one.
    pub(super) fn rewind_to_published(&mut self) {
        if let Some(published) = self.published.clone() {
            let seq = published.seq;
            self.log.retain(|e| e.seq() <= seq);
            self.ended_ms = published.status.is_terminal().then_some(published.ts);
            self.current = published;
        }
    }

    /// For a mirror: takes in `events` the store appended (and its newest `state`, for when
    /// they do not follow on what is kept here because the store trimmed the ones between).
    /// Never leaves a hole in the log: what does not follow waits for the next read.
    pub(super) fn absorb(&mut self, events: Vec<JobEvent>, state: Snapshot, limits: RecordLimits) {
        let known = self.published_seq();
        let fresh: Vec<JobEvent> = events.into_iter().filter(|e| e.seq() > known).collect();
        let follows = fresh.first().is_some_and(|e| e.seq() == known + 1);
        if !follows && state.seq > known {
            // The events in between were trimmed: start over from the store's state.
            self.log.clear();
            self.log_size = 0;
            self.set_mirrored(Arc::new(state));
        }
        for event in fresh {
            let newest_kept = self.log.back().map_or(0, JobEvent::seq);
            if event.seq() <= self.published_seq() || event.seq() <= newest_kept {
                continue;
            }
            if event.seq() != self.published_seq() + 1 {
                break;
            }
            let next = match &event {
                JobEvent::State(state, _) => state.clone(),
                JobEvent::Log(line, _) => {
                    let mut next = Snapshot::clone(&self.current);
                    next.seq = line.seq;
                    Arc::new(next)
                }
            };
            self.push(event, limits);
            self.set_mirrored(next);
        }
    }
}
