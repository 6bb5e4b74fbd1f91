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
    fn own_parent() {
        let me = std::process::id();
        let parent = std::os::unix::process::parent_id();
        assert_eq!(ppid_of(me), Some(parent));
    }
}
