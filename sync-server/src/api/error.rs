//! `ApiError`: the one error type of every handler. Each variant has one HTTP status and one
//! `ApiErrorCode`; the body is always `shared_proto::sync::ApiError` JSON. 5xx bodies are generic
//! and their detail goes to the log, never to the client.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use shared_proto::sync::{self, ApiErrorCode, WireError};

use crate::store::{RedeemRefusal, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400 `invalid_json`: the body is not JSON, or not the JSON this route takes.
    #[error("{0}")]
    InvalidJson(String),
    /// 400 `invalid_request`: well-formed but breaks a rule.
    #[error("{0}")]
    InvalidRequest(String),
    /// 400 `unsupported_protocol` or `invalid_json`, as the wire decoder said.
    #[error(transparent)]
    Wire(#[from] WireError),
    /// 401 `unauthorized`: no token, or one the server does not know or that expired.
    #[error("{0}")]
    Unauthorized(&'static str),
    /// 401 `token_revoked`.
    #[error("this device token was revoked by an admin: provision the box again")]
    TokenRevoked,
    /// 403 `forbidden`.
    #[error("{0}")]
    Forbidden(String),
    /// 403 `wrong_school`.
    #[error("school {0} is not yours")]
    WrongSchool(String),
    /// 404 `not_found`.
    #[error("{0} not found")]
    NotFound(String),
    /// 405 `invalid_request`: the path exists with other methods.
    #[error("{0}")]
    MethodNotAllowed(String),
    /// 409 `conflict`.
    #[error("{0} already exists")]
    Conflict(String),
    /// 413 `payload_too_large`.
    #[error("the request body is larger than {limit_bytes} bytes")]
    PayloadTooLarge { limit_bytes: usize },
    /// 413 `batch_too_large`.
    #[error("{found} events in one push; at most {max} (send the rest as further pushes)")]
    BatchTooLarge { found: usize, max: usize },
    /// 429 `rate_limited`, with `Retry-After`.
    #[error("too many failed attempts; retry in {retry_after_s} s")]
    RateLimited { retry_after_s: u64 },
    /// 400 (unknown) or 410 (used, expired) `provisioning_code_invalid`.
    #[error("{}", refusal_message(*.0))]
    ProvisioningCode(RedeemRefusal),
    /// 422 `invalid_roster`: every problem as `file:line: reason`, one per line.
    #[error("{0}")]
    InvalidRoster(String),
    /// 408 `invalid_request`: the request body stopped arriving for longer than the body timeout.
    #[error("the request body stopped arriving for longer than {timeout_s} s")]
    BodyTimeout { timeout_s: u32 },
    /// 431 `invalid_request`.
    #[error(
        "{found} headers of {bytes} bytes in all; at most {} headers and {} bytes",
        super::guard::MAX_HEADERS,
        super::guard::MAX_HEADER_BYTES
    )]
    HeadersTooLarge { found: usize, bytes: usize },
    /// 503 `unavailable`, with `Retry-After`: more password checks at once than the server runs.
    #[error("the server is checking too many logins at once; retry in {retry_after_s} s")]
    Busy { retry_after_s: u64 },
    /// 503 `unavailable`, with `Retry-After`; the detail is logged only. The store has already
    /// retried what was worth retrying (a write conflict, a primary stepping down) before this.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// 503 `unavailable`, with `Retry-After`: central enrolment cannot take this now (its queue of
    /// photos is full, or the ML service does not answer).
    #[error("{0}")]
    EnrolmentBusy(String),
    /// 500 `internal`; the detail is logged only.
    #[error("internal error: {0}")]
    Internal(String),
}

/// What a 503 for a full photo queue asks clients to wait: photos take a second or so each.
pub const QUEUE_FULL_RETRY_AFTER_S: u64 = 60;

/// What a 503 asks clients to wait: the store's own retries of a transient failure have taken
/// about 2.5 s by then, and a MongoDB replica set elects a new primary in about 10 s.
pub const UNAVAILABLE_RETRY_AFTER_S: u64 = 5;

fn refusal_message(refusal: RedeemRefusal) -> &'static str {
    match refusal {
        RedeemRefusal::Unknown => {
            "unknown provisioning code: check it was typed as shown, or ask an admin for a new one"
        }
        RedeemRefusal::AlreadyUsed => {
            "this provisioning code was already used: ask an admin for a new one"
        }
        RedeemRefusal::Expired => "this provisioning code expired: ask an admin for a new one",
    }
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::InvalidJson(_) | ApiError::InvalidRequest(_) | ApiError::Wire(_) => {
                StatusCode::BAD_REQUEST
            }
            ApiError::Unauthorized(_) | ApiError::TokenRevoked => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) | ApiError::WrongSchool(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge { .. } | ApiError::BatchTooLarge { .. } => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::ProvisioningCode(RedeemRefusal::Unknown) => StatusCode::BAD_REQUEST,
            ApiError::ProvisioningCode(_) => StatusCode::GONE,
            ApiError::InvalidRoster(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::BodyTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            ApiError::HeadersTooLarge { .. } => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ApiError::Unavailable(_) | ApiError::Busy { .. } | ApiError::EnrolmentBusy(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> ApiErrorCode {
        match self {
            ApiError::InvalidJson(_) => ApiErrorCode::InvalidJson,
            ApiError::InvalidRequest(_)
            | ApiError::MethodNotAllowed(_)
            | ApiError::BodyTimeout { .. }
            | ApiError::HeadersTooLarge { .. } => ApiErrorCode::InvalidRequest,
            ApiError::Wire(wire) => wire.code(),
            ApiError::Unauthorized(_) => ApiErrorCode::Unauthorized,
            ApiError::TokenRevoked => ApiErrorCode::TokenRevoked,
            ApiError::Forbidden(_) => ApiErrorCode::Forbidden,
            ApiError::WrongSchool(_) => ApiErrorCode::WrongSchool,
            ApiError::NotFound(_) => ApiErrorCode::NotFound,
            ApiError::Conflict(_) => ApiErrorCode::Conflict,
            ApiError::PayloadTooLarge { .. } => ApiErrorCode::PayloadTooLarge,
            ApiError::BatchTooLarge { .. } => ApiErrorCode::BatchTooLarge,
            ApiError::RateLimited { .. } => ApiErrorCode::RateLimited,
            ApiError::ProvisioningCode(_) => ApiErrorCode::ProvisioningCodeInvalid,
            ApiError::InvalidRoster(_) => ApiErrorCode::InvalidRoster,
            ApiError::Unavailable(_) | ApiError::Busy { .. } | ApiError::EnrolmentBusy(_) => {
                ApiErrorCode::Unavailable
            }
            ApiError::Internal(_) => ApiErrorCode::Internal,
        }
    }

    /// What the client reads: the error's sentence for 4xx, a generic one for 5xx, whose detail
    /// may name tables, hosts or file paths.
    fn public_message(&self) -> String {
        match self {
            ApiError::Unavailable(_) => {
                "the server's database cannot be reached; retry later".to_owned()
            }
            ApiError::Internal(_) => {
                "internal error; the server log has the detail under this request id".to_owned()
            }
            other => other.to_string(),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Conflict(what) => ApiError::Conflict(what),
            StoreError::NotFound(what) => ApiError::NotFound(what),
            StoreError::Unavailable(detail) => ApiError::Unavailable(detail),
            StoreError::NewerSchema(detail) | StoreError::Backend(detail) => {
                ApiError::Internal(detail)
            }
        }
    }
}

/// The error body a response carries until the request-id middleware (`ops::observe`) fills in
/// the id: handlers do not know the id, the middleware does.
#[derive(Clone, Debug)]
pub(crate) struct ErrorBody(pub sync::ApiError);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        match &self {
            // Load shed on purpose, not a failure: the client is told when to come back.
            ApiError::Busy { .. } | ApiError::EnrolmentBusy(_) => {
                tracing::debug!(error = %self, "request turned away")
            }
            // The one place a 5xx detail is logged: it is not returned.
            _ if status.is_server_error() => tracing::error!(error = %self, "request failed"),
            _ => {}
        }
        let body = sync::ApiError {
            code: self.code(),
            message: self.public_message(),
            request_id: None,
        };
        let mut response = (status, Json(body.clone())).into_response();
        match &self {
            ApiError::RateLimited { retry_after_s } | ApiError::Busy { retry_after_s } => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_s));
            }
            ApiError::Unavailable(_) => {
                response.headers_mut().insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(UNAVAILABLE_RETRY_AFTER_S),
                );
            }
            ApiError::EnrolmentBusy(_) => {
                response.headers_mut().insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(QUEUE_FULL_RETRY_AFTER_S),
                );
            }
            ApiError::Unauthorized(_) | ApiError::TokenRevoked => {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            ApiError::BodyTimeout { .. } => {
                // Whatever of the body is still on its way would be read as the next request.
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            _ => {}
        }
        response.extensions_mut().insert(ErrorBody(body));
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 12: a 503 says when to come back, and its body names no table or host.
    #[test]
    fn unavailable_is_503_with_retry_after_and_a_generic_body() {
        let response = ApiError::Unavailable("WriteConflict on rollcall.applied_events".into())
            .into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            response.headers().get(header::RETRY_AFTER),
            Some(&HeaderValue::from(UNAVAILABLE_RETRY_AFTER_S))
        );
        let body = &response.extensions().get::<ErrorBody>().unwrap().0;
        assert_eq!(body.code, ApiErrorCode::Unavailable);
        assert!(!body.message.contains("applied_events"), "{}", body.message);
    }
}
