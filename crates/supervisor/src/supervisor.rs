//! The supervisor's event loop: set the sandbox up, start its processes,
//! reap them, answer the daemon, tear down when the sandbox ends.

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::signal::Signal;
use nix::sys::wait::WaitStatus;
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use sandboxd_core::logs::LogConfig;
use sandboxd_core::spec::{Mode, ProcessSpec};
use sandboxd_core::verify::{ProbeConfig, ProbeOutput, Verification};
use sandboxd_core::wire::{
    CreateOptions, CreateVerify, Event, ProcessExit, Request, RunningExec, SignalTarget,
};

use crate::channel::{Channel, RecvOutcome};
use crate::launch::{self, ExecPlan, Stdio};
use crate::logs::{Capture, MainOutput};
use crate::step::Step;
use crate::sys;

/// A failed step, as reported to the daemon.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{step}: {message}")]
pub struct StepError {
    /// The step that failed.
    pub step: Step,
    /// Why, with the path/value involved.
    pub message: String,
}

impl StepError {
    /// Builds a step error.
    pub fn new(step: Step, message: impl std::fmt::Display) -> Self {
        Self {
            step,
            message: message.to_string(),
        }
    }
}

/// What a backend does to build, enter and remove its sandbox.
pub trait Isolation {
    /// In the supervisor, before any process starts (mounts, jail, ...). On
    /// error it must have undone whatever it did.
    fn setup(&mut self) -> Result<(), StepError>;
    /// In each forked child, before privileges are dropped: enter the
    /// sandbox (chroot, jail_attach, setns) and chdir to its root. The
    /// child goes on to exec: a backend with a pid namespace has its
    /// children born in it (Linux: the supervisor's `pid_for_children`,
    /// set once in `setup`), so none forks again here.
    fn enter(&self) -> Result<(), StepError>;

    /// Forks the child that will become a sandbox process. A backend may
    /// create it somewhere cheaper to start from (directly in the
    /// sandbox's cgroup); the default is fork(2).
    ///
    /// # Safety
    ///
    /// As [`sys::fork_unchecked`]: the calling process must be
    /// single-threaded (the supervisor helper is).
    unsafe fn fork(&self) -> Result<sys::Fork, nix::Error> {
        // SAFETY: this fn's contract is fork_unchecked's.
        unsafe { sys::fork_unchecked() }
    }

    /// Before `setup`: the write ends that become the main process's stdout
    /// and stderr (the log capture). A backend that starts the main process
    /// itself during `setup` (see [`Isolation::main_pid`]) must give them
    /// to it; the supervisor closes its own copies after `setup`. Default:
    /// nothing (the supervisor installs them when it starts the main
    /// process).
    fn main_output(&mut self, _output: &MainOutput) {}

    /// The main process, if the backend started it itself during `setup`
    /// (pid 1 becoming the init in INIT mode); the supervisor then does not
    /// start one.
    fn main_pid(&self) -> Option<Pid> {
        None
    }

    /// The sandbox's first process, if the backend has one (Linux: pid 1
    /// of its namespaces), reported so a child sandbox can join them.
    fn init_pid(&self) -> Option<Pid> {
        None
    }

    /// Sends `sig` to every process of the sandbox, if the backend knows
    /// them better than the supervisor's process groups and children (a pid
    /// namespace). Returns false to let the supervisor do it.
    fn signal_all(&self, _sig: Signal) -> bool {
        false
    }

    /// Whether any sandbox process is left, if the backend can tell (the
    /// supervisor otherwise counts its own children).
    fn has_processes(&self) -> Option<bool> {
        None
    }

    /// Once the supervisor has SIGKILLed everything and reaped every child
    /// of its own: makes sure no other process of the sandbox is left
    /// (orphans another init adopted), within a bounded wait, and says
    /// whether it can tell that none is. False (the default) where the
    /// backend cannot tell before its teardown: a destroy then waits for
    /// the teardown.
    fn none_left(&self) -> bool {
        false
    }

    /// Whether a terminal allocated from `/dev/ptmx` inside the sandbox is
    /// a node of the sandbox's own `/dev/pts` (its own devpts instance), so
    /// a tty exec allocates it there; otherwise the supervisor allocates it
    /// on the host, as before.
    fn pty_in_sandbox(&self) -> bool {
        false
    }

    /// How many processes the kernel's OOM killer has killed in the
    /// sandbox (its memory cgroup's counter); 0 where unknown.
    fn oom_kills(&self) -> u64 {
        0
    }
    /// In the supervisor, after every process is gone: undo `setup`.
    /// Idempotent.
    fn teardown(&mut self) -> Result<(), StepError>;
}

pub use sandboxd_core::backend::{Rlimit, RlimitKind};

/// Backend-independent part of the launch configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommonConfig {
    /// Sandbox id (for messages).
    pub sandbox_id: String,
    /// Lifecycle mode.
    pub mode: Mode,
    /// Main process (None for IDLE).
    pub main: Option<ProcessSpec>,
    /// Limits applied to every process.
    pub rlimits: Vec<Rlimit>,
    /// Capability numbers a uid-0 process keeps in its bounding set (Linux);
    /// every other capability is dropped before exec.
    pub capabilities: Vec<u32>,
    /// Install the default seccomp filter (Linux) right before exec.
    #[serde(default)]
    pub seccomp: bool,
    /// Why no process of this sandbox may run as uid 0 (a read-write bind
    /// of a host directory with no user namespace: root could leave
    /// setuid-root files there for host users); `None` where it may.
    #[serde(default)]
    pub root_refused: Option<String>,
    /// Where the sandbox's exit is persisted for a daemon that was away.
    pub exit_file: PathBuf,
    /// Capture the main process's stdout and stderr into the log files in
    /// the sandbox directory, with this cap and rotation; `None`: no main
    /// process (IDLE), stdio on /dev/null.
    #[serde(default)]
    pub logs: Option<LogConfig>,
}

impl CommonConfig {
    /// The log capture for a validated spec: none in IDLE mode.
    pub fn logs_for(spec: &sandboxd_core::spec::SandboxSpec) -> Option<LogConfig> {
        (spec.mode != Mode::Idle).then(|| {
            let d = LogConfig::default();
            LogConfig {
                max_file_bytes: match spec.logs.max_file_bytes {
                    0 => d.max_file_bytes,
                    n => n,
                },
                max_files: match spec.logs.max_files {
                    0 => d.max_files,
                    n => n,
                },
            }
        })
    }
}

/// What the daemon sends as the first frame: common part plus the
/// backend's own isolation configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LaunchConfig<T> {
    /// Backend-independent part.
    pub common: CommonConfig,
    /// The backend's part.
    pub isolation: T,
}

/// The content of the exit file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitFile {
    /// How the sandbox ended.
    pub exit: ProcessExit,
    /// When, in ms since the epoch.
    pub finished_at_ms: i64,
}

/// The control socket's file name, beside the exit file.
pub const CONTROL_SOCKET: &str = "supervisor.sock";

/// How long the final SIGKILL sweep waits for processes to disappear.
const KILL_SWEEP: Duration = Duration::from_secs(10);

/// How long an ended sandbox's supervisor waits for the daemon to say it
/// has the exit in its journal (`ExitRecorded`, sent after a synced
/// append) before it writes the exit file anyway.
const EXIT_RECORDED_WAIT: Duration = Duration::from_millis(100);

struct Supervisor<I: Isolation> {
    chan: Channel,
    sigchld: OwnedFd,
    config: CommonConfig,
    isolation: I,
    main: Option<Pid>,
    main_exit: Option<ProcessExit>,
    /// Exec processes by pid → exec id. Each is a process-group leader.
    execs: HashMap<Pid, u64>,
    /// What each running exec is, by exec id, for a restarted daemon.
    running_execs: HashMap<u64, RunningExec>,
    /// The OOM-kill counter when each exec started.
    oom_at_exec: HashMap<Pid, u64>,
    /// The OOM-kill counter once the sandbox was set up.
    oom_at_start: u64,
    /// Set by Stop: the signal used.
    stopping: Option<i32>,
    /// Set at the end: no process of the sandbox is left (`Isolation::none_left`).
    none_left: bool,
    /// Where a restarted daemon reconnects (`<sandbox dir>/supervisor.sock`),
    /// bound once the daemon is gone ([`Supervisor::listen_for_a_daemon`]).
    control: Control,
    null: OwnedFd,
    /// The main process's output capture (PROCESS and INIT).
    capture: Option<Capture>,
}

/// The control socket a restarted daemon reattaches through.
#[derive(Debug)]
enum Control {
    /// Not bound: the daemon that started this supervisor is attached.
    Unbound,
    /// Bound, once that daemon was gone.
    Listening(std::os::unix::net::UnixListener),
    /// Binding failed (said on stderr): the sandbox runs on, but no daemon
    /// can reattach to it.
    Failed,
}

/// How much longer than its own budget a probe may take before the
/// supervisor kills it.
const PROBE_SLACK: Duration = Duration::from_secs(5);

/// Runs the supervisor on `sock` until the sandbox ends or the daemon asks
/// for shutdown. Returns the helper's process exit code. It forks: it
/// refuses to start in a process that has more than one thread (where the
/// OS can tell, Linux and FreeBSD), and it never starts one.
pub fn supervise<I: Isolation>(
    mut chan: Channel,
    config: CommonConfig,
    mut isolation: I,
    options: CreateOptions,
) -> i32 {
    let fail = |chan: &mut Channel, e: StepError| {
        chan.send(&Event::SetupFailed {
            step: e.step.name().to_owned(),
            message: e.message,
        });
        1
    };
    let prepared = (|| {
        // Every fork below relies on it (sys::fork_unchecked): refuse to
        // run in a process with other threads, where the OS can tell.
        if let Some(n) = sys::thread_count().filter(|n| *n != 1) {
            return Err(StepError::new(
                Step::CheckSingleThreaded,
                format!("the supervisor must run alone in its process, which has {n} threads"),
            ));
        }
        sys::ignore_sigpipe().map_err(|e| StepError::new(Step::IgnoreSigpipe, e))?;
        sys::become_subreaper().map_err(|e| StepError::new(Step::BecomeChildSubreaper, e))?;
        let sigchld = sys::install_signal_pipe()
            .map_err(|e| StepError::new(Step::InstallSignalHandlers, e))?;
        let null = sys::open_dev_null().map_err(|e| StepError::new(Step::OpenDevNull, e))?;
        let main = config.main.as_ref().map(ExecPlan::for_main).transpose()?;
        // Compiled once here: every payload is a fork of this process and
        // only installs it (a failure is reported by the first install).
        #[cfg(target_os = "linux")]
        if config.seccomp {
            crate::seccomp::prepare_default();
        }
        Ok::<_, StepError>((sigchld, null, main))
    })();
    let (sigchld, null, main_plan) = match prepared {
        Ok(p) => p,
        Err(e) => return fail(&mut chan, e),
    };
    crate::timing::mark("supervisor start");
    // Before setup: a backend that starts the main process during setup
    // (Linux INIT) hands it the write ends.
    let sandbox_dir = config.exit_file.parent().map(std::path::Path::to_path_buf);
    let (capture, mut main_output) = match (config.logs, sandbox_dir) {
        (Some(logs), Some(dir)) => match Capture::new(&dir, logs, &config.sandbox_id) {
            Ok((c, o)) => (Some(c), Some(o)),
            Err(e) => return fail(&mut chan, e),
        },
        _ => (None, None),
    };
    if let Some(output) = &main_output {
        isolation.main_output(output);
    }
    if let Err(e) = isolation.setup() {
        return fail(&mut chan, e);
    }
    crate::timing::mark("isolation setup");
    let oom_at_start = isolation.oom_kills();
    let mut sup = Supervisor {
        chan,
        sigchld,
        config,
        isolation,
        main: None,
        main_exit: None,
        none_left: false,
        execs: HashMap::new(),
        running_execs: HashMap::new(),
        oom_at_exec: HashMap::new(),
        oom_at_start,
        stopping: None,
        control: Control::Unbound,
        null,
        capture,
    };
    // Verify before anything of the client's runs: a REQUIRED row observed
    // VIOLATED fails the setup and the main process never starts.
    let mut verification = None;
    if let Some(verify) = options.verify {
        if sup.isolation.main_pid().is_some() {
            return sup.abort_setup(StepError::new(
                Step::Verify,
                "this backend starts the main process during setup (Linux INIT mode: pid 1 becomes the init), so it cannot be verified before it starts; use VerifySandbox on the running sandbox",
            ));
        }
        match sup.verify_at_create(verify) {
            Ok(v) => verification = Some(Box::new(v)),
            Err(e) => return sup.abort_setup(e),
        }
    }
    if let Some(pid) = sup.isolation.main_pid() {
        sup.main = Some(pid);
    } else if let Some(plan) = main_plan {
        let null = match sup.null.try_clone() {
            Ok(n) => n,
            Err(e) => return sup.abort_setup(StepError::new(Step::DuplicateDevNull, e)),
        };
        let stdio = match main_output.take() {
            Some(output) => Stdio::Main { null, output },
            None => Stdio::Null(null),
        };
        match launch::spawn(&sup.isolation, &sup.config, &plan, stdio) {
            Ok(pid) => sup.main = Some(pid),
            Err(e) => return sup.abort_setup(e),
        }
    }
    // Our copies of the write ends must close, or the capture never sees
    // EOF (the main process, or pid 1 that became it, has its own).
    drop(main_output);
    crate::timing::mark("start main process");
    sup.chan.send(&Event::Ready {
        main_pid: sup.main.map(Pid::as_raw),
        verification,
        steps: crate::timing::take(),
        init_pid: sup.isolation.init_pid().map(Pid::as_raw),
    });
    sup.run()
}

/// Binds the control socket a restarted daemon reattaches through, owner
/// only; None (said on stderr) if it cannot be.
fn bind_control_socket(
    path: &std::path::Path,
    sandbox_id: &str,
) -> Option<std::os::unix::net::UnixListener> {
    let _ = std::fs::remove_file(path);
    let bound = std::os::unix::net::UnixListener::bind(path)
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .and_then(|l| {
            // Owner only, as its directory (which the daemon checks).
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map(|()| l)
        });
    match bound {
        Ok(l) => Some(l),
        Err(e) => {
            eprintln!(
                "sandboxd supervisor {sandbox_id}: control socket {}: {e}",
                path.display()
            );
            None
        }
    }
}

impl<I: Isolation> Supervisor<I> {
    /// Runs the isolation probe as `process` would run (see
    /// [`launch::probe`]). The probe may make the OOM killer act (the
    /// memory row): the counters that tell an OOM kill of the main process
    /// or an exec apart move past what the probe caused.
    fn run_probe(
        &mut self,
        process: &ProcessSpec,
        mut config: ProbeConfig,
    ) -> Result<ProbeOutput, StepError> {
        config.supervisor_pid = sys::own_pid().as_raw();
        config.capabilities = self.config.capabilities.clone();
        config.seccomp = self.config.seccomp;
        let plan = ExecPlan::new(process)?;
        let null = self
            .null
            .try_clone()
            .map_err(|e| StepError::new(Step::DuplicateDevNull, e))?;
        let before = self.isolation.oom_kills();
        let timeout = Duration::from_millis(config.budget_ms) + PROBE_SLACK;
        let result = launch::probe(&self.isolation, &self.config, &plan, &config, null, timeout);
        let caused = self.isolation.oom_kills().saturating_sub(before);
        self.oom_at_start += caused;
        for count in self.oom_at_exec.values_mut() {
            *count += caused;
        }
        result
    }

    /// The verification a create asked for: probe, then compare with the
    /// claims; a REQUIRED row observed VIOLATED is a setup failure.
    fn verify_at_create(&mut self, verify: CreateVerify) -> Result<Verification, StepError> {
        let output = self.run_probe(&verify.process, verify.config)?;
        let verification = sandboxd_core::verify::evaluate(&verify.report, &output);
        let violated = verification.required_violations();
        if violated.is_empty() {
            Ok(verification)
        } else {
            Err(StepError::new(
                Step::Verify,
                format!(
                    "REQUIRED properties observed VIOLATED: {}",
                    violated.join("; ")
                ),
            ))
        }
    }

    fn abort_setup(mut self, e: StepError) -> i32 {
        let _ = self.kill_everything();
        let _ = self.isolation.teardown();
        self.chan.send(&Event::SetupFailed {
            step: e.step.name().to_owned(),
            message: e.message,
        });
        1
    }

    fn run(mut self) -> i32 {
        // A request that arrived with the launch configuration (a Shutdown
        // from a create rolled back at once) is already in the buffer.
        if let Ok(RecvOutcome::Requests(reqs)) = self.chan.buffered() {
            for (req, fds) in reqs {
                if let Some(code) = self.handle(req, fds) {
                    return code;
                }
            }
        }
        loop {
            self.listen_for_a_daemon();
            let mut fds = vec![PollFd::new(self.sigchld.as_fd(), PollFlags::POLLIN)];
            if let Control::Listening(l) = &self.control {
                fds.push(PollFd::new(l.as_fd(), PollFlags::POLLIN));
            }
            let chan_index = fds.len();
            if !self.chan.is_closed() {
                fds.push(PollFd::new(self.chan.as_fd(), PollFlags::POLLIN));
            }
            let logs_index = fds.len();
            let mut log_pipes = Vec::new();
            if let Some(capture) = &self.capture {
                for (i, fd) in capture.open_pipes() {
                    log_pipes.push(i);
                    fds.push(PollFd::new(fd, PollFlags::POLLIN));
                }
            }
            // While stopping, processes may die as children of a pid-1
            // reaper inside the sandbox, which never wakes us: look again
            // every 20 ms.
            let timeout = if self.stopping.is_some() {
                PollTimeout::from(20u8)
            } else {
                PollTimeout::NONE
            };
            match sys::poll(&mut fds, timeout) {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
            let ready = |i: usize| {
                fds.get(i)
                    .and_then(PollFd::revents)
                    .is_some_and(|r| !r.is_empty())
            };
            let control_ready = matches!(self.control, Control::Listening(_)) && ready(1);
            let chan_ready = !self.chan.is_closed() && ready(chan_index);
            let logs_ready: Vec<usize> = log_pipes
                .iter()
                .enumerate()
                .filter(|(k, _)| ready(logs_index + k))
                .map(|(_, i)| *i)
                .collect();
            drop(fds);
            // One read per ready pipe per turn: a process writing flat out
            // cannot starve the channel, and the supervisor holds at most
            // one chunk (crate::logs).
            if let Some(capture) = &mut self.capture {
                for i in logs_ready {
                    capture.read_one(i);
                }
            }
            self.drain_sigchld();
            if sys::take_term_request() {
                // SIGTERM: the same clean shutdown the daemon's Shutdown asks
                // for (kill everything, undo every host change, exit).
                return self.handle(Request::Shutdown, Vec::new()).unwrap_or(0);
            }
            let no_children = self.reap();
            if chan_ready {
                match self.chan.recv() {
                    Ok(RecvOutcome::Requests(reqs)) => {
                        for (req, fds) in reqs {
                            if let Some(code) = self.handle(req, fds) {
                                return code;
                            }
                        }
                    }
                    Ok(RecvOutcome::Closed) => {}
                    // A corrupt frame from the daemon: stop listening rather
                    // than act on garbage; the sandbox keeps running.
                    Err(_) => self.chan.close(),
                }
            }
            // Bound only once the channel closed (above): a restarted
            // daemon cannot connect before its predecessor's hang-up is seen.
            if control_ready {
                self.accept_daemon();
            }
            let ended = match self.config.mode {
                Mode::Idle => {
                    self.stopping.is_some()
                        && self.execs.is_empty()
                        && self
                            .isolation
                            .has_processes()
                            .map_or(no_children, |left| !left)
                }
                Mode::Process | Mode::Init => self.main_exit.is_some(),
            };
            if ended {
                return self.finish();
            }
        }
    }

    /// Once the daemon is gone (its channel closed), binds the control
    /// socket a restarted daemon reattaches through; once. Not before: a
    /// socket is an inode made and deleted on the state disk per sandbox,
    /// which a daemon that stays never needs (the restarted one retries
    /// while this supervisor lives). Without it the sandbox still runs;
    /// only reattaching is lost.
    fn listen_for_a_daemon(&mut self) {
        if self.chan.is_closed() && matches!(self.control, Control::Unbound) {
            let path = self.config.exit_file.with_file_name(CONTROL_SOCKET);
            self.control = bind_control_socket(&path, &self.config.sandbox_id)
                .map_or(Control::Failed, Control::Listening);
        }
    }

    /// A restarted daemon connected: if no daemon is attached and the peer
    /// is root, it becomes the channel and is told what runs now. Anyone
    /// else is closed at once, before a byte is read or written: a second
    /// peer must not replace a live daemon's channel.
    fn accept_daemon(&mut self) {
        let Control::Listening(listener) = &self.control else {
            return;
        };
        if let Ok((stream, _)) = listener.accept() {
            let refused = if !self.chan.is_closed() {
                Some("a daemon is already attached".to_owned())
            } else {
                match sys::peer_uid(stream.as_fd()) {
                    Ok(0) => None,
                    Ok(uid) => Some(format!("peer uid {uid} is not root")),
                    Err(e) => Some(format!("peer credentials: {e}")),
                }
            };
            if let Some(why) = refused {
                eprintln!(
                    "sandboxd supervisor {}: control socket connection refused: {why}",
                    self.config.sandbox_id
                );
                return;
            }
            if stream.set_nonblocking(false).is_ok() {
                self.chan = Channel::new(OwnedFd::from(stream));
                let main_pid = self
                    .main
                    .filter(|_| self.main_exit.is_none())
                    .map(Pid::as_raw);
                self.chan.send(&Event::Attached {
                    main_pid,
                    protocol: sandboxd_core::wire::PROTOCOL,
                    execs: self.running_execs.values().cloned().collect(),
                    init_pid: self.isolation.init_pid().map(Pid::as_raw),
                });
            }
        }
    }

    fn drain_sigchld(&self) {
        let mut buf = [0u8; 64];
        while matches!(sys::read(self.sigchld.as_fd(), &mut buf), Ok(n) if n > 0) {}
    }

    /// Reaps every exited child. Returns true if no children are left.
    fn reap(&mut self) -> bool {
        loop {
            match sys::reap_any() {
                Ok(WaitStatus::StillAlive) => return false,
                Ok(status) => {
                    let (pid, exit) = match status {
                        WaitStatus::Exited(pid, code) => (pid, ProcessExit::Exited(code)),
                        WaitStatus::Signaled(pid, sig, _) => {
                            (pid, ProcessExit::Signaled(sig as i32))
                        }
                        _ => continue,
                    };
                    if Some(pid) == self.main {
                        self.main_exit = Some(exit);
                    } else if let Some(exec_id) = self.execs.remove(&pid) {
                        self.running_execs.remove(&exec_id);
                        let before = self.oom_at_exec.remove(&pid).unwrap_or(u64::MAX);
                        let oom_killed = matches!(exit, ProcessExit::Signaled(9))
                            && self.isolation.oom_kills() > before;
                        self.chan.send(&Event::ExecExited {
                            exec_id,
                            exit,
                            oom_killed,
                        });
                    }
                }
                Err(Errno::EINTR) => {}
                Err(_) => return true, // ECHILD: nothing left
            }
        }
    }

    fn handle(&mut self, req: Request, fds: Vec<OwnedFd>) -> Option<i32> {
        match req {
            Request::Exec {
                exec_id,
                process,
                pty,
                detached,
                make_cwd,
            } => {
                let ended = self.main_exit.is_some() || self.stopping.is_some();
                let result = if ended {
                    Err(StepError::new(Step::Exec, "the sandbox is stopping"))
                } else {
                    ExecPlan::making_cwd(&process, make_cwd).and_then(|plan| match pty {
                        Some(size) => self.spawn_with_pty(&plan, size),
                        None => launch::spawn(
                            &self.isolation,
                            &self.config,
                            &plan,
                            Stdio::Fds {
                                fds,
                                tty: process.tty,
                            },
                        )
                        .map(|pid| (pid, None)),
                    })
                };
                match result {
                    Ok((pid, master)) => {
                        self.execs.insert(pid, exec_id);
                        self.running_execs.insert(
                            exec_id,
                            RunningExec {
                                exec_id,
                                pid: pid.as_raw(),
                                argv: process.argv.clone(),
                                tty: process.tty,
                                detached,
                                started_at_ms: now_ms(),
                            },
                        );
                        self.oom_at_exec.insert(pid, self.isolation.oom_kills());
                        let started = Event::ExecStarted {
                            exec_id,
                            pid: pid.as_raw(),
                            pty: master.is_some(),
                        };
                        match &master {
                            Some(m) => self.chan.send_with_fds(&started, &[m.as_fd()]),
                            None => self.chan.send(&started),
                        }
                    }
                    Err(e) => self.chan.send(&Event::ExecFailed {
                        exec_id,
                        step: e.step.name().to_owned(),
                        message: e.message,
                    }),
                }
            }
            Request::Signal { target, signal } => {
                let result = Signal::try_from(signal)
                    .map_err(|e| e.to_string())
                    .and_then(|sig| match target {
                        SignalTarget::Pid(pid) => {
                            let pid = Pid::from_raw(pid);
                            if Some(pid) == self.main && self.main_exit.is_none()
                                || self.execs.contains_key(&pid)
                            {
                                sys::send_signal(pid, sig).map_err(|e| e.to_string())
                            } else {
                                Err(format!(
                                    "pid {pid} is not a running process of this sandbox"
                                ))
                            }
                        }
                        SignalTarget::ExecTree(id) => {
                            match self.execs.iter().find(|(_, e)| **e == id) {
                                Some((pid, _)) => {
                                    sys::send_signal_to_group(*pid, sig).map_err(|e| e.to_string())
                                }
                                None => Err(format!("exec {id} is not running")),
                            }
                        }
                    });
                if let Err(message) = result {
                    self.chan.send(&Event::SignalFailed { target, message });
                }
            }
            Request::Stop { signal } => {
                let sig = Signal::try_from(signal).unwrap_or(Signal::SIGKILL);
                self.stopping = Some(sig as i32);
                self.signal_everything(sig);
            }
            Request::Verify {
                probe_id,
                process,
                config,
            } => {
                let result = if self.main_exit.is_some() || self.stopping.is_some() {
                    Err(StepError::new(Step::Verify, "the sandbox is stopping"))
                } else {
                    self.run_probe(&process, *config)
                };
                let (output, error) = match result {
                    Ok(o) => (Some(Box::new(o)), None),
                    Err(e) => (None, Some(e.to_string())),
                };
                self.chan.send(&Event::VerifyResult {
                    probe_id,
                    output,
                    error,
                });
            }
            // Only meaningful once the sandbox has ended (see finish).
            Request::ExitRecorded => {}
            Request::Shutdown => {
                let _ = self.kill_everything();
                if self.main_exit.is_none() && self.config.mode != Mode::Idle {
                    self.main_exit = Some(ProcessExit::Signaled(Signal::SIGKILL as i32));
                }
                let _ = self.shut_down();
                self.chan.send(&Event::ShutdownComplete);
                return Some(0);
            }
        }
        None
    }

    /// Starts a tty exec with a terminal the supervisor provides: allocated
    /// by the process itself inside the sandbox where the backend gives it
    /// its own devpts (the process sends the controlling side back before
    /// it execs), else on the host. Returns the pid and the controlling
    /// side, for the daemon.
    fn spawn_with_pty(
        &self,
        plan: &ExecPlan,
        size: sandboxd_core::wire::PtySize,
    ) -> Result<(Pid, Option<OwnedFd>), StepError> {
        if !self.isolation.pty_in_sandbox() {
            let pty = sys::openpty(size.rows, size.cols)
                .map_err(|e| StepError::new(Step::AllocateATerminal, e))?;
            let fds = [pty.replica.try_clone(), pty.replica.try_clone()]
                .into_iter()
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| StepError::new(Step::DuplicateTheTerminal, e))?;
            let mut fds = fds;
            fds.insert(0, pty.replica);
            let pid = launch::spawn(
                &self.isolation,
                &self.config,
                plan,
                Stdio::Fds { fds, tty: true },
            )?;
            return Ok((pid, Some(pty.master)));
        }
        let (ours, theirs) =
            sys::socketpair().map_err(|e| StepError::new(Step::CreateTheTerminalSocket, e))?;
        let pid = launch::spawn(
            &self.isolation,
            &self.config,
            plan,
            Stdio::PtyInside {
                rows: size.rows,
                cols: size.cols,
                sock: theirs,
            },
        )?;
        // Sent before the exec, which spawn has waited for; every copy of
        // the other end is closed by now, so this cannot block.
        let mut byte = [0u8; 1];
        let mut fds = Vec::new();
        let received = sys::recv_with_fds(ours.as_fd(), &mut byte, &mut fds);
        match (received, fds.pop()) {
            (Ok(_), Some(master)) => Ok((pid, Some(master))),
            (received, _) => {
                let _ = sys::send_signal(pid, Signal::SIGKILL);
                Err(StepError::new(
                    Step::ReceiveTheTerminal,
                    match received {
                        Err(e) => e.to_string(),
                        Ok(n) => format!("the process sent no terminal ({n} bytes)"),
                    },
                ))
            }
        }
    }

    /// Sends `sig` to every process of the sandbox: the main process's and
    /// each exec's process group, and (as subreaper) any orphan reparented to
    /// us, which may have left its group.
    fn signal_everything(&self, sig: Signal) {
        if self.isolation.signal_all(sig) || sys::kill_all_descendants(sig) {
            return;
        }
        for leader in self.main.iter().chain(self.execs.keys()) {
            let _ = sys::send_signal_to_group(*leader, sig);
        }
        for child in sys::children_of(sys::own_pid()) {
            let _ = sys::send_signal(child, sig);
        }
    }

    /// SIGKILLs everything until no child is left (bounded); whether none
    /// is.
    fn kill_everything(&mut self) -> bool {
        let deadline = Instant::now() + KILL_SWEEP;
        loop {
            self.signal_everything(Signal::SIGKILL);
            if self.reap() {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            // Wake on the next child exit (SIGCHLD self-pipe), not a fixed
            // sleep: this sits on the path of every sandbox's end.
            let mut fds = [PollFd::new(self.sigchld.as_fd(), PollFlags::POLLIN)];
            let _ = sys::poll(&mut fds, PollTimeout::from(5u8));
            self.drain_sigchld();
        }
    }

    /// The sandbox ended: kill what is left, report, persist, tear down.
    fn finish(mut self) -> i32 {
        // Before teardown removes the cgroup that counts OOM kills.
        // Only a main process can be OOM-killed as "the sandbox": an IDLE
        // sandbox ends by Stop.
        let oom_killed = self.config.mode != Mode::Idle
            && matches!(self.sandbox_exit(), ProcessExit::Signaled(9))
            && self.isolation.oom_kills() > self.oom_at_start;
        self.end();
        // Reported once every process is dead, before the teardown, so
        // WaitSandbox does not wait for it (the cgroups' removal). A
        // connected daemon has the exit from the event, makes it durable in
        // its journal and says so (`ExitRecorded`, protocol 4). The exit
        // file is for a daemon that is away (or did not say so in time): a
        // new inode on the state directory's disk, so written only then,
        // before this helper exits, which a destroy waits for (the channel
        // closing) before it cleans the host.
        let exit = self.sandbox_exit();
        self.chan.send(&Event::SandboxExited {
            exit,
            oom_killed,
            none_left: self.none_left,
        });
        let code = self.teardown();
        if !self.exit_recorded() {
            self.persist_exit();
        }
        code
    }

    /// Waits, at most [`EXIT_RECORDED_WAIT`], for the daemon's
    /// `ExitRecorded`; false once the channel is closed. Other requests,
    /// arriving after the end, are dropped (the channel closes when this
    /// helper exits, which fails their waiters in the daemon).
    fn exit_recorded(&mut self) -> bool {
        let deadline = Instant::now() + EXIT_RECORDED_WAIT;
        let mut outcome = self.chan.buffered();
        loop {
            match outcome {
                Ok(RecvOutcome::Requests(reqs))
                    if reqs.iter().any(|(r, _)| matches!(r, Request::ExitRecorded)) =>
                {
                    return true;
                }
                Ok(RecvOutcome::Requests(_)) => {}
                Ok(RecvOutcome::Closed) | Err(_) => return false,
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if self.chan.is_closed() || left.is_zero() {
                return false;
            }
            let ms = u8::try_from(left.as_millis().max(1)).unwrap_or(u8::MAX);
            let mut fds = [PollFd::new(self.chan.as_fd(), PollFlags::POLLIN)];
            if !matches!(sys::poll(&mut fds, PollTimeout::from(ms)), Ok(n) if n > 0) {
                outcome = Ok(RecvOutcome::Requests(Vec::new()));
                continue;
            }
            outcome = self.chan.recv();
        }
    }

    fn sandbox_exit(&self) -> ProcessExit {
        match (self.config.mode, self.main_exit, self.stopping) {
            (Mode::Idle, _, sig) => ProcessExit::Signaled(sig.unwrap_or(Signal::SIGKILL as i32)),
            (_, Some(exit), _) => exit,
            (_, None, _) => ProcessExit::Signaled(Signal::SIGKILL as i32),
        }
    }

    /// Shutdown, which only a daemon that is destroying the sandbox sends
    /// (over the channel, or as SIGTERM after a restart): kills, reports
    /// exec exits and the sandbox's end, tears down. No exit file (a new
    /// inode on the state directory's disk, and its removal): its record is
    /// marked for destruction already, which a daemon that dies now rolls
    /// forward at its next start whatever the exit was.
    fn shut_down(&mut self) -> i32 {
        self.end();
        // How the sandbox ended goes to the daemon before the teardown, as
        // at a natural end (`finish`): its waiters hear SIGKILL rather than
        // LOST, and where `none_left` says every process is dead a destroy
        // need not wait for the teardown. No `ExitRecorded` is awaited: the
        // record is marked for destruction already.
        let exit = self.sandbox_exit();
        self.chan.send(&Event::SandboxExited {
            exit,
            oom_killed: false,
            none_left: self.none_left,
        });
        self.teardown()
    }

    /// Kills and reports exec exits.
    fn end(&mut self) {
        self.none_left = self.kill_everything() && self.isolation.none_left();
        // What the main process wrote before it ended is in the pipes.
        if let Some(capture) = &mut self.capture {
            capture.drain();
        }
    }

    /// Writes the exit file, for a daemon that is away.
    fn persist_exit(&mut self) {
        // Execs killed in the sweep were reported by reap(); anything still
        // tracked could not be reaped in time.
        let exit = self.sandbox_exit();
        let file = ExitFile {
            exit,
            finished_at_ms: now_ms(),
        };
        // By rename, not synced: it bridges a daemon that is away (a
        // process crash keeps the page cache); once the daemon has the
        // exit, its journal makes it durable. A power loss before that
        // reports the exit as lost, as for a sandbox still running.
        if let Ok(bytes) = serde_json::to_vec(&file) {
            let _ = sandboxd_core::store::write_replace(&self.config.exit_file, &bytes);
        }
    }

    /// Undoes the isolation's setup; the helper's exit code.
    fn teardown(&mut self) -> i32 {
        match self.isolation.teardown() {
            Ok(()) => 0,
            Err(e) => {
                eprintln!(
                    "sandboxd supervisor {}: teardown: {e}",
                    self.config.sandbox_id
                );
                2
            }
        }
    }
}

/// The helper's entry point: detaches from the daemon's session, takes the
/// channel from fd 0, reads the launch configuration, lets the backend build
/// its [`Isolation`] from it and the descriptors that came with it (Linux:
/// a network namespace for mode NAMESPACE; a backend that expects none
/// refuses any), and supervises. Returns the exit code.
pub fn helper_main<T, I, F>(make: F) -> i32
where
    T: for<'de> Deserialize<'de>,
    I: Isolation,
    F: FnOnce(T, Vec<std::os::fd::OwnedFd>) -> Result<I, StepError>,
{
    crate::timing::start();
    // Own session: a signal to the daemon's process group or terminal must
    // not reach the sandbox, and the sandbox outlives the daemon.
    let _ = sys::new_session();
    let sock = match sys::take_stdin_channel() {
        Ok(fd) => fd,
        Err(e) => {
            eprintln!("sandboxd supervisor: fd 0 is not the daemon channel: {e}");
            return 1;
        }
    };
    // Nothing the daemon's process held (an fd it inherited from its own
    // parent, say) may reach a sandbox: keep only stdio and the channel.
    sys::close_fds_except(3, &[sock.as_raw_fd()]);
    let mut chan = Channel::new(sock);
    let config: LaunchConfig<T> = match chan.recv_first() {
        Ok(c) => c,
        Err(e) => {
            chan.send(&Event::SetupFailed {
                step: "read launch configuration".into(),
                message: e.to_string(),
            });
            return 1;
        }
    };
    // The second frame: what to do before the main process starts.
    let options: CreateOptions = match chan.recv_first() {
        Ok(o) => o,
        Err(e) => {
            chan.send(&Event::SetupFailed {
                step: "read create options".into(),
                message: e.to_string(),
            });
            return 1;
        }
    };
    crate::timing::mark("read launch configuration");
    let fds = chan.take_launch_fds();
    match make(config.isolation, fds) {
        Ok(isolation) => supervise(chan, config.common, isolation, options),
        Err(e) => {
            chan.send(&Event::SetupFailed {
                step: e.step.name().to_owned(),
                message: e.message,
            });
            1
        }
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
