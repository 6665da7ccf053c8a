//! Central enrolment (issue 17): photos of a student, or a ZIP of a school's photos named by
//! student id, become templates through the ML service (`ml_client::Enroller`). An upload is a job
//! on disk; the calls answer with the job, at once or when it is done.

use std::time::Duration;

use axum::Json;
use axum::extract::multipart::{Multipart, MultipartRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::auth::SchoolAdmin;
use super::{AppState, BodyBytes, openapi};
use crate::api::ApiError;
use crate::ml_client::{
    EnrolHealth, Enroller, Job, PhotoState, ReembedError, Reembedded, SubmitError, Upload,
};

/// The photos' body as the document shows it.
struct PhotoParts;

impl utoipa::PartialSchema for PhotoParts {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, SchemaFormat, Type};
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some("1 to 5 file parts named photo (JPEG or PNG)."))
            .property(
                "photo",
                ArrayBuilder::new().items(
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .format(Some(SchemaFormat::Custom("binary".to_owned()))),
                ),
            )
            .into()
    }
}

impl utoipa::ToSchema for PhotoParts {}

/// The most a call waits for its job before answering 202 with it as it is.
const MAX_WAIT_S: u64 = 60;

#[derive(Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = EnrolmentPhoto)]
pub struct PhotoJson {
    /// As uploaded (a ZIP's entry path).
    pub name: String,
    pub student: Option<String>,
    /// `waiting`, `enrolled`, `refused`, `dropped` (consent withdrawn while it waited) or
    /// `expired` (waited longer than `photo_max_age_hours`).
    pub state: PhotoState,
    /// `no_face`, `several_faces`, `face_too_small`, `face_too_blurry`, `not_frontal`,
    /// `looks_like_another`, `undecodable_image`, `image_too_large`, `unknown_student`,
    /// `no_consent`, `not_an_image`, `too_large`, ...
    pub code: Option<String>,
    pub reason: Option<String>,
    /// The template made of it.
    pub template: Option<String>,
}

#[derive(Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = EnrolmentJob)]
pub struct JobJson {
    pub id: String,
    pub upload: String,
    pub by: String,
    pub created_at: i64,
    pub finished_at: Option<i64>,
    pub force: bool,
    pub photos: usize,
    pub waiting: usize,
    pub enrolled: usize,
    pub refused: usize,
    pub dropped: usize,
    pub expired: usize,
    pub report: Vec<PhotoJson>,
}

impl From<&Job> for JobJson {
    fn from(job: &Job) -> JobJson {
        use crate::ml_client::PhotoState as S;
        JobJson {
            id: job.id.clone(),
            upload: job.upload.clone(),
            by: job.actor.clone(),
            created_at: job.created_at,
            finished_at: job.finished_at,
            force: job.force,
            photos: job.photos.len(),
            waiting: job.count(S::Waiting),
            enrolled: job.count(S::Enrolled),
            refused: job.count(S::Refused),
            dropped: job.count(S::Dropped),
            expired: job.count(S::Expired),
            report: job
                .photos
                .iter()
                .map(|p| PhotoJson {
                    name: p.name.clone(),
                    student: p.student.clone(),
                    state: p.state,
                    code: p.code.clone(),
                    reason: p.reason.clone(),
                    template: p.template.clone(),
                })
                .collect(),
        }
    }
}

#[derive(Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = EnrolmentService)]
pub struct ServiceJson {
    pub url: String,
    /// `closed`, `half_open` or `open`.
    pub breaker: String,
    /// Failed calls in a row.
    pub failures: u32,
    /// While open: seconds until the next probe.
    pub retry_in_s: Option<i64>,
    pub waiting_photos: usize,
    pub max_waiting_photos: usize,
    /// Uploads kept on the server's disk because their job file could not be read at start (the
    /// server log names the folders); they are read again at the next start.
    #[serde(default)]
    pub unreadable_uploads: usize,
    pub last_error: Option<String>,
}

impl From<EnrolHealth> for ServiceJson {
    fn from(h: EnrolHealth) -> ServiceJson {
        ServiceJson {
            url: h.url,
            breaker: h.breaker.as_str().to_owned(),
            failures: h.link.consecutive_failures,
            retry_in_s: h.breaker.retry_in_s(),
            waiting_photos: h.waiting_photos,
            max_waiting_photos: h.max_waiting_photos,
            unreadable_uploads: h.unreadable_uploads,
            last_error: h.last_error,
        }
    }
}

#[derive(Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = Enrolment)]
pub struct EnrolmentJson {
    pub service: ServiceJson,
    /// Newest first; finished jobs' reports are kept a week.
    pub jobs: Vec<JobJson>,
    /// Whether the school keeps each template's 112x112 aligned face (its setting `keep_crops`).
    pub keep_crops: bool,
    /// How many crops the school keeps, for re-embedding after a model change.
    pub kept_crops: usize,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct UploadQuery {
    /// Enrol even faces that look like another student's.
    #[serde(default)]
    force: bool,
    /// Seconds to wait for the job before answering 202 with it as it is (default 0 for a ZIP,
    /// 20 for a student's photos; at most 60).
    wait_s: Option<u64>,
    /// The ZIP's file name, for the report.
    name: Option<String>,
}

pub(crate) fn enroller(state: &AppState) -> Result<&std::sync::Arc<Enroller>, ApiError> {
    state.enroller().ok_or_else(|| {
        ApiError::NotFound(
            "central enrolment (this server has no [ml] section: students are enrolled at a box)"
                .into(),
        )
    })
}

impl From<SubmitError> for ApiError {
    fn from(e: SubmitError) -> ApiError {
        match e {
            SubmitError::UnknownStudent(id) => ApiError::NotFound(format!("student {id}")),
            SubmitError::QueueFull { .. } => ApiError::EnrolmentBusy(e.to_string()),
            SubmitError::Store(e) => e.into(),
            SubmitError::Disk(e) => ApiError::Internal(e.to_string()),
            other => ApiError::InvalidRequest(other.to_string()),
        }
    }
}

/// 200 with a finished job, else 202 with the job as it is.
async fn answer(
    state: &AppState,
    school: &str,
    job: Job,
    wait_s: u64,
) -> Result<Response, ApiError> {
    let enroller = enroller(state)?;
    let job = match wait_s.min(MAX_WAIT_S) {
        0 => job,
        wait => enroller
            .wait(school, &job.id, Duration::from_secs(wait))
            .await
            .unwrap_or(job),
    };
    let status = if job.waiting() == 0 {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    Ok((status, Json(JobJson::from(&job))).into_response())
}

/// `POST /v1/schools/{school}/students/{student}/photos`.
#[utoipa::path(
    post,
    path = "/v1/schools/{school}/students/{student}/photos",
    summary = "Enrol a consenting student from 1 to 5 photos (multipart file parts named `photo`). Each goes through the box's gate in the ML service: one usable face, its size, sharpness and pose, and not a face that already matches another student at the confident threshold (unless `force`). Templates reach every box of the school in its next pull; photos are not kept. Answers 200 with the report when done within `wait_s`, else 202 with the job (the service may be down: the photos wait on disk, at most 24 h).",
    params(UploadQuery),
    request_body(content = inline(PhotoParts), content_type = "multipart/form-data"),
    responses(
        (status = 200, description = "done", body = JobJson),
        (status = 202, description = "queued", body = JobJson),
        (status = 400, description = openapi::E400, body = openapi::ErrorJson),
        (status = 404, description = openapi::E404, body = openapi::ErrorJson),
        (status = 413, description = openapi::E413, body = openapi::ErrorJson),
        (status = 503, description = openapi::E503, body = openapi::ErrorJson),
    ),
    security(("session" = [])),
    extensions(("x-rollcall-access" = json!("admin"))),
)]
pub(super) async fn student_photos(
    State(state): State<AppState>,
    SchoolAdmin { user, school_id }: SchoolAdmin,
    Path((_, student_id)): Path<(String, String)>,
    Query(query): Query<UploadQuery>,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Response, ApiError> {
    let enroller = enroller(&state)?;
    let multipart = multipart.map_err(|e| {
        ApiError::InvalidRequest(format!(
            "send the photos as multipart/form-data file parts named photo: {}",
            e.body_text()
        ))
    })?;
    let photos: Vec<(String, Vec<u8>)> = super::roster::parts(&state, multipart)
        .await?
        .into_iter()
        .filter(|p| p.name == "photo" && !p.bytes.is_empty())
        .enumerate()
        .map(|(i, p)| {
            (
                p.file_name.unwrap_or_else(|| format!("photo {}", i + 1)),
                p.bytes,
            )
        })
        .collect();
    let upload = Upload::Student {
        student: student_id,
        photos,
    };
    let job = enroller
        .submit(&school_id, &user.username, upload, query.force)
        .await?;
    answer(&state, &school_id, job, query.wait_s.unwrap_or(20)).await
}

/// `POST /v1/schools/{school}/photos`: a ZIP.
#[utoipa::path(
    post,
    path = "/v1/schools/{school}/photos",
    summary = "Enrol a school's photos from a ZIP (the body, `application/zip`) of photos named by student id: `S123.jpg`, `S123_2.jpg` or `S123/any.jpg`. Every file gets a line in the job's report: enrolled, or refused with a code and a reason (no such student, no consent, no usable face, a look-alike, ...). Answers 202 with the job; poll `GET .../enrolment-jobs/{job}`.",
    params(UploadQuery),
    request_body(content = Vec<u8>, content_type = "application/zip"),
    responses(
        (status = 200, description = "done", body = JobJson),
        (status = 202, description = "queued", body = JobJson),
        (status = 400, description = openapi::E400, body = openapi::ErrorJson),
        (status = 404, description = openapi::E404, body = openapi::ErrorJson),
        (status = 413, description = openapi::E413, body = openapi::ErrorJson),
        (status = 503, description = openapi::E503, body = openapi::ErrorJson),
    ),
    security(("session" = [])),
    extensions(("x-rollcall-access" = json!("admin"))),
)]
pub(super) async fn zip_photos(
    State(state): State<AppState>,
    SchoolAdmin { user, school_id }: SchoolAdmin,
    Query(query): Query<UploadQuery>,
    BodyBytes(bytes): BodyBytes,
) -> Result<Response, ApiError> {
    let enroller = enroller(&state)?;
    let upload = Upload::Zip {
        name: query.name.clone().unwrap_or_else(|| "photos.zip".into()),
        bytes: bytes.to_vec(),
    };
    let job = enroller
        .submit(&school_id, &user.username, upload, query.force)
        .await?;
    answer(&state, &school_id, job, query.wait_s.unwrap_or(0)).await
}

/// `GET /v1/schools/{school}/enrolment-jobs/{job}`.
#[utoipa::path(
    get,
    path = "/v1/schools/{school}/enrolment-jobs/{job}",
    summary = "One enrolment job: its progress and the report of each photo.",
    responses(
        (status = 200, description = "ok", body = JobJson),
        (status = 404, description = openapi::E404, body = openapi::ErrorJson),
    ),
    security(("session" = [])),
    extensions(("x-rollcall-access" = json!("admin"))),
)]
pub(super) async fn job(
    State(state): State<AppState>,
    SchoolAdmin { school_id, .. }: SchoolAdmin,
    Path((_, job_id)): Path<(String, String)>,
) -> Result<Json<JobJson>, ApiError> {
    let job = enroller(&state)?
        .job(&school_id, &job_id)
        .ok_or_else(|| ApiError::NotFound(format!("enrolment job {job_id}")))?;
    Ok(Json(JobJson::from(&job)))
}

/// `GET /v1/schools/{school}/enrolment`.
#[utoipa::path(
    get,
    path = "/v1/schools/{school}/enrolment",
    summary = "Central enrolment: the ML service's breaker, the photos waiting, and the school's jobs.",
    responses(
        (status = 200, description = "ok", body = EnrolmentJson),
        (status = 404, description = openapi::E404, body = openapi::ErrorJson),
    ),
    security(("session" = [])),
    extensions(("x-rollcall-access" = json!("admin"))),
)]
pub(super) async fn overview(
    State(state): State<AppState>,
    SchoolAdmin { school_id, .. }: SchoolAdmin,
) -> Result<Json<EnrolmentJson>, ApiError> {
    let enroller = enroller(&state)?;
    let (keep_crops, kept_crops) = crate::ml_client::kept_crops(state.store(), &school_id).await?;
    Ok(Json(EnrolmentJson {
        service: enroller.health().into(),
        jobs: enroller
            .jobs(&school_id)
            .iter()
            .map(JobJson::from)
            .collect(),
        keep_crops,
        kept_crops,
    }))
}

impl From<ReembedError> for ApiError {
    fn from(e: ReembedError) -> ApiError {
        match e {
            ReembedError::Service(e) => ApiError::EnrolmentBusy(format!(
                "the ML service cannot re-embed now ({e}); nothing was changed"
            )),
            ReembedError::Store(e) => e.into(),
        }
    }
}

/// `POST /v1/schools/{school}/reembed`.
#[utoipa::path(
    post,
    path = "/v1/schools/{school}/reembed",
    summary = "After the ML service's model changed (a new embedding space): make a template in its space from each face crop the school kept (setting `keep_crops`), once per crop and space, so that boxes on the new model recognise the students without new photos. Students whose templates are all in another space and who have no usable crop are listed in `need_photos`. Run it again safely: crops already re-embedded are counted in `already`.",
    responses(
        (status = 200, description = "done", body = Reembedded),
        (status = 404, description = openapi::E404, body = openapi::ErrorJson),
        (status = 503, description = openapi::E503, body = openapi::ErrorJson),
    ),
    security(("session" = [])),
    extensions(("x-rollcall-access" = json!("admin"))),
)]
pub(super) async fn reembed(
    State(state): State<AppState>,
    SchoolAdmin { user, school_id }: SchoolAdmin,
) -> Result<Json<Reembedded>, ApiError> {
    let report = enroller(&state)?
        .reembed(&school_id, &user.username)
        .await?;
    Ok(Json(report))
}
