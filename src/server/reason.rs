//! Why a server-side handshake failed, typed and named once.
//!
//! The reason is decided where the failure happens: our own credential check (the private key
//! opened as the service principal, before rustls sees a certificate), the connection cap, the
//! handshake timer, or rustls's typed error variant and the I/O error kind. It is never read
//! back from a message text or `Debug` output. Names are stable snake_case (serde), because they
//! are counter keys, Prometheus labels and event-log fields: the KB836410 case is
//! `access_denied`, the alert a client sees.

use std::fmt;

use serde::Serialize;

use super::credentials::CredentialError;

/// Why an inbound TLS handshake (or, for `connection_limit`, a connection) failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum HandshakeFailure {
    /// The service principal cannot open the bound certificate's private key
    /// (`NTE_BAD_KEYSET`): KB836410. The client gets an `access_denied` alert.
    AccessDenied,
    /// The bound certificate's key is otherwise unusable (gone from the store, cannot sign).
    CredentialUnusable,
    /// The first bytes were not a TLS ClientHello (plain SIP on a TLS port, a scanner).
    NotTls,
    /// Mutual TLS: the client presented no certificate.
    ClientCertificateMissing,
    /// Mutual TLS: the client's certificate did not verify.
    ClientCertificateRejected,
    /// The client aborted the handshake with an alert.
    AlertReceived,
    /// No common version, cipher suite or signature scheme.
    PeerIncompatible,
    /// Another TLS protocol error.
    TlsError,
    /// The client closed the connection during the handshake.
    PeerClosed,
    /// Another I/O error during the handshake.
    IoError,
    /// The handshake did not finish within `[tls] handshake_timeout_ms`.
    HandshakeTimeout,
    /// The listener was at `max_connections`: closed before any handshake.
    ConnectionLimit,
}

impl HandshakeFailure {
    /// The stable name (counters, labels, events).
    pub fn name(self) -> &'static str {
        match self {
            Self::AccessDenied => "access_denied",
            Self::CredentialUnusable => "credential_unusable",
            Self::NotTls => "not_tls",
            Self::ClientCertificateMissing => "client_certificate_missing",
            Self::ClientCertificateRejected => "client_certificate_rejected",
            Self::AlertReceived => "alert_received",
            Self::PeerIncompatible => "peer_incompatible",
            Self::TlsError => "tls_error",
            Self::PeerClosed => "peer_closed",
            Self::IoError => "io_error",
            Self::HandshakeTimeout => "handshake_timeout",
            Self::ConnectionLimit => "connection_limit",
        }
    }

    /// The failure a handshake gets when our credential check refused it.
    pub fn from_credential(e: &CredentialError) -> Self {
        match e {
            CredentialError::KeyAccessDenied { .. } => Self::AccessDenied,
            _ => Self::CredentialUnusable,
        }
    }

    /// Classifies a handshake error from tokio-rustls: rustls's typed error travels inside the
    /// `io::Error`; without one, the I/O error kind decides.
    pub fn from_tls_error(e: &std::io::Error) -> Self {
        match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
            Some(rustls::Error::InvalidMessage(_)) => Self::NotTls,
            Some(rustls::Error::NoCertificatesPresented) => Self::ClientCertificateMissing,
            Some(rustls::Error::InvalidCertificate(_)) => Self::ClientCertificateRejected,
            Some(rustls::Error::AlertReceived(_)) => Self::AlertReceived,
            Some(rustls::Error::PeerIncompatible(_)) => Self::PeerIncompatible,
            Some(_) => Self::TlsError,
            None => match e.kind() {
                std::io::ErrorKind::UnexpectedEof
                | std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::ConnectionAborted
                | std::io::ErrorKind::BrokenPipe => Self::PeerClosed,
                _ => Self::IoError,
            },
        }
    }
}

impl fmt::Display for HandshakeFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::Thumbprint;
    use std::io::{Error, ErrorKind};

    fn tls(e: rustls::Error) -> Error {
        Error::new(ErrorKind::InvalidData, e)
    }

    #[test]
    fn rustls_variants_and_io_kinds_map_to_stable_names() {
        let cases = [
            (
                tls(rustls::Error::InvalidMessage(
                    rustls::InvalidMessage::InvalidContentType,
                )),
                "not_tls",
            ),
            (
                tls(rustls::Error::NoCertificatesPresented),
                "client_certificate_missing",
            ),
            (
                tls(rustls::Error::InvalidCertificate(
                    rustls::CertificateError::UnknownIssuer,
                )),
                "client_certificate_rejected",
            ),
            (
                tls(rustls::Error::AlertReceived(
                    rustls::AlertDescription::UnknownCA,
                )),
                "alert_received",
            ),
            (
                tls(rustls::Error::PeerIncompatible(
                    rustls::PeerIncompatible::Tls12NotOffered,
                )),
                "peer_incompatible",
            ),
            // A message that looks like the old "no server certificate" text is just a TLS error:
            // the credential case is decided by our own check, never by text.
            (
                tls(rustls::Error::General(
                    "no server certificate chain resolved".into(),
                )),
                "tls_error",
            ),
            (Error::from(ErrorKind::UnexpectedEof), "peer_closed"),
            (Error::from(ErrorKind::ConnectionReset), "peer_closed"),
            (Error::from(ErrorKind::PermissionDenied), "io_error"),
        ];
        for (e, name) in cases {
            assert_eq!(HandshakeFailure::from_tls_error(&e).name(), name, "{e:?}");
        }
    }

    #[test]
    fn credential_errors_map_to_access_denied_or_unusable() {
        let t = Thumbprint::of(b"certificate");
        let denied = CredentialError::KeyAccessDenied {
            thumbprint: t.clone(),
            principal: "RTCService".into(),
            denial: crate::store::Denial::KeyAcl {
                right: crate::store::Right::Read,
            },
        };
        assert_eq!(
            HandshakeFailure::from_credential(&denied).name(),
            "access_denied"
        );
        let unusable = CredentialError::UnusableKey {
            thumbprint: t,
            reason: "gone".into(),
        };
        assert_eq!(
            HandshakeFailure::from_credential(&unusable),
            HandshakeFailure::CredentialUnusable
        );
        assert_eq!(
            serde_json::to_value(HandshakeFailure::ConnectionLimit).unwrap(),
            "connection_limit"
        );
    }
}
