//! The zygote: a long-lived, single-threaded helper that forks supervisors
//! on the daemon's request, so a create does not pay for exec'ing and
//! dynamically loading the daemon's large binary once per sandbox.
//!
//! The daemon starts it once (`<exe> __zygote`, with the supervisors'
//! environment) and again whenever it dies. It holds nothing a sandbox
//! could reach: its channel to the daemon (fd 0 at start, moved to a
//! close-on-exec descriptor), /dev/null and the daemon's stderr; no
//! configuration, keys or sockets of the daemon. Per request (the sandbox
//! id, one descriptor: the supervisor's end of a new socketpair) it forks
//! the supervisor with `clone(CLONE_PARENT)`, so the supervisor is the
//! daemon's child, exactly as an exec'd helper is: the daemon reaps it, and
//! after a daemon restart it is reattached the same way. Just before, the
//! zygote rewrites its arguments in place to `<exe> __supervise <id>` (what
//! a restarted daemon looks for; its own, `<exe> __zygote <pad>`, have
//! exactly that length) and takes its own back right after, so the
//! supervisor bears them from birth; where that fails (not Linux) the
//! supervisor execs the helper as before instead. Then, like an exec'd helper, it takes its
//! channel as fd 0 and runs [`crate::helper_main`], which closes every
//! other descriptor.
//!
//! The request/reply frames are internal to one binary (the daemon only
//! talks to a zygote it started from its own binary), so they are not
//! versioned.

use std::ffi::{CString, OsString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use sandboxd_core::wire::{self, Decoder};

use crate::sys;

/// The argument that puts the binary in zygote mode.
pub const ZYGOTE_ARG: &str = "__zygote";

/// The zygote's third argument: padding, so that its arguments take
/// exactly as many bytes as a supervisor's (`__supervise` and a 16-digit
/// id, after the same program name), which a forked supervisor writes
/// over them ([`sys::set_own_args`]).
pub const ZYGOTE_PAD: &str = "...................";

/// Checked at compile time: `__zygote PAD` is as long as `__supervise <id>`.
const _: () =
    assert!(ZYGOTE_ARG.len() + 1 + ZYGOTE_PAD.len() == crate::SUPERVISE_ARG.len() + 1 + 16);

/// Daemon → zygote: fork a supervisor for sandbox `id`; the frame carries
/// one descriptor, the supervisor's end of its channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForkRequest {
    /// The sandbox id (for its arguments).
    pub id: String,
}

/// Zygote → daemon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ForkReply {
    /// The supervisor runs, with this pid (already the daemon's child).
    Forked {
        /// Its pid.
        pid: i32,
    },
    /// It could not be started.
    Failed {
        /// Why.
        message: String,
    },
}

/// The zygote's main loop; `supervisor` is what a forked supervisor runs
/// (the backend's `supervisor_main`). Returns when the daemon closes the
/// channel.
pub fn zygote_main(supervisor: fn() -> i32) -> i32 {
    // Out of the daemon's process group: a ^C at the daemon's terminal
    // must not kill it (the daemon's exit closes the channel instead).
    let _ = sys::new_session();
    let sock = match sys::take_stdin_channel() {
        Ok(fd) => fd,
        Err(e) => {
            eprintln!("sandboxd zygote: fd 0 is not the daemon channel: {e}");
            return 1;
        }
    };
    sys::close_fds_except(3, &[sock.as_raw_fd()]);
    let argv0 = std::env::args_os()
        .next()
        .unwrap_or_else(|| OsString::from("sandboxd"));
    // Its own arguments, put back after each fork (see fork_supervisor).
    let own_args: Vec<u8> = std::env::args_os()
        .flat_map(|a| {
            let mut b = a.as_bytes().to_vec();
            b.push(0);
            b
        })
        .collect();
    let mut decoder = Decoder::default();
    let mut fds: Vec<OwnedFd> = Vec::new();
    loop {
        let request = match next_request(&sock, &mut decoder, &mut fds) {
            Ok(Some(r)) => r,
            Ok(None) => return 0,
            Err(e) => {
                eprintln!("sandboxd zygote: reading a request: {e}");
                return 1;
            }
        };
        // Exactly one descriptor per request; anything else is dropped.
        let chan = (fds.len() == 1).then(|| fds.remove(0));
        fds.clear();
        let reply = match chan {
            Some(chan) if sandboxd_core::validate::is_id(&request.id) => {
                match fork_supervisor(&argv0, &own_args, &request.id, chan, supervisor) {
                    Ok(pid) => ForkReply::Forked { pid: pid.as_raw() },
                    Err(e) => ForkReply::Failed {
                        message: format!("forking the supervisor: {e}"),
                    },
                }
            }
            Some(_) => ForkReply::Failed {
                message: format!("malformed sandbox id {:?}", request.id),
            },
            None => ForkReply::Failed {
                message: "the request carried no channel descriptor".into(),
            },
        };
        let frame = match wire::encode(&reply) {
            Ok(f) => f,
            Err(e) => {
                eprintln!("sandboxd zygote: encoding a reply: {e}");
                return 1;
            }
        };
        if let Err(e) = send_all(&sock, &frame) {
            eprintln!("sandboxd zygote: replying: {e}");
            return 1;
        }
    }
}

/// Blocks until a whole request is buffered; None at EOF.
fn next_request(
    sock: &OwnedFd,
    decoder: &mut Decoder,
    fds: &mut Vec<OwnedFd>,
) -> Result<Option<ForkRequest>, io::Error> {
    loop {
        if let Some(r) = decoder.next_frame().map_err(io::Error::other)? {
            return Ok(Some(r));
        }
        let mut buf = [0u8; 4096];
        match sys::recv_with_fds(sock.as_fd(), &mut buf, fds) {
            Ok(0) => return Ok(None),
            Ok(n) => decoder.push(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

fn send_all(sock: &OwnedFd, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        match sys::send_with_fds(sock.as_fd(), bytes, &[]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Forks the supervisor as the daemon's child (see the module docs) and
/// returns its pid.
fn fork_supervisor(
    argv0: &OsString,
    own_args: &[u8],
    id: &str,
    chan: OwnedFd,
    supervisor: fn() -> i32,
) -> Result<Pid, io::Error> {
    // Named before it is forked, so the supervisor bears its arguments from
    // birth: a restarted daemon that looks for it by them can never miss
    // it, as with an exec'd helper. The zygote takes its own back at once.
    let renamed = sys::set_own_args(&supervisor_args(argv0, id)).is_ok();
    // SAFETY: the zygote is single-threaded: a freshly exec'd process that
    // never starts a thread.
    let forked = unsafe { sys::fork_to_parent_unchecked() };
    if let Ok(sys::Fork::Child) = forked {
        become_supervisor(argv0, id, chan, supervisor, renamed)
    }
    if renamed {
        let _ = sys::set_own_args(own_args);
    }
    match forked? {
        sys::Fork::Parent { child } => Ok(child),
        // Returned above.
        sys::Fork::Child => Err(io::Error::other(
            "unreachable: the child became the supervisor",
        )),
    }
}

/// `<argv0> __supervise <id>`, NUL-separated and NUL-terminated.
fn supervisor_args(argv0: &OsString, id: &str) -> Vec<u8> {
    let mut args = argv0.as_bytes().to_vec();
    args.push(0);
    args.extend_from_slice(crate::SUPERVISE_ARG.as_bytes());
    args.push(0);
    args.extend_from_slice(id.as_bytes());
    args.push(0);
    args
}

/// In the forked supervisor: takes its channel, then runs as an exec'd
/// helper would (or execs one, when its parent could not take its
/// arguments). Never returns.
fn become_supervisor(
    argv0: &OsString,
    id: &str,
    chan: OwnedFd,
    supervisor: fn() -> i32,
    renamed: bool,
) -> ! {
    // fd 0 becomes the channel, as for an exec'd helper (replacing the
    // zygote's /dev/null there; helper_main closes the rest).
    if sys::dup_to(chan.as_fd(), 0).is_err() {
        sys::exit_child(1);
    }
    drop(chan);
    if !renamed {
        // Not named (arguments of another length): exec the helper
        // instead, which is named by its exec.
        exec_helper(argv0, id);
    }
    std::process::exit(supervisor())
}

/// Execs `/proc/self/exe __supervise <id>` (elsewhere the binary's path)
/// with the zygote's environment; exits the child if that fails.
fn exec_helper(argv0: &OsString, id: &str) -> ! {
    let exe = if cfg!(target_os = "linux") {
        Some(std::path::PathBuf::from("/proc/self/exe"))
    } else {
        std::env::current_exe().ok()
    };
    let args = [
        CString::new(argv0.as_bytes()).ok(),
        CString::new(crate::SUPERVISE_ARG).ok(),
        CString::new(id).ok(),
    ];
    let env: Vec<CString> = std::env::vars_os()
        .filter_map(|(k, v)| {
            let mut kv = k.as_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            CString::new(kv).ok()
        })
        .collect();
    if let (Some(exe), [Some(a0), Some(a1), Some(a2)]) = (exe, args) {
        if let Ok(exe) = CString::new(exe.as_os_str().as_bytes()) {
            let _ = sys::execve(&exe, &[a0, a1, a2], &env);
        }
    }
    eprintln!("sandboxd zygote: could not start the supervisor of {id}");
    sys::exit_child(1)
}
