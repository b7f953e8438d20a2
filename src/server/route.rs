//! Dialling static routes: outgoing mutual TLS to a federated domain's next hop.
//!
//! A route's credential is acquired at start like a listener's; what every dial shares (the
//! TLS connector presenting that credential, the server name of the next hop) is made once.
//! Each dial first opens the key as the service principal, as Schannel acquires its credential
//! before it connects: after KB836410 the peer never sees a connection, and messages for the
//! domain wait in the queue until Timer F. Failures are typed: our credential's reason, or the
//! crate's client-side [`ConnectFailure`].

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rustls::pki_types::ServerName;
use rustls::{KeyLog, RootCertStore};
use tokio::sync::mpsc;
use tokio_rustls::TlsConnector;

use crate::clock::Clock;
use crate::config::{Config, Route};
use crate::eventlog::{Level, ids};
use crate::failure::ConnectFailure;
use crate::sip::{ConnId, ConnKind, RouteId};

use super::conn::pump;
use super::credentials::{Credential, CredentialError, StoreClientResolver};
use super::driver::{Dialer, ToDriver};
use super::log::ServiceLog;
use super::metrics::Metrics;
use super::net::Network;
use super::tls;

/// Why a route could not connect.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RouteFailure {
    /// The route's certificate could not be acquired at start.
    NotStarted,
    /// The route could not be prepared (its next hop is no TLS server name, or the TLS
    /// configuration was refused).
    Unprepared(&'static str),
    /// The credential failed as this dial opened the key.
    Credential(&'static str),
    /// The connection or handshake to the next hop failed.
    Connect(ConnectFailure),
}

impl RouteFailure {
    /// The stable name (counters, labels, events).
    pub fn name(&self) -> String {
        match self {
            Self::NotStarted => "credential_unavailable".into(),
            Self::Unprepared(r) | Self::Credential(r) => (*r).into(),
            Self::Connect(c) => c.name(),
        }
    }
}

impl fmt::Display for RouteFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

pub(crate) struct RouteDial {
    pub id: RouteId,
    pub route: Route,
    /// `None` when the credential could not be acquired at start.
    pub prepared: Option<Result<PreparedRoute, (RouteFailure, String)>>,
}

/// What every dial of a route shares, made once at start: the credential, and a TLS connector
/// presenting it (a rebind swaps the credential in place, so the connector stays valid).
pub(crate) struct PreparedRoute {
    credential: Arc<Credential>,
    connector: TlsConnector,
    server_name: ServerName<'static>,
}

pub(crate) fn prepare_route(
    route: &Route,
    credential: Arc<Credential>,
    roots: &Arc<RootCertStore>,
    config: &Config,
    clock: &Arc<dyn Clock>,
    key_log: Option<Arc<dyn KeyLog>>,
) -> Result<PreparedRoute, (RouteFailure, String)> {
    let server_name = ServerName::try_from(route.next_hop.host.clone())
        .map_err(|e| (RouteFailure::Unprepared("bad_next_hop"), e.to_string()))?;
    let tls_config = tls::client_config(
        roots.clone(),
        Some(Arc::new(StoreClientResolver(credential.clone()))),
        &config.tls,
        clock.clone(),
        key_log,
    )
    .map_err(|e| (RouteFailure::Unprepared("tls_config"), e.to_string()))?;
    Ok(PreparedRoute {
        credential,
        connector: TlsConnector::from(Arc::new(tls_config)),
        server_name,
    })
}

#[derive(Clone)]
pub(crate) struct DialContext {
    pub config: Config,
    pub to_driver: mpsc::UnboundedSender<ToDriver>,
    pub ids: Arc<AtomicU64>,
    pub metrics: Arc<Metrics>,
    pub log: Arc<ServiceLog>,
}

pub(crate) fn make_dialer<N: Network>(
    net: N,
    routes: Arc<Vec<RouteDial>>,
    ctx: DialContext,
) -> Dialer {
    Arc::new(move |rid: RouteId| {
        let net = net.clone();
        let routes = routes.clone();
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let Some(r) = routes.iter().find(|r| r.id == rid) else {
                return;
            };
            if let Err((reason, detail)) = dial(&net, r, &ctx).await {
                report_route_failure(&ctx, &r.route, &reason, &detail);
                let _ = ctx.to_driver.send(ToDriver::RouteFailed { route: rid });
            }
        });
    })
}

fn report_route_failure(ctx: &DialContext, route: &Route, reason: &RouteFailure, detail: &str) {
    let name = reason.name();
    ctx.metrics.route_failed(&route.id, &name);
    let e = ctx
        .log
        .event(
            ids::ROUTE_FAILING,
            Level::Warning,
            format!(
                "The route {} to {} cannot connect: {name} ({detail}). Messages for {} wait and time out.",
                route.id, route.next_hop, route.domain
            ),
        )
        .with("connection", route.id.as_str())
        .with("reason", name.as_str())
        .with("error", detail);
    ctx.log
        .record_limited(&format!("route:{}:{name}", route.id), e);
}

async fn dial<N: Network>(
    net: &N,
    r: &RouteDial,
    ctx: &DialContext,
) -> Result<(), (RouteFailure, String)> {
    let prepared = match &r.prepared {
        None => {
            return Err((
                RouteFailure::NotStarted,
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
        .map_err(|e: CredentialError| (RouteFailure::Credential(e.reason()), e.to_string()))?;
    let timeout = Duration::from_millis(ctx.config.tls.handshake_timeout_ms);
    ctx.metrics.routes.accepted.fetch_add(1, Ordering::Relaxed);
    let connect_failed = |f: ConnectFailure, detail: String| (RouteFailure::Connect(f), detail);
    let io = tokio::time::timeout(timeout, net.connect(&r.route.next_hop.to_string()))
        .await
        .map_err(|_| {
            connect_failed(
                ConnectFailure::ConnectTimeout,
                format!("no connection within {timeout:?}"),
            )
        })?
        .map_err(|e| connect_failed(ConnectFailure::from_connect_error(&e), e.to_string()))?;
    let tls = tokio::time::timeout(
        timeout,
        prepared.connector.connect(prepared.server_name.clone(), io),
    )
    .await
    .map_err(|_| {
        connect_failed(
            ConnectFailure::HandshakeTimeout,
            format!("no handshake within {timeout:?}"),
        )
    })?
    .map_err(|e| connect_failed(ConnectFailure::from_handshake_error(&e), e.to_string()))?;
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
        metrics.routes.established.fetch_add(1, Ordering::Relaxed);
        pump(tls, conn, kind, to_driver, idle).await;
        metrics.routes.established.fetch_sub(1, Ordering::Relaxed);
    });
    Ok(())
}
