//! The subcommands, one module per group, and the output helpers they share.

mod caps;
mod events;
mod execs;
mod image;
mod lifecycle;
mod logs;
mod ops;
mod plan;
mod run;
mod verify;

use std::io::Write;

use sandboxd_proto::v1::{
    EnforcementLevel, IsolationProperty, IsolationReport, PropertyEnforcement, Requirement, Sandbox,
};
use serde_json::Value;
use tonic::transport::Channel;

use crate::cli::{Cli, Command};
use crate::connect::connect;
use crate::error::CliError;
use crate::json::enum_name;
use crate::table::Table;

/// What every command needs from the global flags.
#[derive(Debug)]
pub(crate) struct Ctx {
    /// `--host`.
    pub(crate) host: String,
    /// TLS files for tcp://.
    pub(crate) tls: crate::cli::TlsArgs,
    /// `--json`.
    pub(crate) json: bool,
    /// The connection, made on first use and shared by every call of the
    /// command (one HTTP/2 connection, its calls multiplexed on it).
    pub(crate) channel: tokio::sync::OnceCell<Channel>,
}

impl Ctx {
    /// The connection to the daemon (connected on first use).
    pub(crate) async fn channel(&self) -> Result<Channel, CliError> {
        self.channel
            .get_or_try_init(|| connect(&self.host, &self.tls))
            .await
            .cloned()
    }
}

/// Runs the command and returns the exit code for success paths (a process's
/// code for run/exec/wait, 1 when some of several ids failed).
pub(crate) async fn dispatch(cli: Cli) -> Result<i32, CliError> {
    if let Some(text) = &cli.format {
        let template = crate::template::Template::parse(text)
            .map_err(|e| CliError::Usage(format!("--format: {e}")))?;
        let _ = TEMPLATE.set(template);
        crate::json::with_defaults();
    }
    let ctx = Ctx {
        host: cli.host,
        tls: cli.tls,
        // A template renders the JSON documents.
        json: cli.json || cli.format.is_some(),
        channel: tokio::sync::OnceCell::new(),
    };
    match cli.command {
        Command::Caps => caps::caps(&ctx).await,
        Command::Plan(a) => plan::plan(&ctx, a).await,
        Command::Create(a) => lifecycle::create(&ctx, a).await,
        Command::Run(a) => run::run(&ctx, a).await,
        Command::Exec(a) => run::exec(&ctx, a).await,
        Command::Ls(a) => lifecycle::ls(&ctx, a).await,
        Command::Inspect(a) => lifecycle::inspect(&ctx, a).await,
        Command::Stop(a) => lifecycle::stop(&ctx, a).await,
        Command::Rm(a) => lifecycle::rm(&ctx, a).await,
        Command::Wait(a) => lifecycle::wait(&ctx, a).await,
        Command::Events(a) => events::events(&ctx, a).await,
        Command::Logs(a) => logs::logs(&ctx, a).await,
        Command::Execs(a) => execs::list(&ctx, a).await,
        Command::ExecInspect(a) => execs::inspect(&ctx, a).await,
        Command::ExecWait(a) => execs::wait(&ctx, a).await,
        Command::ExecKill(a) => execs::kill(&ctx, a).await,
        Command::Verify(a) => verify::verify(&ctx, a).await,
        Command::Compare(a) => verify::compare(&ctx, a).await,
        Command::Stats(a) => ops::stats(&ctx, a).await,
        Command::Completion(a) => ops::completion(&a),
        Command::Pull(a) => image::pull(&ctx, a).await,
        Command::Images => image::images(&ctx).await,
        Command::Rmi(a) => image::rmi(&ctx, a).await,
        Command::Image(c) => image::image(&ctx, c).await,
    }
}

/// Writes to stdout and flushes; a reader that went away is reported as
/// [`CliError::BrokenPipe`].
pub(crate) fn out(text: &str) -> Result<(), CliError> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(CliError::stdout)
}

/// `--format`'s template, once parsed.
static TEMPLATE: std::sync::OnceLock<crate::template::Template> = std::sync::OnceLock::new();

/// One document on stdout, on one line: compact JSON (JSON lines), or
/// rendered through `--format`'s template.
pub(crate) fn print_json(v: &Value) -> Result<(), CliError> {
    match TEMPLATE.get() {
        Some(t) => out(&format!("{}\n", t.render(v))),
        None => out(&format!("{v}\n")),
    }
}

/// An enum's proto name for a table cell; `-` for UNSPECIFIED (nothing asked
/// or nothing said) and the number for values this build does not know.
pub(crate) fn cell<E: crate::json::ProtoEnum>(value: i32) -> String {
    if value == 0 {
        return "-".into();
    }
    enum_name::<E>(value).map_or_else(|| value.to_string(), str::to_owned)
}

/// The capability matrix as a table.
pub(crate) fn matrix_table(rows: &[PropertyEnforcement]) -> String {
    let mut t = Table::new(&["PROPERTY", "LEVEL", "MECHANISM", "CAVEATS"]);
    for p in rows {
        t.row([
            cell::<IsolationProperty>(p.property),
            cell::<EnforcementLevel>(p.level),
            p.mechanism.clone(),
            p.caveats.clone(),
        ]);
    }
    t.render()
}

/// An effective isolation report as a table (what was asked, what was got).
pub(crate) fn report_table(r: &IsolationReport) -> String {
    let mut t = Table::new(&[
        "PROPERTY",
        "REQUESTED",
        "LEVEL",
        "DEGRADED",
        "MECHANISM",
        "CAVEATS",
    ]);
    for p in &r.properties {
        t.row([
            cell::<IsolationProperty>(p.property),
            cell::<Requirement>(p.requested),
            cell::<EnforcementLevel>(p.level),
            if p.degraded {
                "yes".into()
            } else {
                String::new()
            },
            p.mechanism.clone(),
            p.caveats.clone(),
        ]);
    }
    t.render()
}

/// Warns on stderr about every PREFERRED property the sandbox did not fully
/// get: the create succeeded, but the user should not have to inspect to
/// learn that it is weaker than asked.
pub(crate) fn warn_degraded(sandbox: &Sandbox) {
    let Some(report) = &sandbox.isolation else {
        return;
    };
    for p in report.properties.iter().filter(|p| p.degraded) {
        let mut line = format!(
            "sandboxctl: warning: {} is degraded: {}",
            cell::<IsolationProperty>(p.property),
            cell::<EnforcementLevel>(p.level)
        );
        if !p.mechanism.is_empty() {
            line.push_str(&format!(" via {}", p.mechanism));
        }
        if !p.caveats.is_empty() {
            line.push_str(&format!(" ({})", p.caveats));
        }
        eprintln!("{line}");
    }
}

/// The sandbox in a response that must carry one.
pub(crate) fn required<T>(v: Option<T>, what: &str) -> Result<T, CliError> {
    v.ok_or_else(|| CliError::Protocol(format!("the daemon's {what} response has no sandbox")))
}
