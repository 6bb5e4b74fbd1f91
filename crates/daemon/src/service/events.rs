//! EventService: WatchEvents, resumable by revision.

use std::pin::Pin;

use sandboxd_proto::v1 as pb;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::Shared;
use crate::convert;
use crate::error::ApiError;
use crate::events::Event;

/// The EventService implementation.
#[derive(Debug)]
pub struct Events(pub Shared);

type EventStream = Pin<Box<dyn Stream<Item = Result<pb::Event, Status>> + Send>>;

#[tonic::async_trait]
impl pb::event_service_server::EventService for Events {
    type WatchEventsStream = EventStream;

    async fn watch_events(
        &self,
        req: Request<pb::WatchEventsRequest>,
    ) -> Result<Response<EventStream>, Status> {
        let who = self.0.caller(&req)?;
        let req = req.into_inner();
        if !req.sandbox_id.is_empty() && !sandboxd_core::validate::is_id(&req.sandbox_id) {
            return Err(ApiError::Invalid(sandboxd_core::ValidationError::one(
                "sandbox_id",
                format!(
                    "{:?} is not a sandbox id (16 hex characters)",
                    req.sandbox_id
                ),
            ))
            .into());
        }
        let (replay, mut live) = self.0.manager.events.subscribe(req.after_revision)?;
        let (tx, rx) = mpsc::channel(256);
        let shared = self.0.clone();
        let manager = self.0.manager.clone();
        // A non-admin sees only its own sandboxes' events (and the
        // daemon-wide ones, which name no sandbox).
        let wanted = move |e: &Event| {
            (req.sandbox_id.is_empty() || e.sandbox_id == req.sandbox_id)
                && (who.admin
                    || e.sandbox_id.is_empty()
                    || manager.owner_of(&e.sandbox_id).as_deref() == Some(who.name.as_str()))
        };
        tokio::spawn(async move {
            for e in replay.iter().filter(|e| wanted(e)) {
                if tx.send(Ok(convert::event_to_pb(e))).await.is_err() {
                    return;
                }
            }
            loop {
                let next = tokio::select! {
                    n = live.recv() => n,
                    () = shared.shutting_down() => {
                        let _ = tx.send(Err(Status::unavailable("the daemon is shutting down"))).await;
                        return;
                    }
                    () = tx.closed() => return,
                };
                match next {
                    Ok(e) if wanted(&e) => {
                        if tx.send(Ok(convert::event_to_pb(&e))).await.is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        let _ = tx
                            .send(Err(Status::out_of_range(format!(
                                "the client fell {n} events behind; resume with after_revision set to the last revision received"
                            ))))
                            .await;
                        return;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}
