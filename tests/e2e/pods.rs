//! Pods: child sandboxes (`spec.join`) that share their parent's network,
//! IPC and UTS namespaces, and nothing else; the rules around them (owner,
//! state, conflicting network, grandchildren, destroying a parent).

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use sandboxd_proto::v1 as pb;
use tonic::Code;

use crate::harness::{Clients, Daemon, argv, code, out};

/// The pod's image: busybox (httpd, wget, hostname are applets of it).
const IMAGE: &str = "pod-busybox";
/// The port the pod's web container serves on, on the pod's loopback.
const PORT: u16 = 18080;

fn idle(edit: impl FnOnce(&mut pb::SandboxSpec)) -> pb::SandboxSpec {
    let mut s = pb::SandboxSpec {
        image: IMAGE.into(),
        mode: pb::SandboxMode::Idle as i32,
        ..Default::default()
    };
    edit(&mut s);
    s
}

fn join(parent: &str, network: bool, ipc: bool, uts: bool) -> Option<pb::SandboxJoin> {
    Some(pb::SandboxJoin {
        sandbox_id: parent.into(),
        network,
        ipc,
        uts,
        pid: false,
    })
}

/// A child sharing only the parent's pid namespace.
fn join_pid(parent: &str) -> Option<pb::SandboxJoin> {
    Some(pb::SandboxJoin {
        pid: true,
        ..join(parent, false, false, false)?
    })
}

fn row(sb: &pb::Sandbox, property: pb::IsolationProperty) -> pb::PropertyEnforcement {
    sb.isolation
        .as_ref()
        .expect("report")
        .properties
        .iter()
        .find(|p| p.property == property as i32)
        .expect("row")
        .clone()
}

/// The pod's page, fetched from inside `id` (empty if it cannot be).
async fn fetch(c: &mut Clients, id: &str) -> String {
    out(&c
        .sh(
            id,
            &format!("/bin/busybox wget -O - http://127.0.0.1:{PORT}/index.html 2>/dev/null"),
        )
        .await)
}

/// What the host gets on 127.0.0.1:PORT (its own loopback): never the
/// pod's page.
fn fetch_from_host() -> String {
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", PORT)) else {
        return String::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = s.write_all(b"GET /index.html HTTP/1.0\r\n\r\n");
    let mut got = String::new();
    let _ = s.read_to_string(&mut got);
    got
}

#[cfg_attr(
    any(feature = "force-chroot", not(target_os = "linux")),
    ignore = "child sandboxes join Linux namespaces: needs the Linux backend (chroot and FreeBSD refuse spec.join: children_are_refused_without_namespaces)"
)]
#[tokio::test]
async fn a_pods_children_share_its_network_ipc_and_hostname_and_nothing_else() {
    let d = Daemon::start();
    d.make_busybox_image(IMAGE);
    let mut c = d.clients().await;
    let mut x = pb::exec_service_client::ExecServiceClient::new(d.channel().await);

    let pod = c
        .create(idle(|s| {
            s.hostname = "pod-one".into();
            s.network = Some(pb::NetworkPolicy {
                mode: pb::NetworkMode::Loopback as i32,
                ..Default::default()
            });
        }))
        .await;
    let web = c
        .create(idle(|s| s.join = join(&pod.id, true, true, true)))
        .await;
    let client = c
        .create(idle(|s| s.join = join(&pod.id, true, true, true)))
        .await;
    // Not in the pod: a loopback of its own.
    let outsider = c
        .create(idle(|s| {
            s.network = Some(pb::NetworkPolicy {
                mode: pb::NetworkMode::Loopback as i32,
                ..Default::default()
            });
        }))
        .await;

    // The report names the parent in each shared row; the mode is the pod's.
    for child in [&web, &client] {
        let spec = child.spec.as_ref().expect("spec");
        assert_eq!(
            spec.network.as_ref().expect("network").mode,
            pb::NetworkMode::Loopback as i32,
            "a child's network mode is its parent's"
        );
        for property in [
            pb::IsolationProperty::Network,
            pb::IsolationProperty::Ipc,
            pb::IsolationProperty::Hostname,
        ] {
            let r = row(child, property);
            assert_eq!(r.level, pb::EnforcementLevel::Enforced as i32, "{r:?}");
            assert!(
                r.mechanism.contains(&pod.id) && r.caveats.contains("shared with sandbox"),
                "{property:?}: {r:?}"
            );
        }
        let pid = row(child, pb::IsolationProperty::Pid);
        assert!(!pid.mechanism.contains(&pod.id), "pid is its own: {pid:?}");
    }
    assert!(
        pod.init_pid > 0,
        "a running Linux sandbox reports its pid 1"
    );

    // UTS: the pod's hostname.
    for id in [&web.id, &client.id] {
        assert_eq!(out(&c.sh(id, "/bin/busybox hostname").await), "pod-one\n");
    }

    // Network: the web container serves on the pod's loopback.
    c.sh(
        &web.id,
        "mkdir -p /tmp/www && echo hello-from-web > /tmp/www/index.html",
    )
    .await;
    let server = x
        .start_exec(pb::StartExecRequest {
            sandbox_id: web.id.clone(),
            process: Some(argv(&[
                "/bin/busybox",
                "httpd",
                "-f",
                "-p",
                &format!("127.0.0.1:{PORT}"),
                "-h",
                "/tmp/www",
            ])),
        })
        .await
        .expect("start httpd")
        .into_inner();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut page = fetch(&mut c, &client.id).await;
    while page != "hello-from-web\n" && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        page = fetch(&mut c, &client.id).await;
    }
    assert_eq!(page, "hello-from-web\n", "the other child reaches it");
    assert_eq!(
        fetch(&mut c, &pod.id).await,
        "hello-from-web\n",
        "the pod sandbox itself reaches it"
    );
    assert!(
        !fetch(&mut c, &outsider.id).await.contains("hello-from-web"),
        "a sandbox outside the pod does not"
    );
    assert!(
        !fetch_from_host().contains("hello-from-web"),
        "nor does the host"
    );
    // The host's interfaces are not there: only the pod's loopback.
    assert_eq!(
        out(&c.sh(&client.id, "ls /sys/class/net").await),
        "lo\n",
        "a child sees the pod's network, not the host's"
    );

    // IPC: a POSIX message queue made in one child is in the other, not
    // outside the pod.
    let made = c.sh(&web.id, "touch /dev/mqueue/pod-queue").await;
    assert_eq!(code(&made), 0, "{made:?}");
    assert_eq!(
        out(&c.sh(&client.id, "ls /dev/mqueue").await),
        "pod-queue\n"
    );
    assert_eq!(out(&c.sh(&pod.id, "ls /dev/mqueue").await), "pod-queue\n");
    assert_eq!(out(&c.sh(&outsider.id, "ls /dev/mqueue").await), "");
    assert!(!std::path::Path::new("/dev/mqueue/pod-queue").exists());

    // Nothing else: each child has its own root and pid namespace.
    c.sh(&web.id, "echo mine > /tmp/only-web").await;
    assert_ne!(code(&c.sh(&client.id, "cat /tmp/only-web").await), 0);
    // Every process's command line (the script itself names no server).
    let cmdlines = "cat /proc/[0-9]*/cmdline 2>/dev/null";
    assert!(out(&c.sh(&web.id, cmdlines).await).contains("httpd"));
    assert!(
        !out(&c.sh(&client.id, cmdlines).await).contains("httpd"),
        "the client's own pid namespace does not show the web container's server"
    );

    // The probe agrees with the child's report.
    let v = c
        .sandboxes
        .verify_sandbox(pb::VerifySandboxRequest {
            id: client.id.clone(),
        })
        .await
        .expect("verify")
        .into_inner()
        .verification
        .expect("verification");
    assert!(v.consistent, "{v:#?}");

    // A parent is not destroyed while a child lives: the error names them.
    let refused = c
        .sandboxes
        .destroy_sandbox(pb::DestroySandboxRequest { id: pod.id.clone() })
        .await
        .expect_err("a parent with children");
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert!(
        refused.message().contains(&web.id) && refused.message().contains(&client.id),
        "{refused:?}"
    );
    x.signal_exec(pb::SignalExecRequest {
        sandbox_id: web.id.clone(),
        exec_id: server.exec_id,
        signal: 9,
        group: false,
    })
    .await
    .expect("kill httpd");
    assert!(c.destroy(&web.id).await);
    let refused = c
        .sandboxes
        .destroy_sandbox(pb::DestroySandboxRequest { id: pod.id.clone() })
        .await
        .expect_err("a parent with one child left");
    assert!(
        refused.message().contains(&client.id) && !refused.message().contains(&web.id),
        "{refused:?}"
    );
    // The pod still works for the child that is left.
    assert_eq!(
        out(&c.sh(&client.id, "ls /dev/mqueue").await),
        "pod-queue\n"
    );
    assert!(c.destroy(&client.id).await);
    assert!(c.destroy(&pod.id).await, "no child left: the parent goes");
    d.finish().await;
}

#[cfg_attr(
    any(feature = "force-chroot", not(target_os = "linux")),
    ignore = "child sandboxes join Linux namespaces: needs the Linux backend (chroot and FreeBSD refuse spec.join: children_are_refused_without_namespaces)"
)]
#[tokio::test]
async fn a_child_needs_a_running_parent_of_its_own_with_the_same_network() {
    let d = Daemon::start();
    d.make_busybox_image(IMAGE);
    let mut c = d.clients().await;
    let pod = c
        .create(idle(|s| {
            s.network = Some(pb::NetworkPolicy {
                mode: pb::NetworkMode::Loopback as i32,
                ..Default::default()
            });
        }))
        .await;
    let before = c
        .sandboxes
        .list_sandboxes(pb::ListSandboxesRequest::default())
        .await
        .expect("list")
        .into_inner()
        .sandboxes
        .len();

    // (what, spec) -> (code, text the message must hold).
    let stopped = c.idle(IMAGE).await;
    c.sandboxes
        .stop_sandbox(pb::StopSandboxRequest {
            id: stopped.id.clone(),
            grace_seconds: 1,
            signal: 0,
        })
        .await
        .expect("stop");
    let child = c
        .create(idle(|s| s.join = join(&pod.id, true, true, true)))
        .await;
    let cases: Vec<(&str, pb::SandboxSpec, Code, String)> = vec![
        (
            "no such parent",
            idle(|s| s.join = join("0123456789abcdef", true, false, false)),
            Code::NotFound,
            "0123456789abcdef".into(),
        ),
        (
            "a parent that is not running",
            idle(|s| s.join = join(&stopped.id, false, true, false)),
            Code::FailedPrecondition,
            "not RUNNING".into(),
        ),
        (
            "a network mode other than the parent's",
            idle(|s| {
                s.join = join(&pod.id, true, false, false);
                s.network = Some(pb::NetworkPolicy {
                    mode: pb::NetworkMode::None as i32,
                    ..Default::default()
                });
            }),
            Code::InvalidArgument,
            "spec.network.mode".into(),
        ),
        (
            "a grandchild",
            idle(|s| s.join = join(&child.id, true, false, false)),
            Code::InvalidArgument,
            pod.id.clone(),
        ),
        (
            "its own hostname in the parent's UTS namespace",
            idle(|s| {
                s.join = join(&pod.id, false, false, true);
                s.hostname = "mine".into();
            }),
            Code::InvalidArgument,
            "spec.hostname".into(),
        ),
        (
            "a name instead of an id",
            idle(|s| s.join = join("my-pod", true, false, false)),
            Code::InvalidArgument,
            "spec.join.sandbox_id".into(),
        ),
    ];
    for (what, spec, want, text) in cases {
        let e = c.try_create(spec).await.expect_err(what);
        assert_eq!(e.code(), want, "{what}: {e:?}");
        assert!(e.message().contains(&text), "{what}: {e:?}");
    }
    let after = c
        .sandboxes
        .list_sandboxes(pb::ListSandboxesRequest::default())
        .await
        .expect("list")
        .into_inner()
        .sandboxes
        .len();
    assert_eq!(
        after,
        before + 2,
        "only the stopped sandbox and the child were made"
    );
    d.finish().await;
}

#[cfg_attr(
    all(target_os = "linux", not(feature = "force-chroot")),
    ignore = "the Linux backend has namespaces to share: a_pods_children_share_its_network_ipc_and_hostname_and_nothing_else"
)]
#[tokio::test]
async fn children_are_refused_without_namespaces() {
    let d = Daemon::start();
    let mut c = d.clients().await;
    let parent = c.idle("host").await;
    let e = c
        .try_create(pb::SandboxSpec {
            mode: pb::SandboxMode::Idle as i32,
            join: join(&parent.id, true, true, true),
            ..Default::default()
        })
        .await
        .expect_err("a child without namespaces");
    // FreeBSD and chroot report no pid 1 whose namespaces could be joined,
    // or refuse spec.join in their plan.
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(e.message().contains("spec.join"), "{e:?}");
    d.finish().await;
}

/// Only the parent's own identity may give it children: another identity
/// does not see it (NOT_FOUND, as for any of its sandboxes), and an admin
/// that sees it may still not join it (PERMISSION_DENIED). Clients over
/// mutual TLS on this host's loopback, with identities from the config.
/// Checked before the parent's state, so it holds on every backend.
#[tokio::test]
async fn only_the_parents_identity_may_join_it() {
    use crate::remote::{Ca, TempDir, client, tls_channel, write_pair};
    use rcgen::{DnType, ExtendedKeyUsagePurpose, SanType};
    use sandboxd_proto::v1::sandbox_service_client::SandboxServiceClient;

    const ALICE: &str = "spiffe://sandboxd.test/alice";
    let certs = TempDir::new("pods-certs");
    let dir = certs.0.clone();
    let ca = Ca::new("sandboxd pods test CA");
    std::fs::write(dir.join("ca.pem"), &ca.pem).expect("ca");
    let server = write_pair(
        &dir,
        "server",
        ca.leaf(|p| {
            p.distinguished_name
                .push(DnType::CommonName, "sandboxd.test");
            p.subject_alt_names = vec![
                SanType::DnsName("sandboxd.test".try_into().expect("dns")),
                SanType::IpAddress([127, 0, 0, 1].into()),
            ];
            p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        }),
    );
    let alice = write_pair(&dir, "alice", ca.leaf(client("alice", Some(ALICE))));
    let bob = write_pair(&dir, "bob", ca.leaf(client("bob", None)));
    let ops = write_pair(&dir, "ops", ca.leaf(client("ops", None)));
    let config = dir.join("sandboxd.toml");
    std::fs::write(
        &config,
        format!(
            "[tls]\nclient_ca = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\n\n[identities.\"{ALICE}\"]\n[identities.bob]\n[identities.ops]\nadmin = true\n",
            dir.join("ca.pem").display(),
            server.0.display(),
            server.1.display(),
        ),
    )
    .expect("config");
    // A port of this host's loopback nothing listens on now.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let addr = format!("127.0.0.1:{port}");
    let d = Daemon::start_with(&[
        "--config",
        &config.to_string_lossy(),
        "--listen",
        &format!("tcp://{addr}"),
    ]);
    let mut channels = Vec::new();
    for pair in [&alice, &bob, &ops] {
        let mut ch = None;
        for _ in 0..100 {
            if let Ok(c) = tls_channel(&addr, &ca.pem, Some(pair), "sandboxd.test").await {
                ch = Some(c);
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        channels.push(SandboxServiceClient::new(
            ch.unwrap_or_else(|| panic!("no TLS listener:\n{}", d.log_text())),
        ));
    }
    let [mut alice_c, mut bob_c, mut ops_c] = <[_; 3]>::try_from(channels).expect("three");
    let create = |spec: pb::SandboxSpec| pb::CreateSandboxRequest {
        spec: Some(spec),
        ..Default::default()
    };
    let idle_host = |join: Option<pb::SandboxJoin>| pb::SandboxSpec {
        mode: pb::SandboxMode::Idle as i32,
        join,
        ..Default::default()
    };
    let parent = alice_c
        .create_sandbox(create(idle_host(None)))
        .await
        .expect("alice's parent")
        .into_inner()
        .sandbox
        .expect("sandbox")
        .id;
    let mut c = d.clients().await;
    let locals = c.idle("host").await.id;

    let e = bob_c
        .create_sandbox(create(idle_host(join(&parent, true, true, true))))
        .await
        .expect_err("bob joins alice's sandbox");
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    assert!(e.message().contains(&parent), "{e:?}");
    let e = alice_c
        .create_sandbox(create(idle_host(join(&locals, true, false, false))))
        .await
        .expect_err("alice joins local's sandbox");
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    for (who, e) in [
        (
            "ops (admin)",
            ops_c
                .create_sandbox(create(idle_host(join(&parent, false, true, false))))
                .await
                .expect_err("an admin joins alice's sandbox"),
        ),
        (
            "local (admin)",
            c.try_create(idle_host(join(&parent, false, true, false)))
                .await
                .expect_err("local joins alice's sandbox"),
        ),
    ] {
        assert_eq!(e.code(), Code::PermissionDenied, "{who}: {e:?}");
        assert!(
            e.message().contains("spec.join.sandbox_id") && e.message().contains(ALICE),
            "{who}: {e:?}"
        );
    }
    // Nothing was made for them: alice's parent and local's sandbox only.
    let all = c
        .sandboxes
        .list_sandboxes(pb::ListSandboxesRequest::default())
        .await
        .expect("list")
        .into_inner()
        .sandboxes;
    assert_eq!(all.len(), 2, "{all:?}");
    drop((alice_c, bob_c, ops_c));
    d.finish().await;
}

/// A restarted daemon knows its sandboxes' pid 1 (the records, and the
/// supervisors' `Attached`): a child made after the restart joins the same
/// pod as one made before, and the parent still refuses to go first.
#[cfg_attr(
    any(feature = "force-chroot", not(target_os = "linux")),
    ignore = "child sandboxes join Linux namespaces: needs the Linux backend (chroot and FreeBSD refuse spec.join: children_are_refused_without_namespaces)"
)]
#[tokio::test]
async fn a_pod_outlives_a_daemon_restart() {
    let mut d = Daemon::start();
    d.make_busybox_image(IMAGE);
    let mut c = d.clients().await;
    let pod = c.create(idle(|s| s.hostname = "pod-two".into())).await;
    let before = c
        .create(idle(|s| s.join = join(&pod.id, true, true, true)))
        .await;
    let made = c.sh(&before.id, "touch /dev/mqueue/before-restart").await;
    assert_eq!(code(&made), 0, "{made:?}");
    drop(c);

    d.kill_and_restart();
    let mut c = d.clients().await;
    let after = c
        .create(idle(|s| s.join = join(&pod.id, true, true, true)))
        .await;
    assert_eq!(
        out(&c
            .sh(&after.id, "ls /dev/mqueue; /bin/busybox hostname")
            .await),
        "before-restart\npod-two\n"
    );
    let refused = c
        .sandboxes
        .destroy_sandbox(pb::DestroySandboxRequest { id: pod.id.clone() })
        .await
        .expect_err("a parent with children, after a restart");
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert!(
        refused.message().contains(&before.id) && refused.message().contains(&after.id),
        "{refused:?}"
    );
    d.finish().await;
}

/// Host pids of processes whose argv holds `arg` (read from the host's
/// /proc): the marker processes the pid tests start.
fn host_pids_with(arg: &str) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| c.split(|b| *b == 0).any(|a| a == arg.as_bytes()))
        })
        .collect()
}

/// Starts `sleep <secs>` in `id` in the background, in a session of its
/// own (out of the exec's process group, as a daemon would be) and
/// orphaned at once (its shell exits), so the pid namespace's init adopts
/// it: only a kill by cgroup or pid namespace finds it.
async fn start_sleeper(c: &mut Clients, id: &str, secs: &str) {
    let r = c
        .sh(
            id,
            &format!("/bin/busybox setsid /bin/busybox sleep {secs} </dev/null >/dev/null 2>&1 &"),
        )
        .await;
    assert_eq!(code(&r), 0, "{r:?}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while host_pids_with(secs).is_empty() {
        assert!(Instant::now() < deadline, "sleep {secs} did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `ps` inside `id` (busybox, from the sandbox's /proc).
async fn ps(c: &mut Clients, id: &str) -> String {
    out(&c.sh(id, "/bin/busybox ps -o pid,args").await)
}

/// `shareProcessNamespace`: a child with `join.pid` is in its parent's pid
/// namespace. Each sees the other's processes in `ps` and /proc; none of
/// the child's is pid 1 (the parent's is); host processes and another
/// pod's stay invisible and out of reach of kill(2), however their host
/// pids are named; the report and the probe say so.
#[cfg_attr(
    any(feature = "force-chroot", not(target_os = "linux")),
    ignore = "child sandboxes join Linux namespaces: needs the Linux backend (chroot and FreeBSD refuse spec.join)"
)]
#[tokio::test]
async fn a_child_sharing_the_pid_namespace_sees_its_pod_and_nothing_else() {
    let d = Daemon::start();
    d.make_busybox_image(IMAGE);
    let mut c = d.clients().await;
    let pod = c.create(idle(|_| {})).await;
    let other_pod = c.create(idle(|_| {})).await;
    let child = c.create(idle(|s| s.join = join_pid(&pod.id))).await;

    start_sleeper(&mut c, &pod.id, "31301").await;
    start_sleeper(&mut c, &child.id, "31302").await;
    start_sleeper(&mut c, &other_pod.id, "31303").await;
    // A host process the test started.
    let mut host = std::process::Command::new("sleep")
        .arg("31304")
        .spawn()
        .expect("host sleep");

    // Each side lists the other's processes, never the other pod's.
    for id in [&pod.id, &child.id] {
        let listing = ps(&mut c, id).await;
        assert!(
            listing.contains("sleep 31301") && listing.contains("sleep 31302"),
            "{id}: {listing}"
        );
        assert!(
            !listing.contains("31303") && !listing.contains("31304"),
            "{id} sees another pod's or the host's process: {listing}"
        );
    }
    let cmdlines = out(&c
        .sh(&child.id, "cat /proc/[0-9]*/cmdline 2>/dev/null")
        .await);
    assert!(cmdlines.contains("31301"), "{cmdlines:?}");
    // The pod's pid 1 is the parent's; the child's shell is not pid 1.
    let r = c
        .sh(&child.id, "echo $$; test -d /proc/1 && echo one")
        .await;
    let text = out(&r);
    let mut lines = text.lines();
    let me: i32 = lines.next().and_then(|l| l.parse().ok()).expect("pid");
    assert!(me > 1, "{text}");
    assert_eq!(lines.next(), Some("one"), "{text}");
    // The other pod still has a namespace of its own: pid 1 and its sleeper.
    let listing = ps(&mut c, &other_pod.id).await;
    assert!(
        listing.contains("31303") && !listing.contains("31301") && !listing.contains("31302"),
        "{listing}"
    );

    // Attack: SIGKILL by host pid to the other pod's and the host's
    // process, from the child and from the parent. Pids name processes of
    // the caller's namespace only, so these reach nothing outside the pod.
    let outside: Vec<i32> = host_pids_with("31303")
        .into_iter()
        .chain([i32::try_from(host.id()).expect("pid")])
        .collect();
    for id in [&child.id, &pod.id] {
        for pid in &outside {
            let r = c
                .sh(
                    id,
                    &format!(
                        "kill -9 {pid} 2>/dev/null; kill -0 {pid} 2>/dev/null && echo seen; true"
                    ),
                )
                .await;
            assert_eq!(out(&r), "", "{id} reached host pid {pid}");
        }
    }
    assert!(
        !host_pids_with("31303").is_empty(),
        "the other pod's process lives"
    );
    assert!(
        host.try_wait().expect("wait").is_none(),
        "the host's process lives"
    );
    let _ = host.kill();
    let _ = host.wait();

    // The report names the shared pid namespace; the probe agrees and sees
    // no host process.
    let r = row(&child, pb::IsolationProperty::Pid);
    assert_eq!(r.level, pb::EnforcementLevel::Enforced as i32, "{r:?}");
    assert!(
        r.mechanism.contains(&pod.id) && r.caveats.contains("shared with sandbox"),
        "{r:?}"
    );
    let v = c
        .sandboxes
        .verify_sandbox(pb::VerifySandboxRequest {
            id: child.id.clone(),
        })
        .await
        .expect("verify")
        .into_inner()
        .verification
        .expect("verification");
    assert!(v.consistent, "{v:#?}");
    let pid = v
        .properties
        .iter()
        .find(|p| p.property == pb::IsolationProperty::Pid as i32)
        .expect("pid row");
    assert_eq!(pid.observed, pb::ObservedResult::Holds as i32, "{pid:?}");
    assert!(
        pid.evidence
            .iter()
            .any(|e| e.contains("visible, the pid namespace is the pod's")),
        "{pid:?}"
    );

    // The child's first process is an ordinary process of the pod's
    // namespace (not its init): the pod may kill it; the child still works
    // (its supervisor holds its namespaces) and is destroyed cleanly.
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.init_pid))
        .expect("the child's first process");
    let in_pod = status
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .expect("its pid in the pod's namespace")
        .to_owned();
    assert_ne!(in_pod, "1", "{status}");
    let r = c.sh(&pod.id, &format!("kill -9 {in_pod}")).await;
    assert_eq!(code(&r), 0, "{r:?}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::fs::read_to_string(format!("/proc/{}/status", child.init_pid))
        .is_ok_and(|s| !s.contains("State:\tZ"))
    {
        assert!(Instant::now() < deadline, "the child's first process lives");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(out(&c.sh(&child.id, "echo still").await), "still\n");

    assert!(c.destroy(&child.id).await);
    assert!(
        host_pids_with("31302").is_empty(),
        "the destroyed child's process survived"
    );
    assert!(c.destroy(&pod.id).await);
    assert!(c.destroy(&other_pod.id).await);
    d.finish().await;
}

/// Destroying (or stopping) a child that shares the pod's pid namespace
/// kills exactly its processes, including an orphan the pod's pid 1 has
/// adopted, and nothing of the parent's; the parent keeps working. Its main
/// process's exit status is still observed (the child's supervisor is its
/// parent), though it is not pid 1.
#[cfg_attr(
    any(feature = "force-chroot", not(target_os = "linux")),
    ignore = "child sandboxes join Linux namespaces: needs the Linux backend (chroot and FreeBSD refuse spec.join)"
)]
#[tokio::test]
async fn destroying_a_pid_sharing_child_kills_only_its_processes() {
    let d = Daemon::start();
    d.make_busybox_image(IMAGE);
    let mut c = d.clients().await;
    let pod = c.create(idle(|_| {})).await;
    start_sleeper(&mut c, &pod.id, "31311").await;
    let child = c.create(idle(|s| s.join = join_pid(&pod.id))).await;
    // An orphan (adopted by the pod's pid 1, not the child's supervisor).
    start_sleeper(&mut c, &child.id, "31312").await;
    assert!(ps(&mut c, &pod.id).await.contains("sleep 31312"));

    // Stopped: nothing of it is left, though it is not yet destroyed.
    c.sandboxes
        .stop_sandbox(pb::StopSandboxRequest {
            id: child.id.clone(),
            grace_seconds: 1,
            signal: 0,
        })
        .await
        .expect("stop");
    assert!(
        host_pids_with("31312").is_empty(),
        "a process of the stopped child survived"
    );
    assert!(c.destroy(&child.id).await);
    let child2 = c.create(idle(|s| s.join = join_pid(&pod.id))).await;
    start_sleeper(&mut c, &child2.id, "31314").await;
    assert!(c.destroy(&child2.id).await);
    assert!(
        host_pids_with("31314").is_empty(),
        "a process of the destroyed child survived"
    );
    assert_eq!(
        host_pids_with("31311").len(),
        1,
        "the parent's process died"
    );
    let listing = ps(&mut c, &pod.id).await;
    assert!(
        listing.contains("sleep 31311") && !listing.contains("31312"),
        "{listing}"
    );

    // A PROCESS child: its main process, not pid 1, ends it with its own
    // status, and what it left behind goes with it.
    let main = c
        .create(pb::SandboxSpec {
            image: IMAGE.into(),
            process: Some(argv(&[
                "/bin/sh",
                "-c",
                "/bin/busybox setsid /bin/busybox sleep 31313 </dev/null >/dev/null 2>&1 & /bin/busybox sleep 0.2; test $$ -ne 1 && exit 7",
            ])),
            join: join_pid(&pod.id),
            ..Default::default()
        })
        .await;
    let done = c
        .sandboxes
        .wait_sandbox(pb::WaitSandboxRequest {
            id: main.id.clone(),
        })
        .await
        .expect("wait")
        .into_inner();
    assert_eq!(done.exit.as_ref().map(|e| e.exit_code), Some(7), "{done:?}");
    assert!(
        host_pids_with("31313").is_empty(),
        "the ended child's orphan survived"
    );
    assert_eq!(
        host_pids_with("31311").len(),
        1,
        "the parent's process died"
    );
    assert!(c.destroy(&main.id).await);
    assert_eq!(code(&c.sh(&pod.id, "true").await), 0, "the pod still works");
    assert!(c.destroy(&pod.id).await);
    d.finish().await;
}

/// A pod's own stop signal skips its pid-sharing children's processes,
/// though they share its pid namespace (they are outsiders of its cgroup):
/// a process of the pod that exits 42 on SIGTERM does so, the same process
/// in a child is left alone until the pod's pid 1 ends, which ends the
/// namespace and it with it (SIGKILL).
#[cfg_attr(
    any(feature = "force-chroot", not(target_os = "linux")),
    ignore = "child sandboxes join Linux namespaces: needs the Linux backend (chroot and FreeBSD refuse spec.join)"
)]
#[tokio::test]
async fn a_pods_stop_signal_skips_its_pid_sharing_childrens_processes() {
    let d = Daemon::start();
    d.make_busybox_image(IMAGE);
    let mut c = d.clients().await;
    let pod = c.create(idle(|_| {})).await;
    let child = c.create(idle(|s| s.join = join_pid(&pod.id))).await;
    let mut x = pb::exec_service_client::ExecServiceClient::new(d.channel().await);
    let trap = [
        "/bin/sh",
        "-c",
        "trap 'exit 42' TERM; touch /tmp/trapped; while :; do /bin/busybox sleep 0.05; done",
    ];
    let mut started = Vec::new();
    for id in [&pod.id, &child.id] {
        let info = x
            .start_exec(pb::StartExecRequest {
                sandbox_id: id.clone(),
                process: Some(argv(&trap)),
            })
            .await
            .expect("start exec")
            .into_inner();
        // The trap is set before the file is made.
        let deadline = Instant::now() + Duration::from_secs(5);
        while code(&c.sh(id, "test -e /tmp/trapped").await) != 0 {
            assert!(Instant::now() < deadline, "the trap was not set in {id}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        started.push((id.clone(), info.exec_id));
    }
    c.sandboxes
        .stop_sandbox(pb::StopSandboxRequest {
            id: pod.id.clone(),
            grace_seconds: 5,
            signal: 15, // SIGTERM
        })
        .await
        .expect("stop");
    let mut ends = Vec::new();
    for (id, exec_id) in &started {
        let info = tokio::time::timeout(
            Duration::from_secs(20),
            x.wait_exec(pb::ExecRef {
                sandbox_id: id.clone(),
                exec_id: *exec_id,
            }),
        )
        .await
        .expect("the exec ends")
        .expect("wait exec")
        .into_inner();
        let exit = info.exit.expect("exit");
        ends.push((exit.reason, exit.exit_code));
    }
    assert_eq!(
        ends,
        [
            (pb::ExitReason::Exited as i32, 42),
            (pb::ExitReason::Signaled as i32, 137)
        ],
        "the pod's process must get the stop signal, the child's must not (only the end of the pod's pid 1)"
    );
    assert!(c.destroy(&child.id).await);
    assert!(c.destroy(&pod.id).await);
    d.finish().await;
}

/// `join.pid` refusals: field by field, nothing made.
#[cfg_attr(
    any(feature = "force-chroot", not(target_os = "linux")),
    ignore = "child sandboxes join Linux namespaces: needs the Linux backend (chroot and FreeBSD refuse spec.join)"
)]
#[tokio::test]
async fn a_pid_sharing_child_is_refused_field_by_field() {
    let d = Daemon::start();
    d.make_busybox_image(IMAGE);
    let mut c = d.clients().await;
    let pod = c.create(idle(|_| {})).await;
    let host_pid_pod = c
        .create(idle(|s| {
            s.isolation = Some(pb::Isolation {
                pid: pb::Requirement::Disabled as i32,
                ..Default::default()
            });
        }))
        .await;
    let cases: Vec<(&str, pb::SandboxSpec, &str)> = vec![
        (
            "its own pid namespace asked for",
            idle(|s| {
                s.join = join_pid(&pod.id);
                s.isolation = Some(pb::Isolation {
                    pid: pb::Requirement::Required as i32,
                    ..Default::default()
                });
            }),
            "spec.isolation.pid",
        ),
        (
            "an init that would not be pid 1",
            pb::SandboxSpec {
                image: IMAGE.into(),
                mode: pb::SandboxMode::Init as i32,
                join: join_pid(&pod.id),
                ..Default::default()
            },
            "spec.mode",
        ),
        (
            "a parent in the host's pid namespace",
            idle(|s| s.join = join_pid(&host_pid_pod.id)),
            "spec.join.pid",
        ),
    ];
    for (what, spec, field) in cases {
        let e = c.try_create(spec).await.expect_err(what);
        assert_eq!(e.code(), Code::InvalidArgument, "{what}: {e:?}");
        assert!(e.message().contains(field), "{what}: {e:?}");
    }
    let left = c
        .sandboxes
        .list_sandboxes(pb::ListSandboxesRequest::default())
        .await
        .expect("list")
        .into_inner()
        .sandboxes
        .len();
    assert_eq!(left, 2, "nothing but the two parents was made");
    d.finish().await;
}
