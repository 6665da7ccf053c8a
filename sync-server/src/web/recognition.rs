//! The recognition self-audit page: per section and per box, week by week, how often people
//! changed what the machine decided (`domain::recognition`, which decides what counts and when a
//! rate is rising). Admins only: it is about the boxes, not about students.

use std::collections::HashMap;

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::session::WebUser;
use jiff::Span;
use jiff::civil::Date;
use jiff::tz::TimeZone;

use super::{Chrome, WebError, admin_school, section_titles};
use crate::api::{ApiError, AppState};
use crate::domain::lessons;
use crate::domain::recognition::{self, Line, Outcomes};
use crate::store::{MachineDecisions, Millis};

const DEFAULT_WEEKS: usize = 8;
const MAX_WEEKS: usize = 26;

#[derive(Template, WebTemplate)]
#[template(path = "recognition.html")]
struct RecognitionPage {
    chrome: Chrome,
    weeks: usize,
    /// Each week's first day, "26 Aug".
    week_labels: Vec<String>,
    by_section: Vec<LineView>,
    by_box: Vec<LineView>,
    rising_percent: f64,
    rise_factor: f64,
    recent_weeks: usize,
    time_zone: String,
}

struct LineView {
    name: String,
    /// "2.0 % (1/50)" per week, "-" without a machine call.
    weeks: Vec<String>,
    missed: u64,
    wrong_person: u64,
    reviews: String,
    total: String,
    rising: bool,
}

fn rate(tally: &Outcomes) -> String {
    match tally.change_percent() {
        Some(percent) => format!("{percent:.1} % ({}/{})", tally.changed(), tally.calls()),
        None => "-".to_owned(),
    }
}

impl LineView {
    fn new(line: &Line, names: &HashMap<String, String>) -> LineView {
        let t = &line.total;
        LineView {
            name: names
                .get(&line.id)
                .cloned()
                .unwrap_or_else(|| line.id.clone()),
            weeks: line.weeks.iter().map(rate).collect(),
            missed: t.missed,
            wrong_person: t.wrong_person,
            reviews: format!(
                "{} confirmed, {} rejected, {} open",
                t.review_confirmed, t.review_rejected, t.review_open
            ),
            total: rate(t),
            rising: line.rising,
        }
    }
}

#[derive(Deserialize)]
pub(super) struct RecognitionParams {
    school: Option<String>,
    weeks: Option<usize>,
}

/// The first days of `weeks` school weeks, Mondays, the last one this week's in the school's time
/// zone `tz`, and the Monday after: each week's bounds.
fn mondays(now: Millis, tz: &TimeZone, weeks: usize) -> Option<Vec<Date>> {
    let today = lessons::day_of(now, tz)?;
    let this_monday = today
        .checked_sub(Span::new().days(today.weekday().to_monday_zero_offset()))
        .ok()?;
    (0..=weeks)
        .map(|w| {
            let back = i64::try_from(weeks).ok()? - 1 - i64::try_from(w).ok()?;
            this_monday.checked_sub(Span::new().weeks(back)).ok()
        })
        .collect()
}

/// The machine's decisions of each week between `bounds` (the weeks' first milliseconds and the
/// end of the last): the days before today (`until`, the school's midnight) as `past::Past` holds
/// them, today's from the store.
async fn decisions(
    state: &AppState,
    school_id: &str,
    bounds: &[Millis],
    until: Millis,
) -> Result<Vec<Vec<MachineDecisions>>, WebError> {
    let store = state.store();
    let past = state
        .web_caches()
        .past_decisions
        .get_or_read(
            school_id,
            bounds[0].to_string(),
            until,
            state.now(),
            || async {
                // One week after the other: the store already reads each one in parallel parts, and
                // all weeks at once opened a read connection (and its page cache) for every part.
                let mut weeks = Vec::with_capacity(bounds.len() - 1);
                for week in bounds.windows(2) {
                    let (from, to) = (week[0].min(until), week[1].min(until));
                    weeks.push(store.machine_decisions(school_id, from, to).await?);
                }
                Ok(weeks)
            },
        )
        .await?;
    let mut weeks = past.as_ref().clone();
    // Today, and what this week has after it (nothing yet, unless a box's clock runs ahead).
    let (from, to) = (
        until.max(bounds[bounds.len() - 2]),
        bounds[bounds.len() - 1],
    );
    let live = store.machine_decisions(school_id, from, to).await?;
    if let Some(this_week) = weeks.last_mut() {
        *this_week = MachineDecisions::merged(std::mem::take(this_week).into_iter().chain(live));
    }
    Ok(weeks)
}

/// `GET /recognition`: the last `weeks` weeks (this one included), 8 unless asked, in the school's
/// weeks: Monday to Sunday in its time zone.
pub(super) async fn page(
    State(state): State<AppState>,
    user: WebUser,
    Query(params): Query<RecognitionParams>,
) -> Result<Response, WebError> {
    let Some(school_id) =
        admin_school(&state, &user, None, params.school, "the recognition audit").await?
    else {
        return Ok(Redirect::to("/").into_response());
    };
    let weeks = params.weeks.unwrap_or(DEFAULT_WEEKS).clamp(2, MAX_WEEKS);
    let settings = state.store().school_settings(&school_id).await?;
    let tz = settings.tz();
    let now = state.now();
    let out_of_range = || {
        WebError::from(ApiError::InvalidRequest(format!(
            "the clock reads {now} ms"
        )))
    };
    let mondays = mondays(now, &tz, weeks).ok_or_else(out_of_range)?;
    let midnight = |day: Date| lessons::bounds(day, &tz).map(|(start, _)| start);
    let bounds = mondays
        .iter()
        .map(|&day| midnight(day))
        .collect::<Option<Vec<Millis>>>()
        .ok_or_else(out_of_range)?;
    let today = lessons::day_of(now, &tz).ok_or_else(out_of_range)?;
    let until = midnight(today).ok_or_else(out_of_range)?;
    let audit = recognition::audit(&decisions(&state, &school_id, &bounds, until).await?);
    let mut names = section_titles(&state, &school_id).await?;
    names.extend(
        state
            .store()
            .devices(&school_id)
            .await?
            .into_iter()
            .map(|d| (d.id, d.name)),
    );
    let week_labels = mondays[..weeks]
        .iter()
        .map(|day| day.strftime("%-d %b").to_string())
        .collect();
    let page = RecognitionPage {
        chrome: Chrome::of(&user, Some(school_id)),
        weeks,
        week_labels,
        by_section: audit
            .by_section
            .iter()
            .map(|l| LineView::new(l, &names))
            .collect(),
        by_box: audit
            .by_box
            .iter()
            .map(|l| LineView::new(l, &names))
            .collect(),
        rising_percent: recognition::MIN_RISING_PERCENT,
        rise_factor: recognition::RISE_FACTOR,
        recent_weeks: recognition::RECENT_WEEKS,
        time_zone: settings.time_zone,
    };
    Ok(page.into_response())
}

#[cfg(test)]
mod tests {
    use jiff::civil::date;
    use jiff::tz::TimeZone;

    #[test]
    fn weeks_start_on_the_schools_monday() {
        // Wednesday 2024-09-04 10:00 UTC: in the week of Monday 2024-09-02 in London.
        let wednesday = 1_725_444_000_000;
        let london = TimeZone::get("Europe/London").expect("zone");
        let mondays = super::mondays(wednesday, &london, 2).expect("mondays");
        assert_eq!(
            mondays,
            [date(2024, 8, 26), date(2024, 9, 2), date(2024, 9, 9)]
        );
        // Sunday 2024-09-08 22:00 UTC is Monday 08:00 in Sydney: its week has begun there.
        let sunday_night = 1_725_832_800_000;
        let sydney = TimeZone::get("Australia/Sydney").expect("zone");
        let mondays = super::mondays(sunday_night, &sydney, 2).expect("mondays");
        assert_eq!(mondays[1], date(2024, 9, 9));
        assert_eq!(
            super::mondays(sunday_night, &TimeZone::UTC, 2).expect("utc")[1],
            date(2024, 9, 2)
        );
    }
}
