//! The real `sse-progress` binary as a server process: started on a port, told where its store
//! is, and stopped the hard way (SIGKILL) or the polite way (SIGTERM), for restart tests.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub use super::redis::RedisProcess;

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
