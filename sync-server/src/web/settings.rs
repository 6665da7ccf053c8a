//! A school's settings page: its time zone, the chronic-absence threshold, when a box counts as
//! offline, and the notices it sends (`domain::settings`). Admins only.

use askama::Template;
use askama_web::WebTemplate;
use axum::Form;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::session::WebUser;
use super::{Chrome, WebError, admin_school};
use crate::api::{ApiError, AppState};
use crate::domain::notice::GuardianTiming;
use crate::domain::settings::{SchoolSettings, admin_email};

#[derive(Template, WebTemplate)]
#[template(path = "settings.html")]
struct SettingsPage {
    chrome: Chrome,
    settings: SchoolSettings,
    saved: bool,
    /// Just created from the schools page: what to do next.
    created: bool,
}

#[derive(Deserialize)]
pub(super) struct SettingsParams {
    school: Option<String>,
    saved: Option<String>,
    created: Option<String>,
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
        created: params.created.is_some(),
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
    /// The notices part of the form, `None` when it was not sent (a form from before it, or a
    /// script): the school's notice settings are then kept as they are.
    #[serde(flatten)]
    notices: Option<NoticesForm>,
    /// `crops_shown` is sent with the crops checkbox, which is absent when not ticked: without it
    /// (a form from before), the setting is kept as it is.
    crops_shown: Option<String>,
    keep_crops: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct NoticesForm {
    guardian_notices: String,
    grace_minutes: String,
    digest_time: String,
    /// Checkboxes: present when ticked.
    corrections: Option<String>,
    admin_digest: Option<String>,
    admin_digest_time: String,
    offline_alerts: Option<String>,
    /// One address per line (or separated by commas or spaces).
    admin_emails: String,
}

fn number(name: &str, text: &str) -> Result<u32, WebError> {
    text.trim().parse::<u32>().map_err(|_| {
        WebError(ApiError::InvalidRequest(format!(
            "{name} \"{text}\" is not a whole number"
        )))
    })
}

impl NoticesForm {
    /// `held` with this form's notice settings (checked with the rest by `validate`).
    fn apply(self, held: SchoolSettings) -> Result<SchoolSettings, WebError> {
        Ok(SchoolSettings {
            guardian_notices: match self.guardian_notices.as_str() {
                "digest" => GuardianTiming::Digest,
                "after_each_lesson" => GuardianTiming::AfterEachLesson,
                "off" => GuardianTiming::Off,
                other => {
                    return Err(WebError(ApiError::InvalidRequest(format!(
                        "\"{}\" is not a choice for guardians' notices",
                        other.chars().take(40).collect::<String>()
                    ))));
                }
            },
            grace_minutes: number("the grace period", &self.grace_minutes)?,
            digest_time: self.digest_time.trim().to_owned(),
            corrections: self.corrections.is_some(),
            admin_digest: self.admin_digest.is_some(),
            admin_digest_time: self.admin_digest_time.trim().to_owned(),
            offline_alerts: self.offline_alerts.is_some(),
            admin_emails: self
                .admin_emails
                .split(|c: char| c == ',' || c.is_whitespace())
                .filter(|e| !e.is_empty())
                .map(|e| admin_email(e).unwrap_or_else(|_| e.to_owned()))
                .collect(),
            ..held
        })
    }
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
    let held = state.store().school_settings(&school_id).await?;
    let mut settings = SchoolSettings {
        time_zone: form.time_zone.trim().to_owned(),
        chronic_percent: u8::try_from(number("the threshold", &form.chronic_percent)?)
            .unwrap_or(u8::MAX),
        offline_minutes: number("offline after", &form.offline_minutes)?,
        ..held
    };
    if let Some(notices) = form.notices {
        settings = notices.apply(settings)?;
    }
    if form.crops_shown.is_some() {
        settings.keep_crops = form.keep_crops.is_some();
    }
    settings
        .validate()
        .map_err(|e| WebError(ApiError::InvalidRequest(e.to_string())))?;
    state
        .store()
        .set_school_settings(&school_id, &settings)
        .await?;
    if !settings.keep_crops {
        // Switched off: what was kept goes too (after the setting, so no crop is kept meanwhile).
        let dropped = state.store().drop_crops(&school_id).await?;
        if dropped > 0 {
            tracing::info!(school = %school_id, dropped, "face crops deleted: the school keeps none");
        }
    }
    let query = serde_urlencoded::to_string([("school", school_id.as_str()), ("saved", "1")])
        .unwrap_or_default();
    Ok(Redirect::to(&format!("/settings?{query}")).into_response())
}
