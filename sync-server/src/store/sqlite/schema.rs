//! Versioned migrations of the server database, tracked in `PRAGMA user_version`. A database from a
//! newer build is refused before anything is written to it.

use std::path::Path;

use rusqlite::Connection;

use crate::store::StoreError;

/// Migration `i` takes the schema from version `i` to `i + 1`. Append only: never edit a shipped one.
pub(super) const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE schools (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL
);
CREATE TABLE users (
    id TEXT PRIMARY KEY,
    username TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('admin', 'teacher')),
    school_id TEXT REFERENCES schools (id),
    teacher_id TEXT
);
CREATE TABLE auth_sessions (
    token_hash TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    expires_at INTEGER NOT NULL
);
CREATE TABLE devices (
    id TEXT PRIMARY KEY,
    school_id TEXT NOT NULL REFERENCES schools (id),
    name TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER,
    last_seen_at INTEGER
);
CREATE INDEX devices_school ON devices (school_id);
CREATE TABLE provisioning_codes (
    code_hash TEXT PRIMARY KEY,
    school_id TEXT NOT NULL REFERENCES schools (id),
    device_name TEXT,
    created_by TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at INTEGER,
    device_id TEXT REFERENCES devices (id)
);
CREATE TABLE sections (
    id TEXT PRIMARY KEY,
    school_id TEXT NOT NULL REFERENCES schools (id),
    title TEXT NOT NULL,
    active INTEGER NOT NULL
);
CREATE INDEX sections_school ON sections (school_id);
CREATE TABLE students (
    id TEXT PRIMARY KEY,
    school_id TEXT NOT NULL REFERENCES schools (id),
    given_name TEXT NOT NULL,
    family_name TEXT NOT NULL,
    active INTEGER NOT NULL,
    consent TEXT NOT NULL CHECK (consent IN ('none', 'granted', 'withdrawn')),
    consent_by TEXT,
    consent_at INTEGER
);
CREATE INDEX students_school ON students (school_id);
CREATE TABLE teachers (
    id TEXT PRIMARY KEY,
    school_id TEXT NOT NULL REFERENCES schools (id),
    given_name TEXT NOT NULL,
    family_name TEXT NOT NULL,
    active INTEGER NOT NULL
);
CREATE INDEX teachers_school ON teachers (school_id);
-- person_id is a student or a teacher (by role), so it has no foreign key.
CREATE TABLE enrolments (
    section_id TEXT NOT NULL REFERENCES sections (id),
    person_id TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('student', 'teacher')),
    active INTEGER NOT NULL,
    PRIMARY KEY (section_id, person_id)
) WITHOUT ROWID;
CREATE INDEX enrolments_person ON enrolments (person_id);
CREATE TABLE schedule (
    section_id TEXT NOT NULL REFERENCES sections (id),
    position INTEGER NOT NULL,
    weekday INTEGER NOT NULL CHECK (weekday BETWEEN 1 AND 7),
    starts TEXT NOT NULL,
    ends TEXT NOT NULL,
    room TEXT,
    PRIMARY KEY (section_id, position)
) WITHOUT ROWID;
-- A tombstone keeps the id (so a late `template_added` cannot bring it back) and loses the vector.
-- The student has no foreign key: a tombstone may arrive before the student's template does.
CREATE TABLE templates (
    id TEXT PRIMARY KEY,
    school_id TEXT NOT NULL REFERENCES schools (id),
    student_id TEXT NOT NULL,
    model_id TEXT,
    embedding BLOB,
    quality REAL,
    source TEXT,
    created_at INTEGER,
    tombstone INTEGER NOT NULL DEFAULT 0,
    CHECK (tombstone = 1 OR (model_id IS NOT NULL AND embedding IS NOT NULL))
);
CREATE INDEX templates_student ON templates (student_id);
-- section_id is set by `session_opened`; marks may arrive first and then have no session row.
CREATE TABLE sessions (
    id TEXT PRIMARY KEY,
    school_id TEXT NOT NULL REFERENCES schools (id),
    device_id TEXT NOT NULL,
    section_id TEXT NOT NULL REFERENCES sections (id),
    started_at INTEGER NOT NULL,
    closed_at INTEGER
);
CREATE INDEX sessions_school_start ON sessions (school_id, started_at);
CREATE TABLE marks (
    session_id TEXT NOT NULL,
    student_id TEXT NOT NULL,
    school_id TEXT NOT NULL REFERENCES schools (id),
    device_id TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('present', 'review', 'absent', 'late', 'excused')),
    source TEXT NOT NULL CHECK (source IN ('machine', 'teacher')),
    score REAL,
    decided_at INTEGER NOT NULL,
    decided_by TEXT,
    event_id TEXT NOT NULL,
    PRIMARY KEY (session_id, student_id)
) WITHOUT ROWID;
CREATE INDEX marks_student ON marks (student_id);
CREATE INDEX marks_school_decided ON marks (school_id, decided_at);
CREATE TABLE applied_events (
    id TEXT PRIMARY KEY,
    device_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    applied_at INTEGER NOT NULL
) WITHOUT ROWID;
-- One row per entity key and school: a later write of the key moves it to a new, larger seq.
CREATE TABLE changes (
    school_id TEXT NOT NULL REFERENCES schools (id),
    seq INTEGER NOT NULL,
    key TEXT NOT NULL,
    body TEXT NOT NULL,
    UNIQUE (school_id, key),
    UNIQUE (school_id, seq)
);
-- Counters kept as rows so /metrics never counts a table.
CREATE TABLE counters (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO counters (name, value) VALUES ('events_applied', 0);
"#,
    r#"
-- Version 2: marks keep one B-tree besides their own. An index led by the student scattered every
-- push's 30 students over as many index pages, each rewritten to the WAL at commit: it cost a
-- third of the server's push throughput. Attendance is now found through `sessions` (by school
-- and start time) and the marks' primary key (session, student); the few marks whose session has
-- not arrived yet carry `session_pending` and a small partial index of their own.
DROP INDEX marks_school_decided;
DROP INDEX marks_student;
ALTER TABLE marks ADD COLUMN session_pending INTEGER NOT NULL DEFAULT 0;
UPDATE marks SET session_pending = 1
    WHERE NOT EXISTS (SELECT 1 FROM sessions WHERE sessions.id = marks.session_id);
CREATE INDEX marks_pending ON marks (school_id, decided_at) WHERE session_pending = 1;
"#,
    r#"
-- Version 3: a template's embedding space beside the model that made it. Rows from before it stay
-- NULL and are read as `EmbeddingSpace::of_model` of their model id, as an older box's push is.
ALTER TABLE templates ADD COLUMN space TEXT;
"#,
    r#"
-- Version 4: the dashboard. Marks may be decided by the office (SQLite cannot change a CHECK, so
-- the table is rebuilt as it was, with the new word); the audit log; what boxes report of
-- themselves and how far they have applied the feed; the school's own settings.
CREATE TABLE marks_v4 (
    session_id TEXT NOT NULL,
    student_id TEXT NOT NULL,
    school_id TEXT NOT NULL REFERENCES schools (id),
    device_id TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('present', 'review', 'absent', 'late', 'excused')),
    source TEXT NOT NULL CHECK (source IN ('machine', 'teacher', 'office')),
    score REAL,
    decided_at INTEGER NOT NULL,
    decided_by TEXT,
    event_id TEXT NOT NULL,
    session_pending INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (session_id, student_id)
) WITHOUT ROWID;
INSERT INTO marks_v4 (session_id, student_id, school_id, device_id, status, source, score,
        decided_at, decided_by, event_id, session_pending)
    SELECT session_id, student_id, school_id, device_id, status, source, score, decided_at,
        decided_by, event_id, session_pending FROM marks;
DROP TABLE marks;
ALTER TABLE marks_v4 RENAME TO marks;
CREATE INDEX marks_pending ON marks (school_id, decided_at) WHERE session_pending = 1;
CREATE TABLE audit_log (
    id INTEGER PRIMARY KEY,
    school_id TEXT,
    at INTEGER NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    subject TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX audit_school_at ON audit_log (school_id, at);
ALTER TABLE devices ADD COLUMN last_push_at INTEGER;
ALTER TABLE devices ADD COLUMN last_pull_at INTEGER;
ALTER TABLE devices ADD COLUMN app_version TEXT;
ALTER TABLE devices ADD COLUMN outbox_waiting INTEGER;
ALTER TABLE devices ADD COLUMN acked_seq INTEGER NOT NULL DEFAULT 0;
ALTER TABLE schools ADD COLUMN settings TEXT;
"#,
    r#"
-- Version 5: a section's sessions by start, for its rolls and reports: through the school's index
-- a section's month read every session of the school in it.
CREATE INDEX sessions_section_start ON sessions (school_id, section_id, started_at);
"#,
    r#"
-- Version 6: what the machine decided, kept when a person's decision replaces it, for the
-- recognition self-audit. A machine's mark is its own decision; a person's mark from before this
-- version replaced a decision nobody kept, and stays without one.
ALTER TABLE marks ADD COLUMN machine_status TEXT
    CHECK (machine_status IN ('present', 'review', 'absent', 'late', 'excused'));
UPDATE marks SET machine_status = status WHERE source = 'machine';
"#,
    r#"
-- Version 7: the embedding space of the last template each box pushed, for the devices page.
ALTER TABLE devices ADD COLUMN embedding_space TEXT;
"#,
    r#"
-- Version 8: the sections each student has marks in, for a student's history. Version 2 dropped
-- the marks' student index for push throughput; this table gains a row only the first time a
-- student is marked in a section (after that the insert finds its row and writes nothing), and a
-- student's history reads their sections' sessions instead of every session of the school.
CREATE TABLE student_sections (
    school_id TEXT NOT NULL,
    student_id TEXT NOT NULL,
    section_id TEXT NOT NULL,
    PRIMARY KEY (school_id, student_id, section_id)
) WITHOUT ROWID;
INSERT OR IGNORE INTO student_sections (school_id, student_id, section_id)
    SELECT m.school_id, m.student_id, s.section_id
    FROM marks m JOIN sessions s ON s.id = m.session_id AND s.school_id = m.school_id;
"#,
    r#"
-- Version 9: trips booked ahead (`domain::excusal`): a section's lessons in [from_ms, to_ms) whose
-- machine "absent" becomes the office's excuse when the box pushes it.
CREATE TABLE excusals (
    id TEXT PRIMARY KEY,
    school_id TEXT NOT NULL REFERENCES schools (id),
    section_id TEXT NOT NULL,
    from_ms INTEGER NOT NULL,
    to_ms INTEGER NOT NULL,
    reason TEXT NOT NULL,
    booked_by TEXT NOT NULL,
    booked_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX excusals_section ON excusals (section_id, from_ms);
"#,
    r#"
-- Version 10: guardians (`domain::guardian`), one contact per address in a school, linked to each
-- of their children there.
CREATE TABLE guardians (
    id TEXT PRIMARY KEY,
    school_id TEXT NOT NULL REFERENCES schools (id),
    given_name TEXT NOT NULL,
    family_name TEXT NOT NULL,
    email TEXT NOT NULL,
    relationship TEXT NOT NULL CHECK (relationship IN ('parent', 'guardian', 'relative')),
    opted_out_at INTEGER,
    UNIQUE (school_id, email)
) WITHOUT ROWID;
CREATE TABLE guardian_students (
    student_id TEXT NOT NULL,
    guardian_id TEXT NOT NULL,
    PRIMARY KEY (student_id, guardian_id)
) WITHOUT ROWID;
CREATE INDEX guardian_students_guardian ON guardian_students (guardian_id);
"#,
    r#"
-- Version 11: the notice outbox (`domain::notice`): each notice rendered when enqueued, once per
-- key, leased to one sender at a time; and the key that signs unsubscribe links.
CREATE TABLE notices (
    id TEXT PRIMARY KEY,
    school_id TEXT NOT NULL REFERENCES schools (id),
    kind TEXT NOT NULL CHECK (kind IN ('absence', 'correction', 'admin_digest', 'offline_alert')),
    key TEXT NOT NULL UNIQUE,
    recipient TEXT NOT NULL,
    guardian_id TEXT,
    day TEXT NOT NULL,
    subject TEXT NOT NULL,
    text TEXT NOT NULL,
    html TEXT NOT NULL,
    facts TEXT NOT NULL,
    -- JSON array of the students it names: an erasure deletes the notices naming the student.
    students TEXT NOT NULL,
    message_id TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('queued', 'sending', 'sent', 'failed')),
    attempts INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    lease_owner TEXT,
    lease_until INTEGER,
    last_error TEXT,
    created_at INTEGER NOT NULL,
    sent_at INTEGER
);
CREATE INDEX notices_due ON notices (next_attempt_at) WHERE state = 'queued';
CREATE INDEX notices_leased ON notices (lease_until) WHERE state = 'sending';
CREATE INDEX notices_school ON notices (school_id, created_at);
CREATE INDEX notices_day ON notices (school_id, day);
CREATE TABLE server_secrets (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
"#,
    // 13: the aligned face crop a school may keep with a template, for re-embedding (issue 17).
    "ALTER TABLE templates ADD COLUMN crop BLOB;",
    r#"
-- Version 14: a school's templates. Every call of a bulk enrolment reads the ids and spaces of its
-- live ones, from this index alone; without it each call read every template of the district.
CREATE INDEX templates_school ON templates (school_id, tombstone, id, model_id, space);
"#,
    r#"
-- Version 15: a school's attendance listed in its order without a sort. SQLite lets a rowid
-- table's TEXT PRIMARY KEY hold NULL unless told, so it could not count on a session's id being
-- unique in an index, and sorted every week of marks in a temporary B-tree: two thirds of the time
-- of a year's export (PERFORMANCE.md). With the id NOT NULL and closing the school's start index,
-- unique, sessions come in (start, id) order and each one's marks in student order from their key.
-- A section's index stays as it was: its sessions rarely share a start, and every push writes it.
CREATE TABLE sessions_v15 (
    id TEXT PRIMARY KEY NOT NULL,
    school_id TEXT NOT NULL REFERENCES schools (id),
    device_id TEXT NOT NULL,
    section_id TEXT NOT NULL REFERENCES sections (id),
    started_at INTEGER NOT NULL,
    closed_at INTEGER
);
INSERT INTO sessions_v15 (id, school_id, device_id, section_id, started_at, closed_at)
    SELECT id, school_id, device_id, section_id, started_at, closed_at FROM sessions;
DROP TABLE sessions;
ALTER TABLE sessions_v15 RENAME TO sessions;
CREATE UNIQUE INDEX sessions_school_start ON sessions (school_id, started_at, id);
CREATE INDEX sessions_section_start ON sessions (school_id, section_id, started_at);
"#,
    r#"
-- Version 16: marks' CHECKs as comparisons. For `x IN (...)` of more than two constants SQLite
-- builds a temporary B-tree each time a statement runs, so every mark written built two or three
-- (a pager, a page cache and their allocations each), the largest cost of a push on the writer
-- after the statements themselves (PERFORMANCE.md, "Marks' CHECKs"). The words are the same.
CREATE TABLE marks_v16 (
    session_id TEXT NOT NULL,
    student_id TEXT NOT NULL,
    school_id TEXT NOT NULL REFERENCES schools (id),
    device_id TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status = 'present' OR status = 'review' OR status = 'absent'
        OR status = 'late' OR status = 'excused'),
    source TEXT NOT NULL CHECK (source = 'machine' OR source = 'teacher' OR source = 'office'),
    score REAL,
    decided_at INTEGER NOT NULL,
    decided_by TEXT,
    event_id TEXT NOT NULL,
    session_pending INTEGER NOT NULL DEFAULT 0,
    machine_status TEXT CHECK (machine_status = 'present' OR machine_status = 'review'
        OR machine_status = 'absent' OR machine_status = 'late' OR machine_status = 'excused'),
    PRIMARY KEY (session_id, student_id)
) WITHOUT ROWID;
INSERT INTO marks_v16 (session_id, student_id, school_id, device_id, status, source, score,
        decided_at, decided_by, event_id, session_pending, machine_status)
    SELECT session_id, student_id, school_id, device_id, status, source, score, decided_at,
        decided_by, event_id, session_pending, machine_status FROM marks;
DROP TABLE marks;
ALTER TABLE marks_v16 RENAME TO marks;
CREATE INDEX marks_pending ON marks (school_id, decided_at) WHERE session_pending = 1;
"#,
    r#"
-- Version 17: how far each box's clock was from the server's at its last report, for the devices
-- page (`shared_proto::clock`).
ALTER TABLE devices ADD COLUMN clock_offset_ms INTEGER;
"#,
];

pub fn supported_version() -> i64 {
    MIGRATIONS.len() as i64
}

/// Refuses a database written by a newer build, reading only; returns its version.
pub fn refuse_newer(conn: &Connection, path: &Path) -> Result<i64, StoreError> {
    let found: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| {
            StoreError::Backend(format!(
                "{} is not a Rollcall server database ({e}); pass a new or existing .sqlite file",
                path.display()
            ))
        })?;
    if found > supported_version() {
        return Err(StoreError::NewerSchema(format!(
            "{} was written by a newer sync-server (schema {found}, this build knows up to {}); \
             it was not modified. Upgrade sync-server",
            path.display(),
            supported_version()
        )));
    }
    Ok(found)
}

/// Brings the schema up to date, one transaction per migration.
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
