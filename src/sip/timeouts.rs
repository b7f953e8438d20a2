//! What each of the proxy's timers does when it fires.
//!
//! Apart from the queue (`timers`) because a timer names a server transaction's key, while
//! transactions hold the [`TimerKey`](super::timers::TimerKey) that cancels their timer: with
//! both in one file, `timers` and `transaction` would import each other.

use super::actions::ConnId;
use super::config::RouteId;
use super::transaction::ServerKey;

/// What a timer does when it fires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Timer {
    /// Timer F of the client transaction with this branch: answer 408 upstream.
    TransactionTimeout { branch: String },
    /// Forget a completed server transaction (Timer J; see `transaction`).
    ServerLinger { key: ServerKey },
    /// A registration binding ran out.
    BindingExpiry { aor: String, binding: u64 },
    /// The back-off after a failed route connection is over.
    RouteRetry { route: RouteId },
    /// Part of a message has waited on this connection for the message timeout: close it.
    MessageTimeout { conn: ConnId },
}
