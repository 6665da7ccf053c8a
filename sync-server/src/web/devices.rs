//! The school's boxes, for its admins: when each last synced, which are revoked; a one-time
//! provisioning code for a new box (shown once); revoking a box after a confirmation. The rules
//! (code lifetime, what revoking does) are the API's (`api::admin`), called from here.

use crate::api::attendance::time_zone;
use askama::Template;
use askama_web::WebTemplate;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use jiff::tz::TimeZone;
use serde::Deserialize;
use shared_proto::clock::{self, ClockVerdict};

use super::session::WebUser;
use super::{Chrome, WebError, admin_school, given, rolls};
use crate::api::admin::{issue_provisioning_code, revoke};
use crate::api::{ApiError, AppState};
use crate::domain::device;
use crate::store::{Device, Millis};

#[derive(Deserialize)]
pub(super) struct SchoolParam {
    school: Option<String>,
    /// After a revocation: the device just revoked, to say so.
    revoked: Option<String>,
}

struct DeviceLine {
    id: String,
    name: String,
    created: String,
    last_seen: String,
    last_push: String,
    last_pull: String,
    /// From the box's last report: (app version, events waiting in its outbox).
    state: Option<(String, u64)>,
    /// From the box's last report, when its clock is off (`shared_proto::clock`): how far, and
    /// whether by more than the rule allows (its marks carry the wrong time).
    clock: Option<(String, bool)>,
    /// The embedding space of the last template it pushed: its recognition model.
    space: Option<String>,
    /// Erasures the box has not purged yet (it has not pulled past them).
    purges_pending: Vec<String>,
    offline: bool,
    revoked: Option<String>,
}

impl DeviceLine {
    fn of(
        device: Device,
        now: Millis,
        offline_after: Millis,
        erasures: &[(u64, String)],
        tz: &TimeZone,
    ) -> DeviceLine {
        let time = |at| rolls::time(at, tz);
        let never = || "never".to_owned();
        DeviceLine {
            last_seen: device.last_seen_at.map_or_else(never, time),
            last_push: device.activity.last_push_at.map_or_else(never, time),
            last_pull: device.activity.last_pull_at.map_or_else(never, time),
            state: device
                .activity
                .state
                .as_ref()
                .map(|s| (s.app_version.clone(), s.outbox_waiting)),
            clock: device::clock_off(&device)
                .map(|(offset, verdict)| (clock::describe(offset), verdict == ClockVerdict::Fail)),
            space: device.activity.embedding_space.clone(),
            purges_pending: device::purges_pending(&device, erasures)
                .map(str::to_owned)
                .collect(),
            offline: device::offline(&device, now, offline_after),
            revoked: device.revoked_at.map(time),
            created: time(device.created_at),
            name: if device.name.is_empty() {
                "(unnamed box)".to_owned()
            } else {
                device.name
            },
            id: device.id,
        }
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "devices.html")]
struct DevicesPage {
    chrome: Chrome,
    lines: Vec<DeviceLine>,
    offline_minutes: u32,
    /// Set right after a code was made: shown this once.
    code: Option<(String, String)>,
    notice: Option<String>,
    /// What IT does about a box whose clock is off (the box's own words).
    clock_fix: &'static str,
}

/// `GET /devices`.
pub(super) async fn page(
    State(state): State<AppState>,
    user: WebUser,
    Query(param): Query<SchoolParam>,
) -> Result<Response, WebError> {
    let Some(school_id) = admin_school(&state, &user, None, param.school, "devices").await? else {
        return Ok(Redirect::to("/").into_response());
    };
    devices_page(&state, &user, school_id, None, param.revoked).await
}

async fn devices_page(
    state: &AppState,
    user: &WebUser,
    school_id: String,
    code: Option<(String, Millis)>,
    revoked: Option<String>,
) -> Result<Response, WebError> {
    let now = state.now();
    let store = state.store();
    let settings = store.school_settings(&school_id).await?;
    let mut devices = store.devices(&school_id).await?;
    devices.sort_by(|a, b| (&a.name, &a.id).cmp(&(&b.name, &b.id)));
    // Erasures after the least advanced live box: every box's pending purges are among them.
    let erasures = match device::least_acked(&devices) {
        Some(least) => store.erasures_since(&school_id, least).await?,
        None => Vec::new(),
    };
    let offline_after = Millis::from(settings.offline_minutes) * 60_000;
    let tz = settings.tz();
    let lines: Vec<DeviceLine> = devices
        .into_iter()
        .map(|d| DeviceLine::of(d, now, offline_after, &erasures, &tz))
        .collect();
    let code = code.map(|(code, expires_at)| (code, rolls::time(expires_at, &tz)));
    let notice = revoked
        .and_then(|id| lines.iter().find(|l| l.id == id && l.revoked.is_some()))
        .map(|l| {
            format!(
                "Revoked {}: its next sync is refused. To use it again, provision it with a new code.",
                l.name
            )
        });
    let page = DevicesPage {
        chrome: Chrome::of(user, Some(school_id)),
        lines,
        offline_minutes: settings.offline_minutes,
        code,
        notice,
        clock_fix: clock::CLOCK_FIX,
    };
    Ok(page.into_response())
}

#[derive(Deserialize)]
pub(super) struct CodeForm {
    csrf: String,
    school: Option<String>,
    device_name: Option<String>,
    /// How long the code works, in hours.
    valid_hours: Option<u32>,
}

/// `POST /devices/codes`: a new code, shown on the page that answers (and never again).
pub(super) async fn create_code(
    State(state): State<AppState>,
    user: WebUser,
    Form(form): Form<CodeForm>,
) -> Result<Response, WebError> {
    let Some(school_id) =
        admin_school(&state, &user, Some(&form.csrf), form.school, "devices").await?
    else {
        return Ok(Redirect::to("/").into_response());
    };
    let ttl_minutes = form.valid_hours.map(|h| h.saturating_mul(60));
    let (code, expires_at) = issue_provisioning_code(
        &state,
        &school_id,
        &user.user,
        given(form.device_name),
        ttl_minutes,
    )
    .await?;
    let code = Some((code, expires_at));
    devices_page(&state, &user, school_id, code, None).await
}

#[derive(Template, WebTemplate)]
#[template(path = "revoke.html")]
struct RevokePage {
    chrome: Chrome,
    device: DeviceLine,
}

/// The device `device_id` of the school, or `NotFound`.
async fn device_of(state: &AppState, school_id: &str, device_id: &str) -> Result<Device, WebError> {
    let devices = state.store().devices(school_id).await?;
    devices
        .into_iter()
        .find(|d| d.id == device_id)
        .ok_or_else(|| WebError::from(ApiError::NotFound(format!("device {device_id}"))))
}

/// `GET /devices/{device}/revoke`: asks first.
pub(super) async fn confirm_revoke(
    State(state): State<AppState>,
    user: WebUser,
    Path(device_id): Path<String>,
    Query(param): Query<SchoolParam>,
) -> Result<Response, WebError> {
    let Some(school_id) = admin_school(&state, &user, None, param.school, "devices").await? else {
        return Ok(Redirect::to("/").into_response());
    };
    let device = device_of(&state, &school_id, &device_id).await?;
    let tz = time_zone(&state, &school_id).await?;
    let page = RevokePage {
        chrome: Chrome::of(&user, Some(school_id)),
        device: DeviceLine::of(device, state.now(), Millis::MAX, &[], &tz),
    };
    Ok(page.into_response())
}

#[derive(Deserialize)]
pub(super) struct RevokeForm {
    csrf: String,
    school: Option<String>,
}

/// `POST /devices/{device}/revoke`: revokes, then back to the list, which says so.
pub(super) async fn revoke_device(
    State(state): State<AppState>,
    user: WebUser,
    Path(device_id): Path<String>,
    Form(form): Form<RevokeForm>,
) -> Result<Response, WebError> {
    let Some(school_id) =
        admin_school(&state, &user, Some(&form.csrf), form.school, "devices").await?
    else {
        return Ok(Redirect::to("/").into_response());
    };
    revoke(&state, &school_id, &device_id, &user.user).await?;
    // Back to the list by GET, so a reload does not post again.
    let query = serde_urlencoded::to_string([("school", &school_id), ("revoked", &device_id)])
        .unwrap_or_default();
    Ok(Redirect::to(&format!("/devices?{query}")).into_response())
}

#[derive(Template, WebTemplate)]
#[template(path = "erasure.html")]
struct ErasurePage {
    chrome: Chrome,
    student: String,
    /// Box name, and whether it has purged the student.
    boxes: Vec<(String, bool)>,
    /// Not in the feed: never erased here, or superseded by a roster that added them again.
    unknown: bool,
}

/// `GET /erasures/{student}`: after an erasure, whether each box of the school has purged the
/// student's face data. A box has once it pulls past the erasure in the feed (its pull's cursor
/// proves it applied the page); revoked boxes are left out: they get nothing more.
pub(super) async fn erasure(
    State(state): State<AppState>,
    user: WebUser,
    Path(student): Path<String>,
    Query(param): Query<SchoolParam>,
) -> Result<Response, WebError> {
    let Some(school_id) = admin_school(&state, &user, None, param.school, "erasures").await? else {
        return Ok(Redirect::to("/").into_response());
    };
    let store = state.store();
    let seq = store
        .erasures_since(&school_id, 0)
        .await?
        .into_iter()
        .rev()
        .find(|(_, s)| *s == student)
        .map(|(seq, _)| seq);
    let mut boxes: Vec<(String, bool)> = store
        .devices(&school_id)
        .await?
        .into_iter()
        .filter(|d| d.revoked_at.is_none())
        .map(|d| {
            let name = if d.name.is_empty() {
                d.id.clone()
            } else {
                d.name.clone()
            };
            (name, seq.is_some_and(|seq| d.activity.acked_seq >= seq))
        })
        .collect();
    boxes.sort();
    let page = ErasurePage {
        chrome: Chrome::of(&user, Some(school_id)),
        student,
        boxes,
        unknown: seq.is_none(),
    };
    Ok(page.into_response())
}
