//! Who is calling and what they may do. Local unix-socket clients are the
//! admin "local" (the socket's mode decides who that is). A remote client
//! is the identity its certificate names, and must be listed in the
//! config's `[identities]`: a certificate from the right CA is not enough.
//! Non-admins see and act on their own sandboxes only.

use std::collections::BTreeMap;

use crate::config::Role;
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
}

impl Caller {
    /// Whether this caller may see a sandbox owned by `owner`.
    pub fn may_see(&self, owner: &str) -> bool {
        self.admin || self.name == owner
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
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

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
                    },
                ),
                (
                    "ops".to_owned(),
                    Role {
                        admin: true,
                        max_sandboxes: Some(100),
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
        for peer in [remote("mallory"), None] {
            assert!(matches!(
                auth.caller(&request(peer)),
                Err(ApiError::PermissionDenied(_))
            ));
        }
    }
}
