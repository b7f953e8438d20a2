//! The deterministic replay of KB836410: the real server, store and SIP code on a simulated
//! network and virtual time, from one seed.
//!
//! turmoil (tokio-rs) provides the network and the clock; everything above it is the same code
//! `lcs-sim serve` runs. A [`Scenario`] says who uses the server and what happens when (renewal,
//! restarts, fix, live rebind); [`run`] plays it and returns a [`Report`] whose symptoms,
//! verdict and checks are computed from what the emulated clients and the event log recorded.
//! The same seed gives the same report, byte for byte, and every verdict must hold on every
//! seed: [`sweep`] runs a scenario over a range of seeds in parallel (`reproduce --seeds`).

pub mod applied;
pub mod net;
pub mod output;
pub mod peer;
pub mod record;
pub mod report;
pub mod runner;
pub mod scenario;
pub mod sweep;
pub mod user;
pub mod world;

pub use report::Report;
pub use runner::SimError;
pub use scenario::{Scenario, ScenarioError};

/// Plays `scenario` with `seed` and reports.
pub fn run(scenario: &Scenario, seed: u64) -> Result<Report, SimError> {
    let outcome = runner::run(scenario, seed)?;
    Ok(report::build(scenario, seed, &outcome))
}
