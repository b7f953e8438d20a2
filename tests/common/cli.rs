//! Driving the `lcs-sim` binary and independent peers (`openssl s_client`) from tests: children
//! whose output is captured as it comes, `serve` started and waited for, polling instead of
//! sleeping. Shared by `interop.rs` and `live_ops.rs`.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lcs_sim::clock::monotonic_now;
use lcs_sim::config::Config;

pub const LCS: &str = env!("CARGO_BIN_EXE_lcs-sim");
pub const SERVER: &str = "lcs01.contoso.com";
/// Generous bound for anything a healthy peer does in milliseconds.
pub const PATIENCE: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------
// Peers on PATH

/// Whether a CI run: a missing peer must fail it, never skip.
pub fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// Whether `tool` is on PATH. If not: a panic under CI, otherwise a skip note on stderr.
pub fn peer_available(tool: &str) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    let found = std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| {
            std::fs::metadata(dir.join(tool))
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    });
    if !found {
        assert!(
            !under_ci(),
            "{tool} is not on PATH, and under CI=true a missing peer fails the run \
             (.ci/run installs it: apt-get install {tool})"
        );
        eprintln!(
            "SKIPPED: {tool} is not on PATH (apt-get install {tool}; under CI=true this fails)"
        );
    }
    found
}

// ---------------------------------------------------------------------------------------------
// Children and their output

/// Polls `f` every 10 ms until it yields, or `timeout` passes.
pub fn poll<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let start = monotonic_now();
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if start.elapsed() >= timeout {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Everything a child wrote to one pipe so far, collected by a reader thread.
pub struct Captured {
    pub buf: Arc<Mutex<Vec<u8>>>,
    pub reader: std::thread::JoinHandle<()>,
}

impl Captured {
    pub fn from(mut pipe: impl Read + Send + 'static) -> Captured {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sink = buf.clone();
        let reader = std::thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            while let Ok(n @ 1..) = pipe.read(&mut chunk) {
                sink.lock().unwrap().extend_from_slice(&chunk[..n]);
            }
        });
        Captured { buf, reader }
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.buf.lock().unwrap()).into_owned()
    }

    /// Whether the pipe has closed and everything is in.
    pub fn closed(&self) -> bool {
        self.reader.is_finished()
    }

    /// Everything, once the pipe has closed (call after the child exited).
    pub fn into_bytes(self) -> Vec<u8> {
        self.reader.join().unwrap();
        Arc::try_unwrap(self.buf).unwrap().into_inner().unwrap()
    }
}

/// Waits up to `timeout` for `child` to exit; kills it if it does not.
pub fn wait_or_kill(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let status = poll(timeout, || child.try_wait().unwrap());
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    status
}

pub fn lcs(args: &[&str]) -> Output {
    Command::new(LCS).args(args).output().expect("lcs-sim runs")
}

pub fn lcs_ok(args: &[&str]) -> String {
    let out = lcs(args);
    assert!(
        out.status.success(),
        "lcs-sim {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

// ---------------------------------------------------------------------------------------------
// The deployment and `lcs-sim serve`

/// `lcs-sim init` in a temporary folder, then every listener moved to a free port (ids unchanged).
pub fn init(tmp: &tempfile::TempDir) -> PathBuf {
    let dir = tmp.path().join("demo");
    lcs_ok(&["init", dir.to_str().unwrap()]);
    let path = dir.join("lcs.toml");
    let mut config = Config::load(&path).unwrap();
    for c in &mut config.connections {
        c.port = 0;
    }
    // Tests run in parallel: each admin endpoint on a free port (serve.json says which).
    config.admin.port = 0;
    config.save(&path).unwrap();
    dir
}

/// `lcs-sim serve DIR --quiet` as a child process, killed when dropped so a failing test leaves
/// no server behind.
pub struct Serve {
    pub child: Child,
    pub stdout: Captured,
    pub stderr: Captured,
}

impl Serve {
    /// Starts the server and waits for its banner (every listener started or not).
    pub fn start(dir: &Path) -> Serve {
        Self::start_with(dir, &[])
    }

    /// [`Serve::start`] with extra flags.
    pub fn start_with(dir: &Path, extra: &[&str]) -> Serve {
        let mut child = Command::new(LCS)
            .args(["serve", dir.to_str().unwrap(), "--quiet"])
            .args(extra)
            // A safety net should the test process die without dropping us; picks up
            // `store renew` from the other process within 20 ms.
            .args(["--duration", "120", "--store-poll", "20ms"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("lcs-sim serve starts");
        let serve = Serve {
            stdout: Captured::from(child.stdout.take().unwrap()),
            stderr: Captured::from(child.stderr.take().unwrap()),
            child,
        };
        let up = poll(PATIENCE, || {
            serve
                .stdout
                .text()
                .contains("Ctrl-C or SIGTERM stops.")
                .then_some(())
        });
        assert!(
            up.is_some(),
            "serve did not come up\nstdout: {}\nstderr: {}",
            serve.stdout.text(),
            serve.stderr.text()
        );
        serve
    }

    pub fn banner(&self) -> String {
        self.stdout.text()
    }

    /// The address from the banner line `  listening  <id> <TRANSPORT> <addr>`.
    pub fn addr(&self, id: &str) -> SocketAddr {
        self.banner()
            .lines()
            .find_map(
                |line| match line.split_whitespace().collect::<Vec<_>>()[..] {
                    ["listening", lid, _, addr] if lid == id => Some(addr.parse().unwrap()),
                    _ => None,
                },
            )
            .unwrap_or_else(|| panic!("{id} is not listening:\n{}", self.banner()))
    }

    /// The admin endpoint, from the banner line `  admin      http://127.0.0.1:PORT ...`.
    pub fn admin(&self) -> SocketAddr {
        self.banner()
            .lines()
            .find_map(|line| {
                let rest = line.trim().strip_prefix("admin")?.trim();
                rest.strip_prefix("http://")?
                    .split_whitespace()
                    .next()?
                    .parse()
                    .ok()
            })
            .unwrap_or_else(|| panic!("no admin line in the banner:\n{}", self.banner()))
    }

    /// Sends SIGTERM (with kill(1): no unsafe here) and waits for the exit.
    pub fn terminate(mut self) -> (ExitStatus, String) {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(sent.success(), "kill -TERM {pid}");
        let status = wait_or_kill(&mut self.child, PATIENCE).expect("serve exits on SIGTERM");
        poll(PATIENCE, || self.stdout.closed().then_some(()));
        (status, self.stdout.text())
    }
}

/// `curl` (a real HTTP client): the status code and the body.
pub fn curl(method: &str, url: &str, body: Option<&str>) -> (u16, String) {
    curl_headers(method, url, body, &[])
}

/// [`curl`] as `fix --live` asks: `Content-Type: application/json` (even without a body) and the
/// run's bearer token from `DIR/serve.json`, which state-changing admin requests need.
pub fn curl_admin(dir: &Path, method: &str, url: &str, body: Option<&str>) -> (u16, String) {
    let file = lcs_sim::server::admin::ServeFile::read(dir)
        .unwrap()
        .expect("serve runs");
    let bearer = format!("Authorization: Bearer {}", file.token.as_str());
    curl_headers(
        method,
        url,
        body,
        &["Content-Type: application/json", &bearer],
    )
}

/// [`curl`] with extra `headers` (`Name: value`); a body is sent as JSON unless they name
/// another `Content-Type`.
pub fn curl_headers(
    method: &str,
    url: &str,
    body: Option<&str>,
    headers: &[&str],
) -> (u16, String) {
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "-S", "-X", method, "-w", "\n%{http_code}", url]);
    for h in headers {
        cmd.args(["-H", h]);
    }
    if let Some(b) = body {
        let typed = headers
            .iter()
            .any(|h| h.to_ascii_lowercase().starts_with("content-type:"));
        if !typed {
            cmd.args(["-H", "Content-Type: application/json"]);
        }
        cmd.args(["--data", b]);
    }
    let out = cmd.output().expect("curl runs");
    assert!(
        out.status.success(),
        "curl {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (code.trim().parse().unwrap(), body.to_string())
}

/// The serial of the certificate a TLS listener presents now, as `openssl x509` prints it.
pub fn presented_serial(addr: SocketAddr, ca: &Path) -> Option<String> {
    let script = format!(
        "openssl s_client -connect {addr} -CAfile {} -servername {SERVER} </dev/null 2>/dev/null | openssl x509 -noout -serial",
        ca.display()
    );
    let out = Command::new("sh").args(["-c", &script]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim().strip_prefix("serial=").map(str::to_owned)
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// SIP text

pub fn options(n: u32) -> String {
    super::request(
        "OPTIONS",
        &format!("sip:{SERVER}"),
        "probe@contoso.com",
        SERVER,
        n,
        "",
        "",
    )
}

/// The status line of the response with `CSeq: n` in `text` (a stream of SIP messages).
pub fn status_of(text: &str, n: u32) -> Option<String> {
    text.split("\r\n\r\n")
        .find(|head| head.lines().any(|l| l.starts_with(&format!("CSeq: {n} "))))
        .and_then(|head| {
            head.lines()
                .map(str::trim)
                .find(|l| l.starts_with("SIP/2.0 "))
        })
        .map(str::to_owned)
}

/// Reads one SIP message (head plus Content-Length body) from a blocking stream.
pub fn read_sip(io: &mut impl Read) -> String {
    try_read_sip(io).expect("a SIP message within the read timeout")
}

/// [`read_sip`], with a timeout or a close as an error.
pub fn try_read_sip(io: &mut impl Read) -> std::io::Result<String> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if io.read(&mut byte)? == 0 {
            let got = String::from_utf8_lossy(&buf).into_owned();
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("closed after {got:?}"),
            ));
        }
        buf.push(byte[0]);
        if buf == b"\r\n" {
            buf.clear(); // keep-alive
        }
    }
    let head = String::from_utf8_lossy(&buf).into_owned();
    let len = header(&head, "Content-Length").map_or(0, |v| v.parse().unwrap());
    let mut body = vec![0u8; len];
    io.read_exact(&mut body)?;
    Ok(head + &String::from_utf8_lossy(&body))
}

/// The first value of header `name` (full name, case-insensitive).
pub fn header<'a>(message: &'a str, name: &str) -> Option<&'a str> {
    message.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// A 200 for `request`: its Vias in order, From, To with a tag, Call-ID and CSeq.
pub fn ok_for(request: &str) -> String {
    let mut out = String::from("SIP/2.0 200 OK\r\n");
    for line in request.split("\r\n\r\n").next().unwrap().lines().skip(1) {
        let name = line.split(':').next().unwrap().trim().to_ascii_lowercase();
        match name.as_str() {
            "via" | "from" | "call-id" | "cseq" => out += &format!("{line}\r\n"),
            "to" => out += &format!("{line};tag=bob-1\r\n"),
            _ => {}
        }
    }
    out + "Content-Length: 0\r\n\r\n"
}

// ---------------------------------------------------------------------------------------------
// openssl s_client

/// `openssl s_client` checking the chain against `ca.pem` and the server's name, with SIP
/// written to its stdin and read from its stdout.
pub struct SClient {
    pub child: Child,
    pub stdin: Option<ChildStdin>,
    pub stdout: Captured,
    pub stderr: Captured,
}

impl SClient {
    pub fn connect(addr: SocketAddr, ca: &Path, verify_name: &str) -> SClient {
        let mut child = Command::new("openssl")
            .args(["s_client", "-connect", &addr.to_string()])
            .args(["-CAfile", ca.to_str().unwrap(), "-servername", SERVER])
            .args(["-verify_hostname", verify_name, "-verify_return_error"])
            // `-brief`: no session dump, but "Verification: OK" and the verified name;
            // `-no_ign_eof`: closing stdin ends the session, so the exit status tells.
            .args(["-brief", "-no_ign_eof"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("openssl runs");
        SClient {
            stdin: child.stdin.take(),
            stdout: Captured::from(child.stdout.take().unwrap()),
            stderr: Captured::from(child.stderr.take().unwrap()),
            child,
        }
    }

    /// Sends `request` (an error if s_client is gone, e.g. after a failed handshake).
    pub fn send(&mut self, request: &str) -> std::io::Result<()> {
        let stdin = self.stdin.as_mut().unwrap();
        stdin.write_all(request.as_bytes())?;
        stdin.flush()
    }

    /// The status line of the response to CSeq `n`, waiting for it.
    pub fn status(&self, n: u32) -> Option<String> {
        poll(PATIENCE, || status_of(&self.stdout.text(), n))
    }

    /// Closes stdin and returns s_client's exit status and everything it printed.
    pub fn finish(mut self) -> (ExitStatus, String) {
        drop(self.stdin.take());
        let status = wait_or_kill(&mut self.child, PATIENCE).expect("s_client exits");
        poll(PATIENCE, || {
            (self.stdout.closed() && self.stderr.closed()).then_some(())
        });
        let text = format!("{}\n{}", self.stdout.text(), self.stderr.text());
        (status, text)
    }
}

impl Drop for SClient {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One OPTIONS over a fresh `s_client`: its exit status, our response's status line, all output.
pub fn s_client_options(
    addr: SocketAddr,
    ca: &Path,
    verify_name: &str,
) -> (bool, Option<String>, String) {
    let mut client = SClient::connect(addr, ca, verify_name);
    let status = match client.send(&options(1)) {
        Ok(()) => poll(Duration::from_secs(3), || {
            status_of(&client.stdout.text(), 1)
                .or_else(|| client.child.try_wait().unwrap().map(|_| String::new()))
        })
        .filter(|s| !s.is_empty()),
        Err(_) => None,
    };
    let (exit, text) = client.finish();
    (exit.success(), status, text)
}

/// Parses JSON output, naming the text when it is not JSON.
pub fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// The events with `id` in the deployment's log, as `lcs-sim events --format json` prints them.
pub fn events(dir: &Path, id: u32) -> Vec<serde_json::Value> {
    let out = lcs_ok(&[
        "events",
        dir.to_str().unwrap(),
        "--format",
        "json",
        "--id",
        &id.to_string(),
    ]);
    match json(&out) {
        serde_json::Value::Array(v) => v,
        other => panic!("{other}"),
    }
}
