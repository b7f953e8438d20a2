//! Types that say what is valid in `lcs.toml`: a TLS version, a listener whose TLS variants
//! carry their certificate, a `host:port`.
//!
//! Each is parsed once, at load, into a value that cannot hold what validation forbids, so the
//! server never re-checks a field (`.expect("validated")`) or splits a string again at dial time.
//! The file format is unchanged: each type converts to and from its TOML spelling.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::{CertRef, Transport};

/// The lowest TLS version a listener or route offers (`[tls] min_version`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Serialize, Deserialize)]
pub enum TlsVersion {
    /// TLS 1.2 and 1.3 (the default).
    #[default]
    #[serde(rename = "1.2")]
    V1_2,
    /// TLS 1.3 only.
    #[serde(rename = "1.3")]
    V1_3,
}

/// What a listening connection speaks; the TLS variants carry the certificate they present.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenerKind {
    /// Plain TCP: no certificate.
    Tcp,
    /// TLS, server-authenticated.
    Tls(CertRef),
    /// Mutual TLS: client certificates required.
    Mtls(CertRef),
}

impl ListenerKind {
    /// The transport.
    pub fn transport(&self) -> Transport {
        match self {
            ListenerKind::Tcp => Transport::Tcp,
            ListenerKind::Tls(_) => Transport::Tls,
            ListenerKind::Mtls(_) => Transport::Mtls,
        }
    }

    /// The certificate, for TLS and mutual TLS.
    pub fn certificate(&self) -> Option<&CertRef> {
        match self {
            ListenerKind::Tcp => None,
            ListenerKind::Tls(c) | ListenerKind::Mtls(c) => Some(c),
        }
    }

    /// The certificate, to rebind it.
    pub fn certificate_mut(&mut self) -> Option<&mut CertRef> {
        match self {
            ListenerKind::Tcp => None,
            ListenerKind::Tls(c) | ListenerKind::Mtls(c) => Some(c),
        }
    }
}

/// A listening connection (`MSFT_SIPListeningAddressData`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "ConnectionFile", into = "ConnectionFile")]
pub struct Connection {
    /// Stable id, e.g. `tls-5061`.
    pub id: String,
    /// Transport, and the certificate for TLS and mutual TLS.
    pub kind: ListenerKind,
    /// Address to listen on (default loopback).
    pub address: IpAddr,
    /// Port (0 picks a free one, for tests).
    pub port: u16,
}

impl Connection {
    /// The transport.
    pub fn transport(&self) -> Transport {
        self.kind.transport()
    }

    /// The certificate, for TLS and mutual TLS.
    pub fn certificate(&self) -> Option<&CertRef> {
        self.kind.certificate()
    }
}

/// A connection as `lcs.toml` spells it.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConnectionFile {
    id: String,
    transport: Transport,
    #[serde(default = "super::loopback")]
    address: IpAddr,
    port: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    certificate: Option<CertRef>,
}

impl TryFrom<ConnectionFile> for Connection {
    type Error = String;

    fn try_from(f: ConnectionFile) -> Result<Self, String> {
        let kind = match (f.transport, f.certificate) {
            (Transport::Tcp, None) => ListenerKind::Tcp,
            (Transport::Tls, Some(c)) => ListenerKind::Tls(c),
            (Transport::Mtls, Some(c)) => ListenerKind::Mtls(c),
            (Transport::Tcp, Some(_)) => {
                return Err(format!(
                    "connection `{}`: field `certificate`: a TCP connection uses no certificate; remove it or change the transport",
                    f.id
                ));
            }
            (t, None) => {
                return Err(format!(
                    "connection `{}`: field `certificate`: a {t} connection needs `certificate = {{ issuer = \"...\", serial = \"...\" }}`; see `lcs-sim store list DIR`",
                    f.id
                ));
            }
        };
        Ok(Connection {
            id: f.id,
            kind,
            address: f.address,
            port: f.port,
        })
    }
}

impl From<Connection> for ConnectionFile {
    fn from(c: Connection) -> Self {
        ConnectionFile {
            transport: c.transport(),
            certificate: c.certificate().cloned(),
            id: c.id,
            address: c.address,
            port: c.port,
        }
    }
}

/// A next hop, `host:port` (`[v6]:port` for an IPv6 literal).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct HostPort {
    /// A host name or an IP address (without brackets).
    pub host: String,
    /// The port.
    pub port: u16,
}

/// A next hop that is not `host:port`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{text}` is not host:port ({why}), e.g. \"127.0.0.1:5071\"")]
pub struct HostPortError {
    text: String,
    why: &'static str,
}

impl FromStr for HostPort {
    type Err = HostPortError;

    fn from_str(s: &str) -> Result<Self, HostPortError> {
        let err = |why| HostPortError {
            text: s.into(),
            why,
        };
        let (host, port) = s.rsplit_once(':').ok_or_else(|| err("no port"))?;
        let host = match host.strip_prefix('[') {
            Some(v6) => v6.strip_suffix(']').ok_or_else(|| err("unclosed ["))?,
            None if host.contains(':') => return Err(err("an IPv6 address needs [brackets]")),
            None => host,
        };
        if host.is_empty() {
            return Err(err("no host"));
        }
        let port = port.parse().map_err(|_| err("the port is not 0..=65535"))?;
        Ok(HostPort {
            host: host.into(),
            port,
        })
    }
}

impl TryFrom<String> for HostPort {
    type Error = HostPortError;
    fn try_from(s: String) -> Result<Self, HostPortError> {
        s.parse()
    }
}

impl From<HostPort> for String {
    fn from(h: HostPort) -> String {
        h.to_string()
    }
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_parses_names_v4_and_bracketed_v6_and_round_trips() {
        for text in ["127.0.0.1:5071", "edge.fabrikam.com:5061", "[::1]:5071"] {
            let h: HostPort = text.parse().unwrap();
            assert_eq!(h.to_string(), text);
        }
        let v6: HostPort = "[::1]:9".parse().unwrap();
        assert_eq!((v6.host.as_str(), v6.port), ("::1", 9));
        for bad in [
            "127.0.0.1",
            ":5071",
            "::1:5071",
            "[::1:5071",
            "h:70000",
            "h:x",
        ] {
            assert!(bad.parse::<HostPort>().is_err(), "{bad}");
        }
    }
}
