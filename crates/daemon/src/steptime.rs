//! Per-step timing of a create or destroy at debug level
//! (`SANDBOXD_LOG=debug`): each step is a debug span whose duration is
//! logged when it ends, and the operation's whole breakdown is logged once
//! at its end, so a user (and `sandboxd-bench --daemon-log`) can see where
//! the time goes.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use sandboxd_core::wire::StepTime;

/// The steps of one operation on one sandbox.
#[derive(Debug)]
pub struct StepTimer {
    op: &'static str,
    sandbox: String,
    began: Instant,
    last: Instant,
    steps: Vec<(String, Duration)>,
}

impl StepTimer {
    /// Starts timing `op` ("create", "destroy") of `sandbox`.
    pub fn new(op: &'static str, sandbox: &str) -> Self {
        let now = Instant::now();
        Self {
            op,
            sandbox: sandbox.to_owned(),
            began: now,
            last: now,
            steps: Vec::new(),
        }
    }

    /// Names the sandbox once it has an id.
    pub fn sandbox(&mut self, id: &str) {
        id.clone_into(&mut self.sandbox);
    }

    /// Whether timing is logged at all (debug enabled for this module).
    fn enabled() -> bool {
        tracing::enabled!(tracing::Level::DEBUG)
    }

    /// Ends the current step as `step` (it began at the previous mark).
    pub fn mark(&mut self, step: &str) {
        let now = Instant::now();
        let took = now - self.last;
        self.last = now;
        if Self::enabled() {
            // The step's span carries its duration (the span is made when
            // the step ends: a span held across the awaits inside a step
            // would be entered on whichever worker thread polls it).
            let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
            tracing::debug_span!("step", op = self.op, sandbox = %self.sandbox, step, us)
                .in_scope(|| tracing::debug!("step done"));
            self.steps.push((step.to_owned(), took));
        }
    }

    /// Adds steps another process timed (the supervisor's setup, inside
    /// the daemon's wait for it), each prefixed with `who`.
    pub fn nested(&mut self, who: &str, steps: &[StepTime]) {
        if Self::enabled() {
            for s in steps {
                self.steps
                    .push((format!("  {who}: {}", s.step), Duration::from_micros(s.us)));
            }
        }
    }

    /// Logs the whole breakdown once, at debug level.
    pub fn finish(self) {
        if !Self::enabled() {
            return;
        }
        let total = self.began.elapsed();
        let mut line = String::new();
        for (step, took) in &self.steps {
            let _ = write!(line, "; {step} {:.2} ms", took.as_secs_f64() * 1e3);
        }
        tracing::debug!(
            op = self.op,
            sandbox = %self.sandbox,
            total_ms = format_args!("{:.2}", total.as_secs_f64() * 1e3),
            "step times{line}"
        );
    }
}
