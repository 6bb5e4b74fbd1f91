//! Mode NAMESPACE: opening a client-named network namespace file
//! (`spec.network.namespace_path`) safely. The path is the client's; the
//! directories it may lie below are the operator's (`--allow-netns-source`).
//! The daemon resolves it once, below the allowed directory's descriptor,
//! refusing every symlink and magic link (openat2 `RESOLVE_BENEATH |
//! RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS`, the resolution bind
//! sources use), checks that it is an nsfs file of type net that is not
//! the daemon's own (the host's) namespace, and hands the supervisor the
//! descriptor: nothing reopens the path, so it cannot be swapped between
//! the check and the join.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use sandboxd_core::verify::FileId;

/// The field every refusal names.
const FIELD: &str = "spec.network.namespace_path";

/// Why a namespace path was refused.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    /// Not below any allowed directory (or none configured).
    #[error(
        "{FIELD}: {path:?} is not below an allowed netns source ({roots}); start the daemon with --allow-netns-source DIR"
    )]
    NotAllowed {
        /// The client's path.
        path: String,
        /// The allowed directories, or why there are none.
        roots: String,
    },
    /// The allowed directory itself could not be opened.
    #[error("{FIELD}: the allowed netns source {dir}: {why}")]
    OpenSource {
        /// The operator's directory.
        dir: PathBuf,
        /// The error.
        why: String,
    },
    /// Resolution below the allowed directory failed (symlink, escape,
    /// missing).
    #[error("{FIELD}: {path:?}: {why}")]
    Resolve {
        /// The client's path.
        path: String,
        /// What went wrong.
        why: String,
    },
    /// Not a network namespace file.
    #[error("{FIELD}: {path:?} {why}")]
    NotNetns {
        /// The client's path.
        path: String,
        /// What it is instead.
        why: String,
    },
    /// The daemon's own (the host's) network namespace.
    #[error(
        "{FIELD}: {path:?} is the host's network namespace (the daemon's own); sharing the host's network is mode HOST, which needs --allow-host-network"
    )]
    HostNamespace {
        /// The client's path.
        path: String,
    },
    /// Not available on this OS.
    #[error("{FIELD}: network namespaces exist on Linux only")]
    Unsupported,
}

impl NetnsError {
    /// The gRPC class: policy refusals are PERMISSION_DENIED, a path that
    /// names no usable namespace is bad input.
    pub fn into_api(self) -> crate::error::ApiError {
        use crate::error::ApiError;
        match self {
            Self::NotAllowed { .. } | Self::HostNamespace { .. } => {
                ApiError::PermissionDenied(self.to_string())
            }
            Self::OpenSource { .. } | Self::Unsupported => {
                ApiError::FailedPrecondition(self.to_string())
            }
            Self::Resolve { .. } | Self::NotNetns { .. } => {
                ApiError::InvalidField(self.to_string())
            }
        }
    }
}

/// The allowed directory `path` lies below (the check `spec.rootfs` uses)
/// and the rest of the path below it.
fn below_source<'a>(
    path: &'a str,
    sources: &'a [PathBuf],
) -> Result<(&'a Path, &'a Path), NetnsError> {
    let p = Path::new(path);
    match sandboxd_core::validate::allowed_root(p, sources) {
        Some(root) => Ok((root.as_path(), p.strip_prefix(root).unwrap_or(p))),
        None => Err(NetnsError::NotAllowed {
            path: path.to_owned(),
            roots: if sources.is_empty() {
                "none are configured".to_owned()
            } else {
                sources
                    .iter()
                    .map(|r| r.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        }),
    }
}

/// Opens `path` (validated: absolute, no `.`/`..`) as a network namespace
/// below one of `sources`, refusing anything else; see the module doc.
#[cfg(target_os = "linux")]
pub fn open(path: &str, sources: &[PathBuf]) -> Result<OwnedFd, NetnsError> {
    use nix::errno::Errno;
    use nix::fcntl::OFlag;
    use nix::sys::stat::Mode;
    use sandboxd_supervisor::sys;
    use std::os::fd::{AsFd, AsRawFd};

    let (root, rel) = below_source(path, sources)?;
    // The operator's directory is trusted as configured (/var/run is a
    // symlink to /run on most hosts); only the client's part is not.
    let dir = sys::open_dir(root).map_err(|e| NetnsError::OpenSource {
        dir: root.to_owned(),
        why: e.to_string(),
    })?;
    let resolve = |why: String| NetnsError::Resolve {
        path: path.to_owned(),
        why,
    };
    let opath = sys::resolve_beneath(dir.as_fd(), rel).map_err(|e| match e {
        Errno::ELOOP | Errno::EXDEV => resolve(format!(
            "a component is a symlink or leads out of {}; it is resolved without following any",
            root.display()
        )),
        Errno::ENOENT => resolve("does not exist".into()),
        e => resolve(e.to_string()),
    })?;
    let not_netns = |why: String| NetnsError::NotNetns {
        path: path.to_owned(),
        why,
    };
    // An O_PATH descriptor neither opens a FIFO or device nor takes an
    // ioctl: the file system is checked first, then the same file reopened
    // for reading through this process's own descriptor.
    let fs = nix::sys::statfs::fstatfs(&opath).map_err(|e| resolve(format!("fstatfs: {e}")))?;
    if fs.filesystem_type() != nix::sys::statfs::NSFS_MAGIC {
        return Err(not_netns("is not a namespace file (not on nsfs)".into()));
    }
    let fd = nix::fcntl::open(
        format!("/proc/self/fd/{}", opath.as_raw_fd()).as_str(),
        OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| resolve(format!("reopening the resolved file: {e}")))?;
    if id_of_fd(&fd) != id_of_fd(&opath) {
        return Err(resolve("changed while it was opened".into()));
    }
    let kind = sys::namespace_type(fd.as_fd())
        .map_err(|e| not_netns(format!("is not a namespace (NS_GET_NSTYPE: {e})")))?;
    if kind != libc::CLONE_NEWNET {
        return Err(not_netns(format!(
            "is a {} namespace, not a network namespace",
            kind_name(kind)
        )));
    }
    let own = id_of_fd(&fd);
    // The daemon's namespace is the host's (its threads that enter a
    // RESTRICTED sandbox's namespace do so briefly and never the main
    // one, which /proc/self names); pid 1's too, where readable.
    let host = ["/proc/self/ns/net", "/proc/1/ns/net"]
        .into_iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .any(|m| {
            use std::os::unix::fs::MetadataExt;
            own == Some(FileId {
                dev: m.dev(),
                ino: m.ino(),
            })
        });
    if host {
        return Err(NetnsError::HostNamespace {
            path: path.to_owned(),
        });
    }
    Ok(fd)
}

/// On other systems there are no network namespaces.
#[cfg(not(target_os = "linux"))]
pub fn open(path: &str, sources: &[PathBuf]) -> Result<OwnedFd, NetnsError> {
    below_source(path, sources)?;
    Err(NetnsError::Unsupported)
}

/// The identity (device, inode) of the namespace `path` names, resolved
/// with [`open`]'s checks; for VerifySandbox.
pub fn identity(path: &str, sources: &[PathBuf]) -> Option<FileId> {
    open(path, sources).ok().and_then(|fd| id_of_fd(&fd))
}

fn id_of_fd(fd: &OwnedFd) -> Option<FileId> {
    // dev_t/ino_t widths differ per OS; both fit in u64.
    #[allow(clippy::useless_conversion, clippy::unnecessary_cast)]
    nix::sys::stat::fstat(fd).ok().map(|st| FileId {
        dev: st.st_dev as u64,
        ino: u64::from(st.st_ino),
    })
}

#[cfg(target_os = "linux")]
fn kind_name(kind: libc::c_int) -> &'static str {
    match kind {
        libc::CLONE_NEWNS => "mount",
        libc::CLONE_NEWUTS => "uts",
        libc::CLONE_NEWIPC => "ipc",
        libc::CLONE_NEWPID => "pid",
        libc::CLONE_NEWUSER => "user",
        libc::CLONE_NEWCGROUP => "cgroup",
        libc::CLONE_NEWTIME => "time",
        _ => "non-network",
    }
}
