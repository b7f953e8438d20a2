//! The open loop's schedule: operation `i` is due at `begin + i / rate`, for every `i` due
//! before the end of the run.
//!
//! The schedule is arithmetic, never materialised: a rate of a billion a second costs nothing
//! until the generator reaches a slot, and what it never reached is counted from the same
//! formula ([`Schedule::in_window`]), so `scheduled = started + not_started` holds exactly, second
//! by second, however far behind the generator fell.

use std::time::{Duration, Instant};

/// Slots `0..len` at `begin + i / rate`, all before `end`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    begin: Instant,
    rate: f64,
    len: u64,
}

/// The most slots a schedule may hold: beyond 2^53 an `f64` no longer tells slots apart.
pub const MAX_SLOTS: f64 = 9_007_199_254_740_992.0;

impl Schedule {
    /// The slots of `rate` per second from `begin` until (not including) `end`. `rate` must be
    /// finite and above zero, and `rate` × (`end` − `begin`) at most [`MAX_SLOTS`] (the CLI
    /// refuses more).
    pub fn new(begin: Instant, rate: f64, end: Instant) -> Schedule {
        assert!(rate.is_finite() && rate > 0.0, "a validated rate");
        let mut s = Schedule {
            begin,
            rate,
            len: 0,
        };
        let span = end.saturating_duration_since(begin).as_secs_f64();
        let guess = (span * rate).ceil().min(MAX_SLOTS) as u64 + 2;
        s.len = s.first_at_or_after(end, guess);
        s
    }

    /// How many slots.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether there is no slot at all.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// When slot `i` is due.
    pub fn at(&self, i: u64) -> Instant {
        self.begin + Duration::from_secs_f64(i as f64 / self.rate)
    }

    /// The slots due in `[from, to)`, as a range of indices.
    pub fn in_window(&self, from: Instant, to: Instant) -> std::ops::Range<u64> {
        let lo = self.first_at_or_after(from, self.len);
        let hi = self.first_at_or_after(to, self.len);
        lo..hi.max(lo)
    }

    /// The first slot in `0..=limit` due at or after `t` (`at` never decreases with `i`).
    fn first_at_or_after(&self, t: Instant, limit: u64) -> u64 {
        let (mut lo, mut hi) = (0u64, limit);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.at(mid) >= t {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        lo
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_before_the_end_and_windows_that_tile_them() {
        let t0 = crate::clock::monotonic_now();
        let s = Schedule::new(t0, 10.0, t0 + Duration::from_secs(2));
        assert_eq!(s.len(), 20);
        assert_eq!(s.at(0), t0);
        assert!(s.at(19) < t0 + Duration::from_secs(2));
        assert_eq!(s.in_window(t0, t0 + Duration::from_secs(1)), 0..10);
        assert_eq!(
            s.in_window(t0 + Duration::from_secs(1), t0 + Duration::from_secs(9)),
            10..20
        );
        // A rate that does not divide the second: 2.5 s at 3/s is slots at 0, 1/3, ..., 7/3.
        let s = Schedule::new(t0, 3.0, t0 + Duration::from_millis(2500));
        assert_eq!(s.len(), 8);
        let tiles: u64 = (0..3)
            .map(|k| {
                let w = s.in_window(t0 + Duration::from_secs(k), t0 + Duration::from_secs(k + 1));
                w.end - w.start
            })
            .sum();
        assert_eq!(tiles, s.len());
    }

    #[test]
    fn a_billion_a_second_is_counted_not_materialised() {
        let t0 = crate::clock::monotonic_now();
        let s = Schedule::new(t0, 1e9, t0 + Duration::from_secs(1));
        assert_eq!(s.len(), 1_000_000_000);
        let w = s.in_window(t0 + Duration::from_millis(500), t0 + Duration::from_secs(5));
        assert_eq!(w, 500_000_000..1_000_000_000);
        let empty = Schedule::new(t0, 5.0, t0);
        assert!(empty.is_empty());
    }
}
