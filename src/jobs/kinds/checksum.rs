//! `checksum`: generates pseudo-random data chunk by chunk, hashes it with SHA-256, then
//! generates and hashes it again to verify the digest. Real CPU work, run on the blocking
//! pool one chunk at a time so it never stalls the async runtime; memory is one chunk.
//! Resumable: it saves the hash state after every chunk, and after a restart continues from
//! the last chunk it finished, with the same digest as an uninterrupted run.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sha2::compress256;
use sha2::digest::generic_array::GenericArray;

use schemars::JsonSchema;

use super::{check_range, hex};
use crate::jobs::{JobError, JobParams, ProgressReporter, Report};

/// The kind's name.
pub const NAME: &str = "checksum";
/// What it does, for pickers and listings.
pub const DESCRIPTION: &str =
    "Generates data in chunks and SHA-256 hashes it twice (real CPU work, about 5 s by default)";

const STEPS: u32 = 4;

/// Params of `checksum`; every field is optional.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ChecksumParams {
    /// How much data to generate and hash, in MiB (1-4096). Default 48.
    #[schemars(range(min = 1, max = 4096))]
    pub size_mib: u32,
    /// One chunk, in KiB (16-65536). Default 1024.
    #[schemars(range(min = 16, max = 65536))]
    pub chunk_kib: u32,
    /// A pause after each chunk in milliseconds (0-10000), to stretch a demo. Default 40.
    #[schemars(range(min = 0, max = 10000))]
    pub chunk_delay_ms: u64,
    /// Seed of the generated data (0-9007199254740991). Default 42.
    #[schemars(range(min = 0, max = 9_007_199_254_740_991_u64))]
    pub seed: u64,
}

impl Default for ChecksumParams {
    fn default() -> Self {
        Self { size_mib: 48, chunk_kib: 1024, chunk_delay_ms: 40, seed: 42 }
    }
}

impl JobParams for ChecksumParams {
    fn validate(&self) -> Result<(), String> {
        check_range("size_mib", self.size_mib, 1, 4096)?;
        check_range("chunk_kib", self.chunk_kib, 16, 65_536)?;
        check_range("chunk_delay_ms", self.chunk_delay_ms, 0, 10_000)?;
        check_range("seed", self.seed, 0, super::MAX_SEED)
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

/// SHA-256 whose running state is plain data, so a pass can be checkpointed after any chunk
/// and continued after a restart. Every chunk is a whole number of KiB, hence of 64-byte
/// blocks, so no partial block ever waits between chunks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Sha256State {
    h: [u32; 8],
    bytes: u64,
}

impl Sha256State {
    const INITIAL: [u32; 8] =
        [0x6a09_e667, 0xbb67_ae85, 0x3c6e_f372, 0xa54f_f53a, 0x510e_527f, 0x9b05_688c, 0x1f83_d9ab, 0x5be0_cd19];

    fn new() -> Self {
        Self { h: Self::INITIAL, bytes: 0 }
    }

    /// Hashes whole 64-byte blocks (a trailing partial block would be a bug of the caller's).
    fn update(&mut self, data: &[u8]) {
        debug_assert_eq!(data.len() % 64, 0);
        for block in data.chunks_exact(64) {
            compress256(&mut self.h, std::slice::from_ref(GenericArray::from_slice(block)));
        }
        self.bytes += data.len() as u64;
    }

    /// The digest: the final padding block (a 1 bit, zeros, the length in bits), then the state.
    fn finalize(mut self) -> [u8; 32] {
        let mut last = [0u8; 64];
        last[0] = 0x80;
        last[56..].copy_from_slice(&(self.bytes * 8).to_be_bytes());
        compress256(&mut self.h, std::slice::from_ref(GenericArray::from_slice(&last)));
        let mut out = [0u8; 32];
        for (bytes, word) in out.chunks_exact_mut(4).zip(self.h) {
            bytes.copy_from_slice(&word.to_be_bytes());
        }
        out
    }
}

/// Where a run got to, saved after every chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Checkpoint {
    /// 1 while hashing, 2 while verifying.
    pass: u8,
    /// Chunks of this pass done.
    chunks_done: u64,
    /// The pass's hash so far.
    hash: Sha256State,
    /// The data generator's state after the last chunk done.
    rng: u64,
    /// The first pass's digest, once known.
    first: Option<[u8; 32]>,
}

impl Checkpoint {
    fn start(pass: u8, p: &ChecksumParams, first: Option<[u8; 32]>) -> Self {
        Self { pass, chunks_done: 0, hash: Sha256State::new(), rng: p.seed | 1, first }
    }
}

/// One pass from `at`: generate and hash every chunk left, reporting progress from `from` to
/// `to` percent and saving a checkpoint after each chunk.
async fn hash_pass(
    p: &ChecksumParams,
    r: &ProgressReporter,
    (from, to): (f64, f64),
    verb: &str,
    mut at: Checkpoint,
) -> Result<[u8; 32], JobError> {
    let total = u64::from(p.size_mib) * 1024 * 1024;
    let chunk = u64::from(p.chunk_kib) * 1024;
    let chunks = total.div_ceil(chunk);
    let pass = if at.pass == 1 { "first" } else { "second" };
    tracing::info!(chunks, chunk_bytes = chunk, from_chunk = at.chunks_done, "{pass} pass started");
    let mut buf = Vec::new();
    for i in at.chunks_done..chunks {
        r.check_cancelled()?;
        let len = usize::try_from(chunk.min(total - i * chunk))
            .map_err(|_| JobError::msg("chunk too large for this machine"))?;
        let (mut hash, mut rng) = (at.hash, at.rng);
        let every = (chunks / 4).max(1);
        (hash, rng, buf) = r
            .spawn_blocking(move || {
                buf.resize(len, 0);
                fill(&mut buf, &mut rng);
                hash.update(&buf);
                if (i + 1) % every == 0 {
                    // Logged on the blocking pool: it still reaches the job's viewers.
                    tracing::info!(chunk = i + 1, of = chunks, bytes = len, "chunk hashed on the blocking pool");
                }
                (hash, rng, buf)
            })
            .await
            .map_err(|e| JobError::msg(format!("hashing worker stopped: {e}")))?;
        let done = i + 1;
        at = Checkpoint { chunks_done: done, hash, rng, ..at };
        #[allow(clippy::cast_precision_loss)] // progress display only
        let fraction = done as f64 / chunks as f64;
        r.progress(
            from + (to - from) * fraction,
            format!("{verb} chunk {done} of {chunks} ({} MiB)", done * chunk / (1024 * 1024)),
        );
        r.checkpoint(&at);
        if p.chunk_delay_ms > 0 {
            r.sleep(Duration::from_millis(p.chunk_delay_ms)).await?;
        }
    }
    Ok(at.hash.finalize())
}

/// Runs a `checksum` job. Resumable: after a restart it goes on from the last chunk it hashed.
pub async fn run(p: ChecksumParams, r: ProgressReporter) -> Result<ChecksumResult, JobError> {
    let started = Instant::now();
    let resumed: Option<Checkpoint> = r.resume_point();
    if let Some(at) = &resumed {
        tracing::info!(pass = at.pass, chunks_done = at.chunks_done, "resuming after a server restart");
    } else {
        r.report(
            Report::new()
                .step(1, STEPS, "Preparing")
                .percent(2.0)
                .message(format!("Planning {} MiB in {} KiB chunks", p.size_mib, p.chunk_kib)),
        );
        r.sleep(Duration::from_millis(300)).await?;
        tracing::info!(size_mib = p.size_mib, chunk_kib = p.chunk_kib, seed = p.seed, "checksum planned");
    }

    let digest = match resumed {
        Some(Checkpoint { pass: 2, first: Some(first), .. }) => first,
        _ => {
            r.step(2, STEPS, "Hashing");
            let at = resumed.filter(|c| c.pass == 1).unwrap_or_else(|| Checkpoint::start(1, &p, None));
            let digest = hash_pass(&p, &r, (5.0, 55.0), "Hashed", at).await?;
            tracing::info!(sha256 = %hex(&digest), "first pass done");
            digest
        }
    };

    r.step(3, STEPS, "Verifying");
    let at = resumed
        .filter(|c| c.pass == 2 && c.first == Some(digest))
        .unwrap_or_else(|| Checkpoint::start(2, &p, Some(digest)));
    let again = hash_pass(&p, &r, (55.0, 95.0), "Verified", at).await?;
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
    fn the_resumable_hash_is_sha256_even_when_continued_from_a_saved_state() {
        use sha2::{Digest, Sha256};
        let mut data = vec![0u8; 3 * 1024];
        fill(&mut data, &mut 7);
        let mut whole = Sha256State::new();
        whole.update(&data);
        let mut first = Sha256State::new();
        first.update(&data[..1024]);
        let saved: Sha256State =
            serde_json::from_value(serde_json::to_value(first).expect("encodes")).expect("decodes");
        let mut continued = saved;
        continued.update(&data[1024..]);
        let expected: [u8; 32] = Sha256::digest(&data).into();
        assert_eq!(whole.finalize(), expected);
        assert_eq!(continued.finalize(), expected);
        assert_eq!(Sha256State::new().finalize(), <[u8; 32]>::from(Sha256::digest(b"")));
    }

    #[test]
    fn out_of_range_params_are_refused_with_the_range() {
        let p = ChecksumParams { size_mib: 0, ..Default::default() };
        assert_eq!(p.validate().unwrap_err(), "size_mib must be between 1 and 4096, got 0");
    }
}
