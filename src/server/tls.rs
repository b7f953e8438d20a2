//! rustls configurations for listeners and routes, on the injected clock.
//!
//! Certificate validity is checked against [`Clock`], not the OS clock, so a simulated two hours
//! can cross an expiry and live mode behaves as usual. Resumption is off unless TLS 1.3 tickets
//! are turned on (`[tls] session_tickets`): with no session cache every handshake is a full one
//! and goes through the store, which is what the fault needs. When tickets are on, rustls still
//! asks the resolver on a resumed handshake, so a resumed handshake fails like a full one after
//! the key becomes unreadable (stricter than Schannel, which can resume from its cache).

use std::sync::Arc;
use std::time::UNIX_EPOCH;

use rustls::client::ResolvesClientCert;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::UnixTime;
use rustls::server::{NoServerSessionStorage, ResolvesServerCert, WebPkiClientVerifier};
use rustls::time_provider::TimeProvider;
use rustls::{ClientConfig, KeyLog, RootCertStore, ServerConfig, SupportedProtocolVersion};

use crate::clock::Clock;
use crate::config::{TlsSettings, TlsVersion};

/// Our one crypto provider.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// rustls's view of our [`Clock`].
#[derive(Debug)]
pub struct ClockTime(pub Arc<dyn Clock>);

impl TimeProvider for ClockTime {
    fn current_time(&self) -> Option<UnixTime> {
        let since = self.0.now().duration_since(UNIX_EPOCH).ok()?;
        Some(UnixTime::since_unix_epoch(since))
    }
}

fn versions(settings: &TlsSettings) -> &'static [&'static SupportedProtocolVersion] {
    static BOTH: [&SupportedProtocolVersion; 2] =
        [&rustls::version::TLS13, &rustls::version::TLS12];
    static V13: [&SupportedProtocolVersion; 1] = [&rustls::version::TLS13];
    match settings.min_version {
        TlsVersion::V1_3 => &V13,
        TlsVersion::V1_2 => &BOTH,
    }
}

/// A listener's configuration: certificates from `resolver` on every handshake, client
/// certificates required and verified against `client_roots` for mutual TLS.
pub fn server_config(
    resolver: Arc<dyn ResolvesServerCert>,
    client_roots: Option<Arc<RootCertStore>>,
    settings: &TlsSettings,
    clock: Arc<dyn Clock>,
    key_log: Option<Arc<dyn KeyLog>>,
) -> Result<ServerConfig, rustls::Error> {
    let provider = provider();
    let builder = ServerConfig::builder_with_details(provider.clone(), Arc::new(ClockTime(clock)))
        .with_protocol_versions(versions(settings))?;
    let builder = match client_roots {
        Some(roots) => {
            let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider)
                .build()
                .map_err(|e| rustls::Error::General(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(resolver);
    if settings.session_tickets {
        config.ticketer = rustls::crypto::ring::Ticketer::new()?;
    } else {
        config.send_tls13_tickets = 0;
        config.session_storage = Arc::new(NoServerSessionStorage {});
    }
    if let Some(k) = key_log {
        config.key_log = k;
    }
    Ok(config)
}

/// A client configuration trusting `roots`, presenting certificates from `client_cert` (mutual
/// TLS) if given.
pub fn client_config(
    roots: Arc<RootCertStore>,
    client_cert: Option<Arc<dyn ResolvesClientCert>>,
    settings: &TlsSettings,
    clock: Arc<dyn Clock>,
    key_log: Option<Arc<dyn KeyLog>>,
) -> Result<ClientConfig, rustls::Error> {
    let builder = ClientConfig::builder_with_details(provider(), Arc::new(ClockTime(clock)))
        .with_protocol_versions(versions(settings))?
        .with_root_certificates(roots);
    let mut config = match client_cert {
        Some(r) => builder.with_client_cert_resolver(r),
        None => builder.with_no_client_auth(),
    };
    config.resumption = rustls::client::Resumption::disabled();
    if let Some(k) = key_log {
        config.key_log = k;
    }
    Ok(config)
}

/// Parses a PEM bundle (such as `ca.pem`) into a root store.
pub fn roots_from_pem(pem: &[u8]) -> Result<RootCertStore, rustls::Error> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|e| rustls::Error::General(format!("bad PEM: {e}")))?;
        roots.add(cert)?;
    }
    if roots.is_empty() {
        return Err(rustls::Error::General(
            "no certificate in the PEM bundle".into(),
        ));
    }
    Ok(roots)
}
