//! The event log behind WatchEvents: every lifecycle event gets the next
//! revision, the last [`RETAIN`] are kept for resuming clients, and live
//! subscribers get them through a broadcast channel. The events are the
//! daemon's own type; the service converts them to wire messages.
//!
//! Ordering guarantees (WatchEvents promises them to clients):
//! - Revisions are strictly increasing from 1 and gapless per daemon run:
//!   [`EventLog::emit`] numbers, retains and broadcasts under one lock, so
//!   the order of revisions is the order of emission.
//! - A subscriber's replay and its live feed meet without a gap or a
//!   duplicate ([`EventLog::subscribe`] takes the same lock).
//! - The order of one sandbox's events is the manager's to keep; it is
//!   stated in `manager/events.rs`.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

use sandboxd_core::store::ExitRecord;
use tokio::sync::broadcast;

use crate::error::ApiError;

/// How many events are retained for replay.
pub const RETAIN: usize = 4096;

/// Retained events to replay, and the live feed after them.
pub type Subscription = (Vec<Arc<Event>>, broadcast::Receiver<Arc<Event>>);

/// What happened (the wire's `EventKind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// A sandbox was created (set up, not yet running its process).
    Created,
    /// Its main process (or IDLE supervisor) started.
    Started,
    /// An Exec/ExecSync process started.
    ExecStarted,
    /// An Exec/ExecSync process ended.
    ExecExited,
    /// The sandbox ended.
    Exited,
    /// The sandbox was destroyed.
    Destroyed,
    /// After a restart: reattached, or found ended with a persisted exit.
    Recovered,
    /// After a restart: the supervisor is gone without a persisted exit.
    Lost,
    /// After a restart: every sandbox has been reconciled.
    ReconcileComplete,
}

/// One event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Strictly increasing per daemon, starting at 1.
    pub revision: u64,
    /// What happened.
    pub kind: EventKind,
    /// The sandbox it happened to (empty for daemon-wide events).
    pub sandbox_id: String,
    /// Host pid, for STARTED/EXEC_STARTED/EXEC_EXITED (else 0).
    pub pid: i32,
    /// Exit result, for EXEC_EXITED/EXITED.
    pub exit: Option<ExitRecord>,
    /// When, in milliseconds since the Unix epoch.
    pub time_ms: i64,
}

/// The log.
#[derive(Debug)]
pub struct EventLog {
    inner: Mutex<Inner>,
    tx: broadcast::Sender<Arc<Event>>,
}

#[derive(Debug)]
struct Inner {
    next: u64,
    retained: VecDeque<Arc<Event>>,
}

impl Default for EventLog {
    fn default() -> Self {
        Self {
            inner: Mutex::new(Inner {
                next: 1,
                retained: VecDeque::with_capacity(RETAIN),
            }),
            tx: broadcast::channel(RETAIN).0,
        }
    }
}

impl EventLog {
    /// Records and publishes one event.
    pub fn emit(&self, kind: EventKind, sandbox_id: &str, pid: i32, exit: Option<ExitRecord>) {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let event = Arc::new(Event {
            revision: inner.next,
            kind,
            sandbox_id: sandbox_id.to_owned(),
            pid,
            exit,
            time_ms: sandboxd_supervisor::now_ms(),
        });
        inner.next += 1;
        if inner.retained.len() == RETAIN {
            inner.retained.pop_front();
        }
        inner.retained.push_back(event.clone());
        // Sent under the lock so a subscriber's replay and live stream meet
        // without a gap or a duplicate. No receivers is fine.
        let _ = self.tx.send(event);
    }

    /// Retained events after `after`, plus a receiver for everything later.
    pub fn subscribe(&self, after: u64) -> Result<Subscription, ApiError> {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let oldest = inner.retained.front().map_or(inner.next, |e| e.revision);
        if after + 1 < oldest && after != 0 {
            return Err(ApiError::OutOfRange(format!(
                "after_revision {after} is older than the oldest retained event ({oldest}); resume from 0 or a newer revision"
            )));
        }
        if after >= inner.next {
            return Err(ApiError::OutOfRange(format!(
                "after_revision {after} is in the future (latest is {})",
                inner.next - 1
            )));
        }
        let replay = inner
            .retained
            .iter()
            .filter(|e| e.revision > after)
            .cloned()
            .collect();
        Ok((replay, self.tx.subscribe()))
    }
}

#[cfg(test)]
#[allow(clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn revisions_increase_and_replay_resumes() {
        let log = EventLog::default();
        log.emit(EventKind::Created, "a", 0, None);
        log.emit(EventKind::Started, "a", 5, None);
        let (replay, mut rx) = log.subscribe(1).expect("subscribe");
        assert_eq!(
            replay.iter().map(|e| e.revision).collect::<Vec<_>>(),
            vec![2]
        );
        log.emit(EventKind::Exited, "a", 0, None);
        assert_eq!(rx.try_recv().expect("live").revision, 3);
        assert!(log.subscribe(10).is_err());
    }
}
