//! The gRPC service implementations: the only code that sees wire types.
//! Each handler converts the request once (`convert`), validates it
//! (`sandboxd_core::validate`), calls the manager with core types, and
//! converts the result back; errors become statuses via `ApiError`.

mod events;
mod execs;
mod host;
mod image;
mod logs;
mod process;
mod sandbox;

use std::path::PathBuf;
use std::sync::Arc;

use sandboxd_core::ValidatedSpec;
use sandboxd_core::store::SandboxRecord;
use sandboxd_proto::v1 as pb;
use tokio::sync::watch;

use crate::auth::{Authorizer, Caller};
use crate::error::ApiError;
use crate::manager::Manager;

pub use crate::manager::exec_slots::{ExecSlot, ExecSlots};
pub use events::Events;
pub use execs::Execs;
pub use host::Host;
pub use image::{Images, image_error, image_to_pb, pinned_digest};
pub use logs::Logs;
pub use process::Processes;
pub use sandbox::Sandboxes;

/// What every service shares.
#[derive(Debug, Clone)]
pub struct Shared {
    /// The sandbox manager.
    pub manager: Arc<Manager>,
    /// The images directory (for plans of the chroot backend).
    pub images_dir: PathBuf,
    /// The OCI image store under it.
    pub images: Arc<sandboxd_images::Store>,
    /// The registries PullImage may reach.
    pub registries: Arc<crate::registry::Registries>,
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
    /// A wire spec, converted, its OCI image (if any) resolved in the image
    /// store (config defaults applied, image pinned by digest, layers
    /// attached) and validated against the daemon's policy. Also returns
    /// the image as the client named it (role allowlists name that).
    pub async fn validate_spec_resolved(
        &self,
        spec: Option<pb::SandboxSpec>,
    ) -> Result<(ValidatedSpec, String), ApiError> {
        let mut spec = crate::convert::spec_from_pb(spec)?;
        let asked = spec.image().to_owned();
        let layers = image::resolve_for_spec(&self.images, &mut spec).await?;
        let v = sandboxd_core::validate::validate(spec, self.manager.policy())?;
        Ok((v.with_image_layers(layers), asked))
    }

    /// A wire spec, converted and validated against the daemon's policy.
    pub fn validate_spec(&self, spec: Option<pb::SandboxSpec>) -> Result<ValidatedSpec, ApiError> {
        let spec = crate::convert::spec_from_pb(spec)?;
        Ok(sandboxd_core::validate::validate(
            spec,
            self.manager.policy(),
        )?)
    }

    /// A sandbox as the API shows it: its record, plus current resource use
    /// while it runs.
    pub fn describe(&self, record: &SandboxRecord) -> pb::Sandbox {
        crate::convert::sandbox_to_pb(record, self.manager.usage(record))
    }

    /// The caller of a request; PERMISSION_DENIED for an unknown identity.
    pub fn caller<T>(&self, req: &tonic::Request<T>) -> Result<Caller, ApiError> {
        self.auth.caller(req)
    }
}
