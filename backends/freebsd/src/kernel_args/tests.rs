//! Tests of the kernel arguments and parsers, run on every OS.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use sandboxd_core::SandboxPaths;
use sandboxd_core::spec::{Limit, Mode, MountSpec, ProcessSpec, Requirement, SandboxSpec};
use sandboxd_core::validate::{Policy, validate};

use super::*;
use crate::plan::{HostFacts, MountSource, RctlResource, RctlRule, Rlimit, build};

const ID: &str = "0123456789abcdef";

fn param(name: &str, value: ParamValue) -> JailParam {
    JailParam {
        name: name.into(),
        value,
    }
}

fn iov(name: &str, value: Option<&[u8]>) -> JailIov {
    JailIov {
        name: CString::new(name).unwrap(),
        value: value.map(<[u8]>::to_vec),
    }
}

fn plan_for(edit: fn(&mut SandboxSpec)) -> crate::plan::JailPlan {
    plan_on(&HostFacts::assumed(), edit)
}

fn plan_on(host: &HostFacts, edit: fn(&mut SandboxSpec)) -> crate::plan::JailPlan {
    let mut s = SandboxSpec {
        process: ProcessSpec {
            argv: vec!["/bin/true".into()],
            ..Default::default()
        },
        ..Default::default()
    };
    edit(&mut s);
    let policy = Policy {
        allowed_mount_sources: vec!["/srv".into()],
        ..Policy::default()
    };
    let spec = validate(s, &policy).expect("valid spec");
    let sandbox = SandboxPaths {
        id: ID.into(),
        dir: PathBuf::from("/var/db/sandboxd/sandboxes").join(ID),
        ..Default::default()
    };
    build(&spec, &sandbox, host).expect("plan builds")
}

#[test]
fn negated_names_put_no_before_the_last_component() {
    for (name, want) in [
        ("persist", "nopersist"),
        ("allow.mount", "allow.nomount"),
        ("allow.raw_sockets", "allow.noraw_sockets"),
        ("allow.mount.devfs", "allow.mount.nodevfs"),
    ] {
        assert_eq!(negated_name(name), want);
    }
}

#[test]
fn every_param_type_is_encoded_as_the_kernel_reads_it() {
    let params = [
        param("path", ParamValue::Str("/j/root".into())),
        param("enforce_statfs", ParamValue::Int(2)),
        param("allow.mount", ParamValue::Bool(false)),
        param("allow.raw_sockets", ParamValue::Bool(true)),
        param("ip6", ParamValue::Jsys(Jsys::Disable)),
        param("vnet", ParamValue::Jsys(Jsys::New)),
        param("host", ParamValue::Jsys(Jsys::Inherit)),
        param(
            "ip4.addr",
            ParamValue::Ip4(vec![
                Ipv4Addr::new(192, 0, 2, 1),
                Ipv4Addr::new(198, 51, 100, 7),
            ]),
        ),
        param("ip6.addr", ParamValue::Ip6(vec![Ipv6Addr::LOCALHOST])),
    ];
    let got = jail_iovecs(&params).expect("encodes");
    let mut v6 = [0u8; 16];
    v6[15] = 1;
    assert_eq!(
        got,
        vec![
            iov("path", Some(b"/j/root\0")),
            iov("enforce_statfs", Some(&2i32.to_ne_bytes())),
            iov("allow.nomount", None),
            iov("allow.raw_sockets", None),
            iov("ip6", Some(&0i32.to_ne_bytes())),
            iov("vnet", Some(&1i32.to_ne_bytes())),
            iov("host", Some(&2i32.to_ne_bytes())),
            iov("ip4.addr", Some(&[192, 0, 2, 1, 198, 51, 100, 7])),
            iov("ip6.addr", Some(&v6)),
        ]
    );
}

#[test]
fn the_kernel_gets_exactly_the_plans_params() {
    let plain = [param("name", ParamValue::Str("j".into()))];
    assert_eq!(
        jail_iovecs(&plain).expect("encodes"),
        vec![iov("name", Some(b"j\0"))]
    );
    let persist = [param("persist", ParamValue::Bool(true))];
    assert_eq!(
        jail_iovecs(&persist).expect("encodes"),
        vec![iov("persist", None)]
    );
}

#[test]
fn unencodable_params_are_errors_not_truncations() {
    assert_eq!(
        jail_iovecs(&[param("securelevel", ParamValue::Int(1 << 40))]),
        Err(EncodeError::IntRange {
            name: "securelevel".into(),
            value: 1 << 40
        })
    );
    assert_eq!(
        jail_iovecs(&[param("host.hostname", ParamValue::Str("a\0b".into()))]),
        Err(EncodeError::Nul("host.hostname".into()))
    );
}

#[test]
fn a_real_plan_encodes_with_every_false_allow_negated() {
    let plan = plan_for(|_| {});
    let iov = jail_iovecs(&plan.params).expect("encodes");
    let names: Vec<String> = iov
        .iter()
        .map(|i| i.name.to_string_lossy().into_owned())
        .collect();
    for want in [
        "path",
        "name",
        "host.hostname",
        "enforce_statfs",
        "children.max",
        "securelevel",
        "devfs_ruleset",
        "allow.noraw_sockets",
        "allow.nomount",
        "allow.noset_hostname",
        "allow.nosysvipc",
        "sysvmsg",
        "sysvsem",
        "sysvshm",
        "persist",
    ] {
        assert!(names.iter().any(|n| n == want), "{want} missing: {names:?}");
    }
    assert!(!names.iter().any(|n| n == "allow.mount"), "{names:?}");
    assert_eq!(names.iter().filter(|n| *n == "persist").count(), 1);
    // Every value the kernel reads as an int is exactly 4 bytes.
    for i in &iov {
        let n = i.name.to_string_lossy();
        if [
            "enforce_statfs",
            "children.max",
            "securelevel",
            "sysvshm",
            "ip4",
        ]
        .contains(&&*n)
        {
            assert_eq!(i.value.as_ref().map(Vec::len), Some(4), "{n}");
        }
    }
}

#[test]
fn nmount_pairs_per_filesystem() {
    let plan = plan_for(|s| {
        s.readonly_rootfs = true;
        s.mounts = vec![MountSpec {
            source: "/srv/data".into(),
            target: "/data".into(),
            read_only: true,
        }];
    });
    let pairs = |m: &JailMount, from: Option<&str>| nmount_pairs(m, "/x", from);
    let s = |k: &str, v: &str| (k.to_owned(), Some(v.to_owned()));
    let flag = |k: &str| (k.to_owned(), None);
    // The host image: a tmpfs root...
    let root = &plan.mounts[0];
    assert_eq!(
        pairs(root, None),
        vec![s("fstype", "tmpfs"), s("fspath", "/x"), s("from", "tmpfs"),]
    );
    // ...read-only nullfs of the host's directories...
    let bin = &plan.mounts[1];
    assert_eq!(bin.source, MountSource::Host("/bin".into()));
    assert_eq!(
        pairs(bin, Some("/bin")),
        vec![
            s("fstype", "nullfs"),
            s("fspath", "/x"),
            s("target", "/bin"),
            flag("ro")
        ]
    );
    // ...devfs with the jail ruleset...
    let dev = plan
        .mounts
        .iter()
        .find(|m| m.fstype == Fstype::Devfs)
        .expect("devfs");
    assert_eq!(
        pairs(dev, None),
        vec![
            s("fstype", "devfs"),
            s("fspath", "/x"),
            s("from", "devfs"),
            s("ruleset", "4")
        ]
    );
    // ...the client mount...
    let data = plan
        .mounts
        .iter()
        .find(|m| m.target == "/data")
        .expect("client mount");
    assert_eq!(
        pairs(data, Some("/srv/data")),
        vec![
            s("fstype", "nullfs"),
            s("fspath", "/x"),
            s("target", "/srv/data"),
            flag("ro"),
            flag("nosuid")
        ]
    );
    // ...and last the read-only update of the root, without "from".
    let last = plan.mounts.last().expect("mounts");
    assert!(last.update);
    assert_eq!(
        pairs(last, None),
        vec![s("fstype", "tmpfs"), s("fspath", "/x"), flag("ro")]
    );
}

#[test]
fn paths_inside_the_jail_are_checked_components() {
    assert_eq!(components("/").unwrap(), Vec::<&str>::new());
    assert_eq!(components("/usr/local").unwrap(), vec!["usr", "local"]);
    assert_eq!(components("/tmp/").unwrap(), vec!["tmp"]);
    for bad in ["", "usr", "/a/../b", "/a//b", "/./a", "/.."] {
        assert!(components(bad).is_err(), "{bad:?}");
    }
    let root = PathBuf::from("/s/root");
    assert_eq!(host_path(&root, "/").unwrap(), root);
    assert_eq!(
        host_path(&root, "/usr/lib").unwrap(),
        PathBuf::from("/s/root/usr/lib")
    );
    assert!(host_path(&root, "/../etc").is_err());
}

#[test]
fn unmount_order_is_newest_first_and_only_below_the_dir() {
    let dir = PathBuf::from("/var/db/sandboxd/sandboxes/ab");
    let m = |p: &str, n: u8| (PathBuf::from(p), n);
    let all = [
        m("/", 0),
        m("/var/db/sandboxd/sandboxes/ab/root", 1),
        m("/var/db/sandboxd/sandboxes/ab/root/bin", 2),
        m("/var/db/sandboxd/sandboxes/abc/root", 3),
        m("/var/db/sandboxd/sandboxes/ab/root/dev", 4),
    ];
    let undo: Vec<u8> = mounts_to_undo(&all, &dir)
        .into_iter()
        .map(|(_, n)| n)
        .collect();
    assert_eq!(undo, vec![4, 2, 1]);
}

#[test]
fn main_argv_and_rlimits_come_from_the_plan() {
    let init = plan_for(|s| {
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
    });
    assert_eq!(
        main_argv(&init.steps),
        Some(&["/bin/sh".to_owned(), "/etc/rc".to_owned()][..])
    );
    assert_eq!(init.rlimits, vec![Rlimit::Nofile(64), Rlimit::As(1 << 30)]);
    let process = plan_for(|_| {});
    assert_eq!(
        main_argv(&process.steps),
        Some(&["/bin/true".to_owned()][..])
    );
    assert!(process.rlimits.is_empty());
    // Found on FreeBSD 15.1: IDLE sandboxes ran every Exec without these,
    // because the limits were taken from the first process's steps, which
    // an IDLE plan does not have.
    let idle = plan_for(|s| {
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
    });
    assert_eq!(main_argv(&idle.steps), None);
    assert_eq!(idle.rlimits, vec![Rlimit::Nofile(64), Rlimit::As(64 << 20)]);
}

#[test]
fn sysctl_values() {
    assert!(sysctl_flag(&[1]));
    assert!(sysctl_flag(&1i32.to_ne_bytes()));
    assert!(!sysctl_flag(&[0]));
    assert!(!sysctl_flag(&0i32.to_ne_bytes()));
    assert!(!sysctl_flag(&[]));
    assert_eq!(sysctl_string(b"14.1-RELEASE\0"), "14.1-RELEASE");
    assert_eq!(sysctl_string(b"14.1-RELEASE"), "14.1-RELEASE");
}

#[test]
fn racct_usage_and_rctl_filters() {
    let text = "cputime=0,datasize=4096,stacksize=0,coredumpsize=0,memoryuse=1048576,\
                memorylocked=0,maxproc=3,openfiles=12,vmemoryuse=2000000,pcpu=0\0";
    assert_eq!(racct_usage(text), (Some(1_048_576), Some(3)));
    assert_eq!(racct_usage(""), (None, None));
    let rule = RctlRule {
        jail: "sandboxd-ab".into(),
        resource: RctlResource::Vmemoryuse,
        amount: 1,
    };
    // The filter that removes a jail's rules matches the rules we add.
    assert!(
        rule.render()
            .starts_with(&format!("{}:", rctl_jail_filter("sandboxd-ab")))
    );
}

#[test]
fn host_network_commands_and_probes() {
    let alias = |a: &str| crate::plan::HostAlias {
        interface: "lo1".into(),
        address: a.parse().unwrap(),
    };
    let cases: &[(&str, bool, &[&str])] = &[
        (
            "203.0.113.2",
            true,
            &["lo1", "inet", "203.0.113.2/32", "alias"],
        ),
        (
            "203.0.113.2",
            false,
            &["lo1", "inet", "203.0.113.2", "-alias"],
        ),
        (
            "2001:db8::2",
            true,
            &["lo1", "inet6", "2001:db8::2/128", "alias"],
        ),
        (
            "2001:db8::2",
            false,
            &["lo1", "inet6", "2001:db8::2", "-alias"],
        ),
    ];
    for (a, add, want) in cases {
        assert_eq!(&ifconfig_alias_args(&alias(a), *add), want, "{a} {add}");
    }
    assert_eq!(
        pfctl_load_args("sandboxd/x"),
        ["-a", "sandboxd/x", "-f", "-"]
    );
    // Exactly what the backend loads, rules and nat, in two calls: on
    // FreeBSD 15.1 `-F all` exits 1 on an anchor (it also flushes tables,
    // after the anchor's ruleset is gone), which failed every destroy.
    assert_eq!(
        pfctl_flush_args("sandboxd/x"),
        [
            ["-a", "sandboxd/x", "-F", "rules"],
            ["-a", "sandboxd/x", "-F", "nat"]
        ]
    );
    for args in pfctl_flush_args("sandboxd/x") {
        assert!(!args.iter().any(|a| a == "all"), "{args:?}");
    }
    assert_eq!(
        pf_rules_text(&[
            "nat on em0 inet from 192.0.2.1 to any -> (em0)".into(),
            "b".into()
        ]),
        "nat on em0 inet from 192.0.2.1 to any -> (em0)\nb\n"
    );

    assert!(pf_enabled(
        "Status: Enabled for 0 days 00:05:12           Debug: Urgent\n\nState Table  Total  Rate\n"
    ));
    assert!(!pf_enabled(
        "Status: Disabled for 0 days 00:00:03   Debug: Urgent\n"
    ));
    assert!(!pf_enabled(""));

    let hooked = "nat-anchor \"sandboxd/*\" all\nrdr-anchor \"sandboxd/*\" all\nnat on em0 inet from 10.0.0.0/8 to any -> (em0) round-robin\n";
    assert!(pf_has_anchors(hooked));
    assert!(!pf_has_anchors("nat-anchor \"sandboxd/*\" all\n"));
    assert!(!pf_has_anchors("rdr-anchor \"sandboxd/*\" all\n"));
    assert!(!pf_has_anchors(
        "nat-anchor \"other/*\" all\nrdr-anchor \"other/*\" all\n"
    ));

    let route = "   route to: default\ndestination: default\n       mask: default\n    gateway: 192.0.2.1\n        fib: 0\n  interface: vtnet0\n      flags: <UP,GATEWAY,DONE,STATIC>\n";
    assert_eq!(route_interface(route).as_deref(), Some("vtnet0"));
    assert_eq!(route_interface("route: route has not been found\n"), None);

    // The record survives a JSON round trip.
    let record = HostNetRecord {
        aliases: vec![alias("203.0.113.2"), alias("2001:db8::2")],
        pf_anchor: Some("sandboxd/x".into()),
    };
    let json = serde_json::to_string(&record).unwrap();
    assert_eq!(
        serde_json::from_str::<HostNetRecord>(&json).unwrap(),
        record
    );
    assert_eq!(HOST_NET_RECORD, "hostnet.json");
}

#[test]
fn the_loopback_alias_is_a_recorded_daemon_alias_derived_from_the_id() {
    use crate::plan::{Actor, JailStep, loopback_alias};
    // LOOPBACK without VIMAGE: the daemon adds the alias before the
    // supervisor starts, so it is in hostnet.json for cleanup.
    let host = HostFacts {
        vimage: false,
        ..HostFacts::assumed()
    };
    let loopback: fn(&mut SandboxSpec) =
        |s| s.network.mode = sandboxd_core::spec::NetworkMode::Loopback;
    let plan = plan_on(&host, loopback);
    let address = loopback_alias(ID);
    let step = plan
        .steps
        .iter()
        .find(|s| matches!(s, JailStep::AddLoopbackAlias(_)))
        .expect("alias step");
    assert_eq!(step, &JailStep::AddLoopbackAlias(address));
    assert_eq!(step.actor(), Actor::Daemon);
    // Before anything the supervisor does.
    let first_supervisor = plan
        .steps
        .iter()
        .position(|s| s.actor() != Actor::Daemon)
        .expect("supervisor steps");
    let at = plan.steps.iter().position(|s| s == step).expect("step");
    assert!(at < first_supervisor, "{:?}", plan.steps);
    // Derived from the id alone, stable, in 127.128.0.0/9.
    assert_eq!(loopback_alias(ID), address);
    assert_ne!(loopback_alias("0123456789abcdee"), address);
    assert!(address.octets()[0] == 127 && address.octets()[1] >= 128);
    // Recorded and removed like a RESTRICTED alias, on lo0.
    let alias = loopback_host_alias(address);
    assert_eq!(alias.interface, LOOPBACK_INTERFACE);
    assert_eq!(
        ifconfig_alias_args(&alias, true),
        ["lo0", "inet", &format!("{address}/32"), "alias"]
    );
    assert_eq!(
        ifconfig_alias_args(&alias, false),
        ["lo0", "inet", &address.to_string(), "-alias"]
    );
    let record = HostNetRecord {
        aliases: vec![alias.clone()],
        pf_anchor: None,
    };
    let json = serde_json::to_string(&record).unwrap();
    assert_eq!(
        serde_json::from_str::<HostNetRecord>(&json)
            .unwrap()
            .aliases,
        [alias]
    );
    // With VIMAGE there is no host alias at all.
    let vnet = plan_for(loopback);
    assert!(
        !vnet
            .steps
            .iter()
            .any(|s| matches!(s, JailStep::AddLoopbackAlias(_)))
    );
}

/// A host whose commands fail as told, recording what cleanup did.
#[derive(Default)]
struct FakeHost {
    /// Commands (program and arguments joined) that fail.
    failing: Vec<String>,
    /// Addresses not configured (any more).
    absent: Vec<IpAddr>,
    /// Every command run, in order.
    ran: Vec<String>,
    /// Every record saved, in order.
    saved: Vec<HostNetRecord>,
}

impl HostNetOps for FakeHost {
    fn run(&mut self, step: &'static str, program: &str, args: &[String]) -> Result<(), String> {
        let line = format!("{program} {}", args.join(" "));
        self.ran.push(line.clone());
        if self.failing.contains(&line) {
            Err(format!("{step}: {line}: exit status: 1"))
        } else {
            Ok(())
        }
    }
    fn address_present(&mut self, address: IpAddr) -> bool {
        !self.absent.contains(&address)
    }
    fn save(&mut self, record: &HostNetRecord) -> Result<(), String> {
        self.saved.push(record.clone());
        Ok(())
    }
}

fn lo1(a: &str) -> crate::plan::HostAlias {
    crate::plan::HostAlias {
        interface: "lo1".into(),
        address: a.parse().unwrap(),
    }
}

#[test]
fn host_network_cleanup_undoes_each_resource_and_keeps_what_failed() {
    let full = || HostNetRecord {
        aliases: vec![lo1("203.0.113.4"), lo1("2001:db8::4")],
        pf_anchor: Some("sandboxd/ab".into()),
    };
    const FLUSH_RULES: &str = "/sbin/pfctl -a sandboxd/ab -F rules";
    const FLUSH_NAT: &str = "/sbin/pfctl -a sandboxd/ab -F nat";
    const RM4: &str = "/sbin/ifconfig lo1 inet 203.0.113.4 -alias";
    const RM6: &str = "/sbin/ifconfig lo1 inet6 2001:db8::4 -alias";
    let (flush_rules, flush_nat, rm6) = (FLUSH_RULES, FLUSH_NAT, RM6);
    struct Case {
        what: &'static str,
        failing: &'static [&'static str],
        /// What is left in the record afterwards.
        left: fn() -> HostNetRecord,
        errors: usize,
    }
    let cases = [
        Case {
            what: "all goes",
            failing: &[],
            left: HostNetRecord::default,
            errors: 0,
        },
        Case {
            // The failure found on 15.1 aborted the cleanup before the
            // aliases: they stayed on lo1 and in the record.
            what: "a failed flush does not stop the aliases",
            failing: &[FLUSH_NAT],
            left: || HostNetRecord {
                aliases: vec![],
                pf_anchor: Some("sandboxd/ab".into()),
            },
            errors: 1,
        },
        Case {
            what: "one alias fails, the other goes",
            failing: &[RM4],
            left: || HostNetRecord {
                aliases: vec![lo1("203.0.113.4")],
                pf_anchor: None,
            },
            errors: 1,
        },
        Case {
            what: "everything fails: everything stays recorded",
            failing: &[FLUSH_RULES, RM4, RM6],
            left: full,
            errors: 3,
        },
    ];
    for c in cases {
        let mut host = FakeHost {
            failing: c.failing.iter().map(|s| (*s).to_owned()).collect(),
            ..FakeHost::default()
        };
        let (left, errors) = undo_host_net(full(), None, &mut host);
        assert_eq!(left, (c.left)(), "{}", c.what);
        assert_eq!(errors.len(), c.errors, "{}: {errors:?}", c.what);
        // Every resource was tried, whatever failed before it: both
        // flushes, then the aliases newest first.
        assert_eq!(host.ran, [FLUSH_RULES, FLUSH_NAT, RM6, RM4], "{}", c.what);
        // The record on disk always ends as what is left.
        assert_eq!(
            host.saved.last().cloned().unwrap_or_else(full),
            left,
            "{}",
            c.what
        );
    }
    // An address already gone is not removed again, and counts as undone.
    let mut host = FakeHost {
        absent: vec!["203.0.113.4".parse().unwrap()],
        ..FakeHost::default()
    };
    let (left, errors) = undo_host_net(full(), None, &mut host);
    assert_eq!((left, errors.len()), (HostNetRecord::default(), 0));
    assert_eq!(host.ran, [flush_rules, flush_nat, rm6]);
    // Without a record, the id's anchor is still flushed (a daemon crash
    // between loading it and recording it), and a failure to do so is
    // not an error: there may be nothing to flush.
    let mut host = FakeHost {
        failing: vec![flush_rules.to_owned()],
        ..FakeHost::default()
    };
    let (left, errors) = undo_host_net(HostNetRecord::default(), Some("sandboxd/ab"), &mut host);
    assert_eq!((left, errors.len()), (HostNetRecord::default(), 0));
    assert_eq!(host.ran, [flush_rules, flush_nat]);
    assert!(host.saved.is_empty());
}
