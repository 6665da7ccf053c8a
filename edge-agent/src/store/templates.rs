//! Face templates: one row of metadata plus one sqlite-vec vector each, always written and deleted
//! together. Vectors of different embedding spaces are never compared: every query names the space.
//! The model id stays beside it as provenance (which file made the vector).

use std::collections::BTreeMap;

use rusqlite::{Transaction, params};

use super::outbox::{self, OutboxPayload};
use super::{Store, StoreError, now_ms};

pub struct NewTemplate<'a> {
    pub student_id: &'a str,
    pub model_id: &'a str,
    /// The embedding space of `vector` (`shared_proto::EmbeddingSpace`).
    pub space: &'a str,
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

/// What [`Store::template_spaces_of`] found for a group of students.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TemplateSpaces {
    /// Templates per space, by space name.
    pub counts: Vec<(String, usize)>,
    /// Students holding templates, none of them in the space asked about.
    pub elsewhere_only: Vec<String>,
}

/// What [`Store::replace_templates`] did, by template id.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Replaced {
    pub added: Vec<String>,
    pub deleted: Vec<String>,
}

/// A template that can be made again from its kept crop, for `edge-agent reembed`.
#[derive(Clone, Debug, PartialEq)]
pub struct KeptCrop {
    pub uuid: String,
    pub student_id: String,
    pub quality: f32,
    /// The aligned face, interleaved RGB.
    pub crop: Vec<u8>,
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

/// Writes a template's row and its vector, which always go together: enrolment, re-embedding
/// and a pulled template all come through here.
pub(super) fn insert(
    tx: &Transaction<'_>,
    uuid: &str,
    template: &NewTemplate<'_>,
    created_at: i64,
) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT INTO face_templates (uuid, student_id, model_id, space, quality, source, created_at, crop)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
            uuid,
            template.student_id,
            template.model_id,
            template.space,
            template.quality,
            template.source,
            created_at,
            template.crop
        ])?;
    tx.prepare_cached(
        "INSERT INTO template_vectors (template_id, embedding, space) VALUES (?1, ?2, ?3)",
    )?
    .execute(params![
        tx.last_insert_rowid(),
        vector_bytes(template.vector),
        template.space
    ])?;
    Ok(())
}

/// Deletes every template (vector, metadata, crop) of a student; returns how many.
pub(super) fn purge_student(tx: &Transaction<'_>, student_id: &str) -> Result<usize, StoreError> {
    tx.prepare_cached(
        "DELETE FROM template_vectors WHERE template_id IN (SELECT id FROM face_templates WHERE student_id = ?1)",
    )?
    .execute([student_id])?;
    Ok(tx
        .prepare_cached("DELETE FROM face_templates WHERE student_id = ?1")?
        .execute([student_id])?)
}

/// Stores a new template of this box with its `template_added` event and audit line in `tx`;
/// returns its UUIDv7.
fn add_in(
    tx: &Transaction<'_>,
    template: &NewTemplate<'_>,
    actor: &str,
) -> Result<String, StoreError> {
    let uuid = uuid::Uuid::now_v7().to_string();
    insert(tx, &uuid, template, now_ms())?;
    outbox::push(
        tx,
        &OutboxPayload::TemplateAdded(outbox::TemplateAdded {
            template: uuid.clone(),
            student: template.student_id.to_owned(),
            model: template.model_id.to_owned(),
            space: Some(template.space.to_owned()),
            quality: template.quality,
            source: template.source.to_owned(),
        }),
    )?;
    Store::audit(
        tx,
        actor,
        "enrol",
        &format!("{}: template {uuid}", template.student_id),
    )?;
    Ok(uuid)
}

impl Store {
    /// Stores a template and its outbox event in one transaction; returns its UUIDv7.
    pub fn add_template(
        &mut self,
        template: &NewTemplate<'_>,
        actor: &str,
    ) -> Result<String, StoreError> {
        self.student(template.student_id)?;
        let tx = self.conn.transaction()?;
        let uuid = add_in(&tx, template, actor)?;
        tx.commit()?;
        Ok(uuid)
    }

    /// Re-enrolment: deletes every template of `student_id` (vector, metadata, kept crop), each
    /// with a `template_deleted` event so the server tombstones it and every other box purges
    /// it, and stores `templates` (the caller's new photos of that student) with their
    /// `template_added` events, all in one transaction: a crash leaves the old templates or the
    /// new ones, never neither.
    pub fn replace_templates(
        &mut self,
        student_id: &str,
        templates: &[NewTemplate<'_>],
        actor: &str,
    ) -> Result<Replaced, StoreError> {
        self.student(student_id)?;
        let tx = self.conn.transaction()?;
        let deleted: Vec<String> = tx
            .prepare("SELECT uuid FROM face_templates WHERE student_id = ?1 ORDER BY id")?
            .query_map([student_id], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        purge_student(&tx, student_id)?;
        for uuid in &deleted {
            outbox::push(
                &tx,
                &OutboxPayload::TemplateDeleted(outbox::TemplateDeleted {
                    template: uuid.clone(),
                    student: student_id.to_owned(),
                }),
            )?;
        }
        Store::audit(
            &tx,
            actor,
            "re-enrol",
            &format!("{student_id}: {} templates deleted", deleted.len()),
        )?;
        let mut added = Vec::with_capacity(templates.len());
        for template in templates {
            added.push(add_in(&tx, template, actor)?);
        }
        tx.commit()?;
        Ok(Replaced { added, deleted })
    }

    /// Templates of the given students in `space`.
    pub fn templates_of(
        &self,
        student_ids: &[String],
        space: &str,
    ) -> Result<Vec<TemplateRecord>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT t.uuid, t.student_id, v.embedding FROM face_templates t
             JOIN template_vectors v ON v.template_id = t.id
             WHERE t.student_id = ?1 AND t.space = ?2",
        )?;
        let mut out = Vec::new();
        for student_id in student_ids {
            let rows = stmt.query_map(params![student_id, space], |r| {
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

    /// Which spaces the given students' templates are in, and the students who hold templates
    /// but none in `space`: those must be enrolled again (or re-embedded) before the box running
    /// `space` can recognise them.
    pub fn template_spaces_of(
        &self,
        student_ids: &[String],
        space: &str,
    ) -> Result<TemplateSpaces, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT space, COUNT(*) FROM face_templates WHERE student_id = ?1 GROUP BY space",
        )?;
        let mut spaces = BTreeMap::new();
        let mut elsewhere_only = Vec::new();
        for student_id in student_ids {
            let rows = stmt.query_map([student_id], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as usize))
            })?;
            let mut held = Vec::new();
            for row in rows {
                let (found, n) = row?;
                *spaces.entry(found.clone()).or_insert(0) += n;
                held.push(found);
            }
            if !held.is_empty() && !held.iter().any(|h| h == space) {
                elsewhere_only.push(student_id.clone());
            }
        }
        Ok(TemplateSpaces {
            counts: spaces.into_iter().collect(),
            elsewhere_only,
        })
    }

    /// Every kept enrolment crop of a template outside `space`, oldest first.
    pub fn crops_outside(&self, space: &str) -> Result<Vec<KeptCrop>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT uuid, student_id, quality, crop FROM face_templates
             WHERE space != ?1 AND crop IS NOT NULL ORDER BY id",
        )?;
        let rows = stmt.query_map([space], |r| {
            Ok(KeptCrop {
                uuid: r.get(0)?,
                student_id: r.get(1)?,
                quality: r.get::<_, f64>(2)? as f32,
                crop: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Whether template `uuid`'s crop was already re-embedded into `space`: `reembed` makes one
    /// template per crop and space, however often it runs.
    pub fn reembedded_from(&self, uuid: &str, space: &str) -> Result<bool, StoreError> {
        Ok(self.conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM face_templates WHERE source = ?1 AND space = ?2)",
            params![shared_proto::crop::reembed_source(uuid), space],
            |r| r.get(0),
        )?)
    }

    /// Every template in `space`, of every student: what a school-wide `Gallery` holds.
    pub fn all_templates(&self, space: &str) -> Result<Vec<TemplateRecord>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT t.uuid, t.student_id, v.embedding FROM face_templates t
             JOIN template_vectors v ON v.template_id = t.id
             WHERE t.space = ?1 ORDER BY t.student_id",
        )?;
        let rows = stmt.query_map([space], |r| {
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
        space: &str,
        k: usize,
    ) -> Result<Vec<(String, f32)>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT t.student_id, v.distance FROM template_vectors v
             JOIN face_templates t ON t.id = v.template_id
             WHERE v.embedding MATCH ?1 AND v.k = ?2 AND v.space = ?3
             ORDER BY v.distance",
        )?;
        let rows = stmt.query_map(params![vector_bytes(vector), k as i64, space], |r| {
            Ok((r.get::<_, String>(0)?, 1.0 - r.get::<_, f64>(1)? as f32))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Every student holding at least one template, in id order.
    pub fn students_with_templates(&self) -> Result<Vec<String>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT DISTINCT student_id FROM face_templates ORDER BY student_id")?;
        let rows = stmt.query_map([], |r| r.get(0))?;
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
