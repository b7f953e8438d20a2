//! The SIP message model (requests, responses) and its wire serialisation.
//!
//! `Content-Length` is not stored in [`Headers`]: it describes framing, not content, so it is
//! always derived from the body when serialising and stripped when parsing. That makes
//! `parse(serialize(m)) == m` hold and makes a wrong length impossible to send.

use super::header::Headers;
// Re-exported for the modules that import it from here (`transaction`).
pub(crate) use super::method::Method;
use super::uri::Uri;

/// A SIP request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The method.
    pub method: Method,
    /// The Request-URI.
    pub uri: Uri,
    /// Header fields (without Content-Length).
    pub headers: Headers,
    /// The body (possibly empty).
    pub body: Vec<u8>,
}

/// A SIP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code, 100–699.
    pub status: u16,
    /// Reason phrase.
    pub reason: String,
    /// Header fields (without Content-Length).
    pub headers: Headers,
    /// The body (possibly empty).
    pub body: Vec<u8>,
}

/// A request or a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A request.
    Request(Request),
    /// A response.
    Response(Response),
}

impl Request {
    /// A request with no headers and no body.
    pub fn new(method: Method, uri: Uri) -> Request {
        Request {
            method,
            uri,
            headers: Headers::new(),
            body: Vec::new(),
        }
    }

    /// The wire form, with a Content-Length computed from the body.
    pub fn to_bytes(&self) -> Vec<u8> {
        let start = format!("{} {} SIP/2.0", self.method, self.uri);
        serialize(&start, &self.headers, &self.body)
    }
}

impl Response {
    /// A response with the standard reason phrase, no headers and no body.
    pub fn new(status: u16) -> Response {
        Response {
            status,
            reason: reason_phrase(status).to_owned(),
            headers: Headers::new(),
            body: Vec::new(),
        }
    }

    /// A response to `request` (RFC 3261 §8.2.6.2): copies every Via, From, To, Call-ID and
    /// CSeq. Add a To tag with [`Response::with_to_tag`].
    pub fn for_request(request: &Request, status: u16) -> Response {
        let mut response = Response::new(status);
        for header in request.headers.iter() {
            if matches!(
                header.name.as_ref(),
                "Via" | "From" | "To" | "Call-ID" | "CSeq"
            ) {
                response.headers.push(&header.name, header.value.clone());
            }
        }
        response
    }

    /// Adds `;tag=<tag>` to the To header unless it already has a tag (RFC 3261 §8.2.6.2).
    pub fn with_to_tag(mut self, tag: &str) -> Response {
        if let Some(to) = self.headers.get("To") {
            let has_tag = self
                .headers
                .to_addr()
                .map(|a| a.tag().is_some())
                .unwrap_or(true);
            if !has_tag {
                let to = format!("{to};tag={tag}");
                self.headers.set("To", to);
            }
        }
        self
    }

    /// Whether this is a final (non-1xx) response.
    pub fn is_final(&self) -> bool {
        self.status >= 200
    }

    /// The wire form, with a Content-Length computed from the body.
    pub fn to_bytes(&self) -> Vec<u8> {
        let start = format!("SIP/2.0 {} {}", self.status, self.reason);
        serialize(&start, &self.headers, &self.body)
    }
}

impl Message {
    /// The header fields.
    pub fn headers(&self) -> &Headers {
        match self {
            Message::Request(r) => &r.headers,
            Message::Response(r) => &r.headers,
        }
    }

    /// The body.
    pub fn body(&self) -> &[u8] {
        match self {
            Message::Request(r) => &r.body,
            Message::Response(r) => &r.body,
        }
    }

    /// The wire form.
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            Message::Request(r) => r.to_bytes(),
            Message::Response(r) => r.to_bytes(),
        }
    }
}

/// Writes the head. Control characters other than HTAB inside the start line or a header
/// (which the parser never produces, but a caller could put there: line breaks, NUL, ESC,
/// DEL) become spaces, so no input can inject a header, desynchronise the stream, or produce
/// a message the parser would refuse.
fn serialize(start: &str, headers: &Headers, body: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    fn line(out: &mut Vec<u8>, parts: &[&str]) {
        for part in parts {
            // Control characters other than HTAB.
            let unsafe_byte = |b: &u8| matches!(b, 0..=0x08 | 0x0a..=0x1f | 0x7f);
            if part.as_bytes().iter().any(unsafe_byte) {
                out.extend(part.bytes().map(|b| if unsafe_byte(&b) { b' ' } else { b }));
            } else {
                out.extend_from_slice(part.as_bytes());
            }
        }
        out.extend_from_slice(b"\r\n");
    }
    let kept = || headers.iter().filter(|h| h.name != "Content-Length");
    // One allocation: the exact size, but for the digits of Content-Length (at most 20).
    let size = start.len()
        + 2
        + kept()
            .map(|h| h.name.len() + h.value.len() + 4)
            .sum::<usize>()
        + "Content-Length: \r\n\r\n".len()
        + 20
        + body.len();
    let mut out = Vec::with_capacity(size);
    line(&mut out, &[start]);
    for header in kept() {
        line(&mut out, &[header.name.as_ref(), ": ", &header.value]);
    }
    // Writing to a Vec cannot fail.
    let _ = write!(out, "Content-Length: {}\r\n\r\n", body.len());
    out.extend_from_slice(body);
    out
}

/// The standard reason phrase for a status code (RFC 3261 §21 and the few extensions used here).
pub fn reason_phrase(status: u16) -> &'static str {
    const PHRASES: &[(u16, &str)] = &[
        (100, "Trying"),
        (180, "Ringing"),
        (200, "OK"),
        (202, "Accepted"),
        (400, "Bad Request"),
        (403, "Forbidden"),
        (404, "Not Found"),
        (405, "Method Not Allowed"),
        (408, "Request Timeout"),
        (416, "Unsupported URI Scheme"),
        (420, "Bad Extension"),
        (423, "Interval Too Brief"),
        (480, "Temporarily Unavailable"),
        (481, "Call/Transaction Does Not Exist"),
        (482, "Loop Detected"),
        (483, "Too Many Hops"),
        (500, "Server Internal Error"),
        (501, "Not Implemented"),
        (503, "Service Unavailable"),
        (504, "Server Time-out"),
        (505, "Version Not Supported"),
        (513, "Message Too Large"),
    ];
    if let Some((_, phrase)) = PHRASES.iter().find(|(code, _)| *code == status) {
        return phrase;
    }
    match status / 100 {
        1 => "Provisional",
        2 => "Success",
        3 => "Redirection",
        4 => "Client Error",
        5 => "Server Error",
        _ => "Global Failure",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_with_computed_content_length() {
        let mut req = Request::new(Method::Message, Uri::parse("sip:bob@contoso.com").unwrap());
        req.headers
            .push("Via", "SIP/2.0/TLS a.contoso.com;branch=z9hG4bK1");
        req.headers.push("Content-Length", "999");
        req.headers.push("Subject", "a\r\nInjected: 1\0\x1b\x7f\tz");
        req.body = b"hello".to_vec();
        let text = String::from_utf8(req.to_bytes()).unwrap();
        assert_eq!(
            text,
            "MESSAGE sip:bob@contoso.com SIP/2.0\r\nVia: SIP/2.0/TLS a.contoso.com;branch=z9hG4bK1\r\nSubject: a  Injected: 1   \tz\r\nContent-Length: 5\r\n\r\nhello"
        );
    }

    #[test]
    fn response_copies_dialog_headers_and_adds_tag_once() {
        let mut req = Request::new(Method::Options, Uri::parse("sip:contoso.com").unwrap());
        for (n, v) in [
            ("Via", "SIP/2.0/TLS a;branch=z9hG4bK1"),
            ("Via", "SIP/2.0/TLS b;branch=z9hG4bK2"),
            ("From", "<sip:a@contoso.com>;tag=f"),
            ("To", "<sip:contoso.com>"),
            ("Call-ID", "c1"),
            ("CSeq", "1 OPTIONS"),
            ("Max-Forwards", "70"),
        ] {
            req.headers.push(n, v);
        }
        let resp = Response::for_request(&req, 200)
            .with_to_tag("t1")
            .with_to_tag("t2");
        assert_eq!(resp.headers.len(), 6);
        assert_eq!(resp.headers.get("To"), Some("<sip:contoso.com>;tag=t1"));
        assert_eq!(resp.reason, "OK");
        assert_eq!(Method::from_token("FOO").as_str(), "FOO");
        assert_eq!(Method::from_token("MESSAGE"), Method::Message);
    }
}
