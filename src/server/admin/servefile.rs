//! `DIR/serve.json`: how other commands find a running `serve`.
//!
//! `serve` writes it (atomically) once its admin endpoint listens and removes it on exit. A
//! crash leaves it behind, so a reader checks that the process is alive (`/proc/PID`) and that
//! the admin address accepts a connection before trusting it, and reports a stale file as such.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// The file's name inside the deployment folder.
pub const SERVE_FILE: &str = "serve.json";

/// What `serve.json` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServeFile {
    /// The `serve` process.
    pub pid: u32,
    /// Its admin endpoint (always loopback).
    pub admin: SocketAddr,
    /// When it started.
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
}

/// `serve.json` could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeFileError {
    /// The file names a server that is not running (it crashed, or was killed with SIGKILL).
    #[error("{} is stale: process {pid} {why}; remove the file if no `lcs-sim serve` runs on this folder", .path.display())]
    Stale {
        /// The file.
        path: PathBuf,
        /// The pid it names.
        pid: u32,
        /// What showed it: the process is gone, or its admin address refuses connections.
        why: &'static str,
    },
    /// The file is not what `serve` writes.
    #[error("{}: not a serve file: {message}", .path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// It could not be read or written.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

impl ServeFile {
    /// Where the file lives in deployment folder `dir`.
    pub fn path(dir: &Path) -> PathBuf {
        dir.join(SERVE_FILE)
    }

    /// The running server of `dir`: `None` when there is no file, an error when the file is
    /// stale or malformed.
    pub fn read(dir: &Path) -> Result<Option<ServeFile>, ServeFileError> {
        let path = Self::path(dir);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(ServeFileError::Io { path, source }),
        };
        let file: ServeFile =
            serde_json::from_str(&text).map_err(|e| ServeFileError::Malformed {
                path: path.clone(),
                message: e.to_string(),
            })?;
        let stale = |why| ServeFileError::Stale {
            path: path.clone(),
            pid: file.pid,
            why,
        };
        if !Path::new(&format!("/proc/{}", file.pid)).exists() {
            return Err(stale("is not running"));
        }
        if std::net::TcpStream::connect_timeout(&file.admin, Duration::from_secs(1)).is_err() {
            return Err(stale("does not answer on its admin address"));
        }
        Ok(Some(file))
    }

    /// Writes the file atomically.
    pub fn write(&self, dir: &Path) -> Result<(), ServeFileError> {
        let path = Self::path(dir);
        let body = serde_json::to_vec_pretty(self).expect("a serve file serialises");
        crate::atomic::atomic_write(&path, &body, None)
            .map_err(|source| ServeFileError::Io { path, source })
    }

    /// Removes the file if it is this process's (a second `serve` that failed to start must
    /// not remove the first one's).
    pub fn remove_own(dir: &Path) {
        let path = Self::path(dir);
        let own = std::fs::read_to_string(&path)
            .ok()
            .and_then(|t| serde_json::from_str::<ServeFile>(&t).ok())
            .is_some_and(|f| f.pid == std::process::id());
        if own {
            let _ = std::fs::remove_file(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_file_is_none_a_dead_pid_is_stale_and_garbage_is_malformed() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(ServeFile::read(tmp.path()).unwrap().is_none());
        let dead = ServeFile {
            pid: u32::MAX - 1,
            admin: "127.0.0.1:9".parse().unwrap(),
            started_at: crate::clock::SIM_EPOCH,
        };
        dead.write(tmp.path()).unwrap();
        let err = ServeFile::read(tmp.path()).unwrap_err();
        assert!(
            matches!(
                err,
                ServeFileError::Stale {
                    why: "is not running",
                    ..
                }
            ),
            "{err}"
        );
        // Our own pid is alive, but nothing answers on port 9.
        let unanswered = ServeFile {
            pid: std::process::id(),
            ..dead
        };
        unanswered.write(tmp.path()).unwrap();
        let err = ServeFile::read(tmp.path()).unwrap_err();
        assert!(matches!(err, ServeFileError::Stale { .. }), "{err}");
        ServeFile::remove_own(tmp.path());
        assert!(!ServeFile::path(tmp.path()).exists());
        std::fs::write(ServeFile::path(tmp.path()), "{").unwrap();
        assert!(matches!(
            ServeFile::read(tmp.path()),
            Err(ServeFileError::Malformed { .. })
        ));
    }
}
