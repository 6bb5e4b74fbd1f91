//! End-to-end tests of the `sandboxctl` binary against an in-process fake
//! daemon on a unix socket: argument handling, output formats, exit codes
//! and the attached Exec stream, without needing the real daemon.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failure should panic loudly

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use sandboxd_proto::v1::{
    self as pb,
    event_service_server::{EventService, EventServiceServer},
    host_service_server::{HostService, HostServiceServer},
    process_service_server::{ProcessService, ProcessServiceServer},
    sandbox_service_server::{SandboxService, SandboxServiceServer},
};
use tokio::io::AsyncWriteExt;
use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};

const ID: &str = "00000000000000aa";

/// What the fake saw, for assertions.
#[derive(Debug, Default)]
struct Log {
    calls: Vec<String>,
    specs: Vec<pb::SandboxSpec>,
    exec_starts: Vec<pb::ExecStart>,
}

#[derive(Debug, Clone, Default)]
struct Fake {
    log: Arc<Mutex<Log>>,
}

impl Fake {
    fn call(&self, what: impl Into<String>) {
        self.log.lock().unwrap().calls.push(what.into());
    }

    /// CreateSandbox, also for an Exec stream's `start.create`.
    async fn create(
        &self,
        req: pb::CreateSandboxRequest,
    ) -> Result<pb::CreateSandboxResponse, Status> {
        let verify = req.verify;
        let spec = req.spec.unwrap_or_default();
        if spec.image == "slow" {
            // Long enough for a test to interrupt the create.
            tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
        }
        if spec.image == "bad" {
            return Err(Status::invalid_argument(
                "image \"bad\" does not exist\nname is too long",
            ));
        }
        self.call("create");
        self.log.lock().unwrap().specs.push(spec.clone());
        let mut s = sandbox(0xaa);
        // Like the daemon: RESTRICTED gets the named addresses or one from
        // the pool.
        if let Some(net) = &spec.network {
            if net.mode == pb::NetworkMode::Restricted as i32 {
                s.addresses = if net.addresses.is_empty() {
                    vec!["203.0.113.2".into()]
                } else {
                    net.addresses.clone()
                };
            }
        }
        s.spec = Some(spec);
        s.isolation = Some(pb::IsolationReport {
            backend: pb::BackendKind::Linux as i32,
            properties: vec![pb::PropertyEnforcement {
                property: pb::IsolationProperty::MemoryLimit as i32,
                level: pb::EnforcementLevel::BestEffort as i32,
                mechanism: "RLIMIT_AS".into(),
                requested: pb::Requirement::Preferred as i32,
                degraded: true,
                ..Default::default()
            }],
        });
        if verify {
            self.call("create --verify");
        }
        Ok(pb::CreateSandboxResponse {
            sandbox: Some(s),
            verification: verify.then(|| verification(true)),
        })
    }
}

fn sandbox(n: u32) -> pb::Sandbox {
    pb::Sandbox {
        id: format!("{n:016x}"),
        name: format!("box{n}"),
        spec: Some(pb::SandboxSpec {
            image: "host".into(),
            mode: pb::SandboxMode::Idle as i32,
            ..Default::default()
        }),
        state: pb::SandboxState::Running as i32,
        created_at_ms: 1_714_566_896_789,
        owner: "local".into(),
        ..Default::default()
    }
}

#[tonic::async_trait]
impl HostService for Fake {
    async fn get_capabilities(
        &self,
        _: Request<pb::GetCapabilitiesRequest>,
    ) -> Result<Response<pb::GetCapabilitiesResponse>, Status> {
        Ok(Response::new(pb::GetCapabilitiesResponse {
            backend: pb::BackendKind::Linux as i32,
            os: "Linux".into(),
            os_version: "6.1.0".into(),
            build_features: vec![],
            matrix: vec![pb::PropertyEnforcement {
                property: pb::IsolationProperty::Pid as i32,
                level: pb::EnforcementLevel::Enforced as i32,
                mechanism: "CLONE_NEWPID".into(),
                ..Default::default()
            }],
            daemon_version: "0.1.0".into(),
            backend_reason: "Linux build".into(),
            images: vec!["host".into()],
        }))
    }

    async fn plan_sandbox(
        &self,
        req: Request<pb::PlanSandboxRequest>,
    ) -> Result<Response<pb::PlanSandboxResponse>, Status> {
        let req = req.into_inner();
        self.log
            .lock()
            .unwrap()
            .specs
            .push(req.spec.unwrap_or_default());
        Ok(Response::new(pb::PlanSandboxResponse {
            backend: req.backend,
            isolation: None,
            refusals: vec![],
            plan: Some(pb::plan_sandbox_response::Plan::Freebsd(pb::JailPlan {
                params: vec![pb::PlanParam {
                    key: "host.hostname".into(),
                    value: "web".into(),
                }],
                ..Default::default()
            })),
        }))
    }
}

/// A verification as the daemon would send it: PID holds, USER is
/// NOT_ENFORCED and seen VIOLATED, IPC is (`consistent` false) claimed
/// ENFORCED and seen VIOLATED.
fn verification(consistent: bool) -> pb::Verification {
    let row = |property: pb::IsolationProperty,
               claimed: pb::EnforcementLevel,
               observed: pb::ObservedResult,
               agrees: bool,
               evidence: &str| pb::VerifiedProperty {
        property: property as i32,
        claimed: claimed as i32,
        requested: 0,
        observed: observed as i32,
        agrees,
        evidence: vec![evidence.into()],
    };
    let mut properties = vec![
        row(
            pb::IsolationProperty::Pid,
            pb::EnforcementLevel::Enforced,
            pb::ObservedResult::Holds,
            true,
            "kill(4242, 0): ESRCH",
        ),
        row(
            pb::IsolationProperty::User,
            pb::EnforcementLevel::NotEnforced,
            pb::ObservedResult::Violated,
            true,
            "ids are not mapped",
        ),
    ];
    if !consistent {
        properties.push(row(
            pb::IsolationProperty::Ipc,
            pb::EnforcementLevel::Enforced,
            pb::ObservedResult::Violated,
            false,
            "shmget: the host's segment is visible",
        ));
    }
    pb::Verification {
        backend: pb::BackendKind::Linux as i32,
        properties,
        checks: vec![pb::HardeningCheck {
            name: "no_new_privs".into(),
            expected: "set".into(),
            observed: pb::ObservedResult::Holds as i32,
            evidence: "set".into(),
        }],
        consistent,
        elapsed_ms: 1234,
    }
}

#[tonic::async_trait]
impl SandboxService for Fake {
    async fn verify_sandbox(
        &self,
        req: Request<pb::VerifySandboxRequest>,
    ) -> Result<Response<pb::VerifySandboxResponse>, Status> {
        let id = req.into_inner().id;
        self.call(format!("verify {id}"));
        match id.as_str() {
            "good" | "bad" => Ok(Response::new(pb::VerifySandboxResponse {
                verification: Some(verification(id == "good")),
            })),
            _ => Err(Status::not_found(id)),
        }
    }

    async fn create_sandbox(
        &self,
        req: Request<pb::CreateSandboxRequest>,
    ) -> Result<Response<pb::CreateSandboxResponse>, Status> {
        self.create(req.into_inner()).await.map(Response::new)
    }

    async fn get_sandbox(
        &self,
        req: Request<pb::GetSandboxRequest>,
    ) -> Result<Response<pb::GetSandboxResponse>, Status> {
        if req.get_ref().id != ID {
            return Err(Status::not_found(format!(
                "no sandbox {:?}",
                req.get_ref().id
            )));
        }
        Ok(Response::new(pb::GetSandboxResponse {
            sandbox: Some(sandbox(0xaa)),
        }))
    }

    async fn list_sandboxes(
        &self,
        req: Request<pb::ListSandboxesRequest>,
    ) -> Result<Response<pb::ListSandboxesResponse>, Status> {
        let (sandboxes, next) = match req.get_ref().page_token.as_str() {
            "" => {
                let mut first = sandbox(1);
                first.addresses = vec!["203.0.113.1".into(), "2001:db8::1".into()];
                (vec![first], "p2")
            }
            "p2" => (vec![sandbox(2)], ""),
            t => return Err(Status::invalid_argument(format!("bad token {t}"))),
        };
        Ok(Response::new(pb::ListSandboxesResponse {
            sandboxes,
            next_page_token: next.into(),
        }))
    }

    async fn stop_sandbox(
        &self,
        req: Request<pb::StopSandboxRequest>,
    ) -> Result<Response<pb::StopSandboxResponse>, Status> {
        let r = req.into_inner();
        self.call(format!("stop {} {} {}", r.id, r.grace_seconds, r.signal));
        let mut s = sandbox(0xaa);
        s.state = pb::SandboxState::ExitedState as i32;
        s.exit = Some(pb::ExitResult {
            reason: pb::ExitReason::Signaled as i32,
            exit_code: 143,
            signal: 15,
            ..Default::default()
        });
        Ok(Response::new(pb::StopSandboxResponse { sandbox: Some(s) }))
    }

    async fn destroy_sandbox(
        &self,
        req: Request<pb::DestroySandboxRequest>,
    ) -> Result<Response<pb::DestroySandboxResponse>, Status> {
        let id = req.into_inner().id;
        self.call(format!("destroy {id}"));
        Ok(Response::new(pb::DestroySandboxResponse {
            existed: id == ID,
        }))
    }

    async fn wait_sandbox(
        &self,
        _: Request<pb::WaitSandboxRequest>,
    ) -> Result<Response<pb::WaitSandboxResponse>, Status> {
        Ok(Response::new(pb::WaitSandboxResponse {
            exit: Some(pb::ExitResult {
                reason: pb::ExitReason::Exited as i32,
                exit_code: 3,
                ..Default::default()
            }),
        }))
    }
}

/// The fake's `cat`: see [`Fake::exec`]. Sends everything up to `exited`.
async fn run_cat(
    input: &mut Streaming<pb::ExecRequest>,
    tx: &tokio::sync::mpsc::Sender<Result<pb::ExecResponse, Status>>,
) {
    let _ = tx.send(out(pb::exec_response::Msg::StartedPid(42))).await;
    while let Ok(Some(m)) = input.message().await {
        match m.msg {
            // ^D ends it with 5, as a remote terminal's line
            // discipline would end `cat` (raw mode sends it as a byte).
            Some(pb::exec_request::Msg::Stdin(b)) if b.contains(&4) => {
                let exit = pb::ExitResult {
                    reason: pb::ExitReason::Exited as i32,
                    exit_code: 5,
                    ..Default::default()
                };
                let _ = tx.send(out(pb::exec_response::Msg::Exited(exit))).await;
                return;
            }
            Some(pb::exec_request::Msg::Stdin(b)) => {
                let _ = tx.send(out(pb::exec_response::Msg::Stdout(b))).await;
            }
            Some(pb::exec_request::Msg::CloseStdin(_)) => {
                let _ = tx
                    .send(out(pb::exec_response::Msg::Stderr(b"bye\n".to_vec())))
                    .await;
                let exit = pb::ExitResult {
                    reason: pb::ExitReason::Exited as i32,
                    exit_code: 7,
                    ..Default::default()
                };
                let _ = tx.send(out(pb::exec_response::Msg::Exited(exit))).await;
                return;
            }
            Some(pb::exec_request::Msg::Signal(n)) => {
                let exit = pb::ExitResult {
                    reason: pb::ExitReason::Signaled as i32,
                    exit_code: 128 + n,
                    signal: n,
                    ..Default::default()
                };
                let _ = tx.send(out(pb::exec_response::Msg::Exited(exit))).await;
                return;
            }
            _ => {}
        }
    }
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

fn out(msg: pb::exec_response::Msg) -> Result<pb::ExecResponse, Status> {
    Ok(pb::ExecResponse {
        msg: Some(msg),
        exec_id: 0,
    })
}

#[tonic::async_trait]
impl ProcessService for Fake {
    type ExecStream = BoxStream<pb::ExecResponse>;

    /// `cat` with a twist: echoes stdin to stdout, writes "bye" to stderr at
    /// EOF and exits 7; a SIGINT ends it as signaled (130).
    async fn exec(
        &self,
        req: Request<Streaming<pb::ExecRequest>>,
    ) -> Result<Response<Self::ExecStream>, Status> {
        let mut input = req.into_inner();
        let Some(pb::ExecRequest {
            msg: Some(pb::exec_request::Msg::Start(start)),
        }) = input.message().await?
        else {
            return Err(Status::invalid_argument("first message must be start"));
        };
        // Like the daemon: with `create`, the stream makes its sandbox
        // first (and removes it at the end with `remove`).
        let created = match start.create.clone() {
            Some(create) => Some(self.create(create).await?),
            None if start.sandbox_id != ID => {
                return Err(Status::not_found("no such sandbox"));
            }
            None => None,
        };
        let remove = start.remove;
        self.log.lock().unwrap().exec_starts.push(start);
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        let fake = self.clone();
        tokio::spawn(async move {
            if let Some(c) = created {
                let _ = tx.send(out(pb::exec_response::Msg::Created(c))).await;
            }
            run_cat(&mut input, &tx).await;
            if remove {
                fake.call(format!("remove {ID}"));
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn exec_sync(
        &self,
        _: Request<pb::ExecSyncRequest>,
    ) -> Result<Response<pb::ExecSyncResponse>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }

    async fn signal_process(
        &self,
        _: Request<pb::SignalProcessRequest>,
    ) -> Result<Response<pb::SignalProcessResponse>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }
}

#[tonic::async_trait]
impl EventService for Fake {
    type WatchEventsStream = BoxStream<pb::Event>;

    async fn watch_events(
        &self,
        req: Request<pb::WatchEventsRequest>,
    ) -> Result<Response<Self::WatchEventsStream>, Status> {
        let after = req.into_inner().after_revision;
        let events: Vec<Result<pb::Event, Status>> = (1..=3u64)
            .filter(|r| *r > after)
            .map(|r| {
                Ok(pb::Event {
                    revision: r,
                    kind: pb::EventKind::EventCreated as i32,
                    sandbox_id: ID.into(),
                    time_ms: 1_714_566_896_789,
                    ..Default::default()
                })
            })
            .collect();
        Ok(Response::new(Box::pin(tokio_stream::iter(events))))
    }
}

/// The fake daemon's socket path; its temporary directory is removed when
/// the test drops it.
struct Sock(PathBuf);

impl std::ops::Deref for Sock {
    type Target = PathBuf;
    fn deref(&self) -> &PathBuf {
        &self.0
    }
}

impl Drop for Sock {
    fn drop(&mut self) {
        if let Some(dir) = self.0.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// A fake daemon on a fresh socket; stops when the test's runtime ends.
async fn start() -> (Sock, Fake) {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "sandboxctl-test-{}-{}",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("sandboxd.sock");
    let _ = std::fs::remove_file(&path);
    let listener = tokio::net::UnixListener::bind(&path).unwrap();
    let fake = Fake::default();
    let server = tonic::transport::Server::builder()
        .add_service(HostServiceServer::new(fake.clone()))
        .add_service(SandboxServiceServer::new(fake.clone()))
        .add_service(ProcessServiceServer::new(fake.clone()))
        .add_service(EventServiceServer::new(fake.clone()))
        .serve_with_incoming(tokio_stream::wrappers::UnixListenerStream::new(listener));
    tokio::spawn(server);
    (Sock(path), fake)
}

struct Output {
    code: i32,
    stdout: String,
    stderr: String,
}

async fn sandboxctl(socket: &Path, args: &[&str], stdin: &[u8]) -> Output {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_sandboxctl"))
        .arg("--host")
        .arg(format!("unix://{}", socket.display()))
        .args(args)
        .env_remove("SANDBOXD_HOST")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut pipe = child.stdin.take().unwrap();
    // sandboxctl without -i never reads stdin and may exit before we write:
    // a broken pipe here is not the test's concern.
    match pipe.write_all(stdin).await {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        other => other.unwrap(),
    }
    drop(pipe);
    let out = tokio::time::timeout(std::time::Duration::from_secs(20), child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn run_streams_stdio_and_removes_the_sandbox() {
    let (sock, fake) = start().await;
    let o = sandboxctl(
        &sock,
        &[
            "run", "-i", "--memory", "64M", "--prefer", "memory", "-e", "A=1", "--", "cat",
        ],
        b"hello\n",
    )
    .await;
    assert_eq!(o.code, 7, "{}", o.stderr);
    assert_eq!(o.stdout, "hello\n");
    assert!(o.stderr.contains("bye\n"), "{}", o.stderr);
    assert!(
        o.stderr
            .contains("warning: MEMORY_LIMIT is degraded: BEST_EFFORT via RLIMIT_AS"),
        "{}",
        o.stderr
    );
    let log = fake.log.lock().unwrap();
    // One call: the Exec stream creates the sandbox and, with --rm, the
    // daemon removes it when the stream ends.
    assert_eq!(log.calls, ["create".to_owned(), format!("remove {ID}")]);
    assert!(log.exec_starts[0].remove);
    assert!(log.exec_starts[0].sandbox_id.is_empty());
    assert_eq!(log.specs[0].mode, pb::SandboxMode::Idle as i32);
    assert!(log.specs[0].process.is_none());
    let p = log.exec_starts[0].process.as_ref().unwrap();
    assert_eq!(
        (p.argv.clone(), p.env.clone(), p.tty),
        (vec!["cat".to_owned()], vec!["A=1".to_owned()], false)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn run_without_i_closes_stdin_and_keeps_with_rm_false() {
    let (sock, fake) = start().await;
    let o = sandboxctl(&sock, &["run", "--rm=false", "--", "cat"], b"ignored\n").await;
    assert_eq!((o.code, o.stdout.as_str()), (7, ""), "{}", o.stderr);
    assert_eq!(fake.log.lock().unwrap().calls, ["create"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn run_failures_exit_125() {
    let (sock, _fake) = start().await;
    let o = sandboxctl(&sock, &["run", "--image", "bad", "--", "true"], b"").await;
    assert_eq!(o.code, 125);
    assert_eq!(
        o.stderr,
        "sandboxctl: INVALID_ARGUMENT: image \"bad\" does not exist; name is too long\n"
    );
    let o = sandboxctl(
        Path::new("/nonexistent/sandboxd.sock"),
        &["run", "--", "true"],
        b"",
    )
    .await;
    assert_eq!(o.code, 125);
    assert_eq!(
        o.stderr,
        "sandboxctl: cannot connect to unix:///nonexistent/sandboxd.sock: No such file or directory (is sandboxd running?)\n"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn exec_into_unknown_sandbox_is_a_grpc_error() {
    let (sock, _fake) = start().await;
    let o = sandboxctl(&sock, &["exec", "nope", "--", "true"], b"").await;
    // 125, as `docker exec` into a missing container: not the command's code.
    assert_eq!(
        (o.code, o.stderr.as_str()),
        (125, "sandboxctl: NOT_FOUND: no such sandbox\n")
    );
    let o = sandboxctl(&sock, &["exec", "-i", ID, "--", "cat"], b"x").await;
    assert_eq!((o.code, o.stdout.as_str()), (7, "x"));
}

#[tokio::test(flavor = "multi_thread")]
async fn ls_follows_pages() {
    let (sock, _fake) = start().await;
    let o = sandboxctl(&sock, &["ls"], b"").await;
    assert_eq!(o.code, 0);
    assert_eq!(o.stdout.lines().count(), 2, "{}", o.stdout);
    assert!(
        o.stdout
            .starts_with("ID                NAME  IMAGE  MODE  STATE    EXIT  CREATED"),
        "{}",
        o.stdout
    );
    assert!(
        o.stdout
            .contains("\n0000000000000001  box1  host   idle  running  -     "),
        "{}",
        o.stdout
    );
    // The first leased address, last.
    assert!(o.stdout.ends_with("  203.0.113.1\n"), "{}", o.stdout);
    assert!(o.stderr.contains("--all-pages"));
    let o = sandboxctl(&sock, &["ls", "--all-pages", "--json"], b"").await;
    // JSON lines: one sandbox per line.
    let v: Vec<serde_json::Value> = o
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(v.len(), 2);
    assert_eq!(v[1]["state"], "RUNNING");
    assert_eq!(
        v[0]["addresses"],
        serde_json::json!(["203.0.113.1", "2001:db8::1"])
    );
    // An empty list is a default: omitted.
    assert_eq!(v[1].get("addresses"), None);
    // A template over the same documents, every field present.
    let o = sandboxctl(
        &sock,
        &[
            "ls",
            "--all-pages",
            "--format",
            "{{.id}}\\t{{.state}}\\t{{.mainPid}}",
        ],
        b"",
    )
    .await;
    assert_eq!(o.code, 0, "{}", o.stderr);
    let rows: Vec<Vec<&str>> = o.stdout.lines().map(|l| l.split('\t').collect()).collect();
    assert_eq!(rows.len(), 2, "{}", o.stdout);
    assert_eq!(rows[1][1], "RUNNING");
    assert!(
        rows.iter().all(|r| r.len() == 3 && !r[2].is_empty()),
        "{}",
        o.stdout
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn caps_plan_inspect_wait_stop_rm_events() {
    let (sock, fake) = start().await;
    let o = sandboxctl(&sock, &["caps"], b"").await;
    assert_eq!(o.code, 0);
    assert!(o.stdout.contains("Backend:   LINUX\n"), "{}", o.stdout);
    assert!(
        o.stdout.contains(
            "PROPERTY  LEVEL     MECHANISM     CAVEATS\nPID       ENFORCED  CLONE_NEWPID\n"
        ),
        "{}",
        o.stdout
    );

    let o = sandboxctl(
        &sock,
        &[
            "plan",
            "--backend",
            "freebsd",
            "--hostname",
            "web",
            "--",
            "/bin/sh",
        ],
        b"",
    )
    .await;
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(o.stdout.contains("host.hostname  web"), "{}", o.stdout);
    assert_eq!(fake.log.lock().unwrap().specs[0].hostname, "web");

    let o = sandboxctl(&sock, &["inspect", ID], b"").await;
    assert!(
        o.stdout.contains("Name:            box170\n"),
        "{}",
        o.stdout
    );
    let o = sandboxctl(&sock, &["inspect", "nope"], b"").await;
    assert_eq!(
        (o.code, o.stderr.as_str()),
        (1, "sandboxctl: NOT_FOUND: no sandbox \"nope\"\n")
    );

    let o = sandboxctl(&sock, &["wait", ID], b"").await;
    assert_eq!((o.code, o.stdout.as_str()), (3, "EXITED exit_code=3\n"));

    let o = sandboxctl(&sock, &["stop", "--grace", "5", "--signal", "INT", ID], b"").await;
    assert_eq!(
        (o.code, o.stdout.as_str()),
        (0, "00000000000000aa: exited signaled(15)\n")
    );
    assert!(
        fake.log
            .lock()
            .unwrap()
            .calls
            .contains(&format!("stop {ID} 5 2"))
    );

    let o = sandboxctl(&sock, &["rm", ID, "other"], b"").await;
    assert_eq!(
        o.stdout,
        "00000000000000aa: removed\nother: did not exist\n"
    );
    let o = sandboxctl(&sock, &["--json", "rm", "other"], b"").await;
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(v, serde_json::json!({"id": "other", "existed": false}));

    let o = sandboxctl(&sock, &["events", "--after", "1"], b"").await;
    assert_eq!(
        o.stdout,
        "2 2024-05-01T12:34:56.789Z created 00000000000000aa\n3 2024-05-01T12:34:56.789Z created 00000000000000aa\n"
    );
    let o = sandboxctl(&sock, &["--json", "events"], b"").await;
    let lines: Vec<serde_json::Value> = o
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["kind"], "EVENT_CREATED");
}

#[tokio::test(flavor = "multi_thread")]
async fn create_prints_the_id() {
    let (sock, fake) = start().await;
    let o = sandboxctl(
        &sock,
        &[
            "create",
            "--request-id",
            "r1",
            "-l",
            "app=web",
            "--",
            "/bin/sleep",
            "1",
        ],
        b"",
    )
    .await;
    assert_eq!(
        (o.code, o.stdout.as_str()),
        (0, "00000000000000aa\n"),
        "{}",
        o.stderr
    );
    let spec = fake.log.lock().unwrap().specs[0].clone();
    assert_eq!(spec.mode, pb::SandboxMode::Process as i32);
    assert_eq!(spec.labels.get("app").map(String::as_str), Some("web"));
}

#[tokio::test(flavor = "multi_thread")]
async fn ctrl_c_without_tty_is_forwarded_as_sigint() {
    let (sock, fake) = start().await;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_sandboxctl"))
        .arg("--host")
        .arg(format!("unix://{}", sock.display()))
        .args(["run", "-i", "--", "cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Keep stdin open so the process is still running when the signal comes.
    let _stdin = child.stdin.take().unwrap();
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id().unwrap()).unwrap());
    // Wait until the exec has started, so the signal goes to the process and
    // not to the create.
    for _ in 0..200 {
        if !fake.log.lock().unwrap().exec_starts.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    let out = tokio::time::timeout(std::time::Duration::from_secs(20), child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        fake.log.lock().unwrap().calls,
        ["create".to_owned(), format!("remove {ID}")]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn ctrl_c_during_the_create_removes_the_sandbox_even_with_rm_false() {
    let (sock, fake) = start().await;
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_sandboxctl"))
        .arg("--host")
        .arg(format!("unix://{}", sock.display()))
        .args(["run", "--rm=false", "--image", "slow", "--", "cat"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id().unwrap()).unwrap());
    // The fake's create of "slow" takes 1.5 s: interrupt it midway.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    let out = tokio::time::timeout(std::time::Duration::from_secs(20), child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, b"", "nothing ran");
    // The create finished, then sandboxctl destroyed what it made.
    assert_eq!(
        fake.log.lock().unwrap().calls,
        ["create".to_owned(), format!("destroy {ID}")]
    );
}

/// `-it` under a pseudo-terminal made by script(1): the terminal goes raw
/// (^D reaches the process as a byte instead of ending local input) and is
/// restored afterwards.
#[tokio::test(flavor = "multi_thread")]
async fn tty_mode_is_raw_and_restored() {
    if !Path::new("/usr/bin/script").exists() {
        eprintln!("skipped: no /usr/bin/script to make a pty");
        return;
    }
    let (sock, fake) = start().await;
    let inner = format!(
        "stty cols 80 rows 24; {} --host unix://{} run -it -- cat; echo rc=$?; stty -a",
        env!("CARGO_BIN_EXE_sandboxctl"),
        sock.display()
    );
    let mut child = tokio::process::Command::new("/usr/bin/script")
        .args(["-qec", &inner, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    for _ in 0..500 {
        if !fake.log.lock().unwrap().exec_starts.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    stdin.write_all(b"hi\x04").await.unwrap();
    stdin.flush().await.unwrap();
    let out = tokio::time::timeout(std::time::Duration::from_secs(20), child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("rc=5"), "{text}");
    let start = fake.log.lock().unwrap().exec_starts[0].clone();
    assert!(start.process.unwrap().tty);
    assert_eq!(start.size, Some(pb::TerminalSize { rows: 24, cols: 80 }));
    // Restored: canonical mode and echo are back on.
    assert!(
        text.contains(" icanon") && text.contains(" echo "),
        "{text}"
    );
    drop(stdin);
}

#[tokio::test(flavor = "multi_thread")]
async fn create_with_network_flags() {
    let (sock, fake) = start().await;
    let o = sandboxctl(
        &sock,
        &[
            "--json",
            "create",
            "--nat",
            "-p",
            "8080:80",
            "--publish",
            "5353:53/udp",
            "--dns",
            "192.0.2.53",
            "--dns-search",
            "example.com",
        ],
        b"",
    )
    .await;
    assert_eq!(o.code, 0, "{}", o.stderr);
    let spec = fake.log.lock().unwrap().specs[0].clone();
    let net = spec.network.unwrap();
    assert_eq!(net.mode, pb::NetworkMode::Restricted as i32);
    assert!(net.outbound_nat && net.addresses.is_empty());
    assert_eq!(net.dns_servers, ["192.0.2.53"]);
    assert_eq!(net.dns_search, ["example.com"]);
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(v["addresses"], serde_json::json!(["203.0.113.2"]));
    // The canonical proto3 JSON mapping: lowerCamelCase names.
    assert_eq!(
        v["spec"]["network"]["portForwards"],
        serde_json::json!([
            {"protocol": "TCP", "hostPort": 8080, "sandboxPort": 80},
            {"protocol": "UDP", "hostPort": 5353, "sandboxPort": 53},
        ])
    );
    assert_eq!(v["spec"]["network"]["outboundNat"], true);

    // Usage errors never reach the daemon (`run` reports its own failures
    // as 125, docker-style).
    let bad: &[(&[&str], i32, &str)] = &[
        (
            &["create", "--network", "host", "--nat"],
            2,
            "sandboxctl: --nat: only applies to --network restricted\n",
        ),
        (
            &["run", "-p", "8080:99999", "--", "true"],
            125,
            "sandboxctl: --publish 8080:99999: the sandbox port: 99999 is not a port (1..65535)\n",
        ),
    ];
    for (args, code, want) in bad {
        let o = sandboxctl(&sock, args, b"").await;
        assert_eq!((o.code, o.stderr.as_str()), (*code, *want), "{args:?}");
    }
    assert_eq!(fake.log.lock().unwrap().specs.len(), 1);
}

/// A flag value the daemon would refuse is refused before any request, in
/// the words of the daemon's own rule (`sandboxd_core::validate`), even
/// where the flag's syntax is fine.
#[tokio::test(flavor = "multi_thread")]
async fn bad_values_are_refused_early_with_the_daemons_words() {
    use sandboxd_core::validate;
    let (sock, fake) = start().await;
    let core = |r: Result<(), String>| r.expect_err("core refuses it");
    let cases: Vec<(&[&str], String)> = vec![
        (
            &["create", "--mount", "/srv/../etc:/data", "--", "true"],
            format!(
                "--mount /srv/../etc:/data: the source {}",
                core(validate::check_absolute_path("/srv/../etc"))
            ),
        ),
        (
            &["create", "--name", "Web", "--", "true"],
            format!("--name Web: {}", core(validate::check_sandbox_name("Web"))),
        ),
        (
            &["create", "--label", "a b=1", "--", "true"],
            format!(
                "--label \"a b=1\": {}",
                core(validate::check_label_key("a b"))
            ),
        ),
        (
            &["create", "--stop-signal", "100", "--", "true"],
            format!("--stop-signal 100: {}", core(validate::check_signal(100))),
        ),
        (
            &[
                "create",
                "--dns",
                "192.0.2.53",
                "--dns-search",
                "a_b",
                "--",
                "true",
            ],
            format!(
                "--dns-search a_b: {}",
                core(validate::check_domain_name("a_b"))
            ),
        ),
    ];
    for (args, want) in cases {
        let o = sandboxctl(&sock, args, b"").await;
        assert_eq!(
            (o.code, o.stderr.as_str()),
            (2, format!("sandboxctl: {want}\n").as_str()),
            "{args:?}"
        );
    }
    assert!(fake.log.lock().unwrap().specs.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_prints_the_table_and_fails_on_a_contradiction() {
    let (sock, fake) = start().await;
    let o = sandboxctl(&sock, &["verify", "good"], b"").await;
    assert_eq!(o.code, 0, "{}", o.stderr);
    let expected = "\
Backend: LINUX (probe ran 1234 ms)
PROPERTY  CLAIMED       REQUESTED  OBSERVED  AGREES  EVIDENCE
PID       ENFORCED      -          HOLDS     yes
USER      NOT_ENFORCED  -          VIOLATED  yes     ids are not mapped

CHECK         EXPECTED  OBSERVED  EVIDENCE
no_new_privs  set       HOLDS     set

Verdict: every observation is what the isolation report claims.
";
    assert_eq!(o.stdout, expected);
    // -v shows the evidence of every row.
    let o = sandboxctl(&sock, &["verify", "-v", "good"], b"").await;
    assert!(o.stdout.contains("kill(4242, 0): ESRCH"), "{}", o.stdout);
    // A contradiction: named in the verdict, exit 1.
    let o = sandboxctl(&sock, &["verify", "bad"], b"").await;
    assert_eq!(o.code, 1, "{}", o.stderr);
    assert!(
        o.stdout
            .contains("IPC       ENFORCED      -          VIOLATED  NO      shmget: the host's segment is visible"),
        "{}",
        o.stdout
    );
    assert!(
        o.stdout
            .contains("Verdict: INCONSISTENT: the observation contradicts the claim for IPC."),
        "{}",
        o.stdout
    );
    // JSON: the proto3 mapping, which omits false, 0 and "".
    let o = sandboxctl(&sock, &["--json", "verify", "bad"], b"").await;
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(v.get("consistent"), None);
    assert_eq!(v["properties"][2]["property"], "IPC");
    assert_eq!(v["properties"][2]["observed"], "VIOLATED");
    assert_eq!(v["properties"][2].get("agrees"), None);
    assert_eq!(v["checks"][0]["name"], "no_new_privs");
    // Unknown sandbox: the gRPC error, one line, 1.
    let o = sandboxctl(&sock, &["verify", "nope"], b"").await;
    assert_ne!(o.code, 0);
    assert!(o.stderr.contains("nope"), "{}", o.stderr);
    assert_eq!(
        fake.log.lock().unwrap().calls,
        [
            "verify good",
            "verify good",
            "verify bad",
            "verify bad",
            "verify nope"
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn create_and_run_with_verify_ask_for_it_and_show_the_table() {
    let (sock, fake) = start().await;
    let o = sandboxctl(&sock, &["create", "--verify", "--", "/bin/sleep", "1"], b"").await;
    assert_eq!(
        (o.code, o.stdout.as_str()),
        (0, "00000000000000aa\n"),
        "{}",
        o.stderr
    );
    assert!(
        o.stderr.contains("Verdict: every observation"),
        "{}",
        o.stderr
    );
    let o = sandboxctl(&sock, &["run", "--verify", "--", "cat"], b"").await;
    assert_eq!(o.code, 7, "{}", o.stderr);
    assert!(o.stderr.contains("PID       ENFORCED"), "{}", o.stderr);
    let calls = fake.log.lock().unwrap().calls.clone();
    assert_eq!(
        calls.iter().filter(|c| *c == "create --verify").count(),
        2,
        "{calls:?}"
    );
}
