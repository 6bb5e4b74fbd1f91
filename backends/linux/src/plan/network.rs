//! RESTRICTED networking on Linux, as data: a network namespace the daemon
//! creates and pins at `<sandbox dir>/netns`, a veth pair routed from the
//! host (no bridge: each sandbox address is a /32 or /128 route to its
//! link), and one nftables table per sandbox holding every rule it needs,
//! so that removing the table removes them all at once.
//!
//! The rules:
//! - `guard` (prerouting, priority raw): a packet arriving from the
//!   sandbox's link with any source but its addresses is dropped, so a
//!   sandbox cannot spoof (IP_FREEBIND, raw sockets if it ever got them).
//! - `to_host` (input): the sandbox cannot open connections to the host
//!   itself, only answer them (port forwards from host processes).
//! - `nat_out` (postrouting, with outbound NAT): masquerade behind the
//!   host's address on the way out.
//! - `forwards` / `forwards_local` (prerouting and output, dstnat): a
//!   host port, on any local address, is sent to the sandbox's first
//!   address.
//! - `forwards_loopback` (postrouting, srcnat; IPv4 forwards only): a
//!   connection from the host itself to `127.0.0.1:PORT` (Docker's
//!   `localhost:8080`) is DNATed by `forwards_local` but still carries
//!   source 127.0.0.1, which the sandbox would answer on its own loopback;
//!   it is masqueraded behind the host link's address (the gateway), and
//!   the host link gets `route_localnet` ([`route_localnet_sysctl`]) so
//!   the kernel routes a 127/8 source off the loopback at all, as Docker
//!   does for its bridge. IPv6 has no such switch: `[::1]:PORT` is not
//!   forwarded.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use sandboxd_core::spec::Protocol;
use sandboxd_core::{SandboxPaths, ValidatedSpec};

/// The netns file under the sandbox directory.
pub const NETNS_FILE: &str = "netns";
/// The sandbox side of the veth pair, created directly inside the netns.
pub const SANDBOX_LINK: &str = "eth0";

/// The host side of a sandbox's veth pair: "sbx" + the first 12 hex
/// characters of the id (IFNAMSIZ allows 15).
pub fn host_link(id: &str) -> String {
    format!("sbx{}", id.get(..12).unwrap_or(id))
}

/// The sandbox's nftables table (family inet).
pub fn nft_table(id: &str) -> String {
    format!("sandboxd_{id}")
}

/// One port forward, resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Forward {
    /// Protocol.
    pub protocol: Protocol,
    /// Host port.
    pub host_port: u16,
    /// Sandbox address it goes to.
    pub to: IpAddr,
    /// Sandbox port.
    pub sandbox_port: u16,
}

/// Everything the daemon sets up for a RESTRICTED sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoutedNetwork {
    /// The pinned network namespace (`<sandbox dir>/netns`).
    pub netns: PathBuf,
    /// Host side of the veth pair.
    pub host_link: String,
    /// Sandbox side, inside the netns.
    pub sandbox_link: String,
    /// The sandbox's addresses (/32 or /128 each).
    pub addresses: Vec<IpAddr>,
    /// The gateway of each family, carried by the host link.
    pub gateways: Vec<IpAddr>,
    /// Masquerade outbound traffic.
    pub outbound_nat: bool,
    /// Port forwards.
    pub forwards: Vec<Forward>,
    /// The nftables table.
    pub nft_table: String,
}

impl RoutedNetwork {
    /// Whether any address is IPv6 (forwarding must then be on for IPv6).
    pub fn has_ipv6(&self) -> bool {
        self.addresses.iter().any(IpAddr::is_ipv6)
    }
}

/// The routed network of a RESTRICTED spec: the leased addresses, or the
/// spec's own when nothing was leased (a plan shown without a pool).
pub(super) fn routed(spec: &ValidatedSpec, sandbox: &SandboxPaths) -> RoutedNetwork {
    let net = &spec.spec().network;
    let addresses: Vec<IpAddr> = if sandbox.lease.addresses.is_empty() {
        net.addresses
            .iter()
            .filter_map(|a| a.parse().ok())
            .collect()
    } else {
        sandbox.lease.addresses.clone()
    };
    // Forwards go to the first address; with none there is nothing to
    // forward to (and build() refuses such a plan anyway).
    let forwards = addresses
        .first()
        .map(|to| {
            net.port_forwards
                .iter()
                .filter_map(|f| {
                    Some(Forward {
                        protocol: f.protocol,
                        host_port: u16::try_from(f.host_port).ok()?,
                        to: *to,
                        sandbox_port: u16::try_from(f.sandbox_port).ok()?,
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    RoutedNetwork {
        netns: sandbox.dir.join(NETNS_FILE),
        host_link: host_link(&sandbox.id),
        sandbox_link: SANDBOX_LINK.to_owned(),
        addresses,
        gateways: sandbox.lease.gateways.clone(),
        outbound_nat: net.outbound_nat,
        forwards,
        nft_table: nft_table(&sandbox.id),
    }
}

/// The sysctl that lets the host route locally originated 127/8 traffic
/// out of the sandbox's link (for `localhost:PORT` forwards); `None` when
/// the sandbox has no IPv4 forward. It belongs to the link and goes with it.
pub fn route_localnet_sysctl(r: &RoutedNetwork) -> Option<PathBuf> {
    r.forwards.iter().any(|f| f.to.is_ipv4()).then(|| {
        PathBuf::from("/proc/sys/net/ipv4/conf")
            .join(&r.host_link)
            .join("route_localnet")
    })
}

fn set(addrs: &[&IpAddr]) -> String {
    let items: Vec<String> = addrs.iter().map(ToString::to_string).collect();
    format!("{{ {} }}", items.join(", "))
}

/// The nftables script (`nft -f -`) that creates the sandbox's table. One
/// transaction: all of it applies or none.
pub fn nft_script(r: &RoutedNetwork) -> String {
    let link = &r.host_link;
    let v4: Vec<&IpAddr> = r.addresses.iter().filter(|a| a.is_ipv4()).collect();
    let v6: Vec<&IpAddr> = r.addresses.iter().filter(|a| a.is_ipv6()).collect();
    let mut s = String::new();
    // Writing to a String cannot fail.
    let mut line = |text: String| {
        let _ = writeln!(s, "{text}");
    };
    line(format!("table inet {} {{", r.nft_table));
    line("  chain guard {".into());
    line("    type filter hook prerouting priority raw; policy accept;".into());
    if v4.is_empty() {
        line(format!("    iifname \"{link}\" meta nfproto ipv4 drop"));
    } else {
        line(format!(
            "    iifname \"{link}\" ip saddr != {} drop",
            set(&v4)
        ));
    }
    if v6.is_empty() {
        line(format!("    iifname \"{link}\" meta nfproto ipv6 drop"));
    } else {
        // Link-local sources carry neighbour discovery.
        let mut allowed = vec!["fe80::/10".to_owned()];
        allowed.extend(v6.iter().map(ToString::to_string));
        line(format!(
            "    iifname \"{link}\" ip6 saddr != {{ {} }} drop",
            allowed.join(", ")
        ));
    }
    line("  }".into());
    // Nothing new from the sandbox reaches the host itself; this is also
    // what keeps `route_localnet` (localhost forwards) from opening the
    // host's 127/8 services to it (CVE-2020-8558's class; tested by
    // network::a_localhost_forward_does_not_open_the_hosts_loopback_to_the_sandbox).
    line("  chain to_host {".into());
    line("    type filter hook input priority filter; policy accept;".into());
    line(format!(
        "    iifname \"{link}\" ct state established,related accept"
    ));
    line(format!(
        "    iifname \"{link}\" icmpv6 type {{ nd-neighbor-solicit, nd-neighbor-advert }} accept"
    ));
    line(format!("    iifname \"{link}\" drop"));
    line("  }".into());
    if r.outbound_nat {
        line("  chain nat_out {".into());
        line("    type nat hook postrouting priority srcnat; policy accept;".into());
        if !v4.is_empty() {
            line(format!(
                "    ip saddr {} oifname != \"{link}\" masquerade",
                set(&v4)
            ));
        }
        if !v6.is_empty() {
            line(format!(
                "    ip6 saddr {} oifname != \"{link}\" masquerade",
                set(&v6)
            ));
        }
        line("  }".into());
    }
    if !r.forwards.is_empty() {
        for (chain, hook) in [("forwards", "prerouting"), ("forwards_local", "output")] {
            line(format!("  chain {chain} {{"));
            line(format!(
                "    type nat hook {hook} priority -100; policy accept;"
            ));
            for f in &r.forwards {
                let to = match f.to {
                    IpAddr::V4(a) => format!("ip to {a}:{}", f.sandbox_port),
                    IpAddr::V6(a) => format!("ip6 to [{a}]:{}", f.sandbox_port),
                };
                line(format!(
                    "    fib daddr type local {} dport {} dnat {to}",
                    f.protocol.as_str(),
                    f.host_port
                ));
            }
            line("  }".into());
        }
        if route_localnet_sysctl(r).is_some() {
            line("  chain forwards_loopback {".into());
            line("    type nat hook postrouting priority srcnat; policy accept;".into());
            line(format!(
                "    ip saddr 127.0.0.0/8 oifname \"{link}\" masquerade"
            ));
            line("  }".into());
        }
    }
    line("}".into());
    s
}
