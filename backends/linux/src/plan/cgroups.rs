//! The sandbox's cgroups: `sandboxd/<id>` under each hierarchy used, and the
//! limit writes for cgroup v2 and v1.

use std::path::{Path, PathBuf};

use sandboxd_core::ValidatedSpec;

use super::{CgroupPlan, CgroupWrite, Controller, HostFacts};

/// The cgroup directory of a sandbox relative to a hierarchy's root.
fn cgroup_dir(mount: &Path, id: &str) -> PathBuf {
    mount.join("sandboxd").join(id)
}

/// The cgroup directories and writes for the limits the host can enforce.
/// A limit whose controller is missing is left out here; the report says
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
    if let Some(l) = limits.cpu_millis {
        // 100 ms period; quota = millis * 100 µs, so 1000 millis = one CPU.
        let quota = l.value.saturating_mul(100).to_string();
        add(
            &cg.cpu,
            "cpu",
            vec![("cpu.max", format!("{quota} 100000"))],
            vec![
                ("cpu.cfs_period_us", "100000".to_owned()),
                ("cpu.cfs_quota_us", quota),
            ],
        );
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
