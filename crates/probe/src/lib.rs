//! The isolation probe behind VerifySandbox.
//!
//! [`run`] is called in a child of the supervisor that has entered the
//! sandbox exactly as a payload does (namespaces or jail or chroot, session,
//! closed descriptors, capabilities, no_new_privs, rlimits, ids, cwd,
//! seccomp) and then, instead of exec, makes the checks here: plain system
//! calls, no /proc where a portable call exists, so the same code observes a
//! Linux namespace sandbox, a chroot and a FreeBSD jail. Nothing is copied
//! into the sandbox and nothing is left behind: what a check creates it
//! removes, and every helper process it forks is killed and reaped before
//! [`run`] returns.
//!
//! Every check has its own time budget (at most [`CHECK_BUDGET`]) inside the
//! whole probe's budget; a check that runs out says NOT_TESTABLE with why.
//! The calls that need `unsafe` (fork, `_exit`, SysV shm, capget/capset,
//! fsopen, ...) live in [`sys`]; the checks' own attempts are nix's safe
//! wrappers, made where the check stands. [`run`] forks: call it only in a
//! single-threaded process (the supervisor's forked child).

mod fs;
mod hardening;
mod limits;
mod net;
mod space;
pub mod sys;

use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use sandboxd_core::verify::{Finding, Observed, ProbeConfig, ProbeOutput, UserFacts};
use sandboxd_core::{Property, weaken};

/// The longest any single check may take.
pub const CHECK_BUDGET: Duration = Duration::from_secs(2);

/// The probe's clock: the whole budget, sliced per check.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Budget {
    deadline: Instant,
}

impl Budget {
    /// Time for the next check: at most [`CHECK_BUDGET`], `None` when the
    /// whole budget is spent.
    pub(crate) fn slice(&self) -> Option<Duration> {
        self.slice_of(CHECK_BUDGET)
    }

    /// Like [`Budget::slice`], with a different cap.
    pub(crate) fn slice_of(&self, max: Duration) -> Option<Duration> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        (!left.is_zero()).then(|| left.min(max))
    }
}

/// How a helper child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChildEnd {
    /// Exited with this code.
    Exited(i32),
    /// Killed by this signal.
    Signaled(Signal),
    /// Still running at the deadline; it was killed.
    TimedOut,
    /// fork failed.
    ForkFailed(nix::errno::Errno),
}

/// Runs `f` in a forked child (which dies with the probe) and waits at most
/// `timeout` for it; the child's return value is its exit code. A child
/// still running at the deadline is SIGKILLed and reaped.
pub(crate) fn in_child(timeout: Duration, f: impl FnOnce() -> i32) -> ChildEnd {
    // SAFETY: the probe runs in a child of the single-threaded supervisor
    // and never starts a thread.
    match unsafe { sys::fork() } {
        Err(e) => ChildEnd::ForkFailed(e),
        Ok(sys::Forked::Child) => {
            sys::die_with_parent();
            sys::exit_now(f())
        }
        Ok(sys::Forked::Parent(pid)) => wait_until(pid, Instant::now() + timeout),
    }
}

/// Waits for `pid` until `deadline`, then kills and reaps it.
pub(crate) fn wait_until(pid: Pid, deadline: Instant) -> ChildEnd {
    loop {
        match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, code)) => return ChildEnd::Exited(code),
            Ok(WaitStatus::Signaled(_, sig, _)) => return ChildEnd::Signaled(sig),
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(_) => return ChildEnd::Exited(-1),
        }
        if Instant::now() >= deadline {
            let _ = kill(pid, Signal::SIGKILL);
            let _ = waitpid(pid, None);
            return ChildEnd::TimedOut;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// An errno as a child's exit code (0 = the call succeeded).
pub(crate) fn code_of(r: Result<(), nix::errno::Errno>) -> i32 {
    match r {
        Ok(()) => 0,
        Err(e) => e as i32,
    }
}

/// The errno a child reported through its exit code.
pub(crate) fn errno_name(code: i32) -> String {
    if code == 0 {
        "success".into()
    } else {
        nix::errno::Errno::from_raw(code).desc().to_owned() + &format!(" (errno {code})")
    }
}

/// A finding for a check that had no time left.
pub(crate) fn out_of_time(property: Property) -> Finding {
    Finding::new(
        property,
        Observed::NotTestable,
        vec!["the probe's time budget ran out before this check".into()],
    )
}

/// Runs every check. `own_fds` are the probe's own descriptors (its report
/// pipe), which the descriptor check does not count.
pub fn run(config: &ProbeConfig, own_fds: &[RawFd]) -> ProbeOutput {
    let start = Instant::now();
    // What exec would have done to the capability sets (see the function).
    #[cfg(target_os = "linux")]
    let exec_caps = sys::caps_as_after_exec();
    let budget = Budget {
        deadline: start + Duration::from_millis(config.budget_ms),
    };
    let mut findings = vec![
        fs::filesystem(config, own_fds),
        space::pid(config),
        space::hostname(config),
        space::ipc(config),
        net::network(config, budget),
        space::cgroup(),
        limits::memory(config, budget),
        limits::pids(config, budget),
        limits::cpu(config, budget),
        limits::open_files(config, budget),
        limits::address_space(config, budget),
        fs::disk(config),
        fs::readonly_rootfs(config),
        fs::mounts(config),
    ];
    if weaken::ENABLED {
        // Visible in every report of a weakened build.
        if let Some(f) = findings.first_mut() {
            f.evidence.push(format!(
                "this daemon was built with the test-only `weaken` feature ({}={})",
                weaken::ENV,
                std::env::var(weaken::ENV).unwrap_or_default()
            ));
        }
    }
    #[allow(unused_mut)]
    let mut checks = hardening::checks(config, budget);
    #[cfg(target_os = "linux")]
    if let Err(e) = exec_caps {
        checks.push(sandboxd_core::verify::Check {
            name: "exec capability transition".into(),
            expected: "the probe's sets lowered as execve lowers a payload's".into(),
            observed: Observed::NotTestable,
            evidence: format!("capset: {e}; the capability checks saw the unlowered sets"),
        });
    }
    ProbeOutput {
        findings,
        checks,
        user: UserFacts {
            inside_uid: nix::unistd::geteuid().as_raw(),
            host_uid: None,
            uid_map: std::fs::read_to_string("/proc/self/uid_map").ok(),
        },
        elapsed_ms: u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX),
        // Read outside by the supervisor (a weight acts between cgroups,
        // so it is not visible from inside one): the CPU_WEIGHT row.
        cpu_weight: None,
    }
}
