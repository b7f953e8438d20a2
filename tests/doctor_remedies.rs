//! Doctor's remedies are commands that fix what it found (issue 18 §6): each broken deployment
//! below is diagnosed, every remedy is run as printed, and doctor is run again. Also
//! `fix --connection ID --to THUMBPRINT` itself: what it refuses (unknown, archived, unfit
//! certificates; nothing changed) and that `--live` swaps the running server to the chosen one.

mod common;

use std::path::Path;

use common::bind_all_to;
use common::cli::{Serve, lcs, lcs_ok as ok, poll, presented_serial};
use lcs_sim::clock::{Clock, SystemClock};
use lcs_sim::config::Config;
use lcs_sim::deployment::Deployment;
use lcs_sim::pki::{LeafSpec, Serial, TestPki, Thumbprint};
use serde_json::Value;

const SERVER: &str = "lcs01.contoso.com";

fn findings(dir: &Path) -> (i32, Vec<Value>) {
    let out = lcs(&["doctor", dir.to_str().unwrap(), "--format", "json"]);
    let json: Value = serde_json::from_slice(&out.stdout).expect("doctor prints JSON");
    (
        out.status.code().unwrap(),
        json["findings"].as_array().unwrap().clone(),
    )
}

/// Runs each distinct remedy as printed (`lcs-sim ARGS...`), in order, each must exit 0.
fn run_remedies(found: &[Value]) -> Vec<String> {
    let mut remedies: Vec<String> = found
        .iter()
        .map(|f| f["remedy"].as_str().unwrap().to_string())
        .collect();
    remedies.dedup();
    for remedy in &remedies {
        let words: Vec<&str> = remedy.split_whitespace().collect();
        assert_eq!(words[0], "lcs-sim", "a remedy that is a command: {remedy}");
        ok(&words[1..]);
    }
    remedies
}

fn open(dir: &Path) -> Deployment {
    Deployment::open(dir).unwrap()
}

fn original(d: &Deployment) -> Thumbprint {
    let store = d.store().load().unwrap();
    store.list(false).next().unwrap().thumbprint().clone()
}

fn assert_remedies_fix_it(dir: &Path, code: &str, original: &Thumbprint) {
    let (status, found) = findings(dir);
    assert_eq!(status, 1, "{found:?}");
    assert!(found.iter().all(|f| f["code"] == code), "{found:?}");
    let remedies = run_remedies(&found);
    assert!(
        remedies
            .iter()
            .all(|r| r.contains("--connection") && r.ends_with(&format!("--to {original}"))),
        "{remedies:?}"
    );
    assert_eq!(findings(dir), (0, vec![]), "after {remedies:?}");
}

#[test]
fn name_mismatch_eku_missing_chain_untrusted_and_unknown_certificate_remedies_fix_them() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = common::cli::init(&tmp);
    let d = open(&dir);
    let good = original(&d);
    let ca = d.issuing_ca().unwrap();

    bind_all_to(&d, &ca, &LeafSpec::server("lcs02.contoso.com", "Contoso"));
    assert_remedies_fix_it(&dir, "name_mismatch", &good);

    let no_client_auth = LeafSpec {
        client_auth: false,
        ..LeafSpec::server(SERVER, "Contoso")
    };
    bind_all_to(&d, &ca, &no_client_auth);
    // tls-5061 is fine with serverAuth alone: only the mutual-TLS users are findings.
    assert_remedies_fix_it(&dir, "eku_missing", &good);

    let stranger = TestPki::generate(
        "fabrikam.com",
        SystemClock.now_utc() - time::Duration::days(2),
    )
    .unwrap();
    bind_all_to(&d, &stranger.issuing, &LeafSpec::server(SERVER, "Contoso"));
    assert_remedies_fix_it(&dir, "chain_untrusted", &good);

    let mut config = d.config().unwrap();
    config.certificate_mut("tls-5061").unwrap().serial = Serial::derive(b"never issued");
    config.save(&d.config_path()).unwrap();
    assert_remedies_fix_it(&dir, "unknown_certificate", &good);
}

#[test]
fn fix_to_refuses_unknown_archived_and_unfit_certificates_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = common::cli::init(&tmp);
    let d = open(&dir);
    let d_str = dir.to_str().unwrap();
    let first = original(&d);
    let unfit = common::issue_into_store(
        &d,
        &d.issuing_ca().unwrap(),
        &LeafSpec {
            client_auth: false,
            ..LeafSpec::server(SERVER, "Contoso")
        },
    )
    .0;
    ok(&["store", "renew", d_str, first.as_str()]);
    let before = std::fs::read(d.config_path()).unwrap();

    let refused = |args: &[&str], says: &str| {
        let out = lcs(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
        assert_eq!(std::fs::read(d.config_path()).unwrap(), before, "{args:?}");
    };
    refused(
        &["fix", d_str, "--connection", "tls-5061", "--to", "ABCDEF"],
        "names no single certificate",
    );
    refused(
        &[
            "fix",
            d_str,
            "--connection",
            "tls-5061",
            "--to",
            first.as_str(),
        ],
        "is archived",
    );
    refused(
        &[
            "fix",
            d_str,
            "--connection",
            "mtls-5062",
            "--to",
            unfit.as_str(),
        ],
        "cannot serve mtls-5062: lacks the clientAuth extended key usage",
    );
    refused(
        &["fix", d_str, "--connection", "nope", "--to", unfit.as_str()],
        "`nope` is not a connection",
    );
    // --to without --connection is a usage error from clap, also exit 2.
    refused(&["fix", d_str, "--to", unfit.as_str()], "--connection");

    // The unfit certificate is fine for a TLS listener, which needs serverAuth only; fix grants
    // RTCService read on its key, and leaves the other connections alone.
    let text = ok(&[
        "fix",
        d_str,
        "--connection",
        "tls-5061",
        "--to",
        unfit.as_str(),
    ]);
    assert!(text.contains("rebind tls-5061"), "{text}");
    assert!(
        text.contains("Not rebound (not asked for): mtls-5062"),
        "{text}"
    );
    let config = Config::load(&d.config_path()).unwrap();
    let store = d.store().load().unwrap();
    let bound = store.find(unfit.as_str()).unwrap();
    assert_eq!(
        config
            .cert_refs()
            .find(|(id, _)| *id == "tls-5061")
            .unwrap()
            .1
            .serial,
        bound.info.serial
    );
    assert!(store.open_key(&unfit, "RTCService").is_ok());
}

#[test]
fn fix_live_to_makes_the_running_server_present_the_chosen_certificate() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = common::cli::init(&tmp);
    let d = open(&dir);
    let serve = Serve::start(&dir);
    let tls = serve.addr("tls-5061");
    let (chosen, reference) =
        common::issue_into_store(&d, &d.issuing_ca().unwrap(), &LeafSpec::server(SERVER, "C"));
    let text = ok(&[
        "fix",
        dir.to_str().unwrap(),
        "--connection",
        "tls-5061",
        "--to",
        chosen.as_str(),
        "--live",
    ]);
    assert!(text.contains("rebound"), "{text}");
    let presented = poll(std::time::Duration::from_secs(10), || {
        presented_serial(tls, &d.ca_path()).filter(|s| *s == reference.serial.as_str())
    });
    assert!(presented.is_some(), "still the old certificate: {text}");
}

#[test]
fn after_a_restart_that_failed_the_remedy_is_fix_then_restart_and_it_works() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = common::cli::init(&tmp);
    let d = open(&dir);
    let d_str = dir.to_str().unwrap();
    ok(&["store", "renew", d_str, original(&d).as_str()]);
    // Restarted after the renewal: TLS and MTLS do not start (the reference is archived).
    let serve = Serve::start(&dir);
    let (status, found) = findings(&dir);
    assert_eq!(status, 1, "{found:?}");
    assert!(
        found.iter().any(|f| f["code"] == "not_started"),
        "{found:?}"
    );
    let expected = format!(
        "lcs-sim fix {d_str}, then restart serve: kill -TERM {}; lcs-sim serve {d_str}",
        serve.child.id()
    );
    let archived: Vec<&Value> = found
        .iter()
        .filter(|f| f["code"] == "archived_reference")
        .collect();
    assert!(!archived.is_empty(), "{found:?}");
    assert!(
        archived.iter().all(|f| f["remedy"] == expected.as_str()),
        "{archived:?}"
    );

    // The remedy as printed: fix on disk, then restart.
    ok(&["fix", d_str]);
    let (stopped, _) = serve.terminate();
    assert!(stopped.success());
    let _again = Serve::start(&dir);
    assert_eq!(findings(&dir), (0, vec![]));
}
