//! `impl Backend` for Linux: the daemon side, plus the host probe.

use std::path::{Path, PathBuf};

use sandboxd_core::capability::{BackendKind, Capabilities};
use sandboxd_core::spec::{HOST_IMAGE, Mode};
use sandboxd_core::{Backend, BackendError, Plan, Planner, Prepared, SandboxPaths, ValidatedSpec};
use sandboxd_supervisor::{CommonConfig, LaunchConfig};

use crate::plan::{self, CgroupFacts, Controller, HostFacts, IdRange, LinuxStep};
use crate::runtime::{LinuxIsolation, LinuxLaunch};
use crate::sys;

/// The Linux backend as the daemon sees it.
#[derive(Debug)]
pub struct LinuxBackend {
    images_dir: PathBuf,
    facts: HostFacts,
    reason: String,
    /// New network namespaces made ahead for NONE and LOOPBACK sandboxes.
    netns: crate::netns_pool::NetnsPool,
}

/// Builds the backend, probing the host once.
pub fn new_backend(options: &sandboxd_core::backend::BackendOptions, reason: &str) -> LinuxBackend {
    LinuxBackend {
        images_dir: options.images_dir.clone(),
        facts: probe(),
        reason: reason.to_owned(),
        netns: crate::netns_pool::NetnsPool::default(),
    }
}

/// The helper-mode entry point for this backend.
pub fn supervisor_main() -> i32 {
    sandboxd_supervisor::helper_main(LinuxIsolation::with_fds)
}

/// What this host offers: the cgroup layout from /proc/self/mountinfo,
/// overlayfs from /proc/filesystems, the /usr layout.
pub fn probe() -> HostFacts {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut unified = None;
    let mut v1: Vec<(String, PathBuf)> = Vec::new();
    for line in mountinfo.lines() {
        // "... mountpoint ... - fstype source superoptions"
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(dash) = fields.iter().position(|f| *f == "-") else {
            continue;
        };
        let (Some(mount_point), Some(fstype), Some(opts)) =
            (fields.get(4), fields.get(dash + 1), fields.get(dash + 3))
        else {
            continue;
        };
        match *fstype {
            "cgroup2" if unified.is_none() => unified = Some(PathBuf::from(mount_point)),
            "cgroup" => {
                for c in opts.split(',') {
                    v1.push((c.to_owned(), PathBuf::from(mount_point)));
                }
            }
            _ => {}
        }
    }
    let v2_controllers = unified
        .as_ref()
        .and_then(|u| std::fs::read_to_string(u.join("cgroup.controllers")).ok())
        .unwrap_or_default();
    let controller = |name: &str| -> Option<Controller> {
        if let Some((_, mount)) = v1.iter().find(|(c, _)| c == name) {
            return Some(Controller::V1 {
                mount: mount.clone(),
            });
        }
        v2_controllers
            .split_whitespace()
            .any(|c| c == name)
            .then_some(Controller::V2)
    };
    let memory = controller("memory");
    let swap_accounting = match (&memory, &unified) {
        (Some(Controller::V1 { mount }), _) => mount.join("memory.memsw.limit_in_bytes").exists(),
        // cgroup v2 shows memory.swap.max in non-root cgroups when swap
        // accounting is on: look at our own.
        (Some(Controller::V2), Some(u)) => {
            own_v2_cgroup(u).is_some_and(|d| d.join("memory.swap.max").exists())
        }
        _ => false,
    };
    let cgroup = CgroupFacts {
        unified,
        memory,
        pids: controller("pids"),
        cpu: controller("cpu"),
        io: controller("io").or_else(|| controller("blkio")),
        swap_accounting,
    };
    let overlayfs = std::fs::read_to_string("/proc/filesystems")
        .is_ok_and(|f| f.lines().any(|l| l.ends_with("\toverlay")));
    let merged_usr = std::fs::symlink_metadata("/bin").is_ok_and(|m| m.file_type().is_symlink());
    HostFacts {
        cgroup,
        overlayfs,
        user_namespaces: std::fs::read_to_string("/proc/sys/user/max_user_namespaces")
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .is_some_and(|n| n > 0),
        merged_usr,
        userns_range: IdRange {
            host_start: 100_000,
            count: 65_536,
        },
        nftables: crate::net::nft_binary().is_some(),
    }
}

fn net_error(e: crate::net::NetError) -> BackendError {
    BackendError::Network {
        step: e.step(),
        message: e.to_string(),
    }
}

/// This process's cgroup v2 directory, from /proc/self/cgroup ("0::/path").
fn own_v2_cgroup(unified: &Path) -> Option<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let rel = text.lines().find_map(|l| l.strip_prefix("0::"))?;
    Some(unified.join(rel.trim().trim_start_matches('/')))
}

impl Backend for LinuxBackend {
    fn kind(&self) -> BackendKind {
        HostFacts::KIND
    }

    fn capabilities(&self) -> Capabilities {
        self.facts.capabilities(&self.reason)
    }

    fn plan(&self, spec: &ValidatedSpec, sandbox: &SandboxPaths) -> Plan {
        self.facts.plan(spec, sandbox)
    }

    fn assess(&self, spec: &ValidatedSpec, sandbox: &SandboxPaths) -> Plan {
        self.facts.assess(spec, sandbox)
    }

    fn prepare(
        &self,
        spec: &ValidatedSpec,
        sandbox: &SandboxPaths,
    ) -> Result<Prepared, BackendError> {
        // One build for the host side and the supervisor's configuration.
        let linux_plan = self.facts.build(spec, sandbox)?;
        sandboxd_core::backend::write_resolv_conf(spec, sandbox)?;
        if let plan::Network::Routed(r) = &linux_plan.network {
            crate::net::setup(r).map_err(net_error)?;
        }
        if !spec.image_layers().is_empty() {
            sandboxd_supervisor::images::check_layers(&self.images_dir, spec.image_layers())?;
        } else if spec.spec().image() != HOST_IMAGE {
            let s = spec.spec();
            sandboxd_supervisor::images::check_image(
                s.image_dir(&self.images_dir),
                s.image(),
                s.image_dir_no_symlinks(),
            )?;
        }
        // Every process of the sandbox, in every mode, gets the spec's
        // limits: built from the spec, not from the main process's steps
        // (an IDLE plan has none).
        let rlimits = plan::rlimits(spec);
        // Every payload (Exec'd ones too, and in IDLE mode) gets the default
        // set unless the plan names another.
        let mut capabilities: Vec<u32> = plan::Capability::DEFAULT
            .iter()
            .map(|c| c.number())
            .collect();
        for step in &linux_plan.steps {
            if let LinuxStep::Capabilities(caps) = step {
                capabilities = caps.iter().map(|c| c.number()).collect();
            }
        }
        let s = spec.spec();
        let common = CommonConfig {
            sandbox_id: sandbox.id.clone(),
            mode: s.mode,
            main: (s.mode != Mode::Idle).then(|| s.process.clone()),
            rlimits,
            capabilities,
            seccomp: true,
            exit_file: sandbox.dir.join("exit.json"),
            logs: CommonConfig::logs_for(spec.spec()),
            root_refused: plan::root_refusal(spec, &linux_plan.namespaces),
        };
        // The sandbox's cgroup v2 directory, if the plan uses one: processes
        // are cloned straight into it.
        let unified_cgroup = self
            .facts
            .cgroup
            .unified
            .as_ref()
            .map(|u| u.join("sandboxd").join(&sandbox.id))
            .filter(|d| linux_plan.cgroups.dirs.contains(d));
        // INIT mode: pid 1 becomes the main process itself.
        let init = (s.mode == Mode::Init).then(|| common.clone());
        // A new, empty network namespace made ahead of time, where pid 1
        // would otherwise clone one (see netns_pool).
        let netns = (matches!(
            linux_plan.network,
            plan::Network::None | plan::Network::Loopback
        ) && linux_plan.namespaces.contains(&plan::Namespace::Net))
        .then(|| self.netns.take())
        .flatten();
        let launch = LinuxLaunch {
            plan: linux_plan,
            images_dir: s.image_dir(&self.images_dir).to_owned(),
            images_dir_no_symlinks: s.image_dir_no_symlinks(),
            unified_cgroup,
            init,
            pooled_netns: netns.is_some(),
        };
        Ok(Prepared {
            config: serde_json::to_vec(&LaunchConfig {
                common,
                isolation: launch,
            })?,
            fds: netns.into_iter().collect(),
        })
    }

    fn cleanup(&self, sandbox: &SandboxPaths) -> Result<(), BackendError> {
        let cg = &self.facts.cgroup;
        let mut roots: Vec<&Path> = cg.unified.iter().map(PathBuf::as_path).collect();
        for c in [&cg.memory, &cg.pids, &cg.cpu, &cg.io]
            .into_iter()
            .flatten()
        {
            if let Controller::V1 { mount } = c {
                roots.push(mount);
            }
        }
        // A sandbox whose supervisor died may still have processes: the
        // v2 cgroup's cgroup.kill SIGKILLs every one of them (Linux 5.14+),
        // which also ends its namespaces and mounts.
        if let Some(unified) = &cg.unified {
            let kill = unified
                .join("sandboxd")
                .join(&sandbox.id)
                .join("cgroup.kill");
            if kill.exists() {
                let _ = sys::write_file(&kill, "1");
            }
        }
        // After the kill: the namespace pin goes last, once no process can
        // be using the network any more.
        crate::net::teardown(&sandbox.id, &sandbox.dir).map_err(net_error)?;
        for root in roots {
            let dir = root.join("sandboxd").join(&sandbox.id);
            crate::runtime::remove_cgroup_dir(&dir).map_err(|e| BackendError::Io {
                step: "remove cgroup",
                path: dir.clone(),
                source: std::io::Error::other(e.to_string()),
            })?;
        }
        // Every mount lives in the sandbox's own mount namespace, which died
        // with its last process; prove nothing is left before the caller
        // deletes the directory.
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        nothing_mounted_under(&mountinfo, &sandbox.dir)
    }

    fn check_exec(
        &self,
        sandbox_spec: &sandboxd_core::spec::SandboxSpec,
        process: &sandboxd_core::spec::ProcessSpec,
    ) -> Result<(), BackendError> {
        use sandboxd_core::spec::Requirement;
        let userns = self.facts.user_namespaces
            && matches!(
                sandbox_spec.isolation.user,
                Requirement::Required | Requirement::Preferred
            );
        if !userns {
            return Ok(());
        }
        let count = self.facts.userns_range.count;
        let user = &process.user;
        let ids = [("uid", user.uid()), ("gid", user.gid())]
            .into_iter()
            .chain(user.additional_gids.iter().map(|g| ("additional_gids", *g)));
        for (field, id) in ids {
            if id >= count {
                return Err(BackendError::InvalidProcess {
                    field: format!("process.user.{field}"),
                    why: format!(
                        "{id} is outside the sandbox's user-namespace id map (0..{count})"
                    ),
                });
            }
        }
        Ok(())
    }

    fn usage(&self, sandbox: &SandboxPaths) -> sandboxd_core::Usage {
        let cg = &self.facts.cgroup;
        let unified = cg
            .unified
            .as_ref()
            .map(|u| u.join("sandboxd").join(&sandbox.id));
        let dir_of = |c: &Option<Controller>| -> Option<PathBuf> {
            match c {
                Some(Controller::V1 { mount }) => Some(mount.join("sandboxd").join(&sandbox.id)),
                Some(Controller::V2) => unified.clone(),
                None => None,
            }
        };
        let text = |dir: Option<PathBuf>, file: &str| -> Option<String> {
            std::fs::read_to_string(dir?.join(file)).ok()
        };
        let read = |dir: Option<PathBuf>, files: &[&str]| -> Option<u64> {
            files
                .iter()
                .find_map(|f| text(dir.clone(), f)?.trim().parse().ok())
        };
        let memory_bytes = read(
            dir_of(&cg.memory),
            &["memory.current", "memory.usage_in_bytes"],
        );
        // Without a pids controller, count the processes in the cgroup the
        // sandbox always has in the unified hierarchy.
        let pids = read(dir_of(&cg.pids), &["pids.current"]).or_else(|| {
            let procs = text(unified.clone(), "cgroup.procs")?;
            u64::try_from(procs.lines().count()).ok()
        });
        // cpu.stat's usage_usec is in every non-root v2 cgroup, with or
        // without the cpu controller; v1 only has it where cpuacct is
        // mounted with cpu.
        let cpu_usec = text(unified.clone(), "cpu.stat")
            .as_deref()
            .and_then(plan::parse_cpu_stat)
            .or_else(|| read(dir_of(&cg.cpu), &["cpuacct.usage"]).map(|ns| ns / 1000));
        let io = match &cg.io {
            Some(Controller::V2) => text(unified.clone(), "io.stat")
                .as_deref()
                .and_then(plan::parse_io_stat),
            Some(Controller::V1 { .. }) => text(dir_of(&cg.io), "blkio.throttle.io_service_bytes")
                .as_deref()
                .and_then(plan::parse_blkio_bytes),
            None => None,
        };
        sandboxd_core::Usage {
            memory_bytes,
            pids,
            cpu_usec,
            io_read_bytes: io.map(|(r, _)| r),
            io_write_bytes: io.map(|(_, w)| w),
        }
    }

    fn images(&self) -> Vec<String> {
        sandboxd_supervisor::images::list_images(&self.images_dir)
    }
}

/// Proves from `mountinfo` that nothing is mounted at or below `dir`.
fn nothing_mounted_under(mountinfo: &str, dir: &Path) -> Result<(), BackendError> {
    match sandboxd_core::mountinfo::mounts_under(mountinfo, dir).first() {
        None => Ok(()),
        Some(mount) => Err(BackendError::Io {
            step: "check mounts",
            path: dir.to_path_buf(),
            source: std::io::Error::other(format!("still mounted: {}", mount.display())),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The proof that nothing is mounted below a sandbox's directory reads
    /// mountinfo's escaped paths and compares whole components.
    #[test]
    fn a_mount_below_the_sandbox_directory_is_found() {
        let info = "\
22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
40 22 0:40 / /srv/my\\040state/sandboxes/0123456789abcdef/root rw - tmpfs tmpfs rw
41 22 0:41 / /srv/state/sandboxes/0123456789abcdef0/x rw - tmpfs tmpfs rw
";
        let cases = [
            ("/srv/my state/sandboxes/0123456789abcdef", false),
            ("/srv/state/sandboxes/0123456789abcdef", true),
            ("/srv/state/sandboxes/0123456789abcdef0", false),
            ("/srv/other", true),
        ];
        for (dir, clean) in cases {
            let got = nothing_mounted_under(info, Path::new(dir));
            assert_eq!(got.is_ok(), clean, "{dir}: {got:?}");
        }
    }
}
