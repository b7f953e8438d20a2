//! Exit codes, one per kind of outcome, as ripgrep has them: a script can tell "the deployment is
//! broken" (1) from "you called me wrong" (2) from "lcs-sim itself could not do its job" (3).
//!
//! There is deliberately no blanket `From<E: Into<anyhow::Error>>` for [`Failure`]: with one, every
//! `?` became "bad input", so a simulation error or a full disk told the caller to fix its flags.
//! Each library error type says here which code it deserves; ad hoc errors pick one with
//! [`Failure::input`], [`Failure::io`] or [`Failure::internal`].

use lcs_sim::deployment::{DeploymentError, FixOnDiskError};
use lcs_sim::doctor::TrustError;
use lcs_sim::eventlog::EventLogError;
use lcs_sim::input::FileError;
use lcs_sim::load::report::ReportError;
use lcs_sim::load::target::TargetError;
use lcs_sim::pki::PkiError;
use lcs_sim::server::admin::ServeFileError;
use lcs_sim::sim::{ScenarioError, SimError};
use lcs_sim::store::StoreError;

/// A check, a scenario expectation, a doctor finding or a load gate failed.
pub const FAILED: u8 = 1;
/// Bad input: a flag, a deployment folder, a store, configuration, scenario or report file.
pub const INPUT: u8 = 2;
/// lcs-sim could not do its job: a runtime, a simulation, an output write, a full disk.
pub const INTERNAL: u8 = 3;

/// How a command failed.
#[derive(Debug)]
pub struct Failure {
    /// Exit code: [`FAILED`], [`INPUT`] or [`INTERNAL`].
    pub code: u8,
    /// What to tell the user.
    pub error: anyhow::Error,
}

impl Failure {
    /// The input was bad (exit 2).
    pub fn input(error: impl Into<anyhow::Error>) -> Self {
        Failure {
            code: INPUT,
            error: error.into(),
        }
    }

    /// lcs-sim itself failed (exit 3).
    pub fn internal(error: impl Into<anyhow::Error>) -> Self {
        Failure {
            code: INTERNAL,
            error: error.into(),
        }
    }

    /// Bad input, unless the system failed under it (a full disk, an I/O error): see [`io_code`].
    pub fn io(source: &std::io::Error, error: impl Into<anyhow::Error>) -> Self {
        Failure {
            code: io_code(source),
            error: error.into(),
        }
    }

    fn with(code: u8, error: impl Into<anyhow::Error>) -> Self {
        Failure {
            code,
            error: error.into(),
        }
    }
}

/// The code for an I/O error on a path the user named: the machine failing (no space, quota, a
/// device error, out of memory) is internal; anything else (missing, a directory, no permission,
/// not valid data) is the input's fault.
pub fn io_code(e: &std::io::Error) -> u8 {
    use std::io::ErrorKind as K;
    const EIO: i32 = 5;
    const ENOSPC: i32 = 28;
    const EDQUOT: i32 = 122;
    let machine = matches!(
        e.kind(),
        K::StorageFull | K::QuotaExceeded | K::OutOfMemory | K::WriteZero
    ) || matches!(e.raw_os_error(), Some(EIO | ENOSPC | EDQUOT));
    if machine { INTERNAL } else { INPUT }
}

fn pki_code(e: &PkiError) -> u8 {
    match e {
        PkiError::NotACertificate { .. } | PkiError::BadKey { .. } => INPUT,
        _ => INTERNAL,
    }
}

fn store_code(e: &StoreError) -> u8 {
    match e {
        StoreError::Io { source, .. } => io_code(source),
        StoreError::Pki(p) => pki_code(p),
        StoreError::EventLog(l) => event_log_code(l),
        _ => INPUT,
    }
}

fn event_log_code(e: &EventLogError) -> u8 {
    match e {
        EventLogError::Io { source, .. } => io_code(source),
        _ => INPUT,
    }
}

fn deployment_code(e: &DeploymentError) -> u8 {
    match e {
        DeploymentError::Io { source, .. } => io_code(source),
        DeploymentError::Pki(p) => pki_code(p),
        DeploymentError::Store(s) => store_code(s),
        DeploymentError::EventLog(l) => event_log_code(l),
        _ => INPUT,
    }
}

fn file_code(e: &FileError) -> u8 {
    match e {
        FileError::Io { source, .. } => io_code(source),
        _ => INPUT,
    }
}

impl From<DeploymentError> for Failure {
    fn from(e: DeploymentError) -> Self {
        Failure::with(deployment_code(&e), e)
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Failure::with(store_code(&e), e)
    }
}

impl From<EventLogError> for Failure {
    fn from(e: EventLogError) -> Self {
        Failure::with(event_log_code(&e), e)
    }
}

impl From<FileError> for Failure {
    fn from(e: FileError) -> Self {
        Failure::with(file_code(&e), e)
    }
}

impl From<ScenarioError> for Failure {
    fn from(e: ScenarioError) -> Self {
        let code = match &e {
            ScenarioError::File(f) => file_code(f),
            _ => INPUT,
        };
        Failure::with(code, e)
    }
}

impl From<FixOnDiskError> for Failure {
    fn from(e: FixOnDiskError) -> Self {
        let code = match &e {
            FixOnDiskError::Deployment(d) => deployment_code(d),
            _ => INPUT,
        };
        Failure::with(code, e)
    }
}

impl From<TrustError> for Failure {
    fn from(e: TrustError) -> Self {
        Failure::input(e)
    }
}

impl From<TargetError> for Failure {
    fn from(e: TargetError) -> Self {
        let code = match &e {
            TargetError::Deployment(d) => deployment_code(d),
            TargetError::Tls(_) => INTERNAL,
            _ => INPUT,
        };
        Failure::with(code, e)
    }
}

impl From<ReportError> for Failure {
    fn from(e: ReportError) -> Self {
        Failure::input(e)
    }
}

impl From<ServeFileError> for Failure {
    fn from(e: ServeFileError) -> Self {
        let code = match &e {
            ServeFileError::Io { source, .. } => io_code(source),
            _ => INPUT,
        };
        Failure::with(code, e)
    }
}

impl From<SimError> for Failure {
    fn from(e: SimError) -> Self {
        Failure::internal(e)
    }
}

/// Building the tokio runtime failed: the machine, not the input (exit 3).
pub fn runtime(e: std::io::Error) -> Failure {
    Failure::internal(anyhow::Error::new(e).context("starting the async runtime"))
}

/// Serializing a report for output failed: a bug, not the input (exit 3).
pub fn serialize(e: serde_json::Error) -> Failure {
    Failure::internal(anyhow::Error::new(e).context("serializing the output"))
}

/// The message printed for a failure: the error and each cause in its chain, except a cause
/// whose text the message already holds. Many errors name their file and print their OS error
/// in their own message *and* keep it as their source (so callers can inspect it); printing the
/// chain with `{:#}` then said "Is a directory (os error 21): Is a directory (os error 21)"
/// (issue 15 §5). One rule here instead of a rule for each error type.
pub fn message(error: &anyhow::Error) -> String {
    let mut out = error.to_string();
    for cause in error.chain().skip(1) {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("{path}: {source}")]
    struct NamedIo {
        path: &'static str,
        source: std::io::Error,
    }

    #[test]
    fn a_cause_already_in_the_message_is_not_repeated_and_others_are_kept() {
        let e = anyhow::Error::new(NamedIo {
            path: "d/store/index.json",
            source: std::io::Error::from_raw_os_error(21),
        });
        assert_eq!(format!("{e:#}").matches("os error 21").count(), 2);
        assert_eq!(
            message(&e),
            "d/store/index.json: Is a directory (os error 21)"
        );
        let wrapped = anyhow::Error::new(std::io::Error::from_raw_os_error(28))
            .context("writing demo/lcs.toml");
        assert_eq!(
            message(&wrapped),
            "writing demo/lcs.toml: No space left on device (os error 28)"
        );
    }

    #[test]
    fn a_full_disk_is_internal_and_a_missing_file_is_input() {
        let full = std::io::Error::from_raw_os_error(28);
        assert_eq!(io_code(&full), INTERNAL);
        let missing = std::io::Error::from(std::io::ErrorKind::NotFound);
        assert_eq!(io_code(&missing), INPUT);
        let dir = std::io::Error::from_raw_os_error(21);
        assert_eq!(io_code(&dir), INPUT);
    }
}
