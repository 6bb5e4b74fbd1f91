//! The sandboxd side: starting a private daemon, a connected gRPC client,
//! the timed operations, and tearing everything down again.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hyper_util::rt::TokioIo;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use sandboxd_proto::v1 as pb;
use sandboxd_proto::v1::process_service_client::ProcessServiceClient;
use sandboxd_proto::v1::sandbox_service_client::SandboxServiceClient;
use tonic::transport::{Channel, Endpoint};

/// Deadline of every RPC, so a stuck daemon fails the run instead of
/// hanging it.
const RPC_TIMEOUT: Duration = Duration::from_secs(60);

/// The image name the daemon sees (a directory in its images dir).
pub(crate) const IMAGE: &str = "busybox";

/// A daemon this harness started; killed by its pid when dropped if
/// [`Daemon::stop`] was not reached.
#[derive(Debug)]
pub(crate) struct Daemon {
    child: Option<Child>,
    /// The unix socket.
    pub(crate) socket: PathBuf,
    /// The daemon's stderr log.
    pub(crate) log: PathBuf,
}

impl Daemon {
    /// Starts `bin --listen unix://DIR/sock --state-dir DIR/state
    /// --images-dir DIR/images` and waits for the socket.
    /// The log goes to `log`, or to DIR/daemon.log.
    pub(crate) fn start(bin: &Path, dir: &Path, log: Option<&Path>) -> anyhow::Result<Self> {
        Self::start_with(bin, dir, log, &[])
    }

    /// Starts the daemon with extra flags.
    pub(crate) fn start_with(
        bin: &Path,
        dir: &Path,
        log: Option<&Path>,
        extra: &[&str],
    ) -> anyhow::Result<Self> {
        let socket = dir.join("sock");
        let log = log.map_or_else(|| dir.join("daemon.log"), Path::to_path_buf);
        let logf = std::fs::File::create(&log).context("creating the daemon log")?;
        let child = Command::new(bin)
            .arg("--listen")
            .arg(format!("unix://{}", socket.display()))
            .arg("--state-dir")
            .arg(dir.join("state"))
            .arg("--images-dir")
            .arg(dir.join("images"))
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(logf)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let mut d = Self {
            child: Some(child),
            socket,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !d.socket.exists() {
            if let Some(Ok(Some(status))) = d.child.as_mut().map(Child::try_wait) {
                bail!(
                    "sandboxd exited with {status} at start; log:\n{}",
                    d.log_text()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "sandboxd made no socket within 20 s; log:\n{}",
                    d.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(d)
    }

    /// The daemon's pid.
    pub(crate) fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// The daemon's log so far.
    pub(crate) fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A new connection (one HTTP/2 connection per call).
    pub(crate) async fn connect(&self) -> anyhow::Result<Api> {
        let path = self.socket.clone();
        // The URI only fills HTTP/2's :authority; the connector dials the
        // socket.
        let channel = Endpoint::from_static("http://localhost")
            .connect_with_connector(tower::service_fn(move |_| {
                let path = path.clone();
                async move {
                    Ok::<_, std::io::Error>(TokioIo::new(
                        tokio::net::UnixStream::connect(path).await?,
                    ))
                }
            }))
            .await
            .context("connecting to sandboxd")?;
        Ok(Api {
            sandboxes: SandboxServiceClient::new(channel.clone()),
            processes: ProcessServiceClient::new(channel),
        })
    }

    /// Destroys every sandbox left, then SIGTERMs the daemon by its pid and
    /// waits for it (SIGKILL after 20 s).
    pub(crate) async fn stop(mut self) -> anyhow::Result<()> {
        let cleanup = async {
            let mut api = self.connect().await?;
            api.destroy_all().await
        }
        .await;
        let Some(mut child) = self.child.take() else {
            return cleanup;
        };
        let pid = Pid::from_raw(i32::try_from(child.id()).context("pid out of range")?);
        let _ = kill(pid, Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait().context("waiting for sandboxd")? {
                if !status.success() {
                    eprintln!("warning: sandboxd exited with {status} after SIGTERM");
                }
                break;
            }
            if Instant::now() > deadline {
                eprintln!("warning: sandboxd ignored SIGTERM for 20 s; killing pid {pid}");
                let _ = child.kill();
                let _ = child.wait();
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        cleanup
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // Only on an early error: kill our own daemon by its pid. Its
        // supervisors (which outlive it by design) were destroyed by the
        // caller's cleanup where possible.
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Per-RPC times of one create + wait + destroy.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Lifecycle {
    /// CreateSandbox.
    pub(crate) create: Duration,
    /// WaitSandbox.
    pub(crate) wait: Duration,
    /// DestroySandbox.
    pub(crate) destroy: Duration,
    /// All three, end to end.
    pub(crate) total: Duration,
}

/// A connected client (one channel, reused for every call).
#[derive(Debug, Clone)]
pub(crate) struct Api {
    sandboxes: SandboxServiceClient<Channel>,
    processes: ProcessServiceClient<Channel>,
}

/// Wraps a message with the harness's deadline.
fn req<T>(msg: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.set_timeout(RPC_TIMEOUT);
    r
}

/// `/bin/true` with defaults.
fn true_process() -> pb::ProcessSpec {
    pb::ProcessSpec {
        argv: vec!["/bin/true".into()],
        ..Default::default()
    }
}

/// Fails unless `exit` is a clean exit 0.
fn check_exit(what: &str, exit: Option<&pb::ExitResult>) -> anyhow::Result<()> {
    match exit {
        Some(e) if e.reason == pb::ExitReason::Exited as i32 && e.exit_code == 0 => Ok(()),
        other => bail!("{what}: /bin/true did not exit 0: {other:?}"),
    }
}

impl Api {
    /// Creates a sandbox on the busybox image and returns its id.
    pub(crate) async fn create(&mut self, mode: pb::SandboxMode) -> anyhow::Result<String> {
        self.create_with(mode, None).await
    }

    /// CreateSandbox with a network policy.
    pub(crate) async fn create_with(
        &mut self,
        mode: pb::SandboxMode,
        network: Option<pb::NetworkPolicy>,
    ) -> anyhow::Result<String> {
        let spec = pb::SandboxSpec {
            image: IMAGE.into(),
            mode: mode as i32,
            process: (mode != pb::SandboxMode::Idle).then(true_process),
            network,
            ..Default::default()
        };
        let resp = self
            .sandboxes
            .create_sandbox(req(pb::CreateSandboxRequest {
                spec: Some(spec),
                request_id: String::new(),
                verify: false,
            }))
            .await
            .context("CreateSandbox")?
            .into_inner();
        resp.sandbox
            .map(|s| s.id)
            .context("CreateSandbox returned no sandbox")
    }

    /// DestroySandbox.
    pub(crate) async fn destroy(&mut self, id: &str) -> anyhow::Result<()> {
        self.sandboxes
            .destroy_sandbox(req(pb::DestroySandboxRequest { id: id.into() }))
            .await
            .with_context(|| format!("DestroySandbox {id}"))?;
        Ok(())
    }

    /// Create (PROCESS, /bin/true) + WaitSandbox + DestroySandbox, timed
    /// per RPC and in total.
    pub(crate) async fn lifecycle(&mut self) -> anyhow::Result<Lifecycle> {
        let t0 = Instant::now();
        let id = self.create(pb::SandboxMode::Process).await?;
        let t1 = Instant::now();
        let waited = self
            .sandboxes
            .wait_sandbox(req(pb::WaitSandboxRequest { id: id.clone() }))
            .await
            .with_context(|| format!("WaitSandbox {id}"));
        let t2 = Instant::now();
        // Destroy even when the wait failed, so nothing is left behind.
        self.destroy(&id).await?;
        let t3 = Instant::now();
        check_exit("WaitSandbox", waited?.get_ref().exit.as_ref())?;
        Ok(Lifecycle {
            create: t1 - t0,
            wait: t2 - t1,
            destroy: t3 - t2,
            total: t3 - t0,
        })
    }

    /// ExecSync of /bin/true in sandbox `id`, timed.
    pub(crate) async fn exec_true(&mut self, id: &str) -> anyhow::Result<Duration> {
        let start = Instant::now();
        let resp = self
            .processes
            .exec_sync(req(pb::ExecSyncRequest {
                sandbox_id: id.into(),
                process: Some(true_process()),
                timeout_ms: 30_000,
                ..Default::default()
            }))
            .await
            .context("ExecSync")?;
        let elapsed = start.elapsed();
        check_exit("ExecSync", resp.get_ref().exit.as_ref())?;
        Ok(elapsed)
    }

    /// Destroys every sandbox the daemon lists.
    pub(crate) async fn destroy_all(&mut self) -> anyhow::Result<()> {
        loop {
            let list = self
                .sandboxes
                .list_sandboxes(req(pb::ListSandboxesRequest {
                    page_size: 1000,
                    ..Default::default()
                }))
                .await
                .context("ListSandboxes")?
                .into_inner();
            if list.sandboxes.is_empty() {
                return Ok(());
            }
            for s in list.sandboxes {
                self.destroy(&s.id).await?;
            }
        }
    }
}
