//! SandboxService: the lifecycle RPCs.

use std::sync::Arc;
use std::time::Duration;

use sandboxd_core::ValidatedSpec;
use sandboxd_core::store::SandboxRecord;
use sandboxd_core::verify::Verification;

use sandboxd_proto::v1 as pb;
use tonic::{Request, Response, Status};

use super::Shared;
use crate::auth::Caller;
use crate::convert;
use crate::error::ApiError;
use crate::manager::{DEFAULT_GRACE, MAX_GRACE, Manager, matches_selector, parse_selector};

/// Largest ListSandboxes page.
const MAX_PAGE: usize = 1000;
/// Default ListSandboxes page.
const DEFAULT_PAGE: usize = 100;

/// A create that passed every check CreateSandbox makes before it changes
/// anything (spec, protected paths, the caller's role, the in-flight cap),
/// shared by CreateSandbox and an Exec stream that creates its sandbox, so
/// neither can skip one.
#[derive(Debug)]
pub(super) struct AdmittedCreate {
    spec: ValidatedSpec,
    request_id: String,
    verify: bool,
    permit: tokio::sync::OwnedSemaphorePermit,
}

impl Shared {
    /// Checks a CreateSandbox request for `who` and takes its place under
    /// max_inflight_creates; nothing is changed on the host.
    pub(super) async fn admit_create(
        &self,
        who: &Caller,
        req: pb::CreateSandboxRequest,
    ) -> Result<AdmittedCreate, ApiError> {
        let (spec, asked_image) = self.validate_spec_resolved(req.spec).await?;
        self.protected.check_mounts(spec.spec())?;
        // A role's image allowlist names images as clients do, not pinned.
        who.check_spec(&sandboxd_core::spec::SandboxSpec {
            image: asked_image,
            ..spec.spec().clone()
        })?;
        // Bounded over all clients: a flood cannot queue unbounded work.
        let permit = self.creates.clone().try_acquire_owned().map_err(|_| {
            ApiError::ResourceExhausted(
                "too many creates are in flight (the daemon's max_inflight_creates); retry later"
                    .into(),
            )
        })?;
        tracing::info!(audit = true, identity = %who.name, op = "CreateSandbox", image = %spec.spec().image());
        Ok(AdmittedCreate {
            spec,
            request_id: req.request_id,
            verify: req.verify,
            permit,
        })
    }
}

impl AdmittedCreate {
    /// The request's idempotency key.
    pub(super) fn request_id(&self) -> &str {
        &self.request_id
    }

    /// Creates the sandbox (the manager checks the caller's sandbox quota)
    /// and records the metric; the in-flight place is held until it ends.
    pub(super) async fn run(
        self,
        manager: Arc<Manager>,
        who: Caller,
    ) -> Result<(SandboxRecord, Option<Verification>), ApiError> {
        let _permit = self.permit;
        let started = std::time::Instant::now();
        let result = manager
            .create(self.spec, self.request_id, &who, self.verify)
            .await;
        manager
            .metrics
            .observe(crate::metrics::Operation::Create, started, &result);
        result
    }
}

/// The SandboxService implementation.
#[derive(Debug)]
pub struct Sandboxes(pub Shared);

#[tonic::async_trait]
impl pb::sandbox_service_server::SandboxService for Sandboxes {
    async fn create_sandbox(
        &self,
        req: Request<pb::CreateSandboxRequest>,
    ) -> Result<Response<pb::CreateSandboxResponse>, Status> {
        let who = self.0.caller(&req)?;
        let admitted = self.0.admit_create(&who, req.into_inner()).await?;
        // In its own task: a client that gives up (deadline, disconnect)
        // drops this handler, and a create cut off midway would leave a
        // CREATING sandbox and its host resources behind. The task always
        // finishes or rolls back.
        let manager = self.0.manager.clone();
        let (record, verification) = tokio::spawn(admitted.run(manager, who))
            .await
            .map_err(|e| ApiError::Internal(format!("create task: {e}")))??;
        Ok(Response::new(pb::CreateSandboxResponse {
            sandbox: Some(convert::record_to_pb(&record)),
            verification: verification.as_ref().map(convert::verification_to_pb),
        }))
    }

    async fn get_sandbox(
        &self,
        req: Request<pb::GetSandboxRequest>,
    ) -> Result<Response<pb::GetSandboxResponse>, Status> {
        let who = self.0.caller(&req)?;
        let sb = self.0.manager.get_for(&req.into_inner().id, &who)?;
        Ok(Response::new(pb::GetSandboxResponse {
            sandbox: Some(self.0.describe(&sb.record())),
        }))
    }

    async fn list_sandboxes(
        &self,
        req: Request<pb::ListSandboxesRequest>,
    ) -> Result<Response<pb::ListSandboxesResponse>, Status> {
        let who = self.0.caller(&req)?;
        let req = req.into_inner();
        let page = match req.page_size as usize {
            0 => DEFAULT_PAGE,
            n => n.min(MAX_PAGE),
        };
        let terms = parse_selector(&req.label_selector)?;
        let mut all = self.0.manager.list();
        all.retain(|r| who.may_see(&r.owner));
        // The token is the id of the last sandbox of the previous page; the
        // order is creation order, so later creates never shift a page.
        let start = if req.page_token.is_empty() {
            0
        } else {
            sandboxd_core::validate::validate_ref("page_token", &req.page_token)
                .map_err(ApiError::from)?;
            match all.iter().position(|r| r.id == req.page_token) {
                Some(i) => i + 1,
                None => {
                    // The sandbox was destroyed: resume after where it would be.
                    all.iter()
                        .position(|r| r.id > req.page_token)
                        .unwrap_or(all.len())
                }
            }
        };
        let mut out = Vec::new();
        let mut next = String::new();
        for r in all.iter().skip(start) {
            if !matches_selector(&r.spec, &terms) {
                continue;
            }
            if out.len() == page {
                next = out
                    .last()
                    .map(|s: &pb::Sandbox| s.id.clone())
                    .unwrap_or_default();
                break;
            }
            out.push(self.0.describe(r));
        }
        Ok(Response::new(pb::ListSandboxesResponse {
            sandboxes: out,
            next_page_token: next,
        }))
    }

    async fn stop_sandbox(
        &self,
        req: Request<pb::StopSandboxRequest>,
    ) -> Result<Response<pb::StopSandboxResponse>, Status> {
        let who = self.0.caller(&req)?;
        let req = req.into_inner();
        let sb = self.0.manager.get_for(&req.id, &who)?;
        let grace = match req.grace_seconds {
            0 => DEFAULT_GRACE,
            s => Duration::from_secs(u64::from(s)).min(MAX_GRACE),
        };
        let signal = match req.signal {
            0 => None,
            s @ 1..=64 => i32::try_from(s).ok(),
            s => {
                return Err(ApiError::Invalid(sandboxd_core::ValidationError::one(
                    "signal",
                    format!("{s} is not a signal number (1-64)"),
                ))
                .into());
            }
        };
        tracing::info!(audit = true, identity = %who.name, op = "StopSandbox", sandbox = %sb.id);
        let record = self.0.manager.stop(&sb, grace, signal).await?;
        Ok(Response::new(pb::StopSandboxResponse {
            sandbox: Some(convert::record_to_pb(&record)),
        }))
    }

    async fn destroy_sandbox(
        &self,
        req: Request<pb::DestroySandboxRequest>,
    ) -> Result<Response<pb::DestroySandboxResponse>, Status> {
        let who = self.0.caller(&req)?;
        let id = req.into_inner().id;
        sandboxd_core::validate::validate_ref("id", &id).map_err(ApiError::from)?;
        if !who.admin {
            // Another identity's sandbox, or none: NOT_FOUND either way,
            // so a non-admin learns nothing about ids it does not own.
            self.0.manager.get_for(&id, &who)?;
        }
        tracing::info!(audit = true, identity = %who.name, op = "DestroySandbox", sandbox = %id);
        let started = std::time::Instant::now();
        let result = self.0.manager.destroy(&id).await;
        self.0
            .manager
            .metrics
            .observe(crate::metrics::Operation::Destroy, started, &result);
        let existed = result?;
        Ok(Response::new(pb::DestroySandboxResponse { existed }))
    }

    async fn verify_sandbox(
        &self,
        req: Request<pb::VerifySandboxRequest>,
    ) -> Result<Response<pb::VerifySandboxResponse>, Status> {
        let who = self.0.caller(&req)?;
        let sb = self.0.manager.get_for(&req.into_inner().id, &who)?;
        tracing::info!(audit = true, identity = %who.name, op = "VerifySandbox", sandbox = %sb.id);
        let verification = self.0.manager.verify(&sb).await?;
        Ok(Response::new(pb::VerifySandboxResponse {
            verification: Some(convert::verification_to_pb(&verification)),
        }))
    }

    async fn wait_sandbox(
        &self,
        req: Request<pb::WaitSandboxRequest>,
    ) -> Result<Response<pb::WaitSandboxResponse>, Status> {
        let who = self.0.caller(&req)?;
        let sb = self.0.manager.get_for(&req.into_inner().id, &who)?;
        tokio::select! {
            exit = self.0.manager.wait(&sb) => {
                Ok(Response::new(pb::WaitSandboxResponse { exit: Some(convert::exit_to_pb(&exit)) }))
            }
            () = self.0.shutting_down() => Err(ApiError::Unavailable("the daemon is shutting down".into()).into()),
        }
    }
}
