//! The report as text, fit to paste into an incident ticket.

use std::fmt::Write as _;

use crate::sim::Report;

use crate::sim::report::FixReport;
use crate::sim::report::timeline::hms;

/// The fix line: what was applied when, the restart that put it into effect (or that there was
/// none), whether TLS listened, and how many users the server registered after it, and when.
pub fn fix_line(f: &FixReport) -> String {
    let how = if f.live {
        format!("live rebind at {}", hms(f.applied_at))
    } else {
        match f.restart_at {
            Some(r) => format!(
                "Change Certificate at {}, restart at {}",
                hms(f.applied_at),
                hms(r)
            ),
            None => format!(
                "Change Certificate at {}, no restart after it",
                hms(f.applied_at)
            ),
        }
    };
    let back = match f.reconnected_at {
        Some(t) => format!(
            "{} of {} users registered again by {}",
            f.clients_reconnected,
            f.clients,
            hms(t)
        ),
        None => format!("0 of {} users registered again", f.clients),
    };
    format!(
        "Fix ({how}): rebound {}; TLS listener {}; {back}",
        if f.rebound.is_empty() {
            "nothing".into()
        } else {
            f.rebound.join(", ")
        },
        if f.listener_started {
            "listening"
        } else {
            "NOT listening"
        },
    )
}

/// Renders the report.
pub fn render(r: &Report) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "lcs-sim reproduce: scenario {} (seed {})",
        r.scenario, r.seed
    );
    if !r.description.is_empty() {
        let _ = writeln!(o, "{}", r.description);
    }
    let _ = writeln!(
        o,
        "{} emulated Windows Messenger users, {} of virtual time.",
        r.users,
        hms(r.duration)
    );
    let _ = writeln!(o, "\nTimeline (virtual time)");
    for m in &r.timeline {
        let _ = writeln!(o, "  {}  {}", hms(m.t), m.what);
    }
    let _ = writeln!(o, "\nSymptoms (KB836410)");
    let mark = |b: bool| if b { "[x]" } else { "[ ]" };
    let s = &r.symptoms;
    let _ = writeln!(
        o,
        "  {} Instant messages are queued and eventually time out",
        mark(s.im_queued_then_timed_out)
    );
    let _ = writeln!(
        o,
        "  {} The number of TLS connections declines and reaches zero",
        mark(s.tls_connections_reached_zero)
    );
    let _ = writeln!(
        o,
        "  {} Windows Messenger clients cannot connect over TLS",
        mark(s.clients_cannot_connect_over_tls)
    );
    let _ = writeln!(
        o,
        "  {} After a restart the TLS listening port does not start",
        mark(s.tls_listener_fails_on_restart)
    );
    if !r.restart_events.is_empty() {
        let ids: Vec<String> = r.restart_events.iter().map(u32::to_string).collect();
        let _ = writeln!(
            o,
            "\nApplication log at the failed restart (newest first): {}{}",
            ids.join(", "),
            r.restart_failure_cause
                .as_deref()
                .map(|c| format!("; cause: {c}"))
                .unwrap_or_default()
        );
    }
    if let Some(f) = &r.fix {
        let _ = writeln!(o, "\n{}", fix_line(f));
    }
    if !r.unfixed.is_empty() {
        let _ = writeln!(o, "Still failing at the end: {}", r.unfixed.join(", "));
    }
    let m = &r.messages;
    let _ = writeln!(
        o,
        "\nMessages: {} sent, {} delivered, {} timed out (408), {} other failures, {} lost in restarts, {} still pending at the end, {} unanswered; federated {} sent / {} delivered / {} timed out",
        m.sent,
        m.delivered,
        m.timed_out,
        m.other_failures.values().sum::<u64>(),
        m.lost_on_close,
        m.pending_at_end,
        m.unanswered,
        m.federated[0],
        m.federated[1],
        m.federated[2]
    );
    if !r.connect_failures.is_empty() {
        let f: Vec<String> = r
            .connect_failures
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        let _ = writeln!(o, "Failed connection attempts: {}", f.join(", "));
    }
    let _ = writeln!(o, "\nVerdict: {}", r.verdict);
    if !r.checks.is_empty() {
        let passed = r.checks.iter().filter(|c| c.passed).count();
        let _ = writeln!(o, "\nExpectations: {passed} of {} hold", r.checks.len());
        for c in &r.checks {
            let _ = writeln!(
                o,
                "  {} {}: expected {}{}",
                if c.passed { "ok  " } else { "FAIL" },
                c.name,
                c.expected,
                if c.passed {
                    String::new()
                } else {
                    format!(", got {}", c.actual)
                }
            );
        }
    }
    let _ = writeln!(
        o,
        "\nReproduce with: lcs-sim reproduce --scenario {} --seed {}",
        r.source, r.seed
    );
    o
}
