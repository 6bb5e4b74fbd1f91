//! The limit rows. Each exceeds its limit on purpose, in helper children,
//! within a bounded time and size: MEMORY_LIMIT allocates up to the limit
//! plus a margin, PIDS_LIMIT forks up to the limit plus a few, CPU_LIMIT
//! spins for a second, and the rlimit rows read the limit and try to raise
//! or exceed it.

use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::resource::{Resource, getrlimit, setrlimit};
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::waitpid;
use sandboxd_core::Property;
use sandboxd_core::verify::{Finding, Observed, ProbeConfig};

use crate::{Budget, ChildEnd, errno_name, in_child, out_of_time, sys};

/// The largest memory limit the probe tests (it allocates that much).
pub(crate) const MAX_MEMORY_TEST: u64 = 512 << 20;
/// The largest pids limit the probe tests (it forks that many).
pub(crate) const MAX_PIDS_TEST: u64 = 1024;

fn not_set(p: Property, what: &str) -> Finding {
    Finding::new(
        p,
        Observed::NotApplicable,
        vec![format!("the spec sets no {what}")],
    )
}

/// MEMORY_LIMIT: a child touches limit + margin bytes; the limit holds if
/// it is killed (the OOM killer) or refused memory before.
pub(crate) fn memory(config: &ProbeConfig, budget: Budget) -> Finding {
    let p = Property::MemoryLimit;
    let Some(limit) = config.limits.memory_bytes else {
        return not_set(p, "memory limit");
    };
    if limit > MAX_MEMORY_TEST {
        return Finding::new(
            p,
            Observed::NotTestable,
            vec![format!(
                "the limit ({limit} bytes) is above what the probe allocates ({MAX_MEMORY_TEST} bytes)"
            )],
        );
    }
    let margin = (limit / 4).max(16 << 20);
    let target = limit + margin;
    if let Some(rl) = config.limits.address_space_bytes {
        if rl < target + (64 << 20) {
            return Finding::new(
                p,
                Observed::NotTestable,
                vec![format!(
                    "address_space_bytes ({rl}) would stop the test allocation ({target} bytes) before the memory limit could"
                )],
            );
        }
    }
    // The sandbox's CPU quota slows the allocating child as well: give it
    // proportionally longer (at most 8 s).
    let stretch = config
        .limits
        .cpu_millis
        .map_or(1.0, |m| (1000.0 / m.max(1) as f64).clamp(1.0, 4.0));
    let Some(slice) = budget.slice_of(crate::CHECK_BUDGET.mul_f64(stretch)) else {
        return out_of_time(p);
    };
    let chunk: usize = 1 << 20;
    let end = in_child(slice, || {
        // Volunteer as the OOM killer's first choice: only a uid-0 probe
        // can (non-dumpable, its /proc files are root's); either way this
        // child is the largest process by design.
        let _ = std::fs::write("/proc/self/oom_score_adj", "1000");
        let mut held: Vec<Vec<u8>> = Vec::new();
        let mut total = 0u64;
        while total < target {
            let mut v = Vec::new();
            if v.try_reserve_exact(chunk).is_err() {
                return 2;
            }
            // Written, so every page is really charged.
            v.resize(chunk, 0xa5);
            held.push(v);
            total += chunk as u64;
        }
        0
    });
    let tried =
        format!("a child allocated and wrote up to {target} bytes (limit {limit} + {margin})");
    let (observed, answer) = match end {
        ChildEnd::Exited(0) => (Observed::Violated, "it got all of it".to_owned()),
        ChildEnd::Exited(2) => (Observed::Holds, "an allocation was refused".to_owned()),
        ChildEnd::Signaled(Signal::SIGKILL) => (
            Observed::Holds,
            "it was SIGKILLed (the OOM killer) before getting it all".to_owned(),
        ),
        ChildEnd::Signaled(Signal::SIGABRT) => {
            (Observed::Holds, "an allocation failed (abort)".to_owned())
        }
        ChildEnd::TimedOut => (
            Observed::NotTestable,
            format!("it did not finish within {slice:?}"),
        ),
        other => (Observed::NotTestable, format!("{other:?}")),
    };
    Finding::new(p, observed, vec![format!("{tried}: {answer}")])
}

/// PIDS_LIMIT: fork up to the limit plus a few children; the limit holds
/// if fork fails first.
pub(crate) fn pids(config: &ProbeConfig, budget: Budget) -> Finding {
    let p = Property::PidsLimit;
    let Some(limit) = config.limits.pids else {
        return not_set(p, "pids limit");
    };
    if limit > MAX_PIDS_TEST {
        return Finding::new(
            p,
            Observed::NotTestable,
            vec![format!(
                "the limit ({limit}) is above what the probe forks ({MAX_PIDS_TEST})"
            )],
        );
    }
    let Some(slice) = budget.slice() else {
        return out_of_time(p);
    };
    let deadline = Instant::now() + slice;
    let want = limit + 2;
    let mut children = Vec::new();
    let mut stopped = None;
    while (children.len() as u64) < want {
        if Instant::now() >= deadline {
            stopped = Some("the time budget ran out".to_owned());
            break;
        }
        // SAFETY: the probe is single-threaded (see `in_child`).
        match unsafe { sys::fork() } {
            Ok(sys::Forked::Child) => {
                sys::die_with_parent();
                loop {
                    nix::unistd::pause();
                }
            }
            Ok(sys::Forked::Parent(pid)) => children.push(pid),
            Err(e) => {
                stopped = Some(format!("fork failed: {e}"));
                break;
            }
        }
    }
    let made = children.len() as u64;
    for pid in &children {
        let _ = kill(*pid, Signal::SIGKILL);
    }
    for pid in &children {
        let _ = waitpid(*pid, None);
    }
    let tried = format!("forked up to {want} children (limit {limit}, the probe itself counts)");
    let (observed, answer) = match stopped {
        _ if made >= want => (Observed::Violated, format!("all {made} started")),
        Some(why) if why.starts_with("fork failed") => {
            (Observed::Holds, format!("{made} started, then {why}"))
        }
        Some(why) => (Observed::NotTestable, format!("{made} started, then {why}")),
        None => (Observed::NotTestable, format!("{made} started")),
    };
    Finding::new(p, observed, vec![format!("{tried}: {answer}")])
}

/// CPU_LIMIT: children spin for one second of wall time; together they
/// must not get much more CPU time than the quota allows.
pub(crate) fn cpu(config: &ProbeConfig, budget: Budget) -> Finding {
    let p = Property::CpuLimit;
    let Some(millis) = config.limits.cpu_millis else {
        return not_set(p, "CPU quota");
    };
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as u64);
    // One spinner more than the quota needs (at most the CPUs there are):
    // without a quota they would get more than it allows.
    let spinners = (millis.div_ceil(1000) + 1).min(cpus);
    if millis >= spinners * 1000 {
        return Finding::new(
            p,
            Observed::NotTestable,
            vec![format!(
                "the quota ({millis} milli-CPUs) is at least the {spinners} CPUs the probe can keep busy here"
            )],
        );
    }
    let Some(slice) = budget.slice() else {
        return out_of_time(p);
    };
    let spin = Duration::from_millis(1000).min(slice.saturating_sub(Duration::from_millis(200)));
    if spin < Duration::from_millis(300) {
        return out_of_time(p);
    }
    let before = cpu_of_children();
    let start = Instant::now();
    let mut pids = Vec::new();
    for _ in 0..spinners {
        // SAFETY: the probe is single-threaded (see `in_child`).
        match unsafe { sys::fork() } {
            Ok(sys::Forked::Child) => {
                sys::die_with_parent();
                let until = Instant::now() + spin;
                let mut x: u64 = 1;
                while Instant::now() < until {
                    x = std::hint::black_box(
                        x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1),
                    );
                }
                sys::exit_now(0)
            }
            Ok(sys::Forked::Parent(pid)) => pids.push(pid),
            Err(e) => {
                for pid in &pids {
                    let _ = kill(*pid, Signal::SIGKILL);
                    let _ = waitpid(*pid, None);
                }
                return Finding::new(p, Observed::NotTestable, vec![format!("fork: {e}")]);
            }
        }
    }
    for pid in &pids {
        let _ = waitpid(*pid, None);
    }
    let wall = start.elapsed();
    let used = cpu_of_children().saturating_sub(before);
    let allowed = wall.as_secs_f64() * millis as f64 / 1000.0;
    let got = used.as_secs_f64();
    // CFS enforces per 100 ms period: allow one period of slack and 50 %.
    let holds = got <= allowed * 1.5 + 0.1;
    Finding::new(
        p,
        if holds {
            Observed::Holds
        } else {
            Observed::Violated
        },
        vec![format!(
            "{spinners} children spun for {:.2} s of wall time and got {got:.2} s of CPU; the quota allows {allowed:.2} s",
            wall.as_secs_f64()
        )],
    )
}

fn cpu_of_children() -> Duration {
    nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN)
        .map(|u| {
            let t = |tv: nix::sys::time::TimeVal| {
                Duration::from_secs(u64::try_from(tv.tv_sec()).unwrap_or(0))
                    + Duration::from_micros(u64::try_from(tv.tv_usec()).unwrap_or(0))
            };
            t(u.user_time()) + t(u.system_time())
        })
        .unwrap_or_default()
}

/// Reads an rlimit, compares it with the spec's value, and tries (in a
/// child) to raise it; `extra` exceeds it.
fn rlimit_row(
    p: Property,
    resource: Resource,
    name: &str,
    value: u64,
    budget: Budget,
    extra: impl FnOnce(u64) -> (bool, String),
) -> Finding {
    let Some(slice) = budget.slice() else {
        return out_of_time(p);
    };
    let mut evidence = Vec::new();
    let mut violated = false;
    match getrlimit(resource) {
        Ok((soft, hard)) => {
            #[allow(clippy::useless_conversion)]
            let (soft, hard) = (
                u64::try_from(soft).unwrap_or(u64::MAX),
                u64::try_from(hard).unwrap_or(u64::MAX),
            );
            if soft != value || hard != value {
                violated = true;
            }
            evidence.push(format!(
                "getrlimit({name}) = soft {soft}, hard {hard}; the spec sets {value}"
            ));
        }
        Err(e) => {
            return Finding::new(
                p,
                Observed::NotTestable,
                vec![format!("getrlimit({name}): {e}")],
            );
        }
    }
    let raised = value.saturating_add(1);
    let end = in_child(slice, || {
        #[allow(clippy::useless_conversion)]
        let v = raised
            .try_into()
            .unwrap_or(nix::sys::resource::RLIM_INFINITY);
        crate::code_of(setrlimit(resource, v, v))
    });
    match end {
        ChildEnd::Exited(0) => {
            violated = true;
            evidence.push(format!(
                "setrlimit({name}, {raised}) in a child: succeeded, the limit can be raised"
            ));
        }
        ChildEnd::Exited(code) => evidence.push(format!(
            "setrlimit({name}, {raised}) in a child: {}",
            errno_name(code)
        )),
        other => evidence.push(format!("setrlimit({name}) in a child: {other:?}")),
    }
    let (exceeded, what) = extra(value);
    violated |= exceeded;
    evidence.push(what);
    Finding::new(
        p,
        if violated {
            Observed::Violated
        } else {
            Observed::Holds
        },
        evidence,
    )
}

/// OPEN_FILES_LIMIT: RLIMIT_NOFILE is the spec's value and cannot be
/// raised; a descriptor numbered at the limit cannot be made.
pub(crate) fn open_files(config: &ProbeConfig, budget: Budget) -> Finding {
    let p = Property::OpenFilesLimit;
    let Some(value) = config.limits.open_files else {
        return not_set(p, "open-files limit");
    };
    rlimit_row(
        p,
        Resource::RLIMIT_NOFILE,
        "RLIMIT_NOFILE",
        value,
        budget,
        |v| {
            let Ok(target) = i32::try_from(v) else {
                return (false, format!("descriptor {v}: beyond what fcntl can name"));
            };
            match nix::fcntl::fcntl(
                crate::sys::borrow(0),
                nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(target),
            ) {
                Ok(fd) => {
                    let _ = nix::unistd::close(fd);
                    (
                        true,
                        format!("F_DUPFD to descriptor {v}: succeeded, past the limit"),
                    )
                }
                Err(e) => (false, format!("F_DUPFD to descriptor {v}: {e}")),
            }
        },
    )
}

/// ADDRESS_SPACE_LIMIT: RLIMIT_AS is the spec's value and cannot be raised;
/// reserving that much address space fails.
pub(crate) fn address_space(config: &ProbeConfig, budget: Budget) -> Finding {
    let p = Property::AddressSpaceLimit;
    let Some(value) = config.limits.address_space_bytes else {
        return not_set(p, "address-space limit");
    };
    #[cfg(target_os = "freebsd")]
    let (resource, name) = (Resource::RLIMIT_VMEM, "RLIMIT_VMEM");
    #[cfg(not(target_os = "freebsd"))]
    let (resource, name) = (Resource::RLIMIT_AS, "RLIMIT_AS");
    rlimit_row(p, resource, name, value, budget, |v| {
        let Ok(bytes) = usize::try_from(v) else {
            return (
                false,
                format!("reserve {v} bytes: more than this platform can name"),
            );
        };
        // Reserved, never written: no memory is used if it succeeds.
        let mut probe: Vec<u8> = Vec::new();
        match probe.try_reserve_exact(bytes) {
            Ok(()) => (
                true,
                format!("reserving {v} bytes of address space: succeeded"),
            ),
            Err(_) => (
                false,
                format!(
                    "reserving {v} bytes of address space: refused ({})",
                    Errno::ENOMEM
                ),
            ),
        }
    })
}
