//! VerifySandbox, the daemon's side: the host fixtures a probe tests
//! against, made for one check and removed when it ends ([`Fixtures`] is
//! dropped): a System V segment (IPC), a canary directory (FILESYSTEM),
//! and TCP listeners that answer a random token (NETWORK). The probe itself
//! runs in the sandbox's supervisor (`Request::Verify`); the daemon never
//! enters a sandbox.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::PathBuf;

use sandboxd_core::net::NetLease;
use sandboxd_core::spec::{ProcessSpec, SandboxSpec};
use sandboxd_core::verify::{FileId, LimitValues, MountProbe, NetProbe, ProbeConfig};
use tokio::io::AsyncWriteExt;

/// The probe's own budget inside the sandbox, in milliseconds. The
/// supervisor kills a probe that runs 5 s past it.
pub const BUDGET_MS: u64 = 15_000;

/// What the daemon made on the host for one probe; removed on drop.
#[derive(Debug, Default)]
pub struct Fixtures {
    shm_id: Option<i32>,
    canary: Option<PathBuf>,
    listeners: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Fixtures {
    fn drop(&mut self) {
        if let Some(id) = self.shm_id.take() {
            if let Err(e) = sandboxd_probe::sys::shm_remove(id) {
                tracing::warn!(shm_id = id, error = %e, "removing the verify probe's segment");
            }
        }
        if let Some(dir) = self.canary.take() {
            if let Err(e) = std::fs::remove_dir(&dir) {
                tracing::warn!(path = %dir.display(), error = %e, "removing the verify canary");
            }
        }
        for l in self.listeners.drain(..) {
            l.abort();
        }
    }
}

fn random_hex(bytes: usize) -> String {
    use std::io::Read;
    let mut buf = vec![0u8; bytes];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .is_err()
    {
        // Not secret, only unlikely to collide: the time will do.
        let now = sandboxd_supervisor::now_ms().to_le_bytes();
        for (i, b) in buf.iter_mut().enumerate() {
            *b = now[i % now.len()] ^ (i as u8).wrapping_mul(31);
        }
    }
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

fn file_id(path: &std::path::Path) -> Option<FileId> {
    std::fs::metadata(path).ok().map(|m| FileId {
        dev: m.dev(),
        ino: m.ino(),
    })
}

/// The identity the probe runs as: the spec's main process's user, in its
/// working directory (the defaults for IDLE).
pub fn probe_process(spec: &SandboxSpec) -> ProcessSpec {
    ProcessSpec {
        argv: vec!["sandboxd-probe".into()],
        env: Vec::new(),
        cwd: spec.process.cwd.clone(),
        user: spec.process.user.clone(),
        tty: false,
    }
}

/// A listener that writes `token` to every connection, until aborted.
fn serve_token(listener: tokio::net::TcpListener, token: String) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let token = token.clone();
            tokio::spawn(async move {
                let _ = conn.write_all(token.as_bytes()).await;
            });
        }
    })
}

/// Makes the fixtures for one probe of a sandbox with `spec` and `lease`.
/// A fixture that cannot be made is left out, and the probe reports the
/// row it serves as NOT_TESTABLE.
pub async fn prepare(
    spec: &SandboxSpec,
    lease: &NetLease,
    netns_sources: &[std::path::PathBuf],
) -> (ProbeConfig, Fixtures) {
    let mut fx = Fixtures::default();
    let token = random_hex(16);
    // IPC: a fresh key; retried on the (unlikely) clash.
    let mut shm_key = None;
    for _ in 0..8 {
        let key = i32::from_str_radix(&random_hex(4)[..7], 16).unwrap_or(0x5bd0_0001) | 1;
        match sandboxd_probe::sys::shm_create(key) {
            Ok(id) => {
                fx.shm_id = Some(id);
                shm_key = Some(key);
                break;
            }
            Err(nix::errno::Errno::EEXIST) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "verify: no System V segment for the IPC check");
                break;
            }
        }
    }
    // FILESYSTEM: a world-searchable directory a sandbox must not reach.
    let canary_path = std::env::temp_dir().join(format!("sandboxd-verify-{token}"));
    let canary = match std::fs::DirBuilder::new().mode(0o755).create(&canary_path) {
        Ok(()) => {
            fx.canary = Some(canary_path.clone());
            file_id(&canary_path).map(|id| (canary_path.display().to_string(), id))
        }
        Err(e) => {
            tracing::warn!(path = %canary_path.display(), error = %e, "verify: no canary");
            None
        }
    };
    // NETWORK: 127.0.0.1, and the host side of a RESTRICTED link, on one
    // port.
    let mut targets = Vec::new();
    let mut port = 0u16;
    let mut addrs: Vec<IpAddr> = vec![IpAddr::V4(Ipv4Addr::LOCALHOST)];
    addrs.extend(lease.gateways.iter().copied());
    for ip in addrs {
        match tokio::net::TcpListener::bind(SocketAddr::new(ip, port)).await {
            Ok(l) => {
                if port == 0 {
                    port = l.local_addr().map_or(0, |a| a.port());
                }
                targets.push(ip);
                fx.listeners.push(serve_token(l, token.clone()));
            }
            Err(e) => tracing::debug!(%ip, error = %e, "verify: no listener there"),
        }
    }
    let host_hostname = nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default();
    let l = &spec.limits;
    let config = ProbeConfig {
        budget_ms: BUDGET_MS,
        daemon_pid: i32::try_from(std::process::id()).unwrap_or(0),
        supervisor_pid: 0,
        host_hostname,
        hostname: (!spec.hostname.is_empty()).then(|| spec.hostname.clone()),
        shm_key,
        canary,
        host_root: file_id(std::path::Path::new("/")),
        network: NetProbe {
            mode: spec.network.mode,
            targets,
            port,
            token,
            leased: lease.addresses.clone(),
            namespace: (spec.network.mode == sandboxd_core::spec::NetworkMode::Namespace)
                .then(|| crate::netns::identity(&spec.network.namespace_path, netns_sources))
                .flatten(),
        },
        limits: LimitValues {
            memory_bytes: l.memory_bytes.map(|v| v.value),
            pids: l.pids.map(|v| v.value),
            cpu_millis: l.cpu_millis.map(|v| v.value),
            open_files: l.open_files.map(|v| v.value),
            address_space_bytes: l.address_space_bytes.map(|v| v.value),
            disk_bytes: l.disk_bytes.map(|v| v.value),
            cpu_weight: l.cpu_weight.map(|v| v.value),
        },
        readonly_rootfs: spec.readonly_rootfs,
        mounts: spec
            .mounts
            .iter()
            .map(|m| MountProbe {
                target: m.target.clone(),
                read_only: m.read_only,
                source: file_id(std::path::Path::new(&m.source)),
            })
            .collect(),
        capabilities: Vec::new(),
        seccomp: false,
        shared_pid_with: spec
            .join
            .as_ref()
            .filter(|j| j.pid)
            .map(|j| j.sandbox_id.clone()),
    };
    (config, fx)
}
