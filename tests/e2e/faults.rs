//! Fault injection (a build with `--features fault-injection`, which
//! ci/test.sh runs): each named create step fails in turn. Every failure
//! must be a clear status naming the step, leave nothing behind (state,
//! mounts, cgroups, supervisor, veth, nft table, address lease), and the
//! same request must then succeed.

use std::time::Duration;

use sandboxd_core::fault;
use sandboxd_proto::v1 as pb;

use crate::harness::{Daemon, mount_table, network_leaks};
use crate::network::Pool;

fn spec(pool: &Pool) -> pb::SandboxSpec {
    pb::SandboxSpec {
        mode: pb::SandboxMode::Idle as i32,
        network: Some(pb::NetworkPolicy {
            mode: pb::NetworkMode::Restricted as i32,
            outbound_nat: true,
            port_forwards: vec![pb::PortForward {
                protocol: pb::Protocol::Tcp as i32,
                // Below Linux's ephemeral range (32768–60999), so no
                // client socket on the host holds it by chance (the daemon
                // refuses a host port bound on the host).
                host_port: 20_000
                    + pool
                        .addr(0)
                        .rsplit('.')
                        .next()
                        .and_then(|n| n.parse::<u32>().ok())
                        .unwrap_or(0),
                sandbox_port: 80,
            }],
            dns_servers: vec!["203.0.113.53".into()],
            ..Default::default()
        }),
        limits: Some(pb::Limits {
            memory_bytes: Some(pb::Limit {
                value: 64 << 20,
                requirement: 0,
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Everything a sandbox id could have left on the host (once a destroy's
/// teardown, which may finish after its reply, is done).
fn leftovers(d: &Daemon, id: &str) -> Vec<String> {
    crate::harness::settled(|| leftovers_now(d, id))
}

/// Everything a sandbox id has left on the host now.
fn leftovers_now(d: &Daemon, id: &str) -> Vec<String> {
    let mut left = network_leaks(id);
    for root in [
        "/sys/fs/cgroup",
        "/sys/fs/cgroup/unified",
        "/sys/fs/cgroup/memory",
        "/sys/fs/cgroup/pids",
        "/sys/fs/cgroup/cpu",
    ] {
        let dir = std::path::Path::new(root).join("sandboxd").join(id);
        if dir.exists() {
            left.push(format!("cgroup {}", dir.display()));
        }
    }
    if let Ok(entries) = std::fs::read_dir(d.state.join("sandboxes")) {
        left.extend(
            entries
                .flatten()
                .map(|e| format!("state {}", e.path().display())),
        );
    }
    let mountinfo = mount_table();
    left.extend(
        mountinfo
            .lines()
            .filter(|l| l.contains(id))
            .map(|l| format!("mount {l}")),
    );
    for p in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let cmdline = std::fs::read(p.path().join("cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains(&format!("__supervise\0{id}")) {
            left.push(format!("supervisor {}", p.path().display()));
        }
    }
    left
}

#[cfg_attr(
    not(all(
        target_os = "linux",
        feature = "fault-injection",
        not(feature = "force-chroot")
    )),
    ignore = "needs the Linux backend built with --features fault-injection"
)]
#[tokio::test]
async fn each_create_step_failing_leaves_nothing_and_the_retry_succeeds() {
    let pool = Pool::new();
    let fault_file =
        std::env::temp_dir().join(format!("sandboxd-e2e-fault-{}", std::process::id()));
    std::fs::write(&fault_file, "").expect("fault file");
    let d = Daemon::start_full(
        None,
        &["--net-pool", &pool.cidr],
        &[(fault::FILE_ENV, &fault_file.to_string_lossy())],
    );
    let mut c = d.clients().await;
    for step in fault::CREATE_STEPS {
        std::fs::write(&fault_file, step).expect("arm");
        let err = c
            .sandboxes
            .create_sandbox(pb::CreateSandboxRequest {
                spec: Some(spec(&pool)),
                request_id: String::new(),
                verify: false,
            })
            .await
            .expect_err(step);
        assert!(
            err.message()
                .contains(&format!("injected fault at step {step:?}")),
            "{step}: {err:?}"
        );
        let log = d.log_text();
        let id = log
            .lines()
            .rev()
            .find(|l| l.contains("create failed"))
            .and_then(|l| l.split("sandbox=").nth(1))
            .and_then(|rest| rest.get(..16))
            .unwrap_or_else(|| panic!("{step}: no rollback logged"))
            .to_owned();
        let left = leftovers(&d, &id);
        assert!(left.is_empty(), "{step}: {left:#?}");
        // The same request succeeds, with the same (released) address.
        std::fs::write(&fault_file, "").expect("disarm");
        let sb = c.create(spec(&pool)).await;
        assert_eq!(sb.addresses, vec![pool.addr(2)], "{step}");
        assert!(c.destroy(&sb.id).await);
        assert!(leftovers(&d, &sb.id).is_empty(), "{step}: after destroy");
    }
    drop(c);
    d.finish().await;
    let _ = std::fs::remove_file(&fault_file);
}

/// The id in the last log line containing `what` (`sandbox=<id>`).
fn logged_id(d: &Daemon, what: &str) -> Option<String> {
    d.log_text()
        .lines()
        .rev()
        .find(|l| l.contains(what))
        .and_then(|l| l.split("sandbox=").nth(1))
        .and_then(|rest| rest.get(..16))
        .map(str::to_owned)
}

/// Waits for the daemon to die (a crash point aborts it) and restarts it.
async fn restart_after_crash(d: &mut Daemon, step: &str) {
    for _ in 0..250 {
        if d.respawn_if_dead() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "{step}: the daemon did not crash; its log ends with:\n{}",
        d.log_text()
            .lines()
            .rev()
            .take(30)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[cfg_attr(
    not(all(
        target_os = "linux",
        feature = "fault-injection",
        not(feature = "force-chroot")
    )),
    ignore = "needs the Linux backend built with --features fault-injection"
)]
#[tokio::test]
async fn a_daemon_crash_at_each_create_and_destroy_step_is_rolled_back_or_forward() {
    let pool = Pool::new();
    let fault_file =
        std::env::temp_dir().join(format!("sandboxd-e2e-crash-{}", std::process::id()));
    std::fs::write(&fault_file, "").expect("fault file");
    let mut d = Daemon::start_full(
        None,
        &["--net-pool", &pool.cidr],
        &[(fault::FILE_ENV, &fault_file.to_string_lossy())],
    );
    // Daemon-side create steps: the process that reaches them aborts.
    let daemon_steps = fault::CREATE_STEPS
        .iter()
        .filter(|s| ![fault::CGROUPS, fault::CLONED, fault::MOUNTED].contains(s));
    for step in daemon_steps {
        std::fs::write(&fault_file, format!("crash:{step}")).expect("arm");
        let mut c = d.clients().await;
        let r = c
            .sandboxes
            .create_sandbox(pb::CreateSandboxRequest {
                spec: Some(spec(&pool)),
                request_id: String::new(),
                verify: false,
            })
            .await;
        let err = r.expect_err(&format!("{step}: the create answered"));
        drop(c);
        std::fs::write(&fault_file, "").expect("disarm");
        restart_after_crash(&mut d, &format!("{step} (the create got {err:?})")).await;
        let mut c = d.clients().await;
        // The restart rolled the half-made sandbox back, if it got as far
        // as a record; either way nothing is left.
        if let Some(id) = logged_id(&d, "rolling back a create interrupted") {
            let left = leftovers(&d, &id);
            assert!(left.is_empty(), "{step}: {left:#?}");
        }
        let listed = c
            .sandboxes
            .list_sandboxes(pb::ListSandboxesRequest::default())
            .await
            .expect("list")
            .into_inner()
            .sandboxes;
        assert!(
            listed.is_empty(),
            "{step}: a half-created sandbox is listed: {listed:?}"
        );
        let sb = c.create(spec(&pool)).await;
        assert_eq!(sb.addresses, vec![pool.addr(2)], "{step}");
        assert!(c.destroy(&sb.id).await);
        assert!(leftovers(&d, &sb.id).is_empty(), "{step}: after destroy");
    }
    // Destroy steps: a crash is rolled forward; a failure can be retried.
    for step in fault::DESTROY_STEPS {
        let mut c = d.clients().await;
        let sb = c.create(spec(&pool)).await;
        std::fs::write(&fault_file, step).expect("arm");
        let err = c
            .sandboxes
            .destroy_sandbox(pb::DestroySandboxRequest { id: sb.id.clone() })
            .await
            .expect_err(step);
        assert!(err.message().contains("injected fault"), "{step}: {err:?}");
        std::fs::write(&fault_file, "").expect("disarm");
        assert!(c.destroy(&sb.id).await, "{step}: the retry");
        assert!(leftovers(&d, &sb.id).is_empty(), "{step}: after the retry");

        let sb = c.create(spec(&pool)).await;
        std::fs::write(&fault_file, format!("crash:{step}")).expect("arm");
        let r = c
            .sandboxes
            .destroy_sandbox(pb::DestroySandboxRequest { id: sb.id.clone() })
            .await;
        assert!(r.is_err(), "{step}: the destroy answered");
        drop(c);
        std::fs::write(&fault_file, "").expect("disarm");
        restart_after_crash(&mut d, step).await;
        let mut c = d.clients().await;
        let got = c
            .sandboxes
            .get_sandbox(pb::GetSandboxRequest { id: sb.id.clone() })
            .await;
        assert_eq!(
            got.map(drop).expect_err("rolled forward").code(),
            tonic::Code::NotFound,
            "{step}"
        );
        let left = leftovers(&d, &sb.id);
        assert!(left.is_empty(), "{step}: {left:#?}");
    }
    d.finish().await;
    let _ = std::fs::remove_file(&fault_file);
}

/// [`spec`] without its port forward: the host port stays leased to a
/// sandbox whose cleanup is pending, as its address does.
fn spec_without_forward(pool: &Pool) -> pb::SandboxSpec {
    let mut s = spec(pool);
    if let Some(n) = s.network.as_mut() {
        n.port_forwards.clear();
    }
    s
}

/// The sandbox listed under `id`, if any.
async fn listed(c: &mut crate::harness::Clients, id: &str) -> Option<pb::Sandbox> {
    c.sandboxes
        .list_sandboxes(pb::ListSandboxesRequest::default())
        .await
        .expect("list")
        .into_inner()
        .sandboxes
        .into_iter()
        .find(|s| s.id == id)
}

/// Creates `spec`, which must fail at "launch config" with its rollback's
/// cleanup failing too; returns the id of the sandbox left behind.
async fn create_with_failed_rollback(
    d: &Daemon,
    c: &mut crate::harness::Clients,
    pool: &Pool,
    fault_file: &std::path::Path,
) -> String {
    std::fs::write(
        fault_file,
        format!("{}\nonce:{}\n", fault::LAUNCH_CONFIG, fault::CLEANUP),
    )
    .expect("arm");
    let err = c
        .sandboxes
        .create_sandbox(pb::CreateSandboxRequest {
            spec: Some(spec(pool)),
            verify: false,
            request_id: "uncleaned".into(),
        })
        .await
        .expect_err("the create fails");
    std::fs::write(fault_file, "").expect("disarm");
    let Some(id) = logged_id(d, "create failed") else {
        panic!(
            "no rollback logged; the create failed with {err:?}; the daemon's log:\n{}",
            d.log_text()
        );
    };
    let message = err.message();
    assert!(
        message.contains("injected fault at step \"launch config\"")
            && message.contains("injected fault at step \"cleanup\"")
            && message.contains(&format!("sandbox {id} stays listed")),
        "{err:?}"
    );
    id
}

/// Found on FreeBSD 15.1 and true of the daemon everywhere: a create whose
/// rollback could not clean the host released its address, which was
/// still configured there, and the next sandbox got it. Now the failed
/// sandbox stays listed holding its lease until a destroy, or the next
/// daemon start, finishes the cleanup; only then is the address free.
#[cfg_attr(
    not(all(
        target_os = "linux",
        feature = "fault-injection",
        not(feature = "force-chroot")
    )),
    ignore = "needs the Linux backend built with --features fault-injection"
)]
#[tokio::test]
async fn a_failed_cleanup_keeps_the_address_leased_until_it_is_finished() {
    let pool = Pool::new();
    let fault_file =
        std::env::temp_dir().join(format!("sandboxd-e2e-cleanup-{}", std::process::id()));
    std::fs::write(&fault_file, "").expect("fault file");
    let mut d = Daemon::start_full(
        None,
        &["--net-pool", &pool.cidr],
        &[(fault::FILE_ENV, &fault_file.to_string_lossy())],
    );
    let mut c = d.clients().await;

    // 1. The create fails and so does its rollback's cleanup.
    let id = create_with_failed_rollback(&d, &mut c, &pool, &fault_file).await;
    let kept = listed(&mut c, &id).await.expect("the sandbox stays listed");
    assert_eq!(kept.addresses, vec![pool.addr(2)]);
    assert_eq!(kept.state, pb::SandboxState::ExitedState as i32, "{kept:?}");
    assert!(
        !network_leaks(&id).is_empty(),
        "the fault should have left the host configured"
    );
    // Its address (and host port) is not leased again while its cleanup
    // is pending.
    let err = c
        .sandboxes
        .create_sandbox(pb::CreateSandboxRequest {
            spec: Some(spec(&pool)),
            verify: false,
            request_id: String::new(),
        })
        .await
        .expect_err("its host port is still forwarded");
    assert_eq!(err.code(), tonic::Code::AlreadyExists, "{err:?}");
    let other = c.create(spec_without_forward(&pool)).await;
    assert_eq!(other.addresses, vec![pool.addr(3)]);
    assert!(c.destroy(&other.id).await);
    // A destroy finishes the cleanup; then the address is free again.
    assert!(c.destroy(&id).await);
    let left = leftovers(&d, &id);
    assert!(left.is_empty(), "after destroy: {left:#?}");
    let sb = c.create(spec(&pool)).await;
    assert_eq!(sb.addresses, vec![pool.addr(2)]);
    assert!(c.destroy(&sb.id).await);

    // 2. The next daemon start finishes it.
    let id = create_with_failed_rollback(&d, &mut c, &pool, &fault_file).await;
    drop(c);
    d.kill_and_restart();
    let mut c = d.clients().await;
    assert!(listed(&mut c, &id).await.is_none(), "finished at start-up");
    let left = leftovers(&d, &id);
    assert!(left.is_empty(), "after restart: {left:#?}");
    let sb = c.create(spec(&pool)).await;
    assert_eq!(sb.addresses, vec![pool.addr(2)]);
    assert!(c.destroy(&sb.id).await);

    // 3. A start whose cleanup fails again restores the lease.
    let id = create_with_failed_rollback(&d, &mut c, &pool, &fault_file).await;
    drop(c);
    std::fs::write(&fault_file, fault::CLEANUP).expect("arm");
    d.kill_and_restart();
    std::fs::write(&fault_file, "").expect("disarm");
    let mut c = d.clients().await;
    let kept = listed(&mut c, &id)
        .await
        .expect("still listed after restart");
    assert_eq!(kept.addresses, vec![pool.addr(2)]);
    let other = c.create(spec_without_forward(&pool)).await;
    assert_eq!(
        other.addresses,
        vec![pool.addr(3)],
        "the lease was restored"
    );
    assert!(c.destroy(&other.id).await);
    assert!(c.destroy(&id).await);
    let left = leftovers(&d, &id);
    assert!(left.is_empty(), "after the last destroy: {left:#?}");

    drop(c);
    d.finish().await;
    let _ = std::fs::remove_file(&fault_file);
}
