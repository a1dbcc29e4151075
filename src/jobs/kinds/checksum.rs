//! `checksum`: generates pseudo-random data chunk by chunk, hashes it with SHA-256, then
//! generates and hashes it again to verify the digest. Real CPU work, run on the blocking
//! pool one chunk at a time so it never stalls the async runtime; memory is one chunk.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use utoipa::ToSchema;

use super::{check_range, hex};
use crate::jobs::{JobError, JobParams, ProgressReporter, Report};

/// The kind's name.
pub const NAME: &str = "checksum";
/// What it does, for pickers and listings.
pub const DESCRIPTION: &str =
    "Generates data in chunks and SHA-256 hashes it twice (real CPU work, about 5 s by default)";

const STEPS: u32 = 4;

/// Params of `checksum`; every field is optional.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ChecksumParams {
    /// How much data to generate and hash, in MiB (1-4096). Default 48.
    #[schema(minimum = 1, maximum = 4096)]
    pub size_mib: u32,
    /// One chunk, in KiB (16-65536). Default 1024.
    #[schema(minimum = 16, maximum = 65536)]
    pub chunk_kib: u32,
    /// A pause after each chunk in milliseconds (0-10000), to stretch a demo. Default 40.
    #[schema(minimum = 0, maximum = 10000)]
    pub chunk_delay_ms: u64,
    /// Seed of the generated data. Default 42.
    pub seed: u64,
}

impl Default for ChecksumParams {
    fn default() -> Self {
        Self {
            size_mib: 48,
            chunk_kib: 1024,
            chunk_delay_ms: 40,
            seed: 42,
        }
    }
}

impl JobParams for ChecksumParams {
    fn validate(&self) -> Result<(), String> {
        check_range("size_mib", self.size_mib, 1, 4096)?;
        check_range("chunk_kib", self.chunk_kib, 16, 65_536)?;
        check_range("chunk_delay_ms", self.chunk_delay_ms, 0, 10_000)
    }
}

/// What a finished `checksum` job returns.
#[derive(Debug, Clone, Serialize)]
pub struct ChecksumResult {
    /// Hex SHA-256 of the generated data.
    pub sha256: String,
    /// Bytes hashed (once).
    pub bytes: u64,
    /// Chunks per pass.
    pub chunks: u64,
    /// Whether the second pass gave the same digest.
    pub verified: bool,
    /// Wall time of the whole job.
    pub elapsed_ms: u64,
}

/// Fills `buf` with the xorshift64* stream that continues from `state`.
fn fill(buf: &mut [u8], state: &mut u64) {
    for word in buf.chunks_mut(8) {
        *state ^= *state >> 12;
        *state ^= *state << 25;
        *state ^= *state >> 27;
        let bytes = state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes();
        word.copy_from_slice(&bytes[..word.len()]);
    }
}

/// One pass: generate and hash every chunk, reporting progress from `from` to `to` percent.
async fn hash_pass(
    p: &ChecksumParams,
    r: &ProgressReporter,
    (from, to): (f64, f64),
    verb: &str,
) -> Result<[u8; 32], JobError> {
    let total = u64::from(p.size_mib) * 1024 * 1024;
    let chunk = u64::from(p.chunk_kib) * 1024;
    let chunks = total.div_ceil(chunk);
    let pass = if from < 50.0 { "first" } else { "second" };
    tracing::info!(chunks, chunk_bytes = chunk, "{pass} pass started");
    let mut state = (Sha256::new(), vec![0u8; 0], p.seed | 1);
    for i in 0..chunks {
        r.check_cancelled()?;
        let len = usize::try_from(chunk.min(total - i * chunk))
            .map_err(|_| JobError::msg("chunk too large for this machine"))?;
        let (mut hasher, mut buf, mut rng) = state;
        let every = (chunks / 4).max(1);
        state = r
            .spawn_blocking(move || {
                buf.resize(len, 0);
                fill(&mut buf, &mut rng);
                hasher.update(&buf);
                if (i + 1) % every == 0 {
                    // Logged on the blocking pool: it still reaches the job's viewers.
                    tracing::info!(chunk = i + 1, of = chunks, bytes = len, "chunk hashed on the blocking pool");
                }
                (hasher, buf, rng)
            })
        .await
        .map_err(|e| JobError::msg(format!("hashing worker stopped: {e}")))?;
        let done = i + 1;
        #[allow(clippy::cast_precision_loss)] // progress display only
        let fraction = done as f64 / chunks as f64;
        r.progress(
            from + (to - from) * fraction,
            format!("{verb} chunk {done} of {chunks} ({} MiB)", done * chunk / (1024 * 1024)),
        );
        if p.chunk_delay_ms > 0 {
            r.sleep(Duration::from_millis(p.chunk_delay_ms)).await?;
        }
    }
    Ok(state.0.finalize().into())
}

/// Runs a `checksum` job.
pub async fn run(p: ChecksumParams, r: ProgressReporter) -> Result<ChecksumResult, JobError> {
    let started = Instant::now();
    r.report(
        Report::new()
            .step(1, STEPS, "Preparing")
            .percent(2.0)
            .message(format!("Planning {} MiB in {} KiB chunks", p.size_mib, p.chunk_kib)),
    );
    r.sleep(Duration::from_millis(300)).await?;

    tracing::info!(size_mib = p.size_mib, chunk_kib = p.chunk_kib, seed = p.seed, "checksum planned");
    r.step(2, STEPS, "Hashing");
    let digest = hash_pass(&p, &r, (5.0, 55.0), "Hashed").await?;
    tracing::info!(sha256 = %hex(&digest), "first pass done");

    r.step(3, STEPS, "Verifying");
    let again = hash_pass(&p, &r, (55.0, 95.0), "Verified").await?;
    if again != digest {
        tracing::error!(first = %hex(&digest), second = %hex(&again), "digests differ");
        return Err(JobError::msg(format!(
            "verification failed: the second pass gave {} instead of {}",
            hex(&again),
            hex(&digest)
        )));
    }

    tracing::info!("verified: both passes agree");
    r.report(Report::new().step(4, STEPS, "Summarizing").percent(97.0).message("Writing the summary"));
    r.sleep(Duration::from_millis(200)).await?;
    let total = u64::from(p.size_mib) * 1024 * 1024;
    Ok(ChecksumResult {
        sha256: hex(&digest),
        bytes: total,
        chunks: total.div_ceil(u64::from(p.chunk_kib) * 1024),
        verified: true,
        elapsed_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_data_is_deterministic_across_chunk_boundaries() {
        let mut a = vec![0u8; 64];
        let mut s = 43;
        fill(&mut a, &mut s);
        let (mut b1, mut b2) = (vec![0u8; 32], vec![0u8; 32]);
        let mut t = 43;
        fill(&mut b1, &mut t);
        fill(&mut b2, &mut t);
        assert_eq!(a, [b1, b2].concat());
    }

    #[test]
    fn out_of_range_params_are_refused_with_the_range() {
        let p = ChecksumParams { size_mib: 0, ..Default::default() };
        assert_eq!(p.validate().unwrap_err(), "size_mib must be between 1 and 4096, got 0");
    }
}
