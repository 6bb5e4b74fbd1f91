//! Conversion between the wire types (`sandboxd_proto::v1`) and the core
//! model. Unknown enum numbers are input errors, reported like any other
//! validation problem.

use sandboxd_core::capability::{BackendKind, Enforcement, IsolationReport, Level, Property};
use sandboxd_core::plan::{NativePlan, Plan, PlanMount, Step};
use sandboxd_core::spec::{
    self, Limit, Limits, Mode, MountSpec, NetworkMode, NetworkPolicy, PortForward, Protocol,
    Requirement, UserSpec,
};
use sandboxd_core::store::{ExitReason, ExitRecord, SandboxRecord, SandboxState};
use sandboxd_core::validate::{Problem, ValidationError};
use sandboxd_proto::v1 as pb;

use crate::events::{Event, EventKind};

/// Collects enum-decoding problems.
#[derive(Default)]
struct Problems(Vec<Problem>);

impl Problems {
    fn bad_enum(&mut self, field: &str, value: i32) {
        self.0.push(Problem {
            field: field.to_owned(),
            message: format!("{value} is not a known enum value"),
        });
    }
}

fn requirement(p: &mut Problems, field: &str, v: i32) -> Requirement {
    match pb::Requirement::try_from(v) {
        Ok(pb::Requirement::Unspecified) => Requirement::Unspecified,
        Ok(pb::Requirement::Required) => Requirement::Required,
        Ok(pb::Requirement::Preferred) => Requirement::Preferred,
        Ok(pb::Requirement::Disabled) => Requirement::Disabled,
        Err(_) => {
            p.bad_enum(field, v);
            Requirement::Unspecified
        }
    }
}

fn requirement_to_pb(r: Requirement) -> i32 {
    (match r {
        Requirement::Unspecified => pb::Requirement::Unspecified,
        Requirement::Required => pb::Requirement::Required,
        Requirement::Preferred => pb::Requirement::Preferred,
        Requirement::Disabled => pb::Requirement::Disabled,
    }) as i32
}

/// Converts a process spec.
pub fn process_from_pb(p: Option<pb::ProcessSpec>) -> spec::ProcessSpec {
    let p = p.unwrap_or_default();
    let user = p.user.unwrap_or_default();
    spec::ProcessSpec {
        argv: p.argv,
        env: p.env,
        cwd: p.cwd,
        user: UserSpec {
            uid: user.uid,
            gid: user.gid,
            additional_gids: user.additional_gids,
        },
        tty: p.tty,
    }
}

fn process_to_pb(p: &spec::ProcessSpec) -> pb::ProcessSpec {
    pb::ProcessSpec {
        argv: p.argv.clone(),
        env: p.env.clone(),
        cwd: p.cwd.clone(),
        user: Some(pb::User {
            uid: p.user.uid,
            gid: p.user.gid,
            additional_gids: p.user.additional_gids.clone(),
        }),
        tty: p.tty,
    }
}

/// Converts a spec; fails only on unknown enum values.
pub fn spec_from_pb(s: Option<pb::SandboxSpec>) -> Result<spec::SandboxSpec, ValidationError> {
    let s = s.unwrap_or_default();
    let mut p = Problems::default();
    let mode = match pb::SandboxMode::try_from(s.mode) {
        Ok(pb::SandboxMode::Unspecified | pb::SandboxMode::Process) => Mode::Process,
        Ok(pb::SandboxMode::Init) => Mode::Init,
        Ok(pb::SandboxMode::Idle) => Mode::Idle,
        Err(_) => {
            p.bad_enum("spec.mode", s.mode);
            Mode::Process
        }
    };
    let iso = s.isolation.unwrap_or_default();
    let isolation = spec::Isolation {
        filesystem: requirement(&mut p, "spec.isolation.filesystem", iso.filesystem),
        pid: requirement(&mut p, "spec.isolation.pid", iso.pid),
        hostname: requirement(&mut p, "spec.isolation.hostname", iso.hostname),
        ipc: requirement(&mut p, "spec.isolation.ipc", iso.ipc),
        user: requirement(&mut p, "spec.isolation.user", iso.user),
        cgroup: requirement(&mut p, "spec.isolation.cgroup", iso.cgroup),
    };
    let net = s.network.unwrap_or_default();
    let network = NetworkPolicy {
        mode: match pb::NetworkMode::try_from(net.mode) {
            Ok(pb::NetworkMode::Unspecified) => NetworkMode::Unspecified,
            Ok(pb::NetworkMode::None) => NetworkMode::None,
            Ok(pb::NetworkMode::Loopback) => NetworkMode::Loopback,
            Ok(pb::NetworkMode::Restricted) => NetworkMode::Restricted,
            Ok(pb::NetworkMode::Host) => NetworkMode::Host,
            Ok(pb::NetworkMode::Namespace) => NetworkMode::Namespace,
            Err(_) => {
                p.bad_enum("spec.network.mode", net.mode);
                NetworkMode::Unspecified
            }
        },
        requirement: requirement(&mut p, "spec.network.requirement", net.requirement),
        addresses: net.addresses,
        outbound_nat: net.outbound_nat,
        port_forwards: net
            .port_forwards
            .iter()
            .enumerate()
            .map(|(i, f)| PortForward {
                protocol: match pb::Protocol::try_from(f.protocol) {
                    Ok(pb::Protocol::Unspecified | pb::Protocol::Tcp) => Protocol::Tcp,
                    Ok(pb::Protocol::Udp) => Protocol::Udp,
                    Err(_) => {
                        p.bad_enum(
                            &format!("spec.network.port_forwards[{i}].protocol"),
                            f.protocol,
                        );
                        Protocol::Tcp
                    }
                },
                host_port: f.host_port,
                sandbox_port: f.sandbox_port,
            })
            .collect(),
        dns_servers: net.dns_servers,
        dns_search: net.dns_search,
        namespace_path: net.namespace_path,
    };
    let l = s.limits.unwrap_or_default();
    let mut limit = |name: &str, v: Option<pb::Limit>| {
        v.map(|v| Limit {
            value: v.value,
            requirement: requirement(
                &mut p,
                &format!("spec.limits.{name}.requirement"),
                v.requirement,
            ),
        })
    };
    let limits = Limits {
        memory_bytes: limit("memory_bytes", l.memory_bytes),
        pids: limit("pids", l.pids),
        cpu_millis: limit("cpu_millis", l.cpu_millis),
        open_files: limit("open_files", l.open_files),
        address_space_bytes: limit("address_space_bytes", l.address_space_bytes),
        disk_bytes: limit("disk_bytes", l.disk_bytes),
        // 0 is proto3's "unset": the default.
        tmp_bytes: (l.tmp_bytes != 0).then_some(l.tmp_bytes),
        shm_bytes: (l.shm_bytes != 0).then_some(l.shm_bytes),
        cpu_weight: limit("cpu_weight", l.cpu_weight),
    };
    let spec = spec::SandboxSpec {
        name: s.name,
        image: s.image,
        mode,
        process: process_from_pb(s.process),
        hostname: s.hostname,
        isolation,
        network,
        limits,
        mounts: s
            .mounts
            .into_iter()
            .map(|m| MountSpec {
                source: m.source,
                target: m.target,
                read_only: m.read_only,
            })
            .collect(),
        labels: s.labels.into_iter().collect(),
        readonly_rootfs: s.readonly_rootfs,
        stop_signal: s.stop_signal,
        rootfs: s.rootfs,
        logs: s
            .logs
            .map(|l| spec::LogLimits {
                max_file_bytes: l.max_file_bytes,
                max_files: l.max_files,
            })
            .unwrap_or_default(),
        join: s.join.map(|j| spec::Join {
            sandbox_id: j.sandbox_id,
            network: j.network,
            ipc: j.ipc,
            uts: j.uts,
            pid: j.pid,
        }),
    };
    if p.0.is_empty() {
        Ok(spec)
    } else {
        Err(ValidationError { problems: p.0 })
    }
}

/// Converts a spec back for responses.
pub fn spec_to_pb(s: &spec::SandboxSpec) -> pb::SandboxSpec {
    let limit = |l: Option<Limit>| {
        l.map(|l| pb::Limit {
            value: l.value,
            requirement: requirement_to_pb(l.requirement),
        })
    };
    pb::SandboxSpec {
        name: s.name.clone(),
        image: s.image.clone(),
        mode: (match s.mode {
            Mode::Process => pb::SandboxMode::Process,
            Mode::Init => pb::SandboxMode::Init,
            Mode::Idle => pb::SandboxMode::Idle,
        }) as i32,
        process: Some(process_to_pb(&s.process)),
        hostname: s.hostname.clone(),
        isolation: Some(pb::Isolation {
            filesystem: requirement_to_pb(s.isolation.filesystem),
            pid: requirement_to_pb(s.isolation.pid),
            hostname: requirement_to_pb(s.isolation.hostname),
            ipc: requirement_to_pb(s.isolation.ipc),
            user: requirement_to_pb(s.isolation.user),
            cgroup: requirement_to_pb(s.isolation.cgroup),
        }),
        network: Some(pb::NetworkPolicy {
            mode: (match s.network.mode {
                NetworkMode::Unspecified => pb::NetworkMode::Unspecified,
                NetworkMode::None => pb::NetworkMode::None,
                NetworkMode::Loopback => pb::NetworkMode::Loopback,
                NetworkMode::Restricted => pb::NetworkMode::Restricted,
                NetworkMode::Host => pb::NetworkMode::Host,
                NetworkMode::Namespace => pb::NetworkMode::Namespace,
            }) as i32,
            requirement: requirement_to_pb(s.network.requirement),
            addresses: s.network.addresses.clone(),
            outbound_nat: s.network.outbound_nat,
            port_forwards: s
                .network
                .port_forwards
                .iter()
                .map(|f| pb::PortForward {
                    protocol: (match f.protocol {
                        Protocol::Tcp => pb::Protocol::Tcp,
                        Protocol::Udp => pb::Protocol::Udp,
                    }) as i32,
                    host_port: f.host_port,
                    sandbox_port: f.sandbox_port,
                })
                .collect(),
            dns_servers: s.network.dns_servers.clone(),
            dns_search: s.network.dns_search.clone(),
            namespace_path: s.network.namespace_path.clone(),
        }),
        limits: Some(pb::Limits {
            memory_bytes: limit(s.limits.memory_bytes),
            pids: limit(s.limits.pids),
            cpu_millis: limit(s.limits.cpu_millis),
            open_files: limit(s.limits.open_files),
            address_space_bytes: limit(s.limits.address_space_bytes),
            disk_bytes: limit(s.limits.disk_bytes),
            tmp_bytes: s.limits.tmp_bytes.unwrap_or_default(),
            shm_bytes: s.limits.shm_bytes.unwrap_or_default(),
            cpu_weight: limit(s.limits.cpu_weight),
        }),
        mounts: s
            .mounts
            .iter()
            .map(|m| pb::Mount {
                source: m.source.clone(),
                target: m.target.clone(),
                read_only: m.read_only,
            })
            .collect(),
        labels: s.labels.clone().into_iter().collect(),
        readonly_rootfs: s.readonly_rootfs,
        stop_signal: s.stop_signal,
        rootfs: s.rootfs.clone(),
        logs: Some(pb::LogLimits {
            max_file_bytes: s.logs.max_file_bytes,
            max_files: s.logs.max_files,
        }),
        join: s.join.as_ref().map(|j| pb::SandboxJoin {
            sandbox_id: j.sandbox_id.clone(),
            network: j.network,
            ipc: j.ipc,
            uts: j.uts,
            pid: j.pid,
        }),
    }
}

/// Backend kind to wire.
pub fn backend_to_pb(b: BackendKind) -> i32 {
    (match b {
        BackendKind::Linux => pb::BackendKind::Linux,
        BackendKind::Freebsd => pb::BackendKind::Freebsd,
        BackendKind::Chroot => pb::BackendKind::Chroot,
    }) as i32
}

fn property_to_pb(p: Property) -> i32 {
    use pb::IsolationProperty as P;
    (match p {
        Property::Filesystem => P::Filesystem,
        Property::Pid => P::Pid,
        Property::Hostname => P::Hostname,
        Property::Ipc => P::Ipc,
        Property::Network => P::Network,
        Property::User => P::User,
        Property::Cgroup => P::Cgroup,
        Property::MemoryLimit => P::MemoryLimit,
        Property::PidsLimit => P::PidsLimit,
        Property::CpuLimit => P::CpuLimit,
        Property::CpuWeight => P::CpuWeight,
        Property::OpenFilesLimit => P::OpenFilesLimit,
        Property::AddressSpaceLimit => P::AddressSpaceLimit,
        Property::DiskLimit => P::DiskLimit,
        Property::ReadonlyRootfs => P::ReadonlyRootfs,
        Property::Mounts => P::Mounts,
    }) as i32
}

/// One matrix/report row to wire.
pub fn enforcement_to_pb(e: &Enforcement) -> pb::PropertyEnforcement {
    pb::PropertyEnforcement {
        property: property_to_pb(e.property),
        level: (match e.level {
            Level::Enforced => pb::EnforcementLevel::Enforced,
            Level::Emulated => pb::EnforcementLevel::Emulated,
            Level::BestEffort => pb::EnforcementLevel::BestEffort,
            Level::NotEnforced => pb::EnforcementLevel::NotEnforced,
        }) as i32,
        mechanism: e.mechanism.clone(),
        caveats: e.caveats.clone(),
        requested: requirement_to_pb(e.requested),
        degraded: e.degraded,
    }
}

/// A report to wire.
pub fn report_to_pb(r: &IsolationReport) -> pb::IsolationReport {
    pb::IsolationReport {
        backend: backend_to_pb(r.backend),
        properties: r.properties.iter().map(enforcement_to_pb).collect(),
    }
}

/// An exit record to wire.
pub fn exit_to_pb(e: &ExitRecord) -> pb::ExitResult {
    pb::ExitResult {
        reason: (match e.reason {
            ExitReason::Exited => pb::ExitReason::Exited,
            ExitReason::Signaled => pb::ExitReason::Signaled,
            ExitReason::OomKilled => pb::ExitReason::OomKilled,
            ExitReason::LimitKilled => pb::ExitReason::LimitKilled,
            ExitReason::Timeout => pb::ExitReason::Timeout,
            ExitReason::SetupFailed => pb::ExitReason::SetupFailed,
            ExitReason::Lost => pb::ExitReason::Lost,
        }) as i32,
        exit_code: e.code,
        signal: e.signal,
        message: e.message.clone(),
        finished_at_ms: e.finished_at_ms,
    }
}

/// A record to wire.
pub fn record_to_pb(r: &SandboxRecord) -> pb::Sandbox {
    pb::Sandbox {
        id: r.id.clone(),
        name: r.spec.name.clone(),
        spec: Some(spec_to_pb(&r.spec)),
        state: (match r.state {
            SandboxState::Creating => pb::SandboxState::Creating,
            SandboxState::Running => pb::SandboxState::Running,
            SandboxState::Stopping => pb::SandboxState::Stopping,
            SandboxState::Exited => pb::SandboxState::ExitedState,
        }) as i32,
        isolation: Some(report_to_pb(&r.report)),
        main_pid: i64::from(r.main_pid),
        supervisor_pid: i64::from(r.supervisor_pid),
        init_pid: if r.state == SandboxState::Running {
            i64::from(r.init_pid)
        } else {
            0
        },
        exit: r.exit.as_ref().map(exit_to_pb),
        created_at_ms: r.created_at_ms,
        owner: r.owner.clone(),
        usage: None,
        addresses: r.lease.addresses.iter().map(ToString::to_string).collect(),
    }
}

/// A record with its current resource use (while it runs) to wire.
pub fn sandbox_to_pb(r: &SandboxRecord, usage: Option<sandboxd_core::Usage>) -> pb::Sandbox {
    pb::Sandbox {
        usage: usage.map(usage_to_pb),
        ..record_to_pb(r)
    }
}

/// An event kind to wire.
pub fn event_kind_to_pb(k: EventKind) -> pb::EventKind {
    match k {
        EventKind::Created => pb::EventKind::EventCreated,
        EventKind::Started => pb::EventKind::EventStarted,
        EventKind::ExecStarted => pb::EventKind::EventExecStarted,
        EventKind::ExecExited => pb::EventKind::EventExecExited,
        EventKind::Exited => pb::EventKind::EventExited,
        EventKind::Destroyed => pb::EventKind::EventDestroyed,
        EventKind::Recovered => pb::EventKind::EventRecovered,
        EventKind::Lost => pb::EventKind::EventLost,
        EventKind::ReconcileComplete => pb::EventKind::EventReconcileComplete,
    }
}

/// An event to wire.
pub fn event_to_pb(e: &Event) -> pb::Event {
    pb::Event {
        revision: e.revision,
        kind: event_kind_to_pb(e.kind) as i32,
        sandbox_id: e.sandbox_id.clone(),
        pid: i64::from(e.pid),
        exit: e.exit.as_ref().map(exit_to_pb),
        time_ms: e.time_ms,
    }
}

/// Resource use to wire.
pub fn usage_to_pb(u: sandboxd_core::Usage) -> pb::ResourceUsage {
    pb::ResourceUsage {
        memory_bytes: u.memory_bytes,
        pids: u.pids,
        cpu_usec: u.cpu_usec,
        io_read_bytes: u.io_read_bytes,
        io_write_bytes: u.io_write_bytes,
    }
}

/// Requested backend for PlanSandbox; None = this daemon's.
pub fn backend_from_pb(v: i32) -> Result<Option<BackendKind>, ValidationError> {
    match pb::BackendKind::try_from(v) {
        Ok(pb::BackendKind::Unspecified) => Ok(None),
        Ok(pb::BackendKind::Linux) => Ok(Some(BackendKind::Linux)),
        Ok(pb::BackendKind::Freebsd) => Ok(Some(BackendKind::Freebsd)),
        Ok(pb::BackendKind::Chroot) => Ok(Some(BackendKind::Chroot)),
        Err(_) => Err(ValidationError::one(
            "backend",
            format!("{v} is not a known backend"),
        )),
    }
}

fn step_to_pb(s: &Step) -> pb::PlanStep {
    pb::PlanStep {
        op: s.op.clone(),
        args: s.args.clone(),
        why: s.why.clone(),
    }
}

fn mount_to_pb(m: &PlanMount) -> pb::PlanMount {
    pb::PlanMount {
        source: m.source.clone(),
        target: m.target.clone(),
        fstype: m.fstype.clone(),
        options: m.options.clone(),
    }
}

fn params_to_pb(p: &[(String, String)]) -> Vec<pb::PlanParam> {
    p.iter()
        .map(|(k, v)| pb::PlanParam {
            key: k.clone(),
            value: v.clone(),
        })
        .collect()
}

/// A plan to wire.
pub fn plan_to_pb(plan: &Plan) -> pb::PlanSandboxResponse {
    use pb::plan_sandbox_response::Plan as P;
    let native = match &plan.native {
        NativePlan::Chroot { steps, mounts } => P::Chroot(pb::ChrootPlan {
            steps: steps.iter().map(step_to_pb).collect(),
            mounts: mounts.iter().map(mount_to_pb).collect(),
        }),
        NativePlan::Linux {
            clone_flags,
            mounts,
            cgroup_writes,
            steps,
        } => P::Linux(pb::LinuxPlan {
            clone_flags: clone_flags.clone(),
            mounts: mounts.iter().map(mount_to_pb).collect(),
            cgroup_writes: params_to_pb(cgroup_writes),
            steps: steps.iter().map(step_to_pb).collect(),
        }),
        NativePlan::Jail {
            params,
            mounts,
            rctl_rules,
            steps,
        } => P::Freebsd(pb::JailPlan {
            params: params_to_pb(params),
            mounts: mounts.iter().map(mount_to_pb).collect(),
            rctl_rules: rctl_rules.clone(),
            steps: steps.iter().map(step_to_pb).collect(),
        }),
    };
    pb::PlanSandboxResponse {
        backend: backend_to_pb(plan.report.backend),
        isolation: Some(report_to_pb(&plan.report)),
        refusals: plan.refusals.clone(),
        plan: Some(native),
    }
}

/// An observation to wire.
fn observed_to_pb(o: sandboxd_core::verify::Observed) -> i32 {
    use sandboxd_core::verify::Observed;
    (match o {
        Observed::Holds => pb::ObservedResult::Holds,
        Observed::Violated => pb::ObservedResult::Violated,
        Observed::NotTestable => pb::ObservedResult::NotTestable,
        Observed::NotApplicable => pb::ObservedResult::NotApplicable,
    }) as i32
}

/// A verification to wire.
pub fn verification_to_pb(v: &sandboxd_core::verify::Verification) -> pb::Verification {
    pb::Verification {
        backend: backend_to_pb(v.backend),
        properties: v
            .rows
            .iter()
            .map(|r| pb::VerifiedProperty {
                property: property_to_pb(r.property),
                claimed: enforcement_to_pb(&Enforcement::new(r.property, r.claimed, "", "")).level,
                requested: requirement_to_pb(r.requested),
                observed: observed_to_pb(r.observed),
                agrees: r.agrees,
                evidence: r.evidence.clone(),
            })
            .collect(),
        checks: v
            .checks
            .iter()
            .map(|c| pb::HardeningCheck {
                name: c.name.clone(),
                expected: c.expected.clone(),
                observed: observed_to_pb(c.observed),
                evidence: c.evidence.clone(),
            })
            .collect(),
        consistent: v.consistent(),
        elapsed_ms: v.elapsed_ms,
    }
}

#[cfg(test)]
#[allow(clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn event_kinds_map_to_distinct_wire_kinds() {
        let kinds = [
            EventKind::Created,
            EventKind::Started,
            EventKind::ExecStarted,
            EventKind::ExecExited,
            EventKind::Exited,
            EventKind::Destroyed,
            EventKind::Recovered,
            EventKind::Lost,
            EventKind::ReconcileComplete,
        ];
        let wire: std::collections::BTreeSet<i32> =
            kinds.iter().map(|k| event_kind_to_pb(*k) as i32).collect();
        assert_eq!(wire.len(), kinds.len());
        assert!(!wire.contains(&(pb::EventKind::Unspecified as i32)));
    }

    #[test]
    fn spec_round_trips() {
        let pbspec = pb::SandboxSpec {
            name: "web".into(),
            image: "alpine".into(),
            mode: pb::SandboxMode::Idle as i32,
            hostname: "h".into(),
            limits: Some(pb::Limits {
                pids: Some(pb::Limit {
                    value: 5,
                    requirement: pb::Requirement::Preferred as i32,
                }),
                disk_bytes: Some(pb::Limit {
                    value: 64 << 20,
                    requirement: pb::Requirement::Required as i32,
                }),
                tmp_bytes: 16 << 20,
                // 0: unset, the default.
                shm_bytes: 0,
                ..Default::default()
            }),
            labels: [("a".to_owned(), "b".to_owned())].into_iter().collect(),
            process: Some(pb::ProcessSpec::default()),
            isolation: Some(pb::Isolation::default()),
            network: Some(pb::NetworkPolicy::default()),
            ..Default::default()
        };
        let core = spec_from_pb(Some(pbspec.clone())).expect("converts");
        assert_eq!(core.mode, Mode::Idle);
        assert_eq!(
            (core.limits.tmp_bytes, core.limits.shm_bytes),
            (Some(16 << 20), None)
        );
        let mut back = spec_to_pb(&core);
        back.process = Some(pb::ProcessSpec::default());
        assert_eq!(back.limits, pbspec.limits);
        assert_eq!(back.labels, pbspec.labels);
    }

    #[test]
    fn unknown_enums_are_listed() {
        let s = pb::SandboxSpec {
            mode: 99,
            isolation: Some(pb::Isolation {
                pid: 42,
                ..Default::default()
            }),
            ..Default::default()
        };
        let err = spec_from_pb(Some(s)).expect_err("invalid");
        let fields: Vec<_> = err.problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(fields, vec!["spec.mode", "spec.isolation.pid"]);
    }
}
