//! Exec, ExecSync, SignalProcess and VerifySandbox: requests to a running
//! sandbox's supervisor.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use sandboxd_core::spec::ProcessSpec;
use sandboxd_core::store::{ExitReason, ExitRecord, SandboxState};
use sandboxd_core::validate::{self, ValidatedProcess};
use sandboxd_core::verify::{ProbeOutput, Verification};
use sandboxd_core::wire::{ProcessExit, PtySize, Request, SignalTarget};
use sandboxd_supervisor::now_ms;
use tokio::sync::oneshot;

use super::{Manager, Sandbox, StepFailure, exit_record, lock};
use crate::error::{ApiError, ApiResult};
use crate::events::EventKind;

/// How an exec ended, and whether the OOM killer ended it.
pub type ExecEnd = (ProcessExit, bool);

/// Completes a VerifySandbox: the probe's output, or why it could not run.
pub(super) type VerifyTx = oneshot::Sender<Result<ProbeOutput, String>>;

/// How long the daemon waits for a probe's result (the supervisor kills a
/// probe 5 s past its budget).
const VERIFY_TIMEOUT: Duration = Duration::from_millis(crate::verify::BUDGET_MS + 15_000);

/// A started exec: its pid, and the terminal's controlling side when the
/// supervisor allocated it.
pub(super) type Started = (i32, Option<OwnedFd>);

/// One Exec'd process the daemon is waiting on.
#[derive(Debug)]
pub(super) struct ExecSlot {
    pub(super) started: Option<oneshot::Sender<Result<Started, StepFailure>>>,
    pub(super) exited: Option<oneshot::Sender<ExecEnd>>,
    pub(super) pid: i32,
}

/// How an exec starts, beside what it runs.
#[derive(Debug, Clone, Copy, Default)]
pub struct ExecStart {
    /// A terminal of this size (rows, cols) for a tty process; 24x80 when
    /// none is given.
    pub size: Option<(u16, u16)>,
    /// Started by StartExec: stdio on /dev/null, no terminal.
    pub detached: bool,
    /// The process's cwd is its image's WorkingDir, not the request's: the
    /// supervisor makes it if missing ([`Request::Exec`]'s `make_cwd`).
    pub image_cwd: bool,
}

/// A started Exec: its pid and the daemon's ends of its stdio.
#[derive(Debug)]
pub struct ExecHandle {
    /// Host pid.
    pub pid: i32,
    /// Daemon-side exec id (for ExecTree signals).
    pub exec_id: u64,
    /// stdin (pipe write end), stdout and stderr (pipe read ends), or with a
    /// terminal: the pty master in `stdout` and nothing else.
    pub stdio: ExecStdio,
    /// Resolves when the process exits.
    pub exited: oneshot::Receiver<ExecEnd>,
}

/// The daemon's side of an exec's stdio.
#[derive(Debug)]
pub enum ExecStdio {
    /// Three pipes.
    Pipes {
        /// Write end of stdin.
        stdin: OwnedFd,
        /// Read end of stdout.
        stdout: OwnedFd,
        /// Read end of stderr.
        stderr: OwnedFd,
    },
    /// A terminal.
    Pty {
        /// The pty's controlling side.
        master: OwnedFd,
    },
    /// Detached: the process's stdio is /dev/null; nothing to pump.
    Detached,
}

impl Manager {
    /// Starts an exec in a running sandbox.
    pub async fn exec(
        &self,
        sb: &Arc<Sandbox>,
        process: ValidatedProcess,
        start: ExecStart,
    ) -> ApiResult<ExecHandle> {
        let ExecStart {
            size,
            detached,
            image_cwd,
        } = start;
        sb.with_record(|record| {
            if record.state != SandboxState::Running {
                return Err(ApiError::FailedPrecondition(format!(
                    "sandbox {} is not running (state {:?})",
                    sb.id, record.state
                )));
            }
            self.backend
                .check_exec(&record.spec, process.process())
                .map_err(ApiError::from)
        })?;
        let link = sb
            .link()
            .ok_or_else(|| ApiError::Unavailable(format!("sandbox {} has no supervisor", sb.id)))?;
        let process: ProcessSpec = process.process().clone();
        let io_err = |what: &str, e: nix::Error| ApiError::Internal(format!("{what}: {e}"));
        let (rows, cols) = size.unwrap_or((24, 80));
        // A supervisor of protocol 3 allocates the terminal itself (inside
        // the sandbox's own devpts where the backend has one, so tty(1)
        // names a node of its /dev/pts); an older one gets a host pty.
        let pty_here = process.tty && !detached && link.speaks(3).await;
        let (ours, theirs): (Option<ExecStdio>, Vec<OwnedFd>) = if pty_here {
            (None, Vec::new())
        } else if detached {
            let null = || {
                nix::fcntl::open(
                    "/dev/null",
                    nix::fcntl::OFlag::O_RDWR | nix::fcntl::OFlag::O_CLOEXEC,
                    nix::sys::stat::Mode::empty(),
                )
                .map_err(|e| io_err("open /dev/null", e))
            };
            (Some(ExecStdio::Detached), vec![null()?, null()?, null()?])
        } else if process.tty {
            let pty =
                sandboxd_supervisor::sys::openpty(rows, cols).map_err(|e| io_err("openpty", e))?;
            let replica = pty.replica;
            let copies = [replica.try_clone(), replica.try_clone()]
                .into_iter()
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| ApiError::Internal(format!("dup pty: {e}")))?;
            let mut fds = vec![replica];
            fds.extend(copies);
            (Some(ExecStdio::Pty { master: pty.master }), fds)
        } else {
            let pipe =
                || nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| io_err("pipe", e));
            let (in_r, in_w) = pipe()?;
            let (out_r, out_w) = pipe()?;
            let (err_r, err_w) = pipe()?;
            (
                Some(ExecStdio::Pipes {
                    stdin: in_w,
                    stdout: out_r,
                    stderr: err_r,
                }),
                vec![in_r, out_w, err_w],
            )
        };
        let (argv, tty) = (process.argv.clone(), process.tty);
        let exec_id = self.next_exec.fetch_add(1, Ordering::Relaxed);
        let (started_tx, started_rx) = oneshot::channel();
        let (exited_tx, exited_rx) = oneshot::channel();
        lock(&sb.execs).insert(
            exec_id,
            ExecSlot {
                started: Some(started_tx),
                exited: Some(exited_tx),
                pid: 0,
            },
        );
        let borrowed: Vec<_> = theirs.iter().map(AsFd::as_fd).collect();
        let pty = pty_here.then_some(PtySize { rows, cols });
        let sent = link
            .send(
                &Request::Exec {
                    exec_id,
                    process,
                    pty,
                    detached,
                    make_cwd: image_cwd,
                },
                &borrowed,
            )
            .await;
        drop(borrowed);
        // The supervisor has its own copies now; ours must close so EOF
        // reaches the reader when the process exits.
        drop(theirs);
        if let Err(e) = sent {
            lock(&sb.execs).remove(&exec_id);
            return Err(ApiError::Unavailable(format!(
                "sending exec to the supervisor: {e}"
            )));
        }
        let (pid, master) = match started_rx.await {
            Ok(Ok(started)) => started,
            Ok(Err((step, message))) => {
                // Counted by step beside create and destroy failures.
                let e = ApiError::ExecFailed { step, message };
                self.metrics.failed(crate::metrics::Operation::Exec, &e);
                return Err(e);
            }
            Err(_) => {
                return Err(ApiError::Unavailable(
                    "the supervisor exited before starting the process".into(),
                ));
            }
        };
        let ours = match (ours, master) {
            (Some(ours), _) => ours,
            (None, Some(master)) => ExecStdio::Pty { master },
            (None, None) => {
                let _ = self
                    .signal(sb, SignalTarget::ExecTree(exec_id), libc::SIGKILL)
                    .await;
                return Err(ApiError::Internal(format!(
                    "the supervisor of sandbox {} started a tty exec without sending its terminal",
                    sb.id
                )));
            }
        };
        lock(&sb.exec_records).insert(super::ExecRecord {
            exec_id,
            pid,
            argv,
            tty,
            detached,
            started_at_ms: now_ms(),
            exit: None,
        });
        self.events.emit(EventKind::ExecStarted, &sb.id, pid, None);
        self.metrics.exec_started(&sb.id, pid);
        Ok(ExecHandle {
            pid,
            exec_id,
            stdio: ours,
            exited: exited_rx,
        })
    }

    /// VerifySandbox: runs the probe in a running sandbox (through its
    /// supervisor) against fresh host fixtures and compares what it saw
    /// with the sandbox's isolation report.
    pub async fn verify(&self, sb: &Arc<Sandbox>) -> ApiResult<Verification> {
        let record = sb.record();
        if record.state != SandboxState::Running {
            return Err(ApiError::FailedPrecondition(format!(
                "sandbox {} is not running (state {:?}): only a running sandbox can be verified",
                sb.id, record.state
            )));
        }
        let link = sb
            .link()
            .ok_or_else(|| ApiError::Unavailable(format!("sandbox {} has no supervisor", sb.id)))?;
        let (config, fixtures) = crate::verify::prepare(
            &record.spec,
            &record.lease,
            &self.policy.allowed_netns_sources,
        )
        .await;
        let probe_id = self.next_exec.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        lock(&sb.verifies).insert(probe_id, tx);
        let request = Request::Verify {
            probe_id,
            process: crate::verify::probe_process(&record.spec),
            config: Box::new(config),
        };
        if let Err(e) = link.send(&request, &[]).await {
            lock(&sb.verifies).remove(&probe_id);
            return Err(ApiError::Unavailable(format!(
                "sending the probe to the supervisor: {e}"
            )));
        }
        let result = tokio::time::timeout(VERIFY_TIMEOUT, rx).await;
        lock(&sb.verifies).remove(&probe_id);
        drop(fixtures);
        let output = match result {
            Ok(Ok(Ok(output))) => output,
            Ok(Ok(Err(message))) => {
                return Err(ApiError::Unavailable(format!(
                    "the probe could not run in sandbox {}: {message}",
                    sb.id
                )));
            }
            Ok(Err(_)) => {
                return Err(ApiError::Unavailable(format!(
                    "the supervisor of sandbox {} exited before the probe finished",
                    sb.id
                )));
            }
            Err(_) => {
                return Err(ApiError::Unavailable(format!(
                    "the probe did not finish within {VERIFY_TIMEOUT:?}"
                )));
            }
        };
        tracing::info!(sandbox = %sb.id, elapsed_ms = output.elapsed_ms, "verified");
        Ok(sandboxd_core::verify::evaluate(&record.report, &output))
    }

    /// Records the exec's exit and emits the exec-exited event; returns the
    /// exit as recorded.
    pub fn exec_finished(
        &self,
        sb: &Sandbox,
        (exec_id, pid): (u64, i32),
        (exit, oom_killed): ExecEnd,
        timed_out: bool,
    ) -> ExitRecord {
        self.metrics.exec_finished(&sb.id, pid);
        let mut record = exit_record(exit, now_ms(), "");
        if oom_killed {
            record.reason = ExitReason::OomKilled;
            record.message = "killed by the OOM killer under the sandbox's memory limit".into();
        } else if timed_out {
            record.reason = ExitReason::Timeout;
            record.message = "killed by the ExecSync timeout".into();
        }
        sb.record_exec_exit(exec_id, record.clone());
        self.events
            .emit(EventKind::ExecExited, &sb.id, pid, Some(record.clone()));
        record
    }

    /// Sends a signal to a process of the sandbox or an exec's tree.
    pub async fn signal(
        &self,
        sb: &Arc<Sandbox>,
        target: SignalTarget,
        signal: i32,
    ) -> ApiResult<()> {
        if !(1..=64).contains(&signal) {
            return Err(ApiError::Invalid(validate::ValidationError::one(
                "signal",
                format!("{signal} is not a signal number (1-64)"),
            )));
        }
        if let SignalTarget::Pid(pid) = target {
            let record = sb.record();
            // Execs of a previous daemon, known from the supervisor's
            // Attached, have a running record but no slot.
            let known = (record.main_pid == pid && record.exit.is_none())
                || lock(&sb.execs).values().any(|slot| slot.pid == pid)
                || lock(&sb.exec_records)
                    .list()
                    .iter()
                    .any(|r| r.pid == pid && r.exit.is_none());
            if !known {
                return Err(ApiError::ProcessNotFound(format!(
                    "pid {pid} is not a running process of sandbox {}",
                    sb.id
                )));
            }
        }
        let link = sb
            .link()
            .ok_or_else(|| ApiError::Unavailable(format!("sandbox {} has no supervisor", sb.id)))?;
        link.send(&Request::Signal { target, signal }, &[])
            .await
            .map_err(|e| ApiError::Unavailable(format!("signalling the supervisor: {e}")))
    }
}
