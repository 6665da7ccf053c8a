//! Sync protocol v1: what a classroom box pushes (`Event`s), what it pulls (`Change`s), and the
//! errors either side answers with. Times are milliseconds since the Unix epoch, UTC.
//!
//! Every request carries [`PROTOCOL_HEADER`]; a body also carries its `protocol` field. A peer that
//! speaks a newer version is refused with [`ApiErrorCode::UnsupportedProtocol`] before the rest of
//! the message is read: a newer version may hold kinds this build would misread.

use serde::{Deserialize, Serialize};

use crate::{OLDEST_PROTOCOL_VERSION, PROTOCOL_VERSION};

mod embedding;

pub use embedding::{Embedding, EmbeddingError, f32le_decode, f32le_encode};

/// Header naming the protocol version of a request.
pub const PROTOCOL_HEADER: &str = "x-rollcall-protocol";
/// Header carrying the request id; one per box sync cycle, logged on both sides.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Whether a caller's `X-Request-Id` is kept: only a short, plain one, so it is safe in logs and
/// headers; otherwise the server makes its own.
pub fn is_sane_request_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}
/// Most events one push may carry; a box sends more as several pushes.
pub const MAX_PUSH_EVENTS: usize = 1000;
/// Most changes one pull page may return.
pub const MAX_PULL_LIMIT: usize = 1000;

/// `POST /v1/sync/push`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PushRequest {
    pub protocol: u32,
    #[cfg_attr(feature = "openapi", schema(max_items = 1000))]
    pub events: Vec<Event>,
    /// Protocol 2: how the box is doing, for the dashboard's devices page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<BoxReport>,
}

/// What a box says about itself with each push (protocol 2).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BoxReport {
    /// The box's `edge-agent` version.
    pub app_version: String,
    /// Events waiting in its outbox after this push is sent (this push's events included).
    pub outbox_waiting: u64,
    /// The box's clock when it made this push, ms since the Unix epoch: the server compares it
    /// with its own (`clock`'s rule) for the devices page. Absent from boxes before it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock_ms: Option<i64>,
}

/// Answer to a push: every event id is either acked (applied now or earlier) or rejected.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PushResponse {
    pub acked: Vec<String>,
    pub rejected: Vec<Rejection>,
}

/// An event the server will not apply, and why. The box keeps it and shows the reason.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Rejection {
    pub id: String,
    pub code: RejectCode,
    pub reason: String,
}

/// Machine-readable reasons for rejecting one event of a push.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum RejectCode {
    /// The id is not a UUID.
    InvalidId,
    UnknownSection,
    UnknownStudent,
    UnknownSession,
    /// The section, student or session belongs to another school than the device.
    WrongSchool,
    /// A template for a student whose consent is not granted.
    NoConsent,
    /// Well-formed JSON that breaks a rule (empty id, negative time, bad score, ...).
    InvalidEvent,
}

/// Something that happened on a box, once, with an id made there (UUIDv7).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Event {
    #[cfg_attr(feature = "openapi", schema(format = "uuid"))]
    pub id: String,
    /// When it happened on the box.
    pub at: i64,
    #[serde(flatten)]
    pub body: EventBody,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum EventBody {
    SessionOpened {
        session: String,
        section: String,
        started_at: i64,
    },
    SessionClosed {
        session: String,
    },
    MarkSet {
        session: String,
        student: String,
        status: MarkStatus,
        source: MarkSource,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        score: Option<f32>,
        decided_at: i64,
        /// The teacher who decided; absent for machine marks.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
    },
    TemplateAdded {
        template: TemplateData,
    },
    TemplateDeleted {
        template: String,
        student: String,
    },
    ConsentChanged {
        student: String,
        consent: Consent,
        by: String,
    },
}

impl EventBody {
    pub fn kind(&self) -> &'static str {
        match self {
            EventBody::SessionOpened { .. } => "session_opened",
            EventBody::SessionClosed { .. } => "session_closed",
            EventBody::MarkSet { .. } => "mark_set",
            EventBody::TemplateAdded { .. } => "template_added",
            EventBody::TemplateDeleted { .. } => "template_deleted",
            EventBody::ConsentChanged { .. } => "consent_changed",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MarkStatus {
    Present,
    Review,
    Absent,
    Late,
    Excused,
}

crate::vocabulary!(MarkStatus, "mark status", {
    Present => "present",
    Review => "review",
    Absent => "absent",
    Late => "late",
    Excused => "excused",
});

/// Who decided a mark: the box's recogniser, the teacher at the box, or the school office on the
/// dashboard (protocol 2). Teacher and office are both people: see [`mark_wins`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MarkSource {
    Machine,
    Teacher,
    Office,
}

crate::vocabulary!(MarkSource, "mark source", {
    Machine => "machine",
    Teacher => "teacher",
    Office => "office",
});

impl MarkSource {
    /// A person decided: a teacher or the office.
    pub fn is_human(self) -> bool {
        !matches!(self, MarkSource::Machine)
    }
}

/// The conflict rule for two decisions on one mark, on the box and on the server alike:
///
/// 1. a person's decision (teacher or office) beats the machine's, whatever their times: the machine
///    guessed, a person looked;
/// 2. between two people, or between two machine decisions, the later decision wins: a teacher who
///    re-marks after the office corrected has seen the pupil walk in, and an office correction after
///    the lesson overrides what the teacher entered (neither role outranks the other);
/// 3. at equal times the event id breaks the tie, so every replica picks the same one.
pub fn mark_wins(new: (MarkSource, i64, &str), old: (MarkSource, i64, &str)) -> bool {
    (new.0.is_human(), new.1, new.2) > (old.0.is_human(), old.1, old.2)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Consent {
    None,
    Granted,
    Withdrawn,
}

crate::vocabulary!(Consent, "consent", {
    None => "none",
    Granted => "granted",
    Withdrawn => "withdrawn",
});

/// One face template: a vector, the model that made it, and where it came from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TemplateData {
    /// UUID made where the template was enrolled.
    pub id: String,
    pub student: String,
    pub embedding: Embedding,
    /// Quality score of the photo it came from, 0-1.
    pub quality: f32,
    /// `box:<device>`, `central`, ...: for audits.
    pub source: String,
    pub created_at: i64,
}

/// `GET /v1/sync/pull?cursor=C&limit=N`: the changes for the device's school after `C`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PullResponse {
    pub protocol: u32,
    pub changes: Vec<Change>,
    /// Where the next page starts; store it only after this page is applied.
    pub next_cursor: String,
    /// True when more changes wait after `next_cursor`.
    pub more: bool,
}

/// One change in server order. The latest state of an entity: a box applies it as an upsert (or a
/// purge for tombstones), so applying a page twice is harmless.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Change {
    /// Position in the school's change feed; strictly increasing within a pull.
    pub seq: u64,
    #[serde(flatten)]
    pub body: ChangeBody,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum ChangeBody {
    Section {
        id: String,
        title: String,
        active: bool,
    },
    Student {
        id: String,
        given_name: String,
        family_name: String,
        active: bool,
        consent: Consent,
    },
    Teacher {
        id: String,
        given_name: String,
        family_name: String,
        active: bool,
    },
    Enrolment {
        section: String,
        person: String,
        role: EnrolmentRole,
        active: bool,
    },
    /// A section's whole timetable; replaces the one the box holds.
    Schedule {
        section: String,
        slots: Vec<ScheduleSlot>,
    },
    Template {
        template: TemplateData,
    },
    /// Tombstone: purge this template's vector and kept crop.
    TemplateDeleted {
        template: String,
        student: String,
    },
    /// Tombstone: consent withdrawn or erasure; purge every template and crop of the student.
    StudentErased {
        student: String,
    },
    /// Protocol 2: a mark decided on the server (an office correction). The box holding the session
    /// applies it by [`mark_wins`], so its teacher screen shows the roll the office sees; other boxes
    /// skip it.
    Mark {
        session: String,
        student: String,
        status: MarkStatus,
        source: MarkSource,
        decided_at: i64,
        /// Who decided (the office user's name).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
        /// The server's id of the decision, for `mark_wins`'s tie-break.
        event: String,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EnrolmentRole {
    Student,
    Teacher,
}

crate::vocabulary!(EnrolmentRole, "enrolment role", {
    Student => "student",
    Teacher => "teacher",
});

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ScheduleSlot {
    /// 1 = Monday ... 7 = Sunday (ISO 8601).
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 7))]
    pub weekday: u8,
    /// `HH:MM`, local time of the school.
    #[cfg_attr(feature = "openapi", schema(pattern = "^[0-2][0-9]:[0-5][0-9]$"))]
    pub starts: String,
    #[cfg_attr(feature = "openapi", schema(pattern = "^[0-2][0-9]:[0-5][0-9]$"))]
    pub ends: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room: Option<String>,
}

/// Minutes after midnight of a `ScheduleSlot`'s `HH:MM` (two digits each, 00:00 to 23:59); `None`
/// for anything else. The one reading of a slot's time: the box, the API's check and the
/// dashboard's lessons.
pub fn minutes_of_day(time: &str) -> Option<u16> {
    let (h, m) = time.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60).then_some(h * 60 + m)
}

/// `POST /v1/devices/provision`: a box trades a one-time code for its device token.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProvisionRequest {
    pub protocol: u32,
    pub code: String,
    /// A name for the box, e.g. its room.
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProvisionResponse {
    pub device_id: String,
    pub school_id: String,
    /// Shown once; the server keeps only its hash.
    pub token: String,
}

/// The body of every 4xx and 5xx answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApiError {
    pub code: ApiErrorCode,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// Machine-readable error codes of the sync and admin APIs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum ApiErrorCode {
    /// The body is not JSON, or not the JSON this route takes.
    InvalidJson,
    /// Well-formed but breaks a rule; the message says which.
    InvalidRequest,
    /// The peer speaks a newer (or no) protocol version.
    UnsupportedProtocol,
    /// No token, or one the server does not know or that expired.
    Unauthorized,
    /// A device token that an admin revoked.
    TokenRevoked,
    /// Authenticated, but not allowed here (a teacher outside their sections, a device on an
    /// admin route, ...).
    Forbidden,
    /// The resource belongs to another school.
    WrongSchool,
    NotFound,
    /// Already exists (a username, a school id, ...).
    Conflict,
    PayloadTooLarge,
    BatchTooLarge,
    RateLimited,
    /// A provisioning code that is unknown, used or expired.
    ProvisioningCodeInvalid,
    /// A roster file with row errors; the message lists them as `file:line: reason`.
    InvalidRoster,
    /// The store cannot be reached; retry later.
    Unavailable,
    Internal,
}

/// What [`check_protocol`] and [`decode_push`] refuse.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum WireError {
    #[error(
        "protocol version {found} is newer than this server speaks ({supported}): update the server"
    )]
    NewerProtocol { found: u32, supported: u32 },
    #[error("protocol version {0} is no longer supported: update the box")]
    StaleProtocol(u32),
    #[error("invalid JSON: {0}")]
    InvalidJson(String),
}

impl WireError {
    pub fn code(&self) -> ApiErrorCode {
        match self {
            WireError::NewerProtocol { .. } | WireError::StaleProtocol(_) => {
                ApiErrorCode::UnsupportedProtocol
            }
            WireError::InvalidJson(_) => ApiErrorCode::InvalidJson,
        }
    }
}

/// Accepts the versions this build serves (`OLDEST_PROTOCOL_VERSION` to `PROTOCOL_VERSION`) and
/// returns the one the peer speaks: answers must be in it.
pub fn check_protocol(found: u32) -> Result<u32, WireError> {
    match found {
        v if v > PROTOCOL_VERSION => Err(WireError::NewerProtocol {
            found: v,
            supported: PROTOCOL_VERSION,
        }),
        v if v < OLDEST_PROTOCOL_VERSION => Err(WireError::StaleProtocol(v)),
        v => Ok(v),
    }
}

/// Whether a peer speaking `version` can read `change`. Version 1 boxes decode the feed strictly
/// and know no `mark` changes: the server leaves those out of their pages (the cursor still moves
/// past them).
pub fn speaks(version: u32, change: &ChangeBody) -> bool {
    version >= 2 || !matches!(change, ChangeBody::Mark { .. })
}

/// Decodes a versioned body (a push, a provisioning request): its `protocol` first, so a newer
/// protocol is refused before fields this build would misread. One decoder for every versioned
/// request.
pub fn decode_versioned<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, WireError> {
    #[derive(Deserialize)]
    struct Version {
        protocol: Option<u32>,
    }
    let version: Version =
        serde_json::from_slice(body).map_err(|e| WireError::InvalidJson(e.to_string()))?;
    check_protocol(version.protocol.unwrap_or(0))?;
    serde_json::from_slice(body).map_err(|e| WireError::InvalidJson(e.to_string()))
}

/// Decodes a push body, checking its version before anything else in it.
pub fn decode_push(body: &[u8]) -> Result<PushRequest, WireError> {
    decode_versioned(body)
}

#[cfg(test)]
mod tests;
