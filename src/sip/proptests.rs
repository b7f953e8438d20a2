//! Property tests of the pure core: framing is chunking-independent and never panics, messages
//! round-trip through the wire form, and random proxy histories answer every MESSAGE once.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use proptest::collection::vec;
use proptest::prelude::*;

use super::*;

// ---------------------------------------------------------------- generators

fn uri() -> impl Strategy<Value = Uri> {
    (
        any::<bool>(),
        proptest::option::of("[a-z0-9][a-z0-9._-]{0,7}"),
        "[a-z][a-z0-9-]{0,7}(\\.[a-z][a-z0-9]{0,5}){0,2}",
        proptest::option::of(any::<u16>()),
        "(;[a-z]{1,5}=[a-z0-9]{1,5}){0,2}",
    )
        .prop_map(|(secure, user, host, port, params)| Uri {
            secure,
            user,
            host,
            port,
            params,
        })
}

/// A header value as the parser would produce it: trimmed, no line breaks; no commas for the
/// headers split on parse.
fn header() -> impl Strategy<Value = (String, String)> {
    let plain = "[A-Za-z0-9;=:.@<>/_-]([A-Za-z0-9 ;=:.@<>/_Å-]{0,24}[A-Za-z0-9;=:.@<>/_-])?";
    let split = prop::sample::select(vec!["Via", "Contact", "Route", "Record-Route"]);
    let others = prop::sample::select(vec![
        "Call-ID",
        "From",
        "To",
        "CSeq",
        "Subject",
        "User-Agent",
        "Supported",
    ]);
    prop_oneof![
        (split, plain).prop_map(|(n, v)| (n.to_owned(), v)),
        (
            others,
            "([A-Za-z0-9;=:.@<>/_,-]([A-Za-z0-9;=:.@<>/_, -]{0,24}[A-Za-z0-9;=:.@<>/_,-])?)?"
        )
            .prop_map(|(n, v)| (n.to_owned(), v)),
        ("X-[A-Za-z0-9]{1,8}", plain),
    ]
}

fn headers() -> impl Strategy<Value = Headers> {
    vec(header(), 0..8).prop_map(|list| {
        let mut headers = Headers::new();
        for (name, value) in list {
            headers.push(&name, value);
        }
        headers
    })
}

fn message() -> impl Strategy<Value = Message> {
    let body = vec(any::<u8>(), 0..64);
    let request = (
        prop::sample::select(vec![
            "REGISTER", "MESSAGE", "OPTIONS", "INVITE", "PUBLISH", "X-Y",
        ]),
        uri(),
        headers(),
        body.clone(),
    )
        .prop_map(|(method, uri, headers, body)| {
            Message::Request(Request {
                method: Method::from_token(method),
                uri,
                headers,
                body,
            })
        });
    let response = (
        100u16..700,
        "([A-Za-z][A-Za-z ]{0,14}[A-Za-z])?",
        headers(),
        body,
    )
        .prop_map(|(status, reason, headers, body)| {
            Message::Response(Response {
                status,
                reason,
                headers,
                body,
            })
        });
    prop_oneof![request, response]
}

/// Bytes split at arbitrary points.
fn chunked(bytes: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    cuts.sort_unstable();
    let mut chunks = Vec::new();
    let mut start = 0;
    for cut in cuts.into_iter().chain([bytes.len()]) {
        chunks.push(bytes[start..cut].to_vec());
        start = cut;
    }
    chunks
}

fn frame_all(chunks: &[Vec<u8>], max: usize) -> Vec<Result<Frame, FrameError>> {
    let mut framer = Framer::new(max);
    let mut out = Vec::new();
    for chunk in chunks {
        framer.push(chunk);
        out.extend(std::iter::from_fn(|| framer.pop()));
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn round_trips_through_the_wire_form(m in message()) {
        prop_assert_eq!(parse_message(&m.to_bytes()), Ok(m));
    }

    #[test]
    fn uri_round_trips(u in uri()) {
        prop_assert_eq!(Uri::parse(&u.to_string()), Ok(u));
    }

    #[test]
    fn framing_ignores_chunk_boundaries(
        items in vec(prop_oneof![
            3 => message().prop_map(|m| m.to_bytes()),
            1 => Just(PING.to_vec()),
            1 => Just(PONG.to_vec()),
        ], 0..6),
        cuts in vec(any::<usize>(), 0..12),
    ) {
        let stream = items.concat();
        let whole = frame_all(std::slice::from_ref(&stream), DEFAULT_MAX_MESSAGE_SIZE);
        prop_assert_eq!(&frame_all(&chunked(&stream, &cuts), DEFAULT_MAX_MESSAGE_SIZE), &whole);
        let messages: Vec<_> = whole.into_iter().filter_map(|f| match f {
            Ok(Frame::Message(m)) => Some(m),
            _ => None,
        }).collect();
        let sent: Vec<_> = items.into_iter().filter(|i| i != PING && i != PONG).collect();
        prop_assert_eq!(messages, sent);
    }

    #[test]
    fn framing_arbitrary_bytes_never_panics_and_ignores_chunking(
        bytes in prop_oneof![
            vec(any::<u8>(), 0..512),
            vec(prop::sample::select(b"\r\nl:0 1SIP/2.0 MESSAGE Content-Length".to_vec()), 0..512),
        ],
        cuts in vec(any::<usize>(), 0..12),
        max in 16usize..600,
    ) {
        let whole = frame_all(std::slice::from_ref(&bytes), max);
        prop_assert_eq!(frame_all(&chunked(&bytes, &cuts), max), whole.clone());
        for frame in whole {
            if let Ok(Frame::Message(m)) = frame {
                prop_assert!(m.len() <= max);
                let _ = parse_message(&m); // must not panic either
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn parsers_never_panic_on_text(
        start in "(SIP/|MESSAGE |sip:|)\\PC{0,24}",
        lines in vec("(v|To|i|l|Content-Length|\\PC{0,6}): ?\\PC{0,24}", 0..5),
        body in "\\PC{0,8}",
    ) {
        let text = format!("{start}\r\n{}\r\n\r\n{body}", lines.join("\r\n"));
        let _ = parse_message(text.as_bytes());
        for line in &lines {
            let value = line.split_once(':').map_or(line.as_str(), |(_, v)| v);
            let _ = (Uri::parse(value), Via::parse(value), NameAddr::parse(value, "To"), CSeq::parse(value));
        }
        let _ = Uri::parse(&start);
    }
}

// ---------------------------------------------------------------- proxy histories

#[derive(Debug, Clone)]
enum Op {
    /// User `0..3` (re-)registers on their current connection.
    Register(usize),
    /// User `from` sends a MESSAGE to `to`: 0..3 local users, 3 unregistered, 4 unknown
    /// domain, 5 federated.
    Send {
        from: usize,
        to: usize,
    },
    /// The target of a forwarded request answers (possibly twice).
    Answer {
        pick: usize,
        status: u16,
    },
    /// An originator retransmits one of its MESSAGEs (on its current connection).
    Retransmit(usize),
    /// A user's connection closes; the user reconnects on a new one.
    Reconnect(usize),
    /// The route connection opens / fails to open / closes.
    RouteUp,
    RouteFail,
    RouteClose,
    /// Time passes.
    Advance(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => (0usize..3).prop_map(Op::Register),
        4 => (0usize..3, 0usize..6).prop_map(|(from, to)| Op::Send { from, to }),
        3 => (any::<usize>(), prop::sample::select(vec![200u16, 202, 486, 603])).prop_map(|(pick, status)| Op::Answer { pick, status }),
        1 => any::<usize>().prop_map(Op::Retransmit),
        1 => (0usize..3).prop_map(Op::Reconnect),
        1 => Just(Op::RouteUp),
        1 => Just(Op::RouteFail),
        1 => Just(Op::RouteClose),
        2 => (0u64..40_000).prop_map(Op::Advance),
    ]
}

const USERS: [&str; 3] = ["alice", "bob", "carol"];
const ROUTE: RouteId = RouteId(1);

/// A final response seen by the shell: status, and the bytes sent (`None` if undeliverable).
type Final = (u16, Option<Vec<u8>>);

/// A shell that records every final response per Call-ID.
struct Shell {
    proxy: Proxy,
    now: Instant,
    next_conn: u64,
    user_conn: [ConnId; 3],
    route_conn: Option<ConnId>,
    /// Requests the proxy forwarded, with the connection they went to.
    forwarded: Vec<(ConnId, Request)>,
    /// MESSAGEs sent by users: (sender, bytes, call-id, when).
    sent: Vec<(usize, Vec<u8>, String, Instant)>,
    /// Final responses per Call-ID.
    finals: BTreeMap<String, Vec<Final>>,
    retransmits: BTreeMap<String, usize>,
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
            ..ProxyConfig::default()
        };
        let mut shell = Shell {
            proxy: Proxy::new(config),
            now,
            next_conn: 100,
            user_conn: [ConnId(0), ConnId(1), ConnId(2)],
            route_conn: None,
            forwarded: Vec::new(),
            sent: Vec::new(),
            finals: BTreeMap::new(),
            retransmits: BTreeMap::new(),
            seq: 0,
        };
        for conn in shell.user_conn {
            shell
                .proxy
                .connection_opened(conn, ConnKind::Inbound(Transport::Tls), now);
        }
        shell
    }

    fn ids(&mut self) -> RequestIds {
        self.seq += 1;
        RequestIds {
            call_id: format!("c{}", self.seq),
            from_tag: format!("f{}", self.seq),
            branch: format!("b{}", self.seq),
            cseq: self.seq,
        }
    }

    fn fresh_conn(&mut self) -> ConnId {
        self.next_conn += 1;
        ConnId(self.next_conn)
    }

    /// Plays the shell's part for every pending action.
    fn pump(&mut self) {
        while let Some(action) = self.proxy.poll_action() {
            match action {
                Action::Send { conn, bytes, .. } => match parse_message(&bytes) {
                    Ok(Message::Request(request)) => self.forwarded.push((conn, request)),
                    Ok(Message::Response(response)) if response.is_final() => {
                        let call_id = response.headers.call_id().unwrap_or_default().to_owned();
                        self.finals
                            .entry(call_id)
                            .or_default()
                            .push((response.status, Some(bytes)));
                    }
                    _ => {}
                },
                Action::Event(Event::ResponseUndeliverable { call_id, status }) => {
                    self.finals.entry(call_id).or_default().push((status, None));
                }
                Action::Close { .. } | Action::ConnectRoute { .. } | Action::Event(_) => {}
            }
        }
    }

    fn apply(&mut self, op: Op) {
        let now = self.now;
        match op {
            Op::Register(user) => {
                let ids = self.ids();
                let contact =
                    Uri::parse(&format!("sip:{0}@{0}-pc.contoso.com", USERS[user])).unwrap();
                let request = UserAgent::new(Uri::sip(Some(USERS[user]), "contoso.com"), "pc")
                    .register(&contact, 3600, &ids);
                self.proxy
                    .receive(self.user_conn[user], &request.to_bytes(), now);
            }
            Op::Send { from, to } => {
                let target = match to {
                    0..=2 => Uri::sip(Some(USERS[to]), "contoso.com"),
                    3 => Uri::sip(Some("zed"), "contoso.com"),
                    4 => Uri::sip(Some("x"), "example.org"),
                    _ => Uri::sip(Some("dan"), "fabrikam.com"),
                };
                let ids = self.ids();
                let request = UserAgent::new(Uri::sip(Some(USERS[from]), "contoso.com"), "pc")
                    .message(&target, "text/plain", "hi", &ids);
                let bytes = request.to_bytes();
                self.proxy.receive(self.user_conn[from], &bytes, now);
                self.sent.push((from, bytes, ids.call_id, now));
            }
            Op::Answer { pick, status } => {
                if !self.forwarded.is_empty() {
                    let (conn, request) = self.forwarded[pick % self.forwarded.len()].clone();
                    let response = Response::for_request(&request, status).with_to_tag("uas");
                    self.proxy.receive(conn, &response.to_bytes(), now);
                }
            }
            Op::Retransmit(pick) => {
                // Only while the transaction lives (64 × T1 after its final response at the
                // earliest): later, the same bytes are a new request, as in RFC 3261.
                let fresh = self.proxy.config().timer_f();
                let recent: Vec<_> = self
                    .sent
                    .iter()
                    .filter(|s| now < s.3 + fresh)
                    .cloned()
                    .collect();
                if !recent.is_empty() {
                    let (from, bytes, call_id, _) = recent[pick % recent.len()].clone();
                    *self.retransmits.entry(call_id).or_default() += 1;
                    self.proxy.receive(self.user_conn[from], &bytes, now);
                }
            }
            Op::Reconnect(user) => {
                self.proxy.connection_closed(self.user_conn[user], now);
                self.user_conn[user] = self.fresh_conn();
                self.proxy.connection_opened(
                    self.user_conn[user],
                    ConnKind::Inbound(Transport::Tls),
                    now,
                );
            }
            Op::RouteUp => {
                let conn = self.fresh_conn();
                self.route_conn = Some(conn);
                self.proxy
                    .connection_opened(conn, ConnKind::Route(ROUTE), now);
            }
            Op::RouteFail => self.proxy.route_connect_failed(ROUTE, now),
            Op::RouteClose => {
                if let Some(conn) = self.route_conn.take() {
                    self.proxy.connection_closed(conn, now);
                }
            }
            Op::Advance(ms) => {
                let until = self.now + Duration::from_millis(ms);
                self.advance(until);
            }
        }
        self.pump();
    }

    fn advance(&mut self, until: Instant) {
        while let Some(at) = self.proxy.poll_timeout().filter(|at| *at <= until) {
            self.now = at;
            self.proxy.handle_timeout(at);
            self.pump();
        }
        self.now = until;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn every_message_gets_exactly_one_final_response(ops in vec(op(), 1..40)) {
        let mut shell = Shell::new();
        for op in ops {
            shell.apply(op);
        }
        let timer_f = shell.proxy.config().timer_f();
        let until = shell.now + timer_f + Duration::from_secs(1);
        shell.advance(until);
        for (_, _, call_id, _) in &shell.sent {
            let finals = shell.finals.get(call_id).map_or(&[][..], Vec::as_slice);
            prop_assert!(!finals.is_empty(), "{} got no final response", call_id);
            // One answer; resent identically only to retransmissions.
            prop_assert!(finals.iter().all(|f| f.0 == finals[0].0), "{} got {:?}", call_id, finals);
            let bytes: Vec<_> = finals.iter().filter_map(|f| f.1.as_ref()).collect();
            prop_assert!(bytes.windows(2).all(|w| w[0] == w[1]), "{} got different finals", call_id);
            let retransmits = shell.retransmits.get(call_id).copied().unwrap_or(0);
            prop_assert!(finals.len() <= 1 + retransmits, "{} got {} finals", call_id, finals.len());
        }
        let stats = shell.proxy.stats();
        prop_assert_eq!(stats.queue_depth, 0);
        prop_assert_eq!(stats.messages_received, stats.messages_routed + stats.messages_failed);
        prop_assert_eq!(stats.messages_received, shell.sent.len() as u64);
    }
}
