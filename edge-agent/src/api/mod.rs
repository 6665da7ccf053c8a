//! The ML service (issue 17): `edge-agent serve` answers the legacy ML service's calls over HTTP,
//! with the box's own pipeline and rules: detect faces, encode a photo's one usable face, match two
//! faces, and match a frame against a gallery it is sent with the same one-to-one assignment and
//! present / review / unknown decision a capture makes (`attendance::capture::match_frame`).
//!
//! Inference runs on a fixed `Pool` of pipelines, never on the async threads; a full queue is
//! answered 503 with `Retry-After`. Every call but `/health` needs the API key, of which only the
//! sha256 is configured. Each request has an id (`X-Request-Id`, kept when sane, else made), in
//! its log line, its response header and any error body. Wire types: `shared_proto::ml::service`.

mod galleries;
mod metrics;
mod ml;
pub mod pool;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use sha2::{Digest, Sha256};
use shared_proto::ml::service::{self as wire, ErrorBody, StatusResponse};
use shared_proto::sync::{REQUEST_ID_HEADER, is_sane_request_id};

use crate::capture::ImageLimits;
use crate::vision::Pipeline;
pub use metrics::{Metrics, Stage};
use pool::{Pool, PoolError};

/// What `serve` needs besides the pipelines.
pub struct ServeOptions {
    pub listen: String,
    /// sha256 (hex, lower case) of the API key.
    pub api_key_sha256: String,
    pub queue: usize,
    pub max_body_bytes: usize,
    /// `enrol-faces` galleries kept for later calls (0: none).
    pub kept_galleries: usize,
    pub image_limits: ImageLimits,
    /// What `/v1/ml/status` says (filled from the first pipeline and the runtime).
    pub status: StatusResponse,
}

pub(crate) struct Service {
    pool: Pool,
    key_sha256: String,
    limits: ImageLimits,
    status: StatusResponse,
    metrics: Metrics,
    /// Galleries sent with `enrol-faces`, for later calls to name.
    galleries: galleries::Galleries,
}

type AppState = Arc<Service>;

/// The sha256 (hex) of an API key, as `[serve] api_key_sha256` holds it.
pub fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.trim().as_bytes()))
}

/// Serves until SIGINT or SIGTERM. Prints `listening on ADDR` once bound (port 0 picks one).
pub async fn serve(options: ServeOptions, pipelines: Vec<Pipeline>) -> Result<()> {
    let service = Arc::new(Service {
        pool: Pool::start(pipelines, options.queue),
        key_sha256: options.api_key_sha256.to_ascii_lowercase(),
        limits: options.image_limits,
        status: options.status,
        metrics: Metrics::default(),
        galleries: galleries::Galleries::new(options.kept_galleries),
    });
    let app = router(Arc::clone(&service), options.max_body_bytes);
    let listener = tokio::net::TcpListener::bind(&options.listen)
        .await
        .with_context(|| format!("cannot listen on {}", options.listen))?;
    let addr: SocketAddr = listener.local_addr()?;
    println!("listening on {addr}");
    tracing::info!(%addr, pipelines = service.pool.pipelines(), queue = service.pool.capacity(), "ML service ready");
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown())
        .await
        .context("the ML service stopped")
}

/// Resolves on Ctrl-C or SIGTERM (systemd's stop): the ML service's and the daemon's.
pub(crate) async fn shutdown() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}

fn router(service: AppState, max_body_bytes: usize) -> Router {
    Router::new()
        .route(wire::HEALTH, get(ml::health))
        .route(wire::STATUS, get(ml::status))
        .route(wire::METRICS, get(ml::metrics))
        .route(wire::DETECT_FACES, post(ml::detect_faces))
        .route(wire::ENCODE_FACE, post(ml::encode_face))
        .route(wire::MATCH_FACES, post(ml::match_faces))
        .route(wire::BATCH_MATCH, post(ml::batch_match))
        .route(wire::ENROL_FACES, post(ml::enrol_faces))
        .route(wire::EMBED_CROPS, post(ml::embed_crops))
        .fallback(|| async { ApiError::NotFound })
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&service),
            guard,
        ))
        .with_state(service)
}

/// Every request: its id, the API key (all but `/health`), its log line and metrics, and the
/// request id written into an error body.
async fn guard(State(service): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let request_id = request
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|id| is_sane_request_id(id))
        .map_or_else(|| uuid::Uuid::now_v7().to_string(), str::to_owned);
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_owned();
    let path = request.uri().path().to_owned();
    let response = if path != wire::HEALTH && !service.authorised(&request) {
        service.metrics.count_unauthorized();
        ApiError::Unauthorized.into_response()
    } else {
        next.run(request).await
    };
    let status = response.status();
    let mut response = if status.is_client_error() || status.is_server_error() {
        with_request_id(response, &request_id).await
    } else {
        response
    };
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    let seconds = started.elapsed().as_secs_f64();
    service.metrics.count_request(&route, status.as_u16());
    service.metrics.time(&route, Stage::Request, seconds);
    tracing::info!(
        request_id,
        route,
        status = status.as_u16(),
        ms = seconds * 1e3,
        "request"
    );
    response
}

impl Service {
    fn authorised(&self, request: &Request) -> bool {
        let headers = request.headers();
        let key = headers
            .get(wire::API_KEY_HEADER)
            .and_then(|v| v.to_str().ok())
            .or_else(|| {
                headers
                    .get(header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("Bearer "))
            });
        key.is_some_and(|key| hash_key(key) == self.key_sha256)
    }
}

/// An error body (ours, or axum's own rejection in plain text) as `ErrorBody` with the id.
async fn with_request_id(response: Response, request_id: &str) -> Response {
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, 64 * 1024)
        .await
        .unwrap_or_default();
    let mut error: ErrorBody = serde_json::from_slice(&bytes).unwrap_or_else(|_| ErrorBody {
        error: match parts.status {
            StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
            StatusCode::NOT_FOUND => "not_found",
            StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
            s if s.is_server_error() => "internal",
            _ => "invalid_request",
        }
        .to_owned(),
        message: String::from_utf8_lossy(&bytes).trim().to_owned(),
        request_id: String::new(),
    });
    error.request_id = request_id.to_owned();
    let mut parts = parts;
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(
        parts,
        axum::body::Body::from(serde_json::to_vec(&error).unwrap_or_default()),
    )
}

/// Why a call has no answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApiError {
    #[error("an API key is required (X-Api-Key or Authorization: Bearer), and this one is not it")]
    Unauthorized,
    #[error("{0}")]
    Busy(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    TooLarge(String),
    /// The image has no usable answer: its code and why.
    #[error("{message}")]
    Image {
        code: shared_proto::ml::ErrorCode,
        message: String,
    },
    /// An `enrol-faces` call names a gallery this service does not keep (any more).
    #[error("{0}")]
    GalleryUnknown(String),
    #[error("{0}")]
    Internal(String),
    #[error("no such endpoint")]
    NotFound,
}

impl From<PoolError> for ApiError {
    fn from(e: PoolError) -> ApiError {
        match e {
            PoolError::Busy { .. } => ApiError::Busy(e.to_string()),
            PoolError::Stopped => ApiError::Internal(e.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = match &self {
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized".to_owned()),
            ApiError::Busy(_) => (StatusCode::SERVICE_UNAVAILABLE, "busy".to_owned()),
            ApiError::Invalid(_) => (StatusCode::BAD_REQUEST, "invalid_request".to_owned()),
            ApiError::TooLarge(_) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large".to_owned(),
            ),
            ApiError::Image { code, .. } => (
                match code {
                    shared_proto::ml::ErrorCode::ImageTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
                    shared_proto::ml::ErrorCode::Inference => StatusCode::INTERNAL_SERVER_ERROR,
                    _ => StatusCode::UNPROCESSABLE_ENTITY,
                },
                code.as_str().to_owned(),
            ),
            ApiError::GalleryUnknown(_) => (StatusCode::CONFLICT, wire::GALLERY_UNKNOWN.to_owned()),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal".to_owned()),
            ApiError::NotFound => (StatusCode::NOT_FOUND, "not_found".to_owned()),
        };
        let body = ErrorBody {
            error: code,
            message: self.to_string(),
            request_id: String::new(),
        };
        let mut response = (status, axum::Json(body)).into_response();
        if let ApiError::Busy(_) = self {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}
