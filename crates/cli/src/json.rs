//! `--json` output: the API's messages in the canonical proto3 JSON
//! mapping, the one grpcurl and every protobuf library print: field names in
//! lowerCamelCase, enums as their value names (`REQUIRED`, `EXITED_STATE`;
//! a value this client does not know, from a newer daemon, as its number),
//! 64-bit integers as strings, fields at their default value (0, "", false,
//! empty, unset) omitted, maps as objects. Each message is converted through
//! its descriptor (`sandboxd_proto::FILE_DESCRIPTOR_SET`, compiled in) with
//! prost-reflect, so the rules are the library's, not restated here.
//!
//! `--format TEMPLATE` renders the same documents with every field present
//! ([`with_defaults`]), so a template never meets a missing field.

use std::sync::OnceLock;

use prost_reflect::{DescriptorPool, DynamicMessage, SerializeOptions};
use serde_json::{Value, json};

use sandboxd_proto::v1::{
    BackendKind, EnforcementLevel, Event, EventKind, ExitReason, GetCapabilitiesResponse,
    IsolationProperty, NetworkMode, ObservedResult, PlanSandboxResponse, Protocol, Requirement,
    Sandbox, SandboxMode, SandboxState, Verification, WaitSandboxResponse,
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

/// Whether `--format` asked for every field (templates) rather than the
/// canonical omission of defaults (`--json`). Set once, before output.
static WITH_DEFAULTS: OnceLock<bool> = OnceLock::new();

/// Makes every later document carry its default-valued fields too (for
/// `--format` templates).
pub(crate) fn with_defaults() {
    let _ = WITH_DEFAULTS.set(true);
}

/// The API's descriptors, decoded once.
fn pool() -> Result<&'static DescriptorPool, String> {
    static POOL: OnceLock<Result<DescriptorPool, String>> = OnceLock::new();
    POOL.get_or_init(|| {
        DescriptorPool::decode(sandboxd_proto::FILE_DESCRIPTOR_SET).map_err(|e| e.to_string())
    })
    .as_ref()
    .map_err(Clone::clone)
}

/// A message as canonical proto3 JSON. `name` is its full proto name.
fn canonical<M: prost::Message>(message: &M, name: &str) -> Value {
    let convert = || -> Result<Value, String> {
        let desc = pool()?
            .get_message_by_name(name)
            .ok_or_else(|| format!("no message {name} in the compiled-in descriptors"))?;
        let dynamic = DynamicMessage::decode(desc, message.encode_to_vec().as_slice())
            .map_err(|e| e.to_string())?;
        let options = SerializeOptions::new()
            .skip_default_fields(!WITH_DEFAULTS.get().copied().unwrap_or(false));
        dynamic
            .serialize_with_options(serde_json::value::Serializer, &options)
            .map_err(|e| e.to_string())
    };
    // Only a build whose generated code and descriptors disagree can fail
    // here (the unit tests convert every message used); say so in the
    // output rather than abort.
    convert().unwrap_or_else(|e| json!({ "error": format!("cannot convert {name} to JSON: {e}") }))
}

/// `Sandbox`.
pub(crate) fn sandbox(s: &Sandbox) -> Value {
    canonical(s, "sandboxd.v1.Sandbox")
}

/// `GetCapabilitiesResponse`.
pub(crate) fn capabilities(c: &GetCapabilitiesResponse) -> Value {
    canonical(c, "sandboxd.v1.GetCapabilitiesResponse")
}

/// `PlanSandboxResponse` (its `plan` oneof as the set member's field).
pub(crate) fn plan(r: &PlanSandboxResponse) -> Value {
    canonical(r, "sandboxd.v1.PlanSandboxResponse")
}

/// `WaitSandboxResponse`.
pub(crate) fn wait(r: &WaitSandboxResponse) -> Value {
    canonical(r, "sandboxd.v1.WaitSandboxResponse")
}

/// One `DestroySandboxResponse`, with the id it was for (the response alone
/// does not say, and `rm` takes several ids). Not a proto message: both
/// fields are always present.
pub(crate) fn destroyed(id: &str, existed: bool) -> Value {
    json!({ "id": id, "existed": existed })
}

/// `Event`.
pub(crate) fn event(e: &Event) -> Value {
    canonical(e, "sandboxd.v1.Event")
}

/// A `Verification` (VerifySandbox, `create --verify`).
pub(crate) fn verification(v: &Verification) -> Value {
    canonical(v, "sandboxd.v1.Verification")
}

/// An `ExecInfo` (`exec --detach`, `exec-inspect`).
pub(crate) fn exec_info(e: &sandboxd_proto::v1::ExecInfo) -> Value {
    canonical(e, "sandboxd.v1.ExecInfo")
}

/// `ListExecsResponse`.
pub(crate) fn execs(r: &sandboxd_proto::v1::ListExecsResponse) -> Value {
    canonical(r, "sandboxd.v1.ListExecsResponse")
}

/// `ResourceUsage` (`stats`).
pub(crate) fn usage(u: &sandboxd_proto::v1::ResourceUsage) -> Value {
    canonical(u, "sandboxd.v1.ResourceUsage")
}

#[cfg(test)]
mod tests {
    use super::*;
    use sandboxd_proto::v1::{
        ExitResult, IsolationReport, Limit, Limits, ProcessSpec, PropertyEnforcement,
        ResourceUsage, SandboxSpec, User,
    };
    use std::collections::HashMap;

    #[test]
    fn enum_names() {
        assert_eq!(enum_name::<Requirement>(2), Some("PREFERRED"));
        assert_eq!(enum_name::<SandboxState>(4), Some("EXITED_STATE"));
        assert_eq!(enum_name::<BackendKind>(42), None);
        assert_eq!(enum_name::<EventKind>(6), Some("EVENT_DESTROYED"));
    }

    fn example() -> Sandbox {
        Sandbox {
            id: "0123456789abcdef".into(),
            name: "web".into(),
            spec: Some(SandboxSpec {
                name: "web".into(),
                image: "host".into(),
                mode: SandboxMode::Process as i32,
                process: Some(ProcessSpec {
                    argv: vec!["/bin/true".into()],
                    cwd: "/".into(),
                    user: Some(User {
                        uid: Some(0),
                        gid: None,
                        additional_gids: vec![10],
                    }),
                    ..Default::default()
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
                backend: 42, // a newer daemon's backend
                properties: vec![PropertyEnforcement {
                    property: IsolationProperty::MemoryLimit as i32,
                    level: EnforcementLevel::Enforced as i32,
                    mechanism: "memory.max".into(),
                    requested: Requirement::Preferred as i32,
                    ..Default::default()
                }],
            }),
            main_pid: 4242,
            init_pid: 0,
            supervisor_pid: 0,
            exit: None,
            created_at_ms: 1_714_566_896_789,
            owner: "local".into(),
            usage: Some(ResourceUsage {
                memory_bytes: Some(0),
                cpu_usec: Some(1_500_000),
                ..Default::default()
            }),
            addresses: Vec::new(),
        }
    }

    #[test]
    fn the_canonical_proto3_mapping() {
        let v = sandbox(&example());
        // lowerCamelCase names; int64 as strings; enums by name.
        assert_eq!(v["mainPid"], "4242");
        assert_eq!(v["createdAtMs"], "1714566896789");
        assert_eq!(v["state"], "RUNNING");
        assert_eq!(v["spec"]["mode"], "PROCESS");
        assert_eq!(v["spec"]["labels"], json!({"a": "1", "b": "2"}));
        assert_eq!(
            v["spec"]["limits"]["memoryBytes"],
            json!({"value": "67108864", "requirement": "PREFERRED"})
        );
        // An enum value this build does not know: its number.
        assert_eq!(v["isolation"]["backend"], 42);
        // Defaults are omitted: 0, "", false, empty lists, unset messages.
        let obj = v.as_object().expect("object");
        for absent in ["supervisorPid", "exit", "addresses", "main_pid"] {
            assert!(!obj.contains_key(absent), "{absent} in {v}");
        }
        assert!(v["isolation"]["properties"][0].get("degraded").is_none());
        // ...but a set `optional` field is present even at 0.
        assert_eq!(v["spec"]["process"]["user"]["uid"], 0);
        assert!(v["spec"]["process"]["user"].get("gid").is_none());
        assert_eq!(v["usage"]["memoryBytes"], "0");
        assert_eq!(v["usage"]["cpuUsec"], "1500000");
        assert!(
            v["usage"].get("ioReadBytes").is_none(),
            "unmeasured: absent"
        );
    }

    #[test]
    fn every_message_used_converts() {
        let none = |v: &Value| v.get("error").is_none();
        assert!(none(&sandbox(&example())));
        assert!(none(&capabilities(&GetCapabilitiesResponse::default())));
        assert!(none(&plan(&PlanSandboxResponse::default())));
        let w = wait(&WaitSandboxResponse {
            exit: Some(ExitResult {
                reason: ExitReason::Signaled as i32,
                signal: 9,
                ..Default::default()
            }),
        });
        assert_eq!(w, json!({"exit": {"reason": "SIGNALED", "signal": 9}}));
        assert!(none(&event(&Event::default())));
        assert!(none(&verification(&Verification::default())));
        assert!(none(&usage(&ResourceUsage::default())));
        let info = sandboxd_proto::v1::ExecInfo {
            exec_id: 7,
            running: true,
            ..Default::default()
        };
        assert_eq!(exec_info(&info)["execId"], json!("7"));
        assert!(none(&execs(&sandboxd_proto::v1::ListExecsResponse {
            execs: vec![info],
        })));
        assert_eq!(destroyed("x", false), json!({"id": "x", "existed": false}));
    }
}
