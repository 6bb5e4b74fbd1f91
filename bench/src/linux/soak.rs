//! `--soak SECONDS`: a soak run for durability, not speed. Four concurrent
//! clients loop create (IDLE) → ExecSync → destroy against a private daemon
//! for the given time, every other cycle with a RESTRICTED network (netns,
//! veth, routes, nft table, NAT) from a 198.51.100.192/26 pool; at the end it
//! reports cycles, failures and leaks (mounts under the private directory,
//! sandbox state directories, supervisors, sandbox cgroups, sandbox links,
//! nft tables and pool routes left), and fails unless both are zero.

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
/// The RESTRICTED sandboxes' address pool: a documentation range the e2e
/// tests never lease from (they use 203.0.113.0/24 and the low end of
/// 198.51.100.0/24), so a soak can run beside them.
const POOL: &str = "198.51.100.192/26";

/// Runs the soak for `seconds` against a daemon started on `dir`, its log
/// kept at `log` if given (`--daemon-log`).
pub(crate) async fn soak(
    sandboxd: &Path,
    dir: &Path,
    seconds: u64,
    log: Option<&Path>,
) -> anyhow::Result<()> {
    let daemon = Daemon::start_with(sandboxd, dir, log, &["--net-pool", POOL])?;
    let cycles = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let mut api = daemon.connect().await?;
        let (cycles, failures) = (cycles.clone(), failures.clone());
        tasks.push(tokio::spawn(async move {
            let mut restricted = false;
            while Instant::now() < deadline {
                restricted = !restricted;
                let network = restricted.then(|| pb::NetworkPolicy {
                    mode: pb::NetworkMode::Restricted as i32,
                    outbound_nat: true,
                    ..Default::default()
                });
                let outcome = async {
                    let id = api.create_with(pb::SandboxMode::Idle, network).await?;
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
    // The network: sandbox links, nft tables, routes into the pool.
    if let Ok(entries) = std::fs::read_dir("/sys/class/net") {
        out.extend(
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("sbx"))
                .map(|n| format!("link {n}")),
        );
    }
    let text = |cmd: &str, args: &[&str]| {
        std::process::Command::new(cmd)
            .args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    };
    out.extend(
        text("nft", &["list", "tables"])
            .lines()
            .filter(|l| l.contains("sandboxd_"))
            .map(|l| format!("nft {l}")),
    );
    out.extend(
        text("ip", &["route", "show", "table", "all"])
            .lines()
            .filter(|l| l.starts_with("198.51.100.") || l.contains(" 198.51.100."))
            .map(|l| format!("route {l}")),
    );
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
