//! Correcting marks on the dashboard: a roll's marks changed in one go, with a reason, and a whole
//! section excused over a date range (a school trip). The rule is `domain::correction`'s; these
//! handlers check who may, build the request and say what happened.

use axum::Form;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use shared_proto::sync::{MarkSource, MarkStatus};

use super::session::WebUser;
use super::{WebError, forbidden, given, school_of, sections_for, segment};
use crate::api::{ApiError, AppState};
use crate::domain::correction::{Correction, Decision};
use crate::store::{AttendanceQuery, Section};

/// The statuses a person can choose; "review" is the camera's question, never a decision.
pub const DECISIONS: [MarkStatus; 4] = [
    MarkStatus::Present,
    MarkStatus::Absent,
    MarkStatus::Late,
    MarkStatus::Excused,
];

/// Who decides a correction made by `user`: the office for an admin, the teacher for a teacher
/// (who sees their own sections only).
fn source_of(user: &WebUser) -> MarkSource {
    if user.is_admin() {
        MarkSource::Office
    } else {
        MarkSource::Teacher
    }
}

/// The section, checked: the form's CSRF token, then that the user may see it (and so correct
/// it: teachers see their own sections only).
async fn section_checked(
    state: &AppState,
    user: &WebUser,
    csrf: &str,
    school: Option<String>,
    section_id: &str,
) -> Result<(String, Section), WebError> {
    if !user.check_csrf(csrf) {
        return Err(forbidden(
            "this form came from another page: open the roll again",
        ));
    }
    let Some(school_id) = school_of(user, school)? else {
        return Err(WebError(ApiError::InvalidRequest(
            "pick a school first".to_owned(),
        )));
    };
    let sections = sections_for(state, user, &school_id).await?;
    match sections.into_iter().find(|s| s.id == section_id) {
        Some(section) => Ok((school_id, section)),
        None if user.is_admin() => Err(WebError(ApiError::NotFound(format!(
            "section {section_id}"
        )))),
        None => Err(forbidden(
            "you can correct the rolls of your own sections only",
        )),
    }
}

/// Back to the section's page, on `session`, saying what was done.
fn back_to(school: &str, section: &str, session: Option<&str>, notice: &str) -> Response {
    let mut query = vec![("school", school), ("notice", notice)];
    if let Some(session) = session {
        query.push(("session", session));
    }
    let query = serde_urlencoded::to_string(query).unwrap_or_default();
    Redirect::to(&format!("/sections/{}?{query}", segment(section))).into_response()
}

fn said(applied: usize, unchanged: usize) -> String {
    let marks = |n: usize| if n == 1 { "mark" } else { "marks" };
    match unchanged {
        0 => format!("{applied} {} corrected.", marks(applied)),
        n => format!(
            "{applied} {} corrected; {n} left as {} (the same status, or a later decision stands).",
            marks(applied),
            if n == 1 { "it was" } else { "they were" }
        ),
    }
}

/// `POST /sections/{section}/marks`: the roll's form. Fields: `csrf`, `school`, `session`,
/// `reason`, and per student `mark:<id>` (the status chosen) with `was:<id>` (the status shown);
/// only the marks whose choice differs from what was shown are corrected.
pub(super) async fn correct(
    State(state): State<AppState>,
    user: WebUser,
    Path(section_id): Path<String>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Response, WebError> {
    let field = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let (school_id, section) = section_checked(
        &state,
        &user,
        &field("csrf").unwrap_or_default(),
        field("school"),
        &section_id,
    )
    .await?;
    let Some(session) = given(field("session")) else {
        return Err(WebError(ApiError::InvalidRequest(
            "the form names no session".to_owned(),
        )));
    };
    let mut corrections = Vec::new();
    for (name, chosen) in &fields {
        let Some(student) = name.strip_prefix("mark:") else {
            continue;
        };
        if field(&format!("was:{student}")).as_deref() == Some(chosen.as_str()) {
            continue;
        }
        let status: MarkStatus = chosen.parse().map_err(|_| {
            WebError(ApiError::InvalidRequest(format!(
                "\"{chosen}\" is not a mark"
            )))
        })?;
        corrections.push(Correction {
            session: session.clone(),
            student: student.to_owned(),
            status,
            event_id: uuid::Uuid::now_v7().to_string(),
        });
    }
    if corrections.is_empty() {
        return Ok(back_to(
            &school_id,
            &section.id,
            Some(&session),
            "Nothing changed: choose a new mark for a student first.",
        ));
    }
    let decision = Decision {
        section: section.id.clone(),
        source: source_of(&user),
        by: user.user.username.clone(),
        reason: field("reason").unwrap_or_default(),
        at: state.now(),
    };
    let outcome = state
        .store()
        .correct_marks(&school_id, &corrections, &decision)
        .await?
        .map_err(|refusal| WebError(ApiError::InvalidRequest(refusal.to_string())))?;
    state.web_caches().forget(&school_id);
    Ok(back_to(
        &school_id,
        &section.id,
        Some(&session),
        &said(outcome.applied, outcome.unchanged),
    ))
}

#[derive(Deserialize)]
pub(super) struct ExcuseForm {
    csrf: String,
    school: Option<String>,
    from: String,
    to: String,
    reason: String,
}

/// `POST /sections/{section}/excuse`: every mark of the section's sessions from `from` to `to`
/// (days, both included) excused, in one action, for one reason: a school trip. Admins only.
/// Lessons not held yet have no marks to excuse: the form says so.
pub(super) async fn excuse(
    State(state): State<AppState>,
    user: WebUser,
    Path(section_id): Path<String>,
    Form(form): Form<ExcuseForm>,
) -> Result<Response, WebError> {
    let (school_id, section) =
        section_checked(&state, &user, &form.csrf, form.school, &section_id).await?;
    if !user.is_admin() {
        return Err(forbidden("a whole group is excused by the school office"));
    }
    let days = super::rolls::Days::of(Some(form.from), Some(form.to), 0, state.now())?;
    let rows = state
        .store()
        .attendance(&AttendanceQuery {
            school_id: school_id.clone(),
            section_id: Some(section.id.clone()),
            from: days.from,
            to: days.to,
            ..AttendanceQuery::default()
        })
        .await?;
    let corrections: Vec<Correction> = rows
        .into_iter()
        .filter(|row| row.status != MarkStatus::Excused)
        .map(|row| Correction {
            session: row.session_id,
            student: row.student_id,
            status: MarkStatus::Excused,
            event_id: uuid::Uuid::now_v7().to_string(),
        })
        .collect();
    if corrections.is_empty() {
        return Ok(back_to(
            &school_id,
            &section.id,
            None,
            "No mark to excuse in those days: every one already is, or no lesson was held.",
        ));
    }
    let decision = Decision {
        section: section.id.clone(),
        source: MarkSource::Office,
        by: user.user.username.clone(),
        reason: form.reason,
        at: state.now(),
    };
    let outcome = state
        .store()
        .correct_marks(&school_id, &corrections, &decision)
        .await?
        .map_err(|refusal| WebError(ApiError::InvalidRequest(refusal.to_string())))?;
    state.web_caches().forget(&school_id);
    Ok(back_to(
        &school_id,
        &section.id,
        None,
        &format!(
            "{} to {}: {}",
            days.from_day,
            days.to_day,
            said(outcome.applied, outcome.unchanged)
        ),
    ))
}
