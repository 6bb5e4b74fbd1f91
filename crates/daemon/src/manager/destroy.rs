//! StopSandbox and DestroySandbox, and the supervisor shutdown and host
//! cleanup they share with a failed create.

use std::sync::Arc;
use std::time::Duration;

use sandboxd_core::Backend;
use sandboxd_core::backend::SandboxPaths;
use sandboxd_core::fault;
use sandboxd_core::store::{SandboxRecord, SandboxState};
use sandboxd_core::wire::{ProcessExit, Request};

use super::{Manager, SHUTDOWN_TIMEOUT, Sandbox, SupervisorChild, lock};
use crate::error::{ApiError, ApiResult};
use crate::events::EventKind;
use crate::steptime::StepTimer;

impl Manager {
    /// Asks the supervisor to kill everything and exit, and waits for it;
    /// SIGKILLs it (our own child, by its handle) if it does not.
    pub(super) async fn shutdown_supervisor(&self, sb: &Arc<Sandbox>) {
        send_shutdown(sb).await;
        self.reap_supervisor(sb).await;
    }

    /// Waits for a supervisor that was asked to shut down to exit (its
    /// channel closing), at most [`SHUTDOWN_TIMEOUT`], and reaps it; kills
    /// it (our own child, by its handle) if it does not.
    async fn reap_supervisor(&self, sb: &Arc<Sandbox>) {
        let mut closed = sb.link_closed.subscribe();
        if sb.link().is_some()
            && tokio::time::timeout(SHUTDOWN_TIMEOUT, closed.wait_for(|c| *c))
                .await
                .is_err()
        {
            tracing::error!(sandbox = %sb.id, "supervisor did not shut down in time; killing it");
        }
        match sb.take_child() {
            SupervisorChild::Ours(mut child) => {
                // Reap it (it has exited, or is killed now).
                if tokio::time::timeout(Duration::from_secs(1), child.wait())
                    .await
                    .is_err()
                {
                    let _ = child.start_kill();
                    let _ = child.wait().await;
                }
                sb.reaped_by_taker();
            }
            // Our own, reaped by its event reader now that its channel
            // closed: it has exited or is exiting, so wait for that rather
            // than take it for a previous daemon's.
            SupervisorChild::Reaping => {
                let mut reaped = sb.reaped.subscribe();
                if tokio::time::timeout(SHUTDOWN_TIMEOUT, reaped.wait_for(|r| *r))
                    .await
                    .is_err()
                {
                    tracing::error!(sandbox = %sb.id, "supervisor was not reaped in time");
                }
            }
            SupervisorChild::NotOurs => self.stop_detached_supervisor(sb).await,
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

    pub(super) async fn cleanup_host(
        &self,
        sb: &Arc<Sandbox>,
        step: Option<&'static str>,
    ) -> ApiResult<()> {
        let (backend, store, paths) = (self.backend.clone(), self.store.clone(), sb.paths.clone());
        tokio::task::spawn_blocking(move || -> ApiResult<()> {
            let began = std::time::Instant::now();
            // Only once nothing is mounted under the sandbox dir may it be
            // deleted: cleanup() proves that or fails.
            clean_host(backend.as_ref(), &paths)?;
            if let Some(step) = step {
                fault::check(step)?;
            }
            let cleaned = began.elapsed();
            // Not synced, and the directory deleted off this path: see
            // StateStore::remove_unsynced (docs/ARCHITECTURE.md). On the
            // blocking pool the daemon already has, not a thread per
            // destroy (each new thread would get its own malloc arena).
            if let Some(trashed) = store.remove_unsynced(&paths.id)? {
                tokio::task::spawn_blocking(move || store.retire(&trashed));
            }
            // The two halves of the destroy's last step (see steptime).
            tracing::debug!(
                sandbox = %paths.id,
                cleanup_us = u64::try_from(cleaned.as_micros()).unwrap_or(u64::MAX),
                remove_us = u64::try_from((began.elapsed() - cleaned).as_micros()).unwrap_or(u64::MAX),
                "host cleanup and record removal"
            );
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
    pub async fn destroy(self: &Arc<Self>, reference: &str) -> ApiResult<bool> {
        let sb = match self.get(reference) {
            Ok(sb) => sb,
            Err(ApiError::NotFound(_)) => return Ok(false),
            Err(e) => return Err(e),
        };
        let mut timer = StepTimer::new("destroy", &sb.id);
        let _op = sb.op.lock().await;
        let children = {
            let reg = lock(&self.registry);
            if !reg.by_id.contains_key(&sb.id) {
                return Ok(false); // destroyed by a concurrent call
            }
            let mut children: Vec<String> = reg
                .by_id
                .values()
                .filter(|s| {
                    lock(&s.record)
                        .spec
                        .join
                        .as_ref()
                        .is_some_and(|j| j.sandbox_id == sb.id)
                })
                .map(|s| s.id.clone())
                .collect();
            children.sort();
            children
        };
        // Their namespaces are its own: Kubernetes (and the shim) delete a
        // pod's containers before the pod, so refusing loses nothing.
        if !children.is_empty() {
            return Err(ApiError::FailedPrecondition(format!(
                "sandbox {} has child sandboxes (spec.join): {}; destroy them first",
                sb.id,
                children.join(", ")
            )));
        }
        timer.mark("lookup, lock");
        // The journal: from here a crash is rolled forward at the next start.
        // Not synced (as a create's CREATING record, and as the removal at
        // the end): a power loss ends the sandbox anyway.
        lock(&sb.record).destroying = true;
        self.save_record(&sb, false).await?;
        fault::check(fault::DESTROY_MARKED)?;
        timer.mark("journal destroying");
        if sb.link().is_some() && lock(&sb.record).lease.is_empty() {
            send_shutdown(&sb).await;
            if self.until_dead(&sb).await {
                fault::check(fault::DESTROY_STOPPED)?;
                timer.mark("kill everything (until the exit)");
                self.forget_destroyed(&sb);
                timer.mark("forget");
                self.tear_down_later(sb.clone(), timer);
                return Ok(true);
            }
            // It had its SHUTDOWN_TIMEOUT already: not another one below.
            tracing::error!(sandbox = %sb.id, "supervisor did not report the sandbox's end in time; killing it");
            kill_supervisor(&sb).await;
        }
        self.shutdown_supervisor(&sb).await;
        fault::check(fault::DESTROY_STOPPED)?;
        timer.mark("shut the supervisor down (kill, teardown, reap)");
        if sb.exit_tx.borrow().is_none() {
            self.finish(&sb, ProcessExit::Signaled(libc::SIGKILL), super::DESTROYED)
                .await;
            timer.mark("record the exit");
        }
        self.cleanup_host(&sb, Some(fault::DESTROY_CLEANED)).await?;
        timer.mark("host cleanup, remove record");
        self.forget_destroyed(&sb);
        timer.finish();
        Ok(true)
    }

    /// Waits, at most [`SHUTDOWN_TIMEOUT`], until every process of a
    /// sandbox whose supervisor was asked to shut down is dead: the
    /// supervisor says so with the exit it reports before its teardown
    /// (where the backend can tell), or it is gone (after its teardown).
    /// Records SIGKILL if the supervisor reported no exit.
    async fn until_dead(&self, sb: &Arc<Sandbox>) -> bool {
        let mut dead = sb.dead.subscribe();
        let dead = tokio::time::timeout(SHUTDOWN_TIMEOUT, dead.wait_for(|d| *d))
            .await
            .is_ok();
        if dead && sb.exit_tx.borrow().is_none() {
            self.finish(sb, ProcessExit::Signaled(libc::SIGKILL), super::DESTROYED)
                .await;
        }
        dead
    }

    /// The sandbox is gone for the API: unlisted, its name and quota free,
    /// its Destroyed event out.
    fn forget_destroyed(&self, sb: &Arc<Sandbox>) {
        {
            lock(&self.registry).forget(&sb.id);
            self.metrics.forget_sandbox(&sb.id);
        }
        tracing::info!(sandbox = %sb.id, "destroyed");
        self.events.emit(EventKind::Destroyed, &sb.id, 0, None);
    }

    /// The rest of a destroy, which nothing the caller can observe through
    /// the API waits for: the supervisor's teardown (its namespaces and
    /// cgroups) and exit, then the host cleanup and the record's removal.
    /// The record is marked for destruction, so a daemon that dies first
    /// finishes it at its next start; the daemon's own shutdown waits for
    /// it ([`Manager::teardowns_pending`]). Only for a sandbox that holds
    /// no lease: an address or host port must be free when destroy
    /// returns, for the create that may follow.
    fn tear_down_later(self: &Arc<Self>, sb: Arc<Sandbox>, mut timer: StepTimer) {
        let pending = self.teardowns.start();
        let manager = self.clone();
        tokio::spawn(async move {
            let _pending = pending;
            manager.reap_supervisor(&sb).await;
            timer.mark("after the reply: supervisor teardown and exit");
            match manager
                .cleanup_host(&sb, Some(fault::DESTROY_CLEANED))
                .await
            {
                Ok(()) => timer.mark("after the reply: host cleanup, remove record"),
                // Left marked for destruction: the next start finishes it.
                Err(e) => {
                    tracing::error!(sandbox = %sb.id, error = %e, "destroy: host cleanup failed; the next start retries it");
                }
            }
            timer.finish();
        });
    }
}

/// SIGKILLs the supervisor (our own child, by its handle) and reaps it; its
/// pid 1 dies with it (parent-death signal), and the host cleanup ends the
/// rest.
async fn kill_supervisor(sb: &Sandbox) {
    if let SupervisorChild::Ours(mut child) = sb.take_child() {
        let _ = child.start_kill();
        let _ = child.wait().await;
        sb.reaped_by_taker();
    }
}

/// Asks the supervisor to kill everything and exit, if its channel is open.
async fn send_shutdown(sb: &Sandbox) {
    if let Some(link) = sb.link() {
        if !*sb.link_closed.borrow() {
            let _ = link.send(&Request::Shutdown, &[]).await;
        }
    }
}

/// The backend's host cleanup of a sandbox (with the test-only
/// [`fault::CLEANUP`] point in front of it).
pub(super) fn clean_host(backend: &dyn Backend, paths: &SandboxPaths) -> ApiResult<()> {
    fault::check(fault::CLEANUP)?;
    backend.cleanup(paths)?;
    Ok(())
}
