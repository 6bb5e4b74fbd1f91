//! The ordered runtime steps of a sandbox.

use sandboxd_core::spec::Mode;
use sandboxd_core::{SandboxPaths, ValidatedSpec};

use super::{
    Capability, HostFacts, IdMap, LinuxStep, Namespace, Network, Rlimit, RlimitKind, network,
};

/// The steps for a spec, in order.
pub(super) fn steps(
    spec: &ValidatedSpec,
    sandbox: &SandboxPaths,
    host: &HostFacts,
    namespaces: &[Namespace],
) -> Vec<LinuxStep> {
    let s = spec.spec();
    let has = |n: Namespace| namespaces.contains(&n);
    let mut steps = vec![LinuxStep::CreateCgroups];
    if s.join.is_some() {
        steps.push(LinuxStep::JoinParent);
    }
    steps.push(LinuxStep::Clone);
    match network(spec, sandbox, host) {
        // First, so sysfs and every later step see the sandbox's stack.
        Network::Routed(r) => steps.push(LinuxStep::JoinNetns(r.netns)),
        Network::Given(path) => steps.push(LinuxStep::JoinGivenNetns(path)),
        _ => {}
    }
    steps.push(LinuxStep::Mounts);
    if has(Namespace::Uts) {
        let name = if s.hostname.is_empty() {
            sandbox.id.clone()
        } else {
            s.hostname.clone()
        };
        steps.push(LinuxStep::SetHostname(name));
    }
    // pid 1 joins its cgroups itself, once the supervisor made them (while
    // it mounted), and while the host's cgroup paths are still visible.
    steps.extend([
        LinuxStep::JoinCgroups,
        LinuxStep::PivotRoot,
        LinuxStep::DetachOldRoot,
    ]);
    if network(spec, sandbox, host) == Network::Loopback {
        steps.push(LinuxStep::LoopbackUp);
    }
    // After JoinCgroups, so the sandbox's own cgroup is the namespace's root.
    if has(Namespace::Cgroup) {
        steps.push(LinuxStep::UnshareCgroup);
    }
    if has(Namespace::User) {
        steps.push(LinuxStep::UnshareUser);
        steps.push(LinuxStep::WriteIdMaps(IdMap {
            range: host.userns_range,
        }));
    }
    match s.mode {
        Mode::Idle => {
            steps.push(LinuxStep::Idle);
            return steps;
        }
        Mode::Process => steps.push(LinuxStep::ForkPayload),
        // INIT: the payload is pid 1 itself, as nspawn does.
        Mode::Init => {}
    }
    steps.extend([
        // First: nothing the supervisor held may be open once a client
        // path is resolved.
        LinuxStep::CloseRange,
        LinuxStep::Capabilities(Capability::DEFAULT.to_vec()),
        LinuxStep::NoNewPrivs,
    ]);
    steps.extend(rlimits(spec).into_iter().map(LinuxStep::SetRlimit));
    let user = &s.process.user;
    steps.extend([
        LinuxStep::SetGroups(user.additional_gids.clone()),
        LinuxStep::SetGid(user.gid()),
        LinuxStep::SetUid(user.uid()),
        // After setuid, so the directory's permissions apply to the payload.
        LinuxStep::Chdir(s.process.cwd().to_owned()),
        LinuxStep::Seccomp,
        LinuxStep::Execve {
            argv: s.process.argv.clone(),
            env: s.process.env.clone(),
        },
    ]);
    steps
}

/// The per-process limits of a spec. Every process of the sandbox gets
/// them — the main process, and every Exec'd one in every mode (IDLE too,
/// which has no main process and so no payload steps above).
pub fn rlimits(spec: &ValidatedSpec) -> Vec<Rlimit> {
    // The pids limit is the cgroup's, for the whole sandbox.
    Rlimit::of_spec(spec, &[RlimitKind::Nofile, RlimitKind::As])
}
