//! Prometheus metrics, served on an opt-in listener (`--metrics
//! tcp://127.0.0.1:9464`) in the OpenMetrics text format at `/metrics`.
//!
//! Two kinds: what the daemon counts as it works (operation durations as
//! histograms, failures by step), kept in [`Metrics`]; and what is read at
//! scrape time from the manager (sandboxes by state, each running
//! sandbox's resource use, leases in use). A value the backend does not
//! measure is left out, never written as 0. The per-sandbox series carry
//! the sandbox's id and name (not its labels): whoever can scrape learns
//! them, which is why a listener off the loopback must be asked for
//! explicitly (`Config::merge`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use sandboxd_core::BackendError;
use sandboxd_core::store::SandboxState;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::error::ApiError;
use crate::manager::Manager;

/// Label pairs of one series.
type Labels = Vec<(&'static str, String)>;

/// The operations whose durations are recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// CreateSandbox, until the sandbox runs (or the create failed).
    Create,
    /// DestroySandbox.
    Destroy,
    /// A process started by Exec or ExecSync, from its start to its exit.
    Exec,
}

impl Operation {
    fn as_str(self) -> &'static str {
        match self {
            Operation::Create => "create",
            Operation::Destroy => "destroy",
            Operation::Exec => "exec",
        }
    }
}

fn duration_buckets() -> Histogram {
    // 5 ms .. ~82 s: a create is tens of milliseconds, an exec anything.
    Histogram::new(exponential_buckets(0.005, 2.0, 15))
}

/// The daemon's own counters (one per daemon, shared by the manager and
/// the services).
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    durations: Family<Labels, Histogram, fn() -> Histogram>,
    failures: Family<Labels, Counter>,
    /// Start times of running execs, by (sandbox id, pid); removed at exit
    /// or when the sandbox goes.
    execs: Mutex<HashMap<(String, i32), Instant>>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let durations: Family<Labels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(duration_buckets);
        let failures = Family::<Labels, Counter>::default();
        registry.register(
            "sandboxd_operation_duration_seconds",
            "Duration of creates, destroys and execs, by operation and outcome (ok, error)",
            durations.clone(),
        );
        registry.register(
            "sandboxd_operation_failures",
            "Failed creates, destroys and exec starts, by operation and the step (or kind of error) that failed",
            failures.clone(),
        );
        Self {
            registry,
            durations,
            failures,
            execs: Mutex::new(HashMap::new()),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The step a failure names, or else the kind of error: a bounded set of
/// label values (steps are names in the code, not client text).
pub fn failure_step(e: &ApiError) -> String {
    match e {
        ApiError::SetupFailed { step, .. } | ApiError::ExecFailed { step, .. } => step.clone(),
        ApiError::Backend(BackendError::Io { step, .. }) => (*step).to_owned(),
        ApiError::Backend(BackendError::Network { step, .. }) => step.clone(),
        ApiError::Backend(BackendError::Refused(_) | BackendError::Unsupported(_)) => {
            "refused".into()
        }
        ApiError::Backend(BackendError::ImageNotFound(_)) => "image_not_found".into(),
        ApiError::Backend(_) => "backend".into(),
        ApiError::CreateNotUndone { error, .. } => failure_step(error),
        ApiError::Invalid(_) | ApiError::InvalidField(_) => "invalid_argument".into(),
        ApiError::NotFound(_) | ApiError::ProcessNotFound(_) => "not_found".into(),
        ApiError::ImageNotFound(_) => "image_not_found".into(),
        ApiError::AlreadyExists(_) => "already_exists".into(),
        ApiError::FailedPrecondition(_) => "failed_precondition".into(),
        ApiError::PermissionDenied(_) => "permission_denied".into(),
        ApiError::ResourceExhausted(_) => "resource_exhausted".into(),
        ApiError::OutOfRange(_) => "out_of_range".into(),
        ApiError::Aborted(_) => "aborted".into(),
        ApiError::Store(_) => "state_store".into(),
        ApiError::Unavailable(_) => "unavailable".into(),
        ApiError::Internal(_) => "internal".into(),
    }
}

impl Metrics {
    /// Records one finished operation.
    pub fn observe<T>(&self, op: Operation, started: Instant, result: &Result<T, ApiError>) {
        let outcome = if result.is_ok() { "ok" } else { "error" };
        self.durations
            .get_or_create(&vec![
                ("operation", op.as_str().to_owned()),
                ("outcome", outcome.to_owned()),
            ])
            .observe(started.elapsed().as_secs_f64());
        if let Err(e) = result {
            self.failed(op, e);
        }
    }

    /// Counts a failure of `op` by its step.
    pub fn failed(&self, op: Operation, e: &ApiError) {
        self.failures
            .get_or_create(&vec![
                ("operation", op.as_str().to_owned()),
                ("step", failure_step(e)),
            ])
            .inc();
    }

    /// An exec's process started.
    pub fn exec_started(&self, sandbox: &str, pid: i32) {
        lock(&self.execs).insert((sandbox.to_owned(), pid), Instant::now());
    }

    /// An exec's process ended: its duration, from its start.
    pub fn exec_finished(&self, sandbox: &str, pid: i32) {
        let started = lock(&self.execs).remove(&(sandbox.to_owned(), pid));
        if let Some(started) = started {
            self.durations
                .get_or_create(&vec![
                    ("operation", "exec".to_owned()),
                    ("outcome", "ok".to_owned()),
                ])
                .observe(started.elapsed().as_secs_f64());
        }
    }

    /// A sandbox is gone: forget its execs that never reported an exit.
    pub fn forget_sandbox(&self, sandbox: &str) {
        lock(&self.execs).retain(|(id, _), _| id != sandbox);
    }

    /// The whole exposition: the counters, then what the manager shows now.
    pub fn render(&self, manager: &Manager) -> String {
        let mut now = Registry::default();
        let by_state = Family::<Labels, Gauge>::default();
        let cpu = Family::<Labels, Counter<f64, AtomicU64>>::default();
        let memory = Family::<Labels, Gauge>::default();
        let pids = Family::<Labels, Gauge>::default();
        let io_read = Family::<Labels, Counter>::default();
        let io_write = Family::<Labels, Counter>::default();
        let mut counts: HashMap<&'static str, i64> = HashMap::new();
        for state in ["creating", "running", "stopping", "exited"] {
            counts.insert(state, 0);
        }
        for record in manager.list() {
            let state = match record.state {
                SandboxState::Creating => "creating",
                SandboxState::Running => "running",
                SandboxState::Stopping => "stopping",
                SandboxState::Exited => "exited",
            };
            *counts.entry(state).or_default() += 1;
            let Some(usage) = manager.usage(&record) else {
                continue;
            };
            let labels: Labels = vec![
                ("id", record.id.clone()),
                ("name", record.spec.name.clone()),
            ];
            let gauge = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
            if let Some(u) = usage.cpu_usec {
                // Precision: f64 is exact for integers up to 2^53 µs (285 years).
                #[allow(clippy::cast_precision_loss)]
                cpu.get_or_create(&labels).inc_by(u as f64 / 1e6);
            }
            if let Some(m) = usage.memory_bytes {
                memory.get_or_create(&labels).set(gauge(m));
            }
            if let Some(p) = usage.pids {
                pids.get_or_create(&labels).set(gauge(p));
            }
            if let Some(r) = usage.io_read_bytes {
                io_read.get_or_create(&labels).inc_by(r);
            }
            if let Some(w) = usage.io_write_bytes {
                io_write.get_or_create(&labels).inc_by(w);
            }
        }
        for (state, n) in counts {
            by_state
                .get_or_create(&vec![("state", state.to_owned())])
                .set(n);
        }
        let (addresses, ports) = manager.leases_in_use();
        let leased_addresses = Gauge::<i64>::default();
        leased_addresses.set(i64::try_from(addresses).unwrap_or(i64::MAX));
        let leased_ports = Gauge::<i64>::default();
        leased_ports.set(i64::try_from(ports).unwrap_or(i64::MAX));
        now.register("sandboxd_sandboxes", "Sandboxes by state", by_state);
        now.register(
            "sandboxd_sandbox_cpu_seconds",
            "CPU time used by a running sandbox (absent where not measured)",
            cpu,
        );
        now.register(
            "sandboxd_sandbox_memory_bytes",
            "Memory charged to a running sandbox (absent where not measured)",
            memory,
        );
        now.register(
            "sandboxd_sandbox_pids",
            "Tasks in a running sandbox (absent where not measured)",
            pids,
        );
        now.register(
            "sandboxd_sandbox_io_read_bytes",
            "Bytes a running sandbox read from block devices (absent where not measured)",
            io_read,
        );
        now.register(
            "sandboxd_sandbox_io_write_bytes",
            "Bytes a running sandbox wrote to block devices (absent where not measured)",
            io_write,
        );
        now.register(
            "sandboxd_leased_addresses",
            "Pool addresses leased to sandboxes",
            leased_addresses,
        );
        now.register(
            "sandboxd_leased_ports",
            "Host ports forwarded to sandboxes",
            leased_ports,
        );
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = encode_registry(&mut text, &self.registry);
        let _ = encode_registry(&mut text, &now);
        let _ = encode_eof(&mut text);
        text
    }
}

/// Scrapes served at once; more wait for a slot (a scraper is one client).
const MAX_SCRAPES: usize = 8;
/// How long a scraper may take to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// The most of a request that is read.
const MAX_REQUEST: usize = 8 << 10;

/// Serves `GET /metrics` on `listener` until the daemon stops. HTTP/1.x,
/// one request per connection; anything else gets 404 or 405.
pub async fn serve(listener: TcpListener, manager: Arc<Manager>) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_SCRAPES));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "metrics listener: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let manager = manager.clone();
        tokio::spawn(async move {
            if let Err(e) = answer(stream, manager).await {
                tracing::debug!(%peer, error = %e, "metrics scrape failed");
            }
            drop(permit);
        });
    }
}

async fn answer(mut stream: TcpStream, manager: Arc<Manager>) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let read = async {
        let mut chunk = [0u8; 1024];
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < MAX_REQUEST {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        Ok::<(), std::io::Error>(())
    };
    tokio::time::timeout(REQUEST_TIMEOUT, read)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "request timed out"))??;
    let line = buf.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut words = line.split_whitespace();
    let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let (status, content_type, body) = match (method, path) {
        ("GET", "/metrics") => (
            "200 OK",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            // Reads every running sandbox's counters from files: off the
            // async workers.
            tokio::task::spawn_blocking(move || manager.metrics.render(&manager))
                .await
                .map_err(std::io::Error::other)?,
        ),
        ("GET", _) => (
            "404 Not Found",
            "text/plain",
            "sandboxd serves /metrics only\n".to_owned(),
        ),
        _ => (
            "405 Method Not Allowed",
            "text/plain",
            "GET /metrics only\n".to_owned(),
        ),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}

/// Binds the metrics listener.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    use anyhow::Context as _;
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the metrics listener tcp://{addr}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_steps_are_named() {
        let cases: Vec<(ApiError, &str)> = vec![
            (
                ApiError::SetupFailed {
                    step: "mount root".into(),
                    message: "x".into(),
                },
                "mount root",
            ),
            (
                ApiError::Backend(BackendError::Network {
                    step: "veth".into(),
                    message: "x".into(),
                }),
                "veth",
            ),
            (ApiError::NotFound("x".into()), "not_found"),
            (
                ApiError::CreateNotUndone {
                    error: Box::new(ApiError::SetupFailed {
                        step: "pivot_root".into(),
                        message: String::new(),
                    }),
                    id: "x".into(),
                    cleanup: "y".into(),
                },
                "pivot_root",
            ),
        ];
        for (e, want) in cases {
            assert_eq!(failure_step(&e), want, "{e}");
        }
    }

    #[test]
    fn observations_show_in_the_exposition() {
        let m = Metrics::default();
        m.observe::<()>(Operation::Create, Instant::now(), &Ok(()));
        m.observe::<()>(
            Operation::Create,
            Instant::now(),
            &Err(ApiError::SetupFailed {
                step: "pivot_root".into(),
                message: String::new(),
            }),
        );
        m.exec_started("a", 7);
        m.exec_finished("a", 7);
        m.exec_finished("a", 8); // never started: nothing
        m.exec_started("b", 1);
        m.forget_sandbox("b");
        assert!(lock(&m.execs).is_empty());
        let mut text = String::new();
        encode_registry(&mut text, &m.registry).expect("encode");
        for want in [
            "sandboxd_operation_duration_seconds_count{operation=\"create\",outcome=\"ok\"} 1",
            "sandboxd_operation_duration_seconds_count{operation=\"create\",outcome=\"error\"} 1",
            "sandboxd_operation_duration_seconds_count{operation=\"exec\",outcome=\"ok\"} 1",
            "sandboxd_operation_failures_total{operation=\"create\",step=\"pivot_root\"} 1",
        ] {
            assert!(text.contains(want), "{want} missing from\n{text}");
        }
    }
}
