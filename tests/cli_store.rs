//! Drives the `lcs-sim` binary through init, list, show, export, renew, grant, revoke and every
//! error path of the store, as a user at a terminal would.

mod common;

use common::cli::{lcs, lcs_ok as ok};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// Runs a command that must fail with exit code 2 and returns its stderr.
fn bad(args: &[&str]) -> String {
    let out = lcs(args);
    assert_eq!(
        out.status.code(),
        Some(2),
        "lcs-sim {args:?} should exit 2; stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stderr).unwrap()
}

fn init(tmp: &tempfile::TempDir, extra: &[&str]) -> PathBuf {
    let dir = tmp.path().join("demo");
    let mut args = vec!["init", dir.to_str().unwrap()];
    args.extend_from_slice(extra);
    ok(&args);
    dir
}

fn list(dir: &Path, all: bool) -> Vec<Value> {
    let mut args = vec!["store", "list", dir.to_str().unwrap(), "--format", "json"];
    if all {
        args.push("--all");
    }
    serde_json::from_str(&ok(&args)).unwrap()
}

fn acl_of(cert: &Value, principal: &str) -> Option<Vec<String>> {
    cert["acl"].as_array().unwrap().iter().find_map(|ace| {
        (ace["principal"] == principal).then(|| {
            ace["rights"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r.as_str().unwrap().to_string())
                .collect()
        })
    })
}

/// Snapshot (path, SHA-256) of every file under `dir`, to prove a failed command changed nothing.
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

#[test]
fn init_creates_a_store_whose_key_grants_the_service_account_read() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = init(&tmp, &[]);
    let certs = list(&dir, false);
    assert_eq!(certs.len(), 1);
    let c = &certs[0];
    let thumb = c["thumbprint"].as_str().unwrap();
    assert_eq!(thumb.len(), 40);
    assert!(
        thumb
            .chars()
            .all(|ch| ch.is_ascii_hexdigit() && !ch.is_ascii_lowercase())
    );
    assert_eq!(c["subject"], "CN=lcs01.contoso.com, O=Contoso");
    assert_eq!(c["issuer"], "CN=Contoso Issuing CA, O=Contoso");
    assert_eq!(
        c["dns_names"],
        serde_json::json!(["lcs01.contoso.com", "localhost"])
    );
    assert_eq!(c["ekus"], serde_json::json!(["server_auth", "client_auth"]));
    assert_eq!(c["archived"], false);
    assert_eq!(c["renewed_by"], Value::Null);
    assert_eq!(acl_of(c, "SYSTEM").unwrap(), ["full_control"]);
    assert_eq!(acl_of(c, "Administrators").unwrap(), ["full_control"]);
    assert_eq!(acl_of(c, "RTCService").unwrap(), ["read"]);
    assert_eq!(
        c["used_by"],
        serde_json::json!(["tls-5061", "mtls-5062", "route-fabrikam.com"])
    );
    // Validity of one year, RFC 3339.
    let nb = time::OffsetDateTime::parse(
        c["not_before"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let na = time::OffsetDateTime::parse(
        c["not_after"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert_eq!((na - nb).whole_days(), 365);

    let toml = std::fs::read_to_string(dir.join("lcs.toml")).unwrap();
    let serial = c["serial"].as_str().unwrap();
    assert_eq!(
        toml.matches(serial).count(),
        3,
        "TLS, MTLS and the route name the cert:\n{toml}"
    );
    assert!(dir.join("ca.pem").is_file());

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for entry in std::fs::read_dir(dir.join("store/keys")).unwrap() {
            let mode = entry.unwrap().metadata().unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let mode = std::fs::metadata(dir.join("ca.pem"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o644);
    }
}

#[test]
fn init_refuses_a_non_empty_folder_unless_forced() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = init(&tmp, &[]);
    let before = list(&dir, true);
    let err = bad(&["init", dir.to_str().unwrap()]);
    assert!(
        err.contains("not empty") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(list(&dir, true), before);
    ok(&[
        "init",
        dir.to_str().unwrap(),
        "--force",
        "--domain",
        "example.org",
        "--principal",
        "SipSvc",
    ]);
    let after = list(&dir, true);
    assert_eq!(after.len(), 1);
    assert_ne!(after[0]["thumbprint"], before[0]["thumbprint"]);
    assert_eq!(after[0]["subject"], "CN=lcs01.example.org, O=Example");
    assert!(acl_of(&after[0], "SipSvc").is_some());
}

#[test]
fn renew_archives_links_and_drops_the_service_account() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = init(&tmp, &[]);
    let d = dir.to_str().unwrap();
    let old = list(&dir, false)[0].clone();
    let old_thumb = old["thumbprint"].as_str().unwrap();
    let out = ok(&["store", "renew", d, &old_thumb[..8]]);
    assert!(
        out.contains("RTCService can no longer read the key"),
        "{out}"
    );
    assert!(
        out.contains("tls-5061, mtls-5062, route-fabrikam.com"),
        "{out}"
    );

    let active = list(&dir, false);
    assert_eq!(active.len(), 1);
    let new = &active[0];
    assert_ne!(new["thumbprint"], old["thumbprint"]);
    assert_ne!(new["serial"], old["serial"]);
    assert_eq!(new["subject"], old["subject"]);
    assert_eq!(new["dns_names"], old["dns_names"]);
    assert_eq!(new["ekus"], old["ekus"]);
    assert_eq!(acl_of(new, "RTCService"), None);
    assert_eq!(new["key_container"], old["key_container"], "same key kept");
    assert_eq!(new["used_by"], serde_json::json!([]));

    let all = list(&dir, true);
    assert_eq!(all.len(), 2);
    let archived = all
        .iter()
        .find(|c| c["thumbprint"] == old["thumbprint"])
        .unwrap();
    assert_eq!(archived["archived"], true);
    assert_eq!(archived["renewed_by"], new["thumbprint"]);
    assert_eq!(
        acl_of(archived, "RTCService"),
        None,
        "the shared key's ACL was reset"
    );

    // The renewal is in the application log with both thumbprints.
    let events = std::fs::read_to_string(dir.join("events.jsonl")).unwrap();
    let e: Value = serde_json::from_str(events.lines().next().unwrap()).unwrap();
    assert_eq!(e["id"], 1001);
    assert_eq!(e["details"]["old_thumbprint"], old["thumbprint"]);
    assert_eq!(e["details"]["new_thumbprint"], new["thumbprint"]);

    // Renewing the archived certificate again is refused, naming its successor.
    let err = bad(&["store", "renew", d, old_thumb]);
    assert!(
        err.contains("archived") && err.contains(new["thumbprint"].as_str().unwrap()),
        "{err}"
    );
}

#[test]
fn renew_policies_treat_key_and_acl_as_documented() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = init(&tmp, &[]);
    let d = dir.to_str().unwrap();
    let first = list(&dir, false)[0].clone();
    ok(&[
        "store",
        "renew",
        d,
        first["thumbprint"].as_str().unwrap(),
        "--policy",
        "new-key-keep-acl",
    ]);
    let kept = list(&dir, false)[0].clone();
    assert_ne!(kept["key_container"], first["key_container"]);
    assert_eq!(acl_of(&kept, "RTCService").unwrap(), ["read"]);
    let archived = list(&dir, true)
        .into_iter()
        .find(|c| c["archived"] == true)
        .unwrap();
    assert_eq!(
        acl_of(&archived, "RTCService").unwrap(),
        ["read"],
        "old key untouched"
    );

    ok(&[
        "store",
        "renew",
        d,
        kept["thumbprint"].as_str().unwrap(),
        "--policy",
        "new-key-default-acl",
    ]);
    let fresh = list(&dir, false)[0].clone();
    assert_ne!(fresh["key_container"], kept["key_container"]);
    assert_eq!(acl_of(&fresh, "RTCService"), None);

    let err = bad(&[
        "store",
        "renew",
        d,
        fresh["thumbprint"].as_str().unwrap(),
        "--policy",
        "bogus",
    ]);
    assert!(err.contains("same-key-reset-acl"), "{err}");
}

#[test]
fn grant_and_revoke_change_the_key_acl() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = init(&tmp, &[]);
    let d = dir.to_str().unwrap();
    let t = list(&dir, false)[0]["thumbprint"]
        .as_str()
        .unwrap()
        .to_string();
    // ACLs match names in any case; the answer names the principal as the ACL spells it.
    let out = ok(&["store", "grant", d, &t, "rtcservice"]);
    assert!(out.starts_with("Already granted: RTCService read"), "{out}");
    ok(&["store", "revoke", d, &t, "RTCService"]);
    assert_eq!(acl_of(&list(&dir, false)[0], "RTCService"), None);
    let out = ok(&["store", "revoke", d, &t, "RTCService"]);
    assert!(out.contains("Nothing to revoke"), "{out}");
    ok(&["store", "grant", d, &t, "rtcservice"]);
    assert_eq!(
        acl_of(&list(&dir, false)[0], "rtcservice").unwrap(),
        ["read"]
    );
    ok(&[
        "store",
        "grant",
        d,
        &t,
        "Ops",
        "--right",
        "full_control",
        "--new-principal",
    ]);
    assert_eq!(
        acl_of(&list(&dir, false)[0], "Ops").unwrap(),
        ["full_control"]
    );
    ok(&["store", "revoke", d, &t, "Ops", "--right", "full-control"]);
    assert_eq!(acl_of(&list(&dir, false)[0], "Ops"), None);
}

#[test]
fn grant_and_revoke_refuse_unknown_and_empty_principals_and_change_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = init(&tmp, &[]);
    let d = dir.to_str().unwrap();
    let t = list(&dir, false)[0]["thumbprint"]
        .as_str()
        .unwrap()
        .to_string();
    let before = snapshot(&dir);
    for verb in ["grant", "revoke"] {
        let err = bad(&["store", verb, d, &t, "RTCSevice"]);
        assert!(err.contains("unknown principal `RTCSevice`"), "{err}");
        assert!(
            err.contains("known: SYSTEM, Administrators, RTCService"),
            "{err}"
        );
        assert!(err.contains("--new-principal"), "{err}");
        for empty in ["", "  "] {
            let err = bad(&["store", verb, d, &t, empty, "--new-principal"]);
            assert!(err.contains("must be an account or group name"), "{err}");
        }
        assert_eq!(
            snapshot(&dir),
            before,
            "a refused {verb} changed the folder"
        );
    }
    // Known names are accepted in any case; a new one with --new-principal, after which it is
    // known (it is on an ACL).
    ok(&["store", "grant", d, &t, "administrators"]);
    ok(&["store", "grant", d, &t, "Ops", "--new-principal"]);
    assert_eq!(acl_of(&list(&dir, false)[0], "Ops").unwrap(), ["read"]);
    ok(&["store", "revoke", d, &t, "ops"]);
    assert_eq!(acl_of(&list(&dir, false)[0], "Ops"), None);
    // The service principal stays known after its entry is gone: lcs.toml names it.
    ok(&["store", "revoke", d, &t, "RTCService"]);
    ok(&["store", "grant", d, &t, "RTCService"]);
}

#[test]
fn export_writes_a_pem_that_openssl_reads() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = init(&tmp, &[]);
    let c = list(&dir, false)[0].clone();
    let pem = ok(&[
        "store",
        "export",
        dir.to_str().unwrap(),
        c["thumbprint"].as_str().unwrap(),
    ]);
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----\n"));
    let Ok(mut child) = Command::new("openssl")
        .args(["x509", "-noout", "-serial", "-subject"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
    else {
        assert!(
            std::env::var_os("CI").is_none(),
            "openssl is required under CI=true"
        );
        eprintln!("skipping the openssl half: openssl is not installed");
        return;
    };
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(pem.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains(&format!("serial={}", c["serial"].as_str().unwrap())),
        "{text}"
    );
    assert!(text.contains("lcs01.contoso.com"), "{text}");
}

#[test]
fn show_accepts_a_prefix_and_rejects_unknown_or_ambiguous_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = init(&tmp, &[]);
    let d = dir.to_str().unwrap();
    let t = list(&dir, false)[0]["thumbprint"]
        .as_str()
        .unwrap()
        .to_string();
    let text = ok(&["store", "show", d, &t[..6].to_lowercase()]);
    assert!(
        text.contains(&t) && text.contains("RTCService read"),
        "{text}"
    );
    let err = bad(&["store", "show", d, "0000000000"]);
    let err2 = bad(&["store", "show", d, "zz"]);
    for e in [&err, &err2] {
        assert!(e.contains("no certificate with thumbprint"), "{e}");
    }
    // Renew until two thumbprints share a first digit (17 certificates guarantee it).
    let mut current = t;
    for _ in 0..16 {
        ok(&[
            "store",
            "renew",
            d,
            &current,
            "--policy",
            "new-key-keep-acl",
        ]);
        current = list(&dir, false)[0]["thumbprint"]
            .as_str()
            .unwrap()
            .to_string();
    }
    let firsts: Vec<String> = list(&dir, true)
        .iter()
        .map(|c| c["thumbprint"].as_str().unwrap()[..1].to_string())
        .collect();
    let shared = firsts
        .iter()
        .find(|f| firsts.iter().filter(|g| g == f).count() > 1)
        .unwrap();
    let err = bad(&["store", "show", d, shared]);
    assert!(
        err.contains("ambiguous") && err.contains("give more digits"),
        "{err}"
    );
}

#[test]
fn not_a_deployment_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let err = bad(&["store", "list", tmp.path().to_str().unwrap()]);
    assert!(
        err.contains("not an lcs-sim deployment") && err.contains("lcs-sim init"),
        "{err}"
    );
}

#[test]
fn corrupt_index_is_named_with_its_line_and_nothing_changes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = init(&tmp, &[]);
    let d = dir.to_str().unwrap();
    let t = list(&dir, false)[0]["thumbprint"]
        .as_str()
        .unwrap()
        .to_string();
    let index = dir.join("store/index.json");
    let text = std::fs::read_to_string(&index).unwrap();
    // Break line 3 (a hand edit that leaves a stray token).
    let mut lines: Vec<&str> = text.lines().collect();
    lines.insert(2, "  oops");
    std::fs::write(&index, lines.join("\n")).unwrap();
    let before = snapshot(&dir);
    for args in [
        vec!["store", "list", d],
        vec!["store", "renew", d, &t],
        vec!["store", "grant", d, &t, "Guest"],
    ] {
        let err = bad(&args);
        assert!(err.contains("store/index.json:3"), "{err}");
        assert!(err.contains("hint:"), "{err}");
    }
    assert_eq!(snapshot(&dir), before, "a failed command changed files");
}

#[test]
fn hand_edited_index_fields_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = init(&tmp, &[]);
    let index = dir.join("store/index.json");
    let text = std::fs::read_to_string(&index).unwrap();
    std::fs::write(&index, text.replace("\"read\"", "\"write\"")).unwrap();
    let err = bad(&["store", "list", dir.to_str().unwrap()]);
    assert!(err.contains("index.json") && err.contains("write"), "{err}");

    std::fs::write(
        &index,
        text.replace("\"archived\": false", "\"archived\": \"no\""),
    )
    .unwrap();
    let err = bad(&["store", "list", dir.to_str().unwrap()]);
    assert!(err.contains("index.json:"), "{err}");
}

#[test]
fn replaced_certificate_or_key_files_are_detected() {
    let tmp = tempfile::tempdir().unwrap();
    let a = init(&tmp, &[]);
    let b = tmp.path().join("other");
    ok(&["init", b.to_str().unwrap()]);
    let file_in = |dir: &Path, sub: &str| {
        std::fs::read_dir(dir.join(sub))
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path()
    };
    let cert_a = file_in(&a, "store/certs");
    let key_a = file_in(&a, "store/keys");
    let original_cert = std::fs::read(&cert_a).unwrap();
    let original_key = std::fs::read(&key_a).unwrap();

    // Another deployment's certificate under this thumbprint's name.
    std::fs::copy(file_in(&b, "store/certs"), &cert_a).unwrap();
    let err = bad(&["store", "list", a.to_str().unwrap()]);
    assert!(
        err.contains(cert_a.file_name().unwrap().to_str().unwrap()) && err.contains("thumbprint"),
        "{err}"
    );

    // A PEM that is not a certificate.
    std::fs::write(&cert_a, &original_key).unwrap();
    let err = bad(&["store", "list", a.to_str().unwrap()]);
    assert!(err.contains("not a PEM certificate"), "{err}");

    // The right certificate, but another key.
    std::fs::write(&cert_a, &original_cert).unwrap();
    std::fs::copy(file_in(&b, "store/keys"), &key_a).unwrap();
    let err = bad(&["store", "list", a.to_str().unwrap()]);
    assert!(err.contains("does not match certificate"), "{err}");

    std::fs::write(&key_a, &original_key).unwrap();
    ok(&["store", "list", a.to_str().unwrap()]);
}

#[test]
fn broken_lcs_toml_does_not_stop_store_commands() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = init(&tmp, &[]);
    std::fs::write(dir.join("lcs.toml"), "[service\n").unwrap();
    let out = lcs(&["store", "list", dir.to_str().unwrap()]);
    assert!(out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("lcs.toml") && err.contains("line 1"), "{err}");
}

#[test]
fn rsa_deployment_renews() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = init(&tmp, &["--key", "rsa-2048"]);
    let t = list(&dir, false)[0]["thumbprint"]
        .as_str()
        .unwrap()
        .to_string();
    ok(&[
        "store",
        "renew",
        dir.to_str().unwrap(),
        &t,
        "--policy",
        "new-key-keep-acl",
    ]);
    assert_eq!(list(&dir, true).len(), 2);
}

#[test]
fn fix_rebinds_the_connections_named_and_grants_read() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = init(&tmp, &[]);
    let d = dir.to_str().unwrap();
    let old = list(&dir, false)[0].clone();
    ok(&["store", "renew", d, old["thumbprint"].as_str().unwrap()]);
    let new = list(&dir, false)[0].clone();
    let serials = || {
        let c = lcs_sim::config::Config::load(&dir.join("lcs.toml")).unwrap();
        c.cert_refs()
            .map(|(id, r)| (id.to_string(), r.serial.to_string()))
            .collect::<Vec<_>>()
    };

    let plan = ok(&["fix", d, "--dry-run"]);
    assert_eq!(plan.matches("rebind ").count(), 3, "{plan}");
    assert!(
        serials()
            .iter()
            .all(|(_, s)| s == old["serial"].as_str().unwrap()),
        "dry run changed nothing"
    );

    ok(&["fix", d, "--connection", "tls-5061"]);
    let after: Vec<_> = serials();
    assert_eq!(
        after[0],
        (
            "tls-5061".to_string(),
            new["serial"].as_str().unwrap().to_string()
        )
    );
    assert!(
        after[1..]
            .iter()
            .all(|(_, s)| s == old["serial"].as_str().unwrap())
    );
    assert_eq!(
        acl_of(&list(&dir, false)[0], "RTCService").unwrap(),
        ["read"]
    );

    ok(&["fix", d]);
    assert!(
        serials()
            .iter()
            .all(|(_, s)| s == new["serial"].as_str().unwrap())
    );
    assert!(ok(&["fix", d]).contains("Nothing to fix"));
    let err = bad(&["fix", d, "--connection", "tcp-5060"]);
    assert!(err.contains("tcp-5060") && err.contains("known"), "{err}");

    // A reference that names nothing in the store cannot be followed: said, and nothing changes.
    let toml = std::fs::read_to_string(dir.join("lcs.toml")).unwrap();
    let first = new["serial"].as_str().unwrap();
    std::fs::write(dir.join("lcs.toml"), toml.replacen(first, "0BADC0DE", 1)).unwrap();
    let before = snapshot(&dir);
    let err = bad(&["fix", d]);
    assert!(
        err.contains("tls-5061") && err.contains("names no certificate"),
        "{err}"
    );
    assert_eq!(snapshot(&dir), before);
}

#[test]
fn init_with_a_bad_option_fails_before_touching_an_existing_deployment() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = init(&tmp, &[]);
    let before = snapshot(&dir);
    for bad_args in [
        vec!["--peer-address", "127.0.0.1"],
        vec!["--tls-port", "5070", "--mtls-port", "5070"],
        vec!["--federated-domain", "contoso.com"],
    ] {
        let mut args = vec!["init", dir.to_str().unwrap(), "--force"];
        args.extend(bad_args.iter().copied());
        let err = bad(&args);
        assert!(err.contains("field `"), "{err}");
        assert_eq!(
            snapshot(&dir),
            before,
            "{bad_args:?} changed the deployment"
        );
    }
}

#[test]
fn a_renewal_cycle_in_a_hand_edited_index_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = init(&tmp, &[]);
    let t = list(&dir, false)[0]["thumbprint"]
        .as_str()
        .unwrap()
        .to_string();
    let index = dir.join("store/index.json");
    let text = std::fs::read_to_string(&index).unwrap();
    std::fs::write(
        &index,
        text.replace("\"renewed_by\": null", &format!("\"renewed_by\": \"{t}\"")),
    )
    .unwrap();
    let err = bad(&["store", "list", dir.to_str().unwrap()]);
    assert!(err.contains("index.json") && err.contains("cycle"), "{err}");
    let err = bad(&["fix", dir.to_str().unwrap()]);
    assert!(err.contains("cycle"), "{err}");
}

/// An edit of `index.json`, and what the refusal must say.
type IndexCase = (Box<dyn Fn(&mut Value)>, String);

/// Edits `store/index.json` as JSON.
fn edit_index(dir: &Path, edit: impl FnOnce(&mut Value)) {
    let index = dir.join("store/index.json");
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(&index).unwrap()).unwrap();
    edit(&mut v);
    std::fs::write(&index, serde_json::to_string_pretty(&v).unwrap()).unwrap();
}

/// A hand-edited index that lists a certificate or a key container twice, or grants an empty
/// principal, is refused once at load, naming the file and the value, by every command (store
/// list used to panic on a duplicate thumbprint, and a duplicate container was merged silently).
#[test]
fn duplicates_and_empty_principals_in_a_hand_edited_index_are_refused_by_every_command() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = init(&tmp, &[]);
    let d = dir.to_str().unwrap();
    let index = dir.join("store/index.json");
    let pristine = std::fs::read_to_string(&index).unwrap();
    let thumb = list(&dir, false)[0]["thumbprint"]
        .as_str()
        .unwrap()
        .to_string();
    let duplicate = |key: &'static str| {
        move |v: &mut Value| {
            let first = v[key][0].clone();
            v[key].as_array_mut().unwrap().push(first);
        }
    };
    let cases: Vec<IndexCase> = vec![
        (
            Box::new(duplicate("certificates")),
            format!("certificate {thumb} is listed twice"),
        ),
        (
            Box::new(duplicate("key_containers")),
            "is listed twice under `key_containers`".into(),
        ),
        (
            Box::new(|v: &mut Value| {
                v["key_containers"][0]["acl"][0]["principal"] = Value::from(" ");
            }),
            "empty principal".into(),
        ),
    ];
    for (edit, says) in cases {
        std::fs::write(&index, &pristine).unwrap();
        edit_index(&dir, edit);
        let edited = std::fs::read_to_string(&index).unwrap();
        for args in [
            vec!["store", "list", d],
            vec!["doctor", d],
            vec!["fix", d, "--dry-run"],
            vec!["fix", d],
        ] {
            let err = bad(&args);
            assert!(
                err.contains("index.json") && err.contains(&says),
                "{args:?}: {err}"
            );
        }
        assert_eq!(
            std::fs::read_to_string(&index).unwrap(),
            edited,
            "nothing changed"
        );
    }
}
