//! Every raw system call the supervisor and the daemon's channel need, one
//! function per kernel operation. This is the only module of the crate with
//! `unsafe`; each block says why it is sound.

use std::ffi::{CStr, CString};
use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicI32, Ordering};

use nix::errno::Errno;
use nix::sys::signal::{self, SaFlags, SigAction, SigHandler, SigSet, Signal};
use nix::sys::socket::{ControlMessage, ControlMessageOwned, MsgFlags, recvmsg, sendmsg};
use nix::unistd::{ForkResult, Pid};

/// Result of [`fork`] and [`fork_unchecked`].
pub use nix::unistd::ForkResult as Fork;

/// fork(2) for a caller that knows it is single-threaded.
///
/// # Safety
///
/// The calling process must have no thread but the caller's, as the
/// supervisor helper (a freshly exec'd process that never starts one) and
/// its forked children do. The child is a copy of the calling thread only:
/// a lock another thread held (the allocator's, stdio's) would stay held
/// forever in it, and the child runs arbitrary Rust before it execs. Never
/// call it from the daemon, which is multi-threaded.
pub unsafe fn fork_unchecked() -> Result<ForkResult, Errno> {
    // SAFETY: the caller guarantees a single-threaded process (this fn's
    // contract), so the child inherits no lock held by another thread.
    unsafe { nix::unistd::fork() }
}

/// fork(2) after checking that the calling process has exactly one thread
/// (it stays so until fork returns: only this thread could start
/// another). EDEADLK when it has more; ENOSYS where the OS cannot tell
/// (neither Linux nor FreeBSD).
pub fn fork() -> Result<ForkResult, Errno> {
    if thread_count().ok_or(Errno::ENOSYS)? != 1 {
        return Err(Errno::EDEADLK);
    }
    // SAFETY: the process has one thread, the caller's (checked just
    // above, and no other can appear before fork returns).
    unsafe { fork_unchecked() }
}

/// How many threads the calling process has; `None` where the OS cannot
/// tell (neither Linux nor FreeBSD) or the count cannot be read.
pub fn thread_count() -> Option<usize> {
    #[cfg(target_os = "linux")]
    {
        // Field 20 of /proc/self/stat; fields after the command name's
        // last ')' start at field 3.
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(17))
            .and_then(|n| n.parse().ok())
    }
    #[cfg(target_os = "freebsd")]
    {
        kinfo_of(nix::unistd::getpid()).and_then(|info| usize::try_from(info.ki_numthreads).ok())
    }
    #[cfg(not(any(target_os = "linux", target_os = "freebsd")))]
    {
        None
    }
}

/// pipe2(O_CLOEXEC): the read end and the write end.
pub fn pipe() -> Result<(OwnedFd, OwnedFd), Errno> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
}

/// Writes all of `bytes` to `fd` (a pipe), retrying on EINTR and short
/// writes.
pub fn write_all(fd: BorrowedFd<'_>, mut bytes: &[u8]) -> Result<(), Errno> {
    while !bytes.is_empty() {
        match nix::unistd::write(fd, bytes) {
            Ok(0) => return Err(Errno::EPIPE),
            Ok(n) => bytes = &bytes[n..],
            Err(Errno::EINTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// A pipe whose read end is non-blocking (for a bounded wait on it) and
/// whose write end blocks (a child writes its report whole); both
/// close-on-exec.
pub fn pipe_nonblocking_read() -> Result<(OwnedFd, OwnedFd), Errno> {
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)?;
    fcntl(&write, FcntlArg::F_SETFL(OFlag::empty()))?;
    Ok((read, write))
}

/// read(2) once.
pub fn read(fd: BorrowedFd<'_>, buf: &mut [u8]) -> Result<usize, Errno> {
    nix::unistd::read(fd, buf)
}

/// poll(2).
pub fn poll(
    fds: &mut [nix::poll::PollFd<'_>],
    timeout: nix::poll::PollTimeout,
) -> Result<i32, Errno> {
    nix::poll::poll(fds, timeout)
}

/// Opens /dev/null read-write, close-on-exec.
pub fn open_dev_null() -> Result<OwnedFd, Errno> {
    nix::fcntl::open(
        "/dev/null",
        nix::fcntl::OFlag::O_RDWR | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
}

/// kill(2): `sig` to process `pid`.
pub fn send_signal(pid: Pid, sig: Signal) -> Result<(), Errno> {
    signal::kill(pid, sig)
}

/// killpg(2): `sig` to the process group `leader` leads.
pub fn send_signal_to_group(leader: Pid, sig: Signal) -> Result<(), Errno> {
    signal::killpg(leader, sig)
}

/// waitpid(2) on `pid`, blocking: reaps it.
pub fn wait_for(pid: Pid) -> Result<nix::sys::wait::WaitStatus, Errno> {
    nix::sys::wait::waitpid(pid, None)
}

/// waitpid(-1, WNOHANG): reaps one exited child, if any
/// (`WaitStatus::StillAlive` when none has exited; ECHILD when there are
/// none).
pub fn reap_any() -> Result<nix::sys::wait::WaitStatus, Errno> {
    nix::sys::wait::waitpid(None::<Pid>, Some(nix::sys::wait::WaitPidFlag::WNOHANG))
}

/// getpid(2).
pub fn own_pid() -> Pid {
    nix::unistd::getpid()
}

/// getppid(2).
pub fn parent_pid() -> Pid {
    nix::unistd::getppid()
}

/// setsid(2): the caller leads a new session and process group.
pub fn new_session() -> Result<Pid, Errno> {
    nix::unistd::setsid()
}

/// setrlimit(2) with the soft and hard limit both `value`.
pub fn set_rlimit(
    resource: nix::sys::resource::Resource,
    value: nix::sys::resource::rlim_t,
) -> Result<(), Errno> {
    nix::sys::resource::setrlimit(resource, value, value)
}

/// setgroups(2).
pub fn set_groups(groups: &[nix::unistd::Gid]) -> Result<(), Errno> {
    nix::unistd::setgroups(groups)
}

/// setgid(2).
pub fn set_gid(gid: nix::unistd::Gid) -> Result<(), Errno> {
    nix::unistd::setgid(gid)
}

/// fchown(2).
pub fn chown_fd(
    fd: BorrowedFd<'_>,
    uid: nix::unistd::Uid,
    gid: nix::unistd::Gid,
) -> Result<(), Errno> {
    nix::unistd::fchown(fd, Some(uid), Some(gid))
}

/// setuid(2).
pub fn set_uid(uid: nix::unistd::Uid) -> Result<(), Errno> {
    nix::unistd::setuid(uid)
}

/// Whether `path` names a file the caller may execute (access(2) X_OK)
/// that is a regular file.
pub fn is_executable_file(path: &str) -> bool {
    nix::unistd::access(path, nix::unistd::AccessFlags::X_OK).is_ok()
        && std::fs::metadata(path).is_ok_and(|m| m.is_file())
}

/// Write end of the signal self-pipe; -1 until installed.
static SIGCHLD_PIPE: AtomicI32 = AtomicI32::new(-1);
/// Set by SIGTERM: someone (an operator, or a daemon that lost this
/// supervisor's channel) asks for a clean shutdown.
static TERM_REQUESTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether SIGTERM arrived since the last call.
pub fn take_term_request() -> bool {
    TERM_REQUESTED.swap(false, Ordering::SeqCst)
}

extern "C" fn on_signal(sig: libc::c_int) {
    if sig == libc::SIGTERM {
        TERM_REQUESTED.store(true, Ordering::SeqCst);
    }
    let fd = SIGCHLD_PIPE.load(Ordering::Relaxed);
    if fd >= 0 {
        let byte = 1u8;
        // SAFETY: write(2) is async-signal-safe; the buffer is a live local;
        // a full pipe (EAGAIN) is fine because one pending byte already
        // wakes the loop.
        unsafe { libc::write(fd, (&raw const byte).cast(), 1) };
    }
}

/// Installs SIGCHLD and SIGTERM handlers that write a byte to a
/// non-blocking pipe and returns the pipe's read end, so the event loop can
/// poll for child exits and shutdown requests.
pub fn install_signal_pipe() -> Result<OwnedFd, Errno> {
    let (read, write) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK)?;
    // The write end lives for the whole process: the handler needs it.
    SIGCHLD_PIPE.store(
        std::os::fd::IntoRawFd::into_raw_fd(write),
        Ordering::Relaxed,
    );
    let action = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::SA_RESTART | SaFlags::SA_NOCLDSTOP,
        SigSet::empty(),
    );
    for sig in [Signal::SIGCHLD, Signal::SIGTERM] {
        // SAFETY: the handler only stores to an atomic and performs an
        // async-signal-safe write(2).
        unsafe { signal::sigaction(sig, &action) }?;
    }
    Ok(read)
}

/// Ignores SIGPIPE so a vanished daemon turns writes into EPIPE errors
/// instead of killing the supervisor (and with it the sandbox).
pub fn ignore_sigpipe() -> Result<(), Errno> {
    // SAFETY: SIG_IGN installs no handler code.
    unsafe { signal::signal(Signal::SIGPIPE, SigHandler::SigIgn) }.map(drop)
}

/// Asks the kernel to SIGKILL this process when its parent dies (Linux
/// PR_SET_PDEATHSIG, FreeBSD PROC_PDEATHSIG_CTL). Cleared by a credential
/// change, so call it after setuid. Elsewhere a no-op.
pub fn kill_on_parent_death() -> Result<(), Errno> {
    #[cfg(target_os = "linux")]
    {
        nix::sys::prctl::set_pdeathsig(Some(nix::sys::signal::Signal::SIGKILL))
    }
    #[cfg(target_os = "freebsd")]
    {
        let mut signal: libc::c_int = libc::SIGKILL;
        // SAFETY: PROC_PDEATHSIG_CTL on P_PID 0 (ourselves) reads one c_int
        // through the pointer, which points at a live local for the call.
        Errno::result(unsafe {
            libc::procctl(
                libc::P_PID,
                0,
                libc::PROC_PDEATHSIG_CTL,
                std::ptr::from_mut(&mut signal).cast(),
            )
        })
        .map(drop)
    }
    #[cfg(not(any(target_os = "linux", target_os = "freebsd")))]
    {
        Ok(())
    }
}

/// In a forked child: restores default dispositions for every signal the
/// supervisor changed and clears the signal mask, so the payload starts
/// clean.
pub fn reset_signals() -> Result<(), Errno> {
    for sig in [
        Signal::SIGCHLD,
        Signal::SIGPIPE,
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
    ] {
        // SAFETY: SIG_DFL installs no handler code.
        unsafe { signal::signal(sig, SigHandler::SigDfl) }?;
    }
    signal::sigprocmask(
        signal::SigmaskHow::SIG_SETMASK,
        Some(&SigSet::empty()),
        None,
    )
}

/// Makes the supervisor the reaper of orphaned descendants, so no sandbox
/// process is reparented to the host's init and Stop can find them all.
/// Returns false where the OS has no such facility.
pub fn become_subreaper() -> Result<bool, Errno> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: PR_SET_CHILD_SUBREAPER takes an integer argument only.
        let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
        Errno::result(rc).map(|_| true)
    }
    #[cfg(target_os = "freebsd")]
    {
        // SAFETY: PROC_REAP_ACQUIRE on ourselves takes no data.
        let rc = unsafe {
            libc::procctl(
                libc::P_PID,
                libc::getpid() as libc::id_t,
                libc::PROC_REAP_ACQUIRE,
                std::ptr::null_mut(),
            )
        };
        Errno::result(rc).map(|_| true)
    }
    #[cfg(not(any(target_os = "linux", target_os = "freebsd")))]
    {
        Ok(false)
    }
}

/// Installs a seccomp filter on the calling thread (after no_new_privs).
#[cfg(target_os = "linux")]
pub fn install_seccomp_filter(program: &[libc::sock_filter]) -> Result<(), Errno> {
    let len = u16::try_from(program.len()).map_err(|_| Errno::EINVAL)?;
    let prog = libc::sock_fprog {
        len,
        filter: program.as_ptr().cast_mut(),
    };
    // SAFETY: SECCOMP_SET_MODE_FILTER reads `len` instructions through
    // `prog.filter`, which points into `program`, alive and unchanged for
    // the call; the kernel copies them and never writes through it.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            0,
            std::ptr::from_ref(&prog),
        )
    };
    Errno::result(rc).map(drop)
}

/// Sets no_new_privs: execve can never grant privileges (setuid bits, file
/// capabilities) to the payload or its descendants.
pub fn set_no_new_privs() -> Result<(), Errno> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: PR_SET_NO_NEW_PRIVS takes integer arguments only.
        let rc = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
        Errno::result(rc).map(drop)
    }
    #[cfg(target_os = "freebsd")]
    {
        let mut enable: libc::c_int = libc::PROC_NO_NEW_PRIVS_ENABLE;
        // SAFETY: PROC_NO_NEW_PRIVS_CTL reads one c_int from the pointer,
        // which points at a live local.
        let rc = unsafe {
            libc::procctl(
                libc::P_PID,
                libc::getpid() as libc::id_t,
                libc::PROC_NO_NEW_PRIVS_CTL,
                (&raw mut enable).cast(),
            )
        };
        Errno::result(rc).map(drop)
    }
    #[cfg(not(any(target_os = "linux", target_os = "freebsd")))]
    {
        Err(Errno::ENOSYS)
    }
}

/// Capability numbers fit in the kernel's 64-bit masks.
#[cfg(target_os = "linux")]
const MAX_CAPABILITIES: u32 = 64;

/// Drops every capability not in `keep` from the bounding set and clears
/// the ambient set, so a uid-0 payload execs with at most `keep` (its
/// permitted set after execve is the bounding set when, as here, the
/// inheritable set is empty). Linux only; elsewhere a no-op returning false.
pub fn restrict_capabilities(keep: &[u32]) -> Result<bool, Errno> {
    #[cfg(target_os = "linux")]
    {
        // Up to the kernel's last capability, which the kernel itself says:
        // PR_CAPBSET_DROP fails with EINVAL past it. Not from
        // /proc/sys/kernel/cap_last_cap, which this process (already inside
        // the sandbox's root) would read from the image where no procfs
        // covers it: an image saying 0 kept every capability.
        for cap in (0..MAX_CAPABILITIES).filter(|c| !keep.contains(c)) {
            // SAFETY: PR_CAPBSET_DROP takes an integer capability number.
            let rc =
                unsafe { libc::prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(cap), 0, 0, 0) };
            match Errno::result(rc) {
                Ok(_) => {}
                Err(Errno::EINVAL) if cap > 0 => break,
                Err(e) => return Err(e),
            }
        }
        // SAFETY: PR_CAP_AMBIENT_CLEAR_ALL takes integer arguments only.
        let rc = unsafe {
            libc::prctl(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_CLEAR_ALL,
                0,
                0,
                0,
            )
        };
        Errno::result(rc).map(|_| true)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = keep;
        Ok(false)
    }
}

/// Marks the calling process non-dumpable, so no other process (without
/// CAP_SYS_PTRACE) can open its /proc/<pid>/exe, mem or fds: a forked copy of
/// the supervisor must not expose the sandboxd binary to the sandbox before
/// it execs the payload (the CVE-2019-5736 class). execve of the payload
/// resets it. No-op outside Linux.
pub fn set_non_dumpable() -> Result<(), Errno> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: PR_SET_DUMPABLE takes integer arguments only.
        Errno::result(unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) }).map(drop)
    }
    #[cfg(not(target_os = "linux"))]
    {
        Ok(())
    }
}

/// Whether no_new_privs exists on this OS (for honest capability reports).
pub const HAS_NO_NEW_PRIVS: bool = cfg!(any(target_os = "linux", target_os = "freebsd"));

/// Closes every descriptor >= `first` except those in `keep`.
pub fn close_fds_except(first: RawFd, keep: &[RawFd]) {
    let mut keep: Vec<RawFd> = keep.iter().copied().filter(|k| *k >= first).collect();
    keep.sort_unstable();
    keep.dedup();
    let mut from = first;
    for k in keep {
        if k > from {
            close_range(from, k - 1);
        }
        from = k + 1;
    }
    close_range(from, RawFd::MAX);
}

/// Closes descriptors `first..=last`.
fn close_range(first: RawFd, last: RawFd) {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: close_range only closes descriptors; callers are
        // single-threaded (a forked child, or the helper before it opens
        // anything) and no Rust object there uses those numbers again.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_close_range,
                first as libc::c_uint,
                last as libc::c_uint,
                0,
            )
        };
        if rc == 0 {
            return;
        }
    }
    // Fallback (old kernels, other Unixes): close up to the soft limit.
    let max = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map(|(soft, _)| soft.min(1 << 20) as RawFd)
        .unwrap_or(1024);
    for fd in first..=last.min(max) {
        // SAFETY: as above.
        unsafe { libc::close(fd) };
    }
}

/// Puts /dev/null on descriptors 0, 1 and 2.
pub fn stdio_to_dev_null() -> Result<(), Errno> {
    let null = open_dev_null()?;
    for target in 0..=2 {
        dup_to(null.as_fd(), target)?;
    }
    Ok(())
}

/// Moves `fd` to descriptor `target` (dup2), clearing close-on-exec.
pub fn dup_to(fd: BorrowedFd<'_>, target: RawFd) -> Result<(), Errno> {
    if fd.as_raw_fd() == target {
        // dup2 to itself keeps CLOEXEC; clear it explicitly.
        return nix::fcntl::fcntl(
            fd,
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
        )
        .map(drop);
    }
    // SAFETY: dup2 onto 0..=2 replaces our stdio, which we own; no Rust object
    // holds those numbers in the child.
    Errno::result(unsafe { libc::dup2(fd.as_raw_fd(), target) }).map(drop)
}

/// Makes `fd` (a terminal) the controlling terminal of the calling session
/// leader.
pub fn set_controlling_tty(fd: BorrowedFd<'_>) -> Result<(), Errno> {
    // SAFETY: TIOCSCTTY takes an integer argument.
    Errno::result(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSCTTY as _, 0) }).map(drop)
}

/// Sets a terminal's size.
pub fn set_winsize(fd: BorrowedFd<'_>, rows: u16, cols: u16) -> Result<(), Errno> {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize from the pointer, a live local.
    Errno::result(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ as _, &raw const ws) })
        .map(drop)
}

/// A pseudo-terminal pair.
#[derive(Debug)]
pub struct Pty {
    /// The controlling side (the daemon's).
    pub master: OwnedFd,
    /// The terminal side (the process's stdio).
    pub replica: OwnedFd,
}

/// Allocates a pseudo-terminal, both ends close-on-exec.
pub fn openpty(rows: u16, cols: u16) -> Result<Pty, Errno> {
    let ws = nix::pty::Winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let pty = nix::pty::openpty(Some(&ws), None)?;
    for fd in [&pty.master, &pty.slave] {
        nix::fcntl::fcntl(
            fd,
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
        )?;
    }
    Ok(Pty {
        master: pty.master,
        replica: pty.slave,
    })
}

/// Allocates a pseudo-terminal from the `/dev/ptmx` of the calling
/// process's root (a payload child that has entered its sandbox: the
/// sandbox's own devpts instance), both ends close-on-exec, the replica
/// sized. The replica is opened from the controlling side (Linux
/// TIOCGPTPEER), not by a path the sandbox could have replaced; elsewhere
/// by `ptsname`, in the sandbox's own /dev.
pub fn openpty_here(rows: u16, cols: u16) -> Result<Pty, Errno> {
    use nix::fcntl::OFlag;
    let master = nix::pty::posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)?;
    nix::pty::grantpt(&master)?;
    nix::pty::unlockpt(&master)?;
    #[cfg(target_os = "linux")]
    let replica = {
        // SAFETY: TIOCGPTPEER takes the open flags as its integer argument
        // and returns a new descriptor, which we own.
        let fd = Errno::result(unsafe {
            libc::ioctl(
                master.as_raw_fd(),
                libc::TIOCGPTPEER as _,
                libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
            )
        })?;
        // SAFETY: the ioctl returned a new descriptor nobody else owns.
        unsafe { OwnedFd::from_raw_fd(fd) }
    };
    #[cfg(not(target_os = "linux"))]
    let replica = {
        // SAFETY: ptsname's static buffer is safe in this single-threaded
        // child (the only caller).
        let name = unsafe { nix::pty::ptsname(&master) }?;
        nix::fcntl::open(
            name.as_str(),
            OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )?
    };
    set_winsize(replica.as_fd(), rows, cols)?;
    Ok(Pty {
        master: OwnedFd::from(master),
        replica,
    })
}

/// A connected pair of unix stream sockets, close-on-exec (a child hands a
/// descriptor back over it).
pub fn socketpair() -> Result<(OwnedFd, OwnedFd), Errno> {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType};
    nix::sys::socket::socketpair(
        AddressFamily::Unix,
        SockType::Stream,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
}

/// Sends `bytes` with `fds` attached as SCM_RIGHTS. Returns bytes written
/// (possibly fewer; the caller sends the rest without fds).
pub fn send_with_fds(
    sock: BorrowedFd<'_>,
    bytes: &[u8],
    fds: &[BorrowedFd<'_>],
) -> io::Result<usize> {
    let raw: Vec<RawFd> = fds.iter().map(AsRawFd::as_raw_fd).collect();
    let cmsgs: Vec<ControlMessage<'_>> = if raw.is_empty() {
        Vec::new()
    } else {
        vec![ControlMessage::ScmRights(&raw)]
    };
    let flags = msg_nosignal();
    sendmsg::<()>(
        sock.as_raw_fd(),
        &[IoSlice::new(bytes)],
        &cmsgs,
        flags,
        None,
    )
    .map_err(io::Error::from)
}

#[cfg(any(target_os = "linux", target_os = "freebsd", target_os = "android"))]
fn msg_nosignal() -> MsgFlags {
    MsgFlags::MSG_NOSIGNAL
}

#[cfg(not(any(target_os = "linux", target_os = "freebsd", target_os = "android")))]
fn msg_nosignal() -> MsgFlags {
    MsgFlags::empty()
}

/// Receives bytes into `buf`, appending any descriptors that arrived to
/// `fds` (marked close-on-exec). Returns bytes read; 0 means EOF.
pub fn recv_with_fds(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
    fds: &mut Vec<OwnedFd>,
) -> io::Result<usize> {
    let mut space = nix::cmsg_space!([RawFd; 8]);
    let mut iov = [IoSliceMut::new(buf)];
    let msg = recvmsg::<()>(sock.as_raw_fd(), &mut iov, Some(&mut space), recv_flags())
        .map_err(io::Error::from)?;
    for cmsg in msg.cmsgs().map_err(io::Error::from)? {
        if let ControlMessageOwned::ScmRights(received) = cmsg {
            for fd in received {
                // SAFETY: the kernel just installed this descriptor for us in
                // SCM_RIGHTS; nothing else owns it.
                fds.push(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
    }
    Ok(msg.bytes)
}

#[cfg(any(target_os = "linux", target_os = "freebsd", target_os = "android"))]
fn recv_flags() -> MsgFlags {
    MsgFlags::MSG_CMSG_CLOEXEC
}

#[cfg(not(any(target_os = "linux", target_os = "freebsd", target_os = "android")))]
fn recv_flags() -> MsgFlags {
    MsgFlags::empty()
}

/// The effective uid of the process at the other end of a connected unix
/// socket, from the kernel (SO_PEERCRED on Linux, getpeereid(3) with
/// LOCAL_PEERCRED on the BSDs). ENOSYS where neither exists: the caller
/// then refuses the peer.
pub fn peer_uid(sock: BorrowedFd<'_>) -> Result<u32, Errno> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        nix::sys::socket::getsockopt(&sock, nix::sys::socket::sockopt::PeerCredentials)
            .map(|c| c.uid())
    }
    #[cfg(any(
        target_os = "freebsd",
        target_os = "dragonfly",
        target_os = "netbsd",
        target_os = "openbsd",
        target_os = "macos",
        target_os = "ios"
    ))]
    {
        nix::unistd::getpeereid(sock).map(|(uid, _)| uid.as_raw())
    }
    #[cfg(not(any(
        target_os = "linux",
        target_os = "android",
        target_os = "freebsd",
        target_os = "dragonfly",
        target_os = "netbsd",
        target_os = "openbsd",
        target_os = "macos",
        target_os = "ios"
    )))]
    {
        let _ = sock;
        Err(Errno::ENOSYS)
    }
}

/// Direct children of `parent`, read from /proc (Linux). Used to find
/// orphans reparented to the subreaper supervisor.
pub fn children_of(parent: Pid) -> Vec<Pid> {
    #[cfg(target_os = "linux")]
    {
        let mut out = Vec::new();
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return out;
        };
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<i32>().ok())
            else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            // The command name is in parentheses and may contain spaces:
            // fields after the last ')' are "state ppid ...".
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|s| s.parse::<i32>().ok());
            if ppid == Some(parent.as_raw()) {
                out.push(Pid::from_raw(pid));
            }
        }
        out
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = parent;
        Vec::new()
    }
}

/// Kills every descendant of the calling reaper at once where the OS can
/// (FreeBSD PROC_REAP_KILL). Returns false elsewhere.
pub fn kill_all_descendants(sig: Signal) -> bool {
    #[cfg(target_os = "freebsd")]
    {
        let mut req = ReaperKill {
            rk_sig: sig as libc::c_int,
            ..ReaperKill::default()
        };
        // SAFETY: PROC_REAP_KILL reads/writes one procctl_reaper_kill, a live
        // local.
        let rc = unsafe {
            libc::procctl(
                libc::P_PID,
                libc::getpid() as libc::id_t,
                libc::PROC_REAP_KILL,
                (&raw mut req).cast(),
            )
        };
        rc == 0
    }
    #[cfg(not(target_os = "freebsd"))]
    {
        let _ = sig;
        false
    }
}

/// `struct procctl_reaper_kill` from FreeBSD's <sys/procctl.h> (libc does
/// not export it).
#[cfg(target_os = "freebsd")]
#[repr(C)]
#[derive(Default)]
struct ReaperKill {
    rk_sig: libc::c_int,
    rk_flags: libc::c_uint,
    rk_subtree: libc::pid_t,
    rk_killed: libc::c_uint,
    rk_fpid: libc::pid_t,
    rk_pad0: [libc::c_uint; 15],
}

/// execve(2), or an error if it returns.
pub fn execve(path: &CString, argv: &[CString], env: &[CString]) -> Errno {
    match nix::unistd::execve(path, argv, env) {
        Err(e) => e,
        Ok(never) => match never {},
    }
}

/// _exit(2): leaves a forked child without running the parent's atexit
/// handlers or flushing its buffers.
pub fn exit_child(code: i32) -> ! {
    // SAFETY: _exit is always safe to call; it never returns.
    unsafe { libc::_exit(code) }
}

/// Takes fd 0 (the daemon's end of the socketpair, passed as stdin) as an
/// owned close-on-exec descriptor and puts /dev/null on fd 0 instead.
pub fn take_stdin_channel() -> Result<OwnedFd, Errno> {
    nix::sys::stat::fstat(std::io::stdin().as_fd()).and_then(|st| {
        if st.st_mode & libc::S_IFMT == libc::S_IFSOCK {
            Ok(())
        } else {
            Err(Errno::ENOTSOCK)
        }
    })?;
    // SAFETY: F_DUPFD_CLOEXEC returns a new descriptor that nothing else owns.
    let raw = Errno::result(unsafe { libc::fcntl(0, libc::F_DUPFD_CLOEXEC, 3) })?;
    // SAFETY: `raw` was just created above and is owned by nobody else.
    let sock = unsafe { OwnedFd::from_raw_fd(raw) };
    let null = nix::fcntl::open(
        "/dev/null",
        nix::fcntl::OFlag::O_RDWR,
        nix::sys::stat::Mode::empty(),
    )?;
    dup_to(null.as_fd(), 0)?;
    Ok(sock)
}

/// The host's process table: `/proc` on Linux, the `kern.proc` sysctls on
/// FreeBSD (where procfs is not mounted by default). Elsewhere it knows no
/// process, so nothing is ever signalled blindly.
#[derive(Debug, Clone, Copy, Default)]
pub struct HostProcesses;

#[cfg(target_os = "linux")]
impl crate::procs::ProcessTable for HostProcesses {
    fn args(&self, pid: i32) -> Option<Vec<u8>> {
        std::fs::read(format!("/proc/{pid}/cmdline")).ok()
    }

    fn pids(&self) -> Vec<i32> {
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse().ok()))
            .collect()
    }
}

#[cfg(target_os = "freebsd")]
impl crate::procs::ProcessTable for HostProcesses {
    fn args(&self, pid: i32) -> Option<Vec<u8>> {
        sysctl_mib(&[libc::CTL_KERN, libc::KERN_PROC, libc::KERN_PROC_ARGS, pid]).ok()
    }

    fn pids(&self) -> Vec<i32> {
        // Processes, not threads (KERN_PROC_PROC); the argument is unused.
        match sysctl_mib(&[libc::CTL_KERN, libc::KERN_PROC, libc::KERN_PROC_PROC, 0]) {
            Ok(buf) => {
                crate::procs::kinfo_pids(&buf, std::mem::offset_of!(libc::kinfo_proc, ki_pid))
            }
            Err(_) => Vec::new(),
        }
    }
}

#[cfg(not(any(target_os = "linux", target_os = "freebsd")))]
impl crate::procs::ProcessTable for HostProcesses {
    fn args(&self, _pid: i32) -> Option<Vec<u8>> {
        None
    }

    fn pids(&self) -> Vec<i32> {
        Vec::new()
    }
}

/// `sysctl(3)` by MIB: the whole value. A table that grows between the
/// size query and the read (processes starting) is read again.
#[cfg(target_os = "freebsd")]
fn sysctl_mib(mib: &[libc::c_int]) -> Result<Vec<u8>, Errno> {
    let namelen = libc::c_uint::try_from(mib.len()).map_err(|_| Errno::EINVAL)?;
    for _ in 0..8 {
        let mut size: libc::size_t = 0;
        // SAFETY: `mib` is `namelen` valid ints; a null `oldp` with a valid
        // `oldlenp` only asks for the size; no new value is set.
        Errno::result(unsafe {
            libc::sysctl(
                mib.as_ptr(),
                namelen,
                std::ptr::null_mut(),
                &mut size,
                std::ptr::null(),
                0,
            )
        })?;
        // Headroom for what appears before the second call.
        let mut buf = vec![0u8; size + size / 8 + 64];
        let mut got: libc::size_t = buf.len();
        // SAFETY: `buf` is writable for `got` bytes; the kernel writes at
        // most that many and stores the length it wrote in `got`.
        let r = Errno::result(unsafe {
            libc::sysctl(
                mib.as_ptr(),
                namelen,
                buf.as_mut_ptr().cast(),
                &mut got,
                std::ptr::null(),
                0,
            )
        });
        match r {
            Ok(_) => {
                buf.truncate(got);
                return Ok(buf);
            }
            Err(Errno::ENOMEM) => {}
            Err(e) => return Err(e),
        }
    }
    Err(Errno::ENOMEM)
}

/// Whether `pid` is (still) the supervisor of sandbox `id`: its arguments
/// are `<exe> __supervise <id>`. Guards against signalling a recycled pid.
/// Where the process table cannot be read the answer is false: never
/// signal blindly.
pub fn is_supervisor(pid: i32, id: &str) -> bool {
    crate::procs::is_supervisor_in(&HostProcesses, pid, id)
}

/// The effective uid of process `pid` as the host sees it (the supervisor
/// reads it for a probe that has exited but is not yet reaped): Linux from
/// `/proc/<pid>/status`, FreeBSD from `kern.proc.pid`; `None` elsewhere or
/// when it cannot be read.
pub fn host_uid_of(pid: Pid) -> Option<u32> {
    #[cfg(target_os = "linux")]
    {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let line = status.lines().find_map(|l| l.strip_prefix("Uid:"))?;
        line.split_whitespace().nth(1)?.parse().ok()
    }
    #[cfg(target_os = "freebsd")]
    {
        kinfo_of(pid).map(|info| info.ki_uid)
    }
    #[cfg(not(any(target_os = "linux", target_os = "freebsd")))]
    {
        let _ = pid;
        None
    }
}

/// FreeBSD: process `pid`'s `kinfo_proc` from the `kern.proc.pid` sysctl.
#[cfg(target_os = "freebsd")]
fn kinfo_of(pid: Pid) -> Option<libc::kinfo_proc> {
    let mut info = std::mem::MaybeUninit::<libc::kinfo_proc>::zeroed();
    let mut len = std::mem::size_of::<libc::kinfo_proc>();
    let mib = [
        libc::CTL_KERN,
        libc::KERN_PROC,
        libc::KERN_PROC_PID,
        pid.as_raw(),
    ];
    // SAFETY: sysctl writes at most `len` bytes into `info`, which is
    // that large; the mib array is live for the call.
    let rc = unsafe {
        libc::sysctl(
            mib.as_ptr(),
            mib.len() as libc::c_uint,
            info.as_mut_ptr().cast(),
            &raw mut len,
            std::ptr::null(),
            0,
        )
    };
    if rc != 0 || len < std::mem::size_of::<libc::kinfo_proc>() {
        return None;
    }
    // SAFETY: the kernel filled the whole struct (len checked above).
    Some(unsafe { info.assume_init() })
}

/// Borrows a descriptor number handed to us (the error pipe inside a forked
/// child) for one call.
pub fn borrow_fd(fd: RawFd) -> BorrowedFd<'static> {
    // SAFETY: only used in a forked child for descriptors the supervisor
    // created and keeps open until that child execs or exits.
    unsafe { BorrowedFd::borrow_raw(fd) }
}

/// Opens a directory the daemon configured (trusted path), close-on-exec.
pub fn open_dir(path: &std::path::Path) -> Result<OwnedFd, Errno> {
    nix::fcntl::open(
        path,
        nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
}

/// Opens the directory that holds a sandbox's image: the daemon's
/// configured images dir as it is (trusted path), or, with `no_symlinks`
/// (the parent of a client-given `spec.rootfs`), component by component
/// from `/` with `O_NOFOLLOW`, so no symlink anywhere on the path can lead
/// the open elsewhere (portable: no openat2). Validation has refused `.`
/// and `..` components.
pub fn open_image_dir(path: &std::path::Path, no_symlinks: bool) -> Result<OwnedFd, Errno> {
    if !no_symlinks {
        return open_dir(path);
    }
    let mut dir = open_dir(std::path::Path::new("/"))?;
    for c in path.components() {
        match c {
            std::path::Component::RootDir => {}
            std::path::Component::Normal(name) => {
                dir = nix::fcntl::openat(
                    dir.as_fd(),
                    name,
                    nix::fcntl::OFlag::O_DIRECTORY
                        | nix::fcntl::OFlag::O_NOFOLLOW
                        | nix::fcntl::OFlag::O_RDONLY
                        | nix::fcntl::OFlag::O_CLOEXEC,
                    nix::sys::stat::Mode::empty(),
                )?;
            }
            // Never produced by a validated path.
            _ => return Err(Errno::EINVAL),
        }
    }
    Ok(dir)
}

/// Opens image `name` inside the images directory without following a
/// symlink: a symlinked image (which could point anywhere on the host) fails
/// with ELOOP or ENOTDIR.
pub fn open_image(images_dir: BorrowedFd<'_>, name: &str) -> Result<OwnedFd, Errno> {
    nix::fcntl::openat(
        images_dir,
        name,
        nix::fcntl::OFlag::O_DIRECTORY
            | nix::fcntl::OFlag::O_NOFOLLOW
            | nix::fcntl::OFlag::O_RDONLY
            | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
}

/// openat2(2), again while it fails with EAGAIN: with RESOLVE_IN_ROOT or
/// RESOLVE_BENEATH the kernel gives up on a `..` step when any rename or
/// mount anywhere on the host raced it (other sandboxes being built), and
/// the man page's answer is to retry. Bounded: a host that renames and
/// mounts without pause still gets its EAGAIN.
#[cfg(target_os = "linux")]
fn openat2_retrying<P: ?Sized + nix::NixPath>(
    dir: impl AsFd,
    path: &P,
    how: nix::fcntl::OpenHow,
) -> Result<OwnedFd, Errno> {
    const ATTEMPTS: usize = 16;
    let mut result = nix::fcntl::openat2(dir.as_fd(), path, how);
    for _ in 1..ATTEMPTS {
        if !matches!(result, Err(Errno::EAGAIN)) {
            break;
        }
        result = nix::fcntl::openat2(dir.as_fd(), path, how);
    }
    result
}

/// Resolves `path` inside `root` as if it were `/`: `..` and symlinks
/// cannot leave it (openat2 RESOLVE_IN_ROOT). Returns an O_PATH descriptor.
#[cfg(target_os = "linux")]
pub fn resolve_in_root(root: BorrowedFd<'_>, path: &std::path::Path) -> Result<OwnedFd, Errno> {
    use nix::fcntl::{OFlag, OpenHow, ResolveFlag};
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    openat2_retrying(root, path, how)
}

/// As [`resolve_in_root`], but following no symlink at all (ELOOP at the
/// first one): what it returns is exactly `path` inside `root`.
#[cfg(target_os = "linux")]
pub fn resolve_in_root_no_symlinks(
    root: BorrowedFd<'_>,
    path: &std::path::Path,
) -> Result<OwnedFd, Errno> {
    use nix::fcntl::{OFlag, OpenHow, ResolveFlag};
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_SYMLINKS);
    openat2_retrying(root, path, how)
}

/// Resolves `rel` below `dir` refusing any symlink and any `..` that would
/// leave it (RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS). Returns an O_PATH
/// descriptor; an empty `rel` is `dir` itself.
#[cfg(target_os = "linux")]
pub fn resolve_beneath(dir: BorrowedFd<'_>, rel: &std::path::Path) -> Result<OwnedFd, Errno> {
    use nix::fcntl::{OFlag, OpenHow, ResolveFlag};
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_CLOEXEC)
        .resolve(
            ResolveFlag::RESOLVE_BENEATH
                | ResolveFlag::RESOLVE_NO_SYMLINKS
                | ResolveFlag::RESOLVE_NO_MAGICLINKS,
        );
    let rel = if rel.as_os_str().is_empty() {
        std::path::Path::new(".")
    } else {
        rel
    };
    openat2_retrying(dir, rel, how)
}

/// The kind of namespace an nsfs descriptor refers to (ioctl
/// NS_GET_NSTYPE): a `CLONE_NEW*` value. Fails (ENOTTY) on any other file.
#[cfg(target_os = "linux")]
pub fn namespace_type(fd: BorrowedFd<'_>) -> Result<libc::c_int, Errno> {
    // _IO(0xb7, 0x3), linux/nsfs.h.
    const NS_GET_NSTYPE: u32 = 0xb703;
    // SAFETY: NS_GET_NSTYPE takes no argument and only returns a value;
    // `fd` is a borrowed, open descriptor.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), NS_GET_NSTYPE as _) };
    Errno::result(rc)
}

/// The sandbox's root as the calling process sees it (after chroot or
/// pivot_root), as an O_PATH descriptor.
#[cfg(target_os = "linux")]
fn open_root() -> Result<OwnedFd, Errno> {
    nix::fcntl::open(
        "/",
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
}

/// Resolves a client-supplied `path` inside the calling process's root
/// without ever following a magic link (`/proc/self/fd/N`, `/proc/*/cwd`,
/// `/proc/*/exe`...): absolute paths with RESOLVE_IN_ROOT from `/`,
/// relative ones from the working directory. `flags` are the open flags
/// (O_CLOEXEC is added).
#[cfg(target_os = "linux")]
pub fn open_client_path(path: &CStr, flags: nix::fcntl::OFlag) -> Result<OwnedFd, Errno> {
    use nix::fcntl::{OFlag, OpenHow, ResolveFlag};
    let how = OpenHow::new().flags(flags | OFlag::O_CLOEXEC);
    if path.to_bytes().first() == Some(&b'/') {
        let root = open_root()?;
        openat2_retrying(
            root.as_fd(),
            path,
            how.resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS),
        )
    } else {
        openat2_retrying(
            nix::fcntl::AT_FDCWD,
            path,
            how.resolve(ResolveFlag::RESOLVE_NO_MAGICLINKS),
        )
    }
}

/// Makes the client's working directory current: resolved with
/// [`open_client_path`], entered with fchdir(2), so a magic link can never
/// make it a directory outside the root.
#[cfg(target_os = "linux")]
pub fn enter_client_dir(path: &CStr) -> Result<(), Errno> {
    use nix::fcntl::OFlag;
    let dir = open_client_path(path, OFlag::O_PATH | OFlag::O_DIRECTORY)?;
    nix::unistd::fchdir(dir.as_fd())
}

/// Creates the client's working directory `path` (absolute, inside the
/// calling process's root) and its missing parents, mode 0755 under umask
/// 022, as runc and Docker make a container's. Every existing prefix is
/// resolved with [`open_client_path`] (inside the root, never through a
/// magic link) and each missing component made with mkdirat(2) in the
/// directory so resolved: a symlink on the way cannot lead the creation
/// outside the root, and one planted at a missing component's name (a
/// dangling one included) is never followed (EEXIST, then ENOENT).
#[cfg(target_os = "linux")]
pub fn make_client_dir_all(path: &CStr) -> Result<(), Errno> {
    use nix::fcntl::OFlag;
    use nix::sys::stat::{Mode, mkdirat, umask};
    let bytes = path.to_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(Errno::EINVAL);
    }
    let mut dir = open_root()?;
    let mut prefix = Vec::with_capacity(bytes.len());
    for name in bytes.split(|b| *b == b'/').filter(|c| !c.is_empty()) {
        prefix.push(b'/');
        prefix.extend_from_slice(name);
        let at = CString::new(prefix.as_slice()).map_err(|_| Errno::EINVAL)?;
        let open = || open_client_path(&at, OFlag::O_PATH | OFlag::O_DIRECTORY);
        dir = match open() {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => {
                let name = CString::new(name).map_err(|_| Errno::EINVAL)?;
                let old = umask(Mode::from_bits_truncate(0o022));
                let made = mkdirat(
                    dir.as_fd(),
                    name.as_c_str(),
                    Mode::from_bits_truncate(0o755),
                );
                umask(old);
                match made {
                    Ok(()) | Err(Errno::EEXIST) => open()?,
                    Err(e) => return Err(e),
                }
            }
            Err(e) => return Err(e),
        };
    }
    Ok(())
}

/// Other systems: mkdir -p inside the process's root (a chroot or jail,
/// which confines absolute symlinks too), mode 0755 under umask 022.
#[cfg(not(target_os = "linux"))]
pub fn make_client_dir_all(path: &CStr) -> Result<(), Errno> {
    use nix::sys::stat::{Mode, umask};
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::DirBuilderExt;
    let old = umask(Mode::from_bits_truncate(0o022));
    let made = std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(std::ffi::OsStr::from_bytes(path.to_bytes()));
    umask(old);
    made.map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))
}

/// Other systems: chdir(2). (FreeBSD jails mount no procfs of the host's
/// kind, and the supervisor's descriptors are closed before this.)
#[cfg(not(target_os = "linux"))]
pub fn enter_client_dir(path: &CStr) -> Result<(), Errno> {
    nix::unistd::chdir(path)
}

/// execveat(fd, "", argv, envp, AT_EMPTY_PATH): runs exactly the file the
/// descriptor names. Returns only on failure.
#[cfg(target_os = "linux")]
pub fn execveat_fd(fd: BorrowedFd<'_>, argv: &[CString], env: &[CString]) -> Errno {
    match nix::unistd::execveat(fd, c"", argv, env, nix::fcntl::AtFlags::AT_EMPTY_PATH) {
        Err(e) => e,
        Ok(never) => match never {},
    }
}

/// Whether `fd` is a regular file.
pub fn is_regular_file(fd: BorrowedFd<'_>) -> bool {
    nix::sys::stat::fstat(fd).is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFREG)
}

/// Up to `max` bytes from the start of `fd`.
pub fn read_head(fd: BorrowedFd<'_>, max: usize) -> Result<Vec<u8>, Errno> {
    let mut buf = vec![0u8; max];
    let n = nix::sys::uio::pread(fd, &mut buf, 0)?;
    buf.truncate(n);
    Ok(buf)
}

/// Creates (or empties) `<dir>/masked`, mode 000: the file bound over the
/// sandboxd binary inside a sandbox so a payload can neither read nor run
/// the helper. A symlink planted at that name is not followed (ELOOP), and
/// an earlier file is made mode 000 again (`mode` applies only to a new
/// one). Returns its path and the open file (FreeBSD checks the inode it
/// mounts).
pub fn create_mask_file(dir: &std::path::Path) -> io::Result<(std::path::PathBuf, std::fs::File)> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let cover = dir.join("masked");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o000)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&cover)?;
    file.set_permissions(std::fs::Permissions::from_mode(0o000))?;
    Ok((cover, file))
}

/// The kernel path of an open descriptor (`/proc/self/fd/N`), usable as a
/// mount source or target: the kernel resolves it to exactly the object
/// that was opened, so no later rename or symlink swap can redirect the
/// mount.
#[cfg(target_os = "linux")]
pub fn fd_path(fd: BorrowedFd<'_>) -> std::path::PathBuf {
    std::path::PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// Whether `fd` is a directory.
pub fn is_dir(fd: BorrowedFd<'_>) -> bool {
    nix::sys::stat::fstat(fd).is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFDIR)
}

/// Every process whose arguments are `<exe> __supervise <id>` (the
/// supervisor, and on Linux its pid-1 clone), for a record that does not
/// know its supervisor's pid yet (a create cut short by a daemon crash).
pub fn find_supervisors(id: &str) -> Vec<i32> {
    crate::procs::find_supervisors_in(&HostProcesses, id)
}

/// Rewrites the calling process's argument vector as others see it
/// (`/proc/<pid>/cmdline`, `ps`) with `args` (NUL-separated, ending with a
/// NUL), in place: the bytes between the kernel's `arg_start` and
/// `arg_end` (from `/proc/self/stat`) are overwritten, which needs no
/// capability (unlike `PR_SET_MM`) but only works when `args` has exactly
/// their length (EINVAL otherwise; the zygote is started with arguments
/// padded to the length of a supervisor's). A supervisor forked by the
/// zygote names itself `<exe> __supervise <id>` this way, as an exec'd one
/// is named, so a restarted daemon finds it. Linux only; ENOSYS elsewhere.
pub fn set_own_args(args: &[u8]) -> Result<(), Errno> {
    #[cfg(target_os = "linux")]
    {
        if args.last() != Some(&0) {
            return Err(Errno::EINVAL);
        }
        // The area never moves, and a fork has it at the same address: read
        // once per process image, not twice per supervisor the zygote forks.
        static AREA: std::sync::OnceLock<Result<(usize, usize), Errno>> =
            std::sync::OnceLock::new();
        let (start, end) = (*AREA.get_or_init(own_arg_area))?;
        if end.checked_sub(start) != Some(args.len()) || start == 0 {
            return Err(Errno::EINVAL);
        }
        // SAFETY: [start, end) is this process's argument area on its
        // initial stack, mapped and writable for the life of the process
        // and owned by no Rust object (std only keeps pointers to it for
        // `env::args`, which the caller no longer needs); the caller is
        // single-threaded, so nothing reads it concurrently; `args` has
        // exactly its length, checked above.
        unsafe { std::ptr::copy_nonoverlapping(args.as_ptr(), start as *mut u8, args.len()) };
        Ok(())
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = args;
        Err(Errno::ENOSYS)
    }
}

/// This process's argument area, `[arg_start, arg_end)` of
/// `/proc/self/stat` (its fields 48 and 49).
#[cfg(target_os = "linux")]
fn own_arg_area() -> Result<(usize, usize), Errno> {
    let stat = std::fs::read_to_string("/proc/self/stat").map_err(|_| Errno::EIO)?;
    // Fields after the command name's last ')' start at field 3.
    let mut fields = stat
        .rsplit_once(')')
        .ok_or(Errno::EIO)?
        .1
        .split_whitespace()
        .skip(45);
    let mut next =
        || -> Result<usize, Errno> { fields.next().and_then(|f| f.parse().ok()).ok_or(Errno::EIO) };
    Ok((next()?, next()?))
}

/// clone(2) with fork semantics (no new stack, SIGCHLD) and CLONE_PARENT:
/// the new process is a child of the caller's parent, not of the caller.
/// The zygote forks supervisors this way, so they are the daemon's
/// children as an exec'd helper is. Linux only; ENOSYS elsewhere.
///
/// # Safety
///
/// As [`fork_unchecked`]: the calling process must be single-threaded.
pub unsafe fn fork_to_parent_unchecked() -> Result<ForkResult, Errno> {
    #[cfg(target_os = "linux")]
    {
        let flags = (libc::CLONE_PARENT | libc::SIGCHLD) as libc::c_ulong;
        // SAFETY: the caller guarantees a single-threaded process (this
        // fn's contract) and there is no CLONE_VM, so the child inherits no
        // lock held by another thread; with a null stack it runs on a copy
        // of the caller's stack, exactly as after fork(2).
        let rc = unsafe { libc::syscall(libc::SYS_clone, flags, 0usize, 0usize, 0usize, 0usize) };
        match Errno::result(rc)? {
            0 => Ok(ForkResult::Child),
            pid => Ok(ForkResult::Parent {
                child: Pid::from_raw(pid as libc::pid_t),
            }),
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        Err(Errno::ENOSYS)
    }
}

/// pidfd_open(2): a descriptor for process `pid` (a child of the caller,
/// so its pid cannot be reused before the caller reaps it), close-on-exec.
/// Linux only; ENOSYS elsewhere.
pub fn pidfd_open(pid: Pid) -> Result<OwnedFd, Errno> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: pidfd_open takes a pid and flags and returns a new
        // descriptor (or -1); nothing is passed by pointer.
        let rc = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
        let raw = Errno::result(rc)?;
        let raw = RawFd::try_from(raw).map_err(|_| Errno::EBADF)?;
        // SAFETY: the kernel just created `raw` for us; nobody else owns it.
        Ok(unsafe { OwnedFd::from_raw_fd(raw) })
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = pid;
        Err(Errno::ENOSYS)
    }
}

/// pidfd_send_signal(2): `sig` to the process `pidfd` refers to (never to
/// a process that reused its pid). Linux only; ENOSYS elsewhere.
pub fn pidfd_signal(pidfd: BorrowedFd<'_>, sig: Signal) -> Result<(), Errno> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: a descriptor, a signal number, a null siginfo (as
        // kill(2)) and no flags.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                pidfd.as_raw_fd(),
                sig as libc::c_int,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        Errno::result(rc).map(drop)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (pidfd, sig);
        Err(Errno::ENOSYS)
    }
}

/// waitid(P_PIDFD, WEXITED | WNOHANG): reaps the child `pidfd` refers to
/// if it has exited (true), or says it still runs (false). ECHILD once it
/// has been reaped. Linux only; ENOSYS elsewhere.
pub fn pidfd_reap(pidfd: BorrowedFd<'_>) -> Result<bool, Errno> {
    #[cfg(target_os = "linux")]
    {
        use nix::sys::wait::{Id, WaitPidFlag, WaitStatus};
        match nix::sys::wait::waitid(
            Id::PIDFd(pidfd),
            WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG,
        )? {
            WaitStatus::StillAlive => Ok(false),
            _ => Ok(true),
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = pidfd;
        Err(Errno::ENOSYS)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    /// The mask file sits in the sandbox's directory: a symlink planted
    /// there must not make the supervisor truncate or chmod what it points
    /// at.
    #[test]
    fn mask_file_is_never_made_through_a_planted_symlink() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("sandboxd-mask-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let victim = dir.join("victim");
        std::fs::write(&victim, b"keep me").unwrap();
        std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::os::unix::fs::symlink(&victim, dir.join("masked")).unwrap();
        let made = super::create_mask_file(&dir);
        let content = std::fs::read(&victim).unwrap();
        let mode = std::fs::metadata(&victim).unwrap().permissions().mode() & 0o777;
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(made.is_err(), "made through the symlink: {made:?}");
        assert_eq!(content, b"keep me");
        assert_eq!(mode, 0o644);
    }

    #[test]
    fn an_existing_mask_file_is_emptied_and_made_mode_000() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("sandboxd-mask2-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("masked"), b"old").unwrap();
        std::fs::set_permissions(dir.join("masked"), std::fs::Permissions::from_mode(0o644))
            .unwrap();
        let (cover, _) = super::create_mask_file(&dir).unwrap();
        let meta = std::fs::metadata(&cover).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(meta.len(), 0);
        assert_eq!(meta.permissions().mode() & 0o777, 0);
    }

    /// The test harness runs tests on threads of their own: the checked
    /// fork must refuse, never fork a multi-threaded process.
    #[test]
    #[cfg_attr(
        not(any(target_os = "linux", target_os = "freebsd")),
        ignore = "no thread count here: fork() refuses with ENOSYS"
    )]
    fn checked_fork_refuses_a_multithreaded_process() {
        assert!(super::thread_count().is_some_and(|n| n > 1));
        let parked = std::thread::spawn(std::thread::park);
        match super::fork() {
            Err(e) => assert_eq!(e, nix::errno::Errno::EDEADLK),
            Ok(super::Fork::Child) => super::exit_child(0),
            Ok(super::Fork::Parent { child }) => {
                let _ = nix::sys::wait::waitpid(child, None);
                panic!("forked a multi-threaded process");
            }
        }
        parked.thread().unpark();
        parked.join().unwrap();
    }

    #[test]
    fn peer_uid_is_the_kernels_answer() {
        use std::os::fd::AsFd;
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let me = nix::unistd::geteuid().as_raw();
        assert_eq!(super::peer_uid(a.as_fd()), Ok(me));
        assert_eq!(super::peer_uid(b.as_fd()), Ok(me));
        // Not a socket: an error, never a uid.
        let file = std::fs::File::open("/dev/null").unwrap();
        assert!(super::peer_uid(file.as_fd()).is_err());
    }
}
