//! The ROOT image and the command-line peers: `unshare … chroot` (the
//! baseline "b"), bubblewrap, crun and runc, each run once per call as a
//! child process with stdio on /dev/null.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// Counter for unique OCI container ids.
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

/// Builds a busybox directory image at `root`: `bin/busybox`, one symlink
/// per applet (so `bin/true -> busybox`), `etc/passwd`, and empty `dev`,
/// `proc`, `sys` and `tmp` (mount points the OCI runtimes would otherwise
/// create inside the image).
pub(crate) fn make_busybox_root(root: &Path, busybox: &Path) -> anyhow::Result<()> {
    for d in ["bin", "etc", "dev", "proc", "sys", "tmp"] {
        std::fs::create_dir_all(root.join(d)).with_context(|| format!("mkdir {d} in image"))?;
    }
    std::fs::set_permissions(root.join("tmp"), std::fs::Permissions::from_mode(0o1777))
        .context("chmod image /tmp")?;
    std::fs::copy(busybox, root.join("bin/busybox"))
        .with_context(|| format!("copying {}", busybox.display()))?;
    let out = Command::new(busybox)
        .arg("--list")
        .output()
        .context("busybox --list")?;
    let list = String::from_utf8_lossy(&out.stdout);
    let mut applets: Vec<&str> = list.lines().filter(|a| *a != "busybox").collect();
    if !applets.contains(&"true") {
        // Guarantees the one applet every benchmark runs.
        applets.push("true");
    }
    for applet in applets {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet))
            .with_context(|| format!("linking applet {applet}"))?;
    }
    std::fs::write(
        root.join("etc/passwd"),
        "root:x:0:0::/:/bin/sh\nnobody:x:65534:65534::/:/bin/sh\n",
    )
    .context("writing image /etc/passwd")?;
    Ok(())
}

/// The first executable called `name` on `PATH` (plus the sbin
/// directories, which a non-login root shell may lack).
pub(crate) fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| {
            p.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// How one peer runs `/bin/true` in ROOT.
#[derive(Debug)]
pub(crate) enum Kind {
    /// `unshare --mount --pid --fork --uts --ipc --net chroot ROOT /bin/true`.
    Unshare { unshare: PathBuf, chroot: PathBuf },
    /// `bwrap --unshare-all --bind ROOT / /bin/true`.
    Bwrap(PathBuf),
    /// `<runtime> --root STATE run --bundle BUNDLE <unique id>`, then
    /// `delete --force` (see [`Peer::run_once`]).
    Oci {
        runtime: PathBuf,
        bundle: PathBuf,
        state: PathBuf,
    },
}

/// A peer benchmark.
#[derive(Debug)]
pub(crate) struct Peer {
    /// Row label.
    pub(crate) label: String,
    /// How it runs.
    pub(crate) kind: Kind,
}

impl Peer {
    /// The baseline b; fails if `unshare` or `chroot` is missing, since
    /// without b there are no ratios.
    pub(crate) fn baseline() -> anyhow::Result<Self> {
        let unshare = which("unshare").context("unshare (util-linux) is not installed")?;
        let chroot = which("chroot").context("chroot (coreutils) is not installed")?;
        Ok(Self {
            label: "b: unshare+chroot".into(),
            kind: Kind::Unshare { unshare, chroot },
        })
    }

    /// bubblewrap, if installed.
    pub(crate) fn bwrap() -> Option<Self> {
        Some(Self {
            label: "bwrap --unshare-all".into(),
            kind: Kind::Bwrap(which("bwrap")?),
        })
    }

    /// crun or runc (`name`), if installed: writes a bundle under `work`
    /// whose config.json comes from `<name> spec`, edited to run /bin/true
    /// without a terminal on `root`.
    pub(crate) fn oci(name: &str, root: &Path, work: &Path) -> anyhow::Result<Option<Self>> {
        let Some(runtime) = which(name) else {
            return Ok(None);
        };
        let bundle = work.join(format!("bundle-{name}"));
        let state = work.join(format!("state-{name}"));
        std::fs::create_dir_all(&bundle).context("mkdir bundle")?;
        std::fs::create_dir_all(&state).context("mkdir runtime state")?;
        let out = Command::new(&runtime)
            .arg("spec")
            .current_dir(&bundle)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running {name} spec"))?;
        if !out.status.success() {
            bail!(
                "{name} spec failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let path = bundle.join("config.json");
        let text = std::fs::read_to_string(&path).context("reading config.json")?;
        let mut spec: serde_json::Value =
            serde_json::from_str(&text).context("parsing config.json")?;
        spec["process"]["args"] = serde_json::json!(["/bin/true"]);
        spec["process"]["terminal"] = serde_json::json!(false);
        spec["root"]["path"] = serde_json::json!(root.display().to_string());
        std::fs::write(
            &path,
            serde_json::to_vec_pretty(&spec).context("encoding config.json")?,
        )
        .context("writing config.json")?;
        Ok(Some(Self {
            label: format!("{name} run"),
            kind: Kind::Oci {
                runtime,
                bundle,
                state,
            },
        }))
    }

    /// Runs `/bin/true` in ROOT once and returns the wall time, which for
    /// the OCI runtimes covers `run` plus `delete --force` (create, start,
    /// wait and destroy, like the sandboxd row).
    pub(crate) fn run_once(&self, root: &Path) -> anyhow::Result<Duration> {
        match &self.kind {
            Kind::Unshare { unshare, chroot } => {
                let mut cmd = Command::new(unshare);
                cmd.args(["--mount", "--pid", "--fork", "--uts", "--ipc", "--net"])
                    .arg(chroot)
                    .arg(root)
                    .arg("/bin/true");
                timed(&mut cmd)
            }
            Kind::Bwrap(bwrap) => {
                let mut cmd = Command::new(bwrap);
                cmd.args(["--unshare-all", "--bind"])
                    .arg(root)
                    .args(["/", "/bin/true"]);
                timed(&mut cmd)
            }
            Kind::Oci {
                runtime,
                bundle,
                state,
            } => {
                let id = format!(
                    "sdbench-{}-{}",
                    std::process::id(),
                    NEXT_ID.fetch_add(1, Ordering::Relaxed)
                );
                let start = Instant::now();
                let mut run = Command::new(runtime);
                run.arg("--root")
                    .arg(state)
                    .args(["run", "--bundle"])
                    .arg(bundle)
                    .arg(&id);
                let ran = timed(&mut run);
                // Always delete, even after a failed run. `run` usually
                // removes a container that has exited, so "does not exist"
                // here is expected and not an error.
                let _ = Command::new(runtime)
                    .arg("--root")
                    .arg(state)
                    .args(["delete", "--force"])
                    .arg(&id)
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
                ran?;
                Ok(start.elapsed())
            }
        }
    }
}

/// Runs a command to completion with stdio on /dev/null (stderr kept for
/// the error message) and returns its wall time; a non-zero exit is an
/// error.
pub(crate) fn timed(cmd: &mut Command) -> anyhow::Result<Duration> {
    let start = Instant::now();
    let out = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .with_context(|| format!("spawning {cmd:?}"))?;
    let elapsed = start.elapsed();
    if !out.status.success() {
        let program = Path::new(cmd.get_program());
        bail!(
            "{} exited with {}: {}",
            Path::new(program.file_name().unwrap_or(program.as_os_str())).display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(elapsed)
}
