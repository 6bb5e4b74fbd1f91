//! The framed protocol between the daemon and a sandbox's supervisor helper.
//!
//! Frames travel over a `SOCK_STREAM` socketpair as a 4-byte big-endian length
//! followed by a JSON body. File descriptors (an Exec's stdio) ride along as
//! `SCM_RIGHTS` on the frame's bytes; a frame says how many it carries
//! (`fds`), and the receiver takes that many from the queue of descriptors it
//! has received, in order. This module is the pure part: message types and
//! the byte codec. Sending and receiving descriptors lives in the supervisor
//! crate's `sys` module.
//!
//! # Versions
//!
//! A supervisor outlives the daemon that started it, so a daemon that was
//! restarted, perhaps upgraded, reattaches to supervisors of an older (or,
//! after a downgrade, newer) version. The supervisor announces its
//! [`PROTOCOL`] in [`Event::Attached`], the first frame on a reattached
//! channel; supervisors from before versioning send none and are
//! [`UNVERSIONED`]. The daemon adapts; a supervisor never needs to know the
//! daemon's version. Compatibility means:
//!
//! - fields are only added, each `#[serde(default)]` so a frame without it
//!   decodes, and unknown fields are ignored (no `deny_unknown_fields`);
//! - variants are only added: a receiver skips a variant it does not know
//!   ([`Decoder::next_message`] returns [`Message::Unknown`]) rather than
//!   failing the channel; a known variant that does not decode is still an
//!   error;
//! - the daemon never sends a request newer than the supervisor's protocol
//!   ([`Request::since`]): a supervisor that cannot decode a request stops
//!   reading its channel (the ones before versioning do), so the daemon
//!   refuses the call instead;
//! - nothing is removed or renamed without raising the protocol, and then
//!   the daemon keeps speaking the old form to old supervisors.
//!
//! The launch configuration and create options need no version: the daemon
//! sends them only to a supervisor it has just started from its own binary.

use serde::{Deserialize, Serialize};

use crate::spec::ProcessSpec;
use crate::verify::{ProbeConfig, ProbeOutput, Verification};

/// The step an `ExecFailed` (or a main process's `SetupFailed`) names when
/// the program does not exist (a path naming nothing, or a name found on
/// no PATH entry), as opposed to one that exists and cannot be run: the
/// daemon passes the step to clients, and sandboxctl exits 127 for this
/// one, 126 for the others (as `docker exec` does).
pub const PROGRAM_NOT_FOUND: &str = "find program";

/// This build's protocol version. 2: `Attached` carries `protocol`. 3:
/// `Exec` may ask the supervisor for the terminal (`pty`), and
/// `ExecStarted` then carries its controlling side. 4: `ExitRecorded`.
pub const PROTOCOL: u32 = 4;

/// The protocol of a supervisor that announces none: every one from before
/// versioning (some of them know `Verify`, some do not).
pub const UNVERSIONED: u32 = 1;

fn unversioned() -> u32 {
    UNVERSIONED
}

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
    /// stderr); with a terminal all three are the pty's replica side. With
    /// `pty` it carries none: the supervisor allocates the terminal (inside
    /// the sandbox's own devpts where the backend has one) and sends its
    /// controlling side with `ExecStarted`.
    Exec {
        /// Daemon-chosen id for this exec.
        exec_id: u64,
        /// What to run (already validated).
        process: ProcessSpec,
        /// Allocate the terminal here, of this size (protocol 3).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pty: Option<PtySize>,
        /// Started detached (informational: kept for [`RunningExec`]).
        #[serde(default)]
        detached: bool,
        /// `process.cwd` is the image's WorkingDir, not the request's: made
        /// (with its parents) if missing, as for a main process and as
        /// Docker makes an image's WORKDIR. A supervisor from before this
        /// field ignores it (the exec then fails at its chdir, as before).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        make_cwd: bool,
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
    /// The daemon has the exit that `SandboxExited` reported in its
    /// journal, so the supervisor need not write the exit file for a daemon
    /// that is away (protocol 4).
    ExitRecorded,
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

/// An exec still running, as a supervisor tells a restarted daemon (so
/// the daemon's exec records survive its restart).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunningExec {
    /// The daemon's id for it.
    pub exec_id: u64,
    /// Host pid.
    pub pid: i32,
    /// What runs.
    pub argv: Vec<String>,
    /// It has a terminal.
    pub tty: bool,
    /// Started detached.
    pub detached: bool,
    /// When it started, ms since the epoch.
    pub started_at_ms: i64,
}

/// A terminal's size in character cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PtySize {
    /// Rows.
    pub rows: u16,
    /// Columns.
    pub cols: u16,
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

/// One timed step of a supervisor's setup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepTime {
    /// The step ("create cgroups", "clone pid 1", ...).
    pub step: String,
    /// Its duration in microseconds.
    pub us: u64,
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
        /// How long each setup step took, in order (logged by the daemon at
        /// debug level; empty from a supervisor that does not time them).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        steps: Vec<StepTime>,
        /// Host pid of the sandbox's first process, where the backend has
        /// one (Linux: pid 1, whose namespaces a child sandbox joins).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        init_pid: Option<i32>,
    },
    /// Setup failed at `step`; the supervisor has undone what it did and
    /// exits.
    SetupFailed {
        /// The step that failed.
        step: String,
        /// Why.
        message: String,
    },
    /// An exec's process started. With `pty` it carries 1 fd: the
    /// controlling side of the terminal the supervisor allocated.
    ExecStarted {
        /// The daemon's id for it.
        exec_id: u64,
        /// Host pid.
        pid: i32,
        /// Carries the terminal's controlling side (an `Exec` with `pty`).
        #[serde(default)]
        pty: bool,
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
    /// The sandbox ended (main process exited, IDLE stopped, or a
    /// `Shutdown` killed it), sent before the teardown.
    SandboxExited {
        /// How the main process ended (for IDLE, the stop signal).
        exit: ProcessExit,
        /// The kernel's OOM killer acted in the sandbox's memory cgroup.
        #[serde(default)]
        oom_killed: bool,
        /// Every process of the sandbox is known to be dead, orphans
        /// adopted elsewhere included (the backend could tell: Linux).
        /// Otherwise (and from older supervisors) some may only die in the
        /// teardown, which a destroy then waits for.
        #[serde(default)]
        none_left: bool,
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
        /// The supervisor's [`PROTOCOL`]; [`UNVERSIONED`] when absent.
        #[serde(default = "unversioned")]
        protocol: u32,
        /// The execs still running (protocol 3; empty before).
        #[serde(default)]
        execs: Vec<RunningExec>,
        /// As `Ready`'s (absent from older supervisors).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        init_pid: Option<i32>,
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

/// A decoded [`Request`] or [`Event`] frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message<T> {
    /// A message this build knows.
    Known(T),
    /// A variant this build does not know (the peer is newer): skipped.
    Unknown {
        /// Its name on the wire.
        variant: String,
    },
}

impl Decoder {
    /// Adds received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete frame, if one is buffered; anything that does not
    /// decode as `T` is an error (the launch configuration, the create
    /// options).
    pub fn next_frame<T: for<'de> Deserialize<'de>>(&mut self) -> Result<Option<T>, WireError> {
        let Some(body) = self.next_body()? else {
            return Ok(None);
        };
        Ok(Some(serde_json::from_slice(&body)?))
    }

    /// The next complete [`Request`] or [`Event`] frame, if one is
    /// buffered: a variant this build does not know is
    /// [`Message::Unknown`], for the caller to log and skip; a known one
    /// that does not decode is an error.
    pub fn next_message<T: for<'de> Deserialize<'de>>(
        &mut self,
    ) -> Result<Option<Message<T>>, WireError> {
        let Some(body) = self.next_body()? else {
            return Ok(None);
        };
        match serde_json::from_slice(&body) {
            Ok(msg) => Ok(Some(Message::Known(msg))),
            Err(e) => match unknown_variant::<T>(&body) {
                Some(variant) => Ok(Some(Message::Unknown { variant })),
                None => Err(e.into()),
            },
        }
    }

    /// Takes the next complete frame's body off the buffer.
    fn next_body(&mut self) -> Result<Option<Vec<u8>>, WireError> {
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
        let body = self.buf[4..4 + len].to_vec();
        self.buf.drain(..4 + len);
        Ok(Some(body))
    }
}

/// The variant a frame names, when it is not one of `T`'s: an externally
/// tagged enum is `"unit_variant"` or `{"variant": ...}`.
fn unknown_variant<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Option<String> {
    let variant = match serde_json::from_slice::<serde_json::Value>(body).ok()? {
        serde_json::Value::String(s) => s,
        serde_json::Value::Object(map) if map.len() == 1 => map.into_iter().next()?.0,
        _ => return None,
    };
    (!variant_names::<T>().contains(&variant.as_str())).then_some(variant)
}

/// The variant names serde's derive gave enum `T`, as it hands them to
/// `deserialize_enum` (so no list is kept by hand beside the enum).
fn variant_names<T: for<'de> Deserialize<'de>>() -> &'static [&'static str] {
    use serde::de::value::Error as ValueError;
    use serde::de::{Error, Visitor};

    struct Names<'a>(&'a mut &'static [&'static str]);

    impl<'de> serde::Deserializer<'de> for Names<'_> {
        type Error = ValueError;

        fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, ValueError> {
            Err(ValueError::custom("not an enum"))
        }

        fn deserialize_enum<V: Visitor<'de>>(
            self,
            _name: &'static str,
            variants: &'static [&'static str],
            _visitor: V,
        ) -> Result<V::Value, ValueError> {
            *self.0 = variants;
            Err(ValueError::custom("only the names were wanted"))
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
            bytes byte_buf option unit unit_struct newtype_struct seq tuple
            tuple_struct map struct identifier ignored_any
        }
    }

    let mut names: &'static [&'static str] = &[];
    let _ = T::deserialize(Names(&mut names));
    names
}

impl Request {
    /// How many file descriptors travel with this request.
    pub fn fd_count(&self) -> usize {
        match self {
            Self::Exec { pty: None, .. } => 3,
            Self::Exec { pty: Some(_), .. } => 0,
            Self::Signal { .. }
            | Self::Stop { .. }
            | Self::Shutdown
            | Self::Verify { .. }
            | Self::ExitRecorded => 0,
        }
    }

    /// The first protocol whose supervisors are known to understand this
    /// request. `Verify` came shortly before versioning: an
    /// [`UNVERSIONED`] supervisor may not know it.
    pub fn since(&self) -> u32 {
        match self {
            Self::Exec { pty: None, .. }
            | Self::Signal { .. }
            | Self::Stop { .. }
            | Self::Shutdown => UNVERSIONED,
            Self::Verify { .. } => 2,
            Self::Exec { pty: Some(_), .. } => 3,
            Self::ExitRecorded => 4,
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
                pty: None,
                detached: false,
                make_cwd: false,
            },
            Request::Exec {
                exec_id: 8,
                process: ProcessSpec::default(),
                pty: Some(PtySize { rows: 24, cols: 80 }),
                detached: false,
                make_cwd: true,
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
    fn make_cwd_is_written_only_when_set_and_read_as_unset_when_absent() {
        let exec = |make_cwd| Request::Exec {
            exec_id: 3,
            process: ProcessSpec::default(),
            pty: None,
            detached: false,
            make_cwd,
        };
        // Unset, the frame is the one an older supervisor has always read.
        let plain = serde_json::to_string(&exec(false)).expect("encode");
        assert!(!plain.contains("make_cwd"), "{plain}");
        assert_eq!(
            serde_json::from_str::<Request>(&plain).expect("decode"),
            exec(false)
        );
        let set = serde_json::to_string(&exec(true)).expect("encode");
        assert_eq!(
            serde_json::from_str::<Request>(&set).expect("decode"),
            exec(true)
        );
    }

    #[test]
    fn exit_recorded_needs_protocol_4_and_an_older_supervisor_skips_it() {
        assert_eq!(
            (
                Request::ExitRecorded.since(),
                Request::ExitRecorded.fd_count()
            ),
            (4, 0)
        );
        // What a supervisor of protocol 3 makes of it: an unknown variant,
        // skipped, not a broken channel.
        let frame = encode(&Request::ExitRecorded).expect("encode");
        let mut d = Decoder::default();
        d.push(&frame);
        #[derive(Debug, Deserialize)]
        #[serde(rename_all = "snake_case")]
        enum Protocol3 {
            Shutdown,
        }
        match d.next_message::<Protocol3>().expect("decode") {
            Some(Message::Unknown { variant }) => assert_eq!(variant, "exit_recorded"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_exec_asking_for_the_terminal_needs_protocol_3_and_carries_no_fds() {
        let exec = |pty| Request::Exec {
            exec_id: 1,
            process: ProcessSpec::default(),
            pty,
            detached: false,
            make_cwd: false,
        };
        let with = exec(Some(PtySize { rows: 1, cols: 1 }));
        assert_eq!((with.since(), with.fd_count()), (3, 0));
        assert_eq!(
            (exec(None).since(), exec(None).fd_count()),
            (UNVERSIONED, 3)
        );
        // Ours without a terminal is written as before (an older
        // supervisor reads it).
        assert!(
            !serde_json::to_string(&exec(None))
                .expect("encode")
                .contains("pty")
        );
        // A supervisor's ExecStarted from before protocol 3.
        let started: Event =
            serde_json::from_str(r#"{"exec_started":{"exec_id":2,"pid":9}}"#).expect("decode");
        assert_eq!(
            started,
            Event::ExecStarted {
                exec_id: 2,
                pid: 9,
                pty: false
            }
        );
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

    /// Frames exactly as a supervisor of protocol 1 (before versioning)
    /// wrote them: the fields added since take their defaults.
    #[test]
    fn frames_of_an_unversioned_supervisor_decode() {
        let cases: &[(&str, Event)] = &[
            (
                r#"{"attached":{"main_pid":5}}"#,
                Event::Attached {
                    main_pid: Some(5),
                    protocol: UNVERSIONED,
                    execs: Vec::new(),
                    init_pid: None,
                },
            ),
            (
                r#"{"ready":{"main_pid":null}}"#,
                Event::Ready {
                    main_pid: None,
                    verification: None,
                    steps: Vec::new(),
                    init_pid: None,
                },
            ),
            (
                r#"{"exec_exited":{"exec_id":2,"exit":{"signaled":9}}}"#,
                Event::ExecExited {
                    exec_id: 2,
                    exit: ProcessExit::Signaled(9),
                    oom_killed: false,
                },
            ),
            (
                r#"{"sandbox_exited":{"exit":{"exited":1}}}"#,
                Event::SandboxExited {
                    exit: ProcessExit::Exited(1),
                    oom_killed: false,
                    none_left: false,
                },
            ),
            (r#""shutdown_complete""#, Event::ShutdownComplete),
        ];
        for (json, want) in cases {
            let mut d = Decoder::default();
            d.push(&frame(json.as_bytes()).expect("frame"));
            assert_eq!(
                d.next_message::<Event>().expect(json),
                Some(Message::Known(want.clone())),
                "{json}"
            );
        }
    }

    /// A newer peer's variant is skipped, the frames around it still
    /// decode; a known variant that does not decode is still an error.
    #[test]
    fn unknown_variants_are_skipped_and_broken_known_ones_are_errors() {
        let mut d = Decoder::default();
        for json in [
            r#"{"checkpoint_taken":{"path":"/x"}}"#,
            r#""future_unit""#,
            r#""shutdown_complete""#,
        ] {
            d.push(&frame(json.as_bytes()).expect("frame"));
        }
        let unknown = |v: &str| {
            Some(Message::<Event>::Unknown {
                variant: v.to_owned(),
            })
        };
        assert_eq!(
            d.next_message::<Event>().unwrap(),
            unknown("checkpoint_taken")
        );
        assert_eq!(d.next_message::<Event>().unwrap(), unknown("future_unit"));
        assert_eq!(
            d.next_message::<Event>().unwrap(),
            Some(Message::Known(Event::ShutdownComplete))
        );
        assert_eq!(d.next_message::<Event>().unwrap(), None);

        for broken in [
            r#"{"ready":{"main_pid":"seven"}}"#,
            r#"{"exec_started":{}}"#,
            r#"[1,2]"#,
            r#"{"a":1,"b":2}"#,
        ] {
            let mut d = Decoder::default();
            d.push(&frame(broken.as_bytes()).expect("frame"));
            assert!(d.next_message::<Event>().is_err(), "{broken}");
        }
        // Requests too: a newer daemon's request is skipped by a supervisor.
        let mut d = Decoder::default();
        d.push(&frame(br#"{"checkpoint":{"to":"/x"}}"#).expect("frame"));
        assert_eq!(
            d.next_message::<Request>().unwrap(),
            Some(Message::Unknown {
                variant: "checkpoint".into()
            })
        );
    }

    #[test]
    fn variant_names_come_from_the_derive() {
        let names = variant_names::<Event>();
        for ev in [
            Event::ShutdownComplete,
            Event::Attached {
                main_pid: None,
                protocol: PROTOCOL,
                execs: Vec::new(),
                init_pid: None,
            },
        ] {
            let json = serde_json::to_value(&ev).unwrap();
            let tag = match json {
                serde_json::Value::String(s) => s,
                serde_json::Value::Object(m) => m.into_iter().next().unwrap().0,
                other => panic!("{other}"),
            };
            assert!(names.contains(&tag.as_str()), "{tag} in {names:?}");
        }
        assert!(variant_names::<Request>().contains(&"verify"));
    }

    #[test]
    fn exit_codes() {
        assert_eq!(ProcessExit::Exited(3).code(), 3);
        assert_eq!(ProcessExit::Signaled(9).code(), 137);
    }
}
