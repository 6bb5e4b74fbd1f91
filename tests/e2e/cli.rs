//! `sandboxctl` against the real daemon: run, create/exec/ls/inspect/rm,
//! JSON output and one-line errors.

use std::process::{Command, Stdio};

use crate::harness::{BackendUnderTest, Daemon, backend, chroot_backend};

/// The sandboxctl binary built next to sandboxd (ci/test.sh builds every
/// binary before the tests run).
fn sandboxctl(d: &Daemon) -> Command {
    let sandboxd = crate::harness::sandboxd_bin();
    let path = sandboxd.with_file_name("sandboxctl");
    assert!(
        path.exists(),
        "{} is missing: build it first (cargo build --bins)",
        path.display()
    );
    let mut cmd = Command::new(path);
    cmd.arg("--host")
        .arg(format!("unix://{}", d.socket.display()));
    cmd
}

fn run(cmd: &mut Command, stdin: &str) -> (i32, String, String) {
    use std::io::Write;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    // A command that never reads stdin may exit before we write.
    match child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
    {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        other => other.expect("write stdin"),
    }
    let out = child.wait_with_output().expect("wait");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn sandboxctl_run_exec_ls_inspect_rm() {
    let d = Daemon::start();
    let (code, out, err) = run(
        sandboxctl(&d).args([
            "run",
            "--",
            "/bin/sh",
            "-c",
            "echo hi; echo oops >&2; exit 5",
        ]),
        "",
    );
    assert_eq!((code, out.as_str()), (5, "hi\n"), "stderr: {err}");
    assert!(err.contains("oops"));
    let (code, out, _) = run(
        sandboxctl(&d).args(["run", "-i", "--", "/bin/cat"]),
        "piped input\n",
    );
    assert_eq!((code, out.as_str()), (0, "piped input\n"));
    // `run` removes its sandbox.
    // JSON lines, one sandbox per line: none.
    let (code, out, _) = run(sandboxctl(&d).args(["--json", "ls"]), "");
    assert_eq!((code, out.as_str()), (0, ""));

    let (code, _, err) = run(
        sandboxctl(&d).args(["create", "--mode", "idle", "--name", "demo"]),
        "",
    );
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = run(
        sandboxctl(&d).args(["exec", "demo", "--", "/bin/sh", "-c", "id -u"]),
        "",
    );
    assert_eq!((code, out.as_str()), (0, "65534\n"), "{err}");
    let (code, out, _) = run(sandboxctl(&d).args(["inspect", "demo"]), "");
    assert_eq!(code, 0);
    assert!(
        out.contains("filesystem") || out.contains("FILESYSTEM"),
        "{out}"
    );
    let (code, out, _) = run(sandboxctl(&d).args(["--json", "caps"]), "");
    assert_eq!(code, 0);
    let caps: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(
        caps["backend"],
        match backend() {
            BackendUnderTest::Linux => "LINUX",
            BackendUnderTest::Freebsd => "FREEBSD",
            BackendUnderTest::Chroot => "CHROOT",
        }
    );
    // What this daemon cannot give: RESTRICTED without an address pool
    // (Linux, FreeBSD: the daemon has no --net-pool), a REQUIRED hostname
    // (chroot).
    let refused = if chroot_backend() {
        ["--hostname", "web", "--cwd", "/"]
    } else {
        ["--network", "restricted", "--address", "203.0.113.10"]
    };
    let (code, _, err) = run(
        sandboxctl(&d)
            .arg("run")
            .args(refused)
            .args(["--", "/bin/true"]),
        "",
    );
    assert_eq!(code, 125, "a refused create exits 125 like docker");
    assert_eq!(err.trim().lines().count(), 1, "one-line error: {err}");
    assert!(
        err.contains("FAILED_PRECONDITION") || err.contains("FailedPrecondition"),
        "{err}"
    );
    let (code, out, _) = run(sandboxctl(&d).args(["rm", "demo"]), "");
    assert_eq!(code, 0, "{out}");
    d.finish().await;
}

#[tokio::test]
async fn sandboxctl_stop_and_rm_report_each_id() {
    let d = Daemon::start();
    for name in ["one", "two"] {
        let (code, _, err) = run(
            sandboxctl(&d).args(["create", "--mode", "idle", "--name", name]),
            "",
        );
        assert_eq!(code, 0, "{err}");
    }
    // An unknown id fails on its own line and does not stop the others.
    let (code, out, err) = run(
        sandboxctl(&d).args(["stop", "--grace", "1", "one", "nosuch", "two"]),
        "",
    );
    assert_eq!(code, 1, "stdout: {out} stderr: {err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(
        lines[0].contains("EXITED") || lines[0].contains("exited"),
        "{out}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("nosuch"), "{err}");
    // Destroy is idempotent: an unknown id is reported, not an error.
    let (code, out, err) = run(
        sandboxctl(&d).args(["--json", "rm", "one", "nosuch", "two"]),
        "",
    );
    assert_eq!(code, 0, "{err}");
    let docs: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    let existed: Vec<_> = docs
        .iter()
        .map(|d| (d["id"].as_str().unwrap_or_default(), d["existed"].as_bool()))
        .collect();
    assert_eq!(
        existed,
        [
            ("one", Some(true)),
            ("nosuch", Some(false)),
            ("two", Some(true))
        ]
    );
    d.finish().await;
}
