//! Sections, students, teachers, enrolments, schedules and consent: what the server owns and every
//! box of the school mirrors. Each write here writes its changes in the same transaction.

use mongodb::bson::{Document, doc};
use shared_proto::roster::{RosterDiff, Update, roster_diff};
use shared_proto::sync::ScheduleSlot;

use super::docs::{EnrolmentDoc, SectionDoc, StudentDoc, TeacherDoc, to_document};
use super::error::DbError;
use super::names::*;
use super::templates;
use super::tx::Tx;
use super::{MongoStore, collect};
use crate::domain::erasure;
use crate::domain::feed::Change;
use crate::store::roster::{self, Stored};
use crate::store::rules;
use crate::store::{Enrolment, RosterBatch, RosterSummary, StoreError};

/// Ids are global (OneRoster sourcedIds): one that another school holds is refused, never moved.
async fn refuse_other_schools(
    tx: &mut Tx<'_>,
    collection: &str,
    noun: &str,
    school_id: &str,
    ids: Vec<&str>,
) -> Result<(), DbError> {
    if ids.is_empty() {
        return Ok(());
    }
    let taken = tx
        .coll::<Document>(collection)
        .find_one(doc! { "_id": { "$in": ids }, "school_id": { "$ne": school_id } })
        .projection(doc! { "_id": 1 })
        .session(&mut tx.session)
        .await?;
    if let Some(taken) = taken {
        let id = taken.get_str("_id").unwrap_or_default();
        return Err(rules::id_taken(noun, id).into());
    }
    Ok(())
}

/// Everything the school holds, one query per kind, as the storage types the diff compares.
async fn held_roster(tx: &mut Tx<'_>, school_id: &str) -> Result<RosterBatch, DbError> {
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

/// Applies `batch` as `shared_proto::roster` decides: reads what the school holds, refuses ids
/// another school holds, and writes each record the diff names (new ones in one insert, the left
/// out in one update per kind) with its change.
pub async fn apply_roster(
    tx: &mut Tx<'_>,
    school_id: &str,
    batch: &RosterBatch,
    full: bool,
) -> Result<RosterSummary, DbError> {
    let school = tx
        .coll::<Document>(SCHOOLS)
        .find_one(doc! { "_id": school_id })
        .session(&mut tx.session)
        .await?;
    if school.is_none() {
        return Err(StoreError::NotFound(format!("school {school_id}")).into());
    }
    let held = held_roster(tx, school_id).await?;
    let diff = roster_diff(&held, batch, roster::scope(full)).map_err(StoreError::from)?;
    let RosterDiff {
        sections,
        students,
        teachers,
        enrolments,
    } = &diff;
    // Only a new id can be another school's: the school's own are in `held`.
    let new_ids = sections.inserts.iter().map(|s| s.id.as_str()).collect();
    refuse_other_schools(tx, SECTIONS, "section", school_id, new_ids).await?;
    let new_ids = students.inserts.iter().map(|s| s.id.as_str()).collect();
    refuse_other_schools(tx, STUDENTS, "student", school_id, new_ids).await?;
    let new_ids = teachers.inserts.iter().map(|t| t.id.as_str()).collect();
    refuse_other_schools(tx, TEACHERS, "teacher", school_id, new_ids).await?;

    let docs: Vec<SectionDoc> = sections
        .inserts
        .iter()
        .map(|s| SectionDoc::from_section(school_id, s))
        .collect();
    insert_all(tx, SECTIONS, &docs).await?;
    for Update { wanted, .. } in &sections.updates {
        let fields = doc! { "title": &wanted.title, "active": wanted.active };
        set_fields(tx, SECTIONS, doc! { "_id": &wanted.id }, fields).await?;
    }
    let gone: Vec<&str> = sections
        .deactivations
        .iter()
        .map(|s| s.id.as_str())
        .collect();
    deactivate(tx, SECTIONS, gone).await?;
    for section in roster::written(sections) {
        tx.feed(section.change())?;
    }

    let docs: Vec<StudentDoc> = students
        .inserts
        .iter()
        .map(|s| StudentDoc::from_student(school_id, s))
        .collect();
    insert_all(tx, STUDENTS, &docs).await?;
    for Update { wanted, .. } in &students.updates {
        let fields = doc! {
            "given_name": &wanted.given_name,
            "family_name": &wanted.family_name,
            "active": wanted.active,
        };
        set_fields(tx, STUDENTS, doc! { "_id": &wanted.id }, fields).await?;
    }
    let gone: Vec<&str> = students
        .deactivations
        .iter()
        .map(|s| s.id.as_str())
        .collect();
    deactivate(tx, STUDENTS, gone).await?;
    for student in roster::written(students) {
        tx.feed(student.change())?;
    }

    let docs: Vec<TeacherDoc> = teachers
        .inserts
        .iter()
        .map(|t| TeacherDoc::from_teacher(school_id, t))
        .collect();
    insert_all(tx, TEACHERS, &docs).await?;
    for Update { wanted, .. } in &teachers.updates {
        let fields = doc! {
            "given_name": &wanted.given_name,
            "family_name": &wanted.family_name,
            "active": wanted.active,
        };
        set_fields(tx, TEACHERS, doc! { "_id": &wanted.id }, fields).await?;
    }
    let gone: Vec<&str> = teachers
        .deactivations
        .iter()
        .map(|t| t.id.as_str())
        .collect();
    deactivate(tx, TEACHERS, gone).await?;
    for teacher in roster::written(teachers) {
        tx.feed(teacher.change())?;
    }

    let docs: Vec<EnrolmentDoc> = enrolments
        .inserts
        .iter()
        .map(|e| EnrolmentDoc::from_enrolment(school_id, e))
        .collect();
    insert_all(tx, ENROLMENTS, &docs).await?;
    for Update { wanted, .. } in &enrolments.updates {
        let key = doc! { "section_id": &wanted.section_id, "person_id": &wanted.person_id };
        let fields = doc! { "role": wanted.role.as_str(), "active": wanted.active };
        set_fields(tx, ENROLMENTS, key, fields).await?;
    }
    if !enrolments.deactivations.is_empty() {
        let gone: Vec<Document> = enrolments
            .deactivations
            .iter()
            .map(|e| doc! { "section_id": &e.section_id, "person_id": &e.person_id })
            .collect();
        tx.coll::<Document>(ENROLMENTS)
            .update_many(doc! { "$or": gone }, doc! { "$set": { "active": false } })
            .session(&mut tx.session)
            .await?;
    }
    for enrolment in roster::written(enrolments) {
        tx.feed(enrolment.change())?;
    }
    Ok(diff.counts().into())
}

async fn set_fields(
    tx: &mut Tx<'_>,
    collection: &str,
    filter: Document,
    fields: Document,
) -> Result<(), DbError> {
    tx.coll::<Document>(collection)
        .update_one(filter, doc! { "$set": fields })
        .session(&mut tx.session)
        .await?;
    Ok(())
}

async fn insert_all<T>(tx: &mut Tx<'_>, collection: &str, docs: &[T]) -> Result<(), DbError>
where
    T: serde::Serialize + Send + Sync,
{
    if docs.is_empty() {
        return Ok(());
    }
    tx.coll::<T>(collection)
        .insert_many(docs)
        .session(&mut tx.session)
        .await?;
    Ok(())
}

/// Sets `active` false on the documents of `ids`.
async fn deactivate(tx: &mut Tx<'_>, collection: &str, ids: Vec<&str>) -> Result<(), DbError> {
    if ids.is_empty() {
        return Ok(());
    }
    tx.coll::<Document>(collection)
        .update_many(
            doc! { "_id": { "$in": ids } },
            doc! { "$set": { "active": false } },
        )
        .session(&mut tx.session)
        .await?;
    Ok(())
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

pub async fn is_our_student(
    tx: &mut Tx<'_>,
    school_id: &str,
    student_id: &str,
) -> Result<bool, DbError> {
    Ok(tx
        .coll::<Document>(STUDENTS)
        .find_one(doc! { "_id": student_id, "school_id": school_id })
        .projection(doc! { "_id": 1 })
        .session(&mut tx.session)
        .await?
        .is_some())
}

/// Erasure, as `domain::erasure` decides it.
pub async fn erase_student(
    tx: &mut Tx<'_>,
    school_id: &str,
    student_id: &str,
) -> Result<(), DbError> {
    if !is_our_student(tx, school_id, student_id).await? {
        return Err(StoreError::NotFound(format!("student {student_id}")).into());
    }
    let held: Vec<EnrolmentDoc> = tx
        .find_all(
            ENROLMENTS,
            doc! { "person_id": student_id, "active": true },
            doc! { "section_id": 1 },
        )
        .await?;
    let enrolments = held.into_iter().map(|e| (e.section_id, e.role)).collect();
    let live = templates::live_ids(tx, student_id).await?;
    let writes = erasure::decide(student_id, live, enrolments);
    super::events::write(tx, school_id, &writes).await
}
