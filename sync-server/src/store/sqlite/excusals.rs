//! Trips booked ahead (`domain::excusal`) on SQLite.

use rusqlite::{Connection, Row, params};

use crate::domain::excusal::Excusal;
use crate::store::StoreError;

const COLUMNS: &str = "id, school_id, section_id, from_ms, to_ms, reason, booked_by, booked_at";

fn excusal(r: &Row<'_>) -> rusqlite::Result<Excusal> {
    Ok(Excusal {
        id: r.get(0)?,
        school_id: r.get(1)?,
        section_id: r.get(2)?,
        from: r.get(3)?,
        to: r.get(4)?,
        reason: r.get(5)?,
        by: r.get(6)?,
        at: r.get(7)?,
    })
}

pub fn insert(conn: &Connection, trip: &Excusal) -> Result<(), StoreError> {
    conn.prepare_cached(&format!(
        "INSERT INTO excusals ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
    ))?
    .execute(params![
        trip.id,
        trip.school_id,
        trip.section_id,
        trip.from,
        trip.to,
        trip.reason,
        trip.by,
        trip.at
    ])?;
    Ok(())
}

pub fn delete(conn: &Connection, school_id: &str, id: &str) -> Result<(), StoreError> {
    conn.prepare_cached("DELETE FROM excusals WHERE id = ?1 AND school_id = ?2")?
        .execute([id, school_id])?;
    Ok(())
}

/// A section's trips, by first day (the school's: a section id is one school's).
pub fn of_section(
    conn: &Connection,
    school_id: &str,
    section_id: &str,
) -> Result<Vec<Excusal>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM excusals WHERE section_id = ?1 AND school_id = ?2
         ORDER BY from_ms, id"
    ))?;
    let rows = stmt.query_map([section_id, school_id], excusal)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The trips of the sections a push's lessons belong to, whichever school (`domain::excusal`
/// checks the school): a handful of rows a section at most.
pub fn of_sections<'a>(
    conn: &Connection,
    sections: impl IntoIterator<Item = &'a str>,
) -> Result<Vec<Excusal>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM excusals WHERE section_id = ?1"
    ))?;
    let mut trips = Vec::new();
    for section in sections {
        for trip in stmt.query_map([section], excusal)? {
            trips.push(trip?);
        }
    }
    Ok(trips)
}

pub fn one(conn: &Connection, school_id: &str, id: &str) -> Result<Option<Excusal>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM excusals WHERE id = ?1 AND school_id = ?2"
    ))?;
    let mut rows = stmt.query_map([id, school_id], excusal)?;
    Ok(rows.next().transpose()?)
}
