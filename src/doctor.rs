//! `lcs-sim doctor`: what is wrong with a deployment's certificates, and the command that fixes it.
//!
//! LCS 2003 stayed silent until a restart failed; the administrator then had three event ids and
//! a KB article. The doctor reads what the service would use (`lcs.toml`, the store, `ca.pem`),
//! what happened (the event log: when and how a certificate was renewed) and, when a server
//! runs, what it actually holds (`GET /certs` on its admin endpoint, found through
//! `serve.json`), and turns each mismatch into a [`Finding`]: a severity, a stable code, the
//! connection, the certificate, a message and an exact remedy.
//!
//! The checks of a single certificate are [`certcheck`]'s, so the doctor, a live rebind and
//! `store list` agree on what "usable" means; this module adds what only the configuration
//! knows: references to archived or unknown certificates, the successor a fix would bind, the
//! expiry horizon, and the difference between the configuration and the running server.
//! [`diagnose`] is pure: every input, `now` included, is an argument.

mod missing;
pub mod running;

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use serde::Serialize;
use time::OffsetDateTime;

use crate::certcheck::{self, Need, Problem, Usage};
use crate::config::{CertRef, Config};
use crate::eventlog::{Event, ids};
use crate::pki::{Serial, Thumbprint};
use crate::server::admin::api::{CertsEntry, ConnectionState};
use crate::store::{Store, StoredCert};
pub use missing::missing_keys;
use running::RunningCerts;

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// The connection fails now or at the next restart.
    Error,
    /// Not failing yet, but will (expiry ahead) or differs from what a restart would do.
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

/// What a finding is about: stable snake_case names for scripts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Code {
    /// The configured issuer + serial names an archived (renewed) certificate: a restart will
    /// not find it (`CRYPT_E_NOT_FOUND`). The finding names the successor.
    ArchivedReference,
    /// The service principal cannot open the configured certificate's key (`NTE_BAD_KEYSET`):
    /// KB836410. Also reported for a certificate a running server holds.
    KeyUnreadable,
    /// The renewed certificate a fix would bind has a key the service principal cannot open.
    SuccessorKeyUnreadable,
    /// The certificate has expired.
    Expired,
    /// The certificate expires within the warning horizon (`--warn-days`).
    Expiring,
    /// The certificate's validity has not begun.
    NotYetValid,
    /// The certificate does not carry the server's name.
    NameMismatch,
    /// The certificate lacks an extended key usage the connection needs.
    EkuMissing,
    /// The certificate does not chain to the deployment's CA (`ca.pem`).
    ChainUntrusted,
    /// The configured issuer + serial names no certificate in the store, active or archived.
    UnknownCertificate,
    /// The running server holds a different certificate than `lcs.toml` names.
    RunningDiffers,
    /// The connection did not start in the running server (its port was taken, or its
    /// certificate could not be acquired at start): only a restart of `serve` starts it.
    NotStarted,
    /// The certificate's private key file is gone from the store: nothing can use the
    /// certificate (the other checks need the whole store and are skipped).
    KeyMissing,
}

impl Code {
    /// The stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::ArchivedReference => "archived_reference",
            Code::KeyUnreadable => "key_unreadable",
            Code::SuccessorKeyUnreadable => "successor_key_unreadable",
            Code::Expired => "expired",
            Code::Expiring => "expiring",
            Code::NotYetValid => "not_yet_valid",
            Code::NameMismatch => "name_mismatch",
            Code::EkuMissing => "eku_missing",
            Code::ChainUntrusted => "chain_untrusted",
            Code::UnknownCertificate => "unknown_certificate",
            Code::RunningDiffers => "running_differs",
            Code::NotStarted => "not_started",
            Code::KeyMissing => "key_missing",
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// The certificate a finding is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CertSummary {
    /// Its thumbprint; `None` when the reference names nothing in the store.
    pub thumbprint: Option<Thumbprint>,
    /// Serial number.
    pub serial: Serial,
    /// Issuer distinguished name.
    pub issuer: String,
}

impl CertSummary {
    fn of(cert: &StoredCert) -> Self {
        Self {
            thumbprint: Some(cert.info.thumbprint.clone()),
            serial: cert.info.serial.clone(),
            issuer: cert.info.issuer.clone(),
        }
    }
}

/// One thing wrong, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// How bad.
    pub severity: Severity,
    /// What kind of problem.
    pub code: Code,
    /// The connection or route id.
    pub connection: String,
    /// The certificate concerned.
    pub certificate: Option<CertSummary>,
    /// What is wrong, in a sentence.
    pub message: String,
    /// What to do: an exact command where one exists.
    pub remedy: String,
}

/// Everything the doctor looks at.
#[derive(Debug, Clone)]
pub struct Inputs<'a> {
    /// The deployment folder, as the user named it (remedies quote it).
    pub dir: &'a Path,
    /// `lcs.toml`.
    pub config: &'a Config,
    /// The store.
    pub store: &'a Store,
    /// The deployment's trust anchors (`ca.pem`).
    pub roots: &'a Arc<RootCertStore>,
    /// The issuing CA, which completes each chain.
    pub intermediates: &'a [CertificateDer<'static>],
    /// The application event log, oldest first.
    pub events: &'a [Event],
    /// What a running server holds, if one runs.
    pub running: Option<&'a RunningCerts>,
    /// The moment to judge validity at.
    pub now: OffsetDateTime,
    /// Certificates expiring within this many days are a warning.
    pub warn_days: u32,
}

impl Inputs<'_> {
    /// The `fix` command that resolves a rebind or a lost ACL: `--live` when a server runs and
    /// every connection started in it; when some did not (restarted after the renewal), a live
    /// swap cannot start them, so: fix on disk, then restart serve.
    fn fix_command(&self) -> String {
        let dir = quote(self.dir);
        match self.running {
            None => format!("lcs-sim fix {dir}"),
            Some(r) if r.any_not_started() => format!(
                "lcs-sim fix {dir}, then restart serve: kill -TERM {}; lcs-sim serve {dir}",
                r.pid
            ),
            Some(_) => format!("lcs-sim fix {dir} --live"),
        }
    }

    fn dir(&self) -> String {
        quote(self.dir)
    }
}

/// A path as a shell word.
fn quote(path: &Path) -> String {
    let s = path.display().to_string();
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+,:@".contains(c))
    {
        s
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Every finding for the deployment, connection by connection in `lcs.toml` order, errors
/// before warnings within a connection.
pub fn diagnose(inputs: &Inputs<'_>) -> Vec<Finding> {
    let mut findings = Vec::new();
    for (id, reference, usage) in certcheck::cert_users(inputs.config) {
        let mut found = configured(inputs, id, reference, usage);
        if let Some(running) = inputs.running {
            found.extend(running_findings(inputs, running, id, reference));
        }
        found.sort_by_key(|f| f.severity);
        findings.extend(found);
    }
    findings
}

/// The findings about the certificate `lcs.toml` names for one connection.
fn configured(inputs: &Inputs<'_>, id: &str, reference: &CertRef, usage: Usage) -> Vec<Finding> {
    let store = inputs.store;
    let Some(cert) = store.find_including_archived(&reference.issuer, &reference.serial) else {
        return vec![unknown_certificate(inputs, id, reference, usage)];
    };
    let mut out = Vec::new();
    let mut successor = None;
    if cert.archived {
        let (finding, s) = archived(inputs, id, cert);
        out.push(finding);
        successor = s;
    }
    let need = need(inputs, usage);
    let problems = certcheck::check(store, cert.thumbprint(), &need);
    for problem in &problems {
        out.push(from_problem(inputs, id, cert, problem, usage));
    }
    out.extend(successor);
    let dated = problems
        .iter()
        .any(|p| matches!(p, Problem::Expired { .. } | Problem::NotYetValid { .. }));
    if !dated {
        out.extend(expiring(inputs, id, cert));
    }
    out
}

fn need<'a>(inputs: &Inputs<'a>, usage: Usage) -> Need<'a> {
    Need {
        principal: &inputs.config.service.principal,
        server_name: &inputs.config.service.server,
        usage,
        roots: inputs.roots,
        intermediates: inputs.intermediates,
        now: inputs.now,
    }
}

/// The renewal event (1001) that archived `old`, for when and how.
fn renewal_of<'e>(events: &'e [Event], old: &Thumbprint) -> Option<&'e Event> {
    events.iter().rev().find(|e| {
        e.id == ids::CERTIFICATE_REPLACED
            && e.details.get("old_thumbprint").and_then(|v| v.as_str()) == Some(old.as_str())
    })
}

/// The archived reference, and the successor's unreadable key if it is.
fn archived(inputs: &Inputs<'_>, id: &str, cert: &StoredCert) -> (Finding, Option<Finding>) {
    let successor = inputs.store.successor(cert.thumbprint());
    let how = match renewal_of(inputs.events, cert.thumbprint()) {
        Some(e) => {
            let policy = e
                .details
                .get("policy")
                .and_then(|v| v.as_str())
                .unwrap_or("unknown policy");
            format!(" on {} ({policy})", rfc3339(e.time))
        }
        None => String::new(),
    };
    let by = match successor {
        Some(s) => format!(
            "renewed{how} by {} (serial {})",
            s.info.thumbprint, s.info.serial
        ),
        None => format!("archived{how}, with no successor in the store"),
    };
    let remedy = match successor {
        Some(_) => inputs.fix_command(),
        None => format!(
            "choose a certificate from `lcs-sim store list {} --all` and set it as {id}'s certificate in lcs.toml",
            inputs.dir()
        ),
    };
    let finding = Finding {
        severity: Severity::Error,
        code: Code::ArchivedReference,
        connection: id.into(),
        certificate: Some(CertSummary::of(cert)),
        message: format!(
            "{id} names serial {}, which is archived: {by}. A restart will not find it (0x80092004 CRYPT_E_NOT_FOUND)",
            cert.info.serial
        ),
        remedy,
    };
    let principal = &inputs.config.service.principal;
    let unreadable = successor
        .and_then(|s| {
            let access = inputs.store.key_access(s.thumbprint(), principal).ok()?;
            Some((s, access.denial()?.platform_error()))
        })
        .map(|(s, error)| Finding {
            severity: Severity::Error,
            code: Code::SuccessorKeyUnreadable,
            connection: id.into(),
            certificate: Some(CertSummary::of(s)),
            message: format!(
                "{principal} cannot open the private key of the successor {}: rebinding {id} to it alone would fail ({})",
                s.info.thumbprint,
                error.short()
            ),
            remedy: inputs.fix_command(),
        });
    (finding, unreadable)
}

fn unknown_certificate(
    inputs: &Inputs<'_>,
    id: &str,
    reference: &CertRef,
    usage: Usage,
) -> Finding {
    Finding {
        severity: Severity::Error,
        code: Code::UnknownCertificate,
        connection: id.into(),
        certificate: Some(CertSummary {
            thumbprint: None,
            serial: reference.serial.clone(),
            issuer: reference.issuer.clone(),
        }),
        message: format!(
            "{id} names {reference}, which is not in the store, active or archived: it cannot start"
        ),
        remedy: replacement(inputs, id, usage),
    }
}

/// A remedy that points the connection at another certificate: a usable one from the store if
/// there is one, otherwise how to get one.
fn replacement(inputs: &Inputs<'_>, id: &str, usage: Usage) -> String {
    let need = need(inputs, usage);
    let usable = inputs.store.list(false).find(|c| {
        // A key the service account cannot read is no obstacle: `fix --to` grants read.
        certcheck::check(inputs.store, c.thumbprint(), &need)
            .iter()
            .all(|p| matches!(p, Problem::KeyUnreadable { .. }))
    });
    match usable {
        Some(c) => format!(
            "{} --connection {id} --to {}",
            inputs.fix_command(),
            c.info.thumbprint
        ),
        None => format!(
            "no certificate in the store fits {id}: issue one for {} with {} from the deployment's CA, or start over with `lcs-sim init {} --force`",
            inputs.config.service.server,
            usage
                .ekus()
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(" + "),
            inputs.dir()
        ),
    }
}

/// Renewing from the deployment's CA; then the fix binds the renewed certificate.
fn renew_command(inputs: &Inputs<'_>, cert: &StoredCert) -> String {
    if cert.archived {
        return inputs.fix_command();
    }
    format!(
        "lcs-sim store renew {} {} --policy new-key-keep-acl && {}",
        inputs.dir(),
        cert.info.thumbprint,
        inputs.fix_command()
    )
}

fn from_problem(
    inputs: &Inputs<'_>,
    id: &str,
    cert: &StoredCert,
    problem: &Problem,
    usage: Usage,
) -> Finding {
    let thumb = &cert.info.thumbprint;
    let (code, message, remedy) = match problem {
        Problem::KeyUnreadable { principal, denial } => (
            Code::KeyUnreadable,
            format!(
                "{principal} cannot open the private key of {thumb} ({}): TLS handshakes on {id} fail",
                denial.platform_error().short()
            ),
            inputs.fix_command(),
        ),
        Problem::Expired { not_after } => (
            Code::Expired,
            format!(
                "{thumb} expired on {}: peers refuse it",
                rfc3339(*not_after)
            ),
            renew_command(inputs, cert),
        ),
        Problem::NotYetValid { not_before } => (
            Code::NotYetValid,
            format!(
                "{thumb} is not valid before {}: peers refuse it",
                rfc3339(*not_before)
            ),
            replacement(inputs, id, usage),
        ),
        Problem::NameMismatch { name, presented } => (
            Code::NameMismatch,
            format!(
                "{thumb} does not name {name} (it names {}): clients that check the host name refuse it",
                presented.join(", ")
            ),
            replacement(inputs, id, usage),
        ),
        Problem::EkuMissing { eku } => (
            Code::EkuMissing,
            format!("{thumb} lacks the {eku} extended key usage {id} needs"),
            replacement(inputs, id, usage),
        ),
        Problem::ChainUntrusted { issuer, reason } => (
            Code::ChainUntrusted,
            format!(
                "{thumb} does not chain to the deployment's CA ({}/ca.pem): {reason} (issuer {issuer})",
                inputs.dir()
            ),
            replacement(inputs, id, usage),
        ),
        // `configured` only checks certificates it found in the store.
        Problem::NotFound { .. } => (
            Code::UnknownCertificate,
            format!("{thumb} is not in the store"),
            replacement(inputs, id, usage),
        ),
    };
    Finding {
        severity: Severity::Error,
        code,
        connection: id.into(),
        certificate: Some(CertSummary::of(cert)),
        message,
        remedy,
    }
}

fn expiring(inputs: &Inputs<'_>, id: &str, cert: &StoredCert) -> Option<Finding> {
    let left = cert.info.not_after - inputs.now;
    if left > time::Duration::days(i64::from(inputs.warn_days)) {
        return None;
    }
    Some(Finding {
        severity: Severity::Warning,
        code: Code::Expiring,
        connection: id.into(),
        certificate: Some(CertSummary::of(cert)),
        message: format!(
            "{} expires on {} (in {} days, within --warn-days {})",
            cert.info.thumbprint,
            rfc3339(cert.info.not_after),
            left.whole_days(),
            inputs.warn_days
        ),
        remedy: renew_command(inputs, cert),
    })
}

/// What the running server holds for `id`, against what `lcs.toml` names.
fn running_findings(
    inputs: &Inputs<'_>,
    running: &RunningCerts,
    id: &str,
    reference: &CertRef,
) -> Vec<Finding> {
    let Some(conn) = running.connections.iter().find(|c| c.id == id) else {
        return Vec::new();
    };
    if conn.state == ConnectionState::NotStarted {
        return vec![not_started(inputs, running, conn)];
    }
    let Some(bound) = &conn.bound else {
        return Vec::new();
    };
    // The server reports hex strings; parsing normalises case and separators.
    let Ok(serial) = Serial::try_from(bound.serial.clone()) else {
        return Vec::new();
    };
    if serial == reference.serial && bound.issuer == reference.issuer {
        // The same certificate: the store checks above already cover its key.
        return Vec::new();
    }
    let summary = CertSummary {
        thumbprint: Thumbprint::try_from(bound.thumbprint.clone()).ok(),
        serial,
        issuer: bound.issuer.clone(),
    };
    let mut out = vec![Finding {
        severity: Severity::Warning,
        code: Code::RunningDiffers,
        connection: id.into(),
        certificate: Some(summary.clone()),
        message: format!(
            "the running server (admin {}) presents serial {} on {id}; lcs.toml names serial {} (a restart of `lcs-sim serve {}` also binds it)",
            running.admin,
            bound.serial,
            reference.serial,
            inputs.dir()
        ),
        remedy: inputs.fix_command(),
    }];
    if conn.key_opens == Some(false) {
        let why = conn
            .key_error
            .map_or(String::new(), |e| format!(": {}", e.name()));
        out.push(Finding {
            severity: Severity::Error,
            code: Code::KeyUnreadable,
            connection: id.into(),
            certificate: Some(summary),
            message: format!(
                "the running server cannot open the private key of the certificate it holds on {id}{why}"
            ),
            remedy: inputs.fix_command(),
        });
    }
    out
}

/// A connection the running server did not start: the files may be fine (a `fix` since), but
/// nothing listens or dials until `serve` restarts.
fn not_started(inputs: &Inputs<'_>, running: &RunningCerts, conn: &CertsEntry) -> Finding {
    let why = conn
        .start_error
        .map_or(String::new(), |e| format!(" ({})", e.name()));
    Finding {
        severity: Severity::Error,
        code: Code::NotStarted,
        connection: conn.id.clone(),
        certificate: None,
        message: format!(
            "the running server (pid {}, admin {}) did not start {}{why}: nothing serves it until serve restarts; stop that server first (kill -TERM {}), then start it again",
            running.pid, running.admin, conn.id, running.pid
        ),
        remedy: format!("lcs-sim serve {}", inputs.dir()),
    }
}

fn rfc3339(t: OffsetDateTime) -> String {
    let t = t.replace_nanosecond(0).unwrap_or(t);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

/// `ca.pem` could not be used as the deployment's trust.
#[derive(Debug, thiserror::Error)]
#[error("{}: {reason}; it should hold the issuing CA and the root (`lcs-sim init` writes it)", .path.display())]
pub struct TrustError {
    /// The file.
    pub path: std::path::PathBuf,
    /// What is wrong.
    pub reason: String,
}

/// The deployment's trust, from `ca.pem`: every certificate in it is a trust anchor, and the
/// first (the issuing CA) also completes chains, as the server sends it after each leaf.
#[derive(Debug, Clone)]
pub struct Trust {
    /// Trust anchors.
    pub roots: Arc<RootCertStore>,
    /// Chain completion.
    pub intermediates: Vec<CertificateDer<'static>>,
}

impl Trust {
    /// Reads `path` (a PEM bundle).
    pub fn load(path: &Path) -> Result<Self, TrustError> {
        use rustls::pki_types::pem::PemObject;
        let bad = |reason: String| TrustError {
            path: path.to_path_buf(),
            reason,
        };
        let pem = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<_, _>>()
            .map_err(|e| bad(format!("not a PEM bundle ({e})")))?;
        let mut roots = RootCertStore::empty();
        for cert in &certs {
            roots
                .add(cert.clone())
                .map_err(|e| bad(format!("a certificate cannot be a trust anchor ({e})")))?;
        }
        let Some(first) = certs.first() else {
            return Err(bad("no certificate in it".into()));
        };
        Ok(Self {
            roots: Arc::new(roots),
            intermediates: vec![first.clone()],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_serialise_as_their_stable_names() {
        for code in [
            Code::ArchivedReference,
            Code::KeyUnreadable,
            Code::SuccessorKeyUnreadable,
            Code::Expired,
            Code::Expiring,
            Code::NotYetValid,
            Code::NameMismatch,
            Code::EkuMissing,
            Code::ChainUntrusted,
            Code::UnknownCertificate,
            Code::RunningDiffers,
        ] {
            assert_eq!(serde_json::to_value(code).unwrap(), code.as_str());
        }
        assert_eq!(serde_json::to_value(Severity::Warning).unwrap(), "warning");
    }

    #[test]
    fn remedies_quote_paths_a_shell_would_split() {
        assert_eq!(quote(Path::new("demo")), "demo");
        assert_eq!(quote(Path::new("/tmp/a-b_c.d")), "/tmp/a-b_c.d");
        assert_eq!(quote(Path::new("my demo")), "'my demo'");
        assert_eq!(quote(Path::new("it's")), r"'it'\''s'");
    }
}
