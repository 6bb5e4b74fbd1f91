//! Tests of the network plan and the host-side commands, run on every OS.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::net::IpAddr;
use std::path::PathBuf;

use sandboxd_core::SandboxPaths;
use sandboxd_core::spec::{ProcessSpec, SandboxSpec};
use sandboxd_core::validate::{Policy, validate};

use super::*;
use crate::plan::{HostFacts, JailPlan, build};

const ID: &str = "0123456789abcdef";

fn plan_for(edit: fn(&mut SandboxSpec)) -> JailPlan {
    plan_on(&HostFacts::assumed(), edit)
}

fn plan_on(host: &HostFacts, edit: fn(&mut SandboxSpec)) -> JailPlan {
    let mut s = SandboxSpec {
        process: ProcessSpec {
            argv: vec!["/bin/true".into()],
            ..Default::default()
        },
        ..Default::default()
    };
    edit(&mut s);
    let spec = validate(s, &Policy::default()).expect("valid spec");
    let sandbox = SandboxPaths {
        id: ID.into(),
        dir: PathBuf::from("/var/db/sandboxd/sandboxes").join(ID),
        ..Default::default()
    };
    build(&spec, &sandbox, host).expect("plan builds")
}

#[test]
fn host_network_commands_and_probes() {
    let alias = |a: &str| HostAlias {
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
    use crate::plan::{Actor, JailStep};
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

fn lo1(a: &str) -> HostAlias {
    HostAlias {
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
