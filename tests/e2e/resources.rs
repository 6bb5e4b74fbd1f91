//! Resources a sandbox can take from the host: the writable layer, /tmp and
//! /dev/shm are size-capped tmpfs, so writing past them fails with ENOSPC
//! inside the sandbox and the host's state directory does not grow. Runs on
//! the Linux backend and on the force-chroot build (on Linux); the FreeBSD
//! backend's sizes are table-tested in its plan.

use std::path::Path;

use sandboxd_proto::v1 as pb;

use crate::harness::{Clients, Daemon, argv, out};

const MIB: u64 = 1 << 20;

async fn root_sh(c: &mut Clients, id: &str, script: &str) -> pb::ExecSyncResponse {
    let mut p = argv(&["/bin/sh", "-c", script]);
    p.user = Some(pb::User {
        uid: Some(0),
        gid: Some(0),
        additional_gids: vec![],
    });
    c.exec_sync(id, p, 120_000).await
}

/// Bytes allocated under `dir` on the host, not crossing into other
/// filesystems (a tmpfs mounted below it is not the host's disk).
fn allocated(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(top) = std::fs::symlink_metadata(dir) else {
        return 0;
    };
    let mut total = 0;
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(m) = e.path().symlink_metadata() else {
                continue;
            };
            if m.dev() != top.dev() {
                continue;
            }
            total += m.blocks() * 512;
            if m.is_dir() {
                stack.push(e.path());
            }
        }
    }
    total
}

fn limit(value: u64) -> Option<pb::Limit> {
    Some(pb::Limit {
        value,
        requirement: pb::Requirement::Required as i32,
    })
}

/// An IDLE sandbox on `image` with these limits.
async fn idle_with(c: &mut Clients, image: &str, limits: pb::Limits) -> pb::Sandbox {
    c.create(pb::SandboxSpec {
        image: image.into(),
        mode: pb::SandboxMode::Idle as i32,
        limits: Some(limits),
        ..Default::default()
    })
    .await
}

/// The size in KiB of the filesystem of each of `paths`, from statfs(2)
/// (`stat -f`; df would need /proc, which a chroot does not have).
async fn df_kib(c: &mut Clients, id: &str, paths: &str) -> Vec<u64> {
    // busybox's applets: the test image links only a few of them.
    let r = c
        .sh(id, &format!("busybox stat -f -c '%b %S' {paths}"))
        .await;
    out(&r)
        .lines()
        .filter_map(|l| {
            let (blocks, size) = l.split_once(' ')?;
            Some(blocks.parse::<u64>().ok()? * size.trim().parse::<u64>().ok()? / 1024)
        })
        .collect()
}

/// Writes `mib` MiB of zeros to `path` and returns dd's output and status.
fn dd(path: &str, mib: u64) -> String {
    format!("busybox dd if=/dev/zero of={path} bs=1M count={mib} 2>&1; echo rc=$?")
}

#[cfg_attr(
    not(target_os = "linux"),
    ignore = "needs Linux mounts (the FreeBSD jail backend has no /dev/shm and no layer for directory images)"
)]
#[tokio::test]
async fn writing_past_the_disk_limit_fails_with_enospc_and_the_host_does_not_grow() {
    let d = Daemon::start();
    d.make_busybox_image("bb");
    let mut c = d.clients().await;
    // A directory image (overlay upper on the layer tmpfs) and the host
    // image (its tmpfs root is the layer).
    for image in ["bb", "host"] {
        let sb = idle_with(
            &mut c,
            image,
            pb::Limits {
                disk_bytes: limit(32 * MIB),
                ..Default::default()
            },
        )
        .await;
        let row = sb
            .isolation
            .as_ref()
            .and_then(|r| {
                r.properties
                    .iter()
                    .find(|p| p.property == pb::IsolationProperty::DiskLimit as i32)
            })
            .cloned()
            .expect("a DISK_LIMIT row");
        assert_eq!(
            row.level,
            pb::EnforcementLevel::Enforced as i32,
            "{image}: {row:?}"
        );
        assert_eq!(df_kib(&mut c, &sb.id, "/").await, [32 * 1024], "{image}");
        // The overlay's upper and work directories (on the layer tmpfs,
        // outside the root) are not reachable from inside.
        let r = root_sh(&mut c, &sb.id, "busybox ls -a /").await;
        let listing = out(&r);
        let names: Vec<&str> = listing.lines().collect();
        assert!(
            !names.contains(&"upper") && !names.contains(&"work"),
            "{image}: {names:?}"
        );
        let before = allocated(&d.state);
        let r = root_sh(&mut c, &sb.id, &dd("/big", 64)).await;
        let grew = allocated(&d.state).saturating_sub(before);
        assert!(
            out(&r).contains("No space left on device") && !out(&r).contains("rc=0"),
            "{image}: writing 64 MiB past a 32 MiB disk limit: {}",
            out(&r)
        );
        assert!(
            grew < 4 * MIB,
            "{image}: the host's state dir grew by {grew} bytes"
        );
        // Freed space is usable again: the limit is on what is held.
        let r = root_sh(
            &mut c,
            &sb.id,
            &format!("busybox rm /big; {}", dd("/again", 8)),
        )
        .await;
        assert!(out(&r).contains("rc=0"), "{image}: {}", out(&r));
        c.destroy(&sb.id).await;
    }
    d.finish().await;
}

#[cfg_attr(
    not(target_os = "linux"),
    ignore = "needs Linux mounts (the FreeBSD jail backend has no /dev/shm and no layer for directory images)"
)]
#[tokio::test]
async fn tmp_and_dev_shm_are_size_capped() {
    let d = Daemon::start();
    d.make_busybox_image("bb");
    let mut c = d.clients().await;
    for image in ["bb", "host"] {
        // The documented defaults, without any memory limit.
        let sb = c.idle(image).await;
        assert_eq!(
            df_kib(&mut c, &sb.id, "/tmp /dev/shm").await,
            [256 * 1024, 64 * 1024],
            "{image}: default sizes"
        );
        c.destroy(&sb.id).await;
        // The spec's sizes; written past by the default (unprivileged) user.
        let sb = idle_with(
            &mut c,
            image,
            pb::Limits {
                tmp_bytes: 8 * MIB,
                shm_bytes: 4 * MIB,
                ..Default::default()
            },
        )
        .await;
        for (path, mib) in [("/tmp/big", 16), ("/dev/shm/big", 8)] {
            let r = c.sh(&sb.id, &dd(path, mib)).await;
            assert!(
                out(&r).contains("No space left on device") && !out(&r).contains("rc=0"),
                "{image}: writing {mib} MiB to {path}: {}",
                out(&r)
            );
        }
        // Empty files cost inodes, which are capped too (1024 for 8 MiB).
        let r = c
            .sh(
                &sb.id,
                "i=0; while [ $i -lt 2000 ]; do touch /tmp/f$i 2>/dev/null || break; i=$((i+1)); done; echo made=$i",
            )
            .await;
        let made: u64 = out(&r)
            .trim()
            .strip_prefix("made=")
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| {
                panic!(
                    "{image}: {} {}",
                    out(&r),
                    String::from_utf8_lossy(&r.stderr)
                )
            });
        assert!(made < 1024, "{image}: {made} empty files in an 8 MiB /tmp");
        c.destroy(&sb.id).await;
    }
    d.finish().await;
}

#[cfg_attr(
    not(target_os = "linux"),
    ignore = "needs Linux mounts (the FreeBSD jail backend has no /dev/shm and no layer for directory images)"
)]
#[tokio::test]
async fn the_daemon_default_applies_and_clients_may_only_lower_it() {
    let d = Daemon::start_with(&["--disk-limit", "16M"]);
    d.make_busybox_image("bb");
    let mut c = d.clients().await;
    // No limit in the spec: the daemon's 16 MiB, PREFERRED; /tmp and
    // /dev/shm shrink to it.
    let sb = c.idle("bb").await;
    let limits = sb.spec.as_ref().and_then(|s| s.limits).expect("limits");
    assert_eq!(
        limits.disk_bytes,
        Some(pb::Limit {
            value: 16 * MIB,
            requirement: pb::Requirement::Preferred as i32
        })
    );
    assert_eq!(
        df_kib(&mut c, &sb.id, "/ /tmp /dev/shm").await,
        [16 * 1024; 3]
    );
    let r = root_sh(&mut c, &sb.id, &dd("/big", 32)).await;
    assert!(
        out(&r).contains("No space left on device"),
        "writing 32 MiB past the daemon's 16 MiB default: {}",
        out(&r)
    );
    c.destroy(&sb.id).await;
    // Asking for more than the daemon's limit is refused, naming the field.
    for limits in [
        pb::Limits {
            disk_bytes: limit(64 * MIB),
            ..Default::default()
        },
        pb::Limits {
            tmp_bytes: 64 * MIB,
            ..Default::default()
        },
    ] {
        let err = c
            .sandboxes
            .create_sandbox(pb::CreateSandboxRequest {
                spec: Some(pb::SandboxSpec {
                    image: "bb".into(),
                    mode: pb::SandboxMode::Idle as i32,
                    limits: Some(limits),
                    ..Default::default()
                }),
                request_id: String::new(),
                verify: false,
            })
            .await
            .expect_err("above the daemon's cap");
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
        assert!(err.message().contains("daemon's cap"), "{err:?}");
    }
    d.finish().await;
}
