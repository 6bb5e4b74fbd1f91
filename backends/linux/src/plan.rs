//! The pure Linux plan: a [`ValidatedSpec`] in, plain data out.
//!
//! [`HostFacts`] is this backend's [`Planner`]: it gives the isolation
//! matrix ([`capabilities`], [`rows_for`]), builds the typed, serializable
//! [`LinuxPlan`] the runtime supervisor executes step by step, and renders
//! it. The rest is core's, shared by every backend:
//! - [`build`] ([`Planner::build`]) refuses (with [`BuildError::Refused`])
//!   any spec that asks for a REQUIRED property this host cannot give, so a
//!   caller cannot run a weaker sandbox by forgetting to check.
//! - [`plan`] ([`Planner::plan`]) is the display form for `PlanSandbox`: the
//!   effective isolation report, the refusals and the native translation,
//!   even for a spec that would be refused.
//!
//! Nothing here touches the host: every fact about it comes in through
//! [`HostFacts`], which the runtime probes once at start-up and
//! [`HostFacts::assumed`] fills in for planning on another OS.
//!
//! Decisions where the design is silent:
//! - Network `UNSPECIFIED` means `NONE`: a fresh network namespace whose
//!   loopback stays down. `LOOPBACK` brings `lo` up.
//! - `RESTRICTED` is a namespace the daemon prepares before the supervisor
//!   starts (see [`RoutedNetwork`]): pid 1 joins it instead of creating
//!   one, and every Exec joins pid 1's.
//! - The user namespace is opt-in (`isolation.user` REQUIRED or PREFERRED)
//!   and maps sandbox ids `0..count` onto [`HostFacts::userns_range`].
//! - A writable root on a directory image is an overlay whose upper and work
//!   directories live under the sandbox's directory, so the shared image is
//!   never written; without overlayfs [`build`] fails rather than bind the
//!   image read-write. With a disk limit (the daemon's default gives every
//!   sandbox one) they are on a tmpfs of that size ([`Layer`]), mounted in
//!   pid 1's private mount namespace on the root's own mount point, which
//!   the overlay then covers; the "host" image's tmpfs root gets the same
//!   size. Every other tmpfs has a size and an inode cap too: /tmp and
//!   /dev/shm from the spec, /dev [`DEV_TMPFS_BYTES`].
//! - Client mounts may not target `/proc`, `/sys` or `/dev` (or below): they
//!   would shadow or be shadowed by the sandbox's own pseudo-filesystems and
//!   their masks.

mod cgroups;
mod host;
mod matrix;
mod mounts;
mod network;
mod render;
mod steps;
#[cfg(test)]
mod tests;
mod types;

use sandboxd_core::capability::BackendKind;
use sandboxd_core::plan::NativePlan;
use sandboxd_core::spec::{Mode, NetworkMode, Requirement};
use sandboxd_core::{BuildError, Enforcement, Plan, Planner, SandboxPaths, ValidatedSpec};

pub use cgroups::{parse_blkio_bytes, parse_cpu_stat, parse_io_stat};
pub use host::{CgroupFacts, Controller, HostFacts, IdRange};
pub use matrix::{capabilities, rows_for};
pub use mounts::{
    DEV_TMPFS_BYTES, DEV_TMPFS_INODES, HOST_SECRETS, MASKED_PATHS, READONLY_PROC_PATHS,
    RESERVED_TARGETS, RESOLV_CONF,
};
pub use network::{
    Forward, NETNS_FILE, RoutedNetwork, SANDBOX_LINK, host_link, nft_script, nft_table,
    route_localnet_sysctl,
};
pub use steps::rlimits;
pub use types::{
    Actor, Capability, CgroupPlan, CgroupWrite, IdMap, JoinPlan, Layer, LinuxPlan, LinuxStep,
    Mount, MountFlag, MountSource, Namespace, Network, Rlimit, RlimitKind, RootOp,
};

/// Why a spec cannot be planned at all (a refused REQUIRED property is
/// core's [`BuildError::Refused`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// rootfs: a writable root on a directory image needs overlayfs.
    #[error(
        "rootfs: image {image:?} needs overlayfs for a writable root (the shared image is never mounted read-write); set readonly_rootfs or enable overlayfs"
    )]
    RootfsOverlay {
        /// Image name.
        image: String,
    },
    /// An OCI reference the daemon did not resolve to layers (it resolves
    /// every reference in its image store before planning).
    #[error("spec.image: OCI image {0:?} was not resolved to its layers")]
    ImageUnresolved(String),
    /// user namespace: an id of the process lies outside the mapped range.
    #[error(
        "user namespace: {what} {id} is outside the mapped range 0..{count}; unmapped ids cannot be used"
    )]
    UserNamespaceMap {
        /// "uid", "gid" or "additional gid".
        what: &'static str,
        /// The id.
        id: u32,
        /// Size of the map.
        count: u32,
    },
    /// RESTRICTED without leased addresses and gateways (the daemon leases
    /// them before it builds a plan).
    #[error("network: RESTRICTED needs leased addresses and a gateway, and none were given")]
    NoLease,
    /// uid 0 as the main process, with a read-write bind and no user
    /// namespace (see [`root_refusal`]).
    #[error("uid 0: {0}")]
    RootWithWritableBind(String),
    /// A child (`spec.join`) without its parent's processes (the daemon
    /// finds them at create time).
    #[error("spec.join: the processes of parent sandbox {0} were not given")]
    NoParent(String),
    /// `spec.join.pid` on a host with no cgroup the sandbox could join:
    /// its processes, orphans included, could not be found to be killed
    /// (the shared pid namespace does not end with the sandbox).
    #[error(
        "spec.join.pid: the host has no cgroup hierarchy, and a sandbox sharing sandbox {0}'s pid namespace is ended through its cgroup"
    )]
    SharedPidWithoutCgroup(String),
    /// bind mount: the target is reserved for the sandbox's own filesystems.
    #[error(
        "spec.mounts[{index}].target: {target:?} is under /proc, /sys or /dev, which the sandbox mounts itself"
    )]
    BindMountTarget {
        /// Index in `spec.mounts`.
        index: usize,
        /// The target.
        target: String,
    },
}

/// Whether the spec opts into the user namespace.
/// The new root's mount point, `<sandbox dir>/root`, which the supervisor
/// creates before pid 1 is cloned.
fn rootfs(sandbox: &SandboxPaths) -> std::path::PathBuf {
    sandbox.dir.join("root")
}

fn wants_userns(spec: &ValidatedSpec) -> bool {
    matches!(
        spec.spec().isolation.user,
        Requirement::Required | Requirement::Preferred
    )
}

/// The network the sandbox gets: UNSPECIFIED is NONE; RESTRICTED without
/// nftables (PREFERRED, or refused) falls back to loopback only, stricter
/// than asked.
fn network(spec: &ValidatedSpec, sandbox: &SandboxPaths, host: &HostFacts) -> Network {
    if let Some(join) = spec.spec().join.as_ref().filter(|j| j.network) {
        return Network::Joined(join.sandbox_id.clone());
    }
    match spec.spec().network.mode {
        NetworkMode::Unspecified | NetworkMode::None => Network::None,
        NetworkMode::Loopback => Network::Loopback,
        NetworkMode::Restricted if host.nftables => Network::Routed(network::routed(spec, sandbox)),
        NetworkMode::Restricted => Network::Loopback,
        NetworkMode::Host => Network::Host,
        NetworkMode::Namespace => Network::Given(spec.spec().network.namespace_path.clone().into()),
    }
}

/// The namespaces a child shares with its parent (`spec.join`), which it
/// does not create.
fn joined(spec: &ValidatedSpec) -> Vec<Namespace> {
    let Some(join) = &spec.spec().join else {
        return Vec::new();
    };
    [
        (Namespace::Uts, join.uts),
        (Namespace::Ipc, join.ipc),
        (Namespace::Net, join.network),
        (Namespace::Pid, join.pid),
    ]
    .into_iter()
    .filter_map(|(n, on)| on.then_some(n))
    .collect()
}

/// The namespaces for a spec, in creation order. Mount is always created;
/// the others unless the spec DISABLED them or shares them with its parent
/// (user: only when opted into and available).
fn namespaces(spec: &ValidatedSpec, host: &HostFacts) -> Vec<Namespace> {
    let host_net = spec.spec().network.mode == NetworkMode::Host;
    let joined = joined(spec);
    let iso = spec.spec().isolation;
    let on = |r: Requirement| r != Requirement::Disabled;
    let mut ns = Vec::new();
    if wants_userns(spec) && host.user_namespaces {
        ns.push(Namespace::User);
    }
    ns.push(Namespace::Mount);
    let rest = [
        (Namespace::Pid, on(iso.pid)),
        (Namespace::Uts, on(iso.hostname)),
        (Namespace::Ipc, on(iso.ipc)),
        (Namespace::Net, !host_net),
        (Namespace::Cgroup, on(iso.cgroup)),
    ];
    ns.extend(
        rest.into_iter()
            .filter(|(n, keep)| *keep && !joined.contains(n))
            .map(|(n, _)| n),
    );
    ns
}

/// Why uid 0 may not run in a sandbox, if it may not: without a user
/// namespace uid 0 inside is host root
/// ([`sandboxd_core::spec::SandboxSpec::root_refusal`]).
pub fn root_refusal(spec: &ValidatedSpec, namespaces: &[Namespace]) -> Option<String> {
    spec.spec()
        .root_refusal(!namespaces.contains(&Namespace::User))
}

/// Checks that the payload's ids are mapped in the user namespace.
fn check_id_map(spec: &ValidatedSpec, range: IdRange) -> Result<(), PlanError> {
    let user = &spec.spec().process.user;
    let ids = [("uid", user.uid()), ("gid", user.gid())]
        .into_iter()
        .chain(user.additional_gids.iter().map(|g| ("additional gid", *g)));
    for (what, id) in ids {
        if id >= range.count {
            return Err(PlanError::UserNamespaceMap {
                what,
                id,
                count: range.count,
            });
        }
    }
    Ok(())
}

/// The plan without the REQUIRED check: what the runtime would do, with
/// PREFERRED properties the host cannot give left out.
fn build_unchecked(
    spec: &ValidatedSpec,
    sandbox: &SandboxPaths,
    host: &HostFacts,
) -> Result<LinuxPlan, PlanError> {
    let namespaces = namespaces(spec, host);
    if namespaces.contains(&Namespace::User) {
        check_id_map(spec, host.userns_range)?;
    }
    if spec.spec().mode != Mode::Idle && spec.spec().process.user.uid() == 0 {
        if let Some(why) = root_refusal(spec, &namespaces) {
            return Err(PlanError::RootWithWritableBind(why));
        }
    }
    let join = spec.spec().join.as_ref().map(|j| JoinPlan {
        sandbox: j.sandbox_id.clone(),
        init_pid: sandbox.parent.as_ref().map_or(0, |p| p.init_pid),
        supervisor_pid: sandbox.parent.as_ref().map_or(0, |p| p.supervisor_pid),
        namespaces: joined(spec),
    });
    let mounts = mounts::root_ops(spec, sandbox, host, &namespaces, &joined(spec))?;
    let cgroups = cgroups::cgroups(spec, &sandbox.id, host);
    if let Some(j) = spec.spec().join.as_ref().filter(|j| j.pid) {
        if cgroups.dirs.is_empty() {
            return Err(PlanError::SharedPidWithoutCgroup(j.sandbox_id.clone()));
        }
    }
    Ok(LinuxPlan {
        join,
        id: sandbox.id.clone(),
        network: network(spec, sandbox, host),
        rootfs: rootfs(sandbox),
        mounts,
        cgroups,
        steps: steps::steps(spec, sandbox, host, &namespaces),
        namespaces,
    })
}

impl Planner for HostFacts {
    const KIND: BackendKind = BackendKind::Linux;
    type Native = LinuxPlan;
    type Error = PlanError;

    fn matrix(&self) -> Vec<Enforcement> {
        capabilities(self)
    }

    fn rows(&self, spec: &ValidatedSpec) -> Vec<Enforcement> {
        rows_for(spec, self)
    }

    fn build_unchecked(
        &self,
        spec: &ValidatedSpec,
        sandbox: &SandboxPaths,
    ) -> Result<LinuxPlan, PlanError> {
        build_unchecked(spec, sandbox, self)
    }

    /// RESTRICTED runs only with the addresses the daemon leased at create
    /// time (PlanSandbox shows the plan without them).
    fn check_executable(&self, plan: &LinuxPlan) -> Result<(), PlanError> {
        match &plan.network {
            Network::Routed(r) if r.addresses.is_empty() || r.gateways.is_empty() => {
                Err(PlanError::NoLease)
            }
            _ if plan
                .join
                .as_ref()
                .is_some_and(|j| j.init_pid <= 0 || j.supervisor_pid <= 0) =>
            {
                Err(PlanError::NoParent(
                    plan.join
                        .as_ref()
                        .map(|j| j.sandbox.clone())
                        .unwrap_or_default(),
                ))
            }
            _ => Ok(()),
        }
    }

    fn render(plan: &LinuxPlan) -> NativePlan {
        render::native(plan)
    }
}

/// The executable plan for a spec on a host described by `host`
/// ([`Planner::build`]): always safe to execute.
pub fn build(
    spec: &ValidatedSpec,
    sandbox: &SandboxPaths,
    host: &HostFacts,
) -> Result<LinuxPlan, BuildError<PlanError>> {
    host.build(spec, sandbox)
}

/// The display plan (PlanSandbox) for a spec on a host described by `host`
/// ([`Planner::plan`]).
pub fn plan(spec: &ValidatedSpec, sandbox: &SandboxPaths, host: &HostFacts) -> Plan {
    host.plan(spec, sandbox)
}

/// A row saying the spec DISABLED this property: shared with the host.
fn disabled_row(property: sandboxd_core::Property, what: &str) -> Enforcement {
    Enforcement::new(
        property,
        sandboxd_core::Level::NotEnforced,
        "none",
        &format!("DISABLED by the spec: {what}"),
    )
}
