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
    let files = oci_files(name, layers, run, None);
    let entries: Vec<(&str, tar::EntryType, u32, &[u8])> = files
        .iter()
        .map(|(n, b)| (n.as_str(), tar::EntryType::Regular, 0o644, b.as_slice()))
        .collect();
    tar_of(&entries)
}

/// The files of an OCI image layout: `oci-layout`, `index.json` (one
/// entry annotated `name`) and the blobs. With `foreign`, the entry is an
/// index of two manifests: one for that other architecture (a config only)
/// and this host's.
pub(crate) fn oci_files(
    name: &str,
    layers: &[Vec<u8>],
    run: &str,
    foreign: Option<&str>,
) -> Vec<(String, Vec<u8>)> {
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
    let mut extra: Vec<Vec<u8>> = Vec::new();
    let (top_media, top) = match foreign {
        None => (
            "application/vnd.oci.image.manifest.v1+json",
            manifest.clone().into_bytes(),
        ),
        Some(arch) => {
            let fconfig = format!(
                r#"{{"architecture":"{arch}","os":"{}","rootfs":{{"type":"layers","diff_ids":{}}}}}"#,
                p.os,
                serde_json::to_string(&diff_ids).unwrap()
            );
            let fmanifest = manifest.replace(
                &desc(
                    "application/vnd.oci.image.config.v1+json",
                    config.as_bytes(),
                ),
                &desc(
                    "application/vnd.oci.image.config.v1+json",
                    fconfig.as_bytes(),
                ),
            );
            let plat = |arch: &str, m: &str| {
                format!(
                    r#"{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{}","size":{},"platform":{{"architecture":"{arch}","os":"{}"}}}}"#,
                    sha(m.as_bytes()),
                    m.len(),
                    p.os
                )
            };
            let index = format!(
                r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{},{}]}}"#,
                plat(arch, &fmanifest),
                plat(&p.architecture, &manifest)
            );
            extra.push(fconfig.into_bytes());
            extra.push(fmanifest.into_bytes());
            (
                "application/vnd.oci.image.index.v1+json",
                index.into_bytes(),
            )
        }
    };
    let index = format!(
        r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{top_media}","digest":"{}","size":{},"annotations":{{"org.opencontainers.image.ref.name":"{name}"}}}}]}}"#,
        sha(&top),
        top.len()
    );
    if foreign.is_some() {
        extra.push(top);
    }
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
        .chain(extra)
    {
        blobs.push((format!("blobs/sha256/{}", sha(&b).hex()), b));
    }
    blobs
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
    let sandboxd = crate::harness::sandboxd_bin();
    let mut cmd = Command::new(sandboxd.with_file_name("sandboxctl"));
    cmd.arg("--host")
        .arg(format!("unix://{}", d.socket.display()));
    cmd
}

pub(crate) fn store_entries(d: &Daemon) -> Vec<String> {
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
#[cfg_attr(
    any(feature = "force-chroot", not(target_os = "linux")),
    ignore = "the linux backend's run (chroot's is the_chroot_backend_runs_an_oci_image_on_its_layer_chain); this suite does not run the FreeBSD flattened copy yet (docs/images.md)"
)]
async fn an_imported_image_runs_on_its_layer_chain_with_config_defaults() {
    use tar::EntryType::{Directory, Regular};
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

// ---- pull from a real registry (Debian's docker-registry, skopeo) ----

/// A distribution registry (Debian's `docker-registry`, 2.8) on a free
/// 127.0.0.1 port with its own config and storage; killed (by pid) on drop.
pub(crate) struct Registry {
    child: std::process::Child,
    /// "127.0.0.1:PORT".
    pub(crate) host: String,
    /// Its storage directory.
    pub(crate) storage: std::path::PathBuf,
    /// The test CA's certificate (TLS registries).
    pub(crate) ca: Option<std::path::PathBuf>,
    /// Basic-auth credentials it demands, if any.
    pub(crate) creds: Option<(String, String)>,
}

impl Registry {
    pub(crate) fn start(dir: &std::path::Path, tls: bool) -> Self {
        Self::start_with(dir, tls, None)
    }

    /// With `creds`, the registry demands HTTP basic authentication
    /// (htpasswd, bcrypt; needs TLS).
    pub(crate) fn start_with(
        dir: &std::path::Path,
        tls: bool,
        creds: Option<(&str, &str)>,
    ) -> Self {
        Self::spawn(dir, tls, creds, None)
    }

    /// A registry that delegates authentication to a token server
    /// (distribution's `auth: token`: `token` is the config's
    /// realm/service/issuer/rootcertbundle block). `creds` are what skopeo
    /// pushes with.
    pub(crate) fn start_token(
        dir: &std::path::Path,
        tls: bool,
        token: &str,
        creds: (&str, &str),
    ) -> Self {
        let mut r = Self::spawn(dir, tls, None, Some(token));
        r.creds = Some((creds.0.to_owned(), creds.1.to_owned()));
        r
    }

    fn spawn(
        dir: &std::path::Path,
        tls: bool,
        creds: Option<(&str, &str)>,
        token: Option<&str>,
    ) -> Self {
        let bin = "/usr/bin/docker-registry";
        assert!(
            std::path::Path::new(bin).exists(),
            "docker-registry is installed (.ci/run installs it)"
        );
        std::fs::create_dir_all(dir).unwrap();
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let host = format!("127.0.0.1:{port}");
        let storage = dir.join("storage");
        let mut tls_conf = String::new();
        let mut ca = None;
        if tls {
            let ca_key = rcgen::KeyPair::generate().unwrap();
            let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
            ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            let ca_cert = ca_params.self_signed(&ca_key).unwrap();
            let issuer = rcgen::Issuer::new(ca_params, ca_key);
            let key = rcgen::KeyPair::generate().unwrap();
            let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
            params.subject_alt_names =
                vec![rcgen::SanType::IpAddress("127.0.0.1".parse().unwrap())];
            let cert = params.signed_by(&key, &issuer).unwrap();
            std::fs::write(dir.join("ca.pem"), ca_cert.pem()).unwrap();
            std::fs::write(dir.join("cert.pem"), cert.pem()).unwrap();
            std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
            tls_conf = format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                dir.join("cert.pem").display(),
                dir.join("key.pem").display()
            );
            ca = Some(dir.join("ca.pem"));
        }
        let mut auth_conf = String::new();
        if let Some((user, pass)) = creds {
            let o = Command::new("htpasswd")
                .args(["-Bbn", user, pass])
                .output()
                .expect("htpasswd is installed (apache2-utils; .ci/run installs it)");
            assert!(o.status.success());
            std::fs::write(dir.join("htpasswd"), &o.stdout).unwrap();
            auth_conf = format!(
                "auth:\n  htpasswd:\n    realm: sandboxd-test\n    path: {}\n",
                dir.join("htpasswd").display()
            );
        }
        if let Some(t) = token {
            auth_conf = format!("auth:\n  token:\n{t}");
        }
        let config = format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {host}\n{tls_conf}{auth_conf}",
            storage.display()
        );
        std::fs::write(dir.join("config.yml"), config).unwrap();
        let child = Command::new(bin)
            .arg("serve")
            .arg(dir.join("config.yml"))
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.join("registry.log")).unwrap())
            .spawn()
            .unwrap();
        for _ in 0..100 {
            if std::net::TcpStream::connect(&host).is_ok() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Self {
            child,
            host,
            storage,
            ca,
            creds: creds.map(|(u, p)| (u.to_owned(), p.to_owned())),
        }
    }

    /// Pushes the OCI layout `files` (tag `tag`) as `repo:tag` with skopeo.
    pub(crate) fn push(
        &self,
        work: &std::path::Path,
        files: &[(String, Vec<u8>)],
        repo: &str,
        tag: &str,
        all: bool,
    ) {
        let layout = work.join(format!("layout-{repo}-{tag}").replace('/', "_"));
        let _ = std::fs::remove_dir_all(&layout);
        for (name, bytes) in files {
            let p = layout.join(name);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, bytes).unwrap();
        }
        let mut cmd = Command::new("skopeo");
        cmd.args(["--insecure-policy", "copy", "--quiet"]);
        if all {
            cmd.arg("--all");
        }
        match &self.ca {
            None => {
                cmd.arg("--dest-tls-verify=false");
            }
            Some(ca) => {
                let certs = work.join("skopeo-certs");
                std::fs::create_dir_all(&certs).unwrap();
                std::fs::copy(ca, certs.join("ca.crt")).unwrap();
                cmd.arg("--dest-cert-dir").arg(&certs);
            }
        }
        if let Some((u, p)) = &self.creds {
            cmd.arg("--dest-creds").arg(format!("{u}:{p}"));
        }
        let o = cmd
            .arg(format!("oci:{}:{tag}", layout.display()))
            .arg(format!("docker://{}/{repo}:{tag}", self.host))
            .output()
            .expect("skopeo is installed (.ci/run installs it)");
        assert!(
            o.status.success(),
            "skopeo: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }

    /// The registry's stored copy of blob `digest` (for corrupting it).
    pub(crate) fn blob_file(&self, digest: &str) -> std::path::PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.storage
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// PullImage to the end: the progress events and the image.
pub(crate) async fn pull(
    d: &Daemon,
    reference: &str,
) -> Result<(Vec<pb::PullImageProgress>, pb::Image), tonic::Status> {
    let mut c = ImageServiceClient::new(d.channel().await);
    let mut s = c
        .pull_image(pb::PullImageRequest {
            reference: reference.into(),
        })
        .await?
        .into_inner();
    let mut events = Vec::new();
    while let Some(p) = s.message().await? {
        if let Some(pb::pull_image_progress::Event::Done(i)) = &p.event {
            return Ok((events, i.clone()));
        }
        events.push(p);
    }
    Err(tonic::Status::internal("stream ended without the image"))
}

fn registry_daemon(reg: &Registry) -> Daemon {
    registry_daemon_as(
        reg,
        reg.creds.as_ref().map(|(u, p)| (u.as_str(), p.as_str())),
    )
}

/// A daemon configured for `reg`, with `creds` (none: anonymous).
fn registry_daemon_as(reg: &Registry, creds: Option<(&str, &str)>) -> Daemon {
    // Beside the registry's own files: removed with the test's work dir.
    let dir = reg
        .storage
        .parent()
        .unwrap()
        .join(format!("daemon-{}", creds.map_or("anon", |c| c.1)));
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("sandboxd.toml");
    let mut entry = match &reg.ca {
        None => "insecure = true".to_owned(),
        Some(ca) => format!("ca_file = {:?}", ca.display().to_string()),
    };
    if let Some((u, p)) = creds {
        entry.push_str(&format!("\nusername = {u:?}\npassword = {p:?}"));
    }
    std::fs::write(&conf, format!("[registries.\"{}\"]\n{entry}\n", reg.host)).unwrap();
    Daemon::start_with(&["--config", &conf.to_string_lossy()])
}

fn cached_layers(events: &[pb::PullImageProgress]) -> usize {
    events
        .iter()
        .filter(|e| matches!(&e.event, Some(pb::pull_image_progress::Event::Layer(l)) if l.cached))
        .count()
}

fn du(path: &std::path::Path) -> u64 {
    let o = Command::new("du").args(["-sk"]).arg(path).output().unwrap();
    String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .parse::<u64>()
        .unwrap()
        * 1024
}

#[tokio::test]
async fn pull_by_tag_and_digest_shares_layers_runs_and_refuses_a_corrupt_blob() {
    use tar::EntryType::Regular;
    let work = std::env::temp_dir().join(format!("sandboxd-e2e-registry-{}", std::process::id()));
    let reg = Registry::start(&work.join("reg"), false);
    let d = registry_daemon(&reg);
    let base = busybox_layer();
    let top_a = tar_of(&[("a", Regular, 0o644, b"A\n")]);
    let top_b = tar_of(&[("b", Regular, 0o644, b"B\n")]);
    let run = r#"{"Cmd":["/bin/sh","-c","cat /a; exec sleep 60"],"User":"0"}"#;
    reg.push(
        &work,
        &oci_files("1", &[base.clone(), top_a], run, None),
        "app/a",
        "1",
        false,
    );
    reg.push(
        &work,
        &oci_files("1", &[base.clone(), top_b], "{}", None),
        "app/b",
        "1",
        false,
    );

    // By tag; the time to pull and start it is printed for the record.
    let started = std::time::Instant::now();
    let (events, a) = pull(&d, &format!("{}/app/a:1", reg.host)).await.unwrap();
    assert_eq!(cached_layers(&events), 0);
    // The linux backend, and chroot on Linux, run OCI images.
    let runs = crate::harness::linux_backend()
        || (crate::harness::chroot_backend() && cfg!(target_os = "linux"));
    if runs {
        let mut c = d.clients().await;
        let sb = c
            .create(pb::SandboxSpec {
                image: format!("{}/app/a:1", reg.host),
                mode: pb::SandboxMode::Process as i32,
                ..Default::default()
            })
            .await;
        let r = c.sh(&sb.id, "cat /a").await;
        eprintln!(
            "pull + create + first exec of a {}-byte image: {:?}",
            a.size,
            started.elapsed()
        );
        assert_eq!(crate::harness::out(&r), "A\n");
        c.destroy(&sb.id).await;
    } else {
        eprintln!(
            "NOTE: the pulled image is not run (this backend runs no OCI images on this OS); the pulls, digests and shared layers are checked"
        );
    }

    // By digest: the same manifest, nothing fetched again.
    let (events, again) = pull(&d, &format!("{}/app/a@{}", reg.host, a.digest))
        .await
        .unwrap();
    assert_eq!(again.digest, a.digest);
    assert_eq!(cached_layers(&events), 2, "{events:?}");

    // A second image on the same base: the base is fetched and stored once.
    let before = du(&d.images.join(".oci"));
    let (events, b) = pull(&d, &format!("{}/app/b:1", reg.host)).await.unwrap();
    assert_eq!(
        cached_layers(&events),
        1,
        "the shared base is not fetched again"
    );
    assert_eq!(a.layers[0], b.layers[0]);
    let layers = std::fs::read_dir(d.images.join(".oci/layers/sha256"))
        .unwrap()
        .count();
    assert_eq!(layers, 3, "base + two tops, the base unpacked once");
    let after = du(&d.images.join(".oci"));
    eprintln!(
        "store: {before} bytes with app/a, {after} with app/b too (busybox base stored once)"
    );
    assert!(
        after - before < (busybox().len() as u64) / 2,
        "the second image did not store the base again"
    );

    // Two concurrent pulls of one image (fresh daemon, empty store).
    let d2 = registry_daemon(&reg);
    let r1 = format!("{}/app/a:1", reg.host);
    let (x, y) = tokio::join!(pull(&d2, &r1), pull(&d2, &r1));
    assert_eq!(x.unwrap().1.digest, y.unwrap().1.digest);
    if runs {
        let mut c2 = d2.clients().await;
        let sb = c2
            .create(pb::SandboxSpec {
                image: r1.clone(),
                mode: pb::SandboxMode::Idle as i32,
                ..Default::default()
            })
            .await;
        assert_eq!(crate::harness::out(&c2.sh(&sb.id, "cat /a").await), "A\n");
        c2.destroy(&sb.id).await;
    }
    d2.finish().await;

    // A corrupt blob in the registry: refused, nothing kept.
    let d3 = registry_daemon(&reg);
    let top_layer = &b.layers[1];
    let file = reg.blob_file(top_layer);
    let mut bytes = std::fs::read(&file).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&file, &bytes).unwrap();
    let st = pull(&d3, &format!("{}/app/b:1", reg.host))
        .await
        .unwrap_err();
    assert_eq!(st.code(), tonic::Code::InvalidArgument, "{}", st.message());
    assert!(st.message().contains("digest mismatch"), "{}", st.message());
    assert_eq!(
        store_entries(&d3),
        Vec::<String>::new(),
        "nothing of the refused pull is kept"
    );
    d3.finish().await;

    // Unknown tag: NOT_FOUND; unconfigured registry: FAILED_PRECONDITION.
    let st = pull(&d, &format!("{}/app/a:nope", reg.host))
        .await
        .unwrap_err();
    assert_eq!(st.code(), tonic::Code::NotFound, "{}", st.message());
    let st = pull(&d, "127.0.0.2:1/app/a:1").await.unwrap_err();
    assert_eq!(
        st.code(),
        tonic::Code::FailedPrecondition,
        "{}",
        st.message()
    );
    d.finish().await;
    drop(reg);
    let _ = std::fs::remove_dir_all(&work);
}

#[tokio::test]
async fn pull_over_tls_with_a_test_ca_and_a_multi_arch_index() {
    let work =
        std::env::temp_dir().join(format!("sandboxd-e2e-registry-tls-{}", std::process::id()));
    let reg = Registry::start(&work.join("reg"), true);
    let d = registry_daemon(&reg);
    let foreign = if sandboxd_core::oci::Platform::host().architecture == "arm64" {
        "amd64"
    } else {
        "arm64"
    };
    reg.push(
        &work,
        &oci_files("1", &[busybox_layer()], "{}", Some(foreign)),
        "multi",
        "1",
        true,
    );
    let (_, image) = pull(&d, &format!("{}/multi:1", reg.host)).await.unwrap();
    assert_eq!(
        image.platform,
        sandboxd_core::oci::Platform::host().to_string(),
        "the index resolved to this host's platform"
    );
    // A daemon without the CA refuses to talk to it.
    let plain = Daemon::start();
    let st = pull(&plain, &format!("{}/multi:1", reg.host))
        .await
        .unwrap_err();
    assert_eq!(
        st.code(),
        tonic::Code::FailedPrecondition,
        "{}",
        st.message()
    );
    plain.finish().await;
    d.finish().await;
    drop(reg);
    let _ = std::fs::remove_dir_all(&work);
}

/// A TCP proxy to `upstream` that, while `cut` is set, closes each
/// connection after forwarding `limit` bytes of the upstream's answer (an
/// interrupted download).
async fn cutting_proxy(
    upstream: String,
    limit: usize,
    cut: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = l.accept().await {
            let upstream = upstream.clone();
            let cut = cut.clone();
            tokio::spawn(async move {
                let Ok(mut server) = tokio::net::TcpStream::connect(&upstream).await else {
                    return;
                };
                let (mut cr, mut cw) = client.split();
                let (mut sr, mut sw) = server.split();
                let up = tokio::io::copy(&mut cr, &mut sw);
                let down = async {
                    let mut sent = 0usize;
                    let mut buf = vec![0u8; 16 << 10];
                    loop {
                        let n = sr.read(&mut buf).await.unwrap_or(0);
                        if n == 0 {
                            break;
                        }
                        let n = if cut.load(std::sync::atomic::Ordering::SeqCst) {
                            n.min(limit.saturating_sub(sent))
                        } else {
                            n
                        };
                        if n == 0 || cw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                        sent += n;
                    }
                };
                tokio::select! {
                    _ = up => {}
                    () = down => {}
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn an_interrupted_pull_resumes_with_the_blobs_it_verified() {
    use tar::EntryType::Regular;
    let work = std::env::temp_dir().join(format!(
        "sandboxd-e2e-registry-resume-{}",
        std::process::id()
    ));
    let reg = Registry::start(&work.join("reg"), false);
    // A small first layer, then the ~1 MB busybox layer the cut interrupts.
    let small = tar_of(&[("small", Regular, 0o644, b"s\n")]);
    reg.push(
        &work,
        &oci_files("1", &[small, busybox_layer()], "{}", None),
        "resume",
        "1",
        false,
    );
    let cut = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let proxy = cutting_proxy(reg.host.clone(), 200 << 10, cut.clone()).await;
    let conf = work.join("sandboxd.toml");
    std::fs::write(
        &conf,
        format!("[registries.\"{proxy}\"]\ninsecure = true\n"),
    )
    .unwrap();
    let d = Daemon::start_with(&["--config", &conf.to_string_lossy()]);
    let reference = format!("{proxy}/resume:1");
    let st = pull(&d, &reference).await.unwrap_err();
    assert_eq!(st.code(), tonic::Code::Unavailable, "{}", st.message());
    // The verified small layer stays for the next attempt; nothing partial.
    let blobs: Vec<String> = store_entries(&d)
        .into_iter()
        .filter(|e| e.starts_with("blobs/"))
        .collect();
    assert_eq!(blobs.len(), 2, "config and the small layer: {blobs:?}");
    assert!(store_entries(&d).iter().all(|e| !e.starts_with("tmp/")));
    cut.store(false, std::sync::atomic::Ordering::SeqCst);
    let (events, image) = pull(&d, &reference).await.unwrap();
    assert_eq!(
        cached_layers(&events),
        1,
        "the small layer is not fetched again: {events:?}"
    );
    assert_eq!(image.layers.len(), 2);
    d.finish().await;
    drop(reg);
    let _ = std::fs::remove_dir_all(&work);
}

#[tokio::test]
async fn pull_from_a_registry_that_demands_basic_authentication() {
    let work =
        std::env::temp_dir().join(format!("sandboxd-e2e-registry-auth-{}", std::process::id()));
    let reg = Registry::start_with(&work.join("reg"), true, Some(("tester", "s3cret")));
    reg.push(
        &work,
        &oci_files("1", &[busybox_layer()], "{}", None),
        "private",
        "1",
        false,
    );
    let reference = format!("{}/private:1", reg.host);
    let d = registry_daemon(&reg);
    let (_, image) = pull(&d, &reference).await.unwrap();
    assert_eq!(image.refs, vec![reference.clone()]);
    d.finish().await;
    // No credentials: FAILED_PRECONDITION naming the fix; wrong ones:
    // PERMISSION_DENIED naming the registry.
    for (creds, code, want) in [
        (
            None,
            tonic::Code::FailedPrecondition,
            "set username and password",
        ),
        (
            Some(("tester", "wrong")),
            tonic::Code::PermissionDenied,
            "credentials were refused",
        ),
    ] {
        let d = registry_daemon_as(&reg, creds);
        let st = pull(&d, &reference).await.unwrap_err();
        assert_eq!(st.code(), code, "{}", st.message());
        assert!(st.message().contains(want), "{}", st.message());
        assert!(st.message().contains(&reg.host), "{}", st.message());
        assert_eq!(store_entries(&d), Vec::<String>::new());
        d.finish().await;
    }
    drop(reg);
    let _ = std::fs::remove_dir_all(&work);
}

#[tokio::test]
#[cfg_attr(
    not(target_os = "linux"),
    ignore = "OCI images run on the linux and (on Linux) chroot backends here; this suite does not run the FreeBSD flattened copy yet (docs/images.md)"
)]
async fn a_read_only_oci_root_is_read_only_with_one_layer_or_several() {
    use tar::EntryType::Regular;
    let d = Daemon::start();
    let top = tar_of(&[("top", Regular, 0o644, b"T\n")]);
    import(&d, oci_layout("local/one:1", &[busybox_layer()], "{}"))
        .await
        .unwrap();
    import(&d, oci_layout("local/two:1", &[busybox_layer(), top], "{}"))
        .await
        .unwrap();
    let mut c = d.clients().await;
    for (image, probe) in [("local/one:1", "/bin/busybox"), ("local/two:1", "/top")] {
        let sb = c
            .create(pb::SandboxSpec {
                image: image.into(),
                mode: pb::SandboxMode::Idle as i32,
                readonly_rootfs: true,
                process: Some(pb::ProcessSpec {
                    user: Some(pb::User {
                        uid: Some(0),
                        gid: Some(0),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await;
        let r = c
            .exec_sync(
                &sb.id,
                pb::ProcessSpec {
                    argv: vec![
                        "/bin/sh".into(),
                        "-c".into(),
                        format!(
                            "test -e {probe} && echo seen; echo x > /newfile 2>&1 || echo refused"
                        ),
                    ],
                    user: Some(pb::User {
                        uid: Some(0),
                        gid: Some(0),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                0,
            )
            .await;
        let o = crate::harness::out(&r);
        assert!(o.contains("seen") && o.contains("refused"), "{image}: {o}");
        c.destroy(&sb.id).await;
    }
    d.finish().await;
}

#[tokio::test]
#[cfg_attr(
    not(all(feature = "force-chroot", target_os = "linux")),
    ignore = "chroot builds on Linux only (force-chroot); the linux backend's run is an_imported_image_runs_on_its_layer_chain_with_config_defaults, and without mounts chroot refuses OCI images (plan.rs unit test)"
)]
async fn the_chroot_backend_runs_an_oci_image_on_its_layer_chain() {
    use tar::EntryType::{Directory, Regular};
    let d = Daemon::start();
    let top = tar_of(&[
        ("etc/.wh.passwd", Regular, 0o644, b""),
        ("hello", Regular, 0o644, b"from the top layer\n"),
        ("work", Directory, 0o777, b""),
        // The chroot backend mounts /dev (tmpfs, device nodes) only where
        // the root has one: here a mount point made in the upper.
        ("dev", Directory, 0o755, b""),
    ]);
    let run = r#"{"Cmd":["/bin/sh","-c","echo \"$A $B\" > /work/out; pwd >> /work/out; id -u >> /work/out; exec sleep 60"],"Env":["PATH=/bin","A=image","B=image"],"WorkingDir":"/work","User":"0"}"#;
    import(&d, oci_layout("local/chr:1", &[busybox_layer(), top], run))
        .await
        .unwrap();
    let mut c = d.clients().await;
    let sb = c
        .create(pb::SandboxSpec {
            image: "local/chr:1".into(),
            mode: pb::SandboxMode::Process as i32,
            process: Some(pb::ProcessSpec {
                env: vec!["B=spec".into()],
                ..Default::default()
            }),
            ..Default::default()
        })
        .await;
    let mut out = String::new();
    for _ in 0..50 {
        let r = c.sh(&sb.id, "cat /work/out 2>/dev/null").await;
        out = crate::harness::out(&r);
        if out.lines().count() >= 3 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(
        out, "image spec\n/work\n0\n",
        "Cmd, Env (spec wins), WorkingDir and User from the image config"
    );
    let r = c
        .sh(
            &sb.id,
            "cat /hello; test -e /bin/busybox && echo base; ls /etc/passwd 2>&1; echo x > /work/new && cat /work/new",
        )
        .await;
    let o = crate::harness::out(&r);
    assert!(
        o.starts_with("from the top layer\nbase\n"),
        "both layers are seen: {o}"
    );
    assert!(
        o.contains("No such file"),
        "the top layer's whiteout hides the base's /etc/passwd: {o}"
    );
    assert!(o.ends_with("x\n"), "the root is writable: {o}");
    // Writes land in the sandbox's upper (on its writable-layer tmpfs)...
    let upper = d
        .state
        .join("sandboxes")
        .join(&sb.id)
        .join("layer/upper/work");
    assert_eq!(std::fs::read_to_string(upper.join("new")).unwrap(), "x\n");
    // ...and never in the store's shared layers.
    let layers = d.images.join(".oci/layers/sha256");
    for e in std::fs::read_dir(&layers).unwrap() {
        let p = e.unwrap().path();
        assert!(
            !p.join("work/new").exists() && !p.join("work/out").exists(),
            "layer {} was written",
            p.display()
        );
    }
    c.destroy(&sb.id).await;
    assert!(
        crate::harness::gone(&d.state.join("sandboxes").join(&sb.id)).await,
        "the sandbox's upper is gone after destroy"
    );
    // finish(): no mount, process or file of the sandbox is left.
    d.finish().await;
}

#[tokio::test]
#[cfg_attr(
    not(target_os = "linux"),
    ignore = "OCI images run on the linux and (on Linux) chroot backends here; this suite does not run the FreeBSD flattened copy yet (docs/images.md)"
)]
/// An image's WorkingDir that its layers do not hold is made, root's and
/// 0755, for an exec that defaults to it, as Docker makes an image's WORKDIR:
/// in an IDLE sandbox no main process made it, and `sandboxctl run` is an
/// IDLE sandbox and one exec. A cwd the exec names is not made (`docker
/// exec -w`).
async fn an_image_working_dir_missing_from_its_layers_is_made_for_execs() {
    let d = Daemon::start();
    let run = r#"{"Env":["PATH=/bin"],"WorkingDir":"/work/sub"}"#;
    import(&d, oci_layout("local/nowork:1", &[busybox_layer()], run))
        .await
        .unwrap();
    let mut c = d.clients().await;
    let sb = c.idle("local/nowork:1").await;
    let r = c
        .exec_sync(
            &sb.id,
            crate::harness::argv(&["/bin/sh", "-c", "pwd; ls -ldn /work /work/sub"]),
            0,
        )
        .await;
    let o = crate::harness::out(&r);
    let mut lines = o.lines();
    assert_eq!(lines.next(), Some("/work/sub"), "{r:?}");
    let modes: Vec<String> = lines
        .map(|l| l.split_whitespace().take(4).collect::<Vec<_>>().join(" "))
        .collect();
    assert!(
        modes.len() == 2
            && modes
                .iter()
                .all(|m| m.starts_with("drwxr-xr-x") && m.ends_with(" 0 0")),
        "{modes:?}"
    );
    let mut named = crate::harness::argv(&["/bin/true"]);
    named.cwd = "/not/there".into();
    let status = c
        .processes
        .exec_sync(pb::ExecSyncRequest {
            sandbox_id: sb.id.clone(),
            process: Some(named),
            ..Default::default()
        })
        .await
        .expect_err("a cwd the exec names is not made");
    assert!(
        status.message().contains("chdir to working directory"),
        "{status:?}"
    );
    let r = c
        .exec_sync(&sb.id, crate::harness::argv(&["/bin/ls", "/not"]), 0)
        .await;
    assert_ne!(crate::harness::code(&r), 0, "made for a named cwd: {r:?}");
    c.destroy(&sb.id).await;

    let o = sandboxctl(&d)
        .args(["run", "--image", "local/nowork:1", "--", "/bin/pwd"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "/work/sub\n");
    d.finish().await;
}

#[tokio::test]
#[cfg_attr(
    not(target_os = "linux"),
    ignore = "OCI images run on the linux and (on Linux) chroot backends here; this suite does not run the FreeBSD flattened copy yet (docs/images.md)"
)]
async fn execs_and_run_use_the_image_entrypoint_cmd_env_and_working_dir() {
    use tar::EntryType::Directory;
    let d = Daemon::start();
    let work = tar_of(&[("work", Directory, 0o755, b"")]);
    let run = r#"{"Entrypoint":["/bin/echo","ep"],"Cmd":["from-cmd"],"Env":["PATH=/bin","A=image","B=image"],"WorkingDir":"/work"}"#;
    import(
        &d,
        oci_layout("local/defaults:1", &[busybox_layer(), work], run),
    )
    .await
    .unwrap();
    let mut c = d.clients().await;
    let sb = c.idle("local/defaults:1").await;
    // ExecSync: the image's Env under the request's (B), its WorkingDir
    // when the request gives no cwd.
    let r = c
        .exec_sync(
            &sb.id,
            pb::ProcessSpec {
                argv: vec!["/bin/sh".into(), "-c".into(), "echo \"$A $B\"; pwd".into()],
                env: vec!["B=exec".into()],
                ..Default::default()
            },
            0,
        )
        .await;
    assert_eq!(crate::harness::out(&r), "image exec\n/work\n", "{r:?}");
    let r = c
        .exec_sync(
            &sb.id,
            pb::ProcessSpec {
                argv: vec!["/bin/pwd".into()],
                cwd: "/tmp".into(),
                ..Default::default()
            },
            0,
        )
        .await;
    assert_eq!(crate::harness::out(&r), "/tmp\n", "the request's cwd wins");
    c.destroy(&sb.id).await;

    // sandboxctl run (Exec, streamed): Entrypoint + Cmd without a command;
    // a command replaces Cmd; --entrypoint replaces Entrypoint and drops
    // the image's Cmd (as docker run does).
    let cases: &[(&[&str], &str)] = &[
        (&[], "ep from-cmd\n"),
        (&["--", "x", "y"], "ep x y\n"),
        (
            &["--entrypoint", "/bin/sh", "--", "-c", "echo \"$A\"; pwd"],
            "image\n/work\n",
        ),
        (&["--entrypoint", "/bin/echo"], "\n"),
    ];
    for (args, want) in cases {
        let o = sandboxctl(&d)
            .args(["run", "--image", "local/defaults:1"])
            .args(*args)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&o.stdout), *want, "{args:?}");
    }
    // An image with neither, and no command: refused before anything is
    // created, naming the fix.
    import(&d, oci_layout("local/nocmd:1", &[busybox_layer()], "{}"))
        .await
        .unwrap();
    let o = sandboxctl(&d)
        .args(["run", "--image", "local/nocmd:1"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("no command"), "{err}");
    let listed = c
        .sandboxes
        .list_sandboxes(pb::ListSandboxesRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(listed.sandboxes.is_empty(), "nothing was created");
    d.finish().await;
}
