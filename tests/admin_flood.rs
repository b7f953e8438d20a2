//! A SIP TLS connection cannot hold the server's memory or a connection for ever (issue 15 §4),
//! on the live service over real rustls connections: completed transactions past
//! `[sip] max_completed_transactions_per_connection` are released oldest first (a retransmission
//! of a released request gets a fresh answer, a held one the same bytes), and a message that
//! does not arrive whole within `[sip] message_timeout_ms` (a head at a byte a tick, random
//! bytes) closes the connection. Each counted in the metrics `/metrics` exports.

mod common;

use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

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

/// Waits up to `within` for the server to close `tls` (EOF or reset); what it sent first.
async fn closed_within(tls: &mut Tls, within: Duration) -> Option<String> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let read = tokio::time::timeout(within, async {
        loop {
            match tls.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    read.ok()
        .map(|()| String::from_utf8_lossy(&got).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_per_connection_cap_the_oldest_answers_are_released() {
    let (_tmp, d) = deployment_with(|c| c.sip.max_completed_transactions_per_connection = 50);
    let live = Live::start(&d).await;
    let mut tls = tls_connect(live.addr("tls-5061"), client_config(&d, None))
        .await
        .unwrap();
    let mut first = Vec::new();
    for n in 0..200 {
        tls.write_all(options(n).as_bytes()).await.unwrap();
        first.push(read_message(&mut tls).await);
    }
    until("the driver publishes its counters", || {
        live.running.metrics.sip().released_per_connection == 150
    })
    .await;
    let sip = live.running.metrics.sip();
    assert_eq!(sip.server_transactions, 50, "{sip:?}");
    // Still held: a retransmission gets the same answer, byte for byte.
    tls.write_all(options(199).as_bytes()).await.unwrap();
    assert_eq!(read_message(&mut tls).await, first[199]);
    // Released: a fresh answer (another To tag), which is safe for OPTIONS.
    tls.write_all(options(0).as_bytes()).await.unwrap();
    let again = read_message(&mut tls).await;
    assert!(again.starts_with("SIP/2.0 200 OK"), "{again}");
    assert_ne!(again, first[0]);
    live.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_sent_a_byte_a_tick_and_random_bytes_are_cut_off() {
    let (_tmp, d) = deployment_with(|c| c.sip.message_timeout_ms = 500);
    let live = Live::start(&d).await;
    let addr = live.addr("tls-5061");
    let config = client_config(&d, None);

    // Slow loris: one byte every 50 ms, well inside the idle timeout (300 s), never a whole head.
    let mut slow = tls_connect(addr, config.clone()).await.unwrap();
    let head = options(1);
    // 40 bytes take 2 s: four times the message timeout.
    for b in &head.as_bytes()[..40] {
        if slow.write_all(&[*b]).await.is_err() || slow.flush().await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        closed_within(&mut slow, Duration::from_secs(5))
            .await
            .is_some(),
        "a head at a byte a tick was not cut off"
    );

    // Random bytes after the handshake (no end of head in them): a 400 or a close, not held.
    let mut noise = tls_connect(addr, config).await.unwrap();
    let mut x: u32 = 0x1234_5678;
    let bytes: Vec<u8> = (0..3000)
        .map(|_| {
            x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (x >> 24) as u8
        })
        .collect();
    noise.write_all(&bytes).await.unwrap();
    noise.flush().await.unwrap();
    let said = closed_within(&mut noise, Duration::from_secs(5))
        .await
        .expect("random bytes held the connection");
    assert!(said.is_empty() || said.starts_with("SIP/2.0 400"), "{said}");
    until("both are counted", || {
        live.running.metrics.sip().message_timeouts == 2
    })
    .await;
    live.stop().await;
}
