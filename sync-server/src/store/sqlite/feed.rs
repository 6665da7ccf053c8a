//! The change feed: one row per school and entity key, moved to a new `seq` by every write of that
//! entity, and read in `seq` order by `pull`.
//!
//! Only the writer thread writes, one transaction at a time, so a new `seq` (the school's largest
//! plus one, read inside the transaction) is larger than every `seq` a reader can already see.

use rusqlite::{Connection, params};

use crate::domain::feed::{Change, Entry};
use crate::store::{ChangePage, StoreError};

/// Writes changes of one school within the current transaction.
pub struct Feed<'c> {
    conn: &'c Connection,
    school_id: &'c str,
    last_seq: Option<i64>,
}

impl<'c> Feed<'c> {
    pub fn new(conn: &'c Connection, school_id: &'c str) -> Feed<'c> {
        Feed {
            conn,
            school_id,
            last_seq: None,
        }
    }

    /// Upserts the row of `body`'s key with the next `seq`.
    pub fn write(&mut self, body: &Change) -> Result<(), StoreError> {
        let seq = match self.last_seq {
            Some(seq) => seq + 1,
            None => {
                let last: i64 = self
                    .conn
                    .prepare_cached(
                        "SELECT COALESCE(MAX(seq), 0) FROM changes WHERE school_id = ?1",
                    )?
                    .query_row([self.school_id], |r| r.get(0))?;
                last + 1
            }
        };
        let json = serde_json::to_string(body)
            .map_err(|e| StoreError::Backend(format!("cannot encode a change: {e}")))?;
        self.conn
            .prepare_cached(
                "INSERT INTO changes (school_id, seq, key, body) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (school_id, key) DO UPDATE SET seq = excluded.seq, body = excluded.body",
            )?
            .execute(params![self.school_id, seq, body.key(), json])?;
        self.last_seq = Some(seq);
        Ok(())
    }
}

pub fn pull(
    conn: &Connection,
    school_id: &str,
    cursor: u64,
    limit: usize,
) -> Result<ChangePage, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT seq, body FROM changes WHERE school_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
    )?;
    let cursor_sql = i64::try_from(cursor).unwrap_or(i64::MAX);
    let n_rows = ChangePage::rows_to_read(limit);
    let mut rows = stmt.query(params![school_id, cursor_sql, n_rows as i64])?;
    let mut read = Vec::with_capacity(n_rows);
    while let Some(row) = rows.next()? {
        let seq: i64 = row.get(0)?;
        let body: String = row.get(1)?;
        let change: Change = serde_json::from_str(&body)
            .map_err(|e| StoreError::Backend(format!("change {seq} is unreadable: {e}")))?;
        read.push(Entry {
            seq: seq as u64,
            change,
        });
    }
    Ok(ChangePage::from_read(cursor, limit, read))
}

pub fn count(conn: &Connection) -> Result<u64, StoreError> {
    let n: i64 = conn
        .prepare_cached("SELECT COUNT(*) FROM changes")?
        .query_row([], |r| r.get(0))?;
    Ok(n as u64)
}

pub fn erasures_since(
    conn: &Connection,
    school_id: &str,
    seq: u64,
) -> Result<Vec<(u64, String)>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT seq, json_extract(body, '$.student') FROM changes
         WHERE school_id = ?1 AND seq > ?2 AND json_extract(body, '$.kind') = 'student_erased'
         ORDER BY seq",
    )?;
    let rows = stmt.query_map(rusqlite::params![school_id, seq as i64], |r| {
        Ok((r.get::<_, i64>(0)? as u64, r.get::<_, Option<String>>(1)?))
    })?;
    // An erasure that names no student is corruption, as on MongoDB: skipping it would leave that
    // student's data on every box.
    rows.map(|row| match row? {
        (seq, Some(student)) => Ok((seq, student)),
        (seq, None) => Err(StoreError::Backend(format!(
            "the erasure at seq {seq} of school {school_id} names no student"
        ))),
    })
    .collect()
}
