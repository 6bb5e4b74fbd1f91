//! The typed, serializable executable plan the runtime supervisor executes.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::network::HostNet;

/// A `jail_set(2)` "jailsys" value: how a jail relates to a kernel subsystem.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Jsys {
    /// `JAIL_SYS_DISABLE` (0): no access.
    Disable,
    /// `JAIL_SYS_NEW` (1): its own instance.
    New,
    /// `JAIL_SYS_INHERIT` (2): the parent's (the host's).
    Inherit,
}

impl Jsys {
    /// The jail(8) spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::New => "new",
            Self::Inherit => "inherit",
        }
    }
}

/// A jail parameter's value, typed as `jail_set(2)` expects it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParamValue {
    /// A string (path, name, hostname).
    Str(String),
    /// An integer.
    Int(i64),
    /// A boolean (`allow.*`, `persist`).
    Bool(bool),
    /// A jailsys value.
    Jsys(Jsys),
    /// IPv4 addresses.
    Ip4(Vec<Ipv4Addr>),
    /// IPv6 addresses.
    Ip6(Vec<Ipv6Addr>),
}

impl ParamValue {
    /// The jail(8) spelling: booleans as 0/1, address lists comma-separated.
    pub fn render(&self) -> String {
        fn join<T: ToString>(v: &[T]) -> String {
            v.iter().map(T::to_string).collect::<Vec<_>>().join(",")
        }
        match self {
            Self::Str(s) => s.clone(),
            Self::Int(n) => n.to_string(),
            Self::Bool(b) => u8::from(*b).to_string(),
            Self::Jsys(j) => j.as_str().to_owned(),
            Self::Ip4(a) => join(a),
            Self::Ip6(a) => join(a),
        }
    }
}

/// One jail parameter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JailParam {
    /// Name, e.g. "host.hostname".
    pub name: String,
    /// Value.
    pub value: ParamValue,
}

/// Filesystem type of a mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fstype {
    /// nullfs (a bind mount).
    Nullfs,
    /// devfs.
    Devfs,
    /// tmpfs.
    Tmpfs,
}

impl Fstype {
    /// The `nmount(2)` name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Nullfs => "nullfs",
            Self::Devfs => "devfs",
            Self::Tmpfs => "tmpfs",
        }
    }
}

/// Where a mount comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MountSource {
    /// A kernel filesystem with no backing path.
    Pseudo,
    /// A host path. Client mount sources are opened beneath their allowed
    /// root (`O_RESOLVE_BENEATH`), never string-joined.
    Host(PathBuf),
    /// An image, looked up by name in the images directory without
    /// following symlinks.
    Image(String),
    /// An OCI image's unpacked layers (paths relative to the images dir,
    /// base first): the supervisor flattens them into the sandbox's own
    /// `oci-root` directory ([`JailPlan::oci_root_path`]), which is then
    /// nullfs-mounted. A private copy: the sandbox's writes never reach the
    /// shared store, and no union filesystem is involved.
    ImageLayers(Vec<PathBuf>),
    /// The generated `resolv.conf` in the sandbox's directory (the plan's
    /// `resolv_conf`), a single file mounted over the image's own.
    ResolvConf,
    /// An empty mode-000 regular file the supervisor creates as
    /// `<sandbox dir>/masked`, mounted over the sandboxd binary where the
    /// `host` image shows it: a payload can neither read nor run it.
    Masked,
}

/// One mount, made on the host under the jail's root before the jail is
/// created (FreeBSD has no mount namespaces; `enforce_statfs=2` hides every
/// mount outside the jail from it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JailMount {
    /// Filesystem type.
    pub fstype: Fstype,
    /// Source.
    pub source: MountSource,
    /// Absolute path inside the jail ("/" is its root), resolved beneath the
    /// root without following symlinks; created when missing and the root is
    /// writable.
    pub target: String,
    /// `nmount(2)` options, "name" or "name=value" ("ro", "ruleset=4").
    pub options: Vec<String>,
    /// `MNT_UPDATE` of an existing mount rather than a new one.
    pub update: bool,
    /// After mounting, the mounted directory's mode is set to this with
    /// `fchmod(2)`. The `host` image's tmpfs root gets its mode this way,
    /// not with tmpfs's `mode` option: on a later `MNT_UPDATE` (the
    /// read-only remount) the kernel merges the mount's earlier options
    /// back in, and tmpfs refuses `mode` on an update.
    #[serde(default)]
    pub chmod: Option<u32>,
}

/// An rctl resource limited per jail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RctlResource {
    /// Virtual memory in bytes: the sum of the address-space sizes of the
    /// jail's processes. Deniable: a mapping, `brk` or `fork` that would
    /// take the sum over the limit fails with ENOMEM. (Resident memory,
    /// `memoryuse`, is not used: racct only asks the VM daemon to reclaim
    /// pages above it and never refuses an allocation.)
    Vmemoryuse,
    /// Number of processes.
    Maxproc,
    /// CPU time, percent of one CPU.
    Pcpu,
}

impl RctlResource {
    /// The rctl(8) name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Vmemoryuse => "vmemoryuse",
            Self::Maxproc => "maxproc",
            Self::Pcpu => "pcpu",
        }
    }
}

/// An rctl rule `jail:<jail>:<resource>:deny=<amount>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RctlRule {
    /// The jail's name.
    pub jail: String,
    /// Resource.
    pub resource: RctlResource,
    /// Amount.
    pub amount: u64,
}

impl RctlRule {
    /// The rule as `rctl_add_rule(2)` and rctl(8) take it.
    pub fn render(&self) -> String {
        format!(
            "jail:{}:{}:deny={}",
            self.jail,
            self.resource.as_str(),
            self.amount
        )
    }
}

pub use sandboxd_core::backend::{Rlimit, RlimitKind};

/// Who runs a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Actor {
    /// The daemon, before the supervisor starts (`Backend::prepare`).
    Daemon,
    /// The per-sandbox supervisor, on the host.
    Supervisor,
    /// The forked first process, which attaches to the jail.
    Child,
}

/// One step of the runtime, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JailStep {
    /// Check that each of `host_net.present` is configured on a host
    /// interface.
    CheckAddresses,
    /// Add each of `host_net.aliases` to its interface (ifconfig alias),
    /// recording it in the sandbox directory so cleanup can remove it.
    AddAliases,
    /// Load `host_net.pf_rules` into the anchor (`pfctl -a ANCHOR -f -`).
    LoadPfRules,
    /// Write `resolv_conf` to `<sandbox dir>/resolv.conf`, which the mounts
    /// then put over the jail's `/etc/resolv.conf`.
    WriteResolvConf,
    /// Perform the plan's `mounts` in order.
    Mounts,
    /// Add this /32 alias to lo0 (LOOPBACK without VIMAGE). The daemon adds
    /// it in `Backend::prepare` and records it in the sandbox directory
    /// like the RESTRICTED aliases, so `Backend::cleanup` removes it by the
    /// sandbox id alone, even after the supervisor was SIGKILLed. Fails if
    /// the address is already on the host (another sandbox whose id maps to
    /// it, or a leak): it is never shared, and never removed by a sandbox
    /// that did not add it.
    AddLoopbackAlias(Ipv4Addr),
    /// `jail_set(JAIL_CREATE)` with exactly the plan's `params`, which
    /// always hold `persist`: the jail stays until teardown or cleanup
    /// removes it (`jail_remove`), never by the kernel's choice.
    CreateJail,
    /// `rctl_add_rule(2)` for each of the plan's `rctl_rules`, before any
    /// process enters the jail.
    RctlRules,
    /// In a vnet jail, a short-lived child attaches and adds 127.0.0.1/8
    /// to lo0 (`SIOCAIFADDR`), which brings it up; the kernel then gives
    /// an up loopback ::1 itself (seen on FreeBSD 15.1).
    LoopbackUp,
    /// `procctl(P_PID, self, PROC_REAP_ACQUIRE)`: orphans of the sandbox are
    /// reparented to the supervisor, which sees every exit.
    ReapAcquire,
    /// `fork(2)`.
    Fork,
    /// `jail_attach(jid)`: enters the jail and chroots to its path.
    JailAttach,
    /// `setrlimit(2)`.
    SetRlimit(Rlimit),
    /// `procctl(PROC_NO_NEW_PRIVS_CTL, PROC_NO_NEW_PRIVS_ENABLE)`.
    NoNewPrivs,
    /// `setgroups(2)`.
    SetGroups(Vec<u32>),
    /// `setgid(2)`.
    SetGid(u32),
    /// `setuid(2)`.
    SetUid(u32),
    /// `chdir(2)` to the working directory.
    Chdir(String),
    /// `closefrom(3)`.
    Closefrom,
    /// `execve(2)`.
    Execve {
        /// Program and arguments.
        argv: Vec<String>,
        /// Environment.
        env: Vec<String>,
    },
}

impl JailStep {
    /// Who runs it.
    pub fn actor(&self) -> Actor {
        match self {
            Self::JailAttach
            | Self::SetRlimit(_)
            | Self::NoNewPrivs
            | Self::SetGroups(_)
            | Self::SetGid(_)
            | Self::SetUid(_)
            | Self::Chdir(_)
            | Self::Closefrom
            | Self::Execve { .. } => Actor::Child,
            Self::CheckAddresses
            | Self::AddAliases
            | Self::AddLoopbackAlias(_)
            | Self::LoadPfRules => Actor::Daemon,
            _ => Actor::Supervisor,
        }
    }
}

/// The executable plan of one jail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JailPlan {
    /// Sandbox id.
    pub id: String,
    /// Jail name, `sandboxd-<id>`.
    pub name: String,
    /// The jail's root on the host (`<dir>/root`).
    pub rootfs: PathBuf,
    /// `jail_set(2)` parameters, in order.
    pub params: Vec<JailParam>,
    /// Mounts, in order.
    pub mounts: Vec<JailMount>,
    /// rctl rules.
    pub rctl_rules: Vec<RctlRule>,
    /// The host side of its network.
    pub host_net: HostNet,
    /// The generated `/etc/resolv.conf`, when the spec names nameservers.
    pub resolv_conf: Option<String>,
    /// The `setrlimit(2)` limits of every process the sandbox starts: the
    /// first one (its `SetRlimit` steps show them) and each Exec, in every
    /// mode (an IDLE plan has no first process, its Execs still get them).
    #[serde(default)]
    pub rlimits: Vec<Rlimit>,
    /// Steps, in order.
    pub steps: Vec<JailStep>,
}

impl JailPlan {
    /// The sandbox's directory on the host: the parent of the jail's root.
    pub fn sandbox_dir(&self) -> &std::path::Path {
        self.rootfs.parent().unwrap_or(&self.rootfs)
    }

    /// Where the generated resolv.conf is written on the host.
    pub fn resolv_conf_path(&self) -> PathBuf {
        self.sandbox_dir().join("resolv.conf")
    }

    /// The flattened copy of an OCI image's layers
    /// ([`MountSource::ImageLayers`]).
    pub fn oci_root_path(&self) -> PathBuf {
        self.sandbox_dir().join("oci-root")
    }

    /// The empty file mounted over the sandboxd binary
    /// ([`MountSource::Masked`]).
    pub fn mask_path(&self) -> PathBuf {
        self.sandbox_dir().join("masked")
    }
}
