//! `sandboxctl plan`: the native translation of a spec for a backend, as the
//! daemon computes it (nothing is created).

use sandboxd_proto::v1::{
    BackendKind, PlanMount, PlanParam, PlanSandboxRequest, PlanSandboxResponse, PlanStep,
    host_service_client::HostServiceClient, plan_sandbox_response::Plan,
};

use super::{Ctx, out, print_json, report_table};
use crate::cli::{BackendArg, PlanArgs};
use crate::error::CliError;
use crate::json::{self, enum_name};
use crate::spec_flags::local_env;
use crate::table::Table;

/// PlanSandbox.
pub(super) async fn plan(ctx: &Ctx, args: PlanArgs) -> Result<i32, CliError> {
    let spec = args.spec.create_spec(&args.argv, &local_env)?;
    let backend = match args.backend {
        None => BackendKind::Unspecified,
        Some(BackendArg::Linux) => BackendKind::Linux,
        Some(BackendArg::Freebsd) => BackendKind::Freebsd,
        Some(BackendArg::Chroot) => BackendKind::Chroot,
    };
    let mut client = HostServiceClient::new(ctx.channel().await?);
    let resp = client
        .plan_sandbox(PlanSandboxRequest {
            backend: backend as i32,
            spec: Some(spec),
            assumed_host: false,
        })
        .await?
        .into_inner();
    if ctx.json {
        print_json(&json::plan(&resp))?;
    } else {
        out(&render(&resp))?;
    }
    Ok(0)
}

fn mounts_table(mounts: &[PlanMount]) -> String {
    let mut t = Table::new(&["SOURCE", "TARGET", "FSTYPE", "OPTIONS"]);
    for m in mounts {
        t.row([
            m.source.clone(),
            m.target.clone(),
            m.fstype.clone(),
            m.options.join(","),
        ]);
    }
    t.render()
}

fn params_table(header: [&str; 2], params: &[PlanParam]) -> String {
    let mut t = Table::new(&header);
    for p in params {
        t.row([p.key.as_str(), p.value.as_str()]);
    }
    t.render()
}

fn steps_table(steps: &[PlanStep]) -> String {
    let mut t = Table::new(&["#", "OP", "ARGS", "WHY"]);
    for (i, s) in steps.iter().enumerate() {
        t.row([
            (i + 1).to_string(),
            s.op.clone(),
            s.args.join(" "),
            s.why.clone(),
        ]);
    }
    t.render()
}

/// A titled section; an empty list says so instead of printing a bare
/// header.
fn section(out: &mut String, title: &str, empty: bool, body: impl FnOnce() -> String) {
    out.push('\n');
    out.push_str(title);
    if empty {
        out.push_str(" (none)\n");
    } else {
        out.push('\n');
        out.push_str(&body());
    }
}

/// The human rendering of a plan.
fn render(r: &PlanSandboxResponse) -> String {
    let backend =
        enum_name::<BackendKind>(r.backend).map_or_else(|| r.backend.to_string(), str::to_owned);
    let mut s = format!("Backend: {backend}\n");
    if r.refusals.is_empty() {
        s.push_str("Refusals: none (a create would proceed)\n");
    } else {
        s.push_str("Refusals: a create would fail with FAILED_PRECONDITION:\n");
        for refusal in &r.refusals {
            s.push_str(&format!("  - {refusal}\n"));
        }
    }
    if let Some(report) = &r.isolation {
        section(&mut s, "Isolation:", report.properties.is_empty(), || {
            report_table(report)
        });
    }
    match &r.plan {
        None => s.push_str("\nNo native plan (the backend would refuse this spec).\n"),
        Some(Plan::Chroot(p)) => {
            section(&mut s, "Mounts:", p.mounts.is_empty(), || {
                mounts_table(&p.mounts)
            });
            section(&mut s, "Steps:", p.steps.is_empty(), || {
                steps_table(&p.steps)
            });
        }
        Some(Plan::Linux(p)) => {
            let flags = if p.clone_flags.is_empty() {
                "(none)".to_owned()
            } else {
                p.clone_flags.join(" | ")
            };
            s.push_str(&format!("\nClone flags: {flags}\n"));
            section(&mut s, "Mounts:", p.mounts.is_empty(), || {
                mounts_table(&p.mounts)
            });
            section(&mut s, "Cgroup writes:", p.cgroup_writes.is_empty(), || {
                params_table(["FILE", "VALUE"], &p.cgroup_writes)
            });
            section(&mut s, "Steps:", p.steps.is_empty(), || {
                steps_table(&p.steps)
            });
        }
        Some(Plan::Freebsd(p)) => {
            section(&mut s, "Jail parameters:", p.params.is_empty(), || {
                params_table(["PARAMETER", "VALUE"], &p.params)
            });
            section(&mut s, "Mounts:", p.mounts.is_empty(), || {
                mounts_table(&p.mounts)
            });
            section(&mut s, "rctl rules:", p.rctl_rules.is_empty(), || {
                p.rctl_rules.iter().map(|r| format!("  {r}\n")).collect()
            });
            section(&mut s, "Steps:", p.steps.is_empty(), || {
                steps_table(&p.steps)
            });
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use sandboxd_proto::v1::LinuxPlan;

    #[test]
    fn renders_a_linux_plan() {
        let r = PlanSandboxResponse {
            backend: BackendKind::Linux as i32,
            isolation: None,
            refusals: vec!["USER: user namespaces are disabled".into()],
            plan: Some(Plan::Linux(LinuxPlan {
                clone_flags: vec!["CLONE_NEWPID".into(), "CLONE_NEWNS".into()],
                mounts: vec![PlanMount {
                    source: "proc".into(),
                    target: "/proc".into(),
                    fstype: "proc".into(),
                    options: vec!["nosuid".into(), "nodev".into()],
                }],
                cgroup_writes: vec![],
                steps: vec![PlanStep {
                    op: "pivot_root".into(),
                    args: vec![".".into(), ".".into()],
                    why: "new root".into(),
                }],
            })),
        };
        let text = render(&r);
        assert!(text.contains("Refusals: a create would fail with FAILED_PRECONDITION:\n  - USER: user namespaces are disabled\n"), "{text}");
        assert!(
            text.contains("Clone flags: CLONE_NEWPID | CLONE_NEWNS\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "SOURCE  TARGET  FSTYPE  OPTIONS\nproc    /proc   proc    nosuid,nodev\n"
            ),
            "{text}"
        );
        assert!(text.contains("Cgroup writes: (none)\n"), "{text}");
        assert!(text.contains("1  pivot_root  . .   new root\n"), "{text}");
    }
}
