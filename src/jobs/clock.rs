//! The engine's clock: wall-clock milliseconds since the Unix epoch (what is stored and
//! shown), advanced by Tokio's monotonic clock so that it never jumps backwards while the
//! process runs and follows Tokio's paused time in tests.

use tokio::time::Instant;

/// Wall-clock milliseconds, read from a fixed wall-clock base plus monotonic time elapsed.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    wall_at_base: u64,
    base: Instant,
}

impl Clock {
    /// A clock that reads the system's wall clock now and counts on from there.
    pub fn start() -> Self {
        Self { wall_at_base: crate::model::now_ms(), base: Instant::now() }
    }

    /// Milliseconds since the Unix epoch, now.
    pub fn now_ms(&self) -> u64 {
        let elapsed = u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.wall_at_base.saturating_add(elapsed)
    }
}
