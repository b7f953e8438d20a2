//! The report of a run: symptoms, restart events, fix, verdict, checks, time series.
//!
//! Computed from what the run recorded, never from wire bytes or thumbprints (keys and ECDSA
//! signatures are random), so the same seed gives the same report byte for byte. Every number
//! and time in the verdict, the timeline and the fix comes from the same recorded events and
//! series the JSON carries and the chart draws: one function per section ([`sections`]), the
//! timeline ([`timeline`]) and the checks and verdict ([`checks`]) read the same [`Times`].

pub mod agreement;
pub mod checks;
pub mod sections;
pub mod timeline;

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use super::runner::{Outcome, Sample, StepKind};
use super::scenario::Scenario;

pub use sections::Times;

/// The four symptoms KB836410 lists.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
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
    /// Virtual seconds when it took effect: the restart after a fix, the rebind itself, or the
    /// fix itself when no restart followed (then only its grant of read on the key acts).
    pub effective_at: u64,
    /// Virtual seconds when the (last) fix or rebind was applied.
    pub applied_at: u64,
    /// The restart that put the fix into effect, if one followed it (never for a live rebind).
    pub restart_at: Option<u64>,
    /// Whether it was a live rebind (no restart).
    pub live: bool,
    /// Connections pointed at the renewed certificate.
    pub rebound: Vec<String>,
    /// Whether the TLS listener was listening once the fix took effect.
    pub listener_started: bool,
    /// Users in the scenario.
    pub clients: usize,
    /// Users the server registered (a first registration or a refresh) after the fix took
    /// effect.
    pub clients_reconnected: usize,
    /// When the last of those users registered, if any did.
    pub reconnected_at: Option<u64>,
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

/// What a line of the timeline is about.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum MomentKind {
    /// A timeline step: renewal.
    Renewal,
    /// A timeline step: the administrator restarts the service.
    Restart,
    /// A timeline step: "Change Certificate".
    Fix,
    /// A timeline step: live rebind.
    Rebind,
    /// A start of the service.
    Start,
    /// Something the clients observed.
    Observation,
}

impl From<StepKind> for MomentKind {
    fn from(k: StepKind) -> Self {
        match k {
            StepKind::Renewal => MomentKind::Renewal,
            StepKind::Restart => MomentKind::Restart,
            StepKind::Fix => MomentKind::Fix,
            StepKind::Rebind => MomentKind::Rebind,
        }
    }
}

/// A line of the timeline.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Moment {
    /// Virtual seconds since the start.
    pub t: u64,
    /// What happened.
    pub what: String,
    /// What kind of moment (the chart marks renewals, restarts, fixes and rebinds).
    pub kind: MomentKind,
    /// For an observation, what was observed: checks and tests read this, never `what`, which
    /// is prose rendered from it. Not serialised (the JSON report's bytes stay as they were;
    /// `kind` and `what` are its stable fields).
    #[serde(skip)]
    pub observed: Option<Observed>,
}

/// What an observation on the timeline is, typed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Observed {
    /// The first client that could not connect over TLS after the renewal.
    FirstConnectFailure {
        /// The client's typed failure, by its stable name.
        reason: String,
    },
    /// The first instant message answered 408 after the renewal.
    FirstMessageTimeout,
    /// The sample at which the TLS connections reached zero.
    TlsConnectionsReachZero,
    /// Auto-rebind swapped these connections to the renewed certificate.
    AutoRebindSwapped {
        /// Connection and route ids.
        connections: Vec<String>,
    },
    /// Auto-rebind refused the renewed certificate (event 14373), first time.
    AutoRebindRefused {
        /// The reason event 14373 names (`key_access_denied`, ...).
        reason: String,
        /// Connection and route ids it refused at that moment.
        connections: Vec<String>,
    },
    /// The last user of the fix registered again.
    UsersRegisteredAgain {
        /// Users registered again.
        reconnected: usize,
        /// Users in the scenario.
        of: usize,
    },
}

/// What the verdict says, typed: checks read this, the `verdict` paragraph is rendered from it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Verdict {
    /// What the run showed.
    pub seen: Seen,
    /// What the fix achieved.
    pub fix: FixVerdict,
}

/// What a run showed, the verdict's head.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Seen {
    /// The scenario never renews: nothing to reproduce.
    #[default]
    NoRenewal,
    /// A renewal, but no outage.
    NoOutage,
    /// All four KB symptoms.
    Reproduced,
    /// An outage with some of the symptoms.
    Outage,
}

/// What the fix achieved, the verdict's tail.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum FixVerdict {
    /// No fix was applied and nothing fails at the end.
    #[default]
    NoneNeeded,
    /// Fixed: every connection works.
    Fixed,
    /// A fix was applied, but some connections still fail.
    Partial,
    /// No fix, and some connections fail at the end.
    NotFixed,
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
    /// One paragraph for the incident ticket, rendered from [`Report::verdict_kind`].
    pub verdict: String,
    /// What the verdict says, typed (not serialised: `verdict` is the JSON's field).
    #[serde(skip)]
    pub verdict_kind: Verdict,
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

    /// The names of the checks that failed.
    pub fn failed_checks(&self) -> Vec<String> {
        self.checks
            .iter()
            .filter(|c| !c.passed)
            .map(|c| c.name.clone())
            .collect()
    }
}

/// Virtual seconds, as reports show them.
pub(crate) fn secs(d: Duration) -> u64 {
    d.as_secs()
}

/// Builds the report of `outcome`.
pub fn build(scenario: &Scenario, seed: u64, outcome: &Outcome) -> Report {
    let times = Times::of(scenario, outcome);
    let (symptoms, failed_start) = sections::symptoms(&times, outcome);
    let restart_events = failed_start
        .map(|s| sections::kb_events_newest_first(&s.events))
        .unwrap_or_default();
    let restart_failure_cause = failed_start.and_then(sections::tls_failure_cause);
    let fix = sections::fix(&times, scenario.users.count, outcome);
    let facts = checks::Facts {
        outage_while_running: sections::outage_while_running(&times, outcome),
        federated_flow_at_end: sections::federated_flow_at_end(&times, outcome),
        handshake_failures_after_rebind: sections::handshake_failures_after_rebind(&times, outcome),
        connections_dropped_by_rebind: sections::connections_dropped_by_rebind(&times, outcome),
        messages: sections::messages(&outcome.recorder),
        symptoms,
        restart_events,
        restart_failure_cause,
        fix,
        unfixed: outcome.unfixed.clone(),
    };
    let timeline = timeline::build(&times, outcome, facts.fix.as_ref());
    let verdict_kind = checks::verdict_kind(&facts, times.renewal.is_some());
    let verdict = checks::render_verdict(verdict_kind, &facts);
    let checks = checks::checks(&scenario.expect, &facts);
    let r = &outcome.recorder;
    let end = scenario.duration;
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
        symptoms: facts.symptoms,
        restart_events: facts.restart_events,
        restart_failure_cause: facts.restart_failure_cause,
        fix: facts.fix,
        unfixed: facts.unfixed,
        verdict,
        verdict_kind,
        checks,
        messages: facts.messages,
        connect_failures: r.failures_between(Duration::ZERO, end + Duration::from_secs(3600)),
        series: outcome.series.clone(),
    }
}
