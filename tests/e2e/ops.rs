//! Operating the daemon: the Prometheus metrics listener (scraped over
//! HTTP), GetSandbox's resource use with and without limits (through the
//! API and `sandboxctl inspect`/`stats`), systemd readiness over
//! `$NOTIFY_SOCKET`, the unit file, shell completions, and the docker
//! habits of sandboxctl (`ps`, `rm -f`, `stop -t`).

use std::io::{Read, Write};
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sandboxd_proto::v1 as pb;

use crate::harness::{Daemon, argv, chroot_backend, free_port, linux_backend};

/// The sandboxctl binary built next to sandboxd.
fn sandboxctl(d: Option<&Daemon>) -> Command {
    let sandboxd = crate::harness::sandboxd_bin();
    let path = sandboxd.with_file_name("sandboxctl");
    assert!(
        path.exists(),
        "{} is missing: build it first (cargo build --bins)",
        path.display()
    );
    let mut cmd = Command::new(path);
    if let Some(d) = d {
        cmd.arg("--host")
            .arg(format!("unix://{}", d.socket.display()));
    }
    cmd
}

fn run(cmd: &mut Command) -> (i32, String, String) {
    let out = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("spawn");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// One HTTP/1.0 request to the metrics listener: (status line, body).
fn http(port: u16, request: &str) -> (String, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect to metrics");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s.write_all(request.as_bytes()).expect("write");
    let mut text = String::new();
    s.read_to_string(&mut text).expect("read");
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (
        head.lines().next().unwrap_or_default().to_owned(),
        body.to_owned(),
    )
}

fn scrape(port: u16) -> String {
    let (status, body) = http(port, "GET /metrics HTTP/1.0\r\n\r\n");
    assert_eq!(status, "HTTP/1.1 200 OK", "{body}");
    assert!(body.ends_with("# EOF\n"), "not OpenMetrics text:\n{body}");
    body
}

/// The value of the series whose line starts with `series` (name and
/// labels exactly), if present.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

#[tokio::test]
async fn metrics_are_scraped_on_loopback_and_follow_the_lifecycle() {
    let port = free_port();
    let d = Daemon::start_with(&["--metrics", &format!("tcp://127.0.0.1:{port}")]);
    let mut c = d.clients().await;
    let before = scrape(port);
    assert_eq!(
        value(&before, "sandboxd_sandboxes{state=\"running\"}"),
        Some(0.0),
        "{before}"
    );
    assert_eq!(value(&before, "sandboxd_leased_addresses"), Some(0.0));
    let sb = c
        .create(pb::SandboxSpec {
            name: "metered".into(),
            mode: pb::SandboxMode::Idle as i32,
            ..Default::default()
        })
        .await;
    let r = c
        .sh(
            &sb.id,
            "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; echo done",
        )
        .await;
    assert_eq!(crate::harness::out(&r), "done\n");
    let during = scrape(port);
    assert_eq!(
        value(&during, "sandboxd_sandboxes{state=\"running\"}"),
        Some(1.0),
        "{during}"
    );
    for series in [
        "sandboxd_operation_duration_seconds_count{operation=\"create\",outcome=\"ok\"}",
        "sandboxd_operation_duration_seconds_count{operation=\"exec\",outcome=\"ok\"}",
    ] {
        assert_eq!(value(&during, series), Some(1.0), "{series} in\n{during}");
    }
    let labels = format!("{{id=\"{}\",name=\"metered\"}}", sb.id);
    let cpu = value(
        &during,
        &format!("sandboxd_sandbox_cpu_seconds_total{labels}"),
    );
    let memory = value(&during, &format!("sandboxd_sandbox_memory_bytes{labels}"));
    let pids = value(&during, &format!("sandboxd_sandbox_pids{labels}"));
    if linux_backend() {
        assert!(cpu.is_some_and(|v| v > 0.0), "cpu {cpu:?} in\n{during}");
        assert!(memory.is_some_and(|v| v > 0.0), "memory {memory:?}");
        assert!(pids.is_some(), "pids in\n{during}");
    } else if chroot_backend() {
        // Not measured: absent, never a zero that looks like a measurement.
        assert_eq!((cpu, memory, pids), (None, None, None), "{during}");
    }
    // A failed create is counted by the step (or kind) that failed.
    let _ = c
        .try_create(pb::SandboxSpec {
            image: "no-such-image".into(),
            mode: pb::SandboxMode::Idle as i32,
            ..Default::default()
        })
        .await
        .expect_err("unknown image");
    // So is an exec that cannot start.
    let _ = c
        .processes
        .exec_sync(pb::ExecSyncRequest {
            sandbox_id: sb.id.clone(),
            process: Some(crate::harness::argv(&["/no/such/program"])),
            ..Default::default()
        })
        .await
        .expect_err("no such program");
    assert!(c.destroy(&sb.id).await);
    let after = scrape(port);
    assert_eq!(
        value(
            &after,
            "sandboxd_operation_failures_total{operation=\"exec\",step=\"find program\"}"
        ),
        Some(1.0),
        "{after}"
    );
    for (series, want) in [
        ("sandboxd_sandboxes{state=\"running\"}", 0.0),
        (
            "sandboxd_operation_duration_seconds_count{operation=\"destroy\",outcome=\"ok\"}",
            1.0,
        ),
        (
            "sandboxd_operation_duration_seconds_count{operation=\"create\",outcome=\"error\"}",
            1.0,
        ),
    ] {
        assert_eq!(value(&after, series), Some(want), "{series} in\n{after}");
    }
    assert!(
        after.contains("sandboxd_operation_failures_total{operation=\"create\",step="),
        "{after}"
    );
    assert!(
        !after.contains(&sb.id),
        "a destroyed sandbox's series stayed:\n{after}"
    );
    // Only GET /metrics.
    assert!(http(port, "GET / HTTP/1.0\r\n\r\n").0.contains("404"));
    assert!(
        http(port, "POST /metrics HTTP/1.0\r\n\r\n")
            .0
            .contains("405")
    );
    drop(c);
    d.finish().await;
}

#[test]
fn metrics_off_the_loopback_need_an_explicit_setting() {
    let out = Command::new(crate::harness::sandboxd_bin())
        .args(["--check-config", "--metrics", "tcp://0.0.0.0:9464"])
        .output()
        .expect("sandboxd");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "accepted a public metrics listener");
    assert!(err.contains("metrics_allow_non_loopback"), "{err}");
    let out = Command::new(crate::harness::sandboxd_bin())
        .args([
            "--check-config",
            "--metrics",
            "tcp://0.0.0.0:9464",
            "--metrics-allow-non-loopback",
        ])
        .output()
        .expect("sandboxd");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Whether this host has a block I/O controller (v1 blkio, or io in the
/// unified hierarchy's root).
fn host_has_io_accounting() -> bool {
    std::path::Path::new("/sys/fs/cgroup/blkio/blkio.throttle.io_service_bytes").exists()
        || [
            "/sys/fs/cgroup/cgroup.controllers",
            "/sys/fs/cgroup/unified/cgroup.controllers",
        ]
        .iter()
        .any(|f| std::fs::read_to_string(f).is_ok_and(|t| t.split_whitespace().any(|c| c == "io")))
}

#[tokio::test]
async fn get_sandbox_reports_usage_without_any_limit() {
    let d = Daemon::start();
    let mut c = d.clients().await;
    let sb = c.idle("host").await;
    // CPU, and some bytes written to the (tmpfs) /tmp: memory.
    let r = c
        .sh(
            &sb.id,
            "i=0; while [ $i -lt 30000 ]; do i=$((i+1)); done; head -c 4194304 /dev/zero >/tmp/f; echo ok",
        )
        .await;
    assert_eq!(crate::harness::out(&r), "ok\n");
    let got = c.get(&sb.id).await;
    assert!(
        got.spec
            .as_ref()
            .and_then(|s| s.limits.as_ref())
            .is_none_or(|l| l.memory_bytes.is_none() && l.pids.is_none() && l.cpu_millis.is_none()),
        "this test is about a sandbox without limits"
    );
    let u = got.usage.expect("a running sandbox has a usage message");
    if linux_backend() {
        assert!(u.cpu_usec.is_some_and(|v| v > 0), "cpu: {u:?}");
        assert!(
            u.memory_bytes.is_some_and(|v| v >= 4 << 20),
            "memory (4 MiB in /tmp): {u:?}"
        );
        assert!(u.pids.is_some(), "pids: {u:?}");
        if host_has_io_accounting() {
            assert!(
                u.io_read_bytes.is_some() && u.io_write_bytes.is_some(),
                "block I/O: {u:?}"
            );
        }
    } else if chroot_backend() {
        assert_eq!(
            u,
            pb::ResourceUsage::default(),
            "chroot measures nothing per sandbox: every field unset, none zero"
        );
    }
    // sandboxctl shows the same, and says what is unknown.
    let (code, text, err) = run(sandboxctl(Some(&d)).args(["inspect", &sb.id]));
    assert_eq!(code, 0, "{err}");
    let row = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no {name} row in\n{text}"))
            .to_owned()
    };
    let (cpu, io) = (row("CPU time:"), row("Block I/O:"));
    if linux_backend() {
        assert!(!cpu.contains("unknown") && cpu.ends_with('s'), "{cpu}");
    } else if chroot_backend() {
        assert!(cpu.contains("unknown") && io.contains("unknown"), "{text}");
    }
    let (code, text, err) = run(sandboxctl(Some(&d)).args(["stats"]));
    assert_eq!(code, 0, "{err}");
    assert!(text.starts_with("ID"), "{text}");
    assert!(text.contains(&sb.id), "{text}");
    let (code, text, err) = run(sandboxctl(Some(&d)).args(["--json", "stats", &sb.id]));
    assert_eq!(code, 0, "{err}");
    // One JSON line; ResourceUsage in the proto3 mapping (uint64 as a
    // string, an unmeasured field absent).
    let v: serde_json::Value = serde_json::from_str(&text).expect("json");
    assert_eq!(v["id"], sb.id.as_str());
    if linux_backend() {
        let cpu = v["usage"]["cpuUsec"]
            .as_str()
            .and_then(|s| s.parse::<u64>().ok());
        assert!(cpu.is_some_and(|n| n > 0), "{v}");
    } else if chroot_backend() {
        assert!(v["usage"].get("cpuUsec").is_none(), "{v}");
    }
    // Errors as JSON on stderr with --json.
    let (code, out, err) = run(sandboxctl(Some(&d)).args(["--json", "inspect", "no-such-sandbox"]));
    assert_eq!((code, out.as_str()), (1, ""), "{err}");
    let e: serde_json::Value = serde_json::from_str(err.trim()).expect("a JSON error");
    assert_eq!(e["error"]["code"], "NOT_FOUND", "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("no-such-sandbox")),
        "{e}"
    );
    // --format: a template over the same document.
    let (code, out, err) = run(sandboxctl(Some(&d)).args([
        "inspect",
        &sb.id,
        "--format",
        "{{.id}} {{.state}} {{.spec.image}}",
    ]));
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, format!("{} RUNNING host\n", sb.id));
    assert!(c.destroy(&sb.id).await);
    drop(c);
    d.finish().await;
}

#[cfg_attr(
    any(feature = "force-chroot", not(target_os = "linux")),
    ignore = "the limits and their accounting are the Linux backend's cgroups"
)]
#[tokio::test]
async fn usage_counts_under_a_limit_too() {
    let d = Daemon::start();
    let mut c = d.clients().await;
    let sb = c
        .create(pb::SandboxSpec {
            mode: pb::SandboxMode::Idle as i32,
            limits: Some(pb::Limits {
                memory_bytes: Some(pb::Limit {
                    value: 256 << 20,
                    requirement: pb::Requirement::Required as i32,
                }),
                pids: Some(pb::Limit {
                    value: 64,
                    requirement: pb::Requirement::Required as i32,
                }),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await;
    let r = c
        .sh(
            &sb.id,
            "sleep 5 & sleep 5 & head -c 2097152 /dev/zero >/tmp/f; echo ok",
        )
        .await;
    assert_eq!(crate::harness::out(&r), "ok\n");
    let u = c
        .sandboxes
        .get_sandbox(pb::GetSandboxRequest { id: sb.id.clone() })
        .await
        .expect("get")
        .into_inner()
        .sandbox
        .and_then(|s| s.usage)
        .expect("usage");
    assert!(u.memory_bytes.is_some_and(|m| m >= 2 << 20), "{u:?}");
    // The two background sleeps (plus pid 1 when the sandbox has one).
    assert!(u.pids.is_some_and(|p| p >= 2), "{u:?}");
    assert!(u.cpu_usec.is_some(), "{u:?}");
    assert!(c.destroy(&sb.id).await);
    drop(c);
    d.finish().await;
}

#[tokio::test]
async fn readiness_is_notified_once_the_socket_answers() {
    let dir = std::env::temp_dir().join(format!("sandboxd-ops-notify-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("notify.sock");
    let _ = std::fs::remove_file(&path);
    let rx = UnixDatagram::bind(&path).expect("bind");
    rx.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let notify = path.to_string_lossy().into_owned();
    let d = Daemon::start_full(None, &[], &[("NOTIFY_SOCKET", notify.as_str())]);
    let mut buf = [0u8; 512];
    let n = rx.recv(&mut buf).expect("READY=1 within 30 s");
    let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(msg.lines().any(|l| l == "READY=1"), "{msg}");
    assert!(
        msg.lines().any(|l| l == format!("MAINPID={}", d.pid())),
        "{msg}"
    );
    // Ready means a client gets answers.
    let mut c = d.clients().await;
    c.host
        .get_capabilities(pb::GetCapabilitiesRequest::default())
        .await
        .expect("the daemon answers once it said READY");
    drop(c);
    d.finish().await;
    let n = rx.recv(&mut buf).expect("STOPPING=1 on SIGTERM");
    assert_eq!(&buf[..n], b"STOPPING=1");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_systemd_unit_verifies() {
    let unit = concat!(env!("CARGO_MANIFEST_DIR"), "/systemd/sandboxd.service");
    let text = std::fs::read_to_string(unit).expect("crates/daemon/systemd/sandboxd.service");
    assert!(text.contains("Type=notify"), "{text}");
    assert!(
        text.contains("KillMode=process"),
        "sandboxes must outlive a restart"
    );
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        if cfg!(target_os = "linux") {
            panic!("systemd-analyze is missing (.ci/run installs systemd)");
        }
        eprintln!("the_systemd_unit_verifies: no systemd on this OS; only the text was checked");
        return;
    }
    // verify checks that ExecStart's binary exists: point it at this
    // build's, in a copy of the unit.
    let dir = std::env::temp_dir().join(format!("sandboxd-ops-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let copy = dir.join("sandboxd.service");
    std::fs::write(
        &copy,
        text.replace(
            "/usr/local/bin/sandboxd",
            &crate::harness::sandboxd_bin().display().to_string(),
        ),
    )
    .expect("write unit");
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&copy)
        .output()
        .expect("systemd-analyze");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(out.status.success() && err.trim().is_empty(), "{err}");
}

#[test]
fn completion_scripts_load_in_their_shells() {
    let script = |shell: &str| {
        let (code, text, err) = run(sandboxctl(None).args(["completion", shell]));
        assert_eq!(code, 0, "{shell}: {err}");
        text
    };
    let bash = script("bash");
    let out = Command::new("bash")
        .args(["-c", "source /dev/stdin; complete -p sandboxctl"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(bash.as_bytes())?;
            child.wait_with_output()
        })
        .expect("bash");
    let registered = String::from_utf8_lossy(&out.stdout);
    assert!(registered.contains("sandboxctl"), "bash: {registered}");
    assert!(script("zsh").starts_with("#compdef sandboxctl"));
    let fish = script("fish");
    assert!(fish.contains("complete -c sandboxctl"), "{fish}");
    for sub in ["stats", "completion", "inspect"] {
        assert!(bash.contains(sub), "bash completion lacks {sub}");
    }
    let (code, _, err) = run(sandboxctl(None).args(["completion", "tcsh"]));
    assert_eq!(code, 2, "{err}");
}

#[tokio::test]
async fn docker_habits_ps_stop_t_rm_f() {
    let d = Daemon::start();
    let mut c = d.clients().await;
    c.create(pb::SandboxSpec {
        name: "habits".into(),
        // Ignores TERM: stop -t 1 must reach SIGKILL after one second.
        process: Some(argv(&[
            "/bin/sh",
            "-c",
            "trap '' TERM; while :; do sleep 1; done",
        ])),
        ..Default::default()
    })
    .await;
    let (code, text, err) = run(sandboxctl(Some(&d)).args(["ps"]));
    assert_eq!(code, 0, "{err}");
    assert!(text.contains("habits"), "{text}");
    let started = Instant::now();
    let (code, text, err) = run(sandboxctl(Some(&d)).args(["stop", "-t", "1", "habits"]));
    assert_eq!(code, 0, "{err}");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(8),
        "stop -t 1 took {took:?}: {text}"
    );
    assert!(text.to_lowercase().contains("exited"), "{text}");
    let other = c.idle("host").await;
    let (code, text, err) = run(sandboxctl(Some(&d)).args(["rm", "-f", "habits", &other.id]));
    assert_eq!(code, 0, "{err}");
    assert!(text.contains("removed"), "{text}");
    let (_, text, _) = run(sandboxctl(Some(&d)).args(["ps"]));
    assert!(
        !text.contains("habits") && !text.contains(&other.id),
        "{text}"
    );
    drop(c);
    d.finish().await;
}
