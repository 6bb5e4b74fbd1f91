//! Network namespaces made ahead of time, in the daemon.
//!
//! A new network namespace is the costliest part of cloning a sandbox's
//! pid 1 (~0.5 ms of the kernel's `setup_net` on a 2-CPU VM), and it does
//! not depend on the sandbox: every NONE or LOOPBACK sandbox gets one that
//! is empty, with `lo` down. So a thread of the daemon keeps [`SPARES`] of
//! them, made with `unshare(CLONE_NEWNET)` exactly as the clone would make
//! them, and a create takes one: its pid 1 is cloned without
//! CLONE_NEWNET and joins it before it builds anything (before /sys is
//! mounted, which shows the namespace's devices). Each namespace goes to one
//! sandbox only, as a descriptor nothing else holds; when none is ready
//! (the first create, a burst), pid 1 is cloned with CLONE_NEWNET as
//! before. The thread runs only when a CPU is otherwise idle (SCHED_IDLE),
//! so making the next spare never slows the create in progress. It starts
//! with the first create, so a daemon that makes no sandbox makes no
//! namespace; the spares go with the daemon's exit.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, Condvar, Mutex, OnceLock, PoisonError};

use crate::sys;

/// How many namespaces are kept ready.
const SPARES: usize = 2;

/// The pool (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct NetnsPool {
    shared: Arc<Shared>,
    started: OnceLock<()>,
}

#[derive(Debug, Default)]
struct Shared {
    spares: Mutex<Vec<OwnedFd>>,
    /// Signalled when a spare is taken.
    taken: Condvar,
}

impl NetnsPool {
    /// A namespace nobody else holds, if one is ready; the pool then makes
    /// another.
    pub(crate) fn take(&self) -> Option<OwnedFd> {
        self.started.get_or_init(|| {
            let shared = self.shared.clone();
            let spawned = std::thread::Builder::new()
                .name("sandboxd-netns".into())
                .spawn(move || refill(&shared));
            if let Err(e) = spawned {
                tracing::warn!(error = %e, "no network namespace pool: creates make their own");
            }
        });
        let spare = self
            .shared
            .spares
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        self.shared.taken.notify_one();
        spare
    }
}

/// The pool's thread: keeps [`SPARES`] namespaces ready. It stops at the
/// first failure (the pool then stays empty and creates make their own);
/// after a failed return to its own namespace it must, as it is no longer
/// where it was.
fn refill(shared: &Shared) {
    // Made while the CPUs are otherwise idle: a create that runs meanwhile
    // (the one that just took a spare) keeps them. Under sustained load the
    // pool may then run dry, and creates clone their own, as without it.
    if let Err(e) = sys::run_only_when_idle() {
        tracing::debug!(error = %e, "the network namespace pool runs at normal priority");
    }
    let own = match sys::own_network_namespace() {
        Ok(fd) => fd,
        Err(e) => {
            tracing::warn!(error = %e, "no network namespace pool: creates make their own");
            return;
        }
    };
    loop {
        {
            let mut spares = shared.spares.lock().unwrap_or_else(PoisonError::into_inner);
            while spares.len() >= SPARES {
                spares = shared
                    .taken
                    .wait(spares)
                    .unwrap_or_else(PoisonError::into_inner);
            }
        }
        match sys::new_network_namespace(own.as_fd()) {
            Ok(fd) => shared
                .spares
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(fd),
            Err(e) => {
                tracing::warn!(error = %e, "the network namespace pool stops: creates make their own");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    /// Needs root (CAP_SYS_ADMIN), as the daemon has; CI runs it as root.
    #[test]
    fn spares_are_new_empty_namespaces_each_given_once() {
        assert!(
            nix::unistd::Uid::effective().is_root(),
            "run as root: making network namespaces needs CAP_SYS_ADMIN"
        );
        let pool = NetnsPool::default();
        let own = std::fs::metadata("/proc/thread-self/ns/net").unwrap();
        let mut seen = Vec::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while seen.len() < 3 {
            assert!(std::time::Instant::now() < deadline, "the pool made none");
            match pool.take() {
                Some(fd) => {
                    let st = nix::sys::stat::fstat(fd.as_fd()).unwrap();
                    seen.push(st.st_ino);
                }
                None => std::thread::sleep(std::time::Duration::from_millis(5)),
            }
        }
        use std::os::unix::fs::MetadataExt;
        assert!(
            !seen.contains(&own.ino()),
            "the daemon's own namespace was handed out"
        );
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), 3, "a namespace was handed out twice");
        // The test thread was never moved.
        assert_eq!(
            std::fs::metadata("/proc/thread-self/ns/net").unwrap().ino(),
            own.ino()
        );
    }
}
