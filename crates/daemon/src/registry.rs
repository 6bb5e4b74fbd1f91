//! Pull from an OCI distribution registry (v2 API) into the image store.
//! A small HTTP/1.1 client on hyper (already in the build through tonic):
//! plain HTTP only for a registry the configuration marks `insecure`,
//! otherwise TLS with the configured CA. Every document and blob is
//! verified against its digest before the store keeps it; layers already
//! stored are not fetched again (deduplication, and resumption of an
//! interrupted pull at blob granularity).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use rustls::pki_types::pem::PemObject;
use sandboxd_core::oci::{self, Digest, ManifestKind, Reference};
use sandboxd_images::{ImageError, ImageRecord, Store};
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncWriteExt;

/// One registry's settings (`[registries."HOST:PORT"]` in the config).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryFile {
    /// Plain HTTP (local test registries only).
    #[serde(default)]
    pub insecure: bool,
    /// PEM CA bundle that signs the registry's certificate (required for
    /// HTTPS: the daemon ships no public root store).
    pub ca_file: Option<PathBuf>,
    /// HTTP basic authentication (sent only after the registry asks for
    /// it with a `Basic` challenge, and never over plain HTTP).
    pub username: Option<String>,
    /// Password for `username`.
    pub password: Option<String>,
}

/// Pull failures.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    /// A bad reference or one without a registry host.
    #[error("{0}")]
    Reference(String),
    /// The registry is not configured for how it must be reached.
    #[error("registry {host}: {why}")]
    Config {
        /// Registry.
        host: String,
        /// What is missing.
        why: String,
    },
    /// Network or HTTP failure.
    #[error("registry {host}: {step}: {why}")]
    Transport {
        /// Registry.
        host: String,
        /// Step.
        step: &'static str,
        /// What failed.
        why: String,
    },
    /// The registry has no such manifest or blob.
    #[error("registry {host}: {what} not found")]
    NotFound {
        /// Registry.
        host: String,
        /// What.
        what: String,
    },
    /// The store refused or failed.
    #[error(transparent)]
    Store(#[from] ImageError),
}

/// Progress of one pull.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// The manifest was resolved.
    Resolved {
        /// Manifest digest.
        manifest: Digest,
        /// Layer count.
        layers: usize,
    },
    /// Bytes of one layer blob so far (`done == total` when complete).
    Layer {
        /// Blob digest.
        digest: Digest,
        /// Bytes fetched.
        done: u64,
        /// Bytes in all.
        total: u64,
        /// Already stored: not fetched.
        cached: bool,
    },
    /// Unpacking and verifying the layers.
    Unpacking,
}

/// The configured registries.
#[derive(Debug, Clone, Default)]
pub struct Registries(pub BTreeMap<String, RegistryFile>);

const MAX_DOCUMENT: usize = 4 << 20;

const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

struct Client {
    host: String,
    tls: Option<(
        tokio_rustls::TlsConnector,
        rustls::pki_types::ServerName<'static>,
    )>,
    /// "Basic …" for a registry with credentials.
    basic: Option<String>,
}

impl Client {
    fn new(host: &str, cfg: Option<&RegistryFile>) -> Result<Self, PullError> {
        let cfg = cfg.cloned().unwrap_or_default();
        let conf = |why: String| PullError::Config {
            host: host.to_owned(),
            why,
        };
        let basic = match (&cfg.username, &cfg.password) {
            (Some(u), Some(p)) => {
                use base64::Engine as _;
                Some(format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
                ))
            }
            (None, None) => None,
            _ => return Err(conf("username and password go together".into())),
        };
        if cfg.insecure {
            if basic.is_some() {
                return Err(conf(
                    "credentials are never sent over plain HTTP: use ca_file (HTTPS) or drop them"
                        .into(),
                ));
            }
            return Ok(Self {
                host: host.to_owned(),
                tls: None,
                basic,
            });
        }
        let ca = cfg.ca_file.ok_or_else(|| {
            conf("not configured: set ca_file (HTTPS) or insecure = true (plain HTTP) under [registries] in the daemon's config".into())
        })?;
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls::pki_types::CertificateDer::pem_file_iter(&ca)
            .map_err(|e| conf(format!("ca_file {}: {e}", ca.display())))?
        {
            let c = c.map_err(|e| conf(format!("ca_file {}: {e}", ca.display())))?;
            roots
                .add(c)
                .map_err(|e| conf(format!("ca_file {}: {e}", ca.display())))?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| conf(format!("TLS: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = host.rsplit_once(':').map_or(host, |(h, _)| h).to_owned();
        let name = rustls::pki_types::ServerName::try_from(name)
            .map_err(|e| conf(format!("server name: {e}")))?;
        Ok(Self {
            host: host.to_owned(),
            tls: Some((tokio_rustls::TlsConnector::from(Arc::new(config)), name)),
            basic,
        })
    }

    fn err(&self, step: &'static str, why: impl std::fmt::Display) -> PullError {
        PullError::Transport {
            host: self.host.clone(),
            step,
            why: why.to_string(),
        }
    }

    /// GET `path`; returns the response with its body unread.
    async fn get(
        &self,
        path: &str,
        accept: &str,
    ) -> Result<hyper::Response<hyper::body::Incoming>, PullError> {
        let resp = self.get_once(path, accept, None).await?;
        if resp.status() != hyper::StatusCode::UNAUTHORIZED {
            return Ok(resp);
        }
        let challenge = resp
            .headers()
            .get(hyper::header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        match (&self.basic, challenge.get(..6)) {
            (Some(basic), Some(scheme)) if scheme.eq_ignore_ascii_case("basic ") => {
                self.get_once(path, accept, Some(basic)).await
            }
            (None, Some(scheme)) if scheme.eq_ignore_ascii_case("basic ") => {
                Err(PullError::Config {
                    host: self.host.clone(),
                    why: "the registry asks for credentials: set username and password under [registries]".into(),
                })
            }
            _ => Err(self.err(
                "authenticate",
                format!("unsupported challenge {challenge:?} (only HTTP basic authentication is implemented)"),
            )),
        }
    }

    async fn get_once(
        &self,
        path: &str,
        accept: &str,
        authorization: Option<&str>,
    ) -> Result<hyper::Response<hyper::body::Incoming>, PullError> {
        let addr = if self.host.contains(':') {
            self.host.clone()
        } else if self.tls.is_some() {
            format!("{}:443", self.host)
        } else {
            format!("{}:80", self.host)
        };
        let tcp = tokio::net::TcpStream::connect(&addr)
            .await
            .map_err(|e| self.err("connect", e))?;
        let mut req = hyper::Request::get(path)
            .header(hyper::header::HOST, &self.host)
            .header(hyper::header::ACCEPT, accept)
            .header(hyper::header::USER_AGENT, "sandboxd");
        if let Some(a) = authorization {
            req = req.header(hyper::header::AUTHORIZATION, a);
        }
        let req = req
            .body(Empty::<Bytes>::new())
            .map_err(|e| self.err("request", e))?;
        macro_rules! send {
            ($io:expr) => {{
                let (mut sender, conn) =
                    hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new($io))
                        .await
                        .map_err(|e| self.err("HTTP handshake", e))?;
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                sender
                    .send_request(req)
                    .await
                    .map_err(|e| self.err("request", e))?
            }};
        }
        let resp = match &self.tls {
            None => send!(tcp),
            Some((connector, name)) => {
                let tls = connector
                    .connect(name.clone(), tcp)
                    .await
                    .map_err(|e| self.err("TLS handshake", e))?;
                send!(tls)
            }
        };
        Ok(resp)
    }

    /// A small document, verified against `want` when given.
    async fn document(
        &self,
        path: &str,
        accept: &str,
        what: &str,
        want: Option<&Digest>,
    ) -> Result<(Vec<u8>, Digest), PullError> {
        let resp = self.get(path, accept).await?;
        self.check_status(&resp, what)?;
        let mut body = resp.into_body();
        let mut out = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| self.err("read", e))?;
            if let Ok(data) = frame.into_data() {
                if out.len() + data.len() > MAX_DOCUMENT {
                    return Err(
                        ImageError::TooLarge(format!("{what}: over {MAX_DOCUMENT} bytes")).into(),
                    );
                }
                out.extend_from_slice(&data);
            }
        }
        let got = sandboxd_images::sha256(&out);
        if let Some(want) = want {
            if &got != want {
                return Err(ImageError::DigestMismatch {
                    what: what.to_owned(),
                    expected: want.to_string(),
                    actual: got.to_string(),
                }
                .into());
            }
        }
        Ok((out, got))
    }

    fn check_status(
        &self,
        resp: &hyper::Response<hyper::body::Incoming>,
        what: &str,
    ) -> Result<(), PullError> {
        match resp.status() {
            s if s.is_success() => Ok(()),
            hyper::StatusCode::NOT_FOUND => Err(PullError::NotFound {
                host: self.host.clone(),
                what: what.to_owned(),
            }),
            hyper::StatusCode::UNAUTHORIZED | hyper::StatusCode::FORBIDDEN => {
                Err(PullError::Config {
                    host: self.host.clone(),
                    why: format!(
                        "{what}: the configured credentials were refused (HTTP {})",
                        resp.status()
                    ),
                })
            }
            s => Err(self.err("GET", format!("{what}: HTTP {s}"))),
        }
    }
}

/// Pulls `reference` into `store`, reporting progress on `progress`.
pub async fn pull(
    store: &Arc<Store>,
    registries: &Registries,
    reference: &str,
    progress: &tokio::sync::mpsc::Sender<Progress>,
) -> Result<ImageRecord, PullError> {
    let r = Reference::parse(reference).map_err(|e| PullError::Reference(e.to_string()))?;
    let host = r.registry().ok_or_else(|| {
        PullError::Reference(format!(
            "{reference:?} names no registry host (e.g. 127.0.0.1:5000/{}); there is no default registry",
            r.name
        ))
    })?;
    let client = Client::new(host, registries.0.get(host))?;
    let repo = r.repository().to_owned();
    // GC waits while this pull adds content.
    let s = store.clone();
    let writer = tokio::task::spawn_blocking(move || s.writer())
        .await
        .map_err(|e| client.err("lock", e))??;
    let result = fetch(store, &client, &r, &repo, progress).await;
    drop(writer);
    if let Err(PullError::Store(ImageError::DigestMismatch { .. })) = &result {
        // A blob that lied: whatever this pull stored and no ref reaches goes.
        let s = store.clone();
        let _ = tokio::task::spawn_blocking(move || s.gc()).await;
    }
    result
}

async fn fetch(
    store: &Arc<Store>,
    client: &Client,
    r: &Reference,
    repo: &str,
    progress: &tokio::sync::mpsc::Sender<Progress>,
) -> Result<ImageRecord, PullError> {
    let tag_or_digest = r
        .digest
        .as_ref()
        .map(ToString::to_string)
        .or_else(|| r.tag.clone())
        .unwrap_or_else(|| oci::DEFAULT_TAG.to_owned());
    let (mut bytes, mut digest) = client
        .document(
            &format!("/v2/{repo}/manifests/{tag_or_digest}"),
            MANIFEST_ACCEPT,
            &format!("manifest {repo}:{tag_or_digest}"),
            r.digest.as_ref(),
        )
        .await?;
    let manifest = match oci::parse_manifest(&bytes).map_err(ImageError::from)? {
        ManifestKind::Manifest(m) => m,
        ManifestKind::Index(i) => {
            let d = i
                .select(store.platform())
                .map_err(ImageError::from)?
                .digest
                .clone();
            let (b, got) = client
                .document(
                    &format!("/v2/{repo}/manifests/{d}"),
                    MANIFEST_ACCEPT,
                    &format!("manifest {d}"),
                    Some(&d),
                )
                .await?;
            bytes = b;
            digest = got;
            match oci::parse_manifest(&bytes).map_err(ImageError::from)? {
                ManifestKind::Manifest(m) => m,
                ManifestKind::Index(_) => {
                    return Err(
                        ImageError::Archive(format!("index entry {d} is another index")).into(),
                    );
                }
            }
        }
    };
    let _ = progress
        .send(Progress::Resolved {
            manifest: digest.clone(),
            layers: manifest.layers.len(),
        })
        .await;
    if !store.has_blob(&manifest.config.digest) {
        let cd = manifest.config.digest.clone();
        let (config, _) = client
            .document(
                &format!("/v2/{repo}/blobs/{cd}"),
                "*/*",
                &format!("config {cd}"),
                Some(&cd),
            )
            .await?;
        let s = store.clone();
        tokio::task::spawn_blocking(move || s.put_blob_bytes(&config))
            .await
            .map_err(|e| client.err("store", e))??;
    }
    for l in &manifest.layers {
        oci::Compression::of_media_type(&l.media_type).map_err(ImageError::from)?;
        if store.has_blob(&l.digest) {
            let _ = progress
                .send(Progress::Layer {
                    digest: l.digest.clone(),
                    done: l.size,
                    total: l.size,
                    cached: true,
                })
                .await;
            continue;
        }
        blob(store, client, repo, &l.digest, l.size, progress).await?;
    }
    let _ = progress.send(Progress::Unpacking).await;
    let names: Vec<String> = match (r.tagged(), &r.digest) {
        (Some(t), _) => vec![t],
        (None, Some(d)) => vec![format!("{}@{d}", r.name)],
        (None, None) => Vec::new(),
    };
    let s = store.clone();
    let rec = tokio::task::spawn_blocking(move || s.commit_manifest_bytes(&bytes, &names))
        .await
        .map_err(|e| client.err("store", e))??;
    Ok(rec)
}

/// Streams one blob into a temporary file, hashing it, and stores it only
/// when the digest and size match.
async fn blob(
    store: &Arc<Store>,
    client: &Client,
    repo: &str,
    digest: &Digest,
    size: u64,
    progress: &tokio::sync::mpsc::Sender<Progress>,
) -> Result<(), PullError> {
    let resp = client
        .get(&format!("/v2/{repo}/blobs/{digest}"), "*/*")
        .await?;
    client.check_status(&resp, &format!("blob {digest}"))?;
    let path = store.download_path(digest);
    let mut file = tokio::fs::File::create(&path)
        .await
        .map_err(|e| client.err("create download file", e))?;
    let result = async {
        let mut body = resp.into_body();
        let mut hash = Sha256::new();
        let mut done = 0u64;
        let mut last = 0u64;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| client.err("read blob", e))?;
            if let Ok(data) = frame.into_data() {
                done += data.len() as u64;
                if done > size {
                    return Err(ImageError::DigestMismatch {
                        what: format!("blob {digest} (more bytes than its descriptor's {size})"),
                        expected: digest.to_string(),
                        actual: "(oversized)".into(),
                    }
                    .into());
                }
                hash.update(&data);
                file.write_all(&data)
                    .await
                    .map_err(|e| client.err("write blob", e))?;
                if done - last >= 1 << 20 || done == size {
                    last = done;
                    let _ = progress
                        .send(Progress::Layer {
                            digest: digest.clone(),
                            done,
                            total: size,
                            cached: false,
                        })
                        .await;
                }
            }
        }
        file.flush()
            .await
            .map_err(|e| client.err("write blob", e))?;
        let h: [u8; 32] = hash.finalize().into();
        let got = Digest::from_sha256(&h);
        if &got != digest || done != size {
            return Err(PullError::from(ImageError::DigestMismatch {
                what: format!("blob {digest} ({done} of {size} bytes)"),
                expected: digest.to_string(),
                actual: got.to_string(),
            }));
        }
        let s = store.clone();
        let (p, d) = (path.clone(), digest.clone());
        tokio::task::spawn_blocking(move || s.adopt_blob(&p, &d))
            .await
            .map_err(|e| client.err("store", e))??;
        Ok(())
    }
    .await;
    let _ = tokio::fs::remove_file(&path).await;
    result
}
