//! The sandbox spec as the core understands it: plain data, independent of the
//! wire format. The daemon converts the protobuf spec into this; `validate`
//! turns it into a [`crate::ValidatedSpec`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// How strongly a client asks for a property.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Requirement {
    /// Not asked for: the backend's default, reported.
    #[default]
    Unspecified,
    /// Must be enforced or the create fails.
    Required,
    /// Enforced if possible; degradation is reported.
    Preferred,
    /// Explicitly shared with the host.
    Disabled,
}

impl Requirement {
    /// For values the client set (a limit, a hostname, a network mode): an
    /// unspecified requirement means REQUIRED.
    pub fn or_required(self) -> Self {
        match self {
            Self::Unspecified => Self::Required,
            other => other,
        }
    }
}

/// Lifecycle mode of a sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// One main process; the sandbox ends when it exits.
    #[default]
    Process,
    /// The image's init (or a given command) is the first process.
    Init,
    /// No main process; work enters with Exec.
    Idle,
}

/// Network mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NetworkMode {
    /// The backend's default.
    #[default]
    Unspecified,
    /// No network.
    None,
    /// Private loopback only.
    Loopback,
    /// Only the listed addresses.
    Restricted,
    /// The host's network.
    Host,
    /// An existing network namespace (`NetworkPolicy::namespace_path`),
    /// whose interfaces someone else (CNI) owns.
    Namespace,
}

/// The identity a process runs as; `None` means the daemon's default.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct UserSpec {
    /// User id.
    pub uid: Option<u32>,
    /// Group id.
    pub gid: Option<u32>,
    /// Supplementary groups.
    pub additional_gids: Vec<u32>,
}

/// The uid and gid used when a spec names none: "nobody"/"nogroup".
pub const DEFAULT_UNPRIVILEGED_ID: u32 = 65534;

impl UserSpec {
    /// The effective uid.
    pub fn uid(&self) -> u32 {
        self.uid.unwrap_or(DEFAULT_UNPRIVILEGED_ID)
    }
    /// The effective gid.
    pub fn gid(&self) -> u32 {
        self.gid.unwrap_or(DEFAULT_UNPRIVILEGED_ID)
    }
}

/// A process to start inside a sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ProcessSpec {
    /// Program and arguments.
    pub argv: Vec<String>,
    /// "KEY=VALUE" environment.
    pub env: Vec<String>,
    /// Working directory inside the sandbox ("" means "/").
    pub cwd: String,
    /// Identity.
    pub user: UserSpec,
    /// Allocate a terminal.
    pub tty: bool,
}

impl ProcessSpec {
    /// The working directory, defaulted.
    pub fn cwd(&self) -> &str {
        if self.cwd.is_empty() { "/" } else { &self.cwd }
    }
}

/// One limit with its requirement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limit {
    /// The value.
    pub value: u64,
    /// UNSPECIFIED means REQUIRED.
    pub requirement: Requirement,
}

/// Smallest CPU weight (`spec.limits.cpu_weight`).
pub const MIN_CPU_WEIGHT: u64 = 1;
/// Largest CPU weight: cgroup v2 `cpu.weight`'s range is 1..=10000.
pub const MAX_CPU_WEIGHT: u64 = 10_000;
/// The weight a sandbox without one has (cgroup v2's default `cpu.weight`;
/// cgroup v1's default `cpu.shares` 1024).
pub const DEFAULT_CPU_WEIGHT: u64 = 100;
/// cgroup v1 `cpu.shares` range, which OCI's `linux.resources.cpu.shares`
/// uses too (the kernel clamps to it).
pub const MIN_CPU_SHARES: u64 = 2;
/// See [`MIN_CPU_SHARES`].
pub const MAX_CPU_SHARES: u64 = 262_144;

/// The cgroup v1 `cpu.shares` for a weight: scaled so that the default
/// weight (100) is the default shares (1024) and ratios between weights
/// are kept, so a weighted sandbox competes with an unweighted one the
/// same way on v1 and v2. At least [`MIN_CPU_SHARES`].
pub fn cpu_shares_of_weight(weight: u64) -> u64 {
    (weight.saturating_mul(1024) / DEFAULT_CPU_WEIGHT).clamp(MIN_CPU_SHARES, MAX_CPU_SHARES)
}

/// The weight for an OCI / cgroup v1 `cpu.shares` value, as runc and crun
/// convert it for cgroup v2: `1 + ((shares - 2) * 9999) / 262142`, so 2 →
/// 1, 1024 → 39, 262144 → 10000. `None` outside 2..=262144.
pub fn cpu_weight_of_shares(shares: u64) -> Option<u64> {
    (MIN_CPU_SHARES..=MAX_CPU_SHARES)
        .contains(&shares)
        .then(|| 1 + ((shares - MIN_CPU_SHARES) * 9999) / 262_142)
}

/// Resource limits; `None` means unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Limits {
    /// Memory in bytes.
    pub memory_bytes: Option<Limit>,
    /// Number of processes.
    pub pids: Option<Limit>,
    /// CPU quota in milli-CPUs.
    pub cpu_millis: Option<Limit>,
    /// Open files per process.
    pub open_files: Option<Limit>,
    /// Address space per process in bytes.
    pub address_space_bytes: Option<Limit>,
    /// Size of the writable layer (what the sandbox writes to its root
    /// filesystem) in bytes. Validation fills in the daemon's default as
    /// PREFERRED when the client sets none.
    #[serde(default)]
    pub disk_bytes: Option<Limit>,
    /// Size of the sandbox's `/tmp` tmpfs in bytes; validation fills in
    /// [`crate::validate::DEFAULT_TMP_BYTES`] (at most the daemon's cap).
    #[serde(default)]
    pub tmp_bytes: Option<u64>,
    /// Size of the sandbox's `/dev/shm` tmpfs in bytes; validation fills in
    /// [`crate::validate::DEFAULT_SHM_BYTES`] (at most the daemon's cap).
    #[serde(default)]
    pub shm_bytes: Option<u64>,
    /// Relative CPU weight, 1..=10000 (cgroup v2 `cpu.weight`'s scale,
    /// default 100); see [`crate::validate::MAX_CPU_WEIGHT`].
    #[serde(default)]
    pub cpu_weight: Option<Limit>,
}

/// Namespace-like isolation requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Isolation {
    /// The image is `/`.
    pub filesystem: Requirement,
    /// Own pid space.
    pub pid: Requirement,
    /// Own hostname.
    pub hostname: Requirement,
    /// Own IPC.
    pub ipc: Requirement,
    /// Unprivileged root.
    pub user: Requirement,
    /// Own cgroup view.
    pub cgroup: Requirement,
}

/// Network policy.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct NetworkPolicy {
    /// Mode.
    pub mode: NetworkMode,
    /// UNSPECIFIED means REQUIRED when a mode is set.
    pub requirement: Requirement,
    /// Addresses for RESTRICTED (empty: one from the daemon's pool).
    pub addresses: Vec<String>,
    /// RESTRICTED: masquerade outbound traffic behind the host's address.
    #[serde(default)]
    pub outbound_nat: bool,
    /// RESTRICTED: host ports forwarded to the sandbox.
    #[serde(default)]
    pub port_forwards: Vec<PortForward>,
    /// Nameservers for the sandbox's /etc/resolv.conf.
    #[serde(default)]
    pub dns_servers: Vec<String>,
    /// Search domains for the sandbox's /etc/resolv.conf.
    #[serde(default)]
    pub dns_search: Vec<String>,
    /// NAMESPACE: the network namespace file to run in (below one of the
    /// daemon's allowed netns sources; opened by the daemon, which hands
    /// the supervisor the descriptor).
    #[serde(default)]
    pub namespace_path: String,
}

/// A transport protocol.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// TCP.
    #[default]
    Tcp,
    /// UDP.
    Udp,
}

impl Protocol {
    /// "tcp" or "udp", as nft and the CLI spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
        }
    }
}

/// A host port forwarded to a sandbox port. Ports are `u32` as on the wire,
/// so validation can name an out-of-range value instead of truncating it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortForward {
    /// Protocol.
    pub protocol: Protocol,
    /// Host port.
    pub host_port: u32,
    /// Sandbox port.
    pub sandbox_port: u32,
}

/// A host directory bound into the sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountSpec {
    /// Absolute host path under an allowed mount source.
    pub source: String,
    /// Absolute path inside the sandbox.
    pub target: String,
    /// Read-only.
    pub read_only: bool,
}

/// The built-in image: a read-only view of the host's system directories.
pub const HOST_IMAGE: &str = "host";

/// Everything a client says about a sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SandboxSpec {
    /// Optional unique human name.
    pub name: String,
    /// Image name ("" means [`HOST_IMAGE`]).
    pub image: String,
    /// Lifecycle mode.
    pub mode: Mode,
    /// Main process (empty argv for IDLE; INIT defaults to /sbin/init).
    pub process: ProcessSpec,
    /// Hostname ("" means the backend default).
    pub hostname: String,
    /// Isolation requests.
    pub isolation: Isolation,
    /// Network policy.
    pub network: NetworkPolicy,
    /// Limits.
    pub limits: Limits,
    /// Bind mounts.
    pub mounts: Vec<MountSpec>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Read-only root.
    pub readonly_rootfs: bool,
    /// Stop signal (0 = SIGTERM).
    pub stop_signal: u32,
    /// A host directory to use as the root filesystem instead of an image
    /// of the images dir ("" = none): absolute, under one of the daemon's
    /// `allow_rootfs_sources`, opened without following any symlink. Its
    /// last component becomes `image` (validation fills it in), its parent
    /// takes the images dir's place (see [`SandboxSpec::image_dir`]).
    #[serde(default)]
    pub rootfs: String,
    /// Size cap and rotation of the main process's log (0s: the defaults).
    #[serde(default)]
    pub logs: LogLimits,
    /// Namespaces shared with another sandbox (a pod's sandbox): this
    /// sandbox is its child. None: every namespace is its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub join: Option<Join>,
}

/// The namespaces a child sandbox shares with its parent (`spec.join`).
/// Everything not listed (root, mounts, cgroup, limits) stays the child's
/// own.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Join {
    /// The parent sandbox's id: running, same owner, itself no child.
    pub sandbox_id: String,
    /// Share its network namespace (the child's network mode is the
    /// parent's).
    #[serde(default)]
    pub network: bool,
    /// Share its System V IPC and POSIX message queue namespace.
    #[serde(default)]
    pub ipc: bool,
    /// Share its UTS namespace (hostname).
    #[serde(default)]
    pub uts: bool,
    /// Share its pid namespace: the child's processes are not pid 1 there,
    /// the parent's pid 1 reaps their orphans, and the child is ended by
    /// its cgroup, not by a pid 1 of its own.
    #[serde(default)]
    pub pid: bool,
}

/// The main process's log files: each rotated before it would pass
/// `max_file_bytes`, the newest `max_files` kept. 0 means the default
/// ([`crate::logs::DEFAULT_FILE_BYTES`], [`crate::logs::DEFAULT_FILES`]);
/// validation fills the defaults in and caps the total at the daemon's
/// `max_log_bytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct LogLimits {
    /// Size cap of one file, in bytes.
    #[serde(default)]
    pub max_file_bytes: u64,
    /// Files kept.
    #[serde(default)]
    pub max_files: u32,
}

impl SandboxSpec {
    /// Why no process of this sandbox may run as uid 0, if it may not.
    /// Where uid 0 inside is uid 0 on the host (no user namespace; any
    /// jail), a read-write bind of a host directory would let it leave a
    /// setuid-root file (or any root-owned file host users trust) there:
    /// the sandbox's own mount is nosuid, the host's view is not.
    pub fn root_refusal(&self, root_is_host_root: bool) -> Option<String> {
        if !root_is_host_root {
            return None;
        }
        self.mounts
            .iter()
            .enumerate()
            .find(|(_, m)| !m.read_only)
            .map(|(i, m)| {
                format!(
                    "spec.mounts[{i}] binds host directory {} read-write at {} and uid 0 in this sandbox is root on the host, so it could leave setuid-root files there for host users; mount it read-only, ask for a user namespace (isolation.user) where the backend has one, or run as another uid",
                    m.source, m.target
                )
            })
    }

    /// The directory that holds [`SandboxSpec::image`]: the parent of a
    /// caller-given `rootfs`, else the daemon's images dir.
    pub fn image_dir<'a>(&'a self, images_dir: &'a std::path::Path) -> &'a std::path::Path {
        match std::path::Path::new(&self.rootfs).parent() {
            Some(parent) if !self.rootfs.is_empty() => parent,
            _ => images_dir,
        }
    }

    /// Whether the image directory must be opened without following any
    /// symlink on the way: true for a caller-given `rootfs` (the client
    /// named the path), false for the daemon's own configured images dir.
    pub fn image_dir_no_symlinks(&self) -> bool {
        !self.rootfs.is_empty()
    }

    /// The image, defaulted.
    pub fn image(&self) -> &str {
        if self.image.is_empty() {
            HOST_IMAGE
        } else {
            &self.image
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_refusal_names_the_first_read_write_mount() {
        let mount = |target: &str, read_only| MountSpec {
            source: format!("/srv{target}"),
            target: target.into(),
            read_only,
        };
        let cases = [
            (vec![], true, None),
            (vec![mount("/a", true)], true, None),
            (
                vec![mount("/a", true), mount("/b", false)],
                true,
                Some("spec.mounts[1]"),
            ),
            (vec![mount("/b", false)], false, None),
        ];
        for (mounts, host_root, want) in cases {
            let s = SandboxSpec {
                mounts: mounts.clone(),
                ..Default::default()
            };
            let got = s.root_refusal(host_root);
            assert_eq!(
                got.as_deref()
                    .map(|w| w.split(' ').next().unwrap_or_default()),
                want,
                "{mounts:?} {host_root}"
            );
        }
    }
}
