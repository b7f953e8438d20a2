//! The `lcs-sim` command line: parse, run, map the outcome to an exit code.
//!
//! Exit codes: 0 success; 1 a check or scenario expectation failed; 2 bad input (a flag, a
//! deployment folder, a store or configuration file), with a message saying what to do.

#![deny(clippy::disallowed_macros)]

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    cli::main()
}
