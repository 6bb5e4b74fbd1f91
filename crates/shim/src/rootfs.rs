//! containerd's rootfs mounts (the snapshot of the container's image) on the
//! bundle's `rootfs` directory, per OS.
//!
//! On Linux the containerd-shim crate mounts them (overlay, bind). On
//! FreeBSD, as containerd itself does there, the shim runs mount(8): a
//! `bind` or `nullfs` snapshot (containerd's native snapshotter) becomes a
//! nullfs mount, a `zfs` one a zfs mount; any other type is refused naming
//! it. The FreeBSD command line is pure code ([`freebsd_mount_argv`]),
//! unit-tested on every OS.

use std::ffi::OsString;
use std::path::Path;

/// Why a rootfs mount failed.
#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    /// The mount's type is not one the shim can mount on this OS.
    #[error("rootfs mount type {kind:?} ({from}): this shim mounts {supported} snapshots here")]
    UnsupportedType {
        kind: String,
        from: String,
        supported: &'static str,
    },
    /// A source that mount(8) would read as an option, or that is empty.
    #[error("rootfs mount source {0:?}: not a path or dataset name")]
    BadSource(String),
    /// An option with a `,` (it would split into two).
    #[error("rootfs mount option {0:?}: contains a comma")]
    BadOption(String),
    /// Running mount(8) failed, or it reported an error.
    #[error("mount(8) of {from} on {target}: {detail}")]
    MountCommand {
        from: String,
        target: String,
        detail: String,
    },
    /// The containerd-shim crate's mount failed.
    #[error("mounting the rootfs ({kind} {from}): {detail}")]
    Mount {
        kind: String,
        from: String,
        detail: String,
    },
}

/// One of containerd's rootfs mounts, as the task's Create gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootfsMount {
    pub kind: String,
    pub source: String,
    pub options: Vec<String>,
}

/// FreeBSD's mount(8) program.
pub const FREEBSD_MOUNT: &str = "/sbin/mount";

/// The mount(8) arguments (after the program) that put `m` on `target` on
/// FreeBSD. `bind` (what containerd's native snapshotter names a directory
/// snapshot on Linux) and `nullfs` become nullfs: `bind`/`rbind` options
/// are dropped (a nullfs mount is the whole directory); `zfs` is a dataset.
/// `--` ends the options, so no source can be read as one.
pub fn freebsd_mount_argv(m: &RootfsMount, target: &Path) -> Result<Vec<OsString>, RootfsError> {
    let (fstype, source_is_path) = match m.kind.as_str() {
        "bind" | "nullfs" => ("nullfs", true),
        "zfs" => ("zfs", false),
        _ => {
            return Err(RootfsError::UnsupportedType {
                kind: m.kind.clone(),
                from: m.source.clone(),
                supported: "nullfs, bind and zfs",
            });
        }
    };
    let bad_source = m.source.is_empty()
        || m.source.starts_with('-')
        || (source_is_path && !m.source.starts_with('/'));
    if bad_source {
        return Err(RootfsError::BadSource(m.source.clone()));
    }
    let mut options = Vec::new();
    for o in &m.options {
        if o.contains(',') {
            return Err(RootfsError::BadOption(o.clone()));
        }
        if fstype == "nullfs" && (o == "bind" || o == "rbind") {
            continue;
        }
        options.push(o.as_str());
    }
    let mut argv: Vec<OsString> = vec!["-t".into(), fstype.into()];
    if !options.is_empty() {
        argv.push("-o".into());
        argv.push(options.join(",").into());
    }
    argv.push("--".into());
    argv.push(m.source.clone().into());
    argv.push(target.as_os_str().to_owned());
    Ok(argv)
}

/// Mounts `m` on `target`.
pub async fn mount(m: &RootfsMount, target: &Path) -> Result<(), RootfsError> {
    #[cfg(target_os = "linux")]
    {
        let mut pm = containerd_shim_protos::api::Mount::new();
        pm.type_ = m.kind.clone();
        pm.source = m.source.clone();
        pm.options = m.options.clone();
        containerd_shim::asynchronous::util::mount_rootfs(&pm, target)
            .await
            .map_err(|e| RootfsError::Mount {
                kind: m.kind.clone(),
                from: m.source.clone(),
                detail: e.to_string(),
            })
    }
    #[cfg(not(target_os = "linux"))]
    {
        let argv = freebsd_mount_argv(m, target)?;
        let failed = |detail: String| RootfsError::MountCommand {
            from: m.source.clone(),
            target: target.display().to_string(),
            detail,
        };
        let out = tokio::process::Command::new(FREEBSD_MOUNT)
            .args(&argv)
            .output()
            .await
            .map_err(|e| failed(format!("running {FREEBSD_MOUNT}: {e}")))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(failed(format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )))
        }
    }
}

/// Unmounts what [`mount`] put on `target`; a target with nothing mounted
/// is not an error.
pub fn unmount(target: &Path) -> Result<(), nix::errno::Errno> {
    use nix::errno::Errno;
    #[cfg(target_os = "linux")]
    let r = nix::mount::umount2(target, nix::mount::MntFlags::MNT_DETACH);
    #[cfg(not(target_os = "linux"))]
    let r = nix::mount::unmount(target, nix::mount::MntFlags::empty());
    match r {
        // Nothing mounted there (Linux: EINVAL; FreeBSD: EINVAL for a
        // directory that is not a mount point), or no such directory.
        Err(Errno::EINVAL | Errno::ENOENT) | Ok(()) => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(kind: &str, source: &str, options: &[&str]) -> RootfsMount {
        RootfsMount {
            kind: kind.into(),
            source: source.into(),
            options: options.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn freebsd_mount_lines() {
        let t = Path::new("/run/bundle/rootfs");
        let ok: &[(RootfsMount, &[&str])] = &[
            (
                m("bind", "/var/db/containerd/snap/7/fs", &["rbind", "ro"]),
                &[
                    "-t",
                    "nullfs",
                    "-o",
                    "ro",
                    "--",
                    "/var/db/containerd/snap/7/fs",
                    "/run/bundle/rootfs",
                ],
            ),
            (
                m("nullfs", "/snap/8", &[]),
                &["-t", "nullfs", "--", "/snap/8", "/run/bundle/rootfs"],
            ),
            (
                m("zfs", "zroot/containerd/9", &["rw"]),
                &[
                    "-t",
                    "zfs",
                    "-o",
                    "rw",
                    "--",
                    "zroot/containerd/9",
                    "/run/bundle/rootfs",
                ],
            ),
        ];
        for (mount, want) in ok {
            let got = freebsd_mount_argv(mount, t).unwrap();
            let want: Vec<OsString> = want.iter().map(OsString::from).collect();
            assert_eq!(got, want, "{mount:?}");
        }
        let refused: &[(RootfsMount, &str)] = &[
            (
                m("overlay", "overlay", &["lowerdir=/a"]),
                "type \"overlay\"",
            ),
            (m("unionfs", "/a", &[]), "type \"unionfs\""),
            (
                m("nullfs", "snap/relative", &[]),
                "source \"snap/relative\"",
            ),
            (m("nullfs", "", &[]), "source \"\""),
            (m("zfs", "-oexec", &[]), "source \"-oexec\""),
            (m("nullfs", "/snap", &["ro,exec"]), "option \"ro,exec\""),
        ];
        for (mount, want) in refused {
            let e = freebsd_mount_argv(mount, t).unwrap_err().to_string();
            assert!(e.contains(want), "{mount:?}: {e}");
        }
    }

    #[test]
    fn unmounting_an_unmounted_directory_is_not_an_error() {
        let d = std::env::temp_dir().join(format!("sandboxd-shim-unmount-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        assert_eq!(unmount(&d), Ok(()));
        std::fs::remove_dir(&d).unwrap();
        assert_eq!(unmount(&d), Ok(()));
    }
}
