//! The built-in job kinds, and [`builtin`], the registry that holds them all.
//!
//! - [`checksum`]: real CPU work: generates data in chunks and hashes it twice (the default);
//!   resumable, chunk by chunk.
//! - [`discover`]: finds its work first (total unknown), then does it: for indeterminate UIs.
//! - [`failing`]: fails at a chosen step with a meaningful error.
//! - [`ticker`]: only reports, N steps at a given interval: for pace demos and benchmarks;
//!   resumable, tick by tick.

pub mod checksum;
pub mod discover;
pub mod failing;
pub mod ticker;

use super::KindRegistry;

/// A registry with every built-in kind.
pub fn builtin() -> KindRegistry {
    let mut kinds = KindRegistry::new();
    kinds
        .register_resumable(checksum::NAME, checksum::DESCRIPTION, checksum::run)
        .register(discover::NAME, discover::DESCRIPTION, discover::run)
        .register(failing::NAME, failing::DESCRIPTION, failing::run)
        .register_resumable(ticker::NAME, ticker::DESCRIPTION, ticker::run);
    kinds
}

/// `Err` naming the field and its allowed range when `value` is outside `min..=max`.
/// The largest seed a kind takes: 2^53 - 1, the largest whole number every JSON client (a
/// browser's included) reads and writes exactly.
pub(crate) const MAX_SEED: u64 = 9_007_199_254_740_991;

pub(crate) fn check_range<T: PartialOrd + std::fmt::Display>(
    field: &str,
    value: T,
    min: T,
    max: T,
) -> Result<(), String> {
    if value < min || value > max {
        Err(format!("{field} must be between {min} and {max}, got {value}"))
    } else {
        Ok(())
    }
}

/// Lower-case hex of `bytes`, e.g. a digest.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
