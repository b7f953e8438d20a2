//! Seed sweeps: one scenario over a range of seeds, in parallel on all cores.
//!
//! A verdict that flips with the seed is a flaky test; a sweep is how we know it does not. Each
//! seed is an independent run (its own turmoil simulation on its own thread), so seeds run in
//! parallel and the result per seed is the same as a single `reproduce --seed N`. Large sweeps
//! split across machines with a [`Shard`]: shard `i/N` takes every N-th seed of the range,
//! starting with the i-th (0-based, as a Kubernetes Indexed Job's `JOB_COMPLETION_INDEX`).

use std::ops::ControlFlow;
use std::str::FromStr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::Scenario;
use crate::clock::monotonic_now;

/// An inclusive range of seeds: `A..B`, or `N` for `1..N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeedRange {
    /// First seed.
    pub from: u64,
    /// Last seed (inclusive).
    pub to: u64,
}

/// A seed range or shard that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SweepInputError {
    /// Not `A..B` or `N`.
    #[error("`{0}` is not a seed range: use A..B (inclusive, A <= B) or N (seeds 1..N)")]
    NotARange(String),
    /// `A..B` with A > B.
    #[error("`{0}` is empty: the first seed must not be larger than the last (A..B with A <= B)")]
    Empty(String),
    /// Not `i/N` with i < N.
    #[error(
        "`{0}` is not a shard: use i/N with 0 <= i < N (i is 0-based, like JOB_COMPLETION_INDEX)"
    )]
    NotAShard(String),
}

impl FromStr for SeedRange {
    type Err = SweepInputError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let num = |x: &str| {
            x.trim()
                .parse::<u64>()
                .map_err(|_| SweepInputError::NotARange(s.into()))
        };
        let range = match s.split_once("..") {
            Some((a, b)) => SeedRange {
                from: num(a)?,
                to: num(b.strip_prefix('=').unwrap_or(b))?,
            },
            None => match num(s)? {
                0 => return Err(SweepInputError::Empty(s.into())),
                n => SeedRange { from: 1, to: n },
            },
        };
        if range.from > range.to {
            return Err(SweepInputError::Empty(s.into()));
        }
        Ok(range)
    }
}

/// Shard `index` of `count`: every `count`-th seed of the range, from the `index`-th.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// 0-based.
    pub index: u64,
    /// How many shards.
    pub count: u64,
}

impl Default for Shard {
    fn default() -> Self {
        Shard { index: 0, count: 1 }
    }
}

impl FromStr for Shard {
    type Err = SweepInputError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || SweepInputError::NotAShard(s.into());
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let index: u64 = i.trim().parse().map_err(|_| bad())?;
        let count: u64 = n.trim().parse().map_err(|_| bad())?;
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

impl SeedRange {
    /// The seeds of this range that `shard` runs, in order, generated as they are asked for:
    /// memory does not depend on the size of the range (`0..18446744073709551615` included).
    pub fn seeds(&self, shard: Shard) -> impl Iterator<Item = u64> + Send + use<> {
        let to = self.to;
        let first = self.from.checked_add(shard.index).filter(|&f| f <= to);
        let step = shard.count;
        std::iter::successors(first, move |&s| s.checked_add(step).filter(|&n| n <= to))
    }

    /// How many seeds `shard` runs (saturating at `u64::MAX`: `0..u64::MAX` has one more).
    pub fn len(&self, shard: Shard) -> u64 {
        match self.from.checked_add(shard.index) {
            Some(first) if first <= self.to => ((self.to - first) / shard.count).saturating_add(1),
            _ => 0,
        }
    }

    /// Whether `shard` runs no seed of this range.
    pub fn is_empty(&self, shard: Shard) -> bool {
        self.len(shard) == 0
    }
}

/// What one seed did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedResult {
    /// The seed.
    pub seed: u64,
    /// Names of the checks that failed (`simulation_error` when the run itself failed).
    pub failed: Vec<String>,
    /// Why the run itself failed (a turmoil error or a panic), when it did: the harness's
    /// failure, not the scenario's.
    pub error: Option<String>,
    /// Wall time of the run.
    pub wall: Duration,
}

impl SeedResult {
    /// Every check held.
    pub fn passed(&self) -> bool {
        self.failed.is_empty()
    }
}

/// What a sweep did: counts, every seed that did not pass, and the slowest seed. Seeds that
/// passed are only counted, so memory grows with failures, not with the range.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Seeds run.
    pub runs: u64,
    /// Seeds whose checks failed or whose run failed, in seed order.
    pub failed: Vec<SeedResult>,
    /// The slowest seed and its wall time.
    pub slowest: Option<(u64, Duration)>,
}

impl Summary {
    /// Seeds whose checks all held.
    pub fn passed(&self) -> u64 {
        self.runs - self.failed.len() as u64
    }

    /// Seeds whose run itself failed (a simulation error or a panic).
    pub fn errors(&self) -> usize {
        self.failed.iter().filter(|r| r.error.is_some()).count()
    }

    fn add(&mut self, r: SeedResult) {
        self.runs += 1;
        if self.slowest.is_none_or(|(_, w)| r.wall > w) {
            self.slowest = Some((r.seed, r.wall));
        }
        if !r.passed() {
            self.failed.push(r);
        }
    }
}

/// Runs `scenario` once per seed on `threads` threads (at least one), taking seeds from `seeds`
/// as threads become free and calling `done` as each seed finishes (from the worker threads, in
/// completion order); `done` returning [`ControlFlow::Break`] stops the sweep after the seeds
/// already running. A seed whose run fails or panics is a failed seed with its error, never the
/// end of the sweep.
pub fn run(
    scenario: &Scenario,
    seeds: impl Iterator<Item = u64> + Send,
    threads: usize,
    done: &(dyn Fn(&SeedResult) -> ControlFlow<()> + Sync),
) -> Summary {
    let seeds = Mutex::new(seeds.fuse());
    let stop = AtomicBool::new(false);
    let summary = Mutex::new(Summary::default());
    let next = || {
        if stop.load(Ordering::Relaxed) {
            return None;
        }
        seeds.lock().expect("seeds").next()
    };
    std::thread::scope(|scope| {
        for _ in 0..threads.max(1) {
            scope.spawn(|| {
                while let Some(seed) = next() {
                    let result = run_one(scenario, seed);
                    if done(&result).is_break() {
                        stop.store(true, Ordering::Relaxed);
                    }
                    summary.lock().expect("summary").add(result);
                }
            });
        }
    });
    let mut summary = summary.into_inner().expect("summary");
    summary.failed.sort_by_key(|r| r.seed);
    summary
}

/// One seed.
pub fn run_one(scenario: &Scenario, seed: u64) -> SeedResult {
    let start = monotonic_now();
    let (failed, error) = match super::run(scenario, seed) {
        Ok(report) => (report.failed_checks(), None),
        Err(e) => (vec!["simulation_error".into()], Some(e.to_string())),
    };
    SeedResult {
        seed,
        failed,
        error,
        wall: monotonic_now() - start,
    }
}

/// The number of threads to use: every core.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn ranges_parse_inclusive_and_reject_what_is_not_one() {
        assert_eq!("3..7".parse(), Ok(SeedRange { from: 3, to: 7 }));
        assert_eq!("3..=7".parse(), Ok(SeedRange { from: 3, to: 7 }));
        assert_eq!("16".parse(), Ok(SeedRange { from: 1, to: 16 }));
        assert_eq!("5..5".parse(), Ok(SeedRange { from: 5, to: 5 }));
        assert!(matches!(
            "10..1".parse::<SeedRange>(),
            Err(SweepInputError::Empty(_))
        ));
        assert!(matches!(
            "0".parse::<SeedRange>(),
            Err(SweepInputError::Empty(_))
        ));
        for bad in ["x", "1..", "..5", "1..x", "-1..3", ""] {
            assert!(
                matches!(bad.parse::<SeedRange>(), Err(SweepInputError::NotARange(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn shards_split_a_range_into_disjoint_parts_that_cover_it() {
        assert!("3/2".parse::<Shard>().is_err());
        assert!("0/0".parse::<Shard>().is_err());
        assert!("1".parse::<Shard>().is_err());
        let range: SeedRange = "10..30".parse().unwrap();
        let mut all: Vec<u64> = (0..4)
            .flat_map(|i| range.seeds(format!("{i}/4").parse().unwrap()))
            .collect();
        assert_eq!(
            range.seeds("1/4".parse().unwrap()).collect::<Vec<_>>(),
            [11, 15, 19, 23, 27]
        );
        all.sort_unstable();
        assert_eq!(all, (10..=30).collect::<Vec<_>>());
    }

    #[test]
    fn the_widest_range_is_generated_lazily_and_counted_without_overflow() {
        let all: SeedRange = "0..18446744073709551615".parse().unwrap();
        let whole = Shard::default();
        assert_eq!(all.seeds(whole).take(3).collect::<Vec<_>>(), [0, 1, 2]);
        assert_eq!(all.len(whole), u64::MAX);
        let top = SeedRange {
            from: u64::MAX - 4,
            to: u64::MAX,
        };
        let shard = Shard { index: 1, count: 2 };
        assert_eq!(
            top.seeds(shard).collect::<Vec<_>>(),
            [u64::MAX - 3, u64::MAX - 1]
        );
        assert_eq!(top.len(shard), 2);
        let one = SeedRange { from: 7, to: 7 };
        assert!(one.is_empty(Shard { index: 1, count: 3 }));
        assert_eq!(one.seeds(Shard { index: 1, count: 3 }).count(), 0);
    }

    /// A sweep takes seeds as it goes: stopping it after two seeds of `0..u64::MAX` returns at
    /// once with two runs counted, which is only possible if the range was never collected.
    #[test]
    fn a_sweep_over_the_widest_range_stops_when_told_and_counts_what_ran() {
        let scenario = Scenario::parse(
            "name = \"tiny\"\nduration = \"2m\"\n[users]\ncount = 2\nhosts = 1\n",
            std::path::Path::new("tiny.toml"),
        )
        .unwrap();
        let all: SeedRange = "0..18446744073709551615".parse().unwrap();
        let seen = AtomicUsize::new(0);
        let summary = run(&scenario, all.seeds(Shard::default()), 1, &|_| {
            if seen.fetch_add(1, Ordering::Relaxed) + 1 >= 2 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        });
        assert_eq!(summary.runs, 2);
        assert_eq!(summary.errors(), 0, "{:?}", summary.failed);
        assert!(summary.slowest.is_some());
    }
}
