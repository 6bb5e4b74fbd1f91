//! The jail's rctl rules and the ordered runtime steps.

use sandboxd_core::ValidatedSpec;
use sandboxd_core::spec::Mode;
use sandboxd_core::validate::DEFAULT_INIT;

use super::network::Net;
use super::{HostFacts, HostNet, JailStep, RctlResource, RctlRule, Rlimit, RlimitKind};

/// What else the plan holds that needs a step.
pub(super) struct Has {
    /// rctl rules.
    pub(super) rules: bool,
    /// A generated resolv.conf.
    pub(super) resolv_conf: bool,
}

/// What INIT mode runs instead of the default `/sbin/init`: jail(8)'s
/// conventional `exec.start`, since init(8) only runs as the system's pid 1.
pub const JAIL_RC: [&str; 2] = ["/bin/sh", "/etc/rc"];

/// The rctl rules for the spec's limits. None without racct: the report says
/// NOT_ENFORCED and [`super::build`] refuses them when REQUIRED.
pub(super) fn rctl_rules(spec: &ValidatedSpec, jail: &str, host: &HostFacts) -> Vec<RctlRule> {
    if !host.racct_enabled {
        return Vec::new();
    }
    let l = spec.spec().limits;
    [
        // The hard cap: virtual size, which racct can deny (see
        // RctlResource::Vmemoryuse); resident size is at most that.
        (RctlResource::Vmemoryuse, l.memory_bytes.map(|l| l.value)),
        (RctlResource::Maxproc, l.pids.map(|l| l.value)),
        // Percent of one CPU, rounded up so a small quota is never 0%.
        (
            RctlResource::Pcpu,
            l.cpu_millis.map(|l| l.value.div_ceil(10)),
        ),
    ]
    .into_iter()
    .filter_map(|(resource, amount)| {
        amount.map(|amount| RctlRule {
            jail: jail.to_owned(),
            resource,
            amount,
        })
    })
    .collect()
}

/// The per-process limits of every process the sandbox starts, in every
/// mode: `setrlimit(2)` before the ids change.
pub(super) fn rlimits(spec: &ValidatedSpec) -> Vec<Rlimit> {
    // The pids limit is an rctl rule (maxproc), for the whole jail.
    Rlimit::of_spec(spec, &[RlimitKind::Nofile, RlimitKind::As])
}

/// The argv the first process runs.
fn argv(spec: &ValidatedSpec) -> Vec<String> {
    let s = spec.spec();
    if s.mode == Mode::Init && s.process.argv == [DEFAULT_INIT] {
        JAIL_RC.map(str::to_owned).to_vec()
    } else {
        s.process.argv.clone()
    }
}

/// The steps, in order.
pub(super) fn steps(
    spec: &ValidatedSpec,
    host: &HostFacts,
    net: &Net,
    host_net: &HostNet,
    has: &Has,
) -> Vec<JailStep> {
    let s = spec.spec();
    let mut steps = Vec::new();
    if !host_net.present.is_empty() {
        steps.push(JailStep::CheckAddresses);
    }
    if !host_net.aliases.is_empty() {
        steps.push(JailStep::AddAliases);
    }
    // A daemon step, so cleanup can remove it without the supervisor.
    if let Net::Alias(a) = net {
        steps.push(JailStep::AddLoopbackAlias(*a));
    }
    if !host_net.pf_rules.is_empty() {
        steps.push(JailStep::LoadPfRules);
    }
    if has.resolv_conf {
        steps.push(JailStep::WriteResolvConf);
    }
    steps.push(JailStep::Mounts);
    steps.push(JailStep::CreateJail);
    if has.rules {
        steps.push(JailStep::RctlRules);
    }
    if *net == Net::Vnet {
        steps.push(JailStep::LoopbackUp);
    }
    steps.push(JailStep::ReapAcquire);
    if s.mode == Mode::Idle {
        return steps;
    }
    steps.extend([JailStep::Fork, JailStep::JailAttach]);
    // The same list the launch configuration applies to every process.
    steps.extend(rlimits(spec).into_iter().map(JailStep::SetRlimit));
    if host.has_no_new_privs() {
        steps.push(JailStep::NoNewPrivs);
    }
    let user = &s.process.user;
    steps.extend([
        JailStep::SetGroups(user.additional_gids.clone()),
        JailStep::SetGid(user.gid()),
        JailStep::SetUid(user.uid()),
        // After setuid, so the directory's permissions apply to the payload.
        JailStep::Chdir(s.process.cwd().to_owned()),
        JailStep::Closefrom,
        JailStep::Execve {
            argv: argv(spec),
            env: s.process.env.clone(),
        },
    ]);
    steps
}

/// Which code runs a plan step. Every step has exactly one: the plan's
/// steps are the only list the daemon (`netcfg::prepare`), the backend's
/// `setup` and `enter`, and the generic supervisor work from, and the
/// rendered plan shows the same list, so what the plan says is what runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Executor {
    /// `Backend::prepare` in the daemon, before the supervisor starts.
    Prepare,
    /// The backend's `Isolation::setup` in the supervisor, in plan order.
    Setup,
    /// The backend's `Isolation::enter`, in each forked child.
    Enter,
    /// The generic supervisor (`sandboxd_supervisor`), from the launch
    /// config the backend derived from the same plan (rlimits, argv, user).
    Generic,
}

/// Who runs `step`. No wildcard: a new step must be given a runner here,
/// or it would be planned and shown but never executed.
pub fn executor(step: &JailStep) -> Executor {
    match step {
        JailStep::CheckAddresses
        | JailStep::AddAliases
        | JailStep::AddLoopbackAlias(_)
        | JailStep::LoadPfRules => Executor::Prepare,
        JailStep::WriteResolvConf
        | JailStep::Mounts
        | JailStep::CreateJail
        | JailStep::RctlRules
        | JailStep::LoopbackUp => Executor::Setup,
        JailStep::JailAttach => Executor::Enter,
        JailStep::ReapAcquire
        | JailStep::Fork
        | JailStep::SetRlimit(_)
        | JailStep::NoNewPrivs
        | JailStep::SetGroups(_)
        | JailStep::SetGid(_)
        | JailStep::SetUid(_)
        | JailStep::Chdir(_)
        | JailStep::Closefrom
        | JailStep::Execve { .. } => Executor::Generic,
    }
}

/// The steps `runner` executes, in plan order.
pub fn steps_for(steps: &[JailStep], runner: Executor) -> impl Iterator<Item = &JailStep> {
    steps.iter().filter(move |s| executor(s) == runner)
}

/// The program and arguments the plan's main process runs (`/bin/sh
/// /etc/rc` in place of the default `/sbin/init`).
pub fn main_argv(steps: &[JailStep]) -> Option<&[String]> {
    steps.iter().find_map(|s| match s {
        JailStep::Execve { argv, .. } => Some(argv.as_slice()),
        _ => None,
    })
}
