//! `lcs-sim serve DIR`: run a deployment live on real sockets.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use lcs_sim::clock::{Clock, SystemClock};
use lcs_sim::deployment::Deployment;
use lcs_sim::eventlog::{Event, ids};
use lcs_sim::server::admin::{self, ServeFile, ServeLock};
use lcs_sim::server::{self, ServiceOptions};

use super::args::{duration_between, positive_duration};
use super::{CmdResult, Failure};

/// Set when standard output has gone (`serve D | head -3`): `serve` stops printing and shuts
/// down cleanly (stop event, serve.json removed, exit 0) instead of exiting on the spot.
static STDOUT_GONE: AtomicBool = AtomicBool::new(false);

/// Prints a line unless standard output has gone; notes it when it goes.
fn say_line(args: std::fmt::Arguments<'_>) {
    if !STDOUT_GONE.load(Ordering::Relaxed) && !super::out::try_write(args) {
        STDOUT_GONE.store(true, Ordering::Relaxed);
    }
}

macro_rules! say {
    ($($arg:tt)*) => {
        say_line(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// The events an operator watching the console must see as they happen: a live rebind, a
/// refused one, a renewal auto-rebind kept out.
const ON_CONSOLE: [u32; 3] = [
    ids::CONNECTION_REBOUND,
    ids::REBIND_REFUSED,
    ids::AUTO_REBIND_REFUSED,
];

/// Run the deployment's listeners on real sockets: TLS, mutual TLS and TCP from lcs.toml, each
/// TLS handshake checked against the store, so a `lcs-sim store renew` in another terminal hits
/// the running server. An admin endpoint on 127.0.0.1 ([admin] port in lcs.toml) answers
/// /healthz, /metrics, /certs and POST /rebind; DIR/serve.json says where while it runs, and a
/// lock on DIR/serve.lock keeps out a second serve on the same folder.
#[derive(Debug, Args)]
#[command(
    after_help = "Example:\n  lcs-sim init demo && lcs-sim serve demo\n  # in another terminal:\n  sipsak -E tls --tls-ca-cert demo/ca.pem -U -i -H 127.0.0.1 -x 120 -s sip:alice@127.0.0.1:5061\n  lcs-sim store renew demo <THUMBPRINT>     # new TLS handshakes now fail\n  curl -s 127.0.0.1:5080/healthz            # 503, naming tls-5061, mtls-5062 and the route\n  lcs-sim fix demo --live                   # repaired without a restart\n\nExit codes: 0 stopped normally (Ctrl-C, SIGTERM, SIGHUP, --duration, stdout closed); 1 another serve\nruns on DIR (it holds DIR/serve.lock), the admin port is taken, or --require-all and something\ndid not start; 2 bad input."
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
    /// Time between status lines (e.g. 10s, 1m; a bare number is seconds).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = positive_duration)]
    status_interval: Duration,
    /// How often to look for store changes made by other processes (10ms ..= 1m).
    #[arg(long, value_name = "DURATION", default_value = "250ms",
          value_parser = duration_between(Duration::from_millis(10), Duration::from_secs(60)))]
    store_poll: Duration,
    /// Stop by itself after DURATION (e.g. 2s, 5m; a bare number is seconds; at most a year),
    /// for scripts and tests; otherwise run until Ctrl-C or SIGTERM.
    #[arg(long, value_name = "DURATION",
          value_parser = duration_between(Duration::from_secs(1), Duration::from_secs(31_536_000)))]
    duration: Option<Duration>,
    /// Exit 1 at once if any listener or route fails to start (default: serve with what
    /// started, as LCS did, say so, and answer /healthz with 503).
    #[arg(long)]
    require_all: bool,
    /// When a bound certificate is renewed, validate its successor and swap it in live, and
    /// record it in lcs.toml (also `[service] auto_rebind = true`). An unusable successor
    /// (KB836410: its key is unreadable) is kept out, with a warning event naming the remedy.
    #[arg(long)]
    auto_rebind: bool,
    /// Port on 127.0.0.1 for the admin endpoint, instead of [admin] port in lcs.toml (0 picks a
    /// free one; serve.json and the startup lines say which, and `fix --live`, `doctor` and
    /// `load` find it there).
    #[arg(long, value_name = "PORT")]
    admin_port: Option<u16>,
}

pub fn run(args: ServeArgs) -> CmdResult {
    let d = Deployment::open(&args.dir)?;
    let config = d.config()?;
    let key_log = key_log(&args).map_err(Failure::input)?;
    // Held until `run` returns (or the process dies): a second serve cannot start, even at
    // the same moment, and serve.json is written and removed under it.
    let _lock = ServeLock::acquire(d.root()).map_err(|e| Failure {
        code: super::exit::FAILED,
        error: e.into(),
    })?;
    match ServeFile::read(d.root()) {
        Ok(Some(other)) => {
            return Err(Failure {
                code: super::exit::FAILED,
                error: anyhow::anyhow!(
                    "{} names a running `lcs-sim serve` (pid {}, admin http://{}) that does not hold {}; stop it first",
                    ServeFile::path(d.root()).display(),
                    other.pid,
                    other.admin,
                    admin::SERVE_LOCK
                ),
            });
        }
        Ok(None) => {}
        Err(e) => eprintln!("note: {e}; replacing it"),
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(super::exit::runtime)?;
    runtime.block_on(serve(args, d, config, key_log))
}

fn key_log(args: &ServeArgs) -> anyhow::Result<Option<Arc<dyn rustls::KeyLog>>> {
    Ok(match (&args.keylog, args.sslkeylogfile) {
        (Some(path), _) => Some(Arc::new(KeyLogTo::open(path)?)),
        (None, true) => match std::env::var_os("SSLKEYLOGFILE") {
            Some(p) => Some(Arc::new(KeyLogTo::open(&PathBuf::from(p))?)),
            None => anyhow::bail!("--sslkeylogfile given but SSLKEYLOGFILE is not set"),
        },
        (None, false) => None,
    })
}

async fn serve(
    args: ServeArgs,
    d: Deployment,
    mut config: lcs_sim::config::Config,
    key_log: Option<Arc<dyn rustls::KeyLog>>,
) -> CmdResult {
    let from = match args.admin_port {
        Some(port) => {
            config.admin.port = port;
            "--admin-port".to_string()
        }
        None => format!("[admin] port in {}", d.config_path().display()),
    };
    let admin_listener = admin::bind(config.admin.port).await.map_err(|e| Failure {
        code: super::exit::FAILED,
        error: anyhow::anyhow!(
            "cannot listen on the admin port 127.0.0.1:{} ({from}): {e}; \
             if another program holds it, choose another port with --admin-port PORT \
             (0 picks a free one) or set [admin] port in lcs.toml",
            config.admin.port,
        ),
    })?;
    let admin_addr = admin_listener.local_addr().map_err(|e| {
        Failure::internal(anyhow::Error::new(e).context("the admin listener's address"))
    })?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let options = ServiceOptions {
        key_log,
        auto_rebind: args.auto_rebind,
        on_event: Some(Arc::new(|e: &Event| {
            if ON_CONSOLE.contains(&e.id) {
                say!("event {} ({:?}): {}", e.id, e.level, e.message);
            }
        })),
        ..ServiceOptions::default()
    };
    let poll = args.store_poll;
    let live = server::live::serve(&d, clock.clone(), options, poll).await?;
    let running = &live.running;
    banner(
        &d,
        &config,
        running,
        admin_addr,
        args.auto_rebind || config.auto_rebind,
    );
    if !args.require_all {
        warn_partial(&d, &config, running);
    }
    if args.require_all && !running.failed.is_empty() {
        live.stop().await;
        return Err(Failure {
            code: super::exit::FAILED,
            error: anyhow::anyhow!("--require-all: not every listener and route started"),
        });
    }
    let token = admin::Token::generate();
    let state = admin::AdminState {
        handle: running.handle(),
        deployment: d.clone(),
        token: token.clone(),
    };
    let admin_task = tokio::spawn(admin::serve(admin_listener, state));
    ServeFile {
        pid: std::process::id(),
        admin: admin_addr,
        started_at: clock.now_utc(),
        deployment: d
            .root()
            .canonicalize()
            .map_err(|e| Failure::io(&e, anyhow::anyhow!("{}: {e}", d.root().display())))?,
        token,
    }
    .write(d.root())?;
    say!("Ctrl-C or SIGTERM stops.");
    let metrics = running.metrics.clone();
    let status = async {
        let mut tick = tokio::time::interval(args.status_interval);
        tick.tick().await;
        loop {
            tick.tick().await;
            if !args.quiet {
                say!("{}", metrics.snapshot().status_line());
            }
        }
    };
    let gone = async {
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        while !STDOUT_GONE.load(Ordering::Relaxed) {
            tick.tick().await;
        }
    };
    tokio::select! {
        () = stop_signal(args.duration) => {}
        () = status => {}
        () = gone => {}
    }
    let summary = running.metrics.snapshot().status_line();
    admin_task.abort();
    live.stop().await;
    ServeFile::remove_own(d.root());
    say!("stopped. {summary}");
    Ok(())
}

fn banner(
    d: &Deployment,
    config: &lcs_sim::config::Config,
    running: &server::Running,
    admin: std::net::SocketAddr,
    auto_rebind: bool,
) {
    say!(
        "lcs-sim serving {} as {} ({})",
        config.service.server,
        config.service.principal,
        d.root().display()
    );
    for l in &running.listeners {
        say!(
            "  listening  {:<20} {:<5} {}",
            l.id,
            l.transport.to_string(),
            l.addr
        );
    }
    for f in &running.failed {
        let ids: Vec<String> = f.events.iter().map(u32::to_string).collect();
        say!(
            "  NOT STARTED {:<19} {} (events {})",
            f.id,
            f.cause,
            ids.join(", ")
        );
    }
    for w in &running.warnings {
        say!("  WARNING    {w}");
    }
    say!("  admin      http://{admin}  (/healthz /metrics /certs, POST /rebind)");
    if auto_rebind {
        say!("  auto-rebind on: renewed certificates are validated and swapped in live");
    }
}

/// The loud line for a partial start (not with --require-all, which exits instead).
fn warn_partial(d: &Deployment, config: &lcs_sim::config::Config, running: &server::Running) {
    if !running.failed.is_empty() {
        let total = config.connections.len() + config.routes.len();
        say!(
            "WARNING: running with {} of {total} connections and routes; /healthz answers 503. See `lcs-sim events {}`.",
            total - running.failed.len(),
            d.root().display()
        );
    }
}

/// Resolves when `kind` arrives (never, if it cannot be watched).
async fn signal(kind: tokio::signal::unix::SignalKind) {
    match tokio::signal::unix::signal(kind) {
        Ok(mut s) => {
            s.recv().await;
        }
        Err(_) => std::future::pending().await,
    }
}

/// Resolves on Ctrl-C, SIGTERM, SIGHUP (the terminal closed), or after `duration`.
async fn stop_signal(duration: Option<Duration>) {
    use tokio::signal::unix::SignalKind;
    let term = signal(SignalKind::terminate());
    let hangup = signal(SignalKind::hangup());
    let timer = async {
        match duration {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
        () = hangup => {}
        () = timer => {}
    }
}

/// Appends TLS secrets in NSS key log format to a file.
#[derive(Debug)]
struct KeyLogTo(std::sync::Mutex<std::fs::File>);

impl KeyLogTo {
    /// Opens (or creates) the key log readable by its owner only: it holds every session's
    /// TLS secrets. A file that already existed with a wider mode is narrowed to 0600 too.
    fn open(path: &std::path::Path) -> anyhow::Result<Self> {
        let mut options = std::fs::OpenOptions::new();
        options.create(true).append(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let f = options
            .open(path)
            .with_context(|| format!("opening key log {}", path.display()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            f.set_permissions(std::fs::Permissions::from_mode(0o600))
                .with_context(|| format!("making key log {} private (0600)", path.display()))?;
        }
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
