//! The Linux backend's kernel operations, one function per call. The
//! single-threaded supervisor helper and its forked children call these;
//! the daemon calls only the thread-scoped network-namespace ones
//! ([`setns`] and [`unshare`] with `CLONE_NEWNET`, [`mount_fs`] and
//! [`detach`] of the namespace's pin), from `net.rs`, on throwaway threads,
//! and [`new_network_namespace`] on the namespace pool's own thread.

use std::ffi::OsStr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{OFlag, openat};
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::CloneFlags;
use nix::sys::stat::Mode;
use nix::unistd::Pid;

/// What [`clone_process`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cloned {
    /// In the new process.
    Child,
    /// In the caller: the new process's pid (in the caller's pid namespace).
    Parent(Pid),
}

/// clone(2) with fork semantics (no new stack) and `flags` (namespaces,
/// CLONE_PARENT). SIGCHLD is the exit signal.
///
/// # Safety
///
/// As [`sandboxd_supervisor::sys::fork_unchecked`]: the calling process
/// must be single-threaded (the supervisor helper, or a child it forked).
/// The new process is a copy of the calling thread only and runs
/// arbitrary Rust; a lock another thread held would stay held in it.
/// `flags` must not contain `CLONE_VM` or `CLONE_THREAD` (the copy shares
/// nothing with its parent).
pub unsafe fn clone_process(flags: CloneFlags) -> Result<Cloned, Errno> {
    let raw = flags.bits() as libc::c_ulong | libc::SIGCHLD as libc::c_ulong;
    // SAFETY: the caller guarantees a single-threaded process and no
    // CLONE_VM (this fn's contract), so the child inherits no lock held by
    // another thread; with a null stack the child runs on a copy of the
    // caller's stack, exactly as after fork(2).
    let rc = unsafe { libc::syscall(libc::SYS_clone, raw, 0usize, 0usize, 0usize, 0usize) };
    match Errno::result(rc)? {
        0 => Ok(Cloned::Child),
        pid => Ok(Cloned::Parent(Pid::from_raw(pid as libc::pid_t))),
    }
}

/// `struct clone_args` from <linux/sched.h> (version 2, with `cgroup`).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// `CLONE_INTO_CGROUP` (Linux 5.7).
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// clone3(2) with fork semantics, starting the child directly in the cgroup
/// v2 directory `cgroup`: no migration afterwards, which would take the
/// kernel's global cgroup lock and wait for an RCU grace period (the
/// dominant cost of a create). ENOSYS/E2BIG on old kernels: the caller
/// falls back to [`clone_process`] plus a cgroup.procs write.
///
/// # Safety
///
/// As [`clone_process`]: a single-threaded caller, no `CLONE_VM` or
/// `CLONE_THREAD` in `flags`.
pub unsafe fn clone_into_cgroup(
    flags: CloneFlags,
    cgroup: BorrowedFd<'_>,
) -> Result<Cloned, Errno> {
    let mut args = CloneArgs {
        // The flags are non-negative c_ints; widen without sign extension.
        flags: u64::from(flags.bits() as u32) | CLONE_INTO_CGROUP,
        exit_signal: libc::SIGCHLD as u64,
        cgroup: cgroup.as_raw_fd() as u64,
        ..CloneArgs::default()
    };
    // SAFETY: as for clone_process (a single-threaded caller and no
    // CLONE_VM: this fn's contract; a null stack means fork semantics);
    // the kernel reads one clone_args of the size passed, a live local.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &raw mut args,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    match Errno::result(rc)? {
        0 => Ok(Cloned::Child),
        pid => Ok(Cloned::Parent(Pid::from_raw(pid as libc::pid_t))),
    }
}

/// setns(2) into the namespace `fd` refers to.
pub fn setns(fd: BorrowedFd<'_>, kind: CloneFlags) -> Result<(), Errno> {
    nix::sched::setns(fd, kind)
}

/// The calling thread's network namespace (`/proc/thread-self/ns/net`).
pub fn own_network_namespace() -> std::io::Result<OwnedFd> {
    std::fs::File::open("/proc/thread-self/ns/net").map(OwnedFd::from)
}

/// Makes a new network namespace (as CLONE_NEWNET: only `lo`, down) and
/// returns a descriptor of it, leaving the calling thread in `own`, the
/// one it was in (which must be the calling thread's own namespace):
/// unshare(2) moves the thread alone, the descriptor is opened, setns(2)
/// moves it back. Only for a thread that does nothing else meanwhile (the
/// namespace pool's); one whose return fails must not go on.
pub fn new_network_namespace(own: BorrowedFd<'_>) -> Result<OwnedFd, NetnsError> {
    nix::sched::unshare(CloneFlags::CLONE_NEWNET).map_err(NetnsError::Unshare)?;
    let made = own_network_namespace().map_err(NetnsError::Open);
    nix::sched::setns(own, CloneFlags::CLONE_NEWNET).map_err(NetnsError::Return)?;
    made
}

/// Makes the calling thread run only when a CPU has nothing else to do
/// (SCHED_IDLE): work done ahead must not slow the work it is for.
pub fn run_only_when_idle() -> Result<(), Errno> {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: sched_setscheduler only reads `param`, a valid sched_param on
    // this stack; pid 0 is the calling thread.
    let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
    Errno::result(rc).map(drop)
}

/// Why [`new_network_namespace`] failed.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    /// unshare(CLONE_NEWNET) failed: nothing changed.
    #[error("unshare(CLONE_NEWNET): {0}")]
    Unshare(Errno),
    /// The new namespace could not be opened (the thread is back).
    #[error("opening the new network namespace: {0}")]
    Open(std::io::Error),
    /// The thread could not go back to its own namespace: it must stop.
    #[error("returning to the thread's own network namespace: {0}")]
    Return(Errno),
}

/// Takes ownership of a descriptor number pid 1 inherited from the
/// supervisor (the given network namespace), so it is closed once used.
pub fn take_fd(fd: RawFd) -> OwnedFd {
    // SAFETY: only called by pid 1 for the network namespace descriptor
    // (NAMESPACE, or one the daemon made ahead), which it inherited open
    // from the supervisor (kept by close_fds_except) and which nothing else
    // in pid 1 owns or closes.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// unshare(2).
pub fn unshare(flags: CloneFlags) -> Result<(), Errno> {
    nix::sched::unshare(flags)
}

/// mount(2).
pub fn mount_fs(
    source: Option<&Path>,
    target: &Path,
    fstype: Option<&str>,
    flags: MsFlags,
    data: Option<&str>,
) -> Result<(), Errno> {
    mount(source, target, fstype, flags, data)
}

/// umount2(path, MNT_DETACH).
pub fn detach(target: &Path) -> Result<(), Errno> {
    umount2(target, MntFlags::MNT_DETACH)
}

/// pivot_root(".", ".") from the new root: the old root ends up stacked
/// under the new one, to be detached with [`detach`] on ".".
pub fn pivot_root_here() -> Result<(), Errno> {
    nix::unistd::pivot_root(".", ".")
}

/// The parent pid of `pid` (`PPid:` of `/proc/<pid>/status`).
pub fn parent_of(pid: i32) -> std::io::Result<i32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("PPid:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("/proc/{pid}/status has no PPid line")))
}

/// Opens `/proc/<pid>/ns/<name>` (a namespace to join later), close-on-exec.
pub fn open_namespace(pid: i32, name: &str) -> Result<OwnedFd, Errno> {
    nix::fcntl::open(
        format!("/proc/{pid}/ns/{name}").as_str(),
        OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

/// setresgid(gid, gid, gid) then setresuid(uid, uid, uid): every id of
/// the caller becomes these (root of a new user namespace).
pub fn set_all_ids(uid: nix::unistd::Uid, gid: nix::unistd::Gid) -> Result<(), Errno> {
    nix::unistd::setresgid(gid, gid, gid)?;
    nix::unistd::setresuid(uid, uid, uid)
}

/// Blocks SIGCHLD in the caller's signal mask and returns the set, to wait
/// for it with [`wait_for_signal`] (no exit is missed between a reap and
/// the wait).
pub fn block_sigchld() -> nix::sys::signal::SigSet {
    use nix::sys::signal::{SigSet, SigmaskHow, Signal, sigprocmask};
    let mut set = SigSet::empty();
    set.add(Signal::SIGCHLD);
    let _ = sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None);
    set
}

/// sigwait(2) for one of the (blocked) signals in `set`.
pub fn wait_for_signal(set: &nix::sys::signal::SigSet) {
    let _ = set.wait();
}

/// chdir(2).
pub fn chdir(path: &Path) -> Result<(), Errno> {
    nix::unistd::chdir(path)
}

/// sethostname(2).
pub fn sethostname(name: &str) -> Result<(), Errno> {
    nix::unistd::sethostname(name)
}

pub use sandboxd_supervisor::sys::{
    create_mask_file, fd_path, is_dir, is_regular_file, open_dir, open_image, open_image_dir,
    parent_pid, pipe, reap_any, resolve_beneath, resolve_in_root, resolve_in_root_no_symlinks,
    send_signal, set_gid, set_groups, set_uid, wait_for,
};

/// Resolves an absolute host path from `/` refusing every symlink
/// (client bind sources: validation already checked the allowlist prefix).
pub fn resolve_host_path(path: &Path) -> Result<OwnedFd, Errno> {
    let root = open_dir(Path::new("/"))?;
    resolve_beneath(root.as_fd(), path.strip_prefix("/").unwrap_or(path))
}

/// mkdirat; EEXIST is fine.
pub fn mkdir_at(parent: BorrowedFd<'_>, name: &OsStr) -> Result<(), Errno> {
    match nix::sys::stat::mkdirat(parent, name, Mode::from_bits_truncate(0o755)) {
        Ok(()) | Err(Errno::EEXIST) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Creates an empty file `name` in `parent` (a bind target for a file).
pub fn touch_at(parent: BorrowedFd<'_>, name: &OsStr) -> Result<(), Errno> {
    openat(
        parent,
        name,
        OFlag::O_CREAT | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o644),
    )
    .map(drop)
}

/// Creates character device `name` in `parent` with exactly `mode` (the
/// umask does not apply: the mode is set again after mknodat).
pub fn char_device_at(
    parent: BorrowedFd<'_>,
    name: &OsStr,
    major: u32,
    minor: u32,
    mode: u32,
) -> Result<(), Errno> {
    use nix::sys::stat::{FchmodatFlags, Mode, SFlag, fchmodat, makedev, mknodat};
    let perm = Mode::from_bits_truncate(mode);
    mknodat(
        parent,
        name,
        SFlag::S_IFCHR,
        perm,
        makedev(u64::from(major), u64::from(minor)),
    )?;
    // The node was just made in a directory no sandbox process can reach
    // yet, so following it here cannot be redirected.
    fchmodat(parent, name, perm, FchmodatFlags::FollowSymlink)
}

/// symlinkat.
pub fn symlink_at(target: &str, parent: BorrowedFd<'_>, name: &OsStr) -> Result<(), Errno> {
    match nix::unistd::symlinkat(target, parent, name) {
        Ok(()) | Err(Errno::EEXIST) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Brings `lo` up in the caller's network namespace (SIOCSIFFLAGS).
pub fn loopback_up() -> Result<(), Errno> {
    let sock = nix::sys::socket::socket(
        nix::sys::socket::AddressFamily::Inet,
        nix::sys::socket::SockType::Datagram,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    // SAFETY: ifreq is a plain C struct; all-zero is valid.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS reads the name and writes the flags of one ifreq,
    // a live local.
    Errno::result(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &raw mut req) })?;
    // SAFETY: reading the union member SIOCGIFFLAGS just filled in.
    let flags = unsafe { req.ifr_ifru.ifru_flags } | libc::IFF_UP as libc::c_short;
    req.ifr_ifru.ifru_flags = flags;
    // SAFETY: SIOCSIFFLAGS reads one ifreq, a live local.
    Errno::result(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &raw const req) })
        .map(drop)
}

/// The pid-namespace inode of `pid` (`/proc/<pid>/ns/pid` link text), to
/// find every process of a sandbox.
pub fn pid_ns_of(pid: i32) -> Option<String> {
    std::fs::read_link(format!("/proc/{pid}/ns/pid"))
        .ok()
        .map(|p| p.display().to_string())
}

/// Host pids of every process whose pid namespace is `ns`.
pub fn pids_in_ns(ns: &str) -> Vec<Pid> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()))
        .filter(|pid| pid_ns_of(*pid).as_deref() == Some(ns))
        .map(Pid::from_raw)
        .collect()
}

/// Writes `value` to a cgroup (or /proc) file.
pub fn write_file(path: &Path, value: &str) -> std::io::Result<()> {
    std::fs::write(path, value)
}

/// The per-mount flags `path`'s mount already has (read-only, nosuid, nodev,
/// noexec, atime), to carry over on a bind remount: inside a user namespace
/// the kernel refuses a remount that would clear a flag locked by the
/// mount's original owner.
pub fn mount_flags_of(path: &Path) -> MsFlags {
    use nix::sys::statvfs::FsFlags;
    let Ok(st) = nix::sys::statvfs::statvfs(path) else {
        return MsFlags::empty();
    };
    let f = st.flags();
    [
        (FsFlags::ST_RDONLY, MsFlags::MS_RDONLY),
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
    ]
    .into_iter()
    .filter(|(st, _)| f.contains(*st))
    .fold(MsFlags::empty(), |acc, (_, ms)| acc | ms)
}
