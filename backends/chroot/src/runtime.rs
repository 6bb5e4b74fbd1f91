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
use sandboxd_supervisor::{Isolation, StepError};

#[cfg(target_os = "linux")]
use crate::plan::{self, HostEntry};
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
            RootBuild::ImageInPlace { image } => sys::open_dir(&self.setup.images_dir)
                .and_then(|d| sys::open_image(d.as_fd(), image))
                .map_err(|e| StepError::new("open image", format!("{image}: {e}")))?,
            _ => sys::open_dir(&self.setup.root).map_err(|e| {
                StepError::new("open root", format!("{}: {e}", self.setup.root.display()))
            })?,
        };
        self.root = Some(fd);
        Ok(())
    }

    fn enter(&self, _report_fd: std::os::fd::RawFd) -> Result<(), StepError> {
        let root = self
            .root
            .as_ref()
            .ok_or_else(|| StepError::new("chroot", "root not set up"))?;
        sys::chroot_into(root.as_fd())
            .map_err(|e| StepError::new("chroot", format!("{}: {e}", self.setup.root.display())))
    }

    fn teardown(&mut self) -> Result<(), StepError> {
        self.root = None;
        if matches!(self.setup.build, RootBuild::ImageInPlace { .. }) {
            return Ok(());
        }
        // The sandbox dir holds rootfs/upper/work; unmount everything there.
        let dir = self
            .setup
            .root
            .parent()
            .unwrap_or(&self.setup.root)
            .to_owned();
        unmount_all_under(&dir).map_err(|e| StepError::new("unmount root", e))
    }
}

#[cfg(not(target_os = "linux"))]
fn build_root(setup: &ChrootSetup) -> Result<(), StepError> {
    match &setup.build {
        RootBuild::ImageInPlace { .. } => Ok(()),
        other => Err(StepError::new(
            "build root",
            format!("{other:?} needs Linux mounts"),
        )),
    }
}

#[cfg(target_os = "linux")]
fn build_root(setup: &ChrootSetup) -> Result<(), StepError> {
    use nix::mount::MsFlags;

    let root = &setup.root;
    fn at<'a>(step: &'static str, p: &'a Path) -> impl Fn(Errno) -> StepError + 'a {
        move |e| StepError::new(step, format!("{}: {e}", p.display()))
    }
    let mkdir = |p: &Path, mode: u32| {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(mode)
            .create(p)
            .map_err(|e| StepError::new("create directory", format!("{}: {e}", p.display())))
    };
    mkdir(root, 0o755)?;
    match &setup.build {
        RootBuild::HostView { layout } => {
            sys::mount_tmpfs(
                root,
                MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
                "mode=755,size=64m",
            )
            .map_err(at("mount tmpfs root", root))?;
            for entry in layout {
                match entry {
                    HostEntry::Bind(p) => {
                        // Host layout paths come from our own probe, and the
                        // tmpfs is ours: joining them is safe.
                        let target = root.join(p.strip_prefix("/").unwrap_or(p));
                        mkdir(&target, 0o755)?;
                        sys::bind(p, &target).map_err(at("bind host directory", p))?;
                        sys::remount_bind(&target, MsFlags::MS_RDONLY | MsFlags::MS_NOSUID)
                            .map_err(at("remount host directory read-only", &target))?;
                    }
                    HostEntry::Symlink { path, target } => {
                        let link = root.join(path.strip_prefix("/").unwrap_or(path));
                        std::os::unix::fs::symlink(target, &link).map_err(|e| {
                            StepError::new("create symlink", format!("{}: {e}", link.display()))
                        })?;
                    }
                }
            }
            mkdir(&root.join("tmp"), 0o1777)?;
            // DirBuilder applies the umask; make /tmp world-writable + sticky.
            std::fs::set_permissions(
                root.join("tmp"),
                std::os::unix::fs::PermissionsExt::from_mode(0o1777),
            )
            .map_err(|e| StepError::new("chmod /tmp", e))?;
            mkdir(&root.join("dev"), 0o755)?;
        }
        RootBuild::ImageReadOnly { image } => {
            let img = open_image_fd(setup, image)?;
            let src = sys::fd_path(img.as_fd());
            sys::bind(&src, root).map_err(at("bind image", root))?;
            // nosuid + read-only on the new mount (named by its path now).
            sys::remount_bind(root, MsFlags::MS_RDONLY | MsFlags::MS_NOSUID)
                .map_err(at("remount image read-only", root))?;
        }
        RootBuild::ImageOverlay { image, upper, work } => {
            let img = open_image_fd(setup, image)?;
            mkdir(upper, 0o755)?;
            mkdir(work, 0o700)?;
            sys::mount_overlay(root, &sys::fd_path(img.as_fd()), upper, work)
                .map_err(at("mount overlay root", root))?;
        }
        RootBuild::ImageInPlace { .. } => return Ok(()),
    }
    let root_fd = sys::open_dir(root).map_err(at("open root", root))?;
    if setup.dev {
        populate_dev(root_fd.as_fd())?;
    }
    if matches!(setup.build, RootBuild::HostView { .. }) {
        mask_own_binary(root_fd.as_fd(), root)?;
    }
    for m in &setup.mounts {
        bind_client_mount(root_fd.as_fd(), m)?;
    }
    if setup.readonly {
        if let Ok(tmp) = sys::resolve_in_root(root_fd.as_fd(), Path::new("/tmp")) {
            if sys::is_dir(tmp.as_fd()) {
                let tmp_path = sys::fd_path(tmp.as_fd());
                sys::mount_tmpfs(
                    &tmp_path,
                    MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
                    "mode=1777,size=64m",
                )
                .map_err(at("mount tmpfs /tmp", Path::new("/tmp")))?;
            }
        }
        if matches!(setup.build, RootBuild::HostView { .. }) {
            sys::remount_ro(root).map_err(at("remount root read-only", root))?;
        }
    }
    Ok(())
}

#[cfg(target_os = "linux")]
fn open_image_fd(setup: &ChrootSetup, image: &str) -> Result<OwnedFd, StepError> {
    sys::open_dir(&setup.images_dir)
        .and_then(|d| sys::open_image(d.as_fd(), image))
        .map_err(|e| StepError::new("open image", format!("{image}: {e}")))
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
    let cover = sandboxd_supervisor::sys::create_mask_file(sandbox_dir).map_err(|e| {
        StepError::new(
            "create mask file",
            format!("{}: {e}", sandbox_dir.display()),
        )
    })?;
    sys::bind(&cover, &sys::fd_path(target.as_fd())).map_err(|e| {
        StepError::new(
            "mask the sandboxd binary",
            format!("{}: {e}", exe.display()),
        )
    })?;
    let masked = sys::resolve_in_root(root, &exe)
        .map_err(|e| StepError::new("mask the sandboxd binary", e))?;
    sys::remount_bind(
        &sys::fd_path(masked.as_fd()),
        MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
    )
    .map_err(|e| StepError::new("mask the sandboxd binary", e))
}

/// A tmpfs /dev holding binds of the safe device nodes, if the root has a
/// /dev directory (resolved inside the root).
#[cfg(target_os = "linux")]
fn populate_dev(root: std::os::fd::BorrowedFd<'_>) -> Result<(), StepError> {
    use nix::fcntl::OFlag;
    use nix::mount::MsFlags;

    let dev = Path::new("/dev");
    let Ok(fd) = sys::resolve_in_root(root, dev) else {
        return Ok(());
    };
    if !sys::is_dir(fd.as_fd()) {
        return Ok(());
    }
    sys::mount_tmpfs(
        &sys::fd_path(fd.as_fd()),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        "mode=755,size=64k",
    )
    .map_err(|e| StepError::new("mount tmpfs /dev", e))?;
    // Re-resolve: the old descriptor still names the directory underneath.
    let dev_fd = sys::resolve_in_root(root, dev).map_err(|e| StepError::new("open /dev", e))?;
    for node in plan::DEV_NODES {
        let host = PathBuf::from(format!("/dev/{node}"));
        if !host.exists() {
            continue;
        }
        nix::fcntl::openat(
            dev_fd.as_fd(),
            node,
            OFlag::O_CREAT | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::from_bits_truncate(0o644),
        )
        .map_err(|e| StepError::new("create device mount point", format!("/dev/{node}: {e}")))?;
        let target = sys::resolve_in_root(root, &Path::new("/dev").join(node)).map_err(|e| {
            StepError::new("resolve device mount point", format!("/dev/{node}: {e}"))
        })?;
        sys::bind(&host, &sys::fd_path(target.as_fd()))
            .map_err(|e| StepError::new("bind device node", format!("/dev/{node}: {e}")))?;
    }
    Ok(())
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

    let host_root = sys::open_dir(Path::new("/")).map_err(|e| StepError::new("open /", e))?;
    let rel = Path::new(&m.source)
        .strip_prefix("/")
        .unwrap_or(Path::new(&m.source));
    let src = sys::resolve_beneath(host_root.as_fd(), rel).map_err(|e| {
        StepError::new(
            "resolve mount source",
            format!("{}: {e} (symlinks are not allowed)", m.source),
        )
    })?;
    let target = Path::new(&m.target);
    let parent = target.parent().unwrap_or(Path::new("/"));
    let name = target.file_name().unwrap_or_default();
    let parent_fd = sys::resolve_in_root(root, parent).map_err(|e| {
        StepError::new("resolve mount target", format!("{}: {e}", parent.display()))
    })?;
    if sys::is_dir(src.as_fd()) {
        // Best effort: a read-only image cannot grow new directories; the
        // resolution below reports a missing target clearly.
        let _ = sys::mkdir_at(parent_fd.as_fd(), name, 0o755);
    }
    let dst = sys::resolve_in_root(root, target).map_err(|e| {
        StepError::new(
            "resolve mount target",
            format!("{}: {e} (it must exist in a read-only image)", m.target),
        )
    })?;
    sys::bind(&sys::fd_path(src.as_fd()), &sys::fd_path(dst.as_fd()))
        .map_err(|e| StepError::new("bind mount", format!("{} -> {}: {e}", m.source, m.target)))?;
    // Re-resolve: the old descriptor names the directory under the mount.
    let mounted = sys::resolve_in_root(root, target)
        .map_err(|e| StepError::new("resolve mount target", e))?;
    let flags = if m.read_only {
        MsFlags::MS_RDONLY | MsFlags::MS_NOSUID
    } else {
        MsFlags::MS_NOSUID
    };
    sys::remount_bind(&sys::fd_path(mounted.as_fd()), flags)
        .map_err(|e| StepError::new("remount bind mount", format!("{}: {e}", m.target)))?;
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
