//! The one error type of the CLI's library-ish modules, and how each kind maps
//! to an exit code and a one-line message.
//!
//! `anyhow` is kept to `main.rs`; everything below it returns [`CliError`] so
//! that `main` can pick the exit code from the kind of failure (a usage error
//! is not a daemon error is not a broken pipe).

use std::fmt;

/// Everything that can go wrong in a command, by kind.
#[derive(Debug)]
pub(crate) enum CliError {
    /// A flag or argument has a bad value; the message names the flag.
    Usage(String),
    /// The daemon could not be reached; the message is complete (target,
    /// reason and a hint).
    Connect(String),
    /// The daemon answered with a gRPC error.
    Rpc(tonic::Status),
    /// A local I/O operation failed; the string says which one.
    Io(&'static str, std::io::Error),
    /// The daemon broke the protocol (e.g. an Exec stream ended without
    /// `exited`).
    Protocol(String),
    /// Our stdout was closed by its reader (e.g. `| head`). Reported like a
    /// local process killed by SIGPIPE would be: silently, with 128+13.
    BrokenPipe,
}

/// Exit code for a usage error, as clap uses for its own.
pub(crate) const EXIT_USAGE: i32 = 2;
/// Exit code for any failure that is not the sandboxed process's own.
pub(crate) const EXIT_FAILURE: i32 = 1;
/// `run`'s exit code when sandboxctl or the daemon failed (docker's 125), so
/// that it cannot be confused with the process's own exit codes 1 or 2.
pub(crate) const EXIT_RUN_FAILURE: i32 = 125;
/// `run`/`exec`: the command was found but could not be run (docker's 126).
pub(crate) const EXIT_CANNOT_RUN: i32 = 126;
/// `run`/`exec`: the command was not found (docker's and the shell's 127).
pub(crate) const EXIT_NOT_FOUND: i32 = 127;
/// The status metadata in which the daemon names the failed step of a
/// process that could not be started (the daemon's `EXEC_FAILED_STEP`).
const EXEC_FAILED_STEP: &str = "sandboxd-exec-failed-step";
/// 128 + SIGPIPE (13 on every Unix we target).
pub(crate) const EXIT_BROKEN_PIPE: i32 = 141;

impl CliError {
    /// The exit code for this error outside `run`.
    pub(crate) fn exit_code(&self) -> i32 {
        match self {
            CliError::Usage(_) => EXIT_USAGE,
            CliError::BrokenPipe => EXIT_BROKEN_PIPE,
            CliError::Connect(_) | CliError::Rpc(_) | CliError::Io(..) | CliError::Protocol(_) => {
                EXIT_FAILURE
            }
        }
    }

    /// The exit code for this error in `run` and `exec`, where the
    /// command's own codes must stay unambiguous: 127 when the daemon says
    /// the program was not found, 126 when it could not be started, 125 for
    /// every other failure of sandboxctl or the daemon.
    pub(crate) fn attached_exit_code(&self) -> i32 {
        match self {
            CliError::BrokenPipe => EXIT_BROKEN_PIPE,
            CliError::Rpc(status) => match status
                .metadata()
                .get(EXEC_FAILED_STEP)
                .and_then(|v| v.to_str().ok())
            {
                Some(sandboxd_core::wire::PROGRAM_NOT_FOUND) => EXIT_NOT_FOUND,
                Some(_) => EXIT_CANNOT_RUN,
                None => EXIT_RUN_FAILURE,
            },
            _ => EXIT_RUN_FAILURE,
        }
    }

    /// Wraps an error from writing our stdout: a closed pipe becomes
    /// [`CliError::BrokenPipe`], anything else an I/O error.
    pub(crate) fn stdout(err: std::io::Error) -> CliError {
        if err.kind() == std::io::ErrorKind::BrokenPipe {
            CliError::BrokenPipe
        } else {
            CliError::Io("writing to stdout", err)
        }
    }
}

impl From<tonic::Status> for CliError {
    fn from(status: tonic::Status) -> Self {
        // A connection the daemon dropped (a refused client certificate,
        // say) arrives as "transport error": name the real cause instead.
        use std::error::Error as _;
        let mut cause = status.source();
        let mut deepest = None;
        while let Some(e) = cause {
            deepest = Some(e.to_string());
            cause = e.source();
        }
        match deepest {
            Some(why) if !status.message().contains(&why) => CliError::Connect(format!(
                "the connection to the daemon failed: {why} ({})",
                status.message()
            )),
            _ => CliError::Rpc(status),
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Usage(msg) | CliError::Connect(msg) | CliError::Protocol(msg) => {
                f.write_str(msg)
            }
            CliError::Rpc(status) => {
                write!(
                    f,
                    "{}: {}",
                    code_name(status.code()),
                    one_line(status.message())
                )
            }
            CliError::Io(what, err) => write!(f, "{what}: {err}"),
            CliError::BrokenPipe => f.write_str("broken pipe"),
        }
    }
}

impl std::error::Error for CliError {}

impl CliError {
    /// The error as one JSON line for `--json`/`--format`:
    /// `{"error":{"code":"NOT_FOUND","message":"...","id":"..."}}`, the
    /// daemon's gRPC code by its canonical name (a local failure gets the
    /// code that fits it: a bad flag INVALID_ARGUMENT, no daemon
    /// UNAVAILABLE, anything else INTERNAL) and, for one of several ids,
    /// the id.
    pub(crate) fn to_json(&self, id: Option<&str>) -> serde_json::Value {
        let (code, message) = match self {
            CliError::Rpc(status) => (code_name(status.code()), one_line(status.message())),
            CliError::Usage(m) => ("INVALID_ARGUMENT", m.clone()),
            CliError::Connect(m) => ("UNAVAILABLE", m.clone()),
            CliError::Io(..) | CliError::Protocol(_) | CliError::BrokenPipe => {
                ("INTERNAL", self.to_string())
            }
        };
        let mut error = serde_json::json!({ "code": code, "message": message });
        if let (Some(id), Some(map)) = (id, error.as_object_mut()) {
            map.insert("id".into(), id.into());
        }
        serde_json::json!({ "error": error })
    }
}

/// The canonical upper-case name of a gRPC code, as in the gRPC spec and in
/// every other gRPC tool (tonic's `Debug` gives `NotFound`, not `NOT_FOUND`).
pub(crate) fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// Folds a possibly multi-line message (INVALID_ARGUMENT lists one problem
/// per line) into one line, so every error is exactly one line on stderr.
fn one_line(msg: &str) -> String {
    let parts: Vec<&str> = msg
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    parts.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rpc_errors_are_one_line_with_the_code_name() {
        let err = CliError::from(tonic::Status::invalid_argument("bad name\n bad image\n"));
        assert_eq!(err.to_string(), "INVALID_ARGUMENT: bad name; bad image");
        assert_eq!(err.exit_code(), EXIT_FAILURE);
    }

    #[test]
    fn errors_as_json() {
        let err = CliError::from(tonic::Status::not_found("sandbox \"x\" not found\n"));
        assert_eq!(
            err.to_json(Some("x")),
            serde_json::json!({"error": {"code": "NOT_FOUND", "message": "sandbox \"x\" not found", "id": "x"}})
        );
        assert_eq!(
            CliError::Usage("--memory: bad".into()).to_json(None),
            serde_json::json!({"error": {"code": "INVALID_ARGUMENT", "message": "--memory: bad"}})
        );
        assert_eq!(
            CliError::Connect("no daemon".into()).to_json(None)["error"]["code"],
            "UNAVAILABLE"
        );
    }

    #[test]
    fn exit_codes_by_kind() {
        assert_eq!(CliError::Usage("x".into()).exit_code(), EXIT_USAGE);
        assert_eq!(CliError::BrokenPipe.exit_code(), EXIT_BROKEN_PIPE);
        assert_eq!(CliError::Connect("x".into()).exit_code(), EXIT_FAILURE);
        let pipe = std::io::Error::from(std::io::ErrorKind::BrokenPipe);
        assert!(matches!(CliError::stdout(pipe), CliError::BrokenPipe));
    }

    #[test]
    fn run_and_exec_exit_codes() {
        let failed_at = |step: &str| {
            let mut s = tonic::Status::failed_precondition("exec failed");
            s.metadata_mut()
                .insert(EXEC_FAILED_STEP, step.parse().expect("ascii"));
            CliError::Rpc(s)
        };
        let cases = [
            (failed_at("find program"), EXIT_NOT_FOUND),
            (failed_at("exec"), EXIT_CANNOT_RUN),
            (failed_at("chdir"), EXIT_CANNOT_RUN),
            // The same code without the daemon's step: not the command's.
            (
                CliError::Rpc(tonic::Status::failed_precondition("exec failed")),
                EXIT_RUN_FAILURE,
            ),
            (
                CliError::Rpc(tonic::Status::not_found("sandbox \"x\" not found")),
                EXIT_RUN_FAILURE,
            ),
            (CliError::Usage("x".into()), EXIT_RUN_FAILURE),
            (CliError::Connect("x".into()), EXIT_RUN_FAILURE),
            (CliError::Protocol("x".into()), EXIT_RUN_FAILURE),
            (CliError::BrokenPipe, EXIT_BROKEN_PIPE),
        ];
        for (err, code) in cases {
            assert_eq!(err.attached_exit_code(), code, "{err:?}");
        }
    }
}
