//! Execs by id (ExecService, `sandboxctl exec --detach` and `exec-*`):
//! detached starts, inspect, wait, signal, the records' cap and lifetime;
//! a dropped Exec stream kills its process, a detached exec outlives its
//! client.

use std::process::{Command, Stdio};
use std::time::Duration;

use sandboxd_proto::v1 as pb;
use tokio_stream::StreamExt;
use tonic::transport::Channel;

use crate::harness::{Clients, Daemon, argv, process_running};

type ExecClient = pb::exec_service_client::ExecServiceClient<Channel>;

async fn exec_client(d: &Daemon) -> ExecClient {
    ExecClient::new(d.channel().await)
}

fn at(sandbox: &str, exec_id: u64) -> pb::ExecRef {
    pb::ExecRef {
        sandbox_id: sandbox.into(),
        exec_id,
    }
}

async fn start(x: &mut ExecClient, sandbox: &str, args: &[&str]) -> pb::ExecInfo {
    x.start_exec(pb::StartExecRequest {
        sandbox_id: sandbox.into(),
        process: Some(argv(args)),
    })
    .await
    .expect("start exec")
    .into_inner()
}

async fn wait(x: &mut ExecClient, sandbox: &str, exec_id: u64) -> pb::ExecInfo {
    tokio::time::timeout(Duration::from_secs(20), x.wait_exec(at(sandbox, exec_id)))
        .await
        .expect("the exec ends")
        .expect("wait exec")
        .into_inner()
}

fn reason_code(e: &pb::ExecInfo) -> (i32, i32) {
    let exit = e.exit.as_ref().expect("exit");
    (exit.reason, exit.exit_code)
}

#[tokio::test]
async fn detached_execs_are_inspected_waited_for_and_signalled_by_id() {
    let d = Daemon::start();
    let mut c = d.clients().await;
    let mut x = exec_client(&d).await;
    let id = c.idle("host").await.id;

    let sleeper = start(&mut x, &id, &["/bin/sleep", "30"]).await;
    assert!(sleeper.running && sleeper.detached && !sleeper.tty);
    assert!(sleeper.exit.is_none() && sleeper.finished_at_ms == 0);
    assert_eq!(sleeper.argv, ["/bin/sleep", "30"]);
    assert!(sleeper.started_at_ms > 0 && sleeper.pid > 0);
    // The client that started it goes away; the process stays.
    drop(x);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        process_running(sleeper.pid),
        "a detached exec outlives its client"
    );
    let mut x = exec_client(&d).await;
    let seen = x
        .inspect_exec(at(&id, sleeper.exec_id))
        .await
        .expect("inspect")
        .into_inner();
    assert_eq!((seen.pid, seen.running), (sleeper.pid, true));

    x.signal_exec(pb::SignalExecRequest {
        sandbox_id: id.clone(),
        exec_id: sleeper.exec_id,
        signal: 15,
        group: false,
    })
    .await
    .expect("signal");
    let done = wait(&mut x, &id, sleeper.exec_id).await;
    assert!(!done.running);
    assert_eq!(reason_code(&done), (pb::ExitReason::Signaled as i32, 143));
    assert!(done.finished_at_ms >= done.started_at_ms);
    // Once ended: signalling it is refused, waiting returns at once.
    let s = x
        .signal_exec(pb::SignalExecRequest {
            sandbox_id: id.clone(),
            exec_id: sleeper.exec_id,
            signal: 9,
            group: true,
        })
        .await
        .expect_err("already ended");
    assert_eq!(s.code(), tonic::Code::FailedPrecondition, "{s:?}");
    assert_eq!(wait(&mut x, &id, sleeper.exec_id).await, done);

    // The exit code of one that ends by itself; the process group signal.
    let three = start(&mut x, &id, &["/bin/sh", "-c", "exit 3"]).await;
    assert_eq!(
        reason_code(&wait(&mut x, &id, three.exec_id).await),
        (pb::ExitReason::Exited as i32, 3)
    );
    let tree = start(&mut x, &id, &["/bin/sh", "-c", "sleep 30 & sleep 30; true"]).await;
    x.signal_exec(pb::SignalExecRequest {
        sandbox_id: id.clone(),
        exec_id: tree.exec_id,
        signal: 9,
        group: true,
    })
    .await
    .expect("signal the group");
    assert_eq!(
        reason_code(&wait(&mut x, &id, tree.exec_id).await),
        (pb::ExitReason::Signaled as i32, 137)
    );

    // Refusals.
    let s = x
        .start_exec(pb::StartExecRequest {
            sandbox_id: id.clone(),
            process: Some(pb::ProcessSpec {
                tty: true,
                ..argv(&["/bin/true"])
            }),
        })
        .await
        .expect_err("tty");
    assert_eq!(s.code(), tonic::Code::InvalidArgument, "{s:?}");
    let s = x.inspect_exec(at(&id, 12345)).await.expect_err("unknown");
    assert_eq!(s.code(), tonic::Code::NotFound, "{s:?}");
    let s = x
        .signal_exec(pb::SignalExecRequest {
            sandbox_id: id.clone(),
            exec_id: 12345,
            signal: 9,
            group: false,
        })
        .await
        .expect_err("unknown");
    assert_eq!(s.code(), tonic::Code::NotFound, "{s:?}");

    let listed = x
        .list_execs(pb::ListExecsRequest {
            sandbox_id: id.clone(),
        })
        .await
        .expect("list")
        .into_inner()
        .execs;
    let ids: Vec<u64> = listed.iter().map(|e| e.exec_id).collect();
    assert_eq!(ids, [sleeper.exec_id, three.exec_id, tree.exec_id]);

    // Records go with the sandbox.
    assert!(c.destroy(&id).await);
    let s = x
        .inspect_exec(at(&id, sleeper.exec_id))
        .await
        .expect_err("gone");
    assert_eq!(s.code(), tonic::Code::NotFound, "{s:?}");
    d.finish().await;
}

/// Opens an Exec stream running `args`; returns the request sender, the
/// response stream and the first message.
async fn open_exec(
    c: &mut Clients,
    id: &str,
    args: &[&str],
) -> (
    tokio::sync::mpsc::Sender<pb::ExecRequest>,
    tonic::Streaming<pb::ExecResponse>,
    pb::ExecResponse,
) {
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    tx.send(pb::ExecRequest {
        msg: Some(pb::exec_request::Msg::Start(pb::ExecStart {
            sandbox_id: id.into(),
            process: Some(argv(args)),
            size: None,
            ..Default::default()
        })),
    })
    .await
    .expect("send");
    let mut stream = c
        .processes
        .exec(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .expect("exec")
        .into_inner();
    let first = stream.next().await.expect("a message").expect("started");
    (tx, stream, first)
}

#[tokio::test]
async fn every_exec_has_an_id_and_a_dropped_stream_kills_its_process() {
    let d = Daemon::start();
    let mut c = d.clients().await;
    let mut x = exec_client(&d).await;
    let id = c.idle("host").await.id;

    let r = c.sh(&id, "exit 4").await;
    assert_ne!(r.exec_id, 0, "ExecSync returns the exec id");
    let seen = x
        .inspect_exec(at(&id, r.exec_id))
        .await
        .expect("inspect")
        .into_inner();
    assert_eq!((seen.pid, seen.detached), (r.pid, false));
    assert_eq!(reason_code(&seen), (pb::ExitReason::Exited as i32, 4));

    let (tx, stream, first) = open_exec(&mut c, &id, &["/bin/sleep", "30"]).await;
    let Some(pb::exec_response::Msg::StartedPid(pid)) = first.msg else {
        panic!("first message {first:?}")
    };
    assert_ne!(
        first.exec_id, 0,
        "the Exec stream's first message has the id"
    );
    assert!(
        x.inspect_exec(at(&id, first.exec_id))
            .await
            .expect("inspect")
            .into_inner()
            .running
    );
    // The client cancels: docs/api.md promises the process is killed.
    drop(stream);
    drop(tx);
    let done = wait(&mut x, &id, first.exec_id).await;
    assert_eq!(reason_code(&done), (pb::ExitReason::Signaled as i32, 137));
    assert!(!process_running(pid));
    d.finish().await;
}

#[tokio::test]
async fn finished_records_are_capped_per_sandbox() {
    let d = Daemon::start();
    let mut c = d.clients().await;
    let mut x = exec_client(&d).await;
    let id = c.idle("host").await.id;
    let running = start(&mut x, &id, &["/bin/sleep", "60"]).await;
    let mut first_done = 0;
    for i in 0..260 {
        let r = c.exec_sync(&id, argv(&["/bin/true"]), 0).await;
        if i == 0 {
            first_done = r.exec_id;
        }
    }
    let execs = x
        .list_execs(pb::ListExecsRequest {
            sandbox_id: id.clone(),
        })
        .await
        .expect("list")
        .into_inner()
        .execs;
    assert_eq!(execs.len(), 256, "the cap (docs/api.md)");
    assert_eq!(execs[0].exec_id, running.exec_id, "a running exec is kept");
    assert!(
        execs.iter().all(|e| e.exec_id != first_done),
        "the oldest finished go first"
    );
    d.finish().await;
}

fn sandboxctl(d: &Daemon) -> Command {
    let sandboxd = crate::harness::sandboxd_bin();
    let mut cmd = Command::new(sandboxd.with_file_name("sandboxctl"));
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

#[tokio::test]
async fn sandboxctl_exec_detach_and_exec_commands() {
    let d = Daemon::start();
    let mut c = d.clients().await;
    let id = c.idle("host").await.id;
    let (code, out, err) = ctl(&d, &["exec", "-d", &id, "--", "/bin/sleep", "30"]);
    assert_eq!(code, 0, "{err}");
    let exec_id = out.trim().to_owned();
    assert!(
        exec_id.parse::<u64>().is_ok(),
        "prints the exec id: {out:?}"
    );
    let (code, out, _) = ctl(&d, &["exec-inspect", &id, &exec_id]);
    assert_eq!(code, 0);
    assert!(
        out.contains("status:    running") && out.contains("/bin/sleep 30"),
        "{out}"
    );
    let (code, out, _) = ctl(&d, &["--json", "exec-inspect", &id, &exec_id]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["running"], true);
    let (code, out, _) = ctl(&d, &["execs", &id]);
    assert!(code == 0 && out.contains(&exec_id), "{out}");
    let (code, _, err) = ctl(&d, &["exec-kill", "-s", "TERM", &id, &exec_id]);
    assert_eq!(code, 0, "{err}");
    let (code, out, _) = ctl(&d, &["exec-wait", &id, &exec_id]);
    assert_eq!(code, 143, "exec-wait exits with the exec's code: {out}");
    let (code, _, err) = ctl(&d, &["exec-inspect", &id, "999"]);
    assert_ne!(code, 0);
    assert!(err.contains("999"), "{err}");
    d.finish().await;
}

#[tokio::test]
#[cfg_attr(
    not(all(target_os = "linux", not(feature = "force-chroot"))),
    ignore = "only the Linux backend gives a sandbox a devpts instance of its own; chroot and jails use the host's ptys (docs/api.md#terminals)"
)]
async fn tty_names_the_sandboxes_own_pts_node() {
    let d = Daemon::start();
    let mut c = d.clients().await;
    let plain = c.idle("host").await.id;
    // uid 0 in a user namespace: the devpts instance belongs to it.
    let userns = c
        .create(pb::SandboxSpec {
            mode: pb::SandboxMode::Idle as i32,
            isolation: Some(pb::Isolation {
                user: pb::Requirement::Required as i32,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .id;
    for (id, uid) in [(&plain, None), (&userns, Some(0))] {
        let (tx, rx) = tokio::sync::mpsc::channel(8);
        tx.send(pb::ExecRequest {
            msg: Some(pb::exec_request::Msg::Start(pb::ExecStart {
                sandbox_id: id.clone(),
                process: Some(pb::ProcessSpec {
                    tty: true,
                    user: uid.map(|uid| pb::User {
                        uid: Some(uid),
                        ..Default::default()
                    }),
                    // Without a user namespace the node is the process's own
                    // (the default user 65534), so it can reopen it by name,
                    // as with runc; in one, it stays the host root's
                    // (docs/api.md#terminals).
                    ..argv(&[
                        "/bin/sh",
                        "-c",
                        if uid.is_none() {
                            "t=$(tty) && echo $t && echo reopened > $t && ls /dev/pts"
                        } else {
                            "t=$(tty) && echo $t && echo reopened && ls /dev/pts"
                        },
                    ])
                }),
                size: None,
                ..Default::default()
            })),
        })
        .await
        .expect("send");
        let mut stream = c
            .processes
            .exec(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .expect("exec")
            .into_inner();
        let mut output = String::new();
        let mut code = -1;
        while let Some(m) = stream.next().await {
            match m.expect("message").msg {
                Some(pb::exec_response::Msg::Stdout(b)) => {
                    output.push_str(&String::from_utf8_lossy(&b));
                }
                Some(pb::exec_response::Msg::Exited(e)) => code = e.exit_code,
                _ => {}
            }
        }
        drop(tx);
        let lines: Vec<&str> = output.lines().map(str::trim).collect();
        let first = lines.first().copied().unwrap_or_default();
        let n = first
            .strip_prefix("/dev/pts/")
            .unwrap_or_else(|| panic!("uid {uid:?}: tty printed {output:?}"));
        assert_eq!(code, 0, "uid {uid:?}: {output}");
        assert_eq!(
            lines.get(1).copied(),
            Some("reopened"),
            "uid {uid:?}: {output}"
        );
        // The node is in the sandbox's own devpts instance, beside its ptmx.
        assert!(
            lines[2..]
                .iter()
                .any(|l| l.split_whitespace().any(|w| w == n)),
            "uid {uid:?}: {output}"
        );
    }
    d.finish().await;
}

#[tokio::test]
async fn exec_records_of_running_execs_survive_a_daemon_restart() {
    let mut d = Daemon::start();
    let mut c = d.clients().await;
    let mut x = exec_client(&d).await;
    let id = c.idle("host").await.id;
    let sleeper = start(&mut x, &id, &["/bin/sleep", "60"]).await;
    let done = start(&mut x, &id, &["/bin/true"]).await;
    wait(&mut x, &id, done.exec_id).await;
    drop((c, x));
    d.kill_and_restart();
    let mut x = exec_client(&d).await;
    // The supervisor tells the new daemon what still runs.
    let seen = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Ok(r) = x.inspect_exec(at(&id, sleeper.exec_id)).await {
                return r.into_inner();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the running exec is known again");
    assert_eq!(
        (seen.pid, seen.running, seen.detached, seen.argv.clone()),
        (sleeper.pid, true, true, sleeper.argv.clone())
    );
    assert_eq!(seen.started_at_ms / 1000, sleeper.started_at_ms / 1000);
    // What ended before the restart is not (docs/api.md).
    let s = x
        .inspect_exec(at(&id, done.exec_id))
        .await
        .expect_err("forgotten");
    assert_eq!(s.code(), tonic::Code::NotFound, "{s:?}");
    // It can still be signalled and waited for by id, and by pid.
    x.signal_exec(pb::SignalExecRequest {
        sandbox_id: id.clone(),
        exec_id: sleeper.exec_id,
        signal: 15,
        group: false,
    })
    .await
    .expect("signal after the restart");
    assert_eq!(
        reason_code(&wait(&mut x, &id, sleeper.exec_id).await),
        (pb::ExitReason::Signaled as i32, 143)
    );
    d.finish().await;
}

/// The exec caps count the execs a restarted daemon finds still running:
/// without that, every restart would let a client start a full cap's worth
/// more beside them (here: a second exec where max_execs_per_sandbox is 1).
#[tokio::test]
async fn a_restart_keeps_running_execs_under_the_exec_caps() {
    let dir = crate::remote::TempDir::new("execs-caps-restart");
    let config = dir.0.join("sandboxd.toml");
    std::fs::write(&config, "[limits]\nmax_execs_per_sandbox = 1\n").expect("config");
    let mut d = Daemon::start_with(&["--config", &config.to_string_lossy()]);
    let mut c = d.clients().await;
    let mut x = exec_client(&d).await;
    let id = c.idle("host").await.id;
    let sleeper = start(&mut x, &id, &["/bin/sleep", "60"]).await;
    let second = pb::StartExecRequest {
        sandbox_id: id.clone(),
        process: Some(argv(&["/bin/true"])),
    };
    let full = x
        .start_exec(second.clone())
        .await
        .expect_err("over the cap");
    assert_eq!(full.code(), tonic::Code::ResourceExhausted, "{full:?}");
    drop((c, x));
    d.kill_and_restart();
    let mut x = exec_client(&d).await;
    tokio::time::timeout(Duration::from_secs(10), async {
        while x.inspect_exec(at(&id, sleeper.exec_id)).await.is_err() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the running exec is known again");
    let full = x
        .start_exec(second.clone())
        .await
        .expect_err("still over the cap after the restart");
    assert_eq!(full.code(), tonic::Code::ResourceExhausted, "{full:?}");
    assert!(full.message().contains("max_execs_per_sandbox"), "{full:?}");
    // Its end gives the slot back.
    x.signal_exec(pb::SignalExecRequest {
        sandbox_id: id.clone(),
        exec_id: sleeper.exec_id,
        signal: 9,
        group: false,
    })
    .await
    .expect("signal after the restart");
    wait(&mut x, &id, sleeper.exec_id).await;
    let started = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match x.start_exec(second.clone()).await {
                Ok(r) => return r.into_inner(),
                Err(s) if s.code() == tonic::Code::ResourceExhausted => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(s) => panic!("start exec: {s:?}"),
            }
        }
    })
    .await
    .expect("a slot once the recovered exec ended");
    wait(&mut x, &id, started.exec_id).await;
    d.finish().await;
}
