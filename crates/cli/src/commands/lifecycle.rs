//! Sandbox lifecycle commands: create, ls, inspect, stop, rm, wait.

use sandboxd_proto::v1::{
    CreateSandboxRequest, DestroySandboxRequest, GetSandboxRequest, ListSandboxesRequest,
    ListSandboxesResponse, NetworkMode, NetworkPolicy, Requirement, Sandbox, SandboxSpec,
    StopSandboxRequest, WaitSandboxRequest, sandbox_service_client::SandboxServiceClient,
};
use serde_json::Value;

use super::{Ctx, out, print_json, report_table, required, warn_degraded};
use crate::cli::{CreateArgs, IdArg, LsArgs, RmArgs, StopArgs};
use crate::error::{CliError, EXIT_FAILURE};
use crate::format;
use crate::json::{self, enum_name};
use crate::spec_flags::{local_env, parse_signal};
use crate::stream::exit_code;
use crate::table::Table;

/// CreateSandbox; prints the id (or the sandbox as JSON).
pub(super) async fn create(ctx: &Ctx, args: CreateArgs) -> Result<i32, CliError> {
    let spec = args.spec.create_spec(&args.argv, &local_env)?;
    let mut client = SandboxServiceClient::new(ctx.channel().await?);
    let req = CreateSandboxRequest {
        spec: Some(spec),
        request_id: args.request_id.unwrap_or_default(),
        verify: args.verify,
    };
    let resp = client.create_sandbox(req).await?.into_inner();
    let sandbox = required(resp.sandbox, "CreateSandbox")?;
    warn_degraded(&sandbox);
    if !ctx.json {
        if let Some(v) = &resp.verification {
            eprint!("{}", super::verify::render(v, false));
        }
    }
    if ctx.json {
        let mut value = json::sandbox(&sandbox);
        if let (Some(v), Some(map)) = (&resp.verification, value.as_object_mut()) {
            map.insert("verification".into(), json::verification(v));
        }
        print_json(&value)?;
    } else {
        out(&format!("{}\n", sandbox.id))?;
    }
    Ok(0)
}

/// ListSandboxes; the first page, or all of them with --all-pages.
pub(super) async fn ls(ctx: &Ctx, args: LsArgs) -> Result<i32, CliError> {
    let mut client = SandboxServiceClient::new(ctx.channel().await?);
    let mut all = ListSandboxesResponse::default();
    let mut token = String::new();
    loop {
        let req = ListSandboxesRequest {
            label_selector: args.selector.clone().unwrap_or_default(),
            page_size: 0,
            page_token: token.clone(),
        };
        let page = client.list_sandboxes(req).await?.into_inner();
        all.sandboxes.extend(page.sandboxes);
        if !args.all_pages || page.next_page_token.is_empty() {
            all.next_page_token = page.next_page_token;
            break;
        }
        // A daemon handing back the token it was given would loop forever.
        if page.next_page_token == token {
            return Err(CliError::Protocol(
                "ListSandboxes returned the same page token twice".into(),
            ));
        }
        token = page.next_page_token;
    }
    if ctx.json {
        // JSON lines: one sandbox per line (as `docker ps --format json`).
        for s in &all.sandboxes {
            print_json(&json::sandbox(s))?;
        }
        if !all.next_page_token.is_empty() {
            eprintln!("sandboxctl: more sandboxes match; use --all-pages to list them all");
        }
        return Ok(0);
    }
    let now = format::now_ms();
    let mut t = Table::new(&[
        "ID", "NAME", "IMAGE", "MODE", "STATE", "EXIT", "CREATED", "ADDRESS",
    ]);
    for s in &all.sandboxes {
        let spec = s.spec.as_ref();
        t.row([
            s.id.clone(),
            dash(&s.name),
            dash(spec.map_or("", |sp| sp.image.as_str())),
            format::mode(spec.map_or(0, |sp| sp.mode)),
            format::state(s.state),
            format::exit_short(s.exit.as_ref()),
            format::relative(s.created_at_ms, now),
            // The first leased address (the one forwards go to); inspect
            // shows them all. Last, as it is often empty.
            dash(s.addresses.first().map_or("", String::as_str)),
        ]);
    }
    out(&t.render())?;
    if !all.next_page_token.is_empty() {
        eprintln!("sandboxctl: more sandboxes match; use --all-pages to list them all");
    }
    Ok(0)
}

/// `-` for an empty cell, so columns stay readable.
fn dash(s: &str) -> String {
    if s.is_empty() {
        "-".into()
    } else {
        s.to_owned()
    }
}

/// GetSandbox.
pub(super) async fn inspect(ctx: &Ctx, args: IdArg) -> Result<i32, CliError> {
    let mut client = SandboxServiceClient::new(ctx.channel().await?);
    let sandbox = required(
        client
            .get_sandbox(GetSandboxRequest { id: args.id })
            .await?
            .into_inner()
            .sandbox,
        "GetSandbox",
    )?;
    if ctx.json {
        print_json(&json::sandbox(&sandbox))?;
    } else {
        out(&render_inspect(&sandbox, format::now_ms()))?;
    }
    Ok(0)
}

/// A requirement for the human view: what the proto says UNSPECIFIED means
/// in that place.
fn req(value: i32, unspecified: &str) -> String {
    if value == Requirement::Unspecified as i32 {
        return unspecified.to_owned();
    }
    enum_name::<Requirement>(value).map_or_else(|| value.to_string(), str::to_owned)
}

/// The network lines of the inspect block: the policy asked for, then what
/// the sandbox got (`leased` is `Sandbox.addresses`).
fn network_rows(t: &mut Table, policy: Option<&NetworkPolicy>, leased: &[String]) {
    let network = match policy {
        None => "(backend default)".to_owned(),
        // Resolver settings alone: no mode, so nothing is required of it.
        Some(n)
            if n.mode == NetworkMode::Unspecified as i32
                && n.requirement == Requirement::Unspecified as i32
                && n.addresses.is_empty() =>
        {
            "(backend default)".to_owned()
        }
        Some(n) => {
            let mode = if n.mode == NetworkMode::Unspecified as i32 {
                "(backend default)".to_owned()
            } else {
                enum_name::<NetworkMode>(n.mode)
                    .map_or_else(|| n.mode.to_string(), str::to_ascii_lowercase)
            };
            let mut s = format!("{mode} {}", req(n.requirement, "REQUIRED"));
            if !n.addresses.is_empty() {
                s.push_str(&format!(" addresses {}", n.addresses.join(",")));
            }
            s
        }
    };
    t.row(["Network:".into(), network]);
    if !leased.is_empty() {
        t.row(["Addresses:".into(), leased.join(" ")]);
    }
    let Some(n) = policy else {
        return;
    };
    if n.mode == NetworkMode::Restricted as i32 || n.outbound_nat {
        t.row(["NAT:", if n.outbound_nat { "yes" } else { "no" }]);
    }
    if !n.port_forwards.is_empty() {
        let ports: Vec<String> = n.port_forwards.iter().map(format::port_forward).collect();
        t.row(["Ports:".into(), ports.join(", ")]);
    }
    if !n.dns_servers.is_empty() {
        t.row(["DNS:".into(), n.dns_servers.join(" ")]);
    }
    if !n.dns_search.is_empty() {
        t.row(["DNS search:".into(), n.dns_search.join(" ")]);
    }
}

/// The spec's lines of the inspect block (`leased`: the sandbox's addresses).
fn spec_rows(t: &mut Table, spec: &SandboxSpec, leased: &[String]) {
    t.row(["Image:".into(), dash(&spec.image)]);
    t.row(["Mode:".into(), format::mode(spec.mode)]);
    if let Some(p) = &spec.process {
        t.row([
            "Command:".into(),
            if p.argv.is_empty() {
                "(default)".into()
            } else {
                p.argv.join(" ")
            },
        ]);
        t.row([
            "Env:".into(),
            if p.env.is_empty() {
                "-".into()
            } else {
                p.env.join(" ")
            },
        ]);
        t.row([
            "Cwd:".into(),
            if p.cwd.is_empty() {
                "/".into()
            } else {
                p.cwd.clone()
            },
        ]);
        let user = match &p.user {
            None => "default (65534:65534)".to_owned(),
            Some(u) => {
                let id = |v: Option<u32>| v.map_or_else(|| "65534".to_owned(), |v| v.to_string());
                let mut s = format!("{}:{}", id(u.uid), id(u.gid));
                if !u.additional_gids.is_empty() {
                    let gids: Vec<String> = u.additional_gids.iter().map(u32::to_string).collect();
                    s.push_str(&format!(" groups {}", gids.join(",")));
                }
                s
            }
        };
        t.row(["User:".into(), user]);
        t.row(["TTY:", if p.tty { "yes" } else { "no" }]);
    }
    t.row([
        "Hostname:".into(),
        if spec.hostname.is_empty() {
            "(backend default)".into()
        } else {
            spec.hostname.clone()
        },
    ]);
    t.row([
        "Read-only root:",
        if spec.readonly_rootfs { "yes" } else { "no" },
    ]);
    network_rows(t, spec.network.as_ref(), leased);
    if let Some(l) = &spec.limits {
        let mut parts = Vec::new();
        let mut add =
            |name: &str, limit: &Option<sandboxd_proto::v1::Limit>, show: fn(u64) -> String| {
                if let Some(l) = limit {
                    parts.push(format!(
                        "{name}={} ({})",
                        show(l.value),
                        req(l.requirement, "REQUIRED")
                    ));
                }
            };
        add("memory", &l.memory_bytes, format::size);
        add("pids", &l.pids, |v| v.to_string());
        add("cpus", &l.cpu_millis, format::cpus);
        add("cpu-weight", &l.cpu_weight, |v| v.to_string());
        add("nofile", &l.open_files, |v| v.to_string());
        add("address-space", &l.address_space_bytes, format::size);
        add("disk", &l.disk_bytes, format::size);
        for (name, bytes) in [("tmp", l.tmp_bytes), ("shm", l.shm_bytes)] {
            if bytes != 0 {
                parts.push(format!("{name}={}", format::size(bytes)));
            }
        }
        t.row([
            "Limits:".into(),
            if parts.is_empty() {
                "-".into()
            } else {
                parts.join(", ")
            },
        ]);
    }
    if let Some(i) = &spec.isolation {
        let asked = [
            ("filesystem", i.filesystem),
            ("pid", i.pid),
            ("hostname", i.hostname),
            ("ipc", i.ipc),
            ("user", i.user),
            ("cgroup", i.cgroup),
        ];
        let parts: Vec<String> = asked
            .iter()
            .filter(|(_, v)| *v != 0)
            .map(|(n, v)| format!("{n}={}", req(*v, "-")))
            .collect();
        t.row([
            "Isolation asked:".into(),
            if parts.is_empty() {
                "(backend defaults)".into()
            } else {
                parts.join(" ")
            },
        ]);
    }
    for (i, m) in spec.mounts.iter().enumerate() {
        let label = if i == 0 { "Mounts:" } else { "" };
        t.row([
            label.into(),
            format!(
                "{} -> {}{}",
                m.source,
                m.target,
                if m.read_only { " (ro)" } else { "" }
            ),
        ]);
    }
    let mut labels: Vec<_> = spec.labels.iter().collect();
    labels.sort();
    for (i, (k, v)) in labels.iter().enumerate() {
        t.row([
            if i == 0 { "Labels:" } else { "" }.into(),
            format!("{k}={v}"),
        ]);
    }
    t.row([
        "Stop signal:".into(),
        if spec.stop_signal == 0 {
            "15 (default)".into()
        } else {
            spec.stop_signal.to_string()
        },
    ]);
}

/// The human block for `inspect`.
fn render_inspect(s: &Sandbox, now: i64) -> String {
    let mut t = Table::headless();
    t.row(["ID:", s.id.as_str()]);
    t.row(["Name:".into(), dash(&s.name)]);
    t.row(["Owner:".into(), dash(&s.owner)]);
    t.row(["State:".into(), format::state(s.state)]);
    if let Some(u) = &s.usage {
        let show = |v: Option<u64>| v.map_or_else(|| format::UNKNOWN.to_owned(), |v| v.to_string());
        t.row(["CPU time:".into(), format::cpu_time(u.cpu_usec)]);
        t.row(["Memory (bytes):".into(), show(u.memory_bytes)]);
        t.row(["Tasks:".into(), show(u.pids)]);
        t.row(["Block I/O:".into(), format::block_io(u)]);
    }
    t.row([
        "Created:".into(),
        format!(
            "{} ({})",
            format::rfc3339(s.created_at_ms),
            format::relative(s.created_at_ms, now)
        ),
    ]);
    let pid = |p: i64| {
        if p == 0 {
            "-".to_owned()
        } else {
            p.to_string()
        }
    };
    t.row(["Main pid:".into(), pid(s.main_pid)]);
    t.row(["Supervisor pid:".into(), pid(s.supervisor_pid)]);
    t.row([
        "Exit:".into(),
        s.exit
            .as_ref()
            .map_or_else(|| "-".to_owned(), format::exit_long),
    ]);
    match &s.spec {
        Some(spec) => spec_rows(&mut t, spec, &s.addresses),
        // A daemon always sends the spec; if one did not, the leases
        // still show, without claims about a policy nobody saw.
        None if !s.addresses.is_empty() => t.row(["Addresses:".into(), s.addresses.join(" ")]),
        None => {}
    }
    let mut text = t.render();
    if let Some(report) = &s.isolation {
        let backend = enum_name::<sandboxd_proto::v1::BackendKind>(report.backend)
            .map_or_else(|| report.backend.to_string(), str::to_owned);
        text.push_str(&format!(
            "\nIsolation ({backend}):\n{}",
            report_table(report)
        ));
    }
    text
}

/// StopSandbox for each id; keeps going past failures and exits 1 if any.
pub(super) async fn stop(ctx: &Ctx, args: StopArgs) -> Result<i32, CliError> {
    let signal = match &args.signal {
        Some(s) => {
            parse_signal(s).map_err(|reason| CliError::Usage(format!("--signal {s}: {reason}")))?
        }
        None => 0,
    };
    let mut client = SandboxServiceClient::new(ctx.channel().await?);
    let mut report = PerId::new(ctx);
    for id in &args.ids {
        let req = StopSandboxRequest {
            id: id.clone(),
            grace_seconds: args.grace.unwrap_or(0),
            signal,
        };
        match client.stop_sandbox(req).await {
            Ok(resp) => {
                let sandbox = required(resp.into_inner().sandbox, "StopSandbox")?;
                report.ok(
                    || json::sandbox(&sandbox),
                    || {
                        format!(
                            "{}: {} {}",
                            sandbox.id,
                            format::state(sandbox.state),
                            format::exit_short(sandbox.exit.as_ref())
                        )
                    },
                )?;
            }
            Err(status) => report.failed(id, status),
        }
    }
    report.finish()
}

/// DestroySandbox for each id; says whether each existed. Unknown ids are
/// not an error (destroy is idempotent), other failures make it exit 1.
pub(super) async fn rm(ctx: &Ctx, args: RmArgs) -> Result<i32, CliError> {
    // `force` changes nothing: DestroySandbox always kills what runs.
    let _ = args.force;
    let mut client = SandboxServiceClient::new(ctx.channel().await?);
    let mut report = PerId::new(ctx);
    for id in &args.ids {
        match client
            .destroy_sandbox(DestroySandboxRequest { id: id.clone() })
            .await
        {
            Ok(resp) => {
                let existed = resp.into_inner().existed;
                report.ok(
                    || json::destroyed(id, existed),
                    || {
                        format!(
                            "{id}: {}",
                            if existed { "removed" } else { "did not exist" }
                        )
                    },
                )?;
            }
            Err(status) => report.failed(id, status),
        }
    }
    report.finish()
}

/// Output of a command run on several ids: a JSON line or a text line as
/// each id completes. A failed id goes to stderr (as JSON with --json) and
/// makes the exit code 1 without stopping the others.
struct PerId {
    json: bool,
    code: i32,
}

impl PerId {
    fn new(ctx: &Ctx) -> Self {
        Self {
            json: ctx.json,
            code: 0,
        }
    }

    fn ok(
        &mut self,
        doc: impl FnOnce() -> Value,
        line: impl FnOnce() -> String,
    ) -> Result<(), CliError> {
        if self.json {
            print_json(&doc())
        } else {
            out(&format!("{}\n", line()))
        }
    }

    fn failed(&mut self, id: &str, status: tonic::Status) {
        let err = CliError::Rpc(status);
        if self.json {
            eprintln!("{}", err.to_json(Some(id)));
        } else {
            eprintln!("sandboxctl: {id}: {err}");
        }
        self.code = EXIT_FAILURE;
    }

    fn finish(self) -> Result<i32, CliError> {
        Ok(self.code)
    }
}

/// WaitSandbox; exits with the sandbox's exit code.
pub(super) async fn wait(ctx: &Ctx, args: IdArg) -> Result<i32, CliError> {
    let mut client = SandboxServiceClient::new(ctx.channel().await?);
    let resp = client
        .wait_sandbox(WaitSandboxRequest { id: args.id })
        .await?
        .into_inner();
    let exit = resp
        .exit
        .clone()
        .ok_or_else(|| CliError::Protocol("WaitSandbox returned no exit result".into()))?;
    if ctx.json {
        print_json(&json::wait(&resp))?;
    } else {
        out(&format!("{}\n", format::exit_long(&exit)))?;
    }
    Ok(exit_code(&exit))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sandboxd_proto::v1::{
        ExitReason, ExitResult, Limit, Limits, Mount, PortForward, Protocol, SandboxState,
    };
    use std::collections::HashMap;

    #[test]
    fn inspect_block() {
        let s = Sandbox {
            id: "0123456789abcdef".into(),
            name: "web".into(),
            spec: Some(SandboxSpec {
                image: "host".into(),
                mode: 3,
                network: Some(NetworkPolicy {
                    mode: NetworkMode::Restricted as i32,
                    requirement: 2,
                    addresses: vec!["192.0.2.1".into()],
                    ..NetworkPolicy::default()
                }),
                limits: Some(Limits {
                    memory_bytes: Some(Limit {
                        value: 64 << 20,
                        requirement: 0,
                    }),
                    ..Default::default()
                }),
                mounts: vec![Mount {
                    source: "/srv".into(),
                    target: "/data".into(),
                    read_only: true,
                }],
                labels: HashMap::from([("app".into(), "web".into())]),
                ..Default::default()
            }),
            state: SandboxState::ExitedState as i32,
            exit: Some(ExitResult {
                reason: ExitReason::Exited as i32,
                exit_code: 3,
                ..Default::default()
            }),
            created_at_ms: 1_714_566_896_789,
            owner: "local".into(),
            usage: None,
            ..Default::default()
        };
        let text = render_inspect(&s, 1_714_566_896_789 + 120_000);
        for want in [
            "ID:              0123456789abcdef\n",
            "State:           exited\n",
            "Created:         2024-05-01T12:34:56Z (2 minutes ago)\n",
            "Main pid:        -\n",
            "Exit:            EXITED exit_code=3\n",
            "Mode:            idle\n",
            "Network:         restricted PREFERRED addresses 192.0.2.1\n",
            "Limits:          memory=64M (REQUIRED)\n",
            "Mounts:          /srv -> /data (ro)\n",
            "Labels:          app=web\n",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
    }

    /// The network lines of the inspect block, for one policy and lease.
    fn network_lines(policy: Option<NetworkPolicy>, leased: &[&str]) -> String {
        let s = Sandbox {
            spec: Some(SandboxSpec {
                network: policy,
                ..Default::default()
            }),
            addresses: leased.iter().map(|a| (*a).to_owned()).collect(),
            ..Default::default()
        };
        let text = render_inspect(&s, 0);
        // From the Network line up to the line after the network rows.
        let start = text.find("Network:").unwrap_or(0);
        let end = text.find("Stop signal:").unwrap_or(text.len());
        text[start..end].to_owned()
    }

    #[test]
    fn inspect_network_rows() {
        let restricted = NetworkPolicy {
            mode: NetworkMode::Restricted as i32,
            ..NetworkPolicy::default()
        };
        let cases: Vec<(Option<NetworkPolicy>, &[&str], &str)> = vec![
            (None, &[], "Network:         (backend default)\n"),
            (
                Some(NetworkPolicy {
                    mode: NetworkMode::Loopback as i32,
                    ..NetworkPolicy::default()
                }),
                &[],
                "Network:         loopback REQUIRED\n",
            ),
            // Leased from the pool: the spec names no address, the sandbox does.
            (
                Some(restricted.clone()),
                &["203.0.113.2"],
                "Network:         restricted REQUIRED\n\
                 Addresses:       203.0.113.2\n\
                 NAT:             no\n",
            ),
            (
                Some(NetworkPolicy {
                    addresses: vec!["203.0.113.2".into()],
                    outbound_nat: true,
                    port_forwards: vec![
                        PortForward {
                            protocol: Protocol::Tcp as i32,
                            host_port: 8080,
                            sandbox_port: 80,
                        },
                        PortForward {
                            protocol: Protocol::Udp as i32,
                            host_port: 5353,
                            sandbox_port: 53,
                        },
                    ],
                    dns_servers: vec!["192.0.2.53".into(), "2001:db8::53".into()],
                    dns_search: vec!["example.com".into()],
                    ..restricted.clone()
                }),
                &["203.0.113.2", "2001:db8::2"],
                "Network:         restricted REQUIRED addresses 203.0.113.2\n\
                 Addresses:       203.0.113.2 2001:db8::2\n\
                 NAT:             yes\n\
                 Ports:           8080->80/tcp, 5353->53/udp\n\
                 DNS:             192.0.2.53 2001:db8::53\n\
                 DNS search:      example.com\n",
            ),
            // Resolver settings alone: the backend's mode.
            (
                Some(NetworkPolicy {
                    dns_servers: vec!["192.0.2.53".into()],
                    ..NetworkPolicy::default()
                }),
                &[],
                "Network:         (backend default)\n\
                 DNS:             192.0.2.53\n",
            ),
        ];
        for (policy, leased, want) in cases {
            assert_eq!(network_lines(policy.clone(), leased), want, "{policy:?}");
        }
        let no_spec = Sandbox {
            addresses: vec!["203.0.113.2".into()],
            ..Default::default()
        };
        let text = render_inspect(&no_spec, 0);
        assert!(
            text.contains("Addresses:       203.0.113.2\n") && !text.contains("Network:"),
            "{text}"
        );
    }
}
