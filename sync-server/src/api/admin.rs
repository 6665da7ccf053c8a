//! The admin JSON API: schools, accounts, provisioning codes and devices, sections, students and
//! consent, enrolments and timetables (OneRoster uploads: `roster`). Admins only; a school admin
//! is held to their school (`wrong_school`), a district admin may use any.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use shared_proto::sync::{Consent, EnrolmentRole, ScheduleSlot};

use super::auth::{AdminAuth, SchoolAdmin, new_provisioning_code, normalize_code, secret_hash};
use super::{AppState, JsonBody, openapi};
use crate::api::ApiError;
use crate::domain::audit::Action;
use crate::store::{
    Device, Enrolment, Millis, ProvisioningCode, Role, RosterBatch, School, Section, Student, User,
};

/// Ids in paths and bodies: what a student information system uses, and safe in URLs and logs.
/// The one id rule of box, server and roster uploads (`shared_proto::ids`).
fn check_id(what: &str, id: &str) -> Result<(), ApiError> {
    shared_proto::ids::check_id(id).map_err(|_| {
        ApiError::InvalidRequest(format!(
            "{what} \"{}\" must be {}",
            shared_proto::ids::shown(id),
            shared_proto::ids::ID_RULE
        ))
    })
}

fn check_text(what: &str, text: &str, max_chars: usize) -> Result<(), ApiError> {
    if text.trim().is_empty() || text.chars().count() > max_chars {
        return Err(ApiError::InvalidRequest(format!(
            "{what} must be 1-{max_chars} characters"
        )));
    }
    Ok(())
}

#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = School)]
pub(super) struct SchoolJson {
    id: String,
    name: String,
}

impl From<School> for SchoolJson {
    fn from(school: School) -> Self {
        SchoolJson {
            id: school.id,
            name: school.name,
        }
    }
}

/// `GET /v1/schools`: every school for a district admin, their own for a school admin.
#[utoipa::path(
    get,
    path = "/v1/schools",
    summary = "Every school (district admin) or one's own (school admin).",
    responses(
        (status = 200, description = "ok", body = Vec<SchoolJson>),
    ),
    security(("session" = [])),
    extensions(("x-rollcall-access" = json!("admin"))),
)]
pub(super) async fn list_schools(
    State(state): State<AppState>,
    admin: AdminAuth,
) -> Result<Json<Vec<SchoolJson>>, ApiError> {
    let schools = state.store().schools().await?;
    Ok(Json(
        schools
            .into_iter()
            .filter(|school| admin.check_school(&school.id).is_ok())
            .map(SchoolJson::from)
            .collect(),
    ))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NewSchool {
    id: String,
    name: String,
}

/// `POST /v1/schools`: district admins only.
#[utoipa::path(
    post,
    path = "/v1/schools",
    summary = "Create a school (district admins only).",
    request_body = NewSchool,
    responses(
        (status = 201, description = "ok", body = SchoolJson),
        (status = 400, description = openapi::E400, body = openapi::ErrorJson),
        (status = 409, description = openapi::E409, body = openapi::ErrorJson),
    ),
    security(("session" = [])),
    extensions(("x-rollcall-access" = json!("admin"))),
)]
pub(super) async fn create_school(
    State(state): State<AppState>,
    admin: AdminAuth,
    JsonBody(new): JsonBody<NewSchool>,
) -> Result<(StatusCode, Json<SchoolJson>), ApiError> {
    let school = add_school(&state, &admin.user, new.id, &new.name).await?;
    Ok((StatusCode::CREATED, Json(school.into())))
}

/// Creates a school: for the API and the schools page. Only a district admin creates schools;
/// the id is an id's characters, the name at most 200 characters, and an id taken is a conflict.
pub(crate) async fn add_school(
    state: &AppState,
    admin: &User,
    id: String,
    name: &str,
) -> Result<School, ApiError> {
    if !admin.is_district_admin() {
        return Err(ApiError::Forbidden(
            "only a district admin creates schools".to_owned(),
        ));
    }
    check_id("school id", &id)?;
    check_text("name", name, 200)?;
    let school = School {
        id,
        name: name.trim().to_owned(),
    };
    state.store().create_school(&school).await?;
    tracing::info!(school_id = %school.id, by = %admin.username, "school created");
    Ok(school)
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NewUser {
    username: String,
    #[schema(format = Password, min_length = 10)]
    password: String,
    #[schema(value_type = Role)]
    role: String,
    #[serde(default)]
    teacher_id: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = User)]
pub(super) struct UserJson {
    id: String,
    username: String,
    #[schema(value_type = Role)]
    role: &'static str,
    school_id: Option<String>,
    teacher_id: Option<String>,
}

/// `POST /v1/schools/{school}/users`: a teacher (linked to their OneRoster id) or a school admin.
#[utoipa::path(
    post,
    path = "/v1/schools/{school}/users",
    summary = "Create a teacher (with teacher_id, their roster sourcedId) or an admin of the school.",
    request_body = NewUser,
    responses(
        (status = 201, description = "ok", body = UserJson),
        (status = 400, description = openapi::E400, body = openapi::ErrorJson),
        (status = 404, description = openapi::E404, body = openapi::ErrorJson),
        (status = 409, description = openapi::E409, body = openapi::ErrorJson),
    ),
    security(("session" = [])),
    extensions(("x-rollcall-access" = json!("admin"))),
)]
pub(super) async fn create_user(
    State(state): State<AppState>,
    SchoolAdmin {
        user: admin,
        school_id,
    }: SchoolAdmin,
    JsonBody(new): JsonBody<NewUser>,
) -> Result<(StatusCode, Json<UserJson>), ApiError> {
    let user = create_account(
        &state,
        &school_id,
        &admin,
        new.username,
        new.password,
        &new.role,
        new.teacher_id,
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(UserJson {
            role: user.role.as_str(),
            id: user.id,
            username: user.username,
            school_id: user.school_id,
            teacher_id: user.teacher_id,
        }),
    ))
}

/// Creates an account of `school_id`: an admin, or a teacher linked to their roster sourcedId.
/// For the API and the web pages; the password is hashed on the password workers and must be
/// long enough (`MIN_PASSWORD_CHARS`).
pub(crate) async fn create_account(
    state: &AppState,
    school_id: &str,
    admin: &User,
    username: String,
    password: String,
    role: &str,
    teacher_id: Option<String>,
) -> Result<User, ApiError> {
    check_id("username", &username)?;
    let role: Role = role
        .parse()
        .map_err(|e: shared_proto::vocabulary::UnknownWord| {
            ApiError::InvalidRequest(e.to_string())
        })?;
    let teacher_id = match (role, teacher_id) {
        (Role::Teacher, Some(id)) => {
            check_id("teacher_id", &id)?;
            Some(id)
        }
        (Role::Teacher, None) => {
            return Err(ApiError::InvalidRequest(
                "a teacher needs teacher_id: their sourcedId in the roster, which links them to their sections".to_owned(),
            ));
        }
        (Role::Admin, _) => None,
    };
    let password_hash = hash_on_workers(state, password).await?;
    let user = User {
        id: uuid::Uuid::now_v7().to_string(),
        username,
        password_hash,
        role,
        school_id: Some(school_id.to_owned()),
        teacher_id,
    };
    state.store().create_user(&user).await?;
    tracing::info!(username = %user.username, role = role.as_str(), by = %admin.username, "account created");
    state
        .audit(
            Some(school_id),
            &admin.username,
            Action::AccountCreated,
            &user.username,
            format!("{} account", role.as_str()),
        )
        .await?;
    Ok(user)
}

/// Gives a user of `school_id` a new password and signs them out everywhere.
pub(crate) async fn reset_password(
    state: &AppState,
    school_id: &str,
    user_id: &str,
    password: String,
    admin: &User,
) -> Result<(), ApiError> {
    let password_hash = hash_on_workers(state, password).await?;
    state
        .store()
        .set_password(school_id, user_id, &password_hash)
        .await?;
    tracing::info!(user_id = %user_id, by = %admin.username, "password reset");
    state
        .audit(
            Some(school_id),
            &admin.username,
            Action::PasswordReset,
            user_id,
            "signed out everywhere".to_owned(),
        )
        .await?;
    Ok(())
}

/// An argon2id hash of a new password, made on the password workers; too short a password is
/// refused with the rule.
async fn hash_on_workers(state: &AppState, password: String) -> Result<String, ApiError> {
    state
        .shared
        .passwords
        .hash(password)
        .await?
        .map_err(|e| ApiError::InvalidRequest(e.to_string()))
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NewProvisioningCode {
    #[serde(default)]
    device_name: Option<String>,
    #[serde(default)]
    #[schema(minimum = 1, maximum = 10080, default = 1440)]
    ttl_minutes: Option<u32>,
}

#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = ProvisioningCode)]
pub(super) struct ProvisioningCodeJson {
    /// Shown once: the server keeps only its hash.
    #[schema(example = "7KQ3-M2XP-9RDA")]
    code: String,
    #[schema(value_type = i64)]
    expires_at: Millis,
}

const DEFAULT_CODE_TTL_MINUTES: u32 = 24 * 60;
const MAX_CODE_TTL_MINUTES: u32 = 7 * 24 * 60;

/// `POST /v1/schools/{school}/provisioning-codes`.
#[utoipa::path(
    post,
    path = "/v1/schools/{school}/provisioning-codes",
    summary = "Create a one-time provisioning code for a box; the code is shown once.",
    request_body = NewProvisioningCode,
    responses(
        (status = 201, description = "ok", body = ProvisioningCodeJson),
        (status = 400, description = openapi::E400, body = openapi::ErrorJson),
        (status = 404, description = openapi::E404, body = openapi::ErrorJson),
    ),
    security(("session" = [])),
    extensions(("x-rollcall-access" = json!("admin"))),
)]
pub(super) async fn create_provisioning_code(
    State(state): State<AppState>,
    SchoolAdmin { user, school_id }: SchoolAdmin,
    JsonBody(new): JsonBody<NewProvisioningCode>,
) -> Result<(StatusCode, Json<ProvisioningCodeJson>), ApiError> {
    let (code, expires_at) =
        issue_provisioning_code(&state, &school_id, &user, new.device_name, new.ttl_minutes)
            .await?;
    Ok((
        StatusCode::CREATED,
        Json(ProvisioningCodeJson { code, expires_at }),
    ))
}

/// Makes a one-time provisioning code of `school_id` for a box, valid `ttl_minutes` (default a
/// day, at most a week), for the API and the web pages. Returns the code, which only its hash
/// is kept of, and when it expires.
pub(crate) async fn issue_provisioning_code(
    state: &AppState,
    school_id: &str,
    by: &User,
    device_name: Option<String>,
    ttl_minutes: Option<u32>,
) -> Result<(String, Millis), ApiError> {
    let ttl_minutes = ttl_minutes.unwrap_or(DEFAULT_CODE_TTL_MINUTES);
    if !(1..=MAX_CODE_TTL_MINUTES).contains(&ttl_minutes) {
        return Err(ApiError::InvalidRequest(format!(
            "ttl_minutes must be 1-{MAX_CODE_TTL_MINUTES}"
        )));
    }
    if let Some(name) = &device_name {
        check_text("device_name", name, 100)?;
    }
    let device_name = device_name.map(|name| name.trim().to_owned());
    let code = new_provisioning_code();
    let expires_at = state.now() + Millis::from(ttl_minutes) * 60_000;
    state
        .store()
        .create_provisioning_code(&ProvisioningCode {
            code_hash: secret_hash(&normalize_code(&code)),
            school_id: school_id.to_owned(),
            device_name,
            created_by: by.username.clone(),
            expires_at,
        })
        .await?;
    tracing::info!(school_id = %school_id, by = %by.username, "provisioning code created");
    state
        .audit(
            Some(school_id),
            &by.username,
            Action::ProvisioningCodeIssued,
            school_id,
            format!("valid {ttl_minutes} min"),
        )
        .await?;
    Ok((code, expires_at))
}

#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Device)]
pub(super) struct DeviceJson {
    id: String,
    school_id: String,
    name: String,
    #[schema(value_type = i64)]
    created_at: Millis,
    #[schema(value_type = Option<i64>)]
    revoked_at: Option<Millis>,
    #[schema(value_type = Option<i64>)]
    last_seen_at: Option<Millis>,
}

impl From<Device> for DeviceJson {
    fn from(device: Device) -> Self {
        DeviceJson {
            id: device.id,
            school_id: device.school_id,
            name: device.name,
            created_at: device.created_at,
            revoked_at: device.revoked_at,
            last_seen_at: device.last_seen_at,
        }
    }
}

/// `GET /v1/schools/{school}/devices`.
#[utoipa::path(
    get,
    path = "/v1/schools/{school}/devices",
    summary = "The school's boxes, with last sync and revocation.",
    responses(
        (status = 200, description = "ok", body = Vec<DeviceJson>),
        (status = 404, description = openapi::E404, body = openapi::ErrorJson),
    ),
    security(("session" = [])),
    extensions(("x-rollcall-access" = json!("admin"))),
)]
pub(super) async fn list_devices(
    State(state): State<AppState>,
    SchoolAdmin { school_id, .. }: SchoolAdmin,
) -> Result<Json<Vec<DeviceJson>>, ApiError> {
    let devices = state.store().devices(&school_id).await?;
    Ok(Json(devices.into_iter().map(DeviceJson::from).collect()))
}

/// `POST /v1/schools/{school}/devices/{device}/revoke`: the token stops working at once.
#[utoipa::path(
    post,
    path = "/v1/schools/{school}/devices/{device}/revoke",
    summary = "Revoke a box's token; its next call gets 401 `token_revoked`.",
    responses(
        (status = 204, description = "done, no body"),
        (status = 404, description = openapi::E404, body = openapi::ErrorJson),
    ),
    security(("session" = [])),
    extensions(("x-rollcall-access" = json!("admin"))),
)]
pub(super) async fn revoke_device(
    State(state): State<AppState>,
    SchoolAdmin { user, school_id }: SchoolAdmin,
    Path((_, device_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    revoke(&state, &school_id, &device_id, &user).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Revokes a box's token for good (the first revocation's time stays), for the API and the web
/// pages. `NotFound` for a device not of `school_id`.
pub(crate) async fn revoke(
    state: &AppState,
    school_id: &str,
    device_id: &str,
    by: &User,
) -> Result<(), ApiError> {
    state
        .store()
        .revoke_device(school_id, device_id, state.now())
        .await?;
    tracing::info!(device_id = %device_id, by = %by.username, "device revoked");
    state
        .audit(
            Some(school_id),
            &by.username,
            Action::DeviceRevoked,
            device_id,
            "token revoked".to_owned(),
        )
        .await?;
    Ok(())
}

#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Section)]
pub(super) struct SectionJson {
    id: String,
    title: String,
    active: bool,
}

impl From<Section> for SectionJson {
    fn from(section: Section) -> Self {
        SectionJson {
            id: section.id,
            title: section.title,
            active: section.active,
        }
    }
}

fn default_true() -> bool {
    true
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NewSection {
    id: String,
    title: String,
    #[serde(default = "default_true")]
    #[schema(default = true)]
    active: bool,
}

/// `GET /v1/schools/{school}/sections`.
#[utoipa::path(
    get,
    path = "/v1/schools/{school}/sections",
    summary = "The school's sections.",
    responses(
        (status = 200, description = "ok", body = Vec<SectionJson>),
        (status = 404, description = openapi::E404, body = openapi::ErrorJson),
    ),
    security(("session" = [])),
    extensions(("x-rollcall-access" = json!("admin"))),
)]
pub(super) async fn list_sections(
    State(state): State<AppState>,
    SchoolAdmin { school_id, .. }: SchoolAdmin,
) -> Result<Json<Vec<SectionJson>>, ApiError> {
    let sections = state.store().sections(&school_id).await?;
    Ok(Json(sections.into_iter().map(SectionJson::from).collect()))
}

/// `POST /v1/schools/{school}/sections`: creates or updates one section.
#[utoipa::path(
    post,
    path = "/v1/schools/{school}/sections",
    summary = "Create or update a section.",
    request_body = NewSection,
    responses(
        (status = 200, description = "ok", body = SectionJson),
        (status = 400, description = openapi::E400, body = openapi::ErrorJson),
        (status = 404, description = openapi::E404, body = openapi::ErrorJson),
    ),
    security(("session" = [])),
    extensions(("x-rollcall-access" = json!("admin"))),
)]
pub(super) async fn upsert_section(
    State(state): State<AppState>,
    SchoolAdmin { school_id, .. }: SchoolAdmin,
    JsonBody(new): JsonBody<NewSection>,
) -> Result<Json<SectionJson>, ApiError> {
    check_id("section id", &new.id)?;
    check_text("title", &new.title, 200)?;
    let section = Section {
        id: new.id,
        school_id: school_id.clone(),
        title: new.title.trim().to_owned(),
        active: new.active,
    };
    let batch = RosterBatch {
        sections: vec![section.clone()],
        ..RosterBatch::default()
    };
    state
        .store()
        .apply_roster(&school_id, &batch, false)
        .await?;
    Ok(Json(section.into()))
}

#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Student)]
pub(super) struct StudentJson {
    id: String,
    given_name: String,
    family_name: String,
    active: bool,
    consent: Consent,
    consent_by: Option<String>,
    #[schema(value_type = Option<i64>)]
    consent_at: Option<Millis>,
}

impl From<Student> for StudentJson {
    fn from(student: Student) -> Self {
        StudentJson {
            id: student.id,
            given_name: student.given_name,
            family_name: student.family_name,
            active: student.active,
            consent: student.consent,
            consent_by: student.consent_by,
            consent_at: student.consent_at,
        }
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NewStudent {
    id: String,
    given_name: String,
    family_name: String,
    #[serde(default = "default_true")]
    #[schema(default = true)]
    active: bool,
}

/// `GET /v1/schools/{school}/students`, with each student's consent.
#[utoipa::path(
    get,
    path = "/v1/schools/{school}/students",
    summary = "The school's students with their consent.",
    responses(
        (status = 200, description = "ok", body = Vec<StudentJson>),
        (status = 404, description = openapi::E404, body = openapi::ErrorJson),
    ),
    security(("session" = [])),
    extensions(("x-rollcall-access" = json!("admin"))),
)]
pub(super) async fn list_students(
    State(state): State<AppState>,
    SchoolAdmin { school_id, .. }: SchoolAdmin,
) -> Result<Json<Vec<StudentJson>>, ApiError> {
    let students = state.store().students(&school_id).await?;
    Ok(Json(students.into_iter().map(StudentJson::from).collect()))
}

/// `POST /v1/schools/{school}/students`: creates or updates one student's name and state;
/// consent is changed only through its own route.
#[utoipa::path(
    post,
    path = "/v1/schools/{school}/students",
    summary = "Create or update a student (consent is kept; change it with its own route).",
    request_body = NewStudent,
    responses(
        (status = 200, description = "ok", body = StudentJson),
        (status = 400, description = openapi::E400, body = openapi::ErrorJson),
        (status = 404, description = openapi::E404, body = openapi::ErrorJson),
    ),
    security(("session" = [])),
    extensions(("x-rollcall-access" = json!("admin"))),
)]
pub(super) async fn upsert_student(
    State(state): State<AppState>,
    SchoolAdmin { school_id, .. }: SchoolAdmin,
    JsonBody(new): JsonBody<NewStudent>,
) -> Result<Json<StudentJson>, ApiError> {
    check_id("student id", &new.id)?;
    check_text("given_name", &new.given_name, 200)?;
    check_text("family_name", &new.family_name, 200)?;
    let held = state.store().student(&school_id, &new.id).await?;
    let mut student = Student {
        id: new.id,
        school_id: school_id.clone(),
        given_name: new.given_name.trim().to_owned(),
        family_name: new.family_name.trim().to_owned(),
        active: new.active,
        consent: Consent::None,
        consent_by: None,
        consent_at: None,
    };
    keep_consent(&mut student, held.as_ref());
    let batch = RosterBatch {
        students: vec![student],
        ..RosterBatch::default()
    };
    state
        .store()
        .apply_roster(&school_id, &batch, false)
        .await?;
    let student = state
        .store()
        .student(&school_id, &batch.students[0].id)
        .await?
        .ok_or_else(|| ApiError::Internal("student missing right after its upsert".to_owned()))?;
    Ok(Json(student.into()))
}

/// A roster change never changes consent: the held decision rides along in the upsert.
fn keep_consent(student: &mut Student, held: Option<&Student>) {
    if let Some(held) = held {
        student.consent = held.consent;
        student.consent_by = held.consent_by.clone();
        student.consent_at = held.consent_at;
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ConsentUpdate {
    consent: Consent,
    /// Who gave or withdrew it (a parent's name, a form's reference); defaults to the admin.
    #[serde(default)]
    by: Option<String>,
}

/// `PUT /v1/schools/{school}/students/{student}/consent`; a withdrawal tombstones every
/// template of the student for every box.
#[utoipa::path(
    put,
    path = "/v1/schools/{school}/students/{student}/consent",
    summary = "Record consent; a withdrawal makes every box purge the student's templates.",
    request_body = ConsentUpdate,
    responses(
        (status = 200, description = "ok", body = StudentJson),
        (status = 400, description = openapi::E400, body = openapi::ErrorJson),
        (status = 404, description = openapi::E404, body = openapi::ErrorJson),
    ),
    security(("session" = [])),
    extensions(("x-rollcall-access" = json!("admin"))),
)]
pub(super) async fn set_consent(
    State(state): State<AppState>,
    SchoolAdmin { user, school_id }: SchoolAdmin,
    Path((_, student_id)): Path<(String, String)>,
    JsonBody(update): JsonBody<ConsentUpdate>,
) -> Result<Json<StudentJson>, ApiError> {
    record_consent(
        &state,
        &school_id,
        &student_id,
        update.consent,
        update.by,
        &user,
    )
    .await?;
    let student = state
        .store()
        .student(&school_id, &student_id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("student {student_id}")))?;
    Ok(Json(student.into()))
}

/// Records a consent decision of a student of `school_id` (`domain::consent` says what it does),
/// for the API and the web pages: `by` says who gave or withdrew it, by default the admin.
pub(crate) async fn record_consent(
    state: &AppState,
    school_id: &str,
    student_id: &str,
    consent: Consent,
    by: Option<String>,
    admin: &User,
) -> Result<(), ApiError> {
    let by = by.unwrap_or_else(|| admin.username.clone());
    check_text("by", &by, 200)?;
    state
        .store()
        .set_consent(school_id, student_id, consent, by.trim(), state.now())
        .await?;
    tracing::info!(student_id = %student_id, consent = ?consent, by = %admin.username, "consent recorded");
    Ok(())
}

/// `DELETE /v1/schools/{school}/students/{student}`: erasure of the student, their templates
/// and marks; every box is told to purge.
#[utoipa::path(
    delete,
    path = "/v1/schools/{school}/students/{student}",
    summary = "Erase a student: record, templates and marks; every box purges them.",
    responses(
        (status = 204, description = "done, no body"),
        (status = 404, description = openapi::E404, body = openapi::ErrorJson),
    ),
    security(("session" = [])),
    extensions(("x-rollcall-access" = json!("admin"))),
)]
pub(super) async fn erase_student(
    State(state): State<AppState>,
    SchoolAdmin { user, school_id }: SchoolAdmin,
    Path((_, student_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    erase(&state, &school_id, &student_id, &user).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Erases a student of `school_id` (`domain::erasure` says what goes and what the boxes are told),
/// for the API and the web pages.
pub(crate) async fn erase(
    state: &AppState,
    school_id: &str,
    student_id: &str,
    admin: &User,
) -> Result<(), ApiError> {
    state.store().erase_student(school_id, student_id).await?;
    state.web_caches().forget(school_id);
    tracing::info!(student_id = %student_id, by = %admin.username, "student erased");
    state
        .audit(
            Some(school_id),
            &admin.username,
            Action::StudentErased,
            student_id,
            "record, marks and face templates deleted; boxes told to purge".to_owned(),
        )
        .await?;
    Ok(())
}

#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Enrolment)]
pub(super) struct EnrolmentJson {
    section_id: String,
    person_id: String,
    role: EnrolmentRole,
    active: bool,
}

impl From<Enrolment> for EnrolmentJson {
    fn from(enrolment: Enrolment) -> Self {
        EnrolmentJson {
            section_id: enrolment.section_id,
            person_id: enrolment.person_id,
            role: enrolment.role,
            active: enrolment.active,
        }
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NewEnrolment {
    person_id: String,
    role: EnrolmentRole,
    #[serde(default = "default_true")]
    #[schema(default = true)]
    active: bool,
}

async fn section_of(
    state: &AppState,
    school_id: &str,
    section_id: &str,
) -> Result<Section, ApiError> {
    state
        .store()
        .sections(school_id)
        .await?
        .into_iter()
        .find(|section| section.id == section_id)
        .ok_or_else(|| ApiError::NotFound(format!("section {section_id}")))
}

/// `GET /v1/schools/{school}/sections/{section}/enrolments`.
#[utoipa::path(
    get,
    path = "/v1/schools/{school}/sections/{section}/enrolments",
    summary = "Who is in a section.",
    responses(
        (status = 200, description = "ok", body = Vec<EnrolmentJson>),
        (status = 404, description = openapi::E404, body = openapi::ErrorJson),
    ),
    security(("session" = [])),
    extensions(("x-rollcall-access" = json!("admin"))),
)]
pub(super) async fn list_enrolments(
    State(state): State<AppState>,
    SchoolAdmin { school_id, .. }: SchoolAdmin,
    Path((_, section_id)): Path<(String, String)>,
) -> Result<Json<Vec<EnrolmentJson>>, ApiError> {
    section_of(&state, &school_id, &section_id).await?;
    let enrolments = state.store().enrolments(&school_id, &section_id).await?;
    Ok(Json(
        enrolments.into_iter().map(EnrolmentJson::from).collect(),
    ))
}

/// `POST /v1/schools/{school}/sections/{section}/enrolments`: adds (or deactivates) one person.
#[utoipa::path(
    post,
    path = "/v1/schools/{school}/sections/{section}/enrolments",
    summary = "Add, update or deactivate one enrolment.",
    request_body = NewEnrolment,
    responses(
        (status = 200, description = "ok", body = EnrolmentJson),
        (status = 400, description = openapi::E400, body = openapi::ErrorJson),
        (status = 404, description = openapi::E404, body = openapi::ErrorJson),
    ),
    security(("session" = [])),
    extensions(("x-rollcall-access" = json!("admin"))),
)]
pub(super) async fn upsert_enrolment(
    State(state): State<AppState>,
    SchoolAdmin { school_id, .. }: SchoolAdmin,
    Path((_, section_id)): Path<(String, String)>,
    JsonBody(new): JsonBody<NewEnrolment>,
) -> Result<Json<EnrolmentJson>, ApiError> {
    section_of(&state, &school_id, &section_id).await?;
    check_id("person_id", &new.person_id)?;
    if new.role == EnrolmentRole::Student
        && state
            .store()
            .student(&school_id, &new.person_id)
            .await?
            .is_none()
    {
        return Err(ApiError::NotFound(format!("student {}", new.person_id)));
    }
    let enrolment = Enrolment {
        section_id,
        person_id: new.person_id,
        role: new.role,
        active: new.active,
    };
    let batch = RosterBatch {
        enrolments: vec![enrolment.clone()],
        ..RosterBatch::default()
    };
    state
        .store()
        .apply_roster(&school_id, &batch, false)
        .await?;
    Ok(Json(enrolment.into()))
}

#[derive(Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Schedule)]
pub(super) struct ScheduleJson {
    slots: Vec<ScheduleSlot>,
}

/// `GET /v1/schools/{school}/sections/{section}/schedule`.
#[utoipa::path(
    get,
    path = "/v1/schools/{school}/sections/{section}/schedule",
    summary = "A section's timetable.",
    responses(
        (status = 200, description = "ok", body = ScheduleJson),
        (status = 404, description = openapi::E404, body = openapi::ErrorJson),
    ),
    security(("session" = [])),
    extensions(("x-rollcall-access" = json!("admin"))),
)]
pub(super) async fn get_schedule(
    State(state): State<AppState>,
    SchoolAdmin { school_id, .. }: SchoolAdmin,
    Path((_, section_id)): Path<(String, String)>,
) -> Result<Json<ScheduleJson>, ApiError> {
    section_of(&state, &school_id, &section_id).await?;
    let slots = state.store().schedule(&school_id, &section_id).await?;
    Ok(Json(ScheduleJson { slots }))
}

fn check_slots(slots: &[ScheduleSlot]) -> Result<(), ApiError> {
    if slots.len() > 100 {
        return Err(ApiError::InvalidRequest(
            "more than 100 slots in one timetable".to_owned(),
        ));
    }
    for (slot_idx, slot) in slots.iter().enumerate() {
        let at = |reason: String| ApiError::InvalidRequest(format!("slot {slot_idx}: {reason}"));
        if !(1..=7).contains(&slot.weekday) {
            return Err(at(format!(
                "weekday {} is not 1 (Monday) to 7 (Sunday)",
                slot.weekday
            )));
        }
        let starts = shared_proto::sync::minutes_of_day(&slot.starts).ok_or_else(|| {
            at(format!(
                "starts \"{}\" is not a time like 08:30",
                slot.starts
            ))
        })?;
        let ends = shared_proto::sync::minutes_of_day(&slot.ends)
            .ok_or_else(|| at(format!("ends \"{}\" is not a time like 09:15", slot.ends)))?;
        if starts >= ends {
            return Err(at(format!(
                "ends {} is not after starts {}",
                slot.ends, slot.starts
            )));
        }
        if slot
            .room
            .as_ref()
            .is_some_and(|room| room.chars().count() > 100)
        {
            return Err(at("room is longer than 100 characters".to_owned()));
        }
    }
    Ok(())
}

/// `PUT /v1/schools/{school}/sections/{section}/schedule`: replaces the timetable.
#[utoipa::path(
    put,
    path = "/v1/schools/{school}/sections/{section}/schedule",
    summary = "Replace a section's timetable (weekday 1-7, HH:MM, starts before ends).",
    request_body = ScheduleJson,
    responses(
        (status = 200, description = "ok", body = ScheduleJson),
        (status = 400, description = openapi::E400, body = openapi::ErrorJson),
        (status = 404, description = openapi::E404, body = openapi::ErrorJson),
    ),
    security(("session" = [])),
    extensions(("x-rollcall-access" = json!("admin"))),
)]
pub(super) async fn set_schedule(
    State(state): State<AppState>,
    SchoolAdmin { school_id, .. }: SchoolAdmin,
    Path((_, section_id)): Path<(String, String)>,
    JsonBody(schedule): JsonBody<ScheduleJson>,
) -> Result<Json<ScheduleJson>, ApiError> {
    check_slots(&schedule.slots)?;
    state
        .store()
        .set_schedule(&school_id, &section_id, &schedule.slots)
        .await?;
    Ok(Json(schedule))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(weekday: u8, starts: &str, ends: &str) -> ScheduleSlot {
        ScheduleSlot {
            weekday,
            starts: starts.into(),
            ends: ends.into(),
            room: None,
        }
    }

    #[test]
    fn timetables_need_real_days_and_times_in_order() {
        assert!(check_slots(&[slot(1, "08:30", "09:15"), slot(7, "00:00", "23:59")]).is_ok());
        for bad in [
            slot(0, "08:30", "09:15"),
            slot(8, "08:30", "09:15"),
            slot(1, "8:30", "09:15"),
            slot(1, "24:00", "24:30"),
            slot(1, "09:15", "09:15"),
            slot(1, "10:00", "09:00"),
        ] {
            assert!(check_slots(std::slice::from_ref(&bad)).is_err(), "{bad:?}");
        }
    }
}
