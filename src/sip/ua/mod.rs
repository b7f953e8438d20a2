//! The SIP client, sans-IO: one user agent for the simulation's users and the load generator.
//!
//! Shaped like `quinn-proto`'s connection, as [`Proxy`](crate::sip::Proxy) is: the shell feeds
//! it what happened ([`Agent::receive`] for bytes off the stream, [`Agent::connection_up`] /
//! [`Agent::connection_down`], [`Agent::send`] and [`Agent::register`] for what the user wants,
//! [`Agent::handle_timeout`] when [`Agent::poll_timeout`] is due) and drains
//! [`Agent::poll_output`] for what to do: bytes to write, a connection to open or close, and
//! [`AgentEvent`]s. Time is always an argument, so a user can be stepped on virtual time.
//!
//! What it owns, so no shell writes it again:
//! - matching a final response to its request by Call-ID *and* top-Via branch (a response
//!   that matches nothing outstanding is [`AgentEvent::Stray`]: a duplicate or a late answer);
//! - a Timer F-like transaction timeout per request ([`AgentConfig::transaction_timeout`]);
//! - the registration: REGISTER on every new connection, refreshed on one Call-ID with an
//!   increasing CSeq (RFC 3261 §10.2.4) at half the granted time, counted from the send;
//! - **exactly one outcome per request**: [`AgentEvent::Answered`], [`AgentEvent::TimedOut`]
//!   or [`AgentEvent::Abandoned`] (connection lost, or never made). Every request is named to
//!   the shell when it is made: [`Agent::send`] and [`Agent::register`] return its id, and so
//!   do [`Agent::connection_up`] and [`Agent::handle_timeout`] for the REGISTERs the agent
//!   makes itself. [`AgentEvent::Registered`] is a state change in addition to the REGISTER's
//!   outcome, not instead of it.
//!
//! A shell that makes requests only on its own schedule but looks for lost answers whenever
//! it wakes calls [`Agent::expire`] on every wake-up and [`Agent::handle_timeout`] only when
//! its timer fires (the simulation's users, `sim/user.rs`).
//!
//! Randomness (Call-IDs, tags, branches) stays with the caller: every input that may create a
//! request takes an id source, called once per request, so a seeded shell stays deterministic.
//! Requests from the server are handed out as [`AgentEvent::Request`]; the shell answers with
//! [`Agent::respond`]. Keep-alive pings are answered here.

mod builder;

pub use builder::{RequestIds, UserAgent};

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use super::framer::{DEFAULT_MAX_MESSAGE_SIZE, Frame, Framer, PONG};
use super::header::HeaderError;
use super::message::{Message, Request, Response};
use super::parse::parse_message;
use super::uri::Uri;

/// Supplies the identifiers of a new request, given its CSeq number.
pub type IdSource<'a> = &'a mut dyn FnMut(u32) -> RequestIds;

/// Names one request handed to the agent, for matching its outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestId(pub u64);

/// The agent's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentConfig {
    /// How long a request may go unanswered before [`AgentEvent::TimedOut`] (Timer F: 32 s).
    pub transaction_timeout: Duration,
    /// Largest message the framer accepts.
    pub max_message_size: usize,
}

impl Default for AgentConfig {
    fn default() -> AgentConfig {
        AgentConfig {
            transaction_timeout: Duration::from_secs(32),
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
        }
    }
}

/// A request the agent cannot track.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    /// Without a Call-ID or a top Via with a branch, no response could be matched to it.
    #[error("request cannot be matched to a response")]
    Unmatchable(#[source] HeaderError),
    /// The top Via has no branch parameter.
    #[error("request's top Via has no branch")]
    NoBranch,
}

/// Something the shell must do or may want to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Write these bytes to the connection.
    Transmit(Vec<u8>),
    /// Open a connection (requests are waiting); report with `connection_up` or `_down`.
    Connect,
    /// Close the connection: the stream cannot be framed any more. Already counted as down.
    Disconnect,
    /// Something happened.
    Event(AgentEvent),
}

/// What happened, as the user sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentEvent {
    /// A final response to a request (its outcome).
    Answered {
        /// The request.
        request: RequestId,
        /// The response's status, 200–699.
        status: u16,
    },
    /// No final response within the transaction timeout (its outcome).
    TimedOut {
        /// The request.
        request: RequestId,
    },
    /// The connection went away (or never came) before an answer (its outcome).
    Abandoned {
        /// The request.
        request: RequestId,
    },
    /// A 2xx to a REGISTER: the binding holds for `expires` seconds.
    Registered {
        /// The granted time.
        expires: u32,
    },
    /// A final response that matches nothing outstanding (a duplicate, or too late).
    Stray {
        /// The response's status.
        status: u16,
    },
    /// A request from the server; answer it with [`Agent::respond`].
    Request(Request),
}

#[derive(Debug)]
struct Outstanding {
    id: RequestId,
    branch: String,
    deadline: Instant,
    /// For a REGISTER, when it was sent (refreshes count from there).
    register_sent: Option<Instant>,
    /// Bytes not yet written because the connection is not up.
    unsent: Option<Vec<u8>>,
}

#[derive(Debug)]
struct Registration {
    contact: Uri,
    expires: u32,
    /// Call-ID and last CSeq on the current connection.
    call: Option<(String, u32)>,
    refresh_at: Option<Instant>,
}

/// One SIP client's protocol state. See the module documentation.
#[derive(Debug)]
pub struct Agent {
    ua: UserAgent,
    config: AgentConfig,
    framer: Framer,
    connected: bool,
    connecting: bool,
    next_id: u64,
    /// Outstanding requests by Call-ID.
    outstanding: BTreeMap<String, Outstanding>,
    registration: Option<Registration>,
    registered: bool,
    outputs: VecDeque<Output>,
}

impl Agent {
    /// An agent for `ua`, not connected.
    pub fn new(ua: UserAgent, config: AgentConfig) -> Agent {
        Agent {
            framer: Framer::new(config.max_message_size),
            ua,
            config,
            connected: false,
            connecting: false,
            next_id: 0,
            outstanding: BTreeMap::new(),
            registration: None,
            registered: false,
            outputs: VecDeque::new(),
        }
    }

    /// The identity stamped on requests (build requests for [`Agent::send`] with it).
    pub fn user_agent(&self) -> &UserAgent {
        &self.ua
    }

    /// Whether the last REGISTER on this connection was answered 2xx.
    pub fn is_registered(&self) -> bool {
        self.registered
    }

    /// Whether the connection is up.
    pub fn is_connected(&self) -> bool {
        self.connected
    }

    /// Requests made so far (their ids are 1 to this), the agent's own REGISTERs included.
    pub fn requests_made(&self) -> u64 {
        self.next_id
    }

    /// Requests without an outcome yet.
    pub fn outstanding(&self) -> usize {
        self.outstanding.len()
    }

    /// Sends `request` (built with [`Agent::user_agent`]); its outcome comes as an event.
    pub fn send(&mut self, now: Instant, request: &Request) -> Result<RequestId, AgentError> {
        self.track(now, request, false)
    }

    /// Keeps `contact` registered for `expires` seconds from now on, on every connection;
    /// sends the first REGISTER now (or once connected). Returns that REGISTER's id.
    pub fn register(
        &mut self,
        now: Instant,
        contact: Uri,
        expires: u32,
        ids: IdSource,
    ) -> RequestId {
        self.registration = Some(Registration {
            contact,
            expires,
            call: None,
            refresh_at: None,
        });
        self.send_register(now, ids)
    }

    /// Answers a request received from the server.
    pub fn respond(&mut self, response: &Response) {
        if self.connected {
            self.outputs
                .push_back(Output::Transmit(response.to_bytes()));
        }
    }

    /// The connection is up: waiting requests are written, and a REGISTER is sent if the
    /// agent keeps a registration and none is waiting already. Returns that REGISTER's id, so
    /// a shell that accounts for every REGISTER can tell its outcome from the others.
    pub fn connection_up(&mut self, now: Instant, ids: IdSource) -> Option<RequestId> {
        self.connected = true;
        self.connecting = false;
        self.framer = Framer::new(self.config.max_message_size);
        let waiting_register = self.outstanding.values().any(|o| o.register_sent.is_some());
        for o in self.outstanding.values_mut() {
            if let Some(bytes) = o.unsent.take() {
                self.outputs.push_back(Output::Transmit(bytes));
            }
        }
        (self.registration.is_some() && !waiting_register).then(|| self.send_register(now, ids))
    }

    /// The connection is gone (or could not be made): every outstanding request is
    /// abandoned and the registration must be renewed on the next connection.
    pub fn connection_down(&mut self, _now: Instant) {
        self.connected = false;
        self.connecting = false;
        self.registered = false;
        if let Some(r) = &mut self.registration {
            r.call = None;
            r.refresh_at = None;
        }
        for (_, o) in std::mem::take(&mut self.outstanding) {
            self.event(AgentEvent::Abandoned { request: o.id });
        }
    }

    /// Bytes read from the connection.
    pub fn receive(&mut self, now: Instant, bytes: &[u8]) {
        if !self.connected {
            return;
        }
        self.framer.push(bytes);
        while let Some(frame) = self.framer.pop() {
            match frame {
                Ok(Frame::Ping) => self.outputs.push_back(Output::Transmit(PONG.to_vec())),
                Ok(Frame::Message(raw)) => match parse_message(&raw) {
                    Ok(Message::Response(r)) => self.on_response(now, &r),
                    Ok(Message::Request(r)) => self.event(AgentEvent::Request(r)),
                    Err(_) => {}
                },
                Err(_) => {
                    self.outputs.push_back(Output::Disconnect);
                    self.connection_down(now);
                    return;
                }
            }
        }
    }

    /// Fires what is due at `now`: transaction timeouts, then a registration refresh. Returns
    /// the refresh REGISTER's id, if one was sent.
    pub fn handle_timeout(&mut self, now: Instant, ids: IdSource) -> Option<RequestId> {
        self.expire(now);
        let due = self
            .registration
            .as_ref()
            .and_then(|r| r.refresh_at)
            .is_some_and(|at| at <= now);
        (due && self.connected).then(|| self.send_register(now, ids))
    }

    /// Fires only the transaction timeouts due at `now`; a refresh that is due waits for
    /// [`Agent::handle_timeout`]. For a shell that looks for lost answers whenever it wakes
    /// (after reading, say) but makes requests only when its own timer fires, as the
    /// simulation's users do: its requests then go out at the moments they always did.
    pub fn expire(&mut self, now: Instant) {
        let expired: Vec<String> = self
            .outstanding
            .iter()
            .filter(|(_, o)| o.deadline <= now)
            .map(|(call_id, _)| call_id.clone())
            .collect();
        for call_id in expired {
            let o = self.outstanding.remove(&call_id).expect("listed");
            if o.register_sent.is_some() {
                self.registered = false;
            }
            self.event(AgentEvent::TimedOut { request: o.id });
        }
    }

    /// When to call [`Agent::handle_timeout`] next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let refresh = self.registration.as_ref().and_then(|r| r.refresh_at);
        let deadlines = self.outstanding.values().map(|o| o.deadline);
        deadlines.chain(refresh.filter(|_| self.connected)).min()
    }

    /// The next thing for the shell to do, oldest first.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    fn event(&mut self, event: AgentEvent) {
        self.outputs.push_back(Output::Event(event));
    }

    fn track(
        &mut self,
        now: Instant,
        req: &Request,
        register: bool,
    ) -> Result<RequestId, AgentError> {
        let call_id = req.headers.call_id().map_err(AgentError::Unmatchable)?;
        let via = req.headers.top_via().map_err(AgentError::Unmatchable)?;
        let branch = via.branch().ok_or(AgentError::NoBranch)?.to_owned();
        self.next_id += 1;
        let id = RequestId(self.next_id);
        let bytes = req.to_bytes();
        let unsent = if self.connected {
            self.outputs.push_back(Output::Transmit(bytes));
            None
        } else {
            if !self.connecting {
                self.connecting = true;
                self.outputs.push_back(Output::Connect);
            }
            Some(bytes)
        };
        let outstanding = Outstanding {
            id,
            branch,
            deadline: now + self.config.transaction_timeout,
            register_sent: register.then_some(now),
            unsent,
        };
        if let Some(old) = self.outstanding.insert(call_id.to_owned(), outstanding) {
            // A reused Call-ID replaces the older request: it gets its outcome now.
            self.event(AgentEvent::Abandoned { request: old.id });
        }
        Ok(id)
    }

    fn send_register(&mut self, now: Instant, ids: IdSource) -> RequestId {
        let r = self.registration.as_mut().expect("registration kept");
        let cseq = r.call.as_ref().map_or(1, |(_, cseq)| cseq + 1);
        let mut ids = ids(cseq);
        if let Some((call_id, _)) = &r.call {
            ids.call_id.clone_from(call_id);
        }
        r.call = Some((ids.call_id.clone(), cseq));
        r.refresh_at = refresh_after(now, r.expires);
        let request = self.ua.register(&r.contact, r.expires, &ids);
        self.track(now, &request, true)
            .expect("the builder's REGISTER has a Call-ID and a branch")
    }

    fn on_response(&mut self, now: Instant, r: &Response) {
        if !r.is_final() {
            return;
        }
        let call_id = r.headers.call_id().unwrap_or_default();
        let branch = r.headers.top_via().ok();
        let matches = self.outstanding.get(call_id).is_some_and(|o| {
            o.unsent.is_none()
                && branch.as_ref().and_then(|v| v.branch()) == Some(o.branch.as_str())
        });
        if !matches {
            self.event(AgentEvent::Stray { status: r.status });
            return;
        }
        let o = self.outstanding.remove(call_id).expect("matched");
        if let Some(sent) = o.register_sent {
            self.on_register_final(now, sent, r);
        }
        self.event(AgentEvent::Answered {
            request: o.id,
            status: r.status,
        });
    }

    fn on_register_final(&mut self, _now: Instant, sent: Instant, r: &Response) {
        let ok = (200..300).contains(&r.status);
        self.registered = ok;
        let Some(reg) = self.registration.as_mut().filter(|_| ok) else {
            return;
        };
        let granted = r.headers.expires().ok().flatten().unwrap_or(reg.expires);
        reg.refresh_at = refresh_after(sent, granted);
        self.event(AgentEvent::Registered { expires: granted });
    }
}

/// When to refresh a binding granted for `expires` seconds at `sent`: half-way, but not more
/// often than once a second; never for an unregistration (0).
fn refresh_after(sent: Instant, expires: u32) -> Option<Instant> {
    (expires > 0).then(|| sent + Duration::from_secs(u64::from(expires / 2).max(1)))
}

#[cfg(test)]
mod tests;
