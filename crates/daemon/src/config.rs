//! Daemon configuration: command-line flags with embedded defaults, so the
//! daemon starts with no config file.

use std::path::PathBuf;

use anyhow::bail;
use clap::{Parser, ValueEnum};
use sandboxd_core::Policy;

/// Default unix socket.
pub const DEFAULT_SOCKET: &str = "/run/sandboxd/sandboxd.sock";
/// Default state directory.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/sandboxd/state";
/// Default images directory.
pub const DEFAULT_IMAGES_DIR: &str = "/var/lib/sandboxd/images";

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Human,
    /// One JSON object per line.
    Json,
}

/// `sandboxd` command line.
#[derive(Debug, Parser)]
#[command(
    name = "sandboxd",
    version,
    about = "One gRPC API for sandboxes: FreeBSD jails, Linux namespaces, or chroot"
)]
pub struct Args {
    /// Where to listen: unix://PATH (TCP needs mTLS, which comes with remote access support).
    #[arg(long, default_value = concat!("unix://", "/run/sandboxd/sandboxd.sock"), env = "SANDBOXD_LISTEN")]
    pub listen: String,
    /// State directory (sandbox records, per-sandbox mounts and scratch space).
    #[arg(long, default_value = DEFAULT_STATE_DIR, env = "SANDBOXD_STATE_DIR")]
    pub state_dir: PathBuf,
    /// Images directory: each subdirectory is an image usable by name.
    #[arg(long, default_value = DEFAULT_IMAGES_DIR, env = "SANDBOXD_IMAGES_DIR")]
    pub images_dir: PathBuf,
    /// Host directory under which client bind-mount sources may lie (repeatable; none by default).
    #[arg(long = "allow-mount-source", value_name = "DIR")]
    pub allowed_mount_sources: Vec<PathBuf>,
    /// Let clients ask for network mode HOST (the host's network stack).
    #[arg(long)]
    pub allow_host_network: bool,
    /// Address range RESTRICTED sandboxes lease from (repeatable; none by
    /// default, so RESTRICTED is refused until one is given). The first
    /// host address of each range is the gateway every sandbox link uses.
    #[arg(long = "net-pool", value_name = "CIDR")]
    pub net_pool: Vec<String>,
    /// Lowest host port a client may forward to a sandbox.
    #[arg(long, default_value_t = 1024, value_name = "PORT")]
    pub port_floor: u16,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Human, env = "SANDBOXD_LOG_FORMAT")]
    pub log_format: LogFormat,
}

/// Validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Unix socket path.
    pub socket: PathBuf,
    /// State directory.
    pub state_dir: PathBuf,
    /// Images directory.
    pub images_dir: PathBuf,
    /// Caps on client requests.
    pub policy: Policy,
    /// Address pool ranges.
    pub net_pool: Vec<sandboxd_core::net::IpNet>,
    /// Port-forward policy.
    pub ports: sandboxd_core::net::PortPolicy,
    /// Log format.
    pub log_format: LogFormat,
}

impl Config {
    /// Checks the flags.
    pub fn from_args(args: Args) -> anyhow::Result<Self> {
        let socket = match args.listen.split_once("://") {
            Some(("unix", path)) if path.starts_with('/') => PathBuf::from(path),
            Some(("unix", path)) => {
                bail!("--listen unix://{path}: the socket path must be absolute")
            }
            Some(("tcp", _)) => bail!(
                "--listen {}: TCP is only served with TLS 1.3 and client certificates, which this build does not support yet; use unix://PATH",
                args.listen
            ),
            _ => bail!("--listen {}: expected unix://PATH", args.listen),
        };
        for (flag, dir) in [
            ("--state-dir", &args.state_dir),
            ("--images-dir", &args.images_dir),
        ] {
            if !dir.is_absolute() {
                bail!("{flag} {}: must be an absolute path", dir.display());
            }
        }
        if args.state_dir.to_string_lossy().contains([',', ':']) {
            // overlayfs mount options are comma/colon separated.
            bail!(
                "--state-dir {}: must not contain ',' or ':'",
                args.state_dir.display()
            );
        }
        for dir in &args.allowed_mount_sources {
            if !dir.is_absolute()
                || dir
                    .components()
                    .any(|c| matches!(c, std::path::Component::ParentDir))
            {
                bail!(
                    "--allow-mount-source {}: must be an absolute path without '..'",
                    dir.display()
                );
            }
        }
        let mut net_pool = Vec::new();
        for text in &args.net_pool {
            let range = sandboxd_core::net::parse_range(text)
                .map_err(|e| anyhow::anyhow!("--net-pool: {e}"))?;
            if let Some(other) = net_pool.iter().find(|o: &&sandboxd_core::net::IpNet| {
                o.contains(&range.network()) || range.contains(&o.network())
            }) {
                bail!("--net-pool {range} overlaps {other}");
            }
            net_pool.push(range);
        }
        if args.port_floor == 0 {
            bail!("--port-floor 0: must be at least 1");
        }
        let policy = Policy {
            allowed_mount_sources: args.allowed_mount_sources,
            allow_host_network: args.allow_host_network,
            ..Policy::default()
        };
        Ok(Self {
            socket,
            state_dir: args.state_dir,
            images_dir: args.images_dir,
            policy,
            net_pool,
            ports: sandboxd_core::net::PortPolicy {
                floor: args.port_floor,
                // The daemon serves on a unix socket only; a TCP listener's
                // port joins this list when remote access lands.
                reserved: Vec::new(),
            },
            log_format: args.log_format,
        })
    }
}
