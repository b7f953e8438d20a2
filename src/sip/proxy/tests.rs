//! Drives the proxy with several connections on virtual time and checks exact responses.

use std::time::{Duration, Instant};

use super::*;
use crate::sip::{BindingRemoval, RequestIds, StaticRoute, Transport, Uri, UserAgent, Via};

pub(crate) const ALICE: ConnId = ConnId(1);
pub(crate) const BOB: ConnId = ConnId(2);
const PEER: ConnId = ConnId(9);
const FABRIKAM: RouteId = RouteId(7);

pub(crate) fn test_config() -> ProxyConfig {
    ProxyConfig {
        routes: vec![StaticRoute {
            domain: "fabrikam.com".into(),
            route: FABRIKAM,
        }],
        ..ProxyConfig::default()
    }
}

/// The proxy, a virtual clock, and everything it asked the shell to do.
pub(crate) struct Harness {
    pub(crate) proxy: Proxy,
    pub(crate) t0: Instant,
    pub(crate) now: Instant,
    pub(crate) seq: u32,
}

impl Harness {
    pub(crate) fn new() -> Harness {
        #[allow(clippy::disallowed_methods)] // the one base instant; everything else is virtual
        let t0 = Instant::now();
        Harness {
            proxy: Proxy::new(test_config()),
            t0,
            now: t0,
            seq: 0,
        }
    }

    pub(crate) fn drain(&mut self) -> Vec<Action> {
        std::iter::from_fn(|| self.proxy.poll_action()).collect()
    }

    pub(crate) fn open(&mut self, conn: ConnId, kind: ConnKind) -> Vec<Action> {
        self.proxy.connection_opened(conn, kind, self.now);
        self.drain()
    }

    pub(crate) fn close(&mut self, conn: ConnId) -> Vec<Action> {
        self.proxy.connection_closed(conn, self.now);
        self.drain()
    }

    pub(crate) fn recv(&mut self, conn: ConnId, bytes: &[u8]) -> Vec<Action> {
        self.proxy.receive(conn, bytes, self.now);
        self.drain()
    }

    /// Jumps to the next deadline and fires it.
    pub(crate) fn step(&mut self) -> Option<Vec<Action>> {
        self.now = self.proxy.poll_timeout()?;
        self.proxy.handle_timeout(self.now);
        Some(self.drain())
    }

    pub(crate) fn ids(&mut self) -> RequestIds {
        self.seq += 1;
        RequestIds {
            call_id: format!("call-{}", self.seq),
            from_tag: format!("ft{}", self.seq),
            branch: format!("b{}", self.seq),
            cseq: self.seq,
        }
    }
}

pub(crate) fn ua(user: &str, domain: &str) -> UserAgent {
    UserAgent::new(Uri::sip(Some(user), domain), &format!("{user}-pc.{domain}"))
}

pub(crate) fn contact(user: &str) -> Uri {
    Uri::parse(&format!(
        "sip:{user}@{user}-pc.contoso.com:5061;transport=tls"
    ))
    .unwrap()
}

/// Messages sent to `conn`, parsed.
pub(crate) fn sent_to(actions: &[Action], conn: ConnId) -> Vec<Message> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send { conn: c, bytes, .. } if *c == conn && bytes != PONG => {
                Some(parse_message(bytes).unwrap())
            }
            _ => None,
        })
        .collect()
}

/// The single response sent to `conn`.
pub(crate) fn response_to(actions: &[Action], conn: ConnId) -> Response {
    match sent_to(actions, conn).as_slice() {
        [Message::Response(r)] => r.clone(),
        other => panic!("expected one response to {conn:?}, got {other:#?}\nall: {actions:#?}"),
    }
}

/// The single request sent to `conn`.
pub(crate) fn request_to(actions: &[Action], conn: ConnId) -> Request {
    match sent_to(actions, conn).as_slice() {
        [Message::Request(r)] => r.clone(),
        other => panic!("expected one request to {conn:?}, got {other:#?}"),
    }
}

pub(crate) fn events(actions: &[Action]) -> Vec<&Event> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Event(e) => Some(e),
            _ => None,
        })
        .collect()
}

/// Opens ALICE and BOB (TLS) and registers both.
pub(crate) fn registered() -> Harness {
    let mut h = Harness::new();
    for (conn, user) in [(ALICE, "alice"), (BOB, "bob")] {
        h.open(conn, ConnKind::Inbound(Transport::Tls));
        let ids = h.ids();
        let req = ua(user, "contoso.com").register(&contact(user), 3600, &ids);
        assert_eq!(
            response_to(&h.recv(conn, &req.to_bytes()), conn).status,
            200
        );
    }
    h
}

pub(crate) fn message(h: &mut Harness, from: &str, to: &str, to_domain: &str) -> Request {
    let ids = h.ids();
    ua(from, "contoso.com").message(&Uri::sip(Some(to), to_domain), "text/plain", "hello", &ids)
}

#[test]
fn register_answers_200_with_contacts_and_expires() {
    let mut h = Harness::new();
    h.open(ALICE, ConnKind::Inbound(Transport::Tls));
    let ids = h.ids();
    let req = ua("alice", "contoso.com").register(&contact("alice"), 3600, &ids);
    let actions = h.recv(ALICE, &req.to_bytes());
    let ok = response_to(&actions, ALICE);
    assert_eq!((ok.status, ok.reason.as_str()), (200, "OK"));
    assert_eq!(
        ok.headers.get_all("Contact").collect::<Vec<_>>(),
        ["<sip:alice@alice-pc.contoso.com:5061;transport=tls>;expires=3600"]
    );
    assert!(ok.headers.to_addr().unwrap().tag().is_some());
    assert_eq!(ok.headers.get("Call-ID"), Some("call-1"));
    assert_eq!(ok.headers.get("CSeq"), Some("1 REGISTER"));
    assert_eq!(ok.headers.get("Server"), Some("lcs-sim"));
    assert!(matches!(
        events(&actions)[..],
        [Event::BindingAdded {
            conn: ALICE,
            expires: 3600,
            ..
        }]
    ));
    let stats = h.proxy.stats();
    assert_eq!((stats.registrations, stats.bindings), (1, 1));
}

#[test]
fn register_bounds_and_unregister() {
    let mut h = Harness::new();
    h.open(ALICE, ConnKind::Inbound(Transport::Tls));
    let alice = ua("alice", "contoso.com");
    let ids = h.ids();
    let brief = response_to(
        &h.recv(
            ALICE,
            &alice.register(&contact("alice"), 30, &ids).to_bytes(),
        ),
        ALICE,
    );
    assert_eq!(
        (brief.status, brief.headers.get("Min-Expires")),
        (423, Some("60"))
    );
    let ids = h.ids();
    let long = response_to(
        &h.recv(
            ALICE,
            &alice.register(&contact("alice"), 99_999, &ids).to_bytes(),
        ),
        ALICE,
    );
    assert_eq!(
        long.headers.get("Contact"),
        Some("<sip:alice@alice-pc.contoso.com:5061;transport=tls>;expires=7200")
    );
    let ids = h.ids();
    let gone = response_to(
        &h.recv(
            ALICE,
            &alice.register(&contact("alice"), 0, &ids).to_bytes(),
        ),
        ALICE,
    );
    assert_eq!((gone.status, gone.headers.get("Contact")), (200, None));
    assert_eq!(h.proxy.stats().bindings, 0);
    assert_eq!(
        h.proxy.poll_timeout(),
        Some(h.now + Duration::from_secs(32)),
        "only lingering transactions remain"
    );
    // A foreign domain is not ours to register.
    let ids = h.ids();
    let foreign = ua("eve", "fabrikam.com").register(&contact("eve"), 3600, &ids);
    assert_eq!(
        response_to(&h.recv(ALICE, &foreign.to_bytes()), ALICE).status,
        404
    );
}

#[test]
fn binding_expires_unless_refreshed() {
    let mut h = registered();
    let alice = ua("alice", "contoso.com");
    h.now += Duration::from_secs(3000);
    let ids = h.ids();
    h.recv(
        ALICE,
        &alice.register(&contact("alice"), 3600, &ids).to_bytes(),
    ); // refresh until 6600 s
    let mut removed = Vec::new();
    while let Some(actions) = h.step() {
        for event in events(&actions) {
            if let Event::BindingRemoved { aor, reason } = event {
                removed.push((aor.clone(), *reason, h.now - h.t0));
            }
        }
    }
    assert_eq!(
        removed,
        [
            (
                "bob@contoso.com".to_owned(),
                BindingRemoval::Expired,
                Duration::from_secs(3600)
            ),
            (
                "alice@contoso.com".to_owned(),
                BindingRemoval::Expired,
                Duration::from_secs(6600)
            ),
        ]
    );
    let msg = message(&mut h, "bob", "alice", "contoso.com");
    assert_eq!(response_to(&h.recv(BOB, &msg.to_bytes()), BOB).status, 480);
}

#[test]
fn options_to_the_server_answers_200() {
    let mut h = Harness::new();
    h.open(ALICE, ConnKind::Inbound(Transport::Tcp));
    let ids = h.ids();
    let req = ua("alice", "contoso.com").options(&Uri::sip(None, "lcs.contoso.com"), &ids);
    let ok = response_to(&h.recv(ALICE, &req.to_bytes()), ALICE);
    assert_eq!(ok.status, 200);
    assert_eq!(ok.headers.get("Allow"), Some("REGISTER, MESSAGE, OPTIONS"));
    assert_eq!(ok.headers.get("Accept"), Some("text/plain"));
}

#[test]
fn message_is_forwarded_and_the_200_relayed() {
    let mut h = registered();
    let msg = message(&mut h, "alice", "bob", "contoso.com");
    let actions = h.recv(ALICE, &msg.to_bytes());
    assert!(
        sent_to(&actions, ALICE).is_empty(),
        "no 100 Trying for non-INVITE"
    );
    let fwd = request_to(&actions, BOB);
    assert_eq!(
        fwd.uri,
        contact("bob"),
        "retargeted to the registered contact"
    );
    let vias: Vec<_> = fwd.headers.get_all("Via").collect();
    assert_eq!(vias.len(), 2);
    let ours = Via::parse(vias[0]).unwrap();
    assert_eq!(
        (ours.transport.as_str(), ours.host.as_str()),
        ("TLS", "lcs.contoso.com")
    );
    assert!(ours.branch().unwrap().starts_with("z9hG4bK"));
    assert_eq!(vias[1], msg.headers.get("Via").unwrap());
    assert_eq!(fwd.headers.get("Max-Forwards"), Some("69"));
    assert_eq!(fwd.body, b"hello");

    let ok = Response::for_request(&fwd, 200).with_to_tag("bobtag");
    let actions = h.recv(BOB, &ok.to_bytes());
    let relayed = response_to(&actions, ALICE);
    assert_eq!(relayed.status, 200);
    assert_eq!(
        relayed.headers.get_all("Via").collect::<Vec<_>>(),
        [msg.headers.get("Via").unwrap()]
    );
    assert_eq!(relayed.headers.to_addr().unwrap().tag(), Some("bobtag"));
    let stats = h.proxy.stats();
    assert_eq!(
        (
            stats.messages_received,
            stats.messages_routed,
            stats.messages_failed
        ),
        (1, 1, 0)
    );
}

#[test]
fn local_failures_480_404_483_405_501() {
    let mut h = registered();
    let to_carol = message(&mut h, "alice", "carol", "contoso.com");
    assert_eq!(
        response_to(&h.recv(ALICE, &to_carol.to_bytes()), ALICE).status,
        480
    );
    let to_nowhere = message(&mut h, "alice", "dave", "example.org");
    assert_eq!(
        response_to(&h.recv(ALICE, &to_nowhere.to_bytes()), ALICE).status,
        404
    );
    let mut hops = message(&mut h, "alice", "bob", "contoso.com");
    hops.headers.set("Max-Forwards", "0");
    assert_eq!(
        response_to(&h.recv(ALICE, &hops.to_bytes()), ALICE).status,
        483
    );
    for (method, status) in [("INVITE", 405), ("FOO", 501)] {
        let mut req = message(&mut h, "alice", "bob", "contoso.com");
        req.method = Method::from_token(method);
        let seq = req.headers.cseq().unwrap().seq;
        req.headers.set("CSeq", format!("{seq} {method}"));
        let resp = response_to(&h.recv(ALICE, &req.to_bytes()), ALICE);
        assert_eq!(resp.status, status, "{method}");
    }
    assert_eq!(h.proxy.stats().messages_failed, 3);
}

#[test]
fn route_down_answers_408_after_exactly_timer_f() {
    let mut h = registered();
    let msg = message(&mut h, "alice", "carol", "fabrikam.com");
    let actions = h.recv(ALICE, &msg.to_bytes());
    assert!(actions.contains(&Action::ConnectRoute { route: FABRIKAM }));
    assert!(events(&actions).contains(&&Event::Queued {
        route: FABRIKAM,
        depth: 1
    }));
    assert_eq!(h.proxy.stats().queue_depth, 1);
    h.proxy.route_connect_failed(FABRIKAM, h.now); // the mutual-TLS handshake fails
    let mut attempts = 1;
    let timeout = loop {
        let actions = h.step().expect("Timer F is pending");
        for action in &actions {
            if *action == (Action::ConnectRoute { route: FABRIKAM }) {
                attempts += 1;
                h.proxy.route_connect_failed(FABRIKAM, h.now);
            }
        }
        if let [Message::Response(r)] = sent_to(&actions, ALICE).as_slice() {
            break (r.clone(), h.now - h.t0);
        }
    };
    assert_eq!(
        (timeout.0.status, timeout.1),
        (408, Duration::from_secs(32))
    );
    assert_eq!(
        attempts, 7,
        "one attempt, then one per 5 s back-off until Timer F"
    );
    let stats = h.proxy.stats();
    assert_eq!(
        (
            stats.timed_out,
            stats.queued,
            stats.queue_depth,
            stats.messages_failed
        ),
        (1, 1, 0, 1)
    );
}

#[test]
fn queue_flushes_when_the_route_connects() {
    let mut h = registered();
    let first = message(&mut h, "alice", "carol", "fabrikam.com");
    let second = message(&mut h, "bob", "dan", "fabrikam.com");
    let a = h.recv(ALICE, &first.to_bytes());
    let b = h.recv(BOB, &second.to_bytes());
    let connects = [a, b]
        .concat()
        .iter()
        .filter(|a| matches!(a, Action::ConnectRoute { .. }))
        .count();
    assert_eq!(connects, 1, "one connection attempt for the queue");
    h.now += Duration::from_secs(10);
    let actions = h.open(PEER, ConnKind::Route(FABRIKAM));
    let flushed = sent_to(&actions, PEER);
    assert_eq!(flushed.len(), 2);
    assert!(events(&actions).contains(&&Event::RouteConnected {
        route: FABRIKAM,
        flushed: 2
    }));
    assert_eq!(h.proxy.stats().queue_depth, 0);
    for fwd in flushed {
        let Message::Request(fwd) = fwd else { panic!() };
        assert_eq!(fwd.headers.top_via().unwrap().transport, "TLS");
        let answer = Response::for_request(&fwd, 200).with_to_tag("peer");
        h.recv(PEER, &answer.to_bytes());
    }
    assert_eq!(h.proxy.stats().messages_routed, 2);
    // Timer F was cancelled by the answers: nothing more reaches the originators.
    while let Some(actions) = h.step() {
        assert!(sent_to(&actions, ALICE).is_empty() && sent_to(&actions, BOB).is_empty());
    }
}

#[test]
fn retransmissions_are_absorbed() {
    let mut h = registered();
    let msg = message(&mut h, "alice", "bob", "contoso.com").to_bytes();
    let fwd = request_to(&h.recv(ALICE, &msg), BOB);
    assert!(
        h.recv(ALICE, &msg).is_empty(),
        "absorbed while proceeding: no second forward"
    );
    let ok = Response::for_request(&fwd, 200).with_to_tag("b");
    let first = h.recv(BOB, &ok.to_bytes());
    assert_eq!(response_to(&first, ALICE).status, 200);
    let again = h.recv(ALICE, &msg);
    assert_eq!(again, first, "the same final response, resent");
    assert_eq!(h.proxy.stats().retransmissions, 2);
    assert_eq!(h.proxy.stats().messages_received, 1);
    // After the linger time the transaction is gone and the request counts as new.
    while h
        .proxy
        .poll_timeout()
        .is_some_and(|t| t <= h.t0 + Duration::from_secs(32))
    {
        h.step();
    }
    assert_eq!(request_to(&h.recv(ALICE, &msg), BOB).body, b"hello");
}

#[test]
fn closing_a_connection_removes_its_bindings() {
    let mut h = registered();
    let actions = h.close(BOB);
    assert_eq!(
        events(&actions),
        [&Event::BindingRemoved {
            aor: "bob@contoso.com".into(),
            reason: BindingRemoval::ConnectionClosed
        }]
    );
    let msg = message(&mut h, "alice", "bob", "contoso.com");
    assert_eq!(
        response_to(&h.recv(ALICE, &msg.to_bytes()), ALICE).status,
        480
    );
    assert_eq!(h.proxy.stats().bindings, 1);
}

#[test]
fn target_closing_mid_transaction_answers_480_once() {
    let mut h = registered();
    let msg = message(&mut h, "alice", "bob", "contoso.com");
    let fwd = request_to(&h.recv(ALICE, &msg.to_bytes()), BOB);
    assert_eq!(response_to(&h.close(BOB), ALICE).status, 480);
    // Bob reconnects and answers late: a stray, not a second final.
    h.open(BOB, ConnKind::Inbound(Transport::Tls));
    let late = h.recv(BOB, &Response::for_request(&fwd, 200).to_bytes());
    assert!(sent_to(&late, ALICE).is_empty());
    assert_eq!(h.proxy.stats().stray_responses, 1);
    while let Some(actions) = h.step() {
        assert!(sent_to(&actions, ALICE).is_empty(), "no 408 after the 480");
    }
}

#[test]
fn originator_closing_makes_the_answer_undeliverable() {
    let mut h = registered();
    let msg = message(&mut h, "alice", "bob", "contoso.com");
    let fwd = request_to(&h.recv(ALICE, &msg.to_bytes()), BOB);
    h.close(ALICE);
    let actions = h.recv(BOB, &Response::for_request(&fwd, 200).to_bytes());
    assert_eq!(
        events(&actions),
        [&Event::ResponseUndeliverable {
            call_id: "call-3".into(),
            status: 200
        }]
    );
    assert!(actions.iter().all(|a| !matches!(a, Action::Send { .. })));
    // Alice reconnects and retransmits: she gets the stored answer, Bob no second copy.
    h.open(ConnId(3), ConnKind::Inbound(Transport::Tls));
    let again = h.recv(ConnId(3), &msg.to_bytes());
    assert_eq!(response_to(&again, ConnId(3)).status, 200);
    assert!(sent_to(&again, BOB).is_empty());
}

#[test]
fn late_answer_after_408_is_dropped() {
    let mut h = registered();
    h.open(PEER, ConnKind::Route(FABRIKAM));
    let msg = message(&mut h, "alice", "carol", "fabrikam.com");
    let fwd = request_to(&h.recv(ALICE, &msg.to_bytes()), PEER);
    let timeout = loop {
        let actions = h.step().unwrap();
        if !sent_to(&actions, ALICE).is_empty() {
            break response_to(&actions, ALICE);
        }
    };
    assert_eq!(
        (timeout.status, h.now - h.t0),
        (408, Duration::from_secs(32))
    );
    let late = h.recv(PEER, &Response::for_request(&fwd, 200).to_bytes());
    assert!(sent_to(&late, ALICE).is_empty());
    assert!(matches!(
        events(&late)[..],
        [Event::StrayResponse { status: 200, .. }]
    ));
}

#[test]
fn route_connection_closing_mid_transaction_answers_503() {
    let mut h = registered();
    h.open(PEER, ConnKind::Route(FABRIKAM));
    let msg = message(&mut h, "alice", "carol", "fabrikam.com");
    request_to(&h.recv(ALICE, &msg.to_bytes()), PEER);
    let actions = h.close(PEER);
    assert_eq!(response_to(&actions, ALICE).status, 503);
    assert!(
        !actions.contains(&Action::ConnectRoute { route: FABRIKAM }),
        "nothing waits"
    );
}

#[test]
fn federation_peer_reaches_local_users_but_cannot_relay() {
    let mut h = registered();
    h.open(PEER, ConnKind::Route(FABRIKAM));
    let ids = h.ids();
    let carol = ua("carol", "fabrikam.com");
    let inbound = carol.message(
        &Uri::sip(Some("bob"), "contoso.com"),
        "text/plain",
        "hi",
        &ids,
    );
    let fwd = request_to(&h.recv(PEER, &inbound.to_bytes()), BOB);
    let ok = Response::for_request(&fwd, 200);
    assert_eq!(response_to(&h.recv(BOB, &ok.to_bytes()), PEER).status, 200);
    let ids = h.ids();
    let relay = carol.message(
        &Uri::sip(Some("erin"), "fabrikam.com"),
        "text/plain",
        "hi",
        &ids,
    );
    assert_eq!(
        response_to(&h.recv(PEER, &relay.to_bytes()), PEER).status,
        403
    );
    let ids = h.ids();
    let register = carol.register(&contact("carol"), 3600, &ids);
    assert_eq!(
        response_to(&h.recv(PEER, &register.to_bytes()), PEER).status,
        403
    );
}

#[test]
fn keepalive_ping_gets_a_pong() {
    let mut h = Harness::new();
    h.open(ALICE, ConnKind::Inbound(Transport::Tls));
    assert_eq!(h.recv(ALICE, b"\r\n"), []);
    assert_eq!(
        h.recv(ALICE, b"\r\n"),
        [Action::Send {
            conn: ALICE,
            bytes: b"\r\n".to_vec(),
            payload: Payload::KeepAlive,
        }]
    );
    assert_eq!(h.proxy.stats().keepalives, 1);
}

/// Regression (found with sipsak, which can only write `user@127.0.0.1`): a domain alias names
/// the same users as the domain, both for REGISTER and for routing.
#[test]
fn an_alias_of_the_domain_names_the_same_users() {
    let mut h = Harness::new();
    h.proxy = Proxy::new(ProxyConfig {
        local_domains: vec!["contoso.com".into(), "127.0.0.1".into()],
        ..test_config()
    });
    for (conn, user, domain) in [(ALICE, "alice", "127.0.0.1"), (BOB, "bob", "contoso.com")] {
        h.open(conn, ConnKind::Inbound(Transport::Tls));
        let ids = h.ids();
        let req = ua(user, domain).register(&contact(user), 3600, &ids);
        assert_eq!(
            response_to(&h.recv(conn, &req.to_bytes()), conn).status,
            200
        );
    }
    for (from, to, to_domain, conn) in [
        ("bob", "alice", "contoso.com", ALICE),
        ("alice", "bob", "127.0.0.1", BOB),
    ] {
        let msg = message(&mut h, from, to, to_domain);
        let sender = if conn == ALICE { BOB } else { ALICE };
        let fwd = request_to(&h.recv(sender, &msg.to_bytes()), conn);
        assert_eq!(fwd.uri, contact(to));
    }
}
