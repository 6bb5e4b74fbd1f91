//! Import of an image archive: an OCI image layout (as a tar: `oci-layout`,
//! `index.json`, `blobs/sha256/...`) or a `docker save` tarball
//! (`manifest.json`, config and layer files). The outer archive is hostile
//! input too: its member files are staged under private numbered names
//! (never the archive's own paths), hashed while copied, and counted
//! against the same caps as a layer.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::PathBuf;

use sandboxd_core::oci::{
    self, Compression, Descriptor, Digest, ImageManifest, ManifestKind, Reference, media,
};
use sha2::{Digest as _, Sha256};

use crate::unpack::{Metered, read_error};
use crate::{ImageError, ImageRecord, Store, TmpDir, io};

/// One staged member of the archive.
#[derive(Debug, Clone)]
struct Staged {
    file: PathBuf,
    digest: Digest,
    size: u64,
}

#[derive(Debug)]
struct Staging {
    // Removed (with every staged file) when the import ends.
    _dir: TmpDir,
    files: HashMap<String, Staged>,
    links: HashMap<String, String>,
}

impl Staging {
    fn get(&self, path: &str) -> Result<&Staged, ImageError> {
        let key = norm(path)?;
        let key = self.links.get(&key).cloned().unwrap_or(key);
        self.files
            .get(&key)
            .ok_or_else(|| ImageError::Archive(format!("{path:?} is not in the archive")))
    }

    fn read(&self, path: &str, max: u64) -> Result<Vec<u8>, ImageError> {
        let s = self.get(path)?;
        if s.size > max {
            return Err(ImageError::TooLarge(format!("{path}: {} bytes", s.size)));
        }
        std::fs::read(&s.file).map_err(io("read staged file", &s.file))
    }
}

/// Normalised archive path ("./a//b" → "a/b"); absolute or ".." refused.
fn norm(path: &str) -> Result<String, ImageError> {
    oci::entry_components(path, 4096)
        .map(|c| c.join("/"))
        .map_err(|e| ImageError::Refused(format!("archive member: {e}")))
}

/// JSON documents in an archive are small; a larger one is refused.
const MAX_DOCUMENT: u64 = 4 << 20;

fn stage<R: Read>(store: &Store, reader: R) -> Result<Staging, ImageError> {
    let limits = *store.limits();
    let dir = store.tmp_dir("import")?;
    let mut files = HashMap::new();
    let mut links = HashMap::new();
    let mut archive = tar::Archive::new(Metered::new(reader, limits.max_bytes));
    let mut count = 0u64;
    for entry in archive.entries().map_err(|e| read_error("archive", e))? {
        let mut entry = entry.map_err(|e| read_error("archive", e))?;
        count += 1;
        if count > limits.max_entries {
            return Err(ImageError::TooLarge(format!(
                "archive: more than {} entries",
                limits.max_entries
            )));
        }
        let path = String::from_utf8(entry.path_bytes().into_owned())
            .map_err(|_| ImageError::Refused("archive member path is not UTF-8".to_owned()))?;
        let key = norm(&path)?;
        match entry.header().entry_type() {
            tar::EntryType::Directory => {}
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let file = dir.0.join(files.len().to_string());
                let mut out =
                    std::fs::File::create_new(&file).map_err(io("stage member", &file))?;
                let mut hash = Sha256::new();
                let mut buf = vec![0u8; 64 << 10];
                let mut size = 0u64;
                loop {
                    let n = entry.read(&mut buf).map_err(|e| read_error("archive", e))?;
                    if n == 0 {
                        break;
                    }
                    hash.update(&buf[..n]);
                    out.write_all(&buf[..n])
                        .map_err(io("stage member", &file))?;
                    size += n as u64;
                }
                let h: [u8; 32] = hash.finalize().into();
                if files
                    .insert(
                        key.clone(),
                        Staged {
                            file,
                            digest: Digest::from_sha256(&h),
                            size,
                        },
                    )
                    .is_some()
                {
                    return Err(ImageError::Refused(format!(
                        "archive member {key:?} appears twice"
                    )));
                }
            }
            // Older `docker save` links repeated layers to the first copy.
            tar::EntryType::Symlink | tar::EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .unwrap_or_default();
                let resolved = if entry.header().entry_type() == tar::EntryType::Symlink {
                    let parent = key.rsplit_once('/').map_or("", |(p, _)| p);
                    resolve_relative(parent, &target)?
                } else {
                    norm(&target)?
                };
                links.insert(key, resolved);
            }
            other => {
                return Err(ImageError::Refused(format!(
                    "archive member {key:?}: unsupported type {other:?}"
                )));
            }
        }
    }
    // Links point at files, never at other links.
    for (k, v) in &links {
        if !files.contains_key(v) {
            return Err(ImageError::Refused(format!(
                "archive member {k:?} links to {v:?}, which is not a file of the archive"
            )));
        }
    }
    Ok(Staging {
        _dir: dir,
        files,
        links,
    })
}

fn resolve_relative(parent: &str, target: &str) -> Result<String, ImageError> {
    if target.starts_with('/') {
        return Err(ImageError::Refused(format!(
            "archive link to absolute path {target:?}"
        )));
    }
    let mut out: Vec<&str> = parent.split('/').filter(|c| !c.is_empty()).collect();
    for c in target.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                if out.pop().is_none() {
                    return Err(ImageError::Refused(format!(
                        "archive link {target:?} climbs out of the archive"
                    )));
                }
            }
            c => out.push(c),
        }
    }
    Ok(out.join("/"))
}

/// Imports every image of the archive `reader` into `store`. `name` tags
/// an image the archive leaves unnamed (or names by tag only). Nothing is
/// kept unless every image of the archive is whole.
pub fn import_archive<R: Read>(
    store: &Store,
    reader: R,
    name: Option<&str>,
) -> Result<Vec<ImageRecord>, ImageError> {
    let name = name.map(Reference::parse).transpose()?;
    let writer = store.writer()?;
    let result = (|| {
        let staging = stage(store, reader)?;
        let plans = if staging.files.contains_key("index.json")
            && staging.files.contains_key("oci-layout")
        {
            oci_layout(store, &staging, name.as_ref())?
        } else if staging.files.contains_key("manifest.json") {
            docker_save(&staging, name.as_ref())?
        } else {
            return Err(ImageError::Archive(
                "neither an OCI image layout (oci-layout, index.json) nor a docker save archive (manifest.json)".to_owned(),
            ));
        };
        if plans.is_empty() {
            return Err(ImageError::Archive("the archive holds no image".to_owned()));
        }
        let mut out = Vec::new();
        for (manifest, names) in plans {
            // Blobs first (staged content is already hashed), then layers.
            for d in std::iter::once(&manifest.config).chain(&manifest.layers) {
                let s = staging.by_digest(&d.digest)?;
                if s.size != d.size {
                    return Err(ImageError::Archive(format!(
                        "blob {}: descriptor says {} bytes, the archive has {}",
                        d.digest, d.size, s.size
                    )));
                }
                // A staged file may back two descriptors: copy when moved.
                if !store.has_blob(&d.digest) {
                    let copy = s.file.with_extension("blob");
                    std::fs::copy(&s.file, &copy).map_err(io("copy staged blob", &copy))?;
                    store.put_blob_file(&copy, &d.digest)?;
                }
            }
            out.push(store.commit_image(&manifest, &names)?);
        }
        Ok(out)
    })();
    drop(writer);
    if result.is_err() {
        // Whatever this import stored and no ref reaches goes away.
        let _ = store.gc();
    }
    result
}

impl Staging {
    fn by_digest(&self, d: &Digest) -> Result<&Staged, ImageError> {
        let key = format!("blobs/sha256/{}", d.hex());
        if let Some(s) = self.files.get(&key) {
            if &s.digest != d {
                return Err(ImageError::DigestMismatch {
                    what: key,
                    expected: d.to_string(),
                    actual: s.digest.to_string(),
                });
            }
            return Ok(s);
        }
        self.files
            .values()
            .find(|s| &s.digest == d)
            .ok_or_else(|| ImageError::Archive(format!("blob {d} is not in the archive")))
    }
}

fn names_for(
    annotation: Option<&String>,
    name: Option<&Reference>,
) -> Result<Vec<String>, ImageError> {
    let from_ann = match annotation {
        // A full reference ("registry/repo:tag") or just a tag ("latest").
        Some(a) if oci::is_reference(a) => Some(Reference::parse(a)?),
        Some(tag) => name.map(|n| Reference {
            name: n.name.clone(),
            tag: Some(tag.clone()),
            digest: None,
        }),
        None => None,
    };
    let r = name.cloned().or(from_ann).ok_or_else(|| {
        ImageError::Archive("the archive does not name the image: give a name (--name)".to_owned())
    })?;
    Ok(match (r.tagged(), &r.digest) {
        (Some(t), _) => vec![t],
        (None, Some(d)) => vec![format!("{}@{d}", r.name)],
        (None, None) => Vec::new(),
    })
}

fn oci_layout(
    store: &Store,
    staging: &Staging,
    name: Option<&Reference>,
) -> Result<Vec<(ImageManifest, Vec<String>)>, ImageError> {
    let index: oci::ImageIndex = serde_json::from_slice(&staging.read("index.json", MAX_DOCUMENT)?)
        .map_err(|e| ImageError::Archive(format!("index.json: {e}")))?;
    let mut out = Vec::new();
    for d in &index.manifests {
        let names = names_for(d.annotations.get(oci::REF_NAME), name)?;
        let manifest = resolve_manifest(store, staging, d, 0)?;
        out.push((manifest, names));
    }
    Ok(out)
}

fn resolve_manifest(
    store: &Store,
    staging: &Staging,
    d: &Descriptor,
    depth: u32,
) -> Result<ImageManifest, ImageError> {
    let s = staging.by_digest(&d.digest)?;
    if s.size > MAX_DOCUMENT {
        return Err(ImageError::TooLarge(format!(
            "manifest {}: {} bytes",
            d.digest, s.size
        )));
    }
    let bytes = std::fs::read(&s.file).map_err(io("read staged manifest", &s.file))?;
    match oci::parse_manifest(&bytes)? {
        ManifestKind::Manifest(m) => Ok(m),
        ManifestKind::Index(i) if depth == 0 => {
            let chosen = i.select(store.platform())?.clone();
            resolve_manifest(store, staging, &chosen, depth + 1)
        }
        ManifestKind::Index(_) => Err(ImageError::Archive(format!(
            "index {} nests another index",
            d.digest
        ))),
    }
}

fn docker_save(
    staging: &Staging,
    name: Option<&Reference>,
) -> Result<Vec<(ImageManifest, Vec<String>)>, ImageError> {
    let entries = oci::parse_docker_save(&staging.read("manifest.json", MAX_DOCUMENT)?)?;
    let mut out = Vec::new();
    for e in entries {
        let config = staging.get(&e.config)?;
        let mut layers = Vec::new();
        for l in &e.layers {
            let s = staging.get(l)?;
            let mut magic = [0u8; 2];
            let compression =
                match std::fs::File::open(&s.file).and_then(|mut f| f.read_exact(&mut magic)) {
                    Ok(()) if magic == [0x1f, 0x8b] => Compression::Gzip,
                    _ => Compression::None,
                };
            layers.push(Descriptor {
                media_type: match compression {
                    Compression::Gzip => media::OCI_LAYER_GZIP,
                    Compression::None => media::OCI_LAYER_TAR,
                }
                .to_owned(),
                digest: s.digest.clone(),
                size: s.size,
                platform: None,
                annotations: Default::default(),
            });
        }
        let names = match name {
            Some(_) => names_for(None, name)?,
            None => {
                let tags = e.repo_tags.clone().unwrap_or_default();
                let mut v = Vec::new();
                for t in tags {
                    let r = Reference::parse(&t)?;
                    v.extend(r.tagged());
                }
                if v.is_empty() {
                    names_for(None, None)?;
                }
                v
            }
        };
        out.push((
            ImageManifest {
                schema_version: 2,
                media_type: Some(media::OCI_MANIFEST.to_owned()),
                config: Descriptor {
                    media_type: media::OCI_CONFIG.to_owned(),
                    digest: config.digest.clone(),
                    size: config.size,
                    platform: None,
                    annotations: Default::default(),
                },
                layers,
            },
            names,
        ));
    }
    Ok(out)
}
