//! Shared scaffolding for tests that run the service live on loopback.
#![allow(dead_code, reason = "each test file uses a different part")]

pub mod cli;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use lcs_sim::clock::SystemClock;
use lcs_sim::deployment::{Deployment, InitOptions};
use lcs_sim::server::{ServiceOptions, tls};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A deployment in a temporary folder whose listeners bind free ports (ids unchanged:
/// `tls-5061`, `mtls-5062`, `tcp-5060`, `route-fabrikam.com`).
pub fn deployment_with(
    edit: impl FnOnce(&mut lcs_sim::config::Config),
) -> (tempfile::TempDir, Deployment) {
    let tmp = tempfile::tempdir().unwrap();
    let (d, _) = Deployment::init(
        tmp.path().join("d"),
        &InitOptions::default(),
        lcs_sim::clock::Clock::now_utc(&SystemClock),
    )
    .unwrap();
    let mut config = d.config().unwrap();
    for c in &mut config.connections {
        c.port = 0;
    }
    edit(&mut config);
    config.save(&d.config_path()).unwrap();
    (tmp, d)
}

/// [`deployment_with`] with no further change.
pub fn deployment() -> (tempfile::TempDir, Deployment) {
    deployment_with(|_| {})
}

/// A service running on a deployment, exactly as `lcs-sim serve` runs it (events to
/// `events.jsonl`, store changes on disk picked up by polling every 20 ms).
pub struct Live(lcs_sim::server::live::LiveDeployment);

impl Live {
    pub async fn start(d: &Deployment) -> Live {
        let live = lcs_sim::server::live::serve(
            d,
            Arc::new(SystemClock),
            ServiceOptions::default(),
            Duration::from_millis(20),
        )
        .await
        .unwrap();
        Live(live)
    }

    pub fn addr(&self, id: &str) -> SocketAddr {
        self.0
            .running
            .addr(id)
            .unwrap_or_else(|| panic!("{id} is not listening"))
    }

    pub async fn stop(self) {
        self.0.stop().await;
    }
}

impl std::ops::Deref for Live {
    type Target = lcs_sim::server::live::LiveDeployment;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

/// Polls `condition` every 5 ms until it holds; panics naming `what` after 10 s.
pub async fn until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = lcs_sim::clock::monotonic_now() + Duration::from_secs(10);
    while !condition() {
        assert!(
            lcs_sim::clock::monotonic_now() < deadline,
            "still not true after 10 s: {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Waits until the running service has reloaded the store since it stood at `version`
/// (`live.store.version()` read before the change on disk).
pub async fn reloaded_since(live: &Live, version: u64) {
    until("the store change reaches the running server", || {
        live.store.version() > version
    })
    .await;
}

/// A TLS client that trusts the deployment's `ca.pem`, optionally presenting a certificate.
pub fn client_config(
    d: &Deployment,
    client_cert: Option<(
        Vec<CertificateDer<'static>>,
        rustls::pki_types::PrivateKeyDer<'static>,
    )>,
) -> Arc<rustls::ClientConfig> {
    let roots = tls::roots_from_pem(&std::fs::read(d.ca_path()).unwrap()).unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    Arc::new(match client_cert {
        Some((chain, key)) => builder.with_client_auth_cert(chain, key).unwrap(),
        None => builder.with_no_client_auth(),
    })
}

pub type Tls = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

/// Connects and completes a TLS handshake, verifying chain and name `lcs01.contoso.com`.
pub async fn tls_connect(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> std::io::Result<Tls> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = ServerName::try_from("lcs01.contoso.com").unwrap();
    tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
}

/// A SIP request with the headers every request needs.
pub fn request(
    method: &str,
    uri: &str,
    from: &str,
    to: &str,
    n: u32,
    extra: &str,
    body: &str,
) -> String {
    format!(
        "{method} {uri} SIP/2.0\r\nVia: SIP/2.0/TLS 127.0.0.1:5999;branch=z9hG4bK-t{n}\r\nMax-Forwards: 70\r\nFrom: <sip:{from}>;tag=f{n}\r\nTo: <sip:{to}>\r\nCall-ID: call-{n}@test\r\nCSeq: {n} {method}\r\n{extra}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// Reads one complete SIP message (head plus Content-Length body) from `io`.
pub async fn read_message<R: tokio::io::AsyncRead + Unpin>(io: &mut R) -> String {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(10), io.read(&mut byte))
            .await
            .expect("no SIP message within 10 s")
            .unwrap();
        assert!(
            n > 0,
            "connection closed while reading; got {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.push(byte[0]);
        if buf.ends_with(b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf).to_string();
            if head.trim().is_empty() {
                buf.clear();
                continue;
            }
            let len = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    (k.eq_ignore_ascii_case("content-length") || k.eq_ignore_ascii_case("l"))
                        .then(|| v.trim().parse::<usize>().unwrap())
                })
                .unwrap_or(0);
            let mut body = vec![0u8; len];
            io.read_exact(&mut body).await.unwrap();
            return head + &String::from_utf8_lossy(&body);
        }
    }
}

/// Sends `req` and returns the status line of the response.
pub async fn transact<IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    io: &mut IO,
    req: &str,
) -> String {
    io.write_all(req.as_bytes()).await.unwrap();
    io.flush().await.unwrap();
    read_message(io).await.lines().next().unwrap().to_string()
}

/// Issues a certificate for `spec` from `ca` (valid from a day ago for 300 days) and imports it
/// into `d`'s store with the service account's read; returns its thumbprint and reference.
pub fn issue_into_store(
    d: &Deployment,
    ca: &lcs_sim::pki::CertificateAuthority,
    spec: &lcs_sim::pki::LeafSpec,
) -> (lcs_sim::pki::Thumbprint, lcs_sim::config::CertRef) {
    use lcs_sim::clock::Clock as _;
    use lcs_sim::pki::{self, KeyAlgorithm, Serial};
    let now = SystemClock.now_utc();
    let key = KeyAlgorithm::EcdsaP256.generate().unwrap();
    let serial = Serial::random();
    let der = pki::issue_leaf(
        ca,
        spec,
        &key,
        &serial,
        now - time::Duration::days(1),
        now + time::Duration::days(300),
    )
    .unwrap();
    let thumbprint = d
        .store()
        .update(|s| s.import(der, key, lcs_sim::store::Acl::for_service("RTCService")))
        .unwrap();
    let reference = lcs_sim::config::CertRef {
        issuer: ca.info().subject,
        serial,
    };
    (thumbprint, reference)
}

/// [`issue_into_store`], then points every connection and route of `d` at the new certificate.
pub fn bind_all_to(
    d: &Deployment,
    ca: &lcs_sim::pki::CertificateAuthority,
    spec: &lcs_sim::pki::LeafSpec,
) -> lcs_sim::config::CertRef {
    let (_, reference) = issue_into_store(d, ca, spec);
    let mut config = d.config().unwrap();
    let ids: Vec<String> = config.cert_refs().map(|(id, _)| id.to_string()).collect();
    for id in ids {
        *config.certificate_mut(&id).unwrap() = reference.clone();
    }
    config.save(&d.config_path()).unwrap();
    reference
}
