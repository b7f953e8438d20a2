//! `register` and `message` modes: users that hold one TLS connection each.
//!
//! Each user is a task that owns its connection: it REGISTERs, refreshes at half the granted
//! time, answers requests sent to it (a MESSAGE from another user) with 200, and sends what the
//! scheduler hands it, matching final responses to its requests by Call-ID. A lost connection is
//! counted (`connection_lost`), its open requests fail (`closed_before_response`), and the user
//! reconnects and registers again, so a renewal fault shows as failed reconnections.
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

use super::conn::{Ids, Reader, Timeouts, connect, transaction};
use super::record::{Reason, Recorder};
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

/// A MESSAGE for a user to send.
#[derive(Debug)]
pub struct Send {
    /// To whom.
    pub to: Uri,
    /// When it was due (latency counts from here).
    pub scheduled: Instant,
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

/// Starts user `global`'s task; it runs until `deadline`.
pub fn spawn_user(
    users: Arc<Users>,
    global: u64,
    deadline: Instant,
    recorder: Arc<Recorder>,
) -> (mpsc::UnboundedSender<Send>, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(user(users, global, deadline, recorder, rx));
    (tx, task)
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
        let start = monotonic_now();
        let registered = async {
            let stream = connect(&users.target, users.timeouts.connect).await?;
            let mut reader = Reader::new(stream);
            let req = ua.register(&contact, users.expires, &users.ids.next());
            transaction(&mut reader, &req.to_bytes(), users.timeouts.response).await?;
            Ok::<_, Reason>(reader)
        }
        .await;
        if users.record_registers {
            recorder.outcome(
                registered.as_ref().map(|_| ()).map_err(|e| *e),
                start,
                monotonic_now(),
            );
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
        let lost = hold(
            &users, &ua, &contact, reader, deadline, &recorder, &mut sends,
        )
        .await;
        users.held.fetch_sub(1, Ordering::Relaxed);
        if lost && monotonic_now() < deadline {
            recorder.failed(Reason::ConnectionLost, monotonic_now());
        }
    }
}

/// Serves one registered connection until it is lost (`true`) or the run ends (`false`).
async fn hold(
    users: &Users,
    ua: &UserAgent,
    contact: &Uri,
    mut reader: Reader<super::conn::Stream>,
    deadline: Instant,
    recorder: &Recorder,
    sends: &mut mpsc::UnboundedReceiver<Send>,
) -> bool {
    // Call-ID → (scheduled, recorded?) of our open requests.
    let mut open: BTreeMap<String, (Instant, bool)> = BTreeMap::new();
    let refresh_every = Duration::from_secs(u64::from(users.expires.max(2) / 2));
    let mut refresh =
        tokio::time::interval_at((monotonic_now() + refresh_every).into(), refresh_every);
    let mut sweep = tokio::time::interval(Duration::from_secs(1));
    let end = tokio::time::sleep_until(deadline.into());
    tokio::pin!(end);
    let lost = loop {
        let out: Option<(Vec<u8>, String, Instant, bool)> = tokio::select! {
            biased;
            () = &mut end => break false,
            message = reader.next() => match message {
                Ok(Message::Response(r)) => {
                    finish(&r, &mut open, recorder);
                    None
                }
                Ok(Message::Request(req)) => {
                    let ok = Response::for_request(&req, 200).with_to_tag("load");
                    Some((ok.to_bytes(), String::new(), monotonic_now(), false))
                }
                Err(_) => break true,
            },
            Some(send) = sends.recv() => {
                let ids = users.ids.next();
                let m = ua.message(&send.to, "text/plain", "load", &ids);
                Some((m.to_bytes(), ids.call_id, send.scheduled, true))
            }
            _ = refresh.tick() => {
                let ids = users.ids.next();
                let r = ua.register(contact, users.expires, &ids);
                Some((r.to_bytes(), ids.call_id, monotonic_now(), users.record_registers))
            }
            _ = sweep.tick() => {
                expire(&mut open, users.timeouts.response, recorder);
                None
            }
        };
        if let Some((bytes, call_id, scheduled, recorded)) = out {
            if !call_id.is_empty() {
                open.insert(call_id, (scheduled, recorded));
            }
            if reader.get_mut().write_all(&bytes).await.is_err() {
                break true;
            }
        }
    };
    let now = monotonic_now();
    for (_, (_, recorded)) in open {
        if recorded && lost && now < deadline {
            recorder.failed(Reason::ClosedBeforeResponse, now);
        }
    }
    lost
}

fn finish(r: &Response, open: &mut BTreeMap<String, (Instant, bool)>, recorder: &Recorder) {
    if !r.is_final() {
        return;
    }
    let Some(call_id) = r.headers.get("Call-ID") else {
        return;
    };
    if let Some((scheduled, true)) = open.remove(call_id) {
        let result = if (200..300).contains(&r.status) {
            Ok(())
        } else {
            Err(Reason::Sip(r.status))
        };
        recorder.outcome(result, scheduled, monotonic_now());
    }
}

fn expire(open: &mut BTreeMap<String, (Instant, bool)>, timeout: Duration, recorder: &Recorder) {
    let now = monotonic_now();
    open.retain(|_, (scheduled, recorded)| {
        let late = now.saturating_duration_since(*scheduled) > timeout;
        if late && *recorded {
            recorder.failed(Reason::ResponseTimeout, now);
        }
        !late
    });
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
