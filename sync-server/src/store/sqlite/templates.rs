//! Face templates: the vector as a BLOB of little-endian f32 with its model id and embedding space
//! (NULL in rows from before spaces: read as the model's space), and tombstones
//! that keep a deleted template's id (never its vector) so a late `template_added` cannot bring
//! it back.

use rusqlite::{Connection, OptionalExtension, Row, params};
use shared_proto::sync::{ChangeBody, Embedding, TemplateData};
use shared_proto::{EmbeddingSpace, ModelId};

use super::feed::Feed;
use crate::store::StoreError;

/// What the store holds under a template id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Held {
    Nothing,
    Live { school_id: String },
    Tombstone { school_id: String },
}

pub fn held(conn: &Connection, template_id: &str) -> Result<Held, StoreError> {
    let row: Option<(String, bool)> = conn
        .prepare_cached("SELECT school_id, tombstone FROM templates WHERE id = ?1")?
        .query_row([template_id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    Ok(match row {
        None => Held::Nothing,
        Some((school_id, false)) => Held::Live { school_id },
        Some((school_id, true)) => Held::Tombstone { school_id },
    })
}

/// Stores a new template and announces it to the school's boxes.
pub fn insert(
    conn: &Connection,
    feed: &mut Feed<'_>,
    school_id: &str,
    template: &TemplateData,
) -> Result<(), StoreError> {
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
    feed.write(&ChangeBody::Template {
        template: template.clone(),
    })
}

/// Turns a template (held or not yet seen) into a tombstone: the vector is purged and every box
/// is told to purge its copy.
pub fn tombstone(
    conn: &Connection,
    feed: &mut Feed<'_>,
    school_id: &str,
    template_id: &str,
    student_id: &str,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO templates (id, school_id, student_id, tombstone) VALUES (?1, ?2, ?3, 1)
         ON CONFLICT (id) DO UPDATE SET tombstone = 1, embedding = NULL, model_id = NULL, space = NULL",
    )?
    .execute(params![template_id, school_id, student_id])?;
    feed.write(&ChangeBody::TemplateDeleted {
        template: template_id.to_owned(),
        student: student_id.to_owned(),
    })
}

/// Ids of a student's live templates.
pub fn live_ids(conn: &Connection, student_id: &str) -> Result<Vec<String>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT id FROM templates WHERE student_id = ?1 AND tombstone = 0 ORDER BY id",
    )?;
    let rows = stmt.query_map([student_id], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Tombstones every live template of a student (consent withdrawn, erasure).
pub fn tombstone_all_of(
    conn: &Connection,
    feed: &mut Feed<'_>,
    school_id: &str,
    student_id: &str,
) -> Result<(), StoreError> {
    for template_id in live_ids(conn, student_id)? {
        tombstone(conn, feed, school_id, &template_id, student_id)?;
    }
    Ok(())
}

pub fn templates_of(
    conn: &Connection,
    school_id: &str,
    student_id: &str,
) -> Result<Vec<TemplateData>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, student_id, model_id, embedding, quality, source, created_at, space FROM templates
         WHERE school_id = ?1 AND student_id = ?2 AND tombstone = 0
         ORDER BY created_at, id",
    )?;
    let rows = stmt.query_map([school_id, student_id], template_from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn template_from_row(r: &Row<'_>) -> rusqlite::Result<TemplateData> {
    let corrupt = |column: usize, why: String| {
        rusqlite::Error::FromSqlConversionFailure(column, rusqlite::types::Type::Blob, why.into())
    };
    let model: String = r.get(2)?;
    let model: ModelId = model.parse().map_err(|e| corrupt(2, format!("{e}")))?;
    let space = match r.get::<_, Option<String>>(7)? {
        Some(space) => space.parse().map_err(|e| corrupt(7, format!("{e}")))?,
        None => EmbeddingSpace::of_model(&model),
    };
    let blob: Vec<u8> = r.get(3)?;
    if !blob.len().is_multiple_of(4) {
        return Err(corrupt(3, format!("embedding of {} bytes", blob.len())));
    }
    let vector = blob
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    Ok(TemplateData {
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
