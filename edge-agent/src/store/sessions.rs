//! Capture sessions and their marks. A teacher's mark is never overwritten by the machine; each
//! mark written comes with exactly one `mark_set` outbox event in the same transaction.

use rusqlite::{OptionalExtension, Transaction, params};
use serde::Serialize;

use super::{Store, StoreError, now_ms, outbox};

/// The wire's enums, with their one text form (`shared_proto::vocabulary`): the box stores the
/// words the server stores.
pub use shared_proto::sync::{MarkSource, MarkStatus};

#[derive(Clone, Debug, PartialEq)]
pub struct Mark {
    pub student_id: String,
    pub status: MarkStatus,
    pub source: MarkSource,
    pub score: Option<f32>,
    /// JSON list of `{student, score}` for review marks.
    pub candidates: Option<String>,
}

/// What a capture found, for storing.
pub struct SessionRecord<'a> {
    pub section_id: &'a str,
    pub n_frames: usize,
    pub unknown_faces: usize,
    pub too_small_faces: usize,
    pub not_on_roster: &'a [String],
    pub marks: &'a [Mark],
}

#[derive(Serialize)]
struct MarkSet<'a> {
    session: &'a str,
    student: &'a str,
    status: MarkStatus,
    source: MarkSource,
    score: Option<f32>,
    at: i64,
    by: Option<&'a str>,
}

fn write_mark(
    tx: &Transaction<'_>,
    session_id: &str,
    mark: &Mark,
    by: Option<&str>,
) -> Result<(), StoreError> {
    let at = now_ms();
    tx.execute(
        "INSERT INTO marks (session_id, student_id, status, source, score, candidates, decided_at, decided_by)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT (session_id, student_id) DO UPDATE SET status = ?3, source = ?4, score = ?5,
             candidates = ?6, decided_at = ?7, decided_by = ?8",
        params![
            session_id,
            mark.student_id,
            mark.status.as_str(),
            mark.source.as_str(),
            mark.score,
            mark.candidates,
            at,
            by
        ],
    )?;
    outbox::push(
        tx,
        "mark_set",
        &MarkSet {
            session: session_id,
            student: &mark.student_id,
            status: mark.status,
            source: mark.source,
            score: mark.score,
            at,
            by,
        },
    )?;
    Ok(())
}

impl Store {
    /// Stores a new capture session and its machine marks in one transaction; returns its id.
    pub fn record_session(&mut self, record: &SessionRecord<'_>) -> Result<String, StoreError> {
        let session_id = uuid::Uuid::now_v7().to_string();
        let started_at = now_ms();
        let tx = self.conn.transaction()?;
        tx.execute(
            "INSERT INTO capture_sessions (id, section_id, started_at, n_frames, unknown_faces, too_small_faces, not_on_roster)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                session_id,
                record.section_id,
                started_at,
                record.n_frames as i64,
                record.unknown_faces as i64,
                record.too_small_faces as i64,
                serde_json::to_string(record.not_on_roster).expect("strings serialise"),
            ],
        )
        .map_err(|e| match e {
            rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::ConstraintViolation => {
                StoreError::UnknownSection(record.section_id.to_owned())
            }
            e => e.into(),
        })?;
        outbox::push(
            &tx,
            "session_opened",
            &serde_json::json!({"session": session_id, "section": record.section_id, "started_at": started_at}),
        )?;
        for mark in record.marks {
            write_mark(&tx, &session_id, mark, None)?;
        }
        tx.commit()?;
        Ok(session_id)
    }

    /// Applies a later capture of the same session: machine marks change, teacher marks stay.
    pub fn update_machine_marks(
        &mut self,
        session_id: &str,
        marks: &[Mark],
    ) -> Result<usize, StoreError> {
        self.session_section(session_id)?;
        let tx = self.conn.transaction()?;
        let mut n_written = 0;
        for mark in marks {
            let teacher_decided: bool = tx
                .query_row(
                    "SELECT source = 'teacher' FROM marks WHERE session_id = ?1 AND student_id = ?2",
                    params![session_id, mark.student_id],
                    |r| r.get(0),
                )
                .optional()?
                .unwrap_or(false);
            if !teacher_decided {
                write_mark(&tx, session_id, mark, None)?;
                n_written += 1;
            }
        }
        tx.commit()?;
        Ok(n_written)
    }

    /// A teacher's decision: always wins over the machine's.
    pub fn set_teacher_mark(
        &mut self,
        session_id: &str,
        student_id: &str,
        status: MarkStatus,
        by: &str,
    ) -> Result<(), StoreError> {
        let section = self.session_section(session_id)?;
        if !self
            .section_students(&section)?
            .iter()
            .any(|s| s == student_id)
        {
            self.student(student_id)?;
            return Err(StoreError::NotInSection {
                student: student_id.to_owned(),
                section,
            });
        }
        let tx = self.conn.transaction()?;
        let mark = Mark {
            student_id: student_id.to_owned(),
            status,
            source: MarkSource::Teacher,
            score: None,
            candidates: None,
        };
        write_mark(&tx, session_id, &mark, Some(by))?;
        Store::audit(
            &tx,
            by,
            "mark",
            &format!("{session_id} {student_id}: {}", status.as_str()),
        )?;
        tx.commit()?;
        Ok(())
    }

    pub fn marks(&self, session_id: &str) -> Result<Vec<Mark>, StoreError> {
        self.session_section(session_id)?;
        let mut stmt = self.conn.prepare(
            "SELECT student_id, status, source, score, candidates FROM marks WHERE session_id = ?1 ORDER BY student_id",
        )?;
        let rows = stmt.query_map([session_id], |r| {
            Ok(Mark {
                student_id: r.get(0)?,
                status: super::word(1, &r.get::<_, String>(1)?)?,
                source: super::word(2, &r.get::<_, String>(2)?)?,
                score: r.get::<_, Option<f64>>(3)?.map(|s| s as f32),
                candidates: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The latest session of `section_id` that started at or after `since_ms`.
    pub fn latest_session_since(
        &self,
        section_id: &str,
        since_ms: i64,
    ) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT id FROM capture_sessions WHERE section_id = ?1 AND started_at >= ?2
                 ORDER BY started_at DESC, id DESC LIMIT 1",
                params![section_id, since_ms],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// The section a session belongs to.
    pub fn session_section(&self, session_id: &str) -> Result<String, StoreError> {
        self.conn
            .query_row(
                "SELECT section_id FROM capture_sessions WHERE id = ?1",
                [session_id],
                |r| r.get(0),
            )
            .optional()?
            .ok_or_else(|| StoreError::UnknownSession(session_id.to_owned()))
    }
}
