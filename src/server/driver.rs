//! The task that owns the SIP core and the connections' write sides.
//!
//! One task drives the sans-IO [`Proxy`]: connection tasks send it what happened (opened, bytes,
//! closed), it feeds the proxy with `now` from tokio's clock, sleeps until the proxy's next
//! deadline, and carries out the proxy's actions (write, close, dial a route). Keeping the proxy
//! on one task needs no lock on the hot path and keeps the order of events deterministic, which
//! the simulation relies on.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::clock::monotonic_now;
use crate::eventlog::{Level, ids};
use crate::sip::{Action, ConnId, ConnKind, Event as SipEvent, Payload, Proxy, RouteId};

use super::log::ServiceLog;
use super::metrics::{Metrics, SipCounters};

/// What a connection task writes.
#[derive(Debug)]
pub(crate) enum WriteCmd {
    /// Bytes to write.
    Bytes(Vec<u8>),
    /// Close after what was written.
    Close,
}

/// What the driver hears.
#[derive(Debug)]
pub(crate) enum ToDriver {
    /// A connection is ready (handshake done).
    Opened {
        conn: ConnId,
        kind: ConnKind,
        writer: mpsc::UnboundedSender<WriteCmd>,
    },
    /// Bytes arrived.
    Bytes { conn: ConnId, bytes: Vec<u8> },
    /// The connection ended.
    Closed { conn: ConnId },
    /// A route could not be dialled.
    RouteFailed { route: RouteId },
    /// Stop: close every connection and end.
    Shutdown,
}

/// Dials a route; called by the driver when the proxy asks.
pub(crate) type Dialer = Arc<dyn Fn(RouteId) + Send + Sync>;

pub(crate) struct Driver {
    pub proxy: Proxy,
    pub rx: mpsc::UnboundedReceiver<ToDriver>,
    pub dialer: Dialer,
    pub log: Arc<ServiceLog>,
    pub metrics: Arc<Metrics>,
    pub writers: BTreeMap<ConnId, mpsc::UnboundedSender<WriteCmd>>,
}

impl Driver {
    pub(crate) async fn run(mut self) {
        loop {
            self.carry_out_actions();
            self.publish();
            let deadline = self.proxy.poll_timeout();
            let sleep = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                msg = self.rx.recv() => match msg {
                    None | Some(ToDriver::Shutdown) => break,
                    Some(msg) => self.handle(msg),
                },
                () = sleep => self.proxy.handle_timeout(monotonic_now()),
            }
        }
        for (_, w) in std::mem::take(&mut self.writers) {
            let _ = w.send(WriteCmd::Close);
        }
    }

    fn handle(&mut self, msg: ToDriver) {
        let now = monotonic_now();
        match msg {
            ToDriver::Opened { conn, kind, writer } => {
                self.writers.insert(conn, writer);
                self.proxy.connection_opened(conn, kind, now);
            }
            ToDriver::Bytes { conn, bytes } => self.proxy.receive(conn, &bytes, now),
            ToDriver::Closed { conn } => {
                if self.writers.remove(&conn).is_some() {
                    self.proxy.connection_closed(conn, now);
                }
            }
            ToDriver::RouteFailed { route } => self.proxy.route_connect_failed(route, now),
            ToDriver::Shutdown => {}
        }
    }

    fn carry_out_actions(&mut self) {
        while let Some(action) = self.proxy.poll_action() {
            match action {
                Action::Send {
                    conn,
                    bytes,
                    payload,
                } => {
                    if let Payload::Response {
                        method: Some(method),
                        status,
                    } = payload
                    {
                        self.metrics.response_sent(method, status);
                    }
                    if let Some(w) = self.writers.get(&conn) {
                        let _ = w.send(WriteCmd::Bytes(bytes));
                    }
                }
                Action::Close { conn } => {
                    if let Some(w) = self.writers.remove(&conn) {
                        let _ = w.send(WriteCmd::Close);
                    }
                }
                Action::ConnectRoute { route } => (self.dialer)(route),
                Action::Event(e) => self.on_event(e),
            }
        }
    }

    fn on_event(&mut self, event: SipEvent) {
        match event {
            SipEvent::TimedOut {
                call_id, method, ..
            } => {
                let e = self
                    .log
                    .event(
                        ids::MESSAGES_TIMED_OUT,
                        Level::Warning,
                        format!(
                            "A {method} request was answered 408 Request Timeout: no final response before Timer F (64 x T1). (Emulated text.)"
                        ),
                    )
                    .with("call_id", call_id);
                self.log.record_limited("timed-out", e);
            }
            SipEvent::FramingError { conn, error } => {
                tracing::debug!("connection {conn:?}: framing error, closed: {error}");
            }
            SipEvent::ParseError { conn, error } => {
                tracing::debug!("connection {conn:?}: unparsable message: {error}");
            }
            other => tracing::trace!("sip: {other:?}"),
        }
    }

    fn publish(&self) {
        let s = self.proxy.stats();
        self.metrics.publish_sip(SipCounters {
            routed: s.messages_routed,
            queued: s.queued,
            timed_out: s.timed_out,
            queue_depth: s.queue_depth as u64,
            registrations: s.bindings as u64,
            requests: s.requests_received,
            requests_by_method: s.requests_by_method,
            responses: s.responses_received,
            server_transactions: s.server_transactions as u64,
            released_per_connection: s.released_early.per_connection,
            released_total: s.released_early.total,
            message_timeouts: s.message_timeouts,
        });
    }
}
