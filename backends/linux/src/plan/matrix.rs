//! The Linux isolation matrix ([`capabilities`]) and the rows for one spec
//! ([`rows_for`]), which differ where the spec disables a namespace, picks a
//! network mode, or does (not) opt into the user namespace.

use sandboxd_core::spec::{HOST_IMAGE, NetworkMode, Requirement};
use sandboxd_core::{Enforcement, Level, Property, ValidatedSpec};

use super::{Controller, HostFacts, disabled_row, wants_userns};

/// How RESTRICTED is enforced.
const RESTRICTED_HOW: &str = "CLONE_NEWNET + routed veth + nftables";
/// What RESTRICTED gives and does not.
const RESTRICTED_CAVEATS: &str = "an own network stack with a private loopback and one veth carrying only the sandbox's addresses (/32 or /128, routed from the host; 127.0.0.1 is the sandbox's own loopback); an nftables guard drops any other source address; the sandbox cannot open connections to the host itself; the daemon turns on IP forwarding (net.ipv4.ip_forward, and IPv6 forwarding for IPv6 addresses)";
/// Why RESTRICTED is unavailable without nft.
const RESTRICTED_NO_NFT: &str = "RESTRICTED needs the nft binary (nftables) for its source-address guard, NAT and port forwards, and it is not installed; when PREFERRED the sandbox gets a loopback-only network namespace, stricter than asked";

/// How NAMESPACE is enforced.
const NAMESPACE_HOW: &str = "setns(CLONE_NEWNET) into the given namespace, a descriptor the daemon opened below an --allow-netns-source directory";
/// What NAMESPACE gives and does not.
const NAMESPACE_CAVEATS: &str = "the sandbox's network is that namespace, which is checked at create to be a network namespace and not the daemon's own; its interfaces, addresses, routes and firewall are whoever made it's (e.g. a CNI plugin), not sandboxd's: sandboxd adds nothing to it and never deletes it or its links";

/// How the writable layer is limited.
const DISK_HOW: &str = "a tmpfs with size= and nr_inodes= holds the writable layer (a directory image's overlay upper and work directories; the \"host\" image's root)";
/// What the disk limit does and does not cover.
const DISK_CAVEATS: &str = "past the limit writes fail with ENOSPC; the layer is RAM-backed: its pages count toward the memory limit (past which the writer is OOM-killed instead) and are gone when the sandbox ends; /tmp and /dev/shm are tmpfs of their own sizes (spec.limits.tmp_bytes, shm_bytes) and read-write bind mounts are the host's, not counted";

/// The row for a cgroup-backed limit.
fn cgroup_limit(
    property: Property,
    controller: &Option<Controller>,
    v2: &str,
    v1: &str,
    caveat: &str,
) -> Enforcement {
    match controller {
        Some(Controller::V2) => Enforcement::new(property, Level::Enforced, v2, caveat),
        Some(Controller::V1 { .. }) => Enforcement::new(property, Level::Enforced, v1, caveat),
        None => Enforcement::new(
            property,
            Level::NotEnforced,
            v2,
            "the controller is not available on this host (neither enabled in the cgroup v2 root's cgroup.subtree_control nor mounted as a v1 hierarchy)",
        ),
    }
}

/// One row per [`Property::ALL`] entry: what this host can enforce.
pub fn capabilities(host: &HostFacts) -> Vec<Enforcement> {
    let cg = &host.cgroup;
    let memory_caveat = if cg.swap_accounting {
        "swap is capped at 0 (memory.swap.max / memory.memsw.limit_in_bytes); exceeding the limit OOM-kills inside the sandbox"
    } else {
        "swap accounting is off on this host, so swap is not capped; exceeding the limit OOM-kills inside the sandbox"
    };
    Property::ALL
        .into_iter()
        .map(|p| match p {
            Property::Filesystem => Enforcement::new(
                p,
                Level::Enforced,
                "pivot_root(2) into the image in a private mount namespace (CLONE_NEWNS)",
                "the old root is detached (umount2 MNT_DETACH); the \"host\" image is a tmpfs root with read-only binds of the host's /usr and /etc",
            ),
            Property::Pid => Enforcement::new(
                p,
                Level::Enforced,
                "CLONE_NEWPID",
                "pid 1 is a minimal reaper in PROCESS and IDLE modes and the payload in INIT mode; /proc is mounted for the new namespace",
            ),
            Property::Hostname => Enforcement::new(
                p,
                Level::Enforced,
                "CLONE_NEWUTS + sethostname",
                "the default hostname is the sandbox id",
            ),
            Property::Ipc => Enforcement::new(
                p,
                Level::Enforced,
                "CLONE_NEWIPC",
                "System V IPC and POSIX message queues (private mqueue mount); POSIX shm lives in the private /dev/shm",
            ),
            Property::Network => Enforcement::new(
                p,
                Level::Enforced,
                "CLONE_NEWNET",
                &format!(
                    "NONE (loopback down) and LOOPBACK are enforced; NAMESPACE runs in a given existing namespace (what is in it is its maker's); HOST shares the host's namespace and must be permitted by the daemon's config; RESTRICTED: {}",
                    if host.nftables { RESTRICTED_CAVEATS } else { RESTRICTED_NO_NFT }
                ),
            ),
            Property::User if host.user_namespaces => Enforcement::new(
                p,
                Level::Enforced,
                "CLONE_NEWUSER with uid/gid maps",
                &format!(
                    "opt-in (isolation.user REQUIRED or PREFERRED); sandbox ids 0..{} map to host ids from {}, shared by all sandboxes",
                    host.userns_range.count, host.userns_range.host_start
                ),
            ),
            Property::User => Enforcement::new(
                p,
                Level::NotEnforced,
                "CLONE_NEWUSER with uid/gid maps",
                "user namespaces are unavailable on this host (no CONFIG_USER_NS, or user.max_user_namespaces is 0); root inside is root on the host, limited by the capability set",
            ),
            Property::Cgroup => Enforcement::new(
                p,
                Level::Enforced,
                "CLONE_NEWCGROUP",
                "unshared after the sandbox is placed in its cgroup sandboxd/<id>, which it then sees as /; no cgroupfs is mounted inside",
            ),
            Property::MemoryLimit => cgroup_limit(
                p,
                &cg.memory,
                "cgroup v2 memory.max",
                "cgroup v1 memory.limit_in_bytes",
                memory_caveat,
            ),
            Property::PidsLimit => cgroup_limit(
                p,
                &cg.pids,
                "cgroup v2 pids.max",
                "cgroup v1 pids.max",
                "counts threads as well as processes",
            ),
            Property::CpuLimit => cgroup_limit(
                p,
                &cg.cpu,
                "cgroup v2 cpu.max",
                "cgroup v1 cpu.cfs_quota_us",
                "a quota per 100 ms period (CFS bandwidth); 1000 millis = one CPU",
            ),
            Property::CpuWeight => cgroup_limit(
                p,
                &cg.cpu,
                "cgroup v2 cpu.weight",
                "cgroup v1 cpu.shares (weight × 1024 / 100)",
                "a relative share of contended CPU time between the daemon's sandboxes (siblings under sandboxd/), not against the rest of the host, and no cap: an idle CPU is used whatever the weight; unweighted sandboxes have 100",
            ),
            Property::OpenFilesLimit => Enforcement::new(
                p,
                Level::Enforced,
                "setrlimit RLIMIT_NOFILE",
                "per process, not per sandbox; inherited by children",
            ),
            Property::AddressSpaceLimit => Enforcement::new(
                p,
                Level::Enforced,
                "setrlimit RLIMIT_AS",
                "per process, not per sandbox; inherited by children",
            ),
            Property::DiskLimit => {
                Enforcement::new(p, Level::Enforced, DISK_HOW, DISK_CAVEATS)
            }
            Property::ReadonlyRootfs => Enforcement::new(
                p,
                Level::Enforced,
                "MS_RDONLY bind remount",
                "the root only: /tmp, /dev, /dev/shm and read-write client mounts stay writable",
            ),
            Property::Mounts => Enforcement::new(
                p,
                Level::Enforced,
                "bind mounts resolved with openat2 RESOLVE_IN_ROOT",
                "non-recursive (so read-only covers the whole mount), nosuid, nodev; not under /proc, /sys or /dev (checked where the target resolves); without a user namespace uid 0 is refused in a sandbox with a read-write bind",
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
            Property::Pid if iso.pid == Requirement::Disabled => {
                disabled_row(row.property, "shares the host's pid namespace")
            }
            Property::Hostname if iso.hostname == Requirement::Disabled => {
                disabled_row(row.property, "shares the host's hostname")
            }
            Property::Ipc if iso.ipc == Requirement::Disabled => {
                disabled_row(row.property, "shares the host's IPC namespace")
            }
            Property::Cgroup if iso.cgroup == Requirement::Disabled => disabled_row(
                row.property,
                "sees the host's cgroup tree (limits still apply)",
            ),
            Property::Network => network_row(s.network.mode, host),
            Property::DiskLimit if s.limits.disk_bytes.is_none() => Enforcement::new(
                row.property,
                Level::NotEnforced,
                "none",
                "no disk limit: the spec sets none and the daemon's default is off (disk limit 0); a directory image's overlay upper directory grows on the state directory's filesystem, the \"host\" image's tmpfs root up to the kernel's default (half of RAM)",
            ),
            Property::DiskLimit if s.readonly_rootfs && s.image() != HOST_IMAGE => {
                Enforcement::new(
                    row.property,
                    Level::Enforced,
                    "read-only bind of the image",
                    "the root is read-only, so there is no writable layer; /tmp and /dev/shm are tmpfs of their own sizes",
                )
            }
            Property::User if row.level == Level::Enforced && !wants_userns(spec) => {
                let uid = s.process.user.uid();
                let caveat = if uid == 0 {
                    "not requested: uid 0 in the sandbox is host root, limited by the capability bounding set, no_new_privs and the namespaces".to_owned()
                } else {
                    format!("not requested: the process runs as host uid {uid}; ids are not mapped")
                };
                Enforcement::new(row.property, Level::NotEnforced, "none", &caveat)
            }
            _ => row,
        })
        .map(|row| joined_row(s.join.as_ref(), row))
        .collect()
}

/// A row of a property a child shares with its parent (`spec.join`): the
/// parent's namespace, so the level is the one the parent's row has for
/// the same mode (the child's network mode is the parent's), and the row
/// names the sandbox it is shared with.
fn joined_row(join: Option<&sandboxd_core::spec::Join>, row: Enforcement) -> Enforcement {
    let Some(join) = join else { return row };
    let (shared, what) = match row.property {
        Property::Network => (join.network, "CLONE_NEWNET"),
        Property::Ipc => (join.ipc, "CLONE_NEWIPC"),
        Property::Hostname => (join.uts, "CLONE_NEWUTS"),
        Property::Pid => (join.pid, "CLONE_NEWPID"),
        _ => (false, ""),
    };
    if !shared {
        return row;
    }
    let id = &join.sandbox_id;
    if row.property == Property::Pid {
        // The parent has a pid namespace of its own (validate::join_parent
        // refuses one with isolation.pid DISABLED), so the level stays.
        return Enforcement {
            mechanism: format!("setns({what}) into sandbox {id}'s namespace (spec.join)"),
            caveats: format!(
                "shared with sandbox {id} and its other pid-sharing children: their processes and this sandbox's see and may signal each other, as their ids and capabilities allow; never the host's or another sandbox's. None of this sandbox's processes is pid 1: {id}'s pid 1 reaps their orphans, and its end ends them. /proc is mounted from inside that namespace; a stop or destroy kills this sandbox's cgroup, not the namespace"
            ),
            ..row
        };
    }
    Enforcement {
        mechanism: format!("setns({what}) into sandbox {id}'s namespace (spec.join)"),
        caveats: format!(
            "shared with sandbox {id} and its other children (not with the host unless {id}'s is the host's); as {id}: {}",
            row.caveats
        ),
        ..row
    }
}

/// The network row for one mode.
fn network_row(mode: NetworkMode, host: &HostFacts) -> Enforcement {
    let p = Property::Network;
    match mode {
        NetworkMode::Unspecified | NetworkMode::None => Enforcement::new(
            p,
            Level::Enforced,
            "CLONE_NEWNET",
            "no interfaces; loopback stays down",
        ),
        NetworkMode::Loopback => Enforcement::new(
            p,
            Level::Enforced,
            "CLONE_NEWNET + lo up",
            "a private loopback only",
        ),
        NetworkMode::Restricted if host.nftables => {
            Enforcement::new(p, Level::Enforced, RESTRICTED_HOW, RESTRICTED_CAVEATS)
        }
        NetworkMode::Restricted => Enforcement::new(
            p,
            Level::NotEnforced,
            "CLONE_NEWNET (loopback only)",
            RESTRICTED_NO_NFT,
        ),
        NetworkMode::Host => Enforcement::new(
            p,
            Level::Enforced,
            "host network namespace (no CLONE_NEWNET)",
            "shares the host's network; the daemon's config must permit HOST networking, and the daemon enforces that",
        ),
        NetworkMode::Namespace => {
            Enforcement::new(p, Level::Enforced, NAMESPACE_HOW, NAMESPACE_CAVEATS)
        }
    }
}
