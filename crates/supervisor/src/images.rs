//! The images directory, as every backend sees it: listing images and
//! checking that one is a real directory inside it (opened without following
//! a symlink, never by joining a client string into a path).

use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;
use sandboxd_core::BackendError;
use sandboxd_core::spec::HOST_IMAGE;

use crate::sys;
use crate::{Step, StepError};

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
/// without following a symlink ([`open_layer`]).
pub fn check_layers(images_dir: &Path, layers: &[std::path::PathBuf]) -> Result<(), BackendError> {
    for rel in layers {
        open_layer(images_dir, rel).map_err(|e| match e.step {
            Step::OpenImagesDirectory => BackendError::Io {
                step: "open images directory",
                path: images_dir.to_owned(),
                source: std::io::Error::other(e.message),
            },
            _ => BackendError::ImageInvalid {
                name: rel.display().to_string(),
                why: format!(
                    "layer cannot be opened without following a symlink: {}",
                    e.message
                ),
            },
        })?;
    }
    Ok(())
}

/// Opens an OCI image layer (a path relative to the images dir, as the
/// daemon's image store names it) one component at a time, never
/// following a symlink: what every backend mounts or copies a layer from.
pub fn open_layer(images_dir: &Path, rel: &Path) -> Result<OwnedFd, StepError> {
    let mut dir = sys::open_dir(images_dir).map_err(|e| {
        StepError::new(
            Step::OpenImagesDirectory,
            format!("{}: {e}", images_dir.display()),
        )
    })?;
    for c in rel.components() {
        let std::path::Component::Normal(name) = c else {
            return Err(StepError::new(
                Step::OpenImageLayer,
                format!("{}: not a plain relative path", rel.display()),
            ));
        };
        let name = name.to_str().ok_or_else(|| {
            StepError::new(
                Step::OpenImageLayer,
                format!("{}: not UTF-8", rel.display()),
            )
        })?;
        dir = sys::open_image(dir.as_fd(), name)
            .map_err(|e| StepError::new(Step::OpenImageLayer, format!("{}: {e}", rel.display())))?;
    }
    Ok(dir)
}
