//! The gRPC health service (grpc.health.v1), as the health-checking spec
//! describes it: tonic-health's, except that `Watch` on a service the
//! daemon does not serve streams SERVICE_UNKNOWN and stays open (the spec:
//! "the server will send a SERVICE_UNKNOWN status ... and keep watching"),
//! where tonic-health fails the call with NOT_FOUND. `Check` on an unknown
//! service is NOT_FOUND, as the spec says.

use std::pin::Pin;

use tokio_stream::{Stream, StreamExt};
use tonic::{Code, Request, Response, Status};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_server::Health;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};
use tonic_health::server::{HealthReporter, HealthService};

/// The health service; statuses are set through the [`HealthReporter`]
/// it was made from.
#[derive(Debug)]
pub struct SpecHealth(HealthService);

impl SpecHealth {
    /// The service reporting what `reporter` sets.
    pub fn new(reporter: HealthReporter) -> Self {
        Self(HealthService::from_health_reporter(reporter))
    }
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<HealthCheckResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Health for SpecHealth {
    type WatchStream = WatchStream;

    async fn check(
        &self,
        req: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        self.0.check(req).await
    }

    async fn watch(
        &self,
        req: Request<HealthCheckRequest>,
    ) -> Result<Response<WatchStream>, Status> {
        match self.0.watch(req).await {
            Ok(stream) => Ok(Response::new(Box::pin(stream.into_inner()))),
            Err(status) if status.code() == Code::NotFound => {
                // The daemon's services are fixed at start-up: the status
                // will not change, but the stream stays open as the spec asks
                // (a client may keep it as a liveness probe).
                let unknown = tokio_stream::once(Ok(HealthCheckResponse {
                    status: ServingStatus::ServiceUnknown as i32,
                }))
                .chain(tokio_stream::pending());
                Ok(Response::new(Box::pin(unknown)))
            }
            Err(status) => Err(status),
        }
    }
}
