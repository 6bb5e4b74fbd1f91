//! The framed protocol between the daemon and a sandbox's supervisor helper.
//!
//! Frames travel over a `SOCK_STREAM` socketpair as a 4-byte big-endian length
//! followed by a JSON body. File descriptors (an Exec's stdio) ride along as
//! `SCM_RIGHTS` on the frame's bytes; a frame says how many it carries
//! (`fds`), and the receiver takes that many from the queue of descriptors it
//! has received, in order. This module is the pure part: message types and
//! the byte codec. Sending and receiving descriptors lives in the supervisor
//! crate's `sys` module.

use serde::{Deserialize, Serialize};

use crate::spec::ProcessSpec;
use crate::verify::{ProbeConfig, ProbeOutput, Verification};

/// Largest frame accepted, so a corrupt length cannot make either side
/// allocate without bound.
pub const MAX_FRAME: usize = 4 << 20;

/// How a process ended, as the supervisor saw it in `waitpid`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProcessExit {
    /// Exited with this code.
    Exited(i32),
    /// Killed by this signal.
    Signaled(i32),
}

impl ProcessExit {
    /// Shell-style code: the exit code, or 128 + signal.
    pub fn code(self) -> i32 {
        match self {
            Self::Exited(c) => c,
            Self::Signaled(s) => 128 + s,
        }
    }
}

/// Which processes a signal goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignalTarget {
    /// One process the supervisor started (main or exec), by host pid.
    Pid(i32),
    /// The process group of one exec (the exec's whole tree, unless a
    /// descendant left the group).
    ExecTree(u64),
}

/// Daemon → supervisor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Request {
    /// Start a process in the sandbox. Carries 3 fds (stdin, stdout,
    /// stderr); with a terminal all three are the pty's replica side.
    Exec {
        /// Daemon-chosen id for this exec.
        exec_id: u64,
        /// What to run (already validated).
        process: ProcessSpec,
    },
    /// Send a signal.
    Signal {
        /// To whom.
        target: SignalTarget,
        /// Signal number.
        signal: i32,
    },
    /// Stop the sandbox: signal every process in it. In IDLE mode the
    /// sandbox ends when no process is left; otherwise when the main process
    /// exits.
    Stop {
        /// Signal number.
        signal: i32,
    },
    /// Kill everything, undo every host change, and exit.
    Shutdown,
    /// Run the isolation probe inside the sandbox: a child that enters it
    /// exactly as a payload would (as `process.user`, in `process.cwd`),
    /// runs the checks in-process instead of exec, and reports
    /// [`Event::VerifyResult`].
    Verify {
        /// Daemon-chosen id for this probe.
        probe_id: u64,
        /// Identity and working directory to probe as (argv is unused).
        process: ProcessSpec,
        /// Host fixtures and expectations.
        config: Box<ProbeConfig>,
    },
}

/// The second frame the daemon sends a new supervisor, right after the
/// launch configuration: what to do before the main process starts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateOptions {
    /// Verify the sandbox after setup and before the main process starts;
    /// a REQUIRED row observed VIOLATED fails the setup at step "verify".
    #[serde(default)]
    pub verify: Option<CreateVerify>,
}

/// A verification at create.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateVerify {
    /// Identity and working directory to probe as.
    pub process: ProcessSpec,
    /// Host fixtures and expectations.
    pub config: ProbeConfig,
    /// The sandbox's isolation report (the claims).
    pub report: crate::capability::IsolationReport,
}

/// Supervisor → daemon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// Setup finished; the main process (if any) is running.
    Ready {
        /// Host pid of the main process (None in IDLE mode).
        main_pid: Option<i32>,
        /// The verification made before the main process started, when the
        /// create asked for one.
        #[serde(default)]
        verification: Option<Box<Verification>>,
    },
    /// Setup failed at `step`; the supervisor has undone what it did and
    /// exits.
    SetupFailed {
        /// The step that failed.
        step: String,
        /// Why.
        message: String,
    },
    /// An exec's process started.
    ExecStarted {
        /// The daemon's id for it.
        exec_id: u64,
        /// Host pid.
        pid: i32,
    },
    /// An exec could not start.
    ExecFailed {
        /// The daemon's id for it.
        exec_id: u64,
        /// The step that failed.
        step: String,
        /// Why.
        message: String,
    },
    /// An exec's process ended.
    ExecExited {
        /// The daemon's id for it.
        exec_id: u64,
        /// How.
        exit: ProcessExit,
        /// SIGKILLed while the sandbox's OOM-kill counter rose.
        #[serde(default)]
        oom_killed: bool,
    },
    /// The sandbox ended (main process exited, or IDLE stopped). Every
    /// process in it is gone.
    SandboxExited {
        /// How the main process ended (for IDLE, the stop signal).
        exit: ProcessExit,
        /// The kernel's OOM killer acted in the sandbox's memory cgroup.
        #[serde(default)]
        oom_killed: bool,
    },
    /// A Signal request could not be delivered.
    SignalFailed {
        /// The target.
        target: SignalTarget,
        /// Why.
        message: String,
    },
    /// A restarted daemon connected on the control socket; this is what
    /// runs now.
    Attached {
        /// Host pid of the main process, if it is still running.
        main_pid: Option<i32>,
    },
    /// Shutdown finished; the supervisor exits next.
    ShutdownComplete,
    /// A Verify request's probe finished (or could not run).
    VerifyResult {
        /// The daemon's id for it.
        probe_id: u64,
        /// What the probe observed.
        #[serde(default)]
        output: Option<Box<ProbeOutput>>,
        /// Why it could not run (the failed step and message).
        #[serde(default)]
        error: Option<String>,
    },
}

/// Errors decoding frames.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// A length prefix over [`MAX_FRAME`].
    #[error("frame of {0} bytes exceeds the {MAX_FRAME}-byte limit")]
    FrameTooLarge(usize),
    /// A body that is not the expected JSON.
    #[error("malformed frame: {0}")]
    Malformed(#[from] serde_json::Error),
}

/// Encodes one frame: length prefix and JSON body.
pub fn encode<T: Serialize>(msg: &T) -> Result<Vec<u8>, WireError> {
    frame(&serde_json::to_vec(msg)?)
}

/// Frames an already-encoded JSON body (the backend's launch
/// configuration).
pub fn frame(body: &[u8]) -> Result<Vec<u8>, WireError> {
    if body.len() > MAX_FRAME {
        return Err(WireError::FrameTooLarge(body.len()));
    }
    let len = u32::try_from(body.len()).map_err(|_| WireError::FrameTooLarge(body.len()))?;
    let mut out = Vec::with_capacity(4 + body.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(body);
    Ok(out)
}

/// Accumulates bytes and yields complete frames.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
}

impl Decoder {
    /// Adds received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete frame, if one is buffered.
    pub fn next_frame<T: for<'de> Deserialize<'de>>(&mut self) -> Result<Option<T>, WireError> {
        let Some(header) = self.buf.first_chunk::<4>() else {
            return Ok(None);
        };
        let len = u32::from_be_bytes(*header) as usize;
        if len > MAX_FRAME {
            return Err(WireError::FrameTooLarge(len));
        }
        if self.buf.len() < 4 + len {
            return Ok(None);
        }
        let msg = serde_json::from_slice(&self.buf[4..4 + len]);
        self.buf.drain(..4 + len);
        Ok(Some(msg?))
    }
}

impl Request {
    /// How many file descriptors travel with this request.
    pub fn fd_count(&self) -> usize {
        match self {
            Self::Exec { .. } => 3,
            _ => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_split_anywhere() {
        let msgs = vec![
            Request::Stop { signal: 15 },
            Request::Exec {
                exec_id: 7,
                process: ProcessSpec {
                    argv: vec!["/bin/echo".into(), "hi".into()],
                    ..Default::default()
                },
            },
            Request::Shutdown,
        ];
        let bytes: Vec<u8> = msgs
            .iter()
            .flat_map(|m| encode(m).expect("encode"))
            .collect();
        for split in 0..bytes.len() {
            let mut d = Decoder::default();
            let mut got = Vec::new();
            for chunk in [&bytes[..split], &bytes[split..]] {
                d.push(chunk);
                while let Some(m) = d.next_frame::<Request>().expect("decode") {
                    got.push(m);
                }
            }
            assert_eq!(got, msgs);
        }
    }

    #[test]
    fn oversized_length_is_refused() {
        let mut d = Decoder::default();
        d.push(&u32::MAX.to_be_bytes());
        assert!(matches!(
            d.next_frame::<Event>(),
            Err(WireError::FrameTooLarge(_))
        ));
    }

    #[test]
    fn exit_codes() {
        assert_eq!(ProcessExit::Exited(3).code(), 3);
        assert_eq!(ProcessExit::Signaled(9).code(), 137);
    }
}
