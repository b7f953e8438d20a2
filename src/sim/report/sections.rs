//! The report's sections, one function each, all reading the same [`Times`] and the run's
//! recorded [`Outcome`].

use std::collections::BTreeSet;
use std::time::Duration;

use super::super::record::{Outcome as MsgOutcome, Recorder, Target};
use super::super::runner::{Outcome, StartRecord};
use super::super::scenario::Scenario;
use super::super::world::TLS_ID;
use super::{FixReport, Messages, Symptoms, secs};

/// The times every section derives from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Times {
    /// End of the run.
    pub end: Duration,
    /// The first renewal.
    pub renewal: Option<Duration>,
    /// The first restart after the renewal, or the end: until then the service ran on the
    /// credentials it had before the renewal.
    pub running_until: Duration,
    /// The (last) fix or rebind.
    pub fix: Option<FixTimes>,
}

/// When the fix happened and took effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FixTimes {
    /// When it was applied.
    pub applied_at: Duration,
    /// A live rebind.
    pub live: bool,
    /// The first restart at or after a (non-live) fix.
    pub restart_at: Option<Duration>,
}

impl FixTimes {
    /// When it took effect: a live rebind at once, a fix at the restart after it, or at once
    /// (its grant of read on the key) when no restart followed.
    pub fn effective(&self) -> Duration {
        self.restart_at.unwrap_or(self.applied_at)
    }
}

impl Times {
    /// The times of `outcome`.
    pub fn of(scenario: &Scenario, outcome: &Outcome) -> Self {
        let applied = &outcome.applied;
        let renewal = applied.renewal_at;
        let running_until = renewal
            .and_then(|at| applied.restarts.iter().copied().find(|t| *t >= at))
            .unwrap_or(scenario.duration);
        let fix = applied.fixes.last().map(|f| FixTimes {
            applied_at: f.at,
            live: f.live,
            restart_at: if f.live {
                None
            } else {
                applied.restarts.iter().copied().find(|r| *r >= f.at)
            },
        });
        Times {
            end: scenario.duration,
            renewal,
            running_until,
            fix,
        }
    }

    /// Until when the outage can last: the fix's effect, or the end.
    pub fn outage_until(&self) -> Duration {
        self.fix.map_or(self.end, |f| f.effective())
    }
}

/// The KB's four symptoms, and the first start after the renewal whose TLS listener failed.
pub fn symptoms<'a>(times: &Times, outcome: &'a Outcome) -> (Symptoms, Option<&'a StartRecord>) {
    let Some(renewed) = times.renewal else {
        return (Symptoms::default(), None);
    };
    let r = &outcome.recorder;
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
        m.sent >= renewed && m.target == Target::Federated && m.outcome == MsgOutcome::Final(408)
    });
    let had_tls = outcome.series.iter().any(|s| s.tls_connections > 0);
    let failed_start = outcome
        .starts
        .iter()
        .find(|s| s.at >= renewed && s.failed.iter().any(|f| f.id == TLS_ID));
    let until = times.outage_until();
    let symptoms = Symptoms {
        im_queued_then_timed_out: queued_after > queued_before && federated_408,
        tls_connections_reached_zero: had_tls && tls_zero_at(times, outcome).is_some(),
        clients_cannot_connect_over_tls: r
            .connect_failures
            .iter()
            .any(|f| f.at >= renewed && f.at < until),
        tls_listener_fails_on_restart: failed_start.is_some(),
    };
    (symptoms, failed_start)
}

/// The first sample after the renewal, while the service still ran, with no TLS connection.
pub fn tls_zero_at(times: &Times, outcome: &Outcome) -> Option<u64> {
    let renewed = times.renewal?;
    outcome
        .series
        .iter()
        .find(|s| {
            let t = Duration::from_secs(s.t);
            t > renewed && t < times.running_until && s.tls_connections == 0
        })
        .map(|s| s.t)
}

/// Why the TLS listener failed at this start, as event 14352 recorded it.
pub fn tls_failure_cause(start: &StartRecord) -> Option<String> {
    start.causes.get(TLS_ID).cloned()
}

/// The KB836410 start-failure events (14336..=14352) of a start, distinct, newest first as
/// Event Viewer lists them.
pub fn kb_events_newest_first(events: &[u32]) -> Vec<u32> {
    let mut out = Vec::new();
    for id in events.iter().rev() {
        if (14336..=14352).contains(id) && !out.contains(id) {
            out.push(*id);
        }
    }
    out
}

/// MESSAGE totals from the users' records.
pub fn messages(r: &Recorder) -> Messages {
    let mut m = Messages {
        sent: r.messages_sent,
        duplicate_finals: r.duplicate_finals,
        ..Messages::default()
    };
    for rec in &r.messages {
        let fed = rec.target == Target::Federated;
        if fed {
            m.federated[0] += 1;
        }
        match rec.outcome {
            MsgOutcome::Final(200) => {
                m.delivered += 1;
                m.federated[1] += u64::from(fed);
            }
            MsgOutcome::Final(408) => {
                m.timed_out += 1;
                m.federated[2] += u64::from(fed);
            }
            MsgOutcome::Final(s) => *m.other_failures.entry(s).or_default() += 1,
            MsgOutcome::LostOnClose => m.lost_on_close += 1,
            MsgOutcome::Unanswered => m.unanswered += 1,
            MsgOutcome::PendingAtEnd => m.pending_at_end += 1,
        }
    }
    m
}

/// The fix: what it rebound, whether TLS listened, and which users the server registered after
/// it took effect (and when the last of them did).
pub fn fix(times: &Times, clients: usize, outcome: &Outcome) -> Option<FixReport> {
    let f = times.fix?;
    let effective = f.effective();
    let rebound: BTreeSet<String> = outcome
        .applied
        .fixes
        .iter()
        .flat_map(|x| x.rebound.iter().cloned())
        .collect();
    // The instance that served after the fix: the one the restart started, or the one running.
    let serving = match f.restart_at {
        Some(at) => outcome.starts.iter().find(|s| s.at >= at),
        None => outcome.starts.iter().rfind(|s| s.at <= f.applied_at),
    };
    let listener_started = serving.is_some_and(|s| s.listening.iter().any(|l| l == TLS_ID));
    let (clients_reconnected, reconnected_at) = registered_since(&outcome.recorder, effective);
    Some(FixReport {
        effective_at: secs(effective),
        applied_at: secs(f.applied_at),
        restart_at: f.restart_at.map(secs),
        live: f.live,
        rebound: rebound.into_iter().collect(),
        listener_started,
        clients,
        clients_reconnected,
        reconnected_at: reconnected_at.map(secs),
    })
}

/// How many distinct users registered at or after `from`, and when the last of them first did.
pub fn registered_since(r: &Recorder, from: Duration) -> (usize, Option<Duration>) {
    let mut seen = BTreeSet::new();
    let mut last = None;
    for (t, user) in r.registrations.iter().filter(|(t, _)| *t >= from) {
        if seen.insert(*user) {
            last = Some(*t);
        }
    }
    (seen.len(), last)
}

/// Federated MESSAGEs flow at the end: in the last fifth of the run (and at least two minutes
/// after the fix took effect) some were delivered and none timed out.
pub fn federated_flow_at_end(times: &Times, outcome: &Outcome) -> bool {
    let settled = times
        .fix
        .map_or(Duration::ZERO, |f| f.effective() + Duration::from_secs(120));
    let window_start = times.end.mul_f64(0.8).max(settled);
    let tail: Vec<_> = outcome
        .recorder
        .messages
        .iter()
        .filter(|x| x.target == Target::Federated && x.sent >= window_start)
        .collect();
    tail.iter().any(|x| x.outcome == MsgOutcome::Final(200))
        && !tail.iter().any(|x| x.outcome == MsgOutcome::Final(408))
}

/// Clients failed to connect after the renewal while the service still ran (before a restart).
pub fn outage_while_running(times: &Times, outcome: &Outcome) -> bool {
    times.renewal.is_some_and(|renewed| {
        outcome
            .recorder
            .connect_failures
            .iter()
            .any(|f| f.at >= renewed && f.at < times.running_until)
    })
}

/// The first live rebind.
fn rebind_at(outcome: &Outcome) -> Option<Duration> {
    outcome.applied.fixes.iter().find(|f| f.live).map(|f| f.at)
}

/// Connection attempts that started after the live rebind and failed (None: no rebind). An
/// attempt already under way at the swap used the old credential and does not count.
pub fn handshake_failures_after_rebind(_times: &Times, outcome: &Outcome) -> Option<usize> {
    let at = rebind_at(outcome)?;
    Some(
        outcome
            .recorder
            .connect_failures
            .iter()
            .filter(|f| f.started >= at)
            .count(),
    )
}

/// Connections the server closed between the live rebind and the next restart (None: no
/// rebind).
pub fn connections_dropped_by_rebind(times: &Times, outcome: &Outcome) -> Option<usize> {
    let at = rebind_at(outcome)?;
    let next_restart = outcome
        .applied
        .restarts
        .iter()
        .copied()
        .find(|t| *t >= at)
        .unwrap_or(times.end);
    Some(
        outcome
            .recorder
            .closed_by_server
            .iter()
            .filter(|(t, _)| *t >= at && *t < next_restart)
            .count(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn a_fix_takes_effect_at_the_restart_after_it_or_at_once_without_one() {
        let fix = FixTimes {
            applied_at: 100 * S,
            live: false,
            restart_at: Some(160 * S),
        };
        assert_eq!(fix.effective(), 160 * S);
        let alone = FixTimes {
            restart_at: None,
            ..fix
        };
        assert_eq!(alone.effective(), 100 * S);
    }

    #[test]
    fn registered_since_counts_each_user_once_and_stamps_the_last_first_registration() {
        let r = Recorder {
            // user 1 registers before the fix and refreshes after it; user 2 twice after.
            registrations: vec![(50 * S, 1), (170 * S, 2), (200 * S, 1), (400 * S, 2)],
            ..Recorder::default()
        };
        assert_eq!(registered_since(&r, 160 * S), (2, Some(200 * S)));
        assert_eq!(registered_since(&r, 500 * S), (0, None));
        // A refresh counts: a user whose connection outlived the outage is served again.
        assert_eq!(registered_since(&r, 180 * S), (2, Some(400 * S)));
    }

    #[test]
    fn kb_events_are_distinct_and_newest_first() {
        assert_eq!(
            kb_events_newest_first(&[14352, 14336, 14347, 14347, 14370]),
            [14347, 14336, 14352]
        );
    }
}
