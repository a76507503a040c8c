//! Errors of the control API: a status, a stable [`ErrorCode`] and one clear
//! line, sent as `{"error": "...", "code": "..."}`. A server-side failure keeps
//! its cause as the error's source; the cause goes to the server log (by
//! [`log_failures`], once the error became a response), never to the client.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use kiln_api::{ErrorBody, ErrorCode, InvalidName};
use kiln_store::{BoxError, StoreError};
use std::sync::Arc;

/// A refusal or failure of a control-API request.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) code: ErrorCode,
    pub(crate) message: String,
    /// What really went wrong, for the log (server-side failures only).
    #[source]
    pub(crate) cause: Option<BoxError>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            cause: None,
        }
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::BadRequest, message)
    }

    pub(crate) fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, message)
    }

    pub(crate) fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized, message)
    }

    pub(crate) fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, ErrorCode::Forbidden, message)
    }

    /// 507: the server's disk is full. The detail (a path) goes to the log only.
    pub(crate) fn storage_full(cause: impl Into<BoxError>) -> ApiError {
        ApiError {
            cause: Some(cause.into()),
            ..ApiError::new(
                StatusCode::INSUFFICIENT_STORAGE,
                ErrorCode::StorageFull,
                "the server's storage is full; nothing was stored",
            )
        }
    }

    /// 500: Kiln failed. The cause goes to the log only.
    pub(crate) fn internal(cause: impl Into<BoxError>) -> ApiError {
        ApiError {
            cause: Some(cause.into()),
            ..ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                ErrorCode::Internal,
                "internal error; see the server log",
            )
        }
    }
}

impl From<InvalidName> for ApiError {
    fn from(e: InvalidName) -> ApiError {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidName,
            e.to_string(),
        )
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::Conflict(m) => ApiError::new(StatusCode::CONFLICT, ErrorCode::Conflict, m),
            StoreError::NotFound(m) => ApiError::not_found(m),
            StoreError::Invalid(m) => ApiError::bad_request(m),
            StoreError::QuotaExceeded(m) => {
                ApiError::new(StatusCode::FORBIDDEN, ErrorCode::QuotaExceeded, m)
            }
            full @ StoreError::Full { .. } => ApiError::storage_full(full),
            unavailable @ StoreError::Unavailable { .. } => ApiError {
                cause: Some(unavailable.into()),
                ..ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    ErrorCode::Unavailable,
                    "the metadata store is unavailable; try again later",
                )
            },
            other => ApiError::internal(other),
        }
    }
}

/// The cause of a failed response, carried from [`ApiError::into_response`] to
/// [`log_failures`].
#[derive(Clone)]
pub(crate) struct FailureCause(Arc<str>);

impl FailureCause {
    /// Names `error` and every source under it, on one line.
    pub(crate) fn of(error: &(dyn std::error::Error + 'static)) -> FailureCause {
        let chain: Vec<String> = std::iter::successors(Some(error), |e| e.source())
            .map(ToString::to_string)
            .collect();
        FailureCause(chain.join(": ").into())
    }
}

impl std::fmt::Display for FailureCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let cause = self.cause.as_deref().map(|cause| FailureCause::of(cause));
        let body = ErrorBody {
            error: self.message,
            code: self.code,
        };
        let mut response = (self.status, Json(body)).into_response();
        if let Some(cause) = cause {
            response.extensions_mut().insert(cause);
        }
        response
    }
}

/// Router middleware: logs the cause of every response that carries one.
pub(crate) async fn log_failures(response: Response) -> Response {
    if let Some(FailureCause(cause)) = response.extensions().get::<FailureCause>() {
        tracing::error!(status = response.status().as_u16(), %cause, "request failed");
    }
    response
}

pub(crate) type ApiResult<T> = Result<T, ApiError>;
