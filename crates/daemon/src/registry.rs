//! Pull from an OCI distribution registry (v2 API) into the image store.
//! A small HTTP/1.1 client on hyper (already in the build through tonic):
//! plain HTTP only for a registry the configuration marks `insecure`,
//! otherwise TLS with the configured CA. Every document and blob is
//! verified against its digest before the store keeps it; layers already
//! stored are not fetched again (deduplication, and resumption of an
//! interrupted pull at blob granularity).
//!
//! Authentication answers the registry's challenge: HTTP basic with the
//! configured credentials, or the token protocol (`Bearer realm=…`): the
//! realm (HTTPS for an HTTPS registry) is asked for a token, with the
//! credentials when configured, anonymously otherwise; tokens are cached
//! per registry and scope for their lifetime and sent only to the
//! registry itself, never to a host a download is redirected to.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use rustls::pki_types::pem::PemObject;
use sandboxd_core::oci::auth::{self, Challenge, Url};
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
    /// Credentials: sent only after the registry asks (a `Basic`
    /// challenge: to the registry; a `Bearer` one: to its HTTPS token
    /// realm), and never over plain HTTP.
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
    /// The registry or its token server refused the credentials (or the
    /// anonymous token) for what was asked.
    #[error("registry {host}: {why}")]
    Denied {
        /// Registry.
        host: String,
        /// What was refused, and by whom.
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

/// The configured registries, and the bearer tokens their token servers
/// issued (shared by every pull of this daemon).
#[derive(Debug, Default)]
pub struct Registries {
    config: BTreeMap<String, RegistryFile>,
    tokens: Arc<TokenCache>,
}

impl Registries {
    /// The registries of the daemon's configuration.
    pub fn new(config: BTreeMap<String, RegistryFile>) -> Self {
        Self {
            config,
            tokens: Arc::default(),
        }
    }
}

/// Tokens by (registry host, scope), each with the instant it stops being
/// used.
#[derive(Debug, Default)]
struct TokenCache(Mutex<HashMap<(String, String), (String, Instant)>>);

impl TokenCache {
    fn get(&self, host: &str, scope: &str) -> Option<String> {
        // A poisoned lock only means another pull panicked mid-insert:
        // the map itself is still a valid map.
        let mut m = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let key = (host.to_owned(), scope.to_owned());
        match m.get(&key) {
            Some((t, until)) if Instant::now() < *until => Some(t.clone()),
            Some(_) => {
                m.remove(&key);
                None
            }
            None => None,
        }
    }

    fn put(&self, host: &str, scope: &str, token: &auth::Token) {
        if token.lifetime_secs == 0 {
            return;
        }
        let until = Instant::now() + Duration::from_secs(token.lifetime_secs);
        let mut m = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        m.retain(|_, (_, u)| Instant::now() < *u);
        m.insert(
            (host.to_owned(), scope.to_owned()),
            (token.token.clone(), until),
        );
    }

    fn forget(&self, host: &str, scope: &str) {
        let mut m = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        m.remove(&(host.to_owned(), scope.to_owned()));
    }
}

/// Redirects followed for one request.
const MAX_REDIRECTS: usize = 5;

const MAX_DOCUMENT: usize = 4 << 20;

const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

struct Client {
    host: String,
    /// The registry's base URL (`https://HOST` unless `insecure`).
    base: Url,
    /// TLS with the configured CA (for the registry, its realm and
    /// redirects), when `ca_file` is set.
    tls: Option<tokio_rustls::TlsConnector>,
    /// "Basic …" for a registry with credentials.
    basic: Option<String>,
    tokens: Arc<TokenCache>,
    /// The scope a pull of this repository needs ("repository:NAME:pull").
    scope: String,
}

impl Client {
    fn new(
        host: &str,
        cfg: Option<&RegistryFile>,
        tokens: Arc<TokenCache>,
        repo: &str,
    ) -> Result<Self, PullError> {
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
        if cfg.insecure && basic.is_some() {
            return Err(conf(
                "credentials are never sent over plain HTTP: use ca_file (HTTPS) or drop them"
                    .into(),
            ));
        }
        let base = Url::parse(&format!(
            "{}://{host}/",
            if cfg.insecure { "http" } else { "https" }
        ))
        .map_err(|e| conf(e.to_string()))?;
        let tls = match cfg.ca_file {
            None if cfg.insecure => None,
            None => {
                return Err(conf("not configured: set ca_file (HTTPS) or insecure = true (plain HTTP) under [registries] in the daemon's config".into()));
            }
            Some(ca) => {
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
                Some(tokio_rustls::TlsConnector::from(Arc::new(config)))
            }
        };
        Ok(Self {
            host: host.to_owned(),
            base,
            tls,
            basic,
            tokens,
            scope: format!("repository:{repo}:pull"),
        })
    }

    fn err(&self, step: &'static str, why: impl std::fmt::Display) -> PullError {
        PullError::Transport {
            host: self.host.clone(),
            step,
            why: why.to_string(),
        }
    }

    fn conf(&self, why: impl std::fmt::Display) -> PullError {
        PullError::Config {
            host: self.host.clone(),
            why: why.to_string(),
        }
    }

    fn denied(&self, why: String) -> PullError {
        PullError::Denied {
            host: self.host.clone(),
            why,
        }
    }

    /// GET `path` on the registry, answering its authentication challenge
    /// and following redirects; returns the response with its body unread.
    async fn get(
        &self,
        path: &str,
        accept: &str,
        what: &str,
    ) -> Result<hyper::Response<hyper::body::Incoming>, PullError> {
        let url = Url {
            target: path.to_owned(),
            ..self.base.clone()
        };
        // A cached token for this repository goes with the first request.
        let mut authorization = self
            .tokens
            .get(&self.host, &self.scope)
            .map(|t| format!("Bearer {t}"));
        let mut resp = self
            .get_once(&url, accept, authorization.as_deref())
            .await?;
        if resp.status() == hyper::StatusCode::UNAUTHORIZED {
            let header = resp
                .headers()
                .get(hyper::header::WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            let challenge =
                auth::parse_challenge(&header).map_err(|e| self.err("authenticate", e))?;
            let refused = match challenge {
                Challenge::Basic => {
                    let Some(basic) = &self.basic else {
                        return Err(self.conf("the registry asks for credentials: set username and password under [registries]"));
                    };
                    authorization = Some(basic.clone());
                    format!("{what}: the configured credentials were refused")
                }
                Challenge::Bearer {
                    realm,
                    service,
                    scopes,
                } => {
                    // A token that was refused is not offered again.
                    self.tokens.forget(&self.host, &self.scope);
                    let token = self.token(&realm, service.as_deref(), scopes).await?;
                    authorization = Some(format!("Bearer {token}"));
                    if self.basic.is_some() {
                        format!(
                            "{what}: access denied to the token the configured credentials obtained from {realm}"
                        )
                    } else {
                        format!(
                            "{what}: access denied to the anonymous token from {realm} (set username and password under [registries] if the repository is private)"
                        )
                    }
                }
            };
            resp = self
                .get_once(&url, accept, authorization.as_deref())
                .await?;
            if matches!(
                resp.status(),
                hyper::StatusCode::UNAUTHORIZED | hyper::StatusCode::FORBIDDEN
            ) {
                self.tokens.forget(&self.host, &self.scope);
                return Err(self.denied(format!("{refused} (HTTP {})", resp.status())));
            }
        }
        let mut at = url;
        for _ in 0..MAX_REDIRECTS {
            if !resp.status().is_redirection() || resp.status() == hyper::StatusCode::NOT_MODIFIED {
                return Ok(resp);
            }
            let location = resp
                .headers()
                .get(hyper::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| {
                    self.err(
                        "redirect",
                        format!("{what}: HTTP {} without a Location", resp.status()),
                    )
                })?;
            let next = at.join(location).map_err(|e| self.err("redirect", e))?;
            auth::check_redirect(&next, self.base.https).map_err(|e| self.err("redirect", e))?;
            // Credentials and tokens are the registry's: a download
            // redirected to another host (a CDN, S3) goes without them.
            let keep = next.same_origin(&self.base);
            resp = self
                .get_once(&next, accept, authorization.as_deref().filter(|_| keep))
                .await?;
            at = next;
        }
        if resp.status().is_redirection() {
            return Err(self.err(
                "redirect",
                format!("{what}: more than {MAX_REDIRECTS} redirects"),
            ));
        }
        Ok(resp)
    }

    /// Asks `realm` for a token for `scopes` (the repository's pull scope
    /// when the challenge names none), with the configured credentials if
    /// any; caches it.
    async fn token(
        &self,
        realm: &str,
        service: Option<&str>,
        scopes: Vec<String>,
    ) -> Result<String, PullError> {
        let realm_url = Url::parse(realm).map_err(|e| self.err("token realm", e))?;
        auth::check_realm(&realm_url, self.base.https).map_err(|e| self.conf(e))?;
        let scopes = if scopes.is_empty() {
            vec![self.scope.clone()]
        } else {
            scopes
        };
        let url = realm_url.with_token_query(service, &scopes);
        // check_realm keeps a plain-HTTP realm to insecure registries,
        // which have no credentials (Client::new): this is belt and braces.
        let credentials = self.basic.as_deref().filter(|_| url.https);
        let resp = self.get_once(&url, "application/json", credentials).await?;
        match resp.status() {
            s if s.is_success() => {}
            hyper::StatusCode::UNAUTHORIZED | hyper::StatusCode::FORBIDDEN => {
                return Err(if self.basic.is_some() {
                    self.denied(format!(
                        "the token server {realm} refused the configured credentials (HTTP {})",
                        resp.status()
                    ))
                } else {
                    self.conf(format!(
                        "the token server {realm} asks for credentials (HTTP {}): set username and password under [registries]",
                        resp.status()
                    ))
                });
            }
            s => return Err(self.err("token", format!("{realm}: HTTP {s}"))),
        }
        let body = self.read_small(resp, "token answer").await?;
        let token = auth::parse_token(&body).map_err(|e| self.err("token", e))?;
        self.tokens.put(&self.host, &scopes.join(" "), &token);
        Ok(token.token)
    }

    async fn get_once(
        &self,
        url: &Url,
        accept: &str,
        authorization: Option<&str>,
    ) -> Result<hyper::Response<hyper::body::Incoming>, PullError> {
        let tcp = tokio::net::TcpStream::connect(url.socket_addr())
            .await
            .map_err(|e| self.err("connect", format!("{}: {e}", url.authority)))?;
        let mut req = hyper::Request::get(url.target.as_str())
            .header(hyper::header::HOST, url.authority.as_str())
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
        let resp = if url.https {
            let connector = self.tls.as_ref().ok_or_else(|| {
                self.conf(format!(
                    "{url} is HTTPS: set ca_file under [registries] (the daemon ships no public root store)"
                ))
            })?;
            let name = rustls::pki_types::ServerName::try_from(url.host().to_owned())
                .map_err(|e| self.conf(format!("server name {}: {e}", url.host())))?;
            let tls = connector
                .connect(name, tcp)
                .await
                .map_err(|e| self.err("TLS handshake", format!("{}: {e}", url.authority)))?;
            send!(tls)
        } else {
            send!(tcp)
        };
        Ok(resp)
    }

    /// A body of at most MAX_DOCUMENT bytes.
    async fn read_small(
        &self,
        resp: hyper::Response<hyper::body::Incoming>,
        what: &str,
    ) -> Result<Vec<u8>, PullError> {
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
        Ok(out)
    }

    /// A small document, verified against `want` when given.
    async fn document(
        &self,
        path: &str,
        accept: &str,
        what: &str,
        want: Option<&Digest>,
    ) -> Result<(Vec<u8>, Digest), PullError> {
        let resp = self.get(path, accept, what).await?;
        self.check_status(&resp, what)?;
        let out = self.read_small(resp, what).await?;
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
                Err(self.denied(format!("{what}: access denied (HTTP {})", resp.status())))
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
    let repo = r.repository().to_owned();
    let client = Client::new(
        host,
        registries.config.get(host),
        registries.tokens.clone(),
        &repo,
    )?;
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
        .get(
            &format!("/v2/{repo}/blobs/{digest}"),
            "*/*",
            &format!("blob {digest}"),
        )
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
