//! The FreeBSD runtime: what the supervisor helper does with a
//! [`JailPlan`].
//!
//! `setup` runs the plan's supervisor steps in order:
//! 1. the mounts, made on the host under `<sandbox dir>/root` (FreeBSD has
//!    no mount namespaces; `enforce_statfs=2` hides everything outside the
//!    jail's root from it). Each mount point is walked from the root one
//!    component at a time without following symlinks (created when
//!    missing), and after `nmount(2)` the new mount is checked to be where
//!    it was meant to be (`fstatfs` of the walked directory names it) and,
//!    for nullfs, to show the source that was opened (same inode). The
//!    jail's devfs is checked to hide `mem`/`kmem`/`io`/`bpf`, which it
//!    only does if devfs ruleset 4 is loaded;
//! 2. `jail_set(JAIL_CREATE)` with exactly the plan's parameters (which
//!    always include `persist`, see below);
//! 3. the rctl rules;
//! 4. in a vnet jail, a short-lived child attaches and gives lo0 127.0.0.1.
//!
//! Any failure undoes everything done so far (`teardown`). The supervisor
//! itself already holds `PROC_REAP_ACQUIRE`, so every process of the jail
//! is its descendant: `signal_all` is left to its `PROC_REAP_KILL`.
//!
//! `enter` (in each forked child) is `jail_attach(jid)` and `chdir("/")`;
//! the jail is the whole isolation, no extra fork is needed.
//!
//! **Persistence.** The plan gives every jail `persist`, and nothing clears
//! it: the supervisor, not the kernel, decides when a sandbox ends (its main
//! process exits, or Stop/Destroy), and a jail that cannot vanish under it
//! keeps its jid valid for every Exec. A jid freed by the kernel could be
//! reused by another jail, and a later Exec would attach to that one.
//!
//! The host's addresses (RESTRICTED aliases, the lo0 alias of LOOPBACK
//! without VIMAGE) and pf rules are the daemon's (`netcfg`): added before
//! the supervisor starts, recorded, removed on destroy.
//!
//! `teardown` removes the rctl rules, the jail (`jail_remove` kills
//! whatever is left), then unmounts everything mounted at or
//! below the sandbox directory, newest first, by filesystem id, and proves
//! from `getfsstat(2)` that nothing is left.

#![forbid(unsafe_code)]

use std::net::Ipv4Addr;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{OFlag, openat};
use nix::sys::stat::{Mode, mkdirat};
use serde::{Deserialize, Serialize};

use sandboxd_supervisor::{Isolation, Step, StepError};

use crate::kernel_args;
use crate::plan::{Fstype, JailMount, JailPlan, JailStep, MountSource};
use crate::sys;

/// The supervisor's configuration for one sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FreeBsdLaunch {
    /// The executable plan.
    pub plan: JailPlan,
    /// The directory holding the image: the daemon's images directory
    /// (trusted configuration), or the parent of a client-given rootfs.
    pub images_dir: PathBuf,
    /// Open `images_dir` without following any symlink (a client-given
    /// rootfs; see `sandboxd_supervisor::sys::open_image_dir`).
    #[serde(default)]
    pub images_dir_no_symlinks: bool,
}

/// The supervisor side of a FreeBSD sandbox.
#[derive(Debug)]
pub struct FreeBsdIsolation {
    launch: FreeBsdLaunch,
    jid: Option<i32>,
}

impl FreeBsdIsolation {
    /// From the launch configuration.
    pub fn new(launch: FreeBsdLaunch) -> Self {
        Self { launch, jid: None }
    }

    /// `<sandbox dir>`: the parent of the jail's root.
    fn sandbox_dir(&self) -> &Path {
        let root = &self.launch.plan.rootfs;
        root.parent().unwrap_or(root)
    }

    fn setup_inner(&mut self) -> Result<(), StepError> {
        let plan = self.launch.plan.clone();
        // Exactly the plan's setup steps, in its order (the rendered plan
        // shows the same list; `plan::executor` says who runs the others).
        for step in crate::plan::steps_for(&plan.steps, crate::plan::Executor::Setup) {
            match step {
                JailStep::WriteResolvConf => {
                    let text = plan.resolv_conf.as_deref().unwrap_or_default();
                    std::fs::create_dir_all(plan.sandbox_dir()).map_err(|e| {
                        StepError::new(
                            Step::WriteResolvConf,
                            format!("{}: {e}", plan.sandbox_dir().display()),
                        )
                    })?;
                    write_resolv_conf(&plan.resolv_conf_path(), text)?;
                }
                JailStep::Mounts => self.mount_all()?,
                JailStep::CreateJail => {
                    let iov = kernel_args::jail_iovecs(&plan.params)
                        .map_err(|e| StepError::new(Step::JailSet, e))?;
                    let jid = sys::jail_create(&iov).map_err(|e| {
                        StepError::new(Step::JailSet, format!("{}: {e}", plan.name))
                    })?;
                    self.jid = Some(jid);
                }
                JailStep::RctlRules => {
                    for rule in &plan.rctl_rules {
                        let text = rule.render();
                        sys::rctl_add(&text).map_err(|e| {
                            StepError::new(Step::RctlAddRule, format!("{text}: {e}"))
                        })?;
                    }
                }
                JailStep::LoopbackUp => self.loopback_up()?,
                // steps_for returned only setup steps; anything else here
                // is a bug in plan::executor, reported rather than skipped.
                other => {
                    return Err(StepError::new(
                        Step::Setup,
                        format!("{other:?} is not a setup step"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// In a vnet jail: a child attaches and puts 127.0.0.1/8 on the jail's
    /// own lo0 (which also brings it up).
    fn loopback_up(&self) -> Result<(), StepError> {
        let jid = self
            .jid
            .ok_or_else(|| StepError::new(Step::Lo0Up, "the jail does not exist"))?;
        match sandboxd_supervisor::sys::fork().map_err(|e| StepError::new(Step::Lo0UpFork, e))? {
            sandboxd_supervisor::sys::Fork::Child => {
                // Only the exit status reaches the parent: 2 = attach
                // failed, 3 = the address could not be added.
                let code = if sys::jail_attach(jid).is_err() {
                    2
                } else if sys::add_inet_address(
                    "lo0",
                    Ipv4Addr::LOCALHOST,
                    Ipv4Addr::new(255, 0, 0, 0),
                )
                .is_err()
                {
                    3
                } else {
                    0
                };
                sandboxd_supervisor::sys::exit_child(code)
            }
            sandboxd_supervisor::sys::Fork::Parent { child } => {
                match nix::sys::wait::waitpid(child, None) {
                    Ok(nix::sys::wait::WaitStatus::Exited(_, 0)) => Ok(()),
                    Ok(nix::sys::wait::WaitStatus::Exited(_, 2)) => Err(StepError::new(
                        Step::Lo0Up,
                        "jail_attach into the new vnet jail failed",
                    )),
                    Ok(nix::sys::wait::WaitStatus::Exited(_, 3)) => Err(StepError::new(
                        Step::Lo0Up,
                        "SIOCAIFADDR 127.0.0.1/8 on the jail's lo0 failed",
                    )),
                    other => Err(StepError::new(
                        Step::Lo0Up,
                        format!("helper child: {other:?}"),
                    )),
                }
            }
        }
    }

    fn mount_all(&self) -> Result<(), StepError> {
        let planned = &self.launch.plan.rootfs;
        std::fs::create_dir_all(planned).map_err(|e| {
            StepError::new(Step::CreateJailRoot, format!("{}: {e}", planned.display()))
        })?;
        // The kernel names mount points by their resolved path: resolve the
        // state directory's own symlinks (it is trusted configuration, e.g.
        // under /home -> /usr/home) once, so the checks compare like with
        // like.
        let root = std::fs::canonicalize(planned).map_err(|e| {
            StepError::new(Step::ResolveJailRoot, format!("{}: {e}", planned.display()))
        })?;
        for m in &self.launch.plan.mounts {
            self.mount_one(&root, m)?;
        }
        Ok(())
    }

    fn mount_one(&self, root: &Path, m: &JailMount) -> Result<(), StepError> {
        let what = format!("{} {}", m.fstype.as_str(), m.target);
        let step = |s: Step, e: &dyn std::fmt::Display| StepError::new(s, format!("{what}: {e}"));
        let fspath =
            kernel_args::host_path(root, &m.target).map_err(|e| step(Step::MountTarget, &e))?;
        // A single-file mount (the generated resolv.conf, the mask over the
        // sandboxd binary) covers an existing regular file; every other
        // mount a directory.
        let file = matches!(m.source, MountSource::ResolvConf | MountSource::Masked);
        if m.source == MountSource::Masked && !shows_file(root, &m.target)? {
            // The plan masks the binary where the host image would show
            // it; a directory below the image's mount that is a
            // filesystem of its own (nullfs does not cross mount points)
            // shows nothing there, and there is nothing to cover.
            return Ok(());
        }
        let open_target = |create: bool| {
            if file {
                walk_file(root, &m.target)
            } else {
                walk(root, &m.target, create)
            }
        };
        // The mount point, walked without following symlinks (and created
        // if missing, unless this updates an existing mount).
        drop(open_target(!m.update).map_err(|e| step(Step::MountTarget, &e))?);
        // The source, opened the same way, to compare with what got mounted.
        let (from, source_ino) = match &m.source {
            MountSource::Pseudo => (None, None),
            MountSource::ResolvConf => {
                // Written by this supervisor in the sandbox directory (the
                // parent of the resolved root, trusted configuration).
                let dir = root.parent().unwrap_or(root);
                let path = dir.join("resolv.conf");
                let fd = nix::fcntl::open(
                    &path,
                    OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| step(Step::MountSource, &format!("{}: {e}", path.display())))?;
                let text = path
                    .to_str()
                    .ok_or_else(|| step(Step::MountSource, &"not UTF-8"))?
                    .to_owned();
                (Some(text), Some(ino(fd.as_fd())?))
            }
            MountSource::Masked => {
                // Made by this supervisor in the sandbox directory (trusted
                // configuration), as the plan's `mask_path`.
                let dir = self.launch.plan.sandbox_dir();
                let (path, fd) = sandboxd_supervisor::sys::create_mask_file(dir).map_err(|e| {
                    StepError::new(Step::CreateMaskFile, format!("{}: {e}", dir.display()))
                })?;
                debug_assert_eq!(path, self.launch.plan.mask_path());
                let text = path
                    .to_str()
                    .ok_or_else(|| step(Step::MountSource, &"not UTF-8"))?
                    .to_owned();
                (Some(text), Some(ino(fd.as_fd())?))
            }
            MountSource::Host(p) => {
                let text = p
                    .to_str()
                    .ok_or_else(|| step(Step::MountSource, &"not UTF-8"))?;
                let fd =
                    walk(Path::new("/"), text, false).map_err(|e| step(Step::MountSource, &e))?;
                (Some(text.to_owned()), Some(ino(fd.as_fd())?))
            }
            MountSource::ImageLayers(layers) => {
                // Made by this supervisor in the sandbox directory (trusted
                // configuration); a leftover from a failed attempt is
                // refused by flatten (it must start empty).
                let dest = self.launch.plan.oci_root_path();
                match std::fs::create_dir(&dest) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                    Err(e) => {
                        return Err(step(
                            Step::CreateImageCopy,
                            &format!("{}: {e}", dest.display()),
                        ));
                    }
                }
                sandboxd_images::flatten(&self.launch.images_dir, layers, &dest)
                    .map_err(|e| step(Step::FlattenImageLayers, &e))?;
                // The copy is private: make the later mounts' directories in
                // it now (walked without following symlinks), so a read-only
                // root needs none created after it is mounted.
                for other in self.launch.plan.mounts.iter().filter(|o| {
                    o.target != "/"
                        && !matches!(o.source, MountSource::ResolvConf | MountSource::Masked)
                }) {
                    drop(
                        walk(&dest, &other.target, true)
                            .map_err(|e| step(Step::CreateMountPointInImageCopy, &e))?,
                    );
                }
                let fd = sandboxd_supervisor::sys::open_dir(&dest)
                    .map_err(|e| step(Step::OpenImageCopy, &e))?;
                let text = dest
                    .to_str()
                    .ok_or_else(|| step(Step::MountSource, &"not UTF-8"))?
                    .to_owned();
                (Some(text), Some(ino(fd.as_fd())?))
            }
            MountSource::Image(name) => {
                let dir = sandboxd_supervisor::sys::open_image_dir(
                    &self.launch.images_dir,
                    self.launch.images_dir_no_symlinks,
                )
                .map_err(|e| step(Step::OpenImagesDirectory, &e))?;
                let fd = sandboxd_supervisor::sys::open_image(dir.as_fd(), name)
                    .map_err(|e| step(Step::OpenImage, &format!("{name}: {e}")))?;
                // The name was validated (no '/', no '..'): one component.
                let path = self.launch.images_dir.join(name);
                let text = path
                    .to_str()
                    .ok_or_else(|| step(Step::MountSource, &"not UTF-8"))?
                    .to_owned();
                (Some(text), Some(ino(fd.as_fd())?))
            }
        };
        let fspath_text = fspath
            .to_str()
            .ok_or_else(|| step(Step::MountTarget, &"not UTF-8"))?;
        let pairs = kernel_args::nmount_pairs(m, fspath_text, from.as_deref());
        sys::nmount(&pairs, m.update).map_err(|e| step(Step::Nmount, &e))?;
        // Where did it land? Walk again (no symlinks) and ask the kernel.
        let landed = open_target(false).map_err(|e| step(Step::VerifyMount, &e))?;
        let on = sys::mount_point_of(landed.as_fd()).map_err(|e| step(Step::VerifyMount, &e))?;
        if on != fspath {
            return Err(step(
                Step::VerifyMount,
                &format!(
                    "mounted on {} instead of {}",
                    on.display(),
                    fspath.display()
                ),
            ));
        }
        if let Some(expected) = source_ino {
            let got = ino(landed.as_fd())?;
            if got != expected {
                return Err(step(
                    Step::VerifyMount,
                    &"the mounted directory is not the source that was opened (it changed meanwhile)",
                ));
            }
        }
        if let Some(mode) = m.chmod {
            // Before any later update (the read-only remount) of this mount.
            let bits = libc::mode_t::try_from(mode)
                .map_err(|_| step(Step::Chmod, &format!("{mode:o} is not a file mode")))?;
            nix::sys::stat::fchmod(landed.as_fd(), Mode::from_bits_truncate(bits))
                .map_err(|e| step(Step::Chmod, &format!("{mode:o}: {e}")))?;
        }
        if m.fstype == Fstype::Devfs {
            for dev in kernel_args::FORBIDDEN_DEVICES {
                if nix::sys::stat::fstatat(
                    landed.as_fd(),
                    dev,
                    nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
                )
                .is_ok()
                {
                    return Err(step(
                        Step::DevfsRuleset,
                        &format!(
                            "/dev/{dev} is visible: devfs ruleset {} (devfsrules_jail) is not loaded; \
                             run `service devfs restart` or set devfs_load_rulesets=\"YES\" in rc.conf",
                            crate::plan::DEVFS_RULESET
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

fn ino(fd: std::os::fd::BorrowedFd<'_>) -> Result<u64, StepError> {
    nix::sys::stat::fstat(fd)
        .map(|st| st.st_ino)
        .map_err(|e| StepError::new(Step::Fstat, e))
}

/// Opens the directory `path` (absolute, inside `root`) component by
/// component from `root`, never following a symlink (`O_NOFOLLOW` on each
/// step: a symlink fails with ELOOP). With `create`, a missing component is
/// made (mode 0755).
fn walk(root: &Path, path: &str, create: bool) -> Result<OwnedFd, String> {
    let flags = OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_RDONLY | OFlag::O_CLOEXEC;
    let mut dir =
        sandboxd_supervisor::sys::open_dir(root).map_err(|e| format!("{}: {e}", root.display()))?;
    for c in kernel_args::components(path).map_err(|e| e.to_string())? {
        let next = match openat(dir.as_fd(), c, flags, Mode::empty()) {
            Err(Errno::ENOENT) if create => {
                match mkdirat(dir.as_fd(), c, Mode::from_bits_truncate(0o755)) {
                    Ok(()) | Err(Errno::EEXIST) => {}
                    Err(e) => return Err(format!("{path}: create {c:?}: {e}")),
                }
                openat(dir.as_fd(), c, flags, Mode::empty())
            }
            other => other,
        };
        dir = next.map_err(|e| match e {
            Errno::ELOOP | Errno::EMLINK | Errno::ENOTDIR => {
                format!("{path}: {c:?} is a symlink or not a directory")
            }
            e => format!("{path}: {c:?}: {e}"),
        })?;
    }
    Ok(dir)
}

/// Opens the existing regular file `path` (absolute, inside `root`): its
/// directory is walked as by [`walk`], and the file itself opened with
/// `O_NOFOLLOW`. It is not created: a read-only root could not hold it, and
/// a writable directory image is shared with other sandboxes.
fn walk_file(root: &Path, path: &str) -> Result<OwnedFd, String> {
    let parts = kernel_args::components(path).map_err(|e| e.to_string())?;
    let Some((name, parents)) = parts.split_last() else {
        return Err(format!("{path}: not a file"));
    };
    let dir = walk(root, &format!("/{}", parents.join("/")), false)?;
    let fd = openat(
        dir.as_fd(),
        *name,
        OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| match e {
        Errno::ENOENT => format!(
            "{path}: the image has none to mount the generated file over (create an empty one in the image)"
        ),
        Errno::ELOOP | Errno::EMLINK => format!("{path}: is a symlink"),
        e => format!("{path}: {e}"),
    })?;
    let st = nix::sys::stat::fstat(fd.as_fd()).map_err(|e| format!("{path}: {e}"))?;
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Err(format!("{path}: not a regular file"));
    }
    Ok(fd)
}

/// Whether `path` (inside the jail rooted at `root`) exists. It is walked
/// from `root` one component at a time without following symlinks; a
/// missing component is `false`, a symlink an error (the binary's path is
/// resolved, so the host image shows no symlink on it).
fn shows_file(root: &Path, path: &str) -> Result<bool, StepError> {
    let err = |e: &dyn std::fmt::Display| {
        StepError::new(Step::MaskTheSandboxdBinary, format!("{path}: {e}"))
    };
    let parts = kernel_args::components(path).map_err(|e| err(&e))?;
    let Some((name, parents)) = parts.split_last() else {
        return Ok(false);
    };
    let flags = OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_RDONLY | OFlag::O_CLOEXEC;
    let mut dir = sandboxd_supervisor::sys::open_dir(root).map_err(|e| err(&e))?;
    for c in parents {
        dir = match openat(dir.as_fd(), *c, flags, Mode::empty()) {
            Ok(d) => d,
            Err(Errno::ENOENT) => return Ok(false),
            Err(e) => return Err(err(&format!("{c:?}: {e}"))),
        };
    }
    match nix::sys::stat::fstatat(dir.as_fd(), *name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(_) => Ok(true),
        Err(Errno::ENOENT) => Ok(false),
        Err(e) => Err(err(&e)),
    }
}

/// Writes the generated resolv.conf into the sandbox directory (trusted:
/// the daemon's state directory), replacing any earlier one, mode 0644.
fn write_resolv_conf(path: &Path, text: &str) -> Result<(), StepError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let err = |e: std::io::Error| {
        StepError::new(Step::WriteResolvConf, format!("{}: {e}", path.display()))
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(err)?;
    f.write_all(text.as_bytes()).map_err(err)?;
    f.sync_all().map_err(err)
}

/// Removes whatever a sandbox may have left on the host, by name and by
/// path only (so the daemon's `cleanup` can run it for a supervisor that
/// died): the rctl rules of jail `name`, the jail, then every mount at or
/// below `dir`. Idempotent; Ok only once nothing is mounted below `dir`.
pub(crate) fn remove_all(name: &str, jid: Option<i32>, dir: &Path) -> Result<(), StepError> {
    match sys::rctl_remove(&kernel_args::rctl_jail_filter(name)) {
        // ESRCH: no rule; ENOSYS: racct off (then there never were any).
        Ok(()) | Err(Errno::ESRCH | Errno::ENOSYS) => {}
        Err(e) => return Err(StepError::new(Step::RctlRemoveRule, format!("{name}: {e}"))),
    }
    let jid = match jid {
        Some(j) => Some(j),
        None => sys::jail_find(name)
            .map_err(|e| StepError::new(Step::JailGet, format!("{name}: {e}")))?,
    };
    if let Some(jid) = jid {
        match sys::jail_remove(jid) {
            // EINVAL: already gone.
            Ok(()) | Err(Errno::EINVAL) => {}
            Err(e) => return Err(StepError::new(Step::JailRemove, format!("{name}: {e}"))),
        }
    }
    unmount_all_under(dir)
}

/// Unmounts every filesystem at or below `dir`, newest first, and proves
/// none is left. A busy one (a process of the dying jail still exiting) is
/// retried, then forced.
pub(crate) fn unmount_all_under(dir: &Path) -> Result<(), StepError> {
    // Mount points are listed by resolved path. A directory that does not
    // exist (any more) has nothing mounted below it, and is compared as is.
    let dir = &match std::fs::canonicalize(dir) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => dir.to_owned(),
        Err(e) => {
            return Err(StepError::new(
                Step::ResolveSandboxDirectory,
                format!("{}: {e}", dir.display()),
            ));
        }
    };
    let list = || -> Result<Vec<(PathBuf, sys::Mounted)>, StepError> {
        let all = sys::mounts().map_err(|e| StepError::new(Step::Getfsstat, e))?;
        Ok(kernel_args::mounts_to_undo(&all, dir))
    };
    for round in 0..20 {
        let left = list()?;
        if left.is_empty() {
            return Ok(());
        }
        let force = round >= 5;
        for (on, m) in left {
            match sys::unmount_fsid(m.fsid, force) {
                // ENOENT/EINVAL: already gone (a parent took it, or a race).
                Ok(()) | Err(Errno::ENOENT | Errno::EINVAL | Errno::EBUSY) => {}
                Err(e) => {
                    return Err(StepError::new(
                        Step::Unmount,
                        format!("{} ({}): {e}", on.display(), m.fstype),
                    ));
                }
            }
        }
        if round >= 1 {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
    match list()?.first() {
        None => Ok(()),
        Some((on, m)) => Err(StepError::new(
            Step::Unmount,
            format!(
                "{} ({}) is still mounted after 20 attempts",
                on.display(),
                m.fstype
            ),
        )),
    }
}

impl Isolation for FreeBsdIsolation {
    fn setup(&mut self) -> Result<(), StepError> {
        if let Err(e) = self.setup_inner() {
            // Undo whatever was done; the first error is the one to report.
            let _ = self.teardown();
            return Err(e);
        }
        Ok(())
    }

    fn enter(&self) -> Result<(), StepError> {
        let jid = self
            .jid
            .ok_or_else(|| StepError::new(Step::JailAttach, "the jail does not exist"))?;
        sys::jail_attach(jid).map_err(|e| {
            StepError::new(Step::JailAttach, format!("{}: {e}", self.launch.plan.name))
        })?;
        nix::unistd::chdir("/").map_err(|e| StepError::new(Step::ChdirRoot, e))
    }

    fn teardown(&mut self) -> Result<(), StepError> {
        let dir = self.sandbox_dir().to_owned();
        // The lo0 alias (LOOPBACK without VIMAGE) is the daemon's: added
        // in prepare, removed in cleanup, like every host address.
        remove_all(&self.launch.plan.name, self.jid.take(), &dir)
    }
}

/// The sandbox's resource use from racct (all unknown when racct is off or
/// the jail is gone).
pub(crate) fn usage(name: &str) -> sandboxd_core::Usage {
    match sys::rctl_usage(&format!("{}:", kernel_args::rctl_jail_filter(name))) {
        Ok(text) => kernel_args::racct_usage(&text),
        Err(_) => sandboxd_core::Usage::default(),
    }
}
