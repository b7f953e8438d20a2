//! What the [`Proxy`](super::Proxy) asks of its shell ([`Action`]), what it reports
//! ([`Event`]), and the connection identities both name.
//!
//! Kept apart from `proxy.rs` so that the parts the proxy is built from (registrar,
//! transactions) can emit actions and name connections without importing the proxy itself:
//! dependencies inside `sip` point one way only.

use super::config::RouteId;
use super::framer::FrameError;
use super::method::Method;
use super::parse::ParseError;

/// Identifies a connection; chosen by the shell, unique while the connection lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

/// The transport of an inbound connection (the listener it was accepted on).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// Plain TCP.
    Tcp,
    /// TLS, server-authenticated (Windows Messenger clients).
    Tls,
    /// Mutual TLS (federation peers and other servers).
    Mtls,
}

/// What a connection is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConnKind {
    /// Accepted on one of our listeners.
    Inbound(Transport),
    /// Opened by the shell for a static route (outgoing mutual TLS).
    Route(RouteId),
}

impl ConnKind {
    /// Whether the peer is another server (route or mutual TLS), which may send requests for
    /// our users but may not use us as a relay or registrar.
    pub fn is_federation(self) -> bool {
        !matches!(self, ConnKind::Inbound(Transport::Tcp | Transport::Tls))
    }

    pub(crate) fn via_transport(self) -> &'static str {
        match self {
            ConnKind::Inbound(Transport::Tcp) => "TCP",
            _ => "TLS",
        }
    }
}

/// Something the shell must do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Write `bytes` to the connection.
    Send {
        /// The connection.
        conn: ConnId,
        /// Bytes to write.
        bytes: Vec<u8>,
        /// What they are, so a shell can count them without parsing them again.
        payload: Payload,
    },
    /// Close the connection after writing what was sent before. The proxy already considers it
    /// closed; calling [`Proxy::connection_closed`](super::Proxy::connection_closed) for it
    /// afterwards is harmless.
    Close {
        /// The connection.
        conn: ConnId,
    },
    /// Open the route's connection, then call
    /// [`Proxy::connection_opened`](super::Proxy::connection_opened) with
    /// [`ConnKind::Route`], or
    /// [`Proxy::route_connect_failed`](super::Proxy::route_connect_failed).
    ConnectRoute {
        /// The route.
        route: RouteId,
    },
    /// Something to log or count.
    Event(Event),
}

/// What an [`Action::Send`] carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// A request (forwarded, or queued for a route and sent on connect).
    Request,
    /// A response: ours, relayed, or resent to a retransmission.
    Response {
        /// The method of the request it answers (its CSeq), when known: a response to a
        /// request too broken to parse may have no CSeq.
        method: Option<Method>,
        /// The status code.
        status: u16,
    },
    /// The CRLF answer to a CRLF CRLF keep-alive ping.
    KeepAlive,
}

/// Things worth logging or counting; the proxy has already acted on them.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A delimited message did not parse (a request was answered with 400, 416 or 505).
    ParseError {
        /// Where it came from.
        conn: ConnId,
        /// Why.
        error: ParseError,
    },
    /// The stream could not be framed; answered (400 or 513) if possible, and closed.
    FramingError {
        /// The connection, now closed.
        conn: ConnId,
        /// Why.
        error: FrameError,
    },
    /// A new registration binding.
    BindingAdded {
        /// Address of record (`user@domain`).
        aor: String,
        /// The connection it is reachable on.
        conn: ConnId,
        /// Seconds granted.
        expires: u32,
    },
    /// A binding ended.
    BindingRemoved {
        /// Address of record.
        aor: String,
        /// Why.
        reason: BindingRemoval,
    },
    /// A request waits for a route connection.
    Queued {
        /// The route.
        route: RouteId,
        /// Requests now waiting for it.
        depth: usize,
    },
    /// A route connection opened and its queue was sent.
    RouteConnected {
        /// The route.
        route: RouteId,
        /// How many queued requests were sent.
        flushed: usize,
    },
    /// The shell could not open a route connection; the next attempt waits for the back-off.
    RouteConnectFailed {
        /// The route.
        route: RouteId,
        /// Requests still waiting for it.
        queued: usize,
    },
    /// Timer F fired: the request was answered 408.
    TimedOut {
        /// The request's Call-ID.
        call_id: String,
        /// The request's method.
        method: Method,
        /// Whether it never left the route queue.
        was_queued: bool,
    },
    /// A final response was ready but its originator's connection had closed.
    ResponseUndeliverable {
        /// The request's Call-ID.
        call_id: String,
        /// The final status.
        status: u16,
    },
    /// A response matched no transaction (late, after Timer F, or not ours) and was dropped.
    StrayResponse {
        /// Where it came from.
        conn: ConnId,
        /// Its status.
        status: u16,
    },
    /// Bytes or a close for a connection the proxy does not know (a shell bug).
    UnknownConnection {
        /// The connection.
        conn: ConnId,
    },
}

/// Why a binding ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindingRemoval {
    /// It was not refreshed in time.
    Expired,
    /// The client unregistered it.
    Unregistered,
    /// The connection it was registered on closed.
    ConnectionClosed,
}
