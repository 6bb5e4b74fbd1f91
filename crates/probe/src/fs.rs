//! The filesystem rows: FILESYSTEM (a host canary, `..` walks from the cwd
//! and from every open descriptor, descriptors beyond stdio),
//! READONLY_ROOTFS and MOUNTS.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl, open, openat};
use nix::sys::stat::{Mode, fstat, stat};
use nix::sys::statvfs::{FsFlags, statvfs};
use sandboxd_core::Property;
use sandboxd_core::verify::{FileId, Finding, Observed, ProbeConfig};

/// How many `..` steps a walk takes at most.
const MAX_WALK: usize = 256;
/// The highest descriptor number examined.
const MAX_FD: RawFd = 1 << 16;

fn id_of(st: &nix::sys::stat::FileStat) -> FileId {
    // dev_t/ino_t widths differ per OS; both fit in u64.
    #[allow(clippy::useless_conversion, clippy::unnecessary_cast)]
    FileId {
        dev: st.st_dev as u64,
        ino: u64::from(st.st_ino),
    }
}

fn show(id: FileId) -> String {
    format!("(dev {}, ino {})", id.dev, id.ino)
}

/// Walks `..` from `start` until it stops moving; returns the last
/// directory and how many steps it took.
fn walk_up(start: BorrowedFd<'_>) -> Result<(FileId, usize), Errno> {
    let mut current: Option<OwnedFd> = None;
    let mut last = id_of(&fstat(start)?);
    for step in 0..MAX_WALK {
        let from = current.as_ref().map_or(start, AsFd::as_fd);
        let up = openat(
            from,
            "..",
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        let id = id_of(&fstat(up.as_fd())?);
        if id == last {
            return Ok((id, step));
        }
        last = id;
        current = Some(up);
    }
    Ok((last, MAX_WALK))
}

/// FILESYSTEM.
pub(crate) fn filesystem(config: &ProbeConfig, own_fds: &[RawFd]) -> Finding {
    let p = Property::Filesystem;
    let mut evidence = Vec::new();
    let mut violated = false;
    let mut unclear = false;
    let root = match stat("/") {
        Ok(st) => id_of(&st),
        Err(e) => {
            return Finding::new(p, Observed::NotTestable, vec![format!("stat(\"/\"): {e}")]);
        }
    };
    evidence.push(format!(
        "the sandbox's / is {}; the host's / is {}",
        show(root),
        config.host_root.map_or("unknown".into(), show)
    ));
    if config.host_root == Some(root) {
        violated = true;
        evidence.push("the sandbox's / is the host's /".into());
    }
    match &config.canary {
        None => {
            unclear = true;
            evidence.push("the daemon made no host canary to look for".into());
        }
        Some((path, id)) => match stat(path.as_str()) {
            Err(Errno::ENOENT) => {
                evidence.push(format!(
                    "stat({path:?}), a host canary: ENOENT, not reachable"
                ));
            }
            Ok(st) if id_of(&st) == *id => {
                violated = true;
                evidence.push(format!(
                    "stat({path:?}), a host canary: found, the same inode as on the host"
                ));
            }
            Ok(st) => evidence.push(format!(
                "stat({path:?}): a different file {} than the host canary {}",
                show(id_of(&st)),
                show(*id)
            )),
            Err(e) => {
                unclear = true;
                evidence.push(format!("stat({path:?}), a host canary: {e}"));
            }
        },
    }
    match open(
        ".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    ) {
        Ok(cwd) => {
            violated |= walk_check(
                "the working directory",
                cwd.as_fd(),
                root,
                config,
                &mut evidence,
            );
        }
        Err(e) => {
            unclear = true;
            evidence.push(format!("open(\".\"): {e}"));
        }
    }
    let max = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map(|(soft, _)| RawFd::try_from(soft).unwrap_or(MAX_FD).min(MAX_FD))
        .unwrap_or(MAX_FD);
    let mut open_fds = Vec::new();
    for raw in 0..max {
        if own_fds.contains(&raw) {
            continue;
        }
        let fd = crate::sys::borrow(raw);
        if fcntl(fd, FcntlArg::F_GETFD).is_err() {
            continue;
        }
        let kind = fstat(fd)
            .map(|st| file_kind(st.st_mode))
            .unwrap_or("unknown");
        open_fds.push(format!("{raw} ({kind})"));
        if raw > 2 {
            violated = true;
            evidence.push(format!(
                "descriptor {raw} ({kind}) is open: only 0-2 should reach a payload"
            ));
        }
        if kind == "directory" {
            violated |= walk_check(
                &format!("descriptor {raw}"),
                fd,
                root,
                config,
                &mut evidence,
            );
        }
    }
    evidence.push(format!(
        "open descriptors besides the probe's own report pipe: {}",
        if open_fds.is_empty() {
            "none".to_owned()
        } else {
            open_fds.join(", ")
        }
    ));
    let observed = if violated {
        Observed::Violated
    } else if unclear {
        Observed::NotTestable
    } else {
        Observed::Holds
    };
    Finding::new(p, observed, evidence)
}

/// Walks `..` from `fd` and says where it stops; true if that is not the
/// sandbox's root.
fn walk_check(
    what: &str,
    fd: BorrowedFd<'_>,
    root: FileId,
    config: &ProbeConfig,
    evidence: &mut Vec<String>,
) -> bool {
    match walk_up(fd) {
        Ok((end, steps)) if end == root => {
            evidence.push(format!(
                "`..` walk from {what}: {steps} steps, stops at the sandbox's /"
            ));
            false
        }
        Ok((end, steps)) => {
            evidence.push(format!(
                "`..` walk from {what}: {steps} steps, stops at {} which is not the sandbox's /{}",
                show(end),
                if config.host_root == Some(end) {
                    " but the host's /"
                } else {
                    ""
                }
            ));
            true
        }
        Err(e) => {
            evidence.push(format!("`..` walk from {what}: {e}"));
            false
        }
    }
}

fn file_kind(mode: nix::sys::stat::mode_t) -> &'static str {
    match mode & libc::S_IFMT {
        libc::S_IFDIR => "directory",
        libc::S_IFREG => "regular file",
        libc::S_IFCHR => "character device",
        libc::S_IFIFO => "pipe",
        libc::S_IFSOCK => "socket",
        libc::S_IFLNK => "symlink",
        libc::S_IFBLK => "block device",
        _ => "other",
    }
}

/// What a filesystem may add to a size limit and still hold it: tmpfs
/// rounds `size=` up to whole pages, and statvfs counts blocks.
const DISK_SLACK: u64 = 1 << 20;

/// DISK_LIMIT: the filesystem that takes writes to `/` (the overlay's upper
/// layer, or the root tmpfs) is no larger than the limit (statvfs: blocks ×
/// fragment size); a read-only root has no writable layer at all.
pub(crate) fn disk(config: &ProbeConfig) -> Finding {
    let p = Property::DiskLimit;
    let Some(limit) = config.limits.disk_bytes else {
        return Finding::new(
            p,
            Observed::NotApplicable,
            vec!["the spec sets no disk limit and the daemon has no default".into()],
        );
    };
    let s = match statvfs("/") {
        Ok(s) => s,
        Err(e) => {
            return Finding::new(
                p,
                Observed::NotTestable,
                vec![format!("statvfs(\"/\"): {e}")],
            );
        }
    };
    if s.flags().contains(FsFlags::ST_RDONLY) {
        return Finding::new(
            p,
            Observed::Holds,
            vec!["statvfs(\"/\"): ST_RDONLY set: the root takes no writes".into()],
        );
    }
    #[allow(clippy::useless_conversion)] // the field types differ by OS
    let total = u64::from(s.blocks()).saturating_mul(u64::from(s.fragment_size()));
    let holds = total <= limit.saturating_add(DISK_SLACK);
    Finding::new(
        p,
        if holds {
            Observed::Holds
        } else {
            Observed::Violated
        },
        vec![format!(
            "statvfs(\"/\"): {total} bytes writable in total, limit {limit}{}",
            if holds { "" } else { ": larger than the limit" }
        )],
    )
}

/// READONLY_ROOTFS: `/` is mounted read-only (statvfs ST_RDONLY), and a
/// uid-0 probe cannot create a file there.
pub(crate) fn readonly_rootfs(config: &ProbeConfig) -> Finding {
    let p = Property::ReadonlyRootfs;
    if !config.readonly_rootfs {
        return Finding::new(
            p,
            Observed::NotApplicable,
            vec!["the spec does not ask for a read-only root".into()],
        );
    }
    let mut evidence = Vec::new();
    let ro = match statvfs("/") {
        Ok(s) => {
            let ro = s.flags().contains(FsFlags::ST_RDONLY);
            evidence.push(format!(
                "statvfs(\"/\"): ST_RDONLY {}",
                if ro { "set" } else { "not set" }
            ));
            ro
        }
        Err(e) => {
            return Finding::new(
                p,
                Observed::NotTestable,
                vec![format!("statvfs(\"/\"): {e}")],
            );
        }
    };
    let mut wrote = false;
    if nix::unistd::geteuid().is_root() {
        let path = format!("/.sandboxd-probe-{}", nix::unistd::getpid());
        match open(
            path.as_str(),
            OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o600),
        ) {
            Ok(_) => {
                wrote = true;
                let _ = nix::unistd::unlink(path.as_str());
                evidence.push(format!(
                    "open({path:?}, O_CREAT) as uid 0: created (removed again)"
                ));
            }
            Err(e) => evidence.push(format!("open({path:?}, O_CREAT) as uid 0: {e}")),
        }
    }
    let observed = if ro && !wrote {
        Observed::Holds
    } else {
        Observed::Violated
    };
    Finding::new(p, observed, evidence)
}

/// MOUNTS: every client mount is there (the host source's inode at the
/// target) with the asked read-only flag.
pub(crate) fn mounts(config: &ProbeConfig) -> Finding {
    let p = Property::Mounts;
    if config.mounts.is_empty() {
        return Finding::new(
            p,
            Observed::NotApplicable,
            vec!["the spec asks for no mounts".into()],
        );
    }
    let mut evidence = Vec::new();
    let mut violated = false;
    let mut unclear = false;
    for m in &config.mounts {
        let target = m.target.as_str();
        let here = match stat(target) {
            Ok(st) => id_of(&st),
            Err(e) => {
                violated = true;
                evidence.push(format!("stat({target:?}): {e}: the mount is missing"));
                continue;
            }
        };
        match m.source {
            // A bind shows the source's inode; FreeBSD's nullfs reports its
            // own device, so only the inode is compared there.
            Some(src)
                if src.ino == here.ino && (src.dev == here.dev || !cfg!(target_os = "linux")) =>
            {
                evidence.push(format!("{target}: the host source's inode {}", show(here)));
            }
            Some(src) => {
                violated = true;
                evidence.push(format!(
                    "{target}: {} is not the host source {}",
                    show(here),
                    show(src)
                ));
            }
            None => {
                unclear = true;
                evidence.push(format!("{target}: the daemon could not stat the source"));
            }
        }
        match statvfs(target) {
            Ok(s) => {
                let ro = s.flags().contains(FsFlags::ST_RDONLY);
                if ro != m.read_only {
                    violated = true;
                }
                evidence.push(format!(
                    "statvfs({target:?}): {} (asked {})",
                    if ro { "read-only" } else { "read-write" },
                    if m.read_only {
                        "read-only"
                    } else {
                        "read-write"
                    }
                ));
            }
            Err(e) => {
                unclear = true;
                evidence.push(format!("statvfs({target:?}): {e}"));
            }
        }
    }
    let observed = if violated {
        Observed::Violated
    } else if unclear {
        Observed::NotTestable
    } else {
        Observed::Holds
    };
    Finding::new(p, observed, evidence)
}
