//! Test-only weakening of one isolation mechanism. Built with the `weaken`
//! feature, a step named in the comma-separated `SANDBOXD_WEAKEN`
//! environment variable is skipped, so a test can show that VerifySandbox
//! then observes the matching row VIOLATED (the probe is not a tautology).
//! Without the feature [`skip`] is an inline `false` and nothing is read.

/// The environment variable naming the steps to skip.
pub const ENV: &str = "SANDBOXD_WEAKEN";

/// Linux pid 1: skip `sethostname` (the UTS namespace keeps the host's
/// name): HOSTNAME becomes VIOLATED.
pub const SETHOSTNAME: &str = "sethostname";
/// Supervisor, every backend: skip `setrlimit` for payloads: the limit
/// rows OPEN_FILES_LIMIT and ADDRESS_SPACE_LIMIT become VIOLATED.
pub const RLIMITS: &str = "rlimits";

/// Linux supervisor: skip writing the sandbox's `cpu.weight` / `cpu.shares`
/// (it keeps the default): CPU_WEIGHT becomes VIOLATED.
pub const CPU_WEIGHT: &str = "cpu_weight";

/// Whether `step` is to be skipped.
#[cfg(feature = "weaken")]
pub fn skip(step: &str) -> bool {
    std::env::var(ENV).is_ok_and(|v| v.split(',').any(|s| s.trim() == step))
}

/// Without the feature: nothing is ever skipped.
#[cfg(not(feature = "weaken"))]
#[inline(always)]
pub fn skip(_step: &str) -> bool {
    false
}

/// Whether this build can weaken anything.
pub const ENABLED: bool = cfg!(feature = "weaken");
