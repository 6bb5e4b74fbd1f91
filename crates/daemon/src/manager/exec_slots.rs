//! The exec caps (the config's `max_execs_per_sandbox` and
//! `max_execs_per_identity`): Exec, ExecSync and StartExec each hold a slot
//! while their process runs, and so does every exec a restarted daemon
//! finds still running (`ExecSlots::charge`).

use std::collections::HashMap;
use std::sync::Arc;

use crate::error::ApiError;

/// Exec and ExecSync calls running at once, per sandbox and per identity
/// (the config's max_execs_per_sandbox and max_execs_per_identity): each
/// holds pipes or a terminal in the daemon and a process in the sandbox.
#[derive(Debug)]
pub struct ExecSlots {
    per_sandbox: usize,
    per_identity: usize,
    taken: std::sync::Mutex<SlotCounts>,
}

#[derive(Debug, Default)]
struct SlotCounts {
    by_sandbox: HashMap<String, usize>,
    by_identity: HashMap<String, usize>,
}

/// One exec's place under both caps, given back when dropped.
#[derive(Debug)]
pub struct ExecSlot {
    slots: Arc<ExecSlots>,
    sandbox: String,
    identity: String,
}

impl ExecSlots {
    /// Caps of `per_sandbox` and `per_identity` execs at once.
    pub fn new(per_sandbox: usize, per_identity: usize) -> Self {
        Self {
            per_sandbox,
            per_identity,
            taken: std::sync::Mutex::default(),
        }
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, SlotCounts> {
        self.taken
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A slot for one more exec in `sandbox` by `identity`, or
    /// RESOURCE_EXHAUSTED naming the cap that is full.
    pub fn take(self: &Arc<Self>, sandbox: &str, identity: &str) -> Result<ExecSlot, ApiError> {
        let mut counts = self.counts();
        let in_sandbox = counts.by_sandbox.get(sandbox).copied().unwrap_or(0);
        if in_sandbox >= self.per_sandbox {
            return Err(ApiError::ResourceExhausted(format!(
                "sandbox {sandbox} already runs {in_sandbox} execs, the daemon's max_execs_per_sandbox; wait for one to end"
            )));
        }
        let of_identity = counts.by_identity.get(identity).copied().unwrap_or(0);
        if of_identity >= self.per_identity {
            return Err(ApiError::ResourceExhausted(format!(
                "identity {identity:?} already runs {of_identity} execs, the daemon's max_execs_per_identity; wait for one to end"
            )));
        }
        *counts.by_sandbox.entry(sandbox.to_owned()).or_default() += 1;
        *counts.by_identity.entry(identity.to_owned()).or_default() += 1;
        Ok(ExecSlot {
            slots: self.clone(),
            sandbox: sandbox.to_owned(),
            identity: identity.to_owned(),
        })
    }
}

impl ExecSlots {
    /// Charges an exec this daemon did not start — one a restarted daemon
    /// finds still running in a reattached sandbox — to `sandbox` and
    /// `identity`, over the caps if need be: it runs whatever the caps
    /// say, and the next exec must wait for it like for any other.
    pub fn charge(self: &Arc<Self>, sandbox: &str, identity: &str) -> ExecSlot {
        let mut counts = self.counts();
        *counts.by_sandbox.entry(sandbox.to_owned()).or_default() += 1;
        *counts.by_identity.entry(identity.to_owned()).or_default() += 1;
        ExecSlot {
            slots: self.clone(),
            sandbox: sandbox.to_owned(),
            identity: identity.to_owned(),
        }
    }

    /// Whether a first exec in a sandbox not created yet would get a slot
    /// for `identity` now (an Exec stream that creates its sandbox asks
    /// before creating it; the slot itself is taken afterwards).
    pub fn admits(&self, identity: &str) -> Result<(), ApiError> {
        if self.per_sandbox == 0 {
            return Err(ApiError::ResourceExhausted(
                "the daemon's max_execs_per_sandbox is 0: no exec can run".into(),
            ));
        }
        let of_identity = self
            .counts()
            .by_identity
            .get(identity)
            .copied()
            .unwrap_or(0);
        if of_identity >= self.per_identity {
            return Err(ApiError::ResourceExhausted(format!(
                "identity {identity:?} already runs {of_identity} execs, the daemon's max_execs_per_identity; wait for one to end"
            )));
        }
        Ok(())
    }
}

impl Drop for ExecSlot {
    fn drop(&mut self) {
        let mut guard = self.slots.counts();
        let counts = &mut *guard;
        for (map, key) in [
            (&mut counts.by_sandbox, &self.sandbox),
            (&mut counts.by_identity, &self.identity),
        ] {
            if let Some(n) = map.get_mut(key) {
                *n -= 1;
                if *n == 0 {
                    map.remove(key);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn exec_slots_cap_each_sandbox_and_each_identity() {
        let slots = Arc::new(ExecSlots::new(2, 3));
        let a1 = slots.take("a", "alice").unwrap();
        let _a2 = slots.take("a", "alice").unwrap();
        let full = slots.take("a", "bob").unwrap_err().to_string();
        assert!(full.contains("max_execs_per_sandbox"), "{full}");
        let _b1 = slots.take("b", "alice").unwrap();
        let full = slots.take("b", "alice").unwrap_err().to_string();
        assert!(full.contains("max_execs_per_identity"), "{full}");
        // Another identity is not held back by alice's.
        let _b2 = slots.take("b", "bob").unwrap();
        drop(a1);
        let _a3 = slots.take("a", "alice").unwrap();
        assert!(
            matches!(
                slots.take("c", "alice"),
                Err(ApiError::ResourceExhausted(_))
            ),
            "freed and retaken"
        );
        drop((_a2, _a3, _b1, _b2));
        let counts = slots.counts();
        assert!(counts.by_sandbox.is_empty() && counts.by_identity.is_empty());
    }

    #[test]
    fn a_charged_exec_counts_over_the_cap_until_it_is_dropped() {
        let slots = Arc::new(ExecSlots::new(1, 5));
        let held = slots.take("a", "alice").unwrap();
        let recovered = slots.charge("a", "alice");
        assert_eq!(slots.counts().by_sandbox.get("a"), Some(&2));
        drop(held);
        assert!(slots.take("a", "alice").is_err(), "still one running");
        drop(recovered);
        let _again = slots.take("a", "alice").unwrap();
    }
}
