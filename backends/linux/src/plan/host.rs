//! What the runtime learns about a Linux host at start-up, and the typical
//! host assumed when planning for Linux from elsewhere.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Where one cgroup controller lives on this host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Controller {
    /// In the cgroup v2 hierarchy mounted at [`CgroupFacts::unified`], and
    /// listed in its root's `cgroup.subtree_control`.
    V2,
    /// In a cgroup v1 hierarchy mounted here (e.g. `/sys/fs/cgroup/memory`).
    V1 {
        /// Mount point of the v1 hierarchy holding the controller.
        mount: PathBuf,
    },
}

/// The host's cgroup layout: pure v2 (unified), pure v1, or hybrid (a v2
/// hierarchy without controllers plus v1 controller mounts, as on many
/// systemd hosts of the v1 era).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CgroupFacts {
    /// Mount point of the cgroup2 hierarchy, if one is mounted. Every sandbox
    /// gets a cgroup there (for the cgroup namespace and for accounting) even
    /// when no limit uses it.
    pub unified: Option<PathBuf>,
    /// The memory controller.
    pub memory: Option<Controller>,
    /// The pids controller.
    pub pids: Option<Controller>,
    /// The cpu controller.
    pub cpu: Option<Controller>,
    /// The block I/O controller (v2 `io`, v1 `blkio`), for accounting only.
    #[serde(default)]
    pub io: Option<Controller>,
    /// Swap accounting is on (`memory.swap.max` on v2,
    /// `memory.memsw.limit_in_bytes` on v1), so swap can be capped too.
    pub swap_accounting: bool,
}

impl CgroupFacts {
    /// Pure cgroup v2 at `/sys/fs/cgroup` with memory, pids, cpu and io enabled.
    pub fn v2() -> Self {
        Self {
            unified: Some(PathBuf::from("/sys/fs/cgroup")),
            memory: Some(Controller::V2),
            pids: Some(Controller::V2),
            cpu: Some(Controller::V2),
            io: Some(Controller::V2),
            swap_accounting: true,
        }
    }

    /// The common hybrid layout: cgroup2 at `/sys/fs/cgroup/unified` with no
    /// controllers, and memory, pids, cpu and blkio as v1 hierarchies under
    /// `/sys/fs/cgroup/<controller>`.
    pub fn hybrid() -> Self {
        let v1 = |name: &str| {
            Some(Controller::V1 {
                mount: Path::new("/sys/fs/cgroup").join(name),
            })
        };
        Self {
            unified: Some(PathBuf::from("/sys/fs/cgroup/unified")),
            memory: v1("memory"),
            pids: v1("pids"),
            cpu: v1("cpu"),
            io: v1("blkio"),
            swap_accounting: false,
        }
    }
}

/// Host ids the sandbox's ids are mapped onto in a user namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdRange {
    /// First host uid/gid of the range (sandbox id 0).
    pub host_start: u32,
    /// Number of ids mapped.
    pub count: u32,
}

/// What the runtime learns about the host once at start-up (and the daemon's
/// configuration that shapes plans). Plans read nothing else from the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostFacts {
    /// cgroup layout, from `/proc/self/mountinfo` and the v2 root's
    /// `cgroup.subtree_control`.
    pub cgroup: CgroupFacts,
    /// overlayfs is available (`/proc/filesystems`).
    pub overlayfs: bool,
    /// User namespaces can be created (`CONFIG_USER_NS`, and
    /// `user.max_user_namespaces` > 0).
    pub user_namespaces: bool,
    /// `/bin`, `/sbin`, `/lib`, `/lib64` are symlinks into `/usr`; the "host"
    /// image then recreates them as symlinks instead of binding them.
    pub merged_usr: bool,
    /// Host ids for user namespaces (daemon configuration, like root's
    /// `/etc/subuid` entry). All sandboxes share it.
    pub userns_range: IdRange,
    /// The `nft` binary is installed (RESTRICTED's firewall table is
    /// loaded with `nft -f -`).
    pub nftables: bool,
}

impl HostFacts {
    /// A typical modern host: cgroup v2 with memory, pids and cpu, overlayfs,
    /// user namespaces, merged /usr, ids 100000..165536 for user namespaces.
    /// Used when planning for Linux from a host that is not running the Linux
    /// backend (PlanSandbox on FreeBSD, or on Linux with the chroot backend),
    /// so the plan shows what a standard host would do, not this one.
    pub fn assumed() -> Self {
        Self {
            cgroup: CgroupFacts::v2(),
            overlayfs: true,
            user_namespaces: true,
            merged_usr: true,
            userns_range: IdRange {
                host_start: 100_000,
                count: 65_536,
            },
            nftables: true,
        }
    }
}
