//! The KB836410 resolution as a plan: rebind every connection that uses the renewed certificate.
//!
//! The article's steps, in data: for each connection and route (optionally only some), follow the
//! configured certificate's `renewed_by` chain to the active certificate, point the connection at
//! it ("Change Certificate"), and grant the service account read on its key, which is what the
//! admin tool does when a certificate is chosen. A plan is computed first and applied second, so a
//! caller can show it, apply it to a store and configuration together, or hand each rebind to a
//! running listener.

use crate::config::{CertRef, Config};
use crate::pki::Thumbprint;
use crate::store::{Right, Store, StoreError};

/// One connection to point at another certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rebind {
    /// Connection or route id.
    pub connection: String,
    /// The reference it has now.
    pub from: CertRef,
    /// The reference it gets.
    pub to: CertRef,
    /// The certificate `to` names.
    pub thumbprint: Thumbprint,
}

/// What a fix will do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FixPlan {
    /// Connections to rebind.
    pub rebinds: Vec<Rebind>,
    /// Certificates whose key the service account must be granted read on.
    pub grants: Vec<Thumbprint>,
    /// The service account.
    pub principal: String,
    /// Connections whose reference names no certificate in the store at all (neither active
    /// nor archived): nothing to follow, a configuration error for a person to look at.
    pub unresolved: Vec<(String, CertRef)>,
}

impl FixPlan {
    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.rebinds.is_empty() && self.grants.is_empty()
    }
}

/// Plans the fix for the connections in `scope` (all that use a certificate when empty).
pub fn plan(config: &Config, store: &Store, scope: &[String]) -> FixPlan {
    let principal = config.service.principal.clone();
    let mut out = FixPlan {
        principal: principal.clone(),
        ..FixPlan::default()
    };
    for (id, reference) in config.cert_refs() {
        if !scope.is_empty() && !scope.iter().any(|s| s == id) {
            continue;
        }
        let Some(configured) = store
            .list(true)
            .find(|c| c.info.serial == reference.serial && c.info.issuer == reference.issuer)
        else {
            out.unresolved.push((id.to_string(), reference.clone()));
            continue;
        };
        let mut target = configured;
        // Bounded by the store's size: loading refuses cyclic links, this keeps a hand-built
        // store from looping too.
        for _ in 0..store.list(true).count() {
            match target
                .renewed_by
                .as_ref()
                .and_then(|t| store.find(t.as_str()).ok())
            {
                Some(next) => target = next,
                None => break,
            }
        }
        let thumbprint = target.thumbprint().clone();
        if target.info.thumbprint != configured.info.thumbprint {
            out.rebinds.push(Rebind {
                connection: id.to_string(),
                from: reference.clone(),
                to: CertRef {
                    issuer: target.info.issuer.clone(),
                    serial: target.info.serial.clone(),
                },
                thumbprint: thumbprint.clone(),
            });
        }
        let readable = store.open_key(&thumbprint, &principal).is_ok();
        if !readable && !out.grants.contains(&thumbprint) {
            out.grants.push(thumbprint);
        }
    }
    out
}

/// Applies `plan` to a configuration and a store (the caller saves them).
pub fn apply(plan: &FixPlan, config: &mut Config, store: &mut Store) -> Result<(), StoreError> {
    apply_to_store(plan, store)?;
    apply_to_config(plan, config);
    Ok(())
}

/// The store half of a fix: read for the service account on each target key.
pub fn apply_to_store(plan: &FixPlan, store: &mut Store) -> Result<(), StoreError> {
    for t in &plan.grants {
        store.grant(t, &plan.principal, Right::Read)?;
    }
    Ok(())
}

/// The configuration half of a fix: each connection's new reference.
pub fn apply_to_config(plan: &FixPlan, config: &mut Config) {
    for r in &plan.rebinds {
        let slot = config.certificate_mut(&r.connection);
        if let Some(slot) = slot {
            *slot = r.to.clone();
        }
    }
}
