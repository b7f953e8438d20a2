//! The proxy check: a shell whose every move comes from the fuzz input.
//!
//! The input is read as a script of operations on four connection slots: open (as TCP, TLS,
//! mutual TLS or a route connection), close, raw bytes, a well-formed REGISTER or MESSAGE, an
//! answer to a request the proxy forwarded, a retransmission, a failed route connection, and
//! time jumps. Raw bytes give the fuzzer the parser and framer; the generated requests get it
//! past them into registrations, forwarding and Timer F without having to guess a valid
//! message byte by byte.
//!
//! The shell frames what it sends with its own [`Framer`] to know what the proxy received, so
//! it can count, per transaction, how often a request arrived and how often a final response
//! went back. Transactions are named as the proxy names them ([`ServerKey`]), with the method
//! taken from CSeq so that a response can be named the same way.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use crate::sip::parse::{find_head_end, looks_like_response, salvage_headers};
use crate::sip::transaction::ServerKey;
use crate::sip::{
    Action, ConnId, ConnKind, Event, Frame, Framer, Headers, Message, Method, PONG, Payload, Proxy,
    ProxyConfig, Request, RequestIds, Response, RouteId, StaticRoute, Transport, Uri, UserAgent,
    parse_message,
};

const SLOTS: u8 = 4;
const USERS: [&str; 3] = ["alice", "bob", "carol"];
const ROUTE: RouteId = RouteId(1);
/// Final statuses a target may answer with (and a provisional one).
const ANSWERS: [u16; 8] = [100, 180, 200, 202, 404, 486, 503, 603];

/// Runs the script in `data` against a proxy, then closes everything, runs the timers out and
/// checks: no panic, every sent message parses, every MESSAGE answered, no transaction
/// answered more often than it arrived, and nothing left in the proxy.
pub fn proxy(data: &[u8]) {
    let mut shell = Shell::new();
    let mut script = Script { data };
    while let Some(op) = script.byte() {
        shell.apply(op, &mut script);
    }
    shell.wind_down();
    shell.check();
}

/// The fuzz input, consumed from the front.
struct Script<'a> {
    data: &'a [u8],
}

impl<'a> Script<'a> {
    fn byte(&mut self) -> Option<u8> {
        let (&first, rest) = self.data.split_first()?;
        self.data = rest;
        Some(first)
    }

    fn take(&mut self, n: usize) -> &'a [u8] {
        let (taken, rest) = self.data.split_at(n.min(self.data.len()));
        self.data = rest;
        taken
    }
}

/// A transaction as the proxy keys it, or, for a request it cannot key, its raw identity.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum TxKey {
    Stateful(ServerKey),
    Stateless([Option<String>; 3]),
}

fn key_of(headers: &Headers) -> TxKey {
    let method = headers
        .cseq()
        .map_or_else(|_| Method::Other("?".to_owned()), |c| c.method);
    let probe = Request {
        method,
        uri: Uri::sip(None, "probe"),
        headers: headers.clone(),
        body: Vec::new(),
    };
    match ServerKey::for_request(&probe) {
        Ok(key) => TxKey::Stateful(key),
        Err(_) => {
            TxKey::Stateless(["Via", "Call-ID", "CSeq"].map(|n| headers.get(n).map(str::to_owned)))
        }
    }
}

struct Shell {
    proxy: Proxy,
    now: Instant,
    /// Open slots: the connection and a framer mirroring the proxy's.
    open: BTreeMap<u8, (ConnId, Framer)>,
    last_id: [ConnId; SLOTS as usize],
    next_id: u64,
    pending_routes: BTreeSet<RouteId>,
    /// Requests the proxy forwarded, and where.
    forwarded: Vec<(ConnId, Request)>,
    /// Requests the script generated, for retransmission.
    generated: Vec<Vec<u8>>,
    /// Per transaction: requests arrived, plus final responses arrived that the proxy could
    /// relay under that name. Final responses sent may not exceed it.
    allowance: BTreeMap<TxKey, usize>,
    /// MESSAGE transactions that arrived, with their Call-ID.
    messages: BTreeMap<TxKey, String>,
    finals: BTreeMap<TxKey, usize>,
    undeliverable: BTreeMap<String, usize>,
    seq: u32,
}

impl Shell {
    fn new() -> Shell {
        #[allow(clippy::disallowed_methods)] // the one base instant; everything else is virtual
        let now = Instant::now();
        let config = ProxyConfig {
            routes: vec![StaticRoute {
                domain: "fabrikam.com".into(),
                route: ROUTE,
            }],
            max_message_size: 4096,
            ..ProxyConfig::default()
        };
        Shell {
            proxy: Proxy::new(config),
            now,
            open: BTreeMap::new(),
            last_id: [ConnId(0), ConnId(1), ConnId(2), ConnId(3)],
            next_id: 100,
            pending_routes: BTreeSet::new(),
            forwarded: Vec::new(),
            generated: Vec::new(),
            allowance: BTreeMap::new(),
            messages: BTreeMap::new(),
            finals: BTreeMap::new(),
            undeliverable: BTreeMap::new(),
            seq: 0,
        }
    }

    fn apply(&mut self, op: u8, script: &mut Script<'_>) {
        let slot = script.byte().unwrap_or(0) % SLOTS;
        let arg = script.byte().unwrap_or(0);
        match op % 9 {
            0 => self.open(slot, arg),
            1 => {
                if let Some((conn, _)) = self.open.remove(&slot) {
                    self.proxy.connection_closed(conn, self.now);
                }
            }
            2 => {
                let bytes = script.take(usize::from(arg));
                self.receive(slot, bytes);
            }
            3 => {
                let ms = u64::from(u16::from_le_bytes([arg, script.byte().unwrap_or(0)]));
                self.advance(self.now + Duration::from_millis(ms * 16));
            }
            4 => self
                .proxy
                .route_connect_failed(RouteId(u32::from(arg % 2) + 1), self.now),
            5 => self.register(slot, arg),
            6 => self.message(slot, arg),
            7 => self.answer(usize::from(arg), script.byte().unwrap_or(0)),
            _ => {
                if !self.generated.is_empty() {
                    let bytes = self.generated[usize::from(arg) % self.generated.len()].clone();
                    self.receive(slot, &bytes);
                }
            }
        }
        self.pump();
    }

    fn open(&mut self, slot: u8, kind: u8) {
        let kind = match kind % 5 {
            0 => ConnKind::Inbound(Transport::Tcp),
            1 => ConnKind::Inbound(Transport::Tls),
            2 => ConnKind::Inbound(Transport::Mtls),
            r => ConnKind::Route(RouteId(u32::from(r) - 2)),
        };
        // Reopening an open slot reuses its id: the proxy must drop the old connection.
        let conn = match self.open.get(&slot) {
            Some((conn, _)) => *conn,
            None => {
                self.next_id += 1;
                ConnId(self.next_id)
            }
        };
        self.last_id[usize::from(slot)] = conn;
        if let ConnKind::Route(route) = kind {
            self.pending_routes.remove(&route);
        }
        let framer = Framer::new(self.proxy.config().max_message_size);
        self.open.insert(slot, (conn, framer));
        self.proxy.connection_opened(conn, kind, self.now);
    }

    /// Bytes on a slot (on its last connection if closed: the proxy must shrug that off).
    fn receive(&mut self, slot: u8, bytes: &[u8]) {
        let conn = self.last_id[usize::from(slot)];
        self.proxy.receive(conn, bytes, self.now);
        let mut frames = Vec::new();
        if let Some((_, mirror)) = self.open.get_mut(&slot) {
            mirror.push(bytes);
            frames.extend(std::iter::from_fn(|| mirror.pop()));
        }
        for frame in frames {
            let head = match frame {
                Ok(Frame::Ping) => continue,
                Ok(Frame::Message(bytes)) => match parse_message(&bytes) {
                    Ok(Message::Request(request)) => {
                        let key = key_of(&request.headers);
                        *self.allowance.entry(key.clone()).or_default() += 1;
                        if request.method == Method::Message {
                            let call_id = request.headers.get("Call-ID").unwrap_or_default();
                            self.messages.insert(key, call_id.to_owned());
                        }
                        continue;
                    }
                    Ok(Message::Response(mut response)) => {
                        // What the proxy would relay if this answers one of its requests.
                        response.headers.remove_first("Via");
                        let key = key_of(&response.headers);
                        *self.allowance.entry(key).or_default() += 1;
                        continue;
                    }
                    Err(_) => bytes[..find_head_end(&bytes, 0).unwrap_or(bytes.len())].to_vec(),
                },
                Err(error) => error.head().to_vec(),
            };
            if !looks_like_response(&head) {
                // The proxy answers from the salvaged headers; name the transaction as its
                // answer will be named, after serialising (which blanks control characters).
                let mut answer = Response::new(400);
                answer.headers = salvage_headers(&head);
                let headers = match parse_message(&answer.to_bytes()) {
                    Ok(message) => message.headers().clone(),
                    Err(_) => answer.headers,
                };
                *self.allowance.entry(key_of(&headers)).or_default() += 1;
            }
        }
    }

    fn ids(&mut self) -> RequestIds {
        self.seq += 1;
        RequestIds {
            call_id: format!("fz{}", self.seq),
            from_tag: format!("t{}", self.seq),
            branch: format!("fz{}", self.seq),
            cseq: self.seq,
        }
    }

    fn user(&self, arg: u8) -> UserAgent {
        let user = USERS[usize::from(arg) % USERS.len()];
        UserAgent::new(Uri::sip(Some(user), "contoso.com"), &format!("{user}-pc"))
    }

    fn send_generated(&mut self, slot: u8, request: &Request) {
        let bytes = request.to_bytes();
        self.receive(slot, &bytes);
        self.generated.push(bytes);
    }

    fn register(&mut self, slot: u8, arg: u8) {
        let ua = self.user(arg);
        let contact = Uri::sip(ua.aor.user.as_deref(), &ua.host);
        let expires = [0, 30, 60, 3600][usize::from(arg >> 4) % 4];
        let ids = self.ids();
        let request = ua.register(&contact, expires, &ids);
        self.send_generated(slot, &request);
    }

    fn message(&mut self, slot: u8, arg: u8) {
        let ua = self.user(arg);
        let to = match (arg >> 2) % 6 {
            t @ 0..3 => Uri::sip(Some(USERS[usize::from(t)]), "contoso.com"),
            3 => Uri::sip(Some("zed"), "contoso.com"),
            4 => Uri::sip(Some("dan"), "fabrikam.com"),
            _ => Uri::sip(Some("x"), "example.org"),
        };
        let ids = self.ids();
        let request = ua.message(&to, "text/plain", "hi", &ids);
        self.send_generated(slot, &request);
    }

    /// The target of a forwarded request answers it, on the connection it went to.
    fn answer(&mut self, pick: usize, status: u8) {
        if self.forwarded.is_empty() {
            return;
        }
        let (conn, request) = &self.forwarded[pick % self.forwarded.len()];
        let Some(slot) = self
            .open
            .iter()
            .find(|(_, (c, _))| c == conn)
            .map(|(s, _)| *s)
        else {
            return;
        };
        let status = ANSWERS[usize::from(status) % ANSWERS.len()];
        let response = Response::for_request(request, status).with_to_tag("uas");
        self.receive(slot, &response.to_bytes());
    }

    /// Plays the shell's part for every pending action.
    fn pump(&mut self) {
        while let Some(action) = self.proxy.poll_action() {
            match action {
                Action::Send { bytes, payload, .. } if bytes == PONG => {
                    assert_eq!(
                        payload,
                        Payload::KeepAlive,
                        "a keep-alive answer mislabelled"
                    );
                }
                Action::Send {
                    conn,
                    bytes,
                    payload,
                } => match parse_message(&bytes) {
                    Ok(Message::Request(request)) => {
                        assert_eq!(payload, Payload::Request, "a request mislabelled");
                        self.forwarded.push((conn, request));
                    }
                    Ok(Message::Response(response)) => {
                        let sent = Payload::Response {
                            method: response.headers.cseq().ok().map(|c| c.method),
                            status: response.status,
                        };
                        assert_eq!(payload, sent, "a response mislabelled");
                        if response.is_final() {
                            *self.finals.entry(key_of(&response.headers)).or_default() += 1;
                        }
                    }
                    Err(error) => panic!(
                        "the proxy sent a message that does not parse ({error}): {:?}",
                        String::from_utf8_lossy(&bytes)
                    ),
                },
                Action::Close { conn } => self.open.retain(|_, (c, _)| *c != conn),
                Action::ConnectRoute { route } => {
                    self.pending_routes.insert(route);
                }
                Action::Event(Event::ResponseUndeliverable { call_id, .. }) => {
                    *self.undeliverable.entry(call_id).or_default() += 1;
                }
                Action::Event(_) => {}
            }
        }
    }

    fn advance(&mut self, until: Instant) {
        while let Some(at) = self.proxy.poll_timeout().filter(|at| *at <= until) {
            self.now = self.now.max(at);
            self.proxy.handle_timeout(self.now);
            self.pump();
        }
        self.now = self.now.max(until);
    }

    /// Closes every connection, fails every route connection asked for, and runs the timers
    /// until none is left.
    fn wind_down(&mut self) {
        for (_, (conn, _)) in std::mem::take(&mut self.open) {
            self.proxy.connection_closed(conn, self.now);
        }
        for _ in 0..100_000 {
            for route in std::mem::take(&mut self.pending_routes) {
                self.proxy.route_connect_failed(route, self.now);
            }
            self.pump();
            let Some(at) = self.proxy.poll_timeout() else {
                return;
            };
            self.now = self.now.max(at);
            self.proxy.handle_timeout(self.now);
        }
        panic!("timers still pending after 100000 rounds");
    }

    fn check(&self) {
        for (key, call_id) in &self.messages {
            let answered = self.finals.get(key).copied().unwrap_or(0)
                + self.undeliverable.get(call_id).copied().unwrap_or(0);
            assert!(answered > 0, "MESSAGE {key:?} was never answered");
        }
        for (key, finals) in &self.finals {
            let allowed = self.allowance.get(key).copied().unwrap_or(0);
            assert!(
                *finals <= allowed,
                "{key:?} got {finals} final responses but arrived {allowed} times"
            );
        }
        let left = self.proxy.state_left();
        assert!(
            left.is_empty(),
            "state left once everything closed: {left:?}"
        );
        let stats = self.proxy.stats();
        assert_eq!(
            stats.messages_received,
            stats.messages_routed + stats.messages_failed,
            "MESSAGE transactions not completed exactly once: {stats:?}"
        );
        assert_eq!(stats.queue_depth, 0, "{stats:?}");
    }
}
