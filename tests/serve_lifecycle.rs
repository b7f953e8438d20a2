//! How `serve` starts and stops, through the binary: the admin port `init` writes,
//! `--require-all`, a second `serve` on the same folder (and the folder lock behind it),
//! SIGTERM, SIGHUP and a closed stdout, and what `fix --live` and `doctor` say about a server
//! that stopped answering.

mod common;

use std::net::TcpListener;

use common::cli::*;
use lcs_sim::config::Config;
use lcs_sim::server::admin::ServeFile;

#[test]
fn init_writes_the_admin_port() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    lcs_ok(&["init", dir.to_str().unwrap(), "--admin-port", "5999"]);
    assert_eq!(
        Config::load(&dir.join("lcs.toml")).unwrap().admin.port,
        5999
    );
    let text = std::fs::read_to_string(dir.join("lcs.toml")).unwrap();
    assert!(text.contains("[admin]\nport = 5999"), "{text}");
}

#[test]
fn require_all_exits_1_at_once_when_a_listener_cannot_start() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = init(&tmp);
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut config = Config::load(&dir.join("lcs.toml")).unwrap();
    config.connections[0].port = taken.local_addr().unwrap().port();
    config.save(&dir.join("lcs.toml")).unwrap();
    let out = lcs(&[
        "serve",
        dir.to_str().unwrap(),
        "--require-all",
        "--duration",
        "60",
    ]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("--require-all"));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("address in use")
            || String::from_utf8_lossy(&out.stdout).contains("Address already in use")
    );
    assert!(!ServeFile::path(&dir).exists());
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("WARNING: running with"),
        "no 'running with' before exiting"
    );
}

#[test]
fn a_second_serve_on_the_same_folder_fails_clearly_and_sigterm_stops_the_first_with_exit_0() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = init(&tmp);
    let first = Serve::start(&dir);
    let out = lcs(&["serve", dir.to_str().unwrap(), "--duration", "60"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("another `lcs-sim serve` runs"), "{stderr}");
    let since = stderr
        .split("since ")
        .nth(1)
        .unwrap_or_else(|| panic!("{stderr}"));
    let since = since.split(')').next().unwrap();
    assert!(
        time::OffsetDateTime::parse(since, &time::format_description::well_known::Rfc3339).is_ok(),
        "not RFC 3339: {since}"
    );
    // The refused second one left the first one's serve.json alone.
    assert_eq!(ServeFile::read(&dir).unwrap().unwrap().admin, first.admin());
    let (status, stdout) = first.terminate();
    assert_eq!(status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("stopped."), "{stdout}");
    assert_eq!(events(&dir, 14301).len(), 1, "the stop event");
    assert!(!ServeFile::path(&dir).exists());
}

#[test]
fn the_folder_lock_keeps_out_a_second_serve_without_serve_json_and_a_copy_does_not_reach_the_original()
 {
    let tmp = tempfile::tempdir().unwrap();
    let dir = init(&tmp);
    let first = Serve::start(&dir);
    let file = ServeFile::read(&dir).unwrap().unwrap();
    assert_eq!(file.deployment, dir.canonicalize().unwrap());

    // A copy made while it runs carries its serve.json: the copy's fix --live must not reach
    // the original's server, and its doctor sees no server.
    let copy = tmp.path().join("copy");
    let cp = std::process::Command::new("cp")
        .args(["-r", dir.to_str().unwrap(), copy.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(cp.success());
    let out = lcs(&["fix", copy.to_str().unwrap(), "--live"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("this folder is a copy"), "{stderr}");
    let out = lcs(&["doctor", copy.to_str().unwrap()]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no server running"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The window two simultaneous starts race in: no serve.json yet, but the first holds the
    // folder's lock, so the second refuses before binding anything.
    std::fs::remove_file(ServeFile::path(&dir)).unwrap();
    let out = lcs(&["serve", dir.to_str().unwrap(), "--duration", "60"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("another `lcs-sim serve` runs") && stderr.contains("serve.lock"),
        "{stderr}"
    );
    let (status, stdout) = first.terminate();
    assert_eq!(status.code(), Some(0), "{stdout}");
    // The lock is free again: a new serve starts.
    let again = Serve::start(&dir);
    let (status, _) = again.terminate();
    assert_eq!(status.code(), Some(0));
}

/// Runs `lcs-sim ARGS` and gives it `limit` to finish (killed and `None` otherwise).
fn lcs_within(args: &[&str], limit: std::time::Duration) -> Option<(i32, String)> {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_lcs-sim"))
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = Captured::from(child.stderr.take().unwrap());
    let status = wait_or_kill(&mut child, limit)?;
    poll(limit, || stderr.closed().then_some(()));
    Some((status.code().unwrap_or(-1), stderr.text()))
}

#[test]
fn fix_live_and_doctor_give_up_on_a_stopped_server_and_say_so() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = init(&tmp);
    let d = dir.to_str().unwrap();
    let serve = Serve::start(&dir);
    let pid = serve.child.id().to_string();
    let signal = |sig: &str| {
        let sent = std::process::Command::new("kill")
            .args([sig, &pid])
            .status()
            .unwrap();
        assert!(sent.success(), "kill {sig} {pid}");
    };
    signal("-STOP");
    let limit = std::time::Duration::from_secs(30);
    let fixed = lcs_within(&["fix", d, "--live"], limit);
    let doctor = lcs_within(&["doctor", d], limit);
    signal("-CONT");
    let (code, stderr) = fixed.expect("fix --live gives up on a stopped server");
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "the server at {} did not answer within 5 s",
            serve.admin()
        )),
        "{stderr}"
    );
    let (_, stderr) = doctor.expect("doctor gives up on a stopped server");
    assert!(
        stderr.contains(&format!(
            "a server is running (pid {pid}) but did not answer"
        )),
        "{stderr}"
    );
    let (status, _) = serve.terminate();
    assert_eq!(status.code(), Some(0));
}

#[test]
fn serve_stops_cleanly_on_sighup_and_when_its_stdout_closes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = init(&tmp);
    let serve = Serve::start(&dir);
    let pid = serve.child.id().to_string();
    let mut child = serve;
    let sent = std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap();
    assert!(sent.success());
    let status = wait_or_kill(&mut child.child, PATIENCE).expect("serve exits on SIGHUP");
    assert_eq!(status.code(), Some(0));
    assert_eq!(events(&dir, 14301).len(), 1, "the stop event");
    assert!(!ServeFile::path(&dir).exists());

    // `serve D | head -3`: the reader leaves, the next status line fails, serve shuts down.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_lcs-sim"))
        .args(["serve", dir.to_str().unwrap(), "--status-interval", "1"])
        .args(["--duration", "60"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    {
        use std::io::BufRead;
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        for _ in 0..3 {
            lines.next().unwrap().unwrap();
        }
    }
    let status = wait_or_kill(&mut child, PATIENCE).expect("serve exits when stdout closes");
    assert_eq!(status.code(), Some(0));
    assert_eq!(events(&dir, 14301).len(), 2, "the stop event");
    assert!(!ServeFile::path(&dir).exists());
}

/// `init --force` will not replace a deployment a running serve uses (it answered 503
/// `unusable_key` afterwards): it exits 1 naming the server and changes nothing; once that
/// server has stopped, the same command replaces the deployment.
#[test]
fn init_force_refuses_while_serve_holds_the_folder_and_works_after_it_stops() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = init(&tmp);
    let d = dir.to_str().unwrap();
    let config = std::fs::read_to_string(dir.join("lcs.toml")).unwrap();
    let index = std::fs::read_to_string(dir.join("store/index.json")).unwrap();
    let serve = Serve::start(&dir);
    let out = lcs(&["init", d, "--force"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("another `lcs-sim serve` runs") && stderr.contains("stop it first"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("lcs.toml")).unwrap(),
        config
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("store/index.json")).unwrap(),
        index
    );
    let (status, _) = serve.terminate();
    assert_eq!(status.code(), Some(0));
    lcs_ok(&["init", d, "--force"]);
    assert_ne!(
        std::fs::read_to_string(dir.join("store/index.json")).unwrap(),
        index,
        "replaced once no server holds it"
    );
}

#[test]
fn a_taken_admin_port_says_how_to_choose_another_and_admin_port_overrides_it_for_one_run() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = init(&tmp);
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let mut config = Config::load(&dir.join("lcs.toml")).unwrap();
    config.admin.port = port;
    config.save(&dir.join("lcs.toml")).unwrap();

    let out = lcs(&["serve", dir.to_str().unwrap(), "--duration", "30s"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&format!("127.0.0.1:{port}")), "{stderr}");
    assert!(stderr.contains("[admin] port in"), "{stderr}");
    assert!(stderr.contains("--admin-port PORT"), "{stderr}");

    // The flag wins over lcs.toml for this run only: 0 picks a free port, which the banner
    // shows, and a duration with a unit stops it.
    let out = lcs(&[
        "serve",
        dir.to_str().unwrap(),
        "--admin-port",
        "0",
        "--duration",
        "1s",
        "--quiet",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let admin = stdout
        .split("admin      http://")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no admin line: {stdout}"));
    assert!(admin.starts_with("127.0.0.1:"), "{admin}");
    assert_ne!(admin, format!("127.0.0.1:{port}"));
    assert_eq!(
        Config::load(&dir.join("lcs.toml")).unwrap().admin.port,
        port,
        "lcs.toml is left as it was"
    );
    drop(taken);
}

#[test]
fn serve_durations_take_the_same_syntax_as_load_and_refuse_zero_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = init(&tmp);
    for (flag, bad) in [
        ("--duration", "0"),
        ("--status-interval", "soon"),
        ("--store-poll", "1ms"),
    ] {
        let out = lcs(&["serve", dir.to_str().unwrap(), flag, bad]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag} {bad}: {stderr}");
        assert!(stderr.contains(&format!("`{bad}`")), "{stderr}");
    }
    assert!(!ServeFile::path(&dir).exists(), "refused before starting");
}
