//! Test-only fault injection. Built with the `fault-injection` feature,
//! every named step of a create checks whether the file named by
//! `SANDBOXD_FAULT_FILE` names it and, if so, fails right there as if the
//! step had failed. Without the feature [`check`] is an inline `Ok(())`
//! and no file is ever read.
//!
//! The file holds one directive per line: `<step>` fails the step every
//! time it is reached, `once:<step>` fails it the first time only (the
//! line is removed from the file as it fires), `crash:<step>` ends the
//! process there as kill -9 would.
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

/// Host cleanup (rollback of a failed create, destroy, and the cleanups
/// at start-up): fails before the backend undoes anything, as a cleanup
/// that cannot remove what the sandbox left on the host.
pub const CLEANUP: &str = "cleanup";

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

/// What the fault file says about one step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Directive {
    /// Nothing: the step proceeds.
    Proceed,
    /// Fail the step.
    Fail,
    /// Fail the step this once: the file is to be rewritten as `rest`.
    FailOnce {
        /// The file without the line that fired.
        rest: String,
    },
    /// End the process here.
    Crash,
}

/// Reads the fault file's `text` for `step` (see the module's
/// documentation for the directives). The first line naming the step
/// decides.
pub fn directive(text: &str, step: &str) -> Directive {
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    for (i, line) in lines.iter().enumerate() {
        if *line == step {
            return Directive::Fail;
        }
        if line.strip_prefix("crash:") == Some(step) {
            return Directive::Crash;
        }
        if line.strip_prefix("once:") == Some(step) {
            let rest: Vec<&str> = lines
                .iter()
                .enumerate()
                .filter(|(j, l)| *j != i && !l.is_empty())
                .map(|(_, l)| *l)
                .collect();
            let mut rest = rest.join("\n");
            if !rest.is_empty() {
                rest.push('\n');
            }
            return Directive::FailOnce { rest };
        }
    }
    Directive::Proceed
}

/// Fails if the fault file names `step` (`once:<step>`: this time only);
/// aborts the whole process (a crash, as kill -9 would: nothing is
/// cleaned up) if it says `crash:<step>`.
#[cfg(feature = "fault-injection")]
pub fn check(step: &'static str) -> Result<(), Injected> {
    let Some(path) = std::env::var_os(FILE_ENV) else {
        return Ok(());
    };
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    match directive(&text, step) {
        Directive::Proceed => Ok(()),
        Directive::Fail => Err(Injected(step)),
        Directive::FailOnce { rest } => {
            // A test file: if it cannot be rewritten the fault fires again,
            // and the test sees that.
            let _ = std::fs::write(&path, rest);
            Err(Injected(step))
        }
        // kill -9 itself: no destructor, no atexit handler (exit(3) runs
        // them while the runtime's other threads keep going), no core file.
        Directive::Crash => {
            let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
            // SIGKILL cannot be blocked or caught: not reached.
            std::process::abort()
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directives_fail_every_time_once_or_crash() {
        let cases: &[(&str, &str, Directive)] = &[
            ("", CLEANUP, Directive::Proceed),
            ("cleanup", CLEANUP, Directive::Fail),
            ("cleanup\n", CLEANUP, Directive::Fail),
            ("  cleanup  ", CLEANUP, Directive::Fail),
            ("cleanup", "clean", Directive::Proceed),
            ("crash:cleanup", CLEANUP, Directive::Crash),
            ("crash:cleanup", "crash", Directive::Proceed),
            (
                "launch config\nonce:cleanup\n",
                LAUNCH_CONFIG,
                Directive::Fail,
            ),
            (
                "launch config\nonce:cleanup\n",
                CLEANUP,
                Directive::FailOnce {
                    rest: "launch config\n".into(),
                },
            ),
            (
                "once:cleanup",
                CLEANUP,
                Directive::FailOnce {
                    rest: String::new(),
                },
            ),
            ("once:cleanup", READY, Directive::Proceed),
            // The first line naming the step decides.
            (
                "once:cleanup\ncleanup",
                CLEANUP,
                Directive::FailOnce {
                    rest: "cleanup\n".into(),
                },
            ),
        ];
        for (text, step, want) in cases {
            assert_eq!(&directive(text, step), want, "{text:?} {step}");
        }
    }
}
