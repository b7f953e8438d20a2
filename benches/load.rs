//! `lcs-sim load` benches (issue 9), each a ratio against a bare tokio-rustls baseline measured
//! in the same run (STYLE.md §12). Parts (all by default; `LCS_BENCH_ONLY=handshake,held` for
//! some):
//!
//! - `handshake`: connect → full handshake → OPTIONS → 200 → close, through `serve`
//!   (`server::live::serve`, as `lcs-sim serve` runs it) ÷ a bare tokio-rustls server that
//!   answers each request 200 with the same certificate; the client is the load generator
//!   itself (`lcs_sim::load::run`, closed loop). Goal ≥ 0.98.
//! - `generator`: the load generator ÷ a minimal tokio-rustls client loop (connect, handshake,
//!   write a fixed OPTIONS, read to the end of the response, close), both against the bare
//!   server. Goal ≥ 0.95: the generator is never the bottleneck.
//! - `held`: `LCS_BENCH_HELD` (10,000) idle TLS connections held on `serve` and on the bare
//!   server, each server in a child process (this binary re-run), its RSS read from /proc before
//!   and after: KiB per connection. Goal: `serve` ≤ bare and ≤ 16 KiB. Needs an fd limit above
//!   `LCS_BENCH_HELD` + 100 in each process (`ulimit -n 20000`). `LCS_BENCH_CHILD_WRAPPER`
//!   (say `heaptrack`) runs each child server under a memory profiler.
//! - `message`: MESSAGE at `LCS_BENCH_RATE` (1,000/s) for `LCS_BENCH_MESSAGE_SECS` (60 s)
//!   between `LCS_BENCH_USERS` (50) registered users through `serve`: p99, and its ratio to a raw
//!   tokio-rustls echo round trip of the same bytes at the same rate over as many connections.
//!
//! Warm-up `LCS_BENCH_WARMUP` (10 s) on each side, then `LCS_BENCH_PAIRS` (10) pairs of
//! `LCS_BENCH_SECS` (3 s) rounds, each pair in the order opposite to the last (the machine is
//! shared: a drifting load then favours neither side); figures are medians of per-pair ratios,
//! with their spread. `cargo bench --bench load`.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use hdrhistogram::Histogram;
use lcs_sim::clock::monotonic_now;
use lcs_sim::load::{self, Load, LoadOptions, Mode, Recorder, Shard, Target, TargetOptions};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::TlsConnector;

/// One round.
#[derive(Debug, Clone, Copy)]
struct Round {
    /// Successful operations per second.
    rate: f64,
    /// Failed operations (they void the figure).
    failed: u64,
    /// CPU time of the whole process (servers and clients) per successful operation, µs.
    cpu_us: f64,
}

/// Times `f`, returning its (ok, failed) as a [`Round`] over `secs`.
async fn timed<F: std::future::Future<Output = (u64, u64)>>(secs: Duration, f: F) -> Round {
    let cpu0 = cpu_time();
    let (ok, failed) = f.await;
    let cpu = cpu0
        .zip(cpu_time())
        .map_or(f64::NAN, |(a, b)| (b - a).as_secs_f64());
    Round {
        rate: ok as f64 / secs.as_secs_f64(),
        failed,
        cpu_us: cpu * 1e6 / ok.max(1) as f64,
    }
}

struct Settings {
    warmup: Duration,
    secs: Duration,
    pairs: usize,
    clients: usize,
}

fn main() {
    if let Ok(kind) = std::env::var("LCS_BENCH_CHILD") {
        return child(&kind);
    }
    let only = std::env::var("LCS_BENCH_ONLY").unwrap_or_default();
    let wanted = |part: &str| only.is_empty() || only.split(',').any(|p| p == part);
    let settings = Settings {
        warmup: Duration::from_secs_f64(env_or("LCS_BENCH_WARMUP", 10.0)),
        secs: Duration::from_secs_f64(env_or("LCS_BENCH_SECS", 3.0)),
        pairs: env_or("LCS_BENCH_PAIRS", 10),
        clients: env_or("LCS_BENCH_CLIENTS", 8),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    println!(
        "load benches on {} worker threads",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    runtime.block_on(async {
        let f = Fixture::new();
        if wanted("handshake") || wanted("generator") {
            throughput(&f, &settings, wanted("handshake"), wanted("generator")).await;
        }
        if wanted("held") {
            held(&f).await;
        }
        if wanted("message") {
            message(&f).await;
        }
    });
}

fn options(load: Load, duration: Duration) -> LoadOptions {
    LoadOptions {
        mode: Mode::Handshake,
        duration,
        load,
        no_request: false,
        users: 0,
        federated_ratio: 0.0,
        federated_domain: "fabrikam.com".into(),
        expires: 600,
        shard: Shard::default(),
        timeouts: Default::default(),
        faults: Vec::new(),
        server_pid: None,
        grace: load::default_grace(&Default::default()),
        max_in_flight: load::default_max_in_flight(Mode::Handshake),
        run_id: "bench".into(),
    }
}

async fn target(f: &Fixture, addr: SocketAddr) -> Target {
    Target::resolve(&TargetOptions {
        target: Some(addr.to_string()),
        deployment: Some(f.d.root().to_path_buf()),
        ..TargetOptions::default()
    })
    .await
    .expect("a target")
}

/// The generator, closed loop: successes per second (and failures, which void the figure).
async fn generator_round(t: &Target, clients: usize, secs: Duration) -> Round {
    timed(secs, async {
        let recorder = Arc::new(Recorder::new(monotonic_now()));
        let r = load::run(t.clone(), options(Load::Closed(clients), secs), recorder).await;
        (r.ok, r.failed)
    })
    .await
}

/// The minimal tokio-rustls client loop.
async fn minimal_round(
    addr: SocketAddr,
    client: &Arc<rustls::ClientConfig>,
    request: &Arc<Vec<u8>>,
    clients: usize,
    secs: Duration,
) -> Round {
    timed(secs, minimal(addr, client, request, clients, secs)).await
}

async fn minimal(
    addr: SocketAddr,
    client: &Arc<rustls::ClientConfig>,
    request: &Arc<Vec<u8>>,
    clients: usize,
    secs: Duration,
) -> (u64, u64) {
    let deadline = monotonic_now() + secs;
    let connector = TlsConnector::from(client.clone());
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (connector, request) = (connector.clone(), request.clone());
            tokio::spawn(async move {
                let name = ServerName::try_from("lcs01.contoso.com").expect("a name");
                let (mut ok, mut failed) = (0u64, 0u64);
                while monotonic_now() < deadline {
                    let one = async {
                        let tcp = tokio::net::TcpStream::connect(addr).await?;
                        tcp.set_nodelay(true)?;
                        let mut tls = connector.connect(name.clone(), tcp).await?;
                        tls.write_all(&request).await?;
                        let mut buf = [0u8; 4096];
                        let mut got = Vec::new();
                        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                            let n = tls.read(&mut buf).await?;
                            if n == 0 {
                                return Err(std::io::ErrorKind::UnexpectedEof.into());
                            }
                            got.extend_from_slice(&buf[..n]);
                        }
                        Ok::<_, std::io::Error>(())
                    }
                    .await;
                    if monotonic_now() <= deadline {
                        match one {
                            Ok(()) => ok += 1,
                            Err(_) => failed += 1,
                        }
                    }
                }
                (ok, failed)
            })
        })
        .collect();
    let (mut ok, mut failed) = (0, 0);
    for t in tasks {
        let (o, f) = t.await.expect("a client task");
        ok += o;
        failed += f;
    }
    (ok, failed)
}

async fn throughput(f: &Fixture, s: &Settings, handshake: bool, generator: bool) {
    let bare = start_bare(f.bare_server_config(), Bare::Sip).await;
    let live = serve(&f.d).await;
    let ours = live.running.addr(LISTENER).expect("the TLS listener");
    let (to_bare, to_ours) = (target(f, bare).await, target(f, ours).await);
    let client = f.client_config();
    let ua = lcs_sim::sip::UserAgent::new(
        lcs_sim::sip::Uri::parse("sip:bench@contoso.com").expect("uri"),
        "load.invalid",
    );
    let ids = lcs_sim::sip::RequestIds {
        call_id: "bench".into(),
        from_tag: "t".into(),
        branch: "b".into(),
        cseq: 1,
    };
    let uri = lcs_sim::sip::Uri::parse("sip:lcs01.contoso.com").expect("uri");
    let request = Arc::new(ua.options(&uri, &ids).to_bytes());
    let c = s.clients;
    if handshake {
        println!(
            "\n## handshake + OPTIONS per connection: serve / bare, {c} clients (the generator), {:?} warm-up each, {} pairs of {:?}",
            s.warmup, s.pairs, s.secs
        );
        generator_round(&to_bare, c, s.warmup).await;
        generator_round(&to_ours, c, s.warmup).await;
        let rows = pairs(
            s.pairs,
            || generator_round(&to_bare, c, s.secs),
            || generator_round(&to_ours, c, s.secs),
        )
        .await;
        table(
            "bare (conn/s)",
            "serve (conn/s)",
            "serve / bare",
            &rows,
            0.98,
        );
    }
    if generator {
        println!(
            "\n## the generator / a minimal tokio-rustls client loop, against the bare server, {c} clients"
        );
        minimal_round(bare, &client, &request, c, s.warmup).await;
        let rows = pairs(
            s.pairs,
            || minimal_round(bare, &client, &request, c, s.secs),
            || generator_round(&to_bare, c, s.secs),
        )
        .await;
        table(
            "minimal (conn/s)",
            "generator (conn/s)",
            "generator / minimal",
            &rows,
            0.95,
        );
    }
    live.stop().await;
}

/// `pairs` pairs of (baseline, ours) rounds, alternating which goes first.
async fn pairs<B, O, FB, FO>(pairs: usize, baseline: B, ours: O) -> Vec<(Round, Round)>
where
    B: Fn() -> FB,
    O: Fn() -> FO,
    FB: std::future::Future<Output = Round>,
    FO: std::future::Future<Output = Round>,
{
    let mut rows = Vec::new();
    for i in 0..pairs {
        if i % 2 == 0 {
            let b = baseline().await;
            rows.push((b, ours().await));
        } else {
            let o = ours().await;
            rows.push((baseline().await, o));
        }
    }
    rows
}

fn table(b_name: &str, o_name: &str, ratio_name: &str, rows: &[(Round, Round)], goal: f64) {
    println!(
        "| pair | {b_name} | {o_name} | {ratio_name} | baseline CPU/op (us) | ours CPU/op (us) |"
    );
    println!("| ---: | ---: | ---: | ---: | ---: | ---: |");
    for (i, (b, o)) in rows.iter().enumerate() {
        println!(
            "| {} | {:.0} | {:.0} | {:.3} | {:.0} | {:.0} |",
            i + 1,
            b.rate,
            o.rate,
            o.rate / b.rate,
            b.cpu_us,
            o.cpu_us
        );
    }
    let ratios: Vec<f64> = rows.iter().map(|(b, o)| o.rate / b.rate).collect();
    let cpu: Vec<f64> = rows.iter().map(|(b, o)| b.cpu_us / o.cpu_us).collect();
    let (lo, hi) = spread(&ratios);
    let (clo, chi) = spread(&cpu);
    let ratio = median(ratios);
    println!(
        "| median | {:.0} | {:.0} | **{ratio:.3}** | {:.0} | {:.0} |",
        median(rows.iter().map(|r| r.0.rate).collect()),
        median(rows.iter().map(|r| r.1.rate).collect()),
        median(rows.iter().map(|r| r.0.cpu_us).collect()),
        median(rows.iter().map(|r| r.1.cpu_us).collect()),
    );
    let failed: u64 = rows.iter().map(|(b, o)| b.failed + o.failed).sum();
    println!(
        "{ratio_name}: {ratio:.3} (goal >= {goal}; per-pair spread {lo:.3}..{hi:.3}); CPU per operation baseline / ours: {:.3} (spread {clo:.3}..{chi:.3}); failures during the rounds: {failed}",
        median(cpu)
    );
}

/// Child mode: run one server and print its address; exit when standard input closes.
fn child(kind: &str) {
    let dir = std::env::var("LCS_BENCH_DIR").expect("LCS_BENCH_DIR");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async {
        let d = lcs_sim::deployment::Deployment::open(&dir).expect("the deployment");
        let _live;
        let addr = if kind == "serve" {
            let live = serve(&d).await;
            let addr = live.running.addr(LISTENER).expect("the TLS listener");
            _live = live;
            addr
        } else {
            let f = Fixture {
                tmp: tempfile::tempdir().expect("tmp"),
                config: d.config().expect("lcs.toml"),
                d,
            };
            start_bare(f.bare_server_config(), Bare::Sip).await
        };
        println!("{addr}");
        tokio::task::spawn_blocking(|| {
            let mut sink = String::new();
            let _ = std::io::stdin().read_line(&mut sink);
        })
        .await
        .expect("stdin");
    });
}

/// Holds `n` TLS connections on a server in a child process; KiB of its RSS per connection.
async fn held_once(f: &Fixture, kind: &str, n: usize) -> f64 {
    use std::io::BufRead as _;
    // `LCS_BENCH_CHILD_WRAPPER=heaptrack` (or `valgrind --tool=massif`, ...) runs each child
    // server under a memory profiler: which allocations make up the bytes per connection.
    let exe = std::env::current_exe().expect("this bench");
    let wrapper = std::env::var("LCS_BENCH_CHILD_WRAPPER").unwrap_or_default();
    let mut words = wrapper.split_whitespace();
    let mut command = match words.next() {
        Some(program) => {
            let mut c = std::process::Command::new(program);
            c.args(words).arg(&exe);
            c
        }
        None => std::process::Command::new(&exe),
    };
    let mut child = command
        .env("LCS_BENCH_CHILD", kind)
        .env("LCS_BENCH_DIR", f.d.root())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("a child server");
    // The first line that is an address (a wrapper may print lines of its own first).
    let addr: SocketAddr = std::io::BufReader::new(child.stdout.take().expect("stdout"))
        .lines()
        .map_while(Result::ok)
        .find_map(|line| line.trim().parse().ok())
        .expect("the child's address");
    let pid = child.id();
    let client = f.client_config();
    // Warm the server's allocator and task machinery with a few connections first.
    let _warm = connect_many(addr, &client, 64).await;
    let before = rss_kib(pid);
    let conns = connect_many(addr, &client, n).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = rss_kib(pid);
    let held = conns.len();
    drop(conns);
    drop(child.stdin.take());
    let _ = child.wait();
    if held < n {
        println!("warning: only {held} of {n} connections were held (fd limit? connection cap?)");
    }
    let per = (after.saturating_sub(before)) as f64 / held as f64;
    println!("| {kind} | {held} | {before} | {after} | {per:.2} |");
    per
}

async fn connect_many(
    addr: SocketAddr,
    client: &Arc<rustls::ClientConfig>,
    n: usize,
) -> Vec<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let connector = TlsConnector::from(client.clone());
    let mut out = Vec::with_capacity(n);
    let mut wave = tokio::task::JoinSet::new();
    for i in 0..n {
        let connector = connector.clone();
        wave.spawn(async move {
            let tcp = tokio::net::TcpStream::connect(addr).await.ok()?;
            let name = ServerName::try_from("lcs01.contoso.com").expect("a name");
            connector.connect(name, tcp).await.ok()
        });
        if wave.len() >= 64 || i + 1 == n {
            while let Some(c) = wave.join_next().await {
                out.extend(c.expect("a connect task"));
            }
        }
    }
    out
}

async fn held(f: &Fixture) {
    let n: usize = env_or("LCS_BENCH_HELD", 10_000);
    println!(
        "\n## {n} idle TLS connections held: server RSS per connection (server in a child process)"
    );
    println!("| server | held | RSS before (KiB) | RSS after (KiB) | KiB per connection |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    let (mut bare, mut ours) = (Vec::new(), Vec::new());
    for i in 0..2 {
        let order = if i % 2 == 0 {
            ["bare", "serve"]
        } else {
            ["serve", "bare"]
        };
        for kind in order {
            let per = held_once(f, kind, n).await;
            if kind == "bare" {
                bare.push(per)
            } else {
                ours.push(per)
            }
        }
    }
    let (b, o) = (median(bare), median(ours));
    println!(
        "serve {o:.2} KiB per connection, bare tokio-rustls {b:.2} KiB (medians of 2); serve / bare {:.3} (goals: serve <= bare, serve <= 16 KiB)",
        o / b
    );
}

async fn message(f: &Fixture) {
    let rate: f64 = env_or("LCS_BENCH_RATE", 1000.0);
    let secs = Duration::from_secs_f64(env_or("LCS_BENCH_MESSAGE_SECS", 60.0));
    let users: u64 = env_or("LCS_BENCH_USERS", 50);
    let live = serve(&f.d).await;
    let ours = live.running.addr(LISTENER).expect("the TLS listener");
    println!(
        "\n## MESSAGE at {rate}/s for {secs:?} between {users} registered users through serve, against a raw TLS echo round trip"
    );
    let mut o = options(Load::Open(rate), secs);
    o.mode = Mode::Message;
    o.users = users;
    let t = target(f, ours).await;
    let r = load::run(t, o, Arc::new(Recorder::new(monotonic_now()))).await;
    live.stop().await;
    let bytes = {
        let ua = lcs_sim::sip::UserAgent::new(
            lcs_sim::sip::Uri::parse("sip:load0@contoso.com").expect("uri"),
            "load.invalid",
        );
        let ids = lcs_sim::sip::RequestIds {
            call_id: "x".repeat(20),
            from_tag: "t".into(),
            branch: "b".into(),
            cseq: 1,
        };
        let to = lcs_sim::sip::Uri::parse("sip:load1@contoso.com").expect("uri");
        ua.message(&to, "text/plain", "load", &ids).to_bytes()
    };
    let echo = start_bare(f.bare_server_config(), Bare::Echo).await;
    let h = echo_run(
        echo,
        &f.client_config(),
        Arc::new(bytes),
        users as usize,
        rate,
        secs,
    )
    .await;
    let (m, e) = (r.latency_us, h.value_at_quantile(0.99));
    println!("| | count | failed | p50 (us) | p99 (us) | max (us) |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    println!(
        "| MESSAGE through serve | {} | {} | {} | {} | {} |",
        r.ok, r.failed, m.p50, m.p99, m.max
    );
    println!(
        "| raw TLS echo | {} | 0 | {} | {e} | {} |",
        h.len(),
        h.value_at_quantile(0.5),
        h.max()
    );
    println!(
        "MESSAGE p99 {:.2} ms; ÷ echo round trip p99 {:.2} ms = {:.2}",
        m.p99 as f64 / 1e3,
        e as f64 / 1e3,
        m.p99 as f64 / e as f64
    );
}

/// Open-loop echo round trips over `conns` connections: latency from the scheduled time.
async fn echo_run(
    addr: SocketAddr,
    client: &Arc<rustls::ClientConfig>,
    bytes: Arc<Vec<u8>>,
    conns: usize,
    rate: f64,
    secs: Duration,
) -> Histogram<u64> {
    let streams = connect_many(addr, client, conns).await;
    let hist = Arc::new(std::sync::Mutex::new(load::record::new_histogram()));
    let mut senders = Vec::new();
    let mut tasks = Vec::new();
    for mut s in streams {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Instant>();
        let (bytes, hist) = (bytes.clone(), hist.clone());
        senders.push(tx);
        tasks.push(tokio::spawn(async move {
            let mut buf = vec![0u8; bytes.len()];
            while let Some(scheduled) = rx.recv().await {
                if s.write_all(&bytes).await.is_err() || s.read_exact(&mut buf).await.is_err() {
                    return;
                }
                let us = (monotonic_now() - scheduled).as_micros() as u64;
                hist.lock().expect("lock").saturating_record(us.max(1));
            }
        }));
    }
    let start = monotonic_now();
    for i in 0u64.. {
        let at = start + Duration::from_secs_f64(i as f64 / rate);
        if at >= start + secs {
            break;
        }
        load::sleep_until(at).await;
        let _ = senders[i as usize % senders.len()].send(at);
    }
    drop(senders);
    for t in tasks {
        let _ = t.await;
    }
    Arc::try_unwrap(hist)
        .expect("tasks done")
        .into_inner()
        .expect("lock")
}
