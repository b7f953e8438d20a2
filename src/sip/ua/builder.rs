//! Building requests as a SIP client (REGISTER, MESSAGE, OPTIONS).
//!
//! The emulated Windows Messenger users and the federation peer reuse this module. A
//! [`UserAgent`] holds who the client is and where its Via says it is; every request takes a
//! [`RequestIds`] so that randomness (Call-ID, tags, branches) stays with the caller, whose RNG
//! is seeded: the same seed then produces the same requests. Responses to received requests
//! are built with [`Response::for_request`](crate::sip::Response::for_request).

use crate::sip::header::{BRANCH_COOKIE, NameAddr, Via};
use crate::sip::message::Request;
use crate::sip::method::Method;
use crate::sip::uri::Uri;

/// The identifiers of one new client transaction. Fresh per request (the Call-ID and From tag
/// may be reused by a client that wants REGISTER refreshes to share a Call-ID, as RFC 3261
/// §10.2.4 recommends, with an increasing `cseq`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestIds {
    /// Call-ID.
    pub call_id: String,
    /// From tag.
    pub from_tag: String,
    /// Via branch without the `z9hG4bK` cookie (it is prepended).
    pub branch: String,
    /// CSeq number.
    pub cseq: u32,
}

/// A SIP client's identity, used to stamp the requests it sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserAgent {
    /// The client's address of record, e.g. `sip:alice@contoso.com`.
    pub aor: Uri,
    /// Display name for From, if any.
    pub display_name: Option<String>,
    /// Via transport, e.g. `TLS`.
    pub transport: String,
    /// Via sent-by host (the client's host name or address).
    pub host: String,
    /// Via sent-by port, if any.
    pub port: Option<u16>,
    /// User-Agent header value, if any.
    pub user_agent: Option<String>,
}

impl UserAgent {
    /// A user agent for `aor` sending over TLS from `host`, with no display name.
    pub fn new(aor: Uri, host: &str) -> UserAgent {
        UserAgent {
            aor,
            display_name: None,
            transport: "TLS".to_owned(),
            host: host.to_owned(),
            port: None,
            user_agent: None,
        }
    }

    /// The common part of every request: Via, Max-Forwards, From, To, Call-ID, CSeq.
    fn request(&self, method: Method, uri: Uri, to: &Uri, ids: &RequestIds) -> Request {
        let mut request = Request::new(method.clone(), uri);
        let branch = format!("{BRANCH_COOKIE}{}", ids.branch);
        let h = &mut request.headers;
        h.push(
            "Via",
            Via::new(&self.transport, &self.host, self.port, &branch).to_string(),
        );
        h.push("Max-Forwards", "70");
        let mut from = NameAddr::new(self.aor.clone());
        from.display.clone_from(&self.display_name);
        from.params
            .push(("tag".to_owned(), Some(ids.from_tag.clone())));
        h.push("From", from.to_string());
        h.push("To", NameAddr::new(to.clone()).to_string());
        h.push("Call-ID", ids.call_id.clone());
        h.push("CSeq", format!("{} {method}", ids.cseq));
        if let Some(ua) = &self.user_agent {
            h.push("User-Agent", ua.clone());
        }
        request
    }

    /// REGISTER binding `contact` to this AOR for `expires` seconds (0 unregisters).
    pub fn register(&self, contact: &Uri, expires: u32, ids: &RequestIds) -> Request {
        let registrar = Uri {
            user: None,
            port: None,
            params: String::new(),
            ..self.aor.clone()
        };
        let mut request = self.request(Method::Register, registrar, &self.aor, ids);
        request
            .headers
            .push("Contact", NameAddr::new(contact.clone()).to_string());
        request.headers.push("Expires", expires.to_string());
        request
    }

    /// MESSAGE to `to` with a body of `content_type` (RFC 3428), e.g. `text/plain`.
    pub fn message(
        &self,
        to: &Uri,
        content_type: &str,
        body: impl Into<Vec<u8>>,
        ids: &RequestIds,
    ) -> Request {
        let mut request = self.request(Method::Message, to.clone(), to, ids);
        request.headers.push("Content-Type", content_type);
        request.body = body.into();
        request
    }

    /// OPTIONS to `target` (a server or a user), asking what it supports.
    pub fn options(&self, target: &Uri, ids: &RequestIds) -> Request {
        let mut request = self.request(Method::Options, target.clone(), target, ids);
        request
            .headers
            .push("Accept", "application/sdp, text/plain");
        request
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::{Message, Response, parse_message};

    fn ids() -> RequestIds {
        RequestIds {
            call_id: "call-1".into(),
            from_tag: "ft".into(),
            branch: "b1".into(),
            cseq: 7,
        }
    }

    fn alice() -> UserAgent {
        UserAgent {
            display_name: Some("Alice".into()),
            user_agent: Some("RTC/1.3".into()),
            port: Some(49152),
            ..UserAgent::new(
                Uri::parse("sip:alice@contoso.com").unwrap(),
                "pc1.contoso.com",
            )
        }
    }

    #[test]
    fn register_is_well_formed_and_round_trips() {
        let contact = Uri::parse("sip:alice@pc1.contoso.com:49152;transport=tls").unwrap();
        let req = alice().register(&contact, 3600, &ids());
        assert_eq!(req.uri.to_string(), "sip:contoso.com");
        let h = &req.headers;
        assert_eq!(h.top_via().unwrap().branch(), Some("z9hG4bKb1"));
        assert_eq!(
            h.get("From"),
            Some("\"Alice\" <sip:alice@contoso.com>;tag=ft")
        );
        assert_eq!(h.get("To"), Some("<sip:alice@contoso.com>"));
        assert_eq!(h.get("CSeq"), Some("7 REGISTER"));
        assert_eq!(
            h.get("Contact"),
            Some("<sip:alice@pc1.contoso.com:49152;transport=tls>")
        );
        assert_eq!(h.expires(), Ok(Some(3600)));
        assert_eq!(parse_message(&req.to_bytes()), Ok(Message::Request(req)));
    }

    #[test]
    fn message_and_options_and_a_response() {
        let bob = Uri::parse("sip:bob@fabrikam.com").unwrap();
        let msg = alice().message(&bob, "text/plain", "hi", &ids());
        assert_eq!(msg.method, Method::Message);
        assert_eq!(msg.headers.get("Content-Type"), Some("text/plain"));
        assert_eq!(msg.body, b"hi");
        let opt = alice().options(&Uri::parse("sip:contoso.com").unwrap(), &ids());
        assert_eq!(opt.headers.get("CSeq"), Some("7 OPTIONS"));
        let ok = Response::for_request(&msg, 200).with_to_tag("tt");
        assert_eq!(ok.headers.get("To"), Some("<sip:bob@fabrikam.com>;tag=tt"));
        assert_eq!(ok.headers.get("Call-ID"), Some("call-1"));
    }
}
