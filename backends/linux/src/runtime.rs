//! The Linux runtime: what the supervisor helper does with a [`LinuxPlan`].
//!
//! `setup` creates the cgroups and clones the sandbox's first process into
//! new namespaces. That process (pid 1 of the new pid namespace) builds the
//! root from the plan's mount list, sets the hostname, brings `lo` up when
//! asked, pivots into the root, detaches the old one, and stays a minimal
//! reaper. Every payload — the main process too — is started by `enter`: a
//! forked child of the supervisor joins the cgroups and setns()es into the
//! reaper's namespaces, then clones once more with CLONE_PARENT so the
//! payload lands inside the pid namespace while the supervisor stays its
//! parent (and reaps it, and reports its exit). Killing the reaper ends the
//! whole pid namespace; nothing is mounted in the host's mount namespace.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::MsFlags;
use nix::sched::CloneFlags;
use nix::sys::signal::Signal;
use nix::sys::wait::WaitStatus;
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use sandboxd_core::fault;
use sandboxd_supervisor::{CommonConfig, Isolation, Step, StepError, timing};

use crate::handshake::{self, FromInit, SupervisorChannel, ToInit};
use crate::plan::{
    Actor, Layer, LinuxPlan, LinuxStep, Mount, MountFlag, MountSource, Namespace, Network,
    RESERVED_TARGETS, RootOp,
};
use crate::sys::{self, Cloned};

/// The supervisor's configuration for one sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinuxLaunch {
    /// The executable plan.
    pub plan: LinuxPlan,
    /// The directory holding the image: the daemon's images directory
    /// (trusted configuration), or the parent of a client-given rootfs.
    pub images_dir: PathBuf,
    /// Open `images_dir` without following any symlink (a client-given
    /// rootfs; see `sandboxd_supervisor::sys::open_image_dir`).
    #[serde(default)]
    pub images_dir_no_symlinks: bool,
    /// The sandbox's cgroup in the cgroup v2 hierarchy (one of
    /// `plan.cgroups.dirs`), which processes are cloned straight into.
    pub unified_cgroup: Option<PathBuf>,
    /// INIT mode: pid 1 itself becomes the main process (the image's init or
    /// the given command), hardened like every payload.
    pub init: Option<CommonConfig>,
    /// NONE or LOOPBACK: the daemon sent a new, empty network namespace it
    /// made ahead of time (its pool), which pid 1 joins first instead of
    /// being cloned with CLONE_NEWNET.
    #[serde(default)]
    pub pooled_netns: bool,
}

/// The supervisor side of a Linux sandbox.
#[derive(Debug)]
pub struct LinuxIsolation {
    launch: LinuxLaunch,
    reaper: Option<Pid>,
    /// A pidfd of `reaper`, so teardown never signals a process that
    /// reused its pid: in a shared pid namespace (`spec.join.pid`) the
    /// first process is not that namespace's init, and a pod process of
    /// its uid can kill it (the supervisor then reaps it) long before.
    reaper_fd: Option<OwnedFd>,
    /// Namespace descriptors of the reaper, in the order `enter` joins them.
    namespaces: Vec<(CloneFlags, OwnedFd)>,
    pid_ns: Option<String>,
    /// The v2 cgroup directory, for clone3(CLONE_INTO_CGROUP).
    cgroup_fd: Option<OwnedFd>,
    /// Children are cloned straight into the v2 cgroup (the kernel took
    /// CLONE_INTO_CGROUP for pid 1).
    into_cgroup: bool,
    /// INIT mode: the log capture's write ends (stdout, stderr), which pid 1
    /// inherits and installs before it execs the init.
    main_output: Option<(RawFd, RawFd)>,
    /// NAMESPACE: the network namespace the daemon opened and checked,
    /// which pid 1 joins; closed here once pid 1 is cloned.
    given_netns: Option<OwnedFd>,
    /// The OOM-count files of the sandbox's cgroups (`oom_count`).
    oom_files: std::cell::OnceCell<Vec<PathBuf>>,
    /// The cgroup files a payload writes itself into (`join_cgroups`),
    /// opened once at setup (close-on-exec; every payload closes them
    /// before exec anyway), so each exec writes to a descriptor instead of
    /// resolving cgroupfs paths.
    join_files: Vec<(PathBuf, std::fs::File)>,
}

impl LinuxIsolation {
    /// From the launch configuration.
    pub fn new(launch: LinuxLaunch) -> Self {
        Self {
            launch,
            reaper: None,
            reaper_fd: None,
            namespaces: Vec::new(),
            pid_ns: None,
            cgroup_fd: None,
            into_cgroup: false,
            main_output: None,
            given_netns: None,
            oom_files: std::cell::OnceCell::new(),
            join_files: Vec::new(),
        }
    }

    /// From the launch configuration and the descriptors that came with it:
    /// exactly one, the network namespace, for a NAMESPACE plan or one the
    /// daemon made ahead; none otherwise.
    pub fn with_fds(launch: LinuxLaunch, fds: Vec<OwnedFd>) -> Result<Self, StepError> {
        let given = matches!(launch.plan.network, Network::Given(_)) || launch.pooled_netns;
        let mut fds = fds.into_iter();
        let netns = fds.next();
        if fds.next().is_some() || given != netns.is_some() {
            return Err(StepError::new(
                Step::LaunchDescriptors,
                format!(
                    "the plan's network {:?} needs {} launch descriptor(s), and the daemon sent another number",
                    launch.plan.network,
                    usize::from(given)
                ),
            ));
        }
        let mut this = Self::new(launch);
        this.given_netns = netns;
        Ok(this)
    }

    /// Clones pid 1 with `flags` (namespaces only), into the v2 cgroup when
    /// there is one (no migration), else plainly. Returns whether the child
    /// started in it.
    ///
    /// # Safety
    ///
    /// As [`sys::clone_process`]: the calling process must be
    /// single-threaded.
    unsafe fn clone_placed(&self, flags: CloneFlags) -> Result<(Cloned, bool), Errno> {
        if let Some(fd) = &self.cgroup_fd {
            // SAFETY: a single-threaded caller (this fn's contract); `flags`
            // holds namespace flags only.
            match unsafe { sys::clone_into_cgroup(flags, fd.as_fd()) } {
                Ok(c) => return Ok((c, true)),
                Err(Errno::ENOSYS | Errno::E2BIG | Errno::EINVAL) => {}
                Err(e) => return Err(e),
            }
        }
        // SAFETY: as above.
        unsafe { sys::clone_process(flags) }.map(|c| (c, false))
    }

    /// The sandbox's pid namespace, if it has its own.
    fn own_pid_ns(&self) -> Option<&str> {
        self.has(Namespace::Pid)
            .then_some(self.pid_ns.as_deref())
            .flatten()
    }

    fn has(&self, ns: Namespace) -> bool {
        self.launch.plan.namespaces.contains(&ns)
    }

    /// A child in its parent's pid namespace (`spec.join.pid`): its
    /// processes are found, signalled and killed through its cgroup, as
    /// the namespace is not its own and outlives it.
    fn shares_pid(&self) -> bool {
        self.launch
            .plan
            .join
            .as_ref()
            .is_some_and(|j| j.namespaces.contains(&Namespace::Pid))
    }

    /// The host pids in the sandbox's cgroup (every process of the sandbox
    /// joins each of its cgroup directories, so the first one lists them
    /// all); None without a cgroup, or if it cannot be read (callers then
    /// fall back to what they did before).
    fn cgroup_pids(&self) -> Option<Vec<Pid>> {
        let dir = self.launch.plan.cgroups.dirs.first()?;
        let text = std::fs::read_to_string(dir.join("cgroup.procs")).ok()?;
        Some(
            text.lines()
                .filter_map(|l| l.trim().parse().ok())
                .map(Pid::from_raw)
                .collect(),
        )
    }

    /// The processes of the sandbox's own pid namespace, without those of
    /// children sharing it (`spec.join.pid`): those are in their own
    /// cgroups, not this sandbox's.
    fn pids_of_own_ns(&self, ns: &str) -> Vec<Pid> {
        let pids = sys::pids_in_ns(ns);
        match self.cgroup_pids() {
            Some(mine) => pids.into_iter().filter(|p| mine.contains(p)).collect(),
            None => pids,
        }
    }

    /// SIGKILLs every process of the sandbox's cgroup: `cgroup.kill` of its
    /// v2 cgroup where the kernel has it (Linux 5.14+: atomic, a forking
    /// process cannot escape it), else one pass over `cgroup.procs`.
    fn kill_cgroup(&self) -> Result<(), StepError> {
        if let Some(dir) = &self.launch.unified_cgroup {
            let kill = dir.join("cgroup.kill");
            if kill.exists() {
                return sys::write_file(&kill, "1").map_err(|e| {
                    StepError::new(Step::KillCgroup, format!("{}: {e}", kill.display()))
                });
            }
        }
        for pid in self.cgroup_pids().unwrap_or_default() {
            let _ = sys::send_signal(pid, Signal::SIGKILL);
        }
        Ok(())
    }

    fn remove_cgroups(&self) -> Result<(), StepError> {
        for dir in self.launch.plan.cgroups.dirs.iter().rev() {
            remove_cgroup_dir(dir)?;
        }
        Ok(())
    }

    /// The OOM kills of the sandbox's memory cgroup. Read at every exec's
    /// start and end, so the files that exist (`memory.events` on v2,
    /// `memory.oom_control` on v1, in whichever directory has the memory
    /// controller) are found once, by the first read that finds any.
    fn oom_count(&self) -> u64 {
        let files = match self.oom_files.get() {
            Some(files) => files,
            None => {
                let found: Vec<PathBuf> = self
                    .launch
                    .plan
                    .cgroups
                    .dirs
                    .iter()
                    .flat_map(|d| OOM_FILES.iter().map(move |f| d.join(f)))
                    .filter(|f| f.is_file())
                    .collect();
                if found.is_empty() {
                    return 0;
                }
                self.oom_files.get_or_init(|| found)
            }
        };
        files.iter().map(|f| oom_kills(f)).sum()
    }

    /// Creates the cgroup directories and writes the plan's files: with
    /// `v1`, those under a sandbox directory other than the v2 one pid 1 is
    /// cloned into (a hybrid host's v1 hierarchies); without, the rest (the
    /// v2 directory, its limits, and the controllers enabled in its
    /// parents' `cgroup.subtree_control`).
    fn create_cgroups(&self, v1: bool) -> Result<(), StepError> {
        let plan = &self.launch.plan;
        let unified = self.launch.unified_cgroup.as_ref();
        let in_v1 = |path: &Path| {
            plan.cgroups
                .dirs
                .iter()
                .any(|d| Some(d) != unified && path.starts_with(d))
        };
        for dir in plan.cgroups.dirs.iter().filter(|d| in_v1(d) == v1) {
            std::fs::create_dir_all(dir).map_err(|e| {
                StepError::new(Step::CreateCgroup, format!("{}: {e}", dir.display()))
            })?;
        }
        for w in plan.cgroups.writes.iter().filter(|w| in_v1(&w.file) == v1) {
            // Test builds only (feature `weaken`): the cgroup keeps the
            // default weight, which VerifySandbox must then report.
            if (w.file.ends_with("cpu.weight") || w.file.ends_with("cpu.shares"))
                && sandboxd_core::weaken::skip(sandboxd_core::weaken::CPU_WEIGHT)
            {
                continue;
            }
            sys::write_file(&w.file, &w.value).map_err(|e| {
                StepError::new(
                    Step::WriteCgroupLimit,
                    format!("{} = {}: {e}", w.file.display(), w.value),
                )
            })?;
        }
        Ok(())
    }

    fn setup_inner(&mut self) -> Result<(), StepError> {
        let id_map = supervisor_steps(&self.launch.plan)?;
        // Before the clone only the v2 cgroup, which pid 1 is cloned
        // straight into; the v1 ones (a hybrid host's) are made while pid 1
        // builds the root, before it is placed in them (below).
        self.create_cgroups(false)?;
        timing::mark("create cgroups");
        let plan = &self.launch.plan;
        std::fs::create_dir_all(&plan.rootfs).map_err(|e| {
            StepError::new(
                Step::CreateRootMountPoint,
                format!("{}: {e}", plan.rootfs.display()),
            )
        })?;
        if let Some(dir) = &self.launch.unified_cgroup {
            let fd = sys::open_dir(dir)
                .map_err(|e| StepError::new(Step::OpenCgroup, format!("{}: {e}", dir.display())))?;
            self.cgroup_fd = Some(fd);
        }
        let plan = &self.launch.plan;
        timing::mark("root mount point, cgroup fd");

        // With the parent's pid namespace: the supervisor's own, to return
        // to once the first process is cloned into the parent's.
        let mut own_pid_ns = None;
        if let Some(join) = &plan.join {
            own_pid_ns = join_parent(join)?;
            timing::mark("join the parent sandbox's namespaces");
        }
        let (mut init, to_supervisor) = handshake::pair()?;
        let mut flags = CloneFlags::empty();
        for ns in &plan.namespaces {
            flags |= match ns {
                Namespace::Mount => CloneFlags::CLONE_NEWNS,
                Namespace::Pid => CloneFlags::CLONE_NEWPID,
                Namespace::Uts => CloneFlags::CLONE_NEWUTS,
                Namespace::Ipc => CloneFlags::CLONE_NEWIPC,
                // RESTRICTED: pid 1 joins the daemon's namespace instead.
                // NAMESPACE: pid 1 joins the given one.
                Namespace::Net
                    if matches!(plan.network, Network::Routed(_) | Network::Given(_))
                        || self.launch.pooled_netns =>
                {
                    CloneFlags::empty()
                }
                Namespace::Net => CloneFlags::CLONE_NEWNET,
                // Unshared by the reaper once it is in its cgroup.
                Namespace::Cgroup => CloneFlags::empty(),
                // Unshared by pid 1 once the sandbox is built (see pid1_main).
                Namespace::User => CloneFlags::empty(),
            };
        }
        // SAFETY: setup runs in the supervisor helper, which is
        // single-threaded (supervise checks it, and never starts a thread).
        let cloned = unsafe { self.clone_placed(flags) };
        if let (Some(fd), Ok((Cloned::Parent(_), _)) | Err(_)) = (&own_pid_ns, &cloned) {
            // Back to the host's pid namespace for the supervisor's later
            // forks: an exec's intermediate process then stays out of the
            // pod until `enter` puts only the payload there, as in any
            // sandbox (setns to one's own active namespace is allowed).
            sys::setns(fd.as_fd(), CloneFlags::CLONE_NEWPID)
                .map_err(|e| StepError::new(Step::ReturnToOwnPidNamespace, e))?;
        }
        drop(own_pid_ns);
        let (cloned, placed) = cloned.map_err(|e| StepError::new(Step::CloneNamespaces, e))?;
        self.into_cgroup = placed;
        match cloned {
            Cloned::Child => {
                drop(init);
                let netns = self.given_netns.as_ref().map(AsRawFd::as_raw_fd);
                pid1_main(&self.launch, placed, to_supervisor, self.main_output, netns)
            }
            Cloned::Parent(reaper) => {
                drop(to_supervisor);
                // pid 1 holds its own copy until it has joined it.
                self.given_netns = None;
                self.reaper = Some(reaper);
                // Unreaped yet (it is our child), so the pid is still its.
                self.reaper_fd = sandboxd_supervisor::sys::pidfd_open(reaper).ok();
                timing::mark("clone pid 1");
                // pid 1 builds the root while its v1 cgroups are made, with
                // their limits; it then joins them itself (JoinCgroups),
                // before anything of the sandbox runs.
                init.send(ToInit::Go)?;
                let made = self
                    .create_cgroups(true)
                    .and_then(|()| {
                        fault::check(fault::CGROUPS)
                            .map_err(|e| StepError::new(Step::Injected(fault::CGROUPS), e))
                    })
                    .and_then(|()| {
                        fault::check(fault::CLONED)
                            .map_err(|e| StepError::new(Step::Injected(fault::CLONED), e))
                    })
                    .and_then(|()| {
                        timing::mark("create v1 cgroups (pid 1 builds meanwhile)");
                        init.send(ToInit::CgroupsMade)
                    });
                if let Err(e) = made {
                    // pid 1's own failure, if it failed meanwhile, is the
                    // cause (CgroupsMade to a pid 1 that is gone).
                    return Err(init
                        .failure_within(std::time::Duration::from_millis(100))
                        .unwrap_or(e));
                }
                // The supervisor's own preparation, while pid 1 builds. A
                // pid 1 that failed meanwhile is gone (its /proc/<pid>/ns
                // with it): its own failure is the cause.
                if let Err(e) = self.open_namespaces(true) {
                    return Err(init
                        .failure_within(std::time::Duration::from_millis(100))
                        .unwrap_or(e));
                }
                // A reaper says Ready; an init's successful exec closes the
                // pipe with nothing said.
                let ready = loop {
                    match init.recv()? {
                        Some(FromInit::NeedIdMaps) => {
                            let Some(range) = id_map else {
                                return Err(StepError::new(
                                    Step::WriteIdMap,
                                    "the sandbox init asked for id maps, but the plan has no user namespace",
                                ));
                            };
                            // Written by real root, so setgroups(2) stays
                            // allowed inside: sandbox ids 0..count are host
                            // ids start.. .
                            let line = format!("0 {} {}\n", range.host_start, range.count);
                            for file in ["uid_map", "gid_map"] {
                                let path = PathBuf::from(format!("/proc/{reaper}/{file}"));
                                sys::write_file(&path, &line).map_err(|e| {
                                    StepError::new(
                                        Step::WriteIdMap,
                                        format!("{}: {e}", path.display()),
                                    )
                                })?;
                            }
                            init.send(ToInit::IdMapsWritten)?;
                        }
                        Some(FromInit::Ready) => break self.launch.init.is_none(),
                        Some(FromInit::Failed(e)) => return Err(e),
                        None => break self.launch.init.is_some(),
                    }
                };
                drop(init);
                if !ready {
                    return Err(StepError::new(Step::SandboxInit, "exited during setup"));
                }
                timing::mark("pid 1 builds the sandbox (mounts, pivot_root, lo)");
            }
        }
        // The rest, which pid 1 joined or made after its clone.
        self.open_namespaces(false)?;
        timing::mark("open namespace fds");
        Ok(())
    }

    /// Opens pid 1's namespaces that every payload joins (shared ones
    /// too: pid 1 is in the parent's, and every payload enters pid 1's),
    /// in [`NAMESPACES`]' order: the `early` ones, which pid 1 has from
    /// its clone, while it builds the root, then, once it is Ready, the
    /// others. With the early ones the supervisor's children are set to be
    /// born in the sandbox's pid namespace (its own, or the parent's it
    /// shares): each payload is one fork, which joins the other namespaces
    /// and execs, with the supervisor as its parent. The supervisor itself
    /// stays where it is (setns(CLONE_NEWPID) only sets where children go).
    fn open_namespaces(&mut self, early: bool) -> Result<(), StepError> {
        let reaper = self.reaper.map(Pid::as_raw).unwrap_or_default();
        let joined = self
            .launch
            .plan
            .join
            .as_ref()
            .map(|j| j.namespaces.clone())
            .unwrap_or_default();
        for (ns, name, flag, from_clone) in NAMESPACES {
            if from_clone == early && (self.has(ns) || joined.contains(&ns)) {
                let fd = sys::open_namespace(reaper, name).map_err(|e| {
                    StepError::new(
                        Step::OpenNamespace,
                        format!("/proc/{reaper}/ns/{name}: {e}"),
                    )
                })?;
                self.namespaces.push((flag, fd));
            }
        }
        if !early {
            let rank = |flag: &CloneFlags| NAMESPACES.iter().position(|n| n.2 == *flag);
            self.namespaces.sort_by_key(|(flag, _)| rank(flag));
            return Ok(());
        }
        self.pid_ns = sys::pid_ns_of(reaper);
        if let Some((_, fd)) = self
            .namespaces
            .iter()
            .find(|(flag, _)| *flag == CloneFlags::CLONE_NEWPID)
        {
            sys::setns(fd.as_fd(), CloneFlags::CLONE_NEWPID)
                .map_err(|e| StepError::new(Step::SetPidNamespaceForChildren, e))?;
        }
        self.join_files = join_files(&self.launch, self.into_cgroup)?;
        Ok(())
    }
}

/// The namespaces a payload joins, in the order it joins them, and
/// whether pid 1 has each from its clone (made by it, or the parent's it
/// was cloned into) rather than later: a given or pooled network
/// namespace it joins, the cgroup one it unshares once in its cgroups, the
/// user one it unshares last. The user namespace is joined last: it owns
/// none of the others, so the host's root must join those first.
const NAMESPACES: [(Namespace, &str, CloneFlags, bool); 7] = [
    (Namespace::Ipc, "ipc", CloneFlags::CLONE_NEWIPC, true),
    (Namespace::Uts, "uts", CloneFlags::CLONE_NEWUTS, true),
    (Namespace::Net, "net", CloneFlags::CLONE_NEWNET, false),
    (
        Namespace::Cgroup,
        "cgroup",
        CloneFlags::CLONE_NEWCGROUP,
        false,
    ),
    (Namespace::Pid, "pid", CloneFlags::CLONE_NEWPID, true),
    (Namespace::Mount, "mnt", CloneFlags::CLONE_NEWNS, true),
    (Namespace::User, "user", CloneFlags::CLONE_NEWUSER, false),
];

/// `JoinParent`: moves the supervisor into the namespaces a child shares
/// with its parent (the parent's pid 1's), so pid 1 is cloned into them.
/// The pid comes from the daemon; it is trusted only as a pidfd whose
/// process is the parent supervisor's child: the pidfd is opened first,
/// the parent pid read after, and setns through the pidfd fails (ESRCH)
/// if that process has died since, so the check was about the process
/// joined, not one that reused its pid. With the pid namespace (which
/// setns only sets for the supervisor's children) it returns the
/// supervisor's own, to go back to after the clone.
fn join_parent(join: &crate::plan::JoinPlan) -> Result<Option<OwnedFd>, StepError> {
    let what = || format!("sandbox {} (pid {})", join.sandbox, join.init_pid);
    let pidfd = sandboxd_supervisor::sys::pidfd_open(Pid::from_raw(join.init_pid))
        .map_err(|e| StepError::new(Step::OpenParentSandbox, format!("{}: {e}", what())))?;
    let parent = sys::parent_of(join.init_pid)
        .map_err(|e| StepError::new(Step::OpenParentSandbox, format!("{}: {e}", what())))?;
    if parent != join.supervisor_pid {
        return Err(StepError::new(
            Step::OpenParentSandbox,
            format!(
                "{}: the process is not the parent's pid 1 (its parent is pid {parent}, not the parent's supervisor {}); the parent has ended",
                what(),
                join.supervisor_pid
            ),
        ));
    }
    let mut flags = CloneFlags::empty();
    for ns in &join.namespaces {
        flags |= match ns {
            Namespace::Net => CloneFlags::CLONE_NEWNET,
            Namespace::Ipc => CloneFlags::CLONE_NEWIPC,
            Namespace::Uts => CloneFlags::CLONE_NEWUTS,
            Namespace::Pid => CloneFlags::CLONE_NEWPID,
            other => {
                return Err(StepError::new(
                    Step::JoinParentNamespaces,
                    format!(
                        "{}: {} cannot be shared with a parent",
                        what(),
                        other.flag()
                    ),
                ));
            }
        };
    }
    let own_pid_ns = if flags.contains(CloneFlags::CLONE_NEWPID) {
        let me = sandboxd_supervisor::sys::own_pid().as_raw();
        Some(sys::open_namespace(me, "pid").map_err(|e| {
            StepError::new(
                Step::JoinParentNamespaces,
                format!("/proc/{me}/ns/pid: {e}"),
            )
        })?)
    } else {
        None
    };
    sys::setns(pidfd.as_fd(), flags).map_err(|e| {
        StepError::new(
            Step::JoinParentNamespaces,
            format!("{}: setns({flags:?}): {e}", what()),
        )
    })?;
    Ok(own_pid_ns)
}

/// Checks the plan's supervisor steps before any of them runs, and returns
/// the id-map range to write when pid 1 asks (`WriteIdMaps`). The
/// supervisor runs them in a fixed order around the handshake with pid 1
/// (create cgroups, clone, join cgroups, release, id maps on request); the
/// match names every step, so a new one does not compile until it has a
/// place, and a step of another actor is reported, never skipped.
fn supervisor_steps(plan: &LinuxPlan) -> Result<Option<crate::plan::IdRange>, StepError> {
    let mut id_map = None;
    for step in plan.steps.iter().filter(|s| s.actor() == Actor::Supervisor) {
        match step {
            LinuxStep::CreateCgroups | LinuxStep::JoinParent | LinuxStep::Clone => {}
            LinuxStep::WriteIdMaps(map) => id_map = Some(map.range),
            LinuxStep::JoinCgroups
            | LinuxStep::UnshareCgroup
            | LinuxStep::UnshareUser
            | LinuxStep::Mounts
            | LinuxStep::SetHostname(_)
            | LinuxStep::PivotRoot
            | LinuxStep::DetachOldRoot
            | LinuxStep::LoopbackUp
            | LinuxStep::JoinNetns(_)
            | LinuxStep::JoinGivenNetns(_)
            | LinuxStep::ForkPayload
            | LinuxStep::Idle
            | LinuxStep::Capabilities(_)
            | LinuxStep::NoNewPrivs
            | LinuxStep::Seccomp
            | LinuxStep::SetRlimit(_)
            | LinuxStep::SetGroups(_)
            | LinuxStep::SetGid(_)
            | LinuxStep::SetUid(_)
            | LinuxStep::Chdir(_)
            | LinuxStep::CloseRange
            | LinuxStep::Execve { .. } => {
                return Err(StepError::new(
                    Step::Setup,
                    format!("{step:?} is not a step of the supervisor"),
                ));
            }
        }
    }
    Ok(id_map)
}

/// The files that count a memory cgroup's OOM kills: v2, v1.
const OOM_FILES: [&str; 2] = ["memory.events", "memory.oom_control"];

/// The `oom_kill` count in one of [`OOM_FILES`]; 0 if it cannot be read.
fn oom_kills(file: &Path) -> u64 {
    std::fs::read_to_string(file)
        .ok()
        .and_then(|text| {
            text.lines().find_map(|l| {
                l.strip_prefix("oom_kill ")
                    .and_then(|v| v.trim().parse::<u64>().ok())
            })
        })
        .unwrap_or(0)
}

/// rmdir of a cgroup, retrying briefly while its last tasks exit.
pub(crate) fn remove_cgroup_dir(dir: &Path) -> Result<(), StepError> {
    // The cgroup stays busy for a moment after its last task is reaped.
    for _ in 0..2000 {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                std::thread::sleep(std::time::Duration::from_millis(1))
            }
            Err(e) => {
                return Err(StepError::new(
                    Step::RemoveCgroup,
                    format!("{}: {e}", dir.display()),
                ));
            }
        }
    }
    Err(StepError::new(
        Step::RemoveCgroup,
        format!("{}: still busy", dir.display()),
    ))
}

impl Isolation for LinuxIsolation {
    fn setup(&mut self) -> Result<(), StepError> {
        let result = self.setup_inner();
        if result.is_err() {
            let _ = self.teardown();
        }
        result
    }

    fn enter(&self) -> Result<(), StepError> {
        // Join the cgroups while host paths are still visible; `fork` already
        // created this process in the v2 one when it could (clone3 with
        // CLONE_INTO_CGROUP). This child of the single-threaded supervisor
        // is single-threaded.
        if self.join_files.is_empty() {
            // Not opened (or nothing to join): by path, as pid 1 does.
            join_cgroups(&self.launch, self.into_cgroup)?;
        }
        for (file, f) in &self.join_files {
            use std::io::Write;
            (&*f).write_all(b"0").map_err(|e| {
                StepError::new(Step::JoinCgroup, format!("{}: {e}", file.display()))
            })?;
        }
        for (flag, fd) in &self.namespaces {
            // Born in it: the supervisor forks into the sandbox's pid
            // namespace (setup_inner).
            if *flag == CloneFlags::CLONE_NEWPID {
                continue;
            }
            sys::setns(fd.as_fd(), *flag)
                .map_err(|e| StepError::new(Step::Setns, format!("{flag:?}: {e}")))?;
        }
        Ok(())
    }

    unsafe fn fork(&self) -> Result<sandboxd_supervisor::sys::Fork, Errno> {
        match (&self.cgroup_fd, self.into_cgroup) {
            (Some(fd), true) => {
                // SAFETY: a single-threaded caller (Isolation::fork's
                // contract); no flags.
                match unsafe { sys::clone_into_cgroup(CloneFlags::empty(), fd.as_fd()) }? {
                    Cloned::Child => Ok(sandboxd_supervisor::sys::Fork::Child),
                    Cloned::Parent(child) => Ok(sandboxd_supervisor::sys::Fork::Parent { child }),
                }
            }
            // SAFETY: as above.
            _ => unsafe { sandboxd_supervisor::sys::fork_unchecked() },
        }
    }

    fn teardown(&mut self) -> Result<(), StepError> {
        self.namespaces.clear();
        self.join_files.clear();
        self.cgroup_fd = None;
        let shares_pid = self.shares_pid();
        if shares_pid {
            // The first process's death ends nothing here: the pid
            // namespace is the parent's.
            self.kill_cgroup()?;
        }
        if let Some(reaper) = self.reaper.take() {
            match self.reaper_fd.take() {
                Some(fd) => {
                    // ESRCH if it is gone (reaped) already: nothing to wait for.
                    if sandboxd_supervisor::sys::pidfd_signal(fd.as_fd(), Signal::SIGKILL).is_ok() {
                        let _ = sys::wait_for(reaper);
                    }
                }
                None => {
                    let _ = sys::send_signal(reaper, Signal::SIGKILL);
                    let _ = sys::wait_for(reaper);
                }
            }
        }
        if shares_pid {
            // Orphans are the parent's pid 1's to reap: wait (bounded) until
            // the cgroup is empty, killing again what a fork may have added
            // where there is no cgroup.kill.
            for _ in 0..2000 {
                if self.cgroup_pids().unwrap_or_default().is_empty() {
                    break;
                }
                self.kill_cgroup()?;
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        }
        self.remove_cgroups()
    }

    fn signal_all(&self, sig: Signal) -> bool {
        if self.shares_pid() {
            // The parent's pid namespace: this sandbox's processes are its
            // cgroup's (orphans included, which the parent's pid 1 adopts).
            if sig == Signal::SIGKILL {
                return self.kill_cgroup().is_ok();
            }
            for pid in self.cgroup_pids().unwrap_or_default() {
                if Some(pid) != self.reaper {
                    let _ = sys::send_signal(pid, sig);
                }
            }
            return true;
        }
        // Only with a pid namespace of our own: without one (isolation.pid
        // DISABLED) the namespace is the host's, and the supervisor's process
        // groups and children are the sandbox.
        let (Some(reaper), Some(ns)) = (self.reaper, self.own_pid_ns()) else {
            return false;
        };
        if sig == Signal::SIGKILL {
            // pid 1 dying takes every process of the namespace with it.
            let _ = sys::send_signal(reaper, sig);
            return true;
        }
        if self.launch.init.is_some() {
            // An init gets the stop signal first, as under nspawn.
            let _ = sys::send_signal(reaper, sig);
        }
        for pid in self.pids_of_own_ns(ns).into_iter().filter(|p| *p != reaper) {
            let _ = sys::send_signal(pid, sig);
        }
        true
    }

    fn main_pid(&self) -> Option<Pid> {
        self.launch.init.as_ref().and(self.reaper)
    }

    fn init_pid(&self) -> Option<Pid> {
        self.reaper
    }

    fn pty_in_sandbox(&self) -> bool {
        // Every Linux sandbox's /dev has a devpts instance of its own
        // (newinstance, ptmxmode=0666; plan/mounts.rs), with /dev/ptmx a
        // symlink to its ptmx.
        true
    }

    fn main_output(&mut self, output: &sandboxd_supervisor::MainOutput) {
        // Only pid 1 that becomes the init keeps them (pid1_main); in
        // PROCESS mode the supervisor installs them itself.
        if self.launch.init.is_some() {
            self.main_output = Some((output.stdout.as_raw_fd(), output.stderr.as_raw_fd()));
        }
    }

    fn has_processes(&self) -> Option<bool> {
        let reaper = self.reaper?;
        if self.shares_pid() {
            return Some(self.cgroup_pids()?.into_iter().any(|p| p != reaper));
        }
        let ns = self.own_pid_ns()?;
        Some(self.pids_of_own_ns(ns).into_iter().any(|p| p != reaper))
    }

    fn oom_kills(&self) -> u64 {
        self.oom_count()
    }

    fn none_left(&self) -> bool {
        if !self.shares_pid() {
            // pid 1 of the sandbox's own pid namespace was the supervisor's
            // child and is reaped: the kernel ended every process of that
            // namespace before it.
            return self.reaper.is_some();
        }
        // The parent's pid namespace: orphans went to its pid 1, and only
        // the cgroup knows them. Killed again until it is empty (bounded,
        // as the teardown's own wait).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        loop {
            match self.cgroup_pids() {
                Some(pids) if pids.is_empty() => return true,
                None => return false,
                Some(_) => {}
            }
            if std::time::Instant::now() > deadline || self.kill_cgroup().is_err() {
                return false;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }
}

/// pid 1 of the sandbox: builds the root, joining its cgroups on the way,
/// reports, then reaps forever. `in_v2_cgroup`: the clone placed it in the
/// v2 cgroup already.
fn pid1_main(
    launch: &LinuxLaunch,
    in_v2_cgroup: bool,
    mut supervisor: SupervisorChannel,
    main_output: Option<(RawFd, RawFd)>,
    given_netns: Option<RawFd>,
) -> ! {
    // pid 1 is a copy of the sandboxd binary: keep /proc/1/exe and friends
    // closed to the sandbox's processes.
    if sandboxd_supervisor::sys::set_non_dumpable().is_err() {
        sandboxd_supervisor::sys::exit_child(1);
    }
    // pid 1 is a clone of the supervisor: drop every descriptor it held
    // (the daemon channel, the cgroup directory, the daemon's log on 1 and
    // 2) but the two sync pipes, before anything else happens in here.
    // INIT mode also keeps the log pipes' write ends, the init's stdout and
    // stderr.
    let mut keep = supervisor.raw_fds().to_vec();
    if launch.init.is_some() {
        keep.extend(main_output.iter().flat_map(|(o, e)| [*o, *e]));
    }
    // NAMESPACE: the network namespace to join (closed once joined).
    keep.extend(given_netns);
    sandboxd_supervisor::sys::close_fds_except(3, &keep);
    if sandboxd_supervisor::sys::stdio_to_dev_null().is_err() {
        sandboxd_supervisor::sys::exit_child(1);
    }
    if supervisor
        .wait_for(ToInit::Go, Step::WaitForRelease)
        .is_err()
    {
        sandboxd_supervisor::sys::exit_child(1);
    }
    let fail = |supervisor: &mut SupervisorChannel, e: StepError| -> ! {
        let _ = supervisor.send(&FromInit::Failed(e));
        sandboxd_supervisor::sys::exit_child(1)
    };
    // The namespace the daemon made ahead, joined before anything is built
    // (/sys, mounted below, shows the devices of the namespace it is
    // mounted in), as a clone with CLONE_NEWNET would have started here.
    let given_netns = match given_netns {
        Some(fd) if launch.pooled_netns => {
            let ns = sys::take_fd(fd);
            if let Err(e) = sys::setns(ns.as_fd(), CloneFlags::CLONE_NEWNET) {
                fail(
                    &mut supervisor,
                    StepError::new(
                        Step::JoinNetworkNamespace,
                        format!("the new network namespace the daemon made: {e}"),
                    ),
                );
            }
            None
        }
        other => other,
    };
    let mut joined = false;
    if let Err(e) = build_sandbox(
        launch,
        in_v2_cgroup,
        &mut supervisor,
        &mut joined,
        given_netns,
    ) {
        fail(&mut supervisor, e);
    }
    if let Err(e) = must_have_joined(joined, "running the sandbox") {
        fail(&mut supervisor, e);
    }
    if let Some(init) = &launch.init {
        // INIT mode: become the image's init. The pipe is close-on-exec, so
        // a successful exec reports itself by closing it.
        let process = init.main.clone().unwrap_or_default();
        let e = sandboxd_supervisor::exec_main_in_place(
            init,
            &process,
            supervisor.ready_fd(),
            main_output,
        );
        fail(&mut supervisor, e);
    }
    if let Err(e) = drop_privileges() {
        fail(&mut supervisor, e);
    }
    // After the uid change, which clears it: a killed supervisor takes the
    // reaper, and with it the whole pid namespace, down too.
    if let Err(e) = sandboxd_supervisor::die_with(sys::parent_pid()) {
        fail(
            &mut supervisor,
            StepError::new(Step::SetParentDeathSignal, e),
        );
    }
    let _ = supervisor.send(&FromInit::Ready);
    drop(supervisor);
    reap_forever()
}

/// The user namespace is created last, by pid 1 once the root is built and
/// pivoted: every mount, the hostname and lo were set up by the host's root,
/// and the sandbox's root — host uid `host_start` — owns no other namespace,
/// so it holds capabilities only over itself. pid 1 asks the supervisor for
/// the id maps, waits for them, then becomes the namespace's root.
fn enter_new_user_namespace(supervisor: &mut SupervisorChannel) -> Result<(), StepError> {
    use nix::unistd::{Gid, Uid};
    sys::unshare(CloneFlags::CLONE_NEWUSER)
        .map_err(|e| StepError::new(Step::UnshareUserNamespace, e))?;
    supervisor
        .send(&FromInit::NeedIdMaps)
        .map_err(|e| StepError::new(Step::AskForIdMaps, e))?;
    supervisor.wait_for(ToInit::IdMapsWritten, Step::WaitForIdMaps)?;
    sys::set_all_ids(Uid::from_raw(0), Gid::from_raw(0))
        .map_err(|e| StepError::new(Step::BecomeRootOfTheUserNamespace, e))
}

/// A reaper needs no privilege: no capabilities, uid/gid 65534, and still
/// non-dumpable (a uid change resets that).
fn drop_privileges() -> Result<(), StepError> {
    use nix::unistd::{Gid, Uid};
    let nobody = sandboxd_core::spec::DEFAULT_UNPRIVILEGED_ID;
    sandboxd_supervisor::sys::restrict_capabilities(&[])
        .map_err(|e| StepError::new(Step::DropReaperCapabilities, e))?;
    sys::set_groups(&[]).map_err(|e| StepError::new(Step::ReaperSetgroups, e))?;
    sys::set_gid(Gid::from_raw(nobody)).map_err(|e| StepError::new(Step::ReaperSetgid, e))?;
    sys::set_uid(Uid::from_raw(nobody)).map_err(|e| StepError::new(Step::ReaperSetuid, e))?;
    sandboxd_supervisor::sys::set_non_dumpable()
        .map_err(|e| StepError::new(Step::MarkReaperNonDumpable, e))
}

fn reap_forever() -> ! {
    // SIGCHLD blocked and waited for atomically, so no exit is missed.
    let set = sys::block_sigchld();
    loop {
        while matches!(sys::reap_any(), Ok(status) if status != WaitStatus::StillAlive) {}
        sys::wait_for_signal(&set);
    }
}

/// Moves the calling process into the sandbox's cgroups, but for the v2
/// one when `in_v2_cgroup` (a clone3 with CLONE_INTO_CGROUP put it there).
/// The caller must be single-threaded: pid 1 and each payload's first
/// process are forks of the single-threaded supervisor.
///
/// A v1 hierarchy is joined by moving the one thread (`0` to `tasks`):
/// the kernel migrates a thread that moves itself without its global
/// `cgroup_threadgroup_rwsem`, whose write side (any `cgroup.procs`
/// write, and a pid written anywhere) first waits for an RCU grace
/// period — 5 to 14 ms measured on a 2-CPU host, more than a whole bare
/// `unshare`. With one thread, that thread is the process. A v2 directory
/// has no `tasks`: `0` to its `cgroup.procs`.
fn join_cgroups(launch: &LinuxLaunch, in_v2_cgroup: bool) -> Result<(), StepError> {
    for file in join_paths(launch, in_v2_cgroup) {
        sys::write_file(&file, "0")
            .map_err(|e| StepError::new(Step::JoinCgroup, format!("{}: {e}", file.display())))?;
    }
    Ok(())
}

/// The files a process writes "0" to to join the sandbox's cgroups: each
/// v1 hierarchy's `tasks`, and the v2 `cgroup.procs` unless it was cloned
/// into it (CLONE_INTO_CGROUP).
fn join_paths(launch: &LinuxLaunch, in_v2_cgroup: bool) -> Vec<PathBuf> {
    let unified = launch.unified_cgroup.as_ref();
    launch
        .plan
        .cgroups
        .dirs
        .iter()
        .filter_map(|dir| match Some(dir) == unified {
            true if in_v2_cgroup => None,
            true => Some(dir.join("cgroup.procs")),
            false => Some(dir.join("tasks")),
        })
        .collect()
}

/// [`join_paths`], opened for writing (close-on-exec), for the payloads.
fn join_files(
    launch: &LinuxLaunch,
    in_v2_cgroup: bool,
) -> Result<Vec<(PathBuf, std::fs::File)>, StepError> {
    join_paths(launch, in_v2_cgroup)
        .into_iter()
        .map(|file| {
            std::fs::OpenOptions::new()
                .write(true)
                .open(&file)
                .map(|f| (file.clone(), f))
                .map_err(|e| StepError::new(Step::JoinCgroup, format!("{}: {e}", file.display())))
        })
        .collect()
}

/// Refuses to go on with `what` before the JoinCgroups step ran: nothing of
/// the sandbox may run outside its limits (the plan puts that step first;
/// this keeps a reordered plan from silently skipping it).
fn must_have_joined(joined: bool, what: &str) -> Result<(), StepError> {
    if joined {
        Ok(())
    } else {
        Err(StepError::new(
            Step::JoinCgroup,
            format!("the plan has no join_cgroups step before {what}"),
        ))
    }
}

/// Runs the plan's pid-1 steps, in order. The match names every step: a
/// new one does not compile until it is given a place here, and a step of
/// another actor in the list is reported, never skipped. `joined` records
/// the JoinCgroups step, which steps that must run inside the limits check.
fn build_sandbox(
    launch: &LinuxLaunch,
    in_v2_cgroup: bool,
    supervisor: &mut SupervisorChannel,
    joined: &mut bool,
    given_netns: Option<RawFd>,
) -> Result<(), StepError> {
    let plan = &launch.plan;
    for step in plan.steps.iter().filter(|s| s.actor() == Actor::Init) {
        match step {
            LinuxStep::JoinCgroups => {
                // Made (with their limits) by the supervisor meanwhile.
                supervisor.wait_for(ToInit::CgroupsMade, Step::WaitForCgroups)?;
                join_cgroups(launch, in_v2_cgroup)?;
                *joined = true;
            }
            LinuxStep::UnshareCgroup => {
                must_have_joined(*joined, "unsharing the cgroup namespace")?;
                sys::unshare(CloneFlags::CLONE_NEWCGROUP)
                    .map_err(|e| StepError::new(Step::UnshareCgroupNamespace, e))?;
            }
            LinuxStep::Mounts => {
                build_root(launch)?;
                mask_own_binary(&plan.rootfs)?;
                fault::check(fault::MOUNTED)
                    .map_err(|e| StepError::new(Step::Injected(fault::MOUNTED), e))?;
            }
            // Test builds only (feature `weaken`): the UTS namespace keeps
            // the host's name, which VerifySandbox must then report.
            LinuxStep::SetHostname(_)
                if sandboxd_core::weaken::skip(sandboxd_core::weaken::SETHOSTNAME) => {}
            LinuxStep::SetHostname(name) => {
                sys::sethostname(name)
                    .map_err(|e| StepError::new(Step::Sethostname, format!("{name}: {e}")))?;
            }
            LinuxStep::PivotRoot => {
                sys::chdir(&plan.rootfs).map_err(|e| {
                    StepError::new(
                        Step::ChdirToNewRoot,
                        format!("{}: {e}", plan.rootfs.display()),
                    )
                })?;
                sys::pivot_root_here().map_err(|e| StepError::new(Step::PivotRoot, e))?;
            }
            LinuxStep::DetachOldRoot => {
                sys::detach(Path::new(".")).map_err(|e| StepError::new(Step::DetachOldRoot, e))?;
                sys::chdir(Path::new("/")).map_err(|e| StepError::new(Step::ChdirRoot, e))?;
            }
            LinuxStep::LoopbackUp => {
                sys::loopback_up().map_err(|e| StepError::new(Step::BringLoUp, e))?
            }
            LinuxStep::JoinNetns(path) => {
                let ns = std::fs::File::open(path).map_err(|e| {
                    StepError::new(
                        Step::OpenNetworkNamespace,
                        format!("{}: {e}", path.display()),
                    )
                })?;
                sys::setns(ns.as_fd(), CloneFlags::CLONE_NEWNET).map_err(|e| {
                    StepError::new(
                        Step::JoinNetworkNamespace,
                        format!("{}: {e}", path.display()),
                    )
                })?;
            }
            LinuxStep::JoinGivenNetns(path) => {
                let Some(fd) = given_netns else {
                    return Err(StepError::new(
                        Step::JoinNetworkNamespace,
                        format!(
                            "{}: no descriptor came with the launch configuration",
                            path.display()
                        ),
                    ));
                };
                // The daemon checked this descriptor (nsfs, type net, not
                // its own namespace); the path is never reopened.
                let ns = sys::take_fd(fd);
                sys::setns(ns.as_fd(), CloneFlags::CLONE_NEWNET).map_err(|e| {
                    StepError::new(
                        Step::JoinNetworkNamespace,
                        format!("{} (the daemon's descriptor): {e}", path.display()),
                    )
                })?;
            }
            LinuxStep::UnshareUser => {
                must_have_joined(*joined, "unsharing the user namespace")?;
                enter_new_user_namespace(supervisor)?;
            }
            // pid 1 stays the reaper (pid1_main, after these steps); the
            // payload is never exec'd by it: payloads enter with setns +
            // CLONE_PARENT so the supervisor reaps them.
            LinuxStep::ForkPayload | LinuxStep::Idle => {}
            LinuxStep::CreateCgroups
            | LinuxStep::JoinParent
            | LinuxStep::Clone
            | LinuxStep::WriteIdMaps(_)
            | LinuxStep::Capabilities(_)
            | LinuxStep::NoNewPrivs
            | LinuxStep::Seccomp
            | LinuxStep::SetRlimit(_)
            | LinuxStep::SetGroups(_)
            | LinuxStep::SetGid(_)
            | LinuxStep::SetUid(_)
            | LinuxStep::Chdir(_)
            | LinuxStep::CloseRange
            | LinuxStep::Execve { .. } => {
                return Err(StepError::new(
                    Step::SandboxInit,
                    format!("{step:?} is not a step of the sandbox's pid 1"),
                ));
            }
        }
    }
    Ok(())
}

/// If this binary (sandboxd, which pid 1 and every forked payload start
/// as) is visible inside the new root — installed under /usr and mirrored
/// by the "host" image — covers it with an empty mode-000 file mounted
/// ro,nosuid,noexec, so a payload can neither read nor run the helper.
fn mask_own_binary(rootfs: &Path) -> Result<(), StepError> {
    let Ok(exe) = std::fs::read_link("/proc/self/exe") else {
        return Ok(());
    };
    let root = sys::open_dir(rootfs).map_err(|e| StepError::new(Step::OpenRoot, e))?;
    let Ok(target) = sys::resolve_in_root(root.as_fd(), &exe) else {
        return Ok(());
    };
    if !sys::is_regular_file(target.as_fd()) {
        return Ok(());
    }
    let dir = rootfs.parent().unwrap_or(rootfs);
    let (cover, _) = sys::create_mask_file(dir)
        .map_err(|e| StepError::new(Step::CreateMaskFile, format!("{}: {e}", dir.display())))?;
    let err = |e: Errno| {
        StepError::new(
            Step::MaskTheSandboxdBinary,
            format!("{}: {e}", exe.display()),
        )
    };
    sys::mount_fs(
        Some(&cover),
        &sys::fd_path(target.as_fd()),
        None,
        MsFlags::MS_BIND,
        None,
    )
    .map_err(err)?;
    let masked = sys::resolve_in_root(root.as_fd(), &exe).map_err(err)?;
    let flags = MsFlags::MS_REMOUNT
        | MsFlags::MS_BIND
        | MsFlags::MS_RDONLY
        | MsFlags::MS_NOSUID
        | MsFlags::MS_NOEXEC;
    sys::mount_fs(None, &sys::fd_path(masked.as_fd()), None, flags, None).map_err(err)
}

fn ms_flags(flags: &[MountFlag]) -> MsFlags {
    flags.iter().fold(MsFlags::empty(), |acc, f| {
        acc | match f {
            MountFlag::Rdonly => MsFlags::MS_RDONLY,
            MountFlag::Nosuid => MsFlags::MS_NOSUID,
            MountFlag::Nodev => MsFlags::MS_NODEV,
            MountFlag::Noexec => MsFlags::MS_NOEXEC,
            MountFlag::Bind => MsFlags::MS_BIND,
            MountFlag::Remount => MsFlags::MS_REMOUNT,
        }
    })
}

/// The new root, once mounted: a descriptor to resolve paths in, and the
/// path the kernel gives it (read once: where a client's mount target
/// resolved is checked against it).
struct OpenedRoot {
    fd: OwnedFd,
    host_path: PathBuf,
}

impl OpenedRoot {
    fn open(rootfs: &Path) -> Result<Self, StepError> {
        let fd = sys::open_dir(rootfs)
            .map_err(|e| StepError::new(Step::OpenRoot, format!("{}: {e}", rootfs.display())))?;
        let host_path = std::fs::read_link(sys::fd_path(fd.as_fd()))
            .map_err(|e| StepError::new(Step::OpenRoot, format!("{}: {e}", rootfs.display())))?;
        Ok(Self { fd, host_path })
    }
}

/// Runs the plan's root operations, in the reaper's private mount namespace.
fn build_root(launch: &LinuxLaunch) -> Result<(), StepError> {
    let rootfs = &launch.plan.rootfs;
    let mut root: Option<OpenedRoot> = None;
    // The directory the previous node or symlink went into (the plan makes
    // /dev's in a row): resolved once for the run, forgotten at any mount,
    // which could cover it.
    let mut parent: Option<(PathBuf, OwnedFd)> = None;
    for op in &launch.plan.mounts {
        match op {
            RootOp::MakePrivate => {
                sys::mount_fs(
                    None,
                    Path::new("/"),
                    None,
                    MsFlags::MS_REC | MsFlags::MS_PRIVATE,
                    None,
                )
                .map_err(|e| StepError::new(Step::MakeRootPrivate, e))?;
            }
            RootOp::Symlink { path, target } => {
                let root = root
                    .as_ref()
                    .ok_or_else(|| StepError::new(Step::Symlink, "root not mounted yet"))?;
                let (dir, name) = parent_in_root(root, path, &mut parent)?;
                sys::symlink_at(target, dir, name.as_os_str()).map_err(|e| {
                    StepError::new(Step::Symlink, format!("{path} -> {target}: {e}"))
                })?;
            }
            RootOp::Device { path, major, minor } => {
                let root = root
                    .as_ref()
                    .ok_or_else(|| StepError::new(Step::Mknod, "root not mounted yet"))?;
                let (dir, name) = parent_in_root(root, path, &mut parent)?;
                sys::char_device_at(dir, name.as_os_str(), *major, *minor, 0o666).map_err(|e| {
                    StepError::new(Step::Mknod, format!("{path} ({major}:{minor}): {e}"))
                })?;
            }
            RootOp::Mount(m) => {
                parent = None;
                do_mount(launch, root.as_ref(), m)?;
                if m.target == "/" {
                    root = Some(OpenedRoot::open(rootfs)?);
                }
            }
        }
    }
    Ok(())
}

/// The parent directory (resolved in the root, or the one `cached` holds
/// if it is the same) and final name of `path`.
fn parent_in_root<'a>(
    root: &OpenedRoot,
    path: &str,
    cached: &'a mut Option<(PathBuf, OwnedFd)>,
) -> Result<(BorrowedFd<'a>, PathBuf), StepError> {
    let p = Path::new(path);
    let parent = p.parent().unwrap_or(Path::new("/"));
    let name = p.file_name().map(PathBuf::from).unwrap_or_default();
    if cached.as_ref().is_none_or(|(dir, _)| dir != parent) {
        let fd = sys::resolve_in_root(root.fd.as_fd(), parent).map_err(|e| {
            StepError::new(Step::ResolveInRoot, format!("{}: {e}", parent.display()))
        })?;
        *cached = Some((parent.to_owned(), fd));
    }
    let fd = cached
        .as_ref()
        .map(|(_, fd)| fd.as_fd())
        .ok_or_else(|| StepError::new(Step::ResolveInRoot, "unreachable: just resolved"))?;
    Ok((fd, name))
}

fn do_mount(launch: &LinuxLaunch, root: Option<&OpenedRoot>, m: &Mount) -> Result<(), StepError> {
    let err =
        |step: Step, e: &dyn std::fmt::Display| StepError::new(step, format!("{}: {e}", m.target));
    // Keep every descriptor a /proc/self/fd path refers to alive until the
    // mount call is done.
    let mut held: Vec<OwnedFd> = Vec::new();
    let mut data: Vec<String> = m.data.clone();
    let source: Option<PathBuf> = match &m.source {
        MountSource::Pseudo(name) => Some(PathBuf::from(name)),
        MountSource::Host(path) => {
            let fd = sys::resolve_host_path(path).map_err(|e| {
                err(
                    Step::ResolveMountSource,
                    &format!("{}: {e} (symlinks are not allowed)", path.display()),
                )
            })?;
            let p = sys::fd_path(fd.as_fd());
            held.push(fd);
            Some(p)
        }
        MountSource::Image(name) => {
            let fd = open_image(&launch.images_dir, launch.images_dir_no_symlinks, name)?;
            let p = sys::fd_path(fd.as_fd());
            held.push(fd);
            Some(p)
        }
        MountSource::Overlay {
            image,
            layers,
            upper,
            work,
            layer,
        } => {
            if let Some(layer) = layer {
                mount_layer(layer)?;
            }
            for d in [upper, work] {
                std::fs::create_dir_all(d).map_err(|e| {
                    err(
                        Step::CreateOverlayDirectory,
                        &format!("{}: {e}", d.display()),
                    )
                })?;
            }
            let mut lower = Vec::new();
            if layers.is_empty() {
                let fd = open_image(&launch.images_dir, launch.images_dir_no_symlinks, image)?;
                lower.push(sys::fd_path(fd.as_fd()).display().to_string());
                held.push(fd);
            }
            // overlayfs stacks lowerdirs top first.
            for l in layers.iter().rev() {
                let fd = sandboxd_supervisor::images::open_layer(&launch.images_dir, l)?;
                lower.push(sys::fd_path(fd.as_fd()).display().to_string());
                held.push(fd);
            }
            data.insert(
                0,
                format!(
                    "lowerdir={},upperdir={},workdir={}",
                    lower.join(":"),
                    upper.display(),
                    work.display()
                ),
            );
            Some(PathBuf::from("overlay"))
        }
        MountSource::InRoot(path) => {
            let root =
                root.ok_or_else(|| err(Step::ResolveMountSource, &"root not mounted yet"))?;
            let fd = match sys::resolve_in_root(root.fd.as_fd(), Path::new(path)) {
                Ok(fd) => fd,
                // Kernel files that depend on the kernel's configuration.
                Err(Errno::ENOENT) if m.if_exists => return Ok(()),
                Err(e) => return Err(err(Step::ResolveMountSource, &e)),
            };
            let p = sys::fd_path(fd.as_fd());
            held.push(fd);
            Some(p)
        }
    };
    let source_is_dir = held.first().is_none_or(|fd| sys::is_dir(fd.as_fd()));
    let target = |held: &mut Vec<OwnedFd>| -> Result<Option<PathBuf>, StepError> {
        if m.target == "/" {
            return Ok(Some(launch.plan.rootfs.clone()));
        }
        let root = root.ok_or_else(|| err(Step::ResolveMountTarget, &"root not mounted yet"))?;
        match resolve_target(root, &m.target, m.client) {
            Ok(fd) => {
                let p = sys::fd_path(fd.as_fd());
                held.push(fd);
                Ok(Some(p))
            }
            Err(TargetError::Missing) if m.if_exists => Ok(None),
            Err(TargetError::Missing) => {
                let mut no_cache = None;
                let (parent, name) = parent_in_root(root, &m.target, &mut no_cache)?;
                let made = if source_is_dir {
                    sys::mkdir_at(parent, name.as_os_str())
                } else {
                    sys::touch_at(parent, name.as_os_str())
                };
                made.map_err(|e| err(Step::CreateMountPoint, &e))?;
                let fd = resolve_target(root, &m.target, m.client).map_err(|e| match e {
                    TargetError::Missing => err(Step::ResolveMountTarget, &Errno::ENOENT),
                    TargetError::Refused(e) => e,
                })?;
                let p = sys::fd_path(fd.as_fd());
                held.push(fd);
                Ok(Some(p))
            }
            Err(TargetError::Refused(e)) => Err(e),
        }
    };
    let Some(target_path) = target(&mut held)? else {
        return Ok(());
    };
    let flags = ms_flags(&m.flags);
    let data = data.join(",");
    let data = (!data.is_empty()).then_some(data.as_str());
    if flags.contains(MsFlags::MS_BIND) && !flags.contains(MsFlags::MS_REMOUNT) {
        sys::mount_fs(
            source.as_deref(),
            &target_path,
            None,
            MsFlags::MS_BIND,
            None,
        )
        .map_err(|e| err(Step::BindMount, &e))?;
        let extra = flags
            & (MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC);
        if !extra.is_empty() {
            // The new mount, named again: the old descriptor names what is
            // underneath.
            let mut again = Vec::new();
            let remount_target = target(&mut again)?.unwrap_or(target_path);
            let keep = sys::mount_flags_of(&remount_target);
            sys::mount_fs(
                None,
                &remount_target,
                None,
                MsFlags::MS_REMOUNT | MsFlags::MS_BIND | keep | extra,
                None,
            )
            .map_err(|e| err(Step::RemountBind, &e))?;
        }
    } else {
        let fstype = m.fstype.as_deref();
        let (source, flags) = if flags.contains(MsFlags::MS_REMOUNT) {
            // A remount replaces the per-mount flags: keep those already set
            // (nodev on the root, locked flags in a user namespace).
            (None, flags | sys::mount_flags_of(&target_path))
        } else {
            (source.as_deref(), flags)
        };
        sys::mount_fs(source, &target_path, fstype, flags, data)
            .map_err(|e| err(Step::Mount, &e))?;
    }
    drop(held);
    Ok(())
}

/// Why a mount target has no descriptor.
enum TargetError {
    /// Nothing is there (ENOENT): made, or skipped if the mount is optional.
    Missing,
    /// Refused (or resolution failed otherwise).
    Refused(StepError),
}

/// Resolves a mount target inside the root and checks where it landed (see
/// [`Mount::client`]): a client's may follow the image's symlinks but not
/// into one of the sandbox's own pseudo-filesystems; the sandbox's own
/// mounts must land exactly on their path, so they are resolved following
/// no symlink at all (the plan's targets have no `..`). The plan checked
/// the strings; this checks where the image's symlinks made them point.
fn resolve_target(root: &OpenedRoot, target: &str, client: bool) -> Result<OwnedFd, TargetError> {
    let step = Step::CheckMountTarget;
    if !client {
        return match sys::resolve_in_root_no_symlinks(root.fd.as_fd(), Path::new(target)) {
            Ok(fd) => Ok(fd),
            Err(Errno::ENOENT) => Err(TargetError::Missing),
            Err(Errno::ELOOP) => Err(TargetError::Refused(StepError::new(
                step,
                format!(
                    "{target} goes through a symlink in the image; the sandbox's own mount points must be real directories"
                ),
            ))),
            Err(e) => Err(TargetError::Refused(StepError::new(
                Step::ResolveMountTarget,
                format!("{target}: {e}"),
            ))),
        };
    }
    let fd = match sys::resolve_in_root(root.fd.as_fd(), Path::new(target)) {
        Ok(fd) => fd,
        Err(Errno::ENOENT) => return Err(TargetError::Missing),
        Err(e) => {
            return Err(TargetError::Refused(StepError::new(
                Step::ResolveMountTarget,
                format!("{target}: {e}"),
            )));
        }
    };
    let host = std::fs::read_link(sys::fd_path(fd.as_fd()))
        .map_err(|e| TargetError::Refused(StepError::new(step, format!("{target}: {e}"))))?;
    let inside = Path::new("/").join(host.strip_prefix(&root.host_path).map_err(|_| {
        TargetError::Refused(StepError::new(
            step,
            format!("{target} resolves outside the root, to {}", host.display()),
        ))
    })?);
    if let Some(reserved) = RESERVED_TARGETS.iter().find(|r| inside.starts_with(r)) {
        return Err(TargetError::Refused(StepError::new(
            step,
            format!(
                "{target} resolves to {} (through a symlink in the image), under {reserved}, where client mounts may not go",
                inside.display()
            ),
        )));
    }
    Ok(fd)
}

/// The size-limited tmpfs for an overlay's upper and work directories, on
/// the sandbox's own directory (a trusted path from the daemon), in this
/// private mount namespace.
fn mount_layer(layer: &Layer) -> Result<(), StepError> {
    let err = |e: &dyn std::fmt::Display| {
        StepError::new(
            Step::MountWritableLayer,
            format!("{}: {e}", layer.dir.display()),
        )
    };
    std::fs::create_dir_all(&layer.dir).map_err(|e| err(&e))?;
    let data = layer.data.join(",");
    sys::mount_fs(
        Some(Path::new("tmpfs")),
        &layer.dir,
        Some("tmpfs"),
        ms_flags(&layer.flags),
        Some(&data),
    )
    .map_err(|e| err(&e))
}

fn open_image(images_dir: &Path, no_symlinks: bool, name: &str) -> Result<OwnedFd, StepError> {
    let dir = sys::open_image_dir(images_dir, no_symlinks).map_err(|e| {
        StepError::new(
            Step::OpenImagesDirectory,
            format!("{}: {e}", images_dir.display()),
        )
    })?;
    sys::open_image(dir.as_fd(), name)
        .map_err(|e| StepError::new(Step::OpenImage, format!("{name}: {e}")))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::expect_used)]

    use sandboxd_core::SandboxPaths;
    use sandboxd_core::spec::{ProcessSpec, SandboxSpec};
    use sandboxd_core::validate::{Policy, validate};

    use super::*;
    use crate::plan::{CgroupPlan, CgroupWrite, HostFacts};

    /// Before the clone only the v2 cgroup and what it needs (its limits,
    /// the controllers enabled in its parents) are made; a hybrid host's v1
    /// directories and limits after it, before pid 1 is placed.
    #[test]
    fn the_v2_cgroup_is_made_before_the_clone_and_the_v1_ones_after() {
        let tmp = std::env::temp_dir().join(format!("sandboxd-cgroups-{}", std::process::id()));
        let (unified, memory) = (tmp.join("unified"), tmp.join("memory"));
        let (v2_dir, v1_dir) = (
            unified.join("sandboxd/0123456789abcdef"),
            memory.join("sandboxd/0123456789abcdef"),
        );
        std::fs::create_dir_all(unified.join("sandboxd")).expect("v2 parent");
        let spec = validate(
            SandboxSpec {
                process: ProcessSpec {
                    argv: vec!["/bin/true".into()],
                    ..Default::default()
                },
                ..Default::default()
            },
            &Policy::default(),
        )
        .expect("valid spec");
        let paths = SandboxPaths {
            id: "0123456789abcdef".into(),
            dir: tmp.join("sandbox"),
            ..Default::default()
        };
        let mut plan =
            crate::plan::build(&spec, &paths, &HostFacts::assumed()).expect("plan builds");
        let write = |file: PathBuf| CgroupWrite {
            file,
            value: "1".into(),
        };
        plan.cgroups = CgroupPlan {
            dirs: vec![v2_dir.clone(), v1_dir.clone()],
            writes: vec![
                write(unified.join("sandboxd/cgroup.subtree_control")),
                write(v2_dir.join("memory.max")),
                write(v1_dir.join("memory.limit_in_bytes")),
            ],
        };
        let isolation = LinuxIsolation::new(LinuxLaunch {
            plan,
            images_dir: tmp.join("images"),
            images_dir_no_symlinks: false,
            unified_cgroup: Some(v2_dir.clone()),
            init: None,
            pooled_netns: false,
        });

        isolation.create_cgroups(false).expect("before the clone");
        assert!(unified.join("sandboxd/cgroup.subtree_control").is_file());
        assert!(v2_dir.join("memory.max").is_file());
        assert!(!memory.exists(), "a v1 cgroup made before the clone");

        isolation.create_cgroups(true).expect("after the clone");
        assert!(v1_dir.join("memory.limit_in_bytes").is_file());
        std::fs::remove_dir_all(&tmp).expect("clean up");
    }
}
