//! `/metrics`: the service's counters in the Prometheus text format, through
//! `prometheus-client`.
//!
//! The service keeps its own atomics (the simulation samples them too); a scrape copies them
//! into a fresh registry and lets `prometheus-client` write the exposition, so the names, types,
//! `HELP` lines and escaping are the crate's, not hand-made.

use std::sync::atomic::Ordering;

use prometheus_client::encoding::text::encode as write_text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::config::Transport;
use crate::server::reason::HandshakeFailure;
use crate::server::service::ServiceHandle;

use super::AdminMetrics;

type Labels = Vec<(String, String)>;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn counter(registry: &mut Registry, name: &str, help: &str, value: u64) {
    let c = Counter::<u64>::default();
    c.inc_by(value);
    registry.register(name, help, c);
}

fn gauge(registry: &mut Registry, name: &str, help: &str, value: u64) {
    let g = Gauge::<i64>::default();
    g.set(i64::try_from(value).unwrap_or(i64::MAX));
    registry.register(name, help, g);
}

/// The exposition text of `handle`'s counters now.
pub(super) fn encode(handle: &ServiceHandle, admin: &AdminMetrics) -> String {
    let mut registry = Registry::with_prefix("lcs");
    admin_connections(&mut registry, admin);
    listeners(&mut registry, handle);
    routes(&mut registry, handle);
    sip(&mut registry, handle);
    let m = &handle.metrics;
    counter(
        &mut registry,
        "credential_swaps",
        "Credentials swapped by a live rebind",
        m.swaps.load(Ordering::Relaxed),
    );
    counter(
        &mut registry,
        "rebind_refusals",
        "Rebind requests refused (nothing swapped)",
        m.rebind_refusals.load(Ordering::Relaxed),
    );
    counter(
        &mut registry,
        "auto_rebind_refusals",
        "Renewed certificates auto-rebind could not use",
        m.auto_rebind_refusals.load(Ordering::Relaxed),
    );
    counter(
        &mut registry,
        "store_reloads",
        "Times the certificate store was reloaded",
        handle.store.version(),
    );
    let usable = Family::<Labels, Gauge>::default();
    for (id, c) in &handle.credentials {
        let ok = i64::from(c.certified_key().is_ok());
        usable.get_or_create(&labels(&[("connection", id)])).set(ok);
    }
    registry.register(
        "credential_usable",
        "1 when the bound key opens as the service principal now",
        usable,
    );
    let mut out = String::new();
    write_text(&mut out, &registry).expect("writing to a String cannot fail");
    out
}

fn listeners(registry: &mut Registry, handle: &ServiceHandle) {
    let handshakes = Family::<Labels, Counter>::default();
    let refused = Family::<Labels, Counter>::default();
    let open = Family::<Labels, Gauge>::default();
    let limit = HandshakeFailure::ConnectionLimit.name();
    for (id, counters) in handle.metrics.listeners() {
        let transport = handle
            .listeners
            .iter()
            .find(|l| l.id == id)
            .map_or(Transport::Tcp, |l| l.transport);
        let established = counters.established.load(Ordering::Relaxed);
        open.get_or_create(&labels(&[("listener", &id)]))
            .set(i64::try_from(established).unwrap_or(i64::MAX));
        for (reason, n) in counters.failures() {
            if reason == limit {
                refused
                    .get_or_create(&labels(&[("listener", &id), ("reason", &reason)]))
                    .inc_by(n);
            } else {
                handshakes
                    .get_or_create(&labels(&[
                        ("listener", &id),
                        ("result", "failed"),
                        ("reason", &reason),
                    ]))
                    .inc_by(n);
            }
        }
        if transport != Transport::Tcp {
            handshakes
                .get_or_create(&labels(&[
                    ("listener", &id),
                    ("result", "ok"),
                    ("reason", "none"),
                ]))
                .inc_by(counters.handshakes_ok.load(Ordering::Relaxed));
        }
    }
    registry.register(
        "tls_handshakes",
        "TLS handshakes by listener, result and reason",
        handshakes,
    );
    registry.register(
        "connections_refused",
        "Connections closed before any handshake (max_connections)",
        refused,
    );
    registry.register(
        "open_connections",
        "Connections open now, by listener",
        open,
    );
}

fn routes(registry: &mut Registry, handle: &ServiceHandle) {
    let routes = &handle.metrics.routes;
    let failures = Family::<Labels, Counter>::default();
    for ((route, reason), n) in handle.metrics.route_failures() {
        failures
            .get_or_create(&labels(&[("route", &route), ("reason", &reason)]))
            .inc_by(n);
    }
    registry.register(
        "route_failures",
        "Route dials that failed, by route and reason",
        failures,
    );
    let up = Family::<Labels, Gauge>::default();
    for r in &handle.config.routes {
        let started = !handle.failed.iter().any(|f| f.id == r.id);
        let usable = handle
            .credentials
            .get(&r.id)
            .is_some_and(|c| c.certified_key().is_ok());
        up.get_or_create(&labels(&[("route", &r.id)]))
            .set(i64::from(started && usable));
    }
    registry.register(
        "route_up",
        "1 when the route started and its credential opens now (ready to dial; route connections open now are lcs_route_open_connections)",
        up,
    );
    gauge(
        registry,
        "route_open_connections",
        "Route connections open now",
        routes.established.load(Ordering::Relaxed),
    );
}

fn sip(registry: &mut Registry, handle: &ServiceHandle) {
    let s = handle.metrics.sip();
    gauge(
        registry,
        "registered_users",
        "Registration bindings now",
        s.registrations,
    );
    gauge(
        registry,
        "message_queue_depth",
        "MESSAGEs waiting for a route connection now",
        s.queue_depth,
    );
    counter(
        registry,
        "messages_timed_out",
        "MESSAGEs answered 408 at Timer F",
        s.timed_out,
    );
    counter(
        registry,
        "messages_routed",
        "MESSAGEs delivered (a 2xx relayed back)",
        s.routed,
    );
    counter(
        registry,
        "messages_queued",
        "MESSAGEs that had to wait for a route connection",
        s.queued,
    );
    let requests = Family::<Labels, Counter>::default();
    for (method, n) in s.requests_by_method.iter() {
        requests
            .get_or_create(&labels(&[("method", method)]))
            .inc_by(n);
    }
    registry.register(
        "sip_requests",
        "SIP requests received, by method (retransmissions included; methods this server has no name for are \"other\")",
        requests,
    );
    counter(
        registry,
        "sip_responses_received",
        "SIP responses received (relayed from peers)",
        s.responses,
    );
    gauge(
        registry,
        "sip_server_transactions",
        "Server transactions held now (in progress, and completed ones kept for retransmissions)",
        s.server_transactions,
    );
    let released = Family::<Labels, Counter>::default();
    for (cap, n) in [
        ("connection", s.released_per_connection),
        ("total", s.released_total),
    ] {
        released.get_or_create(&labels(&[("cap", cap)])).inc_by(n);
    }
    registry.register(
        "sip_transactions_released_early",
        "Completed server transactions released before their linger ended, by the cap that did it ([sip] max_completed_transactions_per_connection, max_completed_transactions)",
        released,
    );
    counter(
        registry,
        "sip_message_timeouts",
        "Connections closed because a message did not arrive whole within [sip] message_timeout_ms of its first byte",
        s.message_timeouts,
    );
    let sent = Family::<Labels, Counter>::default();
    for ((method, status), n) in handle.metrics.responses_sent() {
        sent.get_or_create(&labels(&[
            ("method", method.as_str()),
            ("status", &status.to_string()),
        ]))
        .inc_by(n);
    }
    registry.register(
        "sip_responses",
        "SIP responses the server sent, by the method answered and status",
        sent,
    );
}

fn admin_connections(registry: &mut Registry, m: &AdminMetrics) {
    gauge(
        registry,
        "admin_open_connections",
        "Admin endpoint connections open now",
        m.open.load(Ordering::Relaxed),
    );
    counter(
        registry,
        "admin_connections_accepted",
        "Admin endpoint connections accepted",
        m.accepted.load(Ordering::Relaxed),
    );
    counter(
        registry,
        "admin_connections_refused",
        "Admin endpoint connections closed at once ([admin] max_connections open)",
        m.refused.load(Ordering::Relaxed),
    );
    let closed = Family::<Labels, Counter>::default();
    for (timeout, n) in [
        ("idle", &m.idle_timeouts),
        ("header", &m.header_timeouts),
        ("request", &m.request_timeouts),
    ] {
        closed
            .get_or_create(&labels(&[("timeout", timeout)]))
            .inc_by(n.load(Ordering::Relaxed));
    }
    registry.register(
        "admin_connections_timed_out",
        "Admin endpoint connections closed by a timeout, by which ([admin] *_timeout_ms)",
        closed,
    );
    let refused = Family::<Labels, Counter>::default();
    for r in super::guard::Refusal::ALL {
        refused
            .get_or_create(&labels(&[("reason", r.name())]))
            .inc_by(m.refused_requests[r as usize].load(Ordering::Relaxed));
    }
    registry.register(
        "admin_requests_refused",
        "Admin endpoint requests refused before any handler ran, by which check (host 421, origin 403, content_type 415, token 401)",
        refused,
    );
}
