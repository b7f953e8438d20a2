//! The report of a run: symptoms, restart events, fix, verdict, checks, time series.
//!
//! Computed from what the run recorded, never from wire bytes or thumbprints (keys and ECDSA
//! signatures are random), so the same seed gives the same report byte for byte.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::Serialize;

use super::record::{Outcome as MsgOutcome, Target};
use super::runner::{Outcome, Sample};
use super::scenario::{CONNECTION_IDS, Scenario};

/// The four symptoms KB836410 lists.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Symptoms {
    /// "Instant messaging messages are queued on the computer, and they eventually time out."
    pub im_queued_then_timed_out: bool,
    /// "The number of TLS connections to the server declines and eventually reaches zero."
    pub tls_connections_reached_zero: bool,
    /// "Windows Messenger clients cannot connect ... by using a TLS connection."
    pub clients_cannot_connect_over_tls: bool,
    /// "If you restart ..., the TLS listening port does not start."
    pub tls_listener_fails_on_restart: bool,
}

/// What the fix did.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct FixReport {
    /// Virtual seconds when it took effect (the restart after it, or the live rebind).
    pub effective_at: u64,
    /// Whether it was a live rebind (no restart).
    pub live: bool,
    /// Connections pointed at the renewed certificate.
    pub rebound: Vec<String>,
    /// Whether the TLS listener was listening once the fix took effect.
    pub listener_started: bool,
    /// Users in the scenario.
    pub clients: usize,
    /// Users that registered again after the fix took effect.
    pub clients_reconnected: usize,
}

/// MESSAGE totals, as the users saw them.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Messages {
    /// Sent.
    pub sent: u64,
    /// Answered 200.
    pub delivered: u64,
    /// Answered 408 (Timer F).
    pub timed_out: u64,
    /// Answered with another failure (480 for a user offline, ...), by status.
    pub other_failures: BTreeMap<u16, u64>,
    /// Lost because the server closed the connection (restarts).
    pub lost_on_close: u64,
    /// Never answered on a live connection (must be 0).
    pub unanswered: u64,
    /// Still waiting for an answer when the run ended (sent in its last Timer F).
    pub pending_at_end: u64,
    /// Second final responses (must be 0).
    pub duplicate_finals: u64,
    /// To the federated domain: sent, delivered, timed out.
    pub federated: [u64; 3],
}

/// One expectation of the scenario, checked.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Check {
    /// The expectation's name (the key in `[expect]`).
    pub name: String,
    /// What the scenario expects.
    pub expected: String,
    /// What happened.
    pub actual: String,
    /// Whether they agree.
    pub passed: bool,
}

/// A line of the timeline.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Moment {
    /// Virtual seconds since the start.
    pub t: u64,
    /// What happened.
    pub what: String,
}

/// One start of the service.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct StartSummary {
    /// Virtual seconds since the start of the run.
    pub t: u64,
    /// Connections listening.
    pub listening: Vec<String>,
    /// Connections and routes that did not start.
    pub failed: Vec<String>,
}

/// The whole report.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Report {
    /// Scenario name.
    pub scenario: String,
    /// How the scenario was named on the command line (a built-in name or a file path), so the
    /// report can say how to run it again.
    pub source: String,
    /// What it shows.
    pub description: String,
    /// The seed that reproduces this report.
    pub seed: u64,
    /// Virtual length in seconds.
    pub duration: u64,
    /// Number of emulated users.
    pub users: usize,
    /// What happened when.
    pub timeline: Vec<Moment>,
    /// Every start of the service (the first, and one per restart).
    pub starts: Vec<StartSummary>,
    /// The KB's symptom checklist.
    pub symptoms: Symptoms,
    /// Event ids logged at the first failed restart, newest first as Event Viewer shows them.
    pub restart_events: Vec<u32>,
    /// Why the TLS listener failed at that restart (`key_access_denied`, `certificate_not_found`).
    pub restart_failure_cause: Option<String>,
    /// The fix, if the scenario applied one.
    pub fix: Option<FixReport>,
    /// Connections that still fail at the end (or would at the next restart).
    pub unfixed: Vec<String>,
    /// One paragraph for the incident ticket.
    pub verdict: String,
    /// The scenario's expectations, checked.
    pub checks: Vec<Check>,
    /// MESSAGE totals.
    pub messages: Messages,
    /// Failed client connection attempts by reason, whole run.
    pub connect_failures: BTreeMap<String, u64>,
    /// The time series.
    pub series: Vec<Sample>,
}

impl Report {
    /// Whether every expectation held.
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.passed)
    }
}

fn secs(d: Duration) -> u64 {
    d.as_secs()
}

/// Builds the report of `outcome`.
pub fn build(scenario: &Scenario, seed: u64, outcome: &Outcome) -> Report {
    let end = scenario.duration;
    let r = &outcome.recorder;
    let applied = &outcome.applied;
    let renewal = applied.renewal_at;
    let first_restart = renewal.and_then(|at| applied.restarts.iter().copied().find(|t| *t >= at));
    let running_until = first_restart.unwrap_or(end);
    let last_fix = applied.fixes.last().cloned();
    let fix_effective = last_fix.as_ref().map(|(t, live, _)| {
        if *live {
            *t
        } else {
            applied
                .restarts
                .iter()
                .copied()
                .find(|r| r >= t)
                .unwrap_or(end)
        }
    });

    // Symptoms.
    let mut symptoms = Symptoms {
        im_queued_then_timed_out: false,
        tls_connections_reached_zero: false,
        clients_cannot_connect_over_tls: false,
        tls_listener_fails_on_restart: false,
    };
    let mut failed_start = None;
    if let Some(renewed) = renewal {
        let queued_before = outcome
            .series
            .iter()
            .take_while(|s| Duration::from_secs(s.t) <= renewed)
            .last()
            .map_or(0, |s| s.queued);
        let queued_after = outcome
            .series
            .last()
            .map_or(0, |s| s.queued)
            .max(outcome.server_totals.sip.queued);
        let federated_408 = r.messages.iter().any(|m| {
            m.sent >= renewed
                && m.target == Target::Federated
                && m.outcome == MsgOutcome::Final(408)
        });
        symptoms.im_queued_then_timed_out = queued_after > queued_before && federated_408;
        let had_tls = outcome.series.iter().any(|s| s.tls_connections > 0);
        symptoms.tls_connections_reached_zero = had_tls
            && outcome.series.iter().any(|s| {
                let t = Duration::from_secs(s.t);
                t > renewed && t < running_until && s.tls_connections == 0
            });
        let until = fix_effective.unwrap_or(end);
        symptoms.clients_cannot_connect_over_tls = r
            .connect_failures
            .iter()
            .any(|(t, _, _)| *t >= renewed && *t < until);
        failed_start = outcome
            .starts
            .iter()
            .find(|s| s.at >= renewed && s.failed.iter().any(|f| f.id == "tls-5061"));
        symptoms.tls_listener_fails_on_restart = failed_start.is_some();
    }
    let restart_events = failed_start
        .map(|s| kb_events_newest_first(&s.events))
        .unwrap_or_default();
    let restart_failure_cause = failed_start.and_then(|s| s.causes.get("tls-5061").cloned());

    // Messages.
    let mut m = Messages {
        duplicate_finals: r.duplicate_finals,
        ..Messages::default()
    };
    m.sent = r.messages_sent;
    for rec in &r.messages {
        let fed = rec.target == Target::Federated;
        if fed {
            m.federated[0] += 1;
        }
        match rec.outcome {
            MsgOutcome::Final(200) => {
                m.delivered += 1;
                if fed {
                    m.federated[1] += 1;
                }
            }
            MsgOutcome::Final(408) => {
                m.timed_out += 1;
                if fed {
                    m.federated[2] += 1;
                }
            }
            MsgOutcome::Final(s) => *m.other_failures.entry(s).or_default() += 1,
            MsgOutcome::LostOnClose => m.lost_on_close += 1,
            MsgOutcome::Unanswered => m.unanswered += 1,
            MsgOutcome::PendingAtEnd => m.pending_at_end += 1,
        }
    }

    // Fix.
    let fix = last_fix.as_ref().map(|(_, live, _)| {
        let effective = fix_effective.expect("set with last_fix");
        let rebound: BTreeSet<String> = applied
            .fixes
            .iter()
            .flat_map(|(_, _, r)| r.iter().cloned())
            .collect();
        let listener_started = if *live {
            outcome
                .starts
                .last()
                .is_some_and(|s| s.listening.iter().any(|l| l == "tls-5061"))
        } else {
            outcome
                .starts
                .iter()
                .find(|s| s.at >= effective)
                .is_some_and(|s| s.listening.iter().any(|l| l == "tls-5061"))
        };
        let reconnected: BTreeSet<usize> = r
            .registrations
            .iter()
            .filter(|(t, _)| *t >= effective)
            .map(|(_, u)| *u)
            .collect();
        FixReport {
            effective_at: secs(effective),
            live: *live,
            rebound: rebound.into_iter().collect(),
            listener_started,
            clients: scenario.users.count,
            clients_reconnected: reconnected.len(),
        }
    });

    // Federated flow at the end: the last fifth of the run (after any fix).
    let window_start = end
        .mul_f64(0.8)
        .max(fix_effective.map_or(Duration::ZERO, |t| t + Duration::from_secs(120)));
    let tail: Vec<_> = r
        .messages
        .iter()
        .filter(|x| x.target == Target::Federated && x.sent >= window_start)
        .collect();
    let federated_flow_at_end = tail.iter().any(|x| x.outcome == MsgOutcome::Final(200))
        && !tail.iter().any(|x| x.outcome == MsgOutcome::Final(408));

    let outage_while_running = renewal.is_some_and(|renewed| {
        r.connect_failures
            .iter()
            .any(|(t, _, _)| *t >= renewed && *t < running_until)
    });
    let rebind_at = applied
        .fixes
        .iter()
        .find(|(_, live, _)| *live)
        .map(|(t, _, _)| *t);

    // Timeline.
    // (moment, rank): at the same second, timeline steps come first, then service starts, then
    // what clients observed.
    let mut timeline: Vec<(Moment, u8)> = applied
        .steps
        .iter()
        .map(|(t, what)| {
            (
                Moment {
                    t: secs(*t),
                    what: what.clone(),
                },
                0,
            )
        })
        .collect();
    if let Some(renewed) = renewal {
        if let Some((t, _, reason)) = r.connect_failures.iter().find(|(t, _, _)| *t >= renewed) {
            timeline.push((
                Moment {
                    t: secs(*t),
                    what: format!("first client cannot connect over TLS ({reason})"),
                },
                2,
            ));
        }
        if let Some(x) = r
            .messages
            .iter()
            .filter(|x| x.sent >= renewed && x.outcome == MsgOutcome::Final(408))
            .min_by_key(|x| x.done)
        {
            timeline.push((
                Moment {
                    t: secs(x.done),
                    what: "first instant message times out (408 after Timer F)".into(),
                },
                2,
            ));
        }
        if let Some(s) = outcome.series.iter().find(|s| {
            Duration::from_secs(s.t) > renewed
                && Duration::from_secs(s.t) < running_until
                && s.tls_connections == 0
        }) {
            timeline.push((
                Moment {
                    t: s.t,
                    what: "TLS connections reach zero".into(),
                },
                2,
            ));
        }
    }
    for s in &outcome.starts {
        if s.at.is_zero() && s.failed.is_empty() {
            timeline.push((
                Moment {
                    t: 0,
                    what: format!("service starts: {} listening", s.listening.join(", ")),
                },
                1,
            ));
            continue;
        }
        let what = if s.failed.is_empty() {
            format!("service starts: {} listening", s.listening.join(", "))
        } else {
            let failed: Vec<&str> = s.failed.iter().map(|f| f.id.as_str()).collect();
            let ids: Vec<String> = kb_events_newest_first(&s.events)
                .iter()
                .map(u32::to_string)
                .collect();
            format!(
                "service starts: {} listening; NOT STARTED: {} (events {})",
                if s.listening.is_empty() {
                    "nothing".into()
                } else {
                    s.listening.join(", ")
                },
                failed.join(", "),
                ids.join(", ")
            )
        };
        timeline.push((
            Moment {
                t: secs(s.at),
                what,
            },
            1,
        ));
    }
    if let Some(f) = &fix {
        // When the last of the users who came back registered.
        let mut seen = BTreeSet::new();
        let last = r
            .registrations
            .iter()
            .filter(|(t, _)| *t >= Duration::from_secs(f.effective_at))
            .find(|(_, u)| seen.insert(*u) && seen.len() == f.clients_reconnected);
        if let Some((t, _)) = last.filter(|_| f.clients_reconnected > 0) {
            let what = format!(
                "{} of {} users registered again",
                f.clients_reconnected, f.clients
            );
            timeline.push((Moment { t: secs(*t), what }, 2));
        }
    }
    timeline.sort_by_key(|(m, rank)| (m.t, *rank));
    let timeline: Vec<Moment> = timeline.into_iter().map(|(m, _)| m).collect();

    let unfixed = outcome.unfixed.clone();
    let verdict = verdict(
        &symptoms,
        outage_while_running,
        &fix,
        &unfixed,
        renewal.is_some(),
    );

    // Checks.
    let e = &scenario.expect;
    let mut checks = Vec::new();
    let mut check = |name: &str, expected: String, actual: String| {
        checks.push(Check {
            name: name.into(),
            passed: expected == actual,
            expected,
            actual,
        });
    };
    let b = |v: bool| v.to_string();
    if let Some(x) = e.im_queued_then_timed_out {
        check(
            "im_queued_then_timed_out",
            b(x),
            b(symptoms.im_queued_then_timed_out),
        );
    }
    if let Some(x) = e.tls_connections_reached_zero {
        check(
            "tls_connections_reached_zero",
            b(x),
            b(symptoms.tls_connections_reached_zero),
        );
    }
    if let Some(x) = e.clients_cannot_connect_over_tls {
        check(
            "clients_cannot_connect_over_tls",
            b(x),
            b(symptoms.clients_cannot_connect_over_tls),
        );
    }
    if let Some(x) = e.tls_listener_fails_on_restart {
        check(
            "tls_listener_fails_on_restart",
            b(x),
            b(symptoms.tls_listener_fails_on_restart),
        );
    }
    if let Some(x) = &e.restart_events {
        // Exactly these, in this order (newest first, as Event Viewer lists them).
        check(
            "restart_events",
            format!("{x:?}"),
            format!("{restart_events:?}"),
        );
    }
    if let Some(x) = &e.restart_failure_cause {
        check(
            "restart_failure_cause",
            x.clone(),
            restart_failure_cause
                .clone()
                .unwrap_or_else(|| "none".into()),
        );
    }
    if let Some(x) = e.outage_while_running {
        check("outage_while_running", b(x), b(outage_while_running));
    }
    if let Some(x) = &e.unfixed {
        let mut want = x.clone();
        want.sort();
        let mut got = unfixed.clone();
        got.sort();
        check("unfixed", format!("{want:?}"), format!("{got:?}"));
    }
    if let Some(x) = e.all_clients_reconnected {
        let actual = fix
            .as_ref()
            .is_some_and(|f| f.clients_reconnected == f.clients);
        check("all_clients_reconnected", b(x), b(actual));
    }
    if let Some(x) = e.federated_messages_flow_at_end {
        check(
            "federated_messages_flow_at_end",
            b(x),
            b(federated_flow_at_end),
        );
    }
    if let Some(x) = e.no_handshake_failures_after_rebind {
        let actual =
            rebind_at.is_some_and(|at| !r.connect_failures.iter().any(|(t, _, _)| *t >= at));
        check("no_handshake_failures_after_rebind", b(x), b(actual));
    }
    if let Some(x) = e.no_connections_dropped_by_rebind {
        let next_restart = rebind_at
            .and_then(|at| applied.restarts.iter().copied().find(|t| *t >= at))
            .unwrap_or(end);
        let actual = rebind_at.is_some_and(|at| {
            !r.closed_by_server
                .iter()
                .any(|(t, _)| *t >= at && *t < next_restart)
        });
        check("no_connections_dropped_by_rebind", b(x), b(actual));
    }
    if let Some(x) = e.every_message_answered_once {
        check(
            "every_message_answered_once",
            b(x),
            b(m.unanswered == 0 && m.duplicate_finals == 0),
        );
    }

    let connect_failures = r.failures_between(Duration::ZERO, end + Duration::from_secs(3600));
    debug_assert!(unfixed.iter().all(|u| CONNECTION_IDS.contains(&u.as_str())));
    Report {
        scenario: scenario.name.clone(),
        source: scenario.name.clone(),
        description: scenario.description.clone(),
        seed,
        duration: secs(end),
        users: scenario.users.count,
        timeline,
        starts: outcome
            .starts
            .iter()
            .map(|s| StartSummary {
                t: secs(s.at),
                listening: s.listening.clone(),
                failed: s.failed.iter().map(|f| f.id.clone()).collect(),
            })
            .collect(),
        symptoms,
        restart_events,
        restart_failure_cause,
        fix,
        unfixed,
        verdict,
        checks,
        messages: m,
        connect_failures,
        series: outcome.series.clone(),
    }
}

/// The KB836410 start-failure events (14336..=14352) of a start, distinct, newest first as
/// Event Viewer lists them.
fn kb_events_newest_first(events: &[u32]) -> Vec<u32> {
    let mut out = Vec::new();
    for id in events.iter().rev() {
        if (14336..=14352).contains(id) && !out.contains(id) {
            out.push(*id);
        }
    }
    out
}

fn verdict(
    s: &Symptoms,
    outage_while_running: bool,
    fix: &Option<FixReport>,
    unfixed: &[String],
    renewed: bool,
) -> String {
    if !renewed {
        return "NO RENEWAL: the scenario never renews the certificate, so there is nothing to reproduce.".into();
    }
    let mut seen = Vec::new();
    if s.im_queued_then_timed_out {
        seen.push("instant messages queued and timed out");
    }
    if s.tls_connections_reached_zero {
        seen.push("TLS connections fell to zero");
    }
    if s.clients_cannot_connect_over_tls {
        seen.push("clients could not connect over TLS");
    }
    if s.tls_listener_fails_on_restart {
        seen.push("the TLS listener did not start after a restart");
    }
    let outage = outage_while_running || s.tls_listener_fails_on_restart;
    let head = if !outage {
        "NO OUTAGE: the renewal kept the service account's access and no restart used the archived reference.".to_string()
    } else if seen.len() == 4 {
        "KB836410 REPRODUCED: all four symptoms (".to_string() + &seen.join("; ") + ")."
    } else {
        format!("OUTAGE: {}.", seen.join("; "))
    };
    let tail = match (fix, unfixed.is_empty()) {
        (Some(f), true) => format!(
            " FIXED: {} {} the renewed certificate; every connection works, {} of {} users registered again.",
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
            f.clients_reconnected,
            f.clients
        ),
        (Some(_), false) => format!(
            " PARTIAL FIX: still failing: {} (they still name the archived certificate; rebind every connection that used it: TLS, mutual TLS and routes).",
            unfixed.join(", ")
        ),
        (None, true) => String::new(),
        (None, false) => format!(" NOT FIXED: failing at the end: {}.", unfixed.join(", ")),
    };
    head + &tail
}
