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

pub mod edit;
mod kinds;

pub use kinds::{Connection, HostPort, HostPortError, ListenerKind, TlsVersion};

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
    /// A message (head and body) must arrive whole this long after its first byte, or the
    /// connection is closed (default 10,000 ms): a head sent a byte a second is cut off.
    pub message_timeout_ms: u64,
    /// Completed server transactions (answers kept for retransmissions for 64 × T1) held per
    /// connection; past it the oldest is released early (default 4,096).
    pub max_completed_transactions_per_connection: usize,
    /// The same in total (default 32,768).
    pub max_completed_transactions: usize,
    /// Most connections open at once on each TCP listener; past it a new connection is closed
    /// at once. Default: a share of the process's file-descriptor limit, with headroom.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<u32>,
}

impl Default for SipSettings {
    fn default() -> Self {
        Self {
            t1_ms: 500,
            max_message_bytes: 64 * 1024,
            min_expires_s: 60,
            max_expires_s: 3600,
            idle_timeout_s: 300,
            message_timeout_ms: 10_000,
            max_completed_transactions_per_connection: 4096,
            max_completed_transactions: 32_768,
            max_connections: None,
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
    pub min_version: TlsVersion,
    /// A handshake not finished after this many milliseconds is abandoned (default 10 000).
    pub handshake_timeout_ms: u64,
    /// Most connections open at once (handshaking or established) on each TLS or mutual-TLS
    /// listener; past it a new connection is closed before any handshake. Default: a share of
    /// the process's file-descriptor limit, with headroom.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<u32>,
}

impl Default for TlsSettings {
    fn default() -> Self {
        Self {
            session_tickets: false,
            min_version: TlsVersion::V1_2,
            handshake_timeout_ms: 10_000,
            max_connections: None,
        }
    }
}

/// The admin endpoint (`/healthz`, `/metrics`, `/certs`, `POST /rebind`), on loopback only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminSettings {
    /// Port on 127.0.0.1 (default 5080; 0 picks a free one).
    pub port: u16,
    /// Connections open at once (default 64); over it a new socket is closed at once, so the
    /// admin port never takes the SIP listeners' file descriptors.
    pub max_connections: u32,
    /// A connection with no request byte for this long is closed (default 30,000 ms).
    pub idle_timeout_ms: u64,
    /// A request head must be complete this long after its first byte (default 5,000 ms).
    pub header_timeout_ms: u64,
    /// A request must be answered this long after its head (default 30,000 ms).
    pub request_timeout_ms: u64,
}

impl Default for AdminSettings {
    fn default() -> Self {
        Self {
            port: 5080,
            max_connections: 64,
            idle_timeout_ms: 30_000,
            header_timeout_ms: 5_000,
            request_timeout_ms: 30_000,
        }
    }
}

/// A static route to a federated domain (`MSFT_SIPRoutingTableData`), over mutual TLS.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// Stable id, e.g. `route-fabrikam.com`.
    pub id: String,
    /// The domain whose requests take this route.
    pub domain: String,
    /// The next hop.
    pub next_hop: HostPort,
    /// Transport to the next hop (mutual TLS for federation).
    pub transport: Transport,
    /// The certificate presented to the next hop.
    pub certificate: CertRef,
}

/// The whole of `lcs.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "ConfigFile", into = "ConfigFile")]
pub struct Config {
    /// Who the service is.
    pub service: Service,
    /// `[service] auto_rebind`: swap a renewed certificate in by itself (`serve --auto-rebind`).
    pub auto_rebind: bool,
    /// SIP settings.
    pub sip: SipSettings,
    /// TLS settings.
    pub tls: TlsSettings,
    /// The admin endpoint.
    pub admin: AdminSettings,
    /// Listening connections.
    pub connections: Vec<Connection>,
    /// Static routes.
    pub routes: Vec<Route>,
}

/// `lcs.toml` as spelled: `auto_rebind` sits in `[service]`, beside who the service is.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    service: ServiceFile,
    #[serde(default)]
    sip: SipSettings,
    #[serde(default)]
    tls: TlsSettings,
    #[serde(default)]
    admin: AdminSettings,
    #[serde(default, rename = "connection")]
    connections: Vec<Connection>,
    #[serde(default, rename = "route")]
    routes: Vec<Route>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServiceFile {
    server: String,
    domain: String,
    principal: String,
    #[serde(default = "default_aliases")]
    aliases: Vec<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    auto_rebind: bool,
}

impl From<ConfigFile> for Config {
    fn from(f: ConfigFile) -> Self {
        let s = f.service;
        Config {
            service: Service {
                server: s.server,
                domain: s.domain,
                principal: s.principal,
                aliases: s.aliases,
            },
            auto_rebind: s.auto_rebind,
            sip: f.sip,
            tls: f.tls,
            admin: f.admin,
            connections: f.connections,
            routes: f.routes,
        }
    }
}

impl From<Config> for ConfigFile {
    fn from(c: Config) -> Self {
        ConfigFile {
            service: ServiceFile {
                server: c.service.server,
                domain: c.service.domain,
                principal: c.service.principal,
                aliases: c.service.aliases,
                auto_rebind: c.auto_rebind,
            },
            sip: c.sip,
            tls: c.tls,
            admin: c.admin,
            connections: c.connections,
            routes: c.routes,
        }
    }
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
        next_hop: HostPort,
    ) -> Config {
        let listen = |kind: ListenerKind, port: u16| Connection {
            id: format!("{}-{port}", kind.transport().to_string().to_lowercase()),
            kind,
            address: loopback(),
            port,
        };
        Config {
            service,
            auto_rebind: false,
            sip: SipSettings::default(),
            tls: TlsSettings::default(),
            admin: AdminSettings::default(),
            connections: vec![
                listen(ListenerKind::Tls(cert.clone()), tls_port),
                listen(ListenerKind::Mtls(cert.clone()), mtls_port),
                listen(ListenerKind::Tcp, tcp_port),
            ],
            routes: vec![Route {
                id: format!("route-{federated_domain}"),
                domain: federated_domain.into(),
                next_hop,
                transport: Transport::Mtls,
                certificate: cert.clone(),
            }],
        }
    }

    /// Every certificate reference with the id of the connection or route that holds it.
    pub fn cert_refs(&self) -> impl Iterator<Item = (&str, &CertRef)> {
        let conns = self
            .connections
            .iter()
            .filter_map(|c| Some((c.id.as_str(), c.certificate()?)));
        let routes = self.routes.iter().map(|r| (r.id.as_str(), &r.certificate));
        conns.chain(routes)
    }

    /// The certificate reference of connection or route `id`, to rebind it.
    pub fn certificate_mut(&mut self, id: &str) -> Option<&mut CertRef> {
        if let Some(c) = self.connections.iter_mut().find(|c| c.id == id) {
            return c.kind.certificate_mut();
        }
        self.routes
            .iter_mut()
            .find(|r| r.id == id)
            .map(|r| &mut r.certificate)
    }

    /// Checks what the types cannot: non-empty names, ranges, unique ids and ports.
    pub fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |field: &str, message: String| crate::input::invalid(path, field, message);
        self.validate_service().map_err(|(f, m)| invalid(f, m))?;
        self.validate_ranges().map_err(|(f, m)| invalid(f, m))?;
        let mut ids = BTreeSet::new();
        self.validate_connections(&mut ids)
            .map_err(|(f, m)| invalid(&f, m))?;
        self.validate_routes(&mut ids)
            .map_err(|(f, m)| invalid(&f, m))
    }

    fn validate_service(&self) -> Result<(), (&'static str, String)> {
        for (field, value) in [
            ("service.server", &self.service.server),
            ("service.domain", &self.service.domain),
        ] {
            if value.trim().is_empty() {
                return Err((field, "must not be empty".into()));
            }
        }
        if self.service.principal.trim().is_empty() {
            return Err((
                "service.principal",
                "must name the service account, e.g. \"RTCService\"".into(),
            ));
        }
        Ok(())
    }

    fn validate_ranges(&self) -> Result<(), (&'static str, String)> {
        let range = |field, value: u64, lo: u64, hi: u64, default: &str| {
            if (lo..=hi).contains(&value) {
                Ok(())
            } else {
                Err((
                    field,
                    format!("{value} is out of range; use {lo}..={hi} ({default})"),
                ))
            }
        };
        let tls = &self.tls;
        let sip = &self.sip;
        range(
            "tls.handshake_timeout_ms",
            tls.handshake_timeout_ms,
            100,
            600_000,
            "default 10000",
        )?;
        range(
            "sip.idle_timeout_s",
            sip.idle_timeout_s,
            1,
            7 * 86_400,
            "default 300",
        )?;
        range("sip.t1_ms", sip.t1_ms, 1, 60_000, "RFC 3261 default 500")?;
        range(
            "sip.message_timeout_ms",
            sip.message_timeout_ms,
            100,
            600_000,
            "default 10000",
        )?;
        for (field, cap, default) in [
            (
                "sip.max_completed_transactions_per_connection",
                sip.max_completed_transactions_per_connection,
                "default 4096",
            ),
            (
                "sip.max_completed_transactions",
                sip.max_completed_transactions,
                "default 32768",
            ),
        ] {
            range(field, cap as u64, 1, 10_000_000, default)?;
        }
        range(
            "sip.max_message_bytes",
            sip.max_message_bytes as u64,
            1024,
            16 * 1024 * 1024,
            "default 65536",
        )?;
        for (field, cap) in [
            ("tls.max_connections", tls.max_connections),
            ("sip.max_connections", sip.max_connections),
        ] {
            if let Some(cap) = cap {
                range(
                    field,
                    cap.into(),
                    1,
                    1_000_000,
                    "default: from the fd limit",
                )?;
            }
        }
        if sip.min_expires_s > sip.max_expires_s {
            return Err((
                "sip.min_expires_s",
                format!(
                    "{} exceeds sip.max_expires_s = {}",
                    sip.min_expires_s, sip.max_expires_s
                ),
            ));
        }
        Ok(())
    }

    fn validate_connections<'a>(
        &'a self,
        ids: &mut BTreeSet<&'a str>,
    ) -> Result<(), (String, String)> {
        let mut endpoints = BTreeSet::new();
        for (i, c) in self.connections.iter().enumerate() {
            let field = |name: &str| format!("connection[{i}].{name}");
            if !ids.insert(c.id.as_str()) {
                return Err((
                    field("id"),
                    format!("`{}` is used twice; ids must be unique", c.id),
                ));
            }
            if c.port != 0 && !endpoints.insert((c.address, c.port)) {
                return Err((
                    field("port"),
                    format!("{}:{} is used by two connections", c.address, c.port),
                ));
            }
        }
        Ok(())
    }

    fn validate_routes<'a>(&'a self, ids: &mut BTreeSet<&'a str>) -> Result<(), (String, String)> {
        for (i, r) in self.routes.iter().enumerate() {
            let field = |name: &str| format!("route[{i}].{name}");
            if !ids.insert(r.id.as_str()) {
                return Err((
                    field("id"),
                    format!("`{}` is used twice; ids must be unique", r.id),
                ));
            }
            if self.routes[..i]
                .iter()
                .any(|o| o.domain.eq_ignore_ascii_case(&r.domain))
            {
                return Err((
                    field("domain"),
                    format!("`{}` already has a route; one route per domain", r.domain),
                ));
            }
            if r.domain.eq_ignore_ascii_case(&self.service.domain) {
                return Err((
                    field("domain"),
                    format!(
                        "`{}` is this server's own domain; a route is for another domain",
                        r.domain
                    ),
                ));
            }
            if r.transport != Transport::Mtls {
                return Err((
                    field("transport"),
                    "routes to a federated domain use mutual TLS: transport = \"mtls\"".into(),
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
        assert_eq!(c.routes[0].certificate.serial.as_str(), "1A2B");
        assert_eq!(c.routes[0].next_hop.port, 5071);
        assert_eq!(c.tls.min_version, TlsVersion::V1_2);
        assert_eq!(c.admin.port, 5080);
        assert!(!c.auto_rebind);
    }

    #[test]
    fn round_trips_through_save_format() {
        let mut c = Config::parse(SAMPLE, Path::new("lcs.toml")).unwrap();
        c.auto_rebind = true;
        c.tls.max_connections = Some(40);
        c.admin.port = 0;
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
        assert!(
            msg.contains("tls-5061") && msg.contains("`certificate`") && msg.contains("line"),
            "{msg}"
        );
        let v11 = format!("{SAMPLE}\n[tls]\nmin_version = \"1.1\"\n");
        let msg = Config::parse(&v11, Path::new("lcs.toml"))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("1.1") && msg.contains("line"), "{msg}");
        let noport = SAMPLE.replace("127.0.0.1:5071", "127.0.0.1");
        let msg = Config::parse(&noport, Path::new("lcs.toml"))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("not host:port"), "{msg}");
        let cap = format!("{SAMPLE}\n[tls]\nmax_connections = 0\n");
        let msg = Config::parse(&cap, Path::new("lcs.toml"))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("tls.max_connections"), "{msg}");
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
