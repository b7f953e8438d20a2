//! Where the load goes: an address, the server name to verify, and a TLS client configuration.
//!
//! Either given outright (`--target HOST:PORT --ca FILE --server-name NAME`, any SIP-over-TLS
//! server: Kamailio, OpenSIPS, Asterisk) or read from a deployment folder (`--deployment DIR`:
//! the TLS connection's address in `lcs.toml`, the folder's `ca.pem`, the service's name), in
//! which case faults can be applied to it. Session resumption is off, so every connection makes
//! a full handshake, as the handshake bench and `serve` (no tickets, no cache) assume.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, SupportedProtocolVersion};
use tokio_rustls::TlsConnector;

use crate::clock::SystemClock;
use crate::config::Transport;
use crate::deployment::Deployment;
use crate::server::tls::{self, ClockTime};

/// Which TLS versions the client offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TlsVersions {
    /// TLS 1.3 and 1.2 (the server picks).
    #[default]
    Both,
    /// TLS 1.2 only.
    V12,
    /// TLS 1.3 only.
    V13,
}

/// What the user said about the target.
#[derive(Debug, Clone, Default)]
pub struct TargetOptions {
    /// `HOST:PORT` (with a deployment: overrides the address in `lcs.toml`).
    pub target: Option<String>,
    /// PEM bundle of trusted CAs.
    pub ca: Option<PathBuf>,
    /// The name to verify the server's certificate against (and SNI).
    pub server_name: Option<String>,
    /// Client certificate chain (PEM) for mutual TLS.
    pub client_cert: Option<PathBuf>,
    /// Client private key (PEM, PKCS#8) for mutual TLS.
    pub client_key: Option<PathBuf>,
    /// A deployment folder.
    pub deployment: Option<PathBuf>,
    /// The deployment's connection to load (default: the first TLS one).
    pub connection: Option<String>,
    /// SIP domain of the users (default: the deployment's, else the server name less its first
    /// label).
    pub domain: Option<String>,
    /// TLS versions.
    pub tls: TlsVersions,
}

/// A resolved target.
#[derive(Clone)]
pub struct Target {
    /// Where to connect.
    pub addr: SocketAddr,
    /// As the report names it.
    pub label: String,
    /// The name verified and sent as SNI.
    pub server_name: ServerName<'static>,
    /// The TLS client.
    pub connector: TlsConnector,
    /// SIP domain of the users.
    pub domain: String,
    /// The deployment folder and connection id, when faults can be applied.
    pub deployment: Option<(PathBuf, String)>,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("addr", &self.addr)
            .field("server_name", &self.server_name)
            .field("domain", &self.domain)
            .finish_non_exhaustive()
    }
}

/// Why the target could not be set up (bad input: exit 2).
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// A required option is missing.
    #[error("{0}")]
    Missing(&'static str),
    /// The address does not resolve.
    #[error("--target `{text}` is not HOST:PORT that resolves: {reason}")]
    Address {
        /// What was given.
        text: String,
        /// Why.
        reason: String,
    },
    /// A PEM file could not be read or holds nothing usable.
    #[error("{}: {reason}", path.display())]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The server name is not a DNS name or an address.
    #[error("--server-name `{0}` is not a DNS name or IP address")]
    ServerName(String),
    /// The deployment could not be read.
    #[error(transparent)]
    Deployment(#[from] crate::deployment::DeploymentError),
    /// lcs.toml could not be read.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// No such connection in the deployment.
    #[error("{dir}: lcs.toml has no TLS connection{}", .id.as_ref().map(|i| format!(" `{i}`")).unwrap_or_default())]
    NoConnection {
        /// The folder.
        dir: String,
        /// The id asked for.
        id: Option<String>,
    },
    /// rustls refused the configuration.
    #[error("TLS client configuration: {0}")]
    Tls(#[from] rustls::Error),
}

impl Target {
    /// Resolves the options into a target.
    pub async fn resolve(o: &TargetOptions) -> Result<Target, TargetError> {
        let (addr_text, ca, name, domain, deployment) = match &o.deployment {
            Some(dir) => from_deployment(dir, o)?,
            None => (
                o.target.clone().ok_or(TargetError::Missing(
                    "give --target HOST:PORT (with --ca and --server-name), or --deployment DIR",
                ))?,
                o.ca.clone().ok_or(TargetError::Missing(
                    "--target needs --ca FILE (the CA bundle to trust)",
                ))?,
                o.server_name.clone().ok_or(TargetError::Missing(
                    "--target needs --server-name NAME (the name in the server's certificate)",
                ))?,
                None,
                None,
            ),
        };
        let addr = tokio::net::lookup_host(&addr_text)
            .await
            .map_err(|e| TargetError::Address {
                text: addr_text.clone(),
                reason: e.to_string(),
            })?
            .next()
            .ok_or_else(|| TargetError::Address {
                text: addr_text.clone(),
                reason: "no address".into(),
            })?;
        let server_name = ServerName::try_from(name.clone())
            .map_err(|_| TargetError::ServerName(name.clone()))?;
        let domain = o.domain.clone().or(domain).unwrap_or_else(|| {
            name.split_once('.')
                .map_or(name.clone(), |(_, rest)| rest.to_owned())
        });
        let client = client_config(&ca, o)?;
        Ok(Target {
            addr,
            label: addr_text,
            server_name,
            connector: TlsConnector::from(Arc::new(client)),
            domain,
            deployment,
        })
    }
}

type Resolved = (
    String,
    PathBuf,
    String,
    Option<String>,
    Option<(PathBuf, String)>,
);

fn from_deployment(dir: &Path, o: &TargetOptions) -> Result<Resolved, TargetError> {
    let d = Deployment::open(dir)?;
    let config = d.config()?;
    let conn = config
        .connections
        .iter()
        .find(|c| match &o.connection {
            Some(id) => &c.id == id,
            None => c.transport() == Transport::Tls,
        })
        .filter(|c| c.transport() != Transport::Tcp)
        .ok_or_else(|| TargetError::NoConnection {
            dir: dir.display().to_string(),
            id: o.connection.clone(),
        })?;
    let addr = o
        .target
        .clone()
        .unwrap_or_else(|| SocketAddr::new(conn.address, conn.port).to_string());
    Ok((
        addr,
        o.ca.clone().unwrap_or_else(|| d.ca_path()),
        o.server_name
            .clone()
            .unwrap_or_else(|| config.service.server.clone()),
        Some(config.service.domain.clone()),
        Some((dir.to_path_buf(), conn.id.clone())),
    ))
}

fn client_config(ca: &Path, o: &TargetOptions) -> Result<ClientConfig, TargetError> {
    let pem_error = |path: &Path, reason: String| TargetError::Pem {
        path: path.to_path_buf(),
        reason,
    };
    let bytes = std::fs::read(ca).map_err(|e| pem_error(ca, e.to_string()))?;
    let roots = tls::roots_from_pem(&bytes).map_err(|e| pem_error(ca, e.to_string()))?;
    static BOTH: [&SupportedProtocolVersion; 2] =
        [&rustls::version::TLS13, &rustls::version::TLS12];
    static V12: [&SupportedProtocolVersion; 1] = [&rustls::version::TLS12];
    static V13: [&SupportedProtocolVersion; 1] = [&rustls::version::TLS13];
    let versions: &[&SupportedProtocolVersion] = match o.tls {
        TlsVersions::Both => &BOTH,
        TlsVersions::V12 => &V12,
        TlsVersions::V13 => &V13,
    };
    let builder = ClientConfig::builder_with_details(
        tls::provider(),
        Arc::new(ClockTime(Arc::new(SystemClock))),
    )
    .with_protocol_versions(versions)?
    .with_root_certificates(roots);
    let mut config = match (&o.client_cert, &o.client_key) {
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .and_then(|i| i.collect::<Result<Vec<_>, _>>())
                .map_err(|e| pem_error(cert, e.to_string()))?;
            let key =
                PrivateKeyDer::from_pem_file(key).map_err(|e| pem_error(key, e.to_string()))?;
            builder.with_client_auth_cert(chain, key)?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => {
            return Err(TargetError::Missing(
                "mutual TLS needs both --client-cert and --client-key",
            ));
        }
    };
    config.resumption = rustls::client::Resumption::disabled();
    Ok(config)
}
