//! Renders a [`LinuxPlan`] into the display form [`NativePlan::Linux`].
//! Display only: targets are shown as host paths under the root being
//! assembled, though the runtime resolves them inside it.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use sandboxd_core::NativePlan;
use sandboxd_core::plan::{PlanMount, Step};

use super::{
    Actor, LinuxPlan, LinuxStep, Mount, MountSource, Namespace, Network, RootOp, RoutedNetwork,
    nft_script,
};

/// The images directory as shown in plans (its real path is configuration).
const IMAGES: &str = "<images>";
/// `path` (absolute, inside the sandbox) under the root being assembled.
fn in_root(rootfs: &Path, path: &str) -> PathBuf {
    rootfs.join(path.trim_start_matches('/'))
}

fn mount(plan: &LinuxPlan, op: &RootOp) -> PlanMount {
    let root = &plan.rootfs;
    match op {
        RootOp::MakePrivate => PlanMount {
            source: "none".to_owned(),
            target: "/".to_owned(),
            fstype: String::new(),
            options: vec!["rec".to_owned(), "private".to_owned()],
        },
        RootOp::Symlink { path, target } => PlanMount {
            source: target.clone(),
            target: in_root(root, path).display().to_string(),
            fstype: "symlink".to_owned(),
            options: Vec::new(),
        },
        RootOp::Device { path, major, minor } => PlanMount {
            source: format!("char {major}:{minor}"),
            target: in_root(root, path).display().to_string(),
            fstype: "mknod".to_owned(),
            options: vec!["mode=0666".to_owned()],
        },
        RootOp::Mount(m) => {
            let mut options: Vec<String> = m.flags.iter().map(|f| f.option().to_owned()).collect();
            options.extend(m.data.iter().cloned());
            let source = match &m.source {
                MountSource::Pseudo(s) => s.clone(),
                MountSource::Host(p) => p.display().to_string(),
                MountSource::Image(name) => format!("{IMAGES}/{name}"),
                MountSource::Overlay {
                    image,
                    layers,
                    upper,
                    work,
                    ..
                } => {
                    let lower = if layers.is_empty() {
                        format!("{IMAGES}/{image}")
                    } else {
                        lowerdirs(layers)
                    };
                    options.extend([
                        format!("lowerdir={lower}"),
                        format!("upperdir={}", upper.display()),
                        format!("workdir={}", work.display()),
                    ]);
                    "overlay".to_owned()
                }
                MountSource::InRoot(p) => in_root(root, p).display().to_string(),
            };
            if m.if_exists {
                options.push("if-exists".to_owned());
            }
            PlanMount {
                source,
                target: in_root(root, &m.target).display().to_string(),
                fstype: m.fstype.clone().unwrap_or_default(),
                options,
            }
        }
    }
}

/// An OCI image's layers as overlayfs lists them: the top layer first.
fn lowerdirs(layers: &[std::path::PathBuf]) -> String {
    layers
        .iter()
        .rev()
        .map(|l| format!("{IMAGES}/{}", l.display()))
        .collect::<Vec<_>>()
        .join(":")
}

/// The tmpfs an overlay's upper and work directories live on, shown before
/// the overlay (the runtime mounts it first, in the same namespace).
fn layer(op: &RootOp) -> Option<PlanMount> {
    let RootOp::Mount(Mount {
        source: MountSource::Overlay {
            layer: Some(layer), ..
        },
        ..
    }) = op
    else {
        return None;
    };
    let mut options: Vec<String> = layer.flags.iter().map(|f| f.option().to_owned()).collect();
    options.extend(layer.data.iter().cloned());
    Some(PlanMount {
        source: "tmpfs".to_owned(),
        target: layer.dir.display().to_string(),
        fstype: "tmpfs".to_owned(),
        options,
    })
}

/// The step's name, arguments and reason.
fn step(plan: &LinuxPlan, step: &LinuxStep) -> Step {
    let (op, args, why): (&str, Vec<String>, &str) = match step {
        LinuxStep::CreateCgroups => (
            "create_cgroups",
            plan.cgroups
                .dirs
                .iter()
                .map(|d| d.display().to_string())
                .collect(),
            "limits are in place before any sandbox code runs",
        ),
        LinuxStep::Clone => (
            "clone",
            clone_flags(plan)
                .filter(|n| *n != Namespace::Cgroup)
                .map(|n| n.flag().to_owned())
                .collect(),
            "the child waits on a sync pipe until the supervisor has set it up",
        ),
        LinuxStep::WriteIdMaps(map) => (
            "write_id_maps",
            vec![
                format!("uid_map: 0 {} {}", map.range.host_start, map.range.count),
                format!("gid_map: 0 {} {}", map.range.host_start, map.range.count),
            ],
            "sandbox root is an unprivileged host id",
        ),
        LinuxStep::JoinCgroups => (
            "join_cgroups",
            plan.cgroups
                .dirs
                .iter()
                .map(|d| d.display().to_string())
                .collect(),
            "pid 1 moves itself in (v1: 0 to tasks, no global lock), as every payload does, before anything of the sandbox runs",
        ),
        LinuxStep::UnshareUser => (
            "unshare",
            vec!["CLONE_NEWUSER".to_owned()],
            "last, after the root is built: the sandbox's root (host uid from the id map) owns no other namespace; pid 1 then becomes that root",
        ),
        LinuxStep::UnshareCgroup => (
            "unshare",
            vec!["CLONE_NEWCGROUP".to_owned()],
            "after joining, so the sandbox's own cgroup is its root",
        ),
        LinuxStep::Mounts => (
            "mounts",
            vec![format!("{} operations", plan.mounts.len())],
            "assemble the root in the private mount namespace",
        ),
        LinuxStep::SetHostname(name) => ("sethostname", vec![name.clone()], "own UTS namespace"),
        LinuxStep::PivotRoot => (
            "pivot_root",
            vec![".".to_owned(), ".".to_owned()],
            "from inside the new root; stacks the old root under it without needing a put_old directory",
        ),
        LinuxStep::DetachOldRoot => (
            "umount2",
            vec![".".to_owned(), "MNT_DETACH".to_owned()],
            "the host's root is no longer reachable",
        ),
        LinuxStep::LoopbackUp => ("link_up", vec!["lo".to_owned()], "a private loopback"),
        LinuxStep::JoinParent => (
            "setns",
            plan.join.as_ref().map_or_else(Vec::new, |j| {
                let mut args = vec![
                    format!("sandbox {}", j.sandbox),
                    format!("pidfd_open({})", j.init_pid),
                ];
                args.extend(j.namespaces.iter().map(|n| n.flag().to_owned()));
                args
            }),
            if plan
                .join
                .as_ref()
                .is_some_and(|j| j.namespaces.contains(&Namespace::Pid))
            {
                "spec.join: into the parent's namespaces (through a pidfd of its pid 1, checked to be its supervisor's child) before the sandbox's first process is cloned into them; with the pid namespace that process is not pid 1 (the parent's pid 1 is), and the supervisor returns to its own pid namespace after the clone; nothing else of the parent is shared"
            } else {
                "spec.join: into the parent's namespaces (through a pidfd of its pid 1, checked to be its supervisor's child) before pid 1 is cloned into them; nothing else of the parent is shared"
            },
        ),
        LinuxStep::JoinNetns(path) => (
            "setns",
            vec![path.display().to_string(), "CLONE_NEWNET".to_owned()],
            "the network namespace the daemon prepared (RESTRICTED), before the root is built so sysfs shows its devices",
        ),
        LinuxStep::JoinGivenNetns(path) => (
            "setns",
            vec![path.display().to_string(), "CLONE_NEWNET".to_owned()],
            "NAMESPACE: the given network namespace, through the descriptor the daemon opened (below an --allow-netns-source directory, no symlinks, nsfs of type net, not the host's); nothing is set up in it",
        ),
        LinuxStep::ForkPayload => (
            "fork",
            vec!["pid_for_children".to_owned()],
            "pid 1 stays a minimal reaper; the payload is the supervisor's child, born in the sandbox's pid namespace (the supervisor's pid_for_children), and setns into the others; the supervisor reaps it; the sandbox ends when it exits",
        ),
        LinuxStep::Idle => (
            "idle",
            Vec::new(),
            "IDLE: pid 1 only reaps; work enters with Exec",
        ),
        LinuxStep::Capabilities(caps) => (
            "capabilities",
            caps.iter().map(|c| c.name().to_owned()).collect(),
            "Docker's default set without NET_RAW and MKNOD; everything else leaves the bounding set",
        ),
        LinuxStep::Seccomp => (
            "seccomp",
            vec!["deny list".to_owned()],
            "EPERM for keyctl, add_key, request_key, bpf, perf_event_open, userfaultfd, kexec_*, *_module, open_by_handle_at, the mount API, swapon/off, reboot, setns, acct, quotactl, and unshare/clone with CLONE_NEWUSER; ENOSYS for clone3 and the x32 ABI",
        ),
        LinuxStep::NoNewPrivs => (
            "prctl",
            vec!["PR_SET_NO_NEW_PRIVS".to_owned(), "1".to_owned()],
            "setuid binaries and file capabilities cannot raise privileges",
        ),
        LinuxStep::SetRlimit(r) => (
            "setrlimit",
            vec![r.kind.name().to_owned(), r.value.to_string()],
            r.kind.purpose(),
        ),
        LinuxStep::SetGroups(gids) => (
            "setgroups",
            gids.iter().map(u32::to_string).collect(),
            "only the spec's supplementary groups",
        ),
        LinuxStep::SetGid(gid) => ("setgid", vec![gid.to_string()], "the spec's group"),
        LinuxStep::SetUid(uid) => ("setuid", vec![uid.to_string()], "the spec's user, last"),
        LinuxStep::Chdir(dir) => (
            "chdir",
            vec![dir.clone()],
            "the working directory: openat2(RESOLVE_IN_ROOT|RESOLVE_NO_MAGICLINKS), fchdir",
        ),
        LinuxStep::CloseRange => (
            "close_range",
            vec!["3".to_owned(), "~0".to_owned()],
            "first: no descriptor beyond stdio is open when client paths are resolved",
        ),
        LinuxStep::Execve { argv, env } => {
            // Values of the environment may be secrets; show the names.
            let mut args = argv.clone();
            let keys: Vec<&str> = env
                .iter()
                .map(|kv| kv.split_once('=').map_or(kv.as_str(), |(k, _)| k))
                .collect();
            if !keys.is_empty() {
                args.push(format!("env: {}", keys.join(",")));
            }
            (
                "execve",
                args,
                "the payload, opened with openat2(RESOLVE_IN_ROOT|RESOLVE_NO_MAGICLINKS), run with execveat",
            )
        }
    };
    let actor = match step.actor() {
        Actor::Supervisor => "supervisor",
        Actor::Init => "pid 1",
        Actor::Payload => "payload",
    };
    Step {
        op: op.to_owned(),
        args,
        why: format!("{actor}: {why}"),
    }
}

/// The namespaces pid 1 is cloned into: all but a RESTRICTED sandbox's
/// network namespace (the daemon made it) and a NAMESPACE one (given),
/// which it joins.
fn clone_flags(plan: &LinuxPlan) -> impl Iterator<Item = Namespace> + '_ {
    let routed = matches!(plan.network, Network::Routed(_) | Network::Given(_));
    plan.namespaces
        .iter()
        .copied()
        .filter(move |n| !(routed && *n == Namespace::Net))
}

/// The daemon's host-side steps for a routed network, before the
/// supervisor starts.
fn network_steps(r: &RoutedNetwork) -> Vec<Step> {
    let daemon = |op: &str, args: Vec<String>, why: &str| Step {
        op: op.to_owned(),
        args,
        why: format!("daemon: {why}"),
    };
    let prefix = |a: &IpAddr| if a.is_ipv4() { 32 } else { 128 };
    let mut steps = vec![
        daemon(
            "netns_create",
            vec![r.netns.display().to_string()],
            "unshare(CLONE_NEWNET) in a thread, pinned by a bind mount; lo up",
        ),
        daemon(
            "veth_create",
            vec![
                r.host_link.clone(),
                format!("peer {} in {}", r.sandbox_link, r.netns.display()),
            ],
            "the peer is created inside the namespace, never visible on the host",
        ),
    ];
    for gw in &r.gateways {
        steps.push(daemon(
            "addr_add",
            vec![
                format!("{gw}/{}", prefix(gw)),
                format!("dev {}", r.host_link),
            ],
            "the gateway the sandbox routes through",
        ));
    }
    for a in &r.addresses {
        steps.push(daemon(
            "route_add",
            vec![format!("{a}/{}", prefix(a)), format!("dev {}", r.host_link)],
            "the host reaches the sandbox address over its link",
        ));
        steps.push(daemon(
            "addr_add",
            vec![
                format!("{a}/{}", prefix(a)),
                format!("dev {} (in the namespace)", r.sandbox_link),
            ],
            "the sandbox's only addresses",
        ));
    }
    for gw in &r.gateways {
        steps.push(daemon(
            "route_add",
            vec![
                "default".to_owned(),
                format!("via {gw} dev {} (in the namespace)", r.sandbox_link),
            ],
            "everything else goes through the host",
        ));
    }
    let mut forwarding = vec!["net.ipv4.ip_forward=1".to_owned()];
    if r.has_ipv6() {
        forwarding.push("net.ipv6.conf.all.forwarding=1".to_owned());
    }
    steps.push(daemon(
        "sysctl",
        forwarding,
        "the host routes for the sandbox",
    ));
    steps.push(daemon(
        "nft",
        nft_script(r).lines().map(str::to_owned).collect(),
        "one table per sandbox: source guard, no connections to the host, NAT and port forwards; deleting the table removes them all",
    ));
    steps
}

/// The display form of a plan.
pub(super) fn native(plan: &LinuxPlan) -> NativePlan {
    let mut steps = match &plan.network {
        Network::Routed(r) => network_steps(r),
        _ => Vec::new(),
    };
    steps.extend(plan.steps.iter().map(|s| step(plan, s)));
    NativePlan::Linux {
        // CLONE_NEWUSER is not a clone flag here: pid 1 unshares it last.
        clone_flags: clone_flags(plan)
            .filter(|n| *n != Namespace::User)
            .map(|n| n.flag().to_owned())
            .collect(),
        mounts: plan
            .mounts
            .iter()
            .flat_map(|op| layer(op).into_iter().chain([mount(plan, op)]))
            .collect(),
        cgroup_writes: plan
            .cgroups
            .writes
            .iter()
            .map(|w| (w.file.display().to_string(), w.value.clone()))
            .collect(),
        steps,
    }
}
