//! Memory and process-tree readings from `/proc`.

use std::path::Path;

use anyhow::Context;

/// A field of `/proc/<pid>/status` in KiB (e.g. `VmRSS`).
pub(crate) fn status_kib(pid: u32, field: &str) -> anyhow::Result<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    kib_field(&text, field).with_context(|| format!("no {field} in /proc/{pid}/status"))
}

/// `Pss` from `/proc/<pid>/smaps_rollup` in KiB: resident memory with shared
/// pages divided among their sharers, so summing it over processes does not
/// count the shared binary once per process the way RSS does.
pub(crate) fn pss_kib(pid: u32) -> anyhow::Result<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .with_context(|| format!("reading /proc/{pid}/smaps_rollup"))?;
    text.lines()
        .find_map(|l| l.strip_prefix("Pss:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .with_context(|| format!("no Pss in /proc/{pid}/smaps_rollup"))
}

/// `MemAvailable` from `/proc/meminfo` in KiB.
pub(crate) fn mem_available_kib() -> anyhow::Result<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").context("reading /proc/meminfo")?;
    kib_field(&text, "MemAvailable").context("no MemAvailable in /proc/meminfo")
}

/// The host's busy CPU time so far, summed over CPUs, from the `cpu` line
/// of `/proc/stat`: user, nice, system, irq and softirq time; not idle,
/// iowait or steal (time the hypervisor gave to someone else, which says
/// nothing about the work done here). Guest time is part of user already.
pub(crate) fn busy_cpu() -> Option<std::time::Duration> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    busy_of(&text)
}

/// Parses the busy time out of `/proc/stat`'s text (see [`busy_cpu`]).
fn busy_of(text: &str) -> Option<std::time::Duration> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    // user nice system idle iowait irq softirq steal ...
    let busy = [0, 1, 2, 5, 6]
        .iter()
        .map(|i| ticks.get(*i).copied())
        .sum::<Option<u64>>()?;
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok()??;
    let hz = u64::try_from(hz).ok().filter(|h| *h > 0)?;
    Some(std::time::Duration::from_nanos(
        busy.saturating_mul(1_000_000_000) / hz,
    ))
}

/// Parses `Name:   1234 kB` out of a `/proc` key-value file.
fn kib_field(text: &str, field: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(field)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// The pids whose parent is `parent`, found by the ppid field of
/// `/proc/<pid>/stat` (never by name).
pub(crate) fn children_of(parent: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| ppid_of(*pid) == Some(parent))
        .collect()
}

/// Whether `pid` is the daemon's zygote (`<exe> __zygote`, by its
/// arguments as the daemon finds its supervisors), which forks the
/// supervisors and lives as long as the daemon: counted with the daemon,
/// not as a helper.
pub(crate) fn is_zygote(pid: u32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .is_ok_and(|args| args.split(|b| *b == 0).nth(1) == Some(b"__zygote".as_slice()))
}

/// The parent pid from `/proc/<pid>/stat`; the command name (field 2) may
/// contain spaces and parentheses, so parse after the last `)`.
fn ppid_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(1)?.parse().ok()
}

/// A process's CPU time from `/proc/<pid>/stat`: its own (user + system)
/// and that of the children it has waited for, which includes their
/// children's in turn.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ProcCpu {
    /// utime + stime.
    pub(crate) own: std::time::Duration,
    /// cutime + cstime.
    pub(crate) reaped: std::time::Duration,
}

/// [`ProcCpu`] of `pid`, None if it cannot be read.
pub(crate) fn proc_cpu(pid: u32) -> Option<ProcCpu> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok()??;
    proc_cpu_of(&stat, u64::try_from(hz).ok().filter(|h| *h > 0)?)
}

/// Parses [`ProcCpu`] out of a `/proc/<pid>/stat` line, in ticks of `hz`:
/// fields 14-17 (utime, stime, cutime, cstime), counted after the command
/// name's last `)`, as it may hold spaces and parentheses.
fn proc_cpu_of(stat: &str, hz: u64) -> Option<ProcCpu> {
    let after = &stat[stat.rfind(')')? + 1..];
    // Field 3 (the state) is the first after the name: 14-17 are 11-14.
    let ticks: Vec<u64> = after
        .split_whitespace()
        .skip(11)
        .take(4)
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    let [utime, stime, cutime, cstime] = ticks[..] else {
        return None;
    };
    let time = |t: u64| std::time::Duration::from_nanos(t.saturating_mul(1_000_000_000) / hz);
    Some(ProcCpu {
        own: time(utime + stime),
        reaped: time(cutime + cstime),
    })
}

/// Whether anything is mounted at or below `dir` (in this mount namespace).
pub(crate) fn mounts_under(dir: &Path) -> Vec<String> {
    let needle = dir.display().to_string();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter(|l| {
            l.split_whitespace()
                .nth(4)
                .is_some_and(|m| m.starts_with(&needle))
        })
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status_fields() {
        let text = "Name:\tsandboxd\nVmRSS:\t    9876 kB\nVmRSSx:\t1 kB\n";
        assert_eq!(kib_field(text, "VmRSS"), Some(9876));
        assert_eq!(kib_field(text, "VmHWM"), None);
    }

    #[test]
    fn busy_time_leaves_out_idle_iowait_and_steal() {
        let hz = u64::try_from(
            nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
                .unwrap()
                .unwrap(),
        )
        .unwrap();
        // user nice system idle iowait irq softirq steal guest guest_nice
        let text = "cpu  100 1 20 5000 7 2 3 900 0 0\ncpu0 50 0 10 2500 3 1 1 450 0 0\n";
        let busy = busy_of(text).unwrap();
        assert_eq!(
            busy,
            std::time::Duration::from_secs(126) / u32::try_from(hz).unwrap()
        );
        assert_eq!(busy_of("intr 1 2 3\n"), None);
        assert_eq!(busy_of("cpu  1 x 3\n"), None);
    }

    #[test]
    fn cpu_times_come_from_fields_14_to_17() {
        let ms = std::time::Duration::from_millis;
        let cases: &[(&str, Option<(u64, u64)>)] = &[
            (
                "42 (sandboxd) S 1 42 42 0 -1 4194560 900 0 0 0 30 12 7 5 20 0 3 0 100 1000 200",
                Some((420, 120)),
            ),
            // A name with spaces and parentheses.
            (
                "7 (a) b (c) R 1 7 7 0 -1 0 0 0 0 0 1 2 3 4 20 0 1 0 1 1 1",
                Some((30, 70)),
            ),
            ("7 (short) R 1 7 7 0 -1 0 0 0 0 0 1 2", None),
            ("7 (bad) R 1 7 7 0 -1 0 0 0 0 0 1 x 3 4 20", None),
            ("no name", None),
        ];
        for (stat, want) in cases {
            let got = proc_cpu_of(stat, 100);
            assert_eq!(
                got,
                want.map(|(own, reaped)| ProcCpu {
                    own: ms(own),
                    reaped: ms(reaped)
                }),
                "{stat}"
            );
        }
    }

    #[test]
    fn own_parent() {
        let me = std::process::id();
        let parent = std::os::unix::process::parent_id();
        assert_eq!(ppid_of(me), Some(parent));
    }
}
