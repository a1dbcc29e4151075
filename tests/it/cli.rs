//! The terminal client, as a person runs it: the real binary against a real server, through a
//! proxy that drops the first stream part-way to show that `watch` re-attaches with no gap.

use crate::common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::TestApp;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use common::cli;

/// The `[seq]` numbers of the lines the watcher printed, in order.
fn printed_seqs(stdout: &str) -> Vec<u64> {
    stdout.lines().filter_map(|l| l.strip_prefix('[')?.split(']').next()?.parse().ok()).collect()
}

/// A TCP proxy to `upstream` that cuts its first connection after `cut_after` bytes from the
/// server (a restarting proxy, a dropped Wi-Fi), and passes later ones through whole.
async fn cutting_proxy(upstream: SocketAddr, cut_after: usize) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let connections = Arc::new(AtomicUsize::new(0));
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let first = connections.fetch_add(1, Ordering::SeqCst) == 0;
            tokio::spawn(async move {
                let Ok(mut server) = TcpStream::connect(upstream).await else { return };
                if !first {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    return;
                }
                let (mut client_read, mut client_write) = client.split();
                let (mut server_read, mut server_write) = server.split();
                let upload = tokio::io::copy(&mut client_read, &mut server_write);
                let download = async {
                    let mut sent = 0;
                    let mut buf = [0u8; 64];
                    while sent < cut_after {
                        let n = server_read.read(&mut buf).await.unwrap_or(0);
                        if n == 0 {
                            break;
                        }
                        let n = n.min(cut_after - sent);
                        if client_write.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                        sent += n;
                    }
                };
                tokio::select! {
                    _ = upload => {},
                    () = download => {},
                }
                // Dropping both halves here closes the connection mid-stream.
            });
        }
    });
    addr
}

#[tokio::test]
async fn run_starts_a_job_prints_its_progress_and_exits_0_with_the_result() {
    let app = TestApp::spawn().await;
    let server = app.url("");
    let out = cli(&["run", "ticker", "--param", "steps=3", "-p", "interval_ms=20", "--server", &server]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "stdout: {stdout}\nstderr: {}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("Step 3 of 3: Tick 3"), "{stdout}");
    assert!(stdout.contains("Completed: {"), "{stdout}");
    assert!(stdout.contains("\"ticks\": 3"), "{stdout}");
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("Started ticker job "));
}

#[tokio::test]
async fn the_exit_code_says_how_the_job_ended() {
    let app = TestApp::spawn().await;
    let server = app.url("");
    let failed =
        cli(&["run", "failing", "-p", "steps=2", "-p", "fail_at_step=2", "-p", "step_ms=20", "--server", &server])
            .await;
    assert_eq!(failed.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&failed.stderr).contains("Failed: Parsing records failed at record"));

    let id = app.start("ticker", json!({"steps": 100, "interval_ms": 100})).await;
    let url = format!("{server}/jobs/{id}");
    let watcher = tokio::spawn(async move { cli(&["watch", &url]).await });
    // Cancelled once the watcher follows it.
    app.wait_for_streams(1).await;
    app.engine.cancel(id.parse().expect("id")).await.expect("the store answers");
    let cancelled = watcher.await.expect("watcher");
    assert_eq!(cancelled.status.code(), Some(3), "{}", String::from_utf8_lossy(&cancelled.stderr));

    let unknown = cli(&["watch", "00000000-0000-4000-8000-000000000000", "--server", &app.url("")]).await;
    assert_eq!(unknown.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no job with id"));
    let refused = cli(&["run", "nope", "--server", &app.url("")]).await;
    assert_eq!(refused.status.code(), Some(4));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("the known kinds are: checksum, discover, failing, ticker")
    );
    let usage = cli(&["watch", "not-a-job"]).await;
    assert_eq!(usage.status.code(), Some(2));
}

#[tokio::test]
async fn watch_reattaches_after_a_dropped_stream_with_no_gap() {
    let app = TestApp::spawn().await;
    let proxy = cutting_proxy(app.addr, 1200).await;
    let id = app.start("ticker", json!({"steps": 8, "interval_ms": 60})).await;
    let out = cli(&["watch", &id, "--server", &format!("http://{proxy}")]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "stdout: {stdout}\nstderr: {stderr}");
    assert!(stderr.contains("Reconnecting (attempt 1 of 8)..."), "the drop happened: {stderr}");
    let seqs = printed_seqs(&stdout);
    let newest = *seqs.last().expect("lines");
    assert_eq!(seqs, (1..=newest).collect::<Vec<_>>(), "every event once, in order: {stdout}");
    assert!(stdout.contains("Completed: {"));
}
