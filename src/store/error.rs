//! What can go wrong with the store, with enough context to act on.

use std::path::PathBuf;

use crate::pki::{PkiError, Serial, Thumbprint};
use crate::store::{Denial, Right};
use crate::winerr;

/// A store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The principal may not open the private key: the KB836410 condition. The message ends with
    /// the platform's error (Windows: `NTE_BAD_KEYSET` 0x80090016 "Keyset does not exist").
    #[error(
        "{principal} has no {right} access to the private key of {thumbprint}: {}", .denial.platform_error()
    )]
    AccessDenied {
        /// The certificate whose key was asked for.
        thumbprint: Thumbprint,
        /// Who asked.
        principal: String,
        /// The right that was needed.
        right: Right,
        /// Why the platform refused it.
        denial: Denial,
    },
    /// No certificate's thumbprint starts with the query.
    #[error(
        "no certificate with thumbprint `{query}` in the store (see `lcs-sim store list DIR --all`)"
    )]
    UnknownThumbprint {
        /// What was asked for.
        query: String,
    },
    /// More than one certificate's thumbprint starts with the query.
    #[error("thumbprint prefix `{query}` is ambiguous: it matches {}; give more digits", list(.matches))]
    AmbiguousThumbprint {
        /// What was asked for.
        query: String,
        /// Every match.
        matches: Vec<Thumbprint>,
    },
    /// An ordinary lookup by issuer and serial found no usable certificate.
    #[error("certificate not found: issuer `{issuer}`, serial {serial}{}", match .archived_as {
        Some(t) => format!(" (it is archived as {t}: renewed, and archived certificates are invisible to a lookup)"),
        None => String::new(),
    })]
    NotFound {
        /// The configured issuer.
        issuer: String,
        /// The configured serial.
        serial: Serial,
        /// The archived certificate with that reference, if there is one.
        archived_as: Option<Thumbprint>,
    },
    /// The certificate was already renewed; renew its successor instead.
    #[error(
        "certificate {thumbprint} is archived: it was renewed by {renewed_by}; renew that one instead"
    )]
    AlreadyRenewed {
        /// The archived certificate.
        thumbprint: Thumbprint,
        /// Its successor.
        renewed_by: Thumbprint,
    },
    /// The CA offered for a renewal did not issue the certificate.
    #[error(
        "certificate {thumbprint} was issued by `{issuer}`, not by this deployment's CA `{ca}`"
    )]
    WrongIssuer {
        /// The certificate.
        thumbprint: Thumbprint,
        /// Its issuer.
        issuer: String,
        /// The CA's subject.
        ca: String,
    },
    /// A certificate and the key container it names do not belong together.
    #[error("the private key in container `{container}` does not match certificate {thumbprint}")]
    KeyMismatch {
        /// The certificate.
        thumbprint: Thumbprint,
        /// The key container.
        container: String,
    },
    /// The certificate is in the store already.
    #[error("certificate {thumbprint} is already in the store")]
    Duplicate {
        /// The certificate.
        thumbprint: Thumbprint,
    },
    /// Issuing or parsing a certificate failed.
    #[error(transparent)]
    Pki(#[from] PkiError),
    /// Reading or writing a store file failed.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A store file is damaged or was edited by hand.
    #[error("{}{}: {detail}\n  hint: {hint}", .path.display(), match .line { Some(l) => format!(":{l}"), None => String::new() })]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The line, where known.
        line: Option<usize>,
        /// What is wrong (the field, the value).
        detail: String,
        /// What to do about it.
        hint: String,
    },
    /// The event log a change's events go to could not be read or appended to.
    #[error(transparent)]
    EventLog(#[from] crate::eventlog::EventLogError),
    /// There is no store in the folder.
    #[error("{} holds no certificate store (no index.json); create a deployment with `lcs-sim init DIR`", .path.display())]
    NoStore {
        /// The folder.
        path: PathBuf,
    },
}

impl StoreError {
    /// The Windows error code this failure surfaces as, if it has one.
    pub fn windows_code(&self) -> Option<u32> {
        match self {
            StoreError::AccessDenied { denial, .. } => denial.platform_error().windows_code(),
            StoreError::NotFound { .. } => Some(winerr::CRYPT_E_NOT_FOUND),
            _ => None,
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> StoreError {
        let path = path.into();
        move |source| StoreError::Io { path, source }
    }
}

fn list(ts: &[Thumbprint]) -> String {
    ts.iter().map(|t| t.as_str()).collect::<Vec<_>>().join(", ")
}
