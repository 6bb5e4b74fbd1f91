//! The steps of building, entering and tearing down a sandbox, named once.
//!
//! A failure is reported as a [`crate::StepError`] naming the step that failed
//! (firecracker's jailer does the same with its error type). The names cross
//! process boundaries as text (pid 1 → supervisor → daemon → client) and
//! users and tests match on them, so each step's name is written exactly once,
//! here; [`Step::name`] gives it and [`Step::from_name`] reads it back.

use std::fmt;

use sandboxd_core::fault;

/// Defines [`Step`] with its name table, so a variant and its name cannot
/// drift apart and [`Step::ALL`] lists every variant.
macro_rules! steps {
    ($( $(#[$doc:meta])* $variant:ident => $name:literal, )*) => {
        /// One step of a sandbox's setup, a payload's launch, or teardown.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Step {
            $( $(#[$doc])* #[doc = concat!("`", $name, "`")] $variant, )*
            /// A fault-injection point (`sandboxd_core::fault`); only a build
            /// with the `fault-injection` feature fails there.
            Injected(&'static str),
        }

        impl Step {
            /// Every step with a fixed name (not [`Step::Injected`]).
            pub const ALL: &'static [Step] = &[ $( Step::$variant, )* ];

            /// The name users see in errors ("mount image", "pivot_root").
            pub const fn name(self) -> &'static str {
                match self {
                    $( Step::$variant => $name, )*
                    Step::Injected(point) => point,
                }
            }
        }
    };
}

steps! {
    // Every backend: the supervisor and its payloads.
    CheckSingleThreaded => "check single-threaded",
    IgnoreSigpipe => "ignore SIGPIPE",
    BecomeChildSubreaper => "become child subreaper",
    InstallSignalHandlers => "install signal handlers",
    OpenDevNull => "open /dev/null",
    DuplicateDevNull => "duplicate /dev/null",
    PrepareExec => "prepare exec",
    CreateErrorPipe => "create error pipe",
    CreateProbePipe => "create probe pipe",
    Fork => "fork",
    MarkNonDumpable => "mark non-dumpable",
    ResetSignalDispositions => "reset signal dispositions",
    Setsid => "setsid",
    RedirectStdioToDevNull => "redirect stdio to /dev/null",
    InstallStdio => "install stdio",
    SetControllingTerminal => "set controlling terminal",
    Setrlimit => "setrlimit",
    DropCapabilitiesFromTheBoundingSet => "drop capabilities from the bounding set",
    SetNoNewPrivs => "set no_new_privs",
    Setgroups => "setgroups",
    Setgid => "setgid",
    Setuid => "setuid",
    SetParentDeathSignal => "set the parent-death signal",
    CreateWorkingDirectory => "create working directory",
    ChdirToWorkingDirectory => "chdir to working directory",
    FindProgram => "find program",
    CreateImageCopy => "create image copy",
    OpenImageLayer => "open image layer",
    CreateMountPointInImageCopy => "create mount point in image copy",
    FlattenImageLayers => "flatten image layers",
    OpenImageCopy => "open image copy",
    AllocateATerminalFromTheSandboxSDevPtmx => "allocate a terminal from the sandbox's /dev/ptmx",
    GiveTheTerminalToTheProcessSUser => "give the terminal to the process's user",
    InstallStdioLogPipes => "install stdio (log pipes)",
    InstallStdioTerminal => "install stdio (terminal)",
    OpenTheLogFiles => "open the log files",
    ReceiveTheTerminal => "receive the terminal",
    HandTheTerminalToTheSupervisor => "hand the terminal to the supervisor",
    CreateTheLogPipes => "create the log pipes",
    AllocateATerminal => "allocate a terminal",
    DuplicateTheTerminal => "duplicate the terminal",
    CreateTheTerminalSocket => "create the terminal socket",
    InstallSeccompFilter => "install seccomp filter",
    Exec => "exec",
    Verify => "verify",
    ReadErrorPipe => "read error pipe",
    Setup => "setup",
    OpenImagesDirectory => "open images directory",
    OpenImage => "open image",
    OpenRoot => "open root",
    CreateMaskFile => "create mask file",
    MaskTheSandboxdBinary => "mask the sandboxd binary",
    MountWritableLayer => "mount writable layer",
    Chmod => "chmod",
    ChdirRoot => "chdir /",
    ResolveMountSource => "resolve mount source",
    ResolveMountTarget => "resolve mount target",
    BindMount => "bind mount",
    // Linux: cgroups, namespaces, the sandbox init (pid 1) and its root.
    CreateCgroup => "create cgroup",
    WriteCgroupLimit => "write cgroup limit",
    OpenCgroup => "open cgroup",
    JoinCgroup => "join cgroup",
    RemoveCgroup => "remove cgroup",
    CreateRootMountPoint => "create root mount point",
    CloneNamespaces => "clone namespaces",
    WriteIdMap => "write id map",
    OpenNamespace => "open namespace",
    Setns => "setns",
    SetPidNamespaceForChildren => "set the pid namespace for children",
    CreateSyncPipe => "create sync pipe",
    SandboxInit => "sandbox init",
    ReleaseSandboxInit => "release sandbox init",
    WaitForRelease => "wait for release",
    WaitForCgroups => "wait for cgroups",
    WaitForIdMaps => "wait for id maps",
    UnshareUserNamespace => "unshare user namespace",
    AskForIdMaps => "ask for id maps",
    BecomeRootOfTheUserNamespace => "become root of the user namespace",
    DropReaperCapabilities => "drop reaper capabilities",
    ReaperSetgroups => "reaper setgroups",
    ReaperSetgid => "reaper setgid",
    ReaperSetuid => "reaper setuid",
    MarkReaperNonDumpable => "mark reaper non-dumpable",
    UnshareCgroupNamespace => "unshare cgroup namespace",
    Sethostname => "sethostname",
    MakeRootPrivate => "make / private",
    Mount => "mount",
    CreateMountPoint => "create mount point",
    CreateOverlayDirectory => "create overlay directory",
    RemountBind => "remount bind",
    Symlink => "symlink",
    Mknod => "mknod",
    ResolveInRoot => "resolve in root",
    CheckMountTarget => "check mount target",
    ChdirToNewRoot => "chdir to new root",
    PivotRoot => "pivot_root",
    DetachOldRoot => "detach old root",
    BringLoUp => "bring lo up",
    OpenNetworkNamespace => "open network namespace",
    JoinNetworkNamespace => "join network namespace",
    LaunchDescriptors => "take launch descriptors",
    OpenParentSandbox => "open parent sandbox",
    JoinParentNamespaces => "join parent namespaces",
    ReturnToOwnPidNamespace => "return to own pid namespace",
    KillCgroup => "kill cgroup",
    // chroot: the root it builds and enters.
    BuildRoot => "build root",
    MountTmpfsRoot => "mount tmpfs root",
    BindHostDirectory => "bind host directory",
    RemountHostDirectoryReadOnly => "remount host directory read-only",
    BindImage => "bind image",
    RemountImageReadOnly => "remount image read-only",
    MountOverlayRoot => "mount overlay root",
    RemountRootReadOnly => "remount root read-only",
    CreateDirectory => "create directory",
    CreateSymlink => "create symlink",
    MountTmpfsTmp => "mount tmpfs /tmp",
    MountTmpfsDev => "mount tmpfs /dev",
    OpenDevDir => "open /dev",
    CreateDeviceMountPoint => "create device mount point",
    ResolveDeviceMountPoint => "resolve device mount point",
    BindDeviceNode => "bind device node",
    MountTmpfsDevShm => "mount tmpfs /dev/shm",
    OpenRoot_ => "open /",
    RemountBindMount => "remount bind mount",
    Chroot => "chroot",
    UnmountRoot => "unmount root",
    // FreeBSD: the jail, its mounts, limits and network.
    CreateJailRoot => "create jail root",
    ResolveJailRoot => "resolve jail root",
    Fstat => "fstat",
    MountTarget => "mount target",
    MountSource => "mount source",
    Nmount => "nmount",
    VerifyMount => "verify mount",
    WriteResolvConf => "write resolv.conf",
    JailSet => "jail_set",
    JailAttach => "jail_attach",
    JailGet => "jail_get",
    JailRemove => "jail_remove",
    RctlAddRule => "rctl_add_rule",
    RctlRemoveRule => "rctl_remove_rule",
    DevfsRuleset => "devfs ruleset",
    Lo0Up => "lo0 up",
    Lo0UpFork => "lo0 up: fork",
    ResolveSandboxDirectory => "resolve sandbox directory",
    Getfsstat => "getfsstat",
    Unmount => "unmount",
}

impl Step {
    /// The step with this name, as [`Step::name`] writes it; `None` for a
    /// name no step has (a peer speaking another protocol version).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL
            .iter()
            .copied()
            .find(|s| s.name() == name)
            .or_else(|| injection_point(name).map(Step::Injected))
    }
}

/// The `&'static` name of a fault-injection point, so a step read back from
/// a pipe can carry it.
fn injection_point(name: &str) -> Option<&'static str> {
    fault::CREATE_STEPS
        .iter()
        .chain(fault::DESTROY_STEPS)
        .chain(std::iter::once(&fault::CLEANUP))
        .copied()
        .find(|p| *p == name)
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn names_are_unique_and_read_back() {
        let mut seen = HashSet::new();
        for step in Step::ALL {
            assert!(
                seen.insert(step.name()),
                "two steps are named {:?}",
                step.name()
            );
            assert_eq!(Step::from_name(step.name()), Some(*step));
        }
    }

    #[test]
    fn injection_points_read_back() {
        for point in fault::CREATE_STEPS.iter().chain(fault::DESTROY_STEPS) {
            assert_eq!(Step::from_name(point), Some(Step::Injected(point)));
        }
        assert_eq!(Step::from_name("no such step"), None);
    }

    #[test]
    fn the_missing_program_step_is_the_one_clients_are_told_of() {
        // sandboxctl exits 127 for it (a stable name on the wire).
        assert_eq!(
            Step::FindProgram.name(),
            sandboxd_core::wire::PROGRAM_NOT_FOUND
        );
    }

    #[test]
    fn names_are_printable_text() {
        // They cross pipes as text terminated by NUL.
        for step in Step::ALL {
            let n = step.name();
            assert!(!n.is_empty() && !n.contains('\0') && n.trim() == n, "{n:?}");
        }
    }
}
