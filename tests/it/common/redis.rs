//! A `redis-server` of a test's (or a benchmark's) own, on a free port, stopped when dropped.
//!
//! One file for every harness: the integration tests use it as `common::redis`, the engine's
//! unit tests and the benchmarks include it by path, so the port race it handles is handled
//! once. Plain `std`: it blocks for the few milliseconds a server takes to start.

#![allow(dead_code)] // each harness uses a different part

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `redis-server`; killed (and reaped) when dropped.
pub struct RedisProcess {
    child: Child,
    /// Where it listens, as a store URL: `redis://127.0.0.1:PORT/0`.
    pub url: String,
}

impl RedisProcess {
    /// Starts one without persistence and waits (at most 10 s) until it answers.
    pub fn start() -> Self {
        Self::on_a_free_port(&["--save", "", "--appendonly", "no"])
    }

    /// Starts one that keeps every write in an append-only file in `dir` (fsync'd at each
    /// write), on `port` (0: a free one): started again on the same `dir` and port, it has
    /// everything back.
    pub fn start_durable(dir: &Path, port: u16) -> Self {
        let dir = dir.display().to_string();
        let persistence = ["--save", "", "--appendonly", "yes", "--appendfsync", "always", "--dir", &dir];
        match port {
            0 => Self::on_a_free_port(&persistence),
            port => Self::spawn(port, &persistence).unwrap_or_else(|why| panic!("{why}")),
        }
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.url.rsplit(':').next().and_then(|p| p.split('/').next()).and_then(|p| p.parse().ok()).expect("a port")
    }

    /// Sends `signal` (e.g. `STOP` to make it hang without closing a connection, `CONT`).
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill").args([&format!("-{signal}"), &self.child.id().to_string()]).status();
        assert!(status.is_ok_and(|s| s.success()), "kill -{signal} redis-server failed");
    }

    /// On a port that was free a moment ago: another process (a parallel test's) may take it
    /// first, and then this one tries another.
    fn on_a_free_port(args: &[&str]) -> Self {
        let mut last = String::new();
        for _ in 0..5 {
            let port =
                std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
            match Self::spawn(port, args) {
                Ok(redis) => return redis,
                Err(why) => last = why,
            }
        }
        panic!("{last}, five times")
    }

    fn spawn(port: u16, args: &[&str]) -> Result<Self, String> {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server runs (scripts/setup installs it)");
        let mut redis = Self { child, url: format!("redis://127.0.0.1:{port}/0") };
        let deadline = Instant::now() + Duration::from_secs(10);
        // This very process answering, not only a connection accepted: a connection to a port
        // nobody listens on can succeed by connecting to itself (the port is in the range the
        // client side's own ports come from), and another test's server may hold the port.
        let pid = redis.child.id();
        while server_pid(port) != Some(pid) {
            if let Ok(Some(status)) = redis.child.try_wait() {
                return Err(format!("redis-server on port {port} exited at start ({status}); is the port taken?"));
            }
            assert!(Instant::now() < deadline, "redis-server did not answer within 10 s");
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(redis)
    }
}

/// The process id of the Redis server answering on `port` (from `INFO server`), if one does.
fn server_pid(port: u16) -> Option<u32> {
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    tcp.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    tcp.write_all(b"INFO server\r\n").ok()?;
    let mut answer = Vec::new();
    let mut chunk = [0u8; 4096];
    // A bulk reply: `$LEN`, then the text, which names `process_id:` well before its end.
    while !String::from_utf8_lossy(&answer).contains("\r\nrun_id:") {
        let read = tcp.read(&mut chunk).ok().filter(|n| *n > 0)?;
        answer.extend_from_slice(&chunk[..read]);
    }
    let text = String::from_utf8_lossy(&answer);
    text.lines().find_map(|line| line.strip_prefix("process_id:")).and_then(|pid| pid.trim().parse().ok())
}

impl Drop for RedisProcess {
    fn drop(&mut self) {
        // A paused server must be woken to die promptly (SIGKILL works anyway; CONT is harmless).
        let _ = Command::new("kill").args(["-CONT", &self.child.id().to_string()]).status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
