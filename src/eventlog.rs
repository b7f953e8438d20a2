//! The deployment's application event log, as an administrator reads it in Event Viewer.
//!
//! KB836410 is diagnosed from the application log: a certificate replaced by auto-enrollment,
//! then, at restart, events 14347, 14336 and 14352. The log is a JSON-lines file
//! (`events.jsonl`) so that several processes can add to it: each entry is appended with a
//! single `write` on a file opened for appending, which the OS never interleaves with another
//! writer's, and a reader ignores a last line still being written. The simulation keeps the same
//! entries in memory.
//!
//! The original texts of the LCS events are not public; ours are emulated, and say so.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// Event IDs this emulation writes. The README has the table.
pub mod ids {
    /// A certificate was replaced by auto-enrollment renewal (Windows'
    /// CertificateServicesClient-Lifecycle-System event 1001).
    pub const CERTIFICATE_REPLACED: u32 = 1001;
    /// The service started (lists the connections that listen and those that failed).
    pub const SERVICE_STARTED: u32 = 14300;
    /// The service stopped (with a summary of its counters).
    pub const SERVICE_STOPPED: u32 = 14301;
    /// A listening connection started.
    pub const LISTENER_STARTED: u32 = 14302;
    /// KB836410: the certificate configured for a connection could not be used (not found, or
    /// its private key could not be opened). Logged first at a failed start.
    pub const CERTIFICATE_UNAVAILABLE: u32 = 14352;
    /// KB836410: the TLS credentials of a connection could not be acquired
    /// (`SEC_E_UNKNOWN_CREDENTIALS`). Logged second.
    pub const CREDENTIALS_NOT_ACQUIRED: u32 = 14336;
    /// KB836410: a TLS or mutual-TLS listening connection did not start. Logged third, so
    /// Event Viewer, newest first, shows 14347, 14336, 14352 as the KB article lists them.
    pub const LISTENER_NOT_STARTED: u32 = 14347;
    /// TLS handshakes are failing on a connection (rate-limited, with a count).
    pub const HANDSHAKES_FAILING: u32 = 14360;
    /// An outgoing route connection could not be opened (rate-limited, with a count).
    pub const ROUTE_FAILING: u32 = 14361;
    /// Messages were answered 408 because no final response came before Timer F.
    pub const MESSAGES_TIMED_OUT: u32 = 14362;
    /// A connection was rebound to another certificate.
    pub const CONNECTION_REBOUND: u32 = 14370;
    /// A listening address could not be bound (port in use, permission).
    pub const BIND_FAILED: u32 = 14371;
    /// A live rebind was refused: a new certificate failed validation; nothing was swapped.
    pub const REBIND_REFUSED: u32 = 14372;
    /// Auto-rebind found a renewed certificate it cannot use (its key is unreadable: KB836410)
    /// and kept the current one; names the cause and the remedy.
    pub const AUTO_REBIND_REFUSED: u32 = 14373;
    /// A listener is at `max_connections`: new connections are closed before any handshake
    /// (rate-limited, with a count).
    pub const CONNECTION_LIMIT: u32 = 14363;
    /// A certificate bound at start is expired or not yet valid.
    pub const CERTIFICATE_OUT_OF_VALIDITY: u32 = 14353;
}

/// Where a running service writes its events: a file live, memory in the simulation.
pub trait EventSink: Send + Sync + std::fmt::Debug {
    /// Records `event`. Failing to log must not stop the service, so errors are reported
    /// through `tracing` and swallowed.
    fn record(&self, event: Event);
}

impl EventSink for EventLog {
    fn record(&self, event: Event) {
        if let Err(e) = self.append(&event) {
            tracing::error!("cannot write the event log: {e}");
        }
    }
}

/// Events kept in memory, for the simulation and tests.
#[derive(Debug, Default)]
pub struct MemoryLog(std::sync::Mutex<Vec<Event>>);

impl MemoryLog {
    /// Everything recorded so far.
    pub fn events(&self) -> Vec<Event> {
        self.0.lock().expect("log lock poisoned").clone()
    }
}

impl EventSink for MemoryLog {
    fn record(&self, event: Event) {
        self.0.lock().expect("log lock poisoned").push(event);
    }
}

/// Severity, as Event Viewer shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Normal operation.
    Information,
    /// Something degraded.
    Warning,
    /// Something failed.
    Error,
}

/// One entry of the application log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Event ID.
    pub id: u32,
    /// When it was logged.
    #[serde(with = "time::serde::rfc3339")]
    pub time: OffsetDateTime,
    /// Severity.
    pub level: Level,
    /// Event source, e.g. `LCS` or `CertificateServicesClient-Lifecycle-System`.
    pub source: String,
    /// The text.
    pub message: String,
    /// Structured details (connection, certificate reference, principal, error code, ...).
    #[serde(default)]
    pub details: serde_json::Map<String, serde_json::Value>,
}

impl Event {
    /// A new entry with no details.
    pub fn new(
        id: u32,
        time: OffsetDateTime,
        level: Level,
        source: &str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            id,
            time,
            level,
            source: source.into(),
            message: message.into(),
            details: serde_json::Map::new(),
        }
    }

    /// Adds a detail.
    pub fn with(mut self, key: &str, value: impl Into<serde_json::Value>) -> Self {
        self.details.insert(key.into(), value.into());
        self
    }
}

/// The event log could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EventLogError {
    /// The file could not be read or appended to.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A complete line is not an event.
    #[error("{}:{line}: not an event ({detail}); the log was edited by hand: remove or fix that line", .path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The parser's message.
        detail: String,
    },
}

/// An application log in a file.
#[derive(Debug, Clone)]
pub struct EventLog {
    path: PathBuf,
}

impl EventLog {
    /// The log at `path` (created on first append).
    pub fn at(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `event` as one line, in one write, and flushes it to disk.
    pub fn append(&self, event: &Event) -> Result<(), EventLogError> {
        let io = |source| EventLogError::Io {
            path: self.path.clone(),
            source,
        };
        let mut line = serde_json::to_vec(event).expect("events serialise");
        line.push(b'\n');
        let mut file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(io)?;
        file.write_all(&line).map_err(io)?;
        file.sync_data().map_err(io)
    }

    /// Every complete entry, oldest first. A missing file is an empty log.
    pub fn read(&self) -> Result<Vec<Event>, EventLogError> {
        let (events, mut bad) = self.read_lenient()?;
        match bad.is_empty() {
            true => Ok(events),
            false => Err(bad.remove(0)),
        }
    }

    /// Like [`read`](Self::read), but a line that is not an event is set aside (returned as
    /// [`EventLogError::Corrupt`]) instead of failing the whole read: for a reader that
    /// diagnoses (`doctor`) and must not give up on one damaged line.
    pub fn read_lenient(&self) -> Result<(Vec<Event>, Vec<EventLogError>), EventLogError> {
        let text = match fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok((Vec::new(), Vec::new()));
            }
            Err(source) => {
                return Err(EventLogError::Io {
                    path: self.path.clone(),
                    source,
                });
            }
        };
        let complete = match text.rfind('\n') {
            Some(end) => &text[..end],
            None => "",
        };
        let mut events = Vec::new();
        let mut bad = Vec::new();
        for (i, l) in complete.lines().enumerate() {
            if l.trim().is_empty() {
                continue;
            }
            match serde_json::from_str(l) {
                Ok(e) => events.push(e),
                Err(e) => bad.push(EventLogError::Corrupt {
                    path: self.path.clone(),
                    line: i + 1,
                    detail: e.to_string(),
                }),
            }
        }
        Ok((events, bad))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn append_then_read_ignores_partial_last_line() {
        let dir = tempfile::tempdir().unwrap();
        let log = EventLog::at(dir.path().join("events.jsonl"));
        assert!(log.read().unwrap().is_empty());
        let e = Event::new(
            1001,
            datetime!(2026-01-01 0:00 UTC),
            Level::Information,
            "X",
            "m",
        )
        .with("old", "AB");
        log.append(&e).unwrap();
        fs::OpenOptions::new()
            .append(true)
            .open(log.path())
            .unwrap()
            .write_all(b"{\"id\":14")
            .unwrap();
        assert_eq!(log.read().unwrap(), vec![e]);
    }

    #[test]
    fn corrupt_line_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let log = EventLog::at(dir.path().join("events.jsonl"));
        fs::write(log.path(), "garbage\n").unwrap();
        let msg = log.read().unwrap_err().to_string();
        assert!(msg.contains("events.jsonl:1:"), "{msg}");
    }
}
