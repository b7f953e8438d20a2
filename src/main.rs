//! The `lcs-sim` command line: parse, run, map the outcome to an exit code.
//!
//! Exit codes (cli/exit.rs maps each error type to one): 0 success; 1 a check, finding, gate or
//! scenario expectation failed; 2 bad input (a flag, a deployment folder, a store or
//! configuration file), with a message saying what to do; 3 lcs-sim itself failed (a runtime, a
//! simulation, an output write, a full disk).

#![deny(clippy::disallowed_macros)]

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    cli::main()
}
