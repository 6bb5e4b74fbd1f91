//! Execs by id (ExecService): `exec --detach`, `execs`, `exec-inspect`,
//! `exec-wait`, `exec-kill`.

use sandboxd_proto::v1::{
    ExecInfo, ExecRef, ListExecsRequest, ProcessSpec, SignalExecRequest, StartExecRequest,
    exec_service_client::ExecServiceClient,
};

use super::{Ctx, out, print_json};
use crate::cli::{ExecKillArgs, ExecRefArgs, IdArg};
use crate::error::CliError;
use crate::format;
use crate::table::Table;

async fn client(ctx: &Ctx) -> Result<ExecServiceClient<tonic::transport::Channel>, CliError> {
    Ok(ExecServiceClient::new(ctx.channel().await?))
}

fn show(ctx: &Ctx, e: &ExecInfo) -> Result<(), CliError> {
    if ctx.json {
        return print_json(&crate::json::exec_info(e));
    }
    let status = if e.running {
        "running".to_owned()
    } else {
        format::exit_short(e.exit.as_ref())
    };
    out(&format!(
        "exec:      {}\nsandbox:   {}\npid:       {}\nstatus:    {status}\nstarted:   {}\nfinished:  {}\nargv:      {}\ndetached:  {}\ntty:       {}\n",
        e.exec_id,
        e.sandbox_id,
        e.pid,
        format::rfc3339_millis(e.started_at_ms),
        format::rfc3339_millis(e.finished_at_ms),
        e.argv.join(" "),
        e.detached,
        e.tty,
    ))
}

/// `exec --detach`: starts the process and prints its exec id.
pub(super) async fn start_detached(
    ctx: &Ctx,
    sandbox_id: String,
    process: ProcessSpec,
) -> Result<i32, CliError> {
    let info = client(ctx)
        .await?
        .start_exec(StartExecRequest {
            sandbox_id,
            process: Some(process),
        })
        .await?
        .into_inner();
    if ctx.json {
        print_json(&crate::json::exec_info(&info))?;
    } else {
        out(&format!("{}\n", info.exec_id))?;
    }
    Ok(0)
}

/// `execs ID`.
pub(super) async fn list(ctx: &Ctx, args: IdArg) -> Result<i32, CliError> {
    let r = client(ctx)
        .await?
        .list_execs(ListExecsRequest {
            sandbox_id: args.id,
        })
        .await?
        .into_inner();
    if ctx.json {
        print_json(&crate::json::execs(&r))?;
        return Ok(0);
    }
    let mut t = Table::new(&["EXEC", "PID", "STATUS", "STARTED", "COMMAND"]);
    for e in &r.execs {
        t.row([
            e.exec_id.to_string(),
            e.pid.to_string(),
            if e.running {
                "running".into()
            } else {
                format::exit_short(e.exit.as_ref())
            },
            format::rfc3339(e.started_at_ms),
            e.argv.join(" "),
        ]);
    }
    out(&t.render())?;
    Ok(0)
}

fn exec_ref(a: ExecRefArgs) -> ExecRef {
    ExecRef {
        sandbox_id: a.id,
        exec_id: a.exec_id,
    }
}

/// `exec-inspect ID EXEC`.
pub(super) async fn inspect(ctx: &Ctx, args: ExecRefArgs) -> Result<i32, CliError> {
    let info = client(ctx)
        .await?
        .inspect_exec(exec_ref(args))
        .await?
        .into_inner();
    show(ctx, &info)?;
    Ok(0)
}

/// `exec-wait ID EXEC`: exits with the exec's code.
pub(super) async fn wait(ctx: &Ctx, args: ExecRefArgs) -> Result<i32, CliError> {
    let info = client(ctx)
        .await?
        .wait_exec(exec_ref(args))
        .await?
        .into_inner();
    show(ctx, &info)?;
    Ok(info.exit.as_ref().map_or(255, crate::stream::exit_code))
}

/// `exec-kill [-s SIG] [--group] ID EXEC`.
pub(super) async fn kill(ctx: &Ctx, args: ExecKillArgs) -> Result<i32, CliError> {
    let signal = crate::spec_flags::parse_signal(&args.signal)
        .map_err(|e| CliError::Usage(format!("--signal {}: {e}", args.signal)))?;
    let signal = i32::try_from(signal)
        .map_err(|_| CliError::Usage(format!("--signal {}: out of range", args.signal)))?;
    client(ctx)
        .await?
        .signal_exec(SignalExecRequest {
            sandbox_id: args.exec.id,
            exec_id: args.exec.exec_id,
            signal,
            group: args.group,
        })
        .await?;
    Ok(0)
}
