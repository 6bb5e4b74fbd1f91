//! Operating commands: `stats` (resource use of running sandboxes) and
//! `completion` (shell completion scripts).

use clap::CommandFactory as _;
use sandboxd_proto::v1::{
    GetSandboxRequest, ListSandboxesRequest, Sandbox, SandboxState,
    sandbox_service_client::SandboxServiceClient,
};
use serde_json::json;

use super::{Ctx, out, print_json, required};
use crate::cli::{Cli, CompletionArgs, StatsArgs};
use crate::error::CliError;
use crate::format::{self, UNKNOWN};
use crate::table::Table;

/// The sandboxes `stats` shows: the named ones, or every running one.
async fn targets(ctx: &Ctx, ids: &[String]) -> Result<Vec<Sandbox>, CliError> {
    let mut client = SandboxServiceClient::new(ctx.channel().await?);
    if !ids.is_empty() {
        let mut all = Vec::new();
        for id in ids {
            let resp = client
                .get_sandbox(GetSandboxRequest { id: id.clone() })
                .await?
                .into_inner();
            all.push(required(resp.sandbox, "GetSandbox")?);
        }
        return Ok(all);
    }
    let mut all = Vec::new();
    let mut token = String::new();
    loop {
        let page = client
            .list_sandboxes(ListSandboxesRequest {
                label_selector: String::new(),
                page_size: 0,
                page_token: token.clone(),
            })
            .await?
            .into_inner();
        all.extend(
            page.sandboxes
                .into_iter()
                .filter(|s| s.state == SandboxState::Running as i32),
        );
        if page.next_page_token.is_empty() || page.next_page_token == token {
            break;
        }
        token = page.next_page_token;
    }
    Ok(all)
}

/// `stats`: one row per sandbox; a sandbox that is not running has no usage.
pub(super) async fn stats(ctx: &Ctx, args: StatsArgs) -> Result<i32, CliError> {
    let sandboxes = targets(ctx, &args.ids).await?;
    if ctx.json {
        // One line per sandbox: its id and name, and its ResourceUsage in
        // the proto3 mapping (a field not measured is absent; no usage at
        // all for a sandbox that is not running).
        for s in &sandboxes {
            let mut doc = json!({"id": s.id, "name": s.name});
            if let (Some(u), Some(map)) = (&s.usage, doc.as_object_mut()) {
                map.insert("usage".into(), crate::json::usage(u));
            }
            print_json(&doc)?;
        }
        return Ok(0);
    }
    let mut t = Table::new(&["ID", "NAME", "CPU", "MEMORY", "TASKS", "BLOCK I/O"]);
    for s in &sandboxes {
        let name = if s.name.is_empty() { "-" } else { &s.name };
        match &s.usage {
            Some(u) => t.row([
                s.id.clone(),
                name.to_owned(),
                format::cpu_time(u.cpu_usec),
                u.memory_bytes
                    .map_or_else(|| UNKNOWN.to_owned(), format::bytes_human),
                u.pids.map_or_else(|| UNKNOWN.to_owned(), |p| p.to_string()),
                format::block_io(u),
            ]),
            None => t.row([
                s.id.clone(),
                name.to_owned(),
                "-".into(),
                "-".into(),
                "-".into(),
                format::state(s.state),
            ]),
        }
    }
    out(&t.render())?;
    Ok(0)
}

/// `completion SHELL`: the script on stdout; no daemon needed.
pub(super) fn completion(args: &CompletionArgs) -> Result<i32, CliError> {
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), "sandboxctl", &mut script);
    out(&String::from_utf8_lossy(&script))?;
    Ok(0)
}
