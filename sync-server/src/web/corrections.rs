//! Correcting marks on the dashboard: a roll's marks changed in one go, with a reason, and a whole
//! section excused over a date range (a school trip, booked ahead or not). The rules are
//! `domain::correction`'s and `domain::excusal`'s; these handlers check who may, build the request
//! and say what happened.

use axum::Form;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use shared_proto::sync::{MarkSource, MarkStatus};

use super::session::WebUser;
use super::{WebError, forbidden, given, school_of, sections_for, segment};
use crate::api::{ApiError, AppState};
use crate::domain::correction::{Correction, Decision};
use crate::domain::excusal::Excusal;
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

/// `POST /sections/{section}/excuse`: a school trip, booked for the section's lessons from `from`
/// to `to` (days, both included), for one reason, in one action. Admins only. Lessons already
/// held have their marks excused now; lessons held later are excused as their boxes send the roll
/// (`domain::excusal`), so a trip can be booked ahead.
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
    let tz = crate::api::attendance::time_zone(&state, &school_id).await?;
    let days = super::rolls::Days::of(Some(form.from), Some(form.to), 0, state.now(), &tz)?;
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
    let held: Vec<Correction> = rows
        .into_iter()
        .filter(|row| row.status != MarkStatus::Excused)
        .map(|row| Correction {
            session: row.session_id,
            student: row.student_id,
            status: MarkStatus::Excused,
            event_id: uuid::Uuid::now_v7().to_string(),
        })
        .collect();
    let trip = Excusal {
        id: uuid::Uuid::now_v7().to_string(),
        school_id: school_id.clone(),
        section_id: section.id.clone(),
        from: days.from,
        to: days.to,
        reason: form.reason.trim().to_owned(),
        by: user.user.username.clone(),
        at: state.now(),
    };
    let outcome = state
        .store()
        .book_excusal(&trip, &held, &tz)
        .await?
        .map_err(|refusal| WebError(ApiError::InvalidRequest(refusal.to_string())))?;
    state.web_caches().forget(&school_id);
    let range = if days.from_day == days.to_day {
        days.from_day.clone()
    } else {
        format!("{} to {}", days.from_day, days.to_day)
    };
    let now = match outcome.applied {
        0 => "no lesson held yet to excuse".to_owned(),
        1 => "1 mark of a lesson already held excused now".to_owned(),
        n => format!("{n} marks of lessons already held excused now"),
    };
    Ok(back_to(
        &school_id,
        &section.id,
        None,
        &format!(
            "Trip booked for {range}: {now}; the lessons still to come are excused as their box sends the roll."
        ),
    ))
}

#[derive(Deserialize)]
pub(super) struct CancelForm {
    csrf: String,
    school: Option<String>,
}

/// `POST /sections/{section}/trips/{trip}/cancel`: admins only. Lessons held later are no longer
/// excused by it; marks it excused stay as they are (a correction changes them).
pub(super) async fn cancel_trip(
    State(state): State<AppState>,
    user: WebUser,
    Path((section_id, trip_id)): Path<(String, String)>,
    Form(form): Form<CancelForm>,
) -> Result<Response, WebError> {
    let (school_id, section) =
        section_checked(&state, &user, &form.csrf, form.school, &section_id).await?;
    if !user.is_admin() {
        return Err(forbidden(
            "trips are booked and cancelled by the school office",
        ));
    }
    let not_found = || {
        WebError(ApiError::NotFound(format!(
            "trip {trip_id} of this section"
        )))
    };
    let trips = state.store().excusals(&school_id, &section.id).await?;
    if !trips.iter().any(|trip| trip.id == trip_id) {
        return Err(not_found());
    }
    let tz = crate::api::attendance::time_zone(&state, &school_id).await?;
    let cancelled = state
        .store()
        .cancel_excusal(&school_id, &trip_id, &user.user.username, state.now(), &tz)
        .await?
        .ok_or_else(not_found)?;
    Ok(back_to(
        &school_id,
        &section.id,
        None,
        &format!(
            "Trip \"{}\" cancelled: lessons from now on are not excused by it; marks it excused stay.",
            cancelled.reason
        ),
    ))
}
