//! HostService: capabilities and dry-run plans.

use sandboxd_core::SandboxPaths;
use sandboxd_core::capability::BackendKind;
use sandboxd_proto::v1 as pb;
use tonic::{Request, Response, Status};

use super::Shared;
use crate::convert;
use crate::error::ApiError;

/// The HostService implementation.
#[derive(Debug)]
pub struct Host(pub Shared);

#[tonic::async_trait]
impl pb::host_service_server::HostService for Host {
    async fn get_capabilities(
        &self,
        req: Request<pb::GetCapabilitiesRequest>,
    ) -> Result<Response<pb::GetCapabilitiesResponse>, Status> {
        self.0.caller(&req)?;
        let backend = self.0.manager.backend();
        let caps = backend.capabilities();
        let uts =
            nix::sys::utsname::uname().map_err(|e| ApiError::Internal(format!("uname: {e}")))?;
        Ok(Response::new(pb::GetCapabilitiesResponse {
            backend: convert::backend_to_pb(caps.backend),
            os: uts.sysname().to_string_lossy().into_owned(),
            os_version: uts.release().to_string_lossy().into_owned(),
            build_features: crate::backend::build_features(),
            matrix: caps.matrix.iter().map(convert::enforcement_to_pb).collect(),
            daemon_version: env!("CARGO_PKG_VERSION").to_owned(),
            backend_reason: caps.reason,
            images: backend.images(),
        }))
    }

    async fn plan_sandbox(
        &self,
        req: Request<pb::PlanSandboxRequest>,
    ) -> Result<Response<pb::PlanSandboxResponse>, Status> {
        self.0.caller(&req)?;
        let req = req.into_inner();
        let manager = &self.0.manager;
        let wanted = convert::backend_from_pb(req.backend).map_err(ApiError::from)?;
        let (spec, _) = self.0.validate_spec_resolved(req.spec).await?;
        let own = manager.backend().kind();
        let (lease, lease_problem) = match manager.preview_lease(&spec) {
            Ok(lease) => (lease, None),
            Err(e) => (Default::default(), Some(e.to_string())),
        };
        let paths = SandboxPaths {
            id: "0000000000000000".into(),
            dir: manager.store_path_example(),
            lease,
            parent: None,
        };
        // Another backend's plan is computed by its pure plan module with
        // the host facts it documents as typical for its OS.
        // The daemon's own backend with its probed facts, unless the client
        // asked for the documented typical host (reproducible output).
        let mut plan = match wanted.unwrap_or(own) {
            kind if kind == own && !req.assumed_host => manager.plan_local(&spec),
            BackendKind::Chroot => sandboxd_backend_chroot::plan::plan(
                &spec,
                &paths,
                &self.0.images_dir,
                &sandboxd_backend_chroot::plan::HostFacts::assumed(),
            ),
            BackendKind::Linux => sandboxd_backend_linux::plan::plan(
                &spec,
                &paths,
                &sandboxd_backend_linux::plan::HostFacts::assumed(),
            ),
            BackendKind::Freebsd => sandboxd_backend_freebsd::plan::plan(
                &spec,
                &paths,
                &sandboxd_backend_freebsd::plan::HostFacts::assumed(),
            ),
        };
        if wanted.unwrap_or(own) != own || req.assumed_host {
            plan.refusals.extend(lease_problem);
        }
        Ok(Response::new(convert::plan_to_pb(&plan)))
    }
}
