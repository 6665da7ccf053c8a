//! The notices page (issue 16): what the school's outbox holds, queued, sent and failed (with the
//! SMTP server's answer), a failed one sent again, each one's text as it was sent, and the
//! guardians who unsubscribed. Admins only. And the public unsubscribe link of guardians' notices
//! (RFC 8058: a mail client's one-click POST, or a person's button).

use crate::api::attendance::time_zone;
use askama::Template;
use askama_web::WebTemplate;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use jiff::tz::TimeZone;
use serde::Deserialize;

use super::rolls;
use super::session::WebUser;
use super::{Chrome, WebError, admin_school, given};
use crate::api::{ApiError, AppState};
use crate::domain::notice::{self, Notice, State as NoticeState};
use crate::notify::mail;
use crate::store::NoticeQuery;

/// Notices a page lists, newest first.
const PAGE_NOTICES: usize = 200;

struct Line {
    id: String,
    created: String,
    kind: &'static str,
    recipient: String,
    subject: String,
    state: &'static str,
    attempts: u32,
    /// The sending time, or when the next try is due, or the failure.
    detail: String,
    failed: bool,
}

impl Line {
    fn of(n: Notice, tz: &TimeZone) -> Line {
        let time = |at| rolls::time(at, tz);
        let detail = match n.state {
            NoticeState::Sent => n.sent_at.map(time).unwrap_or_default(),
            NoticeState::Queued if n.last_error.is_some() => format!(
                "next try {}: {}",
                time(n.next_attempt_at),
                n.last_error.clone().unwrap_or_default()
            ),
            NoticeState::Queued => format!("due {}", time(n.next_attempt_at)),
            NoticeState::Sending => "being sent".to_owned(),
            NoticeState::Failed => n.last_error.clone().unwrap_or_default(),
        };
        Line {
            created: time(n.created_at),
            kind: n.letter.kind.label(),
            recipient: n.letter.recipient,
            subject: n.letter.subject,
            state: n.state.as_str(),
            attempts: n.attempts,
            failed: n.state == NoticeState::Failed,
            detail,
            id: n.letter.id,
        }
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "notices.html")]
struct NoticesPage {
    chrome: Chrome,
    counts: Vec<(&'static str, u64)>,
    state: String,
    lines: Vec<Line>,
    limit: usize,
    /// (name, address, since).
    opted_out: Vec<(String, String, String)>,
    sending: bool,
    notice: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct NoticesParams {
    school: Option<String>,
    state: Option<String>,
    notice: Option<String>,
}

/// `GET /notices`.
pub(super) async fn page(
    State(state): State<AppState>,
    user: WebUser,
    Query(params): Query<NoticesParams>,
) -> Result<Response, WebError> {
    let Some(school_id) = admin_school(&state, &user, None, params.school, "notices").await? else {
        return Ok(Redirect::to("/").into_response());
    };
    let filter = match given(params.state) {
        None => None,
        Some(word) => Some(
            word.parse::<NoticeState>()
                .map_err(|e| WebError(ApiError::InvalidRequest(e.to_string())))?,
        ),
    };
    let store = state.store();
    let tz = time_zone(&state, &school_id).await?;
    let counts = store.notice_counts(&school_id).await?;
    let counts = NoticeState::ALL
        .iter()
        .map(|s| {
            let n = counts.iter().find(|(c, _)| c == s).map_or(0, |(_, n)| *n);
            (s.as_str(), n)
        })
        .collect();
    let lines = store
        .notices(&NoticeQuery {
            school_id: school_id.clone(),
            day: None,
            state: filter,
            limit: PAGE_NOTICES,
        })
        .await?
        .into_iter()
        .map(|n| Line::of(n, &tz))
        .collect();
    let opted_out = store
        .guardians(&school_id)
        .await?
        .into_iter()
        .filter_map(|g| {
            let since = g.opted_out_at?;
            Some((
                format!("{} {}", g.given_name, g.family_name),
                g.email,
                rolls::time(since, &tz),
            ))
        })
        .collect();
    let page = NoticesPage {
        chrome: Chrome::of(&user, Some(school_id)),
        counts,
        state: filter.map(|s| s.as_str().to_owned()).unwrap_or_default(),
        lines,
        limit: PAGE_NOTICES,
        opted_out,
        sending: state.limits().sends_notices,
        notice: given(params.notice),
    };
    Ok(page.into_response())
}

#[derive(Template, WebTemplate)]
#[template(path = "notice.html")]
struct NoticePage {
    chrome: Chrome,
    line: Line,
    message_id: String,
    day: String,
    text: String,
    html: String,
}

/// `GET /notices/{id}`: one notice as it is (or was) sent.
pub(super) async fn one(
    State(state): State<AppState>,
    user: WebUser,
    Path(id): Path<String>,
    Query(params): Query<NoticesParams>,
) -> Result<Response, WebError> {
    let Some(school_id) = admin_school(&state, &user, None, params.school, "notices").await? else {
        return Ok(Redirect::to("/").into_response());
    };
    let found = find(&state, &school_id, &id).await?;
    let tz = time_zone(&state, &school_id).await?;
    let page = NoticePage {
        chrome: Chrome::of(&user, Some(school_id)),
        message_id: found.letter.message_id.clone(),
        day: found.letter.day.clone(),
        text: found.letter.text.clone(),
        html: found.letter.html.clone(),
        line: Line::of(found, &tz),
    };
    Ok(page.into_response())
}

async fn find(state: &AppState, school_id: &str, id: &str) -> Result<Notice, WebError> {
    state
        .store()
        .notice(school_id, id)
        .await?
        .ok_or_else(|| WebError(ApiError::NotFound(format!("notice {id}"))))
}

#[derive(Template, WebTemplate)]
#[template(path = "notice_preview.html")]
struct PreviewPage {
    chrome: Chrome,
    /// (word, label) of every kind, for the tabs.
    kinds: Vec<(&'static str, &'static str)>,
    kind: &'static str,
    label: &'static str,
    /// When the school's settings send this kind, or that they do not.
    when: String,
    subject: String,
    text: String,
    html: String,
    sending: bool,
}

#[derive(Deserialize)]
pub(super) struct PreviewParams {
    school: Option<String>,
    kind: Option<String>,
}

/// `GET /notices/preview`: what each kind of notice looks like with the school's name, from
/// example people, before anything is sent; and when the school's settings send it.
pub(super) async fn preview(
    State(state): State<AppState>,
    user: WebUser,
    Query(params): Query<PreviewParams>,
) -> Result<Response, WebError> {
    let Some(school_id) = admin_school(&state, &user, None, params.school, "notices").await? else {
        return Ok(Redirect::to("/").into_response());
    };
    let kind = match given(params.kind) {
        None => notice::Kind::Absence,
        Some(word) => word
            .parse::<notice::Kind>()
            .map_err(|e| WebError(ApiError::InvalidRequest(e.to_string())))?,
    };
    let store = state.store();
    let school = super::school_record(&state, &school_id).await?;
    let settings = store.school_settings(&school_id).await?;
    let date = crate::domain::lessons::day_of(state.now(), &settings.tz())
        .map(mail::long_date)
        .unwrap_or_default();
    let unsubscribe = format!(
        "{}/unsubscribe?school={}&guardian=...&token=...",
        state
            .limits()
            .public_url
            .as_deref()
            .unwrap_or("https://rollcall.example"),
        school_id
    );
    let (subject, text, html) =
        mail::preview(kind, &school.name, &date, &unsubscribe).map_err(|e| {
            WebError(ApiError::Internal(format!(
                "cannot render the preview: {e}"
            )))
        })?;
    let page = PreviewPage {
        chrome: Chrome::of(&user, Some(school_id)),
        kinds: notice::Kind::ALL
            .iter()
            .map(|k| (k.as_str(), k.label()))
            .collect(),
        kind: kind.as_str(),
        label: kind.label(),
        when: when(kind, &settings),
        subject,
        text,
        html,
        sending: state.limits().sends_notices,
    };
    Ok(page.into_response())
}

/// When the school's settings send notices of `kind`, for people.
fn when(kind: notice::Kind, s: &crate::domain::settings::SchoolSettings) -> String {
    use crate::domain::notice::{GuardianTiming, Kind};
    let admins = if s.admin_emails.is_empty() {
        "nobody yet: no admin address is set".to_owned()
    } else {
        s.admin_emails.join(", ")
    };
    match (kind, s.guardian_notices) {
        (Kind::Absence | Kind::Correction, GuardianTiming::Off) => {
            "Not sent: guardians' notices are off.".to_owned()
        }
        (Kind::Absence, GuardianTiming::Digest) => format!(
            "One a day per family at {}, listing each lesson that ended at least {} minutes before with the child absent or late.",
            s.digest_time, s.grace_minutes
        ),
        (Kind::Absence, GuardianTiming::AfterEachLesson) => format!(
            "To the family {} minutes after the end of the first lesson a child missed or came late to that day; {}",
            s.grace_minutes,
            if s.corrections {
                "lessons missed later that day come as corrections."
            } else {
                "lessons missed later that day are not told, since corrections are off."
            }
        ),
        (Kind::Correction, _) if !s.corrections => "Not sent: corrections are off.".to_owned(),
        (Kind::Correction, _) => {
            "When a mark a family was told of changes, up to 6 days later.".to_owned()
        }
        (Kind::AdminDigest, _) if !s.admin_digest => {
            "Not sent: the admins' digest is off.".to_owned()
        }
        (Kind::AdminDigest, _) => format!("Daily at {}, to {admins}.", s.admin_digest_time),
        (Kind::OfflineAlert, _) if !s.offline_alerts => {
            "Not sent: offline alerts are off.".to_owned()
        }
        (Kind::OfflineAlert, _) => format!(
            "At once when a box is not heard from for {} minutes during lessons, once per box and day, to {admins}.",
            s.offline_minutes
        ),
    }
}

#[derive(Deserialize)]
pub(super) struct ResendForm {
    csrf: String,
    school: Option<String>,
}

/// `POST /notices/{id}/resend`: a failed notice queued again, its tries counted afresh.
pub(super) async fn resend(
    State(state): State<AppState>,
    user: WebUser,
    Path(id): Path<String>,
    Form(form): Form<ResendForm>,
) -> Result<Response, WebError> {
    let Some(school_id) =
        admin_school(&state, &user, Some(&form.csrf), form.school, "notices").await?
    else {
        return Ok(Redirect::to("/").into_response());
    };
    let queued = state
        .store()
        .resend_notice(&school_id, &id, &notice::resend(state.now()))
        .await?;
    let said = if queued {
        "Queued again: it is sent within a minute."
    } else {
        "Only a failed notice can be sent again."
    };
    let query = serde_urlencoded::to_string([("school", school_id.as_str()), ("notice", said)])
        .unwrap_or_default();
    Ok(Redirect::to(&format!("/notices?{query}")).into_response())
}

#[derive(Deserialize)]
pub(super) struct UnsubscribeParams {
    school: String,
    guardian: String,
    token: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "unsubscribe.html")]
struct UnsubscribePage {
    school: String,
    query: String,
    done: bool,
}

/// Checks a link's token; an unknown or forged one is refused with the same answer.
async fn checked(state: &AppState, p: &UnsubscribeParams) -> Result<String, WebError> {
    let secret = state.web_caches().unsubscribe.get(state.store()).await?;
    if !mail::token_holds(secret, &p.school, &p.guardian, &p.token) {
        return Err(WebError(ApiError::InvalidRequest(
            "this unsubscribe link is not valid: open the link in the latest e-mail".into(),
        )));
    }
    Ok(state
        .store()
        .school(&p.school)
        .await?
        .map_or_else(|| "the school".to_owned(), |s| s.name))
}

/// `GET /unsubscribe`: a page with one button (a link alone must not unsubscribe: mail
/// scanners open links).
pub(super) async fn unsubscribe_page(
    State(state): State<AppState>,
    Query(p): Query<UnsubscribeParams>,
) -> Result<Response, WebError> {
    let school = checked(&state, &p).await?;
    let query = serde_urlencoded::to_string([
        ("school", &p.school),
        ("guardian", &p.guardian),
        ("token", &p.token),
    ])
    .unwrap_or_default();
    Ok(UnsubscribePage {
        school,
        query,
        done: false,
    }
    .into_response())
}

/// `POST /unsubscribe`: RFC 8058's one-click (body `List-Unsubscribe=One-Click`) or the page's
/// button; honoured at once, and said so.
pub(super) async fn unsubscribe(
    State(state): State<AppState>,
    Query(p): Query<UnsubscribeParams>,
) -> Result<Response, WebError> {
    let school = checked(&state, &p).await?;
    state
        .store()
        .opt_out_guardian(&p.school, &p.guardian, state.now())
        .await?;
    Ok(UnsubscribePage {
        school,
        query: String::new(),
        done: true,
    }
    .into_response())
}
