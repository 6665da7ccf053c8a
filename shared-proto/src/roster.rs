//! What applying a roster means, decided once for the box and both server stores: the
//! `RosterDiff` between the records a store holds for a school and a roster batch (a validated
//! OneRoster import, or the admin API's rows). Pure: the stores read what they hold, ask the diff,
//! check the ids it would insert against other schools, and write what it says.
//!
//! The meaning, everywhere:
//! - Within a batch, the last row of an id wins (an enrolment's id is its section and person).
//! - A row that says what the store already holds writes nothing (and so no change-feed entry);
//!   a new id is inserted; a held id whose roster fields differ is updated, which reactivates an
//!   inactive row the batch names as active.
//! - A full import is the whole truth about the school: every held section, student, teacher and
//!   enrolment that the batch does not name and is still active is deactivated, never deleted
//!   (marks keep their students). A partial import only inserts and updates.
//! - An enrolment must name a section that is held or in the batch; anything else is refused.
//! - What a roster does not carry (a student's consent, a section's timetable) is not compared and
//!   never changed by it: `RosterRecord::same_roster_fields` compares only what a roster sets.

use std::collections::{HashMap, HashSet};
use std::hash::Hash;

use crate::oneroster::{Enrolment, Person, RosterImport, Section};

/// How much of the school a batch describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImportScope {
    /// A bulk export: what it leaves out is no longer the school's, and becomes inactive.
    Full,
    /// Some rows (an admin's edit): what it leaves out stays as it is.
    Partial,
}

/// What names a record: a sourcedId for a section, student or teacher; its section and person for
/// an enrolment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RecordKey<'a> {
    Id(&'a str),
    Enrolment {
        section_id: &'a str,
        person_id: &'a str,
    },
}

/// One kind of roster record as a store types it. Held records and batch rows are of the same
/// type, so each store maps its own types once.
pub trait RosterRecord {
    fn key(&self) -> RecordKey<'_>;
    fn is_active(&self) -> bool;
    /// Whether `self` and `other` (of the same key) agree on everything a roster sets: the title,
    /// the names, the role, active. Fields a roster does not own (consent) are left out, so they
    /// neither cause a write nor get overwritten by one.
    fn same_roster_fields(&self, other: &Self) -> bool;
}

/// An enrolment record: the diff checks that its section is one the school has.
pub trait EnrolmentRecord: RosterRecord {
    fn section_id(&self) -> &str;
    fn person_id(&self) -> &str;
}

/// A roster as one store types it: the records it holds for a school, or a batch to apply.
pub trait RosterRecords {
    type Section: RosterRecord;
    type Student: RosterRecord;
    type Teacher: RosterRecord;
    type Enrolment: EnrolmentRecord;
    fn sections(&self) -> &[Self::Section];
    fn students(&self) -> &[Self::Student];
    fn teachers(&self) -> &[Self::Teacher];
    fn enrolments(&self) -> &[Self::Enrolment];
}

/// A held record whose roster fields the batch changes.
#[derive(Debug, PartialEq, Eq)]
pub struct Update<'a, T> {
    pub held: &'a T,
    pub wanted: &'a T,
}

/// What to write for one kind of record. Inserts and updates come in the batch's order (of each
/// id's last row); deactivations in the order of the held records.
#[derive(Debug, PartialEq, Eq)]
pub struct RecordDiff<'a, T> {
    /// Batch rows whose id the school does not hold.
    pub inserts: Vec<&'a T>,
    /// Held records whose roster fields the batch changes.
    pub updates: Vec<Update<'a, T>>,
    /// Active held records a full batch leaves out: to be written with `active` false.
    pub deactivations: Vec<&'a T>,
    /// How many distinct ids the batch names.
    pub n_in_batch: usize,
}

impl<'a, T> RecordDiff<'a, T> {
    /// The batch rows to write as they are: the new ids, then the changed ones.
    pub fn upserts(&self) -> impl Iterator<Item = &'a T> + '_ {
        let changed = self.updates.iter().map(|update| update.wanted);
        self.inserts.iter().copied().chain(changed)
    }

    /// How many records this kind writes: each is one change-feed entry on the server.
    pub fn n_writes(&self) -> usize {
        self.inserts.len() + self.updates.len() + self.deactivations.len()
    }
}

/// Everything one roster batch changes in what a store holds for a school.
pub struct RosterDiff<'a, R: RosterRecords> {
    pub sections: RecordDiff<'a, R::Section>,
    pub students: RecordDiff<'a, R::Student>,
    pub teachers: RecordDiff<'a, R::Teacher>,
    pub enrolments: RecordDiff<'a, R::Enrolment>,
}

/// The counts an operator sees after an import.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RosterCounts {
    /// Distinct sections, students, teachers and enrolments the batch names.
    pub sections: usize,
    pub students: usize,
    pub teachers: usize,
    pub enrolments: usize,
    /// Active records of every kind that a full batch left out, now inactive.
    pub deactivated: usize,
}

impl<R: RosterRecords> RosterDiff<'_, R> {
    pub fn counts(&self) -> RosterCounts {
        RosterCounts {
            sections: self.sections.n_in_batch,
            students: self.students.n_in_batch,
            teachers: self.teachers.n_in_batch,
            enrolments: self.enrolments.n_in_batch,
            deactivated: self.sections.deactivations.len()
                + self.students.deactivations.len()
                + self.teachers.deactivations.len()
                + self.enrolments.deactivations.len(),
        }
    }

    /// How many records the batch writes: nothing when it says what is held.
    pub fn n_writes(&self) -> usize {
        self.sections.n_writes()
            + self.students.n_writes()
            + self.teachers.n_writes()
            + self.enrolments.n_writes()
    }
}

/// Why a batch cannot be applied; nothing of it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RosterDiffError {
    /// The section is neither held by the school nor in the batch (it may be another school's).
    #[error("section {section_id} (enrolment of {person_id}) is not one of the school's sections")]
    UnknownSection {
        section_id: String,
        person_id: String,
    },
}

/// The diff of `batch` against what the school `held`. Refused when an enrolment names a section
/// that is neither held nor in the batch.
pub fn roster_diff<'a, R: RosterRecords>(
    held: &'a R,
    batch: &'a R,
    scope: ImportScope,
) -> Result<RosterDiff<'a, R>, RosterDiffError> {
    let diff: RosterDiff<'a, R> = RosterDiff {
        sections: record_diff(held.sections(), batch.sections(), scope),
        students: record_diff(held.students(), batch.students(), scope),
        teachers: record_diff(held.teachers(), batch.teachers(), scope),
        enrolments: record_diff(held.enrolments(), batch.enrolments(), scope),
    };
    let sections: HashSet<RecordKey<'_>> = held
        .sections()
        .iter()
        .chain(batch.sections())
        .map(RosterRecord::key)
        .collect();
    let orphan = diff
        .enrolments
        .upserts()
        .find(|e| !sections.contains(&RecordKey::Id(e.section_id())));
    if let Some(orphan) = orphan {
        return Err(RosterDiffError::UnknownSection {
            section_id: orphan.section_id().to_owned(),
            person_id: orphan.person_id().to_owned(),
        });
    }
    Ok(diff)
}

fn record_diff<'a, T: RosterRecord>(
    held: &'a [T],
    batch: &'a [T],
    scope: ImportScope,
) -> RecordDiff<'a, T> {
    let held_by_key: HashMap<RecordKey<'a>, &'a T> = held.iter().map(|r| (r.key(), r)).collect();
    let wanted = last_of_each(batch);
    let mut diff = RecordDiff {
        inserts: Vec::new(),
        updates: Vec::new(),
        deactivations: Vec::new(),
        n_in_batch: wanted.len(),
    };
    for &row in &wanted {
        match held_by_key.get(&row.key()).copied() {
            None => diff.inserts.push(row),
            Some(held) if held.same_roster_fields(row) => {}
            Some(held) => diff.updates.push(Update { held, wanted: row }),
        }
    }
    if scope == ImportScope::Full {
        let named: HashSet<RecordKey<'a>> = wanted.iter().map(|r| r.key()).collect();
        diff.deactivations = held
            .iter()
            .filter(|r| r.is_active() && !named.contains(&r.key()))
            .collect();
    }
    diff
}

/// The last row of each key, in the order of those last rows: a batch that names a record twice
/// means its last row, as applying the rows one by one would, but writes it once.
fn last_of_each<T: RosterRecord>(rows: &[T]) -> Vec<&T> {
    let last: HashMap<RecordKey<'_>, usize> =
        rows.iter().enumerate().map(|(i, r)| (r.key(), i)).collect();
    rows.iter()
        .enumerate()
        .filter(|(i, r)| last.get(&r.key()) == Some(i))
        .map(|(_, r)| r)
        .collect()
}

// The box holds its roster as the import's own types.

impl RosterRecord for Section {
    fn key(&self) -> RecordKey<'_> {
        RecordKey::Id(&self.id)
    }
    fn is_active(&self) -> bool {
        self.active
    }
    fn same_roster_fields(&self, other: &Self) -> bool {
        (&self.title, &self.school_id, self.active)
            == (&other.title, &other.school_id, other.active)
    }
}

impl RosterRecord for Person {
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

impl RosterRecord for Enrolment {
    fn key(&self) -> RecordKey<'_> {
        RecordKey::Enrolment {
            section_id: &self.section_id,
            person_id: &self.person_id,
        }
    }
    fn is_active(&self) -> bool {
        self.active
    }
    fn same_roster_fields(&self, other: &Self) -> bool {
        (self.role, self.active) == (other.role, other.active)
    }
}

impl EnrolmentRecord for Enrolment {
    fn section_id(&self) -> &str {
        &self.section_id
    }
    fn person_id(&self) -> &str {
        &self.person_id
    }
}

impl RosterRecords for RosterImport {
    type Section = Section;
    type Student = Person;
    type Teacher = Person;
    type Enrolment = Enrolment;
    fn sections(&self) -> &[Section] {
        &self.sections
    }
    fn students(&self) -> &[Person] {
        &self.students
    }
    fn teachers(&self) -> &[Person] {
        &self.teachers
    }
    fn enrolments(&self) -> &[Enrolment] {
        &self.enrolments
    }
}

#[doc(hidden)]
pub mod cases;
#[cfg(test)]
mod tests;
