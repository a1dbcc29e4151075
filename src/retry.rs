//! Retrying with back-off, shared by the browser's streams and the terminal client (a neutral
//! home: neither borrows from the other). Kept by hand: it is one line of arithmetic that both
//! the wasm build and the server build use, each with its own random source (`Math.random`,
//! `fastrand`) and timer, which retry crates (backon, tokio-retry) do not span.

use std::time::Duration;

/// The wait before reconnection attempt `attempt` (1-based): `first` doubled per attempt,
/// capped at `cap`, then scaled by a jitter of ±20 % (`unit` is a random number in 0..1) so
/// that many tabs do not reconnect in lock-step after a server restart.
pub fn backoff(first: Duration, cap: Duration, attempt: u32, unit: f64) -> Duration {
    let doubled = first.saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
    doubled.min(cap).mul_f64(0.8 + 0.4 * unit.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnection_waits_double_up_to_the_cap_with_jitter() {
        let (first, cap) = (Duration::from_millis(500), Duration::from_secs(8));
        assert_eq!(backoff(first, cap, 1, 0.5), Duration::from_millis(500));
        assert_eq!(backoff(first, cap, 3, 0.5), Duration::from_secs(2));
        assert_eq!(backoff(first, cap, 30, 0.5), cap);
        assert_eq!(backoff(first, cap, 1, 0.0), Duration::from_millis(400));
        assert_eq!(backoff(first, cap, 1, 1.0), Duration::from_millis(600));
    }
}
