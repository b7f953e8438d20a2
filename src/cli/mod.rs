//! Subcommands, one file each. Each parses its flags (clap), turns them into validated options,
//! and runs; errors come back as [`Failure`] with the exit code they deserve.

mod args;
mod doctor;
mod events;
mod exit;
mod fix;
mod init;
mod load;
mod out;
mod output;
mod reproduce;
mod serve;
mod store;
mod sweep;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub use exit::Failure;

/// The result of a command.
pub type CmdResult = Result<(), Failure>;

#[derive(Debug, Parser)]
#[command(
    name = "lcs-sim",
    version,
    about = "Emulate KB836410: a certificate renewal that loses the private key's ACL and silently kills a TLS listener",
    long_about = "lcs-sim emulates Microsoft KB836410 (\"Live Communications Server stops listening on the \
TLS listening port\"): auto-enrollment renews the server certificate while the service runs, \
the renewal resets the private key's ACL, the service account can no longer open the key, \
and TLS handshakes fail until every connection is rebound to the renewed certificate.",
    after_help = "Try it:\n  lcs-sim init demo\n  lcs-sim store list demo\n  lcs-sim store renew demo <THUMBPRINT>\n  lcs-sim store list demo --all"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Init(init::InitArgs),
    #[command(subcommand)]
    Store(store::StoreCommand),
    Reproduce(reproduce::ReproduceArgs),
    Serve(serve::ServeArgs),
    Events(events::EventsArgs),
    Fix(fix::FixArgs),
    Doctor(doctor::DoctorArgs),
    #[command(subcommand)]
    Load(load::LoadCommand),
}

/// Runs the command line and returns the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Init(args) => init::run(args),
        Command::Store(cmd) => store::run(cmd),
        Command::Reproduce(args) => reproduce::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Events(args) => events::run(args),
        Command::Fix(args) => fix::run(args),
        Command::Doctor(args) => doctor::run(args),
        Command::Load(cmd) => load::run(cmd),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("error: {}", exit::message(&failure.error));
            ExitCode::from(failure.code)
        }
    }
}
