//! Face templates: one row of metadata plus one sqlite-vec vector each, always written and deleted
//! together. Vectors of different models are never compared: every query names the model id.

use rusqlite::{Transaction, params};
use serde::Serialize;

use super::{Store, StoreError, now_ms, outbox};

pub struct NewTemplate<'a> {
    pub student_id: &'a str,
    pub model_id: &'a str,
    pub vector: &'a [f32],
    pub quality: f32,
    /// Where it came from: `enrol-photo`, `enrol-camera`, `sync`.
    pub source: &'a str,
    /// The 112x112 aligned crop, kept only when asked (to re-embed after a model change).
    pub crop: Option<&'a [u8]>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct TemplateRecord {
    pub uuid: String,
    pub student_id: String,
    pub vector: Vec<f32>,
}

#[derive(Serialize)]
struct TemplateAdded<'a> {
    template: &'a str,
    student: &'a str,
    model: &'a str,
    quality: f32,
    source: &'a str,
}

pub(super) fn vector_bytes(vector: &[f32]) -> Vec<u8> {
    vector.iter().flat_map(|v| v.to_le_bytes()).collect()
}

pub(super) fn vector_from_bytes(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// Deletes every template (vector, metadata, crop) of a student; returns how many.
pub(super) fn purge_student(tx: &Transaction<'_>, student_id: &str) -> Result<usize, StoreError> {
    tx.execute(
        "DELETE FROM template_vectors WHERE template_id IN (SELECT id FROM face_templates WHERE student_id = ?1)",
        [student_id],
    )?;
    Ok(tx.execute(
        "DELETE FROM face_templates WHERE student_id = ?1",
        [student_id],
    )?)
}

impl Store {
    /// Stores a template and its outbox event in one transaction; returns its UUIDv7.
    pub fn add_template(
        &mut self,
        template: &NewTemplate<'_>,
        actor: &str,
    ) -> Result<String, StoreError> {
        self.student(template.student_id)?;
        let uuid = uuid::Uuid::now_v7().to_string();
        let tx = self.conn.transaction()?;
        tx.execute(
            "INSERT INTO face_templates (uuid, student_id, model_id, quality, source, created_at, crop)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                uuid,
                template.student_id,
                template.model_id,
                template.quality,
                template.source,
                now_ms(),
                template.crop
            ],
        )?;
        let rowid = tx.last_insert_rowid();
        tx.execute(
            "INSERT INTO template_vectors (template_id, embedding, model_id) VALUES (?1, ?2, ?3)",
            params![rowid, vector_bytes(template.vector), template.model_id],
        )?;
        outbox::push(
            &tx,
            "template_added",
            &TemplateAdded {
                template: &uuid,
                student: template.student_id,
                model: template.model_id,
                quality: template.quality,
                source: template.source,
            },
        )?;
        Store::audit(
            &tx,
            actor,
            "enrol",
            &format!("{}: template {uuid}", template.student_id),
        )?;
        tx.commit()?;
        Ok(uuid)
    }

    /// Templates of the given students made by `model_id`.
    pub fn templates_of(
        &self,
        student_ids: &[String],
        model_id: &str,
    ) -> Result<Vec<TemplateRecord>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT t.uuid, t.student_id, v.embedding FROM face_templates t
             JOIN template_vectors v ON v.template_id = t.id
             WHERE t.student_id = ?1 AND t.model_id = ?2",
        )?;
        let mut out = Vec::new();
        for student_id in student_ids {
            let rows = stmt.query_map(params![student_id, model_id], |r| {
                Ok(TemplateRecord {
                    uuid: r.get(0)?,
                    student_id: r.get(1)?,
                    vector: vector_from_bytes(&r.get::<_, Vec<u8>>(2)?),
                })
            })?;
            for row in rows {
                out.push(row?);
            }
        }
        Ok(out)
    }

    /// How many templates the given students hold per model id: tells "nobody is enrolled" from
    /// "everybody was enrolled with another embedder".
    pub fn template_models_of(
        &self,
        student_ids: &[String],
    ) -> Result<Vec<(String, usize)>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT model_id, COUNT(*) FROM face_templates WHERE student_id = ?1 GROUP BY model_id",
        )?;
        let mut counts = std::collections::BTreeMap::new();
        for student_id in student_ids {
            let rows = stmt.query_map([student_id], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as usize))
            })?;
            for row in rows {
                let (model, n) = row?;
                *counts.entry(model).or_insert(0) += n;
            }
        }
        Ok(counts.into_iter().collect())
    }

    /// Every template made by `model_id`, of every student: what a school-wide `Gallery` holds.
    pub fn all_templates(&self, model_id: &str) -> Result<Vec<TemplateRecord>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT t.uuid, t.student_id, v.embedding FROM face_templates t
             JOIN template_vectors v ON v.template_id = t.id
             WHERE t.model_id = ?1 ORDER BY t.student_id",
        )?;
        let rows = stmt.query_map([model_id], |r| {
            Ok(TemplateRecord {
                uuid: r.get(0)?,
                student_id: r.get(1)?,
                vector: vector_from_bytes(&r.get::<_, Vec<u8>>(2)?),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The `k` templates nearest to `vector` across the whole school (sqlite-vec KNN), as
    /// `(student_id, cosine similarity)`, best first.
    pub fn nearest_templates(
        &self,
        vector: &[f32],
        model_id: &str,
        k: usize,
    ) -> Result<Vec<(String, f32)>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT t.student_id, v.distance FROM template_vectors v
             JOIN face_templates t ON t.id = v.template_id
             WHERE v.embedding MATCH ?1 AND v.k = ?2 AND v.model_id = ?3
             ORDER BY v.distance",
        )?;
        let rows = stmt.query_map(params![vector_bytes(vector), k as i64, model_id], |r| {
            Ok((r.get::<_, String>(0)?, 1.0 - r.get::<_, f64>(1)? as f32))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn template_count(&self, student_id: &str) -> Result<usize, StoreError> {
        Ok(self.conn.query_row(
            "SELECT COUNT(*) FROM face_templates WHERE student_id = ?1",
            [student_id],
            |r| r.get::<_, i64>(0),
        )? as usize)
    }
}
