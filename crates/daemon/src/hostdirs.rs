//! The daemon's own host directories: who may write them (checked at
//! start), and keeping them out of sandboxes (no client mount source may
//! overlap them).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::bail;
use sandboxd_core::spec::SandboxSpec;

use crate::error::ApiError;

/// Refuses a directory that anyone but root (or the daemon's own user) can
/// change: it must be owned by root or the daemon's euid and not writable by
/// group or others, and every directory above it owned by them and, where
/// others (or a group other than gid 0) may write it, sticky, so nobody can
/// rename it away and plant another. `key` names it in the message
/// (`state_dir`, `socket directory`).
pub fn check_private_dir(key: &str, dir: &Path) -> anyhow::Result<()> {
    let euid = nix::unistd::geteuid().as_raw();
    let canonical =
        std::fs::canonicalize(dir).map_err(|e| anyhow::anyhow!("{key} {}: {e}", dir.display()))?;
    for (depth, path) in canonical.ancestors().enumerate() {
        let meta = std::fs::symlink_metadata(path)
            .map_err(|e| anyhow::anyhow!("{key} {}: {}: {e}", dir.display(), path.display()))?;
        let what = if depth == 0 {
            String::new()
        } else {
            format!(": its parent {}", path.display())
        };
        if meta.uid() != 0 && meta.uid() != euid {
            bail!(
                "{key} {}{what} is owned by uid {}, not root; refusing to keep state where another user can change it",
                dir.display(),
                meta.uid()
            );
        }
        let mode = meta.mode() & 0o7777;
        let sticky = mode & 0o1000 != 0;
        if depth == 0 {
            if mode & 0o022 != 0 {
                bail!(
                    "{key} {}: mode {mode:o} lets group or others write it; chmod go-w it",
                    dir.display()
                );
            }
        } else if (mode & 0o002 != 0 || (mode & 0o020 != 0 && meta.gid() != 0)) && !sticky {
            bail!(
                "{key} {}{what} (mode {mode:o}) is writable by other users and not sticky: they could replace the directory",
                dir.display()
            );
        }
    }
    Ok(())
}

/// One directory (or file) of the daemon's that no sandbox may see.
#[derive(Debug, Clone)]
struct Entry {
    /// What it is, for messages ("state directory").
    what: &'static str,
    /// Its canonical path.
    path: PathBuf,
    /// Its (device, inode).
    id: (u64, u64),
    /// The (device, inode) of it and each directory above it.
    chain: Vec<(u64, u64)>,
}

/// The daemon's own paths, resolved at start, and the check that keeps
/// client mount sources off them.
#[derive(Debug, Clone, Default)]
pub struct Protected {
    entries: Vec<Entry>,
}

fn file_id(path: &Path) -> std::io::Result<(u64, u64)> {
    std::fs::metadata(path).map(|m| (m.dev(), m.ino()))
}

impl Protected {
    /// Resolves each path (which must exist): its canonical form, and the
    /// identities of it and its parents, which catch another path to the
    /// same directory (a bind mount) as well as the canonical one.
    pub fn new(paths: &[(&'static str, &Path)]) -> anyhow::Result<Self> {
        let mut entries = Vec::new();
        for (what, path) in paths {
            let canonical = std::fs::canonicalize(path)
                .map_err(|e| anyhow::anyhow!("resolving the {what} {}: {e}", path.display()))?;
            let chain = canonical
                .ancestors()
                .map(file_id)
                .collect::<std::io::Result<Vec<_>>>()
                .map_err(|e| anyhow::anyhow!("the {what} {}: {e}", canonical.display()))?;
            entries.push(Entry {
                what,
                id: chain[0],
                path: canonical,
                chain,
            });
        }
        Ok(Self { entries })
    }

    /// INVALID_ARGUMENT naming the mount if a client mount source lies in
    /// one of the daemon's paths or holds one: a sandbox must not see or
    /// change the daemon's state, images, sockets or key. Checked after
    /// resolution: the source's canonical path, and the identity of it and
    /// each directory above it.
    pub fn check_mounts(&self, spec: &SandboxSpec) -> Result<(), ApiError> {
        for (i, m) in spec.mounts.iter().enumerate() {
            if let Some(why) = self.overlap(Path::new(&m.source)) {
                return Err(ApiError::InvalidField(format!(
                    "spec.mounts[{i}].source: {:?} {why}; the daemon's own directories cannot be mounted into a sandbox",
                    m.source
                )));
            }
        }
        // A client-given root is a view of a host directory as much as a
        // bind mount is.
        if !spec.rootfs.is_empty() {
            if let Some(why) = self.overlap(Path::new(&spec.rootfs)) {
                return Err(ApiError::InvalidField(format!(
                    "spec.rootfs: {:?} {why}; the daemon's own directories cannot be a sandbox's root",
                    spec.rootfs
                )));
            }
        }
        Ok(())
    }

    /// How `source` overlaps a protected path, if it does.
    fn overlap(&self, source: &Path) -> Option<String> {
        // A source that does not exist (yet) is compared as written; the
        // backend refuses it at setup if it is still missing.
        let resolved = std::fs::canonicalize(source).unwrap_or_else(|_| source.to_owned());
        let chain: Vec<(u64, u64)> = resolved
            .ancestors()
            .filter_map(|p| file_id(p).ok())
            .collect();
        let own_id = file_id(&resolved).ok();
        for e in &self.entries {
            let inside = resolved.starts_with(&e.path) || chain.contains(&e.id);
            let holds =
                e.path.starts_with(&resolved) || own_id.is_some_and(|id| e.chain.contains(&id));
            if inside && holds {
                return Some(format!("is the daemon's {} {}", e.what, e.path.display()));
            }
            if inside {
                return Some(format!(
                    "lies in the daemon's {} {}",
                    e.what,
                    e.path.display()
                ));
            }
            if holds {
                return Some(format!(
                    "holds the daemon's {} {}",
                    e.what,
                    e.path.display()
                ));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::os::unix::fs::PermissionsExt;

    use super::*;

    struct Tmp(PathBuf);
    impl Drop for Tmp {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn tmp(name: &str) -> Tmp {
        let d =
            std::env::temp_dir().join(format!("sandboxd-hostdirs-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
        Tmp(d)
    }

    #[test]
    fn mount_sources_overlapping_the_daemons_paths() {
        let t = tmp("overlap");
        let root = &t.0;
        for d in [
            "var/state/sandboxes/x",
            "var/images/busybox",
            "run",
            "srv/data",
            "srv/other",
        ] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        std::os::unix::fs::symlink(root.join("var/state"), root.join("srv/link")).unwrap();
        std::os::unix::fs::symlink(root.join("var"), root.join("srv/uplink")).unwrap();
        let protected = Protected::new(&[
            ("state directory", &root.join("var/state")),
            ("images directory", &root.join("var/images")),
            ("socket directory", &root.join("run")),
        ])
        .unwrap();
        let r = |p: &str| root.join(p).display().to_string();
        let cases: Vec<(String, Option<&str>)> = vec![
            (r("srv/data"), None),
            (r("srv"), None),
            (r("srv/missing/dir"), None),
            (r("var/state"), Some("is the daemon's state directory")),
            (
                r("var/state/sandboxes/x"),
                Some("lies in the daemon's state directory"),
            ),
            (
                r("var/images/busybox"),
                Some("lies in the daemon's images directory"),
            ),
            (
                r("var/images/missing"),
                Some("lies in the daemon's images directory"),
            ),
            (r("run"), Some("is the daemon's socket directory")),
            (r("var"), Some("holds the daemon's state directory")),
            (
                root.display().to_string(),
                Some("holds the daemon's state directory"),
            ),
            ("/".to_owned(), Some("holds the daemon's state directory")),
            // Symlinks are resolved before the comparison.
            (r("srv/link"), Some("is the daemon's state directory")),
            (
                r("srv/link/sandboxes"),
                Some("lies in the daemon's state directory"),
            ),
            (r("srv/uplink"), Some("holds the daemon's state directory")),
        ];
        for (source, want) in &cases {
            let spec = SandboxSpec {
                mounts: vec![sandboxd_core::spec::MountSpec {
                    source: source.clone(),
                    target: "/mnt".into(),
                    read_only: true,
                }],
                ..Default::default()
            };
            let got = protected.check_mounts(&spec);
            match want {
                None => assert!(got.is_ok(), "{source}: {got:?}"),
                Some(text) => {
                    let msg = got.expect_err(source).to_string();
                    assert!(msg.contains(text), "{source}: {msg}");
                    assert!(msg.starts_with("spec.mounts[0].source"), "{msg}");
                }
            }
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_bind_mount_of_the_state_dir_is_caught_by_identity() {
        assert!(
            nix::unistd::geteuid().is_root(),
            "needs root to bind-mount: run the tests as root (ci/test.sh does)"
        );
        let t = tmp("bind");
        let state = t.0.join("state");
        let alias = t.0.join("alias");
        std::fs::create_dir_all(state.join("sandboxes")).unwrap();
        std::fs::create_dir_all(&alias).unwrap();
        let protected = Protected::new(&[("state directory", &state)]).unwrap();
        nix::mount::mount(
            Some(&state),
            &alias,
            None::<&str>,
            nix::mount::MsFlags::MS_BIND,
            None::<&str>,
        )
        .unwrap();
        let inside = protected.overlap(&alias.join("sandboxes"));
        let same = protected.overlap(&alias);
        nix::mount::umount2(&alias, nix::mount::MntFlags::MNT_DETACH).unwrap();
        assert!(inside.is_some_and(|w| w.contains("lies in")));
        assert!(same.is_some_and(|w| w.contains("is the daemon's")));
    }

    #[test]
    fn private_dirs() {
        let t = tmp("private");
        let dir = t.0.join("state");
        std::fs::create_dir_all(&dir).unwrap();
        let set = |p: &Path, mode: u32| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
        };
        set(&dir, 0o700);
        check_private_dir("state_dir", &dir).unwrap();
        set(&dir, 0o755);
        check_private_dir("state_dir", &dir).unwrap();
        for mode in [0o777, 0o775, 0o757, 0o1777] {
            set(&dir, mode);
            let e = check_private_dir("state_dir", &dir)
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("state_dir") && e.contains("chmod go-w"),
                "{mode:o}: {e}"
            );
        }
        set(&dir, 0o700);
        // A parent anyone may write, without the sticky bit.
        set(&t.0, 0o777);
        let e = check_private_dir("state_dir", &dir)
            .unwrap_err()
            .to_string();
        assert!(e.contains("its parent") && e.contains("not sticky"), "{e}");
        set(&t.0, 0o1777);
        check_private_dir("state_dir", &dir).unwrap();
        set(&t.0, 0o755);
        assert!(
            nix::unistd::geteuid().is_root(),
            "needs root to chown: run the tests as root (ci/test.sh does)"
        );
        std::os::unix::fs::chown(&dir, Some(65534), None).unwrap();
        let e = check_private_dir("state_dir", &dir)
            .unwrap_err()
            .to_string();
        assert!(e.contains("owned by uid 65534"), "{e}");
        let e = check_private_dir("state_dir", &t.0.join("missing"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing"), "{e}");
    }
}
