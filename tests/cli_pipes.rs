//! Every command that prints, with its standard output going to a pipe nobody reads
//! (`lcs-sim store list demo | head -1`): it must end quietly, never panic, and exit with the
//! code it has when its output is read (the findings decide it, not the pipe).
//!
//! Two ways of closing: the read end closed before the command starts (every write fails at
//! once with `EPIPE`), and a reader that takes a few bytes and goes away while a large output
//! (over twice a pipe buffer, 64 KiB on Linux) is still being written.

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use lcs_sim::clock::{Clock, SystemClock};
use lcs_sim::deployment::{Deployment, InitOptions};
use lcs_sim::pki::Serial;
use lcs_sim::store::RenewalPolicy;

use common::cli::{LCS, lcs};

/// A scenario that runs in a fraction of a second.
const TINY: &str = r#"
name = "tiny"
description = "two users, a renewal"
seed = 3
duration = "5m"
[users]
count = 2
hosts = 1
message_interval = "1m"
connection_lifetime = "2m"
backoff_max = "20s"
[[step]]
at = "1m"
action = "renew"
"#;

/// Runs `args` with stdout a pipe whose read end is already closed.
fn into_closed_pipe(args: &[&str]) -> Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    Command::new(LCS)
        .args(args)
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .expect("the binary runs")
}

fn assert_quiet_exit(args: &[&str], out: &Output) {
    assert_quiet_exit_with(args, out, 0);
}

fn assert_quiet_exit_with(args: &[&str], out: &Output, code: i32) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "lcs-sim {args:?}: {stderr}");
    assert_eq!(out.status.code(), Some(code), "lcs-sim {args:?}: {stderr}");
}

/// The command prints something when stdout is read (so the closed pipe is written to).
fn prints(args: &[&str]) -> usize {
    lcs(args).stdout.len()
}

fn renewed_deployment(tmp: &tempfile::TempDir, renewals: usize) -> (Deployment, String) {
    let now = SystemClock.now_utc();
    let (d, report) =
        Deployment::init(tmp.path().join("demo"), &InitOptions::default(), now).unwrap();
    // Renewed in memory and saved once: a renewal per command would rewrite the index each time.
    let ca = d.issuing_ca().unwrap();
    let mut thumb = report.thumbprint;
    d.store()
        .update(|store| {
            for _ in 0..renewals {
                let policy = RenewalPolicy::NewKeyKeepAcl;
                thumb = store.renew(&thumb, policy, &ca, now, Serial::random())?.new;
            }
            Ok(())
        })
        .unwrap();
    (d, thumb.to_string())
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn every_command_ends_quietly_when_stdout_is_closed() {
    let tmp = tempfile::tempdir().unwrap();
    let fresh: PathBuf = tmp.path().join("fresh");
    let scenario = tmp.path().join("tiny.toml");
    std::fs::write(&scenario, TINY).unwrap();
    let (d, thumb) = renewed_deployment(&tmp, 1);
    let dir = s(d.root());
    let read_only: Vec<Vec<&str>> = vec![
        vec!["--help"],
        vec!["store", "--help"],
        vec!["doctor", "--help"],
        vec!["store", "list", dir, "--all"],
        vec!["store", "list", dir, "--format", "json"],
        vec!["store", "show", dir, &thumb],
        vec!["store", "show", dir, &thumb, "--format", "json"],
        vec!["store", "export", dir, &thumb],
        vec!["events", dir],
        vec!["events", dir, "--format", "json"],
        vec!["fix", dir, "--dry-run"],
        vec!["doctor", dir],
        vec!["doctor", dir, "--format", "json"],
        vec!["reproduce", "--list"],
        vec!["reproduce", "--scenario", s(&scenario)],
        vec!["reproduce", "--scenario", s(&scenario), "--format", "json"],
        vec!["reproduce", "--scenario", s(&scenario), "--format", "junit"],
    ];
    for args in &read_only {
        let read = lcs(args);
        assert!(!read.stdout.is_empty(), "lcs-sim {args:?} prints nothing");
        let code = read.status.code().unwrap();
        assert_quiet_exit_with(args, &into_closed_pipe(args), code);
    }
    // Commands that change something print after the change: it is made, and the closed pipe
    // then ends them quietly.
    let changing: Vec<Vec<&str>> = vec![
        vec!["init", s(&fresh)],
        vec!["store", "grant", dir, &thumb, "Administrators"],
        vec!["store", "revoke", dir, &thumb, "RTCService"],
        vec!["store", "renew", dir, &thumb],
        vec!["fix", dir],
    ];
    for args in &changing {
        assert_quiet_exit(args, &into_closed_pipe(args));
    }
    assert!(fresh.join("lcs.toml").is_file(), "init made the deployment");
    let store = d.store().load().unwrap();
    assert_eq!(store.list(true).count(), 3, "renew renewed");
    let config = d.config().unwrap();
    let newest = store.list(false).next().unwrap();
    assert!(
        config
            .cert_refs()
            .all(|(_, r)| r.serial == newest.info.serial),
        "fix rebound every connection"
    );
}

#[test]
fn a_reader_that_leaves_early_ends_a_large_output_quietly() {
    let tmp = tempfile::tempdir().unwrap();
    let (d, _) = renewed_deployment(&tmp, 150);
    let dir = s(d.root());
    let args = ["store", "list", dir, "--all", "--format", "json"];
    assert!(
        prints(&args) > 128 * 1024,
        "lcs-sim {args:?}: output too small to fill a pipe"
    );
    let mut child = Command::new(LCS)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 100];
    stdout.read_exact(&mut first).unwrap();
    drop(stdout);
    let out = child.wait_with_output().unwrap();
    assert_quiet_exit(&args, &out);
}

#[test]
fn a_closed_pipe_keeps_the_exit_code_the_findings_decide() {
    let tmp = tempfile::tempdir().unwrap();
    let (d, thumb) = renewed_deployment(&tmp, 1);
    let dir = s(d.root());
    let revoked = lcs(&["store", "revoke", dir, &thumb, "RTCService"]);
    assert!(revoked.status.success(), "{revoked:?}");
    for args in [vec!["doctor", dir], vec!["doctor", dir, "--format", "json"]] {
        let read = lcs(&args);
        assert_eq!(read.status.code(), Some(1), "a broken deployment: {read:?}");
        // `doctor DIR | head -1`: the reader goes before or after the findings are known.
        for _ in 0..5 {
            assert_quiet_exit_with(&args, &into_closed_pipe(&args), 1);
            let mut child = Command::new(LCS)
                .args(&args)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            let mut stdout = child.stdout.take().unwrap();
            let mut first = [0u8; 1];
            stdout.read_exact(&mut first).unwrap();
            drop(stdout);
            assert_quiet_exit_with(&args, &child.wait_with_output().unwrap(), 1);
        }
    }
}
