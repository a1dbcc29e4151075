//! The UI's building blocks, one component per module. Each takes signals, so any source of
//! job state (the `use_sse_progress` hook, a test, a demo) can drive it.

mod cancel_button;
mod connection_notice;
mod copy_button;
mod eta_rate;
mod job_outcome;
mod log_console;
mod phase_progress;
mod progress_bar;
mod radial_progress;
mod start_job_form;
mod status_badge;
mod step_label;
mod stepper;

pub use cancel_button::CancelButton;
pub use connection_notice::ConnectionNotice;
pub use copy_button::CopyButton;
pub use eta_rate::EtaRate;
pub use job_outcome::JobOutcome;
pub use log_console::LogConsole;
pub use phase_progress::PhaseProgress;
pub use progress_bar::ProgressBar;
pub use radial_progress::RadialProgress;
pub use start_job_form::StartJobForm;
pub use status_badge::StatusBadge;
pub use step_label::StepLabel;
pub use stepper::Stepper;
