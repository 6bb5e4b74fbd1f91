//! ProcessService: Exec (bidirectional stdio stream), ExecSync, SignalProcess.

use std::os::fd::{AsFd, OwnedFd};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use sandboxd_core::validate;
use sandboxd_core::wire::{ProcessExit, SignalTarget};
use sandboxd_proto::v1 as pb;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::pipe;
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::{ExecSlot, Shared};
use crate::convert;
use crate::error::ApiError;
use crate::manager::{ExecHandle, ExecStart, ExecStdio, Manager, Sandbox};

/// Default and largest ExecSync output kept per stream.
pub(super) const MAX_OUTPUT: u64 = 1 << 20;
/// After a process exits, how long its output may keep flowing (a daemonised
/// grandchild holding the pipe must not hold the call open forever).
const DRAIN_AFTER_EXIT: Duration = Duration::from_millis(500);
/// Read chunk size.
const CHUNK: usize = 32 * 1024;

/// The ProcessService implementation.
#[derive(Debug)]
pub struct Processes(pub Shared);

type ExecStream = Pin<Box<dyn Stream<Item = Result<pb::ExecResponse, Status>> + Send>>;

#[tonic::async_trait]
impl pb::process_service_server::ProcessService for Processes {
    type ExecStream = ExecStream;

    async fn exec(
        &self,
        req: Request<Streaming<pb::ExecRequest>>,
    ) -> Result<Response<ExecStream>, Status> {
        let who = self.0.caller(&req)?;
        let deadline = grpc_timeout(req.metadata()).map(|t| tokio::time::Instant::now() + t);
        let mut inbound = req.into_inner();
        let start = match inbound.message().await? {
            Some(pb::ExecRequest {
                msg: Some(pb::exec_request::Msg::Start(start)),
            }) => start,
            _ => {
                return Err(ApiError::Invalid(validate::ValidationError::one(
                    "msg",
                    "the first message of an Exec stream must be `start`",
                ))
                .into());
            }
        };
        if start.create.is_some() {
            return exec_in_new_sandbox(&self.0, who, deadline, inbound, start).await;
        }
        if start.remove {
            return Err(invalid(
                "start.remove",
                "only with start.create: an Exec stream destroys only the sandbox it created",
            )
            .into());
        }
        let manager = self.0.manager.clone();
        let sb = manager.get_for(&start.sandbox_id, &who)?;
        tracing::info!(audit = true, identity = %who.name, op = "Exec", sandbox = %sb.id);
        let (process, image_cwd) =
            super::image::exec_process(&self.0.images, &sb, start.process).await?;
        let process = validate::validate_process(process, "start.process", manager.policy())
            .map_err(ApiError::from)?;
        if let Some(size) = &start.size {
            check_size("start.size", size, process.process().tty)?;
        }
        let size = start.size.map(|s| (clamp_u16(s.rows), clamp_u16(s.cols)));
        let slot = self.0.execs.take(&sb.id, &who.name)?;
        let start = ExecStart {
            size,
            detached: false,
            image_cwd,
        };
        let handle = start_exec(&manager, &sb, process, start).await?;
        let (tx, rx) = mpsc::channel(64);
        let _ = tx
            .send(Ok(pb::ExecResponse {
                msg: Some(pb::exec_response::Msg::StartedPid(i64::from(handle.pid))),
                exec_id: handle.exec_id,
            }))
            .await;
        let shared = self.0.clone();
        tokio::spawn(async move {
            let bounds = Bounds { slot, deadline };
            if let Some(last) =
                run_exec_stream(manager, sb, handle, inbound, &tx, shared, bounds).await
            {
                let _ = tx.send(last).await;
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn exec_sync(
        &self,
        req: Request<pb::ExecSyncRequest>,
    ) -> Result<Response<pb::ExecSyncResponse>, Status> {
        let who = self.0.caller(&req)?;
        let req = req.into_inner();
        let manager = self.0.manager.clone();
        let sb = manager.get_for(&req.sandbox_id, &who)?;
        tracing::info!(audit = true, identity = %who.name, op = "ExecSync", sandbox = %sb.id);
        let (process, image_cwd) =
            super::image::exec_process(&self.0.images, &sb, req.process).await?;
        let process = without_terminal(process, manager.policy(), "ExecSync")?;
        let cap = match req.output_limit_bytes {
            0 => MAX_OUTPUT,
            n => n.min(MAX_OUTPUT),
        };
        let cap = usize::try_from(cap).unwrap_or(usize::MAX);
        let _slot = self.0.execs.take(&sb.id, &who.name)?;
        let start = ExecStart {
            image_cwd,
            ..ExecStart::default()
        };
        let handle = start_exec(&manager, &sb, process, start).await?;
        let (pid, exec_id) = (handle.pid, handle.exec_id);
        let ExecStdio::Pipes {
            stdin,
            stdout,
            stderr,
        } = handle.stdio
        else {
            return Err(ApiError::Internal("ExecSync got a terminal".into()).into());
        };
        // Without input, closing the pipe now is the EOF: no task, no
        // registration with the reactor.
        let stdin_task = if req.stdin.is_empty() {
            drop(stdin);
            None
        } else {
            Some(tokio::spawn(async move {
                if let Ok(mut w) = pipe::Sender::from_owned_fd(stdin) {
                    let _ = w.write_all(&req.stdin).await;
                }
            }))
        };
        let (out, err) = (Collected::default(), Collected::default());
        // Read in this task, not spawned ones: the output's EOF and the exit
        // wake the call itself, with no hand-off between runtime threads.
        let collecting = async {
            tokio::join!(
                collect(stdout, cap, out.clone()),
                collect(stderr, cap, err.clone())
            )
        };
        tokio::pin!(collecting);
        let mut collected = false;
        let mut guard = KillOnDrop {
            manager: manager.clone(),
            sandbox: sb.clone(),
            exec_id,
            armed: true,
        };
        let mut exited = handle.exited;
        // The exit, and whether the timeout killed it.
        let ended = async {
            if req.timeout_ms == 0 {
                return ((&mut exited).await, false);
            }
            match tokio::time::timeout(Duration::from_millis(req.timeout_ms), &mut exited).await {
                Ok(r) => (r, false),
                Err(_) => {
                    // Kill this exec's process tree only.
                    let _ = manager
                        .signal(&sb, SignalTarget::ExecTree(exec_id), libc::SIGKILL)
                        .await;
                    ((&mut exited).await, true)
                }
            }
        };
        tokio::pin!(ended);
        let (exit, timed_out) = loop {
            tokio::select! {
                exit = &mut ended => break exit,
                _ = &mut collecting, if !collected => collected = true,
            }
        };
        guard.armed = false;
        let exit = exit.map_err(|_| {
            ApiError::Unavailable("the supervisor exited while the process ran".into())
        })?;
        if let Some(task) = stdin_task {
            task.abort();
        }
        // A daemonised grandchild may hold a pipe open forever.
        if !collected {
            let _ = tokio::time::timeout(DRAIN_AFTER_EXIT, &mut collecting).await;
        }
        let (stdout, t1) = take(&out);
        let (stderr, t2) = take(&err);
        let record = manager.exec_finished(&sb, (exec_id, pid), exit, timed_out);
        Ok(Response::new(pb::ExecSyncResponse {
            stdout,
            stderr,
            exit: Some(convert::exit_to_pb(&record)),
            truncated: t1 || t2,
            pid: i64::from(pid),
            exec_id,
        }))
    }

    async fn signal_process(
        &self,
        req: Request<pb::SignalProcessRequest>,
    ) -> Result<Response<pb::SignalProcessResponse>, Status> {
        let who = self.0.caller(&req)?;
        let req = req.into_inner();
        let sb = self.0.manager.get_for(&req.sandbox_id, &who)?;
        tracing::info!(audit = true, identity = %who.name, op = "SignalProcess", sandbox = %sb.id, pid = req.pid, signal = req.signal);
        let pid = i32::try_from(req.pid).map_err(|_| {
            ApiError::Invalid(validate::ValidationError::one(
                "pid",
                format!("{} is not a pid", req.pid),
            ))
        })?;
        self.0
            .manager
            .signal(&sb, SignalTarget::Pid(pid), req.signal)
            .await?;
        Ok(Response::new(pb::SignalProcessResponse {}))
    }
}

/// INVALID_ARGUMENT naming `field`.
fn invalid(field: &str, why: &str) -> ApiError {
    ApiError::Invalid(validate::ValidationError::one(field, why))
}

/// An Exec stream whose `start.create` asks for a new sandbox: everything
/// CreateSandbox and Exec check is checked here, before anything is
/// created (the process against the policy, the terminal size, the
/// caller's exec cap, then the create's own admission); the create, the
/// exec and the removal run in [`run_in_new_sandbox`].
async fn exec_in_new_sandbox(
    shared: &Shared,
    who: crate::auth::Caller,
    deadline: Option<tokio::time::Instant>,
    inbound: Streaming<pb::ExecRequest>,
    start: pb::ExecStart,
) -> Result<Response<ExecStream>, Status> {
    let create = start.create.unwrap_or_default();
    if !start.sandbox_id.is_empty() {
        return Err(invalid(
            "start.sandbox_id",
            "must be empty with start.create (the stream runs in the sandbox it creates)",
        )
        .into());
    }
    if !create.request_id.is_empty() {
        return Err(invalid(
            "start.create.request_id",
            "must be empty: a retried run would attach to the first run's sandbox",
        )
        .into());
    }
    // The image's defaults (env, cwd) are applied once the sandbox exists;
    // they only fill what is unset, so what is wrong here stays wrong.
    let raw = convert::process_from_pb(start.process.clone());
    let checked = validate::validate_process(raw, "start.process", shared.manager.policy())
        .map_err(ApiError::from)?;
    if let Some(size) = &start.size {
        check_size("start.size", size, checked.process().tty)?;
    }
    shared.execs.admits(&who.name)?;
    let admitted = shared.admit_create(&who, create).await?;
    let (tx, rx) = mpsc::channel(64);
    let run = NewSandboxRun {
        shared: shared.clone(),
        who,
        process: start.process,
        size: start.size.map(|s| (clamp_u16(s.rows), clamp_u16(s.cols))),
        remove: start.remove,
        deadline,
    };
    // Its own task, which a client that leaves does not cancel: the
    // create finishes (or rolls back) and the removal still happens.
    tokio::spawn(run_in_new_sandbox(run, admitted, inbound, tx));
    Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
}

/// What an Exec stream with `start.create` runs once admitted.
struct NewSandboxRun {
    shared: Shared,
    who: crate::auth::Caller,
    process: Option<pb::ProcessSpec>,
    size: Option<(u16, u16)>,
    remove: bool,
    deadline: Option<tokio::time::Instant>,
}

/// Creates the sandbox, answers `created`, runs the exec as a plain Exec
/// stream would, destroys the sandbox if `remove` (on every path once it
/// exists, the client's leaving included) and sends the last message.
async fn run_in_new_sandbox(
    run: NewSandboxRun,
    admitted: super::sandbox::AdmittedCreate,
    inbound: Streaming<pb::ExecRequest>,
    tx: Tx,
) {
    let manager = run.shared.manager.clone();
    debug_assert!(admitted.request_id().is_empty());
    let (record, verification) = match admitted.run(manager.clone(), run.who.clone()).await {
        Ok(created) => created,
        Err(e) => {
            let _ = tx.send(Err(e.into())).await;
            return;
        }
    };
    let id = record.id.clone();
    let created = pb::CreateSandboxResponse {
        sandbox: Some(convert::record_to_pb(&record)),
        verification: verification.as_ref().map(convert::verification_to_pb),
    };
    let last = if tx
        .send(Ok(msg(pb::exec_response::Msg::Created(created))))
        .await
        .is_err()
    {
        // The client left during the create: nobody attaches.
        None
    } else {
        exec_in_created(&run, &id, inbound, &tx).await
    };
    if run.remove {
        tracing::info!(audit = true, identity = %run.who.name, op = "DestroySandbox", sandbox = %id, reason = "Exec start.remove");
        let started = std::time::Instant::now();
        let result = manager.destroy(&id).await;
        manager
            .metrics
            .observe(crate::metrics::Operation::Destroy, started, &result);
        if let Err(e) = result {
            tracing::warn!(sandbox = %id, error = %e, "removing the sandbox of an Exec stream");
            let why = format!("could not remove sandbox {id}: {e}");
            let _ = tx
                .send(Ok(msg(pb::exec_response::Msg::RemoveFailed(why))))
                .await;
        }
    }
    if let Some(last) = last {
        let _ = tx.send(last).await;
    }
}

/// The exec part of [`run_in_new_sandbox`], checked as Exec checks it;
/// returns the stream's last message (`None` if already ended).
async fn exec_in_created(
    run: &NewSandboxRun,
    id: &str,
    inbound: Streaming<pb::ExecRequest>,
    tx: &Tx,
) -> Option<Result<pb::ExecResponse, Status>> {
    let manager = run.shared.manager.clone();
    let started = async {
        let sb = manager.get_for(id, &run.who)?;
        tracing::info!(audit = true, identity = %run.who.name, op = "Exec", sandbox = %sb.id);
        let (process, image_cwd) =
            super::image::exec_process(&run.shared.images, &sb, run.process.clone()).await?;
        let process = validate::validate_process(process, "start.process", manager.policy())?;
        let slot = run.shared.execs.take(&sb.id, &run.who.name)?;
        let start = ExecStart {
            size: run.size,
            detached: false,
            image_cwd,
        };
        let handle = start_exec(&manager, &sb, process, start).await?;
        Ok::<_, ApiError>((sb, slot, handle))
    }
    .await;
    let (sb, slot, handle) = match started {
        Ok(s) => s,
        Err(e) => return Some(Err(e.into())),
    };
    let _ = tx
        .send(Ok(pb::ExecResponse {
            msg: Some(pb::exec_response::Msg::StartedPid(i64::from(handle.pid))),
            exec_id: handle.exec_id,
        }))
        .await;
    let bounds = Bounds {
        slot,
        deadline: run.deadline,
    };
    run_exec_stream(manager, sb, handle, inbound, tx, run.shared.clone(), bounds).await
}

/// Starts an exec in its own task: a client that goes away while the
/// process is being started drops this call, and the process, once started,
/// must not be left running with nobody attached. The task kills its tree
/// when nobody takes the handle.
pub(super) async fn start_exec(
    manager: &Arc<Manager>,
    sb: &Arc<Sandbox>,
    process: validate::ValidatedProcess,
    start: ExecStart,
) -> Result<ExecHandle, ApiError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let (manager, sb) = (manager.clone(), sb.clone());
    tokio::spawn(async move {
        let started = manager.exec(&sb, process, start).await;
        if let Err(Ok(handle)) = tx.send(started) {
            let _ = manager
                .signal(&sb, SignalTarget::ExecTree(handle.exec_id), libc::SIGKILL)
                .await;
        }
    });
    rx.await
        .map_err(|_| ApiError::Internal("the exec task ended without an answer".into()))?
}

fn clamp_u16(v: u32) -> u16 {
    u16::try_from(v).unwrap_or(u16::MAX)
}

fn msg(m: pb::exec_response::Msg) -> pb::ExecResponse {
    pb::ExecResponse {
        msg: Some(m),
        exec_id: 0,
    }
}

/// Output kept from one stream: the bytes (up to the cap) and whether more
/// was dropped. Shared so a collector cut short still hands over what it
/// read.
type Collected = Arc<std::sync::Mutex<(Vec<u8>, bool)>>;

/// Reads a pipe to EOF into `into`, keeping at most `cap` bytes.
async fn collect(fd: OwnedFd, cap: usize, into: Collected) {
    let Ok(mut r) = pipe::Receiver::from_owned_fd(fd) else {
        return;
    };
    // Not zeroed: read_buf fills the spare capacity (most execs write
    // little or nothing).
    let mut buf = Vec::with_capacity(CHUNK);
    loop {
        buf.clear();
        match r.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                let mut kept = into
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                let room = cap.saturating_sub(kept.0.len());
                kept.0.extend_from_slice(&buf[..n.min(room)]);
                kept.1 |= n > room;
            }
        }
    }
}

/// Waits for the collectors until `deadline` (a daemonised grandchild may
/// hold a pipe open forever), then takes what they read.
async fn drain(tasks: Vec<tokio::task::JoinHandle<()>>, deadline: tokio::time::Instant) {
    for task in tasks {
        let abort = task.abort_handle();
        if tokio::time::timeout_at(deadline, task).await.is_err() {
            abort.abort();
        }
    }
}

fn take(c: &Collected) -> (Vec<u8>, bool) {
    std::mem::take(&mut *c.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
}

/// Kills an exec's process tree if the call is abandoned (client cancelled
/// or deadline passed) before the process ended.
struct KillOnDrop {
    manager: Arc<Manager>,
    sandbox: Arc<Sandbox>,
    exec_id: u64,
    armed: bool,
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if self.armed {
            let (manager, sandbox, exec_id) =
                (self.manager.clone(), self.sandbox.clone(), self.exec_id);
            tokio::spawn(async move {
                let _ = manager
                    .signal(&sandbox, SignalTarget::ExecTree(exec_id), libc::SIGKILL)
                    .await;
            });
        }
    }
}

type Tx = mpsc::Sender<Result<pb::ExecResponse, Status>>;

/// What bounds one Exec stream: its slot under the exec caps (held until the
/// stream's task ends) and the call's deadline.
struct Bounds {
    slot: ExecSlot,
    deadline: Option<tokio::time::Instant>,
}

/// Pumps one Exec stream: output out, stdin/resize/signal in. Returns the
/// last message for the caller to send (`exited`, or why the call ended),
/// or `None` if the stream already ended (the daemon is shutting down).
async fn run_exec_stream(
    manager: Arc<Manager>,
    sb: Arc<Sandbox>,
    handle: ExecHandle,
    mut inbound: Streaming<pb::ExecRequest>,
    tx: &Tx,
    shared: Shared,
    bounds: Bounds,
) -> Option<Result<pb::ExecResponse, Status>> {
    let Bounds {
        slot: _slot,
        deadline,
    } = bounds;
    let ExecHandle {
        pid,
        exec_id,
        stdio,
        exited,
    } = handle;
    let (outputs, mut input): (Vec<tokio::task::JoinHandle<()>>, Input) = match stdio {
        ExecStdio::Pipes {
            stdin,
            stdout,
            stderr,
        } => {
            let o = tokio::spawn(pump_pipe(
                stdout,
                tx.clone(),
                pb::exec_response::Msg::Stdout,
            ));
            let e = tokio::spawn(pump_pipe(
                stderr,
                tx.clone(),
                pb::exec_response::Msg::Stderr,
            ));
            (
                vec![o, e],
                Input::Pipe(pipe::Sender::from_owned_fd(stdin).ok()),
            )
        }
        // Not started through this stream (start_exec is called with
        // detached = false above); nothing to pump.
        ExecStdio::Detached => (Vec::new(), Input::Pipe(None)),
        ExecStdio::Pty { master } => match Pty::new(master) {
            Ok(pty) => {
                let pty = Arc::new(pty);
                let o = tokio::spawn(pump_pty(pty.clone(), tx.clone()));
                (vec![o], Input::Pty(pty))
            }
            Err(e) => {
                let _ = manager
                    .signal(&sb, SignalTarget::ExecTree(exec_id), libc::SIGKILL)
                    .await;
                return Some(Err(ApiError::Internal(format!("pty: {e}")).into()));
            }
        },
    };
    let mut exited = exited;
    let mut inbound_open = true;
    let mut client_here = true;
    let mut past_deadline = false;
    let mut refused: Option<Status> = None;
    let mut stdin_closed = false;
    let deadline_passed = async {
        match deadline {
            Some(at) => tokio::time::sleep_until(at).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(deadline_passed);
    let kill = || async {
        let _ = manager
            .signal(&sb, SignalTarget::ExecTree(exec_id), libc::SIGKILL)
            .await;
    };
    let exit = loop {
        tokio::select! {
            r = &mut exited => break r.ok(),
            m = inbound.message(), if inbound_open => match m {
                Ok(Some(req)) => {
                    let tty = matches!(input, Input::Pty(_));
                    match check_input(&req, tty, stdin_closed) {
                        Ok(()) => {
                            stdin_closed |= matches!(req.msg, Some(pb::exec_request::Msg::CloseStdin(true)));
                            handle_input(&manager, &sb, pid, &mut input, req).await;
                        }
                        // A client that sends what it cannot mean has lost
                        // track of its process: the call ends with the
                        // reason, and, as for a cancelled call, the process
                        // tree is killed.
                        Err(e) => {
                            refused = Some(e.into());
                            inbound_open = false;
                            kill().await;
                        }
                    }
                }
                Ok(None) => inbound_open = false,
                Err(_) => {
                    // The client went away: end its process tree rather than
                    // leave it running with nobody to read its output.
                    inbound_open = false;
                    kill().await;
                }
            },
            // The response stream was dropped: the client cancelled the call
            // (RST_STREAM, its deadline passed, it disconnected), even after
            // half-closing its own side.
            () = tx.closed(), if client_here => {
                client_here = false;
                inbound_open = false;
                kill().await;
            }
            // The client's deadline (grpc-timeout) passed: tonic bounds only
            // the call's start, the stream is ours to end.
            () = &mut deadline_passed, if !past_deadline => {
                past_deadline = true;
                inbound_open = false;
                kill().await;
            }
            () = shared.shutting_down() => {
                let _ = tx.send(Err(ApiError::Unavailable("the daemon is shutting down".into()).into())).await;
                return None;
            }
        }
    };
    drop(input);
    drain(outputs, tokio::time::Instant::now() + DRAIN_AFTER_EXIT).await;
    let record = manager.exec_finished(
        &sb,
        (exec_id, pid),
        exit.unwrap_or((ProcessExit::Signaled(libc::SIGKILL), false)),
        false,
    );
    let mut exit_pb = convert::exit_to_pb(&record);
    if exit.is_none() {
        exit_pb.reason = pb::ExitReason::Lost as i32;
        exit_pb.exit_code = 255;
        exit_pb.message = "the supervisor exited while the process ran".into();
    }
    let last = if let Some(status) = refused {
        Err(status)
    } else if past_deadline {
        Err(Status::deadline_exceeded(
            "the call's deadline passed; the process was killed",
        ))
    } else {
        Ok(msg(pb::exec_response::Msg::Exited(exit_pb)))
    };
    Some(last)
}

/// The call's `grpc-timeout`, if it sent a valid one (gRPC over HTTP/2: at
/// most 8 digits and a unit).
/// A client's process for a call that gives it no terminal (ExecSync, a
/// detached StartExec): validated, and refused naming `process.tty` if it
/// asks for one. `call` says which call, for the message.
pub(super) fn without_terminal(
    process: sandboxd_core::spec::ProcessSpec,
    policy: &validate::Policy,
    call: &str,
) -> Result<validate::ValidatedProcess, ApiError> {
    let process = validate::validate_process(process, "process", policy)?;
    if process.process().tty {
        return Err(ApiError::Invalid(validate::ValidationError::one(
            "process.tty",
            format!("{call} has no terminal (no client holds one); use Exec"),
        )));
    }
    Ok(process)
}

fn grpc_timeout(metadata: &tonic::metadata::MetadataMap) -> Option<Duration> {
    crate::deadline::parse_timeout(metadata.get("grpc-timeout")?.to_str().ok()?)
}

enum Input {
    Pipe(Option<pipe::Sender>),
    Pty(Arc<Pty>),
}

/// A terminal size (`start.size` or `resize`): only for a process with a
/// terminal, and each side 1-65535.
fn check_size(field: &str, size: &pb::TerminalSize, tty: bool) -> Result<(), ApiError> {
    let why = if !tty {
        "the process has no terminal (start.process.tty is false)".to_owned()
    } else {
        let fits = |v: u32| (1..=u32::from(u16::MAX)).contains(&v);
        if fits(size.rows) && fits(size.cols) {
            return Ok(());
        }
        format!(
            "rows and cols must be 1-65535, got rows {} cols {}",
            size.rows, size.cols
        )
    };
    Err(ApiError::Invalid(validate::ValidationError::one(
        field, why,
    )))
}

/// Whether an Exec stream message after `start` is one the call can act on:
/// INVALID_ARGUMENT naming what is wrong otherwise.
fn check_input(req: &pb::ExecRequest, tty: bool, stdin_closed: bool) -> Result<(), ApiError> {
    use pb::exec_request::Msg;
    let bad = |field: &str, why: String| {
        Err(ApiError::Invalid(validate::ValidationError::one(
            field, why,
        )))
    };
    match &req.msg {
        Some(Msg::Start(_)) => bad(
            "start",
            "a second `start`: an Exec stream runs the one process its first message started"
                .into(),
        ),
        Some(Msg::Stdin(_)) if stdin_closed && !tty => bad(
            "stdin",
            "stdin after close_stdin: the process's stdin is closed".into(),
        ),
        Some(Msg::Stdin(_)) | Some(Msg::CloseStdin(true)) => Ok(()),
        Some(Msg::CloseStdin(false)) => bad(
            "close_stdin",
            "false is not a request; send true to close the process's stdin".into(),
        ),
        Some(Msg::Resize(size)) => check_size("resize", size, tty),
        Some(Msg::Signal(sig)) => u32::try_from(*sig)
            .map_err(|_| format!("{sig} is not a signal number (1-64)"))
            .and_then(validate::check_signal)
            .or_else(|why| bad("signal", why)),
        None => bad(
            "msg",
            "empty ExecRequest: set one of stdin, close_stdin, resize or signal".into(),
        ),
    }
}

async fn handle_input(
    manager: &Manager,
    sb: &Arc<Sandbox>,
    pid: i32,
    input: &mut Input,
    req: pb::ExecRequest,
) {
    use pb::exec_request::Msg;
    match req.msg {
        Some(Msg::Stdin(bytes)) => match input {
            Input::Pipe(Some(w)) => {
                if w.write_all(&bytes).await.is_err() {
                    *input = Input::Pipe(None);
                }
            }
            Input::Pipe(None) => {}
            Input::Pty(pty) => {
                let _ = pty.write_all(&bytes).await;
            }
        },
        Some(Msg::CloseStdin(true)) => match input {
            Input::Pipe(w) => *w = None,
            // A terminal has no EOF of its own; send ^D as a terminal would.
            Input::Pty(pty) => {
                let _ = pty.write_all(&[4]).await;
            }
        },
        Some(Msg::Resize(size)) => {
            if let Input::Pty(pty) = input {
                let _ = sandboxd_supervisor::sys::set_winsize(
                    pty.master.as_fd(),
                    clamp_u16(size.rows),
                    clamp_u16(size.cols),
                );
            }
        }
        Some(Msg::Signal(sig)) => {
            if let Err(e) = manager.signal(sb, SignalTarget::Pid(pid), sig).await {
                tracing::debug!(pid, sig, error = %e, "exec signal not delivered");
            }
        }
        Some(Msg::Start(_)) | Some(Msg::CloseStdin(false)) | None => {}
    }
}

async fn pump_pipe(fd: OwnedFd, tx: Tx, wrap: fn(Vec<u8>) -> pb::exec_response::Msg) {
    let Ok(mut r) = pipe::Receiver::from_owned_fd(fd) else {
        return;
    };
    let mut buf = vec![0u8; CHUNK];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if tx.send(Ok(msg(wrap(buf[..n].to_vec())))).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// A pty master. Terminal I/O goes through tokio's blocking-pool file
/// wrapper: a pty is not a pipe or socket the reactor can watch safely, and
/// interactive sessions are few.
struct Pty {
    /// The master, kept for resizes.
    master: OwnedFd,
    reader: tokio::sync::Mutex<tokio::fs::File>,
    writer: tokio::sync::Mutex<tokio::fs::File>,
}

impl Pty {
    fn new(master: OwnedFd) -> std::io::Result<Self> {
        let reader = tokio::fs::File::from_std(std::fs::File::from(master.try_clone()?));
        let writer = tokio::fs::File::from_std(std::fs::File::from(master.try_clone()?));
        Ok(Self {
            master,
            reader: tokio::sync::Mutex::new(reader),
            writer: tokio::sync::Mutex::new(writer),
        })
    }

    async fn read(&self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.reader.lock().await.read(buf).await
    }

    async fn write_all(&self, bytes: &[u8]) -> std::io::Result<()> {
        let mut w = self.writer.lock().await;
        w.write_all(bytes).await?;
        w.flush().await
    }
}

async fn pump_pty(pty: Arc<Pty>, tx: Tx) {
    let mut buf = vec![0u8; CHUNK];
    loop {
        // EIO means every holder of the terminal side is gone: EOF.
        match pty.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if tx
                    .send(Ok(msg(pb::exec_response::Msg::Stdout(buf[..n].to_vec()))))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn grpc_timeout_comes_from_the_metadata() {
        // The text's rules are deadline::parse_timeout's (tested there);
        // this is only the plumbing from the header.
        for (text, want) in [("1500m", Some(Duration::from_millis(1500))), ("1.5S", None)] {
            let mut m = tonic::metadata::MetadataMap::new();
            m.insert("grpc-timeout", text.parse().unwrap());
            assert_eq!(grpc_timeout(&m), want, "{text:?}");
        }
        assert_eq!(grpc_timeout(&tonic::metadata::MetadataMap::new()), None);
    }

    #[test]
    fn exec_stream_messages_are_checked() {
        use pb::exec_request::Msg;
        let size = |rows, cols| Msg::Resize(pb::TerminalSize { rows, cols });
        // (message, tty, stdin closed, Ok or the text the error must hold)
        type Case = (Option<Msg>, bool, bool, Result<(), &'static str>);
        let cases: Vec<Case> = vec![
            (Some(Msg::Stdin(b"x".to_vec())), false, false, Ok(())),
            (
                Some(Msg::Stdin(b"x".to_vec())),
                false,
                true,
                Err("stdin after close_stdin"),
            ),
            (Some(Msg::Stdin(b"x".to_vec())), true, true, Ok(())),
            (Some(Msg::CloseStdin(true)), false, true, Ok(())),
            (
                Some(Msg::CloseStdin(false)),
                false,
                false,
                Err("close_stdin: false"),
            ),
            (Some(Msg::Signal(15)), false, false, Ok(())),
            (Some(Msg::Signal(64)), true, false, Ok(())),
            (
                Some(Msg::Signal(999)),
                false,
                false,
                Err("signal: 999 is not a signal number"),
            ),
            (
                Some(Msg::Signal(0)),
                false,
                false,
                Err("signal: 0 is not a signal number"),
            ),
            (
                Some(Msg::Signal(-9)),
                false,
                false,
                Err("signal: -9 is not a signal number"),
            ),
            (Some(size(40, 120)), true, false, Ok(())),
            (
                Some(size(40, 120)),
                false,
                false,
                Err("resize: the process has no terminal"),
            ),
            (Some(size(0, 80)), true, false, Err("rows 0 cols 80")),
            (
                Some(size(24, 70_000)),
                true,
                false,
                Err("rows 24 cols 70000"),
            ),
            (
                Some(Msg::Start(pb::ExecStart::default())),
                false,
                false,
                Err("a second `start`"),
            ),
            (None, false, false, Err("msg: empty ExecRequest")),
        ];
        let sizes = [
            (24, 80, true, Ok(())),
            (65535, 1, true, Ok(())),
            (
                24,
                80,
                false,
                Err("start.size: the process has no terminal"),
            ),
            (0, 0, true, Err("rows 0 cols 0")),
            (65536, 80, true, Err("rows 65536 cols 80")),
        ];
        for (rows, cols, tty, want) in sizes {
            let got = check_size("start.size", &pb::TerminalSize { rows, cols }, tty);
            match (want, got) {
                (Ok(()), Ok(())) => {}
                (Err(text), Err(e)) => assert!(e.to_string().contains(text), "{e} lacks {text:?}"),
                (want, got) => panic!("{rows}x{cols} tty={tty}: want {want:?}, got {got:?}"),
            }
        }
        for (msg, tty, closed, want) in cases {
            let got = check_input(&pb::ExecRequest { msg: msg.clone() }, tty, closed);
            match (want, got) {
                (Ok(()), Ok(())) => {}
                (Err(text), Err(e)) => {
                    assert!(matches!(e, ApiError::Invalid(_)), "{msg:?}: {e:?}");
                    assert!(e.to_string().contains(text), "{msg:?}: {e} lacks {text:?}");
                }
                (want, got) => {
                    panic!("{msg:?} tty={tty} closed={closed}: want {want:?}, got {got:?}")
                }
            }
        }
    }
}
