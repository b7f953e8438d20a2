//! The SIP core: messages, stream framing, transactions, registrar and proxy — without I/O.
//!
//! Everything here is *sans-IO*, in the manner of `quinn-proto`: no sockets, no tokio, no
//! clock. Bytes go in ([`Proxy::receive`]), actions come out ([`Proxy::poll_action`]), and time
//! is an argument (`now`) with [`Proxy::poll_timeout`] saying when to call back. The reason is
//! the simulation: KB836410's symptoms (instant messages queued behind a dead mutual-TLS route,
//! answered 408 after Timer F's 32 seconds) play out over minutes and hours, and must replay
//! identically from a seed on virtual time. A SIP stack that reads `Instant::now()` inside its
//! timers cannot do that; this one cannot do anything else. The same property makes the
//! protocol logic testable by jumping from deadline to deadline, with no sleeps.
//!
//! The parts, bottom-up:
//! - [`Uri`], [`Headers`] and the typed header views ([`Via`], [`NameAddr`], [`CSeq`]);
//! - [`Request`], [`Response`], [`Message`] and their serialisation, [`parse_message`];
//! - [`Framer`]: Content-Length framing and CRLF keep-alives on TCP/TLS streams;
//! - [`UserAgent`]: building client requests (emulated Messenger users, the federation peer);
//! - [`Agent`] (in [`ua`]): the client side, sans-IO — response matching, transaction
//!   timeouts and REGISTER refresh for the shells that emulate users;
//! - [`Proxy`]: the registrar and stateful proxy for the shell to drive, set up by
//!   [`ProxyConfig`].
//!
//! Only stream transports (TCP, TLS) are supported, as LCS 2003 used them; so no UDP
//! retransmission timers (RFC 3261 Timer E is inert on reliable transports) and no INVITE
//! dialogs (answered 405).

mod actions;
mod config;
mod framer;
pub(crate) mod header;
pub(crate) mod message;
mod method;
pub(crate) mod names;
pub(crate) mod parse;
mod proxy;
mod registrar;
mod timeouts;
mod timers;
pub(crate) mod transaction;
pub mod ua;
pub(crate) mod uri;

pub use actions::{Action, BindingRemoval, ConnId, ConnKind, Event, Payload, Transport};
pub use config::{ProxyConfig, RouteId, StaticRoute};
pub use framer::{DEFAULT_MAX_MESSAGE_SIZE, Frame, FrameError, Framer, PING, PONG};
pub use header::{
    BRANCH_COOKIE, CSeq, Header, HeaderError, Headers, NameAddr, Params, Via, split_list,
};
pub use message::{Message, Request, Response, reason_phrase};
pub use method::{Method, MethodCounts};
pub use names::canonical_name;
pub use parse::{ParseError, parse_message};
pub use proxy::{Proxy, ProxyStats};
pub use transaction::{CompletedCaps, Released};
pub use ua::{
    Agent, AgentConfig, AgentError, AgentEvent, Output, RequestId, RequestIds, UserAgent,
};
pub use uri::{Uri, UriError};

#[cfg(test)]
mod proptests;
