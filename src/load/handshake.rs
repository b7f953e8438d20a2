//! `handshake` mode: connect → full TLS handshake → one OPTIONS → 200 → close, over and over.
//!
//! Closed loop: `concurrency` tasks, each starting its next connection when the last one ended;
//! latency counts from the start of each. Open loop: connections start on a schedule fixed in
//! advance (`rate` per second), each in its own task, and latency counts from the *scheduled*
//! time, so a server that stalls shows the stall in the latencies instead of silently slowing
//! the client (coordinated omission, as wrk2 avoids it). At most `--max-in-flight` run at once
//! (each holds a socket: the generator must not run out of file descriptors and call it the
//! server's failure); a rate beyond what the machine or the server keeps up with shows as
//! `not_started`, never as silent loss or unbounded memory.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use super::conn::{Ids, Reader, Timeouts, connect, transaction};
use super::record::{Op, Phase, Reason, Recorder};
use super::schedule::Schedule;
use super::target::Target;
use super::{Load, sleep_until};
use crate::clock::monotonic_now;
use crate::sip::{Uri, UserAgent};

/// What one handshake-mode connection does.
#[derive(Debug)]
pub struct Handshake {
    /// Where.
    pub target: Target,
    /// Request identifiers.
    pub ids: Ids,
    /// The client identity stamped on OPTIONS.
    pub ua: UserAgent,
    /// The OPTIONS Request-URI (the server itself).
    pub uri: Uri,
    /// Handshake only, no OPTIONS.
    pub no_request: bool,
    /// Timeouts.
    pub timeouts: Timeouts,
}

impl Handshake {
    /// A handshake runner for `target`.
    pub fn new(target: Target, shard: u32, no_request: bool, timeouts: Timeouts) -> Handshake {
        let name = match &target.server_name {
            rustls::pki_types::ServerName::DnsName(d) => d.as_ref().to_owned(),
            other => other.to_str().into_owned(),
        };
        let ids = Ids::new(shard);
        let aor = Uri::parse(&format!("sip:load-{}@{}", ids.prefix(), target.domain))
            .or_else(|_| Uri::parse("sip:load@invalid"))
            .expect("a valid fallback URI");
        let uri = Uri::parse(&format!("sip:{name}")).unwrap_or_else(|_| aor.clone());
        let mut ua = UserAgent::new(aor, "load.invalid");
        ua.user_agent = Some(concat!("lcs-sim-load/", env!("CARGO_PKG_VERSION")).to_owned());
        Handshake {
            target,
            ids,
            ua,
            uri,
            no_request,
            timeouts,
        }
    }

    /// One connection, from connect to the OPTIONS's final response, `op` following its phases.
    pub async fn once(&self, op: &mut Op) -> Result<(), Reason> {
        let stream = connect(&self.target, self.timeouts.connect, Some(&mut *op)).await?;
        if self.no_request {
            return Ok(());
        }
        op.phase(Phase::AwaitingResponse);
        let mut reader = Reader::new(stream);
        let bytes = self.ua.options(&self.uri, &self.ids.next()).to_bytes();
        transaction(&mut reader, &bytes, self.timeouts.response).await
    }
}

/// Runs handshake mode: starts operations until `deadline` and returns the tasks of those still
/// running (the caller gives them the grace period, then closes the books and aborts them).
/// Open loop: at most `max_in_flight` at a time; a slot reached late starts late (its latency
/// counts from its scheduled time), and the slots not reached by the deadline are the
/// schedule's `not_started`.
pub async fn run(
    h: Arc<Handshake>,
    load: Load,
    max_in_flight: usize,
    deadline: Instant,
    recorder: Arc<Recorder>,
) -> JoinSet<()> {
    let mut tasks = JoinSet::new();
    match load {
        Load::Closed(n) => {
            for _ in 0..n {
                let (h, recorder) = (h.clone(), recorder.clone());
                tasks.spawn(async move {
                    loop {
                        let start = monotonic_now();
                        if start >= deadline {
                            break;
                        }
                        let mut op = recorder.begin(start);
                        let result = h.once(&mut op).await;
                        op.finish(result);
                    }
                });
            }
        }
        Load::Open(rate) => {
            let schedule = Schedule::new(recorder.start(), rate, deadline);
            recorder.set_schedule(schedule);
            let permits = Arc::new(Semaphore::new(max_in_flight.max(1)));
            for i in 0..schedule.len() {
                let Some(permit) = next_slot(&schedule, i, &permits, deadline).await else {
                    break;
                };
                let (h, recorder) = (h.clone(), recorder.clone());
                let mut op = recorder.begin(schedule.at(i)).with_permit(permit);
                tasks.spawn(async move {
                    let result = h.once(&mut op).await;
                    op.finish(result);
                });
                while tasks.try_join_next().is_some() {}
            }
        }
    }
    tasks
}

/// Waits for slot `i`'s time and a permit to start it; `None` once the deadline has passed.
pub async fn next_slot(
    schedule: &Schedule,
    i: u64,
    permits: &Arc<Semaphore>,
    deadline: Instant,
) -> Option<OwnedSemaphorePermit> {
    sleep_until(schedule.at(i)).await;
    if monotonic_now() >= deadline {
        return None;
    }
    tokio::select! {
        permit = permits.clone().acquire_owned() => permit.ok(),
        () = sleep_until(deadline) => None,
    }
}
