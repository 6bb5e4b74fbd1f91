//! The helper side of the chroot backend: [`Isolation`] for the supervisor,
//! which builds the root (on Linux: a tmpfs or bind/overlay mount under the
//! sandbox's state dir), chroots each forked child into it, and unmounts it
//! again.

use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
#[cfg(target_os = "linux")]
use std::path::PathBuf;

#[cfg(target_os = "linux")]
use nix::errno::Errno;
use sandboxd_core::BackendError;
use sandboxd_supervisor::{Isolation, Step, StepError};

#[cfg(not(target_os = "linux"))]
use crate::plan::Executor;
#[cfg(target_os = "linux")]
use crate::plan::{BIND_RO_FLAGS, ChrootStep, IMAGE_RO_FLAGS, MountFlag, TmpfsOptions};
use crate::plan::{ChrootSetup, RootBuild};
use crate::sys;

/// The supervisor side: builds the root, chroots children into it.
#[derive(Debug)]
pub struct ChrootIsolation {
    setup: ChrootSetup,
    root: Option<OwnedFd>,
}

impl ChrootIsolation {
    /// From the launch configuration.
    pub fn new(setup: ChrootSetup) -> Self {
        Self { setup, root: None }
    }
}

impl Isolation for ChrootIsolation {
    fn setup(&mut self) -> Result<(), StepError> {
        if let Err(e) = build_root(&self.setup) {
            let _ = self.teardown();
            return Err(e);
        }
        let fd = match &self.setup.build {
            RootBuild::ImageInPlace { image } => {
                sys::open_image_dir(&self.setup.images_dir, self.setup.images_dir_no_symlinks)
                    .and_then(|d| sys::open_image(d.as_fd(), image))
                    .map_err(|e| StepError::new(Step::OpenImage, format!("{image}: {e}")))?
            }
            _ => sys::open_dir(&self.setup.root).map_err(|e| {
                StepError::new(
                    Step::OpenRoot,
                    format!("{}: {e}", self.setup.root.display()),
                )
            })?,
        };
        self.root = Some(fd);
        Ok(())
    }

    fn enter(&self) -> Result<(), StepError> {
        let root = self
            .root
            .as_ref()
            .ok_or_else(|| StepError::new(Step::Chroot, "root not set up"))?;
        sys::chroot_into(root.as_fd()).map_err(|e| {
            StepError::new(Step::Chroot, format!("{}: {e}", self.setup.root.display()))
        })
    }

    fn teardown(&mut self) -> Result<(), StepError> {
        self.root = None;
        if matches!(self.setup.build, RootBuild::ImageInPlace { .. }) {
            return Ok(());
        }
        // The sandbox dir holds rootfs, upper/work or the layer tmpfs holding
        // them: unmount everything there.
        let dir = self
            .setup
            .root
            .parent()
            .unwrap_or(&self.setup.root)
            .to_owned();
        unmount_all_under(&dir).map_err(|e| StepError::new(Step::UnmountRoot, e))
    }
}

#[cfg(not(target_os = "linux"))]
fn build_root(setup: &ChrootSetup) -> Result<(), StepError> {
    // Without Linux mounts the plan has no setup steps (the root is the
    // image directory itself); any other plan cannot be built here.
    match setup.steps.iter().find(|s| s.executor() == Executor::Setup) {
        None => Ok(()),
        Some(step) => Err(StepError::new(
            Step::BuildRoot,
            format!("{step:?} needs Linux mounts"),
        )),
    }
}

/// The mount(2) flags of a plan's flag list.
#[cfg(target_os = "linux")]
fn ms_flags(flags: &[MountFlag]) -> nix::mount::MsFlags {
    use nix::mount::MsFlags;
    flags.iter().fold(MsFlags::empty(), |all, f| {
        all | match f {
            MountFlag::Rdonly => MsFlags::MS_RDONLY,
            MountFlag::Nosuid => MsFlags::MS_NOSUID,
            MountFlag::Nodev => MsFlags::MS_NODEV,
            MountFlag::Noexec => MsFlags::MS_NOEXEC,
        }
    })
}

/// Runs the plan's setup steps, in order. Every step is named: a new one
/// must be given its code here (or said to run elsewhere), never skipped.
#[cfg(target_os = "linux")]
fn build_root(setup: &ChrootSetup) -> Result<(), StepError> {
    let root = &setup.root;
    fn at<'a>(step: Step, p: &'a Path) -> impl Fn(Errno) -> StepError + 'a {
        move |e| StepError::new(step, format!("{}: {e}", p.display()))
    }
    let mkdir = |p: &Path, mode: u32| {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(mode)
            .create(p)
            .map_err(|e| StepError::new(Step::CreateDirectory, format!("{}: {e}", p.display())))
    };
    // Opened at the first step that resolves paths beneath the root, which
    // the plan puts after the steps that mount it.
    let mut root_fd = RootFd {
        path: root,
        fd: None,
    };
    for step in &setup.steps {
        match step {
            ChrootStep::CreateDir { path, mode } => mkdir(path, *mode)?,
            ChrootStep::MountRootTmpfs(t) => sys::mount_tmpfs(root, ms_flags(&t.flags), &t.data)
                .map_err(at(Step::MountTmpfsRoot, root))?,
            ChrootStep::BindHostDir { source, target } => {
                mkdir(target, 0o755)?;
                sys::bind(source, target).map_err(at(Step::BindHostDirectory, source))?;
                sys::remount_bind(target, ms_flags(&BIND_RO_FLAGS))
                    .map_err(at(Step::RemountHostDirectoryReadOnly, target))?;
            }
            ChrootStep::Symlink { link, target } => {
                std::os::unix::fs::symlink(target, link).map_err(|e| {
                    StepError::new(Step::CreateSymlink, format!("{}: {e}", link.display()))
                })?;
            }
            ChrootStep::Chmod { path, mode } => {
                std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(*mode))
                    .map_err(|e| StepError::new(Step::Chmod, format!("{}: {e}", path.display())))?;
            }
            ChrootStep::BindImage { image } => {
                let img = open_image_fd(setup, image)?;
                sys::bind(&sys::fd_path(img.as_fd()), root).map_err(at(Step::BindImage, root))?;
                // Named by its path now, the new mount gets the flags.
                sys::remount_bind(root, ms_flags(&IMAGE_RO_FLAGS))
                    .map_err(at(Step::RemountImageReadOnly, root))?;
            }
            ChrootStep::MountLayer { path, tmpfs: t } => {
                sys::mount_tmpfs(path, ms_flags(&t.flags), &t.data)
                    .map_err(at(Step::MountWritableLayer, path))?;
            }
            ChrootStep::MountOverlay {
                image,
                layers,
                upper,
                work,
            } => {
                // Held open until the mount is made: the kernel resolves
                // the /proc/self/fd paths, never a path a symlink decides.
                let lower = if layers.is_empty() {
                    vec![open_image_fd(setup, image)?]
                } else {
                    // overlayfs stacks lowerdirs top first.
                    layers
                        .iter()
                        .rev()
                        .map(|l| sandboxd_supervisor::images::open_layer(&setup.images_dir, l))
                        .collect::<Result<Vec<_>, _>>()?
                };
                let paths: Vec<PathBuf> = lower.iter().map(|fd| sys::fd_path(fd.as_fd())).collect();
                sys::mount_overlay(root, &paths, upper, work)
                    .map_err(at(Step::MountOverlayRoot, root))?;
            }
            ChrootStep::MountDev { tmpfs, nodes, shm } => {
                populate_dev(root_fd.get()?, tmpfs, nodes, shm)?;
            }
            ChrootStep::MaskOwnBinary => mask_own_binary(root_fd.get()?, root)?,
            ChrootStep::BindMount(m) => bind_client_mount(root_fd.get()?, m)?,
            ChrootStep::MountTmp(t) => mount_tmp(root_fd.get()?, t)?,
            ChrootStep::RemountRoot(flags) => {
                sys::remount(root, ms_flags(flags)).map_err(at(Step::RemountRootReadOnly, root))?;
            }
            // In each forked child: `Isolation::enter`.
            ChrootStep::Chroot => {}
            // The generic supervisor, from the launch configuration.
            ChrootStep::Fork
            | ChrootStep::Setsid
            | ChrootStep::CloseRange
            | ChrootStep::DropCapabilities(_)
            | ChrootStep::NoNewPrivs
            | ChrootStep::SetRlimit(_)
            | ChrootStep::SetGroups(_)
            | ChrootStep::SetGid(_)
            | ChrootStep::SetUid(_)
            | ChrootStep::Chdir(_)
            | ChrootStep::Seccomp
            | ChrootStep::Execve(_) => {}
        }
    }
    Ok(())
}

/// The root directory, opened on first use.
#[cfg(target_os = "linux")]
struct RootFd<'a> {
    path: &'a Path,
    fd: Option<OwnedFd>,
}

#[cfg(target_os = "linux")]
impl RootFd<'_> {
    fn get(&mut self) -> Result<std::os::fd::BorrowedFd<'_>, StepError> {
        let fd = match self.fd.take() {
            Some(fd) => fd,
            None => sys::open_dir(self.path).map_err(|e| {
                StepError::new(Step::OpenRoot, format!("{}: {e}", self.path.display()))
            })?,
        };
        let fd: &OwnedFd = self.fd.insert(fd);
        Ok(fd.as_fd())
    }
}

/// A tmpfs over the root's /tmp, if it has one (resolved inside the root).
#[cfg(target_os = "linux")]
fn mount_tmp(root: std::os::fd::BorrowedFd<'_>, t: &TmpfsOptions) -> Result<(), StepError> {
    if let Ok(tmp) = sys::resolve_in_root(root, Path::new("/tmp")) {
        if sys::is_dir(tmp.as_fd()) {
            sys::mount_tmpfs(&sys::fd_path(tmp.as_fd()), ms_flags(&t.flags), &t.data)
                .map_err(|e| StepError::new(Step::MountTmpfsTmp, format!("/tmp: {e}")))?;
        }
    }
    Ok(())
}

#[cfg(target_os = "linux")]
fn open_image_fd(setup: &ChrootSetup, image: &str) -> Result<OwnedFd, StepError> {
    sys::open_image_dir(&setup.images_dir, setup.images_dir_no_symlinks)
        .and_then(|d| sys::open_image(d.as_fd(), image))
        .map_err(|e| StepError::new(Step::OpenImage, format!("{image}: {e}")))
}

/// If this binary (the supervisor, i.e. sandboxd) is visible inside the host
/// view (installed under /usr, say), covers it with an empty, unreadable
/// file, so a payload can neither read nor run the helper (the
/// CVE-2019-5736 class); the binds are read-only, so it was never writable.
#[cfg(target_os = "linux")]
fn mask_own_binary(root: std::os::fd::BorrowedFd<'_>, root_path: &Path) -> Result<(), StepError> {
    use nix::mount::MsFlags;

    let Ok(exe) = std::fs::read_link("/proc/self/exe") else {
        return Ok(());
    };
    let Ok(target) = sys::resolve_in_root(root, &exe) else {
        return Ok(());
    };
    if !nix::sys::stat::fstat(target.as_fd())
        .is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFREG)
    {
        return Ok(());
    }
    let sandbox_dir = root_path.parent().unwrap_or(root_path);
    let (cover, _) = sandboxd_supervisor::sys::create_mask_file(sandbox_dir).map_err(|e| {
        StepError::new(
            Step::CreateMaskFile,
            format!("{}: {e}", sandbox_dir.display()),
        )
    })?;
    sys::bind(&cover, &sys::fd_path(target.as_fd())).map_err(|e| {
        StepError::new(
            Step::MaskTheSandboxdBinary,
            format!("{}: {e}", exe.display()),
        )
    })?;
    let masked = sys::resolve_in_root(root, &exe)
        .map_err(|e| StepError::new(Step::MaskTheSandboxdBinary, e))?;
    sys::remount_bind(
        &sys::fd_path(masked.as_fd()),
        MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
    )
    .map_err(|e| StepError::new(Step::MaskTheSandboxdBinary, e))
}

/// A tmpfs /dev holding binds of the safe device nodes and a tmpfs
/// /dev/shm, if the root has a /dev directory (resolved inside the root).
#[cfg(target_os = "linux")]
fn populate_dev(
    root: std::os::fd::BorrowedFd<'_>,
    tmpfs: &TmpfsOptions,
    nodes: &[String],
    shm: &TmpfsOptions,
) -> Result<(), StepError> {
    use nix::fcntl::OFlag;

    let dev = Path::new("/dev");
    let Ok(fd) = sys::resolve_in_root(root, dev) else {
        return Ok(());
    };
    if !sys::is_dir(fd.as_fd()) {
        return Ok(());
    }
    sys::mount_tmpfs(
        &sys::fd_path(fd.as_fd()),
        ms_flags(&tmpfs.flags),
        &tmpfs.data,
    )
    .map_err(|e| StepError::new(Step::MountTmpfsDev, e))?;
    // Re-resolve: the old descriptor still names the directory underneath.
    let dev_fd =
        sys::resolve_in_root(root, dev).map_err(|e| StepError::new(Step::OpenDevDir, e))?;
    for node in nodes {
        let host = PathBuf::from(format!("/dev/{node}"));
        if !host.exists() {
            continue;
        }
        nix::fcntl::openat(
            dev_fd.as_fd(),
            node.as_str(),
            OFlag::O_CREAT | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::from_bits_truncate(0o644),
        )
        .map_err(|e| StepError::new(Step::CreateDeviceMountPoint, format!("/dev/{node}: {e}")))?;
        let target = sys::resolve_in_root(root, &dev.join(node)).map_err(|e| {
            StepError::new(Step::ResolveDeviceMountPoint, format!("/dev/{node}: {e}"))
        })?;
        sys::bind(&host, &sys::fd_path(target.as_fd()))
            .map_err(|e| StepError::new(Step::BindDeviceNode, format!("/dev/{node}: {e}")))?;
    }
    let shm_err = |e: Errno| StepError::new(Step::MountTmpfsDevShm, e);
    sys::mkdir_at(dev_fd.as_fd(), std::ffi::OsStr::new("shm"), 0o755).map_err(shm_err)?;
    let shm_fd = sys::resolve_in_root(root, Path::new("/dev/shm")).map_err(shm_err)?;
    sys::mount_tmpfs(
        &sys::fd_path(shm_fd.as_fd()),
        ms_flags(&shm.flags),
        &shm.data,
    )
    .map_err(shm_err)
}

/// Binds one client mount: the source is resolved from `/` with no symlink
/// allowed anywhere (validation already checked it lies under an allowed
/// source), the target inside the root with RESOLVE_IN_ROOT.
#[cfg(target_os = "linux")]
fn bind_client_mount(
    root: std::os::fd::BorrowedFd<'_>,
    m: &sandboxd_core::spec::MountSpec,
) -> Result<(), StepError> {
    use nix::mount::MsFlags;

    let host_root =
        sys::open_dir(Path::new("/")).map_err(|e| StepError::new(Step::OpenRoot_, e))?;
    let rel = Path::new(&m.source)
        .strip_prefix("/")
        .unwrap_or(Path::new(&m.source));
    let src = sys::resolve_beneath(host_root.as_fd(), rel).map_err(|e| {
        StepError::new(
            Step::ResolveMountSource,
            format!("{}: {e} (symlinks are not allowed)", m.source),
        )
    })?;
    let target = Path::new(&m.target);
    let parent = target.parent().unwrap_or(Path::new("/"));
    let name = target.file_name().unwrap_or_default();
    let parent_fd = sys::resolve_in_root(root, parent).map_err(|e| {
        StepError::new(
            Step::ResolveMountTarget,
            format!("{}: {e}", parent.display()),
        )
    })?;
    if sys::is_dir(src.as_fd()) {
        // Best effort: a read-only image cannot grow new directories; the
        // resolution below reports a missing target clearly.
        let _ = sys::mkdir_at(parent_fd.as_fd(), name, 0o755);
    }
    let dst = sys::resolve_in_root(root, target).map_err(|e| {
        StepError::new(
            Step::ResolveMountTarget,
            format!("{}: {e} (it must exist in a read-only image)", m.target),
        )
    })?;
    sys::bind(&sys::fd_path(src.as_fd()), &sys::fd_path(dst.as_fd())).map_err(|e| {
        StepError::new(
            Step::BindMount,
            format!("{} -> {}: {e}", m.source, m.target),
        )
    })?;
    // Re-resolve: the old descriptor names the directory under the mount.
    let mounted = sys::resolve_in_root(root, target)
        .map_err(|e| StepError::new(Step::ResolveMountTarget, e))?;
    let flags = if m.read_only {
        MsFlags::MS_RDONLY | MsFlags::MS_NOSUID
    } else {
        MsFlags::MS_NOSUID
    };
    sys::remount_bind(&sys::fd_path(mounted.as_fd()), flags)
        .map_err(|e| StepError::new(Step::RemountBindMount, format!("{}: {e}", m.target)))?;
    Ok(())
}

/// Unmounts everything at or below `dir` and proves nothing is left, so the
/// caller may delete `dir` without reaching through a bind into host files.
#[cfg(target_os = "linux")]
pub(crate) fn unmount_all_under(dir: &Path) -> Result<(), BackendError> {
    let io = |step, path: &Path, e: std::io::Error| BackendError::Io {
        step,
        path: path.to_owned(),
        source: e,
    };
    for _ in 0..8 {
        let mut mounted =
            sys::mounts_under(dir).map_err(|e| io("read /proc/self/mountinfo", dir, e))?;
        if mounted.is_empty() {
            return Ok(());
        }
        // Shallowest first: a lazy detach of a parent takes its children.
        mounted.sort_by_key(|p| p.components().count());
        for m in mounted {
            match sys::umount_detach(&m) {
                Ok(()) | Err(Errno::EINVAL | Errno::ENOENT) => {}
                Err(e) => return Err(io("unmount", &m, e.into())),
            }
        }
    }
    let left = sys::mounts_under(dir).map_err(|e| io("read /proc/self/mountinfo", dir, e))?;
    match left.first() {
        None => Ok(()),
        Some(p) => Err(io(
            "unmount",
            p,
            std::io::Error::other("still mounted after 8 attempts"),
        )),
    }
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn unmount_all_under(_dir: &Path) -> Result<(), BackendError> {
    // Without Linux mounts the backend mounts nothing.
    Ok(())
}
