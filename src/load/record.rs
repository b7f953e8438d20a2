//! What happened to each operation: typed failure reasons, latencies in HdrHistograms, and a
//! row per second.
//!
//! Every operation (a handshake, a REGISTER, a MESSAGE) ends in exactly one [`Recorder::ok`] or
//! [`Recorder::failed`] call, stamped with the time it completed; the recorder files it in the
//! whole run's histogram and in its second's. Latencies are recorded for successful operations
//! only, in microseconds, from when the operation was *scheduled* (open loop) or started
//! (closed loop). Failures are counted by a [`Reason`] with a stable name, never by a message.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::failure::ConnectFailure;

/// Highest latency a histogram holds (one hour, in microseconds); longer ones are clamped.
pub const MAX_LATENCY_US: u64 = 3_600_000_000;

/// A new latency histogram: 1 µs to one hour, 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("valid histogram bounds")
}

/// Why an operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reason {
    /// The TCP connect or TLS handshake failed (refused, timeout, TLS alert, certificate).
    Connect(ConnectFailure),
    /// The server answered with this final status (e.g. 408, 480, 503).
    Sip(u16),
    /// No final response in time.
    ResponseTimeout,
    /// The connection closed before the final response (after a successful handshake).
    ClosedBeforeResponse,
    /// The server sent bytes that are not a SIP response to our request.
    BadResponse,
    /// A held connection (register, message) was closed by the server or the network.
    ConnectionLost,
}

impl Reason {
    /// The stable name used as a key in reports: `tls_alert_access_denied`, `sip_408`, ...
    pub fn name(&self) -> String {
        match self {
            Reason::Connect(c) => c.name(),
            Reason::Sip(status) => format!("sip_{status}"),
            Reason::ResponseTimeout => "response_timeout".into(),
            Reason::ClosedBeforeResponse => "closed_before_response".into(),
            Reason::BadResponse => "bad_response".into(),
            Reason::ConnectionLost => "connection_lost".into(),
        }
    }

    /// Whether the reason means an established connection was lost (the outage's
    /// "connections dropped").
    pub fn is_drop(name: &str) -> bool {
        name == "closed_before_response" || name == "connection_lost"
    }
}

/// One second of the run.
#[derive(Debug, Clone)]
pub struct Second {
    /// Successful operations completed in this second.
    pub ok: u64,
    /// Failed operations completed in this second.
    pub failed: u64,
    /// Latencies of the successful ones.
    pub histogram: Histogram<u64>,
}

impl Default for Second {
    fn default() -> Self {
        Second {
            ok: 0,
            failed: 0,
            histogram: new_histogram(),
        }
    }
}

/// Everything recorded so far.
#[derive(Debug, Clone)]
pub struct Tally {
    /// Successful operations.
    pub ok: u64,
    /// Failed operations.
    pub failed: u64,
    /// Failures by reason name.
    pub failures: BTreeMap<String, u64>,
    /// Latencies of all successful operations.
    pub histogram: Histogram<u64>,
    /// Second by second, from the start.
    pub seconds: Vec<Second>,
    /// When the first failure completed, from the start.
    pub first_failure: Option<Duration>,
    /// When the last failure completed, from the start.
    pub last_failure: Option<Duration>,
}

impl Default for Tally {
    fn default() -> Self {
        Tally {
            ok: 0,
            failed: 0,
            failures: BTreeMap::new(),
            histogram: new_histogram(),
            seconds: Vec::new(),
            first_failure: None,
            last_failure: None,
        }
    }
}

impl Tally {
    fn second(&mut self, at: Duration) -> &mut Second {
        let i = at.as_secs() as usize;
        if self.seconds.len() <= i {
            self.seconds.resize_with(i + 1, Second::default);
        }
        &mut self.seconds[i]
    }
}

/// Collects outcomes from every task of a run (a mutex: a few thousand records per second).
#[derive(Debug)]
pub struct Recorder {
    start: Instant,
    tally: Mutex<Tally>,
}

impl Recorder {
    /// A recorder whose second 0 begins at `start`.
    pub fn new(start: Instant) -> Recorder {
        Recorder {
            start,
            tally: Mutex::new(Tally::default()),
        }
    }

    /// When the run started.
    pub fn start(&self) -> Instant {
        self.start
    }

    /// A successful operation that completed at `done`, having been scheduled at `since`.
    pub fn ok(&self, since: Instant, done: Instant) {
        let at = done.saturating_duration_since(self.start);
        let us =
            (done.saturating_duration_since(since).as_micros() as u64).clamp(1, MAX_LATENCY_US);
        let mut t = self.lock();
        t.ok += 1;
        t.histogram.saturating_record(us);
        let s = t.second(at);
        s.ok += 1;
        s.histogram.saturating_record(us);
    }

    /// A failed operation that completed at `done`.
    pub fn failed(&self, reason: Reason, done: Instant) {
        let at = done.saturating_duration_since(self.start);
        let mut t = self.lock();
        t.failed += 1;
        *t.failures.entry(reason.name()).or_default() += 1;
        t.first_failure.get_or_insert(at);
        t.last_failure = Some(t.last_failure.map_or(at, |l| l.max(at)));
        t.second(at).failed += 1;
    }

    /// Records an outcome.
    pub fn outcome(&self, result: Result<(), Reason>, since: Instant, done: Instant) {
        match result {
            Ok(()) => self.ok(since, done),
            Err(reason) => self.failed(reason, done),
        }
    }

    /// The row of second `t` so far: (ok, failed, p99 µs).
    pub fn row(&self, t: usize) -> (u64, u64, u64) {
        let tally = self.lock();
        tally.seconds.get(t).map_or((0, 0, 0), |s| {
            (s.ok, s.failed, s.histogram.value_at_quantile(0.99))
        })
    }

    /// Totals so far: (ok, failed).
    pub fn totals(&self) -> (u64, u64) {
        let tally = self.lock();
        (tally.ok, tally.failed)
    }

    /// A copy of everything recorded.
    pub fn snapshot(&self) -> Tally {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Tally> {
        // A panicking task cannot leave a tally half-updated in a way that matters here.
        self.tally.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_outcomes_by_second_and_reason() {
        let t0 = crate::clock::monotonic_now();
        let r = Recorder::new(t0);
        r.ok(t0, t0 + Duration::from_millis(2));
        r.ok(t0, t0 + Duration::from_millis(1500));
        r.failed(Reason::Sip(408), t0 + Duration::from_millis(1600));
        r.failed(
            Reason::Connect(ConnectFailure::ConnectionRefused),
            t0 + Duration::from_millis(2100),
        );
        let t = r.snapshot();
        assert_eq!((t.ok, t.failed), (2, 2));
        assert_eq!(
            t.failures.keys().collect::<Vec<_>>(),
            ["connection_refused", "sip_408"]
        );
        let rows: Vec<(u64, u64)> = t.seconds.iter().map(|s| (s.ok, s.failed)).collect();
        assert_eq!(rows, [(1, 0), (1, 1), (0, 1)]);
        assert_eq!(t.first_failure, Some(Duration::from_millis(1600)));
        assert_eq!(t.last_failure, Some(Duration::from_millis(2100)));
        assert!(t.histogram.max() >= 1_499_000);
    }
}
