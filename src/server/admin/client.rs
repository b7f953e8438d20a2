//! The admin endpoint's client: `lcs-sim fix DIR --live` and the load generator's
//! `--at T=fix-live` fault.
//!
//! [`fix_live`] finds the running server through `serve.json` *first* (no server: nothing is
//! changed), applies today's fix on disk (grant read, rebind in lcs.toml, under the store lock,
//! as `lcs-sim fix` does), then asks the server to swap its credentials live with
//! `POST /rebind`. HTTP is hyper's client over a loopback TCP stream; every request names the
//! endpoint in `Host` and says it is JSON, and a state-changing one carries the run's token from
//! `serve.json` (see [`super::guard`]).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;

use crate::deployment::{Deployment, DeploymentError, FixOnDiskError};
use crate::fix::FixPlan;

use super::api::{RebindRequest, RebindResponse, RebindStatus};
use super::servefile::{ServeFile, ServeFileError};

/// What `fix --live` did.
#[derive(Debug, Clone)]
pub struct LiveFixOutcome {
    /// The fix applied on disk (empty: lcs.toml already named usable certificates).
    pub plan: FixPlan,
    /// The running server's answer to `POST /rebind`.
    pub response: RebindResponse,
    /// Whether the server accepted (200) or refused (409) the swap.
    pub accepted: bool,
}

impl LiveFixOutcome {
    /// Whether the server refused any connection.
    pub fn refused_any(&self) -> bool {
        !self.accepted
            || self
                .response
                .results
                .iter()
                .any(|r| r.status == RebindStatus::Refused)
    }

    /// The connections that did not start in the running server (only a restart helps).
    pub fn not_started(&self) -> Vec<&str> {
        self.response
            .results
            .iter()
            .filter(|r| r.status == RebindStatus::NotStarted)
            .map(|r| r.connection.as_str())
            .collect()
    }

    /// Whether the server swapped any connection to another certificate.
    pub fn rebound_any(&self) -> bool {
        self.response
            .results
            .iter()
            .any(|r| r.status == RebindStatus::Rebound)
    }
}

/// Why `fix --live` could not be done.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LiveFixError {
    /// No `serve` runs on the folder; nothing was changed.
    #[error("no `lcs-sim serve` runs on {} (no {}); start it, or run `lcs-sim fix {}` and restart", .dir.display(), super::SERVE_FILE, .dir.display())]
    NoServer {
        /// The deployment folder.
        dir: PathBuf,
    },
    /// `serve.json` is stale or unreadable; nothing was changed.
    #[error(transparent)]
    ServeFile(#[from] ServeFileError),
    /// The fix on disk failed; the server was not asked.
    #[error(transparent)]
    Fix(#[from] FixOnDiskError),
    /// The admin endpoint accepted the connection but did not answer in time (the process is
    /// stopped, e.g. `kill -STOP`, or hung).
    #[error(
        "the server at {admin} did not answer within {} s (is it stopped? `kill -CONT` resumes it); lcs.toml is fixed: restarting `serve` completes the fix",
        .timeout.as_secs()
    )]
    NoAnswer {
        /// Its address.
        admin: SocketAddr,
        /// How long it was given.
        timeout: Duration,
    },
    /// The admin endpoint could not be reached or answered nonsense (the fix on disk is done:
    /// a restart of `serve` completes it).
    #[error(
        "the admin endpoint at {admin}: {message} (lcs.toml is fixed: restarting `serve` completes the fix)"
    )]
    Admin {
        /// Its address.
        admin: SocketAddr,
        /// What went wrong.
        message: String,
    },
}

/// Fixes `dir` for `connections` (every connection when empty) and swaps the running server's
/// credentials live. See the module docs.
pub async fn fix_live(dir: &Path, connections: &[String]) -> Result<LiveFixOutcome, LiveFixError> {
    fix_live_to(dir, connections, &crate::fix::Target::Successor).await
}

/// [`fix_live`] towards `target` (`fix --live --to THUMBPRINT`).
pub async fn fix_live_to(
    dir: &Path,
    connections: &[String],
    target: &crate::fix::Target,
) -> Result<LiveFixOutcome, LiveFixError> {
    // Files, a lock and a probe connection: off the async worker (the load generator calls
    // this from inside its runtime).
    let (dir_owned, scope, target) = (dir.to_path_buf(), connections.to_vec(), target.clone());
    let (serve, plan) = tokio::task::spawn_blocking(move || {
        let dir = dir_owned.as_path();
        let serve =
            ServeFile::read(dir)?.ok_or_else(|| LiveFixError::NoServer { dir: dir.into() })?;
        let d = Deployment::open(dir).map_err(FixOnDiskError::from)?;
        let plan = d.fix_with(&scope, &target, false)?;
        Ok::<_, LiveFixError>((serve, plan))
    })
    .await
    .map_err(|e| {
        LiveFixError::Fix(FixOnDiskError::Deployment(DeploymentError::Io {
            path: dir.into(),
            source: std::io::Error::other(e.to_string()),
        }))
    })??;
    let request = RebindRequest {
        connections: (!connections.is_empty()).then(|| connections.to_vec()),
    };
    let (status, response) = post_rebind(&serve, &request).await?;
    Ok(LiveFixOutcome {
        plan,
        response,
        accepted: status == StatusCode::OK,
    })
}

/// `POST /rebind` to the admin endpoint of `server`.
pub async fn post_rebind(
    server: &ServeFile,
    request: &RebindRequest,
) -> Result<(StatusCode, RebindResponse), LiveFixError> {
    let admin = server.admin;
    let body = serde_json::to_vec(request).expect("a rebind request serialises");
    let (status, bytes) = call(server, Method::POST, "/rebind", body).await?;
    if status != StatusCode::OK && status != StatusCode::CONFLICT {
        return Err(admin_error(
            admin,
            format!(
                "POST /rebind answered {status}: {}",
                String::from_utf8_lossy(&bytes)
            ),
        ));
    }
    let response = serde_json::from_slice(&bytes)
        .map_err(|e| admin_error(admin, format!("POST /rebind answered unreadable JSON: {e}")))?;
    Ok((status, response))
}

fn admin_error(admin: SocketAddr, message: String) -> LiveFixError {
    LiveFixError::Admin { admin, message }
}

/// How long a request to the admin endpoint may take: it is on loopback and answers in
/// milliseconds; a server that does not answer in this time is stopped or hung.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// One HTTP/1.1 request to the admin endpoint of `server`; the status and the whole body, or
/// [`LiveFixError::NoAnswer`] after [`TIMEOUT`].
pub async fn call(
    server: &ServeFile,
    method: Method,
    path: &str,
    body: Vec<u8>,
) -> Result<(StatusCode, Bytes), LiveFixError> {
    call_within(TIMEOUT, server, method, path, body).await
}

/// [`call`] with another timeout.
pub async fn call_within(
    timeout: Duration,
    server: &ServeFile,
    method: Method,
    path: &str,
    body: Vec<u8>,
) -> Result<(StatusCode, Bytes), LiveFixError> {
    let admin = server.admin;
    tokio::time::timeout(timeout, call_unbounded(server, method, path, body))
        .await
        .unwrap_or(Err(LiveFixError::NoAnswer { admin, timeout }))
}

async fn call_unbounded(
    server: &ServeFile,
    method: Method,
    path: &str,
    body: Vec<u8>,
) -> Result<(StatusCode, Bytes), LiveFixError> {
    let admin = server.admin;
    let failed = |m: String| admin_error(admin, m);
    let stream = tokio::net::TcpStream::connect(admin)
        .await
        .map_err(|e| failed(format!("cannot connect: {e}")))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| failed(format!("HTTP handshake: {e}")))?;
    let driver = tokio::spawn(conn);
    let mut request = Request::builder()
        .uri(path)
        .header(hyper::header::HOST, admin.to_string())
        .header(hyper::header::CONTENT_TYPE, "application/json");
    if method != Method::GET && method != Method::HEAD {
        let bearer = format!("Bearer {}", server.token.as_str());
        request = request.header(hyper::header::AUTHORIZATION, bearer);
    }
    let request = request
        .method(method)
        .body(Full::new(Bytes::from(body)))
        .expect("a valid request");
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| failed(format!("request failed: {e}")))?;
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .map_err(|e| failed(format!("reading the answer: {e}")))?
        .to_bytes();
    driver.abort();
    Ok((status, bytes))
}

impl From<DeploymentError> for LiveFixError {
    fn from(e: DeploymentError) -> Self {
        LiveFixError::Fix(FixOnDiskError::Deployment(e))
    }
}
