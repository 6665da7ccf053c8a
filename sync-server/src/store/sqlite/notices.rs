//! The notice outbox (`domain::notice`) on SQLite. One process sends from it (the embedded store
//! is one server's), but claims still lease, so a notice whose sender died mid-try is taken again
//! when its lease runs out.

use rusqlite::types::Type;
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::{corrupt, word};
use crate::domain::notice::{Claim, Finish, Letter, Notice, State};
use crate::store::{NoticeQuery, StoreError};

const COLUMNS: &str = "id, school_id, kind, key, recipient, guardian_id, day, subject, text, html, \
                       facts, message_id, state, attempts, next_attempt_at, lease_owner, \
                       lease_until, last_error, created_at, sent_at, students";

fn notice(r: &Row<'_>) -> rusqlite::Result<Notice> {
    Ok(Notice {
        letter: Letter {
            id: r.get(0)?,
            school_id: r.get(1)?,
            kind: word(r, 2)?,
            key: r.get(3)?,
            recipient: r.get(4)?,
            guardian_id: r.get(5)?,
            day: r.get(6)?,
            subject: r.get(7)?,
            text: r.get(8)?,
            html: r.get(9)?,
            facts: r.get(10)?,
            message_id: r.get(11)?,
            students: serde_json::from_str(&r.get::<_, String>(20)?)
                .map_err(|e| corrupt(20, Type::Text, e))?,
        },
        state: word(r, 12)?,
        attempts: r.get(13)?,
        next_attempt_at: r.get(14)?,
        lease_owner: r.get(15)?,
        lease_until: r.get(16)?,
        last_error: r.get(17)?,
        created_at: r.get(18)?,
        sent_at: r.get(19)?,
    })
}

/// Inserts each notice whose key is new; returns how many were.
pub fn enqueue(conn: &Connection, notices: &[Notice]) -> Result<usize, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "INSERT INTO notices ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11,
             ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21)
         ON CONFLICT (key) DO NOTHING"
    ))?;
    let mut added = 0;
    for n in notices {
        added += stmt.execute(params![
            n.letter.id,
            n.letter.school_id,
            n.letter.kind.as_str(),
            n.letter.key,
            n.letter.recipient,
            n.letter.guardian_id,
            n.letter.day,
            n.letter.subject,
            n.letter.text,
            n.letter.html,
            n.letter.facts,
            n.letter.message_id,
            n.state.as_str(),
            n.attempts,
            n.next_attempt_at,
            n.lease_owner,
            n.lease_until,
            n.last_error,
            n.created_at,
            n.sent_at,
            serde_json::to_string(&n.letter.students).unwrap_or_else(|_| "[]".into()),
        ])?;
    }
    Ok(added)
}

/// Leases what `claim` may take, in one statement on the single writer. Each branch reads at most
/// `limit` rows along its partial index: sorting a whole backlog here held the writer, and every
/// push behind it, for a tenth of a second (PERFORMANCE.md, issue 16).
pub fn claim(conn: &Connection, claim: &Claim) -> Result<Vec<Notice>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "UPDATE notices SET state = 'sending', lease_owner = ?1, lease_until = ?2,
             attempts = attempts + 1
         WHERE id IN (
             SELECT id FROM (
                 SELECT * FROM (
                     SELECT id, next_attempt_at AS due FROM notices
                     WHERE state = 'queued' AND next_attempt_at <= ?3
                     ORDER BY next_attempt_at LIMIT ?4)
                 UNION ALL
                 SELECT * FROM (
                     SELECT id, lease_until AS due FROM notices
                     WHERE state = 'sending' AND lease_until <= ?3
                     ORDER BY lease_until LIMIT ?4)
             ) ORDER BY due LIMIT ?4)
         RETURNING {COLUMNS}"
    ))?;
    let mut out: Vec<Notice> = stmt
        .query_map(
            params![
                claim.owner,
                claim.lease_until,
                claim.now,
                claim.limit as i64
            ],
            notice,
        )?
        .collect::<Result<_, _>>()?;
    out.sort_by_key(|n| n.next_attempt_at);
    Ok(out)
}

pub fn finish(conn: &Connection, id: &str, owner: &str, f: &Finish) -> Result<bool, StoreError> {
    let n = conn
        .prepare_cached(
            "UPDATE notices SET state = ?3, attempts = ?4, next_attempt_at = ?5, last_error = ?6,
                 sent_at = ?7, lease_owner = NULL, lease_until = NULL
             WHERE id = ?1 AND lease_owner = ?2 AND state = 'sending'",
        )?
        .execute(params![
            id,
            owner,
            f.state.as_str(),
            f.attempts,
            f.next_attempt_at,
            f.last_error,
            f.sent_at
        ])?;
    Ok(n > 0)
}

pub fn resend(
    conn: &Connection,
    school_id: &str,
    id: &str,
    f: &Finish,
) -> Result<bool, StoreError> {
    let n = conn
        .prepare_cached(
            "UPDATE notices SET state = ?3, attempts = ?4, next_attempt_at = ?5, last_error = ?6,
                 sent_at = ?7
             WHERE id = ?1 AND school_id = ?2 AND state = 'failed'",
        )?
        .execute(params![
            id,
            school_id,
            f.state.as_str(),
            f.attempts,
            f.next_attempt_at,
            f.last_error,
            f.sent_at
        ])?;
    Ok(n > 0)
}

pub fn list(conn: &Connection, q: &NoticeQuery) -> Result<Vec<Notice>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM notices
         WHERE school_id = ?1 AND (?2 IS NULL OR day = ?2) AND (?3 IS NULL OR state = ?3)
         ORDER BY created_at DESC, id DESC LIMIT ?4"
    ))?;
    let found = stmt
        .query_map(
            params![
                q.school_id,
                q.day,
                q.state.map(State::as_str),
                q.limit as i64
            ],
            notice,
        )?
        .collect::<Result<_, _>>()?;
    Ok(found)
}

pub fn one(conn: &Connection, school_id: &str, id: &str) -> Result<Option<Notice>, StoreError> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM notices WHERE id = ?1 AND school_id = ?2"
        ))?
        .query_row([id, school_id], notice)
        .optional()?)
}

pub fn counts(conn: &Connection, school_id: &str) -> Result<Vec<(State, u64)>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT state, COUNT(*) FROM notices WHERE school_id = ?1 GROUP BY state ORDER BY state",
    )?;
    let found = stmt
        .query_map([school_id], |r| {
            Ok((word(r, 0)?, r.get::<_, i64>(1)? as u64))
        })?
        .collect::<Result<_, _>>()?;
    Ok(found)
}

pub fn secret(conn: &Connection, fresh: &str) -> Result<String, StoreError> {
    conn.prepare_cached(
        "INSERT INTO server_secrets (name, value) VALUES ('unsubscribe', ?1)
         ON CONFLICT (name) DO NOTHING",
    )?
    .execute([fresh])?;
    let held: Option<String> = conn
        .query_row(
            "SELECT value FROM server_secrets WHERE name = 'unsubscribe'",
            [],
            |r| r.get(0),
        )
        .optional()?;
    Ok(held.unwrap_or_else(|| fresh.to_owned()))
}

/// An erasure's part: the school's notices that name `student` are deleted, sent or not.
pub fn erase_student(conn: &Connection, school_id: &str, student: &str) -> Result<(), StoreError> {
    conn.prepare_cached(
        "DELETE FROM notices WHERE school_id = ?1
             AND EXISTS (SELECT 1 FROM json_each(notices.students) WHERE value = ?2)",
    )?
    .execute([school_id, student])?;
    Ok(())
}
