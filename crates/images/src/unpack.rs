//! Unpacks one layer tarball into a fresh directory. The archive is
//! hostile input: core's policy ([`sandboxd_core::oci::classify`]) decides
//! what each entry may be, and every creation here is relative to a
//! directory descriptor this code opened below the layer root, never
//! following a symlink, never over an existing name. The uncompressed
//! stream's sha256 is the layer's diff_id, checked by the caller.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};

use nix::errno::Errno;
use sandboxd_core::oci::{
    Action, Digest, EntryRefusal, EntryType, LinkTarget, UnpackLimits, WhiteoutFormat,
};
use sha2::{Digest as _, Sha256};

use crate::ImageError;
use crate::sys;

/// A reader that hashes and counts what passes through it and fails once
/// more than `cap` bytes have been read (the tar-bomb stop).
#[derive(Debug)]
pub(crate) struct Metered<R> {
    inner: R,
    hash: Sha256,
    read: u64,
    cap: u64,
}

/// The error a [`Metered`] reader returns past its cap.
#[derive(Debug, thiserror::Error)]
#[error("more than {0} bytes")]
pub(crate) struct OverCap(pub(crate) u64);

impl<R: Read> Metered<R> {
    pub(crate) fn new(inner: R, cap: u64) -> Self {
        Self {
            inner,
            hash: Sha256::new(),
            read: 0,
            cap,
        }
    }

    /// Reads to the end (the tar's trailing blocks count toward the digest)
    /// and returns the digest and byte count.
    pub(crate) fn finish(mut self) -> std::io::Result<(Digest, u64)> {
        std::io::copy(&mut self, &mut std::io::sink())?;
        let bytes: [u8; 32] = self.hash.finalize().into();
        Ok((Digest::from_sha256(&bytes), self.read))
    }
}

impl<R: Read> Read for Metered<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        if self.read > self.cap {
            return Err(std::io::Error::other(OverCap(self.cap)));
        }
        self.hash.update(&buf[..n]);
        Ok(n)
    }
}

/// Maps a read error to the cap error when it is one.
pub(crate) fn read_error(what: &str, e: std::io::Error) -> ImageError {
    if let Some(cap) = e.get_ref().and_then(|i| i.downcast_ref::<OverCap>()) {
        return ImageError::TooLarge(format!("{what}: uncompressed size is {cap}"));
    }
    ImageError::Archive(format!("{what}: {e}"))
}

fn entry_type(t: tar::EntryType) -> EntryType {
    match t {
        tar::EntryType::Regular | tar::EntryType::Continuous => EntryType::File,
        tar::EntryType::Directory => EntryType::Dir,
        tar::EntryType::Symlink => EntryType::Symlink,
        tar::EntryType::Link => EntryType::Hardlink,
        tar::EntryType::Char => EntryType::CharDevice,
        tar::EntryType::Block => EntryType::BlockDevice,
        tar::EntryType::Fifo => EntryType::Fifo,
        _ => EntryType::Other,
    }
}

/// Opens (creating missing ones, mode 0755, when `create`) the directories
/// `comps` below `root`, refusing any that is a symlink or not a directory.
fn walk(
    root: &OwnedFd,
    comps: &[String],
    create: bool,
    entry: &str,
) -> Result<OwnedFd, ImageError> {
    let mut dir = root.try_clone().map_err(|e| ImageError::Io {
        step: "dup layer root",
        path: entry.to_owned(),
        source: e,
    })?;
    for c in comps {
        let name = OsStr::new(c);
        let next = match sys::open_dir_at(dir.as_fd(), name) {
            Err(Errno::ENOENT) if create => {
                sys::mkdir_at(dir.as_fd(), name).map_err(|e| errno("mkdir parent", entry, e))?;
                let d = sys::open_dir_at(dir.as_fd(), name)
                    .map_err(|e| errno("open parent", entry, e))?;
                sys::chown_chmod(d.as_fd(), 0, 0, 0o755)
                    .map_err(|e| errno("chmod parent", entry, e))?;
                d
            }
            Err(Errno::ELOOP | Errno::ENOTDIR) => {
                return Err(ImageError::Refused(format!(
                    "entry {entry:?}: parent {c:?} is a symlink or not a directory (nothing is written through a link)"
                )));
            }
            Err(e) => return Err(errno("open parent", entry, e)),
            Ok(d) => d,
        };
        dir = next;
    }
    Ok(dir)
}

fn errno(step: &'static str, entry: &str, e: Errno) -> ImageError {
    ImageError::Io {
        step,
        path: entry.to_owned(),
        source: e.into(),
    }
}

/// What an already-seen path was (duplicate detection).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    Dir,
    Other,
}

/// Unpacks `tar` (already decompressed, metered by the caller) into the
/// empty directory `root`.
pub(crate) fn unpack<R: Read>(
    tar: R,
    root: &OwnedFd,
    limits: &UnpackLimits,
    whiteouts: WhiteoutFormat,
) -> Result<(), ImageError> {
    let mut archive = tar::Archive::new(tar);
    let mut seen: HashMap<Vec<String>, Seen> = HashMap::new();
    let mut count: u64 = 0;
    let entries = archive.entries().map_err(|e| read_error("layer", e))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| read_error("layer", e))?;
        count += 1;
        if count > limits.max_entries {
            return Err(ImageError::TooLarge(format!(
                "layer: more than {} entries",
                limits.max_entries
            )));
        }
        let path_bytes = entry.path_bytes().into_owned();
        let path = String::from_utf8(path_bytes)
            .map_err(|_| ImageError::Refused("entry path is not UTF-8".to_owned()))?;
        let link =
            match entry.link_name_bytes() {
                Some(b) => Some(String::from_utf8(b.into_owned()).map_err(|_| {
                    ImageError::Refused(format!("entry {path:?}: link is not UTF-8"))
                })?),
                None => None,
            };
        let header = entry.header();
        let kind = entry_type(header.entry_type());
        let mode = header.mode().map_err(|e| read_error("layer", e))?;
        let uid = header.uid().map_err(|e| read_error("layer", e))?;
        let gid = header.gid().map_err(|e| read_error("layer", e))?;
        let (uid, gid) = (
            u32::try_from(uid).map_err(|_| {
                ImageError::Refused(format!("entry {path:?}: uid {uid} out of range"))
            })?,
            u32::try_from(gid).map_err(|_| {
                ImageError::Refused(format!("entry {path:?}: gid {gid} out of range"))
            })?,
        );
        let action = sandboxd_core::oci::classify(&path, kind, mode, link.as_deref(), limits)
            .map_err(|e: EntryRefusal| ImageError::Refused(e.to_string()))?;
        match action {
            Action::Skip => {}
            Action::Whiteout { dir, name } => {
                let mut key = dir.clone();
                key.push(name.clone());
                note(&mut seen, key, Seen::Other, &path)?;
                let d = walk(root, &dir, true, &path)?;
                match whiteouts {
                    #[cfg(target_os = "linux")]
                    WhiteoutFormat::Overlay => sys::whiteout_at(d.as_fd(), OsStr::new(&name)),
                    #[cfg(not(target_os = "linux"))]
                    WhiteoutFormat::Overlay => Err(Errno::EOPNOTSUPP),
                    WhiteoutFormat::Marker => sys::create_file_at(
                        d.as_fd(),
                        OsStr::new(&format!("{}{name}", sandboxd_core::oci::WHITEOUT_PREFIX)),
                    )
                    .map(drop),
                }
                .map_err(|e| exists(e, &path, "whiteout"))?;
            }
            Action::Opaque { dir } => {
                let d = walk(root, &dir, true, &path)?;
                match whiteouts {
                    #[cfg(target_os = "linux")]
                    WhiteoutFormat::Overlay => sys::set_opaque(d.as_fd()),
                    #[cfg(not(target_os = "linux"))]
                    WhiteoutFormat::Overlay => Err(Errno::EOPNOTSUPP),
                    WhiteoutFormat::Marker => sys::create_file_at(
                        d.as_fd(),
                        OsStr::new(sandboxd_core::oci::OPAQUE_MARKER),
                    )
                    .map(drop),
                }
                .map_err(|e| exists(e, &path, "opaque marker"))?;
            }
            Action::Create {
                path: comps,
                kind,
                mode,
                link,
            } => {
                let (name, parent) = comps
                    .split_last()
                    .ok_or_else(|| ImageError::Refused(format!("entry {path:?}: empty path")))?;
                let is_dir = kind == EntryType::Dir;
                let dup = note(
                    &mut seen,
                    comps.clone(),
                    if is_dir { Seen::Dir } else { Seen::Other },
                    &path,
                )?;
                let d = walk(root, parent, true, &path)?;
                let name = OsStr::new(name);
                match (kind, link) {
                    (EntryType::Dir, _) => {
                        if !dup {
                            match sys::mkdir_at(d.as_fd(), name) {
                                // Made implicitly as an earlier entry's parent.
                                Err(Errno::EEXIST) => {}
                                r => r.map_err(|e| errno("mkdir", &path, e))?,
                            }
                        }
                        let fd = sys::open_dir_at(d.as_fd(), name).map_err(|e| match e {
                            Errno::ELOOP | Errno::ENOTDIR => ImageError::Refused(format!(
                                "entry {path:?}: a directory over an earlier non-directory"
                            )),
                            e => errno("open directory", &path, e),
                        })?;
                        sys::chown_chmod(fd.as_fd(), uid, gid, mode)
                            .map_err(|e| errno("chmod directory", &path, e))?;
                    }
                    (EntryType::File, _) => {
                        let mut f = sys::create_file_at(d.as_fd(), name)
                            .map_err(|e| exists(e, &path, "file"))?;
                        std::io::copy(&mut entry, &mut f).map_err(|e| read_error("layer", e))?;
                        sys::chown_chmod(f.as_fd(), uid, gid, mode)
                            .map_err(|e| errno("chmod file", &path, e))?;
                    }
                    (EntryType::Symlink, Some(LinkTarget::Symlink(target))) => {
                        sys::symlink_at(&target, d.as_fd(), name)
                            .map_err(|e| exists(e, &path, "symlink"))?;
                        sys::chown_at(d.as_fd(), name, uid, gid)
                            .map_err(|e| errno("chown symlink", &path, e))?;
                    }
                    (EntryType::Hardlink, Some(LinkTarget::Hardlink(target))) => {
                        if seen.get(&target) != Some(&Seen::Other) {
                            return Err(ImageError::Refused(format!(
                                "entry {path:?}: hardlink target {:?} is not an earlier file of this layer",
                                target.join("/")
                            )));
                        }
                        let (tname, tparent) = target.split_last().ok_or_else(|| {
                            ImageError::Refused(format!("entry {path:?}: empty hardlink target"))
                        })?;
                        let td = walk(root, tparent, false, &path)?;
                        sys::link_at(td.as_fd(), OsStr::new(tname), d.as_fd(), name)
                            .map_err(|e| exists(e, &path, "hardlink"))?;
                    }
                    (EntryType::Fifo, _) => {
                        sys::mkfifo_at(d.as_fd(), name).map_err(|e| exists(e, &path, "fifo"))?;
                        sys::chown_at(d.as_fd(), name, uid, gid)
                            .map_err(|e| errno("chown fifo", &path, e))?;
                        sys::chmod_fifo_at(d.as_fd(), name, mode)
                            .map_err(|e| errno("chmod fifo", &path, e))?;
                    }
                    (kind, _) => {
                        return Err(ImageError::Refused(format!(
                            "entry {path:?}: unsupported entry type {kind:?}"
                        )));
                    }
                }
            }
        }
    }
    Ok(())
}

/// Records `key`; a second entry for one path is refused unless both are
/// directories (a later directory entry only restates metadata). Returns
/// whether it was seen before.
fn note(
    seen: &mut HashMap<Vec<String>, Seen>,
    key: Vec<String>,
    what: Seen,
    path: &str,
) -> Result<bool, ImageError> {
    match seen.insert(key, what) {
        None => Ok(false),
        Some(Seen::Dir) if what == Seen::Dir => Ok(true),
        Some(_) => Err(ImageError::Refused(format!(
            "entry {path:?}: duplicate entry for one path"
        ))),
    }
}

fn exists(e: Errno, path: &str, what: &str) -> ImageError {
    match e {
        Errno::EEXIST => ImageError::Refused(format!(
            "entry {path:?}: {what} over an existing name (duplicate entry)"
        )),
        e => ImageError::Io {
            step: "create entry",
            path: path.to_owned(),
            source: e.into(),
        },
    }
}
