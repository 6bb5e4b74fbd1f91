//! The gRPC service implementations. Each handler converts, calls the
//! manager, and converts back; errors become statuses via `ApiError`.

mod events;
mod host;
mod process;
mod sandbox;

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::watch;

use crate::manager::Manager;

pub use events::Events;
pub use host::Host;
pub use process::Processes;
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
}

impl Shared {
    /// Resolves when the daemon starts shutting down.
    pub async fn shutting_down(&self) {
        let mut rx = self.shutdown.clone();
        let _ = rx.wait_for(|s| *s).await;
    }
}

/// The caller's identity. Local unix-socket clients are all "local" (admin);
/// per-certificate identities come with remote access.
pub(crate) fn caller<T>(_req: &tonic::Request<T>) -> &'static str {
    "local"
}
