//! Guardians (`domain::guardian`) on SQLite: the contacts, and their links to students.

use rusqlite::{Connection, OptionalExtension, Row, params};

use super::word;
use crate::domain::guardian::Guardian;
use crate::store::StoreError;

const COLUMNS: &str = "g.id, g.school_id, g.given_name, g.family_name, g.email, g.relationship, \
                       g.opted_out_at";

fn guardian(r: &Row<'_>) -> rusqlite::Result<Guardian> {
    Ok(Guardian {
        id: r.get(0)?,
        school_id: r.get(1)?,
        given_name: r.get(2)?,
        family_name: r.get(3)?,
        email: r.get(4)?,
        relationship: word(r, 5)?,
        opted_out_at: r.get(6)?,
        student_ids: Vec::new(),
    })
}

/// Fills each contact's children.
fn with_students(conn: &Connection, mut found: Vec<Guardian>) -> Result<Vec<Guardian>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT student_id FROM guardian_students WHERE guardian_id = ?1 ORDER BY student_id",
    )?;
    for guardian in &mut found {
        guardian.student_ids = stmt
            .query_map([&guardian.id], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
    }
    Ok(found)
}

/// A student's guardians, by family and given name.
pub fn of_student(
    conn: &Connection,
    school_id: &str,
    student_id: &str,
) -> Result<Vec<Guardian>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM guardian_students l JOIN guardians g ON g.id = l.guardian_id
         WHERE l.student_id = ?1 AND g.school_id = ?2
         ORDER BY g.family_name, g.given_name, g.id"
    ))?;
    let found = stmt
        .query_map([student_id, school_id], guardian)?
        .collect::<Result<_, _>>()?;
    with_students(conn, found)
}

/// Every contact of the school with their children, read in two queries however many there are.
pub fn of_school(conn: &Connection, school_id: &str) -> Result<Vec<Guardian>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM guardians g WHERE g.school_id = ?1
         ORDER BY g.family_name, g.given_name, g.id"
    ))?;
    let mut found: Vec<Guardian> = stmt
        .query_map([school_id], guardian)?
        .collect::<Result<_, _>>()?;
    let mut links = conn.prepare_cached(
        "SELECT l.guardian_id, l.student_id FROM guardian_students l
         JOIN guardians g ON g.id = l.guardian_id WHERE g.school_id = ?1
         ORDER BY l.guardian_id, l.student_id",
    )?;
    let mut children: std::collections::HashMap<String, Vec<String>> = Default::default();
    for link in links.query_map([school_id], |r| Ok((r.get(0)?, r.get(1)?)))? {
        let (guardian, student): (String, String) = link?;
        children.entry(guardian).or_default().push(student);
    }
    for g in &mut found {
        g.student_ids = children.remove(&g.id).unwrap_or_default();
    }
    Ok(found)
}

/// Records a contact's unsubscribing, keeping the first time; `false` for an unknown contact.
pub fn opt_out(conn: &Connection, school_id: &str, id: &str, at: i64) -> Result<bool, StoreError> {
    let n = conn
        .prepare_cached(
            "UPDATE guardians SET opted_out_at = COALESCE(opted_out_at, ?3)
             WHERE id = ?1 AND school_id = ?2",
        )?
        .execute(rusqlite::params![id, school_id, at])?;
    Ok(n > 0)
}

/// The school's contact of an address (lower case), if any.
pub fn by_email(
    conn: &Connection,
    school_id: &str,
    email: &str,
) -> Result<Option<Guardian>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM guardians g WHERE g.school_id = ?1 AND g.email = ?2"
    ))?;
    let found = stmt.query_row([school_id, email], guardian).optional()?;
    Ok(with_students(conn, found.into_iter().collect())?.pop())
}

pub fn one(conn: &Connection, school_id: &str, id: &str) -> Result<Option<Guardian>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM guardians g WHERE g.id = ?1 AND g.school_id = ?2"
    ))?;
    let found = stmt.query_row([id, school_id], guardian).optional()?;
    Ok(with_students(conn, found.into_iter().collect())?.pop())
}

pub fn insert(conn: &Connection, g: &Guardian) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO guardians (id, school_id, given_name, family_name, email, relationship,
             opted_out_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        g.id,
        g.school_id,
        g.given_name,
        g.family_name,
        g.email,
        g.relationship.as_str(),
        g.opted_out_at
    ])?;
    Ok(())
}

pub fn link(conn: &Connection, guardian: &str, student: &str) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT OR IGNORE INTO guardian_students (guardian_id, student_id) VALUES (?1, ?2)",
    )?
    .execute([guardian, student])?;
    Ok(())
}

pub fn unlink(conn: &Connection, guardian: &str, student: &str) -> Result<(), StoreError> {
    conn.prepare_cached(
        "DELETE FROM guardian_students WHERE guardian_id = ?1 AND student_id = ?2",
    )?
    .execute([guardian, student])?;
    Ok(())
}

pub fn delete(conn: &Connection, school_id: &str, id: &str) -> Result<(), StoreError> {
    conn.prepare_cached("DELETE FROM guardians WHERE id = ?1 AND school_id = ?2")?
        .execute([id, school_id])?;
    Ok(())
}

/// An erased student's links, and the contacts they leave with no child.
pub fn erase_student(conn: &Connection, school_id: &str, student: &str) -> Result<(), StoreError> {
    let orphans: Vec<String> = {
        let mut stmt = conn.prepare_cached(
            "SELECT l.guardian_id FROM guardian_students l
             WHERE l.student_id = ?1 AND NOT EXISTS (
                 SELECT 1 FROM guardian_students o
                 WHERE o.guardian_id = l.guardian_id AND o.student_id != ?1)",
        )?;
        stmt.query_map([student], |r| r.get(0))?
            .collect::<Result<_, _>>()?
    };
    conn.prepare_cached("DELETE FROM guardian_students WHERE student_id = ?1")?
        .execute([student])?;
    for id in orphans {
        delete(conn, school_id, &id)?;
    }
    Ok(())
}
