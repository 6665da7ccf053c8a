//! Students, sections and consent. Withdrawing consent purges the student's templates and crops in
//! the same transaction.

use rusqlite::{OptionalExtension, params};

use super::outbox::{self, OutboxPayload};
use super::{Store, StoreError, now_ms};

pub use shared_proto::sync::Consent;

#[derive(Clone, Debug, PartialEq)]
pub struct StudentRecord {
    pub id: String,
    pub given_name: String,
    pub family_name: String,
    pub active: bool,
    pub consent: Consent,
}

/// A section as a teacher picks it: its id and title.
#[derive(Clone, Debug, PartialEq)]
pub struct SectionRecord {
    pub id: String,
    pub title: String,
}

impl Store {
    pub fn student(&self, id: &str) -> Result<StudentRecord, StoreError> {
        self.conn
            .query_row(
                "SELECT id, given_name, family_name, active, consent FROM students WHERE id = ?1",
                [id],
                |r| {
                    Ok(StudentRecord {
                        id: r.get(0)?,
                        given_name: r.get(1)?,
                        family_name: r.get(2)?,
                        active: r.get(3)?,
                        consent: super::word(4, &r.get::<_, String>(4)?)?,
                    })
                },
            )
            .optional()?
            .ok_or_else(|| StoreError::UnknownStudent(id.to_owned()))
    }

    /// Active students enrolled in an active section, by id.
    pub fn section_students(&self, section_id: &str) -> Result<Vec<String>, StoreError> {
        let exists: bool = self.conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM sections WHERE id = ?1)",
            [section_id],
            |r| r.get(0),
        )?;
        if !exists {
            return Err(StoreError::UnknownSection(section_id.to_owned()));
        }
        let mut stmt = self.conn.prepare(
            "SELECT s.id FROM enrolments e JOIN students s ON s.id = e.person_id
             WHERE e.section_id = ?1 AND e.role = 'student' AND e.active AND s.active ORDER BY s.id",
        )?;
        let ids = stmt.query_map([section_id], |r| r.get(0))?;
        Ok(ids.collect::<Result<_, _>>()?)
    }

    /// Active sections, by title then id: the teacher screen's section picker.
    pub fn sections(&self) -> Result<Vec<SectionRecord>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT id, title FROM sections WHERE active ORDER BY title, id")?;
        let rows = stmt.query_map([], |r| {
            Ok(SectionRecord {
                id: r.get(0)?,
                title: r.get(1)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Records a guardian's consent decision. Withdrawal deletes every template and kept crop of the
    /// student at once.
    pub fn set_consent(
        &mut self,
        student_id: &str,
        consent: Consent,
        by: &str,
    ) -> Result<usize, StoreError> {
        self.student(student_id)?;
        let tx = self.conn.transaction()?;
        let at = now_ms();
        tx.execute(
            "UPDATE students SET consent = ?2, consent_by = ?3, consent_at = ?4 WHERE id = ?1",
            params![student_id, consent.as_str(), by, at],
        )?;
        let templates_purged = if consent == Consent::Withdrawn {
            super::templates::purge_student(&tx, student_id)?
        } else {
            0
        };
        outbox::push(
            &tx,
            &OutboxPayload::ConsentChanged(outbox::ConsentChanged {
                student: student_id.to_owned(),
                consent,
                by: by.to_owned(),
                at,
                templates_purged,
            }),
        )?;
        Store::audit(
            &tx,
            by,
            "consent",
            &format!("{student_id}: {}", consent.as_str()),
        )?;
        tx.commit()?;
        Ok(templates_purged)
    }
}
