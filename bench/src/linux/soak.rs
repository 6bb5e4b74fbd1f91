//! `--soak SECONDS`: a soak run for durability, not speed. Four concurrent
//! clients loop create (IDLE) → ExecSync → destroy against a private daemon
//! for the given time; at the end it reports cycles, failures and leaks
//! (mounts under the private directory, sandbox state directories,
//! supervisors and sandbox cgroups left), and fails unless both are zero.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;
use sandboxd_proto::v1 as pb;

use super::daemon::Daemon;
use super::procfs;

/// Concurrent clients.
const CLIENTS: usize = 4;

/// Runs the soak for `seconds` against a daemon started on `dir`.
pub(crate) async fn soak(sandboxd: &Path, dir: &Path, seconds: u64) -> anyhow::Result<()> {
    let daemon = Daemon::start(sandboxd, dir, None)?;
    let cycles = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let mut api = daemon.connect().await?;
        let (cycles, failures) = (cycles.clone(), failures.clone());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let outcome = async {
                    let id = api.create(pb::SandboxMode::Idle).await?;
                    let exec = api.exec_true(&id).await;
                    api.destroy(&id).await?;
                    exec.map(drop)
                }
                .await;
                match outcome {
                    Ok(()) => cycles.fetch_add(1, Ordering::Relaxed),
                    Err(e) => {
                        eprintln!("soak: cycle failed: {e:#}");
                        failures.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    daemon.stop().await?;
    let leaks = leaks(dir);
    let (cycles, failures) = (
        cycles.load(Ordering::Relaxed),
        failures.load(Ordering::Relaxed),
    );
    println!(
        "soak: {seconds} s, {CLIENTS} clients: {cycles} cycles, {failures} failures, {} leaks",
        leaks.len()
    );
    for l in &leaks {
        println!("  leak: {l}");
    }
    if failures > 0 || !leaks.is_empty() {
        bail!("soak failed: {failures} failures, {} leaks", leaks.len());
    }
    Ok(())
}

/// What the run left behind.
fn leaks(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = procfs::mounts_under(dir)
        .into_iter()
        .map(|m| format!("mount {m}"))
        .collect();
    if let Ok(entries) = std::fs::read_dir(dir.join("state").join("sandboxes")) {
        out.extend(
            entries
                .flatten()
                .map(|e| format!("state {}", e.path().display())),
        );
    }
    // Supervisors of this run's daemon would still carry `__supervise` in
    // their command line; none may be left.
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for e in entries.flatten() {
            let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            if cmdline.windows(12).any(|w| w == b"__supervise\0") {
                out.push(format!(
                    "supervisor pid {}",
                    e.file_name().to_string_lossy()
                ));
            }
        }
    }
    for root in [
        "/sys/fs/cgroup/unified/sandboxd",
        "/sys/fs/cgroup/sandboxd",
        "/sys/fs/cgroup/memory/sandboxd",
        "/sys/fs/cgroup/pids/sandboxd",
    ] {
        if let Ok(entries) = std::fs::read_dir(root) {
            out.extend(
                entries
                    .flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| format!("cgroup {}", e.path().display())),
            );
        }
    }
    out
}
