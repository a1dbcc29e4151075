//! The shared half of the seam on Redis: every step that must hold across instances is one of
//! the `scripts`; reads are pipelines; notices come over pub/sub on a connection of their own.

use std::time::Duration;

use super::{damaged, parse_id, read_event, row_json, to_json, Entries, RedisStore, PREFIX};
use crate::jobs::store::shared::{
    Admission, Admitted, Beat, Bounds, CancelReply, Claimed, Counts, EventsAfter, Listener, Notice, Refused,
    SharedStore, Token,
};
use crate::jobs::store::{JobRow, LoadedJob, StoreError};
use crate::model::{JobId, JobStatus, Snapshot};

/// Most expired leases taken over in one go, and most ended jobs forgotten in one go.
const REAP_AT_ONCE: usize = 256;
const EXPIRE_AT_ONCE: usize = 1_000;
/// How long the listener waits for a notice before it says nothing came.
const LISTEN_TICK: Duration = Duration::from_secs(1);

fn millis(d: Duration) -> String {
    d.as_millis().to_string()
}

/// Reads a notice off the `notify` channel; `None` for anything else.
fn parse_notice(text: &str) -> Option<Notice> {
    let (tag, rest) = text.split_once(' ').unwrap_or((text, ""));
    match tag {
        "e" => Some(Notice::Appended(
            rest.split(' ')
                .filter_map(|pair| {
                    let (id, seq) = pair.split_once(':')?;
                    Some((id.parse().ok()?, seq.parse().ok()?))
                })
                .collect(),
        )),
        "c" => {
            let (id, owner) = rest.split_once(' ')?;
            Some(Notice::Created { id: id.parse().ok()?, owner: (owner != "-").then(|| owner.to_string()) })
        }
        "x" => Some(Notice::CancelRequested(rest.parse().ok()?)),
        "q" => Some(Notice::QueueMoved),
        _ => None,
    }
}

impl RedisStore {
    /// The jobs of `(id, token)` pairs a script returned, each read back. One that cannot be
    /// read now stays leased to this instance without being held, and its lease expires into
    /// a take-over (by any instance, this one included).
    fn load_claimed(&self, taken: Vec<(String, String)>) -> Result<Vec<Claimed>, StoreError> {
        let mut claimed = Vec::with_capacity(taken.len());
        for (id, token) in taken {
            let id = parse_id(&id)?;
            let token: Token = token.parse().map_err(|e| damaged(&format!("the token of job {id}"), e))?;
            if let Some(job) = self.job(id)? {
                claimed.push(Claimed { token, job });
            }
        }
        Ok(claimed)
    }

    fn pairs_args<'a>(script: &'a redis::Script, leases: &[(JobId, Token)]) -> redis::ScriptInvocation<'a> {
        let mut call = script.arg(PREFIX);
        for (id, token) in leases {
            call.arg(id.to_string()).arg(token.to_string());
        }
        call
    }
}

impl SharedStore for RedisStore {
    fn admit(&self, instance: &str, row: &JobRow, bounds: &Bounds) -> Result<Admission, StoreError> {
        let job = to_json(&row_json(row)?)?;
        let reply: Vec<String> = self.with(|conn| {
            self.scripts
                .admit
                .arg(PREFIX)
                .arg(instance)
                .arg(millis(bounds.lease))
                .arg(bounds.max_running)
                .arg(bounds.max_queued)
                .arg(bounds.max_active_per_owner)
                .arg(bounds.max_jobs)
                .arg(&job)
                .invoke(conn)
        })?;
        let refused = |why| Ok(Admission { decision: Err(why), evicted: Vec::new() });
        match reply.first().map(String::as_str) {
            Some("owner_limit") => refused(Refused::OwnerLimit),
            Some("queue_full") => refused(Refused::QueueFull),
            Some("full") => refused(Refused::Full),
            Some("ok") if reply.len() >= 2 => {
                let token: Token = reply[1].parse().map_err(|e| damaged("an admission's token", e))?;
                let evicted = reply[2..].iter().map(|id| parse_id(id)).collect::<Result<_, _>>()?;
                let decision = Ok(if token == 0 { Admitted::Queued } else { Admitted::Run(token) });
                Ok(Admission { decision, evicted })
            }
            _ => Err(damaged("an admission", format!("unexpected reply {reply:?}"))),
        }
    }

    fn claim(&self, instance: &str, bounds: &Bounds, most: usize) -> Result<Vec<Claimed>, StoreError> {
        let taken: Vec<(String, String)> = self.on(&self.leases, |conn| {
            self.scripts
                .claim
                .arg(PREFIX)
                .arg(instance)
                .arg(millis(bounds.lease))
                .arg(bounds.max_running)
                .arg(most)
                .invoke(conn)
        })?;
        self.load_claimed(taken)
    }

    fn reap(&self, instance: &str, bounds: &Bounds, held: &[JobId]) -> Result<Vec<Claimed>, StoreError> {
        let taken: Vec<(String, String)> = self.on(&self.leases, |conn| {
            let mut call = self.scripts.reap.arg(PREFIX);
            call.arg(instance).arg(millis(bounds.lease)).arg(REAP_AT_ONCE);
            for id in held {
                call.arg(id.to_string());
            }
            call.invoke(conn)
        })?;
        self.load_claimed(taken)
    }

    fn heartbeat(&self, _instance: &str, leases: &[(JobId, Token)], lease: Duration) -> Result<Beat, StoreError> {
        if leases.is_empty() {
            return Ok(Beat::default());
        }
        let (lost, cancelled): (Vec<String>, Vec<String>) = self.on(&self.leases, |conn| {
            let mut call = self.scripts.heartbeat.arg(PREFIX);
            call.arg(millis(lease));
            for (id, token) in leases {
                call.arg(id.to_string()).arg(token.to_string());
            }
            call.invoke(conn)
        })?;
        let ids = |list: Vec<String>| list.iter().map(|id| parse_id(id)).collect::<Result<Vec<_>, _>>();
        Ok(Beat { lost: ids(lost)?, cancelled: ids(cancelled)? })
    }

    fn release(&self, leases: &[(JobId, Token)]) -> Result<(), StoreError> {
        if leases.is_empty() {
            return Ok(());
        }
        self.with(|conn| Self::pairs_args(&self.scripts.release, leases).invoke::<()>(conn))
    }

    fn request_cancel(&self, instance: &str, id: JobId, bounds: &Bounds) -> Result<CancelReply, StoreError> {
        let reply: Vec<String> = self.with(|conn| {
            self.scripts.cancel.arg(PREFIX).arg(instance).arg(millis(bounds.lease)).arg(id.to_string()).invoke(conn)
        })?;
        match (reply.first().map(String::as_str), reply.get(1)) {
            (Some("unknown"), _) => Ok(CancelReply::Unknown),
            (Some("requested"), _) => Ok(CancelReply::Requested),
            (Some("ended"), Some(status)) => {
                let status: JobStatus = serde_json::from_value(serde_json::Value::String(status.clone()))
                    .map_err(|e| damaged(&format!("the status of job {id}"), e))?;
                Ok(CancelReply::Ended(status))
            }
            (Some("claimed"), Some(token)) => {
                let mut claimed = self.load_claimed(vec![(id.to_string(), token.clone())])?;
                Ok(claimed.pop().map_or(CancelReply::Unknown, CancelReply::Claimed))
            }
            _ => Err(damaged("a cancel request", format!("unexpected reply {reply:?}"))),
        }
    }

    fn job(&self, id: JobId) -> Result<Option<LoadedJob>, StoreError> {
        self.read_one(id)
    }

    fn events_after(&self, cursors: &[(JobId, u64)]) -> Result<Vec<Option<EventsAfter>>, StoreError> {
        if cursors.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for (id, after) in cursors {
            // The state first: the events read after it reach at least as far.
            pipe.hget(format!("{PREFIX}job:{id}"), "state");
            pipe.cmd("XRANGE").arg(format!("{PREFIX}events:{id}")).arg(format!("{}-0", after + 1)).arg("+");
        }
        let replies: Vec<redis::Value> = self.on(&self.reads, |conn| pipe.query(conn))?;
        let mut out = Vec::with_capacity(cursors.len());
        for ((id, _), pair) in cursors.iter().zip(replies.chunks(2)) {
            let what = format!("job {id}");
            let state: Option<String> = redis::from_redis_value_ref(&pair[0]).map_err(|e| damaged(&what, e))?;
            let Some(state) = state else {
                out.push(None);
                continue;
            };
            let state: Snapshot = serde_json::from_str(&state).map_err(|e| damaged(&what, e))?;
            let entries: Entries = redis::from_redis_value_ref(&pair[1]).map_err(|e| damaged(&what, e))?;
            let events =
                entries.iter().map(|(entry, fields)| read_event(&what, entry, fields)).collect::<Result<_, _>>()?;
            out.push(Some((events, state)));
        }
        Ok(out)
    }

    fn owner_jobs(&self, owner: &str) -> Result<Vec<JobId>, StoreError> {
        let ids: Vec<String> = self.with(|conn| {
            redis::cmd("ZRANGE").arg(format!("{PREFIX}owner:{owner}")).arg(0).arg(-1).arg("REV").query(conn)
        })?;
        ids.iter().map(|id| parse_id(id)).collect()
    }

    fn queue_position(&self, id: JobId) -> Result<Option<u32>, StoreError> {
        let rank: Option<u64> =
            self.with(|conn| redis::cmd("ZRANK").arg(format!("{PREFIX}queue")).arg(id.to_string()).query(conn))?;
        Ok(rank.map(|r| u32::try_from(r + 1).unwrap_or(u32::MAX)))
    }

    fn counts(&self) -> Result<Counts, StoreError> {
        let (jobs, queued, running): (u64, u64, u64) = self.with(|conn| {
            redis::pipe()
                .scard(format!("{PREFIX}jobs"))
                .zcard(format!("{PREFIX}queue"))
                .zcard(format!("{PREFIX}running"))
                .query(conn)
        })?;
        Ok(Counts { jobs, queued, running })
    }

    fn expire_ended(&self, ended_by: u64) -> Result<usize, StoreError> {
        self.with(|conn| {
            self.scripts.expire_ended.arg(PREFIX).arg(ended_by.to_string()).arg(EXPIRE_AT_ONCE).invoke(conn)
        })
    }

    fn listen(&self, listener: &mut Listener<'_>) -> Result<(), StoreError> {
        let mut conn = self.client.get_connection_with_timeout(super::TIMEOUT).map_err(|e| self.unreachable(&e))?;
        let mut pubsub = conn.as_pubsub();
        pubsub.subscribe(format!("{PREFIX}notify")).map_err(|e| self.unreachable(&e))?;
        pubsub.set_read_timeout(Some(LISTEN_TICK)).map_err(|e| self.unreachable(&e))?;
        // Subscribed: whatever is appended from now on is told; what came before, the
        // listener reads now.
        if !listener(None) {
            return Ok(());
        }
        loop {
            let notice = match pubsub.get_message() {
                Ok(message) => match message.get_payload::<String>() {
                    Ok(text) => match parse_notice(&text) {
                        Some(notice) => Some(notice),
                        None => continue,
                    },
                    Err(_) => continue,
                },
                Err(e) if e.is_timeout() => None,
                Err(e) => return Err(self.unreachable(&e)),
            };
            if !listener(notice) {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::jobs::event::JobEvent;
    use crate::jobs::store::{Batch, JobWrite};
    use crate::jobs::tests::redis;

    fn bounds(max_running: usize, max_queued: usize, lease: Duration) -> Bounds {
        Bounds { max_running, max_queued, max_active_per_owner: 2, max_jobs: 100, lease }
    }

    fn row(owner: Option<&str>) -> JobRow {
        let id = JobId::new_random();
        JobRow {
            id,
            kind: "ticker".into(),
            params: serde_json::json!({}),
            owner: owner.map(Arc::from),
            state: Arc::new(Snapshot::pending(id, "ticker", 1)),
            checkpoint: None,
            cancel_requested: false,
            started_ms: None,
            ended_ms: None,
        }
    }

    /// A job admitted by instance "a" and running under its lease.
    fn running_job(shared: &dyn SharedStore, b: &Bounds) -> (JobRow, Token) {
        let job = row(None);
        let Ok(Admitted::Run(token)) = shared.admit("a", &job, b).expect("answers").decision else { panic!("runs") };
        (job, token)
    }

    /// A write of the job's next state (seq 2) under `lease`.
    fn next_event(row: &JobRow, lease: Token) -> Batch {
        let mut state = Snapshot::clone(&row.state);
        state.seq = 2;
        state.message = format!("written under {lease}");
        let state = Arc::new(state);
        Batch {
            writes: vec![JobWrite {
                events: vec![JobEvent::state(state.clone())],
                state: Some(state),
                lease,
                ..JobWrite::new(row.id)
            }],
            ..Batch::default()
        }
    }

    #[test]
    fn admission_holds_the_global_bounds_and_the_owner_limit() {
        let backend = redis();
        let shared = backend.store.clone().shared().expect("redis is shared");
        let b = bounds(1, 1, Duration::from_secs(10));
        let admit = |owner| shared.admit("a", &row(owner), &b).expect("answers").decision;
        assert!(matches!(admit(Some("o")), Ok(Admitted::Run(_))));
        assert_eq!(admit(Some("o")), Ok(Admitted::Queued));
        assert_eq!(admit(Some("o")), Err(Refused::OwnerLimit), "two active jobs per owner");
        assert_eq!(admit(None), Err(Refused::QueueFull), "one runs, one waits");
        assert_eq!(shared.counts().expect("counts"), Counts { jobs: 2, queued: 1, running: 1 });
    }

    #[test]
    fn a_stale_lease_never_writes_and_the_new_holder_goes_on_at_the_next_number() {
        let backend = redis();
        let shared = backend.store.clone().shared().expect("redis is shared");
        let b = bounds(4, 4, Duration::from_secs(10));
        let (job, first) = running_job(&*shared, &b);
        shared.release(&[(job.id, first)]).expect("released"); // as if its lease had expired
        let taken = shared.reap("b", &b, &[]).expect("reaps");
        assert_eq!(taken.len(), 1);
        let second = taken[0].token;
        assert!(second > first, "a new holder gets a larger token");
        assert_eq!(backend.store.write(&next_event(&job, first)).expect("answers"), vec![job.id], "fenced");
        assert_eq!(
            shared.job(job.id).expect("reads").expect("kept").1.len(),
            1,
            "nothing of the stale holder was kept"
        );
        assert!(backend.store.write(&next_event(&job, second)).expect("answers").is_empty());
        let (kept, events) = shared.job(job.id).expect("reads").expect("kept");
        assert_eq!((kept.state.seq, events.len()), (2, 2));
        assert_eq!(kept.state.message, format!("written under {second}"));
    }

    #[test]
    fn heartbeats_renew_and_tell_of_lost_leases_and_cancel_requests() {
        let backend = redis();
        let shared = backend.store.clone().shared().expect("redis is shared");
        let b = bounds(4, 4, Duration::from_secs(10));
        let (job, token) = running_job(&*shared, &b);
        assert_eq!(shared.heartbeat("a", &[(job.id, token)], b.lease).expect("beats"), Beat::default());
        assert!(matches!(shared.request_cancel("b", job.id, &b).expect("answers"), CancelReply::Requested));
        // Even if the notice was lost, the holder learns of it at its next heartbeat.
        let beat = shared.heartbeat("a", &[(job.id, token)], b.lease).expect("beats");
        assert_eq!(beat, Beat { lost: vec![], cancelled: vec![job.id] });
        let beat = shared.heartbeat("a", &[(job.id, token + 1)], b.lease).expect("beats");
        assert_eq!(beat.lost, vec![job.id], "a token that is not the job's is a lost lease");
    }

    #[test]
    fn take_overs_skip_the_leases_the_caller_holds_and_nothing_else() {
        let backend = redis();
        let shared = backend.store.clone().shared().expect("redis is shared");
        let b = bounds(4, 4, Duration::from_millis(30));
        let (held, forgotten) = (row(None), row(None));
        for job in [&held, &forgotten] {
            assert!(matches!(shared.admit("a", job, &b).expect("answers").decision, Ok(Admitted::Run(_))));
        }
        std::thread::sleep(Duration::from_millis(80)); // both leases expire
        let taken = shared.reap("a", &b, &[held.id]).expect("reaps");
        let ids: Vec<JobId> = taken.iter().map(|c| c.job.0.id).collect();
        assert_eq!(ids, vec![forgotten.id], "a lease of its own name that it does not hold is taken over");
    }

    #[test]
    fn notices_read_back_as_written() {
        let a: JobId = "67e55044-10b1-426f-9247-bb680e5fe0c8".parse().expect("id");
        let b = JobId::new_random();
        assert_eq!(parse_notice(&format!("e {a}:7 {b}:12")), Some(Notice::Appended(vec![(a, 7), (b, 12)])));
        assert_eq!(
            parse_notice(&format!("c {a} 0123abcd")),
            Some(Notice::Created { id: a, owner: Some("0123abcd".into()) })
        );
        assert_eq!(parse_notice(&format!("c {a} -")), Some(Notice::Created { id: a, owner: None }));
        assert_eq!(parse_notice(&format!("x {a}")), Some(Notice::CancelRequested(a)));
        assert_eq!(parse_notice("q"), Some(Notice::QueueMoved));
        assert_eq!(parse_notice("zz"), None);
    }
}
