//! `lcs-sim load`: load against a SIP-over-TLS server, with faults injected while it runs.
//!
//! Flags are parsed by clap into [`lcs_sim::load::LoadOptions`] (a zero rate, a negative
//! duration, a bad `--at` or an unknown mode are refused with exit 2 before anything starts);
//! the run itself never fails on the server's account: an unreachable target or a wrong CA is
//! counted by reason in the report. Health gates (`--max-failure-ratio`, `--max-p99`) turn a
//! broken run into exit 1 for CI.

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::anyhow;
use clap::{Args, Subcommand, ValueEnum};
use lcs_sim::clock::monotonic_now;
use lcs_sim::load::{
    self, Fault, Load, LoadOptions, Mode, Recorder, Report, Shard, Target, TargetOptions,
    TlsVersions, conn::Timeouts,
};

use super::args::positive_duration;
use super::out::{out, outln};
use super::{CmdResult, Failure};

/// `lcs-sim load MODE`.
#[derive(Debug, Subcommand)]
#[command(
    about = "Load a SIP-over-TLS server (handshakes, registered users, messages), with faults injected under load",
    after_help = "Exit codes: 0 the run finished and its health gates hold, 1 a gate failed, 2 bad input.\n\nExamples:\n  lcs-sim load handshake --deployment demo --concurrency 4 --duration 10s\n  lcs-sim load handshake --target sip.example.com:5061 --ca ca.pem --server-name sip.example.com --rate 500 --duration 30s --format json\n  lcs-sim load handshake --deployment demo --rate 200 --duration 20s --at 5s=renew --at 12s=fix-live --svg outage.svg\n  lcs-sim load register --deployment demo --users 1000 --duration 30s\n  lcs-sim load message --deployment demo --users 50 --rate 1000 --federated-ratio 0.1\n  lcs-sim load merge shard-0.json shard-1.json"
)]
pub enum LoadCommand {
    /// connect → full TLS handshake → OPTIONS → 200 → close, over and over.
    Handshake(Box<HandshakeArgs>),
    /// Users hold registered TLS connections (REGISTER, refreshed at half the granted time).
    Register(Box<RegisterArgs>),
    /// Registered users send MESSAGE to each other (and to the federated domain) at --rate.
    Message(Box<MessageArgs>),
    /// Merges the JSON reports of a run's shards exactly (histograms added, never percentiles
    /// averaged).
    Merge(MergeArgs),
}

/// Where the load goes.
#[derive(Debug, Args)]
struct TargetArgs {
    /// The server, HOST:PORT (with --deployment: overrides lcs.toml's address).
    #[arg(long, value_name = "HOST:PORT")]
    target: Option<String>,
    /// PEM bundle of the CAs to trust (default with --deployment: its ca.pem).
    #[arg(long, value_name = "FILE")]
    ca: Option<PathBuf>,
    /// Name to verify the server's certificate against, also sent as SNI.
    #[arg(long, value_name = "NAME")]
    server_name: Option<String>,
    /// Client certificate chain (PEM), for mutual TLS.
    #[arg(long, value_name = "FILE", requires = "client_key")]
    client_cert: Option<PathBuf>,
    /// Client private key (PEM), for mutual TLS.
    #[arg(long, value_name = "FILE", requires = "client_cert")]
    client_key: Option<PathBuf>,
    /// A deployment folder (`lcs-sim init`): address, CA and name from it; faults apply to it.
    #[arg(long, value_name = "DIR")]
    deployment: Option<PathBuf>,
    /// The deployment's connection to load (default: its first TLS connection).
    #[arg(long, value_name = "ID", requires = "deployment")]
    connection: Option<String>,
    /// SIP domain of the load's users (default: the deployment's, else the server name less
    /// its first label).
    #[arg(long)]
    domain: Option<String>,
    /// TLS versions offered.
    #[arg(long, value_enum, default_value_t = Tls::Both)]
    tls: Tls,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Tls {
    /// TLS 1.3 and 1.2.
    Both,
    /// TLS 1.2 only.
    #[value(name = "1.2")]
    V12,
    /// TLS 1.3 only.
    #[value(name = "1.3")]
    V13,
}

/// How long, how much, what to report.
#[derive(Debug, Args)]
struct RunArgs {
    /// Length of the run (e.g. 10s, 2m).
    #[arg(long, default_value = "10s", value_parser = positive_duration, allow_hyphen_values = true)]
    duration: Duration,
    /// Shard INDEX/COUNT of a run spread over COUNT processes (from 0, e.g. 0/4): disjoint users
    /// and Call-IDs, the rate and users divided. Merge the JSON reports with `load merge`.
    #[arg(long, value_name = "I/N", requires = "run_id")]
    shard: Option<Shard>,
    /// The run's id in its report, the same for every shard of a run (required with --shard),
    /// so that `load merge` refuses shards of other runs (default: random).
    #[arg(long, value_name = "ID", value_parser = run_id)]
    run_id: Option<String>,
    /// A fault at a time from the start (repeatable; needs --deployment): T=renew[:POLICY],
    /// T=grant:PRINCIPAL, T=revoke:PRINCIPAL, T=fix-live.
    #[arg(long = "at", value_name = "T=ACTION")]
    faults: Vec<Fault>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Also draw rate, failures and p99 over time, faults marked, to this SVG file.
    #[arg(long, value_name = "FILE")]
    svg: Option<PathBuf>,
    /// No progress line.
    #[arg(long, short)]
    quiet: bool,
    /// Exit 1 if failed ÷ all operations is above this (e.g. 0.01).
    #[arg(long, value_name = "RATIO", value_parser = ratio)]
    max_failure_ratio: Option<f64>,
    /// Exit 1 if the p99 latency is above this (e.g. 50ms).
    #[arg(long, value_name = "DURATION", value_parser = positive_duration)]
    max_p99: Option<Duration>,
    /// Time allowed for TCP connect + TLS handshake.
    #[arg(long, default_value = "5s", value_parser = positive_duration)]
    connect_timeout: Duration,
    /// Time allowed from a request to its final response.
    #[arg(long, default_value = "40s", value_parser = positive_duration)]
    response_timeout: Duration,
    /// After --duration, how long operations in flight may still finish; what is left then is
    /// counted unfinished (default: the response timeout, at most 2s). The run takes at most
    /// --duration plus this.
    #[arg(long, value_name = "DURATION", value_parser = grace)]
    grace: Option<Duration>,
    /// Open loop: the most operations in flight at once (default 1024 handshakes, each a
    /// socket; 16384 MESSAGEs). Slots the generator cannot start in time are `not_started`.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    max_in_flight: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Text,
    Json,
    Csv,
}

/// `load handshake`.
#[derive(Debug, Args)]
pub struct HandshakeArgs {
    #[command(flatten)]
    target: TargetArgs,
    #[command(flatten)]
    run: RunArgs,
    /// Closed loop: this many connections at a time (default 4 without --rate).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..), conflicts_with = "rate")]
    concurrency: Option<u32>,
    /// Open loop: new connections per second, on a fixed schedule (latency from the scheduled
    /// time).
    #[arg(long, value_parser = positive_rate, allow_negative_numbers = true)]
    rate: Option<f64>,
    /// Bare handshakes: no OPTIONS.
    #[arg(long)]
    no_request: bool,
}

/// `load register`.
#[derive(Debug, Args)]
pub struct RegisterArgs {
    #[command(flatten)]
    target: TargetArgs,
    #[command(flatten)]
    run: RunArgs,
    /// Users (each one TLS connection), over all shards.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    users: u64,
    /// Registration time asked for, seconds (refreshed at half).
    #[arg(long, default_value_t = 600, value_parser = clap::value_parser!(u32).range(2..))]
    expires: u32,
    /// The server's process id, for its memory per connection (default with --deployment: the
    /// pid in DIR/serve.json, if any).
    #[arg(long, value_name = "PID")]
    server_pid: Option<u32>,
}

/// `load message`.
#[derive(Debug, Args)]
pub struct MessageArgs {
    #[command(flatten)]
    target: TargetArgs,
    #[command(flatten)]
    run: RunArgs,
    /// Registered users sending and receiving, over all shards.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    users: u64,
    /// MESSAGEs per second, on a fixed schedule.
    #[arg(long, default_value = "100", value_parser = positive_rate, allow_negative_numbers = true)]
    rate: f64,
    /// Share of MESSAGEs to the federated domain (0 to 1).
    #[arg(long, default_value_t = 0.0, value_parser = ratio)]
    federated_ratio: f64,
    /// The federated domain (default: the deployment's first route's, else fabrikam.com).
    #[arg(long)]
    federated_domain: Option<String>,
    /// Registration time asked for, seconds.
    #[arg(long, default_value_t = 600, value_parser = clap::value_parser!(u32).range(2..))]
    expires: u32,
}

/// `load merge`.
#[derive(Debug, Args)]
pub struct MergeArgs {
    /// JSON reports (`--format json`) of the shards of one run.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Also draw the merged run to this SVG file.
    #[arg(long, value_name = "FILE")]
    svg: Option<PathBuf>,
}

/// A run id: 1 to 64 letters, digits, `.`, `_` or `-` (it names files and jobs).
fn run_id(s: &str) -> Result<String, String> {
    let ok = (1..=64).contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    if ok {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "`{s}` is not a run id: 1 to 64 letters, digits, `.`, `_` or `-`"
        ))
    }
}

/// A random run id, for a run that is not sharded.
fn random_run_id() -> String {
    let mut bytes = [0u8; 6];
    getrandom::fill(&mut bytes).expect("the OS random source");
    hex::encode(bytes)
}

/// A grace period: a [`positive_duration`], or zero (`0`, `0s`) for none.
fn grace(s: &str) -> Result<Duration, String> {
    let zero = s.trim().parse::<f64>() == Ok(0.0)
        || humantime::parse_duration(s.trim()).is_ok_and(|d| d.is_zero());
    if zero {
        Ok(Duration::ZERO)
    } else {
        positive_duration(s)
    }
}

fn positive_rate(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 => Ok(r),
        _ => Err(format!(
            "`{s}` is not a rate above zero (operations per second)"
        )),
    }
}

fn ratio(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
        _ => Err(format!("`{s}` is not a ratio between 0 and 1")),
    }
}

/// Runs `lcs-sim load`.
pub fn run(cmd: LoadCommand) -> CmdResult {
    let (target, run, options) = match cmd {
        LoadCommand::Merge(args) => return merge(args),
        LoadCommand::Handshake(a) => {
            let a = *a;
            let load = match (a.concurrency, a.rate) {
                (_, Some(rate)) => Load::Open(rate),
                (c, None) => Load::Closed(c.unwrap_or(4) as usize),
            };
            let o = options(Mode::Handshake, &a.run, load, 0, 600);
            (
                a.target,
                a.run,
                LoadOptions {
                    no_request: a.no_request,
                    ..o
                },
            )
        }
        LoadCommand::Register(a) => {
            let a = *a;
            let mut o = options(Mode::Register, &a.run, Load::Closed(1), a.users, a.expires);
            o.server_pid = a.server_pid.or_else(|| {
                a.target
                    .deployment
                    .as_deref()
                    .and_then(load::memory::serve_pid)
            });
            (a.target, a.run, o)
        }
        LoadCommand::Message(a) => {
            let a = *a;
            let mut o = options(
                Mode::Message,
                &a.run,
                Load::Open(a.rate),
                a.users,
                a.expires,
            );
            o.federated_ratio = a.federated_ratio;
            o.federated_domain = a
                .federated_domain
                .or_else(|| federated_domain(a.target.deployment.as_deref()))
                .unwrap_or_else(|| "fabrikam.com".into());
            (a.target, a.run, o)
        }
    };
    if let Load::Open(rate) = options.load
        && rate * options.duration.as_secs_f64() > load::schedule::MAX_SLOTS
    {
        return Err(Failure::input(anyhow!(
            "--rate {rate} for --duration {} is more operations than can be scheduled exactly (2^53)",
            humantime::format_duration(options.duration)
        )));
    }
    check_faults(&options, target.deployment.as_deref())?;
    let target_options = TargetOptions {
        target: target.target,
        ca: target.ca,
        server_name: target.server_name,
        client_cert: target.client_cert,
        client_key: target.client_key,
        deployment: target.deployment,
        connection: target.connection,
        domain: target.domain,
        tls: match target.tls {
            Tls::Both => TlsVersions::Both,
            Tls::V12 => TlsVersions::V12,
            Tls::V13 => TlsVersions::V13,
        },
    };
    let max_in_flight = options.max_in_flight;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(super::exit::runtime)?;
    let report = runtime.block_on(async {
        let target = Target::resolve(&target_options).await?;
        let recorder = Arc::new(Recorder::new(monotonic_now()));
        let progress =
            (!run.quiet).then(|| tokio::spawn(progress(recorder.clone(), options.duration)));
        let report = load::run(target, options, recorder).await;
        if let Some(p) = progress {
            p.abort();
            let _ = p.await;
        }
        Ok::<_, Failure>(report)
    })?;
    output(&report, run.format, run.svg.as_ref())?;
    warn(&report, max_in_flight);
    gates(&report, run.max_failure_ratio, run.max_p99)
}

/// Says on standard error what the report's numbers mean when the run could not do all it was
/// asked (whatever `--quiet` says: this is not progress).
fn warn(r: &Report, max_in_flight: usize) {
    if r.not_started > 0 {
        eprintln!(
            "warning: the generator fell behind its schedule: {} of {} scheduled operations were never started (at most {max_in_flight} in flight, --max-in-flight); they count as failures",
            r.not_started,
            r.total()
        );
    }
    if r.unfinished > 0 {
        let p = &r.unfinished_by_phase;
        eprintln!(
            "warning: {} operations were still in flight when the run ended (connecting {}, handshaking {}, awaiting response {}); they count as failures",
            r.unfinished, p.connecting, p.handshaking, p.awaiting_response
        );
    }
}

/// Refuses, before anything is sent or changed, faults the run could not apply as asked: any
/// fault without a deployment, one due at or after the end of the run (it would change the
/// deployment after the load stopped and leave it so), and a grant or revoke of a principal
/// `lcs-sim store grant` would refuse (the same check: a likely typo).
fn check_faults(o: &LoadOptions, deployment: Option<&std::path::Path>) -> CmdResult {
    if o.faults.is_empty() {
        return Ok(());
    }
    let Some(dir) = deployment else {
        return Err(Failure::input(anyhow!(
            "--at needs --deployment DIR: faults are applied to a deployment's store"
        )));
    };
    if let Some(f) = o.faults.iter().find(|f| f.at >= o.duration) {
        return Err(Failure::input(anyhow!(
            "--at {}={}: due at or after the end of the run (--duration {}); the load would have stopped and the deployment would be left changed; nothing was sent",
            humantime::format_duration(f.at),
            f.action,
            humantime::format_duration(o.duration)
        )));
    }
    let d = lcs_sim::deployment::Deployment::open(dir)?;
    for f in &o.faults {
        if let load::FaultAction::Grant(p) | load::FaultAction::Revoke(p) = &f.action {
            super::store::check_principal_name(&d, p, false).map_err(|e| Failure {
                code: e.code,
                error: e.error.context(format!(
                    "--at {}={}",
                    humantime::format_duration(f.at),
                    f.action
                )),
            })?;
        }
    }
    Ok(())
}

fn options(mode: Mode, run: &RunArgs, load: Load, users: u64, expires: u32) -> LoadOptions {
    let timeouts = Timeouts {
        connect: run.connect_timeout,
        response: run.response_timeout,
    };
    LoadOptions {
        mode,
        duration: run.duration,
        load,
        no_request: false,
        users,
        federated_ratio: 0.0,
        federated_domain: "fabrikam.com".into(),
        expires,
        shard: run.shard.unwrap_or_default(),
        timeouts,
        faults: run.faults.clone(),
        server_pid: None,
        grace: run.grace.unwrap_or_else(|| load::default_grace(&timeouts)),
        max_in_flight: run
            .max_in_flight
            .map_or_else(|| load::default_max_in_flight(mode), |n| n as usize),
        run_id: run.run_id.clone().unwrap_or_else(random_run_id),
    }
}

fn federated_domain(dir: Option<&std::path::Path>) -> Option<String> {
    let d = lcs_sim::deployment::Deployment::open(dir?).ok()?;
    d.config().ok()?.routes.first().map(|r| r.domain.clone())
}

/// A line a second: on a terminal an indicatif line redrawn in place, otherwise plain lines on
/// standard error (standard output carries the report).
async fn progress(recorder: Arc<Recorder>, duration: Duration) {
    let tty = std::io::stderr().is_terminal();
    let bar = tty.then(|| {
        let bar = indicatif::ProgressBar::new(duration.as_secs().max(1));
        bar.set_style(
            indicatif::ProgressStyle::with_template("{elapsed:>4} [{bar:30}] {msg}")
                .expect("a valid template")
                .progress_chars("=> "),
        );
        bar
    });
    let start = recorder.start();
    for t in 1u64.. {
        load::sleep_until(start + Duration::from_secs(t)).await;
        let (ok, failed, p99) = recorder.row(t as usize - 1);
        let (all_ok, all_failed) = recorder.totals();
        let line = format!(
            "t={t}s ok/s={ok} failed/s={failed} p99={:.1}ms total ok={all_ok} failed={all_failed} in flight={}",
            p99 as f64 / 1000.0,
            recorder.in_flight()
        );
        match &bar {
            Some(bar) => {
                bar.set_position(t);
                bar.set_message(line);
            }
            None => eprintln!("{line}"),
        }
    }
}

fn output(report: &Report, format: Format, svg: Option<&PathBuf>) -> CmdResult {
    if let Some(path) = svg {
        let chart = load::svg::render(report)
            .map_err(|e| Failure::internal(anyhow!("drawing the chart: {e}")))?;
        lcs_sim::atomic::atomic_write(path, chart.as_bytes(), None)
            .map_err(|e| Failure::internal(anyhow!("writing {}: {e}", path.display())))?;
    }
    match format {
        Format::Json => outln!(
            "{}",
            serde_json::to_string_pretty(report).map_err(super::exit::serialize)?
        ),
        Format::Csv => out!("{}", report.to_csv()),
        Format::Text => out!("{}", text(report)),
    }
    Ok(())
}

fn text(r: &Report) -> String {
    let l = &r.latency_us;
    let ms = |us: u64| format!("{:.2} ms", us as f64 / 1000.0);
    let total = match (r.scheduled, r.started) {
        (Some(n), _) => format!("scheduled {n}"),
        (None, n) => format!("started {}", n.unwrap_or(0)),
    };
    let p = &r.unfinished_by_phase;
    let shards: Vec<String> = r.shards.iter().map(u32::to_string).collect();
    let mut s = format!(
        "lcs-sim load {} against {} for {:.1} s (run {}, shard {} of {}, settings {})\n  {total} = ok {} + failed {} + unfinished {} + not started {}  rate {:.1}/s\n  unfinished by phase: connecting {}  handshaking {}  awaiting response {}\n  latency p50 {}  p90 {}  p99 {}  p99.9 {}  max {}\n",
        r.mode,
        r.target,
        r.duration_s,
        r.run_id,
        shards.join(","),
        r.shard_count,
        r.settings_digest,
        r.ok,
        r.failed,
        r.unfinished,
        r.not_started,
        r.rate_per_s,
        p.connecting,
        p.handshaking,
        p.awaiting_response,
        ms(l.p50),
        ms(l.p90),
        ms(l.p99),
        ms(l.p999),
        ms(l.max)
    );
    for (reason, n) in &r.failures {
        s.push_str(&format!("  failed {reason}: {n}\n"));
    }
    for f in &r.faults {
        let at = f
            .applied_s
            .map_or("not applied".into(), |a| format!("applied at {a:.2} s"));
        s.push_str(&format!(
            "  fault {} at {:.1} s ({at}): {}\n",
            f.action, f.at_s, f.result
        ));
    }
    if let Some(o) = &r.outage {
        let sec = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.2} s"));
        s.push_str(&format!(
            "  outage: first failure {}, last {}, {} failures, fix to a clean second {}, {} connections dropped, {} clean seconds at the end\n",
            sec(o.first_failure_s),
            sec(o.last_failure_s),
            o.failures_during,
            sec(o.fix_to_clean_s),
            o.connections_dropped,
            o.clean_seconds_at_end
        ));
    }
    if let Some(m) = &r.server {
        s.push_str(&format!(
            "  server pid {}: {} connections held, RSS {} -> {} KiB, {:.1} KiB per connection of this run \
             (this run did not start the server: the figure is its RSS growth while these connections \
             were opened, over their number; connections it already held, other clients and its own \
             allocations in that time count too)\n",
            m.pid,
            m.connections,
            m.rss_before_kib,
            m.rss_after_kib,
            m.rss_per_connection_bytes as f64 / 1024.0
        ));
    }
    s
}

fn gates(r: &Report, max_ratio: Option<f64>, max_p99: Option<Duration>) -> CmdResult {
    if r.completed() == 0 {
        return Err(Failure {
            code: super::exit::FAILED,
            error: anyhow!(
                "nothing measured: no operation completed ({} unfinished, {} not started of {}); every gate fails",
                r.unfinished,
                r.not_started,
                r.total()
            ),
        });
    }
    let mut broken = Vec::new();
    if let Some(max) = max_ratio.filter(|&m| r.failure_ratio() > m) {
        broken.push(format!(
            "failure ratio {:.4} ((failed + unfinished + not started) / {}) is above --max-failure-ratio {max}",
            r.failure_ratio(),
            r.total()
        ));
    }
    if let Some(max) = max_p99.filter(|m| r.latency_us.p99 > m.as_micros() as u64) {
        broken.push(format!(
            "p99 latency {:.2} ms is above --max-p99 {}",
            r.latency_us.p99 as f64 / 1000.0,
            humantime::format_duration(max)
        ));
    }
    if broken.is_empty() {
        Ok(())
    } else {
        Err(Failure {
            code: super::exit::FAILED,
            error: anyhow!("health gate failed: {}", broken.join("; ")),
        })
    }
}

fn merge(args: MergeArgs) -> CmdResult {
    let mut reports = Vec::new();
    for path in &args.files {
        // A report of a long run with its per-second rows is megabytes, never gigabytes.
        let text = lcs_sim::input::read_capped(path, 256 * 1024 * 1024)?;
        let r: Report = serde_json::from_str(&text).map_err(|e| {
            Failure::input(anyhow!(
                "{}: not a `lcs-sim load --format json` report: {e}",
                path.display()
            ))
        })?;
        r.check()
            .map_err(|e| Failure::input(anyhow!("{}: {e}", path.display())))?;
        reports.push(r);
    }
    load::report::check_identities(&reports).map_err(|c| {
        let name = |i: usize| args.files[i].display().to_string();
        Failure::input(anyhow!(
            "{} and {}: {}",
            name(c.first),
            name(c.second),
            c.kind
        ))
    })?;
    let have: std::collections::BTreeSet<u32> =
        reports.iter().flat_map(|r| r.shards.clone()).collect();
    if let Some(r) = reports.first()
        && have.len() < r.shard_count as usize
    {
        let missing: Vec<String> = (0..r.shard_count)
            .filter(|i| !have.contains(i))
            .map(|i| i.to_string())
            .collect();
        eprintln!(
            "warning: {} of the {} shards of run {} merged; missing: {}",
            have.len(),
            r.shard_count,
            r.run_id,
            missing.join(", ")
        );
    }
    let merged = load::merge(&reports)?;
    output(&merged, args.format, args.svg.as_ref())
}
