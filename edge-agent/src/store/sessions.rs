//! Capture sessions and their marks. A teacher's mark is never overwritten by the machine; each
//! mark written comes with exactly one `mark_set` outbox event in the same transaction.

use rusqlite::{OptionalExtension, Transaction, params};
use serde::{Deserialize, Serialize};

use super::outbox::{self, OutboxPayload};
use super::{Store, StoreError, now_ms};

/// The wire's enums, with their one text form (`shared_proto::vocabulary`): the box stores the
/// words the server stores.
pub use shared_proto::sync::{MarkSource, MarkStatus};

#[derive(Clone, Debug, PartialEq)]
pub struct Mark {
    pub student_id: String,
    pub status: MarkStatus,
    pub source: MarkSource,
    pub score: Option<f32>,
    /// For review marks: whom the face looked like.
    pub candidates: Option<Candidates>,
}

/// A student and how similar a face was to them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Scored {
    pub student: String,
    pub score: f32,
}

/// A review mark's candidates: its face's best students, best first (empty for a student the box
/// cannot recognise). Stored as a JSON list of `{student, score}` in `marks.candidates`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Candidates(pub Vec<Scored>);

impl Candidates {
    fn to_json(&self) -> String {
        serde_json::to_string(self).expect("candidates are plain data")
    }
}

/// A session nobody has closed yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenSession {
    pub id: String,
    pub section_id: String,
    pub started_at: i64,
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

/// Writes a mark: a capture's (once per student), a teacher's, or a correction pulled from the
/// server. It must open no temporary B-tree (a test holds it to that; schema 7 wrote the marks'
/// CHECKs so that it does not).
pub(super) const SET_MARK: &str =
    "INSERT INTO marks (session_id, student_id, status, source, score,
        candidates, decided_at, decided_by)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
    ON CONFLICT (session_id, student_id) DO UPDATE SET status = ?3, source = ?4, score = ?5,
        candidates = ?6, decided_at = ?7, decided_by = ?8";

fn write_mark(
    tx: &Transaction<'_>,
    session_id: &str,
    mark: &Mark,
    by: Option<&str>,
) -> Result<(), StoreError> {
    let at = now_ms();
    tx.prepare_cached(SET_MARK)?.execute(params![
        session_id,
        mark.student_id,
        mark.status.as_str(),
        mark.source.as_str(),
        mark.score,
        mark.candidates.as_ref().map(Candidates::to_json),
        at,
        by
    ])?;
    outbox::push(
        tx,
        &OutboxPayload::MarkSet(outbox::MarkSet {
            session: session_id.to_owned(),
            student: mark.student_id.clone(),
            status: mark.status,
            source: mark.source,
            score: mark.score,
            at,
            by: by.map(str::to_owned),
        }),
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
            &OutboxPayload::SessionOpened(outbox::SessionOpened {
                session: session_id.clone(),
                section: record.section_id.to_owned(),
                started_at: Some(started_at),
            }),
        )?;
        for mark in record.marks {
            write_mark(&tx, &session_id, mark, None)?;
        }
        tx.commit()?;
        Ok(session_id)
    }

    /// Closes a session at `at` (ms; never before it started) and queues its `session_closed`
    /// event in the same transaction. Only the first close counts: closing a closed session
    /// changes nothing, queues nothing and returns `false`.
    pub fn close_session(&mut self, session_id: &str, at: i64) -> Result<bool, StoreError> {
        let tx = self.conn.transaction()?;
        let found: Option<(i64, Option<i64>)> = tx
            .query_row(
                "SELECT started_at, closed_at FROM capture_sessions WHERE id = ?1",
                [session_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let closed_at = match found {
            None => return Err(StoreError::UnknownSession(session_id.to_owned())),
            Some((_, Some(_))) => return Ok(false),
            Some((started_at, None)) => at.max(started_at),
        };
        tx.execute(
            "UPDATE capture_sessions SET closed_at = ?2 WHERE id = ?1",
            params![session_id, closed_at],
        )?;
        outbox::push(
            &tx,
            &OutboxPayload::SessionClosed(outbox::SessionClosed {
                session: session_id.to_owned(),
                closed_at,
            }),
        )?;
        tx.commit()?;
        Ok(true)
    }

    /// Sessions not closed yet, oldest first.
    pub fn open_sessions(&self) -> Result<Vec<OpenSession>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT id, section_id, started_at FROM capture_sessions WHERE closed_at IS NULL
             ORDER BY started_at, id",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(OpenSession {
                id: r.get(0)?,
                section_id: r.get(1)?,
                started_at: r.get(2)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// When the session was closed; `None` while it is open.
    pub fn session_closed_at(&self, session_id: &str) -> Result<Option<i64>, StoreError> {
        self.conn
            .query_row(
                "SELECT closed_at FROM capture_sessions WHERE id = ?1",
                [session_id],
                |r| r.get(0),
            )
            .optional()?
            .ok_or_else(|| StoreError::UnknownSession(session_id.to_owned()))
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
                .prepare_cached(
                    "SELECT source = 'teacher' FROM marks WHERE session_id = ?1 AND student_id = ?2",
                )?
                .query_row(params![session_id, mark.student_id], |r| r.get(0))
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
            Ok((
                Mark {
                    student_id: r.get(0)?,
                    status: super::word(1, &r.get::<_, String>(1)?)?,
                    source: super::word(2, &r.get::<_, String>(2)?)?,
                    score: r.get::<_, Option<f64>>(3)?.map(|s| s as f32),
                    candidates: None,
                },
                r.get::<_, Option<String>>(4)?,
            ))
        })?;
        let mut marks = Vec::new();
        for row in rows {
            let (mut mark, candidates) = row?;
            if let Some(json) = candidates {
                // Only `write_mark` writes this column: anything else is damage, and showing a
                // review with no candidates would hide it.
                mark.candidates = Some(serde_json::from_str(&json).map_err(|e| {
                    StoreError::UnreadableCandidates {
                        session: session_id.to_owned(),
                        student: mark.student_id.clone(),
                        reason: e.to_string(),
                    }
                })?);
            }
            marks.push(mark);
        }
        Ok(marks)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::roster::{Enrolment, EnrolmentRole, Person, RosterImport, Section};

    /// A section `c1` with the student `ada` and a session whose machine sent her to review.
    fn session_with_review(candidates: Candidates) -> (Store, String) {
        let mut store = Store::open_in_memory().unwrap();
        let roster = RosterImport {
            sections: vec![Section {
                id: "c1".into(),
                title: "7B".into(),
                school_id: "o1".into(),
                active: true,
            }],
            students: vec![Person {
                id: "ada".into(),
                given_name: "Ada".into(),
                family_name: String::new(),
                active: true,
            }],
            enrolments: vec![Enrolment {
                section_id: "c1".into(),
                person_id: "ada".into(),
                role: EnrolmentRole::Student,
                active: true,
            }],
            ..RosterImport::default()
        };
        store.apply_roster(&roster, "test").unwrap();
        let marks = [Mark {
            student_id: "ada".into(),
            status: MarkStatus::Review,
            source: MarkSource::Machine,
            score: Some(0.4),
            candidates: Some(candidates),
        }];
        let session = store
            .record_session(&SessionRecord {
                section_id: "c1",
                n_frames: 1,
                unknown_faces: 0,
                too_small_faces: 0,
                not_on_roster: &[],
                marks: &marks,
            })
            .unwrap();
        (store, session)
    }

    /// The mark upsert, run once per student a capture saw, builds no temporary B-tree (schema 7):
    /// the CHECKs' `IN` lists built two per mark, most of a later capture's time.
    #[test]
    fn writing_a_mark_builds_no_temporary_b_tree() {
        let store = Store::open_in_memory().unwrap();
        let mut stmt = store.conn.prepare(&format!("EXPLAIN {SET_MARK}")).unwrap();
        // Unbound parameters are NULL: the program is the same.
        let mut rows = stmt.raw_query();
        let mut ops = Vec::new();
        while let Some(row) = rows.next().unwrap() {
            ops.push(row.get::<_, String>(1).unwrap());
        }
        assert!(ops.len() > 10, "{ops:?}");
        assert!(!ops.iter().any(|op| op == "OpenEphemeral"), "{ops:?}");
    }

    /// Marks take every word of their statuses and sources and no other: schema 7's CHECKs spell
    /// out the words of `MarkStatus` and `MarkSource`.
    #[test]
    fn marks_take_exactly_the_words_of_their_enums() {
        let (mut store, session) = session_with_review(Candidates(Vec::new()));
        let tx = store.conn.transaction().unwrap();
        let write = |status: &str, source: &str| {
            tx.prepare_cached(SET_MARK)?.execute(params![
                session,
                "ada",
                status,
                source,
                None::<f64>,
                None::<String>,
                1,
                None::<String>
            ])
        };
        for status in MarkStatus::WORDS {
            for source in MarkSource::WORDS {
                write(status, source).unwrap_or_else(|e| panic!("{status} by {source}: {e}"));
            }
        }
        for (status, source) in [
            ("here", "machine"),
            ("present", "robot"),
            ("Present", "teacher"),
        ] {
            let refused = write(status, source)
                .expect_err(&format!("{status} by {source} was taken"))
                .to_string();
            assert!(refused.contains("CHECK constraint failed"), "{refused}");
        }
    }

    #[test]
    fn review_candidates_are_stored_typed_and_read_back() {
        let candidates = Candidates(vec![
            Scored {
                student: "ada".into(),
                score: 0.4,
            },
            Scored {
                student: "bo".into(),
                score: 0.3,
            },
        ]);
        let (store, session) = session_with_review(candidates.clone());
        assert_eq!(
            store.marks(&session).unwrap()[0].candidates,
            Some(candidates)
        );
        // The column holds the list as earlier builds wrote it.
        let stored: String = store
            .conn
            .query_row("SELECT candidates FROM marks", [], |r| r.get(0))
            .unwrap();
        assert_eq!(
            stored,
            r#"[{"student":"ada","score":0.4},{"student":"bo","score":0.3}]"#
        );
    }

    /// Issue 14 (item 7): the box never told the server a session had ended.
    #[test]
    fn a_session_closes_once_with_one_event() {
        let (mut store, session) = session_with_review(Candidates::default());
        assert_eq!(store.open_sessions().unwrap().len(), 1);
        let started_at = store.open_sessions().unwrap()[0].started_at;
        let before = store.pending_events().unwrap().len();
        assert!(store.close_session(&session, started_at + 60_000).unwrap());
        // A second close (the screen quit after the teacher picked another section) is a no-op.
        assert!(!store.close_session(&session, started_at + 120_000).unwrap());
        let events = store.pending_events().unwrap();
        assert_eq!(events.len(), before + 1);
        let closed = events.last().unwrap();
        assert_eq!(
            OutboxPayload::from_row(&closed.kind, &closed.payload).unwrap(),
            OutboxPayload::SessionClosed(outbox::SessionClosed {
                session: session.clone(),
                closed_at: started_at + 60_000,
            })
        );
        assert_eq!(
            store.session_closed_at(&session).unwrap(),
            Some(started_at + 60_000)
        );
        assert!(store.open_sessions().unwrap().is_empty());
        assert!(matches!(
            store.close_session("nowhere", 0),
            Err(StoreError::UnknownSession(_))
        ));
        assert!(store.check_invariants().unwrap().is_empty());
    }

    /// Issue 14: unreadable candidates were read as none, silently.
    #[test]
    fn unreadable_candidates_are_an_error_naming_the_mark() {
        let (store, session) = session_with_review(Candidates::default());
        store
            .conn
            .execute("UPDATE marks SET candidates = 'ada?'", [])
            .unwrap();
        let error = store.marks(&session).unwrap_err();
        assert!(
            matches!(&error, StoreError::UnreadableCandidates { student, .. } if student == "ada"),
            "{error}"
        );
        assert!(error.to_string().contains(&session), "{error}");
    }
}
