//! Resources a sandbox can take from the host: the writable layer, /tmp and
//! /dev/shm are size-capped, so writing past them fails with ENOSPC inside
//! the sandbox and the host's state directory does not grow.

use std::path::Path;

use sandboxd_proto::v1 as pb;

use crate::harness::{Clients, Daemon, argv, backend, linux_backend, out};

/// Prints why a test does nothing in this build, instead of skipping
/// silently.
fn skip_unless_linux(test: &str) -> bool {
    if linux_backend() {
        return false;
    }
    eprintln!(
        "SKIPPED {test}: needs the Linux namespace backend; this build uses {}",
        backend().name()
    );
    true
}

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
/// filesystems.
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

const MIB: u64 = 1 << 20;

#[tokio::test]
async fn writing_past_the_default_limits_fails_with_enospc() {
    if skip_unless_linux("writing_past_the_default_limits_fails_with_enospc") {
        return;
    }
    let d = Daemon::start();
    d.make_busybox_image("bb");
    let mut c = d.clients().await;
    for image in ["bb", "host"] {
        let sb = c.idle(image).await;
        let before = allocated(&d.state);
        // 1100 MiB: past the 1 GiB default writable layer.
        let r = root_sh(
            &mut c,
            &sb.id,
            "dd if=/dev/zero of=/big bs=1M count=1100 2>&1; echo rc=$?",
        )
        .await;
        let text = out(&r);
        let grew = allocated(&d.state).saturating_sub(before);
        assert!(
            text.contains("No space left on device"),
            "{image}: writing 1100 MiB to / succeeded: {text}"
        );
        assert!(
            grew < 64 * MIB,
            "{image}: the host's state dir grew by {grew} bytes"
        );
        for (dir, mib) in [("/tmp", 300), ("/dev/shm", 100)] {
            let r = c
                .sh(
                    &sb.id,
                    &format!("dd if=/dev/zero of={dir}/big bs=1M count={mib} 2>&1; echo rc=$?"),
                )
                .await;
            assert!(
                out(&r).contains("No space left on device"),
                "{image}: writing {mib} MiB to {dir} succeeded: {}",
                out(&r)
            );
        }
        c.destroy(&sb.id).await;
    }
    d.finish().await;
}
