//! What the engine counts for operators: events appended and delivered, open subscriptions,
//! how long store writes take, and (with a shared store) the global queue and lease hand-overs.
//! Plain numbers; the web layer formats them (`/metrics`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::model::JobStatus;

/// Upper bounds (seconds) of the store-write latency histogram's buckets.
pub const WRITE_BUCKETS: [f64; 12] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];

/// The engine's running counts.
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) events_appended: AtomicU64,
    pub(crate) events_delivered: AtomicU64,
    pub(crate) subscriptions_opened: AtomicU64,
    pub(crate) subscriptions_closed: AtomicU64,
    /// Jobs another instance took over from this one (found by a fenced write or a heartbeat).
    pub(crate) leases_lost: AtomicU64,
    write_buckets: [AtomicU64; WRITE_BUCKETS.len()],
    writes: AtomicU64,
    write_micros: AtomicU64,
}

impl Counters {
    /// One batch written to the store in `took`, with `events` events.
    pub(crate) fn written(&self, events: usize, took: Duration) {
        self.events_appended.fetch_add(events as u64, Ordering::Relaxed);
        self.writes.fetch_add(1, Ordering::Relaxed);
        self.write_micros.fetch_add(u64::try_from(took.as_micros()).unwrap_or(u64::MAX), Ordering::Relaxed);
        let secs = took.as_secs_f64();
        if let Some(at) = WRITE_BUCKETS.iter().position(|le| secs <= *le) {
            self.write_buckets[at].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The store-write histogram: cumulative counts per bucket, the count and the sum (s).
    pub(crate) fn write_histogram(&self) -> Histogram {
        let mut cumulative = 0;
        let buckets = WRITE_BUCKETS
            .iter()
            .zip(&self.write_buckets)
            .map(|(le, n)| {
                cumulative += n.load(Ordering::Relaxed);
                (*le, cumulative)
            })
            .collect();
        Histogram {
            buckets,
            count: self.writes.load(Ordering::Relaxed),
            sum_seconds: self.write_micros.load(Ordering::Relaxed) as f64 / 1e6,
        }
    }
}

/// A latency histogram as Prometheus shows one.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histogram {
    /// (upper bound in seconds, observations at or under it), cumulative.
    pub buckets: Vec<(f64, u64)>,
    /// Observations.
    pub count: u64,
    /// Their sum, in seconds.
    pub sum_seconds: f64,
}

/// What a shared store says of all instances together, and this instance's part.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SharedStats {
    /// This instance's name.
    pub instance: String,
    /// Jobs kept in the store (all instances).
    pub jobs: u64,
    /// Jobs waiting in the shared queue.
    pub queued: u64,
    /// Jobs running under a lease (all instances).
    pub running: u64,
    /// Jobs this instance runs.
    pub held: u64,
    /// Jobs this instance took over after their lease expired.
    pub lease_expiries: u64,
    /// Jobs this instance lost to another (it stalled past its lease).
    pub leases_lost: u64,
    /// Store calls that failed (and were retried).
    pub store_errors: u64,
}

/// A snapshot of the engine's numbers.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EngineStats {
    /// Jobs this process has in memory, by status.
    pub jobs_by_status: Vec<(JobStatus, u64)>,
    /// Jobs waiting in this process's queue (a store one process owns).
    pub queued: u64,
    /// Events this process wrote to the store.
    pub events_appended: u64,
    /// Events this process handed to subscribers (streams, feeds, synchronous waits).
    pub events_delivered: u64,
    /// Subscriptions open now.
    pub subscriptions_open: u64,
    /// Events taken in but not yet in the store (while the store refuses writes, at most each
    /// running job's replay bound).
    pub store_backlog: u64,
    /// Owners this process keeps an entry for: those with jobs here, and those with a feed open.
    pub owners: u64,
    /// How long each batch write to the store took.
    pub store_writes: Histogram,
    /// With a shared store: the global view.
    pub shared: Option<SharedStats>,
}
