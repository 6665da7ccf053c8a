//! The documents of each collection as serde types, and their conversions to and from the store's
//! types. Enums are stored as the same snake_case words the wire uses; times as Int64 millis.

use crate::domain::settings::SchoolSettings;
use mongodb::bson::{Binary, spec::BinarySubtype};
use serde::{Deserialize, Serialize};
use shared_proto::ModelId;
use shared_proto::sync::{Consent, Embedding, EnrolmentRole, MarkSource, MarkStatus, ScheduleSlot};

use super::error::DbError;
use crate::domain::event::Template;
use crate::store::{
    AttendanceRow, AuthSession, BoxState, Device, DeviceActivity, Enrolment, Millis, Role, School,
    Section, StoreError, Student, Teacher, User, stored_space,
};

#[derive(Debug, Serialize, Deserialize)]
pub struct SchoolDoc {
    #[serde(rename = "_id")]
    pub id: String,
    pub name: String,
    /// Absent until a school saves its settings (schema 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings: Option<SchoolSettings>,
}

impl SchoolDoc {
    pub fn into_school(self) -> School {
        School {
            id: self.id,
            name: self.name,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RoleDoc {
    Admin,
    Teacher,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct UserDoc {
    #[serde(rename = "_id")]
    pub id: String,
    pub username: String,
    pub password_hash: String,
    pub role: RoleDoc,
    pub school_id: Option<String>,
    pub teacher_id: Option<String>,
}

impl UserDoc {
    pub fn from_user(user: &User) -> UserDoc {
        UserDoc {
            id: user.id.clone(),
            username: user.username.clone(),
            password_hash: user.password_hash.clone(),
            role: match user.role {
                Role::Admin => RoleDoc::Admin,
                Role::Teacher => RoleDoc::Teacher,
            },
            school_id: user.school_id.clone(),
            teacher_id: user.teacher_id.clone(),
        }
    }

    pub fn into_user(self) -> User {
        User {
            id: self.id,
            username: self.username,
            password_hash: self.password_hash,
            role: match self.role {
                RoleDoc::Admin => Role::Admin,
                RoleDoc::Teacher => Role::Teacher,
            },
            school_id: self.school_id,
            teacher_id: self.teacher_id,
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct AuthSessionDoc {
    /// The sha256 of the token.
    #[serde(rename = "_id")]
    pub token_hash: String,
    pub user_id: String,
    pub expires_at: Millis,
}

impl AuthSessionDoc {
    pub fn from_session(session: &AuthSession) -> AuthSessionDoc {
        AuthSessionDoc {
            token_hash: session.token_hash.clone(),
            user_id: session.user_id.clone(),
            expires_at: session.expires_at,
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct DeviceDoc {
    #[serde(rename = "_id")]
    pub id: String,
    pub school_id: String,
    pub name: String,
    pub token_hash: String,
    pub created_at: Millis,
    pub revoked_at: Option<Millis>,
    pub last_seen_at: Option<Millis>,
    #[serde(default)]
    pub last_push_at: Option<Millis>,
    #[serde(default)]
    pub last_pull_at: Option<Millis>,
    #[serde(default)]
    pub app_version: Option<String>,
    #[serde(default)]
    pub outbox_waiting: Option<i64>,
    #[serde(default)]
    pub acked_seq: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedding_space: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock_offset_ms: Option<Millis>,
}

impl DeviceDoc {
    pub fn from_device(device: &Device) -> DeviceDoc {
        DeviceDoc {
            id: device.id.clone(),
            school_id: device.school_id.clone(),
            name: device.name.clone(),
            token_hash: device.token_hash.clone(),
            created_at: device.created_at,
            revoked_at: device.revoked_at,
            last_seen_at: device.last_seen_at,
            last_push_at: device.activity.last_push_at,
            last_pull_at: device.activity.last_pull_at,
            app_version: device
                .activity
                .state
                .as_ref()
                .map(|s| s.app_version.clone()),
            outbox_waiting: device
                .activity
                .state
                .as_ref()
                .map(|s| s.outbox_waiting as i64),
            acked_seq: device.activity.acked_seq as i64,
            embedding_space: device.activity.embedding_space.clone(),
            clock_offset_ms: device
                .activity
                .state
                .as_ref()
                .and_then(|s| s.clock_offset_ms),
        }
    }

    pub fn into_device(self) -> Device {
        Device {
            id: self.id,
            school_id: self.school_id,
            name: self.name,
            token_hash: self.token_hash,
            created_at: self.created_at,
            revoked_at: self.revoked_at,
            last_seen_at: self.last_seen_at,
            activity: DeviceActivity {
                last_push_at: self.last_push_at,
                last_pull_at: self.last_pull_at,
                state: match (self.app_version, self.outbox_waiting) {
                    (Some(app_version), Some(waiting)) => Some(BoxState {
                        app_version,
                        outbox_waiting: waiting.max(0) as u64,
                        clock_offset_ms: self.clock_offset_ms,
                    }),
                    _ => None,
                },
                acked_seq: self.acked_seq.max(0) as u64,
                embedding_space: self.embedding_space,
            },
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ProvisioningCodeDoc {
    /// The sha256 of the code.
    #[serde(rename = "_id")]
    pub code_hash: String,
    pub school_id: String,
    pub device_name: Option<String>,
    pub created_by: String,
    pub expires_at: Millis,
    pub used_at: Option<Millis>,
    pub device_id: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct SectionDoc {
    #[serde(rename = "_id")]
    pub id: String,
    pub school_id: String,
    pub title: String,
    pub active: bool,
    /// The section's timetable (`set_schedule`), kept with it.
    #[serde(default)]
    pub schedule: Vec<ScheduleSlot>,
}

impl SectionDoc {
    /// A new section, with no timetable yet.
    pub fn from_section(school_id: &str, section: &Section) -> SectionDoc {
        SectionDoc {
            id: section.id.clone(),
            school_id: school_id.to_owned(),
            title: section.title.clone(),
            active: section.active,
            schedule: Vec::new(),
        }
    }

    pub fn into_section(self) -> Section {
        Section {
            id: self.id,
            school_id: self.school_id,
            title: self.title,
            active: self.active,
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct StudentDoc {
    #[serde(rename = "_id")]
    pub id: String,
    pub school_id: String,
    pub given_name: String,
    pub family_name: String,
    pub active: bool,
    pub consent: Consent,
    pub consent_by: Option<String>,
    pub consent_at: Option<Millis>,
}

impl StudentDoc {
    pub fn from_student(school_id: &str, student: &Student) -> StudentDoc {
        StudentDoc {
            id: student.id.clone(),
            school_id: school_id.to_owned(),
            given_name: student.given_name.clone(),
            family_name: student.family_name.clone(),
            active: student.active,
            consent: student.consent,
            consent_by: student.consent_by.clone(),
            consent_at: student.consent_at,
        }
    }

    pub fn into_student(self) -> Student {
        Student {
            id: self.id,
            school_id: self.school_id,
            given_name: self.given_name,
            family_name: self.family_name,
            active: self.active,
            consent: self.consent,
            consent_by: self.consent_by,
            consent_at: self.consent_at,
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct TeacherDoc {
    #[serde(rename = "_id")]
    pub id: String,
    pub school_id: String,
    pub given_name: String,
    pub family_name: String,
    pub active: bool,
}

impl TeacherDoc {
    pub fn from_teacher(school_id: &str, teacher: &Teacher) -> TeacherDoc {
        TeacherDoc {
            id: teacher.id.clone(),
            school_id: school_id.to_owned(),
            given_name: teacher.given_name.clone(),
            family_name: teacher.family_name.clone(),
            active: teacher.active,
        }
    }

    pub fn into_teacher(self) -> Teacher {
        Teacher {
            id: self.id,
            school_id: self.school_id,
            given_name: self.given_name,
            family_name: self.family_name,
            active: self.active,
        }
    }
}

/// Keyed by (section_id, person_id) through a unique index; `school_id` is the section's, copied
/// so a school's enrolments are one indexed query.
#[derive(Debug, Serialize, Deserialize)]
pub struct EnrolmentDoc {
    pub school_id: String,
    pub section_id: String,
    pub person_id: String,
    pub role: EnrolmentRole,
    pub active: bool,
}

impl EnrolmentDoc {
    pub fn from_enrolment(school_id: &str, enrolment: &Enrolment) -> EnrolmentDoc {
        EnrolmentDoc {
            school_id: school_id.to_owned(),
            section_id: enrolment.section_id.clone(),
            person_id: enrolment.person_id.clone(),
            role: enrolment.role,
            active: enrolment.active,
        }
    }

    pub fn into_enrolment(self) -> Enrolment {
        Enrolment {
            section_id: self.section_id,
            person_id: self.person_id,
            role: self.role,
            active: self.active,
        }
    }
}

/// A template, or the tombstone of one: a tombstone keeps the id (so a late `template_added`
/// cannot bring it back) and loses the vector. The vector is BSON binary of little-endian f32.
#[derive(Debug, Serialize, Deserialize)]
pub struct TemplateDoc {
    #[serde(rename = "_id")]
    pub id: String,
    pub school_id: String,
    pub student_id: String,
    pub tombstone: bool,
    #[serde(default)]
    pub model_id: Option<String>,
    /// Absent in documents from before spaces: read as the model's space.
    #[serde(default)]
    pub space: Option<String>,
    #[serde(default)]
    pub embedding: Option<Binary>,
    #[serde(default)]
    pub quality: Option<f32>,
    #[serde(default)]
    pub source: Option<String>,
    #[serde(default)]
    pub created_at: Option<Millis>,
}

impl TemplateDoc {
    pub fn from_template(school_id: &str, template: &Template) -> TemplateDoc {
        TemplateDoc {
            id: template.id.clone(),
            school_id: school_id.to_owned(),
            student_id: template.student.clone(),
            tombstone: false,
            model_id: Some(template.embedding.model.to_string()),
            space: Some(template.embedding.space.to_string()),
            embedding: Some(Binary {
                subtype: BinarySubtype::Generic,
                bytes: template
                    .embedding
                    .vector
                    .iter()
                    .flat_map(|v| v.to_le_bytes())
                    .collect(),
            }),
            quality: Some(template.quality),
            source: Some(template.source.clone()),
            created_at: Some(template.created_at),
        }
    }

    /// A live template back as the server's type; a document that does not decode is corruption,
    /// reported with its id.
    pub fn into_template(self) -> Result<Template, StoreError> {
        let corrupt = |why: String| StoreError::Backend(format!("template {}: {why}", self.id));
        let model_text = self
            .model_id
            .as_deref()
            .ok_or_else(|| corrupt("no model id".to_owned()))?;
        let model: ModelId = model_text.parse().map_err(|e| corrupt(format!("{e}")))?;
        let space =
            stored_space(self.space.as_deref(), model_text).map_err(|e| corrupt(format!("{e}")))?;
        let bytes = &self
            .embedding
            .as_ref()
            .ok_or_else(|| corrupt("no embedding".to_owned()))?
            .bytes;
        if !bytes.len().is_multiple_of(4) {
            return Err(corrupt(format!("embedding of {} bytes", bytes.len())));
        }
        let vector = bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        Ok(Template {
            embedding: Embedding {
                model,
                space,
                vector,
            },
            quality: self.quality.unwrap_or(0.0),
            source: self.source.clone().unwrap_or_default(),
            created_at: self.created_at.unwrap_or(0),
            id: self.id,
            student: self.student_id,
        })
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct SessionDoc {
    #[serde(rename = "_id")]
    pub id: String,
    pub school_id: String,
    pub device_id: String,
    pub section_id: String,
    pub started_at: Millis,
    pub closed_at: Option<Millis>,
}

/// One student's mark in one session, unique by (session_id, student_id). `section_id` and
/// `started_at` are the session's, copied when it is known; `placed_at` is the time attendance
/// queries file the mark under: the session's start, or the decision while it has not arrived.
#[derive(Debug, Serialize, Deserialize)]
pub struct MarkDoc {
    pub session_id: String,
    pub student_id: String,
    pub school_id: String,
    pub device_id: String,
    pub status: MarkStatus,
    pub source: MarkSource,
    pub score: Option<f32>,
    pub decided_at: Millis,
    pub decided_by: Option<String>,
    pub event_id: String,
    pub section_id: Option<String>,
    pub started_at: Option<Millis>,
    pub placed_at: Millis,
    /// What the machine decided, kept through people's corrections; absent on marks written
    /// before the self-audit, and where a person marked first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine_status: Option<MarkStatus>,
}

impl MarkDoc {
    pub fn into_row(self) -> AttendanceRow {
        AttendanceRow {
            session_id: self.session_id,
            section_id: self.section_id,
            started_at: self.started_at,
            device_id: self.device_id,
            student_id: self.student_id,
            status: self.status,
            source: self.source,
            score: self.score,
            decided_at: self.decided_at,
            decided_by: self.decided_by,
            event_id: self.event_id,
        }
    }
}

/// Serialises a document type for an insert or a `$set`.
pub fn to_document<T: Serialize>(value: &T) -> Result<mongodb::bson::Document, StoreError> {
    mongodb::bson::to_document(value)
        .map_err(|e| StoreError::Backend(format!("cannot encode a document: {e}")))
}

/// Serialises a value (an enum, a time) for a `$set` or a filter, as the documents store it.
pub fn to_bson<T: Serialize>(value: &T) -> Result<mongodb::bson::Bson, StoreError> {
    mongodb::bson::to_bson(value)
        .map_err(|e| StoreError::Backend(format!("cannot encode a value: {e}")))
}

/// The text field `key` of an untyped document of `collection`; any other type is corruption. A
/// skipped row would read as "not held": an applied event applied again, a section called unknown,
/// a template that outlives its student's erasure.
pub fn text(d: &mongodb::bson::Document, collection: &str, key: &str) -> Result<String, DbError> {
    d.get_str(key).map(str::to_owned).map_err(|e| {
        let id = match d.get("_id") {
            Some(mongodb::bson::Bson::String(id)) => id.clone(),
            Some(id) => id.to_string(),
            None => "?".to_owned(),
        };
        DbError::corrupt(format!("{collection} {id}: its {key}: {e}"))
    })
}
