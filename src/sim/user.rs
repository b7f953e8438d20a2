//! An emulated Windows Messenger user: a thin shell over the sans-IO [`Agent`] and a
//! [`Network`].
//!
//! Connects over TLS (verifying the chain and `lcs01.contoso.com`), registers and refreshes,
//! sends MESSAGEs to local and federated users at random, answers incoming ones, drops its
//! connection now and then and reconnects with capped exponential back-off. The SIP work
//! (matching answers, Timer F, the REGISTER and its refresh, one outcome per MESSAGE) is the
//! agent's; this file owns only what a Messenger user decides (when to connect, to send, to
//! hang up), the sockets, and what goes to the recorder.
//!
//! The shell wakes when the agent's [`Agent::poll_timeout`] or one of its own timers is due,
//! looks for lost answers ([`Agent::expire`]) on every wake-up, and makes requests only when
//! its timer fires ([`Agent::handle_timeout`], then a MESSAGE if one is due), writing what
//! one wake-up produced in one write: that is when the requests always went out, so the same
//! seed gives the same run it gave before the agent existed.
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

use super::net::TurmoilNet;
use super::record::{self, FailedAttempt, MessageRecord, Outcome, Shared, Target};
use super::scenario::Users;
use super::world::{FEDERATED_DOMAIN, SERVER_HOST, SERVER_NAME, TLS_PORT};
use crate::failure::ConnectFailure;
use crate::server::Network;
use crate::sip::ua::{Agent, AgentConfig, AgentEvent, Output, RequestId};
use crate::sip::{Method, RequestIds, Response, Uri, UserAgent};

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

/// Runs user `index` until the end of the simulation, on turmoil's network.
pub async fn run(index: usize, ctx: UserContext) {
    run_on(TurmoilNet, index, ctx).await;
}

/// Runs user `index` until the end of the simulation, connecting through `net`.
pub async fn run_on<N: Network>(net: N, index: usize, ctx: UserContext) {
    let mut user = User::new(net, index, ctx);
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

type Tls<N> = tokio_rustls::client::TlsStream<<N as Network>::Io>;

struct User<N> {
    net: N,
    index: usize,
    ctx: UserContext,
    rng: StdRng,
    agent: Agent,
    /// Whether the agent keeps the registration (after the first session's REGISTER).
    registering: bool,
    contact: Uri,
    counter: u64,
    /// Requests from the server answered so far (numbers the answers' To tags).
    answered: u64,
}

/// A MESSAGE waiting for its outcome.
struct Pending {
    sent: Duration,
    target: Target,
}

/// MESSAGEs waiting for their outcome, by the agent's id.
type PendingMap = BTreeMap<RequestId, Pending>;

/// Why the connection went away, which names what happens to waiting MESSAGEs.
#[derive(Debug, Clone, Copy)]
enum Down {
    /// The server closed it (or a read or write failed).
    Lost,
    /// The run ended (or the user hung up, with nothing waiting).
    End,
}

/// Ids as the user has always made them: a counter and a salt from the user's RNG.
fn ids(index: usize, counter: &mut u64, rng: &mut StdRng, cseq: u32) -> RequestIds {
    *counter += 1;
    let salt: u32 = rng.random();
    RequestIds {
        call_id: format!("u{index}-{counter}-{salt:08x}"),
        from_tag: format!("t{index}-{counter}"),
        branch: format!("u{index}-{counter}-{salt:08x}"),
        cseq,
    }
}

fn virtual_now() -> Instant {
    Instant::from_std(crate::clock::monotonic_now())
}

impl<N: Network> User<N> {
    fn new(net: N, index: usize, ctx: UserContext) -> Self {
        let rng = StdRng::seed_from_u64(
            ctx.seed ^ (index as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15),
        );
        let aor: Uri = format!("sip:user{index:03}@contoso.com")
            .parse()
            .expect("valid URI");
        let contact: Uri = format!("sip:user{index:03}@{};transport=tls", ctx.host)
            .parse()
            .expect("valid URI");
        let mut ua = UserAgent::new(aor, &ctx.host);
        ua.user_agent = Some("RTC/1.3 (emulated Windows Messenger 5.1)".into());
        let config = AgentConfig {
            // Outstanding MESSAGEs must be answered within Timer F, plus a margin for the trip.
            transaction_timeout: ctx.timer_f + Duration::from_secs(5),
            max_message_size: 64 * 1024,
        };
        Self {
            net,
            index,
            ctx,
            rng,
            agent: Agent::new(ua, config),
            registering: false,
            contact,
            counter: 0,
            answered: 0,
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

    async fn connect(&mut self) -> Result<Tls<N>, ConnectFailure> {
        let timeout = Duration::from_secs(10);
        let target = format!("{SERVER_HOST}:{TLS_PORT}");
        let tcp = match tokio::time::timeout(timeout, self.net.connect(&target)).await {
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

    /// The connection is up: the agent registers (the first time, because we ask it to; then
    /// by itself). The REGISTER waits in the returned bytes for the first wake-up.
    fn connection_up(&mut self, now: Instant, pending: &mut PendingMap) -> Vec<u8> {
        let (index, now) = (self.index, now.into_std());
        let mut source = |cseq| ids(index, &mut self.counter, &mut self.rng, cseq);
        self.agent.connection_up(now, &mut source);
        if !self.registering {
            self.registering = true;
            let expires = self.ctx.users.register_expires;
            self.agent
                .register(now, self.contact.clone(), expires, &mut source);
        }
        let mut out = Vec::new();
        self.drain(pending, &mut out, Down::Lost);
        out
    }

    async fn session(&mut self, mut tls: Tls<N>) -> SessionEnd {
        let now = virtual_now();
        let t0 = record::now();
        let lifetime = self
            .exp(self.ctx.users.connection_lifetime)
            .min(self.ctx.users.connection_max_lifetime);
        let mut next_message = now + self.exp(self.ctx.users.message_interval);
        let close_at = now + lifetime;
        let end_at = now + self.ctx.end.saturating_sub(t0);
        let mut pending = PendingMap::new();
        let mut unsent = self.connection_up(now, &mut pending);
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let now = virtual_now();
            self.agent.expire(now.into_std());
            self.drain(&mut pending, &mut unsent, Down::Lost);
            if now >= end_at {
                self.hang_up(&mut tls, &mut pending, Down::End).await;
                return SessionEnd::EndOfRun;
            }
            if now >= close_at && pending.is_empty() {
                self.hang_up(&mut tls, &mut pending, Down::End).await;
                return SessionEnd::ClosedByUser;
            }
            let mut wake = end_at;
            if let Some(at) = self.agent.poll_timeout() {
                wake = wake.min(Instant::from_std(at));
            }
            if now < close_at {
                wake = wake.min(next_message).min(close_at);
            }
            if !unsent.is_empty() {
                wake = now;
            }
            let out = tokio::select! {
                biased;
                read = tls.read(&mut buf) => {
                    let n = match read {
                        Ok(0) | Err(_) => {
                            self.connection_lost(&mut pending);
                            return SessionEnd::ClosedByServer;
                        }
                        Ok(n) => n,
                    };
                    let mut replies = Vec::new();
                    self.agent.receive(virtual_now().into_std(), &buf[..n]);
                    if self.drain(&mut pending, &mut replies, Down::Lost) {
                        // The stream cannot be framed: the agent has given up on it.
                        self.connection_gone(&mut pending);
                        return SessionEnd::ClosedByServer;
                    }
                    replies
                }
                () = tokio::time::sleep_until(wake) => {
                    let now = virtual_now();
                    self.on_timer(now, close_at, &mut next_message, &mut pending, &mut unsent);
                    std::mem::take(&mut unsent)
                }
            };
            if !out.is_empty() && tls.write_all(&out).await.is_err() {
                self.connection_lost(&mut pending);
                return SessionEnd::ClosedByServer;
            }
        }
    }

    /// The user's timer: the agent's refresh if due, then a MESSAGE if one is due (sent only
    /// when registered; the next is drawn either way).
    fn on_timer(
        &mut self,
        now: Instant,
        close_at: Instant,
        next_message: &mut Instant,
        pending: &mut PendingMap,
        out: &mut Vec<u8>,
    ) {
        let index = self.index;
        let mut source = |cseq| ids(index, &mut self.counter, &mut self.rng, cseq);
        self.agent.handle_timeout(now.into_std(), &mut source);
        if now >= *next_message && now < close_at {
            if self.agent.is_registered() {
                let (to, target) = self.pick_target();
                let ids = ids(index, &mut self.counter, &mut self.rng, 1);
                let body = format!("hello from user{:03} #{}", self.index, self.counter);
                let request = self
                    .agent
                    .user_agent()
                    .message(&to, "text/plain", body, &ids);
                let id = self
                    .agent
                    .send(now.into_std(), &request)
                    .expect("the builder's MESSAGE has a Call-ID and a branch");
                let sent = record::now();
                pending.insert(id, Pending { sent, target });
                self.ctx.recorder.lock().expect("recorder").messages_sent += 1;
            }
            *next_message = now + self.exp(self.ctx.users.message_interval);
        }
        self.drain(pending, out, Down::Lost);
    }

    /// Hands the agent's outputs to the recorder and `out` (bytes to write); requests from the
    /// server are answered on the way. A MESSAGE abandoned here ends as `down` says. Returns
    /// whether the agent closed the connection.
    fn drain(&mut self, pending: &mut PendingMap, out: &mut Vec<u8>, down: Down) -> bool {
        let mut closed = false;
        while let Some(output) = self.agent.poll_output() {
            match output {
                Output::Transmit(bytes) => out.extend(bytes),
                // Requests are made only while connected: the agent never asks to connect.
                Output::Connect => {}
                Output::Disconnect => closed = true,
                Output::Event(event) => self.on_event(event, pending, down),
            }
        }
        closed
    }

    fn on_event(&mut self, event: AgentEvent, pending: &mut PendingMap, down: Down) {
        // Outcomes of requests not in `pending` are the REGISTER's: `Registered` says enough.
        let outcome = match event {
            AgentEvent::Answered { request, status } => (request, Outcome::Final(status)),
            AgentEvent::TimedOut { request } => (request, Outcome::Unanswered),
            AgentEvent::Abandoned { request } => match down {
                Down::Lost => (request, Outcome::LostOnClose),
                Down::End => (request, Outcome::PendingAtEnd),
            },
            AgentEvent::Registered { .. } => {
                // Every 200 (refreshes too) is recorded, so the report can tell which users
                // the server served after a fix.
                let mut r = self.ctx.recorder.lock().expect("recorder");
                r.registrations.push((record::now(), self.index));
                return;
            }
            AgentEvent::Stray { .. } => {
                self.ctx.recorder.lock().expect("recorder").duplicate_finals += 1;
                return;
            }
            AgentEvent::Request(req) => {
                // 200 to a MESSAGE, 405 to anything else.
                let status = if req.method == Method::Message {
                    200
                } else {
                    405
                };
                self.answered += 1;
                let tag = format!("u{}r{}", self.index, self.answered);
                let response = Response::for_request(&req, status).with_to_tag(&tag);
                self.agent.respond(&response);
                return;
            }
        };
        let (request, outcome) = outcome;
        if let Some(p) = pending.remove(&request) {
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
    }

    /// The server closed the connection, or a read or write failed.
    fn connection_lost(&mut self, pending: &mut PendingMap) {
        self.agent.connection_down(virtual_now().into_std());
        self.connection_gone(pending);
    }

    /// Records a connection the agent already counts as down: waiting MESSAGEs are lost.
    fn connection_gone(&mut self, pending: &mut PendingMap) {
        let at = record::now();
        self.ctx
            .recorder
            .lock()
            .expect("recorder")
            .closed_by_server
            .push((at, self.index));
        self.drain(pending, &mut Vec::new(), Down::Lost);
    }

    /// Ends the session from our side: waiting MESSAGEs end as `down` says, then TLS closes.
    async fn hang_up(&mut self, tls: &mut Tls<N>, pending: &mut PendingMap, down: Down) {
        self.agent.connection_down(virtual_now().into_std());
        self.drain(pending, &mut Vec::new(), down);
        let _ = tls.shutdown().await;
    }
}
