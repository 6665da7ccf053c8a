//! `Store`: everything the server keeps, behind one trait with two backends that pass the same
//! contract suite (`tests/contract/`): embedded SQLite (`sqlite`, the default, one school on one
//! machine) and MongoDB (`mongo`, a district).
//!
//! Invariants every backend keeps:
//! - An event id is applied at most once; a repeated id is acked again and changes nothing.
//! - A push batch is applied atomically: a crash leaves none or all of its accepted events.
//! - Each school has one change feed. Every write that a box must learn about upserts one row per
//!   entity key (`domain::feed::Change::key`) with a new `seq`, larger than every `seq` already visible, in
//!   the same transaction as the write. So a pull that reads `seq > cursor` in order never skips a
//!   change and never repeats one across pages, even while writes go on.
//! - Marks: a person (a teacher at the box, the office on the dashboard) beats the machine, then
//!   the later decision wins, whoever made it (`shared_proto::sync::mark_wins`). A mark decided on
//!   the server goes to the boxes as a `mark` change and to the audit log, in its transaction.
//! - Consent withdrawn or a student erased: every template of theirs becomes a tombstone in the feed.
//! - A roster batch means what `shared_proto::roster` says, on both backends and on the box.
//! - Secrets (passwords, session and device tokens, provisioning codes) are stored as hashes only.

use jiff::tz::TimeZone;
use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use shared_proto::sync::{Consent, MAX_PULL_LIMIT, MarkSource, MarkStatus, ScheduleSlot};

use crate::domain::audit::{Entry as AuditEntry, Query as AuditQuery};
use crate::domain::correction::{
    Correction, Decision, Outcome as CorrectionOutcome, Refusal as CorrectionRefusal,
};
use crate::domain::event::{Event, Template};
use crate::domain::excusal::{BookingRefusal, Excusal};
use crate::domain::feed::Entry;
use crate::domain::guardian::{Contact, Guardian, Linked, Refusal as GuardianRefusal};
use crate::domain::notice::{Claim, Finish, Notice, State as NoticeState};
use crate::domain::push::Outcome;
use crate::domain::settings::SchoolSettings;

pub mod mongo;
pub(crate) mod roster;
pub mod rules;
pub mod sqlite;
pub mod transaction;

use transaction::{Done, Operation};

/// Milliseconds since the Unix epoch, UTC.
pub type Millis = i64;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique key already taken: a username, a school id, ...
    #[error("{0} already exists")]
    Conflict(String),
    #[error("{0} not found")]
    NotFound(String),
    /// The database cannot be reached or answered with a transient failure: retry later.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The data was written by a newer server; refused, never modified.
    #[error("{0}")]
    NewerSchema(String),
    #[error("store error: {0}")]
    Backend(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct School {
    pub id: String,
    pub name: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Admin,
    Teacher,
}

shared_proto::vocabulary!(Role, "role", {
    Admin => "admin",
    Teacher => "teacher",
});

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub id: String,
    /// Unique across the server.
    pub username: String,
    /// argon2id PHC string.
    pub password_hash: String,
    pub role: Role,
    /// `None` for a district admin, who sees every school.
    pub school_id: Option<String>,
    /// For teachers: their OneRoster sourcedId, which links them to their sections.
    pub teacher_id: Option<String>,
}

impl User {
    /// An admin of no one school: the only one who sees every school and creates schools.
    pub fn is_district_admin(&self) -> bool {
        self.role == Role::Admin && self.school_id.is_none()
    }
}

/// A login session; only the sha256 of its token is stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthSession {
    pub token_hash: String,
    pub user_id: String,
    pub expires_at: Millis,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Device {
    pub id: String,
    pub school_id: String,
    pub name: String,
    /// sha256 hex of the device token.
    pub token_hash: String,
    pub created_at: Millis,
    pub revoked_at: Option<Millis>,
    pub last_seen_at: Option<Millis>,
    pub activity: DeviceActivity,
}

/// What a box's calls have told of it, for the devices page.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeviceActivity {
    pub last_push_at: Option<Millis>,
    pub last_pull_at: Option<Millis>,
    /// From its latest push's report (protocol 2).
    pub state: Option<BoxState>,
    /// The embedding space of the latest template the box pushed: the model it recognises with.
    /// `None` until it pushes one.
    pub embedding_space: Option<String>,
    /// How far the box has applied its school's feed. A box stores a pull's cursor only after
    /// applying the page, so a pull from cursor C proves every change up to C is applied there:
    /// an erasure at seq S is purged on the box once `acked_seq >= S`.
    pub acked_seq: u64,
}

/// What a box says of itself with a push.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BoxState {
    pub app_version: String,
    pub outbox_waiting: u64,
    /// How far the box's clock was ahead of the server's (behind when negative) when the push
    /// arrived; `None` from boxes that do not send their clock.
    pub clock_offset_ms: Option<Millis>,
}

/// A box's call, as `Store::device_seen` records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Seen {
    /// A push: the box's report (protocol 2), and the embedding space of the last template the
    /// push carried, if it carried one.
    Push(Option<BoxState>, Option<String>),
    /// A pull from this cursor.
    Pull(u64),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProvisioningCode {
    /// sha256 hex of the code.
    pub code_hash: String,
    pub school_id: String,
    pub device_name: Option<String>,
    pub created_by: String,
    pub expires_at: Millis,
}

/// Why a provisioning code was not traded for a device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RedeemRefusal {
    Unknown,
    AlreadyUsed,
    Expired,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Student {
    pub id: String,
    pub school_id: String,
    pub given_name: String,
    pub family_name: String,
    pub active: bool,
    pub consent: Consent,
    pub consent_by: Option<String>,
    pub consent_at: Option<Millis>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Teacher {
    pub id: String,
    pub school_id: String,
    pub given_name: String,
    pub family_name: String,
    pub active: bool,
}

/// A section and an enrolment are the roster import's own types, as on the box: what counts as a
/// change to one (`shared_proto::roster::RosterRecord`) is written once for both. A stored
/// section's `school_id` is the school that holds it, whatever org an export named.
pub use shared_proto::oneroster::{Enrolment, Section};

/// A whole roster for one school, from a OneRoster upload or the admin API.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RosterBatch {
    pub sections: Vec<Section>,
    pub students: Vec<Student>,
    pub teachers: Vec<Teacher>,
    pub enrolments: Vec<Enrolment>,
}

/// What `apply_roster` changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RosterSummary {
    pub sections: usize,
    pub students: usize,
    pub teachers: usize,
    pub enrolments: usize,
    /// Students, teachers, sections and enrolments missing from a full roster, now inactive.
    pub deactivated: usize,
}

/// Marks counted per section, student and status, and sessions per section (`Store::tally`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Tally {
    pub marks: Vec<TallyRow>,
    /// (section, sessions that started in the range).
    pub sessions: Vec<(String, u64)>,
}

impl MachineDecisions {
    /// Counts of the same section, box, decision, status and source added into one, in that order:
    /// the parts of a range read apart, or single marks counted by a store that cannot group.
    pub fn merged(rows: impl IntoIterator<Item = MachineDecisions>) -> Vec<MachineDecisions> {
        let mut counts: BTreeMap<_, MachineDecisions> = BTreeMap::new();
        for row in rows {
            let key = (
                row.section_id.clone(),
                row.device_id.clone(),
                row.machine.map(MarkStatus::as_str),
                row.status.as_str(),
                row.source.as_str(),
            );
            counts
                .entry(key)
                .and_modify(|held| held.count += row.count)
                .or_insert(row);
        }
        counts.into_values().collect()
    }
}

impl Tally {
    /// The tallies of disjoint ranges as one: counts of the same section, student and status added.
    pub fn merged(parts: Vec<Tally>) -> Tally {
        let mut marks: HashMap<(Option<String>, String, MarkStatus), u64> = HashMap::new();
        let mut sessions: BTreeMap<String, u64> = BTreeMap::new();
        for part in parts {
            for row in part.marks {
                *marks
                    .entry((row.section_id, row.student_id, row.status))
                    .or_default() += row.count;
            }
            for (section, n) in part.sessions {
                *sessions.entry(section).or_default() += n;
            }
        }
        Tally {
            marks: marks
                .into_iter()
                .map(|((section_id, student_id, status), count)| TallyRow {
                    section_id,
                    student_id,
                    status,
                    count,
                })
                .collect(),
            sessions: sessions.into_iter().collect(),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct TallyRow {
    /// `None`: marks whose session has not arrived.
    pub section_id: Option<String>,
    pub student_id: String,
    pub status: MarkStatus,
    pub count: u64,
}

/// How many marks of one section and box, in the range asked for, hold `status` from `source`
/// where the machine had decided `machine` (`None`: a machine's mark from before the decision was
/// kept apart, whose decision is its status).
#[derive(Clone, Debug, PartialEq)]
pub struct MachineDecisions {
    pub section_id: String,
    pub device_id: String,
    pub machine: Option<MarkStatus>,
    pub status: MarkStatus,
    pub source: MarkSource,
    pub count: u64,
}

/// One student's mark in one session, as the server holds it after conflicts are resolved.
#[derive(Clone, Debug, PartialEq)]
pub struct AttendanceRow {
    pub session_id: String,
    /// `None` while the session's `session_opened` event has not arrived (out of order).
    pub section_id: Option<String>,
    pub started_at: Option<Millis>,
    pub device_id: String,
    pub student_id: String,
    pub status: MarkStatus,
    pub source: MarkSource,
    pub score: Option<f32>,
    pub decided_at: Millis,
    pub decided_by: Option<String>,
    /// The event that set this mark.
    pub event_id: String,
}

/// Attendance of one school in `[from, to)` by the session's start (or, for a mark whose session
/// has not arrived, its decision time), optionally for one section or one student.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AttendanceQuery {
    pub school_id: String,
    pub section_id: Option<String>,
    pub student_id: Option<String>,
    pub from: Millis,
    pub to: Millis,
}

/// Which of a school's notices to list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoticeQuery {
    pub school_id: String,
    /// Only this school day's (`YYYY-MM-DD`).
    pub day: Option<String>,
    pub state: Option<NoticeState>,
    pub limit: usize,
}

/// A page of a school's change feed.
#[derive(Clone, Debug, PartialEq)]
pub struct ChangePage {
    pub changes: Vec<Entry>,
    /// The last `seq` in `changes`, or the cursor asked for when there are none.
    pub next_cursor: u64,
    pub more: bool,
}

impl ChangePage {
    /// How many changes a backend reads for a pull asking for `limit`: the page, capped at
    /// `MAX_PULL_LIMIT`, plus one that only tells whether more wait (read in the same snapshot).
    pub fn rows_to_read(limit: usize) -> usize {
        limit.min(MAX_PULL_LIMIT) + 1
    }

    /// The page of a pull from `cursor` asking for `limit`, out of the changes read in `seq`
    /// order (at most `rows_to_read(limit)` of them).
    pub fn from_read(cursor: u64, limit: usize, mut read: Vec<Entry>) -> ChangePage {
        let limit = limit.min(MAX_PULL_LIMIT);
        let more = read.len() > limit;
        read.truncate(limit);
        let next_cursor = read.last().map_or(cursor, |c| c.seq);
        ChangePage {
            changes: read,
            next_cursor,
            more,
        }
    }
}

/// An aligned face kept with a live template (`SchoolSettings::keep_crops`), for re-embedding
/// after a model change (`shared_proto::crop`).
#[derive(Clone, Debug, PartialEq)]
pub struct KeptCrop {
    pub template: String,
    pub student: String,
    /// The space of the template the crop was taken for.
    pub space: shared_proto::EmbeddingSpace,
    pub quality: f32,
    /// RGB bytes; empty when listed (`CropRead::Listed`).
    pub crop: Vec<u8>,
}

/// A stored template's embedding space: its own, or for one stored before spaces (no `space`),
/// its model's. The same for both backends; a `space` that does not parse is corruption.
pub(crate) fn stored_space(
    space: Option<&str>,
    model: &str,
) -> Result<shared_proto::EmbeddingSpace, shared_proto::EmbeddingSpaceError> {
    match space {
        Some(space) => space.parse(),
        None => Ok(shared_proto::EmbeddingSpace::of_model_str(model)),
    }
}

/// Which of a school's live templates `Store::templates_of` reads.
#[derive(Clone, Debug)]
pub enum TemplateRead {
    /// Every one: central enrolment's first call sends them to the ML service.
    School,
    /// One student's.
    Student(String),
    /// These; an id no longer live is left out.
    Ids(Vec<String>),
}

/// Which of a school's kept crops `Store::kept_crops` reads. Bytes come only for the templates
/// named, a batch at a time, so a school's crops (~37 KB each, thousands of them) are never all
/// in memory at once.
#[derive(Clone, Copy, Debug)]
pub enum CropRead<'a> {
    /// Every one, without bytes: to count them and pick which to use.
    Listed,
    /// These templates' crops, with bytes; a template that no longer keeps one is left out.
    Bytes(&'a [String]),
}

/// Counters for `/metrics` and the admin devices page.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreCounts {
    pub events_applied: u64,
    pub changes: u64,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Runs one of `transaction`'s operations in one transaction of this backend. The writes
    /// below that read what is held and decide (a push, a roster batch, consent, ...) are
    /// written once, as such operations, on top of it.
    async fn transact(&self, operation: Operation) -> Result<Done, StoreError>;

    /// Cheap round trip for `/readyz`.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Ends the store's background work while the runtime still runs: for a process that is
    /// about to exit, after its last call. Nothing to do for most backends.
    async fn close(&self) {}

    // Schools and accounts.
    async fn create_school(&self, school: &School) -> Result<(), StoreError>;
    async fn schools(&self) -> Result<Vec<School>, StoreError>;
    async fn school(&self, id: &str) -> Result<Option<School>, StoreError>;
    /// `Conflict` when the username is taken.
    async fn create_user(&self, user: &User) -> Result<(), StoreError>;
    async fn user_by_name(&self, username: &str) -> Result<Option<User>, StoreError>;
    async fn count_admins(&self) -> Result<u64, StoreError>;
    /// A school's settings; the defaults for a school that never saved any. `NotFound` for an
    /// unknown school.
    async fn school_settings(&self, school_id: &str) -> Result<SchoolSettings, StoreError>;
    /// Replaces a school's settings (checked by the caller). `NotFound` for an unknown school.
    async fn set_school_settings(
        &self,
        school_id: &str,
        settings: &SchoolSettings,
    ) -> Result<(), StoreError>;
    /// The accounts of a school, by username.
    async fn users(&self, school_id: &str) -> Result<Vec<User>, StoreError>;
    /// Replaces the password of a user of `school_id` and ends every session of theirs, in one
    /// transaction: whoever held the old password is signed out. `NotFound` for a user of
    /// another school or none.
    async fn set_password(
        &self,
        school_id: &str,
        user_id: &str,
        password_hash: &str,
    ) -> Result<(), StoreError>;
    async fn create_auth_session(&self, session: &AuthSession) -> Result<(), StoreError>;
    /// The user of an unexpired session.
    async fn user_by_session(
        &self,
        token_hash: &str,
        now: Millis,
    ) -> Result<Option<User>, StoreError>;
    async fn delete_auth_session(&self, token_hash: &str) -> Result<(), StoreError>;
    /// Sections a teacher teaches (active teacher enrolments).
    async fn sections_of_teacher(
        &self,
        school_id: &str,
        teacher_id: &str,
    ) -> Result<Vec<String>, StoreError>;

    // Devices.
    async fn create_provisioning_code(&self, code: &ProvisioningCode) -> Result<(), StoreError>;
    /// Trades a code for `device` (whose `school_id` is taken from the code) atomically: of two
    /// boxes racing with one code, exactly one gets a device.
    async fn redeem_provisioning_code(
        &self,
        code_hash: &str,
        device: &Device,
        now: Millis,
    ) -> Result<Result<Device, RedeemRefusal>, StoreError> {
        let operation = Operation::Redeem {
            code_hash: code_hash.to_owned(),
            device: device.clone(),
            now,
        };
        match self.transact(operation).await? {
            Done::Redeem(done) => Ok(done),
            _ => Err(Done::mismatch("a redemption")),
        }
    }

    /// The device holding this token, revoked or not (the caller tells the two apart).
    async fn device_by_token(&self, token_hash: &str) -> Result<Option<Device>, StoreError>;
    async fn devices(&self, school_id: &str) -> Result<Vec<Device>, StoreError>;
    /// `NotFound` when no such device in that school.
    async fn revoke_device(
        &self,
        school_id: &str,
        device_id: &str,
        now: Millis,
    ) -> Result<(), StoreError>;
    /// Records a box's call: when it was seen, pushed or pulled, what it reported, and how far it
    /// has applied the feed (`DeviceActivity::acked_seq` never moves back).
    async fn device_seen(
        &self,
        device_id: &str,
        seen: &Seen,
        now: Millis,
    ) -> Result<(), StoreError>;
    /// The school's erasures in the feed after `seq` (their seq and student), in order: what a box
    /// that has applied the feed up to `seq` has yet to purge.
    async fn erasures_since(
        &self,
        school_id: &str,
        seq: u64,
    ) -> Result<Vec<(u64, String)>, StoreError>;

    // Roster. Every write here also writes the matching change-feed rows.
    /// Applies `batch` as `shared_proto::roster` means it: the last row of an id wins, rows that
    /// change nothing write nothing, and with `full` (a OneRoster export) every section, student,
    /// teacher and enrolment the school holds and the batch does not name becomes inactive. A new
    /// id another school holds is `Conflict`; an enrolment in a section the school neither holds
    /// nor gets from the batch is `NotFound`. One transaction; consent is never changed.
    async fn apply_roster(
        &self,
        school_id: &str,
        batch: &RosterBatch,
        full: bool,
    ) -> Result<RosterSummary, StoreError> {
        let operation = Operation::Roster {
            school_id: school_id.to_owned(),
            batch: batch.clone(),
            full,
        };
        match self.transact(operation).await? {
            Done::Roster(summary) => Ok(summary),
            _ => Err(Done::mismatch("a roster batch")),
        }
    }

    /// Every section, student, teacher and enrolment the school holds, inactive ones too: what
    /// `apply_roster` compares a batch with, so that a page can preview an upload.
    async fn roster(&self, school_id: &str) -> Result<RosterBatch, StoreError>;
    async fn sections(&self, school_id: &str) -> Result<Vec<Section>, StoreError>;
    async fn students(&self, school_id: &str) -> Result<Vec<Student>, StoreError>;
    async fn student(
        &self,
        school_id: &str,
        student_id: &str,
    ) -> Result<Option<Student>, StoreError>;
    async fn enrolments(
        &self,
        school_id: &str,
        section_id: &str,
    ) -> Result<Vec<Enrolment>, StoreError>;
    /// Replaces a section's timetable. `NotFound` for an unknown section.
    async fn set_schedule(
        &self,
        school_id: &str,
        section_id: &str,
        slots: &[ScheduleSlot],
    ) -> Result<(), StoreError>;
    async fn schedule(
        &self,
        school_id: &str,
        section_id: &str,
    ) -> Result<Vec<ScheduleSlot>, StoreError>;
    /// Every section's timetable of the school, in one read: (section, slots), sections without
    /// slots left out.
    async fn timetable(
        &self,
        school_id: &str,
    ) -> Result<Vec<(String, Vec<ScheduleSlot>)>, StoreError>;
    /// Records consent; a withdrawal tombstones every template of the student. `NotFound` for an
    /// unknown student. A decision older than the one held (`at` < `consent_at`) changes nothing.
    async fn set_consent(
        &self,
        school_id: &str,
        student_id: &str,
        consent: Consent,
        by: &str,
        at: Millis,
    ) -> Result<(), StoreError> {
        let operation = Operation::Consent {
            school_id: school_id.to_owned(),
            student_id: student_id.to_owned(),
            consent,
            by: by.to_owned(),
            at,
        };
        match self.transact(operation).await? {
            Done::Consent => Ok(()),
            _ => Err(Done::mismatch("a consent")),
        }
    }

    /// Sets marks decided on the dashboard (`domain::correction`): each with its feed change and
    /// audit line, all in one transaction, or nothing when the request is refused.
    async fn correct_marks(
        &self,
        school_id: &str,
        corrections: &[Correction],
        decision: &Decision,
    ) -> Result<Result<CorrectionOutcome, CorrectionRefusal>, StoreError> {
        let operation = Operation::Correct {
            school_id: school_id.to_owned(),
            corrections: corrections.to_vec(),
            decision: decision.clone(),
        };
        match self.transact(operation).await? {
            Done::Correct(done) => Ok(done),
            _ => Err(Done::mismatch("a correction")),
        }
    }

    /// Books a trip (`domain::excusal::book`) and excuses at once the marks of the lessons it
    /// covers that were held already (`held`), with its audit line, in one transaction; nothing
    /// when it is refused.
    async fn book_excusal(
        &self,
        trip: &Excusal,
        held: &[Correction],
        tz: &TimeZone,
    ) -> Result<Result<CorrectionOutcome, BookingRefusal>, StoreError> {
        let operation = Operation::BookTrip {
            trip: trip.clone(),
            held: held.to_vec(),
            tz: tz.clone(),
        };
        match self.transact(operation).await? {
            Done::BookTrip(done) => Ok(done),
            _ => Err(Done::mismatch("a booking")),
        }
    }

    /// A section's booked trips, by first day.
    async fn excusals(&self, school_id: &str, section_id: &str)
    -> Result<Vec<Excusal>, StoreError>;
    /// Cancels a trip of the school (`domain::excusal::cancel`), with its audit line; `None` when
    /// the school has none by that id.
    async fn cancel_excusal(
        &self,
        school_id: &str,
        id: &str,
        by: &str,
        at: Millis,
        tz: &TimeZone,
    ) -> Result<Option<Excusal>, StoreError> {
        let operation = Operation::CancelTrip {
            school_id: school_id.to_owned(),
            id: id.to_owned(),
            by: by.to_owned(),
            at,
            tz: tz.clone(),
        };
        match self.transact(operation).await? {
            Done::CancelTrip(trip) => Ok(trip),
            _ => Err(Done::mismatch("a cancellation")),
        }
    }

    /// A student's guardians (`domain::guardian`), by family and given name, each with all their
    /// children in the school.
    async fn guardians_of(
        &self,
        school_id: &str,
        student_id: &str,
    ) -> Result<Vec<Guardian>, StoreError>;
    /// Links a contact to a student of the school (`domain::guardian::link`: checked first; an
    /// address the school holds links its contact), with its audit line, in one transaction.
    async fn link_guardian(
        &self,
        school_id: &str,
        student_id: &str,
        contact: &Contact,
        by: &str,
        at: Millis,
    ) -> Result<Result<Linked, GuardianRefusal>, StoreError> {
        let operation = Operation::LinkGuardian {
            school_id: school_id.to_owned(),
            student_id: student_id.to_owned(),
            contact: contact.clone(),
            by: by.to_owned(),
            at,
        };
        match self.transact(operation).await? {
            Done::LinkGuardian(done) => Ok(done),
            _ => Err(Done::mismatch("a link")),
        }
    }

    /// Unlinks a guardian from a student (`domain::guardian::unlink`: a contact left with no child
    /// is deleted), with its audit line, in one transaction.
    async fn unlink_guardian(
        &self,
        school_id: &str,
        student_id: &str,
        guardian_id: &str,
        by: &str,
        at: Millis,
    ) -> Result<Result<(), GuardianRefusal>, StoreError> {
        let operation = Operation::UnlinkGuardian {
            school_id: school_id.to_owned(),
            student_id: student_id.to_owned(),
            guardian_id: guardian_id.to_owned(),
            by: by.to_owned(),
            at,
        };
        match self.transact(operation).await? {
            Done::UnlinkGuardian(done) => Ok(done),
            _ => Err(Done::mismatch("an unlink")),
        }
    }

    /// Every contact of the school, each with their children, by family and given name.
    async fn guardians(&self, school_id: &str) -> Result<Vec<Guardian>, StoreError>;
    async fn guardian(&self, school_id: &str, id: &str) -> Result<Option<Guardian>, StoreError>;
    /// Records that a contact unsubscribed from notices (the first time is kept); `false` for a
    /// contact the school does not hold.
    async fn opt_out_guardian(
        &self,
        school_id: &str,
        guardian_id: &str,
        at: Millis,
    ) -> Result<bool, StoreError>;

    // Notices (`domain::notice`, `notify`).
    /// Enqueues notices; one whose `key` is held already is skipped. Returns how many were new.
    async fn enqueue_notices(&self, notices: &[Notice]) -> Result<usize, StoreError>;
    /// Leases the notices `claim` may take (`domain::notice::Claim`), each to one claim only,
    /// counting a try on each; the earliest due first.
    async fn claim_notices(&self, claim: &Claim) -> Result<Vec<Notice>, StoreError>;
    /// Sets a try's outcome on a notice still leased to `owner`; `false` when the lease was lost.
    async fn finish_notice(
        &self,
        id: &str,
        owner: &str,
        finish: &Finish,
    ) -> Result<bool, StoreError>;
    /// Queues a failed notice of the school again (`domain::notice::resend`); `false` when it is
    /// not a failed notice of the school.
    async fn resend_notice(
        &self,
        school_id: &str,
        id: &str,
        finish: &Finish,
    ) -> Result<bool, StoreError>;
    /// A school's notices, newest first.
    async fn notices(&self, query: &NoticeQuery) -> Result<Vec<Notice>, StoreError>;
    /// One notice of the school, by id; `None` when the school has no such notice.
    async fn notice(&self, school_id: &str, id: &str) -> Result<Option<Notice>, StoreError>;
    /// How many notices of the school are in each state.
    async fn notice_counts(&self, school_id: &str) -> Result<Vec<(NoticeState, u64)>, StoreError>;
    /// The key that signs unsubscribe links: the one held, or `fresh` if none is (then held).
    /// Every server process on one database signs alike.
    async fn notice_secret(&self, fresh: &str) -> Result<String, StoreError>;
    /// Appends to the audit log an action that is not a decision of the domain layer (a sign-in,
    /// a revocation); decisions write their own lines in their transaction.
    async fn append_audit(&self, entry: &AuditEntry) -> Result<(), StoreError>;
    /// A school's audit log, newest first.
    async fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError>;
    /// Erasure: the student's record, templates and marks are deleted; the feed gets a
    /// `StudentErased` tombstone and one `TemplateDeleted` per template.
    async fn erase_student(&self, school_id: &str, student_id: &str) -> Result<(), StoreError> {
        let operation = Operation::Erase {
            school_id: school_id.to_owned(),
            student_id: student_id.to_owned(),
        };
        match self.transact(operation).await? {
            Done::Erase => Ok(()),
            _ => Err(Done::mismatch("an erasure")),
        }
    }

    /// Live (not tombstoned) templates of the school, as `read` says, oldest first.
    async fn templates_of(
        &self,
        school_id: &str,
        read: TemplateRead,
    ) -> Result<Vec<Template>, StoreError>;
    /// The id and embedding space of each of the school's live templates, without vectors: what
    /// a bulk enrolment checks the gallery the ML service keeps against, on every call.
    async fn live_template_ids(
        &self,
        school_id: &str,
    ) -> Result<Vec<(String, shared_proto::EmbeddingSpace)>, StoreError>;

    /// Keeps `crop` with the school's live template `template_id`; false when it holds no such
    /// live template (tombstoned or erased meanwhile: the crop is not kept).
    async fn keep_crop(
        &self,
        school_id: &str,
        template_id: &str,
        crop: &[u8],
    ) -> Result<bool, StoreError>;
    /// The crops kept with the school's live templates, oldest template first, as `read` says.
    /// A tombstone and an erasure delete them.
    async fn kept_crops(
        &self,
        school_id: &str,
        read: CropRead<'_>,
    ) -> Result<Vec<KeptCrop>, StoreError>;
    /// Deletes every crop the school keeps (the setting switched off); how many.
    async fn drop_crops(&self, school_id: &str) -> Result<u64, StoreError>;

    // Sync.
    /// Applies a push from `device` in one transaction: each event is acked (now or earlier) or
    /// rejected with a `RejectCode` (see `rules`); rejected events are not recorded, so a retry
    /// after the roster arrives can succeed.
    async fn apply_events(
        &self,
        device: &Device,
        events: &[Event],
        now: Millis,
    ) -> Result<Outcome, StoreError> {
        let operation = Operation::Push {
            device: device.clone(),
            events: events.to_vec(),
            now,
        };
        match self.transact(operation).await? {
            Done::Push(outcome) => Ok(outcome),
            _ => Err(Done::mismatch("a push")),
        }
    }

    /// Changes of `school_id` with `seq > cursor`, in `seq` order, at most `limit`.
    async fn pull(
        &self,
        school_id: &str,
        cursor: u64,
        limit: usize,
    ) -> Result<ChangePage, StoreError>;

    // Attendance.
    async fn attendance(&self, query: &AttendanceQuery) -> Result<Vec<AttendanceRow>, StoreError>;
    /// The latest session of each section of the school that started in `[from, to)`: (section,
    /// session, start), by section.
    async fn latest_sessions(
        &self,
        school_id: &str,
        from: Millis,
        to: Millis,
    ) -> Result<Vec<(String, String, Millis)>, StoreError>;
    /// A school's marks of sessions that started in `[from, to)`, counted per hour of the session's
    /// start (the hour's first millisecond) and status: what a trend over weeks needs, without
    /// reading every mark into the server.
    async fn counts_by_hour(
        &self,
        school_id: &str,
        from: Millis,
        to: Millis,
    ) -> Result<Vec<(Millis, MarkStatus, u64)>, StoreError>;
    /// The marks of `query` counted per section, student and status, and the sessions that started
    /// in its range per section (`query.student_id` is not used): what a report's summary sums,
    /// without reading every mark into the server. Marks whose session has not arrived count
    /// under no section, as `attendance` returns them.
    async fn tally(&self, query: &AttendanceQuery) -> Result<Tally, StoreError>;
    /// A school's marks of sessions that started in `[from, to)` and that the machine decided (a
    /// machine's mark, or a person's that replaced one), counted per section, box, machine
    /// decision, status held and its source (`MachineDecisions::merged`'s order): what the
    /// recognition self-audit (`domain::recognition`) reads, one school week at a time.
    async fn machine_decisions(
        &self,
        school_id: &str,
        from: Millis,
        to: Millis,
    ) -> Result<Vec<MachineDecisions>, StoreError>;
    async fn counts(&self) -> Result<StoreCounts, StoreError>;
}
