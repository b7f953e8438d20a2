//! What the service writes to the application log, and how often.
//!
//! The KB836410 start failure is three events per connection, in causal order: 14352 (the
//! certificate cannot be used), 14336 (the TLS credentials cannot be acquired), 14347 (the
//! listener did not start). Each names the connection, the certificate reference, the principal
//! and the Windows error. Failures that repeat while running (handshakes, route connections,
//! timeouts) are logged once per condition and interval with a count, so a dead listener under
//! load does not flood the log.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::clock::{Clock, monotonic_now};
use crate::config::CertRef;
use crate::eventlog::{Event, EventSink, Level, ids};
use crate::winerr;

use super::credentials::CredentialError;

/// The event source of everything the service logs.
pub const SOURCE: &str = "LCS";

const EMULATED: &str = "(Emulated text: the original is not public.)";

/// The service's logger: the sink, the clock, and rate limits.
#[derive(Debug)]
pub struct ServiceLog {
    sink: Arc<dyn EventSink>,
    clock: Arc<dyn Clock>,
    interval: Duration,
    throttle: Mutex<BTreeMap<String, Window>>,
}

#[derive(Debug)]
struct Window {
    opened: Instant,
    suppressed: u64,
    last: Event,
}

impl ServiceLog {
    /// A logger writing to `sink`, repeating a condition at most once per `interval`.
    pub fn new(sink: Arc<dyn EventSink>, clock: Arc<dyn Clock>, interval: Duration) -> Self {
        Self {
            sink,
            clock,
            interval,
            throttle: Mutex::default(),
        }
    }

    /// A new event stamped now.
    pub fn event(&self, id: u32, level: Level, message: impl Into<String>) -> Event {
        Event::new(id, self.clock.now_utc(), level, SOURCE, message)
    }

    /// Records an event as is.
    pub fn record(&self, event: Event) {
        self.sink.record(event);
    }

    /// Records `event` unless the same `key` was logged less than an interval ago; then it is
    /// counted, and the next one logged carries `occurrences` (this one and those suppressed).
    pub fn record_limited(&self, key: &str, event: Event) {
        let now = monotonic_now();
        let mut windows = self.throttle.lock().expect("log lock");
        match windows.get_mut(key) {
            Some(w) if now.duration_since(w.opened) < self.interval => {
                w.suppressed += 1;
                w.last = event;
            }
            _ => {
                let suppressed = windows.get(key).map_or(0, |w| w.suppressed);
                windows.insert(
                    key.into(),
                    Window {
                        opened: now,
                        suppressed: 0,
                        last: event.clone(),
                    },
                );
                drop(windows);
                self.sink.record(event.with("occurrences", suppressed + 1));
            }
        }
    }

    /// Writes out what the rate limit held back (at stop).
    pub fn flush(&self) {
        let windows = std::mem::take(&mut *self.throttle.lock().expect("log lock"));
        let mut pending: Vec<_> = windows
            .into_iter()
            .filter(|(_, w)| w.suppressed > 0)
            .collect();
        pending.sort_by(|a, b| a.0.cmp(&b.0));
        for (_, w) in pending {
            self.sink.record(w.last.with("occurrences", w.suppressed));
        }
    }

    /// The three events of a connection that cannot start because of its certificate
    /// (14352, 14336, then 14347 for a listener). Routes get the first two.
    pub fn start_failure(
        &self,
        connection: &str,
        endpoint: &str,
        is_listener: bool,
        reference: &CertRef,
        principal: &str,
        error: &CredentialError,
    ) {
        let details = |e: Event| {
            e.with("connection", connection)
                .with("endpoint", endpoint)
                .with("issuer", reference.issuer.as_str())
                .with("serial", reference.serial.as_str())
                .with("principal", principal)
                .with("reason", error.reason())
        };
        let cause = error.platform_error();
        self.record(details(self.event(
            ids::CERTIFICATE_UNAVAILABLE,
            Level::Error,
            format!(
                "The certificate configured for connection {connection} ({reference}) cannot be used by {principal}: {cause}. {EMULATED}"
            ),
        ))
        .with("error", cause.clone()));
        let unknown = winerr::format(winerr::SEC_E_UNKNOWN_CREDENTIALS);
        self.record(details(self.event(
            ids::CREDENTIALS_NOT_ACQUIRED,
            Level::Error,
            format!(
                "Failed to acquire the TLS credentials of connection {connection} ({reference}) for {principal}: {unknown}; cause: {cause}. {EMULATED}"
            ),
        ))
        .with("error", unknown)
        .with("cause", cause.clone()));
        if is_listener {
            self.record(details(self.event(
                ids::LISTENER_NOT_STARTED,
                Level::Error,
                format!(
                    "The listening connection {connection} on {endpoint} did not start: its certificate ({reference}) is unusable ({cause}). Rebind the connection to a valid certificate and restart. {EMULATED}"
                ),
            ))
            .with("error", cause));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SystemClock;
    use crate::eventlog::MemoryLog;

    fn event(log: &ServiceLog, n: u64) -> Event {
        log.event(ids::HANDSHAKES_FAILING, Level::Warning, "failing")
            .with("n", n)
    }

    #[tokio::test(start_paused = true)]
    async fn a_repeating_condition_is_logged_once_per_interval_with_a_count() {
        let sink = Arc::new(MemoryLog::default());
        let log = ServiceLog::new(sink.clone(), Arc::new(SystemClock), Duration::from_secs(60));
        log.record_limited("a", event(&log, 1));
        for n in 2..=4 {
            log.record_limited("a", event(&log, n));
        }
        log.record_limited("b", event(&log, 1));
        let seen = sink.events();
        assert_eq!(seen.len(), 2, "one per key: {seen:?}");
        assert_eq!(seen[0].details["occurrences"], 1);

        // Inside the interval: still held back. After it: the next one carries the count.
        tokio::time::advance(Duration::from_secs(59)).await;
        log.record_limited("a", event(&log, 5));
        assert_eq!(sink.events().len(), 2);
        tokio::time::advance(Duration::from_secs(2)).await;
        log.record_limited("a", event(&log, 6));
        let seen = sink.events();
        assert_eq!(seen.len(), 3);
        assert_eq!(seen[2].details["n"], 6);
        assert_eq!(
            seen[2].details["occurrences"], 5,
            "this one and the four held back"
        );

        // At stop, what is still held back is written with its count: nothing for `a` (just
        // logged), one for `b` after another occurrence.
        log.record_limited("b", event(&log, 2));
        log.flush();
        let seen = sink.events();
        assert_eq!(seen.len(), 4);
        assert_eq!(
            (
                seen[3].details["n"].as_u64(),
                seen[3].details["occurrences"].as_u64()
            ),
            (Some(2), Some(1))
        );
    }
}
