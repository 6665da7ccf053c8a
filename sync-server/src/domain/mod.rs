//! The server's decisions, written once for every store.
//!
//! A decision here is a pure function: it reads what the store holds about the records a request
//! names (`Facts`, which a backend looks up in one go, in its transaction), decides, and returns the
//! writes to make (`Write`, in order). A backend only looks things up and carries writes out; it
//! never decides whether an event applies, who wins a mark, what consent does to templates or what
//! the change feed says. So the embedded SQLite store and the MongoDB store cannot drift, and the
//! decisions are tested without a database (`push::tests`).
//!
//! Deciding on facts read before the first write is sound because each backend runs the look-up
//! and the writes in one transaction (SQLite: the single writer's savepoint; MongoDB: a snapshot
//! transaction, run again from the start on a conflict), and because a decision that depends on an
//! earlier write of the same request (a session opened and marked in one push) reads the planner's
//! own record of it, not the store's.

pub mod attendance;
pub mod audit;
pub mod consent;
pub mod correction;
pub mod device;
pub mod erasure;
pub mod event;
pub mod excusal;
pub mod feed;
pub mod guardian;
pub mod lessons;
pub mod notice;
pub mod provisioning;
pub mod push;
pub mod recognition;
pub mod roster;
pub mod settings;

use shared_proto::sync::{Consent, MarkSource, MarkStatus};

use self::event::Template;
use self::feed::Change;

use crate::store::Millis;

/// One write a decision asks the store to make, in its transaction, in the order given. A mark,
/// written by the hundred per push on the embedded store's single writer thread, borrows from the
/// pushed events instead of copying its ids (PERFORMANCE.md, issue 14).
#[derive(Clone, Debug, PartialEq)]
pub enum Write<'e> {
    /// A new session of the pushing device; marks of the same school that arrived before it are
    /// filed under it from now on.
    OpenSession {
        session: String,
        device: String,
        section: String,
        started_at: Millis,
    },
    /// Records the first close of a session; a later close changes nothing.
    CloseSession {
        session: String,
        at: Millis,
    },
    /// Inserts or replaces one student's mark in one session.
    SetMark(MarkWrite<'e>),
    /// Stores a new template (never one already held, live or tombstoned).
    AddTemplate(Template),
    /// Turns a template, held or not, into a tombstone: its vector is purged.
    Tombstone {
        template: String,
        student: String,
    },
    /// Records a consent decision on a held student.
    SetConsent {
        student: String,
        consent: Consent,
        by: String,
        at: Millis,
    },
    /// Deletes a student of the school with their templates (tombstones too), marks and
    /// enrolments.
    EraseStudent {
        student: String,
    },
    /// Upserts the row of the change's key in the school's change feed with a new seq.
    Change(Change),
    /// Appends a line to the audit log.
    Audit(audit::Entry),
    /// Stores a trip booked ahead (`excusal`).
    BookExcusal(&'e excusal::Excusal),
    /// Deletes a booked trip of the school; the marks it excused stay as they are.
    CancelExcusal {
        id: String,
    },
    /// Stores a new guardian contact (`guardian`), with no child yet.
    AddGuardian(guardian::Guardian),
    /// Makes a contact a guardian of a student (of the same school).
    LinkGuardian {
        guardian: String,
        student: String,
    },
    UnlinkGuardian {
        guardian: String,
        student: String,
    },
    /// Deletes a contact of the school (it has no child left).
    DeleteGuardian {
        id: String,
    },
}

impl Write<'_> {
    /// A template's tombstone and the feed entry that tells every box to purge it: the two go
    /// together wherever a template is deleted.
    pub fn tombstone(template: &str, student: &str) -> [Write<'static>; 2] {
        [
            Write::Tombstone {
                template: template.to_owned(),
                student: student.to_owned(),
            },
            Write::Change(Change::TemplateDeleted {
                template: template.to_owned(),
                student: student.to_owned(),
            }),
        ]
    }
}

/// A mark as it is stored, with the session it is filed under when that has arrived.
#[derive(Clone, Debug, PartialEq)]
pub struct MarkWrite<'e> {
    pub session: &'e str,
    pub student: &'e str,
    /// The box that sent it.
    pub device: &'e str,
    pub status: MarkStatus,
    pub source: MarkSource,
    pub score: Option<f32>,
    pub decided_at: Millis,
    pub decided_by: Option<&'e str>,
    /// The event that set it: `mark_wins` breaks ties on it.
    pub event_id: &'e str,
    /// The session's section and start, `None` while its `session_opened` has not arrived.
    pub filed_under: Option<(String, Millis)>,
    /// What the machine decided, kept through people's corrections (`HeldMark::machine_after`).
    pub machine: Option<MarkStatus>,
}
