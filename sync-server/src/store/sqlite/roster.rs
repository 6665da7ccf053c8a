//! Sections, students, teachers, enrolments, schedules and consent: what the server owns and every
//! box of the school mirrors. Each write here writes its change rows in the same transaction.

use rusqlite::{Connection, OptionalExtension, Row, params};
use shared_proto::roster::RosterDiff;
use shared_proto::sync::{EnrolmentRole, ScheduleSlot};

use super::feed::Feed;
use super::{owner, word};
use crate::domain::feed::Change;
use crate::store::roster;
use crate::store::rules::Owner;
use crate::store::transaction::Kind;
use crate::store::{Enrolment, RosterBatch, Section, StoreError, Student, Teacher};

/// Writes each record a roster diff names, kind by kind (`store::transaction::apply_roster`).
pub fn write_roster(
    conn: &Connection,
    school_id: &str,
    diff: &RosterDiff<'_, RosterBatch>,
) -> Result<(), StoreError> {
    for section in roster::written(&diff.sections) {
        write_section(conn, school_id, &section)?;
    }
    for student in roster::written(&diff.students) {
        write_student(conn, school_id, &student)?;
    }
    for teacher in roster::written(&diff.teachers) {
        write_teacher(conn, school_id, &teacher)?;
    }
    for enrolment in roster::written(&diff.enrolments) {
        write_enrolment(conn, &enrolment)?;
    }
    Ok(())
}

/// Everything the school holds, one query per kind.
pub fn held(conn: &Connection, school_id: &str) -> Result<RosterBatch, StoreError> {
    Ok(RosterBatch {
        sections: sections(conn, school_id)?,
        students: students(conn, school_id)?,
        teachers: teachers(conn, school_id)?,
        enrolments: enrolments_of_school(conn, school_id)?,
    })
}

/// The first of `ids` another school holds, if any.
pub fn held_elsewhere(
    conn: &Connection,
    kind: Kind,
    school_id: &str,
    ids: &[&str],
) -> Result<Option<String>, StoreError> {
    for id in ids {
        if owner(conn, kind, id, school_id)? == Owner::OtherSchool {
            return Ok(Some((*id).to_owned()));
        }
    }
    Ok(None)
}

fn write_section(conn: &Connection, school_id: &str, section: &Section) -> Result<(), StoreError> {
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
    Ok(())
}

/// A new student starts with the batch's consent (normally none); a held one keeps theirs.
fn write_student(conn: &Connection, school_id: &str, student: &Student) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO students
         (id, school_id, given_name, family_name, active, consent, consent_by, consent_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT (id) DO UPDATE SET given_name = excluded.given_name,
             family_name = excluded.family_name, active = excluded.active",
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
    Ok(())
}

fn write_teacher(conn: &Connection, school_id: &str, teacher: &Teacher) -> Result<(), StoreError> {
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
    Ok(())
}

fn write_enrolment(conn: &Connection, enrolment: &Enrolment) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO enrolments (section_id, person_id, role, active) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (section_id, person_id) DO UPDATE SET role = excluded.role,
             active = excluded.active",
    )?
    .execute(params![
        enrolment.section_id,
        enrolment.person_id,
        enrolment.role.as_str(),
        enrolment.active
    ])?;
    Ok(())
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
        consent: word(r, 5)?,
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

/// A student of any school: a push may name one another school holds.
pub fn student_anywhere(
    conn: &Connection,
    student_id: &str,
) -> Result<Option<Student>, StoreError> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {STUDENT_COLUMNS} FROM students WHERE id = ?1"
        ))?
        .query_row([student_id], student_from_row)
        .optional()?)
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
        role: word(r, 2)?,
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
    if owner(conn, Kind::Section, section_id, school_id)? != Owner::Ours {
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
    Feed::new(conn, school_id).write(&Change::Schedule {
        section: section_id.to_owned(),
        slots: slots.to_vec(),
    })
}

pub fn timetable(
    conn: &Connection,
    school_id: &str,
) -> Result<Vec<(String, Vec<ScheduleSlot>)>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT c.section_id, c.weekday, c.starts, c.ends, c.room
         FROM schedule c JOIN sections s ON s.id = c.section_id
         WHERE s.school_id = ?1 ORDER BY c.section_id, c.position",
    )?;
    let mut rows = stmt.query([school_id])?;
    let mut out: Vec<(String, Vec<ScheduleSlot>)> = Vec::new();
    while let Some(r) = rows.next()? {
        let section: String = r.get(0)?;
        let slot = ScheduleSlot {
            weekday: r.get(1)?,
            starts: r.get(2)?,
            ends: r.get(3)?,
            room: r.get(4)?,
        };
        match out.last_mut() {
            Some((held, slots)) if *held == section => slots.push(slot),
            _ => out.push((section, vec![slot])),
        }
    }
    Ok(out)
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

/// The sections a student is actively enrolled in, with the role (erasure ends each).
pub fn enrolled_in(
    conn: &Connection,
    student_id: &str,
) -> Result<Vec<(String, EnrolmentRole)>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT section_id, role FROM enrolments WHERE person_id = ?1 AND active = 1",
    )?;
    let rows = stmt.query_map([student_id], |r| Ok((r.get(0)?, word(r, 1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}
