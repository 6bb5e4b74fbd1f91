//! `sandboxctl verify` (VerifySandbox: claims next to what a probe observed
//! inside a running sandbox) and `sandboxctl compare` (one spec planned for
//! several backends side by side, optionally with the daemon's own backend
//! observed).

use sandboxd_proto::v1::{
    BackendKind, CreateSandboxRequest, DestroySandboxRequest, EnforcementLevel,
    GetCapabilitiesRequest, IsolationProperty, ObservedResult, PlanSandboxRequest,
    PlanSandboxResponse, Requirement, Verification, VerifySandboxRequest,
    host_service_client::HostServiceClient, sandbox_service_client::SandboxServiceClient,
};

use super::{Ctx, cell, out, print_json};
use crate::cli::{BackendArg, CompareArgs, VerifyArgs};
use crate::error::CliError;
use crate::json;
use crate::spec_flags::local_env;
use crate::table::Table;

/// VerifySandbox. Exits 1 when an observation contradicts its claim.
pub(super) async fn verify(ctx: &Ctx, args: VerifyArgs) -> Result<i32, CliError> {
    let mut client = SandboxServiceClient::new(ctx.channel().await?);
    let v = client
        .verify_sandbox(VerifySandboxRequest { id: args.id })
        .await?
        .into_inner()
        .verification
        .ok_or_else(|| {
            CliError::Protocol("the daemon's VerifySandbox response has no verification".into())
        })?;
    if ctx.json {
        print_json(&json::verification(&v))?;
    } else {
        out(&render(&v, args.verbose))?;
    }
    Ok(if v.consistent { 0 } else { 1 })
}

/// The human rendering of a verification: one row per property, the
/// hardening checks, and a verdict line. Evidence is shown for every row
/// that is not HOLDS or NOT_APPLICABLE, and for all with `verbose`.
pub(crate) fn render(v: &Verification, verbose: bool) -> String {
    let mut t = Table::new(&[
        "PROPERTY",
        "CLAIMED",
        "REQUESTED",
        "OBSERVED",
        "AGREES",
        "EVIDENCE",
    ]);
    for p in &v.properties {
        let plain = matches!(
            ObservedResult::try_from(p.observed),
            Ok(ObservedResult::Holds | ObservedResult::NotApplicable)
        );
        t.row([
            cell::<IsolationProperty>(p.property),
            cell::<EnforcementLevel>(p.claimed),
            cell::<Requirement>(p.requested),
            cell::<ObservedResult>(p.observed),
            if p.agrees { "yes" } else { "NO" }.to_owned(),
            if plain && !verbose {
                String::new()
            } else {
                p.evidence.join("; ")
            },
        ]);
    }
    let backend = cell::<BackendKind>(v.backend);
    let mut s = format!("Backend: {backend} (probe ran {} ms)\n", v.elapsed_ms);
    s.push_str(&t.render());
    if !v.checks.is_empty() {
        let mut c = Table::new(&["CHECK", "EXPECTED", "OBSERVED", "EVIDENCE"]);
        for check in &v.checks {
            c.row([
                check.name.clone(),
                check.expected.clone(),
                cell::<ObservedResult>(check.observed),
                check.evidence.clone(),
            ]);
        }
        s.push('\n');
        s.push_str(&c.render());
    }
    let disagree: Vec<String> = v
        .properties
        .iter()
        .filter(|p| !p.agrees)
        .map(|p| cell::<IsolationProperty>(p.property))
        .collect();
    s.push('\n');
    if v.consistent {
        s.push_str("Verdict: every observation is what the isolation report claims.\n");
    } else if disagree.is_empty() {
        s.push_str("Verdict: INCONSISTENT: a hardening check was VIOLATED.\n");
    } else {
        s.push_str(&format!(
            "Verdict: INCONSISTENT: the observation contradicts the claim for {}.\n",
            disagree.join(", ")
        ));
    }
    s
}

fn backend_of(arg: BackendArg) -> BackendKind {
    match arg {
        BackendArg::Linux => BackendKind::Linux,
        BackendArg::Freebsd => BackendKind::Freebsd,
        BackendArg::Chroot => BackendKind::Chroot,
    }
}

/// One column of a comparison: a backend's plan, or the observation.
#[derive(Debug)]
pub(crate) enum Column {
    /// PlanSandbox for a backend.
    Planned(PlanSandboxResponse),
    /// What the daemon's own backend was observed to do.
    Observed(BackendKind, Result<Verification, String>),
}

/// `compare`.
pub(super) async fn compare(ctx: &Ctx, args: CompareArgs) -> Result<i32, CliError> {
    let spec = args.spec.create_spec(&args.argv, &local_env)?;
    let backends: Vec<BackendKind> = if args.backends.is_empty() {
        vec![
            BackendKind::Linux,
            BackendKind::Freebsd,
            BackendKind::Chroot,
        ]
    } else {
        args.backends.iter().copied().map(backend_of).collect()
    };
    let channel = ctx.channel().await?;
    let mut host = HostServiceClient::new(channel.clone());
    let mut columns = Vec::new();
    for b in backends {
        let plan = host
            .plan_sandbox(PlanSandboxRequest {
                backend: b as i32,
                spec: Some(spec.clone()),
                assumed_host: args.assumed_host,
            })
            .await?
            .into_inner();
        columns.push(Column::Planned(plan));
    }
    if args.observe {
        let own = host
            .get_capabilities(GetCapabilitiesRequest {})
            .await?
            .into_inner()
            .backend;
        let own = BackendKind::try_from(own).unwrap_or(BackendKind::Unspecified);
        let mut sandboxes = SandboxServiceClient::new(channel);
        let observed = match sandboxes
            .create_sandbox(CreateSandboxRequest {
                spec: Some(spec),
                request_id: String::new(),
                verify: true,
            })
            .await
        {
            Ok(resp) => {
                let resp = resp.into_inner();
                if let Some(sb) = &resp.sandbox {
                    if let Err(e) = sandboxes
                        .destroy_sandbox(DestroySandboxRequest { id: sb.id.clone() })
                        .await
                    {
                        eprintln!(
                            "sandboxctl: warning: could not remove sandbox {}: {}",
                            sb.id,
                            CliError::Rpc(e)
                        );
                    }
                }
                resp.verification
                    .ok_or_else(|| "the daemon returned no verification".to_owned())
            }
            Err(status) => Err(CliError::Rpc(status).to_string()),
        };
        columns.push(Column::Observed(own, observed));
    }
    if ctx.json {
        // One line per column.
        let cols = columns.iter().map(|c| match c {
            Column::Planned(p) => json::plan(p),
            Column::Observed(b, Ok(v)) => serde_json::json!({
                "observed": cell::<BackendKind>(*b as i32),
                "verification": json::verification(v),
            }),
            Column::Observed(b, Err(e)) => serde_json::json!({
                "observed": cell::<BackendKind>(*b as i32),
                "error": e,
            }),
        });
        for col in cols {
            print_json(&col)?;
        }
    } else {
        out(&render_compare(&columns, args.markdown))?;
    }
    Ok(0)
}

/// The comparison table: one row per property, one column per backend
/// ("LEVEL" and, in Markdown, its mechanism), then each backend's refusals.
pub(crate) fn render_compare(columns: &[Column], markdown: bool) -> String {
    let header: Vec<String> = std::iter::once("PROPERTY".to_owned())
        .chain(columns.iter().map(|c| match c {
            Column::Planned(p) => cell::<BackendKind>(p.backend),
            Column::Observed(b, _) => format!("OBSERVED ({})", cell::<BackendKind>(*b as i32)),
        }))
        .collect();
    let properties: Vec<i32> = columns
        .iter()
        .find_map(|c| match c {
            Column::Planned(p) => p
                .isolation
                .as_ref()
                .map(|r| r.properties.iter().map(|p| p.property).collect()),
            Column::Observed(_, Ok(v)) => Some(v.properties.iter().map(|p| p.property).collect()),
            Column::Observed(_, Err(_)) => None,
        })
        .unwrap_or_default();
    let rows: Vec<Vec<String>> = properties
        .iter()
        .map(|prop| {
            std::iter::once(cell::<IsolationProperty>(*prop))
                .chain(columns.iter().map(|c| {
                    match c {
                        Column::Planned(plan) => plan
                            .isolation
                            .as_ref()
                            .and_then(|r| r.properties.iter().find(|p| p.property == *prop))
                            .map_or_else(
                                || "-".to_owned(),
                                |p| {
                                    let level = cell::<EnforcementLevel>(p.level);
                                    if markdown && !p.mechanism.is_empty() {
                                        format!("{level}: {}", p.mechanism)
                                    } else {
                                        level
                                    }
                                },
                            ),
                        Column::Observed(_, Ok(v)) => v
                            .properties
                            .iter()
                            .find(|p| p.property == *prop)
                            .map_or_else(
                                || "-".to_owned(),
                                |p| {
                                    let o = cell::<ObservedResult>(p.observed);
                                    if p.agrees {
                                        o
                                    } else {
                                        format!("{o} (contradicts the claim)")
                                    }
                                },
                            ),
                        Column::Observed(_, Err(_)) => "not observed".to_owned(),
                    }
                }))
                .collect()
        })
        .collect();
    let mut s = String::new();
    if markdown {
        let esc = |c: &str| c.replace('|', "\\|");
        s.push_str(&format!("| {} |\n", header.join(" | ")));
        s.push_str(&format!("|{}\n", "---|".repeat(header.len())));
        for r in &rows {
            let cells: Vec<String> = r.iter().map(|c| esc(c)).collect();
            s.push_str(&format!("| {} |\n", cells.join(" | ")));
        }
    } else {
        let mut t = Table::new(&header.iter().map(String::as_str).collect::<Vec<_>>());
        for r in rows {
            t.row(r);
        }
        s.push_str(&t.render());
    }
    let mut notes = Vec::new();
    for c in columns {
        match c {
            Column::Planned(p) => {
                for r in &p.refusals {
                    notes.push(format!("{} refuses: {r}", cell::<BackendKind>(p.backend)));
                }
            }
            Column::Observed(b, Err(e)) => notes.push(format!(
                "{} could not be observed: {e}",
                cell::<BackendKind>(*b as i32)
            )),
            Column::Observed(..) => {}
        }
    }
    if !notes.is_empty() {
        s.push('\n');
        for n in notes {
            s.push_str(&if markdown {
                format!("- {}\n", n.replace('|', "\\|"))
            } else {
                format!("{n}\n")
            });
        }
    }
    s
}
