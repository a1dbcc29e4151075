//! A tiny file system of the test's own (tmpfs), to fill up: a full disk without filling the
//! machine's. Mounting needs root (CI and these machines run as root).

use std::io::Write;
use std::path::{Path, PathBuf};

/// A mounted tmpfs, unmounted when dropped.
pub struct SmallDisk {
    mount: PathBuf,
    _dir: tempfile::TempDir,
}

impl SmallDisk {
    /// Mounts a tmpfs of `size` (e.g. `256k`, `4m`); `None`, after saying so, when this user
    /// cannot mount one (the calling test then has nothing to check).
    pub fn mount(size: &str, test: &str) -> Option<Self> {
        let dir = tempfile::tempdir().expect("a folder");
        let mount = dir.path().join("small");
        std::fs::create_dir(&mount).expect("a mount point");
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&mount)
            .status()
            .is_ok_and(|s| s.success());
        if !mounted {
            // A test that did not run must not pass unnoticed: only an explicit choice skips.
            assert!(
                std::env::var_os("SSE_PROGRESS_SKIP_ROOT_TESTS").is_some(),
                "{test}: cannot mount a small tmpfs (this needs root); set SSE_PROGRESS_SKIP_ROOT_TESTS=1 to skip it"
            );
            eprintln!("{test}: skipped (SSE_PROGRESS_SKIP_ROOT_TESTS), this user cannot mount a small tmpfs");
            return None;
        }
        Some(Self { mount, _dir: dir })
    }

    pub fn path(&self) -> &Path {
        &self.mount
    }

    /// Fills it to the last byte with one file, and returns that file.
    pub fn fill(&self) -> PathBuf {
        let filler = self.mount.join("filler");
        let mut file = std::fs::File::create(&filler).expect("created");
        let mut chunk = vec![0u8; 64 * 1024];
        while !chunk.is_empty() {
            if file.write_all(&chunk).is_err() {
                chunk.truncate(chunk.len() / 2);
            }
        }
        filler
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.mount).status();
    }
}
