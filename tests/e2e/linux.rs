//! What the Linux backend enforces, observed from inside and from the host:
//! pid/uts/ipc/net/mount namespaces, cgroup limits (OOM, pids), the
//! capability set and escape probes.

use std::time::Duration;

use sandboxd_proto::v1 as pb;

use crate::harness::{Clients, Daemon, argv, code, out};

fn limit(value: u64) -> Option<pb::Limit> {
    Some(pb::Limit {
        value,
        requirement: 0,
    })
}

async fn root_sh(c: &mut Clients, id: &str, script: &str) -> pb::ExecSyncResponse {
    let mut p = argv(&["/bin/sh", "-c", script]);
    p.user = Some(pb::User {
        uid: Some(0),
        gid: Some(0),
        additional_gids: vec![],
    });
    c.exec_sync(id, p, 20_000).await
}

#[cfg_attr(
    any(feature = "force-chroot", not(target_os = "linux")),
    ignore = "the Linux namespace backend's suite: needs Linux and the default (non-force-chroot) build"
)]
#[tokio::test]
async fn namespaces_hide_the_host() {
    let d = Daemon::start();
    let secret = d.dir.join("host-secret");
    std::fs::write(&secret, "host only").expect("canary");
    let mut c = d.clients().await;
    let sb = c
        .create(pb::SandboxSpec {
            mode: pb::SandboxMode::Idle as i32,
            hostname: "web".into(),
            ..Default::default()
        })
        .await;
    // UTS: its own hostname.
    assert_eq!(out(&c.sh(&sb.id, "hostname").await), "web\n");
    // PID: only its own processes; pid 1 is the sandbox's reaper.
    let r = c
        .sh(
            &sb.id,
            "echo $$; ls /proc | grep -cE '^[0-9]+$'; tr '\\0' ' ' </proc/1/cmdline",
        )
        .await;
    let text = out(&r);
    let mut lines = text.lines();
    let my_pid: i32 = lines.next().and_then(|l| l.parse().ok()).expect("pid");
    let count: usize = lines.next().and_then(|l| l.parse().ok()).expect("count");
    assert!(my_pid < 10, "pid {my_pid} inside a fresh pid namespace");
    assert!(count <= 5, "{count} processes visible: {text}");
    assert!(
        lines.next().is_some_and(|l| l.contains("__supervise")),
        "pid 1 is the reaper: {text}"
    );
    // NET: only loopback, and it is down by default (NONE).
    assert_eq!(out(&c.sh(&sb.id, "ls /sys/class/net").await), "lo\n");
    // MNT: the image is /, host files are out of reach.
    let r = c
        .sh(&sb.id, &format!("cat {} 2>&1; ls /", secret.display()))
        .await;
    assert!(!out(&r).contains("host only"), "{}", out(&r));
    // IPC: a segment made inside is invisible outside.
    let before = std::fs::read_to_string("/proc/sysvipc/shm")
        .expect("shm")
        .lines()
        .count();
    let r = root_sh(
        &mut c,
        &sb.id,
        "ipcmk -M 4096 >/dev/null && ipcs -m | grep -c 0x",
    )
    .await;
    assert_eq!(
        out(&r).trim(),
        "1",
        "made inside: {} {}",
        out(&r),
        String::from_utf8_lossy(&r.stderr)
    );
    let after = std::fs::read_to_string("/proc/sysvipc/shm")
        .expect("shm")
        .lines()
        .count();
    assert_eq!(
        before, after,
        "the segment leaked into the host's IPC namespace"
    );
    d.finish().await;
}

/// LOOPBACK brings `lo` up and NONE keeps it down, each in a network
/// namespace of the sandbox's own. The daemon keeps new namespaces ready for
/// them (the first create of a daemon clones its own); either way each
/// sandbox's is not the host's and not another sandbox's, has only `lo`,
/// and is the same for every process in it.
#[cfg_attr(
    any(feature = "force-chroot", not(target_os = "linux")),
    ignore = "the Linux namespace backend's suite: needs Linux and the default (non-force-chroot) build"
)]
#[tokio::test]
async fn every_sandbox_gets_a_fresh_network_namespace_of_its_own() {
    let d = Daemon::start();
    let mut c = d.clients().await;
    let host = std::fs::read_link("/proc/self/ns/net").expect("host netns");
    let mut seen = Vec::new();
    let mut ids = Vec::new();
    for i in 0..6 {
        let (mode, want) = if i % 2 == 0 {
            (pb::NetworkMode::None, "down")
        } else {
            (pb::NetworkMode::Loopback, "up")
        };
        let sb = c
            .create(pb::SandboxSpec {
                mode: pb::SandboxMode::Idle as i32,
                network: Some(pb::NetworkPolicy {
                    mode: mode as i32,
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await;
        let probe =
            "readlink /proc/self/ns/net; cat /sys/class/net/lo/operstate; ls /sys/class/net";
        let (a, b) = (c.sh(&sb.id, probe).await, c.sh(&sb.id, probe).await);
        let text = out(&a);
        let mut lines = text.lines();
        let ns = lines.next().unwrap_or_default().to_owned();
        let state = lines.next().unwrap_or_default();
        let state = if state == "unknown" || state == "up" {
            "up"
        } else {
            "down"
        };
        assert_eq!(state, want, "sandbox {i} ({mode:?}): {text}");
        assert!(text.ends_with("\nlo\n"), "sandbox {i}: only lo: {text}");
        assert_eq!(
            out(&b),
            text,
            "two processes of sandbox {i} see different networks"
        );
        assert!(ns.starts_with("net:["), "sandbox {i}: {text}");
        assert_ne!(
            std::path::Path::new(&ns),
            host.as_path(),
            "sandbox {i} is in the host's network"
        );
        assert!(
            !seen.contains(&ns),
            "sandbox {i} shares {ns} with an earlier one"
        );
        seen.push(ns);
        ids.push(sb.id);
    }
    for id in &ids {
        c.destroy(id).await;
    }
    d.finish().await;
}

/// The sandbox's cgroup directories on this host: `sandboxd/<id>` under
/// the v2 root (or the hybrid layout's `unified`) and each v1 hierarchy.
fn cgroup_dirs_of(id: &str) -> Vec<std::path::PathBuf> {
    let mut roots = vec![std::path::PathBuf::from("/sys/fs/cgroup")];
    if let Ok(entries) = std::fs::read_dir("/sys/fs/cgroup") {
        roots.extend(entries.flatten().map(|e| e.path()));
    }
    roots
        .into_iter()
        .map(|r| r.join("sandboxd").join(id))
        .filter(|d| d.join("cgroup.procs").is_file())
        .collect()
}

/// The host pids in a cgroup file (`cgroup.procs` or `tasks`), sorted.
fn pids_in(file: &std::path::Path) -> Vec<u32> {
    let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let mut pids: Vec<u32> = text.lines().filter_map(|l| l.trim().parse().ok()).collect();
    pids.sort_unstable();
    pids
}

/// pid 1 and every process started in the sandbox (its main process, an
/// exec, what those fork) are in each of the sandbox's cgroups, every
/// thread too (v1 hierarchies are joined per thread), and nothing of the
/// sandbox's pid namespace is outside them.
#[cfg_attr(
    any(feature = "force-chroot", not(target_os = "linux")),
    ignore = "the Linux namespace backend's suite: needs Linux and the default (non-force-chroot) build"
)]
#[tokio::test]
async fn every_process_of_a_sandbox_is_in_each_of_its_cgroups() {
    let d = Daemon::start();
    let mut c = d.clients().await;
    let sb = c
        .create(pb::SandboxSpec {
            process: Some(argv(&["/bin/sleep", "60"])),
            limits: Some(pb::Limits {
                memory_bytes: limit(256 << 20),
                pids: limit(100),
                cpu_millis: limit(500),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await;
    let r = c
        .sh(&sb.id, "sleep 60 >/dev/null 2>&1 & echo started")
        .await;
    assert_eq!(out(&r), "started\n");
    let dirs = cgroup_dirs_of(&sb.id);
    // memory, pids and cpu: each on a hierarchy of this host's.
    assert!(!dirs.is_empty(), "no cgroup directory of {}", sb.id);
    let procs = pids_in(&dirs[0].join("cgroup.procs"));
    // pid 1, the main process and the exec's background sleep.
    assert!(procs.len() >= 3, "{}: {procs:?}", dirs[0].display());
    for dir in &dirs {
        assert_eq!(
            pids_in(&dir.join("cgroup.procs")),
            procs,
            "{}",
            dir.display()
        );
        if dir.join("tasks").is_file() {
            assert_eq!(
                pids_in(&dir.join("tasks")),
                procs,
                "{}: threads",
                dir.display()
            );
        }
    }
    // Everything in pid 1's pid namespace is in the cgroups.
    let pid1 = procs
        .iter()
        .copied()
        .find(|p| {
            std::fs::read_to_string(format!("/proc/{p}/status")).is_ok_and(|s| {
                s.lines()
                    .any(|l| l.starts_with("NSpid:") && l.split_whitespace().last() == Some("1"))
            })
        })
        .unwrap_or_else(|| panic!("no pid 1 among {procs:?}"));
    let ns = std::fs::read_link(format!("/proc/{pid1}/ns/pid")).expect("pid 1's pid namespace");
    let members: Vec<u32> = std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter(|p: &u32| std::fs::read_link(format!("/proc/{p}/ns/pid")).is_ok_and(|l| l == ns))
        .collect();
    assert!(members.len() >= 3, "{members:?}");
    for p in members {
        assert!(
            procs.contains(&p),
            "pid {p} of the sandbox is outside its cgroups {procs:?}"
        );
    }
    c.destroy(&sb.id).await;
    d.finish().await;
}

#[cfg_attr(
    any(feature = "force-chroot", not(target_os = "linux")),
    ignore = "the Linux namespace backend's suite: needs Linux and the default (non-force-chroot) build"
)]
#[tokio::test]
async fn memory_limit_ends_a_hog_with_oom_killed_and_cgroups_are_removed() {
    let d = Daemon::start();
    let mut c = d.clients().await;
    let sb = c
        .create(pb::SandboxSpec {
            // tail buffers a "line" that never ends: it grows until killed.
            process: Some(argv(&["/bin/sh", "-c", "exec tail /dev/zero"])),
            limits: Some(pb::Limits {
                memory_bytes: limit(64 << 20),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await;
    let w = tokio::time::timeout(
        Duration::from_secs(60),
        c.sandboxes
            .wait_sandbox(pb::WaitSandboxRequest { id: sb.id.clone() }),
    )
    .await
    .expect("the hog ends")
    .expect("wait")
    .into_inner();
    let exit = w.exit.expect("exit");
    assert_eq!(exit.reason, pb::ExitReason::OomKilled as i32, "{exit:?}");
    assert_eq!(exit.exit_code, 137);
    let cgroup_dirs: Vec<std::path::PathBuf> = ["/sys/fs/cgroup/memory", "/sys/fs/cgroup"]
        .iter()
        .map(|root| std::path::Path::new(root).join("sandboxd").join(&sb.id))
        .collect();
    c.destroy(&sb.id).await;
    for dir in cgroup_dirs {
        assert!(
            crate::harness::gone(&dir).await,
            "{} left behind",
            dir.display()
        );
    }
    d.finish().await;
}

#[cfg_attr(
    any(feature = "force-chroot", not(target_os = "linux")),
    ignore = "the Linux namespace backend's suite: needs Linux and the default (non-force-chroot) build"
)]
#[tokio::test]
async fn pids_limit_stops_a_fork_bomb_and_the_daemon_keeps_answering() {
    let d = Daemon::start();
    let mut c = d.clients().await;
    let sb = c
        .create(pb::SandboxSpec {
            mode: pb::SandboxMode::Idle as i32,
            limits: Some(pb::Limits {
                pids: limit(64),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await;
    // The shell gives up when fork fails; the sleeps it started stay.
    c.sh(
        &sb.id,
        "i=0; while [ $i -lt 200 ]; do sleep 30 & i=$((i+1)); done",
    )
    .await;
    let current = ["/sys/fs/cgroup/pids", "/sys/fs/cgroup"]
        .iter()
        .find_map(|root| {
            std::fs::read_to_string(
                std::path::Path::new(root)
                    .join("sandboxd")
                    .join(&sb.id)
                    .join("pids.current"),
            )
            .ok()
        })
        .and_then(|v| v.trim().parse::<u64>().ok())
        .expect("pids.current of the sandbox's cgroup");
    assert!(current <= 64, "{current} tasks despite pids=64");
    assert!(current >= 50, "the bomb did fork ({current} tasks)");
    // The sandbox's status shows its task count.
    let got = c.get(&sb.id).await;
    let tasks = got.usage.and_then(|u| u.pids).expect("pids usage");
    assert!((50..=64).contains(&tasks), "usage.pids = {tasks}");
    let caps = c.host.get_capabilities(pb::GetCapabilitiesRequest {}).await;
    assert!(caps.is_ok(), "the daemon still answers");
    let t = std::time::Instant::now();
    c.destroy(&sb.id).await;
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "destroy took {:?}",
        t.elapsed()
    );
    d.finish().await;
}

#[cfg_attr(
    any(feature = "force-chroot", not(target_os = "linux")),
    ignore = "the Linux namespace backend's suite: needs Linux and the default (non-force-chroot) build"
)]
#[tokio::test]
async fn escape_probes_as_root_are_refused() {
    let d = Daemon::start();
    let mut c = d.clients().await;
    let sb = c.idle("host").await;
    let probes: &[(&str, &str)] = &[
        ("mount proc again", "mount -t proc proc /tmp"),
        ("mount sysfs again", "mount -t sysfs sysfs /tmp"),
        ("mknod a disk", "mknod /tmp/sda b 8 0"),
        (
            "read the helper through /proc/1/exe",
            "head -c 1 /proc/1/exe",
        ),
        ("host files through /proc/1/root", "ls /proc/1/root/"),
        (
            "write a host sysctl",
            "echo evil > /proc/sys/kernel/hostname",
        ),
        ("sysrq", "echo h > /proc/sysrq-trigger"),
        (
            "raw socket",
            "python3 -c 'import socket; socket.socket(socket.AF_INET, socket.SOCK_RAW, 1)'",
        ),
        (
            "load a module",
            "python3 -c 'import ctypes; ctypes.CDLL(None).syscall(175, 0, 0, 0) == 0 or exit(1)'",
        ),
    ];
    for (what, script) in probes {
        let r = root_sh(&mut c, &sb.id, &format!("{script} >/dev/null 2>&1")).await;
        assert_ne!(code(&r), 0, "{what} succeeded as root inside");
    }
    // The classic double-chroot escape only reaches the namespace's root:
    // the host's root was detached after pivot_root.
    let secret = d.dir.join("escape-canary");
    std::fs::write(&secret, "host").expect("canary");
    let script = format!(
        "import os\nos.makedirs('/tmp/e', exist_ok=True)\nos.chroot('/tmp/e')\nfor _ in range(64): os.chdir('..')\nos.chroot('.')\nprint('escaped' if os.path.exists('{}') else 'contained')",
        secret.display()
    );
    let r = root_sh(&mut c, &sb.id, &format!("python3 -c \"{script}\"")).await;
    assert_eq!(
        out(&r),
        "contained\n",
        "stderr: {}",
        String::from_utf8_lossy(&r.stderr)
    );
    // The hostname really is untouched (the write above went nowhere).
    assert_ne!(
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .expect("hostname")
            .trim(),
        "evil"
    );
    // Root inside has the default set only.
    let r = root_sh(&mut c, &sb.id, "grep CapEff /proc/self/status").await;
    let eff = out(&r)
        .split_whitespace()
        .nth(1)
        .and_then(|h| u64::from_str_radix(h, 16).ok())
        .expect("CapEff");
    let default: u64 = [0u32, 1, 3, 4, 5, 6, 7, 8, 10, 18, 29, 31]
        .iter()
        .map(|b| 1u64 << b)
        .sum();
    assert_eq!(eff, default, "effective capabilities {eff:x}");
    d.finish().await;
}

#[cfg_attr(
    any(feature = "force-chroot", not(target_os = "linux")),
    ignore = "the Linux namespace backend's suite: needs Linux and the default (non-force-chroot) build"
)]
#[tokio::test]
async fn readonly_root_keeps_tmp_writable() {
    let d = Daemon::start();
    let mut c = d.clients().await;
    let sb = c
        .create(pb::SandboxSpec {
            mode: pb::SandboxMode::Idle as i32,
            readonly_rootfs: true,
            ..Default::default()
        })
        .await;
    let r = root_sh(
        &mut c,
        &sb.id,
        "touch /x 2>/dev/null && echo root-writable; touch /tmp/y && echo tmp-ok",
    )
    .await;
    assert_eq!(out(&r), "tmp-ok\n");
    // The read-only remount kept the root's other flags.
    let r = c
        .sh(
            &sb.id,
            "awk '$2 == \"/\" { print $4 }' /proc/self/mounts | tail -1",
        )
        .await;
    let opts = out(&r);
    assert!(
        opts.split(',').any(|o| o.trim() == "ro") && opts.contains("nodev"),
        "root mounted {opts}"
    );
    d.finish().await;
}

#[cfg_attr(
    any(feature = "force-chroot", not(target_os = "linux")),
    ignore = "the Linux namespace backend's suite: needs Linux and the default (non-force-chroot) build"
)]
#[tokio::test]
async fn required_isolation_this_runtime_lacks_is_refused() {
    let d = Daemon::start();
    let mut c = d.clients().await;
    let spec = pb::SandboxSpec {
        process: Some(pb::ProcessSpec {
            user: Some(pb::User {
                uid: Some(70_000),
                ..Default::default()
            }),
            ..argv(&["/bin/true"])
        }),
        // A user namespace maps ids 0..65536 only.
        isolation: Some(pb::Isolation {
            user: pb::Requirement::Required as i32,
            ..Default::default()
        }),
        ..Default::default()
    };
    let err = c
        .sandboxes
        .create_sandbox(pb::CreateSandboxRequest {
            spec: Some(spec),
            request_id: String::new(),
            verify: false,
        })
        .await
        .expect_err("refused");
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    for prop in ["user namespace", "70000"] {
        assert!(
            err.message().contains(prop),
            "{prop} missing from {}",
            err.message()
        );
    }
    d.finish().await;
}

#[cfg_attr(
    any(feature = "force-chroot", not(target_os = "linux")),
    ignore = "the Linux namespace backend's suite: needs Linux and the default (non-force-chroot) build"
)]
#[tokio::test]
async fn an_execd_process_killed_by_the_oom_killer_is_reported_as_such() {
    let d = Daemon::start();
    let mut c = d.clients().await;
    let sb = c
        .create(pb::SandboxSpec {
            mode: pb::SandboxMode::Idle as i32,
            limits: Some(pb::Limits {
                memory_bytes: limit(64 << 20),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await;
    let got = c.get(&sb.id).await;
    let memory = got
        .usage
        .and_then(|u| u.memory_bytes)
        .expect("memory usage");
    assert!(memory < 64 << 20, "usage.memory_bytes = {memory}");
    let r = c
        .exec_sync(
            &sb.id,
            argv(&["/bin/sh", "-c", "exec tail /dev/zero"]),
            60_000,
        )
        .await;
    let exit = r.exit.expect("exit");
    assert_eq!(exit.reason, pb::ExitReason::OomKilled as i32, "{exit:?}");
    // A SIGKILL that is not the OOM killer's stays SIGNALED.
    let r = c.sh(&sb.id, "kill -9 $$").await;
    assert_eq!(
        r.exit.expect("exit").reason,
        pb::ExitReason::Signaled as i32
    );
    d.finish().await;
}

#[cfg_attr(
    any(feature = "force-chroot", not(target_os = "linux")),
    ignore = "the Linux namespace backend's suite: needs Linux and the default (non-force-chroot) build"
)]
#[tokio::test]
async fn init_mode_runs_the_init_as_pid_1_and_stops_it_with_the_stop_signal() {
    let d = Daemon::start();
    let mut c = d.clients().await;
    let script = "trap 'exit 0' TERM; echo $$ > /tmp/pid; while true; do sleep 0.1; done";
    let sb = c
        .create(pb::SandboxSpec {
            mode: pb::SandboxMode::Init as i32,
            process: Some(argv(&["/bin/sh", "-c", script])),
            ..Default::default()
        })
        .await;
    let mut pid = String::new();
    for _ in 0..50 {
        pid = out(&c.sh(&sb.id, "cat /tmp/pid 2>/dev/null").await);
        if !pid.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(pid, "1\n", "the init is pid 1 of its namespace");
    let s = c
        .sandboxes
        .stop_sandbox(pb::StopSandboxRequest {
            id: sb.id.clone(),
            grace_seconds: 10,
            signal: 0,
        })
        .await
        .expect("stop")
        .into_inner()
        .sandbox
        .expect("sb");
    let exit = s.exit.expect("exit");
    assert_eq!(
        (exit.reason, exit.exit_code),
        (pb::ExitReason::Exited as i32, 0),
        "the init handled SIGTERM: {exit:?}"
    );
    d.finish().await;
}

#[cfg_attr(
    any(feature = "force-chroot", not(target_os = "linux")),
    ignore = "the Linux namespace backend's suite: needs Linux and the default (non-force-chroot) build"
)]
#[tokio::test]
async fn with_a_user_namespace_root_inside_is_an_unprivileged_uid_outside() {
    let d = Daemon::start();
    let mut c = d.clients().await;
    let mut p = argv(&["/bin/sleep", "30"]);
    p.user = Some(pb::User {
        uid: Some(0),
        gid: Some(0),
        additional_gids: vec![],
    });
    let sb = c
        .create(pb::SandboxSpec {
            process: Some(p),
            isolation: Some(pb::Isolation {
                user: pb::Requirement::Required as i32,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await;
    let row = sb
        .isolation
        .clone()
        .expect("report")
        .properties
        .into_iter()
        .find(|r| r.property == pb::IsolationProperty::User as i32)
        .expect("user row");
    assert_eq!(row.level, pb::EnforcementLevel::Enforced as i32, "{row:?}");
    // From the host: the main process, root inside, is host uid 100000.
    let status = std::fs::read_to_string(format!("/proc/{}/status", sb.main_pid)).expect("status");
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .expect("Uid")
        .split_whitespace()
        .next()
        .map(str::to_owned);
    assert_eq!(uid.as_deref(), Some("100000"));
    // From inside: root, but host-root files are out of reach.
    let r = c.exec_sync(&sb.id, {
        let mut p = argv(&["/bin/sh", "-c", "id -u; cat /proc/self/uid_map | tr -s ' '; cat /etc/shadow >/dev/null 2>&1 && echo shadow-readable; echo done"]);
        p.user = Some(pb::User { uid: Some(0), gid: Some(0), additional_gids: vec![] });
        p
    }, 20_000).await;
    assert_eq!(
        out(&r),
        "0\n 0 100000 65536\ndone\n",
        "stderr: {}",
        String::from_utf8_lossy(&r.stderr)
    );
    // An Exec as an id the map does not cover is refused up front.
    let mut p = argv(&["/bin/true"]);
    p.user = Some(pb::User {
        uid: Some(70_000),
        gid: None,
        additional_gids: vec![],
    });
    let err = c
        .processes
        .exec_sync(pb::ExecSyncRequest {
            sandbox_id: sb.id.clone(),
            process: Some(p),
            ..Default::default()
        })
        .await
        .expect_err("uid outside the map");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("70000"), "{}", err.message());
    d.finish().await;
}

#[cfg_attr(
    any(feature = "force-chroot", not(target_os = "linux")),
    ignore = "the Linux namespace backend's suite: needs Linux and the default (non-force-chroot) build"
)]
#[tokio::test]
async fn stopping_a_sandbox_that_shares_the_host_pid_namespace_touches_only_its_own_processes() {
    let d = Daemon::start();
    let mut c = d.clients().await;
    // A host process of ours, which no stop may reach.
    let mut bystander = std::process::Command::new("/bin/sleep")
        .arg("60")
        .spawn()
        .expect("host sleep");
    let sb = c
        .create(pb::SandboxSpec {
            mode: pb::SandboxMode::Idle as i32,
            isolation: Some(pb::Isolation {
                pid: pb::Requirement::Disabled as i32,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await;
    assert_eq!(
        out(&c.sh(&sb.id, "sleep 300 >/dev/null 2>&1 & echo bg").await),
        "bg\n"
    );
    for signal in [15, 9] {
        c.sandboxes
            .stop_sandbox(pb::StopSandboxRequest {
                id: sb.id.clone(),
                grace_seconds: 2,
                signal,
            })
            .await
            .expect("stop");
    }
    c.destroy(&sb.id).await;
    let alive = bystander.try_wait().expect("try_wait").is_none();
    let _ = bystander.kill();
    let _ = bystander.wait();
    assert!(alive, "a host process outside the sandbox was signalled");
    d.finish().await;
}
