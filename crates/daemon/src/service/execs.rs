//! ExecService: execs by id (detached start, inspect, wait, signal, list).

use sandboxd_core::wire::SignalTarget;
use sandboxd_proto::v1 as pb;
use tonic::{Request, Response, Status};

use super::Shared;
use super::process::{start_exec, without_terminal};
use crate::convert;
use crate::error::ApiError;
use crate::manager::{ExecRecord, ExecStart, ExecStdio};

/// The ExecService implementation.
#[derive(Debug)]
pub struct Execs(pub Shared);

fn info(sandbox_id: &str, r: &ExecRecord) -> pb::ExecInfo {
    pb::ExecInfo {
        exec_id: r.exec_id,
        sandbox_id: sandbox_id.to_owned(),
        pid: i64::from(r.pid),
        running: r.exit.is_none(),
        exit: r.exit.as_ref().map(convert::exit_to_pb),
        started_at_ms: r.started_at_ms,
        finished_at_ms: r.exit.as_ref().map_or(0, |e| e.finished_at_ms),
        argv: r.argv.clone(),
        tty: r.tty,
        detached: r.detached,
    }
}

fn unknown(sandbox: &str, exec_id: u64) -> ApiError {
    ApiError::NotFound(format!(
        "exec {exec_id} of sandbox {sandbox} (no such exec, or its record was forgotten: at most {} finished ones are kept)",
        crate::manager::MAX_EXEC_RECORDS
    ))
}

#[tonic::async_trait]
impl pb::exec_service_server::ExecService for Execs {
    async fn start_exec(
        &self,
        req: Request<pb::StartExecRequest>,
    ) -> Result<Response<pb::ExecInfo>, Status> {
        let who = self.0.caller(&req)?;
        let req = req.into_inner();
        let manager = self.0.manager.clone();
        let sb = manager.get_for(&req.sandbox_id, &who)?;
        tracing::info!(audit = true, identity = %who.name, op = "StartExec", sandbox = %sb.id);
        let (process, image_cwd) =
            super::image::exec_process(&self.0.images, &sb, req.process).await?;
        let process = without_terminal(process, manager.policy(), "a detached exec")?;
        // Held until the process exits, by the task below.
        let slot = self.0.execs.take(&sb.id, &who.name)?;
        let start = ExecStart {
            size: None,
            detached: true,
            image_cwd,
        };
        let handle = start_exec(&manager, &sb, process, start).await?;
        debug_assert!(matches!(handle.stdio, ExecStdio::Detached));
        let record = sb
            .exec_record(handle.exec_id)
            .ok_or_else(|| ApiError::Internal("the exec's record is missing".into()))?;
        let (exec_id, pid, exited) = (handle.exec_id, handle.pid, handle.exited);
        let sandbox = sb.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let end = exited.await.unwrap_or((
                sandboxd_core::wire::ProcessExit::Signaled(libc::SIGKILL),
                false,
            ));
            manager.exec_finished(&sandbox, (exec_id, pid), end, false);
        });
        Ok(Response::new(info(&sb.id, &record)))
    }

    async fn inspect_exec(
        &self,
        req: Request<pb::ExecRef>,
    ) -> Result<Response<pb::ExecInfo>, Status> {
        let who = self.0.caller(&req)?;
        let req = req.into_inner();
        let sb = self.0.manager.get_for(&req.sandbox_id, &who)?;
        let record = sb
            .exec_record(req.exec_id)
            .ok_or_else(|| unknown(&sb.id, req.exec_id))?;
        Ok(Response::new(info(&sb.id, &record)))
    }

    async fn wait_exec(&self, req: Request<pb::ExecRef>) -> Result<Response<pb::ExecInfo>, Status> {
        let who = self.0.caller(&req)?;
        let req = req.into_inner();
        let sb = self.0.manager.get_for(&req.sandbox_id, &who)?;
        let record = tokio::select! {
            r = sb.wait_exec(req.exec_id) => r.ok_or_else(|| unknown(&sb.id, req.exec_id))?,
            () = self.0.shutting_down() => {
                return Err(ApiError::Unavailable("the daemon is shutting down".into()).into());
            }
        };
        Ok(Response::new(info(&sb.id, &record)))
    }

    async fn signal_exec(
        &self,
        req: Request<pb::SignalExecRequest>,
    ) -> Result<Response<pb::SignalExecResponse>, Status> {
        let who = self.0.caller(&req)?;
        let req = req.into_inner();
        let sb = self.0.manager.get_for(&req.sandbox_id, &who)?;
        tracing::info!(audit = true, identity = %who.name, op = "SignalExec", sandbox = %sb.id, exec_id = req.exec_id, signal = req.signal);
        let record = sb
            .exec_record(req.exec_id)
            .ok_or_else(|| unknown(&sb.id, req.exec_id))?;
        if let Some(exit) = &record.exit {
            return Err(ApiError::FailedPrecondition(format!(
                "exec {} of sandbox {} has already ended (exit code {})",
                req.exec_id, sb.id, exit.code
            ))
            .into());
        }
        let target = if req.group {
            SignalTarget::ExecTree(req.exec_id)
        } else {
            SignalTarget::Pid(record.pid)
        };
        self.0.manager.signal(&sb, target, req.signal).await?;
        Ok(Response::new(pb::SignalExecResponse {}))
    }

    async fn list_execs(
        &self,
        req: Request<pb::ListExecsRequest>,
    ) -> Result<Response<pb::ListExecsResponse>, Status> {
        let who = self.0.caller(&req)?;
        let req = req.into_inner();
        let sb = self.0.manager.get_for(&req.sandbox_id, &who)?;
        let execs = sb.exec_records().iter().map(|r| info(&sb.id, r)).collect();
        Ok(Response::new(pb::ListExecsResponse { execs }))
    }
}
