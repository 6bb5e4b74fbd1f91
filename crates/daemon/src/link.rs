//! The daemon's end of a supervisor channel: spawning the helper, sending
//! framed requests (with descriptors) and reading framed events, all without
//! blocking the runtime.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::process::Stdio;

use sandboxd_core::wire::{self, Decoder, Event, Request};
use sandboxd_supervisor::sys;
use tokio::io::Interest;
use tokio::net::UnixStream;
use tokio::process::{Child, Command};
use tokio::sync::Mutex;

/// A connected supervisor.
#[derive(Debug)]
pub struct Link {
    sock: UnixStream,
    /// Serialises writers so frames never interleave.
    write: Mutex<()>,
}

/// The argument that puts the binary in supervisor mode (the one
/// `sys::is_supervisor` looks for).
pub const SUPERVISE_ARG: &str = sandboxd_supervisor::SUPERVISE_ARG;

/// Starts a supervisor helper for sandbox `id`: this binary re-executed in
/// helper mode with one end of a socketpair as its stdin, and sends it the
/// launch configuration as the first frame.
pub async fn spawn(exe: &Path, id: &str, config: &[u8]) -> io::Result<(Child, Link)> {
    // std creates both ends close-on-exec; only `theirs` is handed over.
    let (ours, theirs) = std::os::unix::net::UnixStream::pair()?;
    let mut cmd = Command::new(exe);
    cmd.arg(SUPERVISE_ARG).arg(id).env_clear();
    if let Some((key, value)) = crate::rlimit::helper_env() {
        cmd.env(key, value);
    }
    if sandboxd_core::fault::ENABLED {
        // Test builds: the supervisor's steps can fail on request too.
        if let Some(file) = std::env::var_os(sandboxd_core::fault::FILE_ENV) {
            cmd.env(sandboxd_core::fault::FILE_ENV, file);
        }
    }
    let child = cmd
        .stdin(Stdio::from(OwnedFd::from(theirs)))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(false)
        .spawn()?;
    ours.set_nonblocking(true)?;
    let link = Link {
        sock: UnixStream::from_std(ours)?,
        write: Mutex::new(()),
    };
    let frame = wire::frame(config).map_err(io::Error::other)?;
    link.write_all(&frame, &[]).await?;
    Ok((child, link))
}

/// Reconnects to a running supervisor's control socket (after a daemon
/// restart).
pub async fn connect(path: &Path) -> io::Result<Link> {
    let sock = UnixStream::connect(path).await?;
    Ok(Link {
        sock,
        write: Mutex::new(()),
    })
}

impl Link {
    /// Sends a request with the descriptors it carries.
    pub async fn send(&self, req: &Request, fds: &[BorrowedFd<'_>]) -> io::Result<()> {
        debug_assert_eq!(req.fd_count(), fds.len());
        let frame = wire::encode(req).map_err(io::Error::other)?;
        self.write_all(&frame, fds).await
    }

    async fn write_all(&self, bytes: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<()> {
        let _guard = self.write.lock().await;
        let mut sent = 0;
        while sent < bytes.len() {
            self.sock.writable().await?;
            // Descriptors ride on the first bytes of the frame only.
            let attach = if sent == 0 { fds } else { &[] };
            match self.sock.try_io(Interest::WRITABLE, || {
                sys::send_with_fds(self.sock.as_fd(), &bytes[sent..], attach)
            }) {
                Ok(n) => sent += n,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock
                    ) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Reads the next events; an empty vector means the supervisor closed
    /// its end (exited).
    pub async fn recv(&self, decoder: &mut Decoder) -> io::Result<Vec<Event>> {
        loop {
            let mut events = Vec::new();
            while let Some(ev) = decoder.next_frame::<Event>().map_err(io::Error::other)? {
                events.push(ev);
            }
            if !events.is_empty() {
                return Ok(events);
            }
            self.sock.readable().await?;
            let mut buf = [0u8; 16 * 1024];
            let mut stray = Vec::new();
            match self.sock.try_io(Interest::READABLE, || {
                sys::recv_with_fds(self.sock.as_fd(), &mut buf, &mut stray)
            }) {
                Ok(0) => return Ok(Vec::new()),
                Ok(n) => decoder.push(&buf[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock
                    ) => {}
                Err(e) => return Err(e),
            }
            // Supervisors never send descriptors; drop any that arrived.
            drop(stray);
        }
    }
}
