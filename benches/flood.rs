//! Memory under a request flood (issue 15 §4): 3 × `LCS_BENCH_FLOOD` (50,000) OPTIONS with
//! unique branches on one TLS connection to `serve` (`server::live::serve`, in a child process:
//! this bench re-run, so the RSS read from /proc is the server's own), pipelined in batches of
//! 1,000. RSS before (after a warm-up batch), at the peak (sampled every 20 ms) and
//! `LCS_BENCH_AFTER_SECS` (40) after the flood, for the default caps on completed server
//! transactions and, side by side, for caps too large to matter (the behaviour before them).
//! Goal: peak growth ≤ 64 MiB at the defaults. `cargo bench --bench flood`.

mod common;

use std::io::BufRead as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::*;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::TlsConnector;

const BATCH: u64 = 1000;

fn options(n: u64) -> String {
    format!(
        "OPTIONS sip:lcs01.contoso.com SIP/2.0\r\nVia: SIP/2.0/TLS 127.0.0.1:5999;branch=z9hG4bK-flood{n}\r\nMax-Forwards: 70\r\nFrom: <sip:probe@contoso.com>;tag=f{n}\r\nTo: <sip:lcs01.contoso.com>\r\nCall-ID: flood-{n}@bench\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    )
}

fn main() {
    if let Ok(kind) = std::env::var("LCS_BENCH_CHILD") {
        return child(&kind);
    }
    let per_round: u64 = env_or("LCS_BENCH_FLOOD", 50_000);
    let after = Duration::from_secs(env_or("LCS_BENCH_AFTER_SECS", 40));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    println!(
        "| caps (per connection / total) | requests | RSS before | peak | {}s after | peak growth |",
        after.as_secs()
    );
    println!("| --- | --- | --- | --- | --- | --- |");
    for (name, caps) in [
        ("defaults (4,096 / 32,768)", None),
        ("uncapped (10^7 / 10^7)", Some(10_000_000)),
    ] {
        runtime.block_on(flood(name, caps, per_round, after));
    }
}

/// Child mode: run `serve` on LCS_BENCH_DIR, print the TLS address; exit when stdin closes.
fn child(_kind: &str) {
    let dir = std::env::var("LCS_BENCH_DIR").expect("LCS_BENCH_DIR");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async {
        let d = lcs_sim::deployment::Deployment::open(&dir).expect("the deployment");
        let live = serve(&d).await;
        println!("{}", live.running.addr(LISTENER).expect("the TLS listener"));
        tokio::task::spawn_blocking(|| {
            let mut sink = String::new();
            let _ = std::io::stdin().read_line(&mut sink);
        })
        .await
        .expect("stdin");
        drop(live);
    });
}

async fn flood(name: &str, caps: Option<usize>, per_round: u64, after: Duration) {
    let f = Fixture::new();
    if let Some(cap) = caps {
        let mut config = f.config.clone();
        config.sip.max_completed_transactions_per_connection = cap;
        config.sip.max_completed_transactions = cap;
        config.save(&f.d.config_path()).expect("lcs.toml");
    }
    let mut child = std::process::Command::new(std::env::current_exe().expect("this bench"))
        .env("LCS_BENCH_CHILD", "serve")
        .env("LCS_BENCH_DIR", f.d.root())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("a child server");
    let addr: SocketAddr = std::io::BufReader::new(child.stdout.take().expect("stdout"))
        .lines()
        .map_while(Result::ok)
        .find_map(|line| line.trim().parse().ok())
        .expect("the child's address");
    let pid = child.id();
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let name_ = ServerName::try_from("lcs01.contoso.com").expect("a name");
    let mut tls = TlsConnector::from(f.client_config())
        .connect(name_, tcp)
        .await
        .expect("a handshake");
    let mut next = 1_000_000_000u64; // warm-up branches apart from the flood's
    batch(&mut tls, &mut next, BATCH).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = rss_kib(pid);
    let peak = Arc::new(AtomicU64::new(before));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, done) = (peak.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(rss_kib(pid), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let mut n = 0u64;
    for _round in 0..3 {
        for _ in 0..per_round / BATCH {
            batch(&mut tls, &mut n, BATCH).await;
        }
    }
    // The peak may come just after the last answer.
    tokio::time::sleep(Duration::from_secs(2)).await;
    done.store(true, Ordering::Relaxed);
    sampler.join().expect("the sampler");
    let peak = peak.load(Ordering::Relaxed);
    tokio::time::sleep(after.saturating_sub(Duration::from_secs(2))).await;
    let later = rss_kib(pid);
    drop(tls);
    drop(child.stdin.take());
    let _ = child.wait();
    let mib = |kib: u64| kib as f64 / 1024.0;
    println!(
        "| {name} | {} | {:.1} MiB | {:.1} MiB | {:.1} MiB | {:.1} MiB |",
        n,
        mib(before),
        mib(peak),
        mib(later),
        mib(peak.saturating_sub(before))
    );
}

/// Writes `count` OPTIONS (branches from `*next` on) and reads their `count` answers.
async fn batch(
    tls: &mut tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    next: &mut u64,
    count: u64,
) {
    let mut out = String::new();
    for _ in 0..count {
        out.push_str(&options(*next));
        *next += 1;
    }
    tls.write_all(out.as_bytes()).await.expect("write");
    tls.flush().await.expect("flush");
    // Every answer is a 200 without a body: count the ends of heads.
    let (mut seen, mut tail) = (0u64, Vec::new());
    let mut buf = vec![0u8; 64 * 1024];
    while seen < count {
        let got = tls.read(&mut buf).await.expect("read");
        assert!(
            got > 0,
            "the server closed the connection after {seen} answers"
        );
        tail.extend_from_slice(&buf[..got]);
        let mut from = 0;
        while let Some(at) = tail[from..].windows(4).position(|w| w == b"\r\n\r\n") {
            seen += 1;
            from += at + 4;
        }
        tail.drain(..from);
    }
}
