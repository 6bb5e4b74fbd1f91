//! Per-step setup timing of a supervisor (and what it sees of pid 1): each
//! [`mark`] records the time since the previous one under a step name; the
//! list goes to the daemon in `Ready`, which logs it at debug level
//! (`SANDBOXD_LOG=debug`). The helper is single-threaded, so one global
//! list serves; a mutex only keeps it safe to call from anywhere.

use std::sync::Mutex;
use std::time::Instant;

use sandboxd_core::wire::StepTime;

/// The start of the current step and the steps so far.
static STEPS: Mutex<(Option<Instant>, Vec<StepTime>)> = Mutex::new((None, Vec::new()));

/// Starts (or restarts) the clock: the next [`mark`] measures from here.
pub fn start() {
    let mut s = STEPS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    *s = (Some(Instant::now()), Vec::new());
}

/// Records `step` as ending now (it began at the previous mark or
/// [`start`]).
pub fn mark(step: &str) {
    let now = Instant::now();
    let mut s = STEPS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let since = s.0.unwrap_or(now);
    let us = u64::try_from(now.duration_since(since).as_micros()).unwrap_or(u64::MAX);
    s.1.push(StepTime {
        step: step.to_owned(),
        us,
    });
    s.0 = Some(now);
}

/// The steps recorded so far, emptying the list.
pub fn take() -> Vec<StepTime> {
    let mut s = STEPS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    std::mem::take(&mut s.1)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    #[test]
    fn marks_are_in_order_and_taken_once() {
        super::start();
        super::mark("a");
        std::thread::sleep(std::time::Duration::from_millis(2));
        super::mark("b");
        let steps = super::take();
        assert_eq!(
            steps.iter().map(|s| s.step.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert!(steps[1].us >= 2000, "{steps:?}");
        assert!(super::take().is_empty());
    }
}
