//! The attached `Exec` stream shared by `run` and `exec`: local stdin in,
//! stdout/stderr out, terminal size and signals forwarded, until the process
//! exits.
//!
//! Stdin is read on a plain thread rather than with tokio's stdin: a blocking
//! read of a terminal cannot be cancelled, and a thread that is simply left
//! behind at exit is the honest way to handle that.

use std::io::{IsTerminal, Read, Write};

use nix::sys::termios::{SetArg, Termios, cfmakeraw, tcgetattr, tcsetattr};
use sandboxd_proto::v1::{
    CreateSandboxRequest, CreateSandboxResponse, ExecRequest, ExecStart, ExitReason, ExitResult,
    ProcessSpec, TerminalSize, exec_request, exec_response,
    process_service_client::ProcessServiceClient,
};
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

use crate::error::CliError;
use crate::json::enum_name;

/// What to run and how to attach to it.
#[derive(Debug)]
pub(crate) struct Attach {
    /// Sandbox id or name.
    pub(crate) sandbox_id: String,
    /// The process; `process.tty` asks for a terminal.
    pub(crate) process: ProcessSpec,
    /// Forward local stdin (`-i`); without it the process's stdin is closed
    /// at once, so a program reading it sees EOF instead of hanging.
    pub(crate) interactive: bool,
    /// `run`: the stream creates the sandbox itself (`sandbox_id` empty),
    /// and `on_created` is told the result before the process starts.
    pub(crate) create: Option<Create>,
}

/// The sandbox an attached stream creates (`run`).
#[derive(Debug)]
pub(crate) struct Create {
    /// What CreateSandbox would get.
    pub(crate) request: CreateSandboxRequest,
    /// The daemon destroys the sandbox when the stream ends (`--rm`).
    pub(crate) remove: bool,
    /// Reports the created sandbox (verification, warnings) on stderr.
    pub(crate) on_created: fn(&CreateSandboxResponse) -> Result<String, CliError>,
}

/// How an attached stream ended.
#[derive(Debug)]
pub(crate) enum Ended {
    /// The process exited.
    Exited(ExitResult),
    /// A signal (its number) arrived while the stream was creating its
    /// sandbox: nothing was started, and the created sandbox (this id) is
    /// the caller's to remove.
    Interrupted(String, i32),
}

/// Checks what can be checked before anything is created: `-it` needs a
/// terminal on stdin (like docker's "the input device is not a TTY").
pub(crate) fn preflight(attach: &Attach) -> Result<(), CliError> {
    if attach.process.tty && attach.interactive && !std::io::stdin().is_terminal() {
        return Err(CliError::Usage(
            "-t: the input device is not a terminal (drop -t to pipe input with -i)".into(),
        ));
    }
    Ok(())
}

/// The exit code sandboxctl exits with for a process's result: its
/// `exit_code` (already 128+signal for signals), or 255 if that does not fit
/// an exit status.
pub(crate) fn exit_code(exit: &ExitResult) -> i32 {
    if (0..=255).contains(&exit.exit_code) {
        exit.exit_code
    } else {
        255
    }
}

/// Says on stderr why a process ended when its exit code alone would not
/// (OOM, limits, timeouts, setup failures, lost); plain exits and signals
/// speak for themselves, as in a shell.
pub(crate) fn report_abnormal(exit: &ExitResult) {
    if exit.reason == ExitReason::Exited as i32 || exit.reason == ExitReason::Signaled as i32 {
        return;
    }
    let reason =
        enum_name::<ExitReason>(exit.reason).map_or_else(|| exit.reason.to_string(), str::to_owned);
    if exit.message.is_empty() {
        eprintln!("sandboxctl: process ended: {reason}");
    } else {
        eprintln!("sandboxctl: process ended: {reason}: {}", exit.message);
    }
}

/// The local terminal in raw mode; restores the saved settings when dropped,
/// which also covers every error path out of [`attach`].
struct RawMode {
    saved: Termios,
}

impl RawMode {
    fn enter() -> Result<RawMode, CliError> {
        let stdin = std::io::stdin();
        let saved =
            tcgetattr(&stdin).map_err(|e| CliError::Io("reading terminal settings", e.into()))?;
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        tcsetattr(&stdin, SetArg::TCSANOW, &raw)
            .map_err(|e| CliError::Io("setting raw terminal mode", e.into()))?;
        Ok(RawMode { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // Nothing useful can be done if restoring fails (the terminal is
        // gone); `stty sane` is the user's fallback.
        let _ = tcsetattr(std::io::stdin(), SetArg::TCSADRAIN, &self.saved);
    }
}

/// The local terminal's size, from whichever standard descriptor is a
/// terminal; `None` if none is.
fn terminal_size() -> Option<TerminalSize> {
    [libc::STDOUT_FILENO, libc::STDIN_FILENO, libc::STDERR_FILENO]
        .into_iter()
        .find_map(crate::sys::window_size)
        .map(|(rows, cols)| TerminalSize {
            rows: u32::from(rows),
            cols: u32::from(cols),
        })
}

fn request(msg: exec_request::Msg) -> ExecRequest {
    ExecRequest { msg: Some(msg) }
}

/// Copies local stdin into the stream on its own thread, then closes the
/// process's stdin at EOF (or on a read error, which ends input just the
/// same).
fn spawn_stdin_pump(tx: mpsc::Sender<ExecRequest>) -> Result<(), CliError> {
    std::thread::Builder::new()
        .name("stdin".into())
        .spawn(move || {
            let mut stdin = std::io::stdin();
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                match stdin.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        if tx
                            .blocking_send(request(exec_request::Msg::Stdin(buf[..n].to_vec())))
                            .is_err()
                        {
                            // The stream is over; nobody wants more input.
                            return;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
            let _ = tx.blocking_send(request(exec_request::Msg::CloseStdin(true)));
        })
        .map(drop)
        .map_err(|e| CliError::Io("starting the stdin thread", e))
}

/// A signal listener, or `None` where that signal is not forwarded.
fn listen(kind: SignalKind, wanted: bool) -> Result<Option<Signal>, CliError> {
    if !wanted {
        return Ok(None);
    }
    signal(kind)
        .map(Some)
        .map_err(|e| CliError::Io("installing a signal handler", e))
}

/// Waits for the signal; never resolves for an absent listener.
async fn next(sig: &mut Option<Signal>) -> Option<()> {
    match sig {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}

/// Writes process output through to a local descriptor, flushing so
/// interactive output appears as it comes.
fn write_through(mut w: impl Write, bytes: &[u8]) -> Result<(), CliError> {
    w.write_all(bytes)
        .and_then(|()| w.flush())
        .map_err(CliError::stdout)
}

/// Runs the `Exec` stream to the end and returns how it ended.
pub(crate) async fn attach(channel: Channel, attach: Attach) -> Result<Ended, CliError> {
    preflight(&attach)?;
    let tty = attach.process.tty;
    // Raw mode only when our stdin is a terminal whose keys go to the
    // process: then Ctrl-C is a byte for the remote terminal, not a local
    // SIGINT. While the stream creates its sandbox, the terminal stays
    // cooked so that Ctrl-C interrupts the create.
    let raw = tty && attach.interactive && std::io::stdin().is_terminal();
    let mut creating = attach.create.is_some();
    let mut raw_guard = if raw && !creating {
        Some(RawMode::enter()?)
    } else {
        None
    };
    let (remove, on_created) = match &attach.create {
        Some(c) => (c.remove, Some(c.on_created)),
        None => (false, None),
    };

    let (tx, rx) = mpsc::channel::<ExecRequest>(32);
    let start = ExecStart {
        sandbox_id: attach.sandbox_id,
        process: Some(attach.process),
        size: if tty { terminal_size() } else { None },
        create: attach.create.map(|c| c.request),
        remove,
    };
    // The receiver is alive and the buffer empty, so these cannot fail; if
    // they somehow did, the stream would end and be reported below.
    let _ = tx.send(request(exec_request::Msg::Start(start))).await;
    if attach.interactive {
        spawn_stdin_pump(tx.clone())?;
    } else {
        let _ = tx.send(request(exec_request::Msg::CloseStdin(true))).await;
    }

    // Signals the user aims at "the command" go to the process (docker's
    // sig-proxy). Ctrl-C and Ctrl-\ arrive as signals only when the terminal
    // is not raw. TERM and HUP are forwarded too, so sandboxctl is never
    // killed by them with the terminal left raw or the process orphaned.
    // While the sandbox is being created, any of them interrupts the run.
    let mut winch = listen(SignalKind::window_change(), tty)?;
    let mut int = listen(SignalKind::interrupt(), !raw || creating)?;
    let mut quit = listen(SignalKind::quit(), !raw || creating)?;
    let mut term = listen(SignalKind::terminate(), true)?;
    let mut hup = listen(SignalKind::hangup(), true)?;
    let mut interrupted: Option<i32> = None;

    let mut client = ProcessServiceClient::new(channel);
    let mut responses = client.exec(ReceiverStream::new(rx)).await?.into_inner();

    loop {
        let forward = tokio::select! {
            // Signals first: one that arrived while the sandbox was being
            // created must be seen before the `created` that may be ready
            // in the same turn.
            biased;
            Some(()) = next(&mut winch) => terminal_size().map(exec_request::Msg::Resize),
            // Signal numbers below are the same on Linux and FreeBSD.
            Some(()) = next(&mut int) => Some(exec_request::Msg::Signal(2)),
            Some(()) = next(&mut quit) => Some(exec_request::Msg::Signal(3)),
            Some(()) = next(&mut term) => Some(exec_request::Msg::Signal(15)),
            Some(()) = next(&mut hup) => Some(exec_request::Msg::Signal(1)),
            msg = responses.message() => {
                match msg?.and_then(|r| r.msg) {
                    Some(exec_response::Msg::Created(created)) => {
                        let id = match on_created {
                            Some(report) => report(&created)?,
                            None => {
                                return Err(CliError::Protocol(
                                    "the daemon created a sandbox this exec did not ask for".into(),
                                ));
                            }
                        };
                        if let Some(signal) = interrupted {
                            return Ok(Ended::Interrupted(id, signal));
                        }
                        creating = false;
                        if raw {
                            raw_guard = Some(RawMode::enter()?);
                        }
                        None
                    }
                    Some(exec_response::Msg::StartedPid(_)) => None,
                    Some(exec_response::Msg::Stdout(b)) => {
                        write_through(std::io::stdout().lock(), &b)?;
                        None
                    }
                    Some(exec_response::Msg::Stderr(b)) => {
                        write_through(std::io::stderr().lock(), &b)?;
                        None
                    }
                    Some(exec_response::Msg::RemoveFailed(why)) => {
                        eprintln!("sandboxctl: warning: {why}");
                        None
                    }
                    Some(exec_response::Msg::Exited(exit)) => {
                        drop(raw_guard);
                        return Ok(Ended::Exited(exit));
                    }
                    None => {
                        return Err(CliError::Protocol(
                            "the daemon ended the exec stream before the process exited".into(),
                        ));
                    }
                }
            }
        };
        match forward {
            // Nothing has started yet: the run ends once the create does.
            Some(exec_request::Msg::Signal(n)) if creating => {
                interrupted.get_or_insert(n);
            }
            // A closed stream shows up on the response side; nothing to do
            // here.
            Some(msg) => {
                let _ = tx.send(request(msg)).await;
            }
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_fit_a_status() {
        let code = |c| {
            exit_code(&ExitResult {
                exit_code: c,
                ..Default::default()
            })
        };
        assert_eq!(code(0), 0);
        assert_eq!(code(137), 137);
        assert_eq!(code(255), 255);
        assert_eq!(code(256), 255);
        assert_eq!(code(-1), 255);
    }
}
