//! LogService: the main process's log (reading: `crate::logs`).

use std::pin::Pin;

use sandboxd_core::logs::{LogDir, Stream as LogStream};
use sandboxd_core::spec::Mode;
use sandboxd_core::validate::ValidationError;
use sandboxd_proto::v1 as pb;
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::Shared;
use crate::error::ApiError;
use crate::logs::Query;

/// Entries queued per call: with each at most 16 KiB, a slow client costs
/// the daemon at most this many of them.
const QUEUE: usize = 16;

/// The LogService implementation.
#[derive(Debug)]
pub struct Logs(pub Shared);

type LogStreamOut = Pin<Box<dyn Stream<Item = Result<pb::LogEntry, Status>> + Send>>;

#[tonic::async_trait]
impl pb::log_service_server::LogService for Logs {
    type LogsStream = LogStreamOut;

    async fn logs(&self, req: Request<pb::LogsRequest>) -> Result<Response<LogStreamOut>, Status> {
        let who = self.0.caller(&req)?;
        let req = req.into_inner();
        let (stdout, stderr) = match pb::LogStreams::try_from(req.streams) {
            Ok(pb::LogStreams::Unspecified | pb::LogStreams::Both) => (true, true),
            Ok(pb::LogStreams::Stdout) => (true, false),
            Ok(pb::LogStreams::Stderr) => (false, true),
            Err(_) => {
                return Err(ApiError::Invalid(ValidationError::one(
                    "streams",
                    format!("{} is not a LogStreams value", req.streams),
                ))
                .into());
            }
        };
        let since_ns = u64::try_from(req.since_unix_nanos).map_err(|_| {
            ApiError::Invalid(ValidationError::one(
                "since_unix_nanos",
                format!("{} is before the epoch", req.since_unix_nanos),
            ))
        })?;
        let sb = self.0.manager.get_for(&req.sandbox_id, &who)?;
        tracing::info!(audit = true, identity = %who.name, op = "Logs", sandbox = %sb.id, follow = req.follow);
        if sb.record().spec.mode == Mode::Idle {
            return Err(ApiError::FailedPrecondition(format!(
                "sandbox {} is IDLE: it has no main process, so no log (Exec output goes to the Exec stream)",
                sb.id
            ))
            .into());
        }
        let query = Query {
            follow: req.follow,
            tail: req.tail,
            since_ns,
            stdout,
            stderr,
        };
        let dir = LogDir::open(sb.dir(), false).map_err(|e| ApiError::Internal(e.to_string()))?;
        let (tx, rx) = mpsc::channel(QUEUE);
        let shutdown = self.0.shutdown.clone();
        tokio::task::spawn_blocking(move || {
            // A sandbox from before log capture has no directory: an empty
            // log.
            let Some(dir) = dir else { return };
            let sent = crate::logs::read(
                &dir,
                query,
                || sb.has_ended(),
                || *shutdown.borrow() || tx.is_closed(),
                |entry, skipped_files| {
                    let stream = match entry.stream {
                        LogStream::Stdout => pb::LogStream::Stdout,
                        LogStream::Stderr => pb::LogStream::Stderr,
                    };
                    tx.blocking_send(Ok(pb::LogEntry {
                        stream: stream as i32,
                        time_unix_nanos: i64::try_from(entry.time_ns).unwrap_or(i64::MAX),
                        data: entry.bytes,
                        skipped_files,
                    }))
                    .is_ok()
                },
            );
            if let Err(e) = sent {
                tracing::warn!(sandbox = %sb.id, "reading the log: {e}");
                let _ = tx.blocking_send(Err(ApiError::Internal(e.to_string()).into()));
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}
