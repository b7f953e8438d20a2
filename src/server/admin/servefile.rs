//! `DIR/serve.json`: how other commands find a running `serve`.
//!
//! `serve` writes it (atomically, created 0600: it holds the run's admin [`Token`]) once its
//! admin endpoint listens and removes it on exit. A
//! crash leaves it behind, so a reader checks that the process is alive (`/proc/PID`) and that
//! the admin address accepts a connection before trusting it, and reports a stale file as such.
//! The file names the deployment's canonical path: a folder copied with `cp -r` while `serve`
//! ran carries the original's file, and must not send its `fix --live` to the original server.
//!
//! Two `serve` processes started at the same moment would both see no file; so `serve` first
//! takes an exclusive lock on `DIR/serve.lock` ([`ServeLock`], `flock` through std's
//! `File::try_lock`) and holds it for its lifetime, and writes and removes `serve.json` only
//! under it. The OS drops the lock when the process dies, so a crash leaves no stale lock.

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::token::Token;

/// The file's name inside the deployment folder.
pub const SERVE_FILE: &str = "serve.json";

/// The lock file's name inside the deployment folder.
pub const SERVE_LOCK: &str = "serve.lock";

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
    /// The deployment folder it serves, canonical (a copied folder's file names the original).
    pub deployment: PathBuf,
    /// The bearer token its state-changing admin requests need.
    pub token: Token,
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
    /// The file names another folder: this one was copied from it while `serve` ran there.
    #[error("{} belongs to the server of {} (this folder is a copy of it); remove the file: no `lcs-sim serve` runs on this folder", .path.display(), .deployment.display())]
    OtherFolder {
        /// The file.
        path: PathBuf,
        /// The folder the file names.
        deployment: PathBuf,
    },
    /// Another `serve` holds the folder's lock.
    #[error("another `lcs-sim serve` runs on {} ({}); stop it first", .dir.display(), .who)]
    Locked {
        /// The deployment folder.
        dir: PathBuf,
        /// What its serve.json says about it (pid, admin, start time), or that it has not
        /// written one yet.
        who: String,
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
        let here = dir.canonicalize().map_err(|source| ServeFileError::Io {
            path: dir.into(),
            source,
        })?;
        if file.deployment != here {
            return Err(ServeFileError::OtherFolder {
                path,
                deployment: file.deployment,
            });
        }
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

    /// Writes the file atomically, mode 0600 from its creation (the token is a secret).
    pub fn write(&self, dir: &Path) -> Result<(), ServeFileError> {
        let path = Self::path(dir);
        let body = serde_json::to_vec_pretty(self).expect("a serve file serialises");
        crate::atomic::atomic_write(&path, &body, Some(0o600))
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

/// The exclusive lock one `serve` holds on its deployment folder for its lifetime; dropped (or
/// the process gone), the lock is free again.
#[derive(Debug)]
pub struct ServeLock {
    _file: File,
}

impl ServeLock {
    /// Takes the lock of `dir` without waiting: [`ServeFileError::Locked`] when another `serve`
    /// holds it, naming that server from its `serve.json` when it has written one.
    pub fn acquire(dir: &Path) -> Result<ServeLock, ServeFileError> {
        let path = dir.join(SERVE_LOCK);
        let io = |source| ServeFileError::Io {
            path: path.clone(),
            source,
        };
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => Ok(ServeLock { _file: file }),
            Err(std::fs::TryLockError::WouldBlock) => Err(ServeFileError::Locked {
                dir: dir.into(),
                who: Self::holder(dir),
            }),
            Err(std::fs::TryLockError::Error(e)) => Err(io(e)),
        }
    }

    fn holder(dir: &Path) -> String {
        let file = std::fs::read_to_string(ServeFile::path(dir))
            .ok()
            .and_then(|t| serde_json::from_str::<ServeFile>(&t).ok());
        match file {
            Some(f) => format!(
                "pid {}, admin http://{}, since {}",
                f.pid,
                f.admin,
                f.started_at
                    .format(&time::format_description::well_known::Rfc3339)
                    .unwrap_or_else(|_| f.started_at.to_string())
            ),
            None => format!("it holds {SERVE_LOCK} and is starting"),
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
            deployment: tmp.path().canonicalize().unwrap(),
            token: Token::generate(),
        };
        dead.write(tmp.path()).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let meta = std::fs::metadata(ServeFile::path(tmp.path())).unwrap();
            assert_eq!(
                meta.permissions().mode() & 0o777,
                0o600,
                "the token is private"
            );
        }
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
            ..dead.clone()
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
        let elsewhere = ServeFile {
            deployment: "/nonexistent/original".into(),
            ..unanswered
        };
        elsewhere.write(tmp.path()).unwrap();
        assert!(matches!(
            ServeFile::read(tmp.path()),
            Err(ServeFileError::OtherFolder { .. })
        ));
        std::fs::write(ServeFile::path(tmp.path()), "{").unwrap();
        assert!(matches!(
            ServeFile::read(tmp.path()),
            Err(ServeFileError::Malformed { .. })
        ));
    }
}
