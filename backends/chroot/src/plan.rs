//! Pure translation of a spec into chroot steps. Compiled on every OS, so any
//! host can answer PlanSandbox for the chroot backend; the supervisor
//! executes exactly the [`ChrootSetup`] built here.
//!
//! [`ChrootPlanner`] is this backend's [`Planner`]: its rows, its build and
//! its render; the refusal rule, the display plan and the capability matrix
//! are core's, shared by every backend.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use sandboxd_core::backend::{tmpfs_inodes, tmpfs_size};
use sandboxd_core::capability::{BackendKind, Enforcement, Level, Property};
use sandboxd_core::plan::{NativePlan, Plan, PlanMount, Step};
use sandboxd_core::spec::{HOST_IMAGE, MountSpec, NetworkMode};
use sandboxd_core::validate::{DEFAULT_SHM_BYTES, DEFAULT_TMP_BYTES};
use sandboxd_core::{Planner, SandboxPaths, ValidatedSpec};
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

/// A mount(2) flag, shown in plans by its mount(8) option name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MountFlag {
    /// `MS_RDONLY`.
    Rdonly,
    /// `MS_NOSUID`.
    Nosuid,
    /// `MS_NODEV`.
    Nodev,
    /// `MS_NOEXEC`.
    Noexec,
}

impl MountFlag {
    /// The mount(8) option name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rdonly => "ro",
            Self::Nosuid => "nosuid",
            Self::Nodev => "nodev",
            Self::Noexec => "noexec",
        }
    }
}

/// A tmpfs mount's flags and mount(2) data, exactly as passed to the
/// kernel and shown in plans.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TmpfsOptions {
    /// mount(2) flags.
    pub flags: Vec<MountFlag>,
    /// mount(2) data, "mode=755,size=1g,nr_inodes=131072".
    pub data: String,
}

impl TmpfsOptions {
    fn new(flags: &[MountFlag], data: &str) -> Self {
        Self {
            flags: flags.to_vec(),
            data: data.to_owned(),
        }
    }

    /// A tmpfs with root permission bits `mode` (octal text, "1777") and,
    /// given `bytes`, `size=` and the inode cap for that size; without,
    /// the kernel's defaults (half of RAM).
    pub fn sized(flags: &[MountFlag], mode: &str, bytes: Option<u64>) -> Self {
        let mut data = format!("mode={mode}");
        if let Some(b) = bytes {
            data.push_str(&format!(
                ",size={},nr_inodes={}",
                tmpfs_size(b),
                tmpfs_inodes(b)
            ));
        }
        Self::new(flags, &data)
    }

    /// Flags, then each data option, as a plan shows them.
    pub fn display(&self) -> Vec<String> {
        self.flags
            .iter()
            .map(|f| f.as_str().to_owned())
            .chain(self.data.split(',').map(str::to_owned))
            .collect()
    }
}

/// Flags of the `host` view's root tmpfs (the writable layer, sized by the
/// disk limit: it holds mount points, symlinks and what the payload writes
/// outside /tmp and /dev/shm).
pub const ROOT_TMPFS_FLAGS: [MountFlag; 2] = [MountFlag::Nosuid, MountFlag::Nodev];
/// Flags of the writable-layer tmpfs that holds a directory image's
/// overlay upper and work directories, with a disk limit.
pub const LAYER_TMPFS_FLAGS: [MountFlag; 2] = [MountFlag::Nosuid, MountFlag::Nodev];
/// Flags of the /dev tmpfs (the device nodes bound in keep their own).
pub const DEV_TMPFS_FLAGS: [MountFlag; 2] = [MountFlag::Nosuid, MountFlag::Noexec];
/// Size of the /dev tmpfs: device-node mount points and the /dev/shm
/// mount point, no data.
pub const DEV_TMPFS_BYTES: u64 = 64 << 10;
/// Inode cap of the /dev tmpfs.
pub const DEV_TMPFS_INODES: u64 = 256;
/// Flags of the /dev/shm tmpfs (sized by `spec.limits.shm_bytes`).
pub const SHM_TMPFS_FLAGS: [MountFlag; 3] =
    [MountFlag::Nosuid, MountFlag::Nodev, MountFlag::Noexec];
/// Flags of the /tmp tmpfs (sized by `spec.limits.tmp_bytes`).
pub const TMP_TMPFS_FLAGS: [MountFlag; 2] = [MountFlag::Nosuid, MountFlag::Nodev];
/// Flags of a read-only bind (host directories, a read-only image).
pub const BIND_RO_FLAGS: [MountFlag; 2] = [MountFlag::Rdonly, MountFlag::Nosuid];
/// Flags of a read-only directory image on the root: also nodev, as the
/// writable overlay, so a device node in an image is no way to the host's
/// device (the sandbox's /dev is its own tmpfs).
pub const IMAGE_RO_FLAGS: [MountFlag; 3] = [MountFlag::Rdonly, MountFlag::Nosuid, MountFlag::Nodev];
/// Flags of the final remount of a read-only `host` view's tmpfs root.
pub const ROOT_RO_FLAGS: [MountFlag; 3] = [MountFlag::Rdonly, MountFlag::Nosuid, MountFlag::Nodev];

/// How the sandbox root is assembled (the details are in the steps).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RootBuild {
    /// A tmpfs root holding read-only binds of the host's system dirs.
    HostView,
    /// A directory image bound read-only.
    ImageReadOnly {
        /// Image name inside the images dir.
        image: String,
    },
    /// A directory image, or an OCI image's layer chain, under an overlay
    /// whose upper layer is in the sandbox's state dir, on a tmpfs of the
    /// disk limit when there is one (the image itself is never written).
    ImageOverlay {
        /// Image name.
        image: String,
    },
    /// No mount support: chroot straight into the image directory. Writes
    /// go to the image itself.
    ImageInPlace {
        /// Image name.
        image: String,
    },
}

/// Who runs a [`ChrootStep`]. Every step has exactly one runner, so what
/// the plan shows is what runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Executor {
    /// The backend's `Isolation::setup` in the supervisor, in plan order:
    /// it builds the root.
    Setup,
    /// The backend's `Isolation::enter`, in each forked child.
    Enter,
    /// The generic supervisor (`sandboxd_supervisor`), from the launch
    /// config the backend derives from the same spec.
    Generic,
}

/// One step of a chroot sandbox, in order. Host paths are absolute paths
/// on the host; "in the root" paths are resolved beneath the root with
/// `openat2(RESOLVE_IN_ROOT)`, never joined as strings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChrootStep {
    /// Create a host directory (and its parents) with `mode` (less the
    /// umask).
    CreateDir {
        /// Host path.
        path: PathBuf,
        /// Permission bits.
        mode: u32,
    },
    /// Mount a tmpfs on the root (the `host` view).
    MountRootTmpfs(TmpfsOptions),
    /// Bind a host system directory on `target` (created first), then
    /// remount it [`BIND_RO_FLAGS`].
    BindHostDir {
        /// Host directory, from the start-up probe.
        source: PathBuf,
        /// Host path under the root.
        target: PathBuf,
    },
    /// Create a symlink `link` pointing at `target`.
    Symlink {
        /// Host path under the root.
        link: PathBuf,
        /// The link's contents, as read from the host.
        target: PathBuf,
    },
    /// Set a host path's permission bits exactly (mkdir applies the umask).
    Chmod {
        /// Host path.
        path: PathBuf,
        /// Permission bits.
        mode: u32,
    },
    /// Bind the image directory (opened without following symlinks) on
    /// the root, then remount it [`IMAGE_RO_FLAGS`].
    BindImage {
        /// Image name inside the images dir.
        image: String,
    },
    /// Mount a tmpfs on a host directory under the sandbox dir (so teardown
    /// and cleanup unmount it): the writable layer, sized by the disk
    /// limit, that holds the overlay's upper and work directories.
    MountLayer {
        /// Host path.
        path: PathBuf,
        /// The tmpfs.
        tmpfs: TmpfsOptions,
    },
    /// Mount an overlay on the root: the image (read-only) under
    /// `upper`/`work`, nosuid and nodev. For an OCI image the lower directories are
    /// its `layers` instead of the image directory.
    MountOverlay {
        /// Image name inside the images dir (for an OCI image, the
        /// reference, shown only).
        image: String,
        /// An OCI image's unpacked layers, base first, relative to the
        /// images dir, each opened without following a symlink; empty for
        /// a directory image.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        layers: Vec<PathBuf>,
        /// Upper layer (host path).
        upper: PathBuf,
        /// overlayfs work dir (host path).
        work: PathBuf,
    },
    /// If the root has a /dev directory: a tmpfs on it, a bind of each of
    /// `nodes` the host has, and a tmpfs /dev/shm.
    MountDev {
        /// The tmpfs.
        tmpfs: TmpfsOptions,
        /// Names under /dev.
        nodes: Vec<String>,
        /// The /dev/shm tmpfs.
        shm: TmpfsOptions,
    },
    /// If the running sandboxd binary is visible in the root, cover it
    /// with an empty mode-000 file bound ro,nosuid,noexec.
    MaskOwnBinary,
    /// A client bind mount (or the generated resolv.conf): the source
    /// resolved from `/` with no symlinks, the target in the root, then
    /// remounted nosuid (and ro when asked).
    BindMount(MountSpec),
    /// If the root has a /tmp directory: a tmpfs on it. Before the client
    /// mounts, which may target paths below /tmp.
    MountTmp(TmpfsOptions),
    /// Remount the root with these flags (read-only): the `host` view's
    /// tmpfs, or an OCI image's overlay once every mount point is made.
    RemountRoot(Vec<MountFlag>),
    /// `fork(2)`: one child per process.
    Fork,
    /// `setsid(2)`.
    Setsid,
    /// `fchdir` to the root opened during setup, `chroot(".")`,
    /// `chdir("/")`.
    Chroot,
    /// `close_range(3, ~0)`: only fds 0-2 stay open.
    CloseRange,
    /// Drop every capability from the bounding set but these (uid 0 only).
    DropCapabilities(Vec<u32>),
    /// `prctl(PR_SET_NO_NEW_PRIVS)`.
    NoNewPrivs,
    /// `setrlimit(2)`.
    SetRlimit(Rlimit),
    /// `setgroups(2)`.
    SetGroups(Vec<u32>),
    /// `setgid(2)`.
    SetGid(u32),
    /// `setuid(2)`.
    SetUid(u32),
    /// The working directory, with the payload's permissions.
    Chdir(String),
    /// The default seccomp deny list (Linux).
    Seccomp,
    /// `execve(2)` of the main process.
    Execve(Vec<String>),
}

impl ChrootStep {
    /// Who runs it. No wildcard: a new step must be given a runner here.
    pub fn executor(&self) -> Executor {
        match self {
            Self::CreateDir { .. }
            | Self::MountRootTmpfs(_)
            | Self::BindHostDir { .. }
            | Self::Symlink { .. }
            | Self::Chmod { .. }
            | Self::BindImage { .. }
            | Self::MountLayer { .. }
            | Self::MountOverlay { .. }
            | Self::MountDev { .. }
            | Self::MaskOwnBinary
            | Self::BindMount(_)
            | Self::MountTmp(_)
            | Self::RemountRoot(_) => Executor::Setup,
            Self::Chroot => Executor::Enter,
            Self::Fork
            | Self::Setsid
            | Self::CloseRange
            | Self::DropCapabilities(_)
            | Self::NoNewPrivs
            | Self::SetRlimit(_)
            | Self::SetGroups(_)
            | Self::SetGid(_)
            | Self::SetUid(_)
            | Self::Chdir(_)
            | Self::Seccomp
            | Self::Execve(_) => Executor::Generic,
        }
    }
}

/// The chroot backend's executable plan (the supervisor's configuration).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChrootSetup {
    /// The directory that becomes `/` (a mount point under the sandbox dir,
    /// or the image itself for [`RootBuild::ImageInPlace`]).
    pub root: PathBuf,
    /// The directory holding the image: the daemon's images directory
    /// (trusted configuration), or the parent of a client-given rootfs.
    pub images_dir: PathBuf,
    /// Open `images_dir` without following any symlink (a client-given
    /// rootfs; see `sandboxd_supervisor::sys::open_image_dir`).
    #[serde(default)]
    pub images_dir_no_symlinks: bool,
    /// How the root is built.
    pub build: RootBuild,
    /// Every step, in order: the supervisor runs the [`Executor::Setup`]
    /// ones, and PlanSandbox shows them all.
    pub steps: Vec<ChrootStep>,
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
    /// A child sandbox (`spec.join`): a chroot has no namespaces to share.
    #[error(
        "spec.join: the chroot backend has no namespaces, so sandbox {0}'s network, IPC, hostname and pid namespace cannot be shared with a child (it would get the host's)"
    )]
    Join(String),
    /// An OCI image's layers are mounted as overlay lower directories.
    #[error(
        "spec.image: {0:?} is an OCI image, whose layer chain the chroot backend mounts as an overlay, which it has only on Linux; use a directory image here (docs/images.md)"
    )]
    OciWithoutMounts(String),
    /// An OCI image on a Linux host without overlayfs.
    #[error(
        "spec.image: {0:?} is an OCI image, whose layer chain needs overlayfs, which this host lacks (no \"overlay\" in /proc/filesystems)"
    )]
    OciWithoutOverlay(String),
    /// An OCI reference the daemon did not resolve to layers (it resolves
    /// every OCI image before planning).
    #[error("spec.image: OCI image {0:?} was not resolved to its layers")]
    ImageUnresolved(String),
}

/// The mount point of a sandbox's root.
pub fn root_dir(sandbox: &SandboxPaths) -> PathBuf {
    sandbox.dir.join("rootfs")
}

/// The chroot backend's [`Planner`]: the host facts, and the images
/// directory a directory image's root is built from.
#[derive(Debug, Clone, Copy)]
pub struct ChrootPlanner<'a> {
    /// The images directory (the daemon's configuration).
    pub images_dir: &'a Path,
    /// What the host offers.
    pub facts: &'a HostFacts,
}

impl Planner for ChrootPlanner<'_> {
    const KIND: BackendKind = BackendKind::Chroot;
    type Native = ChrootSetup;
    type Error = PlanError;

    fn matrix(&self) -> Vec<Enforcement> {
        capabilities(self.facts)
    }

    fn rows(&self, spec: &ValidatedSpec) -> Vec<Enforcement> {
        rows(Some(spec), self.facts)
    }

    fn build_unchecked(
        &self,
        spec: &ValidatedSpec,
        sandbox: &SandboxPaths,
    ) -> Result<ChrootSetup, PlanError> {
        build_unchecked(spec, sandbox, self.images_dir, self.facts)
    }

    fn render(setup: &ChrootSetup) -> NativePlan {
        render(setup)
    }
}

/// The plan without the REQUIRED check ([`Planner::build`] adds it): what
/// the supervisor would do.
fn build_unchecked(
    spec: &ValidatedSpec,
    sandbox: &SandboxPaths,
    images_dir: &Path,
    facts: &HostFacts,
) -> Result<ChrootSetup, PlanError> {
    let s = spec.spec();
    if let Some(join) = &s.join {
        return Err(PlanError::Join(join.sandbox_id.clone()));
    }
    let image = s.image().to_owned();
    let images_dir = s.image_dir(images_dir);
    let disk = s.limits.disk_bytes.map(|l| l.value);
    let layers = spec.image_layers().to_vec();
    let oci = !layers.is_empty() || sandboxd_core::oci::is_reference(&image);
    if oci && !facts.linux_mounts {
        return Err(PlanError::OciWithoutMounts(image));
    }
    if oci && layers.is_empty() {
        return Err(PlanError::ImageUnresolved(image));
    }
    if oci && !facts.overlay {
        return Err(PlanError::OciWithoutOverlay(image));
    }
    if !facts.linux_mounts {
        if image == HOST_IMAGE {
            return Err(PlanError::HostImageWithoutMounts);
        }
        if !s.network.dns_servers.is_empty() {
            return Err(PlanError::DnsWithoutMounts);
        }
        return Ok(ChrootSetup {
            root: images_dir.join(&image),
            images_dir: images_dir.to_owned(),
            images_dir_no_symlinks: s.image_dir_no_symlinks(),
            build: RootBuild::ImageInPlace { image },
            steps: process_steps(spec, false),
        });
    }
    let root = root_dir(sandbox);
    let mut steps = vec![ChrootStep::CreateDir {
        path: root.clone(),
        mode: 0o755,
    }];
    let build = if image == HOST_IMAGE {
        steps.push(ChrootStep::MountRootTmpfs(TmpfsOptions::sized(
            &ROOT_TMPFS_FLAGS,
            "755",
            disk,
        )));
        // Host layout paths come from our own probe, and the tmpfs is
        // ours: joining them is safe.
        let in_root = |p: &Path| root.join(p.strip_prefix("/").unwrap_or(p));
        steps.extend(facts.host_layout.iter().map(|entry| match entry {
            HostEntry::Bind(p) => ChrootStep::BindHostDir {
                source: p.clone(),
                target: in_root(p),
            },
            HostEntry::Symlink { path, target } => ChrootStep::Symlink {
                link: in_root(path),
                target: target.clone(),
            },
        }));
        let tmp = root.join("tmp");
        steps.extend([
            ChrootStep::CreateDir {
                path: tmp.clone(),
                mode: 0o1777,
            },
            ChrootStep::Chmod {
                path: tmp,
                mode: 0o1777,
            },
            ChrootStep::CreateDir {
                path: root.join("dev"),
                mode: 0o755,
            },
        ]);
        RootBuild::HostView
    } else if !oci && (s.readonly_rootfs || !facts.overlay) {
        steps.push(ChrootStep::BindImage {
            image: image.clone(),
        });
        RootBuild::ImageReadOnly { image }
    } else {
        // With a disk limit, upper and work live on a tmpfs of that size.
        // An OCI image gets its upper even when read-only (then remounted
        // read-only, last): mount points are created in the upper, never
        // in a layer other images share.
        let base = match disk {
            Some(bytes) => {
                let layer = sandbox.dir.join("layer");
                steps.extend([
                    ChrootStep::CreateDir {
                        path: layer.clone(),
                        mode: 0o700,
                    },
                    ChrootStep::MountLayer {
                        path: layer.clone(),
                        tmpfs: TmpfsOptions::sized(&LAYER_TMPFS_FLAGS, "700", Some(bytes)),
                    },
                ]);
                layer
            }
            None => sandbox.dir.clone(),
        };
        let (upper, work) = (base.join("upper"), base.join("work"));
        steps.extend([
            ChrootStep::CreateDir {
                path: upper.clone(),
                mode: 0o755,
            },
            ChrootStep::CreateDir {
                path: work.clone(),
                mode: 0o700,
            },
            ChrootStep::MountOverlay {
                image: image.clone(),
                layers,
                upper,
                work,
            },
        ]);
        RootBuild::ImageOverlay { image }
    };
    steps.extend([
        ChrootStep::MountDev {
            tmpfs: dev_tmpfs(),
            nodes: DEV_NODES.map(str::to_owned).to_vec(),
            shm: TmpfsOptions::sized(
                &SHM_TMPFS_FLAGS,
                "1777",
                Some(s.limits.shm_bytes.unwrap_or(DEFAULT_SHM_BYTES)),
            ),
        },
        ChrootStep::MountTmp(TmpfsOptions::sized(
            &TMP_TMPFS_FLAGS,
            "1777",
            Some(s.limits.tmp_bytes.unwrap_or(DEFAULT_TMP_BYTES)),
        )),
    ]);
    if build == RootBuild::HostView {
        steps.push(ChrootStep::MaskOwnBinary);
    }
    steps.extend(s.mounts.iter().cloned().map(ChrootStep::BindMount));
    if !s.network.dns_servers.is_empty() {
        // Written by the daemon (prepare); the image must have
        // /etc/resolv.conf for it to cover.
        steps.push(ChrootStep::BindMount(MountSpec {
            source: sandbox.dir.join(RESOLV_CONF).display().to_string(),
            target: "/etc/resolv.conf".to_owned(),
            read_only: true,
        }));
    }
    if s.readonly_rootfs && (build == RootBuild::HostView || oci) {
        steps.push(ChrootStep::RemountRoot(ROOT_RO_FLAGS.to_vec()));
    }
    steps.extend(process_steps(spec, true));
    Ok(ChrootSetup {
        root,
        images_dir: images_dir.to_owned(),
        images_dir_no_symlinks: s.image_dir_no_symlinks(),
        build,
        steps,
    })
}

/// The /dev tmpfs: fixed, it holds only mount points.
fn dev_tmpfs() -> TmpfsOptions {
    TmpfsOptions {
        flags: DEV_TMPFS_FLAGS.to_vec(),
        data: format!(
            "mode=755,size={},nr_inodes={DEV_TMPFS_INODES}",
            tmpfs_size(DEV_TMPFS_BYTES)
        ),
    }
}

/// The steps of each process, in the order the generic supervisor runs
/// them. `seccomp`: this host gets the default filter (Linux).
fn process_steps(spec: &ValidatedSpec, seccomp: bool) -> Vec<ChrootStep> {
    let p = &spec.spec().process;
    let mut steps = vec![
        ChrootStep::Fork,
        ChrootStep::Setsid,
        ChrootStep::Chroot,
        // Right after chroot, before any client path is resolved.
        ChrootStep::CloseRange,
    ];
    if p.user.uid() == 0 {
        steps.push(ChrootStep::DropCapabilities(ROOT_CAPABILITIES.to_vec()));
    }
    steps.push(ChrootStep::NoNewPrivs);
    steps.extend(rlimits(spec).into_iter().map(ChrootStep::SetRlimit));
    steps.extend([
        ChrootStep::SetGroups(p.user.additional_gids.clone()),
        ChrootStep::SetGid(p.user.gid()),
        ChrootStep::SetUid(p.user.uid()),
        ChrootStep::Chdir(p.cwd().to_owned()),
    ]);
    if seccomp {
        // Last before execve.
        steps.push(ChrootStep::Seccomp);
    }
    if !p.argv.is_empty() {
        steps.push(ChrootStep::Execve(p.argv.clone()));
    }
    steps
}

pub use sandboxd_core::backend::RESOLV_CONF;

/// The rlimits a spec maps to.
pub fn rlimits(spec: &ValidatedSpec) -> Vec<Rlimit> {
    // No pids cgroup here: RLIMIT_NPROC stands in for limits.pids.
    Rlimit::of_spec(
        spec,
        &[RlimitKind::Nproc, RlimitKind::Nofile, RlimitKind::As],
    )
}

/// How the writable layer is limited.
const DISK_HOW: &str = "a tmpfs with size= and nr_inodes= holds the writable layer (the \"host\" view's root; a directory or OCI image's overlay upper and work directories)";
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
    let given_net = spec.is_some_and(|s| s.spec().network.mode == NetworkMode::Namespace);
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
                // NAMESPACE is always REQUIRED (validation): refused here.
                Property::Network if given_net => (NotEnforced, "none", "the chroot backend cannot join a network namespace (mode NAMESPACE): the host's network stack is shared"),
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
                Property::CpuWeight => (NotEnforced, "none", "no CPU controller without cgroups: the sandbox's processes compete as part of the daemon's cgroup"),
                Property::OpenFilesLimit if as_root => (BestEffort, "setrlimit(RLIMIT_NOFILE)", "root may raise its own hard limit"),
                Property::OpenFilesLimit => (Enforced, "setrlimit(RLIMIT_NOFILE)", "per process"),
                Property::AddressSpaceLimit if as_root => (BestEffort, "setrlimit(RLIMIT_AS)", "root may raise its own hard limit"),
                Property::AddressSpaceLimit => (Enforced, "setrlimit(RLIMIT_AS)", "per process"),
                Property::DiskLimit if !facts.linux_mounts => (NotEnforced, "none", "no mounts on this OS: the image directory itself is the root, and writes go to it"),
                Property::DiskLimit if no_disk_limit => (NotEnforced, "none", "no disk limit: the spec sets none and the daemon's default is off (disk limit 0); an image's overlay upper directory grows on the state directory's filesystem, the \"host\" view's tmpfs root up to the kernel's default (half of RAM)"),
                Property::DiskLimit if readonly_root => (Enforced, "read-only root", "nothing is written to the root; /tmp and /dev/shm are tmpfs of their own sizes"),
                Property::DiskLimit if as_root => (BestEffort, DISK_HOW, "the process runs as uid 0, which can leave a chroot and write elsewhere on the host"),
                Property::DiskLimit => (Enforced, DISK_HOW, DISK_CAVEATS),
                // uid 0 keeps no CAP_SYS_ADMIN (ROOT_CAPABILITIES), so it
                // cannot remount the root (escape::root_cannot_remount_…).
                Property::ReadonlyRootfs => {
                    let (l, m) = mounts("MS_RDONLY: a read-only bind of a directory image, or a read-only remount of the root (the \"host\" view's tmpfs, an OCI image's overlay)");
                    (l, m, "")
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

/// The display plan (PlanSandbox) for a spec ([`Planner::plan`]).
pub fn plan(
    spec: &ValidatedSpec,
    sandbox: &SandboxPaths,
    images_dir: &Path,
    facts: &HostFacts,
) -> Plan {
    ChrootPlanner { images_dir, facts }.plan(spec, sandbox)
}

/// An overlay's lowerdir list as shown: the image directory, or an OCI
/// image's layers top first (the order overlayfs stacks them).
fn lowerdirs(images_dir: &Path, image: &str, layers: &[PathBuf]) -> String {
    if layers.is_empty() {
        return images_dir.join(image).display().to_string();
    }
    let shown: Vec<String> = layers
        .iter()
        .rev()
        .map(|l| images_dir.join(l).display().to_string())
        .collect();
    shown.join(":")
}

/// The display form of `setup`'s steps: mounts in `mounts`, every other
/// step in `steps`, both in plan order.
fn render(setup: &ChrootSetup) -> NativePlan {
    let root = setup.root.display().to_string();
    let sandbox_dir = setup.root.parent().unwrap_or(&setup.root);
    let shown = |p: &Path| p.display().to_string();
    let at = |p: &str| format!("{root}{p}");
    let flags = |f: &[MountFlag]| f.iter().map(|f| f.as_str().to_owned()).collect();
    let bind = |source: String, target: String, f: &[MountFlag]| PlanMount {
        source,
        target,
        fstype: "bind".into(),
        options: flags(f),
    };
    let tmpfs = |target: String, t: &TmpfsOptions| PlanMount {
        source: "tmpfs".into(),
        target,
        fstype: "tmpfs".into(),
        options: t.display(),
    };
    let mut mounts = Vec::new();
    let mut steps = Vec::new();
    if let RootBuild::ImageInPlace { .. } = setup.build {
        steps.push(Step::new(
            "note",
            &[&"no mounts"],
            "this OS has no bind mounts here: the image directory itself is the root and is writable",
        ));
    }
    for step in &setup.steps {
        match step {
            ChrootStep::CreateDir { path, mode } => {
                steps.push(Step::new("mkdir", &[&shown(path), &format!("{mode:o}")], "created with its parents if missing (mode less the umask)"));
            }
            ChrootStep::MountRootTmpfs(t) => mounts.push(tmpfs(root.clone(), t)),
            ChrootStep::BindHostDir { source, target } => {
                mounts.push(bind(shown(source), shown(target), &BIND_RO_FLAGS));
            }
            ChrootStep::Symlink { link, target } => steps.push(Step::new(
                "symlink",
                &[&shown(target), &shown(link)],
                "mirror the host's merged-/usr links",
            )),
            ChrootStep::Chmod { path, mode } => steps.push(Step::new(
                "chmod",
                &[&shown(path), &format!("{mode:o}")],
                "the /tmp mount point, world-writable (mkdir applies the umask)",
            )),
            ChrootStep::BindImage { image } => mounts.push(bind(
                shown(&setup.images_dir.join(image)),
                root.clone(),
                &IMAGE_RO_FLAGS,
            )),
            ChrootStep::MountLayer { path, tmpfs: t } => mounts.push(tmpfs(shown(path), t)),
            ChrootStep::MountOverlay { image, layers, upper, work } => mounts.push(PlanMount {
                source: "overlay".into(),
                target: root.clone(),
                fstype: "overlay".into(),
                options: vec![
                    format!("lowerdir={}", lowerdirs(&setup.images_dir, image, layers)),
                    format!("upperdir={}", upper.display()),
                    format!("workdir={}", work.display()),
                    MountFlag::Nosuid.as_str().into(),
                    MountFlag::Nodev.as_str().into(),
                ],
            }),
            ChrootStep::MountDev { tmpfs: t, nodes, shm } => {
                mounts.push(tmpfs(at("/dev"), t));
                for node in nodes {
                    // Device nodes keep their own flags (the /dev tmpfs
                    // around them is nosuid,noexec).
                    mounts.push(bind(format!("/dev/{node}"), at(&format!("/dev/{node}")), &[]));
                }
                mounts.push(tmpfs(at("/dev/shm"), shm));
            }
            ChrootStep::MaskOwnBinary => mounts.push(bind(
                shown(&sandbox_dir.join("masked")),
                format!("{root}/<sandboxd binary, if shown>"),
                &[MountFlag::Rdonly, MountFlag::Nosuid, MountFlag::Noexec],
            )),
            ChrootStep::BindMount(m) => {
                let f: &[MountFlag] = if m.read_only { &BIND_RO_FLAGS } else { &[MountFlag::Nosuid] };
                mounts.push(bind(m.source.clone(), format!("{root}{} (resolved in root)", m.target), f));
            }
            ChrootStep::MountTmp(t) => mounts.push(tmpfs(at("/tmp (if the root has /tmp)"), t)),
            ChrootStep::RemountRoot(f) => {
                let names: Vec<String> = flags(f);
                steps.push(Step::new("remount", &[&root, &names.join(",")], "read-only root"));
            }
            ChrootStep::Fork => steps.push(Step::new(
                "fork",
                &[],
                "one child per process; the supervisor stays outside and reaps",
            )),
            ChrootStep::Setsid => steps.push(Step::new(
                "setsid",
                &[],
                "own session and process group, so a stop or timeout kills the tree",
            )),
            ChrootStep::Chroot => {
                steps.push(Step::new("chroot", &[&root], "the image becomes /"));
                steps.push(Step::new("chdir", &[&"/"], "no directory handle left outside the root"));
            }
            ChrootStep::CloseRange => steps.push(Step::new(
                "close_range",
                &[&3, &"~0"],
                "only fds 0-2 stay open, before any client path is resolved",
            )),
            ChrootStep::DropCapabilities(keep) => steps.push(Step::new(
                "capbset_drop",
                &[&"all but", &format!("{keep:?}")],
                "uid 0 keeps no CAP_SYS_CHROOT, CAP_SYS_ADMIN or CAP_MKNOD",
            )),
            ChrootStep::NoNewPrivs => steps.push(Step::new(
                "no_new_privs",
                &[],
                "execve can never gain privileges",
            )),
            ChrootStep::SetRlimit(l) => {
                steps.push(Step::new(
                    "setrlimit",
                    &[&l.kind.name(), &l.value],
                    l.kind.purpose(),
                ));
            }
            ChrootStep::SetGroups(groups) => steps.push(Step::new(
                "setgroups",
                &[&format!("{groups:?}")],
                "supplementary groups",
            )),
            ChrootStep::SetGid(gid) => steps.push(Step::new("setgid", &[gid], "drop group")),
            ChrootStep::SetUid(uid) => steps.push(Step::new(
                "setuid",
                &[uid],
                "drop user (non-root by default)",
            )),
            ChrootStep::Chdir(cwd) => steps.push(Step::new(
                "chdir",
                &[cwd],
                "working directory, with the payload's permissions; on Linux openat2(RESOLVE_IN_ROOT|RESOLVE_NO_MAGICLINKS) + fchdir",
            )),
            ChrootStep::Seccomp => steps.push(Step::new(
                "seccomp",
                &[&"deny list"],
                "EPERM for keyrings, bpf, perf, module and kexec calls, the mount API, setns, and new user namespaces; ENOSYS for clone3 and x32 calls",
            )),
            ChrootStep::Execve(argv) => steps.push(Step::new(
                "execve",
                &[&argv.join(" ")],
                "the main process",
            )),
        }
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

    /// A child (`spec.join`) is refused with the reason, before anything
    /// is planned: a chroot has no namespaces to share.
    #[test]
    fn a_child_sandbox_is_refused() {
        let child = spec(|s| {
            s.join = Some(sandboxd_core::spec::Join {
                sandbox_id: "fedcba9876543210".into(),
                network: true,
                ipc: true,
                uts: true,
                pid: true,
            });
        });
        let r = refusals(&child, &HostFacts::assumed());
        assert_eq!(r.len(), 1, "{r:?}");
        assert!(
            r[0].starts_with("spec.join:") && r[0].contains("fedcba9876543210"),
            "{r:?}"
        );
        let planner = ChrootPlanner {
            images_dir: Path::new("/images"),
            facts: &HostFacts::assumed(),
        };
        assert!(matches!(
            planner.build(&child, &paths()),
            Err(sandboxd_core::BuildError::Plan(PlanError::Join(_)))
        ));
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
                "network namespace (Linux's)",
                |s| {
                    s.network = NetworkPolicy {
                        mode: NetworkMode::Namespace,
                        namespace_path: "/var/run/netns/cni-1".into(),
                        ..Default::default()
                    }
                },
                &["network"],
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
                "cpu weight",
                |s| {
                    s.limits.cpu_weight = Some(Limit {
                        value: 400,
                        requirement: Requirement::Unspecified,
                    })
                },
                &["cpu_weight"],
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
        let host = build_unchecked(&spec(|_| {}), &paths(), img, &facts).expect("host");
        assert_eq!(host.build, RootBuild::HostView);
        assert_eq!(host.root, paths().dir.join("rootfs"));
        let ro = build_unchecked(
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
        assert!(
            ro.steps
                .iter()
                .any(|s| matches!(s, ChrootStep::MountTmp(_)))
        );
        let rw = build_unchecked(&spec(|s| s.image = "alpine".into()), &paths(), img, &facts)
            .expect("rw");
        assert!(matches!(rw.build, RootBuild::ImageOverlay { .. }));
        let bare = build_unchecked(
            &spec(|s| s.image = "alpine".into()),
            &paths(),
            img,
            &no_mounts,
        )
        .expect("bare");
        assert_eq!(bare.root, PathBuf::from("/images/alpine"));
        assert_eq!(
            build_unchecked(&spec(|_| {}), &paths(), img, &no_mounts),
            Err(PlanError::HostImageWithoutMounts)
        );
    }

    fn no_mounts() -> HostFacts {
        HostFacts {
            linux_mounts: false,
            overlay: false,
            host_layout: vec![],
        }
    }

    fn steps_of(s: &ValidatedSpec, facts: &HostFacts, runner: Executor) -> Vec<ChrootStep> {
        build_unchecked(s, &paths(), Path::new("/images"), facts)
            .expect("plan")
            .steps
            .into_iter()
            .filter(|s| s.executor() == runner)
            .collect()
    }

    #[test]
    fn setup_steps_build_each_kind_of_root() {
        use ChrootStep::*;
        let d = paths().dir;
        let root = d.join("rootfs");
        let dir = |p: &Path, mode| CreateDir {
            path: p.to_owned(),
            mode,
        };
        // The defaults: a 1 GiB disk limit, 256 MiB /tmp, 64 MiB /dev/shm.
        let dev = MountDev {
            tmpfs: TmpfsOptions::new(&DEV_TMPFS_FLAGS, "mode=755,size=64k,nr_inodes=256"),
            nodes: DEV_NODES.map(str::to_owned).to_vec(),
            shm: TmpfsOptions::new(&SHM_TMPFS_FLAGS, "mode=1777,size=64m,nr_inodes=8192"),
        };
        let tmp = MountTmp(TmpfsOptions::new(
            &TMP_TMPFS_FLAGS,
            "mode=1777,size=256m,nr_inodes=32768",
        ));
        let layer = d.join("layer");
        let image = || "alpine".to_owned();
        let host_view = || {
            let link = |l: &str, t: &str| Symlink {
                link: root.join(l),
                target: t.into(),
            };
            vec![
                dir(&root, 0o755),
                MountRootTmpfs(TmpfsOptions::new(
                    &ROOT_TMPFS_FLAGS,
                    "mode=755,size=1g,nr_inodes=131072",
                )),
                BindHostDir {
                    source: "/usr".into(),
                    target: root.join("usr"),
                },
                BindHostDir {
                    source: "/etc".into(),
                    target: root.join("etc"),
                },
                link("bin", "usr/bin"),
                link("sbin", "usr/sbin"),
                link("lib", "usr/lib"),
                link("lib64", "usr/lib64"),
                dir(&root.join("tmp"), 0o1777),
                Chmod {
                    path: root.join("tmp"),
                    mode: 0o1777,
                },
                dir(&root.join("dev"), 0o755),
                dev.clone(),
                tmp.clone(),
                MaskOwnBinary,
            ]
        };
        let no_overlay = HostFacts {
            overlay: false,
            ..HostFacts::assumed()
        };
        type Case = (
            &'static str,
            fn(&mut SandboxSpec),
            HostFacts,
            Vec<ChrootStep>,
        );
        let cases: Vec<Case> = vec![
            ("host view", |_| {}, HostFacts::assumed(), host_view()),
            (
                "read-only host view with a mount and DNS",
                |s| {
                    s.readonly_rootfs = true;
                    s.mounts = vec![MountSpec {
                        source: "/srv/data".into(),
                        target: "/data".into(),
                        read_only: false,
                    }];
                    s.network.dns_servers = vec!["192.0.2.53".into()];
                },
                HostFacts::assumed(),
                [
                    host_view(),
                    vec![
                        BindMount(MountSpec {
                            source: "/srv/data".into(),
                            target: "/data".into(),
                            read_only: false,
                        }),
                        BindMount(MountSpec {
                            source: d.join(RESOLV_CONF).display().to_string(),
                            target: "/etc/resolv.conf".into(),
                            read_only: true,
                        }),
                        RemountRoot(ROOT_RO_FLAGS.to_vec()),
                    ],
                ]
                .concat(),
            ),
            (
                "read-only image: a read-only bind, /tmp a tmpfs, no second remount",
                |s| {
                    s.image = "alpine".into();
                    s.readonly_rootfs = true;
                },
                HostFacts::assumed(),
                vec![
                    dir(&root, 0o755),
                    BindImage { image: image() },
                    dev.clone(),
                    tmp.clone(),
                ],
            ),
            (
                "writable image: an overlay on the writable layer, mounted first",
                |s| s.image = "alpine".into(),
                HostFacts::assumed(),
                vec![
                    dir(&root, 0o755),
                    dir(&layer, 0o700),
                    MountLayer {
                        path: layer.clone(),
                        tmpfs: TmpfsOptions::new(
                            &LAYER_TMPFS_FLAGS,
                            "mode=700,size=1g,nr_inodes=131072",
                        ),
                    },
                    dir(&layer.join("upper"), 0o755),
                    dir(&layer.join("work"), 0o700),
                    MountOverlay {
                        image: image(),
                        layers: vec![],
                        upper: layer.join("upper"),
                        work: layer.join("work"),
                    },
                    dev.clone(),
                    tmp.clone(),
                ],
            ),
            (
                "writable image without overlayfs: a read-only bind",
                |s| s.image = "alpine".into(),
                no_overlay,
                vec![
                    dir(&root, 0o755),
                    BindImage { image: image() },
                    dev.clone(),
                    tmp.clone(),
                ],
            ),
            (
                "no mounts: the image directory itself",
                |s| {
                    s.image = "alpine".into();
                    s.readonly_rootfs = true;
                },
                no_mounts(),
                vec![],
            ),
        ];
        for (what, edit, facts, want) in cases {
            assert_eq!(
                steps_of(&spec(edit), &facts, Executor::Setup),
                want,
                "case {what}"
            );
        }
    }

    #[test]
    fn an_oci_image_is_its_layer_chain_under_the_sandboxs_upper() {
        use ChrootStep::*;
        let d = paths().dir;
        let root = d.join("rootfs");
        let layer = d.join("layer");
        let layers: Vec<PathBuf> = ["a", "b", "c"]
            .iter()
            .map(|h| PathBuf::from(format!(".oci/layers/sha256/{h}")))
            .collect();
        let oci = |s: &mut SandboxSpec| {
            s.image =
                "local/app@sha256:0000000000000000000000000000000000000000000000000000000000000000"
                    .into()
        };
        let ro = |s: &mut SandboxSpec| {
            s.image =
                "local/app@sha256:0000000000000000000000000000000000000000000000000000000000000000"
                    .into();
            s.readonly_rootfs = true;
        };
        let overlay = |layers: &[PathBuf]| MountOverlay {
            image:
                "local/app@sha256:0000000000000000000000000000000000000000000000000000000000000000"
                    .into(),
            layers: layers.to_vec(),
            upper: layer.join("upper"),
            work: layer.join("work"),
        };
        let root_steps = |layers: &[PathBuf]| {
            vec![
                CreateDir {
                    path: root.clone(),
                    mode: 0o755,
                },
                CreateDir {
                    path: layer.clone(),
                    mode: 0o700,
                },
                MountLayer {
                    path: layer.clone(),
                    tmpfs: TmpfsOptions::new(
                        &LAYER_TMPFS_FLAGS,
                        "mode=700,size=1g,nr_inodes=131072",
                    ),
                },
                CreateDir {
                    path: layer.join("upper"),
                    mode: 0o755,
                },
                CreateDir {
                    path: layer.join("work"),
                    mode: 0o700,
                },
                overlay(layers),
            ]
        };
        type Case = (
            &'static str,
            fn(&mut SandboxSpec),
            Vec<PathBuf>,
            HostFacts,
            Result<(Vec<ChrootStep>, bool), PlanError>,
        );
        let one = vec![layers[0].clone()];
        let cases: Vec<Case> = vec![
            (
                "three layers, base first: one overlay on the writable layer",
                oci,
                layers.clone(),
                HostFacts::assumed(),
                Ok((root_steps(&layers), false)),
            ),
            (
                "read-only: the same overlay, remounted read-only last",
                ro,
                layers.clone(),
                HostFacts::assumed(),
                Ok((root_steps(&layers), true)),
            ),
            (
                "read-only with one layer",
                ro,
                one.clone(),
                HostFacts::assumed(),
                Ok((root_steps(&one), true)),
            ),
            (
                "no mounts (not Linux): refused, writable",
                oci,
                layers.clone(),
                no_mounts(),
                Err(PlanError::OciWithoutMounts("local/app@sha256:0000000000000000000000000000000000000000000000000000000000000000".into())),
            ),
            (
                "no mounts (not Linux): refused, read-only",
                ro,
                layers.clone(),
                no_mounts(),
                Err(PlanError::OciWithoutMounts("local/app@sha256:0000000000000000000000000000000000000000000000000000000000000000".into())),
            ),
            (
                "no overlayfs: refused",
                oci,
                layers.clone(),
                HostFacts {
                    overlay: false,
                    ..HostFacts::assumed()
                },
                Err(PlanError::OciWithoutOverlay("local/app@sha256:0000000000000000000000000000000000000000000000000000000000000000".into())),
            ),
            (
                "a reference the daemon did not resolve",
                oci,
                vec![],
                HostFacts::assumed(),
                Err(PlanError::ImageUnresolved("local/app@sha256:0000000000000000000000000000000000000000000000000000000000000000".into())),
            ),
        ];
        for (what, edit, layers, facts, want) in cases {
            let s = spec(edit).with_image_layers(layers);
            let got = build_unchecked(&s, &paths(), Path::new("/images"), &facts);
            let want = match want {
                Err(e) => {
                    assert_eq!(got, Err(e), "case {what}");
                    continue;
                }
                Ok(w) => w,
            };
            let got = got.unwrap_or_else(|e| panic!("case {what}: {e}"));
            assert_eq!(
                got.build,
                RootBuild::ImageOverlay {
                    image: "local/app@sha256:0000000000000000000000000000000000000000000000000000000000000000".into()
                },
                "case {what}"
            );
            let setup: Vec<ChrootStep> = got
                .steps
                .iter()
                .filter(|s| s.executor() == Executor::Setup)
                .cloned()
                .collect();
            let (root_want, readonly) = want;
            assert_eq!(setup[..root_want.len()], root_want[..], "case {what}");
            assert_eq!(
                setup.last() == Some(&RemountRoot(ROOT_RO_FLAGS.to_vec())),
                readonly,
                "case {what}: {setup:?}"
            );
        }
        // The non-Linux refusal is a clear FAILED_PRECONDITION naming the image.
        let s = spec(oci).with_image_layers(layers.clone());
        let e = ChrootPlanner {
            images_dir: Path::new("/images"),
            facts: &no_mounts(),
        }
        .build(&s, &paths())
        .expect_err("refused");
        let e = sandboxd_core::BackendError::from(e);
        assert!(
            matches!(e, sandboxd_core::BackendError::Unsupported(_)),
            "{e:?}"
        );
        assert!(
            e.to_string().contains(
                "local/app@sha256:0000000000000000000000000000000000000000000000000000000000000000"
            ) && e.to_string().contains("only on Linux"),
            "{e}"
        );
        // The rendered overlay lists the layers top first.
        let shown = plan(&s, &paths(), Path::new("/images"), &HostFacts::assumed());
        let NativePlan::Chroot { mounts, .. } = shown.native else {
            panic!("chroot plan")
        };
        let o = mounts
            .iter()
            .find(|m| m.fstype == "overlay")
            .expect("overlay");
        assert_eq!(
            o.options[0],
            "lowerdir=/images/.oci/layers/sha256/c:/images/.oci/layers/sha256/b:/images/.oci/layers/sha256/a"
        );
    }

    #[test]
    fn process_steps_close_descriptors_right_after_chroot() {
        use ChrootStep::*;
        type Case = (
            &'static str,
            fn(&mut SandboxSpec),
            HostFacts,
            Vec<ChrootStep>,
        );
        let cases: Vec<Case> = vec![
            (
                "default",
                |_| {},
                HostFacts::assumed(),
                vec![
                    Fork,
                    Setsid,
                    Chroot,
                    CloseRange,
                    NoNewPrivs,
                    SetGroups(vec![]),
                    SetGid(65534),
                    SetUid(65534),
                    Chdir("/".into()),
                    Seccomp,
                    Execve(vec!["/bin/true".into()]),
                ],
            ),
            (
                "uid 0 with limits in /srv",
                |s| {
                    s.process.user.uid = Some(0);
                    s.process.user.gid = Some(0);
                    s.process.cwd = "/srv".into();
                    s.limits.open_files = Some(Limit {
                        value: 256,
                        requirement: Requirement::Required,
                    });
                },
                HostFacts::assumed(),
                vec![
                    Fork,
                    Setsid,
                    Chroot,
                    CloseRange,
                    DropCapabilities(ROOT_CAPABILITIES.to_vec()),
                    NoNewPrivs,
                    SetRlimit(Rlimit {
                        kind: RlimitKind::Nofile,
                        value: 256,
                    }),
                    SetGroups(vec![]),
                    SetGid(0),
                    SetUid(0),
                    Chdir("/srv".into()),
                    Seccomp,
                    Execve(vec!["/bin/true".into()]),
                ],
            ),
            (
                "no mounts: no seccomp filter",
                |s| s.image = "alpine".into(),
                no_mounts(),
                vec![
                    Fork,
                    Setsid,
                    Chroot,
                    CloseRange,
                    NoNewPrivs,
                    SetGroups(vec![]),
                    SetGid(65534),
                    SetUid(65534),
                    Chdir("/".into()),
                    Execve(vec!["/bin/true".into()]),
                ],
            ),
        ];
        for (what, edit, facts, want) in cases {
            let s = spec(edit);
            let setup = build_unchecked(&s, &paths(), Path::new("/images"), &facts).expect("plan");
            // Setup steps first, then the per-process ones.
            let first_process = setup
                .steps
                .iter()
                .position(|s| s.executor() != Executor::Setup)
                .expect("process steps");
            assert!(
                setup.steps[first_process..]
                    .iter()
                    .all(|s| s.executor() != Executor::Setup),
                "case {what}"
            );
            assert_eq!(setup.steps[first_process..], want[..], "case {what}");
        }
    }

    #[test]
    fn the_rendered_plan_shows_the_executed_options() {
        let s = spec(|s| s.readonly_rootfs = true);
        let setup = build_unchecked(&s, &paths(), Path::new("/images"), &HostFacts::assumed())
            .expect("plan");
        let p = plan(&s, &paths(), Path::new("/images"), &HostFacts::assumed());
        let NativePlan::Chroot { steps, mounts } = p.native else {
            panic!("chroot plan")
        };
        let root = paths().dir.join("rootfs").display().to_string();
        let options = |target: &str| {
            mounts
                .iter()
                .find(|m| m.target == target)
                .map(|m| m.options.clone())
                .expect(target)
        };
        // Every tmpfs the runtime mounts, with the options it passes.
        let executed: Vec<(String, &TmpfsOptions)> = setup
            .steps
            .iter()
            .flat_map(|step| match step {
                ChrootStep::MountRootTmpfs(t) => vec![(root.clone(), t)],
                ChrootStep::MountDev { tmpfs, shm, .. } => {
                    vec![
                        (format!("{root}/dev"), tmpfs),
                        (format!("{root}/dev/shm"), shm),
                    ]
                }
                ChrootStep::MountTmp(t) => vec![(format!("{root}/tmp (if the root has /tmp)"), t)],
                _ => vec![],
            })
            .collect();
        assert_eq!(executed.len(), 4, "{executed:?}");
        for (target, t) in executed {
            assert_eq!(options(&target), t.display(), "{target}");
        }
        assert!(mounts.iter().any(|m| m.target.contains("sandboxd binary")));
        let remount = steps.iter().find(|s| s.op == "remount").expect("remount");
        assert_eq!(remount.args, vec![root, "ro,nosuid,nodev".to_owned()]);
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
        let setup = build_unchecked(&s, &paths(), Path::new("/images"), &facts).expect("plan");
        let Some((upper, work)) = setup.steps.iter().find_map(|s| match s {
            ChrootStep::MountOverlay { upper, work, .. } => Some((upper.clone(), work.clone())),
            _ => None,
        }) else {
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
        let setup = build_unchecked(&s, &paths(), Path::new("/images"), &facts).expect("plan");
        assert!(
            !setup
                .steps
                .iter()
                .any(|s| matches!(s, ChrootStep::MountLayer { .. })),
            "{:?}",
            setup.steps
        );
        assert!(setup.steps.contains(&ChrootStep::MountOverlay {
            image: "alpine".into(),
            layers: vec![],
            upper: paths().dir.join("upper"),
            work: paths().dir.join("work"),
        }));
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
