//! CreateSandbox: register (under the registry lock), journal, prepare
//! the host, start the supervisor and wait for Ready; or roll back.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use sandboxd_core::backend::{ParentProcs, SandboxPaths};
use sandboxd_core::fault;
use sandboxd_core::net::{LeaseError, NetLease};
use sandboxd_core::spec::Protocol;
use sandboxd_core::store::{ExitReason, ExitRecord, SandboxRecord, SandboxState};
use sandboxd_core::validate;
use sandboxd_core::verify::Verification;
use sandboxd_core::wire::{CreateOptions, CreateVerify};
use sandboxd_core::{Plan, ValidatedSpec};
use sandboxd_supervisor::now_ms;
use tokio::sync::oneshot;

use super::events::read_events;
use super::{Manager, SETUP_TIMEOUT, Sandbox, SupervisorChild, lock, new_sandbox};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::events::EventKind;
use crate::link;
use crate::steptime::StepTimer;

/// What [`Manager::register`] found or made.
enum Registered {
    /// The sandbox of an earlier request with the same key (None if it is
    /// being rolled back).
    Existing(Option<Arc<Sandbox>>),
    /// A new sandbox in state CREATING.
    New(Arc<Sandbox>, SandboxPaths),
}

impl Manager {
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
            parent: None,
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
        let mut timer = StepTimer::new("create", "");
        validate::validate_request_id(&request_id)?;
        // A child: its parent is held (no stop or destroy of it) until
        // the child is registered and set up, so a destroy of the parent
        // sees the child.
        let (spec, parent, _parent_op) = match spec.spec().join.clone() {
            Some(join) => {
                let (spec, parent, op) = self.find_parent(spec, &join.sandbox_id, who).await?;
                (spec, Some(parent), Some(op))
            }
            None => (spec, None, None),
        };
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
        // NAMESPACE: opened and checked before anything is registered, so a
        // refusal leaves nothing behind; the supervisor gets the descriptor.
        let netns = self.open_given_netns(&spec)?;
        let (sb, paths) = match self.register(&spec, &request_id, who, parent)? {
            Registered::Existing(existing) => {
                return self
                    .existing_for_request(existing, &spec, &request_id)
                    .await
                    .map(|r| (r, None));
            }
            Registered::New(sb, paths) => (sb, paths),
        };
        timer.sandbox(&sb.id);
        timer.mark("register (plan, lease)");
        // Host fixtures for a verification at create live until Ready.
        let mut options = CreateOptions::default();
        let mut fixtures = None;
        if verify {
            let (config, fx) = crate::verify::prepare(
                spec.spec(),
                &paths.lease,
                &self.policy.allowed_netns_sources,
            )
            .await;
            fixtures = Some(fx);
            options.verify = Some(CreateVerify {
                process: crate::verify::probe_process(spec.spec()),
                config,
                report: sb.record().report,
            });
        }
        let started = self
            .start(&sb, &spec, &paths, &options, netns, &mut timer)
            .await;
        drop(fixtures);
        match started {
            Ok(()) => {
                let main_pid = {
                    let r = lock(&sb.record);
                    tracing::info!(sandbox = %sb.id, owner, image = %r.spec.image, mode = ?r.spec.mode, "created");
                    r.main_pid
                };
                self.events.emit(EventKind::Created, &sb.id, 0, None);
                self.events.emit(EventKind::Started, &sb.id, main_pid, None);
                // Only now RUNNING: an exit or a closed channel seen while
                // CREATING was parked, so EXITED always follows STARTED.
                let closed_early = {
                    let mut r = lock(&sb.record);
                    if r.state == SandboxState::Creating {
                        r.state = SandboxState::Running;
                    }
                    sb.closed_early.load(Ordering::SeqCst)
                };
                // Not synced, like the CREATING record: a daemon crash keeps
                // the page cache, and a power loss ends the sandbox anyway
                // (after one, a sandbox created just before it may be rolled
                // back as CREATING instead of listed EXITED). Its exit, the
                // state that outlives the sandbox, is saved durably.
                if let Err(e) = self.save_record(&sb, false).await {
                    tracing::error!(sandbox = %sb.id, error = %e, "persisting record");
                }
                timer.mark("save RUNNING record");
                let pending = lock(&sb.pending_exit).take();
                if let Some(exit) = pending {
                    // Parked by SandboxExited during the create (a main
                    // process that ended at once): its supervisor, if still
                    // there, waits for ExitRecorded before it exits.
                    self.finish_recording(&sb, exit, true).await;
                } else if closed_early {
                    self.finish_with(&sb, self.exit_after_close(&sb)).await;
                }
                let verification = lock(&sb.created_verification).take();
                timer.finish();
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

    /// A child's (`spec.join`) parent: visible to the caller (NOT_FOUND),
    /// owned by the same identity (PERMISSION_DENIED: an admin may see
    /// another identity's sandbox, not put a child into it), RUNNING with
    /// a known pid 1 (FAILED_PRECONDITION), not itself a child, and with a
    /// network mode the child's agrees with (INVALID_ARGUMENT; the child
    /// gets the parent's). Returns the spec with the parent's network mode
    /// filled in, the parent's processes and its held `op` lock.
    async fn find_parent(
        &self,
        spec: ValidatedSpec,
        parent_id: &str,
        who: &Caller,
    ) -> ApiResult<(ValidatedSpec, ParentProcs, tokio::sync::OwnedMutexGuard<()>)> {
        let parent = self.get_for(parent_id, who)?;
        let owner = parent.record().owner;
        if owner != who.name {
            return Err(ApiError::PermissionDenied(format!(
                "spec.join.sandbox_id: sandbox {parent_id} belongs to identity {owner:?}; a child must belong to its parent's identity"
            )));
        }
        let op = parent.op.clone().lock_owned().await;
        let record = parent.record();
        if record.state != SandboxState::Running || record.destroying {
            return Err(ApiError::FailedPrecondition(format!(
                "spec.join.sandbox_id: sandbox {parent_id} is {:?}, not RUNNING; only a running sandbox can have children",
                record.state
            )));
        }
        if record.init_pid <= 0 || record.supervisor_pid <= 0 {
            // A backend without namespaces (chroot, FreeBSD) says why in
            // its plan.
            let plan = self.plan_local(&spec);
            if !plan.refusals.is_empty() {
                return Err(ApiError::Backend(sandboxd_core::BackendError::Refused(
                    plan.refusals,
                )));
            }
            return Err(ApiError::FailedPrecondition(format!(
                "spec.join.sandbox_id: sandbox {parent_id} has no known pid 1 whose namespaces a child could join (its backend has none, or an older daemon started it)"
            )));
        }
        let spec = validate::join_parent(spec, parent_id, &record.spec)?;
        let procs = ParentProcs {
            id: parent_id.to_owned(),
            init_pid: record.init_pid,
            supervisor_pid: record.supervisor_pid,
        };
        Ok((spec, procs, op))
    }

    /// Under the registry lock: finds the sandbox an earlier request with the
    /// same key made, or checks the name, plans, and registers a new sandbox
    /// in state CREATING (so a concurrent retry finds it).
    fn register(
        &self,
        spec: &ValidatedSpec,
        request_id: &str,
        who: &Caller,
        parent: Option<ParentProcs>,
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
            parent,
            ..Default::default()
        };
        // The one assessment of this create (a plan without its display
        // translation): its refusals, whether it needs
        // addresses, and the report the record keeps (which does not depend
        // on the lease, see Backend::plan). The backend builds the
        // executable plan, with the lease, once more in prepare().
        let plan = self.backend.assess(spec, &paths);
        if !plan.refusals.is_empty() {
            return Err(ApiError::Backend(sandboxd_core::BackendError::Refused(
                plan.refusals,
            )));
        }
        // Addresses only where the backend really gives RESTRICTED (a
        // PREFERRED request it cannot honour leases nothing).
        if gets_restricted_network(spec, &plan) {
            let lease = reg.leases.propose(&spec.spec().network)?;
            check_host_ports(spec, &lease)?;
            reg.leases.restore(&id, &lease);
            paths.lease = lease;
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
            init_pid: 0,
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
        netns: Option<std::os::fd::OwnedFd>,
        timer: &mut StepTimer,
    ) -> ApiResult<()> {
        fault::check(fault::REGISTERED)?;
        let (backend, store, spec2, paths2, record) = (
            self.backend.clone(),
            self.store.clone(),
            spec.clone(),
            paths.clone(),
            sb.record(),
        );
        let mut t = std::mem::replace(timer, StepTimer::new("create", &sb.id));
        let (link, theirs) = link::pair()
            .map_err(|e| ApiError::Internal(format!("the supervisor channel of {}: {e}", sb.id)))?;
        let link = Arc::new(link);
        // The supervisor is forked while the record is written: it creates
        // nothing until its launch configuration, sent below once the
        // CREATING record is in the journal, without waiting for the fork's
        // reply (it waits in the channel for the supervisor to read it).
        let started = link::spawn(&self.exe, self.zygote.as_ref(), &sb.id, theirs);
        let written = tokio::task::spawn_blocking(move || -> ApiResult<_> {
            t.mark("to blocking thread");
            store.create_sandbox_dir(&paths2.id)?;
            fault::check(fault::STATE_DIR)?;
            t.mark("state dir");
            // The CREATING record is the journal: a crash from here on is
            // rolled back at the next start by cleanup(), which finds the
            // host-side resources by the id. Not synced: it matters after a
            // daemon crash (the page cache survives), not after a power
            // loss, which ends the sandbox and its host side anyway; the
            // RUNNING record's sync covers it.
            store.save_unsynced(&record)?;
            fault::check(fault::RECORD)?;
            t.mark("journal CREATING record");
            let prepared = backend.prepare(&spec2, &paths2)?;
            fault::check(fault::LAUNCH_CONFIG)?;
            t.mark("backend prepare");
            Ok((prepared, t))
        });
        let configured = async {
            // Closed once sent (the supervisor has its copy).
            let netns = netns;
            let (prepared, mut t) = written
                .await
                .map_err(|e| ApiError::Internal(format!("create task: {e}")))??;
            // The NAMESPACE sandbox's given namespace, or what the backend
            // prepared (never both: the backend adds a network namespace
            // only where pid 1 would make one).
            let fds: Vec<_> = netns
                .iter()
                .chain(&prepared.fds)
                .map(std::os::fd::AsFd::as_fd)
                .collect();
            link.send_launch(&prepared.config, options, &fds)
                .await
                .map_err(|e| {
                    ApiError::Internal(format!("configuring supervisor for {}: {e}", sb.id))
                })?;
            t.mark("send launch configuration");
            Ok::<_, ApiError>(t)
        };
        let (ready_tx, ready_rx) = oneshot::channel();
        *lock(&sb.ready) = Some(ready_tx);
        let (started, configured) = tokio::join!(started, configured);
        // Held by the sandbox, its events read, before anything can fail:
        // a rollback shuts it down and reaps it.
        match started {
            Ok(child) => {
                let supervisor_pid = child.id().and_then(|p| i32::try_from(p).ok()).unwrap_or(0);
                *lock(&sb.link) = Some(link.clone());
                *lock(&sb.child) = SupervisorChild::Ours(child);
                lock(&sb.record).supervisor_pid = supervisor_pid;
                tokio::spawn(read_events(self.clone(), sb.clone(), link.clone()));
            }
            Err(e) => {
                return Err(ApiError::Internal(format!(
                    "starting supervisor for {}: {e}",
                    sb.id
                )));
            }
        }
        *timer = configured?;
        fault::check(fault::SUPERVISOR)?;
        timer.mark("supervisor forked (meanwhile)");

        let main_pid = match tokio::time::timeout(SETUP_TIMEOUT, ready_rx).await {
            Ok(Ok(Ok((pid, steps)))) => {
                timer.mark("supervisor setup (until Ready)");
                timer.nested("supervisor", &steps);
                pid
            }
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

    /// Mode NAMESPACE on the Linux backend: the given network namespace,
    /// opened below an allowed netns source and checked (`crate::netns`).
    /// A child sharing its parent's network opens nothing (it joins the
    /// parent's pid 1's); another backend refuses the mode in its plan.
    fn open_given_netns(&self, spec: &ValidatedSpec) -> ApiResult<Option<std::os::fd::OwnedFd>> {
        let s = spec.spec();
        if s.network.mode != sandboxd_core::spec::NetworkMode::Namespace
            || s.join.as_ref().is_some_and(|j| j.network)
            || self.backend.kind() != sandboxd_core::BackendKind::Linux
        {
            return Ok(None);
        }
        crate::netns::open(
            &s.network.namespace_path,
            &self.policy.allowed_netns_sources,
        )
        .map(Some)
        .map_err(crate::netns::NetnsError::into_api)
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
}

/// Marks a create that could not be undone: EXITED (setup failed, saying
/// why), journaled for destroy, its request id dropped so a retry is a
/// new create. Its lease stays in the record.
pub(super) fn mark_uncleaned(record: &mut SandboxRecord, why: &str) {
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

/// Whether the backend's report gives this spec a RESTRICTED network (and
/// so needs addresses).
/// A child sharing its parent's network has the parent's addresses.
fn gets_restricted_network(spec: &ValidatedSpec, plan: &Plan) -> bool {
    spec.spec().network.mode == sandboxd_core::spec::NetworkMode::Restricted
        && !spec.spec().join.as_ref().is_some_and(|j| j.network)
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

/// A fresh sandbox id: 16 hex characters from the kernel's CSPRNG.
fn new_id() -> ApiResult<String> {
    use std::io::Read;
    let mut bytes = [0u8; 8];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| ApiError::Internal(format!("reading /dev/urandom: {e}")))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::expect_used)]

    use sandboxd_core::capability::BackendKind;
    use sandboxd_core::spec::{
        NetworkMode, NetworkPolicy, PortForward, ProcessSpec, Requirement, SandboxSpec,
    };

    use super::*;

    /// register() plans once, before leasing, and keeps that plan's report:
    /// every backend's report must be the same with and without the lease.
    #[test]
    fn reports_do_not_depend_on_the_lease() {
        let ip = |s: &str| s.parse::<std::net::IpAddr>().expect("ip");
        let dir = PathBuf::from("/var/lib/sandboxd/sandboxes/0123456789abcdef");
        let unleased = SandboxPaths {
            id: "0123456789abcdef".into(),
            dir: dir.clone(),
            ..Default::default()
        };
        let leased = SandboxPaths {
            lease: NetLease {
                addresses: vec![ip("203.0.113.2"), ip("2001:db8::2")],
                gateways: vec![ip("203.0.113.1"), ip("2001:db8::1")],
                ports: vec![(Protocol::Tcp, 8080)],
            },
            ..unleased.clone()
        };
        let images = PathBuf::from("/var/lib/sandboxd/images");
        for requirement in [Requirement::Required, Requirement::Preferred] {
            let spec = validate::validate(
                SandboxSpec {
                    process: ProcessSpec {
                        argv: vec!["/bin/true".into()],
                        ..Default::default()
                    },
                    network: NetworkPolicy {
                        mode: NetworkMode::Restricted,
                        requirement,
                        outbound_nat: true,
                        port_forwards: vec![PortForward {
                            protocol: Protocol::Tcp,
                            host_port: 8080,
                            sandbox_port: 80,
                        }],
                        ..NetworkPolicy::default()
                    },
                    ..Default::default()
                },
                &sandboxd_core::Policy::default(),
            )
            .expect("valid spec");
            let plan = |kind, paths: &SandboxPaths| match kind {
                BackendKind::Linux => sandboxd_backend_linux::plan::plan(
                    &spec,
                    paths,
                    &sandboxd_backend_linux::plan::HostFacts::assumed(),
                ),
                BackendKind::Freebsd => sandboxd_backend_freebsd::plan::plan(
                    &spec,
                    paths,
                    &sandboxd_backend_freebsd::plan::HostFacts::assumed(),
                ),
                BackendKind::Chroot => sandboxd_backend_chroot::plan::plan(
                    &spec,
                    paths,
                    &images,
                    &sandboxd_backend_chroot::plan::HostFacts::assumed(),
                ),
            };
            for kind in [
                BackendKind::Linux,
                BackendKind::Freebsd,
                BackendKind::Chroot,
            ] {
                assert_eq!(
                    plan(kind, &unleased).report,
                    plan(kind, &leased).report,
                    "{kind:?}, {requirement:?}"
                );
            }
        }
    }
}
