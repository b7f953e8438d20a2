//! `register` and `message` modes: users that hold one TLS connection each.
//!
//! Each user is a task that owns its connection: it REGISTERs, refreshes at half the granted
//! time, answers requests sent to it (a MESSAGE from another user) with 200, and sends what the
//! scheduler hands it, matching final responses to its requests by Call-ID. A lost connection is
//! counted (`connection_lost`, register mode), its open requests fail (`closed_before_response`),
//! and the user reconnects and registers again, so a renewal fault shows as failed
//! reconnections. At the run's deadline a user starts nothing new but keeps reading answers
//! until the grace period ends; what is still open then is `unfinished` (awaiting response, or
//! connecting for a MESSAGE whose user had no connection).
//!
//! `register` records every REGISTER (first and refreshes) and how many connections are held;
//! `message` registers everyone first, unrecorded, then sends MESSAGEs at the open-loop rate
//! between the users (and to the federated domain for `federated_ratio` of them), latency from
//! the scheduled time to the final response.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::conn::{Ids, Reader, Timeouts, connect, transaction};
use super::record::{Op, Phase, Reason, Recorder};
use super::target::Target;
use super::{Shard, sleep_until};
use crate::clock::monotonic_now;
use crate::sip::{Message, Response, Uri, UserAgent};

/// Settings shared by the users of a run.
#[derive(Debug)]
pub struct Users {
    /// Where.
    pub target: Target,
    /// Request identifiers.
    pub ids: Ids,
    /// Timeouts.
    pub timeouts: Timeouts,
    /// Registration time asked for, seconds (refreshed at half).
    pub expires: u32,
    /// Whether REGISTERs are recorded (register mode) or only MESSAGEs (message mode).
    pub record_registers: bool,
    /// Connections currently registered.
    pub held: AtomicU64,
    /// Users that finished their first registration attempt.
    pub attempted: AtomicU64,
}

/// A MESSAGE for a user to send: the operation, begun (and counted) when it was handed over.
#[derive(Debug)]
pub struct Send {
    /// To whom.
    pub to: Uri,
    /// The operation (latency counts from its scheduled time).
    pub op: Op,
}

/// The AOR of user `global` (its index across all shards).
pub fn aor(global: u64, domain: &str) -> Uri {
    Uri::parse(&format!("sip:load{global}@{domain}"))
        .unwrap_or_else(|_| Uri::parse("sip:load@invalid").expect("a valid URI"))
}

/// The global indices of the users of `shard` among `users`.
pub fn shard_users(users: u64, shard: Shard) -> Vec<u64> {
    (u64::from(shard.index)..users)
        .step_by(shard.count as usize)
        .collect()
}

/// Starts user `global`'s task in `tasks`; it starts nothing after `deadline`. The channel is
/// unbounded, but what travels on it is bounded: each [`Send`] holds one of the generator's
/// permits for operations in flight.
pub fn spawn_user(
    tasks: &mut JoinSet<()>,
    users: Arc<Users>,
    global: u64,
    deadline: Instant,
    recorder: Arc<Recorder>,
) -> mpsc::UnboundedSender<Send> {
    let (tx, rx) = mpsc::unbounded_channel();
    tasks.spawn(user(users, global, deadline, recorder, rx));
    tx
}

async fn user(
    users: Arc<Users>,
    global: u64,
    deadline: Instant,
    recorder: Arc<Recorder>,
    mut sends: mpsc::UnboundedReceiver<Send>,
) {
    let mut ua = UserAgent::new(aor(global, &users.target.domain), "load.invalid");
    ua.user_agent = Some("lcs-sim-load".into());
    let contact = Uri::parse(&format!("sip:load{global}@load.invalid;transport=tls"))
        .expect("a valid contact");
    let mut first = true;
    while monotonic_now() < deadline {
        let mut op = users
            .record_registers
            .then(|| recorder.begin(monotonic_now()));
        let registered = async {
            let stream = connect(&users.target, users.timeouts.connect, op.as_mut()).await?;
            if let Some(op) = op.as_mut() {
                op.phase(Phase::AwaitingResponse);
            }
            let mut reader = Reader::new(stream);
            let req = ua.register(&contact, users.expires, &users.ids.next());
            transaction(&mut reader, &req.to_bytes(), users.timeouts.response).await?;
            Ok::<_, Reason>(reader)
        }
        .await;
        if let Some(op) = op {
            op.finish(registered.as_ref().map(|_| ()).map_err(|e| *e));
        }
        if first {
            first = false;
            users.attempted.fetch_add(1, Ordering::Relaxed);
        }
        let Ok(reader) = registered else {
            sleep_until((monotonic_now() + Duration::from_secs(1)).min(deadline)).await;
            continue;
        };
        users.held.fetch_add(1, Ordering::Relaxed);
        hold(
            &users, &ua, &contact, reader, deadline, &recorder, &mut sends,
        )
        .await;
        users.held.fetch_sub(1, Ordering::Relaxed);
        // Register mode counts a lost connection as an operation that failed (message mode
        // counts only MESSAGEs: those the loss cut off fail `closed_before_response`).
        if users.record_registers && monotonic_now() < deadline {
            recorder.failed(Reason::ConnectionLost, monotonic_now());
        }
    }
}

/// A request of ours awaiting its final response: when it was due, and its operation when it is
/// recorded.
type Open = BTreeMap<String, (Instant, Option<Op>)>;

/// Serves one registered connection until it is lost, or, once the run's `deadline` has passed,
/// until the task is aborted at the end of the grace period. After the deadline it
/// starts nothing new (no refresh) but still reads the answers to what it sent.
async fn hold(
    users: &Users,
    ua: &UserAgent,
    contact: &Uri,
    mut reader: Reader<super::conn::Stream>,
    deadline: Instant,
    recorder: &Arc<Recorder>,
    sends: &mut mpsc::UnboundedReceiver<Send>,
) {
    let mut open = Open::new();
    let refresh_every = Duration::from_secs(u64::from(users.expires.max(2) / 2));
    let mut refresh =
        tokio::time::interval_at((monotonic_now() + refresh_every).into(), refresh_every);
    let mut sweep = tokio::time::interval(Duration::from_secs(1));
    let end = tokio::time::sleep_until(deadline.into());
    tokio::pin!(end);
    let mut ended = false;
    loop {
        let out: Option<(Vec<u8>, String, Instant, Option<Op>)> = tokio::select! {
            biased;
            () = &mut end, if !ended => {
                ended = true;
                None
            }
            message = reader.next() => match message {
                Ok(Message::Response(r)) => {
                    finish(&r, &mut open);
                    None
                }
                Ok(Message::Request(req)) => {
                    let ok = Response::for_request(&req, 200).with_to_tag("load");
                    Some((ok.to_bytes(), String::new(), monotonic_now(), None))
                }
                Err(_) => break,
            },
            Some(mut send) = sends.recv() => {
                let ids = users.ids.next();
                let m = ua.message(&send.to, "text/plain", "load", &ids);
                send.op.phase(Phase::AwaitingResponse);
                Some((m.to_bytes(), ids.call_id, send.op.since(), Some(send.op)))
            }
            _ = refresh.tick(), if !ended => {
                let ids = users.ids.next();
                let r = ua.register(contact, users.expires, &ids);
                let now = monotonic_now();
                let op = users.record_registers.then(|| {
                    let mut op = recorder.begin(now);
                    op.phase(Phase::AwaitingResponse);
                    op
                });
                Some((r.to_bytes(), ids.call_id, now, op))
            }
            _ = sweep.tick() => {
                expire(&mut open, users.timeouts.response);
                None
            }
        };
        if let Some((bytes, call_id, since, op)) = out {
            if !call_id.is_empty() {
                open.insert(call_id, (since, op));
            }
            if reader.get_mut().write_all(&bytes).await.is_err() {
                break;
            }
        }
    }
    for (_, (_, op)) in open {
        if let Some(op) = op {
            op.finish(Err(Reason::ClosedBeforeResponse));
        }
    }
}

fn finish(r: &Response, open: &mut Open) {
    if !r.is_final() {
        return;
    }
    let Some(call_id) = r.headers.get("Call-ID") else {
        return;
    };
    if let Some((_, Some(op))) = open.remove(call_id) {
        op.finish(if (200..300).contains(&r.status) {
            Ok(())
        } else {
            Err(Reason::Sip(r.status))
        });
    }
}

fn expire(open: &mut Open, timeout: Duration) {
    let now = monotonic_now();
    let late: Vec<String> = open
        .iter()
        .filter(|(_, (since, _))| now.saturating_duration_since(*since) > timeout)
        .map(|(k, _)| k.clone())
        .collect();
    for k in late {
        if let Some((_, Some(op))) = open.remove(&k) {
            op.finish(Err(Reason::ResponseTimeout));
        }
    }
}

/// Which user sends the `i`-th MESSAGE and to whom: every user in turn, to every other in turn,
/// and exactly `federated_ratio` of them to `federated` instead.
pub fn pair(i: u64, n: u64, federated_ratio: f64) -> (usize, Option<usize>) {
    let from = (i % n) as usize;
    let federated =
        ((i + 1) as f64 * federated_ratio).floor() > (i as f64 * federated_ratio).floor();
    if federated || n < 2 {
        return (from, None);
    }
    let step = 1 + (i / n) % (n - 1);
    (from, Some(((i % n + step) % n) as usize))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_split_users_disjointly() {
        let a = shard_users(10, Shard { index: 0, count: 3 });
        let b = shard_users(10, Shard { index: 1, count: 3 });
        let c = shard_users(10, Shard { index: 2, count: 3 });
        assert_eq!((a.len(), b.len(), c.len()), (4, 3, 3));
        let mut all: Vec<u64> = a.into_iter().chain(b).chain(c).collect();
        all.sort();
        assert_eq!(all, (0..10).collect::<Vec<_>>());
    }

    #[test]
    fn pairs_never_self_and_hit_the_federated_ratio() {
        let mut federated = 0;
        for i in 0..1000 {
            match pair(i, 5, 0.1) {
                (from, Some(to)) => assert_ne!(from, to),
                (_, None) => federated += 1,
            }
        }
        assert_eq!(federated, 100);
    }
}
