//! OneRoster 1.1 uploads: a bulk export as multipart parts, parsed by `shared_proto::oneroster`
//! with the box's rules (all or nothing, every problem as `file:line`), then applied to the
//! school as one full roster.

use std::collections::{BTreeSet, HashMap};

use axum::Json;
use axum::extract::State;
use axum::extract::multipart::{Multipart, MultipartError, MultipartRejection};
use axum::http::StatusCode;
use serde::Serialize;
use shared_proto::oneroster::{self, RosterError, RosterFiles, RosterImport, RosterWarning};
use shared_proto::sync::{Consent, EnrolmentRole};

use super::admin::keep_consent;
use super::auth::SchoolAdmin;
use super::{AppState, openapi};
use crate::api::ApiError;
use crate::store::{Enrolment, RosterBatch, RosterSummary, Section, Student, Teacher};

#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = RosterSummary)]
pub(super) struct RosterSummaryJson {
    sections: usize,
    students: usize,
    teachers: usize,
    enrolments: usize,
    deactivated: usize,
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
    fn new(summary: RosterSummary, warnings: &[RosterWarning]) -> Self {
        RosterSummaryJson {
            sections: summary.sections,
            students: summary.students,
            teachers: summary.teachers,
            enrolments: summary.enrolments,
            deactivated: summary.deactivated,
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
    let mut multipart = multipart.map_err(|e| {
        ApiError::InvalidRequest(format!(
            "send the export as multipart/form-data, one part per CSV file: {}",
            e.body_text()
        ))
    })?;
    let mut files = Vec::new();
    loop {
        let field = match multipart.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => break,
            Err(e) => return Err(multipart_error(&state, &e)),
        };
        // The file name is what OneRoster names the file; a part without one goes by its name.
        let name = field
            .file_name()
            .or(field.name())
            .unwrap_or_default()
            .to_owned();
        let bytes = field
            .bytes()
            .await
            .map_err(|e| multipart_error(&state, &e))?;
        files.push((name, bytes.to_vec()));
    }
    let files = RosterFiles::from_files("the upload", files).map_err(roster_error)?;
    let mut import = oneroster::parse_oneroster(&files).map_err(roster_error)?;
    let warnings = std::mem::take(&mut import.warnings);
    let held_students = state.store().students(&school_id).await?;
    let batch = batch_of(&school_id, import, &held_students)?;
    let summary = state.store().apply_roster(&school_id, &batch, true).await?;
    tracing::info!(school_id = %school_id, by = %user.username, ?summary, n_warnings = warnings.len(), "roster imported");
    state
        .audit(
            Some(&school_id),
            &user.username,
            crate::domain::audit::Action::RosterUploaded,
            &school_id,
            format!(
                "{} students, {} sections, {} teachers, {} enrolments changed; {} deactivated",
                summary.students,
                summary.sections,
                summary.teachers,
                summary.enrolments,
                summary.deactivated
            ),
        )
        .await?;
    Ok(Json(RosterSummaryJson::new(summary, &warnings)))
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

/// The parser's message as the 422's; `RosterError`'s text lists at most
/// `oneroster::MAX_LISTED_PROBLEMS` problems and counts the rest, so the body stays small.
fn roster_error(error: RosterError) -> ApiError {
    match error {
        RosterError::Read { .. } => ApiError::Internal(error.to_string()),
        other => ApiError::InvalidRoster(other.to_string()),
    }
}

/// The storage batch of an export for `school_id`. An export of one school goes in whole,
/// whatever its org ids are; from a district export only the classes of this school (by the
/// classes' school sourcedId) and the people enrolled in them are kept.
fn batch_of(
    school_id: &str,
    import: RosterImport,
    held_students: &[Student],
) -> Result<RosterBatch, ApiError> {
    let orgs: BTreeSet<&str> = import
        .sections
        .iter()
        .map(|section| section.school_id.as_str())
        .collect();
    let whole_export = orgs.len() <= 1;
    if !whole_export && !orgs.contains(school_id) {
        let orgs: Vec<&str> = orgs.into_iter().collect();
        return Err(ApiError::InvalidRoster(format!(
            "classes.csv: the classes belong to several schools ({}) and none is {school_id}: upload one school's export, or use its sourcedId as the school id",
            orgs.join(", ")
        )));
    }
    let kept_sections: BTreeSet<String> = import
        .sections
        .iter()
        .filter(|section| whole_export || section.school_id == school_id)
        .map(|section| section.id.clone())
        .collect();
    let enrolments: Vec<Enrolment> = import
        .enrolments
        .into_iter()
        .filter(|enrolment| kept_sections.contains(&enrolment.section_id))
        .map(|enrolment| Enrolment {
            section_id: enrolment.section_id,
            person_id: enrolment.person_id,
            role: match enrolment.role {
                oneroster::EnrolmentRole::Student => EnrolmentRole::Student,
                oneroster::EnrolmentRole::Teacher => EnrolmentRole::Teacher,
            },
            active: enrolment.active,
        })
        .collect();
    let enrolled: BTreeSet<&str> = enrolments
        .iter()
        .map(|enrolment| enrolment.person_id.as_str())
        .collect();
    let keep_person = |id: &str| whole_export || enrolled.contains(id);
    let held: HashMap<&str, &Student> = held_students
        .iter()
        .map(|student| (student.id.as_str(), student))
        .collect();
    let students = import
        .students
        .iter()
        .filter(|person| keep_person(&person.id))
        .map(|person| {
            let mut student = Student {
                id: person.id.clone(),
                school_id: school_id.to_owned(),
                given_name: person.given_name.clone(),
                family_name: person.family_name.clone(),
                active: person.active,
                consent: Consent::None,
                consent_by: None,
                consent_at: None,
            };
            keep_consent(&mut student, held.get(person.id.as_str()).copied());
            student
        })
        .collect();
    let teachers = import
        .teachers
        .iter()
        .filter(|person| keep_person(&person.id))
        .map(|person| Teacher {
            id: person.id.clone(),
            school_id: school_id.to_owned(),
            given_name: person.given_name.clone(),
            family_name: person.family_name.clone(),
            active: person.active,
        })
        .collect();
    let sections = import
        .sections
        .into_iter()
        .filter(|section| kept_sections.contains(&section.id))
        .map(|section| Section {
            id: section.id,
            school_id: school_id.to_owned(),
            title: section.title,
            active: section.active,
        })
        .collect();
    Ok(RosterBatch {
        sections,
        students,
        teachers,
        enrolments,
    })
}
