//! `lcs-sim events` and `lcs-sim doctor` on a damaged event log: both print the same warning for
//! each damaged line and carry on with the rest (they refused the whole log before).

mod common;

use common::cli::{lcs, lcs_ok as ok};

#[test]
fn events_and_doctor_skip_a_torn_tail_and_a_glued_line_with_the_same_warning() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    let d = dir.to_str().unwrap();
    ok(&["init", d]);
    let list: serde_json::Value =
        serde_json::from_str(&ok(&["store", "list", d, "--format", "json"])).unwrap();
    let thumb = list[0]["thumbprint"].as_str().unwrap().to_string();
    ok(&["store", "renew", d, &thumb]);
    let log = dir.join("events.jsonl");
    let good = std::fs::read_to_string(&log).unwrap();
    // A fragment with an event glued after it (line 2), then a torn tail (line 3).
    let glued = format!("{good}{{\"id\":14{good}{{\"id\":143");
    std::fs::write(&log, glued).unwrap();

    let events = lcs(&["events", d, "--format", "json"]);
    assert!(events.status.success(), "{events:?}");
    let shown: serde_json::Value = serde_json::from_slice(&events.stdout).unwrap();
    assert_eq!(shown.as_array().unwrap().len(), 2, "both 1001s are shown");
    let warnings = |out: &std::process::Output| -> Vec<String> {
        String::from_utf8_lossy(&out.stderr)
            .lines()
            .filter(|l| l.starts_with("warning: skipped a damaged line"))
            .map(str::to_string)
            .collect()
    };
    let from_events = warnings(&events);
    assert_eq!(from_events.len(), 2, "{from_events:?}");
    assert!(
        from_events[0].contains("events.jsonl:2:"),
        "{from_events:?}"
    );
    assert!(
        from_events[1].contains("events.jsonl:3:"),
        "{from_events:?}"
    );
    let doctor = lcs(&["doctor", d]);
    assert_eq!(warnings(&doctor), from_events, "doctor and events agree");
}
