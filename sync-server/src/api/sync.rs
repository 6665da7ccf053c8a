//! The box's side of the API: trading a provisioning code for a device token, pushing outbox
//! events, pulling the school's change feed. A device only ever reaches its own school: every
//! call uses the school of the device the token belongs to, never one named by the request.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use serde::Deserialize;
use shared_proto::OLDEST_PROTOCOL_VERSION;
use shared_proto::sync::{
    Change, MAX_PULL_LIMIT, MAX_PUSH_EVENTS, PROTOCOL_HEADER, ProvisionRequest, ProvisionResponse,
    PullResponse, PushRequest, PushResponse, check_protocol, decode_push, decode_versioned, speaks,
};

use super::auth::{ClientIp, DeviceAuth, new_token, normalize_code, secret_hash};
use super::{AppState, BodyBytes, codec, openapi};
use crate::api::ApiError;
use crate::domain::event::Event;
use crate::domain::push::Refused;
use crate::store::{Device, Seen, rules};

/// Default page size of a pull.
const DEFAULT_PULL_LIMIT: usize = 500;
/// Longest device name, in characters.
const MAX_DEVICE_NAME_CHARS: usize = 100;

/// Checks `x-rollcall-protocol` and returns the version the peer speaks: a request without the
/// header is answered as the oldest version served, so it is sent nothing it cannot read. A body's
/// `protocol` is checked too.
fn check_protocol_header(headers: &HeaderMap) -> Result<u32, ApiError> {
    let Some(value) = headers.get(PROTOCOL_HEADER) else {
        return Ok(OLDEST_PROTOCOL_VERSION);
    };
    let version: u32 = value
        .to_str()
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .ok_or_else(|| {
            ApiError::InvalidRequest(format!("header {PROTOCOL_HEADER} is not a version number"))
        })?;
    Ok(check_protocol(version)?)
}

/// `POST /v1/devices/provision` (public).
#[utoipa::path(
    post,
    path = "/v1/devices/provision",
    summary = "A box trades a one-time provisioning code for its device token. Unknown code: 400, used or expired: 410, both `provisioning_code_invalid`.",
    request_body = ProvisionRequest,
    responses(
        (status = 200, description = "ok", body = ProvisionResponse),
        (status = 400, description = openapi::E400, body = openapi::ErrorJson),
        (status = 410, description = openapi::E410, body = openapi::ErrorJson),
        (status = 413, description = openapi::E413, body = openapi::ErrorJson),
        (status = 429, description = openapi::E429, body = openapi::ErrorJson),
    ),
)]
pub(super) async fn provision(
    State(state): State<AppState>,
    client_ip: ClientIp,
    headers: HeaderMap,
    BodyBytes(body): BodyBytes,
) -> Result<Json<ProvisionResponse>, ApiError> {
    check_protocol_header(&headers)?;
    let request: ProvisionRequest = decode_versioned(&body)?;
    let now = state.now();
    let name = request
        .name
        .map(|name| name.trim().to_owned())
        .unwrap_or_default();
    if name.chars().count() > MAX_DEVICE_NAME_CHARS {
        return Err(ApiError::InvalidRequest(format!(
            "the device name is longer than {MAX_DEVICE_NAME_CHARS} characters"
        )));
    }

    let token = new_token();
    let device = Device {
        id: uuid::Uuid::now_v7().to_string(),
        // The store takes the school from the code.
        school_id: String::new(),
        // Empty: the store names the box after the code's device_name, if the admin gave one.
        name,
        token_hash: secret_hash(&token),
        created_at: now,
        revoked_at: None,
        last_seen_at: Some(now),
        activity: Default::default(),
    };
    let code_hash = secret_hash(&normalize_code(&request.code));
    // Codes are short enough to type, so guessing them is throttled like passwords are, in a
    // bucket of their own: a school's failed logins do not stop its boxes being provisioned.
    let keys = [format!("code-from:{}", client_ip.key())];
    state.shared.code_failures.reserve(&keys, now)?;
    match state
        .store()
        .redeem_provisioning_code(&code_hash, &device, now)
        .await?
    {
        Ok(device) => {
            state.shared.code_failures.forgive(&keys, now);
            tracing::info!(device_id = %device.id, school_id = %device.school_id, "device provisioned");
            Ok(Json(ProvisionResponse {
                device_id: device.id,
                school_id: device.school_id,
                token,
            }))
        }
        Err(refusal) => Err(ApiError::ProvisioningCode(refusal)),
    }
}

/// `POST /v1/sync/push`: applies a batch of events, all in one store transaction.
#[utoipa::path(
    post,
    path = "/v1/sync/push",
    summary = "Apply a batch of outbox events, idempotent by event id. A newer protocol is refused before the rest is read; over 1000 events: 413 `batch_too_large`; over the body limit: 413 `payload_too_large`. Nothing is applied on any error.",
    request_body = PushRequest,
    responses(
        (status = 200, description = "ok", body = PushResponse),
        (status = 400, description = openapi::E400, body = openapi::ErrorJson),
        (status = 413, description = openapi::E413, body = openapi::ErrorJson),
    ),
    security(("device" = [])),
    extensions(("x-rollcall-access" = json!("device"))),
)]
pub(super) async fn push(
    State(state): State<AppState>,
    DeviceAuth { device }: DeviceAuth,
    headers: HeaderMap,
    BodyBytes(body): BodyBytes,
) -> Result<Json<PushResponse>, ApiError> {
    check_protocol_header(&headers)?;
    let request = decode_push(&body)?;
    if request.events.len() > MAX_PUSH_EVENTS {
        return Err(ApiError::BatchTooLarge {
            found: request.events.len(),
            max: MAX_PUSH_EVENTS,
        });
    }
    let n_events = request.events.len();
    let report = request.report;
    let now = state.now();
    let max_ahead_ms = state.limits().max_clock_ahead_ms;
    let mut ahead: Vec<Refused> = Vec::new();
    let events: Vec<Event> = request
        .events
        .into_iter()
        .map(Event::from)
        .filter(|event| match rules::check_clock(event, now, max_ahead_ms) {
            Ok(()) => true,
            Err(refused) => {
                ahead.push(refused);
                false
            }
        })
        .collect();
    // The box's model, as its own enrolments show it: the space of the last template it sent.
    let space = events.iter().rev().find_map(|event| match &event.body {
        crate::domain::event::Body::TemplateAdded(template) => {
            Some(template.embedding.space.as_str().to_owned())
        }
        _ => None,
    });
    let mut outcome = state.store().apply_events(&device, &events, now).await?;
    outcome.refused.extend(ahead);
    let response = PushResponse::from(outcome);
    state
        .device_seen(
            &device.id,
            Seen::Push(report.map(|r| codec::box_state(r, now)), space),
        )
        .await?;
    state
        .metrics()
        .count_events(response.acked.len(), response.rejected.len());
    tracing::info!(
        device_id = %device.id,
        n_events,
        n_acked = response.acked.len(),
        n_rejected = response.rejected.len(),
        "push applied"
    );
    Ok(Json(response))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct PullParams {
    /// Decimal cursor from the last page's next_cursor; default 0.
    cursor: Option<String>,
    /// Page size; default 500, at most 1000.
    limit: Option<String>,
}

/// `GET /v1/sync/pull?cursor=C&limit=N`: the device's school's changes after `C`.
#[utoipa::path(
    get,
    path = "/v1/sync/pull",
    summary = "The device's school's changes after the cursor, in server order.",
    params(PullParams),
    responses(
        (status = 200, description = "ok", body = PullResponse),
        (status = 400, description = openapi::E400, body = openapi::ErrorJson),
    ),
    security(("device" = [])),
    extensions(("x-rollcall-access" = json!("device"))),
)]
pub(super) async fn pull(
    State(state): State<AppState>,
    DeviceAuth { device }: DeviceAuth,
    headers: HeaderMap,
    params: Result<Query<PullParams>, QueryRejection>,
) -> Result<Json<PullResponse>, ApiError> {
    let version = check_protocol_header(&headers)?;
    let Query(params) =
        params.map_err(|e| ApiError::InvalidRequest(format!("bad query string: {e}")))?;
    let cursor = match params.cursor.as_deref() {
        None | Some("") => 0,
        Some(text) => text.parse::<u64>().map_err(|_| {
            ApiError::InvalidRequest(format!(
                "cursor \"{text}\" is not a cursor this server gave out (a decimal number)"
            ))
        })?,
    };
    let limit = match params.limit.as_deref() {
        None | Some("") => DEFAULT_PULL_LIMIT,
        Some(text) => match text.parse::<usize>() {
            Ok(0) | Err(_) => {
                return Err(ApiError::InvalidRequest(format!(
                    "limit \"{text}\" is not a positive number"
                )));
            }
            // Larger asks are served at the cap: the box pages on with `more`.
            Ok(limit) => limit.min(MAX_PULL_LIMIT),
        },
    };
    let page = state.store().pull(&device.school_id, cursor, limit).await?;
    state.device_seen(&device.id, Seen::Pull(cursor)).await?;
    state.metrics().count_pull_page();
    Ok(Json(PullResponse {
        protocol: version,
        changes: page
            .changes
            .into_iter()
            .map(Change::from)
            .filter(|change| speaks(version, &change.body))
            .collect(),
        next_cursor: page.next_cursor.to_string(),
        more: page.more,
    }))
}
