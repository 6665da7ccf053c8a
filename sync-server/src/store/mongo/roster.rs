//! Sections, students, teachers, enrolments, schedules and consent: what the server owns and every
//! box of the school mirrors. Each write here writes its changes in the same transaction.

use std::collections::{HashMap, HashSet};

use mongodb::bson::{Document, doc};
use shared_proto::sync::{ChangeBody, ScheduleSlot};

use super::docs::{EnrolmentDoc, SectionDoc, StudentDoc, TeacherDoc, to_document};
use super::error::DbError;
use super::names::*;
use super::templates;
use super::tx::Tx;
use super::{MongoStore, collect};
use crate::domain::erasure;
use crate::store::rules;
use crate::store::{Enrolment, RosterBatch, RosterSummary, Section, StoreError, Teacher};

/// The last occurrence of each id, in the order of those last occurrences: a batch that names an
/// entity twice means its last row, as applying the rows one by one would.
fn last_of_each<T>(rows: &[T], id: impl Fn(&T) -> String) -> Vec<&T> {
    let last: HashMap<String, usize> = rows.iter().enumerate().map(|(i, r)| (id(r), i)).collect();
    rows.iter()
        .enumerate()
        .filter(|(i, r)| last.get(&id(r)) == Some(i))
        .map(|(_, r)| r)
        .collect()
}

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
    let sections = last_of_each(&batch.sections, |s| s.id.clone());
    let students = last_of_each(&batch.students, |s| s.id.clone());
    let teachers = last_of_each(&batch.teachers, |t| t.id.clone());
    let enrolments = last_of_each(&batch.enrolments, |e| {
        format!("{}\u{0}{}", e.section_id, e.person_id)
    });
    let section_ids: Vec<&str> = sections.iter().map(|s| s.id.as_str()).collect();
    let student_ids: Vec<&str> = students.iter().map(|s| s.id.as_str()).collect();
    let teacher_ids: Vec<&str> = teachers.iter().map(|t| t.id.as_str()).collect();
    refuse_other_schools(tx, SECTIONS, "section", school_id, section_ids.clone()).await?;
    refuse_other_schools(tx, STUDENTS, "student", school_id, student_ids.clone()).await?;
    refuse_other_schools(tx, TEACHERS, "teacher", school_id, teacher_ids.clone()).await?;

    let mut held_sections: HashMap<String, SectionDoc> = tx
        .find_all::<SectionDoc>(SECTIONS, doc! { "school_id": school_id }, doc! { "_id": 1 })
        .await?
        .into_iter()
        .map(|s| (s.id.clone(), s))
        .collect();
    for section in &sections {
        upsert_section(tx, school_id, &mut held_sections, section).await?;
    }

    let mut held_students: HashMap<String, StudentDoc> = tx
        .find_all::<StudentDoc>(STUDENTS, doc! { "school_id": school_id }, doc! { "_id": 1 })
        .await?
        .into_iter()
        .map(|s| (s.id.clone(), s))
        .collect();
    let mut new_students = Vec::new();
    for student in &students {
        match held_students.get_mut(&student.id) {
            Some(held)
                if (&held.given_name, &held.family_name, held.active)
                    == (&student.given_name, &student.family_name, student.active) => {}
            // A roster carries names and enrolment, not consent: a held student keeps the
            // consent recorded for them; a new one starts with the batch's (normally none).
            Some(held) => {
                held.given_name = student.given_name.clone();
                held.family_name = student.family_name.clone();
                held.active = student.active;
                set_fields(
                    tx,
                    STUDENTS,
                    doc! { "_id": &student.id },
                    doc! {
                        "given_name": &student.given_name,
                        "family_name": &student.family_name,
                        "active": student.active,
                    },
                )
                .await?;
                tx.feed(student_change(held))?;
            }
            None => {
                let doc = StudentDoc::from_student(school_id, student);
                tx.feed(student_change(&doc))?;
                new_students.push(doc);
            }
        }
    }
    insert_all(tx, STUDENTS, &new_students).await?;
    held_students.extend(new_students.into_iter().map(|s| (s.id.clone(), s)));

    let mut held_teachers: HashMap<String, TeacherDoc> = tx
        .find_all::<TeacherDoc>(TEACHERS, doc! { "school_id": school_id }, doc! { "_id": 1 })
        .await?
        .into_iter()
        .map(|t| (t.id.clone(), t))
        .collect();
    for teacher in &teachers {
        upsert_teacher(tx, school_id, &mut held_teachers, teacher).await?;
    }

    for enrolment in &enrolments {
        if !held_sections.contains_key(&enrolment.section_id) {
            return Err(StoreError::NotFound(format!(
                "section {} (enrolment of {})",
                enrolment.section_id, enrolment.person_id
            ))
            .into());
        }
    }
    let mut held_enrolments: HashMap<(String, String), EnrolmentDoc> = tx
        .find_all::<EnrolmentDoc>(
            ENROLMENTS,
            doc! { "school_id": school_id },
            doc! { "section_id": 1, "person_id": 1 },
        )
        .await?
        .into_iter()
        .map(|e| ((e.section_id.clone(), e.person_id.clone()), e))
        .collect();
    for enrolment in &enrolments {
        upsert_enrolment(tx, school_id, &mut held_enrolments, enrolment).await?;
    }

    let deactivated = if full {
        let kept_sections: HashSet<&str> = section_ids.iter().copied().collect();
        let kept_students: HashSet<&str> = student_ids.iter().copied().collect();
        let kept_teachers: HashSet<&str> = teacher_ids.iter().copied().collect();
        let kept_enrolments: HashSet<(&str, &str)> = enrolments
            .iter()
            .map(|e| (e.section_id.as_str(), e.person_id.as_str()))
            .collect();
        let mut n_deactivated = 0;
        for section in held_sections.values_mut().filter(|s| s.active) {
            if !kept_sections.contains(section.id.as_str()) {
                section.active = false;
                tx.feed(section_change(section))?;
                n_deactivated += 1;
            }
        }
        for student in held_students.values_mut().filter(|s| s.active) {
            if !kept_students.contains(student.id.as_str()) {
                student.active = false;
                tx.feed(student_change(student))?;
                n_deactivated += 1;
            }
        }
        for teacher in held_teachers.values_mut().filter(|t| t.active) {
            if !kept_teachers.contains(teacher.id.as_str()) {
                teacher.active = false;
                tx.feed(teacher_change(teacher))?;
                n_deactivated += 1;
            }
        }
        let mut gone_enrolments = Vec::new();
        for enrolment in held_enrolments.values_mut().filter(|e| e.active) {
            let key = (enrolment.section_id.as_str(), enrolment.person_id.as_str());
            if !kept_enrolments.contains(&key) {
                enrolment.active = false;
                tx.feed(enrolment_change(enrolment))?;
                gone_enrolments.push(doc! {
                    "section_id": &enrolment.section_id,
                    "person_id": &enrolment.person_id,
                });
                n_deactivated += 1;
            }
        }
        let inactive = |kept: &HashSet<&str>, held: Vec<&String>| -> Vec<String> {
            held.into_iter()
                .filter(|id| !kept.contains(id.as_str()))
                .cloned()
                .collect()
        };
        let sections_off = inactive(&kept_sections, held_sections.keys().collect());
        let students_off = inactive(&kept_students, held_students.keys().collect());
        let teachers_off = inactive(&kept_teachers, held_teachers.keys().collect());
        deactivate(tx, SECTIONS, doc! { "_id": { "$in": sections_off } }).await?;
        deactivate(tx, STUDENTS, doc! { "_id": { "$in": students_off } }).await?;
        deactivate(tx, TEACHERS, doc! { "_id": { "$in": teachers_off } }).await?;
        if !gone_enrolments.is_empty() {
            deactivate(tx, ENROLMENTS, doc! { "$or": gone_enrolments }).await?;
        }
        n_deactivated
    } else {
        0
    };
    Ok(RosterSummary {
        sections: batch.sections.len(),
        students: batch.students.len(),
        teachers: batch.teachers.len(),
        enrolments: batch.enrolments.len(),
        deactivated,
    })
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

async fn deactivate(tx: &mut Tx<'_>, collection: &str, filter: Document) -> Result<(), DbError> {
    tx.coll::<Document>(collection)
        .update_many(filter, doc! { "$set": { "active": false } })
        .session(&mut tx.session)
        .await?;
    Ok(())
}

async fn upsert_section(
    tx: &mut Tx<'_>,
    school_id: &str,
    held: &mut HashMap<String, SectionDoc>,
    section: &Section,
) -> Result<(), DbError> {
    if let Some(h) = held.get(&section.id)
        && (&h.title, h.active) == (&section.title, section.active)
    {
        return Ok(());
    }
    tx.coll::<Document>(SECTIONS)
        .update_one(
            doc! { "_id": &section.id },
            doc! {
                "$set": { "title": &section.title, "active": section.active },
                "$setOnInsert": { "school_id": school_id, "schedule": [] },
            },
        )
        .upsert(true)
        .session(&mut tx.session)
        .await?;
    let doc = SectionDoc {
        id: section.id.clone(),
        school_id: school_id.to_owned(),
        title: section.title.clone(),
        active: section.active,
        schedule: Vec::new(),
    };
    tx.feed(section_change(&doc))?;
    held.insert(section.id.clone(), doc);
    Ok(())
}

async fn upsert_teacher(
    tx: &mut Tx<'_>,
    school_id: &str,
    held: &mut HashMap<String, TeacherDoc>,
    teacher: &Teacher,
) -> Result<(), DbError> {
    if let Some(h) = held.get(&teacher.id)
        && (&h.given_name, &h.family_name, h.active)
            == (&teacher.given_name, &teacher.family_name, teacher.active)
    {
        return Ok(());
    }
    tx.coll::<Document>(TEACHERS)
        .update_one(
            doc! { "_id": &teacher.id },
            doc! {
                "$set": {
                    "given_name": &teacher.given_name,
                    "family_name": &teacher.family_name,
                    "active": teacher.active,
                },
                "$setOnInsert": { "school_id": school_id },
            },
        )
        .upsert(true)
        .session(&mut tx.session)
        .await?;
    let doc = TeacherDoc {
        id: teacher.id.clone(),
        school_id: school_id.to_owned(),
        given_name: teacher.given_name.clone(),
        family_name: teacher.family_name.clone(),
        active: teacher.active,
    };
    tx.feed(teacher_change(&doc))?;
    held.insert(teacher.id.clone(), doc);
    Ok(())
}

async fn upsert_enrolment(
    tx: &mut Tx<'_>,
    school_id: &str,
    held: &mut HashMap<(String, String), EnrolmentDoc>,
    enrolment: &Enrolment,
) -> Result<(), DbError> {
    let key = (enrolment.section_id.clone(), enrolment.person_id.clone());
    if let Some(h) = held.get(&key)
        && (h.role, h.active) == (enrolment.role, enrolment.active)
    {
        return Ok(());
    }
    tx.coll::<Document>(ENROLMENTS)
        .update_one(
            doc! { "section_id": &enrolment.section_id, "person_id": &enrolment.person_id },
            doc! {
                "$set": {
                    "role": enrolment.role.as_str(),
                    "active": enrolment.active,
                    "school_id": school_id,
                },
            },
        )
        .upsert(true)
        .session(&mut tx.session)
        .await?;
    let doc = EnrolmentDoc {
        school_id: school_id.to_owned(),
        section_id: enrolment.section_id.clone(),
        person_id: enrolment.person_id.clone(),
        role: enrolment.role,
        active: enrolment.active,
    };
    tx.feed(enrolment_change(&doc))?;
    held.insert(key, doc);
    Ok(())
}

fn section_change(s: &SectionDoc) -> ChangeBody {
    ChangeBody::Section {
        id: s.id.clone(),
        title: s.title.clone(),
        active: s.active,
    }
}

fn student_change(s: &StudentDoc) -> ChangeBody {
    ChangeBody::Student {
        id: s.id.clone(),
        given_name: s.given_name.clone(),
        family_name: s.family_name.clone(),
        active: s.active,
        consent: s.consent,
    }
}

fn teacher_change(t: &TeacherDoc) -> ChangeBody {
    ChangeBody::Teacher {
        id: t.id.clone(),
        given_name: t.given_name.clone(),
        family_name: t.family_name.clone(),
        active: t.active,
    }
}

fn enrolment_change(e: &EnrolmentDoc) -> ChangeBody {
    ChangeBody::Enrolment {
        section: e.section_id.clone(),
        person: e.person_id.clone(),
        role: e.role,
        active: e.active,
    }
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
    tx.feed(ChangeBody::Schedule {
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
