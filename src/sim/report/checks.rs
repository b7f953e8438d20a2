//! The scenario's expectations checked against what the run showed, and the verdict.
//!
//! Both read only [`Facts`], computed once from the run, so the verdict, the checks, the text
//! and the JSON cannot disagree.

use super::super::scenario::Expectations;
use super::{Check, FixReport, FixVerdict, Messages, Seen, Symptoms, Verdict};

/// Everything the checks and the verdict read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts {
    /// The KB's symptoms.
    pub symptoms: Symptoms,
    /// Clients failed to connect after the renewal while the service still ran.
    pub outage_while_running: bool,
    /// Event ids at the first failed restart, newest first.
    pub restart_events: Vec<u32>,
    /// Why TLS failed at that restart.
    pub restart_failure_cause: Option<String>,
    /// The fix.
    pub fix: Option<FixReport>,
    /// Connections failing at the end, or at the next restart.
    pub unfixed: Vec<String>,
    /// Federated MESSAGEs delivered, none timed out, at the end.
    pub federated_flow_at_end: bool,
    /// Attempts started after the live rebind that failed (None: no rebind).
    pub handshake_failures_after_rebind: Option<usize>,
    /// Connections the server closed after the live rebind, before any restart (None: no
    /// rebind).
    pub connections_dropped_by_rebind: Option<usize>,
    /// MESSAGE totals.
    pub messages: Messages,
}

impl Facts {
    /// Every user was registered by the server after the fix took effect.
    pub fn all_clients_reconnected(&self) -> bool {
        self.fix
            .as_ref()
            .is_some_and(|f| f.clients_reconnected == f.clients)
    }

    /// Every MESSAGE got exactly one final response (or was lost with its connection).
    pub fn every_message_answered_once(&self) -> bool {
        self.messages.unanswered == 0 && self.messages.duplicate_finals == 0
    }
}

fn check(name: &str, expected: String, actual: String) -> Check {
    Check {
        name: name.into(),
        passed: expected == actual,
        expected,
        actual,
    }
}

fn flag(name: &str, expected: Option<bool>, actual: bool) -> Option<Check> {
    expected.map(|x| check(name, x.to_string(), actual.to_string()))
}

/// One check per expectation given, in the order `[expect]` documents them.
pub fn checks(e: &Expectations, f: &Facts) -> Vec<Check> {
    let s = &f.symptoms;
    let sorted = |v: &[String]| {
        let mut v = v.to_vec();
        v.sort();
        format!("{v:?}")
    };
    [
        flag(
            "im_queued_then_timed_out",
            e.im_queued_then_timed_out,
            s.im_queued_then_timed_out,
        ),
        flag(
            "tls_connections_reached_zero",
            e.tls_connections_reached_zero,
            s.tls_connections_reached_zero,
        ),
        flag(
            "clients_cannot_connect_over_tls",
            e.clients_cannot_connect_over_tls,
            s.clients_cannot_connect_over_tls,
        ),
        flag(
            "tls_listener_fails_on_restart",
            e.tls_listener_fails_on_restart,
            s.tls_listener_fails_on_restart,
        ),
        // Exactly these, in this order (newest first, as Event Viewer lists them).
        e.restart_events.as_ref().map(|x| {
            check(
                "restart_events",
                format!("{x:?}"),
                format!("{:?}", f.restart_events),
            )
        }),
        e.restart_failure_cause.as_ref().map(|x| {
            let actual = f.restart_failure_cause.as_deref().unwrap_or("none");
            check("restart_failure_cause", x.clone(), actual.into())
        }),
        flag(
            "outage_while_running",
            e.outage_while_running,
            f.outage_while_running,
        ),
        e.unfixed
            .as_ref()
            .map(|x| check("unfixed", sorted(x), sorted(&f.unfixed))),
        flag(
            "all_clients_reconnected",
            e.all_clients_reconnected,
            f.all_clients_reconnected(),
        ),
        flag(
            "federated_messages_flow_at_end",
            e.federated_messages_flow_at_end,
            f.federated_flow_at_end,
        ),
        flag(
            "no_handshake_failures_after_rebind",
            e.no_handshake_failures_after_rebind,
            f.handshake_failures_after_rebind == Some(0),
        ),
        flag(
            "no_connections_dropped_by_rebind",
            e.no_connections_dropped_by_rebind,
            f.connections_dropped_by_rebind == Some(0),
        ),
        flag(
            "every_message_answered_once",
            e.every_message_answered_once,
            f.every_message_answered_once(),
        ),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// What the verdict says: what the run showed, and what the fix achieved.
pub fn verdict_kind(f: &Facts, renewed: bool) -> Verdict {
    let s = &f.symptoms;
    let outage = f.outage_while_running || s.tls_listener_fails_on_restart;
    let all_four = s.im_queued_then_timed_out
        && s.tls_connections_reached_zero
        && s.clients_cannot_connect_over_tls
        && s.tls_listener_fails_on_restart;
    let seen = match (renewed, outage, all_four) {
        (false, _, _) => Seen::NoRenewal,
        (true, false, _) => Seen::NoOutage,
        (true, true, true) => Seen::Reproduced,
        (true, true, false) => Seen::Outage,
    };
    // Without a renewal there is nothing to fix, whatever the scenario applied.
    let fix = match (f.fix.is_some(), f.unfixed.is_empty()) {
        _ if seen == Seen::NoRenewal => FixVerdict::NoneNeeded,
        (true, true) => FixVerdict::Fixed,
        (true, false) => FixVerdict::Partial,
        (false, true) => FixVerdict::NoneNeeded,
        (false, false) => FixVerdict::NotFixed,
    };
    Verdict { seen, fix }
}

/// One paragraph for the incident ticket, rendered from the verdict's kind.
pub fn render_verdict(v: Verdict, f: &Facts) -> String {
    let s = &f.symptoms;
    let seen: Vec<&str> = [
        (
            s.im_queued_then_timed_out,
            "instant messages queued and timed out",
        ),
        (
            s.tls_connections_reached_zero,
            "TLS connections fell to zero",
        ),
        (
            s.clients_cannot_connect_over_tls,
            "clients could not connect over TLS",
        ),
        (
            s.tls_listener_fails_on_restart,
            "the TLS listener did not start after a restart",
        ),
    ]
    .into_iter()
    .filter_map(|(on, what)| on.then_some(what))
    .collect();
    let head = match v.seen {
        Seen::NoRenewal => {
            return "NO RENEWAL: the scenario never renews the certificate, so there is nothing to reproduce.".into();
        }
        Seen::NoOutage => "NO OUTAGE: the renewal kept the service account's access and no restart used the archived reference.".to_string(),
        Seen::Reproduced => "KB836410 REPRODUCED: all four symptoms (".to_string() + &seen.join("; ") + ").",
        Seen::Outage => format!("OUTAGE: {}.", seen.join("; ")),
    };
    head + &fix_sentence(v.fix, f.fix.as_ref(), &f.unfixed)
}

fn fix_sentence(v: FixVerdict, fix: Option<&FixReport>, unfixed: &[String]) -> String {
    match (v, fix) {
        (FixVerdict::Fixed, Some(f)) => format!(
            " FIXED: {} {} the renewed certificate{}; every connection works, {} of {} users registered again.",
            if f.rebound.is_empty() {
                "no connection needed".to_string()
            } else {
                f.rebound.join(", ")
            },
            if f.live {
                "rebound live to"
            } else {
                "rebound to"
            },
            if !f.live && f.restart_at.is_none() {
                " (no restart followed: the rebinding takes effect at the next one)"
            } else {
                ""
            },
            f.clients_reconnected,
            f.clients
        ),
        (FixVerdict::Partial, _) => format!(
            " PARTIAL FIX: still failing: {} (they still name the archived certificate; rebind every connection that used it: TLS, mutual TLS and routes).",
            unfixed.join(", ")
        ),
        (FixVerdict::NotFixed, _) => {
            format!(" NOT FIXED: failing at the end: {}.", unfixed.join(", "))
        }
        (FixVerdict::NoneNeeded | FixVerdict::Fixed, _) => String::new(),
    }
}

#[cfg(test)]
/// The verdict paragraph of `f` (tests).
fn verdict(f: &Facts, renewed: bool) -> String {
    render_verdict(verdict_kind(f, renewed), f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::world::{MTLS_ID, ROUTE_ID, TLS_ID};

    fn fix(reconnected: usize) -> FixReport {
        FixReport {
            effective_at: 600,
            applied_at: 540,
            restart_at: Some(600),
            live: false,
            rebound: vec![TLS_ID.into()],
            listener_started: true,
            clients: 10,
            clients_reconnected: reconnected,
            reconnected_at: Some(700),
        }
    }

    fn only(e: Expectations, f: &Facts) -> Check {
        let mut c = checks(&e, f);
        assert_eq!(c.len(), 1, "{c:?}");
        c.remove(0)
    }

    #[test]
    fn one_check_per_expectation_given_and_none_otherwise() {
        assert!(checks(&Expectations::default(), &Facts::default()).is_empty());
    }

    #[test]
    fn each_symptom_check_follows_its_symptom() {
        let mut f = Facts::default();
        let e = Expectations {
            tls_connections_reached_zero: Some(true),
            ..Expectations::default()
        };
        assert!(!only(e.clone(), &f).passed);
        f.symptoms.tls_connections_reached_zero = true;
        let c = only(e, &f);
        assert!(c.passed && c.actual == "true", "{c:?}");
        let e = Expectations {
            tls_listener_fails_on_restart: Some(false),
            ..Expectations::default()
        };
        assert!(only(e.clone(), &f).passed);
        f.symptoms.tls_listener_fails_on_restart = true;
        assert!(!only(e, &f).passed);
    }

    #[test]
    fn all_clients_reconnected_needs_a_fix_and_every_user() {
        let e = Expectations {
            all_clients_reconnected: Some(true),
            ..Expectations::default()
        };
        let mut f = Facts::default();
        assert!(
            !only(e.clone(), &f).passed,
            "no fix: nobody came back after it"
        );
        f.fix = Some(fix(9));
        assert!(!only(e.clone(), &f).passed, "9 of 10");
        f.fix = Some(fix(10));
        assert!(only(e, &f).passed);
    }

    #[test]
    fn rebind_checks_fail_without_a_rebind_and_on_any_failure_or_drop() {
        let e = Expectations {
            no_handshake_failures_after_rebind: Some(true),
            ..Expectations::default()
        };
        let mut f = Facts::default();
        assert!(!only(e.clone(), &f).passed, "no rebind at all");
        f.handshake_failures_after_rebind = Some(1);
        assert!(!only(e.clone(), &f).passed);
        f.handshake_failures_after_rebind = Some(0);
        assert!(only(e, &f).passed);
        let e = Expectations {
            no_connections_dropped_by_rebind: Some(true),
            ..Expectations::default()
        };
        f.connections_dropped_by_rebind = Some(3);
        assert!(!only(e.clone(), &f).passed);
        f.connections_dropped_by_rebind = Some(0);
        assert!(only(e, &f).passed);
    }

    #[test]
    fn unfixed_compares_as_sets_and_restart_events_in_order() {
        let f = Facts {
            unfixed: vec![ROUTE_ID.into(), MTLS_ID.into()],
            restart_events: vec![14347, 14336, 14352],
            ..Facts::default()
        };
        let e = Expectations {
            unfixed: Some(vec![MTLS_ID.into(), ROUTE_ID.into()]),
            ..Expectations::default()
        };
        assert!(only(e, &f).passed);
        let e = Expectations {
            unfixed: Some(vec![]),
            ..Expectations::default()
        };
        assert!(!only(e, &f).passed);
        let e = Expectations {
            restart_events: Some(vec![14352, 14336, 14347]),
            ..Expectations::default()
        };
        assert!(!only(e, &f).passed, "the order is Event Viewer's");
        let e = Expectations {
            restart_failure_cause: Some("key_access_denied".into()),
            ..Expectations::default()
        };
        let c = only(e, &f);
        assert!(!c.passed && c.actual == "none", "{c:?}");
    }

    #[test]
    fn every_message_answered_once_fails_on_a_lost_or_doubled_answer() {
        let e = Expectations {
            every_message_answered_once: Some(true),
            ..Expectations::default()
        };
        let mut f = Facts::default();
        assert!(only(e.clone(), &f).passed);
        f.messages.unanswered = 1;
        assert!(!only(e.clone(), &f).passed);
        f.messages.unanswered = 0;
        f.messages.duplicate_finals = 1;
        assert!(!only(e, &f).passed);
    }

    #[test]
    fn verdict_says_what_was_seen_and_fixed() {
        let mut f = Facts::default();
        assert!(verdict(&f, false).starts_with("NO RENEWAL"));
        assert!(verdict(&f, true).starts_with("NO OUTAGE"));
        f.outage_while_running = true;
        f.symptoms.clients_cannot_connect_over_tls = true;
        assert_eq!(
            verdict(&f, true),
            "OUTAGE: clients could not connect over TLS."
        );
        f.symptoms = Symptoms {
            im_queued_then_timed_out: true,
            tls_connections_reached_zero: true,
            clients_cannot_connect_over_tls: true,
            tls_listener_fails_on_restart: true,
        };
        f.fix = Some(fix(10));
        let v = verdict(&f, true);
        assert!(v.starts_with("KB836410 REPRODUCED"), "{v}");
        assert!(v.ends_with(" FIXED: tls-5061 rebound to the renewed certificate; every connection works, 10 of 10 users registered again."), "{v}");
        f.fix.as_mut().unwrap().restart_at = None;
        assert!(verdict(&f, true).contains("no restart followed"));
        f.unfixed = vec![MTLS_ID.into()];
        let v = verdict(&f, true);
        assert!(
            v.contains(" PARTIAL FIX: still failing: mtls-5062 ") && !v.contains(" FIXED:"),
            "{v}"
        );
        f.fix = None;
        assert!(verdict(&f, true).ends_with(" NOT FIXED: failing at the end: mtls-5062."));
    }

    #[test]
    fn verdict_kind_is_what_the_paragraph_says() {
        let mut f = Facts::default();
        let kind = |f: &Facts| verdict_kind(f, true);
        assert_eq!(verdict_kind(&f, false).seen, Seen::NoRenewal);
        f.fix = Some(fix(10));
        assert_eq!(verdict_kind(&f, false).fix, FixVerdict::NoneNeeded);
        f.fix = None;
        assert_eq!(
            kind(&f),
            Verdict {
                seen: Seen::NoOutage,
                fix: FixVerdict::NoneNeeded
            }
        );
        f.symptoms.tls_listener_fails_on_restart = true;
        assert_eq!(kind(&f).seen, Seen::Outage);
        f.symptoms = Symptoms {
            im_queued_then_timed_out: true,
            tls_connections_reached_zero: true,
            clients_cannot_connect_over_tls: true,
            tls_listener_fails_on_restart: true,
        };
        f.fix = Some(fix(10));
        assert_eq!(
            kind(&f),
            Verdict {
                seen: Seen::Reproduced,
                fix: FixVerdict::Fixed
            }
        );
        f.unfixed = vec![MTLS_ID.into()];
        assert_eq!(kind(&f).fix, FixVerdict::Partial);
        f.fix = None;
        assert_eq!(kind(&f).fix, FixVerdict::NotFixed);
    }
}
