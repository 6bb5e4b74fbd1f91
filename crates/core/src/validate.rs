//! Spec validation. [`validate`] checks everything at once and returns every
//! problem, so a client fixes its request in one round trip. The result,
//! [`ValidatedSpec`], is the only spec type a backend accepts.
//!
//! The rules for single values (names, paths, ports, labels, DNS, signals)
//! are public `check_*` functions returning the reason, so `sandboxctl`
//! refuses a bad flag early with the daemon's own words: one definition of
//! "valid".

use std::net::IpAddr;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::spec::{Limit, Mode, NetworkMode, ProcessSpec, Requirement, SandboxSpec};

/// Server-side caps on what a client may ask for. Clients may only lower
/// limits, never raise them past these.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// Maximum argv entries.
    pub max_argv: usize,
    /// Maximum environment entries.
    pub max_env: usize,
    /// Maximum bytes of argv plus env together.
    pub max_arg_bytes: usize,
    /// Maximum labels.
    pub max_labels: usize,
    /// Maximum bind mounts.
    pub max_mounts: usize,
    /// Maximum supplementary groups.
    pub max_groups: usize,
    /// Largest memory limit a client may set (bytes).
    pub max_memory_bytes: u64,
    /// Largest pids limit.
    pub max_pids: u64,
    /// Largest CPU quota (milli-CPUs).
    pub max_cpu_millis: u64,
    /// Largest open-files limit.
    pub max_open_files: u64,
    /// Largest address-space limit (bytes).
    pub max_address_space_bytes: u64,
    /// The writable layer's size when a spec sets none (bytes), applied as
    /// PREFERRED; `None`: no default, the layer is unbounded.
    pub default_disk_bytes: Option<u64>,
    /// Largest disk limit, `/tmp` size and `/dev/shm` size a client may set
    /// (bytes).
    pub max_disk_bytes: u64,
    /// Host directories under which bind-mount sources may lie.
    pub allowed_mount_sources: Vec<PathBuf>,
    /// Host directories under which a caller-given root filesystem
    /// (`spec.rootfs`) may lie.
    pub allowed_rootfs_sources: Vec<PathBuf>,
    /// Host directories under which a network namespace file given for
    /// mode NAMESPACE (`spec.network.namespace_path`) may lie.
    pub allowed_netns_sources: Vec<PathBuf>,
    /// Whether clients may ask for the host's network (mode HOST).
    pub allow_host_network: bool,
    /// Largest main-process log a sandbox may keep (file size × files).
    pub max_log_bytes: u64,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            max_argv: 4096,
            max_env: 1024,
            max_arg_bytes: 256 * 1024,
            max_labels: 64,
            max_mounts: 32,
            max_groups: 32,
            max_memory_bytes: 64 << 30,
            max_pids: 65536,
            max_cpu_millis: 1024 * 1000,
            max_open_files: 1 << 20,
            max_address_space_bytes: 1 << 46,
            default_disk_bytes: Some(DEFAULT_DISK_BYTES),
            max_disk_bytes: DEFAULT_DISK_BYTES,
            allowed_mount_sources: Vec::new(),
            allowed_rootfs_sources: Vec::new(),
            allowed_netns_sources: Vec::new(),
            allow_host_network: false,
            max_log_bytes: crate::logs::DEFAULT_MAX_TOTAL_BYTES,
        }
    }
}

/// Smallest memory limit accepted: below this nothing useful starts.
pub const MIN_MEMORY_BYTES: u64 = 4 << 20;
/// Smallest address-space limit accepted.
pub const MIN_ADDRESS_SPACE_BYTES: u64 = 16 << 20;
/// Smallest open-files limit accepted (stdio plus a few).
pub const MIN_OPEN_FILES: u64 = 8;
/// The daemon's built-in default and cap for the writable layer.
pub const DEFAULT_DISK_BYTES: u64 = 1 << 30;
/// Smallest disk limit accepted: an overlay's work directory and a few
/// files.
pub const MIN_DISK_BYTES: u64 = 1 << 20;
/// The size of `/tmp` when a spec sets none.
pub const DEFAULT_TMP_BYTES: u64 = 256 << 20;
/// The size of `/dev/shm` when a spec sets none (Docker's default too).
pub const DEFAULT_SHM_BYTES: u64 = 64 << 20;
/// Smallest `/tmp` or `/dev/shm` size accepted.
pub const MIN_TMPFS_BYTES: u64 = 1 << 20;

/// Default stop signal (SIGTERM).
pub const DEFAULT_STOP_SIGNAL: u32 = 15;
/// The argv INIT mode runs when none is given.
pub const DEFAULT_INIT: &str = "/sbin/init";
/// Longest path accepted anywhere.
const MAX_PATH: usize = 4096;

/// One thing wrong with a request: the field (as a dotted path) and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// Dotted field path, e.g. `spec.process.argv[0]`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

/// Every problem found in a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid request: {}", render(.problems))]
pub struct ValidationError {
    /// The problems, in field order.
    pub problems: Vec<Problem>,
}

fn render(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| format!("{}: {}", p.field, p.message))
        .collect::<Vec<_>>()
        .join("; ")
}

impl ValidationError {
    /// A single-problem error.
    pub fn one(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            problems: vec![Problem {
                field: field.into(),
                message: message.into(),
            }],
        }
    }
}

/// Collects problems while walking a request.
#[derive(Debug, Default)]
struct Problems(Vec<Problem>);

impl Problems {
    fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem {
            field: field.into(),
            message: message.into(),
        });
    }
    fn finish<T>(self, value: T) -> Result<T, ValidationError> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(ValidationError { problems: self.0 })
        }
    }
}

/// A spec that passed validation, with defaults filled in. Backends accept
/// nothing else.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ValidatedSpec(SandboxSpec, #[serde(skip)] Vec<std::path::PathBuf>);

impl ValidatedSpec {
    /// The validated spec.
    pub fn spec(&self) -> &SandboxSpec {
        &self.0
    }

    /// An OCI image's unpacked layers, base first, relative to the images
    /// dir (`.oci/layers/sha256/<hex>`); empty for a directory image and
    /// "host". Set by the daemon from its image store, never by a client.
    pub fn image_layers(&self) -> &[std::path::PathBuf] {
        &self.1
    }

    /// Attaches the layer chain the daemon's store resolved `spec.image` to.
    pub fn with_image_layers(mut self, layers: Vec<std::path::PathBuf>) -> Self {
        self.1 = layers;
        self
    }
}

/// A process (for Exec) that passed validation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ValidatedProcess(ProcessSpec);

impl ValidatedProcess {
    /// The validated process.
    pub fn process(&self) -> &ProcessSpec {
        &self.0
    }
}

/// Validates a full spec, returning all problems at once.
pub fn validate(mut spec: SandboxSpec, policy: &Policy) -> Result<ValidatedSpec, ValidationError> {
    let mut p = Problems::default();
    if !spec.name.is_empty() {
        check_name(&mut p, "spec.name", &spec.name);
    }
    if !spec.rootfs.is_empty() {
        check_rootfs(&mut p, &mut spec, policy);
    }
    if spec.image.is_empty() {
        spec.image = crate::spec::HOST_IMAGE.to_owned();
    }
    check_image(&mut p, &spec.image);

    match spec.mode {
        Mode::Process => {
            if spec.process.argv.is_empty() {
                p.add("spec.process.argv", "must not be empty in PROCESS mode");
            }
        }
        Mode::Init => {
            if spec.process.argv.is_empty() {
                spec.process.argv = vec![DEFAULT_INIT.to_owned()];
            }
        }
        Mode::Idle => {
            if !spec.process.argv.is_empty() {
                p.add(
                    "spec.process.argv",
                    "must be empty in IDLE mode (use Exec to run work)",
                );
            }
            if spec.process.tty {
                p.add(
                    "spec.process.tty",
                    "IDLE mode has no main process to give a terminal",
                );
            }
        }
    }
    check_process(
        &mut p,
        "spec.process",
        &spec.process,
        policy,
        spec.mode == Mode::Idle,
    );
    if spec.mode != Mode::Idle && spec.process.tty {
        // The main process's output is not streamed to any client (only Exec
        // streams), so a terminal for it would have no reader.
        p.add(
            "spec.process.tty",
            "a terminal is only available through Exec; run with tty=false",
        );
    }

    if !spec.hostname.is_empty() {
        check_hostname(&mut p, &spec.hostname);
    }
    if spec.isolation.filesystem == Requirement::Disabled {
        p.add(
            "spec.isolation.filesystem",
            "DISABLED is not supported: every sandbox has its own root",
        );
    }
    if spec.hostname.is_empty() && spec.isolation.hostname == Requirement::Disabled {
        // Fine: explicitly shares the host's hostname.
    } else if !spec.hostname.is_empty() && spec.isolation.hostname == Requirement::Disabled {
        p.add(
            "spec.isolation.hostname",
            "DISABLED contradicts setting spec.hostname",
        );
    }

    check_network(&mut p, &spec);
    check_join(&mut p, &spec);
    check_limits(&mut p, &mut spec, policy);
    check_cpu_weight(&mut p, &spec);
    check_logs(&mut p, &mut spec.logs, policy);
    check_mounts(&mut p, &spec, policy);
    check_labels(&mut p, &spec, policy);

    if spec.stop_signal == 0 {
        spec.stop_signal = DEFAULT_STOP_SIGNAL;
    } else {
        p.check("spec.stop_signal", check_signal(spec.stop_signal));
    }
    p.finish(ValidatedSpec(spec, Vec::new()))
}

/// Validates a process for Exec/ExecSync.
pub fn validate_process(
    process: ProcessSpec,
    field: &str,
    policy: &Policy,
) -> Result<ValidatedProcess, ValidationError> {
    let mut p = Problems::default();
    if process.argv.is_empty() {
        p.add(format!("{field}.argv"), "must not be empty");
    }
    check_process(&mut p, field, &process, policy, false);
    p.finish(ValidatedProcess(process))
}

/// Why `signal` is not a signal number the daemon accepts (1-64), if it
/// is not.
pub fn check_signal(signal: u32) -> Result<(), String> {
    if (1..=64).contains(&signal) {
        Ok(())
    } else {
        Err(format!("{signal} is not a signal number (1-64)"))
    }
}

/// Checks a sandbox id (16 lowercase hex characters) or name reference.
pub fn validate_ref(field: &str, value: &str) -> Result<(), ValidationError> {
    let mut p = Problems::default();
    if value.is_empty() {
        p.add(field, "must name a sandbox (id or name)");
    } else if !is_id(value) {
        check_name(&mut p, field, value);
    }
    p.finish(())
}

/// Whether `s` has the shape of a sandbox id.
pub fn is_id(s: &str) -> bool {
    s.len() == 16
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Checks an idempotency key.
pub fn validate_request_id(value: &str) -> Result<(), ValidationError> {
    let ok = value.len() <= 128
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(ValidationError::one(
            "request_id",
            format!(
                "{:?} must be at most 128 characters of [A-Za-z0-9._-]",
                truncate(value)
            ),
        ))
    }
}

/// Shortens client strings quoted in messages so an error cannot be used to
/// amplify a huge request.
fn truncate(s: &str) -> String {
    const MAX: usize = 64;
    if s.len() <= MAX {
        return s.to_owned();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

impl Problems {
    /// Adds `check`'s reason, if any, under `field`; returns whether it
    /// passed.
    fn check(&mut self, field: impl Into<String>, check: Result<(), String>) -> bool {
        match check {
            Ok(()) => true,
            Err(message) => {
                self.add(field, message);
                false
            }
        }
    }
}

fn check_name(p: &mut Problems, field: &str, name: &str) {
    p.check(field, check_sandbox_name(name));
}

/// Why `name` is not a valid sandbox name, if it is not: 1-63 characters
/// of `[a-z0-9-]`, not starting or ending with '-', not shaped like an id.
pub fn check_sandbox_name(name: &str) -> Result<(), String> {
    let ok = (1..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if !ok {
        Err(format!(
            "{:?} is not a valid name: 1-63 characters of [a-z0-9-], not starting or ending with '-'",
            truncate(name)
        ))
    } else if is_id(name) {
        Err(format!("{name:?} looks like a sandbox id; names must not"))
    } else {
        Ok(())
    }
}

fn check_image(p: &mut Problems, image: &str) {
    p.check("spec.image", check_image_name(image));
}

/// A caller-given root filesystem: an absolute, normal path strictly below
/// one of the allowed rootfs sources, whose last component is a valid image
/// name (it becomes `spec.image`; its parent is opened in the images dir's
/// place, without following symlinks). `spec.image` must be empty or that
/// same name.
fn check_rootfs(p: &mut Problems, spec: &mut SandboxSpec, policy: &Policy) {
    let field = "spec.rootfs";
    if !check_abs_path(p, field, &spec.rootfs) {
        return;
    }
    let path = Path::new(&spec.rootfs);
    if allowed_root(path, &policy.allowed_rootfs_sources).is_none() {
        let roots = if policy.allowed_rootfs_sources.is_empty() {
            "none are configured (allow_rootfs_sources)".to_owned()
        } else {
            policy
                .allowed_rootfs_sources
                .iter()
                .map(|r| r.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        p.add(
            field,
            format!(
                "{:?} is not below an allowed rootfs source ({roots})",
                truncate(&spec.rootfs)
            ),
        );
        return;
    }
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_owned();
    if let Err(why) = check_image_name(&name) {
        p.add(field, format!("its last component: {why}"));
        return;
    }
    if name == crate::spec::HOST_IMAGE {
        p.add(
            field,
            format!(
                "its last component must not be {:?}, the built-in image's name",
                crate::spec::HOST_IMAGE
            ),
        );
        return;
    }
    if !spec.image.is_empty() && spec.image != name {
        p.add(
            "spec.image",
            format!(
                "must be empty with spec.rootfs (the rootfs's last component {name:?} is the image)"
            ),
        );
        return;
    }
    spec.image = name;
}

/// The allowed directory `path` lies strictly below (lexically: the caller
/// has checked `path` with [`check_absolute_path`], so no `..` can climb
/// out; the opener must still refuse symlinks on the way), if any. Used
/// for client-given root filesystems and network namespace files.
pub fn allowed_root<'a>(path: &Path, roots: &'a [PathBuf]) -> Option<&'a PathBuf> {
    roots
        .iter()
        .find(|root| path.starts_with(root) && path != root.as_path())
}

/// Why `image` is not a valid image name, if it is not.
pub fn check_image_name(image: &str) -> Result<(), String> {
    // An OCI reference ("name:tag", "registry/name@sha256:..."): looked up
    // in the image store, never used as a path.
    if crate::oci::is_reference(image) {
        return crate::oci::Reference::parse(image).map(drop).map_err(|e| {
            format!(
                "{:?} is neither a directory image name (1-128 characters of [A-Za-z0-9._-], no leading '.', no '/') nor a valid OCI reference ({e})",
                truncate(image)
            )
        });
    }
    // A single path component: the images dir is opened and the image looked
    // up inside it without following symlinks, never by string join.
    let ok = (1..=128).contains(&image.len())
        && image
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        && !image.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{:?} is not a valid image name: 1-128 characters of [A-Za-z0-9._-], no leading '.', no '/'",
            truncate(image)
        ))
    }
}

fn check_process(
    p: &mut Problems,
    field: &str,
    process: &ProcessSpec,
    policy: &Policy,
    idle: bool,
) {
    let mut bytes = 0usize;
    if process.argv.len() > policy.max_argv {
        p.add(
            format!("{field}.argv"),
            format!(
                "{} entries exceed the limit of {}",
                process.argv.len(),
                policy.max_argv
            ),
        );
    }
    if let Some(first) = process.argv.first() {
        if first.is_empty() {
            p.add(format!("{field}.argv[0]"), "must not be empty");
        }
    }
    for (i, arg) in process.argv.iter().enumerate() {
        bytes = bytes.saturating_add(arg.len() + 1);
        if arg.contains('\0') {
            p.add(format!("{field}.argv[{i}]"), "contains a NUL byte");
        }
    }
    if process.env.len() > policy.max_env {
        p.add(
            format!("{field}.env"),
            format!(
                "{} entries exceed the limit of {}",
                process.env.len(),
                policy.max_env
            ),
        );
    }
    for (i, kv) in process.env.iter().enumerate() {
        bytes = bytes.saturating_add(kv.len() + 1);
        if kv.contains('\0') {
            p.add(format!("{field}.env[{i}]"), "contains a NUL byte");
        } else {
            match kv.split_once('=') {
                Some((k, _)) if !k.is_empty() => {}
                _ => p.add(
                    format!("{field}.env[{i}]"),
                    format!("{:?} is not of the form KEY=VALUE", truncate(kv)),
                ),
            }
        }
    }
    if bytes > policy.max_arg_bytes {
        p.add(
            field,
            format!(
                "argv and env total {bytes} bytes, over the limit of {}",
                policy.max_arg_bytes
            ),
        );
    }
    if !process.cwd.is_empty() {
        check_abs_path(p, &format!("{field}.cwd"), &process.cwd);
    }
    if idle && !process.cwd.is_empty() {
        p.add(format!("{field}.cwd"), "must be empty in IDLE mode");
    }
    for (name, id) in [("uid", process.user.uid), ("gid", process.user.gid)] {
        if id == Some(u32::MAX) {
            p.add(
                format!("{field}.user.{name}"),
                "4294967295 is not a valid id",
            );
        }
    }
    if process.user.additional_gids.len() > policy.max_groups {
        p.add(
            format!("{field}.user.additional_gids"),
            format!(
                "{} groups exceed the limit of {}",
                process.user.additional_gids.len(),
                policy.max_groups
            ),
        );
    }
    if process.user.additional_gids.contains(&u32::MAX) {
        p.add(
            format!("{field}.user.additional_gids"),
            "4294967295 is not a valid id",
        );
    }
}

/// Checks that `path` is absolute and normal (see [`check_absolute_path`]).
/// Returns whether it passed.
fn check_abs_path(p: &mut Problems, field: &str, path: &str) -> bool {
    p.check(field, check_absolute_path(path))
}

/// Why `path` is not absolute and normal, if it is not: no NUL, no `.` or
/// `..` components, no empty components, at most 4096 bytes.
pub fn check_absolute_path(path: &str) -> Result<(), String> {
    let problem = if path.contains('\0') {
        Some("contains a NUL byte".to_owned())
    } else if path.len() > MAX_PATH {
        Some(format!("is longer than {MAX_PATH} bytes"))
    } else if !path.starts_with('/') {
        Some(format!("{:?} is not an absolute path", truncate(path)))
    } else if path.len() > 1 && path.ends_with('/') || path.contains("//") {
        Some(format!("{:?} has empty components", truncate(path)))
    } else if Path::new(path)
        .components()
        .any(|c| matches!(c, Component::ParentDir | Component::CurDir))
        || path.split('/').any(|c| c == "." || c == "..")
    {
        Some(format!(
            "{:?} must not contain '.' or '..' components",
            truncate(path)
        ))
    } else {
        None
    };
    problem.map_or(Ok(()), Err)
}

/// An RFC 1123 label.
fn valid_label(label: &str) -> bool {
    (1..=63).contains(&label.len())
        && label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !label.starts_with('-')
        && !label.ends_with('-')
}

fn check_hostname(p: &mut Problems, hostname: &str) {
    p.check("spec.hostname", check_hostname_value(hostname));
}

/// Why `hostname` is not a valid hostname, if it is not.
pub fn check_hostname_value(hostname: &str) -> Result<(), String> {
    let ok = hostname.len() <= 64 && hostname.split('.').all(valid_label);
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{:?} is not a valid hostname (RFC 1123 labels, at most 64 characters)",
            truncate(hostname)
        ))
    }
}

fn check_network(p: &mut Problems, spec: &SandboxSpec) {
    let net = &spec.network;
    if net.requirement == Requirement::Disabled {
        p.add(
            "spec.network.requirement",
            "DISABLED is not meaningful; use mode HOST to share the host network",
        );
    }
    if net.mode != NetworkMode::Restricted {
        // Empty addresses under RESTRICTED mean "one from the pool".
        let only_restricted = [
            ("spec.network.addresses", !net.addresses.is_empty()),
            ("spec.network.outbound_nat", net.outbound_nat),
            ("spec.network.port_forwards", !net.port_forwards.is_empty()),
        ];
        for (field, set) in only_restricted {
            if set {
                p.add(field, "only allowed with mode RESTRICTED");
            }
        }
    }
    check_namespace_path(p, spec);
    check_port_forwards(p, net);
    check_dns(p, net);
    if net.addresses.len() > 16 {
        p.add(
            "spec.network.addresses",
            format!("{} addresses exceed the limit of 16", net.addresses.len()),
        );
    }
    for (i, a) in net.addresses.iter().enumerate() {
        if a.parse::<IpAddr>().is_err() {
            p.add(
                format!("spec.network.addresses[{i}]"),
                format!("{:?} is not an IPv4 or IPv6 address", truncate(a)),
            );
        }
    }
}

/// Mode NAMESPACE: an absolute, normal `namespace_path` (where it may lie
/// is the daemon's policy, checked when it opens the file), asked for as
/// REQUIRED: a PREFERRED namespace could fall back to another network
/// while whoever made the namespace (CNI) reports its address as the
/// sandbox's. A child sharing its parent's network names none: it
/// inherits the parent's.
fn check_namespace_path(p: &mut Problems, spec: &SandboxSpec) {
    let net = &spec.network;
    let field = "spec.network.namespace_path";
    let shares = spec.join.as_ref().is_some_and(|j| j.network);
    if net.mode != NetworkMode::Namespace {
        if !net.namespace_path.is_empty() {
            p.add(field, "only allowed with mode NAMESPACE");
        }
        return;
    }
    if net.requirement == Requirement::Preferred {
        p.add(
            "spec.network.requirement",
            "PREFERRED is not allowed with mode NAMESPACE: the sandbox runs in the given network namespace or is not created",
        );
    }
    if shares {
        if !net.namespace_path.is_empty() {
            p.add(
                field,
                "must be empty with spec.join.network: the network namespace is the parent's",
            );
        }
    } else if net.namespace_path.is_empty() {
        p.add(field, "required with mode NAMESPACE");
    } else {
        check_abs_path(p, field, &net.namespace_path);
    }
}

/// `spec.join` on its own: a parent id, something shared, and no field
/// that asks for an own namespace of a kind the child shares.
fn check_join(p: &mut Problems, spec: &SandboxSpec) {
    let Some(join) = &spec.join else { return };
    if !is_id(&join.sandbox_id) {
        p.add(
            "spec.join.sandbox_id",
            format!(
                "{:?} is not a sandbox id (16 lowercase hex characters)",
                truncate(&join.sandbox_id)
            ),
        );
    }
    if !(join.network || join.ipc || join.uts || join.pid) {
        p.add("spec.join", "shares nothing: set network, ipc, uts or pid");
    }
    if join.network {
        let net = &spec.network;
        let own = [
            ("spec.network.addresses", !net.addresses.is_empty()),
            ("spec.network.outbound_nat", net.outbound_nat),
            ("spec.network.port_forwards", !net.port_forwards.is_empty()),
        ];
        for (field, set) in own {
            if set {
                p.add(
                    field,
                    "not allowed with spec.join.network: the network (addresses, NAT, forwards) is the parent's",
                );
            }
        }
    }
    if join.ipc && spec.isolation.ipc != Requirement::Unspecified {
        p.add(
            "spec.isolation.ipc",
            "must be UNSPECIFIED with spec.join.ipc: the IPC namespace is the parent's",
        );
    }
    if join.uts {
        if spec.isolation.hostname != Requirement::Unspecified {
            p.add(
                "spec.isolation.hostname",
                "must be UNSPECIFIED with spec.join.uts: the UTS namespace is the parent's",
            );
        }
        if !spec.hostname.is_empty() {
            p.add(
                "spec.hostname",
                "must be empty with spec.join.uts: the hostname is the parent's",
            );
        }
    }
    if join.pid {
        if spec.isolation.pid != Requirement::Unspecified {
            p.add(
                "spec.isolation.pid",
                "must be UNSPECIFIED with spec.join.pid: the pid namespace is the parent's",
            );
        }
        // The parent's pid 1 stays the namespace's init; an image's init
        // (systemd, tini) expects to be pid 1 and would not be.
        if spec.mode == Mode::Init {
            p.add(
                "spec.mode",
                "INIT is not allowed with spec.join.pid: the init would not be pid 1 (the parent's pid 1 is); use PROCESS or IDLE",
            );
        }
    }
}

/// A child's spec (`spec.join`) against its parent's: with
/// `join.network` the child's network mode is the parent's (an unset mode
/// and requirement are filled in from it; another mode is refused, naming
/// the field). The daemon calls this once it has found the parent (and
/// checked its owner and state).
pub fn join_parent(
    spec: ValidatedSpec,
    parent_id: &str,
    parent: &SandboxSpec,
) -> Result<ValidatedSpec, ValidationError> {
    let ValidatedSpec(mut spec, layers) = spec;
    let Some(join) = spec.join.clone() else {
        return Ok(ValidatedSpec(spec, layers));
    };
    let mut p = Problems::default();
    if let Some(grand) = &parent.join {
        p.add(
            "spec.join.sandbox_id",
            format!(
                "sandbox {parent_id} is itself a child of sandbox {}; join that one",
                grand.sandbox_id
            ),
        );
    }
    // The parent's pid 1 must have a pid namespace of its own: without
    // one, sharing it would be sharing the host's.
    if join.pid && parent.isolation.pid == Requirement::Disabled {
        p.add(
            "spec.join.pid",
            format!(
                "sandbox {parent_id} has no pid namespace of its own (isolation.pid DISABLED): sharing it would share the host's"
            ),
        );
    }
    if join.network {
        let (mine, theirs) = (&mut spec.network, &parent.network);
        if mine.mode == NetworkMode::Unspecified {
            mine.mode = theirs.mode;
            if mine.requirement == Requirement::Unspecified {
                mine.requirement = theirs.requirement;
            }
        }
        if mine.mode == theirs.mode {
            // NAMESPACE: the record names the namespace the child runs in
            // (its parent's); the daemon opens nothing for a child.
            mine.namespace_path.clone_from(&theirs.namespace_path);
        } else if mine.mode != theirs.mode {
            p.add(
                "spec.network.mode",
                format!(
                    "{} conflicts with spec.join.network: the network is sandbox {parent_id}'s ({}); leave the mode unset",
                    format!("{:?}", mine.mode).to_uppercase(),
                    format!("{:?}", theirs.mode).to_uppercase()
                ),
            );
        }
    }
    p.finish(ValidatedSpec(spec, layers))
}

/// At most this many port forwards per sandbox.
const MAX_PORT_FORWARDS: usize = 32;

fn check_port_forwards(p: &mut Problems, net: &crate::spec::NetworkPolicy) {
    if net.port_forwards.len() > MAX_PORT_FORWARDS {
        p.add(
            "spec.network.port_forwards",
            format!(
                "{} port forwards exceed the limit of {MAX_PORT_FORWARDS}",
                net.port_forwards.len()
            ),
        );
    }
    let mut seen = std::collections::BTreeSet::new();
    for (i, f) in net.port_forwards.iter().enumerate() {
        for (name, port) in [("host_port", f.host_port), ("sandbox_port", f.sandbox_port)] {
            p.check(
                format!("spec.network.port_forwards[{i}].{name}"),
                check_port(port),
            );
        }
        if !seen.insert((f.protocol, f.host_port)) {
            p.add(
                format!("spec.network.port_forwards[{i}].host_port"),
                format!("{}/{} is forwarded twice", f.host_port, f.protocol.as_str()),
            );
        }
    }
}

/// Why `port` is not a port number, if it is not.
pub fn check_port(port: u32) -> Result<(), String> {
    if (1..=65535).contains(&port) {
        Ok(())
    } else {
        Err(format!("{port} is not a port (1..65535)"))
    }
}

/// resolv.conf(5): glibc reads at most this many nameservers...
pub const MAX_DNS_SERVERS: usize = 3;
/// ...and this many search domains.
pub const MAX_DNS_SEARCH: usize = 6;

fn check_dns(p: &mut Problems, net: &crate::spec::NetworkPolicy) {
    if net.dns_servers.len() > MAX_DNS_SERVERS {
        p.add(
            "spec.network.dns_servers",
            format!("at most {MAX_DNS_SERVERS} nameservers (resolv.conf's limit)"),
        );
    }
    for (i, a) in net.dns_servers.iter().enumerate() {
        if a.parse::<IpAddr>().is_err() {
            p.add(
                format!("spec.network.dns_servers[{i}]"),
                format!("{:?} is not an IPv4 or IPv6 address", truncate(a)),
            );
        }
    }
    if !net.dns_search.is_empty() && net.dns_servers.is_empty() {
        p.add(
            "spec.network.dns_search",
            "search domains need dns_servers too",
        );
    }
    if net.dns_search.len() > MAX_DNS_SEARCH {
        p.add(
            "spec.network.dns_search",
            format!("at most {MAX_DNS_SEARCH} search domains (resolv.conf's limit)"),
        );
    }
    for (i, d) in net.dns_search.iter().enumerate() {
        p.check(
            format!("spec.network.dns_search[{i}]"),
            check_domain_name(d),
        );
    }
}

/// Why `domain` is not a domain name (RFC 1123 labels, an optional
/// trailing dot, at most 253 characters), if it is not.
pub fn check_domain_name(domain: &str) -> Result<(), String> {
    let name = domain.strip_suffix('.').unwrap_or(domain);
    if name.len() > 253 || name.split('.').any(|l| !valid_label(l)) {
        Err(format!("{:?} is not a domain name", truncate(domain)))
    } else {
        Ok(())
    }
}

/// The log's size: defaults filled in (shrunk to fit the daemon's cap, as
/// the disk defaults are), a client's values checked against the bounds.
fn check_logs(p: &mut Problems, logs: &mut crate::spec::LogLimits, policy: &Policy) {
    use crate::logs::{DEFAULT_FILE_BYTES, DEFAULT_FILES, MAX_FILES, MIN_FILE_BYTES};
    if logs.max_files == 0 {
        logs.max_files = DEFAULT_FILES;
    } else if logs.max_files > MAX_FILES {
        p.add(
            "spec.logs.max_files",
            format!("{} is above the maximum of {MAX_FILES}", logs.max_files),
        );
        return;
    }
    let files = u64::from(logs.max_files);
    if logs.max_file_bytes == 0 {
        logs.max_file_bytes = DEFAULT_FILE_BYTES
            .min(policy.max_log_bytes / files)
            .max(MIN_FILE_BYTES);
    } else if logs.max_file_bytes < MIN_FILE_BYTES {
        p.add(
            "spec.logs.max_file_bytes",
            format!(
                "{} is below the minimum of {MIN_FILE_BYTES}",
                logs.max_file_bytes
            ),
        );
        return;
    }
    let total = logs.max_file_bytes.saturating_mul(files);
    if total > policy.max_log_bytes {
        p.add(
            "spec.logs",
            format!(
                "max_file_bytes {} × max_files {} = {total} is above the daemon's max_log_bytes of {} (clients may only lower it)",
                logs.max_file_bytes, logs.max_files, policy.max_log_bytes
            ),
        );
    }
}

fn check_limits(p: &mut Problems, spec: &mut SandboxSpec, policy: &Policy) {
    let l = &mut spec.limits;
    // Defaults, at most the cap: a daemon configured with a small cap
    // shrinks them rather than refusing every spec that sets nothing.
    if l.disk_bytes.is_none() {
        l.disk_bytes = policy.default_disk_bytes.map(|value| Limit {
            value: value.min(policy.max_disk_bytes),
            requirement: Requirement::Preferred,
        });
    }
    for (name, size, default) in [
        ("tmp_bytes", &mut l.tmp_bytes, DEFAULT_TMP_BYTES),
        ("shm_bytes", &mut l.shm_bytes, DEFAULT_SHM_BYTES),
    ] {
        let value = *size.get_or_insert(default.min(policy.max_disk_bytes));
        let field = format!("spec.limits.{name}");
        if value < MIN_TMPFS_BYTES {
            p.add(
                &field,
                format!("{value} is below the minimum of {MIN_TMPFS_BYTES}"),
            );
        } else if value > policy.max_disk_bytes {
            p.add(
                &field,
                format!(
                    "{value} is above the daemon's cap of {} (clients may only lower it)",
                    policy.max_disk_bytes
                ),
            );
        }
    }
    let l = &spec.limits;
    let rows: [(&str, Option<Limit>, u64, u64); 6] = [
        (
            "memory_bytes",
            l.memory_bytes,
            MIN_MEMORY_BYTES,
            policy.max_memory_bytes,
        ),
        ("pids", l.pids, 1, policy.max_pids),
        ("cpu_millis", l.cpu_millis, 1, policy.max_cpu_millis),
        (
            "open_files",
            l.open_files,
            MIN_OPEN_FILES,
            policy.max_open_files,
        ),
        (
            "address_space_bytes",
            l.address_space_bytes,
            MIN_ADDRESS_SPACE_BYTES,
            policy.max_address_space_bytes,
        ),
        (
            "disk_bytes",
            l.disk_bytes,
            MIN_DISK_BYTES,
            policy.max_disk_bytes,
        ),
    ];
    for (name, limit, min, max) in rows {
        let Some(limit) = limit else { continue };
        let field = format!("spec.limits.{name}");
        if limit.requirement == Requirement::Disabled {
            p.add(
                &field,
                "DISABLED is not meaningful for a limit; leave the limit unset",
            );
        }
        if limit.value < min {
            p.add(
                &field,
                format!("{} is below the minimum of {min}", limit.value),
            );
        } else if limit.value > max {
            p.add(
                &field,
                format!(
                    "{} is above the daemon's cap of {max} (clients may only lower limits)",
                    limit.value
                ),
            );
        }
    }
}

/// `spec.limits.cpu_weight`: a relative weight on cgroup v2's scale, not a
/// cap (the daemon's caps do not apply).
fn check_cpu_weight(p: &mut Problems, spec: &SandboxSpec) {
    use crate::spec::{DEFAULT_CPU_WEIGHT, MAX_CPU_WEIGHT, MIN_CPU_WEIGHT};
    let Some(w) = spec.limits.cpu_weight else {
        return;
    };
    let field = "spec.limits.cpu_weight";
    if w.requirement == Requirement::Disabled {
        p.add(
            field,
            "DISABLED is not meaningful for a limit; leave the limit unset",
        );
    }
    if !(MIN_CPU_WEIGHT..=MAX_CPU_WEIGHT).contains(&w.value) {
        p.add(
            field,
            format!(
                "{} is outside {MIN_CPU_WEIGHT}..={MAX_CPU_WEIGHT} (a relative weight on cgroup v2's cpu.weight scale; {DEFAULT_CPU_WEIGHT} is the default)",
                w.value
            ),
        );
    }
}

fn check_mounts(p: &mut Problems, spec: &SandboxSpec, policy: &Policy) {
    if spec.mounts.len() > policy.max_mounts {
        p.add(
            "spec.mounts",
            format!(
                "{} mounts exceed the limit of {}",
                spec.mounts.len(),
                policy.max_mounts
            ),
        );
    }
    let mut targets: Vec<&str> = Vec::new();
    for (i, m) in spec.mounts.iter().enumerate() {
        let field = format!("spec.mounts[{i}]");
        if check_abs_path(p, &format!("{field}.source"), &m.source) {
            let source = Path::new(&m.source);
            let allowed = policy
                .allowed_mount_sources
                .iter()
                .any(|root| source.starts_with(root));
            if !allowed {
                let roots = if policy.allowed_mount_sources.is_empty() {
                    "none are configured".to_owned()
                } else {
                    policy
                        .allowed_mount_sources
                        .iter()
                        .map(|r| r.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                p.add(
                    format!("{field}.source"),
                    format!(
                        "{:?} is not under an allowed mount source ({roots})",
                        truncate(&m.source)
                    ),
                );
            }
        }
        if check_abs_path(p, &format!("{field}.target"), &m.target) {
            if m.target == "/" {
                p.add(
                    format!("{field}.target"),
                    "cannot mount over the sandbox root",
                );
            } else if targets.contains(&m.target.as_str()) {
                p.add(
                    format!("{field}.target"),
                    format!("{:?} is mounted twice", truncate(&m.target)),
                );
            }
            targets.push(&m.target);
        }
    }
}

fn check_labels(p: &mut Problems, spec: &SandboxSpec, policy: &Policy) {
    if spec.labels.len() > policy.max_labels {
        p.add(
            "spec.labels",
            format!(
                "{} labels exceed the limit of {}",
                spec.labels.len(),
                policy.max_labels
            ),
        );
    }
    for (k, v) in &spec.labels {
        p.check("spec.labels", check_label_key(k));
        p.check(
            format!("spec.labels[{}]", truncate(k)),
            check_label_value(v),
        );
    }
}

/// Why `key` is not a label key, if it is not.
pub fn check_label_key(key: &str) -> Result<(), String> {
    let ok = (1..=63).contains(&key.len())
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._/-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "key {:?} must be 1-63 characters of [A-Za-z0-9._/-]",
            truncate(key)
        ))
    }
}

/// Why `value` is not a label value, if it is not.
pub fn check_label_value(value: &str) -> Result<(), String> {
    if value.len() > 255 || value.chars().any(char::is_control) {
        Err("value must be at most 255 characters with no control characters".to_owned())
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{MountSpec, NetworkPolicy, PortForward, Protocol};

    fn forward(host_port: u32, sandbox_port: u32) -> PortForward {
        PortForward {
            protocol: Protocol::Tcp,
            host_port,
            sandbox_port,
        }
    }

    fn base() -> SandboxSpec {
        SandboxSpec {
            process: ProcessSpec {
                argv: vec!["/bin/true".into()],
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn fields(spec: SandboxSpec, policy: &Policy) -> Vec<String> {
        match validate(spec, policy) {
            Ok(_) => Vec::new(),
            Err(e) => e.problems.into_iter().map(|p| p.field).collect(),
        }
    }

    /// `spec.join` on its own: each row's spec and the fields refused.
    #[test]
    fn join_is_validated_field_by_field() {
        use crate::spec::Join;
        const PARENT: &str = "0123456789abcdef";
        let join = |network, ipc, uts| Join {
            sandbox_id: PARENT.into(),
            network,
            ipc,
            uts,
            pid: false,
        };
        let pid = Join {
            pid: true,
            ..join(false, false, false)
        };
        let idle = |j: Join| SandboxSpec {
            mode: Mode::Idle,
            join: Some(j),
            ..Default::default()
        };
        let restricted = NetworkPolicy {
            mode: NetworkMode::Restricted,
            ..Default::default()
        };
        let cases: Vec<(&str, SandboxSpec, Vec<&str>)> = vec![
            ("a pod container", idle(join(true, true, true)), vec![]),
            ("network only", idle(join(true, false, false)), vec![]),
            (
                "with a process",
                SandboxSpec {
                    join: Some(join(false, true, false)),
                    ..base()
                },
                vec![],
            ),
            (
                "not an id",
                idle(Join {
                    sandbox_id: "my-pod".into(),
                    ..join(true, true, true)
                }),
                vec!["spec.join.sandbox_id"],
            ),
            (
                "shares nothing",
                idle(join(false, false, false)),
                vec!["spec.join"],
            ),
            (
                "own addresses, NAT and forwards",
                SandboxSpec {
                    network: NetworkPolicy {
                        addresses: vec!["203.0.113.5".into()],
                        outbound_nat: true,
                        port_forwards: vec![forward(8080, 80)],
                        ..restricted.clone()
                    },
                    ..idle(join(true, false, false))
                },
                vec![
                    "spec.network.addresses",
                    "spec.network.outbound_nat",
                    "spec.network.port_forwards",
                ],
            ),
            (
                "own addresses without joining the network",
                SandboxSpec {
                    network: NetworkPolicy {
                        addresses: vec!["203.0.113.5".into()],
                        ..restricted.clone()
                    },
                    ..idle(join(false, true, true))
                },
                vec![],
            ),
            (
                "own ipc asked for",
                SandboxSpec {
                    isolation: crate::spec::Isolation {
                        ipc: Requirement::Required,
                        ..Default::default()
                    },
                    ..idle(join(false, true, false))
                },
                vec!["spec.isolation.ipc"],
            ),
            (
                "host ipc asked for",
                SandboxSpec {
                    isolation: crate::spec::Isolation {
                        ipc: Requirement::Disabled,
                        ..Default::default()
                    },
                    ..idle(join(false, true, false))
                },
                vec!["spec.isolation.ipc"],
            ),
            (
                "own hostname",
                SandboxSpec {
                    hostname: "web".into(),
                    ..idle(join(false, false, true))
                },
                vec!["spec.hostname"],
            ),
            (
                "hostname isolation asked for",
                SandboxSpec {
                    isolation: crate::spec::Isolation {
                        hostname: Requirement::Preferred,
                        ..Default::default()
                    },
                    ..idle(join(false, false, true))
                },
                vec!["spec.isolation.hostname"],
            ),
            (
                "own hostname, uts not shared",
                SandboxSpec {
                    hostname: "web".into(),
                    ..idle(join(true, true, false))
                },
                vec![],
            ),
            ("pid only", idle(pid.clone()), vec![]),
            (
                "pid with a process",
                SandboxSpec {
                    join: Some(pid.clone()),
                    ..base()
                },
                vec![],
            ),
            (
                "own pid namespace asked for",
                SandboxSpec {
                    isolation: crate::spec::Isolation {
                        pid: Requirement::Required,
                        ..Default::default()
                    },
                    ..idle(pid.clone())
                },
                vec!["spec.isolation.pid"],
            ),
            (
                "host pid namespace asked for",
                SandboxSpec {
                    isolation: crate::spec::Isolation {
                        pid: Requirement::Disabled,
                        ..Default::default()
                    },
                    ..idle(pid.clone())
                },
                vec!["spec.isolation.pid"],
            ),
            (
                "an init sharing the pid namespace",
                SandboxSpec {
                    mode: Mode::Init,
                    join: Some(pid.clone()),
                    ..Default::default()
                },
                vec!["spec.mode"],
            ),
            (
                "an init, pid not shared",
                SandboxSpec {
                    mode: Mode::Init,
                    join: Some(join(true, true, true)),
                    ..Default::default()
                },
                vec![],
            ),
        ];
        for (name, spec, want) in cases {
            assert_eq!(fields(spec, &Policy::default()), want, "{name}");
        }
    }

    /// `join_parent`: the child's network mode becomes the parent's; a
    /// different one, or a parent that is itself a child, is refused.
    #[test]
    fn join_parent_inherits_the_network_or_refuses_a_conflict() {
        use crate::spec::{Join, NetworkPolicy};
        const PARENT: &str = "0123456789abcdef";
        let child = |mode: NetworkMode, network: bool| {
            validate(
                SandboxSpec {
                    mode: Mode::Idle,
                    network: NetworkPolicy {
                        mode,
                        ..Default::default()
                    },
                    join: Some(Join {
                        sandbox_id: PARENT.into(),
                        network,
                        ipc: true,
                        uts: false,
                        pid: false,
                    }),
                    ..Default::default()
                },
                &Policy::default(),
            )
            .expect("valid child")
        };
        let parent = |mode: NetworkMode, requirement: Requirement| SandboxSpec {
            mode: Mode::Idle,
            network: NetworkPolicy {
                mode,
                requirement,
                ..Default::default()
            },
            ..Default::default()
        };
        use NetworkMode::{Host, Loopback, None as NoNet, Restricted, Unspecified};
        // (child's mode, joins the network, parent's mode) -> the child's
        // mode after, or the refused field.
        let cases = [
            (Unspecified, true, Loopback, Ok(Loopback)),
            (Unspecified, true, Restricted, Ok(Restricted)),
            (Unspecified, true, Host, Ok(Host)),
            (Unspecified, true, Unspecified, Ok(Unspecified)),
            (Loopback, true, Loopback, Ok(Loopback)),
            (NoNet, true, Loopback, Err("spec.network.mode")),
            (Host, true, Loopback, Err("spec.network.mode")),
            (Loopback, true, Restricted, Err("spec.network.mode")),
            // Not joining the network: the child's own, whatever the parent's.
            (Loopback, false, Restricted, Ok(Loopback)),
            (Unspecified, false, Host, Ok(Unspecified)),
        ];
        for (mine, network, theirs, want) in cases {
            let got = join_parent(
                child(mine, network),
                PARENT,
                &parent(theirs, Requirement::Preferred),
            )
            .map(|v| v.spec().network.mode)
            .map_err(|e| e.problems[0].field.clone());
            assert_eq!(
                got,
                want.map_err(String::from),
                "{mine:?} joining {theirs:?}"
            );
        }
        // NAMESPACE: the child names no path and runs in the parent's,
        // which its spec then names; its own path is refused.
        let mut ns_parent = parent(NetworkMode::Namespace, Requirement::Required);
        ns_parent.network.namespace_path = "/run/netns/cni-1".into();
        let v = join_parent(child(Unspecified, true), PARENT, &ns_parent).expect("inherits");
        assert_eq!(v.spec().network.mode, NetworkMode::Namespace);
        assert_eq!(v.spec().network.namespace_path, "/run/netns/cni-1");
        let mut own = SandboxSpec {
            mode: Mode::Idle,
            join: Some(Join {
                sandbox_id: PARENT.into(),
                network: true,
                ipc: false,
                uts: false,
                pid: false,
            }),
            ..Default::default()
        };
        own.network.mode = NetworkMode::Namespace;
        own.network.namespace_path = "/run/netns/cni-2".into();
        assert_eq!(
            fields(own, &Policy::default()),
            vec!["spec.network.namespace_path"]
        );
        // The requirement comes along with an inherited mode.
        let v = join_parent(
            child(Unspecified, true),
            PARENT,
            &parent(Loopback, Requirement::Preferred),
        )
        .expect("inherits");
        assert_eq!(v.spec().network.requirement, Requirement::Preferred);
        // A grandchild is refused: one level of pods.
        let mut grand = parent(Loopback, Requirement::Required);
        grand.join = Some(Join {
            sandbox_id: "fedcba9876543210".into(),
            network: true,
            ..Default::default()
        });
        // Sharing the pid namespace of a parent that has none of its own
        // would share the host's.
        let pid_child = validate(
            SandboxSpec {
                mode: Mode::Idle,
                join: Some(Join {
                    sandbox_id: PARENT.into(),
                    pid: true,
                    ..Default::default()
                }),
                ..Default::default()
            },
            &Policy::default(),
        )
        .expect("valid pid child");
        let mut host_pid = parent(Loopback, Requirement::Required);
        host_pid.isolation.pid = Requirement::Disabled;
        let e = join_parent(pid_child.clone(), PARENT, &host_pid).expect_err("host pid ns");
        assert_eq!(e.problems.len(), 1, "{e}");
        assert_eq!(e.problems[0].field, "spec.join.pid");
        join_parent(pid_child, PARENT, &parent(Loopback, Requirement::Required))
            .expect("an own pid namespace can be shared");
        let e = join_parent(child(Unspecified, true), PARENT, &grand).expect_err("grandchild");
        assert_eq!(e.problems[0].field, "spec.join.sandbox_id");
        assert!(e.problems[0].message.contains("fedcba9876543210"), "{e}");
        // The message names both modes.
        let e = join_parent(
            child(NoNet, true),
            PARENT,
            &parent(Loopback, Requirement::Required),
        )
        .expect_err("conflict");
        assert!(
            e.to_string().contains("NONE") && e.to_string().contains("LOOPBACK"),
            "{e}"
        );
    }

    #[test]
    fn valid_minimal_spec_gets_defaults() {
        let v = validate(base(), &Policy::default()).expect("valid");
        assert_eq!(v.spec().image, "host");
        assert_eq!(v.spec().stop_signal, DEFAULT_STOP_SIGNAL);
        assert_eq!(v.spec().process.cwd(), "/");
    }

    #[test]
    fn log_sizes_default_within_the_cap_and_a_client_may_only_lower_them() {
        use crate::logs::{DEFAULT_FILE_BYTES, DEFAULT_FILES, MIN_FILE_BYTES};
        use crate::spec::LogLimits;
        let cap = |max_log_bytes| Policy {
            max_log_bytes,
            ..Policy::default()
        };
        let logs = |max_file_bytes, max_files| LogLimits {
            max_file_bytes,
            max_files,
        };
        // (asked, daemon cap) -> filled in, or the field refused
        let rows: [(LogLimits, u64, Result<LogLimits, &str>); 8] = [
            (
                logs(0, 0),
                64 << 20,
                Ok(logs(DEFAULT_FILE_BYTES, DEFAULT_FILES)),
            ),
            (logs(0, 0), 3 << 20, Ok(logs(1 << 20, DEFAULT_FILES))),
            (logs(0, 0), MIN_FILE_BYTES, Err("spec.logs")),
            (logs(1 << 20, 2), 64 << 20, Ok(logs(1 << 20, 2))),
            (logs(0, 1), 64 << 20, Ok(logs(DEFAULT_FILE_BYTES, 1))),
            (logs(1024, 2), 64 << 20, Err("spec.logs.max_file_bytes")),
            (logs(1 << 20, 17), 64 << 20, Err("spec.logs.max_files")),
            (logs(40 << 20, 2), 64 << 20, Err("spec.logs")),
        ];
        for (asked, max, want) in rows {
            let mut s = base();
            s.logs = asked;
            match (validate(s.clone(), &cap(max)), want) {
                (Ok(v), Ok(want)) => assert_eq!(v.spec().logs, want, "{asked:?} under {max}"),
                (Err(e), Err(field)) => assert_eq!(
                    e.problems
                        .iter()
                        .map(|p| p.field.as_str())
                        .collect::<Vec<_>>(),
                    vec![field],
                    "{asked:?} under {max}"
                ),
                (got, want) => panic!("{asked:?} under {max}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn cpu_weight_range_and_conversions() {
        use crate::spec::{cpu_shares_of_weight, cpu_weight_of_shares};
        for (value, ok) in [
            (1, true),
            (100, true),
            (10_000, true),
            (0, false),
            (10_001, false),
        ] {
            let mut s = base();
            s.limits.cpu_weight = Some(Limit {
                value,
                requirement: Requirement::Unspecified,
            });
            let got = validate(s, &Policy::default());
            assert_eq!(got.is_ok(), ok, "weight {value}: {got:?}");
            if let Err(e) = got {
                assert!(
                    e.problems[0].message.contains("1..=10000"),
                    "{:?}",
                    e.problems
                );
            }
        }
        // runc/crun's shares -> weight; out of the kernel's range: none.
        for (shares, weight) in [
            (2, Some(1)),
            (1024, Some(39)),
            (2048, Some(79)),
            (262_144, Some(10_000)),
            (0, None),
            (1, None),
            (262_145, None),
        ] {
            assert_eq!(cpu_weight_of_shares(shares), weight, "shares {shares}");
        }
        // weight -> v1 shares: the defaults meet, ratios are kept.
        for (weight, shares) in [(100, 1024), (1, 10), (400, 4096), (10_000, 102_400)] {
            assert_eq!(cpu_shares_of_weight(weight), shares, "weight {weight}");
        }
    }

    #[test]
    fn init_defaults_argv_and_idle_rejects_argv() {
        let mut s = base();
        s.mode = Mode::Init;
        s.process.argv.clear();
        assert_eq!(
            validate(s, &Policy::default())
                .expect("valid")
                .spec()
                .process
                .argv,
            vec![DEFAULT_INIT]
        );
        let mut s = base();
        s.mode = Mode::Idle;
        assert_eq!(fields(s, &Policy::default()), vec!["spec.process.argv"]);
    }

    #[test]
    fn table_of_bad_specs() {
        let policy = Policy {
            allowed_mount_sources: vec!["/srv/data".into()],
            allowed_rootfs_sources: vec!["/run/ctd".into()],
            ..Policy::default()
        };
        type Edit = fn(&mut SandboxSpec);
        let cases: &[(&str, Edit, &[&str])] = &[
            (
                "rootfs relative",
                |s| s.rootfs = "run/ctd/a/rootfs".into(),
                &["spec.rootfs"],
            ),
            (
                "rootfs outside the allow-list",
                |s| s.rootfs = "/etc/rootfs".into(),
                &["spec.rootfs"],
            ),
            (
                "rootfs is the allowed root itself",
                |s| s.rootfs = "/run/ctd".into(),
                &["spec.rootfs"],
            ),
            (
                "rootfs escapes with ..",
                |s| s.rootfs = "/run/ctd/../../etc".into(),
                &["spec.rootfs"],
            ),
            (
                "rootfs prefix but not below",
                |s| s.rootfs = "/run/ctdx/rootfs".into(),
                &["spec.rootfs"],
            ),
            (
                "rootfs named like the host image",
                |s| s.rootfs = "/run/ctd/a/host".into(),
                &["spec.rootfs"],
            ),
            (
                "rootfs with a bad last component",
                |s| s.rootfs = "/run/ctd/a/ro ot".into(),
                &["spec.rootfs"],
            ),
            (
                "rootfs and another image",
                |s| {
                    s.rootfs = "/run/ctd/a/rootfs".into();
                    s.image = "busybox".into();
                },
                &["spec.image"],
            ),
            (
                "NAMESPACE without a namespace path",
                |s| s.network.mode = NetworkMode::Namespace,
                &["spec.network.namespace_path"],
            ),
            (
                "namespace path escapes with ..",
                |s| {
                    s.network.mode = NetworkMode::Namespace;
                    s.network.namespace_path = "/run/netns/../../proc/1/ns/net".into();
                },
                &["spec.network.namespace_path"],
            ),
            (
                "namespace path relative",
                |s| {
                    s.network.mode = NetworkMode::Namespace;
                    s.network.namespace_path = "run/netns/cni-1".into();
                },
                &["spec.network.namespace_path"],
            ),
            (
                "namespace path without mode NAMESPACE",
                |s| {
                    s.network.mode = NetworkMode::Loopback;
                    s.network.namespace_path = "/run/netns/cni-1".into();
                },
                &["spec.network.namespace_path"],
            ),
            (
                "NAMESPACE as PREFERRED",
                |s| {
                    s.network.mode = NetworkMode::Namespace;
                    s.network.requirement = Requirement::Preferred;
                    s.network.namespace_path = "/run/netns/cni-1".into();
                },
                &["spec.network.requirement"],
            ),
            (
                "empty argv",
                |s| s.process.argv.clear(),
                &["spec.process.argv"],
            ),
            (
                "empty argv0",
                |s| s.process.argv = vec![String::new()],
                &["spec.process.argv[0]"],
            ),
            (
                "nul in argv",
                |s| s.process.argv.push("a\0b".into()),
                &["spec.process.argv[1]"],
            ),
            (
                "nul in env",
                |s| s.process.env.push("A=\0".into()),
                &["spec.process.env[0]"],
            ),
            (
                "env without =",
                |s| s.process.env.push("NOEQUALS".into()),
                &["spec.process.env[0]"],
            ),
            (
                "env empty key",
                |s| s.process.env.push("=x".into()),
                &["spec.process.env[0]"],
            ),
            (
                "huge env",
                |s| s.process.env = vec!["A=".to_owned() + &"x".repeat(300_000)],
                &["spec.process"],
            ),
            (
                "too many env",
                |s| s.process.env = vec!["A=b".into(); 2000],
                &["spec.process.env"],
            ),
            (
                "relative cwd",
                |s| s.process.cwd = "tmp".into(),
                &["spec.process.cwd"],
            ),
            (
                "dotdot cwd",
                |s| s.process.cwd = "/tmp/../etc".into(),
                &["spec.process.cwd"],
            ),
            (
                "image traversal",
                |s| s.image = "../etc".into(),
                &["spec.image"],
            ),
            (
                "image absolute",
                |s| s.image = "/etc".into(),
                &["spec.image"],
            ),
            (
                "image bad reference",
                |s| s.image = "a/../b:1".into(),
                &["spec.image"],
            ),
            (
                "image reference with uppercase",
                |s| s.image = "Busybox:1".into(),
                &["spec.image"],
            ),
            ("image dot", |s| s.image = ".".into(), &["spec.image"]),
            ("image nul", |s| s.image = "a\0".into(), &["spec.image"]),
            ("bad name", |s| s.name = "Bad_Name".into(), &["spec.name"]),
            (
                "name like id",
                |s| s.name = "0123456789abcdef".into(),
                &["spec.name"],
            ),
            (
                "bad hostname",
                |s| s.hostname = "-x".into(),
                &["spec.hostname"],
            ),
            (
                "fs disabled",
                |s| s.isolation.filesystem = Requirement::Disabled,
                &["spec.isolation.filesystem"],
            ),
            (
                "nat and forwards outside RESTRICTED",
                |s| {
                    s.network = NetworkPolicy {
                        mode: NetworkMode::Loopback,
                        outbound_nat: true,
                        port_forwards: vec![forward(8080, 80)],
                        ..Default::default()
                    }
                },
                &["spec.network.outbound_nat", "spec.network.port_forwards"],
            ),
            (
                "bad forwards",
                |s| {
                    s.network = NetworkPolicy {
                        mode: NetworkMode::Restricted,
                        port_forwards: vec![
                            forward(0, 80),
                            forward(8080, 70000),
                            forward(8080, 81),
                        ],
                        ..Default::default()
                    }
                },
                &[
                    "spec.network.port_forwards[0].host_port",
                    "spec.network.port_forwards[1].sandbox_port",
                    "spec.network.port_forwards[2].host_port",
                ],
            ),
            (
                "bad dns",
                |s| {
                    s.network.dns_servers = vec!["8.8.8".into()];
                    s.network.dns_search = vec!["ex..ample".into()];
                },
                &["spec.network.dns_servers[0]", "spec.network.dns_search[0]"],
            ),
            (
                "search without servers",
                |s| s.network.dns_search = vec!["example.org".into()],
                &["spec.network.dns_search"],
            ),
            (
                "bad address",
                |s| {
                    s.network = NetworkPolicy {
                        mode: NetworkMode::Restricted,
                        addresses: vec!["300.1.1.1".into()],
                        ..Default::default()
                    }
                },
                &["spec.network.addresses[0]"],
            ),
            (
                "memory too small",
                |s| {
                    s.limits.memory_bytes = Some(Limit {
                        value: 1,
                        requirement: Requirement::Required,
                    })
                },
                &["spec.limits.memory_bytes"],
            ),
            (
                "pids above cap",
                |s| {
                    s.limits.pids = Some(Limit {
                        value: u64::MAX,
                        requirement: Requirement::Unspecified,
                    })
                },
                &["spec.limits.pids"],
            ),
            (
                "disk too small",
                |s| {
                    s.limits.disk_bytes = Some(Limit {
                        value: 4096,
                        requirement: Requirement::Required,
                    })
                },
                &["spec.limits.disk_bytes"],
            ),
            (
                "disk above the cap",
                |s| {
                    s.limits.disk_bytes = Some(Limit {
                        value: DEFAULT_DISK_BYTES + 1,
                        requirement: Requirement::Preferred,
                    })
                },
                &["spec.limits.disk_bytes"],
            ),
            (
                "disk disabled",
                |s| {
                    s.limits.disk_bytes = Some(Limit {
                        value: 64 << 20,
                        requirement: Requirement::Disabled,
                    })
                },
                &["spec.limits.disk_bytes"],
            ),
            (
                "cpu weight 0",
                |s| {
                    s.limits.cpu_weight = Some(Limit {
                        value: 0,
                        requirement: Requirement::Required,
                    })
                },
                &["spec.limits.cpu_weight"],
            ),
            (
                "cpu weight above cgroup v2's range",
                |s| {
                    s.limits.cpu_weight = Some(Limit {
                        value: 10_001,
                        requirement: Requirement::Preferred,
                    })
                },
                &["spec.limits.cpu_weight"],
            ),
            (
                "cpu weight disabled",
                |s| {
                    s.limits.cpu_weight = Some(Limit {
                        value: 100,
                        requirement: Requirement::Disabled,
                    })
                },
                &["spec.limits.cpu_weight"],
            ),
            (
                "tmp and shm too small",
                |s| {
                    s.limits.tmp_bytes = Some(0);
                    s.limits.shm_bytes = Some(MIN_TMPFS_BYTES - 1);
                },
                &["spec.limits.tmp_bytes", "spec.limits.shm_bytes"],
            ),
            (
                "shm above the cap",
                |s| s.limits.shm_bytes = Some(DEFAULT_DISK_BYTES * 2),
                &["spec.limits.shm_bytes"],
            ),
            (
                "mount outside allowlist",
                |s| {
                    s.mounts.push(MountSpec {
                        source: "/etc".into(),
                        target: "/x".into(),
                        read_only: true,
                    })
                },
                &["spec.mounts[0].source"],
            ),
            (
                "mount source traversal",
                |s| {
                    s.mounts.push(MountSpec {
                        source: "/srv/data/../../etc".into(),
                        target: "/x".into(),
                        read_only: true,
                    })
                },
                &["spec.mounts[0].source"],
            ),
            (
                "mount over root",
                |s| {
                    s.mounts.push(MountSpec {
                        source: "/srv/data".into(),
                        target: "/".into(),
                        read_only: true,
                    })
                },
                &["spec.mounts[0].target"],
            ),
            (
                "bad stop signal",
                |s| s.stop_signal = 99,
                &["spec.stop_signal"],
            ),
            (
                "uid -1",
                |s| s.process.user.uid = Some(u32::MAX),
                &["spec.process.user.uid"],
            ),
            ("tty main", |s| s.process.tty = true, &["spec.process.tty"]),
        ];
        for (what, edit, want) in cases {
            let mut s = base();
            edit(&mut s);
            assert_eq!(&fields(s, &policy), want, "case {what}");
        }
    }

    #[test]
    fn storage_defaults_are_filled_in_and_capped() {
        let got = |policy: &Policy, edit: fn(&mut SandboxSpec)| {
            let mut s = base();
            edit(&mut s);
            validate(s, policy).expect("valid").spec().limits
        };
        // The daemon's default disk limit is PREFERRED: enforced where the
        // backend can, reported as degraded where it cannot.
        let l = got(&Policy::default(), |_| {});
        assert_eq!(
            l.disk_bytes,
            Some(Limit {
                value: DEFAULT_DISK_BYTES,
                requirement: Requirement::Preferred
            })
        );
        assert_eq!(l.tmp_bytes, Some(DEFAULT_TMP_BYTES));
        assert_eq!(l.shm_bytes, Some(DEFAULT_SHM_BYTES));
        // A client's own values stay as they are (UNSPECIFIED = REQUIRED).
        let l = got(&Policy::default(), |s| {
            s.limits.disk_bytes = Some(Limit {
                value: 32 << 20,
                requirement: Requirement::Unspecified,
            });
            s.limits.tmp_bytes = Some(8 << 20);
        });
        assert_eq!(l.disk_bytes.map(|d| d.value), Some(32 << 20));
        assert_eq!(
            l.disk_bytes.map(|d| d.requirement),
            Some(Requirement::Unspecified)
        );
        assert_eq!(l.tmp_bytes, Some(8 << 20));
        // A small cap shrinks the defaults instead of refusing.
        let small = Policy {
            default_disk_bytes: Some(1 << 30),
            max_disk_bytes: 16 << 20,
            ..Policy::default()
        };
        let l = got(&small, |_| {});
        assert_eq!(l.disk_bytes.map(|d| d.value), Some(16 << 20));
        assert_eq!((l.tmp_bytes, l.shm_bytes), (Some(16 << 20), Some(16 << 20)));
        // No default: no disk limit unless the client sets one.
        let off = Policy {
            default_disk_bytes: None,
            max_disk_bytes: 1 << 40,
            ..Policy::default()
        };
        assert_eq!(got(&off, |_| {}).disk_bytes, None);
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let mut s = base();
        s.image = "../x".into();
        s.name = "UPPER".into();
        s.process.argv = vec!["a\0".into()];
        s.process.cwd = "rel".into();
        let err = validate(s, &Policy::default()).expect_err("invalid");
        assert_eq!(err.problems.len(), 4, "{err}");
    }

    #[test]
    fn allowed_rootfs_becomes_the_image_in_its_parent() {
        let policy = Policy {
            allowed_rootfs_sources: vec!["/run/ctd".into()],
            ..Policy::default()
        };
        let mut s = base();
        s.rootfs = "/run/ctd/ns/c1/rootfs".into();
        let v = validate(s, &policy).expect("valid");
        assert_eq!(v.spec().image(), "rootfs");
        assert!(v.spec().image_dir_no_symlinks());
        assert_eq!(
            v.spec().image_dir(Path::new("/var/lib/sandboxd/images")),
            Path::new("/run/ctd/ns/c1")
        );
        // Without a rootfs: the daemon's images dir, opened as configured.
        let v = validate(base(), &policy).expect("valid");
        assert!(!v.spec().image_dir_no_symlinks());
        assert_eq!(
            v.spec().image_dir(Path::new("/var/lib/sandboxd/images")),
            Path::new("/var/lib/sandboxd/images")
        );
    }

    #[test]
    fn allowed_mount_passes() {
        let policy = Policy {
            allowed_mount_sources: vec!["/srv/data".into()],
            ..Policy::default()
        };
        let mut s = base();
        s.mounts.push(MountSpec {
            source: "/srv/data/sub".into(),
            target: "/data".into(),
            read_only: false,
        });
        assert!(validate(s, &policy).is_ok());
    }

    #[test]
    fn refs_and_request_ids() {
        assert!(validate_ref("id", "0123456789abcdef").is_ok());
        assert!(validate_ref("id", "web-1").is_ok());
        assert!(validate_ref("id", "").is_err());
        assert!(validate_ref("id", "../../etc").is_err());
        assert!(validate_request_id("req-1.a_b").is_ok());
        assert!(validate_request_id("bad/id").is_err());
        assert!(validate_request_id(&"x".repeat(129)).is_err());
    }
}
