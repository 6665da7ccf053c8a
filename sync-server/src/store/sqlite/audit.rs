//! The audit log on SQLite: appended in the transaction of the decision it records.

use rusqlite::{Connection, params};

use super::word;
use crate::domain::audit::{Entry, Query};
use crate::store::StoreError;

pub fn append(conn: &Connection, entry: &Entry) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO audit_log (school_id, at, actor, action, subject, detail)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        entry.school_id,
        entry.at,
        entry.actor,
        entry.action.as_str(),
        entry.subject,
        entry.detail
    ])?;
    Ok(())
}

pub fn entries(conn: &Connection, query: &Query) -> Result<Vec<Entry>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT school_id, at, actor, action, subject, detail FROM audit_log
         WHERE school_id = ?1 AND at >= ?2 AND at < ?3
           AND (?4 IS NULL OR action = ?4) AND (?5 IS NULL OR actor = ?5)
         ORDER BY at DESC, id DESC LIMIT ?6",
    )?;
    let rows = stmt.query_map(
        params![
            query.school_id,
            query.from,
            query.to,
            query.action.map(|a| a.as_str()),
            query.actor,
            query.limit as i64
        ],
        |r| {
            Ok(Entry {
                school_id: r.get(0)?,
                at: r.get(1)?,
                actor: r.get(2)?,
                action: word(r, 3)?,
                subject: r.get(4)?,
                detail: r.get(5)?,
            })
        },
    )?;
    Ok(rows.collect::<Result<_, _>>()?)
}
