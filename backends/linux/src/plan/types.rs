//! The typed, serializable executable plan the runtime supervisor executes.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::IdRange;

/// A namespace the sandbox gets, in creation order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Namespace {
    /// `CLONE_NEWUSER`: unshared last, by pid 1 once the root is built, so
    /// the sandbox's root owns none of the other namespaces.
    User,
    /// `CLONE_NEWNS`: always.
    Mount,
    /// `CLONE_NEWPID`.
    Pid,
    /// `CLONE_NEWUTS`.
    Uts,
    /// `CLONE_NEWIPC`.
    Ipc,
    /// `CLONE_NEWNET`.
    Net,
    /// `CLONE_NEWCGROUP`: unshared by the child after it was placed in its
    /// cgroup, so that cgroup becomes its root.
    Cgroup,
}

impl Namespace {
    /// The clone flag's name.
    pub fn flag(self) -> &'static str {
        match self {
            Self::User => "CLONE_NEWUSER",
            Self::Mount => "CLONE_NEWNS",
            Self::Pid => "CLONE_NEWPID",
            Self::Uts => "CLONE_NEWUTS",
            Self::Ipc => "CLONE_NEWIPC",
            Self::Net => "CLONE_NEWNET",
            Self::Cgroup => "CLONE_NEWCGROUP",
        }
    }
}

/// One `mount(2)` flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MountFlag {
    /// `MS_RDONLY`. On a bind the runtime follows up with
    /// `MS_REMOUNT|MS_BIND|MS_RDONLY`, as the kernel ignores it on the bind.
    Rdonly,
    /// `MS_NOSUID`.
    Nosuid,
    /// `MS_NODEV`.
    Nodev,
    /// `MS_NOEXEC`.
    Noexec,
    /// `MS_BIND`.
    Bind,
    /// `MS_REMOUNT`.
    Remount,
}

impl MountFlag {
    /// The mount(8) option name.
    pub fn option(self) -> &'static str {
        match self {
            Self::Rdonly => "ro",
            Self::Nosuid => "nosuid",
            Self::Nodev => "nodev",
            Self::Noexec => "noexec",
            Self::Bind => "bind",
            Self::Remount => "remount",
        }
    }
}

/// Where a mount comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MountSource {
    /// A kernel filesystem with no backing path ("proc", "tmpfs", ...).
    Pseudo(String),
    /// A host path. Client mount sources are opened beneath their allowed
    /// root with `openat2(RESOLVE_IN_ROOT)`, never string-joined.
    Host(PathBuf),
    /// An image, looked up by name in the images directory without
    /// following symlinks.
    Image(String),
    /// An overlay of an image with a private writable layer.
    Overlay {
        /// Image name (lower layer; the reference of an OCI image).
        image: String,
        /// An OCI image's layers (relative to the images dir, base first):
        /// the lower directories instead of the image directory.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        layers: Vec<PathBuf>,
        /// Upper directory, under the sandbox's directory (inside `layer`
        /// when there is one).
        upper: PathBuf,
        /// Overlay work directory, beside `upper`.
        work: PathBuf,
        /// The size-limited tmpfs holding `upper` and `work`; `None`: they
        /// are on the state directory's filesystem, unbounded.
        layer: Option<Layer>,
    },
    /// A path already inside the new root (self-binds, remounts).
    InRoot(String),
}

/// A tmpfs mounted on a directory of the sandbox's own (a host path), in
/// pid 1's private mount namespace after `MakePrivate`, so the host never
/// sees it and it goes away with the namespace. It holds the overlay's
/// upper and work directories: its `size=` is the disk limit. The overlay
/// is then mounted on the same directory, over it: overlayfs keeps its own
/// reference to the upper, so the layer needs no path once it is covered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layer {
    /// The mount point: the root's, `<sandbox dir>/root`.
    pub dir: PathBuf,
    /// Its flags.
    pub flags: Vec<MountFlag>,
    /// tmpfs data ("mode=755", "size=1g", "nr_inodes=131072").
    pub data: Vec<String>,
}

/// One mount under the new root, performed before `pivot_root`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    /// Source.
    pub source: MountSource,
    /// Absolute path inside the sandbox ("/" is the new root itself),
    /// resolved with `openat2(RESOLVE_IN_ROOT)` under the new root; created
    /// when missing and the root is writable.
    pub target: String,
    /// Filesystem type; `None` for binds and remounts.
    pub fstype: Option<String>,
    /// Flags.
    pub flags: Vec<MountFlag>,
    /// Filesystem data ("mode=755").
    pub data: Vec<String>,
    /// Skip, rather than fail, when the target does not exist (masks of
    /// kernel files that depend on the kernel's configuration).
    pub if_exists: bool,
    /// How the resolved target is checked. `true` (a client's bind, the
    /// resolv.conf bind): it may follow the image's symlinks inside the root
    /// but must not land under [`crate::plan::RESERVED_TARGETS`] (the string
    /// can name `/proc` through `/pp -> /proc`). `false` (the sandbox's own
    /// mounts): it must resolve to exactly `target`, so an image symlink
    /// such as `/proc -> /etc` or `/dev -> /proc` cannot move them.
    #[serde(default)]
    pub client: bool,
}

/// One operation building the root, in order.
// A plan is built once per create and holds a few dozen ops: boxing the
// mount variant would buy nothing but indirection.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RootOp {
    /// `mount(NULL, "/", NULL, MS_REC|MS_PRIVATE)`: nothing mounted in the
    /// sandbox propagates to the host, and host mount events do not reach it.
    MakePrivate,
    /// A mount.
    Mount(Mount),
    /// A symlink inside the new root (merged-/usr links of the "host" image).
    Symlink {
        /// Absolute path of the link inside the sandbox.
        path: String,
        /// What it points to.
        target: String,
    },
    /// A character device node of the sandbox's own (`mknodat(2)`, then
    /// mode 0666) in its private /dev tmpfs: not a bind of the host's node,
    /// so a chmod or chown inside never reaches the host's inode.
    Device {
        /// Absolute path inside the sandbox.
        path: String,
        /// Major number.
        major: u32,
        /// Minor number.
        minor: u32,
    },
}

/// One cgroup file write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CgroupWrite {
    /// The file (absolute host path).
    pub file: PathBuf,
    /// What is written.
    pub value: String,
}

/// The sandbox's cgroups: `sandboxd/<id>` under each hierarchy used.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CgroupPlan {
    /// Directories to create (parents included), one per hierarchy; every
    /// process of the sandbox joins each.
    pub dirs: Vec<PathBuf>,
    /// Writes, in order, before any sandbox code runs.
    pub writes: Vec<CgroupWrite>,
}

/// A uid/gid map for the user namespace: sandbox ids `0..count` are host ids
/// `host_start..host_start+count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdMap {
    /// The range.
    pub range: IdRange,
}

/// The capabilities the payload keeps (bounding, permitted, effective):
/// Docker's default set minus `NET_RAW` (no raw sockets) and `MKNOD`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[allow(missing_docs)]
pub enum Capability {
    Chown,
    DacOverride,
    Fowner,
    Fsetid,
    Kill,
    Setgid,
    Setuid,
    Setpcap,
    NetBindService,
    SysChroot,
    Mknod,
    AuditWrite,
    Setfcap,
}

impl Capability {
    /// The default set, in capability-number order.
    ///
    /// `CAP_MKNOD` is not in it: without a devices cgroup a root payload
    /// could create and open a node for the host's disk.
    pub const DEFAULT: [Capability; 12] = [
        Self::Chown,
        Self::DacOverride,
        Self::Fowner,
        Self::Fsetid,
        Self::Kill,
        Self::Setgid,
        Self::Setuid,
        Self::Setpcap,
        Self::NetBindService,
        Self::SysChroot,
        Self::AuditWrite,
        Self::Setfcap,
    ];

    /// The kernel's number (linux/capability.h; stable ABI).
    pub fn number(self) -> u32 {
        match self {
            Self::Chown => 0,
            Self::DacOverride => 1,
            Self::Fowner => 3,
            Self::Fsetid => 4,
            Self::Kill => 5,
            Self::Setgid => 6,
            Self::Setuid => 7,
            Self::Setpcap => 8,
            Self::NetBindService => 10,
            Self::SysChroot => 18,
            Self::Mknod => 27,
            Self::AuditWrite => 29,
            Self::Setfcap => 31,
        }
    }

    /// "CAP_CHOWN".
    pub fn name(self) -> &'static str {
        match self {
            Self::Chown => "CAP_CHOWN",
            Self::DacOverride => "CAP_DAC_OVERRIDE",
            Self::Fowner => "CAP_FOWNER",
            Self::Fsetid => "CAP_FSETID",
            Self::Kill => "CAP_KILL",
            Self::Setgid => "CAP_SETGID",
            Self::Setuid => "CAP_SETUID",
            Self::Setpcap => "CAP_SETPCAP",
            Self::NetBindService => "CAP_NET_BIND_SERVICE",
            Self::SysChroot => "CAP_SYS_CHROOT",
            Self::Mknod => "CAP_MKNOD",
            Self::AuditWrite => "CAP_AUDIT_WRITE",
            Self::Setfcap => "CAP_SETFCAP",
        }
    }
}

pub use sandboxd_core::backend::{Rlimit, RlimitKind};

/// Who runs a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Actor {
    /// The per-sandbox supervisor, outside the namespaces.
    Supervisor,
    /// The sandbox's first process (pid 1 in its pid namespace), before it
    /// becomes the reaper or the payload.
    Init,
    /// The payload process, after it was forked from the reaper (or, in INIT
    /// mode, pid 1 itself).
    Payload,
}

/// One step of the runtime, in order. Data a step needs is in it or in the
/// plan's `namespaces`, `mounts` and `cgroups`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinuxStep {
    /// Create the cgroup directories and do the writes.
    CreateCgroups,
    /// A child sandbox (`spec.join`): `pidfd_open` the parent's pid 1,
    /// check it is still the parent supervisor's child, and
    /// `setns(pidfd, ...)` into the namespaces shared with it, so pid 1 is
    /// cloned into them (without their `CLONE_NEW*` flags).
    JoinParent,
    /// `clone(2)` with the namespace flags except `CLONE_NEWCGROUP`; the
    /// child waits on a sync pipe until the supervisor releases it.
    Clone,
    /// Write `/proc/<pid 1>/uid_map` and `gid_map` once pid 1 has unshared its
    /// user namespace (by the host's root, so setgroups stays allowed).
    WriteIdMaps(IdMap),
    /// pid 1 moves itself into every cgroup directory (made by the
    /// supervisor while it mounts; runtime::join_cgroups), before the
    /// pivot hides the host's cgroup paths and before anything of the
    /// sandbox runs.
    JoinCgroups,
    /// `unshare(CLONE_NEWCGROUP)`, once the child is in its cgroup.
    UnshareCgroup,
    /// `unshare(CLONE_NEWUSER)` and become its root: last, after the root
    /// is built and pivoted.
    UnshareUser,
    /// Perform the plan's `mounts` in order.
    Mounts,
    /// `sethostname(2)`.
    SetHostname(String),
    /// `pivot_root(".", ".")` from inside the new root.
    PivotRoot,
    /// `umount2(".", MNT_DETACH)`: drop the old root stacked under the new.
    DetachOldRoot,
    /// Bring `lo` up (SIOCSIFFLAGS) in the new network namespace.
    LoopbackUp,
    /// `setns(CLONE_NEWNET)` into the namespace the daemon prepared and
    /// pinned at this path (RESTRICTED), before anything else.
    JoinNetns(PathBuf),
    /// `setns(CLONE_NEWNET)` into the given namespace (NAMESPACE) through
    /// the descriptor the daemon opened and checked (the path is shown,
    /// never reopened), before anything else.
    JoinGivenNetns(PathBuf),
    /// pid 1 stays a minimal reaper and forks the payload.
    ForkPayload,
    /// pid 1 stays a reaper with no payload (IDLE); work enters with Exec.
    Idle,
    /// Drop every capability not listed from the bounding, inheritable and
    /// ambient sets; keep these as permitted and effective.
    Capabilities(Vec<Capability>),
    /// `prctl(PR_SET_NO_NEW_PRIVS, 1)`.
    NoNewPrivs,
    /// Install the default seccomp deny list (last before execve).
    Seccomp,
    /// `setrlimit(2)`.
    SetRlimit(Rlimit),
    /// `setgroups(2)`.
    SetGroups(Vec<u32>),
    /// `setgid(2)`.
    SetGid(u32),
    /// `setuid(2)`.
    SetUid(u32),
    /// Enter the working directory: `openat2(RESOLVE_IN_ROOT |
    /// RESOLVE_NO_MAGICLINKS)` from the sandbox's root, then `fchdir(2)`.
    Chdir(String),
    /// `close_range(3, ~0, 0)` (the close-on-exec error pipe excepted),
    /// before any client path is resolved.
    CloseRange,
    /// Find the program as execvp would, each candidate opened with
    /// `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`, then
    /// `execveat(fd, "", AT_EMPTY_PATH)`.
    Execve {
        /// Program and arguments.
        argv: Vec<String>,
        /// Environment.
        env: Vec<String>,
    },
}

impl LinuxStep {
    /// Who runs it.
    pub fn actor(&self) -> Actor {
        match self {
            Self::CreateCgroups | Self::JoinParent | Self::Clone | Self::WriteIdMaps(_) => {
                Actor::Supervisor
            }
            Self::JoinCgroups
            | Self::UnshareCgroup
            | Self::UnshareUser
            | Self::Mounts
            | Self::SetHostname(_)
            | Self::PivotRoot
            | Self::DetachOldRoot
            | Self::LoopbackUp
            | Self::JoinNetns(_)
            | Self::JoinGivenNetns(_)
            | Self::ForkPayload
            | Self::Idle => Actor::Init,
            Self::Capabilities(_)
            | Self::NoNewPrivs
            | Self::Seccomp
            | Self::SetRlimit(_)
            | Self::SetGroups(_)
            | Self::SetGid(_)
            | Self::SetUid(_)
            | Self::Chdir(_)
            | Self::CloseRange
            | Self::Execve { .. } => Actor::Payload,
        }
    }
}

/// The network the sandbox gets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Network {
    /// A new network namespace; `lo` stays down.
    None,
    /// A new network namespace with `lo` up.
    Loopback,
    /// RESTRICTED: the namespace the daemon prepared, with a routed veth
    /// carrying only the sandbox's addresses.
    Routed(super::RoutedNetwork),
    /// The host's network namespace.
    Host,
    /// The network namespace of the parent sandbox (`spec.join.network`),
    /// whatever its mode: nothing to set up.
    Joined(String),
    /// NAMESPACE: an existing namespace (the path the spec names; pid 1
    /// joins the descriptor the daemon opened from it). sandboxd sets up
    /// nothing in it and removes nothing from it.
    Given(PathBuf),
}

/// A child sandbox's parent and the namespaces shared with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinPlan {
    /// The parent's id.
    pub sandbox: String,
    /// The parent's pid 1 (host pid), whose namespaces are joined; 0 in a
    /// display plan (the daemon finds it at create time).
    pub init_pid: i32,
    /// The parent's supervisor: `init_pid` must be its child.
    pub supervisor_pid: i32,
    /// The shared namespaces (of `Net`, `Ipc`, `Uts`, `Pid`), not in the
    /// plan's own `namespaces`.
    pub namespaces: Vec<Namespace>,
}

/// The executable plan of one sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinuxPlan {
    /// Sandbox id.
    pub id: String,
    /// Namespaces, in creation order.
    pub namespaces: Vec<Namespace>,
    /// The network.
    pub network: Network,
    /// Where the new root is assembled on the host (`<dir>/root`), inside
    /// the child's private mount namespace.
    pub rootfs: PathBuf,
    /// Root-building operations, in order.
    pub mounts: Vec<RootOp>,
    /// cgroups.
    pub cgroups: CgroupPlan,
    /// Steps, in order.
    pub steps: Vec<LinuxStep>,
    /// A child's parent (`spec.join`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub join: Option<JoinPlan>,
}
