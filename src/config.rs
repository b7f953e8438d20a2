//! `lcs.toml`: the emulated server's configuration, as LCS 2003 kept it in WMI.
//!
//! LCS names a connection's certificate by **issuer + serial number**
//! (`MSFT_SIPListeningAddressData`, `MSFT_SIPRoutingTableData`), not by thumbprint or subject.
//! That detail is why a renewal breaks it twice: the running service cannot open the key whose
//! ACL was reset, and after a restart the configured serial names an *archived* certificate that
//! an ordinary lookup no longer returns. So every TLS connection and route here carries a
//! [`CertRef`], and fixing the fault means rewriting those references.
//!
//! Parsing is pure; errors name the file, the line (from the TOML parser) or the field, and what
//! to do.

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::pki::Serial;

/// `lcs.toml` could not be used: which file, which line or field, what to do.
pub type ConfigError = crate::input::FileError;

/// How a connection carries SIP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// Plain TCP.
    Tcp,
    /// TLS, server-authenticated (Windows Messenger clients).
    Tls,
    /// Mutual TLS: both sides present certificates (servers, federation).
    Mtls,
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
            Transport::Mtls => "MTLS",
        })
    }
}

/// A certificate named the way LCS names it: issuer distinguished name and serial number.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertRef {
    /// Issuer DN, e.g. `CN=Contoso Issuing CA, O=Contoso`.
    pub issuer: String,
    /// Serial number in hex.
    pub serial: Serial,
}

impl fmt::Display for CertRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "issuer \"{}\" serial {}", self.issuer, self.serial)
    }
}

/// The service: who it is and who it runs as.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    /// The server's FQDN, e.g. `lcs01.contoso.com`.
    pub server: String,
    /// The SIP domain it is authoritative for, e.g. `contoso.com`.
    pub domain: String,
    /// The account the service runs as; it needs read on the certificate's private key.
    pub principal: String,
    /// Other hosts a Request-URI may name for this domain (default `127.0.0.1`, `localhost`),
    /// so SIP tools on the same machine, which cannot resolve the domain, can register as
    /// `user@127.0.0.1`.
    #[serde(default = "default_aliases")]
    pub aliases: Vec<String>,
}

fn default_aliases() -> Vec<String> {
    vec!["127.0.0.1".into(), "localhost".into()]
}

/// SIP protocol settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SipSettings {
    /// RFC 3261 T1 in milliseconds (default 500). Timer F, after which an unanswered MESSAGE
    /// gets 408, is 64 × T1 = 32 s.
    pub t1_ms: u64,
    /// Largest SIP message accepted, in bytes (default 65 536); larger gets 513 and a close.
    pub max_message_bytes: usize,
    /// Shortest registration accepted, in seconds (default 60; shorter gets 423).
    pub min_expires_s: u32,
    /// Longest registration granted, in seconds (default 3 600).
    pub max_expires_s: u32,
    /// Idle connections are closed after this many seconds (default 300).
    pub idle_timeout_s: u64,
}

impl Default for SipSettings {
    fn default() -> Self {
        Self {
            t1_ms: 500,
            max_message_bytes: 64 * 1024,
            min_expires_s: 60,
            max_expires_s: 3600,
            idle_timeout_s: 300,
        }
    }
}

/// TLS settings shared by every TLS and mutual-TLS connection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsSettings {
    /// Send TLS 1.3 session tickets (default false: sipsak mishandles them).
    pub session_tickets: bool,
    /// Lowest TLS version offered, `"1.2"` or `"1.3"` (default `"1.2"`).
    pub min_version: String,
    /// A handshake not finished after this many milliseconds is abandoned (default 10 000).
    pub handshake_timeout_ms: u64,
}

impl Default for TlsSettings {
    fn default() -> Self {
        Self {
            session_tickets: false,
            min_version: "1.2".into(),
            handshake_timeout_ms: 10_000,
        }
    }
}

/// A listening connection (`MSFT_SIPListeningAddressData`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Connection {
    /// Stable id, e.g. `tls-5061`.
    pub id: String,
    /// Transport.
    pub transport: Transport,
    /// Address to listen on (default loopback).
    #[serde(default = "loopback")]
    pub address: IpAddr,
    /// Port (0 picks a free one, for tests).
    pub port: u16,
    /// The certificate, for TLS and MTLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<CertRef>,
}

/// A static route to a federated domain (`MSFT_SIPRoutingTableData`), over mutual TLS.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// Stable id, e.g. `route-fabrikam.com`.
    pub id: String,
    /// The domain whose requests take this route.
    pub domain: String,
    /// The next hop, `host:port`.
    pub next_hop: String,
    /// Transport to the next hop (mutual TLS for federation).
    pub transport: Transport,
    /// The certificate presented to the next hop.
    pub certificate: Option<CertRef>,
}

/// The whole of `lcs.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Who the service is.
    pub service: Service,
    /// SIP settings.
    #[serde(default)]
    pub sip: SipSettings,
    /// TLS settings.
    #[serde(default)]
    pub tls: TlsSettings,
    /// Listening connections.
    #[serde(default, rename = "connection")]
    pub connections: Vec<Connection>,
    /// Static routes.
    #[serde(default, rename = "route")]
    pub routes: Vec<Route>,
}

fn loopback() -> IpAddr {
    IpAddr::from([127, 0, 0, 1])
}

const HEADER: &str = "\
# lcs.toml: the emulated Live Communications Server configuration (LCS 2003 kept it in WMI).
# Connections and routes name their certificate by issuer + serial, as LCS does: after a
# renewal they must be pointed at the new certificate (`lcs-sim fix`, or by hand).
# Reference: README.md, section \"lcs.toml\".

";

impl Config {
    /// Parses and validates `text`, read from `path` (used in messages).
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let config: Config = crate::input::parse_toml(text, path)?;
        config.validate(path)?;
        Ok(config)
    }

    /// Reads and validates a file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::parse(&crate::input::read(path)?, path)
    }

    /// Writes the file atomically, with a commented header.
    pub fn save(&self, path: &Path) -> Result<(), ConfigError> {
        let body = toml::to_string_pretty(self).expect("the configuration serialises");
        crate::atomic::atomic_write(path, format!("{HEADER}{body}").as_bytes(), None).map_err(
            |source| ConfigError::Io {
                path: path.into(),
                source,
            },
        )
    }

    /// The LCS layout `init` and the simulation use: TLS, mutual TLS and TCP listeners on
    /// loopback (ids `tls-PORT`, `mtls-PORT`, `tcp-PORT`) and one mutual-TLS route to
    /// `federated_domain` at `next_hop` (id `route-DOMAIN`), every TLS one naming `cert`.
    pub fn standard(
        service: Service,
        cert: &CertRef,
        [tls_port, mtls_port, tcp_port]: [u16; 3],
        federated_domain: &str,
        next_hop: &str,
    ) -> Config {
        let listen = |transport: Transport, port: u16| Connection {
            id: format!("{}-{port}", transport.to_string().to_lowercase()),
            transport,
            address: loopback(),
            port,
            certificate: (transport != Transport::Tcp).then(|| cert.clone()),
        };
        Config {
            service,
            sip: SipSettings::default(),
            tls: TlsSettings::default(),
            connections: vec![
                listen(Transport::Tls, tls_port),
                listen(Transport::Mtls, mtls_port),
                listen(Transport::Tcp, tcp_port),
            ],
            routes: vec![Route {
                id: format!("route-{federated_domain}"),
                domain: federated_domain.into(),
                next_hop: next_hop.into(),
                transport: Transport::Mtls,
                certificate: Some(cert.clone()),
            }],
        }
    }

    /// Every certificate reference with the id of the connection or route that holds it.
    pub fn cert_refs(&self) -> impl Iterator<Item = (&str, &CertRef)> {
        let conns = self
            .connections
            .iter()
            .filter_map(|c| Some((c.id.as_str(), c.certificate.as_ref()?)));
        let routes = self
            .routes
            .iter()
            .filter_map(|r| Some((r.id.as_str(), r.certificate.as_ref()?)));
        conns.chain(routes)
    }

    /// Checks what the schema cannot: unique ids and ports, certificates where TLS needs them.
    pub fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |field: String, message: String| crate::input::invalid(path, field, message);
        for (field, value) in [
            ("service.server", &self.service.server),
            ("service.domain", &self.service.domain),
        ] {
            if value.trim().is_empty() {
                return Err(invalid(field.into(), "must not be empty".into()));
            }
        }
        if !(100..=600_000).contains(&self.tls.handshake_timeout_ms) {
            return Err(invalid(
                "tls.handshake_timeout_ms".into(),
                format!(
                    "{} is out of range; use 100..=600000 (default 10000)",
                    self.tls.handshake_timeout_ms
                ),
            ));
        }
        if !(1..=7 * 86_400).contains(&self.sip.idle_timeout_s) {
            return Err(invalid(
                "sip.idle_timeout_s".into(),
                format!(
                    "{} is out of range; use 1..=604800 (default 300)",
                    self.sip.idle_timeout_s
                ),
            ));
        }
        if self.service.principal.trim().is_empty() {
            return Err(invalid(
                "service.principal".into(),
                "must name the service account, e.g. \"RTCService\"".into(),
            ));
        }
        if self.sip.t1_ms == 0 || self.sip.t1_ms > 60_000 {
            return Err(invalid(
                "sip.t1_ms".into(),
                format!(
                    "{} is out of range; use 1..=60000 (RFC 3261 default 500)",
                    self.sip.t1_ms
                ),
            ));
        }
        if !(1024..=16 * 1024 * 1024).contains(&self.sip.max_message_bytes) {
            return Err(invalid(
                "sip.max_message_bytes".into(),
                format!(
                    "{} is out of range; use 1024..=16777216 (default 65536)",
                    self.sip.max_message_bytes
                ),
            ));
        }
        if self.sip.min_expires_s > self.sip.max_expires_s {
            return Err(invalid(
                "sip.min_expires_s".into(),
                format!(
                    "{} exceeds sip.max_expires_s = {}",
                    self.sip.min_expires_s, self.sip.max_expires_s
                ),
            ));
        }
        if !matches!(self.tls.min_version.as_str(), "1.2" | "1.3") {
            return Err(invalid(
                "tls.min_version".into(),
                format!(
                    "`{}` is not supported; use \"1.2\" or \"1.3\"",
                    self.tls.min_version
                ),
            ));
        }
        let mut ids = BTreeSet::new();
        let mut endpoints = BTreeSet::new();
        for (i, c) in self.connections.iter().enumerate() {
            let field = |name: &str| format!("connection[{i}].{name}");
            if !ids.insert(c.id.as_str()) {
                return Err(invalid(
                    field("id"),
                    format!("`{}` is used twice; ids must be unique", c.id),
                ));
            }
            if c.port != 0 && !endpoints.insert((c.address, c.port)) {
                return Err(invalid(
                    field("port"),
                    format!("{}:{} is used by two connections", c.address, c.port),
                ));
            }
            match (c.transport, &c.certificate) {
                (Transport::Tls | Transport::Mtls, None) => {
                    return Err(invalid(
                        field("certificate"),
                        format!(
                            "a {} connection needs `certificate = {{ issuer = \"...\", serial = \"...\" }}`; see `lcs-sim store list DIR`",
                            c.transport
                        ),
                    ));
                }
                (Transport::Tcp, Some(_)) => {
                    return Err(invalid(
                        field("certificate"),
                        "a TCP connection uses no certificate; remove it or change the transport"
                            .into(),
                    ));
                }
                _ => {}
            }
        }
        for (i, r) in self.routes.iter().enumerate() {
            let field = |name: &str| format!("route[{i}].{name}");
            if !ids.insert(r.id.as_str()) {
                return Err(invalid(
                    field("id"),
                    format!("`{}` is used twice; ids must be unique", r.id),
                ));
            }
            if self.routes[..i]
                .iter()
                .any(|o| o.domain.eq_ignore_ascii_case(&r.domain))
            {
                return Err(invalid(
                    field("domain"),
                    format!("`{}` already has a route; one route per domain", r.domain),
                ));
            }
            if r.domain.eq_ignore_ascii_case(&self.service.domain) {
                return Err(invalid(
                    field("domain"),
                    format!(
                        "`{}` is this server's own domain; a route is for another domain",
                        r.domain
                    ),
                ));
            }
            if !r.next_hop.contains(':') {
                return Err(invalid(
                    field("next_hop"),
                    format!("`{}` needs a port, e.g. \"127.0.0.1:5071\"", r.next_hop),
                ));
            }
            if r.transport != Transport::Mtls {
                return Err(invalid(
                    field("transport"),
                    "routes to a federated domain use mutual TLS: transport = \"mtls\"".into(),
                ));
            }
            if r.certificate.is_none() {
                return Err(invalid(
                    field("certificate"),
                    "a mutual-TLS route needs the certificate it presents".into(),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"
[service]
server = "lcs01.contoso.com"
domain = "contoso.com"
principal = "RTCService"

[[connection]]
id = "tls-5061"
transport = "tls"
port = 5061
certificate = { issuer = "CN=Contoso Issuing CA, O=Contoso", serial = "1A2B" }

[[connection]]
id = "tcp-5060"
transport = "tcp"
port = 5060

[[route]]
id = "route-fabrikam.com"
domain = "fabrikam.com"
next_hop = "127.0.0.1:5071"
transport = "mtls"
certificate = { issuer = "CN=Contoso Issuing CA, O=Contoso", serial = "1a2b" }
"#;

    #[test]
    fn parses_defaults_and_refs() {
        let c = Config::parse(SAMPLE, Path::new("lcs.toml")).unwrap();
        assert_eq!(c.sip.t1_ms, 500);
        assert!(!c.tls.session_tickets);
        assert_eq!(c.connections[0].address, loopback());
        let refs: Vec<_> = c.cert_refs().map(|(id, _)| id).collect();
        assert_eq!(refs, ["tls-5061", "route-fabrikam.com"]);
        assert_eq!(
            c.routes[0].certificate.as_ref().unwrap().serial.as_str(),
            "1A2B"
        );
    }

    #[test]
    fn round_trips_through_save_format() {
        let c = Config::parse(SAMPLE, Path::new("lcs.toml")).unwrap();
        let text = format!("{HEADER}{}", toml::to_string_pretty(&c).unwrap());
        assert_eq!(Config::parse(&text, Path::new("x")).unwrap(), c);
    }

    #[test]
    fn syntax_error_names_line() {
        let err = Config::parse("[service]\nserver = \n", Path::new("d/lcs.toml")).unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("d/lcs.toml: "), "{msg}");
        assert!(msg.contains("line 2"), "{msg}");
    }

    #[test]
    fn semantic_errors_name_the_field() {
        let dup = SAMPLE.replace("tcp-5060", "tls-5061");
        let msg = Config::parse(&dup, Path::new("lcs.toml"))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("connection[1].id"), "{msg}");
        let nocert = SAMPLE.replace(
            "certificate = { issuer = \"CN=Contoso Issuing CA, O=Contoso\", serial = \"1A2B\" }",
            "",
        );
        let msg = Config::parse(&nocert, Path::new("lcs.toml"))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("connection[0].certificate"), "{msg}");
        let zero = format!("{SAMPLE}\n[tls]\nhandshake_timeout_ms = 0\n");
        let msg = Config::parse(&zero, Path::new("lcs.toml"))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("tls.handshake_timeout_ms"), "{msg}");
        let idle = format!("{SAMPLE}\n[sip]\nidle_timeout_s = 0\n");
        let msg = Config::parse(&idle, Path::new("lcs.toml"))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("sip.idle_timeout_s"), "{msg}");
        let twice = SAMPLE.replace("[[route]]", "[[route]]\nid = \"r0\"\ndomain = \"fabrikam.com\"\nnext_hop = \"127.0.0.1:1\"\ntransport = \"mtls\"\ncertificate = { issuer = \"CN=x\", serial = \"01\" }\n\n[[route]]");
        let msg = Config::parse(&twice, Path::new("lcs.toml"))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("route[1].domain"), "{msg}");
        let badserial = SAMPLE.replace("\"1A2B\"", "\"zz\"");
        let msg = Config::parse(&badserial, Path::new("lcs.toml"))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("not hexadecimal"), "{msg}");
    }
}
