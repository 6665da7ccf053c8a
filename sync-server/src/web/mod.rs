//! The admins' web pages, server-rendered HTML on the same axum process as the API and on the same
//! decisions: sign-in is `api::auth::sign_in`, every figure comes from the `Store`. Templates are
//! askama's, compiled into the binary and autoescaped (`templates/*.html`); no script, no CDN, so
//! a school LAN without internet renders every page, under `Content-Security-Policy:
//! default-src 'self'`.
//!
//! Who sees what: a district admin every school (picked with `?school=`), a school admin their
//! school, a teacher their own sections only.

mod audit;
mod corrections;
mod devices;
mod enrolment;
mod notices;
mod past;
mod recognition;
mod reports;
mod rolls;
mod roster;
mod session;
mod settings;
mod students;
mod today;
mod users;

use std::collections::{BTreeMap, HashMap};

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use serde::Deserialize;

use crate::api::attendance::visible_sections;
use crate::api::auth::{ClientIp, new_token, sign_in};
use crate::api::{ApiError, AppState};
use crate::domain::attendance::Counts;
use crate::store::{AttendanceQuery, MachineDecisions, Role, Section, Tally};
use rolls::Roll;
use session::{LOGIN_CSRF_COOKIE, SESSION_COOKIE, WebUser, cookie, same_secret, set_cookie};

/// What the pages keep between requests: figures of past days, which change slowly and are shown
/// as such (`past::Past`), roster uploads waiting for their "Apply" (`roster::Pending`), and the
/// key that checks unsubscribe links.
#[derive(Default)]
pub struct Caches {
    /// Today's line: counts per local school day.
    past_days: past::Past<BTreeMap<jiff::civil::Date, Counts>>,
    /// The recognition audit, by first day.
    past_decisions: past::Past<Vec<Vec<MachineDecisions>>>,
    /// Reports, by first day and section.
    past_tallies: past::Past<Tally>,
    rosters: std::sync::Mutex<roster::Pending>,
    /// The key that checks unsubscribe links, read once.
    unsubscribe: crate::notify::mail::Secret,
}

impl Caches {
    /// Forgets a school's figures of past days: its marks changed here (a correction, an
    /// erasure), and the next page must show it.
    pub fn forget(&self, school_id: &str) {
        self.past_days.forget(school_id);
        self.past_decisions.forget(school_id);
        self.past_tallies.forget(school_id);
    }
}

/// How far back the pages look for a section's latest roll.
const RECENT_DAYS: i64 = 30;
const DAY_MS: i64 = 24 * 60 * 60 * 1000;

/// The pages, to be merged into the API's router (whose guard and request log they share).
/// `max_roster_bytes`: the largest upload the roster page takes, as the API's roster upload.
pub fn routes(max_roster_bytes: usize, max_upload_bytes: usize) -> Router<AppState> {
    Router::new()
        .route("/", get(home))
        .route("/sections", get(sections_page))
        .route("/schools", post(new_school))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/sections/{section}", get(section_page))
        .route("/sections/{section}/marks", post(corrections::correct))
        .route("/sections/{section}/excuse", post(corrections::excuse))
        .route(
            "/sections/{section}/trips/{trip}/cancel",
            post(corrections::cancel_trip),
        )
        .route("/devices", get(devices::page))
        .route("/devices/codes", post(devices::create_code))
        .route("/erasures/{student}", get(devices::erasure))
        .route(
            "/devices/{device}/revoke",
            get(devices::confirm_revoke).post(devices::revoke_device),
        )
        .route("/students/{student}", get(students::page))
        .route("/students/{student}/consent", post(students::set_consent))
        .route(
            "/students/{student}/guardians",
            post(students::add_guardian),
        )
        .route(
            "/students/{student}/guardians/{guardian}/remove",
            post(students::remove_guardian),
        )
        .route(
            "/students/{student}/erase",
            get(students::confirm_erase).post(students::erase_student),
        )
        .route(
            "/roster",
            get(roster::page)
                .post(roster::upload)
                .layer(axum::extract::DefaultBodyLimit::max(max_roster_bytes)),
        )
        .route("/roster/apply", post(roster::apply))
        .route(
            "/enrolment",
            get(enrolment::page)
                .post(enrolment::upload)
                .layer(axum::extract::DefaultBodyLimit::max(max_upload_bytes)),
        )
        .route("/enrolment/reembed", post(enrolment::reembed))
        .route("/enrolment/{job}", get(enrolment::job))
        .route(
            "/students/{student}/photos",
            post(enrolment::student_photos)
                .layer(axum::extract::DefaultBodyLimit::max(max_upload_bytes)),
        )
        .route("/users", get(users::page).post(users::create))
        .route("/users/{user}/password", post(users::set_password))
        .route("/settings", get(settings::page).post(settings::save))
        .route("/audit", get(audit::page))
        .route("/notices", get(notices::page))
        .route("/notices/preview", get(notices::preview))
        .route("/notices/{notice}", get(notices::one))
        .route("/notices/{notice}/resend", post(notices::resend))
        .route(
            "/unsubscribe",
            get(notices::unsubscribe_page).post(notices::unsubscribe),
        )
        .route("/recognition", get(recognition::page))
        .route("/audit.csv", get(audit::csv))
        .route("/reports", get(reports::page))
        .route("/reports/attendance.csv", get(reports::attendance_csv))
        .route("/reports/summary.csv", get(reports::summary_csv))
        .route("/static/app.css", get(stylesheet))
        .layer(axum::middleware::map_response(page_headers))
}

/// Headers of every page: nothing from elsewhere, no framing, no caching of a roll.
async fn page_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'self'; form-action 'self'; frame-ancestors 'none'"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        include_str!("../../static/app.css"),
    )
        .into_response()
}

/// An error as a page: the status, and a sentence a person can act on (never a 5xx's detail).
pub struct WebError(ApiError);

impl From<ApiError> for WebError {
    fn from(error: ApiError) -> WebError {
        WebError(error)
    }
}

impl From<crate::store::StoreError> for WebError {
    fn from(error: crate::store::StoreError) -> WebError {
        WebError(error.into())
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "error.html")]
struct ErrorPage {
    status: u16,
    message: String,
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        let status = self.0.status();
        let message = if status.is_server_error() {
            tracing::error!(error = %self.0, "web page failed");
            "The server could not show this page. Try again in a minute; if it goes on, tell your IT."
                .to_owned()
        } else {
            self.0.to_string()
        };
        let mut response = (
            status,
            ErrorPage {
                status: status.as_u16(),
                message,
            },
        )
            .into_response();
        if let ApiError::RateLimited { retry_after_s } | ApiError::Busy { retry_after_s } = self.0 {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_s));
        }
        response
    }
}

/// An optional form field: left empty, it was not given.
fn given(field: Option<String>) -> Option<String> {
    field.filter(|text| !text.trim().is_empty())
}

/// `text` as one URL path segment: every byte but the unreserved ones percent-encoded.
fn segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn forbidden(why: &str) -> WebError {
    WebError(ApiError::Forbidden(why.to_owned()))
}

#[derive(Template, WebTemplate)]
#[template(path = "login.html")]
struct LoginPage {
    csrf: String,
    username: String,
    error: Option<String>,
}

/// `GET /login`: the form, with a fresh double-submit token in a cookie of its own.
async fn login_page(State(state): State<AppState>) -> Response {
    login_form(&state, String::new(), None, StatusCode::OK)
}

fn login_form(
    state: &AppState,
    username: String,
    error: Option<String>,
    status: StatusCode,
) -> Response {
    let csrf = new_token();
    let cookie = set_cookie(
        LOGIN_CSRF_COOKIE,
        &csrf,
        "/login",
        3_600_000,
        state.limits().secure_cookies,
    );
    let page = LoginPage {
        csrf,
        username,
        error,
    };
    (status, [(header::SET_COOKIE, cookie)], page).into_response()
}

#[derive(Deserialize)]
struct LoginForm {
    username: String,
    password: String,
    csrf: String,
}

/// `POST /login`: the JSON API's sign-in and limits; the session token goes into the cookie.
async fn login(
    State(state): State<AppState>,
    client_ip: ClientIp,
    headers: axum::http::HeaderMap,
    Form(form): Form<LoginForm>,
) -> Result<Response, WebError> {
    let expected = cookie(&headers, LOGIN_CSRF_COOKIE).unwrap_or_default();
    if expected.is_empty() || !same_secret(expected, &form.csrf) {
        return Err(forbidden(
            "this sign-in form has expired or came from another site: open the sign-in page again",
        ));
    }
    match sign_in(&state, form.username.trim(), form.password, &client_ip).await {
        Ok(signed_in) => {
            let secure = state.limits().secure_cookies;
            let ttl = signed_in.expires_at - state.now();
            let mut response = Redirect::to("/").into_response();
            let headers = response.headers_mut();
            headers.append(
                header::SET_COOKIE,
                set_cookie(SESSION_COOKIE, &signed_in.token, "/", ttl, secure),
            );
            headers.append(
                header::SET_COOKIE,
                set_cookie(LOGIN_CSRF_COOKIE, "", "/login", 0, secure),
            );
            Ok(response)
        }
        Err(ApiError::Unauthorized(why)) => Ok(login_form(
            &state,
            form.username,
            Some(format!("{}{}.", why[..1].to_uppercase(), &why[1..])),
            StatusCode::UNAUTHORIZED,
        )),
        Err(other) => Err(other.into()),
    }
}

#[derive(Deserialize)]
struct CsrfForm {
    csrf: String,
}

/// `POST /logout`: ends this session and clears its cookie.
async fn logout(
    State(state): State<AppState>,
    user: WebUser,
    Form(form): Form<CsrfForm>,
) -> Result<Response, WebError> {
    if !user.check_csrf(&form.csrf) {
        return Err(forbidden(
            "this form came from another page: sign out again",
        ));
    }
    state.store().delete_auth_session(&user.token_hash).await?;
    let mut response = Redirect::to("/login").into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(SESSION_COOKIE, "", "/", 0, state.limits().secure_cookies),
    );
    Ok(response)
}

#[derive(Deserialize)]
struct SchoolParam {
    school: Option<String>,
}

/// The school a page is about: the one asked for, else the user's own. `None`: a district admin
/// who has not picked one. Whether the user may see it is `visible_sections`' answer.
fn school_of(user: &WebUser, asked: Option<String>) -> Result<Option<String>, WebError> {
    Ok(asked
        .filter(|s| !s.is_empty())
        .or_else(|| user.user.school_id.clone()))
}

/// The school `school_id` names, or 404. Callers check the user's access first.
async fn school_record(
    state: &AppState,
    school_id: &str,
) -> Result<crate::store::School, WebError> {
    state
        .store()
        .school(school_id)
        .await?
        .ok_or_else(|| WebError(ApiError::NotFound(format!("school {school_id}"))))
}

/// A posted form's CSRF token, checked against the session's.
fn form_of_this_session(user: &WebUser, csrf: &str) -> Result<(), WebError> {
    if user.check_csrf(csrf) {
        Ok(())
    } else {
        Err(forbidden(
            "this form came from another page: open the page again",
        ))
    }
}

/// The school an admin page (of `what`: accounts, devices) is about, checked: a posted form's
/// CSRF token first, then admins only, of that school (or district). `None`: a district admin who
/// has not picked one.
async fn admin_school(
    state: &AppState,
    user: &WebUser,
    csrf: Option<&str>,
    asked: Option<String>,
    what: &str,
) -> Result<Option<String>, WebError> {
    if let Some(csrf) = csrf {
        form_of_this_session(user, csrf)?;
    }
    if !user.is_admin() {
        return Err(forbidden(&format!(
            "{what} are managed by the school's admins"
        )));
    }
    let Some(school_id) = school_of(user, asked)? else {
        return Ok(None);
    };
    visible_sections(state, &user.user, &school_id).await?;
    Ok(Some(school_id))
}

/// The active sections `user` may see of `school_id`: the API's rule (`visible_sections`).
async fn sections_for(
    state: &AppState,
    user: &WebUser,
    school_id: &str,
) -> Result<Vec<Section>, WebError> {
    let visible = visible_sections(state, &user.user, school_id).await?;
    let mut sections = state.store().sections(school_id).await?;
    sections.retain(|s| s.active && visible.as_ref().is_none_or(|own| own.contains(&s.id)));
    Ok(sections)
}

/// Every student of the school by id, as the pages name them.
async fn student_names(
    state: &AppState,
    school_id: &str,
) -> Result<HashMap<String, String>, WebError> {
    let students = state.store().students(school_id).await?;
    Ok(students
        .into_iter()
        .map(|s| (s.id, format!("{} {}", s.given_name, s.family_name)))
        .collect())
}

/// Every section of the school by id, as the pages title them.
async fn section_titles(
    state: &AppState,
    school_id: &str,
) -> Result<HashMap<String, String>, WebError> {
    let sections = state.store().sections(school_id).await?;
    Ok(sections.into_iter().map(|s| (s.id, s.title)).collect())
}

/// A percentage as the pages and CSV files print it, one decimal; "-" when there is none.
fn one_decimal(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_owned(), |p| format!("{p:.1}"))
}

/// What the header of every signed-in page shows.
struct Chrome {
    username: String,
    role: &'static str,
    csrf: String,
    school: Option<String>,
    /// Admins see the admin pages in the navigation.
    is_admin: bool,
}

impl Chrome {
    fn of(user: &WebUser, school: Option<String>) -> Chrome {
        Chrome {
            username: user.user.username.clone(),
            role: match (user.user.role, &user.user.school_id) {
                (Role::Admin, None) => "district admin",
                (Role::Admin, Some(_)) => "school admin",
                (Role::Teacher, _) => "teacher",
            },
            csrf: user.csrf.clone(),
            is_admin: user.is_admin(),
            school,
        }
    }
}

/// A section's line on the landing page.
struct SectionLine {
    id: String,
    title: String,
    /// `None`: no roll in the last 30 days.
    taken: Option<String>,
    counts: Counts,
}

#[derive(Template, WebTemplate)]
#[template(path = "home.html")]
struct HomePage {
    chrome: Chrome,
    /// For a district admin who has not picked a school.
    schools: Vec<(String, String)>,
    /// The district admin's new-school form: what was typed, and why it was refused.
    new_school: NewSchoolEntry,
    school_name: String,
    lines: Vec<SectionLine>,
    recent_days: i64,
}

/// `GET /`: Today for the user's school; the list of schools for a district admin who has not
/// picked one.
async fn home(
    State(state): State<AppState>,
    user: WebUser,
    Query(param): Query<SchoolParam>,
) -> Result<Response, WebError> {
    match school_of(&user, param.school.clone())? {
        Some(school_id) => today::page(&state, &user, school_id).await,
        None => sections_page(State(state), user, Query(param)).await,
    }
}

#[derive(Default)]
struct NewSchoolEntry {
    id: String,
    name: String,
    error: Option<String>,
}

/// Every school, for a district admin who has not picked one, and the form for a new one.
async fn schools_page(
    state: &AppState,
    user: &WebUser,
    new_school: NewSchoolEntry,
) -> Result<Response, WebError> {
    let schools = state.store().schools().await?;
    let page = HomePage {
        chrome: Chrome::of(user, None),
        schools: schools.into_iter().map(|s| (s.id, s.name)).collect(),
        new_school,
        school_name: String::new(),
        lines: Vec::new(),
        recent_days: RECENT_DAYS,
    };
    Ok(page.into_response())
}

#[derive(Deserialize)]
struct NewSchoolForm {
    csrf: String,
    id: String,
    name: String,
}

/// `POST /schools`: a district admin's new school (`api::admin::add_school`, the API's rule),
/// then its page; a refusal shows the list again with why, what was typed kept.
async fn new_school(
    State(state): State<AppState>,
    user: WebUser,
    Form(form): Form<NewSchoolForm>,
) -> Result<Response, WebError> {
    form_of_this_session(&user, &form.csrf)?;
    let id = form.id.trim().to_owned();
    match crate::api::admin::add_school(&state, &user.user, id.clone(), &form.name).await {
        Ok(school) => {
            let query =
                serde_urlencoded::to_string([("school", school.id.as_str()), ("created", "1")])
                    .unwrap_or_default();
            Ok(Redirect::to(&format!("/settings?{query}")).into_response())
        }
        Err(refused @ (ApiError::InvalidRequest(_) | ApiError::Conflict(_))) => {
            let entry = NewSchoolEntry {
                id,
                name: form.name,
                error: Some(refused.to_string()),
            };
            schools_page(&state, &user, entry).await
        }
        Err(other) => Err(other.into()),
    }
}

/// `GET /sections`: every section the user may see, with its latest roll's counts.
async fn sections_page(
    State(state): State<AppState>,
    user: WebUser,
    Query(param): Query<SchoolParam>,
) -> Result<Response, WebError> {
    let Some(school_id) = school_of(&user, param.school)? else {
        return schools_page(&state, &user, NewSchoolEntry::default()).await;
    };
    // Access first: whether another school exists is not for this user to learn.
    let sections = sections_for(&state, &user, &school_id).await?;
    let school = school_record(&state, &school_id).await?;
    let tz = crate::api::attendance::time_zone(&state, &school_id).await?;
    let now = state.now();
    // Each section's latest session, then only its marks: a month of the school's marks would be
    // a hundred thousand rows for a 1,000-student school.
    let store = state.store();
    let mut latest: BTreeMap<String, Roll> = BTreeMap::new();
    for (section, session, started_at) in store
        .latest_sessions(&school_id, now - RECENT_DAYS * DAY_MS, now + DAY_MS)
        .await?
    {
        if !sections.iter().any(|s| s.id == section) {
            continue;
        }
        let mut rows = store
            .attendance(&AttendanceQuery {
                school_id: school_id.clone(),
                section_id: Some(section.clone()),
                from: started_at,
                to: started_at + 1,
                ..AttendanceQuery::default()
            })
            .await?;
        rows.retain(|r| r.session_id == session);
        latest.insert(
            section,
            Roll {
                session_id: session,
                started_at,
                rows,
            },
        );
    }
    let lines = sections
        .into_iter()
        .map(|section| {
            let roll = latest.remove(&section.id);
            SectionLine {
                taken: roll.as_ref().map(|r| rolls::time(r.started_at, &tz)),
                counts: roll
                    .as_ref()
                    .map(|r| Counts::of(&r.rows))
                    .unwrap_or_default(),
                id: section.id,
                title: section.title,
            }
        })
        .collect();
    let page = HomePage {
        chrome: Chrome::of(&user, Some(school_id)),
        schools: Vec::new(),
        new_school: NewSchoolEntry::default(),
        school_name: school.name,
        lines,
        recent_days: RECENT_DAYS,
    };
    Ok(page.into_response())
}

/// One student's line of a roll.
struct RollLine {
    student: String,
    student_id: String,
    status: &'static str,
    decided_by: String,
    score: String,
    decided_at: String,
}

/// A session of the section, as the list of recent rolls shows it.
struct SessionLink {
    id: String,
    started: String,
    current: bool,
}

#[derive(Template, WebTemplate)]
#[template(path = "section.html")]
struct SectionPage {
    chrome: Chrome,
    id: String,
    title: String,
    /// The roll shown: its session and start.
    session: Option<(String, String)>,
    counts: Counts,
    lines: Vec<RollLine>,
    sessions: Vec<SessionLink>,
    recent_days: i64,
    /// The statuses a person may choose when correcting.
    decisions: Vec<&'static str>,
    notice: Option<String>,
    today: String,
    grid: Grid,
    chronic_percent: u8,
    /// Trips booked for the section that have not ended (admins only): id, days, reason, who.
    trips: Vec<TripLine>,
}

struct TripLine {
    id: String,
    days: String,
    reason: String,
    by: String,
}

#[derive(Deserialize)]
struct SectionParam {
    school: Option<String>,
    session: Option<String>,
    notice: Option<String>,
    /// The grid's days, `YYYY-MM-DD`; default: the last two weeks.
    from: Option<String>,
    to: Option<String>,
}

/// The section's grid: students x sessions of a range, a code per mark, each student's rate.
struct Grid {
    from: String,
    to: String,
    /// Each session's column: (day and time, `MM-DD HH:MM` shown).
    columns: Vec<(String, String)>,
    rows: Vec<GridRow>,
}

struct GridRow {
    student_id: String,
    student: String,
    /// A code per column; empty where the student has no mark in that session.
    codes: Vec<&'static str>,
    percent: String,
    /// Missed the school's chronic-absence share or more of these lessons.
    flagged: bool,
}

/// How many days the grid shows unless asked.
const GRID_DAYS: i64 = 13;

/// The grid of `rolls` (oldest column first), students by name.
fn grid_of(
    rolls: &[Roll],
    names: &HashMap<String, String>,
    days: rolls::Days,
    chronic_percent: f64,
    tz: &jiff::tz::TimeZone,
) -> Grid {
    let mut ordered: Vec<&Roll> = rolls.iter().collect();
    ordered.sort_by(|a, b| (a.started_at, &a.session_id).cmp(&(b.started_at, &b.session_id)));
    let columns = ordered
        .iter()
        .map(|r| {
            let full = rolls::time(r.started_at, tz);
            let short = full.get(5..16).unwrap_or(&full).to_owned();
            (full, short)
        })
        .collect();
    let mut students: BTreeMap<(String, String), (Vec<&'static str>, Counts)> = BTreeMap::new();
    for (column, roll) in ordered.iter().enumerate() {
        for row in &roll.rows {
            let name = names
                .get(&row.student_id)
                .cloned()
                .unwrap_or_else(|| row.student_id.clone());
            let (codes, counts) = students
                .entry((name, row.student_id.clone()))
                .or_insert_with(|| (vec![""; ordered.len()], Counts::default()));
            codes[column] = reports::code(row.status);
            counts.add(row.status);
        }
    }
    let rows = students
        .into_iter()
        .map(|((student, student_id), (codes, counts))| GridRow {
            student,
            student_id,
            codes,
            percent: one_decimal(counts.attendance_percent()),
            flagged: counts.chronically_absent(chronic_percent),
        })
        .collect();
    Grid {
        from: days.from_day,
        to: days.to_day,
        columns,
        rows,
    }
}

/// `GET /sections/{section}`: the roll of one of the section's recent sessions (the latest unless
/// `?session=` names another), which whoever may see it may correct.
async fn section_page(
    State(state): State<AppState>,
    user: WebUser,
    Path(section_id): Path<String>,
    Query(param): Query<SectionParam>,
) -> Result<Response, WebError> {
    let Some(school_id) = school_of(&user, param.school)? else {
        return Ok(Redirect::to("/").into_response());
    };
    let sections = sections_for(&state, &user, &school_id).await?;
    let Some(section) = sections.into_iter().find(|s| s.id == section_id) else {
        return Err(if user.is_admin() {
            WebError(ApiError::NotFound(format!("section {section_id}")))
        } else {
            forbidden("you can see the rolls of your own sections only")
        });
    };
    let now = state.now();
    let settings = state.store().school_settings(&school_id).await?;
    let tz = settings.tz();
    let rows = state
        .store()
        .attendance(&AttendanceQuery {
            school_id: school_id.clone(),
            section_id: Some(section_id.clone()),
            from: now - RECENT_DAYS * DAY_MS,
            to: now + DAY_MS,
            ..AttendanceQuery::default()
        })
        .await?;
    let rolls = rolls::newest_first(rows);
    let roll: Option<&Roll> = match given(param.session) {
        Some(asked) => Some(
            rolls
                .iter()
                .find(|r| r.session_id == asked)
                .ok_or_else(|| WebError(ApiError::NotFound(format!("session {asked}"))))?,
        ),
        None => rolls.first(),
    };
    let names = student_names(&state, &school_id).await?;
    let mut lines: BTreeMap<(String, String), RollLine> = BTreeMap::new();
    for row in roll.iter().flat_map(|r| &r.rows) {
        let name = names
            .get(&row.student_id)
            .cloned()
            .unwrap_or_else(|| row.student_id.clone());
        lines.insert(
            (name.to_lowercase(), row.student_id.clone()),
            RollLine {
                student: name,
                student_id: row.student_id.clone(),
                status: row.status.as_str(),
                decided_by: rolls::decided_by(row),
                score: row.score.map_or_else(String::new, |s| format!("{s:.2}")),
                decided_at: rolls::time(row.decided_at, &tz),
            },
        );
    }
    let days = rolls::Days::of(param.from, param.to, GRID_DAYS, now, &tz)?;
    let grid_rows = state
        .store()
        .attendance(&AttendanceQuery {
            school_id: school_id.clone(),
            section_id: Some(section_id.clone()),
            from: days.from,
            to: days.to,
            ..AttendanceQuery::default()
        })
        .await?;
    let grid = grid_of(
        &rolls::newest_first(grid_rows),
        &names,
        days,
        settings.chronic_threshold(),
        &tz,
    );
    let sessions = rolls
        .iter()
        .map(|r| SessionLink {
            id: r.session_id.clone(),
            started: rolls::time(r.started_at, &tz),
            current: roll.is_some_and(|shown| shown.session_id == r.session_id),
        })
        .collect();
    let trips = if user.is_admin() {
        let trips = state.store().excusals(&school_id, &section.id).await?;
        trips
            .into_iter()
            .filter(|trip| trip.to > now)
            .map(|trip| TripLine {
                days: trip.days(&tz),
                id: trip.id,
                reason: trip.reason,
                by: trip.by,
            })
            .collect()
    } else {
        Vec::new()
    };
    let page = SectionPage {
        chrome: Chrome::of(&user, Some(school_id)),
        id: section.id,
        title: section.title,
        session: roll.map(|r| (r.session_id.clone(), rolls::time(r.started_at, &tz))),
        counts: roll.map(|r| Counts::of(&r.rows)).unwrap_or_default(),
        lines: lines.into_values().collect(),
        sessions,
        recent_days: RECENT_DAYS,
        decisions: corrections::DECISIONS.iter().map(|s| s.as_str()).collect(),
        notice: given(param.notice),
        today: rolls::day(now, &tz),
        grid,
        chronic_percent: settings.chronic_percent,
        trips,
    };
    Ok(page.into_response())
}
