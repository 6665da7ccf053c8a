//! The primitives of a push on MongoDB (`store::transaction::apply_events`): the records it names
//! looked up (one query per kind), a decision's writes carried out, the applied ids recorded, all
//! in one transaction. Nothing here decides anything.

use std::collections::BTreeSet;

use mongodb::bson::{Document, doc};

use super::docs::{MarkDoc, SessionDoc, StudentDoc, TemplateDoc, text, to_bson};
use super::error::{DbError, is_duplicate_key};
use super::names::*;
use super::tx::Tx;
use super::{audit, guardians};
use crate::domain::Write;
use crate::domain::excusal::Excusal;
use crate::domain::push::{Facts, HeldMark, HeldSession, HeldTemplate, Wanted};
use crate::store::Millis;

/// Records a push's applied event ids.
pub async fn record_applied(
    tx: &mut Tx<'_>,
    device_id: &str,
    applied: &[(&str, &'static str)],
    now: Millis,
) -> Result<(), DbError> {
    let applied = applied.iter().map(|(id, kind)| {
        doc! { "_id": id, "device_id": device_id, "kind": *kind, "applied_at": now }
    });
    tx.coll::<Document>(APPLIED_EVENTS)
        .insert_many(applied)
        .session(&mut tx.session)
        .await
        .map_err(|e| {
            // Another push of the same events committed after this one began: running again
            // finds them applied and acks them.
            if is_duplicate_key(&e) {
                DbError::Race("an event id".to_owned())
            } else {
                DbError::Mongo(e)
            }
        })?;
    Ok(())
}

fn ids<'a>(set: &BTreeSet<&'a str>) -> Vec<&'a str> {
    set.iter().copied().collect()
}

fn excusal_doc(trip: &Excusal) -> Document {
    doc! {
        "_id": &trip.id,
        "school_id": &trip.school_id,
        "section_id": &trip.section_id,
        "from_ms": trip.from,
        "to_ms": trip.to,
        "reason": &trip.reason,
        "booked_by": &trip.by,
        "booked_at": trip.at,
    }
}

fn excusal_of(d: &Document) -> Result<Excusal, DbError> {
    let text = |key: &str| {
        d.get_str(key)
            .map(str::to_owned)
            .map_err(|e| DbError::corrupt(format!("a trip's {key}: {e}")))
    };
    let number = |key: &str| {
        d.get_i64(key)
            .map_err(|e| DbError::corrupt(format!("a trip's {key}: {e}")))
    };
    Ok(Excusal {
        id: text("_id")?,
        school_id: text("school_id")?,
        section_id: text("section_id")?,
        from: number("from_ms")?,
        to: number("to_ms")?,
        reason: text("reason")?,
        by: text("booked_by")?,
        at: number("booked_at")?,
    })
}

/// The trips `filter` finds, by first day.
pub async fn excusals_in(tx: &mut Tx<'_>, filter: Document) -> Result<Vec<Excusal>, DbError> {
    let found: Vec<Document> = tx
        .find_all(EXCUSALS, filter, doc! { "from_ms": 1, "_id": 1 })
        .await?;
    found.iter().map(excusal_of).collect()
}

/// Reads what the store holds of `wanted`, one query per kind of record (a round trip each; the
/// kinds a push does not name cost nothing).
pub async fn facts(tx: &mut Tx<'_>, wanted: &Wanted<'_>) -> Result<Facts, DbError> {
    let mut facts = Facts::default();
    if !wanted.event_ids.is_empty() {
        let found: Vec<Document> = tx
            .find_all(
                APPLIED_EVENTS,
                doc! { "_id": { "$in": ids(&wanted.event_ids) } },
                doc! { "_id": 1 },
            )
            .await?;
        facts.applied = found
            .iter()
            .map(|d| text(d, APPLIED_EVENTS, "_id"))
            .collect::<Result<_, _>>()?;
    }
    if !wanted.sections.is_empty() {
        let found: Vec<Document> = tx
            .find_all(
                SECTIONS,
                doc! { "_id": { "$in": ids(&wanted.sections) } },
                doc! { "_id": 1 },
            )
            .await?;
        for section in found {
            let id = text(&section, SECTIONS, "_id")?;
            facts
                .sections
                .insert(id, text(&section, SECTIONS, "school_id")?);
        }
    }
    if !wanted.students.is_empty() {
        let found: Vec<StudentDoc> = tx
            .find_all(
                STUDENTS,
                doc! { "_id": { "$in": ids(&wanted.students) } },
                doc! { "_id": 1 },
            )
            .await?;
        for student in found {
            facts
                .students
                .insert(student.id.clone(), student.into_student());
        }
    }
    if !wanted.sessions.is_empty() {
        let found: Vec<SessionDoc> = tx
            .find_all(
                SESSIONS,
                doc! { "_id": { "$in": ids(&wanted.sessions) } },
                doc! { "_id": 1 },
            )
            .await?;
        for session in found {
            facts.sessions.insert(
                session.id,
                HeldSession {
                    school_id: session.school_id,
                    device_id: session.device_id,
                    section_id: session.section_id,
                    started_at: session.started_at,
                    closed_at: session.closed_at,
                },
            );
        }
    }
    if !wanted.marks.is_empty() {
        // A push names one or two sessions: the product of its sessions and students is small,
        // and the pairs it did not name are dropped here.
        let sessions: BTreeSet<&str> = wanted.marks.iter().map(|&(session, _)| session).collect();
        let students: BTreeSet<&str> = wanted.marks.iter().map(|&(_, student)| student).collect();
        let found: Vec<MarkDoc> = tx
            .find_all(
                MARKS,
                doc! {
                    "session_id": { "$in": ids(&sessions) },
                    "student_id": { "$in": ids(&students) },
                },
                doc! { "session_id": 1, "student_id": 1 },
            )
            .await?;
        for mark in found {
            let key = (mark.session_id.as_str(), mark.student_id.as_str());
            if wanted.marks.contains(&key) {
                facts.marks.entry(mark.session_id).or_default().insert(
                    mark.student_id,
                    HeldMark {
                        status: mark.status,
                        source: mark.source,
                        decided_at: mark.decided_at,
                        event_id: mark.event_id,
                        machine: mark.machine_status,
                    },
                );
            }
        }
    }
    if !wanted.templates.is_empty() {
        let found: Vec<TemplateDoc> = tx
            .find_all(
                TEMPLATES,
                doc! { "_id": { "$in": ids(&wanted.templates) } },
                doc! { "_id": 1 },
            )
            .await?;
        for template in found {
            facts.templates.insert(
                template.id,
                HeldTemplate {
                    school_id: template.school_id,
                    tombstone: template.tombstone,
                },
            );
        }
    }
    if !wanted.live_templates_of.is_empty() {
        for student in &wanted.live_templates_of {
            facts
                .live_templates
                .insert((*student).to_owned(), Vec::new());
        }
        let found: Vec<Document> = tx
            .find_all(
                TEMPLATES,
                doc! {
                    "student_id": { "$in": ids(&wanted.live_templates_of) },
                    "tombstone": false,
                },
                doc! { "_id": 1 },
            )
            .await?;
        for template in found {
            if let (Ok(id), Ok(student)) = (template.get_str("_id"), template.get_str("student_id"))
                && let Some(live) = facts.live_templates.get_mut(student)
            {
                live.push(id.to_owned());
            }
        }
    }
    Ok(facts)
}

/// Carries out a decision's writes for `school_id`, in order, in the transaction.
pub async fn write(tx: &mut Tx<'_>, school_id: &str, writes: &[Write<'_>]) -> Result<(), DbError> {
    for write in writes {
        match write {
            Write::OpenSession {
                session,
                device,
                section,
                started_at,
            } => {
                let doc = SessionDoc {
                    id: session.clone(),
                    school_id: school_id.to_owned(),
                    device_id: device.clone(),
                    section_id: section.clone(),
                    started_at: *started_at,
                    closed_at: None,
                };
                tx.coll::<SessionDoc>(SESSIONS)
                    .insert_one(&doc)
                    .session(&mut tx.session)
                    .await?;
                // Marks of this school that arrived before their session are filed under it
                // from now on.
                tx.coll::<Document>(MARKS)
                    .update_many(
                        doc! { "session_id": session, "school_id": school_id },
                        doc! { "$set": {
                            "section_id": section,
                            "started_at": started_at,
                            "placed_at": started_at,
                        } },
                    )
                    .session(&mut tx.session)
                    .await?;
            }
            Write::CloseSession { session, at } => {
                tx.coll::<Document>(SESSIONS)
                    .update_one(
                        doc! { "_id": session },
                        doc! { "$set": { "closed_at": at } },
                    )
                    .session(&mut tx.session)
                    .await?;
            }
            Write::SetMark(mark) => {
                let doc = MarkDoc {
                    session_id: mark.session.to_owned(),
                    student_id: mark.student.to_owned(),
                    school_id: school_id.to_owned(),
                    device_id: mark.device.to_owned(),
                    status: mark.status,
                    source: mark.source,
                    score: mark.score,
                    decided_at: mark.decided_at,
                    decided_by: mark.decided_by.map(str::to_owned),
                    event_id: mark.event_id.to_owned(),
                    section_id: mark
                        .filed_under
                        .as_ref()
                        .map(|(section, _)| section.clone()),
                    started_at: mark.filed_under.as_ref().map(|&(_, started)| started),
                    // Attendance queries file a mark under its session's start, or under its
                    // decision while the session has not arrived.
                    placed_at: mark
                        .filed_under
                        .as_ref()
                        .map_or(mark.decided_at, |&(_, started)| started),
                    machine_status: mark.machine,
                };
                tx.coll::<MarkDoc>(MARKS)
                    .replace_one(
                        doc! { "session_id": mark.session, "student_id": mark.student },
                        &doc,
                    )
                    .upsert(true)
                    .session(&mut tx.session)
                    .await?;
            }
            Write::AddTemplate(template) => {
                tx.coll::<TemplateDoc>(TEMPLATES)
                    .insert_one(TemplateDoc::from_template(school_id, template))
                    .session(&mut tx.session)
                    .await?;
            }
            Write::Tombstone { template, student } => {
                tx.coll::<Document>(TEMPLATES)
                    .update_one(
                        doc! { "_id": template },
                        doc! {
                            "$set": { "tombstone": true },
                            "$unset": { "model_id": "", "space": "", "embedding": "", "crop": "" },
                            "$setOnInsert": { "school_id": school_id, "student_id": student },
                        },
                    )
                    .upsert(true)
                    .session(&mut tx.session)
                    .await?;
            }
            Write::SetConsent {
                student,
                consent,
                by,
                at,
            } => {
                tx.coll::<Document>(STUDENTS)
                    .update_one(
                        doc! { "_id": student },
                        doc! { "$set": {
                            "consent": to_bson(consent)?,
                            "consent_by": by,
                            "consent_at": at,
                        } },
                    )
                    .session(&mut tx.session)
                    .await?;
            }
            Write::EraseStudent { student } => {
                for (collection, filter) in [
                    (TEMPLATES, doc! { "student_id": student }),
                    (
                        MARKS,
                        doc! { "student_id": student, "school_id": school_id },
                    ),
                    (ENROLMENTS, doc! { "person_id": student }),
                    (STUDENTS, doc! { "_id": student, "school_id": school_id }),
                ] {
                    tx.coll::<Document>(collection)
                        .delete_many(filter)
                        .session(&mut tx.session)
                        .await?;
                }
                // Their guardians lose them; one left with no child is deleted.
                tx.coll::<Document>(GUARDIANS)
                    .update_many(
                        doc! { "school_id": school_id, "student_ids": student },
                        doc! { "$pull": { "student_ids": student } },
                    )
                    .session(&mut tx.session)
                    .await?;
                tx.coll::<Document>(GUARDIANS)
                    .delete_many(doc! { "school_id": school_id, "student_ids": { "$size": 0 } })
                    .session(&mut tx.session)
                    .await?;
                // The notices that name them, sent or not.
                tx.coll::<Document>(NOTICES)
                    .delete_many(doc! { "school_id": school_id, "student_ids": student })
                    .session(&mut tx.session)
                    .await?;
            }
            Write::Change(body) => tx.feed_of(school_id, body.clone())?,
            Write::AddGuardian(guardian) => {
                tx.coll::<guardians::GuardianDoc>(GUARDIANS)
                    .insert_one(guardians::GuardianDoc::of(guardian))
                    .session(&mut tx.session)
                    .await?;
            }
            Write::LinkGuardian { guardian, student } => {
                tx.coll::<Document>(GUARDIANS)
                    .update_one(
                        doc! { "_id": guardian, "school_id": school_id },
                        doc! { "$addToSet": { "student_ids": student } },
                    )
                    .session(&mut tx.session)
                    .await?;
            }
            Write::UnlinkGuardian { guardian, student } => {
                tx.coll::<Document>(GUARDIANS)
                    .update_one(
                        doc! { "_id": guardian, "school_id": school_id },
                        doc! { "$pull": { "student_ids": student } },
                    )
                    .session(&mut tx.session)
                    .await?;
            }
            Write::DeleteGuardian { id } => {
                tx.coll::<Document>(GUARDIANS)
                    .delete_one(doc! { "_id": id, "school_id": school_id })
                    .session(&mut tx.session)
                    .await?;
            }
            Write::BookExcusal(trip) => {
                tx.coll::<Document>(EXCUSALS)
                    .insert_one(excusal_doc(trip))
                    .session(&mut tx.session)
                    .await?;
            }
            Write::CancelExcusal { id } => {
                tx.coll::<Document>(EXCUSALS)
                    .delete_one(doc! { "_id": id, "school_id": school_id })
                    .session(&mut tx.session)
                    .await?;
            }
            Write::Audit(entry) => audit::append_in(tx, entry).await?,
        }
    }
    Ok(())
}
