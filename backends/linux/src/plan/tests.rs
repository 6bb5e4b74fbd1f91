//! Table-driven tests of the Linux plan.

#![allow(clippy::expect_used)]

use std::path::PathBuf;

use sandboxd_core::spec::{
    Limit, Mode, MountSpec, NetworkMode, NetworkPolicy, ProcessSpec, Requirement, SandboxSpec,
};
use sandboxd_core::validate::{Policy, validate};
use sandboxd_core::{Level, NativePlan, Property, SandboxPaths, ValidatedSpec};

use super::*;

const ID: &str = "0123456789abcdef";

type Edit = fn(&mut SandboxSpec);

fn spec(edit: Edit) -> ValidatedSpec {
    let mut s = SandboxSpec {
        process: ProcessSpec {
            argv: vec!["/bin/true".into()],
            env: vec!["SECRET=hunter2".into()],
            ..Default::default()
        },
        ..Default::default()
    };
    edit(&mut s);
    let policy = Policy {
        allowed_mount_sources: vec!["/srv".into()],
        ..Policy::default()
    };
    validate(s, &policy).expect("valid spec")
}

fn sandbox() -> SandboxPaths {
    SandboxPaths {
        id: ID.into(),
        dir: PathBuf::from("/var/lib/sandboxd/sandboxes").join(ID),
        ..Default::default()
    }
}

fn hybrid() -> HostFacts {
    HostFacts {
        cgroup: CgroupFacts::hybrid(),
        ..HostFacts::assumed()
    }
}

fn built(edit: Edit, host: &HostFacts) -> LinuxPlan {
    build(&spec(edit), &sandbox(), host).expect("plan builds")
}

fn limit(value: u64) -> Option<Limit> {
    Some(Limit {
        value,
        requirement: Requirement::Unspecified,
    })
}

fn preferred(value: u64) -> Option<Limit> {
    Some(Limit {
        value,
        requirement: Requirement::Preferred,
    })
}

fn flags(p: &LinuxPlan) -> Vec<&'static str> {
    p.namespaces.iter().map(|n| n.flag()).collect()
}

/// (target, fstype) of every mount, "symlink" for links.
fn targets(p: &LinuxPlan) -> Vec<(String, String)> {
    p.mounts
        .iter()
        .map(|op| match op {
            RootOp::MakePrivate => ("<private>".into(), String::new()),
            RootOp::Mount(m) => (m.target.clone(), m.fstype.clone().unwrap_or_default()),
            RootOp::Symlink { path, .. } => (path.clone(), "symlink".into()),
        })
        .collect()
}

fn has_target(p: &LinuxPlan, target: &str) -> bool {
    targets(p).iter().any(|(t, _)| t == target)
}

fn writes(p: &LinuxPlan) -> Vec<(String, String)> {
    p.cgroups
        .writes
        .iter()
        .map(|w| (w.file.display().to_string(), w.value.clone()))
        .collect()
}

fn row(spec: &ValidatedSpec, host: &HostFacts, property: Property) -> Enforcement {
    let p = plan(spec, &sandbox(), host);
    p.report.get(property).expect("row").clone()
}

#[test]
fn matrix_has_one_row_per_property_in_order() {
    for host in [HostFacts::assumed(), hybrid()] {
        let rows = capabilities(&host);
        let props: Vec<Property> = rows.iter().map(|r| r.property).collect();
        assert_eq!(props, Property::ALL);
        assert!(rows.iter().all(|r| !r.mechanism.is_empty()));
    }
    let v1 = capabilities(&hybrid());
    assert_eq!(v1[7].mechanism, "cgroup v1 memory.limit_in_bytes");
    assert_eq!(v1[9].mechanism, "cgroup v1 cpu.cfs_quota_us");
    assert_eq!(
        capabilities(&HostFacts::assumed())[7].mechanism,
        "cgroup v2 memory.max"
    );
}

#[test]
fn missing_controller_and_userns_are_not_enforced() {
    let mut host = HostFacts::assumed();
    host.cgroup.memory = None;
    host.user_namespaces = false;
    let rows = capabilities(&host);
    let level = |p: Property| rows.iter().find(|r| r.property == p).map(|r| r.level);
    assert_eq!(level(Property::MemoryLimit), Some(Level::NotEnforced));
    assert_eq!(level(Property::User), Some(Level::NotEnforced));
    assert_eq!(level(Property::PidsLimit), Some(Level::Enforced));
}

#[test]
fn namespaces_follow_the_isolation_requests() {
    let all = [
        "CLONE_NEWNS",
        "CLONE_NEWPID",
        "CLONE_NEWUTS",
        "CLONE_NEWIPC",
        "CLONE_NEWNET",
        "CLONE_NEWCGROUP",
    ];
    let cases: &[(&str, Edit, &[&str])] = &[
        ("default", |_| {}, &all),
        (
            "pid disabled",
            |s| s.isolation.pid = Requirement::Disabled,
            &[
                "CLONE_NEWNS",
                "CLONE_NEWUTS",
                "CLONE_NEWIPC",
                "CLONE_NEWNET",
                "CLONE_NEWCGROUP",
            ],
        ),
        (
            "hostname disabled",
            |s| s.isolation.hostname = Requirement::Disabled,
            &[
                "CLONE_NEWNS",
                "CLONE_NEWPID",
                "CLONE_NEWIPC",
                "CLONE_NEWNET",
                "CLONE_NEWCGROUP",
            ],
        ),
        (
            "ipc disabled",
            |s| s.isolation.ipc = Requirement::Disabled,
            &[
                "CLONE_NEWNS",
                "CLONE_NEWPID",
                "CLONE_NEWUTS",
                "CLONE_NEWNET",
                "CLONE_NEWCGROUP",
            ],
        ),
        (
            "cgroup disabled",
            |s| s.isolation.cgroup = Requirement::Disabled,
            &[
                "CLONE_NEWNS",
                "CLONE_NEWPID",
                "CLONE_NEWUTS",
                "CLONE_NEWIPC",
                "CLONE_NEWNET",
            ],
        ),
        (
            "host network",
            |s| s.network.mode = NetworkMode::Host,
            &[
                "CLONE_NEWNS",
                "CLONE_NEWPID",
                "CLONE_NEWUTS",
                "CLONE_NEWIPC",
                "CLONE_NEWCGROUP",
            ],
        ),
        (
            "user required",
            |s| s.isolation.user = Requirement::Required,
            &[
                "CLONE_NEWUSER",
                "CLONE_NEWNS",
                "CLONE_NEWPID",
                "CLONE_NEWUTS",
                "CLONE_NEWIPC",
                "CLONE_NEWNET",
                "CLONE_NEWCGROUP",
            ],
        ),
        (
            "filesystem required keeps the default",
            |s| s.isolation.filesystem = Requirement::Required,
            &all,
        ),
    ];
    for (what, edit, want) in cases {
        assert_eq!(&flags(&built(*edit, &HostFacts::assumed())), want, "{what}");
    }
}

#[test]
fn disabled_namespaces_drop_their_steps_and_mounts() {
    let host = HostFacts::assumed();
    let p = built(|s| s.isolation.hostname = Requirement::Disabled, &host);
    assert!(
        !p.steps
            .iter()
            .any(|s| matches!(s, LinuxStep::SetHostname(_)))
    );
    let p = built(|s| s.isolation.ipc = Requirement::Disabled, &host);
    assert!(!has_target(&p, "/dev/mqueue"));
    let p = built(|s| s.isolation.cgroup = Requirement::Disabled, &host);
    assert!(!p.steps.contains(&LinuxStep::UnshareCgroup));
    let p = built(|s| s.network.mode = NetworkMode::Host, &host);
    assert!(!has_target(&p, "/sys"));
    assert!(!has_target(&p, "/sys/firmware"));
    let row = row(
        &spec(|s| s.isolation.pid = Requirement::Disabled),
        &host,
        Property::Pid,
    );
    assert_eq!(row.level, Level::NotEnforced);
    assert!(row.caveats.starts_with("DISABLED"), "{}", row.caveats);
}

#[test]
fn user_namespace_is_opt_in() {
    let host = HostFacts::assumed();
    let p = built(|s| s.isolation.user = Requirement::Preferred, &host);
    assert_eq!(p.namespaces[0], Namespace::User);
    assert!(
        p.steps
            .iter()
            .any(|s| matches!(s, LinuxStep::WriteIdMaps(_)))
    );

    // Not requested: no user namespace, and the report says what uid 0 means.
    let p = built(|s| s.process.user.uid = Some(0), &host);
    assert!(!p.namespaces.contains(&Namespace::User));
    let r = row(
        &spec(|s| s.process.user.uid = Some(0)),
        &host,
        Property::User,
    );
    assert_eq!(r.level, Level::NotEnforced);
    assert!(r.caveats.contains("host root"), "{}", r.caveats);

    // Unavailable on the host: REQUIRED is refused, PREFERRED degrades.
    let no_userns = HostFacts {
        user_namespaces: false,
        ..HostFacts::assumed()
    };
    let err = build(
        &spec(|s| s.isolation.user = Requirement::Required),
        &sandbox(),
        &no_userns,
    )
    .expect_err("refused");
    assert!(
        matches!(&err, PlanError::Refused(r) if r[0].starts_with("user:")),
        "{err}"
    );
    let p = built(|s| s.isolation.user = Requirement::Preferred, &no_userns);
    assert!(!p.namespaces.contains(&Namespace::User));
    let r = row(
        &spec(|s| s.isolation.user = Requirement::Preferred),
        &no_userns,
        Property::User,
    );
    assert!(r.degraded);

    // Ids outside the map cannot be used.
    let err = build(
        &spec(|s| {
            s.isolation.user = Requirement::Required;
            s.process.user.uid = Some(70_000);
        }),
        &sandbox(),
        &host,
    )
    .expect_err("unmapped uid");
    assert!(matches!(
        err,
        PlanError::UserNamespaceMap {
            what: "uid",
            id: 70_000,
            ..
        }
    ));
}

#[test]
fn network_modes() {
    struct Case {
        what: &'static str,
        edit: Edit,
        net_ns: bool,
        lo_up: bool,
        level: Level,
        refused: bool,
    }
    let cases = [
        Case {
            what: "unspecified is none",
            edit: |_| {},
            net_ns: true,
            lo_up: false,
            level: Level::Enforced,
            refused: false,
        },
        Case {
            what: "none",
            edit: |s| s.network.mode = NetworkMode::None,
            net_ns: true,
            lo_up: false,
            level: Level::Enforced,
            refused: false,
        },
        Case {
            what: "loopback",
            edit: |s| s.network.mode = NetworkMode::Loopback,
            net_ns: true,
            lo_up: true,
            level: Level::Enforced,
            refused: false,
        },
        Case {
            what: "restricted required",
            edit: |s| {
                s.network = NetworkPolicy {
                    mode: NetworkMode::Restricted,
                    requirement: Requirement::Unspecified,
                    addresses: vec!["192.0.2.10".into()],
                    ..NetworkPolicy::default()
                }
            },
            net_ns: true,
            lo_up: true,
            level: Level::NotEnforced,
            refused: true,
        },
        Case {
            what: "restricted preferred",
            edit: |s| {
                s.network = NetworkPolicy {
                    mode: NetworkMode::Restricted,
                    requirement: Requirement::Preferred,
                    addresses: vec!["192.0.2.10".into()],
                    ..NetworkPolicy::default()
                }
            },
            net_ns: true,
            lo_up: true,
            level: Level::NotEnforced,
            refused: false,
        },
        Case {
            what: "host",
            edit: |s| s.network.mode = NetworkMode::Host,
            net_ns: false,
            lo_up: false,
            level: Level::Enforced,
            refused: false,
        },
    ];
    let host = HostFacts::assumed();
    for c in cases {
        let s = spec(c.edit);
        let p = plan(&s, &sandbox(), &host);
        let r = p.report.get(Property::Network).expect("row");
        assert_eq!(r.level, c.level, "{}", c.what);
        assert_eq!(
            !p.refusals.is_empty(),
            c.refused,
            "{}: {:?}",
            c.what,
            p.refusals
        );
        let NativePlan::Linux {
            clone_flags, steps, ..
        } = &p.native
        else {
            panic!("{}: not a linux plan", c.what);
        };
        assert_eq!(
            clone_flags.iter().any(|f| f == "CLONE_NEWNET"),
            c.net_ns,
            "{}",
            c.what
        );
        assert_eq!(
            steps.iter().any(|s| s.op == "link_up"),
            c.lo_up,
            "{}",
            c.what
        );
        assert_eq!(
            build(&s, &sandbox(), &host).is_err(),
            c.refused,
            "{}",
            c.what
        );
    }
    let s = spec(|s| {
        s.network = NetworkPolicy {
            mode: NetworkMode::Restricted,
            requirement: Requirement::Required,
            addresses: vec!["192.0.2.10".into()],
            ..NetworkPolicy::default()
        }
    });
    let refusals = plan(&s, &sandbox(), &host).refusals;
    assert!(refusals[0].starts_with("network:"), "{refusals:?}");
    assert!(
        refusals[0].contains("until the networking issue lands"),
        "{refusals:?}"
    );
    let r = row(
        &spec(|s| s.network.mode = NetworkMode::Host),
        &host,
        Property::Network,
    );
    assert!(r.caveats.contains("daemon's config"), "{}", r.caveats);
}

#[test]
fn cgroup_writes_v2_and_v1() {
    let base = "/sys/fs/cgroup/sandboxd/0123456789abcdef";
    let w = |f: &str, v: &str| (f.to_owned(), v.to_owned());
    type Case = (&'static str, Edit, HostFacts, Vec<(String, String)>);
    let cases: &[Case] = &[
        ("no limits", |_| {}, HostFacts::assumed(), vec![]),
        (
            "v2 all",
            |s| {
                s.limits.memory_bytes = limit(64 << 20);
                s.limits.pids = limit(100);
                s.limits.cpu_millis = limit(1500);
            },
            HostFacts::assumed(),
            vec![
                w(
                    "/sys/fs/cgroup/cgroup.subtree_control",
                    "+cpu +memory +pids",
                ),
                w(
                    "/sys/fs/cgroup/sandboxd/cgroup.subtree_control",
                    "+cpu +memory +pids",
                ),
                w(&format!("{base}/cpu.max"), "150000 100000"),
                w(&format!("{base}/memory.max"), "67108864"),
                w(&format!("{base}/memory.swap.max"), "0"),
                w(&format!("{base}/pids.max"), "100"),
            ],
        ),
        (
            "v1 (hybrid) all, no swap accounting",
            |s| {
                s.limits.memory_bytes = limit(64 << 20);
                s.limits.pids = limit(100);
                s.limits.cpu_millis = limit(250);
            },
            hybrid(),
            vec![
                w(
                    "/sys/fs/cgroup/cpu/sandboxd/0123456789abcdef/cpu.cfs_period_us",
                    "100000",
                ),
                w(
                    "/sys/fs/cgroup/cpu/sandboxd/0123456789abcdef/cpu.cfs_quota_us",
                    "25000",
                ),
                w(
                    "/sys/fs/cgroup/memory/sandboxd/0123456789abcdef/memory.limit_in_bytes",
                    "67108864",
                ),
                w(
                    "/sys/fs/cgroup/pids/sandboxd/0123456789abcdef/pids.max",
                    "100",
                ),
            ],
        ),
        (
            "v1 memory with memsw",
            |s| s.limits.memory_bytes = limit(8 << 20),
            HostFacts {
                cgroup: CgroupFacts {
                    swap_accounting: true,
                    ..CgroupFacts::hybrid()
                },
                ..HostFacts::assumed()
            },
            vec![
                w(
                    "/sys/fs/cgroup/memory/sandboxd/0123456789abcdef/memory.limit_in_bytes",
                    "8388608",
                ),
                w(
                    "/sys/fs/cgroup/memory/sandboxd/0123456789abcdef/memory.memsw.limit_in_bytes",
                    "8388608",
                ),
            ],
        ),
    ];
    for (what, edit, host, want) in cases {
        assert_eq!(&writes(&built(*edit, host)), want, "{what}");
    }
    // Every sandbox gets a cgroup in the unified hierarchy; v1 ones only
    // where a limit needs them.
    let p = built(|s| s.limits.pids = limit(10), &hybrid());
    assert_eq!(
        p.cgroups.dirs,
        vec![
            PathBuf::from("/sys/fs/cgroup/unified/sandboxd/0123456789abcdef"),
            PathBuf::from("/sys/fs/cgroup/pids/sandboxd/0123456789abcdef"),
        ]
    );
}

#[test]
fn limits_without_a_controller() {
    let mut host = HostFacts::assumed();
    host.cgroup.memory = None;
    let err = build(
        &spec(|s| s.limits.memory_bytes = limit(64 << 20)),
        &sandbox(),
        &host,
    )
    .expect_err("refused");
    assert!(matches!(&err, PlanError::Refused(r) if r[0].starts_with("memory_limit:")));
    let s = spec(|s| s.limits.memory_bytes = preferred(64 << 20));
    let p = build(&s, &sandbox(), &host).expect("preferred degrades");
    assert!(p.cgroups.writes.is_empty(), "{:?}", p.cgroups.writes);
    assert!(row(&s, &host, Property::MemoryLimit).degraded);
}

#[test]
fn rlimits_and_identity() {
    let p = built(
        |s| {
            s.limits.open_files = limit(64);
            s.limits.address_space_bytes = limit(1 << 30);
            s.process.user.uid = Some(1000);
            s.process.user.gid = Some(100);
            s.process.user.additional_gids = vec![5, 6];
            s.process.cwd = "/tmp".into();
        },
        &HostFacts::assumed(),
    );
    let tail: Vec<&LinuxStep> = p
        .steps
        .iter()
        .skip_while(|s| !matches!(s, LinuxStep::NoNewPrivs))
        .collect();
    assert_eq!(
        tail,
        [
            &LinuxStep::NoNewPrivs,
            &LinuxStep::SetRlimit(Rlimit::Nofile(64)),
            &LinuxStep::SetRlimit(Rlimit::As(1 << 30)),
            &LinuxStep::SetGroups(vec![5, 6]),
            &LinuxStep::SetGid(100),
            &LinuxStep::SetUid(1000),
            &LinuxStep::Chdir("/tmp".into()),
            &LinuxStep::Seccomp,
            &LinuxStep::CloseRange,
            &LinuxStep::Execve {
                argv: vec!["/bin/true".into()],
                env: vec!["SECRET=hunter2".into()],
            },
        ]
    );
    // Defaults: nobody/nogroup.
    let p = built(|_| {}, &HostFacts::assumed());
    assert!(p.steps.contains(&LinuxStep::SetUid(65534)));
    assert!(
        p.steps
            .contains(&LinuxStep::Capabilities(Capability::DEFAULT.to_vec()))
    );
}

#[test]
fn hostname() {
    let host = HostFacts::assumed();
    let p = built(|_| {}, &host);
    assert!(p.steps.contains(&LinuxStep::SetHostname(ID.into())));
    let p = built(|s| s.hostname = "web-1".into(), &host);
    assert!(p.steps.contains(&LinuxStep::SetHostname("web-1".into())));
}

#[test]
fn modes() {
    let host = HostFacts::assumed();
    let cases: &[(&str, Edit, bool, bool, Option<&str>)] = &[
        ("process", |_| {}, true, false, Some("/bin/true")),
        (
            "init",
            |s| {
                s.mode = Mode::Init;
                s.process.argv.clear();
            },
            false,
            false,
            Some("/sbin/init"),
        ),
        (
            "idle",
            |s| {
                s.mode = Mode::Idle;
                s.process.argv.clear();
                s.process.env.clear();
            },
            false,
            true,
            None,
        ),
    ];
    for (what, edit, fork, idle, exec) in cases {
        let p = built(*edit, &host);
        assert_eq!(p.steps.contains(&LinuxStep::ForkPayload), *fork, "{what}");
        assert_eq!(p.steps.contains(&LinuxStep::Idle), *idle, "{what}");
        let argv0 = p.steps.iter().find_map(|s| match s {
            LinuxStep::Execve { argv, .. } => argv.first().map(String::as_str),
            _ => None,
        });
        assert_eq!(argv0, *exec, "{what}");
    }
}

#[test]
fn default_mount_order() {
    let p = built(|_| {}, &HostFacts::assumed());
    let got: Vec<String> = targets(&p)
        .into_iter()
        .map(|(t, f)| if f.is_empty() { t } else { format!("{t} {f}") })
        .collect();
    let want = [
        "<private>",
        "/ tmpfs",
        "/usr",
        "/etc",
        "/bin symlink",
        "/sbin symlink",
        "/lib symlink",
        "/lib64 symlink",
        "/proc proc",
        "/dev tmpfs",
        "/dev/null",
        "/dev/zero",
        "/dev/full",
        "/dev/random",
        "/dev/urandom",
        "/dev/tty",
        "/dev/fd symlink",
        "/dev/stdin symlink",
        "/dev/stdout symlink",
        "/dev/stderr symlink",
        "/dev/ptmx symlink",
        "/dev/pts devpts",
        "/dev/shm tmpfs",
        "/dev/mqueue mqueue",
        "/sys sysfs",
        "/tmp tmpfs",
        "/proc/kcore",
        "/proc/keys",
        "/proc/timer_list",
        "/proc/sched_debug",
        "/proc/scsi tmpfs",
        "/proc/acpi tmpfs",
        "/sys/firmware tmpfs",
        "/proc/sys",
        "/proc/sysrq-trigger",
        "/proc/irq",
        "/proc/bus",
        "/proc/fs",
    ];
    assert_eq!(got, want);
}

#[test]
fn root_filesystem_variants() {
    let host = HostFacts::assumed();
    // Not merged /usr: binds instead of symlinks, /lib64 optional.
    let p = built(
        |_| {},
        &HostFacts {
            merged_usr: false,
            ..host.clone()
        },
    );
    let lib64 = p.mounts.iter().find_map(|op| match op {
        RootOp::Mount(m) if m.target == "/lib64" => Some(m),
        _ => None,
    });
    assert!(lib64.is_some_and(|m| m.if_exists && m.flags.contains(&MountFlag::Rdonly)));

    // Directory image, writable: overlay under the sandbox's directory.
    let p = built(|s| s.image = "alpine".into(), &host);
    let RootOp::Mount(root) = &p.mounts[1] else {
        panic!("no root mount");
    };
    assert_eq!(
        root.source,
        MountSource::Overlay {
            image: "alpine".into(),
            upper: sandbox().dir.join("upper"),
            work: sandbox().dir.join("work"),
        }
    );

    // Directory image, read-only: a read-only bind, then the final remount.
    let p = built(
        |s| {
            s.image = "alpine".into();
            s.readonly_rootfs = true;
        },
        &host,
    );
    let RootOp::Mount(root) = &p.mounts[1] else {
        panic!("no root mount");
    };
    assert_eq!(root.source, MountSource::Image("alpine".into()));
    assert!(root.flags.contains(&MountFlag::Rdonly));
    let Some(RootOp::Mount(last)) = p.mounts.last() else {
        panic!("no last mount");
    };
    assert_eq!(
        (last.target.as_str(), last.flags.as_slice()),
        (
            "/",
            &[MountFlag::Remount, MountFlag::Bind, MountFlag::Rdonly][..]
        )
    );

    // No overlayfs: a writable directory image cannot be planned.
    let no_overlay = HostFacts {
        overlayfs: false,
        ..host
    };
    let s = spec(|s| s.image = "alpine".into());
    assert!(matches!(
        build(&s, &sandbox(), &no_overlay),
        Err(PlanError::RootfsOverlay { .. })
    ));
    let p = plan(&s, &sandbox(), &no_overlay);
    assert!(p.refusals[0].starts_with("rootfs:"), "{:?}", p.refusals);
    assert_eq!(p.native, render::empty());
}

#[test]
fn client_mounts() {
    let p = built(
        |s| {
            s.readonly_rootfs = true;
            s.mounts = vec![
                MountSpec {
                    source: "/srv/data".into(),
                    target: "/data".into(),
                    read_only: true,
                },
                MountSpec {
                    source: "/srv/out".into(),
                    target: "/tmp/out".into(),
                    read_only: false,
                },
            ];
        },
        &HostFacts::assumed(),
    );
    let n = p.mounts.len();
    let client: Vec<(&MountSource, &str, &[MountFlag])> = p.mounts[n - 3..n - 1]
        .iter()
        .filter_map(|op| match op {
            RootOp::Mount(m) => Some((&m.source, m.target.as_str(), m.flags.as_slice())),
            _ => None,
        })
        .collect();
    use MountFlag::{Bind, Nodev, Nosuid, Rdonly};
    assert_eq!(
        client,
        [
            (
                &MountSource::Host("/srv/data".into()),
                "/data",
                &[Bind, Nosuid, Nodev, Rdonly][..]
            ),
            (
                &MountSource::Host("/srv/out".into()),
                "/tmp/out",
                &[Bind, Nosuid, Nodev][..]
            ),
        ]
    );
    for target in ["/proc/sys/kernel", "/dev", "/sys/x"] {
        let mut s = SandboxSpec {
            process: ProcessSpec {
                argv: vec!["/bin/true".into()],
                ..Default::default()
            },
            ..Default::default()
        };
        s.mounts.push(MountSpec {
            source: "/srv/data".into(),
            target: target.into(),
            read_only: true,
        });
        let policy = Policy {
            allowed_mount_sources: vec!["/srv".into()],
            ..Policy::default()
        };
        let s = validate(s, &policy).expect("valid");
        assert!(
            matches!(
                build(&s, &sandbox(), &HostFacts::assumed()),
                Err(PlanError::BindMountTarget { index: 0, .. })
            ),
            "{target}"
        );
    }
}

#[test]
fn rendered_plan() {
    let s = spec(|s| s.limits.pids = limit(5));
    let p = plan(&s, &sandbox(), &HostFacts::assumed());
    assert!(p.refusals.is_empty());
    let NativePlan::Linux {
        clone_flags,
        mounts,
        cgroup_writes,
        steps,
    } = &p.native
    else {
        panic!("not a linux plan");
    };
    assert_eq!(clone_flags.len(), 6);
    assert_eq!(
        mounts[8].target,
        format!("/var/lib/sandboxd/sandboxes/{ID}/root/proc")
    );
    assert_eq!(mounts[8].options, ["nosuid", "nodev", "noexec"]);
    assert!(
        cgroup_writes
            .iter()
            .any(|(f, v)| f.ends_with("/pids.max") && v == "5")
    );
    let clone = steps.iter().find(|s| s.op == "clone").expect("clone step");
    assert!(!clone.args.iter().any(|a| a == "CLONE_NEWCGROUP"));
    let exec = steps.last().expect("steps");
    assert_eq!(exec.args, ["/bin/true", "env: SECRET"]);
    assert!(!format!("{p:?}").contains("hunter2"));

    // The typed plan travels to the supervisor as JSON.
    let typed = built(|_| {}, &HostFacts::assumed());
    let json = serde_json::to_string(&typed).expect("serialize");
    let back: LinuxPlan = serde_json::from_str(&json).expect("deserialize");
    assert_eq!(back, typed);
    let facts = serde_json::to_string(&hybrid()).expect("serialize");
    assert_eq!(
        serde_json::from_str::<HostFacts>(&facts).expect("facts"),
        hybrid()
    );
}
