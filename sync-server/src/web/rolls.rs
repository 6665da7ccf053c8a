//! What the pages show of a roll: a session's marks, built from the store's `AttendanceRow`s (each
//! already the winning decision of its mark); `domain::attendance` counts them.

use std::collections::BTreeMap;

use jiff::tz::TimeZone;
use shared_proto::sync::MarkSource;

use crate::store::{AttendanceRow, Millis};

/// One session's marks, by the time it started.
#[derive(Clone, Debug, PartialEq)]
pub struct Roll {
    pub session_id: String,
    pub started_at: Millis,
    pub rows: Vec<AttendanceRow>,
}

/// The sessions among `rows` (of one section), newest first; marks whose session has not arrived
/// are left out.
pub fn newest_first(rows: Vec<AttendanceRow>) -> Vec<Roll> {
    let mut sessions: BTreeMap<String, Roll> = BTreeMap::new();
    for row in rows {
        let Some(started_at) = row.started_at.filter(|_| row.section_id.is_some()) else {
            continue;
        };
        sessions
            .entry(row.session_id.clone())
            .or_insert_with(|| Roll {
                session_id: row.session_id.clone(),
                started_at,
                rows: Vec::new(),
            })
            .rows
            .push(row);
    }
    let mut rolls: Vec<Roll> = sessions.into_values().collect();
    rolls.sort_by(|a, b| (b.started_at, &b.session_id).cmp(&(a.started_at, &a.session_id)));
    rolls
}

/// Who decided a mark, as a person reads it.
pub fn decided_by(row: &AttendanceRow) -> String {
    match (row.source, &row.decided_by) {
        (MarkSource::Machine, _) => "machine".to_owned(),
        (MarkSource::Teacher, Some(by)) => format!("teacher ({by})"),
        (MarkSource::Teacher, None) => "teacher".to_owned(),
        (MarkSource::Office, Some(by)) => format!("office ({by})"),
        (MarkSource::Office, None) => "office".to_owned(),
    }
}

/// A time as the pages show it, in the school's time zone `tz` and named by it
/// (`2024-09-02 08:00 AEST`): the pages speak the school's time, as its people live it.
pub fn time(at: Millis, tz: &TimeZone) -> String {
    jiff::Timestamp::from_millisecond(at).map_or_else(
        |_| format!("{at} ms"),
        |t| {
            t.to_zoned(tz.clone())
                .strftime("%Y-%m-%d %H:%M %Z")
                .to_string()
        },
    )
}

/// The school's day of `at`, as forms and file names show it, `YYYY-MM-DD`.
pub fn day(at: Millis, tz: &TimeZone) -> String {
    crate::domain::lessons::day_of(at, tz)
        .map_or_else(|| "1970-01-01".to_owned(), |d| d.to_string())
}

/// The school's days `from` to `to` (both included) as a form gave them, each defaulting: `to` to
/// today, `from` to `default_days` before it; with the range in milliseconds (`range_of`, which
/// reads them in the school's time zone `tz`).
pub struct Days {
    pub from_day: String,
    pub to_day: String,
    pub from: Millis,
    pub to: Millis,
}

impl Days {
    pub fn of(
        from: Option<String>,
        to: Option<String>,
        default_days: i64,
        now: Millis,
        tz: &TimeZone,
    ) -> Result<Days, crate::api::ApiError> {
        let today = crate::domain::lessons::day_of(now, tz).unwrap_or_default();
        let to_day = to
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| today.to_string());
        let from_day = from.filter(|f| !f.is_empty()).unwrap_or_else(|| {
            today
                .checked_sub(jiff::Span::new().days(default_days))
                .unwrap_or(today)
                .to_string()
        });
        let (from, to) = crate::api::attendance::range_of(Some(&from_day), Some(&to_day), tz, now)?;
        Ok(Days {
            from_day,
            to_day,
            from,
            to,
        })
    }
}

#[cfg(test)]
mod tests {
    use shared_proto::sync::MarkStatus;

    use super::*;
    use crate::domain::attendance::Counts;

    fn row(
        section: Option<&str>,
        session: &str,
        started_at: Millis,
        status: MarkStatus,
    ) -> AttendanceRow {
        AttendanceRow {
            session_id: session.into(),
            section_id: section.map(Into::into),
            started_at: section.map(|_| started_at),
            device_id: "box".into(),
            student_id: format!("{session}-{started_at}-{status:?}"),
            status,
            source: MarkSource::Machine,
            score: None,
            decided_at: started_at,
            decided_by: None,
            event_id: "e".into(),
        }
    }

    #[test]
    fn rolls_come_newest_first_with_their_marks() {
        let rows = vec![
            row(Some("maths"), "s1", 100, MarkStatus::Present),
            row(Some("maths"), "s2", 200, MarkStatus::Absent),
            row(Some("maths"), "s2", 200, MarkStatus::Review),
            row(Some("art"), "s3", 50, MarkStatus::Late),
            row(None, "s9", 999, MarkStatus::Present),
        ];
        let rolls = newest_first(rows);
        let order: Vec<&str> = rolls.iter().map(|r| r.session_id.as_str()).collect();
        assert_eq!(
            order,
            vec!["s2", "s1", "s3"],
            "newest first; s9 has no session yet"
        );
        let counts = Counts::of(&rolls[0].rows);
        assert_eq!((counts.absent, counts.review, counts.total()), (1, 1, 2));
        assert_eq!(Counts::of(&rolls[2].rows).late, 1);
        assert_eq!(time(0, &TimeZone::UTC), "1970-01-01 00:00 UTC");
    }

    /// Pages speak the school's time: Monday 08:00 in Sydney is Sunday 22:00 UTC.
    #[test]
    fn times_and_days_are_the_schools() {
        let sydney = TimeZone::get("Australia/Sydney").unwrap();
        let at = 1_725_228_000_000; // 2024-09-01 22:00 UTC
        assert_eq!(time(at, &sydney), "2024-09-02 08:00 AEST");
        assert_eq!(day(at, &sydney), "2024-09-02");
        assert_eq!(day(at, &TimeZone::UTC), "2024-09-01");
        let days = Days::of(None, None, 13, at, &sydney).unwrap();
        assert_eq!(
            (days.from_day.as_str(), days.to_day.as_str()),
            ("2024-08-20", "2024-09-02")
        );
        assert_eq!(
            days.to - at,
            16 * 60 * 60 * 1000,
            "Monday ends at 14:00 UTC"
        );
    }
}
