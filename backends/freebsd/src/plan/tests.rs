//! Table-driven tests of the FreeBSD plan.

#![allow(clippy::expect_used)]

use std::path::PathBuf;

use sandboxd_core::spec::{
    Limit, Mode, MountSpec, NetworkMode, NetworkPolicy, ProcessSpec, Requirement, SandboxSpec,
};
use sandboxd_core::validate::{Policy, validate};
use sandboxd_core::{Level, NativePlan, Property, SandboxPaths, ValidatedSpec};

use super::*;

const ID: &str = "0123456789abcdef";
const NAME: &str = "sandboxd-0123456789abcdef";

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
        dir: PathBuf::from("/var/db/sandboxd/sandboxes").join(ID),
        ..Default::default()
    }
}

fn built(edit: Edit, host: &HostFacts) -> JailPlan {
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

fn no_racct() -> HostFacts {
    HostFacts {
        racct_enabled: false,
        ..HostFacts::assumed()
    }
}

/// Rendered params as "name=value".
fn params(p: &JailPlan) -> Vec<String> {
    p.params
        .iter()
        .map(|p| format!("{}={}", p.name, p.value.render()))
        .collect()
}

fn param(p: &JailPlan, name: &str) -> Option<String> {
    p.params
        .iter()
        .find(|p| p.name == name)
        .map(|p| p.value.render())
}

fn rules(p: &JailPlan) -> Vec<String> {
    p.rctl_rules.iter().map(RctlRule::render).collect()
}

fn row(spec: &ValidatedSpec, host: &HostFacts, property: Property) -> Enforcement {
    plan(spec, &sandbox(), host)
        .report
        .get(property)
        .expect("row")
        .clone()
}

fn restricted(requirement: Requirement, addresses: &[&str]) -> NetworkPolicy {
    NetworkPolicy {
        mode: NetworkMode::Restricted,
        requirement,
        addresses: addresses.iter().map(|a| (*a).to_owned()).collect(),
        ..NetworkPolicy::default()
    }
}

#[test]
fn matrix_has_one_row_per_property_in_order() {
    for host in [HostFacts::assumed(), no_racct()] {
        let rows = capabilities(&host);
        let props: Vec<Property> = rows.iter().map(|r| r.property).collect();
        assert_eq!(props, Property::ALL);
    }
    let level = |host: &HostFacts, p: Property| {
        capabilities(host)
            .into_iter()
            .find(|r| r.property == p)
            .map(|r| r.level)
    };
    let cases = [
        (Property::Cgroup, Level::NotEnforced, Level::NotEnforced),
        (Property::User, Level::Emulated, Level::Emulated),
        (Property::MemoryLimit, Level::Enforced, Level::NotEnforced),
        (Property::PidsLimit, Level::Enforced, Level::NotEnforced),
        (Property::CpuLimit, Level::Enforced, Level::NotEnforced),
        (Property::OpenFilesLimit, Level::Enforced, Level::Enforced),
        (
            Property::AddressSpaceLimit,
            Level::Enforced,
            Level::Enforced,
        ),
    ];
    for (p, on, off) in cases {
        assert_eq!(level(&HostFacts::assumed(), p), Some(on), "{p:?}");
        assert_eq!(level(&no_racct(), p), Some(off), "{p:?} without racct");
    }
}

#[test]
fn default_params() {
    let p = built(|_| {}, &HostFacts::assumed());
    assert_eq!(
        params(&p),
        [
            format!("path=/var/db/sandboxd/sandboxes/{ID}/root").as_str(),
            "name=sandboxd-0123456789abcdef",
            "host.hostname=0123456789abcdef",
            "ip4=disable",
            "ip6=disable",
            "enforce_statfs=2",
            "children.max=0",
            "securelevel=2",
            "devfs_ruleset=4",
            "allow.raw_sockets=0",
            "allow.mount=0",
            "allow.set_hostname=0",
            "allow.sysvipc=0",
            "sysvmsg=new",
            "sysvsem=new",
            "sysvshm=new",
        ]
    );
}

#[test]
fn network_modes() {
    struct Case {
        what: &'static str,
        edit: Edit,
        host: HostFacts,
        params: &'static [&'static str],
        level: Level,
        step: Option<JailStep>,
    }
    let no_vimage = HostFacts {
        vimage: false,
        ..HostFacts::assumed()
    };
    let alias = loopback_alias(ID);
    let cases = [
        Case {
            what: "unspecified is none",
            edit: |_| {},
            host: HostFacts::assumed(),
            params: &["ip4=disable", "ip6=disable"],
            level: Level::Enforced,
            step: None,
        },
        Case {
            what: "none",
            edit: |s| s.network.mode = NetworkMode::None,
            host: HostFacts::assumed(),
            params: &["ip4=disable", "ip6=disable"],
            level: Level::Enforced,
            step: None,
        },
        Case {
            what: "loopback with vimage",
            edit: |s| s.network.mode = NetworkMode::Loopback,
            host: HostFacts::assumed(),
            params: &["vnet=new"],
            level: Level::Enforced,
            step: Some(JailStep::LoopbackUp),
        },
        Case {
            what: "loopback without vimage",
            edit: |s| s.network.mode = NetworkMode::Loopback,
            host: no_vimage,
            params: &["ip4.addr", "ip6=disable"],
            level: Level::Emulated,
            step: Some(JailStep::AddLoopbackAlias(alias)),
        },
        Case {
            what: "restricted v4",
            edit: |s| s.network = restricted(Requirement::Required, &["192.0.2.10", "192.0.2.11"]),
            host: HostFacts::assumed(),
            params: &["ip4.addr=192.0.2.10,192.0.2.11", "ip6=disable"],
            level: Level::Enforced,
            step: None,
        },
        Case {
            what: "restricted v6",
            edit: |s| s.network = restricted(Requirement::Required, &["2001:db8::1"]),
            host: HostFacts::assumed(),
            params: &["ip4=disable", "ip6.addr=2001:db8::1"],
            level: Level::Enforced,
            step: None,
        },
        Case {
            what: "restricted both",
            edit: |s| {
                s.network = restricted(Requirement::Preferred, &["2001:db8::1", "198.51.100.7"])
            },
            host: HostFacts::assumed(),
            params: &["ip4.addr=198.51.100.7", "ip6.addr=2001:db8::1"],
            level: Level::Enforced,
            step: None,
        },
        Case {
            what: "host",
            edit: |s| s.network.mode = NetworkMode::Host,
            host: HostFacts::assumed(),
            params: &["ip4=inherit", "ip6=inherit"],
            level: Level::Enforced,
            step: None,
        },
    ];
    for c in cases {
        let p = built(c.edit, &c.host);
        let net: Vec<String> = params(&p)
            .into_iter()
            .filter(|p| p.starts_with("ip4") || p.starts_with("ip6") || p.starts_with("vnet"))
            .collect();
        let want: Vec<String> = c
            .params
            .iter()
            .map(|w| {
                if *w == "ip4.addr" {
                    format!("ip4.addr={alias}")
                } else {
                    (*w).to_owned()
                }
            })
            .collect();
        assert_eq!(net, want, "{}", c.what);
        assert_eq!(
            row(&spec(c.edit), &c.host, Property::Network).level,
            c.level,
            "{}",
            c.what
        );
        for s in [JailStep::LoopbackUp, JailStep::AddLoopbackAlias(alias)] {
            assert_eq!(
                p.steps.contains(&s),
                c.step.as_ref() == Some(&s),
                "{}",
                c.what
            );
        }
    }
    assert_eq!(alias.octets()[0], 127);
    assert!(alias.octets()[1] >= 128);
    let r = row(
        &spec(|s| s.network.mode = NetworkMode::Host),
        &HostFacts::assumed(),
        Property::Network,
    );
    assert!(r.caveats.contains("daemon's config"), "{}", r.caveats);
}

#[test]
fn hostname() {
    let host = HostFacts::assumed();
    let cases: &[(&str, Edit, &str, Option<&str>)] = &[
        ("default is the id", |_| {}, "host.hostname", Some(ID)),
        (
            "set",
            |s| s.hostname = "web-1".into(),
            "host.hostname",
            Some("web-1"),
        ),
        (
            "disabled inherits",
            |s| s.isolation.hostname = Requirement::Disabled,
            "host",
            Some("inherit"),
        ),
    ];
    for (what, edit, name, want) in cases {
        assert_eq!(
            param(&built(*edit, &host), name).as_deref(),
            *want,
            "{what}"
        );
    }
    let r = row(
        &spec(|s| s.isolation.hostname = Requirement::Disabled),
        &host,
        Property::Hostname,
    );
    assert_eq!(r.level, Level::NotEnforced);
}

#[test]
fn modes() {
    let host = HostFacts::assumed();
    let cases: &[(&str, Edit, bool, Option<&[&str]>)] = &[
        ("process", |_| {}, false, Some(&["/bin/true"])),
        (
            "init default runs rc",
            |s| {
                s.mode = Mode::Init;
                s.process.argv.clear();
            },
            false,
            Some(&["/bin/sh", "/etc/rc"]),
        ),
        (
            "init with a command",
            |s| {
                s.mode = Mode::Init;
                s.process.argv = vec!["/usr/local/bin/runit".into()];
            },
            false,
            Some(&["/usr/local/bin/runit"]),
        ),
        (
            "idle persists",
            |s| {
                s.mode = Mode::Idle;
                s.process.argv.clear();
                s.process.env.clear();
            },
            true,
            None,
        ),
    ];
    for (what, edit, persist, argv) in cases {
        let p = built(*edit, &host);
        assert_eq!(
            param(&p, "persist").as_deref(),
            persist.then_some("1"),
            "{what}"
        );
        assert_eq!(p.steps.contains(&JailStep::Fork), !persist, "{what}");
        assert_eq!(
            p.steps.contains(&JailStep::ClearPersist),
            !persist,
            "{what}"
        );
        let got = p.steps.iter().find_map(|s| match s {
            JailStep::Execve { argv, .. } => Some(argv.clone()),
            _ => None,
        });
        let want = argv.map(|a| a.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>());
        assert_eq!(got, want, "{what}");
    }
}

#[test]
fn limits() {
    let host = HostFacts::assumed();
    let cases: &[(&str, Edit, &[&str])] = &[
        ("none", |_| {}, &[]),
        (
            "memory",
            |s| s.limits.memory_bytes = limit(64 << 20),
            &["jail:sandboxd-0123456789abcdef:memoryuse:deny=67108864"],
        ),
        (
            "pids",
            |s| s.limits.pids = limit(100),
            &["jail:sandboxd-0123456789abcdef:maxproc:deny=100"],
        ),
        (
            "cpu 1.5 CPUs",
            |s| s.limits.cpu_millis = limit(1500),
            &["jail:sandboxd-0123456789abcdef:pcpu:deny=150"],
        ),
        (
            "cpu rounds up",
            |s| s.limits.cpu_millis = limit(1),
            &["jail:sandboxd-0123456789abcdef:pcpu:deny=1"],
        ),
        (
            "open files and address space are rlimits",
            |s| {
                s.limits.open_files = limit(64);
                s.limits.address_space_bytes = limit(1 << 30);
            },
            &[],
        ),
    ];
    for (what, edit, want) in cases {
        let p = built(*edit, &host);
        assert_eq!(&rules(&p), want, "{what}");
        assert_eq!(
            p.steps.contains(&JailStep::RctlRules),
            !want.is_empty(),
            "{what}"
        );
    }
    let p = built(
        |s| {
            s.limits.open_files = limit(64);
            s.limits.address_space_bytes = limit(1 << 30);
        },
        &host,
    );
    let after_attach: Vec<&JailStep> = p
        .steps
        .iter()
        .skip_while(|s| **s != JailStep::JailAttach)
        .skip(1)
        .take(3)
        .collect();
    assert_eq!(
        after_attach,
        [
            &JailStep::SetRlimit(Rlimit::Nofile(64)),
            &JailStep::SetRlimit(Rlimit::As(1 << 30)),
            &JailStep::NoNewPrivs,
        ]
    );
}

#[test]
fn refusals_and_degradation() {
    struct Case {
        what: &'static str,
        edit: Edit,
        host: HostFacts,
        property: Property,
        refused: bool,
        degraded: bool,
    }
    let cases = [
        Case {
            what: "cgroup required",
            edit: |s| s.isolation.cgroup = Requirement::Required,
            host: HostFacts::assumed(),
            property: Property::Cgroup,
            refused: true,
            degraded: false,
        },
        Case {
            what: "cgroup preferred",
            edit: |s| s.isolation.cgroup = Requirement::Preferred,
            host: HostFacts::assumed(),
            property: Property::Cgroup,
            refused: false,
            degraded: true,
        },
        Case {
            what: "memory required without racct",
            edit: |s| s.limits.memory_bytes = limit(64 << 20),
            host: no_racct(),
            property: Property::MemoryLimit,
            refused: true,
            degraded: false,
        },
        Case {
            what: "memory preferred without racct",
            edit: |s| s.limits.memory_bytes = preferred(64 << 20),
            host: no_racct(),
            property: Property::MemoryLimit,
            refused: false,
            degraded: true,
        },
        Case {
            what: "memory required with racct",
            edit: |s| s.limits.memory_bytes = limit(64 << 20),
            host: HostFacts::assumed(),
            property: Property::MemoryLimit,
            refused: false,
            degraded: false,
        },
        Case {
            what: "user required is emulated",
            edit: |s| s.isolation.user = Requirement::Required,
            host: HostFacts::assumed(),
            property: Property::User,
            refused: false,
            degraded: false,
        },
        Case {
            what: "ipc required",
            edit: |s| s.isolation.ipc = Requirement::Required,
            host: HostFacts::assumed(),
            property: Property::Ipc,
            refused: false,
            degraded: false,
        },
    ];
    for c in cases {
        let s = spec(c.edit);
        let p = plan(&s, &sandbox(), &c.host);
        let prefix = format!("{}:", c.property.as_str());
        assert_eq!(
            p.refusals.iter().any(|r| r.starts_with(&prefix)),
            c.refused,
            "{}: {:?}",
            c.what,
            p.refusals
        );
        assert_eq!(
            p.report.get(c.property).map(|r| r.degraded),
            Some(c.degraded),
            "{}",
            c.what
        );
        let built = build(&s, &sandbox(), &c.host);
        assert_eq!(
            matches!(&built, Err(PlanError::Refused(_))),
            c.refused,
            "{}",
            c.what
        );
        if let Ok(b) = built {
            // A degraded limit has no rule; nothing is half-applied.
            assert!(
                c.host.racct_enabled || b.rctl_rules.is_empty(),
                "{}",
                c.what
            );
        }
    }
    let p = plan(
        &spec(|s| s.limits.memory_bytes = limit(64 << 20)),
        &sandbox(),
        &no_racct(),
    );
    assert!(
        p.refusals[0].contains("kern.racct.enable=0"),
        "{:?}",
        p.refusals
    );
}

#[test]
fn ipc_and_pid_isolation() {
    let host = HostFacts::assumed();
    let sysv = |p: &JailPlan| {
        ["sysvmsg", "sysvsem", "sysvshm"]
            .map(|n| param(p, n).unwrap_or_default())
            .to_vec()
    };
    assert_eq!(
        sysv(&built(|s| s.isolation.ipc = Requirement::Required, &host)),
        ["new"; 3]
    );
    assert_eq!(
        sysv(&built(|s| s.isolation.ipc = Requirement::Disabled, &host)),
        ["inherit"; 3]
    );
    let r = row(
        &spec(|s| s.isolation.ipc = Requirement::Disabled),
        &host,
        Property::Ipc,
    );
    assert_eq!(r.level, Level::NotEnforced);
    // A jail cannot share the host's process view: reported, not ignored.
    let r = row(
        &spec(|s| s.isolation.pid = Requirement::Disabled),
        &host,
        Property::Pid,
    );
    assert_eq!(r.level, Level::Enforced);
    assert!(r.caveats.starts_with("DISABLED was asked"), "{}", r.caveats);
}

#[test]
fn root_filesystem() {
    let host = HostFacts::assumed();
    let summary = |p: &JailPlan| -> Vec<String> {
        p.mounts
            .iter()
            .map(|m| {
                format!(
                    "{} {}{} {}",
                    m.fstype.as_str(),
                    if m.update { "update " } else { "" },
                    m.target,
                    m.options.join(",")
                )
            })
            .collect()
    };
    let cases: &[(&str, Edit, &[&str])] = &[
        (
            "host image",
            |_| {},
            &[
                "tmpfs / mode=755",
                "nullfs /bin ro",
                "nullfs /sbin ro",
                "nullfs /lib ro",
                "nullfs /libexec ro",
                "nullfs /usr ro",
                "nullfs /etc ro",
                "devfs /dev ruleset=4",
                "tmpfs /tmp mode=1777,nosuid",
            ],
        ),
        (
            "host image read-only",
            |s| s.readonly_rootfs = true,
            &[
                "tmpfs / mode=755",
                "nullfs /bin ro",
                "nullfs /sbin ro",
                "nullfs /lib ro",
                "nullfs /libexec ro",
                "nullfs /usr ro",
                "nullfs /etc ro",
                "devfs /dev ruleset=4",
                "tmpfs /tmp mode=1777,nosuid",
                "tmpfs update / ro",
            ],
        ),
        (
            "image read-only with mounts",
            |s| {
                s.image = "base14".into();
                s.readonly_rootfs = true;
                s.mounts = vec![
                    MountSpec {
                        source: "/srv/data".into(),
                        target: "/data".into(),
                        read_only: true,
                    },
                    MountSpec {
                        source: "/srv/out".into(),
                        target: "/var/out".into(),
                        read_only: false,
                    },
                ];
            },
            &[
                "nullfs / ro",
                "devfs /dev ruleset=4",
                "tmpfs /tmp mode=1777,nosuid",
                "nullfs /data ro,nosuid",
                "nullfs /var/out nosuid",
            ],
        ),
        (
            "image writable",
            |s| s.image = "base14".into(),
            &[
                "nullfs / ",
                "devfs /dev ruleset=4",
                "tmpfs /tmp mode=1777,nosuid",
            ],
        ),
    ];
    for (what, edit, want) in cases {
        assert_eq!(&summary(&built(*edit, &host)), want, "{what}");
    }
    let r = row(
        &spec(|s| s.image = "base14".into()),
        &host,
        Property::Filesystem,
    );
    assert!(
        r.caveats.contains("shared with every sandbox"),
        "{}",
        r.caveats
    );

    let s = spec(|s| {
        s.mounts = vec![MountSpec {
            source: "/srv/data".into(),
            target: "/dev/disk".into(),
            read_only: true,
        }]
    });
    assert!(matches!(
        build(&s, &sandbox(), &host),
        Err(PlanError::NullfsMountTarget { index: 0, .. })
    ));
    let p = plan(&s, &sandbox(), &host);
    assert!(
        p.refusals[0].starts_with("spec.mounts[0].target"),
        "{:?}",
        p.refusals
    );
    assert_eq!(p.native, render::empty());
}

#[test]
fn identity_and_no_new_privs() {
    let edit: Edit = |s| {
        s.process.user.uid = Some(0);
        s.process.user.gid = Some(0);
        s.process.user.additional_gids = vec![5];
        s.process.cwd = "/root".into();
    };
    let p = built(edit, &HostFacts::assumed());
    let tail: Vec<&JailStep> = p
        .steps
        .iter()
        .skip_while(|s| **s != JailStep::NoNewPrivs)
        .collect();
    assert_eq!(
        tail,
        [
            &JailStep::NoNewPrivs,
            &JailStep::SetGroups(vec![5]),
            &JailStep::SetGid(0),
            &JailStep::SetUid(0),
            &JailStep::Chdir("/root".into()),
            &JailStep::Closefrom,
            &JailStep::Execve {
                argv: vec!["/bin/true".into()],
                env: vec!["SECRET=hunter2".into()],
            },
            &JailStep::ClearPersist,
        ]
    );
    let r = row(&spec(edit), &HostFacts::assumed(), Property::User);
    assert!(r.caveats.starts_with("runs as uid 0"), "{}", r.caveats);
    let old = HostFacts {
        os_release: "13.3-RELEASE-p1".into(),
        ..HostFacts::assumed()
    };
    assert_eq!(old.major_version(), 13);
    assert!(!built(edit, &old).steps.contains(&JailStep::NoNewPrivs));
}

#[test]
fn rendered_plan() {
    let s = spec(|s| s.limits.pids = limit(5));
    let p = plan(&s, &sandbox(), &HostFacts::assumed());
    assert!(p.refusals.is_empty());
    let NativePlan::Jail {
        params,
        mounts,
        rctl_rules,
        steps,
    } = &p.native
    else {
        panic!("not a jail plan");
    };
    assert_eq!(params[1], ("name".to_owned(), NAME.to_owned()));
    assert_eq!(
        mounts[7].target,
        format!("/var/db/sandboxd/sandboxes/{ID}/root/dev")
    );
    assert_eq!(rctl_rules, &[format!("jail:{NAME}:maxproc:deny=5")]);
    let ops: Vec<&str> = steps.iter().map(|s| s.op.as_str()).collect();
    assert_eq!(
        ops,
        [
            "mounts",
            "jail_set",
            "rctl_add_rule",
            "procctl",
            "fork",
            "jail_attach",
            "procctl",
            "setgroups",
            "setgid",
            "setuid",
            "chdir",
            "closefrom",
            "execve",
            "jail_set",
        ]
    );
    assert_eq!(steps[12].args, ["/bin/true", "env: SECRET"]);
    assert!(!format!("{p:?}").contains("hunter2"));

    // The typed plan travels to the supervisor as JSON.
    let typed = built(
        |s| s.network = restricted(Requirement::Required, &["192.0.2.1", "2001:db8::2"]),
        &HostFacts::assumed(),
    );
    let json = serde_json::to_string(&typed).expect("serialize");
    assert_eq!(
        serde_json::from_str::<JailPlan>(&json).expect("deserialize"),
        typed
    );
}
