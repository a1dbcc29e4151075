//! A store the server cannot use is a clear message and a non-zero exit at start-up, never a
//! panic: an unknown scheme, an unusable path, a file another process holds, a file that is
//! not a job store, a full disk.

use crate::common;

use common::disk::SmallDisk;
use common::process::{sqlite_store, ServerProcess, StartFailure};

async fn refused(store: &str) -> StartFailure {
    match ServerProcess::try_start(store, 0).await {
        Ok(server) => {
            server.kill().await;
            panic!("the server started on {store:?}");
        }
        Err(failure) => failure,
    }
}

fn assert_clear(failure: &StartFailure, says: &[&str]) {
    assert_eq!(failure.code, Some(1), "a non-zero exit: {}", failure.stderr);
    assert!(!failure.stderr.contains("panicked"), "no panic: {}", failure.stderr);
    for words in says {
        assert!(failure.stderr.contains(words), "{words:?} not in: {}", failure.stderr);
    }
}

#[tokio::test]
async fn an_unknown_store_scheme_names_the_ones_that_exist() {
    let failure = refused("postgres://localhost/jobs").await;
    assert_clear(
        &failure,
        &["SSE_PROGRESS_STORE=\"postgres://localhost/jobs\"", "sqlite:PATH", "redis://HOST:PORT/DB", "memory"],
    );
}

#[tokio::test]
async fn a_redis_that_does_not_answer_is_named() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
    let failure = refused(&format!("redis://127.0.0.1:{port}/0")).await;
    assert_clear(
        &failure,
        &[&format!("cannot reach the job store at redis://127.0.0.1:{port}/0"), "SSE_PROGRESS_STORE"],
    );
    let failure = refused("redis://:hunter2@127.0.0.1:1/0").await;
    assert_clear(&failure, &["cannot reach the job store at redis://", "127.0.0.1:1/0"]);
    assert!(!failure.stderr.contains("hunter2"), "no password in messages: {}", failure.stderr);
}

#[tokio::test]
async fn a_path_that_cannot_be_a_file_says_why() {
    let dir = tempfile::tempdir().expect("a folder");
    let file = dir.path().join("plain-file");
    std::fs::write(&file, "not a folder").expect("written");
    let failure = refused(&format!("sqlite:{}", file.join("jobs.db").display())).await;
    assert_clear(&failure, &["cannot use", "jobs.db", "cannot create its folder"]);
    let failure = refused(&format!("sqlite:{}", dir.path().display())).await;
    assert_clear(&failure, &["it is a folder"]);
}

#[tokio::test]
async fn a_file_held_by_another_server_is_refused() {
    let dir = tempfile::tempdir().expect("a folder");
    let store = sqlite_store(dir.path());
    let first = ServerProcess::start(&store, 0).await;
    let failure = refused(&store).await;
    assert_clear(&failure, &["in use by another sse-progress process", "SSE_PROGRESS_STORE=sqlite:OTHER_PATH"]);
    first.terminate().await;
    // Once it is gone, the file is free again.
    ServerProcess::start(&store, 0).await.terminate().await;
}

#[tokio::test]
async fn a_file_that_is_not_a_job_store_is_left_alone() {
    let dir = tempfile::tempdir().expect("a folder");
    let path = dir.path().join("jobs.db");
    let garbage: Vec<u8> = (0..8192u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&path, &garbage).expect("written");
    let failure = refused(&sqlite_store(dir.path())).await;
    assert_clear(&failure, &["is not an sse-progress job store", "move it away"]);
    assert_eq!(std::fs::read(&path).expect("still there"), garbage, "nothing was changed");
}

#[tokio::test]
async fn a_full_disk_is_told_at_start_up() {
    let Some(disk) = SmallDisk::mount("256k", "a_full_disk_is_told_at_start_up") else { return };
    disk.fill();
    let failure = refused(&sqlite_store(disk.path())).await;
    assert_clear(&failure, &["is full", "free some space"]);
}

/// Runs `sse-progress ARGS` with `env` and returns its exit code and what it said on stderr.
async fn refused_settings(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_sse-progress"))
        .args(args)
        .envs(env.iter().copied())
        .env("LEPTOS_SITE_ADDR", "127.0.0.1:0")
        .env("SSE_PROGRESS_STORE", "memory")
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(std::time::Duration::from_secs(30), output)
        .await
        .expect("it exits at once")
        .expect("the binary runs");
    (output.status.code(), String::from_utf8_lossy(&output.stderr).into_owned())
}

#[tokio::test]
async fn a_setting_out_of_range_names_what_was_set_and_what_is_allowed() {
    // Set in the environment: the message names the variable, not a flag nobody typed.
    for args in [&[][..], &["serve"][..]] {
        let (code, stderr) = refused_settings(args, &[("SSE_PROGRESS_MAX_JOBS", "0")]).await;
        assert_eq!(code, Some(2), "a usage error: {stderr}");
        assert_eq!(
            stderr.trim(),
            "sse-progress: environment variable SSE_PROGRESS_MAX_JOBS=\"0\" is not valid: a whole number from 1 to 10000000"
        );
    }
    let (code, stderr) = refused_settings(&[], &[("SSE_PROGRESS_TRUSTED_PROXIES", "10.0.0.1, nginx")]).await;
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("environment variable SSE_PROGRESS_TRUSTED_PROXIES=\"10.0.0.1, nginx\""), "{stderr}");
    assert!(stderr.contains("\"nginx\" is not an IP address or network"), "{stderr}");
    // Typed as a flag: clap's message, which names the flag.
    let (code, stderr) = refused_settings(&["serve", "--max-running", "0"], &[("SSE_PROGRESS_MAX_RUNNING", "5")]).await;
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("'--max-running <N>'") && stderr.contains("a whole number from 1 to 100000"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
