//! The end-to-end harness: starts the real `sandboxd` binary on a temporary
//! socket, state dir and images dir, connects real gRPC clients over the
//! unix socket, and on `finish` destroys what is left, stops the daemon with
//! SIGTERM and checks that nothing leaked (mounts, processes, state files).

#![allow(dead_code)] // shared helpers; not every suite uses each one

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use sandboxd_proto::v1 as pb;
use sandboxd_proto::v1::host_service_client::HostServiceClient;
use sandboxd_proto::v1::process_service_client::ProcessServiceClient;
use sandboxd_proto::v1::sandbox_service_client::SandboxServiceClient;
use tonic::transport::{Channel, Endpoint};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// The backend this build's daemon uses, chosen at compile time as the
/// daemon chooses it: `--features force-chroot` selects chroot on any OS;
/// otherwise Linux uses namespaces, FreeBSD jails and every other OS chroot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BackendUnderTest {
    /// Linux namespaces.
    Linux,
    /// chroot(2), on any OS.
    Chroot,
    /// FreeBSD jails.
    Freebsd,
}

impl BackendUnderTest {
    /// For messages naming the backend under test.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Linux => "the Linux namespace backend",
            Self::Chroot => "the chroot backend",
            Self::Freebsd => "the FreeBSD jail backend",
        }
    }
}

/// The backend under test.
/// The sandboxd binary the tests start: the one cargo built with this test
/// binary, or the one in the directory `SANDBOXD_TEST_BIN_DIR` names
/// (ci/test.sh points it at the static release build, docs/building.md,
/// for a run of the lifecycle and exec suites against it).
pub(crate) fn sandboxd_bin() -> PathBuf {
    match std::env::var_os("SANDBOXD_TEST_BIN_DIR") {
        Some(dir) => PathBuf::from(dir).join("sandboxd"),
        None => PathBuf::from(env!("CARGO_BIN_EXE_sandboxd")),
    }
}

pub(crate) fn backend() -> BackendUnderTest {
    if cfg!(feature = "force-chroot") {
        BackendUnderTest::Chroot
    } else if cfg!(target_os = "linux") {
        BackendUnderTest::Linux
    } else if cfg!(target_os = "freebsd") {
        BackendUnderTest::Freebsd
    } else {
        BackendUnderTest::Chroot
    }
}

/// Whether this build's daemon uses the Linux namespace backend.
pub(crate) fn linux_backend() -> bool {
    backend() == BackendUnderTest::Linux
}

/// Whether this build's daemon uses the FreeBSD jail backend.
pub(crate) fn freebsd_backend() -> bool {
    backend() == BackendUnderTest::Freebsd
}

/// Whether this build's daemon uses the chroot backend (`--features
/// force-chroot`, or an OS without a backend of its own).
pub(crate) fn chroot_backend() -> bool {
    backend() == BackendUnderTest::Chroot
}

/// The host's mount table as text, one mount a line: `/proc/self/mountinfo`
/// on Linux, `mount -p` on FreeBSD, `mount` elsewhere.
pub(crate) fn mount_table() -> String {
    if cfg!(target_os = "linux") {
        std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default()
    } else {
        let mut cmd = Command::new("mount");
        if cfg!(target_os = "freebsd") {
            cmd.arg("-p");
        }
        cmd.stderr(Stdio::null())
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }
}

/// The mount points in [`mount_table`]: mountinfo's fifth field on Linux,
/// `mount -p`'s second on FreeBSD, the word after " on " elsewhere.
pub(crate) fn mount_points() -> Vec<String> {
    let table = mount_table();
    if cfg!(target_os = "linux") {
        // Unescaped (`\040` is a space), so they compare with real paths.
        sandboxd_core::mountinfo::mount_points(&table)
            .map(|p| p.to_string_lossy().into_owned())
            .collect()
    } else if cfg!(target_os = "freebsd") {
        table
            .lines()
            .filter_map(|l| l.split_whitespace().nth(1))
            .map(str::to_owned)
            .collect()
    } else {
        table
            .lines()
            .filter_map(|l| l.split(" on ").nth(1)?.split(' ').next())
            .map(str::to_owned)
            .collect()
    }
}

/// The mount points at or below `dir`, compared by path components (a
/// string match would take `/tmp/d-1` for a prefix of `/tmp/d-12`'s mounts,
/// another test's).
pub(crate) fn mounts_under(dir: &Path) -> Vec<String> {
    mount_points()
        .into_iter()
        .filter(|m| Path::new(m).starts_with(dir))
        .collect()
}

/// Whether `pid` runs the supervisor of sandbox `id`, by command line (not
/// bare pid: another test may have been given the same pid since).
/// `/proc/<pid>/cmdline` on Linux, `ps -ww -o command=` elsewhere (whose
/// words are separated by spaces, not NULs).
pub(crate) fn runs_supervisor_of(pid: impl std::fmt::Display, id: &str) -> bool {
    if cfg!(target_os = "linux") {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        String::from_utf8_lossy(&cmdline).contains(&format!("__supervise\0{id}"))
    } else {
        ps(pid, "command").contains(&format!("__supervise {id}"))
    }
}

/// `ps -ww -o KEYWORD= -p PID`: empty when there is no such process.
fn ps(pid: impl std::fmt::Display, keyword: &str) -> String {
    Command::new("ps")
        .args(["-ww", "-o", &format!("{keyword}="), "-p", &pid.to_string()])
        .stderr(Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

/// What `left` finds once it finds nothing, or after 10 s: a destroy
/// replies once the sandbox is dead and unlisted, and its teardown finishes
/// just after (blocking: for the synchronous leftover checks).
pub(crate) fn settled(left: impl Fn() -> Vec<String>) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let found = left();
        if found.is_empty() || Instant::now() > deadline {
            return found;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits (up to 10 s) until `path` is gone: a destroy replies once the
/// sandbox is dead and unlisted, and its teardown (cgroups, state
/// directory, logs) finishes just after. Whether it went.
pub(crate) async fn gone(path: &Path) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while path.exists() {
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    true
}

/// Whether process `pid` exists, zombies included: `/proc/<pid>` on
/// Linux, kill(pid, 0) elsewhere.
pub(crate) fn process_exists(pid: impl std::fmt::Display) -> bool {
    if cfg!(target_os = "linux") {
        Path::new(&format!("/proc/{pid}")).exists()
    } else {
        pid.to_string().parse::<i32>().is_ok_and(|p| {
            p > 0
                && !matches!(
                    nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), None),
                    Err(nix::errno::Errno::ESRCH)
                )
        })
    }
}

/// Whether process `pid` runs (exists and is not a zombie): its state in
/// `/proc/<pid>/stat` on Linux, `ps -o state=` elsewhere.
pub(crate) fn process_running(pid: impl std::fmt::Display) -> bool {
    if cfg!(target_os = "linux") {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| {
                s.rsplit_once(')')
                    .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
            })
            .unwrap_or(false)
    } else {
        let state = ps(pid, "state");
        !state.is_empty() && !state.starts_with('Z')
    }
}

/// Fails loudly (never skips) when not root: CI runs these as root.
/// A free TCP port on 127.0.0.1 (bound and released: another process may
/// take it in between, which only fails the test loudly).
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

pub(crate) fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the end-to-end tests start sandboxd, which mounts and chroots: run them as root (ci/test.sh does)"
    );
}

/// A running daemon under test.
pub(crate) struct Daemon {
    child: Option<Child>,
    /// Temporary directory holding everything below.
    pub(crate) dir: PathBuf,
    /// The unix socket.
    pub(crate) socket: PathBuf,
    /// The state dir.
    pub(crate) state: PathBuf,
    /// The images dir.
    pub(crate) images: PathBuf,
    /// The daemon's log file.
    pub(crate) log: PathBuf,
    extra: Vec<String>,
    bin: PathBuf,
    /// Run the daemon in this network namespace (`ip netns` name).
    netns: Option<String>,
    /// Extra environment for the daemon.
    env: Vec<(String, String)>,
    /// A command the daemon is started under (e.g. `prlimit --nofile=N:N`),
    /// which must exec it so the child's pid stays the daemon's.
    wrapper: Vec<String>,
}

impl Daemon {
    /// Starts a daemon with extra flags.
    pub(crate) fn start_with(extra: &[&str]) -> Self {
        Self::start_in(None, extra)
    }

    /// Starts a daemon inside network namespace `netns` (entered with
    /// nsenter, which changes nothing else), with extra flags.
    pub(crate) fn start_in(netns: Option<&str>, extra: &[&str]) -> Self {
        Self::start_full(netns, extra, &[])
    }

    /// Starts a daemon with extra flags and environment variables, in
    /// `netns` if given.
    pub(crate) fn start_full(netns: Option<&str>, extra: &[&str], env: &[(&str, &str)]) -> Self {
        Self::start_wrapped(netns, &[], extra, env)
    }

    /// Starts a daemon under `wrapper` (a command that execs the rest of
    /// its arguments), in `netns` if given, with extra flags and environment.
    pub(crate) fn start_wrapped(
        netns: Option<&str>,
        wrapper: &[&str],
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        Self::start_at(netns, wrapper, extra, env, "state")
    }

    /// Starts a daemon whose state directory is `state_name` in the test's
    /// directory (a name with a space, say).
    pub(crate) fn start_with_state_dir(state_name: &str) -> Self {
        Self::start_at(None, &[], &[], &[], state_name)
    }

    fn start_at(
        netns: Option<&str>,
        wrapper: &[&str],
        extra: &[&str],
        env: &[(&str, &str)],
        state_name: &str,
    ) -> Self {
        require_root();
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = PathBuf::from(format!("/tmp/sandboxd-e2e-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create test dir");
        let socket = dir.join("run/sandboxd.sock");
        let state = dir.join(state_name);
        let images = dir.join("images");
        let log = dir.join("daemon.log");
        let mut d = Self {
            child: None,
            dir,
            socket,
            state,
            images,
            log,
            extra: extra.iter().map(|s| (*s).to_owned()).collect(),
            bin: sandboxd_bin(),
            netns: netns.map(str::to_owned),
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            wrapper: wrapper.iter().map(|s| (*s).to_owned()).collect(),
        };
        d.spawn();
        d
    }

    /// Starts the daemon process on this harness's paths and waits for its
    /// socket.
    fn spawn(&mut self) {
        let _ = std::fs::remove_file(&self.socket);
        let logf = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        // nsenter and the wrapper exec the daemon, so the child's pid is
        // the daemon's.
        let mut argv: Vec<std::ffi::OsString> = Vec::new();
        if let Some(ns) = &self.netns {
            argv.extend([
                "nsenter".into(),
                format!("--net=/run/netns/{ns}").into(),
                "--".into(),
            ]);
        }
        argv.extend(self.wrapper.iter().map(Into::into));
        argv.push(self.bin.clone().into());
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..]);
        let child = cmd
            .arg("--listen")
            .arg(format!("unix://{}", self.socket.display()))
            .arg("--state-dir")
            .arg(&self.state)
            .arg("--images-dir")
            .arg(&self.images)
            .args(&self.extra)
            .env("SANDBOXD_LOG", "debug")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(logf)
            .spawn()
            .expect("spawn sandboxd");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.socket.exists() {
            assert!(
                Instant::now() < deadline,
                "sandboxd did not create its socket; log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the daemon (our child, by pid) and starts `bin` instead on the
    /// same directories.
    pub(crate) fn restart_as(&mut self, bin: &Path) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.bin = bin.to_owned();
        self.spawn();
    }

    /// SIGKILLs the daemon (our child, by pid) and leaves it down.
    pub(crate) fn kill_daemon(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// If the daemon has exited (crashed), reaps it and starts it again;
    /// returns whether it had.
    pub(crate) fn respawn_if_dead(&mut self) -> bool {
        let dead = self
            .child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(Some(_))));
        if dead {
            self.child = None;
            self.spawn();
        }
        dead
    }

    /// Starts the daemon again on the same directories.
    pub(crate) fn respawn(&mut self) {
        self.spawn();
    }

    /// SIGKILLs the daemon (our child, by pid) and starts it again on the
    /// same directories.
    pub(crate) fn kill_and_restart(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.spawn();
    }

    /// Starts a daemon with default flags.
    pub(crate) fn start() -> Self {
        Self::start_with(&[])
    }

    /// The daemon's log so far.
    pub(crate) fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The daemon's pid.
    pub(crate) fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// A gRPC channel over the unix socket.
    pub(crate) async fn channel(&self) -> Channel {
        let path = self.socket.clone();
        Endpoint::from_static("http://localhost")
            .connect_with_connector(tower::service_fn(move |_| {
                let path = path.clone();
                async move {
                    Ok::<_, std::io::Error>(TokioIo::new(
                        tokio::net::UnixStream::connect(path).await?,
                    ))
                }
            }))
            .await
            .expect("connect to sandboxd")
    }

    /// Clients for every service.
    pub(crate) async fn clients(&self) -> Clients {
        let ch = self.channel().await;
        Clients {
            host: HostServiceClient::new(ch.clone()),
            sandboxes: SandboxServiceClient::new(ch.clone()),
            processes: ProcessServiceClient::new(ch.clone()),
            events: pb::event_service_client::EventServiceClient::new(ch),
        }
    }

    /// Makes a tiny directory image from the static busybox: `/bin/sh` and
    /// friends, `/etc/passwd`, `/tmp`, `/dev`.
    pub(crate) fn make_busybox_image(&self, name: &str) -> PathBuf {
        let busybox = ["/bin/busybox", "/usr/bin/busybox"]
            .into_iter()
            .map(Path::new)
            .find(|p| p.exists())
            .expect("busybox-static is installed (.ci/run installs it)");
        let root = self.images.join(name);
        for d in ["bin", "etc", "tmp", "dev", "proc", "data"] {
            std::fs::create_dir_all(root.join(d)).expect("image dir");
        }
        std::fs::copy(busybox, root.join("bin/busybox")).expect("copy busybox");
        for applet in [
            "sh", "cat", "echo", "ls", "id", "sleep", "true", "false", "touch", "mkdir", "head",
            "wc",
        ] {
            std::os::unix::fs::symlink("busybox", root.join("bin").join(applet))
                .expect("applet link");
        }
        std::fs::write(
            root.join("etc/passwd"),
            "root:x:0:0::/:/bin/sh\nnobody:x:65534:65534::/:/bin/sh\n",
        )
        .expect("passwd");
        root
    }

    /// Destroys every sandbox, stops the daemon with SIGTERM, and asserts that
    /// nothing leaked.
    pub(crate) async fn finish(mut self) {
        let mut c = self.clients().await;
        let list = c
            .sandboxes
            .list_sandboxes(pb::ListSandboxesRequest::default())
            .await
            .expect("list")
            .into_inner();
        let supervisors: Vec<(String, i64)> = list
            .sandboxes
            .iter()
            .map(|s| (s.id.clone(), s.supervisor_pid))
            .collect();
        // Children (spec.join) first: a parent refuses to go before them.
        let mut all = list.sandboxes;
        all.sort_by_key(|s| s.spec.as_ref().and_then(|s| s.join.as_ref()).is_none());
        for s in all {
            c.sandboxes
                .destroy_sandbox(pb::DestroySandboxRequest { id: s.id })
                .await
                .expect("destroy");
        }
        drop(c);
        self.stop_daemon();
        let leaks = self.leaks(&supervisors);
        assert!(
            leaks.is_empty(),
            "leaks after the suite: {leaks:#?}\nlog:\n{}",
            self.log_text()
        );
        std::fs::remove_dir_all(&self.dir).expect("remove test dir");
    }

    fn stop_daemon(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid"));
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                if let Ok(Some(status)) = child.try_wait() {
                    assert!(
                        status.success(),
                        "sandboxd exited with {status} after SIGTERM"
                    );
                    break;
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("sandboxd did not exit within 20s of SIGTERM");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// Mounts under the test dir, live supervisors, and sandbox state dirs.
    fn leaks(&self, supervisors: &[(String, i64)]) -> Vec<String> {
        let mut leaks: Vec<String> = mounts_under(&self.dir)
            .into_iter()
            .map(|m| format!("mount: {m}"))
            .collect();
        for (id, pid) in supervisors.iter().filter(|(_, p)| *p > 0) {
            // By command line, not bare pid: another test may have been given
            // the same pid since.
            if runs_supervisor_of(pid, id) {
                leaks.push(format!("supervisor pid {pid} of {id} still running"));
            }
        }
        for (id, _) in supervisors {
            leaks.extend(network_leaks(id));
            leaks.extend(jail_leaks(id));
        }
        if let Ok(entries) = std::fs::read_dir(self.state.join("sandboxes")) {
            leaks.extend(
                entries
                    .flatten()
                    .map(|e| format!("state: {}", e.path().display())),
            );
        }
        leaks
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // Only if a test failed before finish(): stop our own daemon by its
        // pid, then ask each supervisor it started (pid from its record,
        // checked against its command line) to shut down cleanly.
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            for (id, pid) in self.running_supervisors() {
                if !runs_supervisor_of(pid, &id) {
                    continue;
                }
                let pid = nix::unistd::Pid::from_raw(pid);
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
                let deadline = Instant::now() + Duration::from_secs(10);
                while process_exists(pid) && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
        // A failed test's RESTRICTED sandboxes: their tables, links and
        // pinned namespaces, found by id as the daemon's cleanup would.
        #[cfg(target_os = "linux")]
        if let Ok(entries) = std::fs::read_dir(self.state.join("sandboxes")) {
            for entry in entries.flatten() {
                let id = entry.file_name().to_string_lossy().into_owned();
                let quiet = |cmd: &mut Command| {
                    let _ = cmd.stdout(Stdio::null()).stderr(Stdio::null()).status();
                };
                quiet(Command::new("nft").args([
                    "delete",
                    "table",
                    "inet",
                    &format!("sandboxd_{id}"),
                ]));
                quiet(Command::new("ip").args([
                    "link",
                    "del",
                    &format!("sbx{}", id.get(..12).unwrap_or(&id)),
                ]));
                let _ = nix::mount::umount2(
                    &entry.path().join("netns"),
                    nix::mount::MntFlags::MNT_DETACH,
                );
            }
        }
        // Never delete through a mount: only a directory nothing is mounted
        // under goes away.
        if mounts_under(&self.dir).is_empty() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

impl Daemon {
    /// (id, pid) of this daemon's supervisors that still run: found by their
    /// arguments (`sandboxd_supervisor::sys::find_supervisors`) for each id
    /// with a directory in this daemon's state (ids are random: no other
    /// daemon's), not from the records, which are written at the store's
    /// compaction. A sandbox's pid 1 matches too, as its supervisor's
    /// clone: it is left out (its parent is among the found).
    pub(crate) fn running_supervisors(&self) -> Vec<(String, i32)> {
        use sandboxd_supervisor::sys::{children_of, find_supervisors};
        let Ok(entries) = std::fs::read_dir(self.state.join("sandboxes")) else {
            return Vec::new();
        };
        let mut found = Vec::new();
        for id in entries
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
        {
            let pids = find_supervisors(&id);
            let clones: Vec<i32> = pids
                .iter()
                .flat_map(|p| children_of(nix::unistd::Pid::from_raw(*p)))
                .map(nix::unistd::Pid::as_raw)
                .collect();
            found.extend(
                pids.into_iter()
                    .filter(|p| !clones.contains(p))
                    .map(|p| (id.clone(), p)),
            );
        }
        found
    }
}

/// One client per service.
pub(crate) struct Clients {
    /// HostService.
    pub(crate) host: HostServiceClient<Channel>,
    /// SandboxService.
    pub(crate) sandboxes: SandboxServiceClient<Channel>,
    /// ProcessService.
    pub(crate) processes: ProcessServiceClient<Channel>,
    /// EventService.
    pub(crate) events: pb::event_service_client::EventServiceClient<Channel>,
}

impl Clients {
    /// Creates a sandbox and returns it.
    pub(crate) async fn create(&mut self, spec: pb::SandboxSpec) -> pb::Sandbox {
        self.try_create(spec).await.expect("create")
    }

    /// Creates a sandbox, or returns the refusal.
    pub(crate) async fn try_create(
        &mut self,
        spec: pb::SandboxSpec,
    ) -> Result<pb::Sandbox, tonic::Status> {
        let r = self
            .sandboxes
            .create_sandbox(pb::CreateSandboxRequest {
                spec: Some(spec),
                request_id: String::new(),
                verify: false,
            })
            .await?;
        Ok(r.into_inner().sandbox.expect("sandbox"))
    }

    /// Creates an IDLE sandbox on `image`.
    pub(crate) async fn idle(&mut self, image: &str) -> pb::Sandbox {
        self.create(pb::SandboxSpec {
            image: image.into(),
            mode: pb::SandboxMode::Idle as i32,
            ..Default::default()
        })
        .await
    }

    /// ExecSync with a shell command.
    pub(crate) async fn sh(&mut self, id: &str, script: &str) -> pb::ExecSyncResponse {
        self.exec_sync(id, argv(&["/bin/sh", "-c", script]), 0)
            .await
    }

    /// ExecSync.
    pub(crate) async fn exec_sync(
        &mut self,
        id: &str,
        process: pb::ProcessSpec,
        timeout_ms: u64,
    ) -> pb::ExecSyncResponse {
        self.processes
            .exec_sync(pb::ExecSyncRequest {
                sandbox_id: id.into(),
                process: Some(process),
                timeout_ms,
                ..Default::default()
            })
            .await
            .expect("exec_sync")
            .into_inner()
    }

    /// ExecSync expecting an error status.
    pub(crate) async fn sh_status(&mut self, id: &str, script: &str) -> tonic::Status {
        self.processes
            .exec_sync(pb::ExecSyncRequest {
                sandbox_id: id.into(),
                process: Some(argv(&["/bin/sh", "-c", script])),
                ..Default::default()
            })
            .await
            .expect_err("exec_sync should fail")
    }

    /// Another ProcessService client on the same channel.
    pub(crate) fn clone_processes(&self) -> ProcessServiceClient<Channel> {
        self.processes.clone()
    }

    /// GetSandbox, which must succeed.
    pub(crate) async fn get(&mut self, id: &str) -> pb::Sandbox {
        self.sandboxes
            .get_sandbox(pb::GetSandboxRequest { id: id.to_owned() })
            .await
            .unwrap_or_else(|e| panic!("get {id}: {e:?}"))
            .into_inner()
            .sandbox
            .unwrap_or_else(|| panic!("get {id}: no sandbox in the response"))
    }

    /// WaitSandbox, which must succeed with an exit.
    pub(crate) async fn wait(&mut self, id: &str) -> pb::ExitResult {
        self.sandboxes
            .wait_sandbox(pb::WaitSandboxRequest { id: id.to_owned() })
            .await
            .unwrap_or_else(|e| panic!("wait {id}: {e:?}"))
            .into_inner()
            .exit
            .unwrap_or_else(|| panic!("wait {id}: no exit in the response"))
    }

    /// Destroys a sandbox.
    pub(crate) async fn destroy(&mut self, id: &str) -> bool {
        self.sandboxes
            .destroy_sandbox(pb::DestroySandboxRequest { id: id.into() })
            .await
            .expect("destroy")
            .into_inner()
            .existed
    }
}

/// A process spec from argv.
pub(crate) fn argv(args: &[&str]) -> pb::ProcessSpec {
    pb::ProcessSpec {
        argv: args.iter().map(|s| (*s).to_owned()).collect(),
        ..Default::default()
    }
}

/// A PROCESS sandbox of `image` running `script` with `/bin/sh -c` in
/// working directory `cwd`.
pub(crate) fn sh_in(image: &str, script: &str, cwd: &str) -> pb::SandboxSpec {
    pb::SandboxSpec {
        image: image.into(),
        mode: pb::SandboxMode::Process as i32,
        process: Some(pb::ProcessSpec {
            cwd: cwd.into(),
            ..argv(&["/bin/sh", "-c", script])
        }),
        ..Default::default()
    }
}

/// stdout as text.
pub(crate) fn out(r: &pb::ExecSyncResponse) -> String {
    String::from_utf8_lossy(&r.stdout).into_owned()
}

/// The exit code of an ExecSync.
pub(crate) fn code(r: &pb::ExecSyncResponse) -> i32 {
    r.exit.as_ref().map_or(-1, |e| e.exit_code)
}

/// A sandbox's host link and nft table, if either is still there.
pub(crate) fn network_leaks(id: &str) -> Vec<String> {
    let mut leaks = Vec::new();
    let link = format!("sbx{}", id.get(..12).unwrap_or(id));
    if Path::new("/sys/class/net").join(&link).exists() {
        leaks.push(format!("link {link} of {id}"));
    }
    let table = format!("sandboxd_{id}");
    let listed = Command::new("nft")
        .args(["list", "table", "inet", &table])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if listed {
        leaks.push(format!("nft table inet {table}"));
    }
    leaks
}

/// On the FreeBSD jail backend, a sandbox's jail and rctl rules, if either
/// is still there (its mounts are in the mount check); elsewhere nothing.
pub(crate) fn jail_leaks(id: &str) -> Vec<String> {
    let mut leaks = Vec::new();
    if !freebsd_backend() {
        return leaks;
    }
    let name = format!("sandboxd-{id}");
    let found = Command::new("/usr/sbin/jls")
        .args(["-j", &name])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if found {
        leaks.push(format!("jail {name}"));
    }
    if let Ok(o) = Command::new("/usr/bin/rctl")
        .arg(format!("jail:{name}"))
        .stderr(Stdio::null())
        .output()
    {
        leaks.extend(
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter(|l| l.starts_with("jail:"))
                .map(|l| format!("rctl {l}")),
        );
    }
    leaks
}

/// Lines currently in the host's mount table ([`mount_table`]).
pub(crate) fn mount_count() -> usize {
    mount_table().lines().count()
}

/// A bind-mount source directory of one test's own, below `/srv` (outside
/// the test dir, whose state and images a mount source may not overlap):
/// tests sharing one would see each other's files (the hostile suite
/// compares the host before and after). A [`ScratchDir`]: removed on drop
/// unless something is still mounted under it.
pub(crate) struct SourceDir {
    dir: ScratchDir,
}

impl SourceDir {
    pub(crate) fn new(name: &str) -> Self {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        Self {
            dir: ScratchDir::new(format!(
                "/srv/sandboxd-e2e-{}-{n}-{name}",
                std::process::id()
            )),
        }
    }

    /// The daemon flag that allows this directory as a mount source.
    pub(crate) fn flag(&self) -> [&str; 2] {
        [
            "--allow-mount-source",
            self.dir.to_str().expect("a UTF-8 path of our own making"),
        ]
    }
}

impl std::ops::Deref for SourceDir {
    type Target = Path;

    fn deref(&self) -> &Path {
        &self.dir
    }
}

/// A test's own scratch directory outside a [`Daemon`]'s (containerd's
/// root and state, CNI configuration): emptied when made, removed on drop,
/// so a test that fails half-way leaves nothing for the leak check either.
/// Declare it before what runs in it (drops run in reverse): a guard that
/// unmounts (`Containerd`) then drops first; while anything is still
/// mounted below, the directory is kept rather than deleted through it.
pub(crate) struct ScratchDir {
    path: PathBuf,
}

impl ScratchDir {
    pub(crate) fn new(path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        // A previous run's, unless it left a mount: never deleted through.
        let left = mounts_under(&path);
        assert!(
            left.is_empty(),
            "mounted below {}: {left:?}",
            path.display()
        );
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create scratch dir");
        Self { path }
    }
}

impl std::ops::Deref for ScratchDir {
    type Target = Path;

    fn deref(&self) -> &Path {
        &self.path
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if mounts_under(&self.path).is_empty() {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// A test that panics half-way leaves no scratch directory behind, and a
/// scratch directory with something still mounted below is kept, never
/// deleted through the mount.
#[cfg_attr(
    not(target_os = "linux"),
    ignore = "mounts a tmpfs with Linux's mount(2) to stand for a mount left below"
)]
#[test]
fn a_scratch_dir_goes_with_its_test_but_never_through_a_mount() {
    let path = PathBuf::from(format!("/tmp/sandboxd-e2e-scratch-{}", std::process::id()));
    let panicked = std::panic::catch_unwind(|| {
        let dir = ScratchDir::new(&path);
        std::fs::write(dir.join("file"), "x").expect("write");
        panic!("a test failing half-way");
    });
    assert!(panicked.is_err());
    assert!(!path.exists(), "{} left by a failed test", path.display());

    #[cfg(target_os = "linux")]
    {
        let dir = ScratchDir::new(&path);
        let below = dir.join("mnt");
        std::fs::create_dir(&below).expect("mkdir");
        nix::mount::mount(
            Some("tmpfs"),
            &below,
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            Some("size=64k"),
        )
        .expect("mount a tmpfs below");
        std::fs::write(below.join("kept"), "x").expect("write below");
        drop(dir);
        let kept = below.join("kept").exists();
        nix::mount::umount(&below).expect("umount");
        assert!(kept, "deleted through the mount below");
        assert!(path.exists(), "removed with a mount below");
        drop(ScratchDir::new(&path));
        assert!(!path.exists());
    }
}

/// A failed test's cleanup finds each running sandbox's supervisor, and
/// only it (not the sandbox's pid 1, which runs the same arguments).
#[tokio::test]
async fn the_harness_finds_a_running_sandboxs_supervisor() {
    let d = Daemon::start();
    let mut c = d.clients().await;
    let sb = c.idle("host").await;
    let found = d.running_supervisors();
    let got = c.get(&sb.id).await;
    assert!(got.supervisor_pid > 0, "{got:?}");
    assert_eq!(
        found,
        vec![(
            sb.id.clone(),
            i32::try_from(got.supervisor_pid).expect("pid")
        )]
    );
    c.destroy(&sb.id).await;
    // Its teardown may finish just after the reply.
    let left = settled(|| {
        d.running_supervisors()
            .into_iter()
            .map(|(id, pid)| format!("{id}: {pid}"))
            .collect()
    });
    assert!(left.is_empty(), "{left:?}");
    d.finish().await;
}
