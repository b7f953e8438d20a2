//! `lcs-sim reproduce --seeds A..B`: one scenario over many seeds, in parallel, with a summary
//! that names every failing seed and the command that replays it.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use lcs_sim::clock::monotonic_now;
use lcs_sim::sim::Scenario;
use lcs_sim::sim::sweep::{self, SeedRange, SeedResult, Shard};
use serde::Serialize;

use super::out::outln;
use super::{CmdResult, Failure};

/// What to sweep.
pub struct SweepOptions {
    /// As named on the command line (a built-in or a file).
    pub source: String,
    /// The seeds.
    pub range: SeedRange,
    /// This machine's part of them.
    pub shard: Shard,
    /// Threads (default: every core).
    pub jobs: Option<usize>,
    /// JSON instead of text.
    pub json: bool,
}

/// The JSON summary: exactly these fields.
#[derive(Serialize)]
struct Summary {
    scenario: String,
    seeds: Seeds,
    runs: usize,
    passed: usize,
    failed: Vec<FailedSeed>,
    wall_s: f64,
}

#[derive(Serialize)]
struct Seeds {
    from: u64,
    to: u64,
}

#[derive(Serialize)]
struct FailedSeed {
    seed: u64,
    checks: Vec<String>,
}

pub fn run(scenario: &Scenario, o: &SweepOptions) -> CmdResult {
    let seeds: Vec<u64> = o.range.seeds(o.shard).collect();
    let threads = o.jobs.unwrap_or_else(sweep::default_threads);
    let bar = progress(seeds.len() as u64);
    let start = monotonic_now();
    let results = sweep::run(scenario, &seeds, threads, &|r: &SeedResult| {
        if let Some(bar) = &bar {
            bar.inc(1);
            if !r.passed() {
                bar.println(format!("seed {} failed: {}", r.seed, r.failed.join(", ")));
            }
        }
    });
    let wall = monotonic_now() - start;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let failed: Vec<&SeedResult> = results.iter().filter(|r| !r.passed()).collect();
    if o.json {
        let summary = Summary {
            scenario: scenario.name.clone(),
            seeds: Seeds {
                from: o.range.from,
                to: o.range.to,
            },
            runs: results.len(),
            passed: results.len() - failed.len(),
            failed: failed
                .iter()
                .map(|r| FailedSeed {
                    seed: r.seed,
                    checks: r.failed.clone(),
                })
                .collect(),
            wall_s: (wall.as_secs_f64() * 1000.0).round() / 1000.0,
        };
        outln!(
            "{}",
            serde_json::to_string_pretty(&summary).map_err(super::exit::serialize)?
        );
    } else {
        text(scenario, o, &results, threads, wall);
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(Failure {
            code: super::exit::FAILED,
            error: anyhow::anyhow!(
                "scenario {}: {} of {} seeds failed",
                scenario.name,
                failed.len(),
                results.len()
            ),
        })
    }
}

/// A bar on a terminal (stderr), nothing otherwise: logs of CI jobs stay clean.
fn progress(len: u64) -> Option<ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} seeds  {elapsed} (eta {eta})")
            .expect("a valid template"),
    );
    Some(bar)
}

fn text(
    scenario: &Scenario,
    o: &SweepOptions,
    results: &[SeedResult],
    threads: usize,
    wall: Duration,
) {
    let failed: Vec<&SeedResult> = results.iter().filter(|r| !r.passed()).collect();
    let shard = if o.shard.count > 1 {
        format!(", shard {}/{}", o.shard.index, o.shard.count)
    } else {
        String::new()
    };
    outln!(
        "lcs-sim reproduce --seeds {}..{}{shard}: scenario {}",
        o.range.from,
        o.range.to,
        scenario.name
    );
    outln!(
        "{} runs, {} passed, {} failed in {:.1} s of wall time on {threads} threads",
        results.len(),
        results.len() - failed.len(),
        failed.len(),
        wall.as_secs_f64()
    );
    if let Some(slow) = results.iter().max_by_key(|r| r.wall) {
        outln!(
            "slowest: seed {} ({:.2} s)",
            slow.seed,
            slow.wall.as_secs_f64()
        );
    }
    for r in &failed {
        outln!("FAILED seed {}: {}", r.seed, r.failed.join(", "));
        outln!(
            "  replay: lcs-sim reproduce --scenario {} --seed {}",
            o.source,
            r.seed
        );
    }
}
