//! `lcs-sim reproduce`: replay KB836410 deterministically and report.

use super::out::{out, outln};
use std::path::PathBuf;

use clap::{Args, ValueEnum};
use lcs_sim::sim::output::{junit, svg, text};
use lcs_sim::sim::scenario::BUILTINS;
use lcs_sim::sim::sweep::{SeedRange, Shard};
use lcs_sim::sim::{self, Scenario};

use super::{CmdResult, Failure};

/// Replay KB836410 on a simulated network and virtual time: emulated Windows Messenger users,
/// a federation peer, auto-enrollment renewal, restarts and the fix, with the real server, store
/// and TLS code. Two virtual hours take seconds; the same seed gives the same report.
#[derive(Debug, Args)]
#[command(
    after_help = "Exit codes: 0 the scenario's expectations hold (with --seeds: on every seed), 1 they do not, 2 bad input.\n\nExamples:\n  lcs-sim reproduce\n  lcs-sim reproduce --seeds 1..200\n  lcs-sim reproduce --scenario hot-rebind --seeds 1..1000 --shard 0/4 --format json\n  lcs-sim reproduce --scenario kb836410-partial-fix --format json\n  lcs-sim reproduce --scenario my.toml --seed 7 --format junit > junit.xml\n  lcs-sim reproduce --svg chart.svg\n  lcs-sim reproduce --list"
)]
pub struct ReproduceArgs {
    /// A built-in scenario name or a scenario file (TOML; see fixtures/scenarios/).
    #[arg(long, default_value = "kb836410")]
    scenario: String,
    /// Seed for every random choice (default: the scenario's own).
    #[arg(long, conflicts_with = "seeds")]
    seed: Option<u64>,
    /// Sweep: run every seed of A..B (inclusive), or of 1..N, in parallel, and summarise which
    /// seeds failed which checks (text or --format json).
    #[arg(long, value_name = "A..B|N")]
    seeds: Option<SeedRange>,
    /// With --seeds: run only shard i of N (every N-th seed from the i-th; i is 0-based, like a
    /// Kubernetes Indexed Job's JOB_COMPLETION_INDEX).
    #[arg(long, value_name = "i/N", requires = "seeds")]
    shard: Option<Shard>,
    /// With --seeds: threads to use (default: every core).
    #[arg(long, value_name = "N", requires = "seeds", value_parser = clap::value_parser!(u16).range(1..))]
    jobs: Option<u16>,
    /// Report format (with --seeds: text or json).
    #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
    format: ReportFormat,
    /// Also draw the time series as an SVG chart into FILE.
    #[arg(long, value_name = "FILE", conflicts_with = "seeds")]
    svg: Option<PathBuf>,
    /// List the built-in scenarios and exit.
    #[arg(long)]
    list: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ReportFormat {
    /// A readable timeline and verdict, fit for an incident ticket.
    Text,
    /// Everything, including the time series (stable field names).
    Json,
    /// One test case per expectation.
    Junit,
}

pub fn run(args: ReproduceArgs) -> CmdResult {
    if args.list {
        for (name, _) in BUILTINS {
            let s = Scenario::load(name)?;
            outln!("{name:<22} {}", s.description);
        }
        return Ok(());
    }
    let scenario = Scenario::load(&args.scenario)?;
    if let Some(range) = args.seeds {
        let json = match args.format {
            ReportFormat::Text => false,
            ReportFormat::Json => true,
            ReportFormat::Junit => {
                return Err(super::Failure::input(anyhow::anyhow!(
                    "--format junit reports one seed; with --seeds use text or json"
                )));
            }
        };
        let options = super::sweep::SweepOptions {
            source: args.scenario.clone(),
            range,
            shard: args.shard.unwrap_or_default(),
            jobs: args.jobs.map(usize::from),
            json,
        };
        return super::sweep::run(&scenario, &options);
    }
    let seed = args.seed.unwrap_or(scenario.seed);
    let mut report = sim::run(&scenario, seed)?;
    report.source.clone_from(&args.scenario);
    if let Some(path) = &args.svg {
        let chart = svg::render(&report)
            .map_err(|e| Failure::internal(anyhow::anyhow!("drawing the chart: {e}")))?;
        lcs_sim::atomic::atomic_write(path, chart.as_bytes(), None)
            .map_err(|e| Failure::internal(anyhow::anyhow!("writing {}: {e}", path.display())))?;
    }
    match args.format {
        ReportFormat::Text => out!("{}", text::render(&report)),
        ReportFormat::Json => outln!(
            "{}",
            serde_json::to_string_pretty(&report).map_err(super::exit::serialize)?
        ),
        ReportFormat::Junit => out!("{}", junit::render(&report)),
    }
    if report.passed() {
        Ok(())
    } else {
        Err(Failure {
            code: super::exit::FAILED,
            error: anyhow::anyhow!(
                "scenario {} (seed {seed}): {} expectation(s) failed",
                report.scenario,
                report.checks.iter().filter(|c| !c.passed).count()
            ),
        })
    }
}
