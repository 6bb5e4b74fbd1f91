//! The pure mapping from an OCI bundle's `config.json` (and an exec's OCI
//! process) to a sandboxd spec: no I/O, no system calls, any OS.
//!
//! Every key of the document is either mapped, or accepted for a written
//! reason, or refused with a [`Problem`] naming its JSON path: nothing is
//! silently ignored (an unknown key is refused too). The rules, field by
//! field, are the table in docs/containerd.md; the principle:
//!
//! - A **restriction** the bundle asks for (a namespace, a limit, a
//!   read-only root, a smaller capability set, a seccomp profile) is
//!   REQUIRED: sandboxd must give it or the create is refused.
//! - A **privilege** the bundle asks for that sandboxd withholds (a
//!   capability outside the backend's set, `/proc` or `/sys` mounts,
//!   `noNewPrivileges: false`) is PREFERRED: the container runs with less,
//!   and [`Mapped::degraded`] lists each such field so the shim logs it.

use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};

use sandboxd_proto::v1 as pb;
use serde_json::{Map, Value};

/// One field sandboxd cannot honour, or that is malformed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// JSON path in the bundle, e.g. `linux.resources.cpu.shares`.
    pub field: String,
    /// Why.
    pub reason: String,
}

/// Every problem of a bundle, all at once.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", render(.0))]
pub struct MapError(pub Vec<Problem>);

fn render(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| format!("{}: {}", p.field, p.reason))
        .collect::<Vec<_>>()
        .join("; ")
}

impl MapError {
    /// The fields named, for tests and logs.
    pub fn fields(&self) -> Vec<&str> {
        self.0.iter().map(|p| p.field.as_str()).collect()
    }
}

/// What the daemon's backend gives, which some mappings depend on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Linux namespaces.
    Linux,
    /// FreeBSD jails.
    FreeBsd,
    /// chroot(2).
    Chroot,
}

impl Backend {
    /// The capability bounding set a uid-0 payload keeps on this backend
    /// (docs/security.md); a non-root payload has none.
    pub fn granted_capabilities(self) -> &'static [&'static str] {
        const DOCKER_DEFAULT: [&str; 14] = [
            "CAP_CHOWN",
            "CAP_DAC_OVERRIDE",
            "CAP_FOWNER",
            "CAP_FSETID",
            "CAP_KILL",
            "CAP_SETGID",
            "CAP_SETUID",
            "CAP_SETPCAP",
            "CAP_NET_BIND_SERVICE",
            "CAP_SYS_CHROOT",
            "CAP_AUDIT_WRITE",
            "CAP_SETFCAP",
            "CAP_NET_RAW",
            "CAP_MKNOD",
        ];
        match self {
            // Docker's default set minus NET_RAW and MKNOD.
            Backend::Linux => &DOCKER_DEFAULT[..12],
            // ... minus SYS_CHROOT and AUDIT_WRITE as well.
            Backend::Chroot => &[
                "CAP_CHOWN",
                "CAP_DAC_OVERRIDE",
                "CAP_FOWNER",
                "CAP_FSETID",
                "CAP_KILL",
                "CAP_SETGID",
                "CAP_SETUID",
                "CAP_SETPCAP",
                "CAP_NET_BIND_SERVICE",
                "CAP_SETFCAP",
            ],
            // A jail has no Linux capabilities; its root is restricted by
            // the jail itself.
            Backend::FreeBsd => &[],
        }
    }
}

/// The annotation containerd's CRI plugin marks a pod's bundles with:
/// `sandbox` (the pod's sandbox, "pause", container) or `container`.
pub const ANNOTATION_CONTAINER_TYPE: &str = "io.kubernetes.cri.container-type";
/// The annotation naming the pod (CRI sandbox) a bundle belongs to; the
/// shim also labels the sandbox with it.
pub const ANNOTATION_SANDBOX_ID: &str = "io.kubernetes.cri.sandbox-id";

/// Which shim process serves a bundle (containerd's "grouping"): the
/// containers of one pod share their pod's shim, as with runc's shim, so a
/// pod costs one shim process; any other task gets its own. A bundle whose
/// pod annotation is missing, empty or not a string is its own group (its
/// Create then refuses what is malformed).
pub fn shim_group(config: &Value, id: &str) -> String {
    match config
        .get("annotations")
        .and_then(|a| a.get(ANNOTATION_SANDBOX_ID))
        .and_then(Value::as_str)
    {
        Some(pod) if !pod.is_empty() => pod.to_owned(),
        _ => id.to_owned(),
    }
}

/// What the CRI plugin says a bundle is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CriRole {
    /// The pod's sandbox container: holds the pod, runs only pause.
    Sandbox,
    /// A container of the pod.
    Container,
}

/// A CRI bundle: its role and its pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cri {
    pub role: CriRole,
    pub sandbox_id: String,
}

/// What the mapping needs to know of the host the shim runs on (found by
/// the shim; the mapping stays pure).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Host {
    /// The host's name (a bundle sharing the host's uts namespace may give
    /// it as `hostname`).
    pub name: String,
    /// The bundle's `linux.namespaces[].path`s that are the host's own
    /// namespace of their type (e.g. a host-network pod's
    /// `/proc/<pause>/ns/net`): joining one is sharing the host's.
    pub own_namespaces: BTreeSet<String>,
    /// For a pod's container: the pod's sandbox (the pause container's
    /// sandbox) and which of the bundle's namespace paths are its.
    pub pod: Option<PodSandbox>,
}

/// The sandbox of a pod's sandbox container, as the shim found it: a
/// container joining one of its namespaces becomes its child sandbox
/// (`spec.join`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodSandbox {
    /// Its sandboxd id.
    pub sandbox_id: String,
    /// The bundle's `linux.namespaces[].path`s that are this sandbox's
    /// namespaces (same device and inode as its pid 1's
    /// `/proc/<pid>/ns/<type>`).
    pub namespaces: BTreeSet<String>,
}

/// A bundle mapped onto sandboxd.
#[derive(Debug, Clone, PartialEq)]
pub struct Mapped {
    /// The sandbox: IDLE, on the bundle's rootfs; the task's process is
    /// started in it with Exec (so containerd's stdio FIFOs can be served).
    pub spec: pb::SandboxSpec,
    /// The task's process.
    pub process: Process,
    /// PREFERRED fields sandboxd gives less than asked, as
    /// `field: what the container gets instead`.
    pub degraded: Vec<String>,
    /// Set for a bundle of containerd's CRI plugin (a Kubernetes pod's).
    pub cri: Option<Cri>,
}

/// An OCI process mapped onto sandboxd.
#[derive(Debug, Clone, PartialEq)]
pub struct Process {
    /// argv, env, cwd, user, tty.
    pub spec: pb::ProcessSpec,
    /// `consoleSize`, for a terminal.
    pub size: Option<pb::TerminalSize>,
    /// `rlimits` sandboxd sets (RLIMIT_NOFILE, RLIMIT_AS), as (type, value).
    /// sandboxd sets them per sandbox, for every process: the task's become
    /// the sandbox's limits ([`apply_rlimits`]), an exec's must equal them
    /// ([`check_exec_rlimits`]).
    pub rlimits: Vec<(String, u64)>,
    /// A positive `oomScoreAdj` (0: none). The shim sets it on the
    /// sandbox's supervisor, from which every process of the sandbox
    /// inherits it; an exec's must equal the task's.
    pub oom_score_adj: i64,
}

/// Accumulates problems and degradations; carries what the rules depend
/// on besides the field itself.
#[derive(Debug, Default)]
struct Report {
    problems: Vec<Problem>,
    degraded: Vec<String>,
    /// The bundle's CRI role, read from its annotations first.
    cri: Option<Cri>,
    /// The shim's host.
    host: Host,
    /// The task's process runs as uid 0.
    uid0: bool,
    /// The namespace types ("network", "ipc", "uts") a pod's container
    /// shares with the pod's sandbox ([`Host::pod`]).
    joined: BTreeSet<String>,
    /// A network namespace path that is neither the host's nor a pod
    /// sandbox's (the CRI plugin's CNI namespace for a pod's sandbox):
    /// asked of the daemon as mode NAMESPACE, which it refuses unless its
    /// operator allows the directory (the shim keeps no copy of that
    /// policy).
    given_netns: Option<String>,
}

impl Report {
    fn refuse(&mut self, field: impl Into<String>, reason: impl Into<String>) {
        self.problems.push(Problem {
            field: field.into(),
            reason: reason.into(),
        });
    }
    fn degrade(&mut self, field: &str, what: impl std::fmt::Display) {
        self.degraded.push(format!("{field}: {what}"));
    }
}

/// A JSON object whose keys must each be taken; [`Obj::finish`] refuses the
/// rest. A `null` value counts as absent.
struct Obj<'a> {
    path: String,
    map: Option<&'a Map<String, Value>>,
    taken: BTreeSet<&'static str>,
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

impl<'a> Obj<'a> {
    fn new(path: &str, v: Option<&'a Value>, r: &mut Report) -> Self {
        let map = match v {
            None | Some(Value::Null) => None,
            Some(Value::Object(m)) => Some(m),
            Some(_) => {
                r.refuse(path, "must be an object");
                None
            }
        };
        Self {
            path: path.to_owned(),
            map,
            taken: BTreeSet::new(),
        }
    }
    fn present(&self) -> bool {
        self.map.is_some()
    }
    fn field(&self, key: &str) -> String {
        join(&self.path, key)
    }
    fn take(&mut self, key: &'static str) -> Option<&'a Value> {
        self.taken.insert(key);
        self.map.and_then(|m| m.get(key)).filter(|v| !v.is_null())
    }
    /// Takes a key that sandboxd cannot honour: refused when set to
    /// anything but an empty value.
    fn refuse_if_set(&mut self, key: &'static str, why: &str, r: &mut Report) {
        if let Some(v) = self.take(key) {
            if !is_empty(v) {
                let mut shown = v.to_string();
                if shown.len() > 80 {
                    shown.truncate(77);
                    shown.push_str("...");
                }
                r.refuse(self.field(key), format!("{why} (asked: {shown})"));
            }
        }
    }
    fn finish(self, r: &mut Report) {
        if let Some(m) = self.map {
            for k in m.keys() {
                if !self.taken.contains(k.as_str()) {
                    r.refuse(
                        join(&self.path, k),
                        "not supported by sandboxd (unknown to this shim, so not ignored)",
                    );
                }
            }
        }
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        Value::Number(n) => n.as_u64() == Some(0),
    }
}

fn string(v: Option<&Value>, field: &str, r: &mut Report) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        _ => {
            r.refuse(field, "must be a string");
            None
        }
    }
}

fn uint(v: Option<&Value>, field: &str, r: &mut Report) -> Option<u64> {
    let v = v?;
    match v.as_u64() {
        Some(n) => Some(n),
        None => {
            r.refuse(field, format!("must be a non-negative integer, not {v}"));
            None
        }
    }
}

fn int(v: Option<&Value>, field: &str, r: &mut Report) -> Option<i64> {
    let v = v?;
    match v.as_i64() {
        Some(n) => Some(n),
        None => {
            r.refuse(field, format!("must be an integer, not {v}"));
            None
        }
    }
}

fn strings(v: Option<&Value>, field: &str, r: &mut Report) -> Vec<String> {
    match v {
        None => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .enumerate()
            .filter_map(|(i, e)| string(Some(e), &format!("{field}[{i}]"), r))
            .collect(),
        Some(_) => {
            r.refuse(field, "must be an array of strings");
            Vec::new()
        }
    }
}

fn array<'a>(v: Option<&'a Value>, field: &str, r: &mut Report) -> &'a [Value] {
    match v {
        None => &[],
        Some(Value::Array(a)) => a,
        Some(_) => {
            r.refuse(field, "must be an array");
            &[]
        }
    }
}

fn required(value: u64) -> Option<pb::Limit> {
    Some(pb::Limit {
        value,
        requirement: pb::Requirement::Required as i32,
    })
}

/// Maps a bundle's `config.json` (already parsed) onto a sandbox spec.
/// `bundle` is the bundle directory (a relative `root.path` is below it);
/// `backend` is the daemon's; `host` what the shim found of its host.
pub fn map_bundle(
    config: &Value,
    bundle: &Path,
    backend: Backend,
    host: &Host,
) -> Result<Mapped, MapError> {
    let mut r = Report {
        host: host.clone(),
        ..Default::default()
    };
    let mut top = Obj::new("", Some(config), &mut r);
    if !top.present() {
        return Err(MapError(r.problems));
    }
    let mut spec = pb::SandboxSpec {
        mode: pb::SandboxMode::Idle as i32,
        ..Default::default()
    };
    // Informational: the spec version this document follows.
    let _ = string(top.take("ociVersion"), "ociVersion", &mut r);
    // Annotations are metadata for runtimes and tools; they ask nothing of
    // the isolation, so they are accepted; the CRI plugin's say which pod
    // the bundle belongs to, which some rules below depend on.
    r.cri = map_annotations(top.take("annotations"), &mut r);
    if let Some(cri) = &r.cri {
        spec.labels
            .insert(ANNOTATION_SANDBOX_ID.into(), cri.sandbox_id.clone());
        let role = match cri.role {
            CriRole::Sandbox => "sandbox",
            CriRole::Container => "container",
        };
        spec.labels
            .insert(ANNOTATION_CONTAINER_TYPE.into(), role.into());
    }
    map_root(top.take("root"), bundle, &mut spec, &mut r);
    let process = match top.take("process") {
        Some(p) => map_process(p, "process", backend, &mut r),
        None => {
            r.refuse("process", "a task needs a process");
            None
        }
    };
    if let Some(h) = string(top.take("hostname"), "hostname", &mut r) {
        spec.hostname = h;
    }
    top.refuse_if_set(
        "domainname",
        "sandboxd does not set an NIS domain name",
        &mut r,
    );
    top.refuse_if_set("hooks", "sandboxd does not run OCI hooks", &mut r);
    for other in ["solaris", "windows", "vm", "zos", "freebsd"] {
        top.refuse_if_set(
            other,
            "this platform section is not supported by sandboxd",
            &mut r,
        );
    }
    map_mounts(top.take("mounts"), &mut spec, &mut r);
    match top.take("linux") {
        Some(l) => map_linux(l, &mut spec, &mut r),
        None => {
            // No Linux section: nothing asked of namespaces or cgroups;
            // the backend's defaults (its report says which) apply.
        }
    }
    top.finish(&mut r);
    let process = match process {
        Some(p) if r.problems.is_empty() => p,
        _ => return Err(MapError(r.problems)),
    };
    if !r.problems.is_empty() {
        return Err(MapError(r.problems));
    }
    let mut mapped = Mapped {
        spec,
        process,
        degraded: r.degraded,
        cri: r.cri,
    };
    apply_rlimits(&mut mapped);
    Ok(mapped)
}

/// The CRI plugin's annotations: a pod's bundle has both a container type
/// and a sandbox id; other annotations are metadata.
fn map_annotations(v: Option<&Value>, r: &mut Report) -> Option<Cri> {
    let a = match v {
        None => return None,
        Some(Value::Object(a)) => a,
        Some(_) => {
            r.refuse("annotations", "must be an object");
            return None;
        }
    };
    let get = |k: &str, r: &mut Report| match a.get(k) {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            r.refuse(format!("annotations.{k}"), "must be a string");
            None
        }
    };
    let kind = get(ANNOTATION_CONTAINER_TYPE, r);
    let id = get(ANNOTATION_SANDBOX_ID, r);
    let role = match kind.as_deref() {
        None => None,
        Some("sandbox") => Some(CriRole::Sandbox),
        Some("container") => Some(CriRole::Container),
        Some(other) => {
            r.refuse(
                format!("annotations.{ANNOTATION_CONTAINER_TYPE}"),
                format!("{other:?} is neither \"sandbox\" nor \"container\""),
            );
            None
        }
    };
    match (role, id) {
        (Some(role), Some(sandbox_id)) if !sandbox_id.is_empty() => Some(Cri { role, sandbox_id }),
        (Some(_), _) => {
            r.refuse(
                format!("annotations.{ANNOTATION_SANDBOX_ID}"),
                "a CRI bundle must name its pod",
            );
            None
        }
        (None, _) => None,
    }
}

/// Maps an exec's OCI process (containerd's `ExecProcessRequest.spec`).
pub fn map_exec_process(
    process: &Value,
    backend: Backend,
) -> Result<(Process, Vec<String>), MapError> {
    let mut r = Report::default();
    let p = map_process(process, "process", backend, &mut r);
    match p {
        Some(p) if r.problems.is_empty() => Ok((p, r.degraded)),
        _ => Err(MapError(r.problems)),
    }
}

/// A normal path: no `.`/`..` components (the daemon refuses them too).
fn normal(p: &Path) -> bool {
    p.components()
        .all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
}

fn map_root(v: Option<&Value>, bundle: &Path, spec: &mut pb::SandboxSpec, r: &mut Report) {
    let mut root = Obj::new("root", v, r);
    if !root.present() {
        r.refuse("root", "a bundle needs a root filesystem");
        return;
    }
    if let Some(path) = string(root.take("path"), "root.path", r) {
        let p = PathBuf::from(&path);
        let full = if p.is_absolute() { p } else { bundle.join(p) };
        if path.is_empty() || !normal(&full) || !full.is_absolute() {
            r.refuse(
                "root.path",
                format!("{path:?} must name a directory without '.' or '..' components"),
            );
        } else {
            spec.rootfs = full.to_string_lossy().into_owned();
        }
    } else {
        r.refuse("root.path", "missing");
    }
    if let Some(ro) = root.take("readonly") {
        match ro {
            Value::Bool(b) => spec.readonly_rootfs = *b,
            _ => r.refuse("root.readonly", "must be a boolean"),
        }
    }
    root.finish(r);
}

fn map_process(v: &Value, path: &str, backend: Backend, r: &mut Report) -> Option<Process> {
    let mut o = Obj::new(path, Some(v), r);
    if !o.present() {
        return None;
    }
    let mut spec = pb::ProcessSpec::default();
    let f = |k: &str| join(path, k);
    spec.argv = strings(o.take("args"), &f("args"), r);
    if spec.argv.is_empty() {
        r.refuse(f("args"), "must not be empty");
    }
    o.refuse_if_set("commandLine", "Windows only; give args instead", r);
    spec.env = strings(o.take("env"), &f("env"), r);
    if let Some(cwd) = string(o.take("cwd"), &f("cwd"), r) {
        spec.cwd = cwd;
    }
    if let Some(t) = o.take("terminal") {
        match t {
            Value::Bool(b) => spec.tty = *b,
            _ => r.refuse(f("terminal"), "must be a boolean"),
        }
    }
    let mut size = None;
    {
        let mut cs = Obj::new(&f("consoleSize"), o.take("consoleSize"), r);
        if cs.present() {
            let h = uint(cs.take("height"), &f("consoleSize.height"), r);
            let w = uint(cs.take("width"), &f("consoleSize.width"), r);
            size = Some(pb::TerminalSize {
                rows: h.unwrap_or(0).min(u64::from(u16::MAX)) as u32,
                cols: w.unwrap_or(0).min(u64::from(u16::MAX)) as u32,
            });
        }
        cs.finish(r);
    }
    let uid = map_user(o.take("user"), &f("user"), &mut spec, r);
    r.uid0 = uid == 0;
    map_capabilities(o.take("capabilities"), &f("capabilities"), uid, backend, r);
    match o.take("noNewPrivileges") {
        Some(Value::Bool(true)) => {}
        Some(Value::Bool(false)) | None => r.degrade(
            &f("noNewPrivileges"),
            "sandboxd always sets no_new_privs (setuid binaries and file capabilities do not raise privileges)",
        ),
        Some(_) => r.refuse(f("noNewPrivileges"), "must be a boolean"),
    }
    let mut rlimits = Vec::new();
    for (i, rl) in array(o.take("rlimits"), &f("rlimits"), r)
        .iter()
        .enumerate()
    {
        map_rlimit(rl, &format!("{}[{i}]", f("rlimits")), r, &mut rlimits);
    }
    o.refuse_if_set(
        "apparmorProfile",
        "sandboxd applies its own confinement, not an AppArmor profile",
        r,
    );
    o.refuse_if_set("selinuxLabel", "sandboxd does not set SELinux labels", r);
    // A lower OOM score asks for protection (a privilege, withheld: the
    // processes keep the one they inherit from the daemon, 0 unless its
    // service sets one); a higher one asks to be killed first (a
    // restriction: the shim sets it, see Process::oom_score_adj).
    let oom = f("oomScoreAdj");
    let mut oom_score_adj = 0;
    match int(o.take("oomScoreAdj"), &oom, r) {
        None | Some(0) => {}
        Some(n) if n < 0 => r.degrade(
            &oom,
            format!("{n} is not set: sandboxd does not lower OOM scores (the processes keep the daemon's)"),
        ),
        Some(n) if n <= 1000 => oom_score_adj = n,
        Some(n) => r.refuse(oom, format!("{n} is above the kernel's 1000")),
    }
    o.refuse_if_set("scheduler", "sandboxd does not set a scheduling policy", r);
    o.refuse_if_set("ioPriority", "sandboxd does not set an I/O priority", r);
    o.refuse_if_set("execCPUAffinity", "sandboxd does not pin CPUs", r);
    o.finish(r);
    Some(Process {
        spec,
        size,
        rlimits,
        oom_score_adj,
    })
}

/// The uid the process runs as (OCI's default is 0).
fn map_user(v: Option<&Value>, path: &str, spec: &mut pb::ProcessSpec, r: &mut Report) -> u64 {
    let mut u = Obj::new(path, v, r);
    let uid = uint(u.take("uid"), &join(path, "uid"), r).unwrap_or(0);
    let gid = uint(u.take("gid"), &join(path, "gid"), r).unwrap_or(0);
    let mut gids = Vec::new();
    for (i, g) in array(u.take("additionalGids"), &join(path, "additionalGids"), r)
        .iter()
        .enumerate()
    {
        if let Some(g) = uint(Some(g), &format!("{path}.additionalGids[{i}]"), r) {
            gids.push(g);
        }
    }
    let mut id = |n: u64, field: String| -> u32 {
        u32::try_from(n).unwrap_or_else(|_| {
            r.refuse(field, format!("{n} is not a 32-bit id"));
            0
        })
    };
    spec.user = Some(pb::User {
        uid: Some(id(uid, join(path, "uid"))),
        gid: Some(id(gid, join(path, "gid"))),
        additional_gids: gids
            .iter()
            .enumerate()
            .map(|(i, g)| id(*g, format!("{path}.additionalGids[{i}]")))
            .collect(),
    });
    u.refuse_if_set("umask", "sandboxd does not set a umask", r);
    u.refuse_if_set("username", "Windows only; give uid and gid", r);
    u.finish(r);
    uid
}

/// Capabilities: a set smaller than the backend's (for uid 0) is a
/// restriction sandboxd cannot give (refused); a larger one is a privilege
/// it withholds (degraded). A non-root process gets none on any backend.
fn map_capabilities(v: Option<&Value>, path: &str, uid: u64, backend: Backend, r: &mut Report) {
    let mut c = Obj::new(path, v, r);
    if !c.present() {
        // OCI: no capabilities object means none at all.
        if uid == 0 && !backend.granted_capabilities().is_empty() {
            r.refuse(
                path,
                format!(
                    "absent (no capabilities), but a uid-0 process keeps {} on this backend",
                    backend.granted_capabilities().join(" ")
                ),
            );
        }
        return;
    }
    let granted: BTreeSet<&str> = if uid == 0 {
        backend.granted_capabilities().iter().copied().collect()
    } else {
        BTreeSet::new()
    };
    for set in [
        "bounding",
        "effective",
        "permitted",
        "inheritable",
        "ambient",
    ] {
        let field = join(path, set);
        let asked: BTreeSet<String> = strings(c.take(set), &field, r).into_iter().collect();
        // sandboxd clears the inheritable and ambient sets: anything asked
        // there is withheld. The bounding, effective and permitted sets of a
        // uid-0 payload are the backend's set.
        let given: BTreeSet<&str> = if matches!(set, "inheritable" | "ambient") {
            BTreeSet::new()
        } else {
            granted.clone()
        };
        let extra: Vec<&str> = given
            .iter()
            .filter(|g| !asked.contains(**g))
            .copied()
            .collect();
        if !extra.is_empty() {
            r.refuse(
                &field,
                format!(
                    "sandboxd would give {} as well, which this set leaves out",
                    extra.join(" ")
                ),
            );
        }
        let withheld: Vec<&str> = asked
            .iter()
            .map(String::as_str)
            .filter(|a| !given.contains(a))
            .collect();
        if !withheld.is_empty() {
            r.degrade(&field, format!("not given: {}", withheld.join(" ")));
        }
    }
    c.finish(r);
}

fn map_rlimit(v: &Value, path: &str, r: &mut Report, out: &mut Vec<(String, u64)>) {
    let mut o = Obj::new(path, Some(v), r);
    let kind = string(o.take("type"), &join(path, "type"), r);
    let hard = uint(o.take("hard"), &join(path, "hard"), r);
    let soft = uint(o.take("soft"), &join(path, "soft"), r);
    o.finish(r);
    let (Some(kind), Some(hard), Some(soft)) = (kind, hard, soft) else {
        return;
    };
    if soft != hard {
        r.refuse(
            path,
            format!("sandboxd sets one value as soft and hard limit; soft {soft} differs from hard {hard}"),
        );
        return;
    }
    match kind.as_str() {
        "RLIMIT_NOFILE" | "RLIMIT_AS" => out.push((kind, hard)),
        other => r.refuse(
            join(path, "type"),
            format!("{other} is not a limit sandboxd sets (RLIMIT_NOFILE and RLIMIT_AS are)"),
        ),
    }
}

/// The task's rlimits become the sandbox's limits.
fn apply_rlimits(m: &mut Mapped) {
    for (kind, value) in std::mem::take(&mut m.process.rlimits) {
        let limits = m.spec.limits.get_or_insert_with(Default::default);
        match kind.as_str() {
            "RLIMIT_NOFILE" => limits.open_files = required(value),
            "RLIMIT_AS" => limits.address_space_bytes = required(value),
            _ => {}
        }
    }
}

/// An exec's rlimits must equal its sandbox's (`limits`): sandboxd gives
/// every process of a sandbox the same.
pub fn check_exec_rlimits(p: &mut Process, limits: Option<&pb::Limits>) -> Result<(), MapError> {
    let mut problems = Vec::new();
    for (kind, value) in std::mem::take(&mut p.rlimits) {
        let have = limits.and_then(|l| match kind.as_str() {
            "RLIMIT_NOFILE" => l.open_files.map(|x| x.value),
            "RLIMIT_AS" => l.address_space_bytes.map(|x| x.value),
            _ => None,
        });
        if have != Some(value) {
            problems.push(Problem {
                field: "process.rlimits".into(),
                reason: format!(
                    "{kind}={value}, but every process of this sandbox has {}",
                    have.map_or("no such limit".to_owned(), |h| h.to_string())
                ),
            });
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(MapError(problems))
    }
}

/// Mounts sandboxd provides itself (equivalent), does not provide (the
/// container gets less: degraded), or maps to a client bind.
fn map_mounts(v: Option<&Value>, spec: &mut pb::SandboxSpec, r: &mut Report) {
    for (i, m) in array(v, "mounts", r).iter().enumerate() {
        let path = format!("mounts[{i}]");
        let mut o = Obj::new(&path, Some(m), r);
        let dest = string(o.take("destination"), &join(&path, "destination"), r);
        let kind = string(o.take("type"), &join(&path, "type"), r).unwrap_or_default();
        let source = string(o.take("source"), &join(&path, "source"), r).unwrap_or_default();
        let options = strings(o.take("options"), &join(&path, "options"), r);
        o.refuse_if_set("uidMappings", "sandboxd does not make id-mapped mounts", r);
        o.refuse_if_set("gidMappings", "sandboxd does not make id-mapped mounts", r);
        o.finish(r);
        let Some(dest) = dest else {
            r.refuse(join(&path, "destination"), "missing");
            continue;
        };
        let is_bind = kind == "bind" || options.iter().any(|o| o == "bind" || o == "rbind");
        if is_bind && dest == "/dev/shm" && r.cri.is_some() {
            // The CRI plugin binds the pod's /dev/shm (a tmpfs it made)
            // into every container of the pod. sandboxd mounts its own
            // /dev/shm in each sandbox and binds nothing under /dev: each
            // container gets its own, as with its own ipc namespace
            // (linux.namespaces' degradation says the same).
            r.degrade(
                &path,
                format!("the pod's /dev/shm ({source}) is not shared: the container gets its own"),
            );
            continue;
        }
        let pause = r.cri.as_ref().is_some_and(|c| c.role == CriRole::Sandbox);
        if is_bind
            && pause
            && ["/etc/resolv.conf", "/etc/hosts", "/etc/hostname"].contains(&dest.as_str())
        {
            // The pod's sandbox container runs only pause, which reads no
            // file; its root is read-only, where sandboxd cannot make the
            // mount point. The pod's containers get these files.
            r.degrade(
                &path,
                format!("{dest} is not bound into the pod's sandbox container (it runs only pause; the pod's containers get it)"),
            );
            continue;
        }
        if is_bind {
            map_bind(&path, &dest, &source, &options, spec, r);
            let pod_file =
                ["/etc/resolv.conf", "/etc/hosts", "/etc/hostname"].contains(&dest.as_str());
            if r.cri.is_some() && pod_file && r.uid0 {
                if let Some(m) = spec.mounts.last_mut().filter(|m| !m.read_only) {
                    // The CRI plugin's per-pod files, writable for the
                    // container. A root process without a user namespace is
                    // root on the host, and sandboxd refuses it a writable
                    // host bind (it could leave setuid-root files there):
                    // the container gets the file read-only.
                    m.read_only = true;
                    r.degrade(
                        &path,
                        format!("{dest} is bound read-only (a uid-0 container may not write a host file)"),
                    );
                }
            }
            continue;
        }
        match (kind.as_str(), dest.as_str()) {
            // sandboxd builds its own /dev (null, zero, full, random,
            // urandom, tty, a devpts for terminals) and /dev/shm.
            ("tmpfs", "/dev") | ("devpts", "/dev/pts") => {}
            ("tmpfs", "/dev/shm") | ("shm", "/dev/shm") => {
                if let Some(size) = options.iter().find_map(|o| o.strip_prefix("size=")) {
                    match parse_size(size) {
                        Some(bytes) => {
                            spec.limits.get_or_insert_with(Default::default).shm_bytes = bytes;
                        }
                        None => r.refuse(
                            join(&path, "options"),
                            format!("size={size} is not a size sandboxd understands"),
                        ),
                    }
                }
            }
            // Not mounted by sandboxd at all: the container sees no /proc,
            // /sys or POSIX message-queue filesystem (the image's empty
            // directories, if any).
            ("proc", "/proc")
            | ("sysfs", "/sys")
            | ("cgroup", "/sys/fs/cgroup")
            | ("cgroup2", "/sys/fs/cgroup")
            | ("mqueue", "/dev/mqueue") => {
                r.degrade(
                    &path,
                    format!("{kind} at {dest} is not mounted by sandboxd"),
                );
            }
            // A scratch tmpfs elsewhere (e.g. /run): sandboxd's writable
            // layer already holds it, bounded by the disk limit.
            ("tmpfs", "/run") => {
                r.degrade(
                    &path,
                    "tmpfs at /run is not mounted; /run is the image's, in the sandbox's writable layer",
                );
            }
            _ => r.refuse(
                &path,
                format!(
                    "a {kind:?} mount at {dest} is not one sandboxd can make (bind mounts are)"
                ),
            ),
        }
    }
}

fn map_bind(
    path: &str,
    dest: &str,
    source: &str,
    options: &[String],
    spec: &mut pb::SandboxSpec,
    r: &mut Report,
) {
    let mut read_only = false;
    for opt in options {
        match opt.as_str() {
            "bind" | "rbind" | "rw" | "rprivate" | "private" => {}
            // sandboxd makes every client bind nosuid (and nodev); asking
            // for them is asking for what it gives.
            "nosuid" | "nodev" => {}
            "ro" => read_only = true,
            other => r.refuse(
                join(path, "options"),
                format!("{other:?} is not a bind option sandboxd honours (ro, rw, nosuid, nodev, rbind, rprivate are)"),
            ),
        }
    }
    spec.mounts.push(pb::Mount {
        source: source.to_owned(),
        target: dest.to_owned(),
        read_only,
    });
}

/// `65536k`, `64m`, `1g` or plain bytes.
fn parse_size(s: &str) -> Option<u64> {
    let (digits, mult) = match s.chars().last()? {
        'k' | 'K' => (&s[..s.len() - 1], 1u64 << 10),
        'm' | 'M' => (&s[..s.len() - 1], 1 << 20),
        'g' | 'G' => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    digits.parse::<u64>().ok()?.checked_mul(mult)
}

fn requirement(asked: bool) -> i32 {
    if asked {
        pb::Requirement::Required as i32
    } else {
        pb::Requirement::Disabled as i32
    }
}

fn map_linux(v: &Value, spec: &mut pb::SandboxSpec, r: &mut Report) {
    let mut l = Obj::new("linux", Some(v), r);
    // Namespaces: a listed one is REQUIRED; an absent one means "share the
    // host's", which sandboxd gives as DISABLED (network: mode HOST).
    let mut listed: BTreeSet<String> = BTreeSet::new();
    for (i, ns) in array(l.take("namespaces"), "linux.namespaces", r)
        .iter()
        .enumerate()
    {
        let path = format!("linux.namespaces[{i}]");
        let mut o = Obj::new(&path, Some(ns), r);
        let kind = string(o.take("type"), &join(&path, "type"), r).unwrap_or_default();
        let cri_container = r.cri.as_ref().is_some_and(|c| c.role == CriRole::Container);
        let mut shares_the_hosts = false;
        match o.take("path") {
            None => {}
            Some(p) if is_empty(p) => {}
            // The host's own namespace: the same as not listing it.
            Some(Value::String(p)) if r.host.own_namespaces.contains(p) => {
                shares_the_hosts = true;
            }
            // A pod's container joining the pod sandbox's network, ipc,
            // uts or (shareProcessNamespace) pid namespace (the pause
            // process's, which are its pid 1's): a child sandbox of it.
            Some(Value::String(p))
                if cri_container
                    && ["network", "ipc", "uts", "pid"].contains(&kind.as_str())
                    && r.host.pod.as_ref().is_some_and(|pod| pod.namespaces.contains(p)) =>
            {
                r.joined.insert(kind.clone());
                shares_the_hosts = true; // not its own either
            }
            // A pod's container joining an ipc, uts or pid namespace the
            // shim could not tie to the pod's sandbox: the container gets
            // its own, which isolates more and shares less (a privilege
            // withheld).
            Some(p) if cri_container && ["ipc", "uts", "pid"].contains(&kind.as_str()) => {
                r.degrade(
                    &join(&path, "path"),
                    format!("{kind} namespace {p} (the pod's) is not joined: the container gets its own; the pod's containers do not share it"),
                );
            }
            // Another network namespace (a pod's sandbox: the CRI
            // plugin's CNI one): sandboxd's mode NAMESPACE, which the
            // daemon accepts only below a directory its operator allows.
            Some(Value::String(p)) if kind == "network" => r.given_netns = Some(p.clone()),
            Some(p) if kind == "network" => r.refuse(
                join(&path, "path"),
                format!("not a path (asked: {p})"),
            ),
            Some(p) => r.refuse(
                join(&path, "path"),
                format!("sandboxd makes every namespace itself and cannot join an existing one (asked: {p})"),
            ),
        }
        o.finish(r);
        if ![
            "pid", "network", "mount", "ipc", "uts", "user", "cgroup", "time",
        ]
        .contains(&kind.as_str())
        {
            r.refuse(join(&path, "type"), format!("unknown namespace {kind:?}"));
        } else if kind == "time" {
            r.refuse(
                join(&path, "type"),
                "sandboxd does not make time namespaces",
            );
        }
        if !shares_the_hosts {
            listed.insert(kind);
        }
    }
    let has = |k: &str| listed.contains(k);
    if !has("mount") {
        r.refuse(
            "linux.namespaces",
            "no mount namespace: sandboxd always gives a sandbox its own root and cannot share the host's mounts",
        );
    }
    let iso = spec.isolation.get_or_insert_with(Default::default);
    iso.filesystem = pb::Requirement::Required as i32;
    iso.pid = requirement(has("pid"));
    iso.ipc = requirement(has("ipc"));
    let joined_uts = r.joined.contains("uts");
    if has("uts") {
        iso.hostname = pb::Requirement::Required as i32;
    } else if joined_uts {
        // The pod sandbox's name (the CRI plugin gives the pause container
        // the pod's hostname); sandboxd wants it unset for a child.
        spec.hostname.clear();
        iso.hostname = pb::Requirement::Unspecified as i32;
    } else if spec.hostname.is_empty() || spec.hostname == r.host.name {
        // Sharing the host's uts namespace, whose name this is (the CRI
        // plugin names a host-network pod after the host).
        spec.hostname.clear();
        iso.hostname = pb::Requirement::Disabled as i32;
    } else {
        r.refuse("hostname", "set without a uts namespace");
    }
    if has("user") {
        iso.user = pb::Requirement::Required as i32;
    }
    // Shared with the pod's sandbox: the parent's, neither own nor the
    // host's (sandboxd wants these unset for a child).
    let joined = |k: &str| r.joined.contains(k);
    if joined("ipc") {
        iso.ipc = pb::Requirement::Unspecified as i32;
    }
    if joined("pid") {
        iso.pid = pb::Requirement::Unspecified as i32;
    }

    if has("cgroup") {
        iso.cgroup = pb::Requirement::Required as i32;
    }
    let given = r.given_netns.clone();
    spec.network = (!joined("network")).then(|| pb::NetworkPolicy {
        // A given namespace (CNI's): run in it. Otherwise a new network
        // namespace with nothing configured in it: only a loopback
        // interface.
        mode: if given.is_some() {
            pb::NetworkMode::Namespace as i32
        } else if has("network") {
            pb::NetworkMode::Loopback as i32
        } else {
            pb::NetworkMode::Host as i32
        },
        requirement: pb::Requirement::Required as i32,
        namespace_path: given.unwrap_or_default(),
        ..Default::default()
    });
    if let Some(pod) = r.host.pod.as_ref().filter(|_| !r.joined.is_empty()) {
        spec.join = Some(pb::SandboxJoin {
            sandbox_id: pod.sandbox_id.clone(),
            network: joined("network"),
            ipc: joined("ipc"),
            uts: joined("uts"),
            pid: joined("pid"),
        });
    }
    for key in ["uidMappings", "gidMappings"] {
        l.refuse_if_set(
            key,
            "sandboxd chooses the user namespace's id mapping itself",
            r,
        );
    }
    if let Some(res) = l.take("resources") {
        map_resources(res, spec, r);
    }
    // sandboxd places the sandbox in its own cgroup (under "sandboxd/");
    // containerd's chosen path is not used, and the shim reports the
    // sandbox's usage for Stats itself.
    let _ = string(l.take("cgroupsPath"), "linux.cgroupsPath", r);
    for key in ["maskedPaths", "readonlyPaths"] {
        let field = join("linux", key);
        for (i, p) in strings(l.take(key), &field, r).iter().enumerate() {
            // /proc and /sys are not mounted at all: every path under them
            // is more than masked.
            let covered = ["/proc", "/sys"]
                .iter()
                .any(|root| Path::new(p).starts_with(root));
            if !covered {
                r.refuse(
                    format!("{field}[{i}]"),
                    format!("{p:?}: sandboxd masks nothing outside /proc and /sys (which it does not mount)"),
                );
            }
        }
    }
    for i in 0..array(l.take("devices"), "linux.devices", r).len() {
        r.refuse(
            format!("linux.devices[{i}]"),
            "sandboxd creates only its own minimal /dev (null, zero, full, random, urandom, tty)",
        );
    }
    l.refuse_if_set(
        "seccomp",
        "sandboxd applies its own seccomp filter, not a given profile",
        r,
    );
    l.refuse_if_set("sysctl", "sandboxd does not set sysctls", r);
    l.refuse_if_set("rootfsPropagation", "sandboxd's root is always private", r);
    l.refuse_if_set("mountLabel", "sandboxd does not set SELinux labels", r);
    l.refuse_if_set("intelRdt", "sandboxd does not use Intel RDT", r);
    l.refuse_if_set(
        "personality",
        "sandboxd does not set an execution domain",
        r,
    );
    l.refuse_if_set("timeOffsets", "sandboxd does not make time namespaces", r);
    l.finish(r);
}

fn map_resources(v: &Value, spec: &mut pb::SandboxSpec, r: &mut Report) {
    let mut o = Obj::new("linux.resources", Some(v), r);
    // Device cgroup rules: "deny all" plus allowances for the devices
    // sandboxd's /dev has anyway is what sandboxd gives; anything else is
    // an access it does not give (a device node it does not create).
    for (i, d) in array(o.take("devices"), "linux.resources.devices", r)
        .iter()
        .enumerate()
    {
        let path = format!("linux.resources.devices[{i}]");
        let mut dv = Obj::new(&path, Some(d), r);
        let allow = matches!(dv.take("allow"), Some(Value::Bool(true)));
        let kind = string(dv.take("type"), &join(&path, "type"), r).unwrap_or_else(|| "a".into());
        let major = int(dv.take("major"), &join(&path, "major"), r);
        let minor = int(dv.take("minor"), &join(&path, "minor"), r);
        let _ = string(dv.take("access"), &join(&path, "access"), r);
        dv.finish(r);
        if allow && !standard_device(&kind, major, minor) {
            r.refuse(
                path,
                format!(
                    "allows device {kind} {major:?}:{minor:?}, which sandboxd's /dev does not have"
                ),
            );
        }
    }
    let limits = spec.limits.get_or_insert_with(Default::default);
    {
        let mut m = Obj::new("linux.resources.memory", o.take("memory"), r);
        let limit = int(m.take("limit"), "linux.resources.memory.limit", r);
        if let Some(limit) = limit {
            // -1: unlimited.
            if limit > 0 {
                limits.memory_bytes = required(limit as u64);
            }
        }
        // memory + swap equal to the memory limit is "no swap" (what the
        // CRI plugin writes with a limit): sandboxd's own rule for a
        // limited sandbox (memory.swap.max 0 where the host accounts swap).
        let swap = m.take("swap");
        if swap.is_some_and(|v| !is_empty(v) && v.as_i64() != limit.filter(|l| *l > 0)) {
            m.refuse_if_set(
                "swap",
                "sandboxd caps swap itself (no swap beyond the memory limit where it can)",
                r,
            );
        }
        for (key, why) in [
            ("reservation", "sandboxd sets a hard memory limit only"),
            ("kernel", "sandboxd does not set a kernel memory limit"),
            (
                "kernelTCP",
                "sandboxd does not set a kernel TCP memory limit",
            ),
            ("swappiness", "sandboxd does not set swappiness"),
            ("disableOOMKiller", "sandboxd keeps the OOM killer on"),
            (
                "useHierarchy",
                "sandboxd does not set memory hierarchy accounting",
            ),
            ("checkBeforeUpdate", "sandboxd does not update limits"),
        ] {
            m.refuse_if_set(key, why, r);
        }
        m.finish(r);
    }
    {
        let mut c = Obj::new("linux.resources.cpu", o.take("cpu"), r);
        let quota = int(c.take("quota"), "linux.resources.cpu.quota", r);
        let period = uint(c.take("period"), "linux.resources.cpu.period", r);
        match (quota, period) {
            (Some(q), Some(p)) if q > 0 && p > 0 => {
                limits.cpu_millis = required((q as u64).saturating_mul(1000) / p);
            }
            (Some(q), _) if q > 0 => {
                limits.cpu_millis = required((q as u64).saturating_mul(1000) / 100_000);
            }
            _ => {}
        }
        // OCI's shares are cgroup v1's scale, sandboxd's weight v2's:
        // converted as runc and crun do on cgroup v2 (0: unset). The pod's
        // sandbox container gets its weight too (kubelet gives it the
        // minimum, 2), as with runc.
        match uint(c.take("shares"), "linux.resources.cpu.shares", r) {
            None | Some(0) => {}
            Some(s) => match sandboxd_core::spec::cpu_weight_of_shares(s) {
                Some(w) => limits.cpu_weight = required(w),
                None => r.refuse(
                    "linux.resources.cpu.shares",
                    format!(
                        "{s} is outside the kernel's range {}..={}",
                        sandboxd_core::spec::MIN_CPU_SHARES,
                        sandboxd_core::spec::MAX_CPU_SHARES
                    ),
                ),
            },
        }
        for (key, why) in [
            (
                "realtimeRuntime",
                "sandboxd does not give realtime CPU time",
            ),
            ("realtimePeriod", "sandboxd does not give realtime CPU time"),
            ("cpus", "sandboxd does not pin CPUs"),
            ("mems", "sandboxd does not pin memory nodes"),
            ("idle", "sandboxd does not set SCHED_IDLE groups"),
            ("burst", "sandboxd does not set a CPU burst"),
        ] {
            c.refuse_if_set(key, why, r);
        }
        c.finish(r);
    }
    {
        let mut p = Obj::new("linux.resources.pids", o.take("pids"), r);
        if let Some(n) = int(p.take("limit"), "linux.resources.pids.limit", r) {
            if n > 0 {
                limits.pids = required(n as u64);
            }
        }
        p.finish(r);
    }
    for (key, why) in [
        (
            "blockIO",
            "sandboxd does not set block I/O weights or throttles",
        ),
        ("hugepageLimits", "sandboxd does not set hugepage limits"),
        (
            "network",
            "sandboxd does not set network class ids or priorities",
        ),
        ("rdma", "sandboxd does not set RDMA limits"),
        ("unified", "sandboxd does not set raw cgroup v2 files"),
    ] {
        o.refuse_if_set(key, why, r);
    }
    o.finish(r);
}

/// The character devices sandboxd's /dev has (or serves through its own
/// terminal handling): null, zero, full, random, urandom, tty, console,
/// ptmx and the pty slaves.
fn standard_device(kind: &str, major: Option<i64>, minor: Option<i64>) -> bool {
    if kind != "c" {
        return false;
    }
    matches!(
        (major, minor),
        (Some(1), Some(3 | 5 | 7 | 8 | 9)) | (Some(5), Some(0..=2)) | (Some(136), None)
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use serde_json::json;

    use super::*;

    const DOCKER_CAPS: [&str; 14] = [
        "CAP_CHOWN",
        "CAP_DAC_OVERRIDE",
        "CAP_FSETID",
        "CAP_FOWNER",
        "CAP_MKNOD",
        "CAP_NET_RAW",
        "CAP_SETGID",
        "CAP_SETUID",
        "CAP_SETFCAP",
        "CAP_SETPCAP",
        "CAP_NET_BIND_SERVICE",
        "CAP_SYS_CHROOT",
        "CAP_KILL",
        "CAP_AUDIT_WRITE",
    ];

    /// What containerd 1.6's `ctr run` writes (oci.WithDefaultSpec plus
    /// the image config's args): the shape every test starts from.
    fn ctr_default() -> Value {
        json!({
            "ociVersion": "1.0.2-dev",
            "process": {
                "user": {"uid": 0, "gid": 0},
                "args": ["echo", "hi"],
                "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                "cwd": "/",
                "capabilities": {
                    "bounding": DOCKER_CAPS,
                    "effective": DOCKER_CAPS,
                    "permitted": DOCKER_CAPS
                },
                "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
                "noNewPrivileges": true
            },
            "root": {"path": "rootfs"},
            "mounts": [
                {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
                {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
                {"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
                {"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
                {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
                {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
                {"destination": "/run", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}
            ],
            "linux": {
                "resources": {"devices": [{"allow": false, "access": "rwm"}]},
                "cgroupsPath": "/default/c1",
                "namespaces": [
                    {"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}, {"type": "network"}
                ],
                "maskedPaths": ["/proc/acpi", "/proc/kcore", "/sys/firmware"],
                "readonlyPaths": ["/proc/bus", "/proc/sys", "/proc/sysrq-trigger"]
            }
        })
    }

    fn node1() -> Host {
        Host {
            name: "node1".into(),
            own_namespaces: ["/proc/7/ns/net".to_owned(), "/proc/7/ns/uts".to_owned()].into(),
            pod: None,
        }
    }

    fn map(v: &Value) -> Result<Mapped, MapError> {
        map_bundle(v, Path::new("/run/ctd/ns/c1"), Backend::Linux, &node1())
    }

    /// Sets `path` (dot-separated; a number indexes an array, and one
    /// past its end appends) to `value`.
    fn set(v: &mut Value, path: &str, value: Value) {
        let (head, last) = match path.rsplit_once('.') {
            Some((h, l)) => (Some(h), l),
            None => (None, path),
        };
        let mut cur = v;
        for p in head
            .map(|h| h.split('.').collect::<Vec<_>>())
            .unwrap_or_default()
        {
            cur = match p.parse::<usize>() {
                Ok(n) => &mut cur[n],
                Err(_) => {
                    if cur.get(p).is_none() {
                        cur[p] = json!({});
                    }
                    &mut cur[p]
                }
            };
        }
        match (last.parse::<usize>(), cur.as_array_mut()) {
            (Ok(n), Some(a)) if n == a.len() => a.push(value),
            (Ok(n), Some(a)) => a[n] = value,
            _ => cur[last] = value,
        }
    }

    #[test]
    fn ctr_default_maps_and_says_what_it_degrades() {
        let m = map(&ctr_default()).expect("maps");
        let s = &m.spec;
        assert_eq!(s.mode, pb::SandboxMode::Idle as i32);
        assert_eq!(s.rootfs, "/run/ctd/ns/c1/rootfs");
        assert!(s.image.is_empty());
        let iso = s.isolation.unwrap();
        assert_eq!(iso.pid, pb::Requirement::Required as i32);
        assert_eq!(iso.ipc, pb::Requirement::Required as i32);
        assert_eq!(iso.hostname, pb::Requirement::Required as i32);
        assert_eq!(iso.filesystem, pb::Requirement::Required as i32);
        assert_eq!(
            iso.user, 0,
            "no user namespace asked: the backend's default"
        );
        let net = s.network.as_ref().unwrap();
        assert_eq!(net.mode, pb::NetworkMode::Loopback as i32);
        assert_eq!(net.requirement, pb::Requirement::Required as i32);
        let limits = s.limits.unwrap();
        assert_eq!(limits.open_files.unwrap().value, 1024);
        assert_eq!(limits.shm_bytes, 64 << 20);
        assert_eq!(m.process.spec.argv, ["echo", "hi"]);
        assert_eq!(m.process.spec.user.as_ref().unwrap().uid, Some(0));
        assert!(
            m.process.rlimits.is_empty(),
            "moved into the sandbox's limits"
        );
        // Every degradation is named, none silently dropped.
        let degraded = m.degraded.join("\n");
        for what in [
            "capabilities.bounding: not given: CAP_MKNOD CAP_NET_RAW",
            "mounts[0]: proc at /proc",
            "mounts[4]: mqueue at /dev/mqueue",
            "mounts[5]: sysfs at /sys",
            "mounts[6]: tmpfs at /run",
        ] {
            assert!(degraded.contains(what), "{what} missing from {degraded}");
        }
    }

    #[test]
    fn table_of_mappings() {
        type Check = fn(&Mapped);
        let cases: &[(&str, &str, Value, Check)] = &[
            ("hostname", "hostname", json!("box"), |m| {
                assert_eq!(m.spec.hostname, "box");
            }),
            ("readonly root", "root.readonly", json!(true), |m| {
                assert!(m.spec.readonly_rootfs);
            }),
            (
                "absolute root",
                "root.path",
                json!("/run/ctd/other/rootfs"),
                |m| {
                    assert_eq!(m.spec.rootfs, "/run/ctd/other/rootfs");
                },
            ),
            (
                "memory",
                "linux.resources.memory.limit",
                json!(67108864),
                |m| {
                    assert_eq!(m.spec.limits.unwrap().memory_bytes.unwrap().value, 64 << 20);
                },
            ),
            (
                "memory unlimited",
                "linux.resources.memory.limit",
                json!(-1),
                |m| {
                    assert!(m.spec.limits.unwrap().memory_bytes.is_none());
                },
            ),
            ("pids", "linux.resources.pids.limit", json!(64), |m| {
                let l = m.spec.limits.unwrap().pids.unwrap();
                assert_eq!(
                    (l.value, l.requirement),
                    (64, pb::Requirement::Required as i32)
                );
            }),
            (
                "cpu quota",
                "linux.resources.cpu",
                json!({"quota": 50000, "period": 100000}),
                |m| {
                    assert_eq!(m.spec.limits.unwrap().cpu_millis.unwrap().value, 500);
                },
            ),
            (
                "cpu shares: runc's weight",
                "linux.resources.cpu",
                json!({"shares": 2048}),
                |m| {
                    let l = m.spec.limits.unwrap().cpu_weight.unwrap();
                    assert_eq!(
                        (l.value, l.requirement),
                        (79, pb::Requirement::Required as i32)
                    );
                },
            ),
            (
                "cpu shares 1024 (one CPU's request)",
                "linux.resources.cpu.shares",
                json!(1024),
                |m| {
                    assert_eq!(m.spec.limits.unwrap().cpu_weight.unwrap().value, 39);
                },
            ),
            (
                "cpu shares 0 is unset",
                "linux.resources.cpu.shares",
                json!(0),
                |m| {
                    assert!(m.spec.limits.unwrap().cpu_weight.is_none());
                },
            ),
            (
                "no network namespace is the host's",
                "linux.namespaces",
                json!([{"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}]),
                |m| {
                    assert_eq!(
                        m.spec.network.as_ref().unwrap().mode,
                        pb::NetworkMode::Host as i32
                    );
                },
            ),
            (
                "no pid namespace is DISABLED",
                "linux.namespaces",
                json!([{"type": "mount"}, {"type": "network"}]),
                |m| {
                    let iso = m.spec.isolation.unwrap();
                    assert_eq!(iso.pid, pb::Requirement::Disabled as i32);
                    assert_eq!(iso.ipc, pb::Requirement::Disabled as i32);
                    assert_eq!(iso.hostname, pb::Requirement::Disabled as i32);
                },
            ),
            (
                "user namespace",
                "linux.namespaces.5",
                json!({"type": "user"}),
                |m| {
                    assert_eq!(
                        m.spec.isolation.unwrap().user,
                        pb::Requirement::Required as i32
                    );
                },
            ),
            (
                "bind mount",
                "mounts.7",
                json!({"destination": "/data", "type": "bind", "source": "/srv/d", "options": ["rbind", "ro", "nosuid"]}),
                |m| {
                    assert_eq!(
                        m.spec.mounts,
                        vec![pb::Mount {
                            source: "/srv/d".into(),
                            target: "/data".into(),
                            read_only: true
                        }]
                    );
                },
            ),
            (
                "terminal with a size",
                "process.consoleSize",
                json!({"height": 40, "width": 120}),
                |m| {
                    assert_eq!(
                        m.process.size,
                        Some(pb::TerminalSize {
                            rows: 40,
                            cols: 120
                        })
                    );
                },
            ),
            (
                "non-root user gets no caps: none required",
                "process.user",
                json!({"uid": 1000, "gid": 1000, "additionalGids": [5]}),
                |m| {
                    let u = m.process.spec.user.as_ref().unwrap();
                    assert_eq!(
                        (u.uid, u.gid, u.additional_gids.clone()),
                        (Some(1000), Some(1000), vec![5])
                    );
                },
            ),
            (
                "noNewPrivileges false is degraded",
                "process.noNewPrivileges",
                json!(false),
                |m| {
                    assert!(
                        m.degraded
                            .iter()
                            .any(|d| d.starts_with("process.noNewPrivileges"))
                    );
                },
            ),
            (
                "annotations are metadata",
                "annotations",
                json!({"org.example.owner": "team-a"}),
                |m| {
                    assert_eq!(m.cri, None);
                    assert!(!m.spec.labels.contains_key(ANNOTATION_SANDBOX_ID));
                },
            ),
        ];
        for (name, path, value, check) in cases {
            let mut v = ctr_default();
            set(&mut v, path, value.clone());
            let m = map(&v).unwrap_or_else(|e| panic!("{name}: {e}"));
            check(&m);
        }
    }

    #[test]
    fn table_of_refusals() {
        let cases: &[(&str, &str, Value, &str)] = &[
            ("unknown top-level key", "fancy", json!(1), "fancy"),
            (
                "unknown process key",
                "process.magic",
                json!(true),
                "process.magic",
            ),
            ("empty args", "process.args", json!([]), "process.args"),
            (
                "hooks",
                "hooks",
                json!({"prestart": [{"path": "/bin/true"}]}),
                "hooks",
            ),
            ("domainname", "domainname", json!("nis"), "domainname"),
            (
                "apparmor",
                "process.apparmorProfile",
                json!("docker-default"),
                "process.apparmorProfile",
            ),
            (
                "selinux",
                "process.selinuxLabel",
                json!("system_u"),
                "process.selinuxLabel",
            ),
            (
                "oom score",
                "process.oomScoreAdj",
                json!(5000),
                "process.oomScoreAdj",
            ),
            (
                "umask",
                "process.user.umask",
                json!(18),
                "process.user.umask",
            ),
            (
                "other rlimit",
                "process.rlimits.0.type",
                json!("RLIMIT_CORE"),
                "process.rlimits[0].type",
            ),
            (
                "soft below hard",
                "process.rlimits.0.soft",
                json!(10),
                "process.rlimits[0]",
            ),
            (
                "fewer caps than sandboxd gives root",
                "process.capabilities.bounding",
                json!(["CAP_KILL"]),
                "process.capabilities.bounding",
            ),
            (
                "no mount namespace",
                "linux.namespaces",
                json!([{"type": "pid"}, {"type": "network"}]),
                "linux.namespaces",
            ),
            (
                "a network namespace path that is not a string",
                "linux.namespaces.4",
                json!({"type": "network", "path": 7}),
                "linux.namespaces[4].path",
            ),
            (
                "time namespace",
                "linux.namespaces.5",
                json!({"type": "time"}),
                "linux.namespaces[5].type",
            ),
            (
                "uid mappings",
                "linux.uidMappings",
                json!([{"containerID": 0, "hostID": 1000, "size": 1}]),
                "linux.uidMappings",
            ),
            (
                "seccomp profile",
                "linux.seccomp",
                json!({"defaultAction": "SCMP_ACT_ALLOW"}),
                "linux.seccomp",
            ),
            (
                "sysctl",
                "linux.sysctl",
                json!({"net.ipv4.ip_forward": "1"}),
                "linux.sysctl",
            ),
            (
                "cpu shares below the kernel's range",
                "linux.resources.cpu.shares",
                json!(1),
                "linux.resources.cpu.shares",
            ),
            (
                "cpu shares above the kernel's range",
                "linux.resources.cpu.shares",
                json!(262_145),
                "linux.resources.cpu.shares",
            ),
            (
                "cpu shares not a number",
                "linux.resources.cpu.shares",
                json!("1024"),
                "linux.resources.cpu.shares",
            ),
            (
                "swap",
                "linux.resources.memory.swap",
                json!(1),
                "linux.resources.memory.swap",
            ),
            (
                "block io",
                "linux.resources.blockIO",
                json!({"weight": 10}),
                "linux.resources.blockIO",
            ),
            (
                "device node",
                "linux.devices",
                json!([{"path": "/dev/sda", "type": "b", "major": 8, "minor": 0}]),
                "linux.devices[0]",
            ),
            (
                "device allowance",
                "linux.resources.devices.1",
                json!({"allow": true, "type": "b", "major": 8, "minor": 0, "access": "rwm"}),
                "linux.resources.devices[1]",
            ),
            (
                "masked path outside /proc",
                "linux.maskedPaths.3",
                json!("/etc/secret"),
                "linux.maskedPaths[3]",
            ),
            (
                "overlay mount",
                "mounts.7",
                json!({"destination": "/x", "type": "overlay", "source": "overlay"}),
                "mounts[7]",
            ),
            (
                "bind option sandboxd does not honour",
                "mounts.7",
                json!({"destination": "/x", "type": "bind", "source": "/srv", "options": ["rbind", "rshared"]}),
                "mounts[7].options",
            ),
            (
                "root path with ..",
                "root.path",
                json!("../../etc"),
                "root.path",
            ),
            ("no root", "root", Value::Null, "root"),
            (
                "windows section",
                "windows",
                json!({"layerFolders": ["x"]}),
                "windows",
            ),
            (
                "hostname without uts",
                "linux.namespaces",
                json!([{"type": "mount"}, {"type": "hostname-less"}]),
                "linux.namespaces[1].type",
            ),
            (
                "rootfs propagation",
                "linux.rootfsPropagation",
                json!("shared"),
                "linux.rootfsPropagation",
            ),
        ];
        for (name, path, value, field) in cases {
            let mut v = ctr_default();
            set(&mut v, path, value.clone());
            let err = map(&v).expect_err(name);
            assert!(
                err.fields().contains(field),
                "{name}: expected {field} among {:?}",
                err.fields()
            );
        }
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let mut v = ctr_default();
        set(&mut v, "hooks", json!({"poststart": [{"path": "/x"}]}));
        set(&mut v, "linux.sysctl", json!({"a": "b"}));
        set(&mut v, "process.selinuxLabel", json!("x"));
        let err = map(&v).expect_err("refused");
        assert_eq!(err.0.len(), 3, "{err}");
    }

    #[test]
    fn capabilities_depend_on_the_backend() {
        // chroot gives root fewer capabilities: the default set is a
        // superset (degraded), a set without SYS_CHROOT is fine there.
        let mut v = ctr_default();
        let chroot_caps = Backend::Chroot.granted_capabilities();
        set(&mut v, "process.capabilities.bounding", json!(chroot_caps));
        set(&mut v, "process.capabilities.effective", json!(chroot_caps));
        set(&mut v, "process.capabilities.permitted", json!(chroot_caps));
        map_bundle(&v, Path::new("/b"), Backend::Chroot, &node1()).expect("chroot");
        let err = map_bundle(&v, Path::new("/b"), Backend::Linux, &node1())
            .expect_err("linux gives more");
        assert!(err.to_string().contains("CAP_AUDIT_WRITE"), "{err}");
        // A jail has no Linux capabilities: all asked are withheld.
        let m = map_bundle(&ctr_default(), Path::new("/b"), Backend::FreeBsd, &node1())
            .expect("freebsd");
        assert!(m.degraded.iter().any(|d| d.contains("CAP_CHOWN")));
    }

    #[test]
    fn exec_process_and_its_rlimits() {
        let m = map(&ctr_default()).unwrap();
        let p = json!({
            "args": ["sh"], "cwd": "/", "terminal": true,
            "user": {"uid": 0, "gid": 0},
            "capabilities": {"bounding": DOCKER_CAPS, "effective": DOCKER_CAPS, "permitted": DOCKER_CAPS},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": true
        });
        let (mut proc_, _) = map_exec_process(&p, Backend::Linux).expect("exec");
        assert!(proc_.spec.tty);
        check_exec_rlimits(&mut proc_, m.spec.limits.as_ref()).expect("same limits");
        let mut p2 = p.clone();
        p2["rlimits"][0]["hard"] = json!(4096);
        p2["rlimits"][0]["soft"] = json!(4096);
        let (mut proc2, _) = map_exec_process(&p2, Backend::Linux).expect("exec");
        let err = check_exec_rlimits(&mut proc2, m.spec.limits.as_ref()).expect_err("other limit");
        assert!(err.to_string().contains("RLIMIT_NOFILE=4096"), "{err}");
    }

    /// The pod's sandbox ("pause") container as containerd 1.6's CRI plugin
    /// writes it for a host-network pod (trimmed from a real bundle).
    fn cri_pause() -> Value {
        let mut v = ctr_default();
        set(&mut v, "process.args", json!(["/pause"]));
        set(&mut v, "process.oomScoreAdj", json!(-998));
        set(&mut v, "root.readonly", json!(true));
        set(&mut v, "hostname", json!("node1"));
        set(
            &mut v,
            "annotations",
            json!({
                "io.kubernetes.cri.container-type": "sandbox",
                "io.kubernetes.cri.sandbox-id": "pod1",
                "io.kubernetes.cri.sandbox-name": "web"
            }),
        );
        set(&mut v, "linux.resources.cpu", json!({"shares": 2}));
        set(&mut v, "linux.cgroupsPath", json!("/k8s.io/pod1"));
        set(
            &mut v,
            "linux.namespaces",
            json!([{"type": "pid"}, {"type": "ipc"}, {"type": "mount"}]),
        );
        let mounts = v["mounts"].as_array_mut().unwrap();
        mounts.retain(|m| m["destination"] != "/run");
        mounts.push(json!({"destination": "/dev/shm", "type": "bind", "source": "/var/lib/cri/sandboxes/pod1/shm", "options": ["rbind", "ro"]}));
        mounts.push(json!({"destination": "/etc/resolv.conf", "type": "bind", "source": "/var/lib/cri/sandboxes/pod1/resolv.conf", "options": ["rbind", "ro"]}));
        v
    }

    /// A container of that pod: it joins the pause process's namespaces.
    fn cri_container() -> Value {
        let mut v = ctr_default();
        set(
            &mut v,
            "annotations",
            json!({
                "io.kubernetes.cri.container-type": "container",
                "io.kubernetes.cri.sandbox-id": "pod1",
                "io.kubernetes.cri.container-name": "main"
            }),
        );
        set(&mut v, "process.oomScoreAdj", json!(0));
        set(
            &mut v,
            "linux.namespaces",
            json!([
                {"type": "pid"},
                {"type": "ipc", "path": "/proc/7/ns/ipc"},
                {"type": "uts", "path": "/proc/7/ns/uts"},
                {"type": "mount"},
                {"type": "network", "path": "/proc/7/ns/net"}
            ]),
        );
        let mounts = v["mounts"].as_array_mut().unwrap();
        mounts.retain(|m| m["destination"] != "/run");
        for f in ["hosts", "hostname", "resolv.conf"] {
            mounts.push(json!({"destination": format!("/etc/{f}"), "type": "bind", "source": format!("/var/lib/cri/sandboxes/pod1/{f}"), "options": ["rbind", "rprivate", "rw"]}));
        }
        mounts.push(json!({"destination": "/dev/shm", "type": "bind", "source": "/var/lib/cri/sandboxes/pod1/shm", "options": ["rbind", "rprivate", "rw"]}));
        v
    }

    fn degraded_fields(m: &Mapped) -> Vec<&str> {
        m.degraded
            .iter()
            .map(|d| d.split(": ").next().unwrap())
            .collect()
    }

    #[test]
    fn cri_pause_container_maps_with_its_degradations() {
        let m = map(&cri_pause()).expect("the pod's sandbox container maps");
        assert_eq!(
            m.cri,
            Some(Cri {
                role: CriRole::Sandbox,
                sandbox_id: "pod1".into()
            })
        );
        assert_eq!(m.spec.labels["io.kubernetes.cri.sandbox-id"], "pod1");
        assert_eq!(m.spec.labels["io.kubernetes.cri.container-type"], "sandbox");
        assert!(m.spec.readonly_rootfs);
        // The host's name without a uts namespace: the host's uts namespace.
        assert!(m.spec.hostname.is_empty());
        let iso = m.spec.isolation.unwrap();
        assert_eq!(iso.hostname, pb::Requirement::Disabled as i32);
        assert_eq!(iso.ipc, pb::Requirement::Required as i32);
        assert_eq!(
            m.spec.network.as_ref().unwrap().mode,
            pb::NetworkMode::Host as i32,
            "a host-network pod"
        );
        // No bind at all: the pod's shm and resolv.conf are not bound into
        // the pause container, and each says so.
        assert!(m.spec.mounts.is_empty(), "{:?}", m.spec.mounts);
        let d = degraded_fields(&m);
        for field in ["process.oomScoreAdj", "mounts[6]", "mounts[7]"] {
            assert!(d.contains(&field), "{field} not in {:#?}", m.degraded);
        }
        // kubelet's minimum shares (2): the minimum weight, not degraded.
        assert!(!d.contains(&"linux.resources.cpu.shares"), "{d:?}");
        assert_eq!(m.spec.limits.unwrap().cpu_weight.unwrap().value, 1);
    }

    #[test]
    fn cri_container_gets_its_own_namespaces_and_read_only_pod_files() {
        let m = map(&cri_container()).expect("the pod's container maps");
        assert_eq!(m.cri.as_ref().unwrap().role, CriRole::Container);
        let iso = m.spec.isolation.unwrap();
        // ipc: the pod's (not the host's) is not joined: its own.
        assert_eq!(iso.ipc, pb::Requirement::Required as i32);
        // uts and network: the paths are the host's own: shared with it.
        assert_eq!(iso.hostname, pb::Requirement::Disabled as i32);
        assert_eq!(
            m.spec.network.as_ref().unwrap().mode,
            pb::NetworkMode::Host as i32
        );
        let binds: Vec<(&str, bool)> = m
            .spec
            .mounts
            .iter()
            .map(|b| (b.target.as_str(), b.read_only))
            .collect();
        assert_eq!(
            binds,
            [
                ("/etc/hosts", true),
                ("/etc/hostname", true),
                ("/etc/resolv.conf", true)
            ]
        );
        let d = degraded_fields(&m);
        for field in [
            "linux.namespaces[1].path",
            "mounts[6]",
            "mounts[7]",
            "mounts[8]",
            "mounts[9]",
        ] {
            assert!(d.contains(&field), "{field} not in {:#?}", m.degraded);
        }
        assert!(!d.contains(&"linux.namespaces[2].path"), "the host's uts");

        // A non-root container may write its pod files.
        let mut v = cri_container();
        set(&mut v, "process.user", json!({"uid": 1000, "gid": 1000}));
        let m = map(&v).expect("maps");
        assert!(m.spec.mounts.iter().all(|b| !b.read_only));
    }

    /// A pod's container whose namespace paths are the pod sandbox's (the
    /// shim found them by device and inode) becomes its child: each shared
    /// kind goes into `spec.join` and is left unset in the spec (network
    /// mode, ipc, hostname); the host's namespaces stay the host's, pid and
    /// paths of other sandboxes stay degraded or refused.
    #[test]
    fn cri_container_joins_the_pod_sandbox() {
        const POD: &str = "0123456789abcdef";
        let pod = |paths: &[&str]| PodSandbox {
            sandbox_id: POD.into(),
            namespaces: paths.iter().map(|p| (*p).to_owned()).collect(),
        };
        // A pod with its own network (the CRI plugin's paths of pid 7 are
        // the pod sandbox's, none the host's).
        let own_net = Host {
            name: "node1".into(),
            own_namespaces: BTreeSet::new(),
            pod: Some(pod(&["/proc/7/ns/ipc", "/proc/7/ns/uts", "/proc/7/ns/net"])),
        };
        let m =
            map_bundle(&cri_container(), Path::new("/b"), Backend::Linux, &own_net).expect("maps");
        assert_eq!(
            m.spec.join,
            Some(pb::SandboxJoin {
                sandbox_id: POD.into(),
                network: true,
                ipc: true,
                uts: true,
                pid: false
            })
        );
        assert_eq!(m.spec.network, None, "the pod sandbox's network mode");
        let iso = m.spec.isolation.unwrap();
        assert_eq!(iso.ipc, pb::Requirement::Unspecified as i32);
        assert_eq!(iso.hostname, pb::Requirement::Unspecified as i32);
        assert_eq!(iso.pid, pb::Requirement::Required as i32, "its own pid");
        let d = degraded_fields(&m);
        assert!(
            !d.iter().any(|f| f.starts_with("linux.namespaces")),
            "{d:?}"
        );
        // The pod's hostname given to the container too: the pod's anyway.
        let mut v = cri_container();
        set(&mut v, "hostname", json!("web-0"));
        let m = map_bundle(&v, Path::new("/b"), Backend::Linux, &own_net).expect("maps");
        assert!(m.spec.hostname.is_empty());

        // A host-network pod: net and uts are the host's, ipc the pod's.
        let host_net = Host {
            pod: Some(pod(&["/proc/7/ns/ipc"])),
            ..node1()
        };
        let m =
            map_bundle(&cri_container(), Path::new("/b"), Backend::Linux, &host_net).expect("maps");
        assert_eq!(
            m.spec.join,
            Some(pb::SandboxJoin {
                sandbox_id: POD.into(),
                network: false,
                ipc: true,
                uts: false,
                pid: false
            })
        );
        assert_eq!(
            m.spec.network.as_ref().unwrap().mode,
            pb::NetworkMode::Host as i32
        );
        assert_eq!(
            m.spec.isolation.unwrap().hostname,
            pb::Requirement::Disabled as i32
        );

        // Paths that are not the pod sandbox's: as before (own ipc,
        // degraded; a foreign network namespace is asked of the daemon as
        // mode NAMESPACE, which decides), no join.
        let other = Host {
            pod: Some(pod(&["/proc/8/ns/ipc"])),
            ..node1()
        };
        let m =
            map_bundle(&cri_container(), Path::new("/b"), Backend::Linux, &other).expect("maps");
        assert_eq!(m.spec.join, None);
        assert!(degraded_fields(&m).contains(&"linux.namespaces[1].path"));
        let foreign_net = Host {
            name: "node1".into(),
            own_namespaces: BTreeSet::new(),
            pod: Some(pod(&["/proc/7/ns/ipc"])),
        };
        let m = map_bundle(
            &cri_container(),
            Path::new("/b"),
            Backend::Linux,
            &foreign_net,
        )
        .expect("a network namespace that is neither the host's nor the pod's");
        let net = m.spec.network.as_ref().unwrap();
        assert_eq!(net.mode, pb::NetworkMode::Namespace as i32);
        assert_eq!(net.namespace_path, "/proc/7/ns/net");
        assert_eq!(m.spec.join.map(|j| j.network), Some(false));

        // shareProcessNamespace: the pause process's pid path joins the
        // pod's pid namespace (no own one, nothing degraded); a pid path
        // that is not the pod sandbox's still gives the container its own.
        let mut shared = cri_container();
        set(
            &mut shared,
            "linux.namespaces.0",
            json!({"type": "pid", "path": "/proc/7/ns/pid"}),
        );
        let pid_pod = Host {
            pod: Some(pod(&["/proc/7/ns/ipc", "/proc/7/ns/pid"])),
            ..node1()
        };
        let m = map_bundle(&shared, Path::new("/b"), Backend::Linux, &pid_pod).expect("maps");
        assert_eq!(
            m.spec.join,
            Some(pb::SandboxJoin {
                sandbox_id: POD.into(),
                network: false,
                ipc: true,
                uts: false,
                pid: true
            })
        );
        assert_eq!(
            m.spec.isolation.unwrap().pid,
            pb::Requirement::Unspecified as i32
        );
        assert!(
            !degraded_fields(&m).contains(&"linux.namespaces[0].path"),
            "{:?}",
            m.degraded
        );
        let m = map_bundle(&shared, Path::new("/b"), Backend::Linux, &host_net).expect("maps");
        assert!(!m.spec.join.as_ref().unwrap().pid);
        assert_eq!(
            m.spec.isolation.unwrap().pid,
            pb::Requirement::Required as i32
        );
        assert!(degraded_fields(&m).contains(&"linux.namespaces[0].path"));

        // The pause container itself never joins a sandbox: a network path
        // (not the host's) is its pod's CNI namespace, mode NAMESPACE.
        let mut pause = cri_pause();
        set(
            &mut pause,
            "linux.namespaces.3",
            json!({"type": "network", "path": "/var/run/netns/cni-1234"}),
        );
        let m = map_bundle(&pause, Path::new("/b"), Backend::Linux, &own_net)
            .expect("a pause container in a CNI network namespace");
        let net = m.spec.network.as_ref().unwrap();
        assert_eq!(net.mode, pb::NetworkMode::Namespace as i32);
        assert_eq!(net.requirement, pb::Requirement::Required as i32);
        assert_eq!(net.namespace_path, "/var/run/netns/cni-1234");
        assert_eq!(m.spec.join, None);
    }

    #[test]
    fn cri_refusals_name_the_field() {
        /// (what, base bundle, where, value, refused field)
        type Case = (
            &'static str,
            fn() -> Value,
            &'static str,
            Value,
            &'static str,
        );
        let cases: &[Case] = &[
            (
                "an OOM score beyond the kernel's range",
                cri_container,
                "process.oomScoreAdj",
                json!(1001),
                "process.oomScoreAdj",
            ),
            (
                "a container's cpu shares beyond the kernel's range",
                cri_container,
                "linux.resources.cpu",
                json!({"shares": 300_000}),
                "linux.resources.cpu.shares",
            ),
            (
                "a pod hostname without a uts namespace",
                cri_pause,
                "hostname",
                json!("web-0"),
                "hostname",
            ),
            (
                "the pause container's other binds",
                cri_pause,
                "mounts.8",
                json!({"destination": "/data", "type": "bind", "source": "/x", "options": ["rbind", "zz"]}),
                "mounts[8].options",
            ),
        ];
        for (name, base, at, value, field) in cases {
            let mut v = base();
            set(&mut v, at, value.clone());
            let err = map(&v).expect_err(name);
            assert!(err.fields().contains(field), "{name}: {err}");
        }
        // Annotations: a bad container type, a CRI bundle without its pod.
        let mut v = cri_container();
        v["annotations"]["io.kubernetes.cri.container-type"] = json!("podling");
        let err = map(&v).expect_err("bad type");
        assert!(
            err.fields()
                .contains(&"annotations.io.kubernetes.cri.container-type"),
            "{err}"
        );
        let mut v = cri_container();
        v["annotations"]
            .as_object_mut()
            .unwrap()
            .remove("io.kubernetes.cri.sandbox-id");
        let err = map(&v).expect_err("no pod");
        assert!(
            err.fields()
                .contains(&"annotations.io.kubernetes.cri.sandbox-id"),
            "{err}"
        );
        // Outside a pod, joining any namespace (not the host's) is refused.
        let mut v = ctr_default();
        set(
            &mut v,
            "linux.namespaces.1",
            json!({"type": "ipc", "path": "/proc/9/ns/ipc"}),
        );
        let err = map(&v).expect_err("ctr join");
        assert!(err.fields().contains(&"linux.namespaces[1].path"), "{err}");
        // The CRI plugin's "no swap" (memory + swap = the limit) is accepted.
        let mut v = cri_container();
        set(
            &mut v,
            "linux.resources.memory",
            json!({"limit": 67108864, "swap": 67108864}),
        );
        assert_eq!(
            map(&v)
                .expect("maps")
                .spec
                .limits
                .unwrap()
                .memory_bytes
                .unwrap()
                .value,
            64 << 20
        );
        set(
            &mut v,
            "linux.resources.memory",
            json!({"limit": 67108864, "swap": 134217728}),
        );
        let err = map(&v).expect_err("swap beyond the limit");
        assert!(
            err.fields().contains(&"linux.resources.memory.swap"),
            "{err}"
        );
        // kubelet's BestEffort score is kept for the shim to set.
        let mut v = cri_container();
        set(&mut v, "process.oomScoreAdj", json!(1000));
        assert_eq!(map(&v).expect("maps").process.oom_score_adj, 1000);
        // Negative OOM scores are degraded, not refused, anywhere.
        let mut v = ctr_default();
        set(&mut v, "process.oomScoreAdj", json!(-500));
        assert!(degraded_fields(&map(&v).expect("maps")).contains(&"process.oomScoreAdj"));
    }

    #[test]
    fn a_pods_containers_share_the_pods_shim() {
        let cases: &[(Value, &str)] = &[
            (
                json!({"annotations": {"io.kubernetes.cri.sandbox-id": "pod1", "io.kubernetes.cri.container-type": "container"}}),
                "pod1",
            ),
            (
                json!({"annotations": {"io.kubernetes.cri.sandbox-id": "pod1", "io.kubernetes.cri.container-type": "sandbox"}}),
                "pod1",
            ),
            (
                json!({"annotations": {"io.kubernetes.cri.sandbox-id": ""}}),
                "task7",
            ),
            (
                json!({"annotations": {"io.kubernetes.cri.sandbox-id": 3}}),
                "task7",
            ),
            (json!({"annotations": {}}), "task7"),
            (json!({}), "task7"),
        ];
        for (config, want) in cases {
            assert_eq!(shim_group(config, "task7"), *want, "{config}");
        }
    }
}
