//! Versioned migrations, tracked in `PRAGMA user_version`. A database from a newer build is refused
//! before anything is written to it.

use std::path::Path;

use rusqlite::Connection;

use super::StoreError;

/// Migration `i` takes the schema from version `i` to `i + 1`. Append only: never edit a shipped one.
const MIGRATIONS: &[&str] = &[
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
    // 2: sync. Rejected events stay in the outbox with the server's reason; the box's identity and the
    // health of its link (for `status` and the circuit breaker, which must survive a restart); the
    // purges that server tombstones made, so `check_invariants` can tell them from lost templates.
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
];

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
    let found = refuse_newer(conn, path)?;
    for (version, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", version as i64 + 1)?;
        tx.commit()?;
    }
    Ok(())
}
