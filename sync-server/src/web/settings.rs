//! A school's settings page: its time zone, the chronic-absence threshold and when a box counts as
//! offline (`domain::settings`). Admins only.

use askama::Template;
use askama_web::WebTemplate;
use axum::Form;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::session::WebUser;
use super::{Chrome, WebError, admin_school};
use crate::api::{ApiError, AppState};
use crate::domain::settings::SchoolSettings;

#[derive(Template, WebTemplate)]
#[template(path = "settings.html")]
struct SettingsPage {
    chrome: Chrome,
    settings: SchoolSettings,
    saved: bool,
}

#[derive(Deserialize)]
pub(super) struct SettingsParams {
    school: Option<String>,
    saved: Option<String>,
}

/// `GET /settings`.
pub(super) async fn page(
    State(state): State<AppState>,
    user: WebUser,
    Query(params): Query<SettingsParams>,
) -> Result<Response, WebError> {
    let Some(school_id) = admin_school(&state, &user, None, params.school, "settings").await?
    else {
        return Ok(Redirect::to("/").into_response());
    };
    let settings = state.store().school_settings(&school_id).await?;
    let page = SettingsPage {
        chrome: Chrome::of(&user, Some(school_id)),
        settings,
        saved: params.saved.is_some(),
    };
    Ok(page.into_response())
}

#[derive(Deserialize)]
pub(super) struct SettingsForm {
    csrf: String,
    school: Option<String>,
    time_zone: String,
    chronic_percent: String,
    offline_minutes: String,
}

/// `POST /settings`: checked as a whole, saved as a whole.
pub(super) async fn save(
    State(state): State<AppState>,
    user: WebUser,
    Form(form): Form<SettingsForm>,
) -> Result<Response, WebError> {
    let Some(school_id) =
        admin_school(&state, &user, Some(&form.csrf), form.school, "settings").await?
    else {
        return Ok(Redirect::to("/").into_response());
    };
    let number = |name: &str, text: &str| {
        text.trim().parse::<u32>().map_err(|_| {
            WebError(ApiError::InvalidRequest(format!(
                "{name} \"{text}\" is not a whole number"
            )))
        })
    };
    let settings = SchoolSettings {
        time_zone: form.time_zone.trim().to_owned(),
        chronic_percent: u8::try_from(number("the threshold", &form.chronic_percent)?)
            .unwrap_or(u8::MAX),
        offline_minutes: number("offline after", &form.offline_minutes)?,
    };
    settings
        .validate()
        .map_err(|e| WebError(ApiError::InvalidRequest(e.to_string())))?;
    state
        .store()
        .set_school_settings(&school_id, &settings)
        .await?;
    let query = serde_urlencoded::to_string([("school", school_id.as_str()), ("saved", "1")])
        .unwrap_or_default();
    Ok(Redirect::to(&format!("/settings?{query}")).into_response())
}
