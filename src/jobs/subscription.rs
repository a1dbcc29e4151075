//! Following one job: the events after a given sequence number from the replay log, then the
//! live tail, until the job's terminal event.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use futures::Stream;
use tokio::sync::watch;

use super::event::{encode, JobEvent, Json};
use super::record::{CatchUp, JobRecord};
use super::stats::Counters;
use crate::model::{LogLine, Snapshot};

/// One thing a subscriber is told, with its JSON (shared by every subscriber).
#[derive(Debug, Clone, PartialEq)]
pub enum Delivery {
    /// The next event, a change of state, in sequence.
    Event(Arc<Snapshot>, Json),
    /// The next event, a log line, in sequence.
    Log(Arc<LogLine>, Json),
    /// The events the subscriber asked for are no longer kept (or its cursor made no sense):
    /// this is the whole current state, and the stream goes on from its `seq`.
    Reset(Arc<Snapshot>, Json),
}

impl Delivery {
    /// The state carried, unless this is a log line.
    pub fn state(&self) -> Option<&Arc<Snapshot>> {
        match self {
            Self::Event(s, _) | Self::Reset(s, _) => Some(s),
            Self::Log(..) => None,
        }
    }

    /// The sequence number after which a subscriber that got this should resume.
    pub fn seq(&self) -> u64 {
        match self {
            Self::Event(s, _) | Self::Reset(s, _) => s.seq,
            Self::Log(l, _) => l.seq,
        }
    }

    /// Its name on the wire: the state's (`progress`, `completed` ...), `reset` or `log`.
    pub fn event_name(&self) -> &'static str {
        match self {
            Self::Event(s, _) => s.event_name(),
            Self::Reset(..) => "reset",
            Self::Log(..) => "log",
        }
    }

    /// The JSON of what it carries.
    pub fn json(&self) -> &Json {
        match self {
            Self::Event(_, json) | Self::Log(_, json) | Self::Reset(_, json) => json,
        }
    }
}

/// A subscriber's position in one job's events. Made by
/// [`JobEngine::subscribe`](super::JobEngine::subscribe).
pub struct Subscription {
    record: Arc<JobRecord>,
    /// The sequence number of the last event handed out.
    cursor: u64,
    wake: watch::Receiver<u64>,
    buffered: VecDeque<JobEvent>,
    /// Whether everything the log held when last read (after marking the watch seen) has
    /// been handed out: then, unless the watch changed since, nothing new was published.
    synced: bool,
    finished: bool,
    counters: Arc<Counters>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.counters.subscriptions_closed.fetch_add(1, Ordering::Relaxed);
    }
}

impl Subscription {
    pub(crate) fn new(record: Arc<JobRecord>, after: u64, counters: Arc<Counters>) -> Self {
        let wake = record.watch();
        counters.subscriptions_opened.fetch_add(1, Ordering::Relaxed);
        Self { record, cursor: after, wake, buffered: VecDeque::new(), synced: false, finished: false, counters }
    }

    /// The job's current state (whatever this subscriber has or has not read yet); `None`
    /// only before the job's first event is stored.
    pub fn current(&self) -> Option<Arc<Snapshot>> {
        self.record.snapshot()
    }

    /// The next delivery, or `None` once the job's terminal event has been delivered.
    pub async fn next(&mut self) -> Option<Delivery> {
        loop {
            if let Some(event) = self.buffered.pop_front() {
                self.cursor = event.seq();
                self.counters.events_delivered.fetch_add(1, Ordering::Relaxed);
                return Some(match event {
                    JobEvent::State(state, json) => {
                        self.finished = state.status.is_terminal();
                        Delivery::Event(state, json)
                    }
                    JobEvent::Log(line, json) => Delivery::Log(line, json),
                });
            }
            if self.finished {
                return None;
            }
            // Nothing was published since the log was last read, and all it held is handed
            // out: wait, without taking the record's lock (which every follower of the job
            // shares) only to learn that.
            if std::mem::take(&mut self.synced) && !self.wake.has_changed().unwrap_or(true) {
                // The sender lives in the record we hold, so this cannot close.
                if self.wake.changed().await.is_err() {
                    return None;
                }
            }
            // Mark the current value seen *before* reading the log, so an event appended
            // after the read still wakes the wait below.
            self.wake.borrow_and_update();
            match self.record.catch_up(self.cursor) {
                CatchUp::Events(events) => {
                    self.buffered.extend(events);
                    self.synced = true;
                }
                CatchUp::Last(events) => {
                    // Handed out before the end: the buffer is emptied before `finished` is read.
                    self.buffered.extend(events);
                    self.finished = true;
                }
                CatchUp::Reset(state) => {
                    self.cursor = state.seq;
                    self.counters.events_delivered.fetch_add(1, Ordering::Relaxed);
                    self.finished = state.status.is_terminal();
                    let json = encode(&*state, state.seq);
                    return Some(Delivery::Reset(state, json));
                }
                CatchUp::UpToDate { ended: true } => {
                    self.finished = true;
                    return None;
                }
                CatchUp::UpToDate { ended: false } => {
                    // The sender lives in the record we hold, so this cannot close.
                    if self.wake.changed().await.is_err() {
                        return None;
                    }
                }
            }
        }
    }

    /// The subscription as a `Stream` of deliveries.
    pub fn into_stream(self) -> impl Stream<Item = Delivery> + Send + 'static {
        futures::stream::unfold(self, |mut sub| async move {
            let delivery = sub.next().await?;
            Some((delivery, sub))
        })
    }
}
