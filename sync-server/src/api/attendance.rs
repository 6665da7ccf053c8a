//! Attendance queries, by section and by student, over a range of dates. Open to admins of the
//! school and to its teachers, who see only the sections they teach.
//!
//! Dates are the school's calendar days, in the time zone of its settings (`range_of`).

use std::collections::BTreeSet;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use jiff::civil::Date;
use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};
use shared_proto::sync::{MarkSource, MarkStatus};

use super::auth::UserAuth;
use super::{AppState, openapi};
use crate::api::ApiError;
use crate::domain::lessons;
use crate::store::{AttendanceQuery, AttendanceRow, Millis, Role, User};

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

impl RangeParams {
    /// The days asked for, read in the school's time zone (`range_of`).
    async fn range(&self, state: &AppState, school_id: &str) -> Result<(Millis, Millis), ApiError> {
        let tz = time_zone(state, school_id).await?;
        range_of(self.from.as_deref(), self.to.as_deref(), &tz, state.now())
    }
}

/// A `YYYY-MM-DD` date, as forms and queries give one.
pub(crate) fn date_of(name: &str, text: &str) -> Result<Date, ApiError> {
    let bad =
        || ApiError::InvalidRequest(format!("{name} \"{text}\" is not a date like 2024-09-01"));
    if text.len() != 10 {
        return Err(bad());
    }
    text.parse().map_err(|_| bad())
}

/// `[from, to)` in milliseconds for the school days `from` to `to`, both included: from local
/// midnight of `from` to local midnight after `to` in the school's time zone `tz` (a lesson at
/// 08:00 in Sydney is on its own Monday, which UTC would call Sunday). Without `from`, the
/// school's today; without `to`, the same day as `from`. The one reading of a range of days, for
/// the API and the pages.
pub(crate) fn range_of(
    from: Option<&str>,
    to: Option<&str>,
    tz: &TimeZone,
    now: Millis,
) -> Result<(Millis, Millis), ApiError> {
    let from = match from {
        Some(text) => date_of("from", text)?,
        None => lessons::day_of(now, tz)
            .ok_or_else(|| ApiError::InvalidRequest(format!("the clock reads {now} ms")))?,
    };
    let to = match to {
        Some(text) => date_of("to", text)?,
        None => from,
    };
    if to < from {
        return Err(ApiError::InvalidRequest("to is before from".to_owned()));
    }
    let days = from
        .until(to)
        .map_or(i64::MAX, |span| i64::from(span.get_days()));
    if days >= MAX_RANGE_DAYS {
        return Err(ApiError::InvalidRequest(format!(
            "the range covers more than {MAX_RANGE_DAYS} days; ask for less"
        )));
    }
    let out_of_range = || ApiError::InvalidRequest(format!("{from} to {to} is out of range"));
    let (start, _) = lessons::bounds(from, tz).ok_or_else(out_of_range)?;
    let (_, end) = lessons::bounds(to, tz).ok_or_else(out_of_range)?;
    Ok((start, end))
}

/// The time zone of `school_id`'s settings, in which its days are read.
pub(crate) async fn time_zone(state: &AppState, school_id: &str) -> Result<TimeZone, ApiError> {
    Ok(state.store().school_settings(school_id).await?.tz())
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
    summary = "Marks by session start in a range of the school's days (in its time zone). Teachers: only sections they teach (403 `forbidden` for others).",
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
    let (from, to) = params.range(&state, &school_id).await?;
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
    summary = "One student's marks in a range of the school's days (in its time zone). Teachers get only the rows of their sections.",
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
    let (from, to) = params.range(&state, &school_id).await?;
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
    fn dates_are_read_strictly() {
        assert_eq!(
            date_of("from", "2024-02-29").unwrap(),
            jiff::civil::date(2024, 2, 29)
        );
        for bad in [
            "2023-02-29",
            "2024-13-01",
            "2024-1-01",
            "yesterday",
            "+02024-01-01",
        ] {
            assert!(date_of("from", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_range_includes_its_last_day() {
        const DAY_MS: Millis = 24 * 60 * 60 * 1000;
        let range = range_of(Some("1970-01-02"), Some("1970-01-03"), &TimeZone::UTC, 0);
        assert_eq!(range.unwrap(), (DAY_MS, 3 * DAY_MS));
        let too_long = range_of(Some("2024-01-01"), Some("2025-02-04"), &TimeZone::UTC, 0);
        assert!(too_long.is_err());
        assert!(range_of(Some("2024-01-02"), Some("2024-01-01"), &TimeZone::UTC, 0).is_err());
    }

    /// A Sydney school's Monday runs from Sunday 14:00 UTC (AEST, +10) to Monday 14:00, so its
    /// 08:00 lesson (Sunday 22:00 UTC) is Monday's; the day the clocks go forward is 23 hours.
    #[test]
    fn a_range_is_of_the_schools_days() {
        let sydney = TimeZone::get("Australia/Sydney").unwrap();
        let ms = |text: &str| text.parse::<jiff::Timestamp>().unwrap().as_millisecond();
        let (from, to) = range_of(Some("2024-09-02"), None, &sydney, 0).unwrap();
        assert_eq!(
            (from, to),
            (ms("2024-09-01T14:00Z"), ms("2024-09-02T14:00Z"))
        );
        assert!((from..to).contains(&ms("2024-09-01T22:00Z")));
        let (from, to) = range_of(Some("2024-10-06"), None, &sydney, 0).unwrap();
        assert_eq!(to - from, 23 * 60 * 60 * 1000);
        // Without days: the school's today, which in Sydney began at 14:00 UTC.
        let now = ms("2024-09-02T15:00Z");
        let (from, _) = range_of(None, None, &sydney, now).unwrap();
        assert_eq!(from, ms("2024-09-02T14:00Z"));
    }
}
