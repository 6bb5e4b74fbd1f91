//! The mounts that build a jail's root, made on the host before the jail is
//! created.

use std::path::{Component, Path, PathBuf};

use sandboxd_core::ValidatedSpec;
use sandboxd_core::backend;
use sandboxd_core::spec::HOST_IMAGE;
use sandboxd_core::validate::DEFAULT_TMP_BYTES;

use super::{DEVFS_RULESET, Fstype, JailMount, MountSource, PlanError};

/// Host directories the "host" image mounts read-only: a FreeBSD base system
/// lives in these.
pub const HOST_IMAGE_DIRS: [&str; 6] = ["/bin", "/sbin", "/lib", "/libexec", "/usr", "/etc"];

fn new(fstype: Fstype, source: MountSource, target: &str, options: &[&str]) -> JailMount {
    JailMount {
        fstype,
        source,
        target: target.to_owned(),
        options: options.iter().map(|o| (*o).to_owned()).collect(),
        update: false,
        chmod: None,
    }
}

/// The mode of the `host` image's tmpfs root directory.
pub(super) const ROOT_MODE: u32 = 0o755;

/// tmpfs(5) `size=` and `inodes=` for `bytes`; nothing for `None` (the
/// kernel's default: all available memory and swap).
fn tmpfs_size(bytes: Option<u64>) -> Vec<String> {
    bytes
        .map(|b| {
            vec![
                format!("size={}", backend::tmpfs_size(b)),
                format!("inodes={}", backend::tmpfs_inodes(b)),
            ]
        })
        .unwrap_or_default()
}

/// The jail's resolver configuration, covered by the generated file.
pub const RESOLV_CONF: &str = "/etc/resolv.conf";

/// Where the `host` image shows the sandboxd binary `exe` inside the jail:
/// `exe` itself when it lies under one of [`HOST_IMAGE_DIRS`] (which are
/// mounted at the same paths), `None` when the jail cannot see it. `exe`
/// must be an absolute path of normal components (the probe resolves it);
/// anything else is not masked rather than guessed at.
///
/// This only answers "which path"; whether the host can mount a file over
/// it is [`HostFacts::has_nullfs_file_mounts`](super::HostFacts).
pub fn own_binary_mask(exe: &Path) -> Option<String> {
    let mut parts = exe.components();
    if parts.next() != Some(Component::RootDir) {
        return None;
    }
    // Rebuilt from its components, so the text is normalised ("/a/./b" is
    // "/a/b"), as the runtime's component walk requires.
    let mut text = String::new();
    for c in parts {
        let Component::Normal(name) = c else {
            return None;
        };
        text.push('/');
        text.push_str(name.to_str()?);
    }
    HOST_IMAGE_DIRS
        .iter()
        // Strictly below: a directory itself is not a binary.
        .any(|d| exe.starts_with(d) && text != *d)
        .then_some(text)
}

/// Host directories that hold the daemon's own secrets (its TLS key and
/// config, docs/security.md): the `host` image shows `/etc` and `/usr`, so
/// each that exists is covered with an empty read-only tmpfs.
pub const SECRET_DIRS: [&str; 2] = ["/usr/local/etc/sandboxd", "/etc/sandboxd"];

/// The options of the mask: nothing can be written, set-id or run there.
pub const MASK_OPTIONS: [&str; 3] = ["ro", "nosuid", "noexec"];

/// The mounts for a spec, in order; with `resolv_conf`, the generated
/// resolv.conf over the image's, after every mount that could cover /etc;
/// with `mask` (a path from [`own_binary_mask`]), an empty mode-000 file
/// over the sandboxd binary, right after the host directories.
pub(super) fn mounts(
    spec: &ValidatedSpec,
    resolv_conf: bool,
    mask: Option<&str>,
    secret_dirs: &[String],
) -> Result<Vec<JailMount>, PlanError> {
    let s = spec.spec();
    let ro = s.readonly_rootfs;
    let mut m = Vec::new();
    let host_image = s.image() == HOST_IMAGE;
    if host_image {
        // No tmpfs `mode` or `inodes` option on the root: a read-only root
        // is this mount updated to `ro` (below), and tmpfs accepts only
        // `size` (and a few others) on an update, which the kernel re-sends
        // from the first mount's options. The runtime sets the mode with
        // fchmod instead. The root is the writable layer: it takes the disk
        // limit as `size`.
        let size: Vec<String> = s
            .limits
            .disk_bytes
            .map(|l| vec![format!("size={}", backend::tmpfs_size(l.value))])
            .unwrap_or_default();
        let size: Vec<&str> = size.iter().map(String::as_str).collect();
        m.push(JailMount {
            chmod: Some(ROOT_MODE),
            ..new(Fstype::Tmpfs, MountSource::Pseudo, "/", &size)
        });
        m.extend(HOST_IMAGE_DIRS.map(|d| {
            new(
                Fstype::Nullfs,
                MountSource::Host(PathBuf::from(d)),
                d,
                &["ro"],
            )
        }));
        // Right after the directory that shows it, before the client
        // mounts: a client mount over the same path then hides the mask
        // with its own content, as it would hide the binary.
        if let Some(target) = mask {
            m.push(new(
                Fstype::Nullfs,
                MountSource::Masked,
                target,
                &MASK_OPTIONS,
            ));
        }
        for dir in secret_dirs
            .iter()
            .filter(|d| SECRET_DIRS.contains(&d.as_str()))
        {
            m.push(new(
                Fstype::Tmpfs,
                MountSource::Pseudo,
                dir,
                &["ro", "nosuid", "noexec", "mode=000", "size=4k", "inodes=1"],
            ));
        }
    } else {
        let options: &[&str] = if ro { &["ro"] } else { &[] };
        let layers = spec.image_layers();
        if layers.is_empty() && sandboxd_core::oci::is_reference(s.image()) {
            return Err(PlanError::ImageUnresolved(s.image().to_owned()));
        }
        let source = if layers.is_empty() {
            MountSource::Image(s.image().to_owned())
        } else {
            MountSource::ImageLayers(layers.to_vec())
        };
        m.push(new(Fstype::Nullfs, source, "/", options));
    }
    let ruleset = format!("ruleset={DEVFS_RULESET}");
    m.push(new(Fstype::Devfs, MountSource::Pseudo, "/dev", &[&ruleset]));
    let tmp_bytes = s.limits.tmp_bytes.unwrap_or(DEFAULT_TMP_BYTES);
    let mut tmp = vec!["mode=1777".to_owned()];
    tmp.extend(tmpfs_size(Some(tmp_bytes)));
    tmp.push("nosuid".to_owned());
    let tmp: Vec<&str> = tmp.iter().map(String::as_str).collect();
    m.push(new(Fstype::Tmpfs, MountSource::Pseudo, "/tmp", &tmp));
    for (index, c) in s.mounts.iter().enumerate() {
        if Path::new(&c.target).starts_with("/dev") {
            return Err(PlanError::NullfsMountTarget {
                index,
                target: c.target.clone(),
            });
        }
        let options: &[&str] = if c.read_only {
            &["ro", "nosuid"]
        } else {
            &["nosuid"]
        };
        m.push(new(
            Fstype::Nullfs,
            MountSource::Host(PathBuf::from(&c.source)),
            &c.target,
            options,
        ));
    }
    if resolv_conf {
        m.push(new(
            Fstype::Nullfs,
            MountSource::ResolvConf,
            RESOLV_CONF,
            &["ro", "nosuid"],
        ));
    }
    if ro && host_image {
        // Last, so the mount points above could still be created in it.
        m.push(JailMount {
            update: true,
            ..new(Fstype::Tmpfs, MountSource::Pseudo, "/", &["ro"])
        });
    }
    Ok(m)
}
