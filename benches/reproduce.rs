//! How fast `lcs-sim reproduce` replays virtual time.
//!
//! Goal (issue 4): the default scenario (two virtual hours, 200 users) at 3,600 simulated
//! seconds per wall second or better on 2 cores. Measured side by side in one process with a
//! floor: the same two hours with a single user, which is what stepping turmoil's hosts costs
//! before any user does anything.
//!
//! Run with `cargo bench --bench reproduce` (`LCS_BENCH_ROUNDS`, default 5).

use std::time::Duration;

use lcs_sim::clock::monotonic_now;
use lcs_sim::sim::{self, Scenario};

fn time_run(s: &Scenario) -> Duration {
    let start = monotonic_now();
    let report = sim::run(s, s.seed).expect("the scenario runs");
    let took = monotonic_now() - start;
    assert!(
        report.passed() || s.name != "kb836410",
        "the default scenario's expectations hold"
    );
    took
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let rounds: usize = std::env::var("LCS_BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let default = Scenario::load("kb836410").unwrap();
    let mut floor = default.clone();
    floor.name = "floor".into();
    floor.users.count = 1;
    floor.users.hosts = 1;
    floor.steps.clear();

    let mut full = Vec::new();
    let mut base = Vec::new();
    for _ in 0..rounds {
        full.push(time_run(&default));
        base.push(time_run(&floor));
    }
    let virtual_s = default.duration.as_secs_f64();
    let (f, b) = (median(full.clone()), median(base.clone()));
    println!(
        "reproduce kb836410: {} users on {} hosts, {} virtual seconds, tick {:?}",
        default.users.count, default.users.hosts, virtual_s, default.network.tick
    );
    println!(
        "{:<28} {:>10} {:>22}",
        "run", "wall (s)", "sim s per wall s"
    );
    for (name, d) in [
        ("default scenario (median)", f),
        ("floor: 1 user, no steps", b),
    ] {
        println!(
            "{name:<28} {:>10.2} {:>22.0}",
            d.as_secs_f64(),
            virtual_s / d.as_secs_f64()
        );
    }
    println!(
        "all rounds: default {:?}, floor {:?}",
        full.iter()
            .map(|d| format!("{:.2}", d.as_secs_f64()))
            .collect::<Vec<_>>(),
        base.iter()
            .map(|d| format!("{:.2}", d.as_secs_f64()))
            .collect::<Vec<_>>()
    );
    println!(
        "goal: >= 3600 sim s per wall s -> {}",
        if virtual_s / f.as_secs_f64() >= 3600.0 {
            "met"
        } else {
            "NOT met"
        }
    );
}
