//! Why a client could not connect: one typed reason for every client in the crate.
//!
//! The emulated users and the federation peer of the simulation, the server's own routes and the
//! load generator all dial a TLS server and must say, in a counter or a report, why a dial
//! failed. The reason is decided where the failure happens, from rustls's typed error (an alert
//! code, a certificate error variant) and the I/O error kind, never from a message text or
//! `Debug` output, and it has a stable snake_case name: `tls_alert_access_denied`,
//! `certificate_invalid_unknown_issuer`, `connection_refused`, `handshake_timeout`.
//!
//! Names are part of the report formats (JSON keys, JUnit text, Prometheus labels), so they
//! never change once published; a new rustls variant maps to an `other` name until it is named
//! here.

use std::fmt;

use serde::{Serialize, Serializer};

/// Why a client's connection attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum ConnectFailure {
    /// TCP connect did not complete in time.
    ConnectTimeout,
    /// Nothing listens at the address (RST to the SYN).
    ConnectionRefused,
    /// Another I/O error while connecting (unreachable network, reset, ...).
    ConnectError,
    /// The TLS handshake did not complete in time.
    HandshakeTimeout,
    /// The server sent a TLS alert during the handshake (KB836410: `access_denied`, sent by a
    /// server whose resolver has no usable certificate).
    TlsAlert(Alert),
    /// The server's certificate did not verify.
    CertificateInvalid(CertificateProblem),
    /// The connection closed in the middle of the handshake with no alert.
    ClosedDuringHandshake,
    /// Another TLS error (protocol violation, no shared version or cipher suite, ...).
    TlsError,
}

impl ConnectFailure {
    /// Classifies the error of a TLS connect (`tokio_rustls::TlsConnector::connect`): rustls's
    /// error travels inside the `io::Error`.
    pub fn from_handshake_error(e: &std::io::Error) -> Self {
        match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
            Some(rustls::Error::AlertReceived(alert)) => Self::TlsAlert(Alert::from(*alert)),
            Some(rustls::Error::InvalidCertificate(c)) => {
                Self::CertificateInvalid(CertificateProblem::from(c))
            }
            Some(_) => Self::TlsError,
            None => match e.kind() {
                std::io::ErrorKind::UnexpectedEof
                | std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::ConnectionAborted
                | std::io::ErrorKind::BrokenPipe => Self::ClosedDuringHandshake,
                _ => Self::TlsError,
            },
        }
    }

    /// Classifies the error of a TCP connect.
    pub fn from_connect_error(e: &std::io::Error) -> Self {
        match e.kind() {
            std::io::ErrorKind::ConnectionRefused => Self::ConnectionRefused,
            std::io::ErrorKind::TimedOut => Self::ConnectTimeout,
            _ => Self::ConnectError,
        }
    }

    /// The stable name, as counters, reports and logs print it.
    pub fn name(&self) -> String {
        match self {
            Self::ConnectTimeout => "connect_timeout".into(),
            Self::ConnectionRefused => "connection_refused".into(),
            Self::ConnectError => "connect_error".into(),
            Self::HandshakeTimeout => "handshake_timeout".into(),
            Self::TlsAlert(a) => format!("tls_alert_{}", a.name()),
            Self::CertificateInvalid(c) => format!("certificate_invalid_{}", c.name()),
            Self::ClosedDuringHandshake => "closed_during_handshake".into(),
            Self::TlsError => "tls_error".into(),
        }
    }
}

impl fmt::Display for ConnectFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

impl Serialize for ConnectFailure {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.name())
    }
}

/// A TLS alert description, named as RFC 8446 §6 names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Alert(pub u8);

impl Alert {
    /// `access_denied` (49): what a rustls server sends when its resolver returns no certificate.
    pub const ACCESS_DENIED: Alert = Alert(49);

    /// The RFC name in snake_case, or `code_N` for a code RFC 8446 does not name.
    pub fn name(&self) -> String {
        let known = match self.0 {
            0 => "close_notify",
            10 => "unexpected_message",
            20 => "bad_record_mac",
            22 => "record_overflow",
            40 => "handshake_failure",
            42 => "bad_certificate",
            43 => "unsupported_certificate",
            44 => "certificate_revoked",
            45 => "certificate_expired",
            46 => "certificate_unknown",
            47 => "illegal_parameter",
            48 => "unknown_ca",
            49 => "access_denied",
            50 => "decode_error",
            51 => "decrypt_error",
            70 => "protocol_version",
            71 => "insufficient_security",
            80 => "internal_error",
            86 => "inappropriate_fallback",
            90 => "user_canceled",
            109 => "missing_extension",
            110 => "unsupported_extension",
            112 => "unrecognized_name",
            113 => "bad_certificate_status_response",
            115 => "unknown_psk_identity",
            116 => "certificate_required",
            120 => "no_application_protocol",
            code => return format!("code_{code}"),
        };
        known.into()
    }
}

impl From<rustls::AlertDescription> for Alert {
    fn from(a: rustls::AlertDescription) -> Self {
        Alert(u8::from(a))
    }
}

/// Why the server's certificate did not verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum CertificateProblem {
    /// Past its `notAfter`.
    Expired,
    /// Before its `notBefore`.
    NotValidYet,
    /// Does not chain to a trusted root.
    UnknownIssuer,
    /// Valid, but not for the name the client asked for.
    NotValidForName,
    /// Lacks the extended key usage the client needs (serverAuth).
    InvalidPurpose,
    /// A signature in the chain does not verify.
    BadSignature,
    /// Revoked.
    Revoked,
    /// Malformed or otherwise rejected.
    Other,
}

impl CertificateProblem {
    /// The stable snake_case name.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Expired => "expired",
            Self::NotValidYet => "not_valid_yet",
            Self::UnknownIssuer => "unknown_issuer",
            Self::NotValidForName => "not_valid_for_name",
            Self::InvalidPurpose => "invalid_purpose",
            Self::BadSignature => "bad_signature",
            Self::Revoked => "revoked",
            Self::Other => "other",
        }
    }
}

impl From<&rustls::CertificateError> for CertificateProblem {
    fn from(c: &rustls::CertificateError) -> Self {
        use rustls::CertificateError as E;
        match c {
            E::Expired | E::ExpiredContext { .. } => Self::Expired,
            E::NotValidYet | E::NotValidYetContext { .. } => Self::NotValidYet,
            E::UnknownIssuer => Self::UnknownIssuer,
            E::NotValidForName | E::NotValidForNameContext { .. } => Self::NotValidForName,
            E::InvalidPurpose | E::InvalidPurposeContext { .. } => Self::InvalidPurpose,
            E::BadSignature => Self::BadSignature,
            E::Revoked => Self::Revoked,
            _ => Self::Other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wrapped(e: rustls::Error) -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::InvalidData, e)
    }

    #[test]
    fn kb836410_alert_has_its_published_name() {
        let e = wrapped(rustls::Error::AlertReceived(
            rustls::AlertDescription::AccessDenied,
        ));
        let f = ConnectFailure::from_handshake_error(&e);
        assert_eq!(f, ConnectFailure::TlsAlert(Alert::ACCESS_DENIED));
        assert_eq!(f.name(), "tls_alert_access_denied");
        assert_eq!(
            serde_json::to_string(&f).unwrap(),
            "\"tls_alert_access_denied\""
        );
    }

    #[test]
    fn certificate_errors_are_named_by_variant_not_text() {
        let e = wrapped(rustls::Error::InvalidCertificate(
            rustls::CertificateError::UnknownIssuer,
        ));
        assert_eq!(
            ConnectFailure::from_handshake_error(&e).name(),
            "certificate_invalid_unknown_issuer"
        );
        let e = wrapped(rustls::Error::InvalidCertificate(
            rustls::CertificateError::NotValidForName,
        ));
        assert_eq!(
            ConnectFailure::from_handshake_error(&e).name(),
            "certificate_invalid_not_valid_for_name"
        );
    }

    #[test]
    fn io_errors_map_by_kind() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(
            ConnectFailure::from_connect_error(&refused),
            ConnectFailure::ConnectionRefused
        );
        let eof = std::io::Error::from(std::io::ErrorKind::UnexpectedEof);
        assert_eq!(
            ConnectFailure::from_handshake_error(&eof).name(),
            "closed_during_handshake"
        );
    }

    #[test]
    fn unnamed_alert_codes_keep_their_number() {
        assert_eq!(Alert(200).name(), "code_200");
    }
}
