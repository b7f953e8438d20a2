//! Certificates outside their validity, through the binary: `store list` and `store show` say
//! expired or not yet valid instead of active, and `fix` reports them (a rebind cannot help)
//! instead of "Nothing to fix".

mod common;

use common::cli::{lcs, lcs_ok as ok};
use std::path::{Path, PathBuf};

use serde_json::Value;

fn list(dir: &Path, all: bool) -> Vec<Value> {
    let mut args = vec!["store", "list", dir.to_str().unwrap(), "--format", "json"];
    if all {
        args.push("--all");
    }
    serde_json::from_str(&ok(&args)).unwrap()
}

/// Snapshot (path, SHA-256) of every file under `dir`, to prove a command changed nothing.
fn snapshot(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let digest =
                    ring::digest::digest(&ring::digest::SHA256, &std::fs::read(&p).unwrap());
                out.push((p.clone(), hex::encode(digest.as_ref())));
            }
        }
    }
    out.sort();
    out
}

/// A deployment made `days_ago` days ago (negative: in the future) with a one-year certificate.
fn init_at(tmp: &tempfile::TempDir, days_ago: i64) -> PathBuf {
    use lcs_sim::clock::Clock;
    let at = lcs_sim::clock::SystemClock.now_utc() - time::Duration::days(days_ago);
    let dir = tmp.path().join("demo");
    lcs_sim::deployment::Deployment::init(&dir, &Default::default(), at).unwrap();
    dir
}

#[test]
fn list_and_show_say_expired_or_not_yet_valid_instead_of_active() {
    for (days_ago, status, text) in [
        (400, "expired", "[EXPIRED]"),
        (-3, "not_yet_valid", "[NOT YET VALID]"),
        (0, "active", "[active]"),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = init_at(&tmp, days_ago);
        let d = dir.to_str().unwrap();
        let cert = list(&dir, false)[0].clone();
        assert_eq!(cert["status"], status, "{cert}");
        let validity = if status == "active" { "valid" } else { status };
        assert_eq!(cert["validity"], validity);
        let t = cert["thumbprint"].as_str().unwrap();
        assert!(ok(&["store", "list", d]).contains(text));
        assert!(ok(&["store", "show", d, t]).contains(text));
        let shown: Value =
            serde_json::from_str(&ok(&["store", "show", d, t, "--format", "json"])).unwrap();
        assert_eq!(shown["status"], status);
    }
    // An archived certificate is archived first; its dates still show.
    let tmp = tempfile::tempdir().unwrap();
    let dir = init_at(&tmp, 400);
    let d = dir.to_str().unwrap();
    let t = list(&dir, false)[0]["thumbprint"]
        .as_str()
        .unwrap()
        .to_string();
    ok(&["store", "renew", d, &t]);
    let old = list(&dir, true)
        .into_iter()
        .find(|c| c["thumbprint"] == t.as_str())
        .unwrap();
    assert_eq!(
        (&old["status"], &old["validity"]),
        (&"archived".into(), &"expired".into())
    );
    assert!(ok(&["store", "list", d, "--all"]).contains("[ARCHIVED, EXPIRED]"));
}

#[test]
fn fix_reports_an_expired_certificate_instead_of_nothing_to_fix() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = init_at(&tmp, 400);
    let d = dir.to_str().unwrap();
    let t = list(&dir, false)[0]["thumbprint"]
        .as_str()
        .unwrap()
        .to_string();
    let before = snapshot(&dir);
    for dry_run in [true, false] {
        let mut args = vec!["fix", d];
        if dry_run {
            args.push("--dry-run");
        }
        let out = lcs(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let stdout = String::from_utf8(out.stdout).unwrap();
        assert!(!stdout.contains("Nothing to fix"), "{stdout}");
        for id in ["tls-5061", "mtls-5062", "route-fabrikam.com"] {
            assert!(stdout.contains(&format!("expired       {id}")), "{stdout}");
        }
        let renew =
            format!("lcs-sim store renew {d} {t} --policy new-key-keep-acl && lcs-sim fix {d}");
        assert!(stdout.contains(&renew), "{stdout}");
        assert!(String::from_utf8(out.stderr).unwrap().contains("not fixed"));
    }
    assert_eq!(snapshot(&dir), before, "nothing to apply, nothing changed");
    // The remedy it prints works.
    ok(&["store", "renew", d, &t, "--policy", "new-key-keep-acl"]);
    let fixed = ok(&["fix", d]);
    assert_eq!(fixed.matches("rebind ").count(), 3, "{fixed}");
    assert!(ok(&["fix", d, "--dry-run"]).contains("Nothing to fix"));
}
