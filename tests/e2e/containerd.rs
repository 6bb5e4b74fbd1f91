//! containerd drives sandboxd through `containerd-shim-sandboxd-v1`
//! (docs/containerd.md): a private containerd (its own config, root, state
//! and sockets under the test's directory; never the system service) with
//! the shim on its PATH, a busybox OCI image written at test time and
//! imported with `ctr`, and `ctr run --runtime io.containerd.sandboxd.v1`.
//! Needs Debian's `containerd` (it ships `ctr`) and `busybox-static`;
//! `.ci/run` installs both, so a missing tool fails here. The shim binary
//! is built by `cargo build --bins`, next to `sandboxd`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use sandboxd_proto::v1 as pb;

use crate::harness::{Daemon, ScratchDir, mount_table};

/// The containerd namespace the tests use.
const NS: &str = "sandboxd-e2e";
/// The image name `ctr image import` gives the test image.
const IMAGE: &str = "docker.io/library/sandboxd-busybox:e2e";

pub(crate) fn tool(name: &str) -> PathBuf {
    for dir in ["/usr/bin", "/usr/local/bin", "/bin", "/usr/sbin"] {
        let p = Path::new(dir).join(name);
        if p.exists() {
            return p;
        }
    }
    panic!("{name} is not installed (Debian package containerd; .ci/run installs it)");
}

/// The shim, built next to the daemon by `cargo build --bins`.
fn shim_binary() -> PathBuf {
    let daemon = crate::harness::sandboxd_bin();
    let shim = daemon.with_file_name("containerd-shim-sandboxd-v1");
    assert!(
        shim.exists(),
        "{} is missing: run `cargo build --bins` before the e2e tests",
        shim.display()
    );
    shim
}

/// A private containerd, killed (by its pid) when dropped.
pub(crate) struct Containerd {
    child: Option<Child>,
    dir: PathBuf,
    pub(crate) socket: PathBuf,
    /// The containerd namespace `ctr` works in.
    namespace: &'static str,
    /// Where containerd keeps task bundles (the shim's rootfs parent).
    pub(crate) tasks: PathBuf,
}

impl Containerd {
    fn start(dir: &Path, daemon: &Daemon) -> Self {
        Self::start_config(dir, daemon, None)
    }

    /// With `cri`: containerd's CRI plugin enabled, configured by that TOML
    /// (appended to the config), and `ctr` in the CRI's namespace `k8s.io`.
    pub(crate) fn start_config(dir: &Path, daemon: &Daemon, cri: Option<&str>) -> Self {
        let dir = dir.to_owned();
        let root = dir.join("root");
        let state = dir.join("state");
        let socket = dir.join("containerd.sock");
        let bin = dir.join("bin");
        std::fs::create_dir_all(&bin).expect("bin dir");
        std::os::unix::fs::symlink(shim_binary(), bin.join("containerd-shim-sandboxd-v1"))
            .expect("link the shim");
        let config = dir.join("config.toml");
        std::fs::write(
            &config,
            format!(
                r#"version = 2
root = "{root}"
state = "{state}"
# Only what the test needs: no other snapshotters{no_cri}.
disabled_plugins = [{cri_plugin}"io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "{socket}"
[ttrpc]
  address = "{socket}.ttrpc"
[debug]
  address = "{debug}"
{cri_config}
"#,
                root = root.display(),
                state = state.display(),
                socket = socket.display(),
                debug = dir.join("debug.sock").display(),
                no_cri = if cri.is_some() { "" } else { ", no CRI" },
                cri_plugin = if cri.is_some() {
                    ""
                } else {
                    "\"io.containerd.grpc.v1.cri\", "
                },
                cri_config = cri.unwrap_or_default(),
            ),
        )
        .expect("containerd config");
        let shim_config = dir.join("shim.toml");
        std::fs::write(
            &shim_config,
            format!("endpoint = \"unix://{}\"\n", daemon.socket.display()),
        )
        .expect("shim config");
        let log = dir.join("containerd.log");
        let logf = std::fs::File::create(&log).expect("containerd log");
        let path = format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_else(|_| "/usr/sbin:/usr/bin:/sbin:/bin".into())
        );
        let child = Command::new(tool("containerd"))
            .arg("--config")
            .arg(&config)
            .env("PATH", path)
            .env("SANDBOXD_SHIM_CONFIG", &shim_config)
            .stdin(Stdio::null())
            .stdout(logf.try_clone().expect("log"))
            .stderr(logf)
            .spawn()
            .expect("start containerd");
        let c = Self {
            child: Some(child),
            tasks: state.join("io.containerd.runtime.v2.task"),
            dir,
            socket,
            namespace: if cri.is_some() { "k8s.io" } else { NS },
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if c.ctr(&["version"]).status.success() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "containerd did not come up; log:\n{}",
                c.log_text()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        c
    }

    pub(crate) fn log_text(&self) -> String {
        std::fs::read_to_string(self.dir.join("containerd.log")).unwrap_or_default()
    }

    /// `ctr` against this containerd, in the test namespace; `run` and
    /// `task exec` keep their FIFOs in the test's directory (a detached
    /// run's would otherwise stay in /run/containerd/fifo).
    pub(crate) fn ctr(&self, args: &[&str]) -> Output {
        let fifo = self.dir.join("fifo");
        let split = match args {
            ["run", ..] => 1,
            ["task", "exec", ..] => 2,
            _ => 0,
        };
        let mut cmd = Command::new(tool("ctr"));
        cmd.arg("--address")
            .arg(&self.socket)
            .arg("--namespace")
            .arg(self.namespace)
            .args(&args[..split]);
        if split > 0 {
            cmd.arg("--fifo-dir").arg(&fifo);
        }
        cmd.args(&args[split..])
            .stdin(Stdio::null())
            .output()
            .expect("run ctr")
    }

    /// `ctr`, which must succeed; its stdout.
    pub(crate) fn ctr_ok(&self, args: &[&str]) -> String {
        let o = self.ctr(args);
        assert!(
            o.status.success(),
            "ctr {args:?}: {:?}\nstdout: {}\nstderr: {}\ncontainerd log tail:\n{}",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr),
            tail(&self.log_text(), 40)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Pids of the shims this containerd started (its unique socket path
    /// is among their arguments).
    pub(crate) fn shims(&self) -> Vec<i32> {
        let address = self.socket.to_string_lossy().into_owned();
        let mut pids = Vec::new();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            if args
                .first()
                .is_some_and(|a| a.ends_with(b"containerd-shim-sandboxd-v1"))
                && args.contains(&address.as_bytes())
            {
                pids.push(pid);
            }
        }
        pids
    }

    pub(crate) fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid"));
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        self.stop();
        // After a failed test: the shims it started, and their mounts.
        for pid in self.shims() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        // Linux mountinfo (these tests run only on Linux).
        #[cfg(target_os = "linux")]
        for line in mount_table().lines() {
            if let Some(point) = line.split(' ').nth(4) {
                if point.starts_with(self.dir.to_string_lossy().as_ref()) {
                    let _ = nix::mount::umount2(point, nix::mount::MntFlags::MNT_DETACH);
                }
            }
        }
    }
}

pub(crate) fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn sha256_hex(path: &Path) -> String {
    let o = Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("sha256sum");
    assert!(o.status.success(), "sha256sum {}", path.display());
    String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .next()
        .expect("digest")
        .to_owned()
}

/// Writes a blob into an OCI layout; returns (digest, size).
fn blob(layout: &Path, from: &Path) -> (String, u64) {
    let hex = sha256_hex(from);
    let dest = layout.join("blobs/sha256").join(&hex);
    std::fs::copy(from, &dest).expect("blob");
    let size = std::fs::metadata(&dest).expect("blob size").len();
    (format!("sha256:{hex}"), size)
}

/// A busybox root filesystem at `rootfs`.
fn busybox_root(rootfs: &Path) {
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.exists())
        .expect("busybox-static is installed (.ci/run installs it)");
    for d in ["bin", "etc", "tmp", "dev", "proc", "sys", "run"] {
        std::fs::create_dir_all(rootfs.join(d)).expect("image dir");
    }
    std::fs::copy(busybox, rootfs.join("bin/busybox")).expect("copy busybox");
    for applet in ["sh", "echo", "cat", "sleep", "id", "hostname", "ls", "ps"] {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet)).expect("applet");
    }
    std::fs::write(rootfs.join("etc/passwd"), "root:x:0:0::/:/bin/sh\n").expect("passwd");
}

/// A busybox image as an OCI layout tarball, written from busybox-static
/// directly (one uncompressed layer), ready for `ctr image import`.
fn busybox_image(dir: &Path) -> PathBuf {
    oci_image(dir, IMAGE, &["/bin/sh"])
}

/// A busybox image named `name` whose command is `cmd`, as an OCI layout
/// tarball in a new directory below `dir`.
pub(crate) fn oci_image(dir: &Path, name: &str, cmd: &[&str]) -> PathBuf {
    let dir = dir.join(name.rsplit('/').next().unwrap_or(name).replace(':', "-"));
    let dir = dir.as_path();
    let rootfs = dir.join("image-rootfs");
    busybox_root(&rootfs);
    let layout = dir.join("layout");
    std::fs::create_dir_all(layout.join("blobs/sha256")).expect("layout");
    let layer_tar = dir.join("layer.tar");
    let st = Command::new("tar")
        .args(["--numeric-owner", "--owner=0", "--group=0", "-C"])
        .arg(&rootfs)
        .arg("-cf")
        .arg(&layer_tar)
        .arg(".")
        .status()
        .expect("tar");
    assert!(st.success(), "tar the layer");
    let (layer, layer_size) = blob(&layout, &layer_tar);
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    let config_file = dir.join("config.json");
    std::fs::write(
        &config_file,
        serde_json::json!({
            "architecture": arch,
            "os": "linux",
            "config": {"Env": ["PATH=/bin"], "Cmd": cmd},
            "rootfs": {"type": "layers", "diff_ids": [layer]}
        })
        .to_string(),
    )
    .expect("image config");
    let (config, config_size) = blob(&layout, &config_file);
    let manifest_file = dir.join("manifest.json");
    std::fs::write(
        &manifest_file,
        serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": config_size},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer, "size": layer_size}]
        })
        .to_string(),
    )
    .expect("manifest");
    let (manifest, manifest_size) = blob(&layout, &manifest_file);
    std::fs::write(
        layout.join("index.json"),
        serde_json::json!({
            "schemaVersion": 2,
            "manifests": [{
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": manifest,
                "size": manifest_size,
                "platform": {"architecture": arch, "os": "linux"},
                "annotations": {"io.containerd.image.name": name, "org.opencontainers.image.ref.name": "e2e"}
            }]
        })
        .to_string(),
    )
    .expect("index");
    std::fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .expect("oci-layout");
    let image = dir.join("image.tar");
    let st = Command::new("tar")
        .arg("-C")
        .arg(&layout)
        .arg("-cf")
        .arg(&image)
        .arg(".")
        .status()
        .expect("tar");
    assert!(st.success(), "tar the layout");
    image
}

pub(crate) async fn sandboxes(daemon: &Daemon) -> Vec<pb::Sandbox> {
    let mut c = daemon.clients().await;
    c.sandboxes
        .list_sandboxes(pb::ListSandboxesRequest::default())
        .await
        .expect("list")
        .into_inner()
        .sandboxes
}

/// Waits until `ctr task ls` shows `id` with `status`.
fn wait_task_status(ctd: &Containerd, id: &str, status: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ls = ctd.ctr_ok(&["task", "ls"]);
        if ls
            .lines()
            .any(|l| l.split_whitespace().next() == Some(id) && l.contains(status))
        {
            return;
        }
        assert!(Instant::now() < deadline, "task {id} never {status}: {ls}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The runtime type containerd maps to the shim.
pub(crate) const RUNTIME: &str = "io.containerd.sandboxd.v1";

/// The reason the containerd tests are ignored in other builds.
const NEEDS_LINUX: &str = "needs the Linux backend and containerd on Linux (the chroot mapping is unit-tested in crates/shim/src/bundle.rs)";

/// A daemon allowing containerd's task bundles as roots, a private
/// containerd, and the test image imported (Linux backend only: the tests
/// calling it are ignored elsewhere).
fn setup(test: &str) -> (ScratchDir, Daemon, Containerd) {
    assert!(crate::harness::linux_backend(), "{test}: {NEEDS_LINUX}");
    let dir = ScratchDir::new(format!(
        "/tmp/sandboxd-e2e-ctd-{test}-{}",
        std::process::id()
    ));
    let tasks = dir.join("ctd/state/io.containerd.runtime.v2.task");
    let daemon = Daemon::start_with(&["--allow-rootfs-source", tasks.to_str().expect("utf-8")]);
    let ctd = Containerd::start(&dir.join("ctd"), &daemon);
    assert_eq!(ctd.tasks, tasks);
    let image = busybox_image(&dir);
    ctd.ctr_ok(&["image", "import", image.to_str().expect("utf-8")]);
    let images = ctd.ctr_ok(&["image", "ls", "-q"]);
    assert!(images.contains(IMAGE), "imported: {images}");
    (dir, daemon, ctd)
}

/// No mount left below `dir`.
pub(crate) fn assert_no_mounts(dir: &Path) {
    let root = dir.to_str().expect("utf-8");
    let mounts: Vec<String> = mount_table()
        .lines()
        .filter(|l| l.contains(root))
        .map(str::to_owned)
        .collect();
    assert!(mounts.is_empty(), "mounts left: {mounts:#?}");
}

/// The host pid of a running task's process, from `ctr task ps`.
fn task_pid(ctd: &Containerd, id: &str) -> i32 {
    let ps = ctd.ctr_ok(&["task", "ps", id]);
    let pids: Vec<&str> = ps
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(pids.len(), 1, "the task's process: {ps}");
    pids[0].parse().expect("pid")
}

/// Waits until `f` holds (30 s).
pub(crate) async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[cfg_attr(
    any(feature = "force-chroot", not(target_os = "linux")),
    ignore = "needs the Linux backend and containerd on Linux (the chroot mapping is unit-tested in crates/shim/src/bundle.rs)"
)]
#[tokio::test]
async fn ctr_runs_tasks_as_sandboxes() {
    let (dir, daemon, mut ctd) = setup("run");
    let tasks = ctd.tasks.clone();
    let runtime = RUNTIME;

    // Output and exit code of a one-shot task.
    let out = ctd.ctr_ok(&[
        "run",
        "--runtime",
        runtime,
        "--rm",
        IMAGE,
        "c-echo",
        "echo",
        "hi",
    ]);
    assert_eq!(out, "hi\n");
    let o = ctd.ctr(&[
        "run",
        "--runtime",
        runtime,
        "--rm",
        IMAGE,
        "c-exit",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 3",
    ]);
    assert_eq!(
        o.status.code(),
        Some(3),
        "exit code; stderr: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&o.stdout), "out\n");
    assert!(String::from_utf8_lossy(&o.stderr).contains("err"));
    // --rm deleted both: their sandboxes are destroyed.
    assert!(
        sandboxes(&daemon).await.is_empty(),
        "sandboxes left after --rm"
    );

    // A long-running task: exec, ps, kill.
    ctd.ctr_ok(&[
        "run",
        "--runtime",
        runtime,
        "-d",
        IMAGE,
        "c-long",
        "sleep",
        "1000",
    ]);
    wait_task_status(&ctd, "c-long", "RUNNING");
    let sbs = sandboxes(&daemon).await;
    assert_eq!(sbs.len(), 1, "one sandbox per task: {sbs:?}");
    let sb = &sbs[0];
    assert_eq!(sb.labels_or_default("io.containerd.id"), "c-long");
    let spec = sb.spec.as_ref().expect("spec");
    assert!(
        spec.rootfs.starts_with(tasks.to_str().expect("utf-8")),
        "{}",
        spec.rootfs
    );
    let exec = ctd.ctr_ok(&[
        "task",
        "exec",
        "--exec-id",
        "e1",
        "c-long",
        "sh",
        "-c",
        "echo from-exec; hostname",
    ]);
    assert!(exec.starts_with("from-exec\n"), "{exec}");
    let o = ctd.ctr(&[
        "task",
        "exec",
        "--exec-id",
        "e2",
        "c-long",
        "sh",
        "-c",
        "exit 7",
    ]);
    assert_eq!(o.status.code(), Some(7), "exec exit code");
    let pid = task_pid(&ctd, "c-long");
    let cmdline = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    assert!(
        cmdline.starts_with("sleep\x001000"),
        "pid {pid} runs {cmdline:?}"
    );
    // The isolation of a container started this way: VerifySandbox holds,
    // and equals that of the same spec created directly.
    let mut c = daemon.clients().await;
    let v = verify(&mut c, &sb.id).await;
    assert!(v.consistent, "{v:#?}");
    assert!(!v.properties.is_empty() && !v.checks.is_empty(), "{v:#?}");
    for p in &v.properties {
        assert!(p.agrees, "{p:?}");
        if p.requested == pb::Requirement::Required as i32 {
            assert_ne!(p.observed, pb::ObservedResult::Violated as i32, "{p:?}");
        }
    }
    let mut direct = spec.clone();
    direct.labels.clear();
    let direct = c.create(direct).await;
    let dv = verify(&mut c, &direct.id).await;
    assert_eq!(summary(&v), summary(&dv), "shim-made vs direct");
    assert!(c.destroy(&direct.id).await);
    drop(c);
    ctd.ctr_ok(&["task", "kill", "-s", "SIGKILL", "c-long"]);
    wait_task_status(&ctd, "c-long", "STOPPED");
    ctd.ctr_ok(&["task", "rm", "c-long"]);
    ctd.ctr_ok(&["container", "rm", "c-long"]);
    assert!(
        sandboxes(&daemon).await.is_empty(),
        "sandbox left after task rm"
    );

    // What sandboxd cannot honour is refused, naming the field.
    let o = ctd.ctr(&[
        "run",
        "--runtime",
        runtime,
        "--rm",
        "--seccomp",
        IMAGE,
        "c-seccomp",
        "true",
    ]);
    assert!(!o.status.success(), "a seccomp profile is refused");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("linux.seccomp"), "{err}");
    let _ = ctd.ctr(&["container", "rm", "c-seccomp"]);
    assert!(
        sandboxes(&daemon).await.is_empty(),
        "nothing created for a refused bundle"
    );

    // Nothing left: no task mounts, no shim.
    ctd.stop();
    assert_no_mounts(&dir);
    daemon.finish().await;
}

/// `ctr run -t`: the process gets a terminal (ctr itself needs one: it runs
/// under script(1)).
#[cfg_attr(
    any(feature = "force-chroot", not(target_os = "linux")),
    ignore = "needs the Linux backend and containerd on Linux (the chroot mapping is unit-tested in crates/shim/src/bundle.rs)"
)]
#[tokio::test]
async fn ctr_run_with_a_terminal() {
    let (dir, daemon, mut ctd) = setup("tty");
    let command = format!(
        "{} --address {} --namespace {NS} run --fifo-dir {} --runtime {RUNTIME} -t --rm {IMAGE} c-tty sh -c '[ -t 0 ] && [ -t 1 ] && echo tty-ok; exit 4'",
        tool("ctr").display(),
        ctd.socket.display(),
        ctd.dir.join("fifo").display()
    );
    let o = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .expect("script");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("tty-ok"),
        "{out}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(o.status.code(), Some(4), "{out}");
    assert!(sandboxes(&daemon).await.is_empty());
    ctd.stop();
    assert_no_mounts(&dir);
    daemon.finish().await;
}

/// The shim of a running task is SIGKILLed: containerd runs the shim's
/// `delete` action, which destroys the task's sandbox and unmounts its
/// root; the container can then be removed and nothing is left.
#[cfg_attr(
    any(feature = "force-chroot", not(target_os = "linux")),
    ignore = "needs the Linux backend and containerd on Linux (the chroot mapping is unit-tested in crates/shim/src/bundle.rs)"
)]
#[tokio::test]
async fn a_shim_crash_leaves_nothing() {
    let (dir, daemon, mut ctd) = setup("shimcrash");
    ctd.ctr_ok(&[
        "run",
        "--runtime",
        RUNTIME,
        "-d",
        IMAGE,
        "c-crash",
        "sleep",
        "1000",
    ]);
    wait_task_status(&ctd, "c-crash", "RUNNING");
    let pid = task_pid(&ctd, "c-crash");
    let shims = ctd.shims();
    assert_eq!(shims.len(), 1, "one shim: {shims:?}");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(shims[0]),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill the shim");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let list = sandboxes(&daemon).await;
        if list.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the dead shim's sandbox was never destroyed: {list:?}\ncontainerd log:\n{}",
            tail(&ctd.log_text(), 30)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eventually("the task's process is gone", || {
        !crate::harness::process_running(pid)
    })
    .await;
    // containerd's view: the task is gone or stopped, and it lets go.
    let ls = ctd.ctr_ok(&["task", "ls"]);
    assert!(
        !ls.lines()
            .any(|l| l.starts_with("c-crash") && l.contains("RUNNING")),
        "{ls}"
    );
    let _ = ctd.ctr(&["task", "rm", "c-crash"]);
    ctd.ctr_ok(&["container", "rm", "c-crash"]);
    ctd.stop();
    assert_no_mounts(&dir);
    daemon.finish().await;
}

/// sandboxd is SIGKILLed under a running task: the task's Exec stream
/// breaks, so containerd is told the process ended LOST (255); once the
/// daemon is back the shim stops the sandbox, so nothing runs on, and the
/// task and container are removed normally.
#[cfg_attr(
    any(feature = "force-chroot", not(target_os = "linux")),
    ignore = "needs the Linux backend and containerd on Linux (the chroot mapping is unit-tested in crates/shim/src/bundle.rs)"
)]
#[tokio::test]
async fn a_daemon_crash_ends_the_task_consistently() {
    let (dir, mut daemon, mut ctd) = setup("daemoncrash");
    ctd.ctr_ok(&[
        "run",
        "--runtime",
        RUNTIME,
        "-d",
        IMAGE,
        "c-dcrash",
        "sleep",
        "1000",
    ]);
    wait_task_status(&ctd, "c-dcrash", "RUNNING");
    let pid = task_pid(&ctd, "c-dcrash");
    daemon.kill_daemon();
    wait_task_status(&ctd, "c-dcrash", "STOPPED");
    daemon.respawn();
    eventually(
        "the task's process is stopped once the daemon is back",
        || !crate::harness::process_running(pid),
    )
    .await;
    ctd.ctr_ok(&["task", "rm", "c-dcrash"]);
    ctd.ctr_ok(&["container", "rm", "c-dcrash"]);
    assert!(sandboxes(&daemon).await.is_empty(), "sandbox left");
    ctd.stop();
    assert_no_mounts(&dir);
    daemon.finish().await;
}

/// `spec.rootfs`, the daemon side the shim relies on: only below an
/// allowed rootfs source, and never through a symlink on the path.
#[tokio::test]
async fn rootfs_only_below_allowed_sources_and_without_symlinks() {
    let daemon_dir = ScratchDir::new(format!("/tmp/sandboxd-e2e-rootfs-{}", std::process::id()));
    let allowed = daemon_dir.join("allowed");
    busybox_root(&allowed.join("real/rootfs"));
    busybox_root(&daemon_dir.join("outside/rootfs"));
    // A symlink below the allowed directory leading out of it.
    std::os::unix::fs::symlink(daemon_dir.join("outside"), allowed.join("link")).expect("symlink");
    let daemon = Daemon::start_with(&["--allow-rootfs-source", allowed.to_str().expect("utf-8")]);
    let mut c = daemon.clients().await;
    let spec = |rootfs: &Path| pb::SandboxSpec {
        rootfs: rootfs.to_str().expect("utf-8").to_owned(),
        mode: pb::SandboxMode::Idle as i32,
        ..Default::default()
    };
    // Through the symlink: refused, nothing created.
    let err = c
        .try_create(spec(&allowed.join("link/rootfs")))
        .await
        .expect_err("a symlink on the rootfs path is refused");
    assert!(err.message().contains("symlink"), "{err:?}");
    // Outside the allow-list: refused by validation.
    let err = c
        .try_create(spec(&daemon_dir.join("outside/rootfs")))
        .await
        .expect_err("outside the allowed sources");
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("spec.rootfs"), "{err:?}");
    assert!(sandboxes(&daemon).await.is_empty());
    // The real directory works, and writes stay out of it.
    let sb = c.create(spec(&allowed.join("real/rootfs"))).await;
    assert_eq!(sb.spec.as_ref().expect("spec").image, "rootfs");
    let mut root = crate::harness::argv(&["/bin/sh", "-c", "echo hi > /written; cat /written"]);
    root.user = Some(pb::User {
        uid: Some(0),
        gid: Some(0),
        additional_gids: Vec::new(),
    });
    let r = c.exec_sync(&sb.id, root, 0).await;
    assert_eq!(crate::harness::out(&r), "hi\n");
    assert!(
        !allowed.join("real/rootfs/written").exists(),
        "the sandbox wrote into the given rootfs"
    );
    drop(c);
    daemon.finish().await;
}

pub(crate) async fn verify(c: &mut crate::harness::Clients, id: &str) -> pb::Verification {
    c.sandboxes
        .verify_sandbox(pb::VerifySandboxRequest { id: id.into() })
        .await
        .expect("verify")
        .into_inner()
        .verification
        .expect("verification")
}

/// What a verification claims and observes, per property and check.
pub(crate) fn summary(v: &pb::Verification) -> Vec<String> {
    let mut out: Vec<String> = v
        .properties
        .iter()
        .map(|p| {
            format!(
                "{} {} {} {}",
                p.property, p.claimed, p.requested, p.observed
            )
        })
        .collect();
    out.extend(
        v.checks
            .iter()
            .map(|c| format!("{} {}", c.name, c.observed)),
    );
    out
}

/// Label lookup on a sandbox.
trait Labels {
    fn labels_or_default(&self, key: &str) -> String;
}

impl Labels for pb::Sandbox {
    fn labels_or_default(&self, key: &str) -> String {
        self.spec
            .as_ref()
            .and_then(|s| s.labels.get(key).cloned())
            .unwrap_or_default()
    }
}
