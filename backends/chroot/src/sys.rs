//! The chroot backend's kernel operations, one function per call. Only the
//! supervisor helper (single-threaded) and its forked children call the
//! mutating ones. This module needs no `unsafe`: nix wraps every call used.

use std::os::fd::BorrowedFd;

use nix::errno::Errno;

/// Makes the open directory `root` the process root: fchdir to it,
/// chroot("."), then chdir("/") so no directory handle is left outside. Using
/// the descriptor means no path (and no symlink swapped in later) decides
/// where the root is.
pub fn chroot_into(root: BorrowedFd<'_>) -> Result<(), Errno> {
    nix::unistd::fchdir(root)?;
    nix::unistd::chroot(".")?;
    nix::unistd::chdir("/")
}

#[cfg(target_os = "linux")]
pub use sandboxd_supervisor::sys::fd_path;
pub use sandboxd_supervisor::sys::{is_dir, open_dir, open_image, open_image_dir};

#[cfg(target_os = "linux")]
pub use linux::*;

#[cfg(target_os = "linux")]
mod linux {
    use super::*;
    use nix::mount::{MntFlags, MsFlags, mount, umount2};
    use nix::sys::stat::Mode;
    use std::ffi::OsStr;
    use std::path::{Path, PathBuf};

    /// Mounts a tmpfs.
    pub fn mount_tmpfs(target: &Path, flags: MsFlags, data: &str) -> Result<(), Errno> {
        mount(Some("tmpfs"), target, Some("tmpfs"), flags, Some(data))
    }

    /// Bind-mounts `source` on `target` (recursively). A bind ignores most
    /// flags on creation: callers remount (by a path that names the new
    /// mount) to add nosuid or read-only.
    pub fn bind(source: &Path, target: &Path) -> Result<(), Errno> {
        mount(
            Some(source),
            target,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
    }

    /// Remounts a bind mount with `flags` (MS_RDONLY, MS_NOSUID, ...).
    pub fn remount_bind(target: &Path, flags: MsFlags) -> Result<(), Errno> {
        mount(
            None::<&str>,
            target,
            None::<&str>,
            MsFlags::MS_REMOUNT | MsFlags::MS_BIND | flags,
            None::<&str>,
        )
    }

    /// Remounts a (non-bind) filesystem with exactly `flags` (the ones it
    /// should keep, nosuid and nodev, included).
    pub fn remount(target: &Path, flags: MsFlags) -> Result<(), Errno> {
        mount(
            None::<&str>,
            target,
            None::<&str>,
            MsFlags::MS_REMOUNT | flags,
            None::<&str>,
        )
    }

    /// Mounts an overlay of `lower` (read-only, top first) with
    /// `upper`/`work`, nosuid and nodev.
    pub fn mount_overlay(
        target: &Path,
        lower: &[PathBuf],
        upper: &Path,
        work: &Path,
    ) -> Result<(), Errno> {
        let lower: Vec<String> = lower.iter().map(|p| p.display().to_string()).collect();
        let data = format!(
            "lowerdir={},upperdir={},workdir={}",
            lower.join(":"),
            upper.display(),
            work.display()
        );
        mount(
            Some("overlay"),
            target,
            Some("overlay"),
            // nodev: a device node in an image (or its layers) must not
            // reach the host's device; the sandbox's /dev is its own tmpfs.
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some(data.as_str()),
        )
    }

    /// Lazily detaches `target` and everything mounted below it.
    pub fn umount_detach(target: &Path) -> Result<(), Errno> {
        umount2(target, MntFlags::MNT_DETACH)
    }

    pub use sandboxd_supervisor::sys::{resolve_beneath, resolve_in_root};

    /// Creates directory `name` inside `parent` (an O_PATH/dir descriptor
    /// obtained by resolution in the root). EEXIST is fine.
    pub fn mkdir_at(parent: BorrowedFd<'_>, name: &OsStr, mode: u32) -> Result<(), Errno> {
        match nix::sys::stat::mkdirat(parent, name, Mode::from_bits_truncate(mode)) {
            Err(Errno::EEXIST) | Ok(()) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Mount points at or below `dir`, from /proc/self/mountinfo. Teardown
    /// must find none before it deletes anything under `dir`, or it would
    /// delete through a bind mount into host data.
    pub fn mounts_under(dir: &Path) -> Result<Vec<PathBuf>, std::io::Error> {
        let info = std::fs::read_to_string("/proc/self/mountinfo")?;
        Ok(sandboxd_core::mountinfo::mounts_under(&info, dir))
    }
}
