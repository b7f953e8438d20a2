//! Bench scaffolding shared by the load benches: a deployment on free ports, bare tokio-rustls
//! servers with the deployment's certificate (the baselines), and small measuring helpers.
//!
//! The baselines use the same certificate, key and chain as `serve` (read from the deployment's
//! store) and the same `ServerConfig` built by `server::tls::server_config` (same versions, no
//! tickets, no session storage); only the resolver (one fixed key) and what follows the
//! handshake differ.
#![allow(dead_code, reason = "each bench uses a different part")]

use std::net::SocketAddr;
use std::sync::Arc;

use lcs_sim::clock::{Clock, SystemClock};
use lcs_sim::config::Config;
use lcs_sim::deployment::{Deployment, InitOptions};
use lcs_sim::server::tls;
use lcs_sim::sip::{DEFAULT_MAX_MESSAGE_SIZE, Frame, Framer, Message, Response, parse_message};
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::TlsAcceptor;

/// The connection the benches load.
pub const LISTENER: &str = "tls-5061";

/// A fresh deployment whose listeners bind free ports.
pub struct Fixture {
    pub tmp: tempfile::TempDir,
    pub d: Deployment,
    pub config: Config,
}

impl Fixture {
    pub fn new() -> Fixture {
        let tmp = tempfile::tempdir().expect("a temporary folder");
        let (d, _) = Deployment::init(
            tmp.path().join("d"),
            &InitOptions::default(),
            SystemClock.now_utc(),
        )
        .expect("a deployment");
        let mut config = d.config().expect("lcs.toml");
        for c in &mut config.connections {
            c.port = 0;
        }
        // The held-connections bench holds 10,000 on one listener: above serve's default cap
        // (a share of the fd limit among the three listeners).
        config.tls.max_connections = Some(12_000);
        config.save(&d.config_path()).expect("lcs.toml saved");
        Fixture { tmp, d, config }
    }

    /// The bare servers' configuration: the listener's certificate, always.
    pub fn bare_server_config(&self) -> Arc<ServerConfig> {
        let store = self.d.store().load().expect("the store");
        let conn = self
            .config
            .connections
            .iter()
            .find(|c| c.id == LISTENER)
            .expect("the TLS connection in lcs.toml");
        let reference = conn.certificate().expect("a certificate reference");
        let cert = store
            .find_by_issuer_serial(&reference.issuer, &reference.serial)
            .expect("the certificate");
        let key = store
            .open_key(cert.thumbprint(), &self.config.service.principal)
            .expect("the key");
        let key = tls::provider()
            .key_provider
            .load_private_key(PrivateKeyDer::Pkcs8(key.clone_key()))
            .expect("a signing key");
        let ca = std::fs::read(self.d.ca_path()).expect("ca.pem");
        let mut chain = vec![cert.der.clone()];
        chain.extend(
            CertificateDer::pem_slice_iter(&ca)
                .take(1)
                .map(|c| c.expect("PEM")),
        );
        let server = tls::server_config(
            Arc::new(Fixed(Arc::new(CertifiedKey::new(chain, key)))),
            None,
            &self.config.tls,
            Arc::new(SystemClock),
            None,
        )
        .expect("a server config");
        Arc::new(server)
    }

    /// A client configuration as the handshake bench's (resumption off).
    pub fn client_config(&self) -> Arc<rustls::ClientConfig> {
        let ca = std::fs::read(self.d.ca_path()).expect("ca.pem");
        let roots = Arc::new(tls::roots_from_pem(&ca).expect("roots"));
        Arc::new(
            tls::client_config(roots, None, &self.config.tls, Arc::new(SystemClock), None)
                .expect("a client config"),
        )
    }
}

/// One certificate, always (what `with_single_cert` installs).
#[derive(Debug)]
struct Fixed(Arc<CertifiedKey>);

impl ResolvesServerCert for Fixed {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

/// Starts `d` exactly as `lcs-sim serve` runs it (store changes on disk polled every 250 ms).
pub async fn serve(d: &Deployment) -> lcs_sim::server::live::LiveDeployment {
    lcs_sim::server::live::serve(
        d,
        Arc::new(SystemClock),
        lcs_sim::server::ServiceOptions::default(),
        std::time::Duration::from_millis(250),
    )
    .await
    .expect("the deployment starts")
}

/// What the bare server does after the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bare {
    /// Closes the connection (the handshake bench's baseline).
    Close,
    /// Answers each SIP request with 200 (parsed and framed by the crate's SIP core, no
    /// transactions, no registrar); holds the connection until the client closes it.
    Sip,
    /// Echoes every byte back.
    Echo,
}

/// Starts a bare tokio-rustls server on loopback.
pub async fn start_bare(config: Arc<ServerConfig>, what: Bare) -> SocketAddr {
    let acceptor = TlsAcceptor::from(config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("bound address");
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                match what {
                    Bare::Close => {}
                    Bare::Sip => answer_sip(&mut tls).await,
                    Bare::Echo => echo(&mut tls).await,
                }
            });
        }
    });
    addr
}

async fn answer_sip<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(io: &mut S) {
    let mut framer = Framer::new(DEFAULT_MAX_MESSAGE_SIZE);
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        while let Some(Ok(frame)) = framer.pop() {
            if let Frame::Message(bytes) = frame
                && let Ok(Message::Request(req)) = parse_message(&bytes)
            {
                let ok = Response::for_request(&req, 200).with_to_tag("bare");
                if io.write_all(&ok.to_bytes()).await.is_err() {
                    return;
                }
            }
        }
        match io.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => framer.push(&buf[..n]),
        }
    }
}

async fn echo<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(io: &mut S) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match io.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if io.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Resident set size of a process, KiB (Linux).
pub fn rss_kib(pid: u32) -> u64 {
    lcs_sim::load::memory::rss_kib(pid).expect("/proc/<pid>/status readable")
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// (min, max) of a list.
pub fn spread(v: &[f64]) -> (f64, f64) {
    v.iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &x| {
            (lo.min(x), hi.max(x))
        })
}

pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a valid value")),
        Err(_) => default,
    }
}

/// CPU time used so far by this process's threads (Linux: `/proc/self/task/*/schedstat`, in
/// nanoseconds), as benches/handshake.rs reads it: it hardly moves when other processes take the
/// cores, so CPU per operation is a steadier second opinion than operations per second.
pub fn cpu_time() -> Option<std::time::Duration> {
    let mut total = 0u64;
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let stat = std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok()?;
        total += stat.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(std::time::Duration::from_nanos(total))
}
