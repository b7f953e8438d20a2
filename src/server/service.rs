//! A running service: what started, what did not and why, and the operations on it while it
//! runs (rebind, shutdown).
//!
//! [`start`](fn@super::start) builds a [`Running`]; its [`ServiceHandle`] is what other tasks
//! hold (the admin endpoint, auto-rebind, the simulation's runner), because a rebind must be
//! one server operation whoever asks for it: every new credential is validated before any is
//! swapped, and the swap never touches established connections.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::KeyLog;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::clock::Clock;
use crate::config::{CertRef, Config, Transport};
use crate::eventlog::{Level, ids};

use rustls::RootCertStore;

use crate::certcheck::{Need, Usage};

use super::credentials::{Credential, CredentialError, LiveStore, PreparedBind};
use super::driver::ToDriver;
use super::log::ServiceLog;
use super::metrics::Metrics;

/// A look at each event as it is logged.
pub type OnEvent = Arc<dyn Fn(&crate::eventlog::Event) + Send + Sync>;

/// Settings of a service run that are not in `lcs.toml`.
#[derive(Clone)]
pub struct ServiceOptions {
    /// Write TLS secrets here (`SSLKEYLOGFILE` format) for Wireshark. Off by default.
    pub key_log: Option<Arc<dyn KeyLog>>,
    /// A repeating failure is logged at most once per this interval (default 60 s).
    pub log_interval: Duration,
    /// Distinguishes this start from others in SIP identifiers (default 0).
    pub instance: u64,
    /// The per-listener connection cap when `lcs.toml` sets none (default 4096; live mode
    /// derives it from the process's file-descriptor limit, see [`fd_budget`](super::live::fd_budget)).
    pub default_max_connections: u32,
    /// Swap renewed certificates in by themselves (also `[service] auto_rebind` in lcs.toml;
    /// either turns it on). Default off.
    pub auto_rebind: bool,
    /// Called after auto-rebind swapped certificates, to record the new references (live mode
    /// writes lcs.toml). Default none.
    pub on_auto_rebind: Option<OnRebound>,
    /// Also shown each event as it is logged (live: `serve` prints rebinds and refusals on its
    /// console). Default none.
    pub on_event: Option<OnEvent>,
    /// The deployment folder, as the remedies in events should name it (live: the folder
    /// `serve` runs; default none: the remedy says `DIR`).
    pub deployment: Option<std::path::PathBuf>,
}

impl Default for ServiceOptions {
    fn default() -> Self {
        Self {
            key_log: None,
            log_interval: Duration::from_secs(60),
            instance: 0,
            default_max_connections: 4096,
            auto_rebind: false,
            on_auto_rebind: None,
            deployment: None,
            on_event: None,
        }
    }
}

impl std::fmt::Debug for ServiceOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceOptions")
            .field("key_log", &self.key_log.is_some())
            .field("log_interval", &self.log_interval)
            .field("instance", &self.instance)
            .field("default_max_connections", &self.default_max_connections)
            .field("auto_rebind", &self.auto_rebind)
            .field("deployment", &self.deployment)
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

/// Why a connection or route did not start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StartCause {
    /// Its certificate cannot be used (KB836410 after a restart).
    #[error("{0}")]
    Credential(CredentialError),
    /// Its address could not be bound.
    #[error("cannot bind {endpoint}: {message}")]
    Bind {
        /// The address.
        endpoint: SocketAddr,
        /// The OS error's kind (`AddrInUse`: another server holds the port).
        kind: std::io::ErrorKind,
        /// The OS error's text, for people.
        message: String,
    },
}

impl StartCause {
    /// A stable snake_case name: the credential's reason, `address_in_use` or `bind_failed`.
    pub fn reason(&self) -> &'static str {
        match self {
            StartCause::Credential(e) => e.reason(),
            StartCause::Bind { kind, .. } if *kind == std::io::ErrorKind::AddrInUse => {
                "address_in_use"
            }
            StartCause::Bind { .. } => "bind_failed",
        }
    }

    /// The events a failed start logs for this cause, in the order logged: 14352, 14336, then
    /// 14347 for a listener (Event Viewer shows them newest first, as the KB lists them); 14371
    /// for a bind.
    pub fn events(&self, is_listener: bool) -> Vec<u32> {
        match self {
            StartCause::Credential(_) if is_listener => vec![
                ids::CERTIFICATE_UNAVAILABLE,
                ids::CREDENTIALS_NOT_ACQUIRED,
                ids::LISTENER_NOT_STARTED,
            ],
            StartCause::Credential(_) => {
                vec![ids::CERTIFICATE_UNAVAILABLE, ids::CREDENTIALS_NOT_ACQUIRED]
            }
            StartCause::Bind { .. } => vec![ids::BIND_FAILED],
        }
    }
}

/// A connection or route that did not start, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartFailure {
    /// Connection or route id.
    pub id: String,
    /// Why.
    pub cause: StartCause,
    /// The event ids logged for it.
    pub events: Vec<u32>,
}

/// One connection's part in a rebind request: the certificate it should present.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RebindTarget {
    /// Connection or route id.
    pub connection: String,
    /// The certificate to bind.
    pub to: CertRef,
}

impl From<&crate::fix::Rebind> for RebindTarget {
    /// The live half of a planned fix: the simulation's `rebind` step swaps
    /// `plan.rebinds.iter().map(RebindTarget::from)` through [`ServiceHandle::rebind`].
    fn from(r: &crate::fix::Rebind) -> Self {
        RebindTarget {
            connection: r.connection.clone(),
            to: r.to.clone(),
        }
    }
}

/// What a rebind did to one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rebound {
    /// Connection or route id.
    pub connection: String,
    /// The certificate bound before.
    pub from: CertRef,
    /// The certificate bound now.
    pub to: CertRef,
    /// False when the connection already presented `to`.
    pub changed: bool,
}

/// Called with what auto-rebind swapped, so the new references can be recorded (live: in
/// lcs.toml, so a restart works too; the simulation: in its configuration). It lives here, with
/// [`Rebound`] and the options that carry it, so `service` never imports `auto` (auto drives the
/// service, not the other way round).
pub type OnRebound = Arc<dyn Fn(&[Rebound]) + Send + Sync>;

/// Why a rebind request was refused (nothing was swapped).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RebindRefusal {
    /// The id names no running connection or route that uses a certificate.
    #[error("`{connection}` is not a running connection or route that uses a certificate")]
    NotRunning {
        /// The id asked for.
        connection: String,
    },
    /// The new certificate cannot be used by this connection (not found, key unreadable).
    #[error("{error}")]
    Unusable {
        /// The connection.
        connection: String,
        /// Why.
        error: CredentialError,
    },
    /// The new certificate is found and its key opens, but it cannot serve the connection
    /// (outside its validity, wrong name, missing EKU, untrusted chain).
    #[error("{}", .problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Invalid {
        /// The connection.
        connection: String,
        /// Every problem [`certcheck`](crate::certcheck) found.
        problems: Vec<crate::certcheck::Problem>,
    },
}

impl RebindRefusal {
    /// The connection it concerns.
    pub fn connection(&self) -> &str {
        match self {
            RebindRefusal::NotRunning { connection }
            | RebindRefusal::Unusable { connection, .. }
            | RebindRefusal::Invalid { connection, .. } => connection,
        }
    }

    /// A stable snake_case reason.
    pub fn reason(&self) -> &'static str {
        match self {
            RebindRefusal::NotRunning { .. } => "not_running",
            RebindRefusal::Unusable { error, .. } => error.reason(),
            RebindRefusal::Invalid { problems, .. } => {
                problems.first().map_or("invalid", |p| p.code())
            }
        }
    }
}

/// What tasks beside the service hold: the credentials, counters and log, and the rebind.
#[derive(Debug)]
pub struct ServiceHandle {
    /// The configuration the service started with.
    pub config: Config,
    /// Credentials by connection or route id (those acquired at start).
    pub credentials: BTreeMap<String, Arc<Credential>>,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// Listeners that started.
    pub listeners: Vec<ListenerInfo>,
    /// Connections and routes that did not.
    pub failed: Vec<StartFailure>,
    /// The store the credentials read.
    pub store: Arc<LiveStore>,
    /// Wall time.
    pub clock: Arc<dyn Clock>,
    /// The deployment's trust anchors (what a new certificate's chain must verify to).
    pub roots: Arc<RootCertStore>,
    pub(crate) log: Arc<ServiceLog>,
}

impl ServiceHandle {
    /// Rebinds each target connection to its certificate, all or nothing: every new credential
    /// is validated (found by issuer + serial, key opens as the service principal, usable for
    /// TLS) before any is swapped, and a target already bound must have a key that opens now;
    /// if one fails nothing changes and the refusal is logged (14372). Established connections keep their sessions; the next handshake presents the
    /// new certificate. A done rebind is logged as 14370.
    pub fn rebind(&self, targets: &[RebindTarget]) -> Result<Vec<Rebound>, Vec<RebindRefusal>> {
        let mut prepared = Vec::new();
        let mut refused = Vec::new();
        for t in targets {
            // Already bound: nothing to look up (the bound certificate may be archived, which
            // a running server may hold), but its key must open now, or "unchanged" would hide
            // the outage /healthz reports.
            if let Some(c) = self.credentials.get(&t.connection)
                && c.reference() == t.to
            {
                match c.certified_key() {
                    Ok(_) => prepared.push((t, c.clone(), None)),
                    Err(error) => refused.push(RebindRefusal::Unusable {
                        connection: t.connection.clone(),
                        error,
                    }),
                }
                continue;
            }
            match self.validate(t) {
                Ok((credential, p)) => prepared.push((t, credential, Some(p))),
                Err(r) => refused.push(r),
            }
        }
        if !refused.is_empty() {
            self.log_refused(&refused);
            return Err(refused);
        }
        let mut done = Vec::new();
        for (t, credential, p) in prepared {
            let from = credential.reference();
            let changed = from != t.to;
            if let Some(p) = p {
                credential.commit(p);
            }
            done.push(Rebound {
                connection: t.connection.clone(),
                from,
                to: t.to.clone(),
                changed,
            });
        }
        self.log_rebound(&done);
        Ok(done)
    }

    /// Validates one target without swapping: the certificate is found by issuer + serial and
    /// its key opens as the service principal ([`Credential::prepare`]), and
    /// [`certcheck::check`](crate::certcheck::check) finds nothing wrong for what the
    /// connection does with it (validity now, the server's name, EKUs, chain to the
    /// deployment's CA).
    pub fn validate(
        &self,
        t: &RebindTarget,
    ) -> Result<(Arc<Credential>, PreparedBind), RebindRefusal> {
        let Some(credential) = self.credentials.get(&t.connection) else {
            return Err(RebindRefusal::NotRunning {
                connection: t.connection.clone(),
            });
        };
        let prepared = credential
            .prepare(&t.to)
            .map_err(|error| RebindRefusal::Unusable {
                connection: t.connection.clone(),
                error,
            })?;
        let usage = crate::certcheck::usage_of(&self.config, &t.connection).unwrap_or(Usage::ROUTE);
        let intermediates = self.store.intermediates();
        let need = Need {
            principal: credential.principal(),
            server_name: &self.config.service.server,
            usage,
            roots: &self.roots,
            intermediates: &intermediates,
            now: self.clock.now_utc(),
        };
        let problems =
            crate::certcheck::check(&self.store.snapshot().store, prepared.thumbprint(), &need);
        if !problems.is_empty() {
            return Err(RebindRefusal::Invalid {
                connection: t.connection.clone(),
                problems,
            });
        }
        Ok((credential.clone(), prepared))
    }

    fn log_rebound(&self, done: &[Rebound]) {
        let changed: Vec<&Rebound> = done.iter().filter(|r| r.changed).collect();
        if changed.is_empty() {
            return;
        }
        self.metrics
            .swaps
            .fetch_add(changed.len() as u64, std::sync::atomic::Ordering::Relaxed);
        let names: Vec<String> = changed.iter().map(|r| r.connection.clone()).collect();
        let serials: Vec<String> = changed
            .iter()
            .map(|r| format!("{}: {} -> {}", r.connection, r.from.serial, r.to.serial))
            .collect();
        self.log.record(
            self.log
                .event(
                    ids::CONNECTION_REBOUND,
                    Level::Information,
                    format!(
                        "Connections rebound live to another certificate: {}. Established connections are untouched; new handshakes present the new certificate.",
                        serials.join(", ")
                    ),
                )
                .with("connections", names),
        );
    }

    fn log_refused(&self, refused: &[RebindRefusal]) {
        self.metrics
            .rebind_refusals
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // One line per distinct cause, naming every connection it refused (three connections
        // sharing one key share one cause).
        let mut causes: Vec<(String, Vec<&str>)> = Vec::new();
        for r in refused {
            let cause = format!("{} ({r})", r.reason());
            match causes.iter_mut().find(|(c, _)| *c == cause) {
                Some((_, ids)) => ids.push(r.connection()),
                None => causes.push((cause, vec![r.connection()])),
            }
        }
        let lines: Vec<String> = causes
            .iter()
            .map(|(cause, ids)| format!("{}: {cause}", ids.join(", ")))
            .collect();
        let reasons: Vec<&str> = refused.iter().map(RebindRefusal::reason).collect();
        let names: Vec<&str> = refused.iter().map(RebindRefusal::connection).collect();
        self.log.record(
            self.log
                .event(
                    ids::REBIND_REFUSED,
                    Level::Warning,
                    format!(
                        "A live rebind was refused; nothing was changed: {}.",
                        lines.join("; ")
                    ),
                )
                .with("connections", names)
                .with("reasons", reasons),
        );
    }
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
    /// What an operator should know at start (a bound certificate expired or not yet valid).
    pub warnings: Vec<String>,
    pub(crate) handle: Arc<ServiceHandle>,
    pub(crate) to_driver: mpsc::UnboundedSender<ToDriver>,
    pub(crate) driver: JoinHandle<()>,
    pub(crate) tasks: Vec<JoinHandle<()>>,
}

impl Running {
    /// The address a listener bound, by connection id.
    pub fn addr(&self, id: &str) -> Option<SocketAddr> {
        self.listeners.iter().find(|l| l.id == id).map(|l| l.addr)
    }

    /// What other tasks hold to watch and rebind the service.
    pub fn handle(&self) -> Arc<ServiceHandle> {
        self.handle.clone()
    }

    /// See [`ServiceHandle::rebind`].
    pub fn rebind(&self, targets: &[RebindTarget]) -> Result<Vec<Rebound>, Vec<RebindRefusal>> {
        self.handle.rebind(targets)
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
        let log = &self.handle.log;
        log.flush();
        let m = self.metrics.snapshot();
        log.record(
            log.event(
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
