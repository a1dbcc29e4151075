//! One module per route.

mod dashboard;
mod home;
mod job;
mod not_found;
mod showcase;

pub use dashboard::{DashboardPage, DashboardRoute};
pub use home::{HomePage, StartLayout};
#[cfg(not(feature = "ssr"))]
pub use job::warm_up as warm_up_job_view;
pub use job::JobPage;
pub use not_found::{set_not_found_status, NotFoundPage};
pub use showcase::{ShowcasePage, ShowcaseRoute};
