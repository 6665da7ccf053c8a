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
use super::{Chrome, WebError, admin_school, section_titles};
use crate::api::AppState;
use crate::domain::recognition::{self, Line, Outcomes, WEEK_MS};
use crate::store::{MachineDecisions, Millis};

const DAY_MS: Millis = 24 * 60 * 60 * 1000;
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

/// The Monday (UTC) of the week `at` falls in, its first millisecond.
fn monday_of(at: Millis) -> Millis {
    let day = at.div_euclid(DAY_MS);
    // 1970-01-01 was a Thursday: three days after a Monday.
    (day - (day + 3).rem_euclid(7)) * DAY_MS
}

/// The machine's decisions of `[from, to)`: the days before today (UTC, as the audit counts days)
/// as `past::Past` holds them, today's from the store.
async fn decisions(
    state: &AppState,
    school_id: &str,
    from: Millis,
    to: Millis,
) -> Result<Vec<MachineDecisions>, WebError> {
    let now = state.now();
    let until = (now.div_euclid(DAY_MS) * DAY_MS).clamp(from, to);
    let past = state
        .web_caches()
        .past_decisions
        .get_or_read(school_id, from.to_string(), until, now, || async {
            Ok(state
                .store()
                .machine_decisions(school_id, from, until)
                .await?)
        })
        .await?;
    let mut rows = past.as_ref().clone();
    rows.extend(
        state
            .store()
            .machine_decisions(school_id, until, to)
            .await?,
    );
    Ok(rows)
}

/// `GET /recognition`: the last `weeks` weeks (this one included), 8 unless asked.
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
    let from = monday_of(state.now()) - (weeks as Millis - 1) * WEEK_MS;
    let to = from + weeks as Millis * WEEK_MS;
    let rows = decisions(&state, &school_id, from, to).await?;
    let audit = recognition::audit(&rows, from, weeks);
    let mut names = section_titles(&state, &school_id).await?;
    names.extend(
        state
            .store()
            .devices(&school_id)
            .await?
            .into_iter()
            .map(|d| (d.id, d.name)),
    );
    let week_labels = (0..weeks)
        .map(|w| {
            jiff::Timestamp::from_millisecond(from + w as Millis * WEEK_MS)
                .map_or_else(|_| "?".to_owned(), |t| t.strftime("%-d %b").to_string())
        })
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
    };
    Ok(page.into_response())
}

#[cfg(test)]
mod tests {
    #[test]
    fn weeks_start_on_monday() {
        // 2024-09-04 (a Wednesday) 10:00 UTC is in the week of Monday 2024-09-02.
        let wednesday = 1_725_444_000_000;
        assert_eq!(super::monday_of(wednesday), 1_725_235_200_000);
        assert_eq!(super::monday_of(1_725_235_200_000), 1_725_235_200_000);
    }
}
