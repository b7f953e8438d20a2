//! `lcs-sim fix DIR`: the KB836410 resolution on a deployment folder.

use super::out::outln;
use std::path::PathBuf;

use clap::Args;
use lcs_sim::certcheck::{Need, Problem};
use lcs_sim::clock::{Clock, SystemClock};
use lcs_sim::deployment::{Deployment, FixOnDiskError};
use lcs_sim::doctor::Trust;
use lcs_sim::fix;
use lcs_sim::server::admin::api::RebindStatus;
use lcs_sim::server::admin::client::{self, LiveFixError};

use super::{CmdResult, Failure};

/// Point every connection and route that uses a renewed certificate at its successor ("Change
/// Certificate" in the LCS admin tool), granting the service account read on the new key. Then
/// restart `serve`, or pass --live to have the running `serve` swap its certificates without a
/// restart. Without --connection every connection is fixed: forgetting the mutual-TLS
/// connection or a route is the classic partial fix. A certificate that is expired or not yet
/// valid is reported with the renewal that helps (exit 1): a rebind cannot fix it.
#[derive(Debug, Args)]
#[command(
    after_help = "Example:\n  lcs-sim fix demo --dry-run\n  lcs-sim fix demo --connection tls-5061 --to 7CB9     # a certificate chosen by hand\n  lcs-sim fix demo && lcs-sim serve demo\n  lcs-sim fix demo --live     # while `lcs-sim serve demo` runs: no restart\n\nExit codes: 0 fixed; 1 a certificate is expired or not yet valid (renew it), or (--live) the running server refused a connection (nothing was swapped)\nor a connection did not start in it (restart serve); 2 bad input (--to names a certificate that is unknown, archived or unfit for a connection: nothing was changed), or (--live) no server runs on DIR (nothing was changed), or it did not answer within 5 s."
)]
pub struct FixArgs {
    /// The deployment folder.
    dir: PathBuf,
    /// Only these connection or route ids (repeatable; default: every one).
    #[arg(long = "connection", value_name = "ID")]
    connections: Vec<String>,
    /// Point the --connection ids at this certificate (a thumbprint or a unique prefix, from
    /// `lcs-sim store list DIR`) instead of each one's successor: it must be active and fit each
    /// connection's use (chain, dates, name, EKUs); the service account is granted read on its
    /// key.
    #[arg(long, value_name = "THUMBPRINT", requires = "connections")]
    to: Option<String>,
    /// Show the plan, change nothing.
    #[arg(long, conflicts_with = "live")]
    dry_run: bool,
    /// Then have the running `lcs-sim serve DIR` swap to the fixed certificates live (found
    /// through DIR/serve.json; POST /rebind on its admin endpoint). Established connections
    /// carry on; new handshakes present the renewed certificate.
    #[arg(long)]
    live: bool,
}

pub fn run(args: FixArgs) -> CmdResult {
    if args.live {
        return run_live(&args);
    }
    let d = Deployment::open(&args.dir)?;
    let target = target(&args, &d)?;
    let plan = d
        .fix_with(&args.connections, &target, args.dry_run)
        .map_err(fix_error)?;
    let config = d.config()?;
    let invalid = fix::outside_validity(&plan, &d.store().load()?, SystemClock.now_utc());
    if plan.is_empty() && invalid.is_empty() {
        outln!(
            "Nothing to fix: every connection names an active certificate whose key {} can open.",
            config.service.principal
        );
        return Ok(());
    }
    print_plan(&plan);
    if plan.is_empty() {
        // Only certificates a rebind cannot help.
    } else if args.dry_run {
        outln!("(dry run: nothing changed)");
    } else {
        if plan.rebinds.is_empty() {
            // Only grants: a running server re-checks the key's ACL at every handshake.
            outln!(
                "Fixed: {} can read the key again; a running `lcs-sim serve {}` uses it from its next handshake, no restart needed.",
                plan.principal,
                d.root().display()
            );
        } else {
            outln!(
                "Fixed. Restart `lcs-sim serve {}` for the listeners to use the renewed certificate, or run `lcs-sim fix {} --live` while it runs.",
                d.root().display(),
                d.root().display()
            );
        }
        not_asked(&config, &plan, &args.connections);
    }
    if invalid.is_empty() {
        return Ok(());
    }
    report_invalid(&invalid, &d)
}

/// What the fix points connections at: each one's successor, or the `--to` certificate once
/// [`fix::choose`] has checked it fits every connection asked for (exit 2 if not).
fn target(args: &FixArgs, d: &Deployment) -> Result<fix::Target, Failure> {
    let Some(query) = &args.to else {
        return Ok(fix::Target::Successor);
    };
    let config = d.config()?;
    let store = d.store().load()?;
    let trust = Trust::load(&d.ca_path()).map_err(Failure::input)?;
    let now = SystemClock.now_utc();
    let need = |usage| Need {
        principal: &config.service.principal,
        server_name: &config.service.server,
        usage,
        roots: &trust.roots,
        intermediates: &trust.intermediates,
        now,
    };
    let chosen = fix::choose(&config, &store, &args.connections, query, need)
        .map_err(|e| fix_error(e.into()))?;
    Ok(fix::Target::Certificate(chosen))
}

/// Certificates a rebind cannot help: expired or not yet valid. Exit 1: not fixed.
fn report_invalid(invalid: &[fix::OutsideValidity], d: &Deployment) -> CmdResult {
    let dir = d.root().display();
    for i in invalid {
        let what = match &i.problem {
            Problem::NotYetValid { .. } => "not yet valid",
            _ => "expired",
        };
        outln!(
            "{what:<13} {:<20} {} {}",
            i.connection,
            i.thumbprint,
            i.problem
        );
    }
    let mut thumbs: Vec<&str> = invalid.iter().map(|i| i.thumbprint.as_str()).collect();
    thumbs.dedup();
    for t in thumbs {
        outln!(
            "  a rebind cannot help: renew it, then fix: lcs-sim store renew {dir} {t} --policy new-key-keep-acl && lcs-sim fix {dir}"
        );
    }
    Err(Failure {
        code: super::exit::FAILED,
        error: anyhow::anyhow!(
            "not fixed: {} use a certificate outside its validity",
            invalid
                .iter()
                .map(|i| i.connection.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    })
}

fn fix_error(e: FixOnDiskError) -> Failure {
    if let FixOnDiskError::Unresolved { references, .. } = &e {
        for (id, reference) in references {
            eprintln!("{id}: {reference} names no certificate in the store, active or archived");
        }
    }
    Failure {
        code: super::exit::INPUT,
        error: e.into(),
    }
}

fn print_plan(plan: &fix::FixPlan) {
    for r in &plan.rebinds {
        outln!(
            "rebind {:<20} serial {} -> {} ({})",
            r.connection,
            r.from.serial,
            r.to.serial,
            r.thumbprint
        );
    }
    for t in &plan.grants {
        outln!("grant  {} read on the key of {t}", plan.principal);
    }
}

/// "Not rebound (not asked for)" when `--connection` left some out.
fn not_asked(config: &lcs_sim::config::Config, plan: &fix::FixPlan, asked: &[String]) {
    let untouched: Vec<&str> = config
        .cert_refs()
        .map(|(c, _)| c)
        .filter(|c| !plan.rebinds.iter().any(|r| r.connection == *c))
        .collect();
    if !asked.is_empty() && !untouched.is_empty() {
        outln!("Not rebound (not asked for): {}", untouched.join(", "));
    }
}

fn run_live(args: &FixArgs) -> CmdResult {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(super::exit::runtime)?;
    let target = target(args, &Deployment::open(&args.dir)?)?;
    let outcome = runtime
        .block_on(client::fix_live_to(&args.dir, &args.connections, &target))
        .map_err(|e| match e {
            LiveFixError::Fix(e) => fix_error(e),
            LiveFixError::NoAnswer { .. } => Failure {
                code: super::exit::INPUT,
                error: e.into(),
            },
            LiveFixError::Admin { .. } => Failure {
                code: super::exit::FAILED,
                error: e.into(),
            },
            other => Failure {
                code: super::exit::INPUT,
                error: other.into(),
            },
        })?;
    let d = Deployment::open(&args.dir)?;
    if outcome.plan.is_empty() {
        outln!("lcs.toml: nothing to fix on disk.");
    } else {
        print_plan(&outcome.plan);
        not_asked(&d.config()?, &outcome.plan, &args.connections);
    }
    // The same checks as plain fix: a certificate outside its validity is not fixed by a swap.
    let invalid = fix::outside_validity(&outcome.plan, &d.store().load()?, SystemClock.now_utc());
    let serve = format!("lcs-sim serve {}", args.dir.display());
    for r in &outcome.response.results {
        let serials = match (&r.from, &r.to) {
            (Some(f), Some(t)) => format!("serial {} -> {}", f.serial, t.serial),
            _ => String::new(),
        };
        let status = match r.status {
            RebindStatus::Rebound => "rebound",
            RebindStatus::Unchanged => "unchanged",
            RebindStatus::Refused => "REFUSED",
            RebindStatus::Held => "held",
            RebindStatus::NotStarted => {
                let why = r.reason.as_deref().unwrap_or("not_started");
                outln!(
                    "live   {:<20} not started ({why}): restart serve ({serve})",
                    r.connection
                );
                continue;
            }
        };
        let why = match (&r.reason, &r.message) {
            (Some(reason), Some(m)) => format!("({reason}) {m}"),
            _ => String::new(),
        };
        outln!("live   {:<20} {status:<9} {serials}{why}", r.connection);
    }
    if outcome.refused_any() {
        return Err(Failure {
            code: super::exit::FAILED,
            error: anyhow::anyhow!(
                "the running server refused the swap; nothing was swapped (lcs.toml is fixed: a restart would use it)"
            ),
        });
    }
    let not_started = outcome.not_started();
    if !not_started.is_empty() {
        return Err(Failure {
            code: super::exit::FAILED,
            error: anyhow::anyhow!(
                "not fixed live: {} did not start in the running server; stop it and restart: {serve}",
                not_started.join(", ")
            ),
        });
    }
    if !invalid.is_empty() {
        return report_invalid(&invalid, &d);
    }
    if outcome.rebound_any() {
        outln!(
            "Fixed live: new handshakes present the renewed certificate; open connections carry on."
        );
    } else {
        outln!(
            "Nothing changed live: the running server already presents the configured certificates."
        );
    }
    Ok(())
}
