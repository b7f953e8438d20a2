//! What happened to each operation: typed failure reasons, latencies in HdrHistograms, a row
//! per second, and the operations that never finished.
//!
//! An operation (a handshake, a REGISTER, a MESSAGE) exists from [`Recorder::begin`], which
//! counts it `started` and *in flight* in its first [`Phase`]; its [`Op`] moves it through the
//! phases and [`Op::finish`] files it as ok or failed, stamped with the time it completed, in
//! the whole run's histogram and in its second's. Nothing else removes an operation from the
//! in-flight count: a task that is aborted or drops its `Op` leaves it there, and
//! [`Recorder::close`] (at the end of the run's grace period) turns what is still in flight into
//! `unfinished`, by phase. Outcomes that arrive after the close are ignored, so the books are
//! frozen at one instant. In the open loop the generator hands the recorder its [`Schedule`], and
//! the close counts every slot it never reached as `not_started`. Hence, exactly and by
//! construction:
//!
//! `scheduled (open loop) or started (closed loop) = ok + failed + unfinished + not_started`.
//!
//! Latencies are recorded for successful operations only, in microseconds, from when the
//! operation was *scheduled* (open loop) or started (closed loop). Failures are counted by a
//! [`Reason`] with a stable name, never by a message.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, OwnedSemaphorePermit};

use super::schedule::Schedule;
use crate::clock::monotonic_now;

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

/// Where an operation in flight is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for its TCP connection (or, a MESSAGE, for its user's connection).
    Connecting,
    /// In the TLS handshake.
    Handshaking,
    /// Its request is written; waiting for the final response.
    AwaitingResponse,
}

/// A count per [`Phase`]: operations in flight, or left unfinished at the end.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ByPhase {
    /// Waiting for a connection.
    pub connecting: u64,
    /// In the TLS handshake.
    pub handshaking: u64,
    /// Waiting for the final response.
    pub awaiting_response: u64,
}

impl ByPhase {
    /// All phases together.
    pub fn total(&self) -> u64 {
        self.connecting + self.handshaking + self.awaiting_response
    }

    /// Adds `other` to this.
    pub fn add(&mut self, other: &ByPhase) {
        self.connecting += other.connecting;
        self.handshaking += other.handshaking;
        self.awaiting_response += other.awaiting_response;
    }

    fn get_mut(&mut self, phase: Phase) -> &mut u64 {
        match phase {
            Phase::Connecting => &mut self.connecting,
            Phase::Handshaking => &mut self.handshaking,
            Phase::AwaitingResponse => &mut self.awaiting_response,
        }
    }
}

/// One second of the run. `ok`, `failed` and the histogram are filed by when an operation
/// *completed*; `started`, `unfinished` and `not_started` by when it was *due* (its scheduled
/// time in the open loop, its start in the closed loop), so that in the open loop each second's
/// slots are `started + not_started`.
#[derive(Debug, Clone)]
pub struct Second {
    /// Successful operations completed in this second.
    pub ok: u64,
    /// Failed operations completed in this second.
    pub failed: u64,
    /// Latencies of the successful ones.
    pub histogram: Histogram<u64>,
    /// Operations started that were due in this second.
    pub started: u64,
    /// Of those, in flight now.
    pub in_flight: ByPhase,
    /// Of those, still in flight when the recorder closed.
    pub unfinished: u64,
    /// Slots due in this second that the generator never started (open loop).
    pub not_started: u64,
}

impl Default for Second {
    fn default() -> Self {
        Second {
            ok: 0,
            failed: 0,
            histogram: new_histogram(),
            started: 0,
            in_flight: ByPhase::default(),
            unfinished: 0,
            not_started: 0,
        }
    }
}

/// Everything recorded so far.
#[derive(Debug, Clone)]
pub struct Tally {
    /// Operations started.
    pub started: u64,
    /// Successful operations.
    pub ok: u64,
    /// Failed operations.
    pub failed: u64,
    /// Failures by reason name.
    pub failures: BTreeMap<String, u64>,
    /// Operations in flight now.
    pub in_flight: ByPhase,
    /// Operations still in flight when the recorder closed (zero until then).
    pub unfinished: ByPhase,
    /// Open loop: the schedule's slots (set when the recorder closes).
    pub scheduled: Option<u64>,
    /// Open loop: slots the generator never started (set when the recorder closes).
    pub not_started: u64,
    /// Latencies of all successful operations.
    pub histogram: Histogram<u64>,
    /// Second by second, from the start.
    pub seconds: Vec<Second>,
    /// When the first failure completed, from the start.
    pub first_failure: Option<Duration>,
    /// When the last failure completed, from the start.
    pub last_failure: Option<Duration>,
    /// Whether the books are closed.
    pub closed: bool,
    schedule: Option<Schedule>,
}

impl Default for Tally {
    fn default() -> Self {
        Tally {
            started: 0,
            ok: 0,
            failed: 0,
            failures: BTreeMap::new(),
            in_flight: ByPhase::default(),
            unfinished: ByPhase::default(),
            scheduled: None,
            not_started: 0,
            histogram: new_histogram(),
            seconds: Vec::new(),
            first_failure: None,
            last_failure: None,
            closed: false,
            schedule: None,
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

    /// Counts the schedule's slots, second by second, and those never started.
    fn close_schedule(&mut self, start: Instant, schedule: &Schedule) {
        self.scheduled = Some(schedule.len());
        if schedule.is_empty() {
            return;
        }
        let last = schedule.at(schedule.len() - 1);
        self.second(last.saturating_duration_since(start));
        let mut not_started = 0;
        for (k, s) in self.seconds.iter_mut().enumerate() {
            let from = start + Duration::from_secs(k as u64);
            let slots = schedule.in_window(from, from + Duration::from_secs(1));
            let due = slots.end - slots.start;
            debug_assert!(
                s.started <= due,
                "second {k}: {} started of {due}",
                s.started
            );
            s.not_started = due.saturating_sub(s.started);
            not_started += s.not_started;
        }
        self.not_started = not_started;
    }
}

/// Collects outcomes from every task of a run (a mutex: a few thousand records per second).
#[derive(Debug)]
pub struct Recorder {
    start: Instant,
    tally: Mutex<Tally>,
    idle: Notify,
}

/// One operation from its start to its outcome; see the module's documentation. Dropping it
/// without [`Op::finish`] leaves it in flight (it becomes `unfinished` when the recorder closes).
#[derive(Debug)]
#[must_use = "an operation is in flight until it is finished"]
pub struct Op {
    recorder: Option<Arc<Recorder>>,
    since: Instant,
    second: Duration,
    phase: Phase,
    _permit: Option<OwnedSemaphorePermit>,
}

impl Op {
    /// When it was due (latency counts from here).
    pub fn since(&self) -> Instant {
        self.since
    }

    /// Holds `permit` until the operation ends (the generator's bound on operations in flight).
    pub fn with_permit(mut self, permit: OwnedSemaphorePermit) -> Op {
        self._permit = Some(permit);
        self
    }

    /// Moves it to `phase`.
    pub fn phase(&mut self, phase: Phase) {
        if let Some(r) = &self.recorder {
            let mut t = r.lock();
            if !t.closed {
                *t.in_flight.get_mut(self.phase) -= 1;
                *t.in_flight.get_mut(phase) += 1;
                let s = t.second(self.second);
                *s.in_flight.get_mut(self.phase) -= 1;
                *s.in_flight.get_mut(phase) += 1;
            }
        }
        self.phase = phase;
    }

    /// Its outcome, now.
    pub fn finish(self, result: Result<(), Reason>) {
        self.finish_at(result, monotonic_now());
    }

    /// Its outcome, completed at `done`.
    pub fn finish_at(self, result: Result<(), Reason>, done: Instant) {
        let Some(r) = &self.recorder else {
            return;
        };
        let mut t = r.lock();
        if t.closed {
            return;
        }
        *t.in_flight.get_mut(self.phase) -= 1;
        *t.second(self.second).in_flight.get_mut(self.phase) -= 1;
        let at = done.saturating_duration_since(r.start);
        match result {
            Ok(()) => {
                let us = (done.saturating_duration_since(self.since).as_micros() as u64)
                    .clamp(1, MAX_LATENCY_US);
                t.ok += 1;
                t.histogram.saturating_record(us);
                let s = t.second(at);
                s.ok += 1;
                s.histogram.saturating_record(us);
            }
            Err(reason) => {
                t.failed += 1;
                *t.failures.entry(reason.name()).or_default() += 1;
                t.first_failure.get_or_insert(at);
                t.last_failure = Some(t.last_failure.map_or(at, |l| l.max(at)));
                t.second(at).failed += 1;
            }
        }
        if t.in_flight.total() == 0 {
            r.idle.notify_one();
        }
    }
}

impl Recorder {
    /// A recorder whose second 0 begins at `start`.
    pub fn new(start: Instant) -> Recorder {
        Recorder {
            start,
            tally: Mutex::new(Tally::default()),
            idle: Notify::new(),
        }
    }

    /// When the run started.
    pub fn start(&self) -> Instant {
        self.start
    }

    /// Starts an operation due at `since` (its scheduled time in the open loop, now in the
    /// closed loop), in flight and [`Phase::Connecting`]. After [`Recorder::close`] the
    /// operation counts nowhere.
    pub fn begin(self: &Arc<Self>, since: Instant) -> Op {
        let second = since.saturating_duration_since(self.start);
        let mut t = self.lock();
        let recorder = (!t.closed).then(|| {
            t.started += 1;
            t.in_flight.connecting += 1;
            let s = t.second(second);
            s.started += 1;
            s.in_flight.connecting += 1;
            self.clone()
        });
        Op {
            recorder,
            since,
            second,
            phase: Phase::Connecting,
            _permit: None,
        }
    }

    /// An operation that failed as it began (a held connection lost, in register mode).
    pub fn failed(self: &Arc<Self>, reason: Reason, done: Instant) {
        self.begin(done).finish_at(Err(reason), done);
    }

    /// The open loop's schedule: at the close, its slots are `scheduled`, and those without an
    /// operation begun at their time `not_started`.
    pub fn set_schedule(&self, schedule: Schedule) {
        self.lock().schedule = Some(schedule);
    }

    /// Operations in flight now.
    pub fn in_flight(&self) -> u64 {
        self.lock().in_flight.total()
    }

    /// Waits until nothing is in flight, or until `until`.
    pub async fn wait_idle(&self, until: Instant) {
        let limit = tokio::time::sleep_until(until.into());
        tokio::pin!(limit);
        // `notify_one` keeps a permit when nobody waits: a finish between the check and the
        // wait is not missed.
        while self.in_flight() > 0 {
            tokio::select! {
                () = self.idle.notified() => {}
                () = &mut limit => return,
            }
        }
    }

    /// Closes the books: what is in flight becomes `unfinished`, the schedule's unreached slots
    /// `not_started`, and later outcomes are ignored. Closing twice changes nothing.
    pub fn close(&self) {
        let mut t = self.lock();
        if t.closed {
            return;
        }
        t.closed = true;
        t.unfinished = t.in_flight;
        for s in &mut t.seconds {
            s.unfinished = s.in_flight.total();
        }
        if let Some(schedule) = t.schedule {
            t.close_schedule(self.start, &schedule);
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

    fn ms(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    #[test]
    fn files_outcomes_by_second_and_reason() {
        let t0 = monotonic_now();
        let r = Arc::new(Recorder::new(t0));
        r.begin(t0).finish_at(Ok(()), ms(t0, 2));
        r.begin(t0).finish_at(Ok(()), ms(t0, 1500));
        r.begin(t0).finish_at(Err(Reason::Sip(408)), ms(t0, 1600));
        r.failed(
            Reason::Connect(ConnectFailure::ConnectionRefused),
            ms(t0, 2100),
        );
        r.close();
        let t = r.snapshot();
        assert_eq!((t.started, t.ok, t.failed), (4, 2, 2));
        assert_eq!(
            t.failures.keys().collect::<Vec<_>>(),
            ["connection_refused", "sip_408"]
        );
        let rows: Vec<(u64, u64, u64)> = t
            .seconds
            .iter()
            .map(|s| (s.started, s.ok, s.failed))
            .collect();
        assert_eq!(rows, [(3, 1, 0), (0, 1, 1), (1, 0, 1)]);
        assert_eq!(t.first_failure, Some(Duration::from_millis(1600)));
        assert_eq!(t.last_failure, Some(Duration::from_millis(2100)));
        assert!(t.histogram.max() >= 1_499_000);
    }

    #[test]
    fn what_is_in_flight_at_the_close_is_unfinished_by_phase_and_later_outcomes_are_ignored() {
        let t0 = monotonic_now();
        let r = Arc::new(Recorder::new(t0));
        let connecting = r.begin(t0);
        let mut handshaking = r.begin(ms(t0, 1200));
        handshaking.phase(Phase::Handshaking);
        let mut awaiting = r.begin(ms(t0, 1300));
        awaiting.phase(Phase::Handshaking);
        awaiting.phase(Phase::AwaitingResponse);
        let mut dropped = r.begin(ms(t0, 10));
        dropped.phase(Phase::AwaitingResponse);
        drop(dropped); // an aborted task: still in flight
        r.begin(t0).finish_at(Ok(()), ms(t0, 5));
        assert_eq!(r.in_flight(), 4);
        r.close();
        connecting.finish_at(Ok(()), ms(t0, 3000));
        handshaking.finish_at(Err(Reason::ResponseTimeout), ms(t0, 3000));
        r.begin(ms(t0, 3100)).finish_at(Ok(()), ms(t0, 3200));
        r.close();
        let t = r.snapshot();
        assert_eq!((t.started, t.ok, t.failed), (5, 1, 0));
        assert_eq!(
            t.unfinished,
            ByPhase {
                connecting: 1,
                handshaking: 1,
                awaiting_response: 2
            }
        );
        let unfinished: Vec<u64> = t.seconds.iter().map(|s| s.unfinished).collect();
        assert_eq!(unfinished, [2, 2]);
        assert_eq!(t.scheduled, None);
        assert_eq!(t.started, t.ok + t.failed + t.unfinished.total());
    }

    #[test]
    fn the_schedules_unreached_slots_are_not_started_second_by_second() {
        let t0 = monotonic_now();
        let r = Arc::new(Recorder::new(t0));
        // 10 a second for 3 s; the generator reached 12 slots (0..12), so 18 were not started.
        let s = Schedule::new(t0, 10.0, t0 + Duration::from_secs(3));
        r.set_schedule(s);
        let mut left = Vec::new();
        for i in 0..12 {
            let mut op = r.begin(s.at(i));
            if i % 4 == 3 {
                op.phase(Phase::AwaitingResponse);
                left.push(op);
            } else if i % 4 == 2 {
                op.finish_at(
                    Err(Reason::ResponseTimeout),
                    s.at(i) + Duration::from_millis(5),
                );
            } else {
                op.finish_at(Ok(()), s.at(i) + Duration::from_millis(5));
            }
        }
        r.close();
        let t = r.snapshot();
        assert_eq!(t.scheduled, Some(30));
        assert_eq!(
            (t.ok, t.failed, t.unfinished.total(), t.not_started),
            (6, 3, 3, 18)
        );
        assert_eq!(
            t.scheduled.unwrap(),
            t.ok + t.failed + t.unfinished.total() + t.not_started
        );
        let rows: Vec<(u64, u64, u64)> = t
            .seconds
            .iter()
            .map(|s| (s.started, s.unfinished, s.not_started))
            .collect();
        assert_eq!(rows, [(10, 2, 0), (2, 1, 8), (0, 0, 10)]);
    }

    #[test]
    fn idle_wakes_when_the_last_operation_finishes() {
        let t0 = monotonic_now();
        let r = Arc::new(Recorder::new(t0));
        let op = r.begin(t0);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            let waiter = tokio::spawn({
                let r = r.clone();
                async move {
                    r.wait_idle(monotonic_now() + Duration::from_secs(3600))
                        .await
                }
            });
            tokio::task::yield_now().await;
            op.finish(Ok(()));
            tokio::time::timeout(Duration::from_secs(30), waiter)
                .await
                .expect("woken by the finish, not the hour")
                .unwrap();
        });
    }
}
