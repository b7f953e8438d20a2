//! Connection caps (`[tls] max_connections`): past the cap a new connection is closed at once,
//! before any handshake, counted as `connection_limit` and logged once per interval; the
//! connections already open are untouched, and service resumes as soon as one closes.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::*;
use lcs_sim::failure::ConnectFailure;

fn options(n: u32) -> String {
    request(
        "OPTIONS",
        "sip:lcs01.contoso.com",
        "probe@contoso.com",
        "lcs01.contoso.com",
        n,
        "",
        "",
    )
}

#[tokio::test]
async fn with_max_connections_40_at_most_40_tls_connections_are_served_and_service_resumes() {
    let (_tmp, d) = deployment_with(|c| c.tls.max_connections = Some(40));
    let live = Live::start(&d).await;
    let addr = live.addr("tls-5061");
    let config = client_config(&d, None);
    let mut held = Vec::new();
    for n in 0..40 {
        let mut s = tls_connect(addr, config.clone()).await.unwrap();
        assert_eq!(transact(&mut s, &options(n)).await, "SIP/2.0 200 OK");
        held.push(s);
    }
    // Past the cap: closed before any handshake (no alert, the TCP connection just ends).
    for _ in 0..10 {
        let err = tls_connect(addr, config.clone()).await.unwrap_err();
        assert_eq!(
            ConnectFailure::from_handshake_error(&err),
            ConnectFailure::ClosedDuringHandshake,
            "{err}"
        );
    }
    let listener = live.running.metrics.listener("tls-5061");
    until("ten connections refused at the cap", || {
        listener.failures().get("connection_limit") == Some(&10)
    })
    .await;
    assert_eq!(
        live.running
            .metrics
            .tls
            .handshakes_ok
            .load(Ordering::Relaxed),
        40
    );
    assert_eq!(
        live.running.metrics.tls.established.load(Ordering::Relaxed),
        40
    );
    // The connections already open are untouched.
    assert_eq!(
        transact(&mut held[0], &options(100)).await,
        "SIP/2.0 200 OK"
    );

    // One closes: service resumes.
    drop(held.pop());
    let mut resumed = None;
    for _ in 0..1000 {
        if let Ok(s) = tls_connect(addr, config.clone()).await {
            resumed = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut resumed = resumed.expect("a new connection is served once one closed");
    assert_eq!(
        transact(&mut resumed, &options(101)).await,
        "SIP/2.0 200 OK"
    );
    live.stop().await;

    // Logged once for the burst (rate-limited), with the count held back written at stop.
    let log = d.event_log().read().unwrap();
    let limit: Vec<_> = log.iter().filter(|e| e.id == 14363).collect();
    assert!(!limit.is_empty() && limit.len() <= 2, "{limit:?}");
    let total: u64 = limit
        .iter()
        .map(|e| e.details["occurrences"].as_u64().unwrap())
        .sum();
    assert!(total >= 10, "{limit:?}");
}
