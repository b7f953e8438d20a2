//! The agent's promises: matching by Call-ID and branch, timeouts, refresh at half the
//! granted time, and exactly one outcome per request under any interleaving of inputs.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::*;
use crate::sip::Framer;

fn base() -> Instant {
    #[allow(clippy::disallowed_methods)] // the one base instant; everything else is virtual
    let now = Instant::now();
    now
}

fn agent() -> Agent {
    let ua = UserAgent::new(Uri::sip(Some("alice"), "contoso.com"), "pc1.contoso.com");
    Agent::new(ua, AgentConfig::default())
}

fn contact() -> Uri {
    Uri::parse("sip:alice@pc1.contoso.com;transport=tls").unwrap()
}

/// Ids numbered from a counter, as a seeded shell would make them.
fn counter() -> impl FnMut(u32) -> RequestIds {
    let mut n = 0;
    move |cseq| {
        n += 1;
        RequestIds {
            call_id: format!("c{n}"),
            from_tag: format!("t{n}"),
            branch: format!("b{n}"),
            cseq,
        }
    }
}

/// Drains outputs: requests written (parsed), and events.
fn drain(agent: &mut Agent) -> (Vec<Request>, Vec<Output>) {
    let (mut sent, mut other) = (Vec::new(), Vec::new());
    while let Some(out) = agent.poll_output() {
        match out {
            Output::Transmit(bytes) => {
                let mut f = Framer::new(1 << 16);
                f.push(&bytes);
                while let Some(Ok(Frame::Message(raw))) = f.pop() {
                    if let Ok(Message::Request(r)) = parse_message(&raw) {
                        sent.push(r);
                    }
                }
            }
            o => other.push(o),
        }
    }
    (sent, other)
}

fn message(agent: &Agent, ids: &mut dyn FnMut(u32) -> RequestIds) -> Request {
    let bob = Uri::sip(Some("bob"), "fabrikam.com");
    agent
        .user_agent()
        .message(&bob, "text/plain", "hi", &ids(1))
}

#[test]
fn a_response_matches_by_call_id_and_branch_only() {
    let (t0, mut ids) = (base(), counter());
    let mut a = agent();
    a.connection_up(t0, &mut ids);
    let req = message(&a, &mut ids);
    let id = a.send(t0, &req).unwrap();
    let (sent, _) = drain(&mut a);
    assert_eq!(sent, vec![req.clone()]);
    let mut wrong_branch = Response::for_request(&req, 200);
    wrong_branch
        .headers
        .set("Via", "SIP/2.0/TLS pc1.contoso.com;branch=z9hG4bKother");
    a.receive(t0, &wrong_branch.to_bytes());
    a.receive(t0, &Response::for_request(&req, 100).to_bytes());
    a.receive(t0, &Response::for_request(&req, 404).to_bytes());
    a.receive(t0, &Response::for_request(&req, 200).to_bytes());
    let (_, events) = drain(&mut a);
    assert_eq!(
        events,
        vec![
            Output::Event(AgentEvent::Stray { status: 200 }),
            Output::Event(AgentEvent::Answered {
                request: id,
                status: 404
            }),
            Output::Event(AgentEvent::Stray { status: 200 }),
        ]
    );
    assert_eq!(a.outstanding(), 0);
}

#[test]
fn an_unanswered_request_times_out_once_at_the_transaction_timeout() {
    let (t0, mut ids) = (base(), counter());
    let mut a = agent();
    a.connection_up(t0, &mut ids);
    let req = message(&a, &mut ids);
    let id = a.send(t0, &req).unwrap();
    let timeout = AgentConfig::default().transaction_timeout;
    assert_eq!(a.poll_timeout(), Some(t0 + timeout));
    a.handle_timeout(t0 + timeout - Duration::from_millis(1), &mut ids);
    assert_eq!(drain(&mut a).1, vec![]);
    a.handle_timeout(t0 + timeout, &mut ids);
    a.receive(t0 + timeout, &Response::for_request(&req, 200).to_bytes());
    assert_eq!(
        drain(&mut a).1,
        vec![
            Output::Event(AgentEvent::TimedOut { request: id }),
            Output::Event(AgentEvent::Stray { status: 200 }),
        ]
    );
    assert_eq!(a.poll_timeout(), None);
}

#[test]
fn register_refreshes_at_half_the_granted_time_on_one_call_id() {
    let (t0, mut ids) = (base(), counter());
    let mut a = agent();
    let first = a.register(t0, contact(), 3600, &mut ids);
    assert_eq!(drain(&mut a).1, vec![Output::Connect]);
    a.connection_up(t0, &mut ids);
    let (sent, _) = drain(&mut a);
    assert_eq!(sent.len(), 1, "the waiting REGISTER, not a second one");
    let ok = Response::for_request(&sent[0], 200);
    let mut ok = ok.with_to_tag("r");
    ok.headers.push("Expires", "600");
    a.receive(t0 + Duration::from_secs(1), &ok.to_bytes());
    assert!(a.is_registered());
    assert_eq!(
        drain(&mut a).1,
        vec![
            Output::Event(AgentEvent::Registered { expires: 600 }),
            Output::Event(AgentEvent::Answered {
                request: first,
                status: 200
            }),
        ]
    );
    assert_eq!(a.poll_timeout(), Some(t0 + Duration::from_secs(300)));
    a.handle_timeout(t0 + Duration::from_secs(300), &mut ids);
    let (refresh, _) = drain(&mut a);
    assert_eq!(refresh.len(), 1);
    let h = &refresh[0].headers;
    assert_eq!(h.call_id(), sent[0].headers.call_id());
    assert_eq!(h.cseq().unwrap().seq, 2);
    assert_ne!(
        h.top_via().unwrap().branch(),
        sent[0].headers.top_via().unwrap().branch()
    );
}

#[test]
fn expire_fires_timeouts_but_leaves_a_due_refresh_to_handle_timeout() {
    let (t0, mut ids) = (base(), counter());
    let mut a = agent();
    a.connection_up(t0, &mut ids);
    a.register(t0, contact(), 60, &mut ids);
    let (sent, _) = drain(&mut a);
    a.receive(t0, &Response::for_request(&sent[0], 200).to_bytes());
    let req = message(&a, &mut ids);
    let msg = a.send(t0, &req).unwrap();
    drain(&mut a);
    // At 40 s the MESSAGE is past its 32 s timeout and the refresh (30 s) is due.
    let later = t0 + Duration::from_secs(40);
    a.expire(later);
    let (written, events) = drain(&mut a);
    assert_eq!(written, vec![], "expire makes no request");
    assert_eq!(
        events,
        vec![Output::Event(AgentEvent::TimedOut { request: msg })]
    );
    assert!(a.is_registered(), "the binding is untouched");
    assert_eq!(a.poll_timeout(), Some(t0 + Duration::from_secs(30)));
    a.handle_timeout(later, &mut ids);
    let (refresh, events) = drain(&mut a);
    assert_eq!(events, vec![]);
    assert_eq!(refresh.len(), 1);
    assert_eq!(refresh[0].headers.cseq().unwrap().seq, 2);
}

#[test]
fn the_registers_the_agent_makes_itself_are_named_by_their_outcomes() {
    let (t0, mut ids) = (base(), counter());
    let mut a = agent();
    assert_eq!(
        a.connection_up(t0, &mut ids),
        None,
        "nothing to register yet"
    );
    let first = a.register(t0, contact(), 60, &mut ids);
    drain(&mut a);
    a.connection_down(t0);
    drain(&mut a);
    let again = a.connection_up(t0, &mut ids).expect("a new REGISTER");
    assert_ne!(again, first);
    let (sent, _) = drain(&mut a);
    a.receive(t0, &Response::for_request(&sent[0], 200).to_bytes());
    let answered = Output::Event(AgentEvent::Answered {
        request: again,
        status: 200,
    });
    assert!(drain(&mut a).1.contains(&answered));
    let early = t0 + Duration::from_secs(29);
    assert_eq!(
        a.handle_timeout(early, &mut ids),
        None,
        "no refresh before 30 s"
    );
    let refresh = a
        .handle_timeout(t0 + Duration::from_secs(30), &mut ids)
        .expect("the refresh");
    let (sent, _) = drain(&mut a);
    a.receive(t0, &Response::for_request(&sent[0], 423).to_bytes());
    let (_, events) = drain(&mut a);
    assert_eq!(
        events,
        vec![Output::Event(AgentEvent::Answered {
            request: refresh,
            status: 423
        })]
    );
}

#[test]
fn losing_the_connection_abandons_everything_and_reregisters_on_the_next() {
    let (t0, mut ids) = (base(), counter());
    let mut a = agent();
    a.connection_up(t0, &mut ids);
    let reg = a.register(t0, contact(), 3600, &mut ids);
    let req = message(&a, &mut ids);
    let msg = a.send(t0, &req).unwrap();
    drain(&mut a);
    a.connection_down(t0);
    let (_, events) = drain(&mut a);
    assert_eq!(events.len(), 2);
    assert!(events.contains(&Output::Event(AgentEvent::Abandoned { request: reg })));
    assert!(events.contains(&Output::Event(AgentEvent::Abandoned { request: msg })));
    a.receive(t0, &Response::for_request(&req, 200).to_bytes());
    assert_eq!(drain(&mut a).1, vec![], "nothing is read while down");
    a.connection_up(t0, &mut ids);
    let (sent, _) = drain(&mut a);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].headers.cseq().unwrap().seq, 1, "a new registration");
}

#[test]
fn pings_are_answered_and_an_unframable_stream_is_closed() {
    let (t0, mut ids) = (base(), counter());
    let mut a = agent();
    a.connection_up(t0, &mut ids);
    let req = message(&a, &mut ids);
    let id = a.send(t0, &req).unwrap();
    drain(&mut a);
    a.receive(t0, b"\r\n\r\n");
    assert_eq!(a.poll_output(), Some(Output::Transmit(PONG.to_vec())));
    a.receive(t0, b"SIP/2.0 200 OK\r\nVia: x\r\n\r\n");
    assert_eq!(
        drain(&mut a).1,
        vec![
            Output::Disconnect,
            Output::Event(AgentEvent::Abandoned { request: id })
        ]
    );
    assert!(!a.is_connected());
}

// ---------------------------------------------------------------- any interleaving

#[derive(Debug, Clone)]
enum Input {
    Up,
    Down,
    Send,
    Register(u32),
    /// Answer the n-th request written so far (again, if already answered).
    Answer(usize, u16),
    Garbage(Vec<u8>),
    Advance(u64),
}

fn input() -> impl Strategy<Value = Input> {
    prop_oneof![
        2 => Just(Input::Up),
        1 => Just(Input::Down),
        4 => Just(Input::Send),
        1 => (0u32..200).prop_map(Input::Register),
        4 => (any::<usize>(), prop::sample::select(vec![100u16, 200, 202, 404, 408, 503]))
            .prop_map(|(n, s)| Input::Answer(n, s)),
        1 => prop::collection::vec(any::<u8>(), 0..40).prop_map(Input::Garbage),
        3 => (0u64..40_000).prop_map(Input::Advance),
    ]
}

proptest! {
    #[test]
    fn every_request_gets_exactly_one_outcome(inputs in prop::collection::vec(input(), 0..60)) {
        let (mut now, mut ids) = (base(), counter());
        let mut a = agent();
        let mut given: Vec<RequestId> = Vec::new();
        let mut outcomes: BTreeMap<RequestId, usize> = BTreeMap::new();
        let mut written: Vec<Request> = Vec::new();
        let collect = |a: &mut Agent, written: &mut Vec<Request>, outcomes: &mut BTreeMap<RequestId, usize>| {
            let (sent, events) = drain(a);
            written.extend(sent);
            for e in events {
                if let Output::Event(
                    AgentEvent::Answered { request, .. }
                    | AgentEvent::TimedOut { request }
                    | AgentEvent::Abandoned { request },
                ) = e
                {
                    *outcomes.entry(request).or_default() += 1;
                }
            }
        };
        for input in inputs {
            match input {
                Input::Up => given.extend(a.connection_up(now, &mut ids)),
                Input::Down => a.connection_down(now),
                Input::Send => {
                    let req = message(&a, &mut ids);
                    given.push(a.send(now, &req).unwrap());
                }
                Input::Register(expires) => given.push(a.register(now, contact(), expires, &mut ids)),
                Input::Answer(n, status) if !written.is_empty() => {
                    let req = &written[n % written.len()];
                    a.receive(now, &Response::for_request(req, status).to_bytes());
                }
                Input::Answer(..) => {}
                Input::Garbage(bytes) => a.receive(now, &bytes),
                Input::Advance(ms) => {
                    now += Duration::from_millis(ms);
                    let mut rounds = 0;
                    while let Some(at) = a.poll_timeout().filter(|at| *at <= now) {
                        rounds += 1;
                        prop_assert!(rounds < 10_000, "handle_timeout makes progress");
                        given.extend(a.handle_timeout(at, &mut ids));
                        collect(&mut a, &mut written, &mut outcomes);
                    }
                }
            }
            collect(&mut a, &mut written, &mut outcomes);
        }
        a.connection_down(now);
        collect(&mut a, &mut written, &mut outcomes);
        prop_assert_eq!(a.outstanding(), 0);
        // Every request made was named to the shell when it was made, the agent's own
        // REGISTERs too: the ids handed out are exactly 1..=requests_made.
        let made: Vec<RequestId> = (1..=a.requests_made()).map(RequestId).collect();
        prop_assert_eq!(&given, &made);
        for n in 1..=a.requests_made() {
            prop_assert_eq!(outcomes.get(&RequestId(n)).copied(), Some(1), "request {}", n);
        }
        prop_assert_eq!(outcomes.len() as u64, a.requests_made(), "no outcome for an unknown request");
    }
}
