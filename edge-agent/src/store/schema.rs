//! Versioned migrations, tracked in `PRAGMA user_version`. A database from a newer build is refused
//! before anything is written to it.

use std::path::Path;

use rusqlite::{Connection, Transaction};
use shared_proto::EmbeddingSpace;

use super::StoreError;

/// One schema step: SQL, or SQL plus Rust where a rule that lives elsewhere must be applied to the
/// rows (it is never copied into SQL).
enum Migration {
    Sql(&'static str),
    Code(fn(&Transaction<'_>) -> Result<(), StoreError>),
}

/// Migration `i` takes the schema from version `i` to `i + 1`. Append only: never edit a shipped one.
const MIGRATIONS: &[Migration] = &[
    Migration::Sql(
        r#"
CREATE TABLE students (
    id TEXT PRIMARY KEY,
    given_name TEXT NOT NULL,
    family_name TEXT NOT NULL,
    active INTEGER NOT NULL DEFAULT 1,
    consent TEXT NOT NULL DEFAULT 'none' CHECK (consent IN ('none', 'granted', 'withdrawn')),
    consent_by TEXT,
    consent_at INTEGER
);
CREATE TABLE teachers (
    id TEXT PRIMARY KEY,
    given_name TEXT NOT NULL,
    family_name TEXT NOT NULL,
    active INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE sections (
    id TEXT PRIMARY KEY,
    title TEXT NOT NULL,
    school_id TEXT NOT NULL,
    active INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE enrolments (
    section_id TEXT NOT NULL REFERENCES sections (id),
    person_id TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('student', 'teacher')),
    active INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (section_id, person_id)
);
CREATE TABLE schedule (
    id INTEGER PRIMARY KEY,
    section_id TEXT NOT NULL REFERENCES sections (id),
    weekday INTEGER NOT NULL CHECK (weekday BETWEEN 1 AND 7),
    starts TEXT NOT NULL,
    ends TEXT NOT NULL,
    room TEXT
);
CREATE TABLE face_templates (
    id INTEGER PRIMARY KEY,
    uuid TEXT NOT NULL UNIQUE,
    student_id TEXT NOT NULL REFERENCES students (id),
    model_id TEXT NOT NULL,
    quality REAL NOT NULL,
    source TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    crop BLOB
);
CREATE INDEX face_templates_student ON face_templates (student_id);
CREATE VIRTUAL TABLE template_vectors USING vec0 (
    template_id INTEGER PRIMARY KEY,
    embedding float[512] distance_metric=cosine,
    model_id TEXT
);
CREATE TABLE capture_sessions (
    id TEXT PRIMARY KEY,
    section_id TEXT NOT NULL REFERENCES sections (id),
    started_at INTEGER NOT NULL,
    n_frames INTEGER NOT NULL,
    unknown_faces INTEGER NOT NULL,
    too_small_faces INTEGER NOT NULL,
    not_on_roster TEXT NOT NULL
);
CREATE TABLE marks (
    session_id TEXT NOT NULL REFERENCES capture_sessions (id),
    student_id TEXT NOT NULL REFERENCES students (id),
    status TEXT NOT NULL CHECK (status IN ('present', 'review', 'absent', 'late', 'excused')),
    source TEXT NOT NULL CHECK (source IN ('machine', 'teacher')),
    score REAL,
    candidates TEXT,
    decided_at INTEGER NOT NULL,
    decided_by TEXT,
    PRIMARY KEY (session_id, student_id)
);
CREATE TABLE outbox (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    sent_at INTEGER
);
CREATE TABLE sync_cursor (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    cursor TEXT NOT NULL
);
CREATE TABLE audit_log (
    id INTEGER PRIMARY KEY,
    at INTEGER NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    detail TEXT NOT NULL
);
"#,
    ),
    // 2: sync. Rejected events stay in the outbox with the server's reason; the box's identity and the
    // health of its link (for `status` and the circuit breaker, which must survive a restart); the
    // purges that server tombstones made, so `check_invariants` can tell them from lost templates.
    Migration::Sql(
        r#"
ALTER TABLE outbox ADD COLUMN rejected_at INTEGER;
ALTER TABLE outbox ADD COLUMN rejected_code TEXT;
ALTER TABLE outbox ADD COLUMN rejected_reason TEXT;
CREATE INDEX outbox_waiting ON outbox (id) WHERE sent_at IS NULL AND rejected_at IS NULL;
CREATE TABLE sync_device (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    device_id TEXT NOT NULL,
    school_id TEXT NOT NULL,
    server TEXT NOT NULL,
    provisioned_at INTEGER NOT NULL
);
CREATE TABLE sync_state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    last_push_at INTEGER,
    last_pull_at INTEGER,
    last_attempt_at INTEGER,
    last_error TEXT,
    consecutive_failures INTEGER NOT NULL DEFAULT 0,
    breaker_opened_at INTEGER
);
INSERT INTO sync_state (id) VALUES (1);
CREATE TABLE sync_purges (
    template_uuid TEXT NOT NULL,
    student_id TEXT NOT NULL,
    change_seq INTEGER NOT NULL,
    at INTEGER NOT NULL
);
"#,
    ),
    // 3: embedding spaces. Templates are compared by space, not by the file that made them.
    Migration::Code(embedding_spaces),
    // 4: sessions close (the teacher left the roll, or its lesson ended), and the server is told
    // once by a `session_closed` event. Sessions from before stay open until the next one opens.
    Migration::Sql("ALTER TABLE capture_sessions ADD COLUMN closed_at INTEGER;"),
    // 5: office corrections (protocol 2). A mark may be decided by the school office; the server
    // sends those marks in the pull feed, and `sync_marks` keeps what was applied from it, so
    // `check_invariants` can tell a pulled correction from a mark changed without its event.
    // SQLite cannot change a CHECK: the table is rebuilt.
    Migration::Sql(
        r#"
CREATE TABLE marks_v5 (
    session_id TEXT NOT NULL REFERENCES capture_sessions (id),
    student_id TEXT NOT NULL REFERENCES students (id),
    status TEXT NOT NULL CHECK (status IN ('present', 'review', 'absent', 'late', 'excused')),
    source TEXT NOT NULL CHECK (source IN ('machine', 'teacher', 'office')),
    score REAL,
    candidates TEXT,
    decided_at INTEGER NOT NULL,
    decided_by TEXT,
    PRIMARY KEY (session_id, student_id)
);
INSERT INTO marks_v5 SELECT session_id, student_id, status, source, score, candidates, decided_at,
    decided_by FROM marks;
DROP TABLE marks;
ALTER TABLE marks_v5 RENAME TO marks;
CREATE TABLE sync_marks (
    session_id TEXT NOT NULL,
    student_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    status TEXT NOT NULL,
    source TEXT NOT NULL,
    change_seq INTEGER NOT NULL,
    at INTEGER NOT NULL
);
CREATE INDEX sync_marks_mark ON sync_marks (session_id, student_id);
"#,
    ),
    // 6: how long each capture's stages took and how many faces it saw, for the daemon's
    // /metrics (the screen captures, the daemon reports). Only the latest are kept.
    Migration::Sql(
        r#"
CREATE TABLE capture_stats (
    id INTEGER PRIMARY KEY,
    at INTEGER NOT NULL,
    frames INTEGER NOT NULL,
    faces INTEGER NOT NULL,
    gallery_ms REAL NOT NULL,
    frames_ms REAL NOT NULL,
    school_ms REAL NOT NULL,
    decide_ms REAL NOT NULL,
    record_ms REAL NOT NULL
);
"#,
    ),
    // 7: marks' CHECKs as comparisons, the same words. For `x IN (...)` of more than two constants
    // SQLite builds a temporary B-tree each time a statement runs: every mark written built two
    // (the server's schema 16 mends the same; docs/PERFORMANCE.md, "Marks' CHECKs").
    Migration::Sql(
        r#"
CREATE TABLE marks_v7 (
    session_id TEXT NOT NULL REFERENCES capture_sessions (id),
    student_id TEXT NOT NULL REFERENCES students (id),
    status TEXT NOT NULL CHECK (status = 'present' OR status = 'review' OR status = 'absent'
        OR status = 'late' OR status = 'excused'),
    source TEXT NOT NULL CHECK (source = 'machine' OR source = 'teacher' OR source = 'office'),
    score REAL,
    candidates TEXT,
    decided_at INTEGER NOT NULL,
    decided_by TEXT,
    PRIMARY KEY (session_id, student_id)
);
INSERT INTO marks_v7 (session_id, student_id, status, source, score, candidates, decided_at,
        decided_by)
    SELECT session_id, student_id, status, source, score, candidates, decided_at, decided_by
    FROM marks;
DROP TABLE marks;
ALTER TABLE marks_v7 RENAME TO marks;
"#,
    ),
    // 8: the box's clock against the server's at the last answer (`sync::clock`): a box that
    // lost its time shows it on the teacher's screen and in `status`.
    Migration::Sql(
        r#"
ALTER TABLE sync_state ADD COLUMN clock_offset_ms INTEGER;
ALTER TABLE sync_state ADD COLUMN clock_read_at INTEGER;
"#,
    ),
];

/// Gives every template the space of the model that made it (`EmbeddingSpace::of_model`, the
/// table the server reads too: both earlier fr_feature files are `fr_feature-v1`), and rebuilds the
/// vector table with the space as its filter column (sqlite-vec cannot add a column).
fn embedding_spaces(tx: &Transaction<'_>) -> Result<(), StoreError> {
    tx.execute_batch("ALTER TABLE face_templates ADD COLUMN space TEXT NOT NULL DEFAULT ''")?;
    let models: Vec<String> = tx
        .prepare("SELECT DISTINCT model_id FROM face_templates")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for model in models {
        let space = EmbeddingSpace::of_model_str(&model);
        tx.execute(
            "UPDATE face_templates SET space = ?2 WHERE model_id = ?1",
            [&model, space.as_str()],
        )?;
    }
    tx.execute_batch(
        r#"
CREATE TEMP TABLE vectors_before_spaces AS SELECT template_id, embedding FROM template_vectors;
DROP TABLE template_vectors;
CREATE VIRTUAL TABLE template_vectors USING vec0 (
    template_id INTEGER PRIMARY KEY,
    embedding float[512] distance_metric=cosine,
    space TEXT
);
INSERT INTO template_vectors (template_id, embedding, space)
    SELECT v.template_id, v.embedding, t.space
    FROM vectors_before_spaces v JOIN face_templates t ON t.id = v.template_id
    ORDER BY v.template_id;
DROP TABLE vectors_before_spaces;
CREATE INDEX face_templates_space ON face_templates (space, student_id);
"#,
    )?;
    Ok(())
}

pub fn supported_version() -> i64 {
    MIGRATIONS.len() as i64
}

/// Refuses a database written by a newer build, reading only; returns its version.
pub fn refuse_newer(conn: &Connection, path: &Path) -> Result<i64, StoreError> {
    let found: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| StoreError::NotADatabase {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
    if found > supported_version() {
        return Err(StoreError::NewerSchema {
            path: path.to_owned(),
            found,
            supported: supported_version(),
        });
    }
    Ok(found)
}

pub fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    migrate_to(conn, path, MIGRATIONS.len())
}

/// Migrates up to schema `target` only: migration tests build an older database with it.
pub fn migrate_to(conn: &mut Connection, path: &Path, target: usize) -> Result<(), StoreError> {
    let found = refuse_newer(conn, path)?;
    let steps = MIGRATIONS.iter().enumerate().take(target);
    for (version, migration) in steps.skip(found as usize) {
        let tx = conn.transaction()?;
        match migration {
            Migration::Sql(sql) => tx.execute_batch(sql)?,
            Migration::Code(step) => step(&tx)?,
        }
        tx.pragma_update(None, "user_version", version as i64 + 1)?;
        tx.commit()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Schema 4 gives sessions a `closed_at`; a session of a schema 3 database arrives open.
    #[test]
    fn a_session_from_schema_3_arrives_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rollcall.sqlite");
        super::super::register_sqlite_vec();
        let mut conn = Connection::open(&path).unwrap();
        migrate_to(&mut conn, &path, 3).unwrap();
        conn.execute_batch(
            "INSERT INTO sections (id, title, school_id) VALUES ('c1', '7B', 'o1');
             INSERT INTO capture_sessions (id, section_id, started_at, n_frames, unknown_faces, too_small_faces, not_on_roster)
             VALUES ('s1', 'c1', 5, 0, 0, 0, '[]');
             INSERT INTO students (id, given_name, family_name, active) VALUES ('st1', 'A', 'B', 1);
             INSERT INTO marks (session_id, student_id, status, source, decided_at, decided_by)
             VALUES ('s1', 'st1', 'late', 'teacher', 7, 'ms-lee');",
        )
        .unwrap();
        migrate(&mut conn, &path).unwrap();
        // Schema 5 rebuilt `marks` for office decisions: the marks from before are all there.
        let mark: (String, String, i64, String) = conn
            .query_row(
                "SELECT status, source, decided_at, decided_by FROM marks WHERE session_id = 's1'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .unwrap();
        assert_eq!(mark, ("late".into(), "teacher".into(), 7, "ms-lee".into()));
        let (version, closed_at): (i64, Option<i64>) = conn
            .query_row(
                "SELECT (SELECT user_version FROM pragma_user_version), closed_at FROM capture_sessions",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!((version, closed_at), (supported_version(), None));
    }
}
