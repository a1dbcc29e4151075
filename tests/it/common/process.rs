//! The real `sse-progress` binary as a server process: started on a port, told where its store
//! is, and stopped the hard way (SIGKILL) or the polite way (SIGTERM), for restart tests.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// A running server process.
pub struct ServerProcess {
    pub child: Child,
    pub port: u16,
}

/// What a server process that would not start said.
pub struct StartFailure {
    pub code: Option<i32>,
    pub stderr: String,
}

fn command(store: &str, port: u16) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sse-progress"));
    command
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("LEPTOS_SITE_ADDR", format!("127.0.0.1:{port}"))
        .env("SSE_PROGRESS_STORE", store)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .env_remove("SSE_PROGRESS_SERVER")
        .kill_on_drop(true)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

impl ServerProcess {
    /// Starts the server on `store` (e.g. `sqlite:/tmp/x/jobs.db`) and `port` (0: any free
    /// one), and waits until it listens.
    pub async fn start(store: &str, port: u16) -> Self {
        Self::start_with(store, port, &[]).await
    }

    /// Like [`start`](Self::start), with more environment variables.
    pub async fn start_with(store: &str, port: u16, env: &[(&str, &str)]) -> Self {
        match Self::try_start_with(store, port, env).await {
            Ok(server) => server,
            Err(failure) => panic!("the server did not start ({:?}): {}", failure.code, failure.stderr),
        }
    }

    /// Starts the server, or says how it refused to start.
    pub async fn try_start(store: &str, port: u16) -> Result<Self, StartFailure> {
        Self::try_start_with(store, port, &[]).await
    }

    async fn try_start_with(store: &str, port: u16, env: &[(&str, &str)]) -> Result<Self, StartFailure> {
        let mut command = command(store, port);
        command.envs(env.iter().copied());
        let mut child = command.spawn().expect("the binary runs");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let line = tokio::time::timeout_at(deadline, lines.next_line()).await;
            match line {
                Ok(Ok(Some(line))) => {
                    if let Some(addr) = line.split("listening on http://").nth(1) {
                        let after_colon = addr.split(':').nth(1).unwrap_or_default();
                        let digits: String = after_colon.chars().take_while(char::is_ascii_digit).collect();
                        let port = digits.parse().expect("a port");
                        // Keep draining its output so it never blocks on a full pipe.
                        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
                        return Ok(Self { child, port });
                    }
                }
                Ok(Ok(None)) | Ok(Err(_)) => {
                    let status = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
                    let mut stderr = String::new();
                    if let Some(mut err) = child.stderr.take() {
                        use tokio::io::AsyncReadExt;
                        let _ = err.read_to_string(&mut stderr).await;
                    }
                    let code = status.ok().and_then(Result::ok).and_then(|s| s.code());
                    return Err(StartFailure { code, stderr });
                }
                Err(_) => panic!("the server neither listened nor exited within 30 s"),
            }
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    /// SIGKILL: the process dies at once, mid-write if it was writing.
    pub async fn kill(mut self) {
        self.child.kill().await.expect("killed");
    }

    /// Sends `signal` (e.g. `TERM`, `STOP`, `CONT`) to the process.
    pub fn signal(&self, signal: &str) {
        let pid = self.child.id().expect("running").to_string();
        let status =
            std::process::Command::new("kill").args([&format!("-{signal}"), &pid]).status().expect("kill runs");
        assert!(status.success(), "kill -{signal} {pid} failed");
    }

    /// SIGTERM, then waits for the process to exit; returns its exit code.
    pub async fn terminate(mut self) -> Option<i32> {
        self.signal("TERM");
        let status = tokio::time::timeout(Duration::from_secs(20), self.child.wait())
            .await
            .expect("exits within 20 s of SIGTERM")
            .expect("waited");
        status.code()
    }
}

/// `sqlite:` and the path of `jobs.db` inside `dir`.
pub fn sqlite_store(dir: &Path) -> String {
    format!("sqlite:{}", dir.join("jobs.db").display())
}

/// A `redis-server` of the test's own on a free port, without persistence, stopped when
/// dropped.
pub struct RedisProcess {
    child: std::process::Child,
    pub url: String,
}

impl RedisProcess {
    /// Starts it and waits (at most 10 s) until it answers.
    pub async fn start() -> Self {
        Self::on_a_free_port(&["--save", "", "--appendonly", "no"]).await
    }

    /// Starts one that keeps every write in an append-only file in `dir` (fsync'd at each
    /// write), on `port` (0: a free one): started again on the same `dir` and port, it has
    /// everything back.
    pub async fn start_durable(dir: &Path, port: u16) -> Self {
        let dir = dir.display().to_string();
        let persistence = ["--save", "", "--appendonly", "yes", "--appendfsync", "always", "--dir", &dir];
        match port {
            0 => Self::on_a_free_port(&persistence).await,
            port => Self::spawn(port, &persistence).await.unwrap_or_else(|why| panic!("{why}")),
        }
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.url.rsplit(':').next().and_then(|p| p.split('/').next()).and_then(|p| p.parse().ok()).expect("a port")
    }

    /// On a port that was free a moment ago: another process (a parallel test's) may take it
    /// first, and then this one tries another.
    async fn on_a_free_port(args: &[&str]) -> Self {
        let mut last = String::new();
        for _ in 0..5 {
            let port =
                std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
            match Self::spawn(port, args).await {
                Ok(redis) => return redis,
                Err(why) => last = why,
            }
        }
        panic!("{last}, five times")
    }

    async fn spawn(port: u16, args: &[&str]) -> Result<Self, String> {
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server runs (scripts/setup installs it)");
        let mut redis = Self { child, url: format!("redis://127.0.0.1:{port}/0") };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        // A PING answered, not only a connection accepted: a connection to a port nobody
        // listens on can succeed by connecting to itself (the port is in the range the client
        // side's own ports come from), and another process may hold the port.
        while !answers_ping(port).await {
            if let Ok(Some(status)) = redis.child.try_wait() {
                return Err(format!("redis-server on port {port} exited at start ({status}); is the port taken?"));
            }
            assert!(tokio::time::Instant::now() < deadline, "redis-server did not answer within 10 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if let Ok(Some(status)) = redis.child.try_wait() {
            return Err(format!("redis-server on port {port} exited ({status}); another one answered there"));
        }
        Ok(redis)
    }
}

/// Whether a Redis server answers `PING` on `port`.
async fn answers_ping(port: u16) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut tcp) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else { return false };
    if tcp.write_all(b"PING\r\n").await.is_err() {
        return false;
    }
    let mut answer = [0u8; 7];
    let read = tokio::time::timeout(Duration::from_secs(1), tcp.read_exact(&mut answer)).await;
    matches!(read, Ok(Ok(_))) && &answer == b"+PONG\r\n"
}

impl Drop for RedisProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
