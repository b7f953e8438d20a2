//! An emulated Windows Messenger user.
//!
//! Connects over TLS (verifying the chain and `lcs01.contoso.com`), registers and refreshes,
//! sends MESSAGEs to local and federated users at random, answers incoming ones, drops its
//! connection now and then and reconnects with capped exponential back-off.
//!
//! Two bounds make the scenarios' verdicts hold on every seed, and both are how Messenger
//! clients behaved: a connection lives an exponential time cut at
//! `users.connection_max_lifetime` (laptops sleep, users sign out, NAT and VPN gateways end
//! sessions: no connection lasts forever, which is why the KB's TLS count "eventually reaches
//! zero"), and a user that cannot connect retries after at most `users.backoff_max` (with
//! jitter), so once the server works again every user is back within that bound. Every failure and every MESSAGE outcome goes to the recorder. All randomness comes
//! from the user's own RNG, seeded from the run's seed and the user's index, so a user behaves
//! the same whatever the others do.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

use super::record::{self, FailedAttempt, MessageRecord, Outcome, Shared, Target};
use super::scenario::Users;
use super::world::{FEDERATED_DOMAIN, SERVER_HOST, SERVER_NAME, TLS_PORT};
use crate::failure::ConnectFailure;
use crate::sip::{Frame, Framer, Message, Method, RequestIds, Response, Uri, UserAgent};

/// What a user needs to run.
#[derive(Clone)]
pub struct UserContext {
    /// Behaviour parameters.
    pub users: Users,
    /// The run's seed.
    pub seed: u64,
    /// Virtual time at which to stop.
    pub end: Duration,
    /// Timer F of the server (an answer later than this plus a margin is a bug).
    pub timer_f: Duration,
    /// TLS client configuration trusting the enterprise root.
    pub tls: Arc<rustls::ClientConfig>,
    /// Where to record.
    pub recorder: Shared,
    /// The client host this user runs on (for the Via header).
    pub host: String,
}

/// Runs user `index` until the end of the simulation.
pub async fn run(index: usize, ctx: UserContext) {
    let mut user = User::new(index, ctx);
    // Users arrive over the first minute, not all in the same tick.
    let arrival = user.rng.random_range(0..60_000u64);
    tokio::time::sleep(Duration::from_millis(arrival)).await;
    let mut backoff = user.ctx.users.backoff_initial;
    while record::now() < user.ctx.end {
        let started = record::now();
        match user.connect().await {
            Err(reason) => {
                user.record_failure(started, reason);
                let jitter = user.rng.random_range(0.5..1.0);
                user.sleep_capped(backoff.mul_f64(jitter)).await;
                backoff = backoff.saturating_mul(2).min(user.ctx.users.backoff_max);
            }
            Ok(tls) => {
                backoff = user.ctx.users.backoff_initial;
                if user.session(tls).await == SessionEnd::ClosedByServer {
                    // Reconnect soon, as Messenger does, but not in the same tick as everyone.
                    let wait = backoff.mul_f64(user.rng.random_range(0.5..1.0));
                    user.sleep_capped(wait).await;
                }
            }
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum SessionEnd {
    ClosedByUser,
    ClosedByServer,
    EndOfRun,
}

type Tls = tokio_rustls::client::TlsStream<turmoil::net::TcpStream>;

struct User {
    index: usize,
    ctx: UserContext,
    rng: StdRng,
    agent: UserAgent,
    contact: Uri,
    counter: u64,
}

struct Pending {
    sent: Duration,
    target: Target,
}

impl User {
    fn new(index: usize, ctx: UserContext) -> Self {
        let rng = StdRng::seed_from_u64(
            ctx.seed ^ (index as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15),
        );
        let aor: Uri = format!("sip:user{index:03}@contoso.com")
            .parse()
            .expect("valid URI");
        let contact: Uri = format!("sip:user{index:03}@{};transport=tls", ctx.host)
            .parse()
            .expect("valid URI");
        let mut agent = UserAgent::new(aor, &ctx.host);
        agent.user_agent = Some("RTC/1.3 (emulated Windows Messenger 5.1)".into());
        Self {
            index,
            ctx,
            rng,
            agent,
            contact,
            counter: 0,
        }
    }

    fn ids(&mut self, cseq: u32) -> RequestIds {
        self.counter += 1;
        let salt: u32 = self.rng.random();
        RequestIds {
            call_id: format!("u{}-{}-{salt:08x}", self.index, self.counter),
            from_tag: format!("t{}-{}", self.index, self.counter),
            branch: format!("u{}-{}-{salt:08x}", self.index, self.counter),
            cseq,
        }
    }

    fn record_failure(&self, started: Duration, reason: ConnectFailure) {
        self.ctx
            .recorder
            .lock()
            .expect("recorder")
            .connect_failures
            .push(FailedAttempt {
                started,
                at: record::now(),
                user: self.index,
                reason,
            });
    }

    async fn sleep_capped(&self, d: Duration) {
        let left = self.ctx.end.saturating_sub(record::now());
        tokio::time::sleep(d.min(left)).await;
    }

    async fn connect(&mut self) -> Result<Tls, ConnectFailure> {
        let timeout = Duration::from_secs(10);
        let tcp = match tokio::time::timeout(
            timeout,
            turmoil::net::TcpStream::connect((SERVER_HOST, TLS_PORT)),
        )
        .await
        {
            Err(_) => return Err(ConnectFailure::ConnectTimeout),
            Ok(Err(e)) => return Err(ConnectFailure::from_connect_error(&e)),
            Ok(Ok(tcp)) => tcp,
        };
        let connector = tokio_rustls::TlsConnector::from(self.ctx.tls.clone());
        let name = ServerName::try_from(SERVER_NAME).expect("valid name");
        match tokio::time::timeout(timeout, connector.connect(name, tcp)).await {
            Err(_) => Err(ConnectFailure::HandshakeTimeout),
            Ok(Ok(tls)) => Ok(tls),
            Ok(Err(e)) => Err(ConnectFailure::from_handshake_error(&e)),
        }
    }

    fn exp(&mut self, mean: Duration) -> Duration {
        let u: f64 = self.rng.random_range(f64::EPSILON..1.0);
        mean.mul_f64(-u.ln())
    }

    fn pick_target(&mut self) -> (Uri, Target) {
        if self.rng.random_bool(self.ctx.users.federated_share) {
            let k = self.rng.random_range(0..50);
            (
                format!("sip:fed{k:02}@{FEDERATED_DOMAIN}")
                    .parse()
                    .expect("valid"),
                Target::Federated,
            )
        } else {
            let n = self.ctx.users.count;
            let mut j = self.rng.random_range(0..n);
            if j == self.index && n > 1 {
                j = (j + 1) % n;
            }
            (
                format!("sip:user{j:03}@contoso.com")
                    .parse()
                    .expect("valid"),
                Target::Local,
            )
        }
    }

    async fn session(&mut self, mut tls: Tls) -> SessionEnd {
        let now = Instant::from_std(crate::clock::monotonic_now());
        let t0 = record::now();
        let lifetime = self
            .exp(self.ctx.users.connection_lifetime)
            .min(self.ctx.users.connection_max_lifetime);
        let refresh_every = Duration::from_secs(u64::from(self.ctx.users.register_expires / 2));
        let mut next_message = now + self.exp(self.ctx.users.message_interval);
        let mut next_refresh = now;
        let close_at = now + lifetime;
        let end_at = now + self.ctx.end.saturating_sub(t0);
        let mut register_cseq = 0u32;
        let mut register_call: Option<String> = None;
        let mut registered = false;
        let mut pending: BTreeMap<String, Pending> = BTreeMap::new();
        let mut framer = Framer::new(64 * 1024);
        let mut buf = vec![0u8; 16 * 1024];
        let mut tag = 0u64;
        loop {
            let now = Instant::from_std(crate::clock::monotonic_now());
            // Outstanding MESSAGEs must be answered within Timer F (plus a margin for the trip).
            let deadline = self.ctx.timer_f + Duration::from_secs(5);
            let overdue: Vec<String> = pending
                .iter()
                .filter(|(_, p)| record::now() >= p.sent + deadline)
                .map(|(k, _)| k.clone())
                .collect();
            for call_id in overdue {
                let p = pending.remove(&call_id).expect("listed");
                self.finish(p, Outcome::Unanswered);
            }
            if now >= end_at {
                for (_, p) in std::mem::take(&mut pending) {
                    self.finish(p, Outcome::PendingAtEnd);
                }
                let _ = tls.shutdown().await;
                return SessionEnd::EndOfRun;
            }
            if now >= close_at && pending.is_empty() {
                let _ = tls.shutdown().await;
                return SessionEnd::ClosedByUser;
            }
            let mut wake = end_at.min(next_refresh);
            if now < close_at {
                wake = wake.min(next_message).min(close_at);
            }
            if let Some(first) = pending.values().map(|p| p.sent).min() {
                let due = now + (first + deadline).saturating_sub(record::now());
                wake = wake.min(due);
            }
            tokio::select! {
                biased;
                read = tls.read(&mut buf) => {
                    let n = match read {
                        Ok(0) | Err(_) => {
                            self.connection_lost(pending);
                            return SessionEnd::ClosedByServer;
                        }
                        Ok(n) => n,
                    };
                    framer.push(&buf[..n]);
                    let mut replies = Vec::new();
                    while let Some(frame) = framer.pop() {
                        let Ok(Frame::Message(bytes)) = frame else { continue };
                        match crate::sip::parse_message(&bytes) {
                            Ok(Message::Response(r)) if r.status >= 200 => {
                                let call_id = r.headers.call_id().unwrap_or_default();
                                if register_call.as_deref() == Some(call_id) {
                                    registered |= self.on_register_response(r.status);
                                } else {
                                    self.on_final(pending.remove(call_id), r.status);
                                }
                            }
                            Ok(Message::Request(req)) => {
                                tag += 1;
                                replies.extend(self.answer(&req, tag));
                            }
                            _ => {}
                        }
                    }
                    if !replies.is_empty() && tls.write_all(&replies).await.is_err() {
                        self.connection_lost(pending);
                        return SessionEnd::ClosedByServer;
                    }
                }
                () = tokio::time::sleep_until(wake) => {
                    let now = Instant::from_std(crate::clock::monotonic_now());
                    let mut out = Vec::new();
                    if now >= next_refresh {
                        register_cseq += 1;
                        let mut ids = self.ids(register_cseq);
                        if let Some(call) = &register_call {
                            ids.call_id.clone_from(call);
                        }
                        register_call = Some(ids.call_id.clone());
                        out.extend(self.agent.register(&self.contact, self.ctx.users.register_expires, &ids).to_bytes());
                        next_refresh = now + refresh_every;
                    }
                    if now >= next_message && now < close_at {
                        if registered {
                            let (to, target) = self.pick_target();
                            let ids = self.ids(1);
                            let body = format!("hello from user{:03} #{}", self.index, self.counter);
                            out.extend(self.agent.message(&to, "text/plain", body, &ids).to_bytes());
                            pending.insert(ids.call_id, Pending { sent: record::now(), target });
                            self.ctx.recorder.lock().expect("recorder").messages_sent += 1;
                        }
                        next_message = now + self.exp(self.ctx.users.message_interval);
                    }
                    if !out.is_empty() && tls.write_all(&out).await.is_err() {
                        self.connection_lost(pending);
                        return SessionEnd::ClosedByServer;
                    }
                }
            }
        }
    }

    /// A final response to our REGISTER: every 200 (refreshes too) is recorded, so the report
    /// can tell which users the server served after a fix. Returns whether it was a 200.
    fn on_register_response(&self, status: u16) -> bool {
        if status == 200 {
            let mut r = self.ctx.recorder.lock().expect("recorder");
            r.registrations.push((record::now(), self.index));
        }
        status == 200
    }

    /// A final response to a MESSAGE (`pending` is None when none is outstanding: a duplicate).
    fn on_final(&self, pending: Option<Pending>, status: u16) {
        match pending {
            Some(p) => self.finish(p, Outcome::Final(status)),
            None => self.ctx.recorder.lock().expect("recorder").duplicate_finals += 1,
        }
    }

    /// The answer to a request from the server: 200 to a MESSAGE, 405 to anything else.
    fn answer(&self, req: &crate::sip::Request, tag: u64) -> Vec<u8> {
        let status = if req.method == Method::Message {
            200
        } else {
            405
        };
        Response::for_request(req, status)
            .with_to_tag(&format!("u{}r{tag}", self.index))
            .to_bytes()
    }

    fn finish(&self, p: Pending, outcome: Outcome) {
        self.ctx
            .recorder
            .lock()
            .expect("recorder")
            .messages
            .push(MessageRecord {
                sent: p.sent,
                done: record::now(),
                target: p.target,
                outcome,
            });
    }

    fn connection_lost(&self, pending: BTreeMap<String, Pending>) {
        let mut r = self.ctx.recorder.lock().expect("recorder");
        r.closed_by_server.push((record::now(), self.index));
        for (_, p) in pending {
            r.messages.push(MessageRecord {
                sent: p.sent,
                done: record::now(),
                target: p.target,
                outcome: Outcome::LostOnClose,
            });
        }
    }
}
