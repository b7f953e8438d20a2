//! The proxy's timer wheel: one ordered map of deadlines, cancelled eagerly.
//!
//! Every entity that owns a timer (a client transaction's Timer F, a completed server
//! transaction's linger, a binding's expiry, a route's retry back-off) keeps its [`TimerKey`]
//! and cancels it when it goes away, so [`TimerQueue::next_deadline`] is always exact: a shell
//! on virtual time can jump straight to it and something will happen there.
//!
//! The queue is generic over what a timer does (the proxy's `Timer`, in `timeouts`), so it
//! knows nothing of transactions or bindings and every part of `sip` can hold a [`TimerKey`].

use std::collections::BTreeMap;
use std::time::Instant;

/// Handle to cancel a scheduled timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct TimerKey {
    at: Instant,
    seq: u64,
}

/// Deadlines in order; ties fire in scheduling order.
#[derive(Debug)]
pub(crate) struct TimerQueue<T> {
    timers: BTreeMap<TimerKey, T>,
    seq: u64,
}

impl<T> Default for TimerQueue<T> {
    fn default() -> TimerQueue<T> {
        TimerQueue {
            timers: BTreeMap::new(),
            seq: 0,
        }
    }
}

impl<T> TimerQueue<T> {
    /// Schedules `timer` at `at`.
    pub(crate) fn insert(&mut self, at: Instant, timer: T) -> TimerKey {
        self.seq += 1;
        let key = TimerKey { at, seq: self.seq };
        self.timers.insert(key, timer);
        key
    }

    /// Cancels a timer; a no-op if it already fired.
    pub(crate) fn cancel(&mut self, key: TimerKey) {
        self.timers.remove(&key);
    }

    /// The earliest deadline.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.timers.first_key_value().map(|(key, _)| key.at)
    }

    /// Removes and returns the earliest timer due at `now`.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<T> {
        if self.next_deadline()? <= now {
            self.timers.pop_first().map(|(_, timer)| timer)
        } else {
            None
        }
    }

    /// Number of scheduled timers.
    pub(crate) fn len(&self) -> usize {
        self.timers.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn fires_in_order_and_cancels() {
        #[allow(clippy::disallowed_methods)] // one base instant for the test
        let t0 = Instant::now();
        let mut q = TimerQueue::<u32>::default();
        let late = q.insert(t0 + Duration::from_secs(2), 2);
        q.insert(t0 + Duration::from_secs(1), 1);
        let gone = q.insert(t0, 0);
        q.cancel(gone);
        assert_eq!(q.next_deadline(), Some(t0 + Duration::from_secs(1)));
        assert_eq!(q.pop_due(t0), None);
        assert_eq!(q.pop_due(t0 + Duration::from_secs(5)), Some(1));
        q.cancel(late);
        assert_eq!((q.len(), q.next_deadline()), (0, None));
    }
}
