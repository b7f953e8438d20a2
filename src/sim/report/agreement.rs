//! Does a report agree with its own data? The text, the JSON, the JUnit XML and the series are
//! rendered from one [`Report`]; this reads them back and lists every place where a number or a
//! time in one contradicts another. Tests run it over every built-in and random scenarios.

use super::timeline::hms;
use super::{FixVerdict, MomentKind, Observed, Report};
use crate::sim::output::{junit, text};

/// Every disagreement found (empty: the report agrees with itself).
pub fn disagreements(r: &Report) -> Vec<String> {
    let mut out = Vec::new();
    let text = text::render(r);
    let json = serde_json::to_value(r).expect("a report serialises");
    let mut expect = |ok: bool, what: String| {
        if !ok {
            out.push(what);
        }
    };
    // JSON carries the same values as the report.
    expect(
        json["fix"]["clients_reconnected"].as_u64()
            == r.fix.as_ref().map(|f| f.clients_reconnected as u64),
        "JSON fix.clients_reconnected".into(),
    );
    expect(json["seed"] == r.seed, "JSON seed".into());
    // Symptoms: the text's boxes are the JSON's booleans.
    let s = &r.symptoms;
    for (on, line) in [
        (s.im_queued_then_timed_out, "Instant messages are queued"),
        (
            s.tls_connections_reached_zero,
            "The number of TLS connections",
        ),
        (
            s.clients_cannot_connect_over_tls,
            "Windows Messenger clients",
        ),
        (s.tls_listener_fails_on_restart, "After a restart the TLS"),
    ] {
        let mark = if on { "[x] " } else { "[ ] " };
        expect(
            text.contains(&format!("{mark}{line}")),
            format!("text box for {line:?}"),
        );
    }
    // The TLS count reached zero exactly when the timeline says, as the series shows.
    let zero = r
        .timeline
        .iter()
        .find(|m| m.observed == Some(Observed::TlsConnectionsReachZero));
    expect(
        zero.is_some() == s.tls_connections_reached_zero,
        "timeline zero moment vs symptom".into(),
    );
    if let Some(m) = zero {
        let sample = r.series.iter().find(|x| x.t == m.t);
        expect(
            sample.is_some_and(|x| x.tls_connections == 0),
            format!("series has no zero TLS sample at {}", m.t),
        );
    }
    fix_agrees(r, &text, &mut expect);
    // JUnit: one case per check, one failure per failed check.
    let xml = junit::render(r);
    expect(
        xml.matches("<testcase ").count() == r.checks.len(),
        "JUnit test cases".into(),
    );
    expect(
        xml.matches("<failure").count() == r.checks.iter().filter(|c| !c.passed).count(),
        "JUnit failures".into(),
    );
    out
}

/// The fix line, the timeline and the verdict name the fix's real times and counts, and the
/// series shows the users it says came back.
fn fix_agrees(r: &Report, text: &str, expect: &mut impl FnMut(bool, String)) {
    let Some(f) = &r.fix else {
        expect(!text.contains("\nFix ("), "a fix line without a fix".into());
        return;
    };
    expect(text.contains(&text::fix_line(f)), "text fix line".into());
    let step = r
        .timeline
        .iter()
        .any(|m| m.t == f.applied_at && matches!(m.kind, MomentKind::Fix | MomentKind::Rebind));
    expect(step, format!("no fix step at {}", hms(f.applied_at)));
    if let Some(at) = f.restart_at {
        let restart = r
            .timeline
            .iter()
            .any(|m| m.t == at && m.kind == MomentKind::Restart);
        expect(restart, format!("no restart at {}", hms(at)));
    }
    let back = format!(
        "{} of {} users registered again",
        f.clients_reconnected, f.clients
    );
    let moment = r.timeline.iter().find(|m| {
        m.observed
            == Some(Observed::UsersRegisteredAgain {
                reconnected: f.clients_reconnected,
                of: f.clients,
            })
    });
    expect(
        moment.is_none_or(|m| m.what == back),
        format!("timeline prose {back:?}"),
    );
    expect(
        moment.map(|m| m.t) == f.reconnected_at,
        format!("timeline {back:?} at {:?}", f.reconnected_at),
    );
    if r.verdict_kind.fix == FixVerdict::Fixed {
        expect(r.verdict.contains(&back), "verdict count".into());
    }
    // The server's registrar agrees: within five samples after the last user came back (no
    // restart in between), it holds as many users as the fix line says, all of them when all
    // came back. (Five, not one: a user between two connections is briefly unregistered.)
    let Some(at) = f.reconnected_at else { return };
    let after: Vec<_> = r
        .series
        .iter()
        .filter(|x| x.t > at)
        .take_while(|x| {
            !r.timeline
                .iter()
                .any(|m| m.kind == MomentKind::Restart && m.t >= at && m.t <= x.t)
        })
        .take(5)
        .collect();
    if after.len() == 5 {
        let most = after.iter().map(|x| x.registered).max().unwrap_or(0);
        expect(
            most >= f.clients_reconnected as u64,
            format!(
                "series registered at most {most} after {} vs {} reconnected",
                hms(at),
                f.clients_reconnected
            ),
        );
    }
    expect(
        r.series.iter().all(|x| x.registered <= r.users as u64),
        "series registered more users than there are".into(),
    );
}
