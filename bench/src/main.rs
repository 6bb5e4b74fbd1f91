//! `sandboxd-bench`: times sandboxd against `unshare … chroot` ("b"),
//! bubblewrap, crun and runc in one run and prints medians, p10/p90 and
//! ratios to b next to the targets of DESIGN.md ("Performance targets").
//!
//! Run it by hand, as root, through `bench/run.sh`; it is not part of the
//! test suite. It starts its own daemon on a private socket, state dir and
//! images dir under `/tmp/sandboxd-bench-<pid>`, and removes everything it
//! made before it exits. See `bench/README.md`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

#[cfg(target_os = "linux")]
mod linux;

/// Command-line flags.
#[derive(Debug, Parser)]
#[command(
    name = "sandboxd-bench",
    about = "Times sandboxd against unshare+chroot, bwrap, crun and runc and prints ratios (run as root)"
)]
// On other OSes only `--help` is served, so the fields are never read there.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
pub(crate) struct Args {
    /// Measured iterations of each latency benchmark (after the warm-up).
    #[arg(long, default_value_t = 30)]
    pub(crate) iterations: usize,
    /// Unmeasured warm-up iterations of each latency benchmark.
    #[arg(long, default_value_t = 3)]
    pub(crate) warmup: usize,
    /// Duration of each 2-way throughput run, in seconds.
    #[arg(long, default_value_t = 5)]
    pub(crate) seconds: u64,
    /// IDLE sandboxes created for the memory-per-sandbox measurement.
    #[arg(long, default_value_t = 200)]
    pub(crate) idle_sandboxes: usize,
    /// The sandboxd binary; default: `sandboxd` next to this binary
    /// (target/release/sandboxd).
    #[arg(long)]
    pub(crate) sandboxd: Option<PathBuf>,
    /// The sandboxctl binary timed by the `sandboxctl run` and start-up
    /// rows; default: `sandboxctl` next to this binary
    /// (target/release/sandboxctl).
    #[arg(long)]
    pub(crate) sandboxctl: Option<PathBuf>,
    /// The static busybox the ROOT image is made from; default: /bin/busybox
    /// or /usr/bin/busybox.
    #[arg(long)]
    pub(crate) busybox: Option<PathBuf>,
    /// Write the daemon's log here (kept after the run) instead of into the
    /// private directory; set SANDBOXD_LOG=debug for per-step timestamps.
    #[arg(long)]
    pub(crate) daemon_log: Option<PathBuf>,
    /// Instead of the benchmark: soak for this many seconds (4 clients doing
    /// create/exec/destroy), then report cycles, failures and leaks; fails
    /// unless both are zero. See ci/soak.sh.
    #[arg(long, value_name = "SECONDS")]
    pub(crate) soak: Option<u64>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    #[cfg(target_os = "linux")]
    {
        match linux::main(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("sandboxd-bench: {e:#}");
                ExitCode::FAILURE
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = args;
        eprintln!(
            "sandboxd-bench: only Linux is supported: the baseline and peers \
             (unshare(1) with Linux namespaces, bubblewrap, crun, runc) and the \
             /proc/<pid>/status memory readings exist only there; a FreeBSD \
             comparison (jail(8)) is not implemented"
        );
        ExitCode::from(2)
    }
}
