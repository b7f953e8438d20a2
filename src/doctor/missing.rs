//! What the doctor can say when the store cannot be loaded because a key file is gone: the
//! rest of the diagnosis needs the whole store, but a missing key must still be a finding
//! (naming the file and the connections that use it), not a "bad input" exit.

use std::path::Path;

use super::{CertSummary, Code, Finding, Severity, quote};
use crate::config::Config;

/// A finding per connection whose certificate's key file is missing (the store cannot be
/// loaded, so this is all the doctor can say; one line per missing certificate no connection
/// uses, with connection `-`).
pub fn missing_keys(
    dir: &Path,
    config: &Config,
    missing: &[crate::store::MissingKey],
) -> Vec<Finding> {
    let mut out = Vec::new();
    for m in missing {
        let users: Vec<&str> = config
            .cert_refs()
            .filter(|(_, r)| r.serial == m.serial && r.issuer == m.issuer)
            .map(|(id, _)| id)
            .collect();
        let users = if users.is_empty() { vec!["-"] } else { users };
        for id in users {
            out.push(Finding {
                severity: Severity::Error,
                code: Code::KeyMissing,
                connection: id.into(),
                certificate: Some(CertSummary {
                    thumbprint: Some(m.thumbprint.clone()),
                    serial: m.serial.clone(),
                    issuer: m.issuer.clone(),
                }),
                message: format!(
                    "the private key file {} (key container {}) is missing: the certificate cannot be used, and the other checks need the whole store, so they were skipped. Restore the file from a backup if there is one; otherwise start over (the remedy re-creates the deployment and its lcs.toml)",
                    m.path.display(),
                    m.container
                ),
                remedy: format!(
                    "cp BACKUP/{} {}  # restore it; with no backup: lcs-sim init {} --force (re-creates the deployment)",
                    m.path.file_name().map_or(String::new(), |n| n.to_string_lossy().into_owned()),
                    quote(&m.path),
                    quote(dir)
                ),
            });
        }
    }
    out
}
