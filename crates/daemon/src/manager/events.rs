//! The per-sandbox event loop: one task reads a supervisor's events and
//! updates the record, the event log and whoever waits.
//!
//! Event order for one sandbox (the log, `crate::events`, keeps the order
//! of emission; this is what the manager emits in it):
//! - CREATED then STARTED come first: they are emitted before the record
//!   turns RUNNING, and Exec needs RUNNING. An exit or a closed channel
//!   seen while the record is CREATING is parked (`pending_exit`,
//!   `closed_early`) and applied after them. A create that fails emits
//!   nothing.
//! - EXITED at most once (`Manager::finish_with` does nothing once an
//!   exit is recorded), and before DESTROYED: destroy waits (bounded) for
//!   the supervisor's channel to close, which this loop reports only after
//!   handling every event before it, and records an exit itself if none
//!   came.
//! - EXEC_STARTED follows STARTED; EXEC_EXITED follows its EXEC_STARTED
//!   and may come after the sandbox's EXITED or DESTROYED (an exec's
//!   output drains after its process ends).
//! - After a restart: each sandbox found gets one RECOVERED or LOST (a
//!   failed reattach emits its EXITED just before), or DESTROYED when an
//!   interrupted destroy is finished, and then one RECONCILE_COMPLETE. A
//!   reattached sandbox's RECOVERED is emitted before its event loop
//!   starts, so what it reports follows.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use sandboxd_core::store::{ExitReason, ExitRecord, SandboxState};
use sandboxd_core::wire::{Decoder, Event, ProcessExit, Request};
use sandboxd_supervisor::now_ms;

use super::{
    DESTROYED, Manager, Sandbox, SupervisorChild, exit_record, lock, lost_exit, read_exit_file,
};
use crate::events::EventKind;
use crate::link::Link;

impl Manager {
    /// Records the end of a sandbox.
    pub(super) async fn finish(&self, sb: &Arc<Sandbox>, exit: ProcessExit, message: &str) {
        let exit = exit_record(exit, now_ms(), message);
        self.finish_with(sb, exit).await;
    }

    pub(super) async fn finish_with(&self, sb: &Arc<Sandbox>, exit: ExitRecord) {
        self.finish_recording(sb, exit, false).await;
    }

    /// [`Self::finish_with`]; with `tell_supervisor`, once the exit is in
    /// the journal and before anyone waiting hears of it, the supervisor
    /// that reported it is told (`ExitRecorded`), so it writes no exit
    /// file. One of an older protocol is not.
    pub(super) async fn finish_recording(
        &self,
        sb: &Arc<Sandbox>,
        exit: ExitRecord,
        tell_supervisor: bool,
    ) {
        let destroying = {
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
            r.destroying
        };
        // A sandbox being destroyed has nothing to persist: its record is
        // removed next, and a daemon that dies first rolls the destroy
        // forward whatever the exit (its supervisor, shutting down, waits
        // for no ExitRecorded).
        let saved = if destroying {
            Ok(())
        } else {
            self.save_record(sb, true).await
        };
        match saved {
            Ok(()) if tell_supervisor && !destroying => {
                if let Some(link) = sb.link() {
                    let _ = link.send(&Request::ExitRecorded, &[]).await;
                }
            }
            Ok(()) => {}
            Err(e) => tracing::error!(sandbox = %sb.id, error = %e, "persisting exit"),
        }
        tracing::info!(sandbox = %sb.id, reason = ?exit.reason, code = exit.code, "exited");
        self.events
            .emit(EventKind::Exited, &sb.id, 0, Some(exit.clone()));
        sb.exit_tx.send_replace(Some(exit));
    }

    /// Dispatches one supervisor event.
    async fn on_event(&self, sb: &Arc<Sandbox>, event: Event) {
        match event {
            Event::Ready {
                main_pid,
                verification,
                steps,
                init_pid,
            } => {
                lock(&sb.record).init_pid = init_pid.unwrap_or(0);
                *lock(&sb.created_verification) = verification.map(|v| *v);
                if let Some(tx) = lock(&sb.ready).take() {
                    let _ = tx.send(Ok((main_pid, steps)));
                }
            }
            Event::SetupFailed { step, message } => {
                if let Some(tx) = lock(&sb.ready).take() {
                    let _ = tx.send(Err((step, message)));
                }
            }
            Event::ExecStarted { exec_id, pid, pty } => {
                // Taken whether or not anyone waits, so the queue stays in
                // step with the events.
                let master = if pty {
                    sb.link().and_then(|l| l.take_fd())
                } else {
                    None
                };
                if let Some(slot) = lock(&sb.execs).get_mut(&exec_id) {
                    slot.pid = pid;
                    if let Some(tx) = slot.started.take() {
                        let _ = tx.send(Ok((pid, master)));
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
                let slot = lock(&sb.execs).remove(&exec_id);
                match slot {
                    Some(mut slot) => {
                        if let Some(tx) = slot.exited.take() {
                            let _ = tx.send((exit, oom_killed));
                        }
                    }
                    // An exec of a previous daemon (its record came with
                    // Attached): nobody waits on a slot, record it here.
                    None => {
                        if let Some(r) = sb.exec_record(exec_id).filter(|r| r.exit.is_none()) {
                            self.exec_finished(sb, (exec_id, r.pid), (exit, oom_killed), false);
                        }
                    }
                }
            }
            Event::SandboxExited {
                exit,
                oom_killed,
                none_left,
            } => {
                // An exit during setup (main exited at once) is still an exit.
                // One reported during a destroy is the destroy's kill.
                let cause = if lock(&sb.record).destroying {
                    DESTROYED
                } else {
                    ""
                };
                let mut record = exit_record(exit, now_ms(), cause);
                if oom_killed {
                    record.reason = ExitReason::OomKilled;
                    record.message =
                        "killed by the OOM killer under the sandbox's memory limit".into();
                }
                self.finish_recording(sb, record, true).await;
                if none_left {
                    sb.dead.send_replace(true);
                }
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
            Event::Attached {
                execs, init_pid, ..
            } => {
                if let Some(pid) = init_pid {
                    lock(&sb.record).init_pid = pid;
                }
                // A restarted daemon learns the execs still running, so their
                // records (InspectExec, WaitExec, SignalExec) survive it, and
                // so do the exec caps: each holds a slot, charged to the
                // sandbox's owner (who started it is not recorded), until
                // its record has an exit.
                let owner = lock(&sb.record).owner.clone();
                let mut table = lock(&sb.exec_records);
                for e in execs {
                    if table.get(e.exec_id).is_none() {
                        let slot = self.exec_slots.charge(&sb.id, &owner);
                        let (sb, exec_id) = (sb.clone(), e.exec_id);
                        tokio::spawn(async move {
                            sb.wait_exec(exec_id).await;
                            drop(slot);
                        });
                        table.insert(super::ExecRecord {
                            exec_id: e.exec_id,
                            pid: e.pid,
                            argv: e.argv,
                            tty: e.tty,
                            detached: e.detached,
                            started_at_ms: e.started_at_ms,
                            exit: None,
                        });
                    }
                }
            }
            Event::ShutdownComplete => {}
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
        lock(&sb.exec_records).lose_running(&super::lost_exit(
            "the supervisor exited while the process ran",
        ));
        sb.exec_done.send_modify(|n| *n += 1);
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
            // A destroy's Shutdown, answered by a supervisor that reports no
            // end (one from before it did): the destroy killed everything,
            // and that is the exit, not LOST.
            let exit = if lock(&sb.record).destroying {
                exit_record(ProcessExit::Signaled(libc::SIGKILL), now_ms(), DESTROYED)
            } else {
                self.exit_after_close(sb)
            };
            self.finish_with(sb, exit).await;
        }
        // Last: whoever waits for this (destroy) may now delete the state.
        sb.dead.send_replace(true);
        sb.link_closed.send_replace(true);
    }

    /// The exit of a sandbox whose supervisor is gone: what it persisted, or
    /// LOST — never a made-up success.
    pub(super) fn exit_after_close(&self, sb: &Sandbox) -> ExitRecord {
        if let Some(exit) = lock(&sb.pending_exit).take() {
            return exit;
        }
        read_exit_file(&sb.paths).map_or_else(
            || lost_exit("the supervisor exited without reporting the sandbox's end"),
            |f| exit_record(f.exit, f.finished_at_ms, ""),
        )
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
}

/// Reads a sandbox's supervisor events until it closes the channel.
pub(super) async fn read_events(manager: Arc<Manager>, sb: Arc<Sandbox>, link: Arc<Link>) {
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
    // Reap the helper so it never lingers as a zombie (unless a destroy
    // took it first and reaps it).
    if let SupervisorChild::Ours(mut child) = sb.take_child() {
        let _ = child.wait().await;
        sb.reaped_by_taker();
    }
}
