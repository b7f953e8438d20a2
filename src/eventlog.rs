//! The deployment's application event log, as an administrator reads it in Event Viewer.
//!
//! KB836410 is diagnosed from the application log: a certificate replaced by auto-enrollment,
//! then, at restart, events 14347, 14336 and 14352. The log is a JSON-lines file
//! (`events.jsonl`) so that several processes can add to it: each entry is appended as a whole
//! line (one write under an exclusive lock, synced, truncated back if the write fails), so a
//! kill or a full disk never leaves a torn line that breaks later reads. A reader that finds a
//! damaged line anyway (a torn tail, an event glued to a fragment, a line edited by hand)
//! reports it and reads the rest. The simulation keeps the same entries in memory.
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
    /// A line is damaged (returned by the strict [`EventLog::read`] only).
    #[error("{0}")]
    Damaged(DamagedLine),
}

/// Why a line of the log is not an event.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Damage {
    /// The file ends in a line without its newline: a writer died (or the disk filled) mid-line.
    TornTail,
    /// A torn line with a complete event glued after it (a log written before appends started
    /// with a newline after a torn tail); the glued event is recovered and kept.
    Glued,
    /// A complete line that does not parse as an event (edited by hand, or damaged on disk).
    NotAnEvent {
        /// The parser's message.
        detail: String,
    },
}

/// A line of the log that readers skip, and say so.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}:{line}: {}", .path.display(), describe(.why))]
pub struct DamagedLine {
    /// The file.
    pub path: PathBuf,
    /// 1-based line number.
    pub line: usize,
    /// What is wrong with it.
    pub why: Damage,
}

fn describe(why: &Damage) -> String {
    match why {
        Damage::TornTail => "the last line is incomplete (a write was cut off)".into(),
        Damage::Glued => {
            "a cut-off line with an event glued after it; the fragment is skipped, the event kept"
                .into()
        }
        Damage::NotAnEvent { detail } => format!("not an event ({detail})"),
    }
}

/// What a read found: every event that could be read, and the lines it skipped.
#[derive(Debug, Default)]
pub struct LogContents {
    /// Events, oldest first.
    pub events: Vec<Event>,
    /// Skipped lines, in file order.
    pub damaged: Vec<DamagedLine>,
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

    /// Appends `event` as one whole line: under an exclusive lock on the file, one write of
    /// the line and its newline (preceded by a newline when the file ends in a torn line, so
    /// the new event never glues onto it), then a sync. A failed write or sync truncates the
    /// file back to its old length, so a full disk leaves no torn line behind.
    pub fn append(&self, event: &Event) -> Result<(), EventLogError> {
        self.append_all(std::slice::from_ref(event))
    }

    /// Appends `events` (in order) as whole lines in one write, as [`append`](Self::append).
    pub fn append_all(&self, events: &[Event]) -> Result<(), EventLogError> {
        let io = |source| EventLogError::Io {
            path: self.path.clone(),
            source,
        };
        let mut file = fs::OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&self.path)
            .map_err(io)?;
        file.lock().map_err(io)?;
        let old_len = file.metadata().map_err(io)?.len();
        let mut buf = Vec::new();
        if old_len > 0 && !ends_in_newline(&file, old_len).map_err(io)? {
            buf.push(b'\n');
        }
        for event in events {
            serde_json::to_writer(&mut buf, event).expect("events serialise");
            buf.push(b'\n');
        }
        let written = file.write_all(&buf).and_then(|()| file.sync_data());
        if let Err(source) = written {
            // Best effort: the truncation frees the torn bytes; its own failure is secondary.
            let _ = file.set_len(old_len).and_then(|()| file.sync_data());
            return Err(io(source));
        }
        Ok(())
    }

    /// Every entry, oldest first; a damaged line is an error. A missing file is an empty log.
    /// Readers that report to a person use [`read_all`](Self::read_all) and carry on.
    pub fn read(&self) -> Result<Vec<Event>, EventLogError> {
        let mut contents = self.read_all()?;
        match contents.damaged.is_empty() {
            true => Ok(contents.events),
            false => Err(EventLogError::Damaged(contents.damaged.remove(0))),
        }
    }

    /// Every event that can be read, and the damaged lines set aside (torn tail, glued line,
    /// not an event), so one damaged line never hides the rest of the log. Reads under a
    /// shared lock, so a line still being appended is not mistaken for a torn one.
    pub fn read_all(&self) -> Result<LogContents, EventLogError> {
        let io = |source| EventLogError::Io {
            path: self.path.clone(),
            source,
        };
        let mut file = match fs::File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(LogContents::default());
            }
            Err(source) => return Err(io(source)),
        };
        file.lock_shared().map_err(io)?;
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut file, &mut bytes).map_err(io)?;
        Ok(self.parse(&bytes))
    }

    fn parse(&self, bytes: &[u8]) -> LogContents {
        let mut out = LogContents::default();
        let damaged = |line, why| DamagedLine {
            path: self.path.clone(),
            line,
            why,
        };
        let text = String::from_utf8_lossy(bytes);
        let torn = !text.is_empty() && !text.ends_with('\n');
        let lines: Vec<&str> = text.lines().collect();
        for (i, l) in lines.iter().enumerate() {
            if l.trim().is_empty() {
                continue;
            }
            if torn && i + 1 == lines.len() {
                out.damaged.push(damaged(i + 1, Damage::TornTail));
                continue;
            }
            match serde_json::from_str(l) {
                Ok(e) => out.events.push(e),
                Err(e) => match glued_event(l) {
                    Some(e) => {
                        out.damaged.push(damaged(i + 1, Damage::Glued));
                        out.events.push(e);
                    }
                    None => out.damaged.push(damaged(
                        i + 1,
                        Damage::NotAnEvent {
                            detail: e.to_string(),
                        },
                    )),
                },
            }
        }
        out
    }
}

/// Whether the byte before `len` is a newline.
fn ends_in_newline(file: &fs::File, len: u64) -> std::io::Result<bool> {
    let mut last = [0u8; 1];
    std::os::unix::fs::FileExt::read_exact_at(file, &mut last, len - 1)?;
    Ok(last[0] == b'\n')
}

/// The complete event at the end of a line that starts with a torn fragment.
fn glued_event(line: &str) -> Option<Event> {
    line.match_indices("{\"id\":")
        .filter(|(at, _)| *at > 0)
        .find_map(|(at, _)| serde_json::from_str(&line[at..]).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn event(id: u32) -> Event {
        Event::new(
            id,
            datetime!(2026-01-01 0:00 UTC),
            Level::Information,
            "X",
            "m",
        )
        .with("old", "AB")
    }

    fn log() -> (tempfile::TempDir, EventLog) {
        let dir = tempfile::tempdir().unwrap();
        let log = EventLog::at(dir.path().join("events.jsonl"));
        (dir, log)
    }

    fn tear(log: &EventLog) {
        fs::OpenOptions::new()
            .append(true)
            .open(log.path())
            .unwrap()
            .write_all(b"{\"id\":14")
            .unwrap();
    }

    #[test]
    fn torn_tail_is_reported_and_the_next_append_starts_a_new_line() {
        let (_dir, log) = log();
        assert!(log.read().unwrap().is_empty());
        log.append(&event(1001)).unwrap();
        tear(&log);
        let c = log.read_all().unwrap();
        assert_eq!(c.events, vec![event(1001)]);
        assert_eq!(c.damaged.len(), 1);
        assert_eq!(
            (c.damaged[0].line, &c.damaged[0].why),
            (2, &Damage::TornTail)
        );
        log.append(&event(14352)).unwrap();
        let c = log.read_all().unwrap();
        assert_eq!(c.events, vec![event(1001), event(14352)]);
        assert_eq!(c.damaged.len(), 1, "{:?}", c.damaged);
        assert!(matches!(c.damaged[0].why, Damage::NotAnEvent { .. }));
        assert_eq!(c.damaged[0].line, 2);
    }

    #[test]
    fn glued_line_keeps_its_event_and_the_rest_of_the_log() {
        let (_dir, log) = log();
        let line = |id| serde_json::to_string(&event(id)).unwrap();
        let text = format!("{}\n{{\"id\":14{}\n{}\n", line(1), line(2), line(3));
        fs::write(log.path(), text).unwrap();
        let c = log.read_all().unwrap();
        assert_eq!(c.events, vec![event(1), event(2), event(3)]);
        assert_eq!(c.damaged.len(), 1);
        assert_eq!((c.damaged[0].line, &c.damaged[0].why), (2, &Damage::Glued));
        assert!(log.read().is_err(), "the strict reader names the damage");
    }

    #[test]
    fn corrupt_line_is_named_and_skipped() {
        let (_dir, log) = log();
        let e = serde_json::to_string(&event(7)).unwrap();
        fs::write(log.path(), format!("garbage\n{e}\n")).unwrap();
        let msg = log.read().unwrap_err().to_string();
        assert!(msg.contains("events.jsonl:1:"), "{msg}");
        assert_eq!(log.read_all().unwrap().events, vec![event(7)]);
    }

    #[test]
    fn a_failed_write_leaves_nothing_behind() {
        // /dev/full accepts the open and fails every write with ENOSPC: the real failure path.
        let log = EventLog::at("/dev/full");
        if !Path::new("/dev/full").exists() {
            return;
        }
        match log.append(&event(1)) {
            Err(EventLogError::Io { source, .. }) => {
                assert_eq!(source.raw_os_error(), Some(28), "{source}");
            }
            other => panic!("expected ENOSPC, got {other:?}"),
        }
    }
}
