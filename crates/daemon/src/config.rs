//! Daemon configuration: embedded defaults, an optional TOML file
//! (`--config`), and command-line flags, in increasing precedence. The
//! daemon starts with no file at all; `sandboxd --check-config` validates
//! one without starting.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};
use sandboxd_core::Policy;
use sandboxd_core::net::{IpNet, PortPolicy};
use serde::Deserialize;

/// Default unix socket.
pub const DEFAULT_SOCKET: &str = "/run/sandboxd/sandboxd.sock";
/// Default state directory.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/sandboxd/state";
/// Default images directory.
pub const DEFAULT_IMAGES_DIR: &str = "/var/lib/sandboxd/images";
/// Default largest request or response message.
pub const DEFAULT_MAX_MESSAGE: usize = 4 << 20;
/// Default HTTP/2 streams per connection.
pub const DEFAULT_MAX_STREAMS: u32 = 256;
/// Default creates running at once, over all clients.
pub const DEFAULT_MAX_INFLIGHT_CREATES: usize = 64;
/// Default TLS handshake timeout.
pub const DEFAULT_HANDSHAKE_TIMEOUT_MS: u64 = 5_000;
/// Default unix-socket connections at once.
pub const DEFAULT_MAX_LOCAL_CONNECTIONS: usize = 256;
/// Default TCP connections at once (handshakes included).
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// Default TCP connections still in their TLS handshake.
pub const DEFAULT_MAX_PENDING_HANDSHAKES: usize = 128;
/// Default Exec and ExecSync calls running at once in one sandbox.
pub const DEFAULT_MAX_EXECS_PER_SANDBOX: usize = 64;
/// Default Exec and ExecSync calls running at once for one identity.
pub const DEFAULT_MAX_EXECS_PER_IDENTITY: usize = 256;

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Human,
    /// One JSON object per line.
    Json,
}

/// `sandboxd` command line. Flags override the config file.
#[derive(Debug, Parser)]
#[command(
    name = "sandboxd",
    version,
    about = "One gRPC API for sandboxes: FreeBSD jails, Linux namespaces, or chroot"
)]
pub struct Args {
    /// TOML configuration file (see docs/security.md for every key and its default).
    #[arg(long, env = "SANDBOXD_CONFIG")]
    pub config: Option<PathBuf>,
    /// Validate the configuration (file and flags), print the result and exit.
    #[arg(long)]
    pub check_config: bool,
    /// Where to listen (repeatable): unix://PATH, or tcp://ADDR:PORT (TLS 1.3 with client certificates; needs [tls] in the config). Default: unix:///run/sandboxd/sandboxd.sock.
    #[arg(long, env = "SANDBOXD_LISTEN", value_delimiter = ',')]
    pub listen: Vec<String>,
    /// State directory (sandbox records, per-sandbox mounts and scratch space).
    #[arg(long, env = "SANDBOXD_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// Images directory: each subdirectory is an image usable by name.
    #[arg(long, env = "SANDBOXD_IMAGES_DIR")]
    pub images_dir: Option<PathBuf>,
    /// Host directory under which client bind-mount sources may lie (repeatable; none by default).
    #[arg(long = "allow-mount-source", value_name = "DIR")]
    pub allowed_mount_sources: Vec<PathBuf>,
    /// Host directory below which a client-given root filesystem
    /// (`spec.rootfs`, e.g. containerd's task bundles) may lie (repeatable;
    /// none by default).
    #[arg(long = "allow-rootfs-source", value_name = "DIR")]
    pub allowed_rootfs_sources: Vec<PathBuf>,
    /// Host directory below which a network namespace file for mode
    /// NAMESPACE (`spec.network.namespace_path`, e.g. the CRI plugin's
    /// /var/run/netns) may lie (repeatable; none by default, so NAMESPACE is
    /// refused). Linux only.
    #[arg(long = "allow-netns-source", value_name = "DIR")]
    pub allowed_netns_sources: Vec<PathBuf>,
    /// Let clients ask for network mode HOST (the host's network stack).
    #[arg(long)]
    pub allow_host_network: bool,
    /// Address range RESTRICTED sandboxes lease from (repeatable; none by
    /// default, so RESTRICTED is refused until one is given). The first
    /// host address of each range is the gateway every sandbox link uses.
    #[arg(long = "net-pool", value_name = "CIDR")]
    pub net_pool: Vec<String>,
    /// Lowest host port a client may forward to a sandbox (default 1024).
    #[arg(long, value_name = "PORT")]
    pub port_floor: Option<u16>,
    /// Writable-layer size of every sandbox whose spec sets none, and the
    /// largest a spec may set (also for /tmp and /dev/shm), e.g. 512M or 2G
    /// (K/M/G/T, 1024-based). 0 turns the default off. Default 1G.
    #[arg(long, env = "SANDBOXD_DISK_LIMIT", value_name = "SIZE", value_parser = parse_size)]
    pub disk_limit: Option<u64>,
    /// Largest main-process log a sandbox may keep (file size × files, see
    /// spec.logs), e.g. 64M (K/M/G/T, 1024-based). Default 64M; at least 64K.
    #[arg(long, env = "SANDBOXD_MAX_LOG_BYTES", value_name = "SIZE", value_parser = parse_size)]
    pub max_log_bytes: Option<u64>,
    /// Log format.
    #[arg(long, value_enum, env = "SANDBOXD_LOG_FORMAT")]
    pub log_format: Option<LogFormat>,
    /// Serve Prometheus metrics (OpenMetrics text at /metrics, plain HTTP,
    /// no authentication) on tcp://IP:PORT, e.g. tcp://127.0.0.1:9464. Off
    /// by default. The series name every sandbox's id and name, so an
    /// address off the loopback is refused unless
    /// --metrics-allow-non-loopback is given too.
    #[arg(long, env = "SANDBOXD_METRICS", value_name = "URL")]
    pub metrics: Option<String>,
    /// Let --metrics listen on an address other than loopback (anyone who
    /// can reach it sees every sandbox's id, name and resource use).
    #[arg(long)]
    pub metrics_allow_non_loopback: bool,
}

/// The config file. Every key is optional; unknown keys are errors.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Listen addresses.
    #[serde(default)]
    pub listen: Vec<String>,
    /// Group that may use the unix socket (mode 0660 instead of 0600).
    pub socket_group: Option<String>,
    /// State directory.
    pub state_dir: Option<PathBuf>,
    /// Images directory.
    pub images_dir: Option<PathBuf>,
    /// Allowed bind-mount sources.
    #[serde(default)]
    pub allow_mount_sources: Vec<PathBuf>,
    /// Allowed parents of client-given root filesystems (`spec.rootfs`).
    #[serde(default)]
    pub allow_rootfs_sources: Vec<PathBuf>,
    /// Allowed parents of network namespace files (mode NAMESPACE).
    #[serde(default)]
    pub allow_netns_sources: Vec<PathBuf>,
    /// Allow network mode HOST.
    #[serde(default)]
    pub allow_host_network: bool,
    /// Address pool.
    #[serde(default)]
    pub net_pool: Vec<String>,
    /// Port-forward floor.
    pub port_floor: Option<u16>,
    /// FreeBSD: the interface RESTRICTED addresses are added to as aliases
    /// (default: `lo1` if it exists, else they must already be configured).
    pub alias_interface: Option<String>,
    /// Log format.
    pub log_format: Option<LogFormat>,
    /// The metrics listener, tcp://IP:PORT (default: none).
    pub metrics: Option<String>,
    /// Allow a metrics listener off the loopback.
    #[serde(default)]
    pub metrics_allow_non_loopback: bool,
    /// TLS for TCP listeners.
    pub tls: Option<TlsFile>,
    /// OCI registries PullImage may reach, by "host:port" (docs/images.md).
    #[serde(default)]
    pub registries: BTreeMap<String, crate::registry::RegistryFile>,
    /// Server-side bounds.
    #[serde(default)]
    pub limits: LimitsFile,
    /// Known client identities (certificate SAN URI or CN -> role).
    #[serde(default)]
    pub identities: BTreeMap<String, IdentityFile>,
}

/// `[tls]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFile {
    /// CA bundle that client certificates must chain to.
    pub client_ca: PathBuf,
    /// The server's certificate chain (PEM).
    pub cert: PathBuf,
    /// The server's private key (PEM); must not be readable by group or others.
    pub key: PathBuf,
    /// TLS handshake timeout in milliseconds (default 5000).
    pub handshake_timeout_ms: Option<u64>,
}

/// `[limits]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsFile {
    /// Largest message in bytes (default 4 MiB).
    pub max_message_bytes: Option<usize>,
    /// HTTP/2 streams per connection (default 256).
    pub max_concurrent_streams: Option<u32>,
    /// Creates running at once, all clients together (default 64).
    pub max_inflight_creates: Option<usize>,
    /// Sandboxes per identity unless its entry says otherwise (default: no cap).
    pub max_sandboxes_per_identity: Option<usize>,
    /// The writable-layer size of a spec that sets none, and the largest
    /// disk limit, /tmp and /dev/shm size a spec may set, in bytes (default
    /// 1 GiB; 0: no default, and no cap beyond 64 TiB).
    pub disk_limit_bytes: Option<u64>,
    /// The largest main-process log a sandbox may keep, file size × files
    /// (default 64 MiB, at least 64 KiB).
    pub max_log_bytes: Option<u64>,
    /// Unix-socket connections at once (default 256).
    pub max_local_connections: Option<usize>,
    /// TCP connections at once, handshakes included (default 1024).
    pub max_connections: Option<usize>,
    /// TCP connections still in their TLS handshake (default 128).
    pub max_pending_handshakes: Option<usize>,
    /// Exec/ExecSync calls running at once in one sandbox (default 64).
    pub max_execs_per_sandbox: Option<usize>,
    /// Exec/ExecSync calls running at once for one identity (default 256).
    pub max_execs_per_identity: Option<usize>,
}

/// `[identities.NAME]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityFile {
    /// Sees and acts on every sandbox.
    #[serde(default)]
    pub admin: bool,
    /// Most sandboxes it may hold at once.
    pub max_sandboxes: Option<usize>,
    /// Images it may use (default: any).
    pub images: Option<Vec<String>>,
    /// Network modes it may ask for: none, loopback, restricted, host
    /// (default: any the daemon allows).
    pub network_modes: Option<Vec<String>>,
    /// Largest memory limit it may ask for; a spec without one is refused.
    pub max_memory_bytes: Option<u64>,
    /// Largest pids limit it may ask for; a spec without one is refused.
    pub max_pids: Option<u64>,
    /// Largest CPU limit (millis) it may ask for; a spec without one is refused.
    pub max_cpu_millis: Option<u64>,
    /// Largest disk limit (bytes) it may ask for; the daemon's default
    /// counts as asked, and without one a spec is refused.
    pub max_disk_bytes: Option<u64>,
}

/// One listen address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    /// A unix socket.
    Unix(PathBuf),
    /// A TCP address, served with TLS 1.3 and client certificates only.
    Tcp(std::net::SocketAddr),
}

/// TLS material, checked.
#[derive(Debug, Clone)]
pub struct Tls {
    /// Client CA bundle.
    pub client_ca: PathBuf,
    /// Server certificate chain.
    pub cert: PathBuf,
    /// Server key.
    pub key: PathBuf,
    /// Handshake timeout.
    pub handshake_timeout: Duration,
}

/// A known remote identity's role.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Role {
    /// Sees and acts on every sandbox.
    pub admin: bool,
    /// Most sandboxes at once.
    pub max_sandboxes: Option<usize>,
    /// What its specs may ask for.
    pub caps: SpecCaps,
}

/// Caps a role puts on the specs it may create; `None` is no cap.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SpecCaps {
    /// Allowed image names.
    pub images: Option<Vec<String>>,
    /// Allowed network modes.
    pub network_modes: Option<Vec<sandboxd_core::spec::NetworkMode>>,
    /// Largest memory limit, bytes.
    pub max_memory_bytes: Option<u64>,
    /// Largest pids limit.
    pub max_pids: Option<u64>,
    /// Largest CPU limit, millis.
    pub max_cpu_millis: Option<u64>,
    /// Largest disk limit, bytes.
    pub max_disk_bytes: Option<u64>,
}

fn network_mode(name: &str) -> anyhow::Result<sandboxd_core::spec::NetworkMode> {
    use sandboxd_core::spec::NetworkMode as M;
    Ok(match name {
        "none" => M::None,
        "loopback" => M::Loopback,
        "restricted" => M::Restricted,
        "host" => M::Host,
        other => bail!("{other:?} is not a network mode (none, loopback, restricted, host)"),
    })
}

/// Server-side bounds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest message.
    pub max_message_bytes: usize,
    /// Streams per connection.
    pub max_concurrent_streams: u32,
    /// Creates at once.
    pub max_inflight_creates: usize,
    /// Unix-socket connections at once.
    pub max_local_connections: usize,
    /// TCP connections at once.
    pub max_connections: usize,
    /// TCP connections in their handshake.
    pub max_pending_handshakes: usize,
    /// Execs at once per sandbox.
    pub max_execs_per_sandbox: usize,
    /// Execs at once per identity.
    pub max_execs_per_identity: usize,
}

/// Validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Listen addresses (at least one).
    pub listen: Vec<Listen>,
    /// Group for the unix socket.
    pub socket_group: Option<nix::unistd::Gid>,
    /// State directory.
    pub state_dir: PathBuf,
    /// Images directory.
    pub images_dir: PathBuf,
    /// Caps on client requests.
    pub policy: Policy,
    /// Address pool ranges.
    pub net_pool: Vec<IpNet>,
    /// Port-forward policy.
    pub ports: PortPolicy,
    /// FreeBSD alias interface.
    pub alias_interface: Option<String>,
    /// TLS, required when a TCP listener is configured.
    pub tls: Option<Tls>,
    /// OCI registries PullImage may reach.
    pub registries: BTreeMap<String, crate::registry::RegistryFile>,
    /// Known remote identities.
    pub identities: BTreeMap<String, Role>,
    /// Default per-identity sandbox cap.
    pub default_max_sandboxes: Option<usize>,
    /// Server-side bounds.
    pub limits: Limits,
    /// Log format.
    pub log_format: LogFormat,
    /// Where to serve Prometheus metrics (none: not served).
    pub metrics: Option<std::net::SocketAddr>,
}

fn parse_listen(text: &str) -> anyhow::Result<Listen> {
    match text.split_once("://") {
        Some(("unix", path)) if path.starts_with('/') => Ok(Listen::Unix(PathBuf::from(path))),
        Some(("unix", path)) => bail!("listen unix://{path}: the socket path must be absolute"),
        Some(("tcp", addr)) => addr
            .parse()
            .map(Listen::Tcp)
            .map_err(|_| anyhow::anyhow!("listen {text}: expected tcp://IP:PORT")),
        _ => bail!("listen {text}: expected unix://PATH or tcp://IP:PORT"),
    }
}

/// The metrics listener: `tcp://IP:PORT`, on a loopback address unless
/// `allow_non_loopback` (its series name every sandbox).
fn parse_metrics(text: &str, allow_non_loopback: bool) -> anyhow::Result<std::net::SocketAddr> {
    let addr: std::net::SocketAddr = text
        .strip_prefix("tcp://")
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("metrics {text}: expected tcp://IP:PORT"))?;
    if !addr.ip().is_loopback() && !allow_non_loopback {
        bail!(
            "metrics {text}: not a loopback address; the metrics name every sandbox's id and name and have no authentication, so listening on {} needs metrics_allow_non_loopback (--metrics-allow-non-loopback)",
            addr.ip()
        );
    }
    Ok(addr)
}

/// A size: a number with an optional K, M, G or T (1024-based; "iB" or
/// "B" may follow), as `--disk-limit` takes it.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let t = t
        .strip_suffix("iB")
        .or_else(|| t.strip_suffix('B'))
        .unwrap_or(t);
    let (digits, shift) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let shift = match c.to_ascii_uppercase() {
                'K' => 10,
                'M' => 20,
                'G' => 30,
                'T' => 40,
                _ => return Err(format!("{text:?}: unknown unit {c:?} (K, M, G or T)")),
            };
            (&t[..i], shift)
        }
        _ => (t, 0),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a size (a number with K, M, G or T)"))?;
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("{text:?} is too large"))
}

/// A key file must be readable by its owner only: anyone else who can read
/// it can impersonate the daemon.
fn check_key_file(path: &Path) -> anyhow::Result<()> {
    let meta = std::fs::metadata(path).with_context(|| format!("tls.key {}", path.display()))?;
    let mode = meta.permissions().mode();
    if mode & 0o077 != 0 {
        bail!(
            "tls.key {}: mode {:o} lets group or others read it; chmod 600 it",
            path.display(),
            mode & 0o777
        );
    }
    Ok(())
}

impl Config {
    /// Reads the file named by `--config` (if any) and merges the flags.
    pub fn load(args: Args) -> anyhow::Result<Self> {
        let file = match &args.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading config {}", path.display()))?;
                toml::from_str::<FileConfig>(&text)
                    .with_context(|| format!("config {}", path.display()))?
            }
            None => FileConfig::default(),
        };
        Self::merge(args, file)
    }

    /// Flags over file over defaults, then every check.
    pub fn merge(args: Args, file: FileConfig) -> anyhow::Result<Self> {
        let listen_text = if !args.listen.is_empty() {
            args.listen
        } else if !file.listen.is_empty() {
            file.listen
        } else {
            vec![format!("unix://{DEFAULT_SOCKET}")]
        };
        let listen = listen_text
            .iter()
            .map(|l| parse_listen(l))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let state_dir = args
            .state_dir
            .or(file.state_dir)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR));
        let images_dir = args
            .images_dir
            .or(file.images_dir)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_IMAGES_DIR));
        for (key, dir) in [("state_dir", &state_dir), ("images_dir", &images_dir)] {
            if !dir.is_absolute() {
                bail!("{key} {}: must be an absolute path", dir.display());
            }
        }
        if state_dir.to_string_lossy().contains([',', ':']) {
            // overlayfs mount options are comma/colon separated.
            bail!(
                "state_dir {}: must not contain ',' or ':'",
                state_dir.display()
            );
        }
        let mut mount_sources = file.allow_mount_sources;
        mount_sources.extend(args.allowed_mount_sources);
        let mut rootfs_sources = file.allow_rootfs_sources;
        rootfs_sources.extend(args.allowed_rootfs_sources);
        let mut netns_sources = file.allow_netns_sources;
        netns_sources.extend(args.allowed_netns_sources);
        for (key, dirs) in [
            ("allow-mount-source", &mount_sources),
            ("allow-rootfs-source", &rootfs_sources),
            ("allow-netns-source", &netns_sources),
        ] {
            for dir in dirs {
                if !dir.is_absolute()
                    || dir
                        .components()
                        .any(|c| matches!(c, std::path::Component::ParentDir))
                {
                    bail!(
                        "{key} {}: must be an absolute path without '..'",
                        dir.display()
                    );
                }
            }
        }
        let mut net_pool: Vec<IpNet> = Vec::new();
        for text in file.net_pool.iter().chain(&args.net_pool) {
            let range = sandboxd_core::net::parse_range(text)
                .map_err(|e| anyhow::anyhow!("net-pool: {e}"))?;
            if let Some(other) = net_pool
                .iter()
                .find(|o| o.contains(&range.network()) || range.contains(&o.network()))
            {
                bail!("net-pool {range} overlaps {other}");
            }
            net_pool.push(range);
        }
        if let Some(name) = &file.alias_interface {
            let ok = (1..=15).contains(&name.len())
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.');
            if !ok {
                bail!(
                    "alias_interface {name:?}: not an interface name (1-15 letters, digits, '_' or '.')"
                );
            }
        }
        let port_floor = args.port_floor.or(file.port_floor).unwrap_or(1024);
        if port_floor == 0 {
            bail!("port-floor 0: must be at least 1");
        }
        let metrics = match args.metrics.as_ref().or(file.metrics.as_ref()) {
            None => None,
            Some(text) => Some(parse_metrics(
                text,
                args.metrics_allow_non_loopback || file.metrics_allow_non_loopback,
            )?),
        };
        let mut tcp_ports: Vec<u16> = listen
            .iter()
            .filter_map(|l| match l {
                Listen::Tcp(a) => Some(a.port()),
                Listen::Unix(_) => None,
            })
            .collect();
        let tls_needed = !tcp_ports.is_empty();
        // The metrics port is the daemon's too: never forwarded.
        tcp_ports.extend(metrics.map(|m| m.port()));
        let tls = match (&file.tls, !tls_needed) {
            (None, false) => bail!(
                "a tcp:// listener needs [tls] with client_ca, cert and key in the config file: the daemon never serves TCP without TLS and client certificates"
            ),
            (None, true) => None,
            (Some(t), _) => {
                for (key, path) in [("tls.client_ca", &t.client_ca), ("tls.cert", &t.cert)] {
                    std::fs::metadata(path).with_context(|| format!("{key} {}", path.display()))?;
                }
                check_key_file(&t.key)?;
                Some(Tls {
                    client_ca: t.client_ca.clone(),
                    cert: t.cert.clone(),
                    key: t.key.clone(),
                    handshake_timeout: Duration::from_millis(
                        t.handshake_timeout_ms
                            .unwrap_or(DEFAULT_HANDSHAKE_TIMEOUT_MS),
                    ),
                })
            }
        };
        let socket_group = match &file.socket_group {
            None => None,
            Some(name) => Some(
                nix::unistd::Group::from_name(name)
                    .with_context(|| format!("socket_group {name:?}"))?
                    .with_context(|| format!("socket_group {name:?}: no such group"))?
                    .gid,
            ),
        };
        let mut identities = BTreeMap::new();
        for (name, i) in file.identities {
            if name == crate::auth::LOCAL {
                // It would own every unix-socket client's sandboxes.
                bail!("identities.{name:?}: the name is reserved for unix-socket clients");
            }
            let network_modes = i
                .network_modes
                .map(|modes| {
                    modes
                        .iter()
                        .map(|m| network_mode(m))
                        .collect::<anyhow::Result<Vec<_>>>()
                })
                .transpose()
                .with_context(|| format!("identities.{name:?}.network_modes"))?;
            identities.insert(
                name,
                Role {
                    admin: i.admin,
                    max_sandboxes: i.max_sandboxes,
                    caps: SpecCaps {
                        images: i.images,
                        network_modes,
                        max_memory_bytes: i.max_memory_bytes,
                        max_pids: i.max_pids,
                        max_cpu_millis: i.max_cpu_millis,
                        max_disk_bytes: i.max_disk_bytes,
                    },
                },
            );
        }
        let limits = Limits {
            max_message_bytes: file.limits.max_message_bytes.unwrap_or(DEFAULT_MAX_MESSAGE),
            max_concurrent_streams: file
                .limits
                .max_concurrent_streams
                .unwrap_or(DEFAULT_MAX_STREAMS),
            max_inflight_creates: file
                .limits
                .max_inflight_creates
                .unwrap_or(DEFAULT_MAX_INFLIGHT_CREATES),
            max_local_connections: file
                .limits
                .max_local_connections
                .unwrap_or(DEFAULT_MAX_LOCAL_CONNECTIONS),
            max_connections: file
                .limits
                .max_connections
                .unwrap_or(DEFAULT_MAX_CONNECTIONS),
            max_pending_handshakes: file
                .limits
                .max_pending_handshakes
                .unwrap_or(DEFAULT_MAX_PENDING_HANDSHAKES),
            max_execs_per_sandbox: file
                .limits
                .max_execs_per_sandbox
                .unwrap_or(DEFAULT_MAX_EXECS_PER_SANDBOX),
            max_execs_per_identity: file
                .limits
                .max_execs_per_identity
                .unwrap_or(DEFAULT_MAX_EXECS_PER_IDENTITY),
        };
        if limits.max_message_bytes < 64 << 10 || limits.max_inflight_creates == 0 {
            bail!(
                "limits: max_message_bytes must be at least 65536 and max_inflight_creates at least 1"
            );
        }
        let disk = args
            .disk_limit
            .or(file.limits.disk_limit_bytes)
            .unwrap_or(sandboxd_core::validate::DEFAULT_DISK_BYTES);
        if disk != 0 && disk < sandboxd_core::validate::MIN_DISK_BYTES {
            bail!(
                "disk limit {disk}: must be 0 (off) or at least {} bytes",
                sandboxd_core::validate::MIN_DISK_BYTES
            );
        }
        let max_log_bytes = args
            .max_log_bytes
            .or(file.limits.max_log_bytes)
            .unwrap_or(sandboxd_core::logs::DEFAULT_MAX_TOTAL_BYTES);
        if max_log_bytes < sandboxd_core::logs::MIN_FILE_BYTES {
            bail!(
                "max_log_bytes {max_log_bytes}: must be at least {} bytes",
                sandboxd_core::logs::MIN_FILE_BYTES
            );
        }
        for (key, value) in [
            ("max_local_connections", limits.max_local_connections),
            ("max_connections", limits.max_connections),
            ("max_pending_handshakes", limits.max_pending_handshakes),
            ("max_execs_per_sandbox", limits.max_execs_per_sandbox),
            ("max_execs_per_identity", limits.max_execs_per_identity),
        ] {
            // tokio's semaphores hold at most usize::MAX >> 3 permits.
            if value == 0 || value > 1 << 24 {
                bail!("limits.{key} = {value}: must be between 1 and 16777216");
            }
        }
        let policy = Policy {
            allowed_mount_sources: mount_sources,
            allowed_rootfs_sources: rootfs_sources,
            allowed_netns_sources: netns_sources,
            allow_host_network: args.allow_host_network || file.allow_host_network,
            // 0: no default; a client may still set a limit, up to 64 TiB.
            default_disk_bytes: (disk != 0).then_some(disk),
            max_disk_bytes: if disk == 0 { 1 << 46 } else { disk },
            max_log_bytes,
            ..Policy::default()
        };
        Ok(Self {
            listen,
            socket_group,
            state_dir,
            images_dir,
            policy,
            net_pool,
            ports: PortPolicy {
                floor: port_floor,
                // The daemon's own TCP ports are never forwarded.
                reserved: tcp_ports,
            },
            alias_interface: file.alias_interface,
            tls,
            registries: file.registries,
            identities,
            default_max_sandboxes: file.limits.max_sandboxes_per_identity,
            limits,
            log_format: args
                .log_format
                .or(file.log_format)
                .unwrap_or(LogFormat::Human),
            metrics,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn args(extra: &[&str]) -> Args {
        let mut argv = vec!["sandboxd"];
        argv.extend_from_slice(extra);
        Args::parse_from(argv)
    }

    fn file(text: &str) -> FileConfig {
        toml::from_str(text).expect("toml")
    }

    #[test]
    fn defaults_need_no_file() {
        let c = Config::merge(args(&[]), FileConfig::default()).unwrap();
        assert_eq!(c.listen, vec![Listen::Unix(DEFAULT_SOCKET.into())]);
        assert_eq!(c.state_dir, PathBuf::from(DEFAULT_STATE_DIR));
        assert_eq!(c.ports.floor, 1024);
        assert_eq!(c.limits.max_message_bytes, DEFAULT_MAX_MESSAGE);
        assert_eq!(
            (
                c.limits.max_local_connections,
                c.limits.max_connections,
                c.limits.max_pending_handshakes,
                c.limits.max_execs_per_sandbox,
                c.limits.max_execs_per_identity,
            ),
            (256, 1024, 128, 64, 256)
        );
        assert!(c.tls.is_none() && c.identities.is_empty());
        assert_eq!(c.policy.default_disk_bytes, Some(1 << 30));
        assert_eq!(c.policy.max_disk_bytes, 1 << 30);
    }

    #[test]
    fn disk_limit_flag_over_file_and_off() {
        let f = || file("[limits]\ndisk_limit_bytes = 268435456");
        let c = Config::merge(args(&[]), f()).unwrap();
        assert_eq!(c.policy.default_disk_bytes, Some(256 << 20));
        let c = Config::merge(args(&["--disk-limit", "2G"]), f()).unwrap();
        assert_eq!(
            (c.policy.default_disk_bytes, c.policy.max_disk_bytes),
            (Some(2 << 30), 2 << 30)
        );
        let c = Config::merge(args(&["--disk-limit", "0"]), f()).unwrap();
        assert_eq!(
            (c.policy.default_disk_bytes, c.policy.max_disk_bytes),
            (None, 1 << 46)
        );
        for (text, want) in [
            ("512M", Ok(512 << 20)),
            ("1g", Ok(1 << 30)),
            ("64KiB", Ok(64 << 10)),
            ("4096", Ok(4096)),
            ("1T", Ok(1 << 40)),
            ("2X", Err("unknown unit")),
            ("G", Err("not a size")),
            ("99999999999T", Err("too large")),
        ] {
            match (parse_size(text), want) {
                (Ok(got), Ok(want)) => assert_eq!(got, want, "{text}"),
                (Err(e), Err(want)) => assert!(e.contains(want), "{text}: {e}"),
                (got, want) => panic!("{text}: {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn flags_override_the_file() {
        let f = file(
            r#"
            state_dir = "/srv/state"
            port_floor = 2000
            net_pool = ["203.0.113.0/28"]
            [identities.alice]
            max_sandboxes = 3
            [identities.ops]
            admin = true
            "#,
        );
        let c = Config::merge(
            args(&["--port-floor", "3000", "--net-pool", "203.0.113.16/28"]),
            f,
        )
        .unwrap();
        assert_eq!(c.state_dir, PathBuf::from("/srv/state"));
        assert_eq!(c.ports.floor, 3000);
        assert_eq!(c.net_pool.len(), 2);
        assert_eq!(
            c.identities.get("alice"),
            Some(&Role {
                admin: false,
                max_sandboxes: Some(3),
                caps: SpecCaps::default(),
            })
        );
        assert!(c.identities["ops"].admin);
    }

    #[test]
    fn refusals() {
        let cases: &[(&[&str], &str, &str)] = &[
            (&["--listen", "tcp://198.51.100.1:7443"], "", "needs [tls]"),
            (&["--listen", "tcp://nowhere"], "", "expected tcp://IP:PORT"),
            (&["--listen", "http://x"], "", "expected unix://PATH"),
            (&["--state-dir", "relative"], "", "absolute"),
            (&[], "bogus = 1", "unknown field"),
            (
                &[
                    "--net-pool",
                    "203.0.113.0/24",
                    "--net-pool",
                    "203.0.113.16/28",
                ],
                "",
                "overlaps",
            ),
            (&[], "[limits]\nmax_message_bytes = 10", "at least 65536"),
            (&["--disk-limit", "4K"], "", "at least 1048576"),
            (
                &[],
                "[limits]\nmax_execs_per_sandbox = 0",
                "limits.max_execs_per_sandbox = 0",
            ),
            (
                &[],
                "[limits]\nmax_pending_handshakes = 0",
                "limits.max_pending_handshakes = 0",
            ),
            (
                &[],
                "[identities.x]\nnetwork_modes = [\"bridge\"]",
                "not a network mode",
            ),
            (&[], "[identities.local]\nadmin = true", "reserved"),
            (
                &["--metrics", "127.0.0.1:9464"],
                "",
                "expected tcp://IP:PORT",
            ),
            (
                &["--metrics", "unix:///m.sock"],
                "",
                "expected tcp://IP:PORT",
            ),
            (
                &["--metrics", "tcp://0.0.0.0:9464"],
                "",
                "not a loopback address",
            ),
            (
                &[],
                "metrics = \"tcp://[::]:9464\"",
                "metrics_allow_non_loopback",
            ),
            (
                &[],
                "alias_interface = \"lo1; reboot\"",
                "not an interface name",
            ),
            (
                &[],
                "[tls]\nclient_ca = \"/nonexistent/ca.pem\"\ncert = \"/nonexistent/c.pem\"\nkey = \"/nonexistent/k.pem\"",
                "tls.client_ca /nonexistent/ca.pem",
            ),
        ];
        for (flags, text, want) in cases {
            let err = toml::from_str::<FileConfig>(text)
                .map_err(anyhow::Error::from)
                .and_then(|f| Config::merge(args(flags), f))
                .expect_err(want);
            assert!(
                format!("{err:#}").contains(want),
                "{flags:?} {text}: {err:#}"
            );
        }
    }

    #[test]
    fn metrics_listener() {
        let c = Config::merge(args(&[]), FileConfig::default()).unwrap();
        assert_eq!(c.metrics, None, "off by default");
        let c = Config::merge(
            args(&["--metrics", "tcp://127.0.0.1:9464"]),
            FileConfig::default(),
        )
        .unwrap();
        assert_eq!(c.metrics, Some("127.0.0.1:9464".parse().unwrap()));
        assert_eq!(c.ports.reserved, vec![9464], "never forwarded");
        let c = Config::merge(args(&[]), file("metrics = \"tcp://[::1]:9464\"")).unwrap();
        assert_eq!(c.metrics, Some("[::1]:9464".parse().unwrap()));
        for (flags, text) in [
            (
                &[
                    "--metrics",
                    "tcp://0.0.0.0:9464",
                    "--metrics-allow-non-loopback",
                ][..],
                "",
            ),
            (
                &[][..],
                "metrics = \"tcp://0.0.0.0:9464\"\nmetrics_allow_non_loopback = true",
            ),
        ] {
            let c = Config::merge(args(flags), file(text)).unwrap();
            assert_eq!(
                c.metrics,
                Some("0.0.0.0:9464".parse().unwrap()),
                "{flags:?} {text}"
            );
        }
        // The flag wins over the file.
        let c = Config::merge(
            args(&["--metrics", "tcp://127.0.0.1:1"]),
            file("metrics = \"tcp://127.0.0.1:2\""),
        )
        .unwrap();
        assert_eq!(c.metrics.map(|m| m.port()), Some(1));
    }

    #[test]
    fn a_key_readable_by_others_is_refused() {
        let dir = std::env::temp_dir().join(format!("sandboxd-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for name in ["ca.pem", "cert.pem", "key.pem"] {
            std::fs::write(dir.join(name), "x").unwrap();
        }
        let key = dir.join("key.pem");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let text = format!(
            "[tls]\nclient_ca = \"{0}/ca.pem\"\ncert = \"{0}/cert.pem\"\nkey = \"{0}/key.pem\"",
            dir.display()
        );
        let tcp = ["--listen", "tcp://127.0.0.1:7443"];
        let err = Config::merge(args(&tcp), file(&text)).expect_err("readable key");
        assert!(format!("{err:#}").contains("chmod 600"), "{err:#}");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        let c = Config::merge(args(&tcp), file(&text)).unwrap();
        assert_eq!(c.ports.reserved, vec![7443], "the daemon's own port");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
