//! The HTTP API: the router and its shared state (`AppState` over an `Arc<dyn Store>`), the route
//! table that both the router and `/openapi.json` come from (`utoipa_axum`), and the body
//! extractors that turn every bad body into an `ApiError`. Handlers live by noun: `auth`, `sync`,
//! `admin`, `attendance`, `roster`, `ops`.
//!
//! Storage types never cross this boundary as JSON: each handler converts them into the small
//! response structs of its module.

pub(crate) mod admin;
pub(crate) mod attendance;
pub(crate) mod auth;
pub mod codec;
pub(crate) mod enrol;
mod error;
mod guard;
mod openapi;
mod ops;
mod passwords;
pub(crate) mod roster;
mod sync;
mod transport;

use std::future::Future;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Request};
use axum::http::Method;
use axum::routing::get;
use serde::de::DeserializeOwned;
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;

pub use auth::{MIN_PASSWORD_CHARS, PasswordError, hash_password};
pub use enrol::{EnrolmentJson, JobJson, PhotoJson, ServiceJson};
pub use error::ApiError;
pub use ops::Metrics;
pub use transport::{TlsError, Transport, serve_router};

use crate::store::{BoxState, Millis, Seen, Store, StoreError};

/// Where "now" comes from, so expiry and rate-limit tests need not sleep.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Millis;
}

/// The system clock, in milliseconds since the Unix epoch.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Millis {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_millis() as Millis)
    }
}

/// Sizes and lifetimes the API enforces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest JSON body, in bytes. Default 4 MiB: a full push of 1000 events with templates
    /// is about 3 MiB.
    pub max_body_bytes: usize,
    /// Largest roster upload (all CSV files together), in bytes. Default 32 MiB.
    pub max_roster_bytes: usize,
    /// How long a login lasts, in milliseconds. Default 12 h.
    pub session_ttl_ms: Millis,
    /// Failed logins per username from one address allowed per minute. Default 5.
    pub login_failures_per_minute: usize,
    /// Failed logins per client address allowed per minute. Default 20: a school's staff may
    /// share one address.
    pub address_failures_per_minute: usize,
    /// Failed logins per username from all addresses together per minute, except from
    /// addresses that logged in to it before. Default 30.
    pub account_failures_per_minute: usize,
    /// Wrong provisioning codes per client address allowed per minute. Default 10.
    pub code_failures_per_minute: usize,
    /// Password checks run at once (see `passwords`). Default: one per CPU, 2 to 4.
    pub password_workers: usize,
    /// Seconds to send a request's head, or to start the next one on an idle connection.
    /// Default 20.
    pub header_timeout_seconds: u32,
    /// Longest pause while a request body arrives, in seconds. Default 30.
    pub body_timeout_seconds: u32,
    /// How far ahead of the server's clock an event's times may be, in milliseconds. Default 24 h.
    pub max_clock_ahead_ms: Millis,
    /// When set, `/metrics` needs `Authorization: Bearer <this>`.
    pub metrics_token: Option<String>,
    /// False when `/metrics` is served on its own address instead (`metrics_router`).
    pub metrics_on_api: bool,
    /// The web pages' cookies are `Secure`: the server serves TLS.
    pub secure_cookies: bool,
    /// The server sends notices (`[smtp]` is set): the notices page says so when not.
    pub sends_notices: bool,
    /// `smtp.public_url`: where guardians' unsubscribe links point (the preview shows it).
    pub public_url: Option<String>,
    /// Largest upload of photos for central enrolment (`ml.max_upload_bytes`; the roster's limit
    /// when there is no `[ml]`).
    pub max_upload_bytes: usize,
}

/// The configuration's defaults: one place says what they are (`Config`).
impl Default for Limits {
    fn default() -> Self {
        Limits::from(&crate::Config::defaults())
    }
}

impl From<&crate::Config> for Limits {
    fn from(config: &crate::Config) -> Self {
        Limits {
            // Guessing limits are not configurable: a school has no reason to loosen them.
            login_failures_per_minute: 5,
            address_failures_per_minute: 20,
            account_failures_per_minute: 30,
            code_failures_per_minute: 10,
            max_body_bytes: config.max_body_bytes,
            max_roster_bytes: config.max_roster_bytes,
            session_ttl_ms: Millis::from(config.session_minutes) * 60_000,
            password_workers: config.password_workers(),
            header_timeout_seconds: config.header_timeout_seconds,
            body_timeout_seconds: config.body_timeout_seconds,
            max_clock_ahead_ms: Millis::from(config.max_clock_ahead_hours) * 60 * 60 * 1000,
            metrics_token: config.metrics_token.clone(),
            metrics_on_api: config.metrics_listen.is_none(),
            secure_cookies: config.tls.is_some(),
            sends_notices: config.smtp.is_some(),
            public_url: config.smtp.as_ref().map(|s| s.public_url.clone()),
            max_upload_bytes: config
                .ml
                .as_ref()
                .map_or(config.max_roster_bytes, |ml| ml.max_upload_bytes),
        }
    }
}

impl Limits {
    /// `header_timeout_seconds` as the transport takes it.
    pub fn header_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(u64::from(self.header_timeout_seconds))
    }
}

/// What every handler shares; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    shared: Arc<Shared>,
}

struct Shared {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    limits: Limits,
    metrics: Metrics,
    login_throttle: auth::LoginThrottle,
    code_failures: auth::FailureLimiter,
    passwords: passwords::PasswordWorkers,
    /// What was last written of each device's pushes and pulls (`device_seen`), and when, by this
    /// process's clock.
    last_seen_written: std::sync::Mutex<std::collections::HashMap<(String, bool), (Millis, Seen)>>,
    /// The web pages' caches (`web::Caches`).
    web: crate::web::Caches,
    /// Central enrolment, when `[ml]` is configured (`set_enroller`).
    enroller: std::sync::OnceLock<Arc<crate::ml_client::Enroller>>,
}

/// A device's "last seen" is for people ("synced 2 minutes ago"): writing it at most this often
/// keeps a durable write (an fsync on the embedded store) off almost every sync request.
const LAST_SEEN_EVERY_MS: Millis = 30_000;

impl AppState {
    pub fn new(store: Arc<dyn Store>, limits: Limits) -> AppState {
        AppState::with_clock(store, limits, Arc::new(SystemClock))
    }

    pub fn with_clock(store: Arc<dyn Store>, limits: Limits, clock: Arc<dyn Clock>) -> AppState {
        AppState {
            shared: Arc::new(Shared {
                login_throttle: auth::LoginThrottle::new(&limits),
                code_failures: auth::FailureLimiter::new(limits.code_failures_per_minute, 60_000),
                passwords: passwords::PasswordWorkers::start(limits.password_workers),
                store,
                clock,
                limits,
                metrics: Metrics::default(),
                last_seen_written: Default::default(),
                web: Default::default(),
                enroller: Default::default(),
            }),
        }
    }

    pub fn store(&self) -> &dyn Store {
        self.shared.store.as_ref()
    }

    /// Turns central enrolment on (once, before serving).
    pub fn set_enroller(&self, enroller: Arc<crate::ml_client::Enroller>) {
        let _ = self.shared.enroller.set(enroller);
    }

    pub(crate) fn enroller(&self) -> Option<&Arc<crate::ml_client::Enroller>> {
        self.shared.enroller.get()
    }

    pub(crate) fn web_caches(&self) -> &crate::web::Caches {
        &self.shared.web
    }

    pub fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    pub(crate) fn now(&self) -> Millis {
        self.shared.clock.now()
    }

    /// Records a box's push or pull. Written at once when it tells something new (a pull from a
    /// cursor further on: the box has applied more, perhaps an erasure; another app version; a
    /// clock that the clock rule now judges otherwise), else at most every `LAST_SEEN_EVERY_MS`:
    /// an outbox depth or a clock's seconds up to that old are fine for people.
    async fn device_seen(&self, device_id: &str, seen: Seen) -> Result<(), StoreError> {
        let now = self.now();
        let news = |held: &Seen| match (held, &seen) {
            (Seen::Pull(held), Seen::Pull(cursor)) => cursor > held,
            (Seen::Push(held, held_space), Seen::Push(state, space)) => {
                let clock = |state: &Option<BoxState>| {
                    state
                        .as_ref()
                        .and_then(|s| s.clock_offset_ms)
                        .map(shared_proto::clock::verdict)
                };
                held.as_ref().map(|s| &s.app_version) != state.as_ref().map(|s| &s.app_version)
                    || (space.is_some() && space != held_space)
                    || clock(held) != clock(state)
            }
            _ => true,
        };
        {
            let mut written = self
                .shared
                .last_seen_written
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let key = (device_id.to_owned(), matches!(seen, Seen::Pull(_)));
            match written.get(&key) {
                Some((at, held)) if now - at < LAST_SEEN_EVERY_MS && !news(held) => return Ok(()),
                _ => {
                    written.insert(key, (now, seen.clone()));
                }
            }
        }
        self.store().device_seen(device_id, &seen, now).await
    }

    /// Appends a line to `school_id`'s audit log for an action already done (a decision of the
    /// domain layer writes its own, in its transaction).
    pub(crate) async fn audit(
        &self,
        school_id: Option<&str>,
        actor: &str,
        action: crate::domain::audit::Action,
        subject: &str,
        detail: String,
    ) -> Result<(), StoreError> {
        self.store()
            .append_audit(&crate::domain::audit::Entry {
                school_id: school_id.map(str::to_owned),
                at: self.now(),
                actor: actor.to_owned(),
                action,
                subject: subject.to_owned(),
                detail,
            })
            .await
    }

    pub(crate) fn limits(&self) -> &Limits {
        &self.shared.limits
    }
}

/// Every route: each handler's `#[utoipa::path]` says its method and path template and documents
/// it, so the router and `/openapi.json` come from this one list and cannot disagree. A handler
/// goes in with `routes!` of its own: its body limit is layered on it alone (`body_limit`).
fn route_table() -> Vec<UtoipaMethodRouter<AppState>> {
    vec![
        routes!(ops::healthz),
        routes!(ops::readyz),
        routes!(ops::metrics),
        routes!(openapi::document),
        routes!(auth::login),
        routes!(auth::logout),
        routes!(sync::provision),
        routes!(sync::push),
        routes!(sync::pull),
        routes!(admin::list_schools),
        routes!(admin::create_school),
        routes!(admin::create_provisioning_code),
        routes!(admin::list_devices),
        routes!(admin::revoke_device),
        routes!(admin::list_sections),
        routes!(admin::upsert_section),
        routes!(admin::list_students),
        routes!(admin::upsert_student),
        routes!(admin::set_consent),
        routes!(admin::erase_student),
        routes!(admin::list_enrolments),
        routes!(admin::upsert_enrolment),
        routes!(admin::get_schedule),
        routes!(admin::set_schedule),
        routes!(roster::upload),
        routes!(enrol::student_photos),
        routes!(enrol::zip_photos),
        routes!(enrol::job),
        routes!(enrol::overview),
        routes!(enrol::reembed),
        routes!(admin::create_user),
        routes!(attendance::by_section),
        routes!(attendance::by_student),
    ]
}

/// The largest body a route takes: a whole OneRoster export is larger than any JSON body, and
/// only its upload takes that much.
fn body_limit(path: &str, limits: &Limits) -> usize {
    match path {
        "/v1/schools/{school}/roster" => limits.max_roster_bytes,
        "/v1/schools/{school}/photos" | "/v1/schools/{school}/students/{student}/photos" => {
            limits.max_upload_bytes
        }
        _ => limits.max_body_bytes,
    }
}

/// The one path template of a `routes!` entry.
fn path_of(entry: &UtoipaMethodRouter<AppState>) -> &str {
    let mut paths = entry.1.paths.keys();
    match (paths.next(), paths.next()) {
        (Some(path), None) => path,
        _ => unreachable!("every entry of the route table is one handler of one path"),
    }
}

/// The (method, path template) of every route the router serves.
pub fn served_routes() -> Vec<(Method, String)> {
    route_table()
        .iter()
        .flat_map(|(_, paths, _)| {
            paths.paths.iter().flat_map(|(path, item)| {
                openapi::operations(item)
                    .into_iter()
                    .map(|(method, _)| (method, path.clone()))
            })
        })
        .collect()
}

/// The OpenAPI document of the route table (served at `/openapi.json`).
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    let mut document = route_table()
        .into_iter()
        .fold(
            OpenApiRouter::with_openapi(openapi::base()),
            OpenApiRouter::routes,
        )
        .into_openapi();
    openapi::finish(&mut document);
    document
}

pub fn router(state: AppState) -> Router {
    let mut router = OpenApiRouter::new();
    for entry in route_table() {
        let limit = body_limit(path_of(&entry), state.limits());
        let entry =
            entry.map(|handler| {
                handler.layer(DefaultBodyLimit::max(limit)).layer(
                    axum::middleware::from_fn_with_state(limit, guard::refuse_oversized),
                )
            });
        // Routes of one path with different methods merge into one method router.
        router = router.routes(entry);
    }
    let (router, _) = router.split_for_parts();
    router
        .merge(crate::web::routes(
            state.limits().max_roster_bytes,
            state.limits().max_upload_bytes,
        ))
        .fallback(ops::no_route)
        .method_not_allowed_fallback(ops::method_not_allowed)
        .layer(DefaultBodyLimit::max(state.limits().max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            guard::guard,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            ops::observe,
        ))
        .with_state(state)
}

/// `/metrics` alone, for `metrics_listen`: scrapers on another address than the API's.
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(ops::metrics_only))
        .fallback(ops::no_route)
        .with_state(state)
}

/// Serves the API over plain HTTP on `listener` until `shutdown` resolves, then finishes the
/// requests in flight (`serve_router` for HTTPS or another router).
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let transport = Transport::plain(state.limits().header_timeout());
    serve_router(listener, router(state), transport, shutdown).await
}

/// A request body as bytes, with axum's rejections turned into `ApiError`s: over the body limit
/// is `payload_too_large`, anything else unreadable is `invalid_json`.
pub(crate) struct BodyBytes(pub Bytes);

impl FromRequest<AppState> for BodyBytes {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        Bytes::from_request(request, state)
            .await
            .map(BodyBytes)
            .map_err(|rejection| {
                if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::PayloadTooLarge {
                        limit_bytes: state.limits().max_body_bytes,
                    }
                } else if guard::is_body_timeout(&rejection) {
                    ApiError::BodyTimeout {
                        timeout_s: state.limits().body_timeout_seconds,
                    }
                } else {
                    ApiError::InvalidJson(rejection.body_text())
                }
            })
    }
}

/// A JSON body of type `T`; any body that is not that JSON is `invalid_json` with serde's reason.
pub(crate) struct JsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let BodyBytes(bytes) = BodyBytes::from_request(request, state).await?;
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|e| ApiError::InvalidJson(format!("invalid JSON body: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// Every route the table serves is in the document with its method, and nothing else is.
    #[test]
    fn openapi_documents_every_route_of_the_table() {
        let served: BTreeSet<(String, String)> = served_routes()
            .into_iter()
            .map(|(method, path)| (method.as_str().to_owned(), path))
            .collect();
        let document = openapi_document();
        let documented: BTreeSet<(String, String)> = document
            .paths
            .paths
            .iter()
            .flat_map(|(path, item)| {
                openapi::operations(item)
                    .into_iter()
                    .map(|(method, _)| (method.as_str().to_owned(), path.clone()))
            })
            .collect();
        assert_eq!(served, documented);
        assert_eq!(served.len(), route_table().len());
    }
}
