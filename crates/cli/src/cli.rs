//! The command line, as clap derive types. Values that need more than a
//! string check (sizes, users, mounts, requirement flags) are kept as strings
//! here and parsed in `spec_flags`, so every error can name its flag in one
//! line and the parsing is unit-testable without clap.

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::connect::DEFAULT_HOST;

/// Client for sandboxd: create, run and inspect sandboxes realised by FreeBSD
/// jails, Linux namespaces or chroot, through one API.
#[derive(Debug, Parser)]
#[command(name = "sandboxctl", version, propagate_version = true)]
pub(crate) struct Cli {
    /// The daemon to talk to: unix://PATH, or tcp://HOST:PORT (TLS 1.3
    /// with --cacert, --cert and --key).
    #[arg(long, global = true, env = "SANDBOXD_HOST", default_value = DEFAULT_HOST, value_name = "URL")]
    pub(crate) host: String,

    #[command(flatten)]
    pub(crate) tls: TlsArgs,

    /// Print responses as JSON lines in the canonical proto3 JSON mapping
    /// (as grpcurl: lowerCamelCase names, enums by name, 64-bit integers as
    /// strings, default values omitted), one document per line; errors go
    /// to stderr as {"error":{"code":"NOT_FOUND","message":...}}. `run` and
    /// `exec` are unaffected: their output is the process's.
    #[arg(long, global = true)]
    pub(crate) json: bool,

    /// Print each document `--json` would print through a Go-like
    /// template, one line each: {{.id}}, {{.spec.image}}, {{json .usage}};
    /// every field is present (defaults included); \t is a tab. Implies
    /// --json's errors.
    #[arg(long, global = true, value_name = "TEMPLATE")]
    pub(crate) format: Option<String>,

    #[command(subcommand)]
    pub(crate) command: Command,
}

/// TLS for `--host tcp://…`.
#[derive(Debug, Clone, Default, Args)]
pub(crate) struct TlsArgs {
    /// CA bundle (PEM) the daemon's certificate must chain to.
    #[arg(long, global = true, env = "SANDBOXD_CACERT", value_name = "FILE")]
    pub(crate) cacert: Option<std::path::PathBuf>,
    /// This client's certificate chain (PEM); the daemon knows it by its
    /// first SAN URI, else its CN.
    #[arg(long, global = true, env = "SANDBOXD_CERT", value_name = "FILE")]
    pub(crate) cert: Option<std::path::PathBuf>,
    /// This client's private key (PEM).
    #[arg(long, global = true, env = "SANDBOXD_KEY", value_name = "FILE")]
    pub(crate) key: Option<std::path::PathBuf>,
    /// The name the daemon's certificate must carry (default: the host
    /// part of --host).
    #[arg(
        long,
        global = true,
        env = "SANDBOXD_TLS_SERVER_NAME",
        value_name = "NAME"
    )]
    pub(crate) tls_server_name: Option<String>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Show the daemon's backend and what it can enforce.
    Caps,
    /// Dry run: show how a backend would realise a spec (nothing is created).
    Plan(PlanArgs),
    /// Create a sandbox and print its id.
    Create(CreateArgs),
    /// Create a sandbox, run a command in it with stdio attached, remove it
    /// (like `docker run --rm`), and exit with the command's exit code.
    Run(RunArgs),
    /// Run a command in an existing sandbox with stdio attached, and exit
    /// with its exit code.
    Exec(ExecArgs),
    /// List sandboxes.
    #[command(visible_aliases = ["list", "ps"])]
    Ls(LsArgs),
    /// Show one sandbox in detail.
    Inspect(IdArg),
    /// Stop sandboxes: the stop signal, a grace period, then SIGKILL. They
    /// stay (with their exit result) until removed.
    Stop(StopArgs),
    /// Destroy sandboxes: kill everything in them and remove all they left on
    /// the host. Succeeds for unknown ids, saying so.
    Rm(RmArgs),
    /// Wait for a sandbox to end, print its exit result, and exit with its
    /// exit code.
    Wait(IdArg),
    /// Stream lifecycle events, one per line, until interrupted.
    Events(EventsArgs),
    /// List a sandbox's execs (running and recently finished), with their ids.
    Execs(IdArg),
    /// Show one exec by id: pid, running, exit, times, argv.
    ExecInspect(ExecRefArgs),
    /// Wait for an exec to end, print its exit, and exit with its code.
    ExecWait(ExecRefArgs),
    /// Send a signal to an exec by id (default KILL).
    ExecKill(ExecKillArgs),
    /// Print what a sandbox's main process wrote to stdout and stderr (to
    /// this command's stdout and stderr); with -f, keep following until
    /// the sandbox ends.
    Logs(LogsArgs),
    /// Check a running sandbox's isolation from inside: per property, the
    /// claimed level, what a probe observed (HOLDS, VIOLATED, NOT_TESTABLE,
    /// NOT_APPLICABLE) and the evidence. Exits 1 when an observation
    /// contradicts its claim.
    Verify(VerifyArgs),
    /// Resource use of running sandboxes: CPU time, memory, tasks, block
    /// I/O (`unknown` where the backend does not measure it).
    Stats(StatsArgs),
    /// Print a shell completion script: `source <(sandboxctl completion
    /// bash)`, or save it where your shell loads completions.
    Completion(CompletionArgs),
    /// Side by side: how each backend would isolate one spec (PlanSandbox),
    /// plus, with --observe, what the daemon's own backend is observed to
    /// do (a sandbox is created with --verify and removed).
    Compare(CompareArgs),
    /// Pull an OCI image from a registry the daemon is configured for
    /// (e.g. 127.0.0.1:5000/busybox:latest), showing progress.
    Pull(PullArgs),
    /// List OCI images in the daemon's image store.
    Images,
    /// Remove OCI image references (by digest: every reference to that
    /// image) and free what no image uses any more.
    Rmi(RmiArgs),
    /// OCI images: import, inspect, ls, rm.
    #[command(subcommand)]
    Image(ImageCommand),
}

/// `image ...`.
#[derive(Debug, Subcommand)]
pub(crate) enum ImageCommand {
    /// Import an OCI image layout or `docker save` archive (a tar file;
    /// "-" reads stdin).
    Import(ImageImportArgs),
    /// Show one image (config defaults, layers) as JSON.
    Inspect {
        /// "name:tag", "name@sha256:..." or "sha256:...".
        reference: String,
    },
    /// Same as `images`.
    Ls,
    /// Same as `rmi`.
    Rm(RmiArgs),
}

/// `image import`.
#[derive(Debug, Args)]
pub(crate) struct ImageImportArgs {
    /// The archive ("-": stdin).
    pub(crate) file: String,
    /// Reference for an image the archive does not name.
    #[arg(long)]
    pub(crate) name: Option<String>,
}

/// `run --pull`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum PullPolicy {
    /// Never pull.
    Never,
    /// Pull when the daemon's store does not have the image.
    Missing,
    /// Pull every time.
    Always,
}

/// `pull`.
#[derive(Debug, Args)]
pub(crate) struct PullArgs {
    /// "host:port/repo:tag" or "host:port/repo@sha256:...".
    pub(crate) reference: String,
}

/// `rmi`.
#[derive(Debug, Args)]
pub(crate) struct RmiArgs {
    /// Image references.
    #[arg(required = true)]
    pub(crate) references: Vec<String>,
}

/// An exec by id.
#[derive(Debug, Args)]
pub(crate) struct ExecRefArgs {
    /// Sandbox id or name.
    pub(crate) id: String,
    /// The exec's id (from `exec --detach`, `execs`).
    pub(crate) exec_id: u64,
}

/// `exec-kill`.
#[derive(Debug, Args)]
pub(crate) struct ExecKillArgs {
    /// Signal, as a number or a portable name (TERM, INT, HUP, KILL, ...).
    #[arg(short, long, default_value = "KILL", value_name = "SIGNAL")]
    pub(crate) signal: String,
    /// Signal the exec's whole process group, not only its process.
    #[arg(long)]
    pub(crate) group: bool,
    #[command(flatten)]
    pub(crate) exec: ExecRefArgs,
}

/// `logs`.
#[derive(Debug, Args)]
pub(crate) struct LogsArgs {
    /// Keep printing new output until the sandbox ends (or interrupted).
    #[arg(short, long)]
    pub(crate) follow: bool,

    /// Start with only the last N entries (lines) of what is there.
    #[arg(short = 'n', long, value_name = "N")]
    pub(crate) tail: Option<u64>,

    /// Only output written since T: a duration back from now (30s, 5m,
    /// 1h30m, 2d), Unix seconds, or an RFC 3339 time.
    #[arg(long, value_name = "T")]
    pub(crate) since: Option<String>,

    /// Only stdout.
    #[arg(long, conflicts_with = "stderr")]
    pub(crate) stdout: bool,

    /// Only stderr.
    #[arg(long)]
    pub(crate) stderr: bool,

    /// Prefix every entry with the time it was read (RFC 3339, ns).
    #[arg(short, long)]
    pub(crate) timestamps: bool,

    /// Sandbox id or name.
    pub(crate) id: String,
}

/// `verify`.
#[derive(Debug, Args)]
pub(crate) struct VerifyArgs {
    /// Sandbox id or name.
    pub(crate) id: String,

    /// Also print the evidence for every row (the table shows it for rows
    /// that are not HOLDS or NOT_APPLICABLE).
    #[arg(short = 'v', long)]
    pub(crate) verbose: bool,
}

/// `compare`.
#[derive(Debug, Args)]
pub(crate) struct CompareArgs {
    /// A backend to plan for (repeatable; default: linux, freebsd, chroot).
    #[arg(long = "backend", value_enum)]
    pub(crate) backends: Vec<BackendArg>,

    /// Add an OBSERVED column for the daemon's own backend: create the
    /// sandbox with --verify, record what was observed, remove it.
    #[arg(long)]
    pub(crate) observe: bool,

    /// Plan the daemon's own backend with its documented typical host too
    /// (reproducible output, as docs/semantics.md is generated).
    #[arg(long)]
    pub(crate) assumed_host: bool,

    /// Print a Markdown table (for docs/semantics.md).
    #[arg(long)]
    pub(crate) markdown: bool,

    #[command(flatten)]
    pub(crate) spec: SpecFlags,

    /// The main process's command, after `--`.
    #[arg(last = true, value_name = "ARGV")]
    pub(crate) argv: Vec<String>,
}

/// Flags describing the process to run (shared by the spec flags and `exec`).
#[derive(Debug, Clone, Default, Args)]
pub(crate) struct ProcessFlags {
    /// Environment variable KEY=VALUE (repeatable); a bare KEY copies the
    /// local value. Nothing else is inherited.
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
    pub(crate) env: Vec<String>,

    /// Working directory inside the sandbox (absolute; default /).
    #[arg(long, value_name = "DIR")]
    pub(crate) cwd: Option<String>,

    /// Numeric user and optional group to run as (default: the daemon's
    /// unprivileged 65534). Names are not resolved: the client's passwd file
    /// says nothing about the sandbox's.
    #[arg(short = 'u', long, value_name = "UID[:GID]")]
    pub(crate) user: Option<String>,

    /// Supplementary group id (repeatable).
    #[arg(long = "group", value_name = "GID")]
    pub(crate) groups: Vec<String>,
}

/// The sandbox spec as flags (shared by plan, create and run).
#[derive(Debug, Clone, Default, Args)]
pub(crate) struct SpecFlags {
    /// Human name: 1-63 of [a-z0-9-]; unique among live sandboxes.
    #[arg(long)]
    pub(crate) name: Option<String>,

    /// Image: "host" (read-only view of the host's system directories) or a
    /// directory under the daemon's images dir. Default: the daemon's
    /// ("host").
    #[arg(long)]
    pub(crate) image: Option<String>,

    /// Lifecycle mode: process (one main process), init (the image's init or
    /// the command runs as first process), idle (no main process; enter with
    /// exec). Default for create/plan: process with a command, idle without.
    #[arg(long, value_name = "MODE")]
    pub(crate) mode: Option<String>,

    /// Hostname inside the sandbox (asks for hostname isolation).
    #[arg(long)]
    pub(crate) hostname: Option<String>,

    /// Make this sandbox a child of a running one (by id), sharing its
    /// namespaces: all of network, ipc, uts (a pod), or those listed after a
    /// colon (network, ipc, uts, pid), e.g. 0123456789abcdef:network,ipc,pid.
    #[arg(long, value_name = "ID[:KINDS]")]
    pub(crate) join: Option<String>,

    #[command(flatten)]
    pub(crate) process: ProcessFlags,

    /// Memory limit of the whole sandbox, e.g. 512M, 2G (K/M/G/T, 1024-based).
    #[arg(long, value_name = "SIZE")]
    pub(crate) memory: Option<String>,

    /// Maximum number of processes/threads in the sandbox.
    #[arg(long, value_name = "N")]
    pub(crate) pids: Option<String>,

    /// CPU quota in CPUs, e.g. 0.5 or 2 (or milli-CPUs as 500m).
    #[arg(long, value_name = "CPUS")]
    pub(crate) cpus: Option<String>,

    /// Relative CPU weight, 1..10000 (default 100): the sandbox's share of
    /// contended CPU time against other sandboxes; caps nothing.
    #[arg(long, value_name = "N")]
    pub(crate) cpu_weight: Option<String>,

    /// Maximum open files per process (RLIMIT_NOFILE).
    #[arg(long, value_name = "N")]
    pub(crate) nofile: Option<String>,

    /// Maximum address space per process (RLIMIT_AS), e.g. 1G.
    #[arg(long, value_name = "SIZE")]
    pub(crate) address_space: Option<String>,

    /// Size of the writable layer (what the sandbox writes to its root), e.g.
    /// 512M; past it writes fail with ENOSPC. Default: the daemon's (1G
    /// unless configured), never more.
    #[arg(long, value_name = "SIZE")]
    pub(crate) disk: Option<String>,

    /// Size of the sandbox's /tmp (a tmpfs), e.g. 64M. Default 256M.
    #[arg(long, value_name = "SIZE")]
    pub(crate) tmp_size: Option<String>,

    /// Size of the sandbox's /dev/shm (a tmpfs), e.g. 16M. Default 64M.
    #[arg(long, value_name = "SIZE")]
    pub(crate) shm_size: Option<String>,

    /// Mount the root filesystem read-only.
    #[arg(long)]
    pub(crate) readonly: bool,

    /// Bind a host directory into the sandbox: SRC:DST[:ro|:rw], both
    /// absolute (repeatable).
    #[arg(short = 'v', long = "mount", value_name = "SRC:DST[:ro]")]
    pub(crate) mounts: Vec<String>,

    /// Label KEY=VALUE for selection with `ls --selector` (repeatable).
    #[arg(short = 'l', long = "label", value_name = "KEY=VALUE")]
    pub(crate) labels: Vec<String>,

    #[command(flatten)]
    pub(crate) net: NetworkFlags,

    /// Refuse to create unless PROP is enforced (the default for what you set).
    /// PROP: filesystem pid hostname ipc user cgroup network memory pids cpu
    /// nofile address-space disk; repeatable or comma-separated. For a limit or
    /// the network, that flag must be given too.
    #[arg(long = "require", value_name = "PROP", value_delimiter = ',')]
    pub(crate) require: Vec<String>,

    /// Enforce PROP if the backend can, else create anyway and report the
    /// degradation (same PROP names as --require).
    #[arg(long = "prefer", value_name = "PROP", value_delimiter = ',')]
    pub(crate) prefer: Vec<String>,

    /// Share the host's view of PROP (filesystem pid hostname ipc user
    /// cgroup only; for the network use --network host).
    #[arg(long = "disable", value_name = "PROP", value_delimiter = ',')]
    pub(crate) disable: Vec<String>,

    /// Signal `stop` sends first, as a number or a portable name (TERM, INT,
    /// HUP, QUIT, KILL, ...). Default TERM.
    #[arg(long, value_name = "SIGNAL")]
    pub(crate) stop_signal: Option<String>,

    /// Size cap of one main-process log file (`logs`), e.g. 1M; rotated
    /// past it. Default 8M, within the daemon's max_log_bytes.
    #[arg(long, value_name = "SIZE")]
    pub(crate) log_max_size: Option<String>,

    /// Main-process log files kept (1-16). Default 3.
    #[arg(long, value_name = "N")]
    pub(crate) log_max_files: Option<u32>,
}

/// The network policy as flags (part of the spec flags).
#[derive(Debug, Clone, Default, Args)]
pub(crate) struct NetworkFlags {
    /// Network: none, loopback, host (if the daemon permits it),
    /// restricted (own addresses from the daemon's pool; implied by
    /// --address, --nat and --publish), or ns:PATH (an existing network
    /// namespace below one of the daemon's --allow-netns-source dirs).
    #[arg(long, value_name = "MODE")]
    pub(crate) network: Option<String>,

    /// An IPv4/IPv6 address the sandbox may use (repeatable; implies
    /// --network restricted). With none, the daemon leases one from its
    /// pool.
    #[arg(long = "address", value_name = "IP")]
    pub(crate) addresses: Vec<String>,

    /// Masquerade the sandbox's outbound traffic behind the host's address,
    /// so it can reach networks without a route back to the pool (implies
    /// --network restricted).
    #[arg(long)]
    pub(crate) nat: bool,

    /// Forward a host port, on all of the host's addresses, to a port of the
    /// sandbox's first address; tcp unless /udp is given (repeatable;
    /// implies --network restricted).
    #[arg(
        short = 'p',
        long = "publish",
        value_name = "HOST_PORT:SANDBOX_PORT[/tcp|/udp]"
    )]
    pub(crate) publish: Vec<String>,

    /// A nameserver for the sandbox's /etc/resolv.conf (repeatable, at most
    /// 3; any network mode). Without it the image's file is left as it is.
    #[arg(long = "dns", value_name = "IP")]
    pub(crate) dns: Vec<String>,

    /// A search domain for the sandbox's /etc/resolv.conf (repeatable, at
    /// most 6; needs --dns).
    #[arg(long = "dns-search", value_name = "DOMAIN")]
    pub(crate) dns_search: Vec<String>,
}

/// A backend to plan for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum BackendArg {
    /// Linux namespaces + pivot_root + cgroups.
    Linux,
    /// FreeBSD jails.
    Freebsd,
    /// chroot(2) with dropped privileges and rlimits.
    Chroot,
}

/// `plan`.
#[derive(Debug, Args)]
pub(crate) struct PlanArgs {
    /// Backend to plan for (default: the daemon's own). Any backend can be
    /// planned on any host.
    #[arg(long, value_enum)]
    pub(crate) backend: Option<BackendArg>,

    #[command(flatten)]
    pub(crate) spec: SpecFlags,

    /// The main process's command, after `--`.
    #[arg(last = true, value_name = "ARGV")]
    pub(crate) argv: Vec<String>,
}

/// `create`.
#[derive(Debug, Args)]
pub(crate) struct CreateArgs {
    #[command(flatten)]
    pub(crate) spec: SpecFlags,

    /// Idempotency key: retrying with the same key returns the first result
    /// instead of creating a second sandbox. 1-128 of [A-Za-z0-9._-].
    #[arg(long, value_name = "ID")]
    pub(crate) request_id: Option<String>,

    /// Verify the sandbox's isolation from inside after setup and before
    /// the main process starts (the table goes to stderr); a REQUIRED
    /// property observed VIOLATED fails the create.
    #[arg(long)]
    pub(crate) verify: bool,

    /// The main process's command, after `--` (process and init modes). Its
    /// stdio is discarded by the daemon; use `run` to see output.
    #[arg(last = true, value_name = "ARGV")]
    pub(crate) argv: Vec<String>,
}

/// `run`.
#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    #[command(flatten)]
    pub(crate) spec: SpecFlags,

    /// Forward local stdin to the process (without it the process's stdin is
    /// closed at once).
    #[arg(short = 'i', long)]
    pub(crate) interactive: bool,

    /// Give the process a terminal; the local terminal goes into raw mode and
    /// its size follows the window.
    #[arg(short = 't', long)]
    pub(crate) tty: bool,

    /// Destroy the sandbox when the command ends (--rm=false keeps it; find
    /// it with `sandboxctl ls`). The daemon does it, so it also happens if
    /// sandboxctl is killed.
    #[arg(long, value_name = "BOOL", default_value_t = true, num_args = 0..=1,
          default_missing_value = "true", action = clap::ArgAction::Set)]
    pub(crate) rm: bool,

    /// Verify the sandbox's isolation from inside before the command starts
    /// (the table goes to stderr); a REQUIRED property observed VIOLATED
    /// fails the create and nothing runs.
    #[arg(long)]
    pub(crate) verify: bool,

    /// When to pull an OCI image (an --image with a registry host) first:
    /// never, when the daemon's store lacks it, or always.
    #[arg(long, value_enum, default_value = "missing")]
    pub(crate) pull: PullPolicy,

    /// Run this program instead of an OCI image's Entrypoint (as `docker
    /// run --entrypoint`: the image's Cmd is dropped too; the arguments after
    /// `--` follow it). An empty string: no entrypoint.
    #[arg(long, value_name = "PROGRAM")]
    pub(crate) entrypoint: Option<String>,

    /// The command, after `--`. The sandbox is created idle (or, with
    /// --mode init, running the image's init) and the command is exec'd into
    /// it with stdio attached; --mode process is accepted but runs the same
    /// way, because the daemon discards a main process's stdio. With an OCI
    /// image it replaces the image's Cmd and follows its Entrypoint; without
    /// one the image's Entrypoint and Cmd run (as `docker run IMAGE`).
    #[arg(last = true, value_name = "ARGV")]
    pub(crate) argv: Vec<String>,
}

/// `exec`.
#[derive(Debug, Args)]
pub(crate) struct ExecArgs {
    /// Forward local stdin to the process (without it the process's stdin is
    /// closed at once).
    #[arg(short = 'i', long)]
    pub(crate) interactive: bool,

    /// Give the process a terminal; the local terminal goes into raw mode and
    /// its size follows the window.
    #[arg(short = 't', long)]
    pub(crate) tty: bool,

    /// Start the process detached (stdio on /dev/null) and print its exec
    /// id; follow it with `exec-inspect`, `exec-wait`, `exec-kill`.
    #[arg(short = 'd', long, conflicts_with_all = ["interactive", "tty"])]
    pub(crate) detach: bool,

    #[command(flatten)]
    pub(crate) process: ProcessFlags,

    /// Sandbox id or name.
    pub(crate) id: String,

    /// The command, after `--`.
    #[arg(last = true, required = true, value_name = "ARGV")]
    pub(crate) argv: Vec<String>,
}

/// `ls`.
#[derive(Debug, Args)]
pub(crate) struct LsArgs {
    /// Label selector: comma-separated key=value, key!=value or key terms,
    /// all of which must match.
    #[arg(long, value_name = "SEL")]
    pub(crate) selector: Option<String>,

    /// Follow page tokens and list every match (default: the first page).
    #[arg(long)]
    pub(crate) all_pages: bool,
}

/// A command taking one sandbox.
#[derive(Debug, Args)]
pub(crate) struct IdArg {
    /// Sandbox id or name.
    pub(crate) id: String,
}

/// `rm`.
#[derive(Debug, Args)]
pub(crate) struct RmArgs {
    /// Accepted for docker's habit (`rm -f`): a destroy always stops a
    /// running sandbox first (SIGKILL to everything in it), so `rm` and
    /// `rm -f` do the same.
    #[arg(short = 'f', long)]
    pub(crate) force: bool,

    /// Sandbox ids or names.
    #[arg(required = true)]
    pub(crate) ids: Vec<String>,
}

/// `stats`.
#[derive(Debug, Args)]
pub(crate) struct StatsArgs {
    /// Sandbox ids or names (default: every running sandbox).
    pub(crate) ids: Vec<String>,
}

/// `completion`.
#[derive(Debug, Args)]
pub(crate) struct CompletionArgs {
    /// The shell to write the script for.
    #[arg(value_enum)]
    pub(crate) shell: clap_complete::Shell,
}

/// `stop`.
#[derive(Debug, Args)]
pub(crate) struct StopArgs {
    /// Seconds between the stop signal and SIGKILL (default: the daemon's,
    /// 10; at most 300). `-t`/`--time` as docker's.
    #[arg(long, short = 't', visible_alias = "time", value_name = "SECS")]
    pub(crate) grace: Option<u32>,

    /// Signal to send first, as a number or a portable name (default: the
    /// sandbox's stop signal).
    #[arg(long, value_name = "SIGNAL")]
    pub(crate) signal: Option<String>,

    /// Sandbox ids or names.
    #[arg(required = true)]
    pub(crate) ids: Vec<String>,
}

/// `events`.
#[derive(Debug, Args)]
pub(crate) struct EventsArgs {
    /// Replay retained events after this revision first (0: all retained).
    /// Pass the last revision you saw to resume without gaps.
    #[arg(long, value_name = "REV", default_value_t = 0)]
    pub(crate) after: u64,

    /// Only events of this sandbox (id).
    #[arg(long, value_name = "ID")]
    pub(crate) sandbox: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("sandboxctl").chain(args.iter().copied()))
    }

    #[test]
    fn run_rm_forms() {
        let rm = |args: &[&str]| match parse(args).map(|c| c.command) {
            Ok(Command::Run(r)) => Some(r.rm),
            _ => None,
        };
        assert_eq!(rm(&["run", "--", "true"]), Some(true));
        assert_eq!(rm(&["run", "--rm", "--", "true"]), Some(true));
        assert_eq!(rm(&["run", "--rm=false", "--", "true"]), Some(false));
        assert_eq!(rm(&["run", "--rm=true", "-it", "--", "sh"]), Some(true));
        // Without a command an OCI image's Entrypoint and Cmd run; a
        // directory image is refused at run time (`oci::run_command`).
        assert_eq!(rm(&["run", "--image", "a/b:1"]), Some(true));
        let ep = |args: &[&str]| match parse(args).map(|c| c.command) {
            Ok(Command::Run(r)) => Some((r.entrypoint, r.argv)),
            _ => None,
        };
        assert_eq!(
            ep(&["run", "--entrypoint", "/bin/sh", "--", "-c", "x"]),
            Some((Some("/bin/sh".into()), vec!["-c".into(), "x".into()]))
        );
        assert_eq!(
            ep(&["run", "--entrypoint=", "--", "/bin/id"]),
            Some((Some(String::new()), vec!["/bin/id".into()]))
        );
    }

    #[test]
    fn global_flags_anywhere() {
        let cli = parse(&["ls", "--json", "--host", "unix:///tmp/s"]).ok();
        assert_eq!(
            cli.as_ref().map(|c| (c.json, c.host.as_str())),
            Some((true, "unix:///tmp/s"))
        );
    }

    #[test]
    fn docker_habits_parse() {
        let cmd = |args: &[&str]| parse(args).map(|c| c.command);
        assert!(matches!(cmd(&["ps"]), Ok(Command::Ls(_))));
        assert!(matches!(cmd(&["list"]), Ok(Command::Ls(_))));
        match cmd(&["rm", "-f", "a", "b"]) {
            Ok(Command::Rm(r)) => assert!(r.force && r.ids == ["a", "b"]),
            other => panic!("unexpected {other:?}"),
        }
        for form in [
            &["stop", "-t", "3", "x"][..],
            &["stop", "--time", "3", "x"],
            &["stop", "--grace=3", "x"],
        ] {
            match cmd(form) {
                Ok(Command::Stop(s)) => assert_eq!(s.grace, Some(3), "{form:?}"),
                other => panic!("{form:?}: unexpected {other:?}"),
            }
        }
        assert!(matches!(
            cmd(&["completion", "zsh"]),
            Ok(Command::Completion(_))
        ));
        assert!(cmd(&["completion", "tcsh"]).is_err());
    }

    #[test]
    fn exec_takes_id_then_argv() {
        match parse(&["exec", "-i", "-e", "A=1", "abc", "--", "sh", "-c", "echo"])
            .map(|c| c.command)
        {
            Ok(Command::Exec(e)) => {
                assert_eq!(e.id, "abc");
                assert_eq!(e.argv, ["sh", "-c", "echo"]);
                assert_eq!(e.process.env, ["A=1"]);
                assert!(e.interactive && !e.tty);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn network_flags_on_every_spec_command() {
        for cmd in ["plan", "create", "run"] {
            let args = [
                cmd,
                "--nat",
                "-p",
                "8080:80",
                "--publish",
                "5353:53/udp",
                "--dns",
                "192.0.2.53",
                "--dns",
                "192.0.2.54",
                "--dns-search",
                "example.com",
                "--",
                "true",
            ];
            let net = match parse(&args).map(|c| c.command) {
                Ok(Command::Plan(a)) => a.spec.net,
                Ok(Command::Create(a)) => a.spec.net,
                Ok(Command::Run(a)) => a.spec.net,
                other => panic!("{cmd}: unexpected {other:?}"),
            };
            assert!(net.nat, "{cmd}");
            assert_eq!(net.publish, ["8080:80", "5353:53/udp"], "{cmd}");
            assert_eq!(net.dns, ["192.0.2.53", "192.0.2.54"], "{cmd}");
            assert_eq!(net.dns_search, ["example.com"], "{cmd}");
            assert_eq!(net.network, None, "{cmd}");
        }
    }

    #[test]
    fn repeatable_and_comma_separated_requirements() {
        match parse(&[
            "plan",
            "--require",
            "pid,ipc",
            "--require",
            "user",
            "--backend",
            "freebsd",
        ])
        .map(|c| c.command)
        {
            Ok(Command::Plan(p)) => {
                assert_eq!(p.spec.require, ["pid", "ipc", "user"]);
                assert_eq!(p.backend, Some(BackendArg::Freebsd));
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
