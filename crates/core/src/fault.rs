//! Test-only fault injection. Built with the `fault-injection` feature,
//! every named step of a create checks whether the file named by
//! `SANDBOXD_FAULT_FILE` holds its name and, if so, fails right there as
//! if the step had failed. Without the feature [`check`] is an inline
//! `Ok(())` and no file is ever read.
//!
//! [`CREATE_STEPS`] is the registry: a test walks it to fail each step in
//! turn and prove that every failure is a clear status and leaves nothing
//! behind.

/// The environment variable naming the fault file.
pub const FILE_ENV: &str = "SANDBOXD_FAULT_FILE";

/// Daemon: the sandbox is registered (and its addresses leased).
pub const REGISTERED: &str = "registered";
/// Daemon: its state directory exists.
pub const STATE_DIR: &str = "state dir";
/// Daemon: its CREATING record is saved.
pub const RECORD: &str = "record";
/// Linux daemon side: the network namespace is pinned.
pub const NETNS: &str = "netns";
/// Linux daemon side: the veth pair exists.
pub const VETH: &str = "veth";
/// Linux daemon side: the sandbox's addresses and routes are set.
pub const SANDBOX_ADDRESSES: &str = "sandbox addresses";
/// Linux daemon side: the host's routes to the sandbox are set.
pub const HOST_ROUTES: &str = "host routes";
/// Linux daemon side: the nft table is loaded.
pub const NFT: &str = "nft";
/// Daemon: the supervisor's launch configuration is built.
pub const LAUNCH_CONFIG: &str = "launch config";
/// Daemon: the supervisor has been started.
pub const SUPERVISOR: &str = "supervisor";
/// Linux supervisor: the cgroups exist.
pub const CGROUPS: &str = "cgroups";
/// Linux supervisor: pid 1 is cloned and in its cgroups.
pub const CLONED: &str = "cloned";
/// Linux pid 1: the root is mounted.
pub const MOUNTED: &str = "mounted";
/// Daemon: the supervisor reported ready.
pub const READY: &str = "ready";

/// Every step, in the order a create reaches them.
pub const CREATE_STEPS: &[&str] = &[
    REGISTERED,
    STATE_DIR,
    RECORD,
    NETNS,
    VETH,
    SANDBOX_ADDRESSES,
    HOST_ROUTES,
    NFT,
    LAUNCH_CONFIG,
    SUPERVISOR,
    CGROUPS,
    CLONED,
    MOUNTED,
    READY,
];

/// An injected failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("injected fault at step {0:?}")]
pub struct Injected(pub &'static str);

/// Fails if the fault file names `step`.
#[cfg(feature = "fault-injection")]
pub fn check(step: &'static str) -> Result<(), Injected> {
    let Some(path) = std::env::var_os(FILE_ENV) else {
        return Ok(());
    };
    match std::fs::read_to_string(path) {
        Ok(text) if text.trim() == step => Err(Injected(step)),
        _ => Ok(()),
    }
}

/// Without the feature: nothing is ever injected.
#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub fn check(_step: &'static str) -> Result<(), Injected> {
    Ok(())
}

/// Whether this build can inject faults.
pub const ENABLED: bool = cfg!(feature = "fault-injection");
