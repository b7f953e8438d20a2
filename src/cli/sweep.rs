//! `lcs-sim reproduce --seeds A..B`: one scenario over many seeds, in parallel, with a summary
//! that names every failing seed and the command that replays it.

use std::io::IsTerminal;
use std::ops::ControlFlow;
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
struct JsonSummary {
    scenario: String,
    seeds: Seeds,
    runs: u64,
    passed: u64,
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
    /// Why the run itself failed (only when it did).
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

pub fn run(scenario: &Scenario, o: &SweepOptions) -> CmdResult {
    let threads = o.jobs.unwrap_or_else(sweep::default_threads);
    let bar = progress(o.range.len(o.shard));
    let start = monotonic_now();
    let summary = sweep::run(
        scenario,
        o.range.seeds(o.shard),
        threads,
        &|r: &SeedResult| {
            if let Some(bar) = &bar {
                bar.inc(1);
                if !r.passed() {
                    bar.println(format!("seed {} failed: {}", r.seed, r.failed.join(", ")));
                }
            }
            ControlFlow::Continue(())
        },
    );
    let wall = monotonic_now() - start;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    if o.json {
        let json = JsonSummary {
            scenario: scenario.name.clone(),
            seeds: Seeds {
                from: o.range.from,
                to: o.range.to,
            },
            runs: summary.runs,
            passed: summary.passed(),
            failed: summary
                .failed
                .iter()
                .map(|r| FailedSeed {
                    seed: r.seed,
                    checks: r.failed.clone(),
                    error: r.error.clone(),
                })
                .collect(),
            wall_s: (wall.as_secs_f64() * 1000.0).round() / 1000.0,
        };
        outln!(
            "{}",
            serde_json::to_string_pretty(&json).map_err(super::exit::serialize)?
        );
    } else {
        text(scenario, o, &summary, threads, wall);
    }
    verdict(scenario, &summary)
}

/// Exit 3 when the harness itself failed on some seed (its failure must never pass for the
/// scenario's), else 1 when some seed's checks failed.
fn verdict(scenario: &Scenario, summary: &sweep::Summary) -> CmdResult {
    let (failed, errors) = (summary.failed.len(), summary.errors());
    if failed == 0 {
        return Ok(());
    }
    let what = format!(
        "scenario {}: {failed} of {} seeds failed",
        scenario.name, summary.runs
    );
    if errors > 0 {
        Err(Failure::internal(anyhow::anyhow!(
            "{what} ({errors} because the simulation itself failed)"
        )))
    } else {
        Err(Failure {
            code: super::exit::FAILED,
            error: anyhow::anyhow!("{what}"),
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
    summary: &sweep::Summary,
    threads: usize,
    wall: Duration,
) {
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
        summary.runs,
        summary.passed(),
        summary.failed.len(),
        wall.as_secs_f64()
    );
    if let Some((seed, wall)) = summary.slowest {
        outln!("slowest: seed {seed} ({:.2} s)", wall.as_secs_f64());
    }
    for r in &summary.failed {
        outln!("FAILED seed {}: {}", r.seed, r.failed.join(", "));
        if let Some(error) = &r.error {
            outln!("  error: {error}");
        }
        outln!(
            "  replay: lcs-sim reproduce --scenario {} --seed {}",
            o.source,
            r.seed
        );
    }
}
