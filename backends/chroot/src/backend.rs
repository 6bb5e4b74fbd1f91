//! The daemon side of the chroot backend: [`Backend`] for the daemon,
//! probing the host once at start-up and handing the supervisor the plan.

use std::path::{Path, PathBuf};

use sandboxd_core::capability::{BackendKind, Capabilities};
use sandboxd_core::spec::{HOST_IMAGE, Mode};
use sandboxd_core::{Backend, BackendError, Plan, Planner, Prepared, SandboxPaths, ValidatedSpec};
use sandboxd_supervisor::{CommonConfig, LaunchConfig};

use crate::plan::{self, ChrootPlanner, ChrootSetup, HostEntry, HostFacts};
use crate::runtime::{ChrootIsolation, unmount_all_under};

/// The chroot backend as the daemon sees it.
#[derive(Debug)]
pub struct ChrootBackend {
    images_dir: PathBuf,
    facts: HostFacts,
    reason: String,
}

/// Builds the backend, probing the host once. `reason` says why this
/// backend was selected.
pub fn new_backend(
    options: &sandboxd_core::backend::BackendOptions,
    reason: &str,
) -> ChrootBackend {
    ChrootBackend {
        images_dir: options.images_dir.clone(),
        facts: probe(),
        reason: reason.to_owned(),
    }
}

/// What this host offers the chroot backend.
pub fn probe() -> HostFacts {
    let linux = cfg!(target_os = "linux");
    let overlay = linux
        && std::fs::read_to_string("/proc/filesystems")
            .is_ok_and(|f| f.lines().any(|l| l.ends_with("\toverlay")));
    let host_layout = plan::HOST_DIRS
        .iter()
        .filter_map(|dir| {
            let path = Path::new(dir);
            let meta = std::fs::symlink_metadata(path).ok()?;
            if meta.file_type().is_symlink() {
                let target = std::fs::read_link(path).ok()?;
                Some(HostEntry::Symlink {
                    path: path.to_owned(),
                    target,
                })
            } else if meta.is_dir() {
                Some(HostEntry::Bind(path.to_owned()))
            } else {
                None
            }
        })
        .collect();
    HostFacts {
        linux_mounts: linux,
        overlay,
        host_layout,
    }
}

impl ChrootBackend {
    fn planner(&self) -> ChrootPlanner<'_> {
        ChrootPlanner {
            images_dir: &self.images_dir,
            facts: &self.facts,
        }
    }
}

impl Backend for ChrootBackend {
    fn kind(&self) -> BackendKind {
        ChrootPlanner::KIND
    }

    fn capabilities(&self) -> Capabilities {
        self.planner().capabilities(&self.reason)
    }

    fn plan(&self, spec: &ValidatedSpec, sandbox: &SandboxPaths) -> Plan {
        self.planner().plan(spec, sandbox)
    }

    fn assess(&self, spec: &ValidatedSpec, sandbox: &SandboxPaths) -> Plan {
        self.planner().assess(spec, sandbox)
    }

    fn prepare(
        &self,
        spec: &ValidatedSpec,
        sandbox: &SandboxPaths,
    ) -> Result<Prepared, BackendError> {
        sandboxd_core::backend::write_resolv_conf(spec, sandbox)?;
        let setup = self.planner().build(spec, sandbox)?;
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
        let s = spec.spec();
        let common = CommonConfig {
            sandbox_id: sandbox.id.clone(),
            mode: s.mode,
            main: (s.mode != Mode::Idle).then(|| s.process.clone()),
            rlimits: plan::rlimits(spec),
            capabilities: plan::ROOT_CAPABILITIES.to_vec(),
            seccomp: self.facts.linux_mounts,
            exit_file: sandbox.dir.join("exit.json"),
            logs: CommonConfig::logs_for(spec.spec()),
            // chroot: root is root (not a boundary against it, docs/security.md).
            root_refused: None,
        };
        Ok(Prepared::config(serde_json::to_vec(&LaunchConfig {
            common,
            isolation: setup,
        })?))
    }

    fn cleanup(&self, sandbox: &SandboxPaths) -> Result<(), BackendError> {
        unmount_all_under(&sandbox.dir)
    }

    fn images(&self) -> Vec<String> {
        sandboxd_supervisor::images::list_images(&self.images_dir)
    }
}

/// The helper-mode entry point for this backend.
pub fn supervisor_main() -> i32 {
    sandboxd_supervisor::helper_main(|setup: ChrootSetup, fds: Vec<std::os::fd::OwnedFd>| {
        if !fds.is_empty() {
            return Err(sandboxd_supervisor::StepError::new(
                sandboxd_supervisor::Step::LaunchDescriptors,
                format!(
                    "the chroot backend takes no descriptors with its launch configuration, got {}",
                    fds.len()
                ),
            ));
        }
        Ok(ChrootIsolation::new(setup))
    })
}
