//! Starting and stopping the emulated service.
//!
//! Start does what LCS does: for each listening connection, look the certificate up by issuer +
//! serial and open its key as the service principal; a connection whose credential cannot be had
//! does not start (events 14352, 14336, 14347) while the others do, so TCP keeps serving after a
//! KB836410 restart. Routes acquire their credential the same way and, lacking it, never dial:
//! messages for the federated domain wait in the queue and time out.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rustls::pki_types::ServerName;
use rustls::{KeyLog, RootCertStore};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::clock::Clock;
use crate::config::{Config, Connection, Route, Transport};
use crate::eventlog::{EventSink, Level, ids};
use crate::sip::{self, ConnId, ConnKind, Proxy, ProxyConfig, RouteId, StaticRoute};

use super::conn::pump;
use super::credentials::{Credential, LiveStore, StoreClientResolver, StoreServerResolver};
use super::driver::{Dialer, Driver, ToDriver};
use super::log::ServiceLog;
use super::metrics::{Metrics, TransportCounters};
use super::net::{Listener, Network};
use super::tls;

/// Settings of a service run that are not in `lcs.toml`.
#[derive(Clone)]
pub struct ServiceOptions {
    /// Write TLS secrets here (`SSLKEYLOGFILE` format) for Wireshark. Off by default.
    pub key_log: Option<Arc<dyn KeyLog>>,
    /// A repeating failure is logged at most once per this interval (default 60 s).
    pub log_interval: Duration,
    /// Distinguishes this start from others in SIP identifiers (default 0).
    pub instance: u64,
}

impl Default for ServiceOptions {
    fn default() -> Self {
        Self {
            key_log: None,
            log_interval: Duration::from_secs(60),
            instance: 0,
        }
    }
}

impl std::fmt::Debug for ServiceOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceOptions")
            .field("key_log", &self.key_log.is_some())
            .field("log_interval", &self.log_interval)
            .field("instance", &self.instance)
            .finish()
    }
}

/// A listening connection that started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerInfo {
    /// Connection id from `lcs.toml`.
    pub id: String,
    /// Transport.
    pub transport: Transport,
    /// The bound address.
    pub addr: SocketAddr,
}

/// A connection or route that did not start, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartFailure {
    /// Connection or route id.
    pub id: String,
    /// What went wrong (the Windows error for credential failures).
    pub error: String,
    /// The event ids logged for it.
    pub events: Vec<u32>,
}

/// A running service.
#[derive(Debug)]
pub struct Running {
    /// Listeners that started.
    pub listeners: Vec<ListenerInfo>,
    /// Connections and routes that did not.
    pub failed: Vec<StartFailure>,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// Credentials by connection or route id (those acquired at start).
    pub credentials: BTreeMap<String, Arc<Credential>>,
    log: Arc<ServiceLog>,
    to_driver: mpsc::UnboundedSender<ToDriver>,
    driver: JoinHandle<()>,
    tasks: Vec<JoinHandle<()>>,
}

impl Running {
    /// The address a listener bound, by connection id.
    pub fn addr(&self, id: &str) -> Option<SocketAddr> {
        self.listeners.iter().find(|l| l.id == id).map(|l| l.addr)
    }

    /// The service's logger (for callers that log on its behalf, such as a rebind).
    pub fn log(&self) -> &Arc<ServiceLog> {
        &self.log
    }

    /// Stops accepting, closes every connection, and writes the stop event and what the rate
    /// limit held back.
    pub async fn shutdown(self) {
        for t in &self.tasks {
            t.abort();
        }
        let _ = self.to_driver.send(ToDriver::Shutdown);
        let _ = self.driver.await;
        for t in self.tasks {
            let _ = t.await;
        }
        self.log.flush();
        let m = self.metrics.snapshot();
        self.log.record(
            self.log
                .event(
                    ids::SERVICE_STOPPED,
                    Level::Information,
                    format!("The service stopped. {}", m.status_line()),
                )
                .with(
                    "metrics",
                    serde_json::to_value(&m).expect("metrics serialise"),
                ),
        );
    }
}

/// Everything a service needs besides the network.
#[derive(Debug, Clone)]
pub struct ServiceContext {
    /// The configuration.
    pub config: Config,
    /// The store as the service sees it.
    pub store: Arc<LiveStore>,
    /// The roots that client certificates (mutual TLS) and route peers must chain to.
    pub roots: Arc<RootCertStore>,
    /// Wall time.
    pub clock: Arc<dyn Clock>,
    /// The application log.
    pub events: Arc<dyn EventSink>,
}

/// Starts the service on `net`. It never fails as a whole: connections that cannot start are
/// reported in [`Running::failed`] and the event log, and the rest serve.
pub async fn start<N: Network>(net: N, ctx: ServiceContext, opts: ServiceOptions) -> Running {
    let ServiceContext {
        config,
        store,
        roots,
        clock,
        events,
    } = ctx;
    let log = Arc::new(ServiceLog::new(events, clock.clone(), opts.log_interval));
    let metrics = Arc::new(Metrics::default());
    let principal = config.service.principal.clone();
    let (to_driver, rx) = mpsc::unbounded_channel();
    let ids = Arc::new(AtomicU64::new(1));
    let mut failed = Vec::new();
    let mut credentials = BTreeMap::new();
    let mut listeners = Vec::new();
    let mut tasks = Vec::new();

    // Routes first, so the dialer knows them.
    let mut route_table = Vec::new();
    for (i, route) in config.routes.iter().enumerate() {
        let rid = RouteId(i as u32);
        let reference = route
            .certificate
            .as_ref()
            .expect("validated: routes have a certificate");
        let credential = match Credential::acquire(&route.id, reference, &principal, store.clone())
        {
            Ok(c) => {
                credentials.insert(route.id.clone(), c.clone());
                Some(c)
            }
            Err(e) => {
                log.start_failure(&route.id, &route.next_hop, false, reference, &principal, &e);
                failed.push(StartFailure {
                    id: route.id.clone(),
                    error: e.to_string(),
                    events: vec![ids::CERTIFICATE_UNAVAILABLE, ids::CREDENTIALS_NOT_ACQUIRED],
                });
                None
            }
        };
        let prepared = credential.map(|c| prepare_route(route, c, &roots, &config, &clock, &opts));
        route_table.push(RouteDial {
            id: rid,
            route: route.clone(),
            prepared,
        });
    }
    let dialer = make_dialer(
        net.clone(),
        Arc::new(route_table),
        DialContext {
            config: config.clone(),
            to_driver: to_driver.clone(),
            ids: ids.clone(),
            metrics: metrics.clone(),
            log: log.clone(),
        },
    );

    for c in &config.connections {
        let endpoint = SocketAddr::new(c.address, c.port);
        let acceptor = match c.transport {
            Transport::Tcp => None,
            Transport::Tls | Transport::Mtls => {
                let reference = c
                    .certificate
                    .as_ref()
                    .expect("validated: TLS connections have a certificate");
                match Credential::acquire(&c.id, reference, &principal, store.clone()) {
                    Ok(cred) => {
                        credentials.insert(c.id.clone(), cred.clone());
                        let client_roots = (c.transport == Transport::Mtls).then(|| roots.clone());
                        let server = tls::server_config(
                            Arc::new(StoreServerResolver(cred.clone())),
                            client_roots,
                            &config.tls,
                            clock.clone(),
                            opts.key_log.clone(),
                        )
                        .expect("a valid TLS configuration");
                        Some((TlsAcceptor::from(Arc::new(server)), cred))
                    }
                    Err(e) => {
                        log.start_failure(
                            &c.id,
                            &endpoint.to_string(),
                            true,
                            reference,
                            &principal,
                            &e,
                        );
                        failed.push(StartFailure {
                            id: c.id.clone(),
                            error: e.to_string(),
                            events: vec![
                                ids::CERTIFICATE_UNAVAILABLE,
                                ids::CREDENTIALS_NOT_ACQUIRED,
                                ids::LISTENER_NOT_STARTED,
                            ],
                        });
                        continue;
                    }
                }
            }
        };
        let listener = match net.bind(endpoint).await {
            Ok(l) => l,
            Err(e) => {
                log.record(
                    log.event(
                        ids::BIND_FAILED,
                        Level::Error,
                        format!(
                            "The listening connection {} could not bind {endpoint}: {e}",
                            c.id
                        ),
                    )
                    .with("connection", c.id.as_str())
                    .with("endpoint", endpoint.to_string()),
                );
                failed.push(StartFailure {
                    id: c.id.clone(),
                    error: format!("cannot bind {endpoint}: {e}"),
                    events: vec![ids::BIND_FAILED],
                });
                continue;
            }
        };
        let addr = listener.local_addr().unwrap_or(endpoint);
        log.record(
            log.event(
                ids::LISTENER_STARTED,
                Level::Information,
                format!(
                    "The listening connection {} ({}) started on {addr}.",
                    c.id, c.transport
                ),
            )
            .with("connection", c.id.as_str())
            .with("transport", c.transport.to_string())
            .with("endpoint", addr.to_string()),
        );
        listeners.push(ListenerInfo {
            id: c.id.clone(),
            transport: c.transport,
            addr,
        });
        let ctx = AcceptContext {
            connection: c.clone(),
            acceptor,
            to_driver: to_driver.clone(),
            ids: ids.clone(),
            metrics: metrics.clone(),
            log: log.clone(),
            principal: principal.clone(),
            handshake_timeout: Duration::from_millis(config.tls.handshake_timeout_ms),
            idle: Duration::from_secs(config.sip.idle_timeout_s),
        };
        tasks.push(tokio::spawn(accept_loop(listener, ctx)));
    }

    let proxy = Proxy::new(proxy_config(&config, opts.instance));
    let driver = tokio::spawn(
        Driver {
            proxy,
            rx,
            dialer,
            log: log.clone(),
            metrics: metrics.clone(),
            writers: Default::default(),
        }
        .run(),
    );

    let started: Vec<String> = listeners
        .iter()
        .map(|l| format!("{} on {}", l.id, l.addr))
        .collect();
    let not_started: Vec<&str> = failed.iter().map(|f| f.id.as_str()).collect();
    let level = if failed.is_empty() {
        Level::Information
    } else {
        Level::Warning
    };
    log.record(
        log.event(
            ids::SERVICE_STARTED,
            level,
            format!(
                "The service started as {principal}. Listening: {}. Not started: {}.",
                if started.is_empty() {
                    "none".into()
                } else {
                    started.join(", ")
                },
                if not_started.is_empty() {
                    "none".into()
                } else {
                    not_started.join(", ")
                }
            ),
        )
        .with("listening", started)
        .with("not_started", not_started),
    );

    Running {
        listeners,
        failed,
        metrics,
        credentials,
        log,
        to_driver,
        driver,
        tasks,
    }
}

/// The SIP core's settings from `lcs.toml`.
pub fn proxy_config(config: &Config, instance: u64) -> ProxyConfig {
    ProxyConfig {
        local_domains: std::iter::once(&config.service.domain)
            .chain(&config.service.aliases)
            .cloned()
            .collect(),
        server_host: config.service.server.clone(),
        routes: config
            .routes
            .iter()
            .enumerate()
            .map(|(i, r)| StaticRoute {
                domain: r.domain.clone(),
                route: RouteId(i as u32),
            })
            .collect(),
        t1: Duration::from_millis(config.sip.t1_ms),
        max_message_size: config.sip.max_message_bytes,
        min_expires: config.sip.min_expires_s,
        max_expires: config.sip.max_expires_s,
        instance,
        ..ProxyConfig::default()
    }
}

struct AcceptContext {
    connection: Connection,
    acceptor: Option<(TlsAcceptor, Arc<Credential>)>,
    to_driver: mpsc::UnboundedSender<ToDriver>,
    ids: Arc<AtomicU64>,
    metrics: Arc<Metrics>,
    log: Arc<ServiceLog>,
    principal: String,
    handshake_timeout: Duration,
    idle: Duration,
}

async fn accept_loop<L: Listener>(mut listener: L, ctx: AcceptContext) {
    let ctx = Arc::new(ctx);
    loop {
        match listener.accept().await {
            Ok((io, _peer)) => {
                let ctx = ctx.clone();
                tokio::spawn(async move { serve_inbound(io, &ctx).await });
            }
            Err(e) => {
                tracing::warn!("{}: accept failed: {e}", ctx.connection.id);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn serve_inbound<IO>(io: IO, ctx: &AcceptContext)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send,
{
    let transport = ctx.connection.transport;
    let counters = ctx.metrics.transport(transport);
    counters.accepted.fetch_add(1, Ordering::Relaxed);
    let conn = ConnId(ctx.ids.fetch_add(1, Ordering::Relaxed));
    let kind = ConnKind::Inbound(match transport {
        Transport::Tcp => sip::Transport::Tcp,
        Transport::Tls => sip::Transport::Tls,
        Transport::Mtls => sip::Transport::Mtls,
    });
    match &ctx.acceptor {
        None => {
            with_established(
                counters,
                pump(io, conn, kind, ctx.to_driver.clone(), ctx.idle),
            )
            .await;
        }
        Some((acceptor, credential)) => {
            match tokio::time::timeout(ctx.handshake_timeout, acceptor.accept(io)).await {
                Ok(Ok(tls)) => {
                    counters.handshakes_ok.fetch_add(1, Ordering::Relaxed);
                    with_established(
                        counters,
                        pump(tls, conn, kind, ctx.to_driver.clone(), ctx.idle),
                    )
                    .await;
                }
                Ok(Err(e)) => {
                    let failure = classify(&e, credential);
                    if failure.reason == "not_tls" {
                        ctx.metrics.not_tls.fetch_add(1, Ordering::Relaxed);
                    }
                    report_handshake_failure(ctx, credential, &failure);
                }
                Err(_) => report_handshake_failure(
                    ctx,
                    credential,
                    &Failure {
                        reason: "handshake_timeout",
                        detail: format!("no handshake within {:?}", ctx.handshake_timeout),
                    },
                ),
            }
        }
    }
}

async fn with_established(
    counters: &TransportCounters,
    work: impl std::future::Future<Output = ()>,
) {
    counters.established.fetch_add(1, Ordering::Relaxed);
    work.await;
    counters.established.fetch_sub(1, Ordering::Relaxed);
}

struct Failure {
    reason: &'static str,
    detail: String,
}

/// Why a handshake failed, from rustls's error and the credential's last failure.
fn classify(e: &std::io::Error, credential: &Credential) -> Failure {
    let detail = e.to_string();
    let rustls_error = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    let reason = match rustls_error {
        Some(rustls::Error::General(m)) if m.contains("no server certificate") => {
            return match credential.last_error() {
                Some(c) => Failure {
                    reason: c.reason(),
                    detail: c.to_string(),
                },
                None => Failure {
                    reason: "credential_unavailable",
                    detail,
                },
            };
        }
        Some(rustls::Error::InvalidMessage(_)) => "not_tls",
        Some(rustls::Error::NoCertificatesPresented) => "client_certificate_missing",
        Some(rustls::Error::InvalidCertificate(_)) => "client_certificate_rejected",
        Some(rustls::Error::AlertReceived(_)) => "alert_received",
        Some(rustls::Error::PeerIncompatible(_)) => "peer_incompatible",
        Some(_) => "tls_error",
        None => match e.kind() {
            std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset => {
                "peer_closed"
            }
            _ => "io_error",
        },
    };
    Failure { reason, detail }
}

fn report_handshake_failure(ctx: &AcceptContext, credential: &Credential, f: &Failure) {
    ctx.metrics
        .transport(ctx.connection.transport)
        .failed(f.reason);
    let id = &ctx.connection.id;
    let reference = credential.reference();
    let e = ctx
        .log
        .event(
            ids::HANDSHAKES_FAILING,
            Level::Warning,
            format!(
                "TLS handshakes on connection {id} are failing: {} ({}).",
                f.reason, f.detail
            ),
        )
        .with("connection", id.as_str())
        .with("reason", f.reason)
        .with("error", f.detail.as_str())
        .with("principal", ctx.principal.as_str())
        .with("issuer", reference.issuer.as_str())
        .with("serial", reference.serial.as_str())
        .with("thumbprint", credential.thumbprint().as_str());
    ctx.log
        .record_limited(&format!("handshake:{id}:{}", f.reason), e);
}

struct RouteDial {
    id: RouteId,
    route: Route,
    /// `None` when the credential could not be acquired at start.
    prepared: Option<Result<PreparedRoute, (&'static str, String)>>,
}

/// What every dial of a route shares, made once at start: the credential, and a TLS connector
/// presenting it (a rebind swaps the credential in place, so the connector stays valid).
struct PreparedRoute {
    credential: Arc<Credential>,
    connector: TlsConnector,
    server_name: ServerName<'static>,
}

fn prepare_route(
    route: &Route,
    credential: Arc<Credential>,
    roots: &Arc<RootCertStore>,
    config: &Config,
    clock: &Arc<dyn Clock>,
    opts: &ServiceOptions,
) -> Result<PreparedRoute, (&'static str, String)> {
    let host = route
        .next_hop
        .rsplit_once(':')
        .map_or(route.next_hop.as_str(), |(h, _)| h);
    let server_name = ServerName::try_from(host.trim_matches(['[', ']']).to_string())
        .map_err(|e| ("bad_next_hop", e.to_string()))?;
    let tls_config = tls::client_config(
        roots.clone(),
        Some(Arc::new(StoreClientResolver(credential.clone()))),
        &config.tls,
        clock.clone(),
        opts.key_log.clone(),
    )
    .map_err(|e| ("tls_config", e.to_string()))?;
    Ok(PreparedRoute {
        credential,
        connector: TlsConnector::from(Arc::new(tls_config)),
        server_name,
    })
}

#[derive(Clone)]
struct DialContext {
    config: Config,
    to_driver: mpsc::UnboundedSender<ToDriver>,
    ids: Arc<AtomicU64>,
    metrics: Arc<Metrics>,
    log: Arc<ServiceLog>,
}

fn make_dialer<N: Network>(net: N, routes: Arc<Vec<RouteDial>>, ctx: DialContext) -> Dialer {
    Arc::new(move |rid: RouteId| {
        let net = net.clone();
        let routes = routes.clone();
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let Some(r) = routes.iter().find(|r| r.id == rid) else {
                return;
            };
            let outcome = dial(&net, r, &ctx).await;
            if let Err((reason, detail)) = outcome {
                ctx.metrics.routes.failed(reason);
                let e = ctx
                    .log
                    .event(
                        ids::ROUTE_FAILING,
                        Level::Warning,
                        format!("The route {} to {} cannot connect: {reason} ({detail}). Messages for {} wait and time out.", r.route.id, r.route.next_hop, r.route.domain),
                    )
                    .with("connection", r.route.id.as_str())
                    .with("reason", reason)
                    .with("error", detail);
                ctx.log
                    .record_limited(&format!("route:{}:{reason}", r.route.id), e);
                let _ = ctx.to_driver.send(ToDriver::RouteFailed { route: rid });
            }
        });
    })
}

async fn dial<N: Network>(
    net: &N,
    r: &RouteDial,
    ctx: &DialContext,
) -> Result<(), (&'static str, String)> {
    let prepared = match &r.prepared {
        None => {
            return Err((
                "credential_unavailable",
                "the route's certificate could not be acquired at start".into(),
            ));
        }
        Some(Err(e)) => return Err(e.clone()),
        Some(Ok(p)) => p,
    };
    // Schannel acquires the credential before it connects: an unreadable key fails here, and
    // the peer never sees a connection.
    prepared
        .credential
        .certified_key()
        .map_err(|e| (e.reason(), e.to_string()))?;
    let timeout = Duration::from_millis(ctx.config.tls.handshake_timeout_ms);
    ctx.metrics.routes.accepted.fetch_add(1, Ordering::Relaxed);
    let io = tokio::time::timeout(timeout, net.connect(&r.route.next_hop))
        .await
        .map_err(|_| {
            (
                "connect_timeout",
                format!("no connection within {timeout:?}"),
            )
        })?
        .map_err(|e| ("connect_failed", e.to_string()))?;
    let tls = tokio::time::timeout(
        timeout,
        prepared.connector.connect(prepared.server_name.clone(), io),
    )
    .await
    .map_err(|_| {
        (
            "handshake_timeout",
            format!("no handshake within {timeout:?}"),
        )
    })?
    .map_err(|e| ("handshake_failed", e.to_string()))?;
    ctx.metrics
        .routes
        .handshakes_ok
        .fetch_add(1, Ordering::Relaxed);
    let conn = ConnId(ctx.ids.fetch_add(1, Ordering::Relaxed));
    let idle = Duration::from_secs(ctx.config.sip.idle_timeout_s);
    let to_driver = ctx.to_driver.clone();
    let metrics = ctx.metrics.clone();
    let kind = ConnKind::Route(r.id);
    tokio::spawn(async move {
        with_established(&metrics.routes, pump(tls, conn, kind, to_driver, idle)).await;
    });
    Ok(())
}
