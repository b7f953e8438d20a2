//! kill -9 of `lcs-sim store renew` at every point of its write (issue 15 §2): a renewal that
//! committed has exactly one event 1001 in the log the next reader or writer sees, and a
//! renewal that did not commit has none. Each case fails without the store's outbox (the event
//! appended after the commit, as before, is lost by a kill after the commit).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::cli::{LCS, lcs_ok};
use lcs_sim::clock::monotonic_now;
use serde_json::Value;

fn init(tmp: &tempfile::TempDir) -> PathBuf {
    let dir = tmp.path().join("demo");
    lcs_ok(&["init", dir.to_str().unwrap()]);
    dir
}

fn certs(dir: &Path) -> Vec<Value> {
    let out = lcs_ok(&[
        "store",
        "list",
        dir.to_str().unwrap(),
        "--all",
        "--format",
        "json",
    ]);
    serde_json::from_str(&out).unwrap()
}

/// The active certificate's thumbprint.
fn active(dir: &Path) -> String {
    let all = certs(dir);
    let active: Vec<_> = all.iter().filter(|c| c["archived"] == false).collect();
    assert_eq!(active.len(), 1, "{all:#?}");
    active[0]["thumbprint"].as_str().unwrap().to_owned()
}

/// (old, new) for every renewal the store committed, oldest first.
fn renewals(dir: &Path) -> Vec<(String, String)> {
    certs(dir)
        .iter()
        .filter(|c| !c["renewed_by"].is_null())
        .map(|c| {
            let s = |v: &Value| v.as_str().unwrap().to_owned();
            (s(&c["thumbprint"]), s(&c["renewed_by"]))
        })
        .collect()
}

/// (old, new) for every event 1001 `lcs-sim events` shows, oldest first.
fn logged(dir: &Path) -> Vec<(String, String)> {
    let out = lcs_ok(&[
        "events",
        dir.to_str().unwrap(),
        "--id",
        "1001",
        "--format",
        "json",
    ]);
    let events: Vec<Value> = serde_json::from_str(&out).unwrap();
    events
        .iter()
        .map(|e| {
            let s = |k: &str| e["details"][k].as_str().unwrap().to_owned();
            (s("old_thumbprint"), s("new_thumbprint"))
        })
        .collect()
}

/// Event 1001 lines in events.jsonl as the file is now, before any reader delivers.
fn on_disk(dir: &Path) -> usize {
    std::fs::read_to_string(dir.join("events.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("\"id\":1001"))
        .count()
}

fn renew(dir: &Path, thumbprint: &str) -> Command {
    let mut c = Command::new(LCS);
    c.args(["store", "renew", dir.to_str().unwrap(), thumbprint])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c
}

#[test]
fn a_renewal_killed_at_each_point_of_its_write_has_its_event_once_if_it_committed() {
    // (crash point, whether the renewal committed, event 1001 lines in the log at the crash)
    for (point, committed, logged_at_crash) in [
        ("before-commit", false, 0),
        ("after-commit", true, 0),
        ("after-delivery", true, 1),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = init(&tmp);
        let status = renew(&dir, &active(&dir))
            .env("LCS_SIM_CRASH_AT", point)
            .status()
            .unwrap();
        assert!(!status.success(), "{point}: the renewal should have died");
        assert_eq!(
            on_disk(&dir),
            logged_at_crash,
            "{point}: the log at the crash"
        );
        let links = renewals(&dir);
        assert_eq!(links.len(), usize::from(committed), "{point}: {links:?}");
        // The next reader sees the committed renewal's event, once.
        assert_eq!(logged(&dir), links, "{point}: as `lcs-sim events` reads it");
        assert_eq!(logged(&dir), links, "{point}: reading twice adds nothing");
        // The next writer neither loses nor repeats it.
        assert!(renew(&dir, &active(&dir)).status().unwrap().success());
        let links = renewals(&dir);
        assert_eq!(links.len(), usize::from(committed) + 1);
        assert_eq!(logged(&dir), links, "{point}: after the next renewal");
    }
}

#[test]
fn a_writer_after_a_crash_delivers_the_event_before_its_own() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = init(&tmp);
    let first = active(&dir);
    let crashed = renew(&dir, &first)
        .env("LCS_SIM_CRASH_AT", "after-commit")
        .status()
        .unwrap();
    assert!(!crashed.success());
    assert_eq!(on_disk(&dir), 0);
    // No reader in between: `store renew` itself delivers the orphaned event, then its own.
    assert!(renew(&dir, &active(&dir)).status().unwrap().success());
    assert_eq!(on_disk(&dir), 2);
    let links = renewals(&dir);
    assert_eq!(links[0].0, first);
    assert_eq!(logged(&dir), links);
}

#[test]
fn renewals_killed_at_any_moment_never_lose_or_repeat_an_event() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = init(&tmp);
    // How long one renewal takes here, so the kills spread over its whole run.
    let start = monotonic_now();
    assert!(renew(&dir, &active(&dir)).status().unwrap().success());
    let whole = start.elapsed().as_micros() as u64;
    let (mut killed, mut finished) = (0, 0);
    let mut rng: u64 = 0x9E37_79B9_7F4A_7C15;
    for _ in 0..40 {
        rng = rng.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        let at = Duration::from_micros((rng >> 33) % (whole + whole / 4));
        let mut child = renew(&dir, &active(&dir)).spawn().unwrap();
        // The moment of the kill, not a wait for something to happen.
        std::thread::sleep(at);
        let _ = child.kill(); // SIGKILL; an error means it had exited already
        match child.wait().unwrap().success() {
            true => finished += 1,
            false => killed += 1,
        }
    }
    assert!(killed >= 10, "only {killed} of 40 renewals were killed");
    let links = renewals(&dir);
    eprintln!(
        "{killed} of 40 killed, {finished} finished, {} committed",
        links.len() - 1
    );
    assert!(links.len() > 1, "no killed renewal committed: {links:?}");
    assert_eq!(logged(&dir), links, "{killed} killed, {finished} finished");
}
