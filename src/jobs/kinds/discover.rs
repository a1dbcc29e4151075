//! `discover`: a job whose total is unknown at first. It walks a (generated) directory tree
//! to find its files, which takes a while and tells nothing of how many there will be, then
//! hashes every file it found (real work, on the blocking pool) with a known total in bytes.
//! Its first phase is indeterminate; its second determinate with a rate and an ETA.

use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{check_range, hex};
use crate::jobs::{JobError, JobParams, ProgressReporter, Report};

/// The kind's name.
pub const NAME: &str = "discover";
/// What it does, for pickers and listings.
pub const DESCRIPTION: &str = "Finds its files first (how many is unknown until then), then hashes them all; about 5 s";

const PLAN: [&str; 3] = ["Discovering", "Processing", "Summarizing"];

/// Params of `discover`; every field is optional.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct DiscoverParams {
    /// How many files the tree holds (1-100000); the job does not know this until it has
    /// walked the tree. Default 60.
    #[schemars(range(min = 1, max = 100000))]
    pub files: u32,
    /// Time to list one directory, in milliseconds (0-10000). Default 200.
    #[schemars(range(min = 0, max = 10000))]
    pub dir_ms: u64,
    /// Pause after each file, in milliseconds (0-10000). Default 40.
    #[schemars(range(min = 0, max = 10000))]
    pub file_ms: u64,
    /// Average file size in KiB (1-65536). Default 512.
    #[schemars(range(min = 1, max = 65536))]
    pub avg_kib: u32,
    /// Seed of the tree and its contents (0-9007199254740991). Default 7.
    #[schemars(range(min = 0, max = 9_007_199_254_740_991_u64))]
    pub seed: u64,
}

impl Default for DiscoverParams {
    fn default() -> Self {
        Self { files: 60, dir_ms: 200, file_ms: 40, avg_kib: 512, seed: 7 }
    }
}

impl JobParams for DiscoverParams {
    fn validate(&self) -> Result<(), String> {
        check_range("files", self.files, 1, 100_000)?;
        check_range("dir_ms", self.dir_ms, 0, 10_000)?;
        check_range("file_ms", self.file_ms, 0, 10_000)?;
        check_range("avg_kib", self.avg_kib, 1, 65_536)?;
        check_range("seed", self.seed, 0, super::MAX_SEED)
    }
}

/// What a finished `discover` job returns.
#[derive(Debug, Clone, Serialize)]
pub struct DiscoverResult {
    /// Files found and hashed.
    pub files: u32,
    /// Directories listed.
    pub directories: u32,
    /// Bytes hashed.
    pub bytes: u64,
    /// SHA-256 over all the files' contents, in the order found.
    pub sha256: String,
}

/// A small deterministic generator (SplitMix64).
fn next(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Runs a `discover` job.
pub async fn run(p: DiscoverParams, r: ProgressReporter) -> Result<DiscoverResult, JobError> {
    r.plan(&PLAN);
    let mut rng = p.seed;

    // Phase 1: walk the tree. Each directory listing finds a few files and maybe more
    // directories; nothing tells how many files there are until the walk ends.
    r.report(Report::new().step(1, 3, PLAN[0]).indeterminate().message("Listing the top directory"));
    let mut sizes: Vec<u64> = Vec::new();
    let mut directories = 0u32;
    while sizes.len() < p.files as usize {
        r.sleep(Duration::from_millis(p.dir_ms)).await?;
        directories += 1;
        let found = (3 + next(&mut rng) % 7).min(u64::from(p.files) - sizes.len() as u64);
        for _ in 0..found {
            let kib = u64::from(p.avg_kib) / 2 + next(&mut rng) % u64::from(p.avg_kib).max(1);
            sizes.push(kib.max(1) * 1024);
        }
        tracing::info!(directory = directories, found, "listed a directory");
        r.report(
            Report::new()
                .indeterminate()
                .work(sizes.len() as u64, None, "files")
                .message(format!("Found {} files in {directories} directories so far", sizes.len())),
        );
    }
    let total: u64 = sizes.iter().sum();
    tracing::info!(files = sizes.len(), bytes = total, "walk finished: the total is known");

    // Phase 2: hash every file, now with a known total.
    r.report(Report::new().step(2, 3, PLAN[1]).percent(0.0).work(0, Some(total), "bytes"));
    let mut hasher = Sha256::new();
    let mut done = 0u64;
    for (i, &size) in sizes.iter().enumerate() {
        r.check_cancelled()?;
        let seed = next(&mut rng);
        let (h, digest_bytes) = r
            .spawn_blocking(move || {
                let mut state = seed | 1;
                let mut file = vec![0u8; usize::try_from(size).unwrap_or(0)];
                for word in file.chunks_mut(8) {
                    let bytes = next(&mut state).to_le_bytes();
                    word.copy_from_slice(&bytes[..word.len()]);
                }
                hasher.update(&file);
                (hasher, size)
            })
            .await
            .map_err(|e| JobError::msg(format!("hashing worker stopped: {e}")))?;
        hasher = h;
        done += digest_bytes;
        #[allow(clippy::cast_precision_loss)] // progress display only
        let percent = 100.0 * done as f64 / total as f64;
        r.report(Report::new().percent(percent.min(99.0)).work(done, Some(total), "bytes").message(format!(
            "Hashed file {} of {}",
            i + 1,
            sizes.len()
        )));
        r.sleep(Duration::from_millis(p.file_ms)).await?;
    }

    r.report(Report::new().step(3, 3, PLAN[2]).percent(99.5).message("Writing the summary"));
    r.sleep(Duration::from_millis(150)).await?;
    Ok(DiscoverResult {
        files: u32::try_from(sizes.len()).unwrap_or(u32::MAX),
        directories,
        bytes: total,
        sha256: hex(&hasher.finalize()),
    })
}
