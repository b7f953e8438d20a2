//! Malformed input at the proxy: what is answered (400, 513), what is closed, and that the
//! connection survives a message it could delimit.

use super::tests::{ALICE, BOB, Harness, events, message, registered, response_to, sent_to, ua};
use super::*;
use crate::sip::{Transport, Uri};

#[test]
fn garbage_gets_400_and_the_connection_survives() {
    let mut h = Harness::new();
    h.open(ALICE, ConnKind::Inbound(Transport::Tls));
    let actions = h.recv(
        ALICE,
        b"GARBAGE\r\nCall-ID: g1\r\nContent-Length: 0\r\n\r\n",
    );
    let bad = response_to(&actions, ALICE);
    assert_eq!((bad.status, bad.headers.get("Call-ID")), (400, Some("g1")));
    assert!(matches!(
        events(&actions)[..],
        [Event::ParseError { conn: ALICE, .. }]
    ));
    assert!(!actions.contains(&Action::Close { conn: ALICE }));
    let ids = h.ids();
    let options = ua("alice", "contoso.com").options(&Uri::sip(None, "contoso.com"), &ids);
    assert_eq!(
        response_to(&h.recv(ALICE, &options.to_bytes()), ALICE).status,
        200
    );
    // Missing headers are named in the reason phrase.
    let mut no_cseq = options.clone();
    no_cseq.headers.remove_all("CSeq");
    no_cseq
        .headers
        .set("Via", "SIP/2.0/TLS alice-pc.contoso.com;branch=z9hG4bKnew");
    let bad = response_to(&h.recv(ALICE, &no_cseq.to_bytes()), ALICE);
    assert_eq!(
        (bad.status, bad.reason.as_str()),
        (400, "Bad Request (missing CSeq header)")
    );
    // A response that does not parse is never answered.
    assert!(sent_to(&h.recv(ALICE, b"SIP/2.0 2000 Huh\r\nl: 0\r\n\r\n"), ALICE).is_empty());
    assert_eq!(h.proxy.stats().parse_errors, 2);
}

#[test]
fn unframeable_stream_gets_400_or_513_then_close() {
    let mut h = Harness::new();
    h.open(ALICE, ConnKind::Inbound(Transport::Tls));
    let actions = h.recv(
        ALICE,
        b"MESSAGE sip:bob@contoso.com SIP/2.0\r\ni: nolen\r\n\r\nhello",
    );
    assert_eq!(response_to(&actions, ALICE).status, 400);
    assert_eq!(
        actions
            .iter()
            .filter(|a| matches!(a, Action::Close { conn: ALICE }))
            .count(),
        1
    );
    assert!(
        h.recv(ALICE, b"more")
            .contains(&Action::Event(Event::UnknownConnection { conn: ALICE }))
    );

    h.open(BOB, ConnKind::Inbound(Transport::Tls));
    let ids = h.ids();
    let mut big = ua("bob", "contoso.com").message(
        &Uri::sip(Some("alice"), "contoso.com"),
        "text/plain",
        "",
        &ids,
    );
    big.body = vec![b'x'; 70 * 1024];
    let actions = h.recv(BOB, &big.to_bytes());
    let too_large = response_to(&actions, BOB);
    assert_eq!(
        (too_large.status, too_large.headers.get("Call-ID")),
        (513, Some("call-1"))
    );
    assert_eq!(actions.last(), Some(&Action::Close { conn: BOB }));
    assert_eq!(h.proxy.stats().framing_errors, 2);
}

#[test]
fn control_characters_in_a_header_value_get_400_and_are_not_forwarded() {
    let mut h = registered();
    for (i, bad) in [&b"a\0b"[..], b"a\rb", b"\x1b[2J", b"a\x7f"]
        .into_iter()
        .enumerate()
    {
        let msg = message(&mut h, "alice", "bob", "contoso.com");
        let call_id = msg.headers.call_id().unwrap().to_owned();
        // Serialising would blank the control character out, so splice it into the wire form.
        let wire = msg.to_bytes();
        let line_end = wire.windows(2).position(|w| w == b"\r\n").unwrap() + 2;
        let mut bytes = wire[..line_end].to_vec();
        bytes.extend_from_slice(b"Subject: ");
        bytes.extend_from_slice(bad);
        bytes.extend_from_slice(b"\r\n");
        bytes.extend_from_slice(&wire[line_end..]);
        let actions = h.recv(ALICE, &bytes);
        let answer = response_to(&actions, ALICE);
        assert_eq!(
            (answer.status, answer.headers.get("Call-ID")),
            (400, Some(call_id.as_str())),
            "{bad:?}"
        );
        assert!(sent_to(&actions, BOB).is_empty(), "{bad:?} was forwarded");
        assert!(matches!(
            events(&actions)[..],
            [Event::ParseError {
                conn: ALICE,
                error: ParseError::ControlCharacter { .. }
            }]
        ));
        assert!(!actions.contains(&Action::Close { conn: ALICE }));
        assert_eq!(h.proxy.stats().parse_errors, i as u64 + 1);
    }
    // The connection still works.
    let msg = message(&mut h, "alice", "bob", "contoso.com");
    assert_eq!(sent_to(&h.recv(ALICE, &msg.to_bytes()), BOB).len(), 1);
}
