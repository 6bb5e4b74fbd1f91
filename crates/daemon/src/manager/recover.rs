//! Start-up recovery: what a previous daemon left (records, supervisors,
//! interrupted creates and destroys) is rolled back, rolled forward or
//! reattached.

use std::sync::Arc;
use std::time::Duration;

use sandboxd_core::backend::SandboxPaths;
use sandboxd_core::store::{ExitReason, SandboxState};

use super::create::mark_uncleaned;
use super::destroy::clean_host;
use super::events::read_events;
use super::{Manager, SHUTDOWN_TIMEOUT, exit_record, lock, lost_exit, new_sandbox, read_exit_file};
use crate::error::ApiResult;
use crate::events::EventKind;
use crate::link;

impl Manager {
    /// Records from a previous daemon run. An interrupted destroy is
    /// finished and an interrupted create rolled back; a sandbox whose
    /// supervisor still runs is queued for [`Self::reattach`]; one whose
    /// supervisor is gone is reported with the exit it persisted, or LOST
    /// (exit 255), never as a false success. Destroy cleans those up.
    pub(super) fn load_previous(&self) -> ApiResult<()> {
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
                parent: None,
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
                        self.events.emit(EventKind::Destroyed, &record.id, 0, None);
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
                        EventKind::Recovered,
                    ),
                    None => (
                        lost_exit(
                            "the daemon restarted and the sandbox's supervisor was gone without a persisted exit",
                        ),
                        EventKind::Lost,
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
            match connect_supervisor(&sb).await {
                Ok(link) => {
                    let link = Arc::new(link);
                    *lock(&sb.link) = Some(link.clone());
                    tracing::info!(sandbox = %sb.id, "reattached to its supervisor");
                    // Before its event loop starts, so an exit it reports
                    // comes after RECOVERED.
                    self.events
                        .emit(EventKind::Recovered, &sb.id, sb.record().main_pid, None);
                    tokio::spawn(read_events(self.clone(), sb.clone(), link));
                }
                Err(e) => {
                    tracing::warn!(sandbox = %sb.id, error = %e, "cannot reattach");
                    sb.link_closed.send_replace(true);
                    let exit = self.exit_after_close(&sb);
                    let lost = exit.reason == ExitReason::Lost;
                    self.finish_with(&sb, exit).await;
                    let kind = if lost {
                        EventKind::Lost
                    } else {
                        EventKind::Recovered
                    };
                    self.events.emit(kind, &sb.id, 0, None);
                }
            }
        }
        self.events.emit(EventKind::ReconcileComplete, "", 0, None);
    }
}

/// How long a restarted daemon waits for a live supervisor to bind its
/// control socket, which it does once it has seen the previous daemon's
/// channel close: a daemon restarted at once may look first.
const ATTACH_WAIT: Duration = Duration::from_secs(5);

/// Connects to `sb`'s supervisor through its control socket, retrying while
/// the socket is not there yet (or not listening) and the supervisor runs.
async fn connect_supervisor(sb: &super::Sandbox) -> std::io::Result<link::Link> {
    let path = sb.paths.dir.join(sandboxd_supervisor::CONTROL_SOCKET);
    let deadline = std::time::Instant::now() + ATTACH_WAIT;
    loop {
        match link::connect(&path).await {
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
                ) && std::time::Instant::now() < deadline
                    && sandboxd_supervisor::sys::is_supervisor(
                        sb.record().supervisor_pid,
                        &sb.id,
                    ) =>
            {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            other => return other,
        }
    }
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
