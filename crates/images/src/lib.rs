//! sandboxd's OCI image store, under `IMAGES_DIR/.oci` (a dot-directory:
//! never a directory image's name, which cannot start with '.'):
//!
//! ```text
//! .oci/                      mode 0700: unpacked layers keep setuid bits
//!   blobs/sha256/<hex>       manifests, configs, layer blobs, by digest
//!   layers/sha256/<hex>/     unpacked layers, by diff_id (uncompressed digest)
//!   refs.json                "name:tag" / "name@sha256:..." -> manifest digest
//!   tmp/                     work in progress (renamed into place when whole)
//!   lock                     shared by writers, exclusive for GC
//! ```
//!
//! An image is a manifest blob naming a config blob and a chain of layer
//! blobs; the config's `rootfs.diff_ids` name the unpacked layers. Every
//! blob is verified against its digest before it is kept, every layer
//! against its diff_id; a half-done import leaves only `tmp/` entries,
//! which are removed.

#![forbid(unsafe_op_in_unsafe_fn)]

mod flatten;
mod import;
mod sys;
mod unpack;

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::io::Read;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sandboxd_core::oci::{
    self, Compression, Digest, ImageConfig, ImageManifest, ManifestKind, Platform, Reference,
    UnpackLimits, WhiteoutFormat,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

pub use flatten::flatten;
pub use import::import_archive;

/// The store's directory inside the images dir.
pub const STORE_DIR: &str = ".oci";

/// Image store failures.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// Hostile or malformed content refused.
    #[error("refused: {0}")]
    Refused(String),
    /// A cap was exceeded (tar bomb).
    #[error("too large: {0}")]
    TooLarge(String),
    /// A blob or layer whose content does not match its digest.
    #[error("digest mismatch: {what}: expected {expected}, got {actual}")]
    DigestMismatch {
        /// What was checked.
        what: String,
        /// Declared digest.
        expected: String,
        /// Computed digest.
        actual: String,
    },
    /// An archive that is not a readable tar, or lacks what it must have.
    #[error("archive: {0}")]
    Archive(String),
    /// A malformed document or reference.
    #[error("{0}")]
    Oci(#[from] oci::OciError),
    /// No image by that reference.
    #[error("no image {0:?} in the store")]
    NotFound(String),
    /// The image's platform does not run here.
    #[error("image {reference} is for {image}, this daemon runs {host}")]
    Platform {
        /// Reference.
        reference: String,
        /// Image platform.
        image: String,
        /// Host platform.
        host: String,
    },
    /// A host filesystem operation.
    #[error("{step} {path}: {source}")]
    Io {
        /// The step.
        step: &'static str,
        /// Path or entry involved.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
}

fn io(step: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> ImageError + use<> {
    let path = path.display().to_string();
    move |source| ImageError::Io { step, path, source }
}

/// One stored image, as listed and inspected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImageRecord {
    /// The references naming it ("name:tag", "name@sha256:...").
    pub refs: Vec<String>,
    /// Manifest digest (the image's id).
    pub manifest: Digest,
    /// Config digest.
    pub config_digest: Digest,
    /// The config.
    pub config: ImageConfig,
    /// Layer blobs, base first.
    pub layers: Vec<Digest>,
    /// Sum of the layer blobs' sizes (what a pull transfers).
    pub size: u64,
}

impl ImageRecord {
    /// The unpacked layer directories, base first, relative to the images
    /// dir (a backend opens them from there without following symlinks).
    pub fn layer_dirs(&self) -> Vec<PathBuf> {
        self.config.rootfs.diff_ids.iter().map(layer_rel).collect()
    }
}

/// `.oci/layers/sha256/<hex>` (relative to the images dir).
pub fn layer_rel(diff_id: &Digest) -> PathBuf {
    Path::new(STORE_DIR)
        .join("layers/sha256")
        .join(diff_id.hex())
}

/// What a GC removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GcReport {
    /// Blobs removed.
    pub blobs: u64,
    /// Unpacked layers removed.
    pub layers: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Refs {
    refs: BTreeMap<String, Digest>,
}

/// Tells GC which manifests sandboxes still run from (their layers are
/// mounted, whatever the refs say now).
pub type InUse = Box<dyn Fn() -> Vec<Digest> + Send + Sync>;

/// The image store.
pub struct Store {
    root: PathBuf,
    limits: UnpackLimits,
    platform: Platform,
    whiteouts: WhiteoutFormat,
    in_use: std::sync::OnceLock<InUse>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("root", &self.root)
            .field("limits", &self.limits)
            .field("platform", &self.platform)
            .finish_non_exhaustive()
    }
}

static TMP_SEQ: AtomicU64 = AtomicU64::new(0);

/// A guard holding the store lock (shared or exclusive) until dropped.
#[derive(Debug)]
pub struct LockGuard(#[allow(dead_code)] std::fs::File);

impl Store {
    /// Opens (creating) the store under `images_dir`.
    pub fn open(images_dir: &Path, limits: UnpackLimits) -> Result<Self, ImageError> {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        let root = images_dir.join(STORE_DIR);
        match std::fs::DirBuilder::new().mode(0o700).create(&root) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io("create store directory", &root)(e)),
        }
        // Checked before anything follows the path: a planted symlink is
        // never chmod'ed or written through.
        let meta = std::fs::symlink_metadata(&root).map_err(io("stat store", &root))?;
        if !meta.is_dir() {
            return Err(ImageError::Refused(format!(
                "{} is not a directory (a symlink?)",
                root.display()
            )));
        }
        // Layers keep the image's setuid bits: no host user may reach them.
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o700))
            .map_err(io("chmod store", &root))?;
        for d in ["blobs", "blobs/sha256", "layers", "layers/sha256", "tmp"] {
            let p = root.join(d);
            match std::fs::DirBuilder::new().mode(0o700).create(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io("create store directory", &p)(e)),
            }
        }
        Ok(Self {
            root,
            limits,
            platform: Platform::host(),
            whiteouts: WhiteoutFormat::host(),
            in_use: std::sync::OnceLock::new(),
        })
    }

    /// The same store unpacking new layers with whiteouts in `format`
    /// (tests of the other OS's form; a store keeps one format).
    pub fn with_whiteout_format(mut self, format: WhiteoutFormat) -> Self {
        self.whiteouts = format;
        self
    }

    /// Sets how GC learns which manifests sandboxes run from (once).
    pub fn set_in_use(&self, f: InUse) {
        let _ = self.in_use.set(f);
    }

    /// The store directory (`IMAGES_DIR/.oci`).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The unpack caps.
    pub fn limits(&self) -> &UnpackLimits {
        &self.limits
    }

    /// The platform images must be for.
    pub fn platform(&self) -> &Platform {
        &self.platform
    }

    fn lock(&self, exclusive: bool) -> Result<LockGuard, ImageError> {
        let p = self.root.join("lock");
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&p)
            .map_err(io("open store lock", &p))?;
        sys::lock(&f, exclusive).map_err(|e| ImageError::Io {
            step: "lock store",
            path: p.display().to_string(),
            source: e.into(),
        })?;
        Ok(LockGuard(f))
    }

    /// The shared lock a writer holds while it adds content (GC waits).
    pub fn writer(&self) -> Result<LockGuard, ImageError> {
        self.lock(false)
    }

    /// A fresh private directory under `tmp/`.
    pub(crate) fn tmp_dir(&self, what: &str) -> Result<TmpDir, ImageError> {
        let p = self.root.join("tmp").join(format!(
            "{what}-{}-{}",
            std::process::id(),
            TMP_SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir(&p).map_err(io("create temporary directory", &p))?;
        Ok(TmpDir(p))
    }

    /// Path of blob `d`.
    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(d.hex())
    }

    /// Whether blob `d` is stored.
    pub fn has_blob(&self, d: &Digest) -> bool {
        self.blob_path(d).is_file()
    }

    /// Reads a stored blob, re-verifying it (small documents only).
    pub fn read_blob(&self, d: &Digest) -> Result<Vec<u8>, ImageError> {
        let p = self.blob_path(d);
        let bytes = std::fs::read(&p).map_err(io("read blob", &p))?;
        check_digest(&format!("blob {d}"), d, &bytes)?;
        Ok(bytes)
    }

    /// Moves a verified file into the blob store as `d` (a blob already
    /// there is kept: same digest, same content).
    pub(crate) fn put_blob_file(&self, file: &Path, d: &Digest) -> Result<bool, ImageError> {
        let to = self.blob_path(d);
        if to.is_file() {
            return Ok(false);
        }
        std::fs::rename(file, &to).map_err(io("store blob", &to))?;
        Ok(true)
    }

    /// Stores `bytes` as a blob; returns its digest and whether it is new.
    pub fn put_blob_bytes(&self, bytes: &[u8]) -> Result<(Digest, bool), ImageError> {
        let d = sha256(bytes);
        if self.has_blob(&d) {
            return Ok((d, false));
        }
        let tmp = self.tmp_dir("blob")?;
        let p = tmp.0.join("blob");
        std::fs::write(&p, bytes).map_err(io("write blob", &p))?;
        let new = self.put_blob_file(&p, &d)?;
        Ok((d, new))
    }

    /// Whether layer `diff_id` is unpacked.
    pub fn has_layer(&self, diff_id: &Digest) -> bool {
        self.root.join("layers/sha256").join(diff_id.hex()).is_dir()
    }

    /// Unpacks layer blob `blob` (stored) into `layers/`, verifying its
    /// diff_id; a layer already unpacked is kept.
    pub fn unpack_layer(
        &self,
        blob: &Digest,
        compression: Compression,
        diff_id: &Digest,
    ) -> Result<(), ImageError> {
        if self.has_layer(diff_id) {
            return Ok(());
        }
        let src = self.blob_path(blob);
        let file = std::fs::File::open(&src).map_err(io("open layer blob", &src))?;
        self.unpack_from(file, compression, diff_id)
    }

    /// Unpacks a layer from a reader (see [`Store::unpack_layer`]).
    pub fn unpack_from<R: Read>(
        &self,
        reader: R,
        compression: Compression,
        diff_id: &Digest,
    ) -> Result<(), ImageError> {
        let tmp = self.tmp_dir("layer")?;
        let root_path = tmp.0.join("root");
        std::fs::create_dir(&root_path).map_err(io("create layer root", &root_path))?;
        let root = sys::open_dir(&root_path).map_err(|e| ImageError::Io {
            step: "open layer root",
            path: root_path.display().to_string(),
            source: e.into(),
        })?;
        sys::chown_chmod(root.as_fd(), 0, 0, 0o755).map_err(|e| ImageError::Io {
            step: "chmod layer root",
            path: root_path.display().to_string(),
            source: e.into(),
        })?;
        let reader = std::io::BufReader::new(reader);
        let actual = match compression {
            Compression::None => {
                let mut m = unpack::Metered::new(reader, self.limits.max_bytes);
                unpack::unpack(&mut m, &root, &self.limits, self.whiteouts)?;
                m.finish().map_err(|e| unpack::read_error("layer", e))?.0
            }
            Compression::Gzip => {
                let gz = flate2::read::MultiGzDecoder::new(reader);
                let mut m = unpack::Metered::new(gz, self.limits.max_bytes);
                unpack::unpack(&mut m, &root, &self.limits, self.whiteouts)?;
                m.finish().map_err(|e| unpack::read_error("layer", e))?.0
            }
        };
        if &actual != diff_id {
            return Err(ImageError::DigestMismatch {
                what: "layer diff_id (uncompressed content)".to_owned(),
                expected: diff_id.to_string(),
                actual: actual.to_string(),
            });
        }
        let layers =
            sys::open_dir(&self.root.join("layers/sha256")).map_err(|e| ImageError::Io {
                step: "open layers directory",
                path: self.root.display().to_string(),
                source: e.into(),
            })?;
        let tmpfd = sys::open_dir(&tmp.0).map_err(|e| ImageError::Io {
            step: "open temporary directory",
            path: tmp.0.display().to_string(),
            source: e.into(),
        })?;
        match sys::rename_at(
            tmpfd.as_fd(),
            OsStr::new("root"),
            layers.as_fd(),
            OsStr::new(diff_id.hex()),
        ) {
            Ok(()) => Ok(()),
            // Another import unpacked the same layer first.
            Err(nix::errno::Errno::EEXIST | nix::errno::Errno::ENOTEMPTY) => Ok(()),
            Err(e) => Err(ImageError::Io {
                step: "store layer",
                path: diff_id.to_string(),
                source: e.into(),
            }),
        }
    }

    fn read_refs(&self) -> Result<Refs, ImageError> {
        let p = self.root.join("refs.json");
        match std::fs::read(&p) {
            Ok(b) => serde_json::from_slice(&b)
                .map_err(|e| ImageError::Archive(format!("{}: {e}", p.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Refs::default()),
            Err(e) => Err(io("read refs", &p)(e)),
        }
    }

    fn write_refs(&self, refs: &Refs) -> Result<(), ImageError> {
        let tmp = self.tmp_dir("refs")?;
        let p = tmp.0.join("refs.json");
        let bytes = serde_json::to_vec_pretty(refs)
            .map_err(|e| ImageError::Archive(format!("encoding refs: {e}")))?;
        std::fs::write(&p, bytes).map_err(io("write refs", &p))?;
        let to = self.root.join("refs.json");
        std::fs::rename(&p, &to).map_err(io("replace refs", &to))
    }

    /// Edits refs.json under its own exclusive lock.
    fn edit_refs<T>(
        &self,
        f: impl FnOnce(&mut Refs) -> Result<T, ImageError>,
    ) -> Result<T, ImageError> {
        let p = self.root.join("refs.lock");
        let lf = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&p)
            .map_err(io("open refs lock", &p))?;
        sys::lock(&lf, true).map_err(|e| ImageError::Io {
            step: "lock refs",
            path: p.display().to_string(),
            source: e.into(),
        })?;
        let mut refs = self.read_refs()?;
        let out = f(&mut refs)?;
        self.write_refs(&refs)?;
        Ok(out)
    }

    /// Points `names` at manifest `manifest` (which must be stored whole).
    pub fn tag(&self, names: &[String], manifest: &Digest) -> Result<(), ImageError> {
        self.edit_refs(|r| {
            for n in names {
                r.refs.insert(n.clone(), manifest.clone());
            }
            Ok(())
        })
    }

    /// Checks a manifest blob's image is whole and runs here: its config
    /// and every layer are stored; returns the record (without refs).
    pub fn record(&self, manifest: &Digest) -> Result<ImageRecord, ImageError> {
        let bytes = self.read_blob(manifest)?;
        let m = match oci::parse_manifest(&bytes)? {
            ManifestKind::Manifest(m) => m,
            ManifestKind::Index(_) => {
                return Err(ImageError::Archive(format!(
                    "{manifest} is an index, not an image manifest"
                )));
            }
        };
        let config = ImageConfig::parse(&self.read_blob(&m.config.digest)?)?;
        if config.rootfs.diff_ids.len() != m.layers.len() {
            return Err(ImageError::Archive(format!(
                "manifest {manifest} has {} layers, its config {} diff_ids",
                m.layers.len(),
                config.rootfs.diff_ids.len()
            )));
        }
        Ok(ImageRecord {
            refs: Vec::new(),
            manifest: manifest.clone(),
            config_digest: m.config.digest.clone(),
            layers: m.layers.iter().map(|l| l.digest.clone()).collect(),
            size: m.layers.iter().map(|l| l.size).sum(),
            config,
        })
    }

    /// Every tagged image, with all its refs.
    pub fn list(&self) -> Result<Vec<ImageRecord>, ImageError> {
        let refs = self.read_refs()?;
        let mut by: BTreeMap<Digest, Vec<String>> = BTreeMap::new();
        for (n, d) in refs.refs {
            by.entry(d).or_default().push(n);
        }
        let mut out = Vec::new();
        for (d, names) in by {
            let mut r = self.record(&d)?;
            r.refs = names;
            out.push(r);
        }
        Ok(out)
    }

    /// The image a reference names: "name:tag", "name@sha256:..." or a
    /// bare manifest digest "sha256:..." of a stored image.
    pub fn resolve(&self, reference: &str) -> Result<ImageRecord, ImageError> {
        let refs = self.read_refs()?;
        let digest = if let Ok(d) = Digest::parse(reference) {
            refs.refs
                .values()
                .find(|v| **v == d)
                .cloned()
                .ok_or_else(|| ImageError::NotFound(reference.to_owned()))?
        } else {
            let r = Reference::parse(reference)?;
            match (&r.digest, r.tagged()) {
                (Some(d), _) => {
                    let key = format!("{}@{d}", r.name);
                    if refs.refs.contains_key(&key)
                        || refs
                            .refs
                            .iter()
                            .any(|(k, v)| v == d && k.starts_with(&format!("{}:", r.name)))
                    {
                        d.clone()
                    } else {
                        return Err(ImageError::NotFound(reference.to_owned()));
                    }
                }
                (None, Some(t)) => refs
                    .refs
                    .get(&t)
                    .cloned()
                    .ok_or_else(|| ImageError::NotFound(reference.to_owned()))?,
                (None, None) => return Err(ImageError::NotFound(reference.to_owned())),
            }
        };
        let mut rec = self.record(&digest)?;
        rec.refs = refs
            .refs
            .iter()
            .filter(|(_, v)| **v == digest)
            .map(|(k, _)| k.clone())
            .collect();
        Ok(rec)
    }

    /// Removes the refs naming `reference`'s image (every ref, when it is
    /// named by digest; else just that name) and collects the garbage.
    pub fn remove(&self, reference: &str) -> Result<(ImageRecord, GcReport), ImageError> {
        let rec = self.resolve(reference)?;
        let by_digest = Digest::parse(reference).is_ok()
            || Reference::parse(reference).is_ok_and(|r| r.digest.is_some());
        self.edit_refs(|r| {
            if by_digest {
                r.refs.retain(|_, v| *v != rec.manifest);
            } else {
                let key = Reference::parse(reference)?
                    .tagged()
                    .unwrap_or_else(|| reference.to_owned());
                r.refs.remove(&key);
            }
            Ok(())
        })?;
        let gc = self.gc()?;
        Ok((rec, gc))
    }

    /// Deletes every blob and unpacked layer no ref reaches, and leftover
    /// temporary directories. Waits for writers (they hold the shared lock).
    pub fn gc(&self) -> Result<GcReport, ImageError> {
        let _lock = self.lock(true)?;
        let refs = self.read_refs()?;
        let mut blobs: BTreeSet<String> = BTreeSet::new();
        let mut layers: BTreeSet<String> = BTreeSet::new();
        let running = self.in_use.get().map(|f| f()).unwrap_or_default();
        for d in refs.refs.values().chain(&running) {
            // A ref to a broken image keeps whatever of it is there.
            blobs.insert(d.hex().to_owned());
            if let Ok(rec) = self.record(d) {
                blobs.insert(rec.config_digest.hex().to_owned());
                blobs.extend(rec.layers.iter().map(|l| l.hex().to_owned()));
                layers.extend(
                    rec.config
                        .rootfs
                        .diff_ids
                        .iter()
                        .map(|l| l.hex().to_owned()),
                );
            }
        }
        let mut report = GcReport::default();
        let sweep = |dir: &Path, keep: &BTreeSet<String>, n: &mut u64| -> Result<(), ImageError> {
            for e in std::fs::read_dir(dir).map_err(io("list store", dir))? {
                let e = e.map_err(io("list store", dir))?;
                let name = e.file_name().to_string_lossy().into_owned();
                if keep.contains(&name) {
                    continue;
                }
                let p = e.path();
                let r = if e.file_type().is_ok_and(|t| t.is_dir()) {
                    std::fs::remove_dir_all(&p)
                } else {
                    std::fs::remove_file(&p)
                };
                r.map_err(io("remove unreferenced", &p))?;
                *n += 1;
            }
            Ok(())
        };
        sweep(&self.root.join("blobs/sha256"), &blobs, &mut report.blobs)?;
        sweep(
            &self.root.join("layers/sha256"),
            &layers,
            &mut report.layers,
        )?;
        let mut none = 0;
        sweep(&self.root.join("tmp"), &BTreeSet::new(), &mut none)?;
        Ok(report)
    }

    /// Verifies a stored manifest's image is for this platform.
    pub(crate) fn check_platform(
        &self,
        reference: &str,
        config: &ImageConfig,
    ) -> Result<(), ImageError> {
        let p = config.platform();
        if p.runs_on(&self.platform) {
            Ok(())
        } else {
            Err(ImageError::Platform {
                reference: reference.to_owned(),
                image: p.to_string(),
                host: self.platform.to_string(),
            })
        }
    }

    /// Stores an image whose config and layer blobs are stored: unpacks
    /// the layers (verifying diff_ids), stores the manifest, tags it.
    pub fn commit_image(
        &self,
        manifest: &ImageManifest,
        names: &[String],
    ) -> Result<ImageRecord, ImageError> {
        let bytes = serde_json::to_vec(manifest)
            .map_err(|e| ImageError::Archive(format!("encoding manifest: {e}")))?;
        self.commit_manifest_bytes(&bytes, names)
    }

    /// [`Store::commit_image`] for a manifest as the registry sent it (its
    /// digest is the image's id there too).
    pub fn commit_manifest_bytes(
        &self,
        bytes: &[u8],
        names: &[String],
    ) -> Result<ImageRecord, ImageError> {
        let manifest = match oci::parse_manifest(bytes)? {
            ManifestKind::Manifest(m) => m,
            ManifestKind::Index(_) => {
                return Err(ImageError::Archive(
                    "an index is not an image manifest".into(),
                ));
            }
        };
        let config = ImageConfig::parse(&self.read_blob(&manifest.config.digest)?)?;
        let shown = names.first().cloned().unwrap_or_default();
        self.check_platform(&shown, &config)?;
        if config.rootfs.diff_ids.len() != manifest.layers.len() {
            return Err(ImageError::Archive(format!(
                "{shown}: {} layers but {} diff_ids in the config",
                manifest.layers.len(),
                config.rootfs.diff_ids.len()
            )));
        }
        for (l, diff) in manifest.layers.iter().zip(&config.rootfs.diff_ids) {
            let c = Compression::of_media_type(&l.media_type)?;
            self.unpack_layer(&l.digest, c, diff)?;
        }
        let (digest, _) = self.put_blob_bytes(bytes)?;
        self.tag(names, &digest)?;
        self.resolve(&digest.to_string())
    }

    /// A fresh path under `tmp/` for downloading blob `d`.
    pub fn download_path(&self, d: &Digest) -> PathBuf {
        self.root.join("tmp").join(format!(
            "pull-{}-{}-{}",
            d.hex(),
            std::process::id(),
            TMP_SEQ.fetch_add(1, Ordering::Relaxed)
        ))
    }

    /// Moves a downloaded file the caller verified against `d` into the
    /// blob store (re-hashed here: the store keeps nothing unverified).
    pub fn adopt_blob(&self, file: &Path, d: &Digest) -> Result<(), ImageError> {
        let mut f = std::fs::File::open(file).map_err(io("open download", file))?;
        let mut h = Sha256::new();
        std::io::copy(&mut f, &mut h).map_err(io("hash download", file))?;
        let got: [u8; 32] = h.finalize().into();
        let got = Digest::from_sha256(&got);
        if &got != d {
            return Err(ImageError::DigestMismatch {
                what: format!("blob {d}"),
                expected: d.to_string(),
                actual: got.to_string(),
            });
        }
        self.put_blob_file(file, d).map(drop)
    }
}

/// A temporary directory, removed on drop.
#[derive(Debug)]
pub(crate) struct TmpDir(pub(crate) PathBuf);

impl Drop for TmpDir {
    fn drop(&mut self) {
        // remove_dir_all does not follow symlinks; a failure leaves it for GC.
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// sha256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> Digest {
    let h: [u8; 32] = Sha256::digest(bytes).into();
    Digest::from_sha256(&h)
}

fn check_digest(what: &str, want: &Digest, bytes: &[u8]) -> Result<(), ImageError> {
    let got = sha256(bytes);
    if &got == want {
        Ok(())
    } else {
        Err(ImageError::DigestMismatch {
            what: what.to_owned(),
            expected: want.to_string(),
            actual: got.to_string(),
        })
    }
}
