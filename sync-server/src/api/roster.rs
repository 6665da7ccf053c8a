//! OneRoster 1.1 uploads: a bulk export as multipart parts, parsed by `shared_proto::oneroster`
//! with the box's rules (all or nothing, every problem as `file:line`), kept to the school's
//! records by `domain::roster::batch_of`, then applied to the school as one full roster.

use axum::Json;
use axum::extract::State;
use axum::extract::multipart::{Multipart, MultipartError, MultipartRejection};
use axum::http::StatusCode;
use serde::Serialize;
use shared_proto::oneroster::{RosterError, RosterWarning};

use super::auth::SchoolAdmin;
use super::{AppState, openapi};
use crate::api::ApiError;
use crate::domain::guardian::Contact;
use crate::domain::roster::{self, GuardiansLinked, UploadRefusal};
use crate::store::RosterSummary;

#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = RosterSummary)]
pub(super) struct RosterSummaryJson {
    sections: usize,
    students: usize,
    teachers: usize,
    enrolments: usize,
    deactivated: usize,
    /// Guardians linked to a student of the export (made now or already in place).
    guardian_links: usize,
    /// Guardians whose address or name could not be kept.
    guardians_refused: usize,
    /// What the export did that was accepted but read leniently.
    warnings: Vec<RosterWarningJson>,
}

/// A lenient read: the file, how many rows, and the sentence `roster import` prints on the box.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = RosterWarning)]
struct RosterWarningJson {
    #[schema(value_type = String)]
    file: &'static str,
    rows: usize,
    message: String,
}

/// The upload's body as the document shows it; the handler reads the parts one by one.
struct RosterUpload;

impl utoipa::PartialSchema for RosterUpload {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, SchemaFormat, Type};
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some(
                "One part per CSV file, named by its file name: manifest.csv, users.csv, classes.csv, enrollments.csv, and optionally orgs.csv and academicSessions.csv.",
            ))
            .additional_properties(Some(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .format(Some(SchemaFormat::Custom("binary".to_owned()))),
            ))
            .into()
    }
}

impl utoipa::ToSchema for RosterUpload {}

impl RosterSummaryJson {
    fn new(summary: RosterSummary, guardians: GuardiansLinked, warnings: &[RosterWarning]) -> Self {
        RosterSummaryJson {
            sections: summary.sections,
            students: summary.students,
            teachers: summary.teachers,
            enrolments: summary.enrolments,
            deactivated: summary.deactivated,
            guardian_links: guardians.linked,
            guardians_refused: guardians.refused,
            warnings: warnings
                .iter()
                .map(|warning| RosterWarningJson {
                    file: warning.file,
                    rows: warning.rows,
                    message: warning.to_string(),
                })
                .collect(),
        }
    }
}

/// `POST /v1/schools/{school}/roster`: a full OneRoster 1.1 bulk export, one multipart part per
/// CSV file named by its file name. All or nothing: any problem refuses the whole upload.
#[utoipa::path(
    post,
    path = "/v1/schools/{school}/roster",
    summary = "Upload a full OneRoster 1.1 bulk export: one multipart part per CSV file, named by its file name. All or nothing: problems give 422 `invalid_roster` listing the first 200 `file:line: reason` lines and how many more there were. Rows read leniently (OneRoster 1.0's `inactive`, an enrolment role other than the users.csv role, a blank manifest value) are counted in `warnings`.",
    request_body(content = inline(RosterUpload), content_type = "multipart/form-data"),
    responses(
        (status = 200, description = "ok", body = RosterSummaryJson),
        (status = 400, description = openapi::E400, body = openapi::ErrorJson),
        (status = 404, description = openapi::E404, body = openapi::ErrorJson),
        (status = 413, description = openapi::E413, body = openapi::ErrorJson),
        (status = 422, description = openapi::E422, body = openapi::ErrorJson),
    ),
    security(("session" = [])),
    extensions(("x-rollcall-access" = json!("admin"))),
)]
pub(super) async fn upload(
    State(state): State<AppState>,
    SchoolAdmin { user, school_id }: SchoolAdmin,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Json<RosterSummaryJson>, ApiError> {
    let multipart = multipart.map_err(|e| {
        ApiError::InvalidRequest(format!(
            "send the export as multipart/form-data, one part per CSV file: {}",
            e.body_text()
        ))
    })?;
    // The file name is what OneRoster names the file; a part without one goes by its name.
    let files: Vec<(String, Vec<u8>)> = parts(&state, multipart)
        .await?
        .into_iter()
        .map(|part| (part.file_name.unwrap_or(part.name), part.bytes))
        .collect();
    let upload = roster::read(&school_id, files).map_err(refusal)?;
    let (batch, warnings) = (&upload.batch, &upload.warnings);
    let summary = state.store().apply_roster(&school_id, batch, true).await?;
    let guardians = link_guardians(&state, &school_id, &upload.guardians, &user.username).await?;
    tracing::info!(school_id = %school_id, by = %user.username, ?summary, n_warnings = warnings.len(), "roster imported");
    state
        .audit(
            Some(&school_id),
            &user.username,
            crate::domain::audit::Action::RosterUploaded,
            &school_id,
            guardians.after(format!(
                "{} students, {} sections, {} teachers, {} enrolments changed; {} deactivated",
                summary.students,
                summary.sections,
                summary.teachers,
                summary.enrolments,
                summary.deactivated
            )),
        )
        .await?;
    Ok(Json(RosterSummaryJson::new(summary, guardians, warnings)))
}

/// Links an upload's guardians to their students once its roster is applied, for the API's upload
/// and the roster page: one `Store::link_guardian` per link, so each is the domain's rule (an
/// address the school holds links its contact; a link in place writes nothing). Additive: removing
/// a guardian is done on the student's page. A contact refused is refused for each of its students
/// alike, and counted once.
pub(crate) async fn link_guardians(
    state: &AppState,
    school_id: &str,
    guardians: &[(Contact, Vec<String>)],
    by: &str,
) -> Result<GuardiansLinked, ApiError> {
    let mut done = GuardiansLinked::default();
    for (contact, students) in guardians {
        for student in students {
            let linked = state
                .store()
                .link_guardian(school_id, student, contact, by, state.now())
                .await?;
            match linked {
                Ok(_) => done.linked += 1,
                Err(refused) => {
                    tracing::warn!(%refused, "a guardian of the roster was not kept");
                    done.refused += 1;
                    break;
                }
            }
        }
    }
    Ok(done)
}

/// One part of a multipart body.
pub(crate) struct Part {
    pub name: String,
    pub file_name: Option<String>,
    pub bytes: Vec<u8>,
}

/// Every part of a multipart body, read whole: the API's upload and the roster page's form.
pub(crate) async fn parts(
    state: &AppState,
    mut multipart: Multipart,
) -> Result<Vec<Part>, ApiError> {
    let mut parts = Vec::new();
    loop {
        let field = match multipart.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => return Ok(parts),
            Err(e) => return Err(multipart_error(state, &e)),
        };
        let name = field.name().unwrap_or_default().to_owned();
        let file_name = field.file_name().map(str::to_owned);
        let bytes = field
            .bytes()
            .await
            .map_err(|e| multipart_error(state, &e))?;
        parts.push(Part {
            name,
            file_name,
            bytes: bytes.to_vec(),
        });
    }
}

fn multipart_error(state: &AppState, error: &MultipartError) -> ApiError {
    if error.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::PayloadTooLarge {
            limit_bytes: state.limits().max_roster_bytes,
        }
    } else {
        ApiError::InvalidRequest(format!("unreadable multipart body: {}", error.body_text()))
    }
}

/// A refused upload as the 422 (a file the server could not read: 500). `RosterError`'s text lists
/// at most `oneroster::MAX_LISTED_PROBLEMS` problems and counts the rest, so the body stays small.
pub(crate) fn refusal(refusal: UploadRefusal) -> ApiError {
    match refusal {
        UploadRefusal::Export(RosterError::Read { .. }) => ApiError::Internal(refusal.to_string()),
        other => ApiError::InvalidRoster(other.to_string()),
    }
}
