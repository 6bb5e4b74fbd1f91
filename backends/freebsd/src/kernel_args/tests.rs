//! Tests of the kernel arguments and parsers, run on every OS.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use sandboxd_core::SandboxPaths;
use sandboxd_core::spec::{MountSpec, ProcessSpec, SandboxSpec};
use sandboxd_core::validate::{Policy, validate};

use super::*;
use crate::plan::{HostFacts, MountSource, RctlResource, RctlRule, build};

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
        vec![
            s("fstype", "tmpfs"),
            s("fspath", "/x"),
            s("from", "tmpfs"),
            s("size", "1g"),
        ]
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
    let u = racct_usage(text);
    assert_eq!(
        (u.memory_bytes, u.pids, u.cpu_usec),
        (Some(1_048_576), Some(3), Some(0))
    );
    // racct's I/O counters are rates: never reported as totals.
    assert_eq!((u.io_read_bytes, u.io_write_bytes), (None, None));
    let busy = racct_usage("cputime=7,memoryuse=10,maxproc=1,readbps=4096,writebps=512");
    assert_eq!(busy.cpu_usec, Some(7_000_000));
    assert_eq!((busy.io_read_bytes, busy.io_write_bytes), (None, None));
    assert_eq!(racct_usage(""), sandboxd_core::Usage::default());
    assert_eq!(racct_usage("memoryuse=x").memory_bytes, None);
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
