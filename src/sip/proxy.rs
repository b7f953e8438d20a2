//! The registrar and stateful proxy, as a state machine the I/O shell drives.
//!
//! The shell tells the [`Proxy`] what happened — a connection opened or closed, bytes arrived,
//! a route connection could not be opened, time passed — and then drains [`Proxy::poll_action`]
//! (bytes to write, connections to close or open, events to log) and sleeps until
//! [`Proxy::poll_timeout`]. The proxy never reads a clock and never blocks, so the same code runs
//! under tokio on real sockets, under turmoil on virtual time, and in unit tests that jump from
//! one deadline to the next.
//!
//! Routing: a request for a local domain goes to the most recently registered contact of its
//! address of record, over the connection that registered it (480 if none); a request for a
//! statically routed domain goes over that route's mutual-TLS connection; anything else gets 404.
//! Requests for a route that is not connected wait in the route's queue while `ConnectRoute` asks
//! the shell to connect; the queue flushes when the connection opens. Timer F starts when the
//! request arrives, queued or not, so a route that never comes up yields 408 after exactly
//! 64 × T1 — the symptom KB836410 describes for federated instant messages.
//!
//! Every request gets exactly one final response: [`ServerTx`] refuses a second, and every
//! client transaction ends in exactly one of: a relayed final response, Timer F (408), or its
//! connection closing (480 for a user, 503 for a route). If the originator's connection is gone
//! when the answer is ready, [`Event::ResponseUndeliverable`] says so; if the originator
//! retransmits over a new connection in time, it gets the stored answer.

#[cfg(test)]
mod malformed_tests;
mod routing;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

use super::actions::{Action, ConnKind, Event, Payload};
// Re-exported for the modules that import it from here (`transaction`).
pub(crate) use super::actions::ConnId;
use super::config::{ProxyConfig, RouteId};
use super::framer::{Frame, FrameError, Framer, PONG};
use super::header::HeaderError;
use super::message::{Message, Request, Response};
use super::method::{Method, MethodCounts};
use super::parse::{
    ParseError, find_head_end, looks_like_response, parse_message, salvage_headers,
};
use super::registrar::{Outcome, Registrar};
use super::timeouts::Timer;
use super::timers::{TimerKey, TimerQueue};
use super::transaction::{ClientTx, Released, ServerKey, ServerState, ServerTable, ServerTx};
use super::uri::{UriError, truncate};

/// Counters since the proxy was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProxyStats {
    /// Requests parsed (retransmissions included).
    pub requests_received: u64,
    /// The same, by method.
    pub requests_by_method: MethodCounts,
    /// Responses parsed.
    pub responses_received: u64,
    /// New MESSAGE transactions.
    pub messages_received: u64,
    /// MESSAGEs delivered: a 2xx was relayed back to the originator.
    pub messages_routed: u64,
    /// MESSAGEs answered with a failure (ours or relayed), timeouts included.
    pub messages_failed: u64,
    /// Requests answered 408 because Timer F fired.
    pub timed_out: u64,
    /// Requests that ever waited in a route queue.
    pub queued: u64,
    /// Requests waiting in route queues now.
    pub queue_depth: usize,
    /// REGISTER requests accepted (200).
    pub registrations: u64,
    /// Registration bindings now.
    pub bindings: usize,
    /// Delimited messages that did not parse.
    pub parse_errors: u64,
    /// Streams that could not be framed (connection closed).
    pub framing_errors: u64,
    /// Retransmitted requests absorbed by a server transaction.
    pub retransmissions: u64,
    /// Responses matching no transaction.
    pub stray_responses: u64,
    /// Final responses whose originator had gone.
    pub undeliverable_responses: u64,
    /// Double-CRLF keep-alives answered.
    pub keepalives: u64,
    /// Failed route connection attempts.
    pub route_connect_failures: u64,
    /// Server transactions held now (in progress and completed).
    pub server_transactions: usize,
    /// Completed server transactions released before their linger ended, by cap.
    pub released_early: Released,
    /// Connections closed because a message did not arrive whole within the message timeout
    /// from its first byte.
    pub message_timeouts: u64,
}

/// Methods answered by this server (the Allow header).
const ALLOW: &str = "REGISTER, MESSAGE, OPTIONS";

struct Connection {
    kind: ConnKind,
    framer: Framer,
    /// While part of a message is buffered: the timer that closes the connection if the rest
    /// does not come within the message timeout.
    partial: Option<TimerKey>,
}

/// Connection state of one static route.
#[derive(Debug, Default)]
struct RouteState {
    conn: Option<ConnId>,
    connecting: bool,
    /// Back-off after a failed attempt: no new attempt before this timer fires.
    retry: Option<TimerKey>,
    /// Branches of client transactions waiting for the connection, oldest first.
    queue: VecDeque<String>,
}

/// The sans-IO registrar and stateful proxy. How it routes, and why every request gets exactly
/// one final response: the doc of its module, src/sip/proxy.rs (private, so only
/// `cargo doc --document-private-items` shows it).
pub struct Proxy {
    config: ProxyConfig,
    conns: BTreeMap<ConnId, Connection>,
    registrar: Registrar,
    servers: ServerTable,
    clients: BTreeMap<String, ClientTx>,
    routes: BTreeMap<RouteId, RouteState>,
    timers: TimerQueue<Timer>,
    actions: VecDeque<Action>,
    stats: ProxyStats,
    ids: u64,
}

impl Proxy {
    /// A proxy with no connections.
    pub fn new(config: ProxyConfig) -> Proxy {
        let servers = ServerTable::new(config.completed);
        Proxy {
            config,
            conns: BTreeMap::new(),
            registrar: Registrar::default(),
            servers,
            clients: BTreeMap::new(),
            routes: BTreeMap::new(),
            timers: TimerQueue::default(),
            actions: VecDeque::new(),
            stats: ProxyStats::default(),
            ids: 0,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &ProxyConfig {
        &self.config
    }

    /// Counters.
    pub fn stats(&self) -> ProxyStats {
        ProxyStats {
            bindings: self.registrar.len(),
            server_transactions: self.servers.len(),
            released_early: self.servers.released(),
            ..self.stats
        }
    }

    /// What the proxy still holds, by kind, leaving out kinds it holds none of: open
    /// connections, server and client transactions, bindings, timers, queued requests, and
    /// routes connected, connecting or backing off. Once every connection is closed, every
    /// route connection attempt answered and every timer has fired, nothing may be left; the
    /// fuzz checks (`lcs_sim::fuzzcheck`, behind the `fuzzcheck` feature) assert it.
    #[doc(hidden)]
    pub fn state_left(&self) -> Vec<(&'static str, usize)> {
        let busy = |r: &&RouteState| r.conn.is_some() || r.connecting || r.retry.is_some();
        [
            ("connections", self.conns.len()),
            ("server_transactions", self.servers.len()),
            ("server_tx_index", self.servers.indexed_connections()),
            ("client_transactions", self.clients.len()),
            ("bindings", self.registrar.len()),
            ("timers", self.timers.len()),
            ("queued", self.routes.values().map(|r| r.queue.len()).sum()),
            ("busy_routes", self.routes.values().filter(busy).count()),
        ]
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .collect()
    }

    /// The next action for the shell, in order.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When to call [`Proxy::handle_timeout`] next, if anything is pending.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next_deadline()
    }

    /// A connection was accepted, or a route connection was established.
    pub fn connection_opened(&mut self, conn: ConnId, kind: ConnKind, now: Instant) {
        self.drop_connection(conn, now); // a reused id means the old connection is gone
        let framer = Framer::new(self.config.max_message_size);
        let partial = None;
        self.conns.insert(
            conn,
            Connection {
                kind,
                framer,
                partial,
            },
        );
        if let ConnKind::Route(route) = kind {
            self.route_connected(route, conn);
        }
    }

    /// The connection closed (by the peer, an error, or after [`Action::Close`]).
    pub fn connection_closed(&mut self, conn: ConnId, now: Instant) {
        self.drop_connection(conn, now);
    }

    /// Bytes arrived on a connection.
    pub fn receive(&mut self, conn: ConnId, bytes: &[u8], now: Instant) {
        let Some(connection) = self.conns.get_mut(&conn) else {
            self.event(Event::UnknownConnection { conn });
            return;
        };
        connection.framer.push(bytes);
        let mut whole = false;
        while let Some(frame) = self.conns.get_mut(&conn).and_then(|c| c.framer.pop()) {
            whole = true;
            match frame {
                Ok(Frame::Ping) => {
                    self.stats.keepalives += 1;
                    self.send(conn, PONG.to_vec(), Payload::KeepAlive);
                }
                Ok(Frame::Message(bytes)) => self.on_message(conn, &bytes, now),
                Err(error) => self.on_frame_error(conn, error, now),
            }
        }
        self.watch_partial(conn, whole, now);
    }

    /// Arms the message timeout when part of a message waits in the framer (again when a whole
    /// message was taken from it: what is left began now), disarms it when nothing waits. A
    /// head sent a byte a second is cut off, not held until the idle timeout.
    fn watch_partial(&mut self, conn: ConnId, whole: bool, now: Instant) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let waiting = c.framer.buffered() > 0 && !c.framer.is_failed();
        match (waiting, c.partial) {
            (true, Some(_)) if !whole => {}
            (false, None) => {}
            (waiting, armed) => {
                if let Some(timer) = armed {
                    self.timers.cancel(timer);
                }
                c.partial = waiting.then(|| {
                    let at = now + self.config.message_timeout;
                    self.timers.insert(at, Timer::MessageTimeout { conn })
                });
            }
        }
    }

    /// A message did not arrive whole in time: the connection is closed.
    fn message_timeout(&mut self, conn: ConnId, now: Instant) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        c.partial = None; // it fired
        self.stats.message_timeouts += 1;
        self.actions.push_back(Action::Close { conn });
        self.drop_connection(conn, now);
    }

    /// Fires every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(timer) = self.timers.pop_due(now) {
            match timer {
                Timer::TransactionTimeout { branch } => self.transaction_timeout(&branch, now),
                Timer::ServerLinger { key } => {
                    self.servers.remove(&key);
                }
                Timer::MessageTimeout { conn } => self.message_timeout(conn, now),
                Timer::BindingExpiry { aor, binding } => {
                    self.registrar.expire(&aor, binding, now, &mut self.actions)
                }
                Timer::RouteRetry { route } => self.route_retry(route, now),
            }
        }
    }

    fn on_message(&mut self, conn: ConnId, bytes: &[u8], now: Instant) {
        match parse_message(bytes) {
            Ok(Message::Request(request)) => {
                self.stats.requests_received += 1;
                self.stats.requests_by_method.count(&request.method);
                self.on_request(conn, request, now);
            }
            Ok(Message::Response(response)) => {
                self.stats.responses_received += 1;
                self.on_response(conn, response, now);
            }
            Err(error) => {
                self.stats.parse_errors += 1;
                let status = match &error {
                    ParseError::UnsupportedVersion { .. } => 505,
                    ParseError::InvalidUri {
                        source: UriError::UnsupportedScheme { .. },
                    } => 416,
                    _ => 400,
                };
                let head = &bytes[..find_head_end(bytes, 0).unwrap_or(bytes.len())];
                self.reject_unparsed(conn, head, status);
                self.event(Event::ParseError { conn, error });
            }
        }
    }

    fn on_frame_error(&mut self, conn: ConnId, error: FrameError, now: Instant) {
        self.stats.framing_errors += 1;
        let status = if matches!(error, FrameError::TooLarge { .. }) {
            513
        } else {
            400
        };
        self.reject_unparsed(conn, error.head(), status);
        self.event(Event::FramingError { conn, error });
        self.actions.push_back(Action::Close { conn });
        self.drop_connection(conn, now);
    }

    /// Answers a request that could not be parsed, from whatever headers can be salvaged.
    /// Unparseable responses are only counted: a response is never answered.
    fn reject_unparsed(&mut self, conn: ConnId, head: &[u8], status: u16) {
        if looks_like_response(head) {
            return;
        }
        let mut response = Response::new(status);
        response.headers = salvage_headers(head);
        let tag = self.fresh_id();
        let response = self.stamp(response.with_to_tag(&tag));
        self.respond(conn, &response);
    }

    fn on_request(&mut self, conn: ConnId, request: Request, now: Instant) {
        if request.method == Method::Ack {
            return; // acknowledges one of our failure responses to an INVITE; nothing to do
        }
        let key = match ServerKey::for_request(&request) {
            Ok(key) => key,
            Err(error) => {
                // Without a usable Via there is no transaction; answer statelessly.
                let response = bad_request(Response::for_request(&request, 400), &error);
                let tag = self.fresh_id();
                let response = self.stamp(response.with_to_tag(&tag));
                self.respond(conn, &response);
                return;
            }
        };
        if let Some(tx) = self.servers.rebind(&key, conn) {
            self.stats.retransmissions += 1;
            if let ServerState::Completed { response, payload } = &tx.state {
                let (bytes, payload) = (response.clone(), payload.clone());
                self.send(conn, bytes, payload);
            }
            return;
        }
        self.servers
            .insert(key.clone(), ServerTx::new(&request, conn));
        if request.method == Method::Message {
            self.stats.messages_received += 1;
        }
        if let Some(response) = self.dispatch(conn, &key, request, now) {
            self.finish(&key, response, now);
        }
    }

    /// Handles a new request; returns the final response unless it was forwarded or queued.
    fn dispatch(
        &mut self,
        conn: ConnId,
        key: &ServerKey,
        request: Request,
        now: Instant,
    ) -> Option<Response> {
        if let Err(error) = check_request(&request) {
            return Some(bad_request(self.reply(key, 400), &error));
        }
        let kind = self.conns.get(&conn)?.kind;
        let to_us = request.uri.user.is_none() && self.config.is_local(&request.uri.host);
        Some(match request.method {
            Method::Register => self.register(conn, kind, key, &request, now),
            Method::Options if to_us => match request.headers.get("Require") {
                Some(required) => self.unsupported(key, required),
                None => {
                    let mut response = self.reply(key, 200);
                    response.headers.push("Allow", ALLOW);
                    response.headers.push("Accept", "text/plain");
                    response
                }
            },
            Method::Message | Method::Options => return self.route(kind, key, request, now),
            Method::Other(_) => self.reply(key, 501),
            _ => {
                let mut response = self.reply(key, 405);
                response.headers.push("Allow", ALLOW);
                response
            }
        })
    }

    fn register(
        &mut self,
        conn: ConnId,
        kind: ConnKind,
        key: &ServerKey,
        request: &Request,
        now: Instant,
    ) -> Response {
        if kind.is_federation() {
            return self.reply(key, 403);
        }
        if let Some(required) = request.headers.get("Require") {
            return self.unsupported(key, required);
        }
        let to_local = request
            .headers
            .to_addr()
            .is_ok_and(|to| self.config.is_local(&to.uri.host));
        if !self.config.is_local(&request.uri.host) || !to_local {
            return self.reply(key, 404);
        }
        let outcome = self.registrar.register(
            request,
            conn,
            now,
            &self.config,
            &mut self.timers,
            &mut self.actions,
        );
        match outcome {
            Ok(Outcome::Ok { contacts }) => {
                self.stats.registrations += 1;
                let mut response = self.reply(key, 200);
                for contact in contacts {
                    response.headers.push("Contact", contact);
                }
                response
            }
            Ok(Outcome::TooBrief { min_expires }) => {
                let mut response = self.reply(key, 423);
                response
                    .headers
                    .push("Min-Expires", min_expires.to_string());
                response
            }
            Ok(Outcome::Reject { status }) => self.reply(key, status),
            Err(error) => bad_request(self.reply(key, 400), &error),
        }
    }

    /// 420 Bad Extension: we support no extensions.
    fn unsupported(&mut self, key: &ServerKey, required: &str) -> Response {
        let mut response = self.reply(key, 420);
        response.headers.push("Unsupported", required.to_owned());
        response
    }

    /// Records and sends the final response of a server transaction (at most once).
    fn finish(&mut self, key: &ServerKey, response: Response, now: Instant) {
        let Some(tx) = self.servers.get_mut(key) else {
            return;
        };
        let bytes = response.to_bytes();
        let payload = payload_of(&response, &bytes);
        if !tx.complete(bytes.clone(), payload.clone()) {
            return; // never a second final response
        }
        let linger = self.timers.insert(
            now + self.config.timer_f(),
            Timer::ServerLinger { key: key.clone() },
        );
        if tx.method == Method::Message {
            if (200..300).contains(&response.status) {
                self.stats.messages_routed += 1;
            } else {
                self.stats.messages_failed += 1;
            }
        }
        match tx.conn.filter(|conn| self.conns.contains_key(conn)) {
            Some(conn) => self.send(conn, bytes, payload),
            None => {
                let call_id = tx.call_id().to_owned();
                self.stats.undeliverable_responses += 1;
                self.event(Event::ResponseUndeliverable {
                    call_id,
                    status: response.status,
                });
            }
        }
        for timer in self.servers.completed(key, linger) {
            self.timers.cancel(timer);
        }
    }

    /// A response of ours to the request of `key`, with To tag and Server header.
    fn reply(&mut self, key: &ServerKey, status: u16) -> Response {
        let tag = self.fresh_id();
        let response = match self.servers.get(key) {
            Some(tx) => tx.response(status, &tag),
            None => Response::new(status),
        };
        self.stamp(response)
    }

    fn stamp(&self, mut response: Response) -> Response {
        response
            .headers
            .push("Server", self.config.server_name.clone());
        response
    }

    fn drop_connection(&mut self, conn: ConnId, now: Instant) {
        let Some(connection) = self.conns.remove(&conn) else {
            return;
        };
        if let Some(timer) = connection.partial {
            self.timers.cancel(timer);
        }
        // Answers still get recorded, for a retransmission over a new connection.
        self.servers.detach(conn);
        self.registrar
            .remove_connection(conn, &mut self.timers, &mut self.actions);
        if let ConnKind::Route(route) = connection.kind {
            self.route_disconnected(route, conn, now);
        }
        self.fail_in_flight(conn, now);
    }

    fn fresh_id(&mut self) -> String {
        self.ids += 1;
        format!("{:x}.{:x}", self.config.instance, self.ids)
    }

    fn send(&mut self, conn: ConnId, bytes: Vec<u8>, payload: Payload) {
        self.actions.push_back(Action::Send {
            conn,
            bytes,
            payload,
        });
    }

    /// Sends a response of ours, or one relayed.
    fn respond(&mut self, conn: ConnId, response: &Response) {
        let bytes = response.to_bytes();
        let payload = payload_of(response, &bytes);
        self.send(conn, bytes, payload);
    }

    fn event(&mut self, event: Event) {
        self.actions.push_back(Action::Event(event));
    }
}

/// How a response is counted: its status and the method of its CSeq.
///
/// The method is what a receiver reads from the bytes: a CSeq salvaged from a broken request
/// may hold control characters that do not parse here but are written out as spaces (see
/// `message::serialize`), and then does parse. Only then are the bytes parsed again.
fn payload_of(response: &Response, bytes: &[u8]) -> Payload {
    let method = match response.headers.cseq() {
        Ok(cseq) => Some(cseq.method),
        Err(_) => match parse_message(bytes) {
            Ok(Message::Response(sent)) => sent.headers.cseq().ok().map(|cseq| cseq.method),
            _ => None,
        },
    };
    Payload::Response {
        method,
        status: response.status,
    }
}

/// Checks the headers every request must have (RFC 3261 §8.1.1) and that CSeq matches.
fn check_request(request: &Request) -> Result<(), HeaderError> {
    let h = &request.headers;
    h.from_addr()?;
    h.to_addr()?;
    h.call_id()?;
    let cseq = h.cseq()?;
    if cseq.method != request.method {
        return Err(HeaderError::Malformed {
            header: "CSeq",
            value: cseq.to_string(),
            reason: "method differs from the request line",
        });
    }
    h.max_forwards()?;
    Ok(())
}

/// A 400 whose reason phrase says what was wrong.
fn bad_request(mut response: Response, error: &HeaderError) -> Response {
    response.reason = truncate(&format!("Bad Request ({error})"), 200);
    response
}
