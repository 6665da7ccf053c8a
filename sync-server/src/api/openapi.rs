//! `/openapi.json`, generated from the code: the route table (`mod.rs`) collects each handler's
//! `#[utoipa::path]` (method, path, summary, bodies, responses, security) and the `ToSchema` of
//! the types it names, the vocabulary enums' words included. This module adds only what many
//! routes share: the document's head and security schemes, the path parameters a template names,
//! and the error responses a route's access level and its `{school}` imply.

use std::sync::OnceLock;

use axum::http::{Method, header};
use axum::response::IntoResponse;
use utoipa::PartialSchema;
use utoipa::openapi::path::{Operation, ParameterBuilder, ParameterIn, PathItem};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{
    ComponentsBuilder, ContentBuilder, InfoBuilder, OpenApi, OpenApiBuilder, Ref, RefOr, Required,
    ResponseBuilder,
};

/// The body of every error response.
pub(super) type ErrorJson = shared_proto::sync::ApiError;

/// The operation extension that says who may call a route: `admin`, `admin or teacher` or
/// `device`; a public route has none. Tests read it to call each route with the wrong token.
pub(super) const ACCESS: &str = "x-rollcall-access";

// What each error status means here: the `code`s a client may get with it.
pub(super) const E400: &str = "`invalid_json`, `invalid_request` or `unsupported_protocol`";
pub(super) const E401: &str = "`unauthorized` (no, unknown or expired token) or `token_revoked`";
pub(super) const E403: &str =
    "`forbidden` (wrong role, a teacher outside their sections) or `wrong_school`";
pub(super) const E404: &str = "`not_found`";
pub(super) const E409: &str = "`conflict`";
pub(super) const E410: &str = "`provisioning_code_invalid` (used or expired)";
pub(super) const E413: &str = "`payload_too_large` or `batch_too_large`";
pub(super) const E422: &str = "`invalid_roster`";
pub(super) const E429: &str = "`rate_limited`; see Retry-After";
pub(super) const E500: &str = "`internal`";
pub(super) const E503: &str = "`unavailable`; see Retry-After";

/// What every document starts from: its head and the three ways to present a token.
pub(super) fn base() -> OpenApi {
    let bearer = |description: &str| {
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some(description))
                .build(),
        )
    };
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("Rollcall sync server")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "Device sync (protocol v1), accounts and the admin API. Every error body is an ApiError with the request id; every response carries X-Request-Id.",
                ))
                .build(),
        )
        .components(Some(
            ComponentsBuilder::new()
                .security_scheme(
                    "session",
                    bearer("A login token from POST /v1/auth/login."),
                )
                .security_scheme(
                    "device",
                    bearer("A device token from POST /v1/devices/provision."),
                )
                .security_scheme(
                    "metrics",
                    bearer("The configured metrics_token; /metrics is open without one."),
                )
                .schema("ApiError", ErrorJson::schema())
                .build(),
        ))
        .build()
}

/// Every operation of a path item with its method.
pub(super) fn operations(item: &PathItem) -> Vec<(Method, &Operation)> {
    [
        (Method::GET, &item.get),
        (Method::PUT, &item.put),
        (Method::POST, &item.post),
        (Method::DELETE, &item.delete),
        (Method::OPTIONS, &item.options),
        (Method::HEAD, &item.head),
        (Method::PATCH, &item.patch),
        (Method::TRACE, &item.trace),
    ]
    .into_iter()
    .filter_map(|(method, operation)| Some((method, operation.as_ref()?)))
    .collect()
}

fn operations_mut(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.options,
        &mut item.head,
        &mut item.patch,
        &mut item.trace,
    ]
    .into_iter()
    .filter_map(Option::as_mut)
}

/// Adds to every operation what its path and access imply: a string parameter per `{name}` of
/// the template, no security for a public route, 401 and 403 for a route that takes a token, 403 for a route of one school, and
/// 500 for all.
pub(super) fn finish(document: &mut OpenApi) {
    for (path, item) in document.paths.paths.iter_mut() {
        let names: Vec<&str> = path
            .split('/')
            .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
            .collect();
        for operation in operations_mut(item) {
            let parameters = operation.parameters.get_or_insert_with(Vec::new);
            for (at, name) in names.iter().enumerate() {
                let declared = parameters.iter().any(
                    |parameter| matches!(parameter, RefOr::T(parameter) if parameter.name == *name),
                );
                if declared {
                    continue;
                }
                let parameter = ParameterBuilder::new()
                    .name(*name)
                    .parameter_in(ParameterIn::Path)
                    .required(Required::True)
                    .schema(Some(String::schema()))
                    .build();
                parameters.insert(at, parameter.into());
            }
            if parameters.is_empty() {
                operation.parameters = None;
            }
            // Said outright for public routes, so no client guesses a token is wanted.
            operation.security.get_or_insert_with(Vec::new);
            let needs_token = operation
                .extensions
                .as_ref()
                .is_some_and(|extensions| extensions.contains_key(ACCESS));
            let mut errors: Vec<(u16, &str)> = Vec::new();
            if needs_token {
                errors.extend([(401, E401), (403, E403)]);
            }
            if names.contains(&"school") {
                errors.push((403, E403));
            }
            errors.push((500, E500));
            for (status, description) in errors {
                operation
                    .responses
                    .responses
                    .entry(status.to_string())
                    .or_insert_with(|| error_response(description).into());
            }
        }
    }
}

fn error_response(description: &str) -> utoipa::openapi::Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ApiError")))
                .build(),
        )
        .build()
}

/// The document, made once from the route table.
fn document_json() -> &'static str {
    static DOCUMENT: OnceLock<String> = OnceLock::new();
    DOCUMENT.get_or_init(|| {
        serde_json::to_string(&super::openapi_document())
            .expect("an OpenAPI document always serializes")
    })
}

/// `GET /openapi.json`.
#[utoipa::path(
    get,
    path = "/openapi.json",
    summary = "This document.",
    responses((status = 200, description = "ok", body = Object)),
)]
pub(super) async fn document() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        document_json(),
    )
}
