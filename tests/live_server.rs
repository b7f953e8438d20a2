//! The service on real loopback sockets: KB836410 as an administrator would meet it.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::*;
use lcs_sim::clock::{Clock, SystemClock};
use lcs_sim::eventlog::Event;
use lcs_sim::failure::{Alert, ConnectFailure};
use lcs_sim::pki::{self, KeyAlgorithm, LeafSpec, Serial};
use lcs_sim::store::RenewalPolicy;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::AsyncWriteExt;

fn thumbprint(d: &lcs_sim::deployment::Deployment) -> String {
    d.store()
        .load()
        .unwrap()
        .list(false)
        .next()
        .unwrap()
        .thumbprint()
        .to_string()
}

fn events(d: &lcs_sim::deployment::Deployment, id: u32) -> Vec<Event> {
    d.event_log()
        .read()
        .unwrap()
        .into_iter()
        .filter(|e| e.id == id)
        .collect()
}

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
async fn renewal_breaks_new_tls_handshakes_while_established_connections_carry_on() {
    let (_tmp, d) = deployment();
    let live = Live::start(&d).await;
    assert!(live.running.failed.is_empty(), "{:?}", live.running.failed);
    let tls_addr = live.addr("tls-5061");
    let config = client_config(&d, None);

    let mut established = tls_connect(tls_addr, config.clone()).await.unwrap();
    assert_eq!(
        transact(&mut established, &options(1)).await,
        "SIP/2.0 200 OK"
    );

    let version = live.store.version();
    d.renew(
        &thumbprint(&d),
        RenewalPolicy::SameKeyResetAcl,
        SystemClock.now_utc(),
    )
    .unwrap();
    reloaded_since(&live, version).await;

    // A new handshake fails with an alert from the server...
    let err = tls_connect(tls_addr, config.clone()).await.unwrap_err();
    assert_eq!(
        ConnectFailure::from_handshake_error(&err),
        ConnectFailure::TlsAlert(Alert::ACCESS_DENIED),
        "{err}"
    );
    // ...while the established connection still works.
    assert_eq!(
        transact(&mut established, &options(2)).await,
        "SIP/2.0 200 OK"
    );

    let m = live.running.metrics.snapshot();
    assert_eq!(m.tls.failures.get("access_denied"), Some(&1), "{m:?}");
    assert_eq!(m.tls.handshakes_ok, 1);
    assert_eq!(m.tls.established, 1);
    live.stop().await;

    let failing = events(&d, 14360);
    assert_eq!(failing.len(), 1);
    assert_eq!(failing[0].details["connection"], "tls-5061");
    assert_eq!(failing[0].details["reason"], "access_denied");
    assert!(
        failing[0].details["error"]
            .as_str()
            .unwrap()
            .contains("0x80090016 NTE_BAD_KEYSET")
    );
}

#[tokio::test]
async fn restart_after_renewal_fails_tls_and_mtls_with_14352_14336_14347_while_tcp_serves() {
    let (_tmp, d) = deployment();
    let live = Live::start(&d).await;
    live.stop().await;
    let config = d.config().unwrap();
    let reference = config.connections[0].certificate().cloned().unwrap();
    d.renew(
        &thumbprint(&d),
        RenewalPolicy::SameKeyResetAcl,
        SystemClock.now_utc(),
    )
    .unwrap();

    let live = Live::start(&d).await;
    let listening: Vec<&str> = live
        .running
        .listeners
        .iter()
        .map(|l| l.id.as_str())
        .collect();
    assert_eq!(listening, ["tcp-5060"]);
    let failed: Vec<&str> = live.running.failed.iter().map(|f| f.id.as_str()).collect();
    assert_eq!(failed, ["route-fabrikam.com", "tls-5061", "mtls-5062"]);

    // TCP keeps serving.
    let mut tcp = tokio::net::TcpStream::connect(live.addr("tcp-5060"))
        .await
        .unwrap();
    assert_eq!(transact(&mut tcp, &options(1)).await, "SIP/2.0 200 OK");
    live.stop().await;

    // In causal order per listener: 14352, 14336, 14347; Event Viewer (newest first) shows
    // 14347, 14336, 14352 as the KB lists them.
    let log = d.event_log().read().unwrap();
    let tls_ids: Vec<u32> = log
        .iter()
        .filter(|e| {
            e.details.get("connection").and_then(|c| c.as_str()) == Some("tls-5061")
                && e.id >= 14336
                && e.id <= 14352
        })
        .map(|e| e.id)
        .collect();
    assert_eq!(tls_ids, [14352, 14336, 14347]);
    for id in [14352, 14336, 14347] {
        let e = events(&d, id);
        assert!(
            e.iter().any(|e| e.details["connection"] == "mtls-5062"),
            "{id} for mtls"
        );
        for e in e {
            assert_eq!(e.details["issuer"], reference.issuer.as_str());
            assert_eq!(e.details["serial"], reference.serial.as_str());
            assert_eq!(e.details["principal"], "RTCService");
            assert!(e.message.contains("Emulated text"));
            assert!(
                e.details["error"]
                    .as_str()
                    .unwrap()
                    .starts_with("certificate not found")
                    || id == 14336
            );
        }
    }
    let e14336 = &events(&d, 14336)[0];
    assert!(
        e14336.details["error"]
            .as_str()
            .unwrap()
            .contains("0x8009030D SEC_E_UNKNOWN_CREDENTIALS")
    );
}

#[tokio::test]
async fn the_kb_fix_then_a_restart_brings_every_listener_and_the_route_back() {
    let (_tmp, d) = deployment();
    d.renew(
        &thumbprint(&d),
        RenewalPolicy::SameKeyResetAcl,
        SystemClock.now_utc(),
    )
    .unwrap();
    let live = Live::start(&d).await;
    assert_eq!(live.running.listeners.len(), 1);
    live.stop().await;

    let mut config = d.config().unwrap();
    let plan = lcs_sim::fix::plan(&config, &d.store().load().unwrap(), &[]);
    assert_eq!(plan.rebinds.len(), 3);
    d.store()
        .update(|s| lcs_sim::fix::apply_to_store(&plan, s))
        .unwrap();
    lcs_sim::fix::apply_to_config(&plan, &mut config);
    config.save(&d.config_path()).unwrap();

    let live = Live::start(&d).await;
    assert!(live.running.failed.is_empty(), "{:?}", live.running.failed);
    assert_eq!(
        live.running.credentials.len(),
        3,
        "TLS, MTLS and the route have credentials"
    );
    let mut tls = tls_connect(live.addr("tls-5061"), client_config(&d, None))
        .await
        .unwrap();
    assert_eq!(transact(&mut tls, &options(1)).await, "SIP/2.0 200 OK");
    live.stop().await;
}

#[tokio::test]
async fn restart_after_the_key_acl_lost_the_service_reports_nte_bad_keyset() {
    // The reference still names an active certificate, but the service lost read on its key
    // (an ACL reset without a renewal): the start fails with NTE_BAD_KEYSET, not "not found".
    let (_tmp, d) = deployment();
    let t = thumbprint(&d);
    d.store()
        .update(|s| {
            let t = s.find(&t)?.thumbprint().clone();
            s.revoke(&t, "RTCService", None)
        })
        .unwrap();
    let live = Live::start(&d).await;
    assert_eq!(live.running.listeners.len(), 1);
    live.stop().await;
    let e = &events(&d, 14352)[0];
    assert!(
        e.details["error"]
            .as_str()
            .unwrap()
            .contains("0x80090016 NTE_BAD_KEYSET"),
        "{e:?}"
    );
    assert_eq!(e.details["reason"], "key_access_denied");
}

#[tokio::test]
async fn renewal_that_keeps_the_acl_causes_no_outage_until_restart() {
    let (_tmp, d) = deployment();
    let live = Live::start(&d).await;
    let version = live.store.version();
    d.renew(
        &thumbprint(&d),
        RenewalPolicy::NewKeyKeepAcl,
        SystemClock.now_utc(),
    )
    .unwrap();
    reloaded_since(&live, version).await;
    let mut tls = tls_connect(live.addr("tls-5061"), client_config(&d, None))
        .await
        .unwrap();
    assert_eq!(transact(&mut tls, &options(1)).await, "SIP/2.0 200 OK");
    live.stop().await;

    let live = Live::start(&d).await;
    let failure = live
        .running
        .failed
        .iter()
        .find(|f| f.id == "tls-5061")
        .unwrap();
    assert!(
        matches!(
            &failure.cause,
            lcs_sim::server::StartCause::Credential(lcs_sim::server::CredentialError::NotFound {
                archived_as: Some(_),
                ..
            })
        ),
        "{failure:?}"
    );
    live.stop().await;
}

fn client_certificate(
    d: &lcs_sim::deployment::Deployment,
) -> (
    Vec<rustls::pki_types::CertificateDer<'static>>,
    PrivateKeyDer<'static>,
) {
    let ca = d.issuing_ca().unwrap();
    let key = KeyAlgorithm::EcdsaP256.generate().unwrap();
    let now = SystemClock.now_utc();
    let der = pki::issue_leaf(
        &ca,
        &LeafSpec::server("sip.fabrikam.com", "Fabrikam"),
        &key,
        &Serial::random(),
        now,
        now + time::Duration::days(1),
    )
    .unwrap();
    (
        vec![der, ca.cert.clone()],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.secret_pkcs8_der().to_vec())),
    )
}

#[tokio::test]
async fn mutual_tls_requires_a_client_certificate_from_the_deployment_ca() {
    let (_tmp, d) = deployment();
    let live = Live::start(&d).await;
    let addr = live.addr("mtls-5062");

    let mut with_cert = tls_connect(addr, client_config(&d, Some(client_certificate(&d))))
        .await
        .unwrap();
    assert_eq!(
        transact(&mut with_cert, &options(1)).await,
        "SIP/2.0 200 OK"
    );

    // Without a certificate: under TLS 1.3 the refusal arrives after our Finished.
    let refused = async {
        let mut s = tls_connect(addr, client_config(&d, None)).await?;
        s.write_all(options(2).as_bytes()).await?;
        let mut buf = [0u8; 64];
        tokio::io::AsyncReadExt::read(&mut s, &mut buf).await
    }
    .await;
    assert!(
        refused.is_err() || refused.as_ref().unwrap() == &0,
        "{refused:?}"
    );
    let metrics = &live.running.metrics;
    until("the missing client certificate is counted", || {
        metrics.mtls.failures().get("client_certificate_missing") == Some(&1)
    })
    .await;
    live.stop().await;
}

#[tokio::test]
async fn register_and_message_between_tls_clients_and_failures_for_unknown_targets() {
    let (_tmp, d) = deployment();
    let live = Live::start(&d).await;
    let addr = live.addr("tls-5061");
    let config = client_config(&d, None);
    let mut alice = tls_connect(addr, config.clone()).await.unwrap();
    let mut bob = tls_connect(addr, config.clone()).await.unwrap();
    let reg = |user: &str, n| {
        request(
            "REGISTER",
            "sip:contoso.com",
            &format!("{user}@contoso.com"),
            &format!("{user}@contoso.com"),
            n,
            &format!("Contact: <sip:{user}@127.0.0.1:5999;transport=tls>\r\nExpires: 600\r\n"),
            "",
        )
    };
    assert_eq!(
        transact(&mut alice, &reg("alice", 1)).await,
        "SIP/2.0 200 OK"
    );
    assert_eq!(transact(&mut bob, &reg("bob", 2)).await, "SIP/2.0 200 OK");

    let msg = request(
        "MESSAGE",
        "sip:bob@contoso.com",
        "alice@contoso.com",
        "bob@contoso.com",
        3,
        "Content-Type: text/plain\r\n",
        "hello bob",
    );
    alice.write_all(msg.as_bytes()).await.unwrap();
    let delivered = read_message(&mut bob).await;
    assert!(
        delivered.starts_with("MESSAGE sip:bob@127.0.0.1:5999"),
        "{delivered}"
    );
    assert!(delivered.ends_with("hello bob"));
    let reply = delivered
        .lines()
        .filter(|l| {
            l.starts_with("Via:")
                || l.starts_with("From:")
                || l.starts_with("To:")
                || l.starts_with("Call-ID:")
                || l.starts_with("CSeq:")
        })
        .collect::<Vec<_>>()
        .join("\r\n");
    bob.write_all(format!("SIP/2.0 200 OK\r\n{reply}\r\nContent-Length: 0\r\n\r\n").as_bytes())
        .await
        .unwrap();
    assert_eq!(
        read_message(&mut alice).await.lines().next().unwrap(),
        "SIP/2.0 200 OK"
    );

    let to_nobody = request(
        "MESSAGE",
        "sip:carol@contoso.com",
        "alice@contoso.com",
        "carol@contoso.com",
        4,
        "",
        "hi",
    );
    assert_eq!(
        transact(&mut alice, &to_nobody).await,
        "SIP/2.0 480 Temporarily Unavailable"
    );
    let elsewhere = request(
        "MESSAGE",
        "sip:dave@example.net",
        "alice@contoso.com",
        "dave@example.net",
        5,
        "",
        "hi",
    );
    assert_eq!(
        transact(&mut alice, &elsewhere).await,
        "SIP/2.0 404 Not Found"
    );
    // The driver publishes its counters after each step: wait for the step that routed it.
    until("one MESSAGE counted as routed", || {
        live.running.metrics.snapshot().sip.routed == 1
    })
    .await;
    live.stop().await;
}

#[tokio::test]
async fn messages_for_an_unreachable_route_queue_and_get_408_at_timer_f() {
    // T1 = 10 ms, so Timer F = 640 ms; the federation peer is not running.
    let (_tmp, d) = deployment_with(|c| {
        c.sip.t1_ms = 10;
        c.routes[0].next_hop = "127.0.0.1:9".parse().unwrap();
    });
    let live = Live::start(&d).await;
    let mut alice = tls_connect(live.addr("tls-5061"), client_config(&d, None))
        .await
        .unwrap();
    let msg = request(
        "MESSAGE",
        "sip:bob@fabrikam.com",
        "alice@contoso.com",
        "bob@fabrikam.com",
        1,
        "",
        "hi",
    );
    let started = lcs_sim::clock::monotonic_now();
    assert_eq!(
        transact(&mut alice, &msg).await,
        "SIP/2.0 408 Request Timeout"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(600),
        "{:?}",
        started.elapsed()
    );
    let m = live.running.metrics.snapshot();
    assert_eq!(
        (m.sip.queued, m.sip.timed_out, m.sip.queue_depth),
        (1, 1, 0)
    );
    assert!(
        m.routes.failures.contains_key("connection_refused"),
        "{m:?}"
    );
    live.stop().await;
    assert_eq!(events(&d, 14362).len(), 1);
    assert_eq!(
        events(&d, 14361)[0].details["connection"],
        "route-fabrikam.com"
    );
}

/// A connection that never spoke is not known to the SIP core (it is announced with its first
/// bytes), so no Close reaches it from there: it must still end when the service stops, as one
/// that spoke does.
#[tokio::test]
async fn stopping_the_service_closes_connections_that_never_spoke() {
    let (_tmp, d) = deployment();
    let live = Live::start(&d).await;
    let mut silent = tls_connect(live.addr("tls-5061"), client_config(&d, None))
        .await
        .unwrap();
    let mut spoke = tls_connect(live.addr("tls-5061"), client_config(&d, None))
        .await
        .unwrap();
    assert_eq!(transact(&mut spoke, &options(1)).await, "SIP/2.0 200 OK");
    live.stop().await;
    for (name, conn) in [("silent", &mut silent), ("spoke", &mut spoke)] {
        let mut buf = [0u8; 16];
        let n = tokio::time::timeout(
            Duration::from_secs(5),
            tokio::io::AsyncReadExt::read(conn, &mut buf),
        )
        .await
        .unwrap_or_else(|_| panic!("the {name} connection is still open after stop"));
        assert!(matches!(n, Ok(0) | Err(_)), "{name}: {n:?}");
    }
}

/// The idle deadline counts from the last traffic, not from the connection's start: requests
/// every 400 ms keep a connection with a 1 s idle timeout open for 2.4 s.
#[tokio::test]
async fn traffic_keeps_a_connection_open_past_the_idle_timeout() {
    let (_tmp, d) = deployment_with(|c| c.sip.idle_timeout_s = 1);
    let live = Live::start(&d).await;
    let mut busy = tokio::net::TcpStream::connect(live.addr("tcp-5060"))
        .await
        .unwrap();
    let started = lcs_sim::clock::monotonic_now();
    for n in 1..=6 {
        assert_eq!(transact(&mut busy, &options(n)).await, "SIP/2.0 200 OK");
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    assert!(started.elapsed() >= Duration::from_millis(2400));
    assert_eq!(transact(&mut busy, &options(7)).await, "SIP/2.0 200 OK");
    live.stop().await;
}

#[tokio::test]
async fn slow_handshakes_and_idle_connections_time_out() {
    let (_tmp, d) = deployment_with(|c| {
        c.tls.handshake_timeout_ms = 200;
        c.sip.idle_timeout_s = 1;
    });
    let live = Live::start(&d).await;
    // A TCP connection to the TLS port that never says anything is closed at the timeout.
    let mut silent = tokio::net::TcpStream::connect(live.addr("tls-5061"))
        .await
        .unwrap();
    let mut buf = [0u8; 16];
    let started = lcs_sim::clock::monotonic_now();
    let n = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::io::AsyncReadExt::read(&mut silent, &mut buf),
    )
    .await
    .unwrap();
    assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
    assert!(
        started.elapsed() >= Duration::from_millis(190),
        "{:?}",
        started.elapsed()
    );
    // An idle SIP connection is closed after idle_timeout_s.
    let mut idle = tokio::net::TcpStream::connect(live.addr("tcp-5060"))
        .await
        .unwrap();
    assert_eq!(transact(&mut idle, &options(1)).await, "SIP/2.0 200 OK");
    let n = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::io::AsyncReadExt::read(&mut idle, &mut buf),
    )
    .await
    .unwrap();
    assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
    let metrics = &live.running.metrics;
    until(
        "the slow handshake is counted and the idle connection gone",
        || {
            metrics.tls.failures().get("handshake_timeout") == Some(&1)
                && metrics.tcp.established.load(Ordering::Relaxed) == 0
        },
    )
    .await;
    live.stop().await;
}

#[tokio::test]
async fn bad_input_is_answered_or_closed_and_counted_never_a_panic() {
    let (_tmp, d) = deployment();
    let live = Live::start(&d).await;

    // Plain SIP on the TLS port: the connection is closed and counted.
    let mut plain = tokio::net::TcpStream::connect(live.addr("tls-5061"))
        .await
        .unwrap();
    plain.write_all(options(1).as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::io::AsyncReadExt::read_to_end(&mut plain, &mut buf),
    )
    .await
    .unwrap();

    // A malformed request on TCP gets 400 and the connection stays usable.
    let mut tcp = tokio::net::TcpStream::connect(live.addr("tcp-5060"))
        .await
        .unwrap();
    let garbage = "MESSAGE sip:bob@contoso.com SIP/2.0\r\nVia: nonsense\r\nCSeq: x\r\nContent-Length: 0\r\n\r\n";
    assert_eq!(
        transact(&mut tcp, garbage).await.split(' ').nth(1),
        Some("400")
    );
    assert_eq!(transact(&mut tcp, &options(2)).await, "SIP/2.0 200 OK");

    // An oversize message gets 513 and a close.
    let huge = request(
        "MESSAGE",
        "sip:bob@contoso.com",
        "a@contoso.com",
        "bob@contoso.com",
        3,
        "",
        &"x".repeat(70_000),
    );
    assert_eq!(
        transact(&mut tcp, &huge).await.split(' ').nth(1),
        Some("513")
    );

    let metrics = &live.running.metrics;
    until("plain SIP on the TLS port is counted as not_tls", || {
        metrics.tls.failures().get("not_tls") == Some(&1)
    })
    .await;
    assert_eq!(metrics.not_tls.load(Ordering::Relaxed), 1);
    live.stop().await;
}
