//! The change feed as the store keeps it: the latest state of each entity a box must learn about,
//! one row per school and key (`Change::key`). `api::codec` turns a row into the wire's `Change`.
//!
//! The serde form here is the storage form (a JSON text on SQLite, a document on MongoDB). It is
//! the same as protocol v1's `ChangeBody` today, so rows written before the split still read; a
//! later protocol changes the codec, and a change of this form needs a migration of stored rows.

use serde::{Deserialize, Serialize};
use shared_proto::sync::{Consent, EnrolmentRole, MarkSource, MarkStatus, ScheduleSlot};

use super::event::Template;
use crate::store::Millis;

/// One entry of a school's feed: its position and the change.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// Position in the school's feed; strictly increasing within a pull.
    pub seq: u64,
    pub change: Change,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Change {
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
    /// A section's whole timetable; replaces the one a box holds.
    Schedule {
        section: String,
        slots: Vec<ScheduleSlot>,
    },
    Template {
        template: Template,
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
    /// A mark decided on the dashboard (`domain::correction`), for the box of its session.
    Mark {
        session: String,
        student: String,
        status: MarkStatus,
        source: MarkSource,
        decided_at: Millis,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
        event: String,
    },
}

impl Change {
    /// The entity a change describes; a later change of the same key supersedes it in the feed.
    pub fn key(&self) -> String {
        match self {
            Change::Section { id, .. } => format!("section:{id}"),
            Change::Student { id, .. } | Change::StudentErased { student: id } => {
                format!("student:{id}")
            }
            Change::Teacher { id, .. } => format!("teacher:{id}"),
            Change::Enrolment {
                section, person, ..
            } => format!("enrolment:{section}:{person}"),
            Change::Schedule { section, .. } => format!("schedule:{section}"),
            Change::Template { template } => format!("template:{}", template.id),
            Change::TemplateDeleted { template, .. } => format!("template:{template}"),
            Change::Mark {
                session, student, ..
            } => format!("mark:{session}:{student}"),
        }
    }
}
