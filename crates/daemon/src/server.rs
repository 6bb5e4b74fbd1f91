//! Server start-up: directories, the unix socket, the gRPC services (plus
//! health and reflection), and graceful shutdown on SIGTERM/SIGINT.

use std::future::Future;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use anyhow::{Context, bail};
use sandboxd_proto::v1 as pb;
use tokio::net::{UnixListener, UnixStream};
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tonic::codegen::http;

use crate::auth::Authorizer;
use crate::config::{Config, Listen};
use crate::hostdirs;
use crate::manager::Manager;
use crate::pending::Pending;
use crate::service::{Events, Execs, Host, Images, Logs, Processes, Sandboxes, Shared};
use crate::transport::{self, Bound};

/// How long in-flight calls get to finish after SIGTERM.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Runs the daemon until SIGTERM/SIGINT.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    // SIGTERM and SIGINT are caught from here on: one arriving while the
    // daemon starts (its socket may already exist) or before the server
    // first polls its shutdown future must still end it cleanly, not by
    // the default action.
    let signals = Signals::register();
    let nofile = match crate::rlimit::raise() {
        Ok(n) => {
            tracing::info!(before = n.before, now = n.now, "open-files limit");
            n.now
        }
        Err(e) => {
            let now = crate::rlimit::current();
            tracing::warn!(error = %e, now, "cannot raise the open-files limit");
            now
        }
    };
    let configured = transport::ConnCaps {
        local: config.limits.max_local_connections,
        remote: config.limits.max_connections,
        handshakes: config.limits.max_pending_handshakes,
    };
    let caps = transport::caps_for(configured, nofile);
    if caps != configured {
        tracing::warn!(
            nofile,
            max_local_connections = caps.local,
            max_connections = caps.remote,
            max_pending_handshakes = caps.handshakes,
            "connection caps lowered to fit the open-files limit"
        );
    }
    for dir in [&config.state_dir, &config.images_dir] {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dir)
            .with_context(|| format!("creating {}", dir.display()))?;
    }
    // Records, mounts and supervisor sockets live there: nobody else may
    // be able to plant or swap anything in it.
    hostdirs::check_private_dir("state_dir", &config.state_dir)?;
    let backend = crate::backend::new(&sandboxd_core::backend::BackendOptions {
        images_dir: config.images_dir.clone(),
        alias_interface: config.alias_interface.clone(),
    });
    tracing::info!(
        backend = backend.kind().as_str(),
        reason = crate::backend::REASON,
        "backend selected"
    );
    let execs = Arc::new(crate::service::ExecSlots::new(
        config.limits.max_execs_per_sandbox,
        config.limits.max_execs_per_identity,
    ));
    let manager = Manager::new(
        backend,
        &config.state_dir,
        config.policy.clone(),
        sandboxd_core::net::Leases::new(config.net_pool.clone(), config.ports.clone()),
        execs.clone(),
    )
    .map_err(|e| anyhow::anyhow!("loading state from {}: {e}", config.state_dir.display()))?;
    manager.reattach().await;
    let mut listeners = Vec::new();
    let mut sockets = Vec::new();
    for listen in &config.listen {
        match listen {
            Listen::Unix(path) => {
                listeners.push(Bound::Unix(bind_socket(path, config.socket_group).await?));
                sockets.push(path.clone());
            }
            Listen::Tcp(addr) => {
                // Config::merge refuses a TCP listener without TLS.
                let tls = config
                    .tls
                    .as_ref()
                    .context("a tcp:// listener needs [tls]")?;
                let acceptor = TlsAcceptor::from(Arc::new(transport::server_config(tls)?));
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("binding tcp://{addr}"))?;
                listeners.push(Bound::Tcp(listener, acceptor, tls.handshake_timeout));
            }
        }
    }
    let metrics_listener = match config.metrics {
        Some(addr) => Some(crate::metrics::bind(addr).await?),
        None => None,
    };
    let mut own: Vec<(&'static str, &Path)> = vec![
        ("state directory", &config.state_dir),
        ("images directory", &config.images_dir),
    ];
    for path in &sockets {
        if let Some(dir) = path.parent() {
            own.push(("socket directory", dir));
        }
    }
    if let Some(tls) = &config.tls {
        own.push(("TLS key", &tls.key));
    }
    let protected = Arc::new(hostdirs::Protected::new(&own)?);
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let images = sandboxd_images::Store::open(
        &config.images_dir,
        sandboxd_core::oci::UnpackLimits::default(),
    )
    .context("opening the image store")?;
    let images = Arc::new(images);
    // GC keeps the layers of every image a sandbox was made from (pinned
    // by digest in its record), whatever the refs say now.
    let in_use = Arc::downgrade(&manager);
    images.set_in_use(Box::new(move || {
        in_use
            .upgrade()
            .map(|m| {
                m.list()
                    .iter()
                    .filter_map(|sb| crate::service::pinned_digest(sb.spec.image()))
                    .collect()
            })
            .unwrap_or_default()
    }));
    let shared = Shared {
        images: images.clone(),
        registries: Arc::new(crate::registry::Registries::new(config.registries.clone())),
        manager,
        images_dir: config.images_dir.clone(),
        shutdown: shutdown_rx,
        auth: Arc::new(Authorizer::new(
            config.identities.clone(),
            config.default_max_sandboxes,
        )),
        creates: Arc::new(tokio::sync::Semaphore::new(
            config.limits.max_inflight_creates,
        )),
        protected,
        execs,
    };

    let health_reporter = tonic_health::server::HealthReporter::new();
    let health = tonic_health::pb::health_server::HealthServer::new(
        crate::health::SpecHealth::new(health_reporter.clone()),
    );
    health_reporter
        .set_serving::<pb::host_service_server::HostServiceServer<Host>>()
        .await;
    health_reporter
        .set_serving::<pb::sandbox_service_server::SandboxServiceServer<Sandboxes>>()
        .await;
    health_reporter
        .set_serving::<pb::process_service_server::ProcessServiceServer<Processes>>()
        .await;
    health_reporter
        .set_serving::<pb::event_service_server::EventServiceServer<Events>>()
        .await;
    health_reporter
        .set_serving::<pb::log_service_server::LogServiceServer<Logs>>()
        .await;
    health_reporter
        .set_serving::<pb::exec_service_server::ExecServiceServer<Execs>>()
        .await;
    health_reporter
        .set_serving::<pb::image_service_server::ImageServiceServer<Images>>()
        .await;
    // Built on their first call (most daemons are never asked to reflect).
    let reflection_v1 = crate::reflection::v1();
    let reflection_v1alpha = crate::reflection::v1alpha();

    let max_message = config.limits.max_message_bytes;
    macro_rules! limited {
        ($server:expr) => {
            $server
                .max_decoding_message_size(max_message)
                .max_encoding_message_size(max_message)
        };
    }
    let in_flight = InFlight::default();
    let router = tonic::transport::Server::builder()
        .max_concurrent_streams(Some(config.limits.max_concurrent_streams))
        .layer(in_flight.clone())
        .layer(tower::util::MapResponseLayer::new(too_large_is_exhausted))
        .layer(crate::deadline::DeadlineLayer)
        .add_service(limited!(pb::host_service_server::HostServiceServer::new(
            Host(shared.clone())
        )))
        .add_service(limited!(
            pb::sandbox_service_server::SandboxServiceServer::new(Sandboxes(shared.clone()))
        ))
        .add_service(limited!(
            pb::process_service_server::ProcessServiceServer::new(Processes(shared.clone()))
        ))
        .add_service(limited!(pb::event_service_server::EventServiceServer::new(
            Events(shared.clone())
        )))
        .add_service(limited!(pb::log_service_server::LogServiceServer::new(
            Logs(shared.clone())
        )))
        .add_service(limited!(pb::exec_service_server::ExecServiceServer::new(
            Execs(shared.clone())
        )))
        .add_service(limited!(pb::image_service_server::ImageServiceServer::new(
            Images(shared.clone())
        )))
        .add_service(known_callers_only(health, &shared))
        .add_service(known_callers_only(reflection_v1, &shared))
        .add_service(known_callers_only(reflection_v1alpha, &shared));

    if let Some(listener) = metrics_listener {
        tracing::info!(metrics = ?config.metrics, "serving Prometheus metrics at /metrics");
        let manager = shared.manager.clone();
        let mut down = shared.shutdown.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = crate::metrics::serve(listener, manager) => {}
                _ = down.wait_for(|s| *s) => {}
            }
        });
    }

    tracing::info!(listen = ?config.listen, state_dir = %config.state_dir.display(), images_dir = %config.images_dir.display(), "sandboxd listening");
    // Every listener is bound and sandboxes are reattached: a client that
    // systemd starts after us can connect now.
    crate::notify::notify(&format!(
        "READY=1\nSTATUS=serving {} listener(s)\nMAINPID={}",
        config.listen.len(),
        std::process::id()
    ));
    let stop = async move {
        signals.wait().await;
        crate::notify::notify("STOPPING=1");
        tracing::info!("shutting down: finishing in-flight calls; sandboxes keep running");
        let _ = shutdown_tx.send(true);
    };
    let mut stopping = Box::pin(stop);
    let serve =
        router.serve_with_incoming_shutdown(transport::incoming(listeners, caps), &mut stopping);
    tokio::pin!(serve);
    let result = tokio::select! {
        r = &mut serve => r.map_err(anyhow::Error::from),
        () = async {
            // After the signal, unary calls get up to SHUTDOWN_GRACE to
            // finish (streams end at once with UNAVAILABLE). Idle client
            // connections do not hold the exit: hyper's graceful shutdown
            // may wait for them indefinitely.
            shared.shutting_down().await;
            let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
            // Destroys that replied may still be tearing down; one cut short
            // is finished at the next start (its record is marked).
            let busy = || in_flight.count() > 0 || shared.manager.teardowns_pending() > 0;
            while busy() && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            if busy() {
                tracing::warn!(calls = in_flight.count(), teardowns = shared.manager.teardowns_pending(), "in-flight calls or teardowns did not finish within {SHUTDOWN_GRACE:?}; exiting anyway");
            }
        } => Ok(()),
    };
    for path in &sockets {
        let _ = std::fs::remove_file(path);
    }
    result
}

/// The daemon's SIGTERM and SIGINT handlers, installed by [`Signals::register`].
struct Signals(Option<(Signal, Signal)>);

impl Signals {
    fn register() -> Self {
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(term), Ok(int)) => Self(Some((term, int))),
            _ => Self(None),
        }
    }

    /// Until one of them arrives.
    async fn wait(self) {
        match self.0 {
            Some((mut term, mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            // Without signal handlers the daemon can only be killed; keep
            // serving rather than exit at once.
            None => std::future::pending::<()>().await,
        }
    }
}

/// Binds the unix socket with mode 0600 in a directory that only root may
/// write. A stale socket (nobody answering) is replaced; a live one means
/// another daemon runs, and start-up fails.
async fn bind_socket(path: &Path, group: Option<nix::unistd::Gid>) -> anyhow::Result<UnixListener> {
    let dir = path
        .parent()
        .context("socket path has no parent directory")?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)
        .with_context(|| format!("creating socket directory {}", dir.display()))?;
    hostdirs::check_private_dir("socket directory", dir)?;
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => {
            if UnixStream::connect(path).await.is_ok() {
                bail!("another daemon is already listening on {}", path.display());
            }
            std::fs::remove_file(path)
                .with_context(|| format!("removing stale socket {}", path.display()))?;
        }
        Ok(_) => bail!(
            "{} exists and is not a socket; refusing to replace it",
            path.display()
        ),
        Err(_) => {}
    }
    // Bound under a temporary name, given its mode, then renamed into
    // place: a client that sees the path can connect at once (no window
    // between bind and listen) and never through a socket with looser
    // permissions than configured.
    let staging = path.with_file_name(format!(
        ".{}.{}",
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        std::process::id()
    ));
    let _ = std::fs::remove_file(&staging);
    let listener =
        UnixListener::bind(&staging).with_context(|| format!("binding {}", staging.display()))?;
    // Whoever can connect is an admin: the owner only, or a chosen group.
    let mode = match group {
        Some(gid) => {
            nix::unistd::chown(&staging, None, Some(gid))
                .with_context(|| format!("giving {} to group {gid}", staging.display()))?;
            0o660
        }
        None => 0o600,
    };
    std::fs::set_permissions(&staging, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("setting mode {mode:o} on {}", staging.display()))?;
    std::fs::rename(&staging, path)
        .with_context(|| format!("moving {} to {}", staging.display(), path.display()))?;
    Ok(listener)
}

/// Health and reflection hold nothing of a sandbox, but an identity the
/// configuration does not list gets nothing from this daemon at all.
fn known_callers_only<S>(
    service: S,
    shared: &Shared,
) -> tonic::service::interceptor::InterceptedService<
    S,
    impl tonic::service::Interceptor + Clone + use<S>,
> {
    let auth = shared.auth.clone();
    tonic::service::interceptor::InterceptedService::new(
        service,
        move |req: tonic::Request<()>| -> Result<tonic::Request<()>, tonic::Status> {
            auth.caller(&req).map_err(tonic::Status::from)?;
            Ok(req)
        },
    )
}

/// tonic answers a request over the message-size limit with OUT_OF_RANGE;
/// the API promises RESOURCE_EXHAUSTED (a server-side bound was hit, as
/// grpc-go and grpc-java say too). Only that refusal is rewritten: it is a
/// trailers-only response whose message tonic writes itself.
fn too_large_is_exhausted<B>(mut res: http::Response<B>) -> http::Response<B> {
    let headers = res.headers_mut();
    let too_large = headers.get("grpc-status").is_some_and(|v| v == "11")
        && headers
            .get("grpc-message")
            .and_then(|m| m.to_str().ok())
            .is_some_and(|m| m.contains("message%20length%20too%20large"));
    if too_large {
        headers.insert("grpc-status", http::HeaderValue::from_static("8"));
    }
    res
}

/// A tower layer counting calls whose response has not been produced yet.
#[derive(Debug, Clone, Default)]
struct InFlight(Pending);

impl InFlight {
    fn count(&self) -> usize {
        self.0.count()
    }
}

impl<S> tower::Layer<S> for InFlight {
    type Service = Counted<S>;
    fn layer(&self, inner: S) -> Counted<S> {
        Counted {
            inner,
            calls: self.0.clone(),
        }
    }
}

/// The service [`InFlight`] wraps.
#[derive(Debug, Clone)]
struct Counted<S> {
    inner: S,
    calls: Pending,
}

impl<S, R> tower::Service<R> for Counted<S>
where
    S: tower::Service<R>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: R) -> Self::Future {
        // Ends when the call's future finishes or is dropped.
        let guard = self.calls.start();
        let fut = self.inner.call(req);
        Box::pin(async move {
            let r = fut.await;
            drop(guard);
            r
        })
    }
}
