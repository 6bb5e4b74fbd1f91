//! VerifySandbox: what a probe observed inside a running sandbox, and the
//! one rule that compares each observation with the row the isolation report
//! claims.
//!
//! The probe itself (system calls made from inside the sandbox) lives in the
//! `sandboxd-probe` crate and runs in a child of the supervisor that went
//! through exactly the entry path of a payload. This module is the pure
//! part: the configuration the daemon hands it ([`ProbeConfig`]), what it
//! reports ([`ProbeOutput`]), and [`evaluate`], which turns report + output
//! into a [`Verification`].

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::capability::{BackendKind, IsolationReport, Level, Property};
use crate::spec::{NetworkMode, Requirement};

/// What was observed for one property.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Observed {
    /// The isolation held against every attempt.
    Holds,
    /// An attempt got through: the property does not hold.
    Violated,
    /// It could not be observed from inside (the evidence says why).
    NotTestable,
    /// The spec sets no value for this property (no limit, no read-only
    /// root, no mounts): there is no claim to check.
    NotApplicable,
}

impl Observed {
    /// The API name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Holds => "HOLDS",
            Self::Violated => "VIOLATED",
            Self::NotTestable => "NOT_TESTABLE",
            Self::NotApplicable => "NOT_APPLICABLE",
        }
    }
}

/// The probe's observation of one property.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// The property.
    pub property: Property,
    /// What was observed.
    pub observed: Observed,
    /// What was tried and what the kernel answered, one attempt a line.
    pub evidence: Vec<String>,
}

impl Finding {
    /// A finding.
    pub fn new(property: Property, observed: Observed, evidence: Vec<String>) -> Self {
        Self {
            property,
            observed,
            evidence,
        }
    }
}

/// One hardening check that belongs to no matrix row (no_new_privs, the
/// capability sets, mount/mknod/raw socket/unshare/chroot attempts).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    /// Short name ("no_new_privs", "mount").
    pub name: String,
    /// What must be true.
    pub expected: String,
    /// What was observed.
    pub observed: Observed,
    /// What the kernel answered.
    pub evidence: String,
}

/// The user identity as seen from both sides: the probe reports its ids
/// inside, the supervisor the host uid of the same process.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserFacts {
    /// geteuid() inside the sandbox.
    pub inside_uid: u32,
    /// The host's effective uid of the probe process (read by the
    /// supervisor, outside); `None` where it could not be read.
    pub host_uid: Option<u32>,
    /// `/proc/self/uid_map` inside, where a /proc is mounted.
    pub uid_map: Option<String>,
}

/// The CPU weight of the probe's cgroup as the host sees it: read by the
/// supervisor, outside, while the probe runs (a
/// weight acts only between cgroups, so one sandbox cannot see its own from
/// inside).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuWeightFacts {
    /// The probe's cgroup in the cpu controller's hierarchy, as the host's
    /// `/proc/<pid>/cgroup` names it.
    pub cgroup: String,
    /// The file read: cgroup v2 `cpu.weight` or v1 `cpu.shares`.
    pub file: String,
    /// Whether `file` is v1's `cpu.shares` (else v2's `cpu.weight`).
    pub v1_shares: bool,
    /// Its value, or why it could not be read.
    pub value: Result<u64, String>,
}

/// The CPU_WEIGHT row from what the supervisor read outside. HOLDS when the
/// probe ran in the sandbox's own cgroup (`…/sandboxd/<id>`) and its file
/// holds the weight (v1: [`crate::spec::cpu_shares_of_weight`]); VIOLATED
/// when the probe ran in a cgroup that is not the sandbox's (it competes as
/// part of whatever holds it) or the value differs.
pub fn cpu_weight_finding(
    weight: Option<u64>,
    sandbox_id: &str,
    facts: Option<&CpuWeightFacts>,
) -> Finding {
    let p = Property::CpuWeight;
    let Some(weight) = weight else {
        return Finding::new(
            p,
            Observed::NotApplicable,
            vec!["the spec sets no CPU weight".into()],
        );
    };
    let Some(f) = facts else {
        return Finding::new(
            p,
            Observed::NotTestable,
            vec!["the probe's cpu cgroup could not be found from outside (no cgroups on this platform, or no cpu hierarchy mounted)".into()],
        );
    };
    let own = format!("/sandboxd/{sandbox_id}");
    if !f.cgroup.ends_with(&own) {
        return Finding::new(
            p,
            Observed::Violated,
            vec![format!(
                "the probe ran in cgroup {}, not the sandbox's own ({own}): it shares that cgroup's CPU time with whatever else runs there",
                f.cgroup
            )],
        );
    }
    let (want, unit) = if f.v1_shares {
        (crate::spec::cpu_shares_of_weight(weight), "shares")
    } else {
        (weight, "weight")
    };
    match &f.value {
        Err(why) => Finding::new(
            p,
            Observed::NotTestable,
            vec![format!("reading {}: {why}", f.file)],
        ),
        Ok(got) => Finding::new(
            p,
            if *got == want {
                Observed::Holds
            } else {
                Observed::Violated
            },
            vec![format!(
                "{} of the probe's cgroup (read outside) = {got}; weight {weight} is {unit} {want}",
                f.file
            )],
        ),
    }
}

/// Everything the probe reports.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeOutput {
    /// One finding per property it examined (the USER row is derived from
    /// `user` by [`evaluate`]).
    pub findings: Vec<Finding>,
    /// Hardening checks.
    pub checks: Vec<Check>,
    /// Ids inside and outside.
    pub user: UserFacts,
    /// How long the probe ran, in milliseconds.
    pub elapsed_ms: u64,
    /// The probe's cgroup CPU weight, read outside by the supervisor
    /// (`None` where there is no cgroup cpu controller to read).
    #[serde(default)]
    pub cpu_weight: Option<CpuWeightFacts>,
}

/// A host object as `stat(2)` sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileId {
    /// st_dev.
    pub dev: u64,
    /// st_ino.
    pub ino: u64,
}

/// A client mount the probe must find inside.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountProbe {
    /// Target inside the sandbox.
    pub target: String,
    /// Whether the spec asked for it read-only.
    pub read_only: bool,
    /// The host source's identity (a bind shows the same inode).
    pub source: Option<FileId>,
}

/// What the network probe may try.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetProbe {
    /// The mode the spec asked for.
    pub mode: NetworkMode,
    /// Host addresses where the daemon listens (127.0.0.1, and for
    /// RESTRICTED the host side of the sandbox's link).
    pub targets: Vec<IpAddr>,
    /// The listeners' port.
    pub port: u16,
    /// What the listener writes to every connection, so reaching it is told
    /// apart from reaching something inside the sandbox.
    pub token: String,
    /// RESTRICTED: the only addresses the sandbox may hold.
    pub leased: Vec<IpAddr>,
    /// NAMESPACE: the identity of the given network namespace (the daemon
    /// resolves the spec's path again, with the create's checks), which
    /// the sandbox's must be; `None` if it cannot be resolved any more.
    #[serde(default)]
    pub namespace: Option<FileId>,
}

/// The limits the spec sets (values only).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitValues {
    /// Bytes.
    pub memory_bytes: Option<u64>,
    /// Processes.
    pub pids: Option<u64>,
    /// Milli-CPUs.
    pub cpu_millis: Option<u64>,
    /// RLIMIT_NOFILE.
    pub open_files: Option<u64>,
    /// RLIMIT_AS bytes.
    pub address_space_bytes: Option<u64>,
    /// The writable layer's size in bytes (DISK_LIMIT).
    #[serde(default)]
    pub disk_bytes: Option<u64>,
    /// The relative CPU weight (CPU_WEIGHT).
    #[serde(default)]
    pub cpu_weight: Option<u64>,
}

/// The daemon's side of a probe: the host facts and fixtures it may test
/// against, all made by the daemon for this one check and removed after.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeConfig {
    /// Total time budget, in milliseconds.
    pub budget_ms: u64,
    /// The daemon's host pid (PID: it must not be visible).
    pub daemon_pid: i32,
    /// The supervisor's host pid, filled in by the supervisor.
    #[serde(default)]
    pub supervisor_pid: i32,
    /// The host's hostname (HOSTNAME: it must not be the sandbox's).
    pub host_hostname: String,
    /// The hostname the spec set, if any.
    pub hostname: Option<String>,
    /// A System V shared-memory key the daemon created on the host (IPC:
    /// it must not be visible); `None` if the host has no SysV IPC.
    pub shm_key: Option<i32>,
    /// A host directory the daemon created (FILESYSTEM: it must not be
    /// reachable), and its identity.
    pub canary: Option<(String, FileId)>,
    /// The host's `/` (FILESYSTEM: no `..` walk may reach it).
    pub host_root: Option<FileId>,
    /// NETWORK.
    pub network: NetProbe,
    /// Limit rows.
    pub limits: LimitValues,
    /// READONLY_ROOTFS.
    pub readonly_rootfs: bool,
    /// MOUNTS.
    pub mounts: Vec<MountProbe>,
    /// Capabilities a uid-0 process may keep (filled in by the supervisor
    /// from its launch configuration).
    #[serde(default)]
    pub capabilities: Vec<u32>,
    /// Whether the supervisor installs a seccomp filter (filled in by it).
    #[serde(default)]
    pub seccomp: bool,
    /// The parent whose pid namespace the sandbox shares (`spec.join.pid`):
    /// PID then also looks for the parent's pid 1 (evidence that the
    /// namespace is the pod's, not the host's).
    #[serde(default)]
    pub shared_pid_with: Option<String>,
}

/// One row of a verification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifiedRow {
    /// The property.
    pub property: Property,
    /// The level the sandbox's isolation report claims.
    pub claimed: Level,
    /// What the client asked for.
    pub requested: Requirement,
    /// What the probe saw.
    pub observed: Observed,
    /// Whether the observation is what the claim predicts ([`agrees`]).
    pub agrees: bool,
    /// Attempts and answers.
    pub evidence: Vec<String>,
}

/// The result of verifying one sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verification {
    /// The backend.
    pub backend: BackendKind,
    /// One row per property, in report order.
    pub rows: Vec<VerifiedRow>,
    /// Hardening checks.
    pub checks: Vec<Check>,
    /// How long the probe ran, in milliseconds.
    pub elapsed_ms: u64,
}

impl Verification {
    /// Rows the client REQUIRED that were observed VIOLATED, as
    /// "property: evidence" strings (a create with verification fails on
    /// any).
    pub fn required_violations(&self) -> Vec<String> {
        self.rows
            .iter()
            .filter(|r| r.requested == Requirement::Required && r.observed == Observed::Violated)
            .map(|r| format!("{}: {}", r.property.as_str(), r.evidence.join("; ")))
            .collect()
    }

    /// Whether every row's observation is what its claim predicts and no
    /// hardening check was violated.
    pub fn consistent(&self) -> bool {
        self.rows.iter().all(|r| r.agrees)
            && self.checks.iter().all(|c| c.observed != Observed::Violated)
    }
}

/// The rule: does `observed` match what a row at level `claimed` promises?
///
/// - ENFORCED and EMULATED promise the property: it must be observed HOLDS
///   (or be NOT_APPLICABLE: the spec sets nothing to hold).
/// - NOT_ENFORCED promises nothing: the probe must see it VIOLATED, or say
///   why it cannot tell (NOT_TESTABLE). A NOT_ENFORCED row observed HOLDS
///   means the matrix is wrong about this host, and is reported as such.
/// - BEST_EFFORT says a process inside can get around it: any observation
///   agrees.
pub fn agrees(claimed: Level, observed: Observed) -> bool {
    match (claimed, observed) {
        (_, Observed::NotApplicable) | (Level::BestEffort, _) => true,
        (Level::Enforced | Level::Emulated, o) => o == Observed::Holds,
        (Level::NotEnforced, o) => matches!(o, Observed::Violated | Observed::NotTestable),
    }
}

/// The USER row from the ids seen inside and outside. ENFORCED means ids
/// are mapped (uid 0 inside is not uid 0 outside); an EMULATED row claims
/// only that the sandbox's user is an unprivileged host user, which is what
/// is checked for it.
pub fn user_finding(facts: &UserFacts, claimed: Level) -> Finding {
    let mut evidence = vec![format!("geteuid() inside = {}", facts.inside_uid)];
    if let Some(map) = &facts.uid_map {
        evidence.push(format!("/proc/self/uid_map inside: {}", map.trim()));
    }
    let root_maps_to = facts.uid_map.as_deref().and_then(map_of_root);
    let observed = match facts.host_uid {
        None if root_maps_to.is_none() => {
            evidence.push("the host uid of the probe could not be read".into());
            Observed::NotTestable
        }
        host => {
            if let Some(h) = host {
                evidence.push(format!(
                    "the same process's effective uid on the host = {h}"
                ));
            }
            let mapped = match (host, root_maps_to) {
                (_, Some(outside)) => outside != 0,
                (Some(h), None) => h != facts.inside_uid,
                (None, None) => false,
            };
            if mapped {
                evidence.push("ids are mapped: uid 0 inside is not uid 0 on the host".into());
                Observed::Holds
            } else if host == Some(0) {
                evidence.push("the sandbox's user is host root".into());
                Observed::Violated
            } else if claimed == Level::Emulated {
                evidence.push(
                    "no id mapping (as the row says): the sandbox's user is an unprivileged host user"
                        .into(),
                );
                Observed::Holds
            } else {
                evidence.push(
                    "ids are not mapped: uid 0 in this sandbox would be uid 0 on the host".into(),
                );
                Observed::Violated
            }
        }
    };
    Finding::new(Property::User, observed, evidence)
}

/// The host id that sandbox uid 0 maps to, from a uid_map text.
fn map_of_root(map: &str) -> Option<u32> {
    map.lines().find_map(|line| {
        let mut f = line.split_whitespace().map(str::parse::<u64>);
        let (Some(Ok(inside)), Some(Ok(outside)), Some(Ok(count))) = (f.next(), f.next(), f.next())
        else {
            return None;
        };
        (inside == 0 && count > 0).then(|| u32::try_from(outside).ok())?
    })
}

/// Compares the probe's output with the sandbox's isolation report: one row
/// per reported property. A property the probe did not report is
/// NOT_TESTABLE, never assumed to hold.
pub fn evaluate(report: &IsolationReport, output: &ProbeOutput) -> Verification {
    let rows = report
        .properties
        .iter()
        .map(|claim| {
            let finding = if claim.property == Property::User {
                user_finding(&output.user, claim.level)
            } else {
                output
                    .findings
                    .iter()
                    .find(|f| f.property == claim.property)
                    .cloned()
                    .unwrap_or_else(|| {
                        Finding::new(
                            claim.property,
                            Observed::NotTestable,
                            vec!["the probe has no check for this property".into()],
                        )
                    })
            };
            VerifiedRow {
                property: claim.property,
                claimed: claim.level,
                requested: claim.requested,
                observed: finding.observed,
                agrees: agrees(claim.level, finding.observed),
                evidence: finding.evidence,
            }
        })
        .collect();
    Verification {
        backend: report.backend,
        rows,
        checks: output.checks.clone(),
        elapsed_ms: output.elapsed_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capability::Enforcement;

    #[test]
    fn claim_times_observation() {
        use Level::*;
        use Observed::*;
        let table: &[(Level, Observed, bool)] = &[
            (Enforced, Holds, true),
            (Enforced, Violated, false),
            (Enforced, NotTestable, false),
            (Enforced, NotApplicable, true),
            (Emulated, Holds, true),
            (Emulated, Violated, false),
            (Emulated, NotTestable, false),
            (Emulated, NotApplicable, true),
            (BestEffort, Holds, true),
            (BestEffort, Violated, true),
            (BestEffort, NotTestable, true),
            (BestEffort, NotApplicable, true),
            (NotEnforced, Holds, false),
            (NotEnforced, Violated, true),
            (NotEnforced, NotTestable, true),
            (NotEnforced, NotApplicable, true),
        ];
        for (level, observed, want) in table {
            assert_eq!(agrees(*level, *observed), *want, "{level:?} × {observed:?}");
        }
    }

    #[test]
    fn cpu_weight_rows() {
        use Observed::*;
        let facts = |cgroup: &str, v1: bool, value: Result<u64, String>| CpuWeightFacts {
            cgroup: cgroup.into(),
            file: "cpu.x".into(),
            v1_shares: v1,
            value,
        };
        let own = "/sandboxd/sb1";
        let cases: &[(Option<u64>, Option<CpuWeightFacts>, Observed)] = &[
            (None, None, NotApplicable),
            (Some(400), None, NotTestable),
            (Some(400), Some(facts(own, false, Ok(400))), Holds),
            (Some(400), Some(facts(own, false, Ok(100))), Violated),
            (Some(400), Some(facts(own, true, Ok(4096))), Holds),
            (Some(400), Some(facts(own, true, Ok(1024))), Violated),
            // The daemon's cgroup (a chroot sandbox), even with the value
            // asked for: not the sandbox's weight.
            (
                Some(100),
                Some(facts("/system.slice/sandboxd.service", true, Ok(1024))),
                Violated,
            ),
            (
                Some(100),
                Some(facts("/sandboxd/sb10", false, Ok(100))),
                Violated,
            ),
            (
                Some(100),
                Some(facts(own, false, Err("ENOENT".into()))),
                NotTestable,
            ),
        ];
        for (weight, f, want) in cases {
            let got = cpu_weight_finding(*weight, "sb1", f.as_ref());
            assert_eq!(got.observed, *want, "{weight:?} {f:?}: {got:?}");
        }
    }

    #[test]
    fn user_rows() {
        use Level::*;
        use Observed::*;
        let facts = |inside, host: Option<u32>, map: Option<&str>| UserFacts {
            inside_uid: inside,
            host_uid: host,
            uid_map: map.map(str::to_owned),
        };
        let cases: &[(UserFacts, Level, Observed)] = &[
            // A user namespace: mapped both ways of looking.
            (
                facts(0, Some(100_000), Some("0 100000 65536")),
                Enforced,
                Holds,
            ),
            (facts(65534, Some(165_534), None), Enforced, Holds),
            // The map says root is root, whatever the process is.
            (
                facts(1000, Some(1000), Some("0 0 4294967295")),
                NotEnforced,
                Violated,
            ),
            // No namespace: same ids both sides.
            (facts(65534, Some(65534), None), NotEnforced, Violated),
            (facts(0, Some(0), None), NotEnforced, Violated),
            (facts(0, Some(0), None), Enforced, Violated),
            // chroot/jail: an unprivileged host user is what EMULATED claims.
            (facts(65534, Some(65534), None), Emulated, Holds),
            (facts(0, Some(0), None), Emulated, Violated),
            // Nothing readable from outside and no map inside.
            (facts(65534, None, None), Enforced, NotTestable),
        ];
        for (f, level, want) in cases {
            let got = user_finding(f, *level);
            assert_eq!(got.observed, *want, "{f:?} claimed {level:?}: {got:?}");
        }
    }

    #[test]
    fn evaluate_covers_every_row_and_never_assumes() {
        let report = IsolationReport {
            backend: BackendKind::Linux,
            properties: vec![
                Enforcement {
                    requested: Requirement::Required,
                    ..Enforcement::new(Property::Pid, Level::Enforced, "CLONE_NEWPID", "")
                },
                Enforcement::new(Property::Cgroup, Level::Enforced, "CLONE_NEWCGROUP", ""),
                Enforcement::new(Property::Ipc, Level::NotEnforced, "none", ""),
            ],
        };
        let output = ProbeOutput {
            findings: vec![
                Finding::new(Property::Pid, Observed::Violated, vec!["kill: 0".into()]),
                Finding::new(Property::Ipc, Observed::Violated, vec!["shmget: ok".into()]),
            ],
            ..ProbeOutput::default()
        };
        let v = evaluate(&report, &output);
        assert_eq!(v.rows.len(), 3);
        assert_eq!(v.rows[0].observed, Observed::Violated);
        assert!(!v.rows[0].agrees);
        // Not reported by the probe: NOT_TESTABLE, which an ENFORCED claim
        // does not accept.
        assert_eq!(v.rows[1].observed, Observed::NotTestable);
        assert!(!v.rows[1].agrees);
        assert!(v.rows[2].agrees);
        assert!(!v.consistent());
        let violated = v.required_violations();
        assert_eq!(violated, vec!["pid: kill: 0".to_owned()]);
    }
}
