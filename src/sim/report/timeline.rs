//! The timeline: the steps as applied, each start of the service, and what the clients observed,
//! in time order (at the same second: steps, then starts, then observations).

use super::super::record::Outcome as MsgOutcome;
use super::super::runner::{Outcome, StartRecord};
use super::sections::{self, Times};
use super::{FixReport, Moment, MomentKind, Observed, secs};

/// The whole timeline.
pub fn build(times: &Times, outcome: &Outcome, fix: Option<&FixReport>) -> Vec<Moment> {
    let mut timeline: Vec<(Moment, u8)> = outcome
        .applied
        .steps
        .iter()
        .map(|s| {
            let m = Moment {
                t: secs(s.at),
                what: s.what.clone(),
                kind: s.kind.into(),
                observed: None,
            };
            (m, 0)
        })
        .collect();
    timeline.extend(outcome.starts.iter().map(|s| (start(s), 1)));
    timeline.extend(observations(times, outcome).into_iter().map(|m| (m, 2)));
    timeline.extend(auto_rebinds(outcome).into_iter().map(|m| (m, 2)));
    timeline.extend(reconnected(fix).map(|m| (m, 2)));
    timeline.sort_by_key(|(m, rank)| (m.t, *rank));
    timeline.into_iter().map(|(m, _)| m).collect()
}

fn observation(t: u64, observed: Observed, what: String) -> Moment {
    Moment {
        t,
        what,
        kind: MomentKind::Observation,
        observed: Some(observed),
    }
}

/// A start of the service: what listens, and what did not start with its events.
pub fn start(s: &StartRecord) -> Moment {
    let what = if s.failed.is_empty() {
        format!("service starts: {} listening", s.listening.join(", "))
    } else {
        let failed: Vec<&str> = s.failed.iter().map(|f| f.id.as_str()).collect();
        let ids: Vec<String> = sections::kb_events_newest_first(&s.events)
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
    Moment {
        t: secs(s.at),
        what,
        kind: MomentKind::Start,
        observed: None,
    }
}

/// What the clients saw after the renewal: the first failed connection, the first 408, and
/// the sample at which the TLS connections reached zero.
pub fn observations(times: &Times, outcome: &Outcome) -> Vec<Moment> {
    let Some(renewed) = times.renewal else {
        return Vec::new();
    };
    let r = &outcome.recorder;
    let mut out = Vec::new();
    if let Some(f) = r.connect_failures.iter().find(|f| f.at >= renewed) {
        out.push(observation(
            secs(f.at),
            Observed::FirstConnectFailure {
                reason: f.reason.to_string(),
            },
            format!("first client cannot connect over TLS ({})", f.reason),
        ));
    }
    if let Some(x) = r
        .messages
        .iter()
        .filter(|x| x.sent >= renewed && x.outcome == MsgOutcome::Final(408))
        .min_by_key(|x| x.done)
    {
        out.push(observation(
            secs(x.done),
            Observed::FirstMessageTimeout,
            "first instant message times out (408 after Timer F)".into(),
        ));
    }
    if let Some(t) = sections::tls_zero_at(times, outcome) {
        out.push(observation(
            t,
            Observed::TlsConnectionsReachZero,
            "TLS connections reach zero".into(),
        ));
    }
    out
}

/// What the service did by itself with `[server] auto_rebind`: each swap, and the first
/// refusal of a successor it could not use (event 14373, with the reason the event names).
pub fn auto_rebinds(outcome: &Outcome) -> Vec<Moment> {
    let mut out: Vec<Moment> = outcome
        .auto_rebinds
        .iter()
        .map(|(at, connections)| {
            observation(
                secs(*at),
                Observed::AutoRebindSwapped {
                    connections: connections.clone(),
                },
                format!(
                    "auto-rebind: the service swaps {} to the renewed certificate by itself",
                    connections.join(", ")
                ),
            )
        })
        .collect();
    let refusals: Vec<_> = outcome
        .events
        .iter()
        .filter(|e| e.id == crate::eventlog::ids::AUTO_REBIND_REFUSED)
        .collect();
    if let Some(first) = refusals.first() {
        let t = (first.time - crate::clock::SIM_EPOCH)
            .whole_seconds()
            .max(0) as u64;
        let reason = first
            .details
            .get("reason")
            .and_then(|r| r.as_str())
            .unwrap_or("unusable");
        let mut connections: Vec<&str> = refusals
            .iter()
            .filter(|e| e.time == first.time)
            .filter_map(|e| e.details.get("connection")?.as_str())
            .collect();
        connections.sort_unstable();
        let what = format!(
            "auto-rebind refuses the renewed certificate for {} ({reason}) and keeps the current one (event 14373)",
            connections.join(", ")
        );
        let observed = Observed::AutoRebindRefused {
            reason: reason.to_owned(),
            connections: connections.iter().map(|c| c.to_string()).collect(),
        };
        out.push(observation(t, observed, what));
    }
    out
}

/// "N of M users registered again", when the last of them did.
pub fn reconnected(fix: Option<&FixReport>) -> Option<Moment> {
    let f = fix?;
    let t = f.reconnected_at?;
    Some(observation(
        t,
        Observed::UsersRegisteredAgain {
            reconnected: f.clients_reconnected,
            of: f.clients,
        },
        format!(
            "{} of {} users registered again",
            f.clients_reconnected, f.clients
        ),
    ))
}

/// Seconds as the text report shows them.
pub fn hms(t: u64) -> String {
    format!("{:02}:{:02}:{:02}", t / 3600, t / 60 % 60, t % 60)
}
