//! `lcs-sim reproduce` as a user and a CI job drive it: formats, exit codes, bad input.

mod common;

use common::cli::lcs;

use serde_json::Value;

/// A small scenario (a few seconds of wall time even in a debug build).
const SMALL: &str = r#"
name = "small"
description = "ten users, renewal, failed restart, fix"
seed = 11
duration = "20m"
[users]
count = 10
hosts = 1
message_interval = "1m"
connection_lifetime = "2m"
backoff_max = "20s"
[[step]]
at = "2m"
action = "renew"
[[step]]
at = "8m"
action = "restart"
[[step]]
at = "10m"
action = "fix"
[[step]]
at = "11m"
action = "restart"
[expect]
tls_listener_fails_on_restart = true
restart_events = [14347, 14336, 14352]
unfixed = []
every_message_answered_once = true
"#;

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn list_shows_the_builtins() {
    let out = lcs(&["reproduce", "--list"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let listed: Vec<&str> = text
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(
        listed,
        [
            "kb836410",
            "kb836410-partial-fix",
            "renewal-acl-kept",
            "hot-rebind",
            "group-policy",
            "auto-rebind",
            "auto-rebind-acl-lost"
        ]
    );
}

#[test]
fn json_report_has_the_documented_fields_and_holds_its_expectations() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(&dir, "small.toml", SMALL);
    let out = lcs(&["reproduce", "--scenario", &file, "--format", "json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["scenario"], "small");
    assert_eq!(r["seed"], 11);
    for k in [
        "im_queued_then_timed_out",
        "tls_connections_reached_zero",
        "clients_cannot_connect_over_tls",
        "tls_listener_fails_on_restart",
    ] {
        assert!(r["symptoms"][k].is_boolean(), "{k}");
    }
    assert_eq!(r["symptoms"]["tls_listener_fails_on_restart"], true);
    assert_eq!(
        r["restart_events"],
        serde_json::json!([14347, 14336, 14352])
    );
    assert_eq!(
        r["fix"]["rebound"],
        serde_json::json!(["mtls-5062", "route-fabrikam.com", "tls-5061"])
    );
    assert_eq!(r["fix"]["listener_started"], true);
    assert_eq!(r["fix"]["clients"], 10);
    assert_eq!(r["fix"]["clients_reconnected"], 10);
    assert_eq!(r["fix"]["applied_at"], 600);
    assert_eq!(r["fix"]["restart_at"], 660);
    assert_eq!(r["fix"]["effective_at"], 660);
    assert!(r["fix"]["reconnected_at"].as_u64().unwrap() >= 660);
    assert_eq!(r["unfixed"], serde_json::json!([]));
    let verdict = r["verdict"].as_str().unwrap();
    assert!(
        verdict.contains(" FIXED: ")
            && !verdict.contains("NOT FIXED")
            && !verdict.contains("PARTIAL"),
        "{verdict}"
    );
    let series = r["series"].as_array().unwrap();
    assert_eq!(series.len(), 21);
    // Users arrive in the first minute: by minute 1 all ten hold a TLS connection.
    assert_eq!(series[1]["tls_connections"], 10);
    assert_eq!(series[1]["registered"], 10);
}

#[test]
fn the_same_seed_prints_byte_identical_json() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(&dir, "small.toml", SMALL);
    let args = [
        "reproduce",
        "--scenario",
        &file,
        "--seed",
        "5",
        "--format",
        "json",
    ];
    let (a, b) = (lcs(&args), lcs(&args));
    assert_eq!(a.status.code(), Some(0));
    assert!(!a.stdout.is_empty());
    assert_eq!(a.stdout, b.stdout);
}

#[test]
fn text_report_is_readable_and_names_the_seed() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(&dir, "small.toml", SMALL);
    let out = lcs(&["reproduce", "--scenario", &file, "--seed", "99"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    for needle in [
        "(seed 99)",
        "Timeline (virtual time)",
        "[x] After a restart the TLS listening port does not start",
        "Verdict:",
        &format!("lcs-sim reproduce --scenario {file} --seed 99"),
    ] {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }
}

#[test]
fn failed_expectation_exits_1_and_junit_reports_it() {
    let dir = tempfile::tempdir().unwrap();
    let wrong = SMALL.replace("unfixed = []", "unfixed = [\"tls-5061\"]");
    let file = write(&dir, "wrong.toml", &wrong);
    let svg = dir.path().join("chart.svg");
    let out = lcs(&[
        "reproduce",
        "--scenario",
        &file,
        "--format",
        "junit",
        "--svg",
        svg.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let xml = String::from_utf8(out.stdout).unwrap();
    assert!(
        xml.contains("<testsuite name=\"lcs-sim reproduce small\""),
        "{xml}"
    );
    assert_eq!(xml.matches("<testcase ").count(), 4, "{xml}");
    assert_eq!(xml.matches("<failure").count(), 1, "{xml}");
    assert!(xml.contains("name=\"seed\" value=\"11\""), "{xml}");
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("1 expectation(s) failed"), "{err}");
    let chart = std::fs::read_to_string(&svg).unwrap();
    assert!(
        chart.contains("<svg") && chart.contains("TLS connections"),
        "{}",
        &chart[..200.min(chart.len())]
    );
}

#[test]
fn bad_input_exits_2_with_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let out = lcs(&["reproduce", "--scenario", "no-such-thing"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("unknown scenario") && err.contains("kb836410"),
        "{err}"
    );

    let broken = write(
        &dir,
        "broken.toml",
        "name = \"x\"\nduration = \"1h\"\n[users\n",
    );
    let out = lcs(&["reproduce", "--scenario", &broken]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("broken.toml") && err.contains("line 3"),
        "{err}"
    );

    let bad_field = write(
        &dir,
        "field.toml",
        "name = \"x\"\nduration = \"1h\"\n[users]\nhosts = 0\n",
    );
    let out = lcs(&["reproduce", "--scenario", &bad_field]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("field.toml") && err.contains("users.hosts"),
        "{err}"
    );

    let unknown_key = write(
        &dir,
        "key.toml",
        "name = \"x\"\nduration = \"1h\"\n[expect]\nflying_pigs = true\n",
    );
    let out = lcs(&["reproduce", "--scenario", &unknown_key]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("flying_pigs") && err.contains("line 4"),
        "{err}"
    );
}

fn sweep(args: &[&str]) -> (Option<i32>, String, String) {
    let out = lcs(args);
    (
        out.status.code(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn seed_sweep_json_has_exactly_the_documented_fields() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(&dir, "small.toml", SMALL);
    let (code, out, err) = sweep(&[
        "reproduce",
        "--scenario",
        &file,
        "--seeds",
        "3..5",
        "--format",
        "json",
    ]);
    assert_eq!(code, Some(0), "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        ["failed", "passed", "runs", "scenario", "seeds", "wall_s"]
    );
    assert_eq!(v["scenario"], "small");
    assert_eq!(v["seeds"], serde_json::json!({"from": 3, "to": 5}));
    assert_eq!(
        (v["runs"].as_u64(), v["passed"].as_u64()),
        (Some(3), Some(3))
    );
    assert_eq!(v["failed"], serde_json::json!([]));
    assert!(v["wall_s"].as_f64().unwrap() > 0.0);
}

#[test]
fn seed_sweep_names_each_failing_seed_and_how_to_replay_it_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let wrong = SMALL.replace("unfixed = []", "unfixed = [\"tls-5061\"]");
    let file = write(&dir, "wrong.toml", &wrong);
    let (code, out, _) = sweep(&[
        "reproduce",
        "--scenario",
        &file,
        "--seeds",
        "2",
        "--format",
        "json",
    ]);
    assert_eq!(code, Some(1));
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["seeds"], serde_json::json!({"from": 1, "to": 2}));
    assert_eq!(
        v["failed"],
        serde_json::json!([{"seed": 1, "checks": ["unfixed"]}, {"seed": 2, "checks": ["unfixed"]}])
    );
    let (code, text, _) = sweep(&[
        "reproduce",
        "--scenario",
        &file,
        "--seeds",
        "4..9",
        "--shard",
        "1/3",
    ]);
    assert_eq!(code, Some(1));
    for seed in [5, 8] {
        assert!(
            text.contains(&format!("FAILED seed {seed}: unfixed")),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "lcs-sim reproduce --scenario {file} --seed {seed}"
            )),
            "{text}"
        );
    }
    assert!(text.contains("2 runs, 0 passed, 2 failed"), "{text}");
}

#[test]
fn bad_seed_ranges_and_shards_exit_2_saying_what_is_expected() {
    for (args, needle) in [
        (vec!["--seeds", "10..1"], "A..B"),
        (vec!["--seeds", "x"], "A..B"),
        (vec!["--seeds", "1..4", "--shard", "3/2"], "i/N"),
        (vec!["--shard", "0/2"], "--seeds"),
        (vec!["--seeds", "1..2", "--seed", "3"], "--seed"),
        (vec!["--seeds", "1..2", "--format", "junit"], "junit"),
    ] {
        let mut all = vec!["reproduce"];
        all.extend(args.iter());
        let (code, out, err) = sweep(&all);
        assert_eq!(code, Some(2), "{all:?}: {err}");
        assert!(out.is_empty(), "{all:?}");
        assert!(err.contains(needle), "{all:?}: {err}");
    }
}

/// A scenario "file" that never ends (`/dev/zero`) is refused at the size cap, fast, with exit 2
/// naming it, instead of being read into memory (4.2 GB in 3 s before).
#[test]
fn an_endless_scenario_file_is_refused_at_the_size_cap() {
    let out = lcs(&["reproduce", "--scenario", "/dev/zero"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("/dev/zero") && stderr.contains("larger than"),
        "{stderr}"
    );
}

#[test]
fn an_output_that_cannot_be_written_exits_3_not_bad_input() {
    let tmp = tempfile::tempdir().unwrap();
    let scenario = tmp.path().join("small.toml");
    std::fs::write(&scenario, SMALL).unwrap();
    let chart = tmp.path().join("no-such-folder").join("chart.svg");
    let out = lcs(&[
        "reproduce",
        "--scenario",
        scenario.to_str().unwrap(),
        "--svg",
        chart.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("chart.svg"), "names the file: {stderr}");
}

/// `--seeds 0..18446744073709551615` takes seeds as it runs them (issue 15 §5): after two
/// seconds of CPU time the sweep is still running with its memory far below what collecting the
/// range would take (the old code's Vec of seeds passed 4 GiB within seconds).
#[cfg(target_os = "linux")]
#[test]
fn the_widest_seed_range_runs_in_bounded_memory() {
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    let file = write(&dir, "small.toml", SMALL);
    let mut child = Command::new(common::cli::LCS)
        .args(["reproduce", "--scenario", &file, "--jobs", "1"])
        .args(["--seeds", "0..18446744073709551615"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let proc = format!("/proc/{}", child.id());
    let limit_kib = 512 * 1024;
    let ticks_per_s = 100; // USER_HZ on Linux
    let outcome = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Err(format!("the sweep ended: {status}"));
        }
        let status = std::fs::read_to_string(format!("{proc}/status")).unwrap_or_default();
        let rss_kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0);
        if rss_kib > limit_kib {
            break Err(format!("{rss_kib} KiB resident"));
        }
        let stat = std::fs::read_to_string(format!("{proc}/stat")).unwrap_or_default();
        let cpu: u64 = stat
            .rsplit(')')
            .next()
            .map(|rest| rest.split_whitespace().skip(11).take(2))
            .into_iter()
            .flatten()
            .filter_map(|v| v.parse::<u64>().ok())
            .sum();
        if cpu >= 2 * ticks_per_s {
            break Ok(rss_kib);
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let _ = child.kill();
    let _ = child.wait();
    let rss = outcome.unwrap();
    assert!(rss > 0 && rss < limit_kib, "{rss} KiB");
}
