//! Consistency of the stored state with itself and with the outbox: what must hold after any crash,
//! because every change commits in one transaction with its event. Read only; used by tests and
//! available to a future `doctor` command.

use rusqlite::params;

use super::outbox::OutboxPayload;
use super::{Store, StoreError};

/// Marks whose latest `mark_set` event is missing or says something else.
const MARKS_WITHOUT_THEIR_EVENT: &str = "
WITH events AS MATERIALIZED (
    SELECT id,
           json_extract(payload, '$.session') AS session_id,
           json_extract(payload, '$.student') AS student_id,
           json_extract(payload, '$.status') AS status,
           json_extract(payload, '$.source') AS source
    FROM outbox WHERE kind = 'mark_set'
),
latest AS (
    SELECT * FROM (
        SELECT *, ROW_NUMBER() OVER (PARTITION BY session_id, student_id ORDER BY id DESC) AS newest_first
        FROM events
    ) WHERE newest_first = 1
),
-- The latest office correction pulled for the mark (protocol 2), which may be what it holds.
pulled AS (
    SELECT * FROM (
        SELECT session_id, student_id, status, source,
               ROW_NUMBER() OVER (PARTITION BY session_id, student_id ORDER BY change_seq DESC, rowid DESC) AS newest_first
        FROM sync_marks
    ) WHERE newest_first = 1
)
SELECT m.session_id, m.student_id, m.status, m.source, l.id, l.status, l.source
FROM marks m
LEFT JOIN latest l ON l.session_id = m.session_id AND l.student_id = m.student_id
LEFT JOIN pulled p ON p.session_id = m.session_id AND p.student_id = m.student_id
WHERE (l.id IS NULL OR l.status IS NOT m.status OR l.source IS NOT m.source)
  AND (p.session_id IS NULL OR p.status IS NOT m.status OR p.source IS NOT m.source)
ORDER BY m.session_id, m.student_id";

/// `mark_set` events that name a mark that does not exist.
const EVENTS_WITHOUT_THEIR_MARK: &str = "
WITH events AS MATERIALIZED (
    SELECT json_extract(payload, '$.session') AS session_id,
           json_extract(payload, '$.student') AS student_id
    FROM outbox WHERE kind = 'mark_set'
)
SELECT e.session_id, e.student_id, COUNT(*) FROM events e
WHERE NOT EXISTS (
    SELECT 1 FROM marks m WHERE m.session_id = e.session_id AND m.student_id = e.student_id
)
GROUP BY e.session_id, e.student_id
ORDER BY e.session_id, e.student_id";

/// Capture sessions without exactly one `session_opened` event naming them and their section.
const SESSIONS_NOT_OPENED_ONCE: &str = "
WITH opened AS MATERIALIZED (
    SELECT json_extract(payload, '$.session') AS session_id,
           json_extract(payload, '$.section') AS section_id
    FROM outbox WHERE kind = 'session_opened'
)
SELECT s.id, COUNT(o.session_id) FROM capture_sessions s
LEFT JOIN opened o ON o.session_id = s.id AND o.section_id = s.section_id
GROUP BY s.id HAVING COUNT(o.session_id) != 1
ORDER BY s.id";

const OPENED_SESSIONS_MISSING: &str = "
SELECT o.id, json_extract(o.payload, '$.session') AS session_id FROM outbox o
WHERE o.kind = 'session_opened'
  AND NOT EXISTS (SELECT 1 FROM capture_sessions s WHERE s.id = session_id)
ORDER BY o.id";

/// Sessions whose `session_closed` events do not match their state: a closed session has exactly
/// one, an open one none.
const SESSIONS_NOT_CLOSED_ONCE: &str = "
WITH closed AS MATERIALIZED (
    SELECT json_extract(payload, '$.session') AS session_id FROM outbox WHERE kind = 'session_closed'
)
SELECT s.id, s.closed_at IS NOT NULL, COUNT(c.session_id) FROM capture_sessions s
LEFT JOIN closed c ON c.session_id = s.id
GROUP BY s.id HAVING COUNT(c.session_id) != (s.closed_at IS NOT NULL)
ORDER BY s.id";

const TEMPLATES_WITHOUT_VECTOR: &str = "
SELECT t.uuid FROM face_templates t
WHERE NOT EXISTS (SELECT 1 FROM template_vectors v WHERE v.template_id = t.id)
ORDER BY t.id";

const VECTORS_WITHOUT_TEMPLATE: &str = "
SELECT v.template_id FROM template_vectors v
WHERE NOT EXISTS (SELECT 1 FROM face_templates t WHERE t.id = v.template_id)
ORDER BY v.template_id";

const VECTORS_OF_ANOTHER_SPACE: &str = "
SELECT t.uuid, t.space, v.space FROM face_templates t
JOIN template_vectors v ON v.template_id = t.id
WHERE v.space IS NOT t.space
ORDER BY t.id";

/// Templates made on this box without exactly one `template_added` event. Templates that came from
/// the server (`sync`) are the server's: it needs no event about them.
const TEMPLATES_NOT_ADDED_ONCE: &str = "
WITH added AS MATERIALIZED (
    SELECT json_extract(payload, '$.template') AS template FROM outbox WHERE kind = 'template_added'
)
SELECT t.uuid, COUNT(a.template) FROM face_templates t
LEFT JOIN added a ON a.template = t.uuid
WHERE t.source != 'sync'
GROUP BY t.id HAVING COUNT(a.template) != 1
ORDER BY t.id";

/// `template_added` events whose template is gone although neither a later withdrawal on this box
/// nor a tombstone from the server purged it.
const ADDED_TEMPLATES_MISSING: &str = "
WITH added AS MATERIALIZED (
    SELECT id,
           json_extract(payload, '$.template') AS template,
           json_extract(payload, '$.student') AS student_id
    FROM outbox WHERE kind = 'template_added'
),
withdrawals AS MATERIALIZED (
    SELECT id, json_extract(payload, '$.student') AS student_id FROM outbox
    WHERE kind = 'consent_changed' AND json_extract(payload, '$.consent') = 'withdrawn'
)
SELECT a.id, a.template, a.student_id FROM added a
WHERE NOT EXISTS (SELECT 1 FROM face_templates t WHERE t.uuid = a.template)
  AND NOT EXISTS (SELECT 1 FROM withdrawals w WHERE w.student_id = a.student_id AND w.id > a.id)
  AND NOT EXISTS (SELECT 1 FROM sync_purges p WHERE p.template_uuid = a.template)
  AND NOT EXISTS (
      SELECT 1 FROM outbox d WHERE d.kind = 'template_deleted' AND d.id > a.id
        AND json_extract(d.payload, '$.template') = a.template
  )
ORDER BY a.id";

/// `template_deleted` events (a re-enrolment) whose template is still here.
const DELETED_TEMPLATES_PRESENT: &str = "
SELECT d.id, json_extract(d.payload, '$.template') AS template FROM outbox d
WHERE d.kind = 'template_deleted'
  AND EXISTS (SELECT 1 FROM face_templates t WHERE t.uuid = template)
ORDER BY d.id";

const WITHDRAWN_STUDENTS_WITH_TEMPLATES: &str = "
SELECT s.id, COUNT(*) FROM students s JOIN face_templates t ON t.student_id = s.id
WHERE s.consent = 'withdrawn'
GROUP BY s.id ORDER BY s.id";

/// Every query above that reads outbox payloads.
#[cfg(test)]
const PAYLOAD_QUERIES: &[&str] = &[
    MARKS_WITHOUT_THEIR_EVENT,
    EVENTS_WITHOUT_THEIR_MARK,
    SESSIONS_NOT_OPENED_ONCE,
    OPENED_SESSIONS_MISSING,
    SESSIONS_NOT_CLOSED_ONCE,
    TEMPLATES_NOT_ADDED_ONCE,
    ADDED_TEMPLATES_MISSING,
    DELETED_TEMPLATES_PRESENT,
];

/// The JSON paths those queries read, by the kind of row they read them from: a test evaluates
/// each on the payload `OutboxPayload` writes for that kind, so renaming a field fails there
/// rather than leaving a check that silently finds nothing.
#[cfg(test)]
const PAYLOAD_PATHS: &[(&str, &str)] = &[
    ("mark_set", "$.session"),
    ("mark_set", "$.student"),
    ("mark_set", "$.status"),
    ("mark_set", "$.source"),
    ("session_opened", "$.session"),
    ("session_opened", "$.section"),
    ("session_closed", "$.session"),
    ("template_added", "$.template"),
    ("template_deleted", "$.template"),
    ("template_added", "$.student"),
    ("consent_changed", "$.student"),
    ("consent_changed", "$.consent"),
];

impl Store {
    /// Every way the database disagrees with itself or with its outbox, one sentence each; empty
    /// when consistent. A failed `PRAGMA integrity_check` is reported alone: nothing else read
    /// from a damaged file can be trusted.
    pub fn check_invariants(&self) -> Result<Vec<String>, StoreError> {
        let integrity = self.integrity_check()?;
        if integrity != "ok" {
            return Ok(vec![format!("PRAGMA integrity_check: {integrity}")]);
        }
        let mut violations = Vec::new();
        self.check_foreign_keys(&mut violations)?;
        self.check_outbox_rows(&mut violations)?;
        self.check_sessions(&mut violations)?;
        self.check_marks(&mut violations)?;
        self.check_templates(&mut violations)?;
        Ok(violations)
    }

    /// Runs `sql` and turns each row into a sentence.
    fn violations_of(
        &self,
        sql: &str,
        violations: &mut Vec<String>,
        describe: impl Fn(&rusqlite::Row<'_>) -> rusqlite::Result<String>,
    ) -> Result<(), StoreError> {
        let mut stmt = self.conn.prepare(sql)?;
        let rows = stmt.query_map(params![], |row| describe(row))?;
        for row in rows {
            violations.push(row?);
        }
        Ok(())
    }

    fn check_foreign_keys(&self, violations: &mut Vec<String>) -> Result<(), StoreError> {
        self.violations_of("PRAGMA foreign_key_check", violations, |r| {
            Ok(format!(
                "{} row {} refers to a missing {} row",
                r.get::<_, String>(0)?,
                r.get::<_, Option<i64>>(1)?
                    .map_or_else(|| "?".to_owned(), |rowid| rowid.to_string()),
                r.get::<_, String>(2)?
            ))
        })
    }

    /// Every outbox row has a UUIDv7 id and reads back as an `OutboxPayload`: a row of a kind
    /// this build does not know, or whose payload does not decode, would stop every sync (the
    /// checks above, reading JSON paths, would pass over it).
    fn check_outbox_rows(&self, violations: &mut Vec<String>) -> Result<(), StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT id, kind, payload FROM outbox ORDER BY id")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })?;
        for row in rows {
            let (id, kind, payload) = row?;
            let is_v7 = uuid::Uuid::parse_str(&id).is_ok_and(|u| u.get_version_num() == 7);
            if !is_v7 {
                violations.push(format!("outbox event {id:?} ({kind}) has no UUIDv7 id"));
            }
            if let Err(e) = OutboxPayload::from_row(&kind, &payload) {
                violations.push(format!("outbox event {id} ({kind}) cannot be read: {e}"));
            }
        }
        Ok(())
    }

    fn check_sessions(&self, violations: &mut Vec<String>) -> Result<(), StoreError> {
        self.violations_of(SESSIONS_NOT_OPENED_ONCE, violations, |r| {
            Ok(format!(
                "capture session {} has {} session_opened events naming it and its section (expected exactly one)",
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?
            ))
        })?;
        self.violations_of(OPENED_SESSIONS_MISSING, violations, |r| {
            Ok(format!(
                "session_opened event {} names capture session {:?}, which does not exist",
                r.get::<_, String>(0)?,
                r.get::<_, Option<String>>(1)?.unwrap_or_default()
            ))
        })?;
        self.violations_of(SESSIONS_NOT_CLOSED_ONCE, violations, |r| {
            let closed: bool = r.get(1)?;
            Ok(format!(
                "capture session {} is {} but has {} session_closed events (expected {})",
                r.get::<_, String>(0)?,
                if closed { "closed" } else { "open" },
                r.get::<_, i64>(2)?,
                if closed { 1 } else { 0 }
            ))
        })
    }

    fn check_marks(&self, violations: &mut Vec<String>) -> Result<(), StoreError> {
        self.violations_of(MARKS_WITHOUT_THEIR_EVENT, violations, |r| {
            let (session, student) = (r.get::<_, String>(0)?, r.get::<_, String>(1)?);
            let (status, source) = (r.get::<_, String>(2)?, r.get::<_, String>(3)?);
            Ok(match r.get::<_, Option<String>>(4)? {
                None => format!("mark {session}/{student} has no mark_set event"),
                Some(event) => format!(
                    "mark {session}/{student} is {status} ({source}) but its latest mark_set event {event} says {} ({})",
                    r.get::<_, Option<String>>(5)?.unwrap_or_default(),
                    r.get::<_, Option<String>>(6)?.unwrap_or_default()
                ),
            })
        })?;
        self.violations_of(EVENTS_WITHOUT_THEIR_MARK, violations, |r| {
            Ok(format!(
                "{} mark_set events name {}/{}, which has no mark",
                r.get::<_, i64>(2)?,
                r.get::<_, Option<String>>(0)?.unwrap_or_default(),
                r.get::<_, Option<String>>(1)?.unwrap_or_default()
            ))
        })
    }

    fn check_templates(&self, violations: &mut Vec<String>) -> Result<(), StoreError> {
        self.violations_of(TEMPLATES_WITHOUT_VECTOR, violations, |r| {
            Ok(format!(
                "face template {} has no vector",
                r.get::<_, String>(0)?
            ))
        })?;
        self.violations_of(VECTORS_WITHOUT_TEMPLATE, violations, |r| {
            Ok(format!(
                "template vector {} has no face template",
                r.get::<_, i64>(0)?
            ))
        })?;
        self.violations_of(VECTORS_OF_ANOTHER_SPACE, violations, |r| {
            Ok(format!(
                "face template {} is in space {} but its vector is in {:?}",
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Option<String>>(2)?.unwrap_or_default()
            ))
        })?;
        self.violations_of(TEMPLATES_NOT_ADDED_ONCE, violations, |r| {
            Ok(format!(
                "face template {} has {} template_added events (expected exactly one)",
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?
            ))
        })?;
        self.violations_of(ADDED_TEMPLATES_MISSING, violations, |r| {
            Ok(format!(
                "template_added event {} names face template {} of {}, which does not exist although no later consent withdrawal purged it",
                r.get::<_, String>(0)?,
                r.get::<_, Option<String>>(1)?.unwrap_or_default(),
                r.get::<_, Option<String>>(2)?.unwrap_or_default()
            ))
        })?;
        self.violations_of(DELETED_TEMPLATES_PRESENT, violations, |r| {
            Ok(format!(
                "template_deleted event {} names face template {}, which is still here",
                r.get::<_, String>(0)?,
                r.get::<_, Option<String>>(1)?.unwrap_or_default()
            ))
        })?;
        self.violations_of(WITHDRAWN_STUDENTS_WITH_TEMPLATES, violations, |r| {
            Ok(format!(
                "student {} withdrew consent but still has {} face templates",
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::roster::{Enrolment, EnrolmentRole, Person, RosterImport, Section};
    use crate::store::{
        Consent, Mark, MarkSource, MarkStatus, NewTemplate, OutboxPayload, SessionRecord, now_ms,
    };
    use shared_proto::sync::{Change, ChangeBody};

    const SECTION: &str = "class-3m";
    const MODEL: &str = "test-model@000000";

    /// A store that has seen every kind of change: roster, consent granted and withdrawn,
    /// templates, a capture, a teacher mark and a later machine pass.
    struct Fixture {
        store: Store,
        session: String,
        /// The template of `ada`, who keeps her consent.
        template: String,
    }

    fn marks(statuses: &[(&str, MarkStatus)]) -> Vec<Mark> {
        statuses
            .iter()
            .map(|&(student, status)| Mark {
                student_id: student.to_owned(),
                status,
                source: MarkSource::Machine,
                score: (status != MarkStatus::Absent).then_some(0.6),
                candidates: None,
            })
            .collect()
    }

    fn fixture() -> Fixture {
        let mut store = Store::open_in_memory().unwrap();
        let students = ["ada", "bo", "cy"];
        let roster = RosterImport {
            sections: vec![Section {
                id: SECTION.into(),
                title: "Year 3 Maths".into(),
                school_id: "school".into(),
                active: true,
            }],
            students: students
                .iter()
                .map(|id| Person {
                    id: (*id).into(),
                    given_name: (*id).into(),
                    family_name: String::new(),
                    active: true,
                })
                .collect(),
            enrolments: students
                .iter()
                .map(|id| Enrolment {
                    section_id: SECTION.into(),
                    person_id: (*id).into(),
                    role: EnrolmentRole::Student,
                    active: true,
                })
                .collect(),
            ..RosterImport::default()
        };
        store.apply_roster(&roster, "test").unwrap();
        let mut template = String::new();
        for (i, student) in ["ada", "bo"].into_iter().enumerate() {
            store
                .set_consent(student, Consent::Granted, "guardian")
                .unwrap();
            let mut vector = vec![0.0f32; 512];
            vector[i] = 1.0;
            let uuid = store
                .add_template(
                    &NewTemplate {
                        student_id: student,
                        model_id: MODEL,
                        space: MODEL,
                        vector: &vector,
                        quality: 20.0,
                        source: "enrol-photo",
                        crop: None,
                    },
                    "enrol",
                )
                .unwrap();
            if student == "ada" {
                template = uuid;
            }
        }
        let first_pass = marks(&[
            ("ada", MarkStatus::Present),
            ("bo", MarkStatus::Review),
            ("cy", MarkStatus::Absent),
        ]);
        let session = store
            .record_session(&SessionRecord {
                section_id: SECTION,
                n_frames: 3,
                unknown_faces: 0,
                too_small_faces: 0,
                not_on_roster: &[],
                marks: &first_pass,
            })
            .unwrap();
        store
            .set_teacher_mark(&session, "cy", MarkStatus::Late, "ms-lee")
            .unwrap();
        let second_pass = marks(&[
            ("ada", MarkStatus::Present),
            ("bo", MarkStatus::Present),
            ("cy", MarkStatus::Absent),
        ]);
        store.update_machine_marks(&session, &second_pass).unwrap();
        store
            .set_consent("bo", Consent::Withdrawn, "guardian")
            .unwrap();
        Fixture {
            store,
            session,
            template,
        }
    }

    fn office(seq: u64, session: &str, student: &str, status: MarkStatus, at: i64) -> Change {
        Change {
            seq,
            body: ChangeBody::Mark {
                session: session.into(),
                student: student.into(),
                status,
                source: MarkSource::Office,
                decided_at: at,
                by: Some("office-ann".into()),
                event: uuid::Uuid::now_v7().to_string(),
            },
        }
    }

    #[test]
    fn office_corrections_of_this_boxs_sessions_apply_by_the_human_order() {
        let Fixture {
            mut store, session, ..
        } = fixture();
        let later = now_ms() + 60_000;
        let page = vec![
            // Beats the machine's present whatever its time.
            office(7, &session, "ada", MarkStatus::Absent, 1),
            // Loses to the teacher's later "late" here.
            office(8, &session, "cy", MarkStatus::Excused, 1),
            // Another box's session: not this box's business.
            office(9, "someone-elses-session", "bo", MarkStatus::Absent, later),
        ];
        let summary = store.apply_changes("school", &page, "9").unwrap();
        assert_eq!(summary.marks_corrected, 1);
        // A page applied twice changes nothing more.
        assert_eq!(
            store
                .apply_changes("school", &page, "9")
                .unwrap()
                .marks_corrected,
            0
        );
        let marks = store.marks(&session).unwrap();
        let of = |id: &str| marks.iter().find(|m| m.student_id == id).unwrap().clone();
        assert_eq!(
            (of("ada").status, of("ada").source),
            (MarkStatus::Absent, MarkSource::Office)
        );
        assert_eq!(
            (of("cy").status, of("cy").source),
            (MarkStatus::Late, MarkSource::Teacher)
        );
        // A later office decision beats the teacher's.
        let summary = store
            .apply_changes(
                "school",
                &[office(10, &session, "cy", MarkStatus::Excused, later)],
                "10",
            )
            .unwrap();
        assert_eq!(summary.marks_corrected, 1);
        let marks = store.marks(&session).unwrap();
        let cy = marks.iter().find(|m| m.student_id == "cy").unwrap();
        assert_eq!(
            (cy.status, cy.source),
            (MarkStatus::Excused, MarkSource::Office)
        );
        // Nothing queued for the server, which decided them, and every invariant holds.
        assert_eq!(store.check_invariants().unwrap(), Vec::<String>::new());
    }

    /// Breaks the fixture with `sql` (`{session}` and `{template}` stand for the fixture's ids) and
    /// compares every violation found with `expected`, where `{event}` matches any outbox id.
    fn check(sql: &str, expected: &[&str]) {
        let fixture = fixture();
        assert_eq!(
            fixture.store.check_invariants().unwrap(),
            Vec::<String>::new()
        );
        let fill = |text: &str| {
            text.replace("{session}", &fixture.session)
                .replace("{template}", &fixture.template)
        };
        fixture.store.conn.execute_batch(&fill(sql)).unwrap();
        let found = fixture.store.check_invariants().unwrap();
        let outbox_ids: Vec<String> = fixture
            .store
            .pending_events()
            .unwrap()
            .into_iter()
            .map(|e| e.id)
            .filter(|id| id.len() == 36)
            .collect();
        let found: Vec<String> = found
            .into_iter()
            .map(|line| {
                outbox_ids
                    .iter()
                    .fold(line, |line, id| line.replace(id, "{event}"))
            })
            .collect();
        let expected: Vec<String> = expected.iter().map(|e| fill(e)).collect();
        assert_eq!(found, expected);
    }

    #[test]
    fn every_payload_path_the_checks_read_is_written_by_the_payload_type() {
        let store = Store::open_in_memory().unwrap();
        let samples = super::super::outbox::tests::one_of_each();
        for (kind, path) in PAYLOAD_PATHS {
            let payload = samples
                .iter()
                .find(|p| p.kind() == *kind)
                .unwrap_or_else(|| panic!("no payload of kind {kind}"));
            let found: rusqlite::types::Value = store
                .conn
                .query_row(
                    "SELECT json_extract(?1, ?2)",
                    params![payload.payload_json(), path],
                    |r| r.get(0),
                )
                .unwrap();
            assert_ne!(
                found,
                rusqlite::types::Value::Null,
                "{kind} {path} in {}",
                payload.payload_json()
            );
        }
        for sql in PAYLOAD_QUERIES {
            for rest in sql.split("'$.").skip(1) {
                let path = format!("$.{}", &rest[..rest.find('\'').unwrap()]);
                assert!(
                    PAYLOAD_PATHS.iter().any(|(_, p)| *p == path),
                    "{path} is read by a check but not listed in PAYLOAD_PATHS"
                );
            }
        }
    }

    #[test]
    fn a_store_that_saw_every_kind_of_change_is_consistent() {
        let fixture = fixture();
        assert_eq!(fixture.store.integrity_check().unwrap(), "ok");
        assert_eq!(
            fixture.store.check_invariants().unwrap(),
            Vec::<String>::new()
        );
        // The teacher's late survived the second pass; bo's withdrawal purged his template.
        let marks = fixture.store.marks(&fixture.session).unwrap();
        assert_eq!(marks[2].status, MarkStatus::Late);
        assert_eq!(fixture.store.template_count("bo").unwrap(), 0);
    }

    /// Issue 14 (item 7): a closed session has one `session_closed` event, an open one none.
    #[test]
    fn a_session_closed_without_its_event_or_twice_is_found() {
        check(
            "UPDATE capture_sessions SET closed_at = started_at + 1",
            &["capture session {session} is closed but has 0 session_closed events (expected 1)"],
        );
        check(
            "INSERT INTO outbox (id, kind, payload, created_at)
             VALUES ('01900000-0000-7000-8000-000000000002', 'session_closed',
                     json_object('session', '{session}', 'closed_at', 1), 0)",
            &["capture session {session} is open but has 1 session_closed events (expected 0)"],
        );
    }

    /// Issue 14 (item 7): a re-enrolment deletes the old templates, each with a
    /// `template_deleted` event, in the transaction that adds the new one.
    #[test]
    fn a_re_enrolment_deletes_the_old_templates_with_one_event_each() {
        let mut fixture = fixture();
        let store = &mut fixture.store;
        let before = store.pending_events().unwrap().len();
        let vector = vec![0.5f32; 512];
        let replaced = store
            .replace_templates(
                "ada",
                &[NewTemplate {
                    student_id: "ada",
                    model_id: MODEL,
                    space: MODEL,
                    vector: &vector,
                    quality: 20.0,
                    source: "enrol-photo",
                    crop: None,
                }],
                "enrol",
            )
            .unwrap();
        assert_eq!(replaced.deleted, vec![fixture.template.clone()]);
        assert_eq!(replaced.added.len(), 1);
        assert_eq!(store.template_count("ada").unwrap(), 1);
        let events = store.pending_events().unwrap();
        let new: Vec<OutboxPayload> = events[before..]
            .iter()
            .map(|e| OutboxPayload::from_row(&e.kind, &e.payload).unwrap())
            .collect();
        assert_eq!(new.len(), 2, "{new:?}");
        assert_eq!(
            new[0],
            OutboxPayload::TemplateDeleted(crate::store::outbox::TemplateDeleted {
                template: fixture.template.clone(),
                student: "ada".into(),
            })
        );
        assert!(
            matches!(&new[1], OutboxPayload::TemplateAdded(added) if added.template == replaced.added[0])
        );
        assert_eq!(store.check_invariants().unwrap(), Vec::<String>::new());
        // A deletion whose template is still here is found.
        store
            .conn
            .execute(
                "UPDATE outbox SET payload = json_set(payload, '$.template', ?1)
                 WHERE kind = 'template_deleted'",
                [&replaced.added[0]],
            )
            .unwrap();
        let found = store.check_invariants().unwrap();
        assert!(
            found
                .iter()
                .any(|v| v.contains("template_deleted event") && v.contains("still here")),
            "{found:?}"
        );
    }

    #[test]
    fn outbox_rows_that_do_not_read_back_are_found() {
        let fixture = fixture();
        let conn = &fixture.store.conn;
        let first = |kind: &str| -> String {
            conn.query_row(
                "SELECT id FROM outbox WHERE kind = ?1 ORDER BY id LIMIT 1",
                [kind],
                |r| r.get(0),
            )
            .unwrap()
        };
        let (opened, mark) = (first("session_opened"), first("mark_set"));
        conn.execute(
            "UPDATE outbox SET kind = 'session_paused' WHERE id = ?1",
            [&opened],
        )
        .unwrap();
        conn.execute(
            "UPDATE outbox SET payload = json_remove(payload, '$.status') WHERE id = ?1",
            [&mark],
        )
        .unwrap();
        let found = fixture.store.check_invariants().unwrap();
        let unreadable: Vec<&String> = found
            .iter()
            .filter(|v| v.contains("cannot be read"))
            .collect();
        assert_eq!(unreadable.len(), 2, "{found:?}");
        assert!(
            unreadable[0].contains(&opened) && unreadable[0].contains("session_paused"),
            "{found:?}"
        );
        assert!(
            unreadable[1].contains(&mark) && unreadable[1].contains("status"),
            "{found:?}"
        );
    }

    #[test]
    fn a_mark_changed_without_its_event_is_found() {
        check(
            "UPDATE marks SET status = 'excused' WHERE student_id = 'ada'",
            &[
                "mark {session}/ada is excused (machine) but its latest mark_set event {event} says present (machine)",
            ],
        );
    }

    #[test]
    fn a_mark_without_events_and_events_without_a_mark_are_found() {
        check(
            "DELETE FROM outbox WHERE kind = 'mark_set' AND json_extract(payload, '$.student') = 'bo';
             DELETE FROM marks WHERE student_id = 'cy';",
            &[
                "mark {session}/bo has no mark_set event",
                "2 mark_set events name {session}/cy, which has no mark",
            ],
        );
    }

    #[test]
    fn a_session_opened_twice_or_never_is_found() {
        check(
            "INSERT INTO outbox (id, kind, payload, created_at)
             SELECT '01900000-0000-7000-8000-000000000001', kind, payload, created_at FROM outbox
             WHERE kind = 'session_opened'",
            &[
                "capture session {session} has 2 session_opened events naming it and its section (expected exactly one)",
            ],
        );
        check(
            "UPDATE outbox SET payload = json_set(payload, '$.session', 'gone')
             WHERE kind = 'session_opened'",
            &[
                "capture session {session} has 0 session_opened events naming it and its section (expected exactly one)",
                "session_opened event {event} names capture session \"gone\", which does not exist",
            ],
        );
    }

    #[test]
    fn template_rows_vectors_and_events_must_pair_up() {
        check(
            "DELETE FROM template_vectors",
            &["face template {template} has no vector"],
        );
        check(
            "DELETE FROM outbox WHERE kind = 'template_added'",
            &["face template {template} has 0 template_added events (expected exactly one)"],
        );
        check(
            "DELETE FROM template_vectors; DELETE FROM face_templates;",
            &[
                "template_added event {event} names face template {template} of ada, which does not exist although no later consent withdrawal purged it",
            ],
        );
    }

    #[test]
    fn a_withdrawn_student_keeps_no_template_and_outbox_ids_are_uuidv7() {
        check(
            "UPDATE students SET consent = 'withdrawn' WHERE id = 'ada';
             INSERT INTO outbox (id, kind, payload, created_at) VALUES ('e1', 'note', '{}', 0);",
            &[
                "outbox event \"e1\" (note) has no UUIDv7 id",
                "outbox event e1 (note) cannot be read: unknown variant `note`, expected one of `session_opened`, `session_closed`, `mark_set`, `template_added`, `template_deleted`, `consent_changed`",
                "student ada withdrew consent but still has 1 face templates",
            ],
        );
    }

    #[test]
    fn a_mark_of_a_missing_session_is_found() {
        check(
            "PRAGMA foreign_keys = OFF;
             INSERT INTO marks (session_id, student_id, status, source, decided_at)
             VALUES ('nowhere', 'ada', 'present', 'teacher', 0);
             PRAGMA foreign_keys = ON;",
            &[
                "marks row 4 refers to a missing capture_sessions row",
                "mark nowhere/ada has no mark_set event",
            ],
        );
    }
}
