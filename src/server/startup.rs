//! Starting the emulated service.
//!
//! Start does what LCS does: for each listening connection, look the certificate up by issuer +
//! serial and open its key as the service principal; a connection whose credential cannot be had
//! does not start (events 14352, 14336, 14347) while the others do, so TCP keeps serving after a
//! KB836410 restart. Routes acquire their credential the same way and, lacking it, never dial:
//! messages for the federated domain wait in the queue and time out. A certificate that is
//! bound but expired or not yet valid starts (Schannel would too) with a warning (14353).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use rustls::RootCertStore;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::clock::Clock;
use crate::config::{Config, Connection, Transport};
use crate::eventlog::{EventSink, Level, ids};
use crate::sip::{CompletedCaps, Proxy, ProxyConfig, RouteId, StaticRoute};

use super::accept::{AcceptContext, TlsSide, accept_loop};
use super::credentials::{Credential, LiveStore};
use super::driver::{Driver, ToDriver};
use super::log::ServiceLog;
use super::metrics::Metrics;
use super::net::{Listener as _, Network};
use super::route::{DialContext, RouteDial, make_dialer, prepare_route};
use super::service::{
    ListenerInfo, Running, ServiceHandle, ServiceOptions, StartCause, StartFailure,
};
use super::tls;

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

/// What start builds up, connection by connection.
struct Starting {
    ctx: ServiceContext,
    opts: ServiceOptions,
    log: Arc<ServiceLog>,
    metrics: Arc<Metrics>,
    to_driver: mpsc::UnboundedSender<ToDriver>,
    ids: Arc<AtomicU64>,
    failed: Vec<StartFailure>,
    credentials: BTreeMap<String, Arc<Credential>>,
    listeners: Vec<ListenerInfo>,
    warnings: Vec<String>,
    tasks: Vec<JoinHandle<()>>,
}

/// Starts the service on `net`. It never fails as a whole: connections that cannot start are
/// reported in [`Running::failed`] and the event log, and the rest serve.
pub async fn start<N: Network>(net: N, ctx: ServiceContext, opts: ServiceOptions) -> Running {
    let log = Arc::new(ServiceLog::new(
        ctx.events.clone(),
        ctx.clock.clone(),
        opts.log_interval,
    ));
    let (to_driver, rx) = mpsc::unbounded_channel();
    let mut s = Starting {
        ctx,
        opts,
        log,
        metrics: Arc::new(Metrics::default()),
        to_driver,
        ids: Arc::new(AtomicU64::new(1)),
        failed: Vec::new(),
        credentials: BTreeMap::new(),
        listeners: Vec::new(),
        warnings: Vec::new(),
        tasks: Vec::new(),
    };
    // Routes first, so the dialer knows them.
    let route_table = s.start_routes();
    let dialer = make_dialer(
        net.clone(),
        Arc::new(route_table),
        DialContext {
            config: s.ctx.config.clone(),
            to_driver: s.to_driver.clone(),
            ids: s.ids.clone(),
            metrics: s.metrics.clone(),
            log: s.log.clone(),
        },
    );
    for c in s.ctx.config.connections.clone() {
        s.start_listener(&net, &c).await;
    }
    let proxy = Proxy::new(proxy_config(&s.ctx.config, s.opts.instance));
    let driver = tokio::spawn(
        Driver {
            proxy,
            rx,
            dialer,
            log: s.log.clone(),
            metrics: s.metrics.clone(),
            writers: Default::default(),
        }
        .run(),
    );
    s.warn_out_of_validity();
    s.log_started();
    let auto = s.opts.auto_rebind || s.ctx.config.auto_rebind;
    let changes = s.ctx.store.subscribe();
    let on_rebound = s.opts.on_auto_rebind.clone();
    let dir = s
        .opts
        .deployment
        .as_ref()
        .map_or_else(|| "DIR".to_owned(), |d| d.display().to_string());
    let remedy = format!("lcs-sim fix {dir} --live");
    let mut running = s.finish(driver);
    if auto {
        let task = super::auto::auto_rebind(running.handle(), changes, on_rebound, remedy);
        running.tasks.push(tokio::spawn(task));
    }
    running
}

impl Starting {
    fn start_routes(&mut self) -> Vec<RouteDial> {
        let config = self.ctx.config.clone();
        let principal = &config.service.principal;
        let mut table = Vec::new();
        for (i, route) in config.routes.iter().enumerate() {
            let reference = &route.certificate;
            let credential = match Credential::acquire(reference, principal, self.ctx.store.clone())
            {
                Ok(c) => {
                    self.credentials.insert(route.id.clone(), c.clone());
                    Some(c)
                }
                Err(e) => {
                    let hop = route.next_hop.to_string();
                    self.log
                        .start_failure(&route.id, &hop, false, reference, principal, &e);
                    self.fail(&route.id, StartCause::Credential(e), false);
                    None
                }
            };
            let prepared = credential.map(|c| {
                let key_log = self.opts.key_log.clone();
                prepare_route(route, c, &self.ctx.roots, &config, &self.ctx.clock, key_log)
            });
            table.push(RouteDial {
                id: RouteId(i as u32),
                route: route.clone(),
                prepared,
            });
        }
        table
    }

    fn fail(&mut self, id: &str, cause: StartCause, is_listener: bool) {
        let events = cause.events(is_listener);
        self.failed.push(StartFailure {
            id: id.into(),
            cause,
            events,
        });
    }

    /// The TLS side of a listener, or `None` after logging why it cannot start.
    fn tls_side(&mut self, c: &Connection, endpoint: SocketAddr) -> Result<Option<TlsSide>, ()> {
        let Some(reference) = c.certificate() else {
            return Ok(None);
        };
        let principal = self.ctx.config.service.principal.clone();
        match Credential::acquire(reference, &principal, self.ctx.store.clone()) {
            Ok(cred) => {
                self.credentials.insert(c.id.clone(), cred.clone());
                let client_roots =
                    (c.transport() == Transport::Mtls).then(|| self.ctx.roots.clone());
                let base = tls::server_config(
                    Arc::new(super::credentials::StoreServerResolver(cred.clone())),
                    client_roots,
                    &self.ctx.config.tls,
                    self.ctx.clock.clone(),
                    self.opts.key_log.clone(),
                )
                .expect("a valid TLS configuration");
                Ok(Some(TlsSide::new(cred, base)))
            }
            Err(e) => {
                let ep = endpoint.to_string();
                self.log
                    .start_failure(&c.id, &ep, true, reference, &principal, &e);
                self.fail(&c.id, StartCause::Credential(e), true);
                Err(())
            }
        }
    }

    async fn start_listener<N: Network>(&mut self, net: &N, c: &Connection) {
        let endpoint = SocketAddr::new(c.address, c.port);
        let Ok(tls) = self.tls_side(c, endpoint) else {
            return;
        };
        let listener = match net.bind(endpoint).await {
            Ok(l) => l,
            Err(e) => {
                let log = &self.log;
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
                // Not running: its credential is no one's to rebind or to report as healthy.
                self.credentials.remove(&c.id);
                let cause = StartCause::Bind {
                    endpoint,
                    kind: e.kind(),
                    message: e.to_string(),
                };
                self.fail(&c.id, cause, true);
                return;
            }
        };
        let addr = listener.local_addr().unwrap_or(endpoint);
        self.log.record(
            self.log
                .event(
                    ids::LISTENER_STARTED,
                    Level::Information,
                    format!(
                        "The listening connection {} ({}) started on {addr}.",
                        c.id,
                        c.transport()
                    ),
                )
                .with("connection", c.id.as_str())
                .with("transport", c.transport().to_string())
                .with("endpoint", addr.to_string()),
        );
        self.listeners.push(ListenerInfo {
            id: c.id.clone(),
            transport: c.transport(),
            addr,
        });
        let config = &self.ctx.config;
        let cap = match c.transport() {
            Transport::Tcp => config.sip.max_connections,
            Transport::Tls | Transport::Mtls => config.tls.max_connections,
        };
        let ctx = AcceptContext {
            connection: c.clone(),
            tls,
            to_driver: self.to_driver.clone(),
            ids: self.ids.clone(),
            metrics: self.metrics.clone(),
            counters: self.metrics.listener(&c.id),
            log: self.log.clone(),
            handshake_timeout: Duration::from_millis(config.tls.handshake_timeout_ms),
            idle: Duration::from_secs(config.sip.idle_timeout_s),
            max_connections: cap.unwrap_or(self.opts.default_max_connections),
        };
        self.tasks.push(tokio::spawn(accept_loop(listener, ctx)));
    }

    /// Warns (14353) about every bound certificate outside its validity now.
    fn warn_out_of_validity(&mut self) {
        let now = self.ctx.clock.now_utc();
        let snapshot = self.ctx.store.snapshot();
        for (id, credential) in &self.credentials {
            let Ok(cert) = snapshot.store.find(credential.thumbprint().as_str()) else {
                continue;
            };
            let info = &cert.info;
            let problem = if now > info.not_after {
                format!("expired at {}", info.not_after)
            } else if now < info.not_before {
                format!("not valid before {}", info.not_before)
            } else {
                continue;
            };
            let message = format!(
                "The certificate of connection {id} (serial {}) is {problem}: clients will reject it. Renew it and rebind (`lcs-sim fix DIR --live`).",
                info.serial
            );
            self.warnings.push(message.clone());
            let log = &self.log;
            log.record(
                log.event(ids::CERTIFICATE_OUT_OF_VALIDITY, Level::Warning, message)
                    .with("connection", id.as_str())
                    .with("serial", info.serial.as_str())
                    .with("thumbprint", info.thumbprint.as_str()),
            );
        }
    }

    fn log_started(&self) {
        let started: Vec<String> = self
            .listeners
            .iter()
            .map(|l| format!("{} on {}", l.id, l.addr))
            .collect();
        let not_started: Vec<&str> = self.failed.iter().map(|f| f.id.as_str()).collect();
        let level = if self.failed.is_empty() {
            Level::Information
        } else {
            Level::Warning
        };
        let none_or = |v: String| if v.is_empty() { "none".into() } else { v };
        self.log.record(
            self.log
                .event(
                    ids::SERVICE_STARTED,
                    level,
                    format!(
                        "The service started as {}. Listening: {}. Not started: {}.",
                        self.ctx.config.service.principal,
                        none_or(started.join(", ")),
                        none_or(not_started.join(", "))
                    ),
                )
                .with("listening", started.clone())
                .with("not_started", not_started),
        );
    }

    fn finish(self, driver: JoinHandle<()>) -> Running {
        let handle = Arc::new(ServiceHandle {
            config: self.ctx.config,
            credentials: self.credentials.clone(),
            metrics: self.metrics.clone(),
            listeners: self.listeners.clone(),
            failed: self.failed.clone(),
            store: self.ctx.store,
            clock: self.ctx.clock,
            roots: self.ctx.roots,
            log: self.log,
        });
        Running {
            listeners: self.listeners,
            failed: self.failed,
            metrics: self.metrics,
            credentials: self.credentials,
            warnings: self.warnings,
            handle,
            to_driver: self.to_driver,
            driver,
            tasks: self.tasks,
        }
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
        message_timeout: Duration::from_millis(config.sip.message_timeout_ms),
        completed: CompletedCaps {
            per_connection: config.sip.max_completed_transactions_per_connection,
            total: config.sip.max_completed_transactions,
        },
        min_expires: config.sip.min_expires_s,
        max_expires: config.sip.max_expires_s,
        instance,
        ..ProxyConfig::default()
    }
}
