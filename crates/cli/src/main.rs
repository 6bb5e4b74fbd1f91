//! `sandboxctl`, the command-line client for sandboxd.
//!
//! Exit codes:
//! - `run`, `exec`, `wait`: the process's (or sandbox's) exit code, which is
//!   128+N for a signal; 255 when it does not fit a status;
//! - 0 on success for every other command;
//! - 1 when sandboxctl or the daemon failed (cannot connect, gRPC error, one
//!   of several ids failed);
//! - 2 for a usage error (clap's, or a bad flag value);
//! - `run` and `exec`, like `docker run` and `docker exec`: 125 for any
//!   failure of sandboxctl or the daemon, usage errors included, so it cannot
//!   be mistaken for the command's own 1 or 2; 126 when the command cannot be
//!   run (not executable, permission denied, its working directory or user
//!   cannot be set up, ...); 127 when it is not found; `run` also 130 if
//!   interrupted while the sandbox was being created;
//! - 141 (128+SIGPIPE) when our stdout is closed by its reader, silently, as
//!   a local command would die of SIGPIPE.

mod cli;
mod commands;
mod connect;
mod error;
mod format;
mod json;
mod spec_flags;
mod stream;
mod sys;
mod table;
mod template;

use std::ffi::OsString;

use anyhow::Context as _;
use clap::Parser as _;

use crate::cli::{Cli, Command};
use crate::error::{CliError, EXIT_BROKEN_PIPE, EXIT_FAILURE, EXIT_RUN_FAILURE};

/// Whether the command line is a `run` or an `exec` (looked up by hand,
/// because clap's errors do not say which subcommand they were parsing): the
/// first word that is not a global flag or its value.
fn is_attached(args: &[OsString]) -> bool {
    let mut words = args.iter().skip(1);
    while let Some(w) = words.next() {
        match w.to_str() {
            Some("--json") => {}
            Some("--host") => {
                words.next();
            }
            Some(s) if s.starts_with("--host=") => {}
            Some(s) => return s == "run" || s == "exec",
            None => return false,
        }
    }
    false
}

/// Runs the parsed command on a single-threaded runtime (a CLI has one
/// conversation at a time; stdin gets its own thread in `stream`).
fn real_main(cli: Cli) -> anyhow::Result<i32> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let result = runtime.block_on(commands::dispatch(cli));
    // Do not wait for blocking tasks (none should be left, but a stuck one
    // must not keep a finished command from exiting).
    runtime.shutdown_background();
    Ok(result?)
}

fn main() {
    let args: Vec<OsString> = std::env::args_os().collect();
    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(err) => {
            // --help and --version are "errors" with code 0.
            let code = if err.exit_code() != 0 && is_attached(&args) {
                EXIT_RUN_FAILURE
            } else {
                err.exit_code()
            };
            let _ = err.print();
            std::process::exit(code);
        }
    };
    let attached = matches!(cli.command, Command::Run(_) | Command::Exec(_));
    let json_errors = cli.json || cli.format.is_some();
    let code = match real_main(cli) {
        Ok(code) => code,
        Err(err) => match err.downcast_ref::<CliError>() {
            Some(CliError::BrokenPipe) => EXIT_BROKEN_PIPE,
            Some(cli_err) => {
                if json_errors {
                    eprintln!("{}", cli_err.to_json(None));
                } else {
                    eprintln!("sandboxctl: {cli_err}");
                }
                if attached {
                    cli_err.attached_exit_code()
                } else {
                    cli_err.exit_code()
                }
            }
            None => {
                eprintln!("sandboxctl: {err:#}");
                if attached {
                    EXIT_RUN_FAILURE
                } else {
                    EXIT_FAILURE
                }
            }
        },
    };
    std::process::exit(code);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn run_detection() {
        assert!(is_attached(&args(&["sandboxctl", "run", "--memory", "x"])));
        assert!(is_attached(&args(&[
            "sandboxctl",
            "--json",
            "--host",
            "unix:///s",
            "run"
        ])));
        assert!(is_attached(&args(&[
            "sandboxctl",
            "--host=unix:///s",
            "run"
        ])));
        assert!(is_attached(&args(&["sandboxctl", "exec", "run"])));
        assert!(!is_attached(&args(&["sandboxctl", "ls", "run"])));
        assert!(!is_attached(&args(&["sandboxctl", "--host", "run"])));
        assert!(!is_attached(&args(&["sandboxctl"])));
    }
}
