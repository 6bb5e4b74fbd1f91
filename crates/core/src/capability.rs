//! Capability-matrix and isolation-report types, and the one rule that turns
//! "what the client asked" + "what the backend gives" into a report and a list
//! of refusals.

use serde::{Deserialize, Serialize};

use crate::spec::{NetworkMode, Requirement};
use crate::validate::ValidatedSpec;

/// Which backend realises a sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackendKind {
    /// Linux namespaces.
    Linux,
    /// FreeBSD jails.
    Freebsd,
    /// chroot(2).
    Chroot,
}

impl BackendKind {
    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Linux => "linux",
            Self::Freebsd => "freebsd",
            Self::Chroot => "chroot",
        }
    }
}

/// One isolation property.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Property {
    /// Image is `/`.
    Filesystem,
    /// Own pid space.
    Pid,
    /// Own hostname.
    Hostname,
    /// Own IPC.
    Ipc,
    /// Network policy.
    Network,
    /// Unprivileged root.
    User,
    /// Own cgroup view.
    Cgroup,
    /// Memory limit.
    MemoryLimit,
    /// Process-count limit.
    PidsLimit,
    /// CPU quota.
    CpuLimit,
    /// Relative CPU weight.
    CpuWeight,
    /// Open-files limit.
    OpenFilesLimit,
    /// Address-space limit.
    AddressSpaceLimit,
    /// Size limit of the writable layer.
    DiskLimit,
    /// Read-only root filesystem.
    ReadonlyRootfs,
    /// Client bind mounts.
    Mounts,
}

impl Property {
    /// Every property, in report order.
    pub const ALL: [Property; 16] = [
        Self::Filesystem,
        Self::Pid,
        Self::Hostname,
        Self::Ipc,
        Self::Network,
        Self::User,
        Self::Cgroup,
        Self::MemoryLimit,
        Self::PidsLimit,
        Self::CpuLimit,
        Self::CpuWeight,
        Self::OpenFilesLimit,
        Self::AddressSpaceLimit,
        Self::DiskLimit,
        Self::ReadonlyRootfs,
        Self::Mounts,
    ];

    /// The name used in messages ("pid", "memory_limit").
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Filesystem => "filesystem",
            Self::Pid => "pid",
            Self::Hostname => "hostname",
            Self::Ipc => "ipc",
            Self::Network => "network",
            Self::User => "user",
            Self::Cgroup => "cgroup",
            Self::MemoryLimit => "memory_limit",
            Self::PidsLimit => "pids_limit",
            Self::CpuLimit => "cpu_limit",
            Self::CpuWeight => "cpu_weight",
            Self::OpenFilesLimit => "open_files_limit",
            Self::AddressSpaceLimit => "address_space_limit",
            Self::DiskLimit => "disk_limit",
            Self::ReadonlyRootfs => "readonly_rootfs",
            Self::Mounts => "mounts",
        }
    }
}

/// How well a property is enforced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// A kernel mechanism enforces it.
    Enforced,
    /// Approximated, with caveats.
    Emulated,
    /// Applied but avoidable from inside.
    BestEffort,
    /// Not enforced.
    NotEnforced,
}

impl Level {
    /// Whether this level satisfies a REQUIRED request.
    pub fn satisfies_required(self) -> bool {
        matches!(self, Self::Enforced | Self::Emulated)
    }
}

/// One row of a capability matrix or an isolation report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enforcement {
    /// The property.
    pub property: Property,
    /// Its level.
    pub level: Level,
    /// Kernel mechanism.
    pub mechanism: String,
    /// Caveats.
    pub caveats: String,
    /// What was asked (reports only).
    pub requested: Requirement,
    /// Asked for more than given (reports only).
    pub degraded: bool,
}

impl Enforcement {
    /// A capability-matrix row.
    pub fn new(property: Property, level: Level, mechanism: &str, caveats: &str) -> Self {
        Self {
            property,
            level,
            mechanism: mechanism.to_owned(),
            caveats: caveats.to_owned(),
            requested: Requirement::Unspecified,
            degraded: false,
        }
    }
}

/// What a backend offers on this host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities {
    /// The backend.
    pub backend: BackendKind,
    /// Why it was selected / its status on this host.
    pub reason: String,
    /// One row per property.
    pub matrix: Vec<Enforcement>,
}

/// The effective isolation of one sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IsolationReport {
    /// The backend.
    pub backend: BackendKind,
    /// One row per property.
    pub properties: Vec<Enforcement>,
}

impl IsolationReport {
    /// The row for one property.
    pub fn get(&self, property: Property) -> Option<&Enforcement> {
        self.properties.iter().find(|e| e.property == property)
    }
}

/// What a spec asks for each property: `Unspecified` where the client said
/// nothing. Values the client set (hostname, a limit, a network mode, a
/// read-only root, mounts) count as REQUIRED unless marked PREFERRED.
pub fn requested(spec: &ValidatedSpec, property: Property) -> Requirement {
    let s = spec.spec();
    let set = |present: bool, r: Requirement| if present { r.or_required() } else { r };
    let limit = |l: Option<crate::spec::Limit>| {
        l.map_or(Requirement::Unspecified, |l| l.requirement.or_required())
    };
    match property {
        Property::Filesystem => s.isolation.filesystem,
        Property::Pid => s.isolation.pid,
        Property::Hostname => set(!s.hostname.is_empty(), s.isolation.hostname),
        Property::Ipc => s.isolation.ipc,
        Property::Network => set(
            s.network.mode != NetworkMode::Unspecified,
            s.network.requirement,
        ),
        Property::User => s.isolation.user,
        Property::Cgroup => s.isolation.cgroup,
        Property::MemoryLimit => limit(s.limits.memory_bytes),
        Property::PidsLimit => limit(s.limits.pids),
        Property::CpuLimit => limit(s.limits.cpu_millis),
        Property::CpuWeight => limit(s.limits.cpu_weight),
        Property::OpenFilesLimit => limit(s.limits.open_files),
        Property::AddressSpaceLimit => limit(s.limits.address_space_bytes),
        // The daemon's default is filled in as PREFERRED by validation.
        Property::DiskLimit => limit(s.limits.disk_bytes),
        Property::ReadonlyRootfs => set(s.readonly_rootfs, Requirement::Unspecified),
        Property::Mounts => set(!s.mounts.is_empty(), Requirement::Unspecified),
    }
}

/// Builds the effective report from what the backend will give for this spec
/// (`given`, one row per property) and lists every REQUIRED property that it
/// cannot give, as "property: why" strings.
pub fn assess(
    backend: BackendKind,
    spec: &ValidatedSpec,
    given: Vec<Enforcement>,
) -> (IsolationReport, Vec<String>) {
    let mut refusals = Vec::new();
    let properties = given
        .into_iter()
        .map(|mut row| {
            let asked = requested(spec, row.property);
            row.requested = asked;
            match asked {
                Requirement::Required if !row.level.satisfies_required() => {
                    refusals.push(format!(
                        "{}: REQUIRED but the {} backend gives {:?} ({}{}{})",
                        row.property.as_str(),
                        backend.as_str(),
                        row.level,
                        row.mechanism,
                        if row.caveats.is_empty() { "" } else { "; " },
                        row.caveats
                    ));
                }
                Requirement::Preferred => row.degraded = !row.level.satisfies_required(),
                _ => {}
            }
            row
        })
        .collect();
    (
        IsolationReport {
            backend,
            properties,
        },
        refusals,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{Limit, ProcessSpec, SandboxSpec};
    use crate::validate::{Policy, validate};

    #[test]
    fn disk_limit_request_follows_who_set_it() {
        let spec = |disk: Option<Limit>| {
            let mut s = SandboxSpec {
                process: ProcessSpec {
                    argv: vec!["/bin/true".into()],
                    ..Default::default()
                },
                ..Default::default()
            };
            s.limits.disk_bytes = disk;
            validate(s, &Policy::default()).expect("valid")
        };
        let set = |requirement| {
            Some(Limit {
                value: 64 << 20,
                requirement,
            })
        };
        for (disk, want) in [
            // The daemon's default: PREFERRED, never a refusal.
            (None, Requirement::Preferred),
            (set(Requirement::Unspecified), Requirement::Required),
            (set(Requirement::Preferred), Requirement::Preferred),
        ] {
            assert_eq!(requested(&spec(disk), Property::DiskLimit), want);
        }
        // A backend that cannot give it refuses only a client's REQUIRED.
        let none = vec![Enforcement::new(
            Property::DiskLimit,
            Level::NotEnforced,
            "none",
            "",
        )];
        let (report, refusals) = assess(BackendKind::Chroot, &spec(None), none.clone());
        assert!(refusals.is_empty());
        assert!(report.properties[0].degraded);
        let (_, refusals) = assess(
            BackendKind::Chroot,
            &spec(set(Requirement::Unspecified)),
            none,
        );
        assert_eq!(refusals.len(), 1);
        assert!(
            refusals[0].starts_with("disk_limit: REQUIRED"),
            "{refusals:?}"
        );
    }
}
