//! Finding a running server and asking it what it holds.
//!
//! While `serve` runs it keeps `DIR/serve.json` (`{"pid", "admin", "started_at"}`) and answers
//! `GET /certs` on its loopback admin endpoint with, per connection and route, the certificate it
//! has bound and whether its key opens now. A server that crashed leaves the file behind, so a
//! file alone proves nothing: only an answer does. Anything short of one (no file, an unreadable
//! file, a refused or timed-out connection) means "no server running", which is a normal state,
//! not an error. The request is plain HTTP/1.1 over loopback with hyper's client, one connection,
//! bounded by a timeout.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde::Deserialize;

use crate::pki::{Serial, Thumbprint};

/// `DIR/serve.json`, as `serve` writes it.
#[derive(Debug, Clone, Deserialize)]
pub struct ServeFile {
    /// The server's process id.
    pub pid: u32,
    /// Its admin endpoint, `127.0.0.1:PORT`.
    pub admin: SocketAddr,
    /// When it started (RFC 3339).
    #[serde(default)]
    pub started_at: Option<String>,
}

/// The certificate a running connection holds.
#[derive(Debug, Clone, Deserialize)]
pub struct BoundCert {
    /// Serial number.
    pub serial: Serial,
    /// Issuer distinguished name.
    pub issuer: String,
    /// Thumbprint.
    pub thumbprint: Thumbprint,
}

/// One connection or route of a running server, from `GET /certs` (only the fields the doctor
/// reads; others are ignored).
#[derive(Debug, Clone, Deserialize)]
pub struct RunningConnection {
    /// The connection or route id, as in `lcs.toml`.
    pub id: String,
    /// Its state as the server reports it (e.g. listening, failed).
    #[serde(default)]
    pub state: Option<String>,
    /// The certificate it holds, if it started.
    #[serde(default)]
    pub bound: Option<BoundCert>,
    /// Whether the service principal can open that certificate's key now.
    #[serde(default)]
    pub key_opens: bool,
    /// Why not, as the server words it.
    #[serde(default)]
    pub key_error: Option<String>,
    /// Why it did not start (`state: not_started`), as a stable name.
    #[serde(default)]
    pub start_error: Option<String>,
}

/// What a running server holds.
#[derive(Debug, Clone)]
pub struct RunningCerts {
    /// The admin endpoint that answered.
    pub admin: SocketAddr,
    /// The server's process id.
    pub pid: u32,
    /// Per connection and route.
    pub connections: Vec<RunningConnection>,
}

#[derive(Deserialize)]
struct CertsBody {
    connections: Vec<RunningConnection>,
}

/// Whether a server runs for a deployment.
#[derive(Debug, Clone)]
pub enum Server {
    /// No `serve.json`: no server.
    NotRunning,
    /// A `serve.json` that no server answers for: treated as no server.
    Stale {
        /// Why it does not count.
        reason: String,
    },
    /// A server answered.
    Running(RunningCerts),
}

/// How long to wait for the admin endpoint: it is on loopback, so a second is generous.
pub const TIMEOUT: Duration = Duration::from_secs(2);

/// Finds the server of the deployment in `dir` through `serve.json` and asks it for `/certs`.
pub async fn discover(dir: &Path) -> Server {
    let path = dir.join("serve.json");
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Server::NotRunning,
        Err(e) => {
            return Server::Stale {
                reason: format!("{}: {e}", path.display()),
            };
        }
    };
    let file: ServeFile = match serde_json::from_str(&text) {
        Ok(f) => f,
        Err(e) => {
            return Server::Stale {
                reason: format!("{} is not a serve file ({e})", path.display()),
            };
        }
    };
    if !file.admin.ip().is_loopback() {
        return Server::Stale {
            reason: format!(
                "{} names a non-loopback admin address {}; the doctor only asks loopback",
                path.display(),
                file.admin
            ),
        };
    }
    match tokio::time::timeout(TIMEOUT, get_certs(file.admin)).await {
        Ok(Ok(connections)) => Server::Running(RunningCerts {
            admin: file.admin,
            pid: file.pid,
            connections,
        }),
        Ok(Err(reason)) => Server::Stale {
            reason: format!(
                "pid {} does not answer on {}: {reason}",
                file.pid, file.admin
            ),
        },
        Err(_) => Server::Stale {
            reason: format!(
                "pid {} did not answer on {} within {} s",
                file.pid,
                file.admin,
                TIMEOUT.as_secs()
            ),
        },
    }
}

/// `GET /certs` on `admin`.
pub async fn get_certs(admin: SocketAddr) -> Result<Vec<RunningConnection>, String> {
    let stream = tokio::net::TcpStream::connect(admin)
        .await
        .map_err(|e| e.to_string())?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    let driver = tokio::spawn(conn);
    let request = hyper::Request::get("/certs")
        .header(hyper::header::HOST, admin.to_string())
        .header(hyper::header::ACCEPT, "application/json")
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    driver.abort();
    if !status.is_success() {
        return Err(format!("GET /certs answered {status}"));
    }
    let parsed: CertsBody = serde_json::from_slice(&body)
        .map_err(|e| format!("GET /certs answered JSON the doctor cannot read: {e}"))?;
    Ok(parsed.connections)
}
