//! Hardening checks outside the matrix rows: no_new_privs, the capability
//! sets, and attempts that every sandbox must refuse (mounting, device
//! nodes, raw sockets, new namespaces, a second chroot). Each attempt that
//! could change something runs in a helper child or undoes itself.

use nix::errno::Errno;
use nix::sys::socket::{AddressFamily, SockFlag, SockProtocol, SockType, socket};
use sandboxd_core::verify::{Check, Observed, ProbeConfig};

use crate::{Budget, ChildEnd, in_child};

fn check(name: &str, expected: &str, observed: Observed, evidence: String) -> Check {
    Check {
        name: name.to_owned(),
        expected: expected.to_owned(),
        observed,
        evidence,
    }
}

/// A refused attempt: EPERM/EACCES hold, success is a violation.
fn refused(name: &str, expected: &str, what: &str, r: Result<(), Errno>) -> Check {
    let observed = match r {
        Ok(()) => Observed::Violated,
        Err(Errno::EPERM | Errno::EACCES) => Observed::Holds,
        Err(_) => Observed::NotTestable,
    };
    let answer = match r {
        Ok(()) => "succeeded".to_owned(),
        Err(e) => e.to_string(),
    };
    check(name, expected, observed, format!("{what}: {answer}"))
}

/// A refused attempt made in a child (its exit code is the errno).
fn refused_in_child(
    name: &str,
    expected: &str,
    what: &str,
    budget: Budget,
    f: impl FnOnce() -> Result<(), Errno>,
) -> Check {
    let Some(slice) = budget.slice() else {
        return check(
            name,
            expected,
            Observed::NotTestable,
            "the probe's time budget ran out".into(),
        );
    };
    match in_child(slice, || crate::code_of(f())) {
        ChildEnd::Exited(0) => refused(name, expected, what, Ok(())),
        ChildEnd::Exited(code) if code > 0 => {
            refused(name, expected, what, Err(Errno::from_raw(code)))
        }
        other => check(
            name,
            expected,
            Observed::NotTestable,
            format!("{what}: {other:?}"),
        ),
    }
}

/// Every hardening check for this OS.
pub(crate) fn checks(config: &ProbeConfig, budget: Budget) -> Vec<Check> {
    let root = nix::unistd::geteuid().is_root();
    let mut out = vec![no_new_privs()];
    out.extend(capabilities(config, root));
    out.push(mount(budget));
    out.push(mknod());
    out.push(refused(
        "raw socket",
        "socket(AF_INET, SOCK_RAW) fails: no raw packets",
        "socket(AF_INET, SOCK_RAW, IPPROTO_ICMP)",
        socket(
            AddressFamily::Inet,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC,
            SockProtocol::Icmp,
        )
        .map(drop)
        .map_err(|e| {
            if e == Errno::EPROTONOSUPPORT || e == Errno::EAFNOSUPPORT {
                Errno::EPERM
            } else {
                e
            }
        }),
    ));
    #[cfg(target_os = "linux")]
    {
        use nix::sched::{CloneFlags, unshare};
        out.push(refused_in_child(
            "unshare user namespace",
            "unshare(CLONE_NEWUSER) fails: no new user namespace from inside",
            "unshare(CLONE_NEWUSER) in a child",
            budget,
            || unshare(CloneFlags::CLONE_NEWUSER),
        ));
        out.push(refused_in_child(
            "unshare mount namespace",
            "unshare(CLONE_NEWNS) fails: no CAP_SYS_ADMIN",
            "unshare(CLONE_NEWNS) in a child",
            budget,
            || unshare(CloneFlags::CLONE_NEWNS),
        ));
    }
    // CAP_SYS_CHROOT (18) is in the Linux backend's default set: there the
    // mount namespace, not chroot, is the boundary. A jail's root may chroot.
    let chroot_allowed = root && (config.capabilities.contains(&18) || !cfg!(target_os = "linux"));
    if !chroot_allowed {
        out.push(refused_in_child(
            "chroot",
            "chroot(2) fails: no second chroot to escape the first",
            "chroot(\"/\") in a child",
            budget,
            || nix::unistd::chroot("/"),
        ));
    }
    out
}

fn no_new_privs() -> Check {
    let (name, expected) = ("no_new_privs", "set: exec can never gain privileges");
    #[cfg(target_os = "linux")]
    let got = nix::sys::prctl::get_no_new_privs();
    #[cfg(target_os = "freebsd")]
    let got = crate::sys::no_new_privs();
    #[cfg(not(any(target_os = "linux", target_os = "freebsd")))]
    let got: Result<bool, Errno> = Err(Errno::ENOSYS);
    match got {
        Ok(true) => check(name, expected, Observed::Holds, "set".into()),
        Ok(false) => check(name, expected, Observed::Violated, "not set".into()),
        Err(e) => check(name, expected, Observed::NotTestable, e.to_string()),
    }
}

#[cfg(target_os = "linux")]
fn capabilities(config: &ProbeConfig, root: bool) -> Vec<Check> {
    let allowed: u64 = config
        .capabilities
        .iter()
        .filter(|c| **c < 64)
        .fold(0, |m, c| m | (1u64 << c));
    let mut out = Vec::new();
    let name = "capabilities";
    let expected = if root {
        "effective and permitted sets within the sandbox's capability set"
    } else {
        "no effective or permitted capability (not uid 0)"
    };
    match crate::sys::capget() {
        Ok((eff, perm)) => {
            let limit = if root { allowed } else { 0 };
            let extra = (eff | perm) & !limit;
            out.push(check(
                name,
                expected,
                if extra == 0 {
                    Observed::Holds
                } else {
                    Observed::Violated
                },
                format!(
                    "capget: effective {eff:#x}, permitted {perm:#x}; allowed {limit:#x}{}",
                    if extra == 0 {
                        String::new()
                    } else {
                        format!("; beyond it: {extra:#x}")
                    }
                ),
            ));
        }
        Err(e) => out.push(check(
            name,
            expected,
            Observed::NotTestable,
            format!("capget: {e}"),
        )),
    }
    let mut bounding = 0u64;
    for cap in 0..64 {
        match crate::sys::capbset_read(cap) {
            Ok(true) => bounding |= 1 << cap,
            Ok(false) => {}
            Err(_) => break,
        }
    }
    let extra = bounding & !allowed;
    out.push(check(
        "bounding set",
        "within the sandbox's capability set",
        if extra == 0 {
            Observed::Holds
        } else {
            Observed::Violated
        },
        format!("PR_CAPBSET_READ: {bounding:#x}; allowed {allowed:#x}"),
    ));
    out
}

#[cfg(not(target_os = "linux"))]
fn capabilities(_config: &ProbeConfig, _root: bool) -> Vec<Check> {
    vec![check(
        "capabilities",
        "no capability sets on this OS",
        Observed::NotTestable,
        "POSIX capabilities are Linux's; a jail restricts root by its own rules".into(),
    )]
}

/// A mount is refused before it does anything: Linux `fsopen` checks
/// CAP_SYS_ADMIN first; FreeBSD `nmount` checks the jail's permission
/// before it looks the (nonexistent) path up.
fn mount(budget: Budget) -> Check {
    let (name, expected) = ("mount", "mounting fails: no CAP_SYS_ADMIN / allow.mount");
    #[cfg(target_os = "linux")]
    {
        let _ = budget;
        match crate::sys::fsopen(c"tmpfs") {
            Err(Errno::ENOSYS) => check(
                name,
                expected,
                Observed::NotTestable,
                "fsopen(\"tmpfs\"): ENOSYS (kernel before 5.2)".into(),
            ),
            r => refused(name, expected, "fsopen(\"tmpfs\")", r),
        }
    }
    #[cfg(target_os = "freebsd")]
    {
        refused_in_child(
            name,
            expected,
            "nmount(tmpfs on a nonexistent path) in a child",
            budget,
            || match nix::mount::Nmount::new()
                .str_opt_owned("fstype", "tmpfs")
                .str_opt_owned("fspath", "/nonexistent-sandboxd-probe")
                .nmount(nix::mount::MntFlags::empty())
            {
                Ok(()) => Ok(()),
                // The path was looked up: the mount itself was permitted.
                Err(e) if e.error() == Errno::ENOENT => Ok(()),
                Err(e) => Err(e.error()),
            },
        )
    }
    #[cfg(not(any(target_os = "linux", target_os = "freebsd")))]
    {
        let _ = budget;
        check(
            name,
            expected,
            Observed::NotTestable,
            "not probed on this OS".into(),
        )
    }
}

/// A character device node cannot be made.
fn mknod() -> Check {
    let (name, expected) = ("mknod", "creating a device node fails: no CAP_MKNOD");
    let dir = if std::path::Path::new("/tmp").is_dir() {
        "/tmp"
    } else {
        "."
    };
    let path = format!("{dir}/.sandboxd-probe-mknod-{}", nix::unistd::getpid());
    let r = nix::sys::stat::mknod(
        path.as_str(),
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::from_bits_truncate(0o600),
        // Any device: the node is never opened.
        259,
    );
    if r.is_ok() {
        let _ = nix::unistd::unlink(path.as_str());
    }
    match r {
        Err(e @ (Errno::EROFS | Errno::ENOENT)) => check(
            name,
            expected,
            Observed::NotTestable,
            format!("mknod({path:?}, S_IFCHR): {e} (no writable place to try)"),
        ),
        Err(Errno::EACCES) if !nix::unistd::geteuid().is_root() => check(
            name,
            expected,
            Observed::Holds,
            format!("mknod({path:?}, S_IFCHR): EACCES"),
        ),
        r => refused(name, expected, &format!("mknod({path:?}, S_IFCHR)"), r),
    }
}
