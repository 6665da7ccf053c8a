//! The primitives of a push on SQLite (`store::transaction::apply_events`): the records it names
//! looked up, a decision's writes carried out, the applied ids recorded, all inside the writer's
//! transaction (its own savepoint when grouped with other pushes). Nothing here decides anything.

use std::collections::BTreeMap;

use rusqlite::{Connection, OptionalExtension, params};

use super::feed::Feed;
use super::opt_word;
use super::{audit, excusals, guardians, notices, roster, templates, word};
use crate::domain::Write;
use crate::domain::push::{Facts, HeldMark, HeldSession, HeldTemplate, Wanted};
use crate::store::{Millis, StoreError};

/// Records a push's applied event ids, and counts them.
pub fn record_applied(
    conn: &Connection,
    device_id: &str,
    applied: &[(&str, &'static str)],
    now: Millis,
) -> Result<(), StoreError> {
    let mut record = conn.prepare_cached(
        "INSERT INTO applied_events (id, device_id, kind, applied_at) VALUES (?1, ?2, ?3, ?4)",
    )?;
    for (id, kind) in applied {
        record.execute(params![id, device_id, kind, now])?;
    }
    conn.prepare_cached("UPDATE counters SET value = value + ?1 WHERE name = 'events_applied'")?
        .execute([applied.len() as i64])?;
    Ok(())
}

/// Reads what the store holds of `wanted`: a primary-key look-up per record, each a cached
/// statement (in-process SQLite answers these in microseconds), except for the two kinds a push
/// names by the hundred, event ids and marks, read with one statement per push and per session
/// (the single writer thread runs this for every push; PERFORMANCE.md has what was measured, and
/// the runs did not separate this from noise).
pub fn facts(conn: &Connection, wanted: &Wanted<'_>) -> Result<Facts, StoreError> {
    let mut facts = Facts::default();
    let mut stmt = conn.prepare_cached(
        "SELECT id FROM applied_events WHERE id IN (SELECT value FROM json_each(?1))",
    )?;
    let applied = stmt.query_map([json_array(wanted.event_ids.iter())?], |r| r.get(0))?;
    facts.applied = applied.collect::<Result<_, _>>()?;
    let mut stmt = conn.prepare_cached("SELECT school_id FROM sections WHERE id = ?1")?;
    for id in &wanted.sections {
        if let Some(school) = stmt.query_row([id], |r| r.get(0)).optional()? {
            facts.sections.insert((*id).to_owned(), school);
        }
    }
    for id in &wanted.students {
        if let Some(student) = roster::student_anywhere(conn, id)? {
            facts.students.insert((*id).to_owned(), student);
        }
    }
    let mut stmt = conn.prepare_cached(
        "SELECT school_id, section_id, started_at, closed_at, device_id FROM sessions WHERE id = ?1",
    )?;
    for id in &wanted.sessions {
        let held = stmt
            .query_row([id], |r| {
                Ok(HeldSession {
                    school_id: r.get(0)?,
                    section_id: r.get(1)?,
                    started_at: r.get(2)?,
                    closed_at: r.get(3)?,
                    device_id: r.get(4)?,
                })
            })
            .optional()?;
        if let Some(held) = held {
            facts.sessions.insert((*id).to_owned(), held);
        }
    }
    let mut stmt = conn.prepare_cached(
        "SELECT student_id, source, decided_at, event_id, status, machine_status FROM marks
         WHERE session_id = ?1 AND student_id IN (SELECT value FROM json_each(?2))",
    )?;
    // `marks` is ordered by session: each session's students are one run of it.
    let mut marks = wanted.marks.iter().peekable();
    while let Some(&(session, first)) = marks.next() {
        let mut students = vec![first];
        while let Some(&&(_, student)) = marks.peek().filter(|(s, _)| *s == session) {
            students.push(student);
            marks.next();
        }
        let mut rows = stmt.query(params![session, json_array(students.iter())?])?;
        while let Some(row) = rows.next()? {
            let student: String = row.get(0)?;
            let held = HeldMark {
                status: word(row, 4)?,
                source: word(row, 1)?,
                decided_at: row.get(2)?,
                event_id: row.get(3)?,
                machine: opt_word(row, 5)?,
            };
            facts
                .marks
                .entry(session.to_owned())
                .or_default()
                .insert(student, held);
        }
    }
    let mut stmt =
        conn.prepare_cached("SELECT school_id, tombstone FROM templates WHERE id = ?1")?;
    for id in &wanted.templates {
        let held = stmt
            .query_row([id], |r| {
                Ok(HeldTemplate {
                    school_id: r.get(0)?,
                    tombstone: r.get(1)?,
                })
            })
            .optional()?;
        if let Some(held) = held {
            facts.templates.insert((*id).to_owned(), held);
        }
    }
    for id in &wanted.live_templates_of {
        facts
            .live_templates
            .insert((*id).to_owned(), templates::live_ids(conn, id)?);
    }
    Ok(facts)
}

/// Ids as a JSON array, for `json_each`.
fn json_array<'a>(ids: impl Iterator<Item = &'a &'a str>) -> Result<String, StoreError> {
    serde_json::to_string(&ids.collect::<Vec<_>>())
        .map_err(|e| StoreError::Backend(format!("cannot encode ids: {e}")))
}

/// Writes a mark, the statement a push runs most. It must open no temporary B-tree (a test holds
/// it to that): schema 16 wrote the marks' CHECKs so that it does not.
pub(super) const SET_MARK: &str = "INSERT INTO marks (session_id, student_id, school_id, device_id,
        status, source, score, decided_at, decided_by, event_id, session_pending, machine_status)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
    ON CONFLICT (session_id, student_id) DO UPDATE SET
        device_id = excluded.device_id, status = excluded.status, source = excluded.source,
        score = excluded.score, decided_at = excluded.decided_at,
        decided_by = excluded.decided_by, event_id = excluded.event_id,
        session_pending = excluded.session_pending, machine_status = excluded.machine_status";

/// Carries out a decision's writes for `school_id`, in order, in the current transaction.
pub fn write(conn: &Connection, school_id: &str, writes: &[Write<'_>]) -> Result<(), StoreError> {
    let mut feed = Feed::new(conn, school_id);
    // The students marked per section, for `student_sections`: one statement per section at the
    // end rather than one per mark (a statement per mark cost the single writer about a fifth of
    // its flat-out throughput at 128 boxes; PERFORMANCE.md, issue 15).
    let mut filed: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for write in writes {
        match write {
            Write::OpenSession {
                session,
                device,
                section,
                started_at,
            } => {
                conn.prepare_cached(
                    "INSERT INTO sessions (id, school_id, device_id, section_id, started_at)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )?
                .execute(params![session, school_id, device, section, started_at])?;
                // Marks that arrived before their session are found through it from now on: only
                // this school's, so another school's box that reused the session id cannot have
                // its marks shown here.
                conn.prepare_cached(
                    "UPDATE marks SET session_pending = 0
                     WHERE session_id = ?1 AND session_pending = 1 AND school_id = ?2",
                )?
                .execute([session, school_id])?;
                conn.prepare_cached(
                    "INSERT OR IGNORE INTO student_sections (school_id, student_id, section_id)
                     SELECT ?2, student_id, ?3 FROM marks WHERE session_id = ?1 AND school_id = ?2",
                )?
                .execute([session, school_id, section])?;
            }
            Write::CloseSession { session, at } => {
                conn.prepare_cached("UPDATE sessions SET closed_at = ?2 WHERE id = ?1")?
                    .execute(params![session, at])?;
            }
            Write::SetMark(mark) => {
                conn.prepare_cached(SET_MARK)?.execute(params![
                    mark.session,
                    mark.student,
                    school_id,
                    mark.device,
                    mark.status.as_str(),
                    mark.source.as_str(),
                    mark.score,
                    mark.decided_at,
                    mark.decided_by,
                    mark.event_id,
                    mark.filed_under.is_none(),
                    mark.machine.map(shared_proto::sync::MarkStatus::as_str),
                ])?;
                if let Some((section, _)) = &mark.filed_under {
                    filed
                        .entry(section.as_str())
                        .or_default()
                        .push(mark.student);
                }
            }
            Write::AddTemplate(template) => templates::insert(conn, school_id, template)?,
            Write::Tombstone { template, student } => {
                templates::tombstone(conn, school_id, template, student)?;
            }
            Write::SetConsent {
                student,
                consent,
                by,
                at,
            } => {
                conn.prepare_cached(
                    "UPDATE students SET consent = ?2, consent_by = ?3, consent_at = ?4
                     WHERE id = ?1",
                )?
                .execute(params![student, consent.as_str(), by, at])?;
            }
            Write::EraseStudent { student } => {
                conn.prepare_cached("DELETE FROM templates WHERE student_id = ?1")?
                    .execute([student])?;
                for sql in roster::ERASE_MARKS {
                    conn.prepare_cached(sql)?.execute([student, school_id])?;
                }
                conn.prepare_cached(
                    "DELETE FROM student_sections WHERE school_id = ?2 AND student_id = ?1",
                )?
                .execute([student, school_id])?;
                guardians::erase_student(conn, school_id, student)?;
                notices::erase_student(conn, school_id, student)?;
                for students in filed.values_mut() {
                    students.retain(|s| s != student);
                }
                conn.prepare_cached("DELETE FROM enrolments WHERE person_id = ?1")?
                    .execute([student])?;
                conn.prepare_cached("DELETE FROM students WHERE id = ?1")?
                    .execute([student])?;
            }
            Write::AddGuardian(guardian) => guardians::insert(conn, guardian)?,
            Write::LinkGuardian { guardian, student } => guardians::link(conn, guardian, student)?,
            Write::UnlinkGuardian { guardian, student } => {
                guardians::unlink(conn, guardian, student)?;
            }
            Write::DeleteGuardian { id } => guardians::delete(conn, school_id, id)?,
            Write::BookExcusal(trip) => excusals::insert(conn, trip)?,
            Write::CancelExcusal { id } => excusals::delete(conn, school_id, id)?,
            Write::Change(body) => feed.write(body)?,
            Write::Audit(entry) => audit::append(conn, entry)?,
        }
    }
    for (section, students) in filed {
        conn.prepare_cached(
            "INSERT OR IGNORE INTO student_sections (school_id, student_id, section_id)
             SELECT ?1, value, ?2 FROM json_each(?3)",
        )?
        .execute(params![school_id, section, json_array(students.iter())?])?;
    }
    Ok(())
}
