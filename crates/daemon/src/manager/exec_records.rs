//! Every exec's record, by id, so a client that dropped its call (or
//! started the exec detached) can still inspect, wait for and signal it
//! (Docker's exec inspect). Kept in the daemon's memory per sandbox, at
//! most [`MAX_EXEC_RECORDS`] (the oldest finished ones go first; running
//! execs are bounded by `max_execs_per_sandbox`), and dropped with the
//! sandbox on destroy. After a daemon restart the supervisor's `Attached`
//! brings back the records of the execs still running.

use std::collections::BTreeMap;

use sandboxd_core::store::ExitRecord;

/// Finished exec records kept per sandbox (running ones are always kept).
pub const MAX_EXEC_RECORDS: usize = 256;

/// One exec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecRecord {
    /// The daemon's id for it.
    pub exec_id: u64,
    /// Host pid.
    pub pid: i32,
    /// What runs.
    pub argv: Vec<String>,
    /// It has a terminal.
    pub tty: bool,
    /// Started with no client attached (its stdio on /dev/null).
    pub detached: bool,
    /// When it started, ms since the epoch.
    pub started_at_ms: i64,
    /// How it ended; `None` while it runs.
    pub exit: Option<ExitRecord>,
}

/// A sandbox's exec records.
#[derive(Debug, Default)]
pub(super) struct ExecTable {
    records: BTreeMap<u64, ExecRecord>,
}

impl ExecTable {
    /// Adds a started exec; past the cap, forgets the oldest finished ones.
    pub(super) fn insert(&mut self, record: ExecRecord) {
        self.records.insert(record.exec_id, record);
        while self.records.len() > MAX_EXEC_RECORDS {
            // Ids grow with time, so the first finished one is the oldest.
            let Some(oldest) = self
                .records
                .values()
                .find(|r| r.exit.is_some())
                .map(|r| r.exec_id)
            else {
                break;
            };
            self.records.remove(&oldest);
        }
    }

    /// Records how exec `exec_id` ended. The first report wins: a LOST
    /// (the supervisor went away) is not replaced by the SIGKILL a waiting
    /// call assumes afterwards.
    pub(super) fn finish(&mut self, exec_id: u64, exit: ExitRecord) {
        if let Some(r) = self.records.get_mut(&exec_id) {
            if r.exit.is_none() {
                r.exit = Some(exit);
            }
        }
    }

    /// Every running exec is LOST (its supervisor went away).
    pub(super) fn lose_running(&mut self, exit: &ExitRecord) {
        for r in self.records.values_mut().filter(|r| r.exit.is_none()) {
            r.exit = Some(exit.clone());
        }
    }

    /// One record.
    pub(super) fn get(&self, exec_id: u64) -> Option<&ExecRecord> {
        self.records.get(&exec_id)
    }

    /// Every record, oldest first.
    pub(super) fn list(&self) -> Vec<ExecRecord> {
        self.records.values().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sandboxd_core::store::ExitReason;

    fn rec(exec_id: u64, done: bool) -> ExecRecord {
        ExecRecord {
            exec_id,
            pid: 1,
            argv: vec![],
            tty: false,
            detached: false,
            started_at_ms: 0,
            exit: done.then(|| exit(ExitReason::Exited)),
        }
    }

    fn exit(reason: ExitReason) -> ExitRecord {
        ExitRecord {
            reason,
            code: 0,
            signal: 0,
            message: String::new(),
            finished_at_ms: 0,
        }
    }

    #[test]
    fn the_oldest_finished_records_go_first_and_running_ones_stay() {
        let mut t = ExecTable::default();
        t.insert(rec(1, false)); // running: kept whatever the count
        for id in 2..=(MAX_EXEC_RECORDS as u64 + 5) {
            t.insert(rec(id, true));
        }
        let ids: Vec<u64> = t.list().iter().map(|r| r.exec_id).collect();
        assert_eq!(ids.len(), MAX_EXEC_RECORDS);
        assert_eq!(ids[0], 1);
        assert_eq!(ids[1], 7, "2..=6 were forgotten, oldest first");
    }

    #[test]
    fn the_first_report_wins() {
        let reason = |t: &ExecTable, id| t.get(id).and_then(|r| r.exit.as_ref()).map(|e| e.reason);
        let mut t = ExecTable::default();
        t.insert(rec(1, false));
        t.insert(rec(2, false));
        t.finish(2, exit(ExitReason::Timeout));
        t.lose_running(&exit(ExitReason::Lost));
        t.finish(1, exit(ExitReason::Signaled));
        t.finish(2, exit(ExitReason::Exited));
        assert_eq!(reason(&t, 1), Some(ExitReason::Lost));
        assert_eq!(reason(&t, 2), Some(ExitReason::Timeout));
    }
}
