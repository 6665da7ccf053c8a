//! `apply_events`: a push from one box, applied by the rules of `store::rules` in one transaction.

use std::collections::{HashMap, HashSet};

use mongodb::bson::{Document, doc};
use shared_proto::sync::{
    Consent, Event, EventBody, MarkSource, MarkStatus, PushResponse, RejectCode, Rejection,
    TemplateData, mark_wins,
};

use super::docs::{MarkDoc, SessionDoc, StudentDoc};
use super::error::{DbError, is_duplicate_key};
use super::names::*;
use super::roster;
use super::templates::{self, Held};
use super::tx::Tx;
use crate::store::rules::{self, Owner, Refusal};
use crate::store::{Device, Millis};

/// Kinds that can write the school's change feed, so a push holding one takes the feed lock.
pub fn may_write_feed(body: &EventBody) -> bool {
    matches!(
        body,
        EventBody::TemplateAdded { .. }
            | EventBody::TemplateDeleted { .. }
            | EventBody::ConsentChanged { .. }
    )
}

type Outcome = Result<(), Refusal>;

fn refuse(code: RejectCode, reason: impl Into<String>) -> Result<Outcome, DbError> {
    Ok(Err(Refusal(code, reason.into())))
}

/// What a push needs to know about a session.
#[derive(Clone, Debug)]
struct SessionInfo {
    school_id: String,
    section_id: String,
    started_at: Millis,
}

/// One push: its device, and the records already looked up. Students and sections cannot change
/// school while the push applies; sessions opened by the push are added as they are made.
struct Push<'d> {
    device: &'d Device,
    owners: HashMap<(&'static str, String), Owner>,
    sessions: HashMap<String, Option<SessionInfo>>,
}

impl Push<'_> {
    fn school_id(&self) -> &str {
        &self.device.school_id
    }

    async fn owner_of(
        &mut self,
        tx: &mut Tx<'_>,
        collection: &'static str,
        id: &str,
    ) -> Result<Owner, DbError> {
        let key = (collection, id.to_owned());
        if let Some(found) = self.owners.get(&key) {
            return Ok(*found);
        }
        let held = tx
            .coll::<Document>(collection)
            .find_one(doc! { "_id": id })
            .projection(doc! { "school_id": 1 })
            .session(&mut tx.session)
            .await?;
        let found = match held {
            None => Owner::Missing,
            Some(held) if held.get_str("school_id").ok() == Some(self.school_id()) => Owner::Ours,
            Some(_) => Owner::OtherSchool,
        };
        self.owners.insert(key, found);
        Ok(found)
    }

    async fn session(
        &mut self,
        tx: &mut Tx<'_>,
        session_id: &str,
    ) -> Result<Option<SessionInfo>, DbError> {
        if let Some(found) = self.sessions.get(session_id) {
            return Ok(found.clone());
        }
        let held = tx
            .coll::<SessionDoc>(SESSIONS)
            .find_one(doc! { "_id": session_id })
            .session(&mut tx.session)
            .await?
            .map(|s| SessionInfo {
                school_id: s.school_id,
                section_id: s.section_id,
                started_at: s.started_at,
            });
        self.sessions.insert(session_id.to_owned(), held.clone());
        Ok(held)
    }

    /// The student must be one of this school's.
    async fn check_student(
        &mut self,
        tx: &mut Tx<'_>,
        student_id: &str,
    ) -> Result<Outcome, DbError> {
        Ok(self.owner_of(tx, STUDENTS, student_id).await?.check(
            "student",
            student_id,
            RejectCode::UnknownStudent,
            "",
        ))
    }
}

pub async fn apply_events(
    tx: &mut Tx<'_>,
    device: &Device,
    events: &[Event],
    now: Millis,
) -> Result<PushResponse, DbError> {
    // Ids applied by earlier pushes, in one query: they are acked without being looked at again.
    let ids: Vec<&str> = events.iter().map(|e| e.id.as_str()).collect();
    let already_applied: HashSet<String> = tx
        .find_all::<Document>(
            APPLIED_EVENTS,
            doc! { "_id": { "$in": ids } },
            doc! { "_id": 1 },
        )
        .await?
        .into_iter()
        .filter_map(|d| d.get_str("_id").ok().map(str::to_owned))
        .collect();
    let mut push = Push {
        device,
        owners: HashMap::new(),
        sessions: HashMap::new(),
    };
    let mut response = PushResponse::default();
    // An id is answered once per push, however often the batch repeats it.
    let mut answered: HashSet<&str> = HashSet::with_capacity(events.len());
    let mut applied = Vec::new();
    for event in events {
        if !answered.insert(event.id.as_str()) {
            continue;
        }
        if let Err(rejection) = rules::validate(event) {
            response.rejected.push(rejection);
            continue;
        }
        if already_applied.contains(&event.id) {
            response.acked.push(event.id.clone());
            continue;
        }
        match apply_one(tx, &mut push, event).await? {
            Ok(()) => {
                applied.push(doc! {
                    "_id": &event.id,
                    "device_id": &device.id,
                    "kind": event.body.kind(),
                    "applied_at": now,
                });
                response.acked.push(event.id.clone());
            }
            Err(Refusal(code, reason)) => response.rejected.push(Rejection {
                id: event.id.clone(),
                code,
                reason,
            }),
        }
    }
    if !applied.is_empty() {
        tx.coll::<Document>(APPLIED_EVENTS)
            .insert_many(applied)
            .session(&mut tx.session)
            .await
            .map_err(|e| {
                // Another push of the same events committed after this one began: running
                // again finds them applied and acks them.
                if is_duplicate_key(&e) {
                    DbError::Race("an event id".to_owned())
                } else {
                    DbError::Mongo(e)
                }
            })?;
    }
    Ok(response)
}

/// Checks everything first and writes only once the event is known to be accepted, so a refused
/// event leaves nothing behind.
async fn apply_one(
    tx: &mut Tx<'_>,
    push: &mut Push<'_>,
    event: &Event,
) -> Result<Outcome, DbError> {
    match &event.body {
        EventBody::SessionOpened {
            session,
            section,
            started_at,
        } => session_opened(tx, push, session, section, *started_at).await,
        EventBody::SessionClosed { session } => session_closed(tx, push, session, event.at).await,
        EventBody::MarkSet {
            session,
            student,
            status,
            source,
            score,
            decided_at,
            by,
        } => {
            let mark = Mark {
                session,
                student,
                status: *status,
                source: *source,
                score: *score,
                decided_at: *decided_at,
                by: by.as_deref(),
            };
            mark_set(tx, push, &event.id, &mark).await
        }
        EventBody::TemplateAdded { template } => template_added(tx, push, template).await,
        EventBody::TemplateDeleted { template, student } => {
            template_deleted(tx, push, template, student).await
        }
        EventBody::ConsentChanged {
            student,
            consent,
            by,
        } => consent_changed(tx, push, student, *consent, by, event.at).await,
    }
}

async fn session_opened(
    tx: &mut Tx<'_>,
    push: &mut Push<'_>,
    session_id: &str,
    section_id: &str,
    started_at: Millis,
) -> Result<Outcome, DbError> {
    if let Err(refusal) = push.owner_of(tx, SECTIONS, section_id).await?.check(
        "section",
        section_id,
        RejectCode::UnknownSection,
        "",
    ) {
        return Ok(Err(refusal));
    }
    match push.session(tx, session_id).await? {
        Some(held) if held.school_id != push.school_id() => refuse(
            RejectCode::WrongSchool,
            format!("session {session_id} belongs to another school"),
        ),
        Some(held) if held.section_id != section_id => refuse(
            RejectCode::InvalidEvent,
            format!(
                "session {session_id} was opened for section {}",
                held.section_id
            ),
        ),
        Some(_) => Ok(Ok(())),
        None => {
            let session = SessionDoc {
                id: session_id.to_owned(),
                school_id: push.school_id().to_owned(),
                device_id: push.device.id.clone(),
                section_id: section_id.to_owned(),
                started_at,
                closed_at: None,
            };
            tx.coll::<SessionDoc>(SESSIONS)
                .insert_one(&session)
                .session(&mut tx.session)
                .await?;
            // Marks that arrived before their session are filed under it from now on.
            tx.coll::<Document>(MARKS)
                .update_many(
                    doc! { "session_id": session_id, "school_id": push.school_id() },
                    doc! { "$set": {
                        "section_id": section_id,
                        "started_at": started_at,
                        "placed_at": started_at,
                    } },
                )
                .session(&mut tx.session)
                .await?;
            push.sessions.insert(
                session_id.to_owned(),
                Some(SessionInfo {
                    school_id: session.school_id,
                    section_id: session.section_id,
                    started_at,
                }),
            );
            Ok(Ok(()))
        }
    }
}

async fn session_closed(
    tx: &mut Tx<'_>,
    push: &mut Push<'_>,
    session_id: &str,
    at: Millis,
) -> Result<Outcome, DbError> {
    match push.session(tx, session_id).await? {
        Some(held) if held.school_id == push.school_id() => {}
        Some(_) => {
            return refuse(
                RejectCode::WrongSchool,
                format!("session {session_id} belongs to another school"),
            );
        }
        None => {
            return refuse(
                RejectCode::UnknownSession,
                format!("no session {session_id} (its session_opened has not arrived)"),
            );
        }
    }
    // The first close counts; a repeated close from a retry changes nothing.
    tx.coll::<Document>(SESSIONS)
        .update_one(
            doc! { "_id": session_id, "closed_at": null },
            doc! { "$set": { "closed_at": at } },
        )
        .session(&mut tx.session)
        .await?;
    Ok(Ok(()))
}

struct Mark<'e> {
    session: &'e str,
    student: &'e str,
    status: MarkStatus,
    source: MarkSource,
    score: Option<f32>,
    decided_at: Millis,
    by: Option<&'e str>,
}

async fn mark_set(
    tx: &mut Tx<'_>,
    push: &mut Push<'_>,
    event_id: &str,
    mark: &Mark<'_>,
) -> Result<Outcome, DbError> {
    if let Err(refusal) = push.check_student(tx, mark.student).await? {
        return Ok(Err(refusal));
    }
    // The session may not have arrived yet (out of order), but it may not be another school's.
    let session = push.session(tx, mark.session).await?;
    if session
        .as_ref()
        .is_some_and(|s| s.school_id != push.school_id())
    {
        return refuse(
            RejectCode::WrongSchool,
            format!("session {} belongs to another school", mark.session),
        );
    }
    let held = tx
        .coll::<MarkDoc>(MARKS)
        .find_one(doc! { "session_id": mark.session, "student_id": mark.student })
        .session(&mut tx.session)
        .await?;
    if let Some(held) = held {
        let wins = mark_wins(
            (mark.source, mark.decided_at, event_id),
            (held.source, held.decided_at, &held.event_id),
        );
        if !wins {
            // Acked all the same: the decision is known, it just lost.
            return Ok(Ok(()));
        }
    }
    let doc = MarkDoc {
        session_id: mark.session.to_owned(),
        student_id: mark.student.to_owned(),
        school_id: push.school_id().to_owned(),
        device_id: push.device.id.clone(),
        status: mark.status,
        source: mark.source,
        score: mark.score,
        decided_at: mark.decided_at,
        decided_by: mark.by.map(str::to_owned),
        event_id: event_id.to_owned(),
        section_id: session.as_ref().map(|s| s.section_id.clone()),
        started_at: session.as_ref().map(|s| s.started_at),
        placed_at: session.as_ref().map_or(mark.decided_at, |s| s.started_at),
    };
    tx.coll::<MarkDoc>(MARKS)
        .replace_one(
            doc! { "session_id": mark.session, "student_id": mark.student },
            &doc,
        )
        .upsert(true)
        .session(&mut tx.session)
        .await?;
    Ok(Ok(()))
}

async fn template_added(
    tx: &mut Tx<'_>,
    push: &mut Push<'_>,
    template: &TemplateData,
) -> Result<Outcome, DbError> {
    if let Err(refusal) = push.check_student(tx, &template.student).await? {
        return Ok(Err(refusal));
    }
    // Read now, not cached: a `consent_changed` earlier in this push may have changed it.
    let student = tx
        .coll::<StudentDoc>(STUDENTS)
        .find_one(doc! { "_id": &template.student })
        .session(&mut tx.session)
        .await?;
    if student.is_none_or(|s| s.consent != Consent::Granted) {
        return refuse(
            RejectCode::NoConsent,
            format!(
                "student {} has no consent for face templates",
                template.student
            ),
        );
    }
    match templates::held(tx, &template.id).await? {
        Held::Live { school_id } | Held::Tombstone { school_id }
            if school_id != push.school_id() =>
        {
            refuse(
                RejectCode::WrongSchool,
                format!("template {} belongs to another school", template.id),
            )
        }
        // A template is immutable once made, and a delete that arrived first wins.
        Held::Live { .. } | Held::Tombstone { .. } => Ok(Ok(())),
        Held::Nothing => {
            let school_id = push.school_id().to_owned();
            templates::insert(tx, &school_id, template).await?;
            Ok(Ok(()))
        }
    }
}

async fn template_deleted(
    tx: &mut Tx<'_>,
    push: &mut Push<'_>,
    template_id: &str,
    student_id: &str,
) -> Result<Outcome, DbError> {
    if let Err(refusal) = push.check_student(tx, student_id).await? {
        return Ok(Err(refusal));
    }
    match templates::held(tx, template_id).await? {
        Held::Live { school_id } | Held::Tombstone { school_id }
            if school_id != push.school_id() =>
        {
            refuse(
                RejectCode::WrongSchool,
                format!("template {template_id} belongs to another school"),
            )
        }
        Held::Tombstone { .. } => Ok(Ok(())),
        Held::Live { .. } | Held::Nothing => {
            let school_id = push.school_id().to_owned();
            templates::tombstone(tx, &school_id, template_id, student_id).await?;
            Ok(Ok(()))
        }
    }
}

async fn consent_changed(
    tx: &mut Tx<'_>,
    push: &mut Push<'_>,
    student_id: &str,
    consent: Consent,
    by: &str,
    at: Millis,
) -> Result<Outcome, DbError> {
    if let Err(refusal) = push.check_student(tx, student_id).await? {
        return Ok(Err(refusal));
    }
    let school_id = push.school_id().to_owned();
    roster::set_consent(tx, &school_id, student_id, consent, by, at).await?;
    Ok(Ok(()))
}
