//! The store's outbox: a change and its events commit together.
//!
//! A change to the store (a renewal, a grant, a fix) and its entry in the application log live
//! in two files, and a `store renew` killed between committing index.json and appending to
//! events.jsonl lost event 1001 (issue 15 §2: 3 of 50 kills). So a change's events are written
//! into index.json itself, in the same atomic replacement that commits the change; then they are
//! appended to the log and a second commit empties the outbox. A writer killed in between
//! leaves them in the index, and whoever opens the store next (the next writer, or a reader of
//! the log through [`DiskStore::deliver_events`](super::DiskStore::deliver_events)) appends
//! those the log does not hold yet. Each event carries a sequence number (its `store_seq`
//! detail) and is compared whole, so delivering twice never duplicates one; an event whose
//! change did not commit was never written anywhere.
//!
//! Delivered events land after whatever the log received in between (a running `serve`'s
//! events), with the time of their change.

use serde::{Deserialize, Serialize};

use crate::eventlog::{Event, EventLog, EventLogError};

/// The detail that numbers an event committed through the outbox.
pub const SEQ_DETAIL: &str = "store_seq";

/// An event committed with a change, not yet known to be in the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Pending {
    /// The event's number, also in its `store_seq` detail.
    pub seq: u64,
    /// The event, exactly as it is appended.
    pub event: Event,
}

/// The outbox as index.json keeps it.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Outbox {
    /// The last sequence number given out (kept after delivery, so numbers are never reused).
    pub last_seq: u64,
    /// Events committed and not yet known to be in the log, oldest first.
    pub pending: Vec<Pending>,
}

impl Outbox {
    /// Numbers `events` and adds them to the outbox.
    pub fn push(&mut self, events: Vec<Event>) {
        for event in events {
            self.last_seq += 1;
            let seq = self.last_seq;
            self.pending.push(Pending {
                seq,
                event: event.with(SEQ_DETAIL, seq),
            });
        }
    }

    /// Appends to `log`, in one write, the pending events it does not hold yet, and empties the
    /// outbox; returns how many were appended. On an error the outbox is left as it was.
    pub fn deliver(&mut self, log: &EventLog) -> Result<usize, EventLogError> {
        if self.pending.is_empty() {
            return Ok(0);
        }
        let logged = log.read_all()?.events;
        let missing: Vec<Event> = self
            .pending
            .iter()
            .filter(|p| !logged.contains(&p.event))
            .map(|p| p.event.clone())
            .collect();
        if !missing.is_empty() {
            log.append_all(&missing)?;
        }
        self.pending.clear();
        Ok(missing.len())
    }
}

/// Test hook: `LCS_SIM_CRASH_AT=<point>` aborts the process at that point of a store write, as a
/// kill -9 there would (the crash tests use it; nothing else sets it). Points:
/// `before-commit` (new certificate and key files written, index.json not replaced),
/// `after-commit` (the change and its events committed, the log not appended to),
/// `after-delivery` (the log appended to, the outbox not yet emptied).
pub(super) fn crash_point(point: &str) {
    if std::env::var_os("LCS_SIM_CRASH_AT").is_some_and(|v| v == point) {
        std::process::abort();
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;
    use crate::eventlog::Level;

    fn event(n: u32) -> Event {
        Event::new(
            1001,
            datetime!(2026-01-01 00:00 UTC),
            Level::Information,
            "test",
            format!("event {n}"),
        )
    }

    #[test]
    fn events_are_numbered_and_delivered_once_however_often_delivery_runs() {
        let dir = tempfile::tempdir().unwrap();
        let log = EventLog::at(dir.path().join("events.jsonl"));
        let mut outbox = Outbox::default();
        outbox.push(vec![event(1), event(2)]);
        assert_eq!(outbox.last_seq, 2);
        let seqs: Vec<_> = outbox
            .pending
            .iter()
            .map(|p| p.event.details[SEQ_DETAIL].as_u64())
            .collect();
        assert_eq!(seqs, [Some(1), Some(2)]);
        // A writer that delivered and died before emptying the outbox: the next delivery of the
        // same outbox appends nothing.
        let left_behind = outbox.clone();
        assert_eq!(outbox.deliver(&log).unwrap(), 2);
        assert!(outbox.pending.is_empty());
        assert_eq!(outbox.last_seq, 2, "numbers are never reused");
        let mut again = left_behind.clone();
        assert_eq!(again.deliver(&log).unwrap(), 0);
        assert_eq!(log.read().unwrap().len(), 2);
        // Two equal changes are two events: their numbers differ.
        outbox.push(vec![event(1)]);
        assert_eq!(outbox.deliver(&log).unwrap(), 1);
        let logged = log.read().unwrap();
        assert_eq!(logged.len(), 3);
        assert_eq!(logged[2].details[SEQ_DETAIL], 3);
    }

    #[test]
    fn a_failed_delivery_keeps_the_events() {
        let dir = tempfile::tempdir().unwrap();
        // The log's path is a folder: appending fails.
        let log = EventLog::at(dir.path().to_path_buf());
        let mut outbox = Outbox::default();
        outbox.push(vec![event(1)]);
        assert!(outbox.deliver(&log).is_err());
        assert_eq!(outbox.pending.len(), 1);
    }
}
