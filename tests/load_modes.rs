//! `lcs-sim load` against an in-process server (ephemeral ports): each mode, failures counted by
//! reason, a fault timeline with an outage and a recovery, and the exact merge of shards.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use lcs_sim::clock::monotonic_now;
use lcs_sim::deployment::Deployment;
use lcs_sim::load::report::decode_histogram;
use lcs_sim::load::{
    self, Fault, Load, LoadOptions, Mode, Recorder, Report, Shard, Target, TargetOptions,
    conn::Timeouts,
};

fn options(mode: Mode, load: Load, secs: f64) -> LoadOptions {
    LoadOptions {
        mode,
        duration: Duration::from_secs_f64(secs),
        load,
        no_request: false,
        users: 0,
        federated_ratio: 0.0,
        federated_domain: "fabrikam.com".into(),
        expires: 600,
        shard: Shard::default(),
        timeouts: Timeouts {
            connect: Duration::from_secs(5),
            response: Duration::from_secs(5),
        },
        faults: Vec::new(),
        server_pid: None,
        grace: Duration::from_millis(500),
        max_in_flight: 1024,
        run_id: "test-run".into(),
    }
}

/// Every operation is accounted for: the report's own check, and the sum spelled out.
fn accounted(r: &Report) {
    r.check().unwrap_or_else(|e| panic!("{e}: {r:?}"));
    assert_eq!(
        r.total(),
        r.ok + r.failed + r.unfinished + r.not_started,
        "{r:?}"
    );
}

/// The deployment's TLS connection, at the address the in-process server bound.
async fn target(d: &Deployment, live: &Live) -> Target {
    Target::resolve(&TargetOptions {
        target: Some(live.addr("tls-5061").to_string()),
        deployment: Some(d.root().to_path_buf()),
        ..TargetOptions::default()
    })
    .await
    .unwrap()
}

/// The admin endpoint and `serve.json`, as `lcs-sim serve` starts them (`fix-live` finds the
/// server through them).
async fn start_admin(d: &Deployment, live: &Live) -> tokio::task::JoinHandle<std::io::Result<()>> {
    use lcs_sim::server::admin;
    let listener = admin::bind(0).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let token = admin::Token::generate();
    let state = admin::AdminState {
        handle: live.running.handle(),
        deployment: d.clone(),
        token: token.clone(),
    };
    let task = tokio::spawn(admin::serve(listener, state));
    admin::ServeFile {
        pid: std::process::id(),
        admin: addr,
        started_at: lcs_sim::clock::Clock::now_utc(&lcs_sim::clock::SystemClock),
        deployment: d.root().canonicalize().unwrap(),
        token,
    }
    .write(d.root())
    .unwrap();
    task
}

async fn run(target: Target, o: LoadOptions) -> Report {
    let r = load::run(target, o, Arc::new(Recorder::new(monotonic_now()))).await;
    accounted(&r);
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_closed_and_open_loop() {
    let (_tmp, d) = deployment();
    let live = Live::start(&d).await;
    let closed = run(
        target(&d, &live).await,
        options(Mode::Handshake, Load::Closed(2), 1.0),
    )
    .await;
    assert!(closed.ok > 0 && closed.failed == 0, "{closed:?}");
    assert_eq!(closed.mode, "handshake");
    assert_eq!(
        closed.per_second.iter().map(|s| s.ok).sum::<u64>(),
        closed.ok
    );
    assert!(closed.latency_us.p50 > 0 && closed.latency_us.max >= closed.latency_us.p99);
    // Each success was a full handshake the server counted.
    let m = live.running.metrics.snapshot();
    assert!(m.tls.handshakes_ok >= closed.ok, "{m:?}");

    let open = run(
        target(&d, &live).await,
        options(Mode::Handshake, Load::Open(40.0), 1.0),
    )
    .await;
    assert!(open.failed == 0 && open.ok > 0 && open.ok <= 40, "{open:?}");

    // TLS 1.2 only, and bare handshakes.
    let v12 = Target::resolve(&TargetOptions {
        target: Some(live.addr("tls-5061").to_string()),
        deployment: Some(d.root().to_path_buf()),
        tls: lcs_sim::load::TlsVersions::V12,
        ..TargetOptions::default()
    })
    .await
    .unwrap();
    let mut o = options(Mode::Handshake, Load::Closed(1), 0.5);
    o.no_request = true;
    let r = run(v12, o).await;
    assert!(r.ok > 0 && r.failed == 0, "{r:?}");
    live.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_holds_connections_and_measures_the_server() {
    let (_tmp, d) = deployment();
    let live = Live::start(&d).await;
    let mut o = options(Mode::Register, Load::Closed(1), 1.5);
    o.users = 6;
    o.server_pid = Some(std::process::id()); // the server runs in this process
    let r = run(target(&d, &live).await, o).await;
    assert_eq!((r.ok, r.failed), (6, 0), "{r:?}");
    let server = r.server.expect("memory measured");
    assert_eq!(server.connections, 6);
    assert!(server.rss_after_kib > 0);
    live.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_between_registered_users() {
    let (_tmp, d) = deployment();
    let live = Live::start(&d).await;
    let mut o = options(Mode::Message, Load::Open(30.0), 2.0);
    o.users = 3;
    let r = run(target(&d, &live).await, o).await;
    assert!(r.ok > 10 && r.failed == 0, "{r:?}");
    assert_eq!(r.mode, "message");
    live.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_target_and_wrong_ca_are_counted_by_reason() {
    let (_tmp, d) = deployment();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let t = Target::resolve(&TargetOptions {
        target: Some(addr.to_string()),
        deployment: Some(d.root().to_path_buf()),
        ..TargetOptions::default()
    })
    .await
    .unwrap();
    let r = run(t, options(Mode::Handshake, Load::Closed(1), 0.3)).await;
    assert!(r.ok == 0 && r.failed > 0);
    assert_eq!(
        r.failures.keys().collect::<Vec<_>>(),
        ["connection_refused"]
    );

    // A listener that accepts and never answers: the handshake times out.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    let t = Target::resolve(&TargetOptions {
        target: Some(silent_addr.to_string()),
        deployment: Some(d.root().to_path_buf()),
        ..TargetOptions::default()
    })
    .await
    .unwrap();
    let mut o = options(Mode::Handshake, Load::Closed(1), 1.0);
    o.timeouts.connect = Duration::from_millis(200);
    let r = run(t, o).await;
    assert_eq!(r.failures.keys().collect::<Vec<_>>(), ["handshake_timeout"]);
    hold.abort();

    // Another organisation's CA (a different name: with the same name webpki finds the issuer
    // and fails on its signature instead, `certificate_invalid_bad_signature`).
    let tmp2 = tempfile::tempdir().unwrap();
    let (other, _) = Deployment::init(
        tmp2.path().join("other"),
        &lcs_sim::deployment::InitOptions {
            domain: "northwind.example".into(),
            ..Default::default()
        },
        lcs_sim::clock::Clock::now_utc(&lcs_sim::clock::SystemClock),
    )
    .unwrap();
    let live = Live::start(&d).await;
    let t = Target::resolve(&TargetOptions {
        target: Some(live.addr("tls-5061").to_string()),
        ca: Some(other.ca_path()),
        server_name: Some("lcs01.contoso.com".into()),
        ..TargetOptions::default()
    })
    .await
    .unwrap();
    let r = run(t, options(Mode::Handshake, Load::Closed(1), 0.3)).await;
    assert!(r.ok == 0 && r.failed > 0);
    assert_eq!(
        r.failures.keys().collect::<Vec<_>>(),
        ["certificate_invalid_unknown_issuer"]
    );
    live.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewal_under_load_is_an_outage_and_the_fix_ends_it() {
    let (_tmp, d) = deployment();
    let live = Live::start(&d).await;
    let admin = start_admin(&d, &live).await;
    let mut o = options(Mode::Handshake, Load::Closed(2), 5.0);
    o.faults = vec![
        "1s=renew".parse::<Fault>().unwrap(),
        "2s=fix-live".parse::<Fault>().unwrap(),
    ];
    let r = run(target(&d, &live).await, o).await;
    assert!(r.faults.iter().all(|f| f.ok), "{:?}", r.faults);
    assert!(r.failures["tls_alert_access_denied"] > 0, "{r:?}");
    let outage = r.outage.expect("an outage");
    let first = outage.first_failure_s.unwrap();
    assert!((1.0..2.5).contains(&first), "{outage:?}");
    assert!(outage.last_failure_s.unwrap() >= first);
    assert_eq!(outage.failures_during, r.failed);
    assert!(outage.fix_to_clean_s.is_some(), "{outage:?}");
    assert!(outage.clean_seconds_at_end >= 1, "{outage:?}");
    assert!(
        r.faults[1].result.contains("live rebind accepted"),
        "{:?}",
        r.faults
    );
    admin.abort();
    live.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fix_live_without_a_running_serve_is_a_failed_fault_not_a_crash() {
    let (_tmp, d) = deployment();
    let live = Live::start(&d).await; // no admin endpoint, no serve.json
    let mut o = options(Mode::Handshake, Load::Closed(1), 1.0);
    o.faults = vec!["200ms=fix-live".parse::<Fault>().unwrap()];
    let r = run(target(&d, &live).await, o).await;
    assert!(
        !r.faults[0].ok && r.faults[0].applied_s.is_none(),
        "{:?}",
        r.faults
    );
    assert!(
        r.faults[0].result.contains("no `lcs-sim serve` runs"),
        "{:?}",
        r.faults
    );
    assert!(r.ok > 0);
    live.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_shards_merge_exactly() {
    let (_tmp, d) = deployment();
    let live = Live::start(&d).await;
    let shard = |index| {
        let mut o = options(Mode::Handshake, Load::Open(60.0), 1.0);
        o.shard = Shard { index, count: 2 };
        o
    };
    let (a, b) = tokio::join!(
        async { run(target(&d, &live).await, shard(0)).await },
        async { run(target(&d, &live).await, shard(1)).await }
    );
    // Each shard takes half the rate.
    assert!(
        a.ok <= 30 && b.ok <= 30 && a.ok > 0 && b.ok > 0,
        "{a:?} {b:?}"
    );
    let m = load::merge(&[a.clone(), b.clone()]).unwrap();
    assert_eq!((m.ok, m.failed), (a.ok + b.ok, a.failed + b.failed));
    let mut sum = decode_histogram(&a.histogram).unwrap();
    sum.add(decode_histogram(&b.histogram).unwrap()).unwrap();
    let merged = decode_histogram(&m.histogram).unwrap();
    assert_eq!(merged, sum);
    assert_eq!(merged.len(), m.ok);
    assert_eq!(m.latency_us.p99, sum.value_at_quantile(0.99));
    assert_eq!(m.latency_us.max, a.latency_us.max.max(b.latency_us.max));
    for row in &m.per_second {
        let part = |r: &Report| {
            r.per_second
                .iter()
                .find(|s| s.t == row.t)
                .map_or(0, |s| s.ok)
        };
        assert_eq!(row.ok, part(&a) + part(&b));
    }
    live.stop().await;
}

/// Mutual TLS: with a client certificate from the deployment's issuing CA (a federation peer's)
/// every handshake on the mutual-TLS listener succeeds and the server counts it; without one,
/// each attempt is a failure under its typed reason, never a crash.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_load_with_and_without_a_client_certificate() {
    use lcs_sim::clock::{Clock, SystemClock};
    use lcs_sim::pki::{KeyAlgorithm, LeafSpec, Serial, issue_leaf, to_pem};
    let (tmp, d) = deployment();
    let ca = d.issuing_ca().unwrap();
    let key = KeyAlgorithm::EcdsaP256.generate().unwrap();
    let spec = LeafSpec {
        common_name: "sip.fabrikam.com".into(),
        organisation: "Fabrikam".into(),
        dns_names: vec!["sip.fabrikam.com".into()],
        ip_addresses: Vec::new(),
        server_auth: false,
        client_auth: true,
    };
    let now = SystemClock.now_utc();
    let hour = time::Duration::hours(1);
    let cert = issue_leaf(&ca, &spec, &key, &Serial::random(), now - hour, now + hour).unwrap();
    let (cert_path, key_path) = (tmp.path().join("peer.pem"), tmp.path().join("peer.key"));
    std::fs::write(&cert_path, to_pem("CERTIFICATE", &cert)).unwrap();
    std::fs::write(&key_path, to_pem("PRIVATE KEY", key.secret_pkcs8_der())).unwrap();

    let live = Live::start(&d).await;
    let mtls = |client: Option<(&std::path::Path, &std::path::Path)>| TargetOptions {
        target: Some(live.addr("mtls-5062").to_string()),
        deployment: Some(d.root().to_path_buf()),
        client_cert: client.map(|(c, _)| c.to_path_buf()),
        client_key: client.map(|(_, k)| k.to_path_buf()),
        ..TargetOptions::default()
    };
    let with = Target::resolve(&mtls(Some((&cert_path, &key_path))))
        .await
        .unwrap();
    let r = run(with, options(Mode::Handshake, Load::Closed(2), 1.0)).await;
    assert!(r.ok > 0 && r.failed == 0, "{r:?}");
    let m = live.running.metrics.snapshot();
    assert!(m.mtls.handshakes_ok >= r.ok, "{m:?}");

    let without = Target::resolve(&mtls(None)).await.unwrap();
    let r = run(without, options(Mode::Handshake, Load::Closed(1), 0.3)).await;
    assert!(r.ok == 0 && r.failed > 0, "{r:?}");
    assert_eq!(
        r.failures.keys().collect::<Vec<_>>(),
        ["tls_alert_certificate_required"],
        "{r:?}"
    );
    live.stop().await;
}

/// A plain-TCP port that never answers a ClientHello: every handshake started is still in flight
/// when the run ends, and is counted unfinished (handshaking), not dropped; the run ends at its
/// duration plus the grace period, not at the connect timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshakes_to_a_silent_port_are_unfinished_handshaking() {
    let (_tmp, d) = deployment();
    // Never accepted: the kernel completes the TCP handshake (backlog) and nothing answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let target = Target::resolve(&TargetOptions {
        target: Some(silent.local_addr().unwrap().to_string()),
        deployment: Some(d.root().to_path_buf()),
        ..TargetOptions::default()
    })
    .await
    .unwrap();
    let mut o = options(Mode::Handshake, Load::Open(20.0), 1.0);
    o.grace = Duration::from_millis(300);
    let began = monotonic_now();
    let r = run(target, o).await;
    let took = monotonic_now() - began;
    assert_eq!(r.scheduled, Some(20), "{r:?}");
    assert_eq!((r.ok, r.failed, r.not_started), (0, 0, 0), "{r:?}");
    assert_eq!(r.unfinished_by_phase.handshaking, 20, "{r:?}");
    assert_eq!(
        r.per_second.iter().map(|s| s.unfinished).sum::<u64>(),
        20,
        "{r:?}"
    );
    assert_eq!(r.failure_ratio(), 1.0);
    // Well under the 5 s connect timeout the handshakes would otherwise wait for.
    assert!(took < Duration::from_secs(4), "{took:?}");
}

/// A rate the generator cannot keep (at most 4 handshakes in flight against 20,000 a second):
/// what it never reached is `not_started`, second by second, and the books still balance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_beyond_the_generator_is_not_started() {
    let (_tmp, d) = deployment();
    let live = Live::start(&d).await;
    let mut o = options(Mode::Handshake, Load::Open(20000.0), 1.0);
    o.max_in_flight = 4;
    let r = run(target(&d, &live).await, o).await;
    assert_eq!(r.scheduled, Some(20000), "{r:?}");
    assert!(r.ok > 0, "{r:?}");
    assert!(r.not_started > 10000, "{r:?}");
    let row = &r.per_second[0];
    assert_eq!(row.started + row.not_started, 20000, "{row:?}");
    live.stop().await;
}

/// MESSAGEs to the federated domain with no peer wait in the server's queue: at the end they
/// are unfinished, awaiting their response, exactly as many as were sent there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn federated_messages_without_a_peer_are_unfinished_awaiting_response() {
    let (_tmp, d) = deployment();
    let live = Live::start(&d).await;
    let mut o = options(Mode::Message, Load::Open(20.0), 1.5);
    o.users = 3;
    o.federated_ratio = 0.5;
    let r = run(target(&d, &live).await, o).await;
    let sent = r.total() - r.not_started;
    let federated = (0..sent)
        .filter(|&i| load::users::pair(i, 3, 0.5).1.is_none())
        .count() as u64;
    assert!(federated > 0 && r.ok > 0, "{r:?}");
    assert_eq!(r.unfinished_by_phase.awaiting_response, federated, "{r:?}");
    assert_eq!(r.ok + r.failed, sent - federated, "{r:?}");
    live.stop().await;
}
