//! The audit log page: who did what, filtered by days, action and person, and the same lines as
//! CSV. Admins only: it names every account's actions.

use askama::Template;
use askama_web::WebTemplate;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::reports::{csv_record, csv_response};
use super::rolls::{self, Days};
use super::session::WebUser;
use super::{Chrome, WebError, admin_school, given};
use crate::api::attendance::time_zone;
use crate::api::{ApiError, AppState};
use crate::domain::audit::{Action, Entry, Query as AuditQuery};
use jiff::tz::TimeZone;

/// Lines a page shows; the CSV holds up to `MAX_CSV_LINES`.
const PAGE_LINES: usize = 500;
const MAX_CSV_LINES: usize = 100_000;

#[derive(Deserialize)]
pub(super) struct AuditParams {
    school: Option<String>,
    from: Option<String>,
    to: Option<String>,
    action: Option<String>,
    actor: Option<String>,
}

struct Line {
    at: String,
    actor: String,
    action: &'static str,
    subject: String,
    detail: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "audit.html")]
struct AuditPage {
    chrome: Chrome,
    from: String,
    to: String,
    action: String,
    actor: String,
    actions: Vec<(&'static str, &'static str)>,
    lines: Vec<Line>,
    limit: usize,
    csv_query: String,
}

/// The query the filters ask for, checked.
async fn query_of(
    state: &AppState,
    user: &WebUser,
    params: AuditParams,
    limit: usize,
) -> Result<Option<(AuditQuery, Days, String, TimeZone)>, WebError> {
    let Some(school_id) = admin_school(
        state,
        user,
        None,
        params.school,
        "the audit log and its lines",
    )
    .await?
    else {
        return Ok(None);
    };
    let tz = time_zone(state, &school_id).await?;
    let days = Days::of(params.from, params.to, 30, state.now(), &tz)?;
    let action = match given(params.action) {
        None => None,
        Some(word) => Some(
            word.parse::<Action>()
                .map_err(|e| WebError(ApiError::InvalidRequest(e.to_string())))?,
        ),
    };
    let query = AuditQuery {
        school_id: school_id.clone(),
        from: days.from,
        to: days.to,
        action,
        actor: given(params.actor).map(|a| a.trim().to_owned()),
        limit,
    };
    Ok(Some((query, days, school_id, tz)))
}

fn filters_query(query: &AuditQuery, days: &Days) -> String {
    let mut pairs = vec![
        ("school", query.school_id.clone()),
        ("from", days.from_day.clone()),
        ("to", days.to_day.clone()),
    ];
    if let Some(action) = query.action {
        pairs.push(("action", action.as_str().to_owned()));
    }
    if let Some(actor) = &query.actor {
        pairs.push(("actor", actor.clone()));
    }
    serde_urlencoded::to_string(pairs).unwrap_or_default()
}

/// `GET /audit`.
pub(super) async fn page(
    State(state): State<AppState>,
    user: WebUser,
    Query(params): Query<AuditParams>,
) -> Result<Response, WebError> {
    let Some((query, days, school_id, tz)) = query_of(&state, &user, params, PAGE_LINES).await?
    else {
        return Ok(Redirect::to("/").into_response());
    };
    let entries = state.store().audit(&query).await?;
    let page = AuditPage {
        csv_query: filters_query(&query, &days),
        chrome: Chrome::of(&user, Some(school_id)),
        from: days.from_day,
        to: days.to_day,
        action: query
            .action
            .map(|a| a.as_str().to_owned())
            .unwrap_or_default(),
        actor: query.actor.clone().unwrap_or_default(),
        actions: Action::ALL
            .iter()
            .map(|a| (a.as_str(), a.label()))
            .collect(),
        lines: entries
            .into_iter()
            .map(|e: Entry| Line {
                at: rolls::time(e.at, &tz),
                actor: e.actor,
                action: e.action.label(),
                subject: e.subject,
                detail: e.detail,
            })
            .collect(),
        limit: PAGE_LINES,
    };
    Ok(page.into_response())
}

/// `GET /audit.csv`: the filtered lines, newest first: `at,actor,action,subject,detail`.
pub(super) async fn csv(
    State(state): State<AppState>,
    user: WebUser,
    Query(params): Query<AuditParams>,
) -> Result<Response, WebError> {
    let Some((query, days, school_id, _)) = query_of(&state, &user, params, MAX_CSV_LINES).await?
    else {
        return Ok(Redirect::to("/").into_response());
    };
    let entries = state.store().audit(&query).await?;
    // The file keeps UTC, as its header says; the page and the filter's days are the school's.
    let mut text = csv_record(&["at_utc", "actor", "action", "subject", "detail"]);
    for e in &entries {
        text.push_str(&csv_record(&[
            &rolls::time(e.at, &TimeZone::UTC),
            &e.actor,
            e.action.as_str(),
            &e.subject,
            &e.detail,
        ]));
    }
    let file_name = format!(
        "audit_{}_{}_{}.csv",
        super::reports::file_safe(&school_id),
        days.from_day,
        days.to_day
    );
    Ok(csv_response(&file_name, Body::from(text)))
}
