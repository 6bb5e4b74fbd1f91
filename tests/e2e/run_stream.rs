//! An Exec stream that creates its own sandbox (`start.create`, what
//! `sandboxctl run` uses): the sandbox is created, run in and, with
//! `start.remove`, destroyed in one call; a client that leaves at any point
//! leaves nothing behind; bad requests are refused before anything is
//! created; and the stream is held to every rule CreateSandbox and Exec are
//! (exec caps, role caps, sandbox quotas, ownership).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use sandboxd_proto::v1 as pb;
use sandboxd_proto::v1::process_service_client::ProcessServiceClient;
use sandboxd_proto::v1::sandbox_service_client::SandboxServiceClient;
use tokio_stream::StreamExt;
use tonic::Code;
use tonic::transport::Channel;

use crate::harness::{Daemon, argv, free_port, process_running};
use crate::remote::{Ca, TempDir, client, tls_channel, write_pair};

/// An IDLE spec on the `host` image.
fn idle_spec() -> pb::SandboxSpec {
    pb::SandboxSpec {
        image: "host".into(),
        mode: pb::SandboxMode::Idle as i32,
        ..Default::default()
    }
}

/// A start that creates its sandbox from `spec` and runs `process` in it.
fn create_start(spec: pb::SandboxSpec, process: pb::ProcessSpec, remove: bool) -> pb::ExecStart {
    pb::ExecStart {
        process: Some(process),
        create: Some(pb::CreateSandboxRequest {
            spec: Some(spec),
            ..Default::default()
        }),
        remove,
        ..Default::default()
    }
}

/// Opens an Exec stream with `start` and stdin closed; returns the request
/// sender (dropping it does not end the call) and the response stream, or
/// the refusal.
async fn open(
    processes: &mut ProcessServiceClient<Channel>,
    start: pb::ExecStart,
) -> Result<
    (
        tokio::sync::mpsc::Sender<pb::ExecRequest>,
        tonic::Streaming<pb::ExecResponse>,
    ),
    tonic::Status,
> {
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    for msg in [
        pb::exec_request::Msg::Start(start),
        pb::exec_request::Msg::CloseStdin(true),
    ] {
        tx.send(pb::ExecRequest { msg: Some(msg) })
            .await
            .expect("send");
    }
    let stream = processes
        .exec(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await?
        .into_inner();
    Ok((tx, stream))
}

/// What a stream said, in order, until it ended.
#[derive(Debug, Default)]
struct Seen {
    created: Option<pb::CreateSandboxResponse>,
    pid: Option<i64>,
    stdout: Vec<u8>,
    exited: Option<pb::ExitResult>,
    status: Option<tonic::Status>,
    /// Message kinds in order.
    order: Vec<&'static str>,
}

async fn drain(mut stream: tonic::Streaming<pb::ExecResponse>) -> Seen {
    use pb::exec_response::Msg;
    let mut seen = Seen::default();
    let read = async {
        while let Some(m) = stream.next().await {
            match m {
                Ok(r) => match r.msg {
                    Some(Msg::Created(c)) => {
                        seen.order.push("created");
                        seen.created = Some(c);
                    }
                    Some(Msg::StartedPid(p)) => {
                        seen.order.push("started");
                        seen.pid = Some(p);
                    }
                    Some(Msg::Stdout(b)) => seen.stdout.extend(b),
                    Some(Msg::Stderr(_)) => {}
                    Some(Msg::RemoveFailed(why)) => panic!("remove failed: {why}"),
                    Some(Msg::Exited(e)) => {
                        seen.order.push("exited");
                        seen.exited = Some(e);
                    }
                    None => panic!("an empty response"),
                },
                Err(s) => {
                    seen.status = Some(s);
                    break;
                }
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(60), read)
        .await
        .expect("the stream ended within 60 s");
    seen
}

/// The status a stream ended with, which must have come before `created`:
/// a refusal is made before anything is created.
fn refusal(seen: Seen) -> tonic::Status {
    assert!(
        seen.created.is_none(),
        "created before the refusal: {seen:?}"
    );
    seen.status.expect("a refusal")
}

async fn ids(sandboxes: &mut SandboxServiceClient<Channel>) -> Vec<String> {
    sandboxes
        .list_sandboxes(pb::ListSandboxesRequest::default())
        .await
        .expect("list")
        .into_inner()
        .sandboxes
        .into_iter()
        .map(|s| s.id)
        .collect()
}

/// Waits until `cond` holds (polling), up to 20 s.
async fn eventually(what: &str, mut cond: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cond().await {
        assert!(Instant::now() < deadline, "not within 20 s: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn one_stream_creates_runs_in_and_removes_its_sandbox() {
    let d = Daemon::start();
    let mut c = d.clients().await;
    let script = argv(&["/bin/sh", "-c", "echo hi from $(hostname); exit 3"]);
    let (_tx, stream) = open(&mut c.processes, create_start(idle_spec(), script, true))
        .await
        .expect("exec with create");
    let seen = drain(stream).await;
    assert!(seen.status.is_none(), "{:?}", seen.status);
    assert_eq!(seen.order, ["created", "started", "exited"]);
    let created = seen.created.expect("created");
    let sandbox = created.sandbox.expect("the created sandbox");
    assert!(String::from_utf8_lossy(&seen.stdout).starts_with("hi from"));
    assert_eq!(seen.exited.expect("exited").exit_code, 3);
    // Removed before `exited` was sent: dead and unlisted when the call
    // ends; its host teardown (the state directory) finishes just after.
    assert!(ids(&mut c.sandboxes).await.is_empty());
    assert!(crate::harness::gone(&d.state.join("sandboxes").join(&sandbox.id)).await);

    // Without remove, the sandbox stays (and is the caller's to destroy).
    let (_tx, stream) = open(
        &mut c.processes,
        create_start(idle_spec(), argv(&["/bin/true"]), false),
    )
    .await
    .expect("exec with create, no remove");
    let seen = drain(stream).await;
    let kept = seen.created.and_then(|c| c.sandbox).expect("created").id;
    assert_eq!(seen.exited.expect("exited").exit_code, 0);
    assert_eq!(ids(&mut c.sandboxes).await, std::slice::from_ref(&kept));
    assert!(c.destroy(&kept).await);

    // A process that cannot start (not found) ends the call with Exec's
    // status for it, after `created`, and the sandbox is removed all the
    // same.
    let (_tx, stream) = open(
        &mut c.processes,
        create_start(idle_spec(), argv(&["/no/such/program"]), true),
    )
    .await
    .expect("exec with create");
    let seen = drain(stream).await;
    assert_eq!(seen.order, ["created"], "{seen:?}");
    let status = seen.status.expect("the exec's failure");
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(status.message().contains("find program"), "{status:?}");
    assert!(ids(&mut c.sandboxes).await.is_empty());
    d.finish().await;
}

#[tokio::test]
async fn a_client_that_leaves_mid_run_or_mid_create_leaves_nothing_behind() {
    let d = Daemon::start();
    let mut c = d.clients().await;
    // Mid-run: the process and the sandbox go.
    let (tx, mut stream) = open(
        &mut c.processes,
        create_start(idle_spec(), argv(&["/bin/sleep", "600"]), true),
    )
    .await
    .expect("exec with create");
    let mut pid = None;
    while pid.is_none() {
        match stream.next().await {
            Some(Ok(pb::ExecResponse {
                msg: Some(pb::exec_response::Msg::StartedPid(p)),
                ..
            })) => pid = Some(p),
            Some(Ok(_)) => {}
            other => panic!("expected the process to start, got {other:?}"),
        }
    }
    let pid = pid.expect("pid");
    assert_eq!(ids(&mut c.sandboxes).await.len(), 1);
    drop((tx, stream));
    let mut s = c.sandboxes.clone();
    eventually(
        "the sandbox of a vanished client is destroyed",
        async || ids(&mut s).await.is_empty(),
    )
    .await;
    assert!(!process_running(pid), "pid {pid} outlived its sandbox");

    // Mid-create: the whole connection goes away right after the call
    // starts; the create completes (or rolls back) and is then undone.
    for _ in 0..3 {
        let mut own = ProcessServiceClient::new(d.channel().await);
        let opened = open(
            &mut own,
            create_start(idle_spec(), argv(&["/bin/sleep", "600"]), true),
        )
        .await
        .expect("exec with create");
        drop((opened, own));
    }
    eventually("creates whose client left are undone", async || {
        ids(&mut s).await.is_empty()
    })
    .await;
    // finish() asserts no mounts, supervisors or state dirs are left.
    d.finish().await;
}

#[tokio::test]
async fn bad_requests_are_refused_naming_the_field_before_anything_is_created() {
    let d = Daemon::start();
    let mut c = d.clients().await;
    let bad_host = pb::SandboxSpec {
        hostname: "no spaces allowed".into(),
        ..idle_spec()
    };
    let with_id = pb::ExecStart {
        sandbox_id: "0123456789abcdef".into(),
        ..create_start(idle_spec(), argv(&["/bin/true"]), true)
    };
    let mut with_request_id = create_start(idle_spec(), argv(&["/bin/true"]), true);
    if let Some(create) = with_request_id.create.as_mut() {
        create.request_id = "retry-1".into();
    }
    let sized = pb::ExecStart {
        size: Some(pb::TerminalSize { rows: 24, cols: 80 }),
        ..create_start(idle_spec(), argv(&["/bin/true"]), true)
    };
    let remove_only = pb::ExecStart {
        sandbox_id: "0123456789abcdef".into(),
        process: Some(argv(&["/bin/true"])),
        remove: true,
        ..Default::default()
    };
    let cases: Vec<(pb::ExecStart, Code, &str)> = vec![
        (
            create_start(bad_host, argv(&["/bin/true"]), true),
            Code::InvalidArgument,
            "spec.hostname",
        ),
        (
            create_start(idle_spec(), argv(&[]), true),
            Code::InvalidArgument,
            "start.process.argv",
        ),
        (with_id, Code::InvalidArgument, "start.sandbox_id"),
        (
            with_request_id,
            Code::InvalidArgument,
            "start.create.request_id",
        ),
        (sized, Code::InvalidArgument, "start.size"),
        (remove_only, Code::InvalidArgument, "start.remove"),
        (
            create_start(
                pb::SandboxSpec {
                    image: "no-such-image".into(),
                    ..idle_spec()
                },
                argv(&["/bin/true"]),
                true,
            ),
            Code::NotFound,
            "no-such-image",
        ),
    ];
    for (start, code, field) in cases {
        let status = match open(&mut c.processes, start).await {
            Err(s) => s,
            Ok((_tx, stream)) => refusal(drain(stream).await),
        };
        assert_eq!(status.code(), code, "{field}: {status:?}");
        assert!(
            status.message().contains(field),
            "{status:?} does not name {field}"
        );
        assert!(ids(&mut c.sandboxes).await.is_empty(), "{field}: created");
    }
    let left = std::fs::read_dir(d.state.join("sandboxes"))
        .map(|e| e.count())
        .unwrap_or(0);
    assert_eq!(left, 0, "state dirs left behind");
    d.finish().await;
}

#[tokio::test]
async fn the_exec_cap_is_checked_before_the_sandbox_is_created() {
    let dir = TempDir::new("run-stream-caps");
    let config = dir.0.join("sandboxd.toml");
    std::fs::write(&config, "[limits]\nmax_execs_per_identity = 1\n").expect("config");
    let d = Daemon::start_with(&["--config", &config.to_string_lossy()]);
    let mut c = d.clients().await;
    let held = c.idle("host").await;
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    tx.send(pb::ExecRequest {
        msg: Some(pb::exec_request::Msg::Start(pb::ExecStart {
            sandbox_id: held.id.clone(),
            process: Some(argv(&["/bin/sleep", "600"])),
            ..Default::default()
        })),
    })
    .await
    .expect("send");
    let mut holding = c
        .processes
        .exec(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .expect("the one exec allowed")
        .into_inner();
    assert!(matches!(
        holding.next().await,
        Some(Ok(pb::ExecResponse {
            msg: Some(pb::exec_response::Msg::StartedPid(_)),
            ..
        }))
    ));
    let status = match open(
        &mut c.processes,
        create_start(idle_spec(), argv(&["/bin/true"]), true),
    )
    .await
    {
        Err(s) => s,
        Ok((_tx, stream)) => refusal(drain(stream).await),
    };
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(
        status.message().contains("max_execs_per_identity"),
        "{status:?}"
    );
    assert_eq!(ids(&mut c.sandboxes).await, std::slice::from_ref(&held.id));
    drop((tx, holding));
    d.finish().await;
}

#[tokio::test]
async fn a_remote_identity_meets_its_quota_role_caps_and_ownership() {
    let certs = TempDir::new("run-stream-identity");
    let dir = certs.0.clone();
    let ca = Ca::new("sandboxd run-stream CA");
    std::fs::write(dir.join("ca.pem"), &ca.pem).expect("ca");
    let server = write_pair(
        &dir,
        "server",
        ca.leaf(|p| {
            p.distinguished_name
                .push(rcgen::DnType::CommonName, "sandboxd.test");
            p.subject_alt_names = vec![rcgen::SanType::DnsName(
                "sandboxd.test".try_into().expect("dns"),
            )];
            p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        }),
    );
    let alice = write_pair(&dir, "alice", ca.leaf(client("alice", None)));
    let bob = write_pair(&dir, "bob", ca.leaf(client("bob", None)));
    let config = dir.join("sandboxd.toml");
    std::fs::write(
        &config,
        format!(
            "[tls]\nclient_ca = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\n\
             [identities.alice]\nmax_sandboxes = 1\nimages = [\"host\"]\n\
             [identities.bob]\n",
            dir.join("ca.pem").display(),
            server.0.display(),
            server.1.display()
        ),
    )
    .expect("config");
    let addr = format!("127.0.0.1:{}", free_port());
    let d = Daemon::start_with(&[
        "--config",
        &config.to_string_lossy(),
        "--listen",
        &format!("tcp://{addr}"),
    ]);
    let connect = |pair: &(PathBuf, PathBuf)| {
        let (addr, pem, pair) = (addr.clone(), ca.pem.clone(), pair.clone());
        async move {
            for _ in 0..100 {
                if let Ok(ch) = tls_channel(&addr, &pem, Some(&pair), "sandboxd.test").await {
                    return ch;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            panic!("the TCP listener did not come up");
        }
    };
    let alice_ch = connect(&alice).await;
    let bob_ch = connect(&bob).await;
    let mut alice_p = ProcessServiceClient::new(alice_ch.clone());
    let mut alice_s = SandboxServiceClient::new(alice_ch);
    let mut bob_s = SandboxServiceClient::new(bob_ch);

    // A role's image allowlist: refused before anything is created.
    let status = match open(
        &mut alice_p,
        create_start(
            pb::SandboxSpec {
                image: "busybox".into(),
                ..idle_spec()
            },
            argv(&["/bin/true"]),
            true,
        ),
    )
    .await
    {
        Err(s) => s,
        Ok((_tx, stream)) => refusal(drain(stream).await),
    };
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(status.message().contains("spec.image"), "{status:?}");

    // The created sandbox is alice's, unseen by bob; it counts against
    // her quota of one, so a second run while it exists is refused.
    let (_keep_tx, stream) = open(
        &mut alice_p,
        create_start(idle_spec(), argv(&["/bin/true"]), false),
    )
    .await
    .expect("alice's run");
    let seen = drain(stream).await;
    assert_eq!(
        seen.exited.as_ref().map(|e| e.exit_code),
        Some(0),
        "{seen:?}"
    );
    let kept = seen.created.and_then(|c| c.sandbox).expect("created");
    assert_eq!(kept.owner, "alice");
    assert_eq!(ids(&mut alice_s).await, std::slice::from_ref(&kept.id));
    assert!(ids(&mut bob_s).await.is_empty());
    let status = match open(
        &mut alice_p,
        create_start(idle_spec(), argv(&["/bin/true"]), true),
    )
    .await
    {
        Err(s) => s,
        Ok((_tx, stream)) => refusal(drain(stream).await),
    };
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert_eq!(ids(&mut alice_s).await, std::slice::from_ref(&kept.id));
    d.finish().await;
}
