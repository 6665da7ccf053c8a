//! What every request must satisfy before a handler reads it: at most `MAX_HEADERS` headers of
//! at most `MAX_HEADER_BYTES` in all (431), a `Content-Length` within the route's body limit (413
//! before a byte of the body is read), and a body that keeps arriving (an idle pause longer than
//! the body timeout ends it: 408).

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::CONTENT_LENGTH;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tower_http::timeout::TimeoutBody;

use super::AppState;
use crate::api::ApiError;

/// More headers than any browser or box sends.
pub(super) const MAX_HEADERS: usize = 100;
/// Names and values of all headers together; a browser's cookies stay far below this.
pub(super) const MAX_HEADER_BYTES: usize = 32 * 1024;

/// Router-wide: header limits, and the body's idle timeout.
pub(super) async fn guard(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let headers = request.headers();
    let header_bytes: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if headers.len() > MAX_HEADERS || header_bytes > MAX_HEADER_BYTES {
        return ApiError::HeadersTooLarge {
            found: headers.len(),
            bytes: header_bytes,
        }
        .into_response();
    }
    let timeout = Duration::from_secs(u64::from(state.limits().body_timeout_seconds));
    next.run(request.map(|body| Body::new(TimeoutBody::new(timeout, body))))
        .await
}

/// Per route: a declared `Content-Length` over the route's `limit` is refused before reading.
pub(super) async fn refuse_oversized(
    State(limit): State<usize>,
    request: Request,
    next: Next,
) -> Response {
    let declared = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|text| text.trim().parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        let mut response = ApiError::PayloadTooLarge { limit_bytes: limit }.into_response();
        // The unread body would otherwise be drained first; a client that sends it anyway
        // learns at once and the connection is not reused.
        response.headers_mut().insert(
            axum::http::header::CONNECTION,
            axum::http::HeaderValue::from_static("close"),
        );
        return response;
    }
    next.run(request).await
}

/// Whether a body error is the idle timeout firing (somewhere in its source chain).
pub(super) fn is_body_timeout(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(error) = current {
        if error
            .downcast_ref::<tower_http::timeout::TimeoutError>()
            .is_some()
        {
            return true;
        }
        current = error.source();
    }
    false
}
