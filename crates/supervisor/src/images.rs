//! The images directory, as every backend sees it: listing images and
//! checking that one is a real directory inside it (opened without following
//! a symlink, never by joining a client string into a path).

use std::os::fd::AsFd;
use std::path::Path;

use nix::errno::Errno;
use sandboxd_core::BackendError;
use sandboxd_core::spec::HOST_IMAGE;

use crate::sys;

/// "host" plus every directory in the images dir (sorted, no dotfiles).
pub fn list_images(images_dir: &Path) -> Vec<String> {
    let mut names = vec![HOST_IMAGE.to_owned()];
    if let Ok(entries) = std::fs::read_dir(images_dir) {
        let mut dirs: Vec<String> = entries
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| e.file_name().to_str().map(str::to_owned))
            .filter(|n| !n.starts_with('.') && n != HOST_IMAGE)
            .collect();
        dirs.sort();
        names.extend(dirs);
    }
    names
}

/// Checks that image `name` is a real directory inside the images dir (or,
/// with `no_symlinks`, inside the parent of a client-given rootfs, reached
/// without following any symlink: [`sys::open_image_dir`]).
pub fn check_image(images_dir: &Path, name: &str, no_symlinks: bool) -> Result<(), BackendError> {
    let dir = sys::open_image_dir(images_dir, no_symlinks).map_err(|e| match e {
        // A client-given rootfs whose path has a symlink (or a file) in it.
        Errno::ELOOP | Errno::ENOTDIR if no_symlinks => BackendError::ImageInvalid {
            name: images_dir.join(name).display().to_string(),
            why: "a component of its path is a symlink or not a directory; a rootfs is opened from / without following symlinks".into(),
        },
        e => BackendError::Io {
        step: "open images directory",
        path: images_dir.to_owned(),
        source: e.into(),
    },
    })?;
    match sys::open_image(dir.as_fd(), name) {
        Ok(_) => Ok(()),
        Err(Errno::ENOENT) => Err(BackendError::ImageNotFound(name.to_owned())),
        Err(Errno::ELOOP | Errno::ENOTDIR) => Err(BackendError::ImageInvalid {
            name: name.to_owned(),
            why: "is a symlink or not a directory; an image must be a real directory inside the images dir".into(),
        }),
        Err(e) => Err(BackendError::Io { step: "open image", path: images_dir.join(name), source: e.into() }),
    }
}

/// Checks that every OCI image layer (a path relative to the images dir,
/// as the daemon's image store names it) is a real directory reached
/// without following a symlink.
pub fn check_layers(images_dir: &Path, layers: &[std::path::PathBuf]) -> Result<(), BackendError> {
    for rel in layers {
        let mut dir = sys::open_dir(images_dir).map_err(|e| BackendError::Io {
            step: "open images directory",
            path: images_dir.to_owned(),
            source: e.into(),
        })?;
        for c in rel.components() {
            let name = match c {
                std::path::Component::Normal(n) => n.to_str(),
                _ => None,
            }
            .ok_or_else(|| BackendError::ImageInvalid {
                name: rel.display().to_string(),
                why: "is not a plain relative layer path".into(),
            })?;
            dir = sys::open_image(dir.as_fd(), name).map_err(|e| BackendError::ImageInvalid {
                name: rel.display().to_string(),
                why: format!("layer cannot be opened without following a symlink: {e}"),
            })?;
        }
    }
    Ok(())
}

/// The refusal of a backend that runs directory images only.
pub fn oci_unsupported(backend: &str, image: &str) -> BackendError {
    BackendError::Unsupported(format!(
        "spec.image: {image:?} is an OCI image; the {backend} backend runs directory images only (docs/images.md)"
    ))
}
