//! Table-driven tests of the Linux plan.

#![allow(clippy::expect_used)]

use std::path::PathBuf;

use sandboxd_core::spec::{
    Limit, Mode, MountSpec, NetworkMode, NetworkPolicy, PortForward, ProcessSpec, Protocol,
    Requirement, SandboxSpec,
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

/// A spec validated by a daemon whose disk-limit default is off.
fn spec_without_disk_default(edit: Edit) -> ValidatedSpec {
    let mut s = SandboxSpec {
        process: ProcessSpec {
            argv: vec!["/bin/true".into()],
            ..Default::default()
        },
        ..Default::default()
    };
    edit(&mut s);
    let policy = Policy {
        default_disk_bytes: None,
        max_disk_bytes: 1 << 40,
        ..Policy::default()
    };
    validate(s, &policy).expect("valid spec")
}

/// The data of the mount at `target`.
fn data_at(p: &LinuxPlan, target: &str) -> Vec<String> {
    p.mounts
        .iter()
        .find_map(|op| match op {
            RootOp::Mount(m) if m.target == target => Some(m.data.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no mount at {target}"))
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
            RootOp::Device { path, .. } => (path.clone(), "mknod".into()),
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

/// pid 1 joins its cgroups itself, after the mounts (so the supervisor
/// makes the v1 ones meanwhile) and before anything that needs the limits
/// or hides the host's cgroup paths, in every mode and namespace set.
#[test]
fn pid_1_joins_its_cgroups_before_it_pivots_or_runs_anything() {
    let cases: [(&str, Edit); 5] = [
        ("process", |_| {}),
        ("init", |s| s.mode = Mode::Init),
        ("idle", |s| {
            s.mode = Mode::Idle;
            s.process = ProcessSpec::default();
        }),
        ("user namespace", |s| {
            s.isolation.user = Requirement::Preferred
        }),
        ("no cgroup namespace", |s| {
            s.isolation.cgroup = Requirement::Disabled
        }),
    ];
    for (name, edit) in cases {
        let p = built(edit, &hybrid());
        let at = |want: fn(&LinuxStep) -> bool| p.steps.iter().position(want);
        let join =
            at(|s| *s == LinuxStep::JoinCgroups).unwrap_or_else(|| panic!("{name}: no join"));
        assert_eq!(p.steps[join].actor(), Actor::Init, "{name}");
        assert_eq!(
            p.steps
                .iter()
                .filter(|s| **s == LinuxStep::JoinCgroups)
                .count(),
            1,
            "{name}"
        );
        let mounts = at(|s| *s == LinuxStep::Mounts).expect("mounts");
        assert!(mounts < join, "{name}: {:?}", p.steps);
        for later in [
            at(|s| *s == LinuxStep::PivotRoot),
            at(|s| *s == LinuxStep::UnshareCgroup),
            at(|s| *s == LinuxStep::UnshareUser),
            at(|s| *s == LinuxStep::ForkPayload),
            at(|s| *s == LinuxStep::Idle),
            at(|s| matches!(s, LinuxStep::Execve { .. })),
        ]
        .into_iter()
        .flatten()
        {
            assert!(join < later, "{name}: {:?}", p.steps);
        }
    }
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
        matches!(&err, BuildError::Refused { refusals: r, .. } if r[0].starts_with("user:")),
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
        BuildError::Plan(PlanError::UserNamespaceMap {
            what: "uid",
            id: 70_000,
            ..
        })
    ));
}

#[test]
fn network_modes() {
    struct Case {
        what: &'static str,
        edit: Edit,
        /// The host has nft.
        nft: bool,
        /// pid 1 is cloned with CLONE_NEWNET.
        net_ns: bool,
        /// pid 1 brings lo up itself.
        lo_up: bool,
        /// pid 1 joins the daemon's namespace (RESTRICTED).
        joins: bool,
        level: Level,
        refused: bool,
    }
    fn restricted(requirement: Requirement) -> NetworkPolicy {
        NetworkPolicy {
            mode: NetworkMode::Restricted,
            requirement,
            ..NetworkPolicy::default()
        }
    }
    let case = |what, edit, nft, net_ns, lo_up, joins, level, refused| Case {
        what,
        edit,
        nft,
        net_ns,
        lo_up,
        joins,
        level,
        refused,
    };
    let cases = [
        case(
            "unspecified is none",
            |_| {},
            true,
            true,
            false,
            false,
            Level::Enforced,
            false,
        ),
        case(
            "none",
            |s| s.network.mode = NetworkMode::None,
            true,
            true,
            false,
            false,
            Level::Enforced,
            false,
        ),
        case(
            "loopback",
            |s| s.network.mode = NetworkMode::Loopback,
            true,
            true,
            true,
            false,
            Level::Enforced,
            false,
        ),
        case(
            "restricted",
            |s| s.network = restricted(Requirement::Unspecified),
            true,
            false,
            false,
            true,
            Level::Enforced,
            false,
        ),
        case(
            "restricted without nft",
            |s| s.network = restricted(Requirement::Unspecified),
            false,
            true,
            true,
            false,
            Level::NotEnforced,
            true,
        ),
        case(
            "restricted preferred without nft: loopback only",
            |s| s.network = restricted(Requirement::Preferred),
            false,
            true,
            true,
            false,
            Level::NotEnforced,
            false,
        ),
        case(
            "host",
            |s| s.network.mode = NetworkMode::Host,
            true,
            false,
            false,
            false,
            Level::Enforced,
            false,
        ),
    ];
    for c in cases {
        let host = HostFacts {
            nftables: c.nft,
            ..HostFacts::assumed()
        };
        let s = spec(c.edit);
        let p = plan(&s, &leased(), &host);
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
        let has = |op: &str| steps.iter().any(|s| s.op == op);
        assert_eq!(
            clone_flags.iter().any(|f| f == "CLONE_NEWNET"),
            c.net_ns,
            "{}",
            c.what
        );
        assert_eq!(has("link_up"), c.lo_up, "{}", c.what);
        assert_eq!(has("setns") && has("nft"), c.joins, "{}", c.what);
        assert_eq!(
            build(&s, &leased(), &host).is_err(),
            c.refused,
            "{}",
            c.what
        );
    }
    let host = HostFacts {
        nftables: false,
        ..HostFacts::assumed()
    };
    let refusals = plan(
        &spec(|s| s.network = restricted(Requirement::Required)),
        &sandbox(),
        &host,
    )
    .refusals;
    assert!(refusals[0].starts_with("network:"), "{refusals:?}");
    assert!(refusals[0].contains("needs the nft binary"), "{refusals:?}");
    // Without a lease there is nothing to configure: build refuses.
    let s = spec(|s| s.network = restricted(Requirement::Required));
    assert_eq!(
        build(&s, &sandbox(), &HostFacts::assumed()),
        Err(BuildError::Plan(PlanError::NoLease))
    );
    let r = row(
        &spec(|s| s.network.mode = NetworkMode::Host),
        &HostFacts::assumed(),
        Property::Network,
    );
    assert!(r.caveats.contains("daemon's config"), "{}", r.caveats);
}

#[test]
fn a_given_network_namespace_is_joined_and_nothing_is_set_up_in_it() {
    let given = |s: &mut SandboxSpec| {
        s.network.mode = NetworkMode::Namespace;
        s.network.namespace_path = "/var/run/netns/cni-1".into();
    };
    let s = spec(given);
    let p = build(&s, &sandbox(), &HostFacts::assumed()).expect("builds");
    assert_eq!(p.network, Network::Given("/var/run/netns/cni-1".into()));
    // The namespace is the plan's (payloads enter pid 1's), but pid 1 is
    // not cloned into a new one: it joins the given one first.
    assert!(p.namespaces.contains(&Namespace::Net));
    let first = p
        .steps
        .iter()
        .position(|s| matches!(s, LinuxStep::JoinGivenNetns(path) if path.to_str() == Some("/var/run/netns/cni-1")))
        .expect("joins");
    let mounts = p
        .steps
        .iter()
        .position(|s| matches!(s, LinuxStep::Mounts))
        .expect("mounts");
    assert!(first < mounts, "{:?}", p.steps);
    assert!(
        !p.steps
            .iter()
            .any(|s| matches!(s, LinuxStep::LoopbackUp | LinuxStep::JoinNetns(_))),
        "nothing of sandboxd's own networking: {:?}",
        p.steps
    );
    let shown = plan(&s, &sandbox(), &HostFacts::assumed());
    assert!(shown.refusals.is_empty(), "{:?}", shown.refusals);
    let NativePlan::Linux {
        clone_flags, steps, ..
    } = &shown.native
    else {
        panic!("not a linux plan");
    };
    assert!(
        !clone_flags.iter().any(|f| f == "CLONE_NEWNET"),
        "{clone_flags:?}"
    );
    assert!(!steps.iter().any(|s| s.op == "nft" || s.op == "link_up"));
    let r = row(&s, &HostFacts::assumed(), Property::Network);
    assert_eq!(r.level, Level::Enforced);
    assert!(
        r.mechanism.contains("setns(CLONE_NEWNET)"),
        "{}",
        r.mechanism
    );
    assert!(r.caveats.contains("never deletes it"), "{}", r.caveats);
}

/// The sandbox with a lease: 203.0.113.2 and 2001:db8::2, gateways .1/::1.
fn leased() -> SandboxPaths {
    let ip = |s: &str| s.parse::<std::net::IpAddr>().expect("ip");
    SandboxPaths {
        lease: sandboxd_core::net::NetLease {
            addresses: vec![ip("203.0.113.2"), ip("2001:db8::2")],
            gateways: vec![ip("203.0.113.1"), ip("2001:db8::1")],
            ports: vec![(Protocol::Tcp, 8080)],
        },
        ..sandbox()
    }
}

#[test]
fn restricted_network_plan_and_nft_rules() {
    let s = spec(|s| {
        s.network = NetworkPolicy {
            mode: NetworkMode::Restricted,
            outbound_nat: true,
            port_forwards: vec![
                PortForward {
                    protocol: Protocol::Tcp,
                    host_port: 8080,
                    sandbox_port: 80,
                },
                PortForward {
                    protocol: Protocol::Udp,
                    host_port: 5353,
                    sandbox_port: 53,
                },
            ],
            ..NetworkPolicy::default()
        }
    });
    let p = build(&s, &leased(), &HostFacts::assumed()).expect("plan");
    let Network::Routed(r) = &p.network else {
        panic!("not routed: {:?}", p.network);
    };
    assert_eq!(r.host_link, "sbx0123456789ab");
    assert_eq!(r.netns, sandbox().dir.join("netns"));
    assert_eq!(r.nft_table, "sandboxd_0123456789abcdef");
    assert!(r.has_ipv6());
    // pid 1 joins the namespace first thing.
    let join = p
        .steps
        .iter()
        .position(|s| matches!(s, LinuxStep::JoinNetns(path) if *path == r.netns));
    assert_eq!(join, Some(2), "{:?}", p.steps);
    assert_eq!(p.steps[1], LinuxStep::Clone, "{:?}", p.steps);
    assert!(!p.steps.contains(&LinuxStep::LoopbackUp));
    let want = r#"table inet sandboxd_0123456789abcdef {
  chain guard {
    type filter hook prerouting priority raw; policy accept;
    iifname "sbx0123456789ab" ip saddr != { 203.0.113.2 } drop
    iifname "sbx0123456789ab" ip6 saddr != { fe80::/10, 2001:db8::2 } drop
  }
  chain to_host {
    type filter hook input priority filter; policy accept;
    iifname "sbx0123456789ab" ct state established,related accept
    iifname "sbx0123456789ab" icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert } accept
    iifname "sbx0123456789ab" drop
  }
  chain nat_out {
    type nat hook postrouting priority srcnat; policy accept;
    ip saddr { 203.0.113.2 } oifname != "sbx0123456789ab" masquerade
    ip6 saddr { 2001:db8::2 } oifname != "sbx0123456789ab" masquerade
  }
  chain forwards {
    type nat hook prerouting priority -100; policy accept;
    fib daddr type local tcp dport 8080 dnat ip to 203.0.113.2:80
    fib daddr type local udp dport 5353 dnat ip to 203.0.113.2:53
  }
  chain forwards_local {
    type nat hook output priority -100; policy accept;
    fib daddr type local tcp dport 8080 dnat ip to 203.0.113.2:80
    fib daddr type local udp dport 5353 dnat ip to 203.0.113.2:53
  }
  chain forwards_loopback {
    type nat hook postrouting priority srcnat; policy accept;
    ip saddr 127.0.0.0/8 oifname "sbx0123456789ab" masquerade
  }
}
"#;
    assert_eq!(nft_script(r), want);
    assert_eq!(
        route_localnet_sysctl(r),
        Some(PathBuf::from(
            "/proc/sys/net/ipv4/conf/sbx0123456789ab/route_localnet"
        ))
    );

    // An IPv4-only sandbox without options drops all IPv6 from its link
    // and has no NAT or forward chains.
    let v4 = SandboxPaths {
        lease: sandboxd_core::net::NetLease {
            addresses: vec!["203.0.113.9".parse().expect("ip")],
            gateways: vec!["203.0.113.1".parse().expect("ip")],
            ports: Vec::new(),
        },
        ..sandbox()
    };
    let plain = spec(|s| s.network.mode = NetworkMode::Restricted);
    let p = build(&plain, &v4, &HostFacts::assumed()).expect("plan");
    let Network::Routed(r) = &p.network else {
        panic!("not routed");
    };
    let script = nft_script(r);
    assert!(script.contains("meta nfproto ipv6 drop"), "{script}");
    assert!(!script.contains("nat"), "{script}");
    // The display plan lists the daemon's steps before the supervisor's.
    let NativePlan::Linux {
        steps, clone_flags, ..
    } = plan(&plain, &v4, &HostFacts::assumed()).native
    else {
        panic!("not a linux plan");
    };
    let ops: Vec<&str> = steps.iter().take(8).map(|s| s.op.as_str()).collect();
    assert_eq!(
        ops,
        [
            "netns_create",
            "veth_create",
            "addr_add",
            "route_add",
            "addr_add",
            "route_add",
            "sysctl",
            "nft"
        ]
    );
    assert!(
        !clone_flags.contains(&"CLONE_NEWNET".to_owned()),
        "{clone_flags:?}"
    );
}

#[test]
fn cgroup_writes_v2_and_v1() {
    let base = "/sys/fs/cgroup/sandboxd/0123456789abcdef";
    let w = |f: &str, v: &str| (f.to_owned(), v.to_owned());
    type Case = (&'static str, Edit, HostFacts, Vec<(String, String)>);
    let cases: &[Case] = &[
        (
            "no limits: accounting controllers only",
            |_| {},
            HostFacts::assumed(),
            vec![
                w("/sys/fs/cgroup/cgroup.subtree_control", "+memory +pids +io"),
                w(
                    "/sys/fs/cgroup/sandboxd/cgroup.subtree_control",
                    "+memory +pids +io",
                ),
            ],
        ),
        (
            "no limits, hybrid: v1 dirs, no writes",
            |_| {},
            hybrid(),
            vec![],
        ),
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
                    "+cpu +memory +pids +io",
                ),
                w(
                    "/sys/fs/cgroup/sandboxd/cgroup.subtree_control",
                    "+cpu +memory +pids +io",
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
            "v2 weight alone",
            |s| s.limits.cpu_weight = limit(400),
            HostFacts::assumed(),
            vec![
                w(
                    "/sys/fs/cgroup/cgroup.subtree_control",
                    "+cpu +memory +pids +io",
                ),
                w(
                    "/sys/fs/cgroup/sandboxd/cgroup.subtree_control",
                    "+cpu +memory +pids +io",
                ),
                w(&format!("{base}/cpu.weight"), "400"),
            ],
        ),
        (
            "v2 quota and weight: cpu enabled once",
            |s| {
                s.limits.cpu_millis = limit(500);
                s.limits.cpu_weight = limit(1);
            },
            HostFacts::assumed(),
            vec![
                w(
                    "/sys/fs/cgroup/cgroup.subtree_control",
                    "+cpu +memory +pids +io",
                ),
                w(
                    "/sys/fs/cgroup/sandboxd/cgroup.subtree_control",
                    "+cpu +memory +pids +io",
                ),
                w(&format!("{base}/cpu.max"), "50000 100000"),
                w(&format!("{base}/cpu.weight"), "1"),
            ],
        ),
        (
            "v1 (hybrid) weight: shares scaled, 100 = 1024",
            |s| {
                s.limits.cpu_millis = limit(250);
                s.limits.cpu_weight = limit(400);
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
                    "/sys/fs/cgroup/cpu/sandboxd/0123456789abcdef/cpu.shares",
                    "4096",
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
    // Every sandbox gets a cgroup in the unified hierarchy, and in the v1
    // accounting hierarchies (memory, pids, blkio) with or without a limit;
    // cpu only where a limit needs it; none twice.
    for edit in [(|s| s.limits.pids = limit(10)) as Edit, |_| {}] {
        let mut dirs = built(edit, &hybrid()).cgroups.dirs;
        dirs.sort();
        assert_eq!(
            dirs,
            vec![
                PathBuf::from("/sys/fs/cgroup/blkio/sandboxd/0123456789abcdef"),
                PathBuf::from("/sys/fs/cgroup/memory/sandboxd/0123456789abcdef"),
                PathBuf::from("/sys/fs/cgroup/pids/sandboxd/0123456789abcdef"),
                PathBuf::from("/sys/fs/cgroup/unified/sandboxd/0123456789abcdef"),
            ]
        );
    }
    let p = built(|s| s.limits.cpu_millis = limit(10), &hybrid());
    assert_eq!(p.cgroups.dirs.len(), 5, "{:?}", p.cgroups.dirs);
    let p = built(
        |s| {
            s.limits.cpu_millis = limit(10);
            s.limits.cpu_weight = limit(10);
        },
        &hybrid(),
    );
    assert_eq!(p.cgroups.dirs.len(), 5, "{:?}", p.cgroups.dirs);
}

#[test]
fn cpu_weight_without_the_cpu_controller() {
    let mut host = HostFacts::assumed();
    host.cgroup.cpu = None;
    let err = build(
        &spec(|s| s.limits.cpu_weight = limit(400)),
        &sandbox(),
        &host,
    )
    .expect_err("refused");
    assert!(
        matches!(&err, BuildError::Refused { refusals: r, .. } if r[0].starts_with("cpu_weight:"))
    );
    let s = spec(|s| s.limits.cpu_weight = preferred(400));
    let p = build(&s, &sandbox(), &host).expect("preferred degrades");
    assert!(
        p.cgroups
            .writes
            .iter()
            .all(|w| !w.file.ends_with("cpu.weight")),
        "{:?}",
        p.cgroups.writes
    );
    assert!(row(&s, &host, Property::CpuWeight).degraded);
    let r = row(
        &spec(|s| s.limits.cpu_weight = limit(400)),
        &HostFacts::assumed(),
        Property::CpuWeight,
    );
    assert_eq!(
        (r.level, r.mechanism.as_str()),
        (Level::Enforced, "cgroup v2 cpu.weight")
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
    assert!(
        matches!(&err, BuildError::Refused { refusals: r, .. } if r[0].starts_with("memory_limit:"))
    );
    let s = spec(|s| s.limits.memory_bytes = preferred(64 << 20));
    let p = build(&s, &sandbox(), &host).expect("preferred degrades");
    // No memory limit written anywhere; only the accounting controllers
    // the host has are enabled.
    assert!(
        p.cgroups
            .writes
            .iter()
            .all(|w| w.file.ends_with("cgroup.subtree_control") && w.value == "+pids +io"),
        "{:?}",
        p.cgroups.writes
    );
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
            &LinuxStep::SetRlimit(Rlimit::new(RlimitKind::Nofile, 64)),
            &LinuxStep::SetRlimit(Rlimit::new(RlimitKind::As, 1 << 30)),
            &LinuxStep::SetGroups(vec![5, 6]),
            &LinuxStep::SetGid(100),
            &LinuxStep::SetUid(1000),
            &LinuxStep::Chdir("/tmp".into()),
            &LinuxStep::Seccomp,
            &LinuxStep::Execve {
                argv: vec!["/bin/true".into()],
                env: vec!["SECRET=hunter2".into()],
            },
        ]
    );
    // Descriptors are closed before anything client-controlled.
    let close = p.steps.iter().position(|s| *s == LinuxStep::CloseRange);
    let chdir = p
        .steps
        .iter()
        .position(|s| matches!(s, LinuxStep::Chdir(_)));
    assert!(close < chdir && close.is_some(), "{:?}", p.steps);
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
        "/etc/sandboxd tmpfs",
        "/usr/local/etc/sandboxd tmpfs",
        "/bin symlink",
        "/sbin symlink",
        "/lib symlink",
        "/lib64 symlink",
        "/proc proc",
        "/dev tmpfs",
        "/dev/null mknod",
        "/dev/zero mknod",
        "/dev/full mknod",
        "/dev/random mknod",
        "/dev/urandom mknod",
        "/dev/tty mknod",
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
    let layer = sandbox().dir.join("root");
    assert_eq!(
        root.source,
        MountSource::Overlay {
            image: "alpine".into(),
            layers: vec![],
            upper: layer.join("upper"),
            work: layer.join("work"),
            layer: Some(Layer {
                dir: layer,
                flags: vec![MountFlag::Nosuid, MountFlag::Nodev],
                data: vec![
                    "mode=700".into(),
                    "size=1g".into(),
                    "nr_inodes=131072".into()
                ],
            }),
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
        Err(BuildError::Plan(PlanError::RootfsOverlay { .. }))
    ));
    let p = plan(&s, &sandbox(), &no_overlay);
    assert!(p.refusals[0].starts_with("rootfs:"), "{:?}", p.refusals);
    assert_eq!(p.native, NativePlan::empty(BackendKind::Linux));
}

#[test]
fn oci_images_mount_their_layer_chain() {
    use std::path::PathBuf;
    let host = HostFacts::assumed();
    let layers: Vec<PathBuf> = ["a", "b", "c"]
        .iter()
        .map(|h| PathBuf::from(format!(".oci/layers/sha256/{h}")))
        .collect();
    let with = |edit: Edit, layers: &[PathBuf]| spec(edit).with_image_layers(layers.to_vec());
    let root_of = |p: &LinuxPlan| match &p.mounts[1] {
        RootOp::Mount(m) => m.clone(),
        other => panic!("no root mount: {other:?}"),
    };
    let oci = |s: &mut SandboxSpec| s.image = "local/bb:1".into();
    let ro = |s: &mut SandboxSpec| {
        s.image = "local/bb:1".into();
        s.readonly_rootfs = true;
    };
    // Writable: the layers are the lower directories, the sandbox's upper.
    let p = build(&with(oci, &layers), &sandbox(), &host).unwrap();
    let root = root_of(&p);
    assert!(
        matches!(&root.source, MountSource::Overlay { layers: l, .. } if *l == layers),
        "{root:?}"
    );
    let shown = plan(&with(oci, &layers), &sandbox(), &host);
    let text = format!("{:?}", shown.native);
    assert!(
        text.contains("lowerdir=<images>/.oci/layers/sha256/c:<images>/.oci/layers/sha256/b:<images>/.oci/layers/sha256/a"),
        "top layer first: {text}"
    );
    // Read-only: the same overlay (mount points go to the private upper),
    // then the final remount makes the root read-only.
    let p = build(&with(ro, &layers), &sandbox(), &host).unwrap();
    let root = root_of(&p);
    assert!(
        matches!(&root.source, MountSource::Overlay { layers: l, .. } if *l == layers),
        "{root:?}"
    );
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
    // A reference the daemon did not resolve is never planned as a directory.
    assert!(matches!(
        build(&spec(oci), &sandbox(), &host),
        Err(BuildError::Plan(PlanError::ImageUnresolved(_)))
    ));
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
    // Only the client's binds are checked where they resolve at run time.
    let checked: Vec<&str> = p
        .mounts
        .iter()
        .filter_map(|op| match op {
            RootOp::Mount(m) if m.client => Some(m.target.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(checked, ["/data", "/tmp/out"]);
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
                Err(BuildError::Plan(PlanError::BindMountTarget {
                    index: 0,
                    ..
                }))
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
    let proc = mounts
        .iter()
        .find(|m| m.fstype == "proc")
        .expect("a proc mount");
    assert_eq!(
        proc.target,
        format!("/var/lib/sandboxd/sandboxes/{ID}/root/proc")
    );
    assert_eq!(proc.options, ["nosuid", "nodev", "noexec"]);
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

#[test]
fn dns_binds_the_generated_resolv_conf_read_only() {
    let s = spec(|s| s.network.dns_servers = vec!["203.0.113.53".into()]);
    let p = build(&s, &sandbox(), &HostFacts::assumed()).expect("plan");
    let bind = p.mounts.iter().find_map(|op| match op {
        RootOp::Mount(m) if m.target == "/etc/resolv.conf" => Some(m),
        _ => None,
    });
    let m = bind.expect("a resolv.conf mount");
    assert_eq!(
        m.source,
        MountSource::Host(sandbox().dir.join("resolv.conf"))
    );
    assert!(m.flags.contains(&MountFlag::Rdonly), "{:?}", m.flags);
    // Without DNS options the image's file is left alone.
    let p = build(&spec(|_| {}), &sandbox(), &HostFacts::assumed()).expect("plan");
    assert!(
        !p.mounts
            .iter()
            .any(|op| matches!(op, RootOp::Mount(m) if m.target == "/etc/resolv.conf"))
    );
}

#[test]
fn every_mode_gets_the_per_process_rlimits() {
    let modes: [(Mode, Edit); 3] = [
        (Mode::Process, |_| {}),
        (Mode::Init, |s| s.mode = Mode::Init),
        (Mode::Idle, |s| {
            s.mode = Mode::Idle;
            s.process = ProcessSpec::default();
        }),
    ];
    for (mode, edit) in modes {
        let mut s = spec(edit).spec().clone();
        s.limits.open_files = limit(64);
        s.limits.address_space_bytes = limit(1 << 30);
        let v = validate(s, &Policy::default()).expect("valid spec");
        assert_eq!(
            crate::plan::rlimits(&v),
            [
                Rlimit::new(RlimitKind::Nofile, 64),
                Rlimit::new(RlimitKind::As, 1 << 30)
            ],
            "{mode:?}"
        );
    }
    assert!(crate::plan::rlimits(&spec(|_| {})).is_empty());
}

#[test]
fn uid_0_with_a_read_write_bind_needs_a_user_namespace() {
    let rw: Edit = |s| {
        s.process.user.uid = Some(0);
        s.mounts = vec![MountSpec {
            source: "/srv/out".into(),
            target: "/out".into(),
            read_only: false,
        }];
    };
    let host = HostFacts::assumed();
    // (case, edit, the main process is refused, every process is refused)
    let cases: [(&str, Edit, bool, bool); 5] = [
        ("rw bind, uid 0", rw, true, true),
        (
            "rw bind, uid 1000",
            |s| {
                s.mounts = vec![MountSpec {
                    source: "/srv/out".into(),
                    target: "/out".into(),
                    read_only: false,
                }];
                s.process.user.uid = Some(1000);
            },
            false,
            true,
        ),
        (
            "ro bind, uid 0",
            |s| {
                s.process.user.uid = Some(0);
                s.mounts = vec![MountSpec {
                    source: "/srv/out".into(),
                    target: "/out".into(),
                    read_only: true,
                }];
            },
            false,
            false,
        ),
        (
            "rw bind, uid 0, user namespace",
            |s| {
                s.process.user.uid = Some(0);
                s.isolation.user = Requirement::Required;
                s.mounts = vec![MountSpec {
                    source: "/srv/out".into(),
                    target: "/out".into(),
                    read_only: false,
                }];
            },
            false,
            false,
        ),
        (
            "no binds, uid 0",
            |s| s.process.user.uid = Some(0),
            false,
            false,
        ),
    ];
    for (case, edit, main_refused, refusal) in cases {
        let v = spec(edit);
        let built = build(&v, &sandbox(), &host);
        assert_eq!(
            matches!(
                built,
                Err(BuildError::Plan(PlanError::RootWithWritableBind(_)))
            ),
            main_refused,
            "{case}: {built:?}"
        );
        let ns = namespaces(&v, &host);
        let why = root_refusal(&v, &ns);
        assert_eq!(why.is_some(), refusal, "{case}");
        if let Some(why) = why {
            assert!(
                why.contains("spec.mounts[0]") && why.contains("/srv/out"),
                "{why}"
            );
        }
    }
}

#[test]
fn every_tmpfs_has_a_size_and_an_inode_cap() {
    let host = HostFacts::assumed();
    let strings = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    type Case = (
        &'static str,
        Edit,
        &'static [(&'static str, &'static [&'static str])],
    );
    let cases: &[Case] = &[
        (
            "defaults, host image: the root tmpfs is the writable layer",
            |_| {},
            &[
                ("/", &["mode=755", "size=1g", "nr_inodes=131072"]),
                ("/dev", &["mode=755", "size=64k", "nr_inodes=256"]),
                ("/dev/shm", &["mode=1777", "size=64m", "nr_inodes=8192"]),
                ("/tmp", &["mode=1777", "size=256m", "nr_inodes=32768"]),
                ("/proc/acpi", &["size=4k", "nr_inodes=1"]),
            ],
        ),
        (
            "spec sizes",
            |s| {
                s.limits.disk_bytes = limit(32 << 20);
                s.limits.tmp_bytes = Some(16 << 20);
                s.limits.shm_bytes = Some(3 << 20);
            },
            &[
                ("/", &["mode=755", "size=32m", "nr_inodes=4096"]),
                ("/dev/shm", &["mode=1777", "size=3m", "nr_inodes=1024"]),
                ("/tmp", &["mode=1777", "size=16m", "nr_inodes=2048"]),
            ],
        ),
    ];
    for (what, edit, want) in cases {
        let p = built(*edit, &host);
        for (target, data) in *want {
            assert_eq!(data_at(&p, target), strings(data), "{what}: {target}");
        }
        // No tmpfs is left at the kernel's default (half of RAM), and none
        // says size=0, which tmpfs reads as "unlimited".
        for op in &p.mounts {
            if let RootOp::Mount(m) = op {
                if m.fstype.as_deref() == Some("tmpfs") {
                    assert!(
                        m.data
                            .iter()
                            .any(|d| d.starts_with("size=") && d != "size=0")
                            && m.data.iter().any(|d| d.starts_with("nr_inodes=")),
                        "{what}: {} {:?}",
                        m.target,
                        m.data
                    );
                }
            }
        }
    }
}

#[test]
fn disk_limit_layer_and_rows() {
    let host = HostFacts::assumed();
    let sb = sandbox();
    let overlay = |p: &LinuxPlan| match &p.mounts[1] {
        RootOp::Mount(Mount {
            source: MountSource::Overlay { upper, layer, .. },
            ..
        }) => (upper.clone(), layer.clone()),
        other => panic!("no overlay: {other:?}"),
    };
    // A directory image with a disk limit: upper and work on a tmpfs of
    // that size, mounted on the root's mount point <dir>/root, which the
    // overlay then covers: no directory of its own on the state disk.
    let s = spec(|s| {
        s.image = "alpine".into();
        s.limits.disk_bytes = limit(64 << 20);
    });
    let p = build(&s, &sb, &host).expect("plan");
    let (upper, layer) = overlay(&p);
    assert_eq!(upper, sb.dir.join("root/upper"));
    let layer = layer.expect("a layer");
    assert_eq!(layer.dir, sb.dir.join("root"));
    assert_eq!(layer.dir, p.rootfs);
    assert_eq!(layer.data, ["mode=700", "size=64m", "nr_inodes=8192"]);
    assert_eq!(row(&s, &host, Property::DiskLimit).level, Level::Enforced);
    assert!(plan(&s, &sb, &host).refusals.is_empty());
    // Shown in PlanSandbox, before the overlay it holds.
    let NativePlan::Linux { mounts, .. } = plan(&s, &sb, &host).native else {
        panic!("linux plan")
    };
    let at = mounts
        .iter()
        .position(|m| m.fstype == "tmpfs" && m.target.ends_with("/root"))
        .expect("layer shown");
    assert_eq!(mounts[at + 1].fstype, "overlay");
    assert!(mounts[at].options.contains(&"size=64m".to_owned()));
    assert!(
        mounts[at + 1]
            .options
            .iter()
            .any(|o| o.ends_with("/root/upper")),
        "{:?}",
        mounts[at + 1]
    );

    // The daemon's default off and none in the spec: upper on the state
    // directory, the host image's root at the kernel's default size, and
    // the row says so.
    let s = spec_without_disk_default(|s| s.image = "alpine".into());
    let p = build(&s, &sb, &host).expect("plan");
    assert_eq!(overlay(&p), (sb.dir.join("upper"), None));
    let r = row(&s, &host, Property::DiskLimit);
    assert_eq!(r.level, Level::NotEnforced, "{r:?}");
    assert_eq!(r.requested, Requirement::Unspecified);
    let p = build(&spec_without_disk_default(|_| {}), &sb, &host).expect("plan");
    assert_eq!(data_at(&p, "/"), ["mode=755"]);

    // A read-only directory image has no writable layer to limit.
    let s = spec(|s| {
        s.image = "alpine".into();
        s.readonly_rootfs = true;
    });
    let p = build(&s, &sb, &host).expect("plan");
    assert!(!p.mounts.iter().any(|op| matches!(
        op,
        RootOp::Mount(Mount {
            source: MountSource::Overlay { .. },
            ..
        })
    )));
    let r = row(&s, &host, Property::DiskLimit);
    assert_eq!(
        (r.level, r.mechanism.as_str()),
        (Level::Enforced, "read-only bind of the image")
    );
    // The default is PREFERRED: reported as requested, never degraded here.
    let r = row(&spec(|_| {}), &host, Property::DiskLimit);
    assert_eq!((r.requested, r.degraded), (Requirement::Preferred, false));
}

#[test]
fn cgroup_usage_parsers() {
    use super::{parse_blkio_bytes, parse_cpu_stat, parse_io_stat};
    let cpu: &[(&str, Option<u64>)] = &[
        (
            "usage_usec 1234\nuser_usec 1000\nsystem_usec 234\n",
            Some(1234),
        ),
        ("user_usec 1\n", None),
        ("usage_usec x\n", None),
        ("", None),
    ];
    for (text, want) in cpu {
        assert_eq!(parse_cpu_stat(text), *want, "{text:?}");
    }
    let io: &[(&str, Option<(u64, u64)>)] = &[
        ("", Some((0, 0))),
        (
            "8:0 rbytes=4096 wbytes=512 rios=1 wios=1 dbytes=0 dios=0\n\
             259:0 rbytes=10 wbytes=20 rios=1 wios=1\n",
            Some((4106, 532)),
        ),
        ("8:0 rbytes=oops\n", None),
    ];
    for (text, want) in io {
        assert_eq!(parse_io_stat(text), *want, "{text:?}");
    }
    let blkio: &[(&str, Option<(u64, u64)>)] = &[
        ("Total 0\n", Some((0, 0))),
        (
            "8:0 Read 100\n8:0 Write 7\n8:0 Sync 1\n8:0 Async 0\n8:0 Total 107\n\
             8:16 Read 1\n8:16 Write 2\nTotal 110\n",
            Some((101, 9)),
        ),
        ("8:0 Read nope\n", None),
    ];
    for (text, want) in blkio {
        assert_eq!(parse_blkio_bytes(text), *want, "{text:?}");
    }
}

/// A child (`spec.join`): the shared namespaces are not created but joined
/// through the parent's pid 1 before the clone; its own steps for them
/// (hostname, lo up, a lease) are gone; mqueue and sysfs stay (they show
/// the shared namespaces); the rows name the parent; without the parent's
/// processes the plan does not run.
#[test]
fn a_child_joins_its_parents_namespaces() {
    use sandboxd_core::backend::ParentProcs;
    use sandboxd_core::spec::Join;
    const PARENT: &str = "fedcba9876543210";
    let host = HostFacts::assumed();
    let child = |network: bool, ipc: bool, uts: bool, pid: bool, mode: NetworkMode| {
        let s = SandboxSpec {
            mode: Mode::Idle,
            network: NetworkPolicy {
                mode,
                ..Default::default()
            },
            join: Some(Join {
                sandbox_id: PARENT.into(),
                network,
                ipc,
                uts,
                pid,
            }),
            ..Default::default()
        };
        validate(s, &Policy::default()).expect("valid child")
    };
    let with_parent = SandboxPaths {
        parent: Some(ParentProcs {
            id: PARENT.into(),
            init_pid: 4242,
            supervisor_pid: 4241,
        }),
        ..sandbox()
    };
    // (shares network, ipc, uts, pid; the parent's mode) -> namespaces of
    // its own.
    let cases = [
        (
            (true, true, true, false, NetworkMode::Loopback),
            vec!["CLONE_NEWNS", "CLONE_NEWPID", "CLONE_NEWCGROUP"],
        ),
        (
            (true, true, true, true, NetworkMode::Loopback),
            vec!["CLONE_NEWNS", "CLONE_NEWCGROUP"],
        ),
        (
            (false, false, false, true, NetworkMode::Loopback),
            vec![
                "CLONE_NEWNS",
                "CLONE_NEWUTS",
                "CLONE_NEWIPC",
                "CLONE_NEWNET",
                "CLONE_NEWCGROUP",
            ],
        ),
        (
            (true, false, false, false, NetworkMode::Restricted),
            vec![
                "CLONE_NEWNS",
                "CLONE_NEWPID",
                "CLONE_NEWUTS",
                "CLONE_NEWIPC",
                "CLONE_NEWCGROUP",
            ],
        ),
        (
            (false, true, true, false, NetworkMode::Loopback),
            vec![
                "CLONE_NEWNS",
                "CLONE_NEWPID",
                "CLONE_NEWNET",
                "CLONE_NEWCGROUP",
            ],
        ),
    ];
    for ((network, ipc, uts, pid, mode), own) in cases {
        let spec = child(network, ipc, uts, pid, mode);
        let p = build(&spec, &with_parent, &host).expect("child plan builds");
        assert_eq!(flags(&p), own, "{network} {ipc} {uts} {pid}");
        let join = p.join.as_ref().expect("join plan");
        assert_eq!(
            join.namespaces.contains(&Namespace::Pid),
            pid,
            "the pid namespace is joined, not created"
        );
        // /proc is mounted by the first process, from inside the shared
        // pid namespace too.
        assert!(has_target(&p, "/proc"));
        assert_eq!((join.init_pid, join.supervisor_pid), (4242, 4241));
        assert_eq!(join.sandbox, PARENT);
        // Joined before the clone, by the supervisor.
        let at = |step: &LinuxStep| p.steps.iter().position(|s| s == step);
        assert!(at(&LinuxStep::JoinParent) < at(&LinuxStep::Clone));
        assert_eq!(LinuxStep::JoinParent.actor(), Actor::Supervisor);
        let sets_hostname = p
            .steps
            .iter()
            .any(|s| matches!(s, LinuxStep::SetHostname(_)));
        assert_eq!(
            sets_hostname, !uts,
            "sethostname only in an own UTS namespace"
        );
        if network {
            assert_eq!(p.network, Network::Joined(PARENT.into()));
            assert!(!p.steps.contains(&LinuxStep::LoopbackUp));
            assert!(!p.steps.iter().any(|s| matches!(s, LinuxStep::JoinNetns(_))));
        }
        // mqueue and sysfs show the namespaces pid 1 is in, shared or own.
        assert!(has_target(&p, "/dev/mqueue"));
        assert!(has_target(&p, "/sys"));
        let report = plan(&spec, &with_parent, &host).report;
        for (property, shared) in [
            (Property::Network, network),
            (Property::Ipc, ipc),
            (Property::Hostname, uts),
            (Property::Pid, pid),
        ] {
            let r = report.get(property).expect("row");
            assert_eq!(
                r.mechanism.contains(PARENT) && r.caveats.contains("shared with sandbox"),
                shared,
                "{property:?}: {r:?}"
            );
            assert_eq!(r.level, Level::Enforced, "{property:?}");
        }
        // The display plan shows the join.
        let NativePlan::Linux { steps, .. } = plan(&spec, &sandbox(), &host).native else {
            panic!("a Linux plan")
        };
        assert!(
            steps
                .iter()
                .any(|s| s.op == "setns" && s.args.contains(&format!("sandbox {PARENT}"))),
            "{steps:?}"
        );
        // Without the parent's processes it does not run.
        assert_eq!(
            build(&spec, &sandbox(), &host),
            Err(BuildError::Plan(PlanError::NoParent(PARENT.into())))
        );
    }
    // Sharing the pid namespace needs a cgroup: the child is ended through
    // it, not by a pid 1 of its own.
    let bare = HostFacts {
        cgroup: CgroupFacts {
            unified: None,
            memory: None,
            pids: None,
            cpu: None,
            io: None,
            swap_accounting: false,
        },
        ..host.clone()
    };
    let pid_child = child(false, false, false, true, NetworkMode::Loopback);
    assert_eq!(
        build(&pid_child, &with_parent, &bare),
        Err(BuildError::Plan(PlanError::SharedPidWithoutCgroup(
            PARENT.into()
        )))
    );
    let other = child(true, true, true, false, NetworkMode::Loopback);
    assert!(build(&other, &with_parent, &bare).is_ok());
}
