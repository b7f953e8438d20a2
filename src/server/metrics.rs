//! Counters of a running service, per transport, readable while it runs.
//!
//! Connection tasks update atomics; the SIP driver publishes the proxy's own counters (routed,
//! queued, timed out, queue depth) after each step. `serve` prints them as a status line, the
//! simulation samples them into its time series.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::config::Transport;
use crate::sip::{Method, MethodCounts};

/// Counters of one transport (inbound TCP, TLS, MTLS, or outgoing routes).
#[derive(Debug, Default)]
pub struct TransportCounters {
    /// Connections open now (after a successful handshake for TLS).
    pub established: AtomicU64,
    /// Connections accepted (or dialled, for routes) in all.
    pub accepted: AtomicU64,
    /// Handshakes completed.
    pub handshakes_ok: AtomicU64,
    failures: Mutex<BTreeMap<String, u64>>,
}

impl TransportCounters {
    /// Counts a failed handshake (or, for TCP, a connection refused) by reason.
    pub fn failed(&self, reason: &str) {
        *self
            .failures
            .lock()
            .expect("metrics lock")
            .entry(reason.to_string())
            .or_default() += 1;
    }

    /// Failures by reason.
    pub fn failures(&self) -> BTreeMap<String, u64> {
        self.failures.lock().expect("metrics lock").clone()
    }

    fn snapshot(&self) -> TransportSnapshot {
        let failures = self.failures();
        TransportSnapshot {
            established: self.established.load(Ordering::Relaxed),
            accepted: self.accepted.load(Ordering::Relaxed),
            handshakes_ok: self.handshakes_ok.load(Ordering::Relaxed),
            handshakes_failed: failures.values().sum(),
            failures,
        }
    }
}

/// The SIP core's counters, as last published by the driver.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SipCounters {
    /// MESSAGEs delivered (a 2xx relayed back).
    pub routed: u64,
    /// MESSAGEs that had to wait for a route connection.
    pub queued: u64,
    /// MESSAGEs answered 408 at Timer F.
    pub timed_out: u64,
    /// MESSAGEs waiting now.
    pub queue_depth: u64,
    /// Registered bindings now.
    pub registrations: u64,
    /// SIP requests received (retransmissions included).
    pub requests: u64,
    /// The same, by method.
    #[serde(serialize_with = "by_method")]
    pub requests_by_method: MethodCounts,
    /// SIP responses received.
    pub responses: u64,
    /// Server transactions held now.
    pub server_transactions: u64,
    /// Completed server transactions released early: the connection's cap.
    pub released_per_connection: u64,
    /// The same: the total cap.
    pub released_total: u64,
    /// Connections closed: a message not whole within the message timeout.
    pub message_timeouts: u64,
}

/// Serializes per-method counts as `{"OPTIONS": 3, ...}`.
fn by_method<S: serde::Serializer>(counts: &MethodCounts, s: S) -> Result<S::Ok, S::Error> {
    s.collect_map(counts.iter())
}

/// All counters of a service.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Inbound TCP.
    pub tcp: TransportCounters,
    /// Inbound TLS.
    pub tls: TransportCounters,
    /// Inbound mutual TLS.
    pub mtls: TransportCounters,
    /// Outgoing route connections.
    pub routes: TransportCounters,
    /// Bytes on a TLS port that were not TLS.
    pub not_tls: AtomicU64,
    /// Credentials swapped by a live rebind (one per connection changed).
    pub swaps: AtomicU64,
    /// Rebind requests refused (nothing swapped).
    pub rebind_refusals: AtomicU64,
    /// Renewed certificates auto-rebind found unusable and kept the current one for.
    pub auto_rebind_refusals: AtomicU64,
    listeners: Mutex<BTreeMap<String, Arc<TransportCounters>>>,
    sip: Mutex<SipCounters>,
    responses_sent: Mutex<BTreeMap<(Method, u16), u64>>,
    route_failures: Mutex<BTreeMap<(String, String), u64>>,
}

impl Metrics {
    /// The counters of an inbound transport.
    pub fn transport(&self, t: Transport) -> &TransportCounters {
        match t {
            Transport::Tcp => &self.tcp,
            Transport::Tls => &self.tls,
            Transport::Mtls => &self.mtls,
        }
    }

    /// The counters of one listener, by connection id (created on first use).
    pub fn listener(&self, id: &str) -> Arc<TransportCounters> {
        self.listeners
            .lock()
            .expect("metrics lock")
            .entry(id.to_string())
            .or_default()
            .clone()
    }

    /// Counts a SIP response the server sent, by the method it answers and its status.
    /// On every response: a known method is a plain value, so counting allocates nothing.
    pub fn response_sent(&self, method: Method, status: u16) {
        *self
            .responses_sent
            .lock()
            .expect("metrics lock")
            .entry((method, status))
            .or_default() += 1;
    }

    /// SIP responses sent, by (method, status).
    pub fn responses_sent(&self) -> BTreeMap<(Method, u16), u64> {
        self.responses_sent.lock().expect("metrics lock").clone()
    }

    /// Counts a failed dial of `route`, by reason (also counted in `routes` by reason alone).
    pub fn route_failed(&self, route: &str, reason: &str) {
        self.routes.failed(reason);
        *self
            .route_failures
            .lock()
            .expect("metrics lock")
            .entry((route.to_owned(), reason.to_owned()))
            .or_default() += 1;
    }

    /// Failed route dials, by (route, reason).
    pub fn route_failures(&self) -> BTreeMap<(String, String), u64> {
        self.route_failures.lock().expect("metrics lock").clone()
    }

    /// Every listener's counters, by connection id.
    pub fn listeners(&self) -> BTreeMap<String, Arc<TransportCounters>> {
        self.listeners.lock().expect("metrics lock").clone()
    }

    /// The SIP core's counters as last published.
    pub fn sip(&self) -> SipCounters {
        *self.sip.lock().expect("metrics lock")
    }

    /// Publishes the SIP core's counters.
    pub fn publish_sip(&self, c: SipCounters) {
        *self.sip.lock().expect("metrics lock") = c;
    }

    /// A consistent-enough copy of everything.
    pub fn snapshot(&self) -> MetricsSnapshot {
        MetricsSnapshot {
            tcp: self.tcp.snapshot(),
            tls: self.tls.snapshot(),
            mtls: self.mtls.snapshot(),
            routes: self.routes.snapshot(),
            not_tls: self.not_tls.load(Ordering::Relaxed),
            sip: *self.sip.lock().expect("metrics lock"),
        }
    }
}

/// A copy of one transport's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TransportSnapshot {
    /// Open now.
    pub established: u64,
    /// In all.
    pub accepted: u64,
    /// Handshakes completed.
    pub handshakes_ok: u64,
    /// Handshakes failed.
    pub handshakes_failed: u64,
    /// Failures by reason.
    pub failures: BTreeMap<String, u64>,
}

/// A copy of all counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MetricsSnapshot {
    /// Inbound TCP.
    pub tcp: TransportSnapshot,
    /// Inbound TLS.
    pub tls: TransportSnapshot,
    /// Inbound mutual TLS.
    pub mtls: TransportSnapshot,
    /// Outgoing routes.
    pub routes: TransportSnapshot,
    /// Non-TLS bytes on TLS ports.
    pub not_tls: u64,
    /// The SIP core.
    pub sip: SipCounters,
}

impl MetricsSnapshot {
    /// The one-line status `serve` prints, with failures counted by reason.
    pub fn status_line(&self) -> String {
        let failed = |t: &TransportSnapshot| {
            if t.failures.is_empty() {
                format!("{} failed", t.handshakes_failed)
            } else {
                let by: Vec<String> = t.failures.iter().map(|(r, n)| format!("{r} {n}")).collect();
                format!("{} failed: {}", t.handshakes_failed, by.join(", "))
            }
        };
        format!(
            "tls {} open ({} ok, {}) | mtls {} open ({} ok, {}) | tcp {} open | routes {} open ({}) | msgs routed {} queued {} timed out {} waiting {} | registered {}",
            self.tls.established,
            self.tls.handshakes_ok,
            failed(&self.tls),
            self.mtls.established,
            self.mtls.handshakes_ok,
            failed(&self.mtls),
            self.tcp.established,
            self.routes.established,
            failed(&self.routes),
            self.sip.routed,
            self.sip.queued,
            self.sip.timed_out,
            self.sip.queue_depth,
            self.sip.registrations,
        )
    }
}
