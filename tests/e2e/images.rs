//! OCI images (issue 18): import of an OCI layout built at test time from
//! busybox-static, list/inspect/remove over gRPC and sandboxctl, a hostile
//! archive refused with the host untouched, and running an imported image.

use std::process::Command;

use sandboxd_proto::v1 as pb;
use sandboxd_proto::v1::image_service_client::ImageServiceClient;

use crate::harness::Daemon;

/// A tar of `(path, kind, mode, data or link)` entries, names as raw bytes.
pub(crate) fn tar_of(entries: &[(&str, tar::EntryType, u32, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, kind, mode, data) in entries {
        let mut h = tar::Header::new_ustar();
        let raw = h.as_old_mut();
        raw.name[..name.len()].copy_from_slice(name.as_bytes());
        let body: &[u8] = if matches!(kind, tar::EntryType::Symlink | tar::EntryType::Link) {
            raw.linkname[..data.len()].copy_from_slice(data);
            &[]
        } else {
            data
        };
        h.set_entry_type(*kind);
        h.set_mode(*mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_size(body.len() as u64);
        h.set_cksum();
        b.append(&h, body).unwrap();
    }
    b.into_inner().unwrap()
}

fn busybox() -> Vec<u8> {
    let path = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("busybox-static is installed (.ci/run installs it)");
    std::fs::read(path).unwrap()
}

/// The busybox base layer: /bin/busybox, applet links, /etc/passwd.
pub(crate) fn busybox_layer() -> Vec<u8> {
    use tar::EntryType::{Directory, Regular, Symlink};
    let bb = busybox();
    let mut e: Vec<(&str, tar::EntryType, u32, &[u8])> = vec![
        ("bin", Directory, 0o755, b""),
        ("bin/busybox", Regular, 0o755, &bb),
        ("etc", Directory, 0o755, b""),
        (
            "etc/passwd",
            Regular,
            0o644,
            b"root:x:0:0::/:/bin/sh\nnobody:x:65534:65534::/:/bin/sh\n",
        ),
        ("tmp", Directory, 0o1777, b""),
        ("data", Directory, 0o755, b""),
    ];
    for a in [
        "bin/sh",
        "bin/cat",
        "bin/echo",
        "bin/ls",
        "bin/id",
        "bin/sleep",
        "bin/env",
        "bin/pwd",
        "bin/true",
    ] {
        e.push((a, Symlink, 0o777, b"busybox"));
    }
    tar_of(&e)
}

/// An OCI image layout (as a tar) of `layers` (plain tar), tagged `name`,
/// whose config says `run` (the `config` object).
pub(crate) fn oci_layout(name: &str, layers: &[Vec<u8>], run: &str) -> Vec<u8> {
    let sha = |b: &[u8]| sandboxd_images::sha256(b);
    let p = sandboxd_core::oci::Platform::host();
    let diff_ids: Vec<String> = layers.iter().map(|l| sha(l).to_string()).collect();
    let config = format!(
        r#"{{"architecture":"{}","os":"{}","config":{run},"rootfs":{{"type":"layers","diff_ids":{}}}}}"#,
        p.architecture,
        p.os,
        serde_json::to_string(&diff_ids).unwrap()
    );
    let desc = |media: &str, b: &[u8]| {
        format!(
            r#"{{"mediaType":"{media}","digest":"{}","size":{}}}"#,
            sha(b),
            b.len()
        )
    };
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{},"layers":[{}]}}"#,
        desc(
            "application/vnd.oci.image.config.v1+json",
            config.as_bytes()
        ),
        layers
            .iter()
            .map(|l| desc("application/vnd.oci.image.layer.v1.tar", l))
            .collect::<Vec<_>>()
            .join(",")
    );
    let index = format!(
        r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{}","size":{},"annotations":{{"org.opencontainers.image.ref.name":"{name}"}}}}]}}"#,
        sha(manifest.as_bytes()),
        manifest.len()
    );
    let mut blobs: Vec<(String, Vec<u8>)> = vec![
        (
            "oci-layout".into(),
            br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
        ),
        ("index.json".into(), index.into_bytes()),
    ];
    for b in [config.into_bytes(), manifest.into_bytes()]
        .into_iter()
        .chain(layers.iter().cloned())
    {
        blobs.push((format!("blobs/sha256/{}", sha(&b).hex()), b));
    }
    let entries: Vec<(&str, tar::EntryType, u32, &[u8])> = blobs
        .iter()
        .map(|(n, b)| (n.as_str(), tar::EntryType::Regular, 0o644, b.as_slice()))
        .collect();
    tar_of(&entries)
}

/// ImportImage with one archive (in chunks).
pub(crate) async fn import(
    d: &Daemon,
    archive: Vec<u8>,
) -> Result<pb::ImportImageResponse, tonic::Status> {
    let mut c = ImageServiceClient::new(d.channel().await);
    let msgs: Vec<pb::ImportImageRequest> = archive
        .chunks(256 << 10)
        .map(|c| pb::ImportImageRequest {
            name: String::new(),
            data: c.to_vec(),
        })
        .collect();
    c.import_image(tokio_stream::iter(msgs))
        .await
        .map(|r| r.into_inner())
}

fn sandboxctl(d: &Daemon) -> Command {
    let sandboxd = std::path::Path::new(env!("CARGO_BIN_EXE_sandboxd"));
    let mut cmd = Command::new(sandboxd.with_file_name("sandboxctl"));
    cmd.arg("--host")
        .arg(format!("unix://{}", d.socket.display()));
    cmd
}

fn store_entries(d: &Daemon) -> Vec<String> {
    let mut out = Vec::new();
    for sub in ["blobs/sha256", "layers/sha256", "tmp"] {
        if let Ok(rd) = std::fs::read_dir(d.images.join(".oci").join(sub)) {
            out.extend(rd.map(|e| format!("{sub}/{}", e.unwrap().file_name().to_string_lossy())));
        }
    }
    out
}

#[tokio::test]
async fn an_oci_layout_imports_lists_inspects_and_removes_with_sandboxctl() {
    let d = Daemon::start();
    let archive = oci_layout(
        "local/busybox:1",
        &[busybox_layer()],
        r#"{"Cmd":["/bin/sh"],"Env":["A=1"]}"#,
    );
    let file = d.dir.join("busybox.tar");
    std::fs::write(&file, &archive).unwrap();
    let o = sandboxctl(&d)
        .args(["image", "import"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "import: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = sandboxctl(&d).arg("images").output().unwrap();
    let listed = String::from_utf8_lossy(&o.stdout);
    assert!(
        listed.contains("local/busybox:1")
            && (listed.contains("linux/") || listed.contains("freebsd/")),
        "{listed}"
    );
    let o = sandboxctl(&d)
        .args(["image", "inspect", "local/busybox:1"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["cmd"], serde_json::json!(["/bin/sh"]));
    assert_eq!(v["env"], serde_json::json!(["A=1"]));
    // Importing the same archive again stores nothing new.
    let before = store_entries(&d);
    import(&d, archive).await.unwrap();
    assert_eq!(store_entries(&d), before);
    let o = sandboxctl(&d)
        .args(["rmi", "local/busybox:1"])
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "rmi: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(
        store_entries(&d),
        Vec::<String>::new(),
        "rmi collects every blob and layer"
    );
    let o = sandboxctl(&d)
        .args(["rmi", "local/busybox:1"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not found"));
    d.finish().await;
}

#[tokio::test]
async fn hostile_archives_are_refused_and_the_host_is_untouched() {
    use tar::EntryType::{Char, Link, Regular, Symlink};
    let d = Daemon::start();
    let canary_dir = d.dir.join("host");
    std::fs::create_dir_all(&canary_dir).unwrap();
    let canary = canary_dir.join("canary");
    std::fs::write(&canary, "untouched").unwrap();
    let host = canary_dir.display().to_string();
    let abs = format!("{host}/canary");
    let up = format!("{}{}", "../".repeat(16), abs.trim_start_matches('/'));
    let through = host.clone();
    let cases: Vec<(&str, Vec<u8>, tonic::Code)> = vec![
        (
            "absolute",
            tar_of(&[(&abs, Regular, 0o644, b"pwned")]),
            tonic::Code::InvalidArgument,
        ),
        (
            "traversal",
            tar_of(&[(&up, Regular, 0o644, b"pwned")]),
            tonic::Code::InvalidArgument,
        ),
        (
            "through symlink",
            tar_of(&[
                ("x", Symlink, 0o777, through.as_bytes()),
                ("x/canary", Regular, 0o644, b"pwned"),
            ]),
            tonic::Code::InvalidArgument,
        ),
        (
            "hardlink out",
            tar_of(&[("h", Link, 0o644, abs.as_bytes())]),
            tonic::Code::InvalidArgument,
        ),
        (
            "device",
            tar_of(&[("dev/mem", Char, 0o666, b"")]),
            tonic::Code::InvalidArgument,
        ),
        (
            "duplicate",
            tar_of(&[("a", Regular, 0o644, b"1"), ("a", Regular, 0o644, b"2")]),
            tonic::Code::InvalidArgument,
        ),
    ];
    for (case, layer, code) in cases {
        let status = import(&d, oci_layout("local/evil:1", &[layer], "{}"))
            .await
            .unwrap_err();
        assert_eq!(status.code(), code, "{case}: {}", status.message());
        assert!(
            status.message().contains("entry"),
            "{case}: {}",
            status.message()
        );
        assert_eq!(
            std::fs::read_to_string(&canary).unwrap(),
            "untouched",
            "{case}"
        );
        assert_eq!(std::fs::read_dir(&canary_dir).unwrap().count(), 1, "{case}");
        assert_eq!(
            store_entries(&d),
            Vec::<String>::new(),
            "{case}: the store kept something"
        );
    }
    // A corrupt blob: digest mismatch, nothing kept.
    let mut archive = oci_layout("local/bad:1", &[busybox_layer()], "{}");
    let at = archive.len() / 2;
    archive[at] ^= 0xff;
    let status = import(&d, archive).await.unwrap_err();
    assert_eq!(
        status.code(),
        tonic::Code::InvalidArgument,
        "{}",
        status.message()
    );
    assert_eq!(store_entries(&d), Vec::<String>::new());
    d.finish().await;
}

#[tokio::test]
async fn an_imported_image_runs_on_its_layer_chain_with_config_defaults() {
    use tar::EntryType::{Directory, Regular};
    if !crate::harness::linux_backend() {
        eprintln!(
            "SKIPPED: OCI images run on the linux backend only (chroot and freebsd refuse them: docs/images.md)"
        );
        return;
    }
    let d = Daemon::start();
    // A base with /etc/motd, which the top layer whites out.
    let base = {
        let bb = busybox();
        let mut e: Vec<(&str, tar::EntryType, u32, &[u8])> = vec![
            ("bin", Directory, 0o755, b""),
            ("bin/busybox", Regular, 0o755, &bb),
            ("etc", Directory, 0o755, b""),
            ("etc/passwd", Regular, 0o644, b"root:x:0:0::/:/bin/sh\n"),
            ("etc/motd", Regular, 0o644, b"base\n"),
            ("tmp", Directory, 0o1777, b""),
            ("work", Directory, 0o755, b""),
        ];
        for a in [
            "bin/sh",
            "bin/cat",
            "bin/echo",
            "bin/ls",
            "bin/id",
            "bin/sleep",
            "bin/pwd",
        ] {
            e.push((a, tar::EntryType::Symlink, 0o777, b"busybox"));
        }
        tar_of(&e)
    };
    let top = tar_of(&[
        ("etc/.wh.motd", Regular, 0o644, b""),
        ("hello", Regular, 0o644, b"from the top layer\n"),
    ]);
    let run = r#"{"Cmd":["/bin/sh","-c","echo \"$A $B\" > /tmp/out; pwd >> /tmp/out; id -u >> /tmp/out; exec sleep 60"],"Env":["A=image","B=image"],"WorkingDir":"/work","User":"0"}"#;
    let resp = import(&d, oci_layout("local/app:1", &[base, top], run))
        .await
        .unwrap();
    let digest = resp.images[0].digest.clone();
    let mut c = d.clients().await;
    let sb = c
        .create(pb::SandboxSpec {
            image: "local/app:1".into(),
            mode: pb::SandboxMode::Process as i32,
            process: Some(pb::ProcessSpec {
                env: vec!["B=spec".into()],
                ..Default::default()
            }),
            ..Default::default()
        })
        .await;
    // The record pins the image by digest.
    assert_eq!(
        sb.spec.as_ref().unwrap().image,
        format!("local/app@{digest}")
    );
    let mut out = String::new();
    for _ in 0..50 {
        let r = c.sh(&sb.id, "cat /tmp/out 2>/dev/null").await;
        out = crate::harness::out(&r);
        if out.lines().count() >= 3 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(
        out, "image spec\n/work\n0\n",
        "Cmd, Env (spec wins), WorkingDir and User from the config"
    );
    let r = c
        .sh(
            &sb.id,
            "cat /hello; ls /etc/motd 2>&1; echo x > /tmp/new && cat /tmp/new",
        )
        .await;
    let o = crate::harness::out(&r);
    assert!(o.starts_with("from the top layer\n"), "{o}");
    assert!(
        o.contains("No such file"),
        "the top layer's whiteout hides /etc/motd: {o}"
    );
    assert!(
        o.ends_with("x\n"),
        "the root is writable (the sandbox's upper): {o}"
    );
    // Nothing was written into the shared layers.
    let layers = d.images.join(".oci/layers/sha256");
    for e in std::fs::read_dir(&layers).unwrap() {
        let p = e.unwrap().path();
        assert!(
            !p.join("tmp/new").exists() && !p.join("tmp/out").exists(),
            "a layer was written"
        );
    }
    // In use: RemoveImage is refused.
    let mut images = ImageServiceClient::new(d.channel().await);
    let st = images
        .remove_image(pb::RemoveImageRequest {
            reference: "local/app:1".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        st.code(),
        tonic::Code::FailedPrecondition,
        "{}",
        st.message()
    );
    assert!(st.message().contains(&sb.id), "{}", st.message());
    c.destroy(&sb.id).await;
    images
        .remove_image(pb::RemoveImageRequest {
            reference: "local/app:1".into(),
        })
        .await
        .unwrap();
    assert_eq!(store_entries(&d), Vec::<String>::new());
    // A reference that is not in the store: NOT_FOUND naming it.
    let st = c
        .try_create(pb::SandboxSpec {
            image: "local/missing:1".into(),
            mode: pb::SandboxMode::Idle as i32,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(st.code(), tonic::Code::NotFound, "{}", st.message());
    assert!(st.message().contains("local/missing:1"), "{}", st.message());
    d.finish().await;
}
