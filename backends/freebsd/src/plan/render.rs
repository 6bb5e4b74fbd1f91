//! Renders a [`JailPlan`] into the display form [`NativePlan::Jail`].
//! Display only: targets are shown as host paths under the jail's root,
//! though the runtime resolves them beneath it.

use std::path::{Path, PathBuf};

use sandboxd_core::NativePlan;
use sandboxd_core::plan::{PlanMount, Step};

use super::{Actor, JailMount, JailPlan, JailStep, MountSource};

/// The images directory as shown in plans (its real path is configuration).
const IMAGES: &str = "<images>";
/// `path` (absolute, inside the jail) under its root on the host.
fn in_root(rootfs: &Path, path: &str) -> PathBuf {
    rootfs.join(path.trim_start_matches('/'))
}

fn mount(plan: &JailPlan, m: &JailMount) -> PlanMount {
    let rootfs = &plan.rootfs;
    let source = match &m.source {
        MountSource::ResolvConf => plan.resolv_conf_path().display().to_string(),
        MountSource::Masked => plan.mask_path().display().to_string(),
        MountSource::Pseudo => m.fstype.as_str().to_owned(),
        MountSource::Host(p) => p.display().to_string(),
        MountSource::Image(name) => format!("{IMAGES}/{name}"),
        MountSource::ImageLayers(_) => plan.oci_root_path().display().to_string(),
    };
    let mut options = Vec::new();
    if let MountSource::ImageLayers(layers) = &m.source {
        options.push(format!(
            "flattened copy of {}",
            layers
                .iter()
                .map(|l| format!("{IMAGES}/{}", l.display()))
                .collect::<Vec<_>>()
                .join(" + ")
        ));
    }
    if m.update {
        options.push("update".to_owned());
    }
    options.extend(m.options.iter().cloned());
    if let Some(mode) = m.chmod {
        options.push(format!("then chmod {mode:o}"));
    }
    PlanMount {
        source,
        target: in_root(rootfs, &m.target).display().to_string(),
        fstype: m.fstype.as_str().to_owned(),
        options,
    }
}

/// The step's name, arguments and reason.
fn step(plan: &JailPlan, step: &JailStep) -> Step {
    let net = &plan.host_net;
    let (op, args, why): (&str, Vec<String>, &str) = match step {
        JailStep::CheckAddresses => (
            "check addresses",
            net.present.iter().map(ToString::to_string).collect(),
            "no alias interface is configured: each address must already be on a host interface",
        ),
        JailStep::AddAliases => (
            "ifconfig",
            net.aliases
                .iter()
                .map(|a| {
                    let af = if a.address.is_ipv4() { "inet" } else { "inet6" };
                    format!("{} {af} {} alias", a.interface, a.with_prefix())
                })
                .collect(),
            "the jail's addresses live on the host's stack; recorded in the sandbox directory and removed on destroy",
        ),
        JailStep::LoadPfRules => {
            let mut args = vec![format!("-a {} -f -", net.pf_anchor)];
            args.extend(net.pf_rules.iter().cloned());
            (
                "pfctl",
                args,
                "outbound NAT and port forwards as nat/rdr rules in the sandbox's anchor; flushed on destroy (pfctl -a ANCHOR -F rules, then -F nat)",
            )
        }
        JailStep::WriteResolvConf => {
            let mut args = vec![plan.resolv_conf_path().display().to_string()];
            args.extend(
                plan.resolv_conf
                    .iter()
                    .flat_map(|t| t.lines())
                    .filter(|l| !l.starts_with('#'))
                    .map(str::to_owned),
            );
            (
                "write",
                args,
                "the jail's /etc/resolv.conf, mounted read-only over the image's own",
            )
        }
        JailStep::Mounts => (
            "mounts",
            vec![format!("{} mounts", plan.mounts.len())],
            "assemble the jail's root on the host; enforce_statfs=2 hides everything else",
        ),
        JailStep::AddLoopbackAlias(a) => (
            "ifconfig",
            vec![format!("lo0 inet {a}/32 alias")],
            "LOOPBACK without VIMAGE: the jail's own loopback address; recorded in the sandbox directory and removed on destroy",
        ),
        JailStep::CreateJail => (
            "jail_set",
            vec!["JAIL_CREATE".to_owned(), plan.name.clone()],
            "persistent: it ends when the supervisor removes it (jail_remove), not with its last process, so its jid cannot be reused under a later Exec",
        ),
        JailStep::RctlRules => (
            "rctl_add_rule",
            plan.rctl_rules.iter().map(|r| r.render()).collect(),
            "limits are in place before any process enters",
        ),
        JailStep::LoopbackUp => (
            "ioctl",
            vec![
                "SIOCAIFADDR".to_owned(),
                "lo0".to_owned(),
                "inet 127.0.0.1/8".to_owned(),
            ],
            "a short-lived child attached to the vnet jail configures its loopback; the address brings lo0 up, and the kernel then gives it ::1",
        ),
        JailStep::ReapAcquire => (
            "procctl",
            vec![
                "P_PID".to_owned(),
                "self".to_owned(),
                "PROC_REAP_ACQUIRE".to_owned(),
            ],
            "orphans of the sandbox are reparented to the supervisor, which sees every exit",
        ),
        JailStep::Fork => ("fork", Vec::new(), "the first process"),
        JailStep::JailAttach => (
            "jail_attach",
            vec![plan.name.clone()],
            "enter the jail; root and cwd become its path",
        ),
        JailStep::SetRlimit(r) => (
            "setrlimit",
            vec![r.kind.name().to_owned(), r.value.to_string()],
            r.kind.purpose(),
        ),
        JailStep::NoNewPrivs => (
            "procctl",
            vec![
                "PROC_NO_NEW_PRIVS_CTL".to_owned(),
                "PROC_NO_NEW_PRIVS_ENABLE".to_owned(),
            ],
            "setuid binaries cannot raise privileges (FreeBSD 14+)",
        ),
        JailStep::SetGroups(gids) => (
            "setgroups",
            gids.iter().map(u32::to_string).collect(),
            "only the spec's supplementary groups",
        ),
        JailStep::SetGid(gid) => ("setgid", vec![gid.to_string()], "the spec's group"),
        JailStep::SetUid(uid) => ("setuid", vec![uid.to_string()], "the spec's user, last"),
        JailStep::Chdir(dir) => ("chdir", vec![dir.clone()], "the working directory"),
        JailStep::Closefrom => (
            "closefrom",
            vec!["3".to_owned()],
            "no descriptor beyond stdio leaks into the payload",
        ),
        JailStep::Execve { argv, env } => {
            // Values of the environment may be secrets; show the names.
            let mut args = argv.clone();
            let keys: Vec<&str> = env
                .iter()
                .map(|kv| kv.split_once('=').map_or(kv.as_str(), |(k, _)| k))
                .collect();
            if !keys.is_empty() {
                args.push(format!("env: {}", keys.join(",")));
            }
            ("execve", args, "the payload")
        }
    };
    let actor = match step.actor() {
        Actor::Daemon => "daemon",
        Actor::Supervisor => "supervisor",
        Actor::Child => "child",
    };
    Step {
        op: op.to_owned(),
        args,
        why: format!("{actor}: {why}"),
    }
}

/// The display form of a plan.
pub(super) fn native(plan: &JailPlan) -> NativePlan {
    NativePlan::Jail {
        params: plan
            .params
            .iter()
            .map(|p| (p.name.clone(), p.value.render()))
            .collect(),
        mounts: plan.mounts.iter().map(|m| mount(plan, m)).collect(),
        rctl_rules: plan.rctl_rules.iter().map(|r| r.render()).collect(),
        steps: plan.steps.iter().map(|s| step(plan, s)).collect(),
    }
}
