//! `lcs-sim doctor` through the binary, on deployments broken each way: renewed with each policy,
//! a revoked ACL, expired, expiring, the wrong name, a missing EKU, an untrusted chain, an unknown
//! serial; and its exit codes, remedies and bad input.

mod common;

use common::cli::{lcs, lcs_ok as ok};
use std::path::{Path, PathBuf};
use std::process::Command;

use common::bind_all_to;
use lcs_sim::clock::{Clock, SystemClock};
use lcs_sim::config::Config;
use lcs_sim::deployment::{Deployment, InitOptions};
use lcs_sim::pki::{LeafSpec, Serial, TestPki};
use serde_json::Value;
use time::{Duration, OffsetDateTime};

const IDS: [&str; 3] = ["tls-5061", "mtls-5062", "route-fabrikam.com"];

fn now() -> OffsetDateTime {
    SystemClock.now_utc()
}

/// Runs `doctor --format json` and returns its exit code and findings.
fn doctor(dir: &Path, extra: &[&str]) -> (i32, Vec<Value>) {
    let mut args = vec!["doctor", dir.to_str().unwrap(), "--format", "json"];
    args.extend_from_slice(extra);
    let out = lcs(&args);
    let code = out.status.code().expect("exited");
    let json: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "doctor printed no JSON ({e}); stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (code, json["findings"].as_array().unwrap().clone())
}

/// The (connection, code) pairs, in order.
fn codes(findings: &[Value]) -> Vec<(String, String)> {
    findings
        .iter()
        .map(|f| {
            (
                f["connection"].as_str().unwrap().to_string(),
                f["code"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// The same codes on every connection and route that uses the certificate.
fn on_each(ids: &[&str], per_connection: &[&str]) -> Vec<(String, String)> {
    ids.iter()
        .flat_map(|id| {
            per_connection
                .iter()
                .map(move |c| (id.to_string(), c.to_string()))
        })
        .collect()
}

fn init_at(tmp: &tempfile::TempDir, at: OffsetDateTime, validity_days: u32) -> Deployment {
    let opts = InitOptions {
        validity_days,
        ..InitOptions::default()
    };
    Deployment::init(tmp.path().join("demo"), &opts, at)
        .unwrap()
        .0
}

fn init(tmp: &tempfile::TempDir) -> Deployment {
    init_at(tmp, now(), 365)
}

fn dir(d: &Deployment) -> &str {
    d.root().to_str().unwrap()
}

fn thumbprint(d: &Deployment) -> String {
    let store = d.store().load().unwrap();
    store.list(false).next().unwrap().thumbprint().to_string()
}

fn edit_config(d: &Deployment, edit: impl FnOnce(&mut Config)) {
    let mut config = d.config().unwrap();
    edit(&mut config);
    config.save(&d.config_path()).unwrap();
}

#[test]
fn a_healthy_deployment_has_no_findings() {
    let tmp = tempfile::tempdir().unwrap();
    let d = init(&tmp);
    assert_eq!(doctor(d.root(), &[]), (0, vec![]));
    let text = ok(&["doctor", dir(&d)]);
    assert!(
        text.starts_with("No problems: tls-5061, mtls-5062, route-fabrikam.com checked"),
        "{text}"
    );
}

#[test]
fn kb836410_renewal_exits_1_with_key_unreadable_and_archived_reference_and_fix_clears_it() {
    let tmp = tempfile::tempdir().unwrap();
    let d = init(&tmp);
    let old = thumbprint(&d);
    ok(&["store", "renew", dir(&d), &old]);
    let new = thumbprint(&d);
    let (code, findings) = doctor(d.root(), &[]);
    assert_eq!(code, 1);
    assert_eq!(
        codes(&findings),
        on_each(
            &IDS,
            &[
                "archived_reference",
                "key_unreadable",
                "successor_key_unreadable"
            ]
        )
    );
    let archived = &findings[0];
    assert_eq!(archived["severity"], "error");
    assert_eq!(archived["certificate"]["thumbprint"], old.as_str());
    let message = archived["message"].as_str().unwrap();
    assert!(message.contains(&format!("by {new}")), "{message}");
    assert!(message.contains("same-key-reset-acl"), "{message}");
    assert_eq!(findings[2]["certificate"]["thumbprint"], new.as_str());
    let fix = format!("lcs-sim fix {}", dir(&d));
    assert!(
        findings.iter().all(|f| f["remedy"] == fix.as_str()),
        "{findings:?}"
    );

    ok(&["fix", dir(&d)]);
    assert_eq!(doctor(d.root(), &[]), (0, vec![]));
}

#[test]
fn each_renewal_policy_has_its_own_findings() {
    for (policy, expected) in [
        (
            "new-key-default-acl",
            &["archived_reference", "successor_key_unreadable"][..],
        ),
        ("new-key-keep-acl", &["archived_reference"][..]),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let d = init(&tmp);
        ok(&[
            "store",
            "renew",
            dir(&d),
            &thumbprint(&d),
            "--policy",
            policy,
        ]);
        let (code, findings) = doctor(d.root(), &[]);
        assert_eq!(
            (code, codes(&findings)),
            (1, on_each(&IDS, expected)),
            "{policy}"
        );
        ok(&["fix", dir(&d)]);
        assert_eq!(doctor(d.root(), &[]), (0, vec![]), "{policy}");
    }
}

#[test]
fn a_revoked_acl_is_key_unreadable_until_fixed() {
    let tmp = tempfile::tempdir().unwrap();
    let d = init(&tmp);
    ok(&["store", "revoke", dir(&d), &thumbprint(&d), "RTCService"]);
    let (code, findings) = doctor(d.root(), &[]);
    assert_eq!(
        (code, codes(&findings)),
        (1, on_each(&IDS, &["key_unreadable"]))
    );
    ok(&["fix", dir(&d)]);
    assert_eq!(doctor(d.root(), &[]), (0, vec![]));
}

#[test]
fn an_expired_certificate_is_an_error_whose_remedy_works() {
    let tmp = tempfile::tempdir().unwrap();
    let d = init_at(&tmp, now() - Duration::days(400), 365);
    let thumb = thumbprint(&d);
    let (code, findings) = doctor(d.root(), &[]);
    assert_eq!((code, codes(&findings)), (1, on_each(&IDS, &["expired"])));
    let remedy = findings[0]["remedy"].as_str().unwrap();
    let expected = format!(
        "lcs-sim store renew {0} {thumb} --policy new-key-keep-acl && lcs-sim fix {0}",
        dir(&d)
    );
    assert_eq!(remedy, expected);
    // The remedy, run as printed.
    ok(&[
        "store",
        "renew",
        dir(&d),
        &thumb,
        "--policy",
        "new-key-keep-acl",
    ]);
    ok(&["fix", dir(&d)]);
    assert_eq!(doctor(d.root(), &[]), (0, vec![]));
}

#[test]
fn a_certificate_from_the_future_is_not_yet_valid() {
    let tmp = tempfile::tempdir().unwrap();
    let d = init_at(&tmp, now() + Duration::days(2), 365);
    let (code, findings) = doctor(d.root(), &[]);
    assert_eq!(
        (code, codes(&findings)),
        (1, on_each(&IDS, &["not_yet_valid"]))
    );
}

#[test]
fn expiring_is_a_warning_that_strict_turns_into_a_failure() {
    let tmp = tempfile::tempdir().unwrap();
    let d = init_at(&tmp, now(), 10);
    let (code, findings) = doctor(d.root(), &[]);
    assert_eq!((code, codes(&findings)), (0, on_each(&IDS, &["expiring"])));
    assert!(findings.iter().all(|f| f["severity"] == "warning"));
    assert_eq!(doctor(d.root(), &["--strict"]).0, 1);
    assert_eq!(doctor(d.root(), &["--warn-days", "5"]), (0, vec![]));
    assert_eq!(
        doctor(d.root(), &["--warn-days", "5", "--strict"]),
        (0, vec![])
    );
}

#[test]
fn a_certificate_for_another_name_is_a_name_mismatch() {
    let tmp = tempfile::tempdir().unwrap();
    let d = init(&tmp);
    edit_config(&d, |c| c.service.server = "lcs02.contoso.com".into());
    let (code, findings) = doctor(d.root(), &[]);
    assert_eq!(
        (code, codes(&findings)),
        (1, on_each(&IDS, &["name_mismatch"]))
    );
    let message = findings[0]["message"].as_str().unwrap();
    assert!(
        message.contains("does not name lcs02.contoso.com"),
        "{message}"
    );
}

#[test]
fn a_certificate_without_client_auth_fails_mutual_tls_and_routes_only() {
    let tmp = tempfile::tempdir().unwrap();
    let d = init(&tmp);
    let original = thumbprint(&d);
    let ca = d.issuing_ca().unwrap();
    let spec = LeafSpec {
        client_auth: false,
        ..LeafSpec::server("lcs01.contoso.com", "Contoso")
    };
    bind_all_to(&d, &ca, &spec);
    let (code, findings) = doctor(d.root(), &[]);
    assert_eq!(
        (code, codes(&findings)),
        (
            1,
            on_each(&["mtls-5062", "route-fabrikam.com"], &["eku_missing"])
        )
    );
    let message = findings[0]["message"].as_str().unwrap();
    assert!(message.contains("clientAuth"), "{message}");
    // The remedy points the connection at the certificate in the store that would work.
    let remedy = findings[0]["remedy"].as_str().unwrap();
    assert_eq!(
        remedy,
        format!(
            "lcs-sim fix {} --connection mtls-5062 --to {original}",
            dir(&d)
        )
    );
}

#[test]
fn a_certificate_from_another_ca_is_untrusted() {
    let tmp = tempfile::tempdir().unwrap();
    let d = init(&tmp);
    let other = TestPki::generate("fabrikam.com", now() - Duration::days(2)).unwrap();
    bind_all_to(
        &d,
        &other.issuing,
        &LeafSpec::server("lcs01.contoso.com", "Contoso"),
    );
    let (code, findings) = doctor(d.root(), &[]);
    assert_eq!(
        (code, codes(&findings)),
        (1, on_each(&IDS, &["chain_untrusted"]))
    );
    let message = findings[0]["message"].as_str().unwrap();
    assert!(message.contains("CN=Fabrikam Issuing CA"), "{message}");
}

#[test]
fn an_unknown_serial_is_an_unknown_certificate() {
    let tmp = tempfile::tempdir().unwrap();
    let d = init(&tmp);
    let serial = Serial::derive(b"never issued");
    edit_config(&d, |c| {
        c.certificate_mut("tls-5061").unwrap().serial = serial.clone();
    });
    let (code, findings) = doctor(d.root(), &[]);
    assert_eq!(
        (code, codes(&findings)),
        (1, on_each(&["tls-5061"], &["unknown_certificate"]))
    );
    assert_eq!(findings[0]["certificate"]["thumbprint"], Value::Null);
    assert_eq!(findings[0]["certificate"]["serial"], serial.as_str());
}

#[test]
fn a_stale_serve_file_means_no_server_running() {
    let tmp = tempfile::tempdir().unwrap();
    let d = init(&tmp);
    // Nothing listens on port 1 of loopback.
    std::fs::write(
        d.root().join("serve.json"),
        r#"{"pid": 4000000, "admin": "127.0.0.1:1", "started_at": "2026-01-01T00:00:00Z"}"#,
    )
    .unwrap();
    let out = lcs(&["doctor", dir(&d)]);
    assert_eq!(out.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no server running"), "{stderr}");
    std::fs::write(d.root().join("serve.json"), "not json").unwrap();
    assert_eq!(doctor(d.root(), &[]), (0, vec![]));
}

#[test]
fn bad_input_exits_2_and_says_what_to_do() {
    let tmp = tempfile::tempdir().unwrap();
    let empty: PathBuf = tmp.path().join("nothing");
    std::fs::create_dir(&empty).unwrap();
    let out = lcs(&["doctor", empty.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("lcs-sim init"));

    let d = init(&tmp);
    assert_eq!(
        lcs(&["doctor", dir(&d), "--warn-days", "soon"])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(
        lcs(&["doctor", dir(&d), "--format", "xml"]).status.code(),
        Some(2)
    );

    std::fs::write(d.root().join("ca.pem"), "").unwrap();
    let out = lcs(&["doctor", dir(&d)]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("ca.pem"), "{stderr}");

    std::fs::write(d.config_path(), "[service\n").unwrap();
    let out = lcs(&["doctor", dir(&d)]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("lcs.toml"), "{stderr}");
}

/// `lcs-sim serve DIR` as a child process on free ports, killed when dropped.
struct Serve(std::process::Child);

impl Serve {
    fn start(d: &Deployment) -> Serve {
        edit_config(d, |c| {
            for conn in &mut c.connections {
                conn.port = 0;
            }
            c.admin.port = 0;
        });
        let child = Command::new(env!("CARGO_BIN_EXE_lcs-sim"))
            .args(["serve", dir(d), "--quiet", "--store-poll", "20ms"])
            // A safety net should the test process die without dropping us.
            .args(["--duration", "120"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let serve = Serve(child);
        let up = poll(|| {
            lcs_sim::server::admin::ServeFile::read(d.root())
                .ok()
                .flatten()
                .map(|_| ())
        });
        assert!(up.is_some(), "serve did not write serve.json");
        serve
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Polls `f` every 20 ms for up to 20 s.
fn poll<T>(mut f: impl FnMut() -> Option<T>) -> Option<T> {
    for _ in 0..1000 {
        if let Some(v) = f() {
            return Some(v);
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    None
}

#[test]
fn with_a_server_running_doctor_reads_what_it_holds() {
    let tmp = tempfile::tempdir().unwrap();
    let d = init(&tmp);
    let _serve = Serve::start(&d);
    assert_eq!(doctor(d.root(), &[]), (0, vec![]));
    assert!(ok(&["doctor", dir(&d)]).contains("; server pid "));

    // KB836410 while it runs: the remedies swap live.
    let old = thumbprint(&d);
    ok(&["store", "renew", dir(&d), &old]);
    let (code, findings) = doctor(d.root(), &[]);
    assert_eq!(
        (code, codes(&findings)),
        (
            1,
            on_each(
                &IDS,
                &[
                    "archived_reference",
                    "key_unreadable",
                    "successor_key_unreadable"
                ]
            )
        )
    );
    let live_fix = format!("lcs-sim fix {} --live", dir(&d));
    assert!(
        findings.iter().all(|f| f["remedy"] == live_fix.as_str()),
        "{findings:?}"
    );

    // Fixed on disk only: lcs.toml is right, the running server still presents the old serial.
    // The grant on the shared key reaches the server at its next store poll; until then it
    // rightly reports the old key as unreadable too.
    ok(&["fix", dir(&d)]);
    let expected = on_each(&IDS, &["running_differs"]);
    let (code, findings) = poll(|| {
        let (code, findings) = doctor(d.root(), &[]);
        (codes(&findings) == expected).then_some((code, findings))
    })
    .expect("doctor never saw only running_differs");
    assert_eq!(code, 0);
    assert_eq!(findings[0]["severity"], "warning");
    assert_eq!(findings[0]["certificate"]["thumbprint"], old.as_str());
    assert_eq!(doctor(d.root(), &["--strict"]).0, 1);

    ok(&["fix", dir(&d), "--live"]);
    assert_eq!(doctor(d.root(), &[]), (0, vec![]));
}

#[test]
fn a_running_server_whose_key_is_unreadable_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let d = init(&tmp);
    let _serve = Serve::start(&d);
    let old = thumbprint(&d);
    // A new key for the successor; lcs.toml fixed on disk; then the old key, which the running
    // server still uses, loses the service account.
    ok(&[
        "store",
        "renew",
        dir(&d),
        &old,
        "--policy",
        "new-key-keep-acl",
    ]);
    ok(&["fix", dir(&d)]);
    ok(&["store", "revoke", dir(&d), &old, "RTCService"]);
    let expected = on_each(&IDS, &["key_unreadable", "running_differs"]);
    // The server reloads the store by polling: wait until it reports the key as unreadable.
    let seen = poll(|| {
        let (code, findings) = doctor(d.root(), &[]);
        (codes(&findings) == expected).then_some((code, findings))
    });
    let (code, findings) = seen.expect("doctor never saw the running server's unreadable key");
    assert_eq!(code, 1);
    assert_eq!(findings[0]["certificate"]["thumbprint"], old.as_str());
    assert!(
        findings[0]["message"]
            .as_str()
            .unwrap()
            .contains("the running server cannot open"),
        "{findings:?}"
    );
}

#[test]
fn a_damaged_event_log_line_is_skipped_with_a_warning_not_a_failure() {
    let tmp = tempfile::tempdir().unwrap();
    let d = init(&tmp);
    let t = thumbprint(&d);
    let out = lcs(&["store", "renew", dir(&d), &t]);
    assert!(out.status.success());
    let log = d.root().join("events.jsonl");
    let text = std::fs::read_to_string(&log).unwrap();
    std::fs::write(&log, format!("{{not an event\n{text}")).unwrap();
    let out = lcs(&["doctor", dir(&d)]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "findings, not bad input: {stderr}"
    );
    assert!(
        stderr.contains("warning: skipped a damaged line of the event log")
            && stderr.contains("events.jsonl:1: not an event"),
        "{stderr}"
    );
    // The renewal event after the damaged line still informs the finding.
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("same-key-reset-acl"), "{stdout}");
}

#[test]
fn a_missing_key_file_is_a_finding_not_bad_input() {
    let tmp = tempfile::tempdir().unwrap();
    let d = init(&tmp);
    let keys = d.root().join("store").join("keys");
    for e in std::fs::read_dir(&keys).unwrap() {
        std::fs::remove_file(e.unwrap().path()).unwrap();
    }
    let (code, findings) = doctor(d.root(), &[]);
    assert_eq!(code, 1, "{findings:?}");
    assert_eq!(
        codes(&findings),
        on_each(
            &["tls-5061", "mtls-5062", "route-fabrikam.com"],
            &["key_missing"]
        )
    );
    let message = findings[0]["message"].as_str().unwrap();
    assert!(message.contains("is missing"), "{message}");
    assert!(!message.contains("PKCS#8"), "{message}");
}
