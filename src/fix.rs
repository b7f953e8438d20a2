//! The KB836410 resolution as a plan: rebind every connection that uses the renewed certificate.
//!
//! The article's steps, in data: for each connection and route (optionally only some), follow the
//! configured certificate's `renewed_by` chain to the active certificate, point the connection at
//! it ("Change Certificate"), and grant the service account read on its key, which is what the
//! admin tool does when a certificate is chosen. A plan is computed first and applied second, so a
//! caller can show it, apply it to a store and configuration together, or hand each rebind to a
//! running listener.

use time::OffsetDateTime;

use crate::certcheck::{self, Need, Problem, Usage};
use crate::config::{CertRef, Config};
use crate::pki::Thumbprint;
use crate::store::{Right, Store, StoreError};

/// A fix cannot be planned as asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FixError {
    /// The scope names an id that is no connection or route using a certificate.
    #[error("`{id}` is not a connection or route that uses a certificate (known: {})", .known.join(", "))]
    UnknownConnection {
        /// The id asked for.
        id: String,
        /// The ids that use a certificate, in lcs.toml order.
        known: Vec<String>,
    },
    /// `--to` names no certificate in the store (or a prefix of several).
    #[error(
        "`{query}` names no single certificate in the store; `lcs-sim store list DIR` shows them"
    )]
    UnknownCertificate {
        /// What was asked for.
        query: String,
    },
    /// `--to` names an archived certificate: a restart would not find it (CRYPT_E_NOT_FOUND).
    #[error("certificate {thumbprint} is archived (renewed by {}): a connection bound to it would not start; choose an active one", .renewed_by.as_ref().map_or("nothing", |t| t.as_str()))]
    ArchivedCertificate {
        /// The archived certificate.
        thumbprint: Thumbprint,
        /// Its successor, if any.
        renewed_by: Option<Thumbprint>,
    },
    /// The chosen certificate cannot serve a connection in scope, for reasons a grant of read
    /// does not cure; nothing was changed.
    #[error("certificate {thumbprint} cannot serve {connection}: {}; nothing was changed", .problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Unusable {
        /// The connection or route.
        connection: String,
        /// The certificate.
        thumbprint: Thumbprint,
        /// Why (never [`Problem::KeyUnreadable`]: the fix grants read).
        problems: Vec<Problem>,
    },
}

/// Where a fix points the connections in its scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Each one's newest successor: the KB's resolution after a renewal.
    Successor,
    /// This certificate, for every connection in scope (`fix --connection ID --to THUMBPRINT`).
    Certificate(Thumbprint),
}

/// Resolves `query` (a thumbprint or a unique prefix) to an active certificate that can serve
/// every connection in `scope` once the service account is granted read, checked by
/// [`certcheck`] for each connection's own usage with `need`. The one check behind `--to`.
pub fn choose<'a>(
    config: &Config,
    store: &Store,
    scope: &[String],
    query: &str,
    need: impl Fn(Usage) -> Need<'a>,
) -> Result<Thumbprint, FixError> {
    check_scope(config, scope)?;
    let cert = store
        .find(query)
        .map_err(|_| FixError::UnknownCertificate {
            query: query.to_string(),
        })?;
    if cert.archived {
        return Err(FixError::ArchivedCertificate {
            thumbprint: cert.thumbprint().clone(),
            renewed_by: cert.renewed_by.clone(),
        });
    }
    for (id, _, usage) in certcheck::cert_users(config).filter(|(id, _, _)| in_scope(scope, id)) {
        let problems: Vec<Problem> = certcheck::check(store, cert.thumbprint(), &need(usage))
            .into_iter()
            .filter(|p| !matches!(p, Problem::KeyUnreadable { .. }))
            .collect();
        if !problems.is_empty() {
            return Err(FixError::Unusable {
                connection: id.to_string(),
                thumbprint: cert.thumbprint().clone(),
                problems,
            });
        }
    }
    Ok(cert.thumbprint().clone())
}

fn in_scope(scope: &[String], id: &str) -> bool {
    scope.is_empty() || scope.iter().any(|s| s == id)
}

/// Checks that every id in `scope` is a connection or route of `config` that uses a
/// certificate: the one place a fix's scope is validated.
pub fn check_scope(config: &Config, scope: &[String]) -> Result<(), FixError> {
    for id in scope {
        if !config.cert_refs().any(|(c, _)| c == id) {
            return Err(FixError::UnknownConnection {
                id: id.clone(),
                known: config.cert_refs().map(|(c, _)| c.to_string()).collect(),
            });
        }
    }
    Ok(())
}

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
    /// Every connection in scope with the certificate it uses once the plan is applied.
    pub targets: Vec<(String, Thumbprint)>,
}

/// A connection whose certificate, after the fix, is outside its validity: rebinding cannot
/// help, it needs a renewal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutsideValidity {
    /// Connection or route id.
    pub connection: String,
    /// The certificate it uses after the fix.
    pub thumbprint: Thumbprint,
    /// [`Problem::Expired`] or [`Problem::NotYetValid`].
    pub problem: Problem,
}

/// The connections of `plan` whose certificate is expired or not yet valid at `now`.
pub fn outside_validity(
    plan: &FixPlan,
    store: &Store,
    now: OffsetDateTime,
) -> Vec<OutsideValidity> {
    plan.targets
        .iter()
        .filter_map(|(id, t)| {
            let cert = store.find(t.as_str()).ok()?;
            Some(OutsideValidity {
                connection: id.clone(),
                thumbprint: t.clone(),
                problem: certcheck::validity(cert, now)?,
            })
        })
        .collect()
}

impl FixPlan {
    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.rebinds.is_empty() && self.grants.is_empty()
    }
}

/// Plans the fix for the connections in `scope` (all that use a certificate when empty). Ids in
/// `scope` that name nothing are ignored: check them first with [`check_scope`].
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
        let Some(configured) = store.find_including_archived(&reference.issuer, &reference.serial)
        else {
            out.unresolved.push((id.to_string(), reference.clone()));
            continue;
        };
        let target = store
            .successor(configured.thumbprint())
            .unwrap_or(configured);
        let thumbprint = target.thumbprint().clone();
        out.targets.push((id.to_string(), thumbprint.clone()));
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
        let readable = store.can_open(&thumbprint, &principal);
        if !readable && !out.grants.contains(&thumbprint) {
            out.grants.push(thumbprint);
        }
    }
    out
}

/// Plans the fix for `target`: [`plan`] for [`Target::Successor`], [`plan_to`] for a chosen
/// certificate.
pub fn plan_for(config: &Config, store: &Store, scope: &[String], target: &Target) -> FixPlan {
    match target {
        Target::Successor => plan(config, store, scope),
        Target::Certificate(t) => plan_to(config, store, scope, t),
    }
}

/// Plans pointing every connection in `scope` (all that use a certificate when empty) at the
/// certificate `to` ("Change Certificate" with a certificate chosen by hand), granting the
/// service account read on its key. Check `to` first with [`choose`]; a `to` the store does not
/// hold plans nothing.
pub fn plan_to(config: &Config, store: &Store, scope: &[String], to: &Thumbprint) -> FixPlan {
    let principal = config.service.principal.clone();
    let mut out = FixPlan {
        principal: principal.clone(),
        ..FixPlan::default()
    };
    let Ok(cert) = store.find(to.as_str()) else {
        return out;
    };
    let chosen = CertRef {
        issuer: cert.info.issuer.clone(),
        serial: cert.info.serial.clone(),
    };
    for (id, reference) in config.cert_refs().filter(|(id, _)| in_scope(scope, id)) {
        out.targets.push((id.to_string(), to.clone()));
        if *reference != chosen {
            out.rebinds.push(Rebind {
                connection: id.to_string(),
                from: reference.clone(),
                to: chosen.clone(),
                thumbprint: to.clone(),
            });
        }
    }
    if store.open_key(to, &principal).is_err() {
        out.grants.push(to.clone());
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

/// The configuration half of a fix on disk: each connection's new reference written into the
/// file at `path` in place (comments and layout kept, see [`crate::config::edit`]).
pub fn write_to_config(
    plan: &FixPlan,
    path: &std::path::Path,
) -> Result<(), crate::config::ConfigError> {
    let changes: Vec<(&str, &CertRef)> = plan
        .rebinds
        .iter()
        .map(|r| (r.connection.as_str(), &r.to))
        .collect();
    crate::config::edit::set_cert_refs(path, &changes)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Service;
    use crate::pki::{self, KeyAlgorithm, LeafSpec, Serial, TestPki};
    use crate::store::{Acl, RenewalPolicy};
    use time::{Duration, macros::datetime};

    const NOW: OffsetDateTime = datetime!(2026-06-01 00:00 UTC);

    /// The standard deployment with a certificate valid from `from` for a year.
    fn deployment(from: OffsetDateTime) -> (Config, Store, TestPki) {
        let pki = TestPki::generate("contoso.com", from).unwrap();
        let key = KeyAlgorithm::EcdsaP256.generate().unwrap();
        let serial = Serial::derive(b"fix-test");
        let spec = LeafSpec::server("lcs01.contoso.com", "Contoso");
        let der = pki::issue_leaf(
            &pki.issuing,
            &spec,
            &key,
            &serial,
            from,
            from + Duration::days(365),
        )
        .unwrap();
        let mut store = Store::new();
        store
            .import(der, key, Acl::for_service("RTCService"))
            .unwrap();
        let service = Service {
            server: "lcs01.contoso.com".into(),
            domain: "contoso.com".into(),
            principal: "RTCService".into(),
            aliases: vec![],
        };
        let reference = CertRef {
            issuer: pki.issuing.info().subject,
            serial,
        };
        let config = Config::standard(
            service,
            &reference,
            [5061, 5062, 5060],
            "fabrikam.com",
            crate::config::HostPort {
                host: "127.0.0.1".into(),
                port: 5071,
            },
        );
        (config, store, pki)
    }

    #[test]
    fn an_unknown_or_certificate_less_id_is_a_typed_error_naming_the_known_ones() {
        let (config, _, _) = deployment(NOW);
        let known: Vec<String> = ["tls-5061", "mtls-5062", "route-fabrikam.com"]
            .map(String::from)
            .to_vec();
        for id in ["tls-9999", "tcp-5060"] {
            assert_eq!(
                check_scope(&config, &["tls-5061".into(), id.into()]),
                Err(FixError::UnknownConnection {
                    id: id.into(),
                    known: known.clone()
                })
            );
        }
        assert_eq!(check_scope(&config, &known), Ok(()));
        assert_eq!(check_scope(&config, &[]), Ok(()));
    }

    #[test]
    fn targets_follow_renewals_and_outside_validity_finds_expired_ones() {
        let (config, mut store, pki) = deployment(NOW - Duration::days(400));
        let old = store.list(false).next().unwrap().thumbprint().clone();
        let p = plan(&config, &store, &[]);
        assert!(p.is_empty());
        assert_eq!(p.targets.len(), 3);
        let expired = outside_validity(&p, &store, NOW);
        assert_eq!(expired.len(), 3);
        assert_eq!(expired[0].connection, "tls-5061");
        assert_eq!(expired[0].thumbprint, old);
        assert!(matches!(expired[0].problem, Problem::Expired { .. }));

        let renewal = store
            .renew(
                &old,
                RenewalPolicy::NewKeyKeepAcl,
                &pki.issuing,
                NOW,
                Serial::derive(b"renewed"),
            )
            .unwrap();
        let p = plan(&config, &store, &["mtls-5062".into()]);
        assert_eq!(p.targets, [("mtls-5062".to_string(), renewal.new)]);
        assert_eq!(outside_validity(&p, &store, NOW), []);
    }
}
