//! The ordered list of operations that builds a sandbox's root in its private
//! mount namespace, before `pivot_root`.

use std::path::{Path, PathBuf};

use sandboxd_core::backend::{tmpfs_inodes, tmpfs_size};
use sandboxd_core::spec::HOST_IMAGE;
use sandboxd_core::validate::{DEFAULT_SHM_BYTES, DEFAULT_TMP_BYTES};
use sandboxd_core::{SandboxPaths, ValidatedSpec};

use super::{HostFacts, Layer, Mount, MountFlag, MountSource, Namespace, PlanError, RootOp};

use MountFlag::{Bind, Nodev, Noexec, Nosuid, Rdonly, Remount};

/// Kernel files and directories hidden from the sandbox because they leak
/// host information or offer an attack surface (the list runc and Docker
/// use). Files are covered with `/dev/null`, directories with an empty
/// read-only tmpfs.
pub const MASKED_PATHS: [&str; 7] = [
    "/proc/kcore",
    "/proc/keys",
    "/proc/timer_list",
    "/proc/sched_debug",
    "/proc/scsi",
    "/proc/acpi",
    "/sys/firmware",
];

/// /proc entries that stay visible but read-only: writing them would change
/// the host kernel (sysctls, sysrq, irq affinity).
pub const READONLY_PROC_PATHS: [&str; 5] = [
    "/proc/sys",
    "/proc/sysrq-trigger",
    "/proc/irq",
    "/proc/bus",
    "/proc/fs",
];

/// Host directories the daemon's own secrets live in (its TLS key and
/// config, docs/security.md): hidden in the "host" image, which shows the
/// host's /etc and /usr, behind an empty read-only tmpfs.
pub const HOST_SECRETS: [&str; 2] = ["/etc/sandboxd", "/usr/local/etc/sandboxd"];

/// Masked paths that are directories (the rest are files).
const MASKED_DIRS: [&str; 3] = ["/proc/scsi", "/proc/acpi", "/sys/firmware"];

/// The device nodes of the private /dev (name, major, minor): the set
/// runc and Docker give a container.
const DEVICES: [(&str, u32, u32); 6] = [
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];

/// Size of the /dev tmpfs: it holds only device nodes, symlinks and mount
/// points, none of which take data pages; a root payload may not grow it.
pub const DEV_TMPFS_BYTES: u64 = 64 << 10;
/// Inode cap of the /dev tmpfs.
pub const DEV_TMPFS_INODES: u64 = 256;

/// tmpfs data: the mode, then `size=` and `nr_inodes=` for `bytes` (none
/// for `None`: the kernel's default, half of RAM).
fn tmpfs_data(mode: &str, bytes: Option<u64>) -> Vec<String> {
    let mut data = vec![format!("mode={mode}")];
    if let Some(b) = bytes {
        data.push(format!("size={}", tmpfs_size(b)));
        data.push(format!("nr_inodes={}", tmpfs_inodes(b)));
    }
    data
}

/// Where client mounts may not go: the sandbox's own pseudo-filesystems.
/// The plan refuses targets named under them; the runtime refuses targets
/// that resolve under them ([`Mount::client`]).
pub const RESERVED_TARGETS: [&str; 3] = ["/proc", "/sys", "/dev"];

/// A mount with no `if_exists`.
fn mount(
    source: MountSource,
    target: &str,
    fstype: Option<&str>,
    flags: &[MountFlag],
    data: &[&str],
) -> RootOp {
    RootOp::Mount(Mount {
        source,
        target: target.to_owned(),
        fstype: fstype.map(str::to_owned),
        flags: flags.to_vec(),
        data: data.iter().map(|d| (*d).to_owned()).collect(),
        if_exists: false,
        client: false,
    })
}

/// A kernel filesystem.
fn pseudo(fstype: &str, target: &str, flags: &[MountFlag], data: &[&str]) -> RootOp {
    mount(
        MountSource::Pseudo(fstype.to_owned()),
        target,
        Some(fstype),
        flags,
        data,
    )
}

/// A tmpfs of `bytes` (see [`tmpfs_data`]).
fn tmpfs(target: &str, flags: &[MountFlag], mode: &str, bytes: Option<u64>) -> RootOp {
    let data = tmpfs_data(mode, bytes);
    let data: Vec<&str> = data.iter().map(String::as_str).collect();
    pseudo("tmpfs", target, flags, &data)
}

/// A bind of a host path.
fn host_bind(source: &str, target: &str, flags: &[MountFlag]) -> RootOp {
    mount(
        MountSource::Host(PathBuf::from(source)),
        target,
        None,
        flags,
        &[],
    )
}

/// Marks a mount's target as checked like a client's (see [`Mount::client`]).
fn client(op: RootOp) -> RootOp {
    match op {
        RootOp::Mount(m) => RootOp::Mount(Mount { client: true, ..m }),
        other => other,
    }
}

/// Marks a mount as skipped when its source or target does not exist.
fn optional(op: RootOp) -> RootOp {
    match op {
        RootOp::Mount(m) => RootOp::Mount(Mount {
            if_exists: true,
            ..m
        }),
        other => other,
    }
}

/// The image as the new root.
fn image(
    spec: &ValidatedSpec,
    sandbox: &SandboxPaths,
    host: &HostFacts,
) -> Result<Vec<RootOp>, PlanError> {
    let s = spec.spec();
    let name = s.image();
    let disk = s.limits.disk_bytes.map(|l| l.value);
    if name == HOST_IMAGE {
        // The tmpfs root is the writable layer: it takes the disk limit.
        let mut ops = vec![tmpfs("/", &[Nodev], "755", disk)];
        ops.extend(
            ["/usr", "/etc"]
                .into_iter()
                .map(|d| host_bind(d, d, &[Bind, Rdonly, Nodev])),
        );
        ops.extend(HOST_SECRETS.into_iter().map(|dir| {
            optional(pseudo(
                "tmpfs",
                dir,
                &[Rdonly, Nosuid, Nodev, Noexec],
                &["size=4k", "nr_inodes=1", "mode=000"],
            ))
        }));
        for (dir, usr) in [
            ("/bin", "usr/bin"),
            ("/sbin", "usr/sbin"),
            ("/lib", "usr/lib"),
            ("/lib64", "usr/lib64"),
        ] {
            ops.push(if host.merged_usr {
                RootOp::Symlink {
                    path: dir.to_owned(),
                    target: usr.to_owned(),
                }
            } else {
                optional(host_bind(dir, dir, &[Bind, Rdonly, Nodev]))
            });
        }
        return Ok(ops);
    }
    let layers = spec.image_layers().to_vec();
    if layers.is_empty() && sandboxd_core::oci::is_reference(name) {
        return Err(PlanError::ImageUnresolved(name.to_owned()));
    }
    // An OCI image's root is its layers under the sandbox's own upper even
    // when read-only: mount points are created in the upper, never in a
    // shared layer, and the final remount (below) makes the root read-only.
    if s.readonly_rootfs && layers.is_empty() {
        return Ok(vec![mount(
            MountSource::Image(name.to_owned()),
            "/",
            None,
            &[Bind, Rdonly, Nodev],
            &[],
        )]);
    }
    if !host.overlayfs {
        return Err(PlanError::RootfsOverlay {
            image: name.to_owned(),
        });
    }
    // With a disk limit, upper and work live on a tmpfs of that size (in
    // pid 1's mount namespace only), mounted on the root's mount point and
    // covered by the overlay: no directory of its own on the state disk,
    // where each new inode costs. Without one, on the state directory's
    // filesystem.
    let (base, layer) = match disk {
        Some(bytes) => {
            let dir = super::rootfs(sandbox);
            let layer = Layer {
                dir: dir.clone(),
                flags: vec![Nosuid, Nodev],
                data: tmpfs_data("700", Some(bytes)),
            };
            (dir, Some(layer))
        }
        None => (sandbox.dir.clone(), None),
    };
    Ok(vec![mount(
        MountSource::Overlay {
            image: name.to_owned(),
            layers,
            upper: base.join("upper"),
            work: base.join("work"),
            layer,
        },
        "/",
        Some("overlay"),
        &[Nodev],
        &[],
    )])
}

pub use sandboxd_core::backend::RESOLV_CONF;

/// The root-building operations for a spec, in order.
pub(super) fn root_ops(
    spec: &ValidatedSpec,
    sandbox: &SandboxPaths,
    host: &HostFacts,
    namespaces: &[Namespace],
    joined: &[Namespace],
) -> Result<Vec<RootOp>, PlanError> {
    let s = spec.spec();
    let mut ops = vec![RootOp::MakePrivate];
    ops.extend(image(spec, sandbox, host)?);

    // procfs shows the mounter's pid namespace: pid 1's own, or with
    // spec.join.pid the parent's (the first process is cloned into it), so
    // a pod's /proc lists the pod's processes.
    ops.push(pseudo("proc", "/proc", &[Nosuid, Nodev, Noexec], &[]));
    let dev_size = format!("size={}", tmpfs_size(DEV_TMPFS_BYTES));
    let dev_inodes = format!("nr_inodes={DEV_TMPFS_INODES}");
    ops.push(pseudo(
        "tmpfs",
        "/dev",
        &[Nosuid, Noexec],
        &["mode=755", &dev_size, &dev_inodes],
    ));
    for (name, major, minor) in DEVICES {
        ops.push(RootOp::Device {
            path: format!("/dev/{name}"),
            major,
            minor,
        });
    }
    for (path, target) in [
        ("/dev/fd", "/proc/self/fd"),
        ("/dev/stdin", "/proc/self/fd/0"),
        ("/dev/stdout", "/proc/self/fd/1"),
        ("/dev/stderr", "/proc/self/fd/2"),
        ("/dev/ptmx", "pts/ptmx"),
    ] {
        ops.push(RootOp::Symlink {
            path: path.to_owned(),
            target: target.to_owned(),
        });
    }
    // A new devpts instance: the sandbox sees only its own terminals.
    ops.push(pseudo(
        "devpts",
        "/dev/pts",
        &[Nosuid, Noexec],
        &["newinstance", "ptmxmode=0666", "mode=0620"],
    ));
    ops.push(tmpfs(
        "/dev/shm",
        &[Nosuid, Nodev, Noexec],
        "1777",
        Some(s.limits.shm_bytes.unwrap_or(DEFAULT_SHM_BYTES)),
    ));
    // A child joining its parent's IPC namespace mounts that namespace's
    // queues (pid 1 is already in it): shared with the pod, not the host.
    let own_or_joined = |n| namespaces.contains(&n) || joined.contains(&n);
    if own_or_joined(Namespace::Ipc) {
        ops.push(pseudo(
            "mqueue",
            "/dev/mqueue",
            &[Nosuid, Nodev, Noexec],
            &[],
        ));
    }
    // sysfs shows the network namespace's devices; without one it would show
    // the host's, so it is left out.
    let sysfs = own_or_joined(Namespace::Net);
    if sysfs {
        ops.push(pseudo(
            "sysfs",
            "/sys",
            &[Rdonly, Nosuid, Nodev, Noexec],
            &[],
        ));
    }
    let tmp = s.limits.tmp_bytes.unwrap_or(DEFAULT_TMP_BYTES);
    ops.push(tmpfs("/tmp", &[Nosuid, Nodev], "1777", Some(tmp)));

    for path in MASKED_PATHS {
        if path.starts_with("/sys/") && !sysfs {
            continue;
        }
        let op = if MASKED_DIRS.contains(&path) {
            // Read-only and empty; size=0 would mean "unlimited".
            pseudo(
                "tmpfs",
                path,
                &[Rdonly, Nosuid, Nodev, Noexec],
                &["size=4k", "nr_inodes=1"],
            )
        } else {
            host_bind("/dev/null", path, &[Bind, Rdonly, Nosuid, Noexec])
        };
        ops.push(optional(op));
    }
    for path in READONLY_PROC_PATHS {
        ops.push(optional(mount(
            MountSource::InRoot(path.to_owned()),
            path,
            None,
            &[Bind, Rdonly, Nosuid, Nodev, Noexec],
            &[],
        )));
    }

    for (index, m) in s.mounts.iter().enumerate() {
        let target = Path::new(&m.target);
        if RESERVED_TARGETS.iter().any(|r| target.starts_with(r)) {
            return Err(PlanError::BindMountTarget {
                index,
                target: m.target.clone(),
            });
        }
        let mut flags = vec![Bind, Nosuid, Nodev];
        if m.read_only {
            flags.push(Rdonly);
        }
        ops.push(client(mount(
            MountSource::Host(PathBuf::from(&m.source)),
            &m.target,
            None,
            &flags,
            &[],
        )));
    }

    if !s.network.dns_servers.is_empty() {
        // The daemon writes the file (prepare); read-only inside, so the
        // sandbox cannot redirect its own lookups elsewhere for others.
        // Images often make /etc/resolv.conf a symlink: checked as a
        // client mount (inside the root, not under /proc, /sys, /dev).
        ops.push(client(mount(
            MountSource::Host(sandbox.dir.join(RESOLV_CONF)),
            "/etc/resolv.conf",
            None,
            &[Bind, Rdonly, Nosuid, Nodev, Noexec],
            &[],
        )));
    }

    if s.readonly_rootfs {
        // Last, so every mount point above could still be created. The
        // runtime keeps the mount's existing nosuid/nodev flags, which a
        // remount would otherwise clear (and which are locked in a user
        // namespace).
        ops.push(mount(
            MountSource::InRoot("/".to_owned()),
            "/",
            None,
            &[Remount, Bind, Rdonly],
            &[],
        ));
    }
    Ok(ops)
}
