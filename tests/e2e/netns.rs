//! Network mode NAMESPACE: a sandbox in an existing network namespace
//! (`spec.network.namespace_path`), accepted only below a directory the
//! daemon allows (`--allow-netns-source`), resolved without symlinks, an
//! nsfs file of type net that is not the host's. The attacks first, each
//! refused with a clear status and nothing left behind; then the sandbox
//! that runs in a namespace the test made, whose namespace and links
//! survive the sandbox.

use std::path::{Path, PathBuf};
use std::process::Command;

use sandboxd_proto::v1 as pb;
use tonic::Code;

use crate::harness::{Clients, Daemon, SourceDir, out};

const IMAGE: &str = "netns-busybox";

fn run(cmd: &str, args: &[&str]) {
    let st = Command::new(cmd).args(args).status().expect(cmd);
    assert!(st.success(), "{cmd} {args:?}: {st}");
}

/// A directory the daemon allows as a netns source, with namespace files
/// bound onto files in it (unmounted on drop, before the dir goes).
struct NsDir {
    dir: SourceDir,
    bound: Vec<PathBuf>,
}

impl NsDir {
    fn new(name: &str) -> Self {
        Self {
            dir: SourceDir::new(name),
            bound: Vec::new(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn flag(&self) -> [&str; 2] {
        [
            "--allow-netns-source",
            self.dir.to_str().expect("our own UTF-8 path"),
        ]
    }

    /// A new namespace of `kind` ("net", "mount", "uts") persisted at
    /// `name`, as `ip netns add` and the CRI plugin do (a bind mount).
    fn new_namespace(&mut self, kind: &str, name: &str) -> PathBuf {
        let file = self.path(name);
        std::fs::write(&file, "").expect("mount point");
        run(
            "unshare",
            &[&format!("--{kind}={}", file.display()), "true"],
        );
        self.bound.push(file.clone());
        file
    }

    /// An existing namespace file (e.g. the host's) bound at `name`.
    fn bind(&mut self, source: &str, name: &str) -> PathBuf {
        let file = self.path(name);
        std::fs::write(&file, "").expect("mount point");
        run("mount", &["--bind", source, file.to_str().expect("utf-8")]);
        self.bound.push(file.clone());
        file
    }
}

impl Drop for NsDir {
    fn drop(&mut self) {
        for f in self.bound.iter().rev() {
            let _ = Command::new("umount").arg(f).status();
        }
    }
}

fn spec(path: &Path) -> pb::SandboxSpec {
    pb::SandboxSpec {
        image: IMAGE.into(),
        mode: pb::SandboxMode::Idle as i32,
        network: Some(pb::NetworkPolicy {
            mode: pb::NetworkMode::Namespace as i32,
            namespace_path: path.to_str().expect("utf-8").into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

async fn sandboxes(c: &mut Clients) -> usize {
    c.sandboxes
        .list_sandboxes(pb::ListSandboxesRequest::default())
        .await
        .expect("list")
        .into_inner()
        .sandboxes
        .len()
}

/// The (dev, ino) of a namespace file, as `stat -L` sees it.
fn ns_id(path: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).expect("stat namespace");
    (m.dev(), m.ino())
}

#[cfg_attr(
    any(feature = "force-chroot", not(target_os = "linux")),
    ignore = "network namespaces are Linux's: chroot and FreeBSD refuse mode NAMESPACE (a_namespace_is_refused_where_there_are_none)"
)]
#[tokio::test]
async fn attacks_on_the_namespace_path_are_refused_and_leave_nothing() {
    let mut ns = NsDir::new("netns-attacks");
    let good = ns.new_namespace("net", "good");
    let mnt = ns.new_namespace("mount", "mntns");
    let host = ns.bind("/proc/self/ns/net", "hostns");
    std::os::unix::fs::symlink("/proc/1/ns/net", ns.path("link")).expect("symlink");
    std::fs::create_dir(ns.path("sub")).expect("subdir");
    std::os::unix::fs::symlink("/proc/1/ns", ns.path("sub/dirlink")).expect("symlink");
    std::fs::write(ns.path("plain"), "not a namespace").expect("regular file");
    let outside = std::env::temp_dir().join("sandboxd-e2e-netns-not-allowed");
    let d = Daemon::start_with(&ns.flag());
    d.make_busybox_image(IMAGE);
    let mut c = d.clients().await;
    let dir = ns.dir.display().to_string();
    let cases: Vec<(&str, String, Code, &str)> = vec![
        (
            "a symlink to pid 1's network namespace",
            format!("{dir}/link"),
            Code::InvalidArgument,
            "symlink",
        ),
        (
            "a symlinked directory on the way",
            format!("{dir}/sub/dirlink/net"),
            Code::InvalidArgument,
            "symlink",
        ),
        (
            "escaping with ..",
            format!("{dir}/../../proc/1/ns/net"),
            Code::InvalidArgument,
            "'..'",
        ),
        (
            "a regular file",
            format!("{dir}/plain"),
            Code::InvalidArgument,
            "not a namespace file",
        ),
        (
            "a mount namespace",
            mnt.display().to_string(),
            Code::InvalidArgument,
            "a mount namespace, not a network namespace",
        ),
        (
            "the host's own network namespace",
            host.display().to_string(),
            Code::PermissionDenied,
            "the host's network namespace",
        ),
        (
            "a missing file",
            format!("{dir}/missing"),
            Code::InvalidArgument,
            "does not exist",
        ),
        (
            "outside the allowed directory",
            outside.display().to_string(),
            Code::PermissionDenied,
            "--allow-netns-source",
        ),
        (
            "the allowed directory itself",
            dir.clone(),
            Code::PermissionDenied,
            "--allow-netns-source",
        ),
    ];
    let before = crate::harness::mounts_under(&ns.dir);
    for (what, path, want, text) in &cases {
        let err = c.try_create(spec(Path::new(path))).await.expect_err(what);
        assert_eq!(err.code(), *want, "{what}: {err:?}");
        assert!(
            err.message().contains("spec.network.namespace_path") && err.message().contains(text),
            "{what}: {err:?}"
        );
        assert_eq!(sandboxes(&mut c).await, 0, "{what}: a sandbox was left");
    }
    // PREFERRED could mean another network: refused too.
    let mut preferred = spec(&good);
    preferred.network.as_mut().expect("net").requirement = pb::Requirement::Preferred as i32;
    let err = c.try_create(preferred).await.expect_err("PREFERRED");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(
        err.message().contains("spec.network.requirement"),
        "{err:?}"
    );
    assert_eq!(
        crate::harness::mounts_under(&ns.dir),
        before,
        "mounts changed"
    );
    assert_eq!(sandboxes(&mut c).await, 0);
    // The files are as they were: nothing was removed or replaced.
    assert_eq!(
        std::fs::read_link(ns.path("link")).expect("link"),
        PathBuf::from("/proc/1/ns/net")
    );
    assert!(good.exists() && mnt.exists() && host.exists());
    drop(c);
    d.finish().await;
}

#[cfg_attr(
    any(feature = "force-chroot", not(target_os = "linux")),
    ignore = "network namespaces are Linux's (a_namespace_is_refused_where_there_are_none covers the others)"
)]
#[tokio::test]
async fn without_the_flag_a_namespace_is_refused_naming_it() {
    let mut ns = NsDir::new("netns-noflag");
    let good = ns.new_namespace("net", "good");
    let d = Daemon::start();
    d.make_busybox_image(IMAGE);
    let mut c = d.clients().await;
    let err = c.try_create(spec(&good)).await.expect_err("no flag");
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    assert!(
        err.message().contains("none are configured")
            && err.message().contains("--allow-netns-source"),
        "{err:?}"
    );
    assert_eq!(sandboxes(&mut c).await, 0);
    drop(c);
    d.finish().await;
}

#[cfg_attr(
    any(feature = "force-chroot", not(target_os = "linux")),
    ignore = "network namespaces are Linux's"
)]
#[tokio::test]
async fn a_sandbox_runs_in_the_given_namespace_which_outlives_it() {
    let mut ns = NsDir::new("netns-run");
    let file = ns.new_namespace("net", "pod");
    let file_s = file.to_str().expect("utf-8").to_owned();
    // What its maker (CNI) would set up: an address sandboxd knows nothing
    // about (203.0.113.0/24 is a documentation range; the link is a bridge,
    // local to the namespace).
    run(
        "nsenter",
        &[
            &format!("--net={file_s}"),
            "ip",
            "link",
            "add",
            "sbxns0",
            "type",
            "bridge",
        ],
    );
    run(
        "nsenter",
        &[
            &format!("--net={file_s}"),
            "ip",
            "addr",
            "add",
            "203.0.113.250/32",
            "dev",
            "sbxns0",
        ],
    );
    run(
        "nsenter",
        &[
            &format!("--net={file_s}"),
            "ip",
            "link",
            "set",
            "sbxns0",
            "up",
        ],
    );
    run(
        "nsenter",
        &[&format!("--net={file_s}"), "ip", "link", "set", "lo", "up"],
    );
    let d = Daemon::start_with(&ns.flag());
    d.make_busybox_image(IMAGE);
    let mut c = d.clients().await;
    let sb = c.create(spec(&file)).await;
    let (dev, ino) = ns_id(&file);
    // Inside: the namespace's own identity and the maker's address.
    let r = c
        .sh(
            &sb.id,
            "readlink /proc/self/ns/net; cat /proc/net/fib_trie; cat /proc/net/dev",
        )
        .await;
    let inside = out(&r);
    assert!(inside.contains(&format!("net:[{ino}]")), "{inside}");
    assert!(inside.contains("203.0.113.250"), "{inside}");
    assert!(inside.contains("sbxns0"), "{inside}");
    // The row says what it is, and the probe observes it.
    let row = sb
        .isolation
        .as_ref()
        .expect("report")
        .properties
        .iter()
        .find(|p| p.property == pb::IsolationProperty::Network as i32)
        .expect("network row")
        .clone();
    assert_eq!(row.level, pb::EnforcementLevel::Enforced as i32, "{row:?}");
    assert!(row.mechanism.contains("setns(CLONE_NEWNET)"), "{row:?}");
    let v = c
        .sandboxes
        .verify_sandbox(pb::VerifySandboxRequest { id: sb.id.clone() })
        .await
        .expect("verify")
        .into_inner()
        .verification
        .expect("verification");
    let net = v
        .properties
        .iter()
        .find(|p| p.property == pb::IsolationProperty::Network as i32)
        .expect("network row");
    assert_eq!(net.observed, pb::ObservedResult::Holds as i32, "{net:?}");
    assert!(v.consistent, "{v:?}");
    assert!(
        net.evidence
            .iter()
            .any(|e| e.contains(&format!("ino {ino}")) && e.contains(&dev.to_string())),
        "{net:?}"
    );
    // A child sharing its network is in the same namespace.
    let child = c
        .create(pb::SandboxSpec {
            image: IMAGE.into(),
            mode: pb::SandboxMode::Idle as i32,
            join: Some(pb::SandboxJoin {
                sandbox_id: sb.id.clone(),
                network: true,
                ipc: false,
                uts: false,
                pid: false,
            }),
            ..Default::default()
        })
        .await;
    let r = c.sh(&child.id, "readlink /proc/self/ns/net").await;
    assert!(out(&r).contains(&format!("net:[{ino}]")), "{}", out(&r));
    // sandboxctl's spelling of the mode: --network ns:PATH.
    let bin = crate::harness::sandboxd_bin().with_file_name("sandboxctl");
    let ctl = Command::new(bin)
        .arg("--host")
        .arg(format!("unix://{}", d.socket.display()))
        .args(["run", "--image", IMAGE, "--network"])
        .arg(format!("ns:{file_s}"))
        .args(["--", "/bin/sh", "-c", "readlink /proc/self/ns/net"])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run sandboxctl");
    assert!(
        String::from_utf8_lossy(&ctl.stdout).contains(&format!("net:[{ino}]")),
        "{ctl:?}"
    );
    assert!(c.destroy(&child.id).await);
    assert!(c.destroy(&sb.id).await);
    // The namespace, its link and address are its maker's: still there.
    assert_eq!(ns_id(&file), (dev, ino));
    let left = Command::new("nsenter")
        .args([
            &format!("--net={file_s}"),
            "ip",
            "-o",
            "addr",
            "show",
            "dev",
            "sbxns0",
        ])
        .output()
        .expect("ip");
    assert!(
        String::from_utf8_lossy(&left.stdout).contains("203.0.113.250"),
        "{left:?}"
    );
    drop(c);
    d.finish().await;
}

#[cfg_attr(
    all(target_os = "linux", not(feature = "force-chroot")),
    ignore = "the Linux backend runs mode NAMESPACE (a_sandbox_runs_in_the_given_namespace_which_outlives_it)"
)]
#[tokio::test]
async fn a_namespace_is_refused_where_there_are_none() {
    let d = Daemon::start_with(&["--allow-netns-source", "/var/run/netns"]);
    d.make_busybox_image(IMAGE);
    let mut c = d.clients().await;
    let err = c
        .try_create(spec(Path::new("/var/run/netns/any")))
        .await
        .expect_err("refused");
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("NAMESPACE"), "{err:?}");
    assert_eq!(sandboxes(&mut c).await, 0);
    drop(c);
    d.finish().await;
}
