//! The audit log on MongoDB: one document per line, appended in the transaction of the decision
//! it records.

use mongodb::bson::doc;
use serde::{Deserialize, Serialize};

use super::error::DbError;
use super::names::AUDIT_LOG;
use super::tx::Tx;
use super::{MongoStore, collect};
use crate::domain::audit::{Action, Entry, Query};
use crate::store::{Millis, StoreError};

#[derive(Debug, Serialize, Deserialize)]
pub struct AuditDoc {
    pub school_id: Option<String>,
    pub at: Millis,
    pub actor: String,
    /// `Action`'s word.
    pub action: String,
    pub subject: String,
    pub detail: String,
}

impl AuditDoc {
    fn of(entry: &Entry) -> AuditDoc {
        AuditDoc {
            school_id: entry.school_id.clone(),
            at: entry.at,
            actor: entry.actor.clone(),
            action: entry.action.as_str().to_owned(),
            subject: entry.subject.clone(),
            detail: entry.detail.clone(),
        }
    }

    fn into_entry(self) -> Result<Entry, DbError> {
        let action: Action = self
            .action
            .parse()
            .map_err(|e| StoreError::Backend(format!("audit line: {e}")))?;
        Ok(Entry {
            school_id: self.school_id,
            at: self.at,
            actor: self.actor,
            action,
            subject: self.subject,
            detail: self.detail,
        })
    }
}

pub async fn append_in(tx: &mut Tx<'_>, entry: &Entry) -> Result<(), DbError> {
    tx.coll::<AuditDoc>(AUDIT_LOG)
        .insert_one(AuditDoc::of(entry))
        .session(&mut tx.session)
        .await?;
    Ok(())
}

pub async fn append(store: &MongoStore, entry: &Entry) -> Result<(), DbError> {
    store
        .coll::<AuditDoc>(AUDIT_LOG)
        .insert_one(AuditDoc::of(entry))
        .await?;
    Ok(())
}

pub async fn entries(store: &MongoStore, query: &Query) -> Result<Vec<Entry>, DbError> {
    let mut filter = doc! {
        "school_id": &query.school_id,
        "at": { "$gte": query.from, "$lt": query.to },
    };
    if let Some(action) = query.action {
        filter.insert("action", action.as_str());
    }
    if let Some(actor) = &query.actor {
        filter.insert("actor", actor);
    }
    let cursor = store
        .coll::<AuditDoc>(AUDIT_LOG)
        .find(filter)
        .sort(doc! { "at": -1, "_id": -1 })
        .limit(query.limit as i64)
        .await?;
    collect(cursor)
        .await?
        .into_iter()
        .map(AuditDoc::into_entry)
        .collect()
}
