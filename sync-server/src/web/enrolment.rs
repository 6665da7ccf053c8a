//! Central enrolment's pages (issue 17): the ML service's state and the photos waiting, a ZIP
//! upload, each upload's progress and report, a student's photos from their page, and the kept
//! face crops re-embedded after a model change. The work is `ml_client::Enroller`'s, as for the
//! API's.

use crate::api::attendance::time_zone;
use jiff::tz::TimeZone;
use std::time::Duration;

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::multipart::{Multipart, MultipartRejection};
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::session::WebUser;
use super::{Chrome, WebError, admin_school, given, rolls, segment};
use crate::api::roster::parts;
use crate::api::{ApiError, AppState};
use crate::ml_client::{Job, PhotoState, Upload};

/// How long a student's upload waits for its templates before showing the job in progress.
const STUDENT_WAIT: Duration = Duration::from_secs(15);

#[derive(Deserialize)]
pub(super) struct Params {
    school: Option<String>,
    notice: Option<String>,
}

struct ServiceView {
    breaker: &'static str,
    failures: u32,
    retry_in_s: i64,
    last_error: Option<String>,
    waiting: usize,
    max: usize,
    unreadable: usize,
}

struct JobLine {
    id: String,
    upload: String,
    when: String,
    by: String,
    photos: usize,
    done: usize,
    waiting: usize,
    enrolled: usize,
    not_enrolled: usize,
    force: bool,
}

impl JobLine {
    fn of(job: &Job, tz: &TimeZone) -> JobLine {
        JobLine {
            id: job.id.clone(),
            upload: job.upload.clone(),
            when: rolls::time(job.created_at, tz),
            by: job.actor.clone(),
            photos: job.photos.len(),
            done: job.done(),
            waiting: job.waiting(),
            enrolled: job.count(PhotoState::Enrolled),
            not_enrolled: job.done() - job.count(PhotoState::Enrolled),
            force: job.force,
        }
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "enrolment.html")]
struct EnrolmentPage {
    chrome: Chrome,
    /// `None`: central enrolment is off (no `[ml]`).
    service: Option<ServiceView>,
    jobs: Vec<JobLine>,
    notice: Option<String>,
    /// The school's setting `keep_crops`, and how many crops it keeps.
    keep_crops: bool,
    kept_crops: usize,
}

struct PhotoLine {
    name: String,
    student: Option<String>,
    state: &'static str,
    class: &'static str,
    reason: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "enrolment_job.html")]
struct JobPage {
    chrome: Chrome,
    job: JobLine,
    lines: Vec<PhotoLine>,
    /// Why photos wait, when the service is not answering.
    waiting_why: Option<String>,
}

/// `GET /enrolment`.
pub(super) async fn page(
    State(state): State<AppState>,
    user: WebUser,
    Query(params): Query<Params>,
) -> Result<Response, WebError> {
    let Some(school_id) = admin_school(&state, &user, None, params.school, "enrolment").await?
    else {
        return Ok(Redirect::to("/").into_response());
    };
    let tz = time_zone(&state, &school_id).await?;
    let (service, jobs) = match state.enroller() {
        Some(enroller) => {
            let health = enroller.health();
            let service = ServiceView {
                breaker: health.breaker.as_str(),
                failures: health.link.consecutive_failures,
                retry_in_s: health.breaker.retry_in_s().unwrap_or(0),
                last_error: health.last_error,
                waiting: health.waiting_photos,
                max: health.max_waiting_photos,
                unreadable: health.unreadable_uploads,
            };
            let jobs = enroller
                .jobs(&school_id)
                .iter()
                .map(|job| JobLine::of(job, &tz))
                .collect();
            (Some(service), jobs)
        }
        None => (None, Vec::new()),
    };
    let (keep_crops, kept_crops) = crate::ml_client::kept_crops(state.store(), &school_id).await?;
    Ok(EnrolmentPage {
        chrome: Chrome::of(&user, Some(school_id)),
        service,
        jobs,
        notice: given(params.notice),
        keep_crops,
        kept_crops,
    }
    .into_response())
}

#[derive(Deserialize)]
pub(super) struct ReembedForm {
    csrf: String,
    school: Option<String>,
}

/// `POST /enrolment/reembed`: the school's kept crops into the ML service's space; the Enrolment
/// page then says what was done.
pub(super) async fn reembed(
    State(state): State<AppState>,
    user: WebUser,
    axum::Form(form): axum::Form<ReembedForm>,
) -> Result<Response, WebError> {
    let Some(school_id) =
        admin_school(&state, &user, Some(&form.csrf), form.school, "enrolment").await?
    else {
        return Ok(Redirect::to("/").into_response());
    };
    let report = crate::api::enrol::enroller(&state)?
        .reembed(&school_id, &user.user.username)
        .await
        .map_err(ApiError::from)?;
    let mut notice = format!(
        "Re-embedded into {}: {} new templates from kept crops; {} already there.",
        report.space, report.made, report.already
    );
    if !report.skipped.is_empty() {
        notice += &format!(
            " {} crops skipped (the first: {}).",
            report.skipped.len(),
            report.skipped[0].1
        );
    }
    if !report.need_photos.is_empty() {
        notice += &format!(
            " {} students need new photos: {}.",
            report.need_photos.len(),
            report.need_photos.join(", ")
        );
    }
    let query = serde_urlencoded::to_string([("school", school_id.as_str()), ("notice", &notice)])
        .unwrap_or_default();
    Ok(Redirect::to(&format!("/enrolment?{query}")).into_response())
}

/// `GET /enrolment/{job}`.
pub(super) async fn job(
    State(state): State<AppState>,
    user: WebUser,
    Path(job_id): Path<String>,
    Query(params): Query<Params>,
) -> Result<Response, WebError> {
    let Some(school_id) = admin_school(&state, &user, None, params.school, "enrolment").await?
    else {
        return Ok(Redirect::to("/").into_response());
    };
    let enroller = crate::api::enrol::enroller(&state)?;
    let job = enroller
        .job(&school_id, &job_id)
        .ok_or_else(|| ApiError::NotFound(format!("upload {job_id}")))?;
    let health = enroller.health();
    let tz = time_zone(&state, &school_id).await?;
    let waiting_why = (job.waiting() > 0 && health.breaker != shared_proto::breaker::Breaker::Closed)
        .then(|| {
            format!(
                "The ML service is not answering{}: the photos wait here and go through once it does.",
                health
                    .last_error
                    .map_or_else(String::new, |e| format!(" ({e})"))
            )
        });
    let lines = job
        .photos
        .iter()
        .map(|p| PhotoLine {
            name: p.name.clone(),
            student: p.student.clone(),
            state: p.state.as_str(),
            class: p.state.as_str(),
            reason: p.reason.clone().unwrap_or_default(),
        })
        .collect();
    Ok(JobPage {
        chrome: Chrome::of(&user, Some(school_id)),
        job: JobLine::of(&job, &tz),
        lines,
        waiting_why,
    }
    .into_response())
}

/// The fields of an upload form: its files and the rest.
struct Form {
    csrf: String,
    school: Option<String>,
    force: bool,
    files: Vec<(String, Vec<u8>)>,
}

async fn read_form(
    state: &AppState,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Form, WebError> {
    let multipart = multipart.map_err(|e| {
        WebError(ApiError::InvalidRequest(format!(
            "the form did not arrive as an upload: {}",
            e.body_text()
        )))
    })?;
    let mut form = Form {
        csrf: String::new(),
        school: None,
        force: false,
        files: Vec::new(),
    };
    for part in parts(state, multipart).await? {
        let text = || String::from_utf8_lossy(&part.bytes).into_owned();
        match (part.name.as_str(), &part.file_name) {
            // A file input left empty still sends a part, without content.
            (_, Some(name)) if !part.bytes.is_empty() => {
                form.files.push((name.clone(), part.bytes.clone()))
            }
            (_, Some(_)) => {}
            ("csrf", None) => form.csrf = text(),
            ("school", None) => form.school = Some(text()),
            ("force", None) => form.force = !text().is_empty(),
            _ => {}
        }
    }
    Ok(form)
}

fn job_page(school_id: &str, job: &Job) -> Response {
    let query = serde_urlencoded::to_string([("school", school_id)]).unwrap_or_default();
    Redirect::to(&format!("/enrolment/{}?{query}", segment(&job.id))).into_response()
}

/// `POST /enrolment`: a ZIP.
pub(super) async fn upload(
    State(state): State<AppState>,
    user: WebUser,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Response, WebError> {
    let upload = |files: Vec<(String, Vec<u8>)>| {
        let (name, bytes) = files.into_iter().next().ok_or_else(|| {
            WebError(ApiError::InvalidRequest(
                "choose a ZIP file of photos first".into(),
            ))
        })?;
        Ok(Upload::Zip { name, bytes })
    };
    submit(&state, &user, multipart, upload, Duration::ZERO).await
}

/// `POST /students/{student}/photos`: one student's photos, from their page.
pub(super) async fn student_photos(
    State(state): State<AppState>,
    user: WebUser,
    Path(student_id): Path<String>,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Response, WebError> {
    let upload = |photos| {
        Ok(Upload::Student {
            student: student_id,
            photos,
        })
    };
    submit(&state, &user, multipart, upload, STUDENT_WAIT).await
}

/// An upload form's files made into `upload` and queued for the form's school (its CSRF token
/// checked, admins only); the job's page, after waiting up to `wait` for it to finish.
async fn submit(
    state: &AppState,
    user: &WebUser,
    multipart: Result<Multipart, MultipartRejection>,
    upload: impl FnOnce(Vec<(String, Vec<u8>)>) -> Result<Upload, WebError>,
    wait: Duration,
) -> Result<Response, WebError> {
    let form = read_form(state, multipart).await?;
    let Some(school_id) =
        admin_school(state, user, Some(&form.csrf), form.school, "enrolment").await?
    else {
        return Ok(Redirect::to("/").into_response());
    };
    let enroller = crate::api::enrol::enroller(state)?;
    let upload = upload(form.files)?;
    let job = enroller
        .submit(&school_id, &user.user.username, upload, form.force)
        .await
        .map_err(ApiError::from)?;
    let job = enroller
        .wait(&school_id, &job.id, wait)
        .await
        .unwrap_or(job);
    Ok(job_page(&school_id, &job))
}
