//! `apply_events`: a push from one box, applied by the rules of `store::rules` inside the writer's
//! transaction (its own savepoint when grouped with other pushes).

use std::collections::{HashMap, HashSet};

use rusqlite::{Connection, OptionalExtension, params};
use shared_proto::sync::{
    Consent, Event, EventBody, MarkSource, MarkStatus, PushResponse, RejectCode, Rejection,
    TemplateData, mark_wins,
};

use super::feed::Feed;
use super::templates::{self, Held};
use super::{Table, owner, roster, word};
use crate::store::rules::{self, Owner, Refusal};
use crate::store::{Device, Millis, StoreError};

type Outcome = Result<(), Refusal>;

fn refuse(code: RejectCode, reason: impl Into<String>) -> Result<Outcome, StoreError> {
    Ok(Err(Refusal(code, reason.into())))
}

/// One push: its device, and the students, sections and sessions already looked up (a batch
/// names the same few again and again). Only `session_opened` creates one of them while a push
/// applies, and it records what it created here.
struct Push<'c> {
    conn: &'c Connection,
    device: &'c Device,
    feed: Feed<'c>,
    owners: HashMap<(Table, String), Owner>,
}

impl Push<'_> {
    fn owner_of(&mut self, table: Table, id: &str) -> Result<Owner, StoreError> {
        let key = (table, id.to_owned());
        if let Some(found) = self.owners.get(&key) {
            return Ok(*found);
        }
        let found = owner(self.conn, table, id, &self.device.school_id)?;
        self.owners.insert(key, found);
        Ok(found)
    }

    /// The student must be one of this school's.
    fn check_student(&mut self, student_id: &str) -> Result<Outcome, StoreError> {
        Ok(self.owner_of(Table::Students, student_id)?.check(
            "student",
            student_id,
            RejectCode::UnknownStudent,
            "",
        ))
    }
}

pub fn apply_events(
    conn: &Connection,
    device: &Device,
    events: &[Event],
    now: Millis,
) -> Result<PushResponse, StoreError> {
    let mut push = Push {
        conn,
        device,
        feed: Feed::new(conn, &device.school_id),
        owners: HashMap::new(),
    };
    let mut response = PushResponse::default();
    // An id is answered once per push, however often the batch repeats it.
    let mut answered: HashSet<&str> = HashSet::with_capacity(events.len());
    let mut n_applied: i64 = 0;
    for event in events {
        if !answered.insert(event.id.as_str()) {
            continue;
        }
        if let Err(rejection) = rules::validate(event) {
            response.rejected.push(rejection);
            continue;
        }
        // Claiming the id first costs one statement where a look-up and an insert cost two; a
        // refused event gives its claim back below, so nothing of it stays recorded.
        if !claim_id(conn, device, event, now)? {
            response.acked.push(event.id.clone());
            continue;
        }
        match apply_one(&mut push, event)? {
            Ok(()) => {
                n_applied += 1;
                response.acked.push(event.id.clone());
            }
            Err(Refusal(code, reason)) => {
                conn.prepare_cached("DELETE FROM applied_events WHERE id = ?1")?
                    .execute([&event.id])?;
                response.rejected.push(Rejection {
                    id: event.id.clone(),
                    code,
                    reason,
                });
            }
        }
    }
    if n_applied > 0 {
        conn.prepare_cached(
            "UPDATE counters SET value = value + ?1 WHERE name = 'events_applied'",
        )?
        .execute([n_applied])?;
    }
    Ok(response)
}

/// Records the event id as applied; `false` when it already was (a retried push).
fn claim_id(
    conn: &Connection,
    device: &Device,
    event: &Event,
    now: Millis,
) -> Result<bool, StoreError> {
    let n_inserted = conn
        .prepare_cached(
            "INSERT INTO applied_events (id, device_id, kind, applied_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (id) DO NOTHING",
        )?
        .execute(params![event.id, device.id, event.body.kind(), now])?;
    Ok(n_inserted == 1)
}

/// Checks everything first and writes only once the event is known to be accepted, so a refused
/// event leaves nothing behind.
fn apply_one(push: &mut Push<'_>, event: &Event) -> Result<Outcome, StoreError> {
    match &event.body {
        EventBody::SessionOpened {
            session,
            section,
            started_at,
        } => session_opened(push, session, section, *started_at),
        EventBody::SessionClosed { session } => session_closed(push, session, event.at),
        EventBody::MarkSet {
            session,
            student,
            status,
            source,
            score,
            decided_at,
            by,
        } => mark_set(
            push,
            &event.id,
            &Mark {
                session,
                student,
                status: *status,
                source: *source,
                score: *score,
                decided_at: *decided_at,
                by: by.as_deref(),
            },
        ),
        EventBody::TemplateAdded { template } => template_added(push, template),
        EventBody::TemplateDeleted { template, student } => {
            template_deleted(push, template, student)
        }
        EventBody::ConsentChanged {
            student,
            consent,
            by,
        } => consent_changed(push, student, *consent, by, event.at),
    }
}

fn session_opened(
    push: &mut Push<'_>,
    session_id: &str,
    section_id: &str,
    started_at: Millis,
) -> Result<Outcome, StoreError> {
    if let Err(refusal) = push.owner_of(Table::Sections, section_id)?.check(
        "section",
        section_id,
        RejectCode::UnknownSection,
        "",
    ) {
        return Ok(Err(refusal));
    }
    let held: Option<(String, String)> = push
        .conn
        .prepare_cached("SELECT school_id, section_id FROM sessions WHERE id = ?1")?
        .query_row([session_id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    match held {
        Some((school_id, _)) if school_id != push.device.school_id => refuse(
            RejectCode::WrongSchool,
            format!("session {session_id} belongs to another school"),
        ),
        Some((_, held_section)) if held_section != section_id => refuse(
            RejectCode::InvalidEvent,
            format!("session {session_id} was opened for section {held_section}"),
        ),
        Some(_) => Ok(Ok(())),
        None => {
            push.conn
                .prepare_cached(
                    "INSERT INTO sessions (id, school_id, device_id, section_id, started_at)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )?
                .execute(params![
                    session_id,
                    push.device.school_id,
                    push.device.id,
                    section_id,
                    started_at
                ])?;
            // Marks that arrived before their session are found through it from now on: only
            // this school's, so another school's box that reused the session id cannot have its
            // marks shown here.
            push.conn
                .prepare_cached(
                    "UPDATE marks SET session_pending = 0
                     WHERE session_id = ?1 AND session_pending = 1 AND school_id = ?2",
                )?
                .execute([session_id, push.device.school_id.as_str()])?;
            push.owners
                .insert((Table::Sessions, session_id.to_owned()), Owner::Ours);
            Ok(Ok(()))
        }
    }
}

fn session_closed(
    push: &mut Push<'_>,
    session_id: &str,
    at: Millis,
) -> Result<Outcome, StoreError> {
    if let Err(refusal) = push.owner_of(Table::Sessions, session_id)?.check(
        "session",
        session_id,
        RejectCode::UnknownSession,
        " (its session_opened has not arrived)",
    ) {
        return Ok(Err(refusal));
    }
    // The first close counts; a repeated close from a retry changes nothing.
    push.conn
        .prepare_cached("UPDATE sessions SET closed_at = COALESCE(closed_at, ?2) WHERE id = ?1")?
        .execute(params![session_id, at])?;
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

fn mark_set(push: &mut Push<'_>, event_id: &str, mark: &Mark<'_>) -> Result<Outcome, StoreError> {
    if let Err(refusal) = push.check_student(mark.student)? {
        return Ok(Err(refusal));
    }
    // The session may not have arrived yet (out of order), but it may not be another school's.
    let session = push.owner_of(Table::Sessions, mark.session)?;
    if session == Owner::OtherSchool {
        return refuse(
            RejectCode::WrongSchool,
            format!("session {} belongs to another school", mark.session),
        );
    }
    let session_pending = session == Owner::Missing;
    let held: Option<(String, Millis, String)> = push
        .conn
        .prepare_cached(
            "SELECT source, decided_at, event_id FROM marks
             WHERE session_id = ?1 AND student_id = ?2",
        )?
        .query_row([mark.session, mark.student], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .optional()?;
    if let Some((held_source, held_at, held_event)) = held {
        let held_source = word(0, &held_source)?;
        let wins = mark_wins(
            (mark.source, mark.decided_at, event_id),
            (held_source, held_at, &held_event),
        );
        if !wins {
            // Acked all the same: the decision is known, it just lost.
            return Ok(Ok(()));
        }
    }
    push.conn
        .prepare_cached(
            "INSERT INTO marks (session_id, student_id, school_id, device_id, status, source,
                 score, decided_at, decided_by, event_id, session_pending)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
             ON CONFLICT (session_id, student_id) DO UPDATE SET device_id = excluded.device_id,
                 status = excluded.status, source = excluded.source, score = excluded.score,
                 decided_at = excluded.decided_at, decided_by = excluded.decided_by,
                 event_id = excluded.event_id, session_pending = excluded.session_pending",
        )?
        .execute(params![
            mark.session,
            mark.student,
            push.device.school_id,
            push.device.id,
            mark.status.as_str(),
            mark.source.as_str(),
            mark.score,
            mark.decided_at,
            mark.by,
            event_id,
            session_pending
        ])?;
    Ok(Ok(()))
}

fn template_added(push: &mut Push<'_>, template: &TemplateData) -> Result<Outcome, StoreError> {
    if let Err(refusal) = push.check_student(&template.student)? {
        return Ok(Err(refusal));
    }
    let consent: String = push
        .conn
        .prepare_cached("SELECT consent FROM students WHERE id = ?1")?
        .query_row([&template.student], |r| r.get(0))?;
    if consent != Consent::Granted.as_str() {
        return refuse(
            RejectCode::NoConsent,
            format!(
                "student {} has no consent for face templates",
                template.student
            ),
        );
    }
    match templates::held(push.conn, &template.id)? {
        Held::Live { school_id } | Held::Tombstone { school_id }
            if school_id != push.device.school_id =>
        {
            refuse(
                RejectCode::WrongSchool,
                format!("template {} belongs to another school", template.id),
            )
        }
        // A template is immutable once made, and a delete that arrived first wins.
        Held::Live { .. } | Held::Tombstone { .. } => Ok(Ok(())),
        Held::Nothing => {
            templates::insert(push.conn, &mut push.feed, &push.device.school_id, template)?;
            Ok(Ok(()))
        }
    }
}

fn template_deleted(
    push: &mut Push<'_>,
    template_id: &str,
    student_id: &str,
) -> Result<Outcome, StoreError> {
    if let Err(refusal) = push.check_student(student_id)? {
        return Ok(Err(refusal));
    }
    match templates::held(push.conn, template_id)? {
        Held::Live { school_id } | Held::Tombstone { school_id }
            if school_id != push.device.school_id =>
        {
            refuse(
                RejectCode::WrongSchool,
                format!("template {template_id} belongs to another school"),
            )
        }
        Held::Tombstone { .. } => Ok(Ok(())),
        Held::Live { .. } | Held::Nothing => {
            templates::tombstone(
                push.conn,
                &mut push.feed,
                &push.device.school_id,
                template_id,
                student_id,
            )?;
            Ok(Ok(()))
        }
    }
}

fn consent_changed(
    push: &mut Push<'_>,
    student_id: &str,
    consent: Consent,
    by: &str,
    at: Millis,
) -> Result<Outcome, StoreError> {
    if let Err(refusal) = push.check_student(student_id)? {
        return Ok(Err(refusal));
    }
    roster::set_consent(
        push.conn,
        &mut push.feed,
        &push.device.school_id,
        student_id,
        consent,
        by,
        at,
    )?;
    Ok(Ok(()))
}
