//! The FreeBSD isolation matrix ([`capabilities`]) and the rows for one spec
//! ([`rows_for`]), which differ with the network mode, the image, the uid and
//! what the spec disables.

use sandboxd_core::spec::{HOST_IMAGE, NetworkMode, Requirement};
use sandboxd_core::{Enforcement, Level, Property, ValidatedSpec};

use super::{HostFacts, disabled_row, needed_for, unmasked_binary, wants_pf};

/// Why rctl limits are off; part of the refusal text.
const RACCT_OFF: &str = "kern.racct.enable=0 on this host, so rctl rules are not enforced (set kern.racct.enable=1 in /boot/loader.conf and reboot)";

/// How the writable layer is limited.
const DISK_HOW: &str = "tmpfs size= and inodes= on the \"host\" image's root";

/// The row for an rctl-backed limit.
fn rctl(host: &HostFacts, property: Property, mechanism: &str, caveat: &str) -> Enforcement {
    if host.racct_enabled {
        Enforcement::new(property, Level::Enforced, mechanism, caveat)
    } else {
        Enforcement::new(property, Level::NotEnforced, mechanism, RACCT_OFF)
    }
}

/// One row per [`Property::ALL`] entry: what this host can enforce.
pub fn capabilities(host: &HostFacts) -> Vec<Enforcement> {
    let loopback = if host.vimage {
        "LOOPBACK: a vnet jail whose only interface is lo0"
    } else {
        "LOOPBACK is EMULATED (no VIMAGE): the jail shares the host stack; 127.0.0.1 maps to the jail's first address, a per-sandbox 127/8 alias on lo0, which the host and other jails on the host's stack can reach"
    };
    Property::ALL
        .into_iter()
        .map(|p| match p {
            Property::Filesystem => Enforcement::new(
                p,
                Level::Enforced,
                "jail path= + enforce_statfs=2 (chroot-based, jail root cannot escape)",
                "mounts are made on the host under the sandbox's directory (no mount namespace); the \"host\" image is a tmpfs root with read-only nullfs mounts of /bin /sbin /lib /libexec /usr /etc",
            ),
            Property::Pid => Enforcement::new(
                p,
                Level::Enforced,
                "jail process visibility",
                "processes outside the jail are invisible to it; pids are host pids and there is no pid 1 of its own (the supervisor reaps with PROC_REAP_ACQUIRE)",
            ),
            Property::Hostname => Enforcement::new(
                p,
                Level::Enforced,
                "host.hostname",
                "the default hostname is the sandbox id; allow.set_hostname=0 fixes it",
            ),
            Property::Ipc => Enforcement::new(
                p,
                Level::Enforced,
                "sysvmsg/sysvsem/sysvshm=new",
                "System V IPC gets private namespaces; POSIX shm and message queues follow FreeBSD's jail rules",
            ),
            Property::Network => Enforcement::new(
                p,
                Level::Enforced,
                "jail ip4/ip6 parameters; vnet for LOOPBACK; pf for NAT and forwards",
                &format!(
                    "NONE: ip4=disable ip6=disable; {loopback}; RESTRICTED: ip4.addr/ip6.addr on the host's stack ({aliases}), {pf}; HOST: ip4/ip6=inherit, if the daemon's config permits; raw sockets are off (allow.raw_sockets=0){missing}",
                    aliases = alias_text(host),
                    missing = missing_text(host),
                    pf = match host.pf_ready() {
                        Ok(egress) => format!(
                            "outbound NAT and port forwards as pf nat/rdr on {egress} in anchor sandboxd/<id>"
                        ),
                        Err(why) => format!("no outbound NAT or port forwards: {why}"),
                    },
                ),
            ),
            Property::User => Enforcement::new(
                p,
                Level::Emulated,
                "no uid mapping; jail root is restricted by jail(8) privileges",
                "uid 0 in the jail owns host files it can reach; securelevel=2 and allow.*=0 withhold the dangerous privileges",
            ),
            Property::Cgroup => Enforcement::new(
                p,
                Level::NotEnforced,
                "none",
                "FreeBSD has no cgroups; rctl accounts per jail",
            ),
            Property::MemoryLimit => rctl(
                host,
                p,
                "rctl vmemoryuse:deny",
                "a hard cap on the sum of the virtual sizes of the jail's processes: a mapping, brk or fork that would take it over the limit fails with ENOMEM. Resident memory is never more than that, but address space a program only reserves counts too (runtimes that reserve large ranges, such as Go or Java, need a limit well above their working set), and files in tmpfs (/tmp) and kernel memory are not counted. (rctl memoryuse, resident memory, is not used: racct never refuses an allocation for it, it only asks the VM daemon to reclaim pages)",
            ),
            Property::PidsLimit => rctl(
                host,
                p,
                "rctl maxproc:deny",
                "processes of the whole jail",
            ),
            Property::CpuLimit => rctl(
                host,
                p,
                "rctl pcpu:deny",
                "percent of one CPU (millis / 10, rounded up) for the whole jail, throttled",
            ),
            Property::CpuWeight => Enforcement::new(
                p,
                Level::NotEnforced,
                "none",
                "rctl has no relative CPU weight (its pcpu is a cap: cpu_millis); a jail's processes compete with the host's by their own scheduling priorities",
            ),
            Property::OpenFilesLimit => Enforcement::new(
                p,
                Level::Enforced,
                "setrlimit RLIMIT_NOFILE",
                "per process, as on Linux (rctl openfiles would cap the whole jail's sum); inherited by children",
            ),
            Property::AddressSpaceLimit => Enforcement::new(
                p,
                Level::Enforced,
                "RLIMIT_AS via setrlimit",
                "per process, not per sandbox; inherited by children",
            ),
            Property::DiskLimit => Enforcement::new(
                p,
                Level::Enforced,
                DISK_HOW,
                "past the limit writes fail with ENOSPC; the layer is memory- and swap-backed and rctl memoryuse does not count it; it is gone when the sandbox ends; only the \"host\" image has a writable layer of its own: a writable directory image is written in place (NOT_ENFORCED), a read-only one has nothing to limit; /tmp is a tmpfs of its own size (spec.limits.tmp_bytes); FreeBSD has no /dev/shm filesystem, so spec.limits.shm_bytes does not apply; read-write nullfs mounts are the host's, not counted",
            ),
            Property::ReadonlyRootfs => Enforcement::new(
                p,
                Level::Enforced,
                "nullfs -o ro",
                "the \"host\" image's tmpfs root is updated to ro; /dev, /tmp and read-write client mounts stay writable",
            ),
            Property::Mounts => Enforcement::new(
                p,
                Level::Enforced,
                "nullfs",
                "made on the host before the jail starts; nosuid; not under /dev; uid 0 (host root on the host's files) is refused in a jail with a read-write mount",
            ),
        })
        .collect()
}

/// The rows for one spec: the matrix, adjusted where the spec changes what
/// the sandbox actually gets.
pub fn rows_for(spec: &ValidatedSpec, host: &HostFacts) -> Vec<Enforcement> {
    let s = spec.spec();
    let iso = s.isolation;
    capabilities(host)
        .into_iter()
        .map(|row| match row.property {
            Property::Filesystem if s.image() != HOST_IMAGE && !s.readonly_rootfs => {
                Enforcement::new(
                    row.property,
                    row.level,
                    &row.mechanism,
                    "writable root: writes go to the image directory itself, shared with every sandbox using that image (no copy-on-write layer yet; set readonly_rootfs to avoid this)",
                )
            }
            Property::Filesystem if s.image() == HOST_IMAGE => match unmasked_binary(host) {
                Some(exe) => Enforcement::new(
                    row.property,
                    row.level,
                    &row.mechanism,
                    &format!(
                        "{}; the sandboxd binary {exe} is NOT masked: the jail can read and run it (not modify it), because covering it needs single-file nullfs mounts (FreeBSD 13.2 or later, this host runs {})",
                        row.caveats, host.os_release
                    ),
                ),
                None => row,
            },
            Property::Pid if iso.pid == Requirement::Disabled => Enforcement::new(
                row.property,
                row.level,
                &row.mechanism,
                "DISABLED was asked, but a jail always hides processes outside it",
            ),
            Property::Hostname if iso.hostname == Requirement::Disabled => {
                disabled_row(row.property, "host=inherit shares the host's hostname")
            }
            Property::Ipc if iso.ipc == Requirement::Disabled => disabled_row(
                row.property,
                "sysvmsg/sysvsem/sysvshm=inherit share the host's System V IPC",
            ),
            Property::Cgroup if iso.cgroup == Requirement::Disabled => {
                disabled_row(row.property, "FreeBSD has no cgroups")
            }
            Property::Network => network_row(spec, host),
            Property::DiskLimit if s.limits.disk_bytes.is_none() => Enforcement::new(
                row.property,
                Level::NotEnforced,
                "none",
                "no disk limit: the spec sets none and the daemon's default is off (disk limit 0)",
            ),
            Property::DiskLimit if s.image() != HOST_IMAGE && s.readonly_rootfs => Enforcement::new(
                row.property,
                Level::Enforced,
                "nullfs -o ro of the image",
                "the root is read-only, so there is no writable layer; /tmp is a tmpfs of its own size",
            ),
            Property::DiskLimit if s.image() != HOST_IMAGE => Enforcement::new(
                row.property,
                Level::NotEnforced,
                "none",
                "a writable directory image is nullfs-mounted read-write: writes go to the image directory itself, with no per-sandbox layer to limit (set readonly_rootfs, or use the \"host\" image)",
            ),
            Property::User if s.process.user.uid() == 0 => Enforcement::new(
                row.property,
                row.level,
                &row.mechanism,
                "runs as uid 0: jail root, host uid 0 on every file it can reach; securelevel=2 and allow.*=0 withhold the dangerous privileges",
            ),
            _ => row,
        })
        .collect()
}

/// The note on the base files this host lacks: "" when none is missing.
fn missing_text(host: &HostFacts) -> String {
    host.missing_base_files
        .iter()
        .map(|f| {
            format!(
                "; {f} is missing on this host (needed for {})",
                needed_for(f)
            )
        })
        .collect()
}

/// Where RESTRICTED addresses live on this host.
fn alias_text(host: &HostFacts) -> String {
    match &host.alias_interface {
        Some(i) => {
            format!("the daemon adds each as a /32 or /128 alias on {i} and removes it on destroy")
        }
        None => "each must already be configured on a host interface".to_owned(),
    }
}

/// The network row for a spec.
fn network_row(spec: &ValidatedSpec, host: &HostFacts) -> Enforcement {
    let p = Property::Network;
    match spec.spec().network.mode {
        NetworkMode::Unspecified | NetworkMode::None => Enforcement::new(
            p,
            Level::Enforced,
            "ip4=disable ip6=disable",
            "no IPv4 or IPv6 sockets at all; local (unix) sockets only",
        ),
        NetworkMode::Loopback if host.vimage => Enforcement::new(
            p,
            Level::Enforced,
            "vnet=new with only lo0",
            "a private network stack whose only interface is lo0, with 127.0.0.1 and ::1 (adding 127.0.0.1/8 brings lo0 up, and the kernel gives an up loopback ::1); nothing outside the jail is reachable, and the host cannot reach it",
        ),
        NetworkMode::Loopback => Enforcement::new(
            p,
            Level::Emulated,
            "ip4.addr = a per-sandbox 127/8 alias on lo0 (no VIMAGE)",
            "jail shares the host stack; 127.0.0.1 maps to the jail's first address, a per-sandbox alias on the host's lo0 (so a server bound to 127.0.0.1 or 0.0.0.0 listens on that alias); the host can reach it, and so can other jails on the host's stack (RESTRICTED, HOST, or LOOPBACK like this one); no IPv6",
        ),
        NetworkMode::Restricted => restricted_row(spec, host),
        // Always REQUIRED (validation): refused.
        NetworkMode::Namespace => Enforcement::new(
            p,
            Level::NotEnforced,
            "none",
            "mode NAMESPACE (a Linux network namespace) does not exist on FreeBSD: a jail cannot join one",
        ),
        NetworkMode::Host => Enforcement::new(
            p,
            Level::Enforced,
            "ip4=inherit ip6=inherit",
            "shares the host's addresses; the daemon's config must permit HOST networking, and the daemon enforces that",
        ),
    }
}

/// RESTRICTED: the addresses are always enforced; NAT and forwards need pf.
fn restricted_row(spec: &ValidatedSpec, host: &HostFacts) -> Enforcement {
    let net = &spec.spec().network;
    let mut caveats = format!(
        "a jail shares the host stack and routing table: it can bind and send only from its addresses (a family with none is disabled); 127.0.0.1 inside maps to the jail's first IPv4 address, and 0.0.0.0 to its addresses (a server bound to 127.0.0.1 or 0.0.0.0 listens on that address, reachable wherever it is routed, unlike a private loopback); raw sockets off (allow.raw_sockets=0); {}; no firewall between it and the host's other addresses",
        alias_text(host)
    );
    let mut level = Level::Enforced;
    let mut mechanism = "ip4.addr/ip6.addr, ip4/ip6=disable for a family without one".to_owned();
    if wants_pf(spec) {
        match host.pf_ready_for(!net.port_forwards.is_empty()) {
            Ok(egress) => {
                mechanism.push_str(&format!("; pf anchor sandboxd/<id> on {egress}"));
                if net.outbound_nat {
                    caveats.push_str(&format!(
                        "; outbound NAT: pf nat on {egress} from each address to ({egress})"
                    ));
                }
                if !net.port_forwards.is_empty() {
                    caveats.push_str(&format!(
                        "; port forwards: pf rdr pass on {egress} to the first address (not for connections from the host itself)"
                    ));
                }
            }
            Err(why) => {
                // The addresses still hold; what was asked on top does not.
                level = Level::BestEffort;
                caveats.push_str(&format!(
                    "; outbound NAT and port forwards are NOT applied: {why}"
                ));
            }
        }
    }
    if !net.dns_servers.is_empty() {
        caveats.push_str(
            "; /etc/resolv.conf: a generated file nullfs-mounted read-only over the image's",
        );
    }
    Enforcement::new(Property::Network, level, &mechanism, &caveats)
}
