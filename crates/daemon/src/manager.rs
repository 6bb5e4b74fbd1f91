//! The sandbox manager: the daemon's model of every sandbox, and the
//! lifecycle operations behind the RPCs. Each sandbox has a supervisor
//! helper; one task per sandbox reads its events and updates the record,
//! the event log and anyone waiting.

use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use sandboxd_core::backend::SandboxPaths;
use sandboxd_core::fault;
use sandboxd_core::net::{LeaseError, Leases, NetLease};
use sandboxd_core::spec::{ProcessSpec, Protocol, SandboxSpec};
use sandboxd_core::store::{ExitReason, ExitRecord, SandboxRecord, SandboxState, StateStore};
use sandboxd_core::validate::{self, ValidatedProcess};
use sandboxd_core::verify::{ProbeOutput, Verification};
use sandboxd_core::wire::{
    CreateOptions, CreateVerify, Decoder, Event, ProcessExit, Request, SignalTarget,
};
use sandboxd_core::{Backend, Plan, Policy, ValidatedSpec};
use sandboxd_proto::v1 as pb;
use sandboxd_supervisor::{ExitFile, now_ms};
use tokio::process::Child;
use tokio::sync::{oneshot, watch};

use crate::auth::Caller;
use crate::convert;
use crate::error::{ApiError, ApiResult};
use crate::events::EventLog;
use crate::link::{self, Link};

/// How long a supervisor may take to set a sandbox up.
const SETUP_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a supervisor may take to shut down after SIGKILLing everything.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(20);
/// Stop's default grace period.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(10);
/// Largest grace period a client may ask for.
pub const MAX_GRACE: Duration = Duration::from_secs(300);

/// How an exec ended, and whether the OOM killer ended it.
pub type ExecEnd = (ProcessExit, bool);

/// A failed step reported by a supervisor.
type StepFailure = (String, String);

/// Completes a create: the main pid (None for IDLE) or the failed step.
type ReadyTx = oneshot::Sender<Result<Option<i32>, StepFailure>>;

/// Completes a VerifySandbox: the probe's output, or why it could not run.
type VerifyTx = oneshot::Sender<Result<ProbeOutput, String>>;

/// How long the daemon waits for a probe's result (the supervisor kills a
/// probe 5 s past its budget).
const VERIFY_TIMEOUT: Duration = Duration::from_millis(crate::verify::BUDGET_MS + 15_000);

/// One Exec'd process the daemon is waiting on.
#[derive(Debug)]
struct ExecSlot {
    started: Option<oneshot::Sender<Result<i32, StepFailure>>>,
    exited: Option<oneshot::Sender<ExecEnd>>,
    pid: i32,
}

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
    ready: Mutex<Option<ReadyTx>>,
    execs: Mutex<HashMap<u64, ExecSlot>>,
    child: Mutex<Option<Child>>,
    /// An exit that arrived while the create was still finishing; applied
    /// after the CREATED/STARTED events so events stay in order.
    pending_exit: Mutex<Option<ExitRecord>>,
    /// The supervisor's channel closed while the create was still
    /// finishing. Set and read under the record lock.
    closed_early: std::sync::atomic::AtomicBool,
    /// Serialises stop/destroy on one sandbox.
    op: tokio::sync::Mutex<()>,
    /// VerifySandbox probes waiting for their result, by probe id.
    verifies: Mutex<HashMap<u64, VerifyTx>>,
    /// The verification a create asked for (from Ready).
    created_verification: Mutex<Option<Verification>>,
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

    fn link(&self) -> Option<Arc<Link>> {
        lock(&self.link).clone()
    }
}

/// A started Exec: its pid and the daemon's ends of its stdio.
#[derive(Debug)]
pub struct ExecHandle {
    /// Host pid.
    pub pid: i32,
    /// Daemon-side exec id (for ExecTree signals).
    pub exec_id: u64,
    /// stdin (pipe write end), stdout and stderr (pipe read ends), or with a
    /// terminal: the pty master in `stdout` and nothing else.
    pub stdio: ExecStdio,
    /// Resolves when the process exits.
    pub exited: oneshot::Receiver<ExecEnd>,
}

/// The daemon's side of an exec's stdio.
#[derive(Debug)]
pub enum ExecStdio {
    /// Three pipes.
    Pipes {
        /// Write end of stdin.
        stdin: OwnedFd,
        /// Read end of stdout.
        stdout: OwnedFd,
        /// Read end of stderr.
        stderr: OwnedFd,
    },
    /// A terminal.
    Pty {
        /// The pty's controlling side.
        master: OwnedFd,
    },
}

/// The manager.
#[derive(Debug)]
pub struct Manager {
    backend: Arc<dyn Backend>,
    store: StateStore,
    policy: Policy,
    /// The event log.
    pub events: EventLog,
    exe: PathBuf,
    registry: Mutex<Registry>,
    next_exec: AtomicU64,
    /// Sandboxes found running at start-up, until `reattach` runs.
    reattach: Mutex<Vec<Arc<Sandbox>>>,
}

/// What [`Manager::register`] found or made.
enum Registered {
    /// The sandbox of an earlier request with the same key (None if it is
    /// being rolled back).
    Existing(Option<Arc<Sandbox>>),
    /// A new sandbox in state CREATING.
    New(Arc<Sandbox>, SandboxPaths),
}

#[derive(Debug, Default)]
struct Registry {
    by_id: HashMap<String, Arc<Sandbox>>,
    by_request: HashMap<(String, String), String>,
    /// Addresses and host ports, rebuilt from the records at start-up.
    leases: Leases,
    /// Owners of destroyed sandboxes, so their last events still reach
    /// them; oldest dropped past [`GONE_OWNERS`].
    gone_owners: HashMap<String, String>,
    gone_order: std::collections::VecDeque<String>,
}

/// How many destroyed sandboxes' owners are remembered.
const GONE_OWNERS: usize = 4096;

impl Registry {
    /// Drops a sandbox and releases its addresses and ports: only once its
    /// host cleanup succeeded, so nothing can lease an address that may
    /// still be configured on the host.
    fn forget(&mut self, id: &str) {
        if let Some(sb) = self.by_id.remove(id) {
            let owner = lock(&sb.record).owner.clone();
            self.gone_owners.insert(id.to_owned(), owner);
            self.gone_order.push_back(id.to_owned());
            while self.gone_order.len() > GONE_OWNERS {
                if let Some(old) = self.gone_order.pop_front() {
                    self.gone_owners.remove(&old);
                }
            }
        }
        self.by_request.retain(|_, v| v != id);
        self.leases.release(id);
    }
}

impl Manager {
    /// Opens the state store and loads what a previous daemon left.
    pub fn new(
        backend: Arc<dyn Backend>,
        state_dir: &std::path::Path,
        policy: Policy,
        leases: Leases,
    ) -> ApiResult<Arc<Self>> {
        let store = StateStore::open(state_dir)?;
        let exe = self_exe()?;
        let manager = Arc::new(Self {
            backend,
            store,
            policy,
            events: EventLog::default(),
            exe,
            registry: Mutex::new(Registry {
                leases,
                ..Registry::default()
            }),
            // Exec ids stay unique across restarts: a reattached supervisor
            // may still run execs numbered by the previous daemon.
            next_exec: AtomicU64::new(u64::try_from(now_ms()).unwrap_or(1) << 20),
            reattach: Mutex::new(Vec::new()),
        });
        manager.load_previous()?;
        Ok(manager)
    }

    /// The backend.
    pub fn backend(&self) -> &dyn Backend {
        self.backend.as_ref()
    }

    /// The request caps.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Records from a previous daemon run. Reattaching to live supervisors is
    /// not implemented yet: a sandbox whose supervisor persisted an exit is
    /// reported with it; any other is reported LOST (exit 255), never as a
    /// false success. Destroy cleans both up.
    fn load_previous(&self) -> ApiResult<()> {
        let (records, orphans) = self.store.load_all()?;
        for id in orphans {
            tracing::warn!(sandbox = %id, "state directory without a readable record; cleaning up");
            if let Ok(dir) = self.store.sandbox_dir(&id) {
                let paths = SandboxPaths {
                    id: id.clone(),
                    dir,
                    ..Default::default()
                };
                if self.backend.cleanup(&paths).is_ok() {
                    let _ = self.store.remove(&id);
                }
            }
        }
        let mut reg = lock(&self.registry);
        let mut pending = Vec::new();
        for mut record in records {
            let paths = SandboxPaths {
                id: record.id.clone(),
                dir: self.store.sandbox_dir(&record.id)?,
                lease: record.lease.clone(),
            };
            if record.destroying {
                // The daemon died during a destroy: finish it.
                tracing::warn!(sandbox = %record.id, "finishing a destroy interrupted by a daemon crash");
                stop_supervisors(
                    &sandboxd_supervisor::sys::find_supervisors(&record.id),
                    &record.id,
                );
                match clean_host(self.backend.as_ref(), &paths) {
                    Ok(()) if self.store.remove(&record.id).is_ok() => {
                        self.events
                            .emit(pb::EventKind::EventDestroyed, &record.id, 0, None);
                        continue;
                    }
                    Ok(()) => {}
                    Err(e) => {
                        tracing::error!(sandbox = %record.id, error = %e, "cleanup failed; the sandbox stays listed, holding its addresses, until a destroy finishes it");
                    }
                }
                // Not clean yet: keep it listed (and its addresses leased)
                // so a destroy can retry.
            }
            if record.state == SandboxState::Creating {
                // The daemon died mid-create: the create never answered, so
                // roll it back — a half-created sandbox is never usable.
                tracing::warn!(sandbox = %record.id, "rolling back a create interrupted by a daemon crash");
                // The record was written before the supervisor started, so it
                // may not know the pid: look for it by command line.
                stop_supervisors(
                    &sandboxd_supervisor::sys::find_supervisors(&record.id),
                    &record.id,
                );
                match clean_host(self.backend.as_ref(), &paths) {
                    Ok(()) => {
                        let _ = self.store.remove(&record.id);
                        continue;
                    }
                    Err(e) => {
                        // What it left may still be configured: keep the
                        // record and its addresses until a destroy (or the
                        // next start) finishes the cleanup.
                        tracing::error!(sandbox = %record.id, error = %e, "cleanup of an interrupted create failed; the sandbox stays listed, holding its addresses, until a destroy finishes it");
                        mark_uncleaned(&mut record, &e.to_string());
                        if let Err(e) = self.store.save(&record) {
                            tracing::error!(sandbox = %record.id, error = %e, "persisting record");
                        }
                    }
                }
            }
            // Still running under its supervisor: reattach once the runtime
            // runs (see reattach). Otherwise the supervisor's persisted exit,
            // or LOST — never an invented success.
            let running = record.exit.is_none()
                && sandboxd_supervisor::sys::is_supervisor(record.supervisor_pid, &record.id);
            let mut outcome = None;
            if record.exit.is_none() && !running {
                let (exit, kind) = match read_exit_file(&paths) {
                    Some(f) => (
                        exit_record(f.exit, f.finished_at_ms, ""),
                        pb::EventKind::EventRecovered,
                    ),
                    None => (
                        lost_exit(
                            "the daemon restarted and the sandbox's supervisor was gone without a persisted exit",
                        ),
                        pb::EventKind::EventLost,
                    ),
                };
                record.exit = Some(exit);
                record.state = SandboxState::Exited;
                self.store.save(&record)?;
                outcome = Some(kind);
            }
            let sb = Arc::new(new_sandbox(paths, record.clone()));
            if running {
                pending.push(sb.clone());
            } else {
                sb.link_closed.send_replace(true);
            }
            if let Some(kind) = outcome {
                self.events.emit(kind, &record.id, 0, None);
            }
            if !record.request_id.is_empty() {
                reg.by_request.insert(
                    (record.owner.clone(), record.request_id.clone()),
                    record.id.clone(),
                );
            }
            // An ended sandbox keeps its addresses until it is destroyed.
            reg.leases.restore(&record.id, &record.lease);
            reg.by_id.insert(record.id.clone(), sb);
        }
        *lock(&self.reattach) = pending;
        Ok(())
    }

    /// Reconnects to the supervisors a previous daemon left running (their
    /// control sockets), emitting RECOVERED or LOST for each, then
    /// RECONCILE_COMPLETE.
    pub async fn reattach(self: &Arc<Self>) {
        let pending = std::mem::take(&mut *lock(&self.reattach));
        for sb in pending {
            let path = sb.paths.dir.join(sandboxd_supervisor::CONTROL_SOCKET);
            match link::connect(&path).await {
                Ok(link) => {
                    let link = Arc::new(link);
                    *lock(&sb.link) = Some(link.clone());
                    tokio::spawn(read_events(self.clone(), sb.clone(), link));
                    tracing::info!(sandbox = %sb.id, "reattached to its supervisor");
                    self.events.emit(
                        pb::EventKind::EventRecovered,
                        &sb.id,
                        sb.record().main_pid,
                        None,
                    );
                }
                Err(e) => {
                    tracing::warn!(sandbox = %sb.id, error = %e, "cannot reattach");
                    sb.link_closed.send_replace(true);
                    let exit = self.exit_after_close(&sb);
                    let lost = exit.reason == ExitReason::Lost;
                    self.finish_with(&sb, exit).await;
                    let kind = if lost {
                        pb::EventKind::EventLost
                    } else {
                        pb::EventKind::EventRecovered
                    };
                    self.events.emit(kind, &sb.id, 0, None);
                }
            }
        }
        self.events
            .emit(pb::EventKind::EventReconcileComplete, "", 0, None);
    }

    /// Plans a spec with this daemon's backend, with the addresses a create
    /// would lease now.
    pub fn plan_local(&self, spec: &ValidatedSpec) -> Plan {
        let (lease, problem) = match self.preview_lease(spec) {
            Ok(lease) => (lease, None),
            Err(e) => (NetLease::default(), Some(e.to_string())),
        };
        let paths = SandboxPaths {
            id: "0000000000000000".into(),
            dir: self.store_path_example(),
            lease,
        };
        let mut plan = self.backend.plan(spec, &paths);
        plan.refusals.extend(problem);
        plan
    }

    /// What a create of `spec` would lease now, without taking it.
    pub fn preview_lease(&self, spec: &ValidatedSpec) -> Result<NetLease, LeaseError> {
        lock(&self.registry).leases.propose(&spec.spec().network)
    }

    /// The sandbox dir a new sandbox would get (for plans).
    pub fn store_path_example(&self) -> PathBuf {
        self.store
            .sandbox_dir("0000000000000000")
            .unwrap_or_default()
    }

    /// Validates a wire spec.
    pub fn validate_spec(&self, spec: Option<pb::SandboxSpec>) -> ApiResult<ValidatedSpec> {
        let spec = convert::spec_from_pb(spec)?;
        Ok(validate::validate(spec, &self.policy)?)
    }

    /// Finds a sandbox by id or name.
    pub fn get(&self, reference: &str) -> ApiResult<Arc<Sandbox>> {
        validate::validate_ref("id", reference)?;
        let reg = lock(&self.registry);
        let found = if validate::is_id(reference) {
            reg.by_id.get(reference).cloned()
        } else {
            reg.by_id
                .values()
                .find(|s| lock(&s.record).spec.name == reference)
                .cloned()
        };
        found.ok_or_else(|| ApiError::NotFound(reference.to_owned()))
    }

    /// Finds a sandbox `who` may see: another identity's is NOT_FOUND, as
    /// if it did not exist.
    pub fn get_for(&self, reference: &str, who: &Caller) -> ApiResult<Arc<Sandbox>> {
        let sb = self.get(reference)?;
        if who.may_see(&lock(&sb.record).owner) {
            Ok(sb)
        } else {
            Err(ApiError::NotFound(reference.to_owned()))
        }
    }

    /// The owner of a live sandbox, or of one destroyed recently (for
    /// filtering its events).
    pub fn owner_of(&self, id: &str) -> Option<String> {
        let reg = lock(&self.registry);
        reg.by_id
            .get(id)
            .map(|s| lock(&s.record).owner.clone())
            .or_else(|| reg.gone_owners.get(id).cloned())
    }

    /// A sandbox as the API shows it: its record, plus current resource use
    /// while it runs.
    pub fn describe(&self, record: &SandboxRecord) -> pb::Sandbox {
        let mut out = convert::record_to_pb(record);
        if record.state == SandboxState::Running {
            if let Ok(dir) = self.store.sandbox_dir(&record.id) {
                let usage = self.backend.usage(&SandboxPaths {
                    id: record.id.clone(),
                    dir,
                    ..Default::default()
                });
                out.usage = Some(convert::usage_to_pb(usage));
            }
        }
        out
    }

    /// Every sandbox, oldest first.
    pub fn list(&self) -> Vec<SandboxRecord> {
        let reg = lock(&self.registry);
        let mut all: Vec<SandboxRecord> = reg.by_id.values().map(|s| s.record()).collect();
        all.sort_by(|a, b| (a.created_at_ms, &a.id).cmp(&(b.created_at_ms, &b.id)));
        all
    }

    /// CreateSandbox. With `verify`, the probe runs after setup and before
    /// the main process starts, and its verification is returned.
    pub async fn create(
        self: &Arc<Self>,
        spec: ValidatedSpec,
        request_id: String,
        who: &Caller,
        verify: bool,
    ) -> ApiResult<(SandboxRecord, Option<Verification>)> {
        let owner = who.name.as_str();
        validate::validate_request_id(&request_id)?;
        if verify
            && self.backend.kind() == sandboxd_core::BackendKind::Linux
            && spec.spec().mode == sandboxd_core::spec::Mode::Init
        {
            return Err(ApiError::FailedPrecondition(
                "verify: INIT mode on the Linux backend cannot be verified before its main process starts (pid 1 becomes the init during setup); create without --verify and call VerifySandbox".into(),
            ));
        }
        if spec.spec().network.mode == sandboxd_core::spec::NetworkMode::Host
            && !self.policy.allow_host_network
        {
            return Err(ApiError::PermissionDenied(
                "spec.network.mode: HOST is not permitted by this daemon's configuration (start it with --allow-host-network)".into(),
            ));
        }
        let (sb, paths) = match self.register(&spec, &request_id, who)? {
            Registered::Existing(existing) => {
                return self
                    .existing_for_request(existing, &spec, &request_id)
                    .await
                    .map(|r| (r, None));
            }
            Registered::New(sb, paths) => (sb, paths),
        };
        // Host fixtures for a verification at create live until Ready.
        let mut options = CreateOptions::default();
        let mut fixtures = None;
        if verify {
            let (config, fx) = crate::verify::prepare(spec.spec(), &paths.lease).await;
            fixtures = Some(fx);
            options.verify = Some(CreateVerify {
                process: crate::verify::probe_process(spec.spec()),
                config,
                report: sb.record().report,
            });
        }
        let started = self.start(&sb, &spec, &paths, &options).await;
        drop(fixtures);
        match started {
            Ok(()) => {
                let record = sb.record();
                tracing::info!(sandbox = %sb.id, owner, image = %record.spec.image, mode = ?record.spec.mode, "created");
                self.events
                    .emit(pb::EventKind::EventCreated, &sb.id, 0, None);
                self.events
                    .emit(pb::EventKind::EventStarted, &sb.id, record.main_pid, None);
                // Only now RUNNING: an exit or a closed channel seen while
                // CREATING was parked, so EXITED always follows STARTED.
                let closed_early = {
                    let mut r = lock(&sb.record);
                    if r.state == SandboxState::Creating {
                        r.state = SandboxState::Running;
                    }
                    sb.closed_early.load(Ordering::SeqCst)
                };
                if let Err(e) = self.save(sb.record()).await {
                    tracing::error!(sandbox = %sb.id, error = %e, "persisting record");
                }
                let pending = lock(&sb.pending_exit).take();
                if let Some(exit) = pending {
                    self.finish_with(&sb, exit).await;
                } else if closed_early {
                    self.finish_with(&sb, self.exit_after_close(&sb)).await;
                }
                let verification = lock(&sb.created_verification).take();
                Ok((sb.record(), verification))
            }
            Err(e) => {
                tracing::warn!(sandbox = %sb.id, error = %e, "create failed; rolling back");
                match self.rollback(&sb).await {
                    Ok(()) => {
                        lock(&self.registry).forget(&sb.id);
                        Err(e)
                    }
                    Err(cleanup) => {
                        self.keep_uncleaned(&sb, &cleanup.to_string()).await;
                        Err(ApiError::CreateNotUndone {
                            error: Box::new(e),
                            id: sb.id.clone(),
                            cleanup: cleanup.to_string(),
                        })
                    }
                }
            }
        }
    }

    /// Under the registry lock: finds the sandbox an earlier request with the
    /// same key made, or checks the name, plans, and registers a new sandbox
    /// in state CREATING (so a concurrent retry finds it).
    fn register(
        &self,
        spec: &ValidatedSpec,
        request_id: &str,
        who: &Caller,
    ) -> ApiResult<Registered> {
        let owner = who.name.as_str();
        let mut reg = lock(&self.registry);
        let key = (owner.to_owned(), request_id.to_owned());
        if !request_id.is_empty() {
            if let Some(id) = reg.by_request.get(&key) {
                return Ok(Registered::Existing(reg.by_id.get(id).cloned()));
            }
        }
        if let Some(max) = who.max_sandboxes {
            let held = reg
                .by_id
                .values()
                .filter(|s| lock(&s.record).owner == owner)
                .count();
            if held >= max {
                return Err(ApiError::ResourceExhausted(format!(
                    "identity {owner:?} holds {held} sandboxes, its quota; destroy one first"
                )));
            }
        }
        let name = &spec.spec().name;
        if !name.is_empty()
            && reg
                .by_id
                .values()
                .any(|s| &lock(&s.record).spec.name == name)
        {
            return Err(ApiError::AlreadyExists(format!(
                "a sandbox named {name:?} already exists"
            )));
        }
        let id = new_id()?;
        let mut paths = SandboxPaths {
            id: id.clone(),
            dir: self.store.sandbox_dir(&id)?,
            ..Default::default()
        };
        let plan = self.backend.plan(spec, &paths);
        if !plan.refusals.is_empty() {
            return Err(ApiError::Backend(sandboxd_core::BackendError::Refused(
                plan.refusals,
            )));
        }
        // Addresses only where the backend really gives RESTRICTED (a
        // PREFERRED request it cannot honour leases nothing).
        let mut plan = plan;
        if gets_restricted_network(spec, &plan) {
            let lease = reg.leases.propose(&spec.spec().network)?;
            check_host_ports(spec, &lease)?;
            reg.leases.restore(&id, &lease);
            paths.lease = lease;
            plan = self.backend.plan(spec, &paths);
        }
        let record = SandboxRecord {
            id: id.clone(),
            owner: owner.to_owned(),
            request_id: request_id.to_owned(),
            spec: spec.spec().clone(),
            report: plan.report,
            state: SandboxState::Creating,
            supervisor_pid: 0,
            main_pid: 0,
            exit: None,
            created_at_ms: now_ms(),
            lease: paths.lease.clone(),
            destroying: false,
        };
        let sb = Arc::new(new_sandbox(paths.clone(), record));
        if !request_id.is_empty() {
            reg.by_request.insert(key, id.clone());
        }
        reg.by_id.insert(id, sb.clone());
        Ok(Registered::New(sb, paths))
    }

    async fn existing_for_request(
        &self,
        existing: Option<Arc<Sandbox>>,
        spec: &ValidatedSpec,
        request_id: &str,
    ) -> ApiResult<SandboxRecord> {
        let sb = existing.ok_or_else(|| {
            ApiError::Aborted(format!("request_id {request_id:?} is being retried"))
        })?;
        if &sb.record().spec != spec.spec() {
            return Err(ApiError::AlreadyExists(format!(
                "request_id {request_id:?} was already used for a different spec (sandbox {})",
                sb.id
            )));
        }
        // A concurrent create with the same key may still be setting up.
        let mut link_closed = sb.link_closed.subscribe();
        for _ in 0..(SETUP_TIMEOUT.as_millis() / 20) {
            let record = sb.record();
            if record.state != SandboxState::Creating {
                return Ok(record);
            }
            if *link_closed.borrow_and_update() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let record = sb.record();
        if record.state == SandboxState::Creating {
            return Err(ApiError::Aborted(format!(
                "the create with request_id {request_id:?} did not complete"
            )));
        }
        Ok(record)
    }

    /// Writes the record, starts the supervisor and waits for Ready.
    async fn start(
        self: &Arc<Self>,
        sb: &Arc<Sandbox>,
        spec: &ValidatedSpec,
        paths: &SandboxPaths,
        options: &CreateOptions,
    ) -> ApiResult<()> {
        fault::check(fault::REGISTERED)?;
        let (backend, store, spec2, paths2, record) = (
            self.backend.clone(),
            self.store.clone(),
            spec.clone(),
            paths.clone(),
            sb.record(),
        );
        let config = tokio::task::spawn_blocking(move || -> ApiResult<Vec<u8>> {
            store.create_sandbox_dir(&paths2.id)?;
            fault::check(fault::STATE_DIR)?;
            // The CREATING record is the journal: a crash from here on is
            // rolled back at the next start by cleanup(), which finds the
            // host-side resources by the id.
            store.save(&record)?;
            fault::check(fault::RECORD)?;
            backend.prepare(&spec2, &paths2)?;
            let config = backend.launch_config(&spec2, &paths2)?;
            fault::check(fault::LAUNCH_CONFIG)?;
            Ok(config)
        })
        .await
        .map_err(|e| ApiError::Internal(format!("create task: {e}")))??;

        let (ready_tx, ready_rx) = oneshot::channel();
        *lock(&sb.ready) = Some(ready_tx);
        let (child, link) = link::spawn(&self.exe, &sb.id, &config, options)
            .await
            .map_err(|e| ApiError::Internal(format!("starting supervisor for {}: {e}", sb.id)))?;
        let supervisor_pid = child.id().and_then(|p| i32::try_from(p).ok()).unwrap_or(0);
        let link = Arc::new(link);
        *lock(&sb.link) = Some(link.clone());
        *lock(&sb.child) = Some(child);
        lock(&sb.record).supervisor_pid = supervisor_pid;
        tokio::spawn(read_events(self.clone(), sb.clone(), link));
        fault::check(fault::SUPERVISOR)?;

        let main_pid = match tokio::time::timeout(SETUP_TIMEOUT, ready_rx).await {
            Ok(Ok(Ok(pid))) => pid,
            Ok(Ok(Err((step, message)))) => return Err(ApiError::SetupFailed { step, message }),
            Ok(Err(_)) => {
                return Err(ApiError::SetupFailed {
                    step: "start supervisor".into(),
                    message: "the supervisor exited before reporting".into(),
                });
            }
            Err(_) => {
                return Err(ApiError::Unavailable(format!(
                    "sandbox setup did not finish within {SETUP_TIMEOUT:?}"
                )));
            }
        };
        lock(&sb.record).main_pid = main_pid.unwrap_or(0);
        fault::check(fault::READY)?;
        Ok(())
    }

    /// Undoes a failed create: supervisor gone, host clean, record gone.
    /// Err when the host could not be cleaned: the caller must then keep
    /// the sandbox (and its addresses), see [`Self::keep_uncleaned`].
    async fn rollback(&self, sb: &Arc<Sandbox>) -> ApiResult<()> {
        self.shutdown_supervisor(sb).await;
        self.cleanup_host(sb, None).await.inspect_err(|e| {
            tracing::error!(sandbox = %sb.id, error = %e, "cleanup after a failed create; the sandbox stays listed, holding its addresses, until a destroy finishes it");
        })
    }

    /// A failed create whose host cleanup failed too: what it left (an
    /// address on an interface, routes, firewall rules) may still be
    /// configured, so it stays registered, EXITED and marked for destroy,
    /// with its addresses leased: nothing else can be given them. A
    /// destroy, or the next daemon start (the `destroying` journal),
    /// finishes the cleanup and only then releases them.
    async fn keep_uncleaned(&self, sb: &Arc<Sandbox>, why: &str) {
        let record = {
            let mut r = lock(&sb.record);
            mark_uncleaned(&mut r, why);
            r.clone()
        };
        // A retry with the same request_id is a new create, not this one.
        lock(&self.registry).by_request.retain(|_, v| *v != sb.id);
        let store = self.store.clone();
        let saved = tokio::task::spawn_blocking(move || -> ApiResult<()> {
            // The create may have failed before its directory existed.
            store.create_sandbox_dir(&record.id)?;
            store.save(&record)?;
            Ok(())
        })
        .await
        .map_err(|e| ApiError::Internal(format!("save task: {e}")))
        .and_then(|r| r);
        if let Err(e) = saved {
            tracing::error!(sandbox = %sb.id, error = %e, "persisting the record of an uncleaned create");
        }
        sb.exit_tx.send_replace(lock(&sb.record).exit.clone());
    }

    async fn save(&self, record: SandboxRecord) -> ApiResult<()> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.save(&record))
            .await
            .map_err(|e| ApiError::Internal(format!("save task: {e}")))??;
        Ok(())
    }

    /// Asks the supervisor to kill everything and exit, and waits for it;
    /// SIGKILLs it (our own child, by its handle) if it does not.
    async fn shutdown_supervisor(&self, sb: &Arc<Sandbox>) {
        let mut closed = sb.link_closed.subscribe();
        if let Some(link) = sb.link() {
            if !*closed.borrow() {
                let _ = link.send(&Request::Shutdown, &[]).await;
                let done = tokio::time::timeout(SHUTDOWN_TIMEOUT, closed.wait_for(|c| *c)).await;
                if done.is_err() {
                    tracing::error!(sandbox = %sb.id, "supervisor did not shut down in time; killing it");
                }
            }
        }
        let child = lock(&sb.child).take();
        if child.is_none() {
            self.stop_detached_supervisor(sb).await;
        }
        if let Some(mut child) = child {
            // Reap it (it has exited, or is killed now).
            if tokio::time::timeout(Duration::from_secs(1), child.wait())
                .await
                .is_err()
            {
                let _ = child.start_kill();
                let _ = child.wait().await;
            }
        }
    }

    /// A supervisor a previous daemon started (no channel to it): SIGTERM
    /// asks it for the same clean shutdown, after checking by its command
    /// line that the pid is still that supervisor.
    async fn stop_detached_supervisor(&self, sb: &Arc<Sandbox>) {
        let pid = sb.record().supervisor_pid;
        if pid <= 0 || !sandboxd_supervisor::sys::is_supervisor(pid, &sb.id) {
            return;
        }
        tracing::info!(sandbox = %sb.id, pid, "stopping a supervisor left by a previous daemon");
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        );
        let deadline = tokio::time::Instant::now() + SHUTDOWN_TIMEOUT;
        while sandboxd_supervisor::sys::is_supervisor(pid, &sb.id)
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn cleanup_host(&self, sb: &Arc<Sandbox>, step: Option<&'static str>) -> ApiResult<()> {
        let (backend, store, paths) = (self.backend.clone(), self.store.clone(), sb.paths.clone());
        tokio::task::spawn_blocking(move || -> ApiResult<()> {
            // Only once nothing is mounted under the sandbox dir may it be
            // deleted: cleanup() proves that or fails.
            clean_host(backend.as_ref(), &paths)?;
            if let Some(step) = step {
                fault::check(step)?;
            }
            store.remove(&paths.id)?;
            Ok(())
        })
        .await
        .map_err(|e| ApiError::Internal(format!("cleanup task: {e}")))?
    }

    /// StopSandbox.
    pub async fn stop(
        &self,
        sb: &Arc<Sandbox>,
        grace: Duration,
        signal: Option<i32>,
    ) -> ApiResult<SandboxRecord> {
        let _op = sb.op.lock().await;
        let mut exit_rx = sb.exit_tx.subscribe();
        if exit_rx.borrow().is_some() {
            return Ok(sb.record());
        }
        let link = sb
            .link()
            .ok_or_else(|| ApiError::Unavailable(format!("sandbox {} has no supervisor", sb.id)))?;
        let sig =
            signal.unwrap_or_else(|| i32::try_from(sb.record().spec.stop_signal).unwrap_or(15));
        lock(&sb.record).state = SandboxState::Stopping;
        tracing::info!(sandbox = %sb.id, signal = sig, "stopping");
        let send = |sig| {
            let link = link.clone();
            async move { link.send(&Request::Stop { signal: sig }, &[]).await }
        };
        send(sig)
            .await
            .map_err(|e| ApiError::Unavailable(format!("signalling the supervisor: {e}")))?;
        if tokio::time::timeout(grace, exit_rx.wait_for(Option::is_some))
            .await
            .is_err()
        {
            let _ = send(libc::SIGKILL).await;
            if tokio::time::timeout(SHUTDOWN_TIMEOUT, exit_rx.wait_for(Option::is_some))
                .await
                .is_err()
            {
                return Err(ApiError::Unavailable(format!(
                    "sandbox {} did not stop after SIGKILL",
                    sb.id
                )));
            }
        }
        Ok(sb.record())
    }

    /// DestroySandbox. Returns whether it existed.
    pub async fn destroy(&self, reference: &str) -> ApiResult<bool> {
        let sb = match self.get(reference) {
            Ok(sb) => sb,
            Err(ApiError::NotFound(_)) => return Ok(false),
            Err(e) => return Err(e),
        };
        let _op = sb.op.lock().await;
        if !lock(&self.registry).by_id.contains_key(&sb.id) {
            return Ok(false); // destroyed by a concurrent call
        }
        // The journal: from here a crash is rolled forward at the next start.
        lock(&sb.record).destroying = true;
        self.save(sb.record()).await?;
        fault::check(fault::DESTROY_MARKED)?;
        self.shutdown_supervisor(&sb).await;
        fault::check(fault::DESTROY_STOPPED)?;
        if sb.exit_tx.borrow().is_none() {
            self.finish(&sb, ProcessExit::Signaled(libc::SIGKILL), "destroyed")
                .await;
        }
        self.cleanup_host(&sb, Some(fault::DESTROY_CLEANED)).await?;
        {
            lock(&self.registry).forget(&sb.id);
        }
        tracing::info!(sandbox = %sb.id, "destroyed");
        self.events
            .emit(pb::EventKind::EventDestroyed, &sb.id, 0, None);
        Ok(true)
    }

    /// WaitSandbox.
    pub async fn wait(&self, sb: &Arc<Sandbox>) -> ExitRecord {
        let mut rx = sb.exit_tx.subscribe();
        loop {
            if let Some(exit) = rx.borrow_and_update().clone() {
                return exit;
            }
            if rx.changed().await.is_err() {
                // Unreachable while we hold the Arc (the sender lives in it).
                return lost_exit("sandbox removed while waiting");
            }
        }
    }

    /// Starts an exec in a running sandbox.
    pub async fn exec(
        &self,
        sb: &Arc<Sandbox>,
        process: ValidatedProcess,
        size: Option<(u16, u16)>,
    ) -> ApiResult<ExecHandle> {
        let record = sb.record();
        if record.state != SandboxState::Running {
            return Err(ApiError::FailedPrecondition(format!(
                "sandbox {} is not running (state {:?})",
                sb.id, record.state
            )));
        }
        self.backend.check_exec(&record.spec, process.process())?;
        let link = sb
            .link()
            .ok_or_else(|| ApiError::Unavailable(format!("sandbox {} has no supervisor", sb.id)))?;
        let process: ProcessSpec = process.process().clone();
        let io_err = |what: &str, e: nix::Error| ApiError::Internal(format!("{what}: {e}"));
        let (ours, theirs): (ExecStdio, Vec<OwnedFd>) = if process.tty {
            let (rows, cols) = size.unwrap_or((24, 80));
            let pty =
                sandboxd_supervisor::sys::openpty(rows, cols).map_err(|e| io_err("openpty", e))?;
            let replica = pty.replica;
            let copies = [replica.try_clone(), replica.try_clone()]
                .into_iter()
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| ApiError::Internal(format!("dup pty: {e}")))?;
            let mut fds = vec![replica];
            fds.extend(copies);
            (ExecStdio::Pty { master: pty.master }, fds)
        } else {
            let pipe =
                || nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| io_err("pipe", e));
            let (in_r, in_w) = pipe()?;
            let (out_r, out_w) = pipe()?;
            let (err_r, err_w) = pipe()?;
            (
                ExecStdio::Pipes {
                    stdin: in_w,
                    stdout: out_r,
                    stderr: err_r,
                },
                vec![in_r, out_w, err_w],
            )
        };
        let exec_id = self.next_exec.fetch_add(1, Ordering::Relaxed);
        let (started_tx, started_rx) = oneshot::channel();
        let (exited_tx, exited_rx) = oneshot::channel();
        lock(&sb.execs).insert(
            exec_id,
            ExecSlot {
                started: Some(started_tx),
                exited: Some(exited_tx),
                pid: 0,
            },
        );
        let borrowed: Vec<_> = theirs.iter().map(AsFd::as_fd).collect();
        let sent = link
            .send(&Request::Exec { exec_id, process }, &borrowed)
            .await;
        drop(borrowed);
        // The supervisor has its own copies now; ours must close so EOF
        // reaches the reader when the process exits.
        drop(theirs);
        if let Err(e) = sent {
            lock(&sb.execs).remove(&exec_id);
            return Err(ApiError::Unavailable(format!(
                "sending exec to the supervisor: {e}"
            )));
        }
        let pid = match started_rx.await {
            Ok(Ok(pid)) => pid,
            Ok(Err((step, message))) => {
                return Err(ApiError::FailedPrecondition(format!(
                    "exec failed at step {step:?}: {message}"
                )));
            }
            Err(_) => {
                return Err(ApiError::Unavailable(
                    "the supervisor exited before starting the process".into(),
                ));
            }
        };
        self.events
            .emit(pb::EventKind::EventExecStarted, &sb.id, pid, None);
        Ok(ExecHandle {
            pid,
            exec_id,
            stdio: ours,
            exited: exited_rx,
        })
    }

    /// VerifySandbox: runs the probe in a running sandbox (through its
    /// supervisor) against fresh host fixtures and compares what it saw
    /// with the sandbox's isolation report.
    pub async fn verify(&self, sb: &Arc<Sandbox>) -> ApiResult<Verification> {
        let record = sb.record();
        if record.state != SandboxState::Running {
            return Err(ApiError::FailedPrecondition(format!(
                "sandbox {} is not running (state {:?}): only a running sandbox can be verified",
                sb.id, record.state
            )));
        }
        let link = sb
            .link()
            .ok_or_else(|| ApiError::Unavailable(format!("sandbox {} has no supervisor", sb.id)))?;
        let (config, fixtures) = crate::verify::prepare(&record.spec, &record.lease).await;
        let probe_id = self.next_exec.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        lock(&sb.verifies).insert(probe_id, tx);
        let request = Request::Verify {
            probe_id,
            process: crate::verify::probe_process(&record.spec),
            config: Box::new(config),
        };
        if let Err(e) = link.send(&request, &[]).await {
            lock(&sb.verifies).remove(&probe_id);
            return Err(ApiError::Unavailable(format!(
                "sending the probe to the supervisor: {e}"
            )));
        }
        let result = tokio::time::timeout(VERIFY_TIMEOUT, rx).await;
        lock(&sb.verifies).remove(&probe_id);
        drop(fixtures);
        let output = match result {
            Ok(Ok(Ok(output))) => output,
            Ok(Ok(Err(message))) => {
                return Err(ApiError::Unavailable(format!(
                    "the probe could not run in sandbox {}: {message}",
                    sb.id
                )));
            }
            Ok(Err(_)) => {
                return Err(ApiError::Unavailable(format!(
                    "the supervisor of sandbox {} exited before the probe finished",
                    sb.id
                )));
            }
            Err(_) => {
                return Err(ApiError::Unavailable(format!(
                    "the probe did not finish within {VERIFY_TIMEOUT:?}"
                )));
            }
        };
        tracing::info!(sandbox = %sb.id, elapsed_ms = output.elapsed_ms, "verified");
        Ok(sandboxd_core::verify::evaluate(&record.report, &output))
    }

    /// Emits the exec-exited event and converts the exit.
    pub fn exec_finished(
        &self,
        sb: &Sandbox,
        pid: i32,
        (exit, oom_killed): ExecEnd,
        timed_out: bool,
    ) -> ExitRecord {
        let mut record = exit_record(exit, now_ms(), "");
        if oom_killed {
            record.reason = ExitReason::OomKilled;
            record.message = "killed by the OOM killer under the sandbox's memory limit".into();
        } else if timed_out {
            record.reason = ExitReason::Timeout;
            record.message = "killed by the ExecSync timeout".into();
        }
        self.events.emit(
            pb::EventKind::EventExecExited,
            &sb.id,
            pid,
            Some(convert::exit_to_pb(&record)),
        );
        record
    }

    /// Sends a signal to a process of the sandbox or an exec's tree.
    pub async fn signal(
        &self,
        sb: &Arc<Sandbox>,
        target: SignalTarget,
        signal: i32,
    ) -> ApiResult<()> {
        if !(1..=64).contains(&signal) {
            return Err(ApiError::Invalid(validate::ValidationError::one(
                "signal",
                format!("{signal} is not a signal number (1-64)"),
            )));
        }
        if let SignalTarget::Pid(pid) = target {
            let record = sb.record();
            let known = (record.main_pid == pid && record.exit.is_none())
                || lock(&sb.execs).values().any(|slot| slot.pid == pid);
            if !known {
                return Err(ApiError::NotFound(format!(
                    "pid {pid} is not a running process of sandbox {}",
                    sb.id
                )));
            }
        }
        let link = sb
            .link()
            .ok_or_else(|| ApiError::Unavailable(format!("sandbox {} has no supervisor", sb.id)))?;
        link.send(&Request::Signal { target, signal }, &[])
            .await
            .map_err(|e| ApiError::Unavailable(format!("signalling the supervisor: {e}")))
    }

    /// Records the end of a sandbox.
    async fn finish(&self, sb: &Arc<Sandbox>, exit: ProcessExit, message: &str) {
        let exit = exit_record(exit, now_ms(), message);
        self.finish_with(sb, exit).await;
    }

    async fn finish_with(&self, sb: &Arc<Sandbox>, exit: ExitRecord) {
        let record = {
            let mut r = lock(&sb.record);
            if r.exit.is_some() {
                return;
            }
            if r.state == SandboxState::Creating {
                *lock(&sb.pending_exit) = Some(exit);
                return;
            }
            r.state = SandboxState::Exited;
            r.exit = Some(exit.clone());
            r.clone()
        };
        if let Err(e) = self.save(record).await {
            tracing::error!(sandbox = %sb.id, error = %e, "persisting exit");
        }
        tracing::info!(sandbox = %sb.id, reason = ?exit.reason, code = exit.code, "exited");
        self.events.emit(
            pb::EventKind::EventExited,
            &sb.id,
            0,
            Some(convert::exit_to_pb(&exit)),
        );
        sb.exit_tx.send_replace(Some(exit));
    }

    /// Dispatches one supervisor event.
    async fn on_event(&self, sb: &Arc<Sandbox>, event: Event) {
        match event {
            Event::Ready {
                main_pid,
                verification,
            } => {
                *lock(&sb.created_verification) = verification.map(|v| *v);
                if let Some(tx) = lock(&sb.ready).take() {
                    let _ = tx.send(Ok(main_pid));
                }
            }
            Event::SetupFailed { step, message } => {
                if let Some(tx) = lock(&sb.ready).take() {
                    let _ = tx.send(Err((step, message)));
                }
            }
            Event::ExecStarted { exec_id, pid } => {
                if let Some(slot) = lock(&sb.execs).get_mut(&exec_id) {
                    slot.pid = pid;
                    if let Some(tx) = slot.started.take() {
                        let _ = tx.send(Ok(pid));
                    }
                }
            }
            Event::ExecFailed {
                exec_id,
                step,
                message,
            } => {
                if let Some(mut slot) = lock(&sb.execs).remove(&exec_id) {
                    if let Some(tx) = slot.started.take() {
                        let _ = tx.send(Err((step, message)));
                    }
                }
            }
            Event::ExecExited {
                exec_id,
                exit,
                oom_killed,
            } => {
                if let Some(mut slot) = lock(&sb.execs).remove(&exec_id) {
                    if let Some(tx) = slot.exited.take() {
                        let _ = tx.send((exit, oom_killed));
                    }
                }
            }
            Event::SandboxExited { exit, oom_killed } => {
                // An exit during setup (main exited at once) is still an exit.
                let mut record = exit_record(exit, now_ms(), "");
                if oom_killed {
                    record.reason = ExitReason::OomKilled;
                    record.message =
                        "killed by the OOM killer under the sandbox's memory limit".into();
                }
                self.finish_with(sb, record).await;
            }
            Event::SignalFailed { target, message } => {
                tracing::warn!(sandbox = %sb.id, ?target, %message, "signal not delivered");
            }
            Event::VerifyResult {
                probe_id,
                output,
                error,
            } => {
                if let Some(tx) = lock(&sb.verifies).remove(&probe_id) {
                    let result = match (output, error) {
                        (Some(o), _) => Ok(*o),
                        (None, e) => Err(e.unwrap_or_else(|| "no result".into())),
                    };
                    let _ = tx.send(result);
                }
            }
            Event::ShutdownComplete | Event::Attached { .. } => {}
        }
    }

    /// The supervisor's channel closed: it exited.
    async fn on_link_closed(&self, sb: &Arc<Sandbox>) {
        if let Some(tx) = lock(&sb.ready).take() {
            let _ = tx.send(Err((
                "supervisor".into(),
                "exited before the sandbox was ready".into(),
            )));
        }
        lock(&sb.execs).clear(); // dropping the senders fails every waiter
        lock(&sb.verifies).clear();
        let creating = {
            let r = lock(&sb.record);
            let creating = r.state == SandboxState::Creating;
            if creating {
                sb.closed_early.store(true, Ordering::SeqCst);
            }
            creating
        };
        if !creating && sb.exit_tx.borrow().is_none() {
            self.finish_with(sb, self.exit_after_close(sb)).await;
        }
        // Last: whoever waits for this (destroy) may now delete the state.
        sb.link_closed.send_replace(true);
    }

    /// The exit of a sandbox whose supervisor is gone: what it persisted, or
    /// LOST — never a made-up success.
    fn exit_after_close(&self, sb: &Sandbox) -> ExitRecord {
        if let Some(exit) = lock(&sb.pending_exit).take() {
            return exit;
        }
        read_exit_file(&sb.paths).map_or_else(
            || lost_exit("the supervisor exited without reporting the sandbox's end"),
            |f| exit_record(f.exit, f.finished_at_ms, ""),
        )
    }
}

/// Reads a sandbox's supervisor events until it closes the channel.
async fn read_events(manager: Arc<Manager>, sb: Arc<Sandbox>, link: Arc<Link>) {
    let mut decoder = Decoder::default();
    loop {
        match link.recv(&mut decoder).await {
            Ok(events) if events.is_empty() => break,
            Ok(events) => {
                for ev in events {
                    manager.on_event(&sb, ev).await;
                }
            }
            Err(e) => {
                tracing::error!(sandbox = %sb.id, error = %e, "supervisor channel failed");
                break;
            }
        }
    }
    manager.on_link_closed(&sb).await;
    // Reap the helper so it never lingers as a zombie.
    let child = lock(&sb.child).take();
    if let Some(mut child) = child {
        let _ = child.wait().await;
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
        ready: Mutex::new(None),
        execs: Mutex::new(HashMap::new()),
        child: Mutex::new(None),
        pending_exit: Mutex::new(None),
        closed_early: std::sync::atomic::AtomicBool::new(false),
        op: tokio::sync::Mutex::new(()),
        verifies: Mutex::new(HashMap::new()),
        created_verification: Mutex::new(None),
    }
}

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

/// The backend's host cleanup of a sandbox (with the test-only
/// [`fault::CLEANUP`] point in front of it).
fn clean_host(backend: &dyn Backend, paths: &SandboxPaths) -> ApiResult<()> {
    fault::check(fault::CLEANUP)?;
    backend.cleanup(paths)?;
    Ok(())
}

/// Marks a create that could not be undone: EXITED (setup failed, saying
/// why), journaled for destroy, its request id dropped so a retry is a
/// new create. Its lease stays in the record.
fn mark_uncleaned(record: &mut SandboxRecord, why: &str) {
    record.state = SandboxState::Exited;
    if record.exit.is_none() {
        record.exit = Some(ExitRecord {
            reason: ExitReason::SetupFailed,
            code: 255,
            signal: 0,
            message: format!(
                "the create failed and so did its host cleanup ({why}); destroy the sandbox to finish the cleanup and release its addresses"
            ),
            finished_at_ms: now_ms(),
        });
    }
    record.destroying = true;
    record.request_id.clear();
}

fn read_exit_file(paths: &SandboxPaths) -> Option<ExitFile> {
    let bytes = std::fs::read(paths.dir.join("exit.json")).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Asks the supervisor processes a previous daemon started for sandbox `id`
/// to shut down (SIGTERM; each pid is checked by its command line first),
/// and waits (bounded) for all of them to go. Used at start-up, before the
/// runtime serves anything.
fn stop_supervisors(pids: &[i32], id: &str) {
    let alive = |pid: i32| pid > 0 && sandboxd_supervisor::sys::is_supervisor(pid, id);
    for pid in pids.iter().copied().filter(|p| alive(*p)) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
    let deadline = std::time::Instant::now() + SHUTDOWN_TIMEOUT;
    while pids.iter().any(|p| alive(*p)) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A fresh sandbox id: 16 hex characters from the kernel's CSPRNG.
/// Whether the backend's report gives this spec a RESTRICTED network (and
/// so needs addresses).
fn gets_restricted_network(spec: &ValidatedSpec, plan: &Plan) -> bool {
    spec.spec().network.mode == sandboxd_core::spec::NetworkMode::Restricted
        && plan
            .report
            .get(sandboxd_core::Property::Network)
            .is_some_and(|row| row.level != sandboxd_core::Level::NotEnforced)
}

/// A forwarded host port must not be one a host process listens on: the
/// forward would silently take its traffic. (A probe, not a reservation.)
fn check_host_ports(spec: &ValidatedSpec, lease: &NetLease) -> ApiResult<()> {
    for (i, (protocol, port)) in lease.ports.iter().enumerate() {
        let addr = std::net::SocketAddr::from(([0, 0, 0, 0], *port));
        let probe = match protocol {
            Protocol::Tcp => std::net::TcpListener::bind(addr).map(drop),
            Protocol::Udp => std::net::UdpSocket::bind(addr).map(drop),
        };
        if let Err(e) = probe {
            let field = spec
                .spec()
                .network
                .port_forwards
                .iter()
                .position(|f| f.protocol == *protocol && f.host_port == u32::from(*port))
                .unwrap_or(i);
            return Err(ApiError::FailedPrecondition(format!(
                "spec.network.port_forwards[{field}].host_port: {port}/{} cannot be forwarded: binding it on the host failed ({e}); a host process probably uses it",
                protocol.as_str()
            )));
        }
    }
    Ok(())
}

fn new_id() -> ApiResult<String> {
    use std::io::Read;
    let mut bytes = [0u8; 8];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| ApiError::Internal(format!("reading /dev/urandom: {e}")))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
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

/// One term of a label selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SelectorTerm {
    /// `key=value`.
    Equals(String, String),
    /// `key!=value` (also matches when the key is absent).
    NotEquals(String, String),
    /// `key`: the label is present.
    Exists(String),
}

/// Parses a label selector: comma-separated `k=v`, `k!=v` or `k` terms.
pub fn parse_selector(selector: &str) -> ApiResult<Vec<SelectorTerm>> {
    let key_ok = |k: &str| {
        !k.is_empty()
            && k.chars()
                .all(|c| c.is_ascii_alphanumeric() || "._/-".contains(c))
    };
    selector
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|term| {
            let parsed = if let Some((k, v)) = term.split_once("!=") {
                SelectorTerm::NotEquals(k.trim().to_owned(), v.trim().to_owned())
            } else if let Some((k, v)) = term.split_once('=') {
                SelectorTerm::Equals(k.trim().to_owned(), v.trim().to_owned())
            } else {
                SelectorTerm::Exists(term.to_owned())
            };
            let key = match &parsed {
                SelectorTerm::Equals(k, _)
                | SelectorTerm::NotEquals(k, _)
                | SelectorTerm::Exists(k) => k,
            };
            if key_ok(key) {
                Ok(parsed)
            } else {
                Err(ApiError::Invalid(validate::ValidationError::one(
                    "label_selector",
                    format!("{term:?} is not key=value, key!=value or key"),
                )))
            }
        })
        .collect()
}

/// Whether a spec's labels satisfy every term.
pub fn matches_selector(spec: &SandboxSpec, terms: &[SelectorTerm]) -> bool {
    terms.iter().all(|t| match t {
        SelectorTerm::Equals(k, v) => spec.labels.get(k) == Some(v),
        SelectorTerm::NotEquals(k, v) => spec.labels.get(k) != Some(v),
        SelectorTerm::Exists(k) => spec.labels.contains_key(k),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors() {
        let mut spec = SandboxSpec::default();
        spec.labels.insert("team".into(), "a".into());
        let cases: &[(&str, Option<bool>)] = &[
            ("", Some(true)),
            ("team=a", Some(true)),
            ("team=b", Some(false)),
            ("team!=b", Some(true)),
            ("team", Some(true)),
            ("other", Some(false)),
            ("team=a, other!=x", Some(true)),
            ("(", None),
            ("=a", None),
        ];
        for (sel, want) in cases {
            let got = parse_selector(sel)
                .ok()
                .map(|t| matches_selector(&spec, &t));
            assert_eq!(got, *want, "{sel}");
        }
    }
}
