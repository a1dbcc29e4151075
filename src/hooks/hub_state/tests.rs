//! The hub's bookkeeping over a tab's long life: bounded whatever it has seen, exact where a
//! view needs it.

use super::*;
use crate::model::{JobStatus, LogLevel};

fn id(n: usize) -> JobId {
    format!("00000000-0000-4000-8000-{n:012x}").parse().expect("id")
}

fn state(job: JobId, seq: u64, status: JobStatus, ts: u64) -> Snapshot {
    Snapshot { seq, status, ts, ..Snapshot::pending(job, "ticker", ts) }
}

fn line(seq: u64) -> LogLine {
    LogLine {
        seq,
        ts: 0,
        level: LogLevel::Info,
        target: "tests".into(),
        message: format!("line {seq}"),
        fields: Default::default(),
    }
}

/// Job `n` starts (seq 1) and logs `lines` lines (seq 2 ..); returns its cursor.
fn start(hub: &mut HubState, n: usize, lines: u64) -> u64 {
    let job = id(n);
    hub.on_state(&state(job, 1, JobStatus::Pending, n as u64 * 1000), false);
    for seq in 2..2 + lines {
        hub.on_log(job, &line(seq));
    }
    1 + lines
}

/// Job `n`, at `cursor`, completes and ends.
fn finish(hub: &mut HubState, n: usize, cursor: u64) {
    let job = id(n);
    hub.on_state(&state(job, cursor + 1, JobStatus::Completed, n as u64 * 1000 + 500), false);
    hub.on_end(job, cursor + 1);
}

#[test]
fn a_tab_that_saw_five_hundred_jobs_keeps_a_bounded_state_and_a_short_resume_query() {
    let mut hub = HubState::default();
    // In waves of 16, as the server lets one owner run.
    for wave in (0..500).collect::<Vec<usize>>().chunks(16) {
        let cursors: Vec<u64> = wave.iter().map(|n| start(&mut hub, *n, 10)).collect();
        let mut live = hub.resume_points();
        live.sort();
        let expected: Vec<(JobId, u64)> = wave.iter().zip(&cursors).map(|(n, c)| (id(*n), *c)).collect();
        assert_eq!(live, expected, "only the running jobs are resumed, each from its last event");
        for (n, cursor) in wave.iter().zip(cursors) {
            finish(&mut hub, *n, cursor);
        }
        assert!(hub.kept_jobs() <= KEPT_ENDED_JOBS, "{} jobs kept", hub.kept_jobs());
    }
    assert_eq!(hub.kept_jobs(), KEPT_ENDED_JOBS);
    assert_eq!(hub.kept_lines(), KEPT_ENDED_JOBS * 10);
    assert_eq!(hub.cursors().len(), KEPT_ENDED_JOBS, "what a follower tells the leader is bounded too");
    assert_eq!(hub.resume_query(), "", "ended jobs send nothing more: none is resumed");
    assert_eq!(hub.take_forgotten().len(), 500 - KEPT_ENDED_JOBS);
    // The newest ended job still opens whole; the oldest has to be asked for.
    let (last, lines) = hub.whole(id(499)).expect("the last job is kept whole");
    assert_eq!((last.status, lines.len()), (JobStatus::Completed, 10));
    assert_eq!(hub.whole(id(0)), None);

    // A reconnect resends a `reset` and an `end` of every job the server keeps: old ones are
    // forgotten again at once and do not push out the newest.
    for n in 0..500 {
        hub.on_state(&state(id(n), 12, JobStatus::Completed, n as u64 * 1000 + 500), true);
        hub.on_end(id(n), 12);
    }
    assert_eq!(hub.kept_jobs(), KEPT_ENDED_JOBS);
    assert!(hub.whole(id(499)).is_some(), "the newest job is still whole");
    assert!(hub.resume_query().len() < 4096);
}

#[test]
fn a_job_a_view_follows_is_kept_after_it_ends_until_the_view_goes() {
    let mut hub = HubState::default();
    let job = id(0);
    assert_eq!(hub.subscribe(job, 0), Some(Replay::default()));
    let cursor = start(&mut hub, 0, 5);
    finish(&mut hub, 0, cursor);
    for n in 1..=100 {
        let cursor = start(&mut hub, n, 1);
        finish(&mut hub, n, cursor);
    }
    let (done, lines) = hub.whole(job).expect("a followed job is kept whole");
    assert_eq!((done.status, lines.len()), (JobStatus::Completed, 5));
    // A second view mounting now gets all of it, and its end.
    let replay = hub.subscribe(job, 0).expect("covered");
    assert_eq!((replay.lines.len(), replay.state.map(|s| s.seq), replay.ended), (5, Some(7), true));

    hub.unsubscribe(job);
    assert!(hub.whole(job).is_some(), "one view still follows it");
    hub.take_forgotten();
    hub.unsubscribe(job);
    assert_eq!(hub.whole(job), None, "it ended before the 32 newest: forgotten once nobody follows it");
    assert_eq!(hub.take_forgotten(), vec![job]);
    assert_eq!(hub.kept_jobs(), KEPT_ENDED_JOBS);
}

#[test]
fn live_jobs_resume_exactly_after_their_last_event() {
    let mut hub = HubState::default();
    let (a, b, c, done) = (id(1), id(2), id(3), id(4));
    hub.on_state(&state(a, 1, JobStatus::Pending, 0), false);
    hub.on_log(a, &line(2));
    hub.on_state(&state(a, 7, JobStatus::Running, 0), false);
    // A reset of a job first heard of mid-way.
    hub.on_state(&state(b, 3, JobStatus::Running, 0), true);
    // A view that has more than the tab (it was rendered on the server at seq 12).
    hub.subscribe(c, 12);
    hub.on_state(&state(done, 1, JobStatus::Pending, 0), false);
    hub.on_end(done, 1);
    // Events already seen are no news and do not move the cursors back.
    assert!(!hub.on_log(a, &line(2)));
    assert!(!hub.on_state(&state(b, 2, JobStatus::Running, 0), false).news);

    let mut points = hub.resume_points();
    points.sort();
    assert_eq!(points, vec![(a, 7), (b, 3), (c, 12)]);
    assert_eq!(hub.resume_query().split(',').count(), 3);

    // Another tab needs `a` and `b` from 1: this tab has all of `a` and answers it; of `b` it
    // has nothing before 3, so the next stream resends it from 1.
    assert!(matches!(hub.catch_up(a, 1, false), CatchUp::Missed { ref lines, .. } if lines.len() == 1));
    assert_eq!(hub.catch_up(b, 1, false), CatchUp::Resync);
    let mut points = hub.resume_points();
    points.sort();
    assert_eq!(points, vec![(a, 7), (b, 1), (c, 12)], "the next stream resends `b` from 1");
    hub.opened();
    assert!(hub.resume_points().contains(&(b, 3)));
}

#[test]
fn the_resume_query_stays_short_with_hundreds_of_live_jobs_and_keeps_the_followed_one() {
    let mut hub = HubState::default();
    let followed = id(0);
    hub.subscribe(followed, 0);
    hub.on_state(&state(followed, 4, JobStatus::Running, 0), false);
    for n in 1..=500 {
        hub.on_state(&state(id(n), 2, JobStatus::Running, 0), false);
    }
    let points = hub.resume_points();
    assert_eq!(points.len(), MAX_RESUME_POINTS);
    assert_eq!(points[0], (followed, 4), "a job a view follows is resumed first");
    assert!(points.contains(&(id(500), 2)), "then the most recently heard of");
    let query = hub.resume_query();
    assert!(query.len() < 4096, "{} bytes", query.len());
    assert_eq!(hub.kept_jobs(), KEPT_LIVE_JOBS + 1);
}

#[test]
fn a_tab_that_missed_the_end_of_a_job_the_leader_forgot_gets_it_from_the_stream_once() {
    let mut hub = HubState::default();
    let cursor = start(&mut hub, 0, 2);
    finish(&mut hub, 0, cursor);
    for n in 1..=KEPT_ENDED_JOBS {
        let cursor = start(&mut hub, n, 0);
        finish(&mut hub, n, cursor);
    }
    assert_eq!(hub.whole(id(0)), None, "forgotten");
    assert_eq!(hub.catch_up(id(0), 2, true), CatchUp::Unknown, "that tab saw the end: nothing to send");
    assert_eq!(hub.catch_up(id(0), 2, false), CatchUp::Resync);
    assert_eq!(hub.resume_points(), vec![(id(0), 2)]);
    hub.opened();
    assert_eq!(hub.catch_up(id(0), 2, false), CatchUp::Unknown, "asked once: a job the server dropped never answers");
    assert_eq!(hub.catch_up(id(999), 0, false), CatchUp::Unknown, "never heard of: still to come");
}

#[test]
fn a_view_asking_for_lines_no_longer_kept_makes_an_ended_job_come_again() {
    let mut hub = HubState::default();
    let job = id(0);
    let cursor = start(&mut hub, 0, KEPT_LOG_LINES as u64 + 100);
    finish(&mut hub, 0, cursor);
    assert_eq!(hub.kept_lines(), KEPT_LOG_LINES);
    assert_eq!(hub.whole(job), None, "its first lines are gone");
    assert_eq!(hub.subscribe(job, 10), None, "not covered: rewound");
    assert_eq!(hub.resume_points(), vec![(job, 10)], "resumed from the view's point, end included");
    assert!(hub.on_log(job, &line(11)), "its lines are news again");
}
