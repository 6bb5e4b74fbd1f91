//! The probe's system calls that need `unsafe` or a single-threaded caller
//! (and the daemon's SysV fixture), one function per kernel operation. The
//! only module of the crate with `unsafe`; each block says why it is sound.
//! The checks make their attempts (open, stat, socket, chroot, mknod,
//! setrlimit, kill) through nix's safe wrappers where they stand: the
//! attempt is the observation.

use nix::errno::Errno;
use nix::unistd::Pid;

/// Result of [`fork`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forked {
    /// In the child.
    Child,
    /// In the parent, with the child's pid.
    Parent(Pid),
}

/// fork(2), for the probe's helper children.
///
/// # Safety
///
/// The calling process must be single-threaded, as the probe is (a forked
/// copy of the single-threaded supervisor; it never starts a thread). The
/// child is a copy of the calling thread only and runs arbitrary Rust; a
/// lock another thread held would stay held in it. Never call it from the
/// daemon, which links this crate for its SysV fixture.
pub unsafe fn fork() -> Result<Forked, Errno> {
    // SAFETY: the caller guarantees a single-threaded process (this fn's
    // contract), so the child inherits no lock held by another thread.
    match unsafe { nix::unistd::fork() }? {
        nix::unistd::ForkResult::Child => Ok(Forked::Child),
        nix::unistd::ForkResult::Parent { child } => Ok(Forked::Parent(child)),
    }
}

/// _exit(2): ends a forked child without running destructors or atexit
/// handlers that belong to the supervisor's copy of the process.
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit never returns and touches no Rust state.
    unsafe { libc::_exit(code) }
}

/// SIGKILL when the parent (the probe) dies, so no test child outlives a
/// probe the supervisor had to kill. Linux and FreeBSD; elsewhere a no-op.
pub fn die_with_parent() {
    #[cfg(target_os = "linux")]
    {
        let _ = nix::sys::prctl::set_pdeathsig(Some(nix::sys::signal::Signal::SIGKILL));
    }
    #[cfg(target_os = "freebsd")]
    {
        let mut signal: libc::c_int = libc::SIGKILL;
        // SAFETY: PROC_PDEATHSIG_CTL on ourselves reads one c_int through
        // the pointer, a live local.
        let _ = unsafe {
            libc::procctl(
                libc::P_PID,
                0,
                libc::PROC_PDEATHSIG_CTL,
                std::ptr::from_mut(&mut signal).cast(),
            )
        };
    }
}

/// Borrows descriptor number `raw` for a call that only inspects it
/// (fcntl F_GETFD, fstat), whether or not it is open.
pub fn borrow(raw: std::os::fd::RawFd) -> std::os::fd::BorrowedFd<'static> {
    // SAFETY: the probe is single-threaded and closes nothing while it
    // inspects a number; a closed number makes the inspecting call fail
    // with EBADF, which is what it asks.
    unsafe { std::os::fd::BorrowedFd::borrow_raw(raw) }
}

/// shmget(key, 0, 0): looks up an existing System V segment.
pub fn shm_lookup(key: i32) -> Result<i32, Errno> {
    // SAFETY: shmget takes integers only and creates nothing without
    // IPC_CREAT.
    Errno::result(unsafe { libc::shmget(key as libc::key_t, 0, 0) })
}

/// Daemon side: creates a new 4 KiB System V segment with `key`, readable by
/// anyone (so a failed lookup from a sandbox means "not visible", never
/// "not permitted"). Returns its id.
pub fn shm_create(key: i32) -> Result<i32, Errno> {
    // SAFETY: shmget takes integers only; the segment is removed by
    // shm_remove.
    Errno::result(unsafe {
        libc::shmget(
            key as libc::key_t,
            4096,
            libc::IPC_CREAT | libc::IPC_EXCL | 0o644,
        )
    })
}

/// Daemon side: removes the segment `id` (shmctl IPC_RMID).
pub fn shm_remove(id: i32) -> Result<(), Errno> {
    // SAFETY: IPC_RMID ignores the buffer argument, which is null.
    Errno::result(unsafe { libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut()) }).map(drop)
}

/// The calling thread's effective and permitted capability sets (capget),
/// as bit masks.
#[cfg(target_os = "linux")]
pub fn capget() -> Result<(u64, u64), Errno> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Default, Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    // _LINUX_CAPABILITY_VERSION_3: two data structs (64 bits).
    let mut header = Header {
        version: 0x2008_0522,
        pid: 0,
    };
    let mut data = [Data::default(); 2];
    // SAFETY: capget writes two Data structs (version 3) into the array and
    // may update the header, both live locals of the right layout.
    Errno::result(unsafe {
        libc::syscall(
            libc::SYS_capget,
            std::ptr::from_mut(&mut header),
            data.as_mut_ptr(),
        )
    })?;
    let join = |lo: u32, hi: u32| u64::from(lo) | (u64::from(hi) << 32);
    Ok((
        join(data[0].effective, data[1].effective),
        join(data[0].permitted, data[1].permitted),
    ))
}

/// Does to the capability sets what execve(2) of a file without file
/// capabilities does to the payload: permitted and effective become what
/// the bounding set leaves of them (for uid 0; any other uid has none
/// after setuid already), inheritable is cleared. The probe never execs,
/// so without this it would keep the supervisor's full sets.
#[cfg(target_os = "linux")]
pub fn caps_as_after_exec() -> Result<(), Errno> {
    let mut bounding = 0u64;
    for cap in 0..64 {
        match capbset_read(cap) {
            Ok(true) => bounding |= 1 << cap,
            Ok(false) => {}
            Err(_) => break,
        }
    }
    let (_, permitted) = capget()?;
    let keep = if nix::unistd::geteuid().is_root() {
        permitted & bounding
    } else {
        0
    };
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    let mut header = Header {
        version: 0x2008_0522,
        pid: 0,
    };
    let lo = keep as u32;
    let hi = (keep >> 32) as u32;
    let data = [
        Data {
            effective: lo,
            permitted: lo,
            inheritable: 0,
        },
        Data {
            effective: hi,
            permitted: hi,
            inheritable: 0,
        },
    ];
    // SAFETY: capset reads the header and two Data structs (version 3),
    // live locals of the right layout; it can only lower our own sets here.
    Errno::result(unsafe {
        libc::syscall(
            libc::SYS_capset,
            std::ptr::from_mut(&mut header),
            data.as_ptr(),
        )
    })
    .map(drop)
}

/// Whether capability `cap` is in the bounding set (PR_CAPBSET_READ);
/// EINVAL past the last capability the kernel knows.
#[cfg(target_os = "linux")]
pub fn capbset_read(cap: u32) -> Result<bool, Errno> {
    // SAFETY: PR_CAPBSET_READ takes an integer capability number.
    let rc = unsafe { libc::prctl(libc::PR_CAPBSET_READ, libc::c_ulong::from(cap), 0, 0, 0) };
    Errno::result(rc).map(|v| v == 1)
}

/// fsopen(fstype, 0): asks for a new filesystem context, the first step of
/// a mount, which the kernel refuses up front without CAP_SYS_ADMIN. Nothing
/// is mounted; a returned descriptor is closed at once.
#[cfg(target_os = "linux")]
pub fn fsopen(fstype: &std::ffi::CStr) -> Result<(), Errno> {
    // SAFETY: fsopen reads the NUL-terminated name and returns a new
    // descriptor, which is closed right away.
    let fd = Errno::result(unsafe { libc::syscall(libc::SYS_fsopen, fstype.as_ptr(), 0) })?;
    // SAFETY: the descriptor was just returned to us and nothing else owns it.
    unsafe { libc::close(fd as libc::c_int) };
    Ok(())
}

/// Whether no_new_privs is set (PROC_NO_NEW_PRIVS_STATUS).
#[cfg(target_os = "freebsd")]
pub fn no_new_privs() -> Result<bool, Errno> {
    let mut status: libc::c_int = 0;
    // SAFETY: PROC_NO_NEW_PRIVS_STATUS writes one c_int through the
    // pointer, a live local.
    Errno::result(unsafe {
        libc::procctl(
            libc::P_PID,
            0,
            libc::PROC_NO_NEW_PRIVS_STATUS,
            std::ptr::from_mut(&mut status).cast(),
        )
    })?;
    Ok(status == libc::PROC_NO_NEW_PRIVS_ENABLE)
}
