//! ImageService: the OCI image store (crates/images) over gRPC. Store work
//! is blocking file I/O and runs on blocking tasks.

use std::io::Read;
use std::sync::Arc;

use sandboxd_images::{ImageError, ImageRecord, Store};
use sandboxd_proto::v1 as pb;
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status, Streaming};

use super::Shared;
use crate::error::ApiError;

/// The ImageService implementation.
#[derive(Debug)]
pub struct Images(pub Shared);

/// The status an image-store failure becomes.
pub fn image_error(e: ImageError) -> ApiError {
    let msg = e.to_string();
    match e {
        ImageError::Refused(_)
        | ImageError::DigestMismatch { .. }
        | ImageError::Archive(_)
        | ImageError::Oci(_) => ApiError::InvalidField(msg),
        ImageError::TooLarge(_) => ApiError::ResourceExhausted(msg),
        ImageError::NotFound(r) => ApiError::ImageNotFound(r),
        ImageError::Platform { .. } => ApiError::FailedPrecondition(msg),
        ImageError::Io { .. } => ApiError::Internal(msg),
    }
}

/// The status a pull failure becomes.
fn pull_error(e: crate::registry::PullError) -> ApiError {
    use crate::registry::PullError;
    let msg = e.to_string();
    match e {
        PullError::Reference(_) => ApiError::InvalidField(msg),
        PullError::Config { .. } => ApiError::FailedPrecondition(msg),
        PullError::Denied { .. } => ApiError::PermissionDenied(msg),
        PullError::Transport { .. } => ApiError::Unavailable(msg),
        PullError::NotFound { .. } => ApiError::ImageNotFound(msg),
        PullError::Store(e) => image_error(e),
    }
}

/// The wire form of a stored image.
pub fn image_to_pb(r: &ImageRecord) -> pb::Image {
    let run = r.config.config.clone().unwrap_or_default();
    pb::Image {
        refs: r.refs.clone(),
        digest: r.manifest.to_string(),
        config_digest: r.config_digest.to_string(),
        platform: r.config.platform().to_string(),
        layers: r.layers.iter().map(ToString::to_string).collect(),
        size: r.size,
        created: r.config.created.clone().unwrap_or_default(),
        entrypoint: run.entrypoint.unwrap_or_default(),
        cmd: run.cmd.unwrap_or_default(),
        env: run.env.unwrap_or_default(),
        working_dir: run.working_dir.unwrap_or_default(),
        user: run.user.unwrap_or_default(),
    }
}

async fn blocking<T: Send + 'static>(
    store: &Arc<Store>,
    f: impl FnOnce(&Store) -> Result<T, ImageError> + Send + 'static,
) -> Result<T, ApiError> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || f(&store))
        .await
        .map_err(|e| ApiError::Internal(format!("image store task: {e}")))?
        .map_err(image_error)
}

/// Reads an import's chunks on the blocking side.
struct ChunkReader {
    rx: tokio::sync::mpsc::Receiver<Result<Vec<u8>, String>>,
    buf: Vec<u8>,
    at: usize,
}

impl Read for ChunkReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.at == self.buf.len() {
            match self.rx.blocking_recv() {
                None => return Ok(0),
                Some(Ok(b)) => {
                    self.buf = b;
                    self.at = 0;
                }
                Some(Err(e)) => return Err(std::io::Error::other(e)),
            }
        }
        let n = out.len().min(self.buf.len() - self.at);
        out[..n].copy_from_slice(&self.buf[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

impl Images {
    fn store(&self) -> &Arc<Store> {
        &self.0.images
    }

    fn admin<T>(&self, req: &Request<T>, what: &str) -> Result<(), ApiError> {
        let caller = self.0.caller(req)?;
        if caller.admin {
            Ok(())
        } else {
            Err(ApiError::PermissionDenied(format!(
                "{what}: the image store is shared; identity {:?} is not an admin",
                caller.name
            )))
        }
    }
}

#[tonic::async_trait]
impl pb::image_service_server::ImageService for Images {
    async fn import_image(
        &self,
        req: Request<Streaming<pb::ImportImageRequest>>,
    ) -> Result<Response<pb::ImportImageResponse>, Status> {
        self.admin(&req, "ImportImage")?;
        let mut stream = req.into_inner();
        let first = match stream.next().await {
            Some(m) => m?,
            None => return Err(ApiError::InvalidField("ImportImage: no data".into()).into()),
        };
        let name = (!first.name.is_empty()).then_some(first.name.clone());
        if let Some(n) = &name {
            sandboxd_core::oci::Reference::parse(n)
                .map_err(|e| ApiError::InvalidField(format!("name: {e}")))?;
        }
        let (tx, rx) = tokio::sync::mpsc::channel(8);
        let _ = tx.send(Ok(first.data)).await;
        let feed = tokio::spawn(async move {
            while let Some(m) = stream.next().await {
                let item = m.map(|m| m.data).map_err(|s| s.message().to_owned());
                let stop = item.is_err();
                if tx.send(item).await.is_err() || stop {
                    break;
                }
            }
        });
        let reader = ChunkReader {
            rx,
            buf: Vec::new(),
            at: 0,
        };
        let result = blocking(self.store(), move |s| {
            sandboxd_images::import_archive(s, reader, name.as_deref())
        })
        .await;
        feed.abort();
        let images = result?;
        tracing::info!(images = ?images.iter().map(|i| i.manifest.to_string()).collect::<Vec<_>>(), "images imported");
        Ok(Response::new(pb::ImportImageResponse {
            images: images.iter().map(image_to_pb).collect(),
        }))
    }

    type PullImageStream = std::pin::Pin<
        Box<dyn tokio_stream::Stream<Item = Result<pb::PullImageProgress, Status>> + Send>,
    >;

    async fn pull_image(
        &self,
        req: Request<pb::PullImageRequest>,
    ) -> Result<Response<Self::PullImageStream>, Status> {
        self.admin(&req, "PullImage")?;
        let reference = req.into_inner().reference;
        sandboxd_core::oci::Reference::parse(&reference)
            .map_err(|e| ApiError::InvalidField(format!("reference: {e}")))?;
        let (ptx, mut prx) = tokio::sync::mpsc::channel(64);
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<pb::PullImageProgress, Status>>(64);
        let store = self.store().clone();
        let registries = self.0.registries.clone();
        // The pull runs to completion (or failure) even when the client goes
        // away: a half-done pull leaves only verified blobs, which the next
        // pull reuses.
        let job = tokio::spawn(async move {
            crate::registry::pull(&store, &registries, &reference, &ptx).await
        });
        let out = tx.clone();
        let forwarder = tokio::spawn(async move {
            while let Some(p) = prx.recv().await {
                let event = match p {
                    crate::registry::Progress::Resolved { manifest, layers } => {
                        pb::pull_image_progress::Event::Resolved(pb::PullResolved {
                            digest: manifest.to_string(),
                            layers: u32::try_from(layers).unwrap_or(u32::MAX),
                        })
                    }
                    crate::registry::Progress::Layer {
                        digest,
                        done,
                        total,
                        cached,
                    } => pb::pull_image_progress::Event::Layer(pb::PullLayer {
                        digest: digest.to_string(),
                        done,
                        total,
                        cached,
                    }),
                    crate::registry::Progress::Unpacking => {
                        pb::pull_image_progress::Event::Unpacking(true)
                    }
                };
                let _ = out
                    .send(Ok(pb::PullImageProgress { event: Some(event) }))
                    .await;
            }
        });
        tokio::spawn(async move {
            let result = match job.await {
                Ok(Ok(rec)) => Ok(pb::PullImageProgress {
                    event: Some(pb::pull_image_progress::Event::Done(image_to_pb(&rec))),
                }),
                Ok(Err(e)) => Err(Status::from(pull_error(e))),
                Err(e) => Err(Status::internal(format!("pull task: {e}"))),
            };
            // Every progress event before the image: the forwarder ends once
            // the finished pull dropped its progress sender.
            let _ = forwarder.await;
            let _ = tx.send(result).await;
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn list_images(
        &self,
        req: Request<pb::ListImagesRequest>,
    ) -> Result<Response<pb::ListImagesResponse>, Status> {
        self.0.caller(&req)?;
        let images = blocking(self.store(), |s| s.list()).await?;
        Ok(Response::new(pb::ListImagesResponse {
            images: images.iter().map(image_to_pb).collect(),
        }))
    }

    async fn inspect_image(
        &self,
        req: Request<pb::InspectImageRequest>,
    ) -> Result<Response<pb::Image>, Status> {
        self.0.caller(&req)?;
        let reference = req.into_inner().reference;
        let rec = blocking(self.store(), move |s| s.resolve(&reference)).await?;
        Ok(Response::new(image_to_pb(&rec)))
    }

    async fn remove_image(
        &self,
        req: Request<pb::RemoveImageRequest>,
    ) -> Result<Response<pb::RemoveImageResponse>, Status> {
        self.admin(&req, "RemoveImage")?;
        let reference = req.into_inner().reference;
        let r = reference.clone();
        let rec = blocking(self.store(), move |s| s.resolve(&r)).await?;
        // Refused while any sandbox (running or not yet destroyed) was made
        // from it: its layers are that sandbox's root.
        // Sandboxes record their image pinned by digest (name@sha256:...).
        let users: Vec<String> = self
            .0
            .manager
            .list()
            .into_iter()
            .filter(|sb| pinned_digest(sb.spec.image()).as_ref() == Some(&rec.manifest))
            .map(|sb| sb.id)
            .collect();
        if !users.is_empty() {
            return Err(ApiError::FailedPrecondition(format!(
                "image {reference:?} is used by sandbox(es) {}; destroy them first",
                users.join(", ")
            ))
            .into());
        }
        let (rec, gc) = blocking(self.store(), move |s| s.remove(&reference)).await?;
        Ok(Response::new(pb::RemoveImageResponse {
            image: Some(image_to_pb(&rec)),
            blobs_removed: gc.blobs,
            layers_removed: gc.layers,
        }))
    }
}

/// The manifest digest a sandbox's image is pinned to, when it is an OCI
/// image.
pub fn pinned_digest(image: &str) -> Option<sandboxd_core::oci::Digest> {
    if !sandboxd_core::oci::is_reference(image) {
        return None;
    }
    sandboxd_core::oci::Reference::parse(image).ok()?.digest
}

/// A process to exec into `sb` (Exec, ExecSync, StartExec), converted
/// and, when the sandbox runs an OCI image, given the image config's Env
/// and WorkingDir under the request's (`oci::apply_exec_defaults`).
/// Returns with it whether its cwd is the image's WorkingDir (made if
/// missing, as Docker makes an image's WORKDIR; a cwd the request names is
/// not).
pub(super) async fn exec_process(
    store: &Arc<Store>,
    sb: &crate::manager::Sandbox,
    process: Option<pb::ProcessSpec>,
) -> Result<(sandboxd_core::spec::ProcessSpec, bool), ApiError> {
    let mut process = crate::convert::process_from_pb(process);
    // Pinned at create; RemoveImage refuses an image a sandbox uses, so
    // its record stays readable for the sandbox's life. Read at the first
    // exec only (two blobs parsed on a blocking thread).
    let run = sb
        .exec_defaults(|| async {
            match sb.with_record(|r| pinned_digest(r.spec.image())) {
                Some(d) => {
                    let rec = blocking(store, move |s| s.record(&d)).await?;
                    Ok(rec.config.config.map(Arc::new))
                }
                None => Ok::<_, ApiError>(None),
            }
        })
        .await?;
    let asked_cwd = !process.cwd.is_empty();
    if let Some(run) = run {
        sandboxd_core::oci::apply_exec_defaults(&mut process, &run);
    }
    let image_cwd = !asked_cwd && !process.cwd.is_empty();
    Ok((process, image_cwd))
}

/// Resolves an OCI reference in the store for a create or plan: fills the
/// spec's unset process fields from the image config, pins `spec.image` to
/// `name@sha256:<manifest>` (a later retag or pull does not change what a
/// sandbox runs, and GC keeps its layers) and returns the layer chain.
pub(super) async fn resolve_for_spec(
    store: &Arc<Store>,
    spec: &mut sandboxd_core::spec::SandboxSpec,
) -> Result<Vec<std::path::PathBuf>, ApiError> {
    let image = spec.image().to_owned();
    if !sandboxd_core::oci::is_reference(&image) {
        return Ok(Vec::new());
    }
    let reference = sandboxd_core::oci::Reference::parse(&image)
        .map_err(|e| ApiError::InvalidField(format!("spec.image: {e}")))?;
    let r = image.clone();
    let rec = blocking(store, move |s| s.resolve(&r)).await?;
    if let Some(run) = &rec.config.config {
        sandboxd_core::oci::apply_run_defaults(spec, run)
            .map_err(|e| ApiError::InvalidField(format!("spec.image {image:?}: {e}")))?;
    }
    spec.image = format!("{}@{}", reference.name, rec.manifest);
    Ok(rec.layer_dirs())
}
