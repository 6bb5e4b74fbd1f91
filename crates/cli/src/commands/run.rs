//! `sandboxctl run` and `sandboxctl exec`: attached processes.

use sandboxd_proto::v1::{
    CreateSandboxRequest, DestroySandboxRequest, sandbox_service_client::SandboxServiceClient,
};
use tokio::signal::unix::{SignalKind, signal};
use tonic::transport::Channel;

use super::{Ctx, required, warn_degraded};
use crate::cli::{ExecArgs, RunArgs};
use crate::error::CliError;
use crate::spec_flags::local_env;
use crate::stream::{self, Attach, exit_code, report_abnormal};

/// 128 + SIGINT: what a shell reports for a command interrupted by Ctrl-C.
const EXIT_INTERRUPTED: i32 = 130;

/// Create an idle (or init) sandbox, exec the command attached, destroy the
/// sandbox unless `--rm=false`, and exit with the command's code. Every
/// error is sandboxctl's or the daemon's, which `main` maps to 125.
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
    };
    // Refuse `-it` without a terminal before creating anything.
    stream::preflight(&attach)?;
    let entrypoint = args.entrypoint.map(|e| match e.as_str() {
        "" => Vec::new(),
        _ => vec![e],
    });
    // A directory image has no config: the command is the arguments.
    if !sandboxd_core::oci::is_reference(&spec.image) {
        attach.process.argv =
            sandboxd_core::oci::run_command(None, entrypoint.as_deref(), &args.argv).map_err(
                |_| {
                    CliError::Usage(
                        "no command: give it after -- (a directory image has no Entrypoint or Cmd)"
                            .into(),
                    )
                },
            )?;
    }

    super::image::ensure(ctx, &spec.image, args.pull).await?;
    if sandboxd_core::oci::is_reference(&spec.image) {
        let run = super::image::run_config(ctx, &spec.image).await?;
        attach.process.argv =
            sandboxd_core::oci::run_command(Some(&run), entrypoint.as_deref(), &args.argv)
                .map_err(|e| CliError::Usage(format!("--image {}: {e}", spec.image)))?;
    }
    let channel = ctx.channel().await?;
    let mut client = SandboxServiceClient::new(channel.clone());

    // Ctrl-C during the create must not leave a sandbox behind: the create
    // is let finish (the daemon would complete it anyway), then undone.
    let mut sigint = signal(SignalKind::interrupt())
        .map_err(|e| CliError::Io("installing a signal handler", e))?;
    let create = client.create_sandbox(CreateSandboxRequest {
        spec: Some(spec),
        request_id: String::new(),
        verify: args.verify,
    });
    tokio::pin!(create);
    let mut interrupted = false;
    let created = loop {
        tokio::select! {
            r = &mut create => break r,
            _ = sigint.recv(), if !interrupted => interrupted = true,
        }
    };
    drop(sigint);
    let created = created?.into_inner();
    if let Some(v) = &created.verification {
        // stdout belongs to the process.
        eprint!("{}", super::verify::render(v, false));
    }
    let sandbox = required(created.sandbox, "CreateSandbox")?;
    warn_degraded(&sandbox);
    if interrupted {
        destroy(&channel, &sandbox.id).await;
        return Ok(EXIT_INTERRUPTED);
    }

    attach.sandbox_id = sandbox.id.clone();
    let result = stream::attach(channel.clone(), attach).await;
    if args.rm {
        destroy(&channel, &sandbox.id).await;
    }
    let exit = result?;
    report_abnormal(&exit);
    Ok(exit_code(&exit))
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
    };
    stream::preflight(&attach)?;
    let exit = stream::attach(ctx.channel().await?, attach).await?;
    report_abnormal(&exit);
    Ok(exit_code(&exit))
}
