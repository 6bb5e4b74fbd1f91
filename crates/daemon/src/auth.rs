//! Who is calling and what they may do. Local unix-socket clients are the
//! admin "local" (the socket's mode decides who that is). A remote client
//! is the identity its certificate names, and must be listed in the
//! config's `[identities]`: a certificate from the right CA is not enough.
//! Non-admins see and act on their own sandboxes only.

use std::collections::BTreeMap;

use sandboxd_core::spec::{NetworkMode, SandboxSpec};

use crate::config::{Role, SpecCaps};
use crate::error::ApiError;
use crate::transport::Peer;

/// The owner recorded for sandboxes made over the unix socket.
pub const LOCAL: &str = "local";

/// A resolved caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The identity sandboxes are recorded under.
    pub name: String,
    /// Sees and acts on every sandbox.
    pub admin: bool,
    /// Most sandboxes it may hold at once.
    pub max_sandboxes: Option<usize>,
    /// What its specs may ask for.
    pub caps: SpecCaps,
}

impl Caller {
    /// Whether this caller may see a sandbox owned by `owner`.
    pub fn may_see(&self, owner: &str) -> bool {
        self.admin || self.name == owner
    }

    /// PERMISSION_DENIED naming the field if `spec` asks for more than this
    /// caller's role allows.
    pub fn check_spec(&self, spec: &SandboxSpec) -> Result<(), ApiError> {
        let caps = &self.caps;
        let deny = |field: &str, why: String| {
            Err(ApiError::PermissionDenied(format!(
                "{field}: {why} for identity {:?}",
                self.name
            )))
        };
        if let Some(images) = &caps.images {
            if !images.iter().any(|i| i == spec.image()) {
                return deny(
                    "spec.image",
                    format!(
                        "{:?} is not among the images allowed ({})",
                        spec.image(),
                        images.join(", ")
                    ),
                );
            }
        }
        if let Some(modes) = &caps.network_modes {
            // UNSPECIFIED is the backend's default, NONE on Linux and
            // FreeBSD; it is checked as NONE.
            let mode = match spec.network.mode {
                NetworkMode::Unspecified => NetworkMode::None,
                m => m,
            };
            if !modes.contains(&mode) {
                return deny(
                    "spec.network.mode",
                    format!(
                        "{:?} is not among the modes allowed ({modes:?})",
                        spec.network.mode
                    ),
                );
            }
        }
        let limits = [
            (
                "spec.limits.memory_bytes",
                spec.limits.memory_bytes,
                caps.max_memory_bytes,
            ),
            ("spec.limits.pids", spec.limits.pids, caps.max_pids),
            (
                "spec.limits.cpu_millis",
                spec.limits.cpu_millis,
                caps.max_cpu_millis,
            ),
            // The daemon's default is filled in before this check, so a
            // spec without one is judged by the default.
            (
                "spec.limits.disk_bytes",
                spec.limits.disk_bytes,
                caps.max_disk_bytes,
            ),
        ];
        for (field, asked, max) in limits {
            let Some(max) = max else { continue };
            match asked {
                None => return deny(field, format!("a limit of at most {max} is required")),
                Some(l) if l.value > max => {
                    return deny(field, format!("{} exceeds the maximum {max}", l.value));
                }
                Some(_) => {}
            }
        }
        Ok(())
    }
}

/// Resolves peers to callers.
#[derive(Debug, Default)]
pub struct Authorizer {
    identities: BTreeMap<String, Role>,
    default_max_sandboxes: Option<usize>,
}

impl Authorizer {
    /// From the config's identities and default quota.
    pub fn new(identities: BTreeMap<String, Role>, default_max_sandboxes: Option<usize>) -> Self {
        Self {
            identities,
            default_max_sandboxes,
        }
    }

    /// The caller of a request, or PERMISSION_DENIED for an identity the
    /// configuration does not list.
    pub fn caller<T>(&self, req: &tonic::Request<T>) -> Result<Caller, ApiError> {
        match req.extensions().get::<Peer>() {
            // Every connection comes through transport::incoming, which
            // tags it; an untagged one is not served.
            None => Err(ApiError::PermissionDenied(
                "the connection has no identity".into(),
            )),
            Some(Peer::Local) => Ok(Caller {
                name: LOCAL.to_owned(),
                admin: true,
                max_sandboxes: None,
                caps: SpecCaps::default(),
            }),
            Some(Peer::Remote { identity, .. }) => self.remote(identity),
        }
    }

    fn remote(&self, identity: &str) -> Result<Caller, ApiError> {
        let role = self.identities.get(identity).ok_or_else(|| {
            ApiError::PermissionDenied(format!(
                "identity {identity:?} is not known to this daemon (add it under [identities] in the config)"
            ))
        })?;
        Ok(Caller {
            name: identity.to_owned(),
            admin: role.admin,
            max_sandboxes: role.max_sandboxes.or(self.default_max_sandboxes),
            caps: role.caps.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use sandboxd_core::spec::{Limit, Limits, Requirement};

    fn request(peer: Option<Peer>) -> tonic::Request<()> {
        let mut r = tonic::Request::new(());
        if let Some(p) = peer {
            r.extensions_mut().insert(p);
        }
        r
    }

    #[test]
    fn callers() {
        let auth = Authorizer::new(
            BTreeMap::from([
                (
                    "spiffe://example.test/alice".to_owned(),
                    Role {
                        admin: false,
                        max_sandboxes: None,
                        caps: SpecCaps {
                            images: Some(vec!["web".into()]),
                            network_modes: Some(vec![NetworkMode::None, NetworkMode::Restricted]),
                            max_memory_bytes: Some(1 << 30),
                            max_disk_bytes: Some(256 << 20),
                            ..SpecCaps::default()
                        },
                    },
                ),
                (
                    "ops".to_owned(),
                    Role {
                        admin: true,
                        max_sandboxes: Some(100),
                        caps: SpecCaps::default(),
                    },
                ),
            ]),
            Some(5),
        );
        let remote = |id: &str| {
            Some(Peer::Remote {
                identity: id.to_owned(),
                addr: "198.51.100.2:5000".parse().unwrap(),
            })
        };
        let local = auth.caller(&request(Some(Peer::Local))).unwrap();
        assert!(local.admin && local.name == LOCAL);
        let alice = auth
            .caller(&request(remote("spiffe://example.test/alice")))
            .unwrap();
        assert!(!alice.admin);
        assert_eq!(alice.max_sandboxes, Some(5), "the default quota");
        assert!(alice.may_see("spiffe://example.test/alice") && !alice.may_see("ops"));
        let ops = auth.caller(&request(remote("ops"))).unwrap();
        assert!(ops.admin && ops.may_see("anyone"));
        assert_eq!(ops.max_sandboxes, Some(100));
        // alice's caps: image "web", NONE or RESTRICTED, memory <= 1 GiB.
        let ok = SandboxSpec {
            image: "web".into(),
            limits: Limits {
                memory_bytes: Some(Limit {
                    value: 1 << 30,
                    requirement: Requirement::Required,
                }),
                disk_bytes: Some(Limit {
                    value: 256 << 20,
                    requirement: Requirement::Preferred,
                }),
                ..Limits::default()
            },
            ..SandboxSpec::default()
        };
        assert!(alice.check_spec(&ok).is_ok());
        type Edit = fn(&mut SandboxSpec);
        let cases: &[(Edit, &str)] = &[
            (|s| s.image = "host".into(), "spec.image"),
            (|s| s.network.mode = NetworkMode::Host, "spec.network.mode"),
            (
                |s| s.limits.memory_bytes = None,
                "spec.limits.memory_bytes: a limit",
            ),
            (
                |s| {
                    s.limits.memory_bytes = Some(Limit {
                        value: 2 << 30,
                        requirement: Requirement::Required,
                    })
                },
                "exceeds the maximum",
            ),
            (
                // The daemon's default (1 GiB) is more than alice may have.
                |s| {
                    s.limits.disk_bytes = Some(Limit {
                        value: 1 << 30,
                        requirement: Requirement::Preferred,
                    })
                },
                "spec.limits.disk_bytes: 1073741824 exceeds the maximum",
            ),
        ];
        for (edit, want) in cases {
            let mut spec = ok.clone();
            edit(&mut spec);
            match alice.check_spec(&spec) {
                Err(ApiError::PermissionDenied(m)) => assert!(m.contains(want), "{m}"),
                other => panic!("{want}: {other:?}"),
            }
        }
        // Admins and local callers have no caps.
        assert!(ops.check_spec(&SandboxSpec::default()).is_ok());
        for peer in [remote("mallory"), None] {
            assert!(matches!(
                auth.caller(&request(peer)),
                Err(ApiError::PermissionDenied(_))
            ));
        }
    }
}
