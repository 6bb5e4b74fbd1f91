//! The benchmark run on Linux: set-up, the interleaved latency rounds, the
//! 2-way throughput phase, the memory phase, the report, and clean-up.

mod daemon;
mod peers;
mod procfs;
mod report;
mod soak;
mod stats;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use sandboxd_proto::v1 as pb;

use crate::Args;
use daemon::{Api, Daemon, Lifecycle};
use peers::Peer;

/// A latency row being measured.
#[derive(Debug)]
pub(crate) struct Row {
    /// Label.
    pub(crate) label: String,
    /// Samples after the warm-up.
    pub(crate) samples: Vec<Duration>,
    /// Why there is no number ("not installed", "failed: …").
    pub(crate) unavailable: Option<String>,
}

impl Row {
    fn new(label: impl Into<String>) -> Self {
        Self {
            label: label.into(),
            samples: Vec::new(),
            unavailable: None,
        }
    }

    fn unavailable(label: impl Into<String>, why: impl Into<String>) -> Self {
        Self {
            unavailable: Some(why.into()),
            ..Self::new(label)
        }
    }
}

/// Results of the 2-way throughput phase.
#[derive(Debug)]
pub(crate) struct Throughput {
    /// Two parallel loops of b.
    pub(crate) b: Option<Rate>,
    /// Two concurrent gRPC clients doing create+wait+destroy.
    pub(crate) sandboxd: Result<Rate, String>,
}

/// One throughput run: its rate and the host CPU each operation cost.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rate {
    /// Completed operations per second of wall time.
    pub(crate) ops_per_sec: f64,
    /// Host CPU time (all processes and the kernel, `/proc/stat` busy time
    /// without steal) per completed operation, in ms; None if unreadable.
    pub(crate) cpu_ms_per_op: Option<f64>,
    /// sandboxd's runs: that CPU time by who spent it; None for b, or if
    /// unreadable.
    pub(crate) roles: Option<Roles>,
}

/// Host CPU per operation by role, in ms, from `/proc/<pid>/stat` of the
/// daemon and its zygote. The supervisors are the daemon's children
/// (forked by the zygote with `CLONE_PARENT`), so what they, their pid 1s
/// and the main processes spent reaches the daemon's reaped time when it
/// waits for them (a supervisor still running at the end is not counted:
/// at most the two in flight).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Roles {
    /// The daemon's own threads (gRPC, journal, cleanup, the netns pool).
    pub(crate) daemon: f64,
    /// The zygote's own (forking the supervisors).
    pub(crate) zygote: f64,
    /// Supervisors, pid 1s and main processes, reaped by the daemon.
    pub(crate) sandboxes: f64,
    /// The rest of the host's busy time: the bench's own clients, kernel
    /// threads (namespace and cgroup teardown), interrupts.
    pub(crate) other: f64,
}

/// The daemon's and its zygote's CPU times at one moment.
#[derive(Debug, Clone, Copy)]
struct RoleCpu {
    daemon: procfs::ProcCpu,
    zygote_pid: u32,
    zygote: Duration,
}

impl RoleCpu {
    fn read(daemon: &Daemon) -> Option<Self> {
        let zygote_pid = procfs::children_of(daemon.pid())
            .into_iter()
            .find(|p| procfs::is_zygote(*p))?;
        Some(Self {
            daemon: procfs::proc_cpu(daemon.pid())?,
            zygote_pid,
            zygote: procfs::proc_cpu(zygote_pid)?.own,
        })
    }

    /// Per operation over `total` operations since `before`; None if the
    /// zygote was replaced meanwhile.
    fn since(self, before: Self, total: u64, host_ms: Option<f64>) -> Option<Roles> {
        if total == 0 || self.zygote_pid != before.zygote_pid {
            return None;
        }
        #[allow(clippy::cast_precision_loss)] // op counts are far below 2^52
        let per_op = |d: Duration| d.as_secs_f64() * 1e3 / total as f64;
        let daemon = per_op(self.daemon.own.saturating_sub(before.daemon.own));
        let zygote = per_op(self.zygote.saturating_sub(before.zygote));
        let sandboxes = per_op(self.daemon.reaped.saturating_sub(before.daemon.reaped));
        Some(Roles {
            daemon,
            zygote,
            sandboxes,
            other: (host_ms? - daemon - zygote - sandboxes).max(0.0),
        })
    }
}

/// Results of the memory phase, in KiB.
#[derive(Debug)]
pub(crate) struct Memory {
    /// Daemon VmRSS right after start, no sandboxes (with its zygote's).
    pub(crate) idle_rss: u64,
    /// Daemon VmRSS after all other phases, no sandboxes.
    pub(crate) rss_after_run: Option<u64>,
    /// Per idle sandbox, or why not measured.
    pub(crate) per_sandbox: Result<PerSandbox, String>,
}

/// Host memory per IDLE sandbox.
#[derive(Debug)]
pub(crate) struct PerSandbox {
    /// Sandboxes created.
    pub(crate) count: usize,
    /// Supervisor helpers found as children of the daemon.
    pub(crate) helpers: usize,
    /// (RSS sum after − before) / count, KiB.
    pub(crate) rss_kib: f64,
    /// (PSS sum after − before) / count, KiB.
    pub(crate) pss_kib: f64,
    /// MemAvailable drop / count, KiB (includes kernel memory: mounts,
    /// page tables; noisy).
    pub(crate) mem_available_kib: f64,
    /// Time to create them all, sequentially.
    pub(crate) create_time: Duration,
    /// Time to destroy them all, sequentially.
    pub(crate) destroy_time: Duration,
}

/// Entry point: checks root, then runs everything in a private directory
/// that is removed at the end (unless something is still mounted in it).
pub(crate) fn main(args: &Args) -> anyhow::Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!("run as root: the peers and sandboxd mount, chroot and unshare");
    }
    if args.iterations == 0 {
        bail!("--iterations must be at least 1");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("building the tokio runtime")?;
    let dir = PathBuf::from(format!("/tmp/sandboxd-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("mkdir {}", dir.display()))?;
    let result = runtime.block_on(run(args, &dir));
    let mounts = procfs::mounts_under(&dir);
    if mounts.is_empty() {
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            eprintln!("warning: could not remove {}: {e}", dir.display());
        }
    } else {
        eprintln!(
            "warning: not removing {} because something is still mounted under it:\n{}",
            dir.display(),
            mounts.join("\n")
        );
    }
    result
}

/// Set-up, the phases, the report; the daemon is stopped on every path.
async fn run(args: &Args, dir: &Path) -> anyhow::Result<()> {
    let busybox = match &args.busybox {
        Some(p) => p.clone(),
        None => ["/bin/busybox", "/usr/bin/busybox"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .context("busybox is not installed (apt-get install busybox-static)")?,
    };
    let sandboxd = match &args.sandboxd {
        Some(p) => p.clone(),
        None => std::env::current_exe()
            .context("locating this binary")?
            .with_file_name("sandboxd"),
    };
    if !sandboxd.exists() {
        bail!(
            "{} not found (cargo build --release -p sandboxd, or --sandboxd PATH)",
            sandboxd.display()
        );
    }
    let sandboxctl = match &args.sandboxctl {
        Some(p) => p.clone(),
        None => sandboxd.with_file_name("sandboxctl"),
    };
    if !sandboxctl.exists() {
        bail!(
            "{} not found (cargo build --release -p sandboxctl, or --sandboxctl PATH)",
            sandboxctl.display()
        );
    }

    // One ROOT for the command-line peers and an identical copy as the
    // daemon's image, so the OCI runtimes' mount points never touch it.
    let root = dir.join("root");
    peers::make_busybox_root(&root, &busybox)?;
    peers::make_busybox_root(&dir.join("images").join(daemon::IMAGE), &busybox)?;
    if let Some(seconds) = args.soak {
        return soak::soak(&sandboxd, dir, seconds, args.daemon_log.as_deref()).await;
    }

    let baseline = Peer::baseline()?;
    let mut others: Vec<(Option<Peer>, Row)> = Vec::new();
    match Peer::bwrap() {
        Some(p) => others.push((Some(p), Row::new("bwrap --unshare-all"))),
        None => others.push((
            None,
            Row::unavailable("bwrap --unshare-all", "not installed"),
        )),
    }
    for name in ["crun", "runc"] {
        let label = format!("{name} run (+delete)");
        match Peer::oci(name, &root, dir) {
            Ok(Some(p)) => others.push((Some(p), Row::new(label))),
            Ok(None) => others.push((None, Row::unavailable(label, "not installed"))),
            Err(e) => others.push((None, Row::unavailable(label, format!("failed: {e:#}")))),
        }
    }

    let daemon = Daemon::start(&sandboxd, dir, args.daemon_log.as_deref())?;
    let cli = Cli {
        bin: sandboxctl,
        socket: daemon.socket.clone(),
    };
    let outcome = phases(args, &daemon, &cli, &root, &baseline, &mut others).await;
    let stopped = daemon.stop().await;
    let mut results = outcome?;
    stopped.context("cleaning up the daemon")?;
    results
        .rows
        .splice(1..1, others.into_iter().map(|(_, row)| row));
    report::print(args, &results);
    Ok(())
}

/// Everything measured, for the report.
#[derive(Debug)]
pub(crate) struct Results {
    /// Latency rows: b first, then the peers, then sandboxd's.
    pub(crate) rows: Vec<Row>,
    /// Per-RPC rows of the sandboxd lifecycle.
    pub(crate) breakdown: Vec<Row>,
    /// 2-way throughput.
    pub(crate) throughput: Throughput,
    /// Memory.
    pub(crate) memory: Memory,
}

/// The sandboxctl binary and the socket of the bench's daemon.
#[derive(Debug)]
struct Cli {
    bin: PathBuf,
    socket: PathBuf,
}

impl Cli {
    /// `sandboxctl --host unix://SOCK run --image busybox -- /bin/true`,
    /// spawn to exit: connect, create, the attached exec, destroy.
    fn run_true(&self) -> anyhow::Result<Duration> {
        let mut cmd = std::process::Command::new(&self.bin);
        cmd.arg("--host")
            .arg(format!("unix://{}", self.socket.display()))
            .args(["run", "--image", daemon::IMAGE, "--", "/bin/true"]);
        peers::timed(&mut cmd)
    }

    /// `sandboxctl --version`, spawn to exit: the binary's own start-up
    /// (loader, relocations, argument parsing), no connection.
    fn start_up(&self) -> anyhow::Result<Duration> {
        peers::timed(std::process::Command::new(&self.bin).arg("--version"))
    }
}

/// The measured phases against a running daemon.
async fn phases(
    args: &Args,
    daemon: &Daemon,
    cli: &Cli,
    root: &Path,
    baseline: &Peer,
    others: &mut [(Option<Peer>, Row)],
) -> anyhow::Result<Results> {
    // Idle RSS first: after start, before any client or sandbox.
    tokio::time::sleep(Duration::from_millis(500)).await;
    // With its zygote (the only child of an idle daemon), which is part of
    // the daemon's cost.
    let mut idle_rss = procfs::status_kib(daemon.pid(), "VmRSS")?;
    for pid in procfs::children_of(daemon.pid()) {
        if procfs::is_zygote(pid) {
            idle_rss += procfs::status_kib(pid, "VmRSS").unwrap_or(0);
        }
    }

    let mut api = daemon.connect().await?;
    let idle_id = api
        .create(pb::SandboxMode::Idle)
        .await
        .context("creating the IDLE sandbox for ExecSync")?;

    let mut b_row = Row::new(baseline.label.clone());
    let mut life_row = Row::new("sandboxd create+wait+destroy");
    let mut exec_row = Row::new("sandboxd ExecSync /bin/true");
    let mut cli_run_row = Row::new("sandboxctl run /bin/true");
    let mut cli_start_row = Row::new("sandboxctl --version");
    let mut per_rpc: Vec<Lifecycle> = Vec::new();

    // Interleaved rounds: each round runs every benchmark once, so slow
    // drift of the machine affects all of them alike.
    eprintln!(
        "latency: {} warm-up + {} measured rounds",
        args.warmup, args.iterations
    );
    for round in 0..args.warmup + args.iterations {
        let keep = round >= args.warmup;
        let t = baseline.run_once(root).context("the baseline b failed")?;
        if keep {
            b_row.samples.push(t);
        }
        for (peer, row) in others.iter_mut() {
            let Some(p) = peer else { continue };
            match p.run_once(root) {
                Ok(t) if keep => row.samples.push(t),
                Ok(_) => {}
                Err(e) => {
                    // Never a number for a peer that failed even once.
                    row.samples.clear();
                    row.unavailable = Some(format!("failed: {e:#}"));
                    *peer = None;
                }
            }
        }
        let l = api.lifecycle().await.map_err(|e| with_log(e, daemon))?;
        if keep {
            life_row.samples.push(l.total);
            per_rpc.push(l);
        }
        let t = api
            .exec_true(&idle_id)
            .await
            .map_err(|e| with_log(e, daemon))?;
        if keep {
            exec_row.samples.push(t);
        }
        // The CLI blocks this thread while it runs, as the peers do; the
        // daemon is another process, so nothing here waits on this runtime.
        let t = cli
            .run_true()
            .map_err(|e| with_log(e.context("sandboxctl run"), daemon))?;
        if keep {
            cli_run_row.samples.push(t);
        }
        let t = cli.start_up().context("sandboxctl --version")?;
        if keep {
            cli_start_row.samples.push(t);
        }
    }
    api.destroy(&idle_id).await?;

    let breakdown = vec![
        Row {
            samples: per_rpc.iter().map(|l| l.create).collect(),
            ..Row::new("  CreateSandbox")
        },
        Row {
            samples: per_rpc.iter().map(|l| l.wait).collect(),
            ..Row::new("  WaitSandbox")
        },
        Row {
            samples: per_rpc.iter().map(|l| l.destroy).collect(),
            ..Row::new("  DestroySandbox")
        },
    ];

    eprintln!("throughput: 2 x {} s each for b and sandboxd", args.seconds);
    let throughput = throughput(args, daemon, root, baseline).await;

    let rss_after_run = procfs::status_kib(daemon.pid(), "VmRSS").ok();
    eprintln!("memory: {} IDLE sandboxes", args.idle_sandboxes);
    let per_sandbox = per_sandbox_memory(args, daemon, &mut api)
        .await
        .map_err(|e| format!("{e:#}"));

    Ok(Results {
        rows: vec![b_row, life_row, exec_row, cli_run_row, cli_start_row],
        breakdown,
        throughput,
        memory: Memory {
            idle_rss,
            rss_after_run,
            per_sandbox,
        },
    })
}

/// Adds the tail of the daemon's log to an error.
fn with_log(e: anyhow::Error, daemon: &Daemon) -> anyhow::Error {
    let log = daemon.log_text();
    let lines: Vec<&str> = log.lines().collect();
    let tail = lines[lines.len().saturating_sub(20)..].join("\n");
    e.context(format!("daemon log tail:\n{tail}"))
}

/// Two parallel loops of b, then two concurrent clients (each on its own
/// connection) doing create+wait+destroy, each for `--seconds`.
async fn throughput(args: &Args, daemon: &Daemon, root: &Path, baseline: &Peer) -> Throughput {
    let secs = Duration::from_secs(args.seconds.max(1));

    let b = std::thread::scope(|s| {
        let cpu = procfs::busy_cpu();
        let start = Instant::now();
        let workers: Vec<_> = (0..2)
            .map(|_| {
                s.spawn(move || {
                    let mut n = 0u64;
                    while start.elapsed() < secs {
                        baseline.run_once(root)?;
                        n += 1;
                    }
                    anyhow::Ok((n, start.elapsed()))
                })
            })
            .collect();
        let mut total = 0u64;
        let mut longest = Duration::ZERO;
        for w in workers {
            let (n, t) = w.join().ok()?.ok()?;
            total += n;
            longest = longest.max(t);
        }
        Some(Rate::of(total, longest, cpu))
    });

    let sandboxd = async {
        let mut clients = Vec::new();
        for _ in 0..2 {
            clients.push(daemon.connect().await?);
        }
        let cpu = procfs::busy_cpu();
        let roles_before = RoleCpu::read(daemon);
        let start = Instant::now();
        let tasks: Vec<_> = clients
            .into_iter()
            .map(|mut api: Api| {
                tokio::spawn(async move {
                    let mut n = 0u64;
                    while start.elapsed() < secs {
                        api.lifecycle().await?;
                        n += 1;
                    }
                    anyhow::Ok((n, start.elapsed()))
                })
            })
            .collect();
        let mut total = 0u64;
        let mut longest = Duration::ZERO;
        for t in tasks {
            let (n, d) = t.await.context("client task panicked")??;
            total += n;
            longest = longest.max(d);
        }
        let mut rate = Rate::of(total, longest, cpu);
        rate.roles = RoleCpu::read(daemon)
            .zip(roles_before)
            .and_then(|(after, before)| after.since(before, total, rate.cpu_ms_per_op));
        anyhow::Ok(rate)
    }
    .await
    .map_err(|e| format!("failed: {e:#}"));

    Throughput { b, sandboxd }
}

impl Rate {
    /// `total` operations in `elapsed`; `cpu_before` is the host's busy
    /// CPU time when the run began.
    fn of(total: u64, elapsed: Duration, cpu_before: Option<Duration>) -> Self {
        #[allow(clippy::cast_precision_loss)] // op counts are far below 2^52
        let n = total as f64;
        let cpu_ms_per_op = match (cpu_before, procfs::busy_cpu()) {
            (Some(before), Some(after)) if total > 0 => {
                Some(after.saturating_sub(before).as_secs_f64() * 1e3 / n)
            }
            _ => None,
        };
        Self {
            ops_per_sec: n / elapsed.as_secs_f64(),
            cpu_ms_per_op,
            roles: None,
        }
    }
}

/// Sum of RSS and PSS (KiB) of the daemon and its direct children (the
/// supervisor helpers and the zygote), and the number of helpers.
fn tree_memory(daemon: &Daemon) -> anyhow::Result<(u64, u64, usize)> {
    let kids = procfs::children_of(daemon.pid());
    let helpers = kids.iter().filter(|p| !procfs::is_zygote(**p)).count();
    let mut rss = procfs::status_kib(daemon.pid(), "VmRSS")?;
    let mut pss = procfs::pss_kib(daemon.pid())?;
    for pid in &kids {
        // A child may exit between the listing and the read; skip it.
        rss += procfs::status_kib(*pid, "VmRSS").unwrap_or(0);
        pss += procfs::pss_kib(*pid).unwrap_or(0);
    }
    Ok((rss, pss, helpers))
}

/// Creates `--idle-sandboxes` IDLE sandboxes, measures the daemon + helper
/// memory before and after, and destroys them all again.
async fn per_sandbox_memory(
    args: &Args,
    daemon: &Daemon,
    api: &mut Api,
) -> anyhow::Result<PerSandbox> {
    let count = args.idle_sandboxes;
    if count == 0 {
        bail!("skipped (--idle-sandboxes 0)");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (rss0, pss0, kids0) = tree_memory(daemon)?;
    let avail0 = procfs::mem_available_kib()?;
    if kids0 != 0 {
        eprintln!("warning: the daemon has {kids0} children before the memory phase");
    }

    let mut ids = Vec::with_capacity(count);
    let start = Instant::now();
    let mut created = Ok(());
    for _ in 0..count {
        match api.create(pb::SandboxMode::Idle).await {
            Ok(id) => ids.push(id),
            Err(e) => {
                created = Err(e);
                break;
            }
        }
    }
    let create_time = start.elapsed();
    let measured = async {
        created?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (rss1, pss1, kids1) = tree_memory(daemon)?;
        let avail1 = procfs::mem_available_kib()?;
        anyhow::Ok((rss1, pss1, kids1, avail1))
    }
    .await;

    let start = Instant::now();
    for id in &ids {
        api.destroy(id).await?;
    }
    let destroy_time = start.elapsed();
    let (rss1, pss1, helpers, avail1) = measured?;
    // A destroy answers once the sandbox is dead; its supervisor's
    // teardown and exit finish just after (up to a second is generous).
    let helpers_left = || {
        procfs::children_of(daemon.pid())
            .into_iter()
            .filter(|p| !procfs::is_zygote(*p))
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(1);
    let mut left = helpers_left();
    while left != 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
        left = helpers_left();
    }
    if left != 0 {
        eprintln!("warning: {left} daemon children still alive after destroying all sandboxes");
    }

    #[allow(clippy::cast_precision_loss)] // KiB values and counts are far below 2^52
    let per = |before: u64, after: u64| (after as f64 - before as f64) / count as f64;
    Ok(PerSandbox {
        count,
        helpers,
        rss_kib: per(rss0, rss1),
        pss_kib: per(pss0, pss1),
        mem_available_kib: per(avail1, avail0),
        create_time,
        destroy_time,
    })
}
