//! A flattened copy of a layer chain: what FreeBSD runs an OCI image on
//! (no overlayfs; unionfs stacks are unreliable). Layers unpacked with
//! [`WhiteoutFormat::Marker`](sandboxd_core::oci::WhiteoutFormat) are
//! applied base first into an empty directory: an opaque marker empties
//! the directory of what lower layers put there, `.wh.NAME` removes NAME,
//! everything else is copied with its owner and mode (setuid included).
//! Every call is relative to a directory descriptor, never following a
//! symlink: a layer's symlink is copied as a symlink, not entered.
//! Hard links within a layer become separate copies.

use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, openat, readlinkat};
use nix::sys::stat::{Mode, SFlag, fstatat};
use nix::unistd::{UnlinkatFlags, unlinkat};
use sandboxd_core::oci::{OPAQUE_MARKER, WHITEOUT_PREFIX};

use crate::{ImageError, sys};

fn err(step: &'static str, path: &Path, e: Errno) -> ImageError {
    ImageError::Io {
        step,
        path: path.display().to_string(),
        source: e.into(),
    }
}

/// The names in directory `dir` (without "." and "..").
fn names(dir: BorrowedFd<'_>, path: &Path) -> Result<Vec<OsString>, ImageError> {
    let fd = sys::open_dir_at(dir, OsStr::new(".")).map_err(|e| err("open directory", path, e))?;
    let mut d = nix::dir::Dir::from_fd(fd).map_err(|e| err("read directory", path, e))?;
    let mut out = Vec::new();
    for e in d.iter() {
        let e = e.map_err(|e| err("read directory", path, e))?;
        let n = e.file_name().to_bytes();
        if n != b"." && n != b".." {
            out.push(OsStr::from_bytes(n).to_owned());
        }
    }
    out.sort();
    Ok(out)
}

/// Removes `name` in `dir`, recursively, never following a symlink.
fn remove_at(dir: BorrowedFd<'_>, name: &OsStr, path: &Path) -> Result<(), ImageError> {
    let st = match fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(Errno::ENOENT) => return Ok(()),
        Err(e) => return Err(err("stat", path, e)),
    };
    if SFlag::from_bits_truncate(st.st_mode as _) & SFlag::S_IFMT == SFlag::S_IFDIR {
        let sub = sys::open_dir_at(dir, name).map_err(|e| err("open directory", path, e))?;
        for n in names(sub.as_fd(), path)? {
            remove_at(sub.as_fd(), &n, &path.join(&n))?;
        }
        unlinkat(dir, name, UnlinkatFlags::RemoveDir).map_err(|e| err("remove directory", path, e))
    } else {
        unlinkat(dir, name, UnlinkatFlags::NoRemoveDir).map_err(|e| err("remove", path, e))
    }
}

/// Applies layer directory `src` onto `dst` (both open directories).
fn apply(src: &OwnedFd, dst: &OwnedFd, path: &Path) -> Result<(), ImageError> {
    let entries = names(src.as_fd(), path)?;
    // Markers first: they hide what lower layers put here, never what this
    // layer adds beside them.
    if entries
        .iter()
        .any(|n| n.as_bytes() == OPAQUE_MARKER.as_bytes())
    {
        for n in names(dst.as_fd(), path)? {
            remove_at(dst.as_fd(), &n, &path.join(&n))?;
        }
    }
    for n in &entries {
        if let Some(hidden) = n.as_bytes().strip_prefix(WHITEOUT_PREFIX.as_bytes()) {
            if n.as_bytes() != OPAQUE_MARKER.as_bytes() && !hidden.is_empty() {
                let hidden = OsStr::from_bytes(hidden);
                remove_at(dst.as_fd(), hidden, &path.join(hidden))?;
            }
        }
    }
    for n in entries
        .iter()
        .filter(|n| !n.as_bytes().starts_with(WHITEOUT_PREFIX.as_bytes()))
    {
        let p = path.join(n);
        let st = fstatat(src.as_fd(), n.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW)
            .map_err(|e| err("stat", &p, e))?;
        let kind = SFlag::from_bits_truncate(st.st_mode as _) & SFlag::S_IFMT;
        let mode = (st.st_mode as u32) & 0o7777;
        let (uid, gid) = (st.st_uid, st.st_gid);
        if kind == SFlag::S_IFDIR {
            // A directory over a lower non-directory replaces it; over a
            // lower directory it merges.
            match sys::open_dir_at(dst.as_fd(), n) {
                Ok(_) => {}
                Err(Errno::ENOENT) => {
                    sys::mkdir_at(dst.as_fd(), n).map_err(|e| err("mkdir", &p, e))?
                }
                Err(_) => {
                    remove_at(dst.as_fd(), n, &p)?;
                    sys::mkdir_at(dst.as_fd(), n).map_err(|e| err("mkdir", &p, e))?;
                }
            }
            let s = sys::open_dir_at(src.as_fd(), n).map_err(|e| err("open directory", &p, e))?;
            let d = sys::open_dir_at(dst.as_fd(), n).map_err(|e| err("open directory", &p, e))?;
            apply(&s, &d, &p)?;
            sys::chown_chmod(d.as_fd(), uid, gid, mode).map_err(|e| err("chmod", &p, e))?;
            continue;
        }
        remove_at(dst.as_fd(), n, &p)?;
        if kind == SFlag::S_IFREG {
            let mut from = openat(
                src.as_fd(),
                n.as_os_str(),
                OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .map(std::fs::File::from)
            .map_err(|e| err("open", &p, e))?;
            let mut to = sys::create_file_at(dst.as_fd(), n).map_err(|e| err("create", &p, e))?;
            std::io::copy(&mut from, &mut to).map_err(|e| ImageError::Io {
                step: "copy",
                path: p.display().to_string(),
                source: e,
            })?;
            sys::chown_chmod(to.as_fd(), uid, gid, mode).map_err(|e| err("chmod", &p, e))?;
        } else if kind == SFlag::S_IFLNK {
            let target =
                readlinkat(src.as_fd(), n.as_os_str()).map_err(|e| err("readlink", &p, e))?;
            let target = target.to_str().ok_or_else(|| {
                ImageError::Refused(format!("{}: symlink target is not UTF-8", p.display()))
            })?;
            sys::symlink_at(target, dst.as_fd(), n).map_err(|e| err("symlink", &p, e))?;
            sys::chown_at(dst.as_fd(), n, uid, gid).map_err(|e| err("chown", &p, e))?;
        } else if kind == SFlag::S_IFIFO {
            sys::mkfifo_at(dst.as_fd(), n).map_err(|e| err("mkfifo", &p, e))?;
            sys::chown_at(dst.as_fd(), n, uid, gid).map_err(|e| err("chown", &p, e))?;
            sys::chmod_fifo_at(dst.as_fd(), n, mode).map_err(|e| err("chmod", &p, e))?;
        } else {
            // The unpacker never makes anything else in a marker layer.
            return Err(ImageError::Refused(format!(
                "{}: unexpected file type in a layer",
                p.display()
            )));
        }
    }
    Ok(())
}

/// Copies the layer chain `layers` (paths relative to `images_dir`, base
/// first, each opened component by component without following a
/// symlink) into the empty directory `dest`.
pub fn flatten(
    images_dir: &Path,
    layers: &[std::path::PathBuf],
    dest: &Path,
) -> Result<(), ImageError> {
    let dst = sys::open_dir(dest).map_err(|e| err("open destination", dest, e))?;
    if !names(dst.as_fd(), dest)?.is_empty() {
        return Err(ImageError::Refused(format!(
            "{} is not empty: a flattened copy starts from nothing",
            dest.display()
        )));
    }
    for rel in layers {
        let mut src =
            sys::open_dir(images_dir).map_err(|e| err("open images directory", images_dir, e))?;
        for c in rel.components() {
            let std::path::Component::Normal(name) = c else {
                return Err(ImageError::Refused(format!(
                    "layer {}: not a plain relative path",
                    rel.display()
                )));
            };
            src = sys::open_dir_at(src.as_fd(), name).map_err(|e| err("open layer", rel, e))?;
        }
        apply(&src, &dst, Path::new("/"))?;
    }
    Ok(())
}
