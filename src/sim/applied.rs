//! What the timeline did, as the runner applied it: each step with its time, kind and a
//! one-line description, the renewal, the restarts and the fixes. The report reads only this
//! (never the scenario's own steps), so it names what happened, not what was planned.

use std::time::Duration;

/// What kind of step ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepKind {
    /// A renewal (by hand or by Group Policy), or a renewal that failed.
    Renewal,
    /// The administrator restarted the service.
    Restart,
    /// "Change Certificate" (takes effect at the next restart).
    Fix,
    /// A live rebind.
    Rebind,
}

/// One step as applied.
#[derive(Debug, Clone)]
pub struct AppliedStep {
    /// Virtual time.
    pub at: Duration,
    /// What kind.
    pub kind: StepKind,
    /// A one-line description.
    pub what: String,
}

/// A fix or live rebind as applied.
#[derive(Debug, Clone)]
pub struct AppliedFix {
    /// Virtual time.
    pub at: Duration,
    /// A live rebind (no restart needed).
    pub live: bool,
    /// The connections it rebound (for a live rebind: those whose swap happened).
    pub rebound: Vec<String>,
}

/// What the timeline did, for the report.
#[derive(Debug, Clone, Default)]
pub struct Applied {
    /// Each step with its virtual time and a one-line description.
    pub steps: Vec<AppliedStep>,
    /// First renewal.
    pub renewal_at: Option<Duration>,
    /// Restarts.
    pub restarts: Vec<Duration>,
    /// Fixes and rebinds, in order.
    pub fixes: Vec<AppliedFix>,
}

impl Applied {
    pub(super) fn push(&mut self, at: Duration, kind: StepKind, what: String) {
        self.steps.push(AppliedStep { at, kind, what });
    }
}
