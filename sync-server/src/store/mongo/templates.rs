//! Face templates and their tombstones, read inside a transaction (writes are `events::write`'s),
//! and the aligned face crops a school may keep with its live templates (`crop`, unset by a
//! tombstone; an erasure deletes the document).

use mongodb::bson::spec::BinarySubtype;
use mongodb::bson::{Binary, Document, doc};
use serde::Deserialize;

use super::docs::text;
use super::error::DbError;
use super::names::TEMPLATES;
use super::tx::Tx;
use super::{MongoStore, collect};
use crate::store::{CropRead, KeptCrop, stored_space};

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
        ids.push(text(&found?, TEMPLATES, "_id")?);
    }
    Ok(ids)
}

/// Keeps `crop` with a live template of the school; false when there is none.
pub async fn keep_crop(
    store: &MongoStore,
    school_id: &str,
    template_id: &str,
    crop: &[u8],
) -> Result<bool, DbError> {
    let crop = Binary {
        subtype: BinarySubtype::Generic,
        bytes: crop.to_vec(),
    };
    let updated = store
        .coll::<Document>(TEMPLATES)
        .update_one(
            doc! { "_id": template_id, "school_id": school_id, "tombstone": false },
            doc! { "$set": { "crop": crop } },
        )
        .await?;
    Ok(updated.matched_count == 1)
}

pub async fn kept_crops(
    store: &MongoStore,
    school_id: &str,
    read: CropRead<'_>,
) -> Result<Vec<KeptCrop>, DbError> {
    let mut projection = doc! { "student_id": 1, "model_id": 1, "space": 1, "quality": 1 };
    let mut filter =
        doc! { "school_id": school_id, "tombstone": false, "crop": { "$exists": true } };
    if let CropRead::Bytes(ids) = read {
        projection.insert("crop", 1);
        filter.insert("_id", doc! { "$in": ids });
    }
    let cursor = store
        .coll::<KeptCropDoc>(TEMPLATES)
        .find(filter)
        .projection(projection)
        .sort(doc! { "created_at": 1, "_id": 1 })
        .await?;
    collect(cursor)
        .await?
        .into_iter()
        .map(|d| {
            let model = d.model_id.as_deref().unwrap_or_default();
            let space = stored_space(d.space.as_deref(), model)
                .map_err(|e| DbError::corrupt(format!("template {}: {e}", d.id)))?;
            Ok(KeptCrop {
                template: d.id,
                student: d.student_id,
                space,
                quality: d.quality.unwrap_or_default(),
                crop: d.crop.map(|c| c.bytes).unwrap_or_default(),
            })
        })
        .collect()
}

/// The fields of a template `kept_crops` reads (`crop` only with `CropRead::Bytes`).
#[derive(Deserialize)]
struct KeptCropDoc {
    #[serde(rename = "_id")]
    id: String,
    student_id: String,
    #[serde(default)]
    model_id: Option<String>,
    #[serde(default)]
    space: Option<String>,
    #[serde(default)]
    quality: Option<f32>,
    #[serde(default)]
    crop: Option<Binary>,
}

pub async fn drop_crops(store: &MongoStore, school_id: &str) -> Result<u64, DbError> {
    let updated = store
        .coll::<Document>(TEMPLATES)
        .update_many(
            doc! { "school_id": school_id, "crop": { "$exists": true } },
            doc! { "$unset": { "crop": "" } },
        )
        .await?;
    Ok(updated.modified_count)
}
