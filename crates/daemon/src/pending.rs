//! A count of work under way that the daemon's shutdown waits for: gRPC
//! calls whose response is not produced yet, and destroys still tearing
//! down after their reply.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The count; clones share it.
#[derive(Debug, Clone, Default)]
pub struct Pending(Arc<AtomicUsize>);

impl Pending {
    /// One more, until the returned guard is dropped (also when the work's
    /// future is dropped or its task panics).
    pub fn start(&self) -> PendingGuard {
        self.0.fetch_add(1, Ordering::SeqCst);
        PendingGuard(self.0.clone())
    }

    /// How many are under way.
    pub fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

/// Ends one [`Pending`] entry when dropped.
#[derive(Debug)]
pub struct PendingGuard(Arc<AtomicUsize>);

impl Drop for PendingGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::Pending;

    #[test]
    fn a_guard_counts_until_it_is_dropped() {
        let p = Pending::default();
        let (a, b) = (p.start(), p.clone().start());
        assert_eq!(p.count(), 2);
        drop(a);
        assert_eq!(p.count(), 1);
        drop(b);
        assert_eq!(p.count(), 0);
    }
}
