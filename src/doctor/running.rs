//! Finding a running server and asking it what it holds.
//!
//! While `serve` runs it keeps `DIR/serve.json` and answers `GET /certs` on its loopback admin
//! endpoint with, per connection and route, the certificate it has bound and whether its key
//! opens now. The file and the JSON bodies are the server's own types
//! ([`crate::server::admin`]), so the doctor and the server cannot drift apart. A crash leaves
//! the file behind, so a file alone proves nothing: only an answer does. Anything short of one
//! (no file, a stale or unreadable file, a refused or timed-out request) means "no server
//! running", which is a normal state, not an error.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use hyper::Method;

use crate::server::admin::ServeFile;
use crate::server::admin::api::{CertsEntry, CertsReport, ConnectionState};
use crate::server::admin::client;

/// What a running server holds.
#[derive(Debug, Clone)]
pub struct RunningCerts {
    /// The admin endpoint that answered.
    pub admin: SocketAddr,
    /// The server's process id.
    pub pid: u32,
    /// Per connection and route, as `GET /certs` reports them.
    pub connections: Vec<CertsEntry>,
}

impl RunningCerts {
    /// Whether some connection or route did not start in it (it was restarted after a
    /// renewal, say): a live swap cannot start it, only a restart can.
    pub fn any_not_started(&self) -> bool {
        self.connections
            .iter()
            .any(|c| c.state == ConnectionState::NotStarted)
    }
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
    /// A server runs (its file is fresh: the process lives and its admin port accepts
    /// connections) but did not answer `GET /certs` in time: stopped (`kill -STOP`) or hung.
    Unresponsive {
        /// Its process id.
        pid: u32,
        /// Its admin endpoint.
        admin: SocketAddr,
    },
    /// A server answered.
    Running(RunningCerts),
}

/// How long to wait for `GET /certs`: the endpoint is on loopback, so this is generous.
pub const TIMEOUT: Duration = Duration::from_secs(2);

/// Finds the server of the deployment in `dir` through `serve.json` and asks it for `/certs`.
pub async fn discover(dir: &Path) -> Server {
    // serve.json and a probe connection: off the async worker.
    let owned = dir.to_path_buf();
    let read = tokio::task::spawn_blocking(move || ServeFile::read(&owned))
        .await
        .unwrap_or_else(|e| {
            Err(crate::server::admin::ServeFileError::Io {
                path: dir.into(),
                source: std::io::Error::other(e.to_string()),
            })
        });
    let file = match read {
        Ok(None) => return Server::NotRunning,
        Ok(Some(file)) => file,
        Err(e) => {
            return Server::Stale {
                reason: e.to_string(),
            };
        }
    };
    let answer = client::call_within(TIMEOUT, &file, Method::GET, "/certs", Vec::new()).await;
    let stale = |why: String| Server::Stale {
        reason: format!("pid {} on {}: {why}", file.pid, file.admin),
    };
    let (status, body) = match answer {
        Ok(answer) => answer,
        Err(client::LiveFixError::NoAnswer { .. }) => {
            return Server::Unresponsive {
                pid: file.pid,
                admin: file.admin,
            };
        }
        Err(e) => return stale(e.to_string()),
    };
    if !status.is_success() {
        return stale(format!("GET /certs answered {status}"));
    }
    match serde_json::from_slice::<CertsReport>(&body) {
        Ok(report) => Server::Running(RunningCerts {
            admin: file.admin,
            pid: file.pid,
            connections: report.connections,
        }),
        Err(e) => stale(format!(
            "GET /certs answered JSON the doctor cannot read: {e}"
        )),
    }
}
