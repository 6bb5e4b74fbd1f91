//! Every error the API returns, and the single mapping to gRPC status codes.

use sandboxd_core::net::LeaseError;
use sandboxd_core::store::StoreError;
use sandboxd_core::{BackendError, ValidationError};
use tonic::{Code, Status};

/// An API-level failure.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Bad input: every problem listed.
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// One bad field found after validation (the message names it).
    #[error("{0}")]
    InvalidField(String),
    /// No sandbox by that id or name (or not visible to the caller).
    #[error("sandbox {0:?} not found")]
    NotFound(String),
    /// A pid that is not a running process of the sandbox (the message
    /// names the pid and the sandbox).
    #[error("{0}")]
    ProcessNotFound(String),
    /// No image by that reference in the image store.
    #[error("image {0:?} not found")]
    ImageNotFound(String),
    /// A name or idempotency key already in use.
    #[error("{0}")]
    AlreadyExists(String),
    /// The request is valid but the system is not in a state to honour it.
    #[error("{0}")]
    FailedPrecondition(String),
    /// The daemon's configuration does not allow this for the caller.
    #[error("{0}")]
    PermissionDenied(String),
    /// A server-side cap was hit.
    #[error("{0}")]
    ResourceExhausted(String),
    /// A resumable stream position is no longer available.
    #[error("{0}")]
    OutOfRange(String),
    /// The operation raced with another one and lost.
    #[error("{0}")]
    Aborted(String),
    /// A backend operation failed.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// The state store failed.
    #[error("state store: {0}")]
    Store(#[from] StoreError),
    /// A sandbox's setup failed in its supervisor.
    #[error("sandbox setup failed at step {step:?}: {message}")]
    SetupFailed {
        /// The failed step.
        step: String,
        /// Why.
        message: String,
    },
    /// A process (Exec, ExecSync) could not be started in the sandbox: the
    /// step of the forked child that failed. The status carries the step in
    /// the `sandboxd-exec-failed-step` metadata, so a client can tell a
    /// missing program ([`sandboxd_core::wire::PROGRAM_NOT_FOUND`]) from
    /// one that cannot run without reading the message.
    #[error("exec failed at step {step:?}: {message}")]
    ExecFailed {
        /// The failed step.
        step: String,
        /// Why.
        message: String,
    },
    /// The supervisor is gone or does not answer.
    #[error("{0}")]
    Unavailable(String),
    /// A bug or an unexpected host failure.
    #[error("{0}")]
    Internal(String),
    /// A create failed, and undoing it on the host failed too. The status
    /// code is the create's; the sandbox stays listed, holding its
    /// addresses, until a destroy or the next daemon start finishes the
    /// cleanup.
    #[error(
        "{error}; undoing the create failed too ({cleanup}): sandbox {id} stays listed, holding its addresses, until a destroy or the next daemon start finishes its cleanup"
    )]
    CreateNotUndone {
        /// Why the create failed.
        error: Box<ApiError>,
        /// The sandbox left behind.
        id: String,
        /// Why its cleanup failed.
        cleanup: String,
    },
}

impl ApiError {
    /// The gRPC code of this error.
    fn code(&self) -> Code {
        match self {
            ApiError::Invalid(_) | ApiError::InvalidField(_) => Code::InvalidArgument,
            ApiError::NotFound(_) | ApiError::ProcessNotFound(_) | ApiError::ImageNotFound(_) => {
                Code::NotFound
            }
            ApiError::AlreadyExists(_) => Code::AlreadyExists,
            ApiError::FailedPrecondition(_)
            | ApiError::SetupFailed { .. }
            | ApiError::ExecFailed { .. } => Code::FailedPrecondition,
            ApiError::ResourceExhausted(_) => Code::ResourceExhausted,
            ApiError::PermissionDenied(_) => Code::PermissionDenied,
            ApiError::OutOfRange(_) => Code::OutOfRange,
            ApiError::Aborted(_) => Code::Aborted,
            ApiError::Unavailable(_) => Code::Unavailable,
            ApiError::Backend(b) => match b {
                BackendError::Refused(_) | BackendError::Unsupported(_) => Code::FailedPrecondition,
                BackendError::ImageNotFound(_) => Code::NotFound,
                BackendError::ImageInvalid { .. } | BackendError::InvalidProcess { .. } => {
                    Code::InvalidArgument
                }
                BackendError::Io { .. }
                | BackendError::Network { .. }
                | BackendError::Encode(_) => Code::Internal,
            },
            ApiError::Store(_) | ApiError::Internal(_) => Code::Internal,
            ApiError::CreateNotUndone { error, .. } => error.code(),
        }
    }
}

/// The metadata key naming the failed step of an [`ApiError::ExecFailed`].
pub const EXEC_FAILED_STEP: &str = "sandboxd-exec-failed-step";

impl From<ApiError> for Status {
    fn from(e: ApiError) -> Self {
        let mut status = Status::new(e.code(), e.to_string());
        if let ApiError::ExecFailed { step, .. } = &e {
            // Step names are short ASCII words; one that is not is left out
            // rather than failing the answer.
            if let Ok(v) = step.parse() {
                status.metadata_mut().insert(EXEC_FAILED_STEP, v);
            }
        }
        status
    }
}

impl From<sandboxd_core::fault::Injected> for ApiError {
    fn from(e: sandboxd_core::fault::Injected) -> Self {
        Self::Internal(e.to_string())
    }
}

impl From<LeaseError> for ApiError {
    fn from(e: LeaseError) -> Self {
        let message = e.to_string();
        match e {
            LeaseError::NoPool => Self::FailedPrecondition(message),
            LeaseError::OutsidePool { .. }
            | LeaseError::ReservedAddress { .. }
            | LeaseError::PortBelowFloor { .. }
            | LeaseError::PortReserved { .. } => Self::InvalidField(message),
            LeaseError::AddressLeased { .. } | LeaseError::PortLeased { .. } => {
                Self::AlreadyExists(message)
            }
            LeaseError::Exhausted { .. } => Self::ResourceExhausted(message),
        }
    }
}

/// Result alias for API handlers.
pub type ApiResult<T> = Result<T, ApiError>;
