//! The terminal client (server build only): `sse-progress watch` follows a job's stream with
//! a progress bar, re-attaching with `Last-Event-ID` after a drop; `sse-progress run` starts a
//! job through the REST API and watches it. The exit code says how the job ended.

#![allow(clippy::print_stdout, clippy::print_stderr)] // a terminal program talks on stdout

mod run;
mod watch;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::server::config::ServeSettings;

pub use run::{parse_param, run};
pub use watch::{events_url, watch, Outcome};

/// The command line of the `sse-progress` binary.
#[derive(Debug, Parser)]
#[command(name = "sse-progress", version, about = "Long-running jobs with live progress over Server-Sent Events")]
pub struct Cli {
    /// What to do; without one, serve the app.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the web app and API where LEPTOS_SITE_ADDR says (the default; without `serve`,
    /// the settings come from the environment alone).
    Serve(ServeSettings),
    /// Follow a job's progress in the terminal until it ends.
    Watch {
        /// A job id, or a URL of its page, status resource or event stream.
        target: String,
        /// The server, for a bare job id.
        #[arg(long, env = "SSE_PROGRESS_SERVER", default_value = "http://127.0.0.1:3000")]
        server: String,
        /// The owner token `run` (or `POST /api/jobs`) gave for the job.
        #[arg(long, env = "SSE_PROGRESS_TOKEN", hide_env_values = true)]
        token: Option<String>,
    },
    /// Start a job and follow it until it ends.
    Run {
        /// The job kind (see GET /api/job-kinds).
        kind: String,
        /// A param, as KEY=VALUE; VALUE is read as JSON when it can be (numbers, true), else as text.
        #[arg(short, long = "param", value_name = "KEY=VALUE", value_parser = parse_param)]
        params: Vec<(String, serde_json::Value)>,
        /// The server.
        #[arg(long, env = "SSE_PROGRESS_SERVER", default_value = "http://127.0.0.1:3000")]
        server: String,
    },
}

impl Outcome {
    /// The process exit code: 0 completed, 1 failed, 3 cancelled, 4 the job could not be
    /// followed (no such job, refused, connection lost), 5 interrupted (the server stopped
    /// while it ran). Usage errors exit with 2.
    pub fn exit_code(self) -> ExitCode {
        ExitCode::from(match self {
            Self::Completed => 0,
            Self::Failed => 1,
            Self::Cancelled => 3,
            Self::Unfollowable => 4,
            Self::Interrupted => 5,
        })
    }
}
