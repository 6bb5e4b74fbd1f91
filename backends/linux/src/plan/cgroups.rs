//! The sandbox's cgroups: `sandboxd/<id>` under each hierarchy used, and the
//! limit writes for cgroup v2 and v1. The memory, pids and io controllers
//! are joined even without a limit, for accounting.

use std::path::{Path, PathBuf};

use sandboxd_core::ValidatedSpec;

use super::{CgroupPlan, CgroupWrite, Controller, HostFacts};

/// The cgroup directory of a sandbox relative to a hierarchy's root.
fn cgroup_dir(mount: &Path, id: &str) -> PathBuf {
    mount.join("sandboxd").join(id)
}

/// The cgroup directories and writes for the limits the host can enforce,
/// plus the accounting controllers (memory, pids, io) the host has. A limit whose controller is missing is left out here; the report says
/// NOT_ENFORCED and [`build`] refuses it when REQUIRED.
pub(super) fn cgroups(spec: &ValidatedSpec, id: &str, host: &HostFacts) -> CgroupPlan {
    let limits = spec.spec().limits;
    let cg = &host.cgroup;
    let mut plan = CgroupPlan::default();
    let mut v2_controllers = Vec::new();
    let mut v2_writes = Vec::new();
    let mut v1 = Vec::new();
    let mut add = |controller: &Option<Controller>,
                   name: &'static str,
                   v2: Vec<(&'static str, String)>,
                   v1_files: Vec<(&'static str, String)>| {
        match (controller, &cg.unified) {
            (Some(Controller::V2), Some(_)) => {
                v2_controllers.push(name);
                v2_writes.extend(v2.into_iter().map(|(f, v)| (f.to_owned(), v)));
            }
            (Some(Controller::V1 { mount }), _) => {
                let dir = cgroup_dir(mount, id);
                v1.push((dir, v1_files));
            }
            _ => {}
        }
    };
    // The quota and the weight share the cpu controller: one add, so its
    // directory and `+cpu` are listed once.
    let (mut cpu_v2, mut cpu_v1) = (Vec::new(), Vec::new());
    if let Some(l) = limits.cpu_millis {
        // 100 ms period; quota = millis * 100 µs, so 1000 millis = one CPU.
        let quota = l.value.saturating_mul(100).to_string();
        cpu_v2.push(("cpu.max", format!("{quota} 100000")));
        cpu_v1.push(("cpu.cfs_period_us", "100000".to_owned()));
        cpu_v1.push(("cpu.cfs_quota_us", quota));
    }
    if let Some(l) = limits.cpu_weight {
        // Weight on v2's scale; v1 shares scaled so 100 = the default 1024.
        cpu_v2.push(("cpu.weight", l.value.to_string()));
        cpu_v1.push((
            "cpu.shares",
            sandboxd_core::spec::cpu_shares_of_weight(l.value).to_string(),
        ));
    }
    if !cpu_v2.is_empty() {
        add(&cg.cpu, "cpu", cpu_v2, cpu_v1);
    }
    if let Some(l) = limits.memory_bytes {
        let bytes = l.value.to_string();
        let mut v2 = vec![("memory.max", bytes.clone())];
        // limit_in_bytes first: the kernel rejects memsw below it.
        let mut v1 = vec![("memory.limit_in_bytes", bytes.clone())];
        if cg.swap_accounting {
            v2.push(("memory.swap.max", "0".to_owned()));
            // memsw counts memory + swap, so equal to the limit means no swap.
            v1.push(("memory.memsw.limit_in_bytes", bytes));
        }
        add(&cg.memory, "memory", v2, v1);
    }
    if let Some(l) = limits.pids {
        let n = l.value.to_string();
        add(
            &cg.pids,
            "pids",
            vec![("pids.max", n.clone())],
            vec![("pids.max", n)],
        );
    }
    // Accounting, with or without a limit (GetSandbox's usage, the
    // metrics): the sandbox also joins the memory, pids and io controllers
    // the host has; one with no limit written only counts.
    for (controller, v2_name) in [(&cg.memory, "memory"), (&cg.pids, "pids"), (&cg.io, "io")] {
        match (controller, &cg.unified) {
            (Some(Controller::V2), Some(_)) if !v2_controllers.contains(&v2_name) => {
                v2_controllers.push(v2_name);
            }
            (Some(Controller::V1 { mount }), _) => {
                let dir = cgroup_dir(mount, id);
                if !v1.iter().any(|(d, _)| *d == dir) {
                    v1.push((dir, Vec::new()));
                }
            }
            _ => {}
        }
    }
    if let Some(unified) = &cg.unified {
        let dir = cgroup_dir(unified, id);
        if !v2_controllers.is_empty() {
            // A controller reaches sandboxd/<id> only if every ancestor
            // enables it for its children: the root (usually done by the
            // init system already; writing it again is harmless) and
            // sandboxd/.
            let enable: Vec<String> = v2_controllers.iter().map(|c| format!("+{c}")).collect();
            for parent in [
                unified.join("cgroup.subtree_control"),
                unified.join("sandboxd").join("cgroup.subtree_control"),
            ] {
                plan.writes.push(CgroupWrite {
                    file: parent,
                    value: enable.join(" "),
                });
            }
        }
        plan.writes
            .extend(v2_writes.into_iter().map(|(f, value)| CgroupWrite {
                file: dir.join(f),
                value,
            }));
        plan.dirs.push(dir);
    }
    for (dir, files) in v1 {
        plan.writes
            .extend(files.into_iter().map(|(f, value)| CgroupWrite {
                file: dir.join(f),
                value,
            }));
        plan.dirs.push(dir);
    }
    plan
}

/// CPU time in microseconds from a v2 `cpu.stat` ("usage_usec N" line).
pub fn parse_cpu_stat(text: &str) -> Option<u64> {
    text.lines()
        .filter_map(|l| l.split_once(' '))
        .find(|(k, _)| *k == "usage_usec")
        .and_then(|(_, v)| v.trim().parse().ok())
}

/// Bytes read and written, summed over devices, from a v2 `io.stat`
/// ("MAJ:MIN rbytes=N wbytes=N rios=N ..."). An empty file (no I/O yet)
/// is zero: the controller is there and counted nothing.
pub fn parse_io_stat(text: &str) -> Option<(u64, u64)> {
    let (mut read, mut written) = (0u64, 0u64);
    for line in text.lines() {
        for kv in line.split_whitespace().skip(1) {
            let (k, v) = kv.split_once('=')?;
            let n: u64 = v.parse().ok()?;
            match k {
                "rbytes" => read = read.saturating_add(n),
                "wbytes" => written = written.saturating_add(n),
                _ => {}
            }
        }
    }
    Some((read, written))
}

/// Bytes read and written from a v1 `blkio.throttle.io_service_bytes`
/// ("MAJ:MIN Read N", "MAJ:MIN Write N", ..., "Total N"), summed over
/// devices.
pub fn parse_blkio_bytes(text: &str) -> Option<(u64, u64)> {
    let (mut read, mut written) = (0u64, 0u64);
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        match f.as_slice() {
            [_, "Read", n] => read = read.saturating_add(n.parse().ok()?),
            [_, "Write", n] => written = written.saturating_add(n.parse().ok()?),
            [_, _, n] | ["Total", n] => {
                n.parse::<u64>().ok()?;
            }
            [] => {}
            _ => return None,
        }
    }
    Some((read, written))
}
