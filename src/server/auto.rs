//! Auto-rebind: swap in a renewed certificate by itself (`serve --auto-rebind`,
//! `[service] auto_rebind = true`).
//!
//! IIS 8.5's "Automatic Rebind of Renewed Certificate" and Envoy's SDS do this; LCS did not,
//! which is why KB836410 needed a person. The task waits for the [`LiveStore`] to change (a
//! renewal on disk in live mode, a simulated one under turmoil: no clock is polled, so it runs
//! the same on virtual time), follows each bound certificate's `renewed_by` links to the newest,
//! validates it as [`ServiceHandle::rebind`] does, and swaps the usable ones in one rebind. A
//! successor that cannot be used (KB836410's `same-key-reset-acl`: its key is unreadable) is
//! not swapped: the current certificate stays, a warning (14373) names the cause and the remedy
//! once per successor, and `lcs_auto_rebind_refusals_total` counts it.
//!
//! [`LiveStore`]: super::LiveStore

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::watch;

use crate::config::CertRef;
use crate::eventlog::{Level, ids};
use crate::pki::Thumbprint;

use super::service::{OnRebound, RebindTarget, Rebound, ServiceHandle};

/// Runs until the task is dropped: on every change of the store, rebinds each connection whose
/// bound certificate was renewed to its newest usable successor.
pub(crate) async fn auto_rebind(
    handle: Arc<ServiceHandle>,
    mut changes: watch::Receiver<u64>,
    on_rebound: Option<OnRebound>,
    remedy: String,
) {
    let mut reported = BTreeSet::new();
    loop {
        if changes.changed().await.is_err() {
            return;
        }
        let done = step(&handle, &mut reported, &remedy);
        if let (Some(f), false) = (&on_rebound, done.is_empty()) {
            f(&done);
        }
    }
}

/// One pass: what was swapped. `reported` holds (connection, successor) refusals already
/// logged, so a refusal is logged once, not on every store change.
pub(crate) fn step(
    handle: &ServiceHandle,
    reported: &mut BTreeSet<(String, Thumbprint)>,
    remedy: &str,
) -> Vec<Rebound> {
    let snapshot = handle.store.snapshot();
    let mut targets = Vec::new();
    for (id, credential) in &handle.credentials {
        let Some(next) = snapshot.store.successor(&credential.thumbprint()) else {
            continue;
        };
        let to = CertRef {
            issuer: next.info.issuer.clone(),
            serial: next.info.serial.clone(),
        };
        let target = RebindTarget {
            connection: id.clone(),
            to: to.clone(),
        };
        match handle.validate(&target) {
            Ok(_) => targets.push(target),
            Err(e) => {
                if reported.insert((id.clone(), next.thumbprint().clone())) {
                    handle
                        .metrics
                        .auto_rebind_refusals
                        .fetch_add(1, Ordering::Relaxed);
                    let from = credential.reference();
                    let log = &handle.log;
                    log.record(
                        log.event(
                            ids::AUTO_REBIND_REFUSED,
                            Level::Warning,
                            format!(
                                "Connection {id}: its certificate was renewed (serial {} -> {}), but the successor cannot be used: {e}. The current certificate is kept. Remedy: `{remedy}` grants {} read on the new key and rebinds every connection.",
                                from.serial,
                                to.serial,
                                credential.principal()
                            ),
                        )
                        .with("connection", id.as_str())
                        .with("reason", e.reason())
                        .with("serial", to.serial.as_str())
                        .with("thumbprint", next.thumbprint().as_str())
                        .with("remedy", remedy),
                    );
                }
            }
        }
    }
    if targets.is_empty() {
        return Vec::new();
    }
    // Each target was validated just now; a refusal here means the store changed in between,
    // and the next change notification tries again.
    handle.rebind(&targets).unwrap_or_default()
}
