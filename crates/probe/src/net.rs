//! NETWORK: which interfaces the sandbox has (getifaddrs), whether it can
//! reach the daemon's listeners on the host (a random token tells the
//! host's listener apart from anything inside), and whether its own
//! loopback works.

use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use nix::net::if_::InterfaceFlags;
use sandboxd_core::Property;
use sandboxd_core::spec::NetworkMode;
use sandboxd_core::verify::{Finding, Observed, ProbeConfig};

use crate::{Budget, out_of_time};

/// An interface that is up, with its addresses.
struct Iface {
    name: String,
    loopback: bool,
    addrs: Vec<IpAddr>,
}

fn interfaces() -> Result<Vec<Iface>, nix::Error> {
    let mut out: Vec<Iface> = Vec::new();
    for a in nix::ifaddrs::getifaddrs()? {
        if !a.flags.contains(InterfaceFlags::IFF_UP) {
            continue;
        }
        let ip = a.address.as_ref().and_then(|s| {
            s.as_sockaddr_in()
                .map(|v4| IpAddr::V4(v4.ip()))
                .or_else(|| s.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip())))
        });
        let entry = match out.iter_mut().position(|i| i.name == a.interface_name) {
            Some(i) => &mut out[i],
            None => {
                out.push(Iface {
                    name: a.interface_name.clone(),
                    loopback: a.flags.contains(InterfaceFlags::IFF_LOOPBACK),
                    addrs: Vec::new(),
                });
                let last = out.len() - 1;
                &mut out[last]
            }
        };
        entry.addrs.extend(ip);
    }
    Ok(out)
}

/// Connects to `addr` and reads the token: `Ok(true)` if the daemon's
/// listener answered.
fn reaches(addr: SocketAddr, token: &str, timeout: Duration) -> Result<bool, String> {
    let mut s = TcpStream::connect_timeout(&addr, timeout).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    let mut got = vec![0u8; token.len()];
    match s.read_exact(&mut got) {
        Ok(()) if got == token.as_bytes() => Ok(true),
        Ok(()) => Err("connected, but not to the daemon's listener (wrong token)".into()),
        Err(e) => Err(format!("connected, but read no token: {e}")),
    }
}

/// Whether the sandbox's own 127.0.0.1 carries a connection.
fn loopback_works(timeout: Duration) -> Result<(), String> {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(|e| format!("bind: {e}"))?;
    let addr = l.local_addr().map_err(|e| e.to_string())?;
    TcpStream::connect_timeout(&addr, timeout)
        .map(drop)
        .map_err(|e| format!("connect to {addr}: {e}"))
}

/// NETWORK.
pub(crate) fn network(config: &ProbeConfig, budget: Budget) -> Finding {
    let p = Property::Network;
    let Some(slice) = budget.slice() else {
        return out_of_time(p);
    };
    let net = &config.network;
    let per = (slice / (net.targets.len() as u32 + 2)).max(Duration::from_millis(50));
    let mut evidence = Vec::new();
    let ifaces = match interfaces() {
        Ok(i) => i,
        Err(e) => {
            return Finding::new(p, Observed::NotTestable, vec![format!("getifaddrs: {e}")]);
        }
    };
    let shown: Vec<String> = ifaces
        .iter()
        .map(|i| {
            let addrs: Vec<String> = i.addrs.iter().map(ToString::to_string).collect();
            format!("{} [{}]", i.name, addrs.join(" "))
        })
        .collect();
    evidence.push(format!(
        "interfaces up: {}",
        if shown.is_empty() {
            "none".to_owned()
        } else {
            shown.join(", ")
        }
    ));
    let mut reached = Vec::new();
    for ip in &net.targets {
        let addr = SocketAddr::new(*ip, net.port);
        match reaches(addr, &net.token, per) {
            Ok(true) => {
                reached.push(addr);
                evidence.push(format!(
                    "connect to the daemon's listener at {addr}: reached"
                ));
            }
            Ok(false) => {}
            Err(e) => evidence.push(format!("connect to the daemon's listener at {addr}: {e}")),
        }
    }
    let addressed: Vec<&Iface> = ifaces.iter().filter(|i| !i.addrs.is_empty()).collect();
    let observed = match net.mode {
        NetworkMode::Unspecified | NetworkMode::None => {
            if reached.is_empty() && addressed.is_empty() {
                Observed::Holds
            } else {
                Observed::Violated
            }
        }
        NetworkMode::Loopback => {
            let lo = loopback_works(per);
            match &lo {
                Ok(()) => evidence.push("own loopback: 127.0.0.1 carries a connection".into()),
                Err(e) => evidence.push(format!("own loopback: {e}")),
            }
            let only_lo = addressed.iter().all(|i| i.loopback);
            if !only_lo {
                evidence.push("a non-loopback interface is up with an address".into());
            }
            if reached.is_empty() && only_lo && lo.is_ok() {
                Observed::Holds
            } else {
                Observed::Violated
            }
        }
        NetworkMode::Restricted => {
            let foreign: Vec<String> = addressed
                .iter()
                .filter(|i| !i.loopback)
                .flat_map(|i| i.addrs.iter())
                .filter(|a| !net.leased.contains(a) && !is_link_local(a))
                .map(ToString::to_string)
                .collect();
            if !foreign.is_empty() {
                evidence.push(format!(
                    "addresses not leased to the sandbox: {}",
                    foreign.join(", ")
                ));
            }
            if reached.is_empty() && foreign.is_empty() {
                Observed::Holds
            } else {
                Observed::Violated
            }
        }
        NetworkMode::Namespace => return given_namespace(p, net, reached, evidence),
        NetworkMode::Host => {
            if reached.is_empty() {
                evidence.push("the host's network is not reachable as HOST promises".into());
                Observed::Violated
            } else {
                Observed::Holds
            }
        }
    };
    Finding::new(p, observed, evidence)
}

/// NAMESPACE: the sandbox's network namespace is the given one (same nsfs
/// identity as the file the daemon resolved), and the daemon's listener on
/// the host's loopback is out of reach. What else the namespace reaches is
/// its maker's (CNI) policy, not sandboxd's claim.
fn given_namespace(
    p: Property,
    net: &sandboxd_core::verify::NetProbe,
    reached: Vec<SocketAddr>,
    mut evidence: Vec<String>,
) -> Finding {
    use std::os::unix::fs::MetadataExt;
    let Some(want) = net.namespace else {
        evidence
            .push("the given network namespace could not be resolved by the daemon (gone?)".into());
        return Finding::new(p, Observed::NotTestable, evidence);
    };
    let own = match std::fs::metadata("/proc/self/ns/net") {
        Ok(m) => sandboxd_core::verify::FileId {
            dev: m.dev(),
            ino: m.ino(),
        },
        Err(e) => {
            evidence.push(format!("/proc/self/ns/net: {e}"));
            return Finding::new(p, Observed::NotTestable, evidence);
        }
    };
    let same = own == want;
    evidence.push(format!(
        "own network namespace (dev {}, ino {}) {} the given one (dev {}, ino {})",
        own.dev,
        own.ino,
        if same { "is" } else { "is NOT" },
        want.dev,
        want.ino
    ));
    let observed = if same && reached.is_empty() {
        Observed::Holds
    } else {
        Observed::Violated
    };
    Finding::new(p, observed, evidence)
}

/// IPv6 link-local addresses every interface carries.
fn is_link_local(a: &IpAddr) -> bool {
    matches!(a, IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80)
}
