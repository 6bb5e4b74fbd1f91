//! The handshake between the supervisor and the sandbox's pid 1 while pid 1
//! builds the sandbox: typed messages with one encoding, and the waits each
//! side makes (the shape of youki's `process/message.rs` and `channel.rs`).
//!
//! Two close-on-exec pipes: "go" (supervisor → pid 1) and "ready" (pid 1 →
//! supervisor). The exchange is
//!
//! ```text
//! supervisor                          pid 1
//!   Go                      ──────►   builds the root (mounts, hostname)
//!   makes the v1 cgroups
//!   CgroupsMade             ──────►   joins them itself, then the rest of its
//!                                     steps (pivot_root, cgroup namespace, ...)
//!                           ◄──────   NeedIdMaps   (user namespace only)
//!   writes uid_map, gid_map
//!   IdMapsWritten           ──────►
//!                           ◄──────   Ready        (a reaper), or
//!                                     EOF          (INIT: the init exec'd), or
//!                                     Failed(step) and exit
//! ```
//!
//! pid 1 is a clone of the supervisor (the same binary), so the encoding
//! need not be stable across versions; it is one byte per message, and a
//! failure's `step\0message` runs to the end of the pipe (pid 1 exits right
//! after writing it).

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};

use sandboxd_supervisor::{Step, StepError};

use crate::sys;

/// Supervisor → pid 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToInit {
    /// Build the sandbox.
    Go,
    /// Every cgroup directory exists with its limits: pid 1 joins them
    /// itself (`JoinCgroups`), then goes on.
    CgroupsMade,
    /// The uid and gid maps of pid 1's new user namespace are written.
    IdMapsWritten,
}

/// pid 1 → supervisor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FromInit {
    /// pid 1 has unshared its user namespace and waits for the id maps
    /// ([`ToInit::IdMapsWritten`]).
    NeedIdMaps,
    /// The sandbox is built; pid 1 stays a reaper.
    Ready,
    /// A step failed; pid 1 exits.
    Failed(StepError),
}

const GO: u8 = b'g';
const CGROUPS_MADE: u8 = b'c';
const ID_MAPS_WRITTEN: u8 = b'm';
const NEED_ID_MAPS: u8 = b'U';
const READY: u8 = b'R';
const FAILED: u8 = b'F';

impl ToInit {
    fn encode(self) -> u8 {
        match self {
            Self::Go => GO,
            Self::CgroupsMade => CGROUPS_MADE,
            Self::IdMapsWritten => ID_MAPS_WRITTEN,
        }
    }

    /// Reads one message; `None` when the supervisor closed its end.
    fn read_from(r: &mut impl Read) -> io::Result<Option<Self>> {
        match read_byte(r)? {
            None => Ok(None),
            Some(GO) => Ok(Some(Self::Go)),
            Some(CGROUPS_MADE) => Ok(Some(Self::CgroupsMade)),
            Some(ID_MAPS_WRITTEN) => Ok(Some(Self::IdMapsWritten)),
            Some(other) => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("unexpected message byte {other:#04x} from the supervisor"),
            )),
        }
    }
}

impl FromInit {
    fn encode(&self) -> Vec<u8> {
        match self {
            Self::NeedIdMaps => vec![NEED_ID_MAPS],
            Self::Ready => vec![READY],
            Self::Failed(e) => {
                let mut out = vec![FAILED];
                out.extend_from_slice(e.step.name().as_bytes());
                out.push(0);
                out.extend_from_slice(e.message.as_bytes());
                out
            }
        }
    }

    /// Reads one message; `None` when pid 1 closed its end (an init's
    /// successful exec, or an exit).
    fn read_from(r: &mut impl Read) -> io::Result<Option<Self>> {
        match read_byte(r)? {
            None => Ok(None),
            Some(NEED_ID_MAPS) => Ok(Some(Self::NeedIdMaps)),
            Some(READY) => Ok(Some(Self::Ready)),
            Some(FAILED) => {
                let mut rest = Vec::new();
                r.read_to_end(&mut rest)?;
                let text = String::from_utf8_lossy(&rest);
                let failed = match text.split_once('\0') {
                    // pid 1 and the supervisor are one binary: an unknown
                    // step name means the message was mangled.
                    Some((name, message)) => match Step::from_name(name) {
                        Some(step) => StepError::new(step, message),
                        None => StepError::new(
                            Step::SandboxInit,
                            format!("unknown step {name:?} in a failure report: {message}"),
                        ),
                    },
                    None => StepError::new(Step::SandboxInit, text),
                };
                Ok(Some(Self::Failed(failed)))
            }
            Some(other) => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("unexpected message byte {other:#04x} from the sandbox init"),
            )),
        }
    }
}

fn read_byte(r: &mut impl Read) -> io::Result<Option<u8>> {
    let mut byte = [0u8; 1];
    loop {
        match r.read(&mut byte) {
            Ok(0) => return Ok(None),
            Ok(_) => return Ok(Some(byte[0])),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// The supervisor's ends: it writes "go", reads "ready".
#[derive(Debug)]
pub struct InitChannel {
    go: File,
    ready: File,
}

/// pid 1's ends: it reads "go", writes "ready".
#[derive(Debug)]
pub struct SupervisorChannel {
    go: File,
    ready: File,
}

/// Both pipes, close-on-exec: the supervisor keeps the [`InitChannel`],
/// pid 1 the [`SupervisorChannel`].
pub fn pair() -> Result<(InitChannel, SupervisorChannel), StepError> {
    let pipe = || sys::pipe().map_err(|e| StepError::new(Step::CreateSyncPipe, e));
    let (go_r, go_w) = pipe()?;
    let (ready_r, ready_w) = pipe()?;
    Ok((
        InitChannel {
            go: File::from(go_w),
            ready: File::from(ready_r),
        },
        SupervisorChannel {
            go: File::from(go_r),
            ready: File::from(ready_w),
        },
    ))
}

impl InitChannel {
    /// Sends one message to pid 1.
    pub fn send(&mut self, msg: ToInit) -> Result<(), StepError> {
        self.go
            .write_all(&[msg.encode()])
            .map_err(|e| StepError::new(Step::ReleaseSandboxInit, e))
    }

    /// Waits for pid 1's next message; `None` when it closed its end.
    pub fn recv(&mut self) -> Result<Option<FromInit>, StepError> {
        FromInit::read_from(&mut self.ready).map_err(|e| StepError::new(Step::SandboxInit, e))
    }

    /// The failure pid 1 reported, if it reports one within `wait`: after
    /// `Go`, pid 1 builds while the supervisor still works, so a step of
    /// the supervisor that fails (a cgroup it cannot make, the
    /// `CgroupsMade` a pid 1 that is gone can no longer read) reports
    /// pid 1's own failure, the cause, when there is one. pid 1 writes
    /// nothing else before `CgroupsMade`, so this never consumes another
    /// message.
    pub fn failure_within(&mut self, wait: std::time::Duration) -> Option<StepError> {
        use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
        use std::os::fd::AsFd;
        let ms = u16::try_from(wait.as_millis()).unwrap_or(u16::MAX);
        let mut fds = [PollFd::new(self.ready.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(n) if n > 0 => match self.recv() {
                Ok(Some(FromInit::Failed(e))) => Some(e),
                _ => None,
            },
            _ => None,
        }
    }
}

impl SupervisorChannel {
    /// Waits for `want` from the supervisor; anything else (its end
    /// closed: it died) fails at `step`.
    pub fn wait_for(&mut self, want: ToInit, step: Step) -> Result<(), StepError> {
        match ToInit::read_from(&mut self.go) {
            Ok(Some(got)) if got == want => Ok(()),
            Ok(Some(got)) => Err(StepError::new(
                step,
                format!("expected {want:?} from the supervisor, got {got:?}"),
            )),
            Ok(None) => Err(StepError::new(step, "the supervisor closed the sync pipe")),
            Err(e) => Err(StepError::new(step, e)),
        }
    }

    /// Sends one message to the supervisor.
    pub fn send(&mut self, msg: &FromInit) -> io::Result<()> {
        self.ready.write_all(&msg.encode())
    }

    /// The descriptors pid 1 must keep open while it builds the sandbox.
    pub fn raw_fds(&self) -> [RawFd; 2] {
        [self.go.as_raw_fd(), self.ready.as_raw_fd()]
    }

    /// The "ready" end, which an init keeps until its exec closes it.
    pub fn ready_fd(&self) -> RawFd {
        self.ready.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn messages_round_trip() {
        let from = [
            FromInit::NeedIdMaps,
            FromInit::Ready,
            FromInit::Failed(StepError::new(Step::Mount, "/proc: EPERM")),
        ];
        for msg in from {
            let bytes = msg.encode();
            let mut r = io::Cursor::new(bytes);
            assert_eq!(FromInit::read_from(&mut r).unwrap(), Some(msg.clone()));
            assert_eq!(FromInit::read_from(&mut r).unwrap(), None, "{msg:?}");
        }
        for msg in [ToInit::Go, ToInit::CgroupsMade, ToInit::IdMapsWritten] {
            let mut r = io::Cursor::new(vec![msg.encode()]);
            assert_eq!(ToInit::read_from(&mut r).unwrap(), Some(msg));
            assert_eq!(ToInit::read_from(&mut r).unwrap(), None);
        }
    }

    #[test]
    fn a_sequence_reads_in_order() {
        let mut bytes = FromInit::NeedIdMaps.encode();
        bytes.extend(FromInit::Ready.encode());
        let mut r = io::Cursor::new(bytes);
        assert_eq!(
            FromInit::read_from(&mut r).unwrap(),
            Some(FromInit::NeedIdMaps)
        );
        assert_eq!(FromInit::read_from(&mut r).unwrap(), Some(FromInit::Ready));
        assert_eq!(FromInit::read_from(&mut r).unwrap(), None);
    }

    #[test]
    fn garbage_is_an_error_not_a_message() {
        let mut r = io::Cursor::new(vec![b'x']);
        assert!(FromInit::read_from(&mut r).is_err());
        let mut r = io::Cursor::new(vec![b'R']);
        assert!(ToInit::read_from(&mut r).is_err());
    }

    #[test]
    fn a_failure_without_separator_keeps_its_text() {
        let mut r = io::Cursor::new(b"Fboom".to_vec());
        assert_eq!(
            FromInit::read_from(&mut r).unwrap(),
            Some(FromInit::Failed(StepError::new(Step::SandboxInit, "boom")))
        );
    }
}
