//! The client's deadline (`grpc-timeout`) ends a call with
//! DEADLINE_EXCEEDED.
//!
//! tonic's server enforces `grpc-timeout` itself, in a layer outside every
//! layer of ours, and answers an expired call with CANCELLED "Timeout
//! expired": whenever its timer won the race with the handler's own
//! deadline handling, a client saw CANCELLED. [`DeadlineLayer`] runs inside
//! tonic's layer and ends the call first: its deadline is taken when the
//! call is dispatched, before tonic starts its own timer for the same
//! timeout, and its future also checks the clock, so by the time tonic's
//! timer has fired this layer's answer is ready. Dropping the handler's
//! future is what a cancelled call does anyway (an ExecSync's process tree
//! is killed, a WaitSandbox stops waiting).
//!
//! Streaming responses are bounded only until their first response (the
//! headers); Exec ends its stream at the deadline itself.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};
use tonic::codegen::http;

/// The call's `grpc-timeout` value, if valid (gRPC over HTTP/2: at most 8
/// digits and a unit).
pub fn parse_timeout(text: &str) -> Option<Duration> {
    let split = text.len().checked_sub(1)?;
    let (digits, unit) = (text.get(..split)?, text.get(split..)?);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// Ends calls whose `grpc-timeout` passed with DEADLINE_EXCEEDED.
#[derive(Debug, Clone, Copy, Default)]
pub struct DeadlineLayer;

impl<S> tower::Layer<S> for DeadlineLayer {
    type Service = Deadline<S>;
    fn layer(&self, inner: S) -> Deadline<S> {
        Deadline { inner }
    }
}

/// The service [`DeadlineLayer`] wraps.
#[derive(Debug, Clone)]
pub struct Deadline<S> {
    inner: S,
}

impl<S, B, RB> tower::Service<http::Request<B>> for Deadline<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
    RB: Default,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = DeadlineFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        // Taken before the inner call: tonic starts its timer after this
        // whole call returns, so ours is never the later one.
        let deadline = req
            .headers()
            .get("grpc-timeout")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_timeout)
            .map(|t| Instant::now() + t);
        DeadlineFuture {
            inner: Box::pin(self.inner.call(req)),
            timer: deadline.map(|at| (at, Box::pin(tokio::time::sleep_until(at)))),
        }
    }
}

/// A call bounded by its deadline.
pub struct DeadlineFuture<F> {
    inner: Pin<Box<F>>,
    timer: Option<(Instant, Pin<Box<Sleep>>)>,
}

impl<F> std::fmt::Debug for DeadlineFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeadlineFuture")
            .field("deadline", &self.timer.as_ref().map(|t| t.0))
            .finish_non_exhaustive()
    }
}

impl<F, RB, E> Future for DeadlineFuture<F>
where
    F: Future<Output = Result<http::Response<RB>, E>>,
    RB: Default,
{
    type Output = Result<http::Response<RB>, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Poll::Ready(r) = self.inner.as_mut().poll(cx) {
            return Poll::Ready(r);
        }
        if let Some((at, sleep)) = &mut self.timer {
            // The clock too: tonic's timer for the same deadline may have
            // fired in the same tick, before ours was processed.
            if sleep.as_mut().poll(cx).is_ready() || Instant::now() >= *at {
                return Poll::Ready(Ok(tonic::Status::deadline_exceeded(
                    "the call's deadline (grpc-timeout) passed before it finished",
                )
                .into_http()));
            }
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn grpc_timeouts() {
        let cases: &[(&str, Option<Duration>)] = &[
            ("2S", Some(Duration::from_secs(2))),
            ("1500m", Some(Duration::from_millis(1500))),
            ("1H", Some(Duration::from_secs(3600))),
            ("3M", Some(Duration::from_secs(180))),
            ("7u", Some(Duration::from_micros(7))),
            ("9n", Some(Duration::from_nanos(9))),
            ("99999999S", Some(Duration::from_secs(99_999_999))),
            ("123456789S", None),
            ("S", None),
            ("", None),
            ("-1S", None),
            ("+1S", None),
            ("1s", None),
            ("1.5S", None),
        ];
        for (text, want) in cases {
            assert_eq!(parse_timeout(text), *want, "{text:?}");
        }
    }

    /// A handler that never answers gets DEADLINE_EXCEEDED once the
    /// deadline passes; one without a deadline is left alone.
    #[tokio::test]
    async fn an_expired_call_is_deadline_exceeded() {
        use tower::{Layer, Service, ServiceExt};
        let never = tower::service_fn(|_req: http::Request<()>| {
            std::future::pending::<
                Result<http::Response<tonic::body::Body>, std::convert::Infallible>,
            >()
        });
        let mut svc = DeadlineLayer.layer(never);
        let req = http::Request::builder()
            .header("grpc-timeout", "50m")
            .body(())
            .unwrap();
        let res = svc.ready().await.unwrap().call(req).await.unwrap();
        let status = tonic::Status::from_header_map(res.headers()).expect("a status");
        assert_eq!(status.code(), tonic::Code::DeadlineExceeded);
        let unbounded = svc.ready().await.unwrap().call(http::Request::new(()));
        assert!(
            tokio::time::timeout(Duration::from_millis(200), unbounded)
                .await
                .is_err()
        );
    }
}
