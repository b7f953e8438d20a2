//! The timeline's steps as the runner applies them: renewals in the shared store, restarts,
//! "Change Certificate" fixes and live rebinds, and Group Policy's auto-enrollment refreshes.
//! Apart from the stepping loop so each reads on its own; every step reports what it did in the
//! [`Applied`] timeline with run-independent reasons (store errors carry thumbprints).

use std::time::Duration;

use super::{Applied, AppliedFix, Shared2, StepKind};
use crate::clock::SIM_EPOCH;
use crate::eventlog::EventSink;
use crate::fix;
use crate::pki::Serial;
use crate::server::RebindTarget;
use crate::sim::scenario::Step;
use crate::sim::world::World;

pub(super) fn apply(
    step: &Step,
    t: Duration,
    seed: u64,
    world: &World,
    shared: &Shared2,
    applied: &mut Applied,
) {
    match step {
        Step::Renew { policy, .. } => renew(*policy, t, seed, world, shared, applied),
        Step::Restart { .. } => {
            shared.restart.send_modify(|g| *g += 1);
            applied.restarts.push(t);
            applied.push(
                t,
                StepKind::Restart,
                "the administrator restarts the service".into(),
            );
        }
        Step::Fix { connections, .. } => fix(connections, false, t, shared, applied),
        Step::Rebind { connections, .. } => fix(connections, true, t, shared, applied),
    }
}

/// Auto-enrollment renews the server certificate in the shared store.
fn renew(
    policy: crate::store::RenewalPolicy,
    t: Duration,
    seed: u64,
    world: &World,
    shared: &Shared2,
    applied: &mut Applied,
) {
    let now = SIM_EPOCH + t;
    let n = applied.steps.len();
    let result = shared.store.update(|s| {
        let current = s
            .list(false)
            .find(|c| c.info.issuer == world.pki.issuing.info().subject)
            .map(|c| c.thumbprint().clone())
            .expect("the server certificate is in the store");
        let serial = Serial::derive(format!("{seed}/renewal/{n}").as_bytes());
        s.renew(&current, policy, &world.pki.issuing, now, serial)
    });
    let what = match result {
        Ok(r) => {
            shared
                .events
                .record(crate::deployment::renewal_event(&r, now));
            applied.renewal_at.get_or_insert(t);
            format!(
                "auto-enrollment renews the certificate ({policy}): serial {} -> {}",
                r.old_serial, r.new_serial
            )
        }
        // Reasons only: error texts carry thumbprints, which differ between runs.
        Err(e) => format!("renewal failed ({})", store_reason(&e)),
    };
    applied.push(t, StepKind::Renewal, what);
}

/// "Change Certificate" on `connections` (all when empty); with `live`, also swap the running
/// credentials at once.
fn fix(connections: &[String], live: bool, t: Duration, shared: &Shared2, applied: &mut Applied) {
    let mut config = shared.config.lock().expect("config");
    let plan = fix::plan(&config, &shared.store.snapshot().store, connections);
    let mut store_result = Ok(());
    shared
        .store
        .update(|s| store_result = fix::apply(&plan, &mut config, s));
    drop(config);
    let (mut rebound, mut notes) = if live {
        rebind_live(&plan, shared)
    } else {
        let rebound = plan.rebinds.iter().map(|r| r.connection.clone()).collect();
        (rebound, Vec::new())
    };
    if let Err(e) = store_result {
        notes.push(format!("store refused the change ({})", store_reason(&e)));
    }
    rebound.sort();
    let what = if live {
        "live rebind"
    } else {
        "fix (Change Certificate)"
    };
    let scope = if connections.is_empty() {
        "every connection".to_string()
    } else {
        connections.join(", ")
    };
    let mut line = format!(
        "{what} on {scope}: rebound {}",
        if rebound.is_empty() {
            "nothing".into()
        } else {
            rebound.join(", ")
        }
    );
    if !plan.grants.is_empty() {
        line.push_str(&format!("; {} granted read", plan.principal));
    }
    if !notes.is_empty() {
        line.push_str(&format!(" ({})", notes.join("; ")));
    }
    let kind = if live {
        StepKind::Rebind
    } else {
        StepKind::Fix
    };
    applied.push(t, kind, line);
    applied.fixes.push(AppliedFix {
        at: t,
        live,
        rebound,
    });
}

/// The live half of a rebind: the running service's own [`ServiceHandle::rebind`] (the
/// operation `serve`'s `POST /rebind` runs), which validates every new credential before it
/// swaps any and logs 14370 or 14372 itself. A rebind is all or nothing, so only connections
/// the service is running are asked for; the rest take effect at the next restart. Returns the
/// connections swapped and a note for each that was not.
fn rebind_live(plan: &fix::FixPlan, shared: &Shared2) -> (Vec<String>, Vec<String>) {
    let handle = shared.state.lock().expect("state").handle.clone();
    let mut notes = Vec::new();
    let mut targets = Vec::new();
    for r in &plan.rebinds {
        if handle
            .as_ref()
            .is_some_and(|h| h.credentials.contains_key(&r.connection))
        {
            targets.push(RebindTarget::from(r));
        } else {
            notes.push(format!(
                "{}: not running, takes effect at the next restart",
                r.connection
            ));
        }
    }
    let Some(handle) = handle.filter(|_| !targets.is_empty()) else {
        return (Vec::new(), notes);
    };
    match handle.rebind(&targets) {
        Ok(done) => (done.into_iter().map(|d| d.connection).collect(), notes),
        Err(refused) => {
            for r in refused {
                notes.push(format!("{}: swap refused ({})", r.connection(), r.reason()));
            }
            (Vec::new(), notes)
        }
    }
}

/// A short, run-independent reason for a store error (its text may carry thumbprints).
fn store_reason(e: &crate::store::StoreError) -> &'static str {
    use crate::store::StoreError as E;
    match e {
        E::AccessDenied { .. } => "key_access_denied",
        E::UnknownThumbprint { .. } | E::AmbiguousThumbprint { .. } => "unknown_certificate",
        E::NotFound { .. } => "certificate_not_found",
        E::AlreadyRenewed { .. } => "already_renewed",
        E::WrongIssuer { .. } => "wrong_issuer",
        E::KeyMismatch { .. } => "key_mismatch",
        _ => "store_error",
    }
}

/// Group Policy refreshes: at each, auto-enrollment renews the server certificate once the
/// threshold of its lifetime has passed. Refresh times come from their own seeded RNG.
pub(super) struct GroupPolicy {
    config: crate::sim::scenario::AutoEnrollment,
    rng: rand::rngs::StdRng,
    pub(super) next: Duration,
}

impl GroupPolicy {
    pub(super) fn new(config: &crate::sim::scenario::AutoEnrollment, seed: u64) -> Self {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ 0x6C0_u64.wrapping_mul(0x9E37_79B9));
        // The machine booted some time before the run: the first refresh is anywhere in one
        // interval.
        let first = config.refresh.mul_f64(rng.random_range(0.0..1.0));
        Self {
            config: config.clone(),
            rng,
            next: first,
        }
    }

    pub(super) fn refresh(
        &mut self,
        t: Duration,
        seed: u64,
        world: &World,
        shared: &Shared2,
        applied: &mut Applied,
    ) {
        use rand::Rng;
        let offset = self
            .config
            .refresh_offset
            .mul_f64(self.rng.random_range(0.0..1.0));
        self.next = t + self.config.refresh + offset;
        let now = SIM_EPOCH + t;
        let due = shared.store.snapshot().store.list(false).any(|c| {
            let lifetime = c.info.not_after - c.info.not_before;
            c.info.issuer == world.pki.issuing.info().subject
                && now - c.info.not_before >= lifetime * self.config.threshold
        });
        if due {
            renew(self.config.policy, t, seed, world, shared, applied);
            if let Some(step) = applied.steps.last_mut() {
                step.what = format!("Group Policy refresh: {}", step.what);
            }
        }
    }
}
