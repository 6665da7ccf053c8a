//! A roster batch as both backends apply it: the storage types mapped onto
//! `shared_proto::roster`'s diff, which decides what a batch changes, and the change each written
//! record puts in the feed. The backends only read what the school holds and write what the diff
//! says.

use shared_proto::roster::{
    ImportScope, RecordDiff, RecordKey, RosterCounts, RosterDiff, RosterDiffError, RosterRecord,
    RosterRecords,
};

use super::{Enrolment, RosterBatch, RosterSummary, Section, StoreError, Student, Teacher};
use crate::domain::Write;
use crate::domain::feed::Change;

/// `Store::apply_roster`'s `full` as the diff's scope.
pub fn scope(full: bool) -> ImportScope {
    if full {
        ImportScope::Full
    } else {
        ImportScope::Partial
    }
}

impl From<RosterCounts> for RosterSummary {
    fn from(counts: RosterCounts) -> Self {
        RosterSummary {
            sections: counts.sections,
            students: counts.students,
            teachers: counts.teachers,
            enrolments: counts.enrolments,
            deactivated: counts.deactivated,
        }
    }
}

impl From<RosterDiffError> for StoreError {
    fn from(error: RosterDiffError) -> Self {
        match error {
            RosterDiffError::UnknownSection {
                section_id,
                person_id,
            } => StoreError::NotFound(format!("section {section_id} (enrolment of {person_id})")),
        }
    }
}

impl RosterRecords for RosterBatch {
    type Section = Section;
    type Student = Student;
    type Teacher = Teacher;
    type Enrolment = Enrolment;
    fn sections(&self) -> &[Section] {
        &self.sections
    }
    fn students(&self) -> &[Student] {
        &self.students
    }
    fn teachers(&self) -> &[Teacher] {
        &self.teachers
    }
    fn enrolments(&self) -> &[Enrolment] {
        &self.enrolments
    }
}

/// Consent is not a roster's: it is neither compared nor written by an update.
impl RosterRecord for Student {
    fn key(&self) -> RecordKey<'_> {
        RecordKey::Id(&self.id)
    }
    fn is_active(&self) -> bool {
        self.active
    }
    fn same_roster_fields(&self, other: &Self) -> bool {
        (&self.given_name, &self.family_name, self.active)
            == (&other.given_name, &other.family_name, other.active)
    }
}

impl RosterRecord for Teacher {
    fn key(&self) -> RecordKey<'_> {
        RecordKey::Id(&self.id)
    }
    fn is_active(&self) -> bool {
        self.active
    }
    fn same_roster_fields(&self, other: &Self) -> bool {
        (&self.given_name, &self.family_name, self.active)
            == (&other.given_name, &other.family_name, other.active)
    }
}

/// A roster record as a backend stores it, and the change a box learns it by.
pub trait Stored: Clone {
    fn change(&self) -> Change;
    fn inactive(&self) -> Self;
    /// The held record once an update to `wanted` is written: by default `wanted` whole, since
    /// all its fields are the roster's.
    fn updated(_held: &Self, wanted: &Self) -> Self {
        wanted.clone()
    }
}

/// The change of every record a batch writes, kind by kind, as writes for the feed.
pub fn changes(diff: &RosterDiff<'_, RosterBatch>) -> Vec<Write<'static>> {
    fn of<T: Stored>(diff: &RecordDiff<'_, T>) -> impl Iterator<Item = Write<'static>> {
        written(diff).into_iter().map(|r| Write::Change(r.change()))
    }
    of(&diff.sections)
        .chain(of(&diff.students))
        .chain(of(&diff.teachers))
        .chain(of(&diff.enrolments))
        .collect()
}

/// Every record one kind's diff writes, as it is stored afterwards: inserts, updates, then
/// deactivations. Each is one change-feed entry.
pub fn written<T: Stored>(diff: &RecordDiff<'_, T>) -> Vec<T> {
    let inserts = diff.inserts.iter().map(|row| (*row).clone());
    let updates = diff.updates.iter().map(|u| T::updated(u.held, u.wanted));
    let deactivations = diff.deactivations.iter().map(|held| held.inactive());
    inserts.chain(updates).chain(deactivations).collect()
}

impl Stored for Section {
    fn change(&self) -> Change {
        Change::Section {
            id: self.id.clone(),
            title: self.title.clone(),
            active: self.active,
        }
    }
    fn inactive(&self) -> Self {
        Section {
            active: false,
            ..self.clone()
        }
    }
}

/// An update writes the roster's fields and keeps the consent recorded for the student.
impl Stored for Student {
    fn change(&self) -> Change {
        Change::Student {
            id: self.id.clone(),
            given_name: self.given_name.clone(),
            family_name: self.family_name.clone(),
            active: self.active,
            consent: self.consent,
        }
    }
    fn inactive(&self) -> Self {
        Student {
            active: false,
            ..self.clone()
        }
    }
    fn updated(held: &Self, wanted: &Self) -> Self {
        Student {
            given_name: wanted.given_name.clone(),
            family_name: wanted.family_name.clone(),
            active: wanted.active,
            ..held.clone()
        }
    }
}

impl Stored for Teacher {
    fn change(&self) -> Change {
        Change::Teacher {
            id: self.id.clone(),
            given_name: self.given_name.clone(),
            family_name: self.family_name.clone(),
            active: self.active,
        }
    }
    fn inactive(&self) -> Self {
        Teacher {
            active: false,
            ..self.clone()
        }
    }
}

impl Stored for Enrolment {
    fn change(&self) -> Change {
        Change::Enrolment {
            section: self.section_id.clone(),
            person: self.person_id.clone(),
            role: self.role,
            active: self.active,
        }
    }
    fn inactive(&self) -> Self {
        Enrolment {
            active: false,
            ..self.clone()
        }
    }
}
