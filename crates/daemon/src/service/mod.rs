//! The gRPC service implementations. Each handler converts, calls the
//! manager, and converts back; errors become statuses via `ApiError`.

mod events;
mod host;
mod process;
mod sandbox;

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::watch;

use crate::auth::{Authorizer, Caller};
use crate::error::ApiError;
use crate::manager::Manager;

pub use events::Events;
pub use host::Host;
pub use process::{ExecSlot, ExecSlots, Processes};
pub use sandbox::Sandboxes;

/// What every service shares.
#[derive(Debug, Clone)]
pub struct Shared {
    /// The sandbox manager.
    pub manager: Arc<Manager>,
    /// The images directory (for plans of the chroot backend).
    pub images_dir: PathBuf,
    /// Flips to true when the daemon shuts down: long-lived calls end.
    pub shutdown: watch::Receiver<bool>,
    /// Resolves callers.
    pub auth: Arc<Authorizer>,
    /// Creates running at once (the config's max_inflight_creates).
    pub creates: Arc<tokio::sync::Semaphore>,
    /// Execs running at once, per sandbox and per identity.
    pub execs: Arc<ExecSlots>,
    /// The daemon's own paths, which no mount source may overlap.
    pub protected: Arc<crate::hostdirs::Protected>,
}

impl Shared {
    /// Resolves when the daemon starts shutting down.
    pub async fn shutting_down(&self) {
        let mut rx = self.shutdown.clone();
        let _ = rx.wait_for(|s| *s).await;
    }
}

impl Shared {
    /// The caller of a request; PERMISSION_DENIED for an unknown identity.
    pub fn caller<T>(&self, req: &tonic::Request<T>) -> Result<Caller, ApiError> {
        self.auth.caller(req)
    }
}
