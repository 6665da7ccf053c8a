//! Face templates and their tombstones, read inside a transaction (writes are `events::write`'s).

use mongodb::bson::{Document, doc};

use super::error::DbError;
use super::names::TEMPLATES;
use super::tx::Tx;

/// Ids of a student's live templates.
pub async fn live_ids(tx: &mut Tx<'_>, student_id: &str) -> Result<Vec<String>, DbError> {
    let mut cursor = tx
        .coll::<Document>(TEMPLATES)
        .find(doc! { "student_id": student_id, "tombstone": false })
        .projection(doc! { "_id": 1 })
        .sort(doc! { "_id": 1 })
        .session(&mut tx.session)
        .await?;
    let mut ids = Vec::new();
    while let Some(found) = cursor.next(&mut tx.session).await {
        if let Ok(id) = found?.get_str("_id") {
            ids.push(id.to_owned());
        }
    }
    Ok(ids)
}
