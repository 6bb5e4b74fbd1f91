//! What a forked child tells the supervisor on its close-on-exec error pipe:
//! typed messages with one encoding. EOF right after `Executing` means the
//! exec succeeded (the pipe closed with it); EOF before it, that the child
//! died on the way (killed: it never ran the program).
//!
//! The child is a fork of the supervisor (the same binary), so the encoding
//! need not be stable across versions. Each message starts with a marker
//! byte; `Entered` is that byte alone, a probe's output and a failure run
//! to the end of the pipe (the child exits right after writing them).

use std::os::fd::BorrowedFd;

use crate::step::Step;
use crate::supervisor::StepError;
use crate::sys;

const PROBE: u8 = 0x02;
const FAILED: u8 = 0x03;
const ENTERED: u8 = 0x04;
const EXECUTING: u8 = 0x05;

/// One message on the error pipe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Report {
    /// The probe's child has entered the sandbox (its cgroups joined):
    /// what is read of it from outside now is the sandbox's. First.
    Entered,
    /// A payload's child is past every step and execs now: EOF after
    /// this is the exec's, unless a failure follows.
    Executing,
    /// The isolation probe's output (JSON), instead of an exec.
    Probe(Vec<u8>),
    /// The step that failed; the child exits.
    Failed(StepError),
}

impl Report {
    /// The message's bytes.
    pub(crate) fn encode(&self) -> Vec<u8> {
        match self {
            Self::Entered => vec![ENTERED],
            Self::Executing => vec![EXECUTING],
            Self::Probe(json) => {
                let mut out = Vec::with_capacity(json.len() + 1);
                out.push(PROBE);
                out.extend_from_slice(json);
                out
            }
            Self::Failed(e) => {
                let mut out = vec![FAILED];
                out.extend_from_slice(e.step.name().as_bytes());
                out.push(0);
                out.extend_from_slice(e.message.as_bytes());
                out
            }
        }
    }

    /// Writes the message whole to the pipe. Best effort: a supervisor that
    /// is gone cannot hear it.
    pub(crate) fn send(&self, pipe: BorrowedFd<'_>) {
        let _ = sys::write_all(pipe, &self.encode());
    }
}

/// How the child's part ended, after the optional `Entered` and
/// `Executing`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum End {
    /// The pipe closed with nothing more said: after `Executing`, the exec
    /// succeeded; without it, the child died before (a probe without a
    /// report).
    Closed,
    /// The probe's output.
    Probe(Vec<u8>),
    /// A step failed.
    Failed(StepError),
}

/// Everything read from an error pipe up to EOF.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reports {
    /// [`Report::Entered`] came.
    pub(crate) entered: bool,
    /// [`Report::Executing`] came.
    pub(crate) executing: bool,
    /// How it ended.
    pub(crate) end: End,
}

/// Decodes what was read from an error pipe. Bytes that are no message
/// are a failure of the child, never a success.
pub(crate) fn decode(bytes: &[u8]) -> Reports {
    let entered = bytes.first() == Some(&ENTERED);
    let rest = if entered { &bytes[1..] } else { bytes };
    let executing = rest.first() == Some(&EXECUTING);
    let rest = if executing { &rest[1..] } else { rest };
    let end = match rest.split_first() {
        None => End::Closed,
        Some((&PROBE, json)) => End::Probe(json.to_vec()),
        Some((&FAILED, text)) => {
            let text = String::from_utf8_lossy(text);
            match text.split_once('\0') {
                // The payload and this process are one binary: an unknown
                // step name means the report was mangled.
                Some((name, message)) => match Step::from_name(name) {
                    Some(step) => End::Failed(StepError::new(step, message)),
                    None => malformed(rest),
                },
                None => End::Failed(StepError::new(Step::Exec, text)),
            }
        }
        Some(_) => malformed(rest),
    };
    Reports {
        entered,
        executing,
        end,
    }
}

fn malformed(bytes: &[u8]) -> End {
    End::Failed(StepError::new(
        Step::ReadErrorPipe,
        format!(
            "malformed report from the child: {:?}",
            String::from_utf8_lossy(&bytes[..bytes.len().min(64)])
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequences_decode_as_written() {
        let failed = StepError::new(Step::Setuid, "1000: EPERM");
        let cases: Vec<(Vec<Report>, Reports)> = vec![
            (
                vec![],
                Reports {
                    entered: false,
                    executing: false,
                    end: End::Closed,
                },
            ),
            (
                vec![Report::Executing],
                Reports {
                    entered: false,
                    executing: true,
                    end: End::Closed,
                },
            ),
            (
                vec![Report::Executing, Report::Failed(failed.clone())],
                Reports {
                    entered: false,
                    executing: true,
                    end: End::Failed(failed.clone()),
                },
            ),
            (
                vec![Report::Failed(failed.clone())],
                Reports {
                    entered: false,
                    executing: false,
                    end: End::Failed(failed.clone()),
                },
            ),
            (
                vec![Report::Entered],
                Reports {
                    entered: true,
                    executing: false,
                    end: End::Closed,
                },
            ),
            (
                vec![Report::Entered, Report::Probe(b"{}".to_vec())],
                Reports {
                    entered: true,
                    executing: false,
                    end: End::Probe(b"{}".to_vec()),
                },
            ),
            (
                vec![Report::Entered, Report::Failed(failed.clone())],
                Reports {
                    entered: true,
                    executing: false,
                    end: End::Failed(failed),
                },
            ),
        ];
        for (written, want) in cases {
            let bytes: Vec<u8> = written.iter().flat_map(Report::encode).collect();
            assert_eq!(decode(&bytes), want, "{written:?}");
        }
    }

    #[test]
    fn garbage_is_a_failure_never_a_success() {
        for bytes in [
            &b"x"[..],
            b"\x01nope\n",
            b"\x0112",
            b"\x01\n",
            b"\x04\x04",
            b"\x05\x05",
        ] {
            assert!(
                matches!(decode(bytes).end, End::Failed(ref e) if e.step == Step::ReadErrorPipe),
                "{bytes:?}"
            );
        }
    }

    #[test]
    fn a_failure_without_separator_keeps_its_text() {
        assert_eq!(
            decode(b"\x03boom").end,
            End::Failed(StepError::new(Step::Exec, "boom"))
        );
    }
}
