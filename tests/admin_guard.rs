//! The admin endpoint's request guard (issue 15 §3), through `curl` against the binary: a
//! cross-site form, a foreign `Origin`, a DNS-rebound `Host`, a missing or wrong token each get
//! their status and change nothing, while a rebind that is waiting (lcs.toml names a renewed
//! certificate) happens at once for the request `fix --live` would send. Reads stay open to
//! probes without a token.

mod common;

use std::path::Path;

use common::cli::*;

fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

/// The serial `GET /certs` says tls-5061 presents now.
fn bound_serial(admin: &str) -> String {
    let (code, body) = curl("GET", &format!("{admin}/certs"), None);
    assert_eq!(code, 200, "{body}");
    let certs = json(&body);
    let tls = certs["connections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "tls-5061")
        .unwrap()
        .clone();
    tls["bound"]["serial"].as_str().unwrap().to_owned()
}

/// Renews the certificate (keeping the ACL) and rebinds lcs.toml on disk, so the running server
/// would swap at the next `POST /rebind` it accepts.
fn a_rebind_is_waiting(dir: &Path) {
    let d = dir.to_str().unwrap();
    let list = json(&lcs_ok(&["store", "list", d, "--format", "json"]));
    let thumbprint = list[0]["thumbprint"].as_str().unwrap().to_owned();
    lcs_ok(&[
        "store",
        "renew",
        d,
        &thumbprint,
        "--policy",
        "new-key-keep-acl",
    ]);
    lcs_ok(&["fix", d]);
}

#[test]
fn browsers_and_tokenless_callers_cannot_rebind_and_fix_live_can() {
    if !peer_available("curl") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = init(&tmp);
    let serve = Serve::start(&dir);
    let port = serve.admin().port();
    let admin = format!("http://{}", serve.admin());
    let rebind = format!("{admin}/rebind");
    let before = bound_serial(&admin);
    a_rebind_is_waiting(&dir);

    let token = lcs_sim::server::admin::ServeFile::read(&dir)
        .unwrap()
        .unwrap()
        .token;
    let bearer = format!("Authorization: Bearer {}", token.as_str());
    let json_type = "Content-Type: application/json";
    let form = "Content-Type: application/x-www-form-urlencoded";
    let evil = "Origin: http://evil.example";
    let post = |headers: &[&str], body: Option<&str>| {
        let (code, body) = curl_headers("POST", &rebind, body, headers);
        (code, json(&body)["reason"].as_str().map(str::to_owned))
    };
    let reason = |r: &str| Some(r.to_owned());
    // The case: an empty cross-site form post.
    assert_eq!(post(&[form, evil], Some("")), (403, reason("origin")));
    // The same from a page on loopback, and with the token: a form is not JSON.
    assert_eq!(
        post(&[form, &bearer], Some("")),
        (415, reason("content_type"))
    );
    assert_eq!(post(&[&bearer], None), (415, reason("content_type")));
    // A foreign Origin is refused even with everything else right.
    assert_eq!(
        post(&[json_type, &bearer, evil], None),
        (403, reason("origin"))
    );
    // DNS rebinding: the page's own host name arrives in Host.
    let rebound = format!("Host: evil.example:{port}");
    assert_eq!(
        post(&[json_type, &bearer, &rebound], None),
        (421, reason("host"))
    );
    // No token, a wrong one.
    assert_eq!(post(&[json_type], None), (401, reason("token")));
    let wrong = "Authorization: Bearer 0123";
    assert_eq!(post(&[json_type, wrong], None), (401, reason("token")));
    let (code, certs) = curl_headers("GET", &format!("{admin}/certs"), None, &[&rebound]);
    assert_eq!(code, 421, "a rebound page cannot read /certs: {certs}");

    // Nothing changed: the same certificate, no swap counted, each refusal counted.
    assert_eq!(bound_serial(&admin), before);
    let (_, metrics) = curl("GET", &format!("{admin}/metrics"), None);
    assert_eq!(
        metric(&metrics, "lcs_credential_swaps_total"),
        Some(0.0),
        "{metrics}"
    );
    for (r, n) in [
        ("origin", 2.0),
        ("content_type", 2.0),
        ("host", 2.0),
        ("token", 2.0),
    ] {
        let series = format!("lcs_admin_requests_refused_total{{reason=\"{r}\"}}");
        assert_eq!(metric(&metrics, &series), Some(n), "{series}\n{metrics}");
    }

    // Probes read without a token, under either name of the endpoint.
    for path in ["/healthz", "/metrics", "/certs"] {
        assert_eq!(
            curl("GET", &format!("{admin}{path}"), None).0,
            200,
            "{path}"
        );
        let local = format!("Host: localhost:{port}");
        let (code, _) = curl_headers("GET", &format!("{admin}{path}"), None, &[&local]);
        assert_eq!(code, 200, "{path} as localhost");
    }

    // What fix --live sends is accepted, and the waiting rebind happens.
    let (code, body) = curl_admin(&dir, "POST", &rebind, None);
    assert_eq!(code, 200, "{body}");
    assert_ne!(bound_serial(&admin), before, "{body}");
}

#[test]
fn serve_json_holds_the_token_owner_only_and_fix_live_sends_it() {
    if !peer_available("curl") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = init(&tmp);
    let serve = Serve::start(&dir);
    let file = dir.join(lcs_sim::server::admin::SERVE_FILE);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "serve.json holds the token");
    }
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        json(&text)["token"].as_str().is_some_and(|t| t.len() == 64),
        "{text}"
    );
    let admin = format!("http://{}", serve.admin());
    let before = bound_serial(&admin);
    a_rebind_is_waiting(&dir);
    let out = lcs(&["fix", dir.to_str().unwrap(), "--live"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_ne!(bound_serial(&admin), before);
}
