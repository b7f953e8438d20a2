//! `lcs-sim load`: load against a SIP-over-TLS server, with faults injected while it runs.
//!
//! SIPp, the tool SIP engineers reach for, is built without TLS in Debian and manages a few TLS
//! connections per second; nobody could measure what a renewal does to a server under load. This
//! module generates that load with the crate's own parts: real rustls handshakes (full, no
//! resumption) over real sockets, requests built by the SIP core's [`UserAgent`](crate::sip),
//! responses framed by its [`Framer`](crate::sip::Framer). It uses `sip`, `server::tls`,
//! `config`, `store` and `failure`, never `sim`: it runs on the real clock against any server.
//!
//! - [`target`]: where the load goes (an address, or a deployment folder);
//! - [`conn`]: one SIP-over-TLS connection, failures typed as [`Reason`];
//! - [`handshake`], [`users`]: the three modes (closed or open loop);
//! - [`record`]: outcomes into HdrHistograms, second by second;
//! - [`faults`]: `--at 30s=renew` and friends, and the outage they cause;
//! - [`report`]: the JSON/CSV result and the exact merge of shards;
//! - [`svg`]: rate, failures and p99 over time, with the faults marked.

pub mod conn;
pub mod faults;
pub mod handshake;
pub mod memory;
pub mod record;
pub mod report;
pub mod schedule;
pub mod svg;
pub mod target;
pub mod users;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

pub use faults::{Fault, FaultAction, FaultRecord, Outage};
pub use record::{ByPhase, Op, Phase, Reason, Recorder};
pub use report::{Report, RunInfo, merge};
pub use schedule::Schedule;
pub use target::{Target, TargetOptions, TlsVersions};

use crate::clock::monotonic_now;

/// What each operation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Connect, handshake, OPTIONS, close.
    Handshake,
    /// Users hold registered connections.
    Register,
    /// Registered users send MESSAGEs.
    Message,
}

impl Mode {
    /// The name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Handshake => "handshake",
            Mode::Register => "register",
            Mode::Message => "message",
        }
    }
}

/// How operations are started.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Load {
    /// This many at a time, each starting when the last ended.
    Closed(usize),
    /// This many per second on a fixed schedule.
    Open(f64),
}

/// One shard of a run spread over several machines: `index` of `count`, from 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// This shard, `0..count`.
    pub index: u32,
    /// Number of shards.
    pub count: u32,
}

impl Default for Shard {
    fn default() -> Self {
        Shard { index: 0, count: 1 }
    }
}

impl std::str::FromStr for Shard {
    type Err = String;

    fn from_str(s: &str) -> Result<Shard, String> {
        let bad = || format!("`{s}` is not a shard INDEX/COUNT with 0 <= INDEX < COUNT, e.g. 0/4");
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let (index, count): (u32, u32) = (
            i.trim().parse().map_err(|_| bad())?,
            n.trim().parse().map_err(|_| bad())?,
        );
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

/// A run, validated.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// The mode.
    pub mode: Mode,
    /// How long.
    pub duration: Duration,
    /// Closed or open loop (the rate of the whole run: a shard takes its part).
    pub load: Load,
    /// Handshake mode: no OPTIONS.
    pub no_request: bool,
    /// Register and message modes: users of the whole run.
    pub users: u64,
    /// Message mode: share of MESSAGEs to the federated domain.
    pub federated_ratio: f64,
    /// The federated domain (default: the deployment's first route, else `fabrikam.com`).
    pub federated_domain: String,
    /// Registration time asked for, seconds.
    pub expires: u32,
    /// This shard.
    pub shard: Shard,
    /// Timeouts.
    pub timeouts: conn::Timeouts,
    /// Faults (need a deployment).
    pub faults: Vec<Fault>,
    /// The server's process, for its memory per connection (register mode).
    pub server_pid: Option<u32>,
    /// How long operations in flight at the deadline may still finish (see [`run`]).
    pub grace: Duration,
    /// Open loop: the most operations in flight at once (each handshake holds a socket).
    pub max_in_flight: usize,
    /// The run this is (a shard of): the same for every shard, so `merge` can tell them from
    /// another run's.
    pub run_id: String,
}

impl LoadOptions {
    /// A digest of the settings every shard of one run shares (all but the shard's index and
    /// the server's pid), against `target`: SHA-256 of a canonical text, 16 bytes in hex.
    pub fn settings_digest(&self, target: &str) -> String {
        let load = match self.load {
            Load::Closed(n) => format!("closed {n}"),
            Load::Open(r) => format!("open {r:?}"),
        };
        let mut faults: Vec<String> = self
            .faults
            .iter()
            .map(|f| format!("{:?}={}", f.at, f.action))
            .collect();
        faults.sort();
        let text = format!(
            "mode={}\ntarget={target}\nduration={:?}\nload={load}\nno_request={}\nusers={}\nfederated={:?} {}\nexpires={}\nshards={}\ntimeouts={:?} {:?}\ngrace={:?}\nmax_in_flight={}\nfaults={}\n",
            self.mode.name(),
            self.duration,
            self.no_request,
            self.users,
            self.federated_ratio,
            self.federated_domain,
            self.expires,
            self.shard.count,
            self.timeouts.connect,
            self.timeouts.response,
            self.grace,
            self.max_in_flight,
            faults.join(",")
        );
        let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
        hex::encode(&digest.as_ref()[..16])
    }
}

/// The default grace period: the response timeout, capped at [`MAX_DEFAULT_GRACE`].
pub fn default_grace(timeouts: &conn::Timeouts) -> Duration {
    timeouts.response.min(MAX_DEFAULT_GRACE)
}

/// The cap on the default grace period.
pub const MAX_DEFAULT_GRACE: Duration = Duration::from_secs(2);

/// The default bound on operations in flight in the open loop: handshakes hold a socket each
/// (kept well below a usual open-files limit); a MESSAGE in flight is a few hundred bytes.
pub fn default_max_in_flight(mode: Mode) -> usize {
    match mode {
        Mode::Handshake => 1024,
        Mode::Register | Mode::Message => 16384,
    }
}

/// Sleeps until `at` on tokio's clock.
pub async fn sleep_until(at: Instant) {
    tokio::time::sleep_until(at.into()).await;
}

/// Runs the load and returns its report. `recorder` starts now; pass the same one to a progress
/// display.
///
/// Operations start until the deadline (`duration` from the start); what is still in flight
/// then has up to `grace` to finish, after which the recorder closes (what is left is
/// `unfinished`, by phase) and every task is aborted: the run takes at most `duration + grace`.
pub async fn run(target: Target, o: LoadOptions, recorder: Arc<Recorder>) -> Report {
    let start = recorder.start();
    let deadline = start + o.duration;
    let faults = tokio::spawn(apply_faults(target.clone(), o.faults.clone(), start));
    let label = target.label.clone();
    let load = match o.load {
        Load::Open(rate) => Load::Open(rate / f64::from(o.shard.count)),
        closed => closed,
    };
    let mut server = None;
    let tasks = match o.mode {
        Mode::Handshake => {
            let h = handshake::Handshake::new(target, o.shard.index, o.no_request, o.timeouts);
            let (h, r) = (Arc::new(h), recorder.clone());
            handshake::run(h, load, o.max_in_flight, deadline, r).await
        }
        Mode::Register | Mode::Message => {
            let (tasks, measured) = run_users(target, &o, load, deadline, recorder.clone()).await;
            server = measured;
            tasks
        }
    };
    wind_down(tasks, &recorder, deadline, deadline + o.grace).await;
    let records = faults.await.unwrap_or_default();
    let info = RunInfo {
        mode: o.mode.name().into(),
        settings_digest: o.settings_digest(&label),
        target: label,
        duration_s: o.duration.as_secs_f64(),
        run_id: o.run_id.clone(),
        shard: o.shard,
    };
    let mut report = Report::new(info, &recorder.snapshot(), records);
    report.server = server;
    report
}

/// From the deadline, waits until nothing is in flight or `hard_end`, closes the books, and
/// aborts what still runs.
async fn wind_down(
    mut tasks: JoinSet<()>,
    recorder: &Recorder,
    deadline: Instant,
    hard_end: Instant,
) {
    sleep_until(deadline).await;
    recorder.wait_idle(hard_end).await;
    recorder.close();
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
}

async fn run_users(
    target: Target,
    o: &LoadOptions,
    load: Load,
    deadline: Instant,
    recorder: Arc<Recorder>,
) -> (JoinSet<()>, Option<report::ServerMemory>) {
    let globals = users::shard_users(o.users, o.shard);
    let federated = users::aor(0, &o.federated_domain);
    let domain = target.domain.clone();
    let before = o.server_pid.and_then(memory::rss_kib);
    let u = Arc::new(users::Users {
        target,
        ids: conn::Ids::new(o.shard.index),
        timeouts: o.timeouts,
        expires: o.expires,
        record_registers: o.mode == Mode::Register,
        held: Default::default(),
        attempted: Default::default(),
    });
    let mut senders = Vec::new();
    let mut tasks = JoinSet::new();
    for (k, &g) in globals.iter().enumerate() {
        senders.push(users::spawn_user(
            &mut tasks,
            u.clone(),
            g,
            deadline,
            recorder.clone(),
        ));
        // Connect in waves of 64, so a big --users does not open thousands of handshakes at once.
        if k % 64 == 63 {
            while u.attempted.load(Ordering::Relaxed) + 32 < (k + 1) as u64
                && monotonic_now() < deadline
            {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }
    while u.attempted.load(Ordering::Relaxed) < globals.len() as u64 && monotonic_now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let server = memory::measure(o.server_pid, before, u.held.load(Ordering::Relaxed));
    if o.mode == Mode::Message {
        let rate = match load {
            Load::Open(r) => r,
            Load::Closed(n) => n as f64, // validated away: message mode is open loop
        };
        // The MESSAGEs' schedule starts once every user has tried to register.
        let schedule = Schedule::new(monotonic_now(), rate, deadline);
        recorder.set_schedule(schedule);
        let permits = Arc::new(tokio::sync::Semaphore::new(o.max_in_flight.max(1)));
        let n = senders.len() as u64;
        for i in 0..if n == 0 { 0 } else { schedule.len() } {
            let Some(permit) = handshake::next_slot(&schedule, i, &permits, deadline).await else {
                break;
            };
            let (from, to) = users::pair(i, n, o.federated_ratio);
            let to = match to {
                Some(t) => users::aor(globals[t], &domain),
                None => federated.clone(),
            };
            let op = recorder.begin(schedule.at(i)).with_permit(permit);
            // The user's task lives until the end: a closed channel leaves the operation in
            // flight, hence unfinished.
            let _ = senders[from].send(users::Send { to, op });
        }
    }
    (tasks, server)
}

async fn apply_faults(target: Target, faults: Vec<Fault>, start: Instant) -> Vec<FaultRecord> {
    let mut out = Vec::new();
    let Some((dir, connection)) = target.deployment else {
        return out;
    };
    let mut faults = faults;
    faults.sort_by_key(|f| f.at);
    for f in faults {
        sleep_until(start + f.at).await;
        let result = if f.action == FaultAction::FixLive {
            faults::fix_live(&dir).await.map_err(|e| e.to_string())
        } else {
            let (dir, connection, action) = (dir.clone(), connection.clone(), f.action.clone());
            tokio::task::spawn_blocking(move || faults::apply(&dir, &connection, &action))
                .await
                .map_err(|e| format!("the fault's task failed: {e}"))
                .and_then(|r| r.map_err(|e| e.to_string()))
        };
        let applied = monotonic_now()
            .saturating_duration_since(start)
            .as_secs_f64();
        let (ok, result) = match result {
            Ok(what) => (true, what),
            Err(e) => (false, e),
        };
        out.push(FaultRecord {
            at_s: f.at.as_secs_f64(),
            applied_s: ok.then_some(applied),
            action: f.action.to_string(),
            result,
            ok,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_of_one_run_share_a_settings_digest_and_other_settings_do_not() {
        let o = LoadOptions {
            mode: Mode::Handshake,
            duration: Duration::from_secs(5),
            load: Load::Open(200.0),
            no_request: false,
            users: 0,
            federated_ratio: 0.0,
            federated_domain: "fabrikam.com".into(),
            expires: 600,
            shard: Shard { index: 0, count: 2 },
            timeouts: conn::Timeouts::default(),
            faults: Vec::new(),
            server_pid: Some(1),
            grace: Duration::from_secs(2),
            max_in_flight: 1024,
            run_id: "r".into(),
        };
        let digest = o.settings_digest("127.0.0.1:5061");
        let other_shard = LoadOptions {
            shard: Shard { index: 1, count: 2 },
            server_pid: None,
            ..o.clone()
        };
        assert_eq!(other_shard.settings_digest("127.0.0.1:5061"), digest);
        let faster = LoadOptions {
            load: Load::Open(201.0),
            ..o.clone()
        };
        assert_ne!(faster.settings_digest("127.0.0.1:5061"), digest);
        assert_ne!(o.settings_digest("127.0.0.1:5062"), digest);
        let four = LoadOptions {
            shard: Shard { index: 0, count: 4 },
            ..o.clone()
        };
        assert_ne!(four.settings_digest("127.0.0.1:5061"), digest);
    }
}
