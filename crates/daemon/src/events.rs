//! The event log behind WatchEvents: every lifecycle event gets the next
//! revision, the last [`RETAIN`] are kept for resuming clients, and live
//! subscribers get them through a broadcast channel.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

use sandboxd_proto::v1 as pb;
use tokio::sync::broadcast;

use crate::error::ApiError;

/// How many events are retained for replay.
pub const RETAIN: usize = 4096;

/// Retained events to replay, and the live feed after them.
pub type Subscription = (Vec<Arc<pb::Event>>, broadcast::Receiver<Arc<pb::Event>>);

/// The log.
#[derive(Debug)]
pub struct EventLog {
    inner: Mutex<Inner>,
    tx: broadcast::Sender<Arc<pb::Event>>,
}

#[derive(Debug)]
struct Inner {
    next: u64,
    retained: VecDeque<Arc<pb::Event>>,
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
    pub fn emit(
        &self,
        kind: pb::EventKind,
        sandbox_id: &str,
        pid: i32,
        exit: Option<pb::ExitResult>,
    ) {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let event = Arc::new(pb::Event {
            revision: inner.next,
            kind: kind as i32,
            sandbox_id: sandbox_id.to_owned(),
            pid: i64::from(pid),
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
        log.emit(pb::EventKind::EventCreated, "a", 0, None);
        log.emit(pb::EventKind::EventStarted, "a", 5, None);
        let (replay, mut rx) = log.subscribe(1).expect("subscribe");
        assert_eq!(
            replay.iter().map(|e| e.revision).collect::<Vec<_>>(),
            vec![2]
        );
        log.emit(pb::EventKind::EventExited, "a", 0, None);
        assert_eq!(rx.try_recv().expect("live").revision, 3);
        assert!(log.subscribe(10).is_err());
    }
}
