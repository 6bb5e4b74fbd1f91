//! `sandboxctl run` and `sandboxctl exec`: attached processes.

use sandboxd_proto::v1::{
    CreateSandboxRequest, CreateSandboxResponse, DestroySandboxRequest,
    sandbox_service_client::SandboxServiceClient,
};
use tonic::transport::Channel;

use super::{Ctx, required, warn_degraded};
use crate::cli::{ExecArgs, RunArgs};
use crate::error::CliError;
use crate::spec_flags::local_env;
use crate::stream::{self, Attach, Create, Ended, exit_code, report_abnormal};

/// 128 + SIGINT: what a shell reports for a command interrupted by Ctrl-C.
const EXIT_INTERRUPTED: i32 = 130;

/// Create an idle (or init) sandbox, exec the command attached, destroy the
/// sandbox unless `--rm=false`, and exit with the command's code. Every
/// error is sandboxctl's or the daemon's, which `main` maps to 125.
///
/// One call does it all: an `Exec` stream whose start asks the daemon to
/// create the sandbox (and, with `--rm`, to destroy it when the stream
/// ends, even if sandboxctl dies), on one connection.
pub(super) async fn run(ctx: &Ctx, args: RunArgs) -> Result<i32, CliError> {
    let spec = args.spec.run_spec()?;
    let process = args
        .spec
        .process
        .to_process(Vec::new(), args.tty, &local_env)?;
    let mut attach = Attach {
        sandbox_id: String::new(),
        process,
        interactive: args.interactive,
        create: None,
    };
    // Refuse `-it` without a terminal before creating anything.
    stream::preflight(&attach)?;
    let entrypoint = args.entrypoint.map(|e| match e.as_str() {
        "" => Vec::new(),
        _ => vec![e],
    });
    attach.process.argv = if sandboxd_core::oci::is_reference(&spec.image) {
        let run = super::image::ensure_run_config(ctx, &spec.image, args.pull).await?;
        sandboxd_core::oci::run_command(Some(&run), entrypoint.as_deref(), &args.argv)
            .map_err(|e| CliError::Usage(format!("--image {}: {e}", spec.image)))?
    } else {
        // A directory image has no config: the command is the arguments.
        sandboxd_core::oci::run_command(None, entrypoint.as_deref(), &args.argv).map_err(|_| {
            CliError::Usage(
                "no command: give it after -- (a directory image has no Entrypoint or Cmd)".into(),
            )
        })?
    };
    attach.create = Some(Create {
        request: CreateSandboxRequest {
            spec: Some(spec),
            request_id: String::new(),
            verify: args.verify,
        },
        remove: args.rm,
        on_created: report_created,
    });
    let channel = ctx.channel().await?;
    match stream::attach(channel.clone(), attach).await? {
        Ended::Exited(exit) => {
            report_abnormal(&exit);
            Ok(exit_code(&exit))
        }
        // Ctrl-C during the create must not leave a sandbox behind: the
        // create was let finish (the daemon completes it anyway), then it
        // is undone here (also with --rm=false), before exiting.
        Ended::Interrupted(id, signal) => {
            destroy(&channel, &id).await;
            Ok(if signal == 2 {
                EXIT_INTERRUPTED
            } else {
                128 + signal
            })
        }
    }
}

/// What `run` says about the sandbox it created, on stderr (stdout belongs
/// to the process): the verification table with `--verify`, degraded
/// properties. Returns the sandbox's id.
fn report_created(created: &CreateSandboxResponse) -> Result<String, CliError> {
    if let Some(v) = &created.verification {
        eprint!("{}", super::verify::render(v, false));
    }
    let sandbox = required(created.sandbox.as_ref(), "CreateSandbox")?;
    warn_degraded(sandbox);
    Ok(sandbox.id.clone())
}

/// Destroys a sandbox `run` created; a failure is a warning, because the
/// process's own result is what `run` reports.
async fn destroy(channel: &Channel, id: &str) {
    let mut client = SandboxServiceClient::new(channel.clone());
    if let Err(status) = client
        .destroy_sandbox(DestroySandboxRequest { id: id.to_owned() })
        .await
    {
        eprintln!(
            "sandboxctl: warning: could not remove sandbox {id}: {}",
            CliError::Rpc(status)
        );
    }
}

/// Exec into an existing sandbox, attached; exit with the command's code.
pub(super) async fn exec(ctx: &Ctx, args: ExecArgs) -> Result<i32, CliError> {
    let process = args.process.to_process(args.argv, args.tty, &local_env)?;
    if args.detach {
        return super::execs::start_detached(ctx, args.id, process).await;
    }
    let attach = Attach {
        sandbox_id: args.id,
        process,
        interactive: args.interactive,
        create: None,
    };
    stream::preflight(&attach)?;
    match stream::attach(ctx.channel().await?, attach).await? {
        Ended::Exited(exit) => {
            report_abnormal(&exit);
            Ok(exit_code(&exit))
        }
        Ended::Interrupted(..) => Err(CliError::Protocol(
            "the daemon created a sandbox this exec did not ask for".into(),
        )),
    }
}
