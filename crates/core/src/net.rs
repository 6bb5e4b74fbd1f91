//! Network leases: the daemon's address pool and host-port table.
//!
//! A RESTRICTED sandbox gets addresses from a configured pool — the ones its
//! client named, or the first free one — and may forward host ports to
//! itself. [`Leases`] is the single owner of who holds what: every address
//! and every forwarded `(protocol, host port)` belongs to at most one
//! sandbox. It is pure bookkeeping: the daemon rebuilds it from its records
//! at start-up, so leases survive a restart, and the backend turns a
//! [`NetLease`] into interfaces, routes and firewall rules.
//!
//! Each pool range's first host address is the gateway the host side of
//! every sandbox link carries; it, the network address and (IPv4) the
//! broadcast address are never leased.

use std::collections::BTreeMap;
use std::net::IpAddr;

pub use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::spec::{NetworkMode, NetworkPolicy, Protocol};

/// What one sandbox holds.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct NetLease {
    /// Its addresses, in the order the sandbox configures them.
    pub addresses: Vec<IpAddr>,
    /// The gateway of each family present in `addresses`: the first host
    /// address of the pool range holding that family's first address.
    pub gateways: Vec<IpAddr>,
    /// Forwarded host ports.
    pub ports: Vec<(Protocol, u16)>,
}

impl NetLease {
    /// Whether nothing is leased.
    pub fn is_empty(&self) -> bool {
        self.addresses.is_empty() && self.ports.is_empty()
    }
}

/// Why a lease was refused, naming the spec field at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LeaseError {
    /// RESTRICTED asked for, but no pool is configured.
    #[error(
        "spec.network: RESTRICTED needs an address pool and this daemon has none (start it with --net-pool CIDR)"
    )]
    NoPool,
    /// A named address lies outside every pool range.
    #[error("{field}: {address} is outside the daemon's address pool ({pool})")]
    OutsidePool {
        /// Field.
        field: String,
        /// Address.
        address: IpAddr,
        /// The pool, for the message.
        pool: String,
    },
    /// A named address is a range's network, broadcast or gateway address.
    #[error("{field}: {address} is the {what} address of pool range {range} and cannot be leased")]
    ReservedAddress {
        /// Field.
        field: String,
        /// Address.
        address: IpAddr,
        /// "network", "broadcast" or "gateway".
        what: &'static str,
        /// The range.
        range: IpNet,
    },
    /// A named address is held by another sandbox.
    #[error("{field}: {address} is already leased to another sandbox")]
    AddressLeased {
        /// Field.
        field: String,
        /// Address.
        address: IpAddr,
    },
    /// No free address is left.
    #[error("spec.network: the address pool ({pool}) has no free address left")]
    Exhausted {
        /// The pool.
        pool: String,
    },
    /// A host port below the configured floor.
    #[error("{field}: host port {port} is below the daemon's port floor {floor}")]
    PortBelowFloor {
        /// Field.
        field: String,
        /// Port.
        port: u32,
        /// Floor.
        floor: u16,
    },
    /// A host port the daemon itself uses or reserved by configuration.
    #[error("{field}: host port {port} is reserved by the daemon")]
    PortReserved {
        /// Field.
        field: String,
        /// Port.
        port: u16,
    },
    /// A host port forwarded for another sandbox.
    #[error("{field}: host port {port}/{} is already forwarded to another sandbox", .protocol.as_str())]
    PortLeased {
        /// Field.
        field: String,
        /// Protocol.
        protocol: Protocol,
        /// Port.
        port: u16,
    },
}

/// Port-forward policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortPolicy {
    /// Lowest host port a client may forward.
    pub floor: u16,
    /// Host ports never forwarded (the daemon's own listeners).
    pub reserved: Vec<u16>,
}

impl Default for PortPolicy {
    fn default() -> Self {
        Self {
            floor: 1024,
            reserved: Vec::new(),
        }
    }
}

/// The address pool, the port policy and every lease.
#[derive(Debug, Clone, Default)]
pub struct Leases {
    pool: Vec<IpNet>,
    ports: PortPolicy,
    addresses: BTreeMap<IpAddr, String>,
    forwards: BTreeMap<(Protocol, u16), String>,
}

impl Leases {
    /// An empty table over `pool` (already-parsed CIDR ranges).
    pub fn new(pool: Vec<IpNet>, ports: PortPolicy) -> Self {
        Self {
            pool: pool.into_iter().map(|n| n.trunc()).collect(),
            ports,
            ..Self::default()
        }
    }

    /// The pool ranges.
    pub fn pool(&self) -> &[IpNet] {
        &self.pool
    }

    /// How many addresses and forwarded host ports are leased now.
    pub fn in_use(&self) -> (usize, usize) {
        (self.addresses.len(), self.forwards.len())
    }

    fn pool_text(&self) -> String {
        if self.pool.is_empty() {
            return "empty".to_owned();
        }
        self.pool
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// What sandbox `id` would hold for `policy`, without taking it: the
    /// addresses named (or the first free one), their gateways, the ports.
    /// Nothing for modes other than RESTRICTED.
    pub fn propose(&self, policy: &NetworkPolicy) -> Result<NetLease, LeaseError> {
        if policy.mode != NetworkMode::Restricted {
            return Ok(NetLease::default());
        }
        if self.pool.is_empty() {
            return Err(LeaseError::NoPool);
        }
        let mut addresses = Vec::new();
        for (i, text) in policy.addresses.iter().enumerate() {
            let field = format!("spec.network.addresses[{i}]");
            // Validation already proved it parses; a bad one is refused
            // here too rather than trusted.
            let address: IpAddr = text.parse().map_err(|_| LeaseError::OutsidePool {
                field: field.clone(),
                address: IpAddr::from([0, 0, 0, 0]),
                pool: self.pool_text(),
            })?;
            self.check_address(&field, address)?;
            if !addresses.contains(&address) {
                addresses.push(address);
            }
        }
        if addresses.is_empty() {
            addresses.push(self.first_free()?);
        }
        let mut gateways: Vec<IpAddr> = Vec::new();
        for a in &addresses {
            let family_done = gateways.iter().any(|g| g.is_ipv4() == a.is_ipv4());
            if let (false, Some(range)) = (family_done, self.range_of(*a)) {
                gateways.push(gateway(range));
            }
        }
        let mut ports = Vec::new();
        for (i, f) in policy.port_forwards.iter().enumerate() {
            let field = format!("spec.network.port_forwards[{i}].host_port");
            let port = u16::try_from(f.host_port)
                .ok()
                .filter(|p| *p >= self.ports.floor)
                .ok_or(LeaseError::PortBelowFloor {
                    field: field.clone(),
                    port: f.host_port,
                    floor: self.ports.floor,
                })?;
            if self.ports.reserved.contains(&port) {
                return Err(LeaseError::PortReserved { field, port });
            }
            if self.forwards.contains_key(&(f.protocol, port)) {
                return Err(LeaseError::PortLeased {
                    field,
                    protocol: f.protocol,
                    port,
                });
            }
            ports.push((f.protocol, port));
        }
        Ok(NetLease {
            addresses,
            gateways,
            ports,
        })
    }

    /// Takes what [`Leases::propose`] computes, for sandbox `id`.
    pub fn lease(&mut self, id: &str, policy: &NetworkPolicy) -> Result<NetLease, LeaseError> {
        let lease = self.propose(policy)?;
        self.restore(id, &lease);
        Ok(lease)
    }

    /// Records a lease read back from a sandbox's record.
    pub fn restore(&mut self, id: &str, lease: &NetLease) {
        for a in &lease.addresses {
            self.addresses.insert(*a, id.to_owned());
        }
        for p in &lease.ports {
            self.forwards.insert(*p, id.to_owned());
        }
    }

    /// Releases everything sandbox `id` holds.
    pub fn release(&mut self, id: &str) {
        self.addresses.retain(|_, owner| owner != id);
        self.forwards.retain(|_, owner| owner != id);
    }

    fn range_of(&self, a: IpAddr) -> Option<&IpNet> {
        self.pool.iter().find(|n| n.contains(&a))
    }

    fn check_address(&self, field: &str, address: IpAddr) -> Result<(), LeaseError> {
        let range = self
            .range_of(address)
            .ok_or_else(|| LeaseError::OutsidePool {
                field: field.to_owned(),
                address,
                pool: self.pool_text(),
            })?;
        let reserved = if address == range.network() {
            Some("network")
        } else if address.is_ipv4() && address == range.broadcast() {
            Some("broadcast")
        } else if address == gateway(range) {
            Some("gateway")
        } else {
            None
        };
        if let Some(what) = reserved {
            return Err(LeaseError::ReservedAddress {
                field: field.to_owned(),
                address,
                what,
                range: *range,
            });
        }
        if self.addresses.contains_key(&address) {
            return Err(LeaseError::AddressLeased {
                field: field.to_owned(),
                address,
            });
        }
        Ok(())
    }

    fn first_free(&self) -> Result<IpAddr, LeaseError> {
        self.pool
            .iter()
            .flat_map(|range| {
                let (gw, net) = (gateway(range), range.network());
                // IPv6 hosts() includes the subnet-router anycast address.
                range.hosts().filter(move |a| *a != gw && *a != net)
            })
            // A /64 has 2^64 hosts: look at a bounded prefix of the pool.
            .take(1 << 16)
            .find(|a| !self.addresses.contains_key(a))
            .ok_or_else(|| LeaseError::Exhausted {
                pool: self.pool_text(),
            })
    }
}

/// The `/etc/resolv.conf` a spec's DNS options make, or `None` when it
/// names no nameservers (the image's file is left alone).
pub fn resolv_conf(policy: &NetworkPolicy, id: &str) -> Option<String> {
    if policy.dns_servers.is_empty() {
        return None;
    }
    let mut text = format!("# generated by sandboxd for sandbox {id}\n");
    for s in &policy.dns_servers {
        text.push_str(&format!("nameserver {s}\n"));
    }
    if !policy.dns_search.is_empty() {
        text.push_str(&format!("search {}\n", policy.dns_search.join(" ")));
    }
    Some(text)
}

/// A range's gateway: the address after its network address (ranges are
/// at least /30 or /126, so that is a host address).
pub fn gateway(range: &IpNet) -> IpAddr {
    match range.network() {
        IpAddr::V4(a) => IpAddr::V4(u32::from(a).wrapping_add(1).into()),
        IpAddr::V6(a) => IpAddr::V6(u128::from(a).wrapping_add(1).into()),
    }
}

/// Parses one pool range ("203.0.113.0/24"); a range too small to hold a
/// gateway and one sandbox is refused.
pub fn parse_range(text: &str) -> Result<IpNet, String> {
    let net: IpNet = text
        .parse()
        .map_err(|_| format!("{text:?} is not a CIDR range like 203.0.113.0/24"))?;
    let too_small = match net {
        IpNet::V4(n) => n.prefix_len() > 30,
        IpNet::V6(n) => n.prefix_len() > 126,
    };
    if too_small {
        return Err(format!(
            "{text:?} is too small: it needs room for a gateway and at least one sandbox"
        ));
    }
    Ok(net.trunc())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::PortForward;

    fn table(ranges: &[&str]) -> Leases {
        Leases::new(
            ranges.iter().map(|r| parse_range(r).unwrap()).collect(),
            PortPolicy {
                floor: 1024,
                reserved: vec![7443],
            },
        )
    }

    fn restricted(addresses: &[&str], forwards: &[(u32, u32)]) -> NetworkPolicy {
        NetworkPolicy {
            mode: NetworkMode::Restricted,
            addresses: addresses.iter().map(|a| (*a).to_owned()).collect(),
            port_forwards: forwards
                .iter()
                .map(|(h, s)| PortForward {
                    protocol: Protocol::Tcp,
                    host_port: *h,
                    sandbox_port: *s,
                })
                .collect(),
            ..NetworkPolicy::default()
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ranges() {
        for (text, ok) in [
            ("203.0.113.0/24", Ok("203.0.113.0/24")),
            ("203.0.113.7/28", Ok("203.0.113.0/28")),
            ("2001:db8::/64", Ok("2001:db8::/64")),
            ("203.0.113.0/31", Err("too small")),
            ("203.0.113.0", Err("not a CIDR")),
            ("banana/8", Err("not a CIDR")),
        ] {
            match (parse_range(text), ok) {
                (Ok(n), Ok(want)) => assert_eq!(n.to_string(), want, "{text}"),
                (Err(e), Err(want)) => assert!(e.contains(want), "{text}: {e}"),
                (got, want) => panic!("{text}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn leases_addresses_and_ports() {
        let mut t = table(&["203.0.113.0/29", "2001:db8::/120"]);
        // First free skips the network and gateway addresses.
        let a = t.lease("a", &restricted(&[], &[(8080, 80)])).unwrap();
        assert_eq!(a.addresses, vec![ip("203.0.113.2")]);
        assert_eq!(a.gateways, vec![ip("203.0.113.1")]);
        assert_eq!(a.ports, vec![(Protocol::Tcp, 8080)]);
        let b = t
            .lease("b", &restricted(&["203.0.113.5", "2001:db8::9"], &[]))
            .unwrap();
        assert_eq!(b.gateways, vec![ip("203.0.113.1"), ip("2001:db8::1")]);
        let c = t.lease("c", &restricted(&[], &[])).unwrap();
        assert_eq!(c.addresses, vec![ip("203.0.113.3")]);

        // (named addresses, forwards, the refusal)
        type Case<'a> = (&'a [&'a str], &'a [(u32, u32)], LeaseError);
        let cases: &[Case<'_>] = &[
            (
                &["203.0.113.5"],
                &[],
                LeaseError::AddressLeased {
                    field: "spec.network.addresses[0]".into(),
                    address: ip("203.0.113.5"),
                },
            ),
            (
                &["198.51.100.1"],
                &[],
                LeaseError::OutsidePool {
                    field: "spec.network.addresses[0]".into(),
                    address: ip("198.51.100.1"),
                    pool: "203.0.113.0/29, 2001:db8::/120".into(),
                },
            ),
            (
                &["203.0.113.1"],
                &[],
                LeaseError::ReservedAddress {
                    field: "spec.network.addresses[0]".into(),
                    address: ip("203.0.113.1"),
                    what: "gateway",
                    range: "203.0.113.0/29".parse().unwrap(),
                },
            ),
            (
                &["203.0.113.7"],
                &[],
                LeaseError::ReservedAddress {
                    field: "spec.network.addresses[0]".into(),
                    address: ip("203.0.113.7"),
                    what: "broadcast",
                    range: "203.0.113.0/29".parse().unwrap(),
                },
            ),
            (
                &[],
                &[(8080, 81)],
                LeaseError::PortLeased {
                    field: "spec.network.port_forwards[0].host_port".into(),
                    protocol: Protocol::Tcp,
                    port: 8080,
                },
            ),
            (
                &[],
                &[(80, 80)],
                LeaseError::PortBelowFloor {
                    field: "spec.network.port_forwards[0].host_port".into(),
                    port: 80,
                    floor: 1024,
                },
            ),
            (
                &[],
                &[(7443, 80)],
                LeaseError::PortReserved {
                    field: "spec.network.port_forwards[0].host_port".into(),
                    port: 7443,
                },
            ),
        ];
        for (addresses, forwards, want) in cases {
            let before = t.clone().addresses;
            assert_eq!(
                t.lease("x", &restricted(addresses, forwards)).as_ref(),
                Err(want),
                "{addresses:?} {forwards:?}"
            );
            // A refused lease takes nothing.
            assert_eq!(t.addresses, before);
        }

        // Releasing frees both addresses and ports for the next sandbox.
        t.release("a");
        let d = t.lease("d", &restricted(&[], &[(8080, 80)])).unwrap();
        assert_eq!(d.addresses, vec![ip("203.0.113.2")]);
        // The v4 range holds .2-.6 minus the gateway: .4 and .6 are left.
        t.lease("e", &restricted(&["203.0.113.4"], &[])).unwrap();
        t.lease("f", &restricted(&["203.0.113.6"], &[])).unwrap();
        // The next free address comes from the IPv6 range.
        let g = t.lease("g", &restricted(&[], &[])).unwrap();
        assert_eq!(g.addresses, vec![ip("2001:db8::2")]);
    }

    #[test]
    fn resolv_conf_text() {
        let mut p = NetworkPolicy::default();
        assert_eq!(resolv_conf(&p, "x"), None);
        p.dns_servers = vec!["203.0.113.53".into(), "2001:db8::53".into()];
        p.dns_search = vec!["example.org".into(), "corp.example".into()];
        assert_eq!(
            resolv_conf(&p, "x").as_deref(),
            Some(
                "# generated by sandboxd for sandbox x\nnameserver 203.0.113.53\nnameserver 2001:db8::53\nsearch example.org corp.example\n"
            )
        );
    }

    #[test]
    fn exhausted_and_no_pool() {
        let mut t = table(&["203.0.113.0/30"]);
        t.lease("a", &restricted(&[], &[])).unwrap();
        assert!(matches!(
            t.lease("b", &restricted(&[], &[])),
            Err(LeaseError::Exhausted { .. })
        ));
        let none = Leases::new(Vec::new(), PortPolicy::default());
        assert_eq!(none.propose(&restricted(&[], &[])), Err(LeaseError::NoPool));
        // Other modes lease nothing and need no pool.
        let host = NetworkPolicy {
            mode: NetworkMode::Host,
            ..NetworkPolicy::default()
        };
        assert_eq!(none.propose(&host), Ok(NetLease::default()));
    }
}
