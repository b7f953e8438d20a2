//! `lcs-sim store ...`: inspect and change the emulated machine certificate store.

use super::out::{out, outln};
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand, ValueEnum};
use lcs_sim::clock::{Clock, SystemClock};
use lcs_sim::config::Config;
use lcs_sim::deployment::Deployment;
use lcs_sim::pki::to_pem;
use lcs_sim::store::{DEFAULT_PRINCIPALS, RenewalPolicy, Right};

use super::CmdResult;
use super::output::{CertView, Format};

/// Inspect and change the deployment's certificate store (LocalMachine\My with per-key ACLs).
#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// List certificates with their key ACLs (archived ones with --all) and their status:
    /// active, ARCHIVED, EXPIRED or NOT YET VALID (JSON: `status`, `validity`).
    #[command(after_help = "Example:\n  lcs-sim store list demo --all --format json")]
    List {
        /// The deployment folder.
        dir: PathBuf,
        /// Include archived (renewed) certificates.
        #[arg(long)]
        all: bool,
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Show one certificate in detail (a unique thumbprint prefix will do).
    Show {
        /// The deployment folder.
        dir: PathBuf,
        /// Thumbprint or a unique prefix of one.
        thumbprint: String,
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Write a certificate as PEM to stdout (`| openssl x509 -noout -text` reads it).
    Export {
        /// The deployment folder.
        dir: PathBuf,
        /// Thumbprint or a unique prefix of one.
        thumbprint: String,
    },
    /// Grant a principal a right on a certificate's private key. The principal must be SYSTEM,
    /// Administrators, the service principal of lcs.toml or already on some key's ACL, unless
    /// --new-principal.
    #[command(
        after_help = "Example (what \"Change Certificate\" does for the service account):\n  lcs-sim store grant demo 7A3F RTCService --right read\n  lcs-sim store grant demo 7A3F Ops --right full_control --new-principal"
    )]
    Grant(AclArgs),
    /// Revoke a right (or, without --right, every right) on a certificate's private key. The
    /// principal must be one the deployment knows (see grant).
    Revoke(AclArgs),
    /// Renew a certificate as Group Policy auto-enrollment does.
    #[command(
        after_help = "Policies:\n  same-key-reset-acl   keep the key, reset its ACL to SYSTEM + Administrators (KB836410; the default)\n  new-key-default-acl  new key with only the default ACL\n  new-key-keep-acl     new key, old ACL copied (the well-behaved case)\n\nThe old certificate is archived and linked to the new one; event 1001 is logged."
    )]
    Renew {
        /// The deployment folder.
        dir: PathBuf,
        /// Thumbprint or a unique prefix of one.
        thumbprint: String,
        /// What happens to the key and its ACL.
        #[arg(long, default_value = "same-key-reset-acl", value_parser = policy_parser())]
        policy: RenewalPolicy,
    },
}

#[derive(Debug, Args)]
pub struct AclArgs {
    /// The deployment folder.
    dir: PathBuf,
    /// Thumbprint or a unique prefix of one.
    thumbprint: String,
    /// Account or group, e.g. RTCService.
    principal: String,
    /// The right (grant: default read; revoke: default every right).
    #[arg(long, value_enum)]
    right: Option<RightArg>,
    /// Accept a principal the deployment does not know yet (not SYSTEM, Administrators, the
    /// service principal of lcs.toml, or on any key's ACL). Without it such a name is refused
    /// as a likely typo.
    #[arg(long)]
    new_principal: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RightArg {
    /// Use the key.
    Read,
    /// Everything, including changing the ACL.
    #[value(name = "full_control", alias = "full-control")]
    FullControl,
}

impl From<RightArg> for Right {
    fn from(r: RightArg) -> Right {
        match r {
            RightArg::Read => Right::Read,
            RightArg::FullControl => Right::FullControl,
        }
    }
}

fn policy_parser() -> impl clap::builder::TypedValueParser<Value = RenewalPolicy> {
    use clap::builder::TypedValueParser as _;
    clap::builder::PossibleValuesParser::new([
        "same-key-reset-acl",
        "new-key-default-acl",
        "new-key-keep-acl",
    ])
    .map(|s| {
        s.parse::<RenewalPolicy>()
            .expect("only listed values get here")
    })
}

pub fn run(cmd: StoreCommand) -> CmdResult {
    match cmd {
        StoreCommand::List { dir, all, format } => list(&dir, all, format),
        StoreCommand::Show {
            dir,
            thumbprint,
            format,
        } => show(&dir, &thumbprint, format),
        StoreCommand::Export { dir, thumbprint } => {
            let store = open(&dir)?.store().load()?;
            out!("{}", to_pem("CERTIFICATE", &store.find(&thumbprint)?.der));
            Ok(())
        }
        StoreCommand::Grant(a) => {
            let right = a.right.map_or(Right::Read, Right::from);
            let d = open(&a.dir)?;
            check_principal(&d, &a)?;
            let (thumb, changed, who) = d.store().update(|s| {
                let t = s.find(&a.thumbprint)?.thumbprint().clone();
                let changed = s.grant(&t, &a.principal, right)?;
                Ok((t, changed, as_stored(s, &a.principal)))
            })?;
            let verb = if changed {
                "Granted"
            } else {
                "Already granted:"
            };
            outln!("{verb} {who} {right} on the key of {thumb}");
            Ok(())
        }
        StoreCommand::Revoke(a) => {
            let right = a.right.map(Right::from);
            let d = open(&a.dir)?;
            check_principal(&d, &a)?;
            let (thumb, changed, who) = d.store().update(|s| {
                let who = as_stored(s, &a.principal);
                let t = s.find(&a.thumbprint)?.thumbprint().clone();
                let changed = s.revoke(&t, &a.principal, right)?;
                Ok((t, changed, who))
            })?;
            let what = right.map_or("every right".to_string(), |r| r.to_string());
            if changed {
                outln!("Revoked {what} of {who} on the key of {thumb}");
            } else {
                outln!("Nothing to revoke: {who} had no {what} on the key of {thumb}");
            }
            Ok(())
        }
        StoreCommand::Renew {
            dir,
            thumbprint,
            policy,
        } => renew(&dir, &thumbprint, policy),
    }
}

/// A principal as the store spells it (ACLs match names in any case, as Windows does): what the
/// user typed when no ACL names it.
fn as_stored(store: &lcs_sim::store::Store, principal: &str) -> String {
    store
        .principals()
        .into_iter()
        .find(|p| p.eq_ignore_ascii_case(principal))
        .unwrap_or(principal)
        .to_owned()
}

fn open(dir: &Path) -> Result<Deployment, super::Failure> {
    Ok(Deployment::open(dir)?)
}

/// Refuses an empty principal, and one the deployment does not know unless `--new-principal`:
/// `store grant demo 7A3F RTCSevice` must not quietly add a typo to the ACL. Known are SYSTEM,
/// Administrators, the service principal of lcs.toml and everyone on some key's ACL.
fn check_principal(d: &Deployment, a: &AclArgs) -> CmdResult {
    check_principal_name(d, &a.principal, a.new_principal)
}

/// [`check_principal`] for a name from elsewhere (`load --at T=grant:PRINCIPAL`).
pub(super) fn check_principal_name(
    d: &Deployment,
    principal: &str,
    new_principal: bool,
) -> CmdResult {
    if principal.trim().is_empty() || principal.chars().any(char::is_control) {
        return Err(super::Failure::input(anyhow::anyhow!(
            "the principal must be an account or group name, e.g. RTCService; got {principal:?}; nothing was changed"
        )));
    }
    if new_principal {
        return Ok(());
    }
    let store = d.store().load()?;
    let config = d.config().ok();
    let mut known: Vec<&str> = DEFAULT_PRINCIPALS.to_vec();
    if let Some(c) = &config {
        known.push(&c.service.principal);
    }
    for p in store.principals() {
        if !known.iter().any(|k| k.eq_ignore_ascii_case(p)) {
            known.push(p);
        }
    }
    if known.iter().any(|k| k.eq_ignore_ascii_case(principal)) {
        return Ok(());
    }
    let service = match &config {
        Some(c) => format!("the service principal ({})", c.service.principal),
        None => "the service principal (lcs.toml cannot be read)".to_string(),
    };
    Err(super::Failure::input(anyhow::anyhow!(
        "unknown principal `{principal}`: it is not SYSTEM, Administrators, {service} or on any key's ACL \
         (known: {}); check the spelling, or pass --new-principal to add a new account; nothing was changed",
        known.join(", ")
    )))
}

/// The configuration, if it can be read; store commands still work without it.
fn config_if_any(d: &Deployment) -> Option<Config> {
    match d.config() {
        Ok(c) => Some(c),
        Err(e) => {
            eprintln!("warning: {e}\nwarning: not showing which connections use each certificate");
            None
        }
    }
}

fn list(dir: &Path, all: bool, format: Format) -> CmdResult {
    let d = open(dir)?;
    let store = d.store().load()?;
    let config = config_if_any(&d);
    let now = SystemClock.now_utc();
    let views: Vec<CertView> = store
        .list(all)
        .map(|c| CertView::new(c, &store, config.as_ref(), now))
        .collect();
    match format {
        Format::Json => outln!(
            "{}",
            serde_json::to_string_pretty(&views).map_err(super::exit::serialize)?
        ),
        Format::Text => {
            if views.is_empty() {
                outln!("No certificates{}.", if all { "" } else { " (try --all)" });
            }
            for v in &views {
                outln!("{}", v.to_text(false));
            }
            let archived = store.list(true).filter(|c| c.archived).count();
            if !all && archived > 0 {
                outln!("({archived} archived certificate(s) not shown; --all shows them)");
            }
        }
    }
    Ok(())
}

fn show(dir: &Path, thumbprint: &str, format: Format) -> CmdResult {
    let d = open(dir)?;
    let store = d.store().load()?;
    let config = config_if_any(&d);
    let view = CertView::new(
        store.find(thumbprint)?,
        &store,
        config.as_ref(),
        SystemClock.now_utc(),
    );
    match format {
        Format::Json => outln!(
            "{}",
            serde_json::to_string_pretty(&view).map_err(super::exit::serialize)?
        ),
        Format::Text => out!("{}", view.to_text(true)),
    }
    Ok(())
}

fn renew(dir: &Path, thumbprint: &str, policy: RenewalPolicy) -> CmdResult {
    let d = open(dir)?;
    let r = d.renew(thumbprint, policy, SystemClock.now_utc())?;
    outln!("Renewed {} -> {} ({policy})", r.old, r.new);
    outln!(
        "  old serial {} is archived; new serial {}",
        r.old_serial,
        r.new_serial
    );
    let store = d.store().load()?;
    if let Some(config) = config_if_any(&d) {
        let principal = &config.service.principal;
        // A running server keeps the certificate it found at start and opens its key on every
        // handshake: what matters now is the old key, at the next restart the new one.
        if !store.can_open(&r.old, principal) {
            outln!(
                "  {principal} can no longer read the key: running TLS listeners fail new handshakes"
            );
        } else {
            outln!(
                "  {principal} can still read the old key: running listeners carry on until the next restart"
            );
        }
        if !store.can_open(&r.new, principal) {
            outln!(
                "  {principal} has no read on the new key: rebinding must also grant it (`lcs-sim fix` does both)"
            );
        }
        let stale: Vec<&str> = config
            .cert_refs()
            .filter(|(_, c)| c.serial == r.old_serial && c.issuer == r.issuer)
            .map(|(id, _)| id)
            .collect();
        if !stale.is_empty() {
            outln!(
                "  still configured with the old serial: {} (they will not start after a restart)",
                stale.join(", ")
            );
        }
    }
    outln!(
        "  logged event 1001 (certificate replaced) to {}",
        d.event_log().path().display()
    );
    Ok(())
}
