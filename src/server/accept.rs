//! Accepting inbound connections: the cap, then the handshake, then the SIP pump.
//!
//! Each listener admits at most `max_connections` connections at once (handshaking or
//! established); past that a new connection is closed at once, before any handshake, counted as
//! `connection_limit` and logged rate-limited, so silent or slow clients cannot take every file
//! descriptor while established connections carry on.
//!
//! A TLS handshake reads the ClientHello first ([`LazyConfigAcceptor`]), then chooses the
//! credential itself: the private key is opened as the service principal, as Schannel does on
//! every full handshake. That check is where KB836410 bites, and it yields a typed
//! [`CredentialError`](super::CredentialError) for this very handshake. The handshake then goes
//! on with a configuration presenting the chosen key, or, when the check failed, with one whose
//! resolver has none, so the client gets the same `access_denied` alert Schannel's refusal
//! produced. No reason is ever read back from rustls's message text.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::ServerConfig;
use rustls::server::{Acceptor, ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::LazyConfigAcceptor;

use crate::config::{Connection, Transport};
use crate::eventlog::{Level, ids};
use crate::sip::{self, ConnId, ConnKind};

use super::conn::pump;
use super::credentials::Credential;
use super::driver::ToDriver;
use super::log::ServiceLog;
use super::metrics::{Metrics, TransportCounters};
use super::net::Listener;
use super::reason::HandshakeFailure;

/// A TLS listener's handshake state: its credential and the configuration every handshake
/// starts from (only the certificate resolver differs per handshake).
pub(crate) struct TlsSide {
    pub credential: Arc<Credential>,
    pub base: Arc<ServerConfig>,
    /// The same configuration with a resolver that has no certificate: a refused handshake
    /// still ends with the alert rustls sends for "no certificate" (`access_denied`).
    pub refusing: Arc<ServerConfig>,
    /// The configuration presenting the key chosen last. The key is checked on every
    /// handshake; the configuration around it is made again only when the check yields
    /// another key (a rebind, a renewal, a reloaded store), not cloned per handshake.
    presenting: Mutex<Option<(Arc<CertifiedKey>, Arc<ServerConfig>)>>,
}

impl TlsSide {
    pub fn new(credential: Arc<Credential>, base: ServerConfig) -> Self {
        let mut refusing = base.clone();
        refusing.cert_resolver = Arc::new(NoCertificate);
        Self {
            credential,
            base: Arc::new(base),
            refusing: Arc::new(refusing),
            presenting: Mutex::new(None),
        }
    }

    /// The configuration for one handshake: the key chosen now, or the refusal and why.
    fn choose(&self) -> (Arc<ServerConfig>, Option<(HandshakeFailure, String)>) {
        match self.credential.certified_key() {
            Ok(key) => (self.presenting(key), None),
            Err(e) => (
                self.refusing.clone(),
                Some((HandshakeFailure::from_credential(&e), e.to_string())),
            ),
        }
    }

    /// The configuration presenting `key`: the last one made if it presents the same key.
    fn presenting(&self, key: Arc<CertifiedKey>) -> Arc<ServerConfig> {
        let mut last = self.presenting.lock().expect("lock");
        match &*last {
            Some((k, config)) if Arc::ptr_eq(k, &key) => config.clone(),
            _ => {
                let mut config = (*self.base).clone();
                config.cert_resolver = Arc::new(Chosen(key.clone()));
                let config = Arc::new(config);
                *last = Some((key, config.clone()));
                config
            }
        }
    }
}

/// Presents the key chosen for this handshake.
#[derive(Debug)]
struct Chosen(Arc<CertifiedKey>);

impl ResolvesServerCert for Chosen {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

/// Has no certificate: rustls aborts with an `access_denied` alert.
#[derive(Debug)]
struct NoCertificate;

impl ResolvesServerCert for NoCertificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        None
    }
}

pub(crate) struct AcceptContext {
    pub connection: Connection,
    pub tls: Option<TlsSide>,
    pub to_driver: mpsc::UnboundedSender<ToDriver>,
    pub ids: Arc<AtomicU64>,
    pub metrics: Arc<Metrics>,
    /// This listener's own counters (the `listener` label of `/metrics`).
    pub counters: Arc<TransportCounters>,
    pub log: Arc<ServiceLog>,
    pub handshake_timeout: Duration,
    pub idle: Duration,
    pub max_connections: u32,
}

pub(crate) async fn accept_loop<L: Listener>(mut listener: L, ctx: AcceptContext) {
    let ctx = Arc::new(ctx);
    let slots = Arc::new(Semaphore::new(ctx.max_connections as usize));
    loop {
        match listener.accept().await {
            Ok((io, _peer)) => match slots.clone().try_acquire_owned() {
                Ok(slot) => {
                    let ctx = ctx.clone();
                    tokio::spawn(async move {
                        serve_inbound(io, &ctx).await;
                        drop(slot);
                    });
                }
                Err(_) => {
                    drop(io);
                    refuse_over_cap(&ctx);
                }
            },
            Err(e) => {
                tracing::warn!("{}: accept failed: {e}", ctx.connection.id);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

fn refuse_over_cap(ctx: &AcceptContext) {
    let reason = HandshakeFailure::ConnectionLimit;
    count_failure(ctx, reason);
    let id = &ctx.connection.id;
    let e = ctx
        .log
        .event(
            ids::CONNECTION_LIMIT,
            Level::Warning,
            format!(
                "The listening connection {id} is at its limit of {} connections: new connections are closed before any handshake. Raise max_connections in lcs.toml ([tls] or [sip]) if this is legitimate load.",
                ctx.max_connections
            ),
        )
        .with("connection", id.as_str())
        .with("reason", reason.name())
        .with("max_connections", u64::from(ctx.max_connections));
    ctx.log.record_limited(&format!("limit:{id}"), e);
}

fn count_failure(ctx: &AcceptContext, reason: HandshakeFailure) {
    ctx.metrics
        .transport(ctx.connection.transport())
        .failed(reason.name());
    ctx.counters.failed(reason.name());
}

async fn serve_inbound<IO>(io: IO, ctx: &AcceptContext)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send,
{
    let transport = ctx.connection.transport();
    let counters = ctx.metrics.transport(transport);
    counters.accepted.fetch_add(1, Ordering::Relaxed);
    ctx.counters.accepted.fetch_add(1, Ordering::Relaxed);
    let conn = ConnId(ctx.ids.fetch_add(1, Ordering::Relaxed));
    let kind = ConnKind::Inbound(match transport {
        Transport::Tcp => sip::Transport::Tcp,
        Transport::Tls => sip::Transport::Tls,
        Transport::Mtls => sip::Transport::Mtls,
    });
    let to_driver = ctx.to_driver.clone();
    let Some(side) = &ctx.tls else {
        let _established = Established::count(ctx, counters);
        return pump(io, conn, kind, to_driver, ctx.idle).await;
    };
    match tokio::time::timeout(ctx.handshake_timeout, handshake(io, side)).await {
        Ok(Ok(tls)) => {
            counters.handshakes_ok.fetch_add(1, Ordering::Relaxed);
            ctx.counters.handshakes_ok.fetch_add(1, Ordering::Relaxed);
            let _established = Established::count(ctx, counters);
            pump(tls, conn, kind, to_driver, ctx.idle).await;
        }
        Ok(Err((reason, detail))) => {
            if reason == HandshakeFailure::NotTls {
                ctx.metrics.not_tls.fetch_add(1, Ordering::Relaxed);
            }
            report_handshake_failure(ctx, side, reason, &detail);
        }
        Err(_) => report_handshake_failure(
            ctx,
            side,
            HandshakeFailure::HandshakeTimeout,
            &format!("no handshake within {:?}", ctx.handshake_timeout),
        ),
    }
}

/// Reads the ClientHello, chooses the credential, and completes the handshake.
async fn handshake<IO>(
    io: IO,
    side: &TlsSide,
) -> Result<tokio_rustls::server::TlsStream<IO>, (HandshakeFailure, String)>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let classify = |e: std::io::Error| (HandshakeFailure::from_tls_error(&e), e.to_string());
    let start = LazyConfigAcceptor::new(Acceptor::default(), io)
        .await
        .map_err(classify)?;
    let (config, refused) = side.choose();
    let result = start.into_stream(config).await;
    match (result, refused) {
        (Ok(tls), None) => Ok(tls),
        // Refused by our own check: that is the reason, whatever the alert exchange did.
        (_, Some(refusal)) => Err(refusal),
        (Err(e), None) => Err(classify(e)),
    }
}

/// Counts a connection as established while it lives (in both the transport's and the
/// listener's counters).
///
/// A guard rather than an `async fn` wrapping the connection's future: a future passed to an
/// `async fn` is stored twice in the caller's state, and this one is the bulk of what every
/// held connection costs.
struct Established<'a> {
    transport: &'a TransportCounters,
    listener: &'a TransportCounters,
}

impl<'a> Established<'a> {
    fn count(ctx: &'a AcceptContext, transport: &'a TransportCounters) -> Self {
        transport.established.fetch_add(1, Ordering::Relaxed);
        ctx.counters.established.fetch_add(1, Ordering::Relaxed);
        Self {
            transport,
            listener: &ctx.counters,
        }
    }
}

impl Drop for Established<'_> {
    fn drop(&mut self) {
        self.transport.established.fetch_sub(1, Ordering::Relaxed);
        self.listener.established.fetch_sub(1, Ordering::Relaxed);
    }
}

fn report_handshake_failure(
    ctx: &AcceptContext,
    side: &TlsSide,
    reason: HandshakeFailure,
    detail: &str,
) {
    count_failure(ctx, reason);
    let id = &ctx.connection.id;
    let credential = &side.credential;
    let reference = credential.reference();
    let e = ctx
        .log
        .event(
            ids::HANDSHAKES_FAILING,
            Level::Warning,
            format!("TLS handshakes on connection {id} are failing: {reason} ({detail})."),
        )
        .with("connection", id.as_str())
        .with("reason", reason.name())
        .with("error", detail)
        .with("principal", credential.principal())
        .with("issuer", reference.issuer.as_str())
        .with("serial", reference.serial.as_str())
        .with("thumbprint", credential.thumbprint().as_str());
    ctx.log
        .record_limited(&format!("handshake:{id}:{reason}"), e);
}

#[cfg(test)]
mod tests {
    /// The size of the future `f` returns.
    fn future_size<A, B, F>(_: impl Fn(A, B) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    /// Every held connection is one task of this size, so it is most of what a connection
    /// costs (issue 9). Wrapping the pump in an `async fn` stored it twice (11 KiB); this
    /// fails if that comes back.
    #[test]
    fn a_connection_task_stays_small() {
        let size = future_size(
            |io: tokio::net::TcpStream, ctx: &'static super::AcceptContext| {
                super::serve_inbound(io, ctx)
            },
        );
        assert!(size <= 6 * 1024, "serve_inbound's future is {size} bytes");
    }
}
