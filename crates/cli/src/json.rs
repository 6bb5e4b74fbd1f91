//! `--json` output: converts the API's response messages to `serde_json`
//! values.
//!
//! prost types have no serde support, so this is written out by hand. The
//! conventions, stable for scripts:
//! - field names are the .proto names (snake_case), every field is present;
//! - enums are their proto value names (`REQUIRED`, `EXITED_STATE`); a value
//!   this client does not know (a newer daemon) is emitted as its number;
//! - unset message fields and unset `optional` scalars are `null`;
//! - 64-bit integers are JSON numbers (pids and millisecond times fit easily
//!   in 2^53), unlike the proto3 canonical mapping which uses strings;
//! - maps are objects with sorted keys.

use serde_json::{Map, Value, json};

use sandboxd_proto::v1::{
    BackendKind, ChrootPlan, EnforcementLevel, Event, EventKind, ExitReason, ExitResult,
    GetCapabilitiesResponse, Isolation, IsolationProperty, IsolationReport, JailPlan, Limit,
    Limits, LinuxPlan, ListSandboxesResponse, Mount, NetworkMode, NetworkPolicy, ObservedResult,
    PlanMount, PlanParam, PlanSandboxResponse, PlanStep, PortForward, ProcessSpec,
    PropertyEnforcement, Protocol, Requirement, ResourceUsage, Sandbox, SandboxMode, SandboxSpec,
    SandboxState, User, Verification, WaitSandboxResponse, plan_sandbox_response::Plan,
};

/// A generated proto enum: convertible from its wire `i32`, with a proto name.
pub(crate) trait ProtoEnum: TryFrom<i32> {
    /// The value's name as written in the .proto.
    fn proto_name(&self) -> &'static str;
}

macro_rules! proto_enums {
    ($($t:ty),* $(,)?) => {
        $(impl ProtoEnum for $t {
            fn proto_name(&self) -> &'static str {
                self.as_str_name()
            }
        })*
    };
}

proto_enums!(
    Requirement,
    SandboxMode,
    NetworkMode,
    IsolationProperty,
    EnforcementLevel,
    BackendKind,
    ExitReason,
    SandboxState,
    EventKind,
    Protocol,
    ObservedResult,
);

/// The proto name of an enum value, or `None` if this build does not know it.
pub(crate) fn enum_name<E: ProtoEnum>(value: i32) -> Option<&'static str> {
    E::try_from(value).ok().map(|e| e.proto_name())
}

/// An enum value as JSON: its name, or its number when unknown (so a newer
/// daemon's values are passed through rather than lost).
fn enum_value<E: ProtoEnum>(value: i32) -> Value {
    enum_name::<E>(value).map_or_else(|| Value::from(value), Value::from)
}

/// An optional message as JSON, `null` when unset.
fn opt<T>(v: Option<&T>, f: impl FnOnce(&T) -> Value) -> Value {
    v.map_or(Value::Null, f)
}

/// `User`.
pub(crate) fn user(u: &User) -> Value {
    json!({
        "uid": u.uid,
        "gid": u.gid,
        "additional_gids": u.additional_gids,
    })
}

/// `ProcessSpec`.
pub(crate) fn process(p: &ProcessSpec) -> Value {
    json!({
        "argv": p.argv,
        "env": p.env,
        "cwd": p.cwd,
        "user": opt(p.user.as_ref(), user),
        "tty": p.tty,
    })
}

/// `Limit`.
fn limit(l: &Limit) -> Value {
    json!({
        "value": l.value,
        "requirement": enum_value::<Requirement>(l.requirement),
    })
}

/// `Limits`.
fn limits(l: &Limits) -> Value {
    json!({
        "memory_bytes": opt(l.memory_bytes.as_ref(), limit),
        "pids": opt(l.pids.as_ref(), limit),
        "cpu_millis": opt(l.cpu_millis.as_ref(), limit),
        "open_files": opt(l.open_files.as_ref(), limit),
        "address_space_bytes": opt(l.address_space_bytes.as_ref(), limit),
        "disk_bytes": opt(l.disk_bytes.as_ref(), limit),
        "tmp_bytes": l.tmp_bytes,
        "shm_bytes": l.shm_bytes,
    })
}

/// `Isolation`.
fn isolation(i: &Isolation) -> Value {
    json!({
        "filesystem": enum_value::<Requirement>(i.filesystem),
        "pid": enum_value::<Requirement>(i.pid),
        "hostname": enum_value::<Requirement>(i.hostname),
        "ipc": enum_value::<Requirement>(i.ipc),
        "user": enum_value::<Requirement>(i.user),
        "cgroup": enum_value::<Requirement>(i.cgroup),
    })
}

/// `PortForward`.
fn port_forward(f: &PortForward) -> Value {
    json!({
        "protocol": enum_value::<Protocol>(f.protocol),
        "host_port": f.host_port,
        "sandbox_port": f.sandbox_port,
    })
}

/// `NetworkPolicy`.
fn network(n: &NetworkPolicy) -> Value {
    json!({
        "mode": enum_value::<NetworkMode>(n.mode),
        "requirement": enum_value::<Requirement>(n.requirement),
        "addresses": n.addresses,
        "outbound_nat": n.outbound_nat,
        "port_forwards": n.port_forwards.iter().map(port_forward).collect::<Vec<_>>(),
        "dns_servers": n.dns_servers,
        "dns_search": n.dns_search,
    })
}

/// `Mount`.
fn mount(m: &Mount) -> Value {
    json!({ "source": m.source, "target": m.target, "read_only": m.read_only })
}

/// `SandboxSpec`.
pub(crate) fn spec(s: &SandboxSpec) -> Value {
    let labels: Map<String, Value> = s
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
        .collect();
    json!({
        "name": s.name,
        "image": s.image,
        "mode": enum_value::<SandboxMode>(s.mode),
        "process": opt(s.process.as_ref(), process),
        "hostname": s.hostname,
        "isolation": opt(s.isolation.as_ref(), isolation),
        "network": opt(s.network.as_ref(), network),
        "limits": opt(s.limits.as_ref(), limits),
        "mounts": s.mounts.iter().map(mount).collect::<Vec<_>>(),
        "labels": labels,
        "readonly_rootfs": s.readonly_rootfs,
        "stop_signal": s.stop_signal,
        "rootfs": s.rootfs,
    })
}

/// `PropertyEnforcement`.
pub(crate) fn property_enforcement(p: &PropertyEnforcement) -> Value {
    json!({
        "property": enum_value::<IsolationProperty>(p.property),
        "level": enum_value::<EnforcementLevel>(p.level),
        "mechanism": p.mechanism,
        "caveats": p.caveats,
        "requested": enum_value::<Requirement>(p.requested),
        "degraded": p.degraded,
    })
}

/// `IsolationReport`.
pub(crate) fn isolation_report(r: &IsolationReport) -> Value {
    json!({
        "backend": enum_value::<BackendKind>(r.backend),
        "properties": r.properties.iter().map(property_enforcement).collect::<Vec<_>>(),
    })
}

/// `ExitResult`.
pub(crate) fn exit_result(e: &ExitResult) -> Value {
    json!({
        "reason": enum_value::<ExitReason>(e.reason),
        "exit_code": e.exit_code,
        "signal": e.signal,
        "message": e.message,
        "finished_at_ms": e.finished_at_ms,
    })
}

/// `Sandbox`.
pub(crate) fn sandbox(s: &Sandbox) -> Value {
    json!({
        "id": s.id,
        "name": s.name,
        "spec": opt(s.spec.as_ref(), spec),
        "state": enum_value::<SandboxState>(s.state),
        "isolation": opt(s.isolation.as_ref(), isolation_report),
        "main_pid": s.main_pid,
        "supervisor_pid": s.supervisor_pid,
        "exit": opt(s.exit.as_ref(), exit_result),
        "created_at_ms": s.created_at_ms,
        "owner": s.owner,
        "usage": opt(s.usage.as_ref(), |u: &ResourceUsage| json!({
            "memory_bytes": u.memory_bytes,
            "pids": u.pids,
        })),
        "addresses": s.addresses,
    })
}

/// `ListSandboxesResponse`.
pub(crate) fn list(r: &ListSandboxesResponse) -> Value {
    json!({
        "sandboxes": r.sandboxes.iter().map(sandbox).collect::<Vec<_>>(),
        "next_page_token": r.next_page_token,
    })
}

/// `GetCapabilitiesResponse`.
pub(crate) fn capabilities(c: &GetCapabilitiesResponse) -> Value {
    json!({
        "backend": enum_value::<BackendKind>(c.backend),
        "os": c.os,
        "os_version": c.os_version,
        "build_features": c.build_features,
        "matrix": c.matrix.iter().map(property_enforcement).collect::<Vec<_>>(),
        "daemon_version": c.daemon_version,
        "backend_reason": c.backend_reason,
        "images": c.images,
    })
}

/// `PlanStep`.
fn plan_step(s: &PlanStep) -> Value {
    json!({ "op": s.op, "args": s.args, "why": s.why })
}

/// `PlanMount`.
fn plan_mount(m: &PlanMount) -> Value {
    json!({ "source": m.source, "target": m.target, "fstype": m.fstype, "options": m.options })
}

/// `PlanParam`.
fn plan_param(p: &PlanParam) -> Value {
    json!({ "key": p.key, "value": p.value })
}

fn steps(s: &[PlanStep]) -> Vec<Value> {
    s.iter().map(plan_step).collect()
}

fn mounts(m: &[PlanMount]) -> Vec<Value> {
    m.iter().map(plan_mount).collect()
}

fn params(p: &[PlanParam]) -> Vec<Value> {
    p.iter().map(plan_param).collect()
}

/// `ChrootPlan`.
fn chroot_plan(p: &ChrootPlan) -> Value {
    json!({ "steps": steps(&p.steps), "mounts": mounts(&p.mounts) })
}

/// `LinuxPlan`.
fn linux_plan(p: &LinuxPlan) -> Value {
    json!({
        "clone_flags": p.clone_flags,
        "mounts": mounts(&p.mounts),
        "cgroup_writes": params(&p.cgroup_writes),
        "steps": steps(&p.steps),
    })
}

/// `JailPlan`.
fn jail_plan(p: &JailPlan) -> Value {
    json!({
        "params": params(&p.params),
        "mounts": mounts(&p.mounts),
        "rctl_rules": p.rctl_rules,
        "steps": steps(&p.steps),
    })
}

/// `PlanSandboxResponse`. The `plan` oneof appears, as in the proto3 JSON
/// mapping, as the one set member's field (`chroot`, `linux` or `freebsd`);
/// the other two are absent.
pub(crate) fn plan(r: &PlanSandboxResponse) -> Value {
    let mut obj = Map::new();
    obj.insert("backend".into(), enum_value::<BackendKind>(r.backend));
    obj.insert(
        "isolation".into(),
        opt(r.isolation.as_ref(), isolation_report),
    );
    obj.insert("refusals".into(), json!(r.refusals));
    match &r.plan {
        Some(Plan::Chroot(p)) => obj.insert("chroot".into(), chroot_plan(p)),
        Some(Plan::Linux(p)) => obj.insert("linux".into(), linux_plan(p)),
        Some(Plan::Freebsd(p)) => obj.insert("freebsd".into(), jail_plan(p)),
        None => None,
    };
    Value::Object(obj)
}

/// `WaitSandboxResponse`.
pub(crate) fn wait(r: &WaitSandboxResponse) -> Value {
    json!({ "exit": opt(r.exit.as_ref(), exit_result) })
}

/// One `DestroySandboxResponse`, with the id it was for (the response alone
/// does not say, and `rm` takes several ids).
pub(crate) fn destroyed(id: &str, existed: bool) -> Value {
    json!({ "id": id, "existed": existed })
}

/// `Event`.
pub(crate) fn event(e: &Event) -> Value {
    json!({
        "revision": e.revision,
        "kind": enum_value::<EventKind>(e.kind),
        "sandbox_id": e.sandbox_id,
        "pid": e.pid,
        "exit": opt(e.exit.as_ref(), exit_result),
        "time_ms": e.time_ms,
    })
}

/// A verification (VerifySandbox, `create --verify`).
pub(crate) fn verification(v: &Verification) -> Value {
    json!({
        "backend": enum_value::<BackendKind>(v.backend),
        "properties": v.properties.iter().map(|p| json!({
            "property": enum_value::<IsolationProperty>(p.property),
            "claimed": enum_value::<EnforcementLevel>(p.claimed),
            "requested": enum_value::<Requirement>(p.requested),
            "observed": enum_value::<ObservedResult>(p.observed),
            "agrees": p.agrees,
            "evidence": p.evidence,
        })).collect::<Vec<_>>(),
        "checks": v.checks.iter().map(|c| json!({
            "name": c.name,
            "expected": c.expected,
            "observed": enum_value::<ObservedResult>(c.observed),
            "evidence": c.evidence,
        })).collect::<Vec<_>>(),
        "consistent": v.consistent,
        "elapsed_ms": v.elapsed_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn enums_are_proto_names_and_unknown_values_numbers() {
        assert_eq!(enum_value::<Requirement>(2), json!("PREFERRED"));
        assert_eq!(enum_value::<SandboxState>(4), json!("EXITED_STATE"));
        assert_eq!(
            enum_value::<NetworkMode>(0),
            json!("NETWORK_MODE_UNSPECIFIED")
        );
        assert_eq!(enum_value::<BackendKind>(42), json!(42));
        assert_eq!(enum_name::<EventKind>(6), Some("EVENT_DESTROYED"));
    }

    #[test]
    fn sandbox_full_shape() {
        let s = Sandbox {
            id: "0123456789abcdef".into(),
            name: "web".into(),
            spec: Some(SandboxSpec {
                name: "web".into(),
                image: "host".into(),
                mode: SandboxMode::Process as i32,
                process: Some(ProcessSpec {
                    argv: vec!["/bin/true".into()],
                    env: vec![],
                    cwd: "/".into(),
                    user: Some(User {
                        uid: Some(1000),
                        gid: None,
                        additional_gids: vec![10],
                    }),
                    tty: false,
                }),
                limits: Some(Limits {
                    memory_bytes: Some(Limit {
                        value: 64 << 20,
                        requirement: 2,
                    }),
                    ..Default::default()
                }),
                labels: HashMap::from([("b".into(), "2".into()), ("a".into(), "1".into())]),
                ..Default::default()
            }),
            state: SandboxState::Running as i32,
            isolation: Some(IsolationReport {
                backend: BackendKind::Linux as i32,
                properties: vec![PropertyEnforcement {
                    property: IsolationProperty::MemoryLimit as i32,
                    level: EnforcementLevel::Enforced as i32,
                    mechanism: "memory.max".into(),
                    caveats: String::new(),
                    requested: Requirement::Preferred as i32,
                    degraded: false,
                }],
            }),
            main_pid: 4242,
            supervisor_pid: 4241,
            exit: None,
            created_at_ms: 1_714_566_896_789,
            owner: "local".into(),
            usage: None,
            addresses: Vec::new(),
        };
        let v = sandbox(&s);
        assert_eq!(v["state"], "RUNNING");
        assert_eq!(v["exit"], Value::Null);
        assert_eq!(v["main_pid"], 4242);
        assert_eq!(v["spec"]["mode"], "PROCESS");
        assert_eq!(v["spec"]["network"], Value::Null);
        assert_eq!(
            v["spec"]["process"]["user"],
            json!({"uid": 1000, "gid": null, "additional_gids": [10]})
        );
        assert_eq!(
            v["spec"]["limits"]["memory_bytes"],
            json!({"value": 67108864, "requirement": "PREFERRED"})
        );
        assert_eq!(v["spec"]["limits"]["pids"], Value::Null);
        assert_eq!(v["isolation"]["backend"], "LINUX");
        assert_eq!(v["isolation"]["properties"][0]["property"], "MEMORY_LIMIT");
        assert_eq!(v["isolation"]["properties"][0]["level"], "ENFORCED");
        // Sorted label keys make the output diffable.
        assert_eq!(
            serde_json::to_string(&v["spec"]["labels"]).ok().as_deref(),
            Some(r#"{"a":"1","b":"2"}"#)
        );
    }

    #[test]
    fn network_policy_and_leased_addresses() {
        let forward = |protocol: i32, host_port, sandbox_port| PortForward {
            protocol,
            host_port,
            sandbox_port,
        };
        let cases: Vec<(NetworkPolicy, Value)> = vec![
            (
                NetworkPolicy::default(),
                json!({
                    "mode": "NETWORK_MODE_UNSPECIFIED", "requirement": "REQUIREMENT_UNSPECIFIED",
                    "addresses": [], "outbound_nat": false, "port_forwards": [],
                    "dns_servers": [], "dns_search": [],
                }),
            ),
            (
                NetworkPolicy {
                    mode: NetworkMode::Restricted as i32,
                    requirement: Requirement::Preferred as i32,
                    addresses: vec!["203.0.113.2".into()],
                    outbound_nat: true,
                    port_forwards: vec![
                        forward(Protocol::Tcp as i32, 8080, 80),
                        forward(Protocol::Udp as i32, 5353, 53),
                        forward(Protocol::Unspecified as i32, 2222, 22),
                        // A protocol from a newer daemon: its number.
                        forward(9, 1, 1),
                    ],
                    dns_servers: vec!["192.0.2.53".into()],
                    dns_search: vec!["example.com".into()],
                },
                json!({
                    "mode": "RESTRICTED", "requirement": "PREFERRED",
                    "addresses": ["203.0.113.2"], "outbound_nat": true,
                    "port_forwards": [
                        {"protocol": "TCP", "host_port": 8080, "sandbox_port": 80},
                        {"protocol": "UDP", "host_port": 5353, "sandbox_port": 53},
                        {"protocol": "PROTOCOL_UNSPECIFIED", "host_port": 2222, "sandbox_port": 22},
                        {"protocol": 9, "host_port": 1, "sandbox_port": 1},
                    ],
                    "dns_servers": ["192.0.2.53"], "dns_search": ["example.com"],
                }),
            ),
        ];
        for (policy, want) in cases {
            let s = Sandbox {
                spec: Some(SandboxSpec {
                    network: Some(policy.clone()),
                    ..Default::default()
                }),
                addresses: vec!["203.0.113.2".into(), "2001:db8::2".into()],
                ..Default::default()
            };
            let v = sandbox(&s);
            assert_eq!(v["spec"]["network"], want, "{policy:?}");
            assert_eq!(v["addresses"], json!(["203.0.113.2", "2001:db8::2"]));
        }
        assert_eq!(sandbox(&Sandbox::default())["addresses"], json!([]));
    }

    #[test]
    fn plan_oneof_is_the_set_member() {
        let r = PlanSandboxResponse {
            backend: BackendKind::Freebsd as i32,
            isolation: None,
            refusals: vec!["USER".into()],
            plan: Some(Plan::Freebsd(JailPlan {
                params: vec![PlanParam {
                    key: "host.hostname".into(),
                    value: "web".into(),
                }],
                mounts: vec![],
                rctl_rules: vec!["jail:x:memoryuse:deny=64M".into()],
                steps: vec![PlanStep {
                    op: "jail_set".into(),
                    args: vec![],
                    why: "create".into(),
                }],
            })),
        };
        let v = plan(&r);
        assert_eq!(v["backend"], "FREEBSD");
        assert_eq!(v["refusals"], json!(["USER"]));
        assert_eq!(
            v["freebsd"]["params"][0],
            json!({"key": "host.hostname", "value": "web"})
        );
        assert_eq!(v["freebsd"]["rctl_rules"][0], "jail:x:memoryuse:deny=64M");
        assert!(v.get("linux").is_none() && v.get("chroot").is_none());
    }

    #[test]
    fn events_and_exits() {
        let e = Event {
            revision: 7,
            kind: EventKind::EventExited as i32,
            sandbox_id: "ab".into(),
            pid: 0,
            exit: Some(ExitResult {
                reason: ExitReason::OomKilled as i32,
                exit_code: 137,
                signal: 9,
                message: "memory.max".into(),
                finished_at_ms: 5,
            }),
            time_ms: 5,
        };
        assert_eq!(
            event(&e),
            json!({
                "revision": 7, "kind": "EVENT_EXITED", "sandbox_id": "ab", "pid": 0,
                "exit": {"reason": "OOM_KILLED", "exit_code": 137, "signal": 9,
                         "message": "memory.max", "finished_at_ms": 5},
                "time_ms": 5,
            })
        );
    }

    #[test]
    fn capabilities_shape() {
        let c = GetCapabilitiesResponse {
            backend: BackendKind::Chroot as i32,
            os: "FreeBSD".into(),
            os_version: "14.1-RELEASE".into(),
            build_features: vec!["force-chroot".into()],
            matrix: vec![],
            daemon_version: "0.1.0".into(),
            backend_reason: "feature force-chroot".into(),
            images: vec!["host".into()],
        };
        let v = capabilities(&c);
        assert_eq!(v["backend"], "CHROOT");
        assert_eq!(v["build_features"], json!(["force-chroot"]));
        assert_eq!(v["matrix"], json!([]));
        let l = list(&ListSandboxesResponse {
            sandboxes: vec![],
            next_page_token: "t".into(),
        });
        assert_eq!(l, json!({"sandboxes": [], "next_page_token": "t"}));
    }
}
