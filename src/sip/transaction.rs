//! Non-INVITE transactions over reliable transports (RFC 3261 §17.1.2, §17.2.2).
//!
//! A *server transaction* exists per request received (keyed like §17.2.3: top Via branch,
//! sent-by and method). It absorbs retransmissions: while the request is being worked on they
//! are dropped, once answered they get the same final response again, and never a second
//! forward. It holds the one final response; [`ServerTx::complete`] refuses a second, which is
//! how "exactly one final response per request" is enforced in one place.
//!
//! A *client transaction* exists per request forwarded (keyed by the branch of the Via the
//! proxy added). Over TCP/TLS Timer E never retransmits, so what remains is Timer F (64 × T1):
//! if no final response arrives by then, the server transaction is answered with 408. Timer K
//! is zero on reliable transports, so a client transaction ends with its first final response.
//!
//! Deliberate deviation: Timer J is zero on reliable transports too, but a completed server
//! transaction is kept for 64 × T1 anyway. Emulated clients reconnect and retransmit over the
//! new connection; keeping the answer costs a few hundred bytes and prevents a MESSAGE from
//! being delivered twice.

use std::time::Instant;

use super::config::RouteId;
use super::header::{BRANCH_COOKIE, HeaderError};
use super::message::{Method, Request, Response, reason_phrase};
use super::proxy::ConnId;
use super::timers::TimerKey;

/// Identifies a server transaction (RFC 3261 §17.2.3).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct ServerKey {
    branch: String,
    sent_by: String,
    method: Method,
}

impl ServerKey {
    /// The key of a request. Pre-RFC 3261 branches (no magic cookie) fall back to Call-ID,
    /// CSeq and From tag, as §17.2.3 allows.
    pub(crate) fn for_request(request: &Request) -> Result<ServerKey, HeaderError> {
        let via = request.headers.top_via()?;
        let branch = match via.branch() {
            Some(b) if b.starts_with(BRANCH_COOKIE) && b.len() > BRANCH_COOKIE.len() => {
                b.to_owned()
            }
            _ => {
                let h = &request.headers;
                let from_tag = h.from_addr()?.tag().unwrap_or_default().to_owned();
                format!("rfc2543:{}:{}:{from_tag}", h.call_id()?, h.cseq()?.seq)
            }
        };
        // ACK to a non-2xx final belongs to the INVITE's transaction (§17.2.3).
        let method = match request.method {
            Method::Ack => Method::Invite,
            ref m => m.clone(),
        };
        Ok(ServerKey {
            branch,
            sent_by: via.sent_by(),
            method,
        })
    }
}

/// Where a server transaction stands.
#[derive(Debug)]
pub(crate) enum ServerState {
    /// Waiting for the final response (being handled or forwarded).
    Proceeding,
    /// Answered; `response` is resent to retransmissions until the linger timer fires.
    Completed { response: Vec<u8> },
}

/// A server transaction.
#[derive(Debug)]
pub(crate) struct ServerTx {
    /// Connection responses go to; `None` once it closed (the originator went away).
    pub(crate) conn: Option<ConnId>,
    /// Via, From, To, Call-ID, CSeq of the request: the skeleton of any response we generate.
    template: Response,
    /// The request's method.
    pub(crate) method: Method,
    /// The state.
    pub(crate) state: ServerState,
}

impl ServerTx {
    /// A new server transaction for `request`, received on `conn`.
    pub(crate) fn new(request: &Request, conn: ConnId) -> ServerTx {
        ServerTx {
            conn: Some(conn),
            template: Response::for_request(request, 100),
            method: request.method.clone(),
            state: ServerState::Proceeding,
        }
    }

    /// The request's Call-ID (for events).
    pub(crate) fn call_id(&self) -> &str {
        self.template.headers.get("Call-ID").unwrap_or_default()
    }

    /// A response of ours to the request, with a To tag.
    pub(crate) fn response(&self, status: u16, to_tag: &str) -> Response {
        let mut response = self.template.clone().with_to_tag(to_tag);
        response.status = status;
        response.reason = reason_phrase(status).to_owned();
        response
    }

    /// Records the final response, unless one was already recorded (then `false`).
    pub(crate) fn complete(&mut self, response: Vec<u8>) -> bool {
        if matches!(self.state, ServerState::Completed { .. }) {
            return false;
        }
        self.state = ServerState::Completed { response };
        true
    }
}

/// Where a forwarded request goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    /// A registered local user's connection.
    User(ConnId),
    /// A static route, connected or not.
    Route(RouteId),
}

/// A client transaction: a request we forwarded and whose final response we await.
#[derive(Debug)]
pub(crate) struct ClientTx {
    /// The server transaction to answer.
    pub(crate) server: ServerKey,
    /// The forwarded request, serialised (with our Via), ready to (re)send from the queue.
    pub(crate) request: Vec<u8>,
    /// Where it goes.
    pub(crate) target: Target,
    /// The connection it was written to; `None` while queued for a route.
    pub(crate) sent_on: Option<ConnId>,
    /// Timer F.
    pub(crate) timer_f: TimerKey,
    /// When it was created (for diagnostics).
    pub(crate) created: Instant,
}
