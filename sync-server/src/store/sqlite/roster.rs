//! Sections, students, teachers, enrolments, schedules and consent: what the server owns and every
//! box of the school mirrors. Each write here writes its change rows in the same transaction.

use std::collections::HashSet;

use rusqlite::{Connection, OptionalExtension, Row, params};
use shared_proto::sync::{ChangeBody, ScheduleSlot};

use super::feed::Feed;
use super::{Table, owner, templates, word};
use crate::domain::erasure;
use crate::store::rules::{self, Owner};
use crate::store::{Enrolment, RosterBatch, RosterSummary, Section, StoreError, Student, Teacher};

pub fn apply_roster(
    conn: &Connection,
    school_id: &str,
    batch: &RosterBatch,
    full: bool,
) -> Result<RosterSummary, StoreError> {
    if super::accounts::school(conn, school_id)?.is_none() {
        return Err(StoreError::NotFound(format!("school {school_id}")));
    }
    let mut feed = Feed::new(conn, school_id);
    for section in &batch.sections {
        claim(conn, Table::Sections, &section.id, school_id, "section")?;
        upsert_section(conn, &mut feed, school_id, section)?;
    }
    for student in &batch.students {
        claim(conn, Table::Students, &student.id, school_id, "student")?;
        upsert_student(conn, &mut feed, school_id, student)?;
    }
    for teacher in &batch.teachers {
        claim(conn, Table::Teachers, &teacher.id, school_id, "teacher")?;
        upsert_teacher(conn, &mut feed, school_id, teacher)?;
    }
    for enrolment in &batch.enrolments {
        if owner(conn, Table::Sections, &enrolment.section_id, school_id)? != Owner::Ours {
            return Err(StoreError::NotFound(format!(
                "section {} (enrolment of {})",
                enrolment.section_id, enrolment.person_id
            )));
        }
        upsert_enrolment(conn, &mut feed, enrolment)?;
    }
    let deactivated = if full {
        deactivate_missing(conn, &mut feed, school_id, batch)?
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

/// Ids are global (OneRoster sourcedIds): one that another school holds is refused, never moved.
fn claim(
    conn: &Connection,
    table: Table,
    id: &str,
    school_id: &str,
    noun: &str,
) -> Result<(), StoreError> {
    match owner(conn, table, id, school_id)? {
        Owner::OtherSchool => Err(rules::id_taken(noun, id)),
        Owner::Ours | Owner::Missing => Ok(()),
    }
}

fn upsert_section(
    conn: &Connection,
    feed: &mut Feed<'_>,
    school_id: &str,
    section: &Section,
) -> Result<(), StoreError> {
    let held: Option<(String, bool)> = conn
        .prepare_cached("SELECT title, active FROM sections WHERE id = ?1")?
        .query_row([&section.id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    if held.as_ref() == Some(&(section.title.clone(), section.active)) {
        return Ok(());
    }
    conn.prepare_cached(
        "INSERT INTO sections (id, school_id, title, active) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (id) DO UPDATE SET title = excluded.title, active = excluded.active",
    )?
    .execute(params![
        section.id,
        school_id,
        section.title,
        section.active
    ])?;
    feed.write(&ChangeBody::Section {
        id: section.id.clone(),
        title: section.title.clone(),
        active: section.active,
    })
}

/// A roster carries names and enrolment, not consent: a held student keeps the consent recorded
/// for them; a new one starts with the batch's (normally none).
fn upsert_student(
    conn: &Connection,
    feed: &mut Feed<'_>,
    school_id: &str,
    student: &Student,
) -> Result<(), StoreError> {
    let held: Option<(String, String, bool)> = conn
        .prepare_cached("SELECT given_name, family_name, active FROM students WHERE id = ?1")?
        .query_row([&student.id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?;
    let wanted = (
        student.given_name.clone(),
        student.family_name.clone(),
        student.active,
    );
    match held {
        Some(held) if held == wanted => return Ok(()),
        Some(_) => {
            conn.prepare_cached(
                "UPDATE students SET given_name = ?2, family_name = ?3, active = ?4 WHERE id = ?1",
            )?
            .execute(params![
                student.id,
                student.given_name,
                student.family_name,
                student.active
            ])?;
        }
        None => {
            conn.prepare_cached(
                "INSERT INTO students
                 (id, school_id, given_name, family_name, active, consent, consent_by, consent_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?
            .execute(params![
                student.id,
                school_id,
                student.given_name,
                student.family_name,
                student.active,
                student.consent.as_str(),
                student.consent_by,
                student.consent_at
            ])?;
        }
    }
    write_student_change(conn, feed, &student.id)
}

fn write_student_change(
    conn: &Connection,
    feed: &mut Feed<'_>,
    student_id: &str,
) -> Result<(), StoreError> {
    let body = conn
        .prepare_cached(
            "SELECT given_name, family_name, active, consent FROM students WHERE id = ?1",
        )?
        .query_row([student_id], |r| {
            Ok(ChangeBody::Student {
                id: student_id.to_owned(),
                given_name: r.get(0)?,
                family_name: r.get(1)?,
                active: r.get(2)?,
                consent: word(3, &r.get::<_, String>(3)?)?,
            })
        })?;
    feed.write(&body)
}

fn upsert_teacher(
    conn: &Connection,
    feed: &mut Feed<'_>,
    school_id: &str,
    teacher: &Teacher,
) -> Result<(), StoreError> {
    let held: Option<(String, String, bool)> = conn
        .prepare_cached("SELECT given_name, family_name, active FROM teachers WHERE id = ?1")?
        .query_row([&teacher.id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?;
    let wanted = (
        teacher.given_name.clone(),
        teacher.family_name.clone(),
        teacher.active,
    );
    if held.as_ref() == Some(&wanted) {
        return Ok(());
    }
    conn.prepare_cached(
        "INSERT INTO teachers (id, school_id, given_name, family_name, active)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (id) DO UPDATE SET given_name = excluded.given_name,
             family_name = excluded.family_name, active = excluded.active",
    )?
    .execute(params![
        teacher.id,
        school_id,
        teacher.given_name,
        teacher.family_name,
        teacher.active
    ])?;
    feed.write(&ChangeBody::Teacher {
        id: teacher.id.clone(),
        given_name: teacher.given_name.clone(),
        family_name: teacher.family_name.clone(),
        active: teacher.active,
    })
}

fn upsert_enrolment(
    conn: &Connection,
    feed: &mut Feed<'_>,
    enrolment: &Enrolment,
) -> Result<(), StoreError> {
    let held: Option<(String, bool)> = conn
        .prepare_cached(
            "SELECT role, active FROM enrolments WHERE section_id = ?1 AND person_id = ?2",
        )?
        .query_row([&enrolment.section_id, &enrolment.person_id], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()?;
    let role = enrolment.role.as_str();
    if held.as_ref() == Some(&(role.to_owned(), enrolment.active)) {
        return Ok(());
    }
    conn.prepare_cached(
        "INSERT INTO enrolments (section_id, person_id, role, active) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (section_id, person_id) DO UPDATE SET role = excluded.role,
             active = excluded.active",
    )?
    .execute(params![
        enrolment.section_id,
        enrolment.person_id,
        role,
        enrolment.active
    ])?;
    feed.write(&ChangeBody::Enrolment {
        section: enrolment.section_id.clone(),
        person: enrolment.person_id.clone(),
        role: enrolment.role,
        active: enrolment.active,
    })
}

/// A full export names everything the school has: what it leaves out becomes inactive (never
/// deleted: marks keep their students). Returns how many rows were deactivated.
fn deactivate_missing(
    conn: &Connection,
    feed: &mut Feed<'_>,
    school_id: &str,
    batch: &RosterBatch,
) -> Result<usize, StoreError> {
    let mut n_deactivated = 0;

    let kept: HashSet<&str> = batch.sections.iter().map(|s| s.id.as_str()).collect();
    for section in sections(conn, school_id)? {
        if section.active && !kept.contains(section.id.as_str()) {
            upsert_section(
                conn,
                feed,
                school_id,
                &Section {
                    active: false,
                    ..section
                },
            )?;
            n_deactivated += 1;
        }
    }

    let kept: HashSet<&str> = batch.students.iter().map(|s| s.id.as_str()).collect();
    for student in students(conn, school_id)? {
        if student.active && !kept.contains(student.id.as_str()) {
            upsert_student(
                conn,
                feed,
                school_id,
                &Student {
                    active: false,
                    ..student
                },
            )?;
            n_deactivated += 1;
        }
    }

    let kept: HashSet<&str> = batch.teachers.iter().map(|t| t.id.as_str()).collect();
    for teacher in teachers(conn, school_id)? {
        if teacher.active && !kept.contains(teacher.id.as_str()) {
            upsert_teacher(
                conn,
                feed,
                school_id,
                &Teacher {
                    active: false,
                    ..teacher
                },
            )?;
            n_deactivated += 1;
        }
    }

    let kept: HashSet<(&str, &str)> = batch
        .enrolments
        .iter()
        .map(|e| (e.section_id.as_str(), e.person_id.as_str()))
        .collect();
    for enrolment in enrolments_of_school(conn, school_id)? {
        let key = (enrolment.section_id.as_str(), enrolment.person_id.as_str());
        if enrolment.active && !kept.contains(&key) {
            upsert_enrolment(
                conn,
                feed,
                &Enrolment {
                    active: false,
                    ..enrolment
                },
            )?;
            n_deactivated += 1;
        }
    }
    Ok(n_deactivated)
}

pub fn sections(conn: &Connection, school_id: &str) -> Result<Vec<Section>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, school_id, title, active FROM sections WHERE school_id = ?1 ORDER BY id",
    )?;
    let rows = stmt.query_map([school_id], |r| {
        Ok(Section {
            id: r.get(0)?,
            school_id: r.get(1)?,
            title: r.get(2)?,
            active: r.get(3)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

const STUDENT_COLUMNS: &str =
    "id, school_id, given_name, family_name, active, consent, consent_by, consent_at";

fn student_from_row(r: &Row<'_>) -> rusqlite::Result<Student> {
    Ok(Student {
        id: r.get(0)?,
        school_id: r.get(1)?,
        given_name: r.get(2)?,
        family_name: r.get(3)?,
        active: r.get(4)?,
        consent: word(5, &r.get::<_, String>(5)?)?,
        consent_by: r.get(6)?,
        consent_at: r.get(7)?,
    })
}

pub fn students(conn: &Connection, school_id: &str) -> Result<Vec<Student>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {STUDENT_COLUMNS} FROM students WHERE school_id = ?1 ORDER BY id"
    ))?;
    let rows = stmt.query_map([school_id], student_from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn student(
    conn: &Connection,
    school_id: &str,
    student_id: &str,
) -> Result<Option<Student>, StoreError> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {STUDENT_COLUMNS} FROM students WHERE school_id = ?1 AND id = ?2"
        ))?
        .query_row([school_id, student_id], student_from_row)
        .optional()?)
}

fn teachers(conn: &Connection, school_id: &str) -> Result<Vec<Teacher>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, school_id, given_name, family_name, active FROM teachers
         WHERE school_id = ?1 ORDER BY id",
    )?;
    let rows = stmt.query_map([school_id], |r| {
        Ok(Teacher {
            id: r.get(0)?,
            school_id: r.get(1)?,
            given_name: r.get(2)?,
            family_name: r.get(3)?,
            active: r.get(4)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn enrolment_from_row(r: &Row<'_>) -> rusqlite::Result<Enrolment> {
    Ok(Enrolment {
        section_id: r.get(0)?,
        person_id: r.get(1)?,
        role: word(2, &r.get::<_, String>(2)?)?,
        active: r.get(3)?,
    })
}

pub fn enrolments(
    conn: &Connection,
    school_id: &str,
    section_id: &str,
) -> Result<Vec<Enrolment>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT e.section_id, e.person_id, e.role, e.active
         FROM enrolments e JOIN sections s ON s.id = e.section_id
         WHERE s.school_id = ?1 AND e.section_id = ?2 ORDER BY e.person_id",
    )?;
    let rows = stmt.query_map([school_id, section_id], enrolment_from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn enrolments_of_school(conn: &Connection, school_id: &str) -> Result<Vec<Enrolment>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT e.section_id, e.person_id, e.role, e.active
         FROM enrolments e JOIN sections s ON s.id = e.section_id
         WHERE s.school_id = ?1 ORDER BY e.section_id, e.person_id",
    )?;
    let rows = stmt.query_map([school_id], enrolment_from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn sections_of_teacher(
    conn: &Connection,
    school_id: &str,
    teacher_id: &str,
) -> Result<Vec<String>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT e.section_id FROM enrolments e JOIN sections s ON s.id = e.section_id
         WHERE s.school_id = ?1 AND e.person_id = ?2 AND e.role = 'teacher' AND e.active = 1
         ORDER BY e.section_id",
    )?;
    let rows = stmt.query_map([school_id, teacher_id], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn set_schedule(
    conn: &Connection,
    school_id: &str,
    section_id: &str,
    slots: &[ScheduleSlot],
) -> Result<(), StoreError> {
    if owner(conn, Table::Sections, section_id, school_id)? != Owner::Ours {
        return Err(StoreError::NotFound(format!("section {section_id}")));
    }
    conn.prepare_cached("DELETE FROM schedule WHERE section_id = ?1")?
        .execute([section_id])?;
    let mut insert = conn.prepare_cached(
        "INSERT INTO schedule (section_id, position, weekday, starts, ends, room)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    for (position, slot) in slots.iter().enumerate() {
        insert.execute(params![
            section_id,
            position as i64,
            slot.weekday,
            slot.starts,
            slot.ends,
            slot.room
        ])?;
    }
    Feed::new(conn, school_id).write(&ChangeBody::Schedule {
        section: section_id.to_owned(),
        slots: slots.to_vec(),
    })
}

pub fn schedule(
    conn: &Connection,
    school_id: &str,
    section_id: &str,
) -> Result<Vec<ScheduleSlot>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT c.weekday, c.starts, c.ends, c.room
         FROM schedule c JOIN sections s ON s.id = c.section_id
         WHERE s.school_id = ?1 AND c.section_id = ?2 ORDER BY c.position",
    )?;
    let rows = stmt.query_map([school_id, section_id], |r| {
        Ok(ScheduleSlot {
            weekday: r.get(0)?,
            starts: r.get(1)?,
            ends: r.get(2)?,
            room: r.get(3)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// A student's marks, parameters student and school. No index leads with the student (schema
/// version 2): they are reached through the school's sessions and the primary key, and the
/// pending ones through their partial index.
pub(super) const ERASE_MARKS: [&str; 2] = [
    "DELETE FROM marks WHERE student_id = ?1
       AND session_id IN (SELECT id FROM sessions WHERE school_id = ?2)",
    "DELETE FROM marks WHERE session_pending = 1 AND school_id = ?2 AND student_id = ?1",
];

/// Erasure, as `domain::erasure` decides it.
pub fn erase_student(
    conn: &Connection,
    school_id: &str,
    student_id: &str,
) -> Result<(), StoreError> {
    if owner(conn, Table::Students, student_id, school_id)? != Owner::Ours {
        return Err(StoreError::NotFound(format!("student {student_id}")));
    }
    let enrolments = {
        let mut stmt = conn.prepare_cached(
            "SELECT section_id, role FROM enrolments WHERE person_id = ?1 AND active = 1",
        )?;
        let rows = stmt.query_map([student_id], |r| Ok((r.get(0)?, r.get::<_, String>(1)?)))?;
        let mut enrolments = Vec::new();
        for row in rows {
            let (section, role) = row?;
            enrolments.push((section, word(1, &role)?));
        }
        enrolments
    };
    let live = templates::live_ids(conn, student_id)?;
    let writes = erasure::decide(student_id, live, enrolments);
    super::events::write(conn, school_id, &writes)
}
