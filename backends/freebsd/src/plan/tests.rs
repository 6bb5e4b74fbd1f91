//! Table-driven tests of the FreeBSD plan.

#![allow(clippy::expect_used)]

use std::net::IpAddr;
use std::path::PathBuf;

use sandboxd_core::net::NetLease;
use sandboxd_core::spec::{
    Limit, Mode, MountSpec, NetworkMode, NetworkPolicy, PortForward, ProcessSpec, Protocol,
    Requirement, SandboxSpec,
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
        (Property::CpuWeight, Level::NotEnforced, Level::NotEnforced),
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
            "persist=1",
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
    for (what, edit, idle, argv) in cases {
        let p = built(*edit, &host);
        // Every jail persists until teardown removes it; only IDLE has no
        // first process.
        assert_eq!(param(&p, "persist").as_deref(), Some("1"), "{what}");
        assert_eq!(p.steps.contains(&JailStep::Fork), !idle, "{what}");
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
            &["jail:sandboxd-0123456789abcdef:vmemoryuse:deny=67108864"],
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
            "a CPU weight has no rctl rule",
            |s| s.limits.cpu_weight = preferred(400),
            &[],
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
            &JailStep::SetRlimit(Rlimit::new(RlimitKind::Nofile, 64)),
            &JailStep::SetRlimit(Rlimit::new(RlimitKind::As, 1 << 30)),
            &JailStep::NoNewPrivs,
        ]
    );
    // Every mode carries them for every process it starts (the first one
    // and each Exec): an IDLE plan has no first process, but its Execs get
    // the same limits.
    let modes: &[(&str, Edit)] = &[
        ("process", |_| {}),
        ("init", |s| {
            s.mode = Mode::Init;
            s.process.argv.clear();
        }),
        ("idle", |s| {
            s.mode = Mode::Idle;
            s.process.argv.clear();
            s.process.env.clear();
        }),
    ];
    for (what, edit) in modes {
        let mut s = spec(*edit).spec().clone();
        s.limits.open_files = limit(64);
        s.limits.address_space_bytes = limit(1 << 30);
        let s = validate(s, &Policy::default()).expect("valid");
        let p = build(&s, &sandbox(), &host).expect("builds");
        assert_eq!(
            p.rlimits,
            [
                Rlimit::new(RlimitKind::Nofile, 64),
                Rlimit::new(RlimitKind::As, 1 << 30)
            ],
            "{what}"
        );
        let shown: Vec<Rlimit> = p
            .steps
            .iter()
            .filter_map(|s| match s {
                JailStep::SetRlimit(r) => Some(*r),
                _ => None,
            })
            .collect();
        let first_process = p.steps.contains(&JailStep::Fork);
        assert_eq!(shown.is_empty(), !first_process, "{what}");
        if first_process {
            assert_eq!(shown, p.rlimits, "{what}");
        }
    }
}

/// Found on FreeBSD 15.1: `memoryuse:deny` (resident memory) never refuses
/// an allocation, it only makes the VM daemon reclaim pages, so without
/// swap a payload held 200 MiB under a 64 MiB rule while the row said
/// ENFORCED. The memory row must name the rule the plan adds and say what
/// that rule measures; each rctl row names its rule's resource.
#[test]
fn rctl_rows_name_the_rule_they_add_and_what_it_measures() {
    let host = HostFacts::assumed();
    let cases: &[(Property, Edit, RctlResource, &[&str])] = &[
        (
            Property::MemoryLimit,
            |s| s.limits.memory_bytes = limit(64 << 20),
            RctlResource::Vmemoryuse,
            &["virtual", "ENOMEM", "reserve", "tmpfs", "never refuses"],
        ),
        (
            Property::PidsLimit,
            |s| s.limits.pids = limit(10),
            RctlResource::Maxproc,
            &["processes"],
        ),
        (
            Property::CpuLimit,
            |s| s.limits.cpu_millis = limit(500),
            RctlResource::Pcpu,
            &["percent of one CPU"],
        ),
    ];
    for (property, edit, resource, words) in cases {
        let p = built(*edit, &host);
        let got: Vec<RctlResource> = p.rctl_rules.iter().map(|r| r.resource).collect();
        assert_eq!(got, [*resource], "{property:?}");
        let r = row(&spec(*edit), &host, *property);
        assert_eq!(r.level, Level::Enforced, "{property:?}");
        assert_eq!(
            r.mechanism,
            format!("rctl {}:deny", resource.as_str()),
            "{property:?}"
        );
        for w in *words {
            assert!(
                r.caveats.contains(w),
                "{property:?}: {w:?} in {}",
                r.caveats
            );
        }
    }
    // memoryuse is never used as a limit: it does not refuse anything.
    let p = built(|s| s.limits.memory_bytes = limit(64 << 20), &host);
    assert!(
        !rules(&p).iter().any(|r| r.contains(":memoryuse:")),
        "{:?}",
        rules(&p)
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
            what: "cpu weight required",
            edit: |s| s.limits.cpu_weight = limit(400),
            host: HostFacts::assumed(),
            property: Property::CpuWeight,
            refused: true,
            degraded: false,
        },
        Case {
            what: "cpu weight preferred",
            edit: |s| s.limits.cpu_weight = preferred(400),
            host: HostFacts::assumed(),
            property: Property::CpuWeight,
            refused: false,
            degraded: true,
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
            matches!(&built, Err(BuildError::Refused { .. })),
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
                    "{} {}{} {}{}",
                    m.fstype.as_str(),
                    if m.update { "update " } else { "" },
                    m.target,
                    m.options.join(","),
                    m.chmod.map(|c| format!(" chmod {c:o}")).unwrap_or_default()
                )
            })
            .collect()
    };
    let cases: &[(&str, Edit, &[&str])] = &[
        (
            "host image",
            |_| {},
            &[
                "tmpfs / size=1g chmod 755",
                "nullfs /bin ro",
                "nullfs /sbin ro",
                "nullfs /lib ro",
                "nullfs /libexec ro",
                "nullfs /usr ro",
                "nullfs /etc ro",
                "nullfs /usr/local/bin/sandboxd ro,nosuid,noexec",
                "tmpfs /usr/local/etc/sandboxd ro,nosuid,noexec,mode=000,size=4k,inodes=1",
                "devfs /dev ruleset=4",
                "tmpfs /tmp mode=1777,size=256m,inodes=32768,nosuid",
            ],
        ),
        (
            "host image read-only",
            |s| s.readonly_rootfs = true,
            &[
                "tmpfs / size=1g chmod 755",
                "nullfs /bin ro",
                "nullfs /sbin ro",
                "nullfs /lib ro",
                "nullfs /libexec ro",
                "nullfs /usr ro",
                "nullfs /etc ro",
                "nullfs /usr/local/bin/sandboxd ro,nosuid,noexec",
                "tmpfs /usr/local/etc/sandboxd ro,nosuid,noexec,mode=000,size=4k,inodes=1",
                "devfs /dev ruleset=4",
                "tmpfs /tmp mode=1777,size=256m,inodes=32768,nosuid",
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
                "tmpfs /tmp mode=1777,size=256m,inodes=32768,nosuid",
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
                "tmpfs /tmp mode=1777,size=256m,inodes=32768,nosuid",
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
        Err(BuildError::Plan(PlanError::NullfsMountTarget {
            index: 0,
            ..
        }))
    ));
    let p = plan(&s, &sandbox(), &host);
    assert!(
        p.refusals[0].starts_with("spec.mounts[0].target"),
        "{:?}",
        p.refusals
    );
    assert_eq!(p.native, NativePlan::empty(BackendKind::Freebsd));
}

/// Found on FreeBSD 15.1: a tmpfs mounted with `mode` cannot be updated to
/// read-only, because the kernel merges the mount's earlier options into
/// the update and tmpfs refuses `mode` there ("mount option <mode> is
/// unknown"). The host image's root therefore gets no tmpfs option at all
/// and its mode from `fchmod` after mounting, before the update.
#[test]
fn a_read_only_host_root_is_a_tmpfs_without_mode_then_chmod() {
    let host = HostFacts::assumed();
    for ro in [false, true] {
        let p = build(
            &spec(if ro {
                |s: &mut SandboxSpec| s.readonly_rootfs = true
            } else {
                |_: &mut SandboxSpec| {}
            }),
            &sandbox(),
            &host,
        )
        .expect("plan builds");
        let roots: Vec<&JailMount> = p
            .mounts
            .iter()
            .filter(|m| m.target == "/" && m.fstype == Fstype::Tmpfs)
            .collect();
        assert_eq!(roots.len(), if ro { 2 } else { 1 }, "ro={ro}");
        for m in &roots {
            assert!(
                !m.options.iter().any(|o| o.starts_with("mode")),
                "ro={ro}: {m:?}"
            );
        }
        // The first mount sets the mode; the update changes nothing but ro.
        assert_eq!(roots[0].chmod, Some(0o755), "ro={ro}");
        if ro {
            assert!(roots[1].update);
            assert_eq!(roots[1].options, ["ro"]);
            assert_eq!(roots[1].chmod, None);
        }
    }
    // /tmp is never updated: its tmpfs `mode` stays an option.
    let p = built(|s| s.readonly_rootfs = true, &host);
    let tmp = p.mounts.iter().find(|m| m.target == "/tmp").expect("/tmp");
    assert_eq!(
        tmp.options,
        ["mode=1777", "size=256m", "inodes=32768", "nosuid"]
    );
    assert_eq!(tmp.chmod, None);
}

#[test]
fn the_sandboxd_binary_is_masked_where_the_host_image_shows_it() {
    use std::path::Path;
    // Which path: only below a directory the host image mounts.
    for (exe, want) in [
        ("/usr/local/bin/sandboxd", Some("/usr/local/bin/sandboxd")),
        ("/usr/sbin/sandboxd", Some("/usr/sbin/sandboxd")),
        ("/sbin/sandboxd", Some("/sbin/sandboxd")),
        ("/opt/sandboxd/bin/sandboxd", None),
        ("/home/ci/target/debug/sandboxd", None),
        ("/usrx/sandboxd", None),
        ("/usr", None),
        ("usr/local/bin/sandboxd", None),
        ("/usr/local/../../opt/sandboxd", None),
        ("/usr/./local/sandboxd", Some("/usr/local/sandboxd")),
    ] {
        assert_eq!(own_binary_mask(Path::new(exe)).as_deref(), want, "{exe}");
    }
    let at = |exe: &str, release: &str| HostFacts {
        own_binary: Some(exe.into()),
        os_release: release.to_owned(),
        ..HostFacts::assumed()
    };
    let masks = |p: &JailPlan| -> Vec<(String, Vec<String>)> {
        p.mounts
            .iter()
            .filter(|m| m.source == MountSource::Masked)
            .map(|m| (m.target.clone(), m.options.clone()))
            .collect()
    };
    let opts: Vec<String> = MASK_OPTIONS.iter().map(|o| (*o).to_owned()).collect();
    let host = at("/usr/local/bin/sandboxd", "14.1-RELEASE");
    let p = built(|_| {}, &host);
    assert_eq!(
        masks(&p),
        [("/usr/local/bin/sandboxd".to_owned(), opts.clone())]
    );
    // After the mount that shows it, before any client mount.
    let i = p
        .mounts
        .iter()
        .position(|m| m.source == MountSource::Masked)
        .expect("mask");
    assert_eq!(p.mounts[i - 1].target, "/etc");
    assert_eq!(p.mask_path(), sandbox().dir.join("masked"));
    let r = row(&spec(|_| {}), &host, Property::Filesystem);
    assert!(!r.caveats.contains("NOT masked"), "{}", r.caveats);
    // Not shown, not masked: other images, or a binary elsewhere.
    assert!(masks(&built(|s| s.image = "base14".into(), &host)).is_empty());
    assert!(masks(&built(|_| {}, &at("/opt/sb/sandboxd", "14.1-RELEASE"))).is_empty());
    let unknown = HostFacts {
        own_binary: None,
        ..HostFacts::assumed()
    };
    assert!(masks(&built(|_| {}, &unknown)).is_empty());
    // Before 13.2 a file cannot be mounted: no mask, and the row says so.
    let old = at("/usr/local/bin/sandboxd", "13.1-RELEASE");
    assert!(masks(&built(|_| {}, &old)).is_empty());
    let r = row(&spec(|_| {}), &old, Property::Filesystem);
    assert!(
        r.caveats
            .contains("the sandboxd binary /usr/local/bin/sandboxd is NOT masked")
            && r.caveats.contains("13.1-RELEASE"),
        "{}",
        r.caveats
    );
    let r = row(
        &spec(|s| s.image = "base14".into()),
        &old,
        Property::Filesystem,
    );
    assert!(!r.caveats.contains("NOT masked"), "{}", r.caveats);
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
        format!("/var/db/sandboxd/sandboxes/{ID}/root/usr/local/bin/sandboxd")
    );
    assert_eq!(
        mounts[7].source,
        format!("/var/db/sandboxd/sandboxes/{ID}/masked")
    );
    assert_eq!(
        mounts[8].target,
        format!("/var/db/sandboxd/sandboxes/{ID}/root/usr/local/etc/sandboxd")
    );
    assert_eq!(
        mounts[9].target,
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

fn ip(a: &str) -> IpAddr {
    a.parse().expect("address")
}

fn leased(addresses: &[&str]) -> SandboxPaths {
    SandboxPaths {
        lease: NetLease {
            addresses: addresses.iter().map(|a| ip(a)).collect(),
            ..NetLease::default()
        },
        ..sandbox()
    }
}

fn net_params(p: &JailPlan) -> Vec<String> {
    params(p)
        .into_iter()
        .filter(|p| p.starts_with("ip4") || p.starts_with("ip6") || p.starts_with("vnet"))
        .collect()
}

fn forward(protocol: Protocol, host_port: u32, sandbox_port: u32) -> PortForward {
    PortForward {
        protocol,
        host_port,
        sandbox_port,
    }
}

#[test]
fn restricted_addresses_come_from_the_lease() {
    // (spec addresses, lease addresses, jail parameters, aliases on lo1)
    type Strs = &'static [&'static str];
    let cases: &[(Strs, Strs, Strs, Strs)] = &[
        (
            &[],
            &["203.0.113.2"],
            &["ip4.addr=203.0.113.2", "ip6=disable"],
            &["lo1 inet 203.0.113.2/32 alias"],
        ),
        (
            &[],
            &["2001:db8::2"],
            &["ip4=disable", "ip6.addr=2001:db8::2"],
            &["lo1 inet6 2001:db8::2/128 alias"],
        ),
        (
            &[],
            &["2001:db8::2", "203.0.113.2", "203.0.113.3"],
            &["ip4.addr=203.0.113.2,203.0.113.3", "ip6.addr=2001:db8::2"],
            &[
                "lo1 inet6 2001:db8::2/128 alias",
                "lo1 inet 203.0.113.2/32 alias",
                "lo1 inet 203.0.113.3/32 alias",
            ],
        ),
        // The lease wins over what the spec named.
        (
            &["192.0.2.10"],
            &["203.0.113.5"],
            &["ip4.addr=203.0.113.5", "ip6=disable"],
            &["lo1 inet 203.0.113.5/32 alias"],
        ),
        // Nothing leased (PlanSandbox without a pool): the spec's.
        (
            &["192.0.2.10"],
            &[],
            &["ip4.addr=192.0.2.10", "ip6=disable"],
            &["lo1 inet 192.0.2.10/32 alias"],
        ),
        // Neither: both families disabled, nothing to add.
        (&[], &[], &["ip4=disable", "ip6=disable"], &[]),
    ];
    let host = HostFacts::assumed();
    for (spec_addrs, lease, want_params, want_aliases) in cases {
        let mut s = SandboxSpec {
            process: ProcessSpec {
                argv: vec!["/bin/true".into()],
                ..Default::default()
            },
            network: restricted(Requirement::Required, spec_addrs),
            ..Default::default()
        };
        s.network.mode = NetworkMode::Restricted;
        let s = validate(s, &Policy::default()).expect("valid");
        let p = build(&s, &leased(lease), &host).expect("plan builds");
        assert_eq!(&net_params(&p), want_params, "{lease:?}");
        let aliases: Vec<String> = p
            .host_net
            .aliases
            .iter()
            .map(|a| {
                format!(
                    "{} {} {} alias",
                    a.interface,
                    if a.address.is_ipv4() { "inet" } else { "inet6" },
                    a.with_prefix()
                )
            })
            .collect();
        assert_eq!(&aliases, want_aliases, "{lease:?}");
        assert_eq!(
            p.steps.contains(&JailStep::AddAliases),
            !want_aliases.is_empty(),
            "{lease:?}"
        );
        // The display form shows the same ifconfig lines.
        let shown = plan(&s, &leased(lease), &host);
        let NativePlan::Jail { steps, .. } = &shown.native else {
            panic!("not a jail plan");
        };
        let ifconfig = steps.iter().find(|s| s.op == "ifconfig");
        assert_eq!(
            ifconfig.map(|s| s.args.clone()).unwrap_or_default(),
            want_aliases
                .iter()
                .map(|a| (*a).to_owned())
                .collect::<Vec<_>>(),
            "{lease:?}"
        );
        assert!(ifconfig.is_none_or(|s| s.why.starts_with("daemon: ")));
    }
}

#[test]
fn other_modes_have_no_host_side_network() {
    let cases: &[(&str, Edit)] = &[
        ("unspecified", |_| {}),
        ("none", |s| s.network.mode = NetworkMode::None),
        ("loopback", |s| s.network.mode = NetworkMode::Loopback),
        ("host", |s| s.network.mode = NetworkMode::Host),
    ];
    for (what, edit) in cases {
        // Even a (stray) lease gives these modes no aliases or pf rules.
        let p = build(
            &spec(*edit),
            &leased(&["203.0.113.2"]),
            &HostFacts::assumed(),
        )
        .expect("plan builds");
        assert_eq!(
            p.host_net,
            HostNet {
                pf_anchor: format!("sandboxd/{ID}"),
                ..HostNet::default()
            },
            "{what}"
        );
        assert!(
            !p.steps.iter().any(|s| s.actor() == Actor::Daemon),
            "{what}"
        );
    }
}

#[test]
fn without_an_alias_interface_addresses_must_be_present() {
    let host = HostFacts {
        alias_interface: None,
        ..HostFacts::assumed()
    };
    let s = spec(|s| s.network = restricted(Requirement::Required, &[]));
    let p = build(&s, &leased(&["203.0.113.2", "2001:db8::2"]), &host).expect("plan builds");
    assert!(p.host_net.aliases.is_empty());
    assert_eq!(p.host_net.present, [ip("203.0.113.2"), ip("2001:db8::2")]);
    assert_eq!(p.steps[0], JailStep::CheckAddresses);
    assert!(!p.steps.contains(&JailStep::AddAliases));
    let r = row(&s, &host, Property::Network);
    assert!(
        r.caveats
            .contains("must already be configured on a host interface"),
        "{}",
        r.caveats
    );
}

#[test]
fn nat_and_forwards_are_pf_rules_in_the_sandbox_anchor() {
    struct Case {
        what: &'static str,
        lease: &'static [&'static str],
        nat: bool,
        forwards: Vec<PortForward>,
        rules: &'static [&'static str],
    }
    let cases = [
        Case {
            what: "nothing asked",
            lease: &["203.0.113.2"],
            nat: false,
            forwards: vec![],
            rules: &[],
        },
        Case {
            what: "nat, dual stack",
            lease: &["203.0.113.2", "2001:db8::2"],
            nat: true,
            forwards: vec![],
            rules: &[
                "nat on em0 inet from 203.0.113.2 to any -> (em0)",
                "nat on em0 inet6 from 2001:db8::2 to any -> (em0)",
            ],
        },
        Case {
            what: "forwards go to the first address",
            lease: &["203.0.113.2", "203.0.113.3"],
            nat: false,
            forwards: vec![
                forward(Protocol::Tcp, 8080, 80),
                forward(Protocol::Udp, 5353, 53),
            ],
            rules: &[
                "rdr pass on em0 inet proto tcp from any to (em0) port 8080 -> 203.0.113.2 port 80",
                "rdr pass on em0 inet proto udp from any to (em0) port 5353 -> 203.0.113.2 port 53",
            ],
        },
        Case {
            what: "both, v6 first",
            lease: &["2001:db8::2"],
            nat: true,
            forwards: vec![forward(Protocol::Tcp, 8443, 443)],
            rules: &[
                "nat on em0 inet6 from 2001:db8::2 to any -> (em0)",
                "rdr pass on em0 inet6 proto tcp from any to (em0) port 8443 -> 2001:db8::2 port 443",
            ],
        },
    ];
    let host = HostFacts::assumed();
    for c in cases {
        let mut s = SandboxSpec {
            process: ProcessSpec {
                argv: vec!["/bin/true".into()],
                ..Default::default()
            },
            network: restricted(Requirement::Unspecified, &[]),
            ..Default::default()
        };
        s.network.outbound_nat = c.nat;
        s.network.port_forwards = c.forwards.clone();
        let s = validate(s, &Policy::default()).expect("valid");
        let p = build(&s, &leased(c.lease), &host).expect("plan builds");
        assert_eq!(p.host_net.pf_anchor, format!("sandboxd/{ID}"), "{}", c.what);
        assert_eq!(p.host_net.pf_rules, c.rules, "{}", c.what);
        assert_eq!(
            p.steps.contains(&JailStep::LoadPfRules),
            !c.rules.is_empty(),
            "{}",
            c.what
        );
        let shown = plan(&s, &leased(c.lease), &host);
        let NativePlan::Jail { steps, .. } = &shown.native else {
            panic!("not a jail plan");
        };
        if let Some(pfctl) = steps.iter().find(|s| s.op == "pfctl") {
            assert_eq!(pfctl.args[0], format!("-a sandboxd/{ID} -f -"));
            assert_eq!(&pfctl.args[1..], c.rules, "{}", c.what);
        }
        let r = row(&s, &host, Property::Network);
        assert_eq!(r.level, Level::Enforced, "{}", c.what);
        assert!(!r.degraded, "{}", c.what);
    }
}

#[test]
fn nat_and_forwards_without_pf_are_refused_or_degraded() {
    let no_pf = HostFacts {
        pf_anchors: false,
        ..HostFacts::assumed()
    };
    let no_route = HostFacts {
        egress_interface: None,
        ..HostFacts::assumed()
    };
    // (what, requirement, nat, forward, host, refused, degraded)
    let cases = [
        (
            "nat unspecified",
            Requirement::Unspecified,
            true,
            false,
            &no_pf,
            true,
            false,
        ),
        (
            "nat required",
            Requirement::Required,
            true,
            false,
            &no_pf,
            true,
            false,
        ),
        (
            "forward required",
            Requirement::Required,
            false,
            true,
            &no_pf,
            true,
            false,
        ),
        (
            "forward preferred",
            Requirement::Preferred,
            false,
            true,
            &no_pf,
            false,
            true,
        ),
        (
            "nat preferred",
            Requirement::Preferred,
            true,
            false,
            &no_pf,
            false,
            true,
        ),
        (
            "no default route",
            Requirement::Required,
            true,
            false,
            &no_route,
            true,
            false,
        ),
        (
            "plain restricted",
            Requirement::Required,
            false,
            false,
            &no_pf,
            false,
            false,
        ),
    ];
    for (what, requirement, nat, fwd, host, refused, degraded) in cases {
        let mut s = SandboxSpec {
            process: ProcessSpec {
                argv: vec!["/bin/true".into()],
                ..Default::default()
            },
            network: restricted(requirement, &[]),
            ..Default::default()
        };
        s.network.outbound_nat = nat;
        if fwd {
            s.network.port_forwards = vec![forward(Protocol::Tcp, 8080, 80)];
        }
        let s = validate(s, &Policy::default()).expect("valid");
        let sb = leased(&["203.0.113.2"]);
        let p = plan(&s, &sb, host);
        assert_eq!(
            p.refusals.iter().any(|r| r.starts_with("network:")),
            refused,
            "{what}: {:?}",
            p.refusals
        );
        let r = p.report.get(Property::Network).expect("row");
        assert_eq!(r.degraded, degraded, "{what}");
        if nat || fwd {
            assert_eq!(r.level, Level::BestEffort, "{what}");
            assert!(r.caveats.contains("NOT applied"), "{what}: {}", r.caveats);
        }
        match build(&s, &sb, host) {
            Err(BuildError::Refused { refusals: r, .. }) => assert!(refused, "{what}: {r:?}"),
            Err(e) => panic!("{what}: {e}"),
            Ok(b) => {
                assert!(!refused, "{what}");
                // Degraded: the addresses hold, no pf rule is half-applied.
                assert!(b.host_net.pf_rules.is_empty(), "{what}");
                assert!(!b.steps.contains(&JailStep::LoadPfRules), "{what}");
                assert_eq!(net_params(&b)[0], "ip4.addr=203.0.113.2", "{what}");
            }
        }
    }
    let p = plan(
        &spec(|s| {
            s.network = restricted(Requirement::Required, &[]);
            s.network.outbound_nat = true;
        }),
        &leased(&["203.0.113.2"]),
        &no_pf,
    );
    assert!(
        p.refusals[0].contains("nat-anchor \"sandboxd/*\""),
        "{:?}",
        p.refusals
    );
}

#[test]
fn dns_is_a_generated_resolv_conf_mounted_over_the_images() {
    let host = HostFacts::assumed();
    let cases: &[(&str, Edit, Option<&str>)] = &[
        ("no dns", |_| {}, None),
        (
            "servers only",
            |s| s.network.dns_servers = vec!["192.0.2.53".into(), "2001:db8::53".into()],
            Some("nameserver 192.0.2.53\nnameserver 2001:db8::53\n"),
        ),
        (
            "servers and search, read-only image",
            |s| {
                s.image = "base14".into();
                s.readonly_rootfs = true;
                s.network = restricted(Requirement::Required, &["192.0.2.10"]);
                s.network.dns_servers = vec!["192.0.2.53".into()];
                s.network.dns_search = vec!["example.org".into(), "corp.example".into()];
            },
            Some("nameserver 192.0.2.53\nsearch example.org corp.example\n"),
        ),
    ];
    for (what, edit, want) in cases {
        let p = built(*edit, &host);
        let want = want.map(|w| format!("# generated by sandboxd for sandbox {ID}\n{w}"));
        assert_eq!(p.resolv_conf, want, "{what}");
        let mount = p
            .mounts
            .iter()
            .position(|m| m.source == MountSource::ResolvConf);
        assert_eq!(mount.is_some(), want.is_some(), "{what}");
        if let Some(i) = mount {
            let m = &p.mounts[i];
            assert_eq!(m.target, "/etc/resolv.conf", "{what}");
            assert_eq!(m.options, ["ro", "nosuid"], "{what}");
            // After everything that could cover /etc, before the root
            // turns read-only.
            assert!(
                p.mounts[i + 1..].iter().all(|m| m.update),
                "{what}: {:?}",
                p.mounts
            );
            let w = p
                .steps
                .iter()
                .position(|s| *s == JailStep::WriteResolvConf)
                .expect("write step");
            let mounts = p
                .steps
                .iter()
                .position(|s| *s == JailStep::Mounts)
                .expect("mounts step");
            assert!(w < mounts, "{what}");
            assert_eq!(
                p.resolv_conf_path(),
                PathBuf::from("/var/db/sandboxd/sandboxes")
                    .join(ID)
                    .join("resolv.conf")
            );
        }
    }
    // Host image: the file goes over the host /etc's nullfs view, then root
    // turns read-only.
    let p = built(
        |s| {
            s.readonly_rootfs = true;
            s.network.dns_servers = vec!["192.0.2.53".into()];
        },
        &host,
    );
    let n = p.mounts.len();
    assert_eq!(p.mounts[n - 2].source, MountSource::ResolvConf);
    assert!(p.mounts[n - 1].update);

    // A kernel whose nullfs cannot mount a file: a clear plan error.
    let old = HostFacts {
        os_release: "13.1-RELEASE".into(),
        ..HostFacts::assumed()
    };
    let s = spec(|s| s.network.dns_servers = vec!["192.0.2.53".into()]);
    let e = build(&s, &sandbox(), &old).expect_err("refused");
    assert!(
        matches!(e, BuildError::Plan(PlanError::DnsUnsupported { .. })),
        "{e}"
    );
    assert!(e.to_string().starts_with("spec.network.dns_servers"), "{e}");
    let p = plan(&s, &sandbox(), &old);
    assert!(p.refusals[0].contains("13.2 or later"), "{:?}", p.refusals);
    for (release, ok) in [
        ("13.2-RELEASE", true),
        ("14.0-RELEASE-p3", true),
        ("13.1-STABLE", false),
        ("12.4-RELEASE", false),
    ] {
        let h = HostFacts {
            os_release: release.into(),
            ..HostFacts::assumed()
        };
        assert_eq!(h.has_nullfs_file_mounts(), ok, "{release}");
    }
}

#[test]
fn network_rows_say_what_is_enforced_and_how() {
    let host = HostFacts::assumed();
    let cases: &[(&str, Edit, &str, &[&str])] = &[
        (
            "none",
            |s| s.network.mode = NetworkMode::None,
            "ip4=disable ip6=disable",
            &["no IPv4 or IPv6 sockets"],
        ),
        (
            "loopback",
            |s| s.network.mode = NetworkMode::Loopback,
            "vnet=new with only lo0",
            // The plan's lo0 step gives ::1 too (seen on FreeBSD 15.1).
            &["private network stack", "127.0.0.1 and ::1"],
        ),
        (
            "restricted",
            |s| {
                s.network = restricted(Requirement::Required, &["192.0.2.10"]);
                s.network.outbound_nat = true;
                s.network.port_forwards = vec![forward(Protocol::Tcp, 8080, 80)];
            },
            "ip4.addr/ip6.addr",
            &[
                "a jail shares the host stack",
                "127.0.0.1 inside maps to the jail's first IPv4 address",
                // Not a private loopback, unlike Linux: say so.
                "a server bound to 127.0.0.1 or 0.0.0.0 listens on that address",
                "raw sockets off",
                "alias on lo1",
                "pf nat on em0",
                "rdr pass on em0",
            ],
        ),
        (
            "host",
            |s| s.network.mode = NetworkMode::Host,
            "ip4=inherit ip6=inherit",
            &["daemon's config"],
        ),
    ];
    for (what, edit, mechanism, caveats) in cases {
        let r = row(&spec(*edit), &host, Property::Network);
        assert!(!r.caveats.contains("no ::1"), "{what}: {}", r.caveats);
        assert!(
            r.mechanism.starts_with(mechanism),
            "{what}: {}",
            r.mechanism
        );
        for c in *caveats {
            assert!(r.caveats.contains(c), "{what}: {c:?} not in {}", r.caveats);
        }
    }
    // The matrix row names every mode and whether pf can do NAT here.
    let m = capabilities(&host)
        .into_iter()
        .find(|r| r.property == Property::Network)
        .expect("row");
    assert!(m.caveats.contains("sandboxd/<id>"), "{}", m.caveats);
    let no_pf = HostFacts {
        pf_anchors: false,
        ..HostFacts::assumed()
    };
    let m = capabilities(&no_pf)
        .into_iter()
        .find(|r| r.property == Property::Network)
        .expect("row");
    assert!(m.caveats.contains("no outbound NAT"), "{}", m.caveats);
    // LOOPBACK without VIMAGE is the host's stack: its alias is reachable
    // from the host and from other jails on that stack, not private.
    let no_vimage = HostFacts {
        vimage: false,
        ..HostFacts::assumed()
    };
    let r = row(
        &spec(|s| s.network.mode = NetworkMode::Loopback),
        &no_vimage,
        Property::Network,
    );
    assert_eq!(r.level, Level::Emulated);
    for c in ["the host can reach it", "other jails", "no IPv6"] {
        assert!(r.caveats.contains(c), "{c:?} not in {}", r.caveats);
    }
    let m = capabilities(&no_vimage)
        .into_iter()
        .find(|r| r.property == Property::Network)
        .expect("row");
    assert!(m.caveats.contains("other jails"), "{}", m.caveats);
}

#[test]
fn the_rendered_steps_are_the_steps_that_run() {
    use crate::plan::{Executor, executor, steps_for};
    let no_vimage = HostFacts {
        vimage: false,
        ..HostFacts::assumed()
    };
    let edits: &[(&str, Edit, &HostFacts)] = &[
        ("process", |_| {}, &HostFacts::assumed()),
        (
            "idle",
            |s| {
                s.mode = Mode::Idle;
                s.process.argv.clear();
                s.process.env.clear();
            },
            &HostFacts::assumed(),
        ),
        ("init", |s| s.mode = Mode::Init, &HostFacts::assumed()),
        (
            "loopback vnet",
            |s| s.network.mode = NetworkMode::Loopback,
            &HostFacts::assumed(),
        ),
        (
            "loopback alias",
            |s| s.network.mode = NetworkMode::Loopback,
            &no_vimage,
        ),
        (
            "restricted with dns and limits",
            |s| {
                s.network = restricted(Requirement::Required, &["192.0.2.1"]);
                s.network.outbound_nat = true;
                s.network.dns_servers = vec!["192.0.2.53".into()];
                s.limits.memory_bytes = limit(64 << 20);
                s.limits.open_files = limit(64);
            },
            &HostFacts::assumed(),
        ),
    ];
    for (what, edit, host) in edits {
        let p = built(*edit, host);
        let NativePlan::Jail { steps, params, .. } = render::native(&p) else {
            panic!("not a jail plan");
        };
        // One rendered step per plan step, in order, each naming its actor.
        assert_eq!(steps.len(), p.steps.len(), "{what}");
        for (shown, step) in steps.iter().zip(&p.steps) {
            let actor = match step.actor() {
                Actor::Daemon => "daemon:",
                Actor::Supervisor => "supervisor:",
                Actor::Child => "child:",
            };
            assert!(shown.why.starts_with(actor), "{what}: {shown:?}");
            // Each step has one runner, consistent with the actor shown.
            let ok = match executor(step) {
                Executor::Prepare => step.actor() == Actor::Daemon,
                Executor::Setup => step.actor() == Actor::Supervisor,
                Executor::Enter => step.actor() == Actor::Child,
                Executor::Generic => step.actor() != Actor::Daemon,
            };
            assert!(ok, "{what}: {step:?} runs as {:?}", executor(step));
            // Nothing the runtime does not do: no JAIL_UPDATE step.
            assert!(
                !shown.args.iter().any(|a| a.contains("JAIL_UPDATE")),
                "{what}: {shown:?}"
            );
        }
        // The runners together cover every step exactly once.
        let total: usize = [
            Executor::Prepare,
            Executor::Setup,
            Executor::Enter,
            Executor::Generic,
        ]
        .into_iter()
        .map(|e| steps_for(&p.steps, e).count())
        .sum();
        assert_eq!(total, p.steps.len(), "{what}");
        // Every jail persists until teardown; the kernel gets exactly this.
        assert!(
            params.contains(&("persist".to_owned(), "1".to_owned())),
            "{what}: {params:?}"
        );
        let iov = crate::kernel_args::jail_iovecs(&p.params).expect("encodes");
        assert_eq!(iov.len(), p.params.len(), "{what}");
    }
}

/// The base-system files the backend shells out to or needs (FreeBSD 15.1
/// was first run on a host without ifconfig, route and pfctl): caps names
/// each one missing, and a spec that needs one is refused up front, naming
/// it, instead of failing midway through a create.
#[test]
fn missing_base_files_are_named_by_caps_and_refuse_what_needs_them() {
    let without = |missing: &[&str]| HostFacts {
        missing_base_files: missing.iter().map(|m| (*m).to_owned()).collect(),
        ..HostFacts::assumed()
    };
    // The matrix's NETWORK row names every missing file and what needs it.
    let caps_row = |host: &HostFacts| {
        capabilities(host)
            .into_iter()
            .find(|r| r.property == Property::Network)
            .expect("network row")
    };
    assert!(
        !caps_row(&HostFacts::assumed()).caveats.contains("missing"),
        "{}",
        caps_row(&HostFacts::assumed()).caveats
    );
    for f in BASE_FILES {
        let r = caps_row(&without(&[f]));
        assert!(
            r.caveats.contains(&format!("{f} is missing")),
            "{f}: {}",
            r.caveats
        );
    }

    struct Case {
        what: &'static str,
        missing: &'static [&'static str],
        vimage: bool,
        edit: Edit,
        /// Some(text): refused, naming it; None: planned.
        refused: Option<&'static str>,
        /// The network row's level (when planned).
        level: Level,
        pf_rules: usize,
    }
    let nat_and_forward: Edit = |s| {
        s.network = restricted(Requirement::Required, &["203.0.113.2"]);
        s.network.outbound_nat = true;
        s.network.port_forwards = vec![forward(Protocol::Tcp, 8080, 80)];
    };
    let nat_preferred: Edit = |s| {
        s.network = restricted(Requirement::Preferred, &["203.0.113.2"]);
        s.network.outbound_nat = true;
    };
    let cases = [
        Case {
            what: "all present",
            missing: &[],
            vimage: true,
            edit: nat_and_forward,
            refused: None,
            level: Level::Enforced,
            pf_rules: 2,
        },
        Case {
            what: "no ifconfig: RESTRICTED addresses cannot be added",
            missing: &[IFCONFIG],
            vimage: true,
            edit: |s| s.network = restricted(Requirement::Preferred, &["203.0.113.2"]),
            refused: Some("/sbin/ifconfig is missing"),
            level: Level::Enforced,
            pf_rules: 0,
        },
        Case {
            what: "no ifconfig: LOOPBACK without VIMAGE needs the lo0 alias",
            missing: &[IFCONFIG],
            vimage: false,
            edit: |s| s.network.mode = NetworkMode::Loopback,
            refused: Some("/sbin/ifconfig is missing"),
            level: Level::Emulated,
            pf_rules: 0,
        },
        Case {
            what: "no ifconfig: a vnet jail's lo0 is set up without it",
            missing: &[IFCONFIG],
            vimage: true,
            edit: |s| s.network.mode = NetworkMode::Loopback,
            refused: None,
            level: Level::Enforced,
            pf_rules: 0,
        },
        Case {
            what: "no pfctl: NAT REQUIRED is refused",
            missing: &[PFCTL],
            vimage: true,
            edit: nat_and_forward,
            refused: Some("/sbin/pfctl is missing"),
            level: Level::BestEffort,
            pf_rules: 0,
        },
        Case {
            what: "no pfctl: NAT PREFERRED degrades",
            missing: &[PFCTL],
            vimage: true,
            edit: nat_preferred,
            refused: None,
            level: Level::BestEffort,
            pf_rules: 0,
        },
        Case {
            what: "no route: no egress interface",
            missing: &[ROUTE],
            vimage: true,
            edit: nat_and_forward,
            refused: Some("/sbin/route is missing"),
            level: Level::BestEffort,
            pf_rules: 0,
        },
        Case {
            what: "no protocols: forwards cannot be parsed",
            missing: &[PROTOCOLS],
            vimage: true,
            edit: nat_and_forward,
            refused: Some("/etc/protocols is missing"),
            level: Level::BestEffort,
            pf_rules: 0,
        },
        Case {
            what: "no protocols: NAT alone needs no protocol name",
            missing: &[PROTOCOLS],
            vimage: true,
            edit: nat_preferred,
            refused: None,
            level: Level::Enforced,
            pf_rules: 1,
        },
    ];
    for c in cases {
        let host = HostFacts {
            vimage: c.vimage,
            ..without(c.missing)
        };
        let s = spec(c.edit);
        let shown = plan(&s, &sandbox(), &host);
        match c.refused {
            Some(text) => {
                assert!(
                    shown.refusals.iter().any(|r| r.contains(text)),
                    "{}: {:?}",
                    c.what,
                    shown.refusals
                );
                assert!(build(&s, &sandbox(), &host).is_err(), "{}", c.what);
            }
            None => {
                assert!(
                    shown.refusals.is_empty(),
                    "{}: {:?}",
                    c.what,
                    shown.refusals
                );
                let p = build(&s, &sandbox(), &host).expect("plan builds");
                assert_eq!(p.host_net.pf_rules.len(), c.pf_rules, "{}", c.what);
                let r = row(&s, &host, Property::Network);
                assert_eq!(r.level, c.level, "{}: {}", c.what, r.caveats);
                for m in c.missing {
                    if r.level != Level::Enforced {
                        assert!(r.caveats.contains(m), "{}: {}", c.what, r.caveats);
                    }
                }
            }
        }
    }
}

#[test]
fn uid_0_with_a_read_write_mount_is_refused() {
    use sandboxd_core::spec::MountSpec;
    // (case, edit, refused)
    let cases: [(&str, Edit, bool); 3] = [
        (
            "rw, uid 0",
            |s| {
                s.process.user.uid = Some(0);
                s.mounts = vec![MountSpec {
                    source: "/srv/out".into(),
                    target: "/out".into(),
                    read_only: false,
                }];
            },
            true,
        ),
        (
            "ro, uid 0",
            |s| {
                s.process.user.uid = Some(0);
                s.mounts = vec![MountSpec {
                    source: "/srv/out".into(),
                    target: "/out".into(),
                    read_only: true,
                }];
            },
            false,
        ),
        (
            "rw, default uid",
            |s| {
                s.mounts = vec![MountSpec {
                    source: "/srv/out".into(),
                    target: "/out".into(),
                    read_only: false,
                }];
            },
            false,
        ),
    ];
    for (case, edit, refused) in cases {
        let got = build(&spec(edit), &sandbox(), &HostFacts::assumed());
        assert_eq!(
            matches!(&got, Err(BuildError::Plan(PlanError::RootWithWritableBind(why))) if why.contains("spec.mounts[0]")),
            refused,
            "{case}: {got:?}"
        );
    }
}

#[test]
fn main_argv_and_rlimits_come_from_the_plan() {
    let init = built(
        |s| {
            s.mode = Mode::Init;
            s.process.argv = vec!["/sbin/init".into()];
            s.limits.open_files = Some(Limit {
                value: 64,
                requirement: Requirement::Unspecified,
            });
            s.limits.address_space_bytes = Some(Limit {
                value: 1 << 30,
                requirement: Requirement::Unspecified,
            });
        },
        &HostFacts::assumed(),
    );
    assert_eq!(
        main_argv(&init.steps),
        Some(&["/bin/sh".to_owned(), "/etc/rc".to_owned()][..])
    );
    assert_eq!(
        init.rlimits,
        vec![
            Rlimit::new(RlimitKind::Nofile, 64),
            Rlimit::new(RlimitKind::As, 1 << 30)
        ]
    );
    let process = built(|_| {}, &HostFacts::assumed());
    assert_eq!(
        main_argv(&process.steps),
        Some(&["/bin/true".to_owned()][..])
    );
    assert!(process.rlimits.is_empty());
    // Found on FreeBSD 15.1: IDLE sandboxes ran every Exec without these,
    // because the limits were taken from the first process's steps, which
    // an IDLE plan does not have.
    let idle = built(
        |s| {
            s.mode = Mode::Idle;
            s.process.argv.clear();
            s.limits.open_files = Some(Limit {
                value: 64,
                requirement: Requirement::Unspecified,
            });
            s.limits.address_space_bytes = Some(Limit {
                value: 64 << 20,
                requirement: Requirement::Unspecified,
            });
        },
        &HostFacts::assumed(),
    );
    assert_eq!(main_argv(&idle.steps), None);
    assert_eq!(
        idle.rlimits,
        vec![
            Rlimit::new(RlimitKind::Nofile, 64),
            Rlimit::new(RlimitKind::As, 64 << 20)
        ]
    );
}

#[test]
fn disk_limit_and_tmpfs_sizes() {
    let host = HostFacts::assumed();
    let options = |p: &JailPlan, target: &str| -> Vec<String> {
        p.mounts
            .iter()
            .find(|m| m.target == target && m.fstype == Fstype::Tmpfs && !m.update)
            .map(|m| m.options.clone())
            .unwrap_or_default()
    };
    // Spec sizes on the host image's root and /tmp.
    let p = built(
        |s| {
            s.limits.disk_bytes = limit(32 << 20);
            s.limits.tmp_bytes = Some(16 << 20);
        },
        &host,
    );
    // The root takes no `mode` or `inodes`: a read-only root is an update
    // of this mount, and tmpfs refuses those on an update.
    assert_eq!(options(&p, "/"), ["size=32m"]);
    assert_eq!(
        options(&p, "/tmp"),
        ["mode=1777", "size=16m", "inodes=2048", "nosuid"]
    );
    // Every tmpfs has a size and an inode cap.
    for m in p
        .mounts
        .iter()
        .filter(|m| m.fstype == Fstype::Tmpfs && !m.update)
    {
        assert!(
            m.options.iter().any(|o| o.starts_with("size="))
                && (m.target == "/" || m.options.iter().any(|o| o.starts_with("inodes="))),
            "{m:?}"
        );
    }
    type Case = (&'static str, Edit, Level, bool, bool);
    let cases: &[Case] = &[
        // (what, spec, level, refused, degraded)
        ("host image, default", |_| {}, Level::Enforced, false, false),
        (
            "host image, required",
            |s| s.limits.disk_bytes = limit(64 << 20),
            Level::Enforced,
            false,
            false,
        ),
        (
            "read-only directory image: nothing to limit",
            |s| {
                s.image = "base14".into();
                s.readonly_rootfs = true;
                s.limits.disk_bytes = limit(64 << 20);
            },
            Level::Enforced,
            false,
            false,
        ),
        (
            "writable directory image, the default: degraded, not refused",
            |s| s.image = "base14".into(),
            Level::NotEnforced,
            false,
            true,
        ),
        (
            "writable directory image, required: refused",
            |s| {
                s.image = "base14".into();
                s.limits.disk_bytes = limit(64 << 20);
            },
            Level::NotEnforced,
            true,
            false,
        ),
    ];
    for (what, edit, level, refused, degraded) in cases {
        let s = spec(*edit);
        let p = plan(&s, &sandbox(), &host);
        let r = p.report.get(Property::DiskLimit).expect("row");
        assert_eq!((r.level, r.degraded), (*level, *degraded), "{what}: {r:?}");
        assert_eq!(
            p.refusals.iter().any(|r| r.starts_with("disk_limit:")),
            *refused,
            "{what}: {:?}",
            p.refusals
        );
        assert_eq!(
            matches!(
                build(&s, &sandbox(), &host),
                Err(BuildError::Refused { .. })
            ),
            *refused,
            "{what}"
        );
    }
}

#[test]
fn oci_images_are_a_flattened_private_copy_mounted_with_nullfs() {
    let host = HostFacts::assumed();
    let layers: Vec<PathBuf> = ["a", "b"]
        .iter()
        .map(|h| PathBuf::from(format!(".oci/layers/sha256/{h}")))
        .collect();
    for ro in [false, true] {
        let edit: Edit = if ro {
            |s| {
                s.image = "local/bb:1".into();
                s.readonly_rootfs = true;
            }
        } else {
            |s| s.image = "local/bb:1".into()
        };
        let v = spec(edit).with_image_layers(layers.clone());
        let p = build(&v, &sandbox(), &host).expect("plan builds");
        let root = p
            .mounts
            .iter()
            .find(|m| m.target == "/")
            .expect("root mount");
        assert_eq!(root.source, MountSource::ImageLayers(layers.clone()));
        assert_eq!(root.fstype, Fstype::Nullfs);
        assert_eq!(root.options.contains(&"ro".to_owned()), ro);
        assert_eq!(p.oci_root_path(), sandbox().dir.join("oci-root"));
        let shown = format!("{:?}", plan(&v, &sandbox(), &host).native);
        assert!(
            shown.contains("oci-root")
                && shown.contains("flattened copy of <images>/.oci/layers/sha256/a + <images>/.oci/layers/sha256/b"),
            "{shown}"
        );
    }
    // A reference the daemon did not resolve is never planned as a directory.
    assert!(matches!(
        build(&spec(|s| s.image = "local/bb:1".into()), &sandbox(), &host),
        Err(BuildError::Plan(PlanError::ImageUnresolved(_)))
    ));
}

/// A child (`spec.join`) is refused with the reason: no child jails yet.
#[test]
fn a_child_sandbox_is_refused() {
    let child = spec(|s| {
        s.join = Some(sandboxd_core::spec::Join {
            sandbox_id: "fedcba9876543210".into(),
            network: true,
            ..Default::default()
        });
    });
    let host = HostFacts::assumed();
    let p = plan(&child, &sandbox(), &host);
    assert!(
        p.refusals
            .iter()
            .any(|r| r.starts_with("spec.join:") && r.contains("fedcba9876543210")),
        "{:?}",
        p.refusals
    );
    assert_eq!(
        build(&child, &sandbox(), &host),
        Err(BuildError::Plan(PlanError::Join("fedcba9876543210".into())))
    );
}
