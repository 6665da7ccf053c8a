//! The landing page, Today: the school's lessons of the day from its timetable (in its time zone),
//! each taken or not with its counts, the lessons not registered, the boxes offline, the absences
//! so far, a bar per lesson and the school's daily attendance rate over its last 30 school days.
//! Which lesson a session registers is `domain::lessons`; what a figure means, `domain::attendance`.

use std::collections::{BTreeMap, HashMap};

use askama::Template;
use askama_web::WebTemplate;
use axum::response::{IntoResponse, Response};
use jiff::civil::Date;

use super::rolls;
use super::session::WebUser;
use super::{Chrome, WebError, sections_for, student_names};
use crate::api::{ApiError, AppState};
use crate::domain::attendance::Counts;
use crate::domain::lessons::{self, Held, Registration};
use crate::store::{AttendanceQuery, Millis};

/// School days the trend line covers.
const TREND_DAYS: usize = 30;
/// Calendar days read for it: 30 school days fit in six weeks and a half with weekends.
const TREND_CALENDAR_DAYS: i64 = 46;
const DAY_MS: Millis = 24 * 60 * 60 * 1000;

/// One lesson's line.
pub(super) struct LessonLine {
    section_id: String,
    title: String,
    /// `HH:MM-HH:MM`, local.
    time: String,
    room: String,
    /// The session that registered it.
    session: Option<String>,
    state: &'static str,
    counts: Counts,
    bar: Vec<BarPart>,
}

/// A part of a lesson's bar, in SVG units out of `BAR_WIDTH`.
pub(super) struct BarPart {
    x: f64,
    width: f64,
    fill: &'static str,
    label: String,
}

const BAR_WIDTH: f64 = 200.0;

fn bar_of(counts: &Counts) -> Vec<BarPart> {
    let total = counts.total();
    if total == 0 {
        return Vec::new();
    }
    let mut x = 0.0;
    let mut parts = Vec::new();
    for (n, fill, what) in [
        (counts.present, "#1e6b30", "present"),
        (counts.late, "#b36b00", "late"),
        (counts.excused, "#7d8796", "excused"),
        (counts.review, "#6b2fa3", "needing review"),
        (counts.absent, "#a11d1d", "absent"),
    ] {
        if n == 0 {
            continue;
        }
        let width = BAR_WIDTH * n as f64 / total as f64;
        parts.push(BarPart {
            x,
            width,
            fill,
            label: format!("{n} {what}"),
        });
        x += width;
    }
    parts
}

pub(super) struct AbsenceLine {
    student_id: String,
    student: String,
    section_id: String,
    title: String,
    session: String,
    time: String,
}

pub(super) struct OfflineBox {
    name: String,
    last_seen: String,
}

/// The trend line: points in a 600 x 120 box, and what it says in words.
pub(super) struct Trend {
    /// The scale's bottom and middle, in percent (its top is 100).
    floor: String,
    middle: String,
    points: String,
    days: Vec<(String, String)>,
    summary: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "today.html")]
struct TodayPage {
    chrome: Chrome,
    school_name: String,
    day: String,
    time_zone: String,
    /// The timetable's lessons, then the rolls taken outside it.
    lessons: Vec<LessonLine>,
    planned: usize,
    not_registered: usize,
    absences: Vec<AbsenceLine>,
    offline: Vec<OfflineBox>,
    offline_minutes: u32,
    trend: Option<Trend>,
    /// A school with no timetable yet.
    no_timetable: bool,
}

use crate::domain::lessons::clock;

/// `GET /` for a school: Today.
pub(super) async fn page(
    state: &AppState,
    user: &WebUser,
    school_id: String,
) -> Result<Response, WebError> {
    // Access first: whether another school exists is not for this user to learn.
    let sections = sections_for(state, user, &school_id).await?;
    let store = state.store();
    let school = super::school_record(state, &school_id).await?;
    let settings = store.school_settings(&school_id).await?;
    let tz = settings.tz();
    let now = state.now();
    let today: Date = lessons::day_of(now, &tz)
        .ok_or_else(|| WebError(ApiError::Internal("the clock is out of range".into())))?;
    let (day_start, day_end) = lessons::bounds(today, &tz)
        .ok_or_else(|| WebError(ApiError::Internal("the day is out of range".into())))?;
    let titles: HashMap<String, String> = sections
        .iter()
        .map(|s| (s.id.clone(), s.title.clone()))
        .collect();
    let timetable: Vec<_> = store
        .timetable(&school_id)
        .await?
        .into_iter()
        .filter(|(section, _)| titles.contains_key(section))
        .collect();
    let no_timetable = timetable.iter().all(|(_, slots)| slots.is_empty());
    let rows = store
        .attendance(&AttendanceQuery {
            school_id: school_id.clone(),
            from: day_start,
            to: day_end,
            ..AttendanceQuery::default()
        })
        .await?;
    // The line is the school's; the lessons and absences only the sections the user may see.
    let school_today = Counts::of(&rows);
    let rows: Vec<_> = rows
        .into_iter()
        .filter(|r| {
            r.section_id
                .as_ref()
                .is_some_and(|s| titles.contains_key(s))
        })
        .collect();
    // The day's sessions and their marks.
    let mut held: BTreeMap<String, Held> = BTreeMap::new();
    let mut counts: HashMap<String, Counts> = HashMap::new();
    for row in &rows {
        let (Some(section), Some(started_at)) = (&row.section_id, row.started_at) else {
            continue;
        };
        held.entry(row.session_id.clone()).or_insert_with(|| Held {
            section: section.clone(),
            session: row.session_id.clone(),
            started_at,
        });
        counts
            .entry(row.session_id.clone())
            .or_default()
            .add(row.status);
    }
    let held: Vec<Held> = held.into_values().collect();
    let (registered, unclaimed) =
        lessons::register(lessons::of_day(&timetable, today, &tz), &held, now);
    let line = |section: &str,
                time: String,
                room: String,
                session: Option<String>,
                state: &'static str| {
        let c = session
            .as_ref()
            .and_then(|s| counts.get(s))
            .copied()
            .unwrap_or_default();
        LessonLine {
            section_id: section.to_owned(),
            title: titles
                .get(section)
                .cloned()
                .unwrap_or_else(|| section.to_owned()),
            time,
            room,
            bar: bar_of(&c),
            counts: c,
            session,
            state,
        }
    };
    let mut not_registered = 0;
    let lessons: Vec<LessonLine> = registered
        .into_iter()
        .map(|(lesson, registration)| {
            let time = format!("{}-{}", clock(lesson.starts, &tz), clock(lesson.ends, &tz));
            let room = lesson.room.clone().unwrap_or_default();
            match registration {
                Registration::Taken(session) => {
                    line(&lesson.section, time, room, Some(session), "taken")
                }
                Registration::NotYet => line(&lesson.section, time, room, None, "not yet"),
                Registration::NotRegistered => {
                    not_registered += 1;
                    line(&lesson.section, time, room, None, "not registered")
                }
            }
        })
        .collect();
    let planned = lessons.len();
    let mut lessons = lessons;
    lessons.extend(unclaimed.into_iter().map(|h| {
        line(
            &h.section,
            clock(h.started_at, &tz),
            String::new(),
            Some(h.session),
            "outside the timetable",
        )
    }));
    let names = student_names(state, &school_id).await?;
    let mut absences: Vec<AbsenceLine> = rows
        .iter()
        .filter(|r| r.status == shared_proto::sync::MarkStatus::Absent)
        .filter_map(|r| {
            let section = r.section_id.clone()?;
            Some(AbsenceLine {
                student: names
                    .get(&r.student_id)
                    .cloned()
                    .unwrap_or_else(|| r.student_id.clone()),
                student_id: r.student_id.clone(),
                title: titles
                    .get(&section)
                    .cloned()
                    .unwrap_or_else(|| section.clone()),
                section_id: section,
                session: r.session_id.clone(),
                time: clock(r.started_at.unwrap_or(r.decided_at), &tz),
            })
        })
        .collect();
    absences.sort_by(|a, b| (&a.time, &a.title, &a.student).cmp(&(&b.time, &b.title, &b.student)));
    let offline_after = Millis::from(settings.offline_minutes) * 60_000;
    let offline = if user.is_admin() {
        store
            .devices(&school_id)
            .await?
            .into_iter()
            .filter(|d| d.revoked_at.is_none())
            .filter(|d| d.last_seen_at.is_none_or(|seen| now - seen > offline_after))
            .map(|d| OfflineBox {
                name: d.name,
                last_seen: d
                    .last_seen_at
                    .map_or_else(|| "never".to_owned(), |at| rolls::time(at, &tz)),
            })
            .collect()
    } else {
        Vec::new()
    };
    let trend = trend(state, &school_id, &tz, now, school_today).await?;
    let page = TodayPage {
        chrome: Chrome::of(user, Some(school_id)),
        school_name: school.name,
        day: today.strftime("%A %-d %B %Y").to_string(),
        time_zone: settings.time_zone.clone(),
        lessons,
        planned,
        not_registered,
        absences,
        offline,
        offline_minutes: settings.offline_minutes,
        trend,
        no_timetable,
    };
    Ok(page.into_response())
}

/// The school's attendance rate per school day (a day with any mark), the last `TREND_DAYS`:
/// today's from `today` (the marks the page read anyway), the days before from the store's counts
/// per hour, each hour placed on its local day, kept for `past::FOR_MS` (reading six weeks of a
/// 1,000-student school's marks takes longer than the whole page may).
async fn trend(
    state: &AppState,
    school_id: &str,
    tz: &jiff::tz::TimeZone,
    now: Millis,
    today_counts: Counts,
) -> Result<Option<Trend>, WebError> {
    let today = lessons::day_of(now, tz)
        .ok_or_else(|| WebError(ApiError::Internal("the clock is out of range".into())))?;
    let (start_of_today, _) = lessons::bounds(today, tz)
        .ok_or_else(|| WebError(ApiError::Internal("the day is out of range".into())))?;
    let past = state
        .web_caches()
        .past_days
        .get_or_read(school_id, String::new(), start_of_today, now, || async {
            let hours = state
                .store()
                .counts_by_hour(
                    school_id,
                    now - TREND_CALENDAR_DAYS * DAY_MS,
                    start_of_today,
                )
                .await?;
            let mut days: BTreeMap<Date, Counts> = BTreeMap::new();
            for (hour, status, n) in hours {
                if let Some(day) = lessons::day_of(hour, tz) {
                    days.entry(day).or_default().add_n(status, n as usize);
                }
            }
            Ok(days)
        })
        .await?;
    let mut by_day = past.as_ref().clone();
    if today_counts.total() > 0 {
        by_day.insert(today, today_counts);
    }
    let days: Vec<(Date, f64)> = by_day
        .into_iter()
        .filter_map(|(day, c)| Some((day, c.attendance_percent()?)))
        .collect();
    let days = &days[days.len().saturating_sub(TREND_DAYS)..];
    if days.len() < 2 {
        return Ok(None);
    }
    // The scale runs from 100 % down to a round figure under the lowest day, so a school at
    // 94-96 % sees its dips rather than a flat line at the top.
    let lowest = days.iter().map(|(_, r)| *r).fold(100.0_f64, f64::min);
    let floor = ((lowest - 5.0) / 10.0).floor().clamp(0.0, 9.0) * 10.0;
    let y = |rate: f64| 10.0 + (100.0 - rate) / (100.0 - floor) * 100.0;
    let step = 600.0 / (days.len() - 1) as f64;
    let points = days
        .iter()
        .enumerate()
        .map(|(i, (_, rate))| format!("{:.1},{:.1}", i as f64 * step, y(*rate)))
        .collect::<Vec<_>>()
        .join(" ");
    let (low_day, low) = days
        .iter()
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(d, r)| (*d, *r))
        .unwrap_or((days[0].0, days[0].1));
    let last = days[days.len() - 1];
    let summary = format!(
        "{} school days: {:.1} % on {}, {:.1} % on {}; lowest {:.1} % on {}.",
        days.len(),
        days[0].1,
        days[0].0,
        last.1,
        last.0,
        low,
        low_day
    );
    Ok(Some(Trend {
        floor: format!("{floor:.0}"),
        middle: format!("{:.0}", (100.0 + floor) / 2.0),
        points,
        days: days
            .iter()
            .map(|(d, r)| (d.to_string(), format!("{r:.1}")))
            .collect(),
        summary,
    }))
}
