//! `lcs-sim doctor DIR`: diagnose a deployment's certificates, with the command that fixes each.

use super::out::outln;
use std::path::PathBuf;

use clap::Args;
use lcs_sim::clock::{Clock, SystemClock};
use lcs_sim::deployment::Deployment;
use lcs_sim::doctor::running::{self, Server};
use lcs_sim::doctor::{self, Finding, Inputs, Severity, Trust};
use serde::Serialize;

use super::output::Format;
use super::{CmdResult, Failure};

/// Diagnose a deployment: every connection and route's certificate, checked as the service
/// would use it (key readable by the service account, chain to ca.pem, dates, server name,
/// EKUs), references to renewed or unknown certificates, and, when `serve` runs, what the
/// running server actually holds (found through DIR/serve.json, asked on its admin endpoint).
/// Each finding names the connection and the certificate, says what is wrong and gives the
/// command that fixes it.
#[derive(Debug, Args)]
#[command(after_help = "\
Codes (errors unless marked):
  archived_reference        lcs.toml names a renewed (archived) certificate: a restart fails
  key_unreadable            the service account cannot open the key (KB836410)
  successor_key_unreadable  the renewed certificate's key is not readable either
  expired, not_yet_valid    outside the certificate's validity
  expiring                  (warning) expires within --warn-days
  name_mismatch             the certificate does not name [service] server
  eku_missing               no serverAuth (TLS) or clientAuth (MTLS, routes)
  chain_untrusted           does not chain to DIR/ca.pem
  unknown_certificate       lcs.toml names a certificate the store does not have
  running_differs           (warning) the running server holds another certificate
  not_started               the running server did not start the connection: restart serve
  key_missing               the certificate's key file is gone from the store (other checks skipped)

Each finding's remedy is a command to run: `lcs-sim fix DIR` (with `--live` when a server runs),
a renewal for dates, or which certificate to name in lcs.toml.

Exit status: 0 no errors (with --strict: no warnings either), 1 findings, 2 bad input.

Example (the KB836410 renewal, found and fixed):
  lcs-sim init demo
  lcs-sim store renew demo <THUMBPRINT>
  lcs-sim doctor demo          # exit 1: archived_reference, key_unreadable, ...
  lcs-sim fix demo
  lcs-sim doctor demo          # exit 0")]
pub struct DoctorArgs {
    /// The deployment folder.
    dir: PathBuf,
    /// Output format (json: {"findings": [...]}).
    #[arg(long, value_enum, default_value_t)]
    format: Format,
    /// Warn about certificates that expire within this many days.
    #[arg(long, default_value_t = 30, value_name = "DAYS",
          value_parser = clap::value_parser!(u32).range(0..=3650))]
    warn_days: u32,
    /// Exit 1 on warnings too.
    #[arg(long)]
    strict: bool,
}

#[derive(Serialize)]
struct Report<'a> {
    findings: &'a [Finding],
}

pub fn run(args: DoctorArgs) -> CmdResult {
    let d = Deployment::open(&args.dir)?;
    let config = d.config()?;
    let store = match d.store().load() {
        Ok(store) => store,
        Err(e) => {
            let missing = d.store().missing_keys();
            if missing.is_empty() {
                return Err(e.into());
            }
            let findings = doctor::missing_keys(&args.dir, &config, &missing);
            return report(&args, &config, &findings, "the store is incomplete");
        }
    };
    let contents = d.read_events()?;
    super::events::warn_damaged(&contents.damaged);
    let events = contents.events;
    let trust = Trust::load(&d.ca_path())?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(super::exit::runtime)?;
    let server = runtime.block_on(running::discover(d.root()));
    match &server {
        Server::Stale { reason } => {
            eprintln!("note: no server running ({reason}); checked the files only");
        }
        Server::Unresponsive { pid, admin } => eprintln!(
            "note: a server is running (pid {pid}) but did not answer on http://{admin} within {} s (stopped? `kill -CONT {pid}` resumes it); checked the files only",
            running::TIMEOUT.as_secs()
        ),
        _ => {}
    }
    let running = match &server {
        Server::Running(r) => Some(r),
        _ => None,
    };
    let now = SystemClock.now_utc();
    let findings = doctor::diagnose(&Inputs {
        dir: &args.dir,
        config: &config,
        store: &store,
        roots: &trust.roots,
        intermediates: &trust.intermediates,
        events: &events,
        running,
        now,
        warn_days: args.warn_days,
    });
    let server = match (&server, running) {
        (_, Some(r)) => format!("server pid {} (admin {})", r.pid, r.admin),
        (Server::Unresponsive { pid, .. }, None) => {
            format!("a server is running (pid {pid}) but did not answer")
        }
        _ => "no server running".into(),
    };
    report(&args, &config, &findings, &server)
}

/// Prints the findings in the format asked for; exit 1 on errors (or warnings with --strict).
fn report(
    args: &DoctorArgs,
    config: &lcs_sim::config::Config,
    findings: &[Finding],
    server: &str,
) -> CmdResult {
    match args.format {
        Format::Json => outln!(
            "{}",
            serde_json::to_string_pretty(&Report { findings }).map_err(super::exit::serialize)?
        ),
        Format::Text => {
            let checked: Vec<&str> = config.cert_refs().map(|(id, _)| id).collect();
            print_text(findings, &checked, server);
        }
    }
    let errors = count(findings, Severity::Error);
    let warnings = count(findings, Severity::Warning);
    if errors > 0 || (args.strict && warnings > 0) {
        return Err(Failure {
            code: super::exit::FAILED,
            error: anyhow::anyhow!(
                "{errors} error(s), {warnings} warning(s) in {}",
                args.dir.display()
            ),
        });
    }
    Ok(())
}

fn count(findings: &[Finding], severity: Severity) -> usize {
    findings.iter().filter(|f| f.severity == severity).count()
}

fn print_text(findings: &[Finding], checked: &[&str], server: &str) {
    for f in findings {
        outln!("{:<8} {:<25} {}", f.severity, f.code, f.connection);
        outln!("    {}", f.message);
        if let Some(c) = &f.certificate {
            match &c.thumbprint {
                Some(t) => outln!("    certificate  serial {} ({t})", c.serial),
                None => outln!("    certificate  serial {} (not in the store)", c.serial),
            }
        }
        outln!("    remedy       {}", f.remedy);
        outln!();
    }
    let errors = count(findings, Severity::Error);
    let warnings = count(findings, Severity::Warning);
    if findings.is_empty() {
        outln!(
            "No problems: {} checked; {server}.",
            if checked.is_empty() {
                "no connection uses a certificate".to_string()
            } else {
                checked.join(", ")
            }
        );
    } else {
        outln!(
            "{errors} error(s), {warnings} warning(s); checked {}; {server}.",
            checked.join(", ")
        );
    }
}
