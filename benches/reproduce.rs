//! How fast `lcs-sim reproduce` replays virtual time.
//!
//! Goal (issue 4): the default scenario (two virtual hours, 200 users) at 3,600 simulated
//! seconds per wall second or better on 2 cores. Measured side by side in one process with a
//! floor: the same two hours with a single user, which is what stepping turmoil's hosts costs
//! before any user does anything.
//!
//! Run with `cargo bench --bench reproduce` (`LCS_BENCH_ROUNDS`, default 5).
//!
//! Besides wall time it reports the process's CPU time per run (Linux: `utime + stime` from
//! `/proc/self/stat`, in the kernel's 100 Hz clock ticks), because on a shared machine the wall
//! time of a single-threaded run mostly measures the wait for a core: the simulation runs on one
//! thread, so on an idle core its wall time is its CPU time.

use std::time::Duration;

use lcs_sim::clock::monotonic_now;
use lcs_sim::sim::{self, Scenario};

/// CPU time of this process so far (user + system), if the kernel says.
fn cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

/// Wall time and CPU time of one run.
fn time_run(s: &Scenario) -> (Duration, Option<Duration>) {
    let cpu0 = cpu_time();
    let start = monotonic_now();
    let report = sim::run(s, s.seed).expect("the scenario runs");
    let took = monotonic_now() - start;
    let cpu = cpu0.zip(cpu_time()).map(|(a, b)| b - a);
    assert!(
        report.passed() || s.name != "kb836410",
        "the default scenario's expectations hold"
    );
    (took, cpu)
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
    let mut full_cpu = Vec::new();
    let mut base_cpu = Vec::new();
    for _ in 0..rounds {
        let (wall, cpu) = time_run(&default);
        full.push(wall);
        full_cpu.extend(cpu);
        let (wall, cpu) = time_run(&floor);
        base.push(wall);
        base_cpu.extend(cpu);
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
    if full_cpu.len() == rounds && base_cpu.len() == rounds {
        let (fc, bc) = (median(full_cpu.clone()), median(base_cpu.clone()));
        println!(
            "CPU time (median): default {:.2} s = {:.0} sim s per CPU s; floor {:.2} s = {:.0}",
            fc.as_secs_f64(),
            virtual_s / fc.as_secs_f64(),
            bc.as_secs_f64(),
            virtual_s / bc.as_secs_f64()
        );
        println!(
            "all rounds, CPU: default {:?}",
            full_cpu
                .iter()
                .map(|d| format!("{:.2}", d.as_secs_f64()))
                .collect::<Vec<_>>()
        );
    }
    println!(
        "goal: >= 3600 sim s per wall s -> {}",
        if virtual_s / f.as_secs_f64() >= 3600.0 {
            "met"
        } else {
            "NOT met"
        }
    );
}
