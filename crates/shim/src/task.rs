//! The ttrpc task service containerd calls, and the shim's lifecycle
//! (`start`/`delete` actions), on top of sandboxd's gRPC API.
//!
//! One container = one IDLE sandbox on the bundle's rootfs; its process
//! and every `ctr task exec` are Exec streams into it, whose stdio the shim
//! copies to and from containerd's FIFOs. When the container's process
//! ends, the shim stops the sandbox (everything else in it is killed, as
//! when runc's init ends). Delete destroys the sandbox.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use containerd_shim::asynchronous::{ExitSignal, spawn};
use containerd_shim::publisher::RemotePublisher;
use containerd_shim::{Config as ShimConfig, Flags, StartOpts};
use containerd_shim_protos::api;
use containerd_shim_protos::events::task::{
    TaskCreate, TaskDelete, TaskExecAdded, TaskExecStarted, TaskExit, TaskIO, TaskStart,
};
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::well_known_types::timestamp::Timestamp;
use containerd_shim_protos::protobuf::{EnumOrUnknown, MessageDyn, MessageField};
use containerd_shim_protos::shim_async::Task;
use containerd_shim_protos::topics;
use containerd_shim_protos::ttrpc::r#async::TtrpcContext;
use containerd_shim_protos::ttrpc::{self, Code};
use log::{info, warn};
use sandboxd_proto::v1 as pb;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{Mutex, mpsc, watch};
use tonic::transport::Channel;

use crate::bundle::{self, Backend};
use crate::config::Config;
use crate::rootfs;

type TtrpcResult<T> = ttrpc::Result<T>;

/// Labels that tie a sandbox to its containerd task.
pub const LABEL_NAMESPACE: &str = "io.containerd.namespace";
/// See [`LABEL_NAMESPACE`].
pub const LABEL_ID: &str = "io.containerd.id";

/// NOT_FOUND for a container id the shim does not hold.
fn no_container(id: &str) -> ttrpc::Error {
    status(Code::NOT_FOUND, format!("container {id} not found"))
}

/// NOT_FOUND for an exec id the container does not have.
fn no_process(exec_id: &str) -> ttrpc::Error {
    status(Code::NOT_FOUND, format!("process {exec_id:?} not found"))
}

fn status(code: Code, msg: impl ToString) -> ttrpc::Error {
    ttrpc::Error::RpcStatus(ttrpc::get_status(code, msg))
}

/// A sandboxd error as containerd sees it: the same code and message.
fn from_grpc(what: &str, s: &tonic::Status) -> ttrpc::Error {
    let code = match s.code() {
        tonic::Code::InvalidArgument => Code::INVALID_ARGUMENT,
        tonic::Code::NotFound => Code::NOT_FOUND,
        tonic::Code::AlreadyExists => Code::ALREADY_EXISTS,
        tonic::Code::PermissionDenied => Code::PERMISSION_DENIED,
        tonic::Code::FailedPrecondition => Code::FAILED_PRECONDITION,
        tonic::Code::ResourceExhausted => Code::RESOURCE_EXHAUSTED,
        tonic::Code::Unimplemented => Code::UNIMPLEMENTED,
        tonic::Code::Unavailable => Code::UNAVAILABLE,
        tonic::Code::DeadlineExceeded => Code::DEADLINE_EXCEEDED,
        _ => Code::UNKNOWN,
    };
    status(code, format!("sandboxd {what}: {}", s.message()))
}

fn now() -> Timestamp {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    Timestamp {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
        ..Default::default()
    }
}

fn timestamp_ms(ms: i64) -> Timestamp {
    if ms <= 0 {
        return now();
    }
    Timestamp {
        seconds: ms / 1000,
        nanos: i32::try_from((ms % 1000) * 1_000_000).unwrap_or(0),
        ..Default::default()
    }
}

/// How a process ended, as containerd wants it.
#[derive(Debug, Clone)]
struct Exit {
    status: u32,
    at: Timestamp,
}

/// containerd's stdio paths of one process.
#[derive(Debug, Clone, Default)]
struct Stdio {
    stdin: String,
    stdout: String,
    stderr: String,
    terminal: bool,
}

/// One process of a container: its init (exec id "") or an exec.
#[derive(Debug)]
struct Proc {
    spec: pb::ProcessSpec,
    size: Option<pb::TerminalSize>,
    stdio: Stdio,
    pid: u32,
    started: bool,
    /// Messages to its Exec stream (stdin, resize, close), while it runs.
    input: Option<mpsc::Sender<pb::ExecRequest>>,
    exit: watch::Sender<Option<Exit>>,
    /// Its output FIFOs, opened while the client waits (Create, Exec),
    /// until Start hands them to the copying.
    outputs: Option<Outputs>,
}

impl Proc {
    fn new(spec: pb::ProcessSpec, size: Option<pb::TerminalSize>, stdio: Stdio) -> Self {
        Self {
            spec,
            size,
            stdio,
            pid: 0,
            started: false,
            input: None,
            exit: watch::channel(None).0,
            outputs: None,
        }
    }

    fn status(&self) -> api::Status {
        if self.exit.borrow().is_some() {
            api::Status::STOPPED
        } else if self.started {
            api::Status::RUNNING
        } else {
            api::Status::CREATED
        }
    }
}

/// One container.
#[derive(Debug)]
struct Container {
    bundle: String,
    sandbox_id: String,
    supervisor_pid: u32,
    limits: Option<pb::Limits>,
    /// The OOM score set on the supervisor (0: none), which an exec's must
    /// equal (it inherits the supervisor's).
    oom_score_adj: i64,
    /// Whether the shim mounted containerd's rootfs mounts (to undo).
    mounted_rootfs: Option<PathBuf>,
    procs: HashMap<String, Proc>,
}

/// The task service.
#[derive(Clone)]
pub struct Service {
    inner: Arc<Inner>,
}

struct Inner {
    channel: Result<Channel, String>,
    /// The daemon is on this host (a unix socket endpoint), in the shim's
    /// pid namespace: its supervisor pids are the shim's to read.
    local: bool,
    publisher: RemotePublisher,
    namespace: String,
    exit: Arc<ExitSignal>,
    backend: Mutex<Option<Backend>>,
    containers: Mutex<HashMap<String, Container>>,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("namespace", &self.inner.namespace)
            .finish_non_exhaustive()
    }
}

/// The shim process (containerd's `start`/`delete` actions and the server).
pub struct Shim {
    namespace: String,
    id: String,
    bundle: String,
    exit: Arc<ExitSignal>,
    config: Result<Config, String>,
}

impl std::fmt::Debug for Shim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shim")
            .field("namespace", &self.namespace)
            .field("id", &self.id)
            .field("bundle", &self.bundle)
            .finish_non_exhaustive()
    }
}

fn connect(config: &Result<Config, String>) -> Result<Channel, String> {
    let c = config.as_ref().map_err(Clone::clone)?;
    crate::client::connect(c).map_err(|e| e.to_string())
}

fn channel(inner: &Inner) -> TtrpcResult<Channel> {
    inner
        .channel
        .clone()
        .map_err(|e| status(Code::UNAVAILABLE, e))
}

/// Raises the OOM score of a sandbox's supervisor: it forks every process
/// of the sandbox after this (Start and Exec come later), and a forked
/// process inherits its parent's score. Read back to be sure it holds.
fn set_oom_score_adj(supervisor_pid: i64, adj: i64) -> Result<(), String> {
    if supervisor_pid <= 0 {
        return Err(format!(
            "the daemon reported no supervisor pid ({supervisor_pid})"
        ));
    }
    let path = format!("/proc/{supervisor_pid}/oom_score_adj");
    std::fs::write(&path, adj.to_string()).map_err(|e| format!("writing {path}: {e}"))?;
    let now = std::fs::read_to_string(&path).map_err(|e| format!("reading {path}: {e}"))?;
    if now.trim() != adj.to_string() {
        return Err(format!("{path} is {} after writing {adj}", now.trim()));
    }
    Ok(())
}

/// What the mapping needs to know of this host: its name, and which of the
/// bundle's namespace paths are this host's own namespaces (same device and
/// inode as /proc/self/ns/<type>; the shim runs in containerd's, the host's).
fn host_facts(config: &serde_json::Value) -> bundle::Host {
    bundle::Host {
        name: nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_default(),
        own_namespaces: namespaces_of(config, "self", |_| true),
        ..Default::default()
    }
}

/// The bundle's `linux.namespaces[].path`s (of the kinds `wanted` takes)
/// that are the same namespace (device and inode) as `/proc/<pid>/ns/<kind>`
/// (`pid` may be `self`).
fn namespaces_of(
    config: &serde_json::Value,
    pid: &str,
    wanted: impl Fn(&str) -> bool,
) -> std::collections::BTreeSet<String> {
    use std::os::unix::fs::MetadataExt;
    let listed = config
        .pointer("/linux/namespaces")
        .and_then(|n| n.as_array())
        .map(Vec::as_slice)
        .unwrap_or_default();
    let mut same = std::collections::BTreeSet::new();
    for ns in listed {
        let (Some(kind), Some(path)) = (
            ns.get("type").and_then(|t| t.as_str()),
            ns.get("path").and_then(|p| p.as_str()),
        ) else {
            continue;
        };
        let Some(name) = proc_ns_name(kind).filter(|_| wanted(kind)) else {
            continue;
        };
        if let (Ok(a), Ok(b)) = (
            std::fs::metadata(path),
            std::fs::metadata(format!("/proc/{pid}/ns/{name}")),
        ) {
            if a.dev() == b.dev() && a.ino() == b.ino() {
                same.insert(path.to_owned());
            }
        }
    }
    same
}

/// The namespace kind's name under `/proc/<pid>/ns/`.
fn proc_ns_name(kind: &str) -> Option<&str> {
    match kind {
        "network" => Some("net"),
        "mount" => Some("mnt"),
        "pid" | "ipc" | "uts" | "user" | "cgroup" => Some(kind),
        _ => None,
    }
}

/// For a pod's container (the CRI plugin's annotations): the pod's
/// sandbox, found by its labels, and which of the bundle's network, ipc and
/// uts paths are its namespaces (same device and inode as its pid 1's; the
/// pause process the paths name runs in them). Only for a local daemon,
/// whose pids are this host's; None when there is no such sandbox, and the
/// mapping then treats the paths as before (degraded or refused).
async fn pod_facts(
    channel: Channel,
    namespace: &str,
    config: &serde_json::Value,
) -> Option<bundle::PodSandbox> {
    let annotation = |k: &str| config.pointer("/annotations")?.get(k)?.as_str();
    if annotation(bundle::ANNOTATION_CONTAINER_TYPE) != Some("container") {
        return None;
    }
    let pod = annotation(bundle::ANNOTATION_SANDBOX_ID)?;
    let mut c = pb::sandbox_service_client::SandboxServiceClient::new(channel);
    let selector = format!(
        "{LABEL_NAMESPACE}={namespace},{}={pod},{}=sandbox",
        bundle::ANNOTATION_SANDBOX_ID,
        bundle::ANNOTATION_CONTAINER_TYPE
    );
    let found = match c
        .list_sandboxes(pb::ListSandboxesRequest {
            label_selector: selector,
            ..Default::default()
        })
        .await
    {
        Ok(r) => r.into_inner().sandboxes,
        Err(e) => {
            warn!("looking up pod {pod}'s sandbox: {}", e.message());
            return None;
        }
    };
    let sb = found
        .into_iter()
        .find(|s| s.state == pb::SandboxState::Running as i32 && s.init_pid > 0)?;
    let mut facts = bundle::PodSandbox {
        sandbox_id: sb.id.clone(),
        ..Default::default()
    };
    facts.namespaces = namespaces_of(config, &sb.init_pid.to_string(), |kind| {
        ["network", "ipc", "uts", "pid"].contains(&kind)
    });
    Some(facts)
}

/// The daemon's sandbox carrying these labels, if any.
async fn find_sandbox(
    channel: Channel,
    namespace: &str,
    id: &str,
) -> Result<Option<pb::Sandbox>, tonic::Status> {
    let mut c = pb::sandbox_service_client::SandboxServiceClient::new(channel);
    let selector = format!("{LABEL_NAMESPACE}={namespace},{LABEL_ID}={id}");
    let resp = c
        .list_sandboxes(pb::ListSandboxesRequest {
            label_selector: selector,
            ..Default::default()
        })
        .await?
        .into_inner();
    Ok(resp.sandboxes.into_iter().next())
}

/// Unmounts what the shim mounted on a bundle's rootfs.
fn unmount_rootfs(target: &Path) {
    if let Err(e) = rootfs::unmount(target) {
        warn!("unmounting {}: {e}", target.display());
    }
}

#[async_trait]
impl containerd_shim::asynchronous::Shim for Shim {
    type T = Service;

    async fn new(_runtime_id: &str, args: &Flags, _config: &mut ShimConfig) -> Self {
        Shim {
            namespace: args.namespace.clone(),
            id: args.id.clone(),
            bundle: args.bundle.clone(),
            exit: Arc::new(ExitSignal::default()),
            config: Config::load().map_err(|e| e.to_string()),
        }
    }

    async fn start_shim(&mut self, opts: StartOpts) -> containerd_shim::Result<String> {
        // containerd runs `start` in the bundle directory. A pod's
        // containers join their pod's shim (containerd-shim's spawn finds
        // its socket in use and hands containerd that address); an
        // unreadable config.json is the task's own group, and Create
        // reports what is wrong with it.
        let config = std::fs::read("config.json")
            .ok()
            .and_then(|t| serde_json::from_slice::<serde_json::Value>(&t).ok())
            .unwrap_or_default();
        let grouping = bundle::shim_group(&config, &opts.id);
        spawn(opts, &grouping, Vec::new()).await
    }

    /// containerd runs this when the shim is gone (crashed, killed) to
    /// clean up: the task's sandbox is destroyed and its rootfs unmounted.
    async fn delete_shim(&mut self) -> containerd_shim::Result<api::DeleteResponse> {
        let channel = connect(&self.config).map_err(containerd_shim::Error::Other)?;
        match find_sandbox(channel.clone(), &self.namespace, &self.id).await {
            Ok(Some(sb)) => {
                let mut c = pb::sandbox_service_client::SandboxServiceClient::new(channel);
                if let Err(e) = c
                    .destroy_sandbox(pb::DestroySandboxRequest { id: sb.id.clone() })
                    .await
                {
                    return Err(containerd_shim::Error::Other(format!(
                        "destroying sandbox {} of task {}: {}",
                        sb.id,
                        self.id,
                        e.message()
                    )));
                }
            }
            Ok(None) => {}
            Err(e) => {
                return Err(containerd_shim::Error::Other(format!(
                    "finding the sandbox of task {}: {}",
                    self.id,
                    e.message()
                )));
            }
        }
        // containerd runs the delete action in the bundle directory.
        let bundle = if self.bundle.is_empty() {
            std::env::current_dir().ok()
        } else {
            Some(PathBuf::from(&self.bundle))
        };
        if let Some(b) = bundle {
            unmount_rootfs(&b.join("rootfs"));
        }
        Ok(api::DeleteResponse {
            // As runc's shim reports a task it had to kill.
            exit_status: 137,
            exited_at: MessageField::some(now()),
            ..Default::default()
        })
    }

    async fn wait(&mut self) {
        self.exit.wait().await;
        // containerd-shim 0.10's server shutdown can wait on connections
        // containerd keeps open; every container is deleted by now (or
        // Shutdown was forced), so the process ends on its own shortly.
        std::thread::spawn(|| {
            std::thread::sleep(std::time::Duration::from_secs(2));
            std::process::exit(0);
        });
    }

    async fn create_task_service(&self, publisher: RemotePublisher) -> Service {
        Service {
            inner: Arc::new(Inner {
                channel: connect(&self.config),
                local: self
                    .config
                    .as_ref()
                    .is_ok_and(|c| c.endpoint.starts_with("unix:")),
                publisher,
                namespace: self.namespace.clone(),
                exit: self.exit.clone(),
                backend: Mutex::new(None),
                containers: Mutex::new(HashMap::new()),
            }),
        }
    }
}

impl Inner {
    async fn publish(&self, topic: &str, event: Box<dyn MessageDyn>) {
        if let Err(e) = self
            .publisher
            .publish(
                ttrpc::context::Context::default(),
                topic,
                &self.namespace,
                event,
            )
            .await
        {
            warn!("publishing {topic}: {e}");
        }
    }

    async fn backend(&self) -> TtrpcResult<Backend> {
        let mut cached = self.backend.lock().await;
        if let Some(b) = *cached {
            return Ok(b);
        }
        let mut c = pb::host_service_client::HostServiceClient::new(channel(self)?);
        let caps = c
            .get_capabilities(pb::GetCapabilitiesRequest::default())
            .await
            .map_err(|e| from_grpc("GetCapabilities", &e))?
            .into_inner();
        let b = match pb::BackendKind::try_from(caps.backend) {
            Ok(pb::BackendKind::Linux) => Backend::Linux,
            Ok(pb::BackendKind::Freebsd) => Backend::FreeBsd,
            Ok(pb::BackendKind::Chroot) => Backend::Chroot,
            _ => {
                return Err(status(
                    Code::UNAVAILABLE,
                    format!("sandboxd reports an unknown backend {}", caps.backend),
                ));
            }
        };
        *cached = Some(b);
        Ok(b)
    }

    /// Starts `exec_id` of container `cid` as an Exec stream and spawns the
    /// copying of its stdio; returns its host pid.
    async fn start_proc(self: &Arc<Self>, cid: &str, exec_id: &str) -> TtrpcResult<u32> {
        let (sandbox_id, spec, size, stdio) = {
            let containers = self.containers.lock().await;
            let c = containers
                .get(cid)
                .ok_or_else(|| status(Code::NOT_FOUND, format!("container {cid} not found")))?;
            let p = c.procs.get(exec_id).ok_or_else(|| {
                status(
                    Code::NOT_FOUND,
                    format!("process {exec_id:?} of {cid} not found"),
                )
            })?;
            if p.started {
                return Err(status(
                    Code::FAILED_PRECONDITION,
                    format!("process {exec_id:?} of {cid} was already started"),
                ));
            }
            (
                c.sandbox_id.clone(),
                p.spec.clone(),
                p.size,
                p.stdio.clone(),
            )
        };
        let outputs = {
            let mut containers = self.containers.lock().await;
            containers
                .get_mut(cid)
                .and_then(|c| c.procs.get_mut(exec_id))
                .and_then(|p| p.outputs.take())
                .unwrap_or_default()
        };
        let (tx, rx) = mpsc::channel::<pb::ExecRequest>(64);
        let start = pb::ExecRequest {
            msg: Some(pb::exec_request::Msg::Start(pb::ExecStart {
                sandbox_id: sandbox_id.clone(),
                process: Some(spec),
                size,
                ..Default::default()
            })),
        };
        tx.send(start)
            .await
            .map_err(|_| status(Code::INTERNAL, "exec stream closed before start"))?;
        let mut client = pb::process_service_client::ProcessServiceClient::new(channel(self)?);
        let mut stream = client
            .exec(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .map_err(|e| from_grpc("Exec", &e))?
            .into_inner();
        let pid = match stream.message().await {
            Ok(Some(pb::ExecResponse {
                msg: Some(pb::exec_response::Msg::StartedPid(pid)),
                ..
            })) => u32::try_from(pid).unwrap_or(0),
            Ok(Some(pb::ExecResponse {
                msg: Some(pb::exec_response::Msg::Exited(e)),
                ..
            })) => {
                return Err(status(
                    Code::FAILED_PRECONDITION,
                    format!("the process did not start: {}", e.message),
                ));
            }
            Ok(_) => return Err(status(Code::INTERNAL, "Exec ended without starting")),
            Err(e) => return Err(from_grpc("Exec", &e)),
        };
        {
            let mut containers = self.containers.lock().await;
            if let Some(p) = containers
                .get_mut(cid)
                .and_then(|c| c.procs.get_mut(exec_id))
            {
                p.pid = pid;
                p.started = true;
                p.input = Some(tx.clone());
            }
        }
        if !stdio.stdin.is_empty() {
            tokio::spawn(copy_stdin(stdio.stdin.clone(), tx));
        } else {
            // No stdin: the process sees EOF at once.
            let _ = tx
                .send(pb::ExecRequest {
                    msg: Some(pb::exec_request::Msg::CloseStdin(true)),
                })
                .await;
            drop(tx);
        }
        let inner = self.clone();
        let (cid, eid) = (cid.to_owned(), exec_id.to_owned());
        tokio::spawn(async move {
            let exit = copy_output(stream, outputs, &stdio).await;
            inner.process_exited(&cid, &eid, pid, exit).await;
        });
        Ok(pid)
    }

    /// Records an exit, tells containerd, and ends the sandbox with its
    /// init (as a runc container ends when its init does).
    async fn process_exited(&self, cid: &str, eid: &str, pid: u32, exit: Exit) {
        let sandbox = {
            let mut containers = self.containers.lock().await;
            let Some(c) = containers.get_mut(cid) else {
                return;
            };
            if let Some(p) = c.procs.get_mut(eid) {
                p.input = None;
                p.exit.send_replace(Some(exit.clone()));
            }
            c.sandbox_id.clone()
        };
        self.publish(
            topics::TASK_EXIT_EVENT_TOPIC,
            Box::new(TaskExit {
                container_id: cid.to_owned(),
                id: if eid.is_empty() {
                    cid.to_owned()
                } else {
                    eid.to_owned()
                },
                pid,
                exit_status: exit.status,
                exited_at: MessageField::some(exit.at.clone()),
                ..Default::default()
            }),
        )
        .await;
        if eid.is_empty() {
            self.stop_sandbox(cid, sandbox).await;
        }
    }

    /// Kills whatever still runs in a container's sandbox once its process
    /// has ended (or been reported LOST). If the daemon is down (its Exec
    /// stream broke: the process's exit is unknown), keeps retrying for a
    /// minute so that nothing runs on after containerd was told it ended.
    async fn stop_sandbox(&self, cid: &str, sandbox: String) {
        let Ok(ch) = channel(self) else {
            return;
        };
        let mut c = pb::sandbox_service_client::SandboxServiceClient::new(ch);
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let r = c
                .stop_sandbox(pb::StopSandboxRequest {
                    id: sandbox.clone(),
                    grace_seconds: 1,
                    signal: 9,
                })
                .await;
            match r {
                Ok(_) => return,
                Err(e) if e.code() == tonic::Code::NotFound => return,
                Err(e) if tokio::time::Instant::now() >= deadline => {
                    warn!("stopping the sandbox of {cid} after its process ended: {e}");
                    return;
                }
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(500)).await,
            }
        }
    }
}

/// Chunks queued for one output FIFO before further output is dropped
/// (nobody has read it for that long).
const OUTPUT_QUEUE: usize = 1024;

/// A process's output FIFOs.
#[derive(Debug, Default)]
struct Outputs {
    out: Option<Output>,
    err: Option<Output>,
}

/// One output FIFO: our write end, and a read end kept open (as runc's
/// shim does) so that writes neither fail nor block at open once the
/// client has gone (a detached `ctr run -d`).
#[derive(Debug)]
struct Output {
    w: tokio::net::unix::pipe::Sender,
    keep: std::fs::File,
}

/// Opens a process's output FIFOs while the client is there (Create,
/// Exec): the write end blocking until the client's read end is open (at
/// most 10 s), then our own read end.
async fn open_outputs(stdio: &Stdio) -> Outputs {
    Outputs {
        out: open_output(&stdio.stdout).await,
        err: if stdio.terminal {
            None
        } else {
            open_output(&stdio.stderr).await
        },
    }
}

async fn open_output(path: &str) -> Option<Output> {
    use std::os::unix::fs::OpenOptionsExt;
    if path.is_empty() {
        return None;
    }
    let nonblock = nix::fcntl::OFlag::O_NONBLOCK.bits();
    let p = path.to_owned();
    let open = tokio::task::spawn_blocking(move || std::fs::OpenOptions::new().write(true).open(p));
    let w = match tokio::time::timeout(std::time::Duration::from_secs(10), open).await {
        Ok(Ok(Ok(f))) => f,
        Ok(Ok(Err(e))) => {
            warn!("opening {path}: {e}");
            return None;
        }
        Ok(Err(_)) | Err(_) => {
            warn!("opening {path}: no reader within 10 s; its output is dropped");
            // Complete the blocked open so that its thread ends.
            let _ = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(nonblock)
                .open(path);
            return None;
        }
    };
    let keep = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nonblock)
        .open(path)
    {
        Ok(k) => k,
        Err(e) => {
            warn!("opening {path} for reading: {e}");
            return None;
        }
    };
    match tokio::net::unix::pipe::Sender::from_file(w) {
        Ok(w) => Some(Output { w, keep }),
        Err(e) => {
            warn!("{path}: {e}");
            None
        }
    }
}

type Writer = (mpsc::Sender<Vec<u8>>, tokio::task::JoinHandle<()>);

/// A writer task for one output FIFO: the copying of the Exec stream never
/// waits on it; when its queue is full the chunk is dropped (logged once).
fn fifo_writer(output: Option<Output>) -> Option<Writer> {
    let Output { mut w, keep } = output?;
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(OUTPUT_QUEUE);
    let task = tokio::spawn(async move {
        while let Some(chunk) = rx.recv().await {
            if w.write_all(&chunk).await.is_err() {
                break;
            }
        }
        // Both ends close together: the client sees EOF.
        drop(keep);
    });
    Some((tx, task))
}

/// The terminal size to send for a ResizePty: `None` for a zero dimension
/// (what `ctr -t` forwards from a terminal that has no size, e.g. under
/// script(1)): nothing to apply, and sandboxd refuses it, which would end
/// the process's Exec stream. Past sandboxd's range: refused here, to the
/// caller, not to the stream.
fn terminal_size(height: u32, width: u32) -> TtrpcResult<Option<pb::TerminalSize>> {
    if height == 0 || width == 0 {
        return Ok(None);
    }
    if height > 65_535 || width > 65_535 {
        return Err(status(
            Code::INVALID_ARGUMENT,
            format!("ResizePty: height and width must be at most 65535, got {height}x{width}"),
        ));
    }
    Ok(Some(pb::TerminalSize {
        rows: height,
        cols: width,
    }))
}

/// containerd's stdin FIFO → the Exec stream; EOF closes the process's
/// stdin.
async fn copy_stdin(path: String, tx: mpsc::Sender<pb::ExecRequest>) {
    let p = path.clone();
    let file =
        tokio::task::spawn_blocking(move || std::fs::OpenOptions::new().read(true).open(p)).await;
    let mut rx = match file
        .map_err(std::io::Error::other)
        .and_then(|f| f)
        .and_then(tokio::net::unix::pipe::Receiver::from_file)
    {
        Ok(r) => r,
        Err(e) => {
            warn!("opening stdin {path}: {e}");
            return;
        }
    };
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match rx.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let msg = pb::ExecRequest {
                    msg: Some(pb::exec_request::Msg::Stdin(buf[..n].to_vec())),
                };
                if tx.send(msg).await.is_err() {
                    return;
                }
            }
        }
    }
    let _ = tx
        .send(pb::ExecRequest {
            msg: Some(pb::exec_request::Msg::CloseStdin(true)),
        })
        .await;
}

/// The Exec stream's output → containerd's FIFOs, until the process ends;
/// then the FIFOs are closed (after what was queued is written, for at most
/// a few seconds), so the client sees EOF before the exit is published.
async fn copy_output(
    mut stream: tonic::Streaming<pb::ExecResponse>,
    outputs: Outputs,
    stdio: &Stdio,
) -> Exit {
    let out = fifo_writer(outputs.out);
    let err = fifo_writer(outputs.err);
    let mut dropped = false;
    let mut send = |w: &Option<Writer>, b: Vec<u8>| {
        if let Some((tx, _)) = w {
            if tx.try_send(b).is_err() && !dropped {
                dropped = true;
                warn!("output is not being read; dropping it");
            }
        }
    };
    let exit = loop {
        match stream.message().await {
            Ok(Some(pb::ExecResponse { msg: Some(m), .. })) => match m {
                pb::exec_response::Msg::Stdout(b) => send(&out, b),
                pb::exec_response::Msg::Stderr(b) => send(&err, b),
                pb::exec_response::Msg::Exited(e) => {
                    break Exit {
                        status: u32::try_from(e.exit_code).unwrap_or(255),
                        at: timestamp_ms(e.finished_at_ms),
                    };
                }
                // Never sent to a stream that does not create its sandbox.
                pb::exec_response::Msg::StartedPid(_)
                | pb::exec_response::Msg::Created(_)
                | pb::exec_response::Msg::RemoveFailed(_) => {}
            },
            Ok(Some(_)) => {}
            end @ (Ok(None) | Err(_)) => {
                // The daemon went away mid-stream: the exit is unknown,
                // reported as sandboxd's LOST (255).
                let why = end
                    .err()
                    .map_or_else(|| "end of stream".to_owned(), |e| e.to_string());
                warn!("the Exec stream ended without an exit ({why}); reporting 255");
                break Exit {
                    status: 255,
                    at: now(),
                };
            }
        }
    };
    for (tx, task) in [out, err].into_iter().flatten() {
        drop(tx);
        let abort = task.abort_handle();
        if tokio::time::timeout(std::time::Duration::from_secs(3), task)
            .await
            .is_err()
        {
            abort.abort();
        }
    }
    // A blocking open of the stdin FIFO still waiting for its writer
    // (`copy_stdin`) returns once a writer shows up: be that writer.
    if !stdio.stdin.is_empty() {
        let _ = tokio::net::unix::pipe::OpenOptions::new().open_sender(&stdio.stdin);
    }
    exit
}

fn any_json(any: &Any) -> TtrpcResult<serde_json::Value> {
    serde_json::from_slice(&any.value).map_err(|e| {
        status(
            Code::INVALID_ARGUMENT,
            format!("the process spec ({}) is not JSON: {e}", any.type_url),
        )
    })
}

#[async_trait]
impl Task for Service {
    async fn create(
        &self,
        _ctx: &TtrpcContext,
        req: api::CreateTaskRequest,
    ) -> TtrpcResult<api::CreateTaskResponse> {
        let inner = &self.inner;
        if !req.checkpoint.is_empty() || !req.parent_checkpoint.is_empty() {
            return Err(status(
                Code::UNIMPLEMENTED,
                "checkpoint/restore is not supported by sandboxd",
            ));
        }
        if inner.containers.lock().await.contains_key(&req.id) {
            return Err(status(
                Code::ALREADY_EXISTS,
                format!("container {} already exists", req.id),
            ));
        }
        let bundle = PathBuf::from(&req.bundle);
        let rootfs = bundle.join("rootfs");
        let mut mounted = None;
        if !req.rootfs.is_empty() {
            if let Err(e) = tokio::fs::create_dir_all(&rootfs).await {
                return Err(status(Code::INTERNAL, format!("{}: {e}", rootfs.display())));
            }
            for m in &req.rootfs {
                let m = rootfs::RootfsMount {
                    kind: m.type_.clone(),
                    source: m.source.clone(),
                    options: m.options.clone(),
                };
                if let Err(e) = rootfs::mount(&m, &rootfs).await {
                    unmount_rootfs(&rootfs);
                    let code = match e {
                        rootfs::RootfsError::UnsupportedType { .. }
                        | rootfs::RootfsError::BadSource(_)
                        | rootfs::RootfsError::BadOption(_) => Code::INVALID_ARGUMENT,
                        _ => Code::INTERNAL,
                    };
                    return Err(status(code, e));
                }
            }
            mounted = Some(rootfs.clone());
        }
        let undo = |mounted: &Option<PathBuf>| {
            if let Some(r) = mounted {
                unmount_rootfs(r);
            }
        };
        let result = async {
            let text = tokio::fs::read(bundle.join("config.json"))
                .await
                .map_err(|e| status(Code::INVALID_ARGUMENT, format!("reading config.json: {e}")))?;
            let config: serde_json::Value = serde_json::from_slice(&text).map_err(|e| {
                status(
                    Code::INVALID_ARGUMENT,
                    format!("config.json is not JSON: {e}"),
                )
            })?;
            let backend = inner.backend().await?;
            // The shim runs on containerd's host, which is the daemon's
            // for a local endpoint (a remote daemon's sandbox sharing its
            // host's uts namespace would have that host's name instead).
            let mut host = host_facts(&config);
            if inner.local {
                host.pod = pod_facts(channel(inner)?, &inner.namespace, &config).await;
            }
            let mut mapped = bundle::map_bundle(&config, &bundle, backend, &host).map_err(|e| {
                status(
                    Code::INVALID_ARGUMENT,
                    format!("the bundle asks for what sandboxd cannot give: {e}"),
                )
            })?;
            for d in &mapped.degraded {
                warn!("container {}: PREFERRED, degraded: {d}", req.id);
            }
            if req.terminal != mapped.process.spec.tty {
                return Err(status(
                    Code::INVALID_ARGUMENT,
                    format!(
                        "terminal={} but config.json's process.terminal={}",
                        req.terminal, mapped.process.spec.tty
                    ),
                ));
            }
            mapped
                .spec
                .labels
                .insert(LABEL_NAMESPACE.into(), inner.namespace.clone());
            mapped.spec.labels.insert(LABEL_ID.into(), req.id.clone());
            if mapped.process.oom_score_adj != 0 && !inner.local {
                return Err(status(
                    Code::INVALID_ARGUMENT,
                    "the bundle asks for what sandboxd cannot give: process.oomScoreAdj: the shim sets it on the sandbox's processes on this host only (a unix socket endpoint)",
                ));
            }
            let mut c = pb::sandbox_service_client::SandboxServiceClient::new(channel(inner)?);
            let sb = c
                .create_sandbox(pb::CreateSandboxRequest {
                    spec: Some(mapped.spec.clone()),
                    ..Default::default()
                })
                .await
                .map_err(|e| from_grpc("CreateSandbox", &e))?
                .into_inner()
                .sandbox
                .ok_or_else(|| status(Code::INTERNAL, "CreateSandbox returned no sandbox"))?;
            if mapped.process.oom_score_adj != 0 {
                if let Err(e) = set_oom_score_adj(sb.supervisor_pid, mapped.process.oom_score_adj) {
                    // REQUIRED: no sandbox without it.
                    if let Err(d) = c
                        .destroy_sandbox(pb::DestroySandboxRequest { id: sb.id.clone() })
                        .await
                    {
                        warn!("DestroySandbox {} after a failed create: {}", sb.id, d.message());
                    }
                    return Err(status(
                        Code::FAILED_PRECONDITION,
                        format!("process.oomScoreAdj: {e}"),
                    ));
                }
            }
            Ok::<_, ttrpc::Error>((mapped, sb))
        }
        .await;
        let (mapped, sb) = match result {
            Ok(x) => x,
            Err(e) => {
                undo(&mounted);
                return Err(e);
            }
        };
        let supervisor_pid = u32::try_from(sb.supervisor_pid).unwrap_or(0);
        info!("container {}: sandbox {}", req.id, sb.id);
        let stdio = Stdio {
            stdin: req.stdin.clone(),
            stdout: req.stdout.clone(),
            stderr: req.stderr.clone(),
            terminal: req.terminal,
        };
        let mut procs = HashMap::new();
        procs.insert(
            String::new(),
            Proc {
                outputs: Some(open_outputs(&stdio).await),
                ..Proc::new(mapped.process.spec, mapped.process.size, stdio)
            },
        );
        inner.containers.lock().await.insert(
            req.id.clone(),
            Container {
                bundle: req.bundle.clone(),
                sandbox_id: sb.id.clone(),
                supervisor_pid,
                limits: mapped.spec.limits,
                oom_score_adj: mapped.process.oom_score_adj,
                mounted_rootfs: mounted,
                procs,
            },
        );
        inner
            .publish(
                topics::TASK_CREATE_EVENT_TOPIC,
                Box::new(TaskCreate {
                    container_id: req.id.clone(),
                    bundle: req.bundle.clone(),
                    rootfs: req.rootfs.clone(),
                    io: MessageField::some(TaskIO {
                        stdin: req.stdin.clone(),
                        stdout: req.stdout.clone(),
                        stderr: req.stderr.clone(),
                        terminal: req.terminal,
                        ..Default::default()
                    }),
                    pid: supervisor_pid,
                    ..Default::default()
                }),
            )
            .await;
        Ok(api::CreateTaskResponse {
            pid: supervisor_pid,
            ..Default::default()
        })
    }

    async fn start(
        &self,
        _ctx: &TtrpcContext,
        req: api::StartRequest,
    ) -> TtrpcResult<api::StartResponse> {
        let pid = self.inner.start_proc(&req.id, &req.exec_id).await?;
        if req.exec_id.is_empty() {
            self.inner
                .publish(
                    topics::TASK_START_EVENT_TOPIC,
                    Box::new(TaskStart {
                        container_id: req.id.clone(),
                        pid,
                        ..Default::default()
                    }),
                )
                .await;
        } else {
            self.inner
                .publish(
                    topics::TASK_EXEC_STARTED_EVENT_TOPIC,
                    Box::new(TaskExecStarted {
                        container_id: req.id.clone(),
                        exec_id: req.exec_id.clone(),
                        pid,
                        ..Default::default()
                    }),
                )
                .await;
        }
        Ok(api::StartResponse {
            pid,
            ..Default::default()
        })
    }

    async fn exec(
        &self,
        _ctx: &TtrpcContext,
        req: api::ExecProcessRequest,
    ) -> TtrpcResult<api::Empty> {
        let backend = self.inner.backend().await?;
        let any = req
            .spec
            .as_ref()
            .ok_or_else(|| status(Code::INVALID_ARGUMENT, "exec without a process spec"))?;
        let value = any_json(any)?;
        let (mut process, degraded) = bundle::map_exec_process(&value, backend).map_err(|e| {
            status(
                Code::INVALID_ARGUMENT,
                format!("the exec asks for what sandboxd cannot give: {e}"),
            )
        })?;
        for d in &degraded {
            warn!(
                "exec {} in {}: PREFERRED, degraded: {d}",
                req.exec_id, req.id
            );
        }
        if req.terminal != process.spec.tty {
            return Err(status(
                Code::INVALID_ARGUMENT,
                format!(
                    "terminal={} but the process spec's terminal={}",
                    req.terminal, process.spec.tty
                ),
            ));
        }
        let outputs = open_outputs(&Stdio {
            stdin: String::new(),
            stdout: req.stdout.clone(),
            stderr: req.stderr.clone(),
            terminal: req.terminal,
        })
        .await;
        {
            let mut containers = self.inner.containers.lock().await;
            let c = containers
                .get_mut(&req.id)
                .ok_or_else(|| no_container(&req.id))?;
            bundle::check_exec_rlimits(&mut process, c.limits.as_ref())
                .map_err(|e| status(Code::INVALID_ARGUMENT, e.to_string()))?;
            // Every process of the sandbox has the task's score (inherited
            // from the supervisor); an exec cannot have another.
            if process.oom_score_adj != 0 && process.oom_score_adj != c.oom_score_adj {
                return Err(status(
                    Code::INVALID_ARGUMENT,
                    format!(
                        "process.oomScoreAdj: {} differs from the task's {}, which every process of the sandbox has",
                        process.oom_score_adj, c.oom_score_adj
                    ),
                ));
            }
            if c.procs.contains_key(&req.exec_id) {
                return Err(status(
                    Code::ALREADY_EXISTS,
                    format!("exec {} already exists", req.exec_id),
                ));
            }
            c.procs.insert(
                req.exec_id.clone(),
                Proc {
                    outputs: Some(outputs),
                    ..Proc::new(
                        process.spec,
                        process.size,
                        Stdio {
                            stdin: req.stdin.clone(),
                            stdout: req.stdout.clone(),
                            stderr: req.stderr.clone(),
                            terminal: req.terminal,
                        },
                    )
                },
            );
        }
        self.inner
            .publish(
                topics::TASK_EXEC_ADDED_EVENT_TOPIC,
                Box::new(TaskExecAdded {
                    container_id: req.id.clone(),
                    exec_id: req.exec_id.clone(),
                    ..Default::default()
                }),
            )
            .await;
        Ok(api::Empty::new())
    }

    async fn kill(&self, _ctx: &TtrpcContext, req: api::KillRequest) -> TtrpcResult<api::Empty> {
        let signal = i32::try_from(req.signal)
            .map_err(|_| status(Code::INVALID_ARGUMENT, format!("signal {}", req.signal)))?;
        let (sandbox, targets, unstarted) = {
            let containers = self.inner.containers.lock().await;
            let c = containers
                .get(&req.id)
                .ok_or_else(|| no_container(&req.id))?;
            let p = c
                .procs
                .get(&req.exec_id)
                .ok_or_else(|| no_process(&req.exec_id))?;
            let running = |p: &Proc| p.started && p.exit.borrow().is_none();
            if p.exit.borrow().is_some() {
                return Err(status(Code::NOT_FOUND, "process already finished"));
            }
            // `all`: every process the shim started in the container (the
            // sandbox's other processes end with its init anyway).
            let targets: Vec<u32> = if req.all {
                c.procs
                    .values()
                    .filter(|p| running(p))
                    .map(|p| p.pid)
                    .collect()
            } else if running(p) {
                vec![p.pid]
            } else {
                Vec::new()
            };
            (c.sandbox_id.clone(), targets, !p.started)
        };
        if unstarted {
            // Killing a created, never started process ends it right away.
            let exit = Exit {
                status: 128 + req.signal,
                at: now(),
            };
            self.inner
                .process_exited(&req.id, &req.exec_id, 0, exit)
                .await;
            return Ok(api::Empty::new());
        }
        info!(
            "kill {} {:?}: signal {signal} to {targets:?} (all={})",
            req.id, req.exec_id, req.all
        );
        let mut c = pb::process_service_client::ProcessServiceClient::new(channel(&self.inner)?);
        for pid in targets {
            if let Err(e) = c
                .signal_process(pb::SignalProcessRequest {
                    sandbox_id: sandbox.clone(),
                    pid: i64::from(pid),
                    signal,
                })
                .await
            {
                // It may have ended meanwhile.
                warn!("SignalProcess {pid} in {sandbox}: {e}");
                if e.code() != tonic::Code::NotFound && e.code() != tonic::Code::FailedPrecondition
                {
                    return Err(from_grpc("SignalProcess", &e));
                }
            }
        }
        Ok(api::Empty::new())
    }

    async fn wait(
        &self,
        _ctx: &TtrpcContext,
        req: api::WaitRequest,
    ) -> TtrpcResult<api::WaitResponse> {
        let mut rx = {
            let containers = self.inner.containers.lock().await;
            let c = containers
                .get(&req.id)
                .ok_or_else(|| no_container(&req.id))?;
            c.procs
                .get(&req.exec_id)
                .ok_or_else(|| no_process(&req.exec_id))?
                .exit
                .subscribe()
        };
        let exit = rx
            .wait_for(Option::is_some)
            .await
            .map_err(|_| status(Code::NOT_FOUND, "process removed"))?
            .clone();
        let exit = exit.unwrap_or(Exit {
            status: 255,
            at: now(),
        });
        Ok(api::WaitResponse {
            exit_status: exit.status,
            exited_at: MessageField::some(exit.at),
            ..Default::default()
        })
    }

    async fn delete(
        &self,
        _ctx: &TtrpcContext,
        req: api::DeleteRequest,
    ) -> TtrpcResult<api::DeleteResponse> {
        let inner = &self.inner;
        if !req.exec_id.is_empty() {
            let mut containers = inner.containers.lock().await;
            let c = containers
                .get_mut(&req.id)
                .ok_or_else(|| no_container(&req.id))?;
            let p = c
                .procs
                .get(&req.exec_id)
                .ok_or_else(|| no_process(&req.exec_id))?;
            if p.started && p.exit.borrow().is_none() {
                return Err(status(
                    Code::FAILED_PRECONDITION,
                    format!("exec {} is still running", req.exec_id),
                ));
            }
            let exit = p.exit.borrow().clone().unwrap_or(Exit {
                status: 0,
                at: now(),
            });
            let pid = p.pid;
            c.procs.remove(&req.exec_id);
            return Ok(api::DeleteResponse {
                pid,
                exit_status: exit.status,
                exited_at: MessageField::some(exit.at),
                ..Default::default()
            });
        }
        let c = inner
            .containers
            .lock()
            .await
            .remove(&req.id)
            .ok_or_else(|| no_container(&req.id))?;
        let mut client = pb::sandbox_service_client::SandboxServiceClient::new(channel(inner)?);
        if let Err(e) = client
            .destroy_sandbox(pb::DestroySandboxRequest {
                id: c.sandbox_id.clone(),
            })
            .await
        {
            // Keep the container so a retry can finish the job.
            let err = from_grpc("DestroySandbox", &e);
            inner.containers.lock().await.insert(req.id.clone(), c);
            return Err(err);
        }
        if let Some(r) = &c.mounted_rootfs {
            unmount_rootfs(r);
        }
        let (pid, exit) = c
            .procs
            .get("")
            .map_or((0, None), |p| (p.pid, p.exit.borrow().clone()));
        let exit = exit.unwrap_or(Exit {
            status: 137,
            at: now(),
        });
        inner
            .publish(
                topics::TASK_DELETE_EVENT_TOPIC,
                Box::new(TaskDelete {
                    container_id: req.id.clone(),
                    id: req.id.clone(),
                    pid,
                    exit_status: exit.status,
                    exited_at: MessageField::some(exit.at.clone()),
                    ..Default::default()
                }),
            )
            .await;
        Ok(api::DeleteResponse {
            pid,
            exit_status: exit.status,
            exited_at: MessageField::some(exit.at),
            ..Default::default()
        })
    }

    async fn state(
        &self,
        _ctx: &TtrpcContext,
        req: api::StateRequest,
    ) -> TtrpcResult<api::StateResponse> {
        let containers = self.inner.containers.lock().await;
        let c = containers
            .get(&req.id)
            .ok_or_else(|| no_container(&req.id))?;
        let p = c
            .procs
            .get(&req.exec_id)
            .ok_or_else(|| no_process(&req.exec_id))?;
        let exit = p.exit.borrow().clone();
        Ok(api::StateResponse {
            id: if req.exec_id.is_empty() {
                req.id.clone()
            } else {
                req.exec_id.clone()
            },
            bundle: c.bundle.clone(),
            pid: if p.started { p.pid } else { c.supervisor_pid },
            status: EnumOrUnknown::new(p.status()),
            stdin: p.stdio.stdin.clone(),
            stdout: p.stdio.stdout.clone(),
            stderr: p.stdio.stderr.clone(),
            terminal: p.stdio.terminal,
            exit_status: exit.as_ref().map_or(0, |e| e.status),
            exited_at: exit.map_or(MessageField::none(), |e| MessageField::some(e.at)),
            exec_id: req.exec_id.clone(),
            ..Default::default()
        })
    }

    async fn pids(
        &self,
        _ctx: &TtrpcContext,
        req: api::PidsRequest,
    ) -> TtrpcResult<api::PidsResponse> {
        let containers = self.inner.containers.lock().await;
        let c = containers
            .get(&req.id)
            .ok_or_else(|| no_container(&req.id))?;
        // The processes the shim started (the task's and its execs'): what
        // sandboxd's API names by pid. Their descendants are not listed.
        let mut pids: Vec<u32> = c
            .procs
            .values()
            .filter(|p| p.started && p.exit.borrow().is_none())
            .map(|p| p.pid)
            .collect();
        pids.sort_unstable();
        Ok(api::PidsResponse {
            processes: pids
                .into_iter()
                .map(|pid| containerd_shim_protos::types::task::ProcessInfo {
                    pid,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        })
    }

    async fn resize_pty(
        &self,
        _ctx: &TtrpcContext,
        req: api::ResizePtyRequest,
    ) -> TtrpcResult<api::Empty> {
        let tx = self.input(&req.id, &req.exec_id).await?;
        let Some(size) = terminal_size(req.height, req.width)? else {
            return Ok(api::Empty::new());
        };
        let _ = tx
            .send(pb::ExecRequest {
                msg: Some(pb::exec_request::Msg::Resize(size)),
            })
            .await;
        Ok(api::Empty::new())
    }

    async fn close_io(
        &self,
        _ctx: &TtrpcContext,
        req: api::CloseIORequest,
    ) -> TtrpcResult<api::Empty> {
        if req.stdin {
            let tx = self.input(&req.id, &req.exec_id).await?;
            let _ = tx
                .send(pb::ExecRequest {
                    msg: Some(pb::exec_request::Msg::CloseStdin(true)),
                })
                .await;
        }
        Ok(api::Empty::new())
    }

    async fn stats(
        &self,
        _ctx: &TtrpcContext,
        req: api::StatsRequest,
    ) -> TtrpcResult<api::StatsResponse> {
        use containerd_shim_protos::cgroups::metrics::{
            MemoryEntry, MemoryStat, Metrics, PidsStat,
        };
        let sandbox = {
            let containers = self.inner.containers.lock().await;
            containers
                .get(&req.id)
                .ok_or_else(|| no_container(&req.id))?
                .sandbox_id
                .clone()
        };
        let mut c = pb::sandbox_service_client::SandboxServiceClient::new(channel(&self.inner)?);
        let sb = c
            .get_sandbox(pb::GetSandboxRequest { id: sandbox })
            .await
            .map_err(|e| from_grpc("GetSandbox", &e))?
            .into_inner()
            .sandbox
            .unwrap_or_default();
        let usage = sb.usage.unwrap_or_default();
        // What sandboxd measures (memory charged, tasks), in containerd's
        // cgroup v1 metrics type; fields it does not measure stay unset.
        let mut m = Metrics::new();
        if let Some(bytes) = usage.memory_bytes {
            m.memory = MessageField::some(MemoryStat {
                usage: MessageField::some(MemoryEntry {
                    usage: bytes,
                    ..Default::default()
                }),
                ..Default::default()
            });
        }
        if let Some(n) = usage.pids {
            m.pids = MessageField::some(PidsStat {
                current: n,
                ..Default::default()
            });
        }
        let any = containerd_shim::util::convert_to_any(Box::new(m))
            .map_err(|e| status(Code::INTERNAL, e.to_string()))?;
        Ok(api::StatsResponse {
            stats: MessageField::some(any),
            ..Default::default()
        })
    }

    async fn connect(
        &self,
        _ctx: &TtrpcContext,
        req: api::ConnectRequest,
    ) -> TtrpcResult<api::ConnectResponse> {
        let containers = self.inner.containers.lock().await;
        let task_pid = containers
            .get(&req.id)
            .and_then(|c| c.procs.get(""))
            .map_or(0, |p| p.pid);
        Ok(api::ConnectResponse {
            shim_pid: std::process::id(),
            task_pid,
            version: format!("sandboxd-shim {}", env!("CARGO_PKG_VERSION")),
            ..Default::default()
        })
    }

    async fn shutdown(
        &self,
        _ctx: &TtrpcContext,
        req: api::ShutdownRequest,
    ) -> TtrpcResult<api::Empty> {
        // Only once every container is deleted (or when forced): containerd
        // asks after each Delete.
        if req.now || self.inner.containers.lock().await.is_empty() {
            self.inner.exit.signal();
        }
        Ok(api::Empty::new())
    }

    async fn pause(&self, _ctx: &TtrpcContext, _req: api::PauseRequest) -> TtrpcResult<api::Empty> {
        Err(status(
            Code::UNIMPLEMENTED,
            "pause is not supported by sandboxd",
        ))
    }

    async fn resume(
        &self,
        _ctx: &TtrpcContext,
        _req: api::ResumeRequest,
    ) -> TtrpcResult<api::Empty> {
        Err(status(
            Code::UNIMPLEMENTED,
            "resume is not supported by sandboxd",
        ))
    }

    async fn checkpoint(
        &self,
        _ctx: &TtrpcContext,
        _req: api::CheckpointTaskRequest,
    ) -> TtrpcResult<api::Empty> {
        Err(status(
            Code::UNIMPLEMENTED,
            "checkpoint is not supported by sandboxd",
        ))
    }

    async fn update(
        &self,
        _ctx: &TtrpcContext,
        _req: api::UpdateTaskRequest,
    ) -> TtrpcResult<api::Empty> {
        Err(status(
            Code::UNIMPLEMENTED,
            "update is not supported by sandboxd: a sandbox's limits are fixed at create",
        ))
    }
}

impl Service {
    async fn input(&self, id: &str, exec_id: &str) -> TtrpcResult<mpsc::Sender<pb::ExecRequest>> {
        let containers = self.inner.containers.lock().await;
        containers
            .get(id)
            .and_then(|c| c.procs.get(exec_id))
            .and_then(|p| p.input.clone())
            .ok_or_else(|| {
                status(
                    Code::NOT_FOUND,
                    format!("no running process {exec_id:?} in {id}"),
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resize_sizes_follow_what_sandboxd_accepts() {
        // (height, width) → Ok(Some(rows, cols)), Ok(None) skipped, Err refused
        type Want = Result<Option<(u32, u32)>, ()>;
        let cases: &[(u32, u32, Want)] = &[
            (24, 80, Ok(Some((24, 80)))),
            (1, 1, Ok(Some((1, 1)))),
            (65_535, 65_535, Ok(Some((65_535, 65_535)))),
            (0, 0, Ok(None)),
            (0, 80, Ok(None)),
            (24, 0, Ok(None)),
            (65_536, 80, Err(())),
            (24, u32::MAX, Err(())),
        ];
        for (h, w, want) in cases {
            let got = terminal_size(*h, *w)
                .map(|s| s.map(|s| (s.rows, s.cols)))
                .map_err(|_| ());
            assert_eq!(&got, want, "{h}x{w}");
        }
    }
}
