//! "About 40 s left, 2.1 MB/s": an ETA and a rate computed from the progress history the
//! browser has seen (a sliding window of recent samples).
//!
//! Usage: `<EtaRate snapshot=job.snapshot/>`.

use std::collections::VecDeque;

use leptos::prelude::*;

use crate::model::{JobStatus, Snapshot};

/// How far back the rate looks, in milliseconds.
const WINDOW_MS: u64 = 5_000;

/// One observation: when, percent done, units done.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Server time, ms since the epoch.
    pub ts: u64,
    /// Percent done.
    pub progress: f64,
    /// Units of work done, when counted.
    pub done: Option<u64>,
}

/// "1.2 MB/s", "12 files/s", "3.4 %/s".
pub fn format_rate(per_second: f64, unit: &str) -> String {
    match unit {
        "bytes" if per_second >= 1e6 => format!("{:.1} MB/s", per_second / 1e6),
        "bytes" if per_second >= 1e3 => format!("{:.1} kB/s", per_second / 1e3),
        "bytes" => format!("{per_second:.0} B/s"),
        "%" => format!("{per_second:.1} %/s"),
        other => format!("{per_second:.1} {other}/s"),
    }
}

/// "about 40 s left", "about 3 min left", "about 1 h 5 min left".
pub fn format_eta(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    match s {
        0..=59 => format!("about {} s left", s.max(1)),
        60..=3599 => format!("about {} min left", (s + 30) / 60),
        _ => format!("about {} h {} min left", s / 3600, (s % 3600) / 60),
    }
}

/// The ETA and rate line for the newest samples, or `None` while there is too little to go on.
pub fn estimate(samples: &VecDeque<Sample>, state: &Snapshot) -> Option<String> {
    let newest = samples.back()?;
    let oldest = samples.iter().find(|s| newest.ts.saturating_sub(s.ts) <= WINDOW_MS)?;
    #[allow(clippy::cast_precision_loss)] // durations in ms, far below 2^52
    let seconds = (newest.ts.saturating_sub(oldest.ts)) as f64 / 1000.0;
    if seconds < 0.3 {
        return None;
    }
    let percent_rate = (newest.progress - oldest.progress) / seconds;
    if percent_rate <= 0.0 {
        return None;
    }
    let eta = format_eta((100.0 - newest.progress) / percent_rate);
    let rate = match (&state.work, newest.done, oldest.done) {
        #[allow(clippy::cast_precision_loss)]
        (Some(w), Some(a), Some(b)) if a >= b => format_rate((a - b) as f64 / seconds, &w.unit),
        _ => format_rate(percent_rate, "%"),
    };
    Some(format!("{eta}, {rate}"))
}

/// The line.
#[component]
pub fn EtaRate(
    /// The job's state (the hook's `snapshot`).
    #[prop(into)]
    snapshot: Signal<Option<Snapshot>>,
) -> impl IntoView {
    let history = RwSignal::new(VecDeque::<Sample>::new());
    let started = RwSignal::new(None::<u64>);
    Effect::new(move |_| {
        snapshot.with(|s| {
            let Some(s) = s else { return };
            if s.status == JobStatus::Running && started.get_untracked().is_none() {
                started.set(Some(s.ts));
            }
            if s.indeterminate || s.status != JobStatus::Running {
                return;
            }
            history.update(|h| {
                h.push_back(Sample { ts: s.ts, progress: s.progress, done: s.work.as_ref().map(|w| w.done) });
                while h.front().is_some_and(|f| s.ts.saturating_sub(f.ts) > 2 * WINDOW_MS) {
                    h.pop_front();
                }
            });
        });
    });
    let line = move || {
        snapshot.with(|s| {
            let Some(s) = s else { return String::new() };
            match s.status {
                JobStatus::Completed => {
                    let took = started.get().map(|t| s.ts.saturating_sub(t));
                    #[allow(clippy::cast_precision_loss)]
                    took.map_or_else(|| "Finished".to_string(), |ms| format!("Finished in {:.1} s", ms as f64 / 1000.0))
                }
                JobStatus::Failed => "Stopped: the job failed".into(),
                JobStatus::Cancelled => "Stopped: the job was cancelled".into(),
                JobStatus::Interrupted => "Stopped: the server restarted while it ran".into(),
                JobStatus::Pending => "Waiting to start".into(),
                JobStatus::Running if s.indeterminate => "Estimating: the total is not known yet".into(),
                JobStatus::Running => history.with(|h| estimate(h, s)).unwrap_or_else(|| "Estimating…".into()),
            }
        })
    };
    view! {
        <p data-testid="eta-rate" aria-live="off" class="text-lg font-medium tabular-nums">{line}</p>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_and_etas_read_naturally() {
        assert_eq!(format_rate(2_100_000.0, "bytes"), "2.1 MB/s");
        assert_eq!(format_rate(12.0, "files"), "12.0 files/s");
        assert_eq!(format_eta(39.6), "about 40 s left");
        assert_eq!(format_eta(150.0), "about 3 min left");
        assert_eq!(format_eta(3900.0), "about 1 h 5 min left");
    }

    #[test]
    fn the_estimate_comes_from_the_recent_window() {
        let id = "67e55044-10b1-426f-9247-bb680e5fe0c8".parse().expect("id");
        let mut s = Snapshot::pending(id, "discover", 0);
        s.work = Some(crate::model::WorkCount { done: 0, total: Some(10_000_000), unit: "bytes".into() });
        let samples: VecDeque<Sample> = [
            Sample { ts: 10_000, progress: 20.0, done: Some(2_000_000) },
            Sample { ts: 12_000, progress: 40.0, done: Some(4_000_000) },
        ]
        .into();
        // 10 %/s with 60 % to go: 6 s; 1 MB/s.
        assert_eq!(estimate(&samples, &s).as_deref(), Some("about 6 s left, 1.0 MB/s"));
        assert_eq!(estimate(&VecDeque::new(), &s), None);
    }
}
