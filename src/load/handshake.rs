//! `handshake` mode: connect → full TLS handshake → one OPTIONS → 200 → close, over and over.
//!
//! Closed loop: `concurrency` tasks, each starting its next connection when the last one ended;
//! latency counts from the start of each. Open loop: connections start on a schedule fixed in
//! advance (`rate` per second), each in its own task, and latency counts from the *scheduled*
//! time, so a server that stalls shows the stall in the latencies instead of silently slowing
//! the client (coordinated omission, as wrk2 avoids it).

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::conn::{Ids, Reader, Timeouts, connect, transaction};
use super::record::{Reason, Recorder};
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

    /// One connection, from connect to the OPTIONS's final response.
    pub async fn once(&self) -> Result<(), Reason> {
        let stream = connect(&self.target, self.timeouts.connect).await?;
        if self.no_request {
            return Ok(());
        }
        let mut reader = Reader::new(stream);
        let bytes = self.ua.options(&self.uri, &self.ids.next()).to_bytes();
        transaction(&mut reader, &bytes, self.timeouts.response).await
    }
}

/// Runs handshake mode until `deadline`, recording into `recorder`.
pub async fn run(h: Arc<Handshake>, load: Load, deadline: Instant, recorder: Arc<Recorder>) {
    match load {
        Load::Closed(n) => {
            let tasks: Vec<_> = (0..n)
                .map(|_| {
                    let (h, recorder) = (h.clone(), recorder.clone());
                    tokio::spawn(async move {
                        loop {
                            let start = monotonic_now();
                            if start >= deadline {
                                break;
                            }
                            let result = h.once().await;
                            let done = monotonic_now();
                            if done <= deadline {
                                recorder.outcome(result, start, done);
                            }
                        }
                    })
                })
                .collect();
            abort_at(tasks, deadline).await;
        }
        Load::Open(rate) => {
            let start = recorder.start();
            let mut tasks = Vec::new();
            for i in 0u64.. {
                let scheduled = start + Duration::from_secs_f64(i as f64 / rate);
                if scheduled >= deadline {
                    break;
                }
                sleep_until(scheduled).await;
                let (h, recorder) = (h.clone(), recorder.clone());
                tasks.push(tokio::spawn(async move {
                    let result = h.once().await;
                    let done = monotonic_now();
                    if done <= deadline {
                        recorder.outcome(result, scheduled, done);
                    }
                }));
                if tasks.len() >= 4096 {
                    tasks.retain(|t| !t.is_finished());
                }
            }
            abort_at(tasks, deadline).await;
        }
    }
}

/// Waits until `deadline`, then stops whatever is still running (its outcome is not counted).
pub async fn abort_at(tasks: Vec<tokio::task::JoinHandle<()>>, deadline: Instant) {
    sleep_until(deadline).await;
    for t in &tasks {
        t.abort();
    }
    for t in tasks {
        let _ = t.await;
    }
}
