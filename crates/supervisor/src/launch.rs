//! Starting one process inside the sandbox: fork, then in the child enter the
//! sandbox, harden, and exec. A close-on-exec "error pipe" carries the failed
//! step back to the supervisor; EOF on it means exec succeeded.

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

#[cfg(target_os = "linux")]
use nix::fcntl::OFlag;
use nix::sys::resource::Resource;
use nix::unistd::{Gid, Pid, Uid};
use sandboxd_core::spec::ProcessSpec;

use crate::logs::MainOutput;
use crate::report::{self, End, Report};
use crate::step::Step;
use crate::supervisor::{CommonConfig, Isolation, RlimitKind, StepError};
use crate::sys;

/// PATH for payloads whose environment names none (Docker's default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Where a process's stdio comes from.
#[derive(Debug)]
pub(crate) enum Stdio {
    /// /dev/null for all three (the main process).
    Null(OwnedFd),
    /// stdin, stdout, stderr from the daemon; `tty` if they are a terminal.
    Fds { fds: Vec<OwnedFd>, tty: bool },
    /// The main process with its output captured: /dev/null on stdin, the
    /// log pipes on stdout and stderr.
    Main { null: OwnedFd, output: MainOutput },
    /// A terminal the process allocates itself once inside the sandbox
    /// (from the sandbox's own `/dev/ptmx`, so `tty` names a node of its
    /// `/dev/pts`), as runc and crun do; it hands the controlling side back
    /// over `sock`.
    PtyInside { rows: u16, cols: u16, sock: OwnedFd },
    /// As `Main`, from a process that inherited the pipes' write ends as
    /// these descriptor numbers (Linux pid 1 becoming the init).
    MainInherited {
        null: OwnedFd,
        stdout: RawFd,
        stderr: RawFd,
    },
}

/// The argv/env/identity to exec, prepared before fork so the child only
/// makes system calls.
#[derive(Debug, Clone)]
pub struct ExecPlan {
    argv: Vec<CString>,
    env: Vec<CString>,
    path_var: String,
    cwd: CString,
    uid: Uid,
    gid: Gid,
    groups: Vec<Gid>,
    /// Make `cwd` if it is missing: a sandbox's main process's, and an
    /// exec's that is its image's WorkingDir (as `docker run -w` and an
    /// image's WORKDIR), not one an exec asks for (`docker exec -w`).
    make_cwd: bool,
}

impl ExecPlan {
    /// Converts a validated process (validation already refused NUL bytes).
    pub fn new(process: &ProcessSpec) -> Result<Self, StepError> {
        let cstr = |s: &str| {
            CString::new(s)
                .map_err(|_| StepError::new(Step::PrepareExec, format!("{s:?} contains NUL")))
        };
        let argv = process
            .argv
            .iter()
            .map(|a| cstr(a))
            .collect::<Result<Vec<_>, _>>()?;
        let mut env = process
            .env
            .iter()
            .map(|e| cstr(e))
            .collect::<Result<Vec<_>, _>>()?;
        let path_var = match process.env.iter().find_map(|e| e.strip_prefix("PATH=")) {
            Some(p) => p.to_owned(),
            None => {
                env.push(cstr(&format!("PATH={DEFAULT_PATH}"))?);
                DEFAULT_PATH.to_owned()
            }
        };
        if process.tty && !process.env.iter().any(|e| e.starts_with("TERM=")) {
            env.push(cstr("TERM=xterm")?);
        }
        Ok(Self {
            argv,
            env,
            path_var,
            cwd: cstr(process.cwd())?,
            uid: Uid::from_raw(process.user.uid()),
            gid: Gid::from_raw(process.user.gid()),
            groups: process
                .user
                .additional_gids
                .iter()
                .map(|g| Gid::from_raw(*g))
                .collect(),
            make_cwd: false,
        })
    }

    /// The plan of a sandbox's main process: its working directory is made
    /// if it is missing (see [`sys::make_client_dir_all`]).
    pub fn for_main(process: &ProcessSpec) -> Result<Self, StepError> {
        Self::making_cwd(process, true)
    }

    /// The plan of an exec whose working directory is made if missing when
    /// `make_cwd` (the daemon says so when it is the image's WorkingDir).
    pub fn making_cwd(process: &ProcessSpec, make_cwd: bool) -> Result<Self, StepError> {
        Ok(Self {
            make_cwd: make_cwd && process.cwd() != "/",
            ..Self::new(process)?
        })
    }
}

/// Resolves argv[0] the way execvp does, but against the filesystem the
/// caller currently sees (after entering the sandbox): a name with a '/' is
/// used as is; otherwise each PATH entry is tried for an executable file.
/// Only for systems without openat2 (see [`exec_program`] on Linux).
#[cfg(not(target_os = "linux"))]
fn resolve_program(argv0: &str, path_var: &str) -> Option<String> {
    if argv0.contains('/') {
        return Some(argv0.to_owned());
    }
    program_candidates(argv0, path_var)
        .into_iter()
        .find(|candidate| sys::is_executable_file(candidate))
}

/// The paths execvp would try for `argv0`: itself if it names a path,
/// otherwise `<dir>/<argv0>` for each PATH entry.
fn program_candidates(argv0: &str, path_var: &str) -> Vec<String> {
    if argv0.contains('/') {
        return vec![argv0.to_owned()];
    }
    path_var
        .split(':')
        .filter(|d| !d.is_empty())
        .map(|d| format!("{d}/{argv0}"))
        .collect()
}

/// How many `#!` interpreters deep a script may go (as binfmt_script).
#[cfg(target_os = "linux")]
const MAX_INTERPRETERS: usize = 4;

/// Finds and runs the program the way execvp does, but every candidate is
/// opened with [`sys::open_client_path`] (inside the root, never through a
/// magic link such as `/proc/self/exe` or `/proc/self/fd/N`) and run from
/// that descriptor with execveat, so what runs is what was resolved.
/// Returns only on failure.
#[cfg(target_os = "linux")]
fn exec_program(plan: &ExecPlan, announce: &mut Option<BorrowedFd<'_>>) -> StepError {
    use nix::errno::Errno;
    let argv0 = plan
        .argv
        .first()
        .and_then(|a| a.to_str().ok())
        .unwrap_or_default();
    let searching = !argv0.contains('/');
    let mut denied: Option<String> = None;
    for candidate in program_candidates(argv0, &plan.path_var) {
        let Ok(path) = CString::new(candidate.as_str()) else {
            return StepError::new(Step::Exec, "program path contains NUL");
        };
        let err = match sys::open_client_path(&path, OFlag::O_PATH) {
            Ok(fd) if sys::is_regular_file(fd.as_fd()) => {
                exec_fd(&path, &fd, plan.argv.clone(), &plan.env, 0, announce)
            }
            Ok(_) => Errno::EACCES,
            // The path names nothing: "not found" (exit 127 in sandboxctl),
            // not "cannot run" (126).
            Err(e @ (Errno::ENOENT | Errno::ENOTDIR)) if !searching => {
                return StepError::new(Step::FindProgram, format!("{candidate}: {e}"));
            }
            Err(e) => e,
        };
        match err {
            // execvp's rules: keep searching past a missing or unusable entry.
            Errno::ENOENT | Errno::ENOTDIR if searching => {}
            Errno::EACCES | Errno::ELOOP if searching => {
                denied.get_or_insert_with(|| format!("{candidate}: {err}"));
            }
            // A magic link (or a loop) is refused as such.
            Errno::ELOOP | Errno::EXDEV => {
                return StepError::new(
                    Step::Exec,
                    format!(
                        "{candidate}: {err} (magic links such as /proc/self/exe are not followed)"
                    ),
                );
            }
            e => return StepError::new(Step::Exec, format!("{candidate}: {e}")),
        }
    }
    match denied {
        Some(why) => StepError::new(Step::Exec, why),
        None => StepError::new(
            Step::FindProgram,
            format!("{argv0}: not found in PATH {}", plan.path_var),
        ),
    }
}

/// Runs the file `fd` names. A script's interpreter is found and run here,
/// as binfmt_script would, because the kernel would hand it `/dev/fd/N`,
/// which a close-on-exec descriptor cannot be (execveat then fails with
/// ENOENT).
#[cfg(target_os = "linux")]
fn exec_fd(
    path: &std::ffi::CStr,
    fd: &OwnedFd,
    argv: Vec<CString>,
    env: &[CString],
    depth: usize,
    announce: &mut Option<BorrowedFd<'_>>,
) -> nix::errno::Errno {
    use nix::errno::Errno;
    announce_exec(announce);
    let err = sys::execveat_fd(fd.as_fd(), &argv, env);
    if err != Errno::ENOENT {
        return err;
    }
    let Some((interpreter, arg)) = sys::open_client_path(path, OFlag::O_RDONLY)
        .and_then(|f| sys::read_head(f.as_fd(), SHEBANG_MAX))
        .ok()
        .and_then(|head| parse_shebang(&head))
    else {
        return err;
    };
    if depth >= MAX_INTERPRETERS {
        return Errno::ELOOP;
    }
    let ifd = match sys::open_client_path(&interpreter, OFlag::O_PATH) {
        Ok(ifd) if sys::is_regular_file(ifd.as_fd()) => ifd,
        Ok(_) => return Errno::EACCES,
        Err(e) => return e,
    };
    let mut new_argv = vec![interpreter.clone()];
    new_argv.extend(arg);
    new_argv.push(path.to_owned());
    new_argv.extend(argv.into_iter().skip(1));
    exec_fd(&interpreter, &ifd, new_argv, env, depth + 1, announce)
}

/// Says [`Report::Executing`] on `announce`, once, right before the first
/// execve: the error pipe's EOF after it is the exec's, and a child killed
/// before it (while it searched PATH, say) never ran its program.
fn announce_exec(announce: &mut Option<BorrowedFd<'_>>) {
    if let Some(pipe) = announce.take() {
        Report::Executing.send(pipe);
    }
}

/// The longest `#!` line read (the kernel's BINPRM_BUF_SIZE).
#[cfg(target_os = "linux")]
const SHEBANG_MAX: usize = 256;

/// The interpreter and optional single argument of a `#!` line, as Linux
/// splits it: the interpreter ends at the first blank, the rest of the line
/// (trimmed) is one argument.
#[cfg(any(target_os = "linux", test))]
fn parse_shebang(head: &[u8]) -> Option<(CString, Option<CString>)> {
    let rest = head.strip_prefix(b"#!")?;
    let line = rest.split(|b| *b == b'\n').next()?;
    let blank = |b: &u8| *b == b' ' || *b == b'\t';
    let start = line.iter().position(|b| !blank(b))?;
    let line = &line[start..];
    let end = line.iter().position(blank).unwrap_or(line.len());
    let (interpreter, rest) = line.split_at(end);
    let arg = rest.trim_ascii();
    let interpreter = CString::new(interpreter.trim_ascii_end()).ok()?;
    let arg = (!arg.is_empty()).then(|| CString::new(arg).ok()).flatten();
    Some((interpreter, arg))
}

/// How long a forked child may take to reach its exec. Until then it is a
/// copy of the supervisor, which waits for it; once it has switched to the
/// payload's uid, a process of that uid in the sandbox can SIGSTOP it
/// there (`kill -STOP -1` in a loop), and the supervisor must not wait for
/// it forever: it would answer nothing more.
const EXEC_DEADLINE: std::time::Duration = std::time::Duration::from_secs(5);

/// Forks a child that enters the sandbox and execs `plan`. Returns its pid
/// once exec has succeeded, or the step that failed; a child that has not
/// exec'd within [`EXEC_DEADLINE`] is killed, and that is the failure.
pub(crate) fn spawn(
    isolation: &dyn Isolation,
    config: &CommonConfig,
    plan: &ExecPlan,
    stdio: Stdio,
) -> Result<Pid, StepError> {
    let (err_read, err_write) =
        sys::pipe_nonblocking_read().map_err(|e| StepError::new(Step::CreateErrorPipe, e))?;
    // SAFETY: spawn runs only in the supervisor helper, a freshly exec'd
    // process that never starts a thread (helper_main, supervise).
    match unsafe { isolation.fork() }.map_err(|e| StepError::new(Step::Fork, e))? {
        sys::Fork::Child => {
            let err = child(isolation, config, plan, stdio, err_write.as_raw_fd());
            Report::Failed(err).send(err_write.as_fd());
            sys::exit_child(127)
        }
        sys::Fork::Parent { child } => {
            drop(err_write);
            drop(stdio);
            let mut bytes = Vec::new();
            let deadline = std::time::Instant::now() + EXEC_DEADLINE;
            if !read_until(&err_read, &mut bytes, deadline, |_| {}) {
                let _ = sys::send_signal(child, nix::sys::signal::Signal::SIGKILL);
                let _ = sys::wait_for(child);
                return Err(StepError::new(
                    Step::Exec,
                    format!(
                        "the process did not exec within {EXEC_DEADLINE:?} (stopped or blocked before its exec) and was killed"
                    ),
                ));
            }
            let reports = report::decode(&bytes);
            let pid = child;
            match reports.end {
                End::Closed if reports.executing => Ok(pid),
                // Killed before its exec (by a process of its uid in the
                // sandbox, or the OOM killer): it never ran the program,
                // so it did not start.
                End::Closed => {
                    let how = match sys::wait_for(pid) {
                        Ok(nix::sys::wait::WaitStatus::Signaled(_, sig, _)) => {
                            format!("killed by {sig}")
                        }
                        Ok(status) => format!("{status:?}"),
                        Err(e) => e.to_string(),
                    };
                    Err(StepError::new(
                        Step::Exec,
                        format!("the process died before its exec ({how})"),
                    ))
                }
                End::Failed(e) => {
                    // The process has exited (127); reap it so it is never
                    // mistaken for a sandbox process.
                    let _ = sys::wait_for(pid);
                    Err(e)
                }
                End::Probe(_) => {
                    let _ = sys::wait_for(pid);
                    Err(StepError::new(
                        Step::Exec,
                        "the child sent a probe's output instead of exec'ing",
                    ))
                }
            }
        }
    }
}

/// Runs the isolation probe in a child that enters the sandbox exactly as a
/// payload does (every step of [`harden`], as `plan`'s user in its cwd) and
/// then, instead of exec, runs [`sandboxd_probe::run`], writes its output up
/// the error pipe and exits. Blocks the supervisor for at most `timeout`;
/// a probe still running then is killed. The host uid of the probe process
/// is read from outside before it is reaped (the USER row), its cpu cgroup
/// while it runs (CPU_WEIGHT).
pub(crate) fn probe(
    isolation: &dyn Isolation,
    config: &CommonConfig,
    plan: &ExecPlan,
    probe: &sandboxd_core::verify::ProbeConfig,
    null: OwnedFd,
    timeout: std::time::Duration,
) -> Result<sandboxd_core::verify::ProbeOutput, StepError> {
    let (err_read, err_write) =
        sys::pipe_nonblocking_read().map_err(|e| StepError::new(Step::CreateProbePipe, e))?;
    // SAFETY: as in spawn: only the single-threaded supervisor helper
    // probes.
    match unsafe { isolation.fork() }.map_err(|e| StepError::new(Step::Fork, e))? {
        sys::Fork::Child => {
            let keep = err_write.as_raw_fd();
            let err = match enter_sandbox(isolation)
                .map(|()| Report::Entered.send(err_write.as_fd()))
                .and_then(|()| harden(config, plan, Stdio::Null(null), keep))
            {
                Ok(()) => {
                    let output = sandboxd_probe::run(probe, &[keep]);
                    if let Ok(json) = serde_json::to_vec(&output) {
                        Report::Probe(json).send(err_write.as_fd());
                        sys::exit_child(0)
                    }
                    StepError::new(Step::Verify, "encoding the probe's output failed")
                }
                Err(e) => e,
            };
            Report::Failed(err).send(err_write.as_fd());
            sys::exit_child(127)
        }
        sys::Fork::Parent { child } => {
            drop(err_write);
            drop(null);
            let deadline = std::time::Instant::now() + timeout;
            let mut bytes = Vec::new();
            // The probe's cpu cgroup (CPU_WEIGHT), read from outside while
            // the probe runs (cgroup v1 shows an exiting task's cgroup as
            // "/"), once it says it has entered the sandbox (joined its
            // cgroups). Read now too, for a child that fails before.
            let mut cpu_weight = crate::cgroup_weight::read(child);
            let mut entered = false;
            let finished = read_until(&err_read, &mut bytes, deadline, |bytes| {
                if !entered && report::decode(bytes).entered {
                    entered = true;
                    cpu_weight = crate::cgroup_weight::read(child);
                }
            });
            let reports = report::decode(&bytes);
            let pid = child;
            if !finished {
                let _ = sys::send_signal(pid, nix::sys::signal::Signal::SIGKILL);
                let _ = sys::wait_for(pid);
                return Err(StepError::new(
                    Step::Verify,
                    format!("the probe did not finish within {timeout:?} and was killed"),
                ));
            }
            // Read from outside while the probe is a zombie: its host uid.
            let host_uid = sys::host_uid_of(pid);
            let _ = sys::wait_for(pid);
            match reports.end {
                End::Probe(json) => {
                    let mut output: sandboxd_core::verify::ProbeOutput =
                        serde_json::from_slice(&json).map_err(|e| {
                            StepError::new(Step::Verify, format!("the probe's output: {e}"))
                        })?;
                    output.user.host_uid = host_uid;
                    output
                        .findings
                        .push(sandboxd_core::verify::cpu_weight_finding(
                            probe.limits.cpu_weight,
                            &config.sandbox_id,
                            cpu_weight.as_ref(),
                        ));
                    output.cpu_weight = cpu_weight;
                    Ok(output)
                }
                End::Failed(e) => Err(e),
                End::Closed => Err(StepError::new(
                    Step::Verify,
                    "the probe exited without a report",
                )),
            }
        }
    }
}

/// Reads `fd` (non-blocking) into `buf` until EOF or `deadline`, calling
/// `arrived` with what is read so far after each read; returns whether EOF
/// came first.
fn read_until(
    fd: &OwnedFd,
    buf: &mut Vec<u8>,
    deadline: std::time::Instant,
    mut arrived: impl FnMut(&[u8]),
) -> bool {
    use nix::poll::{PollFd, PollFlags, PollTimeout};
    let mut chunk = [0u8; 4096];
    loop {
        match sys::read(fd.as_fd(), &mut chunk) {
            Ok(0) => return true,
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                arrived(buf);
                continue;
            }
            Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => {}
            Err(_) => return true,
        }
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return false;
        }
        let ms = u16::try_from(left.as_millis().min(1000)).unwrap_or(1000);
        let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
        let _ = sys::poll(&mut fds, PollTimeout::from(ms));
    }
}

/// The child side: runs only in the forked copy of the single-threaded
/// supervisor. Returns only on failure.
fn child(
    isolation: &dyn Isolation,
    config: &CommonConfig,
    plan: &ExecPlan,
    stdio: Stdio,
    keep: i32,
) -> StepError {
    if let Err(e) = enter_sandbox(isolation) {
        return e;
    }
    if let Err(e) = harden(config, plan, stdio, keep) {
        return e;
    }
    exec(plan, Some(sys::borrow_fd(keep)))
}

/// In a forked child: non-dumpable, clean signals, then into the sandbox.
fn enter_sandbox(isolation: &dyn Isolation) -> Result<(), StepError> {
    let step = |step: Step, e: nix::Error| StepError::new(step, e);
    sys::set_non_dumpable().map_err(|e| step(Step::MarkNonDumpable, e))?;
    sys::reset_signals().map_err(|e| step(Step::ResetSignalDispositions, e))?;
    isolation.enter()
}

/// SIGKILL when the supervisor dies (Linux and FreeBSD); fails if it is
/// already gone.
pub fn die_with(supervisor: Pid) -> Result<(), nix::Error> {
    sys::kill_on_parent_death()?;
    // It may have died before the signal was armed.
    if sys::parent_pid() == supervisor {
        Ok(())
    } else {
        Err(nix::errno::Errno::ESRCH)
    }
}

/// Runs `process` in place as a sandbox's main process from a process that
/// is already inside the sandbox (a backend's pid 1 in INIT mode): the same
/// hardening as every payload, stdin on /dev/null, stdout and stderr on the
/// log capture's pipes (`output`: the inherited descriptor numbers of
/// [`crate::MainOutput`]'s write ends) or /dev/null, then exec. `keep` is a
/// close-on-exec descriptor that must survive until exec (its error pipe).
/// Returns only on failure.
pub fn exec_main_in_place(
    config: &CommonConfig,
    process: &ProcessSpec,
    keep: i32,
    output: Option<(RawFd, RawFd)>,
) -> StepError {
    let plan = match ExecPlan::for_main(process) {
        Ok(p) => p,
        Err(e) => return e,
    };
    let null = match sys::open_dev_null() {
        Ok(fd) => fd,
        Err(e) => return StepError::new(Step::OpenDevNull, e),
    };
    if let Err(e) = sys::reset_signals() {
        return StepError::new(Step::ResetSignalDispositions, e);
    }
    let stdio = match output {
        Some((stdout, stderr)) => Stdio::MainInherited {
            null,
            stdout,
            stderr,
        },
        None => Stdio::Null(null),
    };
    payload(config, &plan, stdio, keep)
}

/// The payload side of a process already inside the sandbox (Linux pid 1
/// becoming the init): session, stdio, working directory, limits,
/// capabilities, identity, no_new_privs, descriptors, exec. Unlike a forked
/// child ([`child`]) it says no `Executing`: its `keep` pipe is pid 1's
/// handshake with the supervisor, which an init's exec closes with nothing
/// said.
fn payload(config: &CommonConfig, plan: &ExecPlan, stdio: Stdio, keep: i32) -> StepError {
    if let Err(e) = harden(config, plan, stdio, keep) {
        return e;
    }
    exec(plan, None)
}

/// Every step between entering the sandbox and exec, for a payload and for
/// the verify probe alike.
fn harden(
    config: &CommonConfig,
    plan: &ExecPlan,
    stdio: Stdio,
    keep: i32,
) -> Result<(), StepError> {
    let step = |step: Step, e: nix::Error| Err(StepError::new(step, e));
    let (uid, gid) = (plan.uid, plan.gid);
    // Our parent is the supervisor (fork, or clone with CLONE_PARENT).
    let supervisor = sys::parent_pid();
    // A new session: the process leads its own group, so a timeout or stop
    // can kill its tree without touching anything else, and a terminal can
    // become its controlling tty.
    if let Err(e) = sys::new_session() {
        return step(Step::Setsid, e);
    }
    match &stdio {
        Stdio::Null(null) => {
            for target in 0..=2 {
                if let Err(e) = sys::dup_to(null.as_fd(), target) {
                    return step(Step::RedirectStdioToDevNull, e);
                }
            }
        }
        Stdio::Main { null, output } => {
            let fds = [null.as_fd(), output.stdout.as_fd(), output.stderr.as_fd()];
            for (target, fd) in fds.into_iter().enumerate() {
                if let Err(e) = sys::dup_to(fd, target as i32) {
                    return step(Step::InstallStdioLogPipes, e);
                }
            }
        }
        Stdio::MainInherited {
            null,
            stdout,
            stderr,
        } => {
            let fds = [
                null.as_fd(),
                sys::borrow_fd(*stdout),
                sys::borrow_fd(*stderr),
            ];
            for (target, fd) in fds.into_iter().enumerate() {
                if let Err(e) = sys::dup_to(fd, target as i32) {
                    return step(Step::InstallStdioLogPipes, e);
                }
            }
        }
        Stdio::PtyInside { rows, cols, sock } => {
            let pty = match sys::openpty_here(*rows, *cols) {
                Ok(pty) => pty,
                Err(e) => return step(Step::AllocateATerminalFromTheSandboxSDevPtmx, e),
            };
            // The terminal is the process's, as runc makes it: it may reopen
            // its /dev/pts node by name once it runs as the spec's user.
            // EPERM where this process joined a user namespace but still has
            // the host's root ids (its setuid comes later), which the
            // namespace cannot map: the node then stays the host root's
            // (nobody inside) and only reopening it by name is refused;
            // tty(1) and ttyname() work (docs/api.md#terminals).
            match sys::chown_fd(pty.replica.as_fd(), uid, gid) {
                Ok(()) | Err(nix::errno::Errno::EPERM) => {}
                Err(e) => return step(Step::GiveTheTerminalToTheProcessSUser, e),
            }
            for target in 0..=2 {
                if let Err(e) = sys::dup_to(pty.replica.as_fd(), target) {
                    return step(Step::InstallStdioTerminal, e);
                }
            }
            // Hand the controlling side over before it becomes our
            // controlling terminal: closing the last copy of it afterwards
            // would hang the terminal up (SIGHUP).
            if let Err(e) = sys::send_with_fds(sock.as_fd(), b"t", &[pty.master.as_fd()]) {
                return Err(StepError::new(Step::HandTheTerminalToTheSupervisor, e));
            }
            drop(pty.master);
            if let Err(e) = sys::set_controlling_tty(pty.replica.as_fd()) {
                return step(Step::SetControllingTerminal, e);
            }
        }
        Stdio::Fds { fds, tty } => {
            for (target, fd) in fds.iter().enumerate() {
                if let Err(e) = sys::dup_to(fd.as_fd(), target as i32) {
                    return step(Step::InstallStdio, e);
                }
            }
            if *tty {
                if let Some(Err(e)) = fds.first().map(|t| sys::set_controlling_tty(t.as_fd())) {
                    return step(Step::SetControllingTerminal, e);
                }
            }
        }
    }
    drop(stdio);
    // Before anything client-controlled is touched (the working directory,
    // the program): only 0-2 and the close-on-exec error pipe stay open, so
    // no path can reach a directory the supervisor held
    // (/proc/self/fd/N; runc's CVE-2024-21626).
    sys::close_fds_except(3, &[keep]);
    // As root, before the identity changes, and only now that no
    // descriptor of the supervisor's is left to resolve through.
    if plan.make_cwd {
        if let Err(e) = sys::make_client_dir_all(plan.cwd.as_c_str()) {
            return Err(StepError::new(
                Step::CreateWorkingDirectory,
                format!("{:?}: {e}", plan.cwd),
            ));
        }
    }
    // While still privileged: bound what a uid-0 payload can ever hold.
    if let Err(e) = sys::restrict_capabilities(&config.capabilities) {
        return step(Step::DropCapabilitiesFromTheBoundingSet, e);
    }
    // Where the OS has no such control (not Linux/FreeBSD) the capability
    // report does not claim it.
    if sys::HAS_NO_NEW_PRIVS {
        if let Err(e) = sys::set_no_new_privs() {
            return step(Step::SetNoNewPrivs, e);
        }
    }
    // Test builds only (feature `weaken`): skip the limits on request, to
    // show that VerifySandbox then sees the limit rows VIOLATED.
    let rlimits = if sandboxd_core::weaken::skip(sandboxd_core::weaken::RLIMITS) {
        &[][..]
    } else {
        &config.rlimits[..]
    };
    for limit in rlimits {
        let resource = match limit.kind {
            RlimitKind::Nproc => Resource::RLIMIT_NPROC,
            RlimitKind::Nofile => Resource::RLIMIT_NOFILE,
            #[cfg(not(target_os = "freebsd"))]
            RlimitKind::As => Resource::RLIMIT_AS,
            #[cfg(target_os = "freebsd")]
            RlimitKind::As => Resource::RLIMIT_VMEM,
        };
        // rlim_t is u64 on Linux and i64 on FreeBSD; values above i64::MAX
        // mean "unlimited" in practice.
        #[allow(clippy::useless_conversion)]
        let value = limit
            .value
            .try_into()
            .unwrap_or(nix::sys::resource::RLIM_INFINITY);
        // Still privileged: a limit above the current hard one is allowed.
        if let Err(e) = sys::set_rlimit(resource, value) {
            return Err(StepError::new(
                Step::Setrlimit,
                format!("{:?}={}: {e}", limit.kind, limit.value),
            ));
        }
    }
    if plan.uid.is_root() {
        if let Some(why) = &config.root_refused {
            return Err(StepError::new(
                Step::Setuid,
                format!("uid 0 is refused in this sandbox: {why}"),
            ));
        }
    }
    // Groups first: after setuid we could no longer change them.
    if let Err(e) = sys::set_groups(&plan.groups) {
        return step(Step::Setgroups, e);
    }
    if let Err(e) = sys::set_gid(plan.gid) {
        return Err(StepError::new(Step::Setgid, format!("{}: {e}", plan.gid)));
    }
    if let Err(e) = sys::set_uid(plan.uid) {
        return Err(StepError::new(Step::Setuid, format!("{}: {e}", plan.uid)));
    }
    // After setuid, which would clear it: if the supervisor is killed, the
    // payload dies too rather than run on with nobody to report or stop it
    // (on the chroot backend nothing else would ever end it).
    if let Err(e) = die_with(supervisor) {
        return step(Step::SetParentDeathSignal, e);
    }
    // After setuid, so the directory's permissions apply to the payload;
    // resolved inside the root without magic links, entered by descriptor.
    if let Err(e) = sys::enter_client_dir(plan.cwd.as_c_str()) {
        return Err(StepError::new(
            Step::ChdirToWorkingDirectory,
            format!("{:?}: {e}", plan.cwd),
        ));
    }
    // Last before exec: from here on the deny list applies.
    #[cfg(target_os = "linux")]
    if config.seccomp {
        if let Err(e) = crate::seccomp::install_default() {
            return Err(StepError::new(Step::InstallSeccompFilter, e));
        }
    }
    Ok(())
}

/// Runs the program (the last step of a payload), saying `Executing` on
/// `announce` right before (see [`announce_exec`]). Returns only on
/// failure.
fn exec(plan: &ExecPlan, mut announce: Option<BorrowedFd<'_>>) -> StepError {
    #[cfg(target_os = "linux")]
    {
        exec_program(plan, &mut announce)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let argv0 = plan
            .argv
            .first()
            .and_then(|a| a.to_str().ok())
            .unwrap_or_default();
        let Some(program) = resolve_program(argv0, &plan.path_var) else {
            return StepError::new(
                Step::FindProgram,
                format!("{argv0}: not found in PATH {}", plan.path_var),
            );
        };
        if !std::path::Path::new(&program).exists() {
            return StepError::new(Step::FindProgram, format!("{program}: ENOENT"));
        }
        let Ok(program) = CString::new(program) else {
            return StepError::new(Step::Exec, "program path contains NUL");
        };
        announce_exec(&mut announce);
        let err = sys::execve(&program, &plan.argv, &plan.env);
        StepError::new(Step::Exec, format!("{}: {err}", program.to_string_lossy()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The interpreter and its optional argument.
    type Shebang = Option<(CString, Option<CString>)>;

    #[test]
    fn shebang_lines_split_as_linux_does() {
        let c = |s: &str| CString::new(s).unwrap();
        let cases: &[(&[u8], Shebang)] = &[
            (b"#!/bin/sh\necho", Some((c("/bin/sh"), None))),
            (b"#! /bin/sh -e\n", Some((c("/bin/sh"), Some(c("-e"))))),
            (
                b"#!/usr/bin/env python3 -u  \n",
                Some((c("/usr/bin/env"), Some(c("python3 -u")))),
            ),
            (b"#!\t/bin/sh\t\n", Some((c("/bin/sh"), None))),
            (b"#!/bin/sh", Some((c("/bin/sh"), None))),
            (b"#!\n", None),
            (b"#!   \n", None),
            (b"\x7fELF", None),
            (b"", None),
        ];
        for (head, want) in cases {
            assert_eq!(
                &parse_shebang(head),
                want,
                "{:?}",
                String::from_utf8_lossy(head)
            );
        }
    }

    #[test]
    fn program_candidates_follow_execvp() {
        assert_eq!(program_candidates("/bin/sh", "/a:/b"), ["/bin/sh"]);
        assert_eq!(program_candidates("./x", "/a"), ["./x"]);
        assert_eq!(program_candidates("sh", "/a::/b:"), ["/a/sh", "/b/sh"]);
        assert!(program_candidates("sh", "").is_empty());
    }
}
