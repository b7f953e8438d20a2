//! `lcs-sim init DIR`: create a ready deployment folder.

use super::out::outln;
use std::path::PathBuf;

use clap::{Args, ValueEnum};
use lcs_sim::clock::{Clock, SystemClock};
use lcs_sim::deployment::{Deployment, InitOptions};
use lcs_sim::pki::KeyAlgorithm;
use lcs_sim::server::admin;

use super::{CmdResult, Failure};

/// Key algorithm of the server certificate.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum KeyArg {
    /// ECDSA P-256 (fast).
    #[value(name = "ecdsa-p256")]
    EcdsaP256,
    /// RSA 2048, as Windows templates of the era issued.
    #[value(name = "rsa-2048")]
    Rsa2048,
}

/// Create a deployment: a test PKI, a certificate store whose server key grants the service
/// account read, and an lcs.toml whose TLS, mutual-TLS connections and federation route name the
/// certificate by issuer + serial.
#[derive(Debug, Args)]
#[command(
    after_help = "Example:\n  lcs-sim init demo && lcs-sim store list demo\n\nExit codes: 0 created; 1 --force on a folder a running `lcs-sim serve` uses (it holds DIR/serve.lock: stop it first); 2 bad input, or the folder is not empty and --force was not given."
)]
pub struct InitArgs {
    /// The folder to create (must be empty or missing, unless --force).
    dir: PathBuf,
    /// SIP domain.
    #[arg(long, default_value = "contoso.com")]
    domain: String,
    /// Server host name; the certificate is for SERVER.DOMAIN.
    #[arg(long, default_value = "lcs01")]
    server: String,
    /// TLS listening port (Windows Messenger clients).
    #[arg(long, default_value_t = 5061)]
    tls_port: u16,
    /// Mutual-TLS listening port (servers, federation).
    #[arg(long, default_value_t = 5062)]
    mtls_port: u16,
    /// TCP listening port.
    #[arg(long, default_value_t = 5060)]
    tcp_port: u16,
    /// Key algorithm of the server certificate.
    #[arg(long, value_enum, default_value = "ecdsa-p256")]
    key: KeyArg,
    /// The service account that needs read on the private key.
    #[arg(long, default_value = "RTCService")]
    principal: String,
    /// Validity of the server certificate, in days.
    #[arg(long, default_value_t = 365, value_parser = clap::value_parser!(u32).range(1..=3650))]
    validity_days: u32,
    /// The federated domain reached over a mutual-TLS static route.
    #[arg(long, default_value = "fabrikam.com")]
    federated_domain: String,
    /// Address of the federation peer (host:port).
    #[arg(long, default_value = "127.0.0.1:5071")]
    peer_address: String,
    /// Port of `serve`'s admin endpoint on 127.0.0.1 (/healthz, /metrics, /certs, POST
    /// /rebind); 0 picks a free one at each start (serve prints it, DIR/serve.json records it).
    #[arg(long, default_value_t = 5080)]
    admin_port: u16,
    /// Replace the deployment in a non-empty folder (its store, PKI, log and lcs.toml).
    #[arg(long)]
    force: bool,
}

pub fn run(args: InitArgs) -> CmdResult {
    for (flag, value) in [
        ("--domain", &args.domain),
        ("--server", &args.server),
        ("--federated-domain", &args.federated_domain),
    ] {
        let ok = !value.is_empty()
            && value
                .split('.')
                .all(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
        if !ok {
            return Err(super::Failure::input(anyhow::anyhow!(
                "{flag} `{value}` is not a DNS name (letters, digits, '-' and dots)"
            )));
        }
    }
    if args.principal.trim().is_empty() {
        return Err(super::Failure::input(anyhow::anyhow!(
            "--principal must name the service account"
        )));
    }
    let opts = InitOptions {
        domain: args.domain,
        server: args.server,
        tls_port: args.tls_port,
        mtls_port: args.mtls_port,
        tcp_port: args.tcp_port,
        key: match args.key {
            KeyArg::EcdsaP256 => KeyAlgorithm::EcdsaP256,
            KeyArg::Rsa2048 => KeyAlgorithm::Rsa2048,
        },
        principal: args.principal,
        validity_days: args.validity_days,
        federated_domain: args.federated_domain,
        peer_address: args.peer_address,
        admin_port: args.admin_port,
        force: args.force,
    };
    // A running `serve` holds DIR/serve.lock: replacing its deployment under it would leave it
    // serving keys that are gone. Held until init is done, so no serve starts half-way either.
    let _serve_lock = if args.force && args.dir.join(admin::SERVE_LOCK).exists() {
        match admin::ServeLock::acquire(&args.dir) {
            Ok(lock) => Some(lock),
            Err(e @ admin::ServeFileError::Locked { .. }) => {
                return Err(Failure {
                    code: super::exit::FAILED,
                    error: anyhow::anyhow!(
                        "{e}: init --force will not replace a deployment a server is using"
                    ),
                });
            }
            Err(e) => return Err(e.into()),
        }
    } else {
        None
    };
    let (deployment, report) = Deployment::init(&args.dir, &opts, SystemClock.now_utc())?;
    let dir = deployment.root().display();
    outln!("Created deployment {dir} for {}", report.fqdn);
    outln!("  server certificate  {}", report.thumbprint);
    outln!("  referenced as       {}", report.cert_ref);
    outln!(
        "  key ACL             SYSTEM, Administrators full_control; {} read",
        opts.principal
    );
    outln!("  clients trust       {}", deployment.ca_path().display());
    outln!();
    outln!("Next:");
    outln!("  lcs-sim store list {dir}");
    outln!(
        "  lcs-sim store renew {dir} {}   # what auto-enrollment does",
        &report.thumbprint.as_str()[..8]
    );
    Ok(())
}
