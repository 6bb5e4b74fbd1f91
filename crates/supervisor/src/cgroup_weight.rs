//! VerifySandbox's CPU_WEIGHT row: the cpu controller's weight file of the
//! probe's cgroup, read from outside. A weight only divides CPU time between
//! cgroups, so a process cannot see its own from inside one sandbox; the
//! supervisor reads it on the host side while the probe runs (cgroup v1
//! shows an exiting task in "/"). The parsers are pure; only [`read`]
//! touches the host (Linux; elsewhere there is no cgroup to read).

use sandboxd_core::verify::CpuWeightFacts;

/// The process's cgroup in the cpu controller's hierarchy, from the text of
/// `/proc/<pid>/cgroup`: a v1 line whose controllers include `cpu`
/// (`4:cpu,cpuacct:/sandboxd/<id>`), else the v2 line (`0::/path`).
/// Returns whether it is v1, and the path.
#[cfg(any(target_os = "linux", test))]
pub(crate) fn cpu_cgroup(proc_cgroup: &str) -> Option<(bool, String)> {
    let mut v2 = None;
    for line in proc_cgroup.lines() {
        let mut f = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        if controllers.split(',').any(|c| c == "cpu") {
            return Some((true, path.to_owned()));
        }
        if id == "0" && controllers.is_empty() {
            v2 = Some((false, path.to_owned()));
        }
    }
    v2
}

/// The host directory of cgroup `path`, from the text of
/// `/proc/self/mountinfo`: the v1 hierarchy whose super options include
/// `cpu`, or the cgroup2 mount. A mount of a subtree (its root field is
/// not `/`) serves only paths below that root.
#[cfg(any(target_os = "linux", test))]
pub(crate) fn cgroup_dir(mountinfo: &str, v1: bool, path: &str) -> Option<String> {
    for line in mountinfo.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let left: Vec<&str> = left.split(' ').collect();
        let right: Vec<&str> = right.split(' ').collect();
        let (Some(root), Some(mount), Some(fstype)) = (left.get(3), left.get(4), right.first())
        else {
            continue;
        };
        let ours = if v1 {
            *fstype == "cgroup"
                && right
                    .get(2)
                    .is_some_and(|o| o.split(',').any(|o| o == "cpu"))
        } else {
            *fstype == "cgroup2"
        };
        if !ours {
            continue;
        }
        let below = if *root == "/" {
            Some(path)
        } else {
            path.strip_prefix(root)
                .filter(|rest| rest.is_empty() || rest.starts_with('/'))
        };
        if let Some(rest) = below {
            return Some(format!("{}{rest}", mount.trim_end_matches('/')));
        }
    }
    None
}

/// The weight file of process `pid`'s cpu cgroup and its value (Linux);
/// `None` where no cpu cgroup can be found for it.
#[cfg(target_os = "linux")]
pub(crate) fn read(pid: nix::unistd::Pid) -> Option<CpuWeightFacts> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let (v1, cgroup) = cpu_cgroup(&text)?;
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let dir = cgroup_dir(&mountinfo, v1, &cgroup)?;
    let file = format!("{dir}/{}", if v1 { "cpu.shares" } else { "cpu.weight" });
    let value = std::fs::read_to_string(&file)
        .map_err(|e| e.to_string())
        .and_then(|v| v.trim().parse::<u64>().map_err(|e| format!("{v:?}: {e}")));
    Some(CpuWeightFacts {
        cgroup,
        file,
        v1_shares: v1,
        value,
    })
}

/// Elsewhere: no cgroups.
#[cfg(not(target_os = "linux"))]
pub(crate) fn read(_pid: nix::unistd::Pid) -> Option<CpuWeightFacts> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cpu_cgroup_of_a_process() {
        let hybrid = "12:pids:/sandboxd/ab\n4:cpu,cpuacct:/sandboxd/ab\n1:name=systemd:/x\n0::/sandboxd/ab\n";
        assert_eq!(cpu_cgroup(hybrid), Some((true, "/sandboxd/ab".into())));
        // cpuset is not cpu.
        let v2 = "3:cpuset:/other\n0::/sandboxd/cd\n";
        assert_eq!(cpu_cgroup(v2), Some((false, "/sandboxd/cd".into())));
        assert_eq!(cpu_cgroup("5:memory:/m\n"), None);
    }

    #[test]
    fn the_hierarchy_holding_it() {
        let mi = "\
30 25 0:26 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw,nsdelegate
33 25 0:29 / /sys/fs/cgroup/cpuset rw,nosuid - cgroup cgroup rw,cpuset
34 25 0:30 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid - cgroup cgroup rw,cpu,cpuacct
40 25 0:31 /sub /mnt/sub rw - cgroup2 cgroup2 rw
";
        let cases: &[(bool, &str, Option<&str>)] = &[
            (
                true,
                "/sandboxd/ab",
                Some("/sys/fs/cgroup/cpu,cpuacct/sandboxd/ab"),
            ),
            (
                false,
                "/sandboxd/ab",
                Some("/sys/fs/cgroup/unified/sandboxd/ab"),
            ),
        ];
        for (v1, path, want) in cases {
            assert_eq!(cgroup_dir(mi, *v1, path).as_deref(), *want, "{v1} {path}");
        }
        // Only the subtree mount: paths below its root, not beside it.
        let sub = "40 25 0:31 /sub /mnt/sub rw - cgroup2 cgroup2 rw\n";
        assert_eq!(
            cgroup_dir(sub, false, "/sub/x").as_deref(),
            Some("/mnt/sub/x")
        );
        assert_eq!(cgroup_dir(sub, false, "/subx"), None);
        assert_eq!(cgroup_dir(sub, true, "/sub/x"), None);
    }
}
