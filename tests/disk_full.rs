//! The disk fills up while jobs run: the server stays up, `/readyz` says it is not ready and
//! why, nothing already accepted is lost, and everything carries on by itself once there is
//! room again. A real (tiny) file system, a real server process.

mod common;

use std::time::Duration;

use common::process::{sqlite_store, ServerProcess};
use eventsource_stream::Eventsource;
use futures::StreamExt;
use serde_json::{json, Value};

/// Waits (at most `secs`) until `/readyz` answers `status`; returns its body.
async fn wait_ready(server: &ServerProcess, status: u16, secs: u64) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let response = reqwest::get(server.url("/readyz")).await.expect("request");
        if response.status() == status {
            return response.json().await.expect("json");
        }
        assert!(tokio::time::Instant::now() < deadline, "/readyz never answered {status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_full_disk_makes_the_server_not_ready_and_loses_nothing() {
    let dir = tempfile::tempdir().expect("a folder");
    let mount = dir.path().join("small");
    std::fs::create_dir(&mount).expect("a mount point");
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=4m", "tmpfs"])
        .arg(&mount)
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("a_full_disk_makes_the_server_not_ready_and_loses_nothing: not run, this user cannot mount a small tmpfs");
        return;
    }
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(mount.clone());

    let server = ServerProcess::start(&sqlite_store(&mount), 0).await;
    wait_ready(&server, 200, 10).await;
    let client = reqwest::Client::new();
    let started: Value = client
        .post(server.url("/api/jobs"))
        .json(&json!({"kind": "ticker", "params": {"steps": 1000, "interval_ms": 10}}))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    let (id, token) = (started["id"].as_str().expect("id"), started["owner_token"].as_str().expect("token"));

    // Fill the disk to the last byte.
    let filler = mount.join("filler");
    let mut chunk = vec![0u8; 64 * 1024];
    {
        use std::io::Write;
        let mut file = std::fs::File::create(&filler).expect("created");
        while !chunk.is_empty() {
            if file.write_all(&chunk).is_err() {
                chunk.truncate(chunk.len() / 2);
            }
        }
    }
    let not_ready = wait_ready(&server, 503, 30).await;
    assert!(not_ready["reason"].as_str().expect("a reason").contains("full"), "{not_ready}");
    let health = reqwest::get(server.url("/healthz")).await.expect("request");
    assert_eq!(health.status(), 200, "still alive");

    // Room again: it catches up by itself, and the job's events have no gap.
    std::fs::remove_file(&filler).expect("removed");
    wait_ready(&server, 200, 30).await;
    let stream = client
        .get(server.url(&format!("/api/jobs/{id}/events")))
        .bearer_auth(token)
        .send()
        .await
        .expect("request");
    let mut events = stream.bytes_stream().eventsource();
    let mut seqs = Vec::new();
    let mut last = String::new();
    while let Ok(Some(Ok(event))) = tokio::time::timeout(Duration::from_secs(60), events.next()).await {
        if event.event == "end" {
            break;
        }
        if !event.event.is_empty() {
            seqs.push(event.id.parse::<u64>().expect("a number"));
            last = event.event;
        }
    }
    assert_eq!(last, "completed");
    let first = *seqs.first().expect("events");
    assert_eq!(seqs, (first..first + seqs.len() as u64).collect::<Vec<_>>(), "no gap, no repeat");
    server.terminate().await;
}
