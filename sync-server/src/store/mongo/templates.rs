//! Face templates and their tombstones, inside a transaction; every write also writes the change
//! that tells the school's boxes.

use mongodb::bson::{Document, doc};
use shared_proto::sync::{ChangeBody, TemplateData};

use super::docs::TemplateDoc;
use super::error::DbError;
use super::names::TEMPLATES;
use super::tx::Tx;

/// What the store holds under a template id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Held {
    Nothing,
    Live { school_id: String },
    Tombstone { school_id: String },
}

pub async fn held(tx: &mut Tx<'_>, template_id: &str) -> Result<Held, DbError> {
    let found = tx
        .coll::<Document>(TEMPLATES)
        .find_one(doc! { "_id": template_id })
        .projection(doc! { "school_id": 1, "tombstone": 1 })
        .session(&mut tx.session)
        .await?;
    let Some(found) = found else {
        return Ok(Held::Nothing);
    };
    let school_id = found.get_str("school_id").unwrap_or_default().to_owned();
    Ok(if found.get_bool("tombstone").unwrap_or(false) {
        Held::Tombstone { school_id }
    } else {
        Held::Live { school_id }
    })
}

/// Stores a new template and announces it.
pub async fn insert(
    tx: &mut Tx<'_>,
    school_id: &str,
    template: &TemplateData,
) -> Result<(), DbError> {
    tx.coll::<TemplateDoc>(TEMPLATES)
        .insert_one(TemplateDoc::from_template(school_id, template))
        .session(&mut tx.session)
        .await?;
    tx.feed(ChangeBody::Template {
        template: template.clone(),
    })
}

/// Turns a template (held or not yet seen) into a tombstone: the vector is purged and every box
/// is told to purge its copy.
pub async fn tombstone(
    tx: &mut Tx<'_>,
    school_id: &str,
    template_id: &str,
    student_id: &str,
) -> Result<(), DbError> {
    tx.coll::<Document>(TEMPLATES)
        .update_one(
            doc! { "_id": template_id },
            doc! {
                "$set": { "tombstone": true },
                "$unset": { "model_id": "", "space": "", "embedding": "" },
                "$setOnInsert": { "school_id": school_id, "student_id": student_id },
            },
        )
        .upsert(true)
        .session(&mut tx.session)
        .await?;
    tx.feed(ChangeBody::TemplateDeleted {
        template: template_id.to_owned(),
        student: student_id.to_owned(),
    })
}

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

/// Tombstones every live template of a student (consent withdrawn).
pub async fn tombstone_all_of(
    tx: &mut Tx<'_>,
    school_id: &str,
    student_id: &str,
) -> Result<(), DbError> {
    for template_id in live_ids(tx, student_id).await? {
        tombstone(tx, school_id, &template_id, student_id).await?;
    }
    Ok(())
}
