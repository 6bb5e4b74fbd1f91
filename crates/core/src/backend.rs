//! The interface every backend implements. Backends are synchronous: the
//! daemon calls them from blocking tasks. The namespace/jail/chroot work
//! itself never happens here but in the backend's supervisor helper process,
//! which the daemon starts with the bytes [`Backend::prepare`] returns.

use std::path::PathBuf;

use crate::capability::{BackendKind, Capabilities};
use crate::net::NetLease;
use crate::plan::Plan;
use crate::validate::ValidatedSpec;

/// Where one sandbox lives on the host: its id, its directory, and the
/// network resources leased to it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SandboxPaths {
    /// Sandbox id.
    pub id: String,
    /// `STATE_DIR/sandboxes/<id>`: record, exit file, rootfs mount point,
    /// scratch directories. Removed on destroy.
    pub dir: PathBuf,
    /// Addresses and host ports leased to it (RESTRICTED); empty otherwise
    /// and for cleanup, which finds host-side resources by the id alone.
    pub lease: NetLease,
    /// A child's (`spec.join`) running parent, as the daemon found it at
    /// create time; None otherwise and for plans and cleanup.
    pub parent: Option<ParentProcs>,
}

/// The processes of a child sandbox's parent, by host pid: the daemon
/// checks (owner, state) and fills them in; the backend joins the
/// namespaces of `init_pid`, making sure it is still `supervisor_pid`'s
/// child.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ParentProcs {
    /// The parent's id.
    pub id: String,
    /// Its first process (Linux: pid 1 of its namespaces).
    pub init_pid: i32,
    /// Its supervisor, the first process's parent.
    pub supervisor_pid: i32,
}

/// Backend failures, named after the step.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The backend cannot do this on this host/build.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// REQUIRED properties the backend cannot give.
    #[error("the backend cannot enforce REQUIRED properties: {}", .0.join("; "))]
    Refused(Vec<String>),
    /// No image of that name.
    #[error("spec.image: no image named {0:?} in the images directory")]
    ImageNotFound(String),
    /// A process the sandbox cannot run as asked.
    #[error("{field}: {why}")]
    InvalidProcess {
        /// The field at fault.
        field: String,
        /// What is wrong.
        why: String,
    },
    /// The image exists but is unusable (symlink, not a directory).
    #[error("spec.image: {name:?} {why}")]
    ImageInvalid {
        /// Image name.
        name: String,
        /// What is wrong.
        why: String,
    },
    /// A host operation failed.
    #[error("{step} {path}: {source}")]
    Io {
        /// The step.
        step: &'static str,
        /// The path involved.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// Setting up or tearing down the sandbox's network.
    #[error("network: {step}: {message}")]
    Network {
        /// The step.
        step: String,
        /// What failed.
        message: String,
    },
    /// Encoding the launch configuration.
    #[error("encoding launch configuration: {0}")]
    Encode(#[from] serde_json::Error),
}

/// Daemon configuration a backend is built with.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BackendOptions {
    /// The images directory.
    pub images_dir: PathBuf,
    /// FreeBSD: the interface RESTRICTED addresses are added to as aliases
    /// (`None`: the probe's choice, `lo1` if it exists). Other backends
    /// ignore it.
    pub alias_interface: Option<String>,
}

/// The file, under a sandbox's directory, holding its generated
/// `/etc/resolv.conf`.
pub const RESOLV_CONF: &str = "resolv.conf";

/// Writes the sandbox's resolv.conf when its spec names nameservers (for a
/// backend to bind over `/etc/resolv.conf`); returns whether it did.
pub fn write_resolv_conf(
    spec: &ValidatedSpec,
    sandbox: &SandboxPaths,
) -> Result<bool, BackendError> {
    let Some(text) = crate::net::resolv_conf(&spec.spec().network, &sandbox.id) else {
        return Ok(false);
    };
    let path = sandbox.dir.join(RESOLV_CONF);
    std::fs::write(&path, text).map_err(|source| BackendError::Io {
        step: "write resolv.conf",
        path,
        source,
    })?;
    Ok(true)
}

/// The inode cap of a sandbox tmpfs of `bytes`: one inode per 8 KiB,
/// between 1024 and 1 Mi. Each inode costs kernel memory that `size=` does
/// not count, so without a cap empty files could fill RAM.
pub fn tmpfs_inodes(bytes: u64) -> u64 {
    (bytes / (8 << 10)).clamp(1024, 1 << 20)
}

/// A tmpfs `size=` value as Linux and FreeBSD both parse it: the largest
/// exact unit of k, m, g (1024-based), else plain bytes.
pub fn tmpfs_size(bytes: u64) -> String {
    match bytes {
        0 => "0".to_owned(),
        b if b % (1 << 30) == 0 => format!("{}g", b >> 30),
        b if b % (1 << 20) == 0 => format!("{}m", b >> 20),
        b if b % (1 << 10) == 0 => format!("{}k", b >> 10),
        b => b.to_string(),
    }
}

/// Resource use of one sandbox; `None` where the backend cannot measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// Memory charged to the sandbox, in bytes.
    pub memory_bytes: Option<u64>,
    /// Tasks (or processes) in the sandbox.
    pub pids: Option<u64>,
    /// CPU time (user + system) used so far, microseconds.
    pub cpu_usec: Option<u64>,
    /// Bytes read from block devices so far.
    pub io_read_bytes: Option<u64>,
    /// Bytes written to block devices so far.
    pub io_write_bytes: Option<u64>,
}

/// What [`Backend::prepare`] hands the supervisor helper.
#[derive(Debug)]
pub struct Prepared {
    /// The launch configuration, the helper's first frame.
    pub config: Vec<u8>,
    /// Descriptors that ride on it, which the configuration accounts for
    /// (Linux: a network namespace made ahead of time for pid 1 to join).
    pub fds: Vec<std::os::fd::OwnedFd>,
}

impl Prepared {
    /// A configuration with no descriptors.
    pub fn config(config: Vec<u8>) -> Self {
        Self {
            config,
            fds: Vec::new(),
        }
    }
}

/// A sandbox backend.
pub trait Backend: Send + Sync + std::fmt::Debug + 'static {
    /// Which backend this is.
    fn kind(&self) -> BackendKind;

    /// What it can enforce on this host.
    fn capabilities(&self) -> Capabilities;

    /// The effective report, refusals and native plan for a spec. Pure: reads
    /// nothing from the host beyond what the backend probed at start-up.
    /// The report depends on the spec and the host only, not on `sandbox`
    /// (its id, directory or lease): the daemon plans a create once, before
    /// it knows whether the report calls for leased addresses.
    fn plan(&self, spec: &ValidatedSpec, sandbox: &SandboxPaths) -> Plan;

    /// [`Backend::plan`] without the native translation (`native` empty):
    /// the report and the refusals, all a create needs, for less (the
    /// translation is rendered for PlanSandbox's display).
    fn assess(&self, spec: &ValidatedSpec, sandbox: &SandboxPaths) -> Plan {
        self.plan(spec, sandbox)
    }

    /// Runs a create's host side, building the executable plan once for
    /// all of it: refuses what the plan refuses, creates the host-side
    /// resources that must exist before the supervisor starts (Linux: the
    /// network namespace, its veth pair and firewall table), checks
    /// host-side preconditions (the image exists and is a real directory
    /// inside the images dir) and returns the configuration the supervisor
    /// helper is started with, with the descriptors it accounts for (Linux:
    /// a network namespace made ahead of time). On error the caller runs
    /// [`Backend::cleanup`], which removes whatever part of it exists.
    fn prepare(
        &self,
        spec: &ValidatedSpec,
        sandbox: &SandboxPaths,
    ) -> Result<Prepared, BackendError>;

    /// Removes whatever the sandbox left on the host (mounts, directories).
    /// Idempotent: succeeds when there is nothing to remove.
    fn cleanup(&self, sandbox: &SandboxPaths) -> Result<(), BackendError>;

    /// Names of the images in the images directory (plus "host").
    fn images(&self) -> Vec<String>;

    /// Checks a process about to be Exec'd into a sandbox created from
    /// `sandbox_spec` against what that sandbox can run (ids inside a user
    /// namespace's map, say). INVALID_ARGUMENT naming the problem otherwise.
    fn check_exec(
        &self,
        _sandbox_spec: &crate::spec::SandboxSpec,
        _process: &crate::spec::ProcessSpec,
    ) -> Result<(), BackendError> {
        Ok(())
    }

    /// Current resource use of a running sandbox, where measurable.
    fn usage(&self, _sandbox: &SandboxPaths) -> Usage {
        Usage::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tmpfs_inodes_are_bounded() {
        for (bytes, want) in [
            (0, 1024),
            (1 << 20, 1024),
            (64 << 20, 8192),
            (1 << 30, 131_072),
            (u64::MAX, 1 << 20),
        ] {
            assert_eq!(tmpfs_inodes(bytes), want, "{bytes}");
        }
    }

    #[test]
    fn tmpfs_sizes_use_the_largest_exact_unit() {
        for (bytes, want) in [
            (1 << 30, "1g"),
            (3 << 30, "3g"),
            (256 << 20, "256m"),
            ((1 << 30) + (1 << 20), "1025m"),
            (64 << 10, "64k"),
            (1_000_000, "1000000"),
            (0, "0"),
        ] {
            assert_eq!(tmpfs_size(bytes), want);
        }
    }
}

/// Which per-process resource limit (`setrlimit(2)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RlimitKind {
    /// `RLIMIT_NPROC`: processes of the user (a backend with no pids
    /// cgroup or rctl rule uses it for `limits.pids`).
    Nproc,
    /// `RLIMIT_NOFILE`.
    Nofile,
    /// `RLIMIT_AS`, in bytes.
    As,
}

impl RlimitKind {
    /// The kernel's name, as plans show it.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Nproc => "RLIMIT_NPROC",
            Self::Nofile => "RLIMIT_NOFILE",
            Self::As => "RLIMIT_AS",
        }
    }

    /// The spec's limit this one enforces, as plans explain it.
    pub const fn purpose(self) -> &'static str {
        match self {
            Self::Nproc => "pids limit, per user",
            Self::Nofile => "open_files limit, per process",
            Self::As => "address_space limit, per process",
        }
    }
}

/// One resource limit applied to every process of a sandbox (soft = hard).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Rlimit {
    /// Which limit.
    pub kind: RlimitKind,
    /// Soft and hard value.
    pub value: u64,
}

impl Rlimit {
    /// A limit of `kind` at `value`.
    pub const fn new(kind: RlimitKind, value: u64) -> Self {
        Self { kind, value }
    }

    /// The spec's limits among `kinds`, in that order: every backend maps
    /// the spec the same way and chooses only which limits are per-process
    /// for it (and so which every process, in every mode, gets).
    pub fn of_spec(spec: &ValidatedSpec, kinds: &[RlimitKind]) -> Vec<Self> {
        let l = &spec.spec().limits;
        kinds
            .iter()
            .filter_map(|&kind| {
                let limit = match kind {
                    RlimitKind::Nproc => l.pids,
                    RlimitKind::Nofile => l.open_files,
                    RlimitKind::As => l.address_space_bytes,
                };
                limit.map(|l| Self::new(kind, l.value))
            })
            .collect()
    }
}
