//! The admin endpoint's connection cap and timeouts (issue 15 §3), through the binary: 700
//! silent and half-request sockets neither starve `/healthz` for long nor the SIP TLS listener,
//! and `/metrics` counts what was refused and timed out.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use common::cli::*;
use lcs_sim::config::Config;

fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[test]
fn silent_and_half_request_sockets_are_capped_and_cut_off() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = init(&tmp);
    let path = dir.join("lcs.toml");
    let mut config = Config::load(&path).unwrap();
    config.admin.idle_timeout_ms = 1_000;
    config.admin.header_timeout_ms = 1_000;
    config.save(&path).unwrap();
    let serve = Serve::start(&dir);
    let admin = serve.admin();
    let mut held = Vec::new();
    for i in 0..700 {
        let Ok(mut s) = TcpStream::connect(admin) else {
            continue;
        };
        if i % 2 == 0 {
            let _ = s.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n");
        }
        held.push(s);
    }
    // The SIP TLS listener still has its file descriptors.
    let tls = serve.addr("tls-5061");
    assert!(presented_serial(tls, &dir.join("ca.pem")).is_some());
    // The holders are cut off: /healthz is served again within a few seconds.
    let url = format!("http://{admin}/healthz");
    let served = poll(Duration::from_secs(10), || {
        let out = std::process::Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", &url])
            .output()
            .ok()?;
        (out.stdout == b"200").then_some(())
    });
    assert!(served.is_some(), "/healthz was not served again");
    let (_, text) = curl("GET", &format!("http://{admin}/metrics"), None);
    assert!(
        metric(&text, "lcs_admin_connections_refused_total") > 0,
        "{text}"
    );
    assert!(
        metric(
            &text,
            "lcs_admin_connections_timed_out_total{timeout=\"header\"}"
        ) > 0,
        "{text}"
    );
    assert!(
        metric(
            &text,
            "lcs_admin_connections_timed_out_total{timeout=\"idle\"}"
        ) > 0,
        "{text}"
    );
    drop(held);
}
