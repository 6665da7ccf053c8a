//! Sections, students, teachers, enrolments, schedules and consent: what the server owns and every
//! box of the school mirrors. Each write here writes its changes in the same transaction.

use mongodb::bson::{Document, doc};
use shared_proto::roster::{RecordDiff, RecordKey, RosterDiff, RosterRecord, Update};
use shared_proto::sync::{EnrolmentRole, ScheduleSlot};

use super::docs::{EnrolmentDoc, SectionDoc, StudentDoc, TeacherDoc, to_document};
use super::error::DbError;
use super::names::*;
use super::tx::Tx;
use super::{MongoStore, collect};
use crate::domain::feed::Change;
use crate::store::transaction;
use crate::store::{Enrolment, RosterBatch, Section, StoreError, Student, Teacher};

/// A roster kind as its collection stores it.
trait Kind: RosterRecord + Send + Sync {
    const COLLECTION: &'static str;
    type Doc: serde::Serialize + Send + Sync;
    fn to_doc(&self, school_id: &str) -> Self::Doc;
    /// What an update writes: the roster's fields (a student keeps their consent).
    fn fields(&self) -> Document;
}

impl Kind for Section {
    const COLLECTION: &'static str = SECTIONS;
    type Doc = SectionDoc;
    fn to_doc(&self, school_id: &str) -> SectionDoc {
        SectionDoc::from_section(school_id, self)
    }
    fn fields(&self) -> Document {
        doc! { "title": &self.title, "active": self.active }
    }
}

impl Kind for Student {
    const COLLECTION: &'static str = STUDENTS;
    type Doc = StudentDoc;
    fn to_doc(&self, school_id: &str) -> StudentDoc {
        StudentDoc::from_student(school_id, self)
    }
    fn fields(&self) -> Document {
        doc! {
            "given_name": &self.given_name,
            "family_name": &self.family_name,
            "active": self.active,
        }
    }
}

impl Kind for Teacher {
    const COLLECTION: &'static str = TEACHERS;
    type Doc = TeacherDoc;
    fn to_doc(&self, school_id: &str) -> TeacherDoc {
        TeacherDoc::from_teacher(school_id, self)
    }
    fn fields(&self) -> Document {
        doc! {
            "given_name": &self.given_name,
            "family_name": &self.family_name,
            "active": self.active,
        }
    }
}

impl Kind for Enrolment {
    const COLLECTION: &'static str = ENROLMENTS;
    type Doc = EnrolmentDoc;
    fn to_doc(&self, school_id: &str) -> EnrolmentDoc {
        EnrolmentDoc::from_enrolment(school_id, self)
    }
    fn fields(&self) -> Document {
        doc! { "role": self.role.as_str(), "active": self.active }
    }
}

/// The document of one record.
fn key_filter(key: RecordKey<'_>) -> Document {
    match key {
        RecordKey::Id(id) => doc! { "_id": id },
        RecordKey::Enrolment {
            section_id,
            person_id,
        } => doc! { "section_id": section_id, "person_id": person_id },
    }
}

/// The documents of `records`: one `$in` on `_id` where they have ids.
fn any_of<T: RosterRecord>(records: &[&T]) -> Document {
    let ids: Option<Vec<&str>> = records
        .iter()
        .map(|r| match r.key() {
            RecordKey::Id(id) => Some(id),
            RecordKey::Enrolment { .. } => None,
        })
        .collect();
    match ids {
        Some(ids) => doc! { "_id": { "$in": ids } },
        None => doc! { "$or": records.iter().map(|r| key_filter(r.key())).collect::<Vec<_>>() },
    }
}

/// The first of `ids` another school holds, if any: one query.
pub async fn held_elsewhere(
    tx: &mut Tx<'_>,
    kind: transaction::Kind,
    school_id: &str,
    ids: &[&str],
) -> Result<Option<String>, DbError> {
    let collection = match kind {
        transaction::Kind::Section => SECTIONS,
        transaction::Kind::Student => STUDENTS,
        transaction::Kind::Teacher => TEACHERS,
    };
    let taken = tx
        .coll::<Document>(collection)
        .find_one(doc! { "_id": { "$in": ids }, "school_id": { "$ne": school_id } })
        .projection(doc! { "_id": 1 })
        .session(&mut tx.session)
        .await?;
    Ok(taken.map(|d| d.get_str("_id").unwrap_or_default().to_owned()))
}

/// Writes one kind's diff: new records in one insert, each update, the left out in one update.
async fn write_kind<T: Kind>(
    tx: &mut Tx<'_>,
    school_id: &str,
    diff: &RecordDiff<'_, T>,
) -> Result<(), DbError> {
    if !diff.inserts.is_empty() {
        let docs: Vec<T::Doc> = diff.inserts.iter().map(|r| r.to_doc(school_id)).collect();
        tx.coll::<T::Doc>(T::COLLECTION)
            .insert_many(docs)
            .session(&mut tx.session)
            .await?;
    }
    for Update { wanted, .. } in &diff.updates {
        tx.coll::<Document>(T::COLLECTION)
            .update_one(key_filter(wanted.key()), doc! { "$set": wanted.fields() })
            .session(&mut tx.session)
            .await?;
    }
    if !diff.deactivations.is_empty() {
        tx.coll::<Document>(T::COLLECTION)
            .update_many(
                any_of(&diff.deactivations),
                doc! { "$set": { "active": false } },
            )
            .session(&mut tx.session)
            .await?;
    }
    Ok(())
}

/// Everything the school holds, one query per kind, as the storage types the diff compares.
pub(super) async fn held_roster(tx: &mut Tx<'_>, school_id: &str) -> Result<RosterBatch, DbError> {
    let of_school = || doc! { "school_id": school_id };
    let by_id = || doc! { "_id": 1 };
    let by_key = doc! { "section_id": 1, "person_id": 1 };
    let sections: Vec<SectionDoc> = tx.find_all(SECTIONS, of_school(), by_id()).await?;
    let students: Vec<StudentDoc> = tx.find_all(STUDENTS, of_school(), by_id()).await?;
    let teachers: Vec<TeacherDoc> = tx.find_all(TEACHERS, of_school(), by_id()).await?;
    let enrolments: Vec<EnrolmentDoc> = tx.find_all(ENROLMENTS, of_school(), by_key).await?;
    Ok(RosterBatch {
        sections: sections.into_iter().map(SectionDoc::into_section).collect(),
        students: students.into_iter().map(StudentDoc::into_student).collect(),
        teachers: teachers.into_iter().map(TeacherDoc::into_teacher).collect(),
        enrolments: enrolments
            .into_iter()
            .map(EnrolmentDoc::into_enrolment)
            .collect(),
    })
}

/// Writes each record a roster diff names (`store::transaction::apply_roster`): new ones in one
/// insert and the left out in one update per kind.
pub async fn write_roster(
    tx: &mut Tx<'_>,
    school_id: &str,
    diff: &RosterDiff<'_, RosterBatch>,
) -> Result<(), DbError> {
    write_kind(tx, school_id, &diff.sections).await?;
    write_kind(tx, school_id, &diff.students).await?;
    write_kind(tx, school_id, &diff.teachers).await?;
    write_kind(tx, school_id, &diff.enrolments).await
}

pub async fn enrolments(
    store: &MongoStore,
    school_id: &str,
    section_id: &str,
) -> Result<Vec<Enrolment>, DbError> {
    let cursor = store
        .coll::<EnrolmentDoc>(ENROLMENTS)
        .find(doc! { "school_id": school_id, "section_id": section_id })
        .sort(doc! { "person_id": 1 })
        .await?;
    Ok(collect(cursor)
        .await?
        .into_iter()
        .map(EnrolmentDoc::into_enrolment)
        .collect())
}

pub async fn sections_of_teacher(
    store: &MongoStore,
    school_id: &str,
    teacher_id: &str,
) -> Result<Vec<String>, DbError> {
    let cursor = store
        .coll::<EnrolmentDoc>(ENROLMENTS)
        .find(doc! {
            "school_id": school_id,
            "person_id": teacher_id,
            "role": shared_proto::sync::EnrolmentRole::Teacher.as_str(),
            "active": true,
        })
        .sort(doc! { "section_id": 1 })
        .await?;
    Ok(collect(cursor)
        .await?
        .into_iter()
        .map(|e| e.section_id)
        .collect())
}

pub async fn set_schedule(
    tx: &mut Tx<'_>,
    school_id: &str,
    section_id: &str,
    slots: &[ScheduleSlot],
) -> Result<(), DbError> {
    let slots_bson = slots
        .iter()
        .map(to_document)
        .collect::<Result<Vec<Document>, StoreError>>()?;
    let updated = tx
        .coll::<Document>(SECTIONS)
        .update_one(
            doc! { "_id": section_id, "school_id": school_id },
            doc! { "$set": { "schedule": slots_bson } },
        )
        .session(&mut tx.session)
        .await?;
    if updated.matched_count == 0 {
        return Err(StoreError::NotFound(format!("section {section_id}")).into());
    }
    tx.feed(Change::Schedule {
        section: section_id.to_owned(),
        slots: slots.to_vec(),
    })
}

/// The sections a student is actively enrolled in, with the role (erasure ends each).
pub async fn enrolled_in(
    tx: &mut Tx<'_>,
    student_id: &str,
) -> Result<Vec<(String, EnrolmentRole)>, DbError> {
    let held: Vec<EnrolmentDoc> = tx
        .find_all(
            ENROLMENTS,
            doc! { "person_id": student_id, "active": true },
            doc! { "section_id": 1 },
        )
        .await?;
    Ok(held.into_iter().map(|e| (e.section_id, e.role)).collect())
}
