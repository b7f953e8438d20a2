//! `lcs-sim events DIR`: the application event log.

use super::out::outln;
use std::path::PathBuf;

use clap::Args;
use lcs_sim::deployment::Deployment;
use lcs_sim::eventlog::Level;
use time::format_description::well_known::Rfc3339;

use super::CmdResult;
use super::output::Format;

/// Show the deployment's application event log, oldest first (Event Viewer lists newest first:
/// a failed restart reads 14347, 14336, 14352 there).
#[derive(Debug, Args)]
#[command(after_help = "Example:\n  lcs-sim events demo --id 14352 --format json")]
pub struct EventsArgs {
    /// The deployment folder.
    dir: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
    /// Only these event ids (repeatable).
    #[arg(long = "id", value_name = "N")]
    ids: Vec<u32>,
}

/// The warning `events` and `doctor` both print for each line of the log they skipped; they
/// carry on with the rest.
pub(super) fn warn_damaged(damaged: &[lcs_sim::eventlog::DamagedLine]) {
    for d in damaged {
        eprintln!("warning: skipped a damaged line of the event log: {d}");
    }
}

pub fn run(args: EventsArgs) -> CmdResult {
    let d = Deployment::open(&args.dir)?;
    let contents = d.read_events()?;
    warn_damaged(&contents.damaged);
    let events: Vec<_> = contents
        .events
        .into_iter()
        .filter(|e| args.ids.is_empty() || args.ids.contains(&e.id))
        .collect();
    match args.format {
        Format::Json => outln!(
            "{}",
            serde_json::to_string_pretty(&events).map_err(super::exit::serialize)?
        ),
        Format::Text => {
            if events.is_empty() {
                outln!("No events.");
            }
            for e in &events {
                let level = match e.level {
                    Level::Information => "Information",
                    Level::Warning => "Warning",
                    Level::Error => "Error",
                };
                let time = e.time.format(&Rfc3339).unwrap_or_default();
                outln!(
                    "{time}  {level:<11}  {:>5}  {}  {}",
                    e.id,
                    e.source,
                    e.message
                );
                for key in [
                    "connection",
                    "issuer",
                    "serial",
                    "principal",
                    "error",
                    "occurrences",
                ] {
                    if let Some(v) = e.details.get(key) {
                        let v = v.as_str().map_or_else(|| v.to_string(), str::to_string);
                        outln!("      {key}: {v}");
                    }
                }
            }
        }
    }
    Ok(())
}
