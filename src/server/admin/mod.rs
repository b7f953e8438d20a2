//! The admin endpoint of a live `serve`: `/healthz`, `/metrics`, `/certs`, `POST /rebind`.
//!
//! LCS stayed silent while KB836410 took its TLS listener down; a probe, a scraper and an
//! operator's `fix --live` need a way in. The endpoint is HTTP/1.1 (axum on hyper), bound to
//! 127.0.0.1 only — it can swap certificates, so it never listens beyond loopback. It reads the
//! running service through its [`ServiceHandle`] and the deployment's `lcs.toml` (the configured
//! references a rebind follows); it is live-only, the simulation calls
//! [`ServiceHandle::rebind`] directly. Loopback alone does not keep a browser out: every request
//! first passes [`guard`] (Host, Origin, and for a change JSON and the run's [`Token`]).

mod accept;
pub mod api;
pub mod client;
pub mod guard;
mod prom;
mod servefile;
mod token;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

use crate::config::{CertRef, Config};
use crate::deployment::Deployment;

use super::service::{RebindTarget, ServiceHandle};
pub use accept::AdminMetrics;
use api::{
    BoundCert, Broken, CertsEntry, CertsReport, ConfiguredRef, ConnectionKind, ConnectionState,
    Health, RebindRequest, RebindResponse, RebindResult, RebindStatus, SerialOnly,
};
pub use servefile::{SERVE_FILE, SERVE_LOCK, ServeFile, ServeFileError, ServeLock};
pub use token::Token;

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct AdminState {
    /// The running service.
    pub handle: Arc<ServiceHandle>,
    /// The deployment folder (for lcs.toml).
    pub deployment: Deployment,
    /// This run's token, which state-changing requests must carry (also in `serve.json`).
    pub token: Token,
}

/// What the handlers read: the state, the request checks and the endpoint's own counters.
#[derive(Debug)]
struct Shared {
    state: AdminState,
    guard: guard::Guard,
    connections: Arc<AdminMetrics>,
}

/// Binds the admin port on 127.0.0.1 (0 picks a free port).
pub async fn bind(port: u16) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).await
}

/// Serves the endpoint on `listener` until the task is dropped, under the `[admin]` cap and
/// timeouts of the running service's lcs.toml (see `accept` in this module).
pub async fn serve(listener: tokio::net::TcpListener, state: AdminState) -> std::io::Result<()> {
    let settings = state.handle.config.admin.clone();
    let connections = Arc::new(AdminMetrics::default());
    let guard = guard::Guard {
        local: listener.local_addr()?,
        token: state.token.clone(),
    };
    let router = routes(Arc::new(Shared {
        state,
        guard,
        connections: connections.clone(),
    }));
    accept::run(listener, router, settings, connections).await
}

fn routes(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/certs", get(certs))
        .route("/rebind", post(rebind))
        .layer(axum::middleware::from_fn_with_state(
            shared.clone(),
            guard::layer,
        ))
        .with_state(shared)
}

async fn healthz(State(shared): State<Arc<Shared>>) -> Response {
    let s = &shared.state;
    let health = health(&s.handle);
    let code = if health.broken.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(health)).into_response()
}

/// 200 when every configured listener and route started and its key opens now.
pub fn health(handle: &ServiceHandle) -> Health {
    let mut broken: Vec<Broken> = handle
        .failed
        .iter()
        .map(|f| Broken {
            connection: f.id.clone(),
            reason: f.cause.reason().into(),
            message: format!("not started: {}", f.cause),
        })
        .collect();
    for (id, credential) in &handle.credentials {
        if let Err(e) = credential.certified_key() {
            broken.push(Broken {
                connection: id.clone(),
                reason: e.reason().into(),
                message: e.to_string(),
            });
        }
    }
    broken.sort_by(|a, b| a.connection.cmp(&b.connection));
    Health {
        status: if broken.is_empty() { "ok" } else { "unhealthy" }.into(),
        broken,
    }
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    let body = prom::encode(&shared.state.handle, &shared.connections);
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

async fn certs(State(shared): State<Arc<Shared>>) -> Response {
    let s = &shared.state;
    // lcs.toml is a file: read it off the async workers.
    let d = s.deployment.clone();
    let configured = tokio::task::spawn_blocking(move || d.config().ok())
        .await
        .ok()
        .flatten();
    Json(certs_report(&s.handle, configured.as_ref())).into_response()
}

/// Every configured connection and route with the certificate bound now.
pub fn certs_report(handle: &ServiceHandle, on_disk: Option<&Config>) -> CertsReport {
    let config = &handle.config;
    let snapshot = handle.store.snapshot();
    let configured_ref = |id: &str| -> Option<CertRef> {
        on_disk?
            .cert_refs()
            .find(|(c, _)| *c == id)
            .map(|(_, r)| r.clone())
    };
    let entry = |id: &str, kind, transport, port, next_hop, started: bool| {
        let credential = handle.credentials.get(id);
        let bound = credential.and_then(|c| {
            let cert = snapshot.store.find(c.thumbprint().as_str()).ok()?;
            Some(BoundCert {
                serial: cert.info.serial.to_string(),
                issuer: cert.info.issuer.clone(),
                thumbprint: cert.info.thumbprint.to_string(),
                not_after: rfc3339(cert.info.not_after),
            })
        });
        let key = credential.map(|c| c.certified_key());
        let differs =
            configured_ref(id).filter(|r| Some(r) != credential.map(|c| c.reference()).as_ref());
        CertsEntry {
            id: id.into(),
            kind,
            transport,
            port,
            next_hop,
            state: match (started, kind) {
                (false, _) => ConnectionState::NotStarted,
                (true, ConnectionKind::Listener) => ConnectionState::Listening,
                (true, ConnectionKind::Route) => ConnectionState::Ready,
            },
            bound,
            key_opens: key.as_ref().map(Result::is_ok),
            key_error: match key {
                Some(Err(e)) => Some((&e).into()),
                _ => None,
            },
            start_error: handle
                .failed
                .iter()
                .find(|f| f.id == id)
                .map(|f| (&f.cause).into()),
            configured: differs.map(|r| ConfiguredRef {
                issuer: r.issuer,
                serial: r.serial.to_string(),
            }),
        }
    };
    let started = |id: &str| !handle.failed.iter().any(|f| f.id == id);
    let mut connections = Vec::new();
    for c in &config.connections {
        let port = handle
            .listeners
            .iter()
            .find(|l| l.id == c.id)
            .map_or(c.port, |l| l.addr.port());
        connections.push(entry(
            &c.id,
            ConnectionKind::Listener,
            c.transport(),
            Some(port),
            None,
            started(&c.id),
        ));
    }
    for r in &config.routes {
        let hop = Some(r.next_hop.to_string());
        connections.push(entry(
            &r.id,
            ConnectionKind::Route,
            r.transport,
            None,
            hop,
            started(&r.id),
        ));
    }
    CertsReport { connections }
}

fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

async fn rebind(State(shared): State<Arc<Shared>>, body: axum::body::Bytes) -> Response {
    // The guard has seen `Content-Type: application/json` and the token.
    let request: RebindRequest = if body.iter().all(u8::is_ascii_whitespace) {
        RebindRequest::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(r) => r,
            Err(e) => return error(StatusCode::BAD_REQUEST, format!("bad JSON body: {e}")),
        }
    };
    // lcs.toml and the store are files, the refusal event a write: off the async workers.
    let answer = tokio::task::spawn_blocking(move || {
        let s = &shared.state;
        let config = s
            .deployment
            .config()
            .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        // The caller has just changed the store (fix --live grants read): read it now rather
        // than wait for the poll, so the rebind validates against what is on disk.
        let store = s
            .deployment
            .store()
            .load()
            .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        s.handle.store.replace(store);
        rebind_to_configured(&s.handle, &config, &request)
            .map_err(|bad| (StatusCode::BAD_REQUEST, bad))
    })
    .await;
    match answer {
        Ok(Ok((code, response))) => (code, Json(response)).into_response(),
        Ok(Err((code, message))) => error(code, message),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

fn error(code: StatusCode, message: String) -> Response {
    (code, Json(serde_json::json!({ "error": message }))).into_response()
}

/// The connections a rebind request names, checked: `Err` (a 400) for an empty list, a
/// duplicate, an id lcs.toml does not know (naming those it knows), or a listener that uses no
/// certificate. Default: every connection and route that uses a certificate.
fn asked(handle: &ServiceHandle, request: &RebindRequest) -> Result<Vec<String>, String> {
    let config = &handle.config;
    let with_cert: Vec<&str> = config.cert_refs().map(|(id, _)| id).collect();
    let Some(list) = &request.connections else {
        return Ok(with_cert.iter().map(|id| (*id).to_owned()).collect());
    };
    if list.is_empty() {
        return Err(
            "nothing to do: `connections` is empty (send no body to rebind every connection)"
                .into(),
        );
    }
    for (i, id) in list.iter().enumerate() {
        if list[..i].contains(id) {
            return Err(format!("`{id}` is named twice"));
        }
        if with_cert.contains(&id.as_str()) {
            continue;
        }
        if config.connections.iter().any(|c| c.id == *id) {
            return Err(format!(
                "`{id}` uses no certificate (a TCP listener): nothing to rebind"
            ));
        }
        return Err(format!(
            "unknown connection `{id}`; the connections and routes that use a certificate: {}",
            with_cert.join(", ")
        ));
    }
    Ok(list.clone())
}

/// The rebind of `POST /rebind`: each connection asked for (default: each that uses a
/// certificate) to its lcs.toml reference, all or nothing. Every target is validated, the
/// unchanged ones too (a bound certificate whose key no longer opens is refused with the
/// reason, not reported `unchanged`). A connection that did not start is reported
/// `not_started` (a restart is the only help) and does not hold back the others. On a refusal
/// every connection asked for is reported: the refused with their reasons, the others `held`.
/// `Err` is bad input (a 400), see `asked` in this module.
pub fn rebind_to_configured(
    handle: &ServiceHandle,
    config: &Config,
    request: &RebindRequest,
) -> Result<(StatusCode, RebindResponse), String> {
    let mut targets = Vec::new();
    let mut not_started = Vec::new();
    for id in asked(handle, request)? {
        if let Some(f) = handle.failed.iter().find(|f| f.id == id) {
            not_started.push(RebindResult {
                message: Some(format!(
                    "`{id}` did not start ({}): nothing runs to swap; restart serve",
                    f.cause
                )),
                connection: id,
                status: RebindStatus::NotStarted,
                from: None,
                to: None,
                reason: Some(f.cause.reason().into()),
            });
            continue;
        }
        let Some((_, to)) = config.cert_refs().find(|(c, _)| *c == id) else {
            return Err(format!(
                "`{id}` has no certificate in lcs.toml now (edited since serve started?)"
            ));
        };
        targets.push(RebindTarget {
            connection: id,
            to: to.clone(),
        });
    }
    let (code, mut results) = match handle.rebind(&targets) {
        Ok(done) => (StatusCode::OK, done.into_iter().map(rebound).collect()),
        Err(refusals) => (StatusCode::CONFLICT, held(&targets, &refusals)),
    };
    results.extend(not_started);
    results.sort_by(|a, b| a.connection.cmp(&b.connection));
    Ok((code, RebindResponse { results }))
}

fn rebound(r: super::service::Rebound) -> RebindResult {
    RebindResult {
        connection: r.connection,
        status: if r.changed {
            RebindStatus::Rebound
        } else {
            RebindStatus::Unchanged
        },
        from: Some(serial(&r.from)),
        to: Some(serial(&r.to)),
        reason: None,
        message: None,
    }
}

/// Each target of a refused rebind: refused with its reason, or held back.
fn held(targets: &[RebindTarget], refusals: &[super::service::RebindRefusal]) -> Vec<RebindResult> {
    targets
        .iter()
        .map(|t| match refusals.iter().find(|r| r.connection() == t.connection) {
            Some(r) => RebindResult {
                connection: t.connection.clone(),
                status: RebindStatus::Refused,
                from: None,
                to: Some(serial(&t.to)),
                reason: Some(r.reason().into()),
                message: Some(r.to_string()),
            },
            None => RebindResult {
                connection: t.connection.clone(),
                status: RebindStatus::Held,
                from: None,
                to: Some(serial(&t.to)),
                reason: None,
                message: Some(
                    "valid, but not swapped: another connection was refused and a rebind is all or nothing"
                        .into(),
                ),
            },
        })
        .collect()
}

fn serial(r: &CertRef) -> SerialOnly {
    SerialOnly {
        serial: r.serial.to_string(),
    }
}
