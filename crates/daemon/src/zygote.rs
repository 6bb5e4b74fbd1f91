//! The daemon's end of the zygote ([`sandboxd_supervisor::zygote`]), and
//! the handle of a supervisor process however it was started.
//!
//! Linux only: the zygote's supervisors are born with their arguments
//! rewritten in place (`/proc/self/stat`'s argument area) as the daemon's
//! children (`clone(CLONE_PARENT)`); they are waited for through a pidfd. Elsewhere the
//! daemon execs each helper as before.
//!
//! The zygote is started once with the daemon and again when it dies: a
//! task per zygote waits on its pidfd, reaps it, and starts the next one
//! (at once if it had lived a while, else at the next create, so a zygote
//! that cannot start does not spin). A request that finds the channel
//! broken kills that zygote, starts another and retries once.

use std::ffi::OsString;
use std::io::{self, Read as _};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::Pid;
use sandboxd_core::wire::{self, Decoder};
use sandboxd_supervisor::sys;
use sandboxd_supervisor::zygote::{ForkReply, ForkRequest, ZYGOTE_ARG, ZYGOTE_PAD};
use tokio::io::unix::AsyncFd;

/// How long a fork request may take before the zygote is taken for hung.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// A zygote that lived at least this long is restarted as soon as it dies.
const RESTART_AFTER: Duration = Duration::from_secs(1);

/// The environment of a helper (supervisor or zygote): empty but for the
/// open-files limit to restore and the test-only fault and weakening
/// switches.
pub fn helper_env() -> Vec<(OsString, OsString)> {
    let mut env = Vec::new();
    if let Some((key, value)) = crate::rlimit::helper_env() {
        env.push((key.into(), value.into()));
    }
    if sandboxd_core::weaken::ENABLED {
        // Test builds: the supervisor skips the named isolation steps.
        if let Some(steps) = std::env::var_os(sandboxd_core::weaken::ENV) {
            env.push((sandboxd_core::weaken::ENV.into(), steps));
        }
    }
    if sandboxd_core::fault::ENABLED {
        // Test builds: the supervisor's steps can fail on request too.
        if let Some(file) = std::env::var_os(sandboxd_core::fault::FILE_ENV) {
            env.push((sandboxd_core::fault::FILE_ENV.into(), file));
        }
    }
    env
}

/// A running zygote.
#[derive(Debug)]
struct Running {
    generation: u64,
    pid: i32,
    /// For SIGKILL (its monitor task owns another copy to wait on).
    pidfd: OwnedFd,
    sock: UnixStream,
    decoder: Decoder,
}

#[derive(Debug, Default)]
struct State {
    running: Option<Running>,
    generation: u64,
}

/// The daemon's zygote.
#[derive(Debug)]
pub struct Zygote {
    exe: PathBuf,
    state: Mutex<State>,
}

fn lock(m: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Zygote {
    /// Starts the first zygote. Must run inside the tokio runtime.
    pub fn start(exe: &Path) -> io::Result<Arc<Self>> {
        let zygote = Arc::new(Self {
            exe: exe.to_owned(),
            state: Mutex::new(State::default()),
        });
        {
            let mut st = lock(&zygote.state);
            zygote.launch(&mut st)?;
        }
        Ok(zygote)
    }

    /// Starts a zygote into `st` and a task that notices its death.
    fn launch(self: &Arc<Self>, st: &mut State) -> io::Result<()> {
        let (ours, theirs) = UnixStream::pair()?;
        let child = Command::new(&self.exe)
            .arg(ZYGOTE_ARG)
            .arg(ZYGOTE_PAD)
            .env_clear()
            .envs(helper_env())
            .stdin(Stdio::from(OwnedFd::from(theirs)))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()?;
        let pid = i32::try_from(child.id()).map_err(io::Error::other)?;
        // Reaped through its pidfd (by the monitor below), not through
        // `child`, which is dropped without waiting.
        drop(child);
        let pidfd = sys::pidfd_open(Pid::from_raw(pid))?;
        let watched = async_pidfd(pidfd.try_clone()?)?;
        ours.set_read_timeout(Some(REQUEST_TIMEOUT))?;
        ours.set_write_timeout(Some(REQUEST_TIMEOUT))?;
        st.generation += 1;
        let generation = st.generation;
        st.running = Some(Running {
            generation,
            pid,
            pidfd,
            sock: ours,
            decoder: Decoder::default(),
        });
        tracing::debug!(pid, generation, "zygote started");
        let this = Arc::downgrade(self);
        let born = Instant::now();
        tokio::spawn(async move {
            let _ = wait_pidfd(&watched).await;
            let Some(this) = this.upgrade() else { return };
            let mut st = lock(&this.state);
            if st
                .running
                .as_ref()
                .is_some_and(|r| r.generation == generation)
            {
                st.running = None;
                tracing::warn!(pid, "the zygote exited");
                if born.elapsed() >= RESTART_AFTER {
                    if let Err(e) = this.launch(&mut st) {
                        tracing::error!(error = %e, "restarting the zygote; the next create tries again");
                    }
                }
            }
        });
        Ok(())
    }

    /// Forks a supervisor for sandbox `id` whose channel end is `chan`;
    /// returns its pid (a child of the daemon).
    pub async fn fork_supervisor(self: &Arc<Self>, id: &str, chan: OwnedFd) -> io::Result<i32> {
        let this = self.clone();
        let id = id.to_owned();
        tokio::task::spawn_blocking(move || this.fork_blocking(&id, &chan))
            .await
            .map_err(io::Error::other)?
    }

    fn fork_blocking(self: &Arc<Self>, id: &str, chan: &OwnedFd) -> io::Result<i32> {
        let mut st = lock(&self.state);
        let mut last = None;
        for _ in 0..2 {
            if st.running.is_none() {
                self.launch(&mut st)?;
            }
            let Some(running) = st.running.as_mut() else {
                continue;
            };
            match request(running, id, chan) {
                Ok(ForkReply::Forked { pid }) => return Ok(pid),
                Ok(ForkReply::Failed { message }) => return Err(io::Error::other(message)),
                Err(e) => {
                    tracing::warn!(pid = running.pid, error = %e, "the zygote's channel failed; restarting it");
                    let _ = sys::pidfd_signal(running.pidfd.as_fd(), Signal::SIGKILL);
                    st.running = None;
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| io::Error::other("no zygote")))
    }
}

/// One request and its reply, blocking (bounded by the socket timeouts).
fn request(running: &mut Running, id: &str, chan: &OwnedFd) -> io::Result<ForkReply> {
    let frame = wire::encode(&ForkRequest { id: id.to_owned() }).map_err(io::Error::other)?;
    let mut sent = 0;
    while sent < frame.len() {
        let attach = if sent == 0 {
            vec![chan.as_fd()]
        } else {
            Vec::new()
        };
        match sys::send_with_fds(running.sock.as_fd(), &frame[sent..], &attach) {
            Ok(n) => sent += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    loop {
        if let Some(reply) = running
            .decoder
            .next_frame::<ForkReply>()
            .map_err(io::Error::other)?
        {
            return Ok(reply);
        }
        let mut buf = [0u8; 1024];
        match running.sock.read(&mut buf) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => running.decoder.push(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Registers a pidfd with the runtime's reactor (readable once the
/// process has exited).
fn async_pidfd(fd: OwnedFd) -> io::Result<AsyncFd<OwnedFd>> {
    // Deprecated because a generic inner type might change or close its
    // descriptor behind the reactor's back (tokio PR 8587); an OwnedFd
    // returns the same open descriptor until it is dropped, with the
    // AsyncFd, so the registration stays sound.
    #[allow(deprecated)]
    AsyncFd::new(fd)
}

/// Waits until the child `fd` refers to has exited, and reaps it.
async fn wait_pidfd(fd: &AsyncFd<OwnedFd>) -> io::Result<()> {
    loop {
        match sys::pidfd_reap(fd.get_ref().as_fd()) {
            Ok(true) | Err(nix::errno::Errno::ECHILD) => return Ok(()),
            Ok(false) => {}
            Err(e) => return Err(e.into()),
        }
        let mut guard = fd.readable().await?;
        guard.clear_ready();
    }
}

/// A supervisor process: exec'd by the daemon (a tokio child) or forked by
/// the zygote (the daemon's child by CLONE_PARENT, waited on by pidfd).
#[derive(Debug)]
pub enum SupervisorProc {
    /// Exec'd.
    Spawned(tokio::process::Child),
    /// Forked by the zygote.
    Forked(Forked),
}

/// A supervisor the zygote forked.
#[derive(Debug)]
pub struct Forked {
    pid: i32,
    /// Its pidfd, for waiting and killing; None once reaped.
    fd: Option<AsyncFd<OwnedFd>>,
}

impl Drop for Forked {
    /// A handle dropped before its process was reaped (tokio does the same
    /// for its children): reaped in the background, never left a zombie.
    fn drop(&mut self) {
        if let (Some(fd), Ok(rt)) = (self.fd.take(), tokio::runtime::Handle::try_current()) {
            rt.spawn(async move {
                let _ = wait_pidfd(&fd).await;
            });
        }
    }
}

impl SupervisorProc {
    /// A forked supervisor with this pid (our child).
    pub fn forked(pid: i32) -> io::Result<Self> {
        let fd = sys::pidfd_open(Pid::from_raw(pid))?;
        Ok(Self::Forked(Forked {
            pid,
            fd: Some(async_pidfd(fd)?),
        }))
    }

    /// Its pid.
    pub fn id(&self) -> Option<u32> {
        match self {
            Self::Spawned(c) => c.id(),
            Self::Forked(f) => f.fd.as_ref().and_then(|_| u32::try_from(f.pid).ok()),
        }
    }

    /// Waits for it to exit and reaps it.
    pub async fn wait(&mut self) -> io::Result<()> {
        match self {
            Self::Spawned(c) => c.wait().await.map(drop),
            Self::Forked(f) => {
                if let Some(fd) = &f.fd {
                    wait_pidfd(fd).await?;
                }
                f.fd = None;
                Ok(())
            }
        }
    }

    /// SIGKILLs it (never another process that reused its pid).
    pub fn start_kill(&mut self) -> io::Result<()> {
        match self {
            Self::Spawned(c) => c.start_kill(),
            Self::Forked(f) => match &f.fd {
                Some(fd) => sys::pidfd_signal(fd.get_ref().as_fd(), Signal::SIGKILL)
                    .map_err(io::Error::from),
                None => Ok(()),
            },
        }
    }
}
