//! The admin endpoint's JSON bodies, shared by the server and its clients (`fix --live`, the
//! load generator), so both sides agree on every field by construction.

use serde::{Deserialize, Serialize};

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
    pub transport: String,
    /// The bound port (listeners).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// The next hop (routes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_hop: Option<String>,
    /// `listening` or `ready` (a route that can dial), or `not_started`.
    pub state: String,
    /// The certificate bound now (none for TCP or a connection that did not start).
    pub bound: Option<BoundCert>,
    /// Whether the bound key opens as the service principal right now; `null` when nothing is
    /// bound (a TCP listener, or a connection that did not start).
    pub key_opens: Option<bool>,
    /// Why it does not (`key_access_denied`, ...).
    pub key_error: Option<String>,
    /// Why it did not start (`state: not_started`): `address_in_use`, `certificate_not_found`, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_error: Option<String>,
    /// The reference in lcs.toml, when it differs from the bound certificate.
    pub configured: Option<ConfiguredRef>,
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
