//! `impl Backend` for FreeBSD: the daemon side, plus the host probe.

#![forbid(unsafe_code)]

use std::path::PathBuf;

use sandboxd_core::capability::{BackendKind, Capabilities};
use sandboxd_core::spec::{HOST_IMAGE, Mode};
use sandboxd_core::{Backend, BackendError, Plan, Planner, Prepared, SandboxPaths, ValidatedSpec};
use sandboxd_supervisor::{CommonConfig, LaunchConfig};

use crate::kernel_args;
use crate::netcfg;
use crate::plan::{self, HostFacts};
use crate::runtime::{self, FreeBsdIsolation, FreeBsdLaunch};
use crate::sys;

/// The FreeBSD jail backend as the daemon sees it.
#[derive(Debug)]
pub struct FreeBsdBackend {
    images_dir: PathBuf,
    facts: HostFacts,
    reason: String,
}

/// Builds the backend, probing the host once. `reason` says why this
/// backend was selected.
pub fn new_backend(
    options: &sandboxd_core::backend::BackendOptions,
    reason: &str,
) -> FreeBsdBackend {
    let backend = FreeBsdBackend {
        images_dir: options.images_dir.clone(),
        facts: probe(),
        reason: reason.to_owned(),
    };
    // The daemon's configuration wins over the probe's guess.
    match &options.alias_interface {
        Some(interface) => backend.with_alias_interface(Some(interface.clone())),
        None => backend,
    }
}

impl FreeBsdBackend {
    /// Overrides the probed alias interface (daemon configuration): the
    /// interface RESTRICTED addresses are added to, or `None` when they
    /// must already be configured on the host.
    #[must_use]
    pub fn with_alias_interface(mut self, interface: Option<String>) -> Self {
        self.facts.alias_interface = interface;
        self
    }

    /// The host facts this backend plans with.
    pub fn facts(&self) -> &HostFacts {
        &self.facts
    }
}

/// The helper-mode entry point for this backend.
pub fn supervisor_main() -> i32 {
    sandboxd_supervisor::helper_main(|launch: FreeBsdLaunch, fds: Vec<std::os::fd::OwnedFd>| {
        if !fds.is_empty() {
            return Err(sandboxd_supervisor::StepError::new(
                sandboxd_supervisor::Step::LaunchDescriptors,
                format!(
                    "the FreeBSD backend takes no descriptors with its launch configuration, got {}",
                    fds.len()
                ),
            ));
        }
        Ok(FreeBsdIsolation::new(launch))
    })
}

/// What this host offers, from sysctls: `kern.racct.enable` (a boot
/// tunable; absent when the kernel lacks `options RACCT`),
/// `kern.osrelease`, and `kern.features.vimage` (absent without `options
/// VIMAGE`); whether `lo1` exists (the alias interface); whether pf is
/// enabled with the sandboxd anchors (`pfctl -s info`, `pfctl -s nat`);
/// the default route's interface (`route -n get -inet default`); the path
/// of this binary; which of the base files it uses are missing. Anything
/// that cannot be read counts as "no".
pub fn probe() -> HostFacts {
    let flag = |name: &str| sys::sysctl(name).is_ok_and(|b| kernel_args::sysctl_flag(&b));
    HostFacts {
        racct_enabled: flag("kern.racct.enable"),
        os_release: sys::sysctl("kern.osrelease")
            .map(|b| kernel_args::sysctl_string(&b))
            .unwrap_or_default(),
        vimage: flag("kern.features.vimage"),
        alias_interface: netcfg::interface_exists(plan::DEFAULT_ALIAS_INTERFACE)
            .then(|| plan::DEFAULT_ALIAS_INTERFACE.to_owned()),
        pf_anchors: netcfg::pf_anchors(),
        egress_interface: netcfg::egress_interface(),
        // The supervisor is this binary (the daemon re-executes
        // `current_exe`), so this is the file a host-image jail must not
        // show. std answers from sysctl KERN_PROC_PATHNAME on FreeBSD;
        // canonicalize resolves what symlinks are left, so the path is the
        // one nullfs shows.
        own_binary: std::env::current_exe().and_then(std::fs::canonicalize).ok(),
        // The base system's tools and files the network parts use; a
        // minimal host may lack them, and caps then says so.
        missing_base_files: plan::BASE_FILES
            .iter()
            .filter(|f| !std::path::Path::new(f).exists())
            .map(|f| (*f).to_owned())
            .collect(),
        // symlink_metadata: a symlink there is not the directory to hide,
        // and the mount walker would refuse it anyway.
        secret_dirs: plan::SECRET_DIRS
            .iter()
            .filter(|d| std::fs::symlink_metadata(d).is_ok_and(|m| m.is_dir()))
            .map(|d| (*d).to_owned())
            .collect(),
    }
}

impl Backend for FreeBsdBackend {
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
        let jail_plan = self.facts.build(spec, sandbox)?;
        netcfg::prepare(&jail_plan).map_err(|e| BackendError::Network {
            step: "prepare".to_owned(),
            message: e.to_string(),
        })?;
        // Fail early (and without a supervisor) on parameters the kernel
        // could not even be handed.
        kernel_args::jail_iovecs(&jail_plan.params)
            .map_err(|e| BackendError::Unsupported(e.to_string()))?;
        let s = spec.spec();
        if !spec.image_layers().is_empty() {
            sandboxd_supervisor::images::check_layers(&self.images_dir, spec.image_layers())?;
        } else if s.image() != HOST_IMAGE {
            sandboxd_supervisor::images::check_image(
                s.image_dir(&self.images_dir),
                s.image(),
                s.image_dir_no_symlinks(),
            )?;
        }
        // Every process the supervisor starts (main and Exec, in every
        // mode) gets these.
        // The main process runs what the plan says: in INIT mode with the
        // default argv, `/bin/sh /etc/rc` instead of `/sbin/init`.
        let main = (s.mode != Mode::Idle).then(|| {
            let mut process = s.process.clone();
            if let Some(argv) = plan::main_argv(&jail_plan.steps) {
                process.argv = argv.to_vec();
            }
            process
        });
        let common = CommonConfig {
            sandbox_id: sandbox.id.clone(),
            mode: s.mode,
            main,
            rlimits: jail_plan.rlimits.clone(),
            // FreeBSD has no capability bounding set: a jail's root is
            // limited by the jail itself (securelevel, allow.*).
            capabilities: vec![],
            // seccomp is Linux's.
            seccomp: false,
            exit_file: sandbox.dir.join("exit.json"),
            logs: CommonConfig::logs_for(spec.spec()),
            // A jail has no user namespace: its root owns what it writes.
            root_refused: spec.spec().root_refusal(true),
        };
        Ok(Prepared::config(serde_json::to_vec(&LaunchConfig {
            common,
            isolation: FreeBsdLaunch {
                plan: jail_plan,
                images_dir: spec.spec().image_dir(&self.images_dir).to_owned(),
                images_dir_no_symlinks: spec.spec().image_dir_no_symlinks(),
            },
        })?))
    }

    fn cleanup(&self, sandbox: &SandboxPaths) -> Result<(), BackendError> {
        // The jail first: its processes are gone before their addresses.
        // The network is undone even if that failed: it is independent
        // (a jail can use only the addresses in its ip4.addr/ip6.addr, on
        // an interface or not), and the daemon keeps the addresses leased
        // until a cleanup succeeds as a whole.
        let jail = runtime::remove_all(&plan::jail_name(&sandbox.id), None, &sandbox.dir);
        let anchor = self.facts.pf_anchors.then(|| plan::pf_anchor(&sandbox.id));
        let net = netcfg::cleanup(&sandbox.dir, anchor.as_deref());
        match (jail, net) {
            (Ok(()), Ok(())) => Ok(()),
            (Err(jail), Ok(())) => Err(BackendError::Io {
                step: "clean up jail",
                path: sandbox.dir.clone(),
                source: std::io::Error::other(jail.to_string()),
            }),
            (Ok(()), Err(net)) => Err(BackendError::Network {
                step: "cleanup".to_owned(),
                message: net.to_string(),
            }),
            (Err(jail), Err(net)) => Err(BackendError::Io {
                step: "clean up jail and network",
                path: sandbox.dir.clone(),
                source: std::io::Error::other(format!("{jail}; network: {net}")),
            }),
        }
    }

    fn usage(&self, sandbox: &SandboxPaths) -> sandboxd_core::Usage {
        if !self.facts.racct_enabled {
            return sandboxd_core::Usage::default();
        }
        runtime::usage(&plan::jail_name(&sandbox.id))
    }

    fn images(&self) -> Vec<String> {
        sandboxd_supervisor::images::list_images(&self.images_dir)
    }
}
