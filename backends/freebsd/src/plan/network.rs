//! Networking on FreeBSD, in one place: where IP restriction happens.
//!
//! A jail without vnet has no interface of its own: it shares the host's
//! stack, and the kernel lets it use only the addresses in its
//! `ip4.addr`/`ip6.addr` parameters (any other bind fails, and outgoing
//! traffic is sourced from them). So restricting a sandbox's IP is three
//! things, all decided here from the spec's network mode, the daemon's
//! lease and [`HostFacts`]:
//!
//! 1. The jail's parameters (`jail_params`): `ip4=disable ip6=disable`
//!    (NONE, and UNSPECIFIED), `vnet=new` with only lo0 (LOOPBACK on a
//!    VIMAGE kernel), a per-sandbox 127.128/9 lo0 alias as the only
//!    `ip4.addr`, to which the jail's 127.0.0.1 maps (LOOPBACK without
//!    VIMAGE, [`loopback_alias`]), the leased
//!    addresses (RESTRICTED: the spec's own when nothing is leased, as in a
//!    PlanSandbox without a pool; a family with none is disabled), or
//!    `inherit` (HOST).
//! 2. The host side ([`HostNet`]): a RESTRICTED address must be on a host
//!    interface, so the daemon adds it as an alias on
//!    [`HostFacts::alias_interface`] (or checks it is already there); NAT
//!    and port forwards are pf nat/rdr rules ([`pf_rules`]) in the anchor
//!    `sandboxd/<id>` ([`pf_anchor`]), which pf.conf must hook with
//!    `nat-anchor "sandboxd/*"` and `rdr-anchor "sandboxd/*"`. A host
//!    without ifconfig(8) refuses what needs it (`check_base_files`).
//! 3. DNS (`resolv_conf`): the generated resolv.conf is nullfs-mounted,
//!    read-only, over the image's `/etc/resolv.conf` (which must exist), so
//!    it works for read-only roots and never writes into a shared image.
//!
//! Who does it: the supervisor hands the parameters to `jail_set(2)`
//! (`runtime`, encoded by `kernel_args::jail_iovecs`); the daemon runs the
//! host side in `Backend::prepare` (`netcfg::prepare`, the thin executor of
//! the [`Actor::Daemon`](super::Actor) steps) and undoes it by the sandbox
//! id in `Backend::cleanup` ([`undo_host_net`] over the [`HostNetRecord`] it
//! kept); the NETWORK row of the capability matrix (`matrix`) says what is
//! enforced. The host-side commands and their undo are pure and live here
//! too, so all of it is tested on every OS (`network/tests.rs`, and the
//! plan tests in `plan/tests.rs`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};

use sandboxd_core::spec::NetworkMode;
use sandboxd_core::{SandboxPaths, ValidatedSpec};

use super::params::param;
use super::{HostFacts, IFCONFIG, JailParam, Jsys, PFCTL, ParamValue, PlanError, needed_for};

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
        // Refused by the matrix (always REQUIRED); no network if planned.
        NetworkMode::Namespace => Net::None,
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

/// The jail's network parameters, in order: `ip4`/`ip6` disabled or
/// inherited, the addresses of `ip4.addr`/`ip6.addr`, or `vnet=new`. This
/// is where the kernel is told which addresses a jail may use: a jail
/// without vnet can bind only those, and its traffic leaves from them.
pub(super) fn jail_params(net: &Net) -> Vec<JailParam> {
    use ParamValue::{Ip4, Ip6};
    let jsys = |name: &str, j: Jsys| param(name, ParamValue::Jsys(j));
    let mut p = Vec::new();
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
    p
}

/// One address the daemon adds to a host interface before the jail
/// starts (a /32 or /128 alias) and removes on destroy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostAlias {
    /// The interface ("lo1").
    pub interface: String,
    /// The address.
    pub address: IpAddr,
}

impl HostAlias {
    /// The address with its host prefix, as ifconfig(8) takes it.
    pub fn with_prefix(&self) -> String {
        let bits = if self.address.is_ipv4() { 32 } else { 128 };
        format!("{}/{bits}", self.address)
    }
}

/// The host side of a sandbox's network, made by the daemon before the
/// supervisor starts (`Backend::prepare`) and removed, by the sandbox id
/// alone, on destroy (`Backend::cleanup`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct HostNet {
    /// Aliases to add (RESTRICTED with an alias interface).
    pub aliases: Vec<HostAlias>,
    /// Addresses that must already be configured on a host interface
    /// (RESTRICTED without an alias interface); checked, never touched.
    pub present: Vec<IpAddr>,
    /// The pf anchor of the sandbox, `sandboxd/<id>`.
    pub pf_anchor: String,
    /// The nat and rdr rules loaded into the anchor; empty: none.
    pub pf_rules: Vec<String>,
}

/// The pf anchor holding a sandbox's nat and rdr rules.
pub fn pf_anchor(id: &str) -> String {
    format!("sandboxd/{id}")
}

/// The pf address family keyword of an address.
fn af(a: &IpAddr) -> &'static str {
    if a.is_ipv4() { "inet" } else { "inet6" }
}

/// The anchor's rules: one `nat` per address (outbound traffic leaves
/// through `egress` with the egress interface's own address, `(egress)`,
/// which pf keeps current), and one `rdr pass` per port forward, from the
/// egress interface's address to the sandbox's first address. `rdr pass`
/// lets the forwarded connection through without a filter rule of its own,
/// as a forward asked for by the spec should.
pub fn pf_rules(spec: &ValidatedSpec, addresses: &[IpAddr], egress: &str) -> Vec<String> {
    let net = &spec.spec().network;
    let mut rules = Vec::new();
    if net.outbound_nat {
        rules.extend(
            addresses
                .iter()
                .map(|a| format!("nat on {egress} {} from {a} to any -> ({egress})", af(a))),
        );
    }
    if let Some(first) = addresses.first() {
        rules.extend(net.port_forwards.iter().map(|f| {
            format!(
                "rdr pass on {egress} {} proto {} from any to ({egress}) port {} -> {first} port {}",
                af(first),
                f.protocol.as_str(),
                f.host_port,
                f.sandbox_port
            )
        }));
    }
    rules
}

/// Whether the spec asks for anything pf must do.
pub fn wants_pf(spec: &ValidatedSpec) -> bool {
    let net = &spec.spec().network;
    net.mode == NetworkMode::Restricted && (net.outbound_nat || !net.port_forwards.is_empty())
}

/// The host side of the network for a spec: nothing outside RESTRICTED.
/// The pf rules are left out when pf cannot apply them; the report says so
/// and [`super::build`] refuses a spec that REQUIRED them.
pub(super) fn host_net(
    spec: &ValidatedSpec,
    sandbox: &SandboxPaths,
    host: &HostFacts,
) -> Result<HostNet, PlanError> {
    let mut out = HostNet {
        pf_anchor: pf_anchor(&sandbox.id),
        ..HostNet::default()
    };
    if spec.spec().network.mode != NetworkMode::Restricted {
        return Ok(out);
    }
    let addresses = addresses(spec, sandbox)?;
    match &host.alias_interface {
        Some(interface) => {
            out.aliases = addresses
                .iter()
                .map(|a| HostAlias {
                    interface: interface.clone(),
                    address: *a,
                })
                .collect();
        }
        None => out.present.clone_from(&addresses),
    }
    let forwards = !spec.spec().network.port_forwards.is_empty();
    if let Ok(egress) = host.pf_ready_for(forwards) {
        out.pf_rules = pf_rules(spec, &addresses, egress);
    }
    Ok(out)
}

/// Refuses a plan whose host side needs ifconfig(8) on a host without it:
/// the aliases of RESTRICTED, the lo0 alias of LOOPBACK without VIMAGE.
/// (pf's tools degrade the NAT and forwards instead, see
/// [`HostFacts::pf_ready_for`].)
pub(super) fn check_base_files(
    net: &Net,
    host_net: &HostNet,
    host: &HostFacts,
) -> Result<(), PlanError> {
    let aliases = !host_net.aliases.is_empty() || matches!(net, Net::Alias(_));
    if aliases && host.lacks(IFCONFIG) {
        return Err(PlanError::MissingBaseFile {
            path: IFCONFIG,
            needed: needed_for(IFCONFIG),
        });
    }
    Ok(())
}

/// The generated `/etc/resolv.conf`, when the spec names nameservers.
/// Fails on a host whose nullfs cannot mount it (a single file) over the
/// image's own.
pub(super) fn resolv_conf(
    spec: &ValidatedSpec,
    id: &str,
    host: &HostFacts,
) -> Result<Option<String>, PlanError> {
    let net = &spec.spec().network;
    if net.dns_servers.is_empty() {
        return Ok(None);
    }
    if !host.has_nullfs_file_mounts() {
        return Err(PlanError::DnsUnsupported {
            os_release: host.os_release.clone(),
        });
    }
    Ok(sandboxd_core::net::resolv_conf(net, id))
}

// The host side as commands, and its undo: `netcfg` runs them on the host,
// the tests against a fake one.

/// What the daemon did to the host for one sandbox's network, recorded in
/// the sandbox's directory as it goes, so `cleanup` can undo exactly that
/// by the sandbox id alone (never an address the host had on its own).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct HostNetRecord {
    /// Aliases the daemon added.
    pub aliases: Vec<HostAlias>,
    /// The pf anchor it loaded rules into.
    pub pf_anchor: Option<String>,
}

/// The record's file name in the sandbox directory.
pub const HOST_NET_RECORD: &str = "hostnet.json";

/// The interface of the per-sandbox loopback alias (LOOPBACK without
/// VIMAGE).
pub const LOOPBACK_INTERFACE: &str = "lo0";

/// The per-sandbox loopback address as a host alias: added, recorded and
/// removed exactly like a RESTRICTED address.
pub fn loopback_host_alias(address: Ipv4Addr) -> HostAlias {
    HostAlias {
        interface: LOOPBACK_INTERFACE.to_owned(),
        address: IpAddr::V4(address),
    }
}

/// ifconfig(8) arguments that add (`add`) or remove an alias.
pub fn ifconfig_alias_args(alias: &HostAlias, add: bool) -> Vec<String> {
    let af = if alias.address.is_ipv4() {
        "inet"
    } else {
        "inet6"
    };
    let (address, verb) = if add {
        (alias.with_prefix(), "alias")
    } else {
        (alias.address.to_string(), "-alias")
    };
    vec![
        alias.interface.clone(),
        af.to_owned(),
        address,
        verb.to_owned(),
    ]
}

/// pfctl(8) arguments that load rules from stdin into `anchor`.
pub fn pfctl_load_args(anchor: &str) -> Vec<String> {
    ["-a", anchor, "-f", "-"].map(str::to_owned).to_vec()
}

/// pfctl(8) arguments that flush what the backend loads into `anchor`:
/// its rules, then its nat/rdr rules, as two calls. Not `-F all`: on
/// FreeBSD 15.1 that exits 1 on an anchor, even an empty or missing one,
/// because it also flushes tables after the anchor's ruleset is gone.
pub fn pfctl_flush_args(anchor: &str) -> [Vec<String>; 2] {
    ["rules", "nat"].map(|what| ["-a", anchor, "-F", what].map(str::to_owned).to_vec())
}

/// What undoing a sandbox's host network does to the host, one call per
/// action: `netcfg` runs the commands and keeps the record file; tests
/// make them fail at will.
pub trait HostNetOps {
    /// Runs `program args` for `step`; Err says what failed.
    fn run(&mut self, step: &'static str, program: &str, args: &[String]) -> Result<(), String>;
    /// Whether a host interface holds `address` (true when unknown: then
    /// removing it is tried).
    fn address_present(&mut self, address: IpAddr) -> bool;
    /// Writes what is left to undo, so a crash midway loses nothing.
    fn save(&mut self, record: &HostNetRecord) -> Result<(), String>;
}

/// Undoes `record`: flushes its pf anchor, then removes its aliases,
/// newest first. The resources are independent, so a failure does not
/// stop the others; each is dropped from the record once undone, and the
/// record is saved after every change. Returns what is left (empty when
/// all went) and every error. With `anchor_without_record` (the id's
/// anchor on a host with pf), an anchor the record does not name is
/// flushed too, ignoring failures: a daemon that died between loading and
/// recording it may have left rules, or none.
pub fn undo_host_net(
    mut record: HostNetRecord,
    anchor_without_record: Option<&str>,
    ops: &mut impl HostNetOps,
) -> (HostNetRecord, Vec<String>) {
    let mut errors = Vec::new();
    if let Some(anchor) = record.pf_anchor.clone() {
        let mut flushed = true;
        for args in pfctl_flush_args(&anchor) {
            if let Err(e) = ops.run("flush pf anchor", PFCTL, &args) {
                errors.push(e);
                flushed = false;
            }
        }
        if flushed {
            record.pf_anchor = None;
            errors.extend(ops.save(&record).err());
        }
    } else if let Some(anchor) = anchor_without_record {
        for args in pfctl_flush_args(anchor) {
            let _ = ops.run("flush pf anchor", PFCTL, &args);
        }
    }
    // Newest first; `kept` holds the ones whose removal failed.
    let mut kept = Vec::new();
    while let Some(alias) = record.aliases.pop() {
        let removed = !ops.address_present(alias.address)
            || ops
                .run(
                    "remove alias",
                    IFCONFIG,
                    &ifconfig_alias_args(&alias, false),
                )
                .map_err(|e| errors.push(e))
                .is_ok();
        if removed {
            let left = HostNetRecord {
                aliases: record
                    .aliases
                    .iter()
                    .chain(kept.iter().rev())
                    .cloned()
                    .collect(),
                pf_anchor: record.pf_anchor.clone(),
            };
            errors.extend(ops.save(&left).err());
        } else {
            kept.push(alias);
        }
    }
    kept.reverse();
    record.aliases = kept;
    (record, errors)
}

/// The rules file `pfctl -f -` reads: one rule a line.
pub fn pf_rules_text(rules: &[String]) -> String {
    rules.iter().map(|r| format!("{r}\n")).collect()
}

/// `pfctl -s info` says pf is enabled.
pub fn pf_enabled(info: &str) -> bool {
    info.lines()
        .any(|l| l.trim_start().starts_with("Status: Enabled"))
}

/// `pfctl -s nat` (the main ruleset's translation rules) hooks the
/// sandboxd anchors: `nat-anchor "sandboxd/*"` and `rdr-anchor
/// "sandboxd/*"`.
pub fn pf_has_anchors(nat: &str) -> bool {
    let has = |kind: &str| {
        let want = format!("{kind} \"sandboxd/*\"");
        nat.lines().any(|l| l.trim_start().starts_with(&want))
    };
    has("nat-anchor") && has("rdr-anchor")
}

/// The interface of `route -n get -inet default`'s answer ("interface:
/// em0"), if any.
pub fn route_interface(route: &str) -> Option<String> {
    route.lines().find_map(|l| {
        l.trim()
            .strip_prefix("interface:")
            .map(|i| i.trim().to_owned())
            .filter(|i| !i.is_empty())
    })
}

#[cfg(test)]
mod tests;
