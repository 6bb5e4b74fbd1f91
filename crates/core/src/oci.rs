//! The pure model of OCI images: digests, references, the JSON documents
//! (index, manifest, config, `docker save`'s manifest.json), platform
//! matching, and the unpack policy that decides, entry by entry, what a
//! layer tarball may create. No I/O: the store and unpacker
//! (crates/images) apply these decisions with dirfd-relative, no-follow
//! calls.

pub mod auth;

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// OCI and Docker media types the store accepts.
pub mod media {
    /// OCI image index.
    pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    /// OCI image manifest.
    pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    /// OCI image config.
    pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
    /// OCI layer, uncompressed tar.
    pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
    /// OCI layer, gzip.
    pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
    /// Docker manifest list.
    pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
    /// Docker manifest v2 schema 2.
    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    /// Docker image config.
    pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
    /// Docker layer (gzip).
    pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
    /// Docker layer, uncompressed (`docker save` archives).
    pub const DOCKER_LAYER_TAR: &str = "application/vnd.docker.image.rootfs.diff.tar";
}

/// A malformed reference, digest or document.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OciError {
    /// A digest that is not `sha256:` + 64 lowercase hex digits.
    #[error("{0:?} is not a sha256 digest (sha256:<64 lowercase hex digits>)")]
    Digest(String),
    /// A reference that does not parse.
    #[error("{value:?} is not an image reference: {why}")]
    Reference {
        /// The text given.
        value: String,
        /// What is wrong.
        why: &'static str,
    },
    /// A JSON document that does not parse as what it should be.
    #[error("{what}: {why}")]
    Document {
        /// Which document.
        what: &'static str,
        /// The parser's message.
        why: String,
    },
    /// No manifest in an index matches the daemon's platform.
    #[error("no manifest for platform {want} in the index (it has: {have})")]
    NoPlatform {
        /// The daemon's platform.
        want: String,
        /// What the index offers.
        have: String,
    },
}

/// A sha256 content digest.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Digest(String);

impl Digest {
    /// Parses `sha256:<64 lowercase hex>`.
    pub fn parse(s: &str) -> Result<Self, OciError> {
        let hex = s
            .strip_prefix("sha256:")
            .ok_or_else(|| OciError::Digest(s.to_owned()))?;
        if hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            Ok(Self(hex.to_owned()))
        } else {
            Err(OciError::Digest(s.to_owned()))
        }
    }

    /// From 32 hash bytes.
    pub fn from_sha256(bytes: &[u8; 32]) -> Self {
        use fmt::Write;
        let mut hex = String::with_capacity(64);
        for b in bytes {
            // Writing to a String cannot fail.
            let _ = write!(hex, "{b:02x}");
        }
        Self(hex)
    }

    /// The 64 hex digits: a safe single path component.
    pub fn hex(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.0)
    }
}

impl Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// The tag a reference without tag or digest gets.
pub const DEFAULT_TAG: &str = "latest";

/// An image reference: `[registry[:port]/]repository[:tag][@sha256:...]`.
/// Names are kept as given (no implicit `docker.io/library/`): the store
/// and the registry client agree on them verbatim.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Reference {
    /// Repository, with the registry host when there is one.
    pub name: String,
    /// Tag (`None` with a digest only).
    pub tag: Option<String>,
    /// Digest, when pinned.
    pub digest: Option<Digest>,
}

impl Reference {
    /// Parses a reference; no tag and no digest means [`DEFAULT_TAG`].
    pub fn parse(s: &str) -> Result<Self, OciError> {
        let bad = |why| OciError::Reference {
            value: s.chars().take(300).collect(),
            why,
        };
        if s.is_empty() || s.len() > 512 {
            return Err(bad("1-512 characters"));
        }
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => (
                r,
                Some(Digest::parse(d).map_err(|_| bad("bad digest after '@'"))?),
            ),
            None => (s, None),
        };
        // A ':' after the last '/' is the tag (one before it is a port).
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
            None => (rest, None),
        };
        if let Some(tag) = tag {
            let ok = (1..=128).contains(&tag.len())
                && tag
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
                && !tag.starts_with(['.', '-']);
            if !ok {
                return Err(bad(
                    "a tag is 1-128 of [A-Za-z0-9_.-], not starting with '.' or '-'",
                ));
            }
        }
        let components: Vec<&str> = name.split('/').collect();
        for (i, c) in components.iter().enumerate() {
            // The first component may be a registry host[:port].
            let host =
                i == 0 && components.len() > 1 && (c.contains(['.', ':']) || *c == "localhost");
            let ok = if host {
                c.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':'))
                    && c.starts_with(|ch: char| ch.is_ascii_alphanumeric())
                    && c.ends_with(|ch: char| ch.is_ascii_alphanumeric())
                    && !c.contains("..")
            } else {
                !c.is_empty()
                    && c.bytes().all(|b| {
                        b.is_ascii_lowercase()
                            || b.is_ascii_digit()
                            || matches!(b, b'.' | b'_' | b'-')
                    })
                    && c.starts_with(|ch: char| ch.is_ascii_alphanumeric())
                    && c.ends_with(|ch: char| ch.is_ascii_alphanumeric())
            };
            if !ok {
                return Err(bad(
                    "repository components are lowercase [a-z0-9._-] starting and ending with a letter or digit",
                ));
            }
        }
        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_owned()),
            (None, Some(_)) => None,
            (None, None) => Some(DEFAULT_TAG.to_owned()),
        };
        Ok(Self {
            name: name.to_owned(),
            tag,
            digest,
        })
    }

    /// The registry host (`None`: no host in the name).
    pub fn registry(&self) -> Option<&str> {
        let (first, rest) = self.name.split_once('/')?;
        (!rest.is_empty() && (first.contains(['.', ':']) || first == "localhost")).then_some(first)
    }

    /// The repository path without the registry host.
    pub fn repository(&self) -> &str {
        match self.registry() {
            Some(h) => &self.name[h.len() + 1..],
            None => &self.name,
        }
    }

    /// `name:tag` when tagged (the store's ref key).
    pub fn tagged(&self) -> Option<String> {
        self.tag.as_ref().map(|t| format!("{}:{t}", self.name))
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// Whether `image` (a spec's image field) names an OCI image rather than a
/// directory image: a directory name is one path component without ':' or
/// '@', so anything with '/', ':' or '@' is a reference.
pub fn is_reference(image: &str) -> bool {
    image.contains(['/', ':', '@'])
}

/// An OS/architecture pair.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Platform {
    /// GOARCH-style architecture ("amd64", "arm64").
    pub architecture: String,
    /// GOOS-style OS ("linux", "freebsd").
    pub os: String,
    /// CPU variant ("v8"), when any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl Platform {
    /// The platform this build of the daemon runs images for.
    pub fn host() -> Self {
        let architecture = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            other => other,
        };
        Self {
            architecture: architecture.to_owned(),
            os: std::env::consts::OS.to_owned(),
            variant: None,
        }
    }

    /// Whether an image for `self` runs on `host` (variants are ignored
    /// unless both name one).
    pub fn runs_on(&self, host: &Platform) -> bool {
        self.os == host.os
            && self.architecture == host.architecture
            && match (&self.variant, &host.variant) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// A content descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// Media type.
    pub media_type: String,
    /// Content digest.
    pub digest: Digest,
    /// Size in bytes.
    pub size: u64,
    /// Platform (index entries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// The annotation an OCI layout's index uses for a tag or reference.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// An image index (or Docker manifest list).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageIndex {
    /// 2.
    pub schema_version: u32,
    /// Media type, when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// The manifests.
    pub manifests: Vec<Descriptor>,
}

impl ImageIndex {
    /// The manifest for `host` (the first that runs on it).
    pub fn select(&self, host: &Platform) -> Result<&Descriptor, OciError> {
        self.manifests
            .iter()
            .find(|d| d.platform.as_ref().is_some_and(|p| p.runs_on(host)))
            .ok_or_else(|| OciError::NoPlatform {
                want: host.to_string(),
                have: self
                    .manifests
                    .iter()
                    .map(|d| {
                        d.platform
                            .as_ref()
                            .map_or("(none)".to_owned(), ToString::to_string)
                    })
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }
}

/// An image manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageManifest {
    /// 2.
    pub schema_version: u32,
    /// Media type, when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// The config blob.
    pub config: Descriptor,
    /// Layers, base first.
    pub layers: Vec<Descriptor>,
}

/// What a manifest-or-index blob is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManifestKind {
    /// A single-platform manifest.
    Manifest(ImageManifest),
    /// A multi-platform index.
    Index(ImageIndex),
}

/// Parses a manifest or index by its media type (or, without one, by shape).
pub fn parse_manifest(bytes: &[u8]) -> Result<ManifestKind, OciError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Probe {
        media_type: Option<String>,
        manifests: Option<serde_json::Value>,
    }
    let doc = |what, e: serde_json::Error| OciError::Document {
        what,
        why: e.to_string(),
    };
    let probe: Probe = serde_json::from_slice(bytes).map_err(|e| doc("manifest", e))?;
    let is_index = match probe.media_type.as_deref() {
        Some(media::OCI_INDEX | media::DOCKER_LIST) => true,
        Some(media::OCI_MANIFEST | media::DOCKER_MANIFEST) => false,
        Some(other) => {
            return Err(OciError::Document {
                what: "manifest",
                why: format!("unsupported media type {other:?}"),
            });
        }
        None => probe.manifests.is_some(),
    };
    if is_index {
        Ok(ManifestKind::Index(
            serde_json::from_slice(bytes).map_err(|e| doc("image index", e))?,
        ))
    } else {
        let m: ImageManifest =
            serde_json::from_slice(bytes).map_err(|e| doc("image manifest", e))?;
        for l in &m.layers {
            Compression::of_media_type(&l.media_type)?;
        }
        Ok(ManifestKind::Manifest(m))
    }
}

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// A plain tar.
    None,
    /// gzip.
    Gzip,
}

impl Compression {
    /// By media type; zstd and foreign (non-distributable) layers are
    /// refused.
    pub fn of_media_type(media_type: &str) -> Result<Self, OciError> {
        match media_type {
            media::OCI_LAYER_TAR | media::DOCKER_LAYER_TAR => Ok(Self::None),
            media::OCI_LAYER_GZIP | media::DOCKER_LAYER_GZIP => Ok(Self::Gzip),
            other => Err(OciError::Document {
                what: "image manifest",
                why: format!(
                    "layer media type {other:?} is not supported (plain tar or tar+gzip only)"
                ),
            }),
        }
    }
}

/// The image config (the parts the store and the runtime use).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ImageConfig {
    /// Architecture.
    #[serde(default)]
    pub architecture: String,
    /// OS.
    #[serde(default)]
    pub os: String,
    /// Variant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// Creation time (RFC 3339), when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// Run-time defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<RunConfig>,
    /// The layer chain's uncompressed digests.
    pub rootfs: RootFs,
}

impl ImageConfig {
    /// Parses a config blob.
    pub fn parse(bytes: &[u8]) -> Result<Self, OciError> {
        let c: Self = serde_json::from_slice(bytes).map_err(|e| OciError::Document {
            what: "image config",
            why: e.to_string(),
        })?;
        if c.rootfs.kind != "layers" {
            return Err(OciError::Document {
                what: "image config",
                why: format!("rootfs.type is {:?}, not \"layers\"", c.rootfs.kind),
            });
        }
        Ok(c)
    }

    /// The platform the config says.
    pub fn platform(&self) -> Platform {
        Platform {
            architecture: self.architecture.clone(),
            os: self.os.clone(),
            variant: self.variant.clone(),
        }
    }
}

/// `rootfs` of an image config.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RootFs {
    /// "layers".
    #[serde(rename = "type")]
    pub kind: String,
    /// Uncompressed layer digests, base first.
    pub diff_ids: Vec<Digest>,
}

/// The run-time defaults of an image config (Docker's capitalised keys).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RunConfig {
    /// "user", "uid", "user:group" or "uid:gid".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// "KEY=VALUE".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<String>>,
    /// Entrypoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    /// Command (arguments to the entrypoint).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    /// Working directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
}

/// Fills what `spec` leaves unset from an image config's run-time
/// defaults (the spec always wins):
/// - argv: a spec's argv is the whole command; without one (PROCESS and
///   INIT modes) it is Entrypoint followed by Cmd;
/// - env: the image's entries first, the spec's replacing equal keys;
/// - cwd: WorkingDir when the spec has none (not in IDLE mode, which has
///   no main process to run there; its execs get it from
///   `apply_exec_defaults`);
/// - user: the image's User when the spec names no uid ("root", "uid" or
///   "uid:gid"; user names other than root are refused: the spec must give
///   the ids).
pub fn apply_run_defaults(
    spec: &mut crate::spec::SandboxSpec,
    run: &RunConfig,
) -> Result<(), String> {
    let idle = spec.mode == crate::spec::Mode::Idle;
    let p = &mut spec.process;
    if p.argv.is_empty() && !idle {
        p.argv = run
            .entrypoint
            .iter()
            .flatten()
            .chain(run.cmd.iter().flatten())
            .cloned()
            .collect();
    }
    merge_env(p, run);
    if !idle {
        default_cwd(p, run);
    }
    if p.user.uid.is_none() {
        if let Some(u) = run.user.as_deref().filter(|u| !u.is_empty()) {
            let (user, group) = match u.split_once(':') {
                Some((a, b)) => (a, Some(b)),
                None => (u, None),
            };
            let id = |s: &str| -> Result<u32, String> {
                if s == "root" {
                    return Ok(0);
                }
                s.parse::<u32>().map_err(|_| {
                    format!(
                        "the image's User {u:?} names a user or group by name; only numeric ids and root are resolved: set spec.process.user"
                    )
                })
            };
            p.user.uid = Some(id(user)?);
            if p.user.gid.is_none() {
                p.user.gid = Some(match group {
                    Some(g) => id(g)?,
                    None => p.user.uid.unwrap_or_default(),
                });
            }
        }
    }
    Ok(())
}

/// Fills a process exec'd into a sandbox of an image (Exec, ExecSync,
/// StartExec) from the image config, as Docker's `exec` does: the image's
/// Env under the request's (equal keys: the request wins), and WorkingDir
/// when the request gives no cwd. The argv is always the request's, and
/// the user stays the request's (or the daemon's default).
pub fn apply_exec_defaults(process: &mut crate::spec::ProcessSpec, run: &RunConfig) {
    merge_env(process, run);
    default_cwd(process, run);
}

fn merge_env(p: &mut crate::spec::ProcessSpec, run: &RunConfig) {
    if let Some(env) = &run.env {
        let key = |e: &str| e.split_once('=').map_or(e, |(k, _)| k).to_owned();
        let mut merged: Vec<String> = env
            .iter()
            .filter(|e| !p.env.iter().any(|s| key(s) == key(e)))
            .cloned()
            .collect();
        merged.append(&mut p.env);
        p.env = merged;
    }
}

fn default_cwd(p: &mut crate::spec::ProcessSpec, run: &RunConfig) {
    if p.cwd.is_empty() {
        if let Some(w) = run.working_dir.as_ref().filter(|w| !w.is_empty()) {
            p.cwd = w.clone();
        }
    }
}

/// The command `sandboxctl run` execs for an image, as `docker run` builds
/// it: the Entrypoint (or `entrypoint`, the `--entrypoint` override)
/// followed by `args` when given, else by the image's Cmd (dropped when
/// the entrypoint is overridden). An error when that leaves nothing to run.
pub fn run_command(
    run: Option<&RunConfig>,
    entrypoint: Option<&[String]>,
    args: &[String],
) -> Result<Vec<String>, &'static str> {
    let image_ep = run
        .and_then(|r| r.entrypoint.as_deref())
        .unwrap_or_default();
    let image_cmd = run.and_then(|r| r.cmd.as_deref()).unwrap_or_default();
    let cmd = match (args.is_empty(), entrypoint) {
        (false, _) => args,
        (true, Some(_)) => &[],
        (true, None) => image_cmd,
    };
    let argv: Vec<String> = entrypoint
        .unwrap_or(image_ep)
        .iter()
        .chain(cmd)
        .cloned()
        .collect();
    if argv.is_empty() {
        return Err(
            "no command: the image has no Entrypoint or Cmd; give one after -- (or --entrypoint)",
        );
    }
    Ok(argv)
}

/// One image in a `docker save` archive's manifest.json.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DockerSaveEntry {
    /// Path of the config file in the archive.
    pub config: String,
    /// Tags ("name:tag").
    #[serde(default)]
    pub repo_tags: Option<Vec<String>>,
    /// Paths of the layer tarballs, base first.
    pub layers: Vec<String>,
}

/// Parses a `docker save` manifest.json.
pub fn parse_docker_save(bytes: &[u8]) -> Result<Vec<DockerSaveEntry>, OciError> {
    serde_json::from_slice(bytes).map_err(|e| OciError::Document {
        what: "docker save manifest.json",
        why: e.to_string(),
    })
}

/// Caps on what unpacking one archive may cost. Every count is checked
/// before the work it allows, so a tar bomb stops at the cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnpackLimits {
    /// Entries in one layer (or in the imported archive).
    pub max_entries: u64,
    /// Uncompressed bytes read from one layer (headers included) or from
    /// the imported archive.
    pub max_bytes: u64,
    /// Bytes of one entry's path or link target.
    pub max_path: usize,
}

impl Default for UnpackLimits {
    fn default() -> Self {
        Self {
            max_entries: 500_000,
            max_bytes: 16 << 30,
            max_path: 4096,
        }
    }
}

/// A tar entry's type, as the unpack policy sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryType {
    /// Regular file.
    File,
    /// Directory.
    Dir,
    /// Symbolic link.
    Symlink,
    /// Hard link.
    Hardlink,
    /// Character device.
    CharDevice,
    /// Block device.
    BlockDevice,
    /// FIFO.
    Fifo,
    /// Anything else (sparse, GNU volume labels, ...).
    Other,
}

/// The prefix of an OCI whiteout.
pub const WHITEOUT_PREFIX: &str = ".wh.";
/// An opaque directory marker.
pub const OPAQUE_MARKER: &str = ".wh..wh..opq";

/// What one tar entry does, once the policy accepts it. Paths are lists of
/// normal components relative to the layer root (never empty for a
/// creation: the root entry itself is [`Action::Skip`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Nothing (the root itself, aufs metadata).
    Skip,
    /// Create an entry.
    Create {
        /// Where.
        path: Vec<String>,
        /// What.
        kind: EntryType,
        /// Permission bits as the image says, setuid/setgid/sticky kept
        /// (they apply only to this entry inside the layer).
        mode: u32,
        /// Symlink target (kept verbatim) or hardlink target (components).
        link: Option<LinkTarget>,
    },
    /// `.wh.NAME`: hide NAME of the lower layers in directory `dir`.
    Whiteout {
        /// The directory.
        dir: Vec<String>,
        /// The hidden name.
        name: String,
    },
    /// `.wh..wh..opq`: hide everything the lower layers have in `dir`.
    Opaque {
        /// The directory.
        dir: Vec<String>,
    },
}

/// A link's target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkTarget {
    /// A symlink's text.
    Symlink(String),
    /// A hardlink's target, inside the layer.
    Hardlink(Vec<String>),
}

/// Why the policy refuses an entry (the whole layer is refused).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryRefusal {
    /// An absolute path.
    #[error("entry {0:?}: absolute path")]
    Absolute(String),
    /// A `..` component.
    #[error("entry {0:?}: '..' in the path")]
    Traversal(String),
    /// A path or link longer than the cap, or not UTF-8.
    #[error("entry {0:?}: {1}")]
    BadPath(String, &'static str),
    /// A device node.
    #[error("entry {0:?}: device nodes are not allowed in images")]
    Device(String),
    /// An entry type the store does not unpack.
    #[error("entry {0:?}: unsupported entry type")]
    Unsupported(String),
    /// A symlink whose relative target climbs above the root.
    #[error("entry {path:?}: symlink target {target:?} points outside the image")]
    SymlinkOutside {
        /// The entry.
        path: String,
        /// Its target.
        target: String,
    },
    /// A hardlink whose target is outside the layer or not an earlier entry.
    #[error("entry {path:?}: hardlink target {target:?} {why}")]
    HardlinkOutside {
        /// The entry.
        path: String,
        /// Its target.
        target: String,
        /// Why.
        why: &'static str,
    },
    /// A whiteout that names nothing.
    #[error("entry {0:?}: malformed whiteout")]
    Whiteout(String),
}

/// Splits an entry path into normal components: a leading "./" and empty
/// or "." components are dropped; absolute paths and ".." are refused.
pub fn entry_components(path: &str, max: usize) -> Result<Vec<String>, EntryRefusal> {
    let shown = || path.chars().take(200).collect::<String>();
    if path.len() > max {
        return Err(EntryRefusal::BadPath(shown(), "path longer than the cap"));
    }
    if path.contains('\0') {
        return Err(EntryRefusal::BadPath(shown(), "NUL in the path"));
    }
    if path.starts_with('/') {
        return Err(EntryRefusal::Absolute(shown()));
    }
    let mut out = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => return Err(EntryRefusal::Traversal(shown())),
            c => out.push(c.to_owned()),
        }
    }
    Ok(out)
}

/// The policy for one entry: `path` and `link` as the tar header says
/// (already decoded as UTF-8 by the caller), `mode` its permission bits.
pub fn classify(
    path: &str,
    kind: EntryType,
    mode: u32,
    link: Option<&str>,
    limits: &UnpackLimits,
) -> Result<Action, EntryRefusal> {
    let shown = || path.chars().take(200).collect::<String>();
    let comps = entry_components(path, limits.max_path)?;
    let Some(last) = comps.last() else {
        return Ok(Action::Skip);
    };
    let dir = comps[..comps.len() - 1].to_vec();
    if last == OPAQUE_MARKER {
        return Ok(Action::Opaque { dir });
    }
    if last.starts_with(".wh..wh.") {
        // aufs bookkeeping (hardlink dirs): never image content.
        return Ok(Action::Skip);
    }
    if let Some(name) = last.strip_prefix(WHITEOUT_PREFIX) {
        if name.is_empty() || name == "." {
            return Err(EntryRefusal::Whiteout(shown()));
        }
        return Ok(Action::Whiteout {
            dir,
            name: name.to_owned(),
        });
    }
    let link = match kind {
        EntryType::CharDevice | EntryType::BlockDevice => {
            return Err(EntryRefusal::Device(shown()));
        }
        EntryType::Other => return Err(EntryRefusal::Unsupported(shown())),
        EntryType::Symlink => {
            let target = link.unwrap_or_default();
            if target.is_empty() || target.len() > limits.max_path || target.contains('\0') {
                return Err(EntryRefusal::BadPath(
                    shown(),
                    "empty or oversized symlink target",
                ));
            }
            if !target.starts_with('/') && climbs_out(&dir, target) {
                return Err(EntryRefusal::SymlinkOutside {
                    path: shown(),
                    target: target.chars().take(200).collect(),
                });
            }
            Some(LinkTarget::Symlink(target.to_owned()))
        }
        EntryType::Hardlink => {
            let target = link.unwrap_or_default();
            let refuse = |why| EntryRefusal::HardlinkOutside {
                path: shown(),
                target: target.chars().take(200).collect(),
                why,
            };
            // Hardlink targets are archive paths, like entry paths; a
            // leading '/' is tolerated by some writers, but we refuse it
            // like an absolute entry path.
            let t = entry_components(target, limits.max_path)
                .map_err(|_| refuse("is absolute, climbs out or is malformed"))?;
            if t.is_empty() {
                return Err(refuse("is the layer root"));
            }
            Some(LinkTarget::Hardlink(t))
        }
        EntryType::File | EntryType::Dir | EntryType::Fifo => None,
    };
    Ok(Action::Create {
        path: comps,
        kind,
        mode: mode & 0o7777,
        link,
    })
}

/// Whether relative symlink `target`, placed in `dir`, resolves (lexically)
/// above the root.
fn climbs_out(dir: &[String], target: &str) -> bool {
    let mut depth = dir.len() as i64;
    for c in target.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                depth -= 1;
                if depth < 0 {
                    return true;
                }
            }
            _ => depth += 1,
        }
    }
    false
}

/// How whiteouts are stored in an unpacked layer: the form the OS's
/// union mount understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhiteoutFormat {
    /// overlayfs: a 0/0 character device, and `trusted.overlay.opaque=y`
    /// on opaque directories (Linux).
    Overlay,
    /// The OCI marker files kept as empty regular files, for a flattening
    /// copy to apply (FreeBSD).
    Marker,
}

impl WhiteoutFormat {
    /// The format for this OS.
    pub fn host() -> Self {
        if cfg!(target_os = "linux") {
            Self::Overlay
        } else {
            Self::Marker
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    #[test]
    fn digests() {
        assert_eq!(Digest::parse(&d('a')).map(|x| x.to_string()), Ok(d('a')));
        for bad in [
            "sha256:".to_owned(),
            "sha512:".to_owned() + &"a".repeat(64),
            d('A'),
            "sha256:".to_owned() + &"a".repeat(63),
            "sha256:../".to_owned() + &"a".repeat(61),
        ] {
            assert!(Digest::parse(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn references() {
        let dg = d('b');
        type Row<'a> = (&'a str, &'a str, Option<&'a str>, Option<&'a str>);
        let ok: &[Row<'_>] = &[
            ("busybox", "busybox", Some("latest"), None),
            ("busybox:1.36", "busybox", Some("1.36"), None),
            (
                "127.0.0.1:5000/x/busybox",
                "127.0.0.1:5000/x/busybox",
                Some("latest"),
                Some("127.0.0.1:5000"),
            ),
            ("localhost/a:b", "localhost/a", Some("b"), Some("localhost")),
            ("library/busybox", "library/busybox", Some("latest"), None),
        ];
        for (s, name, tag, reg) in ok {
            let r = Reference::parse(s).unwrap();
            assert_eq!(
                (r.name.as_str(), r.tag.as_deref(), r.registry()),
                (*name, *tag, *reg),
                "{s}"
            );
        }
        let pinned = Reference::parse(&format!("127.0.0.1:5000/bb@{dg}")).unwrap();
        assert_eq!(pinned.tag, None);
        assert_eq!(
            pinned.digest.as_ref().map(ToString::to_string),
            Some(dg.clone())
        );
        assert_eq!(pinned.repository(), "bb");
        assert_eq!(pinned.to_string(), format!("127.0.0.1:5000/bb@{dg}"));
        for bad in [
            "",
            "../x/y",
            "a..b:1/c",
            "Busybox",
            "a//b",
            "a:",
            "a:-x",
            "../x",
            "a/../b",
            "a@sha256:zz",
            "/a",
            "a/",
            "a b",
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad:?}");
        }
        assert!(is_reference("busybox:latest") && is_reference("a/b") && !is_reference("alpine"));
    }

    #[test]
    fn platform_selection() {
        let desc = |os: &str, arch: &str| Descriptor {
            media_type: media::OCI_MANIFEST.into(),
            digest: Digest::parse(&d('c')).unwrap(),
            size: 1,
            platform: Some(Platform {
                architecture: arch.into(),
                os: os.into(),
                variant: None,
            }),
            annotations: BTreeMap::new(),
        };
        let idx = ImageIndex {
            schema_version: 2,
            media_type: None,
            manifests: vec![
                desc("linux", "arm64"),
                desc("freebsd", "amd64"),
                desc("linux", "amd64"),
            ],
        };
        let want = |os: &str, arch: &str| Platform {
            architecture: arch.into(),
            os: os.into(),
            variant: None,
        };
        assert_eq!(
            idx.select(&want("linux", "amd64")).unwrap(),
            &idx.manifests[2]
        );
        assert_eq!(
            idx.select(&want("freebsd", "amd64")).unwrap(),
            &idx.manifests[1]
        );
        let e = idx
            .select(&want("linux", "riscv64"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("linux/riscv64") && e.contains("linux/arm64"),
            "{e}"
        );
    }

    #[test]
    fn unpack_policy() {
        use EntryType::*;
        let l = UnpackLimits {
            max_path: 64,
            ..UnpackLimits::default()
        };
        let v = |s: &[&str]| s.iter().map(|c| (*c).to_owned()).collect::<Vec<_>>();
        let ok: &[(&str, EntryType, u32, Option<&str>, Action)] = &[
            ("./", Dir, 0o755, None, Action::Skip),
            (
                "./bin/sh",
                File,
                0o104755,
                None,
                Action::Create {
                    path: v(&["bin", "sh"]),
                    kind: File,
                    mode: 0o4755,
                    link: None,
                },
            ),
            (
                "bin/ls",
                Symlink,
                0o777,
                Some("busybox"),
                Action::Create {
                    path: v(&["bin", "ls"]),
                    kind: Symlink,
                    mode: 0o777,
                    link: Some(LinkTarget::Symlink("busybox".into())),
                },
            ),
            (
                "etc/mtab",
                Symlink,
                0o777,
                Some("/proc/mounts"),
                Action::Create {
                    path: v(&["etc", "mtab"]),
                    kind: Symlink,
                    mode: 0o777,
                    link: Some(LinkTarget::Symlink("/proc/mounts".into())),
                },
            ),
            (
                "a/b/c",
                Symlink,
                0o777,
                Some("../../x"),
                Action::Create {
                    path: v(&["a", "b", "c"]),
                    kind: Symlink,
                    mode: 0o777,
                    link: Some(LinkTarget::Symlink("../../x".into())),
                },
            ),
            (
                "bin/x",
                Hardlink,
                0o755,
                Some("./bin/sh"),
                Action::Create {
                    path: v(&["bin", "x"]),
                    kind: Hardlink,
                    mode: 0o755,
                    link: Some(LinkTarget::Hardlink(v(&["bin", "sh"]))),
                },
            ),
            (
                "etc/.wh.passwd",
                File,
                0,
                None,
                Action::Whiteout {
                    dir: v(&["etc"]),
                    name: "passwd".into(),
                },
            ),
            (
                "var/.wh..wh..opq",
                File,
                0,
                None,
                Action::Opaque { dir: v(&["var"]) },
            ),
            (
                ".wh..wh.plnk/1",
                File,
                0,
                None,
                Action::Create {
                    path: v(&[".wh..wh.plnk", "1"]),
                    kind: File,
                    mode: 0,
                    link: None,
                },
            ),
            (
                "p",
                Fifo,
                0o644,
                None,
                Action::Create {
                    path: v(&["p"]),
                    kind: Fifo,
                    mode: 0o644,
                    link: None,
                },
            ),
        ];
        for (path, kind, mode, link, want) in ok {
            assert_eq!(
                classify(path, *kind, *mode, *link, &l).as_ref(),
                Ok(want),
                "{path}"
            );
        }
        let long = "a/".repeat(40);
        let bad: &[(&str, EntryType, Option<&str>, &str)] = &[
            ("/etc/passwd", File, None, "absolute"),
            ("../escape", File, None, "'..'"),
            ("a/../../b", File, None, "'..'"),
            (&long, File, None, "cap"),
            ("dev/sda", BlockDevice, None, "device"),
            ("dev/null", CharDevice, None, "device"),
            ("x", Other, None, "unsupported"),
            ("a/l", Symlink, Some("../../etc"), "outside"),
            ("l", Symlink, Some(""), "symlink target"),
            ("h", Hardlink, Some("/etc/shadow"), "absolute"),
            ("h", Hardlink, Some("../etc/shadow"), "climbs out"),
            ("h", Hardlink, Some("."), "root"),
            ("a/.wh.", File, None, "whiteout"),
        ];
        for (path, kind, link, want) in bad {
            let e = classify(path, *kind, 0o644, *link, &l)
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{path}: {e}");
        }
    }

    #[test]
    fn run_defaults_fill_only_what_the_spec_leaves_unset() {
        use crate::spec::{Mode, SandboxSpec};
        let run = RunConfig {
            user: Some("1000:100".into()),
            env: Some(vec!["PATH=/bin".into(), "A=image".into()]),
            entrypoint: Some(vec!["/bin/sh".into(), "-c".into()]),
            cmd: Some(vec!["echo hi".into()]),
            working_dir: Some("/w".into()),
        };
        let mut s = SandboxSpec::default();
        apply_run_defaults(&mut s, &run).unwrap();
        assert_eq!(s.process.argv, ["/bin/sh", "-c", "echo hi"]);
        assert_eq!(s.process.env, ["PATH=/bin", "A=image"]);
        assert_eq!(s.process.cwd, "/w");
        assert_eq!(
            (s.process.user.uid, s.process.user.gid),
            (Some(1000), Some(100))
        );

        let mut s = SandboxSpec::default();
        s.process.argv = vec!["/bin/true".into()];
        s.process.env = vec!["A=spec".into()];
        s.process.cwd = "/tmp".into();
        s.process.user.uid = Some(5);
        apply_run_defaults(&mut s, &run).unwrap();
        assert_eq!(s.process.argv, ["/bin/true"]);
        assert_eq!(s.process.env, ["PATH=/bin", "A=spec"]);
        assert_eq!(s.process.cwd, "/tmp");
        assert_eq!((s.process.user.uid, s.process.user.gid), (Some(5), None));

        let mut s = SandboxSpec {
            mode: Mode::Idle,
            ..SandboxSpec::default()
        };
        apply_run_defaults(&mut s, &run).unwrap();
        assert!(s.process.argv.is_empty(), "IDLE runs nothing");
        assert_eq!(s.process.cwd, "", "IDLE has no main process to chdir");
        assert_eq!(s.process.env, ["PATH=/bin", "A=image"]);

        for (user, want) in [
            ("root", Ok((Some(0), Some(0)))),
            ("7", Ok((Some(7), Some(7)))),
            ("0:root", Ok((Some(0), Some(0)))),
        ] {
            let mut s = SandboxSpec::default();
            let r = apply_run_defaults(
                &mut s,
                &RunConfig {
                    user: Some(user.into()),
                    ..RunConfig::default()
                },
            );
            assert_eq!(
                r.map(|()| (s.process.user.uid, s.process.user.gid)),
                want,
                "{user}"
            );
        }
        let mut s = SandboxSpec::default();
        let e = apply_run_defaults(
            &mut s,
            &RunConfig {
                user: Some("www-data".into()),
                ..RunConfig::default()
            },
        );
        assert!(e.unwrap_err().contains("spec.process.user"));
    }

    #[test]
    fn exec_defaults_fill_env_and_cwd_only() {
        use crate::spec::ProcessSpec;
        let run = RunConfig {
            user: Some("0".into()),
            env: Some(vec!["PATH=/bin".into(), "A=image".into(), "B=image".into()]),
            entrypoint: Some(vec!["/ep".into()]),
            cmd: Some(vec!["cmd".into()]),
            working_dir: Some("/w".into()),
        };
        let rows: &[(&[&str], &str, &[&str], &str)] = &[
            (&[], "", &["PATH=/bin", "A=image", "B=image"], "/w"),
            (
                &["B=exec", "C=exec"],
                "",
                &["PATH=/bin", "A=image", "B=exec", "C=exec"],
                "/w",
            ),
            (
                &["PATH=/usr/bin"],
                "/tmp",
                &["A=image", "B=image", "PATH=/usr/bin"],
                "/tmp",
            ),
        ];
        for (env, cwd, want_env, want_cwd) in rows {
            let mut p = ProcessSpec {
                argv: vec!["/bin/true".into()],
                env: env.iter().map(|e| (*e).to_owned()).collect(),
                cwd: (*cwd).to_owned(),
                ..ProcessSpec::default()
            };
            apply_exec_defaults(&mut p, &run);
            assert_eq!(p.env, *want_env, "{env:?}");
            assert_eq!(p.cwd, *want_cwd, "{env:?}");
            assert_eq!(p.argv, ["/bin/true"], "the request's argv stays");
            assert_eq!(p.user.uid, None, "the request's user stays");
        }
        let mut p = ProcessSpec::default();
        apply_exec_defaults(&mut p, &RunConfig::default());
        assert_eq!(p, ProcessSpec::default(), "an image without defaults");
    }

    #[test]
    fn run_commands_follow_docker_run() {
        let s = |v: &[&str]| v.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
        let both = RunConfig {
            entrypoint: Some(s(&["/ep", "-x"])),
            cmd: Some(s(&["c1", "c2"])),
            ..RunConfig::default()
        };
        let cmd_only = RunConfig {
            cmd: Some(s(&["/bin/sh"])),
            ..RunConfig::default()
        };
        let none = RunConfig::default();
        type Row<'a> = (
            Option<&'a RunConfig>,
            Option<&'a [&'a str]>,
            &'a [&'a str],
            Option<&'a [&'a str]>,
        );
        let rows: &[Row<'_>] = &[
            (Some(&both), None, &[], Some(&["/ep", "-x", "c1", "c2"])),
            (Some(&both), None, &["a"], Some(&["/ep", "-x", "a"])),
            (Some(&both), Some(&["/bin/sh"]), &[], Some(&["/bin/sh"])),
            (
                Some(&both),
                Some(&["/bin/sh"]),
                &["-c", "x"],
                Some(&["/bin/sh", "-c", "x"]),
            ),
            (Some(&both), Some(&[]), &["/bin/id"], Some(&["/bin/id"])),
            (Some(&cmd_only), None, &[], Some(&["/bin/sh"])),
            (
                Some(&cmd_only),
                None,
                &["/bin/id", "-u"],
                Some(&["/bin/id", "-u"]),
            ),
            (Some(&none), None, &[], None),
            (None, None, &[], None),
            (None, None, &["/bin/true"], Some(&["/bin/true"])),
            (Some(&both), Some(&[]), &[], None),
        ];
        for (run, ep, args, want) in rows {
            let ep = ep.map(s);
            let got = run_command(*run, ep.as_deref(), &s(args));
            match want {
                Some(w) => assert_eq!(got, Ok(s(w)), "{run:?} {ep:?} {args:?}"),
                None => assert!(
                    got.unwrap_err().contains("no command"),
                    "{run:?} {ep:?} {args:?}"
                ),
            }
        }
    }

    #[test]
    fn documents() {
        let cfg = br#"{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/bin"],"Cmd":["sh"],"WorkingDir":"/w","User":"1:2"},"rootfs":{"type":"layers","diff_ids":["sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"]}}"#;
        let c = ImageConfig::parse(cfg).unwrap();
        assert_eq!(
            c.config.as_ref().and_then(|r| r.user.as_deref()),
            Some("1:2")
        );
        assert_eq!(c.rootfs.diff_ids.len(), 1);
        assert!(ImageConfig::parse(br#"{"rootfs":{"type":"x","diff_ids":[]}}"#).is_err());
        let m = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"{}","digest":"{}","size":1}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+zstd","digest":"{}","size":1}}]}}"#,
            media::OCI_MANIFEST,
            media::OCI_CONFIG,
            d('a'),
            d('b')
        );
        assert!(
            parse_manifest(m.as_bytes())
                .unwrap_err()
                .to_string()
                .contains("zstd")
        );
        let i = r#"{"schemaVersion":2,"manifests":[]}"#;
        assert!(matches!(
            parse_manifest(i.as_bytes()),
            Ok(ManifestKind::Index(_))
        ));
    }
}
