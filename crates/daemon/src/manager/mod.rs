//! The sandbox manager: the daemon's model of every sandbox, and the
//! lifecycle operations behind the RPCs. Each sandbox has a supervisor
//! helper; one task per sandbox reads its events and updates the record,
//! the event log and anyone waiting.
//!
//! - `registry`: the sandboxes by id and request key, and their leases;
//!   lookups (`get`, `get_for`, `owner_of`, `list`).
//! - `recover`: start-up: roll back interrupted creates, finish
//!   interrupted destroys, reattach to live supervisors.
//! - `create`: CreateSandbox (register, journal, prepare, start, roll
//!   back) and the dry-run plan.
//! - `destroy`: StopSandbox, DestroySandbox, supervisor shutdown and host
//!   cleanup.
//! - `exec`: Exec, signals and VerifySandbox in a running sandbox.
//! - `events`: the per-sandbox supervisor event loop, exits, WaitSandbox.
//! - `select`: label selectors.

mod create;
mod destroy;
mod events;
mod exec;
mod exec_records;
pub mod exec_slots;
mod recover;
mod registry;
mod select;

pub use exec::{ExecEnd, ExecHandle, ExecStart, ExecStdio};
pub use exec_records::{ExecRecord, MAX_EXEC_RECORDS};
pub use select::{SelectorTerm, matches_selector, parse_selector};

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use sandboxd_core::backend::SandboxPaths;
use sandboxd_core::net::Leases;
use sandboxd_core::store::{ExitReason, ExitRecord, SandboxRecord, StateStore};
use sandboxd_core::verify::Verification;
use sandboxd_core::wire::{ProcessExit, StepTime};
use sandboxd_core::{Backend, Policy};
use sandboxd_supervisor::{ExitFile, now_ms};
use tokio::sync::{oneshot, watch};

use crate::error::{ApiError, ApiResult};
use crate::events::EventLog;
use crate::link::Link;
use crate::zygote::{SupervisorProc, Zygote};
use exec::{ExecSlot, VerifyTx};
use registry::Registry;

/// How long a supervisor may take to set a sandbox up.
const SETUP_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a supervisor may take to shut down after SIGKILLing everything.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(20);
/// Stop's default grace period.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(10);
/// Largest grace period a client may ask for.
pub const MAX_GRACE: Duration = Duration::from_secs(300);

/// A failed step reported by a supervisor.
type StepFailure = (String, String);

/// Completes a create: the main pid (None for IDLE) and the supervisor's
/// step times, or the failed step.
type ReadyTx = oneshot::Sender<Result<(Option<i32>, Vec<StepTime>), StepFailure>>;

/// One sandbox.
#[derive(Debug)]
pub struct Sandbox {
    /// Its id.
    pub id: String,
    paths: SandboxPaths,
    record: Mutex<SandboxRecord>,
    exit_tx: watch::Sender<Option<ExitRecord>>,
    link: Mutex<Option<Arc<Link>>>,
    link_closed: watch::Sender<bool>,
    /// Every process of the sandbox is dead: its supervisor said so
    /// (`SandboxExited` with `none_left`), or it is gone (after its
    /// teardown). What a destroy waits for before it answers.
    dead: watch::Sender<bool>,
    ready: Mutex<Option<ReadyTx>>,
    execs: Mutex<HashMap<u64, ExecSlot>>,
    child: Mutex<SupervisorChild>,
    /// This daemon's own supervisor child has been reaped (by whoever took
    /// it from `child`); never set for a previous daemon's supervisor.
    reaped: watch::Sender<bool>,
    /// An exit that arrived while the create was still finishing; applied
    /// after the CREATED/STARTED events so events stay in order.
    pending_exit: Mutex<Option<ExitRecord>>,
    /// Its OCI image's run-time defaults for execs (Env, WorkingDir),
    /// read from the image store at the first exec: the image is pinned by
    /// digest, so they never change for the sandbox's life.
    exec_defaults: tokio::sync::OnceCell<Option<Arc<sandboxd_core::oci::RunConfig>>>,
    /// The supervisor's channel closed while the create was still
    /// finishing. Set and read under the record lock.
    closed_early: std::sync::atomic::AtomicBool,
    /// Serialises stop/destroy on one sandbox.
    /// A child's create holds its parent's (see `create::find_parent`).
    op: Arc<tokio::sync::Mutex<()>>,
    /// VerifySandbox probes waiting for their result, by probe id.
    verifies: Mutex<HashMap<u64, VerifyTx>>,
    /// The verification a create asked for (from Ready).
    created_verification: Mutex<Option<Verification>>,
    /// Every exec's record (ExecService), by exec id.
    exec_records: Mutex<exec_records::ExecTable>,
    /// Bumped whenever an exec record gets its exit (WaitExec wakes).
    exec_done: watch::Sender<u64>,
    /// Held while the record is read and appended to the journal (see
    /// `Manager::save_record`), so saves land in the journal in the order
    /// they read the record.
    save_order: Mutex<()>,
}

/// Who reaps a sandbox's supervisor. Exactly one task reaps our own child:
/// the one that takes it, leaving [`SupervisorChild::Reaping`], which tells
/// a destroy to wait for [`Sandbox::reaped`] rather than treat the exiting
/// process as a supervisor a previous daemon left.
#[derive(Debug, Default)]
enum SupervisorChild {
    /// Not our child: a previous daemon started it, or none is started yet.
    #[default]
    NotOurs,
    /// Our child, not yet taken.
    Ours(SupervisorProc),
    /// Our child, being reaped by the task that took it.
    Reaping,
}

impl Sandbox {
    /// Takes our supervisor child to reap it, leaving `Reaping` (the taker
    /// must call [`Self::reaped_by_taker`] once it has), and returns what
    /// the slot held: `Ours` to reap, `Reaping` (another task reaps it) or
    /// `NotOurs` (a previous daemon's, left as it is).
    fn take_child(&self) -> SupervisorChild {
        let mut slot = lock(&self.child);
        match &*slot {
            SupervisorChild::NotOurs => SupervisorChild::NotOurs,
            SupervisorChild::Ours(_) | SupervisorChild::Reaping => {
                std::mem::replace(&mut *slot, SupervisorChild::Reaping)
            }
        }
    }

    /// The child taken by [`Self::take_child`] is reaped.
    fn reaped_by_taker(&self) {
        self.reaped.send_replace(true);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves plain data behind;
    // keep serving rather than poisoning every later call.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Sandbox {
    /// A snapshot of the record.
    pub fn record(&self) -> SandboxRecord {
        lock(&self.record).clone()
    }

    /// Its image's exec defaults, loaded by `load` once (see the field).
    pub async fn exec_defaults<F, Fut, E>(
        &self,
        load: F,
    ) -> Result<Option<Arc<sandboxd_core::oci::RunConfig>>, E>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<Option<Arc<sandboxd_core::oci::RunConfig>>, E>>,
    {
        self.exec_defaults.get_or_try_init(load).await.cloned()
    }

    /// Reads its record in place, under its lock: for a field or two, where
    /// [`Self::record`] would copy the whole record (its isolation report
    /// included) on every exec.
    pub fn with_record<R>(&self, read: impl FnOnce(&SandboxRecord) -> R) -> R {
        read(&lock(&self.record))
    }

    fn link(&self) -> Option<Arc<Link>> {
        lock(&self.link).clone()
    }

    /// Its state directory (`STATE/sandboxes/<id>`), which holds its logs.
    pub fn dir(&self) -> &std::path::Path {
        &self.paths.dir
    }

    /// One exec's record.
    pub fn exec_record(&self, exec_id: u64) -> Option<ExecRecord> {
        lock(&self.exec_records).get(exec_id).cloned()
    }

    /// Every exec record, oldest first.
    pub fn exec_records(&self) -> Vec<ExecRecord> {
        lock(&self.exec_records).list()
    }

    /// Waits until exec `exec_id` has ended; `None` if there is no such
    /// record (never was, or forgotten).
    pub async fn wait_exec(&self, exec_id: u64) -> Option<ExecRecord> {
        let mut done = self.exec_done.subscribe();
        loop {
            let record = self.exec_record(exec_id)?;
            if record.exit.is_some() {
                return Some(record);
            }
            if done.changed().await.is_err() {
                return self.exec_record(exec_id);
            }
        }
    }

    fn record_exec_exit(&self, exec_id: u64, exit: ExitRecord) {
        lock(&self.exec_records).finish(exec_id, exit);
        self.exec_done.send_modify(|n| *n += 1);
    }

    /// Whether its exit has been recorded. The supervisor writes the last
    /// of the main process's output to the log before it reports the exit.
    pub fn has_ended(&self) -> bool {
        self.exit_tx.borrow().is_some()
    }
}

/// The manager.
#[derive(Debug)]
pub struct Manager {
    backend: Arc<dyn Backend>,
    store: StateStore,
    policy: Policy,
    /// The event log.
    pub events: EventLog,
    /// The daemon's counters (served with `--metrics`).
    pub metrics: Arc<crate::metrics::Metrics>,
    exe: PathBuf,
    /// Forks supervisors (Linux); None: each helper is exec'd.
    zygote: Option<Arc<Zygote>>,
    registry: Mutex<Registry>,
    next_exec: AtomicU64,
    /// Sandboxes found running at start-up, until `reattach` runs.
    reattach: Mutex<Vec<Arc<Sandbox>>>,
    /// Destroys still tearing down after their reply (`tear_down_later`).
    teardowns: crate::pending::Pending,
    /// The exec caps, which also count the execs a reattached supervisor
    /// still runs.
    exec_slots: Arc<exec_slots::ExecSlots>,
}

impl Manager {
    /// Opens the state store and loads what a previous daemon left.
    pub fn new(
        backend: Arc<dyn Backend>,
        state_dir: &std::path::Path,
        policy: Policy,
        leases: Leases,
        exec_slots: Arc<exec_slots::ExecSlots>,
    ) -> ApiResult<Arc<Self>> {
        let store = StateStore::open(state_dir)?;
        let exe = self_exe()?;
        let zygote = start_zygote(&exe);
        let manager = Arc::new(Self {
            backend,
            store,
            policy,
            events: EventLog::default(),
            metrics: Arc::default(),
            exe,
            zygote,
            registry: Mutex::new(Registry::new(leases)),
            // Exec ids stay unique across restarts: a reattached supervisor
            // may still run execs numbered by the previous daemon.
            next_exec: AtomicU64::new(u64::try_from(now_ms()).unwrap_or(1) << 20),
            reattach: Mutex::new(Vec::new()),
            teardowns: crate::pending::Pending::default(),
            exec_slots,
        });
        manager.load_previous()?;
        Ok(manager)
    }

    /// Destroys that replied and are still tearing down (the daemon's
    /// shutdown waits for them).
    pub fn teardowns_pending(&self) -> usize {
        self.teardowns.count()
    }

    /// The backend.
    pub fn backend(&self) -> &dyn Backend {
        self.backend.as_ref()
    }

    /// The request caps.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Saves the sandbox's record as it is when its turn comes: durably
    /// (see `StateStore::save`), or only for a restarted daemon, not
    /// waiting for the disk (`StateStore::save_unsynced`). The record is
    /// read and appended under the sandbox's `save_order`, so the journal's
    /// last entry for it is always its latest state: two saves in flight
    /// (a create's RUNNING record and the exit that raced it) never leave
    /// the older one last, which a restarted daemon would believe (the
    /// exit lost, and no exit file once the supervisor was told the exit
    /// was recorded).
    async fn save_record(&self, sb: &Arc<Sandbox>, durable: bool) -> ApiResult<()> {
        // An unsynced save that is only a progress entry (a create's RUNNING
        // record, a destroy's mark) is one small append: made here, not
        // through the blocking pool's two thread hand-offs (~0.1 ms on the
        // path of a create), unless it would wait (another save of this
        // sandbox under way, which may be waiting for the disk, or a
        // compaction).
        if !durable {
            if let Ok(_order) = sb.save_order.try_lock() {
                // Read in place (a few microseconds under the lock), not
                // cloned.
                let saved = self.store.try_save_progress(&lock(&sb.record));
                if let Some(saved) = saved {
                    return saved.map_err(Into::into);
                }
            }
        }
        let (store, sb) = (self.store.clone(), sb.clone());
        tokio::task::spawn_blocking(move || {
            let _order = lock(&sb.save_order);
            let record = sb.record();
            if durable {
                store.save(&record)
            } else {
                store.save_unsynced(&record)
            }
        })
        .await
        .map_err(|e| ApiError::Internal(format!("save task: {e}")))??;
        Ok(())
    }
}

fn new_sandbox(paths: SandboxPaths, record: SandboxRecord) -> Sandbox {
    Sandbox {
        id: record.id.clone(),
        paths,
        exit_tx: watch::channel(record.exit.clone()).0,
        record: Mutex::new(record),
        link: Mutex::new(None),
        link_closed: watch::channel(false).0,
        dead: watch::channel(false).0,
        ready: Mutex::new(None),
        execs: Mutex::new(HashMap::new()),
        child: Mutex::new(SupervisorChild::NotOurs),
        reaped: watch::channel(false).0,
        pending_exit: Mutex::new(None),
        exec_defaults: tokio::sync::OnceCell::new(),
        closed_early: std::sync::atomic::AtomicBool::new(false),
        op: Arc::new(tokio::sync::Mutex::new(())),
        verifies: Mutex::new(HashMap::new()),
        created_verification: Mutex::new(None),
        exec_records: Mutex::new(exec_records::ExecTable::default()),
        exec_done: watch::channel(0).0,
        save_order: Mutex::new(()),
    }
}

/// The message of the exit a destroy gives a sandbox that was still running.
const DESTROYED: &str = "destroyed";

fn exit_record(exit: ProcessExit, finished_at_ms: i64, message: &str) -> ExitRecord {
    let (reason, signal) = match exit {
        ProcessExit::Exited(_) => (ExitReason::Exited, 0),
        ProcessExit::Signaled(s) => (ExitReason::Signaled, s),
    };
    ExitRecord {
        reason,
        code: exit.code(),
        signal,
        message: message.to_owned(),
        finished_at_ms,
    }
}

fn lost_exit(message: &str) -> ExitRecord {
    ExitRecord {
        reason: ExitReason::Lost,
        code: 255,
        signal: 0,
        message: message.to_owned(),
        finished_at_ms: now_ms(),
    }
}

fn read_exit_file(paths: &SandboxPaths) -> Option<ExitFile> {
    let bytes = std::fs::read(paths.dir.join("exit.json")).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The zygote that forks supervisors, on Linux; if it cannot start, each
/// supervisor is exec'd as before (slower, equally isolated).
fn start_zygote(exe: &std::path::Path) -> Option<Arc<Zygote>> {
    if !cfg!(target_os = "linux") {
        return None;
    }
    match Zygote::start(exe) {
        Ok(z) => Some(z),
        Err(e) => {
            tracing::warn!(error = %e, "starting the zygote; supervisors are exec'd instead");
            None
        }
    }
}

/// The binary to re-execute as the supervisor helper. On Linux
/// /proc/self/exe names this very binary even if its file was replaced.
fn self_exe() -> ApiResult<PathBuf> {
    if cfg!(target_os = "linux") {
        return Ok(PathBuf::from("/proc/self/exe"));
    }
    std::env::current_exe()
        .map_err(|e| ApiError::Internal(format!("locating the sandboxd binary: {e}")))
}
