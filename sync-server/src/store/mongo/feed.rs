//! The change feed: one document per school and entity key, moved to a new `seq` by every write of
//! that entity, read in `seq` order by `pull`. Seqs come from a per-school counter document, taken
//! at the end of the writing transaction while it holds the school's feed lock (see `tx`).

use std::collections::HashMap;

use mongodb::bson::{Document, doc};
use mongodb::options::ReturnDocument;
use serde::{Deserialize, Serialize};

use super::docs::to_document;
use super::error::DbError;
use super::names::{CHANGES, FEED_COUNTERS};
use super::tx::Tx;
use super::{MongoStore, collect};
use crate::domain::feed::{Change, Entry};
use crate::store::{ChangePage, StoreError};

#[derive(Debug, Serialize, Deserialize)]
struct ChangeDoc {
    school_id: String,
    seq: i64,
    key: String,
    /// The change in its storage form (`domain::feed`; embeddings as base64).
    body: Document,
}

#[derive(Debug, Deserialize)]
struct CounterDoc {
    seq: i64,
}

/// Writes a transaction's changes: each key once, at the position of its last write (the latest
/// state supersedes the earlier one), with consecutive new seqs.
pub async fn flush(tx: &mut Tx<'_>, school_id: &str, pending: Vec<Change>) -> Result<(), DbError> {
    if pending.is_empty() {
        return Ok(());
    }
    let keyed: Vec<(String, Change)> = pending.into_iter().map(|b| (b.key(), b)).collect();
    let last_position: HashMap<&str, usize> = keyed
        .iter()
        .enumerate()
        .map(|(i, (key, _))| (key.as_str(), i))
        .collect();
    let latest: Vec<&(String, Change)> = keyed
        .iter()
        .enumerate()
        .filter(|(i, (key, _))| last_position.get(key.as_str()) == Some(i))
        .map(|(_, change)| change)
        .collect();
    let n_changes = latest.len() as i64;
    let counter = tx
        .coll::<CounterDoc>(FEED_COUNTERS)
        .find_one_and_update(
            doc! { "_id": school_id },
            doc! { "$inc": { "seq": n_changes } },
        )
        .upsert(true)
        .return_document(ReturnDocument::After)
        .session(&mut tx.session)
        .await?
        .ok_or_else(|| StoreError::Backend(format!("no feed counter for school {school_id}")))?;
    let first_seq = counter.seq - n_changes + 1;
    let keys: Vec<&str> = latest.iter().map(|(key, _)| key.as_str()).collect();
    tx.coll::<Document>(CHANGES)
        .delete_many(doc! { "school_id": school_id, "key": { "$in": keys } })
        .session(&mut tx.session)
        .await?;
    let mut rows = Vec::with_capacity(latest.len());
    for (i, (key, body)) in latest.into_iter().enumerate() {
        rows.push(ChangeDoc {
            school_id: school_id.to_owned(),
            seq: first_seq + i as i64,
            key: key.clone(),
            body: to_document(body)?,
        });
    }
    tx.coll::<ChangeDoc>(CHANGES)
        .insert_many(rows)
        .session(&mut tx.session)
        .await?;
    Ok(())
}

pub async fn pull(
    store: &MongoStore,
    school_id: &str,
    cursor: u64,
    limit: usize,
) -> Result<ChangePage, DbError> {
    let cursor_db = i64::try_from(cursor).unwrap_or(i64::MAX);
    let n_rows = ChangePage::rows_to_read(limit);
    let found = store
        .coll::<ChangeDoc>(CHANGES)
        .find(doc! { "school_id": school_id, "seq": { "$gt": cursor_db } })
        .sort(doc! { "seq": 1 })
        .limit(n_rows as i64)
        // One batch: the page is read in one round trip.
        .batch_size(n_rows as u32)
        .await?;
    let mut read = Vec::with_capacity(n_rows);
    for row in collect(found).await? {
        let change: Change = mongodb::bson::from_document(row.body).map_err(|e| {
            DbError::corrupt(format!(
                "change {} of {school_id} is unreadable: {e}",
                row.seq
            ))
        })?;
        read.push(Entry {
            seq: row.seq as u64,
            change,
        });
    }
    Ok(ChangePage::from_read(cursor, limit, read))
}

pub async fn erasures_since(
    store: &MongoStore,
    school_id: &str,
    seq: u64,
) -> Result<Vec<(u64, String)>, DbError> {
    let cursor = store
        .coll::<ChangeDoc>(CHANGES)
        .find(doc! {
            "school_id": school_id,
            "seq": { "$gt": seq as i64 },
            "body.kind": "student_erased",
        })
        .sort(doc! { "seq": 1 })
        .await?;
    // An erasure that names no student is corruption, as on SQLite: skipping it would leave that
    // student's data on every box.
    collect(cursor)
        .await?
        .into_iter()
        .map(|c| match c.body.get_str("student") {
            Ok(student) => Ok((c.seq as u64, student.to_owned())),
            Err(e) => Err(DbError::corrupt(format!(
                "the erasure at seq {} of school {school_id}: {e}",
                c.seq
            ))),
        })
        .collect()
}
