//! Attendance as the server holds it after conflicts are resolved, and the counters for
//! `/metrics`.

use rusqlite::{Connection, Row, params};

use super::{feed, opt_word, word};
use shared_proto::sync::MarkStatus;

use crate::store::{
    AttendanceQuery, AttendanceRow, MachineDecisions, Millis, StoreCounts, StoreError, Tally,
    TallyRow,
};

/// Marks of sessions that started in the range, found through the sessions' start index and the
/// marks' primary key; then the marks whose session has not arrived, placed in time by their
/// decision (they have no section, so a query for a section leaves them out). Parameters:
/// school, from, to, section or NULL, student or NULL.
///
/// Each filter given is written as a plain equality (`section`, `student`), so SQLite seeks with
/// it: with `?5 IS NULL OR m.student_id = ?5` it read every mark of every session in the range,
/// 900,000 for a student's half year of a 1,000-student school (PERFORMANCE.md, issue 15).
pub(super) fn attendance_sql(section: bool, student: bool) -> String {
    if student && !section {
        return STUDENT_SQL.to_owned();
    }
    let by_section = if section {
        "s.section_id = ?4"
    } else {
        "?4 IS NULL"
    };
    let by_student = if student {
        "m.student_id = ?5"
    } else {
        "?5 IS NULL"
    };
    let sessions_index = if section {
        "sessions_section_start"
    } else {
        "sessions_school_start"
    };
    // The session's id is read from `s`, not from the mark (the same text): ordered by `s.id`, a
    // school's sessions index and the marks' key give the order, and SQLite sorts nothing
    // (schema 15).
    format!(
        "SELECT s.id, s.section_id, s.started_at, m.device_id, m.student_id, m.status,
               m.source, m.score, m.decided_at, m.decided_by, m.event_id, s.started_at AS placed
        FROM sessions s INDEXED BY {sessions_index}
        JOIN marks m ON m.session_id = s.id AND m.school_id = s.school_id
        WHERE s.school_id = ?1 AND s.started_at >= ?2 AND s.started_at < ?3
          AND {by_section} AND {by_student}
        UNION ALL
        SELECT m.session_id, NULL, NULL, m.device_id, m.student_id, m.status,
               m.source, m.score, m.decided_at, m.decided_by, m.event_id, m.decided_at
        FROM marks m
        WHERE m.session_pending = 1 AND ?4 IS NULL
          AND m.school_id = ?1 AND m.decided_at >= ?2 AND m.decided_at < ?3
          AND (?5 IS NULL OR m.student_id = ?5)
        ORDER BY placed, 1, 5"
    )
}

/// One student's marks in every section: `attendance_sql`'s first part reached through the
/// sections they have marks in (`student_sections`, schema 8), each section's sessions in the range
/// and the marks' primary key. A half year of a student of a 1,000-student school reads about 900
/// sessions instead of the school's 30,000 (PERFORMANCE.md, issue 15). `CROSS JOIN` holds SQLite
/// to that order: left to itself it may start from the school's sessions. Same parameters.
const STUDENT_SQL: &str = "SELECT m.session_id, s.section_id, s.started_at, m.device_id,
           m.student_id, m.status, m.source, m.score, m.decided_at, m.decided_by, m.event_id,
           s.started_at AS placed
    FROM student_sections ss
    CROSS JOIN sessions s INDEXED BY sessions_section_start
        ON s.school_id = ss.school_id AND s.section_id = ss.section_id
    CROSS JOIN marks m ON m.session_id = s.id AND m.student_id = ss.student_id
        AND m.school_id = s.school_id
    WHERE ss.school_id = ?1 AND ss.student_id = ?5 AND s.started_at >= ?2 AND s.started_at < ?3
      AND ?4 IS NULL
    UNION ALL
    SELECT m.session_id, NULL, NULL, m.device_id, m.student_id, m.status,
           m.source, m.score, m.decided_at, m.decided_by, m.event_id, m.decided_at
    FROM marks m
    WHERE m.session_pending = 1 AND ?4 IS NULL
      AND m.school_id = ?1 AND m.decided_at >= ?2 AND m.decided_at < ?3
      AND m.student_id = ?5
    ORDER BY placed, 1, 5";

pub fn attendance(
    conn: &Connection,
    query: &AttendanceQuery,
) -> Result<Vec<AttendanceRow>, StoreError> {
    let sql = attendance_sql(query.section_id.is_some(), query.student_id.is_some());
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(
        params![
            query.school_id,
            query.from,
            query.to,
            query.section_id,
            query.student_id
        ],
        row_from,
    )?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn row_from(r: &Row<'_>) -> rusqlite::Result<AttendanceRow> {
    Ok(AttendanceRow {
        session_id: r.get(0)?,
        section_id: r.get(1)?,
        started_at: r.get(2)?,
        device_id: r.get(3)?,
        student_id: r.get(4)?,
        status: word(r, 5)?,
        source: word(r, 6)?,
        score: r.get(7)?,
        decided_at: r.get(8)?,
        decided_by: r.get(9)?,
        event_id: r.get(10)?,
    })
}

/// SQLite's `MAX` picks the row of the maximum for the bare columns: the latest session itself.
pub fn latest_sessions(
    conn: &Connection,
    school_id: &str,
    from: Millis,
    to: Millis,
) -> Result<Vec<(String, String, Millis)>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT section_id, id, MAX(started_at) FROM sessions
         WHERE school_id = ?1 AND started_at >= ?2 AND started_at < ?3
         GROUP BY section_id ORDER BY section_id",
    )?;
    let rows = stmt.query_map(params![school_id, from, to], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Counted in SQL over `sessions_school_start` and the marks' primary key: weeks of a school's
/// marks never leave the database, only a row per hour and status.
pub fn counts_by_hour(
    conn: &Connection,
    school_id: &str,
    from: Millis,
    to: Millis,
) -> Result<Vec<(Millis, MarkStatus, u64)>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT s.started_at / 3600000 AS hour, m.status, COUNT(*)
         FROM sessions s JOIN marks m ON m.session_id = s.id AND m.school_id = s.school_id
         WHERE s.school_id = ?1 AND s.started_at >= ?2 AND s.started_at < ?3
         GROUP BY hour, m.status ORDER BY hour",
    )?;
    let rows = stmt.query_map(params![school_id, from, to], |r| {
        Ok((
            r.get::<_, i64>(0)? * 3_600_000,
            word(r, 1)?,
            r.get::<_, i64>(2)? as u64,
        ))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// `attendance_sql`'s two parts, counted instead of listed.
pub fn tally(conn: &Connection, query: &AttendanceQuery) -> Result<Tally, StoreError> {
    let section = query.section_id.is_some();
    let (by_section, sessions_index) = if section {
        ("s.section_id = ?4", "sessions_section_start")
    } else {
        ("?4 IS NULL", "sessions_school_start")
    };
    let sql = format!(
        "SELECT s.section_id, m.student_id, m.status, COUNT(*)
        FROM sessions s INDEXED BY {sessions_index}
        JOIN marks m ON m.session_id = s.id AND m.school_id = s.school_id
        WHERE s.school_id = ?1 AND s.started_at >= ?2 AND s.started_at < ?3 AND {by_section}
        GROUP BY s.section_id, m.student_id, m.status
        UNION ALL
        SELECT NULL, m.student_id, m.status, COUNT(*)
        FROM marks m
        WHERE m.session_pending = 1 AND ?4 IS NULL
          AND m.school_id = ?1 AND m.decided_at >= ?2 AND m.decided_at < ?3
        GROUP BY m.student_id, m.status"
    );
    let params = params![query.school_id, query.from, query.to, query.section_id];
    let mut stmt = conn.prepare_cached(&sql)?;
    let marks = stmt
        .query_map(params, |r| {
            Ok(TallyRow {
                section_id: r.get(0)?,
                student_id: r.get(1)?,
                status: word(r, 2)?,
                count: r.get::<_, i64>(3)? as u64,
            })
        })?
        .collect::<Result<_, _>>()?;
    let sql = format!(
        "SELECT s.section_id, COUNT(*) FROM sessions s INDEXED BY {sessions_index}
        WHERE s.school_id = ?1 AND s.started_at >= ?2 AND s.started_at < ?3 AND {by_section}
        GROUP BY s.section_id"
    );
    let params = params![query.school_id, query.from, query.to, query.section_id];
    let mut stmt = conn.prepare_cached(&sql)?;
    let sessions = stmt
        .query_map(params, |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))?
        .collect::<Result<_, _>>()?;
    Ok(Tally { marks, sessions })
}

pub fn machine_decisions(
    conn: &Connection,
    school_id: &str,
    from: Millis,
    to: Millis,
) -> Result<Vec<MachineDecisions>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT s.section_id, m.device_id, m.machine_status, m.status, m.source, COUNT(*)
         FROM sessions s JOIN marks m ON m.session_id = s.id AND m.school_id = s.school_id
         WHERE s.school_id = ?1 AND s.started_at >= ?2 AND s.started_at < ?3
           AND (m.machine_status IS NOT NULL OR m.source = 'machine')
         GROUP BY s.section_id, m.device_id, m.machine_status, m.status, m.source",
    )?;
    let rows = stmt.query_map(params![school_id, from, to], |r| {
        Ok(MachineDecisions {
            section_id: r.get(0)?,
            device_id: r.get(1)?,
            machine: opt_word(r, 2)?,
            status: word(r, 3)?,
            source: word(r, 4)?,
            count: r.get::<_, i64>(5)? as u64,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn counts(conn: &Connection) -> Result<StoreCounts, StoreError> {
    let events_applied: i64 = conn
        .prepare_cached("SELECT value FROM counters WHERE name = 'events_applied'")?
        .query_row([], |r| r.get(0))?;
    Ok(StoreCounts {
        events_applied: events_applied as u64,
        changes: feed::count(conn)?,
    })
}
