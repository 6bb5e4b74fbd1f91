//! The main process's logs (LogService, `sandboxctl logs`): capture of
//! PROCESS and INIT main processes, tail/since/stream selection, follow,
//! a daemon restart in the middle, and a process that writes flat out
//! against a slow reader (bounded files, bounded daemon and supervisor
//! memory).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sandboxd_proto::v1 as pb;
use tonic::transport::Channel;

use crate::harness::{Daemon, argv, out};

type LogClient = pb::log_service_client::LogServiceClient<Channel>;

async fn log_client(d: &Daemon) -> LogClient {
    LogClient::new(d.channel().await)
}

/// Every entry a non-following Logs call returns.
async fn read(c: &mut LogClient, req: pb::LogsRequest) -> Vec<pb::LogEntry> {
    let mut s = c.logs(req).await.expect("logs").into_inner();
    let mut out = Vec::new();
    while let Some(e) = s.message().await.expect("log entry") {
        out.push(e);
    }
    out
}

fn text(entries: &[pb::LogEntry], stream: Option<pb::LogStream>) -> String {
    entries
        .iter()
        .filter(|e| stream.is_none_or(|s| e.stream == s as i32))
        .map(|e| String::from_utf8_lossy(&e.data).into_owned())
        .collect()
}

fn req(id: &str) -> pb::LogsRequest {
    pb::LogsRequest {
        sandbox_id: id.into(),
        ..Default::default()
    }
}

fn sandboxctl(d: &Daemon) -> Command {
    let sandboxd = crate::harness::sandboxd_bin();
    let path = sandboxd.with_file_name("sandboxctl");
    assert!(
        path.exists(),
        "{} is missing: cargo build --bins",
        path.display()
    );
    let mut cmd = Command::new(path);
    cmd.arg("--host")
        .arg(format!("unix://{}", d.socket.display()));
    cmd
}

fn ctl(d: &Daemon, args: &[&str]) -> (i32, String, String) {
    let o = sandboxctl(d)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run sandboxctl");
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

async fn create(c: &mut crate::harness::Clients, mode: pb::SandboxMode, script: &str) -> String {
    c.create(pb::SandboxSpec {
        mode: mode as i32,
        process: Some(argv(&["/bin/sh", "-c", script])),
        ..Default::default()
    })
    .await
    .id
}

async fn wait(c: &mut crate::harness::Clients, id: &str) {
    c.sandboxes
        .wait_sandbox(pb::WaitSandboxRequest { id: id.into() })
        .await
        .expect("wait");
}

/// A destroyed sandbox's directory is emptied and renamed into place for
/// the next create (`StateStore::retire`): the next sandbox's logs and exit
/// show nothing of the last one's.
#[tokio::test]
async fn a_reused_sandbox_directory_shows_nothing_of_the_last_sandbox() {
    use std::os::unix::fs::MetadataExt;

    let d = Daemon::start();
    let mut c = d.clients().await;
    let mut l = log_client(&d).await;
    let spare = d.state.join("spare");
    let old = create(
        &mut c,
        pb::SandboxMode::Process,
        "echo secret of the last sandbox; echo more >&2; exit 7",
    )
    .await;
    wait(&mut c, &old).await;
    let ino = std::fs::metadata(d.state.join("sandboxes").join(&old))
        .expect("the sandbox's directory")
        .ino();
    assert!(c.destroy(&old).await);
    // Retired off the destroy's path.
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_dir(&spare).map_or(0, Iterator::count) == 0 {
        assert!(Instant::now() < deadline, "no spare after the destroy");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let new = create(&mut c, pb::SandboxMode::Process, "echo new").await;
    wait(&mut c, &new).await;
    let dir = d.state.join("sandboxes").join(&new);
    assert_eq!(
        std::fs::metadata(&dir).expect("dir").ino(),
        ino,
        "the directory was not reused"
    );
    assert_eq!(text(&read(&mut l, req(&new)).await, None), "new\n");
    let exit = c.wait(&new).await;
    assert_eq!(exit.exit_code, 0, "{exit:?}");
    assert!(c.destroy(&new).await);
    d.finish().await;
}

#[tokio::test]
async fn main_output_is_logged_with_tail_since_and_streams() {
    let d = Daemon::start();
    let mut c = d.clients().await;
    let mut l = log_client(&d).await;
    for mode in [pb::SandboxMode::Process, pb::SandboxMode::Init] {
        let id = create(
            &mut c,
            mode,
            // Order across the two streams is only kept between writes the
            // supervisor sees apart (two pipes): hence the short sleeps.
            "echo out1; sleep 0.1; echo err1 >&2; sleep 0.1; echo out2; sleep 0.3; echo out3; printf partial",
        )
        .await;
        wait(&mut c, &id).await;
        let all = read(&mut l, req(&id)).await;
        assert_eq!(
            text(&all, None),
            "out1\nerr1\nout2\nout3\npartial",
            "{mode:?}: every entry, in order"
        );
        assert_eq!(
            text(&all, Some(pb::LogStream::Stderr)),
            "err1\n",
            "{mode:?}"
        );
        assert!(
            all.windows(2)
                .all(|w| w[0].time_unix_nanos <= w[1].time_unix_nanos),
            "{mode:?}: times in order"
        );
        let tail = read(
            &mut l,
            pb::LogsRequest {
                tail: Some(2),
                ..req(&id)
            },
        )
        .await;
        assert_eq!(text(&tail, None), "out3\npartial", "{mode:?}: tail 2");
        let none = read(
            &mut l,
            pb::LogsRequest {
                tail: Some(0),
                ..req(&id)
            },
        )
        .await;
        assert!(none.is_empty(), "{mode:?}: tail 0");
        let stdout = read(
            &mut l,
            pb::LogsRequest {
                streams: pb::LogStreams::Stdout as i32,
                tail: Some(1),
                ..req(&id)
            },
        )
        .await;
        assert_eq!(text(&stdout, None), "partial", "{mode:?}: stdout, tail 1");
        let stderr = read(
            &mut l,
            pb::LogsRequest {
                streams: pb::LogStreams::Stderr as i32,
                ..req(&id)
            },
        )
        .await;
        assert_eq!(text(&stderr, None), "err1\n", "{mode:?}: stderr only");
        // since: the time of out3 (after the sleep) leaves out3 and later.
        let out3 = all.iter().find(|e| e.data == b"out3\n").expect("out3");
        let since = read(
            &mut l,
            pb::LogsRequest {
                since_unix_nanos: out3.time_unix_nanos,
                ..req(&id)
            },
        )
        .await;
        assert_eq!(text(&since, None), "out3\npartial", "{mode:?}: since");

        // sandboxctl: stdout entries to stdout, stderr entries to stderr.
        let (code, o, e) = ctl(&d, &["logs", &id]);
        assert_eq!(
            (code, o.as_str(), e.as_str()),
            (0, "out1\nout2\nout3\npartial", "err1\n")
        );
        let (code, o, _) = ctl(&d, &["logs", "--tail", "2", "--stdout", &id]);
        assert_eq!((code, o.as_str()), (0, "out3\npartial"));
        let (code, o, e) = ctl(&d, &["logs", "--stderr", "--since", "1h", &id]);
        assert_eq!((code, o.as_str(), e.as_str()), (0, "", "err1\n"));
        let (code, o, _) = ctl(&d, &["logs", "--since", "2000-01-01T00:00:00Z", "-t", &id]);
        assert_eq!(code, 0);
        assert!(
            o.lines().next().is_some_and(|l| l.ends_with("Z out1")),
            "timestamps: {o}"
        );
        let (code, _, e) = ctl(&d, &["logs", "--since", "yesterday", &id]);
        assert_eq!(code, 2, "a bad --since is a usage error: {e}");

        // The files are the daemon's, outside the sandbox's root.
        let dir = d.state.join("sandboxes").join(&id).join("logs");
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let meta = std::fs::symlink_metadata(&dir).expect("log dir");
        assert!(meta.is_dir());
        assert_eq!((meta.uid(), meta.permissions().mode() & 0o777), (0, 0o700));
        for f in std::fs::read_dir(&dir).expect("list") {
            let m = f.expect("entry").metadata().expect("meta");
            assert_eq!((m.uid(), m.permissions().mode() & 0o777), (0, 0o600));
        }
        assert!(c.destroy(&id).await);
        assert!(crate::harness::gone(&dir).await, "destroy removes the log");
    }
    d.finish().await;
}

#[tokio::test]
async fn idle_has_no_log_and_bad_requests_are_refused() {
    let d = Daemon::start();
    let mut c = d.clients().await;
    let mut l = log_client(&d).await;
    let idle = c.idle("host").await.id;
    let s = l.logs(req(&idle)).await.expect_err("IDLE has no log");
    assert_eq!(s.code(), tonic::Code::FailedPrecondition, "{s:?}");
    let s = l.logs(req("0123456789abcdef")).await.expect_err("unknown");
    assert_eq!(s.code(), tonic::Code::NotFound, "{s:?}");
    let id = create(&mut c, pb::SandboxMode::Process, "echo hi").await;
    let s = l
        .logs(pb::LogsRequest {
            streams: 99,
            ..req(&id)
        })
        .await
        .expect_err("bad enum");
    assert_eq!(s.code(), tonic::Code::InvalidArgument, "{s:?}");
    let s = l
        .logs(pb::LogsRequest {
            since_unix_nanos: -1,
            ..req(&id)
        })
        .await
        .expect_err("before the epoch");
    assert_eq!(s.code(), tonic::Code::InvalidArgument, "{s:?}");
    // A spec over the daemon's cap is refused, naming the field.
    let s = c
        .try_create(pb::SandboxSpec {
            process: Some(argv(&["/bin/true"])),
            logs: Some(pb::LogLimits {
                max_file_bytes: 1 << 30,
                max_files: 2,
            }),
            ..Default::default()
        })
        .await
        .expect_err("over max_log_bytes");
    assert_eq!(s.code(), tonic::Code::InvalidArgument, "{s:?}");
    assert!(s.message().contains("spec.logs"), "{s:?}");
    d.finish().await;
}

#[tokio::test]
async fn follow_streams_new_output_and_ends_with_the_sandbox() {
    let d = Daemon::start();
    let mut c = d.clients().await;
    let mut l = log_client(&d).await;
    let id = create(
        &mut c,
        pb::SandboxMode::Process,
        "echo old; sleep 1; for i in 1 2 3; do echo new$i; sleep 0.3; done",
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // tail 0 + follow: only what comes after the call.
    let mut s = l
        .logs(pb::LogsRequest {
            follow: true,
            tail: Some(0),
            ..req(&id)
        })
        .await
        .expect("follow")
        .into_inner();
    let mut got = String::new();
    let ended = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(e) = s.message().await.expect("entry") {
            got.push_str(&String::from_utf8_lossy(&e.data));
        }
    })
    .await;
    assert!(
        ended.is_ok(),
        "the follow ends when the sandbox ends; got {got:?}"
    );
    assert_eq!(got, "new1\nnew2\nnew3\n");

    // sandboxctl logs -f on a running sandbox, ended by its exit.
    let id = create(
        &mut c,
        pb::SandboxMode::Process,
        "for i in 1 2 3; do echo tick$i; sleep 0.3; done",
    )
    .await;
    let (code, o, e) = ctl(&d, &["logs", "-f", &id]);
    assert_eq!((code, o.as_str()), (0, "tick1\ntick2\ntick3\n"), "{e}");
    d.finish().await;
}

#[tokio::test]
async fn output_written_while_the_daemon_is_down_is_kept() {
    let mut d = Daemon::start();
    let mut c = d.clients().await;
    let id = create(
        &mut c,
        pb::SandboxMode::Process,
        "echo before; sleep 2; echo during; sleep 3; echo after",
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    drop(c);
    d.kill_daemon();
    tokio::time::sleep(Duration::from_secs(3)).await;
    d.respawn();
    let mut c = d.clients().await;
    let mut l = log_client(&d).await;
    let mut s = l
        .logs(pb::LogsRequest {
            follow: true,
            ..req(&id)
        })
        .await
        .expect("follow after restart")
        .into_inner();
    let mut got = String::new();
    tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(e) = s.message().await.expect("entry") {
            got.push_str(&String::from_utf8_lossy(&e.data));
        }
    })
    .await
    .expect("the follow ends with the sandbox");
    assert_eq!(got, "before\nduring\nafter\n");
    wait(&mut c, &id).await;
    d.finish().await;
}

/// Resident memory of a process in KiB (Linux /proc; these e2e tests run
/// on Linux and in the force-chroot build on Linux).
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS")
}

fn dir_bytes(dir: &std::path::Path) -> (u64, Vec<u64>) {
    let mut total = 0;
    let mut gens = Vec::new();
    for e in std::fs::read_dir(dir).expect("log dir") {
        let e = e.expect("entry");
        // The writer may rotate a file away between the listing and here.
        let meta = match e.metadata() {
            Ok(m) => m,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
            Err(err) => panic!("meta: {err}"),
        };
        total += meta.len();
        let name = e.file_name().into_string().expect("utf-8");
        gens.push(
            name.trim_start_matches("main-")
                .trim_end_matches(".log")
                .parse()
                .expect("generation"),
        );
    }
    gens.sort_unstable();
    (total, gens)
}

#[tokio::test]
async fn a_flat_out_writer_keeps_files_and_memory_bounded() {
    let d = Daemon::start();
    let mut c = d.clients().await;
    let mut l = log_client(&d).await;
    const FILE: u64 = 256 * 1024;
    const FILES: u32 = 2;
    // Both streams flat out, long lines and short ones.
    let sb = c
        .create(pb::SandboxSpec {
            process: Some(argv(&[
                "/bin/sh",
                "-c",
                "yes 0123456789012345678901234567890123456789012345678901234567890123456789 & yes e >&2",
            ])),
            logs: Some(pb::LogLimits {
                max_file_bytes: FILE,
                max_files: FILES,
            }),
            ..Default::default()
        })
        .await;
    let id = sb.id.clone();
    let supervisor = u32::try_from(sb.supervisor_pid).expect("supervisor pid");
    let dir = d.state.join("sandboxes").join(&id).join("logs");
    // Slow followers: opened, read once, then never read again while the
    // writer goes on (their queues fill; the daemon must not buffer more).
    let mut slow = Vec::new();
    for _ in 0..4 {
        let mut s = l
            .logs(pb::LogsRequest {
                follow: true,
                ..req(&id)
            })
            .await
            .expect("follow")
            .into_inner();
        s.message()
            .await
            .expect("first entry")
            .expect("some output");
        slow.push(s);
    }
    let daemon_before = rss_kib(d.pid());
    let started = Instant::now();
    let mut max_daemon = 0;
    let mut max_supervisor = 0;
    let mut max_total = 0;
    while started.elapsed() < Duration::from_secs(6) {
        max_daemon = max_daemon.max(rss_kib(d.pid()));
        max_supervisor = max_supervisor.max(rss_kib(supervisor));
        let (total, gens) = dir_bytes(&dir);
        max_total = max_total.max(total);
        assert!(gens.len() <= FILES as usize + 1, "files kept: {gens:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!(
        "flood: daemon RSS {daemon_before} -> max {max_daemon} KiB, supervisor max {max_supervisor} KiB, log dir max {max_total} bytes"
    );
    let (_, gens) = dir_bytes(&dir);
    let newest = *gens.last().expect("a log file");
    // Far more went through than the cap holds: it was written flat out
    // and rotated away (each generation is FILE bytes).
    assert!(newest >= 10, "only {newest} rotations in 6 s");
    // The cap holds: each file at most FILE bytes, at most FILES of them
    // (a rotation creates the new file before it removes the oldest).
    assert!(
        max_total <= FILE * u64::from(FILES + 1),
        "log dir grew to {max_total} bytes"
    );
    for g in &gens {
        // The writer goes on: the oldest listed file may have been rotated
        // away since it was listed.
        let len = match std::fs::metadata(dir.join(format!("main-{g}.log"))) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => panic!("main-{g}.log: {e}"),
        };
        assert!(len <= FILE, "main-{g}.log is {len} bytes");
    }
    // Memory: the daemon holds at most a small queue per slow reader, the
    // supervisor one read buffer.
    assert!(
        max_daemon < daemon_before + 16 * 1024,
        "daemon RSS grew from {daemon_before} KiB to {max_daemon} KiB"
    );
    assert!(
        max_supervisor < 16 * 1024,
        "supervisor RSS reached {max_supervisor} KiB"
    );
    // The sandbox still answers while its main process floods.
    assert_eq!(out(&c.sh(&id, "echo alive").await), "alive\n");
    // A slow follower that resumes reading is told what rotated away.
    let mut skipped = 0;
    let mut s = slow.pop().expect("a slow follower");
    while skipped == 0 {
        let e = tokio::time::timeout(Duration::from_secs(10), s.message())
            .await
            .expect("entries keep coming")
            .expect("entry")
            .expect("not the end");
        skipped += e.skipped_files;
    }
    drop(s);
    drop(slow);
    assert!(c.destroy(&id).await);
    assert!(crate::harness::gone(&dir).await, "destroy removes the log");
    d.finish().await;
}
