//! What the simulated clients and the peer saw, on virtual time.
//!
//! Every simulated host runs on one thread, so one recorder behind a mutex is shared by all.
//! Entries are appended in the order the simulation produces them, which the seed fixes.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::failure::ConnectFailure;

/// Where a MESSAGE was going.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Target {
    /// A contoso.com user on the same server.
    Local,
    /// A fabrikam.com user, over the route.
    Federated,
}

/// What became of a MESSAGE a user sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A final response with this status.
    Final(u16),
    /// The server closed the connection before answering (a restart).
    LostOnClose,
    /// No answer within Timer F and a margin on a live connection: a server bug.
    Unanswered,
    /// Still waiting when the run ended.
    PendingAtEnd,
}

/// One MESSAGE.
#[derive(Debug, Clone, Copy)]
pub struct MessageRecord {
    /// When it was sent.
    pub sent: Duration,
    /// When its outcome was known.
    pub done: Duration,
    /// Where it was going.
    pub target: Target,
    /// What happened.
    pub outcome: Outcome,
}

/// A failed connection attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailedAttempt {
    /// When the attempt started (the TCP connect).
    pub started: Duration,
    /// When it failed.
    pub at: Duration,
    /// Which user.
    pub user: usize,
    /// Why.
    pub reason: ConnectFailure,
}

/// Everything recorded.
#[derive(Debug, Default)]
pub struct Recorder {
    /// MESSAGEs sent by users, counted when sent.
    pub messages_sent: u64,
    /// What became of them, recorded when known.
    pub messages: Vec<MessageRecord>,
    /// Failed connection attempts, in the order they failed.
    pub connect_failures: Vec<FailedAttempt>,
    /// Successful registrations, refreshes included: (when the 200 arrived, user).
    pub registrations: Vec<(Duration, usize)>,
    /// Connections the server closed under a user: (when, user).
    pub closed_by_server: Vec<(Duration, usize)>,
    /// Final responses for a MESSAGE already answered, or for none sent.
    pub duplicate_finals: u64,
    /// MESSAGEs the federation peer accepted.
    pub peer_delivered: Vec<Duration>,
    /// Handshakes the peer refused (bad or missing client certificate).
    pub peer_refused: u64,
}

/// A recorder shared by every simulated host.
pub type Shared = Arc<Mutex<Recorder>>;

/// Virtual time since the start of the run (inside a simulated host).
pub fn now() -> Duration {
    turmoil::sim_elapsed().unwrap_or_default()
}

impl Recorder {
    /// Failed connection attempts by reason, counting those in `[from, to)`.
    pub fn failures_between(&self, from: Duration, to: Duration) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for f in &self.connect_failures {
            if f.at >= from && f.at < to {
                *out.entry(f.reason.name()).or_default() += 1;
            }
        }
        out
    }
}
