//! One named regression test per built-in scenario (ripgrep's `tests/regression.rs` style): the
//! scenario that reproduces each behaviour must keep reproducing it, with its own expectations
//! and the specifics below.

use lcs_sim::sim::{self, Report, Scenario};

fn run(name: &str) -> Report {
    let scenario = Scenario::load(name).unwrap();
    let report = sim::run(&scenario, scenario.seed).unwrap();
    let failed: Vec<_> = report.checks.iter().filter(|c| !c.passed).collect();
    assert!(
        failed.is_empty(),
        "{name}: failed expectations {failed:#?}\n{}",
        report.verdict
    );
    report
}

#[test]
fn kb836410_shows_all_four_symptoms_and_the_full_fix_restores_everything() {
    let r = run("kb836410");
    let s = &r.symptoms;
    assert!(s.im_queued_then_timed_out && s.tls_connections_reached_zero);
    assert!(s.clients_cannot_connect_over_tls && s.tls_listener_fails_on_restart);
    assert_eq!(r.restart_events, [14347, 14336, 14352]);
    let fix = r.fix.as_ref().unwrap();
    assert_eq!(fix.rebound, ["mtls-5062", "route-fabrikam.com", "tls-5061"]);
    assert!(fix.listener_started);
    assert_eq!(fix.clients_reconnected, fix.clients);
    assert!(r.unfixed.is_empty());
    assert!(
        r.verdict.starts_with("KB836410 REPRODUCED"),
        "{}",
        r.verdict
    );
    assert!(r.connect_failures.contains_key("tls_alert_access_denied"));
    assert_eq!((r.messages.unanswered, r.messages.duplicate_finals), (0, 0));
    assert!(
        r.messages.federated[2] > 0,
        "federated messages timed out during the outage"
    );
}

#[test]
fn kb836410_partial_fix_names_the_connections_it_forgot() {
    let r = run("kb836410-partial-fix");
    assert_eq!(r.unfixed, ["mtls-5062", "route-fabrikam.com"]);
    assert_eq!(r.fix.as_ref().unwrap().rebound, ["tls-5061"]);
    assert!(
        r.verdict.contains("PARTIAL FIX") && r.verdict.contains("mtls-5062"),
        "{}",
        r.verdict
    );
}

#[test]
fn renewal_acl_kept_has_no_running_outage_but_fails_on_the_archived_reference() {
    let r = run("renewal-acl-kept");
    assert!(!r.symptoms.tls_connections_reached_zero && !r.symptoms.im_queued_then_timed_out);
    assert!(r.symptoms.tls_listener_fails_on_restart);
    assert_eq!(
        r.restart_failure_cause.as_deref(),
        Some("certificate_not_found")
    );
    assert!(!r.connect_failures.contains_key("tls_alert_access_denied"));
}

#[test]
fn hot_rebind_swaps_credentials_without_restart_or_drops() {
    let r = run("hot-rebind");
    let fix = r.fix.as_ref().unwrap();
    assert!(fix.live);
    assert!(!r.symptoms.tls_listener_fails_on_restart);
    assert!(r.timeline.iter().all(|m| !m.what.contains("restarts")));
    assert!(r.unfixed.is_empty());
}

#[test]
fn group_policy_renews_at_a_refresh_once_the_certificate_is_old_enough() {
    let r = run("group-policy");
    let renewal = r
        .timeline
        .iter()
        .find(|m| {
            m.what
                .starts_with("Group Policy refresh: auto-enrollment renews")
        })
        .expect("a refresh renewed");
    // The first refresh falls within the first 90-minute interval, and the outage follows it.
    assert!(renewal.t < 90 * 60, "{renewal:?}");
    let first_failure = r
        .timeline
        .iter()
        .find(|m| m.what.starts_with("first client cannot connect"))
        .unwrap();
    assert!(first_failure.t >= renewal.t);
    assert_eq!(
        r.timeline
            .iter()
            .filter(|m| m.what.contains("renews"))
            .count(),
        1,
        "renewed once: the new certificate is young"
    );
    assert!(r.symptoms.tls_connections_reached_zero);
}
