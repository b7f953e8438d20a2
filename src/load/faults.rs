//! Faults injected into a deployment while the load runs (`--at 30s=renew`), and the outage they
//! cause.
//!
//! Each fault changes the deployment's store (or configuration) on disk, under the store's lock,
//! with the same library calls `lcs-sim store renew/grant/revoke` and `lcs-sim fix` make; a
//! running `serve` notices the change as it notices any other process's (it polls the store). The
//! certificate concerned is the one the loaded connection is configured with in `lcs.toml`.
//!
//! `fix-live` is `lcs-sim fix DIR --live`: the fix on disk, then `POST /rebind` to the running
//! `serve` found through its `serve.json` ([`fix_live`]).

use std::collections::BTreeMap;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::report::SecondRow;
use crate::config::CertRef;
use crate::deployment::Deployment;
use crate::pki::Thumbprint;
use crate::store::{RenewalPolicy, Right, Store, StoreError};

/// What a fault does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FaultAction {
    /// Auto-enrollment renews the connection's certificate (default policy: same key, ACL reset).
    Renew(RenewalPolicy),
    /// Grant read on the connection's key to a principal.
    Grant(String),
    /// Revoke every right of a principal on the connection's key.
    Revoke(String),
    /// The KB836410 fix, applied while the server runs.
    FixLive,
}

impl std::fmt::Display for FaultAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FaultAction::Renew(p) => write!(f, "renew:{p}"),
            FaultAction::Grant(p) => write!(f, "grant:{p}"),
            FaultAction::Revoke(p) => write!(f, "revoke:{p}"),
            FaultAction::FixLive => f.write_str("fix-live"),
        }
    }
}

/// A fault at a time from the start of the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// When, from the start.
    pub at: Duration,
    /// What.
    pub action: FaultAction,
}

/// Why `--at` could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FaultParseError {
    /// No `=`.
    #[error("`{0}` is not TIME=ACTION (e.g. 30s=renew, 60s=fix-live, 45s=grant:RTCService)")]
    Shape(String),
    /// The time is not a duration.
    #[error("`{0}` is not a time from the start (e.g. 30s, 1m30s, 500ms)")]
    Time(String),
    /// Unknown action.
    #[error(
        "`{0}` is not a fault: use renew[:POLICY], grant:PRINCIPAL, revoke:PRINCIPAL or fix-live"
    )]
    Action(String),
    /// Unknown renewal policy.
    #[error(
        "`{0}` is not a renewal policy: use same-key-reset-acl, new-key-default-acl or new-key-keep-acl"
    )]
    Policy(String),
}

impl FromStr for Fault {
    type Err = FaultParseError;

    fn from_str(s: &str) -> Result<Fault, FaultParseError> {
        let (time, action) = s
            .split_once('=')
            .ok_or_else(|| FaultParseError::Shape(s.into()))?;
        let at = humantime::parse_duration(time.trim())
            .map_err(|_| FaultParseError::Time(time.into()))?;
        let (verb, arg) = match action.split_once(':') {
            Some((v, a)) => (v, Some(a)),
            None => (action, None),
        };
        let action = match (verb, arg) {
            ("renew", None) => FaultAction::Renew(RenewalPolicy::default()),
            ("renew", Some(p)) => {
                FaultAction::Renew(p.parse().map_err(|_| FaultParseError::Policy(p.into()))?)
            }
            ("grant", Some(p)) if !p.is_empty() => FaultAction::Grant(p.into()),
            ("revoke", Some(p)) if !p.is_empty() => FaultAction::Revoke(p.into()),
            ("fix-live", None) => FaultAction::FixLive,
            _ => return Err(FaultParseError::Action(action.into())),
        };
        Ok(Fault { at, action })
    }
}

/// A fault as the report shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultRecord {
    /// When it was due, seconds from the start.
    pub at_s: f64,
    /// When it was applied, seconds from the start (`None` if it failed).
    pub applied_s: Option<f64>,
    /// What (`renew:same-key-reset-acl`, `grant:RTCService`, `fix-live`).
    pub action: String,
    /// What it did, or why it failed.
    pub result: String,
    /// Whether it was applied.
    pub ok: bool,
}

/// The outage the faults caused.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Outage {
    /// The first failure, seconds from the start.
    pub first_failure_s: Option<f64>,
    /// The last failure, seconds from the start.
    pub last_failure_s: Option<f64>,
    /// Failures between the first and the last (all of the run's failures).
    pub failures_during: u64,
    /// From the fix (the first `fix-live`, else the last `grant`) to the start of the first
    /// whole second after it with successes and no failure (seconds are counted from the start
    /// of the run, so this is at most a second late); `None` without a fix or a clean second.
    pub fix_to_clean_s: Option<f64>,
    /// Established connections lost (closed before their response, held connections closed).
    pub connections_dropped: u64,
    /// Seconds at the end of the run with successes and no failure.
    pub clean_seconds_at_end: u64,
}

/// The outage of a run from its faults, seconds and failures.
pub fn outage(
    faults: &[FaultRecord],
    seconds: &[SecondRow],
    failures: &BTreeMap<String, u64>,
    first_failure_s: Option<f64>,
    last_failure_s: Option<f64>,
) -> Outage {
    let applied = |name: &str| {
        faults
            .iter()
            .filter(|f| f.action.starts_with(name))
            .filter_map(|f| f.applied_s)
            .collect::<Vec<f64>>()
    };
    let fix = applied("fix-live")
        .first()
        .copied()
        .or_else(|| applied("grant:").last().copied());
    let clean = |r: &SecondRow| r.failed == 0 && r.ok > 0;
    let fix_to_clean_s = fix.and_then(|at| {
        seconds
            .iter()
            .find(|r| r.t as f64 >= at && clean(r))
            .map(|r| r.t as f64 - at)
    });
    Outage {
        first_failure_s,
        last_failure_s,
        failures_during: failures.values().sum(),
        fix_to_clean_s,
        connections_dropped: failures
            .iter()
            .filter(|(k, _)| super::record::Reason::is_drop(k))
            .map(|(_, v)| v)
            .sum(),
        clean_seconds_at_end: seconds.iter().rev().take_while(|r| clean(r)).count() as u64,
    }
}

/// Why a fault could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum FaultError {
    /// The deployment could not be read or changed.
    #[error(transparent)]
    Deployment(#[from] crate::deployment::DeploymentError),
    /// The store refused.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// lcs.toml could not be read or written.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// `fix-live` is applied with [`fix_live`], not [`apply`].
    #[error("fix-live is applied through the admin endpoint (faults::fix_live)")]
    NotHere,
    /// The connection has no certificate, or it is not in the store.
    #[error("connection `{connection}` names no certificate in the store")]
    NoCertificate {
        /// The connection id.
        connection: String,
    },
}

/// Applies `action` to the deployment at `dir`, for the connection `connection`; returns what
/// it did, in words.
pub fn apply(dir: &Path, connection: &str, action: &FaultAction) -> Result<String, FaultError> {
    let d = Deployment::open(dir)?;
    let config = d.config()?;
    let reference = config
        .connections
        .iter()
        .find(|c| c.id == connection)
        .and_then(|c| c.certificate().cloned())
        .ok_or_else(|| FaultError::NoCertificate {
            connection: connection.into(),
        })?;
    let missing = || FaultError::NoCertificate {
        connection: connection.into(),
    };
    match action {
        FaultAction::Renew(policy) => {
            let store = d.store().load()?;
            let active = active_of(&store, &reference).ok_or_else(missing)?;
            let r = d.renew(
                active.as_str(),
                *policy,
                crate::clock::SystemClock.now_utc(),
            )?;
            Ok(format!("renewed {} -> {} ({policy})", r.old, r.new))
        }
        FaultAction::Grant(principal) | FaultAction::Revoke(principal) => {
            let grant = matches!(action, FaultAction::Grant(_));
            let thumb = d.store().update(|s| {
                let t = configured(s, &reference).ok_or_else(|| StoreError::NotFound {
                    issuer: reference.issuer.clone(),
                    serial: reference.serial.clone(),
                    archived_as: None,
                })?;
                if grant {
                    s.grant(&t, principal, Right::Read)?;
                } else {
                    s.revoke(&t, principal, None)?;
                }
                Ok(t)
            })?;
            let verb = if grant { "granted read to" } else { "revoked" };
            Ok(format!("{verb} {principal} on the key of {thumb}"))
        }
        // Async (HTTP to the admin endpoint): see [`fix_live`].
        FaultAction::FixLive => Err(FaultError::NotHere),
    }
}

use crate::clock::Clock as _;

/// The certificate `reference` names, archived or not.
fn configured(store: &Store, reference: &CertRef) -> Option<Thumbprint> {
    store
        .find_including_archived(&reference.issuer, &reference.serial)
        .map(|c| c.thumbprint().clone())
}

/// The active end of the renewal chain starting at `reference`.
fn active_of(store: &Store, reference: &CertRef) -> Option<Thumbprint> {
    let configured = store.find_including_archived(&reference.issuer, &reference.serial)?;
    Some(store.newest(configured.thumbprint())?.thumbprint().clone())
}

/// The KB836410 fix on the running `serve` of `dir`, as `lcs-sim fix DIR --live` does it:
/// today's fix on disk (rebind in `lcs.toml`, grant read, under the store's lock), then
/// `POST /rebind` to the admin endpoint found through `serve.json`, which swaps every
/// connection's credential live. Without a running `serve` nothing is changed and the fault
/// fails (with the reason in the report).
pub async fn fix_live(dir: &Path) -> Result<String, crate::server::admin::client::LiveFixError> {
    let outcome = crate::server::admin::client::fix_live(dir, &[]).await?;
    let verdict = if outcome.refused_any() {
        "refused"
    } else {
        "accepted"
    };
    Ok(format!(
        "fix: {} rebind(s), {} grant(s) of read to {}; live rebind {verdict} by the server",
        outcome.plan.rebinds.len(),
        outcome.plan.grants.len(),
        outcome.plan.principal
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_faults_and_refuses_bad_ones() {
        let f: Fault = "30s=renew".parse().unwrap();
        assert_eq!(f.at, Duration::from_secs(30));
        assert_eq!(f.action, FaultAction::Renew(RenewalPolicy::SameKeyResetAcl));
        let f: Fault = "1m=renew:new-key-keep-acl".parse().unwrap();
        assert_eq!(f.action, FaultAction::Renew(RenewalPolicy::NewKeyKeepAcl));
        assert_eq!(
            "5s=grant:RTCService".parse::<Fault>().unwrap().action,
            FaultAction::Grant("RTCService".into())
        );
        assert_eq!(
            "500ms=fix-live".parse::<Fault>().unwrap().at,
            Duration::from_millis(500)
        );
        assert!(matches!(
            "renew".parse::<Fault>(),
            Err(FaultParseError::Shape(_))
        ));
        assert!(matches!(
            "x=renew".parse::<Fault>(),
            Err(FaultParseError::Time(_))
        ));
        assert!(matches!(
            "5s=reboot".parse::<Fault>(),
            Err(FaultParseError::Action(_))
        ));
        assert!(matches!(
            "5s=grant:".parse::<Fault>(),
            Err(FaultParseError::Action(_))
        ));
        assert!(matches!(
            "5s=renew:x".parse::<Fault>(),
            Err(FaultParseError::Policy(_))
        ));
    }

    #[test]
    fn outage_from_seconds() {
        let row = |t, ok, failed| SecondRow {
            t,
            ok,
            failed,
            p99_us: 1,
            ..SecondRow::default()
        };
        let seconds = [
            row(0, 5, 0),
            row(1, 1, 4),
            row(2, 0, 5),
            row(3, 2, 1),
            row(4, 5, 0),
            row(5, 5, 0),
        ];
        let faults = [FaultRecord {
            at_s: 2.5,
            applied_s: Some(2.5),
            action: "fix-live".into(),
            result: String::new(),
            ok: true,
        }];
        let failures = BTreeMap::from([
            ("tls_alert_access_denied".into(), 9),
            ("connection_lost".into(), 1),
        ]);
        let o = outage(&faults, &seconds, &failures, Some(1.1), Some(3.2));
        assert_eq!(o.failures_during, 10);
        assert_eq!(o.connections_dropped, 1);
        assert_eq!(o.fix_to_clean_s, Some(1.5)); // second 4 is the first clean one: starts at 4.0
        assert_eq!(o.clean_seconds_at_end, 2);
    }
}
