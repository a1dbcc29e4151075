//! The UI's building blocks, one component per module. Each takes signals, so any source of
//! job state (the `use_sse_progress` hook, a test, a demo) can drive it.

mod cancel_button;
mod connection_notice;
mod job_outcome;
mod log_console;
mod progress_bar;
mod start_job_form;
mod status_badge;
mod step_label;

pub use cancel_button::CancelButton;
pub use connection_notice::ConnectionNotice;
pub use job_outcome::JobOutcome;
pub use log_console::{clock, LogConsole};
pub use progress_bar::ProgressBar;
pub use start_job_form::StartJobForm;
pub use status_badge::StatusBadge;
pub use step_label::StepLabel;
