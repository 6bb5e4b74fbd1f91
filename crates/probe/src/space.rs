//! The namespace-like rows: PID, HOSTNAME, IPC, CGROUP.

use nix::errno::Errno;
use nix::sys::signal::kill;
use nix::unistd::Pid;
use sandboxd_core::Property;
use sandboxd_core::verify::{Finding, Observed, ProbeConfig};

use crate::sys;

/// PID: the daemon's and the supervisor's host pids must not name a
/// process the sandbox can see (`kill(pid, 0)`: ESRCH).
pub(crate) fn pid(config: &ProbeConfig) -> Finding {
    let mut evidence = vec![format!(
        "getpid() = {}, getppid() = {}",
        nix::unistd::getpid(),
        nix::unistd::getppid()
    )];
    let mut visible = false;
    let mut unclear = false;
    for (who, pid) in [
        ("daemon", config.daemon_pid),
        ("supervisor", config.supervisor_pid),
    ] {
        if pid <= 0 {
            continue;
        }
        let what = format!("kill({pid}, 0) (the {who}'s host pid)");
        match kill(Pid::from_raw(pid), None) {
            Err(Errno::ESRCH) => evidence.push(format!("{what}: ESRCH, not visible")),
            Ok(()) => {
                visible = true;
                evidence.push(format!("{what}: success, the process is visible"));
            }
            Err(Errno::EPERM) => {
                visible = true;
                evidence.push(format!(
                    "{what}: EPERM, the process exists and is visible (not signalable)"
                ));
            }
            Err(e) => {
                unclear = true;
                evidence.push(format!("{what}: {e}"));
            }
        }
    }
    if let Some(parent) = &config.shared_pid_with {
        // Evidence only: the host's processes decide the finding; this
        // shows the namespace is the pod's (the parent's pid 1 is pid 1).
        let what = format!("kill(1, 0) (the parent's pid 1, sandbox {parent}'s)");
        match kill(Pid::from_raw(1), None) {
            Ok(()) | Err(Errno::EPERM) => {
                evidence.push(format!("{what}: visible, the pid namespace is the pod's"));
            }
            Err(e) => evidence.push(format!(
                "{what}: {e}: not visible, the namespace is not the parent's"
            )),
        }
    }
    let observed = if visible {
        Observed::Violated
    } else if unclear {
        Observed::NotTestable
    } else {
        Observed::Holds
    };
    Finding::new(Property::Pid, observed, evidence)
}

/// HOSTNAME: `uname` must not show the host's name (and must show the
/// spec's, if it set one).
pub(crate) fn hostname(config: &ProbeConfig) -> Finding {
    let p = Property::Hostname;
    let name = match nix::sys::utsname::uname() {
        Ok(u) => u.nodename().to_string_lossy().into_owned(),
        Err(e) => return Finding::new(p, Observed::NotTestable, vec![format!("uname: {e}")]),
    };
    let mut evidence = vec![format!(
        "uname nodename = {name:?}; the host's is {:?}",
        config.host_hostname
    )];
    let observed = match &config.hostname {
        Some(want) if *want == config.host_hostname => {
            evidence.push("the spec's hostname is the host's: the two cannot be told apart".into());
            Observed::NotTestable
        }
        Some(want) if name != *want => {
            evidence.push(format!("the spec asked for {want:?}"));
            Observed::Violated
        }
        _ if name == config.host_hostname => Observed::Violated,
        _ => Observed::Holds,
    };
    Finding::new(p, observed, evidence)
}

/// IPC: a System V segment the daemon created on the host must not be
/// visible (`shmget(key, 0, 0)`: ENOENT).
pub(crate) fn ipc(config: &ProbeConfig) -> Finding {
    let p = Property::Ipc;
    let Some(key) = config.shm_key else {
        return Finding::new(
            p,
            Observed::NotTestable,
            vec!["the daemon could not create a System V segment on the host to look for".into()],
        );
    };
    let what = format!("shmget({key:#x}, 0, 0) for the daemon's host segment");
    let (observed, answer) = match sys::shm_lookup(key) {
        Ok(id) => (
            Observed::Violated,
            format!("id {id}: the host's segment is visible"),
        ),
        Err(Errno::EACCES) => (
            Observed::Violated,
            "EACCES: the host's segment exists here".to_owned(),
        ),
        Err(Errno::ENOENT) => (Observed::Holds, "ENOENT: not visible".to_owned()),
        Err(Errno::ENOSYS) => (
            Observed::Holds,
            "ENOSYS: no System V IPC in this sandbox".to_owned(),
        ),
        Err(e) => (Observed::NotTestable, e.to_string()),
    };
    Finding::new(p, observed, vec![format!("{what}: {answer}")])
}

/// CGROUP: the sandbox's own cgroup is its root (`/proc/self/cgroup` shows
/// "/" for every hierarchy). Linux with a /proc only.
pub(crate) fn cgroup() -> Finding {
    let p = Property::Cgroup;
    if !cfg!(target_os = "linux") {
        return Finding::new(
            p,
            Observed::NotTestable,
            vec!["this OS has no cgroups".into()],
        );
    }
    match std::fs::read_to_string("/proc/self/cgroup") {
        Err(e) => Finding::new(
            p,
            Observed::NotTestable,
            vec![format!(
                "/proc/self/cgroup: {e} (no /proc in this sandbox; the cgroup view cannot be read without it)"
            )],
        ),
        Ok(text) => {
            let outside: Vec<&str> = text
                .lines()
                .filter(|l| l.rsplit(':').next().is_some_and(|path| path != "/"))
                .collect();
            if outside.is_empty() {
                Finding::new(
                    p,
                    Observed::Holds,
                    vec![format!(
                        "/proc/self/cgroup: every hierarchy shows \"/\" ({} lines)",
                        text.lines().count()
                    )],
                )
            } else {
                Finding::new(
                    p,
                    Observed::Violated,
                    vec![format!(
                        "/proc/self/cgroup shows paths of the host's tree: {}",
                        outside.join(" | ")
                    )],
                )
            }
        }
    }
}
