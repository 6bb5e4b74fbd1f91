//! The daemon's end of a supervisor channel: spawning the helper, sending
//! framed requests (with descriptors) and reading framed events, all without
//! blocking the runtime.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;

use sandboxd_core::wire::{self, Decoder, Event, Message, Request};
use sandboxd_supervisor::sys;
use tokio::io::Interest;
use tokio::net::UnixStream;
use tokio::process::Command;
use tokio::sync::{Mutex, watch};
use tokio::time::Duration;

use crate::zygote::{SupervisorProc, Zygote};

/// A connected supervisor.
#[derive(Debug)]
pub struct Link {
    sock: UnixStream,
    /// Serialises writers so frames never interleave.
    write: Mutex<()>,
    /// The supervisor's protocol ([`wire::PROTOCOL`] for one this daemon
    /// started; after a reattach, what its `Attached` announces; 0 until
    /// then).
    peer: watch::Sender<u32>,
    /// Descriptors received with events, in order (an `ExecStarted` with
    /// `pty` carries one), until the event's handler takes them.
    received: std::sync::Mutex<std::collections::VecDeque<std::os::fd::OwnedFd>>,
}

/// Descriptors held for events not yet handled: more than a few means the
/// supervisor sends what nobody asked for.
const MAX_QUEUED_FDS: usize = 64;

/// How long a request that needs a newer protocol waits for a reattached
/// supervisor's announcement (its first frame) before assuming the oldest.
const ANNOUNCE_WAIT: Duration = Duration::from_secs(5);

/// The argument that puts the binary in supervisor mode (the one
/// `sys::is_supervisor` looks for).
pub const SUPERVISE_ARG: &str = sandboxd_supervisor::SUPERVISE_ARG;

/// A new channel: our end as a [`Link`], and the supervisor's end, to hand
/// to [`spawn`]. What is sent on the link before the supervisor runs waits
/// in the socket for it.
pub fn pair() -> io::Result<(Link, OwnedFd)> {
    // std creates both ends close-on-exec; only `theirs` is handed over.
    let (ours, theirs) = std::os::unix::net::UnixStream::pair()?;
    ours.set_nonblocking(true)?;
    let link = Link {
        sock: UnixStream::from_std(ours)?,
        write: Mutex::new(()),
        // Started from this binary: it speaks this daemon's protocol.
        peer: watch::Sender::new(wire::PROTOCOL),
        received: std::sync::Mutex::default(),
    };
    Ok((link, OwnedFd::from(theirs)))
}

/// Starts the supervisor helper of sandbox `id` with the channel end
/// `theirs` as its stdin: forked by the zygote when there is one, else this
/// binary re-executed in helper mode. It waits for its launch
/// configuration ([`Link::send_launch`]) and creates nothing before, so it
/// can be started while the daemon still writes the sandbox's record: a
/// daemon that dies first closes the channel, and the helper exits.
pub async fn spawn(
    exe: &Path,
    zygote: Option<&Arc<Zygote>>,
    id: &str,
    theirs: OwnedFd,
) -> io::Result<SupervisorProc> {
    match zygote {
        Some(zygote) => {
            let pid = zygote.fork_supervisor(id, theirs).await?;
            SupervisorProc::forked(pid)
        }
        None => {
            let mut cmd = Command::new(exe);
            cmd.arg(SUPERVISE_ARG)
                .arg(id)
                .env_clear()
                .envs(crate::zygote::helper_env());
            Ok(SupervisorProc::Spawned(
                cmd.stdin(Stdio::from(theirs))
                    .stdout(Stdio::null())
                    .stderr(Stdio::inherit())
                    .kill_on_drop(false)
                    .spawn()?,
            ))
        }
    }
}

/// Reconnects to a running supervisor's control socket (after a daemon
/// restart). The supervisor may be of an older or newer version: it
/// announces its protocol in its first frame (see [`wire`]'s versions).
pub async fn connect(path: &Path) -> io::Result<Link> {
    let sock = UnixStream::connect(path).await?;
    Ok(Link {
        sock,
        write: Mutex::new(()),
        peer: watch::Sender::new(0),
        received: std::sync::Mutex::default(),
    })
}

impl Link {
    /// Sends a helper [`start`]ed for a new sandbox its launch
    /// configuration as the first frame (with `fds` attached: a NAMESPACE
    /// sandbox's network namespace) and the create options as the second.
    pub async fn send_launch(
        &self,
        config: &[u8],
        options: &wire::CreateOptions,
        fds: &[BorrowedFd<'_>],
    ) -> io::Result<()> {
        let mut frame = wire::frame(config).map_err(io::Error::other)?;
        frame.extend(wire::encode(options).map_err(io::Error::other)?);
        self.write_all(&frame, fds).await
    }

    /// Sends a request with the descriptors it carries. A request the
    /// supervisor's protocol may not know is refused (`Unsupported`), not
    /// sent: a supervisor that cannot decode a request stops reading.
    pub async fn send(&self, req: &Request, fds: &[BorrowedFd<'_>]) -> io::Result<()> {
        debug_assert_eq!(req.fd_count(), fds.len());
        let since = req.since();
        if since > wire::UNVERSIONED {
            let peer = self.peer_protocol().await;
            if peer < since {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    format!(
                        "the sandbox's supervisor speaks protocol {peer} (it was started by an older sandboxd) and this request needs protocol {since}; recreate the sandbox to use it"
                    ),
                ));
            }
        }
        let frame = wire::encode(req).map_err(io::Error::other)?;
        self.write_all(&frame, fds).await
    }

    /// The next descriptor received with an event (in order).
    pub fn take_fd(&self) -> Option<std::os::fd::OwnedFd> {
        self.received
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop_front()
    }

    /// Whether the supervisor speaks `protocol` or later (a reattached one
    /// is waited for briefly).
    pub async fn speaks(&self, protocol: u32) -> bool {
        self.peer_protocol().await >= protocol
    }

    /// The supervisor's protocol, waiting briefly for a reattached one's
    /// announcement; [`wire::UNVERSIONED`] if none comes.
    async fn peer_protocol(&self) -> u32 {
        let mut rx = self.peer.subscribe();
        match tokio::time::timeout(ANNOUNCE_WAIT, rx.wait_for(|p| *p != 0)).await {
            Ok(Ok(p)) => *p,
            _ => wire::UNVERSIONED,
        }
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
    /// its end (exited). An event this daemon does not know (a newer
    /// supervisor's) is logged and skipped; `Attached` also sets the
    /// supervisor's protocol.
    pub async fn recv(&self, decoder: &mut Decoder) -> io::Result<Vec<Event>> {
        loop {
            let mut events = Vec::new();
            while let Some(msg) = decoder.next_message::<Event>().map_err(io::Error::other)? {
                match msg {
                    Message::Known(ev) => {
                        if let Event::Attached { protocol, .. } = &ev {
                            tracing::info!(protocol, ours = wire::PROTOCOL, "supervisor protocol");
                            self.peer.send_replace(*protocol);
                        }
                        events.push(ev);
                    }
                    Message::Unknown { variant } => tracing::warn!(
                        %variant,
                        "skipping a supervisor event this daemon does not know (a newer supervisor)"
                    ),
                }
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
                // A peer that exited with a request of ours unread (a
                // destroy's Shutdown crossing its exit): the kernel reports
                // the reset only once everything it sent has been read, so
                // this is its close, not a failure.
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return Ok(Vec::new()),
                Ok(n) => decoder.push(&buf[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock
                    ) => {}
                Err(e) => return Err(e),
            }
            // Kept for the event that carries them (ExecStarted with a
            // terminal), in order; bounded, so a confused supervisor cannot
            // make the daemon hold descriptors without end.
            let mut queue = self
                .received
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            queue.extend(stray);
            while queue.len() > MAX_QUEUED_FDS {
                queue.pop_front();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    /// A frame as a supervisor of another version writes it: raw JSON.
    fn raw_frame(json: &str) -> Vec<u8> {
        wire::frame(json.as_bytes()).unwrap()
    }

    /// A restarted daemon reads what an older (or newer) supervisor wrote:
    /// frames without the fields added since, and an event it does not
    /// know, which is skipped rather than ending the channel.
    #[tokio::test]
    async fn frames_of_another_supervisor_version_are_read_or_skipped() {
        let (ours, mut theirs) = std::os::unix::net::UnixStream::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        let link = Link {
            sock: UnixStream::from_std(ours).unwrap(),
            write: Mutex::new(()),
            peer: watch::Sender::new(0),
            received: std::sync::Mutex::default(),
        };
        let mut bytes = Vec::new();
        // Protocol 1: Attached without `protocol`, Ready without
        // `verification`, ExecExited without `oom_killed`.
        bytes.extend(raw_frame(r#"{"attached":{"main_pid":5}}"#));
        bytes.extend(raw_frame(r#"{"ready":{"main_pid":7}}"#));
        // A newer supervisor's event this daemon has never heard of.
        bytes.extend(raw_frame(r#"{"checkpoint_taken":{"path":"/x"}}"#));
        bytes.extend(raw_frame(r#""future_unit_event""#));
        bytes.extend(raw_frame(
            r#"{"exec_exited":{"exec_id":3,"exit":{"exited":0}}}"#,
        ));
        theirs.write_all(&bytes).unwrap();
        drop(theirs);
        let mut decoder = Decoder::default();
        let mut got = Vec::new();
        loop {
            let events = link
                .recv(&mut decoder)
                .await
                .expect("not a channel failure");
            if events.is_empty() {
                break;
            }
            got.extend(events);
        }
        assert_eq!(
            got,
            vec![
                Event::Attached {
                    main_pid: Some(5),
                    protocol: wire::UNVERSIONED,
                    execs: Vec::new(),
                    init_pid: None,
                },
                Event::Ready {
                    main_pid: Some(7),
                    verification: None,
                    steps: Vec::new(),
                    init_pid: None,
                },
                Event::ExecExited {
                    exec_id: 3,
                    exit: wire::ProcessExit::Exited(0),
                    oom_killed: false
                },
            ]
        );
    }

    /// A supervisor that exits with a request of ours unread (a destroy's
    /// Shutdown that crossed its exit) resets the channel: after its last
    /// events, that is its close, not a channel failure.
    #[tokio::test]
    async fn a_peer_gone_with_our_request_unread_is_a_close() {
        let (link, theirs) = pair().unwrap();
        let mut theirs = std::os::unix::net::UnixStream::from(theirs);
        theirs
            .write_all(&raw_frame(r#"{"shutdown_complete":null}"#))
            .unwrap();
        link.send(&Request::Shutdown, &[]).await.unwrap();
        drop(theirs);
        let mut decoder = Decoder::default();
        let events = link.recv(&mut decoder).await.expect("its last event");
        assert_eq!(events, vec![Event::ShutdownComplete]);
        let end = link.recv(&mut decoder).await;
        assert!(
            matches!(&end, Ok(events) if events.is_empty()),
            "not a close: {end:?}"
        );
    }

    fn verify_request() -> Request {
        use sandboxd_core::verify::{LimitValues, NetProbe, ProbeConfig};
        Request::Verify {
            probe_id: 1,
            process: Default::default(),
            config: Box::new(ProbeConfig {
                budget_ms: 0,
                daemon_pid: 0,
                supervisor_pid: 0,
                host_hostname: String::new(),
                hostname: None,
                shm_key: None,
                canary: None,
                host_root: None,
                network: NetProbe {
                    mode: Default::default(),
                    targets: Vec::new(),
                    port: 0,
                    token: String::new(),
                    leased: Vec::new(),
                    namespace: None,
                },
                limits: LimitValues::default(),
                readonly_rootfs: false,
                mounts: Vec::new(),
                capabilities: Vec::new(),
                seccomp: false,
                shared_pid_with: None,
            }),
        }
    }

    /// An unversioned supervisor may predate Verify, which it could not
    /// decode (and would stop reading): the daemon refuses the call
    /// instead of sending it. Older requests still go out.
    #[tokio::test]
    async fn requests_newer_than_the_supervisor_are_refused_not_sent() {
        for (attached, verify_ok) in [
            (r#"{"attached":{"main_pid":5}}"#, false),
            (r#"{"attached":{"main_pid":5,"protocol":2}}"#, true),
        ] {
            let (ours, mut theirs) = std::os::unix::net::UnixStream::pair().unwrap();
            ours.set_nonblocking(true).unwrap();
            let link = Link {
                sock: UnixStream::from_std(ours).unwrap(),
                write: Mutex::new(()),
                peer: watch::Sender::new(0),
                received: std::sync::Mutex::default(),
            };
            theirs.write_all(&raw_frame(attached)).unwrap();
            let mut decoder = Decoder::default();
            let events = link.recv(&mut decoder).await.unwrap();
            assert!(matches!(events[..], [Event::Attached { .. }]), "{attached}");
            let sent = link.send(&verify_request(), &[]).await;
            match sent {
                Ok(()) => assert!(verify_ok, "{attached}"),
                Err(e) => {
                    assert!(!verify_ok, "{attached}: {e}");
                    assert_eq!(e.kind(), io::ErrorKind::Unsupported);
                    assert!(e.to_string().contains("protocol 1"), "{e}");
                }
            }
            link.send(&Request::Stop { signal: 15 }, &[]).await.unwrap();
        }
    }
}
