//! The host side of a sandbox's network, beyond the jail's own parameters:
//! the aliases RESTRICTED addresses live on, the pf rules of outbound NAT
//! and port forwards, and the generated `/etc/resolv.conf`.
//!
//! A jail has no interface of its own (without vnet): it shares the host's
//! stack, restricted to its addresses. So a RESTRICTED address must be
//! configured on a host interface — the daemon adds it as an alias on
//! [`HostFacts::alias_interface`], or checks it is already there — and NAT
//! and forwards are host firewall rules: pf nat/rdr rules in the anchor
//! `sandboxd/<id>`, which pf.conf must hook with `nat-anchor "sandboxd/*"`
//! and `rdr-anchor "sandboxd/*"`. The daemon sets all of this up in
//! `Backend::prepare` and removes it by the sandbox id in `cleanup`.

use std::net::IpAddr;

use sandboxd_core::spec::NetworkMode;
use sandboxd_core::{SandboxPaths, ValidatedSpec};

use super::params::{Net, addresses};
use super::{HostAlias, HostFacts, HostNet, IFCONFIG, PlanError, needed_for};

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
