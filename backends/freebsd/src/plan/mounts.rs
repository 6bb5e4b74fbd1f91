//! The mounts that build a jail's root, made on the host before the jail is
//! created.

use std::path::{Path, PathBuf};

use sandboxd_core::ValidatedSpec;
use sandboxd_core::spec::HOST_IMAGE;

use super::{DEVFS_RULESET, Fstype, JailMount, MountSource, PlanError};

/// Host directories the "host" image mounts read-only: a FreeBSD base system
/// lives in these.
pub const HOST_IMAGE_DIRS: [&str; 6] = ["/bin", "/sbin", "/lib", "/libexec", "/usr", "/etc"];

fn new(fstype: Fstype, source: MountSource, target: &str, options: &[&str]) -> JailMount {
    JailMount {
        fstype,
        source,
        target: target.to_owned(),
        options: options.iter().map(|o| (*o).to_owned()).collect(),
        update: false,
    }
}

/// The jail's resolver configuration, covered by the generated file.
pub const RESOLV_CONF: &str = "/etc/resolv.conf";

/// The mounts for a spec, in order; with `resolv_conf`, the generated
/// resolv.conf over the image's, after every mount that could cover /etc.
pub(super) fn mounts(spec: &ValidatedSpec, resolv_conf: bool) -> Result<Vec<JailMount>, PlanError> {
    let s = spec.spec();
    let ro = s.readonly_rootfs;
    let mut m = Vec::new();
    let host_image = s.image() == HOST_IMAGE;
    if host_image {
        m.push(new(Fstype::Tmpfs, MountSource::Pseudo, "/", &["mode=755"]));
        m.extend(HOST_IMAGE_DIRS.map(|d| {
            new(
                Fstype::Nullfs,
                MountSource::Host(PathBuf::from(d)),
                d,
                &["ro"],
            )
        }));
    } else {
        let options: &[&str] = if ro { &["ro"] } else { &[] };
        m.push(new(
            Fstype::Nullfs,
            MountSource::Image(s.image().to_owned()),
            "/",
            options,
        ));
    }
    let ruleset = format!("ruleset={DEVFS_RULESET}");
    m.push(new(Fstype::Devfs, MountSource::Pseudo, "/dev", &[&ruleset]));
    m.push(new(
        Fstype::Tmpfs,
        MountSource::Pseudo,
        "/tmp",
        &["mode=1777", "nosuid"],
    ));
    for (index, c) in s.mounts.iter().enumerate() {
        if Path::new(&c.target).starts_with("/dev") {
            return Err(PlanError::NullfsMountTarget {
                index,
                target: c.target.clone(),
            });
        }
        let options: &[&str] = if c.read_only {
            &["ro", "nosuid"]
        } else {
            &["nosuid"]
        };
        m.push(new(
            Fstype::Nullfs,
            MountSource::Host(PathBuf::from(&c.source)),
            &c.target,
            options,
        ));
    }
    if resolv_conf {
        m.push(new(
            Fstype::Nullfs,
            MountSource::ResolvConf,
            RESOLV_CONF,
            &["ro", "nosuid"],
        ));
    }
    if ro && host_image {
        // Last, so the mount points above could still be created in it.
        m.push(JailMount {
            update: true,
            ..new(Fstype::Tmpfs, MountSource::Pseudo, "/", &["ro"])
        });
    }
    Ok(m)
}
