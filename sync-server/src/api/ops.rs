//! Operations: `/healthz`, `/readyz`, `/metrics` (Prometheus text, written by hand), and the
//! middleware every request passes through: its request id (taken from `X-Request-Id` when sane,
//! else a UUIDv7) in a tracing span, in the response header and in every error body; its count
//! and latency per route template.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::Json;
use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use shared_proto::metrics::{Histogram, escape_label};
use shared_proto::sync::{REQUEST_ID_HEADER, is_sane_request_id};
use tracing::Instrument;

use super::AppState;
use super::error::ErrorBody;
use crate::api::ApiError;

/// Counters for `/metrics`. Requests are labelled by route template (`/v1/schools/{school}`),
/// never by the raw path, so the number of series stays fixed.
#[derive(Default)]
pub struct Metrics {
    requests: Mutex<RequestMetrics>,
    events_applied: AtomicU64,
    events_rejected: AtomicU64,
    pull_pages: AtomicU64,
    login_failures: AtomicU64,
}

#[derive(Default)]
struct RequestMetrics {
    /// (route, method, status) -> count.
    counts: BTreeMap<(String, String, u16), u64>,
    /// (route, method) -> latency histogram.
    latencies: BTreeMap<(String, String), Histogram>,
}

impl Metrics {
    fn record_request(&self, route: &str, method: &Method, status: StatusCode, seconds: f64) {
        let mut requests = self
            .requests
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let method = method_label(method).to_owned();
        *requests
            .counts
            .entry((route.to_owned(), method.clone(), status.as_u16()))
            .or_default() += 1;
        requests
            .latencies
            .entry((route.to_owned(), method))
            .or_default()
            .record(seconds);
    }

    pub(super) fn count_events(&self, applied: usize, rejected: usize) {
        self.events_applied
            .fetch_add(applied as u64, Ordering::Relaxed);
        self.events_rejected
            .fetch_add(rejected as u64, Ordering::Relaxed);
    }

    pub(super) fn count_pull_page(&self) {
        self.pull_pages.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn count_login_failure(&self) {
        self.login_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// The Prometheus text exposition of every counter.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let requests = self
            .requests
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        out.push_str("# HELP rollcall_http_requests_total HTTP requests by route template, method and status.\n");
        out.push_str("# TYPE rollcall_http_requests_total counter\n");
        for ((route, method, status), count) in &requests.counts {
            let _ = writeln!(
                out,
                "rollcall_http_requests_total{{route=\"{}\",method=\"{method}\",status=\"{status}\"}} {count}",
                escape_label(route)
            );
        }
        out.push_str("# HELP rollcall_http_request_duration_seconds HTTP request latency by route template and method.\n");
        out.push_str("# TYPE rollcall_http_request_duration_seconds histogram\n");
        for ((route, method), histogram) in &requests.latencies {
            let labels = format!("route=\"{}\",method=\"{method}\"", escape_label(route));
            histogram.write(&mut out, "rollcall_http_request_duration_seconds", &labels);
        }
        drop(requests);
        let counters = [
            (
                "rollcall_sync_events_applied_total",
                "Pushed events acked (applied now or earlier).",
                &self.events_applied,
            ),
            (
                "rollcall_sync_events_rejected_total",
                "Pushed events rejected.",
                &self.events_rejected,
            ),
            (
                "rollcall_sync_pull_pages_total",
                "Pull pages served.",
                &self.pull_pages,
            ),
            (
                "rollcall_login_failures_total",
                "Failed logins.",
                &self.login_failures,
            ),
        ];
        for (name, help, counter) in counters {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} counter");
            let _ = writeln!(out, "{name} {}", counter.load(Ordering::Relaxed));
        }
        out
    }
}

/// The method as a label: the standard ones by name, anything a client made up as `other`, so
/// 20,000 invented methods add one series, not 20,000 (they made the page 33.6 MB).
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        _ => "other",
    }
}

/// Wraps every request: request id, tracing span, metrics, and JSON error bodies that carry the
/// request id, including axum's own rejections.
pub(super) async fn observe(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let request_id = request
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|value| value.to_str().ok())
        .filter(|id| is_sane_request_id(id))
        .map_or_else(|| uuid::Uuid::now_v7().to_string(), str::to_owned);
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let method = request.method().clone();

    let span =
        tracing::info_span!("request", request_id = %request_id, method = %method, route = %route);
    let response = next.run(request).instrument(span.clone()).await;
    let mut response = json_error_with_id(response, &request_id).await;
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }

    let seconds = started.elapsed().as_secs_f64();
    let status = response.status();
    state
        .metrics()
        .record_request(&route, &method, status, seconds);
    span.in_scope(|| {
        tracing::info!(
            status = status.as_u16(),
            latency_ms = (seconds * 1000.0).round() as u64,
            "served"
        );
    });
    response
}

/// Puts the request id into an `ApiError` body, and turns a plain-text error that axum made
/// itself (a path it could not parse, ...) into the same JSON shape. The web pages' HTML error
/// pages stay pages.
async fn json_error_with_id(mut response: Response, request_id: &str) -> Response {
    let status = response.status();
    let body = match response.extensions_mut().remove::<ErrorBody>() {
        Some(ErrorBody(body)) => body,
        None if status.is_client_error() || status.is_server_error() => {
            // JSON is already an error body; HTML is a web page's own error page, for a person.
            let is_ours = response
                .headers()
                .get(header::CONTENT_TYPE)
                .is_some_and(|value| {
                    let value = value.as_bytes();
                    value.starts_with(b"application/json") || value.starts_with(b"text/html")
                });
            if is_ours {
                return response;
            }
            let text = axum::body::to_bytes(std::mem::take(response.body_mut()), 64 * 1024)
                .await
                .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
                .unwrap_or_default();
            let error = match status {
                StatusCode::PAYLOAD_TOO_LARGE => ApiError::InvalidRequest(text),
                StatusCode::UNSUPPORTED_MEDIA_TYPE | StatusCode::UNPROCESSABLE_ENTITY => {
                    ApiError::InvalidJson(text)
                }
                s if s.is_client_error() => ApiError::InvalidRequest(text),
                _ => ApiError::Internal(text),
            };
            let mut converted = error.into_response();
            *converted.status_mut() = status;
            return Box::pin(json_error_with_id(converted, request_id)).await;
        }
        None => return response,
    };
    let body = shared_proto::sync::ApiError {
        request_id: Some(request_id.to_owned()),
        ..body
    };
    match serde_json::to_vec(&body) {
        Ok(bytes) => {
            response.headers_mut().remove(header::CONTENT_LENGTH);
            *response.body_mut() = Body::from(bytes);
        }
        Err(e) => tracing::error!(error = %e, "cannot serialize an error body"),
    }
    response
}

/// `GET /healthz`: the process is up and serving.
#[utoipa::path(
    get,
    path = "/healthz",
    summary = "The process is up.",
    responses((status = 200, description = "ok", body = Health)),
)]
pub(super) async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct Health {
    #[schema(value_type = String)]
    status: &'static str,
}

/// `GET /readyz`: the store answers.
#[utoipa::path(
    get,
    path = "/readyz",
    summary = "The store answers; 503 `unavailable` when it does not.",
    responses(
        (status = 200, description = "ok", body = Health),
        (status = 503, description = super::openapi::E503, body = super::openapi::ErrorJson),
    ),
)]
pub(super) async fn readyz(State(state): State<AppState>) -> Result<Json<Health>, ApiError> {
    state.store().ping().await?;
    Ok(Json(Health { status: "ready" }))
}

/// `GET /metrics` on the API's address: 404 when `metrics_listen` serves it elsewhere, 401
/// without the configured `metrics_token`.
#[utoipa::path(
    get,
    path = "/metrics",
    summary = "Prometheus text: requests and latency per route, events applied and rejected, pull pages.",
    responses(
        (status = 200, description = "ok", body = String, content_type = "text/plain"),
        (status = 401, description = "`unauthorized`: a metrics_token is configured and this is not it", body = super::openapi::ErrorJson),
        (status = 404, description = "`not_found`: /metrics is served on its own address (metrics_listen)", body = super::openapi::ErrorJson),
    ),
    security((), ("metrics" = [])),
)]
pub(super) async fn metrics(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    if !state.limits().metrics_on_api {
        return no_route(method, uri).await.into_response();
    }
    metrics_only(State(state), headers).await
}

/// `GET /metrics`, wherever it is served.
pub(super) async fn metrics_only(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(expected) = &state.limits().metrics_token {
        let given = super::auth::bearer(&headers).unwrap_or_default();
        // Compared as hashes, so the time taken says nothing about how much of it matched.
        if super::auth::secret_hash(given) != super::auth::secret_hash(expected.trim()) {
            return ApiError::Unauthorized("/metrics needs Authorization: Bearer <metrics_token>")
                .into_response();
        }
    }
    render_metrics(&state).await
}

async fn render_metrics(state: &AppState) -> Response {
    let mut text = state.metrics().render();
    // Store-wide totals survive restarts, unlike the process counters above; a store that is
    // down only leaves them out, so the process metrics still get scraped.
    match state.store().counts().await {
        Ok(counts) => {
            let _ = writeln!(
                text,
                "# HELP rollcall_store_events_applied Events held by the store.\n# TYPE rollcall_store_events_applied gauge\nrollcall_store_events_applied {}",
                counts.events_applied
            );
            let _ = writeln!(
                text,
                "# HELP rollcall_store_changes Rows in the change feeds.\n# TYPE rollcall_store_changes gauge\nrollcall_store_changes {}",
                counts.changes
            );
        }
        Err(e) => tracing::warn!(error = %e, "store counts left out of /metrics"),
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

/// Any path no route serves.
pub(super) async fn no_route(method: Method, uri: Uri) -> ApiError {
    ApiError::NotFound(format!("route {method} {} (see /openapi.json)", uri.path()))
}

/// A path that exists, with another method.
pub(super) async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::MethodNotAllowed(format!(
        "{method} is not allowed on {} (see /openapi.json)",
        uri.path()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_from_callers_are_kept_only_when_plain() {
        assert!(is_sane_request_id("box-12_cycle.7"));
        assert!(!is_sane_request_id(""));
        assert!(!is_sane_request_id("a b"));
        assert!(!is_sane_request_id("evil\"}"));
        assert!(!is_sane_request_id(&"x".repeat(129)));
    }

    #[test]
    fn histogram_buckets_are_cumulative() {
        let metrics = Metrics::default();
        metrics.record_request("/r", &Method::GET, StatusCode::OK, 0.003);
        metrics.record_request("/r", &Method::GET, StatusCode::OK, 7.0);
        let text = metrics.render();
        assert!(text.contains(
            "rollcall_http_requests_total{route=\"/r\",method=\"GET\",status=\"200\"} 2"
        ));
        assert!(text.contains("rollcall_http_request_duration_seconds_bucket{route=\"/r\",method=\"GET\",le=\"0.0025\"} 0"));
        assert!(text.contains("rollcall_http_request_duration_seconds_bucket{route=\"/r\",method=\"GET\",le=\"0.005\"} 1"));
        assert!(text.contains("rollcall_http_request_duration_seconds_bucket{route=\"/r\",method=\"GET\",le=\"+Inf\"} 2"));
    }

    #[test]
    fn invented_methods_share_one_label() {
        let metrics = Metrics::default();
        for n in 0..1000 {
            let method = Method::from_bytes(format!("X{n}").as_bytes()).unwrap();
            metrics.record_request("unmatched", &method, StatusCode::NOT_FOUND, 0.001);
        }
        let text = metrics.render();
        assert!(
            text.contains("method=\"other\",status=\"404\"} 1000"),
            "{text}"
        );
        assert!(text.len() < 4096, "{} bytes", text.len());
    }
}
