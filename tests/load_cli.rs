//! `lcs-sim load` as a user runs it: the JSON fields and CSV header, health gates (exit 1), bad
//! input (exit 2), `load merge` of shard files, and the example Kubernetes manifest in `deploy/`.

mod common;

use std::process::{Command, Output};

use common::*;

async fn lcs_sim(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_lcs-sim"))
            .args(args)
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

fn args(s: &str) -> Vec<String> {
    s.split_whitespace().map(str::to_owned).collect()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_fields_csv_header_and_health_gates() {
    let (_tmp, d) = deployment();
    let live = Live::start(&d).await;
    let base = format!(
        "load handshake --target {} --ca {} --server-name lcs01.contoso.com --concurrency 2 --duration 1s --quiet",
        live.addr("tls-5061"),
        d.ca_path().display()
    );
    let out = lcs_sim(args(&format!("{base} --format json"))).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    let mut want = [
        "run_id",
        "shards",
        "shard_count",
        "settings_digest",
        "mode",
        "target",
        "duration_s",
        "started",
        "ok",
        "failed",
        "failures",
        "unfinished",
        "unfinished_by_phase",
        "not_started",
        "rate_per_s",
        "latency_us",
        "histogram",
        "per_second",
        "faults",
        "outage",
    ];
    want.sort();
    let mut keys = keys;
    keys.sort();
    assert_eq!(keys, want);
    let lat: Vec<&str> = v["latency_us"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(lat, ["max", "p50", "p90", "p99", "p999"]);
    let row: Vec<&str> = v["per_second"][0]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        row,
        [
            "failed",
            "not_started",
            "ok",
            "p99_us",
            "started",
            "t",
            "unfinished"
        ]
    );
    assert!(v["ok"].as_u64().unwrap() > 0);
    let n = |k: &str| v[k].as_u64().unwrap();
    assert_eq!(
        n("started"),
        n("ok") + n("failed") + n("unfinished") + n("not_started")
    );
    assert!(out.stderr.is_empty(), "--quiet prints no progress");

    let out = lcs_sim(args(&format!("{base} --format csv"))).await;
    let csv = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        csv.lines().next(),
        Some("t_s,started,ok,failed,unfinished,not_started,p99_us")
    );

    // Without --quiet and not on a terminal: plain progress lines on standard error.
    let out = lcs_sim(args(
        &base
            .replace(" --quiet", "")
            .replace("--duration 1s", "--duration 2s"),
    ))
    .await;
    assert!(
        stderr(&out).lines().any(|l| l.starts_with("t=1s ok/s=")),
        "{}",
        stderr(&out)
    );

    let out = lcs_sim(args(&format!("{base} --max-p99 1us"))).await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("--max-p99"));
    let out = lcs_sim(args(&format!("{base} --max-p99 10s --max-failure-ratio 0"))).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    live.stop().await;

    // The server is gone: every attempt fails, counted by reason, and the gate trips.
    let out = lcs_sim(args(&format!(
        "{base} --max-failure-ratio 0.5 --format json"
    )))
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["failures"]["connection_refused"].as_u64().unwrap() > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_exits_2_with_a_message() {
    let (_tmp, d) = deployment();
    let dir = d.root().display().to_string();
    let cases = [
        (
            format!("load handshake --deployment {dir} --rate 0"),
            "--rate",
        ),
        (
            format!("load handshake --deployment {dir} --rate -5"),
            "--rate",
        ),
        (
            format!("load handshake --deployment {dir} --duration -1s"),
            "--duration",
        ),
        (
            format!("load handshake --deployment {dir} --at 5s=reboot"),
            "not a fault",
        ),
        (
            format!("load handshake --deployment {dir} --at soon=renew"),
            "not a time",
        ),
        (
            format!("load handshake --deployment {dir} --shard 2/2"),
            "shard",
        ),
        ("load bogus".to_string(), "bogus"),
        (
            "load handshake --target 127.0.0.1:9 --ca x.pem --server-name a --at 1s=renew".into(),
            "--at needs --deployment",
        ),
        (
            "load handshake --target 127.0.0.1:9 --server-name a".into(),
            "--ca",
        ),
        (
            format!("load handshake --deployment {dir} --duration 2s --at 5s=renew"),
            "after the end of the run",
        ),
        (
            format!("load handshake --deployment {dir} --duration 2s --at 2s=fix-live"),
            "after the end of the run",
        ),
        (
            format!("load handshake --deployment {dir} --duration 2s --at 1s=grant:Nobody"),
            "unknown principal `Nobody`",
        ),
        (
            format!("load handshake --deployment {dir} --duration 2s --at 1s=revoke:RTCSevice"),
            "--at 1s=revoke:RTCSevice",
        ),
        (
            format!("load handshake --deployment {dir} --shard 0/2"),
            "--run-id",
        ),
        (
            format!("load handshake --deployment {dir} --run-id a/b"),
            "not a run id",
        ),
        (
            format!("load merge {dir}/lcs.toml"),
            "not a `lcs-sim load --format json` report",
        ),
    ];
    let index = d.root().join("store/index.json");
    let before = std::fs::read(&index).unwrap();
    for (line, needle) in cases {
        let out = lcs_sim(args(&line)).await;
        assert_eq!(out.status.code(), Some(2), "{line}: {}", stderr(&out));
        assert!(stderr(&out).contains(needle), "{line}: {}", stderr(&out));
    }
    assert_eq!(
        std::fs::read(&index).unwrap(),
        before,
        "nothing was changed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merge_of_shard_files_sums_them() {
    let (tmp, d) = deployment();
    let live = Live::start(&d).await;
    let mut files = Vec::new();
    for i in 0..2 {
        let line = format!(
            "load handshake --deployment {} --target {} --rate 40 --duration 1s --shard {i}/2 --run-id merge-test --quiet --format json",
            d.root().display(),
            live.addr("tls-5061")
        );
        let out = lcs_sim(args(&line)).await;
        assert!(out.status.success(), "{}", stderr(&out));
        let path = tmp.path().join(format!("shard-{i}.json"));
        std::fs::write(&path, &out.stdout).unwrap();
        files.push(path);
    }
    live.stop().await;
    let read = |p: &std::path::Path| -> lcs_sim::load::Report {
        serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
    };
    let (a, b) = (read(&files[0]), read(&files[1]));
    let out = lcs_sim(vec![
        "load".into(),
        "merge".into(),
        files[0].display().to_string(),
        files[1].display().to_string(),
        "--format".into(),
        "json".into(),
    ])
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let m: lcs_sim::load::Report = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(m.ok, a.ok + b.ok);
    assert_eq!(m.scheduled, Some(a.total() + b.total()));
    m.check().unwrap();
    assert_eq!(m, lcs_sim::load::merge(&[a, b]).unwrap());

    // Not shards of one run: the same shard twice, another run, other settings; exit 2 naming
    // both files.
    let copy = |name: &str, edit: &dyn Fn(&mut serde_json::Value)| {
        let mut v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&files[1]).unwrap()).unwrap();
        edit(&mut v);
        let path = tmp.path().join(name);
        std::fs::write(&path, v.to_string()).unwrap();
        path
    };
    let other_run = copy("other-run.json", &|v| v["run_id"] = "another".into());
    let other_settings = copy("other-settings.json", &|v| {
        v["settings_digest"] = "00112233445566778899aabbccddeeff".into()
    });
    let cases = [
        (&files[1], "both hold shard 1 of run merge-test"),
        (&other_run, "different runs (merge-test and another)"),
        (&other_settings, "different settings"),
    ];
    for (second, needle) in cases {
        let out = lcs_sim(vec![
            "load".into(),
            "merge".into(),
            files[1].display().to_string(),
            second.display().to_string(),
        ])
        .await;
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains(needle), "{err}");
        assert!(
            err.contains(&format!("{} and {}", files[1].display(), second.display())),
            "{err}"
        );
    }
    // One shard of two: merged, with a warning that the other is missing.
    let out = lcs_sim(vec![
        "load".into(),
        "merge".into(),
        files[1].display().to_string(),
    ])
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("1 of the 2 shards of run merge-test merged; missing: 0"),
        "{}",
        stderr(&out)
    );

    // A report whose counts do not add up is refused, naming the file.
    let mut v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&files[0]).unwrap()).unwrap();
    v["ok"] = serde_json::json!(v["ok"].as_u64().unwrap() + 1);
    std::fs::write(&files[0], v.to_string()).unwrap();
    let out = lcs_sim(vec![
        "load".into(),
        "merge".into(),
        files[0].display().to_string(),
        files[1].display().to_string(),
    ])
    .await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&files[0].display().to_string())
            && stderr(&out).contains("do not add up"),
        "{}",
        stderr(&out)
    );
}

/// A handshake load on a port that never answers TLS completes nothing: the report says so
/// (every operation unfinished), the gate fails, and the exit is 1 with "nothing measured".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_completed_is_nothing_measured_and_exit_1() {
    let (_tmp, d) = deployment();
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let line = format!(
        "load handshake --target {} --ca {} --server-name lcs01.contoso.com --rate 10 --duration 1s --grace 200ms --quiet --format json",
        silent.local_addr().unwrap(),
        d.ca_path().display()
    );
    for gate in ["", " --max-failure-ratio 0.01"] {
        let out = lcs_sim(args(&format!("{line}{gate}"))).await;
        assert_eq!(out.status.code(), Some(1), "{gate}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("nothing measured"),
            "{}",
            stderr(&out)
        );
        assert!(stderr(&out).contains("still in flight"), "{}", stderr(&out));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["scheduled"], 10);
        assert_eq!(v["unfinished"], 10);
        assert_eq!(v["unfinished_by_phase"]["handshaking"], 10);
    }
}

/// `--rate 1000000000 --duration 1s`: the run ends on time, says it fell behind, counts the
/// slots it never reached as `not_started`, and its memory stays small (no task per slot).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_billion_a_second_ends_on_time_with_bounded_memory() {
    let (_tmp, d) = deployment();
    let live = Live::start(&d).await;
    let line = format!(
        "load handshake --target {} --ca {} --server-name lcs01.contoso.com --rate 1000000000 --duration 1s --quiet --format json",
        live.addr("tls-5061"),
        d.ca_path().display()
    );
    let (out, peak_kib, took) = tokio::task::spawn_blocking(move || {
        let began = lcs_sim::clock::monotonic_now();
        let mut child = Command::new(env!("CARGO_BIN_EXE_lcs-sim"))
            .args(args(&line))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id();
        let stdout = cli::Captured::from(child.stdout.take().unwrap());
        let stderr = cli::Captured::from(child.stderr.take().unwrap());
        let mut peak = 0;
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if began.elapsed() > std::time::Duration::from_secs(30) {
                child.kill().unwrap();
                panic!("still running after 30 s");
            }
            peak = peak.max(lcs_sim::load::memory::rss_kib(pid).unwrap_or(0));
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        let out = Output {
            status,
            stdout: stdout.into_bytes(),
            stderr: stderr.into_bytes(),
        };
        (out, peak, began.elapsed())
    })
    .await
    .unwrap();
    live.stop().await;
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let n = |k: &str| v[k].as_u64().unwrap();
    assert_eq!(n("scheduled"), 1_000_000_000);
    assert_eq!(
        n("scheduled"),
        n("ok") + n("failed") + n("unfinished") + n("not_started")
    );
    assert!(n("not_started") > 999_000_000, "{v}");
    assert!(
        stderr(&out).contains("fell behind its schedule"),
        "{}",
        stderr(&out)
    );
    // 1 s of load and at most the 2 s default grace, plus the process's start and exit.
    assert!(took < std::time::Duration::from_secs(8), "{took:?}");
    assert!(peak_kib < 256 * 1024, "peak RSS {peak_kib} KiB");
}

/// The example Indexed Job in `deploy/`: N completions, each pod's index becomes `--shard I/N`.
#[test]
fn the_example_kubernetes_job_shards_the_load() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/load-job.json");
    let job: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap())
        .unwrap_or_else(|e| panic!("{path}: {e}"));
    assert_eq!(job["kind"], "Job");
    assert_eq!(job["apiVersion"], "batch/v1");
    let spec = &job["spec"];
    assert_eq!(spec["completionMode"], "Indexed");
    let n = spec["completions"].as_u64().unwrap();
    assert_eq!(
        spec["parallelism"].as_u64(),
        Some(n),
        "all shards run at once"
    );
    let container = &spec["template"]["spec"]["containers"][0];
    let command: Vec<&str> = container["command"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    let script = command.last().unwrap();
    assert!(
        script.contains(&format!("--shard \"$JOB_COMPLETION_INDEX/{n}\"")),
        "{script}"
    );
    assert!(script.contains("lcs-sim load ") && script.contains("--format json"));
    // Every pod of one Job shares its run id (the Job's uid), and a new Job has another.
    assert!(script.contains("--run-id \"$RUN_ID\""), "{script}");
    let env = &container["env"][0];
    assert_eq!(env["name"], "RUN_ID");
    assert_eq!(
        env["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.labels['batch.kubernetes.io/controller-uid']"
    );
    assert!(
        script.contains("--quiet"),
        "pod logs carry stdout and stderr: no progress lines"
    );
}

/// `load merge /dev/zero` is refused at the size cap with exit 2 naming the file, instead of
/// reading without limit.
#[test]
fn merge_refuses_an_endless_input_at_the_size_cap() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_lcs-sim"))
        .args(["load", "merge", "/dev/zero"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("/dev/zero") && stderr.contains("larger than"),
        "{stderr}"
    );
}

/// `load register`'s memory per connection says what it is: the load did not start the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_labels_its_memory_figure() {
    let (_tmp, d) = deployment();
    let live = Live::start(&d).await;
    let line = format!(
        "load register --target {} --ca {} --server-name lcs01.contoso.com --users 2 --duration 1s --quiet --server-pid {}",
        live.addr("tls-5061"),
        d.ca_path().display(),
        std::process::id()
    );
    let out = lcs_sim(args(&line)).await;
    live.stop().await;
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("KiB per connection of this run (this run did not start the server"),
        "{text}"
    );
}
