//! Live operations through the binary and real clients: the admin endpoint through `curl`,
//! `lcs-sim fix --live` while `openssl s_client` holds a connection across it, auto-rebind both
//! ways. How `serve` starts and stops (a second one, `--require-all`, signals) is in
//! `serve_lifecycle.rs`.
//!
//! Like `interop.rs`, a missing peer (openssl, curl) skips with a note, except under `CI=true`.

mod common;

use std::net::TcpListener;
use std::path::Path;

use common::cli::*;
use lcs_sim::config::Config;
use lcs_sim::server::admin::ServeFile;

fn peers() -> bool {
    peer_available("openssl") && peer_available("curl")
}

fn url(serve: &Serve, path: &str) -> String {
    format!("http://{}{path}", serve.admin())
}

fn thumbprint(dir: &Path) -> String {
    let list = json(&lcs_ok(&[
        "store",
        "list",
        dir.to_str().unwrap(),
        "--format",
        "json",
    ]));
    list[0]["thumbprint"].as_str().unwrap().to_owned()
}

fn configured_serial(dir: &Path, id: &str) -> String {
    let config = Config::load(&dir.join("lcs.toml")).unwrap();
    let (_, r) = config.cert_refs().find(|(c, _)| *c == id).unwrap();
    r.serial.to_string()
}

/// The value of one sample line of `/metrics`, if present.
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

#[test]
fn done_when_healthz_503_after_the_kb_renewal_then_200_after_fix_live_no_restart_no_drop() {
    if !peers() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = init(&tmp);
    let ca = dir.join("ca.pem");
    let serve = Serve::start(&dir);
    assert_eq!(ServeFile::read(&dir).unwrap().unwrap().admin, serve.admin());
    let (code, body) = curl("GET", &url(&serve, "/healthz"), None);
    assert_eq!(
        (code, json(&body)["status"].as_str()),
        (200, Some("ok")),
        "{body}"
    );

    let tls = serve.addr("tls-5061");
    let old = presented_serial(tls, &ca).expect("a handshake before the renewal");
    let mut held = SClient::connect(tls, &ca, SERVER);
    held.send(&options(1)).unwrap();
    assert_eq!(held.status(1).as_deref(), Some("SIP/2.0 200 OK"));

    // KB836410: the renewal resets the key's ACL while the server runs.
    lcs_ok(&["store", "renew", dir.to_str().unwrap(), &thumbprint(&dir)]);
    let (code, body) = poll(PATIENCE, || {
        let (code, body) = curl("GET", &url(&serve, "/healthz"), None);
        (code == 503).then_some((code, body))
    })
    .expect("/healthz turns 503 after the renewal");
    let broken = json(&body)["broken"].clone();
    for id in ["tls-5061", "mtls-5062", "route-fabrikam.com"] {
        assert!(
            broken
                .as_array()
                .unwrap()
                .iter()
                .any(|b| b["connection"] == id && b["reason"] == "key_access_denied"),
            "{code} {body}"
        );
    }
    assert_eq!(
        presented_serial(tls, &ca),
        None,
        "a new handshake must fail"
    );
    let series =
        r#"lcs_tls_handshakes_total{listener="tls-5061",result="failed",reason="access_denied"}"#;
    let counted = poll(PATIENCE, || {
        let (_, m) = curl("GET", &url(&serve, "/metrics"), None);
        sample(&m, series).filter(|n| *n >= 1.0)
    });
    assert!(counted.is_some(), "{series} not counted");

    // The fix, live: no restart.
    let out = lcs(&["fix", dir.to_str().unwrap(), "--live"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for id in ["tls-5061", "mtls-5062", "route-fabrikam.com"] {
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with("live") && l.contains(id) && l.contains("rebound")),
            "{stdout}"
        );
    }
    let (code, body) = curl("GET", &url(&serve, "/healthz"), None);
    assert_eq!(code, 200, "{body}");
    let new = configured_serial(&dir, "tls-5061");
    assert_ne!(new, old);
    assert_eq!(presented_serial(tls, &ca).as_deref(), Some(new.as_str()));
    let (_, certs) = curl("GET", &url(&serve, "/certs"), None);
    let certs = json(&certs);
    let entry = certs["connections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "tls-5061")
        .unwrap()
        .clone();
    assert_eq!(entry["bound"]["serial"], new.as_str(), "{entry}");
    assert_eq!(
        (entry["key_opens"].as_bool(), entry["configured"].is_null()),
        (Some(true), true),
        "{entry}"
    );
    // The connection held across the renewal and the fix still works.
    held.send(&options(2)).unwrap();
    assert_eq!(held.status(2).as_deref(), Some("SIP/2.0 200 OK"));
    assert_eq!(events(&dir, 14370).len(), 1);

    let (status, stdout) = serve.terminate();
    assert!(status.success(), "{status:?} {stdout}");
    assert!(stdout.contains("stopped."), "{stdout}");
    assert!(!ServeFile::path(&dir).exists());
}

#[test]
fn post_rebind_to_an_unreadable_key_is_409_and_changes_nothing() {
    if !peers() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = init(&tmp);
    let serve = Serve::start(&dir);
    let before = configured_serial(&dir, "tls-5061");
    // Renew (the new key is unreadable) and point tls-5061 at it by hand, without the grant.
    lcs_ok(&["store", "renew", dir.to_str().unwrap(), &thumbprint(&dir)]);
    let renewed = thumbprint(&dir);
    let mut config = Config::load(&dir.join("lcs.toml")).unwrap();
    let list = json(&lcs_ok(&[
        "store",
        "show",
        dir.to_str().unwrap(),
        &renewed,
        "--format",
        "json",
    ]));
    let serial = list["serial"].as_str().unwrap().to_owned();
    config.certificate_mut("tls-5061").unwrap().serial = serial.clone().try_into().unwrap();
    config.save(&dir.join("lcs.toml")).unwrap();

    let (code, body) = curl_admin(
        &dir,
        "POST",
        &url(&serve, "/rebind"),
        Some(r#"{"connections": ["tls-5061"]}"#),
    );
    assert_eq!(code, 409, "{body}");
    let r = &json(&body)["results"][0];
    assert_eq!(
        (
            r["connection"].as_str(),
            r["status"].as_str(),
            r["reason"].as_str()
        ),
        (Some("tls-5061"), Some("refused"), Some("key_access_denied")),
        "{body}"
    );
    let (_, certs) = curl("GET", &url(&serve, "/certs"), None);
    let certs = json(&certs);
    let tls = certs["connections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "tls-5061")
        .unwrap()
        .clone();
    assert_eq!(tls["bound"]["serial"], before.as_str(), "{tls}");
    assert_eq!(tls["configured"]["serial"], serial.as_str(), "{tls}");
    assert_eq!(events(&dir, 14372).len(), 1);
    // A bad body is a 400, not a rebind.
    assert_eq!(
        curl_admin(
            &dir,
            "POST",
            &url(&serve, "/rebind"),
            Some("{\"connection\": 1}")
        )
        .0,
        400
    );
}

#[test]
fn post_rebind_rejects_bad_input_with_400_and_reports_every_connection_it_was_asked_for() {
    if !peers() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = init(&tmp);
    let d = dir.to_str().unwrap();
    let serve = Serve::start(&dir);
    let rebind = url(&serve, "/rebind");
    let post = |body: &str| curl_admin(&dir, "POST", &rebind, Some(body));
    let (code, body) = post(r#"{"connections": ["nope"]}"#);
    assert_eq!(code, 400, "{body}");
    assert!(
        body.contains("unknown connection `nope`")
            && body.contains("tls-5061, mtls-5062, route-fabrikam.com"),
        "{body}"
    );
    let (code, body) = post(r#"{"connections": ["tcp-5060"]}"#);
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("uses no certificate"), "{body}");
    let (code, body) = post(r#"{"connections": ["tls-5061", "tls-5061"]}"#);
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("named twice"), "{body}");
    let (code, body) = post(r#"{"connections": []}"#);
    assert_eq!(code, 400, "{body}");
    // A body that does not say it is JSON (a cross-site form post) is refused unread.
    let out = std::process::Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--data",
            r#"{"connections": ["tls-5061"]}"#,
        ])
        .arg(&rebind)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "415");

    // A renewal whose new key the service cannot read, named for tls-5061 only: the request
    // is refused as a whole, and mtls-5062 (valid, unchanged) is reported as held.
    let old = thumbprint(&dir);
    lcs_ok(&["store", "renew", d, &old, "--policy", "new-key-keep-acl"]);
    let renewed = thumbprint(&dir);
    lcs_ok(&["store", "revoke", d, &renewed, "RTCService"]);
    let serial = json(&lcs_ok(&["store", "show", d, &renewed, "--format", "json"]))["serial"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut config = Config::load(&dir.join("lcs.toml")).unwrap();
    config.certificate_mut("tls-5061").unwrap().serial = serial.try_into().unwrap();
    config.save(&dir.join("lcs.toml")).unwrap();
    let (code, body) = post(r#"{"connections": ["tls-5061", "mtls-5062"]}"#);
    assert_eq!(code, 409, "{body}");
    let results = json(&body)["results"].clone();
    let status = |id: &str| {
        let r = results
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["connection"] == id);
        r.map(|r| {
            (
                r["status"].as_str().unwrap().to_owned(),
                r["reason"].as_str().map(str::to_owned),
            )
        })
    };
    assert_eq!(
        status("tls-5061"),
        Some(("refused".into(), Some("key_access_denied".into()))),
        "{body}"
    );
    assert_eq!(status("mtls-5062"), Some(("held".into(), None)), "{body}");

    // The bound certificate's key no longer opens: not "unchanged" while /healthz is 503.
    lcs_ok(&["store", "revoke", d, &old, "RTCService"]);
    poll(PATIENCE, || {
        (curl("GET", &url(&serve, "/healthz"), None).0 == 503).then_some(())
    })
    .expect("healthz 503");
    let (code, body) = post(r#"{"connections": ["mtls-5062"]}"#);
    assert_eq!(code, 409, "{body}");
    assert!(
        body.contains("key_access_denied") && !body.contains("unchanged"),
        "{body}"
    );
    let (code, body) = curl_admin(&dir, "POST", &rebind, None);
    assert_eq!(code, 409, "{body}");
    let (_, metrics) = curl("GET", &url(&serve, "/metrics"), None);
    assert_eq!(
        sample(&metrics, "lcs_rebind_refusals_total"),
        Some(3.0),
        "{metrics}"
    );
    let refusals = events(&dir, 14372);
    assert_eq!(refusals.len(), 3);
    assert!(
        serve
            .banner()
            .contains("event 14372 (Warning): A live rebind was refused"),
        "serve says so on its console:\n{}",
        serve.banner()
    );
    // One cause (the old key), named once with both connections that share it.
    let message = refusals[2]["message"].as_str().unwrap();
    assert!(
        message.contains("mtls-5062, route-fabrikam.com: key_access_denied (")
            && message.contains("tls-5061: key_access_denied (")
            && message.matches("key_access_denied").count() == 2,
        "{message}"
    );
}

#[test]
fn fix_live_without_a_server_exits_2_with_a_hint_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = init(&tmp);
    lcs_ok(&["store", "renew", dir.to_str().unwrap(), &thumbprint(&dir)]);
    let before = std::fs::read(dir.join("lcs.toml")).unwrap();
    let out = lcs(&["fix", dir.to_str().unwrap(), "--live"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("no `lcs-sim serve` runs") && stderr.contains("lcs-sim fix"),
        "{stderr}"
    );
    assert_eq!(std::fs::read(dir.join("lcs.toml")).unwrap(), before);
}

#[test]
fn fix_live_and_doctor_report_a_connection_that_did_not_start_instead_of_claiming_success() {
    if !peers() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = init(&tmp);
    let d = dir.to_str().unwrap();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut config = Config::load(&dir.join("lcs.toml")).unwrap();
    config.connections[1].port = taken.local_addr().unwrap().port();
    config.save(&dir.join("lcs.toml")).unwrap();
    let serve = Serve::start(&dir);
    assert!(
        serve.banner().contains("WARNING: running with"),
        "{}",
        serve.banner()
    );
    let (code, body) = curl("GET", &url(&serve, "/healthz"), None);
    assert_eq!(code, 503, "{body}");
    assert!(
        body.contains("mtls-5062") && body.contains("address_in_use"),
        "{body}"
    );
    let (_, certs) = curl("GET", &url(&serve, "/certs"), None);
    assert!(
        certs.contains("\"start_error\":\"address_in_use\""),
        "{certs}"
    );

    // Nothing to swap: the connection that did not start is reported, not skipped.
    let (code, body) = curl_admin(&dir, "POST", &url(&serve, "/rebind"), None);
    assert_eq!(code, 200, "{body}");
    let results = json(&body)["results"].clone();
    let mtls = results
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["connection"] == "mtls-5062")
        .unwrap_or_else(|| panic!("{body}"));
    assert_eq!(mtls["status"], "not_started", "{body}");
    assert_eq!(mtls["reason"], "address_in_use", "{body}");

    lcs_ok(&[
        "store",
        "renew",
        d,
        &thumbprint(&dir),
        "--policy",
        "new-key-keep-acl",
    ]);
    for scope in [&["--connection", "mtls-5062"][..], &[][..]] {
        let out = lcs(&[&["fix", d, "--live"][..], scope].concat());
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.contains("mtls-5062")
                && stdout.contains("not started (address_in_use): restart serve (lcs-sim serve"),
            "{stdout}"
        );
        assert!(!stdout.contains("Fixed live"), "{stdout}");
    }
    let out = lcs(&["doctor", d]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("not_started") && stdout.contains("mtls-5062"),
        "{stdout}"
    );
    assert!(!stdout.contains("No problems"), "{stdout}");
}

#[test]
fn metrics_are_served_as_openmetrics_text() {
    if !peers() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = init(&tmp);
    let serve = Serve::start(&dir);
    let out = std::process::Command::new("curl")
        .args(["-s", "-S", "-o", "/dev/null", "-w", "%{content_type}"])
        .arg(url(&serve, "/metrics"))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    let (_, body) = curl("GET", &url(&serve, "/metrics"), None);
    assert!(body.contains("# EOF"), "the body is OpenMetrics: {body}");
    // The route is ready (up) with no connection open: the status line says "open", not "up".
    assert_eq!(
        sample(&body, "lcs_route_up{route=\"route-fabrikam.com\"}"),
        Some(1.0),
        "{body}"
    );
    let (_, certs) = curl("GET", &url(&serve, "/certs"), None);
    let certs = json(&certs);
    let by_id = |id: &str| {
        certs["connections"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == id)
            .unwrap()
            .clone()
    };
    assert_eq!(by_id("route-fabrikam.com")["state"], "ready");
    assert!(
        by_id("tcp-5060")["key_opens"].is_null(),
        "a TCP listener has no key"
    );
    assert_eq!(by_id("tls-5061")["key_opens"], true);
    let (_, stdout) = serve.terminate();
    assert!(stdout.contains("routes 0 open (0 failed)"), "{stdout}");
}

#[test]
fn fix_changes_only_the_references_in_lcs_toml_and_keeps_comments() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = init(&tmp);
    let d = dir.to_str().unwrap();
    let path = dir.join("lcs.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let old = configured_serial(&dir, "tls-5061");
    let commented = format!(
        "# operator's note\n{}",
        text.replace("[tls]\n", "[tls]  # hardened\n")
    );
    std::fs::write(&path, &commented).unwrap();
    lcs_ok(&["store", "renew", d, &thumbprint(&dir)]);
    lcs_ok(&["fix", d]);
    let new = configured_serial(&dir, "tls-5061");
    assert_ne!(new, old);
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        commented.replace(&old, &new),
        "only the serials changed"
    );
}

#[test]
fn fix_after_a_revoked_acl_alone_does_not_speak_of_a_renewal() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = init(&tmp);
    let d = dir.to_str().unwrap();
    lcs_ok(&["store", "revoke", d, &thumbprint(&dir), "RTCService"]);
    let out = lcs_ok(&["fix", d]);
    assert!(!out.contains("renewed certificate"), "{out}");
    assert!(out.contains("RTCService can read the key again"), "{out}");
}

#[test]
fn fix_live_reports_what_plain_fix_reports_validity_and_connections_not_asked_for() {
    let tmp = tempfile::tempdir().unwrap();
    // A certificate that expired: a swap cannot fix it, and fix --live says so as fix does.
    let old = tmp.path().join("old");
    let at = {
        use lcs_sim::clock::Clock;
        lcs_sim::clock::SystemClock.now_utc() - time::Duration::days(400)
    };
    lcs_sim::deployment::Deployment::init(&old, &Default::default(), at).unwrap();
    let path = old.join("lcs.toml");
    let mut config = Config::load(&path).unwrap();
    for c in &mut config.connections {
        c.port = 0;
    }
    config.admin.port = 0;
    config.save(&path).unwrap();
    let serve = Serve::start(&old);
    let out = lcs(&["fix", old.to_str().unwrap(), "--live"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("expired       tls-5061") && stdout.contains("a rebind cannot help"),
        "{stdout}"
    );
    assert!(!stdout.contains("Fixed live"), "{stdout}");
    serve.terminate();

    let dir = init(&tmp);
    let d = dir.to_str().unwrap();
    let serve = Serve::start(&dir);
    lcs_ok(&[
        "store",
        "renew",
        d,
        &thumbprint(&dir),
        "--policy",
        "new-key-keep-acl",
    ]);
    let out = lcs_ok(&["fix", d, "--live", "--connection", "tls-5061"]);
    assert!(
        out.contains("Not rebound (not asked for): mtls-5062, route-fabrikam.com"),
        "{out}"
    );
    serve.terminate();
}

#[test]
fn metrics_count_requests_by_method_responses_by_method_and_status_and_route_failures_by_route() {
    if !peers() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = init(&tmp);
    // The federation peer's port: free, so the route's dial is refused.
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let path = dir.join("lcs.toml");
    let mut config = Config::load(&path).unwrap();
    config.routes[0].next_hop = closed.to_string().parse().unwrap();
    config.save(&path).unwrap();
    let serve = Serve::start(&dir);
    let ca = dir.join("ca.pem");
    let mut client = SClient::connect(serve.addr("tls-5061"), &ca, "lcs01.contoso.com");
    client.send(&options(1)).unwrap();
    assert_eq!(client.status(1).as_deref(), Some("SIP/2.0 200 OK"));
    let message = common::request(
        "MESSAGE",
        "sip:bob@fabrikam.com",
        "alice@contoso.com",
        "bob@fabrikam.com",
        2,
        "Content-Type: text/plain\r\n",
        "hi",
    );
    client.send(&message).unwrap();
    let failed = poll(PATIENCE, || {
        let (_, m) = curl("GET", &url(&serve, "/metrics"), None);
        m.lines()
            .find(|l| l.starts_with("lcs_route_failures_total{route=\"route-fabrikam.com\""))
            .map(str::to_owned)
    })
    .expect("a route failure labelled with its route");
    assert!(failed.contains("reason="), "{failed}");
    let (_, m) = curl("GET", &url(&serve, "/metrics"), None);
    assert_eq!(
        sample(
            &m,
            "lcs_sip_responses_total{method=\"OPTIONS\",status=\"200\"}"
        ),
        Some(1.0),
        "{m}"
    );
    for method in ["OPTIONS", "MESSAGE"] {
        assert_eq!(
            sample(
                &m,
                &format!("lcs_sip_requests_total{{method=\"{method}\"}}")
            ),
            Some(1.0),
            "{m}"
        );
    }
    drop(client);
    serve.terminate();
}

#[test]
fn auto_rebind_presents_a_new_key_renewal_and_refuses_an_unreadable_one_until_fix_live() {
    if !peers() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = init(&tmp);
    let ca = dir.join("ca.pem");
    let note = "# operator's note: renewed by GPO, keep\n";
    let text = std::fs::read_to_string(dir.join("lcs.toml")).unwrap();
    std::fs::write(dir.join("lcs.toml"), format!("{note}{text}")).unwrap();
    let serve = Serve::start_with(&dir, &["--auto-rebind"]);
    let tls = serve.addr("tls-5061");
    let old = presented_serial(tls, &ca).unwrap();

    // new-key-keep-acl: swapped in by itself, recorded in lcs.toml.
    lcs_ok(&[
        "store",
        "renew",
        dir.to_str().unwrap(),
        &thumbprint(&dir),
        "--policy",
        "new-key-keep-acl",
    ]);
    let renewed = poll(PATIENCE, || {
        let s = configured_serial(&dir, "tls-5061");
        (s != old).then_some(s)
    })
    .expect("auto-rebind records the renewal in lcs.toml");
    assert_eq!(configured_serial(&dir, "route-fabrikam.com"), renewed);
    let text = std::fs::read_to_string(dir.join("lcs.toml")).unwrap();
    assert!(
        text.starts_with(note),
        "auto-rebind kept the comment:\n{text}"
    );
    assert_eq!(
        presented_serial(tls, &ca).as_deref(),
        Some(renewed.as_str())
    );

    // same-key-reset-acl: the successor's key is unreadable, so it is kept out and said so.
    lcs_ok(&["store", "renew", dir.to_str().unwrap(), &thumbprint(&dir)]);
    let refused = poll(PATIENCE, || {
        let e = events(&dir, 14373);
        (!e.is_empty()).then_some(e)
    })
    .expect("a 14373 warning");
    let message = refused[0]["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("`lcs-sim fix {} --live`", dir.display())),
        "{message}"
    );
    assert_eq!(
        refused[0]["details"]["remedy"].as_str(),
        Some(format!("lcs-sim fix {} --live", dir.display()).as_str()),
        "{}",
        refused[0]
    );
    assert_eq!(
        configured_serial(&dir, "tls-5061"),
        renewed,
        "nothing recorded"
    );
    let (_, m) = curl("GET", &url(&serve, "/metrics"), None);
    assert!(
        sample(&m, "lcs_auto_rebind_refusals_total").is_some_and(|n| n >= 1.0),
        "{m}"
    );
    assert_eq!(curl("GET", &url(&serve, "/healthz"), None).0, 503);

    // The remedy it names ends it.
    let out = lcs(&["fix", dir.to_str().unwrap(), "--live"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(curl("GET", &url(&serve, "/healthz"), None).0, 200);
    let newest = configured_serial(&dir, "tls-5061");
    assert_ne!(newest, renewed);
    assert_eq!(presented_serial(tls, &ca).as_deref(), Some(newest.as_str()));
    drop(serve);
}
