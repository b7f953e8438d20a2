//! `lcs-sim serve DIR`: run a deployment live on real sockets.

use super::out::outln;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use lcs_sim::clock::{Clock, SystemClock};
use lcs_sim::deployment::Deployment;
use lcs_sim::server::{self, ServiceOptions};

use super::CmdResult;

/// Run the deployment's listeners on real sockets: TLS, mutual TLS and TCP from lcs.toml, each
/// TLS handshake checked against the store, so a `lcs-sim store renew` in another terminal hits
/// the running server.
#[derive(Debug, Args)]
#[command(
    after_help = "Example:\n  lcs-sim init demo && lcs-sim serve demo\n  # in another terminal:\n  sipsak -E tls --tls-ca-cert demo/ca.pem -U -i -H 127.0.0.1 -x 120 -s sip:alice@127.0.0.1:5061\n  lcs-sim store renew demo <THUMBPRINT>     # new TLS handshakes now fail\n  lcs-sim events demo                       # after a restart: 14352, 14336, 14347"
)]
pub struct ServeArgs {
    /// The deployment folder.
    dir: PathBuf,
    /// Write TLS secrets to FILE (SSLKEYLOGFILE format) so Wireshark/tshark can decrypt.
    #[arg(long, value_name = "FILE")]
    keylog: Option<PathBuf>,
    /// Write TLS secrets to the file named by the SSLKEYLOGFILE environment variable.
    #[arg(long, conflicts_with = "keylog")]
    sslkeylogfile: bool,
    /// No periodic status line.
    #[arg(long)]
    quiet: bool,
    /// Seconds between status lines.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    status_interval: u64,
    /// How often to look for store changes made by other processes, in milliseconds.
    #[arg(long, default_value_t = 250, value_parser = clap::value_parser!(u64).range(10..=60_000))]
    store_poll_ms: u64,
    /// Stop by itself after SECONDS (for scripts and tests); otherwise run until Ctrl-C.
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..=31_536_000))]
    duration: Option<u64>,
}

pub fn run(args: ServeArgs) -> CmdResult {
    let d = Deployment::open(&args.dir)?;
    let config = d.config()?;
    let key_log: Option<Arc<dyn rustls::KeyLog>> = match (&args.keylog, args.sslkeylogfile) {
        (Some(path), _) => Some(Arc::new(KeyLogTo::open(path)?)),
        (None, true) => match std::env::var_os("SSLKEYLOGFILE") {
            Some(p) => Some(Arc::new(KeyLogTo::open(&PathBuf::from(p))?)),
            None => {
                return Err(
                    anyhow::anyhow!("--sslkeylogfile given but SSLKEYLOGFILE is not set").into(),
                );
            }
        },
        (None, false) => None,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let options = ServiceOptions {
            key_log,
            ..ServiceOptions::default()
        };
        let poll = Duration::from_millis(args.store_poll_ms);
        let live = server::live::serve(&d, clock, options, poll).await?;
        let running = &live.running;
        outln!(
            "lcs-sim serving {} as {} ({})",
            config.service.server,
            config.service.principal,
            d.root().display()
        );
        for l in &running.listeners {
            outln!(
                "  listening  {:<20} {:<5} {}",
                l.id,
                l.transport.to_string(),
                l.addr
            );
        }
        for f in &running.failed {
            let ids: Vec<String> = f.events.iter().map(u32::to_string).collect();
            outln!(
                "  NOT STARTED {:<19} {} (events {})",
                f.id,
                f.cause,
                ids.join(", ")
            );
        }
        if !running.failed.is_empty() {
            outln!("  see `lcs-sim events {}`", d.root().display());
        }
        outln!("Ctrl-C stops.");
        let metrics = running.metrics.clone();
        let status = async {
            let mut tick = tokio::time::interval(Duration::from_secs(args.status_interval));
            tick.tick().await;
            loop {
                tick.tick().await;
                if !args.quiet {
                    outln!("{}", metrics.snapshot().status_line());
                }
            }
        };
        let stop = async {
            match args.duration {
                Some(s) => tokio::time::sleep(Duration::from_secs(s)).await,
                None => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        };
        tokio::select! {
            () = stop => {}
            () = status => {}
        }
        let summary = running.metrics.snapshot().status_line();
        live.stop().await;
        outln!("stopped. {summary}");
        Ok::<_, lcs_sim::deployment::DeploymentError>(())
    })?;
    Ok(())
}

/// Appends TLS secrets in NSS key log format to a file.
#[derive(Debug)]
struct KeyLogTo(std::sync::Mutex<std::fs::File>);

impl KeyLogTo {
    fn open(path: &std::path::Path) -> anyhow::Result<Self> {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("opening key log {}", path.display()))?;
        Ok(Self(std::sync::Mutex::new(f)))
    }
}

impl rustls::KeyLog for KeyLogTo {
    fn log(&self, label: &str, client_random: &[u8], secret: &[u8]) {
        use std::io::Write;
        let line = format!(
            "{label} {} {}\n",
            hex::encode(client_random),
            hex::encode(secret)
        );
        let _ = self
            .0
            .lock()
            .expect("key log lock")
            .write_all(line.as_bytes());
    }
}
