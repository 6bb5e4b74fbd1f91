//! The registry: every sandbox the daemon knows, by id and by request
//! key, and the addresses and host ports they hold.

use std::collections::HashMap;
use std::sync::Arc;

use sandboxd_core::Usage;
use sandboxd_core::backend::SandboxPaths;
use sandboxd_core::net::Leases;
use sandboxd_core::store::{SandboxRecord, SandboxState};
use sandboxd_core::validate;

use super::{Manager, Sandbox, lock};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};

#[derive(Debug, Default)]
pub(super) struct Registry {
    pub(super) by_id: HashMap<String, Arc<Sandbox>>,
    pub(super) by_request: HashMap<(String, String), String>,
    /// Addresses and host ports, rebuilt from the records at start-up.
    pub(super) leases: Leases,
    /// Owners of destroyed sandboxes, so their last events still reach
    /// them; oldest dropped past [`GONE_OWNERS`].
    gone_owners: HashMap<String, String>,
    gone_order: std::collections::VecDeque<String>,
}

/// How many destroyed sandboxes' owners are remembered.
const GONE_OWNERS: usize = 4096;

impl Registry {
    /// An empty registry holding `leases` (rebuilt from the records).
    pub(super) fn new(leases: Leases) -> Self {
        Self {
            leases,
            ..Self::default()
        }
    }

    /// Drops a sandbox and releases its addresses and ports: only once its
    /// host cleanup succeeded, so nothing can lease an address that may
    /// still be configured on the host.
    pub(super) fn forget(&mut self, id: &str) {
        if let Some(sb) = self.by_id.remove(id) {
            let owner = lock(&sb.record).owner.clone();
            self.gone_owners.insert(id.to_owned(), owner);
            self.gone_order.push_back(id.to_owned());
            while self.gone_order.len() > GONE_OWNERS {
                if let Some(old) = self.gone_order.pop_front() {
                    self.gone_owners.remove(&old);
                }
            }
        }
        self.by_request.retain(|_, v| v != id);
        self.leases.release(id);
    }
}

impl Manager {
    /// Finds a sandbox by id or name.
    pub fn get(&self, reference: &str) -> ApiResult<Arc<Sandbox>> {
        validate::validate_ref("id", reference)?;
        let reg = lock(&self.registry);
        let found = if validate::is_id(reference) {
            reg.by_id.get(reference).cloned()
        } else {
            reg.by_id
                .values()
                .find(|s| lock(&s.record).spec.name == reference)
                .cloned()
        };
        found.ok_or_else(|| ApiError::NotFound(reference.to_owned()))
    }

    /// Finds a sandbox `who` may see: another identity's is NOT_FOUND, as
    /// if it did not exist.
    pub fn get_for(&self, reference: &str, who: &Caller) -> ApiResult<Arc<Sandbox>> {
        let sb = self.get(reference)?;
        if who.may_see(&lock(&sb.record).owner) {
            Ok(sb)
        } else {
            Err(ApiError::NotFound(reference.to_owned()))
        }
    }

    /// The owner of a live sandbox, or of one destroyed recently (for
    /// filtering its events).
    pub fn owner_of(&self, id: &str) -> Option<String> {
        let reg = lock(&self.registry);
        reg.by_id
            .get(id)
            .map(|s| lock(&s.record).owner.clone())
            .or_else(|| reg.gone_owners.get(id).cloned())
    }

    /// A sandbox's current resource use, while it runs.
    pub fn usage(&self, record: &SandboxRecord) -> Option<Usage> {
        if record.state != SandboxState::Running {
            return None;
        }
        let dir = self.store.sandbox_dir(&record.id).ok()?;
        Some(self.backend.usage(&SandboxPaths {
            id: record.id.clone(),
            dir,
            ..Default::default()
        }))
    }

    /// Leased addresses and forwarded host ports (the metrics).
    pub fn leases_in_use(&self) -> (usize, usize) {
        lock(&self.registry).leases.in_use()
    }

    /// Every sandbox, oldest first.
    pub fn list(&self) -> Vec<SandboxRecord> {
        let reg = lock(&self.registry);
        let mut all: Vec<SandboxRecord> = reg.by_id.values().map(|s| s.record()).collect();
        all.sort_by(|a, b| (a.created_at_ms, &a.id).cmp(&(b.created_at_ms, &b.id)));
        all
    }
}
