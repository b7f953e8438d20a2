//! Seed sweeps: one scenario over a range of seeds, in parallel on all cores.
//!
//! A verdict that flips with the seed is a flaky test; a sweep is how we know it does not. Each
//! seed is an independent run (its own turmoil simulation on its own thread), so seeds run in
//! parallel and the result per seed is the same as a single `reproduce --seed N`. Large sweeps
//! split across machines with a [`Shard`]: shard `i/N` takes every N-th seed of the range,
//! starting with the i-th (0-based, as a Kubernetes Indexed Job's `JOB_COMPLETION_INDEX`).

use std::str::FromStr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
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
    /// The seeds of this range that `shard` runs, in order.
    pub fn seeds(&self, shard: Shard) -> impl Iterator<Item = u64> + use<> {
        let (from, to) = (self.from, self.to);
        (from..=to).filter(move |s| (s - from) % shard.count == shard.index)
    }
}

/// What one seed did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedResult {
    /// The seed.
    pub seed: u64,
    /// Names of the checks that failed (`simulation_error` when the run itself failed).
    pub failed: Vec<String>,
    /// Wall time of the run.
    pub wall: Duration,
}

impl SeedResult {
    /// Every check held.
    pub fn passed(&self) -> bool {
        self.failed.is_empty()
    }
}

/// Runs `scenario` once per seed on `threads` threads (at least one), calling `done` as each
/// seed finishes (from the worker threads, in completion order). Results come back in seed
/// order.
pub fn run(
    scenario: &Scenario,
    seeds: &[u64],
    threads: usize,
    done: &(dyn Fn(&SeedResult) + Sync),
) -> Vec<SeedResult> {
    let next = AtomicUsize::new(0);
    let results = Mutex::new(Vec::with_capacity(seeds.len()));
    std::thread::scope(|scope| {
        for _ in 0..threads.clamp(1, seeds.len().max(1)) {
            scope.spawn(|| {
                while let Some(&seed) = seeds.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let result = run_one(scenario, seed);
                    done(&result);
                    results.lock().expect("results").push(result);
                }
            });
        }
    });
    let mut results = results.into_inner().expect("results");
    results.sort_by_key(|r| r.seed);
    results
}

/// One seed.
pub fn run_one(scenario: &Scenario, seed: u64) -> SeedResult {
    let start = monotonic_now();
    let failed = match super::run(scenario, seed) {
        Ok(report) => report.failed_checks(),
        Err(_) => vec!["simulation_error".into()],
    };
    SeedResult {
        seed,
        failed,
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
}
