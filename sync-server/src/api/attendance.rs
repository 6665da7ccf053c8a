//! Attendance queries, by section and by student, over a range of dates. Open to admins of the
//! school and to its teachers, who see only the sections they teach.
//!
//! Dates are calendar days in UTC: the server keeps no school time zone yet.

use std::collections::BTreeSet;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use serde::{Deserialize, Serialize};
use shared_proto::sync::{MarkSource, MarkStatus};

use super::auth::UserAuth;
use super::{AppState, openapi};
use crate::api::ApiError;
use crate::store::{AttendanceQuery, AttendanceRow, Millis, Role, User};

const DAY_MS: Millis = 24 * 60 * 60 * 1000;
/// Longest range one query may cover, in days: a school year and a bit.
const MAX_RANGE_DAYS: i64 = 400;

#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Attendance)]
pub(super) struct AttendanceJson {
    session_id: String,
    section_id: Option<String>,
    #[schema(value_type = Option<i64>)]
    started_at: Option<Millis>,
    device_id: String,
    student_id: String,
    status: MarkStatus,
    source: MarkSource,
    score: Option<f32>,
    #[schema(value_type = i64)]
    decided_at: Millis,
    decided_by: Option<String>,
}

impl From<AttendanceRow> for AttendanceJson {
    fn from(row: AttendanceRow) -> Self {
        AttendanceJson {
            session_id: row.session_id,
            section_id: row.section_id,
            started_at: row.started_at,
            device_id: row.device_id,
            student_id: row.student_id,
            status: row.status,
            source: row.source,
            score: row.score,
            decided_at: row.decided_at,
            decided_by: row.decided_by,
        }
    }
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct RangeParams {
    /// One section; teachers get all of theirs without it.
    section: Option<String>,
    /// First day, YYYY-MM-DD; default today.
    from: Option<String>,
    /// Last day, YYYY-MM-DD, included; default `from`.
    to: Option<String>,
}

/// Days since 1970-01-01 of a `YYYY-MM-DD` date (proleptic Gregorian).
fn days_from_date(text: &str) -> Option<i64> {
    let mut parts = text.splitn(3, '-');
    let (year, month, day) = (parts.next()?, parts.next()?, parts.next()?);
    if year.len() != 4 || month.len() != 2 || day.len() != 2 {
        return None;
    }
    let year: i64 = year.parse().ok()?;
    let month: i64 = month.parse().ok()?;
    let day: i64 = day.parse().ok()?;
    let is_leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let days_in_month = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap => 29,
        2 => 28,
        _ => return None,
    };
    if !(1..=days_in_month).contains(&day) {
        return None;
    }
    // Howard Hinnant's days_from_civil.
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    Some(era * 146_097 + day_of_era - 719_468)
}

/// `[from, to)` in milliseconds for the days `from` to `to`, both included. Without `from`,
/// today; without `to`, the same day as `from`.
pub(crate) fn range_of(
    from: Option<&str>,
    to: Option<&str>,
    now: Millis,
) -> Result<(Millis, Millis), ApiError> {
    let day = |name: &str, text: &str| {
        days_from_date(text).ok_or_else(|| {
            ApiError::InvalidRequest(format!("{name} \"{text}\" is not a date like 2024-09-01"))
        })
    };
    let from = match from {
        Some(text) => day("from", text)?,
        None => now.div_euclid(DAY_MS),
    };
    let to = match to {
        Some(text) => day("to", text)?,
        None => from,
    };
    if to < from {
        return Err(ApiError::InvalidRequest("to is before from".to_owned()));
    }
    if to - from >= MAX_RANGE_DAYS {
        return Err(ApiError::InvalidRequest(format!(
            "the range covers more than {MAX_RANGE_DAYS} days; ask for less"
        )));
    }
    Ok((from * DAY_MS, (to + 1) * DAY_MS))
}

/// The sections `user` may see in `school_id`: `None` for an admin of that school (or a district
/// admin), who sees all; a teacher's own sections; `WrongSchool` for another school's people.
/// The one access rule of attendance, for the API and the web pages.
pub(crate) async fn visible_sections(
    state: &AppState,
    user: &User,
    school_id: &str,
) -> Result<Option<BTreeSet<String>>, ApiError> {
    if let Some(own) = &user.school_id
        && own != school_id
    {
        return Err(ApiError::WrongSchool(school_id.to_owned()));
    }
    match user.role {
        Role::Admin => Ok(None),
        Role::Teacher => {
            let Some(teacher_id) = &user.teacher_id else {
                return Ok(Some(BTreeSet::new()));
            };
            let sections = state
                .store()
                .sections_of_teacher(school_id, teacher_id)
                .await?;
            Ok(Some(sections.into_iter().collect()))
        }
    }
}

fn query_params(
    params: Result<Query<RangeParams>, QueryRejection>,
) -> Result<RangeParams, ApiError> {
    params
        .map(|Query(params)| params)
        .map_err(|e| ApiError::InvalidRequest(format!("bad query string: {e}")))
}

/// `GET /v1/schools/{school}/attendance?section=&from=&to=`: a teacher must name one of their
/// sections or gets the rows of all of them.
#[utoipa::path(
    get,
    path = "/v1/schools/{school}/attendance",
    summary = "Marks by session start in a range of days (UTC). Teachers: only sections they teach (403 `forbidden` for others).",
    params(RangeParams),
    responses(
        (status = 200, description = "ok", body = Vec<AttendanceJson>),
        (status = 400, description = openapi::E400, body = openapi::ErrorJson),
    ),
    security(("session" = [])),
    extensions(("x-rollcall-access" = json!("admin or teacher"))),
)]
pub(super) async fn by_section(
    State(state): State<AppState>,
    auth: UserAuth,
    Path(school_id): Path<String>,
    params: Result<Query<RangeParams>, QueryRejection>,
) -> Result<Json<Vec<AttendanceJson>>, ApiError> {
    let params = query_params(params)?;
    let visible = visible_sections(&state, &auth.user, &school_id).await?;
    if let (Some(visible), Some(section)) = (&visible, &params.section)
        && !visible.contains(section)
    {
        return Err(ApiError::Forbidden(format!(
            "you do not teach section {section}"
        )));
    }
    let (from, to) = range_of(params.from.as_deref(), params.to.as_deref(), state.now())?;
    let rows = state
        .store()
        .attendance(&AttendanceQuery {
            school_id,
            section_id: params.section,
            student_id: None,
            from,
            to,
        })
        .await?;
    Ok(Json(only_visible(rows, visible.as_ref())))
}

/// `GET /v1/schools/{school}/students/{student}/attendance?from=&to=`: a teacher gets only the
/// rows of their sections.
#[utoipa::path(
    get,
    path = "/v1/schools/{school}/students/{student}/attendance",
    summary = "One student's marks in a range of days (UTC). Teachers get only the rows of their sections.",
    // `section` is read by the same parser but means nothing here.
    params(
        ("from" = Option<String>, Query, description = "First day, YYYY-MM-DD; default today."),
        ("to" = Option<String>, Query, description = "Last day, YYYY-MM-DD, included; default `from`."),
    ),
    responses(
        (status = 200, description = "ok", body = Vec<AttendanceJson>),
        (status = 400, description = openapi::E400, body = openapi::ErrorJson),
        (status = 404, description = openapi::E404, body = openapi::ErrorJson),
    ),
    security(("session" = [])),
    extensions(("x-rollcall-access" = json!("admin or teacher"))),
)]
pub(super) async fn by_student(
    State(state): State<AppState>,
    auth: UserAuth,
    Path((school_id, student_id)): Path<(String, String)>,
    params: Result<Query<RangeParams>, QueryRejection>,
) -> Result<Json<Vec<AttendanceJson>>, ApiError> {
    let params = query_params(params)?;
    let visible = visible_sections(&state, &auth.user, &school_id).await?;
    if state
        .store()
        .student(&school_id, &student_id)
        .await?
        .is_none()
    {
        return Err(ApiError::NotFound(format!("student {student_id}")));
    }
    let (from, to) = range_of(params.from.as_deref(), params.to.as_deref(), state.now())?;
    let rows = state
        .store()
        .attendance(&AttendanceQuery {
            school_id,
            section_id: None,
            student_id: Some(student_id),
            from,
            to,
        })
        .await?;
    Ok(Json(only_visible(rows, visible.as_ref())))
}

/// Rows of the visible sections.
fn only_visible(
    rows: Vec<AttendanceRow>,
    visible: Option<&BTreeSet<String>>,
) -> Vec<AttendanceJson> {
    rows.into_iter()
        .filter(|row| is_visible(row, visible))
        .map(AttendanceJson::from)
        .collect()
}

/// Whether a mark is in the sections `visible_sections` gave (`None`: all). A mark whose session
/// has not arrived has no section yet, so only an admin sees it.
pub(crate) fn is_visible(row: &AttendanceRow, visible: Option<&BTreeSet<String>>) -> bool {
    is_visible_section(row.section_id.as_deref(), visible)
}

/// Whether marks filed under `section` (`None`: their session has not arrived) are visible to
/// whoever sees `visible` (`None`: every section).
pub(crate) fn is_visible_section(
    section: Option<&str>,
    visible: Option<&BTreeSet<String>>,
) -> bool {
    match (visible, section) {
        (None, _) => true,
        (Some(visible), Some(section)) => visible.contains(section),
        (Some(_), None) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_count_days_from_the_epoch() {
        assert_eq!(days_from_date("1970-01-01"), Some(0));
        assert_eq!(days_from_date("2000-03-01"), Some(11_017));
        assert_eq!(days_from_date("2024-02-29"), Some(19_782));
        assert_eq!(days_from_date("2023-02-29"), None);
        assert_eq!(days_from_date("2024-13-01"), None);
        assert_eq!(days_from_date("2024-1-01"), None);
        assert_eq!(days_from_date("yesterday"), None);
    }

    #[test]
    fn a_range_includes_its_last_day() {
        let params = RangeParams {
            section: None,
            from: Some("1970-01-02".into()),
            to: Some("1970-01-03".into()),
        };
        assert_eq!(
            range_of(params.from.as_deref(), params.to.as_deref(), 0).unwrap(),
            (DAY_MS, 3 * DAY_MS)
        );
    }
}
