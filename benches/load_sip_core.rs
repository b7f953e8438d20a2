//! The SIP core's cost per one-shot connection (open, one OPTIONS, 200, close) as completed
//! server transactions pile up, the pattern of `lcs-sim load handshake` (issue 9).
//!
//! Completed server transactions are kept 32 s on reliable transports (the deliberate
//! deviation in `sip::transaction`): at ~2,500 connections per second that is ~80,000 of them.
//! Each close must detach the connection's own transactions; this bench measures the cost per
//! connection in the sans-IO [`Proxy`] alone (no TLS, no sockets, virtual time) with none held
//! and with `LCS_BENCH_HELD` held (default 80,000), and prints the ratio. Before the fix a
//! close scanned every held transaction, so the ratio grew with the number held.
//!
//! `cargo bench --bench load_sip_core`.

use std::time::{Duration, Instant};

use lcs_sim::clock::monotonic_now;
use lcs_sim::sip::{ConnId, ConnKind, Proxy, ProxyConfig, RequestIds, Transport, Uri, UserAgent};

fn main() {
    let held: u64 = std::env::var("LCS_BENCH_HELD")
        .ok()
        .map_or(80_000, |v| v.parse().expect("LCS_BENCH_HELD is a number"));
    let batch = 5_000;
    let t0 = monotonic_now();
    let mut proxy = Proxy::new(ProxyConfig::default());
    let ua = UserAgent::new(
        Uri::parse("sip:load@contoso.com").expect("uri"),
        "127.0.0.1",
    );
    let server = Uri::parse("sip:contoso.com").expect("uri");
    let mut next = 0u64;
    let mut one = |proxy: &mut Proxy| {
        next += 1;
        let conn = ConnId(next);
        // Virtual time advances 0.4 ms per connection (2,500/s), well inside the 32 s linger.
        let now = t0 + Duration::from_micros(400 * (next % 50_000));
        let ids = RequestIds {
            call_id: format!("c{next}"),
            from_tag: "t".into(),
            branch: format!("b{next}"),
            cseq: 1,
        };
        proxy.connection_opened(conn, ConnKind::Inbound(Transport::Tls), now);
        proxy.receive(conn, &ua.options(&server, &ids).to_bytes(), now);
        proxy.connection_closed(conn, now);
        while proxy.poll_action().is_some() {}
    };
    let timed = |proxy: &mut Proxy, one: &mut dyn FnMut(&mut Proxy)| {
        let start = monotonic_now();
        for _ in 0..batch {
            one(proxy);
        }
        elapsed_ns(start) / batch as f64
    };
    let fresh = timed(&mut proxy, &mut one);
    for _ in 0..held {
        one(&mut proxy);
    }
    let loaded = timed(&mut proxy, &mut one);
    println!(
        "sip core, one-shot OPTIONS connection: {fresh:.0} ns fresh, {loaded:.0} ns with {held} completed transactions held; ratio held/fresh {:.2}",
        loaded / fresh
    );
}

fn elapsed_ns(start: Instant) -> f64 {
    (monotonic_now() - start).as_nanos() as f64
}
