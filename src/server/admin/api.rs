//! The admin endpoint's JSON bodies, shared by the server and its clients (`fix --live`, the
//! load generator), so both sides agree on every field by construction.

use serde::{Deserialize, Serialize};

use crate::config::Transport;
use crate::server::credentials::CredentialError;
use crate::server::service::StartCause;

/// `GET /certs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertsReport {
    /// Every configured listener and route.
    pub connections: Vec<CertsEntry>,
}

/// Listener or route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionKind {
    /// A listening connection.
    Listener,
    /// A static route.
    Route,
}

/// One connection's certificate as the running server holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertsEntry {
    /// Connection or route id.
    pub id: String,
    /// Listener or route.
    pub kind: ConnectionKind,
    /// `tcp`, `tls` or `mtls`.
    pub transport: Transport,
    /// The bound port (listeners).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// The next hop (routes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_hop: Option<String>,
    /// `listening` or `ready` (a route that can dial), or `not_started`.
    pub state: ConnectionState,
    /// The certificate bound now (none for TCP or a connection that did not start).
    pub bound: Option<BoundCert>,
    /// Whether the bound key opens as the service principal right now; `null` when nothing is
    /// bound (a TCP listener, or a connection that did not start).
    pub key_opens: Option<bool>,
    /// Why it does not (`key_access_denied`, ...).
    pub key_error: Option<KeyError>,
    /// Why it did not start (`state: not_started`): `address_in_use`, `certificate_not_found`, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_error: Option<StartError>,
    /// The reference in lcs.toml, when it differs from the bound certificate.
    pub configured: Option<ConfiguredRef>,
}

/// Whether a connection runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionState {
    /// A listener that accepts.
    Listening,
    /// A route that can dial.
    Ready,
    /// It did not start (see `start_error`).
    NotStarted,
}

/// Why a credential's key does not open now: [`CredentialError::reason`]'s names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyError {
    /// No active certificate has the reference.
    CertificateNotFound,
    /// The service principal may not open the key.
    KeyAccessDenied,
    /// The key opens but cannot sign.
    UnusableKey,
}

impl KeyError {
    /// The stable name, as in JSON.
    pub fn name(self) -> &'static str {
        match self {
            KeyError::CertificateNotFound => "certificate_not_found",
            KeyError::KeyAccessDenied => "key_access_denied",
            KeyError::UnusableKey => "unusable_key",
        }
    }
}

impl From<&CredentialError> for KeyError {
    fn from(e: &CredentialError) -> Self {
        match e {
            CredentialError::NotFound { .. } => KeyError::CertificateNotFound,
            CredentialError::KeyAccessDenied { .. } => KeyError::KeyAccessDenied,
            CredentialError::UnusableKey { .. } => KeyError::UnusableKey,
        }
    }
}

/// Why a connection did not start: [`StartCause::reason`]'s names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StartError {
    /// No active certificate has the reference.
    CertificateNotFound,
    /// The service principal may not open the key.
    KeyAccessDenied,
    /// The key opens but cannot sign.
    UnusableKey,
    /// Its port is taken.
    AddressInUse,
    /// Its port could not be bound for another reason.
    BindFailed,
}

impl StartError {
    /// The stable name, as in JSON.
    pub fn name(self) -> &'static str {
        match self {
            StartError::CertificateNotFound => KeyError::CertificateNotFound.name(),
            StartError::KeyAccessDenied => KeyError::KeyAccessDenied.name(),
            StartError::UnusableKey => KeyError::UnusableKey.name(),
            StartError::AddressInUse => "address_in_use",
            StartError::BindFailed => "bind_failed",
        }
    }
}

impl From<&StartCause> for StartError {
    fn from(cause: &StartCause) -> Self {
        match cause {
            StartCause::Credential(e) => match KeyError::from(e) {
                KeyError::CertificateNotFound => StartError::CertificateNotFound,
                KeyError::KeyAccessDenied => StartError::KeyAccessDenied,
                KeyError::UnusableKey => StartError::UnusableKey,
            },
            StartCause::Bind { kind, .. } if *kind == std::io::ErrorKind::AddrInUse => {
                StartError::AddressInUse
            }
            StartCause::Bind { .. } => StartError::BindFailed,
        }
    }
}

/// A bound certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BoundCert {
    /// Serial number (hex).
    pub serial: String,
    /// Issuer DN.
    pub issuer: String,
    /// SHA-1 thumbprint.
    pub thumbprint: String,
    /// End of validity (RFC 3339).
    pub not_after: String,
}

/// A certificate reference from lcs.toml.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfiguredRef {
    /// Issuer DN.
    pub issuer: String,
    /// Serial number (hex).
    pub serial: String,
}

/// `POST /rebind`'s optional body.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RebindRequest {
    /// Only these connections (default: every one whose lcs.toml reference differs from the
    /// bound certificate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connections: Option<Vec<String>>,
}

/// `POST /rebind`'s answer (200 or 409).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RebindResponse {
    /// One per connection considered.
    pub results: Vec<RebindResult>,
}

/// What happened to one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RebindStatus {
    /// Swapped to the configured certificate.
    Rebound,
    /// Already presented it.
    Unchanged,
    /// Refused (the whole request changed nothing).
    Refused,
    /// The connection did not start (its listener never bound, or its certificate could not be
    /// acquired at start): there is nothing running to swap, only a restart of `serve` helps.
    /// Does not hold back the other connections.
    NotStarted,
    /// Valid, but not swapped because another connection of the request was refused (a
    /// rebind is all or nothing).
    Held,
}

/// A serial, as the rebind results name certificates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SerialOnly {
    /// Serial number (hex).
    pub serial: String,
}

/// One connection's rebind result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RebindResult {
    /// Connection or route id.
    pub connection: String,
    /// What happened.
    pub status: RebindStatus,
    /// The certificate before (rebound, unchanged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<SerialOnly>,
    /// The certificate after (rebound, unchanged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<SerialOnly>,
    /// Why it was refused (snake_case).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The refusal, for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// `GET /healthz`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// `ok` or `unhealthy`.
    pub status: String,
    /// Each broken connection and why (empty when ok).
    pub broken: Vec<Broken>,
}

/// A connection that is not started or whose key does not open now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Broken {
    /// Connection or route id.
    pub connection: String,
    /// Why (snake_case: `key_access_denied`, `certificate_not_found`, `address_in_use`, ...).
    pub reason: String,
    /// For people.
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json<T: Serialize>(v: T) -> String {
        serde_json::to_string(&v).unwrap()
    }

    #[test]
    fn the_enums_keep_the_names_the_server_and_its_clients_used() {
        assert_eq!(json(ConnectionState::NotStarted), "\"not_started\"");
        assert_eq!(json(ConnectionState::Listening), "\"listening\"");
        assert_eq!(json(ConnectionState::Ready), "\"ready\"");
        for (t, name) in [
            (Transport::Tcp, "tcp"),
            (Transport::Tls, "tls"),
            (Transport::Mtls, "mtls"),
        ] {
            assert_eq!(json(t), format!("\"{name}\""));
            assert_eq!(t.to_string().to_lowercase(), name);
        }
        let reference = crate::config::CertRef {
            issuer: "CN=x".into(),
            serial: "01".to_owned().try_into().unwrap(),
        };
        let thumbprint: crate::pki::Thumbprint = "00".repeat(20).try_into().unwrap();
        let errors = [
            CredentialError::NotFound {
                reference,
                archived_as: None,
            },
            CredentialError::KeyAccessDenied {
                thumbprint: thumbprint.clone(),
                principal: "RTCService".into(),
                denial: crate::store::Denial::KeyAcl {
                    right: crate::store::Right::Read,
                },
            },
            CredentialError::UnusableKey {
                thumbprint,
                reason: "no".into(),
            },
        ];
        for e in &errors {
            let key = KeyError::from(e);
            assert_eq!(
                (key.name(), json(key)),
                (e.reason(), format!("\"{}\"", e.reason()))
            );
            let cause = StartCause::Credential(e.clone());
            let start = StartError::from(&cause);
            assert_eq!(start.name(), cause.reason());
            assert_eq!(json(start), format!("\"{}\"", cause.reason()));
        }
        for kind in [
            std::io::ErrorKind::AddrInUse,
            std::io::ErrorKind::PermissionDenied,
        ] {
            let cause = StartCause::Bind {
                endpoint: "127.0.0.1:5061".parse().unwrap(),
                kind,
                message: String::new(),
            };
            let start = StartError::from(&cause);
            assert_eq!(start.name(), cause.reason());
            assert_eq!(json(start), format!("\"{}\"", cause.reason()));
        }
    }
}
