//! `sse-progress watch`: a job's stream drawn as a terminal progress bar.

use std::time::Duration;

use eventsource_stream::Eventsource;
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use reqwest::{StatusCode, Url};

use crate::model::{JobId, JobStatus, LogLine, Snapshot};

/// Attempts to re-attach after a dropped stream before giving up.
const MAX_RETRIES: u32 = 8;

/// How following a job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The job completed.
    Completed,
    /// The job failed.
    Failed,
    /// The job was cancelled.
    Cancelled,
    /// It could not be followed to its end.
    Unfollowable,
    /// The server stopped while it ran and it could not continue.
    Interrupted,
}

/// The event-stream URL for a job id (on `server`) or for a URL of the job's page, status
/// resource or stream.
pub fn events_url(target: &str, server: &str) -> Result<Url, String> {
    let (base, id) = match target.parse::<JobId>() {
        Ok(id) => (Url::parse(server).map_err(|e| format!("--server {server:?} is not a URL: {e}"))?, id),
        Err(_) => {
            let url = Url::parse(target).map_err(|_| {
                format!("{target:?} is neither a job id nor a URL of a job (such as http://host/jobs/ID)")
            })?;
            let id = url
                .path_segments()
                .and_then(|mut segments| segments.find_map(|s| s.parse::<JobId>().ok()))
                .ok_or_else(|| format!("the URL {target:?} does not name a job id"))?;
            (url, id)
        }
    };
    base.join(&format!("/api/jobs/{id}/events")).map_err(|e| e.to_string())
}

/// How progress is shown: a bar on a terminal, one line per change otherwise.
struct Display {
    bar: ProgressBar,
}

impl Display {
    fn new() -> Self {
        let bar = ProgressBar::with_draw_target(Some(1000), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{spinner} [{bar:40.cyan/blue}] {percent:>3}% {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("█▉▊▋▌▍▎▏ "),
        );
        bar.enable_steady_tick(Duration::from_millis(120));
        Self { bar }
    }

    fn show(&self, s: &Snapshot) {
        let label = s.step_label().unwrap_or_else(|| s.status.to_string());
        let line = if s.message.is_empty() { label } else { format!("{label} · {}", s.message) };
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // 0..=1000 after clamp
        self.bar.set_position((s.progress.clamp(0.0, 100.0) * 10.0) as u64);
        self.bar.set_message(line.clone());
        if self.bar.is_hidden() {
            println!("[{}] {:>3}% {line}", s.seq, s.percent());
        }
    }

    fn log(&self, line: &LogLine) {
        let fields: Vec<String> = line.fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let text = format!(
            "{} {:<5} {} {}",
            crate::model::clock(line.ts),
            line.level.as_str().to_uppercase(),
            line.message,
            fields.join(" ")
        );
        if self.bar.is_hidden() {
            println!("{}", text.trim_end());
        } else {
            self.bar.println(text.trim_end());
        }
    }

    fn note(&self, text: &str) {
        if self.bar.is_hidden() {
            eprintln!("{text}");
        } else {
            self.bar.set_message(text.to_string());
        }
    }

    fn finish(&self, last: Option<&Snapshot>) -> Outcome {
        self.bar.finish_and_clear();
        let Some(s) = last else {
            eprintln!("the stream ended without telling how the job ended");
            return Outcome::Unfollowable;
        };
        match s.status {
            JobStatus::Completed => {
                let result = s.data.as_ref().map(|d| serde_json::to_string_pretty(d).unwrap_or_default());
                println!("Completed: {}", result.unwrap_or_default());
                Outcome::Completed
            }
            JobStatus::Failed => {
                eprintln!("Failed: {}", s.error.as_deref().unwrap_or("no reason given"));
                Outcome::Failed
            }
            JobStatus::Cancelled => {
                eprintln!("Cancelled");
                Outcome::Cancelled
            }
            JobStatus::Interrupted => {
                eprintln!("Interrupted: {}", s.error.as_deref().unwrap_or("the server stopped while it ran"));
                Outcome::Interrupted
            }
            JobStatus::Pending | JobStatus::Running => Outcome::Unfollowable,
        }
    }
}

/// Follows the stream at `url` to the job's end, re-attaching after drops. `token` is the
/// owner token of the job (sent as `Authorization: Bearer`).
pub async fn watch(url: Url, token: Option<String>) -> Outcome {
    let client = reqwest::Client::new();
    let display = Display::new();
    let mut last: Option<Snapshot> = None;
    // The newest event seen, state or log line: where a re-attached stream resumes.
    let mut cursor = 0u64;
    let mut attempt = 0u32;
    loop {
        let mut request = client.get(url.clone()).header("accept", "text/event-stream");
        if let Some(token) = &token {
            request = request.bearer_auth(token);
        }
        if cursor > 0 {
            request = request.header("last-event-id", cursor.to_string());
        }
        match request.send().await {
            Ok(response) if response.status() == StatusCode::OK => {
                let mut events = response.bytes_stream().eventsource();
                while let Some(event) = events.next().await {
                    let Ok(event) = event else { break };
                    match event.event.as_str() {
                        "end" => return display.finish(last.as_ref()),
                        "pending" | "progress" | "completed" | "failed" | "cancelled" | "interrupted" | "reset" => {
                            if let Ok(state) = serde_json::from_str::<Snapshot>(&event.data) {
                                if state.seq > cursor {
                                    attempt = 0;
                                    cursor = state.seq;
                                    display.show(&state);
                                    last = Some(state);
                                }
                            }
                        }
                        "log" => {
                            if let Ok(line) = serde_json::from_str::<LogLine>(&event.data) {
                                if line.seq > cursor {
                                    attempt = 0;
                                    cursor = line.seq;
                                    display.log(&line);
                                }
                            }
                        }
                        _ => {}
                    }
                }
            }
            // Everything up to the job's terminal event was seen (the stream dropped before
            // its `end`): nothing more will come.
            Ok(response) if response.status() == StatusCode::NO_CONTENT => return display.finish(last.as_ref()),
            Ok(response) if response.status().is_client_error() => {
                display.bar.finish_and_clear();
                let detail = response
                    .json::<serde_json::Value>()
                    .await
                    .ok()
                    .and_then(|p| p["detail"].as_str().map(str::to_owned))
                    .unwrap_or_else(|| "the server refused the request".into());
                eprintln!("{detail}");
                return Outcome::Unfollowable;
            }
            Ok(_) | Err(_) => {}
        }
        attempt += 1;
        if attempt > MAX_RETRIES {
            display.bar.finish_and_clear();
            eprintln!("Connection lost: gave up after {MAX_RETRIES} attempts to re-attach to {url}");
            return Outcome::Unfollowable;
        }
        // Jittered, so that many terminals that lost one server do not all come back at once.
        let wait = crate::retry::backoff(Duration::from_millis(250), Duration::from_secs(5), attempt, fastrand::f64());
        display.note(&format!("Reconnecting (attempt {attempt} of {MAX_RETRIES})..."));
        tokio::time::sleep(wait).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_resolve_to_the_job_stream() {
        let id = "67e55044-10b1-426f-9247-bb680e5fe0c8";
        let expected = format!("http://h:1/api/jobs/{id}/events");
        assert_eq!(events_url(id, "http://h:1").expect("id").as_str(), expected);
        for url in [format!("http://h:1/jobs/{id}"), format!("http://h:1/api/jobs/{id}"), expected.clone()] {
            assert_eq!(events_url(&url, "http://other").expect("url").as_str(), expected);
        }
        assert!(events_url("nope", "http://h:1").unwrap_err().contains("neither a job id nor a URL"));
        assert!(events_url("http://h:1/jobs/x", "http://h:1").unwrap_err().contains("does not name a job id"));
    }
}
