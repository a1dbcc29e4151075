//! A client that vanishes without closing its connection (its network goes away: no FIN, no
//! RST, nothing it receives is acknowledged) is noticed, and its stream released, within 45 s.
//!
//! A real vanishing, not a mock: the client (`curl`) runs in a network namespace of its own,
//! joined to this one by a veth pair, and its end of the pair goes down in the middle of the
//! stream. Needs root and iproute2 (`ip`), as the CI machines have.

use crate::common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::TestApp;
use serde_json::json;
use sse_progress::jobs::{kinds, EngineConfig};

/// A network namespace joined to this one by a veth pair; removed on drop.
struct Namespace {
    name: String,
    host_side: String,
    far_side: String,
    host_ip: String,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("iproute2's `ip` runs (apt-get install iproute2)");
    assert!(
        out.status.success(),
        "`ip {}` failed (this test needs root): {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

impl Namespace {
    fn create() -> Self {
        let tag = std::process::id() % 100_000;
        let net = Self {
            name: format!("sse-halfopen-{tag}"),
            host_side: format!("ssho{tag}a"),
            far_side: format!("ssho{tag}b"),
            host_ip: format!("10.213.{}.1", tag % 250),
        };
        let far_ip = format!("10.213.{}.2/30", tag % 250);
        ip(&["netns", "add", &net.name]);
        ip(&["link", "add", &net.host_side, "type", "veth", "peer", "name", &net.far_side]);
        ip(&["link", "set", &net.far_side, "netns", &net.name]);
        ip(&["addr", "add", &format!("{}/30", net.host_ip), "dev", &net.host_side]);
        ip(&["link", "set", &net.host_side, "up"]);
        ip(&["netns", "exec", &net.name, "ip", "addr", "add", &far_ip, "dev", &net.far_side]);
        ip(&["netns", "exec", &net.name, "ip", "link", "set", &net.far_side, "up"]);
        net
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        // Deleting the namespace deletes its end of the pair, and with it the other end.
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
        let _ = Command::new("ip").args(["link", "del", &self.host_side]).stderr(Stdio::null()).status();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_vanishes_without_closing_is_released_within_45_s() {
    let net = Namespace::create();
    let app = TestApp::spawn_at(&format!("{}:0", net.host_ip), EngineConfig::default(), kinds::builtin()).await;
    let id = app.start("ticker", json!({"steps": 10000, "interval_ms": 500})).await;
    let url = format!("http://{}/api/jobs/{id}/events", app.addr);
    let mut curl = Command::new("ip")
        .args(["netns", "exec", &net.name, "curl", "-sN", &url])
        .stdout(Stdio::null())
        .spawn()
        .expect("curl runs in the namespace");
    let open_streams = || async { app.engine.stats().await.subscriptions_open };
    let deadline = Instant::now() + Duration::from_secs(10);
    while open_streams().await != 1 {
        assert!(Instant::now() < deadline, "the client in the namespace never opened its stream");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The client's network goes away: it sends nothing more, not even a reset.
    ip(&["netns", "exec", &net.name, "ip", "link", "set", &net.far_side, "down"]);
    let gone = Instant::now();
    while open_streams().await != 0 {
        assert!(gone.elapsed() < Duration::from_secs(45), "the stream of a vanished client was still open after 45 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("a vanished client's stream was released after {:.1} s", gone.elapsed().as_secs_f64());
    let _ = curl.kill();
    let _ = curl.wait();
}
