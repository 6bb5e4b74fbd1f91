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

/// Destroy: the record is marked as being destroyed.
pub const DESTROY_MARKED: &str = "destroy marked";
/// Destroy: the supervisor is gone.
pub const DESTROY_STOPPED: &str = "destroy stopped";
/// Destroy: the host is clean, the record not yet removed.
pub const DESTROY_CLEANED: &str = "destroy cleaned";

/// Every destroy step, in order.
pub const DESTROY_STEPS: &[&str] = &[DESTROY_MARKED, DESTROY_STOPPED, DESTROY_CLEANED];

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

/// Fails if the fault file names `step`; aborts the whole process (a
/// crash, as kill -9 would: nothing is cleaned up) if it says
/// `crash:<step>`.
#[cfg(feature = "fault-injection")]
pub fn check(step: &'static str) -> Result<(), Injected> {
    let Some(path) = std::env::var_os(FILE_ENV) else {
        return Ok(());
    };
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let text = text.trim();
    if text.strip_prefix("crash:") == Some(step) {
        // Like kill -9: no destructor, no cleanup, no core file.
        std::process::exit(137);
    }
    if text == step {
        Err(Injected(step))
    } else {
        Ok(())
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
