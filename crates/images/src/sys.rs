//! Every filesystem call the unpacker makes, relative to a directory
//! descriptor and never following a symlink: an entry can only create
//! names inside directories the unpacker itself opened below the layer
//! root. Holds this crate's only `unsafe` (setting the overlay opaque
//! xattr, which nix does not wrap).

use std::ffi::OsStr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, openat};
use nix::sys::stat::{FchmodatFlags, Mode, SFlag, fchmod, fchmodat, mkdirat, mknodat};
use nix::unistd::{Gid, Uid, fchown, fchownat, linkat, symlinkat};

/// Opens directory `name` in `dir` without following a symlink.
pub(crate) fn open_dir_at(dir: BorrowedFd<'_>, name: &OsStr) -> Result<OwnedFd, Errno> {
    openat(
        dir,
        name,
        OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

/// Opens a trusted directory path (the store's own).
pub(crate) fn open_dir(path: &std::path::Path) -> Result<OwnedFd, Errno> {
    nix::fcntl::open(
        path,
        OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

/// Makes directory `name` in `dir` (mode 0700 until the entry's own mode
/// is applied).
pub(crate) fn mkdir_at(dir: BorrowedFd<'_>, name: &OsStr) -> Result<(), Errno> {
    mkdirat(dir, name, Mode::from_bits_truncate(0o700))
}

/// Creates regular file `name` in `dir`; fails if anything is there
/// (O_EXCL: never writes through an existing name or symlink).
pub(crate) fn create_file_at(dir: BorrowedFd<'_>, name: &OsStr) -> Result<std::fs::File, Errno> {
    openat(
        dir,
        name,
        OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o600),
    )
    .map(std::fs::File::from)
}

/// Creates symlink `name` in `dir` pointing at `target` (never followed
/// here).
pub(crate) fn symlink_at(target: &str, dir: BorrowedFd<'_>, name: &OsStr) -> Result<(), Errno> {
    symlinkat(target, dir, name)
}

/// Hard-links `from_dir/from` (not following a final symlink) as
/// `dir/name`.
pub(crate) fn link_at(
    from_dir: BorrowedFd<'_>,
    from: &OsStr,
    dir: BorrowedFd<'_>,
    name: &OsStr,
) -> Result<(), Errno> {
    linkat(from_dir, from, dir, name, AtFlags::empty())
}

/// Creates FIFO `name` in `dir`.
pub(crate) fn mkfifo_at(dir: BorrowedFd<'_>, name: &OsStr) -> Result<(), Errno> {
    mknodat(
        dir,
        name,
        SFlag::S_IFIFO,
        Mode::from_bits_truncate(0o600),
        0,
    )
}

/// Creates an overlayfs whiteout (character device 0/0) `name` in `dir`.
#[cfg(target_os = "linux")]
pub(crate) fn whiteout_at(dir: BorrowedFd<'_>, name: &OsStr) -> Result<(), Errno> {
    mknodat(
        dir,
        name,
        SFlag::S_IFCHR,
        Mode::empty(),
        nix::sys::stat::makedev(0, 0),
    )
}

/// Marks directory `dir` opaque for overlayfs (`trusted.overlay.opaque=y`).
#[cfg(target_os = "linux")]
pub(crate) fn set_opaque(dir: BorrowedFd<'_>) -> Result<(), Errno> {
    use std::os::fd::AsRawFd;
    let name = c"trusted.overlay.opaque";
    let value = b"y";
    // SAFETY: `dir` is an open descriptor borrowed for the call; `name` is a
    // NUL-terminated C string literal and `value` a live buffer whose length
    // is passed with it; the kernel copies both and keeps no pointer.
    let rc = unsafe {
        libc::fsetxattr(
            dir.as_raw_fd(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if rc == 0 { Ok(()) } else { Err(Errno::last()) }
}

/// Gives `name` in `dir` (not following a symlink) the entry's owner.
pub(crate) fn chown_at(dir: BorrowedFd<'_>, name: &OsStr, uid: u32, gid: u32) -> Result<(), Errno> {
    fchownat(
        dir,
        name,
        Some(Uid::from_raw(uid)),
        Some(Gid::from_raw(gid)),
        AtFlags::AT_SYMLINK_NOFOLLOW,
    )
}

/// Owner then mode of an open file or directory: chown clears setuid, so
/// the mode (setuid included, as the image says) comes last.
pub(crate) fn chown_chmod(fd: BorrowedFd<'_>, uid: u32, gid: u32, mode: u32) -> Result<(), Errno> {
    fchown(fd, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)))?;
    fchmod(fd, Mode::from_bits_truncate(mode as _))
}

/// Mode of a FIFO this unpacker just made in its private directory (a
/// FIFO cannot be opened without blocking; nothing else writes there).
pub(crate) fn chmod_fifo_at(dir: BorrowedFd<'_>, name: &OsStr, mode: u32) -> Result<(), Errno> {
    fchmodat(
        dir,
        name,
        Mode::from_bits_truncate(mode as _),
        FchmodatFlags::FollowSymlink,
    )
}

/// Renames `from` in `from_dir` to `to` in `to_dir`.
pub(crate) fn rename_at(
    from_dir: BorrowedFd<'_>,
    from: &OsStr,
    to_dir: BorrowedFd<'_>,
    to: &OsStr,
) -> Result<(), Errno> {
    nix::fcntl::renameat(from_dir, from, to_dir, to)
}

/// Takes an advisory lock on `file` (shared or exclusive), blocking.
pub(crate) fn lock(file: &std::fs::File, exclusive: bool) -> Result<(), Errno> {
    let op = if exclusive {
        libc::LOCK_EX
    } else {
        libc::LOCK_SH
    };
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a descriptor the caller's File keeps open; no
    // memory is passed.
    let rc = unsafe { libc::flock(file.as_fd().as_raw_fd(), op) };
    if rc == 0 { Ok(()) } else { Err(Errno::last()) }
}
