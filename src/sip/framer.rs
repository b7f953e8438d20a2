//! Stream framing: cutting a TCP/TLS byte stream into SIP messages and keep-alives.
//!
//! On a stream, Content-Length is the only delimiter (RFC 3261 §18.3), so a message without it
//! cannot be framed: the framer reports a fatal [`FrameError`] and the connection must be closed
//! after the error response. Between messages, a double CRLF is a keep-alive ping to be answered
//! with a single CRLF pong (RFC 5626 §3.5.1) and a lone CRLF is skipped (RFC 3261 §7.5). The
//! framer looks ahead as far as it must to tell these apart, so its output never depends on how
//! the stream was chunked: pushing `"\r\n"` then `"\r\n"` yields one ping, as does `"\r\n\r\n"`.
//!
//! It does not parse: it hands out complete raw messages, so that a delimited but malformed
//! message can be answered with 400 while the connection stays usable.

/// A unit cut from the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A complete message (headers and exactly Content-Length body bytes), to be parsed with
    /// [`parse_message`](super::parse_message).
    Message(Vec<u8>),
    /// A double-CRLF keep-alive ping; answer with [`PONG`].
    Ping,
}

/// The keep-alive pong: a single CRLF.
pub const PONG: &[u8] = b"\r\n";
/// The keep-alive ping: a double CRLF.
pub const PING: &[u8] = b"\r\n\r\n";
/// The default maximum message size (headers and body), 64 KiB.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 64 * 1024;

/// The stream cannot be framed any further; close the connection after answering.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The headers end but carry no Content-Length (mandatory on streams, RFC 3261 §18.3).
    #[error("message on a stream has no Content-Length")]
    MissingContentLength {
        /// The message head, for salvaging headers into a 400 response.
        head: Vec<u8>,
    },
    /// Content-Length is not a number, or several disagree.
    #[error("invalid Content-Length {value:?}")]
    InvalidContentLength {
        /// The offending value(s).
        value: String,
        /// The message head.
        head: Vec<u8>,
    },
    /// The message is, or would become, larger than the limit.
    #[error("message exceeds the {limit}-byte limit")]
    TooLarge {
        /// The configured maximum message size.
        limit: usize,
        /// The head, or the first `limit` bytes if the head never ended.
        head: Vec<u8>,
    },
}

impl FrameError {
    /// The head (or what was buffered of it), for salvaging headers into an error response.
    pub fn head(&self) -> &[u8] {
        match self {
            FrameError::MissingContentLength { head }
            | FrameError::InvalidContentLength { head, .. }
            | FrameError::TooLarge { head, .. } => head,
        }
    }
}

/// Accumulates stream bytes and pops complete frames. One per connection.
#[derive(Debug, Clone)]
pub struct Framer {
    buf: Vec<u8>,
    max_message_size: usize,
    /// Where to resume searching for the end of headers (bytes before it were searched).
    scanned: usize,
    /// The length of the message at the front once its head has been parsed and only body
    /// bytes are missing, so the head is not parsed again on every `pop`.
    expected: Option<usize>,
    /// Heads parsed for their Content-Length (once per message).
    heads_parsed: u64,
    failed: bool,
}

impl Default for Framer {
    fn default() -> Framer {
        Framer::new(DEFAULT_MAX_MESSAGE_SIZE)
    }
}

impl Framer {
    /// A framer refusing messages larger than `max_message_size` bytes.
    pub fn new(max_message_size: usize) -> Framer {
        Framer {
            buf: Vec::new(),
            max_message_size,
            scanned: 0,
            expected: None,
            heads_parsed: 0,
            failed: false,
        }
    }

    /// Appends received bytes. Ignored once the framer has failed.
    pub fn push(&mut self, bytes: &[u8]) {
        if !self.failed {
            self.buf.extend_from_slice(bytes);
        }
    }

    /// Bytes buffered but not yet popped.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// How many message heads were parsed for their Content-Length: one per message, however
    /// the bytes arrive.
    #[doc(hidden)]
    pub fn heads_parsed(&self) -> u64 {
        self.heads_parsed
    }

    /// Whether a [`FrameError`] was returned; the framer then yields nothing more.
    pub fn is_failed(&self) -> bool {
        self.failed
    }

    /// The next complete frame, `None` if more bytes are needed, or the fatal error (once).
    pub fn pop(&mut self) -> Option<Result<Frame, FrameError>> {
        if self.failed {
            return None;
        }
        if let Some(total) = self.expected {
            return (self.buf.len() >= total).then(|| Ok(self.take_message(total)));
        }
        loop {
            if self.buf.starts_with(PING) {
                self.consume(PING.len());
                return Some(Ok(Frame::Ping));
            }
            if PING.starts_with(&self.buf) {
                return None; // empty, or a prefix of a ping: wait to see which
            }
            if !self.buf.starts_with(PONG) {
                break;
            }
            self.consume(PONG.len()); // a lone CRLF between messages
        }
        let limit = self.max_message_size;
        let Some(head_end) = super::parse::find_head_end(&self.buf, self.scanned.saturating_sub(3))
        else {
            if self.buf.len() > limit {
                return Some(Err(self.fail(FrameError::TooLarge {
                    limit,
                    head: self.buf[..limit].to_vec(),
                })));
            }
            self.scanned = self.buf.len();
            return None;
        };
        let head = &self.buf[..head_end];
        self.heads_parsed += 1;
        let error = match super::parse::content_length(head) {
            _ if head_end > limit => FrameError::TooLarge {
                limit,
                head: head[..limit].to_vec(),
            },
            Ok(Some(length)) if head_end.saturating_add(length) > limit => FrameError::TooLarge {
                limit,
                head: head.to_vec(),
            },
            Ok(Some(length)) => {
                let total = head_end + length;
                if self.buf.len() < total {
                    self.expected = Some(total); // the body is on its way
                    return None;
                }
                return Some(Ok(self.take_message(total)));
            }
            Ok(None) => FrameError::MissingContentLength {
                head: head.to_vec(),
            },
            Err(e) => FrameError::InvalidContentLength {
                value: match e {
                    super::ParseError::InvalidContentLength { value } => value,
                    other => other.to_string(),
                },
                head: head.to_vec(),
            },
        };
        Some(Err(self.fail(error)))
    }

    fn take_message(&mut self, total: usize) -> Frame {
        let message = self.buf[..total].to_vec();
        self.consume(total);
        Frame::Message(message)
    }

    fn consume(&mut self, n: usize) {
        self.buf.drain(..n);
        self.scanned = 0;
        self.expected = None;
    }

    fn fail(&mut self, error: FrameError) -> FrameError {
        self.failed = true;
        self.buf = Vec::new();
        error
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(framer: &mut Framer) -> Vec<Result<Frame, FrameError>> {
        std::iter::from_fn(|| framer.pop()).collect()
    }

    const MSG: &[u8] = b"OPTIONS sip:contoso.com SIP/2.0\r\nl: 3\r\n\r\nabc";

    #[test]
    fn frames_messages_pings_and_skips_lone_crlf() {
        let mut f = Framer::default();
        let mut input = b"\r\n".to_vec();
        input.extend_from_slice(MSG);
        input.extend_from_slice(b"\r\n\r\n");
        input.extend_from_slice(MSG);
        f.push(&input);
        assert_eq!(
            frames(&mut f),
            [
                Ok(Frame::Message(MSG.to_vec())),
                Ok(Frame::Ping),
                Ok(Frame::Message(MSG.to_vec()))
            ]
        );
        assert_eq!(f.buffered(), 0);
    }

    #[test]
    fn waits_for_split_ping_and_body() {
        let mut f = Framer::default();
        f.push(b"\r\n");
        assert_eq!(f.pop(), None);
        f.push(b"\r");
        assert_eq!(f.pop(), None);
        f.push(b"\n");
        assert_eq!(f.pop(), Some(Ok(Frame::Ping)));
        f.push(&MSG[..MSG.len() - 1]);
        assert_eq!(f.pop(), None);
        f.push(&MSG[MSG.len() - 1..]);
        assert_eq!(f.pop(), Some(Ok(Frame::Message(MSG.to_vec()))));
    }

    #[test]
    fn a_head_is_parsed_once_while_its_body_trickles_in() {
        let mut f = Framer::default();
        let mut popped = Vec::new();
        for byte in MSG.iter().chain(MSG) {
            f.push(std::slice::from_ref(byte));
            popped.extend(f.pop());
        }
        assert_eq!(
            popped,
            [
                Ok(Frame::Message(MSG.to_vec())),
                Ok(Frame::Message(MSG.to_vec()))
            ]
        );
        assert_eq!(f.heads_parsed(), 2);
    }

    #[test]
    fn missing_content_length_is_fatal() {
        let mut f = Framer::default();
        f.push(b"MESSAGE sip:a@b SIP/2.0\r\nCall-ID: x\r\n\r\nhello");
        assert!(matches!(
            f.pop(),
            Some(Err(FrameError::MissingContentLength { .. }))
        ));
        assert!(f.is_failed());
        f.push(MSG);
        assert_eq!(f.pop(), None);
    }

    #[test]
    fn oversize_by_declared_length_or_endless_head() {
        let mut f = Framer::new(100);
        f.push(b"MESSAGE sip:a@b SIP/2.0\r\nContent-Length: 1000\r\n\r\n");
        let Some(Err(FrameError::TooLarge { limit: 100, head })) = f.pop() else {
            panic!()
        };
        assert!(head.ends_with(b"\r\n\r\n"));

        let mut f = Framer::new(100);
        f.push(&[b'x'; 100]);
        assert_eq!(f.pop(), None);
        f.push(b"x");
        assert!(matches!(f.pop(), Some(Err(FrameError::TooLarge { .. }))));
    }

    #[test]
    fn conflicting_content_lengths_are_invalid() {
        let mut f = Framer::default();
        f.push(b"MESSAGE sip:a@b SIP/2.0\r\nl: 1\r\nContent-Length: 2\r\n\r\nab");
        assert!(matches!(
            f.pop(),
            Some(Err(FrameError::InvalidContentLength { .. }))
        ));
    }
}
