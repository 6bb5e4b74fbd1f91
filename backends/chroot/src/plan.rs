//! Pure translation of a spec into chroot steps. Compiled on every OS, so any
//! host can answer PlanSandbox for the chroot backend; the supervisor
//! executes exactly the [`ChrootSetup`] built here.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use sandboxd_core::backend::{tmpfs_inodes, tmpfs_size};
use sandboxd_core::capability::{self, BackendKind, Enforcement, Level, Property};
use sandboxd_core::plan::{NativePlan, Plan, PlanMount, Step};
use sandboxd_core::spec::{HOST_IMAGE, MountSpec, NetworkMode};
use sandboxd_core::validate::{DEFAULT_SHM_BYTES, DEFAULT_TMP_BYTES};
use sandboxd_core::{SandboxPaths, ValidatedSpec};
use sandboxd_supervisor::{Rlimit, RlimitKind};

/// One entry of the host's system layout that the `host` image mirrors.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HostEntry {
    /// A directory bound read-only at the same path.
    Bind(PathBuf),
    /// A symlink recreated as is (merged-/usr layouts: /bin -> usr/bin).
    Symlink {
        /// Path of the link.
        path: PathBuf,
        /// Its target, as read from the host.
        target: PathBuf,
    },
}

/// What the chroot backend can do on a host, probed once at start-up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostFacts {
    /// Linux mount(2) is available (bind mounts, tmpfs, overlayfs).
    pub linux_mounts: bool,
    /// overlayfs is available, for writable roots over directory images.
    pub overlay: bool,
    /// The host's system directories, for the `host` image.
    pub host_layout: Vec<HostEntry>,
}

impl HostFacts {
    /// A typical merged-/usr Linux host; used to plan for this backend when
    /// the daemon runs on another OS.
    pub fn assumed() -> Self {
        let link = |p: &str, t: &str| HostEntry::Symlink {
            path: p.into(),
            target: t.into(),
        };
        Self {
            linux_mounts: true,
            overlay: true,
            host_layout: vec![
                HostEntry::Bind("/usr".into()),
                HostEntry::Bind("/etc".into()),
                link("/bin", "usr/bin"),
                link("/sbin", "usr/sbin"),
                link("/lib", "usr/lib"),
                link("/lib64", "usr/lib64"),
            ],
        }
    }
}

/// System directories the `host` image mirrors, if they exist on the host.
pub const HOST_DIRS: [&str; 9] = [
    "/usr", "/etc", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/libexec",
];

/// Capabilities a uid-0 payload keeps (Docker's default set without
/// SYS_CHROOT, MKNOD, NET_RAW and AUDIT_WRITE: no second chroot, no device
/// nodes, no raw sockets). Numbers from <linux/capability.h>: CHOWN 0,
/// DAC_OVERRIDE 1, FOWNER 3, FSETID 4, KILL 5, SETGID 6, SETUID 7, SETPCAP 8,
/// NET_BIND_SERVICE 10, SETFCAP 31.
pub const ROOT_CAPABILITIES: [u32; 10] = [0, 1, 3, 4, 5, 6, 7, 8, 10, 31];

/// Device nodes bound into the sandbox's /dev.
pub const DEV_NODES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

/// One tmpfs the supervisor mounts. [`Tmpfs::data`] is passed to mount(2)
/// as is, and shown in plans.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tmpfs {
    /// Permission bits of its root, in octal ("1777").
    pub mode: String,
    /// `size=` in bytes; `None`: the kernel's default (half of RAM).
    pub bytes: Option<u64>,
    /// `nr_inodes=`; `None`: the kernel's default.
    pub inodes: Option<u64>,
}

impl Tmpfs {
    /// A tmpfs of `bytes` with the inode cap for that size.
    pub fn sized(mode: &str, bytes: u64) -> Self {
        Self {
            mode: mode.to_owned(),
            bytes: Some(bytes),
            inodes: Some(tmpfs_inodes(bytes)),
        }
    }

    /// The mount data, "mode=755,size=1g,nr_inodes=131072".
    pub fn data(&self) -> String {
        let mut data = vec![format!("mode={}", self.mode)];
        if let Some(b) = self.bytes {
            data.push(format!("size={}", tmpfs_size(b)));
        }
        if let Some(n) = self.inodes {
            data.push(format!("nr_inodes={n}"));
        }
        data.join(",")
    }
}

/// Size of the /dev tmpfs: device-node mount points and the /dev/shm
/// mount point, no data.
pub const DEV_TMPFS_BYTES: u64 = 64 << 10;
/// Inode cap of the /dev tmpfs.
pub const DEV_TMPFS_INODES: u64 = 256;

/// How the sandbox root is assembled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RootBuild {
    /// A tmpfs root holding read-only binds of the host's system dirs.
    HostView {
        /// What to mirror.
        layout: Vec<HostEntry>,
        /// The root tmpfs: the writable layer, sized by the disk limit.
        tmpfs: Tmpfs,
    },
    /// A directory image bound read-only.
    ImageReadOnly {
        /// Image name inside the images dir.
        image: String,
    },
    /// A directory image under an overlay whose upper layer is in the
    /// sandbox's state dir (the image itself is never written).
    ImageOverlay {
        /// Image name.
        image: String,
        /// Upper layer (inside `layer` when there is one).
        upper: PathBuf,
        /// overlayfs work dir, beside `upper`.
        work: PathBuf,
        /// With a disk limit: the tmpfs of that size, mounted on this
        /// directory under the sandbox dir, holding `upper` and `work`.
        layer: Option<(PathBuf, Tmpfs)>,
    },
    /// No mount support: chroot straight into the image directory. Writes
    /// go to the image itself.
    ImageInPlace {
        /// Image name.
        image: String,
    },
}

/// The chroot backend's executable plan (the supervisor's configuration).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChrootSetup {
    /// The directory that becomes `/` (a mount point under the sandbox dir,
    /// or the image itself for [`RootBuild::ImageInPlace`]).
    pub root: PathBuf,
    /// The images directory (trusted: from the daemon's configuration).
    pub images_dir: PathBuf,
    /// How the root is built.
    pub build: RootBuild,
    /// Remount the root read-only once built.
    pub readonly: bool,
    /// Mount a tmpfs /dev with the safe device nodes and a /dev/shm (when
    /// the root has /dev).
    pub dev: bool,
    /// The /dev tmpfs.
    pub dev_tmpfs: Tmpfs,
    /// The /dev/shm tmpfs.
    pub shm: Tmpfs,
    /// The /tmp tmpfs, over the root's /tmp when it has one (with Linux
    /// mounts).
    pub tmp: Tmpfs,
    /// Client bind mounts.
    pub mounts: Vec<MountSpec>,
}

/// Why a spec cannot be planned at all (as opposed to a refused property).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// The `host` image needs bind mounts.
    #[error(
        "spec.image: the built-in \"host\" image needs bind mounts, which the chroot backend has only on Linux"
    )]
    HostImageWithoutMounts,
    /// DNS options need a bind mount over /etc/resolv.conf.
    #[error(
        "spec.network.dns_servers: the chroot backend sets a sandbox's resolv.conf with a bind mount, which it has only on Linux"
    )]
    DnsWithoutMounts,
}

/// The mount point of a sandbox's root.
pub fn root_dir(sandbox: &SandboxPaths) -> PathBuf {
    sandbox.dir.join("rootfs")
}

/// Builds the executable plan.
pub fn build(
    spec: &ValidatedSpec,
    sandbox: &SandboxPaths,
    images_dir: &Path,
    facts: &HostFacts,
) -> Result<ChrootSetup, PlanError> {
    let s = spec.spec();
    let image = s.image().to_owned();
    let disk = s.limits.disk_bytes.map(|l| l.value);
    let (build, root) = if image == HOST_IMAGE {
        if !facts.linux_mounts {
            return Err(PlanError::HostImageWithoutMounts);
        }
        let tmpfs = match disk {
            Some(bytes) => Tmpfs::sized("755", bytes),
            None => Tmpfs {
                mode: "755".to_owned(),
                bytes: None,
                inodes: None,
            },
        };
        (
            RootBuild::HostView {
                layout: facts.host_layout.clone(),
                tmpfs,
            },
            root_dir(sandbox),
        )
    } else if !facts.linux_mounts {
        (
            RootBuild::ImageInPlace {
                image: image.clone(),
            },
            images_dir.join(&image),
        )
    } else if s.readonly_rootfs || !facts.overlay {
        (RootBuild::ImageReadOnly { image }, root_dir(sandbox))
    } else {
        // With a disk limit, upper and work live on a tmpfs of that size.
        let layer = disk.map(|bytes| (sandbox.dir.join("layer"), Tmpfs::sized("700", bytes)));
        let base = layer.as_ref().map_or(&sandbox.dir, |(dir, _)| dir);
        let build = RootBuild::ImageOverlay {
            upper: base.join("upper"),
            work: base.join("work"),
            image,
            layer,
        };
        (build, root_dir(sandbox))
    };
    Ok(ChrootSetup {
        root,
        images_dir: images_dir.to_owned(),
        build,
        readonly: s.readonly_rootfs && facts.linux_mounts,
        dev: facts.linux_mounts,
        dev_tmpfs: Tmpfs {
            mode: "755".to_owned(),
            bytes: Some(DEV_TMPFS_BYTES),
            inodes: Some(DEV_TMPFS_INODES),
        },
        shm: Tmpfs::sized("1777", s.limits.shm_bytes.unwrap_or(DEFAULT_SHM_BYTES)),
        tmp: Tmpfs::sized("1777", s.limits.tmp_bytes.unwrap_or(DEFAULT_TMP_BYTES)),
        mounts: if facts.linux_mounts {
            let mut mounts = s.mounts.clone();
            if !s.network.dns_servers.is_empty() {
                // Written by the daemon (prepare); the image must have
                // /etc/resolv.conf for it to cover.
                mounts.push(MountSpec {
                    source: sandbox.dir.join(RESOLV_CONF).display().to_string(),
                    target: "/etc/resolv.conf".to_owned(),
                    read_only: true,
                });
            }
            mounts
        } else if !s.network.dns_servers.is_empty() {
            return Err(PlanError::DnsWithoutMounts);
        } else {
            Vec::new()
        },
    })
}

pub use sandboxd_core::backend::RESOLV_CONF;

/// The rlimits a spec maps to.
pub fn rlimits(spec: &ValidatedSpec) -> Vec<Rlimit> {
    let l = &spec.spec().limits;
    [
        (RlimitKind::Nproc, l.pids),
        (RlimitKind::Nofile, l.open_files),
        (RlimitKind::As, l.address_space_bytes),
    ]
    .into_iter()
    .filter_map(|(kind, limit)| {
        limit.map(|l| Rlimit {
            kind,
            value: l.value,
        })
    })
    .collect()
}

/// How the writable layer is limited.
const DISK_HOW: &str = "a tmpfs with size= and nr_inodes= holds the writable layer (the \"host\" view's root; a directory image's overlay upper and work directories)";
/// What it does and does not cover.
const DISK_CAVEATS: &str = "past the limit writes fail with ENOSPC; the layer is RAM-backed and, without a memory cgroup, takes host RAM up to the limit; it is gone when the sandbox ends; /tmp and /dev/shm are tmpfs of their own sizes (spec.limits.tmp_bytes, shm_bytes) and read-write bind mounts are the host's, not counted";

/// What the chroot backend enforces in general on a host with `facts`.
pub fn capabilities(facts: &HostFacts) -> Vec<Enforcement> {
    rows(None, facts)
}

/// Per-spec rows: the same as the matrix, except where the spec changes the
/// answer (uid 0 can escape a chroot; HOST network is exactly what a chroot
/// gives).
fn rows(spec: Option<&ValidatedSpec>, facts: &HostFacts) -> Vec<Enforcement> {
    use Level::*;
    let as_root = spec.is_some_and(|s| s.spec().process.user.uid() == 0);
    let no_disk_limit = spec.is_some_and(|s| s.spec().limits.disk_bytes.is_none());
    // Nothing is written to the root: read-only, or a directory image bound
    // read-only for want of overlayfs.
    let readonly_root = spec.is_some_and(|s| {
        let s = s.spec();
        s.readonly_rootfs || (s.image() != HOST_IMAGE && !facts.overlay)
    });
    let host_net = spec.is_some_and(|s| s.spec().network.mode == NetworkMode::Host);
    let mounts = |yes: &'static str| -> (Level, &'static str) {
        if facts.linux_mounts {
            (Enforced, yes)
        } else {
            (NotEnforced, "no mount support on this OS")
        }
    };
    Property::ALL
        .into_iter()
        .map(|p| {
            let (level, mechanism, caveats) = match p {
                Property::Filesystem if as_root => (
                    BestEffort,
                    "chroot(2) + chdir(\"/\"); uid 0 without CAP_SYS_CHROOT/CAP_SYS_ADMIN/CAP_MKNOD",
                    "the process runs as uid 0: dropping those capabilities blocks the classic double-chroot and mount escapes, but it is still the host's root identity (it can signal host root processes and write what the binds expose); not a security boundary against root",
                ),
                Property::Filesystem => (
                    Enforced,
                    "chroot(2) + chdir(\"/\"), payload runs as a non-root uid",
                    "only against non-root: uid 0 can leave a chroot; not a security boundary against root",
                ),
                Property::Pid => (NotEnforced, "none", "sandbox processes see host processes (where /proc is visible) and can signal those of the same uid"),
                Property::Hostname => (NotEnforced, "none", "the host's hostname is shared"),
                Property::Ipc => (NotEnforced, "none", "System V IPC and POSIX message queues are the host's"),
                Property::Network if host_net => (Enforced, "none needed: the host network stack, as requested", ""),
                Property::Network => (NotEnforced, "none", "the host's network stack is shared (only mode HOST is honoured)"),
                Property::User if as_root => (NotEnforced, "none", "the process is root on the host"),
                Property::User => (
                    Emulated,
                    "setgroups/setgid/setuid to the spec's ids (default 65534)",
                    "no uid mapping: the sandbox uid is the same uid on the host",
                ),
                Property::Cgroup => (NotEnforced, "none", "the host's cgroup tree is visible"),
                Property::MemoryLimit => (NotEnforced, "none", "no total-memory accounting; address_space_bytes (RLIMIT_AS) caps each process"),
                Property::PidsLimit if as_root => (NotEnforced, "RLIMIT_NPROC", "not applied to root"),
                Property::PidsLimit => (
                    Emulated,
                    "setrlimit(RLIMIT_NPROC)",
                    "counts every process of the uid on the host, not just this sandbox's",
                ),
                Property::CpuLimit => (NotEnforced, "none", "no CPU controller without cgroups"),
                Property::OpenFilesLimit if as_root => (BestEffort, "setrlimit(RLIMIT_NOFILE)", "root may raise its own hard limit"),
                Property::OpenFilesLimit => (Enforced, "setrlimit(RLIMIT_NOFILE)", "per process"),
                Property::AddressSpaceLimit if as_root => (BestEffort, "setrlimit(RLIMIT_AS)", "root may raise its own hard limit"),
                Property::AddressSpaceLimit => (Enforced, "setrlimit(RLIMIT_AS)", "per process"),
                Property::DiskLimit if !facts.linux_mounts => (NotEnforced, "none", "no mounts on this OS: the image directory itself is the root, and writes go to it"),
                Property::DiskLimit if no_disk_limit => (NotEnforced, "none", "no disk limit: the spec sets none and the daemon's default is off (disk limit 0); a directory image's overlay upper directory grows on the state directory's filesystem, the \"host\" view's tmpfs root up to the kernel's default (half of RAM)"),
                Property::DiskLimit if readonly_root => (Enforced, "read-only root", "nothing is written to the root; /tmp and /dev/shm are tmpfs of their own sizes"),
                Property::DiskLimit if as_root => (BestEffort, DISK_HOW, "the process runs as uid 0, which can leave a chroot and write elsewhere on the host"),
                Property::DiskLimit => (Enforced, DISK_HOW, DISK_CAVEATS),
                Property::ReadonlyRootfs => {
                    let (l, m) = mounts("MS_RDONLY bind remount of the root");
                    (l, m, if as_root && l == Enforced { "root could remount it" } else { "" })
                }
                Property::Mounts => {
                    let (l, m) = mounts("bind mounts (MS_BIND|MS_NOSUID), targets resolved with openat2(RESOLVE_IN_ROOT)");
                    (l, m, "")
                }
            };
            Enforcement::new(p, level, mechanism, caveats)
        })
        .collect()
}

/// The report, refusals and rendered native plan for a spec.
pub fn plan(
    spec: &ValidatedSpec,
    sandbox: &SandboxPaths,
    images_dir: &Path,
    facts: &HostFacts,
) -> Plan {
    let (report, mut refusals) =
        capability::assess(BackendKind::Chroot, spec, rows(Some(spec), facts));
    let native = match build(spec, sandbox, images_dir, facts) {
        Ok(setup) => render(spec, &setup),
        Err(e) => {
            refusals.push(e.to_string());
            NativePlan::Chroot {
                steps: Vec::new(),
                mounts: Vec::new(),
            }
        }
    };
    Plan {
        report,
        refusals,
        native,
    }
}

/// A tmpfs as shown in plans: `flags`, then its data.
fn tmpfs_mount(target: String, flags: &[&str], tmpfs: &Tmpfs) -> PlanMount {
    let mut options: Vec<String> = flags.iter().map(|f| (*f).to_owned()).collect();
    options.extend(tmpfs.data().split(',').map(str::to_owned));
    PlanMount {
        source: "tmpfs".into(),
        target,
        fstype: "tmpfs".into(),
        options,
    }
}

fn render(spec: &ValidatedSpec, setup: &ChrootSetup) -> NativePlan {
    let root = setup.root.display().to_string();
    let at = |p: &str| format!("{root}{p}");
    let bind = |source: String, target: String, ro: bool| PlanMount {
        source,
        target,
        fstype: "bind".into(),
        options: if ro {
            vec!["ro".into(), "nosuid".into()]
        } else {
            vec!["nosuid".into()]
        },
    };
    let mut mounts = Vec::new();
    let mut steps = Vec::new();
    match &setup.build {
        RootBuild::HostView { layout, tmpfs } => {
            mounts.push(tmpfs_mount(root.clone(), &["nosuid", "nodev"], tmpfs));
            for entry in layout {
                match entry {
                    HostEntry::Bind(p) => mounts.push(bind(p.display().to_string(), at(&p.display().to_string()), true)),
                    HostEntry::Symlink { path, target } => steps.push(Step::new(
                        "symlink",
                        &[&target.display(), &at(&path.display().to_string())],
                        "mirror the host's merged-/usr links",
                    )),
                }
            }
            steps.push(Step::new("mkdir", &[&at("/tmp"), &"1777"], "the /tmp mount point"));
        }
        RootBuild::ImageReadOnly { image } => {
            mounts.push(bind(setup.images_dir.join(image).display().to_string(), root.clone(), true));
        }
        RootBuild::ImageOverlay {
            image,
            upper,
            work,
            layer,
        } => {
            if let Some((dir, tmpfs)) = layer {
                mounts.push(tmpfs_mount(dir.display().to_string(), &["nosuid", "nodev"], tmpfs));
            }
            mounts.push(PlanMount {
                source: "overlay".into(),
                target: root.clone(),
                fstype: "overlay".into(),
                options: vec![
                    format!("lowerdir={}", setup.images_dir.join(image).display()),
                    format!("upperdir={}", upper.display()),
                    format!("workdir={}", work.display()),
                    "nosuid".into(),
                ],
            })
        }
        RootBuild::ImageInPlace { .. } => steps.push(Step::new(
            "note",
            &[&"no mounts"],
            "this OS has no bind mounts here: the image directory itself is the root and is writable",
        )),
    }
    if setup.dev {
        mounts.push(tmpfs_mount(
            at("/dev"),
            &["nosuid", "noexec"],
            &setup.dev_tmpfs,
        ));
        for node in DEV_NODES {
            // Device nodes keep their own flags (the /dev tmpfs around
            // them is nosuid,noexec).
            mounts.push(PlanMount {
                source: format!("/dev/{node}"),
                target: at(&format!("/dev/{node}")),
                fstype: "bind".into(),
                options: Vec::new(),
            });
        }
    }
    if setup.dev {
        mounts.push(tmpfs_mount(
            at("/dev/shm"),
            &["nosuid", "nodev", "noexec"],
            &setup.shm,
        ));
        mounts.push(tmpfs_mount(
            format!("{} (if the root has /tmp)", at("/tmp")),
            &["nosuid", "nodev"],
            &setup.tmp,
        ));
    }
    for m in &setup.mounts {
        mounts.push(bind(
            m.source.clone(),
            format!("{root}{} (resolved in root)", m.target),
            m.read_only,
        ));
    }
    if setup.readonly {
        steps.push(Step::new(
            "mount",
            &[&"MS_REMOUNT|MS_BIND|MS_RDONLY", &root],
            "read-only root",
        ));
    }
    let s = spec.spec();
    let p = &s.process;
    steps.push(Step::new(
        "fork",
        &[],
        "one child per process; the supervisor stays outside and reaps",
    ));
    steps.push(Step::new(
        "setsid",
        &[],
        "own session and process group, so a stop or timeout kills the tree",
    ));
    steps.push(Step::new("chroot", &[&root], "the image becomes /"));
    steps.push(Step::new(
        "chdir",
        &[&"/"],
        "no directory handle left outside the root",
    ));
    steps.push(Step::new(
        "close_range",
        &[&3, &"~0"],
        "only fds 0-2 stay open, before any client path is resolved",
    ));
    if p.user.uid() == 0 {
        let keep = format!("{ROOT_CAPABILITIES:?}");
        steps.push(Step::new(
            "capbset_drop",
            &[&"all but", &keep],
            "uid 0 keeps no CAP_SYS_CHROOT, CAP_SYS_ADMIN or CAP_MKNOD",
        ));
    }
    steps.push(Step::new(
        "no_new_privs",
        &[],
        "execve can never gain privileges",
    ));
    for l in rlimits(spec) {
        let name = match l.kind {
            RlimitKind::Nproc => "RLIMIT_NPROC",
            RlimitKind::Nofile => "RLIMIT_NOFILE",
            RlimitKind::As => "RLIMIT_AS",
        };
        steps.push(Step::new("setrlimit", &[&name, &l.value], "limit"));
    }
    let groups = format!("{:?}", p.user.additional_gids);
    steps.push(Step::new("setgroups", &[&groups], "supplementary groups"));
    steps.push(Step::new("setgid", &[&p.user.gid()], "drop group"));
    steps.push(Step::new(
        "setuid",
        &[&p.user.uid()],
        "drop user (non-root by default)",
    ));
    steps.push(Step::new(
        "chdir",
        &[&p.cwd()],
        "working directory, with the payload's permissions; on Linux openat2(RESOLVE_IN_ROOT|RESOLVE_NO_MAGICLINKS) + fchdir",
    ));
    if setup.dev {
        // Linux (where the root is built with mounts): the default seccomp
        // deny list, last before execve.
        steps.push(Step::new(
            "seccomp",
            &[&"deny list"],
            "EPERM for keyrings, bpf, perf, module and kexec calls, the mount API, setns, and new user namespaces; ENOSYS for clone3",
        ));
    }
    if !p.argv.is_empty() {
        steps.push(Step::new(
            "execve",
            &[&p.argv.join(" ")],
            "the main process",
        ));
    }
    NativePlan::Chroot { steps, mounts }
}

#[cfg(test)]
#[allow(clippy::expect_used)]
mod tests {
    use super::*;
    use sandboxd_core::spec::{Limit, NetworkPolicy, ProcessSpec, Requirement, SandboxSpec};
    use sandboxd_core::validate::{Policy, validate};

    fn spec(edit: impl FnOnce(&mut SandboxSpec)) -> ValidatedSpec {
        let mut s = SandboxSpec {
            process: ProcessSpec {
                argv: vec!["/bin/true".into()],
                ..Default::default()
            },
            ..Default::default()
        };
        edit(&mut s);
        validate(
            s,
            &Policy {
                allowed_mount_sources: vec!["/srv".into()],
                ..Policy::default()
            },
        )
        .expect("valid spec")
    }

    fn paths() -> SandboxPaths {
        SandboxPaths {
            id: "0123456789abcdef".into(),
            dir: "/var/lib/sandboxd/sandboxes/0123456789abcdef".into(),
            ..Default::default()
        }
    }

    fn refusals(s: &ValidatedSpec, facts: &HostFacts) -> Vec<String> {
        plan(s, &paths(), Path::new("/images"), facts).refusals
    }

    #[test]
    fn required_properties_chroot_cannot_give_are_refused() {
        let facts = HostFacts::assumed();
        type Case = (&'static str, fn(&mut SandboxSpec), &'static [&'static str]);
        let cases: &[Case] = &[
            ("default", |_| {}, &[]),
            ("pid", |s| s.isolation.pid = Requirement::Required, &["pid"]),
            ("hostname", |s| s.hostname = "box".into(), &["hostname"]),
            (
                "ipc + cgroup",
                |s| {
                    s.isolation.ipc = Requirement::Required;
                    s.isolation.cgroup = Requirement::Required;
                },
                &["ipc", "cgroup"],
            ),
            (
                "network none",
                |s| {
                    s.network = NetworkPolicy {
                        mode: NetworkMode::None,
                        ..Default::default()
                    }
                },
                &["network"],
            ),
            (
                "network host",
                |s| {
                    s.network = NetworkPolicy {
                        mode: NetworkMode::Host,
                        ..Default::default()
                    }
                },
                &[],
            ),
            (
                "memory",
                |s| {
                    s.limits.memory_bytes = Some(Limit {
                        value: 64 << 20,
                        requirement: Requirement::Unspecified,
                    })
                },
                &["memory_limit"],
            ),
            (
                "cpu",
                |s| {
                    s.limits.cpu_millis = Some(Limit {
                        value: 500,
                        requirement: Requirement::Required,
                    })
                },
                &["cpu_limit"],
            ),
            (
                "pids emulated ok",
                |s| {
                    s.limits.pids = Some(Limit {
                        value: 64,
                        requirement: Requirement::Required,
                    })
                },
                &[],
            ),
            (
                "fs as root",
                |s| {
                    s.isolation.filesystem = Requirement::Required;
                    s.process.user.uid = Some(0);
                },
                &["filesystem"],
            ),
            (
                "fs as nobody",
                |s| s.isolation.filesystem = Requirement::Required,
                &[],
            ),
            (
                "preferred pid is degraded not refused",
                |s| s.isolation.pid = Requirement::Preferred,
                &[],
            ),
        ];
        for (what, edit, want) in cases {
            let got = refusals(&spec(*edit), &facts);
            let got: Vec<&str> = got
                .iter()
                .map(|r| r.split(':').next().unwrap_or_default())
                .collect();
            assert_eq!(&got, want, "case {what}");
        }
    }

    #[test]
    fn preferred_degradation_is_reported() {
        let s = spec(|s| s.isolation.pid = Requirement::Preferred);
        let p = plan(&s, &paths(), Path::new("/images"), &HostFacts::assumed());
        let row = p.report.get(Property::Pid).expect("pid row");
        assert!(row.degraded);
        assert_eq!(row.requested, Requirement::Preferred);
    }

    #[test]
    fn root_builds() {
        let facts = HostFacts::assumed();
        let no_mounts = HostFacts {
            linux_mounts: false,
            overlay: false,
            host_layout: vec![],
        };
        let img = Path::new("/images");
        let host = build(&spec(|_| {}), &paths(), img, &facts).expect("host");
        assert!(matches!(host.build, RootBuild::HostView { .. }));
        assert_eq!(host.root, paths().dir.join("rootfs"));
        let ro = build(
            &spec(|s| {
                s.image = "alpine".into();
                s.readonly_rootfs = true;
            }),
            &paths(),
            img,
            &facts,
        )
        .expect("ro");
        assert_eq!(
            ro.build,
            RootBuild::ImageReadOnly {
                image: "alpine".into()
            }
        );
        assert!(ro.readonly);
        let rw = build(&spec(|s| s.image = "alpine".into()), &paths(), img, &facts).expect("rw");
        assert!(matches!(rw.build, RootBuild::ImageOverlay { .. }));
        let bare = build(
            &spec(|s| s.image = "alpine".into()),
            &paths(),
            img,
            &no_mounts,
        )
        .expect("bare");
        assert_eq!(bare.root, PathBuf::from("/images/alpine"));
        assert_eq!(
            build(&spec(|_| {}), &paths(), img, &no_mounts),
            Err(PlanError::HostImageWithoutMounts)
        );
    }

    #[test]
    fn limits_map_to_rlimits() {
        let s = spec(|s| {
            s.limits.pids = Some(Limit {
                value: 64,
                requirement: Requirement::Required,
            });
            s.limits.open_files = Some(Limit {
                value: 256,
                requirement: Requirement::Required,
            });
            s.limits.address_space_bytes = Some(Limit {
                value: 1 << 30,
                requirement: Requirement::Required,
            });
        });
        assert_eq!(
            rlimits(&s),
            vec![
                Rlimit {
                    kind: RlimitKind::Nproc,
                    value: 64
                },
                Rlimit {
                    kind: RlimitKind::Nofile,
                    value: 256
                },
                Rlimit {
                    kind: RlimitKind::As,
                    value: 1 << 30
                },
            ]
        );
    }

    #[test]
    fn rendered_steps_drop_privileges_after_chroot() {
        let p = plan(
            &spec(|_| {}),
            &paths(),
            Path::new("/images"),
            &HostFacts::assumed(),
        );
        let NativePlan::Chroot { steps, mounts } = p.native else {
            panic!("chroot plan")
        };
        let ops: Vec<&str> = steps.iter().map(|s| s.op.as_str()).collect();
        let pos = |op: &str| ops.iter().position(|o| *o == op).expect(op);
        assert!(pos("chroot") < pos("setuid"));
        assert!(pos("setgid") < pos("setuid"));
        assert!(pos("setuid") < pos("execve"));
        assert!(
            mounts
                .iter()
                .any(|m| m.target.ends_with("/rootfs/usr") && m.options.contains(&"ro".to_owned()))
        );
        let setuid = steps.iter().find(|s| s.op == "setuid").expect("setuid");
        assert_eq!(setuid.args, vec!["65534"]);
    }

    fn limit(value: u64) -> Option<Limit> {
        Some(Limit {
            value,
            requirement: Requirement::Unspecified,
        })
    }

    /// (target, options) of the rendered tmpfs mounts.
    fn tmpfs_mounts(s: &ValidatedSpec, facts: &HostFacts) -> Vec<(String, Vec<String>)> {
        let p = plan(s, &paths(), Path::new("/images"), facts);
        let NativePlan::Chroot { mounts, .. } = p.native else {
            panic!("chroot plan")
        };
        mounts
            .into_iter()
            .filter(|m| m.fstype == "tmpfs")
            .map(|m| (m.target, m.options))
            .collect()
    }

    #[test]
    fn every_tmpfs_has_a_size_and_an_inode_cap() {
        let facts = HostFacts::assumed();
        let dir = paths().dir.display().to_string();
        type Case = (
            &'static str,
            fn(&mut SandboxSpec),
            Vec<(String, &'static str)>,
        );
        let cases: Vec<Case> = vec![
            (
                "host view, defaults",
                |_| {},
                vec![
                    (
                        format!("{dir}/rootfs"),
                        "nosuid,nodev,mode=755,size=1g,nr_inodes=131072",
                    ),
                    (
                        format!("{dir}/rootfs/dev"),
                        "nosuid,noexec,mode=755,size=64k,nr_inodes=256",
                    ),
                    (
                        format!("{dir}/rootfs/dev/shm"),
                        "nosuid,nodev,noexec,mode=1777,size=64m,nr_inodes=8192",
                    ),
                    (
                        format!("{dir}/rootfs/tmp (if the root has /tmp)"),
                        "nosuid,nodev,mode=1777,size=256m,nr_inodes=32768",
                    ),
                ],
            ),
            (
                "directory image, spec sizes: the layer holds upper and work",
                |s| {
                    s.image = "alpine".into();
                    s.limits.disk_bytes = limit(32 << 20);
                    s.limits.tmp_bytes = Some(16 << 20);
                    s.limits.shm_bytes = Some(2 << 20);
                },
                vec![
                    (
                        format!("{dir}/layer"),
                        "nosuid,nodev,mode=700,size=32m,nr_inodes=4096",
                    ),
                    (
                        format!("{dir}/rootfs/dev"),
                        "nosuid,noexec,mode=755,size=64k,nr_inodes=256",
                    ),
                    (
                        format!("{dir}/rootfs/dev/shm"),
                        "nosuid,nodev,noexec,mode=1777,size=2m,nr_inodes=1024",
                    ),
                    (
                        format!("{dir}/rootfs/tmp (if the root has /tmp)"),
                        "nosuid,nodev,mode=1777,size=16m,nr_inodes=2048",
                    ),
                ],
            ),
        ];
        for (what, edit, want) in cases {
            let got = tmpfs_mounts(&spec(edit), &facts);
            let want: Vec<(String, Vec<String>)> = want
                .into_iter()
                .map(|(t, o)| (t, o.split(',').map(str::to_owned).collect()))
                .collect();
            assert_eq!(got, want, "{what}");
        }
        let s = spec(|s| {
            s.image = "alpine".into();
            s.limits.disk_bytes = limit(32 << 20);
        });
        let setup = build(&s, &paths(), Path::new("/images"), &facts).expect("plan");
        let RootBuild::ImageOverlay { upper, work, .. } = setup.build else {
            panic!("overlay")
        };
        assert_eq!(
            (upper, work),
            (
                paths().dir.join("layer/upper"),
                paths().dir.join("layer/work")
            )
        );
    }

    #[test]
    fn without_a_disk_limit_the_layer_is_unbounded_and_says_so() {
        let s = validate(
            SandboxSpec {
                image: "alpine".into(),
                process: ProcessSpec {
                    argv: vec!["/bin/true".into()],
                    ..Default::default()
                },
                ..Default::default()
            },
            &Policy {
                default_disk_bytes: None,
                max_disk_bytes: 1 << 40,
                ..Policy::default()
            },
        )
        .expect("valid");
        let facts = HostFacts::assumed();
        let setup = build(&s, &paths(), Path::new("/images"), &facts).expect("plan");
        assert_eq!(
            setup.build,
            RootBuild::ImageOverlay {
                image: "alpine".into(),
                upper: paths().dir.join("upper"),
                work: paths().dir.join("work"),
                layer: None,
            }
        );
        let p = plan(&s, &paths(), Path::new("/images"), &facts);
        let row = p.report.get(Property::DiskLimit).expect("row");
        assert_eq!(row.level, Level::NotEnforced);
        assert!(row.caveats.starts_with("no disk limit"), "{row:?}");
    }

    #[test]
    fn disk_limit_rows_and_refusals() {
        let facts = HostFacts::assumed();
        let no_mounts = HostFacts {
            linux_mounts: false,
            overlay: false,
            host_layout: vec![],
        };
        type Case = (
            &'static str,
            fn(&mut SandboxSpec),
            bool,
            Level,
            bool, // refused
            bool, // degraded
        );
        let cases: &[Case] = &[
            ("default", |_| {}, true, Level::Enforced, false, false),
            (
                "required",
                |s| s.limits.disk_bytes = limit(64 << 20),
                true,
                Level::Enforced,
                false,
                false,
            ),
            (
                "required as root: uid 0 can leave a chroot",
                |s| {
                    s.limits.disk_bytes = limit(64 << 20);
                    s.process.user.uid = Some(0);
                },
                true,
                Level::BestEffort,
                true,
                false,
            ),
            (
                "read-only image",
                |s| {
                    s.image = "alpine".into();
                    s.readonly_rootfs = true;
                    s.limits.disk_bytes = limit(64 << 20);
                },
                true,
                Level::Enforced,
                false,
                false,
            ),
            (
                "no mounts: the default is degraded, not refused",
                |s| s.image = "alpine".into(),
                false,
                Level::NotEnforced,
                false,
                true,
            ),
            (
                "no mounts, required",
                |s| {
                    s.image = "alpine".into();
                    s.limits.disk_bytes = limit(64 << 20);
                },
                false,
                Level::NotEnforced,
                true,
                false,
            ),
        ];
        for (what, edit, mounts, level, refused, degraded) in cases {
            let f = if *mounts { &facts } else { &no_mounts };
            let p = plan(&spec(*edit), &paths(), Path::new("/images"), f);
            let row = p.report.get(Property::DiskLimit).expect("row");
            assert_eq!(row.level, *level, "{what}: {row:?}");
            assert_eq!(row.degraded, *degraded, "{what}");
            assert_eq!(
                p.refusals.iter().any(|r| r.starts_with("disk_limit:")),
                *refused,
                "{what}: {:?}",
                p.refusals
            );
        }
    }
}
