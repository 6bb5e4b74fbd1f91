//! gRPC server reflection (`grpc.reflection.v1` and, for grpcurl releases
//! before 1.9, `v1alpha`), each built on its first call rather than at
//! start. Building one decodes the whole descriptor set (every file, with
//! its comments) into maps of symbols: a daemon that no client asks to
//! reflect keeps none of it, and that is most of its idle heap.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use tonic::body::Body;
use tonic::codegen::http;
use tonic::server::NamedService;
use tower::ServiceExt;

/// How a reflection service is built: the descriptor sets are compiled
/// into the binary, so this fails only on a build defect (which the unit
/// tests below would show); a call then gets INTERNAL.
type Build<S> = fn() -> Result<S, tonic_reflection::server::Error>;

/// A service built by `build` when it is first called, then shared by
/// every clone.
pub struct Lazy<S> {
    built: Arc<OnceLock<Result<S, String>>>,
    build: Build<S>,
}

impl<S> std::fmt::Debug for Lazy<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lazy")
            .field("built", &self.built.get().is_some())
            .finish_non_exhaustive()
    }
}

impl<S> Clone for Lazy<S> {
    fn clone(&self) -> Self {
        Self {
            built: self.built.clone(),
            build: self.build,
        }
    }
}

impl<S: NamedService> NamedService for Lazy<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> tower::Service<http::Request<Body>> for Lazy<S>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
        + NamedService
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Answer;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // Readiness is the built service's, awaited in `call` (oneshot).
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let build = self.build;
        match self
            .built
            .get_or_init(|| build().map_err(|e| e.to_string()))
        {
            Ok(service) => Box::pin(service.clone().oneshot(req)),
            Err(e) => {
                let status = tonic::Status::internal(format!(
                    "building the reflection service {}: {e}",
                    S::NAME
                ));
                Box::pin(std::future::ready(Ok(status.into_http())))
            }
        }
    }
}

impl<S> Lazy<S> {
    fn new(build: Build<S>) -> Self {
        Self {
            built: Arc::new(OnceLock::new()),
            build,
        }
    }

    /// Whether the service has been built (by a first call).
    #[cfg(test)]
    fn is_built(&self) -> bool {
        self.built.get().is_some()
    }
}

/// A reflection call's answer.
type Answer = Pin<Box<dyn Future<Output = Result<http::Response<Body>, Infallible>> + Send>>;

/// What tonic's router takes, for the two reflection services.
pub trait ReflectionService:
    tower::Service<
        http::Request<Body>,
        Response = http::Response<Body>,
        Error = Infallible,
        Future = Answer,
    > + NamedService
    + Clone
    + Send
    + Sync
    + 'static
{
}

impl<T> ReflectionService for T where
    T: tower::Service<
            http::Request<Body>,
            Response = http::Response<Body>,
            Error = Infallible,
            Future = Answer,
        > + NamedService
        + Clone
        + Send
        + Sync
        + 'static
{
}

/// A [`Lazy`] reflection service over sandboxd's and the health service's
/// protos; `$build` is the builder's `build_v1` or `build_v1alpha`.
macro_rules! lazy_reflection {
    ($build:ident) => {
        Lazy::new(|| {
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(sandboxd_proto::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
                .$build()
        })
    };
}

/// `grpc.reflection.v1`.
pub fn v1() -> impl ReflectionService {
    lazy_reflection!(build_v1)
}

/// `grpc.reflection.v1alpha`, the same content.
pub fn v1alpha() -> impl ReflectionService {
    lazy_reflection!(build_v1alpha)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reflection stream with no request in it: answered with headers
    /// and no error, once the service exists.
    fn empty_call(service: &str) -> http::Request<Body> {
        http::Request::builder()
            .method("POST")
            .uri(format!("/{service}/ServerReflectionInfo"))
            .header("content-type", "application/grpc")
            .body(Body::empty())
            .expect("request")
    }

    #[tokio::test]
    async fn nothing_is_built_until_a_first_call_which_builds_it_once_for_all_clones() {
        let v1 = lazy_reflection!(build_v1);
        let v1alpha = lazy_reflection!(build_v1alpha);
        assert!(
            !v1.is_built() && !v1alpha.is_built(),
            "built before any call"
        );
        let res = v1
            .clone()
            .oneshot(empty_call("grpc.reflection.v1.ServerReflection"))
            .await
            .expect("infallible");
        // The lazy path's only failure (INTERNAL, as a grpc-status header)
        // must not happen with the protos compiled into this binary.
        assert_eq!(res.status(), http::StatusCode::OK);
        assert_eq!(res.headers().get("grpc-status"), None, "{res:?}");
        assert!(
            v1.is_built(),
            "a clone's call did not build the shared service"
        );
        let res = v1alpha
            .clone()
            .oneshot(empty_call("grpc.reflection.v1alpha.ServerReflection"))
            .await
            .expect("infallible");
        assert_eq!(res.headers().get("grpc-status"), None, "{res:?}");
        assert!(v1alpha.is_built());
    }
}
