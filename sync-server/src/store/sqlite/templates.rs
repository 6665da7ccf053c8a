//! Face templates: the vector as a BLOB of little-endian f32 with its model id and embedding space
//! (NULL in rows from before spaces: read as the model's space), the aligned face crop a school
//! may keep with it (`SchoolSettings::keep_crops`), and tombstones
//! that keep a deleted template's id (never its vector) so a late `template_added` cannot bring
//! it back.

use rusqlite::types::Type;
use rusqlite::{Connection, OptionalExtension, Row, params};
use shared_proto::sync::Embedding;
use shared_proto::{EmbeddingSpace, ModelId};

use super::corrupt;
use crate::domain::event::Template;
use crate::store::{KeptCrop, StoreError, TemplateRead, stored_space};

/// Stores a new template.
pub fn insert(conn: &Connection, school_id: &str, template: &Template) -> Result<(), StoreError> {
    let blob: Vec<u8> = template
        .embedding
        .vector
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    conn.prepare_cached(
        "INSERT INTO templates
         (id, school_id, student_id, model_id, space, embedding, quality, source, created_at,
          tombstone)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 0)",
    )?
    .execute(params![
        template.id,
        school_id,
        template.student,
        template.embedding.model.to_string(),
        template.embedding.space.as_str(),
        blob,
        template.quality,
        template.source,
        template.created_at
    ])?;
    Ok(())
}

/// Turns a template (held or not yet seen) into a tombstone: the vector and the crop are purged.
pub fn tombstone(
    conn: &Connection,
    school_id: &str,
    template_id: &str,
    student_id: &str,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO templates (id, school_id, student_id, tombstone) VALUES (?1, ?2, ?3, 1)
         ON CONFLICT (id) DO UPDATE SET tombstone = 1, embedding = NULL, model_id = NULL, space = NULL,
           crop = NULL",
    )?
    .execute(params![template_id, school_id, student_id])?;
    Ok(())
}

/// Ids of a student's live templates.
pub fn live_ids(conn: &Connection, student_id: &str) -> Result<Vec<String>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT id FROM templates WHERE student_id = ?1 AND tombstone = 0 ORDER BY id",
    )?;
    let rows = stmt.query_map([student_id], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn templates_of(
    conn: &Connection,
    school_id: &str,
    read: &TemplateRead,
) -> Result<Vec<Template>, StoreError> {
    const LIVE: &str = "SELECT id, student_id, model_id, embedding, quality, source, created_at,
        space FROM templates WHERE school_id = ?1 AND tombstone = 0";
    let oldest_first = " ORDER BY created_at, id";
    match read {
        TemplateRead::School => {
            let mut stmt = conn.prepare_cached(&format!("{LIVE}{oldest_first}"))?;
            let rows = stmt.query_map([school_id], template_from_row)?;
            Ok(rows.collect::<Result<_, _>>()?)
        }
        TemplateRead::Student(student_id) => {
            let sql = format!("{LIVE} AND student_id = ?2{oldest_first}");
            let mut stmt = conn.prepare_cached(&sql)?;
            let rows = stmt.query_map([school_id, student_id], template_from_row)?;
            Ok(rows.collect::<Result<_, _>>()?)
        }
        TemplateRead::Ids(ids) => {
            let mut stmt = conn.prepare_cached(&format!("{LIVE} AND id = ?2"))?;
            let mut templates = Vec::with_capacity(ids.len());
            for id in ids {
                templates.extend(
                    stmt.query_row([school_id, id], template_from_row)
                        .optional()?,
                );
            }
            templates.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
            Ok(templates)
        }
    }
}

/// The id and space of each of the school's live templates, from the `templates_school` index
/// alone: no vector is read.
pub fn live_ids_of_school(
    conn: &Connection,
    school_id: &str,
) -> Result<Vec<(String, EmbeddingSpace)>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, model_id, space FROM templates INDEXED BY templates_school
         WHERE school_id = ?1 AND tombstone = 0",
    )?;
    let rows = stmt.query_map([school_id], |r| {
        let (model, space) = (r.get::<_, String>(1)?, r.get::<_, Option<String>>(2)?);
        let space =
            stored_space(space.as_deref(), &model).map_err(|e| corrupt(2, Type::Text, e))?;
        Ok((r.get(0)?, space))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn template_from_row(r: &Row<'_>) -> rusqlite::Result<Template> {
    let model_text: String = r.get(2)?;
    let model: ModelId = model_text.parse().map_err(|e| corrupt(2, Type::Text, e))?;
    let space = r.get::<_, Option<String>>(7)?;
    let space =
        stored_space(space.as_deref(), &model_text).map_err(|e| corrupt(7, Type::Text, e))?;
    let blob: Vec<u8> = r.get(3)?;
    if !blob.len().is_multiple_of(4) {
        return Err(corrupt(
            3,
            Type::Blob,
            format!("embedding of {} bytes", blob.len()),
        ));
    }
    let vector = blob
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    Ok(Template {
        id: r.get(0)?,
        student: r.get(1)?,
        embedding: Embedding {
            model,
            space,
            vector,
        },
        quality: r.get(4)?,
        source: r.get(5)?,
        created_at: r.get(6)?,
    })
}

/// Keeps `crop` with a live template of the school; false when there is none.
pub fn keep_crop(
    conn: &Connection,
    school_id: &str,
    template_id: &str,
    crop: &[u8],
) -> Result<bool, StoreError> {
    let changed = conn
        .prepare_cached(
            "UPDATE templates SET crop = ?3 WHERE id = ?2 AND school_id = ?1 AND tombstone = 0",
        )?
        .execute(params![school_id, template_id, crop])?;
    Ok(changed == 1)
}

/// Every kept crop without its bytes (`ids` `None`), or those of `ids` with theirs.
pub fn kept_crops(
    conn: &Connection,
    school_id: &str,
    ids: Option<&[String]>,
) -> Result<Vec<KeptCrop>, StoreError> {
    let kept = |crop: &str| {
        format!(
            "SELECT id, student_id, model_id, space, quality, {crop} FROM templates
             WHERE school_id = ?1 AND tombstone = 0 AND crop IS NOT NULL"
        )
    };
    let Some(ids) = ids else {
        let mut stmt = conn.prepare_cached(&format!("{} ORDER BY created_at, id", kept("x''")))?;
        let rows = stmt.query_map([school_id], kept_crop)?;
        return Ok(rows.collect::<Result<_, _>>()?);
    };
    let mut stmt = conn.prepare_cached(&format!("{} AND id = ?2", kept("crop")))?;
    let mut crops = Vec::with_capacity(ids.len());
    for id in ids {
        crops.extend(
            stmt.query_row(params![school_id, id], kept_crop)
                .optional()?,
        );
    }
    Ok(crops)
}

fn kept_crop(r: &Row<'_>) -> rusqlite::Result<KeptCrop> {
    let model: Option<String> = r.get(2)?;
    let space = r.get::<_, Option<String>>(3)?;
    let space = stored_space(space.as_deref(), model.as_deref().unwrap_or_default())
        .map_err(|e| corrupt(3, Type::Text, e))?;
    Ok(KeptCrop {
        template: r.get(0)?,
        student: r.get(1)?,
        space,
        quality: r.get::<_, Option<f32>>(4)?.unwrap_or_default(),
        crop: r.get(5)?,
    })
}

pub fn drop_crops(conn: &Connection, school_id: &str) -> Result<u64, StoreError> {
    let changed = conn
        .prepare_cached(
            "UPDATE templates SET crop = NULL WHERE school_id = ?1 AND crop IS NOT NULL",
        )?
        .execute([school_id])?;
    Ok(changed as u64)
}
