//! Hostile archives: each must be refused with a clear error, the host
//! canary beside the store untouched, and nothing left in the store.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use sandboxd_core::oci::{Compression, Digest, UnpackLimits};
use sandboxd_images::{ImageError, Store, import_archive, sha256};

#[derive(Clone)]
enum E {
    File(&'static str, Vec<u8>, u32),
    Dir(&'static str),
    Symlink(&'static str, String),
    Hardlink(&'static str, String),
    Char(&'static str),
    Block(&'static str),
    Raw(String, Vec<u8>),
}

/// A tar with exactly these headers: names are written as raw bytes, so
/// the builder's own path checks cannot sanitise the attack.
fn tar(entries: &[E]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_ustar();
        let (name, kind, data, link, mode): (String, tar::EntryType, Vec<u8>, Option<String>, u32) =
            match e.clone() {
                E::File(n, d, m) => (n.into(), tar::EntryType::Regular, d, None, m),
                E::Raw(n, d) => (n, tar::EntryType::Regular, d, None, 0o644),
                E::Dir(n) => (n.into(), tar::EntryType::Directory, vec![], None, 0o755),
                E::Symlink(n, t) => (n.into(), tar::EntryType::Symlink, vec![], Some(t), 0o777),
                E::Hardlink(n, t) => (n.into(), tar::EntryType::Link, vec![], Some(t), 0o644),
                E::Char(n) => (n.into(), tar::EntryType::Char, vec![], None, 0o666),
                E::Block(n) => (n.into(), tar::EntryType::Block, vec![], None, 0o666),
            };
        let raw = h.as_old_mut();
        assert!(name.len() < 100, "test names fit the ustar field");
        raw.name[..name.len()].copy_from_slice(name.as_bytes());
        if let Some(l) = &link {
            raw.linkname[..l.len()].copy_from_slice(l.as_bytes());
        }
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_size(data.len() as u64);
        h.set_cksum();
        b.append(&h, data.as_slice()).unwrap();
    }
    b.into_inner().unwrap()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut g = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    g.write_all(bytes).unwrap();
    g.finish().unwrap()
}

struct Env {
    _tmp: tempfile::TempDir,
    images: PathBuf,
    host: PathBuf,
    store: Store,
}

const CANARY: &str = "canary: untouched\n";

fn env(limits: UnpackLimits) -> Env {
    let tmp = tempfile::tempdir().unwrap();
    let images = tmp.path().join("images");
    let host = tmp.path().join("host");
    std::fs::create_dir_all(&images).unwrap();
    std::fs::create_dir_all(&host).unwrap();
    std::fs::write(host.join("canary"), CANARY).unwrap();
    let store = Store::open(&images, limits).unwrap();
    Env {
        _tmp: tmp,
        images,
        host,
        store,
    }
}

fn small() -> UnpackLimits {
    UnpackLimits {
        max_entries: 50,
        max_bytes: 1 << 20,
        max_path: 4096,
    }
}

impl Env {
    /// The canary is as written and the host dir holds nothing else; the
    /// store has no layer, no blob and no temporary left.
    fn assert_clean(&self, case: &str) {
        assert_eq!(
            std::fs::read_to_string(self.host.join("canary")).unwrap(),
            CANARY,
            "{case}: canary changed"
        );
        let names: Vec<_> = std::fs::read_dir(&self.host)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec!["canary"], "{case}: host dir gained entries");
        let meta = std::fs::symlink_metadata(self.host.join("canary")).unwrap();
        assert_eq!(meta.nlink(), 1, "{case}: canary was hard-linked");
        for d in ["layers/sha256", "blobs/sha256", "tmp"] {
            let left: Vec<_> = std::fs::read_dir(self.store.root().join(d))
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            assert!(left.is_empty(), "{case}: {d} kept {left:?}");
        }
    }
}

fn unpack(env: &Env, layer: &[u8], c: Compression) -> Result<(), ImageError> {
    let raw = match c {
        Compression::None => layer.to_vec(),
        Compression::Gzip => {
            let mut out = Vec::new();
            std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(layer), &mut out).unwrap();
            out
        }
    };
    env.store.unpack_from(layer, c, &sha256(&raw))
}

#[test]
fn hostile_layers_are_refused_and_the_host_is_untouched() {
    let probe = env(small());
    let host = probe.host.display().to_string();
    // Climbs from <layer tmp>/root to the temp dir holding host/.
    let up = "../".repeat(12);
    let big = vec![0u8; 2 << 20];
    let many: Vec<E> = (0..60).map(|i| E::Raw(format!("f{i}"), vec![])).collect();
    let cases: Vec<(&str, Vec<u8>, Compression, &str)> = vec![
        (
            "absolute path",
            tar(&[E::Raw(format!("{host}/canary"), b"pwned".to_vec())]),
            Compression::None,
            "absolute path",
        ),
        (
            "traversal",
            tar(&[E::Raw(format!("{up}{host}/canary"), b"pwned".to_vec())]),
            Compression::None,
            "'..'",
        ),
        (
            "traversal mid-path",
            tar(&[E::Raw("a/../../x".into(), b"pwned".to_vec())]),
            Compression::None,
            "'..'",
        ),
        (
            "write through absolute symlink",
            tar(&[
                E::Symlink("x", host.clone()),
                E::File("x/canary", b"pwned".to_vec(), 0o644),
            ]),
            Compression::None,
            "is a symlink",
        ),
        (
            "write through nested symlink",
            tar(&[
                E::Dir("a"),
                E::Symlink("a/x", host.clone()),
                E::File("a/x/new", b"pwned".to_vec(), 0o644),
            ]),
            Compression::None,
            "is a symlink",
        ),
        (
            "symlink climbing out",
            tar(&[E::Symlink("x", format!("{up}{host}"))]),
            Compression::None,
            "points outside",
        ),
        (
            "hardlink to absolute host file",
            tar(&[E::Hardlink("h", format!("{host}/canary"))]),
            Compression::None,
            "hardlink target",
        ),
        (
            "hardlink climbing out",
            tar(&[E::Hardlink("h", format!("{up}{host}/canary"))]),
            Compression::None,
            "hardlink target",
        ),
        (
            "hardlink through symlink",
            tar(&[
                E::Symlink("x", host.clone()),
                E::Hardlink("h", "x/canary".into()),
            ]),
            Compression::None,
            "not an earlier file",
        ),
        (
            "hardlink to a later entry",
            tar(&[E::Hardlink("h", "f".into()), E::File("f", vec![], 0o644)]),
            Compression::None,
            "not an earlier file",
        ),
        (
            "char device",
            tar(&[E::Char("dev/mem")]),
            Compression::None,
            "device nodes",
        ),
        (
            "block device",
            tar(&[E::Block("dev/sda")]),
            Compression::None,
            "device nodes",
        ),
        (
            "duplicate file",
            tar(&[
                E::File("a", b"1".to_vec(), 0o644),
                E::File("a", b"2".to_vec(), 0o644),
            ]),
            Compression::None,
            "duplicate",
        ),
        (
            "dir over symlink",
            tar(&[E::Symlink("d", host.clone()), E::Dir("d")]),
            Compression::None,
            "duplicate",
        ),
        (
            "file then dir",
            tar(&[E::File("d", vec![], 0o644), E::Dir("d")]),
            Compression::None,
            "duplicate",
        ),
        (
            "whiteout then file",
            tar(&[E::File(".wh.a", vec![], 0), E::File("a", vec![], 0o644)]),
            Compression::None,
            "duplicate",
        ),
        (
            "whiteout traversal",
            tar(&[E::Raw(format!("{up}{host}/.wh.canary"), vec![])]),
            Compression::None,
            "'..'",
        ),
        (
            "empty whiteout",
            tar(&[E::File("a/.wh.", vec![], 0)]),
            Compression::None,
            "malformed whiteout",
        ),
        (
            "too many entries",
            tar(&many),
            Compression::None,
            "more than 50 entries",
        ),
        (
            "too many bytes",
            tar(&[E::File("big", big.clone(), 0o644)]),
            Compression::None,
            "too large",
        ),
        (
            "gzip bomb",
            gzip(&tar(&[E::File("big", vec![0u8; 64 << 20], 0o644)])),
            Compression::Gzip,
            "too large",
        ),
        (
            "not a tar",
            b"this is not a tar archive, just text padding it out".repeat(20),
            Compression::None,
            "",
        ),
    ];
    let mut failures = Vec::new();
    for (case, layer, c, want) in cases {
        let e = env(small());
        // Same absolute host path in every env: rebuild names against it.
        let layer = rebase(&layer, &probe.host, &e.host);
        match unpack(&e, &layer, c) {
            Ok(()) => failures.push(format!("{case}: accepted")),
            Err(err) => {
                let msg = err.to_string();
                if !msg.contains(want) {
                    failures.push(format!("{case}: error {msg:?} lacks {want:?}"));
                }
            }
        }
        e.assert_clean(case);
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// Rewrites the host path inside a tar built for another env (same
/// length: both are tempdir paths of one shape).
fn rebase(tar: &[u8], from: &Path, to: &Path) -> Vec<u8> {
    let (f, t) = (
        from.as_os_str().as_encoded_bytes(),
        to.as_os_str().as_encoded_bytes(),
    );
    if f.len() != t.len() {
        return tar.to_vec();
    }
    let mut out = tar.to_vec();
    let mut i = 0;
    while i + f.len() <= out.len() {
        if &out[i..i + f.len()] == f {
            out[i..i + f.len()].copy_from_slice(t);
            // Header checksums change with the name: recompute the header.
            let hstart = i - i % 512;
            let h = tar::Header::from_byte_slice(&out[hstart..hstart + 512]).clone();
            let mut h = h;
            h.set_cksum();
            out[hstart..hstart + 512].copy_from_slice(h.as_bytes());
            i += f.len();
        } else {
            i += 1;
        }
    }
    out
}

#[test]
fn diff_id_mismatch_keeps_nothing() {
    let e = env(small());
    let layer = tar(&[E::File("a", b"x".to_vec(), 0o644)]);
    let wrong = sha256(b"something else");
    let err = e
        .store
        .unpack_from(layer.as_slice(), Compression::None, &wrong)
        .unwrap_err();
    assert!(matches!(err, ImageError::DigestMismatch { .. }), "{err}");
    e.assert_clean("diff_id mismatch");
}

#[test]
fn a_benign_layer_keeps_modes_setuid_links_and_overlay_whiteouts() {
    let e = env(small());
    let layer = tar(&[
        E::Dir("bin"),
        E::File("bin/busybox", b"#!".to_vec(), 0o4755),
        E::Symlink("bin/sh", "busybox".into()),
        E::Symlink("etc/mtab", "/proc/mounts".into()),
        E::Hardlink("bin/ls", "bin/busybox".into()),
        E::File("etc/.wh.passwd", vec![], 0),
        E::File("var/.wh..wh..opq", vec![], 0),
        E::Dir("bin"),
    ]);
    let diff = sha256(&layer);
    e.store
        .unpack_from(layer.as_slice(), Compression::None, &diff)
        .unwrap();
    let root = e.store.root().join("layers/sha256").join(diff.hex());
    let bb = std::fs::symlink_metadata(root.join("bin/busybox")).unwrap();
    assert_eq!(
        bb.permissions().mode() & 0o7777,
        0o4755,
        "setuid kept inside the layer"
    );
    assert_eq!(bb.nlink(), 2, "hardlink made inside the layer");
    assert_eq!(
        std::fs::read_link(root.join("bin/sh")).unwrap(),
        Path::new("busybox")
    );
    assert_eq!(
        std::fs::read_link(root.join("etc/mtab")).unwrap(),
        Path::new("/proc/mounts")
    );
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::fs::FileTypeExt;
        let wh = std::fs::symlink_metadata(root.join("etc/passwd")).unwrap();
        assert!(
            wh.file_type().is_char_device() && wh.rdev() == 0,
            "overlay whiteout"
        );
        let var = std::fs::File::open(root.join("var")).unwrap();
        let mut buf = [0u8; 4];
        let n = xattr_get(&var, &mut buf);
        assert_eq!(&buf[..n], b"y", "opaque directory");
    }
    // The store itself is private: setuid files are unreachable for users.
    let m = std::fs::metadata(e.store.root()).unwrap();
    assert_eq!(m.permissions().mode() & 0o777, 0o700);
    let _ = &e.images;
}

#[cfg(target_os = "linux")]
fn xattr_get(f: &std::fs::File, buf: &mut [u8]) -> usize {
    use std::os::fd::AsRawFd;
    // SAFETY: a live descriptor, a NUL-terminated name and a buffer whose
    // length is passed with it.
    let n = unsafe {
        libc::fgetxattr(
            f.as_raw_fd(),
            c"trusted.overlay.opaque".as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    assert!(
        n >= 0,
        "no opaque xattr: {}",
        std::io::Error::last_os_error()
    );
    n as usize
}

// ---- whole archives ----

fn oci_layout(layers: &[Vec<u8>], tag: Option<&str>, corrupt: bool) -> Vec<u8> {
    let diff_ids: Vec<String> = layers.iter().map(|l| sha256(l).to_string()).collect();
    let config = format!(
        r#"{{"architecture":"{}","os":"{}","config":{{"Cmd":["/bin/sh"]}},"rootfs":{{"type":"layers","diff_ids":{}}}}}"#,
        sandboxd_core::oci::Platform::host().architecture,
        sandboxd_core::oci::Platform::host().os,
        serde_json::to_string(&diff_ids).unwrap()
    );
    let gz: Vec<Vec<u8>> = layers.iter().map(|l| gzip(l)).collect();
    let desc = |media: &str, b: &[u8]| {
        format!(
            r#"{{"mediaType":"{media}","digest":"{}","size":{}}}"#,
            sha256(b),
            b.len()
        )
    };
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{},"layers":[{}]}}"#,
        desc(
            "application/vnd.oci.image.config.v1+json",
            config.as_bytes()
        ),
        gz.iter()
            .map(|g| desc("application/vnd.oci.image.layer.v1.tar+gzip", g))
            .collect::<Vec<_>>()
            .join(",")
    );
    let ann = tag.map_or(String::new(), |t| {
        format!(r#","annotations":{{"org.opencontainers.image.ref.name":"{t}"}}"#)
    });
    let index = format!(
        r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{}","size":{}{ann}}}]}}"#,
        sha256(manifest.as_bytes()),
        manifest.len()
    );
    let mut files: Vec<(String, Vec<u8>)> = vec![
        (
            "oci-layout".into(),
            br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
        ),
        ("index.json".into(), index.into_bytes()),
    ];
    for b in [config.into_bytes(), manifest.into_bytes()]
        .into_iter()
        .chain(gz)
    {
        let name = format!("blobs/sha256/{}", sha256(&b).hex());
        let mut b = b;
        if corrupt && files.len() == 4 {
            b[0] ^= 0xff;
        }
        files.push((name, b));
    }
    let entries: Vec<E> = files.into_iter().map(|(n, b)| E::Raw(n, b)).collect();
    tar(&entries)
}

#[test]
fn an_oci_layout_imports_shares_layers_and_removes_cleanly() {
    let e = env(UnpackLimits::default());
    let base = tar(&[E::Dir("bin"), E::File("bin/sh", b"base".to_vec(), 0o755)]);
    let top_a = tar(&[E::File("a", b"A".to_vec(), 0o644)]);
    let top_b = tar(&[E::File("b", b"B".to_vec(), 0o644)]);
    let a = import_archive(
        &e.store,
        oci_layout(&[base.clone(), top_a], Some("latest"), false).as_slice(),
        Some("local/a"),
    )
    .unwrap();
    let b = import_archive(
        &e.store,
        oci_layout(&[base.clone(), top_b], None, false).as_slice(),
        Some("local/b:1"),
    )
    .unwrap();
    assert_eq!(a[0].refs, vec!["local/a:latest"]);
    assert_eq!(b[0].refs, vec!["local/b:1"]);
    // The base layer is stored (and unpacked) once.
    let layers = std::fs::read_dir(e.store.root().join("layers/sha256"))
        .unwrap()
        .count();
    assert_eq!(layers, 3);
    assert_eq!(a[0].layer_dirs()[0], b[0].layer_dirs()[0]);
    assert!(
        e.images
            .join(&a[0].layer_dirs()[0])
            .join("bin/sh")
            .is_file()
    );
    assert_eq!(e.store.resolve("local/a").unwrap().manifest, a[0].manifest);
    assert_eq!(
        e.store
            .resolve(&a[0].manifest.to_string())
            .unwrap()
            .manifest,
        a[0].manifest
    );
    assert_eq!(e.store.list().unwrap().len(), 2);
    let (_, gc) = e.store.remove("local/a:latest").unwrap();
    assert_eq!(gc.layers, 1, "only a's own layer goes");
    assert!(e.store.resolve("local/a").is_err());
    e.store.remove("local/b:1").unwrap();
    e.assert_clean("after removing both");
}

#[test]
fn archive_level_attacks_are_refused() {
    let base = tar(&[E::File("x", b"x".to_vec(), 0o644)]);
    let up = "../".repeat(12);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "corrupt blob",
            oci_layout(std::slice::from_ref(&base), Some("local/c:latest"), true),
            "digest mismatch",
        ),
        (
            "member traversal",
            tar(&[E::Raw(format!("{up}x"), vec![])]),
            "'..'",
        ),
        (
            "member absolute",
            tar(&[E::Raw("/etc/x".into(), vec![])]),
            "absolute",
        ),
        ("member device", tar(&[E::Char("dev")]), "unsupported type"),
        (
            "no index",
            tar(&[E::Raw("hello".into(), vec![])]),
            "neither an OCI image layout",
        ),
        (
            "hostile layer inside",
            oci_layout(
                &[tar(&[E::Raw("/etc/passwd".into(), vec![])])],
                Some("local/c:latest"),
                false,
            ),
            "absolute path",
        ),
        (
            "unnamed",
            oci_layout(std::slice::from_ref(&base), None, false),
            "does not name",
        ),
    ];
    for (case, archive, want) in cases {
        let e = env(small());
        let err = import_archive(&e.store, archive.as_slice(), None)
            .unwrap_err()
            .to_string();
        assert!(err.contains(want), "{case}: {err}");
        e.assert_clean(case);
    }
}

#[test]
fn a_docker_save_archive_imports() {
    let e = env(UnpackLimits::default());
    let layer = tar(&[E::File("hello", b"hi".to_vec(), 0o644)]);
    let diff = sha256(&layer);
    let config = format!(
        r#"{{"architecture":"{}","os":"{}","rootfs":{{"type":"layers","diff_ids":["{diff}"]}}}}"#,
        sandboxd_core::oci::Platform::host().architecture,
        sandboxd_core::oci::Platform::host().os,
    );
    let cfg_name = format!("{}.json", sha256(config.as_bytes()).hex());
    let manifest = format!(
        r#"[{{"Config":"{cfg_name}","RepoTags":["saved:v1"],"Layers":["abc/layer.tar","def/layer.tar"]}}]"#
    );
    // The second layer is a symlink to the first (older docker save).
    let config2 = config.replace(
        &format!(r#"["{diff}"]"#),
        &format!(r#"["{diff}","{diff}"]"#),
    );
    let cfg2_name = format!("{}.json", sha256(config2.as_bytes()).hex());
    let manifest = manifest.replace(&cfg_name, &cfg2_name);
    let archive = tar(&[
        E::Raw(cfg2_name.clone(), config2.into_bytes()),
        E::Dir("abc"),
        E::Raw("abc/layer.tar".into(), layer.clone()),
        E::Dir("def"),
        E::Symlink("def/layer.tar", "../abc/layer.tar".into()),
        E::Raw("manifest.json".into(), manifest.into_bytes()),
    ]);
    let imported = import_archive(&e.store, archive.as_slice(), None).unwrap();
    assert_eq!(imported[0].refs, vec!["saved:v1"]);
    assert_eq!(imported[0].layers.len(), 2);
    assert!(
        e.images
            .join(&imported[0].layer_dirs()[0])
            .join("hello")
            .is_file()
    );
    let _: Digest = imported[0].config_digest.clone();
}

#[test]
fn a_flattened_copy_applies_whiteouts_opaque_dirs_and_never_follows_links() {
    use sandboxd_core::oci::WhiteoutFormat;
    let e = env(UnpackLimits::default());
    let store = Store::open(&e.images, UnpackLimits::default())
        .unwrap()
        .with_whiteout_format(WhiteoutFormat::Marker);
    let host = e.host.display().to_string();
    let layers = [
        tar(&[
            E::Dir("bin"),
            E::File("bin/busybox", b"v1".to_vec(), 0o755),
            E::File("etc/motd", b"base".to_vec(), 0o644),
            E::File("var/old", b"old".to_vec(), 0o644),
            E::Symlink("x", host.clone()),
            E::File("f", b"file".to_vec(), 0o644),
        ]),
        tar(&[
            E::File("bin/busybox", b"v2".to_vec(), 0o4755),
            E::File("etc/.wh.motd", vec![], 0),
            E::File("var/.wh..wh..opq", vec![], 0),
            E::File("var/new", b"new".to_vec(), 0o644),
            // A directory where the lower layer had a symlink out: the
            // symlink is replaced, never entered.
            E::Dir("x"),
            E::File("x/canary", b"pwned".to_vec(), 0o644),
            E::Dir("f"),
        ]),
    ];
    let mut rels = Vec::new();
    for l in &layers {
        let diff = sha256(l);
        store
            .unpack_from(l.as_slice(), Compression::None, &diff)
            .unwrap();
        rels.push(sandboxd_images::layer_rel(&diff));
    }
    let dest = e.images.join("flat");
    std::fs::create_dir(&dest).unwrap();
    sandboxd_images::flatten(&e.images, &rels, &dest).unwrap();
    assert_eq!(std::fs::read(dest.join("bin/busybox")).unwrap(), b"v2");
    let m = std::fs::metadata(dest.join("bin/busybox")).unwrap();
    assert_eq!(m.permissions().mode() & 0o7777, 0o4755);
    assert!(!dest.join("etc/motd").exists(), "whiteout applied");
    assert!(dest.join("etc").is_dir());
    assert!(!dest.join("var/old").exists(), "opaque directory applied");
    assert_eq!(std::fs::read(dest.join("var/new")).unwrap(), b"new");
    assert!(
        !dest.join("var/.wh..wh..opq").exists() && !dest.join("etc/.wh.motd").exists(),
        "markers are not copied"
    );
    assert!(std::fs::symlink_metadata(dest.join("x")).unwrap().is_dir());
    assert_eq!(std::fs::read(dest.join("x/canary")).unwrap(), b"pwned");
    assert!(dest.join("f").is_dir(), "a directory replaces a lower file");
    assert_eq!(
        std::fs::read_to_string(e.host.join("canary")).unwrap(),
        CANARY
    );
    // A non-empty destination is refused.
    assert!(sandboxd_images::flatten(&e.images, &rels, &dest).is_err());
}

#[test]
fn a_store_path_planted_as_a_symlink_is_refused_and_not_followed() {
    let tmp = tempfile::tempdir().unwrap();
    let images = tmp.path().join("images");
    let elsewhere = tmp.path().join("elsewhere");
    std::fs::create_dir_all(&images).unwrap();
    std::fs::create_dir_all(&elsewhere).unwrap();
    std::fs::set_permissions(&elsewhere, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink(&elsewhere, images.join(".oci")).unwrap();
    let e = Store::open(&images, UnpackLimits::default()).unwrap_err();
    assert!(e.to_string().contains("not a directory"), "{e}");
    let m = std::fs::metadata(&elsewhere).unwrap();
    assert_eq!(
        m.permissions().mode() & 0o777,
        0o755,
        "the target was not chmod'ed"
    );
    assert_eq!(
        std::fs::read_dir(&elsewhere).unwrap().count(),
        0,
        "nothing created through it"
    );
}
