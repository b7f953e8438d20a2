//! The simulated deployment: contoso.com's server, its PKI and store, and fabrikam.com's peer.
//!
//! Built in memory from the seed: serials are derived from it, so the same seed names the same
//! certificates. (Keys and ECDSA signatures are random, so thumbprints differ between runs and
//! never appear in a report.) Everything is valid from [`SIM_EPOCH`] for a year.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::RootCertStore;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::clock::SIM_EPOCH;
use crate::config::{CertRef, Config, Service, SipSettings};
use crate::pki::{self, KeyAlgorithm, LeafSpec, PkiError, Serial, TestPki};
use crate::store::{Acl, Store};

/// The simulated host names.
pub const SERVER_HOST: &str = "lcs01";
/// The federation peer's host.
pub const PEER_HOST: &str = "fabrikam";
/// The server's TLS name (what clients verify).
pub const SERVER_NAME: &str = "lcs01.contoso.com";
/// TLS port.
pub const TLS_PORT: u16 = 5061;
/// Mutual-TLS port (also the peer's).
pub const MTLS_PORT: u16 = 5062;
/// TCP port.
pub const TCP_PORT: u16 = 5060;
/// The federated domain, reached over the route.
pub const FEDERATED_DOMAIN: &str = "fabrikam.com";

/// Id of the client-facing TLS listener (`Config::standard` names it `tls-{TLS_PORT}`).
pub const TLS_ID: &str = "tls-5061";
/// Id of the mutual-TLS listener.
pub const MTLS_ID: &str = "mtls-5062";
/// Id of the plain TCP listener.
pub const TCP_ID: &str = "tcp-5060";
/// Id of the route to the federated domain.
pub const ROUTE_ID: &str = "route-fabrikam.com";
/// Every connection and route id of the simulated deployment, which steps may name.
pub const CONNECTION_IDS: [&str; 4] = [TLS_ID, MTLS_ID, TCP_ID, ROUTE_ID];
/// The ones that use the server certificate (what a fix rebinds).
pub const CERTIFICATE_CONNECTIONS: [&str; 3] = [TLS_ID, MTLS_ID, ROUTE_ID];

/// Everything the simulation starts from.
#[derive(Debug)]
pub struct World {
    /// The enterprise PKI.
    pub pki: TestPki,
    /// The machine store, server certificate with the ACL "Change Certificate" leaves.
    pub store: Store,
    /// `lcs.toml`.
    pub config: Config,
    /// The roots clients and the peer trust.
    pub roots: Arc<RootCertStore>,
    /// Sent after the leaf (the issuing CA).
    pub intermediates: Vec<CertificateDer<'static>>,
    /// The peer's certificate chain and key.
    pub peer_chain: Vec<CertificateDer<'static>>,
    /// The peer's key.
    pub peer_key: Arc<PrivatePkcs8KeyDer<'static>>,
}

impl World {
    /// The peer's key, as rustls wants it.
    pub fn peer_key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(self.peer_key.clone_key())
    }
}

/// Builds the world for `seed`. The server certificate was issued `age` before the start of
/// the run and is valid for `lifetime` (a year from the start by default).
pub fn build(seed: u64, t1_ms: u64, age: Duration, lifetime: Duration) -> Result<World, PkiError> {
    let issued = SIM_EPOCH - age;
    let pki = TestPki::generate("contoso.com", issued)?;
    let year = time::Duration::days(365);
    let serial = Serial::derive(format!("{seed}/server").as_bytes());
    let key = KeyAlgorithm::EcdsaP256.generate()?;
    let spec = LeafSpec::server(SERVER_NAME, "Contoso");
    let der = pki::issue_leaf(
        &pki.issuing,
        &spec,
        &key,
        &serial,
        issued,
        issued + lifetime,
    )?;
    let mut store = Store::new();
    store
        .import(der, key, Acl::for_service("RTCService"))
        .expect("a fresh certificate imports");

    let peer_key = KeyAlgorithm::EcdsaP256.generate()?;
    let peer_spec = LeafSpec {
        common_name: "sip.fabrikam.com".into(),
        organisation: "Fabrikam".into(),
        dns_names: vec!["sip.fabrikam.com".into(), PEER_HOST.into()],
        ip_addresses: Vec::<IpAddr>::new(),
        server_auth: true,
        client_auth: true,
    };
    let peer_der = pki::issue_leaf(
        &pki.issuing,
        &peer_spec,
        &peer_key,
        &Serial::derive(format!("{seed}/peer").as_bytes()),
        SIM_EPOCH,
        SIM_EPOCH + year,
    )?;

    let cert_ref = CertRef {
        issuer: pki.issuing.info().subject,
        serial,
    };
    let mut config = Config::standard(
        Service {
            server: SERVER_NAME.into(),
            domain: "contoso.com".into(),
            principal: "RTCService".into(),
            aliases: Vec::new(),
        },
        &cert_ref,
        [TLS_PORT, MTLS_PORT, TCP_PORT],
        FEDERATED_DOMAIN,
        crate::config::HostPort {
            host: PEER_HOST.into(),
            port: MTLS_PORT,
        },
    );
    config.sip = SipSettings {
        t1_ms,
        // Users refresh registrations every few minutes; only a dead peer idles this long.
        idle_timeout_s: 3600,
        ..SipSettings::default()
    };
    let mut roots = RootCertStore::empty();
    roots.add(pki.root.cert.clone()).expect("the root parses");
    let intermediates = vec![pki.issuing.cert.clone()];
    let peer_chain = vec![peer_der, pki.issuing.cert.clone()];
    Ok(World {
        pki,
        store,
        config,
        roots: Arc::new(roots),
        intermediates,
        peer_chain,
        peer_key: Arc::new(peer_key),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The named ids are the ones `Config::standard` generates, so a changed port or domain
    /// fails here instead of silently turning a symptom false.
    #[test]
    fn connection_ids_match_the_configuration() {
        let world = build(1, 500, Duration::ZERO, Duration::from_secs(365 * 86_400)).unwrap();
        let mut ids: Vec<&str> = world
            .config
            .connections
            .iter()
            .map(|c| c.id.as_str())
            .collect();
        ids.extend(world.config.routes.iter().map(|r| r.id.as_str()));
        ids.sort_unstable();
        let mut want = CONNECTION_IDS.to_vec();
        want.sort_unstable();
        assert_eq!(ids, want);
        let mut with_cert: Vec<&str> = world.config.cert_refs().map(|(id, _)| id).collect();
        with_cert.sort_unstable();
        let mut want = CERTIFICATE_CONNECTIONS.to_vec();
        want.sort_unstable();
        assert_eq!(with_cert, want);
    }
}
