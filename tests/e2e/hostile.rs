//! Hostile and malformed requests: each gets a clear status naming the
//! problem, and none changes the host (no new mounts, no new files outside
//! the state dir, no sandbox left behind).

use std::collections::BTreeSet;
use std::path::Path;

use sandboxd_proto::v1 as pb;
use tonic::Code;

use crate::harness::{BackendUnderTest, Clients, Daemon, argv, backend, mount_points};

type Edit = fn(&mut pb::SandboxSpec);

fn base() -> pb::SandboxSpec {
    pb::SandboxSpec {
        process: Some(argv(&["/bin/true"])),
        ..Default::default()
    }
}

fn proc_mut(s: &mut pb::SandboxSpec) -> &mut pb::ProcessSpec {
    s.process.get_or_insert_with(Default::default)
}

fn limit(value: u64) -> Option<pb::Limit> {
    Some(pb::Limit {
        value,
        requirement: 0,
    })
}

/// Creates that must fail: (what, edit, code, text the message must contain).
const CREATES: &[(&str, Edit, Code, &str)] = &[
    (
        "image traversal",
        |s| s.image = "../..".into(),
        Code::InvalidArgument,
        "spec.image",
    ),
    (
        "image dotdot prefix",
        |s| s.image = "../etc".into(),
        Code::InvalidArgument,
        "spec.image",
    ),
    (
        "image absolute",
        |s| s.image = "/etc".into(),
        Code::InvalidArgument,
        "spec.image",
    ),
    (
        "image with slash",
        |s| s.image = "tiny/../../etc".into(),
        Code::InvalidArgument,
        "spec.image",
    ),
    (
        "image nul",
        |s| s.image = "ti\0ny".into(),
        Code::InvalidArgument,
        "spec.image",
    ),
    (
        "image symlink escape",
        |s| s.image = "evil".into(),
        Code::InvalidArgument,
        "symlink",
    ),
    (
        "image missing",
        |s| s.image = "nope".into(),
        Code::NotFound,
        "no image named",
    ),
    (
        "empty argv",
        |s| proc_mut(s).argv.clear(),
        Code::InvalidArgument,
        "spec.process.argv",
    ),
    (
        "empty argv0",
        |s| proc_mut(s).argv = vec![String::new()],
        Code::InvalidArgument,
        "argv[0]",
    ),
    (
        "nul in argv",
        |s| proc_mut(s).argv.push("a\0b".into()),
        Code::InvalidArgument,
        "NUL",
    ),
    (
        "nul in env",
        |s| proc_mut(s).env.push("K=v\0".into()),
        Code::InvalidArgument,
        "NUL",
    ),
    (
        "env without =",
        |s| proc_mut(s).env.push("JUSTKEY".into()),
        Code::InvalidArgument,
        "KEY=VALUE",
    ),
    (
        "huge env",
        |s| proc_mut(s).env = vec![format!("BIG={}", "x".repeat(300_000))],
        Code::InvalidArgument,
        "over the limit",
    ),
    (
        "too many env",
        |s| proc_mut(s).env = vec!["A=b".into(); 2000],
        Code::InvalidArgument,
        "exceed the limit",
    ),
    (
        "relative cwd",
        |s| proc_mut(s).cwd = "tmp".into(),
        Code::InvalidArgument,
        "absolute",
    ),
    (
        "cwd traversal",
        |s| proc_mut(s).cwd = "/tmp/../../etc".into(),
        Code::InvalidArgument,
        "..",
    ),
    (
        "uid -1",
        |s| {
            proc_mut(s).user = Some(pb::User {
                uid: Some(u32::MAX),
                ..Default::default()
            })
        },
        Code::InvalidArgument,
        "uid",
    ),
    (
        "bad name",
        |s| s.name = "Not_A_Name".into(),
        Code::InvalidArgument,
        "spec.name",
    ),
    (
        "bad hostname",
        |s| s.hostname = "-bad-".into(),
        Code::InvalidArgument,
        "spec.hostname",
    ),
    (
        "bad label key",
        |s| {
            s.labels.insert("bad key!".into(), "v".into());
        },
        Code::InvalidArgument,
        "spec.labels",
    ),
    (
        "unknown mode",
        |s| s.mode = 42,
        Code::InvalidArgument,
        "spec.mode",
    ),
    (
        "unknown requirement",
        |s| {
            s.isolation = Some(pb::Isolation {
                pid: 9,
                ..Default::default()
            })
        },
        Code::InvalidArgument,
        "spec.isolation.pid",
    ),
    (
        "idle with argv",
        |s| s.mode = pb::SandboxMode::Idle as i32,
        Code::InvalidArgument,
        "IDLE",
    ),
    (
        "zero pids",
        |s| {
            s.limits = Some(pb::Limits {
                pids: limit(0),
                ..Default::default()
            })
        },
        Code::InvalidArgument,
        "pids",
    ),
    (
        "limit above cap",
        |s| {
            s.limits = Some(pb::Limits {
                memory_bytes: limit(u64::MAX),
                ..Default::default()
            })
        },
        Code::InvalidArgument,
        "cap",
    ),
    (
        "stop signal 99",
        |s| s.stop_signal = 99,
        Code::InvalidArgument,
        "stop_signal",
    ),
    (
        "mount outside allowlist",
        |s| {
            s.mounts.push(pb::Mount {
                source: "/etc".into(),
                target: "/x".into(),
                read_only: true,
            })
        },
        Code::InvalidArgument,
        "allowed mount source",
    ),
    (
        "mount source holding the daemon's state dir",
        |s| {
            s.mounts.push(pb::Mount {
                source: "/tmp".into(),
                target: "/x".into(),
                read_only: true,
            })
        },
        Code::InvalidArgument,
        "the daemon's state directory",
    ),
    (
        "mount source traversal",
        |s| {
            s.mounts.push(pb::Mount {
                source: "/srv/sandboxd-allowed/../../etc".into(),
                target: "/x".into(),
                read_only: true,
            })
        },
        Code::InvalidArgument,
        "..",
    ),
    (
        "mount target traversal",
        |s| {
            s.mounts.push(pb::Mount {
                source: "/srv/sandboxd-allowed".into(),
                target: "/../../etc".into(),
                read_only: true,
            })
        },
        Code::InvalidArgument,
        "..",
    ),
    (
        "mount over root",
        |s| {
            s.mounts.push(pb::Mount {
                source: "/srv/sandboxd-allowed".into(),
                target: "/".into(),
                read_only: true,
            })
        },
        Code::InvalidArgument,
        "root",
    ),
    (
        "restricted on a daemon without an address pool",
        |s| {
            s.network = Some(pb::NetworkPolicy {
                mode: pb::NetworkMode::Restricted as i32,
                ..Default::default()
            })
        },
        Code::FailedPrecondition,
        "network",
    ),
    (
        "malformed address",
        |s| {
            s.network = Some(pb::NetworkPolicy {
                mode: pb::NetworkMode::Restricted as i32,
                addresses: vec!["203.0.113.300".into()],
                ..Default::default()
            })
        },
        Code::InvalidArgument,
        "not an IPv4 or IPv6",
    ),
    (
        "NAT outside RESTRICTED",
        |s| {
            s.network = Some(pb::NetworkPolicy {
                mode: pb::NetworkMode::None as i32,
                outbound_nat: true,
                ..Default::default()
            })
        },
        Code::InvalidArgument,
        "spec.network.outbound_nat",
    ),
    (
        "port forward to port 0",
        |s| {
            s.network = Some(pb::NetworkPolicy {
                mode: pb::NetworkMode::Restricted as i32,
                port_forwards: vec![pb::PortForward {
                    protocol: 0,
                    host_port: 8080,
                    sandbox_port: 0,
                }],
                ..Default::default()
            })
        },
        Code::InvalidArgument,
        "sandbox_port",
    ),
    (
        "port forward of an unknown protocol",
        |s| {
            s.network = Some(pb::NetworkPolicy {
                mode: pb::NetworkMode::Restricted as i32,
                port_forwards: vec![pb::PortForward {
                    protocol: 42,
                    host_port: 8080,
                    sandbox_port: 80,
                }],
                ..Default::default()
            })
        },
        Code::InvalidArgument,
        "protocol",
    ),
    (
        "a host port forwarded twice",
        |s| {
            let f = pb::PortForward {
                protocol: 0,
                host_port: 8080,
                sandbox_port: 80,
            };
            s.network = Some(pb::NetworkPolicy {
                mode: pb::NetworkMode::Restricted as i32,
                port_forwards: vec![f, f],
                ..Default::default()
            })
        },
        Code::InvalidArgument,
        "forwarded twice",
    ),
    (
        "a nameserver that is not an address",
        |s| {
            s.network = Some(pb::NetworkPolicy {
                dns_servers: vec!["resolver.example".into()],
                ..Default::default()
            })
        },
        Code::InvalidArgument,
        "spec.network.dns_servers[0]",
    ),
    (
        "four nameservers",
        |s| {
            s.network = Some(pb::NetworkPolicy {
                dns_servers: vec!["203.0.113.53".into(); 4],
                ..Default::default()
            })
        },
        Code::InvalidArgument,
        "at most 3 nameservers",
    ),
    (
        "a search domain with a newline (resolv.conf injection)",
        |s| {
            s.network = Some(pb::NetworkPolicy {
                dns_servers: vec!["203.0.113.53".into()],
                dns_search: vec!["example.org\nnameserver 198.51.100.66".into()],
                ..Default::default()
            })
        },
        Code::InvalidArgument,
        "spec.network.dns_search[0]",
    ),
    (
        "HOST network without --allow-host-network",
        |s| {
            s.network = Some(pb::NetworkPolicy {
                mode: pb::NetworkMode::Host as i32,
                ..Default::default()
            })
        },
        Code::PermissionDenied,
        "--allow-host-network",
    ),
    (
        "missing program",
        |s| proc_mut(s).argv = vec!["/no/such/program".into()],
        Code::FailedPrecondition,
        "find program",
    ),
    // A missing cwd is made for the main process (as Docker does); one
    // that cannot be is refused at that step.
    (
        "cwd under a file",
        |s| proc_mut(s).cwd = "/etc/passwd/dir".into(),
        Code::FailedPrecondition,
        "create working directory",
    ),
];

/// The cwd of the read-only refusal above.
const READ_ONLY_CWD: &str = "/usr/sandboxd-hostile-no-such-dir";

/// Refused only by the chroot backend.
const CHROOT_REFUSALS: &[(&str, Edit, Code, &str)] = &[
    (
        "REQUIRED pid on chroot",
        |s| {
            s.isolation = Some(pb::Isolation {
                pid: pb::Requirement::Required as i32,
                ..Default::default()
            })
        },
        Code::FailedPrecondition,
        "pid",
    ),
    (
        "hostname on chroot",
        |s| s.hostname = "web".into(),
        Code::FailedPrecondition,
        "hostname",
    ),
    (
        "memory limit on chroot",
        |s| {
            s.limits = Some(pb::Limits {
                memory_bytes: limit(64 << 20),
                ..Default::default()
            })
        },
        Code::FailedPrecondition,
        "memory_limit",
    ),
    (
        "network none on chroot",
        |s| {
            s.network = Some(pb::NetworkPolicy {
                mode: pb::NetworkMode::None as i32,
                ..Default::default()
            })
        },
        Code::FailedPrecondition,
        "network",
    ),
    (
        "root escape-prone filesystem",
        |s| {
            s.isolation = Some(pb::Isolation {
                filesystem: pb::Requirement::Required as i32,
                ..Default::default()
            });
            proc_mut(s).user = Some(pb::User {
                uid: Some(0),
                gid: Some(0),
                ..Default::default()
            });
        },
        Code::FailedPrecondition,
        "filesystem",
    ),
];

/// Refused by the Linux backend (what its runtime does not do yet, and
/// targets it reserves).
const LINUX_REFUSALS: &[(&str, Edit, Code, &str)] = &[
    // The "host" image's /usr is a read-only bind of the host's: the
    // directory is made neither there nor on the host (checked below).
    (
        "missing cwd on a read-only part of the image",
        |s| proc_mut(s).cwd = READ_ONLY_CWD.into(),
        Code::FailedPrecondition,
        "create working directory",
    ),
    (
        "user namespace with a uid outside the id map",
        |s| {
            s.isolation = Some(pb::Isolation {
                user: pb::Requirement::Required as i32,
                ..Default::default()
            });
            proc_mut(s).user = Some(pb::User {
                uid: Some(70_000),
                ..Default::default()
            });
        },
        Code::FailedPrecondition,
        "70000",
    ),
    (
        "a named RESTRICTED address on a daemon without a pool",
        |s| {
            s.network = Some(pb::NetworkPolicy {
                mode: pb::NetworkMode::Restricted as i32,
                addresses: vec!["203.0.113.10".into()],
                ..Default::default()
            })
        },
        Code::FailedPrecondition,
        "network",
    ),
    (
        "mount target under /proc",
        |s| {
            s.mounts.push(pb::Mount {
                source: "/srv/sandboxd-allowed".into(),
                target: "/proc/x".into(),
                read_only: true,
            })
        },
        Code::FailedPrecondition,
        "/proc",
    ),
];

/// Refused by the FreeBSD jail backend (what FreeBSD lacks, targets the
/// jail's devfs owns) and by the daemon without a pool (as on Linux).
const FREEBSD_REFUSALS: &[(&str, Edit, Code, &str)] = &[
    (
        "REQUIRED cgroup on FreeBSD",
        |s| {
            s.isolation = Some(pb::Isolation {
                cgroup: pb::Requirement::Required as i32,
                ..Default::default()
            })
        },
        Code::FailedPrecondition,
        "cgroup",
    ),
    (
        "a named RESTRICTED address on a daemon without a pool",
        |s| {
            s.network = Some(pb::NetworkPolicy {
                mode: pb::NetworkMode::Restricted as i32,
                addresses: vec!["203.0.113.10".into()],
                ..Default::default()
            })
        },
        Code::FailedPrecondition,
        "network",
    ),
    (
        "mount target under /dev",
        |s| {
            s.mounts.push(pb::Mount {
                source: "/srv/sandboxd-allowed".into(),
                target: "/dev/x".into(),
                read_only: true,
            })
        },
        Code::FailedPrecondition,
        "/dev",
    ),
];

/// A snapshot of what a hostile request must not change.
/// A digest of every regular file's path and content under `root`
/// (unreadable files count by path only).
fn digest(root: &Path) -> u64 {
    use std::hash::{Hash, Hasher};
    fn walk(dir: &Path, h: &mut std::collections::hash_map::DefaultHasher) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        let mut entries: Vec<_> = entries.flatten().collect();
        entries.sort_by_key(std::fs::DirEntry::path);
        for e in entries {
            let p = e.path();
            p.hash(h);
            match e.file_type() {
                Ok(t) if t.is_dir() => walk(&p, h),
                Ok(t) if t.is_file() => std::fs::read(&p).unwrap_or_default().hash(h),
                _ => {}
            }
        }
    }
    let mut h = std::collections::hash_map::DefaultHasher::new();
    walk(root, &mut h);
    h.finish()
}

/// A small tree the hostile requests aim at (by mount source and path).
fn plant_canary(d: &Daemon) {
    let dir = d.dir.join("canary");
    std::fs::create_dir_all(dir.join("sub")).expect("canary dir");
    std::fs::write(dir.join("secret"), "do not touch").expect("canary");
    std::fs::write(dir.join("sub/key"), "nor this").expect("canary");
}

fn host_state(d: &Daemon) -> (BTreeSet<String>, BTreeSet<String>) {
    fn walk(dir: &Path, skip: &Path, out: &mut BTreeSet<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p == skip {
                continue;
            }
            out.insert(p.display().to_string());
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                walk(&p, skip, out);
            }
        }
    }
    let mut files = BTreeSet::new();
    walk(&d.dir, &d.state, &mut files);
    // Contents, not just names: a canary tree of our own and the host's /etc.
    files.insert(format!("digest {}", digest(&d.dir.join("canary"))));
    files.insert(format!("digest /etc {}", digest(Path::new("/etc"))));
    walk(
        Path::new("/srv/sandboxd-allowed"),
        Path::new("/nonexistent"),
        &mut files,
    );
    // Other tests run in parallel and mount under their own directories:
    // compare ours plus every mount point that belongs to no test.
    let mounts = mount_points()
        .into_iter()
        .filter(|m| Path::new(m).starts_with(&d.dir) || !m.contains("sandboxd-e2e-"))
        .collect();
    (files, mounts)
}

async fn state_dir_entries(d: &Daemon) -> usize {
    std::fs::read_dir(d.state.join("sandboxes"))
        .map(|e| e.count())
        .unwrap_or(0)
}

#[tokio::test]
async fn hostile_requests_get_clear_errors_and_change_nothing() {
    std::fs::create_dir_all("/srv/sandboxd-allowed").expect("allowed dir");
    // /tmp holds the daemon's own directories (the harness puts them
    // there): allowed as a source, it must still not expose them.
    let d = Daemon::start_with(&[
        "--allow-mount-source",
        "/srv/sandboxd-allowed",
        "--allow-mount-source",
        "/tmp",
    ]);
    if cfg!(target_os = "linux") {
        d.make_busybox_image("tiny");
    } else {
        // The busybox image is a Linux binary; an empty image is enough
        // here (nothing runs in it).
        std::fs::create_dir_all(d.images.join("tiny/bin")).expect("tiny image");
    }
    std::os::unix::fs::symlink("/", d.images.join("evil")).expect("symlink image");
    let mut c = d.clients().await;
    plant_canary(&d);
    let before = host_state(&d);
    let mut count = 0;
    let backend_cases = match backend() {
        BackendUnderTest::Linux => LINUX_REFUSALS,
        BackendUnderTest::Freebsd => FREEBSD_REFUSALS,
        BackendUnderTest::Chroot => CHROOT_REFUSALS,
    };
    for (what, edit, want_code, want_text) in CREATES.iter().chain(backend_cases) {
        let mut spec = base();
        edit(&mut spec);
        let err = c
            .sandboxes
            .create_sandbox(pb::CreateSandboxRequest {
                spec: Some(spec),
                request_id: String::new(),
                verify: false,
            })
            .await
            .expect_err(what);
        assert_eq!(err.code(), *want_code, "{what}: {}", err.message());
        assert!(
            err.message().contains(want_text),
            "{what}: {:?} lacks {want_text:?}",
            err.message()
        );
        assert!(
            !err.message().contains('\n'),
            "{what}: one-line message: {:?}",
            err.message()
        );
        count += 1;
    }
    assert_eq!(
        state_dir_entries(&d).await,
        0,
        "a failed create left state behind"
    );
    count += other_hostile_calls(&mut c).await;
    eprintln!("{count} hostile requests, each refused with the expected status");
    assert!(count >= 60, "only {count} hostile requests");
    assert_eq!(host_state(&d), before, "hostile requests changed the host");
    assert!(
        !Path::new(READ_ONLY_CWD).exists(),
        "{READ_ONLY_CWD} was made on the host"
    );
    let list = c
        .sandboxes
        .list_sandboxes(pb::ListSandboxesRequest::default())
        .await
        .expect("list")
        .into_inner();
    assert!(list.sandboxes.is_empty());
    d.finish().await;
}

/// Non-create hostile calls; returns how many ran.
async fn other_hostile_calls(c: &mut Clients) -> usize {
    let mut n = 0;
    let mut check = |what: &str, r: Result<(), tonic::Status>, code: Code, text: &str| {
        let err = r.expect_err(what);
        assert_eq!(err.code(), code, "{what}: {}", err.message());
        assert!(
            err.message().contains(text),
            "{what}: {:?} lacks {text:?}",
            err.message()
        );
        n += 1;
    };
    let bad_ids = ["../../etc", "", "0123456789ABCDEF", "a/b", "x\0y"];
    for id in bad_ids {
        let r = c
            .sandboxes
            .get_sandbox(pb::GetSandboxRequest { id: id.into() })
            .await
            .map(drop);
        check("get bad id", r, Code::InvalidArgument, "id");
        let r = c
            .sandboxes
            .destroy_sandbox(pb::DestroySandboxRequest { id: id.into() })
            .await
            .map(drop);
        check("destroy bad id", r, Code::InvalidArgument, "id");
    }
    let r = c
        .sandboxes
        .get_sandbox(pb::GetSandboxRequest {
            id: "0123456789abcdef".into(),
        })
        .await
        .map(drop);
    check("get unknown", r, Code::NotFound, "not found");
    let r = c
        .processes
        .exec_sync(pb::ExecSyncRequest {
            sandbox_id: "0123456789abcdef".into(),
            process: Some(argv(&["/bin/true"])),
            ..Default::default()
        })
        .await
        .map(drop);
    check("exec into unknown sandbox", r, Code::NotFound, "not found");
    let r = c
        .sandboxes
        .create_sandbox(pb::CreateSandboxRequest {
            spec: Some(base()),
            request_id: "bad/id".into(),
            verify: false,
        })
        .await
        .map(drop);
    check("bad request id", r, Code::InvalidArgument, "request_id");
    let r = c
        .sandboxes
        .list_sandboxes(pb::ListSandboxesRequest {
            label_selector: "a=b,(".into(),
            ..Default::default()
        })
        .await
        .map(drop);
    check("bad selector", r, Code::InvalidArgument, "label_selector");
    let r = c
        .sandboxes
        .stop_sandbox(pb::StopSandboxRequest {
            id: "0123456789abcdef".into(),
            grace_seconds: 1,
            signal: 0,
        })
        .await
        .map(drop);
    check("stop unknown", r, Code::NotFound, "not found");
    let r = c
        .host
        .plan_sandbox(pb::PlanSandboxRequest {
            backend: 77,
            spec: Some(base()),
            assumed_host: false,
        })
        .await
        .map(drop);
    check("plan unknown backend", r, Code::InvalidArgument, "backend");
    let r = c
        .events
        .watch_events(pb::WatchEventsRequest {
            after_revision: 1 << 40,
            sandbox_id: String::new(),
        })
        .await
        .map(drop);
    check(
        "events from the future",
        r,
        Code::OutOfRange,
        "after_revision",
    );
    // Over the daemon's message limit (4 MiB by default).
    let mut huge = base();
    proc_mut(&mut huge).argv = vec!["/bin/true".into(), "x".repeat(5 << 20)];
    let r = c
        .sandboxes
        .create_sandbox(pb::CreateSandboxRequest {
            spec: Some(huge),
            request_id: String::new(),
            verify: false,
        })
        .await
        .map(drop);
    check(
        "a request over the message limit",
        r,
        Code::ResourceExhausted,
        "too large",
    );
    n
}

#[tokio::test]
async fn exec_level_hostility_in_a_live_sandbox() {
    let d = Daemon::start();
    let mut c = d.clients().await;
    let sb = c.idle("host").await;
    let mut tty = argv(&["/bin/true"]);
    tty.tty = true;
    let err = c
        .processes
        .exec_sync(pb::ExecSyncRequest {
            sandbox_id: sb.id.clone(),
            process: Some(tty),
            ..Default::default()
        })
        .await
        .expect_err("tty in ExecSync");
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = c
        .processes
        .exec_sync(pb::ExecSyncRequest {
            sandbox_id: sb.id.clone(),
            process: Some(argv(&[])),
            ..Default::default()
        })
        .await
        .expect_err("empty argv");
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = c
        .processes
        .signal_process(pb::SignalProcessRequest {
            sandbox_id: sb.id.clone(),
            pid: 1,
            signal: 9,
        })
        .await
        .expect_err("signal to host init");
    assert_eq!(err.code(), Code::NotFound, "{}", err.message());
    let err = c
        .processes
        .signal_process(pb::SignalProcessRequest {
            sandbox_id: sb.id.clone(),
            pid: 1,
            signal: 0,
        })
        .await
        .expect_err("signal 0");
    assert_eq!(err.code(), Code::InvalidArgument);
    // Output caps: a flood is cut at the cap and flagged.
    let r = c
        .processes
        .exec_sync(pb::ExecSyncRequest {
            sandbox_id: sb.id.clone(),
            process: Some(argv(&["/bin/sh", "-c", "head -c 100000 /dev/zero"])),
            output_limit_bytes: 1000,
            ..Default::default()
        })
        .await
        .expect("flood")
        .into_inner();
    assert_eq!(r.stdout.len(), 1000);
    assert!(r.truncated);
    d.finish().await;
}

/// An IDLE sandbox of the host image in which a payload sends `signal` to
/// every process of its uid (`kill -1`) in a loop, returned once the loop
/// runs. It waits a second first, so that its launcher (of the same uid)
/// has exited before it could be hit too. Only where the sandbox has its
/// own pid namespace: elsewhere that would be every process of the uid on
/// the host.
async fn signalling_its_uid(c: &mut Clients, signal: &str) -> pb::Sandbox {
    let sb = c.idle("host").await;
    let r = c
        .sh(
            &sb.id,
            &format!(
                "(sleep 1; while :; do kill -s {signal} -- -1; done) >/dev/null 2>&1 </dev/null & echo started"
            ),
        )
        .await;
    assert_eq!(crate::harness::out(&r), "started\n");
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    sb
}

/// ExecSync of [`slow_to_exec_true`] with `timeout_ms`.
async fn exec_slow_true(
    c: &mut Clients,
    id: &str,
    timeout_ms: u64,
) -> Result<tonic::Response<pb::ExecSyncResponse>, tonic::Status> {
    c.processes
        .exec_sync(pb::ExecSyncRequest {
            sandbox_id: id.into(),
            process: Some(slow_to_exec_true()),
            timeout_ms,
            ..Default::default()
        })
        .await
}

/// `true` found through a PATH of 20 000 missing directories before /bin.
/// The window between an exec's fork and its exec is a fraction of a
/// millisecond, too short to hit reliably on a loaded machine; this one
/// searches the PATH as execvp would, one openat2 each, tens of
/// milliseconds after its setuid, and takes a pending signal on the return
/// from any of them.
fn slow_to_exec_true() -> pb::ProcessSpec {
    let mut path = String::from("PATH=");
    for i in 0..20_000 {
        path.push_str(&format!("/m{i}:"));
    }
    path.push_str("/bin");
    let mut process = argv(&["true"]);
    process.env = vec![path];
    process
}

/// A payload that SIGSTOPs every process of its uid, in a loop (`kill -s
/// STOP -- -1`), catches a new exec's child between its setuid and its exec,
/// when it is still the supervisor's fork. The supervisor must not wait
/// for that child forever: it would answer nothing more (no exec, no stop)
/// and a destroy would wait for its shutdown timeout. It gives a child
/// that has not exec'd in time up (killed, the exec failed), and every
/// call answers.
#[cfg_attr(
    any(feature = "force-chroot", not(target_os = "linux")),
    ignore = "needs the Linux backend's pid namespace: without one, kill -1 would stop every process of that uid on the host"
)]
#[tokio::test]
async fn a_payload_that_stops_new_execs_cannot_wedge_the_supervisor() {
    let d = Daemon::start();
    let mut c = d.clients().await;
    let sb = signalling_its_uid(&mut c, "STOP").await;
    // Until one exec is caught before its exec and given up (each at most
    // the supervisor's 5 s); one caught after its exec is a stopped `true`,
    // which its 500 ms timeout ends.
    let mut gave_up = None;
    for i in 0..6 {
        let call = exec_slow_true(&mut c, &sb.id, 500);
        let answered = tokio::time::timeout(std::time::Duration::from_secs(15), call)
            .await
            .unwrap_or_else(|_| panic!("exec {i} got no answer in 15 s: the supervisor is wedged"));
        if let Err(status) = answered {
            assert!(
                status.message().contains("did not exec"),
                "exec {i}: {status:?}"
            );
            gave_up = Some(i);
            break;
        }
    }
    assert!(
        gave_up.is_some(),
        "no exec was stopped before its exec in 6 tries: the attack was not exercised"
    );
    let began = std::time::Instant::now();
    assert!(c.destroy(&sb.id).await);
    assert!(
        began.elapsed() < std::time::Duration::from_secs(10),
        "destroy took {:?}",
        began.elapsed()
    );
    d.finish().await;
}

/// A payload that SIGKILLs new execs before their exec (`kill -KILL -1` in
/// a loop, as their uid): such an exec never ran its program, so it did not
/// start. It is an error naming that, not a start and an exit by SIGKILL.
#[cfg_attr(
    any(feature = "force-chroot", not(target_os = "linux")),
    ignore = "needs the Linux backend's pid namespace: without one, kill -1 would kill every process of that uid on the host"
)]
#[tokio::test]
async fn an_exec_killed_before_its_exec_did_not_start() {
    let d = Daemon::start();
    let mut c = d.clients().await;
    let sb = signalling_its_uid(&mut c, "KILL").await;
    let mut refused = None;
    for i in 0..6 {
        let answered = exec_slow_true(&mut c, &sb.id, 5000).await;
        match answered {
            Err(status) => {
                assert!(
                    status.message().contains("died before its exec"),
                    "exec {i}: {status:?}"
                );
                refused = Some(i);
                break;
            }
            // Killed after its exec: it did run.
            Ok(r) => assert_eq!(
                r.get_ref().exit.as_ref().map(|e| e.signal),
                Some(9),
                "exec {i}: {r:?}"
            ),
        }
    }
    assert!(
        refused.is_some(),
        "every exec was reported started and killed: none was caught before its exec"
    );
    assert!(c.destroy(&sb.id).await);
    d.finish().await;
}
