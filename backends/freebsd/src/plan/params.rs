//! The jail's `jail_set(2)` parameters and its network.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

use sandboxd_core::spec::{NetworkMode, Requirement};
use sandboxd_core::{SandboxPaths, ValidatedSpec};

use super::{HostFacts, JailParam, Jsys, ParamValue, PlanError};

/// The devfs ruleset of the jail's /dev: 4 is `devfsrules_jail` from
/// /etc/defaults/devfs.rules, the ruleset jail(8) uses by default. It hides
/// every device, then unhides only null, zero, crypto, random, urandom, ptmx,
/// pts, fd and stdin/stdout/stderr: no disks, no kmem, no bpf.
pub const DEVFS_RULESET: i64 = 4;

/// The network a jail gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Net {
    /// No IP at all.
    None,
    /// Its own stack with only lo0.
    Vnet,
    /// The host's stack, bound to a per-sandbox loopback alias.
    Alias(Ipv4Addr),
    /// The listed addresses; an empty family is disabled.
    Restricted(Vec<Ipv4Addr>, Vec<Ipv6Addr>),
    /// The host's addresses.
    Host,
}

/// The per-sandbox lo0 alias used for LOOPBACK without VIMAGE: an address in
/// 127.128.0.0/9 derived from the id (FNV-1a), away from 127.0.0.1 and the
/// addresses other software tends to use. A clash with another sandbox makes
/// the alias step fail; it never shares an address.
pub fn loopback_alias(id: &str) -> Ipv4Addr {
    let h = id.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    let [_, a, b, c] = h.to_be_bytes();
    Ipv4Addr::new(127, a | 0x80, b, c)
}

/// The addresses a RESTRICTED sandbox holds: the daemon's lease, or, when
/// nothing is leased (a PlanSandbox without an address pool), the spec's
/// own list, so the plan still shows what they would become.
pub(super) fn addresses(
    spec: &ValidatedSpec,
    sandbox: &SandboxPaths,
) -> Result<Vec<IpAddr>, PlanError> {
    if !sandbox.lease.addresses.is_empty() {
        return Ok(sandbox.lease.addresses.clone());
    }
    spec.spec()
        .network
        .addresses
        .iter()
        .enumerate()
        .map(|(index, address)| {
            address
                .parse::<IpAddr>()
                .map_err(|_| PlanError::NetworkAddress {
                    index,
                    address: address.clone(),
                })
        })
        .collect()
}

/// The network for a spec on this host.
pub(super) fn network(
    spec: &ValidatedSpec,
    sandbox: &SandboxPaths,
    host: &HostFacts,
) -> Result<Net, PlanError> {
    Ok(match spec.spec().network.mode {
        NetworkMode::Unspecified | NetworkMode::None => Net::None,
        NetworkMode::Loopback if host.vimage => Net::Vnet,
        NetworkMode::Loopback => Net::Alias(loopback_alias(&sandbox.id)),
        NetworkMode::Host => Net::Host,
        NetworkMode::Restricted => {
            let (mut v4, mut v6) = (Vec::new(), Vec::new());
            for a in addresses(spec, sandbox)? {
                match a {
                    IpAddr::V4(a) => v4.push(a),
                    IpAddr::V6(a) => v6.push(a),
                }
            }
            Net::Restricted(v4, v6)
        }
    })
}

fn param(name: &str, value: ParamValue) -> JailParam {
    JailParam {
        name: name.to_owned(),
        value,
    }
}

/// The parameters, in order.
pub(super) fn params(
    spec: &ValidatedSpec,
    sandbox: &SandboxPaths,
    rootfs: &Path,
    name: &str,
    net: &Net,
) -> Vec<JailParam> {
    use ParamValue::{Bool, Int, Ip4, Ip6, Str};
    let s = spec.spec();
    let jsys = |name: &str, j: Jsys| param(name, ParamValue::Jsys(j));
    let mut p = vec![
        param("path", Str(rootfs.display().to_string())),
        param("name", Str(name.to_owned())),
    ];
    if s.isolation.hostname == Requirement::Disabled {
        p.push(jsys("host", Jsys::Inherit));
    } else {
        let hostname = if s.hostname.is_empty() {
            &sandbox.id
        } else {
            &s.hostname
        };
        p.push(param("host.hostname", Str(hostname.clone())));
    }
    match net {
        Net::None => p.extend([jsys("ip4", Jsys::Disable), jsys("ip6", Jsys::Disable)]),
        Net::Vnet => p.push(jsys("vnet", Jsys::New)),
        Net::Alias(a) => p.extend([param("ip4.addr", Ip4(vec![*a])), jsys("ip6", Jsys::Disable)]),
        Net::Restricted(v4, v6) => {
            p.push(if v4.is_empty() {
                jsys("ip4", Jsys::Disable)
            } else {
                param("ip4.addr", Ip4(v4.clone()))
            });
            p.push(if v6.is_empty() {
                jsys("ip6", Jsys::Disable)
            } else {
                param("ip6.addr", Ip6(v6.clone()))
            });
        }
        Net::Host => p.extend([jsys("ip4", Jsys::Inherit), jsys("ip6", Jsys::Inherit)]),
    }
    // Every jail, not only IDLE ones, stays until the supervisor's teardown
    // (or the daemon's cleanup) removes it with jail_remove. The
    // supervisor, not the kernel, decides when a sandbox ends; a jail the
    // kernel removed with its last process would free its jid, another
    // jail could get it, and a later Exec would jail_attach to that one.
    p.push(param("persist", Bool(true)));
    p.extend([
        // Mounts outside the jail's root are invisible to it.
        param("enforce_statfs", Int(2)),
        param("children.max", Int(0)),
        // Cannot be lowered from inside: no raw disk writes, no clock
        // changes, immutable flags stick.
        param("securelevel", Int(2)),
        param("devfs_ruleset", Int(DEVFS_RULESET)),
        param("allow.raw_sockets", Bool(false)),
        param("allow.mount", Bool(false)),
        param("allow.set_hostname", Bool(false)),
        // The legacy switch; the explicit sysv* parameters below decide.
        param("allow.sysvipc", Bool(false)),
    ]);
    let ipc = if s.isolation.ipc == Requirement::Disabled {
        Jsys::Inherit
    } else {
        Jsys::New
    };
    p.extend(["sysvmsg", "sysvsem", "sysvshm"].map(|n| jsys(n, ipc)));
    p
}
