//! The pure FreeBSD plan: a [`ValidatedSpec`] in, plain data out.
//!
//! [`HostFacts`] is this backend's [`Planner`]: it gives the isolation
//! matrix ([`capabilities`], [`rows_for`]), builds the typed, serializable
//! [`JailPlan`] the runtime supervisor executes step by step, and renders
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
//! - Networking (what each mode gives the jail, the host aliases, pf's
//!   NAT and forwards, DNS): see [`network`].
//! - Every jail carries `persist`, and the runtime never clears it: the
//!   supervisor, not the kernel, decides when a sandbox ends (its main
//!   process exits, or Stop/Destroy) and removes the jail then. A jail the
//!   kernel removed with its last process would free its jid for another
//!   jail, and a later Exec would attach to that one. (Earlier plans showed
//!   a final `jail_set JAIL_UPDATE nopersist` step the runtime skipped.)
//! - INIT with the default argv (`/sbin/init`) runs `/bin/sh /etc/rc`, as
//!   jail(8)'s `exec.start` does: init(8) is the system's pid 1 and does not
//!   run inside a jail. rc starts the jail's services and exits, and an INIT
//!   sandbox ends with its main process, so what rc started is killed then
//!   (a known gap: jail(8) keeps a persistent jail until `jail -r`). rc runs
//!   as the spec's user (65534 unless set), and with the `host` image it
//!   reads the host's own /etc/rc.conf.
//! - The open-files limit is `setrlimit(RLIMIT_NOFILE)`, per process as the
//!   API defines it and as on Linux: an rctl `openfiles` rule on the jail
//!   would cap the sum over all its processes instead.
//! - CPU: `pcpu` is percent of one CPU, `millis / 10` rounded up (1 milli
//!   still gets 1%, never 0).
//! - Client mounts may not target `/dev` (or below), which devfs owns.
//! - In a `host`-image jail the sandboxd binary, if the image shows it
//!   (installed under `/usr`, say), is covered by an empty mode-000 file
//!   mounted `ro,nosuid,noexec`, as the Linux and chroot backends do. That
//!   needs single-file nullfs (13.2+); older hosts say so in the FILESYSTEM
//!   row instead.

#![forbid(unsafe_code)]

mod host;
mod matrix;
mod mounts;
pub mod network;
mod params;
mod render;
mod steps;
#[cfg(test)]
mod tests;
mod types;

use sandboxd_core::capability::BackendKind;
use sandboxd_core::plan::NativePlan;
use sandboxd_core::spec::Mode;
use sandboxd_core::{
    BuildError, Enforcement, Level, Plan, Planner, Property, SandboxPaths, ValidatedSpec,
};

pub use host::{
    BASE_FILES, DEFAULT_ALIAS_INTERFACE, HostFacts, IFCONFIG, PFCTL, PROTOCOLS, ROUTE, needed_for,
};
pub use matrix::{capabilities, rows_for};
pub use mounts::{HOST_IMAGE_DIRS, MASK_OPTIONS, RESOLV_CONF, SECRET_DIRS, own_binary_mask};
pub use network::{HostAlias, HostNet, loopback_alias, pf_anchor, pf_rules, wants_pf};
pub use params::DEVFS_RULESET;
pub use steps::{Executor, JAIL_RC, executor, main_argv, steps_for};
pub use types::{
    Actor, Fstype, JailMount, JailParam, JailPlan, JailStep, Jsys, MountSource, ParamValue,
    RctlResource, RctlRule, Rlimit, RlimitKind,
};

/// Why a spec cannot be planned at all (a refused REQUIRED property is
/// core's [`BuildError::Refused`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// A child sandbox (`spec.join`): not planned on FreeBSD (a child jail
    /// of the parent's jail would share its network; not built yet).
    #[error(
        "spec.join: the FreeBSD backend does not create a jail inside sandbox {0}'s jail yet, so a child cannot share its network, IPC, hostname or process view"
    )]
    Join(String),
    /// An OCI reference the daemon did not resolve to layers (it resolves
    /// every reference in its image store before planning).
    #[error("spec.image: OCI image {0:?} was not resolved to its layers")]
    ImageUnresolved(String),
    /// network: an address did not parse (validation should have caught it).
    #[error("spec.network.addresses[{index}]: {address:?} is not an IPv4 or IPv6 address")]
    NetworkAddress {
        /// Index in `spec.network.addresses`.
        index: usize,
        /// The address.
        address: String,
    },
    /// dns: this host's nullfs cannot mount the generated resolv.conf.
    #[error(
        "spec.network.dns_servers: FreeBSD {os_release} cannot give the jail its own /etc/resolv.conf (that needs nullfs mounts of single files, FreeBSD 13.2 or later)"
    )]
    DnsUnsupported {
        /// The host's `kern.osrelease`.
        os_release: String,
    },
    /// A base-system file the spec needs is not on this host.
    #[error(
        "spec.network.mode: {path} is missing on this host, and the freebsd backend needs it for {needed}"
    )]
    MissingBaseFile {
        /// The file.
        path: &'static str,
        /// What needs it.
        needed: &'static str,
    },
    /// uid 0 as the main process with a read-write nullfs mount: a jail's
    /// root is root on the host's files (see `SandboxSpec::root_refusal`).
    #[error("uid 0: {0}")]
    RootWithWritableBind(String),
    /// nullfs mount: the target is reserved for the jail's devfs.
    #[error("spec.mounts[{index}].target: {target:?} is under /dev, which the jail's devfs owns")]
    NullfsMountTarget {
        /// Index in `spec.mounts`.
        index: usize,
        /// The target.
        target: String,
    },
}

/// The jail's name.
pub fn jail_name(id: &str) -> String {
    format!("sandboxd-{id}")
}

/// The path to cover with an empty file in a `host`-image jail: the
/// sandboxd binary, when the image shows it and this host can mount a
/// single file (FreeBSD 13.2+). On an older host the FILESYSTEM row says
/// the binary stays visible ([`unmasked_binary`]).
fn binary_mask(spec: &ValidatedSpec, host: &HostFacts) -> Option<String> {
    if spec.spec().image() != sandboxd_core::spec::HOST_IMAGE || !host.has_nullfs_file_mounts() {
        return None;
    }
    own_binary_mask(host.own_binary.as_deref()?)
}

/// The sandboxd binary a `host`-image jail shows unmasked, because this
/// host's nullfs cannot mount a single file over it.
fn unmasked_binary(host: &HostFacts) -> Option<String> {
    if host.has_nullfs_file_mounts() {
        return None;
    }
    own_binary_mask(host.own_binary.as_deref()?)
}

/// The plan without the REQUIRED check: what the runtime would do, with
/// PREFERRED properties the host cannot give left out.
fn build_unchecked(
    spec: &ValidatedSpec,
    sandbox: &SandboxPaths,
    host: &HostFacts,
) -> Result<JailPlan, PlanError> {
    let s = spec.spec();
    if let Some(join) = &s.join {
        return Err(PlanError::Join(join.sandbox_id.clone()));
    }
    if s.mode != Mode::Idle && s.process.user.uid() == 0 {
        if let Some(why) = s.root_refusal(true) {
            return Err(PlanError::RootWithWritableBind(why));
        }
    }
    let name = jail_name(&sandbox.id);
    let rootfs = sandbox.dir.join("root");
    let net = network::network(spec, sandbox, host)?;
    let host_net = network::host_net(spec, sandbox, host)?;
    network::check_base_files(&net, &host_net, host)?;
    let resolv_conf = network::resolv_conf(spec, &sandbox.id, host)?;
    let rctl_rules = steps::rctl_rules(spec, &name, host);
    Ok(JailPlan {
        params: params::params(spec, sandbox, &rootfs, &name, &net),
        mounts: mounts::mounts(
            spec,
            resolv_conf.is_some(),
            binary_mask(spec, host).as_deref(),
            &host.secret_dirs,
        )?,
        steps: steps::steps(
            spec,
            host,
            &net,
            &host_net,
            &steps::Has {
                rules: !rctl_rules.is_empty(),
                resolv_conf: resolv_conf.is_some(),
            },
        ),
        rctl_rules,
        host_net,
        resolv_conf,
        rlimits: steps::rlimits(spec),
        id: sandbox.id.clone(),
        name,
        rootfs,
    })
}

impl Planner for HostFacts {
    const KIND: BackendKind = BackendKind::Freebsd;
    type Native = JailPlan;
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
    ) -> Result<JailPlan, PlanError> {
        build_unchecked(spec, sandbox, self)
    }

    fn render(plan: &JailPlan) -> NativePlan {
        render::native(plan)
    }
}

/// The executable plan for a spec on a host described by `host`
/// ([`Planner::build`]): always safe to execute.
pub fn build(
    spec: &ValidatedSpec,
    sandbox: &SandboxPaths,
    host: &HostFacts,
) -> Result<JailPlan, BuildError<PlanError>> {
    host.build(spec, sandbox)
}

/// The display plan (PlanSandbox) for a spec on a host described by `host`
/// ([`Planner::plan`]).
pub fn plan(spec: &ValidatedSpec, sandbox: &SandboxPaths, host: &HostFacts) -> Plan {
    host.plan(spec, sandbox)
}

/// A row saying the spec DISABLED this property: shared with the host.
fn disabled_row(property: Property, what: &str) -> Enforcement {
    Enforcement::new(
        property,
        Level::NotEnforced,
        "none",
        &format!("DISABLED by the spec: {what}"),
    )
}
