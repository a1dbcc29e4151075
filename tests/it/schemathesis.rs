//! Schemathesis against the real server and its own `/api/openapi.json`: every check
//! (no server error, every answer as the document says, stream events included; what the
//! document allows is accepted and what it does not is refused), over generated, boundary
//! and stateful requests that follow the document's links from a started job to its status,
//! events, logs, result and cancellation.
//!
//! Needs Schemathesis 4.32 or later (`scripts/setup` installs it from PyPI).

use crate::common;

use common::TestApp;
use sse_progress::jobs::EngineConfig;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_does_what_its_openapi_document_says() {
    // Room for every job the run starts (it starts hundreds, some of them endless), two at a
    // time so that they do not take the machine.
    let config = EngineConfig {
        max_running: 2,
        max_queued: 1_000_000,
        max_jobs: 1_000_000,
        max_active_per_owner: 1_000_000,
        ..EngineConfig::default()
    };
    let app = TestApp::spawn_with(config).await;
    let base = app.url("");
    // One owner for the whole run, so that a job started by one request can be seen by the next.
    let token = "5c".repeat(32);
    // Schemathesis keeps a cache of the failures it found in `.schemathesis/` of its working
    // directory and replays them next time: each run starts from nothing instead.
    let workdir = tempfile::tempdir().expect("a temporary directory");
    let output = tokio::process::Command::new("python3")
        .current_dir(workdir.path())
        .args(["-m", "schemathesis.cli", "run"])
        .arg(format!("{base}/api/openapi.json"))
        .args(["--url", &base, "--checks", "all", "--max-examples", "25", "--seed", "7"])
        // DELETE /api/jobs/{id} cancels the job, whose resource stays (now `cancelled`, with
        // its events and logs) until its retention ends; it is not a deletion.
        .args(["--exclude-checks", "use_after_free"])
        // Event streams run until their job ends (the owner's never): read each for at most
        // this long, as an `EventSource` would before a reconnect.
        .args(["--request-timeout", "1", "--no-color"])
        .args(["-H", &format!("Authorization: Bearer {token}")])
        .output()
        .await
        .expect("python3 runs (scripts/setup installs Schemathesis)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "Schemathesis found problems:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // It reached the job resources through the links, not only with made-up ids.
    let links = stdout.lines().find(|l| l.contains("API Links:")).unwrap_or_default().to_string();
    let covered: u32 =
        links.split_whitespace().skip_while(|w| *w != "Links:").nth(1).and_then(|n| n.parse().ok()).unwrap_or(0);
    assert!(covered >= 3, "the stateful phase followed the document's links: {links}\n{stdout}");
    eprintln!(
        "{}",
        stdout.lines().filter(|l| l.contains("generated") || l.contains("Links")).collect::<Vec<_>>().join("\n")
    );
}
