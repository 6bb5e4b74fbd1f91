//! The lexical path checks on bind mounts, and the pure resolver that turns
//! a checked sandbox path into a host path under a root.
//!
//! Input: text, one path per line; lines pair up as (source, target) of
//! the spec's mounts. The spec is otherwise minimal and valid, so every
//! problem `validate` reports must be about a mount, and exactly where a
//! simple reference model of the rules says so. For any spec that passes:
//! each source is absolute, normal (no '.', '..' or empty components) and
//! lies under an allowed source; each target is absolute, normal, not '/'
//! and unique, and resolves under the root without leaving it.
//! Every line is also fed straight to `components`/`host_path`.

#![no_main]

use std::collections::BTreeSet;
use std::path::{Component, Path};

use libfuzzer_sys::fuzz_target;
use sandboxd_backend_freebsd::kernel_args::{components, host_path};
use sandboxd_core::spec::{Mode, MountSpec, SandboxSpec};
use sandboxd_core::validate::{Policy, validate};

const ALLOWED: [&str; 2] = ["/srv", "/var/lib/sandboxd-data"];
const ROOT: &str = "/var/lib/sandboxd/run/0123456789abcdef/root";
/// Below the policy's mount cap, so the count is never the problem.
const MAX_MOUNTS: usize = 16;

/// The reference model: absolute, at most 4096 bytes, no NUL, and either
/// "/" or components that are neither empty, "." nor "..".
fn normal_abs(p: &str) -> bool {
    if p.len() > 4096 || p.contains('\0') {
        return false;
    }
    match p.strip_prefix('/') {
        Some("") => true,
        Some(rest) => rest
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != ".."),
        None => false,
    }
}

fn under_allowed(p: &str) -> bool {
    ALLOWED
        .iter()
        .any(|root| p == *root || p.strip_prefix(root).is_some_and(|r| r.starts_with('/')))
}

/// Lexical normalisation, the way `realpath -ms` would (no symlinks): an
/// accepted path must already be in this form.
fn normalise(p: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    format!("/{}", out.join("/"))
}

fn no_dots(p: &Path) -> bool {
    !p.components()
        .any(|c| matches!(c, Component::ParentDir | Component::CurDir))
}

/// The pure resolver, on any string: what it accepts lands strictly inside
/// the root, one level per component, with no '..'.
fn check_resolver(p: &str) {
    let root = Path::new(ROOT);
    match components(p) {
        Ok(parts) => {
            assert!(p.starts_with('/'), "components accepted relative {p:?}");
            assert!(
                parts
                    .iter()
                    .all(|c| !c.is_empty() && *c != "." && *c != ".."),
                "components of {p:?}: {parts:?}"
            );
            let host = host_path(root, p).expect("host_path agrees with components");
            assert!(host.starts_with(root), "{p:?} resolved to {host:?}");
            assert!(no_dots(&host), "{p:?} resolved to {host:?}");
            if !p.contains('\0') {
                // Path::components would merge nothing away: exactly one
                // level per component.
                assert_eq!(
                    host.components().count(),
                    root.components().count() + parts.len(),
                    "{p:?} resolved to {host:?}"
                );
            }
        }
        Err(_) => {
            assert!(host_path(root, p).is_err());
        }
    }
    if normal_abs(p) {
        let parts = components(p).expect("a normal absolute path has components");
        assert_eq!(format!("/{}", parts.join("/")), p);
    }
}

fuzz_target!(|data: &[u8]| {
    let text = match std::str::from_utf8(data) {
        Ok(s) => s,
        Err(e) => std::str::from_utf8(&data[..e.valid_up_to()]).expect("valid prefix"),
    };
    let lines: Vec<&str> = text.split('\n').collect();
    for line in &lines {
        check_resolver(line);
    }

    let mounts: Vec<MountSpec> = lines
        .chunks(2)
        .take(MAX_MOUNTS)
        .enumerate()
        .map(|(i, pair)| MountSpec {
            source: pair[0].to_owned(),
            target: pair.get(1).copied().unwrap_or("").to_owned(),
            read_only: i % 2 == 0,
        })
        .collect();
    let spec = SandboxSpec {
        mode: Mode::Idle,
        mounts: mounts.clone(),
        ..SandboxSpec::default()
    };
    let policy = Policy {
        allowed_mount_sources: ALLOWED.iter().map(Into::into).collect(),
        ..Policy::default()
    };

    // What the reference model expects to be refused.
    let mut expected = BTreeSet::new();
    let mut seen_targets: Vec<&str> = Vec::new();
    for (i, m) in mounts.iter().enumerate() {
        if !(normal_abs(&m.source) && under_allowed(&m.source)) {
            expected.insert(format!("spec.mounts[{i}].source"));
        }
        if normal_abs(&m.target) {
            if m.target == "/" || seen_targets.contains(&m.target.as_str()) {
                expected.insert(format!("spec.mounts[{i}].target"));
            }
            seen_targets.push(&m.target);
        } else {
            expected.insert(format!("spec.mounts[{i}].target"));
        }
    }

    match validate(spec, &policy) {
        Ok(valid) => {
            assert!(expected.is_empty(), "accepted, but expected {expected:?}");
            assert_eq!(valid.spec().mounts, mounts, "validation changed mounts");
            let mut targets = BTreeSet::new();
            for m in &valid.spec().mounts {
                // Source: absolute, no '..', already normal, under a root.
                let source = Path::new(&m.source);
                assert!(source.is_absolute() && no_dots(source), "{m:?}");
                assert_eq!(normalise(&m.source), m.source, "{m:?}");
                assert!(
                    ALLOWED.iter().any(|r| source.starts_with(r)),
                    "source outside the allowed roots: {m:?}"
                );
                // Target: absolute, no '..', already normal, not the root,
                // unique, and resolves strictly inside the sandbox root.
                let target = Path::new(&m.target);
                assert!(target.is_absolute() && no_dots(target), "{m:?}");
                assert_eq!(normalise(&m.target), m.target, "{m:?}");
                assert_ne!(m.target, "/");
                assert!(targets.insert(m.target.clone()), "duplicate target {m:?}");
                let host = host_path(Path::new(ROOT), &m.target).expect("accepted target resolves");
                assert!(
                    host.starts_with(ROOT) && host != Path::new(ROOT),
                    "{m:?} -> {host:?}"
                );
            }
        }
        Err(e) => {
            let got: BTreeSet<String> = e.problems.iter().map(|p| p.field.clone()).collect();
            assert_eq!(got, expected, "problems: {:?}", e.problems);
        }
    }
});
