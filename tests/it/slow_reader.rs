//! A client that does not read while a busy job runs: the server buffers nothing for it
//! beyond a small socket buffer (its stream simply waits), a fast client of the same job gets
//! every event meanwhile, and when the slow one reads again, past the replay window, it is told
//! with a `reset` carrying the whole state, then follows to the end with no gap after it.

use crate::common;

use std::time::Duration;

use common::{ids, read_events, TestApp};
use serde_json::json;
use sse_progress::jobs::EngineConfig;
use sse_progress::model::JobStatus;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_falls_out_of_the_replay_window_gets_a_reset_and_holds_up_no_one() {
    let app = TestApp::spawn_with(EngineConfig { replay_capacity: 32, ..EngineConfig::default() }).await;
    // About 300 KB of events: far more than the socket buffers hold.
    let id = app.start("ticker", json!({"steps": 1000, "interval_ms": 1})).await;

    // The slow client: a 4 KiB receive buffer, and it reads nothing until the job has ended.
    let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
    socket.set_recv_buffer_size(4096).expect("a small buffer");
    let mut slow = socket.connect(app.addr).await.expect("connect");
    let head = format!("GET /api/jobs/{id}/events HTTP/1.1\r\nHost: test\r\n\r\n");
    slow.write_all(head.as_bytes()).await.expect("request");

    // A fast client of the same job gets every event, in order, meanwhile.
    let (fast, _) = read_events(app.events(&id, None, "").await, usize::MAX).await;
    let fast_ids = ids(&fast);
    let last = *fast_ids.last().expect("events");
    assert_eq!(fast_ids, (1..=last).collect::<Vec<_>>());
    assert!(fast.iter().all(|e| e.event != "reset"));
    let state = app.engine.snapshot(id.parse().expect("id")).await.expect("the store answers").expect("kept");
    assert_eq!(state.status, JobStatus::Completed);

    // Now the slow one reads: what the socket held, then a reset, then the rest to `end`.
    let mut bytes = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), slow.read_to_end(&mut bytes)).await.expect("ends").expect("reads");
    let text = String::from_utf8_lossy(&bytes);
    let blocks: Vec<&str> = text.split("\n\n").collect();
    let reset = blocks.iter().position(|b| b.contains("event: reset")).expect("a reset once it fell behind");
    let seq = |block: &str| block.lines().find_map(|l| l.strip_prefix("id: ")).and_then(|s| s.parse::<u64>().ok());
    let before: Vec<u64> = blocks[..reset].iter().filter_map(|b| seq(b)).collect();
    let after: Vec<u64> = blocks[reset..].iter().filter_map(|b| seq(b)).collect();
    assert!(before.len() < 400, "the server held only a socket's worth for it, not the job: {} events", before.len());
    assert!(before.windows(2).all(|w| w[1] == w[0] + 1), "in order up to the reset");
    assert!(after[0] > before.last().copied().unwrap_or(0) + 32, "it had fallen out of the window");
    assert_eq!(after, (after[0]..=last).collect::<Vec<_>>(), "no gap after the reset");
    assert!(blocks.iter().any(|b| b.contains("event: end")), "and it reached the end");
}
