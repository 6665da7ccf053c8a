//! A student's page: their attendance over a range with its rate and the chronic-absence flag,
//! their guardians (admins add and remove them here), their consent (admins grant or withdraw it
//! here), and how many face templates the server holds per embedding space. A teacher sees the
//! student's marks in their own sections only.

use std::collections::BTreeMap;

use askama::Template;
use askama_web::WebTemplate;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use shared_proto::sync::Consent;
use shared_proto::vocabulary::UnknownWord;

use super::session::WebUser;
use super::{
    Chrome, WebError, admin_school, forbidden, given, rolls, school_of, section_titles, segment,
};
use crate::api::admin::{erase, record_consent};
use crate::api::attendance::{is_visible, visible_sections};
use crate::api::{ApiError, AppState};
use crate::domain::attendance::Counts;
use crate::domain::guardian::{Contact, Relationship};
use crate::store::{AttendanceQuery, TemplateRead};

/// The history a page opens on.
const DEFAULT_DAYS: i64 = 180;

#[derive(Deserialize)]
pub(super) struct StudentParams {
    school: Option<String>,
    from: Option<String>,
    to: Option<String>,
    /// What the last action did.
    notice: Option<String>,
}

struct GuardianLine {
    id: String,
    name: String,
    relationship: &'static str,
    email: String,
    opted_out: bool,
    /// Their other children at the school.
    others: usize,
}

struct HistoryLine {
    date: String,
    section: String,
    status: &'static str,
    decided_by: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "student.html")]
struct StudentPage {
    chrome: Chrome,
    id: String,
    name: String,
    active: bool,
    from: String,
    to: String,
    counts: Counts,
    attendance: String,
    missed: String,
    chronic: bool,
    threshold: f64,
    lines: Vec<HistoryLine>,
    consent: &'static str,
    consent_by: String,
    consent_at: String,
    /// Live templates by embedding space.
    templates: Vec<(String, usize)>,
    guardians: Vec<GuardianLine>,
    relationships: &'static [&'static str],
    notice: Option<String>,
    /// Central enrolment is on: the page offers to enrol from photos.
    enrol: bool,
}

fn percent(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_owned(), |p| format!("{p:.1} %"))
}

/// `GET /students/{student}`.
pub(super) async fn page(
    State(state): State<AppState>,
    user: WebUser,
    Path(student_id): Path<String>,
    Query(params): Query<StudentParams>,
) -> Result<Response, WebError> {
    let Some(school_id) = school_of(&user, params.school)? else {
        return Ok(Redirect::to("/").into_response());
    };
    let visible = visible_sections(&state, &user.user, &school_id).await?;
    let student = state
        .store()
        .student(&school_id, &student_id)
        .await?
        .ok_or_else(|| WebError::from(ApiError::NotFound(format!("student {student_id}"))))?;
    let now = state.now();
    let settings = state.store().school_settings(&school_id).await?;
    let tz = settings.tz();
    let rolls::Days {
        from_day,
        to_day,
        from,
        to,
    } = rolls::Days::of(params.from, params.to, DEFAULT_DAYS, now, &tz)?;
    let mut rows = state
        .store()
        .attendance(&AttendanceQuery {
            school_id: school_id.clone(),
            student_id: Some(student_id.clone()),
            from,
            to,
            ..AttendanceQuery::default()
        })
        .await?;
    rows.retain(|row| is_visible(row, visible.as_ref()));
    if let Some(own) = &visible {
        let mut enrolled = false;
        for section in own {
            let enrolments = state.store().enrolments(&school_id, section).await?;
            enrolled |= enrolments
                .iter()
                .any(|e| e.active && e.person_id == student_id);
        }
        if !enrolled {
            return Err(forbidden(
                "you can see the students of your own sections only",
            ));
        }
    }
    let titles = section_titles(&state, &school_id).await?;
    rows.sort_by_key(|row| std::cmp::Reverse(row.started_at.unwrap_or(row.decided_at)));
    let counts = Counts::of(&rows);
    let lines = rows
        .iter()
        .map(|row| HistoryLine {
            date: rolls::time(row.started_at.unwrap_or(row.decided_at), &tz),
            section: row.section_id.as_ref().map_or_else(String::new, |id| {
                titles.get(id).cloned().unwrap_or_else(|| id.clone())
            }),
            status: row.status.as_str(),
            decided_by: rolls::decided_by(row),
        })
        .collect();
    let mut templates: BTreeMap<String, usize> = BTreeMap::new();
    if user.is_admin() {
        for template in state
            .store()
            .templates_of(&school_id, TemplateRead::Student(student_id.clone()))
            .await?
        {
            *templates
                .entry(template.embedding.space.to_string())
                .or_default() += 1;
        }
    }
    let guardians = state
        .store()
        .guardians_of(&school_id, &student_id)
        .await?
        .into_iter()
        .map(|g| GuardianLine {
            name: format!("{} {}", g.given_name, g.family_name),
            relationship: g.relationship.as_str(),
            opted_out: g.opted_out_at.is_some(),
            others: g.student_ids.len().saturating_sub(1),
            email: g.email,
            id: g.id,
        })
        .collect();
    let page = StudentPage {
        chrome: Chrome::of(&user, Some(school_id)),
        name: format!("{} {}", student.given_name, student.family_name),
        id: student.id,
        active: student.active,
        from: from_day,
        to: to_day,
        attendance: percent(counts.attendance_percent()),
        missed: percent(counts.missed_percent()),
        chronic: counts.chronically_absent(settings.chronic_threshold()),
        threshold: settings.chronic_threshold(),
        counts,
        lines,
        consent: student.consent.as_str(),
        consent_by: student.consent_by.unwrap_or_default(),
        consent_at: student
            .consent_at
            .map_or_else(String::new, |at| rolls::time(at, &tz)),
        templates: templates.into_iter().collect(),
        guardians,
        relationships: Relationship::WORDS,
        notice: given(params.notice),
        enrol: state.enroller().is_some(),
    };
    Ok(page.into_response())
}

#[derive(Deserialize)]
pub(super) struct ConsentForm {
    csrf: String,
    school: Option<String>,
    consent: String,
    /// Who gave or withdrew it: a guardian's name, a form's reference.
    by: Option<String>,
}

/// `POST /students/{student}/consent`: admins only; the same rule as the API's.
pub(super) async fn set_consent(
    State(state): State<AppState>,
    user: WebUser,
    Path(student_id): Path<String>,
    Form(form): Form<ConsentForm>,
) -> Result<Response, WebError> {
    if !user.check_csrf(&form.csrf) {
        return Err(forbidden(
            "this form came from another page: open the student again",
        ));
    }
    if !user.is_admin() {
        return Err(forbidden("consent is recorded by the school's admins"));
    }
    let Some(school_id) = school_of(&user, form.school)? else {
        return Ok(Redirect::to("/").into_response());
    };
    visible_sections(&state, &user.user, &school_id).await?;
    let consent = match form.consent.as_str() {
        "granted" => Consent::Granted,
        "withdrawn" => Consent::Withdrawn,
        other => {
            return Err(WebError::from(ApiError::InvalidRequest(format!(
                "consent can be granted or withdrawn here, not \"{other}\""
            ))));
        }
    };
    record_consent(
        &state,
        &school_id,
        &student_id,
        consent,
        given(form.by),
        &user.user,
    )
    .await?;
    let query = serde_urlencoded::to_string([("school", &school_id)]).unwrap_or_default();
    let to = format!("/students/{}?{query}", segment(&student_id));
    Ok(Redirect::to(&to).into_response())
}

#[derive(Template, WebTemplate)]
#[template(path = "erase.html")]
struct ErasePage {
    chrome: Chrome,
    id: String,
    name: String,
}

/// `GET /students/{student}/erase`: asks first, saying what erasure does.
pub(super) async fn confirm_erase(
    State(state): State<AppState>,
    user: WebUser,
    Path(student_id): Path<String>,
    Query(params): Query<StudentParams>,
) -> Result<Response, WebError> {
    let Some(school_id) = admin_school(&state, &user, None, params.school, "erasures").await?
    else {
        return Ok(Redirect::to("/").into_response());
    };
    let student = state
        .store()
        .student(&school_id, &student_id)
        .await?
        .ok_or_else(|| WebError::from(ApiError::NotFound(format!("student {student_id}"))))?;
    let page = ErasePage {
        chrome: Chrome::of(&user, Some(school_id)),
        name: format!("{} {}", student.given_name, student.family_name),
        id: student.id,
    };
    Ok(page.into_response())
}

#[derive(Deserialize)]
pub(super) struct EraseForm {
    csrf: String,
    school: Option<String>,
}

/// `POST /students/{student}/erase`: erases, then back to the sections, which say so.
pub(super) async fn erase_student(
    State(state): State<AppState>,
    user: WebUser,
    Path(student_id): Path<String>,
    Form(form): Form<EraseForm>,
) -> Result<Response, WebError> {
    let Some(school_id) =
        admin_school(&state, &user, Some(&form.csrf), form.school, "erasures").await?
    else {
        return Ok(Redirect::to("/").into_response());
    };
    erase(&state, &school_id, &student_id, &user.user).await?;
    let query = serde_urlencoded::to_string([("school", school_id.as_str())]).unwrap_or_default();
    Ok(Redirect::to(&format!("/erasures/{}?{query}", segment(&student_id))).into_response())
}

#[derive(Deserialize)]
pub(super) struct GuardianForm {
    csrf: String,
    school: Option<String>,
    given_name: String,
    family_name: String,
    email: String,
    relationship: String,
}

/// Back to the student's page, saying what was done.
fn back_to_student(school: &str, student: &str, notice: &str) -> Response {
    let query =
        serde_urlencoded::to_string([("school", school), ("notice", notice)]).unwrap_or_default();
    Redirect::to(&format!("/students/{}?{query}", segment(student))).into_response()
}

/// `POST /students/{student}/guardians`: admins add a guardian (`domain::guardian`: an address
/// the school holds links its contact).
pub(super) async fn add_guardian(
    State(state): State<AppState>,
    user: WebUser,
    Path(student_id): Path<String>,
    Form(form): Form<GuardianForm>,
) -> Result<Response, WebError> {
    let Some(school_id) =
        admin_school(&state, &user, Some(&form.csrf), form.school, "guardians").await?
    else {
        return Ok(Redirect::to("/").into_response());
    };
    let relationship = form
        .relationship
        .parse()
        .map_err(|e: UnknownWord| WebError(ApiError::InvalidRequest(e.to_string())))?;
    let contact = Contact {
        given_name: form.given_name,
        family_name: form.family_name,
        email: form.email,
        relationship,
    };
    let linked = state
        .store()
        .link_guardian(
            &school_id,
            &student_id,
            &contact,
            &user.user.username,
            state.now(),
        )
        .await?
        .map_err(|refusal| WebError(ApiError::InvalidRequest(refusal.to_string())))?;
    let g = &linked.guardian;
    let notice = if linked.existing {
        format!(
            "{} {} <{}> was already a guardian at the school: the same contact is now linked here too.",
            g.given_name, g.family_name, g.email
        )
    } else {
        format!("{} {} added.", g.given_name, g.family_name)
    };
    Ok(back_to_student(&school_id, &student_id, &notice))
}

#[derive(Deserialize)]
pub(super) struct RemoveGuardianForm {
    csrf: String,
    school: Option<String>,
}

/// `POST /students/{student}/guardians/{guardian}/remove`: admins only; a contact left with no
/// child is deleted.
pub(super) async fn remove_guardian(
    State(state): State<AppState>,
    user: WebUser,
    Path((student_id, guardian_id)): Path<(String, String)>,
    Form(form): Form<RemoveGuardianForm>,
) -> Result<Response, WebError> {
    let Some(school_id) =
        admin_school(&state, &user, Some(&form.csrf), form.school, "guardians").await?
    else {
        return Ok(Redirect::to("/").into_response());
    };
    state
        .store()
        .unlink_guardian(
            &school_id,
            &student_id,
            &guardian_id,
            &user.user.username,
            state.now(),
        )
        .await?
        .map_err(|refusal| WebError(ApiError::NotFound(refusal.to_string())))?;
    Ok(back_to_student(
        &school_id,
        &student_id,
        "Guardian removed.",
    ))
}
